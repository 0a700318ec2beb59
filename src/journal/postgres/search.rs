//! Search and the search indexer on PostgreSQL: an [`EventQuery`] becomes one statement
//! over `events` and its `(column, created_at)` indexes; free text matches a `tsvector`
//! per event (GIN) built from [`words`], the same words SQLite's FTS5 tokenizer makes
//! (letters and digits, lower case, without diacritics), so both backends find the
//! same events for the same text.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use super::{Params, refs};
use crate::journal::JournalError;
use crate::journal::backend::{EventQuery, FacetKeys, Fence, FoundEvent, IndexState, TextTerm};
use crate::journal::text::{record_text, user_name_of, words};
use crate::timeutil::now_secs;

/// One term as a `tsquery`: its words in order (`<->`), the last one a prefix (`:*`) for a
/// prefix term; `None` when it has no word.
fn tsquery_term(t: &TextTerm) -> Option<String> {
    let w: Vec<String> = words(&t.words).collect();
    let (last, rest) = w.split_last()?;
    let mut phrase: Vec<String> = rest.iter().map(|x| format!("'{x}'")).collect();
    phrase.push(if t.prefix { format!("'{last}':*") } else { format!("'{last}'") });
    Some(format!("({})", phrase.join(" <-> ")))
}

/// The `tsquery` for free text: each group's terms joined by `|`, the groups by `&`. Each
/// lexeme is quoted, and only letters and digits reach it, so no input is ever tsquery
/// syntax. `None` when a group has no word (as on SQLite, it could match nothing).
pub(super) fn tsquery(groups: &[Vec<TextTerm>]) -> Option<String> {
    let mut parts = Vec::new();
    for g in groups {
        let alts: Vec<String> = g.iter().filter_map(tsquery_term).collect();
        match alts.len() {
            0 => return None,
            1 => parts.extend(alts),
            _ => parts.push(format!("({})", alts.join(" | "))),
        }
    }
    if parts.is_empty() { None } else { Some(parts.join(" & ")) }
}

/// Where a part of a search reads: the indexed keys up to the indexer's position, or the
/// journal itself past it (the tail the indexer has not reached, short in the daemon,
/// where the indexer follows every commit).
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Keys,
    Tail,
}

impl Side {
    fn table(self) -> &'static str {
        match self {
            Side::Keys => "event_keys k",
            Side::Tail => "events e",
        }
    }

    fn alias(self) -> &'static str {
        match self {
            Side::Keys => "k",
            Side::Tail => "e",
        }
    }

    /// The e-mail address folded as the filter compares it.
    fn email(self) -> &'static str {
        match self {
            Side::Keys => "k.email",
            Side::Tail => "lower(e.user_email)",
        }
    }
}

/// An [`EventQuery`] with its values bound as parameters, rendered for either [`Side`].
struct Plan<'q> {
    q: &'q EventQuery,
    params: Params,
    /// Placeholders, in the order of [`Plan::conditions`].
    tenants: Option<String>,
    user_ids: Option<String>,
    emails: Option<String>,
    operations: Option<String>,
    from: Option<String>,
    to: Option<String>,
    ips: Option<String>,
    alert: Option<String>,
    text: Option<String>,
    not_text: Option<String>,
    not_tenants: Option<String>,
    not_user_ids: Option<String>,
    not_emails: Option<String>,
    not_operations: Option<String>,
    not_ips: Option<String>,
    /// How free text is matched (see [`TextPlan`]).
    text_plan: TextPlan,
    before: Option<(String, String)>,
    after: Option<(String, String)>,
    /// Where the tail starts; `None` when there is no tail to read.
    position: Option<String>,
}

/// How a page of free-text matches is read. Left to itself the planner joins the full-text
/// matches to the time index as a semi-join and, for words a few thousand events hold,
/// walks hundreds of thousands of events probing each (0.6-1.1 s on 5M events); for a
/// common word it may gather every match first. A page needs 50 rows, so:
#[derive(Clone, Copy, PartialEq, Debug)]
enum TextPlan {
    /// Counts and histograms need every match: a semi-join.
    Semi,
    /// Few matches: all of them from the GIN index first, then their keys by seq.
    Rare,
    /// Many: walk the filter or time index newest first, probing each event's text,
    /// a scalar subquery the planner cannot turn into a join.
    Walk,
}

impl<'q> Plan<'q> {
    /// `None` when the query can match nothing (free text with no word). `position` is
    /// the indexer's, read before the query: the tail starts there (a literal, so the
    /// planner reads it by the primary key).
    fn new(q: &'q EventQuery, position: Option<i64>) -> Option<Plan<'q>> {
        let mut p = Plan {
            q,
            params: Vec::new(),
            tenants: None,
            user_ids: None,
            emails: None,
            operations: None,
            from: None,
            to: None,
            ips: None,
            alert: None,
            text: None,
            not_text: None,
            not_tenants: None,
            not_user_ids: None,
            not_emails: None,
            not_operations: None,
            not_ips: None,
            text_plan: TextPlan::Semi,
            before: None,
            after: None,
            position: None,
        };
        let text = if q.text.is_empty() { None } else { Some(tsquery(&q.text)?) };
        if let Some(position) = position
            && text.is_none()
        {
            // Free text has no tail (see `has_tail`), and a parameter no statement names has no type.
            p.position = Some(p.arg(position));
        }
        if !q.tenants.is_empty() {
            p.tenants = Some(p.arg(q.tenants.clone()));
        }
        if !q.user_ids.is_empty() {
            p.user_ids = Some(p.arg(q.user_ids.clone()));
        }
        if !q.emails.is_empty() {
            // SQLite compares with COLLATE NOCASE, which folds ASCII only; so does this.
            p.emails = Some(p.arg(q.emails.iter().map(|e| e.to_ascii_lowercase()).collect::<Vec<_>>()));
        }
        if !q.operations.is_empty() {
            p.operations = Some(p.arg(q.operations.clone()));
        }
        p.from = q.from.map(|v| p.arg(v));
        p.to = q.to.map(|v| p.arg(v));
        if !q.ips.is_empty() {
            p.ips = Some(p.arg(q.ips.clone()));
        }
        p.alert = q.alert.clone().map(|v| p.arg(v));
        p.text = text.map(|v| p.arg(v));
        // Terms without a word exclude nothing (SQLite's tokenizer finds none in them either).
        let none: Vec<String> = q.not_text.iter().filter_map(tsquery_term).collect();
        if !none.is_empty() {
            p.not_text = Some(p.arg(none.join(" | ")));
        }
        if !q.not_tenants.is_empty() {
            p.not_tenants = Some(p.arg(q.not_tenants.clone()));
        }
        if !q.not_user_ids.is_empty() {
            p.not_user_ids = Some(p.arg(q.not_user_ids.clone()));
        }
        if !q.not_emails.is_empty() {
            p.not_emails = Some(p.arg(q.not_emails.iter().map(|e| e.to_ascii_lowercase()).collect::<Vec<_>>()));
        }
        if !q.not_operations.is_empty() {
            p.not_operations = Some(p.arg(q.not_operations.clone()));
        }
        if !q.not_ips.is_empty() {
            p.not_ips = Some(p.arg(q.not_ips.clone()));
        }
        p.before = q.before.map(|(created_at, seq)| (p.arg(created_at), p.arg(seq)));
        p.after = q.after.map(|(created_at, seq)| (p.arg(created_at), p.arg(seq)));
        Some(p)
    }

    fn arg(&mut self, v: impl tokio_postgres::types::ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    /// Whether the tail can hold a match: free text matches only what the indexer has
    /// passed (as on SQLite, whose full-text index the same indexer keeps).
    fn has_tail(&self) -> bool {
        self.position.is_some()
    }

    /// The conditions for one side; with `ips_apart`, the address list is left out (it
    /// is joined in by [`search`]).
    fn conditions(&self, side: Side, ips_apart: bool) -> Vec<String> {
        let a = side.alias();
        // The keys side has no condition on seq, so its plans are those of the filter
        // indexes alone. The tail is what lies past the position read first, less what
        // the indexer has keyed since (one snapshot for both sides: nothing twice).
        let mut c = match side {
            Side::Keys => Vec::new(),
            Side::Tail => vec![format!(
                "e.seq > {} AND NOT EXISTS (SELECT 1 FROM event_keys x WHERE x.seq = e.seq)",
                self.position.as_deref().expect("a plan with a tail")
            )],
        };
        if let Some(t) = &self.tenants {
            c.push(format!("{a}.tenant IN (SELECT id FROM tenants WHERE name = ANY({t}))"));
        }
        let mut who = Vec::new();
        if let Some(u) = &self.user_ids {
            who.push(format!("{a}.user_id = ANY({u})"));
        }
        if let Some(e) = &self.emails {
            who.push(format!("{} = ANY({e})", side.email()));
        }
        if !who.is_empty() {
            c.push(format!("({})", who.join(" OR ")));
        }
        if let Some(o) = &self.operations {
            c.push(format!("{a}.operation_name = ANY({o})"));
        }
        if let Some(f) = &self.from {
            c.push(format!("{a}.created_at >= {f}"));
        }
        if let Some(t) = &self.to {
            c.push(format!("{a}.created_at < {t}"));
        }
        if let Some(ips) = &self.ips
            && !ips_apart
        {
            c.push(format!("{a}.request_ip = ANY({ips})"));
        }
        if let Some(id) = &self.alert {
            c.push(format!(
                "{a}.seq IN (SELECT l.event_seq FROM alert_events l JOIN alerts al ON al.seq = l.alert_seq WHERE al.id = {id})"
            ));
        }
        if let Some(t) = &self.text {
            let matches = format!("SELECT seq FROM events_text WHERE body @@ to_tsquery('simple', {t})");
            c.push(match self.text_plan {
                TextPlan::Semi => format!("{a}.seq IN ({matches})"),
                TextPlan::Rare => format!("{a}.seq = ANY(ARRAY({matches}))"),
                TextPlan::Walk => {
                    format!("(SELECT x.body @@ to_tsquery('simple', {t}) FROM events_text x WHERE x.seq = {a}.seq)")
                }
            });
        }
        if let Some(t) = &self.not_text {
            c.push(format!(
                "NOT EXISTS (SELECT 1 FROM events_text x WHERE x.seq = {a}.seq AND x.body @@ to_tsquery('simple', {t}))"
            ));
        }
        // An event without a user or an address is not one of the excluded ones.
        if let Some(t) = &self.not_tenants {
            c.push(format!("{a}.tenant NOT IN (SELECT id FROM tenants WHERE name = ANY({t}))"));
        }
        if let Some(u) = &self.not_user_ids {
            c.push(format!("({a}.user_id IS NULL OR {a}.user_id <> ALL({u}))"));
        }
        if let Some(e) = &self.not_emails {
            c.push(format!("({email} IS NULL OR {email} <> ALL({e}))", email = side.email()));
        }
        if let Some(o) = &self.not_operations {
            c.push(format!("{a}.operation_name <> ALL({o})"));
        }
        if let Some(i) = &self.not_ips {
            c.push(format!("({a}.request_ip IS NULL OR {a}.request_ip <> ALL({i}))"));
        }
        if let Some((created_at, seq)) = &self.before {
            c.push(format!("({a}.created_at, {a}.seq) < ({created_at}, {seq})"));
        }
        if let Some((created_at, seq)) = &self.after {
            c.push(format!("({a}.created_at, {a}.seq) > ({created_at}, {seq})"));
        }
        c
    }

    /// `SELECT {columns} FROM <side> WHERE <conditions>` for each side that can match,
    /// joined by `UNION ALL`; `columns` name the side's alias as `@`.
    fn union(&self, columns: &str) -> String {
        let mut parts = vec![self.select(Side::Keys, columns, "")];
        if self.has_tail() {
            parts.push(self.select(Side::Tail, columns, ""));
        }
        parts.join(" UNION ALL ")
    }

    fn select(&self, side: Side, columns: &str, tail_sql: &str) -> String {
        let c = self.conditions(side, false);
        let filter = if c.is_empty() { String::new() } else { format!("WHERE {}", c.join(" AND ")) };
        format!("SELECT {} FROM {} {filter} {tail_sql}", columns.replace('@', side.alias()), side.table())
    }

    /// Whether a page is best read address by address: several addresses (a network or
    /// a country resolved to the addresses seen) and no other indexed filter. Each
    /// address's newest events then come from its `(request_ip, created_at)` index, and
    /// the page is the newest of those, the same rows as one query over the list. Left
    /// to itself the planner often walks the time index instead, filtering by the list,
    /// and reads every event of the range: it overestimates how often a rare address
    /// occurs, because ANALYZE's sample sees few of the distinct addresses (870 of
    /// 136,816 on the 5M-event benchmark journal).
    fn by_address(&self) -> bool {
        let q = self.q;
        q.ips.len() > 1
            && q.user_ids.is_empty()
            && q.emails.is_empty()
            && q.operations.is_empty()
            && q.text.is_empty()
            && q.alert.is_none()
    }
}

/// [`TextPlan::Rare`] or [`TextPlan::Walk`] for a page of `terms`, from the planner's
/// estimate of each word's matches: the rarest bounds how many events can match them all
/// (a phrase's own estimate is unusable: the planner guesses 1 for any phrase). Reading
/// every match costs about 20 µs each, walking about 5 µs per event passed, 50 / f
/// events for a word in a fraction f of the N events: they cross near sqrt(13 N) matches
/// (8,100 of 5M events, where both take some 160 ms; the rarer or commoner, the faster).
async fn text_plan(c: &Client, groups: &[Vec<TextTerm>]) -> Result<TextPlan, JournalError> {
    let total: f32 = c
        .query_one("SELECT GREATEST(reltuples, 0)::real FROM pg_class WHERE oid = 'events_text'::regclass", &[])
        .await?
        .get(0);
    // A group of alternatives matches at most the sum of its terms; a term (a phrase) at
    // most its rarest word; every group must match, so the rarest group bounds the whole.
    let mut fewest = f64::INFINITY;
    for g in groups {
        let mut group = 0.0;
        for t in g {
            let w: Vec<String> = words(&t.words).collect();
            let mut term = f64::INFINITY;
            for (i, x) in w.iter().enumerate() {
                let l = if t.prefix && i + 1 == w.len() { format!("'{x}':*") } else { format!("'{x}'") };
                let rows = c
                    .query("EXPLAIN SELECT 1 FROM events_text WHERE body @@ to_tsquery('simple', $1::text)", &[&l])
                    .await?;
                let first: String = rows.first().map(|r| r.get(0)).unwrap_or_default();
                term = term.min(estimated_rows(&first).unwrap_or(f64::INFINITY));
            }
            group += term;
        }
        fewest = fewest.min(group);
    }
    let threshold = (13.0 * f64::from(total)).sqrt().max(2_000.0);
    Ok(if fewest <= threshold { TextPlan::Rare } else { TextPlan::Walk })
}

/// `rows=N` of a line of `EXPLAIN` output.
fn estimated_rows(line: &str) -> Option<f64> {
    let at = line.find(" rows=")? + " rows=".len();
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The indexer's position, read before the query that uses it (see [`Plan::new`]);
/// `None` when it has keyed every event (the daemon's usual state), so the query has
/// no tail to read or plan.
async fn position(c: &Client) -> Result<Option<i64>, JournalError> {
    let r = c
        .query_one("SELECT position, (SELECT COALESCE(MAX(seq), 0) FROM events) FROM search_index WHERE id = 1", &[])
        .await?;
    let (position, max): (i64, i64) = (r.get(0), r.get(1));
    Ok((position < max).then_some(position))
}

pub(super) async fn search(c: &Client, q: &EventQuery, limit: usize) -> Result<Vec<FoundEvent>, JournalError> {
    search_from(c, q, limit, position(c).await?).await
}

/// [`search`] with the indexer's position as read (maybe behind it by now).
async fn search_from(
    c: &Client,
    q: &EventQuery,
    limit: usize,
    position: Option<i64>,
) -> Result<Vec<FoundEvent>, JournalError> {
    let Some(mut p) = Plan::new(q, position) else { return Ok(Vec::new()) };
    if !q.text.is_empty() {
        p.text_plan = text_plan(c, &q.text).await?;
    }
    let dir = if q.oldest_first { "ASC" } else { "DESC" };
    let order = format!("ORDER BY created_at {dir}, seq {dir} LIMIT {limit}");
    let newest = |side: Side| format!("({})", p.select(side, "@.seq, @.created_at", &order));
    let keys = match (&p.ips, p.by_address()) {
        (Some(ips), true) => {
            let mut conditions = vec!["k.request_ip = f.ip".to_string()];
            conditions.extend(p.conditions(Side::Keys, true));
            format!(
                "(SELECT k.seq, k.created_at
                  FROM (SELECT DISTINCT ip FROM unnest({ips}::text[]) AS x(ip)) AS f
                  CROSS JOIN LATERAL (
                      SELECT k.seq, k.created_at FROM event_keys k WHERE {}
                      ORDER BY k.created_at {dir}, k.seq {dir} LIMIT {limit}
                  ) k)",
                conditions.join(" AND ")
            )
        }
        _ => newest(Side::Keys),
    };
    let mut parts = vec![keys];
    if p.has_tail() {
        parts.push(newest(Side::Tail));
    }
    let sql = format!(
        "SELECT e.seq, t.name, e.id, e.created_at, e.operation_name, e.user_id, e.user_email, e.request_ip, e.raw
         FROM (SELECT seq, created_at FROM ({}) AS m ORDER BY created_at {dir}, seq {dir} LIMIT {limit}) AS s
         JOIN events e ON e.seq = s.seq
         JOIN tenants t ON t.id = e.tenant
         ORDER BY e.created_at {dir}, e.seq {dir}",
        parts.join(" UNION ALL ")
    );
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
    let Some(p) = Plan::new(q, position(c).await?) else { return Ok(Vec::new()) };
    let bucket = bucket.max(1);
    let sql = format!(
        "SELECT (created_at - ((created_at % {bucket}) + {bucket}) % {bucket}) AS b, COUNT(*)
         FROM ({}) AS m GROUP BY b ORDER BY b",
        p.union("@.created_at")
    );
    let rows = c.query(&sql, &refs(&p.params)).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) async fn span(c: &Client, q: &EventQuery) -> Result<Option<(i64, i64)>, JournalError> {
    let Some(p) = Plan::new(q, position(c).await?) else { return Ok(None) };
    let sql =
        format!("SELECT MIN(lo), MAX(hi) FROM ({}) AS m", p.union("MIN(@.created_at) AS lo, MAX(@.created_at) AS hi"));
    let r = c.query_one(&sql, &refs(&p.params)).await?;
    Ok(r.get::<_, Option<i64>>(0).zip(r.get::<_, Option<i64>>(1)))
}

pub(super) async fn count(c: &Client, q: &EventQuery) -> Result<i64, JournalError> {
    count_from(c, q, position(c).await?).await
}

async fn count_from(c: &Client, q: &EventQuery, position: Option<i64>) -> Result<i64, JournalError> {
    let Some(p) = Plan::new(q, position) else { return Ok(0) };
    let sql = format!("SELECT COALESCE(SUM(n), 0)::bigint FROM ({}) AS m", p.union("COUNT(*) AS n"));
    Ok(c.query_one(&sql, &refs(&p.params)).await?.get(0))
}

/// The facet keys of the newest `limit` events matching `q`: each side's newest, as
/// [`search`] reads a page, from the narrow `event_keys` where the indexer has been.
pub(super) async fn facet_keys(c: &Client, q: &EventQuery, limit: usize) -> Result<Vec<FacetKeys>, JournalError> {
    let Some(mut p) = Plan::new(q, position(c).await?) else { return Ok(Vec::new()) };
    if !q.text.is_empty() {
        p.text_plan = text_plan(c, &q.text).await?;
    }
    let order = format!("ORDER BY created_at DESC, seq DESC LIMIT {limit}");
    let newest = |side: Side| {
        let columns =
            format!("@.seq, @.created_at, @.tenant, {} AS email, @.operation_name, @.request_ip", side.email());
        format!("({})", p.select(side, &columns, &order))
    };
    let mut parts = vec![newest(Side::Keys)];
    if p.has_tail() {
        parts.push(newest(Side::Tail));
    }
    let sql = format!(
        "SELECT t.name, s.email, s.operation_name, s.request_ip
         FROM (SELECT * FROM ({}) AS m ORDER BY created_at DESC, seq DESC LIMIT {limit}) AS s
         JOIN tenants t ON t.id = s.tenant
         ORDER BY s.created_at DESC, s.seq DESC",
        parts.join(" UNION ALL ")
    );
    let rows = c.query(&sql, &refs(&p.params)).await?;
    Ok(rows
        .iter()
        .map(|r| FacetKeys { tenant: r.get(0), email: r.get(1), operation: r.get(2), ip: r.get(3) })
        .collect())
}

/// A tenant's events (of the given users and operations, where not empty) in
/// `[start, end)`, in the second `start - 1` and in the second `end`.
pub(super) async fn slice_counts(
    c: &Client,
    tenant: &str,
    (start, end): (i64, i64),
    user_ids: Vec<i64>,
    operations: Vec<String>,
) -> Result<(i64, i64, i64), JournalError> {
    let q = EventQuery {
        tenants: vec![tenant.to_string()],
        user_ids,
        operations,
        from: Some(start - 1),
        to: Some(end + 1),
        ..EventQuery::default()
    };
    let p = Plan::new(&q, position(c).await?).expect("no free text");
    // The bounds are numbers, formatted here, never text from outside.
    let columns = format!(
        "COUNT(*) FILTER (WHERE @.created_at >= {start} AND @.created_at < {end}) AS inside,
         COUNT(*) FILTER (WHERE @.created_at = {start} - 1) AS before,
         COUNT(*) FILTER (WHERE @.created_at = {end}) AS at_end"
    );
    let sql = format!(
        "SELECT COALESCE(SUM(inside), 0)::bigint, COALESCE(SUM(before), 0)::bigint, COALESCE(SUM(at_end), 0)::bigint
         FROM ({}) AS m",
        p.union(&columns)
    );
    let r = c.query_one(&sql, &refs(&p.params)).await?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

/// Whether any event has this operation name.
pub(super) async fn operation_exists(c: &Client, name: &str) -> Result<bool, JournalError> {
    let q = EventQuery { operations: vec![name.to_string()], ..EventQuery::default() };
    let p = Plan::new(&q, position(c).await?).expect("no free text");
    let mut sql = format!("SELECT EXISTS ({})", p.select(Side::Keys, "1", ""));
    if p.has_tail() {
        sql.push_str(&format!(" OR EXISTS ({})", p.select(Side::Tail, "1", "")));
    }
    Ok(c.query_one(&sql, &refs(&p.params)).await?.get(0))
}

/// The first sequence number of an event created at or after `t`.
pub(super) async fn first_seq_since(c: &Client, t: i64) -> Result<Option<i64>, JournalError> {
    let q = EventQuery { from: Some(t), ..EventQuery::default() };
    let p = Plan::new(&q, position(c).await?).expect("no free text");
    let sql = format!("SELECT MIN(s) FROM ({}) AS m", p.union("MIN(@.seq) AS s"));
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
        "INSERT INTO event_keys (seq, tenant, created_at, operation_name, user_id, email, request_ip)
         SELECT seq, tenant, created_at, operation_name, user_id, lower(user_email), request_ip FROM events
         WHERE seq > $1 AND seq <= $2
         ON CONFLICT (seq) DO NOTHING",
        &[&position, &last],
    )
    .await?;
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

    /// The indexer may pass the position a search read before the search runs; the events
    /// it keyed in between are then in both places, and must come once.
    #[test]
    fn a_position_read_before_the_indexer_moved_shows_no_event_twice() {
        let j = crate::journal::testing::fresh(crate::journal::testing::Kind::Postgres);
        crate::journal::conformance::fill(&j, 30);
        let url = match &j.at {
            crate::journal::Location::Url(u) => u.expose().to_string(),
            _ => unreachable!("a PostgreSQL journal"),
        };
        crate::query::index::catch_up(&j).unwrap();
        let pool = super::super::conn::Pool::new(super::super::conn::parse(&url).unwrap()).unwrap();
        let q = EventQuery::default();
        let (found, n) = pool
            .run(async |c| Ok((search_from(c, &q, 100, Some(0)).await?, count_from(c, &q, Some(0)).await?)))
            .unwrap();
        let mut seqs: Vec<i64> = found.iter().map(|e| e.seq).collect();
        seqs.sort();
        seqs.dedup();
        assert_eq!((found.len(), seqs.len(), n), (30, 30, 30));
    }

    #[test]
    fn the_planners_row_estimate_is_read_from_its_first_line() {
        let line = "Bitmap Heap Scan on events_text  (cost=1253.07..110674.27 rows=37816 width=8)";
        assert_eq!(estimated_rows(line), Some(37_816.0));
        assert_eq!(estimated_rows("Result  (cost=0.00..0.01 rows=1 width=4)"), Some(1.0));
        assert_eq!(estimated_rows("nothing here"), None);
    }

    #[test]
    fn free_text_becomes_a_tsquery_of_quoted_words_and_phrases() {
        let t = |w: &str, prefix| TextTerm { words: w.into(), prefix };
        let one = |t: TextTerm| vec![vec![t]];
        assert_eq!(
            tsquery(&[vec![t("Phishing", false)], vec![t("triage", false)]]).unwrap(),
            "('phishing') & ('triage')"
        );
        assert_eq!(
            tsquery(&[vec![t("Daily IOC", false), t("swe", true)], vec![t("x", false)]]).unwrap(),
            "(('daily' <-> 'ioc') | ('swe':*)) & ('x')"
        );
        assert_eq!(tsquery(&one(t("x@y.com", false))).unwrap(), "('x' <-> 'y' <-> 'com')");
        assert_eq!(tsquery(&one(t("it's 'quoted' & !", false))).unwrap(), "('it' <-> 's' <-> 'quoted')");
        assert_eq!(tsquery(&one(t("Seán", false))).unwrap(), "('sean')");
        assert_eq!(tsquery(&one(t("--", false))), None);
    }
}
