//! The read-only JSON API: `GET /api/v1/events` (the search, with the same
//! filters as the command line and the console, paged by an opaque cursor),
//! `GET /api/v1/histogram`, and the OpenAPI description that documents them.

use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
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
}

pub(super) fn parse_query(raw: Option<&str>) -> Result<Query, String> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let (mut cursor, mut limit, mut bucket, mut alert) = (None, None, None, None);
    let mut extra_err = None;
    let args = FilterArgs::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), |k, v| match k {
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
                _ => extra_err = Some(format!("limit must be a number from 1 to {}", query::search::MAX_PAGE)),
            }
            true
        }
        "bucket" => {
            match crate::timeutil::parse_duration(v) {
                Some(d) if d.as_secs() >= 1 => bucket = Some(d.as_secs() as i64),
                _ => extra_err = Some("bucket must be a duration such as 1h or 1d".into()),
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
    let cursor = cursor.as_deref().map(Cursor::decode).transpose().map_err(|e| e.to_string())?;
    Ok(Query { args, filter, cursor, limit, bucket, alert })
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
            let page = query::search(j, &q.filter, q.cursor, q.limit.unwrap_or(100), geo.as_ref());
            Ok((page, query::index::state(j)?))
        })
        .await;
    match result {
        Ok((Ok(page), index)) => axum::Json(json!({
            "events": page.events.iter().map(query::EventRow::to_json).collect::<Vec<_>>(),
            "next_cursor": page.next_cursor,
            "search_index": index,
        }))
        .into_response(),
        Ok((Err(e), _)) => search_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("search failed: {e}")),
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
    }
}
