//! Search and the search indexer on PostgreSQL: an [`EventQuery`] becomes one statement
//! over `events` and its `(column, created_at)` indexes; free text matches a `tsvector`
//! per event (GIN) built from [`words`], the same words SQLite's FTS5 tokenizer makes
//! (letters and digits, lower case, without diacritics), so both backends find the
//! same events for the same text.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use super::{Params, refs};
use crate::journal::JournalError;
use crate::journal::backend::{EventQuery, Fence, FoundEvent, IndexState, TextTerm};
use crate::journal::text::{record_text, user_name_of, words};
use crate::timeutil::now_secs;

/// The `tsquery` for free text: each term's words in order (`<->`), the last one a
/// prefix (`:*`) for a prefix term, every term required (`&`). Each lexeme is quoted,
/// and only letters and digits reach it, so no input is ever tsquery syntax.
pub(super) fn tsquery(terms: &[TextTerm]) -> Option<String> {
    let mut parts = Vec::new();
    for t in terms {
        let w: Vec<String> = words(&t.words).collect();
        let Some((last, rest)) = w.split_last() else { continue };
        let mut phrase: Vec<String> = rest.iter().map(|x| format!("'{x}'")).collect();
        phrase.push(if t.prefix { format!("'{last}':*") } else { format!("'{last}'") });
        parts.push(format!("({})", phrase.join(" <-> ")));
    }
    if parts.is_empty() { None } else { Some(parts.join(" & ")) }
}

struct Plan {
    conditions: Vec<String>,
    params: Params,
    /// The placeholder of the address list when it is rendered apart ([`by_address`]).
    ips: Option<String>,
}

impl Plan {
    fn arg(&mut self, v: impl tokio_postgres::types::ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    fn where_clause(&self) -> String {
        if self.conditions.is_empty() { String::new() } else { format!("WHERE {}", self.conditions.join(" AND ")) }
    }
}

/// `None` when the query can match nothing (free text with no word). With `ips_apart`,
/// the address list is a parameter of its own ([`Plan::ips`]) instead of a condition.
fn plan(q: &EventQuery, ips_apart: bool) -> Option<Plan> {
    let mut p = Plan { conditions: Vec::new(), params: Vec::new(), ips: None };
    if !q.tenants.is_empty() {
        let a = p.arg(q.tenants.clone());
        p.conditions.push(format!("e.tenant IN (SELECT id FROM tenants WHERE name = ANY({a}))"));
    }
    if !q.user_ids.is_empty() || !q.emails.is_empty() {
        let mut alts = Vec::new();
        if !q.user_ids.is_empty() {
            let a = p.arg(q.user_ids.clone());
            alts.push(format!("e.user_id = ANY({a})"));
        }
        if !q.emails.is_empty() {
            // SQLite compares with COLLATE NOCASE, which folds ASCII only; so does this.
            let folded: Vec<String> = q.emails.iter().map(|e| e.to_ascii_lowercase()).collect();
            let a = p.arg(folded);
            alts.push(format!("lower(e.user_email) = ANY({a})"));
        }
        p.conditions.push(format!("({})", alts.join(" OR ")));
    }
    if !q.operations.is_empty() {
        let a = p.arg(q.operations.clone());
        p.conditions.push(format!("e.operation_name = ANY({a})"));
    }
    if let Some(from) = q.from {
        let a = p.arg(from);
        p.conditions.push(format!("e.created_at >= {a}"));
    }
    if let Some(to) = q.to {
        let a = p.arg(to);
        p.conditions.push(format!("e.created_at < {a}"));
    }
    if !q.ips.is_empty() {
        let a = p.arg(q.ips.clone());
        if ips_apart {
            p.ips = Some(a);
        } else {
            p.conditions.push(format!("e.request_ip = ANY({a})"));
        }
    }
    if let Some(id) = &q.alert {
        let a = p.arg(id.clone());
        p.conditions.push(format!(
            "e.seq IN (SELECT l.event_seq FROM alert_events l JOIN alerts a ON a.seq = l.alert_seq WHERE a.id = {a})"
        ));
    }
    if !q.text.is_empty() {
        let a = p.arg(tsquery(&q.text)?);
        p.conditions.push(format!("e.seq IN (SELECT seq FROM events_text WHERE body @@ to_tsquery('simple', {a}))"));
    }
    if let Some((created_at, seq)) = q.before {
        let (a, b) = (p.arg(created_at), p.arg(seq));
        p.conditions.push(format!("(e.created_at, e.seq) < ({a}, {b})"));
    }
    Some(p)
}

/// Whether a page is best read address by address: several addresses (a network or a
/// country resolved to the addresses seen) and no other indexed filter. Each address's
/// newest events then come from its `(request_ip, created_at)` index, and the page is the
/// newest of those, the same rows as one query over the list. Left to itself the planner
/// often walks the time index instead, filtering by the list, and reads every event of the
/// range: it overestimates how often a rare address occurs, because ANALYZE's sample sees
/// few of the distinct addresses (870 of 136,816 on the 5M-event benchmark journal).
fn by_address(q: &EventQuery) -> bool {
    q.ips.len() > 1
        && q.user_ids.is_empty()
        && q.emails.is_empty()
        && q.operations.is_empty()
        && q.text.is_empty()
        && q.alert.is_none()
}

pub(super) async fn search(c: &Client, q: &EventQuery, limit: usize) -> Result<Vec<FoundEvent>, JournalError> {
    let Some(p) = plan(q, by_address(q)) else { return Ok(Vec::new()) };
    let columns = "e.seq, t.name, e.id, e.created_at, e.operation_name, e.user_id, e.user_email, e.request_ip, e.raw";
    let sql = match &p.ips {
        None => format!(
            "SELECT {columns} FROM events e JOIN tenants t ON t.id = e.tenant {}
             ORDER BY e.created_at DESC, e.seq DESC LIMIT {limit}",
            p.where_clause()
        ),
        Some(ips) => {
            let mut conditions = vec!["e.request_ip = f.ip".to_string()];
            conditions.extend(p.conditions.iter().cloned());
            format!(
                "SELECT {columns}
                 FROM (SELECT DISTINCT ip FROM unnest({ips}::text[]) AS x(ip)) AS f
                 CROSS JOIN LATERAL (
                     SELECT * FROM events e WHERE {}
                     ORDER BY e.created_at DESC, e.seq DESC LIMIT {limit}
                 ) e
                 JOIN tenants t ON t.id = e.tenant
                 ORDER BY e.created_at DESC, e.seq DESC LIMIT {limit}",
                conditions.join(" AND ")
            )
        }
    };
    let rows = c.query(&sql, &refs(&p.params)).await?;
    Ok(rows.iter().map(row_to_found).collect())
}

/// The columns `e.seq, t.name, e.id, e.created_at, e.operation_name, e.user_id, e.user_email,
/// e.request_ip, e.raw`.
pub(super) fn row_to_found(r: &tokio_postgres::Row) -> FoundEvent {
    FoundEvent {
        seq: r.get(0),
        tenant: r.get(1),
        id: r.get(2),
        created_at: r.get(3),
        operation_name: r.get(4),
        user_id: r.get(5),
        user_email: r.get(6),
        request_ip: r.get(7),
        raw: r.get(8),
    }
}

pub(super) async fn histogram(c: &Client, q: &EventQuery, bucket: i64) -> Result<Vec<(i64, i64)>, JournalError> {
    let Some(p) = plan(q, false) else { return Ok(Vec::new()) };
    let bucket = bucket.max(1);
    let sql = format!(
        "SELECT (e.created_at - ((e.created_at % {bucket}) + {bucket}) % {bucket}) AS b, COUNT(*)
         FROM events e {} GROUP BY b ORDER BY b",
        p.where_clause()
    );
    let rows = c.query(&sql, &refs(&p.params)).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) async fn span(c: &Client, q: &EventQuery) -> Result<Option<(i64, i64)>, JournalError> {
    let Some(p) = plan(q, false) else { return Ok(None) };
    let sql = format!("SELECT MIN(e.created_at), MAX(e.created_at) FROM events e {}", p.where_clause());
    let r = c.query_one(&sql, &refs(&p.params)).await?;
    Ok(r.get::<_, Option<i64>>(0).zip(r.get::<_, Option<i64>>(1)))
}

pub(super) async fn count(c: &Client, q: &EventQuery) -> Result<i64, JournalError> {
    let Some(p) = plan(q, false) else { return Ok(0) };
    let sql = format!("SELECT COUNT(*) FROM events e {}", p.where_clause());
    Ok(c.query_one(&sql, &refs(&p.params)).await?.get(0))
}

pub(super) async fn index_state(c: &Client) -> Result<IndexState, JournalError> {
    let r = c
        .query_one(
            "SELECT (SELECT position FROM search_index WHERE id = 1), (SELECT COALESCE(MAX(seq), 0) FROM events)",
            &[],
        )
        .await?;
    Ok(IndexState { position: r.get::<_, Option<i64>>(0).unwrap_or(0), max_seq: r.get(1) })
}

/// Indexes up to `max` events past the position in one transaction with the new position.
/// The position row is locked first, so two indexers (two instances, or the daemon and a
/// `search` command) never index the same events.
pub(super) async fn index_batch(c: &mut Client, max: usize, fence: Option<&Fence>) -> Result<usize, JournalError> {
    let tx = c.transaction().await?;
    super::check_fence(&tx, fence).await?;
    let position: i64 = tx.query_one("SELECT position FROM search_index WHERE id = 1 FOR UPDATE", &[]).await?.get(0);
    let rows = tx
        .query(
            "SELECT seq, tenant, operation_name, user_id, user_email, request_ip, raw FROM events
             WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&position, &(max.min(i64::MAX as usize) as i64)],
        )
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut seqs = Vec::with_capacity(rows.len());
    let mut texts = Vec::with_capacity(rows.len());
    let mut users: BTreeSet<(i64, i64, String, String)> = BTreeSet::new();
    let mut ips: BTreeSet<String> = BTreeSet::new();
    let mut ops: BTreeSet<String> = BTreeSet::new();
    for r in &rows {
        let raw: &str = r.get(6);
        seqs.push(r.get::<_, i64>(0));
        texts.push(words(&record_text(raw)).collect::<Vec<_>>().join(" "));
        ops.insert(r.get(2));
        if let Some(ip) = r.get::<_, Option<String>>(5) {
            ips.insert(ip);
        }
        if let Some(uid) = r.get::<_, Option<i64>>(3) {
            let email: String = r.get::<_, Option<String>>(4).unwrap_or_default();
            users.insert((r.get(1), uid, email, user_name_of(raw).unwrap_or_default()));
        }
    }
    let last = *seqs.last().expect("rows is not empty");
    tx.execute(
        "INSERT INTO events_text (seq, body)
         SELECT s, to_tsvector('simple', b) FROM unnest($1::bigint[], $2::text[]) AS x(s, b)
         ON CONFLICT (seq) DO NOTHING",
        &[&seqs, &texts],
    )
    .await?;
    let (mut ut, mut ui, mut ue, mut un) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (t, id, email, name) in users {
        ut.push(t);
        ui.push(id);
        ue.push(email);
        un.push(name);
    }
    tx.execute(
        "INSERT INTO search_users (tenant, user_id, user_email, user_name)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING",
        &[&ut, &ui, &ue, &un],
    )
    .await?;
    let kinds: Vec<&str> = ips.iter().map(|_| "ip").chain(ops.iter().map(|_| "op")).collect();
    let values: Vec<&str> = ips.iter().chain(ops.iter()).map(String::as_str).collect();
    tx.execute(
        "INSERT INTO search_values (kind, value) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
        &[&kinds, &values],
    )
    .await?;
    tx.execute("UPDATE search_index SET position = $1, updated_at = $2 WHERE id = 1", &[&last, &now_secs()]).await?;
    tx.commit().await?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_becomes_a_tsquery_of_quoted_words_and_phrases() {
        let t = |w: &str, prefix| TextTerm { words: w.into(), prefix };
        assert_eq!(tsquery(&[t("Phishing", false), t("triage", false)]).unwrap(), "('phishing') & ('triage')");
        assert_eq!(tsquery(&[t("Daily IOC", false), t("swe", true)]).unwrap(), "('daily' <-> 'ioc') & ('swe':*)");
        assert_eq!(tsquery(&[t("x@y.com", false)]).unwrap(), "('x' <-> 'y' <-> 'com')");
        assert_eq!(tsquery(&[t("it's 'quoted' & !", false)]).unwrap(), "('it' <-> 's' <-> 'quoted')");
        assert_eq!(tsquery(&[t("Seán", false)]).unwrap(), "('sean')");
        assert_eq!(tsquery(&[t("--", false)]), None);
    }
}
