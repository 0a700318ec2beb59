//! The console's events page and each event's permalink page: the filter form, a
//! timeline whose bars zoom, the top values of the current filter, and the events, where
//! every user, address, operation, category, country and tenant narrows the search to
//! that value in one click, or excludes it. Server-rendered with `maud` (which escapes
//! every value it is given); the page needs no script.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, PreEscaped, html};

use super::AppState;
use super::api::{Query, parse_query_for};
use super::console::{age, login_redirect, page};
use crate::query::syntax::{self, Field};
use crate::query::{self, EventRow, FilterArgs, chart, facets::Facet};
use crate::timeutil::{format_rfc3339, now_secs};

/// Values shown per field in the top-values panel.
const TOP_VALUES: usize = 5;

/// Parameters the page takes beside the filters.
const OWN: &[&str] = &["tz"];

/// The query string as typed: the form shows it again when it is refused, so one bad
/// field does not clear the others.
struct Typed(Vec<(String, String)>);

impl Typed {
    fn parse(raw: Option<&str>) -> Typed {
        Typed(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Every value of `names` (a parameter and its aliases), joined as a list field takes them.
    fn get(&self, names: &[&str]) -> String {
        let values: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        values.join(", ")
    }
}

/// The form's text fields: parameter, its aliases, label and hint.
const FORM_FIELDS: &[(&str, &[&str], &str, &str)] = &[
    ("user", &["user"], "User", "id, e-mail or name"),
    ("operation", &["operation"], "Operation", "e.g. CredentialDestruction"),
    ("tenant", &["tenant"], "Tenant", "any"),
    ("from", &["from", "since"], "From", "30d or 2024-05-01"),
    ("to", &["to", "until"], "To", "now"),
    ("ip", &["ip"], "IP or CIDR", "10.0.0.0/8"),
    ("country", &["country"], "Country", "IE"),
];

/// The parameter an error is about: refusals start with its name (`from: …`, `q (user:x): …`).
fn field_of(message: &str) -> Option<&'static str> {
    if message.starts_with("unknown operation") {
        return Some("operation");
    }
    let head = message.split([':', ' ']).next().unwrap_or("");
    let names =
        ["user", "operation", "tenant", "category", "from", "to", "ip", "country", "q", "limit", "cursor", "tz"];
    match head {
        "since" => Some("from"),
        "until" => Some("to"),
        "text" => Some("q"),
        h => names.into_iter().find(|n| *n == h),
    }
}

/// Links that keep the page's filters and options and change one thing.
struct Links {
    args: FilterArgs,
    /// The alert, page size and time zone, kept by every link.
    keep: Vec<(&'static str, String)>,
}

fn list_mut(a: &mut FilterArgs, field: Field) -> Option<&mut Vec<String>> {
    Some(match field {
        Field::Tenant => &mut a.tenant,
        Field::User => &mut a.user,
        Field::Operation => &mut a.operation,
        Field::Category => &mut a.category,
        Field::Ip => &mut a.ip,
        Field::Country => &mut a.country,
        Field::From | Field::To => return None,
    })
}

impl Links {
    fn href(&self, a: &FilterArgs) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in a.to_pairs().iter().chain(&self.keep) {
            s.append_pair(k, v);
        }
        format!("/events?{}", s.finish())
    }

    fn without_in_text(a: &mut FilterArgs, field: Field) {
        let rest = a.text.as_deref().and_then(|q| syntax::without_field(q, field));
        if let Some(rest) = rest {
            a.text = Some(rest).filter(|r| !r.trim().is_empty());
        }
    }

    /// Everything the search matches, as a download (the export API, with the same filters).
    fn export(&self, format: &str) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("format", format);
        for (k, v) in self.args.to_pairs().iter().chain(self.keep.iter().filter(|(k, _)| *k == "alert")) {
            s.append_pair(k, v);
        }
        format!("/api/v1/events/export?{}", s.finish())
    }

    /// The search narrowed to `field` = `value`: the value replaces the field's others
    /// (in its box and in the search text).
    fn pivot(&self, field: Field, value: &str) -> String {
        let mut a = self.args.clone();
        Self::without_in_text(&mut a, field);
        let list = list_mut(&mut a, field).expect("a list field");
        list.clear();
        if value.contains(',') {
            // The boxes split on commas: the value goes into the search text, quoted.
            let clause = syntax::clause(field, value, false);
            a.text = Some(a.text.map_or(clause.clone(), |q| format!("{q} {clause}")));
        } else {
            list.push(value.to_string());
        }
        self.href(&a)
    }

    /// The search with `field` = `value` excluded.
    fn exclude(&self, field: Field, value: &str) -> String {
        let mut a = self.args.clone();
        let clause = syntax::clause(field, value, true);
        a.text = Some(match a.text.as_deref().map(str::trim) {
            Some(q) if !q.is_empty() => format!("{q} {clause}"),
            _ => clause,
        });
        self.href(&a)
    }

    /// The search over `[from, to)` instead of its period.
    fn zoom(&self, from: i64, to: i64) -> String {
        let mut a = self.args.clone();
        Self::without_in_text(&mut a, Field::From);
        Self::without_in_text(&mut a, Field::To);
        (a.from, a.to) = (Some(format_rfc3339(from)), Some(format_rfc3339(to)));
        self.href(&a)
    }
}

/// A value that narrows the search to it, with a link beside it that excludes it.
fn value(links: &Links, field: Field, value: &str, shown: &str) -> Markup {
    let name = field.as_str();
    html! {
        span.pv {
            a.pivot href=(links.pivot(field, value)) title=(format!("Only {name} {value}")) { (shown) }
            a.exclude href=(links.exclude(field, value)) title=(format!("Exclude {name} {value}"))
                aria-label=(format!("exclude {name} {value}")) { "−" }
        }
    }
}

fn time(secs: i64) -> Markup {
    let text = format_rfc3339(secs);
    html! { time datetime=(text) data-t=(secs) { (text) } }
}

fn user_label(e: &EventRow) -> String {
    match (&e.user_email, &e.user_name) {
        (Some(m), Some(n)) if !n.trim().is_empty() => format!("{n} <{m}>"),
        (Some(m), _) => m.clone(),
        (None, Some(n)) => n.clone(),
        (None, None) => e.user_id.map(|i| i.to_string()).unwrap_or_default(),
    }
}

/// The user cell: the e-mail address (or id) is what narrows.
fn user_value(links: &Links, e: &EventRow) -> Markup {
    let key = e.user_email.clone().or_else(|| e.user_id.map(|i| i.to_string()));
    match key {
        Some(k) => value(links, Field::User, &k, &user_label(e)),
        None => html! { (user_label(e)) },
    }
}

fn option_value(links: &Links, field: Field, v: Option<&str>) -> Markup {
    match v.filter(|v| !v.is_empty()) {
        Some(v) => value(links, field, v, v),
        None => html! {},
    }
}

fn form(typed: &Typed, invalid: Option<&str>, alert: Option<&str>, tz_local: bool) -> Markup {
    let cats: Vec<String> = typed.get(&["category"]).split(',').map(|c| c.trim().to_string()).collect();
    let bad = |name: &str| invalid == Some(name);
    html! {
        form #filters.filters method="get" action="/events" {
            @if let Some(a) = alert { input type="hidden" name="alert" value=(a); }
            @for (name, aliases, label, hint) in FORM_FIELDS {
                label.invalid[bad(name)] {
                    (label)
                    input name=(name) id=(format!("f-{name}")) value=(typed.get(aliases)) placeholder=(hint)
                        aria-invalid=[bad(name).then_some("true")] aria-describedby=[bad(name).then_some("error")];
                }
            }
            label.invalid[bad("category")] {
                "Category"
                select name="category" id="f-category" aria-invalid=[bad("category").then_some("true")] {
                    option value="" { "any" }
                    @for c in crate::catalog::Category::ALL {
                        option value=(c.as_str()) selected[cats.iter().any(|x| x == c.as_str())] { (c.as_str()) }
                    }
                }
            }
            label.wide.invalid[bad("q")] {
                "Search (/)"
                input name="q" id="f-q" value=(typed.get(&["q", "text"])) placeholder="words, \"phrase\", field:value, -exclude, a OR b"
                    accesskey="s" aria-invalid=[bad("q").then_some("true")] aria-describedby=[bad("q").then_some("error")];
            }
            label {
                "Times"
                select name="tz" id="f-tz" {
                    option value="" { "UTC" }
                    option value="local" selected[tz_local] { "local (browser)" }
                }
            }
            button type="submit" id="apply" { "Search" }
            " "
            a href="/events" { "Clear" }
        }
    }
}

fn heading(field: &str) -> &str {
    match field {
        "user" => "User",
        "operation" => "Operation",
        "ip" => "IP",
        "country" => "Country",
        "tenant" => "Tenant",
        "category" => "Category",
        other => other,
    }
}

fn top_values(links: &Links, facets: &[Facet]) -> Markup {
    html! {
        aside #top-values {
            h2 { "Top values" }
            @if let Some(f) = facets.first().filter(|f| !f.exact) {
                p.meta #top-sampled { "Counted over the newest " (f.total) " matching events." }
            }
            @for f in facets {
                section.facet id=(format!("top-{}", f.field)) {
                    h3 { (heading(f.field)) }
                    @if f.values.is_empty() {
                        p.meta { "none" }
                    }
                    ol {
                        @for v in &f.values {
                            @let field = Field::parse(f.field).expect("a facet field");
                            li { (value(links, field, &v.value, &v.value)) span.count { (v.count) } }
                        }
                    }
                    @if f.other > 0 { p.meta { (f.other) " in other values" } }
                }
            }
        }
    }
}

fn event_row(links: &Links, e: &EventRow) -> Markup {
    let description = crate::catalog::find(&e.operation_name).map_or("", |o| o.description);
    html! {
        details.event data-id=(e.id) data-seq=(e.seq) {
            summary.row {
                span { (time(e.created_at_secs)) }
                span { (value(links, Field::Tenant, &e.tenant, &e.tenant)) }
                span title=(description) { (value(links, Field::Operation, &e.operation_name, &e.operation_name)) }
                span { (user_value(links, e)) }
                span { (option_value(links, Field::Ip, e.request_ip.as_deref())) }
                span { (option_value(links, Field::Country, e.country.as_deref())) }
            }
            div.record {
                p.meta {
                    "Tines id " (e.id) " · journal seq " (e.seq) " · category "
                    (value(links, Field::Category, e.category, e.category))
                    " · " a.permalink href=(format!("/events/{}", e.seq)) { "Permalink" }
                }
                pre.raw { (pretty(&e.raw)) }
            }
        }
    }
}

fn pretty(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| raw.to_string())
}

/// A timeline: `(bucket start, count)` points over `[from, to)` in buckets of `bucket` seconds.
struct Hist {
    points: Vec<(i64, i64)>,
    from: i64,
    to: i64,
    bucket: i64,
}

struct Found {
    page: query::SearchPage,
    hist: Option<Hist>,
    facets: Vec<Facet>,
    behind: i64,
}

fn refused(typed: &Typed, q: Option<&Query>, message: &str, csrf: &str, status: StatusCode) -> Response {
    let alert = q.and_then(|q| q.alert.clone()).or_else(|| Some(typed.get(&["alert"])).filter(|a| !a.is_empty()));
    let tz_local = typed.get(&["tz"]) == "local";
    let body = html! {
        (form(typed, field_of(message), alert.as_deref(), tz_local))
        p.error #error role="alert" { (message) }
    };
    (status, page("Events", "Events", &body.into_string(), csrf)).into_response()
}

pub(super) async fn events(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let typed = Typed::parse(raw.as_deref());
    let q = match parse_query_for(raw.as_deref(), OWN) {
        Ok(q) => q,
        Err(e) => return refused(&typed, None, &e, &csrf, StatusCode::BAD_REQUEST),
    };
    let tz_local = match q.own.iter().find(|(k, _)| k == "tz").map(|(_, v)| v.as_str()) {
        None | Some("" | "utc" | "UTC") => false,
        Some("local") => true,
        Some(other) => {
            let msg = format!("tz: {other:?} is not a time zone choice; give utc or local");
            return refused(&typed, Some(&q), &msg, &csrf, StatusCode::BAD_REQUEST);
        }
    };
    let geo = state.geo.clone();
    let (filter, cursor, limit) = (q.filter.clone(), q.cursor, q.limit.unwrap_or(50));
    let result = state
        .journal
        .call(move |j| {
            let run = || -> Result<Found, query::SearchError> {
                let page = query::search(j, &filter, cursor, limit, geo.as_ref())?;
                let hist = match query::search::span(j, &filter, geo.as_ref())? {
                    Some((a, b)) => {
                        let (from, to) = (filter.from.unwrap_or(a), filter.to.unwrap_or(b + 1).min(now_secs() + 1));
                        let bucket = chart::bucket_for((to - from).max(1));
                        let from = from - from.rem_euclid(bucket);
                        let points = query::histogram(j, &filter, bucket, geo.as_ref())?;
                        Some(Hist { points, from, to: to.max(from + bucket), bucket })
                    }
                    None => None,
                };
                let facets = match hist {
                    Some(_) => {
                        let fields: Vec<Field> =
                            Field::LISTS.into_iter().filter(|f| *f != Field::Country || geo.available()).collect();
                        // One read of the newest matches counts every field.
                        query::facets::facets(j, &filter, &fields, TOP_VALUES, geo.as_ref())?
                    }
                    None => Vec::new(),
                };
                Ok(Found { page, hist, facets, behind: query::index::state(j)?.behind() })
            };
            Ok(run())
        })
        .await;
    let found = match result {
        Ok(Ok(v)) => v,
        Ok(Err(query::SearchError::Journal(e))) | Err(e) => {
            let msg = format!("search failed: {e}");
            return refused(&typed, Some(&q), &msg, &csrf, StatusCode::INTERNAL_SERVER_ERROR);
        }
        Ok(Err(e)) => return refused(&typed, Some(&q), &e.to_string(), &csrf, StatusCode::BAD_REQUEST),
    };
    let mut keep: Vec<(&'static str, String)> = Vec::new();
    if let Some(a) = &q.alert {
        keep.push(("alert", a.clone()));
    }
    if q.limit.is_some() {
        keep.push(("limit", limit.to_string()));
    }
    if tz_local {
        keep.push(("tz", "local".into()));
    }
    let links = Links { args: q.args.clone(), keep };
    let older = found.page.next_cursor.as_ref().map(|c| {
        let mut keep = links.keep.clone();
        keep.push(("cursor", c.clone()));
        Links { args: q.args.clone(), keep }.href(&q.args)
    });
    let body = html! {
        (form(&typed, None, q.alert.as_deref(), tz_local))
        details #tools {
            summary { "Save this search · compliance report for its tenants and period" }
            (PreEscaped(super::searches::save_form(raw.as_deref().unwrap_or(""), &csrf)))
            (PreEscaped(super::reports::report_link(&q.args)))
        }
        @if let Some(a) = &q.alert {
            p.meta #alert-filter { "The events of alert " code { (a) } ". " a href="/events" { "All events" } }
        }
        div #results.layout data-tz=(if tz_local { "local" } else { "utc" }) {
            div.main {
                div #histogram {
                    @match &found.hist {
                        Some(Hist { points, from, to, bucket }) => {
                            p.meta {
                                span #total { (points.iter().map(|p| p.1).sum::<i64>()) }
                                " matching events, " (time(*from)) " to " (time(*to)) " (" (age(*bucket)) " per bar; a bar zooms to its time) · download all: "
                                a #export-csv href=(links.export("csv")) { "CSV" } " · " a #export-ndjson href=(links.export("ndjson")) { "NDJSON" }
                            }
                            (super::timeline::chart(points, *from, *to, *bucket, |a, b| links.zoom(a, b)))
                        }
                        None => p.meta { span #total { "0" } " matching events" }
                    }
                }
                @if found.behind > 0 {
                    p.meta {
                        "The search index is " (found.behind) " events behind the journal: free text, names, networks, countries and categories do not see them yet."
                    }
                }
                @if found.page.events.is_empty() { p #empty { "No matching events." } }
                div #events {
                    div.row.head {
                        span { "Time (" span.tz-name { "UTC" } ")" }
                        span { "Tenant" } span { "Operation" } span { "User" } span { "IP" } span { "Country" }
                    }
                    @for e in &found.page.events { (event_row(&links, e)) }
                }
                p.pager {
                    @if q.cursor.is_some() { a #newest href=(links.href(&q.args)) accesskey="g" { "← Newest" } " " }
                    @if let Some(href) = &older { a #older href=(href) accesskey="n" { "Older →" } }
                    span.meta.keys { "Keys: / search · n older · p back · g newest" }
                }
            }
            @if !found.facets.is_empty() { (top_values(&links, &found.facets)) }
        }
    };
    page("Events", "Events", &body.into_string(), &csrf).into_response()
}

/// `GET /events/{seq}`: one event, linkable, with every value a search for it.
pub(super) async fn event(State(state): State<AppState>, headers: HeaderMap, Path(seq): Path<String>) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let not_found = |msg: String, status: StatusCode| {
        let body = html! { h1 { "Event" } p.error #error { (msg) } p { a href="/events" { "All events" } } };
        (status, page("Event", "Events", &body.into_string(), &csrf)).into_response()
    };
    let Some(seq) = seq.parse::<i64>().ok().filter(|s| *s > 0) else {
        return not_found(
            "an event's link is /events/SEQ, SEQ its journal sequence number".into(),
            StatusCode::BAD_REQUEST,
        );
    };
    let geo = state.geo.clone();
    let e = match state.journal.call(move |j| Ok(query::search::by_seq(j, seq, geo.as_ref()))).await {
        Ok(Ok(Some(e))) => e,
        Ok(Ok(None)) => {
            return not_found(
                format!("no event {seq} in the journal (never stored, or removed by retention)"),
                StatusCode::NOT_FOUND,
            );
        }
        Ok(Err(e)) => return not_found(format!("lookup failed: {e}"), StatusCode::INTERNAL_SERVER_ERROR),
        Err(e) => return not_found(format!("lookup failed: {e}"), StatusCode::INTERNAL_SERVER_ERROR),
    };
    let links = Links { args: FilterArgs::default(), keep: Vec::new() };
    let around = {
        let a = FilterArgs { tenant: vec![e.tenant.clone()], ..Default::default() };
        links.zoom_args(a, e.created_at_secs - 300, e.created_at_secs + 301)
    };
    let description = crate::catalog::find(&e.operation_name).map_or("", |o| o.description);
    let body = html! {
        h1 { "Event " (e.id) " of " (e.tenant) }
        table #facts {
            tr { th { "Time (UTC)" } td { (time(e.created_at_secs)) } }
            tr { th { "Tenant" } td { (value(&links, Field::Tenant, &e.tenant, &e.tenant)) } }
            tr { th { "Operation" } td { (value(&links, Field::Operation, &e.operation_name, &e.operation_name)) " " span.meta { (description) } } }
            tr { th { "Category" } td { (value(&links, Field::Category, e.category, e.category)) } }
            tr { th { "User" } td { (user_value(&links, &e)) } }
            tr { th { "IP" } td { (option_value(&links, Field::Ip, e.request_ip.as_deref())) } }
            tr { th { "Country" } td { (option_value(&links, Field::Country, e.country.as_deref())) } }
            tr { th { "Tines id" } td { (e.id) } }
            tr { th { "Journal seq" } td { (e.seq) } }
        }
        p {
            a #around href=(around) { "The tenant's events 5 minutes either side" }
            " · " a href=(format!("/api/v1/events/{}", e.seq)) { "As JSON" }
        }
        pre.raw { (pretty(&e.raw)) }
    };
    page(&format!("Event {}", e.id), "Events", &body.into_string(), &csrf).into_response()
}

impl Links {
    fn zoom_args(&self, args: FilterArgs, from: i64, to: i64) -> String {
        Links { args, keep: self.keep.clone() }.zoom(from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(pairs: &[(&str, &str)]) -> Links {
        let args = FilterArgs::from_pairs(pairs.iter().copied(), |_, _| false).unwrap();
        Links { args, keep: vec![("tz", "local".into())] }
    }

    fn params(href: &str) -> Vec<(String, String)> {
        let q = href.strip_prefix("/events?").unwrap();
        url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn a_pivot_replaces_the_fields_values_and_keeps_the_rest() {
        let l = links(&[("user", "a@x.io,b@x.io"), ("operation", "Login"), ("q", "user:c@x.io phishing")]);
        let p = params(&l.pivot(Field::User, "b@x.io"));
        assert!(p.contains(&("user".into(), "b@x.io".into())));
        assert!(p.contains(&("operation".into(), "Login".into())));
        assert!(p.contains(&("q".into(), "phishing".into())), "{p:?}");
        assert!(p.contains(&("tz".into(), "local".into())));
        assert_eq!(p.iter().filter(|(k, _)| k == "user").count(), 1);
        // A value with a comma goes into the search text, quoted, as the boxes split on commas.
        let p = params(&l.pivot(Field::User, "Doe, Jane"));
        assert!(!p.iter().any(|(k, _)| k == "user"), "{p:?}");
        assert!(p.contains(&("q".into(), "phishing user:\"Doe, Jane\"".into())), "{p:?}");
    }

    #[test]
    fn an_exclusion_adds_a_negated_clause_and_a_zoom_replaces_the_period() {
        let l = links(&[("ip", "10.0.0.0/8"), ("q", "from:2024-01-01 x")]);
        let p = params(&l.exclude(Field::Ip, "10.0.0.7"));
        assert!(p.contains(&("q".into(), "from:2024-01-01 x -ip:10.0.0.7".into())), "{p:?}");
        assert!(p.contains(&("ip".into(), "10.0.0.0/8".into())));
        let p = params(&l.zoom(86_400, 2 * 86_400));
        assert!(p.contains(&("from".into(), "1970-01-02T00:00:00Z".into())), "{p:?}");
        assert!(p.contains(&("to".into(), "1970-01-03T00:00:00Z".into())));
        assert!(p.contains(&("q".into(), "x".into())), "the period is given once: {p:?}");
        // The zoomed search is valid.
        let pairs: Vec<(&str, &str)> =
            p.iter().filter(|(k, _)| k != "tz").map(|(k, v)| (k.as_str(), v.as_str())).collect();
        FilterArgs::from_pairs(pairs, |_, _| false).unwrap().build(10 * 86_400).unwrap();
    }

    #[test]
    fn an_error_names_the_field_it_is_about() {
        assert_eq!(field_of("from: invalid time \"x\""), Some("from"));
        assert_eq!(field_of("q (user:x): …"), Some("q"));
        assert_eq!(field_of("unknown operation \"Nope\"; did you mean"), Some("operation"));
        assert_eq!(field_of("ip: \"x\" is not an IP address"), Some("ip"));
        assert_eq!(field_of("search failed: disk"), None);
    }
}
