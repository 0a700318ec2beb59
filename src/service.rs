//! The moving parts put together: one sync of every tenant (`collect`), a
//! backfill of a past range, and the daemon (`run`) that syncs tenants on an
//! interval while sinks drain the journal, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::config::{ConfigError, Settings, TenantConfig};
use crate::journal::{Journal, JournalError, Progress, Pruned, Readers};
use crate::lease::{Gate, while_held};
use crate::signing::SigningKey;
use crate::sinks::runner::{Consumer, DrainError, Flush};
use crate::source::tines::client::TinesClient;
use crate::source::tines::collector::{CollectError, Sync, SyncOutcome, SyncProgress};
use crate::source::tines::quick_look::QuickLook;
use crate::source::tines::reconcile::{Reconcile, ReconcileOutcome};
use crate::timeutil::{format_rfc3339, now_secs};

/// The job name of a tenant's incremental cursor.
pub const CURSOR_JOB: &str = "cursor";

/// A progress callback for long syncs.
pub type OnProgress = Arc<dyn Fn(&str, &SyncProgress) + Send + core::marker::Sync>;

/// A tenant ready to collect.
pub struct Tenant {
    pub config: TenantConfig,
    pub client: TinesClient,
}

impl Tenant {
    pub fn new(config: TenantConfig, settings: &Settings) -> anyhow::Result<Self> {
        let client = TinesClient::new(&config.name, config.endpoint.clone(), &config.api_key, settings.client.clone())?;
        Ok(Tenant { config, client })
    }
}

/// Builds every configured tenant.
pub fn tenants(settings: &Settings) -> anyhow::Result<Vec<Tenant>> {
    settings.tenants.iter().map(|t| Tenant::new(t.clone(), settings)).collect()
}

/// The tenant's cursor, created at its `since` on first use. `api_now` is now
/// by the API's clock: a cursor is never created in its future.
pub async fn ensure_cursor(journal: &Journal, tenant: &TenantConfig, api_now: i64) -> Result<Progress, JournalError> {
    let (name, start, filter) =
        (tenant.name.clone(), tenant.since.resolve(api_now).min(api_now), tenant.filters.fingerprint());
    let progress = journal.call(move |j| j.start_progress(&name, CURSOR_JOB, start, None, &filter)).await?;
    if progress.filter != tenant.filters.fingerprint() {
        tracing::warn!(
            tenant = %tenant.name,
            stored = %progress.filter,
            now = %tenant.filters.fingerprint(),
            "filters changed since this tenant's cursor was created; history before the cursor is not collected again with the new filters (use `tines-audit backfill` for that)"
        );
    }
    Ok(progress)
}

/// One incremental sync of a tenant's cursor, up to now minus the settle delay.
pub async fn sync_tenant(
    journal: &Journal,
    tenant: &Tenant,
    settings: &Settings,
    on_progress: Option<OnProgress>,
) -> Result<SyncOutcome, CollectError> {
    let api_now = tenant.client.api_now().await?;
    ensure_cursor(journal, &tenant.config, api_now).await?;
    let name = tenant.config.name.clone();
    let report = move |p: &SyncProgress| {
        if let Some(cb) = &on_progress {
            cb(&name, p);
        }
    };
    let sync = Sync {
        client: &tenant.client,
        journal,
        job: CURSOR_JOB,
        filters: &tenant.config.filters,
        settings: &settings.windows,
    };
    crate::status::register_tenant(&tenant.config.name);
    let outcome = match sync.run(None, &report).await {
        Ok(o) => o,
        Err(e) => {
            crate::status::sync_failed(&tenant.config.name, &e.to_string());
            crate::metrics::metrics().sync_failures.get_or_create(&crate::metrics::tenant(&tenant.config.name)).inc();
            return Err(e);
        }
    };
    crate::status::sync_ok(&tenant.config.name, outcome.inserted);
    crate::status::sync_details(&tenant.config.name, tenant.client.clock.offset(), outcome.quarantined);
    count_collected(&tenant.config.name, outcome.inserted);
    tracing::info!(
        tenant = %tenant.config.name,
        fetched = outcome.fetched,
        new = outcome.inserted,
        pages = outcome.pages,
        cursor = %format_rfc3339(outcome.to),
        "sync complete"
    );
    Ok(outcome)
}

/// One reconciliation pass over a tenant's history since `since` (see
/// `source::tines::reconcile`): re-counts closed slices and reads again those
/// where the API has more than the journal.
pub async fn reconcile_tenant(
    journal: &Journal,
    tenant: &Tenant,
    settings: &Settings,
    since: i64,
    on_slice: &(dyn Fn(u64, u64) + Send + core::marker::Sync),
) -> Result<ReconcileOutcome, CollectError> {
    let pass = Reconcile {
        client: &tenant.client,
        journal,
        filters: &tenant.config.filters,
        windows: &settings.windows,
        slice_secs: settings.reconcile.slice.as_secs().max(1) as i64,
    };
    let outcome = pass.run(since, on_slice).await?;
    tracing::info!(
        tenant = %tenant.config.name,
        slices = outcome.slices,
        reread = outcome.reread,
        found = outcome.found,
        range = %format!("{}..{}", format_rfc3339(outcome.range_start), format_rfc3339(outcome.range_end)),
        "reconciliation pass complete"
    );
    Ok(outcome)
}

/// The job name of a backfill of `[start, end)`.
pub fn backfill_job(start: i64, end: i64) -> String {
    format!("backfill:{}..{}", format_rfc3339(start), format_rfc3339(end))
}

/// Collects `[start, end)` of a tenant into the journal as a resumable job
/// that leaves the cursor alone. An unfinished backfill of the tenant is
/// resumed instead of starting a new one (unless `restart`).
pub async fn backfill(
    journal: &Journal,
    tenant: &Tenant,
    settings: &Settings,
    start: i64,
    end: i64,
    restart: bool,
    on_progress: Option<OnProgress>,
) -> Result<(Progress, SyncOutcome), CollectError> {
    let name = tenant.config.name.clone();
    let all = journal.call(|j| j.all_progress()).await?;
    let unfinished = all
        .into_iter()
        .find(|p| p.tenant == name && p.job.starts_with("backfill:") && p.finished_at.is_none() && !restart);
    let job = match unfinished {
        Some(p) => {
            tracing::info!(tenant = %name, job = %p.job, position = %format_rfc3339(p.position), "resuming unfinished backfill");
            p
        }
        None => {
            let (n, job, filter) = (name.clone(), backfill_job(start, end), tenant.config.filters.fingerprint());
            journal.call(move |j| j.start_progress(&n, &job, start, Some(end), &filter)).await?
        }
    };
    let end = job.range_end.unwrap_or(end);
    let report = move |p: &SyncProgress| {
        if let Some(cb) = &on_progress {
            cb(&name, p);
        }
    };
    let sync = Sync {
        client: &tenant.client,
        journal,
        job: &job.job,
        filters: &tenant.config.filters,
        settings: &settings.windows,
    };
    let outcome = sync.run(Some(end), &report).await?;
    Ok((job, outcome))
}

/// Builds a consumer for each configured sink. Object-store sinks sign their digests with
/// `key`, or, when the caller has not loaded it, with [`signing_key`] (read once, and only
/// if such a sink is configured).
pub fn consumers(settings: &Settings, key: Option<&Arc<SigningKey>>) -> Result<Vec<Consumer>, ConfigError> {
    let mut key = key.cloned();
    let mut out = Vec::with_capacity(settings.sinks.len());
    for s in &settings.sinks {
        let bad = |e: String| ConfigError::Invalid(format!("sink {}: {e}", s.name()));
        let sink = if matches!(s, crate::sinks::SinkConfig::ObjectStore(_)) {
            let k = match &key {
                Some(k) => k.clone(),
                None => key.insert(Arc::new(signing_key(settings).map_err(|e| bad(e.to_string()))?)).clone(),
            };
            s.build_signed(k)
        } else {
            s.build()
        };
        out.push(Consumer::new(sink.map_err(bad)?));
    }
    Ok(out)
}

/// Drains every sink once; returns (sink name, delivered or error).
pub async fn drain_all(journal: &Journal, consumers: &mut [Consumer]) -> Vec<(String, Result<u64, DrainError>)> {
    let mut out = Vec::with_capacity(consumers.len());
    for c in consumers.iter_mut() {
        let r = c.drain(journal, Flush::All).await;
        out.push((c.name().to_string(), r));
    }
    out
}

/// The job names the daemon runs, each under its own lease when instances share a journal.
pub fn job_names(settings: &Settings) -> Vec<String> {
    let mut jobs: Vec<String> = settings.tenants.iter().map(|t| format!("tenant:{}", t.name)).collect();
    jobs.extend(settings.sinks.iter().map(|s| format!("sink:{}", s.name())));
    if settings.detect.is_some() {
        jobs.push("detector".into());
    }
    jobs.push("indexer".into());
    jobs
}

/// The daemon: every tenant synced each `interval` (each on its own task),
/// each sink draining as soon as new events land, until `shutdown` turns true.
/// With a journal shared by several instances, each of these jobs runs on the one
/// instance holding its lease ([`crate::lease`]).
pub async fn run(settings: Arc<Settings>, journal: Journal, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let key = Arc::new(signing_key(&settings)?);
    let appended = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    let gate = if journal.shared() {
        Gate::start(journal.clone(), job_names(&settings), settings.lease_ttl, shutdown.clone())
    } else {
        Gate::everything()
    };
    for tenant in tenants(&settings)? {
        let tenant = Arc::new(tenant);
        let (settings, appended, key) = (settings.clone(), appended.clone(), key.clone());
        let job = format!("tenant:{}", tenant.config.name);
        tasks.spawn(while_held(gate.clone(), job, journal.clone(), shutdown.clone(), move |journal, stop| {
            tenant_loop(journal, tenant.clone(), settings.clone(), appended.clone(), key.clone(), stop)
        }));
    }
    consumers(&settings, Some(&key))?; // every sink's configuration is checked once, before any job starts
    for (i, sink) in settings.sinks.iter().enumerate() {
        let (settings2, appended, key) = (settings.clone(), appended.clone(), key.clone());
        let job = format!("sink:{}", sink.name());
        tasks.spawn(while_held(gate.clone(), job, journal.clone(), shutdown.clone(), move |journal, stop| {
            // A fresh consumer each time the lease is taken: it reads its offset from the journal.
            let consumer = consumers(&settings2, Some(&key)).map(|mut all| all.swap_remove(i));
            let (appended, interval) = (appended.clone(), settings2.interval);
            async move {
                match consumer {
                    Ok(c) => sink_loop(journal, c, appended, stop, interval).await,
                    Err(e) => tracing::error!("sink configuration: {e}"),
                }
            }
        }));
    }
    {
        let (appended, interval) = (appended.clone(), settings.interval);
        tasks.spawn(while_held(
            gate.clone(),
            "indexer".into(),
            journal.clone(),
            shutdown.clone(),
            move |journal, stop| indexer_loop(journal, appended.clone(), stop, interval),
        ));
    }
    {
        let (settings, mut stop) = (settings.clone(), shutdown.clone());
        tasks.spawn(async move {
            let every = (settings.silence_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            let mut last_alert: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
            loop {
                watch_silence(&settings, &mut last_alert);
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        });
    }
    if let Some(keep) = settings.retention {
        let (journal, readers, mut stop, every, key) =
            (journal.clone(), retention_readers(&settings), shutdown.clone(), settings.retention_every, key.clone());
        tasks.spawn(async move {
            loop {
                let (j, r) = (journal.clone(), readers.clone());
                let key = key.clone();
                match journal.call(move |_| prune_passed(&j, &r, keep, &key)).await {
                    Ok(p) if p.deleted == 0 => {
                        tracing::debug!(slowest = %p.slowest.0, position = p.slowest.1, "retention: nothing to prune")
                    }
                    Ok(p) => tracing::info!(
                        deleted = p.deleted,
                        slowest = %p.slowest.0,
                        position = p.slowest.1,
                        "retention: pruned events every reader had passed"
                    ),
                    Err(e) => tracing::warn!("retention: pruning failed, will try again: {e}"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        });
    }
    if settings.detect.is_some() {
        let (settings, appended) = (settings.clone(), appended.clone());
        tasks.spawn(while_held(
            gate.clone(),
            "detector".into(),
            journal.clone(),
            shutdown.clone(),
            move |journal, stop| {
                let (settings, appended) = (settings.clone(), appended.clone());
                async move {
                    let Some(d) = &settings.detect else { return };
                    let bases =
                        settings.tenants.iter().map(|t| (t.name.clone(), t.endpoint.base().to_string())).collect();
                    // On the detector's holder, so instances sharing a journal run one schedule.
                    let selftest = crate::detect::selftest::schedule(
                        d.clone(),
                        settings.sinks.clone(),
                        journal.clone(),
                        stop.clone(),
                    );
                    let detection = async {
                        // Started (its state read from the journal) each time the lease is taken.
                        match crate::detect::Detector::start(d, &settings.sinks, bases, &journal).await {
                            Ok(detector) => {
                                crate::detect::run(detector, journal.clone(), appended, stop, settings.interval).await
                            }
                            // Collection and delivery go on without detection.
                            Err(e) => tracing::error!("detection could not start, collection goes on without it: {e}"),
                        }
                    };
                    tokio::join!(detection, selftest);
                }
            },
        ));
    }
    stopped(&mut shutdown).await;
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// A tenant's collection: a sync every `interval`, and reconciliation passes, until `stop`.
async fn tenant_loop(
    journal: Journal,
    tenant: Arc<Tenant>,
    settings: Arc<Settings>,
    appended: Arc<Notify>,
    key: Arc<SigningKey>,
    stop: watch::Receiver<bool>,
) {
    let (synced, first_sync) = watch::channel(false);
    let every = settings.checkpoint_every;
    let name = tenant.config.name.clone();
    tokio::join!(
        collect_loop(journal.clone(), tenant, settings, appended, synced, stop.clone()),
        checkpoint_loop(journal, name, key, every, first_sync, stop),
    );
}

/// Signs a checkpoint of the tenant's chain after its first sync (its row exists by
/// then), then every `every`, whether or not a sync is running: a long backfill does not
/// hold the hourly checkpoint up.
async fn checkpoint_loop(
    journal: Journal,
    tenant: String,
    key: Arc<SigningKey>,
    every: Duration,
    mut first_sync: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        r = first_sync.wait_for(|done| *done) => if r.is_err() { return },
        _ = stopped(&mut stop) => return,
    }
    loop {
        let (name, k) = (tenant.clone(), key.clone());
        let wait = match journal.call(move |j| crate::journal::checkpoint::sign(j, &name, &k, "scheduled", 0)).await {
            Ok(_) => every,
            Err(e) => {
                tracing::warn!(tenant = %tenant, "signing a checkpoint failed, will try again in a minute: {e}");
                every.min(Duration::from_secs(60))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Syncs the tenant every `interval` (and reconciles it), with quick looks between syncs,
/// until `stop`; `synced` turns true after the first sync.
async fn collect_loop(
    journal: Journal,
    tenant: Arc<Tenant>,
    settings: Arc<Settings>,
    appended: Arc<Notify>,
    synced: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    // The first pass runs after the first good sync: it also covers whatever the
    // service was down for.
    let mut next_reconcile = tokio::time::Instant::now();
    let mut next_posture = tokio::time::Instant::now();
    let mut look = QuickLook::default();
    loop {
        let started = tokio::time::Instant::now();
        // Where this sync left the cursor, if it succeeded: quick looks start from there.
        let mut cursor: Option<i64> = None;
        tokio::select! {
            r = sync_tenant(&journal, &tenant, &settings, None) => match r {
                Ok(o) => {
                    failures = 0;
                    cursor = Some(o.to);
                    if o.inserted > 0 {
                        appended.notify_waiters();
                    }
                }
                Err(e) => {
                    failures += 1;
                    log_collect_error(&tenant.config.name, &e, failures);
                }
            },
            _ = stopped(&mut stop) => return,
        }
        synced.send_replace(true);
        if let Some(every) = settings.reconcile.every
            && failures == 0
            && tokio::time::Instant::now() >= next_reconcile
        {
            let since = tenant.client.clock.now() - settings.reconcile.window.as_secs() as i64;
            tokio::select! {
                r = reconcile_tenant(&journal, &tenant, &settings, since, &|_, _| {}) => match r {
                    Ok(o) => {
                        next_reconcile = tokio::time::Instant::now() + every;
                        if o.found > 0 {
                            appended.notify_waiters();
                        }
                    }
                    Err(e) => {
                        // Tried again after the next sync; collection itself goes on.
                        next_reconcile = tokio::time::Instant::now() + settings.interval;
                        tracing::warn!(tenant = %tenant.config.name, "reconciliation pass failed, will try again: {e}");
                    }
                },
                _ = stopped(&mut stop) => return,
            }
        }
        if let Some(every) = settings.posture_check
            && failures == 0
            && tokio::time::Instant::now() >= next_posture
        {
            tokio::select! {
                r = check_posture(&journal, &tenant) => {
                    next_posture = tokio::time::Instant::now() + every;
                    if let Err(e) = r {
                        tracing::warn!(tenant = %tenant.config.name, "posture check failed, will try again: {e}");
                    }
                }
                _ = stopped(&mut stop) => return,
            }
        }
        let due = started + settings.interval;
        // Until the next sync, a quick look at the newest page every `quick_look_every`,
        // the first at once (the settle delay's worth of events the sync left unread).
        if let (Some(every), Some(cursor)) = (settings.quick_look, cursor) {
            while tokio::time::Instant::now() < due {
                // A look still retrying when the sync is due gives way to it.
                let looked = tokio::time::timeout_at(due, quick_look(&journal, &tenant, &settings, &mut look, cursor));
                tokio::select! {
                    r = looked => {
                        if r.is_ok_and(|n| n > 0) {
                            appended.notify_waiters();
                        }
                    }
                    _ = stopped(&mut stop) => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep_until((tokio::time::Instant::now() + every).min(due)) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// The rule id of the alert a posture check raises.
pub const POSTURE_DRIFT_RULE: &str = "posture_drift";

/// Reads the tenant's admin lists and compares them with the posture its audit history
/// gives (`posture --live`, on a schedule). Entries in the tenant that no record created,
/// or in force by the records but gone from the tenant, raise a `posture_drift` alert,
/// once per distinct drift (its id is a digest of the drifted entries), through the same
/// journal table and alert outputs as detection. Returns how many entries drifted.
pub async fn check_posture(journal: &Journal, tenant: &Tenant) -> anyhow::Result<usize> {
    use sha2::Digest as _;
    let name = tenant.config.name.clone();
    let live = crate::posture::live::fetch(&tenant.client).await;
    let n = name.clone();
    let computed =
        journal.call(move |j| Ok(crate::posture::compute(j, &n, &crate::posture::Options::default()))).await?;
    let posture = match computed {
        Ok(p) => p,
        // Nothing collected for it yet: nothing to compare.
        Err(crate::posture::PostureError::UnknownTenant(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let drift = crate::posture::drift(&posture, &live);
    let mut keys: Vec<String> = drift
        .undocumented()
        .map(|i| format!("+{}:{}", i.kind.as_str(), i.id))
        .chain(drift.missing().map(|i| format!("-{}:{}", i.kind.as_str(), i.id)))
        .collect();
    for area in drift.areas.iter().filter(|a| !a.checked) {
        tracing::info!(tenant = %name, area = area.kind.title(), "posture check: area not checked: {}", area.note.as_deref().unwrap_or("no reason given"));
    }
    if keys.is_empty() {
        return Ok(0);
    }
    keys.sort();
    let digest: String =
        sha2::Sha256::digest(keys.join("\n").as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect();
    let (u, m) = (drift.undocumented().count(), drift.missing().count());
    let listed: Vec<String> = drift
        .undocumented()
        .map(|i| format!("{} {} (undocumented)", i.kind.as_str(), i.id))
        .chain(drift.missing().map(|i| format!("{} {} (missing from the tenant)", i.kind.as_str(), i.id)))
        .take(5)
        .collect();
    let more =
        if keys.len() > listed.len() { format!(" and {} more", keys.len() - listed.len()) } else { String::new() };
    let summary = format!(
        "Posture drift: the tenant differs from its audit history: {u} undocumented, {m} missing: {}{more} in tenant {name}",
        listed.join("; ")
    );
    tracing::warn!(tenant = %name, undocumented = u, missing = m, "{summary}");
    // A missing entry's alert links the event that created it.
    let event_ids: Vec<i64> = drift
        .missing()
        .filter_map(|i| posture.entries.iter().find(|e| e.kind == i.kind && e.named(&i.id)))
        .filter_map(|e| e.since.as_ref().map(|c| c.event_id))
        .collect();
    let now = crate::timeutil::now_secs();
    let alert = crate::journal::NewAlert {
        id: format!("{POSTURE_DRIFT_RULE}:{name}:{digest}"),
        rule_id: POSTURE_DRIFT_RULE.into(),
        group_key: serde_json::json!({ "tenant": name }).to_string(),
        tenant: name.clone(),
        event_time: now,
        trigger_seq: 0,
        event_ids,
    };
    let drift_json = serde_json::to_value(&drift)?;
    let consumer = format!("posture:{name}");
    journal
        .call(move |j| {
            let at = j.consumers()?.into_iter().find(|(n, _)| *n == consumer).map_or(0, |(_, o)| o.position);
            let max = j.max_seq()?;
            j.commit_detection(&consumer, at, max.max(at), "", &[alert], |a, events| {
                serde_json::json!({
                    "type": "tines_audit_alert",
                    "id": a.id,
                    "summary": summary,
                    "rule": {
                        "id": POSTURE_DRIFT_RULE,
                        "title": "Posture drift: the tenant differs from its audit history",
                        "level": "high",
                        "description": "The tenant's admin API lists IP access rules, egress allowlist entries or tenant owners that no audit record created (undocumented), or lacks entries the records left in force (missing). See `tines-audit posture --live`.",
                    },
                    "tenant": a.tenant,
                    "event_time": format_rfc3339(a.event_time),
                    "raised_at": format_rfc3339(now),
                    "drift": drift_json,
                    "events": events.iter().map(|e| serde_json::json!({
                        "seq": e.seq, "tenant": e.tenant, "id": e.id, "created_at": format_rfc3339(e.created_at),
                        "operation_name": e.operation_name,
                    })).collect::<Vec<_>>(),
                })
                .to_string()
            })
        })
        .await?;
    Ok(keys.len())
}

/// Adds events a sync or a quick look stored to the tenant's collected count.
fn count_collected(tenant: &str, n: u64) {
    crate::metrics::metrics().events_collected.get_or_create(&crate::metrics::tenant(tenant)).inc_by(n);
}

/// One quick look at a tenant's newest page (see `source::tines::quick_look`); returns
/// how many events it added to the journal. A failure only costs freshness: the settled
/// sync, which reports its own errors, collects the same events.
async fn quick_look(journal: &Journal, tenant: &Tenant, settings: &Settings, look: &mut QuickLook, cursor: i64) -> u64 {
    let name = &tenant.config.name;
    let lookback = settings.windows.settle_secs;
    let per_page = settings.windows.per_page;
    match look.look(&tenant.client, journal, &tenant.config.filters, cursor, lookback, per_page).await {
        Ok(o) => {
            if o.inserted > 0 {
                crate::status::events_seen(name);
                count_collected(name, o.inserted);
                tracing::debug!(tenant = %name, fetched = o.fetched, new = o.inserted, "quick look");
            }
            o.inserted
        }
        Err(e) => {
            tracing::debug!(tenant = %name, "quick look failed, the next sync collects the same events: {e}");
            0
        }
    }
}

/// A sink draining the journal as events land (or on its interval), until `stop`.
async fn sink_loop(
    journal: Journal,
    mut consumer: Consumer,
    appended: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    interval: Duration,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let notified = appended.notified();
        let (wait, wake_on_new_events) = match consumer.drain(&journal, Flush::WhenDue).await {
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(sink = consumer.name(), delivered = n, "delivered");
                }
                backoff = Duration::from_secs(1);
                // A partial batch waiting for its linger wakes us when due.
                (consumer.due_in().map_or(interval, |d| d.min(interval)), true)
            }
            Err(e) => {
                log_drain_error(consumer.name(), &e, backoff);
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                // A failing sink waits out its backoff: new events do not make it hammer the destination.
                (w, false)
            }
        };
        tokio::select! {
            _ = notified, if wake_on_new_events => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut stop) => {
                // Last chance to hand over what was collected, bounded so shutdown stays prompt.
                let _ = tokio::time::timeout(Duration::from_secs(10), consumer.drain(&journal, Flush::All)).await;
                return;
            }
        }
    }
}

/// The search indexer: follows the journal like a sink, one short transaction per batch.
async fn indexer_loop(journal: Journal, appended: Arc<Notify>, mut stop: watch::Receiver<bool>, interval: Duration) {
    let mut since_optimize = 0usize;
    loop {
        let notified = appended.notified();
        let wait = loop {
            match journal.call(|j| crate::query::index::index_batch(j, crate::query::index::BATCH)).await {
                Ok(n) if n == crate::query::index::BATCH => {
                    since_optimize += n;
                    tokio::task::yield_now().await
                }
                Ok(n) => {
                    since_optimize += n;
                    // After a large intake (a backfill), refresh the planner's statistics.
                    if since_optimize >= 100_000 {
                        since_optimize = 0;
                        if let Err(e) = journal.call(|j| j.optimize()).await {
                            tracing::warn!("search index: refreshing statistics failed: {e}");
                        }
                    }
                    break interval;
                }
                Err(e) => {
                    tracing::warn!("search index: indexing failed, will try again: {e}");
                    break Duration::from_secs(5);
                }
            }
            if *stop.borrow() {
                return;
            }
        };
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Every reader of the journal retention must wait for, as configured: each sink, and with
/// detection on, the detector and each alert output (the search indexer is always counted).
pub fn retention_readers(settings: &Settings) -> Readers {
    let mut readers = Readers { events: settings.sinks.iter().map(|s| s.name()).collect(), alert_outputs: Vec::new() };
    if let Some(d) = &settings.detect {
        readers.events.push(crate::detect::CONSUMER.to_string());
        readers.alert_outputs = d.outputs.iter().map(|o| o.consumer_name()).collect();
    }
    readers
}

/// The installation's signing key, created in the data directory on first use.
pub fn signing_key(settings: &Settings) -> anyhow::Result<SigningKey> {
    let at = settings.signing_key();
    let (key, created) = at.load_or_create()?;
    if created {
        tracing::info!(path = %at.path().display(), fingerprint = %key.public().fingerprint(), "created a signing key for checkpoints and digests (back it up; `tines-audit keys public` prints the public key)");
    }
    Ok(key)
}

/// Deletes events older than `keep` that every reader has passed (blocking).
pub fn prune_passed(
    journal: &Journal,
    readers: &Readers,
    keep: Duration,
    key: &SigningKey,
) -> Result<Pruned, JournalError> {
    let pruned = journal.prune_passed(now_secs() - keep.as_secs() as i64, readers, Some(key))?;
    crate::metrics::metrics().events_pruned.inc_by(pruned.deleted);
    Ok(pruned)
}

/// Raises the self-alert for tenants silent longer than `health.silence_after`, at most once per period.
fn watch_silence(settings: &Settings, last_alert: &mut std::collections::HashMap<String, i64>) {
    let now = now_secs();
    let limit = settings.silence_after.as_secs() as i64;
    let statuses = crate::status::tenants();
    for t in &settings.tenants {
        let st = statuses.get(&t.name).cloned().unwrap_or_default();
        let since = st.last_event_seen.unwrap_or_else(crate::status::started_at);
        let silent = now - since > limit;
        let gauge = crate::metrics::metrics().tenant_silent.get_or_create(&crate::metrics::tenant(&t.name)).clone();
        gauge.set(i64::from(silent));
        if silent && last_alert.get(&t.name).is_none_or(|at| now - at > limit) {
            last_alert.insert(t.name.clone(), now);
            let errors = st.last_error.as_deref().map_or(String::new(), |e| format!("; last error: {e}"));
            tracing::error!(
                tenant = %t.name,
                silent_for_s = now - since,
                "tenant has produced no new audit events for longer than health.silence_after ({}s){errors}; check the tenant, its API key and this collector",
                limit
            );
        }
    }
}

/// Resolves once the shutdown flag turns true (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.is_ok();
}

fn log_drain_error(sink: &str, e: &DrainError, retry_in: Duration) {
    use crate::sinks::SinkError::{Permanent, Refused};
    let permanent = matches!(e, DrainError::Sink { source: Permanent(_) | Refused(_), .. });
    if permanent {
        // Will not heal by itself: an operator must fix the sink's settings or the destination.
        tracing::error!(
            sink,
            retry_in_s = retry_in.as_secs(),
            "delivery refused, the sink is stuck until this is fixed (collection goes on, nothing is lost): {e}"
        );
    } else {
        tracing::warn!(
            sink,
            retry_in_s = retry_in.as_secs(),
            "delivery failed, collection goes on and the sink will catch up: {e}"
        );
    }
}

fn log_collect_error(tenant: &str, e: &CollectError, failures: u32) {
    use crate::source::tines::client::FetchError as F;
    match e {
        CollectError::Fetch(F::Unauthorized { .. } | F::Forbidden { .. } | F::NotFound { .. })
        | CollectError::Journal(_) => {
            tracing::error!(tenant, failures, "collection stopped, operator action needed: {e}");
        }
        _ => tracing::warn!(tenant, failures, "sync failed, will retry next interval (cursor unchanged): {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> Settings {
        let text = format!(
            "[[tenants]]\nname = \"t\"\ndomain = \"t.tines.com\"\napi_key = \"k\"\n\
             [[sinks]]\ntype = \"file\"\nname = \"archive\"\npath = \"/tmp/a.ndjson\"\n{extra}"
        );
        crate::config::RawConfig::parse(&text, "test", &|_| None).unwrap().build().unwrap()
    }

    #[test]
    fn retention_waits_for_every_configured_reader() {
        assert_eq!(retention_readers(&settings("")), Readers { events: vec!["archive".into()], alert_outputs: vec![] });
        let s = settings(
            "[detect]\n[[detect.outputs]]\ntype = \"stdout\"\n[[detect.outputs]]\ntype = \"sink\"\nsink = \"archive\"\n",
        );
        assert_eq!(
            retention_readers(&s),
            Readers {
                events: vec!["archive".into(), crate::detect::CONSUMER.into()],
                alert_outputs: vec!["alerts>stdout".into(), "alerts>sink:archive".into()],
            }
        );
    }
}
