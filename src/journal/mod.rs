//! The journal: every collected record exactly as Tines sent it, each tenant's
//! collection progress, a durable offset per consumer (sink, detector, alert
//! output), alerts, and what search and reports read.
//!
//! It lives in a database behind the [`Backend`] trait: SQLite in the data
//! directory (embedded, the default; [`sqlite`]) or a PostgreSQL server that
//! several instances share ([`postgres`]). [`Journal`] is a cheap handle over
//! one backend; every method blocks, and async code calls them through
//! [`Journal::call`], which runs them on tokio's blocking pool.

mod backend;
pub mod chain;
pub mod checkpoint;
#[cfg(test)]
pub(crate) mod conformance;
pub mod dump;
mod postgres;
mod retention;
mod sqlite;
#[cfg(test)]
pub(crate) mod testing;
pub mod text;
pub mod triage;

use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use backend::{
    Backend, DetectionStep, EventQuery, FacetKeys, Fence, FoundEvent, IndexState, LeaseRow, LeaseView, Ledger, Place,
    TextTerm,
};
pub use retention::{Pruned, Readers, SEARCH_INDEXER};
pub use triage::{AlertChange, AlertCounts, AlertGroup, AlertQuery, AlertStatus, TriageChange, Triaged, TriagedAlert};

/// The first string past every string starting with `prefix` (bytewise; an ASCII prefix).
pub(crate) fn prefix_end(prefix: &str) -> String {
    if !prefix.is_ascii() {
        return "\u{10ffff}".to_string();
    }
    let mut b = prefix.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0x7f {
            b.push(last + 1);
            return String::from_utf8(b).expect("ASCII");
        }
    }
    "\u{10ffff}".to_string()
}
pub use sqlite::SCHEMA_VERSION;
#[cfg(test)]
pub(crate) use sqlite::three_events;

/// What can go wrong with the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error(
        "the journal cannot grow: the disk is full (or the journal reached journal.max_size); collection is paused and resumes by itself once space is freed"
    )]
    DiskFull,
    #[error("cannot use data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "another tines-audit process is collecting into {0}; stop it first (only one collector may write a data directory)"
    )]
    Locked(PathBuf),
    #[error(
        "the journal was written by a newer tines-audit (schema {found}, this build knows {supported}); upgrade tines-audit or restore a backup"
    )]
    TooNew { found: i64, supported: i64 },
    #[error(
        "progress of {tenant}/{job} moved underneath us: expected position {expected}, found {found}; is another collector writing this data directory?"
    )]
    ProgressConflict { tenant: String, job: String, expected: i64, found: i64 },
    #[error("offset of consumer {name} moved underneath us: expected {expected}, found {found}")]
    OffsetConflict { name: String, expected: i64, found: i64 },
    #[error("no journal in {0}: nothing has been collected into it yet")]
    Missing(PathBuf),
    #[error(
        "the journal in {dir} was written by an older tines-audit (schema {found}; this build reads {supported}) and readers never change a journal: run `tines-audit collect` (or the daemon) once with this build to upgrade it"
    )]
    NeedsUpgrade { dir: PathBuf, found: i64, supported: i64 },
    #[error("journal task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Config(String),
    #[error("journal database error: {0}")]
    Database(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "the journal at {0} already holds data; a journal is only imported into an empty one (nothing there is changed)"
    )]
    NotEmpty(String),
    #[error(
        "{job}: this instance ({holder}) no longer holds the lease (token {token} is stale: another instance took the job over), so its commit was refused"
    )]
    Fenced { job: String, holder: String, token: i64 },
}

/// The compare-and-set every backend does before moving a job's position: refused unless
/// the stored position `found` is the `expected` one.
pub(crate) fn check_position(tenant: &str, job: &str, expected: i64, found: i64) -> Result<(), JournalError> {
    if found == expected {
        return Ok(());
    }
    Err(JournalError::ProgressConflict { tenant: tenant.to_string(), job: job.to_string(), expected, found })
}

/// One record to append, borrowed from the page it came in.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub id: i64,
    pub created_at: i64,
    pub operation_name: &'a str,
    pub user_id: Option<i64>,
    pub user_email: Option<&'a str>,
    pub request_ip: Option<&'a str>,
    /// The record exactly as Tines sent it.
    pub raw: &'a str,
}

/// A step of collection: the range `[from, to)` of a progress job is now
/// complete. `from` must equal the stored position, or the commit is refused.
#[derive(Debug, Clone)]
pub struct WindowCommit<'a> {
    pub tenant: &'a str,
    pub job: &'a str,
    pub from: i64,
    pub to: i64,
    pub fetched: u64,
}

/// How far a tenant's collection job has got: everything created before
/// `position` (and at or after `range_start`) has been collected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    pub tenant: String,
    pub job: String,
    pub range_start: i64,
    pub range_end: Option<i64>,
    pub position: i64,
    pub filter: String,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// A consumer's durable offset: it has handled every event with `seq <= position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerOffset {
    pub position: i64,
    pub state: Option<String>,
}

/// Events read for a consumer, with all raw text in one buffer so a batch of
/// thousands costs a handful of allocations.
#[derive(Debug, Default)]
pub struct EventBatch {
    buf: String,
    items: Vec<BatchItem>,
}

#[derive(Debug, Clone)]
struct BatchItem {
    seq: i64,
    tenant: String,
    id: i64,
    created_at: i64,
    raw: Range<usize>,
}

/// One event of an [`EventBatch`].
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    pub seq: i64,
    pub tenant: &'a str,
    pub id: i64,
    pub created_at: i64,
    pub raw: &'a str,
}

impl EventBatch {
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Bytes of raw record text in the batch.
    pub fn raw_bytes(&self) -> usize {
        self.buf.len()
    }
    pub fn last_seq(&self) -> Option<i64> {
        self.items.last().map(|i| i.seq)
    }
    pub fn first_seq(&self) -> Option<i64> {
        self.items.first().map(|i| i.seq)
    }
    /// Appends an item (for batches that are not read from the events table, such as alerts).
    pub fn push(&mut self, seq: i64, tenant: &str, id: i64, created_at: i64, raw: &str) {
        let start = self.buf.len();
        self.buf.push_str(raw);
        self.items.push(BatchItem { seq, tenant: tenant.to_string(), id, created_at, raw: start..self.buf.len() });
    }
    /// The event at position `i` of the batch.
    pub fn get(&self, i: usize) -> Option<StoredEvent<'_>> {
        self.items.get(i).map(|i| StoredEvent {
            seq: i.seq,
            tenant: &i.tenant,
            id: i.id,
            created_at: i.created_at,
            raw: &self.buf[i.raw.clone()],
        })
    }
    pub fn iter(&self) -> impl Iterator<Item = StoredEvent<'_>> {
        self.items.iter().map(|i| StoredEvent {
            seq: i.seq,
            tenant: &i.tenant,
            id: i.id,
            created_at: i.created_at,
            raw: &self.buf[i.raw.clone()],
        })
    }
}

/// An alert to store.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// Unique and stable: the same match always gets the same id.
    pub id: String,
    pub rule_id: String,
    pub group_key: String,
    pub tenant: String,
    pub event_time: i64,
    /// The journal event that completed the match.
    pub trigger_seq: i64,
    /// Tines ids of the other events of a correlation (looked up in `tenant`).
    pub event_ids: Vec<i64>,
}

/// A journal event an alert links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub seq: i64,
    pub tenant: String,
    pub id: i64,
    pub created_at: i64,
    pub operation_name: String,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub seq: i64,
    pub id: String,
    pub rule_id: String,
    pub tenant: String,
    pub event_time: i64,
    pub raised_at: i64,
    pub body: String,
}

/// A record to quarantine, borrowed from the page it came in.
#[derive(Debug, Clone, Copy)]
pub struct Quarantined<'a> {
    pub raw: &'a str,
    pub reason: &'a str,
}

/// A quarantined record as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuarantinedRow {
    pub tenant: String,
    pub raw: String,
    pub reason: String,
    pub window_start: i64,
    pub window_end: i64,
    pub first_seen: i64,
}

/// One reconciliation pass over a tenant's closed history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReconcilePass {
    pub tenant: String,
    pub range_start: i64,
    pub range_end: i64,
    pub slices: u64,
    /// Slices whose count differed and were read again.
    pub reread: u64,
    /// Events found missing and inserted.
    pub found: u64,
    pub started_at: i64,
    pub finished_at: i64,
}

/// One run of the self-test (`detect::selftest`) as the daemon records it: the evidence
/// reports show that the detection controls were tested, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SelftestRun {
    /// Unique per run; the test alerts it sent carry it.
    pub run_id: String,
    pub started_at: i64,
    pub finished_at: i64,
    /// Every enabled rule fired and every alert output accepted.
    pub passed: bool,
    pub rules_total: u64,
    pub rules_fired: u64,
    pub outputs_total: u64,
    pub outputs_ok: u64,
    /// One line: what was tested, or what failed (by name).
    pub summary: String,
    /// The whole result (per rule and per output) as JSON.
    pub detail: String,
}

/// A slice in which reconciliation found events the journal did not have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileFind {
    pub tenant: String,
    pub slice_start: i64,
    pub slice_end: i64,
    /// What the API counted (None when it gives no count).
    pub api_count: Option<u64>,
    /// What the journal held before.
    pub journal_count: u64,
    pub found: u64,
    /// `created_at` of the oldest and newest event found.
    pub oldest: i64,
    pub newest: i64,
    /// How long after its `created_at` the latest-found event was found, in seconds.
    pub max_late_secs: i64,
    pub found_at: i64,
}

/// Event counts of one reconciliation slice `[start, end)`, and of the
/// seconds just outside it (which the API may or may not count, depending on
/// whether its `after`/`before` are inclusive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SliceCounts {
    pub inside: u64,
    pub second_before: u64,
    pub second_at_end: u64,
}

/// A note on one entry of a tenant's posture (`tines-audit posture annotate`): why it
/// exists and who asked for it. Notes are only ever added: a later one on the same entry
/// supersedes an earlier one without erasing it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PostureNote {
    /// Order of writing (0 for a note not stored yet).
    pub seq: i64,
    pub tenant: String,
    /// The kind of entry (`ip_rule`, `egress_rule`, `owner`, ...; see `posture::Kind`).
    pub kind: String,
    /// The entry's id as `posture` shows it.
    pub entry_id: String,
    pub why: String,
    pub requested_by: String,
    /// Who wrote the note (the operating-system user that ran `annotate`).
    pub noted_by: String,
    pub noted_at: i64,
}

/// A named search someone saved (`web::searches`): the filters of `/events` as a query
/// string, replayed as they were written (so `from=7d` always means the last seven days).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SavedSearch {
    /// Handed out once and never again, even after a delete (0 for one not stored yet).
    pub id: i64,
    pub name: String,
    /// The filters as a canonical query string (`tenant=acme&from=7d`; empty: every event).
    pub query: String,
    /// The console user who saved it.
    pub owner: String,
    pub created_at: i64,
}

impl SavedSearch {
    /// What makes two names the same name: case and surrounding spaces do not count.
    pub fn name_key(name: &str) -> String {
        name.trim().to_lowercase()
    }
}

/// What came of saving a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Stored, with its id.
    Saved(SavedSearch),
    /// Another search has this name (by [`SavedSearch::name_key`]): that one.
    NameTaken(SavedSearch),
    /// The journal holds as many saved searches as it may.
    Full,
}

/// Where a journal is: SQLite in a data directory (the default), or a PostgreSQL
/// database given by URL (`postgresql://user:password@host:5432/db?sslmode=require`).
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    Url(crate::secret::Secret),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Shows a directory as it is and a URL without its password.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(d) => write!(f, "{}", d.display()),
            Location::Url(u) => f.write_str(&postgres::display_url(u.expose())),
        }
    }
}

/// How a command uses the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The collector: creates and migrates it; on SQLite takes the directory's exclusive lock.
    Write,
    /// Bookkeeping beside a running collector (consumer offsets, backtests): migrates, no lock.
    Shared,
    /// Readers (search, report, `state show`, export): never writes, never migrates.
    ReadOnly,
}

/// Handle to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    backend: Arc<dyn Backend>,
    /// The lease this handle commits under (see [`Journal::with_fence`]).
    fence: Option<Arc<Fence>>,
    /// Until when (by this machine's monotonic clock) the lease is surely still ours.
    valid_until: Option<Arc<std::sync::Mutex<std::time::Instant>>>,
}

impl Deref for Journal {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl Journal {
    /// Opens (creating if needed) the SQLite journal of `dir` for writing, taking
    /// the directory's exclusive lock so that two collectors never share it.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        Ok(Self::from_backend(sqlite::Sqlite::open(dir)?))
    }

    /// Opens an existing SQLite journal for reading and consumer bookkeeping without
    /// the collector's lock (migrating it if needed).
    pub fn open_shared(dir: &Path) -> Result<Self, JournalError> {
        Ok(Self::from_backend(sqlite::Sqlite::open_shared(dir)?))
    }

    /// Opens an existing SQLite journal for reading only (search, report, `state show` and
    /// `export`): no lock, no migration, no write of any kind, so reading works on a
    /// journal this process may not write (a copy, another user's files) and never
    /// changes it. Every method that writes fails.
    pub fn open_read_only(dir: &Path) -> Result<Self, JournalError> {
        Ok(Self::from_backend(sqlite::Sqlite::open_read_only(dir)?))
    }

    /// Opens the journal at `at` for `access`.
    pub fn open_at(at: &Location, access: Access) -> Result<Self, JournalError> {
        match (at, access) {
            (Location::Dir(d), Access::Write) => Journal::open(d),
            (Location::Dir(d), Access::Shared) => Journal::open_shared(d),
            (Location::Dir(d), Access::ReadOnly) => Journal::open_read_only(d),
            (Location::Url(u), access) => Ok(Self::from_backend(postgres::Postgres::connect(u.expose(), access)?)),
        }
    }

    /// Installs an exported journal as the SQLite journal of `dir`, after checking it. Refuses
    /// to replace an existing journal unless `replace`; needs the directory's lock.
    pub fn import(src: &Path, dir: &Path, replace: bool) -> Result<Journal, JournalError> {
        sqlite::Sqlite::import(src, dir, replace)?;
        Journal::open(dir)
    }

    fn from_backend(b: impl Backend + 'static) -> Self {
        Journal { backend: Arc::new(b), fence: None, valid_until: None }
    }

    /// Runs blocking journal work on tokio's blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
    {
        let j = self.clone();
        tokio::task::spawn_blocking(move || f(&j)).await.map_err(|e| JournalError::Task(e.to_string()))?
    }

    /// Appends a complete window's records and moves the job's position from
    /// `from` to `to` in one transaction: after a crash either both happened
    /// or neither did. Records already in the journal (same tenant and id)
    /// are skipped. Returns how many were new.
    pub fn commit_window<'a>(
        &self,
        commit: &WindowCommit<'_>,
        records: impl IntoIterator<Item = Record<'a>>,
    ) -> Result<u64, JournalError> {
        self.commit_window_quarantining(commit, records, std::iter::empty()).map(|(inserted, _)| inserted)
    }

    /// Appends records ahead of the window that will cover them (the quick look), skipping
    /// ids already stored; moves no position. They take the next seqs and places in the
    /// tenant's chain like any commit, and the window that reads them again later finds
    /// them held. Returns how many were new.
    pub fn append_events<'a>(
        &self,
        tenant: &str,
        records: impl IntoIterator<Item = Record<'a>>,
    ) -> Result<u64, JournalError> {
        let records: Vec<Record<'a>> = records.into_iter().collect();
        self.backend.append_events(tenant, &records, self.fence.as_deref())
    }

    /// [`Journal::commit_window`], also keeping the window's records that cannot
    /// be events in the quarantine, in the same transaction. Returns how many
    /// events and how many quarantined records were new.
    pub fn commit_window_quarantining<'a, 'q>(
        &self,
        commit: &WindowCommit<'_>,
        records: impl IntoIterator<Item = Record<'a>>,
        rejected: impl IntoIterator<Item = Quarantined<'q>>,
    ) -> Result<(u64, u64), JournalError> {
        let records: Vec<Record<'a>> = records.into_iter().collect();
        let rejected: Vec<Quarantined<'q>> = rejected.into_iter().collect();
        self.backend.commit_window(commit, &records, &rejected, self.fence.as_deref())
    }

    /// A handle whose commits (windows, offsets, detection, the search index, rewinds) are
    /// refused once `fence` is no longer its job's current lease.
    pub fn with_fence(&self, fence: Fence) -> Journal {
        Journal { backend: self.backend.clone(), fence: Some(Arc::new(fence)), valid_until: None }
    }

    /// [`Journal::with_fence`], also knowing until when the lease is surely held (the lease
    /// manager moves it forward at each renewal), for work the journal cannot fence.
    pub fn with_lease(&self, fence: Fence, valid_until: Arc<std::sync::Mutex<std::time::Instant>>) -> Journal {
        Journal { backend: self.backend.clone(), fence: Some(Arc::new(fence)), valid_until: Some(valid_until) }
    }

    /// Whether this handle's lease (if any) is surely still held by this machine's clock.
    pub fn lease_valid(&self) -> bool {
        self.valid_until
            .as_ref()
            .is_none_or(|v| std::time::Instant::now() < *v.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The lease this handle commits under, if any.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_deref()
    }

    /// Moves a consumer's offset from `expected` to `new`, with its state.
    pub fn commit_offset(&self, name: &str, expected: i64, new: i64, state: Option<&str>) -> Result<(), JournalError> {
        self.backend.commit_offset(name, expected, new, state, self.fence.as_deref())
    }

    /// Indexes up to `max` events past the search index's position; returns how many.
    pub fn index_batch(&self, max: usize) -> Result<usize, JournalError> {
        self.backend.index_batch(max, self.fence.as_deref())
    }

    /// Moves a job's position back from `from` to `to`.
    pub fn rewind_progress(&self, tenant: &str, job: &str, from: i64, to: i64) -> Result<(), JournalError> {
        self.backend.rewind_progress(tenant, job, from, to, self.fence.as_deref())
    }

    /// Moves the detector's offset from `expected` to `new` with its state,
    /// and stores `alerts`, in one transaction. `body` renders an alert once
    /// its events are known. An alert whose id exists is not stored twice.
    /// Returns the alerts stored.
    pub fn commit_detection(
        &self,
        consumer: &str,
        expected: i64,
        new: i64,
        state: &str,
        alerts: &[NewAlert],
        mut body: impl FnMut(&NewAlert, &[EventRow]) -> String,
    ) -> Result<Vec<AlertRow>, JournalError> {
        let step = DetectionStep { consumer, expected, new, state };
        self.backend.commit_detection(&step, alerts, &mut body, self.fence.as_deref())
    }
}
