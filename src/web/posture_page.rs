//! The posture page (`/posture`) and its API (`/api/v1/posture`): a tenant's
//! security-relevant state rebuilt from its audit history (`crate::posture`), at now
//! or at a past moment, with who changed each entry, when, from where, the event,
//! the note on why it exists (or a flag that it has none), and the drift alerts
//! the daemon raised. Read-only; every value from a record or a note is escaped.

use std::fmt::Write;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::console::{login_redirect, page};
use super::{AppState, html_escape as esc};
use crate::posture::{Change, Kind, Options, Posture, PostureError};
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
fn change_cell(tenant: &str, c: &Change) -> String {
    let link = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("tenant", tenant)
        .append_pair("operation", &c.operation)
        .append_pair("from", &c.time)
        .append_pair("to", &format_rfc3339(c.at + 1))
        .finish();
    format!(
        "{} <code>{}</code> by {}{} (<a href=\"/events?{}\">event {}</a>)",
        esc(&c.time),
        esc(&c.operation),
        esc(&c.actor()),
        c.request_ip.as_deref().map_or(String::new(), |ip| format!(" from {}", esc(ip))),
        esc(&link),
        c.event_id
    )
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
    let mut body = String::from("<h1>Posture</h1><form method=\"get\" action=\"/posture\" id=\"posture-form\">");
    body.push_str("<label>Tenant<select name=\"tenant\" id=\"f-tenant\">");
    for t in &tenants {
        let sel = if *t == tenant_v { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{0}\"{sel}>{0}</option>", esc(t));
    }
    let _ = write!(
        body,
        "</select></label><label>At<input name=\"at\" id=\"f-at\" value=\"{}\" placeholder=\"now, or 2026-01-31T00:00:00Z, or 30d\"></label><button id=\"apply\">Show</button></form>",
        esc(&at_v)
    );
    let w = match w {
        Ok(w) => w,
        Err(e) => {
            let _ = write!(body, "<p class=\"error\" id=\"posture-error\">{}</p>", esc(&e));
            return (StatusCode::BAD_REQUEST, page("Posture", "Posture", &body, &csrf)).into_response();
        }
    };
    let p = match build(&state, &w).await {
        Ok(p) => p,
        Err((code, e)) => {
            let _ = write!(body, "<p class=\"error\" id=\"posture-error\">{}</p>", esc(&e));
            return (code, page("Posture", "Posture", &body, &csrf)).into_response();
        }
    };
    let _ = write!(
        body,
        "<p id=\"posture-heading\">Tenant <b>{}</b> at {} (history from {}; {} posture event(s) read). Rebuilt from the audit trail; <code>tines-audit posture --live</code> compares it with the tenant.</p>",
        esc(&p.tenant),
        esc(&p.at_time),
        p.history_from.map_or("no event yet".to_string(), format_rfc3339),
        p.events
    );
    for kind in Kind::ALL {
        let entries: Vec<_> = p.entries_of(kind).collect();
        let _ = write!(body, "<h2 id=\"kind-{}\">{} ({})</h2>", kind.as_str(), esc(kind.title()), entries.len());
        if entries.is_empty() {
            body.push_str("<p>None in the history.</p>");
            continue;
        }
        let _ = write!(
            body,
            "<table class=\"posture\" id=\"posture-{}\"><tr><th>Entry</th><th>In force since</th><th>Last change</th><th>Why</th></tr>",
            kind.as_str()
        );
        for e in entries {
            let fields: Vec<String> = e
                .fields
                .iter()
                .filter(|(k, _)| *k != "role" && *k != "value")
                .map(|(k, v)| format!("{}: {}", esc(k), esc(v)))
                .collect();
            let why = match (&e.note, e.needs_note) {
                (Some(n), _) => format!(
                    "{} <small>(requested by {}; noted {} by {})</small>",
                    esc(&n.why),
                    esc(&n.requested_by),
                    format_rfc3339(n.noted_at),
                    esc(&n.noted_by)
                ),
                (None, true) => "<span class=\"flag\">no note: why does it exist, and who asked?</span>".into(),
                (None, false) => String::new(),
            };
            let mut doubts = String::new();
            for d in e.doubts.iter().chain(&e.unknown) {
                let _ = write!(doubts, "<div class=\"doubt\">{}</div>", esc(d));
            }
            let _ = write!(
                body,
                "<tr class=\"entry\" data-kind=\"{}\" data-id=\"{}\"><td><b>{}</b><div><small>{}</small></div>{doubts}</td><td>{}</td><td>{}</td><td>{why}</td></tr>",
                kind.as_str(),
                esc(&e.id),
                esc(&e.title),
                fields.join("<br>"),
                e.since.as_ref().map_or("not in the history".into(), |c| change_cell(&p.tenant, c)),
                e.last.as_ref().map_or(String::new(), |c| format!("{}: {}", change_cell(&p.tenant, c), esc(&c.what))),
            );
        }
        body.push_str("</table>");
    }
    if p.unresolved_total > 0 {
        let _ = write!(
            body,
            "<h2>Records that did not say what they changed ({})</h2><ul id=\"unresolved\">",
            p.unresolved_total
        );
        for u in &p.unresolved {
            let _ = write!(body, "<li>{}: {}</li>", change_cell(&p.tenant, &u.change), esc(&u.why));
        }
        body.push_str("</ul>");
    }
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
    body.push_str("<h2>Drift found by the daemon</h2>");
    if drift.is_empty() {
        body.push_str("<p id=\"no-drift\">No drift alert: either the daemon's checks (<code>[posture] check_every</code>) found the tenant as its history says, or they are off.</p>");
    } else {
        body.push_str("<ul id=\"drift\">");
        for a in drift {
            let v: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
            let _ = write!(
                body,
                "<li>{}: {}</li>",
                format_rfc3339(a.raised_at),
                esc(v["summary"].as_str().unwrap_or(&a.id))
            );
        }
        body.push_str("</ul>");
    }
    for c in &p.caveats {
        let _ = write!(body, "<p class=\"caveat\">{}</p>", esc(c));
    }
    page("Posture", "Posture", &body, &csrf).into_response()
}
