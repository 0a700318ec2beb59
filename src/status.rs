//! What the running service knows about itself: per tenant, the last sync and
//! last error; per sink, the last delivery and last error. Written by the
//! service, read by `/readyz`, `/metrics` and the status page. Process-wide,
//! like the metrics: one service runs per process.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

use crate::timeutil::now_secs;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TenantStatus {
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Unix time of the newest event collected in this process (for the silence alert).
    pub last_event_seen: Option<i64>,
    pub consecutive_failures: u32,
    /// Records quarantined by this process (no id, no usable time).
    pub quarantined: u64,
    /// The API's clock minus ours, from its `Date` headers.
    pub api_clock_offset_secs: Option<i64>,
    /// When the last reconciliation pass finished, and events found by passes of this process.
    pub last_reconcile: Option<i64>,
    pub reconcile_found: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SinkStatus {
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub consecutive_failures: u32,
}

#[derive(Debug, Default)]
struct Inner {
    started_at: i64,
    tenants: BTreeMap<String, TenantStatus>,
    sinks: BTreeMap<String, SinkStatus>,
}

fn inner() -> &'static Mutex<Inner> {
    static S: OnceLock<Mutex<Inner>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(Inner { started_at: now_secs(), ..Default::default() }))
}

fn with<T>(f: impl FnOnce(&mut Inner) -> T) -> T {
    f(&mut inner().lock().unwrap_or_else(|p| p.into_inner()))
}

pub fn started_at() -> i64 {
    with(|i| i.started_at)
}

pub fn register_tenant(name: &str) {
    with(|i| {
        i.tenants.entry(name.to_string()).or_default();
    });
}

pub fn register_sink(name: &str) {
    with(|i| {
        i.sinks.entry(name.to_string()).or_default();
    });
}

/// A reconciliation pass finished, having found `found` missing events.
pub fn reconciled(tenant: &str, found: u64) {
    let now = now_secs();
    with(|i| {
        let t = i.tenants.entry(tenant.to_string()).or_default();
        t.last_reconcile = Some(now);
        t.reconcile_found += found;
    });
}

/// What a sync learnt besides its events: the API's clock and the records quarantined.
pub fn sync_details(tenant: &str, api_clock_offset_secs: Option<i64>, quarantined: u64) {
    with(|i| {
        let t = i.tenants.entry(tenant.to_string()).or_default();
        t.api_clock_offset_secs = api_clock_offset_secs;
        t.quarantined += quarantined;
    });
}

pub fn sync_ok(tenant: &str, inserted: u64) {
    let now = now_secs();
    with(|i| {
        let t = i.tenants.entry(tenant.to_string()).or_default();
        t.last_attempt = Some(now);
        t.last_success = Some(now);
        t.consecutive_failures = 0;
        if inserted > 0 {
            t.last_event_seen = Some(now);
        }
    });
}

/// New events reached the journal between syncs (the quick look).
pub fn events_seen(tenant: &str) {
    let now = now_secs();
    with(|i| i.tenants.entry(tenant.to_string()).or_default().last_event_seen = Some(now));
}

pub fn sync_failed(tenant: &str, error: &str) {
    let now = now_secs();
    with(|i| {
        let t = i.tenants.entry(tenant.to_string()).or_default();
        t.last_attempt = Some(now);
        t.last_error = Some(error.to_string());
        t.last_error_at = Some(now);
        t.consecutive_failures += 1;
    });
}

pub fn sink_ok(sink: &str) {
    let now = now_secs();
    with(|i| {
        let s = i.sinks.entry(sink.to_string()).or_default();
        s.last_success = Some(now);
        s.consecutive_failures = 0;
    });
}

pub fn sink_failed(sink: &str, error: &str) {
    let now = now_secs();
    with(|i| {
        let s = i.sinks.entry(sink.to_string()).or_default();
        s.last_error = Some(error.to_string());
        s.last_error_at = Some(now);
        s.consecutive_failures += 1;
    });
}

pub fn tenants() -> BTreeMap<String, TenantStatus> {
    with(|i| i.tenants.clone())
}

pub fn sinks() -> BTreeMap<String, SinkStatus> {
    with(|i| i.sinks.clone())
}
