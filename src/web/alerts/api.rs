//! The alert API: `GET /api/v1/alerts` (filters, keyset pages, `group=true` for repeats
//! grouped), `GET /api/v1/alerts/{id}` (with its history and rule), `GET
//! /api/v1/alerts/{id}/events` (exactly the events that made it), `PATCH
//! /api/v1/alerts/{id}` (status, assignee, note; analysts only) and `GET /api/v1/rules/{id}`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{DEFAULT_PAGE, alert_json, change_json, encode_cursor, parse_change, parse_params, rule_json};
use crate::journal::JournalError;
use crate::query::{self, Cursor, EventFilter};
use crate::timeutil::{format_rfc3339, now_secs};
use crate::web::AppState;
use crate::web::auth::{Identity, Role};

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

fn journal_error(e: JournalError) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, format!("the journal could not answer: {e}"))
}

fn no_alert(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no alert has id {id:?}; list them with GET /api/v1/alerts"))
}

/// Who may change an alert: the request's user, if it came with a bearer token or with the
/// session's CSRF token, and has the analyst role. The refusal says which it lacks.
pub(super) fn analyst(
    state: &AppState,
    headers: &HeaderMap,
    form_csrf: Option<&str>,
) -> Result<Identity, (StatusCode, String)> {
    if state.auth.identity(headers).is_none() {
        return Err((
            StatusCode::UNAUTHORIZED,
            "authentication required: send the console token as a Bearer token".into(),
        ));
    }
    let Some(who) = state.auth.changer(headers, form_csrf) else {
        return Err((
            StatusCode::FORBIDDEN,
            "refused: a change made with the session cookie needs the session's CSRF token (the page's form field \
             csrf, or the X-CSRF-Token header); scripts send their bearer token instead"
                .into(),
        ));
    };
    if who.role != Role::Analyst {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "refused: {} has the viewer role, which reads alerts but cannot triage them; triage needs role = \"analyst\" in [[web.users]]",
                who.name
            ),
        ));
    }
    Ok(who)
}

pub async fn list(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return crate::web::api::unauthorized_json();
    }
    let (params, q) = match parse_params(raw.as_deref(), now_secs()) {
        (p, Ok(q)) => (p, q),
        (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    let grouped = params.grouped;
    let rules = state.rules.clone();
    let answer = state
        .journal
        .call(move |j| {
            let counts = j.count_alerts(&q)?;
            let total = json!({"alerts": counts.alerts, "groups": counts.groups});
            // One more than asked says whether an older page exists.
            if grouped {
                let mut groups = j.alert_groups(&q, limit + 1)?;
                let more = groups.len() > limit;
                groups.truncate(limit);
                let next = groups
                    .last()
                    .filter(|_| more)
                    .map(|g| encode_cursor(g.newest.alert.event_time, g.newest.alert.seq));
                let groups: Vec<Value> = groups
                    .iter()
                    .map(|g| {
                        json!({
                            "rule_id": g.newest.alert.rule_id,
                            "tenant": g.newest.alert.tenant,
                            "group_key": g.newest.group_key,
                            "count": g.count,
                            "open": g.open,
                            "first_event_time": format_rfc3339(g.first_event_time),
                            "last_event_time": format_rfc3339(g.newest.alert.event_time),
                            "newest": alert_json(&g.newest, &rules),
                        })
                    })
                    .collect();
                Ok(json!({"groups": groups, "next_cursor": next, "total": total}))
            } else {
                let mut alerts = j.find_alerts(&q, limit + 1)?;
                let more = alerts.len() > limit;
                alerts.truncate(limit);
                let next = alerts.last().filter(|_| more).map(|a| encode_cursor(a.alert.event_time, a.alert.seq));
                let alerts: Vec<Value> = alerts.iter().map(|a| alert_json(a, &rules)).collect();
                Ok(json!({"alerts": alerts, "next_cursor": next, "total": total}))
            }
        })
        .await;
    match answer {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => journal_error(e),
    }
}

pub async fn detail(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !state.auth.allows(&headers) {
        return crate::web::api::unauthorized_json();
    }
    let rules = state.rules.clone();
    let key = id.clone();
    let answer = state
        .journal
        .call(move |j| {
            let Some(a) = j.alert_by_id(&key)? else { return Ok(None) };
            let history = j.alert_history(a.alert.seq)?;
            let mut v = alert_json(&a, &rules);
            v["history"] = history.iter().map(change_json).collect();
            let said = super::said(&a, &rules);
            v["body"] = said.body;
            let loaded = rules.get(&a.alert.rule_id);
            v["rule"]["sigma"] = loaded.map_or(Value::Null, |r| Value::String(r.sigma.clone()));
            v["rule"]["loaded"] = Value::Bool(loaded.is_some());
            Ok(Some(v))
        })
        .await;
    match answer {
        Ok(Some(v)) => axum::Json(v).into_response(),
        Ok(None) => no_alert(&id),
        Err(e) => journal_error(e),
    }
}

/// The alert's own events (its `alert_events` links), newest first, paged like the event search.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    if !state.auth.allows(&headers) {
        return crate::web::api::unauthorized_json();
    }
    let (mut cursor, mut limit) = (None, 100usize);
    for (k, v) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "cursor" => match Cursor::decode(&v) {
                Ok(c) => cursor = Some(c),
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("cursor: {e}")),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=query::search::MAX_PAGE).contains(&n) => limit = n,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("limit: a number from 1 to {}", query::search::MAX_PAGE),
                    );
                }
            },
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown parameter {:?}: an alert's events take cursor and limit",
                        other.chars().take(40).collect::<String>()
                    ),
                );
            }
        }
    }
    let geo = state.geo.clone();
    let key = id.clone();
    let answer = state
        .journal
        .call(move |j| {
            let Some(a) = j.alert_by_id(&key)? else { return Ok(None) };
            let filter = EventFilter { alert: Some(key.clone()), ..Default::default() };
            Ok(Some((a, query::search(j, &filter, cursor, limit, geo.as_ref()))))
        })
        .await;
    match answer {
        Ok(Some((a, Ok(page)))) => axum::Json(json!({
            "alert": a.alert.id,
            "linked": a.linked_events,
            "events": page.events.iter().map(query::EventRow::to_json).collect::<Vec<_>>(),
            "next_cursor": page.next_cursor,
        }))
        .into_response(),
        Ok(Some((_, Err(e)))) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the alert's events failed: {e}"))
        }
        Ok(None) => no_alert(&id),
        Err(e) => journal_error(e),
    }
}

/// The fields a triage takes: `status`, `assignee` (a name, or `null`/`""` to unassign) and
/// `note`; anything else is refused rather than ignored (a typo would silently do nothing).
fn read_change(body: &[u8]) -> Result<super::ChangeRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!("the body must be a JSON object such as {{\"status\": \"acknowledged\", \"note\": \"…\"}} ({e})")
    })?;
    let Value::Object(o) = v else {
        return Err("the body must be a JSON object such as {\"status\": \"acknowledged\", \"note\": \"…\"}".into());
    };
    if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "status" | "assignee" | "note")) {
        return Err(format!(
            "unknown field {:?}: send status, assignee and note",
            k.chars().take(40).collect::<String>()
        ));
    }
    let text = |k: &str| -> Result<Option<Option<&str>>, String> {
        match o.get(k) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s))),
            Some(_) => Err(format!("{k}: must be a string")),
        }
    };
    let status = match text("status")? {
        Some(None) => return Err("status: must be one of open, acknowledged, closed (not null)".into()),
        s => s.flatten(),
    };
    let note = text("note")?.flatten();
    parse_change(status, text("assignee")?, note).map_err(|e| e.to_string())
}

pub async fn triage(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let who = match analyst(&state, &headers, None) {
        Ok(w) => w,
        Err((code, message)) => return error(code, message),
    };
    let change = match read_change(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let rules = state.rules.clone();
    let key = id.clone();
    let answer = state
        .journal
        .call(move |j| {
            let Some(done) = super::apply(j, &key, &change, &who.name)? else { return Ok(None) };
            Ok(Some(json!({
                "alert": alert_json(&done.alert, &rules),
                "change": done.change.as_ref().map(change_json),
            })))
        })
        .await;
    match answer {
        Ok(Some(v)) => axum::Json(v).into_response(),
        Ok(None) => no_alert(&id),
        Err(e) => journal_error(e),
    }
}

pub async fn rule(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !state.auth.allows(&headers) {
        return crate::web::api::unauthorized_json();
    }
    match state.rules.get(&id) {
        Some(r) => axum::Json(rule_json(r, state.rules.detection)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "rule {id:?} is not among the loaded rules (removed or renamed since its alerts were raised?); each alert keeps the title, level and description its rule had"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scripts get what the pages show: every API route of the router is in the OpenAPI
    /// description with each method it answers.
    #[test]
    fn openapi_documents_every_api_route_and_the_alert_filters() {
        let v: Value = serde_json::from_str(crate::web::api::OPENAPI).unwrap();
        let router = include_str!("../mod.rs");
        for route in router.split(".route(\"").skip(1) {
            let path = &route[..route.find('"').unwrap()];
            if !path.starts_with("/api/") {
                continue;
            }
            let line = &route[..route.find('\n').unwrap_or(route.len())];
            for (call, method) in [("get(", "get"), ("patch(", "patch"), ("post(", "post")] {
                if line.contains(call) {
                    assert!(v["paths"][path][method].is_object(), "{method} {path} is not in openapi.json");
                }
            }
        }
        let params: Vec<&str> =
            v["components"]["parameters"].as_object().unwrap().values().map(|p| p["name"].as_str().unwrap()).collect();
        for name in ["status", "level", "rule", "group_key", "group", "id"] {
            assert!(params.contains(&name), "{name} is not documented");
        }
    }

    #[test]
    fn a_triage_body_is_a_json_object_of_known_fields() {
        let c = read_change(br#"{"status": "acknowledged", "assignee": null, "note": "on it"}"#).unwrap();
        assert_eq!(
            (c.status, c.assignee, c.note.as_str()),
            (Some(crate::journal::AlertStatus::Acknowledged), Some(None), "on it")
        );
        for (body, says) in [
            (&b"nope"[..], "JSON object"),
            (b"[1]", "JSON object"),
            (br#"{"state": "closed"}"#, "unknown field \"state\""),
            (br#"{"status": 3}"#, "status: must be a string"),
            (br#"{"status": null}"#, "not null"),
            (br#"{"status": "resolved"}"#, "not one of open, acknowledged, closed"),
            (b"{}", "nothing to change"),
        ] {
            let e = read_change(body).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
