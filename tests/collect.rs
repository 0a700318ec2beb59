//! End-to-end collection against the emulator: the real binary, a fresh data
//! directory, and at the end the journal must hold every emulator id exactly once.

mod common;

use std::time::Duration;

use common::*;
use tines_audit::config::{RawConfig, Since, TenantConfig};
use tines_audit::journal::Journal;
use tines_audit::mock::{Burst, DEMO_KEY, Faults, MockConfig};
use tines_audit::secret::Secret;
use tines_audit::service;
use tines_audit::source::tines::collector::Filters;
use tines_audit::source::tines::endpoint::Endpoint;

fn args(config: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["collect".to_string(), "--config".into(), config.display().to_string(), "--no-progress".into()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

async fn collect_ok(config: &std::path::Path) -> String {
    let out = run_bin_async(args(config, &[])).await;
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_50k_events_lands_exactly_once_in_journal_and_file() {
    let mock = start_mock(MockConfig { history: 50_000, seed: 11, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/audit.ndjson");
    let cfg = write_config(dir.path(), &mock.base_url(), "", &file_sink(&out));
    let stdout = collect_ok(&cfg).await;
    assert!(stdout.contains("50000 new events"), "{stdout}");
    assert_exactly_once(&dir.path().join("data"), &mock);
    assert_file_exactly_once(&out, &mock);
    // A second run finds nothing new and writes nothing twice.
    let stdout = collect_ok(&cfg).await;
    assert!(stdout.contains(" 0 new events"), "{stdout}");
    assert_file_exactly_once(&out, &mock);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_2000_events_in_one_second_across_pages() {
    let mock = start_mock(MockConfig {
        history: 3_000,
        history_span: Duration::from_secs(3600),
        burst: Some(Burst { count: 2_000, secs_ago: 600 }),
        seed: 12,
        ..Default::default()
    })
    .await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    // Small pages and windows: the burst second cannot be split and spans many pages.
    let cfg = write_config(dir.path(), &mock.base_url(), "per_page = 300\nwindow_events = 600", "");
    collect_ok(&cfg).await;
    assert_exactly_once(&dir.path().join("data"), &mock);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_boundary_behaviours_of_after_and_before_lose_nothing() {
    for (after_inclusive, before_inclusive) in [(false, false), (true, false), (false, true), (true, true)] {
        // Dense history (several events every second) so that every window edge cuts a busy second.
        let mock = start_mock(MockConfig {
            history: 20_000,
            history_span: Duration::from_secs(3600),
            after_inclusive,
            before_inclusive,
            seed: 13,
            ..Default::default()
        })
        .await;
        wait_settled(&mock).await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), &mock.base_url(), "window_events = 1000", "");
        collect_ok(&cfg).await;
        assert_exactly_once(&dir.path().join("data"), &mock);
        mock.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_and_late_arrivals_during_pagination() {
    let mock = start_mock(MockConfig {
        history: 20_000,
        history_span: Duration::from_secs(2 * 3600),
        live_rate: 150.0,
        late_fraction: 0.3,
        max_lateness_secs: 3,
        faults: Faults { latency: Duration::from_millis(5), ..Default::default() },
        seed: 14,
        ..Default::default()
    })
    .await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    // Settle 1s < lateness 3s: late arrivals land behind the cursor and must be caught by the overlap.
    let cfg = write_config(dir.path(), &mock.base_url(), "per_page = 200\nwindow_events = 1000", "");
    for _ in 0..3 {
        collect_ok(&cfg).await;
    }
    mock.set_live(false);
    wait_until_clock_past(mock.newest_created_at().unwrap() + 4).await;
    collect_ok(&cfg).await;
    assert_exactly_once(&dir.path().join("data"), &mock);
    assert!(mock.event_count() > 20_000, "live events were produced");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_of_429_5xx_truncated_and_reset_responses_at_10_percent() {
    let mock = start_mock(MockConfig {
        history: 20_000,
        seed: 15,
        faults: Faults {
            rate_429: 0.03,
            rate_5xx: 0.03,
            rate_truncated: 0.02,
            rate_reset: 0.02,
            fault_retry_after_secs: 0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &mock.base_url(), "per_page = 100\nwindow_events = 1000", "");
    collect_ok(&cfg).await;
    assert_exactly_once(&dir.path().join("data"), &mock);
    let s = mock.stats();
    assert!(s.injected_429 > 0 && s.injected_5xx > 0 && s.truncated > 0 && s.resets > 0, "faults were injected: {s:?}");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quirky_meta_without_next_page_number_and_string_null() {
    let mock = start_mock(MockConfig {
        history: 5_000,
        omit_next_page_number: true,
        next_page_string_null: true,
        seed: 16,
        ..Default::default()
    })
    .await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &mock.base_url(), "window_events = 1000", "");
    collect_ok(&cfg).await;
    assert_exactly_once(&dir.path().join("data"), &mock);
    mock.shutdown().await;
}

/// Runs `collect` once per threshold and SIGKILLs it (no chance to clean up) as soon as
/// `progress` reaches the threshold; returns how many runs were killed rather than finished.
async fn collect_killed_at(cfg: &std::path::Path, thresholds: &[u64], progress: impl Fn() -> u64) -> usize {
    let mut kills = 0;
    for &threshold in thresholds {
        let mut child = std::process::Command::new(BIN)
            .args(args(cfg, &[]))
            .env("TEST_TINES_KEY", tines_audit::mock::DEMO_KEY)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut exited = false;
        wait_until("progress to pass the kill threshold", Duration::from_secs(120), || {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            exited || progress() >= threshold
        })
        .await;
        if !exited {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    kills
}

/// SIGKILL the collector at several points of a backfill, restart, and check
/// that nothing was lost or doubled in the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_killed_mid_backfill_resumes_without_loss_or_doubles() {
    let mock = start_mock(MockConfig {
        history: 60_000,
        seed: 17,
        faults: Faults { latency: Duration::from_millis(3), ..Default::default() },
        ..Default::default()
    })
    .await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(dir.path(), &mock.base_url(), "window_events = 2000\nconcurrency = 2", "");
    let d = data.clone();
    let kills = collect_killed_at(&cfg, &[1, 8_000, 20_000, 35_000, 50_000], move || journal_count(&d) as u64).await;
    assert!(kills >= 3, "the collector was killed mid-run at least three times ({kills})");
    let before = journal_count(&data);
    assert!(before < 60_000, "the kills interrupted the backfill before it finished ({before})");
    collect_ok(&cfg).await;
    assert_exactly_once(&data, &mock);
    // The hash chain survived the kills: every event verifies, none is missing.
    let d = data.display().to_string();
    let out = run_bin_async(vec!["verify".into(), "--data-dir".into(), d.clone()]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("journal verified: 60000 events and "), "{}", text(&out));
    assert!(text(&out).contains("across 1 tenants, 0 problem(s)"), "{}", text(&out));
    assert!(text(&out).contains(&format!("tenant {TENANT}: newest checkpoint ")), "{}", text(&out));
    // An auditor holding only the public key gets the same answer; another key is refused.
    let keys = |dir: &std::path::Path| {
        let out = std::process::Command::new(BIN)
            .args(["keys", "public", "--data-dir", &dir.display().to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let pem = dir.with_extension("pub.pem");
        std::fs::write(&pem, &out.stdout).unwrap();
        pem.display().to_string()
    };
    let (ours, theirs) = (keys(&data), keys(&dir.path().join("elsewhere")));
    let with_key = |key: &str| vec!["verify".into(), "--data-dir".into(), d.clone(), "--public-key".into(), key.into()];
    let out = run_bin_async(with_key(&ours)).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run_bin_async([with_key(&theirs), vec!["--format".into(), "json".into()]].concat()).await;
    assert_eq!(out.status.code(), Some(13), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"][0]["kind"], "signature_invalid", "{report}");
    // A record changed behind the journal's back is named, with exit 13 and in JSON.
    let conn = rusqlite::Connection::open(data.join("journal.db")).unwrap();
    conn.execute("UPDATE events SET raw = replace(raw, '\"id\"', '\"id\" ') WHERE seq = 1234", []).unwrap();
    let id: i64 = conn.query_row("SELECT id FROM events WHERE seq = 1234", [], |r| r.get(0)).unwrap();
    drop(conn);
    let out = run_bin_async(vec!["verify".into(), "--data-dir".into(), d, "--format".into(), "json".into()]).await;
    assert_eq!(out.status.code(), Some(13), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["problems"],
        serde_json::json!([{"kind": "record_changed", "tenant": TENANT, "id": id, "seq": 1234}]),
        "{report}"
    );
    mock.shutdown().await;
}

/// Kill the collector while the file sink is writing; afterwards the file
/// holds each id exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_killed_mid_delivery_holds_each_id_exactly_once() {
    let mock = start_mock(MockConfig { history: 60_000, seed: 18, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/audit.ndjson");
    // First collect without the sink, so that the sink's whole work is a long drain.
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    collect_ok(&cfg).await;
    let cfg = write_config(dir.path(), &mock.base_url(), "", &file_sink(&out));
    let o = out.clone();
    let file_bytes = move || std::fs::metadata(&o).map(|m| m.len()).unwrap_or(0);
    let kills = collect_killed_at(&cfg, &[1, 4_000_000, 12_000_000, 20_000_000], file_bytes).await;
    assert!(kills >= 2, "the sink was killed mid-delivery at least twice ({kills})");
    collect_ok(&cfg).await;
    assert_file_exactly_once(&out, &mock);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_fills_a_past_range_without_moving_the_cursor_and_resumes() {
    let mock = start_mock(MockConfig {
        history: 10_000,
        history_span: Duration::from_secs(10 * 86_400),
        seed: 19,
        ..Default::default()
    })
    .await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[collect]\nrequests_per_minute = 0\nsettle_delay = \"1s\"\n[[tenants]]\nname = \"{TENANT}\"\ndomain = \"{}\"\napi_key_env = \"TEST_TINES_KEY\"\nsince = \"2d\"\n",
            data.display(),
            mock.base_url()
        ),
    )
    .unwrap();
    collect_ok(&cfg).await;
    let recent = journal_count(&data);
    assert!(recent > 0 && recent < 10_000, "only the last two days first ({recent})");
    let cfg_s = cfg.display().to_string();
    let out = run_bin_async(vec![
        "backfill".into(),
        "--config".into(),
        cfg_s.clone(),
        "--since".into(),
        "11d".into(),
        "--no-progress".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_exactly_once(&data, &mock);
    let state = run_bin_async(vec!["state".into(), "show".into(), "--config".into(), cfg_s, "--json".into()]).await;
    let v: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    let jobs = v["jobs"].as_array().unwrap();
    assert!(jobs.iter().any(|j| j["job"] == "cursor" && j["finished_at"].is_null()));
    assert!(jobs.iter().any(|j| j["job"].as_str().unwrap().starts_with("backfill:") && !j["finished_at"].is_null()));
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_are_passed_to_the_api() {
    let mock = start_mock(MockConfig { history: 5_000, seed: 20, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run_bin_async(vec![
        "collect".into(),
        "--tenant".into(),
        mock.base_url(),
        "--name".into(),
        TENANT.into(),
        "--since".into(),
        "40d".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--operation".into(),
        "Login".into(),
        "--no-progress".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let j = tines_audit::journal::Journal::open_shared(&data).unwrap();
    let n = j.count_events(None).unwrap();
    assert!(n > 0, "some logins were collected");
    let batch = j.read_after(0, 100_000, usize::MAX).unwrap();
    assert!(batch.iter().all(|e| e.raw.contains("\"operation_name\":\"Login\"")), "only Login records");
    mock.shutdown().await;
}

/// Syncs the emulator's tenant once in this process, paced at `limit` requests per
/// `window` (0: not paced); returns the tenant's client statistics' limiter wait in ms.
async fn sync_paced(mock: &tines_audit::mock::MockServer, limit: u32, window: Duration) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = RawConfig::default().build().unwrap();
    settings.client.requests_per_minute = limit;
    settings.client.rate_window = window;
    settings.client.rate_margin = Duration::from_millis(200);
    settings.client.max_attempts = 20;
    settings.windows.settle_secs = 1;
    settings.windows.per_page = 100;
    settings.windows.window_events = 1_000;
    settings.windows.buffered_events = 2_000;
    settings.windows.concurrency = 8;
    settings.tenants.push(TenantConfig {
        name: TENANT.into(),
        endpoint: Endpoint::parse(&mock.base_url()).unwrap(),
        api_key: Secret::new(DEMO_KEY),
        since: Since::Ago(Duration::from_secs(2 * 3600)),
        filters: Filters::default(),
    });
    let journal = Journal::open(dir.path()).unwrap();
    let tenant = service::Tenant::new(settings.tenants[0].clone(), &settings).unwrap();
    service::sync_tenant(&journal, &tenant, &settings, None).await.unwrap();
    drop(journal);
    assert_exactly_once(dir.path(), mock);
    tenant.client.stats.limiter_wait_ms.load(std::sync::atomic::Ordering::Relaxed)
}

/// The pacer spends the whole budget (its limit equals the API's) against the emulator's
/// strictest counting, a sliding window closed at both ends, with latencies that differ by
/// up to 100 ms, and draws no 429. A 2 s window stands in for the API's 60 s one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacer_at_the_full_limit_draws_no_429_from_a_strict_sliding_window() {
    let window = Duration::from_secs(2);
    let emulator = || MockConfig {
        history: 3_000,
        history_span: Duration::from_secs(3600),
        seed: 16,
        rate_limit_per_minute: 10,
        rate_window: window,
        faults: Faults {
            latency: Duration::from_millis(10),
            latency_spike_rate: 0.3,
            latency_spike: Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    };
    let mock = start_mock(emulator()).await;
    wait_settled(&mock).await;
    let waited_ms = sync_paced(&mock, 10, window).await;
    let stats = mock.stats();
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    assert!(stats.requests > 30 && waited_ms > 0, "the limit paced the sync: {stats:?}, waited {waited_ms} ms");
    mock.shutdown().await;

    // The control: unpaced, the same sync meets the limit (and still loses nothing).
    let mock = start_mock(emulator()).await;
    wait_settled(&mock).await;
    sync_paced(&mock, 0, window).await;
    assert!(mock.stats().rate_limited > 0, "{:?}", mock.stats());
    mock.shutdown().await;
}
