//! [`Row`]s out of and into an SQLite journal (see `journal::dump`).

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::Sqlite;
use crate::journal::chain::{Head, Link};
use crate::journal::dump::Row;
use crate::journal::{FoundEvent, JournalError, ReconcilePass};

type Out<'a> = &'a mut dyn FnMut(Row) -> Result<(), JournalError>;

/// Streams one statement's rows through `map` into `out` (SQLite steps lazily: memory stays bounded).
fn each(
    conn: &Connection,
    sql: &str,
    out: Out<'_>,
    map: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Row>,
) -> Result<(), JournalError> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        out(map(r)?)?;
    }
    Ok(())
}

impl Sqlite {
    pub(super) fn dump_rows(&self, out: Out<'_>) -> Result<(), JournalError> {
        self.query(|conn| {
            // One read transaction: every table from the same snapshot, while collection goes on.
            conn.execute_batch("BEGIN")?;
            let r = dump_all(conn, out);
            let _ = conn.execute_batch("COMMIT");
            r
        })
    }

    pub(super) fn load_rows(
        &self,
        rows: &mut dyn Iterator<Item = Result<Row, JournalError>>,
    ) -> Result<(), JournalError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let used: i64 = tx.query_row(
            "SELECT (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM tenants) + (SELECT COUNT(*) FROM consumers)
                  + (SELECT COUNT(*) FROM alerts) + (SELECT COUNT(*) FROM progress)
                  + (SELECT COUNT(*) FROM posture_notes) + (SELECT COUNT(*) FROM saved_searches)",
            [],
            |r| r.get(0),
        )?;
        if used > 0 {
            return Err(JournalError::NotEmpty(self.dir.display().to_string()));
        }
        let mut tenants: HashMap<String, i64> = HashMap::new();
        let tid = |tenants: &HashMap<String, i64>, name: &str| {
            tenants.get(name).copied().ok_or_else(|| {
                JournalError::Task(format!("a row names tenant {name}, which the dump did not list first"))
            })
        };
        let (mut high_water, mut searches_high_water) = (0i64, 0i64);
        for row in rows {
            match row? {
                Row::Tenant { name, created_at, head, head_seq, pruned_through } => {
                    let hash = (head.n > 0).then_some(&head.hash[..]);
                    tx.execute(
                        "INSERT INTO tenants (name, created_at, chain_n, chain_head, chain_pruned_n, chain_seq)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![name, created_at, head.n, hash, pruned_through, head_seq],
                    )?;
                    tenants.insert(name, tx.last_insert_rowid());
                }
                Row::Event(
                    FoundEvent { seq, tenant, id, created_at, operation_name, user_id, user_email, request_ip, raw },
                    link,
                ) => {
                    let t = tid(&tenants, &tenant)?;
                    let (n, prev, hash) = match &link {
                        Some(l) => (Some(l.n), Some(&l.prev[..]), Some(&l.hash[..])),
                        None => (None, None, None),
                    };
                    tx.prepare_cached(
                        "INSERT INTO events (seq, tenant, id, created_at, operation_name, user_id, user_email, request_ip, raw,
                                             chain_n, chain_prev, chain)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    )?
                    .execute(params![
                        seq,
                        t,
                        id,
                        created_at,
                        operation_name,
                        user_id,
                        user_email,
                        request_ip,
                        raw,
                        n,
                        prev,
                        hash
                    ])?;
                }
                Row::Progress(p) => {
                    let t = tid(&tenants, &p.tenant)?;
                    tx.execute(
                        "INSERT INTO progress (tenant, job, range_start, range_end, position, filter, updated_at, finished_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![t, p.job, p.range_start, p.range_end, p.position, p.filter, p.updated_at, p.finished_at],
                    )?;
                }
                Row::Window { tenant, job, from, to, fetched, inserted, committed_at } => {
                    let t = tid(&tenants, &tenant)?;
                    tx.prepare_cached(
                        "INSERT INTO progress_log (tenant, job, from_pos, to_pos, fetched, inserted, committed_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![t, job, from, to, fetched, inserted, committed_at])?;
                }
                Row::Consumer { name, position, state, updated_at } => {
                    tx.execute(
                        "INSERT INTO consumers (name, position, state, updated_at) VALUES (?1, ?2, ?3, ?4)",
                        params![name, position, state, updated_at],
                    )?;
                }
                Row::Alert { seq, id, rule_id, group_key, tenant, event_time, raised_at, body } => {
                    let level = crate::journal::triage::level_of(&body);
                    tx.execute(
                        "INSERT INTO alerts (seq, id, rule_id, group_key, tenant, event_time, raised_at, body, level)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        params![seq, id, rule_id, group_key, tenant, event_time, raised_at, body, level],
                    )?;
                }
                Row::AlertTriage { alert_seq, status, assignee, triaged_at, triaged_by } => {
                    tx.execute(
                        "UPDATE alerts SET status = ?2, assignee = ?3, triaged_at = ?4, triaged_by = ?5 WHERE seq = ?1",
                        params![alert_seq, status.as_str(), assignee, triaged_at, triaged_by],
                    )?;
                }
                Row::AlertChange(c) => {
                    tx.prepare_cached(
                        "INSERT INTO alert_history (seq, alert_seq, changed_at, changed_by, from_status, to_status,
                                                    from_assignee, to_assignee, note)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )?
                    .execute(params![
                        c.seq,
                        c.alert_seq,
                        c.at,
                        c.by,
                        c.from_status.as_str(),
                        c.to_status.as_str(),
                        c.from_assignee,
                        c.to_assignee,
                        c.note
                    ])?;
                }
                Row::AlertEvent { alert_seq, event_seq } => {
                    tx.prepare_cached("INSERT INTO alert_events (alert_seq, event_seq) VALUES (?1, ?2)")?
                        .execute(params![alert_seq, event_seq])?;
                }
                Row::Quarantine { tenant, digest, raw, reason, window_start, window_end, first_seen } => {
                    let t = tid(&tenants, &tenant)?;
                    tx.execute(
                        "INSERT INTO quarantine (tenant, digest, raw, reason, window_start, window_end, first_seen)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![t, digest, raw, reason, window_start, window_end, first_seen],
                    )?;
                }
                Row::ReconcilePass(p) => super::quarantine::insert_pass(&tx, tid(&tenants, &p.tenant)?, &p)?,
                Row::ReconcileFind(f) => super::quarantine::insert_find(&tx, tid(&tenants, &f.tenant)?, &f)?,
                Row::Checkpoint(c) => {
                    tx.prepare_cached(
                        "INSERT INTO checkpoints (tenant, number, to_seq, body, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        tid(&tenants, &c.tenant)?,
                        c.number,
                        c.to_seq,
                        c.body,
                        c.signature
                    ])?;
                }
                Row::PostureNote(n) => {
                    tx.prepare_cached(
                        "INSERT INTO posture_notes (seq, tenant, kind, entry_id, why, requested_by, noted_by, noted_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![
                        n.seq,
                        n.tenant,
                        n.kind,
                        n.entry_id,
                        n.why,
                        n.requested_by,
                        n.noted_by,
                        n.noted_at
                    ])?;
                }
                Row::Selftest(run) => super::selftest::insert(&tx, &run)?,
                Row::SavedSearch(search) => super::saved::insert(&tx, &search)?,
                Row::HighWater { events, alerts: _, chain_since_seq, saved_searches } => {
                    high_water = high_water.max(events);
                    searches_high_water = searches_high_water.max(saved_searches);
                    tx.execute("UPDATE integrity SET chain_since_seq = ?1 WHERE id = 1", [chain_since_seq])?;
                }
            }
        }
        // Numbering goes on past every seq the source ever handed out (AUTOINCREMENT's mark).
        let mark: i64 = tx.query_row(
            "SELECT MAX(?1, (SELECT COALESCE(MAX(seq), 0) FROM events), (SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'events'))",
            [high_water],
            |r| r.get(0),
        )?;
        tx.execute("DELETE FROM sqlite_sequence WHERE name = 'events'", [])?;
        tx.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?1)", [mark])?;
        // Likewise saved search ids: a deleted search's id is not handed out again after a move.
        let mark: i64 = tx.query_row(
            "SELECT MAX(?1, (SELECT COALESCE(MAX(id), 0) FROM saved_searches))",
            [searches_high_water],
            |r| r.get(0),
        )?;
        tx.execute("DELETE FROM sqlite_sequence WHERE name = 'saved_searches'", [])?;
        tx.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('saved_searches', ?1)", [mark])?;
        tx.commit()?;
        self.tenant_ids.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }
}

/// Every event in seq order (by the primary key; see `READ_AFTER` in the parent module).
pub(super) const DUMP_EVENTS: &str =
    "SELECT e.seq, (SELECT name FROM tenants WHERE id = e.tenant), e.id, e.created_at, e.operation_name, e.user_id,
            e.user_email, e.request_ip, e.raw, e.chain_n, e.chain_prev, e.chain
     FROM events e ORDER BY e.seq";

fn dump_all(conn: &Connection, out: Out<'_>) -> Result<(), JournalError> {
    each(
        conn,
        "SELECT name, created_at, chain_n, chain_head, chain_pruned_n, chain_seq FROM tenants ORDER BY id",
        out,
        |r| {
            let head: Option<Vec<u8>> = r.get(3)?;
            Ok(Row::Tenant {
                name: r.get(0)?,
                created_at: r.get(1)?,
                head: Head::from_stored(r.get(2)?, head.as_deref()),
                pruned_through: r.get(4)?,
                head_seq: r.get(5)?,
            })
        },
    )?;
    each(conn, DUMP_EVENTS, out, |r| {
        let (prev, hash): (Option<Vec<u8>>, Option<Vec<u8>>) = (r.get(10)?, r.get(11)?);
        let link = Link::from_stored(r.get(9)?, prev.as_deref(), hash.as_deref());
        Ok(Row::Event(super::search::row_to_found(r)?, link))
    })?;
    each(
        conn,
        "SELECT t.name, p.job, p.range_start, p.range_end, p.position, p.filter, p.updated_at, p.finished_at
         FROM progress p JOIN tenants t ON t.id = p.tenant ORDER BY t.name, p.job",
        out,
        |r| Ok(Row::Progress(super::row_to_progress(r)?)),
    )?;
    each(
        conn,
        "SELECT t.name, l.job, l.from_pos, l.to_pos, l.fetched, l.inserted, l.committed_at
         FROM progress_log l JOIN tenants t ON t.id = l.tenant ORDER BY l.rowid",
        out,
        |r| {
            Ok(Row::Window {
                tenant: r.get(0)?,
                job: r.get(1)?,
                from: r.get(2)?,
                to: r.get(3)?,
                fetched: r.get(4)?,
                inserted: r.get(5)?,
                committed_at: r.get(6)?,
            })
        },
    )?;
    each(conn, "SELECT name, position, state, updated_at FROM consumers ORDER BY name", out, |r| {
        Ok(Row::Consumer { name: r.get(0)?, position: r.get(1)?, state: r.get(2)?, updated_at: r.get(3)? })
    })?;
    each(
        conn,
        "SELECT seq, id, rule_id, group_key, tenant, event_time, raised_at, body FROM alerts ORDER BY seq",
        out,
        |r| {
            Ok(Row::Alert {
                seq: r.get(0)?,
                id: r.get(1)?,
                rule_id: r.get(2)?,
                group_key: r.get(3)?,
                tenant: r.get(4)?,
                event_time: r.get(5)?,
                raised_at: r.get(6)?,
                body: r.get(7)?,
            })
        },
    )?;
    each(conn, "SELECT alert_seq, event_seq FROM alert_events ORDER BY alert_seq, event_seq", out, |r| {
        Ok(Row::AlertEvent { alert_seq: r.get(0)?, event_seq: r.get(1)? })
    })?;
    each(
        conn,
        "SELECT seq, status, assignee, triaged_at, triaged_by FROM alerts
         WHERE status <> 'open' OR assignee IS NOT NULL OR triaged_at IS NOT NULL ORDER BY seq",
        out,
        |r| {
            let status: String = r.get(1)?;
            Ok(Row::AlertTriage {
                alert_seq: r.get(0)?,
                status: crate::journal::AlertStatus::stored(&status).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
                })?,
                assignee: r.get(2)?,
                triaged_at: r.get(3)?,
                triaged_by: r.get(4)?,
            })
        },
    )?;
    each(
        conn,
        &format!("SELECT {} FROM alert_history ORDER BY seq", crate::journal::triage::CHANGE_COLUMNS),
        out,
        |r| Ok(Row::AlertChange(super::alerts::row_to_change(r)?)),
    )?;
    each(
        conn,
        "SELECT t.name, q.digest, q.raw, q.reason, q.window_start, q.window_end, q.first_seen
         FROM quarantine q JOIN tenants t ON t.id = q.tenant ORDER BY q.seq",
        out,
        |r| {
            Ok(Row::Quarantine {
                tenant: r.get(0)?,
                digest: r.get(1)?,
                raw: r.get(2)?,
                reason: r.get(3)?,
                window_start: r.get(4)?,
                window_end: r.get(5)?,
                first_seen: r.get(6)?,
            })
        },
    )?;
    each(
        conn,
        "SELECT t.name, p.range_start, p.range_end, p.slices, p.reread, p.found, p.started_at, p.finished_at
         FROM reconcile_passes p JOIN tenants t ON t.id = p.tenant ORDER BY p.rowid",
        out,
        |r| {
            Ok(Row::ReconcilePass(ReconcilePass {
                tenant: r.get(0)?,
                range_start: r.get(1)?,
                range_end: r.get(2)?,
                slices: r.get::<_, i64>(3)? as u64,
                reread: r.get::<_, i64>(4)? as u64,
                found: r.get::<_, i64>(5)? as u64,
                started_at: r.get(6)?,
                finished_at: r.get(7)?,
            }))
        },
    )?;
    each(
        conn,
        "SELECT t.name, f.slice_start, f.slice_end, f.api_count, f.journal_count, f.found, f.oldest, f.newest,
                f.max_late_secs, f.found_at
         FROM reconcile_finds f JOIN tenants t ON t.id = f.tenant ORDER BY f.rowid",
        out,
        |r| Ok(Row::ReconcileFind(super::quarantine::find_from_row(r, r.get(0)?, 1)?)),
    )?;
    each(
        conn,
        "SELECT t.name, c.number, c.to_seq, c.body, c.signature FROM checkpoints c JOIN tenants t ON t.id = c.tenant
         ORDER BY c.tenant, c.number",
        out,
        |r| Ok(Row::Checkpoint(super::checkpoint_row(r)?)),
    )?;
    each(
        conn,
        "SELECT seq, tenant, kind, entry_id, why, requested_by, noted_by, noted_at FROM posture_notes ORDER BY seq",
        out,
        |r| Ok(Row::PostureNote(super::note_row(r)?)),
    )?;
    each(
        conn,
        &format!("SELECT {} FROM selftest_runs ORDER BY started_at, run_id", super::selftest::COLUMNS),
        out,
        |r| Ok(Row::Selftest(super::selftest::from_row(r)?)),
    )?;
    each(conn, &format!("SELECT {} FROM saved_searches ORDER BY id", super::saved::COLUMNS), out, |r| {
        Ok(Row::SavedSearch(super::saved::from_row(r)?))
    })?;
    let (events, alerts, chain_since_seq, saved_searches): (i64, i64, i64, i64) = conn.query_row(
        "SELECT MAX((SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'events'),
                    (SELECT COALESCE(MAX(seq), 0) FROM events)),
                (SELECT COALESCE(MAX(seq), 0) FROM alerts),
                (SELECT chain_since_seq FROM integrity WHERE id = 1),
                MAX((SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'saved_searches'),
                    (SELECT COALESCE(MAX(id), 0) FROM saved_searches))",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    out(Row::HighWater { events, alerts, chain_since_seq, saved_searches })
}
