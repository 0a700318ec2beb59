//! Moving a journal between databases: every backend can write its whole content as a
//! stream of [`Row`]s and load such a stream into an empty journal, keeping every
//! sequence number, position, offset (with its sink state), alert (with its triage and
//! history), ledger entry, posture note and saved search, so
//! sinks, the detector and alert outputs go on exactly where they were. The search
//! index is derived data: the target rebuilds it from its events.
//!
//! `state export` writes an SQLite file and `state import` reads one, whatever the
//! journal's database, so a single-node install grows into PostgreSQL and back.

use std::path::Path;

use super::chain::{Head, Link};
use super::{FoundEvent, Journal, JournalError, Progress, ReconcileFind, ReconcilePass, SelftestRun};

/// One row of a journal, in the order a load needs them (tenants before what names them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Tenant {
        name: String,
        created_at: i64,
        /// The tenant's hash chain: its head, the head event's seq (kept even once
        /// retention removed the event: checkpoints are ordered by it), and the events
        /// retention removed.
        head: Head,
        head_seq: i64,
        pruned_through: i64,
    },
    /// An event with its place in its tenant's chain (`None` before the chain began).
    Event(FoundEvent, Option<Link>),
    Progress(Progress),
    Window {
        tenant: String,
        job: String,
        from: i64,
        to: i64,
        fetched: i64,
        inserted: i64,
        committed_at: i64,
    },
    Consumer {
        name: String,
        position: i64,
        state: Option<String>,
        updated_at: i64,
    },
    Alert {
        seq: i64,
        id: String,
        rule_id: String,
        group_key: String,
        tenant: String,
        event_time: i64,
        raised_at: i64,
        body: String,
    },
    AlertEvent {
        alert_seq: i64,
        event_seq: i64,
    },
    /// Where an alert stands, for an alert someone has triaged (the others are open and
    /// unassigned); after its alert.
    AlertTriage {
        alert_seq: i64,
        status: super::AlertStatus,
        assignee: Option<String>,
        triaged_at: Option<i64>,
        triaged_by: Option<String>,
    },
    /// An entry of an alert's history, with its number; after its alert.
    AlertChange(super::AlertChange),
    Quarantine {
        tenant: String,
        digest: String,
        raw: String,
        reason: String,
        window_start: i64,
        window_end: i64,
        first_seen: i64,
    },
    ReconcilePass(ReconcilePass),
    ReconcileFind(ReconcileFind),
    /// A signed checkpoint of a tenant's chain.
    Checkpoint(super::checkpoint::StoredCheckpoint),
    /// A note on a posture entry, with its number.
    PostureNote(super::PostureNote),
    /// A self-test run the daemon recorded (evidence that the detection controls were tested).
    Selftest(SelftestRun),
    /// A saved search, with its id.
    SavedSearch(super::SavedSearch),
    /// The highest numbers ever handed out (deleted rows included), so none is reused.
    HighWater {
        events: i64,
        alerts: i64,
        /// The first seq the hash chain covers.
        chain_since_seq: i64,
        /// The highest saved search id ever handed out (deleted ones included).
        saved_searches: i64,
    },
}

/// Rows read per query while dumping: memory stays bounded whatever the journal's size.
pub const DUMP_PAGE: i64 = 5_000;

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    pub rows: u64,
    pub events: u64,
}

/// Copies every row of `from` into `to`, which must be empty; `to` gets it all in one
/// transaction, or nothing. `from` is read while it may be in use (it is dumped from one
/// consistent snapshot where the backend has them).
pub fn copy(from: &Journal, to: &Journal, on_progress: &(dyn Fn(u64) + Sync)) -> Result<Copied, JournalError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Row, JournalError>>(1_024);
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let sent = from.dump(&mut |row| {
                tx.send(Ok(row)).map_err(|_| JournalError::Task("the journal being loaded stopped reading".into()))
            });
            if let Err(e) = sent {
                let _ = tx.send(Err(e));
            }
        });
        let mut copied = Copied::default();
        let mut rows = rx.into_iter().inspect(|r| {
            if let Ok(row) = r {
                copied.rows += 1;
                if matches!(row, Row::Event { .. }) {
                    copied.events += 1;
                    if copied.events % 100_000 == 0 {
                        on_progress(copied.events);
                    }
                }
            }
        });
        let loaded = to.load(&mut rows);
        drop(rows);
        reader.join().map_err(|_| JournalError::Task("dumping the journal panicked".into()))?;
        loaded?;
        Ok(copied)
    })
}

/// Writes `from` (any backend) to `dest` as an SQLite journal file (which must not exist).
pub fn export_file(from: &Journal, dest: &Path, on_progress: &(dyn Fn(u64) + Sync)) -> Result<Copied, JournalError> {
    if dest.exists() {
        return Err(JournalError::Io {
            path: dest.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "refusing to overwrite an existing file"),
        });
    }
    let staging = tempfile::tempdir_in(dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
        .map_err(|source| JournalError::Io { path: dest.to_path_buf(), source })?;
    let copied = {
        let to = Journal::open(staging.path())?;
        let copied = copy(from, &to, on_progress)?;
        to.export(dest)?;
        copied
    };
    Ok(copied)
}

/// Loads the SQLite journal file `src` (written by `state export`) into `to`, which must be empty.
pub fn import_file(src: &Path, to: &Journal, on_progress: &(dyn Fn(u64) + Sync)) -> Result<Copied, JournalError> {
    let staging = tempfile::tempdir().map_err(|source| JournalError::Io { path: src.to_path_buf(), source })?;
    // The file is checked (integrity, schema) and installed in a directory of its own, then read.
    let from = Journal::import(src, staging.path(), false)?;
    copy(&from, to, on_progress)
}
