//! The posture page (`/posture`) and its API (`/api/v1/posture`): a tenant's
//! security-relevant state rebuilt from its audit history (`crate::posture`), at now
//! or at a past moment, with who changed each entry, when, from where, the event,
//! the note on why it exists (or a flag that it has none), and the drift alerts
//! the daemon raised. Read-only; rendered with `maud`, which escapes every value from a
//! record or a note by construction.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::AppState;
use super::console::{login_redirect, page};
use crate::posture::{Change, Entry, Kind, Options, Posture, PostureError};
use crate::timeutil::{format_rfc3339, now_secs};

/// The page's query: `tenant` (default: the first in the journal) and `at`.
struct Wanted {
    tenant: Option<String>,
    at_text: String,
    at: Option<i64>,
}

fn wanted(raw: Option<&str>) -> Result<Wanted, String> {
    let mut w = Wanted { tenant: None, at_text: String::new(), at: None };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match &*k {
            "tenant" if !v.trim().is_empty() => w.tenant = Some(v.trim().to_string()),
            "at" if !v.trim().is_empty() && v.trim() != "now" => {
                w.at_text = v.trim().to_string();
                let now = now_secs();
                let at = crate::query::filter::parse_point(v.trim(), now).map_err(|e| format!("at: {e}"))?;
                if at > now {
                    return Err("at: the moment is in the future; the posture is known up to now".into());
                }
                w.at = Some(at);
            }
            _ => {}
        }
    }
    Ok(w)
}

/// The posture the query asks for, built off the async threads.
async fn build(state: &AppState, w: &Wanted) -> Result<Posture, (StatusCode, String)> {
    let (tenant, at) = (w.tenant.clone(), w.at);
    let r = state
        .journal
        .call(move |j| {
            let tenant = match tenant {
                Some(t) => t,
                None => match j.tenants()?.into_iter().next() {
                    Some(t) => t,
                    None => return Ok(Err(PostureError::UnknownTenant(String::new()))),
                },
            };
            Ok(crate::posture::compute(j, &tenant, &Options { at, history: false, changes_since: None }))
        })
        .await;
    match r {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(PostureError::UnknownTenant(t))) if t.is_empty() => {
            Err((StatusCode::NOT_FOUND, "no tenant has been collected yet".into()))
        }
        Ok(Err(e @ PostureError::UnknownTenant(_))) => Err((StatusCode::NOT_FOUND, e.to_string())),
        Ok(Err(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `GET /api/v1/posture?tenant=T&at=TIME`: the posture as JSON (as `posture --format json`).
pub(super) async fn api(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return super::unauthorized();
    }
    let w = match wanted(raw.as_deref()) {
        Ok(w) => w,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    match build(&state, &w).await {
        Ok(p) => {
            ([(axum::http::header::CONTENT_TYPE, "application/json")], crate::posture::render::json(&p, None, None))
                .into_response()
        }
        Err((code, e)) => (code, format!("{e}\n")).into_response(),
    }
}

/// Who, when, from where, and a link to the event (its operation within its second).
fn change_cell(tenant: &str, c: &Change) -> Markup {
    let link = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("tenant", tenant)
        .append_pair("operation", &c.operation)
        .append_pair("from", &c.time)
        .append_pair("to", &format_rfc3339(c.at + 1))
        .finish();
    html! {
        (c.time) " " code { (c.operation) } " by " (c.actor())
        @if let Some(ip) = &c.request_ip { " from " (ip) }
        " (" a href={ "/events?" (link) } { "event " (c.event_id) } ")"
    }
}

/// Why an entry exists: its latest note, or a flag when it wants one and has none.
fn why(e: &Entry) -> Markup {
    html! {
        @match (&e.note, e.needs_note) {
            (Some(n), _) => {
                (n.why) " "
                small {
                    "(requested by " (n.requested_by) "; noted " (format_rfc3339(n.noted_at)) " by " (n.noted_by) ")"
                }
            }
            (None, true) => { span.flag { "no note: why does it exist, and who asked?" } }
            (None, false) => {}
        }
    }
}

fn entry_row(tenant: &str, kind: Kind, e: &Entry) -> Markup {
    let fields = e.fields.iter().filter(|(k, _)| *k != "role" && *k != "value");
    html! {
        tr.entry data-kind=(kind.as_str()) data-id=(e.id) {
            td {
                b { (e.title) }
                div { small { @for (i, (k, v)) in fields.enumerate() { @if i > 0 { br; } (k) ": " (v) } } }
                @for d in e.doubts.iter().chain(&e.unknown) { div.doubt { (d) } }
            }
            td {
                @match &e.since {
                    Some(c) => { (change_cell(tenant, c)) }
                    None => { "not in the history" }
                }
            }
            td { @if let Some(c) = &e.last { (change_cell(tenant, c)) ": " (c.what) } }
            td { (why(e)) }
        }
    }
}

/// `GET /posture`: the page.
pub(super) async fn view(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let tenants = state.journal.call(|j| j.tenants()).await.unwrap_or_default();
    let w = wanted(raw.as_deref());
    let (tenant_v, at_v) = match &w {
        Ok(w) => (w.tenant.clone().unwrap_or_default(), w.at_text.clone()),
        Err(_) => (String::new(), String::new()),
    };
    let form = html! {
        h1 { "Posture" }
        form method="get" action="/posture" id="posture-form" {
            label {
                "Tenant"
                select name="tenant" id="f-tenant" {
                    @for t in &tenants { option value=(t) selected[*t == tenant_v] { (t) } }
                }
            }
            label { "At" input name="at" id="f-at" value=(at_v) placeholder="now, or 2026-01-31T00:00:00Z, or 30d"; }
            button id="apply" { "Show" }
        }
    };
    let show = |rest: Markup| page("Posture", "Posture", &html! { (form) (rest) }.into_string(), &csrf);
    let refused = |e: &str| html! { p.error #posture-error { (e) } };
    let w = match w {
        Ok(w) => w,
        Err(e) => return (StatusCode::BAD_REQUEST, show(refused(&e))).into_response(),
    };
    let p = match build(&state, &w).await {
        Ok(p) => p,
        Err((code, e)) => return (code, show(refused(&e))).into_response(),
    };
    // The drift the daemon found (`[posture] check_every`), newest first.
    let tenant = p.tenant.clone();
    let drift = state
        .journal
        .call(move |j| {
            let mut a = j.alerts_between(i64::MIN, i64::MAX, 10_000)?;
            a.retain(|a| a.rule_id == crate::service::POSTURE_DRIFT_RULE && a.tenant == tenant);
            a.sort_by_key(|a| std::cmp::Reverse(a.raised_at));
            a.truncate(5);
            Ok(a)
        })
        .await
        .unwrap_or_default();
    show(html! {
        p #posture-heading {
            "Tenant " b { (p.tenant) } " at " (p.at_time) " (history from "
            (p.history_from.map_or("no event yet".to_string(), format_rfc3339)) "; " (p.events)
            " posture event(s) read). Rebuilt from the audit trail; " code { "tines-audit posture --live" }
            " compares it with the tenant."
        }
        @for kind in Kind::ALL {
            @let entries: Vec<_> = p.entries_of(kind).collect();
            h2 id={ "kind-" (kind.as_str()) } { (kind.title()) " (" (entries.len()) ")" }
            @if entries.is_empty() {
                p { "None in the history." }
            } @else {
                table class="posture" id={ "posture-" (kind.as_str()) } {
                    tr { th { "Entry" } th { "In force since" } th { "Last change" } th { "Why" } }
                    @for e in entries { (entry_row(&p.tenant, kind, e)) }
                }
            }
        }
        @if p.unresolved_total > 0 {
            h2 { "Records that did not say what they changed (" (p.unresolved_total) ")" }
            ul #unresolved { @for u in &p.unresolved { li { (change_cell(&p.tenant, &u.change)) ": " (u.why) } } }
        }
        h2 { "Drift found by the daemon" }
        @if drift.is_empty() {
            p #no-drift {
                "No drift alert: either the daemon's checks (" code { "[posture] check_every" }
                ") found the tenant as its history says, or they are off."
            }
        } @else {
            ul #drift {
                @for a in &drift {
                    @let v: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
                    li { (format_rfc3339(a.raised_at)) ": " (v["summary"].as_str().unwrap_or(&a.id)) }
                }
            }
        }
        @for c in &p.caveats { p.caveat { (c) } }
    })
    .into_response()
}
