//! The API where its documentation is silent, each unknown set to its unkind
//! side in the emulator: a clock that differs from ours, a `meta.count` that is
//! missing or wrong, page 1 served again past the last page, records without
//! an id or with null user fields, events that reach the API late. Each test
//! runs the real binary and ends with every id exactly once in the journal and
//! the file sink.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tines_audit::journal::Journal;
use tines_audit::mock::{Burst, MockConfig, MockServer, Quirks};

fn collect_args(config: &Path) -> Vec<String> {
    vec!["collect".into(), "--config".into(), config.display().to_string(), "--no-progress".into()]
}

async fn collect_ok(config: &Path) -> String {
    let out = run_bin_async(collect_args(config)).await;
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A history, a config with a file sink, one collect after the history settled, and the checks.
async fn collect_all_exactly_once(mock: &MockServer, collect_extra: &str) -> tempfile::TempDir {
    wait_settled(mock).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/audit.ndjson");
    let cfg = write_config(dir.path(), &mock.base_url(), collect_extra, &file_sink(&out));
    collect_ok(&cfg).await;
    assert_exactly_once(&dir.path().join("data"), mock);
    assert_file_exactly_once(&out, mock);
    dir
}

/// Live events while collecting with the API's clock `offset` seconds from ours:
/// every sync during live traffic succeeds and moves on, and once traffic stops
/// one more sync has every event.
async fn live_traffic_with_api_clock_offset(offset: i64, seed: u64) {
    let mock = start_mock(MockConfig {
        history: 2_000,
        history_span: Duration::from_secs(3600),
        live_rate: 25.0,
        seed,
        quirks: Quirks { clock_offset_secs: offset, ..Default::default() },
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/audit.ndjson");
    let cfg = write_config(dir.path(), &mock.base_url(), "", &file_sink(&out));
    let data = dir.path().join("data");
    let mut last = 0;
    for round in 0..3 {
        // Each sync under live traffic must succeed (no "changed every time it was read")
        // and collect the live events the API dated before its own now minus the settle delay.
        collect_ok(&cfg).await;
        let n = journal_count(&data);
        assert!(n > last, "round {round}: the journal did not grow ({n} events)");
        last = n;
        // New live events for the next round.
        wait_until_clock_past(tines_audit::timeutil::now_secs() + 1).await;
    }
    mock.set_live(false);
    collect_all_exactly_once_in(&mock, &cfg, &data, &out).await;
    mock.shutdown().await;
}

async fn collect_all_exactly_once_in(mock: &MockServer, cfg: &Path, data: &Path, out: &Path) {
    wait_settled(mock).await;
    collect_ok(cfg).await;
    assert_exactly_once(data, mock);
    assert_file_exactly_once(out, mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_clock_5_minutes_behind_stalled_the_collector_and_lost_live_events() {
    live_traffic_with_api_clock_offset(-300, 41).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_clock_5_minutes_ahead_delivered_every_event_5_minutes_late() {
    live_traffic_with_api_clock_offset(300, 42).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_missing_with_page_one_served_past_the_last_page_and_the_run_ends() {
    let quirks = Quirks { omit_count: true, first_page_for_bad_page: true, ..Default::default() };
    let mock = start_mock(MockConfig {
        history: 3_000,
        history_span: Duration::from_secs(3600),
        omit_next_page_number: true,
        next_page_string_null: true,
        seed: 43,
        quirks: quirks.clone(),
        ..Default::default()
    })
    .await;
    // Without a count nothing sizes the windows: the collector pages each one to its end.
    collect_all_exactly_once(&mock, "per_page = 100\nwindow_events = 400").await;
    mock.shutdown().await;

    // A second holding exactly two full pages, past which page 1 comes back: the hardest end to see.
    let mock = start_mock(MockConfig {
        history: 0,
        burst: Some(Burst { count: 200, secs_ago: 120 }),
        omit_next_page_number: true,
        seed: 44,
        quirks,
        ..Default::default()
    })
    .await;
    collect_all_exactly_once(&mock, "per_page = 100\nwindow_events = 400").await;
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_reported_count_lining_up_with_page_size_moved_the_cursor_past_unread_records() {
    // The count is a whole page short, and pages and next_page_number follow the count.
    let mock = start_mock(MockConfig {
        history: 3_000,
        history_span: Duration::from_secs(3600),
        seed: 45,
        quirks: Quirks { count_skew: -100, ..Default::default() },
        ..Default::default()
    })
    .await;
    collect_all_exactly_once(&mock, "per_page = 100\nwindow_events = 1000").await;
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_one_under_reporting_the_count_on_every_read_stalled_the_tenant() {
    let mock = start_mock(MockConfig {
        history: 5_000,
        history_span: Duration::from_secs(3600),
        seed: 46,
        quirks: Quirks { count_skew: -7, count_skew_first_page_only: true, ..Default::default() },
        ..Default::default()
    })
    .await;
    collect_all_exactly_once(&mock, "per_page = 200\nwindow_events = 2000").await;
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_records_with_null_user_and_request_fields_are_stored_and_delivered_as_they_are() {
    let mock = start_mock(MockConfig {
        history: 1_000,
        history_span: Duration::from_secs(3600),
        seed: 47,
        quirks: Quirks { null_fields_fraction: 0.2, ..Default::default() },
        ..Default::default()
    })
    .await;
    let dir = collect_all_exactly_once(&mock, "").await;
    let text = std::fs::read_to_string(dir.path().join("out/audit.ndjson")).unwrap();
    let nulls = text.lines().filter(|l| l.contains(r#""user_email":null,"user_id":null,"user_name":null"#)).count();
    assert!(nulls > 100, "{nulls} system records in the file");
    // The file holds them byte for byte as the API sent them.
    let sent: std::collections::HashSet<String> =
        mock.records().iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    for line in text.lines().filter(|l| l.contains(r#""user_id":null"#)).take(20) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(sent.contains(&serde_json::to_string(&v).unwrap()), "{line}");
    }
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_an_id_blocked_the_tenant_forever() {
    let mock = start_mock(MockConfig {
        history: 2_000,
        history_span: Duration::from_secs(3600),
        seed: 48,
        quirks: Quirks { records_without_id: 3, ..Default::default() },
        ..Default::default()
    })
    .await;
    assert_eq!(mock.ids_without_id().len(), 3);
    let dir = collect_all_exactly_once(&mock, "per_page = 100").await;
    let data = dir.path().join("data");
    let quarantined = || Journal::open_shared(&data).unwrap().quarantined(10).unwrap();
    let q = quarantined();
    assert_eq!(q.len(), 3, "{q:?}");
    let top_level_id = |raw: &str| serde_json::from_str::<serde_json::Value>(raw).unwrap().get("id").is_some();
    assert!(q.iter().all(|r| r.reason == "the record has no id" && !top_level_id(&r.raw)), "{q:?}");
    // Read again (a second collect re-reads the overlap): still three, each once.
    collect_ok(&dir.path().join("config.toml")).await;
    assert_eq!(quarantined().len(), 3);
    let out = run_bin_async(vec!["state".into(), "show".into(), "--data-dir".into(), data.display().to_string()]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 records quarantined"), "{}", text(&out));
    mock.shutdown().await;
}

/// 70 events that reach the API 15 and 5 minutes after their time: the cursor's overlap
/// (10 s here) re-reads neither; reconciliation must find them all.
fn push_late_events(mock: &MockServer) {
    mock.push_late(40, 15 * 60);
    mock.push_late(30, 5 * 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_beyond_the_overlap_were_lost_silently_until_reconcile() {
    for (after_inclusive, before_inclusive, seed) in [(false, false, 49), (true, false, 50), (true, true, 51)] {
        let mock = start_mock(MockConfig {
            history: 3_000,
            history_span: Duration::from_secs(2 * 3600),
            after_inclusive,
            before_inclusive,
            seed,
            ..Default::default()
        })
        .await;
        wait_settled(&mock).await;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out/audit.ndjson");
        let cfg = write_config(dir.path(), &mock.base_url(), "reconcile_slice = \"5m\"", &file_sink(&out));
        let data = dir.path().join("data");
        collect_ok(&cfg).await;
        assert_exactly_once(&data, &mock);
        push_late_events(&mock);
        wait_settled(&mock).await;
        collect_ok(&cfg).await;
        assert_eq!(journal_count(&data) as usize, mock_ids(&mock).len() - 70, "the overlap re-read none of them");

        let o = run_bin_async(vec![
            "reconcile".into(),
            "--config".into(),
            cfg.display().to_string(),
            "--since".into(),
            "1h".into(),
        ])
        .await;
        assert!(o.status.success(), "{}", text(&o));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("70 missing events found and collected"), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("reconciliation found events"), "{}", text(&o));
        assert_exactly_once(&data, &mock);
        assert_file_exactly_once(&out, &mock);

        // A second pass finds nothing and costs one request per slice (12 in the hour).
        let before = mock.stats().requests;
        let o = run_bin_async(vec![
            "reconcile".into(),
            "--config".into(),
            cfg.display().to_string(),
            "--since".into(),
            "1h".into(),
        ])
        .await;
        assert!(String::from_utf8_lossy(&o.stdout).contains(" 0 missing events found"), "{}", text(&o));
        let requests = mock.stats().requests - before;
        assert!(requests <= 14, "{requests} requests for a pass that found nothing");
        let finds = Journal::open_shared(&data).unwrap().reconcile_finds(0, i64::MAX).unwrap();
        assert_eq!(finds.iter().map(|f| f.found).sum::<u64>(), 70);
        assert!(finds.iter().any(|f| f.max_late_secs >= 15 * 60), "{finds:?}");
        // The compliance report says what reconciliation checked and found, not just "no gaps".
        let report = run_bin_async(
            ["report", "--config", &cfg.display().to_string(), "--framework", "soc2", "--from", "3h", "--format", "md"]
                .map(String::from)
                .to_vec(),
        )
        .await;
        let md = String::from_utf8_lossy(&report.stdout);
        assert!(
            md.contains("it found 70 event(s) that reached the API after collection had passed"),
            "{}",
            text(&report)
        );
        assert_eq!(md.matches("- late events found: ").count(), finds.len(), "{md}");
        mock.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_periodic_reconciliation_collects_late_events_and_reports_them() {
    let mock = start_mock(MockConfig {
        history: 1_000,
        history_span: Duration::from_secs(3600),
        seed: 52,
        ..Default::default()
    })
    .await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/audit.ndjson");
    let port = common::rsyslog::free_port();
    let cfg = write_config(
        dir.path(),
        &mock.base_url(),
        "interval = \"1s\"\nreconcile_every = \"2s\"\nreconcile_window = \"1h\"\nreconcile_slice = \"5m\"",
        &format!("{}[web]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"WEB_TOKEN\"\n", file_sink(&out)),
    );
    let data = dir.path().join("data");
    let log = dir.path().join("run.log");
    let token = "status-page-token-0123456789";
    let mut child = spawn_run(&cfg, &log, &[("WEB_TOKEN", token)]);
    wait_until("the history collected", Duration::from_secs(60), || journal_count(&data) >= 1_000).await;
    push_late_events(&mock);
    let want = mock_ids(&mock).len();
    wait_until("the late events reconciled and delivered", Duration::from_secs(90), || {
        journal_count(&data) as usize == want && file_sink_counts(&out).len() == want
    })
    .await;
    // The status page says what reconciliation found.
    let status = || async {
        let r = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/status")).bearer_auth(token).send().await;
        match r {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut page = status().await;
    while !page.contains("<td>70</td></tr>") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        page = status().await;
    }
    assert!(page.contains("Collection checks") && page.contains("<td>70</td></tr>"), "{page}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    assert_exactly_once(&data, &mock);
    assert_file_exactly_once(&out, &mock);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("reconciliation found events"), "{log}");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_echoing_the_request_put_the_api_key_into_errors_and_logs() {
    let mock = start_mock(MockConfig {
        history: 100,
        seed: 53,
        faults: tines_audit::mock::Faults { rate_400: 1.0, ..Default::default() },
        quirks: Quirks { echo_4xx: true, ..Default::default() },
        ..Default::default()
    })
    .await;
    // The emulator really does echo the key.
    let body = reqwest::Client::new()
        .get(format!("{}/api/v1/audit_logs", mock.base_url()))
        .bearer_auth(tines_audit::mock::DEMO_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains(tines_audit::mock::DEMO_KEY), "{body}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    for format in ["text", "json"] {
        let mut args = collect_args(&cfg);
        args.extend(["--log-format".to_string(), format.to_string()]);
        let out = run_bin_async(args).await;
        assert_eq!(out.status.code(), Some(7), "an API that refuses the query is exit 7: {}", text(&out));
        let all = text(&out);
        assert!(all.contains("(400)"), "{all}");
        assert!(!all.contains(tines_audit::mock::DEMO_KEY), "the key leaked: {all}");
    }
    mock.shutdown().await;
}
