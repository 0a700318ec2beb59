//! Alerts in the journal: written in the same transaction as the detector's
//! offset and state (so a restart neither loses nor repeats one), linked to
//! the journal events they are about, and read back in order by each alert
//! output, which keeps its own offset over them in `consumers`.

use rusqlite::{OptionalExtension, params};

use super::Sqlite;
use crate::journal::triage::{
    self, AlertChange, AlertCounts, AlertGroup, AlertQuery, AlertStatus, Param, TriageChange, Triaged, TriagedAlert,
};
use crate::journal::{AlertRow, EventRow, JournalError, NewAlert};
use crate::timeutil::now_secs;

pub(super) fn row_to_alert(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        rule_id: r.get(2)?,
        tenant: r.get(3)?,
        event_time: r.get(4)?,
        raised_at: r.get(5)?,
        body: r.get(6)?,
    })
}

pub(super) const ALERT_COLUMNS: &str = "seq, id, rule_id, tenant, event_time, raised_at, body";

impl Sqlite {
    /// Moves the detector's offset from `expected` to `new` with its state,
    /// and stores `alerts`, in one transaction. `body` renders an alert once
    /// its events are known. An alert whose id exists is not stored twice.
    /// Returns the alerts stored.
    pub(super) fn commit_detection(
        &self,
        consumer: &str,
        expected: i64,
        new: i64,
        state: &str,
        alerts: &[NewAlert],
        body: &mut dyn FnMut(&NewAlert, &[EventRow]) -> String,
    ) -> Result<Vec<AlertRow>, JournalError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let found: Option<i64> =
            tx.query_row("SELECT position FROM consumers WHERE name = ?1", [consumer], |r| r.get(0)).optional()?;
        match found {
            Some(f) if f != expected => {
                return Err(JournalError::OffsetConflict { name: consumer.to_string(), expected, found: f });
            }
            Some(_) => {}
            None => {
                tx.execute(
                    "INSERT INTO consumers (name, position, updated_at) VALUES (?1, ?2, ?3)",
                    params![consumer, expected, now_secs()],
                )?;
            }
        }
        let now = now_secs();
        let mut stored = Vec::new();
        {
            let mut by_seq = tx.prepare_cached(
                "SELECT e.seq, t.name, e.id, e.created_at, e.operation_name FROM events e JOIN tenants t ON t.id = e.tenant WHERE e.seq = ?1",
            )?;
            let mut by_id = tx.prepare_cached(
                "SELECT e.seq, t.name, e.id, e.created_at, e.operation_name FROM events e JOIN tenants t ON t.id = e.tenant
                 WHERE t.name = ?1 AND e.id = ?2",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO alerts (id, rule_id, group_key, tenant, event_time, raised_at, body, level)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(id) DO NOTHING",
            )?;
            let mut link =
                tx.prepare_cached("INSERT OR IGNORE INTO alert_events (alert_seq, event_seq) VALUES (?1, ?2)")?;
            let to_row = |r: &rusqlite::Row<'_>| {
                Ok(EventRow {
                    seq: r.get(0)?,
                    tenant: r.get(1)?,
                    id: r.get(2)?,
                    created_at: r.get(3)?,
                    operation_name: r.get(4)?,
                })
            };
            for a in alerts {
                let mut events: Vec<EventRow> = Vec::new();
                for id in &a.event_ids {
                    if let Some(e) = by_id.query_row(params![a.tenant, id], to_row).optional()? {
                        events.push(e);
                    }
                }
                if !events.iter().any(|e| e.seq == a.trigger_seq)
                    && let Some(e) = by_seq.query_row([a.trigger_seq], to_row).optional()?
                {
                    events.push(e);
                }
                events.sort_by_key(|e| (e.created_at, e.seq));
                events.dedup_by_key(|e| e.seq);
                let text = body(a, &events);
                let level = triage::level_of(&text);
                if insert.execute(params![a.id, a.rule_id, a.group_key, a.tenant, a.event_time, now, text, level])? == 0
                {
                    continue;
                }
                let seq = tx.last_insert_rowid();
                for e in &events {
                    link.execute(params![seq, e.seq])?;
                }
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
        }
        tx.execute(
            "UPDATE consumers SET position = ?2, state = ?3, updated_at = ?4 WHERE name = ?1",
            params![consumer, new, state, now],
        )?;
        tx.commit()?;
        Ok(stored)
    }

    /// Up to `max` alerts after `after_seq`, in order.
    pub(super) fn alerts_after(&self, after_seq: i64, max: usize) -> Result<Vec<AlertRow>, JournalError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE seq > ?1 ORDER BY seq LIMIT ?2"))?;
        let rows = stmt.query_map(params![after_seq, max as i64], row_to_alert)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The highest alert seq (0 when there is none).
    pub(super) fn max_alert_seq(&self) -> Result<i64, JournalError> {
        let conn = self.reader();
        Ok(conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM alerts", [], |r| r.get(0))?)
    }

    /// The journal seqs of the events an alert is about.
    pub(super) fn alert_event_seqs(&self, alert_seq: i64) -> Result<Vec<i64>, JournalError> {
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT event_seq FROM alert_events WHERE alert_seq = ?1 ORDER BY event_seq")?;
        let rows = stmt.query_map([alert_seq], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?;
        Ok(rows)
    }

    /// The first journal seq of an event created at or after `t` (for backtests), or `None`.
    pub(super) fn first_seq_since(&self, t: i64) -> Result<Option<i64>, JournalError> {
        let conn = self.reader();
        Ok(conn.query_row("SELECT MIN(seq) FROM events WHERE created_at >= ?1", [t], |r| r.get(0))?)
    }
}

/// A [`TriagedAlert`] from the columns of [`triage::TRIAGED_COLUMNS`].
fn row_to_triaged(r: &rusqlite::Row<'_>) -> rusqlite::Result<TriagedAlert> {
    let status: String = r.get(9)?;
    Ok(TriagedAlert {
        alert: row_to_alert(r)?,
        group_key: r.get(7)?,
        level: r.get(8)?,
        status: AlertStatus::stored(&status)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(e)))?,
        assignee: r.get(10)?,
        triaged_at: r.get(11)?,
        triaged_by: r.get(12)?,
        linked_events: r.get(13)?,
    })
}

pub(super) fn row_to_change(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertChange> {
    let status = |i: usize| -> rusqlite::Result<AlertStatus> {
        let s: String = r.get(i)?;
        AlertStatus::stored(&s)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
    };
    Ok(AlertChange {
        seq: r.get(0)?,
        alert_seq: r.get(1)?,
        at: r.get(2)?,
        by: r.get(3)?,
        from_status: status(4)?,
        to_status: status(5)?,
        from_assignee: r.get(6)?,
        to_assignee: r.get(7)?,
        note: r.get(8)?,
    })
}

fn values(params: Vec<Param>) -> Vec<rusqlite::types::Value> {
    params
        .into_iter()
        .map(|p| match p {
            Param::Int(i) => rusqlite::types::Value::Integer(i),
            Param::Text(t) => rusqlite::types::Value::Text(t),
        })
        .collect()
}

fn placeholder(n: usize) -> String {
    format!("?{n}")
}

/// The alert with this id as it stands, read on `conn`.
fn triaged_by_id(conn: &rusqlite::Connection, id: &str) -> Result<Option<TriagedAlert>, JournalError> {
    let sql = format!("SELECT {} FROM alerts a WHERE a.id = ?1", triage::TRIAGED_COLUMNS);
    Ok(conn.prepare_cached(&sql)?.query_row([id], row_to_triaged).optional()?)
}

impl Sqlite {
    pub(super) fn find_alerts(&self, q: &AlertQuery, limit: usize) -> Result<Vec<TriagedAlert>, JournalError> {
        let f = q.filter(placeholder);
        let sql = AlertQuery::list_sql(&f, &placeholder(f.params.len() + 1));
        let mut params = values(f.params);
        params.push(rusqlite::types::Value::Integer(limit.min(i64::MAX as usize) as i64));
        self.query(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params), row_to_triaged)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    pub(super) fn alert_groups(&self, q: &AlertQuery, limit: usize) -> Result<Vec<AlertGroup>, JournalError> {
        let f = q.filter(placeholder);
        let sql = AlertQuery::groups_sql(&f, &placeholder(f.params.len() + 1));
        let mut params = values(f.params);
        params.push(rusqlite::types::Value::Integer(limit.min(i64::MAX as usize) as i64));
        self.query(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
                Ok(AlertGroup {
                    newest: row_to_triaged(r)?,
                    count: r.get(14)?,
                    open: r.get(15)?,
                    first_event_time: r.get(16)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    pub(super) fn count_alerts(&self, q: &AlertQuery) -> Result<AlertCounts, JournalError> {
        let f = q.count_filter(placeholder);
        let sql = AlertQuery::counts_sql(&f);
        self.query(|conn| {
            Ok(conn.query_row(&sql, rusqlite::params_from_iter(values(f.params)), |r| {
                Ok(AlertCounts { alerts: r.get(0)?, groups: r.get(1)? })
            })?)
        })
    }

    pub(super) fn alert_by_id(&self, id: &str) -> Result<Option<TriagedAlert>, JournalError> {
        self.query(|conn| triaged_by_id(conn, id))
    }

    pub(super) fn alert_history(&self, alert_seq: i64) -> Result<Vec<AlertChange>, JournalError> {
        self.query(|conn| {
            let sql = format!("SELECT {} FROM alert_history WHERE alert_seq = ?1 ORDER BY seq", triage::CHANGE_COLUMNS);
            let mut stmt = conn.prepare_cached(&sql)?;
            Ok(stmt.query_map([alert_seq], row_to_change)?.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The writer's transaction is the lock: nothing else changes the alert in between.
    pub(super) fn triage_alert(&self, id: &str, change: &TriageChange<'_>) -> Result<Option<Triaged>, JournalError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let Some(before) = triaged_by_id(&tx, id)? else { return Ok(None) };
        let Some(mut entry) = change.entry(before.alert.seq, before.status, before.assignee.as_deref()) else {
            return Ok(Some(Triaged { alert: before, change: None }));
        };
        tx.execute(
            "UPDATE alerts SET status = ?2, assignee = ?3, triaged_at = ?4, triaged_by = ?5 WHERE seq = ?1",
            params![entry.alert_seq, entry.to_status.as_str(), entry.to_assignee, entry.at, entry.by],
        )?;
        tx.execute(
            "INSERT INTO alert_history (alert_seq, changed_at, changed_by, from_status, to_status, from_assignee, to_assignee, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                entry.alert_seq,
                entry.at,
                entry.by,
                entry.from_status.as_str(),
                entry.to_status.as_str(),
                entry.from_assignee,
                entry.to_assignee,
                entry.note
            ],
        )?;
        entry.seq = tx.last_insert_rowid();
        let after = triaged_by_id(&tx, id)?.ok_or_else(|| JournalError::Task(format!("alert {id} vanished")))?;
        tx.commit()?;
        Ok(Some(Triaged { alert: after, change: Some(entry) }))
    }
}

/// Tenant `t` with events seq 1..=3 (ids 1..=3, created 100..=102), for tests of alerts.
#[cfg(test)]
pub(crate) fn three_events(j: &crate::journal::Journal) {
    use crate::journal::{Record, WindowCommit};
    j.start_progress("t", "cursor", 0, None, "").unwrap();
    let raws: Vec<String> = (1..=3).map(|i| format!("{{\"id\":{i}}}")).collect();
    let recs = raws.iter().enumerate().map(|(i, raw)| Record {
        id: i as i64 + 1,
        created_at: 100 + i as i64,
        operation_name: "CredentialDestruction",
        user_id: Some(1),
        user_email: None,
        request_ip: None,
        raw,
    });
    j.commit_window(&WindowCommit { tenant: "t", job: "cursor", from: 0, to: 200, fetched: 3 }, recs).unwrap();
}
