//! The console's alert pages, server-rendered and without script: `/alerts` (filters,
//! severity colour, repeats grouped, keyset pages past any count) and `/alerts/{id}` (what
//! happened, the events that made the alert, its rule with its Sigma text, its history, and
//! for analysts a triage form that posts to `/alerts/{id}/triage` with the CSRF token and
//! comes back). Rendered with `maud`, which escapes every value from a record, a rule or a
//! person by construction.

use axum::extract::{Form, Path, RawQuery, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::{
    AlertParams, DEFAULT_PAGE, LEVELS, MAX_ASSIGNEE, MAX_NOTE, ParamError, RuleBook, encode_cursor, parse_change,
    parse_params, path_segment, said,
};
use crate::journal::{AlertChange, AlertCounts, AlertGroup, AlertStatus, TriagedAlert};
use crate::query::{self, EventFilter};
use crate::timeutil::{format_rfc3339, now_secs};
use crate::web::AppState;
use crate::web::auth::Role;
use crate::web::console::page;

fn login_redirect() -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, "/login")]).into_response()
}

/// A page of the Alerts section with `body` as its content.
fn alerts_page(title: &str, body: Markup, csrf: &str) -> axum::response::Html<String> {
    page(title, "Alerts", &body.into_string(), csrf)
}

fn query_string(pairs: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A level badge, coloured by severity (an unknown level gets the plain badge).
fn level_badge(level: &str) -> Markup {
    let class = if LEVELS.contains(&level) { level } else { "unknown" };
    let shown = if level.is_empty() { "—" } else { level };
    html! { span class={ "badge level-" (class) } { (shown) } }
}

fn status_badge(s: AlertStatus) -> Markup {
    html! { span class={ "badge status-" (s.as_str()) } { (s.as_str()) } }
}

/// The group's values as `field=value` pairs (the JSON as stored when it is not an object).
fn group_text(group: &serde_json::Value) -> String {
    match group {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn alert_href(id: &str) -> String {
    format!("/alerts/{}", path_segment(id))
}

fn events_href(id: &str) -> String {
    format!("/events?{}", query_string(&[("alert", id.to_string())]))
}

fn select(name: &str, label: &str, options: &[&str], chosen: &[String]) -> Markup {
    html! {
        label {
            (label)
            select name=(name) id={ "f-" (name) } {
                option value="" { "any" }
                @for o in options {
                    option value=(o) selected[chosen.iter().any(|c| c.eq_ignore_ascii_case(o))] { (o) }
                }
            }
        }
    }
}

fn input(name: &str, label: &str, value: &str, hint: &str, list: Option<&str>) -> Markup {
    html! { label { (label) input name=(name) id={ "f-" (name) } value=(value) placeholder=(hint) list=[list]; } }
}

fn datalist(id: &str, values: &[&str]) -> Markup {
    html! { datalist id=(id) { @for v in values { option value=(v); } } }
}

fn filter_form(p: &AlertParams, rules: &RuleBook, tenants: &[String]) -> Markup {
    let statuses: Vec<&str> = AlertStatus::ALL.iter().map(|s| s.as_str()).collect();
    let tenants: Vec<&str> = tenants.iter().map(String::as_str).collect();
    html! {
        form id="alert-filters" method="get" action="/alerts" class="filters" {
            @if let Some(g) = &p.group_key { input type="hidden" name="group_key" value=(g); }
            (select("status", "Status", &statuses, &p.status))
            (select("level", "Level", &LEVELS, &p.level))
            (input("rule", "Rule", &p.rule.join(", "), "rule id", Some("rule-ids")))
            (input("tenant", "Tenant", &p.tenant.join(", "), "any", Some("tenant-names")))
            (input("from", "From", p.from.as_deref().unwrap_or(""), "30d or 2024-05-01", None))
            (input("to", "To", p.to.as_deref().unwrap_or(""), "now", None))
            label.check {
                input type="checkbox" name="group" value="true" id="f-group" checked[p.grouped];
                " Group repeats"
            }
            button type="submit" id="apply" { "Filter" }
            " "
            a href="/alerts" { "Clear" }
            (datalist("rule-ids", &rules.ids()))
            (datalist("tenant-names", &tenants))
        }
    }
}

/// The alert list: `?status=…&level=…&rule=…&tenant=…&from=…&to=…&group=true&cursor=…`.
pub async fn list(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let (params, parsed) = parse_params(raw.as_deref(), now_secs());
    let form = filter_form(&params, &state.rules, &state.tenants);
    // Every answer is the heading and the form, then what the query gave.
    let show = |rest: Markup| alerts_page("Alerts", html! { h1 { "Alerts" } (form) (rest) }, &csrf);
    let q = match parsed {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, show(html! { p.error #error { (e.to_string()) } })).into_response(),
    };
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    let grouped = params.grouped;
    let answer = state
        .journal
        .call(move |j| {
            let counts = j.count_alerts(&q)?;
            let rows = if grouped { Err(j.alert_groups(&q, limit + 1)?) } else { Ok(j.find_alerts(&q, limit + 1)?) };
            Ok((counts, rows))
        })
        .await;
    let (counts, rows) = match answer {
        Ok(v) => v,
        Err(e) => {
            let rest = html! { p.error { "the journal could not answer: " (e.to_string()) } };
            return (StatusCode::INTERNAL_SERVER_ERROR, show(rest)).into_response();
        }
    };
    let AlertCounts { alerts: total, groups } = counts;
    if !state.rules.detection && total == 0 && params == AlertParams::default() {
        return show(html! {
            p #no-detection {
                "Detection is not enabled on this journal: no alert has ever been raised here. Configure "
                code { "[detect]" } " to have rules watch the events."
            }
        })
        .into_response();
    }
    let (table, next) = match rows {
        Ok(mut alerts) => {
            let more = alerts.len() > limit;
            alerts.truncate(limit);
            let next = alerts.last().filter(|_| more).map(|a| encode_cursor(a.alert.event_time, a.alert.seq));
            let table = (!alerts.is_empty()).then(|| alert_table(&alerts, &state.rules));
            (table, next)
        }
        Err(mut list) => {
            let more = list.len() > limit;
            list.truncate(limit);
            let next =
                list.last().filter(|_| more).map(|g| encode_cursor(g.newest.alert.event_time, g.newest.alert.seq));
            let table = (!list.is_empty()).then(|| group_table(&list, &state.rules, &params));
            (table, next)
        }
    };
    let pairs = params.to_pairs();
    let older = next.map(|c| {
        let mut pairs = pairs.clone();
        pairs.push(("cursor", c));
        query_string(&pairs)
    });
    show(html! {
        p.meta #alert-count {
            span #total { (total) } " matching alert" (if total == 1 { "" } else { "s" })
            " in " span #groups { (groups) } " group" (if groups == 1 { "" } else { "s" })
            " of repeats (one rule, tenant and group)."
        }
        @if let Some(g) = &params.group_key {
            p.meta #group-filter { "Repeats of group " code { (g) } ". " a href="/alerts" { "All alerts" } }
        }
        @match table {
            Some(t) => { (t) }
            None => { p #no-alerts { "No alert matches." } }
        }
        p.pager {
            @if params.cursor.is_some() {
                a href={ "/alerts?" (query_string(&pairs)) } id="newest" { "← Newest" } " "
            }
            @if let Some(q) = older { a href={ "/alerts?" (q) } id="older" { "Older →" } }
        }
    })
    .into_response()
}

fn alert_table(alerts: &[TriagedAlert], rules: &RuleBook) -> Markup {
    html! {
        table #alerts {
            tr {
                th { "Level" } th { "Status" } th { "Event time" } th { "Raised" } th { "Rule" } th { "Summary" }
                th { "Tenant" } th { "Assignee" } th { "Events" }
            }
            @for a in alerts {
                @let s = said(a, rules);
                @let class = if LEVELS.contains(&s.level.as_str()) { s.level.as_str() } else { "unknown" };
                tr class={ "alert level-" (class) " status-" (a.status.as_str()) } data-id=(a.alert.id) {
                    td { (level_badge(&s.level)) }
                    td { (status_badge(a.status)) }
                    td { (format_rfc3339(a.alert.event_time)) }
                    td { (format_rfc3339(a.alert.raised_at)) }
                    td title=(a.alert.rule_id) { a.open href=(alert_href(&a.alert.id)) { (s.title) } }
                    td { (s.summary) }
                    td { (a.alert.tenant) }
                    td { (a.assignee.as_deref().unwrap_or("")) }
                    // The alert's own events, not a time range around it.
                    td { a.events href=(events_href(&a.alert.id)) { (a.linked_events) } }
                }
            }
        }
    }
}

fn group_table(groups: &[AlertGroup], rules: &RuleBook, params: &AlertParams) -> Markup {
    html! {
        table #alert-groups {
            tr {
                th { "Level" } th { "Rule" } th { "Tenant" } th { "Group" } th { "Alerts" } th { "Open" }
                th { "First event" } th { "Last event" } th { "Newest" }
            }
            @for g in groups {
                @let a = &g.newest;
                @let s = said(a, rules);
                @let class = if LEVELS.contains(&s.level.as_str()) { s.level.as_str() } else { "unknown" };
                // The group's alerts, one by one, under the same filters.
                @let members = AlertParams {
                    rule: vec![a.alert.rule_id.clone()],
                    tenant: vec![a.alert.tenant.clone()],
                    group_key: Some(a.group_key.clone()),
                    grouped: false,
                    cursor: None,
                    ..params.clone()
                };
                tr class={ "group level-" (class) } {
                    td { (level_badge(&s.level)) }
                    td title=(a.alert.rule_id) { (s.title) }
                    td { (a.alert.tenant) }
                    td { (group_text(&s.group)) }
                    td { a.members href={ "/alerts?" (query_string(&members.to_pairs())) } { (g.count) } }
                    td { (g.open) }
                    td { (format_rfc3339(g.first_event_time)) }
                    td { (format_rfc3339(a.alert.event_time)) }
                    td { (status_badge(a.status)) " " a.open href=(alert_href(&a.alert.id)) { "details" } }
                }
            }
        }
    }
}

/// What the detail page shows besides the alert: its first events, its history, and a
/// form error with what was typed.
struct Detail {
    alert: TriagedAlert,
    history: Vec<AlertChange>,
    events: Result<query::SearchPage, String>,
}

/// Events shown on the detail page; the rest are a click away in the event search.
const DETAIL_EVENTS: usize = 50;

async fn load_detail(state: &AppState, id: &str) -> Result<Option<Detail>, String> {
    let geo = state.geo.clone();
    let key = id.to_string();
    state
        .journal
        .call(move |j| {
            let Some(alert) = j.alert_by_id(&key)? else { return Ok(None) };
            let history = j.alert_history(alert.alert.seq)?;
            let filter = EventFilter { alert: Some(key.clone()), ..Default::default() };
            let events = query::search(j, &filter, None, DETAIL_EVENTS, geo.as_ref()).map_err(|e| e.to_string());
            Ok(Some(Detail { alert, history, events }))
        })
        .await
        .map_err(|e| e.to_string())
}

/// What the form had, shown again with the error that refused it.
struct FormEcho<'a> {
    error: &'a str,
    status: Option<&'a str>,
    assignee: Option<&'a str>,
    note: &'a str,
}

fn render_detail(state: &AppState, headers: &HeaderMap, d: &Detail, echo: Option<&FormEcho<'_>>) -> Markup {
    let a = &d.alert;
    let s = said(a, &state.rules);
    let last = match (a.triaged_at, &a.triaged_by) {
        (Some(t), Some(by)) => format!("{} by {by}", format_rfc3339(t)),
        _ => "never".into(),
    };
    let repeats = query_string(&[
        ("rule", a.alert.rule_id.clone()),
        ("tenant", a.alert.tenant.clone()),
        ("group_key", a.group_key.clone()),
    ]);
    html! {
        p.meta { a href="/alerts" { "← Alerts" } }
        h1 #alert-title { (level_badge(&s.level)) " " (s.title) }
        p #alert-state {
            (status_badge(a.status)) " "
            @match &a.assignee {
                Some(x) => { "assigned to " b { (x) } }
                None => { "unassigned" }
            }
        }
        p #summary { (s.summary) }
        table #facts {
            tr { th { "Alert" } td { code { (a.alert.id) } } }
            tr { th { "Rule" } td { code { (a.alert.rule_id) } } }
            tr { th { "Tenant" } td { (a.alert.tenant) } }
            tr {
                th { "Group" }
                td { (group_text(&s.group)) " " a href={ "/alerts?" (repeats) } id="repeats" { "all repeats" } }
            }
            tr { th { "Event time" } td { (format_rfc3339(a.alert.event_time)) } }
            tr { th { "Raised" } td { (format_rfc3339(a.alert.raised_at)) } }
            tr { th { "Last change" } td { (last) } }
        }
        (rule_section(state, a, &s.description))
        (events_section(a, &d.events))
        (history_section(&d.history))
        (triage_section(state, headers, a, echo))
    }
}

/// The rule: what it is for, and its Sigma text one click away.
fn rule_section(state: &AppState, a: &TriagedAlert, description: &str) -> Markup {
    html! {
        h2 #rule { "Rule" }
        @if description.is_empty() {
            p id="rule-description" class="meta" { "The rule has no description." }
        } @else {
            p #rule-description { (description) }
        }
        @match state.rules.get(&a.alert.rule_id) {
            Some(r) => {
                details #sigma {
                    summary {
                        "Sigma rule " code { (r.id) } " from " (r.file)
                        @if !state.rules.detection { " (shipped pack; detection is off in this configuration)" }
                    }
                    pre.raw { (r.sigma) }
                }
            }
            None => {
                p id="sigma-missing" class="meta" {
                    "The rule is not among the loaded rules (removed or renamed since this alert was raised): "
                    "the title, level and description above are what the alert recorded."
                }
            }
        }
    }
}

/// The events that made the alert.
fn events_section(a: &TriagedAlert, events: &Result<query::SearchPage, String>) -> Markup {
    let href = events_href(&a.alert.id);
    html! {
        h2 #events-heading { "Events" }
        p.meta {
            (a.linked_events) " events made this alert. "
            a href=(href) id="all-events" { "Open them in the event search" }
        }
        @match events {
            Ok(page) if page.events.is_empty() => {
                p id="no-events" class="meta" {
                    "None of them is in the journal any more: retention deleted them once every alert output had "
                    "delivered the alert."
                }
            }
            Ok(page) => {
                @if (page.events.len() as i64) < a.linked_events && page.next_cursor.is_none() {
                    p.meta #events-pruned {
                        (a.linked_events - page.events.len() as i64)
                        " of them are no longer in the journal (retention)."
                    }
                }
                table #alert-events {
                    tr {
                        th { "Time (UTC)" } th { "Operation" } th { "User" } th { "IP" } th { "Country" }
                        th { "Record" }
                    }
                    @for e in &page.events {
                        tr data-id=(e.id) {
                            td { (e.created_at) }
                            td { (e.operation_name) }
                            td { (event_user(e)) }
                            td { (e.request_ip.as_deref().unwrap_or("")) }
                            td { (e.country.as_deref().unwrap_or("")) }
                            td { details { summary { "Tines id " (e.id) } pre.raw { (pretty(&e.raw)) } } }
                        }
                    }
                }
                @if page.next_cursor.is_some() {
                    p.meta {
                        "The first " (DETAIL_EVENTS) " are shown; " a href=(href) { "the event search has them all" } "."
                    }
                }
            }
            Err(e) => { p.error { "reading the alert's events failed: " (e) } }
        }
    }
}

fn event_user(e: &query::EventRow) -> String {
    match (&e.user_email, &e.user_name) {
        (Some(m), Some(n)) if !n.trim().is_empty() => format!("{n} <{m}>"),
        (Some(m), _) => m.clone(),
        (None, Some(n)) => n.clone(),
        (None, None) => String::new(),
    }
}

fn pretty(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| raw.to_string())
}

/// Who did what, oldest first.
fn history_section(history: &[AlertChange]) -> Markup {
    let who = |x: &Option<String>| x.clone().unwrap_or_else(|| "—".to_string());
    html! {
        h2 { "History" }
        @if history.is_empty() {
            p id="no-history" class="meta" { "Nobody has triaged this alert yet." }
        } @else {
            table #history {
                tr { th { "When (UTC)" } th { "Who" } th { "Status" } th { "Assignee" } th { "Note" } }
                @for c in history {
                    tr.change {
                        td { (format_rfc3339(c.at)) }
                        td.who { (c.by) }
                        td {
                            @if c.from_status == c.to_status { (c.to_status.as_str()) }
                            @else { (c.from_status) " → " (c.to_status) }
                        }
                        td {
                            @if c.from_assignee == c.to_assignee { (who(&c.to_assignee)) }
                            @else { (who(&c.from_assignee)) " → " (who(&c.to_assignee)) }
                        }
                        td.note { (c.note) }
                    }
                }
            }
        }
    }
}

/// Triage, for analysts: the form (with what was typed and why it was refused, when it was).
fn triage_section(state: &AppState, headers: &HeaderMap, a: &TriagedAlert, echo: Option<&FormEcho<'_>>) -> Markup {
    let current = echo.and_then(|e| e.status).unwrap_or(a.status.as_str());
    let assignee = echo.and_then(|e| e.assignee).or(a.assignee.as_deref()).unwrap_or("");
    let note = echo.map_or("", |e| e.note);
    html! {
        h2 { "Triage" }
        @match state.auth.identity(headers) {
            Some(me) if me.role == Role::Analyst => {
                @if let Some(e) = echo { p.error #error { (e.error) } }
                form id="triage" method="post" action={ (alert_href(&a.alert.id)) "/triage" } class="filters" {
                    input type="hidden" name="csrf" value=(state.auth.csrf_token(headers).unwrap_or_default());
                    label {
                        "Status"
                        select name="status" id="t-status" {
                            @for st in AlertStatus::ALL {
                                @let chosen = st.as_str().eq_ignore_ascii_case(current);
                                option value=(st.as_str()) selected[chosen] { (st.as_str()) }
                            }
                        }
                    }
                    label {
                        "Assignee"
                        input name="assignee" id="t-assignee" value=(assignee) maxlength=(MAX_ASSIGNEE)
                            placeholder="nobody";
                    }
                    label.wide {
                        "Note"
                        textarea name="note" id="t-note" rows="3" maxlength=(MAX_NOTE) placeholder="why" { (note) }
                    }
                    button type="submit" id="t-save" { "Save" }
                    span.meta { "Saved as " (me.name) "." }
                }
            }
            Some(me) => {
                p id="triage-viewer" class="meta" {
                    (me.name) " has the viewer role: alerts can be read, not triaged. Triage needs the analyst role."
                }
            }
            None => {}
        }
    }
}

pub async fn detail(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    match load_detail(&state, &id).await {
        Ok(Some(d)) => {
            alerts_page(&format!("Alert {id}"), render_detail(&state, &headers, &d, None), &csrf).into_response()
        }
        Ok(None) => not_found(&id, &csrf),
        Err(e) => {
            let body = html! { p.error { "the journal could not answer: " (e) } };
            (StatusCode::INTERNAL_SERVER_ERROR, alerts_page("Alert", body, &csrf)).into_response()
        }
    }
}

fn not_found(id: &str, csrf: &str) -> Response {
    let body = html! {
        h1 { "No such alert" }
        p.error #error { "No alert has id " code { (id) } "." }
        p { a href="/alerts" { "All alerts" } }
    };
    (StatusCode::NOT_FOUND, alerts_page("Alert", body, csrf)).into_response()
}

#[derive(serde::Deserialize)]
pub struct TriageForm {
    csrf: Option<String>,
    status: Option<String>,
    assignee: Option<String>,
    note: Option<String>,
}

/// The triage form: HTML forms cannot PATCH, so it posts here and is sent back to the alert.
pub async fn triage(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TriageForm>,
) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let who = match super::api::analyst(&state, &headers, form.csrf.as_deref()) {
        Ok(w) => w,
        Err((code, message)) => {
            let body = html! {
                h1 { "Not saved" }
                p.error #error { (message) }
                p { a href=(alert_href(&id)) { "Back to the alert" } }
            };
            return (code, alerts_page("Alert", body, &csrf)).into_response();
        }
    };
    let note = form.note.as_deref().unwrap_or("");
    // The form always sends the assignee field: empty means nobody.
    let change =
        parse_change(form.status.as_deref().filter(|s| !s.is_empty()), form.assignee.as_deref().map(Some), Some(note));
    let change = match change {
        Ok(c) => c,
        // Nothing changed and nothing said: back to the alert as it was.
        Err(ParamError { field: "body", .. }) => {
            return (StatusCode::SEE_OTHER, [(LOCATION, alert_href(&id))]).into_response();
        }
        Err(e) => {
            return match load_detail(&state, &id).await {
                Ok(Some(d)) => {
                    let message = e.to_string();
                    let echo = FormEcho {
                        error: &message,
                        status: form.status.as_deref(),
                        assignee: form.assignee.as_deref(),
                        note,
                    };
                    let body = render_detail(&state, &headers, &d, Some(&echo));
                    (StatusCode::BAD_REQUEST, alerts_page(&format!("Alert {id}"), body, &csrf)).into_response()
                }
                Ok(None) => not_found(&id, &csrf),
                Err(e) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, format!("the journal could not answer: {e}\n")).into_response()
                }
            };
        }
    };
    let key = id.clone();
    let done = state.journal.call(move |j| Ok(super::apply(j, &key, &change, &who.name)?.is_some())).await;
    match done {
        Ok(true) => (StatusCode::SEE_OTHER, [(LOCATION, format!("{}#history", alert_href(&id)))]).into_response(),
        Ok(false) => not_found(&id, &csrf),
        Err(e) => {
            let body = html! { p.error { "not saved: " (e.to_string()) } };
            (StatusCode::INTERNAL_SERVER_ERROR, alerts_page("Alert", body, &csrf)).into_response()
        }
    }
}
