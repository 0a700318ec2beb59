//! The interface every journal database implements. [`Journal`](super::Journal) is a
//! cheap handle over one `Arc<dyn Backend>`; nothing outside `journal/` names a
//! database crate, and a new database is a new module implementing this trait
//! (and passing the shared suite in `journal/conformance.rs`).
//!
//! Every method blocks; async code reaches them through [`Journal::call`](super::Journal::call).
//! The rules each implementation must keep are written on the methods; the ones
//! that carry the product's promise are:
//! - a window's events, its quarantined records and its new position commit in one
//!   transaction, and only if the stored position is the window's start;
//! - sequence numbers are never handed out twice, and are visible in commit order: a
//!   reader that has seen seq `n` will never later see a new event with a seq below `n`
//!   (so a consumer reading `seq > offset` never skips one);
//! - offsets move only from the value the caller read (compare and set).

use std::collections::HashMap;
use std::path::Path;

use super::chain::{ChainRow, TenantChain};
use super::checkpoint::{Basis, StoredCheckpoint};
use super::dump::Row;
use super::triage::{AlertChange, AlertCounts, AlertGroup, AlertQuery, TriageChange, Triaged, TriagedAlert};
use super::{
    AlertRow, ConsumerOffset, EventBatch, EventRow, JournalError, NewAlert, PostureNote, Progress, Quarantined,
    QuarantinedRow, ReconcileFind, ReconcilePass, Record, SaveOutcome, SavedSearch, SelftestRun, SliceCounts,
    WindowCommit,
};

/// How far the search index has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IndexState {
    /// Every event with `seq <= position` is indexed.
    pub position: i64,
    /// The journal's highest seq.
    pub max_seq: i64,
}

impl IndexState {
    pub fn behind(&self) -> i64 {
        (self.max_seq - self.position).max(0)
    }
}

/// A search filter with every lookup done (names, networks, countries and categories
/// turned into plain lists): each backend renders it as one query over its indexes.
/// An empty list means "no condition", except where noted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub tenants: Vec<String>,
    /// Matches an event whose `user_id` is one of `user_ids` or whose email equals one of
    /// `emails` (ASCII case folded). Both empty: no condition on the user.
    pub user_ids: Vec<i64>,
    pub emails: Vec<String>,
    pub operations: Vec<String>,
    pub ips: Vec<String>,
    /// `created_at >= from`.
    pub from: Option<i64>,
    /// `created_at < to`.
    pub to: Option<i64>,
    /// Only the events of the alert with this id.
    pub alert: Option<String>,
    /// Free text: in each group, some term must occur in the record's indexed text.
    pub text: Vec<Vec<TextTerm>>,
    /// Free text none of which may occur (events not yet indexed hold none).
    pub not_text: Vec<TextTerm>,
    /// Exclusions: an event with any of these values does not match (an event without a
    /// user or an address is never excluded by a user or address).
    pub not_tenants: Vec<String>,
    pub not_user_ids: Vec<i64>,
    /// Lower case; compared with ASCII case folded, as `emails`.
    pub not_emails: Vec<String>,
    pub not_operations: Vec<String>,
    pub not_ips: Vec<String>,
    /// Keyset: only events strictly older than `(created_at, seq)`.
    pub before: Option<(i64, i64)>,
    /// Keyset: only events strictly newer than `(created_at, seq)` (for reading oldest first).
    pub after: Option<(i64, i64)>,
    /// Results oldest first (by `created_at`, then seq) instead of newest first: what a
    /// reader that replays history in order (posture) pages through with `after`.
    pub oldest_first: bool,
}

/// One term of free text: a word or a phrase (several words in order), optionally a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextTerm {
    pub words: String,
    pub prefix: bool,
}

/// What facets count of one event: the stored columns behind the user, operation, address
/// and tenant facets (countries and categories are derived from them by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacetKeys {
    /// The tenant's name.
    pub tenant: String,
    pub email: Option<String>,
    pub operation: String,
    pub ip: Option<String>,
}

/// One event a search found, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundEvent {
    pub seq: i64,
    pub tenant: String,
    pub id: i64,
    pub created_at: i64,
    pub operation_name: String,
    pub user_id: Option<i64>,
    pub user_email: Option<String>,
    pub request_ip: Option<String>,
    pub raw: String,
}

/// A tenant's collection ledger over a period, for the continuity section of reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// The `cursor` job's position, if the tenant has one.
    pub cursor: Option<i64>,
    /// Every committed window overlapping the period: `(from, to, inserted, committed_at, job)`,
    /// in commit order.
    pub windows: Vec<(i64, i64, i64, i64, String)>,
    pub reconcile_passes: i64,
    pub last_reconcile: Option<i64>,
    pub reconcile_finds: Vec<ReconcileFind>,
}

/// The detector's offset moving from `expected` to `new`, with its engine state.
#[derive(Debug, Clone, Copy)]
pub struct DetectionStep<'a> {
    pub consumer: &'a str,
    pub expected: i64,
    pub new: i64,
    pub state: &'a str,
}

/// The right to commit for one job (a tenant's collection, a sink, the detector, the
/// search indexer), held by one instance at a time. `token` grows on every take-over;
/// a commit made with a token that is no longer the job's is refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fence {
    pub job: String,
    pub holder: String,
    pub token: i64,
}

/// A lease as stored (for `state show`, metrics and the lease manager).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    pub job: String,
    pub holder: String,
    pub token: i64,
    /// Milliseconds since the epoch by the database's clock.
    pub expires_at_ms: i64,
    pub acquired_at_ms: i64,
}

/// What one lease round saw: the database's time, the instances alive, and every lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub now_ms: i64,
    pub live_instances: usize,
    pub leases: Vec<LeaseRow>,
}

/// Where the journal lives, for messages (never with a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place<'a> {
    Dir(&'a Path),
    Server(&'a str),
}

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Dir(d) => write!(f, "{}", d.display()),
            Place::Server(s) => f.write_str(s),
        }
    }
}

/// A journal database. See the module documentation for the rules.
pub trait Backend: Send + Sync {
    /// Where it is (a directory, or the server and database without credentials).
    fn place(&self) -> Place<'_>;

    // --- collection progress -------------------------------------------------------------

    fn progress(&self, tenant: &str, job: &str) -> Result<Option<Progress>, JournalError>;
    /// Every job of every tenant, by tenant then job.
    fn all_progress(&self) -> Result<Vec<Progress>, JournalError>;
    /// Starts a job at `start` unless it exists; returns the stored progress.
    fn start_progress(
        &self,
        tenant: &str,
        job: &str,
        start: i64,
        end: Option<i64>,
        filter: &str,
    ) -> Result<Progress, JournalError>;
    /// Forgets a job's progress (the events stay). Returns whether it existed.
    fn reset_progress(&self, tenant: &str, job: &str) -> Result<bool, JournalError>;
    /// Moves a job's position back from `from` to `to` (and its range start with it if
    /// needed); refused with [`JournalError::ProgressConflict`] unless the position is `from`.
    fn rewind_progress(
        &self,
        tenant: &str,
        job: &str,
        from: i64,
        to: i64,
        fence: Option<&Fence>,
    ) -> Result<(), JournalError>;
    /// Appends a window's records (skipping a tenant's ids already stored), keeps its
    /// rejected records in the quarantine (once per tenant and content), logs the window
    /// in the ledger and moves the position from `commit.from` to `commit.to`, all in one
    /// transaction; refused with [`JournalError::ProgressConflict`] when the stored position
    /// is not `commit.from`. Returns how many events and quarantined records were new.
    ///
    /// With a `fence`, every commit here and in the other methods taking one is also refused
    /// ([`JournalError::Fenced`]) unless the fence's holder still holds its job with its token,
    /// checked in the same transaction.
    fn commit_window(
        &self,
        commit: &WindowCommit<'_>,
        records: &[Record<'_>],
        rejected: &[Quarantined<'_>],
        fence: Option<&Fence>,
    ) -> Result<(u64, u64), JournalError>;

    /// Appends records that arrived ahead of their window (the quick look), skipping a
    /// tenant's ids already stored, without moving any position or writing the ledger: the
    /// window that covers them later finds them held. Returns how many were new.
    fn append_events(&self, tenant: &str, records: &[Record<'_>], fence: Option<&Fence>) -> Result<u64, JournalError>;

    // --- consumers -----------------------------------------------------------------------

    /// The offset of a consumer, creating it at `initial` if it is new.
    fn consumer(&self, name: &str, initial: i64) -> Result<ConsumerOffset, JournalError>;
    /// Every consumer with its offset, by name.
    fn consumers(&self) -> Result<Vec<(String, ConsumerOffset)>, JournalError>;
    /// Moves a consumer's offset from `expected` to `new` with its state; refused with
    /// [`JournalError::OffsetConflict`] when the stored offset is not `expected`.
    fn commit_offset(
        &self,
        name: &str,
        expected: i64,
        new: i64,
        state: Option<&str>,
        fence: Option<&Fence>,
    ) -> Result<(), JournalError>;
    /// Up to `max_events` events after `after_seq` in seq order, stopping early once
    /// `max_bytes` of raw text are read (always at least one when any exists).
    fn read_after(&self, after_seq: i64, max_events: usize, max_bytes: usize) -> Result<EventBatch, JournalError>;
    /// The highest seq ever handed out (0 when none), even if retention deleted that event.
    fn max_seq(&self) -> Result<i64, JournalError>;
    /// Number of events of a tenant (all tenants when `None`).
    fn count_events(&self, tenant: Option<&str>) -> Result<i64, JournalError>;
    /// Every Tines id collected for a tenant, ascending.
    fn ids(&self, tenant: &str) -> Result<Vec<i64>, JournalError>;
    /// The first seq of an event created at or after `t`.
    fn first_seq_since(&self, t: i64) -> Result<Option<i64>, JournalError>;

    // --- detection -----------------------------------------------------------------------

    /// Moves the detector's offset from `expected` to `new` with its state (creating the
    /// consumer at `expected` if new; [`JournalError::OffsetConflict`] if it is elsewhere)
    /// and stores `alerts` (an id already stored is skipped), linking each to its trigger
    /// event and the events of `event_ids` found in its tenant, in one transaction. `body`
    /// renders an alert once its events are known. Returns the alerts stored, in order.
    fn commit_detection(
        &self,
        step: &DetectionStep<'_>,
        alerts: &[NewAlert],
        body: &mut dyn FnMut(&NewAlert, &[EventRow]) -> String,
        fence: Option<&Fence>,
    ) -> Result<Vec<AlertRow>, JournalError>;
    /// Up to `max` alerts after `after_seq`, in order.
    fn alerts_after(&self, after_seq: i64, max: usize) -> Result<Vec<AlertRow>, JournalError>;
    /// The highest alert seq (0 when there is none).
    fn max_alert_seq(&self) -> Result<i64, JournalError>;
    /// The seqs of the events an alert is about, ascending.
    fn alert_event_seqs(&self, alert_seq: i64) -> Result<Vec<i64>, JournalError>;
    /// Alerts for events created in `[from, to)`, newest event first, at most `limit`.
    fn alerts_between(&self, from: i64, to: i64, limit: usize) -> Result<Vec<AlertRow>, JournalError>;

    // --- alert triage (journal::triage) -------------------------------------------------------

    /// Alerts matching `q`, newest event first (by `event_time`, then seq), at most `limit`.
    fn find_alerts(&self, q: &AlertQuery, limit: usize) -> Result<Vec<TriagedAlert>, JournalError>;
    /// The groups of repeats (one tenant, rule and group key) among the alerts matching `q`,
    /// by their newest matching alert, newest first, at most `limit`.
    fn alert_groups(&self, q: &AlertQuery, limit: usize) -> Result<Vec<AlertGroup>, JournalError>;
    /// How many alerts and groups match `q` (its keyset ignored).
    fn count_alerts(&self, q: &AlertQuery) -> Result<AlertCounts, JournalError>;
    /// The alert with this id.
    fn alert_by_id(&self, id: &str) -> Result<Option<TriagedAlert>, JournalError>;
    /// An alert's history, oldest change first.
    fn alert_history(&self, alert_seq: i64) -> Result<Vec<AlertChange>, JournalError>;
    /// Applies `change` to the alert with this id and appends it to its history, in one
    /// transaction that reads the alert's state under a lock (two people changing one alert
    /// at once each see the other's change as their "from"). `None` when no alert has the id.
    fn triage_alert(&self, id: &str, change: &TriageChange<'_>) -> Result<Option<Triaged>, JournalError>;

    // --- quarantine and reconciliation -----------------------------------------------------

    /// Quarantined records, newest first, at most `limit`.
    fn quarantined(&self, limit: usize) -> Result<Vec<QuarantinedRow>, JournalError>;
    /// How many records are quarantined, per tenant, by tenant.
    fn quarantine_counts(&self) -> Result<Vec<(String, u64)>, JournalError>;
    /// The tenant's events (with one of `user_ids` and `operation_names` where those are
    /// not empty) in `[start, end)`, in the second `start - 1` and in the second `end`.
    fn slice_counts(
        &self,
        tenant: &str,
        start: i64,
        end: i64,
        user_ids: &[u64],
        operation_names: &[String],
    ) -> Result<SliceCounts, JournalError>;
    /// Events of a tenant created in `[start, end)` stored after `after_seq`: how many,
    /// and the oldest and newest `created_at` among them.
    fn stored_since(
        &self,
        tenant: &str,
        start: i64,
        end: i64,
        after_seq: i64,
    ) -> Result<(u64, Option<i64>, Option<i64>), JournalError>;
    fn record_reconcile_find(&self, f: &ReconcileFind) -> Result<(), JournalError>;
    fn record_reconcile_pass(&self, p: &ReconcilePass) -> Result<(), JournalError>;
    /// Passes that finished in `[from, to)`, oldest first.
    fn reconcile_passes(&self, from: i64, to: i64) -> Result<Vec<ReconcilePass>, JournalError>;
    /// Finds whose slice overlaps `[from, to)`, by slice start.
    fn reconcile_finds(&self, from: i64, to: i64) -> Result<Vec<ReconcileFind>, JournalError>;

    // --- posture notes --------------------------------------------------------------------

    /// Stores a note (its `seq` is ignored) and returns it as stored, numbered after every
    /// earlier note. Notes are never changed or deleted (retention leaves them alone).
    fn add_posture_note(&self, note: &PostureNote) -> Result<PostureNote, JournalError>;
    /// Every note of a tenant, in the order written.
    fn posture_notes(&self, tenant: &str) -> Result<Vec<PostureNote>, JournalError>;

    // --- saved searches (web::searches) ----------------------------------------------------

    /// Stores a search (its `id` is ignored) under a new id, unless another has the same
    /// name by [`SavedSearch::name_key`] or `max` are stored already; atomic with that check,
    /// so two people saving one name at once get one search and one refusal.
    fn save_search(&self, search: &SavedSearch, max: usize) -> Result<SaveOutcome, JournalError>;
    /// Saved searches by name key (bytewise), at most `limit`.
    fn saved_searches(&self, limit: usize) -> Result<Vec<SavedSearch>, JournalError>;
    fn saved_search(&self, id: i64) -> Result<Option<SavedSearch>, JournalError>;
    /// Deletes a saved search; whether there was one with this id. Its id is not handed out again.
    fn delete_saved_search(&self, id: i64) -> Result<bool, JournalError>;

    // --- self-test (detect::selftest) -------------------------------------------------------

    /// Records a finished self-test run; a run id already stored is left as it is.
    fn record_selftest(&self, run: &SelftestRun) -> Result<(), JournalError>;
    /// Runs that started in `[from, to)`, newest first, at most `limit`.
    fn selftest_runs(&self, from: i64, to: i64, limit: usize) -> Result<Vec<SelftestRun>, JournalError>;

    // --- retention -----------------------------------------------------------------------

    /// Every consumer's offset by name, and the search index's position.
    fn reader_positions(&self) -> Result<(HashMap<String, i64>, i64), JournalError>;
    /// Deletes events created before `before` with seq at most `up_to_seq`, except those
    /// linked to an alert whose seq is above `alerts_delivered`, in chunks short enough
    /// that collection is never held up long. Returns how many went.
    fn delete_old(&self, before: i64, up_to_seq: i64, alerts_delivered: i64) -> Result<u64, JournalError>;
    /// Per tenant, the highest chain position [`Backend::delete_old`] with the same
    /// arguments would remove (an upper bound: an alert raised meanwhile only keeps more).
    fn prune_bounds(
        &self,
        before: i64,
        up_to_seq: i64,
        alerts_delivered: i64,
    ) -> Result<Vec<(String, i64)>, JournalError>;

    // --- search --------------------------------------------------------------------------

    fn index_state(&self) -> Result<IndexState, JournalError>;
    /// Indexes up to `max` events past the index's position in one transaction with the
    /// new position (two indexers never index the same events); returns how many.
    fn index_batch(&self, max: usize, fence: Option<&Fence>) -> Result<usize, JournalError>;
    /// Refreshes the planner's statistics after a large intake.
    fn optimize(&self) -> Result<(), JournalError>;
    /// Every distinct `(user_id, user_name)` the indexer has seen.
    fn seen_user_names(&self) -> Result<Vec<(i64, String)>, JournalError>;
    /// Every distinct value of a kind (`ip`, `op`) the indexer has seen.
    fn seen_values(&self, kind: &str) -> Result<Vec<String>, JournalError>;
    /// The values of `kind` starting with one of `prefixes` (bytewise): a network's
    /// addresses without reading every address seen.
    fn seen_values_prefixed(&self, kind: &str, prefixes: &[String]) -> Result<Vec<String>, JournalError> {
        let all = self.seen_values(kind)?;
        Ok(all.into_iter().filter(|v| prefixes.iter().any(|p| v.starts_with(p.as_str()))).collect())
    }
    /// Whether any event has this operation name.
    fn operation_exists(&self, name: &str) -> Result<bool, JournalError>;
    /// Events matching `q`, newest first (by `created_at`, then seq), or oldest first when
    /// `q.oldest_first`, at most `limit`.
    fn search(&self, q: &EventQuery, limit: usize) -> Result<Vec<FoundEvent>, JournalError>;
    /// Events matching `q` per bucket of `bucket` seconds (`(start, count)`, oldest first,
    /// only buckets with events; a bucket starts at a multiple of `bucket` seconds).
    fn histogram(&self, q: &EventQuery, bucket: i64) -> Result<Vec<(i64, i64)>, JournalError>;
    /// Oldest and newest `created_at` of the events matching `q`.
    fn span(&self, q: &EventQuery) -> Result<Option<(i64, i64)>, JournalError>;
    fn count(&self, q: &EventQuery) -> Result<i64, JournalError>;
    /// The facet keys of the newest `limit` events matching `q` (newest first, as
    /// [`Backend::search`] orders them): facets count a bounded sample, never every match.
    fn facet_keys(&self, q: &EventQuery, limit: usize) -> Result<Vec<FacetKeys>, JournalError>;

    // --- reports and status --------------------------------------------------------------

    /// Every tenant's name, sorted.
    fn tenants(&self) -> Result<Vec<String>, JournalError>;
    /// A tenant's ledger over `[from, to)`; `None` when the tenant is unknown.
    fn ledger(&self, tenant: &str, from: i64, to: i64) -> Result<Option<Ledger>, JournalError>;
    /// Events inserted by windows committed at or after `since`.
    fn inserted_since(&self, since: i64) -> Result<i64, JournalError>;

    // --- leases (several instances on one journal) -----------------------------------------

    /// Whether several instances may share this journal (and so need leases). A backend
    /// that answers `false` is used by one process at a time (SQLite's directory lock), which
    /// then holds every job; the lease methods are not called and commits ignore fences.
    fn shared(&self) -> bool {
        false
    }
    /// Records that `holder` is alive (for `ttl_ms`) and returns what the leases look like.
    fn lease_round(&self, _holder: &str, _ttl_ms: i64) -> Result<LeaseView, JournalError> {
        Err(JournalError::Config("this journal has no leases".into()))
    }
    /// Every lease, read only (for `state show`); instances count as alive when seen in the last minute.
    fn leases(&self) -> Result<LeaseView, JournalError> {
        Ok(LeaseView { now_ms: 0, live_instances: 1, leases: Vec::new() })
    }
    /// Takes `job` for `holder` if nobody holds it (never taken, released or expired),
    /// with a token above every earlier one. `None` when someone else holds it.
    fn take_lease(&self, _job: &str, _holder: &str, _ttl_ms: i64) -> Result<Option<Fence>, JournalError> {
        Err(JournalError::Config("this journal has no leases".into()))
    }
    /// Extends the leases `held` by their holder; returns those still held (same token).
    fn renew_leases(&self, _held: &[Fence], _ttl_ms: i64) -> Result<Vec<Fence>, JournalError> {
        Err(JournalError::Config("this journal has no leases".into()))
    }
    /// Gives a lease up at once (its token stays, so the next holder's is higher).
    fn release_lease(&self, _fence: &Fence) -> Result<(), JournalError> {
        Err(JournalError::Config("this journal has no leases".into()))
    }

    // --- tamper evidence (journal::chain) ------------------------------------------------------

    /// The first seq the hash chain covers: events numbered below it were collected before
    /// the chain existed.
    fn chain_since_seq(&self) -> Result<i64, JournalError>;
    /// Every tenant's chain head and what retention removed from it, by tenant name.
    fn tenant_chains(&self) -> Result<Vec<TenantChain>, JournalError>;
    /// Up to `max` events after `after_seq`, in seq order, with their links.
    fn chain_rows(&self, after_seq: i64, max: usize) -> Result<Vec<ChainRow>, JournalError>;
    /// What the tenant's next checkpoint is made from (`None`: no such tenant).
    fn checkpoint_basis(&self, tenant: &str) -> Result<Option<Basis>, JournalError>;
    /// Stores a checkpoint under `fence`; `false` when its number is taken already (another
    /// writer signed one first: make it again from a fresh basis).
    fn append_checkpoint(&self, cp: &StoredCheckpoint, fence: Option<&Fence>) -> Result<bool, JournalError>;
    /// Every checkpoint whose `to_seq` is in `(after, through]`, by `to_seq`, tenant, number.
    fn checkpoints_between(&self, after: i64, through: i64) -> Result<Vec<StoredCheckpoint>, JournalError>;
    /// Each tenant's newest checkpoint.
    fn latest_checkpoints(&self) -> Result<Vec<StoredCheckpoint>, JournalError>;

    // --- moving between databases ----------------------------------------------------------

    /// Writes every row to `out` in load order (see [`Row`]), from one consistent view,
    /// reading in bounded pages.
    fn dump(&self, out: &mut dyn FnMut(Row) -> Result<(), JournalError>) -> Result<(), JournalError>;
    /// Loads `rows` into this journal in one transaction (all or nothing). Refused unless the
    /// journal is empty: a load never mixes with, or replaces, what another journal wrote.
    fn load(&self, rows: &mut dyn Iterator<Item = Result<Row, JournalError>>) -> Result<(), JournalError>;

    // --- operations ----------------------------------------------------------------------

    /// Bytes the journal takes (0 where the server does not say).
    fn size_bytes(&self) -> u64;
    /// Proves the database takes writes: a write lock taken and released.
    fn check_writable(&self) -> Result<(), JournalError>;
    /// Caps the journal's size: past it, writes fail with [`JournalError::DiskFull`].
    fn set_max_size(&self, bytes: u64) -> Result<(), JournalError>;
    /// Writes a consistent copy of the whole journal to `dest` (a new file) while in use.
    fn export(&self, dest: &Path) -> Result<(), JournalError>;
}
