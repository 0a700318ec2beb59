//! Searching the journal: a validated [`EventFilter`] becomes one SQL query
//! over the events table and its indexes, newest first, paged by keyset on
//! `(created_at, seq)` so that a page never repeats or skips an event when
//! new ones arrive between requests.
//!
//! Filters that need a lookup first (a user's display name, a CIDR network, a
//! country, a category) are turned into plain lists (user ids, addresses,
//! operation names) from the small tables the search indexer keeps, so every
//! query runs on an index of the events table.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::IpAddr;

use rusqlite::{Connection, params_from_iter, types::Value};
use serde::Serialize;

use super::filter::{EventFilter, FilterError, UserSpec};
use super::geo::CountryLookup;
use crate::catalog;
use crate::journal::{Journal, JournalError};
use crate::timeutil::format_rfc3339;

/// Most events one page may hold.
pub const MAX_PAGE: usize = 1000;

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Filter(#[from] FilterError),
    #[error("invalid cursor: pass back the next_cursor of a previous page unchanged")]
    Cursor,
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl From<rusqlite::Error> for SearchError {
    fn from(e: rusqlite::Error) -> Self {
        SearchError::Journal(e.into())
    }
}

/// Where a page starts: just after (older than) this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub seq: i64,
}

impl Cursor {
    /// An opaque token; only [`Cursor::decode`] reads it.
    pub fn encode(&self) -> String {
        format!("c1{:x}.{:x}", self.created_at, self.seq)
    }

    pub fn decode(s: &str) -> Result<Cursor, SearchError> {
        let body = s.trim().strip_prefix("c1").ok_or(SearchError::Cursor)?;
        let (a, b) = body.split_once('.').ok_or(SearchError::Cursor)?;
        let created_at = i64::from_str_radix(a, 16).map_err(|_| SearchError::Cursor)?;
        let seq = i64::from_str_radix(b, 16).map_err(|_| SearchError::Cursor)?;
        Ok(Cursor { created_at, seq })
    }
}

/// One event found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub tenant: String,
    pub id: i64,
    pub created_at: String,
    #[serde(skip)]
    pub created_at_secs: i64,
    pub operation_name: String,
    pub category: &'static str,
    pub user_id: Option<i64>,
    pub user_email: Option<String>,
    pub user_name: Option<String>,
    pub request_ip: Option<String>,
    pub country: Option<String>,
    /// The record exactly as Tines sent it.
    pub raw: String,
}

impl EventRow {
    /// The event for scripts and the API: the indexed fields, then the record itself as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let record: serde_json::Value =
            serde_json::from_str(&self.raw).unwrap_or_else(|_| serde_json::Value::String(self.raw.clone()));
        serde_json::json!({
            "seq": self.seq,
            "tenant": self.tenant,
            "id": self.id,
            "created_at": self.created_at,
            "operation_name": self.operation_name,
            "category": self.category,
            "user_id": self.user_id,
            "user_email": self.user_email,
            "user_name": self.user_name,
            "request_ip": self.request_ip,
            "country": self.country,
            "record": record,
        })
    }
}

/// A page of results, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct SearchPage {
    pub events: Vec<EventRow>,
    /// Pass back to get the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Turns free text into an FTS5 query: every word (or "quoted phrase") must
/// occur; a trailing `*` matches a prefix. Operators are not passed through,
/// so user input can never be an FTS syntax error.
pub fn fts_query(text: &str) -> Result<String, FilterError> {
    if text.chars().filter(|&c| c == '"').count() % 2 == 1 {
        return Err(FilterError("unclosed quote in the free text: close the \"phrase\"".into()));
    }
    let mut terms = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (term, after) = if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            (&r[..end], r.get(end + 1..).unwrap_or(""))
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let (term, prefix) = match term.strip_suffix('*') {
            Some(t) => (t, true),
            None => (term, false),
        };
        if term.chars().any(char::is_alphanumeric) {
            terms.push(format!("\"{}\"{}", term.replace('"', "\"\""), if prefix { "*" } else { "" }));
        }
        rest = after.trim_start();
    }
    if terms.is_empty() {
        return Err(FilterError("the free text has no word to look for".into()));
    }
    Ok(terms.join(" "))
}

/// The SQL condition and its parameters for a filter, or `None` when the
/// filter can match nothing (an unknown name, a country no address is in).
pub(crate) struct Plan {
    pub conditions: Vec<String>,
    pub params: Vec<Value>,
}

impl Plan {
    pub fn where_clause(&self) -> String {
        if self.conditions.is_empty() { String::new() } else { format!("WHERE {}", self.conditions.join(" AND ")) }
    }
}

/// `column = ?` for one value, `column IN (?, …)` for a few: both let SQLite walk the
/// `(column, created_at)` index newest first; a long list goes through `json_each`.
fn in_list<T: Serialize + Clone + Into<Value>>(column: &str, items: &[T], p: &mut Plan) -> String {
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

fn json_list<T: Serialize>(items: &[T]) -> Value {
    Value::Text(serde_json::to_string(items).unwrap_or_else(|_| "[]".into()))
}

/// Accepts an operation name the catalog lacks when the journal holds events with it
/// (Tines adds names); refuses it otherwise, suggesting names from both.
fn check_operation_in_journal(conn: &Connection, name: &str) -> Result<(), SearchError> {
    let mut exists = conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE operation_name = ?1)")?;
    if exists.query_row([name], |r| r.get::<_, bool>(0))? {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached("SELECT value FROM search_values WHERE kind = 'op'")?;
    let seen: Vec<String> = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
    let candidates = catalog::operations().iter().map(|o| o.name).chain(seen.iter().map(String::as_str));
    let suggestions = catalog::suggest_among(name, candidates, 3).into_iter().map(str::to_string).collect();
    Err(FilterError(catalog::UnknownOperation { name: name.to_string(), suggestions }.to_string()).into())
}

/// Every operation name the journal or the catalog knows in these categories.
fn operations_in(conn: &Connection, cats: &[catalog::Category]) -> Result<BTreeSet<String>, SearchError> {
    let mut names: BTreeSet<String> = catalog::operations()
        .iter()
        .filter(|o| cats.contains(&catalog::classify(o.name).category))
        .map(|o| o.name.to_string())
        .collect();
    let mut stmt = conn.prepare_cached("SELECT value FROM search_values WHERE kind = 'op'")?;
    for name in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let name = name?;
        if cats.contains(&catalog::classify(&name).category) {
            names.insert(name);
        }
    }
    Ok(names)
}

pub(crate) fn plan(conn: &Connection, f: &EventFilter, geo: &dyn CountryLookup) -> Result<Option<Plan>, SearchError> {
    let mut p = Plan { conditions: Vec::new(), params: Vec::new() };
    if !f.tenants.is_empty() {
        p.conditions.push("e.tenant IN (SELECT id FROM tenants WHERE name IN (SELECT value FROM json_each(?)))".into());
        p.params.push(json_list(&f.tenants));
    }
    if !f.users.is_empty() {
        let mut ids: BTreeSet<i64> = BTreeSet::new();
        let mut emails: Vec<String> = Vec::new();
        for u in &f.users {
            match u {
                UserSpec::Id(id) => {
                    ids.insert(*id);
                }
                UserSpec::Email(e) => emails.push(e.to_lowercase()),
                UserSpec::Name(n) => {
                    // Few distinct users exist; comparing here folds case beyond ASCII (Seán, ZOË).
                    let needle = n.to_lowercase();
                    let mut all = conn.prepare_cached("SELECT DISTINCT user_id, user_name FROM search_users")?;
                    for row in all.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
                        let (id, name) = row?;
                        if name.to_lowercase().contains(&needle) {
                            ids.insert(id);
                        }
                    }
                }
            }
        }
        let mut alts = Vec::new();
        if !ids.is_empty() {
            let ids: Vec<i64> = ids.into_iter().collect();
            alts.push(in_list("e.user_id", &ids, &mut p));
        }
        for e in emails {
            alts.push("e.user_email = ? COLLATE NOCASE".to_string());
            p.params.push(Value::Text(e));
        }
        if alts.is_empty() {
            return Ok(None);
        }
        p.conditions.push(format!("({})", alts.join(" OR ")));
    }
    for name in f.operations.iter().filter(|n| catalog::find(n).is_none()) {
        check_operation_in_journal(conn, name)?;
    }
    if !f.operations.is_empty() || !f.categories.is_empty() {
        let mut names: BTreeSet<String> = f.operations.iter().cloned().collect();
        names.extend(operations_in(conn, &f.categories)?);
        let names: Vec<String> = names.into_iter().collect();
        let c = in_list("e.operation_name", &names, &mut p);
        p.conditions.push(c);
    }
    if let Some(from) = f.from {
        p.conditions.push("e.created_at >= ?".into());
        p.params.push(Value::Integer(from));
    }
    if let Some(to) = f.to {
        p.conditions.push("e.created_at < ?".into());
        p.params.push(Value::Integer(to));
    }
    if !f.countries.is_empty() && !geo.available() {
        return Err(FilterError(
            "filtering by country needs a GeoIP database, and none is configured; filter by --ip with a network instead"
                .into(),
        )
        .into());
    }
    let hosts_only = f.ips.iter().all(|n| n.is_host());
    if !f.ips.is_empty() && hosts_only && f.countries.is_empty() {
        let ips: Vec<String> = f.ips.iter().map(|n| n.addr.to_string()).collect();
        let c = in_list("e.request_ip", &ips, &mut p);
        p.conditions.push(c);
    } else if !f.ips.is_empty() || !f.countries.is_empty() {
        let mut stmt = conn.prepare_cached("SELECT value FROM search_values WHERE kind = 'ip'")?;
        let mut matching = Vec::new();
        for ip in stmt.query_map([], |r| r.get::<_, String>(0))? {
            let ip = ip?;
            let Ok(addr) = ip.parse::<IpAddr>() else { continue };
            let ip_ok = f.ips.is_empty() || f.ips.iter().any(|n| n.contains(addr));
            let country_ok = f.countries.is_empty() || geo.country(&ip).is_some_and(|c| f.countries.contains(&c));
            if ip_ok && country_ok {
                matching.push(ip);
            }
        }
        if matching.is_empty() {
            return Ok(None);
        }
        let c = in_list("e.request_ip", &matching, &mut p);
        p.conditions.push(c);
    }
    if let Some(id) = &f.alert {
        p.conditions.push(
            "e.seq IN (SELECT l.event_seq FROM alert_events l JOIN alerts a ON a.seq = l.alert_seq WHERE a.id = ?)"
                .into(),
        );
        p.params.push(Value::Text(id.clone()));
    }
    if let Some(t) = &f.text {
        p.conditions.push("e.seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)".into());
        p.params.push(Value::Text(fts_query(t)?));
    }
    Ok(Some(p))
}

fn user_name_of(raw: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Who {
        user_name: Option<String>,
    }
    serde_json::from_str::<Who>(raw).ok().and_then(|w| w.user_name)
}

/// One page of events matching `f`, newest first, starting after `cursor`.
pub fn search_conn(
    conn: &Connection,
    f: &EventFilter,
    cursor: Option<Cursor>,
    limit: usize,
    geo: &dyn CountryLookup,
) -> Result<SearchPage, SearchError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let Some(mut p) = plan(conn, f, geo)? else {
        return Ok(SearchPage { events: Vec::new(), next_cursor: None });
    };
    if let Some(c) = cursor {
        p.conditions.push("(e.created_at, e.seq) < (?, ?)".into());
        p.params.push(Value::Integer(c.created_at));
        p.params.push(Value::Integer(c.seq));
    }
    let sql = format!(
        "SELECT e.seq, t.name, e.id, e.created_at, e.operation_name, e.user_id, e.user_email, e.request_ip, e.raw
         FROM events e JOIN tenants t ON t.id = e.tenant {}
         ORDER BY e.created_at DESC, e.seq DESC LIMIT {}",
        p.where_clause(),
        limit + 1
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut events = stmt
        .query_map(params_from_iter(p.params.iter()), |r| {
            let created_at: i64 = r.get(3)?;
            let operation_name: String = r.get(4)?;
            let raw: String = r.get(8)?;
            Ok(EventRow {
                seq: r.get(0)?,
                tenant: r.get(1)?,
                id: r.get(2)?,
                created_at: format_rfc3339(created_at),
                created_at_secs: created_at,
                category: catalog::classify(&operation_name).category.as_str(),
                operation_name,
                user_id: r.get(5)?,
                user_email: r.get(6)?,
                user_name: None,
                request_ip: r.get(7)?,
                country: None,
                raw,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let more = events.len() > limit;
    events.truncate(limit);
    for e in &mut events {
        e.user_name = user_name_of(&e.raw);
        e.country = e.request_ip.as_deref().and_then(|ip| geo.country(ip));
    }
    let next_cursor =
        if more { events.last().map(|e| Cursor { created_at: e.created_at_secs, seq: e.seq }.encode()) } else { None };
    Ok(SearchPage { events, next_cursor })
}

/// [`search_conn`] on one of the journal's read-only connections (blocking).
pub fn search(
    journal: &Journal,
    f: &EventFilter,
    cursor: Option<Cursor>,
    limit: usize,
    geo: &dyn CountryLookup,
) -> Result<SearchPage, SearchError> {
    journal.query(|conn| search_conn(conn, f, cursor, limit, geo))
}

/// Events matching `f` counted per time bucket of `bucket` seconds, oldest first:
/// `(bucket start, count)`, only buckets with events.
pub fn histogram(
    journal: &Journal,
    f: &EventFilter,
    bucket: i64,
    geo: &dyn CountryLookup,
) -> Result<Vec<(i64, i64)>, SearchError> {
    let bucket = bucket.max(1);
    journal.query(|conn| {
        let Some(p) = plan(conn, f, geo)? else { return Ok(Vec::new()) };
        let sql = format!(
            "SELECT (e.created_at / {bucket}) * {bucket} AS b, COUNT(*) FROM events e {} GROUP BY b ORDER BY b",
            p.where_clause()
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(params_from_iter(p.params.iter()), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    })
}

/// The time span of the events matching `f`: `(oldest, newest)` created_at.
pub fn span(journal: &Journal, f: &EventFilter, geo: &dyn CountryLookup) -> Result<Option<(i64, i64)>, SearchError> {
    journal.query(|conn| {
        let Some(p) = plan(conn, f, geo)? else { return Ok(None) };
        let sql = format!("SELECT MIN(e.created_at), MAX(e.created_at) FROM events e {}", p.where_clause());
        let (a, b): (Option<i64>, Option<i64>) =
            conn.query_row(&sql, params_from_iter(p.params.iter()), |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(a.zip(b))
    })
}

/// Whether a character must not reach a terminal as it is: control characters
/// (ESC starts colour, cursor and title sequences; CR and backspace overwrite
/// what was printed; C1 such as CSI) and bidirectional overrides, which make
/// text read differently from what it holds.
fn unsafe_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text from a record made safe to print: every character [`unsafe_on_terminal`]
/// (line breaks and tabs included, so a table stays one row a line) becomes a
/// visible escape such as `\u{1b}`.
pub fn printable(s: &str) -> Cow<'_, str> {
    escape_unsafe(s, &[])
}

fn escape_unsafe<'a>(s: &'a str, keep: &[char]) -> Cow<'a, str> {
    let escaped = |c: char| unsafe_on_terminal(c) && !keep.contains(&c);
    if !s.chars().any(escaped) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if escaped(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A CSV field: quoted when needed, with a leading `'` when a spreadsheet would run it as
/// a formula, and with terminal control sequences escaped as [`printable`] does (line breaks
/// and tabs stay, quoted: they are data and move no cursor anywhere unexpected).
pub fn csv_field(s: &str) -> String {
    let s = escape_unsafe(s, &['\n', '\t']);
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.into_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\nbye"), "\"say \"\"hi\"\"\nbye\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }

    #[test]
    fn terminal_escape_sequences_from_records_are_escaped_in_table_and_csv_text() {
        let hostile = "ann\u{1b}]0;pwned\u{7}\u{1b}[2J\rbob\u{8}\u{9b}31m\u{202e}gnp.exe";
        let shown = printable(hostile);
        assert!(!shown.chars().any(unsafe_on_terminal), "{shown:?}");
        assert_eq!(shown, "ann\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{d}bob\\u{8}\\u{9b}31m\\u{202e}gnp.exe");
        assert!(matches!(printable("Seán <ann@x.io>"), Cow::Borrowed(_)));
        let field = csv_field(hostile);
        assert!(!field.chars().any(unsafe_on_terminal), "{field:?}");
        assert!(field.contains("\\u{1b}[2J"), "{field}");
        assert_eq!(csv_field("line\nbreak\tand tab"), "\"line\nbreak\tand tab\"");
        assert_eq!(printable("line\nbreak"), "line\\u{a}break");
    }

    #[test]
    fn free_text_becomes_a_safe_fts_query() {
        assert_eq!(fts_query("phishing triage").unwrap(), "\"phishing\" \"triage\"");
        assert_eq!(fts_query("\"Daily IOC\" swe*").unwrap(), "\"Daily IOC\" \"swe\"*");
        assert_eq!(fts_query("a OR b NOT c").unwrap(), "\"a\" \"OR\" \"b\" \"NOT\" \"c\"");
        assert_eq!(fts_query("x@y.com - (").unwrap(), "\"x@y.com\"");
        assert!(fts_query("\"open").is_err());
        assert!(fts_query("-- ()").is_err());
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let c = Cursor { created_at: 1_700_000_000, seq: 12345 };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("garbage").is_err());
        assert!(Cursor::decode("c1zz.1").is_err());
    }
}
