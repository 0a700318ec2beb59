//! Alerts in the journal: written in the same transaction as the detector's
//! offset and state (so a restart neither loses nor repeats one), linked to
//! the journal events they are about, and read back in order by each alert
//! output, which keeps its own offset over them in `consumers`.

use rusqlite::{OptionalExtension, params};

use super::Sqlite;
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
                "INSERT INTO alerts (id, rule_id, group_key, tenant, event_time, raised_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO NOTHING",
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
                if insert.execute(params![a.id, a.rule_id, a.group_key, a.tenant, a.event_time, now, text])? == 0 {
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
