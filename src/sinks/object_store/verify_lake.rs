//! Verifies a lake against its signed digests with public keys alone (`tines-audit
//! verify --object-store`): every digest's signature, the chain from the first digest to
//! the newest, and every data object against the digest that lists it. Names each
//! problem; objects written after the newest digest (its period still open) are counted,
//! not blamed.
//!
//! Memory: one entry per listed object (about 200 bytes), so a lake of a million
//! objects takes about 200 MB; objects are hashed as they stream, 16 at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ::object_store::path::Path;
use ::object_store::{ObjectMeta, ObjectStoreExt};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::Digest as _;

use super::config::{Destination, ObjectStoreConfig};
use super::digest::{self, Entry, SignedDigest, parse_digest_name, relative};
use super::errors::classify;
use super::layout::parse_name;
use super::sink::CHECK_OBJECT;
use crate::signing::{Keyring, hex};
use crate::timeutil::format_rfc3339;

/// Downloads at once: enough to keep a store busy, few enough for a small machine.
const PARALLEL: usize = 16;

/// Why verification could not run (as opposed to problems it found).
#[derive(Debug, thiserror::Error)]
pub enum VerifyLakeError {
    /// The destination's settings: fix the command or the config.
    #[error("{0}")]
    Config(String),
    /// The store failed or refused (credentials, permissions, a missing bucket).
    #[error("{0}")]
    Store(String),
}

/// What verification found, one per problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LakeProblem {
    /// An object's bytes are not those its digest recorded (edited, truncated, re-gzipped).
    ObjectChanged {
        key: String,
        digest: String,
        expected_sha256: String,
        actual_sha256: String,
        expected_size: u64,
        actual_size: u64,
    },
    /// An object a digest lists is gone.
    ObjectDeleted { key: String, digest: String },
    /// An object under the data prefix that no digest lists, though its period is closed.
    ObjectAdded { key: String, size: u64 },
    /// Digests of the chain are missing (deleted): numbers `first..=last`.
    DigestMissing { first: u64, last: u64, named_by: Option<String> },
    /// A digest does not follow the one before (rewritten, replaced, moved, or out of order).
    ChainBroken { digest: String, reason: String },
    /// A digest's signature does not verify, or it is signed by a key not given.
    SignatureInvalid { digest: String, reason: String },
    /// An object under the digest prefix is not a readable digest.
    DigestUnreadable { digest: String, reason: String },
    /// Objects past the newest digest written long ago (more than two periods): the newest
    /// digests were deleted (all of them, when there is none), or the sink was killed and
    /// has not run since to sign the period.
    DigestOverdue { objects: usize, oldest_written: String },
}

impl std::fmt::Display for LakeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LakeProblem::ObjectChanged { key, digest, expected_sha256, actual_sha256, expected_size, actual_size } => {
                write!(
                    f,
                    "object changed: {key} is not what digest {digest} recorded (sha256 {actual_sha256}, {actual_size} \
                     bytes; recorded {expected_sha256}, {expected_size} bytes)"
                )
            }
            LakeProblem::ObjectDeleted { key, digest } => {
                write!(f, "object deleted: {key}, listed in digest {digest}, is gone")
            }
            LakeProblem::ObjectAdded { key, size } => {
                write!(f, "object added: {key} ({size} bytes) is in no digest although its period is closed")
            }
            LakeProblem::DigestMissing { first, last, named_by } => {
                let which =
                    if first == last { format!("digest #{first} is") } else { format!("digests #{first}-#{last} are") };
                write!(f, "digest missing: {which} gone from the chain")?;
                if let Some(n) = named_by {
                    write!(f, " ({n} names the one before it)")?;
                }
                Ok(())
            }
            LakeProblem::ChainBroken { digest, reason } => write!(f, "chain broken at digest {digest}: {reason}"),
            LakeProblem::SignatureInvalid { digest, reason } => {
                write!(f, "signature invalid: digest {digest}: {reason}")
            }
            LakeProblem::DigestUnreadable { digest, reason } => {
                write!(f, "digest unreadable: {digest}: {reason}")
            }
            LakeProblem::DigestOverdue { objects, oldest_written } => write!(
                f,
                "digest overdue: {objects} object(s) past the newest digest were written more than two hours ago \
                 (the oldest at {oldest_written}) and no digest covers them: the newest digests were deleted, or the \
                 sink was stopped by a crash and has not run since (it signs the period when it runs again)"
            ),
        }
    }
}

/// The outcome, for people and (as JSON) for automation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LakeReport {
    /// Whether everything verified: no problem found.
    pub ok: bool,
    /// The data prefix and the digest prefix verified.
    pub url: String,
    pub digests_url: String,
    pub digests: usize,
    /// Objects listed by a digest whose bytes were checked, and what they hold.
    pub objects_verified: usize,
    pub events_verified: u64,
    pub bytes_verified: u64,
    /// The time the chain covers: from the first digest's start to the newest's end.
    pub covers_from: Option<String>,
    pub covers_to: Option<String>,
    /// The fingerprints of the keys the digests are signed with (each one given).
    pub signed_by: Vec<String>,
    /// Objects holding events past the newest digest: their period is still open.
    pub not_yet_covered: usize,
    /// When the oldest of them was written (RFC 3339).
    pub oldest_not_yet_covered: Option<String>,
    /// Objects holding only events delivered before the chain began (digests off then).
    pub predating_chain: usize,
    pub problems: Vec<LakeProblem>,
}

/// Progress of a long verification.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// Listing is done: this many bytes of objects will be hashed.
    Total(u64),
    /// This many more bytes were hashed.
    Hashed(u64),
}

/// A lake to verify: a sink's data prefix and digest prefix, with its credentials.
#[derive(Debug, Clone)]
pub struct Lake {
    dest: Destination,
}

impl Lake {
    /// The lake a sink config writes; its credentials come from the config (or the environment).
    pub fn of(cfg: &ObjectStoreConfig) -> Result<Lake, VerifyLakeError> {
        let dest = cfg.destination().map_err(VerifyLakeError::Config)?;
        if dest.digests.is_none() {
            return Err(VerifyLakeError::Config(format!(
                "{} has no prefix, so its digests are wherever the sink's digest_prefix says: give the sink's name \
                 with --config, or set digest_prefix on it",
                dest.url
            )));
        }
        Ok(Lake { dest })
    }

    /// The data prefix, as shown to users.
    pub fn url(&self) -> &str {
        &self.dest.url
    }

    /// Verifies the lake with the trusted `keys`; `progress` hears how far hashing is.
    pub async fn verify(
        &self,
        keys: &Keyring,
        progress: Arc<dyn Fn(Progress) + Send + Sync>,
    ) -> Result<LakeReport, VerifyLakeError> {
        verify_lake(&self.dest, keys, progress).await
    }
}

/// A digest as found under the digest prefix.
struct Found {
    /// The key relative to the digest prefix.
    name: String,
    number: u64,
    digest: SignedDigest,
}

/// Verifies the lake of `dest` with the trusted `keys`.
pub(crate) async fn verify_lake(
    dest: &Destination,
    keys: &Keyring,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Result<LakeReport, VerifyLakeError> {
    let digests_prefix = dest.digests.clone().ok_or_else(|| VerifyLakeError::Config("no digest prefix".into()))?;
    let digests_url = match dest.url.strip_suffix(dest.prefix.as_ref()) {
        Some(root) if !dest.prefix.as_ref().is_empty() => format!("{root}{digests_prefix}"),
        _ => format!("{}/{digests_prefix}", dest.url.trim_end_matches('/')),
    };
    let mut report = LakeReport { url: dest.url.clone(), digests_url: digests_url.clone(), ..Default::default() };
    let store_err =
        |doing: &str, e: ::object_store::Error| VerifyLakeError::Store(classify(e, dest, doing).to_string());

    // 1. The digests: read, parse, signature.
    let metas: Vec<ObjectMeta> = list(dest, &digests_prefix).await.map_err(|e| store_err("listing the digests", e))?;
    let fetched: Vec<(String, Result<bytes::Bytes, ::object_store::Error>)> =
        futures_util::stream::iter(metas.into_iter().map(|m| async move {
            let got = match dest.store.get(&m.location).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            };
            (m.location.to_string(), got)
        }))
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut chain: BTreeMap<u64, Found> = BTreeMap::new();
    for (key, got) in fetched {
        let bytes = got.map_err(|e| store_err(&format!("reading the digest {key}"), e))?;
        let name = relative(&key, &digests_prefix).unwrap_or(&key).to_string();
        let Some(number) = parse_digest_name(&name) else {
            report.problems.push(LakeProblem::DigestUnreadable {
                digest: name,
                reason: "not named like a digest (dt=YYYY-MM-DD/<number>.digest)".into(),
            });
            continue;
        };
        let d = match digest::parse(&bytes) {
            Ok(d) => d,
            Err(e) => {
                report.problems.push(LakeProblem::DigestUnreadable { digest: name, reason: e.to_string() });
                continue;
            }
        };
        match keys.get(&d.body.key) {
            None => report.problems.push(LakeProblem::SignatureInvalid {
                digest: name.clone(),
                reason: format!(
                    "signed by key {}, which is not among the keys given ({}); if that key is yours, give its public \
                     key with --public-key",
                    d.body.key,
                    keys.fingerprints().join(", ")
                ),
            }),
            Some(k) if !k.verifies(&d.signed, &d.signature) => report.problems.push(LakeProblem::SignatureInvalid {
                digest: name.clone(),
                reason: "the signature does not match the digest's content: it was changed after signing, or signed \
                         by another key than the one it names"
                    .into(),
            }),
            Some(_) => {
                if !report.signed_by.contains(&d.body.key) {
                    report.signed_by.push(d.body.key.clone());
                }
            }
        }
        if d.body.number != number {
            report.problems.push(LakeProblem::ChainBroken {
                digest: name.clone(),
                reason: format!("it is named #{number} but says it is #{}", d.body.number),
            });
        }
        chain.insert(number, Found { name, number, digest: d });
    }
    report.digests = chain.len();

    // 2. The chain: numbers without gaps from 1, each naming the one before it.
    let mut expected = 1u64;
    let mut before: Option<&Found> = None;
    for f in chain.values() {
        let body = &f.digest.body;
        if f.number > expected {
            report.problems.push(LakeProblem::DigestMissing {
                first: expected,
                last: f.number - 1,
                named_by: Some(f.name.clone()),
            });
        }
        let broken = |reason: String| LakeProblem::ChainBroken { digest: f.name.clone(), reason };
        let adjacent = before.filter(|b| b.number + 1 == f.number);
        match (f.number, adjacent, &body.previous) {
            (1, _, Some(p)) => report.problems.push(broken(format!("the first digest names {} before it", p.key))),
            (_, Some(_), None) if f.number > 1 => report.problems.push(broken("it names no digest before it".into())),
            (_, Some(b), Some(p)) => {
                if p.key != b.name || p.signature != b.digest.signature_b64() {
                    report.problems.push(broken(format!(
                        "it names {} with a signature {} does not bear: the digest before was replaced or re-signed",
                        p.key, b.name
                    )));
                } else if body.from != b.digest.body.to || body.from_offset != b.digest.body.offset {
                    report.problems.push(broken(format!(
                        "its period ({} from offset {}) does not begin where {} ends ({} at offset {})",
                        body.from, body.from_offset, b.name, b.digest.body.to, b.digest.body.offset
                    )));
                }
            }
            // The first digest, or one whose predecessor is missing (reported above).
            _ => {}
        }
        expected = f.number + 1;
        before = Some(f);
    }
    let first = chain.values().next();
    let newest = chain.values().next_back();
    report.covers_from = first.map(|f| f.digest.body.from.clone());
    report.covers_to = newest.map(|f| f.digest.body.to.clone());
    // Objects up to the chain's first offset predate it; past the newest's offset, not yet covered.
    let chain_start = first.filter(|f| f.number == 1).map_or(0, |f| f.digest.body.from_offset);
    let covered_to = newest.map_or(i64::MIN, |f| f.digest.body.offset);

    // 3. What the digests list.
    let mut listed: HashMap<String, (Entry, String)> = HashMap::new();
    for f in chain.values() {
        for e in &f.digest.body.objects {
            if let Some((_, other)) = listed.get(&e.key) {
                report.problems.push(LakeProblem::ChainBroken {
                    digest: f.name.clone(),
                    reason: format!("it lists {}, which {other} lists already", e.key),
                });
                continue;
            }
            listed.insert(e.key.clone(), (e.clone(), f.name.clone()));
        }
    }

    // 4. What the lake holds.
    let objects: Vec<ObjectMeta> = list(dest, &dest.prefix).await.map_err(|e| store_err("listing the data", e))?;
    let mut to_hash: Vec<(ObjectMeta, Entry, String)> = Vec::new();
    let mut oldest_open: Option<i64> = None;
    let overdue_before = crate::timeutil::now_secs() - 2 * digest::PERIOD_SECS;
    let mut overdue = 0usize;
    for m in objects {
        let key = m.location.to_string();
        let Some(rel) = relative(&key, &dest.prefix) else { continue };
        // Under a bucket-root prefix the digests are inside it; the sink's empty check object may be left.
        if relative(&key, &digests_prefix).is_some() || (rel.starts_with(CHECK_OBJECT) && m.size == 0) {
            continue;
        }
        if let Some((entry, digest)) = listed.remove(rel) {
            to_hash.push((m, entry, digest));
            continue;
        }
        match m.location.filename().and_then(parse_name) {
            Some((first, _)) if first > covered_to => {
                report.not_yet_covered += 1;
                let at = m.last_modified.timestamp();
                oldest_open = Some(oldest_open.map_or(at, |o| o.min(at)));
                overdue += usize::from(at < overdue_before);
            }
            Some((_, last)) if last <= chain_start => report.predating_chain += 1,
            _ => report.problems.push(LakeProblem::ObjectAdded { key: rel.to_string(), size: m.size }),
        }
    }
    report.oldest_not_yet_covered = oldest_open.map(format_rfc3339);
    if let Some(oldest) = oldest_open.filter(|_| overdue > 0) {
        report.problems.push(LakeProblem::DigestOverdue { objects: overdue, oldest_written: format_rfc3339(oldest) });
    }
    let mut deleted: Vec<LakeProblem> =
        listed.into_iter().map(|(key, (_, digest))| LakeProblem::ObjectDeleted { key, digest }).collect();
    deleted.sort_by_key(|p| p.to_string());
    report.problems.extend(deleted);

    // 5. Every listed object's bytes.
    progress(Progress::Total(to_hash.iter().map(|(m, _, _)| m.size).sum()));
    let hashed: Vec<Result<(Entry, String, String, u64), VerifyLakeError>> =
        futures_util::stream::iter(to_hash.into_iter().map(|(m, entry, digest)| {
            let progress = progress.clone();
            async move {
                let (sha, size) = hash_object(dest, &m.location, &*progress).await?;
                Ok((entry, digest, sha, size))
            }
        }))
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut changed = Vec::new();
    for h in hashed {
        let (entry, digest, sha, size) = h?;
        if sha != entry.sha256 || size != entry.size {
            changed.push(LakeProblem::ObjectChanged {
                key: entry.key,
                digest,
                expected_sha256: entry.sha256,
                actual_sha256: sha,
                expected_size: entry.size,
                actual_size: size,
            });
        } else {
            report.objects_verified += 1;
            report.events_verified += entry.events;
            report.bytes_verified += size;
        }
    }
    changed.sort_by_key(|p| p.to_string());
    report.problems.extend(changed);
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// Every object under `prefix`.
async fn list(dest: &Destination, prefix: &Path) -> Result<Vec<ObjectMeta>, ::object_store::Error> {
    let mut metas: Vec<ObjectMeta> = dest.store.list(Some(prefix)).try_collect().await?;
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(metas)
}

/// The SHA-256 (hex) and size of an object's bytes, hashed as they stream in.
async fn hash_object(
    dest: &Destination,
    path: &Path,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(String, u64), VerifyLakeError> {
    let doing = format!("reading {path}");
    let store_err = |e| VerifyLakeError::Store(classify(e, dest, &doing).to_string());
    let mut stream = dest.store.get(path).await.map_err(store_err)?.into_stream();
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(store_err)?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        progress(Progress::Hashed(chunk.len() as u64));
    }
    Ok((hex(&hasher.finalize()), size))
}
