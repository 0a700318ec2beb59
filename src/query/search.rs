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

use serde::Serialize;

use super::filter::{EventFilter, FilterError, IpNet, UserSpec};
use super::geo::CountryLookup;
use crate::catalog;
use crate::journal::text::user_name_of;
use crate::journal::{EventQuery, FoundEvent, Journal, JournalError};
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

/// Accepts an operation name the catalog lacks when the journal holds events with it
/// (Tines adds names); refuses it otherwise, suggesting names from both.
fn check_operation_in_journal(journal: &Journal, name: &str) -> Result<(), SearchError> {
    if journal.operation_exists(name)? {
        return Ok(());
    }
    let seen = journal.seen_values("op")?;
    let candidates = catalog::operations().iter().map(|o| o.name).chain(seen.iter().map(String::as_str));
    let suggestions = catalog::suggest_among(name, candidates, 3).into_iter().map(str::to_string).collect();
    Err(FilterError(catalog::UnknownOperation { name: name.to_string(), suggestions }.to_string()).into())
}

/// Every operation name the journal or the catalog knows in these categories.
fn operations_in(journal: &Journal, cats: &[catalog::Category]) -> Result<BTreeSet<String>, SearchError> {
    let mut names: BTreeSet<String> = catalog::operations()
        .iter()
        .filter(|o| cats.contains(&catalog::classify(o.name).category))
        .map(|o| o.name.to_string())
        .collect();
    for name in journal.seen_values("op")? {
        if cats.contains(&catalog::classify(&name).category) {
            names.insert(name);
        }
    }
    Ok(names)
}

/// User ids and e-mail addresses (lower case) of `users`: ids and addresses as given,
/// display names (any part, any case) through the users the indexer has seen.
fn resolve_users(journal: &Journal, users: &[UserSpec]) -> Result<(Vec<i64>, Vec<String>), SearchError> {
    let mut ids: BTreeSet<i64> = BTreeSet::new();
    let mut emails: BTreeSet<String> = BTreeSet::new();
    let mut names: Option<Vec<(i64, String)>> = None;
    for u in users {
        match u {
            UserSpec::Id(id) => {
                ids.insert(*id);
            }
            UserSpec::Email(e) => {
                emails.insert(e.to_lowercase());
            }
            UserSpec::Name(n) => {
                // Few distinct users exist; comparing here folds case beyond ASCII (Seán, ZOË).
                let needle = n.to_lowercase();
                let all = match &names {
                    Some(all) => all,
                    None => names.insert(journal.seen_user_names()?),
                };
                ids.extend(all.iter().filter(|(_, name)| name.to_lowercase().contains(&needle)).map(|(id, _)| *id));
            }
        }
    }
    Ok((ids.into_iter().collect(), emails.into_iter().collect()))
}

/// Operation names of `operations` (each checked) and of every operation in `categories`.
fn resolve_operations(
    journal: &Journal,
    operations: &[String],
    categories: &[catalog::Category],
) -> Result<Vec<String>, SearchError> {
    for name in operations.iter().filter(|n| catalog::find(n).is_none()) {
        check_operation_in_journal(journal, name)?;
    }
    let mut names: BTreeSet<String> = operations.iter().cloned().collect();
    if !categories.is_empty() {
        names.extend(operations_in(journal, categories)?);
    }
    Ok(names.into_iter().collect())
}

/// The source addresses of `ips` (addresses and networks) that are also in `countries`
/// (when given): addresses as given, networks and countries through the addresses the
/// indexer has seen.
fn resolve_ips(
    journal: &Journal,
    ips: &[IpNet],
    countries: &[String],
    geo: &dyn CountryLookup,
) -> Result<Vec<String>, SearchError> {
    if !countries.is_empty() && !geo.available() {
        return Err(FilterError(
            "country: filtering by country needs a GeoIP database, and none is configured; filter by ip with a network instead"
                .into(),
        )
        .into());
    }
    if ips.iter().all(|n| n.is_host()) && countries.is_empty() {
        return Ok(ips.iter().map(|n| n.addr.to_string()).collect());
    }
    // IPv4 networks are read by their text prefixes; countries and IPv6 need every address.
    let prefixes: Option<Vec<String>> = if countries.is_empty() {
        ips.iter().map(text_prefixes).collect::<Option<Vec<Vec<String>>>>().map(|p| p.concat())
    } else {
        None
    };
    let seen = match prefixes {
        Some(p) => journal.seen_values_prefixed("ip", &p)?,
        None => journal.seen_values("ip")?,
    };
    let mut out = Vec::new();
    for ip in seen {
        let Ok(addr) = ip.parse::<IpAddr>() else { continue };
        let ip_ok = ips.is_empty() || ips.iter().any(|n| n.contains(addr));
        let country_ok = countries.is_empty() || geo.country(&ip).is_some_and(|c| countries.contains(&c));
        if ip_ok && country_ok {
            out.push(ip);
        }
    }
    out.sort();
    out.dedup(); // overlapping prefixes (`10.0.0.1` and `10.0.0.10`) read some twice
    Ok(out)
}

/// Resolves a filter's lookups (user names, networks, countries, categories) into the plain
/// lists a backend queries by, or `None` when the filter can match nothing (an unknown
/// name, a country no address is in). An exclusion that resolves to nothing excludes nothing.
pub(crate) fn plan(
    journal: &Journal,
    f: &EventFilter,
    geo: &dyn CountryLookup,
) -> Result<Option<EventQuery>, SearchError> {
    let mut q = EventQuery {
        tenants: f.tenants.clone(),
        from: f.from,
        to: f.to,
        alert: f.alert.clone(),
        text: f.text.all.clone(),
        not_text: f.text.none.clone(),
        not_tenants: f.exclude.tenants.clone(),
        ..Default::default()
    };
    if !f.users.is_empty() {
        (q.user_ids, q.emails) = resolve_users(journal, &f.users)?;
        if q.user_ids.is_empty() && q.emails.is_empty() {
            return Ok(None);
        }
    }
    (q.not_user_ids, q.not_emails) = resolve_users(journal, &f.exclude.users)?;
    if !f.operations.is_empty() || !f.categories.is_empty() {
        // Operation and category are two filters, so both hold: the named operations that
        // are in the categories (a pivot from a category to one of its operations narrows).
        let named = resolve_operations(journal, &f.operations, &[])?;
        let in_categories = resolve_operations(journal, &[], &f.categories)?;
        q.operations = match (f.operations.is_empty(), f.categories.is_empty()) {
            (false, false) => named.into_iter().filter(|n| in_categories.contains(n)).collect(),
            (false, true) => named,
            _ => in_categories,
        };
        if q.operations.is_empty() {
            return Ok(None);
        }
    }
    q.not_operations = resolve_operations(journal, &f.exclude.operations, &f.exclude.categories)?;
    if !f.ips.is_empty() || !f.countries.is_empty() {
        q.ips = resolve_ips(journal, &f.ips, &f.countries, geo)?;
        if q.ips.is_empty() {
            return Ok(None);
        }
    }
    let (not_ips, not_countries) = (&f.exclude.ips, &f.exclude.countries);
    // Each excluded network and each excluded country is its own set of addresses.
    let mut excluded: BTreeSet<String> = BTreeSet::new();
    if !not_ips.is_empty() {
        excluded.extend(resolve_ips(journal, not_ips, &[], geo)?);
    }
    if !not_countries.is_empty() {
        excluded.extend(resolve_ips(journal, &[], not_countries, geo)?);
    }
    q.not_ips = excluded.into_iter().collect();
    Ok(Some(q))
}

/// Text prefixes every IPv4 address of `n` starts with, as written (`86.40.0.0/16` is
/// `86.40.`; `172.16.0.0/12` is `172.16.` to `172.31.`); a prefix may also cover
/// addresses outside `n` (`10.0.0.1` covers `10.0.0.12`), which the caller drops.
/// `None` for IPv6 (its text forms do not nest) and for networks needing over 64 prefixes.
fn text_prefixes(n: &IpNet) -> Option<Vec<String>> {
    let IpAddr::V4(a) = n.addr else { return None };
    let (octets, full, rest) = (a.octets(), usize::from(n.bits / 8), u32::from(n.bits % 8));
    if full == 4 {
        return Some(vec![a.to_string()]);
    }
    let head: String = octets[..full].iter().map(|o| format!("{o}.")).collect();
    if rest == 0 {
        return Some(vec![head]);
    }
    let count = 1u32 << (8 - rest);
    if count > 64 {
        return None;
    }
    let first = u32::from(octets[full]) & !(count - 1);
    let dot = if full == 3 { "" } else { "." };
    Some((first..first + count).map(|o| format!("{head}{o}{dot}")).collect())
}

fn to_row(e: FoundEvent, geo: &dyn CountryLookup) -> EventRow {
    EventRow {
        user_name: user_name_of(&e.raw),
        country: e.request_ip.as_deref().and_then(|ip| geo.country(ip)),
        seq: e.seq,
        tenant: e.tenant,
        id: e.id,
        created_at: format_rfc3339(e.created_at),
        created_at_secs: e.created_at,
        category: catalog::classify(&e.operation_name).category.as_str(),
        operation_name: e.operation_name,
        user_id: e.user_id,
        user_email: e.user_email,
        request_ip: e.request_ip,
        raw: e.raw,
    }
}

/// One page of events matching `f`, newest first, starting after `cursor` (blocking).
pub fn search(
    journal: &Journal,
    f: &EventFilter,
    cursor: Option<Cursor>,
    limit: usize,
    geo: &dyn CountryLookup,
) -> Result<SearchPage, SearchError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let Some(mut q) = plan(journal, f, geo)? else {
        return Ok(SearchPage { events: Vec::new(), next_cursor: None });
    };
    q.before = cursor.map(|c| (c.created_at, c.seq));
    let mut found = journal.search(&q, limit + 1)?;
    let more = found.len() > limit;
    found.truncate(limit);
    let events: Vec<EventRow> = found.into_iter().map(|e| to_row(e, geo)).collect();
    let next_cursor =
        if more { events.last().map(|e| Cursor { created_at: e.created_at_secs, seq: e.seq }.encode()) } else { None };
    Ok(SearchPage { events, next_cursor })
}

/// The event stored at journal `seq`, for its permalink (blocking); `None` when there is
/// none (never stored, or removed by retention).
pub fn by_seq(journal: &Journal, seq: i64, geo: &dyn CountryLookup) -> Result<Option<EventRow>, SearchError> {
    let batch = journal.read_after(seq.saturating_sub(1), 1, usize::MAX)?;
    let Some(e) = batch.get(0).filter(|e| e.seq == seq) else { return Ok(None) };
    // Read back through the search, which gives the indexed fields the list shows.
    let q = EventQuery {
        tenants: vec![e.tenant.to_string()],
        from: Some(e.created_at),
        to: Some(e.created_at + 1),
        before: Some((e.created_at, seq + 1)),
        ..Default::default()
    };
    Ok(journal.search(&q, 1)?.into_iter().find(|f| f.seq == seq).map(|f| to_row(f, geo)))
}

/// Events matching `f` counted per time bucket of `bucket` seconds, oldest first:
/// `(bucket start, count)`, only buckets with events.
pub fn histogram(
    journal: &Journal,
    f: &EventFilter,
    bucket: i64,
    geo: &dyn CountryLookup,
) -> Result<Vec<(i64, i64)>, SearchError> {
    match plan(journal, f, geo)? {
        Some(q) => Ok(journal.histogram(&q, bucket)?),
        None => Ok(Vec::new()),
    }
}

/// The time span of the events matching `f`: `(oldest, newest)` created_at.
pub fn span(journal: &Journal, f: &EventFilter, geo: &dyn CountryLookup) -> Result<Option<(i64, i64)>, SearchError> {
    match plan(journal, f, geo)? {
        Some(q) => Ok(journal.span(&q)?),
        None => Ok(None),
    }
}

/// How many events match `f`.
pub fn count(journal: &Journal, f: &EventFilter, geo: &dyn CountryLookup) -> Result<i64, SearchError> {
    match plan(journal, f, geo)? {
        Some(q) => Ok(journal.count(&q)?),
        None => Ok(0),
    }
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

/// The columns of an event as CSV (the `search` command's and the API's export).
pub const CSV_HEADER: &str =
    "seq,tenant,id,created_at,operation_name,category,user_id,user_email,user_name,request_ip,country,record";

/// An event as one CSV row (without its line break); every cell through [`csv_field`].
pub fn csv_row(e: &EventRow) -> String {
    let opt = |v: &Option<String>| csv_field(v.as_deref().unwrap_or(""));
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{}",
        e.seq,
        csv_field(&e.tenant),
        e.id,
        e.created_at,
        csv_field(&e.operation_name),
        e.category,
        csv_field(&e.user_id.map(|i| i.to_string()).unwrap_or_default()),
        opt(&e.user_email),
        opt(&e.user_name),
        opt(&e.request_ip),
        opt(&e.country),
        csv_field(&e.raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_network_becomes_the_text_prefixes_of_its_addresses() {
        let p = |s: &str| text_prefixes(&IpNet::parse(s).unwrap());
        assert_eq!(p("86.40.0.0/16"), Some(vec!["86.40.".to_string()]));
        assert_eq!(p("10.0.0.0/8"), Some(vec!["10.".to_string()]));
        assert_eq!(p("192.0.2.7"), Some(vec!["192.0.2.7".to_string()]));
        let twelve = p("172.20.1.2/12").unwrap();
        assert_eq!((twelve.len(), twelve[0].as_str(), twelve[15].as_str()), (16, "172.16.", "172.31."));
        assert_eq!(p("10.0.0.16/28").unwrap(), (16..32).map(|o| format!("10.0.0.{o}")).collect::<Vec<_>>());
        assert_eq!(p("0.0.0.0/0"), Some(vec![String::new()]));
        assert_eq!(p("10.0.0.0/9"), None, "128 prefixes: read every address instead");
        assert_eq!(p("2001:db8::/32"), None);
        // Every address of the network starts with one of its prefixes.
        for s in ["172.16.0.0/12", "10.0.0.16/28", "100.64.0.0/10", "203.0.113.192/26"] {
            let n = IpNet::parse(s).unwrap();
            let pre = text_prefixes(&n).unwrap();
            for i in 0..2000u32 {
                let IpAddr::V4(base) = n.addr else { unreachable!() };
                let mask = u32::MAX.checked_shl(32 - u32::from(n.bits)).unwrap_or(0);
                let a = std::net::Ipv4Addr::from((u32::from(base) & mask) | (i.wrapping_mul(2_654_435_761) & !mask));
                assert!(n.contains(IpAddr::V4(a)));
                assert!(pre.iter().any(|p| a.to_string().starts_with(p.as_str())), "{a} in {s}");
            }
        }
        assert_eq!(crate::journal::prefix_end("86.40."), "86.40/");
    }

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
    fn cursors_round_trip_and_junk_is_refused() {
        let c = Cursor { created_at: 1_700_000_000, seq: 12345 };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("garbage").is_err());
        assert!(Cursor::decode("c1zz.1").is_err());
    }
}
