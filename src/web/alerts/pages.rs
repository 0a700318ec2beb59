//! The console's alert pages, server-rendered and without script: `/alerts` (filters,
//! severity colour, repeats grouped, keyset pages past any count) and `/alerts/{id}` (what
//! happened, the events that made the alert, its rule with its Sigma text, its history, and
//! for analysts a triage form that posts to `/alerts/{id}/triage` with the CSRF token and
//! comes back). Every value from a record, a rule or a person is escaped.

use std::fmt::Write;

use axum::extract::{Form, Path, RawQuery, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{
    AlertParams, DEFAULT_PAGE, LEVELS, MAX_ASSIGNEE, MAX_NOTE, ParamError, RuleBook, encode_cursor, parse_change,
    parse_params, path_segment, said,
};
use crate::journal::{AlertChange, AlertCounts, AlertGroup, AlertStatus, TriagedAlert};
use crate::query::{self, EventFilter};
use crate::timeutil::{format_rfc3339, now_secs};
use crate::web::auth::Role;
use crate::web::console::page;
use crate::web::{AppState, html_escape as esc};

fn login_redirect() -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, "/login")]).into_response()
}

fn query_string(pairs: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A level badge, coloured by severity (an unknown level gets the plain badge).
fn level_badge(level: &str) -> String {
    let class = if LEVELS.contains(&level) { level } else { "unknown" };
    let shown = if level.is_empty() { "—" } else { level };
    format!("<span class=\"badge level-{class}\">{}</span>", esc(shown))
}

fn status_badge(s: AlertStatus) -> String {
    format!("<span class=\"badge status-{0}\">{0}</span>", s.as_str())
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

fn select(name: &str, label: &str, options: &[&str], chosen: &[String]) -> String {
    let mut out = format!("<label>{label}<select name=\"{name}\" id=\"f-{name}\"><option value=\"\">any</option>");
    for o in options {
        let sel = if chosen.iter().any(|c| c.eq_ignore_ascii_case(o)) { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{o}\"{sel}>{o}</option>");
    }
    out.push_str("</select></label>");
    out
}

fn input(name: &str, label: &str, value: &str, hint: &str, list: Option<&str>) -> String {
    let list = list.map_or(String::new(), |l| format!(" list=\"{l}\""));
    format!(
        "<label>{label}<input name=\"{name}\" id=\"f-{name}\" value=\"{}\" placeholder=\"{}\"{list}></label>",
        esc(value),
        esc(hint)
    )
}

fn datalist(id: &str, values: &[&str]) -> String {
    let mut out = format!("<datalist id=\"{id}\">");
    for v in values {
        let _ = write!(out, "<option value=\"{}\">", esc(v));
    }
    out.push_str("</datalist>");
    out
}

fn filter_form(p: &AlertParams, rules: &RuleBook, tenants: &[String]) -> String {
    let statuses: Vec<&str> = AlertStatus::ALL.iter().map(|s| s.as_str()).collect();
    let tenants: Vec<&str> = tenants.iter().map(String::as_str).collect();
    let checked = if p.grouped { " checked" } else { "" };
    let group_key = p
        .group_key
        .as_deref()
        .map_or(String::new(), |g| format!("<input type=\"hidden\" name=\"group_key\" value=\"{}\">", esc(g)));
    format!(
        "<form id=\"alert-filters\" method=\"get\" action=\"/alerts\" class=\"filters\">{group_key}{}{}{}{}{}{}<label class=\"check\"><input type=\"checkbox\" name=\"group\" value=\"true\" id=\"f-group\"{checked}> Group repeats</label><button type=\"submit\" id=\"apply\">Filter</button> <a href=\"/alerts\">Clear</a>{}{}</form>",
        select("status", "Status", &statuses, &p.status),
        select("level", "Level", &LEVELS, &p.level),
        input("rule", "Rule", &p.rule.join(", "), "rule id", Some("rule-ids")),
        input("tenant", "Tenant", &p.tenant.join(", "), "any", Some("tenant-names")),
        input("from", "From", p.from.as_deref().unwrap_or(""), "30d or 2024-05-01", None),
        input("to", "To", p.to.as_deref().unwrap_or(""), "now", None),
        datalist("rule-ids", &rules.ids()),
        datalist("tenant-names", &tenants),
    )
}

/// The alert list: `?status=…&level=…&rule=…&tenant=…&from=…&to=…&group=true&cursor=…`.
pub async fn list(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let mut body = String::from("<h1>Alerts</h1>");
    let (params, parsed) = parse_params(raw.as_deref(), now_secs());
    body.push_str(&filter_form(&params, &state.rules, &state.tenants));
    let q = match parsed {
        Ok(q) => q,
        Err(e) => {
            let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", esc(&e.to_string()));
            return (StatusCode::BAD_REQUEST, page("Alerts", "Alerts", &body, &csrf)).into_response();
        }
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
            let _ = write!(body, "<p class=\"error\">the journal could not answer: {}</p>", esc(&e.to_string()));
            return (StatusCode::INTERNAL_SERVER_ERROR, page("Alerts", "Alerts", &body, &csrf)).into_response();
        }
    };
    let AlertCounts { alerts: total, groups } = counts;
    if !state.rules.detection && total == 0 && params == AlertParams::default() {
        body.push_str(
            "<p id=\"no-detection\">Detection is not enabled on this journal: no alert has ever been raised here. Configure <code>[detect]</code> to have rules watch the events.</p>",
        );
        return page("Alerts", "Alerts", &body, &csrf).into_response();
    }
    let _ = write!(
        body,
        "<p class=\"meta\" id=\"alert-count\"><span id=\"total\">{total}</span> matching alert{} in <span id=\"groups\">{groups}</span> group{} of repeats (one rule, tenant and group).</p>",
        if total == 1 { "" } else { "s" },
        if groups == 1 { "" } else { "s" }
    );
    if let Some(g) = &params.group_key {
        let _ = write!(
            body,
            "<p class=\"meta\" id=\"group-filter\">Repeats of group <code>{}</code>. <a href=\"/alerts\">All alerts</a></p>",
            esc(g)
        );
    }
    let next = match rows {
        Ok(mut alerts) => {
            let more = alerts.len() > limit;
            alerts.truncate(limit);
            if alerts.is_empty() {
                body.push_str("<p id=\"no-alerts\">No alert matches.</p>");
            } else {
                alert_table(&mut body, &alerts, &state.rules);
            }
            alerts.last().filter(|_| more).map(|a| encode_cursor(a.alert.event_time, a.alert.seq))
        }
        Err(mut list) => {
            let more = list.len() > limit;
            list.truncate(limit);
            if list.is_empty() {
                body.push_str("<p id=\"no-alerts\">No alert matches.</p>");
            } else {
                group_table(&mut body, &list, &state.rules, &params);
            }
            list.last().filter(|_| more).map(|g| encode_cursor(g.newest.alert.event_time, g.newest.alert.seq))
        }
    };
    let mut pairs = params.to_pairs();
    body.push_str("<p class=\"pager\">");
    if params.cursor.is_some() {
        let _ = write!(body, "<a href=\"/alerts?{}\" id=\"newest\">← Newest</a> ", esc(&query_string(&pairs)));
    }
    if let Some(c) = next {
        pairs.push(("cursor", c));
        let _ = write!(body, "<a href=\"/alerts?{}\" id=\"older\">Older →</a>", esc(&query_string(&pairs)));
    }
    body.push_str("</p>");
    page("Alerts", "Alerts", &body, &csrf).into_response()
}

fn alert_table(body: &mut String, alerts: &[TriagedAlert], rules: &RuleBook) {
    body.push_str("<table id=\"alerts\"><tr><th>Level</th><th>Status</th><th>Event time</th><th>Raised</th><th>Rule</th><th>Summary</th><th>Tenant</th><th>Assignee</th><th>Events</th></tr>");
    for a in alerts {
        let s = said(a, rules);
        let class = if LEVELS.contains(&s.level.as_str()) { s.level.as_str() } else { "unknown" };
        let _ = write!(
            body,
            "<tr class=\"alert level-{class} status-{}\" data-id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td title=\"{}\"><a class=\"open\" href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td><a class=\"events\" href=\"{}\">{}</a></td></tr>",
            a.status.as_str(),
            esc(&a.alert.id),
            level_badge(&s.level),
            status_badge(a.status),
            format_rfc3339(a.alert.event_time),
            format_rfc3339(a.alert.raised_at),
            esc(&a.alert.rule_id),
            esc(&alert_href(&a.alert.id)),
            esc(&s.title),
            esc(&s.summary),
            esc(&a.alert.tenant),
            esc(a.assignee.as_deref().unwrap_or("")),
            // The alert's own events, not a time range around it.
            esc(&events_href(&a.alert.id)),
            a.linked_events
        );
    }
    body.push_str("</table>");
}

fn group_table(body: &mut String, groups: &[AlertGroup], rules: &RuleBook, params: &AlertParams) {
    body.push_str("<table id=\"alert-groups\"><tr><th>Level</th><th>Rule</th><th>Tenant</th><th>Group</th><th>Alerts</th><th>Open</th><th>First event</th><th>Last event</th><th>Newest</th></tr>");
    for g in groups {
        let a = &g.newest;
        let s = said(a, rules);
        let class = if LEVELS.contains(&s.level.as_str()) { s.level.as_str() } else { "unknown" };
        // The group's alerts, one by one, under the same filters.
        let members = AlertParams {
            rule: vec![a.alert.rule_id.clone()],
            tenant: vec![a.alert.tenant.clone()],
            group_key: Some(a.group_key.clone()),
            grouped: false,
            cursor: None,
            ..params.clone()
        };
        let _ = write!(
            body,
            "<tr class=\"group level-{class}\"><td>{}</td><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td><a class=\"members\" href=\"/alerts?{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{} <a class=\"open\" href=\"{}\">details</a></td></tr>",
            level_badge(&s.level),
            esc(&a.alert.rule_id),
            esc(&s.title),
            esc(&a.alert.tenant),
            esc(&group_text(&s.group)),
            esc(&query_string(&members.to_pairs())),
            g.count,
            g.open,
            format_rfc3339(g.first_event_time),
            format_rfc3339(a.alert.event_time),
            status_badge(a.status),
            esc(&alert_href(&a.alert.id))
        );
    }
    body.push_str("</table>");
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

fn render_detail(state: &AppState, headers: &HeaderMap, d: &Detail, echo: Option<&FormEcho<'_>>) -> String {
    let a = &d.alert;
    let s = said(a, &state.rules);
    let mut body = String::new();
    let _ = write!(
        body,
        "<p class=\"meta\"><a href=\"/alerts\">← Alerts</a></p><h1 id=\"alert-title\">{} {}</h1><p id=\"alert-state\">{} {}</p><p id=\"summary\">{}</p>",
        level_badge(&s.level),
        esc(&s.title),
        status_badge(a.status),
        a.assignee.as_deref().map_or("unassigned".to_string(), |x| format!("assigned to <b>{}</b>", esc(x))),
        esc(&s.summary)
    );
    let last = match (a.triaged_at, &a.triaged_by) {
        (Some(t), Some(by)) => format!("{} by {}", format_rfc3339(t), esc(by)),
        _ => "never".into(),
    };
    let _ = write!(
        body,
        "<table id=\"facts\"><tr><th>Alert</th><td><code>{}</code></td></tr><tr><th>Rule</th><td><code>{}</code></td></tr><tr><th>Tenant</th><td>{}</td></tr><tr><th>Group</th><td>{} <a href=\"/alerts?{}\" id=\"repeats\">all repeats</a></td></tr><tr><th>Event time</th><td>{}</td></tr><tr><th>Raised</th><td>{}</td></tr><tr><th>Last change</th><td>{last}</td></tr></table>",
        esc(&a.alert.id),
        esc(&a.alert.rule_id),
        esc(&a.alert.tenant),
        esc(&group_text(&s.group)),
        esc(&query_string(&[
            ("rule", a.alert.rule_id.clone()),
            ("tenant", a.alert.tenant.clone()),
            ("group_key", a.group_key.clone())
        ])),
        format_rfc3339(a.alert.event_time),
        format_rfc3339(a.alert.raised_at),
    );

    // The rule: what it is for, and its Sigma text one click away.
    body.push_str("<h2 id=\"rule\">Rule</h2>");
    if s.description.is_empty() {
        body.push_str("<p id=\"rule-description\" class=\"meta\">The rule has no description.</p>");
    } else {
        let _ = write!(body, "<p id=\"rule-description\">{}</p>", esc(&s.description));
    }
    match state.rules.get(&a.alert.rule_id) {
        Some(r) => {
            let running = if state.rules.detection { "" } else { " (shipped pack; detection is off in this configuration)" };
            let _ = write!(
                body,
                "<details id=\"sigma\"><summary>Sigma rule <code>{}</code> from {}{running}</summary><pre class=\"raw\">{}</pre></details>",
                esc(&r.id),
                esc(&r.file),
                esc(&r.sigma)
            );
        }
        None => body.push_str(
            "<p id=\"sigma-missing\" class=\"meta\">The rule is not among the loaded rules (removed or renamed since this alert was raised): the title, level and description above are what the alert recorded.</p>",
        ),
    }

    // The events that made the alert.
    let _ = write!(
        body,
        "<h2 id=\"events-heading\">Events</h2><p class=\"meta\">{} events made this alert. <a href=\"{}\" id=\"all-events\">Open them in the event search</a></p>",
        a.linked_events,
        esc(&events_href(&a.alert.id))
    );
    match &d.events {
        Ok(page) if page.events.is_empty() => body.push_str(
            "<p id=\"no-events\" class=\"meta\">None of them is in the journal any more: retention deleted them once every alert output had delivered the alert.</p>",
        ),
        Ok(page) => {
            if (page.events.len() as i64) < a.linked_events && page.next_cursor.is_none() {
                let _ = write!(
                    body,
                    "<p class=\"meta\" id=\"events-pruned\">{} of them are no longer in the journal (retention).</p>",
                    a.linked_events - page.events.len() as i64
                );
            }
            body.push_str("<table id=\"alert-events\"><tr><th>Time (UTC)</th><th>Operation</th><th>User</th><th>IP</th><th>Country</th><th>Record</th></tr>");
            for e in &page.events {
                let user = match (&e.user_email, &e.user_name) {
                    (Some(m), Some(n)) if !n.trim().is_empty() => format!("{n} <{m}>"),
                    (Some(m), _) => m.clone(),
                    (None, Some(n)) => n.clone(),
                    (None, None) => String::new(),
                };
                let pretty = serde_json::from_str::<serde_json::Value>(&e.raw)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or_else(|| e.raw.clone());
                let _ = write!(
                    body,
                    "<tr data-id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><details><summary>Tines id {}</summary><pre class=\"raw\">{}</pre></details></td></tr>",
                    e.id,
                    esc(&e.created_at),
                    esc(&e.operation_name),
                    esc(&user),
                    esc(e.request_ip.as_deref().unwrap_or("")),
                    esc(e.country.as_deref().unwrap_or("")),
                    e.id,
                    esc(&pretty)
                );
            }
            body.push_str("</table>");
            if page.next_cursor.is_some() {
                let _ = write!(
                    body,
                    "<p class=\"meta\">The first {DETAIL_EVENTS} are shown; <a href=\"{}\">the event search has them all</a>.</p>",
                    esc(&events_href(&a.alert.id))
                );
            }
        }
        Err(e) => {
            let _ = write!(body, "<p class=\"error\">reading the alert's events failed: {}</p>", esc(e));
        }
    }

    // Who did what, oldest first.
    body.push_str("<h2>History</h2>");
    if d.history.is_empty() {
        body.push_str("<p id=\"no-history\" class=\"meta\">Nobody has triaged this alert yet.</p>");
    } else {
        body.push_str("<table id=\"history\"><tr><th>When (UTC)</th><th>Who</th><th>Status</th><th>Assignee</th><th>Note</th></tr>");
        for c in &d.history {
            let who = |x: &Option<String>| x.as_deref().map_or("—".to_string(), esc);
            let status = if c.from_status == c.to_status {
                c.to_status.as_str().to_string()
            } else {
                format!("{} → {}", c.from_status, c.to_status)
            };
            let assignee = if c.from_assignee == c.to_assignee {
                who(&c.to_assignee)
            } else {
                format!("{} → {}", who(&c.from_assignee), who(&c.to_assignee))
            };
            let _ = write!(
                body,
                "<tr class=\"change\"><td>{}</td><td class=\"who\">{}</td><td>{status}</td><td>{assignee}</td><td class=\"note\">{}</td></tr>",
                format_rfc3339(c.at),
                esc(&c.by),
                esc(&c.note)
            );
        }
        body.push_str("</table>");
    }

    // Triage, for analysts.
    body.push_str("<h2>Triage</h2>");
    match state.auth.identity(headers) {
        Some(me) if me.role == Role::Analyst => {
            let csrf = state.auth.csrf_token(headers).unwrap_or_default();
            if let Some(e) = echo {
                let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", esc(e.error));
            }
            let current = echo.and_then(|e| e.status).unwrap_or(a.status.as_str());
            let options: String = AlertStatus::ALL
                .iter()
                .map(|st| {
                    let sel = if st.as_str().eq_ignore_ascii_case(current) { " selected" } else { "" };
                    format!("<option value=\"{0}\"{sel}>{0}</option>", st.as_str())
                })
                .collect();
            let assignee = echo.and_then(|e| e.assignee).or(a.assignee.as_deref()).unwrap_or("");
            let note = echo.map_or("", |e| e.note);
            let _ = write!(
                body,
                "<form id=\"triage\" method=\"post\" action=\"{}/triage\" class=\"filters\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><label>Status<select name=\"status\" id=\"t-status\">{options}</select></label><label>Assignee<input name=\"assignee\" id=\"t-assignee\" value=\"{}\" maxlength=\"{MAX_ASSIGNEE}\" placeholder=\"nobody\"></label><label class=\"wide\">Note<textarea name=\"note\" id=\"t-note\" rows=\"3\" maxlength=\"{MAX_NOTE}\" placeholder=\"why\">{}</textarea></label><button type=\"submit\" id=\"t-save\">Save</button><span class=\"meta\">Saved as {}.</span></form>",
                esc(&alert_href(&a.alert.id)),
                esc(&csrf),
                esc(assignee),
                esc(note),
                esc(&me.name)
            );
        }
        Some(me) => {
            let _ = write!(
                body,
                "<p id=\"triage-viewer\" class=\"meta\">{} has the viewer role: alerts can be read, not triaged. Triage needs the analyst role.</p>",
                esc(&me.name)
            );
        }
        None => {}
    }
    body
}

pub async fn detail(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    match load_detail(&state, &id).await {
        Ok(Some(d)) => {
            page(&format!("Alert {id}"), "Alerts", &render_detail(&state, &headers, &d, None), &csrf).into_response()
        }
        Ok(None) => not_found(&id, &csrf),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            page(
                "Alert",
                "Alerts",
                &format!("<p class=\"error\">the journal could not answer: {}</p>", esc(&e)),
                &csrf,
            ),
        )
            .into_response(),
    }
}

fn not_found(id: &str, csrf: &str) -> Response {
    let body = format!(
        "<h1>No such alert</h1><p class=\"error\" id=\"error\">No alert has id <code>{}</code>.</p><p><a href=\"/alerts\">All alerts</a></p>",
        esc(id)
    );
    (StatusCode::NOT_FOUND, page("Alert", "Alerts", &body, csrf)).into_response()
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
            let body = format!(
                "<h1>Not saved</h1><p class=\"error\" id=\"error\">{}</p><p><a href=\"{}\">Back to the alert</a></p>",
                esc(&message),
                esc(&alert_href(&id))
            );
            return (code, page("Alert", "Alerts", &body, &csrf)).into_response();
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
                    (StatusCode::BAD_REQUEST, page(&format!("Alert {id}"), "Alerts", &body, &csrf)).into_response()
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
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            page("Alert", "Alerts", &format!("<p class=\"error\">not saved: {}</p>", esc(&e.to_string())), &csrf),
        )
            .into_response(),
    }
}
