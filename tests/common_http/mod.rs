//! Protocol-enforcing receivers for the HTTP sink tests: a Splunk HEC, a
//! Datadog Logs intake and a webhook, each an axum server on 127.0.0.1:0 that
//! checks what the real service documents (auth, encoding, envelope shape,
//! size and count limits) and records what it accepted. Knobs make them fail
//! the way the real ones do (busy, rate limited, one event refused, acks late).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use tines_audit::journal::{Journal, Record, WindowCommit};

pub const TENANT: &str = "acme.tines.com";
pub const HEC_TOKEN: &str = "3f1c2a9e-8b7d-4e6f-a5c4-1d2e3f4a5b6c";
pub const DD_KEY: &str = "dd0123456789abcdef0123456789abcd";

/// Starts `router` on a fresh loopback port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router.layer(DefaultBodyLimit::disable())).await.unwrap();
    });
    format!("http://{addr}")
}

/// The body as sent, gunzipped when `Content-Encoding: gzip`; `Err` for an unsupported encoding.
fn decoded(headers: &HeaderMap, body: &[u8]) -> Result<(Vec<u8>, bool), StatusCode> {
    match headers.get("content-encoding").map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase()) {
        None => Ok((body.to_vec(), false)),
        Some(e) if e == "identity" => Ok((body.to_vec(), false)),
        Some(e) if e == "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body).read_to_end(&mut out).map_err(|_| StatusCode::BAD_REQUEST)?;
            Ok((out, true))
        }
        Some(_) => Err(StatusCode::UNSUPPORTED_MEDIA_TYPE),
    }
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// Journal with `n` events of tenant [`TENANT`], each about `pad` bytes of padding,
/// created one second apart ending now.
pub fn journal_with(n: i64, pad: usize) -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j")).unwrap();
    j.start_progress(TENANT, "cursor", 0, None, "").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let raws: Vec<String> = (1..=n)
        .map(|i| {
            format!(
                "{{\"created_at\":\"{}\",\"id\":{i},\"operation_name\":\"Login\",\"user_email\":\"j\\u00f6rg@example.com\",\"pad\":\"{}\"}}",
                tines_audit::timeutil::format_rfc3339(now - n + i),
                "x".repeat(pad)
            )
        })
        .collect();
    let recs = raws.iter().enumerate().map(|(i, raw)| Record {
        id: i as i64 + 1,
        created_at: now - n + i as i64 + 1,
        operation_name: "Login",
        user_id: None,
        user_email: None,
        request_ip: None,
        raw,
    });
    j.commit_window(&WindowCommit { tenant: TENANT, job: "cursor", from: 0, to: 1, fetched: n as u64 }, recs).unwrap();
    (dir, j)
}

// ---------------------------------------------------------------- Splunk HEC

/// What the HEC accepted, and how it should misbehave next.
#[derive(Debug, Default)]
pub struct HecLog {
    /// Accepted envelopes, in arrival order.
    pub envelopes: Vec<Value>,
    seen: HashSet<String>,
    /// Envelopes accepted a second time, byte for byte.
    pub duplicates: usize,
    pub requests: usize,
    pub gzipped: usize,
    pub largest_body: usize,
    pub channels: HashSet<String>,
    pub ack_polls: usize,
    acks: HashMap<u64, u32>,
    next_ack: u64,
    // Knobs.
    /// Bodies larger than this (uncompressed) get 413.
    pub max_body: usize,
    /// Answer the next N event requests with 503 code 9.
    pub fail_next: usize,
    /// Refuse envelope number n (0-based) of the next request that has it, once.
    pub reject_once_at: Option<usize>,
    /// Refuse any envelope whose event has this id, every time.
    pub poison_id: Option<i64>,
    /// Require `X-Splunk-Request-Channel` (the token has indexer ack on).
    pub require_channel: bool,
    /// With indexer ack on: an ackId turns true after this many polls for it.
    pub ack_after_polls: Option<u32>,
}

impl HecLog {
    /// Event ids in arrival order.
    pub fn ids(&self) -> Vec<i64> {
        self.envelopes.iter().map(|e| e["event"]["id"].as_i64().unwrap()).collect()
    }
}

#[derive(Clone)]
pub struct Hec {
    pub url: String,
    log: Arc<Mutex<HecLog>>,
}

impl Hec {
    pub async fn start() -> Hec {
        let log = Arc::new(Mutex::new(HecLog { max_body: 1_000_000, ..Default::default() }));
        let router = Router::new()
            .route("/services/collector/event", post(hec_event))
            .route("/services/collector/ack", post(hec_ack))
            .route("/services/collector/health", get(hec_health))
            .with_state(log.clone());
        Hec { url: serve(router).await, log }
    }

    pub fn log(&self) -> MutexGuard<'_, HecLog> {
        self.log.lock().unwrap()
    }
}

fn hec_answer(status: StatusCode, body: Value) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

/// The refusal of a request without the right `Authorization: Splunk <token>`, or `None`.
fn hec_auth(headers: &HeaderMap) -> Option<Response> {
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Some(hec_answer(StatusCode::UNAUTHORIZED, json!({"text": "Token is required", "code": 2})));
    };
    let token = match v.strip_prefix("Splunk ") {
        Some(t) if is_guid(t) => t,
        _ => return Some(hec_answer(StatusCode::UNAUTHORIZED, json!({"text": "Invalid authorization", "code": 3}))),
    };
    if token != HEC_TOKEN {
        return Some(hec_answer(StatusCode::FORBIDDEN, json!({"text": "Invalid token", "code": 4})));
    }
    None
}

/// Why envelope text is not a valid HEC event (code, text), or `None`.
fn hec_check_envelope(raw: &RawValue, poison: Option<i64>) -> Option<(i64, &'static str)> {
    let Ok(fields) = serde_json::from_str::<HashMap<String, Box<RawValue>>>(raw.get()) else {
        return Some((6, "Invalid data format"));
    };
    let Some(event) = fields.get("event") else { return Some((12, "Event field is required")) };
    if event.get() == "\"\"" || event.get() == "null" {
        return Some((13, "Event field cannot be blank"));
    }
    if let Some(t) = fields.get("time") {
        // Plain decimal seconds only: exponent form is refused.
        let t = t.get();
        let plain = !t.is_empty()
            && t.split_once('.').map_or(t.chars().all(|c| c.is_ascii_digit()), |(a, b)| {
                !a.is_empty() && a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit())
            });
        if !plain {
            return Some((6, "Invalid data format"));
        }
    }
    for key in ["host", "source", "sourcetype", "index"] {
        if let Some(v) = fields.get(key)
            && !v.get().starts_with('"')
        {
            return Some((6, "Invalid data format"));
        }
    }
    let id = serde_json::from_str::<Value>(event.get()).ok().and_then(|v| v["id"].as_i64());
    if id.is_some() && id == poison {
        return Some((6, "Invalid data format"));
    }
    None
}

async fn hec_event(State(log): State<Arc<Mutex<HecLog>>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = hec_auth(&headers) {
        return r;
    }
    let mut log = log.lock().unwrap();
    log.requests += 1;
    if log.fail_next > 0 {
        log.fail_next -= 1;
        return hec_answer(StatusCode::SERVICE_UNAVAILABLE, json!({"text": "Server is busy", "code": 9}));
    }
    let channel = headers.get("x-splunk-request-channel").and_then(|v| v.to_str().ok()).map(str::to_string);
    match &channel {
        None if log.require_channel => {
            return hec_answer(StatusCode::BAD_REQUEST, json!({"text": "Data channel is missing", "code": 10}));
        }
        Some(c) if !is_guid(c) => {
            return hec_answer(StatusCode::BAD_REQUEST, json!({"text": "Invalid data channel", "code": 11}));
        }
        Some(c) => {
            log.channels.insert(c.clone());
        }
        None => {}
    }
    let (body, gz) = match decoded(&headers, &body) {
        Ok(b) => b,
        Err(s) => return hec_answer(s, json!({"text": "Invalid data format", "code": 6})),
    };
    log.gzipped += usize::from(gz);
    log.largest_body = log.largest_body.max(body.len());
    if body.len() > log.max_body {
        let text = format!("Content-Length of {} too large (maximum is {})", body.len(), log.max_body);
        return hec_answer(StatusCode::PAYLOAD_TOO_LARGE, json!({ "text": text }));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return hec_answer(StatusCode::BAD_REQUEST, json!({"text": "No data", "code": 5}));
    }
    let mut accepted: Vec<Box<RawValue>> = Vec::new();
    let mut refused: Option<(usize, i64, &str)> = None;
    for (i, item) in serde_json::Deserializer::from_slice(&body).into_iter::<Box<RawValue>>().enumerate() {
        let Ok(raw) = item else {
            refused = Some((i, 6, "Invalid data format"));
            break;
        };
        if log.reject_once_at == Some(i) {
            log.reject_once_at = None;
            refused = Some((i, 6, "Invalid data format"));
            break;
        }
        if let Some((code, text)) = hec_check_envelope(&raw, log.poison_id) {
            refused = Some((i, code, text));
            break;
        }
        accepted.push(raw);
    }
    // What came before a refused envelope is indexed, as Splunk does.
    for raw in accepted {
        if !log.seen.insert(raw.get().to_string()) {
            log.duplicates += 1;
        }
        log.envelopes.push(serde_json::from_str(raw.get()).unwrap());
    }
    if let Some((n, code, text)) = refused {
        return hec_answer(StatusCode::BAD_REQUEST, json!({"text": text, "code": code, "invalid-event-number": n}));
    }
    if log.ack_after_polls.is_some() {
        let id = log.next_ack;
        log.next_ack += 1;
        log.acks.insert(id, 0);
        return hec_answer(StatusCode::OK, json!({"text": "Success", "code": 0, "ackId": id}));
    }
    hec_answer(StatusCode::OK, json!({"text": "Success", "code": 0}))
}

async fn hec_ack(State(log): State<Arc<Mutex<HecLog>>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = hec_auth(&headers) {
        return r;
    }
    let mut log = log.lock().unwrap();
    let Some(after) = log.ack_after_polls else {
        return hec_answer(StatusCode::BAD_REQUEST, json!({"text": "ACK is disabled", "code": 14}));
    };
    if headers.get("x-splunk-request-channel").is_none() {
        return hec_answer(StatusCode::BAD_REQUEST, json!({"text": "Data channel is missing", "code": 10}));
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return hec_answer(StatusCode::BAD_REQUEST, json!({"text": "Invalid data format", "code": 6}));
    };
    log.ack_polls += 1;
    let mut out = serde_json::Map::new();
    for id in req["acks"].as_array().into_iter().flatten().filter_map(Value::as_u64) {
        let done = match log.acks.get_mut(&id) {
            Some(polls) => {
                *polls += 1;
                *polls >= after
            }
            None => false,
        };
        out.insert(id.to_string(), Value::Bool(done));
    }
    hec_answer(StatusCode::OK, json!({ "acks": out }))
}

async fn hec_health(headers: HeaderMap) -> Response {
    match hec_auth(&headers) {
        None => hec_answer(StatusCode::OK, json!({"text": "HEC is healthy", "code": 17})),
        Some(_) => hec_answer(StatusCode::BAD_REQUEST, json!({"text": "Invalid token", "code": 4})),
    }
}

// ---------------------------------------------------------------- Datadog

pub const DD_MAX_BYTES: usize = 5_000_000;
pub const DD_MAX_ENTRIES: usize = 1_000;

#[derive(Debug, Default)]
pub struct DdLog {
    pub entries: Vec<Value>,
    seen: HashSet<String>,
    pub duplicates: usize,
    pub requests: usize,
    pub accepted_requests: usize,
    pub gzipped: usize,
    /// Entries per accepted request.
    pub sizes: Vec<usize>,
    pub largest_body: usize,
    pub too_large: usize,
    /// Statuses to answer the next requests with (429, 500, ...).
    pub fail_next: VecDeque<u16>,
    /// Uncompressed payload limit (the documented 5 MB unless lowered by a test).
    pub max_bytes: usize,
}

impl DdLog {
    pub fn ids(&self) -> Vec<i64> {
        self.entries
            .iter()
            .map(|e| serde_json::from_str::<Value>(e["message"].as_str().unwrap()).unwrap()["id"].as_i64().unwrap())
            .collect()
    }
}

#[derive(Clone)]
pub struct Datadog {
    pub url: String,
    log: Arc<Mutex<DdLog>>,
}

impl Datadog {
    pub async fn start() -> Datadog {
        let log = Arc::new(Mutex::new(DdLog { max_bytes: DD_MAX_BYTES, ..Default::default() }));
        let router = Router::new()
            .route("/api/v2/logs", post(dd_logs))
            .route("/api/v1/validate", get(dd_validate))
            .with_state(log.clone());
        Datadog { url: serve(router).await, log }
    }

    pub fn log(&self) -> MutexGuard<'_, DdLog> {
        self.log.lock().unwrap()
    }
}

fn dd_answer(status: StatusCode, body: Value) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

fn dd_key_ok(headers: &HeaderMap) -> bool {
    headers.get("dd-api-key").and_then(|v| v.to_str().ok()) == Some(DD_KEY)
}

async fn dd_logs(State(log): State<Arc<Mutex<DdLog>>>, headers: HeaderMap, body: Bytes) -> Response {
    if !dd_key_ok(&headers) {
        return dd_answer(StatusCode::FORBIDDEN, json!({"errors": ["Forbidden"]}));
    }
    let mut log = log.lock().unwrap();
    log.requests += 1;
    if let Some(s) = log.fail_next.pop_front() {
        let status = StatusCode::from_u16(s).unwrap();
        let mut r = dd_answer(status, json!({"errors": [status.canonical_reason().unwrap_or("error")]}));
        if s == 429 {
            r.headers_mut().insert("retry-after", "0".parse().unwrap());
        }
        return r;
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return dd_answer(StatusCode::BAD_REQUEST, json!({"errors": ["Content-Type must be application/json"]}));
    }
    let (body, gz) = match decoded(&headers, &body) {
        Ok(b) => b,
        Err(s) => return dd_answer(s, json!({"errors": ["bad Content-Encoding"]})),
    };
    log.gzipped += usize::from(gz);
    log.largest_body = log.largest_body.max(body.len());
    if body.len() > log.max_bytes {
        log.too_large += 1;
        return dd_answer(StatusCode::PAYLOAD_TOO_LARGE, json!({"errors": ["Payload too large"]}));
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
        return dd_answer(StatusCode::BAD_REQUEST, json!({"errors": ["body must be a JSON array of logs"]}));
    };
    if items.len() > DD_MAX_ENTRIES {
        log.too_large += 1;
        return dd_answer(StatusCode::PAYLOAD_TOO_LARGE, json!({"errors": ["Too many logs in the array"]}));
    }
    if items.iter().any(|i| !i.is_object() || !i["message"].is_string()) {
        return dd_answer(StatusCode::BAD_REQUEST, json!({"errors": ["each log needs a string message"]}));
    }
    log.accepted_requests += 1;
    log.sizes.push(items.len());
    for item in items {
        if !log.seen.insert(item.to_string()) {
            log.duplicates += 1;
        }
        log.entries.push(item);
    }
    dd_answer(StatusCode::ACCEPTED, json!({}))
}

async fn dd_validate(headers: HeaderMap) -> Response {
    if dd_key_ok(&headers) {
        dd_answer(StatusCode::OK, json!({"valid": true}))
    } else {
        dd_answer(StatusCode::FORBIDDEN, json!({"errors": ["Forbidden"]}))
    }
}

// ---------------------------------------------------------------- Webhook

pub const HOOK_HEADER: &str = "x-collector-key";
pub const HOOK_SECRET: &str = "hook-secret-9f8e7d";

#[derive(Debug, Default)]
pub struct HookLog {
    pub events: Vec<Value>,
    pub requests: usize,
    pub gzipped: usize,
    pub content_types: HashSet<String>,
    pub sizes: Vec<usize>,
    pub fail_next: usize,
}

impl HookLog {
    pub fn ids(&self) -> Vec<i64> {
        self.events.iter().map(|e| e["id"].as_i64().unwrap()).collect()
    }
}

#[derive(Clone)]
pub struct Hook {
    pub url: String,
    log: Arc<Mutex<HookLog>>,
}

impl Hook {
    pub async fn start() -> Hook {
        let log = Arc::new(Mutex::new(HookLog::default()));
        let router = Router::new().route("/receiver/v1/http/{code}", post(hook)).with_state(log.clone());
        Hook { url: format!("{}/receiver/v1/http/c0ffee", serve(router).await), log }
    }

    pub fn log(&self) -> MutexGuard<'_, HookLog> {
        self.log.lock().unwrap()
    }
}

async fn hook(State(log): State<Arc<Mutex<HookLog>>>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get(HOOK_HEADER).and_then(|v| v.to_str().ok()) != Some(HOOK_SECRET) {
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    let mut log = log.lock().unwrap();
    log.requests += 1;
    if log.fail_next > 0 {
        log.fail_next -= 1;
        // Echoes the credential, as careless collectors do in error pages.
        return (StatusCode::BAD_GATEWAY, format!("upstream down (request had {HOOK_HEADER}: {HOOK_SECRET})"))
            .into_response();
    }
    let (body, gz) = match decoded(&headers, &body) {
        Ok(b) => b,
        Err(s) => return (s, "bad encoding").into_response(),
    };
    log.gzipped += usize::from(gz);
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let events: Vec<Value> = match ct.as_str() {
        "application/json" => match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(a)) => a,
            _ => return (StatusCode::BAD_REQUEST, "expected a JSON array").into_response(),
        },
        "application/x-ndjson" => {
            let text = String::from_utf8(body).unwrap_or_default();
            if !text.ends_with('\n') {
                return (StatusCode::BAD_REQUEST, "NDJSON lines end in a newline").into_response();
            }
            match text.lines().map(serde_json::from_str).collect::<Result<Vec<Value>, _>>() {
                Ok(v) => v,
                Err(_) => return (StatusCode::BAD_REQUEST, "bad NDJSON").into_response(),
            }
        }
        _ => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported content type").into_response(),
    };
    log.content_types.insert(ct);
    log.sizes.push(events.len());
    log.events.extend(events);
    (StatusCode::OK, "ok").into_response()
}
