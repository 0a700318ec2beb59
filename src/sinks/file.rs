//! NDJSON files: one raw record a line, appended to an active file and
//! rotated by size into `<stem>.<first seq>-<last seq>.<ext>` beside it.
//!
//! Exactly-once across crashes: the committed state records the active
//! file's length at the committed offset. On start the file is cut back to
//! that length, dropping whatever was written after the last commit, and
//! the runner resumes from the offset. A rotation renames to a name derived
//! from the committed seq range, so replaying an interrupted one is harmless.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{BoxFuture, Sink, SinkError};
use crate::journal::EventBatch;

pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct FileState {
    v: u32,
    /// Length of the active file at the committed offset.
    len: u64,
    /// Seq range in the active file.
    first_seq: Option<i64>,
    last_seq: Option<i64>,
}

struct Inner {
    path: PathBuf,
    max_bytes: u64,
    state: FileState,
    encoder: crate::format::Encoder,
}

pub struct FileSink {
    name: String,
    inner: Arc<Mutex<Inner>>,
}

impl FileSink {
    pub fn new(name: String, path: PathBuf, max_bytes: u64) -> Self {
        let state = FileState { v: 1, ..Default::default() };
        let encoder = crate::format::Encoder::new(crate::format::Shape::Raw, None);
        FileSink { name, inner: Arc::new(Mutex::new(Inner { path, max_bytes, state, encoder })) }
    }

    /// Writes events in another shape, or pseudonymised.
    pub fn with_encoder(self, encoder: crate::format::Encoder) -> Self {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).encoder = encoder;
        self
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, SinkError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
            let path = g.path.display().to_string();
            f(&mut g).map_err(|e| SinkError::Transient(format!("file sink {path}: {e}")))
        })
        .await
        .map_err(|e| SinkError::Transient(format!("file sink task failed: {e}")))?
    }
}

fn rotated_name(path: &Path, first: i64, last: i64) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "audit".into());
    let ext = path.extension().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "ndjson".into());
    path.with_file_name(format!("{stem}.{first:012}-{last:012}.{ext}"))
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Inner {
    fn recover(&mut self, state: FileState) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        self.state = state;
        let on_disk = std::fs::metadata(&self.path).map(|m| m.len()).ok();
        match on_disk {
            Some(len) if len > self.state.len => {
                // Written after the last commit: the runner delivers those events again.
                OpenOptions::new().write(true).open(&self.path)?.set_len(self.state.len)?;
                tracing::info!(path = %self.path.display(), dropped = len - self.state.len, "file sink: cut uncommitted tail");
            }
            Some(len) if len < self.state.len => {
                return Err(std::io::Error::other(format!(
                    "{} is shorter ({len} bytes) than committed ({} bytes): it was modified outside tines-audit",
                    self.path.display(),
                    self.state.len
                )));
            }
            Some(_) => {}
            None if self.state.len > 0 => {
                // A rotation renamed the file but did not get to commit: finish it.
                let (Some(first), Some(last)) = (self.state.first_seq, self.state.last_seq) else {
                    return Err(std::io::Error::other("active file missing and no rotation recorded"));
                };
                if !rotated_name(&self.path, first, last).exists() {
                    return Err(std::io::Error::other(format!(
                        "{} is missing although {} bytes were committed to it",
                        self.path.display(),
                        self.state.len
                    )));
                }
                self.state = FileState { v: 1, ..Default::default() };
            }
            None => {}
        }
        Ok(())
    }

    fn write(&mut self, batch: &EventBatch) -> std::io::Result<FileState> {
        let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        let mut w = BufWriter::with_capacity(256 * 1024, file);
        let mut bytes = 0u64;
        let mut line = Vec::with_capacity(4096);
        for e in batch.iter() {
            line.clear();
            self.encoder.encode_into(&e, &mut line).map_err(std::io::Error::other)?;
            line.push(b'\n');
            w.write_all(&line)?;
            bytes += line.len() as u64;
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()?;
        if self.state.len == 0 {
            sync_dir(&self.path)?;
        }
        let mut next = self.state.clone();
        next.len += bytes;
        next.first_seq = next.first_seq.or(batch.first_seq());
        next.last_seq = batch.last_seq().or(next.last_seq);
        self.state = next.clone();
        Ok(next)
    }

    /// Rotates a full active file; returns the new state to commit.
    fn rotate_if_full(&mut self) -> std::io::Result<Option<FileState>> {
        if self.state.len < self.max_bytes {
            return Ok(None);
        }
        let (Some(first), Some(last)) = (self.state.first_seq, self.state.last_seq) else { return Ok(None) };
        std::fs::rename(&self.path, rotated_name(&self.path, first, last))?;
        sync_dir(&self.path)?;
        self.state = FileState { v: 1, ..Default::default() };
        Ok(Some(self.state.clone()))
    }
}

fn encode(s: &FileState) -> String {
    serde_json::to_string(s).expect("state serialises")
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn recover(&mut self, state: Option<String>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let state = match state {
                Some(s) => serde_json::from_str(&s).map_err(|e| {
                    SinkError::Permanent(format!("file sink {}: unreadable state {s:?}: {e}", self.name))
                })?,
                None => FileState { v: 1, ..Default::default() },
            };
            self.blocking(move |i| i.recover(state)).await
        })
    }

    fn deliver(&mut self, batch: Arc<EventBatch>) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(async move { self.blocking(move |i| i.write(&batch)).await.map(|s| Some(encode(&s))) })
    }

    fn checkpoint(&mut self) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(async move { self.blocking(|i| i.rotate_if_full()).await.map(|s| s.map(|s| encode(&s))) })
    }

    fn health_check(&mut self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(async move {
            self.blocking(|i| {
                let dir = i.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Journal, Record, WindowCommit};
    use crate::sinks::BatchPolicy;
    use crate::sinks::runner::{Consumer, Flush};

    fn journal_with(n: i64) -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j")).unwrap();
        j.start_progress("t", "cursor", 0, None, "").unwrap();
        let raws: Vec<String> = (1..=n).map(|i| format!("{{\"id\":{i},\"pad\":\"{}\"}}", "x".repeat(50))).collect();
        let recs = raws.iter().enumerate().map(|(i, raw)| Record {
            id: i as i64 + 1,
            created_at: i as i64,
            operation_name: "Login",
            user_id: None,
            user_email: None,
            request_ip: None,
            raw,
        });
        j.commit_window(&WindowCommit { tenant: "t", job: "cursor", from: 0, to: 1, fetched: n as u64 }, recs).unwrap();
        (dir, j)
    }

    fn ids_in(dir: &Path) -> Vec<i64> {
        let mut ids = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            for line in std::fs::read_to_string(f).unwrap().lines() {
                ids.push(serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].as_i64().unwrap());
            }
        }
        ids.sort_unstable();
        ids
    }

    #[tokio::test]
    async fn uncommitted_tail_is_cut_on_restart_so_nothing_doubles() {
        let (dir, j) = journal_with(100);
        let path = dir.path().join("out/a.ndjson");
        let policy = BatchPolicy { max_events: 30, max_bytes: usize::MAX, linger: std::time::Duration::ZERO };
        let mut c = Consumer::new(Box::new(FileSink::new("f".into(), path.clone(), DEFAULT_MAX_BYTES)))
            .with_policy(policy.clone());
        assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 100);
        // A crash after writing a batch but before committing its offset:
        let committed = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"id\":1}\n{\"id\":2").unwrap();
        let mut again = Consumer::new(Box::new(FileSink::new("f".into(), path.clone(), DEFAULT_MAX_BYTES)))
            .with_policy(policy.clone());
        assert_eq!(again.drain(&j, Flush::All).await.unwrap(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), committed);
        assert_eq!(ids_in(path.parent().unwrap()), (1..=100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn rotates_by_size_into_names_from_the_seq_range() {
        let (dir, j) = journal_with(100);
        let path = dir.path().join("out/a.ndjson");
        let policy = BatchPolicy { max_events: 10, max_bytes: usize::MAX, linger: std::time::Duration::ZERO };
        let mut c = Consumer::new(Box::new(FileSink::new("f".into(), path.clone(), 1500))).with_policy(policy.clone());
        c.drain(&j, Flush::All).await.unwrap();
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "a.000000000001-000000000030.ndjson"), "{names:?}");
        assert!(names.len() > 3, "{names:?}");
        assert_eq!(ids_in(path.parent().unwrap()), (1..=100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_rotation_interrupted_before_its_commit_is_finished_on_restart() {
        let (dir, j) = journal_with(40);
        let path = dir.path().join("out/a.ndjson");
        let policy = BatchPolicy { max_events: 20, max_bytes: usize::MAX, linger: std::time::Duration::ZERO };
        let mut c =
            Consumer::new(Box::new(FileSink::new("f".into(), path.clone(), u64::MAX))).with_policy(policy.clone());
        c.drain(&j, Flush::All).await.unwrap();
        // Simulate: rename done, state not committed.
        std::fs::rename(&path, rotated_name(&path, 1, 40)).unwrap();
        let mut again =
            Consumer::new(Box::new(FileSink::new("f".into(), path.clone(), u64::MAX))).with_policy(policy.clone());
        assert_eq!(again.drain(&j, Flush::All).await.unwrap(), 0);
        assert_eq!(ids_in(path.parent().unwrap()), (1..=40).collect::<Vec<_>>());
    }
}
