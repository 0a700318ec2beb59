//! Records that cannot be events, and the reconciliation ledger.
//!
//! A record the API sends without an `id` or a usable `created_at` cannot be
//! stored as an event, but it must neither stop collection nor vanish: it is
//! kept byte for byte in `quarantine`, once (by digest), in the transaction of
//! its window. Reconciliation (the collector's later re-count of closed time
//! slices) records each pass and each slice where it found missing events, so
//! reports can say what it checked and what it found.

use rusqlite::{Transaction, params};
use sha2::{Digest, Sha256};

use super::Sqlite;
use crate::journal::{
    JournalError, Quarantined, QuarantinedRow, ReconcileFind, ReconcilePass, SliceCounts, WindowCommit,
};
use crate::timeutil::now_secs;

/// Stores a window's rejected records once each; returns how many were new.
pub(super) fn insert<'q>(
    tx: &Transaction<'_>,
    tenant: i64,
    commit: &WindowCommit<'_>,
    rejected: impl IntoIterator<Item = Quarantined<'q>>,
    now: i64,
) -> Result<u64, JournalError> {
    let mut new = 0;
    let mut stmt = None;
    for q in rejected {
        let stmt = match &mut stmt {
            Some(s) => s,
            None => stmt.insert(tx.prepare_cached(
                "INSERT INTO quarantine (tenant, digest, raw, reason, window_start, window_end, first_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(tenant, digest) DO NOTHING",
            )?),
        };
        let digest = hex(&Sha256::digest(q.raw.as_bytes()));
        new += stmt.execute(params![tenant, digest, q.raw, q.reason, commit.from, commit.to, now])? as u64;
    }
    Ok(new)
}

/// A find from a row holding `slice_start, slice_end, api_count, journal_count, found, oldest,
/// newest, max_late_secs, found_at` from column `at` on.
pub(super) fn find_from_row(r: &rusqlite::Row<'_>, tenant: String, at: usize) -> rusqlite::Result<ReconcileFind> {
    Ok(ReconcileFind {
        tenant,
        slice_start: r.get(at)?,
        slice_end: r.get(at + 1)?,
        api_count: r.get::<_, Option<i64>>(at + 2)?.map(|c| c as u64),
        journal_count: r.get::<_, i64>(at + 3)? as u64,
        found: r.get::<_, i64>(at + 4)? as u64,
        oldest: r.get(at + 5)?,
        newest: r.get(at + 6)?,
        max_late_secs: r.get(at + 7)?,
        found_at: r.get(at + 8)?,
    })
}

pub(super) fn insert_find(conn: &rusqlite::Connection, tid: i64, f: &ReconcileFind) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO reconcile_finds (tenant, slice_start, slice_end, api_count, journal_count, found, oldest,
             newest, max_late_secs, found_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        tid,
        f.slice_start,
        f.slice_end,
        f.api_count.map(|c| c as i64),
        f.journal_count as i64,
        f.found as i64,
        f.oldest,
        f.newest,
        f.max_late_secs,
        f.found_at
    ])?;
    Ok(())
}

pub(super) fn insert_pass(conn: &rusqlite::Connection, tid: i64, p: &ReconcilePass) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO reconcile_passes (tenant, range_start, range_end, slices, reread, found, started_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        tid,
        p.range_start,
        p.range_end,
        p.slices as i64,
        p.reread as i64,
        p.found as i64,
        p.started_at,
        p.finished_at
    ])?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `AND user_id IN (..) AND operation_name IN (..)` for a tenant's filters, with their values.
fn filter_sql(user_ids: &[u64], operation_names: &[String]) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut sql = String::new();
    let mut values = Vec::new();
    if !user_ids.is_empty() {
        sql.push_str(&format!(" AND user_id IN ({})", vec!["?"; user_ids.len()].join(",")));
        values.extend(user_ids.iter().map(|u| Value::Integer(*u as i64)));
    }
    if !operation_names.is_empty() {
        sql.push_str(&format!(" AND operation_name IN ({})", vec!["?"; operation_names.len()].join(",")));
        values.extend(operation_names.iter().map(|o| Value::Text(o.clone())));
    }
    (sql, values)
}

impl Sqlite {
    /// Quarantined records, newest first, at most `limit`.
    pub(super) fn quarantined(&self, limit: usize) -> Result<Vec<QuarantinedRow>, JournalError> {
        self.query(|conn| {
            let mut stmt = conn.prepare(
                "SELECT t.name, q.raw, q.reason, q.window_start, q.window_end, q.first_seen
                 FROM quarantine q JOIN tenants t ON t.id = q.tenant ORDER BY q.seq DESC LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit as i64], |r| {
                    Ok(QuarantinedRow {
                        tenant: r.get(0)?,
                        raw: r.get(1)?,
                        reason: r.get(2)?,
                        window_start: r.get(3)?,
                        window_end: r.get(4)?,
                        first_seen: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// How many records are quarantined, per tenant.
    pub(super) fn quarantine_counts(&self) -> Result<Vec<(String, u64)>, JournalError> {
        self.query(|conn| {
            let mut stmt = conn.prepare(
                "SELECT t.name, COUNT(*) FROM quarantine q JOIN tenants t ON t.id = q.tenant GROUP BY t.name ORDER BY t.name",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// The tenant's events (matching its filters) in `[start, end)` and in the
    /// second on either side of it (blocking).
    pub(super) fn slice_counts(
        &self,
        tenant: &str,
        start: i64,
        end: i64,
        user_ids: &[u64],
        operation_names: &[String],
    ) -> Result<SliceCounts, JournalError> {
        let (filter, values) = filter_sql(user_ids, operation_names);
        let sql = format!(
            "SELECT COALESCE(SUM(created_at >= ?2 AND created_at < ?3), 0),
                    COALESCE(SUM(created_at = ?2 - 1), 0),
                    COALESCE(SUM(created_at = ?3), 0)
             FROM events WHERE tenant = (SELECT id FROM tenants WHERE name = ?1)
               AND created_at >= ?2 - 1 AND created_at <= ?3{filter}"
        );
        let conn = self.reader();
        let mut params: Vec<rusqlite::types::Value> = vec![tenant.to_string().into(), start.into(), end.into()];
        params.extend(values);
        let (a, b, c): (i64, i64, i64) =
            conn.query_row(&sql, rusqlite::params_from_iter(params), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(SliceCounts { inside: a as u64, second_before: b as u64, second_at_end: c as u64 })
    }

    /// Events of a tenant in `[start, end)` stored after `after_seq`: how many,
    /// and the oldest and newest `created_at` among them (blocking).
    pub(super) fn stored_since(
        &self,
        tenant: &str,
        start: i64,
        end: i64,
        after_seq: i64,
    ) -> Result<(u64, Option<i64>, Option<i64>), JournalError> {
        let conn = self.reader();
        let (n, lo, hi): (i64, Option<i64>, Option<i64>) = conn.query_row(
            "SELECT COUNT(*), MIN(created_at), MAX(created_at) FROM events
             WHERE tenant = (SELECT id FROM tenants WHERE name = ?1) AND created_at >= ?2 AND created_at < ?3 AND seq > ?4",
            params![tenant, start, end, after_seq],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok((n as u64, lo, hi))
    }

    /// Records a slice where reconciliation found missing events (blocking).
    pub(super) fn record_reconcile_find(&self, f: &ReconcileFind) -> Result<(), JournalError> {
        let conn = self.writer();
        let tid = self.tenant_id(&conn, &f.tenant)?;
        insert_find(&conn, tid, f)
    }

    /// Records a finished reconciliation pass (blocking).
    pub(super) fn record_reconcile_pass(&self, p: &ReconcilePass) -> Result<(), JournalError> {
        let conn = self.writer();
        let tid = self.tenant_id(&conn, &p.tenant)?;
        insert_pass(&conn, tid, p)
    }

    /// Reconciliation passes that finished in `[from, to)`, oldest first.
    pub(super) fn reconcile_passes(&self, from: i64, to: i64) -> Result<Vec<ReconcilePass>, JournalError> {
        self.query(|conn| {
            let mut stmt = conn.prepare(
                "SELECT t.name, p.range_start, p.range_end, p.slices, p.reread, p.found, p.started_at, p.finished_at
                 FROM reconcile_passes p JOIN tenants t ON t.id = p.tenant
                 WHERE p.finished_at >= ?1 AND p.finished_at < ?2 ORDER BY p.finished_at",
            )?;
            let rows = stmt
                .query_map(params![from, to], |r| {
                    Ok(ReconcilePass {
                        tenant: r.get(0)?,
                        range_start: r.get(1)?,
                        range_end: r.get(2)?,
                        slices: r.get::<_, i64>(3)? as u64,
                        reread: r.get::<_, i64>(4)? as u64,
                        found: r.get::<_, i64>(5)? as u64,
                        started_at: r.get(6)?,
                        finished_at: r.get(7)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Slices where reconciliation found events, for slices overlapping `[from, to)`, oldest first.
    pub(super) fn reconcile_finds(&self, from: i64, to: i64) -> Result<Vec<ReconcileFind>, JournalError> {
        self.query(|conn| {
            let mut stmt = conn.prepare(
                "SELECT t.name, f.slice_start, f.slice_end, f.api_count, f.journal_count, f.found, f.oldest, f.newest,
                        f.max_late_secs, f.found_at
                 FROM reconcile_finds f JOIN tenants t ON t.id = f.tenant
                 WHERE f.slice_end > ?1 AND f.slice_start < ?2 ORDER BY f.slice_start",
            )?;
            let rows = stmt
                .query_map(params![from, to], |r| find_from_row(r, r.get(0)?, 1))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// Moves a job's position back from `from` to `to` (for a cursor found in
    /// the future of the API's clock). Refused if the position is not `from`.
    pub(super) fn rewind_progress(&self, tenant: &str, job: &str, from: i64, to: i64) -> Result<(), JournalError> {
        let mut conn = self.writer();
        let tid = self.tenant_id(&conn, tenant)?;
        let tx = conn.transaction()?;
        let found: i64 =
            tx.query_row("SELECT position FROM progress WHERE tenant = ?1 AND job = ?2", params![tid, job], |r| {
                r.get(0)
            })?;
        crate::journal::check_position(tenant, job, from, found)?;
        tx.execute(
            "UPDATE progress SET position = ?3, range_start = MIN(range_start, ?3), updated_at = ?4
             WHERE tenant = ?1 AND job = ?2",
            params![tid, job, to, now_secs()],
        )?;
        tx.commit()?;
        Ok(())
    }
}
