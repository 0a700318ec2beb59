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
//! seconds). Instead, the orphans are found and *adopted*: the events each
//! covers are checked line by line against what this sink would write for
//! them and are not written again. An adoption the batch ends inside of is
//! recorded in the committed state (how many bytes of the object matched so
//! far), so a second crash resumes it. Content that does not match is a
//! permanent error: someone else writes to this prefix.
//!
//! Finding orphans costs no listing on the way of a clean delivery: before a
//! batch is written, the runner commits (through [`Sink::prepare`]) the seq up
//! to which objects past the offset may now exist (`pending`). After a crash,
//! or a failed delivery, only the partitions of events up to it are listed,
//! each once, before their first write. A state that cannot say (none yet, or
//! one an older tines-audit wrote) is settled at recovery by one sweep of the
//! prefix: the highest seq an object there names.
//!
//! A batch's objects (one per tenant and hour it spans: a backfill spans many)
//! are encoded and gzipped one at a time off the async threads, and written
//! `write_concurrency` at a time. Memory is the batch, bounded by the roll
//! size, plus the compressed objects in flight.
//!
//! With a signing key, every object written or adopted is also recorded (key,
//! SHA-256 as stored, size, seqs) in the open period of the committed state, and
//! the period's signed digest is written once it ends ([`super::digest`]).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::Arc;

use ::object_store::path::Path;
use ::object_store::{Attribute, Attributes, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use bytes::Bytes;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
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
    /// Objects past `offset` may hold events up to this seq (a delivery was under way, or
    /// orphans are still to be adopted); `null`: none do. Absent from a state written before
    /// this was recorded, which therefore cannot say ([`UNKNOWN`]).
    #[serde(default = "unknown_pending")]
    pub pending: Option<i64>,
    /// The digest period being recorded (with a signing key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<OpenPeriod>,
}

/// What `pending` says when it cannot say: the prefix is swept at recovery instead.
pub(crate) const UNKNOWN: i64 = i64::MAX;

fn unknown_pending() -> Option<i64> {
    Some(UNKNOWN)
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

/// What a batch comes to: its events grouped into objects to write, the orphans still to
/// adopt, the adoptions to commit, and the digest entries of the orphans it began adopting.
struct Plan {
    parts: Vec<Part>,
    orphans: Orphans,
    adopting: Vec<Adopting>,
    adopted: Vec<Entry>,
}

/// The events of a batch that go into one object: one tenant and hour, in seq order.
struct Part {
    tenant: String,
    hour: i64,
    first: i64,
    last: i64,
    /// Positions in the batch.
    events: Vec<u32>,
}

/// An object encoded and compressed, ready to write; `index` is its part's place in the plan.
struct NewObject {
    index: usize,
    path: Path,
    first: i64,
    last: i64,
    events: usize,
    gz: Vec<u8>,
}

/// Default for `write_concurrency`: object writes in flight at once.
pub const DEFAULT_WRITE_CONCURRENCY: usize = 16;

/// Writes journal batches as gzipped NDJSON objects; see the module docs.
pub struct ObjectStoreSink {
    name: String,
    dest: Destination,
    encoder: Encoder,
    policy: BatchPolicy,
    /// Object writes (and partition listings) in flight at once.
    concurrency: usize,
    /// As of the last recovery or successful delivery (and `pending` as of the last `prepare`).
    committed: SinkState,
    /// Orphans may hold events up to this seq (as of the last recovery): the partitions of
    /// events past the offset up to it are listed before their first write.
    horizon: i64,
    /// Partitions listed for orphans since the last recovery.
    listed: HashSet<(String, i64)>,
    orphans: Orphans,
    /// Signs a digest of each period; `None`: no digests (alerts).
    signer: Option<Signer>,
    /// The committed state had no digest period yet: adoptions it resumes were never listed.
    chain_begins: bool,
}

impl ObjectStoreSink {
    pub(crate) fn new(
        name: String,
        dest: Destination,
        encoder: Encoder,
        policy: BatchPolicy,
        concurrency: usize,
    ) -> Self {
        ObjectStoreSink {
            name,
            dest,
            encoder,
            policy,
            concurrency: concurrency.max(1),
            committed: SinkState { v: 1, ..Default::default() },
            horizon: 0,
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
        if self.committed.pending.is_none_or(|p| p < last) {
            // Without it, a crash during this delivery would leave objects no restart looks for.
            return Err(SinkError::Permanent(format!(
                "{}: internal error: a batch up to seq {last} was delivered without first committing the state \
                 its prepare() returned",
                self.dest.url
            )));
        }
        if self.horizon > floor {
            self.discover(&batch, floor).await?;
        }

        let orphans = std::mem::take(&mut self.orphans);
        let (encoder, url) = (self.encoder.clone(), self.dest.url.clone());
        let b = batch.clone();
        let Plan { parts, orphans, adopting, adopted: mut entries } =
            blocking(move || plan(&b, &encoder, orphans, &url)).await.and_then(|r| r)?;
        self.orphans = orphans;
        entries.extend(self.write(batch, parts).await?);
        let mut open = self.committed.digest.clone();
        if let Some(open) = &mut open {
            open.objects.extend(entries);
        }
        // Orphans past this batch (a restart's) are still to be adopted.
        let pending = (self.horizon > last).then_some(self.horizon);
        self.committed = SinkState { v: 1, offset: Some(last), adopting, pending, digest: open };
        Ok(self.committed.clone())
    }

    /// Lists, `concurrency` at a time, each partition of the batch's events up to the horizon
    /// not listed since the last recovery, and loads the orphans there for adoption.
    async fn discover(&mut self, batch: &EventBatch, floor: i64) -> Result<(), SinkError> {
        let horizon = self.horizon;
        let mut todo: Vec<(&str, i64)> = Vec::new();
        for e in batch.iter().take_while(|e| e.seq <= horizon) {
            let p = (e.tenant, hour_of(e.created_at));
            if todo.last() != Some(&p) {
                todo.push(p);
            }
        }
        todo.sort_unstable();
        todo.dedup();
        todo.retain(|(t, h)| !self.listed.contains(&(t.to_string(), *h)));
        let (dest, committed, chain_begins) = (&self.dest, &self.committed, self.chain_begins);
        let mut todo = todo.into_iter();
        let mut running = FuturesUnordered::new();
        let mut found = Vec::new();
        loop {
            while running.len() < self.concurrency
                && let Some((tenant, hour)) = todo.next()
            {
                running.push(discover_partition(dest, committed, chain_begins, tenant, hour, floor));
            }
            match running.next().await {
                Some(listed) => found.push(listed?),
                None => break,
            }
        }
        drop(running);
        for (tenant, hour, orphans) in found {
            for o in orphans {
                self.orphans.add(tenant, hour, o);
            }
            self.listed.insert((tenant.to_string(), hour));
        }
        Ok(())
    }

    /// Encodes and gzips the parts one at a time off the async threads, and writes them
    /// `concurrency` at a time as they come; returns their digest entries in plan order.
    async fn write(&self, batch: Arc<EventBatch>, parts: Vec<Part>) -> Result<Vec<Entry>, SinkError> {
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<NewObject, SinkError>>(1);
        let (encoder, prefix, url) = (self.encoder.clone(), self.dest.prefix.clone(), self.dest.url.clone());
        let producer = tokio::task::spawn_blocking(move || {
            for (index, part) in parts.into_iter().enumerate() {
                let object = encode(&batch, &encoder, &prefix, &url, index, part);
                let failed = object.is_err();
                // A closed channel: a write failed and the delivery is abandoned.
                if tx.blocking_send(object).is_err() || failed {
                    return;
                }
            }
        });
        let written = self.put_all(rx).await;
        // The receiver is gone: the producer stops at its next object.
        producer.await.map_err(|e| SinkError::Transient(format!("object-store sink task failed: {e}")))?;
        let mut written = written?;
        written.sort_unstable_by_key(|(i, _)| *i);
        Ok(written.into_iter().map(|(_, e)| e).collect())
    }
}

impl ObjectStoreSink {
    /// Writes the objects as they come, `concurrency` at a time; stops at the first failure.
    async fn put_all(
        &self,
        mut rx: tokio::sync::mpsc::Receiver<Result<NewObject, SinkError>>,
    ) -> Result<Vec<(usize, Entry)>, SinkError> {
        let mut running = FuturesUnordered::new();
        let mut written = Vec::new();
        let mut more = true;
        loop {
            tokio::select! {
                next = rx.recv(), if more && running.len() < self.concurrency => match next {
                    Some(object) => running.push(put_object(&self.dest, object?)),
                    None => more = false,
                },
                Some(done) = running.next(), if !running.is_empty() => written.push(done?),
                else => return Ok(written),
            }
        }
    }
}

/// Writes one object; returns its place in the plan and how a digest lists it.
async fn put_object(dest: &Destination, o: NewObject) -> Result<(usize, Entry), SinkError> {
    let stored = put_create(dest, &o.path, o.gz).await?;
    tracing::debug!(object = %o.path, events = o.events, "object-store sink: delivered");
    let key = digest::relative(o.path.as_ref(), &dest.prefix).unwrap_or(o.path.as_ref()).to_string();
    let entry = Entry {
        key,
        sha256: stored.sha256,
        size: stored.size,
        first_seq: o.first,
        last_seq: o.last,
        events: o.events as u64,
    };
    Ok((o.index, entry))
}

/// Lists a partition for objects past the committed offset and loads them for adoption
/// (and, for adoptions the committed state resumes whose object is gone, notes them so).
async fn discover_partition<'a>(
    dest: &Destination,
    committed: &SinkState,
    chain_begins: bool,
    tenant: &'a str,
    hour: i64,
    floor: i64,
) -> Result<(&'a str, i64, Vec<Orphan>), SinkError> {
    let dir = partition_dir(&dest.prefix, tenant, hour);
    let listing =
        dest.store.list_with_delimiter(Some(&dir)).await.map_err(|e| classify(e, dest, &format!("listing {dir}")))?;
    let mut found = HashSet::new();
    let mut orphans = Vec::new();
    for meta in listing.objects {
        let Some((first, last)) = meta.location.filename().and_then(parse_name) else { continue };
        if last <= floor {
            continue;
        }
        let key = meta.location.to_string();
        let resumed = committed.adopting.iter().find(|a| a.key == key);
        let verified = match resumed {
            Some(a) => a.verified,
            None if first > floor => 0,
            None => {
                return Err(SinkError::Permanent(format!(
                    "{}: {key} holds journal seqs {first}..={last}, across the committed offset {floor}, which \
                     this sink never writes: was the journal restored from an older backup, or does another \
                     tines-audit write to this prefix? Move the object away (its events past {floor} will be \
                     written again) or give this sink its own prefix",
                    dest.url
                )));
            }
        };
        let Fetched { body, sha256, size } = fetch(dest, &meta.location).await?;
        // Recorded in a digest by the batch that starts adopting it; a resumed adoption already was.
        let entry = (resumed.is_none() || chain_begins).then(|| Entry {
            key: digest::relative(&key, &dest.prefix).unwrap_or(&key).to_string(),
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
                dest.url,
                body.len()
            )));
        }
        tracing::info!(
            object = %key, first, last, committed = floor,
            "object-store sink: found an object written after the last commit (a restart between a write and \
             its commit); adopting it instead of writing its events again"
        );
        found.insert(key);
        orphans.push(Orphan { key: meta.location, first, last, body: Some(body), verified, entry });
    }
    let dir_prefix = format!("{dir}/");
    for a in &committed.adopting {
        if a.key.starts_with(&dir_prefix) && !found.contains(&a.key) {
            let Some((first, _)) = a.key.rsplit('/').next().and_then(parse_name) else { continue };
            let Ok(key) = Path::parse(&a.key) else { continue };
            tracing::warn!(
                object = %a.key,
                "object-store sink: an object being adopted is gone (deleted after ingestion?); \
                 its remaining events count as delivered"
            );
            orphans.push(Orphan { key, first, last: a.last, body: None, verified: a.verified, entry: None });
        }
    }
    Ok((tenant, hour, orphans))
}

/// The highest seq any object under the prefix names (0 for none): what a state that cannot
/// say how far its objects go is taken to have pending. One listing of the whole prefix.
async fn sweep(dest: &Destination) -> Result<i64, SinkError> {
    let mut listing = dest.store.list(Some(&dest.prefix));
    let mut highest = 0;
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| classify(e, dest, &format!("listing {}", dest.prefix)))?;
        if let Some((_, last)) = meta.location.filename().and_then(parse_name) {
            highest = highest.max(last);
        }
    }
    Ok(highest)
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
/// holding the same content (uncompressed: gzip may differ) counts as written.
pub(super) async fn put_create(dest: &Destination, path: &Path, gz: Vec<u8>) -> Result<Stored, SinkError> {
    let mut attributes = Attributes::new();
    if dest.backend != Backend::Local {
        attributes.insert(Attribute::ContentType, "application/gzip".into());
    }
    let opts = PutOptions { mode: PutMode::Create, attributes, ..Default::default() };
    let size = gz.len();
    let sha256 = sha256_hex(&gz);
    let gz = Bytes::from(gz);
    match dest.store.put_opts(path, PutPayload::from(gz.clone()), opts).await {
        Ok(_) => {
            tracing::debug!(object = %path, bytes = size, "object-store sink: wrote");
            Ok(Stored { sha256, size: size as u64 })
        }
        Err(::object_store::Error::AlreadyExists { .. } | ::object_store::Error::Precondition { .. }) => {
            let there = fetch(dest, path).await?;
            let ours = blocking(move || gunzip(&gz)).await?.map_err(|e| {
                SinkError::Transient(format!("{}: cannot read back the object just compressed: {e}", dest.url))
            })?;
            if there.body == ours {
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

/// Groups a batch into objects by partition, skipping (and checking) events that orphans already hold.
fn plan(batch: &EventBatch, encoder: &Encoder, mut orphans: Orphans, url: &str) -> Result<Plan, SinkError> {
    let mut parts: Vec<Part> = Vec::new();
    let mut index: HashMap<(&str, i64), usize> = HashMap::new();
    let mut current: Option<(&str, i64, usize)> = None;
    let mut line = Vec::new();
    for (i, e) in batch.iter().enumerate() {
        let hour = hour_of(e.created_at);
        if let Some(o) = orphans.covering(e.tenant, hour, e.seq) {
            line.clear();
            encoder.encode_into(&e, &mut line).map_err(|err| SinkError::Permanent(format!("{url}: {err}")))?;
            line.push(b'\n');
            o.verify(&line, e.seq, url)?;
            continue;
        }
        let p = match current {
            Some((t, h, p)) if t == e.tenant && h == hour => p,
            _ => {
                let p = *index.entry((e.tenant, hour)).or_insert_with(|| {
                    let tenant = e.tenant.to_string();
                    parts.push(Part { tenant, hour, first: e.seq, last: e.seq, events: Vec::new() });
                    parts.len() - 1
                });
                current = Some((e.tenant, hour, p));
                p
            }
        };
        let part = &mut parts[p];
        part.events.push(u32::try_from(i).expect("a batch holds fewer than 2^32 events"));
        part.last = e.seq;
    }
    let (adopting, adopted) = orphans.settle(batch.last_seq().unwrap_or(0), url)?;
    Ok(Plan { parts, orphans, adopting, adopted })
}

/// One part's events, encoded a line each and gzipped as they are encoded (the uncompressed
/// object is never held whole).
fn encode(
    batch: &EventBatch,
    encoder: &Encoder,
    prefix: &Path,
    url: &str,
    index: usize,
    part: Part,
) -> Result<NewObject, SinkError> {
    const CHUNK: usize = 64 * 1024;
    let gzip_err = |e: std::io::Error| SinkError::Transient(format!("{url}: gzip failed: {e}"));
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(GZIP_LEVEL));
    let mut chunk = Vec::with_capacity(2 * CHUNK);
    for &i in &part.events {
        let e = batch.get(i as usize).expect("a position in this batch");
        encoder.encode_into(&e, &mut chunk).map_err(|err| SinkError::Permanent(format!("{url}: {err}")))?;
        chunk.push(b'\n');
        if chunk.len() >= CHUNK {
            gz.write_all(&chunk).map_err(gzip_err)?;
            chunk.clear();
        }
    }
    gz.write_all(&chunk).map_err(gzip_err)?;
    let gz = gz.finish().map_err(gzip_err)?;
    Ok(NewObject {
        index,
        path: partition_dir(prefix, &part.tenant, part.hour).join(object_name(part.first, part.last)),
        first: part.first,
        last: part.last,
        events: part.events.len(),
        gz,
    })
}

/// A whole buffer gzipped as the sink does (tests build objects with it).
#[cfg(test)]
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
            let had_state = state.is_some();
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
            let floor = self.committed.offset.unwrap_or(0);
            self.horizon = match self.committed.pending {
                // No state (an older tines-audit may have written before its first commit, or
                // the sink was renamed over a lake), or one from before `pending`: ask the prefix.
                _ if !had_state => sweep(&self.dest).await?,
                Some(UNKNOWN) => sweep(&self.dest).await?,
                pending => pending.unwrap_or(floor),
            };
            self.committed.pending = (self.horizon > floor).then_some(self.horizon);
            Ok(())
        })
    }

    fn prepare(&mut self, batch: &EventBatch) -> Option<String> {
        let last = batch.last_seq()?;
        if self.committed.pending.is_some_and(|p| p >= last) {
            return None;
        }
        self.committed.pending = Some(last);
        Some(serde_json::to_string(&self.committed).expect("state serialises"))
    }

    fn deliver(&mut self, batch: Arc<EventBatch>) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(async move {
            match self.deliver_batch(batch).await {
                Ok(state) => Ok(Some(serde_json::to_string(&state).expect("state serialises"))),
                Err(e) => {
                    // What this attempt learnt may be half-applied, and it may have written
                    // objects up to what it prepared: list again on the next one.
                    self.listed.clear();
                    self.orphans = Orphans::default();
                    self.horizon = self.horizon.max(self.committed.pending.unwrap_or(0));
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
