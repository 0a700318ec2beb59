//! The shared journal: a PostgreSQL database that several `tines-audit` instances
//! use at once (ARCHITECTURE.md, "The PostgreSQL journal").
//!
//! What differs from SQLite, and why it is still exactly once:
//! - **Commit order.** A sequence hands out numbers when rows are inserted, not when
//!   they commit, so two overlapping transactions could make seq 11 visible before
//!   seq 10, and a consumer reading `seq > offset` would pass 10 for ever. Every
//!   transaction that takes event numbers first takes a transaction-scoped advisory
//!   lock, held until it commits, so numbers are handed out in commit order: a reader
//!   that sees `n` sees every number below it that will ever exist. Alerts likewise.
//! - **Positions and offsets** move by compare-and-set in the transaction that writes
//!   what they describe (`FOR UPDATE` on the progress row), as in SQLite.
//! - **Full text** is a `tsvector` per event (GIN), built from the same words SQLite's
//!   FTS5 sees, tokenized in Rust ([`crate::journal::text::words`]) so both answer alike.

mod alerts;
mod conn;
mod dump;
mod saved;
mod schema;
mod search;
mod selftest;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Row};

use super::backend::{
    Backend, DetectionStep, EventQuery, FacetKeys, Fence, FoundEvent, IndexState, LeaseRow, LeaseView, Ledger, Place,
};
use super::chain;
use super::checkpoint;
use super::triage::{self, AlertChange, AlertCounts, AlertGroup, AlertQuery, TriageChange, Triaged, TriagedAlert};
use super::{
    Access, AlertRow, BatchItem, ConsumerOffset, EventBatch, EventRow, JournalError, NewAlert, PostureNote, Progress,
    Quarantined, QuarantinedRow, ReconcileFind, ReconcilePass, Record, SaveOutcome, SavedSearch, SelftestRun,
    SliceCounts, WindowCommit,
};
use crate::timeutil::now_secs;
use conn::Pool;

/// A PostgreSQL journal.
pub struct Postgres {
    pool: Pool,
    tenant_ids: Mutex<HashMap<String, i64>>,
}

impl Postgres {
    /// Connects to the database at `url`, migrating its schema for [`Access::Write`] and
    /// [`Access::Shared`], and checking that it is current for [`Access::ReadOnly`].
    pub fn connect(url: &str, access: Access) -> Result<Postgres, JournalError> {
        let pool = Pool::new(conn::parse(url)?)?;
        let shown = pool.shown().to_string();
        pool.run(async |c| match access {
            Access::Write | Access::Shared => schema::migrate(c).await,
            Access::ReadOnly => match schema::version(c).await? {
                0 => Err(JournalError::Missing(shown.clone().into())),
                v if v > schema::CURRENT => Err(JournalError::TooNew { found: v, supported: schema::CURRENT }),
                v if v < schema::CURRENT => Err(JournalError::Task(format!(
                    "the journal at {shown} was written by an older tines-audit (schema {v}; this build reads {}): run `tines-audit collect` (or the daemon) once with this build to upgrade it",
                    schema::CURRENT
                ))),
                _ => Ok(()),
            },
        })?;
        Ok(Postgres { pool, tenant_ids: Mutex::new(HashMap::new()) })
    }

    fn run<T>(&self, f: impl AsyncFnOnce(&mut Client) -> Result<T, JournalError>) -> Result<T, JournalError> {
        self.pool.run(f)
    }

    /// The id of a tenant, creating it if new (outside any transaction: a tenant row is never undone).
    async fn tenant_id(&self, c: &impl GenericClient, name: &str) -> Result<i64, JournalError> {
        if let Some(id) = self.tenant_ids.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(*id);
        }
        c.execute(
            "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &now_secs()],
        )
        .await?;
        let id: i64 = c.query_one("SELECT id FROM tenants WHERE name = $1", &[&name]).await?.get(0);
        self.tenant_ids.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), id);
        Ok(id)
    }

    async fn known_tenant(&self, c: &impl GenericClient, name: &str) -> Result<Option<i64>, JournalError> {
        Ok(c.query_opt("SELECT id FROM tenants WHERE name = $1", &[&name]).await?.map(|r| r.get(0)))
    }
}

/// The database's clock in milliseconds: leases never depend on the instances' clocks.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Refuses the transaction unless `fence` (if any) is still its job's lease. The row stays
/// share-locked to the commit, so a take-over waits for it rather than slipping in between.
async fn check_fence(c: &impl GenericClient, fence: Option<&Fence>) -> Result<(), JournalError> {
    let Some(f) = fence else { return Ok(()) };
    let held = c
        .query_opt(
            "SELECT 1 FROM leases WHERE job = $1 AND holder = $2 AND token = $3 FOR SHARE",
            &[&f.job, &f.holder, &f.token],
        )
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(JournalError::Fenced { job: f.job.clone(), holder: f.holder.clone(), token: f.token }),
    }
}

/// The columns `seq, tenant, kind, entry_id, why, requested_by, noted_by, noted_at`.
fn note_row(r: &Row) -> PostureNote {
    PostureNote {
        seq: r.get(0),
        tenant: r.get(1),
        kind: r.get(2),
        entry_id: r.get(3),
        why: r.get(4),
        requested_by: r.get(5),
        noted_by: r.get(6),
        noted_at: r.get(7),
    }
}

async fn all_leases(c: &Client) -> Result<Vec<LeaseRow>, JournalError> {
    let rows =
        c.query("SELECT job, holder, token, expires_at_ms, acquired_at_ms FROM leases ORDER BY job", &[]).await?;
    Ok(rows
        .iter()
        .map(|r| LeaseRow {
            job: r.get(0),
            holder: r.get(1),
            token: r.get(2),
            expires_at_ms: r.get(3),
            acquired_at_ms: r.get(4),
        })
        .collect())
}

async fn insert_find(c: &impl GenericClient, tid: i64, f: &ReconcileFind) -> Result<(), JournalError> {
    c.execute(
        "INSERT INTO reconcile_finds (tenant, slice_start, slice_end, api_count, journal_count, found, oldest,
             newest, max_late_secs, found_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &tid,
            &f.slice_start,
            &f.slice_end,
            &f.api_count.map(|c| c as i64),
            &(f.journal_count as i64),
            &(f.found as i64),
            &f.oldest,
            &f.newest,
            &f.max_late_secs,
            &f.found_at,
        ],
    )
    .await?;
    Ok(())
}

async fn insert_pass(c: &impl GenericClient, tid: i64, p: &ReconcilePass) -> Result<(), JournalError> {
    c.execute(
        "INSERT INTO reconcile_passes (tenant, range_start, range_end, slices, reread, found, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &tid,
            &p.range_start,
            &p.range_end,
            &(p.slices as i64),
            &(p.reread as i64),
            &(p.found as i64),
            &p.started_at,
            &p.finished_at,
        ],
    )
    .await?;
    Ok(())
}

/// Numbers (in commit order, under the events lock) and chains the records the journal
/// does not hold yet after the tenant's chain head, in `tx`; returns how many were new.
/// Records older than `look_up_before` are looked up first (mostly held: the overlap a
/// window reads again), and so are those up to the newest event held within the batch's
/// span (a quick look's); newer ones are assumed new, and a copy that meets one held after
/// all (an id stored with another time) is undone and done again without it.
async fn insert_chained(
    tx: &mut tokio_postgres::Transaction<'_>,
    tid: i64,
    tenant: &str,
    records: &[Record<'_>],
    look_up_before: i64,
) -> Result<u64, JournalError> {
    if records.is_empty() {
        return Ok(0);
    }
    // Numbers are taken in commit order: see the module documentation.
    lock(&*tx, schema::EVENTS_LOCK).await?;
    let r = tx.query_one("SELECT chain_n, chain_head FROM tenants WHERE id = $1", &[&tid]).await?;
    let head = chain::Head::from_stored(r.get(0), r.get::<_, Option<&[u8]>>(1));
    // A record the journal holds takes neither a number nor a place in the
    // chain. Repeats within the batch go first; then the records older than
    // `look_up_before` (for a window, the overlap read again), mostly held, are looked up.
    let mut ids = std::collections::HashSet::new();
    let mut fresh: Vec<&Record<'_>> = records.iter().filter(|r| ids.insert(r.id)).collect();
    // Events a quick look stored lie past a window's start: the records up to the newest
    // event held within the batch's span are looked up too, so meeting them costs a lookup,
    // not an undone copy. (Nothing held in the span, as in a backfill: nothing more to look up.)
    let mut look_up_before = look_up_before;
    if let (true, Some(newest)) = (look_up_before < i64::MAX, fresh.iter().map(|r| r.created_at).max()) {
        let held_until: Option<i64> = tx
            .query_one(
                "SELECT max(created_at) FROM events WHERE tenant = $1 AND created_at >= $2 AND created_at <= $3",
                &[&tid, &look_up_before, &newest],
            )
            .await?
            .get(0);
        if let Some(t) = held_until {
            look_up_before = t.saturating_add(1);
        }
    }
    let overlap: Vec<i64> = fresh.iter().filter(|r| r.created_at < look_up_before).map(|r| r.id).collect();
    let held = held_ids(tx, tid, &overlap).await?;
    fresh.retain(|r| !held.contains(&r.id));
    if fresh.is_empty() {
        return Ok(0);
    }
    // One block of numbers, in record order; the rows go in by binary COPY,
    // the server's fastest way. Should one be held after all (another job's
    // record past the position), the copy is undone, every id looked up,
    // and the rest copied again under the same lock.
    let n = fresh.len() as i64;
    let first: i64 = tx
        .query_one("SELECT setval('events_seq', nextval('events_seq') + $1::bigint - 1) - $1::bigint + 1", &[&n])
        .await?
        .get(0);
    let (rows, mut after) = chained(tenant, head, first, &fresh);
    let mut head_seq = rows.last().map(|r| r.0);
    let copy = tx.savepoint("copy_events").await?;
    let inserted = match copy_events(&copy, tid, &rows).await {
        Ok(n) => {
            copy.commit().await?;
            n
        }
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            copy.rollback().await?;
            let all: Vec<i64> = fresh.iter().map(|r| r.id).collect();
            let held = held_ids(tx, tid, &all).await?;
            fresh.retain(|r| !held.contains(&r.id));
            let (rows, head) = chained(tenant, head, first, &fresh);
            after = head;
            head_seq = rows.last().map(|r| r.0);
            copy_events(tx, tid, &rows).await?
        }
        Err(e) => return Err(e.into()),
    };
    tx.execute(
        "UPDATE tenants SET chain_n = $2, chain_head = $3, chain_seq = COALESCE($4, chain_seq) WHERE id = $1",
        &[&tid, &after.n, &&after.hash[..], &head_seq],
    )
    .await?;
    Ok(inserted)
}

/// Takes one of the schema's advisory locks until the transaction ends.
/// Which of `ids` the tenant's events hold.
async fn held_ids(
    tx: &tokio_postgres::Transaction<'_>,
    tid: i64,
    ids: &[i64],
) -> Result<std::collections::HashSet<i64>, JournalError> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows = tx.query("SELECT id FROM events WHERE tenant = $1 AND id = ANY($2)", &[&tid, &ids]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Records numbered from `first` and linked into the tenant's chain after `head`, and
/// the head after the last of them.
fn chained<'r>(
    tenant: &str,
    mut head: chain::Head,
    first: i64,
    records: &[&'r Record<'r>],
) -> (Vec<(i64, chain::Link, &'r Record<'r>)>, chain::Head) {
    let rows = (first..).zip(records).map(|(seq, r)| (seq, head.next(tenant, r.id, seq, r.raw), *r)).collect();
    (rows, head)
}

fn checkpoint_row(r: &tokio_postgres::Row) -> checkpoint::StoredCheckpoint {
    checkpoint::StoredCheckpoint {
        tenant: r.get(0),
        number: r.get(1),
        to_seq: r.get(2),
        body: r.get(3),
        signature: r.get(4),
    }
}

/// Copies numbered, linked records in (binary `COPY`); fails with a unique violation if
/// the journal holds one of them.
async fn copy_events(
    tx: &tokio_postgres::Transaction<'_>,
    tid: i64,
    records: &[(i64, chain::Link, &Record<'_>)],
) -> Result<u64, tokio_postgres::Error> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let sink = tx
        .copy_in(
            "COPY events (seq, tenant, id, created_at, operation_name, user_id, user_email, request_ip, raw,
                          chain_n, chain_prev, chain)
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    let types = [
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::BYTEA,
        Type::BYTEA,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures_util::pin_mut!(writer);
    for (seq, l, r) in records {
        let (prev, hash) = (&l.prev[..], &l.hash[..]);
        writer
            .as_mut()
            .write(&[
                seq,
                &tid,
                &r.id,
                &r.created_at,
                &r.operation_name,
                &r.user_id,
                &r.user_email,
                &r.request_ip,
                &r.raw,
                &l.n,
                &prev,
                &hash,
            ])
            .await?;
    }
    writer.finish().await
}

async fn lock(c: &impl GenericClient, key: i32) -> Result<(), JournalError> {
    c.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()), $1)", &[&key]).await?;
    Ok(())
}

fn row_to_progress(r: &Row) -> Progress {
    Progress {
        tenant: r.get(0),
        job: r.get(1),
        range_start: r.get(2),
        range_end: r.get(3),
        position: r.get(4),
        filter: r.get(5),
        updated_at: r.get(6),
        finished_at: r.get(7),
    }
}

fn row_to_alert(r: &Row) -> AlertRow {
    AlertRow {
        seq: r.get(0),
        id: r.get(1),
        rule_id: r.get(2),
        tenant: r.get(3),
        event_time: r.get(4),
        raised_at: r.get(5),
        body: r.get(6),
    }
}

const ALERT_COLUMNS: &str = "seq, id, rule_id, tenant, event_time, raised_at, body";

fn row_to_find(r: &Row, tenant: String, at: usize) -> ReconcileFind {
    ReconcileFind {
        tenant,
        slice_start: r.get(at),
        slice_end: r.get(at + 1),
        api_count: r.get::<_, Option<i64>>(at + 2).map(|c| c as u64),
        journal_count: r.get::<_, i64>(at + 3) as u64,
        found: r.get::<_, i64>(at + 4) as u64,
        oldest: r.get(at + 5),
        newest: r.get(at + 6),
        max_late_secs: r.get(at + 7),
        found_at: r.get(at + 8),
    }
}

fn event_row(r: &Row) -> EventRow {
    EventRow { seq: r.get(0), tenant: r.get(1), id: r.get(2), created_at: r.get(3), operation_name: r.get(4) }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const PROGRESS_COLUMNS: &str =
    "t.name, p.job, p.range_start, p.range_end, p.position, p.filter, p.updated_at, p.finished_at";

impl Backend for Postgres {
    fn place(&self) -> Place<'_> {
        Place::Server(self.pool.shown())
    }

    fn progress(&self, tenant: &str, job: &str) -> Result<Option<Progress>, JournalError> {
        self.run(async |c| {
            let sql = format!(
                "SELECT {PROGRESS_COLUMNS} FROM progress p JOIN tenants t ON t.id = p.tenant WHERE t.name = $1 AND p.job = $2"
            );
            Ok(c.query_opt(&sql, &[&tenant, &job]).await?.as_ref().map(row_to_progress))
        })
    }

    fn all_progress(&self) -> Result<Vec<Progress>, JournalError> {
        self.run(async |c| {
            let sql = format!(
                "SELECT {PROGRESS_COLUMNS} FROM progress p JOIN tenants t ON t.id = p.tenant ORDER BY t.name, p.job"
            );
            Ok(c.query(&sql, &[]).await?.iter().map(row_to_progress).collect())
        })
    }

    fn start_progress(
        &self,
        tenant: &str,
        job: &str,
        start: i64,
        end: Option<i64>,
        filter: &str,
    ) -> Result<Progress, JournalError> {
        self.run(async |c| {
            let tid = self.tenant_id(c, tenant).await?;
            c.execute(
                "INSERT INTO progress (tenant, job, range_start, range_end, position, filter, updated_at)
                 VALUES ($1, $2, $3, $4, $3, $5, $6) ON CONFLICT (tenant, job) DO NOTHING",
                &[&tid, &job, &start, &end, &filter, &now_secs()],
            )
            .await?;
            Ok(())
        })?;
        Ok(self.progress(tenant, job)?.expect("progress row exists after insert"))
    }

    fn reset_progress(&self, tenant: &str, job: &str) -> Result<bool, JournalError> {
        self.run(async |c| {
            let n = c
                .execute(
                    "DELETE FROM progress WHERE job = $2 AND tenant = (SELECT id FROM tenants WHERE name = $1)",
                    &[&tenant, &job],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn rewind_progress(
        &self,
        tenant: &str,
        job: &str,
        from: i64,
        to: i64,
        fence: Option<&Fence>,
    ) -> Result<(), JournalError> {
        self.run(async |c| {
            let tid = self.tenant_id(c, tenant).await?;
            let tx = c.transaction().await?;
            check_fence(&tx, fence).await?;
            let found: i64 = tx
                .query_one("SELECT position FROM progress WHERE tenant = $1 AND job = $2 FOR UPDATE", &[&tid, &job])
                .await?
                .get(0);
            crate::journal::check_position(tenant, job, from, found)?;
            tx.execute(
                "UPDATE progress SET position = $3, range_start = LEAST(range_start, $3), updated_at = $4
                 WHERE tenant = $1 AND job = $2",
                &[&tid, &job, &to, &now_secs()],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn commit_window(
        &self,
        commit: &WindowCommit<'_>,
        records: &[Record<'_>],
        rejected: &[Quarantined<'_>],
        fence: Option<&Fence>,
    ) -> Result<(u64, u64), JournalError> {
        self.run(async |c| {
            let tid = self.tenant_id(c, commit.tenant).await?;
            let mut tx = c.transaction().await?;
            check_fence(&tx, fence).await?;
            let found: i64 = tx
                .query_one(
                    "SELECT position FROM progress WHERE tenant = $1 AND job = $2 FOR UPDATE",
                    &[&tid, &commit.job],
                )
                .await?
                .get(0);
            crate::journal::check_position(commit.tenant, commit.job, commit.from, found)?;
            let inserted = insert_chained(&mut tx, tid, commit.tenant, records, commit.from).await?;
            let now = now_secs();
            tx.execute(
                "UPDATE progress SET position = $3::bigint, updated_at = $4::bigint,
                     finished_at = CASE WHEN range_end IS NOT NULL AND $3::bigint >= range_end THEN $4::bigint ELSE NULL END
                 WHERE tenant = $1 AND job = $2",
                &[&tid, &commit.job, &commit.to, &now],
            )
            .await?;
            tx.execute(
                "INSERT INTO progress_log (tenant, job, from_pos, to_pos, fetched, inserted, committed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&tid, &commit.job, &commit.from, &commit.to, &(commit.fetched as i64), &(inserted as i64), &now],
            )
            .await?;
            let mut quarantined = 0u64;
            for q in rejected {
                let digest = hex(&Sha256::digest(q.raw.as_bytes()));
                quarantined += tx
                    .execute(
                        "INSERT INTO quarantine (tenant, digest, raw, reason, window_start, window_end, first_seen)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, digest) DO NOTHING",
                        &[&tid, &digest, &q.raw, &q.reason, &commit.from, &commit.to, &now],
                    )
                    .await?;
            }
            tx.commit().await?;
            Ok((inserted, quarantined))
        })
    }

    fn append_events(&self, tenant: &str, records: &[Record<'_>], fence: Option<&Fence>) -> Result<u64, JournalError> {
        self.run(async |c| {
            let tid = self.tenant_id(c, tenant).await?;
            let mut tx = c.transaction().await?;
            check_fence(&tx, fence).await?;
            // Every id is looked up first: a quick look mostly sees records it stored before.
            let inserted = insert_chained(&mut tx, tid, tenant, records, i64::MAX).await?;
            tx.commit().await?;
            Ok(inserted)
        })
    }

    fn consumer(&self, name: &str, initial: i64) -> Result<ConsumerOffset, JournalError> {
        self.run(async |c| {
            c.execute(
                "INSERT INTO consumers (name, position, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                &[&name, &initial, &now_secs()],
            )
            .await?;
            let r = c.query_one("SELECT position, state FROM consumers WHERE name = $1", &[&name]).await?;
            Ok(ConsumerOffset { position: r.get(0), state: r.get(1) })
        })
    }

    fn consumers(&self) -> Result<Vec<(String, ConsumerOffset)>, JournalError> {
        self.run(async |c| {
            let rows = c.query("SELECT name, position, state FROM consumers ORDER BY name", &[]).await?;
            Ok(rows.iter().map(|r| (r.get(0), ConsumerOffset { position: r.get(1), state: r.get(2) })).collect())
        })
    }

    fn commit_offset(
        &self,
        name: &str,
        expected: i64,
        new: i64,
        state: Option<&str>,
        fence: Option<&Fence>,
    ) -> Result<(), JournalError> {
        self.run(async |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, fence).await?;
            let n = tx
                .execute(
                    "UPDATE consumers SET position = $3, state = $4, updated_at = $5 WHERE name = $1 AND position = $2",
                    &[&name, &expected, &new, &state, &now_secs()],
                )
                .await?;
            if n == 1 {
                tx.commit().await?;
                return Ok(());
            }
            let found: i64 = tx.query_one("SELECT position FROM consumers WHERE name = $1", &[&name]).await?.get(0);
            Err(JournalError::OffsetConflict { name: name.to_string(), expected, found })
        })
    }

    fn read_after(&self, after_seq: i64, max_events: usize, max_bytes: usize) -> Result<EventBatch, JournalError> {
        self.run(async |c| {
            let limit = max_events.min(i64::MAX as usize) as i64;
            let rows = c
                .query(
                    "SELECT e.seq, t.name, e.id, e.created_at, e.raw FROM events e JOIN tenants t ON t.id = e.tenant
                     WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
                    &[&after_seq, &limit],
                )
                .await?;
            let mut batch = EventBatch::default();
            for row in &rows {
                let raw: &str = row.get(4);
                let start = batch.buf.len();
                batch.buf.push_str(raw);
                let tenant: &str = row.get(1);
                let tenant = match batch.items.last() {
                    Some(prev) if prev.tenant == tenant => prev.tenant.clone(),
                    _ => tenant.to_string(),
                };
                batch.items.push(BatchItem {
                    seq: row.get(0),
                    tenant,
                    id: row.get(2),
                    created_at: row.get(3),
                    raw: start..batch.buf.len(),
                });
                if batch.buf.len() >= max_bytes {
                    break;
                }
            }
            Ok(batch)
        })
    }

    fn max_seq(&self) -> Result<i64, JournalError> {
        self.run(async |c| {
            Ok(c.query_one(
                "SELECT GREATEST((SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_seq),
                                 (SELECT COALESCE(MAX(seq), 0) FROM events))",
                &[],
            )
            .await?
            .get(0))
        })
    }

    fn count_events(&self, tenant: Option<&str>) -> Result<i64, JournalError> {
        self.run(async |c| {
            let r = match tenant {
                Some(t) => {
                    c.query_one(
                        "SELECT COUNT(*) FROM events WHERE tenant = (SELECT id FROM tenants WHERE name = $1)",
                        &[&t],
                    )
                    .await?
                }
                None => c.query_one("SELECT COUNT(*) FROM events", &[]).await?,
            };
            Ok(r.get(0))
        })
    }

    fn ids(&self, tenant: &str) -> Result<Vec<i64>, JournalError> {
        self.run(async |c| {
            let rows = c
                .query(
                    "SELECT e.id FROM events e JOIN tenants t ON t.id = e.tenant WHERE t.name = $1 ORDER BY e.id",
                    &[&tenant],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn first_seq_since(&self, t: i64) -> Result<Option<i64>, JournalError> {
        self.run(async |c| search::first_seq_since(c, t).await)
    }

    fn commit_detection(
        &self,
        step: &DetectionStep<'_>,
        alerts: &[NewAlert],
        body: &mut dyn FnMut(&NewAlert, &[EventRow]) -> String,
        fence: Option<&Fence>,
    ) -> Result<Vec<AlertRow>, JournalError> {
        let DetectionStep { consumer, expected, new, state } = *step;
        self.run(async |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, fence).await?;
            let now = now_secs();
            tx.execute(
                "INSERT INTO consumers (name, position, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                &[&consumer, &expected, &now],
            )
            .await?;
            let found: i64 =
                tx.query_one("SELECT position FROM consumers WHERE name = $1 FOR UPDATE", &[&consumer]).await?.get(0);
            if found != expected {
                return Err(JournalError::OffsetConflict { name: consumer.to_string(), expected, found });
            }
            let mut stored = Vec::new();
            if !alerts.is_empty() {
                lock(&tx, schema::ALERTS_LOCK).await?;
            }
            for a in alerts {
                let mut rows = tx
                    .query(
                        "SELECT e.seq, t.name, e.id, e.created_at, e.operation_name FROM events e JOIN tenants t ON t.id = e.tenant
                         WHERE (t.name = $1 AND e.id = ANY($2)) OR e.seq = $3",
                        &[&a.tenant, &a.event_ids, &a.trigger_seq],
                    )
                    .await?
                    .iter()
                    .map(event_row)
                    .collect::<Vec<_>>();
                rows.sort_by_key(|e| (e.created_at, e.seq));
                rows.dedup_by_key(|e| e.seq);
                let text = body(a, &rows);
                let Some(seq) = tx
                    .query_opt(
                        "INSERT INTO alerts (seq, id, rule_id, group_key, tenant, event_time, raised_at, body, level)
                         VALUES (nextval('alerts_seq'), $1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING seq",
                        &[&a.id, &a.rule_id, &a.group_key, &a.tenant, &a.event_time, &now, &text, &triage::level_of(&text)],
                    )
                    .await?
                    .map(|r| r.get::<_, i64>(0))
                else {
                    continue;
                };
                let seqs: Vec<i64> = rows.iter().map(|e| e.seq).collect();
                tx.execute(
                    "INSERT INTO alert_events (alert_seq, event_seq) SELECT $1, s FROM unnest($2::bigint[]) AS s
                     ON CONFLICT DO NOTHING",
                    &[&seq, &seqs],
                )
                .await?;
                stored.push(AlertRow {
                    seq,
                    id: a.id.clone(),
                    rule_id: a.rule_id.clone(),
                    tenant: a.tenant.clone(),
                    event_time: a.event_time,
                    raised_at: now,
                    body: text,
                });
            }
            tx.execute(
                "UPDATE consumers SET position = $2, state = $3, updated_at = $4 WHERE name = $1",
                &[&consumer, &new, &state, &now],
            )
            .await?;
            tx.commit().await?;
            Ok(stored)
        })
    }

    fn alerts_after(&self, after_seq: i64, max: usize) -> Result<Vec<AlertRow>, JournalError> {
        self.run(async |c| {
            let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE seq > $1 ORDER BY seq LIMIT $2");
            Ok(c.query(&sql, &[&after_seq, &(max.min(i64::MAX as usize) as i64)])
                .await?
                .iter()
                .map(row_to_alert)
                .collect())
        })
    }

    fn max_alert_seq(&self) -> Result<i64, JournalError> {
        self.run(async |c| Ok(c.query_one("SELECT COALESCE(MAX(seq), 0) FROM alerts", &[]).await?.get(0)))
    }

    fn alert_event_seqs(&self, alert_seq: i64) -> Result<Vec<i64>, JournalError> {
        self.run(async |c| {
            let rows = c
                .query("SELECT event_seq FROM alert_events WHERE alert_seq = $1 ORDER BY event_seq", &[&alert_seq])
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn alerts_between(&self, from: i64, to: i64, limit: usize) -> Result<Vec<AlertRow>, JournalError> {
        self.run(async |c| {
            let sql = format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE event_time >= $1 AND event_time < $2
                 ORDER BY event_time DESC, seq DESC LIMIT $3"
            );
            Ok(c.query(&sql, &[&from, &to, &(limit.min(i64::MAX as usize) as i64)])
                .await?
                .iter()
                .map(row_to_alert)
                .collect())
        })
    }

    fn find_alerts(&self, q: &AlertQuery, limit: usize) -> Result<Vec<TriagedAlert>, JournalError> {
        Postgres::find_alerts(self, q, limit)
    }

    fn alert_groups(&self, q: &AlertQuery, limit: usize) -> Result<Vec<AlertGroup>, JournalError> {
        Postgres::alert_groups(self, q, limit)
    }

    fn count_alerts(&self, q: &AlertQuery) -> Result<AlertCounts, JournalError> {
        Postgres::count_alerts(self, q)
    }

    fn alert_by_id(&self, id: &str) -> Result<Option<TriagedAlert>, JournalError> {
        Postgres::alert_by_id(self, id)
    }

    fn alert_history(&self, alert_seq: i64) -> Result<Vec<AlertChange>, JournalError> {
        Postgres::alert_history(self, alert_seq)
    }

    fn triage_alert(&self, id: &str, change: &TriageChange<'_>) -> Result<Option<Triaged>, JournalError> {
        Postgres::triage_alert(self, id, change)
    }

    fn quarantined(&self, limit: usize) -> Result<Vec<QuarantinedRow>, JournalError> {
        self.run(async |c| {
            let rows = c
                .query(
                    "SELECT t.name, q.raw, q.reason, q.window_start, q.window_end, q.first_seen
                     FROM quarantine q JOIN tenants t ON t.id = q.tenant ORDER BY q.seq DESC LIMIT $1",
                    &[&(limit.min(i64::MAX as usize) as i64)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| QuarantinedRow {
                    tenant: r.get(0),
                    raw: r.get(1),
                    reason: r.get(2),
                    window_start: r.get(3),
                    window_end: r.get(4),
                    first_seen: r.get(5),
                })
                .collect())
        })
    }

    fn quarantine_counts(&self) -> Result<Vec<(String, u64)>, JournalError> {
        self.run(async |c| {
            let rows = c
                .query(
                    "SELECT t.name, COUNT(*) FROM quarantine q JOIN tenants t ON t.id = q.tenant GROUP BY t.name ORDER BY t.name",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
        })
    }

    fn slice_counts(
        &self,
        tenant: &str,
        start: i64,
        end: i64,
        user_ids: &[u64],
        operation_names: &[String],
    ) -> Result<SliceCounts, JournalError> {
        let users: Vec<i64> = user_ids.iter().map(|u| *u as i64).collect();
        self.run(async |c| {
            let (inside, before, at_end) =
                search::slice_counts(c, tenant, (start, end), users, operation_names.to_vec()).await?;
            Ok(SliceCounts { inside: inside as u64, second_before: before as u64, second_at_end: at_end as u64 })
        })
    }

    fn stored_since(
        &self,
        tenant: &str,
        start: i64,
        end: i64,
        after_seq: i64,
    ) -> Result<(u64, Option<i64>, Option<i64>), JournalError> {
        self.run(async |c| {
            let r = c
                .query_one(
                    "SELECT COUNT(*), MIN(created_at), MAX(created_at) FROM events
                     WHERE tenant = (SELECT id FROM tenants WHERE name = $1) AND created_at >= $2 AND created_at < $3 AND seq > $4",
                    &[&tenant, &start, &end, &after_seq],
                )
                .await?;
            Ok((r.get::<_, i64>(0) as u64, r.get(1), r.get(2)))
        })
    }

    fn record_reconcile_find(&self, f: &ReconcileFind) -> Result<(), JournalError> {
        self.run(async |c| {
            let tid = self.tenant_id(c, &f.tenant).await?;
            insert_find(c, tid, f).await
        })
    }

    fn record_reconcile_pass(&self, p: &ReconcilePass) -> Result<(), JournalError> {
        self.run(async |c| {
            let tid = self.tenant_id(c, &p.tenant).await?;
            insert_pass(c, tid, p).await
        })
    }

    fn reconcile_passes(&self, from: i64, to: i64) -> Result<Vec<ReconcilePass>, JournalError> {
        self.run(async |c| {
            let rows = c
                .query(
                    "SELECT t.name, p.range_start, p.range_end, p.slices, p.reread, p.found, p.started_at, p.finished_at
                     FROM reconcile_passes p JOIN tenants t ON t.id = p.tenant
                     WHERE p.finished_at >= $1 AND p.finished_at < $2 ORDER BY p.finished_at",
                    &[&from, &to],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| ReconcilePass {
                    tenant: r.get(0),
                    range_start: r.get(1),
                    range_end: r.get(2),
                    slices: r.get::<_, i64>(3) as u64,
                    reread: r.get::<_, i64>(4) as u64,
                    found: r.get::<_, i64>(5) as u64,
                    started_at: r.get(6),
                    finished_at: r.get(7),
                })
                .collect())
        })
    }

    fn record_selftest(&self, run: &SelftestRun) -> Result<(), JournalError> {
        self.run(async |c| selftest::insert(c, run).await)
    }

    fn selftest_runs(&self, from: i64, to: i64, limit: usize) -> Result<Vec<SelftestRun>, JournalError> {
        self.run(async |c| selftest::between(c, from, to, limit).await)
    }

    fn save_search(&self, search: &SavedSearch, max: usize) -> Result<SaveOutcome, JournalError> {
        Postgres::save_search(self, search, max)
    }

    fn saved_searches(&self, limit: usize) -> Result<Vec<SavedSearch>, JournalError> {
        Postgres::saved_searches(self, limit)
    }

    fn saved_search(&self, id: i64) -> Result<Option<SavedSearch>, JournalError> {
        Postgres::saved_search(self, id)
    }

    fn delete_saved_search(&self, id: i64) -> Result<bool, JournalError> {
        Postgres::delete_saved_search(self, id)
    }

    fn reconcile_finds(&self, from: i64, to: i64) -> Result<Vec<ReconcileFind>, JournalError> {
        self.run(async |c| {
            let rows = c
                .query(
                    "SELECT t.name, f.slice_start, f.slice_end, f.api_count, f.journal_count, f.found, f.oldest, f.newest,
                            f.max_late_secs, f.found_at
                     FROM reconcile_finds f JOIN tenants t ON t.id = f.tenant
                     WHERE f.slice_end > $1 AND f.slice_start < $2 ORDER BY f.slice_start",
                    &[&from, &to],
                )
                .await?;
            Ok(rows.iter().map(|r| row_to_find(r, r.get(0), 1)).collect())
        })
    }

    fn add_posture_note(&self, note: &PostureNote) -> Result<PostureNote, JournalError> {
        self.run(async |c| {
            let r = c
                .query_one(
                    "INSERT INTO posture_notes (tenant, kind, entry_id, why, requested_by, noted_by, noted_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
                    &[
                        &note.tenant,
                        &note.kind,
                        &note.entry_id,
                        &note.why,
                        &note.requested_by,
                        &note.noted_by,
                        &note.noted_at,
                    ],
                )
                .await?;
            Ok(PostureNote { seq: r.get(0), ..note.clone() })
        })
    }

    fn posture_notes(&self, tenant: &str) -> Result<Vec<PostureNote>, JournalError> {
        self.run(async |c| {
            let rows = c
                .query(
                    "SELECT seq, tenant, kind, entry_id, why, requested_by, noted_by, noted_at
                     FROM posture_notes WHERE tenant = $1 ORDER BY seq",
                    &[&tenant],
                )
                .await?;
            Ok(rows.iter().map(note_row).collect())
        })
    }

    fn reader_positions(&self) -> Result<(HashMap<String, i64>, i64), JournalError> {
        self.run(async |c| {
            let offsets = c
                .query("SELECT name, position FROM consumers", &[])
                .await?
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .collect();
            let index: i64 = c.query_one("SELECT COALESCE(MAX(position), 0) FROM search_index", &[]).await?.get(0);
            Ok((offsets, index))
        })
    }

    fn delete_old(&self, before: i64, up_to_seq: i64, alerts_delivered: i64) -> Result<u64, JournalError> {
        let mut total = 0u64;
        loop {
            let n = self.run(async |c| {
                // What retention removed is recorded per tenant (the highest chain number),
                // so verification tells it from a deletion.
                let r = c
                    .query_one(
                        "WITH d AS (
                             DELETE FROM events WHERE seq IN
                               (SELECT seq FROM events WHERE seq <= $1 AND created_at < $2
                                  AND seq NOT IN (SELECT event_seq FROM alert_events WHERE alert_seq > $3)
                                ORDER BY seq LIMIT 5000)
                             RETURNING tenant, chain_n),
                         m AS (SELECT tenant, MAX(chain_n) AS n FROM d WHERE chain_n IS NOT NULL GROUP BY tenant),
                         u AS (UPDATE tenants t SET chain_pruned_n = GREATEST(t.chain_pruned_n, m.n)
                               FROM m WHERE t.id = m.tenant RETURNING 1)
                         SELECT (SELECT COUNT(*) FROM d), (SELECT COUNT(*) FROM u)",
                        &[&up_to_seq, &before, &alerts_delivered],
                    )
                    .await?;
                Ok(r.get::<_, i64>(0) as u64)
            })?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    fn prune_bounds(
        &self,
        before: i64,
        up_to_seq: i64,
        alerts_delivered: i64,
    ) -> Result<Vec<(String, i64)>, JournalError> {
        self.run(async |c| {
            let rows = c
                .query(
                    "SELECT t.name, MAX(e.chain_n) FROM events e JOIN tenants t ON t.id = e.tenant
                     WHERE e.seq <= $1 AND e.created_at < $2 AND e.chain_n IS NOT NULL
                       AND e.seq NOT IN (SELECT event_seq FROM alert_events WHERE alert_seq > $3)
                     GROUP BY t.name ORDER BY t.name",
                    &[&up_to_seq, &before, &alerts_delivered],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn index_state(&self) -> Result<IndexState, JournalError> {
        self.run(async |c| search::index_state(c).await)
    }

    fn index_batch(&self, max: usize, fence: Option<&Fence>) -> Result<usize, JournalError> {
        self.run(async |c| search::index_batch(c, max, fence).await)
    }

    fn optimize(&self) -> Result<(), JournalError> {
        self.run(async |c| {
            c.batch_execute("ANALYZE events; ANALYZE event_keys; ANALYZE events_text;").await?;
            Ok(())
        })
    }

    fn seen_user_names(&self) -> Result<Vec<(i64, String)>, JournalError> {
        self.run(async |c| {
            let rows = c.query("SELECT DISTINCT user_id, user_name FROM search_users", &[]).await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn seen_values(&self, kind: &str) -> Result<Vec<String>, JournalError> {
        self.run(async |c| {
            let rows = c.query("SELECT value FROM search_values WHERE kind = $1", &[&kind]).await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn seen_values_prefixed(&self, kind: &str, prefixes: &[String]) -> Result<Vec<String>, JournalError> {
        let (low, high): (Vec<&str>, Vec<String>) =
            prefixes.iter().map(|p| (p.as_str(), crate::journal::prefix_end(p))).unzip();
        self.run(async |c| {
            let rows = c
                .query(
                    "SELECT s.value FROM unnest($2::text[], $3::text[]) AS r(lo, hi)
                     JOIN search_values s ON s.kind = $1
                      AND s.value COLLATE \"C\" >= r.lo COLLATE \"C\" AND s.value COLLATE \"C\" < r.hi COLLATE \"C\"",
                    &[&kind, &low, &high],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn operation_exists(&self, name: &str) -> Result<bool, JournalError> {
        self.run(async |c| search::operation_exists(c, name).await)
    }

    fn search(&self, q: &EventQuery, limit: usize) -> Result<Vec<FoundEvent>, JournalError> {
        self.run(async |c| search::search(c, q, limit).await)
    }

    fn histogram(&self, q: &EventQuery, bucket: i64) -> Result<Vec<(i64, i64)>, JournalError> {
        self.run(async |c| search::histogram(c, q, bucket).await)
    }

    fn span(&self, q: &EventQuery) -> Result<Option<(i64, i64)>, JournalError> {
        self.run(async |c| search::span(c, q).await)
    }

    fn count(&self, q: &EventQuery) -> Result<i64, JournalError> {
        self.run(async |c| search::count(c, q).await)
    }

    fn facet_keys(&self, q: &EventQuery, limit: usize) -> Result<Vec<FacetKeys>, JournalError> {
        self.run(async |c| search::facet_keys(c, q, limit).await)
    }

    fn tenants(&self) -> Result<Vec<String>, JournalError> {
        self.run(async |c| {
            Ok(c.query("SELECT name FROM tenants ORDER BY name", &[]).await?.iter().map(|r| r.get(0)).collect())
        })
    }

    fn ledger(&self, tenant: &str, from: i64, to: i64) -> Result<Option<Ledger>, JournalError> {
        self.run(async |c| {
            let Some(tid) = self.known_tenant(c, tenant).await? else { return Ok(None) };
            let cursor = c
                .query_opt("SELECT position FROM progress WHERE tenant = $1 AND job = 'cursor'", &[&tid])
                .await?
                .map(|r| r.get(0));
            let windows = c
                .query(
                    "SELECT from_pos, to_pos, inserted, committed_at, job FROM progress_log
                     WHERE tenant = $1 AND to_pos > $2 AND from_pos < $3 ORDER BY committed_at",
                    &[&tid, &from, &to],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                .collect();
            let passes = c
                .query_one(
                    "SELECT COUNT(*), MAX(finished_at) FROM reconcile_passes
                     WHERE tenant = $1 AND range_end > $2 AND range_start < $3",
                    &[&tid, &from, &to],
                )
                .await?;
            let reconcile_finds = c
                .query(
                    "SELECT slice_start, slice_end, api_count, journal_count, found, oldest, newest, max_late_secs, found_at
                     FROM reconcile_finds WHERE tenant = $1 AND slice_end > $2 AND slice_start < $3 ORDER BY slice_start",
                    &[&tid, &from, &to],
                )
                .await?
                .iter()
                .map(|r| row_to_find(r, tenant.to_string(), 0))
                .collect();
            Ok(Some(Ledger {
                cursor,
                windows,
                reconcile_passes: passes.get(0),
                last_reconcile: passes.get(1),
                reconcile_finds,
            }))
        })
    }

    fn inserted_since(&self, since: i64) -> Result<i64, JournalError> {
        self.run(async |c| {
            Ok(c.query_one(
                "SELECT COALESCE(SUM(inserted), 0)::bigint FROM progress_log WHERE committed_at >= $1",
                &[&since],
            )
            .await?
            .get(0))
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn chain_since_seq(&self) -> Result<i64, JournalError> {
        self.run(async |c| Ok(c.query_one("SELECT chain_since_seq FROM integrity WHERE id = 1", &[]).await?.get(0)))
    }

    fn tenant_chains(&self) -> Result<Vec<chain::TenantChain>, JournalError> {
        self.run(async |c| {
            let rows =
                c.query("SELECT name, chain_n, chain_head, chain_pruned_n FROM tenants ORDER BY name", &[]).await?;
            Ok(rows
                .iter()
                .map(|r| chain::TenantChain {
                    tenant: r.get(0),
                    head: chain::Head::from_stored(r.get(1), r.get::<_, Option<&[u8]>>(2)),
                    pruned_through: r.get(3),
                })
                .collect())
        })
    }

    fn chain_rows(&self, after_seq: i64, max: usize) -> Result<Vec<chain::ChainRow>, JournalError> {
        let max = max.min(i64::MAX as usize) as i64;
        self.run(async |c| {
            let rows = c
                .query(
                    "SELECT e.seq, t.name, e.id, e.raw, e.chain_n, e.chain_prev, e.chain
                     FROM events e JOIN tenants t ON t.id = e.tenant WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
                    &[&after_seq, &max],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| chain::ChainRow {
                    seq: r.get(0),
                    tenant: r.get(1),
                    id: r.get(2),
                    raw: r.get(3),
                    link: chain::Link::from_stored(r.get(4), r.get(5), r.get(6)),
                })
                .collect())
        })
    }

    fn checkpoint_basis(&self, tenant: &str) -> Result<Option<checkpoint::Basis>, JournalError> {
        self.run(async |c| {
            // One snapshot: the head and the last checkpoint agree.
            let tx =
                c.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).start().await?;
            let Some(r) = tx
                .query_opt(
                    "SELECT id, chain_n, chain_head, chain_seq, chain_pruned_n FROM tenants WHERE name = $1",
                    &[&tenant],
                )
                .await?
            else {
                return Ok(None);
            };
            let tid: i64 = r.get(0);
            let head = chain::Head::from_stored(r.get(1), r.get::<_, Option<&[u8]>>(2));
            let last = tx
                .query_opt(
                    "SELECT $2::text, number, to_seq, body, signature FROM checkpoints WHERE tenant = $1
                     ORDER BY number DESC LIMIT 1",
                    &[&tid, &tenant],
                )
                .await?
                .map(|r| checkpoint_row(&r));
            tx.commit().await?;
            Ok(Some(checkpoint::Basis { head, head_seq: r.get(3), pruned_through: r.get(4), last }))
        })
    }

    fn append_checkpoint(
        &self,
        cp: &checkpoint::StoredCheckpoint,
        fence: Option<&Fence>,
    ) -> Result<bool, JournalError> {
        self.run(async |c| {
            let tid = self.tenant_id(c, &cp.tenant).await?;
            let tx = c.transaction().await?;
            check_fence(&tx, fence).await?;
            let n = tx
                .execute(
                    "INSERT INTO checkpoints (tenant, number, to_seq, body, signature) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (tenant, number) DO NOTHING",
                    &[&tid, &cp.number, &cp.to_seq, &cp.body, &cp.signature],
                )
                .await?;
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    fn checkpoints_between(&self, after: i64, through: i64) -> Result<Vec<checkpoint::StoredCheckpoint>, JournalError> {
        self.run(async |c| {
            let rows = c
                .query(
                    "SELECT t.name, c.number, c.to_seq, c.body, c.signature FROM checkpoints c JOIN tenants t ON t.id = c.tenant
                     WHERE c.to_seq > $1 AND c.to_seq <= $2 ORDER BY c.to_seq, t.name, c.number",
                    &[&after, &through],
                )
                .await?;
            Ok(rows.iter().map(checkpoint_row).collect())
        })
    }

    fn latest_checkpoints(&self) -> Result<Vec<checkpoint::StoredCheckpoint>, JournalError> {
        self.run(async |c| {
            let rows = c
                .query(
                    "SELECT DISTINCT ON (t.name) t.name, c.number, c.to_seq, c.body, c.signature
                     FROM checkpoints c JOIN tenants t ON t.id = c.tenant ORDER BY t.name, c.number DESC",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(checkpoint_row).collect())
        })
    }

    fn dump(
        &self,
        out: &mut dyn FnMut(crate::journal::dump::Row) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        self.run(async |c| dump::dump(c, out).await)
    }

    fn load(
        &self,
        rows: &mut dyn Iterator<Item = Result<crate::journal::dump::Row, JournalError>>,
    ) -> Result<(), JournalError> {
        self.run(async |c| dump::load(self, c, rows).await)
    }

    fn lease_round(&self, holder: &str, ttl_ms: i64) -> Result<LeaseView, JournalError> {
        self.run(async |c| {
            c.execute(
                &format!(
                    "INSERT INTO instances (holder, seen_at_ms, started_at_ms) VALUES ($1, {NOW_MS}, {NOW_MS})
                     ON CONFLICT (holder) DO UPDATE SET seen_at_ms = EXCLUDED.seen_at_ms"
                ),
                &[&holder],
            )
            .await?;
            c.execute(&format!("DELETE FROM instances WHERE seen_at_ms < {NOW_MS} - 10 * $1::bigint"), &[&ttl_ms])
                .await?;
            let r = c
                .query_one(
                    &format!(
                        "SELECT {NOW_MS}, (SELECT COUNT(*) FROM instances WHERE seen_at_ms >= {NOW_MS} - $1::bigint)"
                    ),
                    &[&ttl_ms],
                )
                .await?;
            Ok(LeaseView {
                now_ms: r.get(0),
                live_instances: r.get::<_, i64>(1).max(1) as usize,
                leases: all_leases(c).await?,
            })
        })
    }

    fn leases(&self) -> Result<LeaseView, JournalError> {
        self.run(async |c| {
            let r = c
                .query_one(
                    &format!("SELECT {NOW_MS}, (SELECT COUNT(*) FROM instances WHERE seen_at_ms >= {NOW_MS} - 60000)"),
                    &[],
                )
                .await?;
            Ok(LeaseView {
                now_ms: r.get(0),
                live_instances: r.get::<_, i64>(1) as usize,
                leases: all_leases(c).await?,
            })
        })
    }

    fn take_lease(&self, job: &str, holder: &str, ttl_ms: i64) -> Result<Option<Fence>, JournalError> {
        self.run(async |c| {
            let row = c
                .query_opt(
                    &format!(
                        "INSERT INTO leases (job, holder, token, expires_at_ms, acquired_at_ms)
                         VALUES ($1, $2, 1, {NOW_MS} + $3::bigint, {NOW_MS})
                         ON CONFLICT (job) DO UPDATE SET holder = EXCLUDED.holder, token = leases.token + 1,
                             expires_at_ms = EXCLUDED.expires_at_ms, acquired_at_ms = EXCLUDED.acquired_at_ms
                         WHERE leases.expires_at_ms < {NOW_MS}
                         RETURNING token"
                    ),
                    &[&job, &holder, &ttl_ms],
                )
                .await?;
            Ok(row.map(|r| Fence { job: job.to_string(), holder: holder.to_string(), token: r.get(0) }))
        })
    }

    fn renew_leases(&self, held: &[Fence], ttl_ms: i64) -> Result<Vec<Fence>, JournalError> {
        let jobs: Vec<&str> = held.iter().map(|f| f.job.as_str()).collect();
        let holders: Vec<&str> = held.iter().map(|f| f.holder.as_str()).collect();
        let tokens: Vec<i64> = held.iter().map(|f| f.token).collect();
        self.run(async |c| {
            let rows = c
                .query(
                    &format!(
                        "UPDATE leases SET expires_at_ms = {NOW_MS} + $4::bigint
                         FROM unnest($1::text[], $2::text[], $3::bigint[]) AS h(job, holder, token)
                         WHERE leases.job = h.job AND leases.holder = h.holder AND leases.token = h.token
                         RETURNING leases.job, leases.holder, leases.token"
                    ),
                    &[&jobs, &holders, &tokens, &ttl_ms],
                )
                .await?;
            Ok(rows.iter().map(|r| Fence { job: r.get(0), holder: r.get(1), token: r.get(2) }).collect())
        })
    }

    fn release_lease(&self, fence: &Fence) -> Result<(), JournalError> {
        self.run(async |c| {
            c.execute(
                "UPDATE leases SET expires_at_ms = 0 WHERE job = $1 AND holder = $2 AND token = $3",
                &[&fence.job, &fence.holder, &fence.token],
            )
            .await?;
            Ok(())
        })
    }

    fn size_bytes(&self) -> u64 {
        self.run(async |c| {
            let n: i64 = c
                .query_one(
                    "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'",
                    &[],
                )
                .await?
                .get(0);
            Ok(n.max(0) as u64)
        })
        .unwrap_or(0)
    }

    fn check_writable(&self) -> Result<(), JournalError> {
        self.run(async |c| {
            let tx = c.transaction().await?;
            tx.execute("SELECT 1 FROM search_index WHERE id = 1 FOR UPDATE", &[]).await?;
            tx.rollback().await?;
            Ok(())
        })
    }

    fn set_max_size(&self, _bytes: u64) -> Result<(), JournalError> {
        Err(JournalError::Config(
            "journal.max_size applies to the SQLite journal only; size a PostgreSQL journal with the server's own quotas and alerts".into(),
        ))
    }

    fn export(&self, _dest: &Path) -> Result<(), JournalError> {
        Err(JournalError::Config(
            "state export from a PostgreSQL journal is not available yet: use pg_dump to back it up".into(),
        ))
    }
}

/// A database URL for messages: the password replaced by `***`, and nothing else changed.
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(a database URL that does not parse)".to_string(),
    }
}

/// Parameters of a dynamically built statement.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

fn refs(p: &Params) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect()
}

/// Creates an empty schema (for tests: one journal each in a shared server).
#[cfg(test)]
pub(crate) fn create_schema(url: &str, name: &str) -> Result<(), JournalError> {
    let pool = Pool::new(conn::parse(url)?)?;
    pool.run(async |c| {
        c.batch_execute(&format!("CREATE SCHEMA \"{name}\"")).await?;
        Ok(())
    })
}

/// Runs SQL on the journal's database, outside the journal (tests that tamper with it).
#[cfg(test)]
pub(crate) fn execute(url: &str, sql: &str) -> Result<(), JournalError> {
    let pool = Pool::new(conn::parse(url)?)?;
    pool.run(async |c| Ok(c.batch_execute(sql).await?))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::journal::testing::{Kind, fresh};
    use crate::journal::{Journal, Location, Record};

    /// A journal written by stop 3's build (schema 2: filter indexes on `events`, no
    /// chain) upgrades in place: indexed events get their keys, search answers alike,
    /// the old events count as collected before the chain, and new ones are chained.
    #[test]
    fn a_schema_2_journal_upgrades_with_its_keys_and_starts_its_chain_after_its_events() {
        let url = crate::journal::testing::fresh_schema_url();
        let pool = Pool::new(conn::parse(&url).unwrap()).unwrap();
        pool.run(async |c| {
            schema::migrate_to(c, 2).await?;
            c.batch_execute(
                "INSERT INTO tenants (name, created_at) VALUES ('acme', 0);
                 INSERT INTO events (seq, tenant, id, created_at, operation_name, user_id, user_email, request_ip, raw)
                     SELECT i, 1, i, 1000 + i, 'Login', 7, 'Ann@X.test', '10.0.0.1', '{\"id\":' || i || '}'
                     FROM generate_series(1, 10) AS i;
                 SELECT setval('events_seq', 12);
                 UPDATE search_index SET position = 6;",
            )
            .await?;
            Ok(())
        })
        .unwrap();
        let j = Journal::open_at(&Location::Url(crate::secret::Secret::new(url.clone())), Access::Write).unwrap();
        let keys: i64 =
            pool.run(async |c| Ok(c.query_one("SELECT COUNT(*) FROM event_keys", &[]).await?.get(0))).unwrap();
        assert_eq!(keys, 6, "the events the indexer had passed");
        let q = EventQuery { emails: vec!["ann@x.test".into()], ..EventQuery::default() };
        assert_eq!(j.search(&q, 100).unwrap().len(), 10, "indexed and not yet indexed alike");
        assert_eq!(j.chain_since_seq().unwrap(), 13);
        let before = crate::journal::chain::verify_journal(&j, &crate::signing::Keyring::default(), &|_| {}).unwrap();
        assert_eq!((before.unchained, before.verified, before.problems.len()), (10, 0, 0));
        j.start_progress("acme", "cursor", 0, None, "").unwrap();
        let raw = "{\"id\":11}";
        let r = Record {
            id: 11,
            created_at: 2000,
            operation_name: "Login",
            user_id: None,
            user_email: None,
            request_ip: None,
            raw,
        };
        let w = crate::journal::WindowCommit { tenant: "acme", job: "cursor", from: 0, to: 3000, fetched: 1 };
        assert_eq!(j.commit_window(&w, [r]).unwrap(), 1);
        let after = crate::journal::chain::verify_journal(&j, &crate::signing::Keyring::default(), &|_| {}).unwrap();
        assert_eq!((after.unchained, after.verified, after.problems.len()), (10, 1, 0), "{after:?}");
        assert_eq!(j.read_after(10, 10, usize::MAX).unwrap().last_seq(), Some(13));
    }

    /// PostgreSQL appends the words of operation names to the text of events indexed
    /// before they were, split in SQL: for every name of the catalog (and a few that are
    /// not), the words it adds are exactly those `catalog::name_words` gives new events.
    #[test]
    fn operation_name_words_migration_splits_every_name_as_the_indexer_does() {
        let url = crate::journal::testing::fresh_schema_url();
        let pool = Pool::new(conn::parse(&url).unwrap()).unwrap();
        let mut names: Vec<String> = crate::catalog::operations().iter().map(|o| o.name.to_string()).collect();
        names.extend(["story.created", "SCIM/2.0/User", "Oauth2TokenV2Creation", "ABcDEf"].map(String::from));
        let n = names.clone();
        pool.run(async move |c| {
            schema::migrate_to(c, 7).await?;
            c.batch_execute("INSERT INTO tenants (name, created_at) VALUES ('acme', 0)").await?;
            for (i, name) in n.iter().enumerate() {
                let seq = i as i64 + 1;
                c.execute(
                    "INSERT INTO events (seq, tenant, id, created_at, operation_name, raw) VALUES ($1, 1, $1, 1000, $2, '{}')",
                    &[&seq, name],
                )
                .await?;
                c.execute(
                    "INSERT INTO event_keys (seq, tenant, created_at, operation_name) VALUES ($1, 1, 1000, $2)",
                    &[&seq, name],
                )
                .await?;
                c.execute("INSERT INTO events_text (seq, body) VALUES ($1, to_tsvector('simple', 'zzold'))", &[&seq])
                    .await?;
            }
            c.execute("UPDATE search_index SET position = $1", &[&(n.len() as i64)]).await?;
            Ok(())
        })
        .unwrap();
        let j = Journal::open_at(&Location::Url(crate::secret::Secret::new(url.clone())), Access::Write).unwrap();
        let bodies: Vec<(i64, Vec<String>)> = pool
            .run(async |c| {
                let rows = c.query("SELECT seq, tsvector_to_array(body) FROM events_text ORDER BY seq", &[]).await?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
            .unwrap();
        assert_eq!(bodies.len(), names.len());
        for ((_, lexemes), name) in bodies.iter().zip(&names) {
            let mut got: Vec<&str> = lexemes.iter().map(String::as_str).filter(|l| *l != "zzold").collect();
            got.sort_unstable();
            let mut want = crate::catalog::name_words(name);
            if want.len() < 2 {
                want.clear();
            }
            want.sort_unstable();
            want.dedup();
            assert_eq!(got, want, "{name}");
        }
        let q = EventQuery {
            text: vec![vec![crate::journal::TextTerm { words: "credential destruction".into(), prefix: false }]],
            ..EventQuery::default()
        };
        let phrase = |n: &String| crate::catalog::name_words(n).windows(2).any(|w| w == ["credential", "destruction"]);
        let want = names.iter().filter(|n| phrase(n)).count();
        assert!(want >= 1);
        assert_eq!(j.search(&q, 100).unwrap().len(), want, "a phrase of an old event's operation words");
    }

    /// Regression: an instance frozen (SIGSTOP, a paused VM) between two statements of a
    /// window commit held the events lock, so every other instance's commits, and the
    /// take-over of its jobs, waited until it woke. The server now ends such a session.
    #[test]
    fn a_frozen_instance_inside_a_transaction_does_not_block_the_others_for_ever() {
        let j = fresh(Kind::Postgres);
        let Location::Url(url) = j.at.clone() else { unreachable!() };
        let frozen = Postgres::connect(url.expose(), Access::Write).unwrap();
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let woke = Arc::new(AtomicBool::new(false));
        let w = woke.clone();
        std::thread::spawn(move || {
            let r = frozen.run(async |c| {
                let tx = c.transaction().await?;
                lock(&tx, schema::EVENTS_LOCK).await?;
                locked_tx.send(()).unwrap();
                // Frozen: no statement reaches the server for a long while.
                std::thread::sleep(std::time::Duration::from_secs(40));
                w.store(true, Ordering::SeqCst);
                tx.commit().await?;
                Ok(())
            });
            assert!(r.is_err(), "the frozen transaction was ended by the server");
        });
        locked.recv().unwrap();
        j.start_progress("t", "cursor", 0, None, "").unwrap();
        let c = WindowCommit { tenant: "t", job: "cursor", from: 0, to: 1, fetched: 1 };
        let r = Record {
            id: 1,
            created_at: 1,
            operation_name: "Login",
            user_id: None,
            user_email: None,
            request_ip: None,
            raw: "{}",
        };
        assert_eq!(Journal::commit_window(&j, &c, [r]).unwrap(), 1);
        assert!(!woke.load(Ordering::SeqCst), "the commit had to wait for the frozen instance to wake");
    }
}
