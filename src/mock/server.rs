//! The HTTP side: routing, auth, the real rate limit, injected faults, the
//! live-event task, and the [`MockServer`] handle the rest of the project drives.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::Response;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::generate::Odd;
use super::generate::{Event, FIRST_ID, Generator, LIVE_TAG, OpSchedule};
use super::posture::{Model, PostureChange};
use super::render::{PageMeta, Tables, push_u64, render_page};
use super::reset::{ResetListener, ResetSwitch};
use super::rng::{SplitMix64, mix};
use super::store::{Filter, Store, Window, set_bit};
use super::{Faults, MockConfig, MockStats, Quirks};
use crate::timeutil;

const FAULT_TAG: u64 = 0x4641_554C_5453_0001;
const API_PATH: &str = "/api/v1/audit_logs";
const ADMIN_USERS: &str = "/api/v1/admin/users";
const ADMIN_IP_RULES: &str = "/api/v1/admin/ip_access_control_rules";
const ADMIN_EGRESS_RULES: &str = "/api/v1/admin/action_egress_control_rules";
const MAX_PER_PAGE: i64 = 500;
const DEFAULT_PER_PAGE: i64 = 20;

/// Locks stay usable after a panicking holder: every critical section leaves the data consistent.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// At most `per_minute` accepted requests per key in any `window` (60 s), counted the
/// strictest way: a sliding window, closed at both ends (two requests exactly a window
/// apart are in one window), by the time each request reached the limit check (after the
/// emulated latency). Refused ones are not recorded.
pub(crate) struct RateLimiter {
    per_minute: u32,
    window: Duration,
    hits: HashMap<String, VecDeque<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(per_minute: u32, window: Duration) -> Self {
        RateLimiter { per_minute, window, hits: HashMap::new() }
    }

    /// `Err(secs)` is the whole seconds until the oldest request leaves the window.
    pub(crate) fn check(&mut self, key: &str, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        if !self.hits.contains_key(key) {
            self.hits.insert(key.to_string(), VecDeque::new());
        }
        let q = self.hits.get_mut(key).expect("inserted above");
        while q.front().is_some_and(|&t| now.saturating_duration_since(t) > self.window) {
            q.pop_front();
        }
        if q.len() >= self.per_minute as usize {
            let wait = self.window.saturating_sub(now.saturating_duration_since(q[0]));
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(secs.max(1));
        }
        q.push_back(now);
        Ok(())
    }
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    by_status: Mutex<BTreeMap<u16, u64>>,
    rate_limited: AtomicU64,
    injected_429: AtomicU64,
    injected_5xx: AtomicU64,
    truncated: AtomicU64,
    resets: AtomicU64,
    latency_spikes: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct Live {
    rate: f64,
    late_fraction: f64,
    max_lateness_secs: u32,
}

pub(crate) struct Shared {
    generator: Generator,
    tables: Tables,
    store: RwLock<Store>,
    keys: HashMap<String, bool>,
    after_inclusive: bool,
    before_inclusive: bool,
    next_page_string_null: bool,
    omit_next_page_number: bool,
    quirks: Quirks,
    faults: RwLock<Faults>,
    fault_seq: AtomicU64,
    limiter: Mutex<RateLimiter>,
    /// `admin/users` has its own, lower limit (500/min against audit_logs' 1000); the other
    /// admin lists the general one (5000/min). Counted per key, apart from audit logs.
    users_limiter: Mutex<RateLimiter>,
    admin_limiter: Mutex<RateLimiter>,
    /// The tenant's security state behind the admin API (see `mock::posture`).
    posture: RwLock<Model>,
    admin_forbidden: bool,
    stats: Stats,
    live_on: AtomicBool,
    live: Live,
    base_url: String,
}

impl Shared {
    pub(crate) fn generator(&self) -> &Generator {
        &self.generator
    }

    /// Unix seconds by the server's clock (ours plus the configured offset).
    pub(crate) fn now(&self) -> i64 {
        timeutil::now_secs() + self.quirks.clock_offset_secs
    }

    /// How a new record of this server renders: a share of them are system-made.
    fn odd_for(&self, rng: &mut SplitMix64) -> Odd {
        if rng.chance(self.quirks.null_fields_fraction) { Odd::NullFields } else { Odd::None }
    }

    /// Whether live events are on (scenarios stop with them).
    pub(crate) fn live_on(&self) -> bool {
        self.live_on.load(Ordering::Relaxed)
    }

    /// Appends a scripted event stamped now, by `user`, from their home address unless `ip` is given.
    pub(crate) fn push_scripted(&self, op: &str, user: usize, ip: Option<u32>, script: u8) {
        self.push_scripted_with(op, user, ip, script, |_, _| {});
    }

    /// [`Shared::push_scripted`], with `before` run on the new event (under the store's lock,
    /// so no page can serve the event before it) ahead of the model following it. Returns its id.
    fn push_scripted_with(
        &self,
        op: &str,
        user: usize,
        ip: Option<u32>,
        script: u8,
        before: impl FnOnce(&mut Model, &Event),
    ) -> Option<u64> {
        let op = self.tables.op_index(op)?;
        let u = &self.generator.tenant.users[user];
        let mut store = write(&self.store);
        let id = store.last_id() + 1;
        let created_at = self.now();
        let ip = ip.unwrap_or(u.ips[0]);
        let ev =
            Event { created_at, id, ip, op, user: user as u8, agent: u.agent, outputs: false, script, odd: Odd::None };
        {
            let mut model = write(&self.posture);
            before(&mut model, &ev);
            if model.inputs(id).is_none() {
                model.apply(&self.generator, &ev);
            }
        }
        store.insert(ev);
        Some(id)
    }

    fn snapshot(&self) -> MockStats {
        let s = &self.stats;
        MockStats {
            requests: s.requests.load(Ordering::Relaxed),
            by_status: lock(&s.by_status).clone(),
            rate_limited: s.rate_limited.load(Ordering::Relaxed),
            injected_429: s.injected_429.load(Ordering::Relaxed),
            injected_5xx: s.injected_5xx.load(Ordering::Relaxed),
            truncated: s.truncated.load(Ordering::Relaxed),
            resets: s.resets.load(Ordering::Relaxed),
            latency_spikes: s.latency_spikes.load(Ordering::Relaxed),
            events: read(&self.store).len(),
        }
    }
}

fn response(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const JSON: &str = "application/json; charset=utf-8";

fn json_error(status: StatusCode, message: &str) -> Response {
    response(status, JSON, serde_json::json!({ "error": message }).to_string())
}

fn with_retry_after(mut r: Response, secs: u64) -> Response {
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

async fn handle(State(sh): State<Arc<Shared>>, ConnectInfo(conn): ConnectInfo<ResetSwitch>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let mut r = route(&sh, &parts, &conn).await;
    // Dated by the server's clock, which need not be ours.
    if let Ok(v) = HeaderValue::from_str(&http_date(sh.now())) {
        r.headers_mut().insert(header::DATE, v);
    }
    if sh.quirks.echo_4xx && r.status().is_client_error() && parts.uri.path() == API_PATH {
        r = echo(r.status(), &parts);
    }
    r
}

/// An IMF-fixdate, as HTTP's `Date` header carries it.
pub(crate) fn http_date(secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&f).unwrap_or_default()
}

/// A 4xx page that repeats the request back, headers and all, as careless proxies do.
fn echo(status: StatusCode, parts: &Parts) -> Response {
    let mut text = format!("{status}: the request was\n{} {}\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    response(status, "text/plain; charset=utf-8", text)
}

async fn route(sh: &Arc<Shared>, parts: &Parts, conn: &ResetSwitch) -> Response {
    match parts.uri.path() {
        "/_mock/ids" => {
            let ids = read(&sh.store).ids();
            let mut out = Vec::with_capacity(2 + ids.len() * 9);
            out.push(b'[');
            for (i, id) in ids.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_u64(&mut out, id);
            }
            out.push(b']');
            response(StatusCode::OK, JSON, out)
        }
        "/_mock/stats" => response(StatusCode::OK, JSON, serde_json::to_vec(&sh.snapshot()).unwrap_or_default()),
        // For scripts: make the admin lists drift from the history, as `MockServer::set_posture_drift` does.
        "/_mock/posture/drift/off" | "/_mock/posture/drift/on" if parts.method == axum::http::Method::POST => {
            write(&sh.posture).drift = parts.uri.path().ends_with("/on");
            response(StatusCode::OK, JSON, b"{}".to_vec())
        }
        // For scripts (the soak test): pause or resume live events, as `MockServer::set_live` does.
        "/_mock/live/off" | "/_mock/live/on" if parts.method == axum::http::Method::POST => {
            sh.live_on.store(parts.uri.path().ends_with("/on"), Ordering::Relaxed);
            response(StatusCode::OK, JSON, b"{}".to_vec())
        }
        _ => {
            let r = api(sh, parts, conn).await;
            bump(&sh.stats.requests);
            *lock(&sh.stats.by_status).entry(r.status().as_u16()).or_default() += 1;
            r
        }
    }
}

/// The key from `Authorization: Bearer <key>` or, failing that, `X-User-Token`.
fn api_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, key) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
    });
    bearer
        .or_else(|| headers.get("x-user-token").and_then(|v| v.to_str().ok()).map(str::trim))
        .filter(|k| !k.is_empty())
}

/// Page links point wherever the client reached us, as Tines's point at the tenant domain.
fn base_for(headers: &HeaderMap, fallback: &str) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b)))
        .map_or_else(|| fallback.to_string(), |h| format!("http://{h}"))
}

/// One request's fault draws, all taken up front so the sequence depends only on the request's number.
struct Draws {
    spike: bool,
    err_429: bool,
    err_5xx: Option<u64>,
    err_400: bool,
    reset: bool,
    truncate: bool,
    cut: u64,
}

impl Draws {
    fn new(seed: u64, seq: u64, f: &Faults) -> Draws {
        let mut r = SplitMix64::new(mix(seed ^ FAULT_TAG, seq));
        let spike = r.chance(f.latency_spike_rate);
        let err_429 = r.chance(f.rate_429);
        let err_5xx = r.chance(f.rate_5xx);
        let kind = r.below(3);
        let reset = r.chance(f.rate_reset);
        let truncate = r.chance(f.rate_truncated);
        let cut = r.next_u64();
        // Drawn last, so the other faults of a seed stay where they were before it existed.
        let err_400 = r.chance(f.rate_400);
        Draws { spike, err_429, err_5xx: err_5xx.then_some(kind), err_400, reset, truncate, cut }
    }
}

struct Query {
    window: Window,
    filter: Filter,
    per_page: usize,
    page: usize,
}

fn parse_time(name: &str, v: &str) -> Result<i64, String> {
    timeutil::parse_rfc3339(v).ok_or_else(|| {
        format!("Invalid {name} parameter {v:?}: expected an RFC 3339 timestamp such as 2024-01-31T12:00:00Z")
    })
}

fn parse_int(name: &str, v: &str) -> Result<i64, String> {
    v.trim().parse().map_err(|_| format!("Invalid {name} parameter {v:?}: expected an integer"))
}

fn parse_query(sh: &Shared, raw: &str) -> Result<Query, String> {
    let mut window =
        Window { after_inclusive: sh.after_inclusive, before_inclusive: sh.before_inclusive, ..Window::default() };
    let mut filter = Filter::default();
    let (mut per_page, mut page) = (DEFAULT_PER_PAGE, 1);
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "after" => window.after = Some(parse_time("after", &v)?),
            "before" => window.before = Some(parse_time("before", &v)?),
            "per_page" => per_page = parse_int("per_page", &v)?,
            "page" => {
                page = match parse_int("page", &v) {
                    Ok(p) => p,
                    // The real API answers a page it cannot parse with page 1.
                    Err(_) if sh.quirks.first_page_for_bad_page => 1,
                    Err(e) => return Err(e),
                }
            }
            "user_id" | "user_id[]" => {
                let id = parse_int("user_id", &v)?;
                let set = filter.users.get_or_insert([0; 4]);
                if let Some(i) = u64::try_from(id).ok().and_then(|id| sh.tables.user_index(id)) {
                    set_bit(set, usize::from(i));
                }
            }
            "operation_name" | "operation_name[]" => {
                let words = sh.generator.ops.len().div_ceil(64);
                let set = filter.ops.get_or_insert_with(|| vec![0; words]);
                // Unknown names are not an error: the real API treats them as an open set.
                if let Some(i) = sh.tables.op_index(&v) {
                    set_bit(set, usize::from(i));
                }
            }
            _ => {}
        }
    }
    Ok(Query {
        window,
        filter,
        per_page: per_page.clamp(1, MAX_PER_PAGE) as usize,
        page: usize::try_from(page.max(1)).unwrap_or(usize::MAX),
    })
}

async fn api(sh: &Shared, parts: &Parts, conn: &ResetSwitch) -> Response {
    let faults = read(&sh.faults).clone();
    let draws = Draws::new(sh.generator.seed, sh.fault_seq.fetch_add(1, Ordering::Relaxed), &faults);
    let mut delay = faults.latency;
    if draws.spike {
        bump(&sh.stats.latency_spikes);
        delay += faults.latency_spike;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    if [ADMIN_USERS, ADMIN_IP_RULES, ADMIN_EGRESS_RULES].contains(&parts.uri.path()) && parts.method == Method::GET {
        return admin(sh, parts);
    }
    if parts.uri.path() != API_PATH || parts.method != Method::GET {
        return json_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let Some(key) = api_key(&parts.headers) else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "Missing API key: send Authorization: Bearer <key> or X-User-Token",
        );
    };
    match sh.keys.get(key) {
        None => return json_error(StatusCode::UNAUTHORIZED, "Invalid API key"),
        Some(false) => {
            return json_error(
                StatusCode::FORBIDDEN,
                "This API key is not allowed to read audit logs (requires AUDIT_LOG_READ or tenant owner)",
            );
        }
        Some(true) => {}
    }
    if let Err(secs) = lock(&sh.limiter).check(key, Instant::now()) {
        bump(&sh.stats.rate_limited);
        return with_retry_after(
            json_error(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded for this API key"),
            secs,
        );
    }
    if draws.err_429 {
        bump(&sh.stats.injected_429);
        let r = json_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        return with_retry_after(r, faults.fault_retry_after_secs);
    }
    if let Some(kind) = draws.err_5xx {
        bump(&sh.stats.injected_5xx);
        return match kind {
            0 => json_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
            1 => response(
                StatusCode::BAD_GATEWAY,
                "text/html",
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
            ),
            _ => response(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/html",
                "<!DOCTYPE html><html><head><title>Maintenance</title></head><body><h1>We'll be back shortly.</h1></body></html>",
            ),
        };
    }

    if draws.err_400 {
        return json_error(StatusCode::BAD_REQUEST, "Bad Request");
    }

    let mut q = match parse_query(sh, parts.uri.query().unwrap_or("")) {
        Ok(q) => q,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let (count, mut events) = read(&sh.store).page(&q.window, &q.filter, q.per_page, q.page);
    if events.is_empty() && q.page > 1 && count > 0 && sh.quirks.first_page_for_bad_page {
        q.page = 1;
        events = read(&sh.store).page(&q.window, &q.filter, q.per_page, 1).1;
    }
    let skewed = !sh.quirks.count_skew_first_page_only || q.page == 1;
    let reported = if skewed { (count as i64 + sh.quirks.count_skew).max(0) as usize } else { count };
    let base = base_for(&parts.headers, &sh.base_url);
    let meta = PageMeta {
        base: &base,
        per_page: q.per_page,
        page: q.page,
        count: reported,
        omit_count: sh.quirks.omit_count,
        next_page_string_null: sh.next_page_string_null,
        omit_next_page_number: sh.omit_next_page_number,
    };
    let mut body = render_page(&events, &sh.generator, &sh.tables, &meta, &read(&sh.posture));

    let cut = 1 + (draws.cut % (body.len() as u64 - 1)) as usize;
    if draws.reset {
        bump(&sh.stats.resets);
        conn.arm(cut as u64);
        return response(StatusCode::OK, JSON, body);
    }
    if draws.truncate {
        bump(&sh.stats.truncated);
        body.truncate(cut);
    }
    response(StatusCode::OK, JSON, body)
}

/// One page of an admin list, with `meta` as the audit-log endpoint writes it.
fn admin_page(base: &str, path: &str, key: &str, items: Vec<serde_json::Value>, raw_query: &str) -> Response {
    let (mut per_page, mut page) = (DEFAULT_PER_PAGE, 1i64);
    let mut extra = String::new();
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        match k.as_ref() {
            "per_page" => per_page = v.trim().parse().unwrap_or(DEFAULT_PER_PAGE),
            "page" => page = v.trim().parse().unwrap_or(1),
            "filter" => extra = format!("filter={v}&"),
            _ => {}
        }
    }
    let per_page = per_page.clamp(1, MAX_PER_PAGE) as usize;
    let page = page.max(1) as usize;
    let count = items.len();
    let pages = count.div_ceil(per_page);
    let link = |p: usize| serde_json::Value::from(format!("{base}{path}?{extra}per_page={per_page}&page={p}"));
    let chunk: Vec<serde_json::Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let body = serde_json::json!({
        key: chunk,
        "meta": {
            "current_page": link(page),
            "previous_page": if page > 1 { link(page - 1) } else { serde_json::Value::Null },
            "next_page": if page < pages { link(page + 1) } else { serde_json::Value::Null },
            "next_page_number": if page < pages { serde_json::Value::from(page + 1) } else { serde_json::Value::Null },
            "per_page": per_page,
            "pages": pages,
            "count": count,
        }
    });
    response(StatusCode::OK, JSON, body.to_string())
}

/// `GET /api/v1/admin/users`, `.../ip_access_control_rules`, `.../action_egress_control_rules`.
fn admin(sh: &Shared, parts: &Parts) -> Response {
    let Some(key) = api_key(&parts.headers) else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "Missing API key: send Authorization: Bearer <key> or X-User-Token",
        );
    };
    if !sh.keys.contains_key(key) {
        return json_error(StatusCode::UNAUTHORIZED, "Invalid API key");
    }
    if sh.admin_forbidden {
        return json_error(StatusCode::FORBIDDEN, "This API key's user is not a tenant admin");
    }
    let path = parts.uri.path();
    let limiter = if path == ADMIN_USERS { &sh.users_limiter } else { &sh.admin_limiter };
    if let Err(secs) = lock(limiter).check(key, Instant::now()) {
        bump(&sh.stats.rate_limited);
        return with_retry_after(
            json_error(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded for this API key"),
            secs,
        );
    }
    let query = parts.uri.query().unwrap_or("");
    let now = sh.now();
    let model = read(&sh.posture);
    let (list_key, items) = match path {
        ADMIN_USERS => {
            let filter =
                url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "filter").map(|(_, v)| v.into_owned());
            let owners_only = match filter.as_deref() {
                None | Some("") => false,
                Some("TENANT_OWNER") => true,
                Some(other) => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        &format!("Invalid filter {other:?}: expected TENANT_OWNER"),
                    );
                }
            };
            ("admin/users", model.user_list(&sh.generator, owners_only, now))
        }
        ADMIN_IP_RULES => ("admin/ip_access_control_rules", model.rule_list(false, now)),
        _ => ("admin/action_egress_control_rules", model.rule_list(true, now)),
    };
    drop(model);
    admin_page(&base_for(&parts.headers, &sh.base_url), path, list_key, items, query)
}

/// Appends live events at `rate` per second, accounting fractional events across ticks.
async fn live_loop(sh: Arc<Shared>) {
    let rate = sh.live.rate;
    let tick = Duration::from_secs_f64((1.0 / rate).clamp(0.01, 0.25));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rng = SplitMix64::new(mix(sh.generator.seed, LIVE_TAG));
    let mut schedule = OpSchedule::weighted();
    let mut last = Instant::now();
    let mut due = 0.0;
    loop {
        interval.tick().await;
        let now = Instant::now();
        let elapsed = now.duration_since(last);
        last = now;
        if !sh.live_on.load(Ordering::Relaxed) {
            // Paused time is not owed: resuming must not release a flood.
            due = 0.0;
            continue;
        }
        due += rate * elapsed.as_secs_f64();
        let n = due.floor();
        due -= n;
        if n < 1.0 {
            continue;
        }
        let now_secs = sh.now();
        let mut store = write(&sh.store);
        for _ in 0..n as u64 {
            let id = store.last_id() + rng.between(1, 3);
            let late = rng.chance(sh.live.late_fraction) && sh.live.max_lateness_secs > 0;
            let created_at =
                if late { now_secs - rng.between(1, u64::from(sh.live.max_lateness_secs)) as i64 } else { now_secs };
            let op = schedule.draw(&sh.generator, &mut rng);
            let mut model = write(&sh.posture);
            let op = model.fit_live(op);
            let mut ev = sh.generator.event(&mut rng, created_at, id, op);
            ev.odd = sh.odd_for(&mut rng);
            model.apply(&sh.generator, &ev);
            drop(model);
            store.insert(ev);
        }
    }
}

/// Marks the history's odd records: a share system-made, a few without an id, chosen by seed.
fn mark_odd(events: &mut [Event], seed: u64, q: &Quirks) {
    if events.is_empty() {
        return;
    }
    let mut rng = SplitMix64::new(mix(seed, 0x4F44_4400_0000_0001));
    if q.null_fields_fraction > 0.0 {
        for ev in events.iter_mut() {
            if rng.chance(q.null_fields_fraction) {
                ev.odd = Odd::NullFields;
            }
        }
    }
    for _ in 0..q.records_without_id.min(events.len()) {
        let i = rng.below(events.len() as u64) as usize;
        events[i].odd = Odd::NoId;
    }
}

fn check_probability(name: &str, p: f64) -> anyhow::Result<()> {
    ensure!((0.0..=1.0).contains(&p), "{name} must be a probability between 0 and 1, not {p}");
    Ok(())
}

fn check_faults(f: &Faults) -> anyhow::Result<()> {
    check_probability("rate_429", f.rate_429)?;
    check_probability("rate_5xx", f.rate_5xx)?;
    check_probability("rate_400", f.rate_400)?;
    check_probability("rate_truncated", f.rate_truncated)?;
    check_probability("rate_reset", f.rate_reset)?;
    check_probability("latency_spike_rate", f.latency_spike_rate)
}

/// A running emulator. Dropping it stops serving too; [`MockServer::shutdown`] does so gracefully.
pub struct MockServer {
    shared: Arc<Shared>,
    base_url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    live: Option<JoinHandle<()>>,
    scenario: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Generates the tenant's history and starts serving on `listener`.
    pub async fn start(config: MockConfig, listener: tokio::net::TcpListener) -> anyhow::Result<MockServer> {
        check_faults(&config.faults)?;
        check_probability("late_fraction", config.late_fraction)?;
        check_probability("null_fields_fraction", config.quirks.null_fields_fraction)?;
        ensure!(config.live_rate.is_finite() && config.live_rate >= 0.0, "live_rate must be a non-negative number");
        ensure!(
            config.rate_limit_per_minute == 0 || !config.rate_window.is_zero(),
            "rate_window must be longer than zero"
        );

        let mut addr = listener.local_addr().context("reading the listener's address")?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let base_url = format!("http://{addr}");

        let anchor = config.anchor.unwrap_or_else(|| timeutil::now_secs() + config.quirks.clock_offset_secs);
        let (seed, history, span) = (config.seed, config.history, config.history_span.as_secs());
        let burst = config.burst.map(|b| (b.count, anchor - b.secs_ago as i64));
        let tenant_id = config.tenant_id;
        let quirks = config.quirks.clone();
        // A million events take a moment to generate; keep that off the async workers.
        let (generator, tables, events, mut model) = tokio::task::spawn_blocking(move || {
            let generator = Generator::new(seed);
            let tables = Tables::new(&generator, tenant_id);
            let mut events = generator.history(history, span, anchor, burst);
            let model = Model::build(&generator, &tables, &mut events);
            mark_odd(&mut events, seed, &quirks);
            (generator, tables, events, model)
        })
        .await
        .context("generating the mock history")?;

        model.drift = config.posture_drift;
        let shared = Arc::new(Shared {
            generator,
            tables,
            store: RwLock::new(Store::new(events, FIRST_ID)),
            keys: config.keys.iter().map(|k| (k.key.clone(), k.can_read_audit_logs)).collect(),
            after_inclusive: config.after_inclusive,
            before_inclusive: config.before_inclusive,
            next_page_string_null: config.next_page_string_null,
            omit_next_page_number: config.omit_next_page_number,
            quirks: config.quirks,
            faults: RwLock::new(config.faults),
            fault_seq: AtomicU64::new(0),
            limiter: Mutex::new(RateLimiter::new(config.rate_limit_per_minute, config.rate_window)),
            users_limiter: Mutex::new(RateLimiter::new(config.rate_limit_per_minute / 2, config.rate_window)),
            admin_limiter: Mutex::new(RateLimiter::new(
                config.rate_limit_per_minute.saturating_mul(5),
                config.rate_window,
            )),
            posture: RwLock::new(model),
            admin_forbidden: config.admin_forbidden,
            stats: Stats::default(),
            live_on: AtomicBool::new(true),
            live: Live {
                rate: config.live_rate,
                late_fraction: config.late_fraction,
                max_lateness_secs: config.max_lateness_secs,
            },
            base_url: base_url.clone(),
        });

        let router = Router::new().fallback(handle).with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let service = router.into_make_service_with_connect_info::<ResetSwitch>();
        let serve = axum::serve(ResetListener(listener), service).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        let server = tokio::spawn(async move { serve.await });
        let live = (config.live_rate > 0.0).then(|| tokio::spawn(live_loop(shared.clone())));
        let scenario = config.scenarios.then(|| tokio::spawn(super::scenario::run(shared.clone())));
        tracing::debug!(%base_url, events = shared.snapshot().events, "mock Tines API started");
        Ok(MockServer { shared, base_url, stop: Some(stop), server: Some(server), live, scenario })
    }

    /// `http://127.0.0.1:PORT` (an unspecified bind address is reported as 127.0.0.1).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Every stored id, ascending.
    pub fn ids(&self) -> Vec<u64> {
        read(&self.shared.store).ids()
    }

    /// Appends an event stamped now: `operation_name` by the tenant's `user`-th
    /// user (an index, wrapped), from their home address, or from `country` if
    /// given. For tests that need a precise sequence of events.
    pub fn push_event(&self, operation_name: &str, user: usize, country: Option<&str>) {
        let users = self.shared.generator().tenant.users.len();
        let country = country.filter(|c| super::tenant::country_ranges().iter().any(|(k, _)| k == c));
        let ip = country.map(|c| super::tenant::ip_in(c, &mut SplitMix64::new(self.event_count() as u64)));
        self.shared.push_scripted(operation_name, user % users, ip, 0);
    }

    /// Appends an audit record of `change`, made now by the tenant's `user`-th user (an index,
    /// wrapped) from their home address, and changes the tenant's state to follow it (what the
    /// admin API lists). Returns the record's id; `None` when it names a rule the tenant does
    /// not hold (nothing is appended).
    pub fn push_posture(&self, user: usize, change: PostureChange) -> Option<u64> {
        let users = self.shared.generator().tenant.users.len();
        let at = self.shared.now();
        let (op, inputs) = write(&self.shared.posture).script(&self.shared.generator, &change, at)?;
        self.shared.push_scripted_with(&op, user % users, None, 0, |model, ev| model.keep_inputs(ev.id, &inputs))
    }

    /// Makes the admin API's lists drift from the history (or stop drifting): see
    /// [`MockConfig::posture_drift`](super::MockConfig::posture_drift).
    pub fn set_posture_drift(&self, on: bool) {
        write(&self.shared.posture).drift = on;
    }

    /// Appends `count` events dated `lateness_secs` before the server's now, as
    /// records that reach the API late do (ids still grow: they are new).
    pub fn push_late(&self, count: usize, lateness_secs: i64) {
        let mut rng = SplitMix64::new(mix(self.shared.generator.seed ^ LIVE_TAG, self.event_count() as u64));
        let mut schedule = OpSchedule::weighted();
        let created_at = self.shared.now() - lateness_secs;
        let mut store = write(&self.shared.store);
        let mut model = write(&self.shared.posture);
        for _ in 0..count {
            let id = store.last_id() + 1;
            let op = model.fit_live(schedule.draw(&self.shared.generator, &mut rng));
            let ev = self.shared.generator.event(&mut rng, created_at, id, op);
            model.apply(&self.shared.generator, &ev);
            store.insert(ev);
        }
    }

    /// Ids of the records sent without an `id` field (a collector can only quarantine them).
    pub fn ids_without_id(&self) -> Vec<u64> {
        read(&self.shared.store).ids_where(|e| e.odd == Odd::NoId)
    }

    /// The server's clock, unix seconds.
    pub fn now(&self) -> i64 {
        self.shared.now()
    }

    /// Every stored record as the API renders it, oldest first (for tests and checks).
    pub fn records(&self) -> Vec<serde_json::Value> {
        let store = read(&self.shared.store);
        let (_, mut events) = store.page(&Window::default(), &Filter::default(), usize::MAX, 1);
        drop(store);
        events.reverse();
        let meta = PageMeta {
            base: &self.base_url,
            per_page: events.len().max(1),
            page: 1,
            count: events.len(),
            omit_count: false,
            next_page_string_null: false,
            omit_next_page_number: false,
        };
        let body =
            render_page(&events, &self.shared.generator, &self.shared.tables, &meta, &read(&self.shared.posture));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        v["audit_logs"].as_array().cloned().unwrap_or_default()
    }

    pub fn event_count(&self) -> usize {
        read(&self.shared.store).len()
    }

    /// Pauses (`false`) or resumes live events.
    pub fn set_live(&self, on: bool) {
        self.shared.live_on.store(on, Ordering::Relaxed);
    }

    /// Replaces the fault settings for subsequent requests. Invalid probabilities are clamped to `0..=1`.
    pub fn set_faults(&self, mut faults: Faults) {
        for p in [
            &mut faults.rate_429,
            &mut faults.rate_5xx,
            &mut faults.rate_truncated,
            &mut faults.rate_reset,
            &mut faults.latency_spike_rate,
        ] {
            *p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        }
        *write(&self.shared.faults) = faults;
    }

    pub fn newest_created_at(&self) -> Option<i64> {
        read(&self.shared.store).newest_created_at()
    }

    pub fn stats(&self) -> MockStats {
        self.shared.snapshot()
    }

    /// Stops live events and the listener, giving open requests up to 5 s to finish.
    pub async fn shutdown(mut self) {
        if let Some(live) = self.live.take() {
            live.abort();
        }
        if let Some(s) = self.scenario.take() {
            s.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut server).await.is_err()
        {
            server.abort();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            live.abort();
        }
        if let Some(s) = self.scenario.take() {
            s.abort();
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_refuses_the_n_plus_first_and_says_when_to_retry() {
        let mut rl = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(rl.check("k", t0 + Duration::from_secs(i * 10)), Ok(()));
        }
        // Oldest hit was at t0; at t0+25.5 s it leaves the window in 34.5 s → 35.
        assert_eq!(rl.check("k", t0 + Duration::from_millis(25_500)), Err(35));
        assert_eq!(rl.check("other", t0 + Duration::from_secs(25)), Ok(()));
        // Closed at both ends: a request exactly a window after the oldest is still in its window.
        assert_eq!(rl.check("k", t0 + Duration::from_secs(60)), Err(1));
        assert_eq!(rl.check("k", t0 + Duration::from_millis(60_001)), Ok(()));
        assert_eq!(rl.check("k", t0 + Duration::from_secs(61)), Err(9));
        assert_eq!(RateLimiter::new(0, Duration::from_secs(60)).check("k", t0), Ok(()));
        // A shorter window, for tests that must not take minutes.
        let mut rl = RateLimiter::new(2, Duration::from_secs(2));
        assert_eq!((rl.check("k", t0), rl.check("k", t0), rl.check("k", t0)), (Ok(()), Ok(()), Err(2)));
        assert_eq!(rl.check("k", t0 + Duration::from_millis(2_001)), Ok(()));
    }

    #[test]
    fn keys_come_from_bearer_or_user_token() {
        let mut h = HeaderMap::new();
        assert_eq!(api_key(&h), None);
        h.insert("x-user-token", HeaderValue::from_static("tok"));
        assert_eq!(api_key(&h), Some("tok"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer  abc "));
        assert_eq!(api_key(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(api_key(&h), Some("tok"));
    }
}
