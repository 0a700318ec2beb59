//! The Tines audit-log API emulator: `GET /api/v1/audit_logs` over a seeded synthetic tenant,
//! with the paging quirks, faults and rate limit a collector has to survive, plus its CLI.

pub mod cli;
mod generate;
mod posture;
mod render;
mod reset;
mod rng;
mod scenario;
mod server;
mod store;
mod tenant;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

pub use cli::{MockArgs, run};
pub use posture::PostureChange;
pub use scenario::{SCENARIO_COUNTRY, SCENARIO_DELETIONS, SCENARIO_TIMES};
pub use server::MockServer;
pub use tenant::{country_of, country_ranges};

/// Renders a seeded history of `count` records over `[anchor - span, anchor)` straight to
/// JSON, oldest first, without a server: for benchmarks that need millions of realistic
/// records (`benches/search.rs`). Each record is handed to `f` in a reused buffer.
pub fn render_history(seed: u64, tenant_id: u64, count: usize, span: Duration, anchor: i64, mut f: impl FnMut(&[u8])) {
    let generator = generate::Generator::new(seed);
    let tables = render::Tables::new(&generator, tenant_id);
    let mut events = generator.history(count, span.as_secs(), anchor, None);
    let model = posture::Model::build(&generator, &tables, &mut events);
    let mut ts = render::TsCache::default();
    let mut buf = Vec::with_capacity(2048);
    for ev in &events {
        buf.clear();
        render::push_record(&mut buf, ev, &generator, &tables, &mut ts, &model);
        f(&buf);
    }
}

/// The key the emulator accepts out of the box (a demo value, not a secret).
pub const DEMO_KEY: &str = "tines-audit-demo-key";

/// Everything that shapes one emulated tenant. The same config (with a fixed
/// `anchor`) and seed always produce the same history, byte for byte.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub seed: u64,
    pub tenant_id: u64,
    /// Events generated before serving.
    pub history: usize,
    /// The history covers `[anchor - history_span, anchor)`.
    pub history_span: Duration,
    /// Unix seconds the history ends at; `None` is wall-clock now at start.
    pub anchor: Option<i64>,
    pub burst: Option<Burst>,
    /// Live events per second appended while serving (0 for none).
    pub live_rate: f64,
    /// Share of live events whose `created_at` lies up to `max_lateness_secs` in the past.
    pub late_fraction: f64,
    pub max_lateness_secs: u32,
    /// `after` matches `created_at >= after` instead of `>`.
    pub after_inclusive: bool,
    /// `before` matches `created_at <= before` instead of `<`.
    pub before_inclusive: bool,
    /// On the last page send `"next_page":"null"` (a string), as Elastic's mock does.
    pub next_page_string_null: bool,
    /// Leave `next_page_number` out of `meta`, as older Tines responses did.
    pub omit_next_page_number: bool,
    pub faults: Faults,
    /// Sliding-window limit per key, requests in any `rate_window`; 0 disables it.
    pub rate_limit_per_minute: u32,
    /// The window the limit counts in: 60 s like the API; shorter only to keep tests quick.
    pub rate_window: Duration,
    pub keys: Vec<MockKey>,
    /// Play the scripted detection scenarios (see `scenario`) in the first half minute.
    pub scenarios: bool,
    /// Behaviours the API's documentation leaves open, set to their unkind side.
    pub quirks: Quirks,
    /// The admin API's lists drift from the history: one IP rule, one egress entry and one
    /// tenant owner more than any record made, and the oldest IP rule and egress entry gone
    /// with no record (see `mock::posture`).
    pub posture_drift: bool,
    /// The admin endpoints answer 403 to every key (a key whose user is not a tenant admin).
    pub admin_forbidden: bool,
}

/// What the real API may do where its documentation is silent. Each one is a
/// way the collector must stay correct; the defaults are the kind reading.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quirks {
    /// The server's clock minus ours, in seconds: records are dated, live events
    /// stamped and the `Date` header written by the server's clock.
    pub clock_offset_secs: i64,
    /// Leave `count` (and `pages`) out of `meta`.
    pub omit_count: bool,
    /// Added to the true `count` in `meta` (negative under-reports); `pages`
    /// and `next_page_number` follow the reported count, as a server that
    /// believes it would.
    pub count_skew: i64,
    /// Skew only the first page's `count` (the other pages tell the truth).
    pub count_skew_first_page_only: bool,
    /// Serve page 1 again for a `page` value that is past the last page or
    /// cannot be parsed, as the real API does for the latter, instead of an
    /// empty page or a 400.
    pub first_page_for_bad_page: bool,
    /// Share of records that are system-made: user and request fields `null`.
    pub null_fields_fraction: f64,
    /// This many history records are sent without an `id`.
    pub records_without_id: usize,
    /// 4xx answers echo the request line and headers (API key included), as
    /// some proxies and frameworks do.
    pub echo_4xx: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            seed: 1,
            tenant_id: 4242,
            history: 0,
            history_span: Duration::from_secs(30 * 86_400),
            anchor: None,
            burst: None,
            live_rate: 0.0,
            late_fraction: 0.0,
            max_lateness_secs: 0,
            after_inclusive: false,
            before_inclusive: false,
            next_page_string_null: false,
            omit_next_page_number: false,
            faults: Faults::default(),
            rate_limit_per_minute: 1000,
            rate_window: Duration::from_secs(60),
            keys: vec![MockKey { key: DEMO_KEY.to_string(), can_read_audit_logs: true }],
            scenarios: false,
            quirks: Quirks::default(),
            posture_drift: false,
            admin_forbidden: false,
        }
    }
}

/// `count` extra history events sharing the single second `anchor - secs_ago`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    pub count: usize,
    pub secs_ago: u64,
}

/// Injected trouble, each an independent probability per API request.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Answer 429 with `Retry-After: fault_retry_after_secs`.
    pub rate_429: f64,
    /// Answer 500, 502 or 503.
    pub rate_5xx: f64,
    /// Answer 400 (with the request echoed when `Quirks::echo_4xx`).
    pub rate_400: f64,
    /// Answer 200 with the body cut short (complete HTTP message, invalid JSON).
    pub rate_truncated: f64,
    /// Send headers and part of the body, then drop the connection.
    pub rate_reset: f64,
    pub fault_retry_after_secs: u64,
    /// Added to every API request.
    pub latency: Duration,
    pub latency_spike_rate: f64,
    /// Added on top of `latency` with probability `latency_spike_rate`.
    pub latency_spike: Duration,
}

impl Default for Faults {
    /// No faults; `fault_retry_after_secs` is 1, the value clients assume when the header is missing.
    fn default() -> Self {
        Faults {
            rate_429: 0.0,
            rate_5xx: 0.0,
            rate_400: 0.0,
            rate_truncated: 0.0,
            rate_reset: 0.0,
            fault_retry_after_secs: 1,
            latency: Duration::ZERO,
            latency_spike_rate: 0.0,
            latency_spike: Duration::ZERO,
        }
    }
}

/// An API key and whether it may read audit logs (without, the API answers 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockKey {
    pub key: String,
    pub can_read_audit_logs: bool,
}

/// Counters since start. API requests only: `/_mock/*` calls are not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MockStats {
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    /// 429s from the real sliding-window limit.
    pub rate_limited: u64,
    pub injected_429: u64,
    pub injected_5xx: u64,
    pub truncated: u64,
    pub resets: u64,
    pub latency_spikes: u64,
    /// Events currently stored.
    pub events: usize,
}
