//! Search, the search indexer and the report's ledger on SQLite: an [`EventQuery`]
//! becomes one statement over the events table and its `(column, created_at)`
//! indexes, free text goes through the FTS5 table `events_fts` (contentless,
//! `unicode61 remove_diacritics 2`), which the indexer fills batch by batch.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, TransactionBehavior, params, params_from_iter, types::Value};

use super::Sqlite;
use crate::journal::backend::{EventQuery, FacetKeys, FoundEvent, IndexState, Ledger, TextTerm};
use crate::journal::text::{record_text, user_name_of};
use crate::journal::{AlertRow, JournalError};
use crate::timeutil::now_secs;

/// Most buckets a histogram counts one by one (see [`Sqlite::histogram`]); a wider span
/// (small buckets over months) is grouped instead.
const MAX_BUCKET_SCANS: i64 = 5_000;

/// A query's `WHERE` clause and its parameters.
struct Plan {
    conditions: Vec<String>,
    params: Vec<Value>,
}

impl Plan {
    fn where_clause(&self) -> String {
        if self.conditions.is_empty() { String::new() } else { format!("WHERE {}", self.conditions.join(" AND ")) }
    }
}

fn json_list<T: serde::Serialize>(items: &[T]) -> Value {
    Value::Text(serde_json::to_string(items).unwrap_or_else(|_| "[]".into()))
}

/// `column = ?` for one value, `column IN (?, …)` for a few: both let SQLite walk the
/// `(column, created_at)` index newest first; a long list goes through `json_each`.
fn in_list<T: serde::Serialize + Clone + Into<Value>>(column: &str, items: &[T], p: &mut Plan) -> String {
    match items {
        [one] => {
            p.params.push(one.clone().into());
            format!("{column} = ?")
        }
        few if few.len() <= 100 => {
            p.params.extend(few.iter().cloned().map(Into::into));
            format!("{column} IN ({})", vec!["?"; few.len()].join(", "))
        }
        many => {
            p.params.push(json_list(many));
            format!("{column} IN (SELECT value FROM json_each(?))")
        }
    }
}

fn fts5_term(t: &TextTerm) -> String {
    format!("\"{}\"{}", t.words.replace('"', "\"\""), if t.prefix { "*" } else { "" })
}

/// Free text as an FTS5 query: every term quoted (so no input is ever FTS syntax), a
/// prefix term with `*` after its quote; each group's terms joined by OR, the groups by AND.
pub(super) fn fts5_query(groups: &[Vec<TextTerm>]) -> String {
    let groups: Vec<String> = groups
        .iter()
        .map(|g| match g.as_slice() {
            [one] => fts5_term(one),
            many => format!("({})", many.iter().map(fts5_term).collect::<Vec<_>>().join(" OR ")),
        })
        .collect();
    groups.join(" AND ")
}

/// `NOT (condition)` that also holds where the column is NULL (an event without a user
/// or an address is not one of the excluded ones).
fn excluding(column: &str, condition: String, nullable: bool) -> String {
    if nullable { format!("({column} IS NULL OR NOT ({condition}))") } else { format!("NOT ({condition})") }
}

fn plan(q: &EventQuery) -> Plan {
    let mut p = Plan { conditions: Vec::new(), params: Vec::new() };
    if !q.tenants.is_empty() {
        p.conditions.push("e.tenant IN (SELECT id FROM tenants WHERE name IN (SELECT value FROM json_each(?)))".into());
        p.params.push(json_list(&q.tenants));
    }
    if !q.not_tenants.is_empty() {
        p.conditions
            .push("e.tenant NOT IN (SELECT id FROM tenants WHERE name IN (SELECT value FROM json_each(?)))".into());
        p.params.push(json_list(&q.not_tenants));
    }
    if !q.user_ids.is_empty() || !q.emails.is_empty() {
        let mut alts = Vec::new();
        if !q.user_ids.is_empty() {
            alts.push(in_list("e.user_id", &q.user_ids, &mut p));
        }
        if !q.emails.is_empty() {
            // One IN over the NOCASE index: an OR per address nested too deep past 1,000 of them.
            alts.push(in_list("e.user_email COLLATE NOCASE", &q.emails, &mut p));
        }
        p.conditions.push(format!("({})", alts.join(" OR ")));
    }
    if !q.not_user_ids.is_empty() {
        let c = in_list("e.user_id", &q.not_user_ids, &mut p);
        p.conditions.push(excluding("e.user_id", c, true));
    }
    if !q.not_emails.is_empty() {
        let c = in_list("e.user_email COLLATE NOCASE", &q.not_emails, &mut p);
        p.conditions.push(excluding("e.user_email", c, true));
    }
    if !q.operations.is_empty() {
        let c = in_list("e.operation_name", &q.operations, &mut p);
        p.conditions.push(c);
    }
    if !q.not_operations.is_empty() {
        let c = in_list("e.operation_name", &q.not_operations, &mut p);
        p.conditions.push(excluding("e.operation_name", c, false));
    }
    if let Some(from) = q.from {
        p.conditions.push("e.created_at >= ?".into());
        p.params.push(Value::Integer(from));
    }
    if let Some(to) = q.to {
        p.conditions.push("e.created_at < ?".into());
        p.params.push(Value::Integer(to));
    }
    if !q.ips.is_empty() {
        let c = in_list("e.request_ip", &q.ips, &mut p);
        p.conditions.push(c);
    }
    if !q.not_ips.is_empty() {
        let c = in_list("e.request_ip", &q.not_ips, &mut p);
        p.conditions.push(excluding("e.request_ip", c, true));
    }
    if let Some(id) = &q.alert {
        p.conditions.push(
            "e.seq IN (SELECT l.event_seq FROM alert_events l JOIN alerts a ON a.seq = l.alert_seq WHERE a.id = ?)"
                .into(),
        );
        p.params.push(Value::Text(id.clone()));
    }
    if !q.text.is_empty() {
        p.conditions.push("e.seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)".into());
        p.params.push(Value::Text(fts5_query(&q.text)));
    }
    if !q.not_text.is_empty() {
        p.conditions.push("e.seq NOT IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)".into());
        p.params.push(Value::Text(fts5_query(std::slice::from_ref(&q.not_text))));
    }
    if let Some((created_at, seq)) = q.before {
        p.conditions.push("(e.created_at, e.seq) < (?, ?)".into());
        p.params.push(Value::Integer(created_at));
        p.params.push(Value::Integer(seq));
    }
    if let Some((created_at, seq)) = q.after {
        p.conditions.push("(e.created_at, e.seq) > (?, ?)".into());
        p.params.push(Value::Integer(created_at));
        p.params.push(Value::Integer(seq));
    }
    p
}

/// The columns `e.seq, t.name, e.id, e.created_at, e.operation_name, e.user_id, e.user_email,
/// e.request_ip, e.raw`.
pub(super) fn row_to_found(r: &rusqlite::Row<'_>) -> rusqlite::Result<FoundEvent> {
    Ok(FoundEvent {
        seq: r.get(0)?,
        tenant: r.get(1)?,
        id: r.get(2)?,
        created_at: r.get(3)?,
        operation_name: r.get(4)?,
        user_id: r.get(5)?,
        user_email: r.get(6)?,
        request_ip: r.get(7)?,
        raw: r.get(8)?,
    })
}

impl Sqlite {
    pub(super) fn index_state(&self) -> Result<IndexState, JournalError> {
        self.query(|conn| {
            let position: i64 = conn
                .query_row("SELECT position FROM search_index WHERE id = 1", [], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let max_seq: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
            Ok(IndexState { position, max_seq })
        })
    }

    pub(super) fn index_batch(&self, max: usize) -> Result<usize, JournalError> {
        self.write(|conn| {
            // IMMEDIATE: two indexers (the daemon's and a `search` command's) never index the same events.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let position: i64 = tx.query_row("SELECT position FROM search_index WHERE id = 1", [], |r| r.get(0))?;
            let mut users: BTreeSet<(i64, i64, String, String)> = BTreeSet::new();
            let mut ips: BTreeSet<String> = BTreeSet::new();
            let mut ops: BTreeSet<String> = BTreeSet::new();
            let mut last = position;
            let mut n = 0usize;
            {
                let mut read = tx.prepare_cached(
                    "SELECT seq, tenant, operation_name, user_id, user_email, request_ip, raw FROM events
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let mut insert = tx.prepare_cached("INSERT INTO events_fts (rowid, body) VALUES (?1, ?2)")?;
                let mut rows = read.query(params![position, max as i64])?;
                while let Some(r) = rows.next()? {
                    let seq: i64 = r.get(0)?;
                    let raw: &str = r.get_ref(6)?.as_str().unwrap_or("");
                    insert.execute(params![seq, record_text(raw)])?;
                    let tenant: i64 = r.get(1)?;
                    ops.insert(r.get(2)?);
                    if let Some(ip) = r.get::<_, Option<String>>(5)? {
                        ips.insert(ip);
                    }
                    if let Some(uid) = r.get::<_, Option<i64>>(3)? {
                        let email: String = r.get::<_, Option<String>>(4)?.unwrap_or_default();
                        users.insert((tenant, uid, email, user_name_of(raw).unwrap_or_default()));
                    }
                    last = seq;
                    n += 1;
                }
            }
            if n == 0 {
                return Ok(0);
            }
            {
                let mut u = tx.prepare_cached(
                    "INSERT OR IGNORE INTO search_users (tenant, user_id, user_email, user_name) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (t, id, email, name) in &users {
                    u.execute(params![t, id, email, name])?;
                }
                let mut v = tx.prepare_cached("INSERT OR IGNORE INTO search_values (kind, value) VALUES (?1, ?2)")?;
                for ip in &ips {
                    v.execute(params!["ip", ip])?;
                }
                for op in &ops {
                    v.execute(params!["op", op])?;
                }
            }
            tx.execute(
                "UPDATE search_index SET position = ?1, updated_at = ?2 WHERE id = 1",
                params![last, now_secs()],
            )?;
            tx.commit()?;
            Ok(n)
        })
    }

    /// SQLite's own advice after a large intake: `PRAGMA optimize`, bounded by `analysis_limit`.
    pub(super) fn optimize(&self) -> Result<(), JournalError> {
        self.write(|conn| {
            conn.execute_batch("PRAGMA analysis_limit = 2000; PRAGMA optimize = 0x10002;")?;
            Ok(())
        })
    }

    pub(super) fn seen_user_names(&self) -> Result<Vec<(i64, String)>, JournalError> {
        self.query(|conn| {
            let mut stmt = conn.prepare_cached("SELECT DISTINCT user_id, user_name FROM search_users")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    pub(super) fn seen_values(&self, kind: &str) -> Result<Vec<String>, JournalError> {
        self.query(|conn| {
            let mut stmt = conn.prepare_cached("SELECT value FROM search_values WHERE kind = ?1")?;
            let rows = stmt.query_map([kind], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    pub(super) fn operation_exists(&self, name: &str) -> Result<bool, JournalError> {
        self.query(|conn| {
            let mut stmt = conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE operation_name = ?1)")?;
            Ok(stmt.query_row([name], |r| r.get(0))?)
        })
    }

    pub(super) fn search(&self, q: &EventQuery, limit: usize) -> Result<Vec<FoundEvent>, JournalError> {
        let p = plan(q);
        let dir = if q.oldest_first { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT e.seq, t.name, e.id, e.created_at, e.operation_name, e.user_id, e.user_email, e.request_ip, e.raw
             FROM events e JOIN tenants t ON t.id = e.tenant {}
             ORDER BY e.created_at {dir}, e.seq {dir} LIMIT {limit}",
            p.where_clause(),
        );
        self.query(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows =
                stmt.query_map(params_from_iter(p.params.iter()), row_to_found)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    pub(super) fn histogram(&self, q: &EventQuery, bucket: i64) -> Result<Vec<(i64, i64)>, JournalError> {
        let bucket = bucket.max(1);
        // Counting each bucket's range on its own lets SQLite count straight off an index
        // in time order; grouping every match by an expression sorted them all in a
        // temporary B-tree first, 2.2 s for 5M events against 0.3 s (BENCHMARKS.md). Free
        // text and alerts match through a subquery, which stays the grouping's.
        let span = if q.text.is_empty() && q.not_text.is_empty() && q.alert.is_none() { self.span(q)? } else { None };
        let (sql, p) = match span {
            Some((lo, hi)) if (hi - lo) / bucket < MAX_BUCKET_SCANS => {
                // The bucket's own range is the only one on created_at: given the filter's
                // too, SQLite bounded its index search by those and read the whole period
                // once for every bucket.
                let p = plan(&EventQuery { from: None, to: None, ..q.clone() });
                let first = lo - (lo % bucket + bucket) % bucket;
                let from = q.from.map_or("b.t".to_string(), |f| format!("MAX(b.t, {f})"));
                let to = q.to.map_or(format!("b.t + {bucket}"), |t| format!("MIN(b.t + {bucket}, {t})"));
                let within = if p.conditions.is_empty() { "WHERE" } else { "AND" };
                let sql = format!(
                    "WITH RECURSIVE b(t) AS (SELECT {first} UNION ALL SELECT t + {bucket} FROM b WHERE t + {bucket} <= {hi})
                     SELECT t, (SELECT COUNT(*) FROM events e {} {within} e.created_at >= {from} AND e.created_at < {to})
                     FROM b",
                    p.where_clause()
                );
                (sql, p)
            }
            _ => {
                let p = plan(q);
                // Bucket starts are multiples of `bucket` at or before each event (the remainder
                // is taken toward minus infinity; SQLite's `%` truncates toward zero).
                let sql = format!(
                    "SELECT (e.created_at - ((e.created_at % {bucket}) + {bucket}) % {bucket}) AS b, COUNT(*)
                     FROM events e {} GROUP BY b ORDER BY b",
                    p.where_clause()
                );
                (sql, p)
            }
        };
        self.query(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt
                .query_map(params_from_iter(p.params.iter()), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
                // Only buckets with events (filtered here: a `WHERE` on the count ran it twice).
                .filter(|r| !matches!(r, Ok((_, 0))))
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    pub(super) fn span(&self, q: &EventQuery) -> Result<Option<(i64, i64)>, JournalError> {
        let p = plan(q);
        // Two statements: SQLite reads a lone MIN or MAX off the end of an index, but
        // `MIN(x), MAX(x)` together scanned every match (100 ms for one busy user).
        let end = |f: &str| format!("SELECT {f}(e.created_at) FROM events e {}", p.where_clause());
        self.query(|conn| {
            let read = |sql: String| -> Result<Option<i64>, JournalError> {
                Ok(conn.prepare_cached(&sql)?.query_row(params_from_iter(p.params.iter()), |r| r.get(0))?)
            };
            Ok(read(end("MIN"))?.zip(read(end("MAX"))?))
        })
    }

    pub(super) fn count(&self, q: &EventQuery) -> Result<i64, JournalError> {
        let p = plan(q);
        let sql = format!("SELECT COUNT(*) FROM events e {}", p.where_clause());
        self.query(|conn| Ok(conn.query_row(&sql, params_from_iter(p.params.iter()), |r| r.get(0))?))
    }

    pub(super) fn facet_keys(&self, q: &EventQuery, limit: usize) -> Result<Vec<FacetKeys>, JournalError> {
        let p = plan(q);
        // The events page's own plan (newest first off the filter's index), reading only
        // the columns before `raw`, so no record's overflow pages are touched.
        let sql = format!(
            "SELECT t.name, e.user_email, e.operation_name, e.request_ip
             FROM events e JOIN tenants t ON t.id = e.tenant {}
             ORDER BY e.created_at DESC, e.seq DESC LIMIT {limit}",
            p.where_clause(),
        );
        self.query(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(params_from_iter(p.params.iter()), |r| {
                    Ok(FacetKeys { tenant: r.get(0)?, email: r.get(1)?, operation: r.get(2)?, ip: r.get(3)? })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    pub(super) fn tenants(&self) -> Result<Vec<String>, JournalError> {
        self.query(|conn| {
            let mut stmt = conn.prepare("SELECT name FROM tenants ORDER BY name")?;
            let rows = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    pub(super) fn ledger(&self, tenant: &str, from: i64, to: i64) -> Result<Option<Ledger>, JournalError> {
        self.query(|conn| {
            let tid: Option<i64> =
                conn.query_row("SELECT id FROM tenants WHERE name = ?1", [tenant], |r| r.get(0)).optional()?;
            let Some(tid) = tid else { return Ok(None) };
            let mut l = Ledger {
                cursor: conn
                    .query_row("SELECT position FROM progress WHERE tenant = ?1 AND job = 'cursor'", [tid], |r| {
                        r.get(0)
                    })
                    .optional()?,
                ..Default::default()
            };
            let mut stmt = conn.prepare(
                "SELECT from_pos, to_pos, inserted, committed_at, job FROM progress_log
                 WHERE tenant = ?1 AND to_pos > ?2 AND from_pos < ?3 ORDER BY committed_at",
            )?;
            l.windows = stmt
                .query_map(params![tid, from, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                .collect::<Result<_, _>>()?;
            (l.reconcile_passes, l.last_reconcile) = conn.query_row(
                "SELECT COUNT(*), MAX(finished_at) FROM reconcile_passes WHERE tenant = ?1 AND range_end > ?2 AND range_start < ?3",
                params![tid, from, to],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let mut stmt = conn.prepare(
                "SELECT slice_start, slice_end, api_count, journal_count, found, oldest, newest, max_late_secs, found_at
                 FROM reconcile_finds WHERE tenant = ?1 AND slice_end > ?2 AND slice_start < ?3 ORDER BY slice_start",
            )?;
            l.reconcile_finds = stmt
                .query_map(params![tid, from, to], |r| super::quarantine::find_from_row(r, tenant.to_string(), 0))?
                .collect::<Result<_, _>>()?;
            Ok(Some(l))
        })
    }

    pub(super) fn inserted_since(&self, since: i64) -> Result<i64, JournalError> {
        self.query(|conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(SUM(inserted), 0) FROM progress_log WHERE committed_at >= ?1",
                [since],
                |r| r.get(0),
            )?)
        })
    }

    pub(super) fn alerts_between(&self, from: i64, to: i64, limit: usize) -> Result<Vec<AlertRow>, JournalError> {
        self.query(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {} FROM alerts WHERE event_time >= ?1 AND event_time < ?2
                 ORDER BY event_time DESC, seq DESC LIMIT ?3",
                super::alerts::ALERT_COLUMNS
            ))?;
            let rows = stmt
                .query_map(params![from, to, limit as i64], super::alerts::row_to_alert)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_terms_are_quoted_so_no_input_is_fts_syntax() {
        let t = |w: &str, prefix| TextTerm { words: w.into(), prefix };
        assert_eq!(fts5_query(&[vec![t("phishing", false)], vec![t("triage", false)]]), "\"phishing\" AND \"triage\"");
        assert_eq!(
            fts5_query(&[vec![t("Daily IOC", false), t("swe", true)], vec![t("x", false)]]),
            "(\"Daily IOC\" OR \"swe\"*) AND \"x\""
        );
        assert_eq!(fts5_query(&[vec![t("say \"x\"", false)]]), "\"say \"\"x\"\"\"");
    }
}
