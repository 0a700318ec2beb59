//! The read-only JSON API: `GET /api/v1/events` (the search, with the same
//! filters as the command line and the console, paged by an opaque cursor, with the
//! total), `GET /api/v1/events/facets` (top values), `GET /api/v1/events/export`
//! (everything that matches, streamed as CSV or NDJSON), `GET /api/v1/histogram`, and
//! the OpenAPI description that documents them.

use axum::extract::{RawQuery, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::query::{self, Cursor, EventFilter, FilterArgs};
use crate::timeutil::now_secs;

/// The OpenAPI 3.1 description of this API, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

pub(super) fn unauthorized_json() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Bearer")],
        axum::Json(json!({"error": "authentication required: send the console token as a Bearer token"})),
    )
        .into_response()
}

/// The filters, cursor and limit of a query string.
pub(super) struct Query {
    pub args: FilterArgs,
    pub filter: EventFilter,
    pub cursor: Option<Cursor>,
    pub limit: Option<usize>,
    pub bucket: Option<i64>,
    /// The alert whose events are asked for (`alert=ID`).
    pub alert: Option<String>,
    /// The route's own parameters (see [`parse_query_for`]), by name.
    pub own: Vec<(String, String)>,
}

impl Query {
    fn own(&self, name: &str) -> Option<&str> {
        self.own.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub(super) fn parse_query(raw: Option<&str>) -> Result<Query, String> {
    parse_query_for(raw, &[])
}

/// [`parse_query`] for a route that also takes the parameters named in `own`.
pub(super) fn parse_query_for(raw: Option<&str>, own_names: &[&str]) -> Result<Query, String> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let (mut cursor, mut limit, mut bucket, mut alert) = (None, None, None, None);
    let mut own = Vec::new();
    let mut extra_err = None;
    let args = FilterArgs::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), |k, v| match k {
        k if own_names.contains(&k) => {
            own.push((k.to_string(), v.trim().to_string()));
            true
        }
        "cursor" => {
            cursor = Some(v.to_string());
            true
        }
        "alert" => {
            alert = Some(v.trim().to_string());
            true
        }
        "limit" => {
            match v.parse::<usize>() {
                Ok(n) if (1..=query::search::MAX_PAGE).contains(&n) => limit = Some(n),
                _ => extra_err = Some(format!("limit: must be a number from 1 to {}", query::search::MAX_PAGE)),
            }
            true
        }
        "bucket" => {
            match crate::timeutil::parse_duration(v) {
                Some(d) if d.as_secs() >= 1 => bucket = Some(d.as_secs() as i64),
                _ => extra_err = Some("bucket: must be a duration such as 1h or 1d".into()),
            }
            true
        }
        _ => false,
    })
    .map_err(|e| e.to_string())?;
    if let Some(e) = extra_err {
        return Err(e);
    }
    let mut filter = args.build(now_secs()).map_err(|e| e.to_string())?;
    filter.alert = alert.clone();
    let cursor = cursor.as_deref().map(Cursor::decode).transpose().map_err(|e| format!("cursor: {e}"))?;
    Ok(Query { args, filter, cursor, limit, bucket, alert, own })
}

fn search_error(e: query::SearchError) -> Response {
    match e {
        query::SearchError::Journal(j) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("search failed: {j}")),
        other => error(StatusCode::BAD_REQUEST, other.to_string()),
    }
}

pub(super) async fn events(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return unauthorized_json();
    }
    let q = match parse_query(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let geo = state.geo.clone();
    let result = state
        .journal
        .call(move |j| {
            let page = query::search(j, &q.filter, q.cursor, q.limit.unwrap_or(100), geo.as_ref())
                .and_then(|page| Ok((query::search::count(j, &q.filter, geo.as_ref())?, page)));
            Ok((page, query::index::state(j)?))
        })
        .await;
    match result {
        Ok((Ok((total, page)), index)) => axum::Json(json!({
            "events": page.events.iter().map(query::EventRow::to_json).collect::<Vec<_>>(),
            "next_cursor": page.next_cursor,
            "total": total,
            "search_index": index,
        }))
        .into_response(),
        Ok((Err(e), _)) => search_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("search failed: {e}")),
    }
}

/// `GET /api/v1/events/{seq}`: the event at a journal sequence number (its permalink).
pub(super) async fn event(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(seq): axum::extract::Path<String>,
) -> Response {
    if !state.auth.allows(&headers) {
        return unauthorized_json();
    }
    let Some(seq) = seq.parse::<i64>().ok().filter(|s| *s > 0) else {
        return error(StatusCode::BAD_REQUEST, "seq: give the event's journal sequence number, a positive integer");
    };
    let geo = state.geo.clone();
    match state.journal.call(move |j| Ok(query::search::by_seq(j, seq, geo.as_ref()))).await {
        Ok(Ok(Some(e))) => axum::Json(e.to_json()).into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            format!("no event {seq} in the journal (never stored, or removed by retention)"),
        ),
        Ok(Err(e)) => search_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("lookup failed: {e}")),
    }
}

pub(super) async fn histogram(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return unauthorized_json();
    }
    let q = match parse_query(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let bucket = q.bucket.unwrap_or(3600);
    let geo = state.geo.clone();
    match state.journal.call(move |j| Ok(query::histogram(j, &q.filter, bucket, geo.as_ref()))).await {
        Ok(Ok(rows)) => axum::Json(json!({
            "bucket_seconds": bucket,
            "buckets": rows.iter().map(|(t, n)| json!({"start": crate::timeutil::format_rfc3339(*t), "count": n})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(Err(e)) => search_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("histogram failed: {e}")),
    }
}

/// `GET /api/v1/events/facets?field=…`: the top values of a field among the newest events
/// the filters match (every one when `exact`), with how many were counted, the rest and
/// the events without a value.
pub(super) async fn facets(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return unauthorized_json();
    }
    let q = match parse_query_for(raw.as_deref(), &["field"]) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if q.cursor.is_some() {
        return error(StatusCode::BAD_REQUEST, "cursor: facets count every matching event and take no cursor");
    }
    let field = match q.own("field").map(query::facets::parse_field) {
        Some(Ok(f)) => f,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "field: missing; give one of user, operation, ip, country, tenant, category",
            );
        }
    };
    let (limit, geo) = (q.limit.unwrap_or(10), state.geo.clone());
    let result = state
        .journal
        .call(move |j| Ok((query::facets::facet(j, &q.filter, field, limit, geo.as_ref()), query::index::state(j)?)))
        .await;
    match result {
        Ok((Ok(f), index)) => axum::Json(json!({
            "field": f.field,
            "values": f.values,
            "total": f.total,
            "other": f.other,
            "missing": f.missing,
            "exact": f.exact,
            "search_index": index,
        }))
        .into_response(),
        Ok((Err(e), _)) => search_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("facets failed: {e}")),
    }
}

/// Marks a response whose body was redacted row by row as it was made, which the
/// whole-body redaction layer then passes through without reading it into memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct RedactedPerRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExportFormat {
    Csv,
    Ndjson,
}

/// Events per journal read of an export: one keyset page, so memory stays bounded by a
/// page and the channel's few chunks however much matches.
const EXPORT_PAGE: usize = query::search::MAX_PAGE;

/// A page of events as export lines. Every configured secret is removed from each value
/// before it is encoded (CSV doubles quotes, which would hide a secret holding one) and
/// from each line after.
fn export_chunk(events: &[query::EventRow], format: ExportFormat, header: bool) -> bytes::Bytes {
    use crate::secret::redact;
    let mut out = String::with_capacity(events.iter().map(|e| e.raw.len() + 200).sum());
    if header && format == ExportFormat::Csv {
        out.push_str(query::search::CSV_HEADER);
        out.push('\n');
    }
    for e in events {
        let line = match format {
            ExportFormat::Ndjson => e.to_json().to_string(),
            ExportFormat::Csv => {
                let clean = |s: &str| redact(s).into_owned();
                let clean_opt = |s: &Option<String>| s.as_deref().map(clean);
                let row = query::EventRow {
                    tenant: clean(&e.tenant),
                    operation_name: clean(&e.operation_name),
                    user_email: clean_opt(&e.user_email),
                    user_name: clean_opt(&e.user_name),
                    request_ip: clean_opt(&e.request_ip),
                    country: clean_opt(&e.country),
                    raw: clean(&e.raw),
                    ..e.clone()
                };
                query::search::csv_row(&row)
            }
        };
        out.push_str(&redact(&line));
        out.push('\n');
    }
    bytes::Bytes::from(out)
}

/// `GET /api/v1/events/export?format=csv|ndjson`: every event the filters match, newest
/// first, streamed as it is read (keyset pages off the async threads, a bounded channel
/// between them and the connection), as an attachment. A failure after the first byte
/// aborts the transfer, so a client never mistakes a cut export for a whole one.
pub(super) async fn export(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return unauthorized_json();
    }
    let q = match parse_query_for(raw.as_deref(), &["format"]) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if q.cursor.is_some() || q.limit.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "cursor, limit: an export streams every matching event; narrow it with the filters instead",
        );
    }
    let format = match q.own("format").unwrap_or("ndjson") {
        "csv" => ExportFormat::Csv,
        "ndjson" => ExportFormat::Ndjson,
        other => return error(StatusCode::BAD_REQUEST, format!("format: {other:?} is not csv or ndjson")),
    };
    // The first page is read before answering, so a filter the journal refuses (an unknown
    // operation, a country without GeoIP) is a 400, not a cut download.
    let (filter, geo) = (q.filter, state.geo.clone());
    let read = move |journal: &crate::journal::Journal, cursor: Option<Cursor>, first: bool| {
        let (filter, geo) = (filter.clone(), geo.clone());
        let journal = journal.clone();
        async move {
            journal
                .call(move |j| {
                    Ok(query::search(j, &filter, cursor, EXPORT_PAGE, geo.as_ref()).map(|page| {
                        let next = page.next_cursor.as_deref().and_then(|c| Cursor::decode(c).ok());
                        (export_chunk(&page.events, format, first), next)
                    }))
                })
                .await
        }
    };
    let (first, mut next) = match read(&state.journal, None, true).await {
        Ok(Ok(page)) => page,
        Ok(Err(e)) => return search_error(e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("export failed: {e}")),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    let journal = state.journal.clone();
    tokio::spawn(async move {
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        while let Some(cursor) = next {
            let item = match read(&journal, Some(cursor), false).await {
                Ok(Ok((chunk, after))) => {
                    next = after;
                    Ok(chunk)
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let failed = item.as_ref().err().cloned();
            // A send fails once the client has gone: stop reading.
            if tx.send(item.map_err(std::io::Error::other)).await.is_err() {
                return;
            }
            if let Some(e) = failed {
                tracing::warn!("export cut short: {}", crate::secret::redact(&e));
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let (kind, ext) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
    };
    let stamp = crate::timeutil::format_rfc3339(now_secs()).replace([':', '-'], "");
    let mut resp = (
        [
            (CONTENT_TYPE, kind.to_string()),
            (CONTENT_DISPOSITION, format!("attachment; filename=\"tines-audit-events-{stamp}.{ext}\"")),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response();
    resp.extensions_mut().insert(RedactedPerRow);
    resp
}

pub(super) async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_is_json_and_names_every_filter() {
        let v: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3."));
        let params: Vec<&str> =
            v["components"]["parameters"].as_object().unwrap().values().map(|p| p["name"].as_str().unwrap()).collect();
        for name in ["tenant", "user", "operation", "category", "from", "to", "ip", "country", "q", "cursor", "limit"] {
            assert!(params.contains(&name), "{name} is not documented");
        }
        assert!(v["paths"]["/api/v1/events"]["get"].is_object());
        // Every route of the router is described, with its own parameters.
        let router = include_str!("mod.rs");
        for route in router.split(".route(\"").skip(1).map(|s| &s[..s.find('"').unwrap()]) {
            if route.starts_with("/api/") && route != "/api/v1/openapi.json" {
                assert!(v["paths"][route]["get"].is_object(), "{route} is not in the OpenAPI file");
            }
        }
        for name in ["field", "format"] {
            assert!(params.contains(&name), "{name} is not documented");
        }
        assert!(v["components"]["schemas"]["EventPage"]["required"].as_array().unwrap().contains(&json!("total")));
    }

    #[test]
    fn query_strings_take_repeats_and_commas_and_refuse_junk() {
        let q = parse_query(Some("user=7&user=ann%40x.io&operation=Login,CredentialSave&limit=5&from=1d")).unwrap();
        assert_eq!(q.filter.users.len(), 2);
        assert_eq!(q.filter.operations, vec!["Login", "CredentialSave"]);
        assert_eq!(q.limit, Some(5));
        assert!(parse_query(Some("limit=0")).is_err());
        assert!(parse_query(Some("bogus=1")).is_err());
        assert!(parse_query(Some("cursor=nope")).is_err());
        assert!(parse_query(None).unwrap().filter == EventFilter::default());
        assert_eq!(parse_query(Some("alert=r%3A7")).unwrap().filter.alert.as_deref(), Some("r:7"));
        // A route's own parameters are its own: `format` is no filter of the events page.
        assert!(parse_query(Some("format=csv")).is_err());
        assert_eq!(parse_query_for(Some("format=csv"), &["format"]).unwrap().own("format"), Some("csv"));
    }
}
