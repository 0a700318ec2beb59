//! Prometheus metrics (OpenMetrics text on `/metrics`): counters updated where
//! things happen, gauges refreshed from the journal and the service status at
//! scrape time. Process-wide, like the status: one service runs per process.
//! Names follow Prometheus conventions under the `tines_audit_` prefix; no
//! label ever holds a key or token.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::journal::{Journal, JournalError};
use crate::timeutil::now_secs;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub tenant: String,
    /// HTTP status code, or `error` when no response came.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

type FloatCounter = Counter<f64, AtomicU64>;

/// Every metric of the process.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabel {
    pub job: String,
}

pub struct Metrics {
    registry: Registry,
    pub events_collected: Family<TenantLabel, Counter>,
    pub api_requests: Family<RequestLabels, Counter>,
    pub api_retries: Family<TenantLabel, Counter>,
    pub api_rate_limited: Family<TenantLabel, Counter>,
    pub rate_limiter_wait_seconds: Family<TenantLabel, FloatCounter>,
    pub sync_failures: Family<TenantLabel, Counter>,
    last_sync_success: Family<TenantLabel, Gauge>,
    cursor_lag_seconds: Family<TenantLabel, Gauge>,
    pub sink_delivered: Family<SinkLabel, Counter>,
    pub sink_failures: Family<SinkLabel, Counter>,
    sink_last_success: Family<SinkLabel, Gauge>,
    sink_offset: Family<SinkLabel, Gauge>,
    sink_backlog: Family<SinkLabel, Gauge>,
    /// 1 while a tenant has been silent (no new events, or only errors) past `health.silence_after`.
    pub tenant_silent: Family<TenantLabel, Gauge>,
    pub api_clock_offset_seconds: Family<TenantLabel, Gauge>,
    pub events_quarantined: Family<TenantLabel, Counter>,
    pub reconcile_passes: Family<TenantLabel, Counter>,
    pub reconcile_found_events: Family<TenantLabel, Counter>,
    pub events_pruned: Counter,
    /// Jobs this instance holds the lease of (PostgreSQL journal).
    pub leases_held: Gauge,
    /// The fencing token this instance holds a job's lease with (0 when it does not hold it).
    pub lease_token: Family<LeaseLabel, Gauge>,
    /// The last self-test's result (1 passed, 0 failed) and when it started (`detect::selftest`).
    selftest_last_passed: Gauge,
    selftest_last_run: Gauge,
    journal_events: Gauge,
    journal_bytes: Gauge,
    start_time: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("tines_audit");
        let m = Metrics {
            events_collected: Family::default(),
            api_requests: Family::default(),
            api_retries: Family::default(),
            api_rate_limited: Family::default(),
            rate_limiter_wait_seconds: Family::default(),
            sync_failures: Family::default(),
            last_sync_success: Family::default(),
            cursor_lag_seconds: Family::default(),
            sink_delivered: Family::default(),
            sink_failures: Family::default(),
            sink_last_success: Family::default(),
            sink_offset: Family::default(),
            sink_backlog: Family::default(),
            tenant_silent: Family::default(),
            api_clock_offset_seconds: Family::default(),
            events_quarantined: Family::default(),
            reconcile_passes: Family::default(),
            reconcile_found_events: Family::default(),
            events_pruned: Counter::default(),
            leases_held: Gauge::default(),
            lease_token: Family::default(),
            selftest_last_passed: Gauge::default(),
            selftest_last_run: Gauge::default(),
            journal_events: Gauge::default(),
            journal_bytes: Gauge::default(),
            start_time: Gauge::default(),
            registry: Registry::default(),
        };
        r.register("events_collected", "New audit events written to the journal", m.events_collected.clone());
        r.register("api_requests", "Audit-log API requests by HTTP status code", m.api_requests.clone());
        r.register("api_retries", "Audit-log API requests retried", m.api_retries.clone());
        r.register("api_rate_limited", "429 answers received from the audit-log API", m.api_rate_limited.clone());
        r.register(
            "rate_limiter_wait_seconds",
            "Time requests waited for the per-key rate limiter",
            m.rate_limiter_wait_seconds.clone(),
        );
        r.register("sync_failures", "Syncs that ended in an error", m.sync_failures.clone());
        r.register(
            "last_sync_success_timestamp_seconds",
            "Unix time of the last successful sync",
            m.last_sync_success.clone(),
        );
        r.register("cursor_lag_seconds", "How far the tenant's cursor is behind now", m.cursor_lag_seconds.clone());
        r.register("sink_delivered_events", "Events delivered by the sink", m.sink_delivered.clone());
        r.register("sink_failures", "Failed deliveries of the sink", m.sink_failures.clone());
        r.register(
            "sink_last_success_timestamp_seconds",
            "Unix time of the sink's last successful delivery",
            m.sink_last_success.clone(),
        );
        r.register("sink_offset", "Journal sequence number the sink has delivered up to", m.sink_offset.clone());
        r.register("sink_backlog_events", "Journal events the sink has not delivered yet", m.sink_backlog.clone());
        r.register(
            "tenant_silent",
            "1 while a tenant has produced no new events (or only errors) for longer than health.silence_after",
            m.tenant_silent.clone(),
        );
        r.register("events_pruned", "Events deleted by retention", m.events_pruned.clone());
        r.register(
            "leases_held",
            "Jobs whose lease this instance holds (a PostgreSQL journal shared by several instances)",
            m.leases_held.clone(),
        );
        r.register(
            "lease_token",
            "The fencing token of the job's lease this instance holds (0: held elsewhere or free)",
            m.lease_token.clone(),
        );
        r.register(
            "api_clock_offset_seconds",
            "The API's clock minus this machine's, from its Date headers (windows follow the API's clock)",
            m.api_clock_offset_seconds.clone(),
        );
        r.register(
            "events_quarantined",
            "Records the API sent that cannot be stored as events (no id, no usable time), kept in the quarantine",
            m.events_quarantined.clone(),
        );
        r.register("reconcile_passes", "Reconciliation passes completed", m.reconcile_passes.clone());
        r.register(
            "reconcile_found_events",
            "Events reconciliation found missing from the journal (arrived later than the overlap) and inserted",
            m.reconcile_found_events.clone(),
        );
        r.register(
            "selftest_last_passed",
            "1 if the last self-test passed (every enabled rule fired, every alert output accepted), 0 if it failed",
            m.selftest_last_passed.clone(),
        );
        r.register(
            "selftest_last_run_timestamp_seconds",
            "Unix time the last self-test started ([detect] selftest_every)",
            m.selftest_last_run.clone(),
        );
        r.register("journal_events", "Events in the journal", m.journal_events.clone());
        r.register("journal_size_bytes", "Size of the journal database files", m.journal_bytes.clone());
        r.register("start_time_seconds", "Unix time the process started", m.start_time.clone());
        Metrics { registry: r, ..m }
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

pub fn tenant(t: &str) -> TenantLabel {
    TenantLabel { tenant: t.to_string() }
}

pub fn sink(s: &str) -> SinkLabel {
    SinkLabel { sink: s.to_string() }
}

/// Sets the self-test gauges from a run (the daemon's schedule, and the journal's newest at scrape time).
pub fn selftest_ran(run: &crate::journal::SelftestRun) {
    let m = metrics();
    m.selftest_last_passed.set(i64::from(run.passed));
    m.selftest_last_run.set(run.started_at);
}

/// Refreshes the gauges from the journal and the status, and renders everything (blocking: call off the async threads).
pub fn render(journal: &Journal) -> Result<String, JournalError> {
    let m = metrics();
    let now = now_secs();
    let (progress, consumers, max_seq, events) =
        (journal.all_progress()?, journal.consumers()?, journal.max_seq()?, journal.count_events(None)?);
    for p in progress.iter().filter(|p| p.job == crate::service::CURSOR_JOB) {
        m.cursor_lag_seconds.get_or_create(&tenant(&p.tenant)).set(now - p.position);
    }
    for (name, st) in crate::status::tenants() {
        if let Some(t) = st.last_success {
            m.last_sync_success.get_or_create(&tenant(&name)).set(t);
        }
    }
    let sinks = crate::status::sinks();
    for (name, off) in consumers.iter().filter(|(n, _)| sinks.contains_key(n)) {
        m.sink_offset.get_or_create(&sink(name)).set(off.position);
        m.sink_backlog.get_or_create(&sink(name)).set(max_seq - off.position);
    }
    for (name, st) in &sinks {
        if let Some(t) = st.last_success {
            m.sink_last_success.get_or_create(&sink(name)).set(t);
        }
    }
    // Whichever instance ran it: the journal has the newest run.
    if let Some(run) = journal.selftest_runs(i64::MIN, i64::MAX, 1)?.first() {
        selftest_ran(run);
    }
    m.journal_events.set(events);
    m.journal_bytes.set(journal.size_bytes() as i64);
    m.start_time.set(crate::status::started_at());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &m.registry).map_err(|e| JournalError::Task(e.to_string()))?;
    Ok(out)
}
