//! The object-store sink: a batch is split by partition (tenant, hour),
//! encoded one event a line, gzipped, and written with create-only puts
//! (`If-None-Match: *`) under names taken from the journal seqs inside.
//!
//! Exactly once, with no state in the bucket: the runner commits the offset
//! only after `deliver` returns, so a crash between a put and that commit
//! leaves objects holding events past the committed offset ("orphans"). The
//! batch read after a restart may differ from the one that wrote them (more
//! events arrived, or the roll size changed), so writing it again under new
//! names would duplicate events, and deleting the orphans would not undo
//! their ingestion (Snowpipe and SecOps feeds pick objects up within
//! seconds). Instead, before the first write to a partition after a
//! (re)start, the sink lists it; every object there whose last seq is past
//! the committed offset is downloaded and *adopted*: the events it covers are
//! checked line by line against what this sink would write for them and are
//! not written again. An adoption the batch ends inside of is recorded in the
//! committed state (how many bytes of the object matched so far), so a
//! second crash resumes it. Content that does not match is a permanent error:
//! someone else writes to this prefix.
//!
//! With a signing key, every object written or adopted is also recorded (key,
//! SHA-256 as stored, size, seqs) in the open period of the committed state, and
//! the period's signed digest is written once it ends ([`super::digest`]).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::Arc;

use ::object_store::path::Path;
use ::object_store::{Attribute, Attributes, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use super::config::{Backend, Destination};
use super::digest::{self, Close, Entry, OpenPeriod, Signer};
use super::errors::classify;
use super::layout::{hour_of, object_name, parse_name, partition_dir};
use crate::format::Encoder;
use crate::journal::EventBatch;
use crate::signing::{SigningKey, hex};
use crate::sinks::{BatchPolicy, BoxFuture, Sink, SinkError};

/// gzip level: 6 (zlib's default) compresses Tines JSON about 8:1 at well over the journal's read speed.
const GZIP_LEVEL: u32 = 6;

/// What is committed with each offset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SinkState {
    pub v: u32,
    /// The last seq committed with this state (a check on the runner's offset).
    pub offset: Option<i64>,
    /// Orphans the committed batches ended inside of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopting: Vec<Adopting>,
    /// The digest period being recorded (with a signing key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<OpenPeriod>,
}

/// An orphan partly adopted: `verified` bytes of its uncompressed body matched committed events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Adopting {
    pub key: String,
    pub last: i64,
    pub verified: usize,
}

/// An object found past the committed offset, being adopted.
#[derive(Debug)]
struct Orphan {
    key: Path,
    first: i64,
    last: i64,
    /// The uncompressed content; `None` when a committed adoption's object is gone since
    /// (a feed that deletes what it ingested): its events count as delivered.
    body: Option<Vec<u8>>,
    verified: usize,
    /// How a digest lists it, until the batch that starts adopting it records it there
    /// (`None` once a committed state has: an adoption resumed after a restart).
    entry: Option<Entry>,
}

impl Orphan {
    fn verify(&mut self, line: &[u8], seq: i64, url: &str) -> Result<(), SinkError> {
        let Some(body) = &self.body else { return Ok(()) };
        let end = self.verified + line.len();
        if body.get(self.verified..end) != Some(line) {
            return Err(SinkError::Permanent(format!(
                "{url}: {} was written after the last commit but does not hold journal event seq {seq} as this sink \
                 would write it: another writer uses this prefix, or the format changed since. Move the object away \
                 (its events will be written again) or give this sink its own prefix",
                self.key
            )));
        }
        self.verified = end;
        Ok(())
    }

    fn complete(&self) -> bool {
        self.body.as_ref().is_none_or(|b| self.verified == b.len())
    }
}

/// Orphans by tenant and hour.
#[derive(Debug, Default)]
struct Orphans {
    by_partition: HashMap<String, HashMap<i64, Vec<Orphan>>>,
    count: usize,
}

impl Orphans {
    fn add(&mut self, tenant: &str, hour: i64, o: Orphan) {
        self.by_partition.entry(tenant.to_string()).or_default().entry(hour).or_default().push(o);
        self.count += 1;
    }

    fn covering(&mut self, tenant: &str, hour: i64, seq: i64) -> Option<&mut Orphan> {
        if self.count == 0 {
            return None;
        }
        self.by_partition.get_mut(tenant)?.get_mut(&hour)?.iter_mut().find(|o| o.first <= seq && seq <= o.last)
    }

    /// After a batch ending at `upto`: orphans ending there or before must be fully matched
    /// (and are done); those the batch ended inside of are returned, to be committed; so are
    /// the digest entries of the orphans this batch began adopting.
    fn settle(&mut self, upto: i64, url: &str) -> Result<(Vec<Adopting>, Vec<Entry>), SinkError> {
        let mut adopting = Vec::new();
        let mut entries = Vec::new();
        for hours in self.by_partition.values_mut() {
            for list in hours.values_mut() {
                entries.extend(list.iter_mut().filter(|o| o.first <= upto).filter_map(|o| o.entry.take()));
                for o in list.iter().filter(|o| o.last <= upto) {
                    if !o.complete() {
                        return Err(SinkError::Permanent(format!(
                            "{url}: {} was written after the last commit and holds more than the journal's events \
                             {}..={}: another writer uses this prefix. Move the object away or give this sink its own prefix",
                            o.key, o.first, o.last
                        )));
                    }
                    tracing::info!(object = %o.key, "object-store sink: adopted an object written before a restart");
                }
                list.retain(|o| o.last > upto);
                adopting.extend(list.iter().filter(|o| o.first <= upto).map(|o| Adopting {
                    key: o.key.to_string(),
                    last: o.last,
                    verified: o.verified,
                }));
            }
            hours.retain(|_, l| !l.is_empty());
        }
        self.by_partition.retain(|_, h| !h.is_empty());
        self.count = self.by_partition.values().flat_map(|h| h.values()).map(Vec::len).sum();
        adopting.sort_by(|a, b| a.key.cmp(&b.key));
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok((adopting, entries))
    }
}

/// What a batch comes to: objects to write, the orphans still to adopt, the adoptions to
/// commit, and the digest entries of the orphans it began adopting.
struct Plan {
    objects: Vec<NewObject>,
    orphans: Orphans,
    adopting: Vec<Adopting>,
    adopted: Vec<Entry>,
}

/// An object to write.
struct NewObject {
    path: Path,
    first: i64,
    last: i64,
    events: usize,
    raw: Vec<u8>,
    gz: Vec<u8>,
}

/// Writes journal batches as gzipped NDJSON objects; see the module docs.
pub struct ObjectStoreSink {
    name: String,
    dest: Destination,
    encoder: Encoder,
    policy: BatchPolicy,
    /// As of the last recovery or successful delivery.
    committed: SinkState,
    /// Partitions listed for orphans since the last recovery.
    listed: HashSet<(String, i64)>,
    orphans: Orphans,
    /// Signs a digest of each period; `None`: no digests (alerts).
    signer: Option<Signer>,
    /// The committed state had no digest period yet: adoptions it resumes were never listed.
    chain_begins: bool,
}

impl ObjectStoreSink {
    pub(crate) fn new(name: String, dest: Destination, encoder: Encoder, policy: BatchPolicy) -> Self {
        ObjectStoreSink {
            name,
            dest,
            encoder,
            policy,
            committed: SinkState { v: 1, ..Default::default() },
            listed: HashSet::new(),
            orphans: Orphans::default(),
            signer: None,
            chain_begins: false,
        }
    }

    /// Records every object in signed digests, one a period (see [`super::digest`]).
    pub fn with_digests(mut self, key: Arc<SigningKey>) -> Self {
        self.signer = Some(Signer { key, clock: Arc::new(crate::timeutil::now_secs) });
        self
    }

    /// The clock digest periods are measured by (tests: closing an hour without waiting one).
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: Arc<dyn Fn() -> i64 + Send + Sync>) -> Self {
        if let Some(s) = &mut self.signer {
            s.clock = clock;
        }
        self
    }

    /// Writes the open period's digest if `how` says it is time; the committed state then
    /// holds the next period (to be committed by the caller).
    async fn close_period(&mut self, how: Close) -> Result<bool, SinkError> {
        let (Some(signer), Some(open)) = (&self.signer, &self.committed.digest) else { return Ok(false) };
        let offset = self.committed.offset.unwrap_or(open.from_offset);
        match digest::close(&self.dest, &self.name, signer, open, offset, how).await? {
            Some(next) => {
                self.committed.digest = Some(next);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The committed state after `close_period` changed it, to commit at the current offset.
    async fn close_and_state(&mut self, how: Close) -> Result<Option<String>, SinkError> {
        let closed = self.close_period(how).await;
        if closed.is_err() {
            self.listed.clear();
            self.orphans = Orphans::default();
        }
        Ok(closed?.then(|| serde_json::to_string(&self.committed).expect("state serialises")))
    }

    /// The destination as shown to users (`s3://bucket/prefix`).
    pub fn url(&self) -> &str {
        &self.dest.url
    }

    async fn deliver_batch(&mut self, batch: Arc<EventBatch>) -> Result<SinkState, SinkError> {
        let (Some(first), Some(last)) = (batch.first_seq(), batch.last_seq()) else {
            return Ok(self.committed.clone());
        };
        let floor = self.committed.offset.unwrap_or(first - 1);
        // A period that ended is signed before anything of the next one is written.
        self.close_period(Close::IfDue).await?;
        if first <= floor {
            return Err(SinkError::Permanent(format!(
                "{}: the batch starts at seq {first} but this sink's state says seq {floor} is committed: \
                 the journal offset and the sink state disagree",
                self.dest.url
            )));
        }
        let mut partitions: Vec<(&str, i64)> = Vec::new();
        for e in batch.iter() {
            let p = (e.tenant, hour_of(e.created_at));
            if partitions.last() != Some(&p) {
                partitions.push(p);
            }
        }
        partitions.sort_unstable();
        partitions.dedup();
        for (tenant, hour) in partitions {
            let key = (tenant.to_string(), hour);
            if !self.listed.contains(&key) {
                self.discover(tenant, hour, floor).await?;
                self.listed.insert(key);
            }
        }

        let orphans = std::mem::take(&mut self.orphans);
        let (encoder, prefix, url) = (self.encoder.clone(), self.dest.prefix.clone(), self.dest.url.clone());
        let Plan { objects, orphans, adopting, adopted: mut entries } =
            blocking(move || plan(&batch, &encoder, &prefix, orphans, &url)).await.and_then(|r| r)?;
        self.orphans = orphans;
        for o in objects {
            let stored = put_create(&self.dest, &o.path, &o.raw, o.gz).await?;
            tracing::debug!(object = %o.path, events = o.events, "object-store sink: delivered");
            entries.push(Entry {
                key: digest::relative(o.path.as_ref(), &self.dest.prefix).unwrap_or(o.path.as_ref()).to_string(),
                sha256: stored.sha256,
                size: stored.size,
                first_seq: o.first,
                last_seq: o.last,
                events: o.events as u64,
            });
        }
        let mut open = self.committed.digest.clone();
        if let Some(open) = &mut open {
            open.objects.extend(entries);
        }
        self.committed = SinkState { v: 1, offset: Some(last), adopting, digest: open };
        Ok(self.committed.clone())
    }

    /// Lists a partition for objects past the committed offset and loads them for adoption.
    async fn discover(&mut self, tenant: &str, hour: i64, floor: i64) -> Result<(), SinkError> {
        let dir = partition_dir(&self.dest.prefix, tenant, hour);
        let listing = self
            .dest
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| classify(e, &self.dest, &format!("listing {dir}")))?;
        let mut found = HashSet::new();
        for meta in listing.objects {
            let Some((first, last)) = meta.location.filename().and_then(parse_name) else { continue };
            if last <= floor {
                continue;
            }
            let key = meta.location.to_string();
            let committed = self.committed.adopting.iter().find(|a| a.key == key);
            let verified = match committed {
                Some(a) => a.verified,
                None if first > floor => 0,
                None => {
                    return Err(SinkError::Permanent(format!(
                        "{}: {key} holds journal seqs {first}..={last}, across the committed offset {floor}, which \
                         this sink never writes: was the journal restored from an older backup, or does another \
                         tines-audit write to this prefix? Move the object away (its events past {floor} will be \
                         written again) or give this sink its own prefix",
                        self.dest.url
                    )));
                }
            };
            let Fetched { body, sha256, size } = fetch(&self.dest, &meta.location).await?;
            // Recorded in a digest by the batch that starts adopting it; a resumed adoption already was.
            let entry = (committed.is_none() || self.chain_begins).then(|| Entry {
                key: digest::relative(&key, &self.dest.prefix).unwrap_or(&key).to_string(),
                sha256,
                size,
                first_seq: first,
                last_seq: last,
                events: body.iter().filter(|b| **b == b'\n').count() as u64,
            });
            if verified > body.len() || (verified > 0 && body[verified - 1] != b'\n') {
                return Err(SinkError::Permanent(format!(
                    "{}: {key} changed since {verified} bytes of it were matched and committed (it now holds {}): \
                     another writer uses this prefix",
                    self.dest.url,
                    body.len()
                )));
            }
            tracing::info!(
                object = %key, first, last, committed = floor,
                "object-store sink: found an object written after the last commit (a restart between a write and \
                 its commit); adopting it instead of writing its events again"
            );
            found.insert(key);
            self.orphans.add(
                tenant,
                hour,
                Orphan { key: meta.location, first, last, body: Some(body), verified, entry },
            );
        }
        let dir_prefix = format!("{dir}/");
        for a in &self.committed.adopting {
            if a.key.starts_with(&dir_prefix) && !found.contains(&a.key) {
                let Some((first, _)) = a.key.rsplit('/').next().and_then(parse_name) else { continue };
                let Ok(key) = Path::parse(&a.key) else { continue };
                tracing::warn!(
                    object = %a.key,
                    "object-store sink: an object being adopted is gone (deleted after ingestion?); \
                     its remaining events count as delivered"
                );
                let orphan = Orphan { key, first, last: a.last, body: None, verified: a.verified, entry: None };
                self.orphans.add(tenant, hour, orphan);
            }
        }
        Ok(())
    }
}

/// An object as read: its uncompressed content, and the SHA-256 (hex) and size of its bytes as stored.
pub(super) struct Fetched {
    pub body: Vec<u8>,
    pub sha256: String,
    pub size: u64,
}

/// What a create-only write left in the store: the SHA-256 (hex) and size of the object.
#[derive(Debug)]
pub(super) struct Stored {
    pub sha256: String,
    pub size: u64,
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// An object's content, and the digest of its stored bytes.
pub(super) async fn fetch(dest: &Destination, path: &Path) -> Result<Fetched, SinkError> {
    let got = dest.store.get(path).await;
    let bytes = match got {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    let bytes = bytes.map_err(|e| match e {
        // Listed a moment ago: gone in between. Listing again on the retry sorts it out.
        ::object_store::Error::NotFound { .. } => {
            SinkError::Transient(format!("{}: {path} vanished while being read", dest.url))
        }
        e => classify(e, dest, &format!("reading {path}")),
    })?;
    let url = dest.url.clone();
    let key = path.to_string();
    blocking(move || {
        let body = gunzip(&bytes).map_err(|e| {
            SinkError::Permanent(format!(
                "{url}: {key} is named like this sink's objects but is not gzip ({e}): another writer uses this \
                 prefix; move it away"
            ))
        })?;
        Ok(Fetched { body, sha256: sha256_hex(&bytes), size: bytes.len() as u64 })
    })
    .await?
}

/// Writes an object only if its key is free (`If-None-Match: *`); a key already
/// holding the same content (`raw`, uncompressed) counts as written.
pub(super) async fn put_create(dest: &Destination, path: &Path, raw: &[u8], gz: Vec<u8>) -> Result<Stored, SinkError> {
    let mut attributes = Attributes::new();
    if dest.backend != Backend::Local {
        attributes.insert(Attribute::ContentType, "application/gzip".into());
    }
    let opts = PutOptions { mode: PutMode::Create, attributes, ..Default::default() };
    let size = gz.len();
    let sha256 = sha256_hex(&gz);
    match dest.store.put_opts(path, PutPayload::from(gz), opts).await {
        Ok(_) => {
            tracing::debug!(object = %path, bytes = size, "object-store sink: wrote");
            Ok(Stored { sha256, size: size as u64 })
        }
        Err(::object_store::Error::AlreadyExists { .. } | ::object_store::Error::Precondition { .. }) => {
            let there = fetch(dest, path).await?;
            if there.body == raw {
                tracing::info!(object = %path, "object-store sink: already written by an earlier attempt");
                return Ok(Stored { sha256: there.sha256, size: there.size });
            }
            Err(SinkError::Permanent(format!(
                "{}: {path} already exists with other content: another writer (or another journal) uses this \
                 prefix. Give each sink its own prefix, or move the object away to retry",
                dest.url
            )))
        }
        Err(e) => Err(classify(e, dest, &format!("writing {path}"))),
    }
}

/// The start of `check`'s probe object names: never a name this sink's objects take.
pub(crate) const CHECK_OBJECT: &str = ".tines-audit-check-";

/// `check`: does what a delivery does, on an empty object of its own under the prefix
/// (`<prefix>/.tines-audit-check-<nanos>`), so that ok means uploads work: a create-only
/// write, a second one that must be refused (a store that ignores the precondition
/// would let another writer's object, or a retry's, be overwritten), a read and a listing.
/// The object is then removed; where the credentials cannot delete (the sink never needs
/// to), it stays, empty, and the answer says so.
pub(super) async fn check_writes(dest: &Destination) -> Result<String, SinkError> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let path = dest.prefix.clone().join(format!("{CHECK_OBJECT}{nanos:x}"));
    let create = || PutOptions { mode: PutMode::Create, ..Default::default() };
    dest.store
        .put_opts(&path, PutPayload::new(), create())
        .await
        .map_err(|e| classify(e, dest, &format!("a create-only write of the check object {path}")))?;
    let checked = async {
        match dest.store.put_opts(&path, PutPayload::new(), create()).await {
            Err(::object_store::Error::AlreadyExists { .. } | ::object_store::Error::Precondition { .. }) => {}
            Ok(_) => {
                return Err(SinkError::Permanent(format!(
                    "{}: the store accepted a second create-only write ({}) to {path}: it ignores the \
                     precondition, so an object of another writer, or of an earlier attempt, could be overwritten \
                     and exactly-once delivery cannot be kept. Use a store that honours create-only writes (AWS S3, \
                     GCS, Azure Blob, MinIO and Cloudflare R2 do)",
                    dest.url,
                    dest.backend.create_only()
                )));
            }
            Err(e) => return Err(classify(e, dest, &format!("a second create-only write of {path}"))),
        }
        let read = match dest.store.get(&path).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        read.map_err(|e| classify(e, dest, &format!("reading the check object {path}")))?;
        let listing = dest
            .store
            .list_with_delimiter(Some(&dest.prefix))
            .await
            .map_err(|e| classify(e, dest, "listing the prefix"))?;
        Ok(listing.common_prefixes.len())
    }
    .await;
    let removed = dest.store.delete(&path).await;
    let partitions = checked?;
    let done = format!(
        "{}: a create-only write, its refusal to overwrite, a read and a listing work ({partitions} tenant partitions)",
        dest.url
    );
    Ok(match removed {
        Ok(()) => done,
        Err(e) => format!(
            "{done}; the empty check object {path} could not be removed ({e}): the sink never deletes, so its \
             credentials need not allow it; remove the object by hand (readers find no records in it)"
        ),
    })
}

/// Runs CPU or file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, SinkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SinkError::Transient(format!("object-store sink task failed: {e}")))
}

/// Splits a batch into objects by partition, skipping (and checking) events that orphans already hold.
fn plan(
    batch: &EventBatch,
    encoder: &Encoder,
    prefix: &Path,
    mut orphans: Orphans,
    url: &str,
) -> Result<Plan, SinkError> {
    struct Part<'a> {
        tenant: &'a str,
        hour: i64,
        first: i64,
        last: i64,
        events: usize,
        buf: Vec<u8>,
    }
    let mut parts: Vec<Part<'_>> = Vec::new();
    let mut index: HashMap<(&str, i64), usize> = HashMap::new();
    let mut current: Option<(&str, i64, usize)> = None;
    let mut line = Vec::new();
    let format_err = |e: crate::format::FormatError| SinkError::Permanent(format!("{url}: {e}"));
    for e in batch.iter() {
        let hour = hour_of(e.created_at);
        if let Some(o) = orphans.covering(e.tenant, hour, e.seq) {
            line.clear();
            encoder.encode_into(&e, &mut line).map_err(format_err)?;
            line.push(b'\n');
            o.verify(&line, e.seq, url)?;
            continue;
        }
        let i = match current {
            Some((t, h, i)) if t == e.tenant && h == hour => i,
            _ => {
                let i = *index.entry((e.tenant, hour)).or_insert_with(|| {
                    // The first partition is usually the only one: size it for the whole batch.
                    let cap = if parts.is_empty() { batch.raw_bytes() + batch.len() } else { 0 };
                    let buf = Vec::with_capacity(cap);
                    parts.push(Part { tenant: e.tenant, hour, first: e.seq, last: e.seq, events: 0, buf });
                    parts.len() - 1
                });
                current = Some((e.tenant, hour, i));
                i
            }
        };
        let p = &mut parts[i];
        encoder.encode_into(&e, &mut p.buf).map_err(format_err)?;
        p.buf.push(b'\n');
        p.last = e.seq;
        p.events += 1;
    }
    let (adopting, adopted) = orphans.settle(batch.last_seq().unwrap_or(0), url)?;
    let mut objects = Vec::with_capacity(parts.len());
    for p in parts {
        let gz = gzip(&p.buf).map_err(|e| SinkError::Transient(format!("{url}: gzip failed: {e}")))?;
        let path = partition_dir(prefix, p.tenant, p.hour).join(object_name(p.first, p.last));
        objects.push(NewObject { path, first: p.first, last: p.last, events: p.events, raw: p.buf, gz });
    }
    Ok(Plan { objects, orphans, adopting, adopted })
}

pub(super) fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 6 + 64), Compression::new(GZIP_LEVEL));
    enc.write_all(data)?;
    enc.finish()
}

/// Decompresses, refusing anything far larger than this sink ever writes.
fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let limit = 4 * super::config::MAX_ROLL_BYTES;
    let mut out = Vec::with_capacity(data.len() * 8);
    MultiGzDecoder::new(data).take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other("larger than any object this sink writes"));
    }
    Ok(out)
}

impl Sink for ObjectStoreSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn recover(&mut self, state: Option<String>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let state = match state {
                None => SinkState { v: 1, ..Default::default() },
                Some(s) => serde_json::from_str::<SinkState>(&s).map_err(|e| {
                    SinkError::Permanent(format!("{}: unreadable sink state {s:?}: {e}", self.dest.url))
                })?,
            };
            if state.v != 1 {
                return Err(SinkError::Permanent(format!(
                    "{}: sink state version {} was written by a newer tines-audit; upgrade it",
                    self.dest.url, state.v
                )));
            }
            // Everything learnt since the last commit is forgotten; listing again finds it.
            let mut state = state;
            self.chain_begins = self.signer.is_some() && state.digest.is_none();
            if let Some(s) = &self.signer
                && state.digest.is_none()
            {
                // The chain begins: objects up to this offset (written before digests were on) predate it.
                state.digest = Some(OpenPeriod::first((s.clock)(), state.offset.unwrap_or(0)));
            }
            self.committed = state;
            self.listed.clear();
            self.orphans = Orphans::default();
            if let Some(dir) = self.dest.local_dir.clone() {
                blocking(move || std::fs::create_dir_all(&dir).map_err(|e| (dir, e)))
                    .await?
                    .map_err(|(dir, e)| SinkError::Permanent(format!("cannot create {}: {e}", dir.display())))?;
            }
            Ok(())
        })
    }

    fn deliver(&mut self, batch: Arc<EventBatch>) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(async move {
            match self.deliver_batch(batch).await {
                Ok(state) => Ok(Some(serde_json::to_string(&state).expect("state serialises"))),
                Err(e) => {
                    // What this attempt learnt may be half-applied: list again on the next one.
                    self.listed.clear();
                    self.orphans = Orphans::default();
                    Err(e)
                }
            }
        })
    }

    fn checkpoint(&mut self) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        // An idle sink still signs each period within one drain interval of its end.
        Box::pin(self.close_and_state(Close::IfDue))
    }

    fn seal(&mut self) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(self.close_and_state(Close::Seal))
    }

    fn policy(&self) -> BatchPolicy {
        self.policy.clone()
    }

    fn health_check(&mut self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(async move {
            if let Some(dir) = self.dest.local_dir.clone() {
                blocking(move || std::fs::create_dir_all(&dir).map_err(|e| (dir, e)))
                    .await?
                    .map_err(|(dir, e)| SinkError::Permanent(format!("cannot create {}: {e}", dir.display())))?;
            }
            check_writes(&self.dest).await
        })
    }
}
