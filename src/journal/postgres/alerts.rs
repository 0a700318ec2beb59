//! Alert triage on PostgreSQL (see `journal::triage`): the same queries as SQLite, and a
//! change made under a row lock on the alert, so two instances' users changing one alert
//! at once are put one after the other.

use tokio_postgres::{GenericClient, Row};

use super::{Params, Postgres, refs, row_to_alert};
use crate::journal::JournalError;
use crate::journal::triage::{
    self, AlertChange, AlertCounts, AlertGroup, AlertQuery, AlertStatus, Param, TriageChange, Triaged, TriagedAlert,
};

fn row_to_triaged(r: &Row) -> Result<TriagedAlert, JournalError> {
    Ok(TriagedAlert {
        alert: row_to_alert(r),
        group_key: r.get(7),
        level: r.get(8),
        status: AlertStatus::stored(r.get(9))?,
        assignee: r.get(10),
        triaged_at: r.get(11),
        triaged_by: r.get(12),
        linked_events: r.get(13),
    })
}

fn row_to_change(r: &Row) -> Result<AlertChange, JournalError> {
    Ok(AlertChange {
        seq: r.get(0),
        alert_seq: r.get(1),
        at: r.get(2),
        by: r.get(3),
        from_status: AlertStatus::stored(r.get(4))?,
        to_status: AlertStatus::stored(r.get(5))?,
        from_assignee: r.get(6),
        to_assignee: r.get(7),
        note: r.get(8),
    })
}

fn placeholder(n: usize) -> String {
    format!("${n}")
}

/// The filter's values, then the limit.
fn bound(params: Vec<Param>, limit: Option<usize>) -> Params {
    let mut out: Params = params
        .into_iter()
        .map(|p| -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
            match p {
                Param::Int(i) => Box::new(i),
                Param::Text(t) => Box::new(t),
            }
        })
        .collect();
    if let Some(l) = limit {
        out.push(Box::new(l.min(i64::MAX as usize) as i64));
    }
    out
}

async fn triaged_by_id(c: &impl GenericClient, id: &str, lock: bool) -> Result<Option<TriagedAlert>, JournalError> {
    // `FOR UPDATE` cannot go with the aggregate, so the lock is taken on its own first.
    if lock && c.query_opt("SELECT 1 FROM alerts WHERE id = $1 FOR UPDATE", &[&id]).await?.is_none() {
        return Ok(None);
    }
    let sql = format!("SELECT {} FROM alerts a WHERE a.id = $1", triage::TRIAGED_COLUMNS);
    c.query_opt(&sql, &[&id]).await?.as_ref().map(row_to_triaged).transpose()
}

impl Postgres {
    pub(super) fn find_alerts(&self, q: &AlertQuery, limit: usize) -> Result<Vec<TriagedAlert>, JournalError> {
        let f = q.filter(placeholder);
        let sql = AlertQuery::list_sql(&f, &placeholder(f.params.len() + 1));
        let params = bound(f.params, Some(limit));
        self.run(async |c| c.query(&sql, &refs(&params)).await?.iter().map(row_to_triaged).collect())
    }

    pub(super) fn alert_groups(&self, q: &AlertQuery, limit: usize) -> Result<Vec<AlertGroup>, JournalError> {
        let f = q.filter(placeholder);
        let sql = AlertQuery::groups_sql(&f, &placeholder(f.params.len() + 1));
        let params = bound(f.params, Some(limit));
        self.run(async |c| {
            c.query(&sql, &refs(&params))
                .await?
                .iter()
                .map(|r| {
                    Ok(AlertGroup {
                        newest: row_to_triaged(r)?,
                        count: r.get(14),
                        open: r.get(15),
                        first_event_time: r.get(16),
                    })
                })
                .collect()
        })
    }

    pub(super) fn count_alerts(&self, q: &AlertQuery) -> Result<AlertCounts, JournalError> {
        let f = q.count_filter(placeholder);
        let sql = AlertQuery::counts_sql(&f);
        let params = bound(f.params, None);
        self.run(async |c| {
            let r = c.query_one(&sql, &refs(&params)).await?;
            Ok(AlertCounts { alerts: r.get(0), groups: r.get(1) })
        })
    }

    pub(super) fn alert_by_id(&self, id: &str) -> Result<Option<TriagedAlert>, JournalError> {
        self.run(async |c| triaged_by_id(c, id, false).await)
    }

    pub(super) fn alert_history(&self, alert_seq: i64) -> Result<Vec<AlertChange>, JournalError> {
        let sql = format!("SELECT {} FROM alert_history WHERE alert_seq = $1 ORDER BY seq", triage::CHANGE_COLUMNS);
        self.run(async |c| c.query(&sql, &[&alert_seq]).await?.iter().map(row_to_change).collect())
    }

    pub(super) fn triage_alert(&self, id: &str, change: &TriageChange<'_>) -> Result<Option<Triaged>, JournalError> {
        self.run(async |c| {
            let tx = c.transaction().await?;
            let Some(before) = triaged_by_id(&tx, id, true).await? else { return Ok(None) };
            let Some(mut entry) = change.entry(before.alert.seq, before.status, before.assignee.as_deref()) else {
                return Ok(Some(Triaged { alert: before, change: None }));
            };
            tx.execute(
                "UPDATE alerts SET status = $2, assignee = $3, triaged_at = $4, triaged_by = $5 WHERE seq = $1",
                &[&entry.alert_seq, &entry.to_status.as_str(), &entry.to_assignee, &entry.at, &entry.by],
            )
            .await?;
            entry.seq = tx
                .query_one(
                    "INSERT INTO alert_history (alert_seq, changed_at, changed_by, from_status, to_status, from_assignee,
                                                to_assignee, note)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
                    &[
                        &entry.alert_seq,
                        &entry.at,
                        &entry.by,
                        &entry.from_status.as_str(),
                        &entry.to_status.as_str(),
                        &entry.from_assignee,
                        &entry.to_assignee,
                        &entry.note,
                    ],
                )
                .await?
                .get(0);
            let after =
                triaged_by_id(&tx, id, false).await?.ok_or_else(|| JournalError::Task(format!("alert {id} vanished")))?;
            tx.commit().await?;
            Ok(Some(Triaged { alert: after, change: Some(entry) }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{conn, schema};
    use crate::journal::{Access, Journal, Location};

    /// As SQLite's migration 12: alerts raised before triage are open and carry the level
    /// their body names; a body that is not JSON does not stop the migration.
    #[test]
    fn migration_9_opens_every_alert_and_reads_its_level_from_its_body() {
        let url = crate::journal::testing::fresh_schema_url();
        let pool = conn::Pool::new(conn::parse(&url).unwrap()).unwrap();
        pool.run(async |c| {
            schema::migrate_to(c, 8).await?;
            c.batch_execute(
                r#"INSERT INTO alerts (seq, id, rule_id, group_key, tenant, event_time, raised_at, body) VALUES
                     (1, 'a:1', 'a', '[]', 't', 1, 1, '{"rule":{"level":"High"}}'),
                     (2, 'b:2', 'b', '[]', 't', 2, 2, 'not json'),
                     (3, 'c:3', 'c', '[]', 't', 3, 3, '{"rule":{"level":5}}');"#,
            )
            .await?;
            Ok(())
        })
        .unwrap();
        let j = Journal::open_at(&Location::Url(crate::secret::Secret::new(url)), Access::Write).unwrap();
        for id in ["a:1", "b:2", "c:3"] {
            let a = j.alert_by_id(id).unwrap().unwrap();
            assert_eq!(a.level, crate::journal::triage::level_of(&a.alert.body), "{id}");
            assert_eq!((a.status, a.assignee), (crate::journal::AlertStatus::Open, None));
        }
        assert_eq!(j.alert_by_id("a:1").unwrap().unwrap().level, "high");
    }
}
