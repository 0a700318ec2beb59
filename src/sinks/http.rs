//! What the HTTP sinks (Splunk HEC, Datadog, webhook) share: the client,
//! destination URL rules, request and batch settings, encoded batches cut
//! into requests, gzip bodies, and the retry decision with its backoff.
//!
//! Retrying is decided here and only here ([`retry_class`], [`with_retries`]):
//! a sink interprets what a destination said, this module decides whether to
//! ask again. Attempts are bounded within one `deliver`; when they run out
//! the sink returns [`SinkError::Transient`], so the runner keeps the offset
//! and tries the batch again later.

use std::future::Future;
use std::io::Write;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use url::Url;

use super::{BatchPolicy, SinkError};
use crate::journal::{EventBatch, StoredEvent};
use crate::secret::Secret;
use crate::timeutil::parse_duration;

/// A journal batch spans this many full requests, so the small last request of
/// a batch is amortised and the journal commits once per few requests; a crash
/// repeats at most that much.
pub const REQUESTS_PER_BATCH: usize = 4;

/// Longest `Retry-After` honoured; a destination asking for more is asked again sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Whether a failed request is worth sending again as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Yes,
    No,
}

/// The one retry rule of the HTTP sinks: timeouts (408), rate limits (429)
/// and server errors (5xx) heal by themselves; any other answer means the
/// request or the configuration is wrong and must be fixed first.
pub fn retry_class(status: StatusCode) -> Retry {
    if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Retry::Yes
    } else {
        Retry::No
    }
}

/// How one attempt ended, as judged by the sink.
pub enum Answer<T> {
    Done(T),
    /// Worth another attempt after `after` (from `Retry-After`) or the backoff.
    Retry {
        why: String,
        after: Option<Duration>,
    },
    Fail(SinkError),
}

impl<T> Answer<T> {
    /// The answer to a non-success status, by [`retry_class`]: retry, or fail with `permanent`.
    /// `secrets` are scrubbed from the answer's text kept for the retry message.
    pub fn from_status(reply: &Reply, secrets: &[&Secret], permanent: impl FnOnce() -> String) -> Answer<T> {
        match retry_class(reply.status) {
            Retry::Yes => Answer::Retry { why: scrub(&reply.summary(), secrets), after: retry_after(&reply.headers) },
            Retry::No => Answer::Fail(SinkError::Permanent(permanent())),
        }
    }
}

/// Bounded attempts with exponential backoff and full jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: uniform in `[0, min(max, initial * 2^(attempt-1))]`,
    /// but never shorter than what the destination asked for in `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling =
            self.initial_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(self.max_backoff);
        let jittered = ceiling.mul_f64(fastrand::f64());
        jittered.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
    }
}

/// Runs `attempt` until it is done or fails for good, at most `policy.max_attempts` times.
/// `what` names the request in the error (for example "Splunk HEC https://splunk:8088").
pub async fn with_retries<T, F, Fut>(what: &str, policy: &RetryPolicy, mut attempt: F) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Answer<T>>,
{
    let mut n = 0u32;
    loop {
        n += 1;
        let (why, after) = match attempt().await {
            Answer::Done(t) => return Ok(t),
            Answer::Fail(e) => return Err(e),
            Answer::Retry { why, after } => (why, after),
        };
        if n >= policy.max_attempts {
            return Err(SinkError::Transient(format!(
                "{what}: gave up after {n} attempts, last: {why}; the batch stays in the journal and will be sent again"
            )));
        }
        let wait = policy.delay(n, after);
        tracing::debug!(attempt = n, wait_ms = wait.as_millis() as u64, "{what}: retrying: {why}");
        tokio::time::sleep(wait).await;
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (at - time::OffsetDateTime::now_utc()).whole_seconds();
    Some(Duration::from_secs(secs.max(0) as u64))
}

/// A response, read whole (destination answers are small).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// `503 Service Unavailable: <start of body>`, for messages.
    pub fn summary(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text: String = text.chars().take(200).collect();
        if text.trim().is_empty() { self.status.to_string() } else { format!("{}: {}", self.status, text.trim()) }
    }
}

/// Sends a request and reads the answer; `Err` is a transport failure (worth another attempt).
pub async fn send(req: reqwest::RequestBuilder) -> Result<Reply, String> {
    let resp = req.send().await.map_err(|e| describe(&e))?;
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp.bytes().await.map_err(|e| format!("reading the answer: {}", describe(&e)))?;
    Ok(Reply { status, headers, body })
}

/// A transport error in a few words, without the URL (which may carry a secret).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() { kind.to_string() } else { format!("{kind}: {detail}") }
}

/// Replaces every occurrence of a secret in text from a destination (an echoed header, say).
pub fn scrub(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.expose().is_empty() {
            out = out.replace(s.expose(), "**REDACTED**");
        }
    }
    out
}

pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A destination URL: `https://`, or plain `http://` only on a loopback address
/// (127.0.0.1, ::1, localhost), as for tenants. `field` names it in messages.
pub fn destination_url(field: &str, input: &str) -> Result<Url, String> {
    let url =
        Url::parse(input.trim()).map_err(|e| format!("{field}: not a URL ({e}); for example https://host:port"))?;
    let host = url.host_str().unwrap_or_default().to_string();
    if host.is_empty() {
        return Err(format!("{field}: the URL has no host"));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => {
            return Err(format!(
                "{field}: plain http is only allowed to a loopback address (127.0.0.1, ::1, localhost); use https:// for {host}"
            ));
        }
        other => return Err(format!("{field}: scheme {other}:// is not supported; use https://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{field}: do not put credentials in the URL; use the sink's token or headers"));
    }
    Ok(url)
}

/// `scheme://host:port` of a URL: safe to print even when the path carries a secret
/// (Sumo Logic collector URLs do).
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Appends `path` to a base URL that may itself have a path prefix.
pub fn join_path(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let joined = format!("{}/{}", u.path().trim_end_matches('/'), path.trim_start_matches('/'));
    u.set_path(&joined);
    u.set_query(None);
    u
}

/// Request behaviour shared by the HTTP sinks (`[sinks.request]` in the config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Whole-request timeout (default 60s).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Attempts per request within one delivery (default 5).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First backoff ceiling (default 1s); doubles per attempt.
    #[serde(default)]
    pub retry_initial_backoff: Option<String>,
    /// Largest backoff ceiling (default 30s).
    #[serde(default)]
    pub retry_max_backoff: Option<String>,
}

/// Validated [`RequestConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSettings {
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

pub fn duration_field(field: &str, v: &Option<String>, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) => parse_duration(s).ok_or_else(|| format!("{field}: {s:?} is not a duration (use 250ms, 30s, 5m)")),
    }
}

impl RequestConfig {
    pub fn build(&self) -> Result<RequestSettings, String> {
        let timeout = duration_field("request.timeout", &self.timeout, Duration::from_secs(60))?;
        if timeout.is_zero() {
            return Err("request.timeout must be above 0".into());
        }
        let max_attempts = self.max_attempts.unwrap_or(5);
        if max_attempts == 0 {
            return Err("request.max_attempts must be at least 1".into());
        }
        let initial_backoff =
            duration_field("request.retry_initial_backoff", &self.retry_initial_backoff, Duration::from_secs(1))?;
        let max_backoff =
            duration_field("request.retry_max_backoff", &self.retry_max_backoff, Duration::from_secs(30))?;
        if max_backoff < initial_backoff {
            return Err("request.retry_max_backoff must not be below request.retry_initial_backoff".into());
        }
        Ok(RequestSettings { timeout, retry: RetryPolicy { max_attempts, initial_backoff, max_backoff } })
    }
}

/// How much goes into one request (`[sinks.batch]` in the config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one request.
    #[serde(default)]
    pub max_events: Option<usize>,
    /// Most bytes in one request body before compression.
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// How long a small backlog may wait to fill a request.
    #[serde(default)]
    pub linger: Option<String>,
}

/// Validated [`BatchConfig`]: the limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub linger: Duration,
}

impl RequestLimits {
    /// The journal batch for these requests: a few requests' worth, see [`REQUESTS_PER_BATCH`].
    pub fn policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_events: self.max_events.saturating_mul(REQUESTS_PER_BATCH),
            max_bytes: self.max_bytes.saturating_mul(REQUESTS_PER_BATCH),
            linger: self.linger,
        }
    }
}

impl BatchConfig {
    /// Applies `default`, refusing values above `hard` (the destination's own limits).
    pub fn build(&self, default: RequestLimits, hard: (usize, usize)) -> Result<RequestLimits, String> {
        let max_events = self.max_events.unwrap_or(default.max_events);
        let max_bytes = self.max_bytes.unwrap_or(default.max_bytes);
        if max_events == 0 || max_events > hard.0 {
            return Err(format!("batch.max_events must be between 1 and {}", hard.0));
        }
        if max_bytes < 1024 || max_bytes > hard.1 {
            return Err(format!("batch.max_bytes must be between 1024 and {}", hard.1));
        }
        let linger = duration_field("batch.linger", &self.linger, default.linger)?;
        Ok(RequestLimits { max_events, max_bytes, linger })
    }
}

/// An HTTP client for one sink: rustls, timeouts, no plain http except to loopback.
pub fn client(url: &Url, timeout: Duration, tls_verify: bool) -> Result<reqwest::Client, String> {
    let loopback = is_loopback_host(url.host_str().unwrap_or_default());
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("tines-audit/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .timeout(timeout)
        .https_only(url.scheme() == "https")
        .danger_accept_invalid_certs(!tls_verify);
    if loopback {
        // A proxy from the environment must not capture a local receiver.
        b = b.no_proxy();
    }
    b.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Gzips a request body (on the blocking pool: compression is CPU work).
pub async fn gzip(body: Bytes) -> Result<Bytes, SinkError> {
    tokio::task::spawn_blocking(move || {
        let mut enc =
            flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), flate2::Compression::default());
        enc.write_all(&body).and_then(|_| enc.finish()).map(Bytes::from)
    })
    .await
    .map_err(|e| SinkError::Transient(format!("compression task failed: {e}")))?
    .map_err(|e| SinkError::Transient(format!("gzip failed: {e}")))
}

/// How entries are put together in a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One entry after another, each ending in a newline (HEC envelopes, NDJSON).
    Lines,
    /// `[a,b,c]`.
    Array,
}

/// A batch encoded for a destination: entries back to back in one buffer, with
/// where each ends and the journal seq of each.
#[derive(Debug, Default)]
pub struct Encoded {
    buf: Bytes,
    ends: Vec<usize>,
    pub seqs: Vec<i64>,
    /// Events older than the sink's `stale_before`, and the oldest `created_at`.
    pub stale: usize,
    pub oldest: Option<i64>,
}

impl Encoded {
    /// Encodes the events of `batch` with seq above `skip_through` on the blocking pool.
    /// `entry` appends one entry (for [`Framing::Lines`] including its newline).
    pub async fn build<F>(
        batch: std::sync::Arc<EventBatch>,
        skip_through: i64,
        stale_before: Option<i64>,
        entry: F,
    ) -> Result<Encoded, SinkError>
    where
        F: Fn(&StoredEvent<'_>, &mut Vec<u8>) -> Result<(), SinkError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(batch.raw_bytes() + batch.len() * 160);
            let mut out = Encoded::default();
            for e in batch.iter().filter(|e| e.seq > skip_through) {
                entry(&e, &mut buf)?;
                out.ends.push(buf.len());
                out.seqs.push(e.seq);
                if stale_before.is_some_and(|t| e.created_at < t) {
                    out.stale += 1;
                    out.oldest = Some(out.oldest.map_or(e.created_at, |o| o.min(e.created_at)));
                }
            }
            out.buf = Bytes::from(buf);
            Ok(out)
        })
        .await
        .map_err(|e| SinkError::Transient(format!("encoding task failed: {e}")))?
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn span(&self, r: &Range<usize>) -> Range<usize> {
        let start = if r.start == 0 { 0 } else { self.ends[r.start - 1] };
        start..self.ends[r.end - 1]
    }

    fn entry_len(&self, i: usize) -> usize {
        self.span(&(i..i + 1)).len()
    }

    /// The next request from entry `from` within the limits; an entry bigger
    /// than `max_bytes` on its own still goes, alone.
    pub fn next_request(&self, from: usize, limits: &RequestLimits, framing: Framing) -> Range<usize> {
        let mut end = from;
        let mut bytes = if framing == Framing::Array { 2 } else { 0 };
        while end < self.len() && end - from < limits.max_events {
            let add = self.entry_len(end) + usize::from(framing == Framing::Array && end > from);
            if end > from && bytes + add > limits.max_bytes {
                break;
            }
            bytes += add;
            end += 1;
        }
        from..end
    }

    /// All requests from entry `from` on, in order.
    pub fn plan(&self, from: usize, limits: &RequestLimits, framing: Framing) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = from;
        while start < self.len() {
            let r = self.next_request(start, limits, framing);
            start = r.end;
            out.push(r);
        }
        out
    }

    /// The request body for entries `r`, uncompressed.
    pub fn body(&self, r: &Range<usize>, framing: Framing) -> Bytes {
        match framing {
            Framing::Lines => self.buf.slice(self.span(r)),
            Framing::Array => {
                let mut b = Vec::with_capacity(self.span(r).len() + r.len() + 2);
                b.push(b'[');
                for i in r.clone() {
                    if i > r.start {
                        b.push(b',');
                    }
                    b.extend_from_slice(&self.buf[self.span(&(i..i + 1))]);
                }
                b.push(b']');
                Bytes::from(b)
            }
        }
    }
}

/// Events of a failed batch that the destination already confirmed, so that
/// the runner's retry of the same batch does not send them twice. Kept only in
/// memory: after a restart the batch is sent whole (at-least-once).
#[derive(Debug, Default)]
pub struct Resume {
    /// (first seq of the failed batch, last seq confirmed from it)
    partial: Option<(i64, i64)>,
}

impl Resume {
    /// The seq up to which `batch` was already delivered (0: none), forgetting the record.
    pub fn take_for(&mut self, batch: &EventBatch) -> i64 {
        match (self.partial.take(), batch.first_seq()) {
            (Some((first, through)), Some(f)) if first == f => through,
            _ => 0,
        }
    }

    /// Remembers that `batch` failed after its events up to `through` were delivered.
    pub fn failed(&mut self, batch: &EventBatch, through: i64) {
        self.partial = batch.first_seq().filter(|_| through > 0).map(|f| (f, through));
    }
}

/// Appends `s` as a JSON string.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing to a Vec cannot fail");
}

/// An optional setting that, when given, must not be blank (leave it out for the default).
pub fn nonempty(field: &str, v: &Option<String>) -> Result<Option<String>, String> {
    match v {
        Some(s) if s.trim().is_empty() => Err(format!("{field} must not be empty (leave it out for the default)")),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_what_heals_by_itself() {
        for s in [408u16, 429, 500, 502, 503, 504] {
            assert_eq!(retry_class(StatusCode::from_u16(s).unwrap()), Retry::Yes, "{s}");
        }
        for s in [400u16, 401, 403, 404, 413, 415] {
            assert_eq!(retry_class(StatusCode::from_u16(s).unwrap()), Retry::No, "{s}");
        }
    }

    #[test]
    fn backoff_has_full_jitter_under_an_exponential_ceiling_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for attempt in 1..10 {
            let ceiling = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_millis(1000));
            assert!(p.delay(attempt, None) <= ceiling);
        }
        assert!(p.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(p.delay(1, Some(Duration::from_secs(3600))), MAX_RETRY_AFTER);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(destination_url("endpoint", "https://splunk.example.com:8088").is_ok());
        assert!(destination_url("endpoint", "http://127.0.0.1:8088").is_ok());
        assert!(destination_url("endpoint", "http://[::1]:8088").is_ok());
        assert!(destination_url("endpoint", "http://localhost:8088").is_ok());
        let e = destination_url("endpoint", "http://splunk.example.com:8088").unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        assert!(destination_url("endpoint", "ftp://x").is_err());
        assert!(destination_url("endpoint", "https://u:p@x.example.com").is_err());
    }

    #[test]
    fn join_keeps_a_path_prefix() {
        let base = Url::parse("https://h.example.com/splunk/").unwrap();
        assert_eq!(join_path(&base, "/services/collector/event").path(), "/splunk/services/collector/event");
        let base = Url::parse("https://h.example.com").unwrap();
        assert_eq!(join_path(&base, "services/collector/ack").as_str(), "https://h.example.com/services/collector/ack");
    }

    fn encoded(sizes: &[usize]) -> Encoded {
        let mut buf = Vec::new();
        let mut e = Encoded::default();
        for (i, s) in sizes.iter().enumerate() {
            buf.extend(std::iter::repeat_n(b'x', *s));
            e.ends.push(buf.len());
            e.seqs.push(i as i64 + 1);
        }
        e.buf = Bytes::from(buf);
        e
    }

    #[test]
    fn plans_requests_within_count_and_byte_limits() {
        let e = encoded(&[10; 25]);
        let limits = RequestLimits { max_events: 10, max_bytes: 1_000, linger: Duration::ZERO };
        assert_eq!(e.plan(0, &limits, Framing::Lines), vec![0..10, 10..20, 20..25]);
        let limits = RequestLimits { max_events: 100, max_bytes: 35, linger: Duration::ZERO };
        assert_eq!(e.plan(20, &limits, Framing::Lines), vec![20..23, 23..25]);
        // An array body counts its brackets and commas: 2 + 10 + 1 + 10 + 1 + 10 = 34.
        assert_eq!(e.plan(20, &limits, Framing::Array), vec![20..23, 23..25]);
        let limits = RequestLimits { max_events: 100, max_bytes: 33, linger: Duration::ZERO };
        assert_eq!(e.plan(20, &limits, Framing::Array), vec![20..22, 22..24, 24..25]);
        let big = encoded(&[5, 100, 5]);
        assert_eq!(big.plan(0, &limits, Framing::Lines), vec![0..1, 1..2, 2..3]);
        assert_eq!(&e.body(&(0..2), Framing::Array)[..], format!("[{},{}]", "x".repeat(10), "x".repeat(10)).as_bytes());
    }

    #[tokio::test]
    async fn encoding_skips_what_was_delivered_and_counts_events_past_a_time_limit() {
        use crate::journal::{Journal, Record, WindowCommit};
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j")).unwrap();
        j.start_progress("t", "cursor", 0, None, "").unwrap();
        let recs = (1..=10).map(|i| Record {
            id: i,
            created_at: 1_000 + i,
            operation_name: "Login",
            user_id: None,
            user_email: None,
            request_ip: None,
            raw: "{}",
        });
        j.commit_window(&WindowCommit { tenant: "t", job: "cursor", from: 0, to: 1, fetched: 10 }, recs).unwrap();
        let batch = std::sync::Arc::new(j.read_after(0, 100, usize::MAX).unwrap());
        let enc = Encoded::build(batch.clone(), 4, Some(1_008), |e, out| {
            out.extend_from_slice(e.raw.as_bytes());
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(enc.seqs, vec![5, 6, 7, 8, 9, 10]);
        assert_eq!((enc.stale, enc.oldest), (3, Some(1_005)));

        let mut resume = Resume::default();
        resume.failed(&batch, 4);
        assert_eq!(resume.take_for(&batch), 4);
        assert_eq!(resume.take_for(&batch), 0, "taken once");
        resume.failed(&batch, 4);
        let later = j.read_after(2, 100, usize::MAX).unwrap();
        assert_eq!(resume.take_for(&later), 0, "a different batch (a replay, say) is sent whole");
    }

    /// How the configs plug into the `type`-tagged `SinkConfig` enum (as newtype variants).
    #[test]
    fn configs_deserialize_as_newtype_variants_of_a_type_tagged_enum() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
        enum Wired {
            SplunkHec(crate::sinks::splunk_hec::SplunkHecConfig),
            Datadog(crate::sinks::datadog::DatadogConfig),
            Webhook(crate::sinks::webhook::WebhookConfig),
        }
        #[derive(Debug, serde::Deserialize)]
        struct File {
            sinks: Vec<Wired>,
        }
        let f: File = toml::from_str(
            r#"
            [[sinks]]
            type = "splunk_hec"
            endpoint = "https://splunk.example.com:8088"
            token = "t"
            [sinks.batch]
            max_bytes = 500000
            [[sinks]]
            type = "datadog"
            api_key = "k"
            site = "datadoghq.eu"
            [[sinks]]
            type = "webhook"
            url = "https://hooks.example.com/x"
            encoding = "json_array"
            headers = { Authorization = "Bearer x" }
            "#,
        )
        .unwrap();
        assert!(matches!(&f.sinks[0], Wired::SplunkHec(c) if c.batch.max_bytes == Some(500_000)));
        assert!(matches!(&f.sinks[1], Wired::Datadog(c) if c.site.as_deref() == Some("datadoghq.eu")));
        assert!(matches!(&f.sinks[2], Wired::Webhook(c) if c.headers.len() == 1));
        let bad = toml::from_str::<File>("[[sinks]]\ntype = \"datadog\"\napi_key = \"k\"\nsite_name = \"x\"");
        assert!(bad.unwrap_err().to_string().contains("unknown field"));
    }
}
