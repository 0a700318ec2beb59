//! The journal's hash chain: each tenant's events are linked in commit order, so a
//! record changed, deleted, inserted or moved in the database afterwards is named by
//! `tines-audit verify` (ARCHITECTURE.md, "Tamper evidence").
//!
//! Event `n` of a tenant (1, 2, 3, … in commit order) stores `prev`, the hash of event
//! `n - 1` (zeros for the first), and its own hash over `prev`, the tenant, the Tines
//! id, the journal's sequence number, `n` and the record exactly as Tines sent it. An
//! event therefore checks on its own (its hash) and against its neighbour (its `prev`),
//! so events that retention keeps past their age (an alert's) still verify after the
//! events around them are pruned. The tenant's head (`n` and hash of its newest event)
//! is written in the same transaction as the events.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `prev` of a tenant's first event.
pub const GENESIS: Hash = [0; 32];

/// The hash of event `n` of `tenant`, following `prev`. Every variable-length part is
/// preceded by its length, so no two different inputs hash the same bytes.
pub fn link(prev: &Hash, tenant: &str, id: i64, seq: i64, n: i64, raw: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(b"tines-audit chain v1\0");
    h.update(prev);
    h.update((tenant.len() as u64).to_be_bytes());
    h.update(tenant.as_bytes());
    h.update(id.to_be_bytes());
    h.update(seq.to_be_bytes());
    h.update(n.to_be_bytes());
    h.update((raw.len() as u64).to_be_bytes());
    h.update(raw.as_bytes());
    h.finalize().into()
}

/// Where a tenant's chain stands: its newest event's number and hash (0 and
/// [`GENESIS`] before the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub n: i64,
    pub hash: Hash,
}

impl Default for Head {
    fn default() -> Head {
        Head { n: 0, hash: GENESIS }
    }
}

/// An event's place in its tenant's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub n: i64,
    pub prev: Hash,
    pub hash: Hash,
}

impl Head {
    /// The link of the next event, and the head after it.
    pub fn next(&mut self, tenant: &str, id: i64, seq: i64, raw: &str) -> Link {
        let n = self.n + 1;
        let hash = link(&self.hash, tenant, id, seq, n, raw);
        let l = Link { n, prev: self.hash, hash };
        *self = Head { n, hash };
        l
    }
}

impl Link {
    /// The link as stored: `None` without a chain number; a hash that is not 32 bytes
    /// reads as one that matches nothing, so verification names the record.
    pub fn from_stored(n: Option<i64>, prev: Option<&[u8]>, hash: Option<&[u8]>) -> Option<Link> {
        let as_hash = |b: Option<&[u8]>| b.and_then(|b| <Hash>::try_from(b).ok()).unwrap_or([0xff; 32]);
        n.map(|n| Link { n, prev: as_hash(prev), hash: as_hash(hash) })
    }
}

impl Head {
    /// The head as stored (no hash before the first event).
    pub fn from_stored(n: i64, hash: Option<&[u8]>) -> Head {
        match hash.and_then(|b| <Hash>::try_from(b).ok()) {
            Some(hash) => Head { n, hash },
            None if n == 0 => Head::default(),
            None => Head { n, hash: [0xff; 32] },
        }
    }
}

/// An event as verification reads it, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRow {
    pub seq: i64,
    pub tenant: String,
    pub id: i64,
    pub raw: String,
    /// `None` for an event stored without one (before the chain began, or inserted
    /// behind the journal's back).
    pub link: Option<Link>,
}

/// A tenant's chain as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantChain {
    pub tenant: String,
    pub head: Head,
    /// Events up to this number were removed by retention (0: none).
    pub pruned_through: i64,
}

/// One thing verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The stored record (or its identifying fields) no longer hashes to its link.
    RecordChanged { tenant: String, id: i64, seq: i64 },
    /// Events `from_n..=to_n` of the tenant's chain are missing, and retention did not
    /// remove them. `after_id` is the Tines id of the event before the gap, if any.
    RecordsDeleted { tenant: String, from_n: i64, to_n: i64, after_id: Option<i64> },
    /// An event with no place in the chain, stored after the chain began.
    RecordInserted { tenant: String, id: i64, seq: i64 },
    /// The event's place in the chain disagrees with the journal's order.
    RecordsReordered { tenant: String, id: i64, seq: i64, n: i64 },
    /// The event does not follow the one stored before it: one of the two was rewritten
    /// with a recomputed hash.
    ChainBroken { tenant: String, id: i64, seq: i64, n: i64 },
    /// The tenant's recorded head is not its newest event.
    HeadMismatch { tenant: String, head_n: i64, found_n: i64 },
    /// A checkpoint whose signature does not verify with the keys given.
    SignatureInvalid { tenant: String, number: i64, why: String },
    /// Checkpoints `from..=to` of the tenant are gone.
    CheckpointMissing { tenant: String, from: i64, to: i64 },
    /// A checkpoint does not carry the signature of the one before it.
    CheckpointChainBroken { tenant: String, number: i64 },
    /// The event at chain position `n` is not the one the checkpoint signed: the chain up
    /// to it was rewritten.
    CheckpointMismatch { tenant: String, number: i64, n: i64, seq: i64 },
    /// The event a checkpoint signed as the head (chain position `n`) is gone.
    CheckpointHeadMissing { tenant: String, number: i64, n: i64, seq: i64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::RecordChanged { tenant, id, seq } => {
                write!(f, "record changed: tenant {tenant}, id {id} (journal seq {seq})")
            }
            Problem::RecordsDeleted { tenant, from_n, to_n, after_id } => {
                let n = to_n - from_n + 1;
                let place = after_id.map_or("at the start of the chain".to_string(), |id| format!("after id {id}"));
                write!(f, "record deleted: tenant {tenant}, {n} event(s) {place} (chain positions {from_n}..={to_n})")
            }
            Problem::RecordInserted { tenant, id, seq } => {
                write!(f, "record inserted: tenant {tenant}, id {id} (journal seq {seq}) is in no chain")
            }
            Problem::RecordsReordered { tenant, id, seq, n } => write!(
                f,
                "records reordered: tenant {tenant}, id {id} (journal seq {seq}) holds chain position {n}, out of order"
            ),
            Problem::ChainBroken { tenant, id, seq, n } => write!(
                f,
                "chain broken: tenant {tenant}, id {id} (journal seq {seq}, chain position {n}) does not follow the event before it"
            ),
            Problem::HeadMismatch { tenant, head_n, found_n } => write!(
                f,
                "chain head mismatch: tenant {tenant} recorded {head_n} events in its chain, the journal holds up to {found_n}"
            ),
            Problem::SignatureInvalid { tenant, number, why } => {
                write!(f, "signature invalid: tenant {tenant}, checkpoint {number}: {why}")
            }
            Problem::CheckpointMissing { tenant, from, to } => {
                write!(f, "checkpoint missing: tenant {tenant}, checkpoint(s) {from}..={to} deleted")
            }
            Problem::CheckpointChainBroken { tenant, number } => write!(
                f,
                "checkpoint chain broken: tenant {tenant}, checkpoint {number} does not carry the previous checkpoint's signature"
            ),
            Problem::CheckpointMismatch { tenant, number, n, seq } => write!(
                f,
                "records changed before checkpoint: tenant {tenant}, checkpoint {number} signed a different event at chain position {n} (journal seq {seq}): the chain up to it was rewritten"
            ),
            Problem::CheckpointHeadMissing { tenant, number, n, seq } => write!(
                f,
                "record deleted: tenant {tenant}, the event checkpoint {number} signed at chain position {n} (journal seq {seq}) is gone"
            ),
        }
    }
}

/// What verification of the journal's chain found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Events whose link checked.
    pub verified: u64,
    /// Events stored before the chain began (nothing to check them against).
    pub unchained: u64,
    pub tenants: u64,
    /// Signed checkpoints whose signature checked.
    pub checkpoints: u64,
    /// Each tenant's newest valid checkpoint: the last moment the chain was signed.
    pub newest_checkpoints: Vec<NewestCheckpoint>,
    pub problems: Vec<Problem>,
}

/// A tenant's newest valid checkpoint, as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewestCheckpoint {
    pub tenant: String,
    pub number: i64,
    pub time: String,
    pub chain_n: i64,
    pub key: String,
}

#[derive(Default)]
struct Seen {
    /// The last event read: its chain number, hash and id.
    last: Option<(i64, Hash, i64)>,
}

/// Checks events fed in sequence order against their links and each other, then the
/// tenants' heads. Memory: one entry per tenant, whatever the journal's size.
pub struct Verifier {
    /// Events numbered below this predate the chain.
    chain_since_seq: i64,
    tenants: std::collections::HashMap<String, Seen>,
    pruned: std::collections::HashMap<String, i64>,
    report: ChainReport,
}

impl Verifier {
    pub fn new(chain_since_seq: i64, chains: &[TenantChain]) -> Verifier {
        Verifier {
            chain_since_seq,
            tenants: std::collections::HashMap::new(),
            pruned: chains.iter().map(|c| (c.tenant.clone(), c.pruned_through)).collect(),
            report: ChainReport::default(),
        }
    }

    /// The chain position retention removed `tenant`'s events through.
    pub fn pruned_through(&self, tenant: &str) -> i64 {
        self.pruned.get(tenant).copied().unwrap_or(0)
    }

    pub fn feed(&mut self, row: &ChainRow) {
        let Some(l) = row.link else {
            if row.seq < self.chain_since_seq {
                self.report.unchained += 1;
            } else {
                let (tenant, id, seq) = (row.tenant.clone(), row.id, row.seq);
                self.report.problems.push(Problem::RecordInserted { tenant, id, seq });
            }
            return;
        };
        let pruned = self.pruned_through(&row.tenant);
        let seen = self.tenants.entry(row.tenant.clone()).or_default();
        let problems = &mut self.report.problems;
        let (tenant, id, seq) = (&row.tenant, row.id, row.seq);
        if link(&l.prev, tenant, id, seq, l.n, &row.raw) != l.hash {
            problems.push(Problem::RecordChanged { tenant: tenant.clone(), id, seq });
        } else {
            self.report.verified += 1;
        }
        match seen.last {
            Some((n, _, _)) if l.n <= n => {
                problems.push(Problem::RecordsReordered { tenant: tenant.clone(), id, seq, n: l.n });
                return; // the order is broken: keep comparing against the furthest point
            }
            Some((n, hash, last_id)) => {
                let missing_from = (n + 1).max(pruned + 1);
                if l.n > missing_from {
                    let to_n = l.n - 1;
                    let after_id = (missing_from == n + 1).then_some(last_id);
                    problems.push(Problem::RecordsDeleted {
                        tenant: tenant.clone(),
                        from_n: missing_from,
                        to_n,
                        after_id,
                    });
                } else if l.n == n + 1 && l.prev != hash {
                    problems.push(Problem::ChainBroken { tenant: tenant.clone(), id, seq, n: l.n });
                }
            }
            None => {
                // The first event still stored: those before it went by retention, or
                // are missing.
                let missing_from = pruned + 1;
                if l.n > missing_from {
                    let to_n = l.n - 1;
                    let p =
                        Problem::RecordsDeleted { tenant: tenant.clone(), from_n: missing_from, to_n, after_id: None };
                    problems.push(p);
                } else if l.n == 1 && l.prev != GENESIS {
                    problems.push(Problem::ChainBroken { tenant: tenant.clone(), id, seq, n: l.n });
                }
            }
        }
        seen.last = Some((l.n, l.hash, id));
    }

    /// Checks each tenant's recorded head against the newest event read, and returns
    /// everything found.
    pub fn finish(mut self, chains: &[TenantChain]) -> ChainReport {
        for c in chains {
            let last = self.tenants.get(&c.tenant).and_then(|s| s.last);
            let found_n = last.map_or(c.pruned_through, |(n, _, _)| n);
            match last {
                Some((n, hash, _)) if n == c.head.n && hash != c.head.hash => {
                    let tenant = c.tenant.clone();
                    self.report.problems.push(Problem::HeadMismatch { tenant, head_n: c.head.n, found_n });
                }
                _ if found_n < c.head.n => {
                    let after_id = last.map(|(_, _, id)| id);
                    self.report.problems.push(Problem::RecordsDeleted {
                        tenant: c.tenant.clone(),
                        from_n: found_n + 1,
                        to_n: c.head.n,
                        after_id,
                    });
                }
                _ if found_n > c.head.n => {
                    let tenant = c.tenant.clone();
                    self.report.problems.push(Problem::HeadMismatch { tenant, head_n: c.head.n, found_n });
                }
                _ => {}
            }
        }
        self.report.tenants = chains.len() as u64;
        self.report
    }
}

/// Events read per query: memory stays bounded whatever the journal's size.
const PAGE: usize = 5_000;

/// Verifies every event of `journal` in seq order, and every checkpoint against `keys`
/// and the events, calling `on_page` with the last seq read (blocking). Checkpoints are
/// read beside the events by the seq of the head they signed, so memory stays bounded.
pub fn verify_journal(
    journal: &super::Journal,
    keys: &crate::signing::Keyring,
    on_page: &dyn Fn(i64),
) -> Result<ChainReport, super::JournalError> {
    use super::checkpoint::{CheckpointVerifier, signed_pruned};
    let mut chains = journal.tenant_chains()?;
    // Retention's mark counts only as far as a checkpoint signed it (retention signs one
    // before it deletes), so a mark moved by hand does not excuse a deletion.
    let signed = signed_pruned(keys, &journal.latest_checkpoints()?);
    for c in &mut chains {
        if let Some(p) = signed.get(&c.tenant) {
            c.pruned_through = *p;
        }
    }
    let mut v = Verifier::new(journal.chain_since_seq()?, &chains);
    let mut cv = CheckpointVerifier::new(keys.clone());
    let (mut after, mut cp_after) = (0i64, i64::MIN);
    loop {
        let rows = journal.chain_rows(after, PAGE)?;
        let through = match rows.last() {
            Some(last) if rows.len() == PAGE => last.seq,
            _ => i64::MAX,
        };
        let cps = journal.checkpoints_between(cp_after, through)?;
        cp_after = through;
        let mut cps = cps.iter().peekable();
        for r in &rows {
            while let Some(c) = cps.next_if(|c| c.to_seq < r.seq) {
                cv.check(c, None, v.pruned_through(&c.tenant), &mut v.report.problems);
            }
            v.feed(r);
            while let Some(c) = cps.next_if(|c| c.to_seq == r.seq) {
                cv.check(c, Some(r), v.pruned_through(&c.tenant), &mut v.report.problems);
            }
        }
        for c in cps {
            cv.check(c, None, v.pruned_through(&c.tenant), &mut v.report.problems);
        }
        let Some(last) = rows.last() else { break };
        after = last.seq;
        on_page(after);
        if rows.len() < PAGE {
            break;
        }
    }
    let mut report = v.finish(&chains);
    report.checkpoints = cv.checked;
    let mut newest: Vec<NewestCheckpoint> = cv
        .newest
        .into_values()
        .map(|c| NewestCheckpoint { tenant: c.tenant, number: c.number, time: c.time, chain_n: c.chain_n, key: c.key })
        .collect();
    newest.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    report.newest_checkpoints = newest;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(tenant: &str, ids: &[i64]) -> (Vec<ChainRow>, Head) {
        let mut head = Head::default();
        let rows = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let seq = i as i64 + 1;
                let raw = format!("{{\"id\":{id}}}");
                let link = Some(head.next(tenant, *id, seq, &raw));
                ChainRow { seq, tenant: tenant.into(), id: *id, raw, link }
            })
            .collect();
        (rows, head)
    }

    fn verify(rows: &[ChainRow], head: Head, pruned_through: i64) -> ChainReport {
        let chains = [TenantChain { tenant: "acme".into(), head, pruned_through }];
        let mut v = Verifier::new(1, &chains);
        rows.iter().for_each(|r| v.feed(r));
        v.finish(&chains)
    }

    #[test]
    fn an_untouched_chain_verifies_and_every_kind_of_tampering_is_named() {
        let (rows, head) = chain("acme", &[10, 11, 12, 13]);
        let ok = verify(&rows, head, 0);
        assert_eq!((ok.verified, ok.problems.len()), (4, 0), "{ok:?}");

        let mut changed = rows.clone();
        changed[1].raw = "{\"id\":11,\"x\":1}".into();
        assert_eq!(
            verify(&changed, head, 0).problems,
            vec![Problem::RecordChanged { tenant: "acme".into(), id: 11, seq: 2 }]
        );

        let mut deleted = rows.clone();
        deleted.remove(2);
        assert_eq!(
            verify(&deleted, head, 0).problems,
            vec![Problem::RecordsDeleted { tenant: "acme".into(), from_n: 3, to_n: 3, after_id: Some(11) }]
        );
        let newest_gone = &rows[..3];
        assert_eq!(
            verify(newest_gone, head, 0).problems,
            vec![Problem::RecordsDeleted { tenant: "acme".into(), from_n: 4, to_n: 4, after_id: Some(12) }]
        );

        let mut inserted = rows.clone();
        inserted.push(ChainRow { seq: 5, tenant: "acme".into(), id: 99, raw: "{}".into(), link: None });
        assert_eq!(
            verify(&inserted, head, 0).problems,
            vec![Problem::RecordInserted { tenant: "acme".into(), id: 99, seq: 5 }]
        );

        // Two events swap their places in the journal's order (their seqs).
        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        let p = verify(&swapped, head, 0).problems;
        assert!(p.contains(&Problem::RecordsReordered { tenant: "acme".into(), id: 11, seq: 2, n: 2 }), "{p:?}");

        // A record rewritten with its hash recomputed checks alone but breaks the link.
        let mut rewritten = rows.clone();
        let r = &mut rewritten[1];
        r.raw = "{\"id\":11,\"forged\":true}".into();
        let l = r.link.as_mut().unwrap();
        l.hash = link(&l.prev, "acme", 11, 2, 2, &r.raw);
        assert_eq!(
            verify(&rewritten, head, 0).problems,
            vec![Problem::ChainBroken { tenant: "acme".into(), id: 12, seq: 3, n: 3 }]
        );
    }

    #[test]
    fn events_retention_removed_are_not_missing_but_others_are() {
        let (rows, head) = chain("acme", &[10, 11, 12, 13, 14]);
        // Retention removed 1..=3 but kept 2 (an alert's event).
        let kept: Vec<ChainRow> = vec![rows[1].clone(), rows[3].clone(), rows[4].clone()];
        assert_eq!(verify(&kept, head, 3).problems, vec![]);
        // Without the record of pruning, the gap is a deletion.
        let p = verify(&kept, head, 0).problems;
        assert_eq!(p[0], Problem::RecordsDeleted { tenant: "acme".into(), from_n: 1, to_n: 1, after_id: None });
        // Pruned through 3, but 4 is gone too.
        let more: Vec<ChainRow> = vec![rows[1].clone(), rows[4].clone()];
        assert_eq!(
            verify(&more, head, 3).problems,
            vec![Problem::RecordsDeleted { tenant: "acme".into(), from_n: 4, to_n: 4, after_id: None }]
        );
    }

    #[test]
    fn events_before_the_chain_began_are_counted_not_blamed() {
        let (mut rows, _) = chain("acme", &[10, 11]);
        for r in &mut rows {
            r.seq += 100;
        }
        // Relinked with their new seqs.
        let mut h = Head::default();
        for r in &mut rows {
            r.link = Some(h.next("acme", r.id, r.seq, &r.raw));
        }
        let old = ChainRow { seq: 5, tenant: "acme".into(), id: 1, raw: "{}".into(), link: None };
        let mut all = vec![old];
        all.extend(rows);
        let chains = [TenantChain { tenant: "acme".into(), head: h, pruned_through: 0 }];
        let mut v = Verifier::new(50, &chains);
        all.iter().for_each(|r| v.feed(r));
        let report = v.finish(&chains);
        assert_eq!((report.unchained, report.verified, report.problems.len()), (1, 2, 0), "{report:?}");
    }
}
