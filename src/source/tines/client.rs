//! HTTP client for one tenant's audit-log endpoint: builds page URLs itself,
//! stays under the per-key rate limit with a sliding-window pacer, and retries what
//! is worth retrying (429, 5xx, timeouts, broken bodies) with exponential
//! backoff and full jitter, honouring `Retry-After`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, DATE, HeaderValue, RETRY_AFTER};
use tokio::time::Instant;

use super::endpoint::Endpoint;
use super::wire::{Page, WireError};
use crate::secret::Secret;
use crate::timeutil::format_rfc3339;

/// How requests are paced and retried.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Requests per API key in any `rate_window` (60 s: per minute); 0 turns the pacer off.
    pub requests_per_minute: u32,
    /// The window the API counts requests in.
    pub rate_window: Duration,
    /// Added to the window: a request is counted by the API when it arrives, not when we
    /// send it, so two sends a window apart can arrive less than that apart by however much
    /// their latencies (and our scheduling) differ. Never zero (at least 1 ms is used): two
    /// sends exactly a window apart share a window closed at both ends.
    pub rate_margin: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub request_timeout: Duration,
    /// A clock difference with the API beyond this many seconds is warned about (the settle delay).
    pub clock_tolerance_secs: u64,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            requests_per_minute: 1000,
            rate_window: Duration::from_secs(60),
            rate_margin: Duration::from_millis(500),
            max_attempts: 8,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            clock_tolerance_secs: 10,
        }
    }
}

/// A request that failed for good.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "authentication failed (401) for {tenant}: the API key is invalid, expired or revoked; create a new key in Tines under Settings > API keys and update the configuration"
    )]
    Unauthorized { tenant: String },
    #[error(
        "permission denied (403) for {tenant}: the API key cannot read audit logs; grant its user the AUDIT_LOG_READ tenant permission (Settings > Admin > User administration) or use a tenant owner key"
    )]
    Forbidden { tenant: String },
    #[error(
        "not found (404) at {url}: the tenant domain is probably wrong; check it against the address bar of your Tines tenant (for example acme.tines.com)"
    )]
    NotFound { url: String },
    #[error("cannot reach {host}: {detail}; check the domain, DNS, proxy and firewall")]
    Unreachable { host: String, detail: String },
    #[error("the API refused the query (400) for {tenant}: {detail}")]
    BadRequest { tenant: String, detail: String },
    #[error("giving up on {tenant} after {attempts} attempts; last error: {last}")]
    Exhausted { tenant: String, attempts: u32, last: String },
}

/// One page request: the window `[after, before]` as sent, plus filters.
#[derive(Debug, Clone)]
pub struct PageQuery<'a> {
    pub after: i64,
    pub before: i64,
    pub page: u64,
    pub per_page: u32,
    pub user_ids: &'a [u64],
    pub operation_names: &'a [String],
}

/// Counters shared by every request of a client, read by progress and metrics.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub rate_limited: AtomicU64,
    pub server_errors: AtomicU64,
    pub transport_errors: AtomicU64,
    pub limiter_wait_ms: AtomicU64,
}

/// The API's clock, read from the `Date` header of its answers. Records are
/// dated by the API's clock, so windows must be cut by it: cut by ours, a
/// clock behind the API's leaves windows open to new records, and one ahead
/// moves the cursor past records the API has not dated yet.
#[derive(Debug)]
pub struct ApiClock {
    /// Recent samples of API time minus local time, in seconds. A `Date` is
    /// whole seconds written before we read it, so each sample is at most the
    /// true offset: their maximum is the closest estimate that never puts the
    /// API's "now" later than it is. Only recent ones count, so a server clock
    /// stepped back is followed within a few dozen answers.
    samples: Mutex<std::collections::VecDeque<f64>>,
    /// The offset last warned about (i64::MIN before any warning).
    warned: AtomicI64,
    /// A request was made to learn the clock (an API without `Date` is asked once).
    asked: AtomicBool,
}

const CLOCK_SAMPLES: usize = 64;

impl ApiClock {
    fn new() -> Self {
        ApiClock { samples: Mutex::default(), warned: AtomicI64::new(i64::MIN), asked: AtomicBool::new(false) }
    }

    /// Takes a `Date` header seen at local time `local` (unix seconds, fractional);
    /// returns the offset now estimated.
    fn observe(&self, header: Option<&HeaderValue>, local: f64) -> Option<f64> {
        let date = parse_http_date(header?.to_str().ok()?)?;
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == CLOCK_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(date as f64 - local);
        samples.iter().copied().reduce(f64::max)
    }

    fn offset_exact(&self) -> Option<f64> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().reduce(f64::max)
    }

    /// API time minus local time in whole seconds (rounded), once an answer has told it.
    pub fn offset(&self) -> Option<i64> {
        self.offset_exact().map(|o| o.round() as i64)
    }

    /// Now by the API's clock, rounded down (by ours until an answer carried a `Date`).
    pub fn now(&self) -> i64 {
        let local = local_now();
        (local + self.offset_exact().unwrap_or(0.0)).floor() as i64
    }
}

fn local_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// An HTTP `Date` (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) in unix seconds.
pub fn parse_http_date(v: &str) -> Option<i64> {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = time::PrimitiveDateTime::parse(v.trim(), &f).ok()?;
    Some(t.assume_utc().unix_timestamp())
}

/// At most `limit` sends in any window of `span`, allowing bursts: a send may go once
/// the `limit`-th send before it is `span` old, so a slot left unused (the collector
/// waiting for a probe or a commit) is spent later in the same window instead of being
/// lost, as a token bucket with a burst of 1 loses it. Send times are reserved in order,
/// so concurrent callers each get their own slot.
///
/// It starts as if the key had been used at the steady rate (`limit` per `span`) for the
/// last window: a restarted process, whose predecessor's requests the API still counts,
/// paces from its first request instead of bursting into a 429.
#[derive(Debug)]
pub struct SlidingWindow {
    span: Duration,
    /// The last `limit` reserved send times, oldest first (never empty).
    sends: VecDeque<Instant>,
}

impl SlidingWindow {
    /// `limit` must be at least 1.
    pub fn new(limit: u32, span: Duration, now: Instant) -> Self {
        let limit = limit.max(1);
        let sends = (0..limit)
            .map(|i| {
                let ago = span - span.mul_f64(f64::from(i) / f64::from(limit));
                // A monotonic clock younger than the window: count those slots as used just now.
                now.checked_sub(ago).unwrap_or(now)
            })
            .collect();
        SlidingWindow { span, sends }
    }

    /// Reserves the earliest send time at or after `now` that keeps every window of
    /// `span` at `limit` sends or fewer, and returns it.
    pub fn reserve(&mut self, now: Instant) -> Instant {
        let oldest = self.sends.pop_front().expect("a window holds at least one send");
        let at = now.max(oldest + self.span);
        self.sends.push_back(at);
        at
    }
}

/// Pacing shared by every client using the same key: the sliding window and a "hold
/// until" instant set by the server's `Retry-After`.
struct KeyPacer {
    window: Option<Mutex<SlidingWindow>>,
    hold_until: Mutex<Option<Instant>>,
}

type Pacers = Mutex<HashMap<(String, u32, Duration), Arc<KeyPacer>>>;

fn pacer_for(key: &Secret, s: &ClientSettings) -> Arc<KeyPacer> {
    static PACERS: OnceLock<Pacers> = OnceLock::new();
    let span = s.rate_window + s.rate_margin.max(Duration::from_millis(1));
    let mut map = PACERS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    map.entry((key.fingerprint(), s.requests_per_minute, span))
        .or_insert_with(|| {
            // `span` is longer than the API's window by the margin, so a server counting any
            // window of that length (sliding, or fixed minutes) never sees more than the limit.
            let window = (s.requests_per_minute > 0)
                .then(|| Mutex::new(SlidingWindow::new(s.requests_per_minute, span, Instant::now())));
            Arc::new(KeyPacer { window, hold_until: Mutex::new(None) })
        })
        .clone()
}

/// The client of one tenant.
#[derive(Clone)]
pub struct TinesClient {
    http: reqwest::Client,
    tenant: String,
    endpoint: Endpoint,
    auth: HeaderValue,
    pacer: Arc<KeyPacer>,
    settings: ClientSettings,
    pub stats: Arc<ClientStats>,
    pub clock: Arc<ApiClock>,
}

enum Attempt<T> {
    Done(T),
    Fatal(FetchError),
    Retry { why: String, after: Option<Duration>, unreachable: bool },
}

impl TinesClient {
    pub fn new(tenant: &str, endpoint: Endpoint, key: &Secret, settings: ClientSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tines-audit/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(settings.request_timeout)
            .https_only(endpoint.base().scheme() == "https")
            .build()?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
            anyhow::anyhow!("the API key for {tenant} contains characters that cannot be sent in a header")
        })?;
        auth.set_sensitive(true);
        Ok(TinesClient {
            http,
            tenant: tenant.to_string(),
            endpoint,
            auth,
            pacer: pacer_for(key, &settings),
            settings,
            stats: Arc::default(),
            clock: Arc::new(ApiClock::new()),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Now by the API's clock. Until an answer has carried a `Date`, one small
    /// request asks (it also proves the tenant, the key and its permission); an
    /// API that sends no `Date` leaves us on our own clock.
    pub async fn api_now(&self) -> Result<i64, FetchError> {
        if self.clock.offset().is_none() && !self.clock.asked.swap(true, Ordering::Relaxed) {
            let now = crate::timeutil::now_secs();
            let q =
                PageQuery { after: now - 1, before: now, page: 1, per_page: 1, user_ids: &[], operation_names: &[] };
            if let Err(e) = self.fetch_page(&q).await {
                self.clock.asked.store(false, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(self.clock.now())
    }

    fn url(&self, q: &PageQuery<'_>) -> url::Url {
        let mut url = self.endpoint.audit_logs_url();
        {
            let mut qp = url.query_pairs_mut();
            qp.append_pair("after", &format_rfc3339(q.after));
            qp.append_pair("before", &format_rfc3339(q.before));
            for u in q.user_ids {
                qp.append_pair("user_id[]", &u.to_string());
            }
            for o in q.operation_names {
                qp.append_pair("operation_name[]", o);
            }
            qp.append_pair("per_page", &q.per_page.to_string());
            qp.append_pair("page", &q.page.to_string());
        }
        url
    }

    async fn pace(&self) {
        let hold = *self.pacer.hold_until.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        if let Some(until) = hold
            && until > started
        {
            tokio::time::sleep_until(until).await;
        }
        if let Some(w) = &self.pacer.window {
            let at = w.lock().unwrap_or_else(|p| p.into_inner()).reserve(Instant::now());
            tokio::time::sleep_until(at).await;
        }
        let waited = started.elapsed();
        self.stats.limiter_wait_ms.fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
        crate::metrics::metrics()
            .rate_limiter_wait_seconds
            .get_or_create(&crate::metrics::tenant(&self.tenant))
            .inc_by(waited.as_secs_f64());
    }

    /// Reads the API's clock off an answer; warns when it is further from ours
    /// than the settle delay can absorb (and again whenever it moves that much).
    fn note_clock(&self, date: Option<&HeaderValue>) {
        let Some(offset) = self.clock.observe(date, local_now()) else { return };
        let offset = offset.round() as i64;
        crate::metrics::metrics()
            .api_clock_offset_seconds
            .get_or_create(&crate::metrics::tenant(&self.tenant))
            .set(offset);
        let warned = self.clock.warned.load(Ordering::Relaxed);
        let off_by = offset.unsigned_abs();
        if off_by > self.settings.clock_tolerance_secs
            && (warned == i64::MIN || offset.abs_diff(warned) > self.settings.clock_tolerance_secs)
        {
            self.clock.warned.store(offset, Ordering::Relaxed);
            let (by, way) = if offset > 0 { (offset, "ahead of") } else { (-offset, "behind") };
            tracing::warn!(
                tenant = %self.tenant,
                offset_secs = offset,
                "the API's clock is {by} s {way} this machine's; collection follows the API's clock, so nothing is lost, but check this machine's time synchronisation (NTP)"
            );
        }
    }

    fn hold_all(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut h = self.pacer.hold_until.lock().unwrap_or_else(|p| p.into_inner());
        if h.is_none_or(|cur| cur < until) {
            *h = Some(until);
        }
    }

    /// Fetches one page, retrying transient failures.
    pub async fn fetch_page(&self, q: &PageQuery<'_>) -> Result<Page, FetchError> {
        self.fetch(&self.url(q), Page::parse).await
    }

    /// `GET` of another endpoint of the tenant (`api/v1/admin/users`, ...) with `query`,
    /// paced with the audit-log requests of the same key and retried the same way. The
    /// answer is any JSON document; 401, 403 and 404 are final, as for audit logs.
    pub async fn fetch_json(&self, path: &str, query: &[(&str, String)]) -> Result<serde_json::Value, FetchError> {
        let mut url = self.endpoint.base().join(path).map_err(|e| FetchError::BadRequest {
            tenant: self.tenant.clone(),
            detail: format!("{path} is not a path: {e}"),
        })?;
        if !query.is_empty() {
            let mut qp = url.query_pairs_mut();
            for (k, v) in query {
                qp.append_pair(k, v);
            }
        }
        self.fetch(&url, |body| {
            serde_json::from_str(&body).map_err(|e| WireError::NotAPage(format!("the answer is not JSON: {e}")))
        })
        .await
    }

    /// One request, retried while the failure is transient; `parse` reads a 200's body.
    async fn fetch<T: Send + 'static>(
        &self,
        url: &url::Url,
        parse: fn(String) -> Result<T, WireError>,
    ) -> Result<T, FetchError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.pace().await;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let (why, after, unreachable) = match self.attempt(url, parse).await {
                Attempt::Done(page) => return Ok(page),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry { why, after, unreachable } => (why, after, unreachable),
            };
            if attempt >= self.settings.max_attempts {
                return Err(if unreachable {
                    FetchError::Unreachable { host: self.endpoint.host().to_string(), detail: why }
                } else {
                    FetchError::Exhausted { tenant: self.tenant.clone(), attempts: attempt, last: why }
                });
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            crate::metrics::metrics().api_retries.get_or_create(&crate::metrics::tenant(&self.tenant)).inc();
            let delay = backoff(&self.settings, attempt).max(after.unwrap_or_default());
            tracing::debug!(tenant = %self.tenant, attempt, delay_ms = delay.as_millis() as u64, "retrying: {why}");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt<T: Send + 'static>(
        &self,
        url: &url::Url,
        parse: fn(String) -> Result<T, WireError>,
    ) -> Attempt<T> {
        let sent = self
            .http
            .get(url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await;
        let m = crate::metrics::metrics();
        let code = match &sent {
            Ok(r) => r.status().as_u16().to_string(),
            Err(_) => "error".to_string(),
        };
        m.api_requests.get_or_create(&crate::metrics::RequestLabels { tenant: self.tenant.clone(), code }).inc();
        let resp = match sent {
            Ok(r) => {
                self.note_clock(r.headers().get(DATE));
                r
            }
            Err(e) => {
                self.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                return Attempt::Retry { why: describe(&e), after: None, unreachable: e.is_connect() };
            }
        };
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            m.api_rate_limited.get_or_create(&crate::metrics::tenant(&self.tenant)).inc();
            let after = retry_after(resp.headers().get(RETRY_AFTER)).unwrap_or(Duration::from_secs(1));
            // The limit is per key: every request with this key waits, not just this one.
            self.hold_all(after);
            return Attempt::Retry { why: "rate limited (429)".into(), after: Some(after), unreachable: false };
        }
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            self.stats.server_errors.fetch_add(1, Ordering::Relaxed);
            let after = retry_after(resp.headers().get(RETRY_AFTER));
            return Attempt::Retry { why: format!("server error ({status})"), after, unreachable: false };
        }
        match status {
            StatusCode::UNAUTHORIZED => {
                return Attempt::Fatal(FetchError::Unauthorized { tenant: self.tenant.clone() });
            }
            StatusCode::FORBIDDEN => return Attempt::Fatal(FetchError::Forbidden { tenant: self.tenant.clone() }),
            StatusCode::NOT_FOUND => {
                return Attempt::Fatal(FetchError::NotFound { url: super::endpoint::display_url(url) });
            }
            s if s.is_client_error() => {
                let body = resp.text().await.unwrap_or_default();
                // A proxy may echo the request, key included: one short, redacted line of it.
                let detail = format!("{s}: {}", crate::secret::excerpt(&body, 160));
                return Attempt::Fatal(FetchError::BadRequest { tenant: self.tenant.clone(), detail });
            }
            _ => {}
        }
        let body = match resp.text().await {
            Ok(b) => b,
            Err(e) => {
                self.stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                return Attempt::Retry {
                    why: format!("response body broken off: {}", describe(&e)),
                    after: None,
                    unreachable: false,
                };
            }
        };
        // Parsing 500 records is CPU work: keep it off the async threads.
        match tokio::task::spawn_blocking(move || parse(body)).await {
            Ok(Ok(page)) => Attempt::Done(page),
            Ok(Err(e @ WireError::NotAPage(_))) => {
                Attempt::Retry { why: e.to_string(), after: None, unreachable: false }
            }
            Err(e) => Attempt::Retry { why: format!("parser task failed: {e}"), after: None, unreachable: false },
        }
    }
}

/// Exponential backoff with full jitter: uniform in `[0, min(cap, base * 2^(attempt-1))]`.
pub fn backoff(s: &ClientSettings, attempt: u32) -> Duration {
    let exp = s.backoff_base.saturating_mul(1u32 << (attempt.saturating_sub(1)).min(20));
    let ceiling = exp.min(s.backoff_cap);
    ceiling.mul_f64(fastrand::f64())
}

fn retry_after(v: Option<&HeaderValue>) -> Option<Duration> {
    let secs: u64 = v?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(600)))
}

/// A transport error in a few words, without the URL: the one description the HTTP sinks use too.
fn describe(e: &reqwest::Error) -> String {
    crate::sinks::http::describe(e)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every send of `all` (in order) has at most `limit` sends, itself included, in the
    /// closed window of `window` that it starts.
    fn max_in_any_window(all: &[Instant], window: Duration) -> usize {
        (0..all.len()).map(|i| all[i..].iter().take_while(|t| **t - all[i] <= window).count()).max().unwrap_or(0)
    }

    #[test]
    fn sliding_window_paces_steadily_from_a_cold_start() {
        let t0 = Instant::now();
        let span = Duration::from_secs(60);
        let mut w = SlidingWindow::new(4, span, t0);
        // As if the key had been used at 4 a minute: one send now, then one every 15 s.
        let got: Vec<Duration> = (0..6).map(|_| w.reserve(t0) - t0).collect();
        let want: Vec<Duration> = [0, 15, 30, 45, 60, 75].iter().map(|s| Duration::from_secs(*s)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn unused_slots_are_spent_later_in_the_window() {
        let t0 = Instant::now();
        let span = Duration::from_secs(60);
        let mut w = SlidingWindow::new(4, span, t0);
        // Idle for a whole window: every slot is free, and all four go at once.
        let t1 = t0 + span;
        for _ in 0..4 {
            assert_eq!(w.reserve(t1), t1);
        }
        // The fifth waits for the first of them to leave the window.
        assert_eq!(w.reserve(t1), t1 + span);
        // Two slots missed in a quiet stretch are used together when work comes back.
        let mut w = SlidingWindow::new(2, span, t0);
        assert_eq!(w.reserve(t0), t0);
        let late = t0 + Duration::from_secs(100);
        assert_eq!((w.reserve(late), w.reserve(late)), (late, late));
        assert_eq!(w.reserve(late), late + span);
    }

    proptest! {
        /// Whatever the demand (bursts, pauses, steady streams), no window of the API's
        /// length, closed at both ends, ever holds more than `limit` sends, counting the
        /// steady use assumed before the start; and no send waits longer than the limit
        /// makes it. (Without a margin, two sends exactly a window apart would share a
        /// closed window: the margin is never zero.)
        #[test]
        fn no_window_ever_holds_more_than_the_limit(
            limit in 1u32..40,
            window_ms in 100u64..5_000,
            margin_ms in 1u64..500,
            gaps_ms in proptest::collection::vec(proptest::prop_oneof![Just(0u64), 0u64..50, 0u64..10_000], 1..400),
        ) {
            let window = Duration::from_millis(window_ms);
            let span = window + Duration::from_millis(margin_ms);
            let t0 = Instant::now() + Duration::from_secs(3600);
            let mut w = SlidingWindow::new(limit, span, t0);
            let mut all: Vec<Instant> = w.sends.iter().copied().collect();
            let mut now = t0;
            for gap in gaps_ms {
                now += Duration::from_millis(gap);
                let before: Vec<Instant> = w.sends.iter().copied().collect();
                let at = w.reserve(now);
                prop_assert!(at >= now && at >= *all.last().unwrap(), "sends are in order, never early");
                if at > now {
                    // It waited only because the last `limit` sends fill the window before it.
                    prop_assert_eq!(before.iter().filter(|t| at - **t <= span).count(), limit as usize);
                }
                all.push(at);
            }
            let most = max_in_any_window(&all, window);
            prop_assert!(most <= limit as usize, "{most} sends in one window of {window:?}, limit {limit}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_on_one_key_share_its_window() {
        let settings = ClientSettings {
            requests_per_minute: 5,
            rate_window: Duration::from_secs(10),
            rate_margin: Duration::from_millis(100),
            ..ClientSettings::default()
        };
        let key = Secret::new("concurrent_requests_on_one_key_share_its_window");
        let ep = Endpoint::parse("acme.tines.com").unwrap();
        // Two tenants with the same key: one budget.
        let a = TinesClient::new("a", ep.clone(), &key, settings.clone()).unwrap();
        let b = TinesClient::new("b", ep, &key, settings).unwrap();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(30)).await; // idle: the whole window is free
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..23 {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move {
                c.pace().await;
                Instant::now()
            });
        }
        let mut sent: Vec<Instant> = tasks.join_all().await;
        sent.sort();
        assert!(max_in_any_window(&sent, Duration::from_secs(10)) <= 5);
        // The first five went at once (unused slots), the rest paced a window apart.
        assert!(sent[4] - t0 == Duration::from_secs(30), "{:?}", sent[4] - t0);
        assert_eq!(sent[22] - sent[0], Duration::from_millis(4 * 10_100));
    }

    #[test]
    fn backoff_is_bounded_by_the_exponential_ceiling() {
        let s = ClientSettings::default();
        for attempt in 1..30 {
            let d = backoff(&s, attempt);
            let ceiling = s.backoff_base.saturating_mul(1 << (attempt - 1).min(20)).min(s.backoff_cap);
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
    }

    #[test]
    fn http_dates_parse_and_the_offset_never_overshoots() {
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date(""), None);
        let c = ApiClock::new();
        assert_eq!(c.offset(), None);
        assert_eq!(c.observe(None, 0.0), None, "a missing Date is tolerated");
        // Header 100 read at 101.2: the API is at most 1.2 s behind.
        let h = HeaderValue::from_static("Thu, 01 Jan 1970 00:01:40 GMT");
        assert_eq!(c.observe(Some(&h), 101.2), Some(100.0 - 101.2));
        // Read at 100.05: a tighter bound, which wins; a later looser one does not undo it.
        assert_eq!(c.observe(Some(&h), 100.05), Some(100.0 - 100.05));
        assert_eq!(c.observe(Some(&h), 100.9), Some(100.0 - 100.05));
        assert_eq!(c.offset(), Some(0));
        // Old samples expire: a clock stepped back is followed.
        let back = HeaderValue::from_static("Thu, 01 Jan 1970 00:00:40 GMT");
        for _ in 0..CLOCK_SAMPLES {
            c.observe(Some(&back), 100.5);
        }
        assert_eq!(c.offset(), Some(-61));
    }

    #[test]
    fn retry_after_reads_seconds_and_caps_them() {
        assert_eq!(retry_after(Some(&HeaderValue::from_static("3"))), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(&HeaderValue::from_static("99999"))), Some(Duration::from_secs(600)));
        assert_eq!(retry_after(Some(&HeaderValue::from_static("soon"))), None);
    }

    #[test]
    fn page_urls_carry_window_filters_and_page() {
        let c = TinesClient::new(
            "t",
            Endpoint::parse("acme.tines.com").unwrap(),
            &Secret::new("k"),
            ClientSettings::default(),
        )
        .unwrap();
        let ops = vec!["Login".to_string(), "StoryCreation".to_string()];
        let q = PageQuery { after: 0, before: 60, page: 3, per_page: 500, user_ids: &[7, 9], operation_names: &ops };
        assert_eq!(
            c.url(&q).as_str(),
            "https://acme.tines.com/api/v1/audit_logs?after=1970-01-01T00%3A00%3A00Z&before=1970-01-01T00%3A01%3A00Z\
             &user_id%5B%5D=7&user_id%5B%5D=9&operation_name%5B%5D=Login&operation_name%5B%5D=StoryCreation&per_page=500&page=3"
        );
    }
}
