//! Saved, named searches: the filters of `/events` kept in the journal under a name, as
//! the canonical query string `/api/v1/events` takes, validated when saved and replayed as
//! written (`from=7d` is always the last seven days). The API (`/api/v1/searches`, list,
//! save, read, delete), the console's list (`/searches`) and its two forms (save, delete).
//! Anyone may save; a search is deleted by its owner or by an analyst. Changes need the
//! bearer token, or the session cookie with its CSRF token.

use axum::body::Bytes;
use axum::extract::{Form, Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Identity, Role};
use super::console::{login_redirect, page};
use crate::journal::{SaveOutcome, SavedSearch};
use crate::query::FilterArgs;
use crate::timeutil::{format_rfc3339, looks_like_age, now_secs};

/// Most saved searches a journal keeps (each page and list shows them all).
pub(super) const MAX_SAVED: usize = 1_000;
/// Longest name, in characters.
const MAX_NAME: usize = 120;
/// Longest query string, in bytes.
const MAX_QUERY: usize = 8_192;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

fn journal_error(e: crate::journal::JournalError) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, format!("the journal could not answer: {e}"))
}

const CSRF_REFUSED: &str = "refused: a change made with the session cookie needs the session's CSRF token (the page's \
                            form field csrf, or the X-CSRF-Token header); scripts send their bearer token instead";

/// The name as it is kept: trimmed, not empty, not too long, no control characters.
fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("name: missing; give the search a name such as \"Failed logins, last 7 days\"".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("name: {} characters; a name has at most {MAX_NAME}", name.chars().count()));
    }
    if name.chars().any(char::is_control) {
        return Err("name: holds a control character (a line break, a tab); write it on one line".into());
    }
    Ok(name.to_string())
}

/// The filters of `query` (what follows `?` in `/events?…`) as the canonical query string,
/// after validating them as `/api/v1/events` does; the refusal names the parameter.
/// `paging` keeps a page position (`cursor`, `limit`, `bucket`) out instead of refusing it.
fn canonical(query: &str, paging: Paging) -> Result<String, String> {
    let query = query.trim().strip_prefix('?').unwrap_or(query.trim());
    if query.len() > MAX_QUERY {
        return Err(format!("query: {} bytes; a saved search's query string has at most {MAX_QUERY}", query.len()));
    }
    let kept;
    let query = match paging {
        Paging::Refuse => query,
        Paging::Drop => {
            let filters = url::form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| !matches!(k.as_ref(), "cursor" | "limit" | "bucket" | "tz"));
            kept = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(filters).finish();
            &kept
        }
    };
    let q = super::api::parse_query(Some(query))?;
    if paging == Paging::Refuse {
        for (name, given) in
            [("cursor", q.cursor.is_some()), ("limit", q.limit.is_some()), ("bucket", q.bucket.is_some())]
        {
            if given {
                return Err(format!("{name}: a saved search keeps the filters, not a page of them; leave {name} out"));
            }
        }
    }
    let mut pairs = q.args.to_pairs();
    if let Some(a) = q.alert {
        pairs.push(("alert", a));
    }
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, &v);
    }
    Ok(s.finish())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paging {
    Refuse,
    Drop,
}

/// The events page of a search.
fn events_href(query: &str) -> String {
    if query.is_empty() { "/events".into() } else { format!("/events?{query}") }
}

/// A search's filters in words, for people: `tenant acme or globex · from 7d ago · text "vpn"`.
pub(super) fn describe(query: &str) -> String {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let mut alert = None;
    let args = FilterArgs::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), |k, v| {
        (k == "alert").then(|| alert = Some(v.to_string())).is_some()
    });
    let Ok(args) = args else { return query.to_string() };
    let mut parts = Vec::new();
    for (label, values) in [
        ("tenant", &args.tenant),
        ("user", &args.user),
        ("operation", &args.operation),
        ("category", &args.category),
        ("IP", &args.ip),
        ("country", &args.country),
    ] {
        let all: Vec<&str> =
            values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()).collect();
        if !all.is_empty() {
            parts.push(format!("{label} {}", all.join(" or ")));
        }
    }
    let when =
        |v: &str| if looks_like_age(v) && !v.eq_ignore_ascii_case("now") { format!("{v} ago") } else { v.into() };
    if let Some(v) = &args.from {
        parts.push(format!("from {}", when(v)));
    }
    if let Some(v) = &args.to {
        parts.push(format!("to {}", when(v)));
    }
    if let Some(v) = &args.text {
        parts.push(format!("matching {v:?}"));
    }
    if let Some(a) = alert {
        parts.push(format!("the events of alert {a}"));
    }
    if parts.is_empty() { "every event".into() } else { parts.join(" · ") }
}

fn search_json(s: &SavedSearch) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "query": s.query,
        "description": describe(&s.query),
        "owner": s.owner,
        "created_at": format_rfc3339(s.created_at),
        "events_url": events_href(&s.query),
        "api_url": if s.query.is_empty() { "/api/v1/events".to_string() } else { format!("/api/v1/events?{}", s.query) },
    })
}

/// Whether `who` may delete `s`: its owner, or any analyst.
fn may_delete(who: &Identity, s: &SavedSearch) -> bool {
    who.role == Role::Analyst || who.name == s.owner
}

fn not_yours(who: &Identity, s: &SavedSearch) -> String {
    format!(
        "refused: saved search {} is {}'s, and {} has the viewer role, which deletes only its own searches (an analyst may delete any)",
        s.id, s.owner, who.name
    )
}

/// Saves a checked search for `who`: the stored search, or the status and message that refused it.
async fn save(state: &AppState, who: &Identity, name: &str, query: &str) -> Result<SavedSearch, (StatusCode, String)> {
    let bad = |e| (StatusCode::BAD_REQUEST, e);
    let name = check_name(name).map_err(bad)?;
    let query = canonical(query, Paging::Refuse).map_err(bad)?;
    let search = SavedSearch { id: 0, name, query, owner: who.name.clone(), created_at: now_secs() };
    let outcome = state.journal.call(move |j| j.save_search(&search, MAX_SAVED)).await;
    match outcome {
        Ok(SaveOutcome::Saved(s)) => Ok(s),
        Ok(SaveOutcome::NameTaken(other)) => Err((
            StatusCode::CONFLICT,
            format!(
                "name: a search named {:?} is saved already (id {}, by {}); choose another name, or delete that one first",
                other.name, other.id, other.owner
            ),
        )),
        Ok(SaveOutcome::Full) => Err((
            StatusCode::CONFLICT,
            format!("the journal keeps at most {MAX_SAVED} saved searches; delete some on /searches first"),
        )),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("not saved: the journal could not answer: {e}"))),
    }
}

/// An id from a path; `None` (no such search) when it is not one.
fn id_of(raw: &str) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|id| *id > 0)
}

fn no_search(id: &str) -> String {
    format!("no saved search has id {:?}; list them with GET /api/v1/searches", id.chars().take(40).collect::<String>())
}

// --- the API ----------------------------------------------------------------------------

/// `GET /api/v1/searches`: every saved search, by name.
pub(super) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.auth.allows(&headers) {
        return super::api::unauthorized_json();
    }
    match state.journal.call(|j| j.saved_searches(MAX_SAVED)).await {
        Ok(all) => axum::Json(json!({"searches": all.iter().map(search_json).collect::<Vec<_>>()})).into_response(),
        Err(e) => journal_error(e),
    }
}

/// The body of `POST /api/v1/searches`: `{"name": "…", "query": "tenant=acme&from=7d"}`;
/// anything else is refused rather than ignored.
fn read_new(body: &[u8]) -> Result<(String, String), String> {
    const SHAPE: &str = "the body must be a JSON object such as {\"name\": \"Failed logins\", \"query\": \"operation=LoginFailure&from=7d\"}";
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("{SHAPE} ({e})"))?;
    let Value::Object(o) = v else { return Err(SHAPE.into()) };
    if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "name" | "query")) {
        return Err(format!("unknown field {:?}: send name and query", k.chars().take(40).collect::<String>()));
    }
    let text = |k: &str| match o.get(k) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{k}: must be a string")),
    };
    Ok((text("name")?, text("query")?))
}

/// `POST /api/v1/searches`: saves a search for the requester (201, with its `Location`).
pub(super) async fn create(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !state.auth.allows(&headers) {
        return super::api::unauthorized_json();
    }
    let Some(who) = state.auth.changer(&headers, None) else { return error(StatusCode::FORBIDDEN, CSRF_REFUSED) };
    let (name, query) = match read_new(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match save(&state, &who, &name, &query).await {
        Ok(s) => (StatusCode::CREATED, [(LOCATION, format!("/api/v1/searches/{}", s.id))], axum::Json(search_json(&s)))
            .into_response(),
        Err((code, message)) => error(code, message),
    }
}

/// `GET /api/v1/searches/{id}`.
pub(super) async fn detail(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !state.auth.allows(&headers) {
        return super::api::unauthorized_json();
    }
    let Some(key) = id_of(&id) else { return error(StatusCode::NOT_FOUND, no_search(&id)) };
    match state.journal.call(move |j| j.saved_search(key)).await {
        Ok(Some(s)) => axum::Json(search_json(&s)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, no_search(&id)),
        Err(e) => journal_error(e),
    }
}

/// What came of a delete.
enum Deleted {
    Done,
    NotFound,
    Refused(String),
}

/// Deletes search `key` for `who` if they may.
async fn delete_for(state: &AppState, who: Identity, key: i64) -> Result<Deleted, crate::journal::JournalError> {
    state
        .journal
        .call(move |j| {
            let Some(s) = j.saved_search(key)? else { return Ok(Deleted::NotFound) };
            if !may_delete(&who, &s) {
                return Ok(Deleted::Refused(not_yours(&who, &s)));
            }
            // Saved searches are never changed, so the owner read above is still the owner.
            Ok(if j.delete_saved_search(key)? { Deleted::Done } else { Deleted::NotFound })
        })
        .await
}

/// `DELETE /api/v1/searches/{id}`: by its owner or an analyst (204).
pub(super) async fn remove(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !state.auth.allows(&headers) {
        return super::api::unauthorized_json();
    }
    let Some(who) = state.auth.changer(&headers, None) else { return error(StatusCode::FORBIDDEN, CSRF_REFUSED) };
    let Some(key) = id_of(&id) else { return error(StatusCode::NOT_FOUND, no_search(&id)) };
    match delete_for(&state, who, key).await {
        Ok(Deleted::Done) => StatusCode::NO_CONTENT.into_response(),
        Ok(Deleted::NotFound) => error(StatusCode::NOT_FOUND, no_search(&id)),
        Ok(Deleted::Refused(why)) => error(StatusCode::FORBIDDEN, why),
        Err(e) => journal_error(e),
    }
}

// --- the console ------------------------------------------------------------------------

/// The events page's "Save this search" form for the search in `query_string` (the page's
/// own query string; its page position is left out). Nothing when the search is not valid
/// (the page says why) or there is no session to post it with (a bearer-token request).
pub(super) fn save_form(query_string: &str, csrf: &str) -> String {
    match canonical(query_string, Paging::Drop) {
        Ok(query) if !csrf.is_empty() => save_form_markup(&query, csrf, "").into_string(),
        _ => String::new(),
    }
}

fn save_form_markup(query: &str, csrf: &str, name: &str) -> Markup {
    html! {
        form #save-search .filters method="post" action="/searches" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="query" value=(query);
            label {
                "Save this search as"
                input #save-search-name name="name" value=(name) required maxlength=(MAX_NAME)
                    placeholder="e.g. Failed logins, last 7 days";
            }
            button #save-search-button type="submit" { "Save" }
            " "
            a href="/searches" { "Saved searches" }
        }
    }
}

fn page_error(status: StatusCode, title: &str, message: &str, extra: Markup, csrf: &str) -> Response {
    let body = html! {
        h1 { (title) }
        p .error #error { (message) }
        (extra)
        p { a href="/searches" { "Saved searches" } }
    };
    (status, page(title, "Searches", &body.into_string(), csrf)).into_response()
}

/// `GET /searches`: the saved searches, each with its filter in words, a link that opens it
/// on the events page and, for who may, a delete button.
pub(super) async fn view(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(who) = state.auth.identity(&headers) else { return login_redirect() };
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let all = match state.journal.call(|j| j.saved_searches(MAX_SAVED)).await {
        Ok(all) => all,
        Err(e) => {
            let message = format!("the journal could not answer: {e}");
            return page_error(StatusCode::INTERNAL_SERVER_ERROR, "Saved searches", &message, html! {}, &csrf);
        }
    };
    let body = html! {
        h1 { "Saved searches" }
        p .meta {
            "Searches saved from the events page. Open one to run it again: a time written as an age (7d) counts back from when it is opened. "
            "Anyone may save a search; its owner or an analyst may delete it."
        }
        @if all.is_empty() {
            p #no-searches { "No saved search yet: search on the " a href="/events" { "events page" } ", then use Save this search." }
        } @else {
            table #searches {
                tr { th { "Name" } th { "Filter" } th { "Saved by" } th { "Saved (UTC)" } th {} }
                @for s in &all {
                    tr id=(format!("search-{}", s.id)) data-id=(s.id) {
                        td .name { a href=(events_href(&s.query)) { (s.name) } }
                        td .filter { (describe(&s.query)) }
                        td .owner { (s.owner) }
                        td .when { (format_rfc3339(s.created_at)) }
                        td {
                            a .open href=(events_href(&s.query)) { "Open" }
                            @if may_delete(&who, s) && !csrf.is_empty() {
                                " "
                                form .delete method="post" action=(format!("/searches/{}/delete", s.id)) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Saved searches", "Searches", &body.into_string(), &csrf).into_response()
}

#[derive(serde::Deserialize)]
pub(super) struct SaveFormFields {
    name: Option<String>,
    query: Option<String>,
    csrf: Option<String>,
}

/// `POST /searches` (the "Save this search" form): saves, then opens the search.
pub(super) async fn save_posted(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SaveFormFields>,
) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let (name, query) = (form.name.unwrap_or_default(), form.query.unwrap_or_default());
    let back = html! { p { a href=(format!("/events?{}", query.trim_start_matches('?'))) { "Back to the search" } } };
    let Some(who) = state.auth.changer(&headers, form.csrf.as_deref()) else {
        let message = "Not saved: the form's CSRF token is missing or stale; reload the page and save again.";
        return page_error(StatusCode::FORBIDDEN, "Not saved", message, back, &csrf);
    };
    match save(&state, &who, &name, &query).await {
        Ok(s) => (StatusCode::SEE_OTHER, [(LOCATION, events_href(&s.query))]).into_response(),
        Err((code, message)) => {
            // The form again, with the name given, when only the name was wrong.
            let again = match canonical(&query, Paging::Refuse) {
                Ok(q) => html! { (save_form_markup(&q, &csrf, &name)) (back) },
                Err(_) => back,
            };
            page_error(code, "Not saved", &message, again, &csrf)
        }
    }
}

#[derive(serde::Deserialize)]
pub(super) struct DeleteFormFields {
    csrf: Option<String>,
}

/// `POST /searches/{id}/delete` (the list's delete button).
pub(super) async fn delete_posted(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<DeleteFormFields>,
) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let Some(who) = state.auth.changer(&headers, form.csrf.as_deref()) else {
        let message = "Not deleted: the form's CSRF token is missing or stale; reload the page and delete again.";
        return page_error(StatusCode::FORBIDDEN, "Not deleted", message, html! {}, &csrf);
    };
    let Some(key) = id_of(&id) else {
        return page_error(StatusCode::NOT_FOUND, "Not deleted", &no_search(&id), html! {}, &csrf);
    };
    match delete_for(&state, who, key).await {
        Ok(Deleted::Done) => (StatusCode::SEE_OTHER, [(LOCATION, "/searches")]).into_response(),
        Ok(Deleted::NotFound) => page_error(StatusCode::NOT_FOUND, "Not deleted", &no_search(&id), html! {}, &csrf),
        Ok(Deleted::Refused(why)) => page_error(StatusCode::FORBIDDEN, "Not deleted", &why, html! {}, &csrf),
        Err(e) => {
            let message = format!("not deleted: the journal could not answer: {e}");
            page_error(StatusCode::INTERNAL_SERVER_ERROR, "Not deleted", &message, html! {}, &csrf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_is_kept_as_the_canonical_filters_and_refused_by_the_field_at_fault() {
        let c = |q: &str| canonical(q, Paging::Refuse);
        assert_eq!(c("?tenant=acme&from=7d&q=vpn+%22new+key%22").unwrap(), "tenant=acme&from=7d&q=vpn+%22new+key%22");
        // Parameter order, blanks and aliases do not matter; the replay is the same search.
        assert_eq!(c("since=7d&user=&tenant=acme").unwrap(), c("tenant=acme&from=7d").unwrap());
        assert_eq!(c("alert=r%3A1").unwrap(), "alert=r%3A1");
        assert_eq!(c("").unwrap(), "");
        for (q, says) in [
            ("ip=nope", "ip: "),
            ("from=yesterday-ish", "from: "),
            ("q=%22open", "quote"),
            ("bogus=1", "unknown parameter \"bogus\""),
            ("cursor=abc", "cursor: "),
            ("limit=5", "limit: "),
            ("tenant=a%00", "tenant: "),
        ] {
            let e = c(q).unwrap_err();
            assert!(e.contains(says), "{q}: {e}");
        }
        assert!(c(&format!("q={}", "a".repeat(MAX_QUERY))).unwrap_err().starts_with("query: "));
        // The events page's own query string, with its page position, saves as its filters.
        let paged = "tenant=acme&limit=50&cursor=not-even-a-cursor";
        assert_eq!(canonical(paged, Paging::Drop).unwrap(), "tenant=acme");
    }

    #[test]
    fn names_are_trimmed_and_must_be_one_short_line() {
        assert_eq!(check_name("  Failed logins ").unwrap(), "Failed logins");
        assert!(check_name(" ").unwrap_err().starts_with("name: missing"));
        assert!(check_name("a\nb").unwrap_err().contains("control"));
        assert!(check_name(&"x".repeat(MAX_NAME + 1)).unwrap_err().contains("at most"));
        assert!(check_name(&"é".repeat(MAX_NAME)).is_ok(), "characters, not bytes");
    }

    #[test]
    fn a_filter_in_words() {
        assert_eq!(describe(""), "every event");
        assert_eq!(
            describe("tenant=acme%2Cglobex&user=ann%40x.io&from=7d&to=2024-06-01&q=vpn"),
            "tenant acme or globex · user ann@x.io · from 7d ago · to 2024-06-01 · matching \"vpn\""
        );
        assert_eq!(describe("alert=r%3A1"), "the events of alert r:1");
    }

    #[test]
    fn the_save_form_carries_the_filters_and_the_token_escaped() {
        let form = save_form("tenant=%22%3E%3Cscript%3E&cursor=c1.2", "tok\"en");
        assert!(form.contains("id=\"save-search\"") && form.contains("action=\"/searches\""), "{form}");
        assert!(form.contains("value=\"tenant=%22%3E%3Cscript%3E\""), "the query, without its cursor: {form}");
        assert!(form.contains("value=\"tok&quot;en\""), "{form}");
        assert!(!form.contains("<script"), "{form}");
        assert_eq!(save_form("ip=nope", "tok"), "", "an invalid search is not offered");
        assert_eq!(save_form("tenant=a", ""), "", "no session, no form that could only fail");
    }

    #[test]
    fn a_body_is_a_json_object_of_name_and_query() {
        assert_eq!(read_new(br#"{"name": "x", "query": "tenant=a"}"#).unwrap(), ("x".into(), "tenant=a".into()));
        assert_eq!(read_new(br#"{"name": "x"}"#).unwrap(), ("x".into(), String::new()));
        for (body, says) in [
            (&b"nope"[..], "JSON object"),
            (b"[1]", "JSON object"),
            (br#"{"name": "x", "filter": "a"}"#, "unknown field \"filter\""),
            (br#"{"name": 3}"#, "name: must be a string"),
        ] {
            let e = read_new(body).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    /// The API's routes for saved searches and reports are in the OpenAPI description with
    /// each method the router gives them (the shared test checks get, patch and post).
    #[test]
    fn openapi_documents_every_method_of_the_searches_and_reports_routes() {
        let v: Value = serde_json::from_str(crate::web::api::OPENAPI).unwrap();
        for (path, methods) in [
            ("/api/v1/searches", &["get", "post"][..]),
            ("/api/v1/searches/{id}", &["get", "delete"]),
            ("/api/v1/reports", &["get"]),
        ] {
            for m in methods {
                assert!(v["paths"][path][m].is_object(), "{m} {path} is not in openapi.json");
            }
        }
        let router = include_str!("mod.rs");
        assert!(router.contains(".route(\"/api/v1/searches/{id}\", get(searches::detail).delete(searches::remove))"));
    }
}
