//! Running it for a long time: backups that round-trip, a full disk that
//! pauses collection and resumes it, retention that never removes what a
//! consumer still needs, and the silence self-alert.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use tines_audit::mock::MockConfig;

fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_export_and_import_move_a_collector_to_a_new_host() {
    let mock = start_mock(MockConfig { history: 3_000, seed: 61, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    let c = cfg.display().to_string();
    assert!(run_bin_async(cmd(&["collect", "--config", &c])).await.status.success());
    let backup = dir.path().join("backup.db").display().to_string();
    let out = run_bin_async(cmd(&["state", "export", "--config", &c, &backup])).await;
    assert!(out.status.success(), "{}", text(&out));
    // The new host: an empty data directory.
    let new_data = dir.path().join("new-host");
    let nd = new_data.display().to_string();
    let out = run_bin_async(cmd(&["state", "import", "--data-dir", &nd, &backup])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3000 events"), "{}", text(&out));
    assert_exactly_once(&new_data, &mock);
    // The cursor came along: collecting on the new host fetches no history again.
    let out = run_bin_async(cmd(&["collect", "--config", &c, "--data-dir", &nd])).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains(" 0 new events"), "{}", text(&out));
    let again = run_bin_async(cmd(&["state", "import", "--data-dir", &nd, &backup])).await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("--replace"), "{}", text(&again));
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_collection_with_a_clear_error_and_it_resumes_without_loss() {
    let mock = start_mock(MockConfig { history: 20_000, seed: 62, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    // The journal may not grow past 2 MiB: that is a full disk as SQLite sees it.
    let full = write_config(dir.path(), &mock.base_url(), "window_events = 2000\n[journal]\nmax_size = \"2MiB\"", "");
    let out = run_bin_async(cmd(&["collect", "--config", &full.display().to_string()])).await;
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert!(text(&out).contains("disk is full") && text(&out).contains("resumes by itself"), "{}", text(&out));
    let partial = journal_count(&dir.path().join("data"));
    assert!(partial < 20_000, "collection stopped part way ({partial})");
    // Space returns.
    let roomy = write_config(dir.path(), &mock.base_url(), "window_events = 2000", "");
    let out = run_bin_async(cmd(&["collect", "--config", &roomy.display().to_string()])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_exactly_once(&dir.path().join("data"), &mock);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_only_what_every_sink_has_passed_and_silence_raises_a_self_alert() {
    // 30 days of history; keep 10 days.
    let mock = start_mock(MockConfig { history: 3_000, seed: 63, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out/a.ndjson");
    let syslog_port = common::rsyslog::free_port();
    // Two sinks: the file works, the syslog receiver is down, so nothing may be pruned at first.
    let cfg = write_config(
        dir.path(),
        &mock.base_url(),
        "interval = \"1s\"",
        &format!(
            "{}{}[retention]\nevents = \"10d\"\ncheck_every = \"1s\"\n[health]\nsilence_after = \"2s\"\n",
            file_sink(&out),
            syslog_sink("siem", syslog_port)
        ),
    );
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&cfg, &log, &[]);
    let o = out.clone();
    wait_until("the file sink to hold everything", Duration::from_secs(60), || file_sink_counts(&o).len() == 3_000)
        .await;
    // Several prune rounds pass while the syslog sink is stuck at 0: nothing is removed.
    let l = log.clone();
    wait_until("the silence self-alert", Duration::from_secs(30), || {
        std::fs::read_to_string(&l).unwrap_or_default().contains("has produced no new audit events")
    })
    .await;
    assert_eq!(journal_count(&data), 3_000, "a consumer still needs every event");
    // The receiver comes up; once it has everything, events older than 10 days go.
    let r = common::rsyslog::start_rsyslog(dir.path(), "imtcp", syslog_port, None);
    let d = data.clone();
    let cutoff = tines_audit::timeutil::now_secs() - 10 * 86_400;
    let ids = mock_ids(&mock);
    wait_until("retention to prune old events", Duration::from_secs(120), || journal_count(&d) < 3_000).await;
    let j = tines_audit::journal::Journal::open_shared(&data).unwrap();
    let kept = j.read_after(0, 10_000, usize::MAX).unwrap();
    assert!(kept.iter().all(|e| e.created_at >= cutoff - 5), "only old events were pruned");
    assert!(kept.len() > 100 && kept.len() < ids.len());
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    drop(r);
    assert!(std::fs::read_to_string(&log).unwrap().contains("retention: pruned events"));
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_one_json_object_a_line() {
    let mock = start_mock(MockConfig { history: 100, seed: 64, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    let out = run_bin_async(cmd(&["collect", "--config", &cfg.display().to_string(), "--log-format", "json"])).await;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "something was logged");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("sync complete")), "{stderr}");
    mock.shutdown().await;
}
