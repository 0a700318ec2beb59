//! Signed digests of the lake (ARCHITECTURE.md, "Tamper evidence: signed digests of
//! the lake"): for each period, one object under the digest prefix listing every data
//! object the sink wrote or adopted in it (key, SHA-256 and size as stored, journal
//! seqs, events), chained to the digest before it and signed with the installation's
//! Ed25519 key, so a verifier holding only the public key detects objects changed,
//! deleted or added, and digests removed, altered or forged.
//!
//! A digest is two lines: the signed JSON exactly as signed, then the base64 Ed25519
//! signature of those bytes. The verifier checks the bytes it reads, never a
//! re-serialisation. Its key, `<digest prefix>/dt=<day the period began>/<number>.digest`,
//! depends only on what is committed, so a crash between writing a digest and committing
//! that it was written writes it again under the same key: the create-only put is refused,
//! the digest there is read, and if it lists what this sink recorded it is adopted.

use std::sync::Arc;

use ::object_store::path::Path;
use ::object_store::{Attribute, Attributes, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::config::{Backend, Destination};
use super::errors::classify;
use crate::signing::SigningKey;
use crate::sinks::SinkError;
use crate::timeutil::{format_rfc3339, parse_rfc3339};

/// What the signed JSON says it is; a verifier refuses what it does not know.
pub const FORMAT: &str = "tines-audit-lake-digest/1";
/// A digest object's name ends so.
pub const SUFFIX: &str = ".digest";
/// A period lasts until the end of the UTC hour it began in (as CloudTrail's digests).
pub const PERIOD_SECS: i64 = 3600;
/// An open period listing this many objects is closed at the next delivery, whatever
/// the hour: the open period is committed with every offset, so it stays small (about
/// 200 bytes an object; a batch adds one object per tenant and hour it spans).
pub const MAX_OPEN_OBJECTS: usize = 2_000;

/// A data object as a digest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key relative to the data prefix (`tenant=acme/dt=.../<first>-<last>.ndjson.gz`),
    /// so a copy of the lake under another prefix still verifies.
    pub key: String,
    /// Lowercase hex SHA-256 of the bytes as stored (gzipped).
    pub sha256: String,
    pub size: u64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub events: u64,
}

/// The digest before: its key (relative to the digest prefix) and its signature (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub key: String,
    pub signature: String,
}

/// The period being recorded, committed in the sink state with every offset so that
/// nothing written escapes a digest across a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpenPeriod {
    /// This period's digest number: 1 for the first of the chain.
    pub number: u64,
    /// When the period began (Unix seconds): the previous digest's end.
    pub from: i64,
    /// The journal offset the sink had delivered up to when it began.
    pub from_offset: i64,
    #[serde(default)]
    pub previous: Option<Previous>,
    #[serde(default)]
    pub objects: Vec<Entry>,
}

impl OpenPeriod {
    pub fn first(now: i64, offset: i64) -> OpenPeriod {
        OpenPeriod { number: 1, from: now, from_offset: offset, previous: None, objects: Vec::new() }
    }
}

/// The signed content of a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestBody {
    pub format: String,
    /// The sink (consumer) name that wrote it.
    pub sink: String,
    pub number: u64,
    /// The period, RFC 3339: `from` is the previous digest's `to`.
    pub from: String,
    pub to: String,
    /// Journal offsets: every event past `from_offset` up to `offset` that the sink
    /// delivered is in an object listed here (or, for an adopted object, in the digest of
    /// the period it was adopted in). Objects holding events past `offset` are the open
    /// period's.
    pub from_offset: i64,
    pub offset: i64,
    /// Fingerprint of the signing key (`sha256:<hex>`, as `tines-audit keys public` prints).
    pub key: String,
    pub previous: Option<Previous>,
    pub objects: Vec<Entry>,
}

impl DigestBody {
    /// Everything but the end and the key: what must match for an existing digest to be
    /// the one this sink would write for the period it has committed.
    fn same_period(&self, other: &DigestBody) -> bool {
        (self.format.as_str(), self.sink.as_str(), self.number, self.from.as_str())
            == (other.format.as_str(), other.sink.as_str(), other.number, other.from.as_str())
            && (self.from_offset, self.offset) == (other.from_offset, other.offset)
            && self.previous == other.previous
            && self.objects == other.objects
    }
}

/// A digest as read: the exact signed bytes, the signature, and what they say.
#[derive(Debug, Clone)]
pub struct SignedDigest {
    pub signed: Vec<u8>,
    pub signature: Vec<u8>,
    pub body: DigestBody,
}

impl SignedDigest {
    /// The signature as the next digest names it.
    pub fn signature_b64(&self) -> String {
        STANDARD.encode(&self.signature)
    }
}

/// Why bytes are not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotADigest(pub String);

/// The object's bytes: the signed JSON line, then the signature line.
pub fn encode(body: &DigestBody, key: &SigningKey) -> Vec<u8> {
    let mut out = serde_json::to_vec(body).expect("a digest serialises");
    let signature = STANDARD.encode(key.sign(&out));
    out.push(b'\n');
    out.extend_from_slice(signature.as_bytes());
    out.push(b'\n');
    out
}

/// Reads a digest object; the signature is not checked here.
pub fn parse(bytes: &[u8]) -> Result<SignedDigest, NotADigest> {
    let nl = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| NotADigest("no signature line".into()))?;
    let (signed, rest) = (&bytes[..nl], &bytes[nl + 1..]);
    let line = rest.strip_suffix(b"\n").unwrap_or(rest);
    if line.contains(&b'\n') {
        return Err(NotADigest("more than two lines".into()));
    }
    let signature = STANDARD.decode(line).map_err(|e| NotADigest(format!("the signature line is not base64: {e}")))?;
    let body: DigestBody =
        serde_json::from_slice(signed).map_err(|e| NotADigest(format!("the signed line is not a digest: {e}")))?;
    if body.format != FORMAT {
        return Err(NotADigest(format!("format {:?}, not {FORMAT:?}", body.format)));
    }
    if parse_rfc3339(&body.from).is_none() || parse_rfc3339(&body.to).is_none() {
        return Err(NotADigest("the period is not two RFC 3339 times".into()));
    }
    Ok(SignedDigest { signed: signed.to_vec(), signature, body })
}

/// `dt=YYYY-MM-DD/<number:020>.digest`, relative to the digest prefix: sorts in chain order.
pub fn digest_name(from: i64, number: u64) -> String {
    let day = format_rfc3339(from);
    format!("dt={}/{number:020}{SUFFIX}", day.get(..10).unwrap_or("1970-01-01"))
}

/// The digest number a name (relative to the digest prefix) carries; `None` for anything else.
pub fn parse_digest_name(rel: &str) -> Option<u64> {
    let (dir, file) = rel.split_once('/')?;
    let day = dir.strip_prefix("dt=")?;
    let digits = file.strip_suffix(SUFFIX)?;
    let ok_day = day.len() == 10 && parse_rfc3339(&format!("{day}T00:00:00Z")).is_some();
    (ok_day && digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// `key` relative to `prefix` (the whole key under an empty prefix).
pub fn relative<'a>(key: &'a str, prefix: &Path) -> Option<&'a str> {
    if prefix.as_ref().is_empty() {
        return Some(key);
    }
    key.strip_prefix(prefix.as_ref())?.strip_prefix('/')
}

/// The sink's signing of digests: the key, and the clock periods are measured by.
#[derive(Clone)]
pub(crate) struct Signer {
    pub key: Arc<SigningKey>,
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({:?})", self.key)
    }
}

/// Why an open period is closed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// Only if due: its hour is over, or it lists [`MAX_OPEN_OBJECTS`].
    IfDue,
    /// Also if it lists anything (a one-shot `collect` ends, the daemon stops).
    Seal,
}

/// Writes the digest of `open` if it is due (see [`Close`]) and returns the period that
/// follows it. `offset` is the committed offset the digest covers up to.
pub(crate) async fn close(
    dest: &Destination,
    sink: &str,
    signer: &Signer,
    open: &OpenPeriod,
    offset: i64,
    how: Close,
) -> Result<Option<OpenPeriod>, SinkError> {
    let now = (signer.clock)();
    let hour_over = now >= (open.from.div_euclid(PERIOD_SECS) + 1) * PERIOD_SECS;
    let full = open.objects.len() >= MAX_OPEN_OBJECTS;
    if !(hour_over || full || (how == Close::Seal && !open.objects.is_empty())) {
        return Ok(None);
    }
    // An hour's digest ends on the hour, as CloudTrail's do; an early one ends now.
    let to = if hour_over { now.div_euclid(PERIOD_SECS) * PERIOD_SECS } else { now }.max(open.from);
    let body = DigestBody {
        format: FORMAT.into(),
        sink: sink.into(),
        number: open.number,
        from: format_rfc3339(open.from),
        to: format_rfc3339(to),
        from_offset: open.from_offset,
        offset,
        key: signer.key.public().fingerprint(),
        previous: open.previous.clone(),
        objects: open.objects.clone(),
    };
    let prefix = dest.digests.as_ref().ok_or_else(|| {
        SinkError::Permanent(format!("{}: no digest prefix (the data has no prefix): set digest_prefix", dest.url))
    })?;
    let name = digest_name(open.from, open.number);
    let path = Path::parse(format!("{prefix}/{name}"))
        .map_err(|e| SinkError::Permanent(format!("{}: digest key {prefix}/{name}: {e}", dest.url)))?;
    let (key, b) = (signer.key.clone(), body.clone());
    let bytes = tokio::task::spawn_blocking(move || encode(&b, &key))
        .await
        .map_err(|e| SinkError::Transient(format!("digest signing task failed: {e}")))?;
    let mut attributes = Attributes::new();
    if dest.backend != Backend::Local {
        attributes.insert(Attribute::ContentType, "text/plain; charset=utf-8".into());
    }
    let opts = PutOptions { mode: PutMode::Create, attributes, ..Default::default() };
    let written = match dest.store.put_opts(&path, PutPayload::from(bytes.clone()), opts).await {
        Ok(_) => parse(&bytes).expect("a digest just encoded parses"),
        Err(::object_store::Error::AlreadyExists { .. } | ::object_store::Error::Precondition { .. }) => {
            adopt(dest, &path, &bytes, &body).await?
        }
        Err(e) => return Err(classify(e, dest, &format!("writing the digest {path}"))),
    };
    tracing::info!(
        digest = %path, number = open.number, objects = open.objects.len(), from = %body.from, to = %written.body.to,
        "object-store sink: signed the digest of a period"
    );
    let next_from = parse_rfc3339(&written.body.to).unwrap_or(to);
    Ok(Some(OpenPeriod {
        number: open.number + 1,
        from: next_from,
        from_offset: offset,
        previous: Some(Previous { key: name, signature: written.signature_b64() }),
        objects: Vec::new(),
    }))
}

/// A digest is already where this period's goes: written before a crash kept the state
/// that says so from being committed. It must be the one this sink would write (the same
/// period, objects and chain; its end, and the key if it was changed since, may differ).
async fn adopt(dest: &Destination, path: &Path, ours: &[u8], body: &DigestBody) -> Result<SignedDigest, SinkError> {
    let got = match dest.store.get(path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    let existing = got.map_err(|e| classify(e, dest, &format!("reading the digest {path}")))?;
    let foreign = |why: String| {
        SinkError::Permanent(format!(
            "{}: the digest {path} already exists and is not the one this sink recorded ({why}): another \
             tines-audit writes digests to this prefix, or the journal was restored from an older backup. Give \
             each sink its own digest_prefix, or move the digest away if it is not this lake's",
            dest.url
        ))
    };
    if existing.as_ref() == ours {
        tracing::info!(digest = %path, "object-store sink: the digest was written before a restart; adopting it");
        return Ok(parse(ours).expect("a digest just encoded parses"));
    }
    let d = parse(&existing).map_err(|e| foreign(e.to_string()))?;
    if !d.body.same_period(body) {
        return Err(foreign("it lists other objects or another chain".into()));
    }
    tracing::info!(
        digest = %path, key = %d.body.key,
        "object-store sink: the digest was written before a restart (ending at another time or with another key); \
         adopting it"
    );
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> DigestBody {
        DigestBody {
            format: FORMAT.into(),
            sink: "lake".into(),
            number: 2,
            from: "2024-03-10T23:00:00Z".into(),
            to: "2024-03-11T00:00:00Z".into(),
            from_offset: 10,
            offset: 20,
            key: "sha256:00".into(),
            previous: Some(Previous {
                key: "dt=2024-03-10/00000000000000000001.digest".into(),
                signature: "c2ln".into(),
            }),
            objects: vec![Entry {
                key: "tenant=acme/dt=2024-03-10/hour=23/00000000000000000011-00000000000000000020.ndjson.gz".into(),
                sha256: "ab".repeat(32),
                size: 123,
                first_seq: 11,
                last_seq: 20,
                events: 10,
            }],
        }
    }

    #[test]
    fn a_digest_is_the_signed_line_and_its_signature_and_any_change_shows() {
        let key = SigningKey::ephemeral();
        let bytes = encode(&body(), &key);
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 2);
        let d = parse(&bytes).unwrap();
        assert_eq!(d.body, body());
        assert!(key.public().verifies(&d.signed, &d.signature));
        // The same content signs to the same bytes (Ed25519 is deterministic): a digest
        // written again after a crash is byte for byte the one before.
        assert_eq!(encode(&body(), &key), bytes);
        let text = String::from_utf8(bytes.clone()).unwrap().replace("\"size\":123", "\"size\":124");
        let changed = parse(text.as_bytes()).unwrap();
        assert!(!key.public().verifies(&changed.signed, &changed.signature));
        assert!(parse(b"{}").is_err());
        assert!(parse(&bytes[..bytes.len() - 10]).is_err());
    }

    #[test]
    fn digest_names_sort_in_chain_order_and_parse_back() {
        let name = digest_name(1_710_111_600, 42);
        assert_eq!(name, "dt=2024-03-10/00000000000000000042.digest");
        assert_eq!(parse_digest_name(&name), Some(42));
        for other in
            ["dt=2024-03-10/42.digest", "x/00000000000000000042.digest", "dt=2024-3-10/00000000000000000042.digest"]
        {
            assert_eq!(parse_digest_name(other), None, "{other}");
        }
        assert_eq!(relative("a/b/c", &Path::from("a/b")), Some("c"));
        assert_eq!(relative("a/bc", &Path::from("a/b")), None);
        assert_eq!(relative("a/b", &Path::default()), Some("a/b"));
    }
}
