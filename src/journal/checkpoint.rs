//! Signed checkpoints of each tenant's chain (ARCHITECTURE.md, "Tamper evidence").
//!
//! The chain alone names a record changed or removed by someone who does not recompute
//! the hashes; someone with write access to the database can recompute them. A
//! checkpoint closes that: the journal's writer signs, with its Ed25519 key, the tenant's
//! chain head (position and hash) at every `collect`, at least hourly in the daemon, and
//! before retention prunes. Each checkpoint carries the previous one's signature, so the
//! checkpoints form a chain of their own, and verification checks every signature and
//! that the chain still holds the head each checkpoint signed. Forging history before the
//! newest checkpoint then needs the private key.
//!
//! What is signed is the exact bytes stored (`body`, compact JSON), so verification never
//! depends on serialising JSON the same way twice.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::chain::{ChainRow, Hash, Head, Problem};
use super::{Journal, JournalError};
use crate::signing::{Keyring, SigningKey, hex};

/// The format of [`Checkpoint`].
pub const VERSION: u32 = 1;

/// What a checkpoint attests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub v: u32,
    pub tenant: String,
    /// 1, 2, 3, … per tenant.
    pub number: i64,
    /// When it was signed (RFC 3339, UTC).
    pub time: String,
    /// Why: `collect`, `scheduled` (the daemon's hourly one), `retention` (before a prune).
    pub reason: String,
    /// The journal seqs this checkpoint adds: after the previous checkpoint's `to_seq`,
    /// through the seq of the head event (0 before the tenant's first event).
    pub from_seq: i64,
    pub to_seq: i64,
    /// Events added to the chain since the previous checkpoint.
    pub events: i64,
    /// The head: the chain position of the tenant's newest event and its hash (hex).
    pub chain_n: i64,
    pub chain_head: String,
    /// Retention removed the tenant's events up to this chain position (or is about to).
    pub pruned_through: i64,
    /// The fingerprint of the key that signed it.
    pub key: String,
    /// The previous checkpoint's signature (hex); none for the first.
    pub prev_signature: Option<String>,
}

/// A checkpoint as stored: the signed bytes, the signature, and the columns queries use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub tenant: String,
    pub number: i64,
    pub to_seq: i64,
    pub body: String,
    pub signature: Vec<u8>,
}

impl StoredCheckpoint {
    pub fn parse(&self) -> Option<Checkpoint> {
        serde_json::from_str(&self.body).ok()
    }

    /// What it attests, once its signature checks with a key of `keys` and the row's
    /// columns agree with what was signed; otherwise why not.
    pub fn verified(&self, keys: &Keyring) -> Result<Checkpoint, String> {
        let c = self.parse().ok_or("its signed content is not a checkpoint")?;
        let key =
            keys.get(&c.key).ok_or_else(|| format!("signed by key {}, which is not among the keys given", c.key))?;
        if !key.verifies(self.body.as_bytes(), &self.signature) {
            return Err("the signature does not match its content".into());
        }
        if c.tenant != self.tenant || c.number != self.number || c.to_seq != self.to_seq {
            return Err("the row's tenant, number or seq differ from what was signed".into());
        }
        Ok(c)
    }
}

/// What a tenant's next checkpoint is made from, read in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Basis {
    pub head: Head,
    /// The journal seq of the head event (0 before the first).
    pub head_seq: i64,
    /// `chain_pruned_n` as retention recorded it.
    pub pruned_through: i64,
    pub last: Option<StoredCheckpoint>,
}

/// Makes the next checkpoint of `tenant` from `basis`, signed by `key`. `pruning_through`
/// is what retention is about to remove (0 otherwise).
pub fn make(
    tenant: &str,
    basis: &Basis,
    key: &SigningKey,
    reason: &str,
    now: i64,
    pruning_through: i64,
) -> StoredCheckpoint {
    let last = basis.last.as_ref().and_then(|l| l.parse().map(|c| (l, c)));
    // The signed retention mark moves only by retention's own checkpoint: a mark raised in
    // the database by hand is not signed by the next checkpoint. A tenant's first takes the
    // recorded one (a chain from before checkpoints).
    let (number, from_seq, prev_n, prev_pruned, prev_signature) = match &last {
        Some((stored, c)) => (c.number + 1, c.to_seq + 1, c.chain_n, c.pruned_through, Some(hex(&stored.signature))),
        None => (basis.last.as_ref().map_or(1, |l| l.number + 1), 1, 0, basis.pruned_through, None),
    };
    let c = Checkpoint {
        v: VERSION,
        tenant: tenant.to_string(),
        number,
        time: crate::timeutil::format_rfc3339(now),
        reason: reason.to_string(),
        from_seq,
        to_seq: basis.head_seq,
        events: basis.head.n - prev_n,
        chain_n: basis.head.n,
        chain_head: hex(&basis.head.hash),
        pruned_through: prev_pruned.max(pruning_through),
        key: key.public().fingerprint(),
        prev_signature,
    };
    let body = serde_json::to_string(&c).expect("a checkpoint serialises");
    let signature = key.sign(body.as_bytes());
    StoredCheckpoint { tenant: tenant.to_string(), number, to_seq: c.to_seq, body, signature }
}

/// Signs and stores the next checkpoint of every tenant (blocking). Returns how many
/// were written.
pub fn sign_all(journal: &Journal, key: &SigningKey, reason: &str) -> Result<usize, JournalError> {
    let mut n = 0;
    for tenant in journal.tenants()? {
        n += usize::from(sign(journal, &tenant, key, reason, 0)?.is_some());
    }
    Ok(n)
}

/// Signs and stores the next checkpoint of `tenant` (blocking), under the journal's fence;
/// `None` when the journal has no such tenant yet (nothing collected). Another writer
/// taking a number first (retention on another instance) is retried.
pub fn sign(
    journal: &Journal,
    tenant: &str,
    key: &SigningKey,
    reason: &str,
    pruning_through: i64,
) -> Result<Option<StoredCheckpoint>, JournalError> {
    for _ in 0..8 {
        let Some(basis) = journal.checkpoint_basis(tenant)? else { return Ok(None) };
        let cp = make(tenant, &basis, key, reason, crate::timeutil::now_secs(), pruning_through);
        if journal.backend.append_checkpoint(&cp, journal.fence())? {
            return Ok(Some(cp));
        }
    }
    Err(JournalError::Config(format!("tenant {tenant:?}: checkpoint numbers kept being taken by another writer")))
}

/// Checks checkpoints against the keys and the chain, fed in `to_seq` order alongside
/// the events (memory: one entry per tenant).
pub struct CheckpointVerifier {
    keys: Keyring,
    /// Per tenant: the last checkpoint's number and signature.
    last: HashMap<String, (i64, Vec<u8>)>,
    pub checked: u64,
    pub newest: HashMap<String, Checkpoint>,
}

/// Per tenant, the chain position retention may have removed events through, as the newest
/// valid checkpoint signed it (`None`: no valid checkpoint, so the recorded mark stands).
pub fn signed_pruned(keys: &Keyring, latest: &[StoredCheckpoint]) -> HashMap<String, i64> {
    latest.iter().filter_map(|s| Some((s.tenant.clone(), s.verified(keys).ok()?.pruned_through))).collect()
}

impl CheckpointVerifier {
    pub fn new(keys: Keyring) -> CheckpointVerifier {
        CheckpointVerifier { keys, last: HashMap::new(), checked: 0, newest: HashMap::new() }
    }

    /// Checks one checkpoint: its signature, its place after the tenant's previous one,
    /// and, given the event stored at its `to_seq` (if any), the head it signed.
    /// `pruned_through` is the tenant's signed retention mark.
    pub fn check(
        &mut self,
        s: &StoredCheckpoint,
        head: Option<&ChainRow>,
        pruned_through: i64,
        problems: &mut Vec<Problem>,
    ) {
        let tenant = s.tenant.clone();
        let number = s.number;
        let invalid = |why: String| Problem::SignatureInvalid { tenant: tenant.clone(), number, why };
        // Its place is taken, valid or not: the next one is judged against it, so one
        // forged checkpoint is named once, not also as a gap.
        let prev = self.last.insert(tenant.clone(), (number, s.signature.clone()));
        let c = match s.verified(&self.keys) {
            Ok(c) => c,
            Err(why) => return problems.push(invalid(why)),
        };
        self.checked += 1;
        let expected = prev.as_ref().map_or(1, |(n, _)| n + 1);
        if c.number > expected {
            problems.push(Problem::CheckpointMissing { tenant: tenant.clone(), from: expected, to: c.number - 1 });
        } else if c.number < expected {
            problems.push(Problem::CheckpointChainBroken { tenant: tenant.clone(), number });
        } else if let Some((_, sig)) = &prev {
            if c.prev_signature.as_deref() != Some(hex(sig).as_str()) {
                problems.push(Problem::CheckpointChainBroken { tenant: tenant.clone(), number });
            }
        } else if c.prev_signature.is_some() {
            // The first stored checkpoint names a predecessor: those before it were deleted.
            problems.push(Problem::CheckpointMissing { tenant: tenant.clone(), from: 1, to: c.number - 1 });
        }
        if c.chain_n > 0 && c.chain_n > pruned_through {
            let signed: Option<Hash> = crate::signing::unhex(&c.chain_head).and_then(|b| b.try_into().ok());
            match head.and_then(|r| r.link.map(|l| (r, l))) {
                Some((r, l)) if r.tenant == c.tenant && l.n == c.chain_n && Some(l.hash) == signed => {}
                Some((r, _)) if r.tenant == c.tenant => problems.push(Problem::CheckpointMismatch {
                    tenant: tenant.clone(),
                    number,
                    n: c.chain_n,
                    seq: c.to_seq,
                }),
                _ => problems.push(Problem::CheckpointHeadMissing {
                    tenant: tenant.clone(),
                    number,
                    n: c.chain_n,
                    seq: c.to_seq,
                }),
            }
        }
        self.newest.insert(tenant, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::chain::Head;

    fn basis(n: i64, seq: i64, last: Option<StoredCheckpoint>) -> Basis {
        Basis { head: Head { n, hash: [n as u8; 32] }, head_seq: seq, pruned_through: 0, last }
    }

    fn row(tenant: &str, seq: i64, n: i64) -> ChainRow {
        let hash = [n as u8; 32];
        ChainRow {
            seq,
            tenant: tenant.into(),
            id: seq,
            raw: "{}".into(),
            link: Some(crate::journal::chain::Link { n, prev: [0; 32], hash }),
        }
    }

    #[test]
    fn checkpoints_chain_by_signature_and_each_kind_of_forgery_is_named() {
        let key = SigningKey::ephemeral();
        let keys = Keyring::new(vec![*key.public()]);
        let c1 = make("acme", &basis(3, 30, None), &key, "collect", 1_000, 0);
        let c2 = make("acme", &basis(5, 50, Some(c1.clone())), &key, "scheduled", 2_000, 0);
        let parsed = c2.parse().unwrap();
        assert_eq!((parsed.number, parsed.from_seq, parsed.events), (2, 31, 2));
        assert_eq!(parsed.prev_signature, Some(hex(&c1.signature)));

        let run = |cps: &[(&StoredCheckpoint, Option<ChainRow>)], keys: &Keyring| {
            let mut v = CheckpointVerifier::new(keys.clone());
            let mut problems = Vec::new();
            for (c, r) in cps {
                v.check(c, r.as_ref(), 0, &mut problems);
            }
            problems
        };
        let good = [(&c1, Some(row("acme", 30, 3))), (&c2, Some(row("acme", 50, 5)))];
        assert_eq!(run(&good, &keys), vec![]);

        // The chain rewritten behind the checkpoint: the head it signed is not there.
        let mut rewritten = row("acme", 50, 5);
        rewritten.link.as_mut().unwrap().hash = [9; 32];
        let p = run(&[(&c1, Some(row("acme", 30, 3))), (&c2, Some(rewritten))], &keys);
        assert_eq!(p, vec![Problem::CheckpointMismatch { tenant: "acme".into(), number: 2, n: 5, seq: 50 }]);
        let p = run(&[(&c1, Some(row("acme", 30, 3))), (&c2, None)], &keys);
        assert_eq!(p, vec![Problem::CheckpointHeadMissing { tenant: "acme".into(), number: 2, n: 5, seq: 50 }]);

        // A checkpoint deleted.
        let p = run(&[(&c2, Some(row("acme", 50, 5)))], &keys);
        assert_eq!(p, vec![Problem::CheckpointMissing { tenant: "acme".into(), from: 1, to: 1 }]);

        // Content changed without the key; signed by a key not given.
        let mut forged = c2.clone();
        forged.body = forged.body.replace("\"events\":2", "\"events\":3");
        let p = run(&[(&c1, Some(row("acme", 30, 3))), (&forged, Some(row("acme", 50, 5)))], &keys);
        assert!(matches!(&p[..], [Problem::SignatureInvalid { number: 2, .. }]), "{p:?}");
        let other = SigningKey::ephemeral();
        let resigned = make("acme", &basis(5, 50, Some(c1.clone())), &other, "scheduled", 2_000, 0);
        let p = run(&[(&c1, Some(row("acme", 30, 3))), (&resigned, Some(row("acme", 50, 5)))], &keys);
        assert!(matches!(&p[..], [Problem::SignatureInvalid { why, .. }] if why.contains("not among")), "{p:?}");

        // A validly signed checkpoint that does not follow the one before (replayed).
        let p = run(&[(&c1, Some(row("acme", 30, 3))), (&c1, Some(row("acme", 30, 3)))], &keys);
        assert_eq!(p, vec![Problem::CheckpointChainBroken { tenant: "acme".into(), number: 1 }]);

        // The signed retention mark never goes back.
        let mut b = basis(5, 50, Some(c2.clone()));
        let pruning = make("acme", &b, &key, "retention", 3_000, 4);
        assert_eq!(pruning.parse().unwrap().pruned_through, 4);
        b.last = Some(pruning);
        assert_eq!(make("acme", &b, &key, "scheduled", 4_000, 0).parse().unwrap().pruned_through, 4);
        // A mark raised in the database by hand is not signed by the next checkpoint.
        b.pruned_through = 5;
        assert_eq!(make("acme", &b, &key, "scheduled", 4_000, 0).parse().unwrap().pruned_through, 4);
        assert_eq!(signed_pruned(&keys, &[b.last.clone().unwrap()]).get("acme"), Some(&4));
    }
}
