//! NDJSON files: one record a line, appended to an active file and rotated
//! by size into `<stem>.<first seq>-<last seq>.<ext>` beside it.
//!
//! Exactly-once across crashes rests on a record kept beside the file
//! (`<file>.tines-audit`, replaced atomically): what the active file holds
//! (length, seq range) and the highest seq written to any file. It is written
//! after the data is synced and before the runner may commit the offset, so
//! the files are never behind the journal: bytes past the recorded length were
//! never acknowledged and are cut on start, and events up to the recorded seq
//! are skipped when the journal hands them over again (one delivery behind
//! after a kill, or further after a system crash rolled it back). Nothing else
//! is ever cut or renamed over; what recovery cannot explain stops the sink
//! with what to do (see [`recover`]).

mod recover;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{BoxFuture, Sink, SinkError};
use crate::journal::EventBatch;

pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;

/// The same path, spelled one way (`out//./a.ndjson` is `out/a.ndjson`), so one
/// file is one consumer. `..` stays: it cannot be resolved without the filesystem.
pub fn normalize(path: &Path) -> PathBuf {
    let clean: PathBuf = path.components().filter(|c| !matches!(c, Component::CurDir)).collect();
    if clean.as_os_str().is_empty() { PathBuf::from(".") } else { clean }
}

/// The files of one target: the active file and what the sink keeps beside it.
#[derive(Debug, Clone)]
struct Paths {
    active: PathBuf,
    /// The record of what the sink wrote (see [`Record`]).
    record: PathBuf,
    /// Where the next record is written before it is renamed over the record.
    temp: PathBuf,
    /// Held while a sink writes here, so two sinks never share a file.
    lock: PathBuf,
}

impl Paths {
    fn new(active: PathBuf) -> Self {
        let beside = |suffix: &str| {
            let mut s = active.clone().into_os_string();
            s.push(suffix);
            PathBuf::from(s)
        };
        Paths {
            record: beside(".tines-audit"),
            temp: beside(".tines-audit.tmp"),
            lock: beside(".tines-audit.lock"),
            active,
        }
    }

    fn dir(&self) -> &Path {
        self.active.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
    }

    fn stem_ext(&self) -> (String, String) {
        let stem = self.active.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "audit".into());
        let ext = self.active.extension().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "ndjson".into());
        (stem, ext)
    }

    fn segment(&self, first: i64, last: i64) -> PathBuf {
        let (stem, ext) = self.stem_ext();
        self.active.with_file_name(format!("{stem}.{first:012}-{last:012}.{ext}"))
    }

    /// The rotated segments beside the active file, as `(first seq, last seq)`.
    fn segments(&self) -> std::io::Result<Vec<(i64, i64)>> {
        let (stem, ext) = self.stem_ext();
        let entries = match std::fs::read_dir(self.dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let Some(range) = name.to_str().and_then(|n| n.strip_prefix(&stem)?.strip_prefix('.')) else { continue };
            let Some((first, last)) = range.strip_suffix(&ext).and_then(|r| r.strip_suffix('.')?.split_once('-'))
            else {
                continue;
            };
            let seq = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<i64>().ok()).flatten();
            if let (Some(f), Some(l)) = (seq(first), seq(last)) {
                found.push((f, l));
            }
        }
        found.sort_unstable();
        Ok(found)
    }
}

/// What the sink has written to its target, kept in `<file>.tines-audit` and
/// replaced atomically after every change, before the journal can commit
/// anything that depends on it. The files are never behind it, and it is
/// never behind the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    v: u32,
    /// Which consumer writes this target; its committed state names it too.
    owner: String,
    /// The journal has committed a state naming `owner`. Until then nothing
    /// this sink wrote can be committed, so it may be cut if the journal has no record.
    confirmed: bool,
    /// Length of the active file. Its first `kept` bytes were there before the
    /// sink adopted it; the rest are whole lines the sink wrote.
    len: u64,
    kept: u64,
    /// The seqs written to the active file (they name its segment).
    first_seq: Option<i64>,
    last_seq: Option<i64>,
    /// The highest seq written to any file of the target (0: none), and that
    /// event's tenant and id, to notice a journal that numbers events anew.
    delivered: i64,
    delivered_key: Option<(String, i64)>,
}

impl Record {
    /// A record for a target this consumer starts on (or adopts as it is).
    fn new(owner: String, confirmed: bool, len: u64, delivered: i64) -> Self {
        Record {
            v: 2,
            owner,
            confirmed,
            len,
            kept: len,
            first_seq: None,
            last_seq: None,
            delivered,
            delivered_key: None,
        }
    }

    /// The record once the active file is renamed to its segment.
    fn rotated(&self) -> Self {
        Record { len: 0, kept: 0, first_seq: None, last_seq: None, ..self.clone() }
    }
}

/// The state committed with the offset: who writes the target, and the seq
/// the offset stands at (a record behind it means the files lost data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Committed {
    v: u32,
    owner: String,
    at: i64,
}

/// Why the file sink stopped.
#[derive(Debug)]
enum Stop {
    /// The disk failed (full, permissions, I/O): retried.
    Io(std::io::Error),
    /// The target holds data this consumer has no record of, or another sink
    /// writes it: nothing was changed (exit 2).
    Refused(String),
    /// The target disagrees with its record in a way recovery cannot explain:
    /// nothing was changed, an operator must look.
    Broken(String),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Io(e)
    }
}

struct Inner {
    paths: Paths,
    max_bytes: u64,
    /// Keep a target this consumer has no record of as it is, and append after it.
    adopt: bool,
    encoder: crate::format::Encoder,
    /// The record as on disk (plus `confirmed`, which is saved with the next change); `None` until recovered.
    record: Option<Record>,
    lock: Option<File>,
    /// A state was handed to the runner; when it calls again, it has committed it.
    handed_out: bool,
    /// The journal must learn the owner before anything is written (a new or adopted target).
    announce: bool,
    #[cfg(test)]
    crash: Option<Arc<tests::Crash>>,
}

pub struct FileSink {
    name: String,
    inner: Arc<Mutex<Inner>>,
}

impl FileSink {
    pub fn new(name: String, path: PathBuf, max_bytes: u64) -> Self {
        let encoder = crate::format::Encoder::new(crate::format::Shape::Raw, None);
        let inner = Inner {
            paths: Paths::new(normalize(&path)),
            max_bytes,
            adopt: false,
            encoder,
            record: None,
            lock: None,
            handed_out: false,
            announce: false,
            #[cfg(test)]
            crash: None,
        };
        FileSink { name, inner: Arc::new(Mutex::new(inner)) }
    }

    /// Writes events in another shape, or pseudonymised.
    pub fn with_encoder(self, encoder: crate::format::Encoder) -> Self {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).encoder = encoder;
        self
    }

    /// Keeps a file (and segments) this consumer has no record of as they are,
    /// and appends after them, instead of refusing to start.
    pub fn adopting_existing(self, adopt: bool) -> Self {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).adopt = adopt;
        self
    }

    #[cfg(test)]
    fn with_crash(self, crash: Arc<tests::Crash>) -> Self {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).crash = Some(crash);
        self
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, Stop> + Send + 'static,
    ) -> Result<T, SinkError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
            let path = g.paths.active.display().to_string();
            f(&mut g).map_err(|e| match e {
                Stop::Io(e) => SinkError::Transient(format!("file sink {path}: {e}")),
                Stop::Refused(m) => SinkError::Refused(m),
                Stop::Broken(m) => SinkError::Permanent(m),
            })
        })
        .await
        .map_err(|e| SinkError::Transient(format!("file sink task failed: {e}")))?
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Inner {
    /// A point between two steps on disk where the tests can stop the sink as a kill would.
    fn step(&self, _what: &'static str) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(c) = &self.crash {
            c.step(_what)?;
        }
        Ok(())
    }

    /// Called on each request from the runner: it asks again only after committing what it was given.
    fn runner_committed(&mut self) {
        if std::mem::take(&mut self.handed_out)
            && let Some(r) = &mut self.record
        {
            r.confirmed = true;
        }
    }

    fn committed(&mut self, at: i64) -> String {
        self.handed_out = true;
        let owner = self.record.as_ref().map(|r| r.owner.clone()).unwrap_or_default();
        serde_json::to_string(&Committed { v: 2, owner, at }).expect("state serialises")
    }

    /// Replaces the record: temp file, fsync, rename, directory fsync.
    fn store(&self, r: &Record) -> std::io::Result<()> {
        let mut f = File::create(&self.paths.temp)?;
        f.write_all(&serde_json::to_vec(r).expect("record serialises"))?;
        f.sync_all()?;
        self.step("record written")?;
        std::fs::rename(&self.paths.temp, &self.paths.record)?;
        self.step("record renamed")?;
        sync_dir(self.paths.dir())?;
        self.step("record synced")
    }

    fn write(&mut self, batch: &EventBatch) -> Result<i64, Stop> {
        self.step("deliver")?;
        self.runner_committed();
        let Some(mut r) = self.record.clone() else {
            return Err(Stop::Broken("file sink: delivery before recovery (a bug)".into()));
        };
        let Some(last) = batch.last_seq() else { return Ok(r.delivered) };
        // What the files already hold comes again after a kill or a journal rolled back: skip it,
        // but only if the journal still numbers the last event written as the files do.
        if let Some((tenant, id)) = &r.delivered_key
            && let Some(e) = batch.iter().find(|e| e.seq == r.delivered)
            && (e.tenant != tenant || e.id != *id)
        {
            return Err(Stop::Broken(format!(
                "{}: the journal now numbers event {} of tenant {} as seq {}, which this file holds as event {id} of tenant {tenant}: the journal lost commits (a system crash, or a restored backup) and numbered events anew. Move {}, its segments and its record {} aside and set adopt_existing = true to start a new file from the journal's offset (the moved files may hold some of its events too)",
                self.paths.active.display(),
                e.id,
                e.tenant,
                e.seq,
                self.paths.active.display(),
                self.paths.record.display()
            )));
        }
        let Some(first) = batch.iter().map(|e| e.seq).find(|s| *s > r.delivered) else { return Ok(last) };
        let file = OpenOptions::new().create(true).append(true).open(&self.paths.active)?;
        let mut w = BufWriter::with_capacity(256 * 1024, file);
        let (mut bytes, mut line, mut key) = (0u64, Vec::with_capacity(4096), None);
        for e in batch.iter().filter(|e| e.seq > r.delivered) {
            line.clear();
            self.encoder.encode_into(&e, &mut line).map_err(std::io::Error::other)?;
            line.push(b'\n');
            w.write_all(&line)?;
            bytes += line.len() as u64;
            key = Some((e.tenant.to_string(), e.id));
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        #[cfg(test)]
        if let Some(c) = &self.crash {
            c.tear(&file, r.len, bytes)?;
        }
        self.step("appended")?;
        file.sync_data()?;
        self.step("synced")?;
        if r.len == 0 {
            // A new file: its name must be durable before the record says it holds data.
            sync_dir(self.paths.dir())?;
            self.step("created")?;
        }
        r.len += bytes;
        r.first_seq = r.first_seq.or(Some(first));
        r.last_seq = Some(last);
        r.delivered = last;
        r.delivered_key = key;
        self.store(&r)?;
        self.record = Some(r);
        Ok(last)
    }

    /// Rotates a full active file; says whether the runner should commit a state now.
    fn checkpoint(&mut self) -> Result<Option<i64>, Stop> {
        self.runner_committed();
        let Some(r) = self.record.clone() else { return Ok(None) };
        // Rotating before the journal knows the owner would put data beyond what a restart may cut.
        if r.confirmed
            && r.len >= self.max_bytes
            && let (Some(first), Some(last)) = (r.first_seq, r.last_seq)
        {
            let segment = self.paths.segment(first, last);
            if std::fs::symlink_metadata(&segment).is_ok() {
                return Err(Stop::Broken(format!(
                    "cannot rotate {}: {} already exists and is never written over; move it aside",
                    self.paths.active.display(),
                    segment.display()
                )));
            }
            self.step("rotate")?;
            std::fs::rename(&self.paths.active, &segment)?;
            self.step("renamed")?;
            sync_dir(self.paths.dir())?;
            self.step("rename synced")?;
            let next = r.rotated();
            self.store(&next)?;
            self.record = Some(next);
        }
        Ok(std::mem::take(&mut self.announce).then(|| self.record.as_ref().map_or(0, |r| r.delivered)))
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn recover(&mut self, state: Option<String>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move { self.blocking(move |i| i.recover(state.as_deref())).await })
    }

    fn deliver(&mut self, batch: Arc<EventBatch>) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(async move {
            self.blocking(move |i| {
                let at = i.write(&batch)?;
                Ok(Some(i.committed(at)))
            })
            .await
        })
    }

    fn checkpoint(&mut self) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(async move { self.blocking(|i| Ok(i.checkpoint()?.map(|at| i.committed(at)))).await })
    }

    fn health_check(&mut self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(async move {
            self.blocking(|i| {
                let dir = i.paths.dir().to_path_buf();
                std::fs::create_dir_all(&dir)?;
                let probe = dir.join(".tines-audit-write-test");
                std::fs::write(&probe, b"ok")?;
                std::fs::remove_file(&probe)?;
                Ok(format!("{} is writable", dir.display()))
            })
            .await
        })
    }
}
