//! Retention in the daemon: old events every reader has passed are deleted,
//! and what arrives afterwards still reaches every sink.

mod common;

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use common::*;
use tines_audit::journal::Journal;
use tines_audit::mock::MockConfig;
use tines_audit::timeutil::now_secs;

/// Issue 9, finding 1: 500 events older than `retention.events` were delivered to a file
/// sink and pruned; the next 100 events got sequence numbers 1..=100 again, below the
/// sink's offset of 500, and the sink never wrote them (500 of 600 lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_reused_sequence_numbers_and_sinks_skipped_new_events() {
    let mock = start_mock(MockConfig {
        history: 500,
        anchor: Some(now_secs() - 10 * 86_400),
        history_span: Duration::from_secs(86_400),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out/audit.ndjson");
    let cfg = write_config(
        dir.path(),
        &mock.base_url(),
        "interval = \"1s\"",
        &format!("[retention]\nevents = \"2d\"\ncheck_every = \"1s\"\n{}", file_sink(&out)),
    );
    let log = dir.path().join("run.log");
    let _daemon = Daemon(spawn_run(&cfg, &log, &[]), log.clone());

    let (o, d) = (out.clone(), data.clone());
    wait_until("500 old events delivered to the file sink, then pruned", Duration::from_secs(60), || {
        file_sink_counts(&o).len() == 500 && Journal::open_shared(&d).is_ok_and(|j| j.count_events(None).unwrap() == 0)
    })
    .await;

    for i in 0..100 {
        mock.push_event("Login", i, None);
    }
    let o = out.clone();
    wait_until("the 100 new events in the file sink (600 lines)", Duration::from_secs(60), || {
        let lines: u32 = file_sink_counts(&o).values().sum();
        assert!(lines <= 600, "{lines} lines, more than 600");
        lines == 600
    })
    .await;
    assert_file_exactly_once(&out, &mock);
    let j = Journal::open_shared(&data).unwrap();
    let after: Vec<i64> = j.read_after(0, 1_000, usize::MAX).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(after, (501..=600).collect::<Vec<_>>(), "the new events are numbered after the pruned ones");
    // The daemon signed a checkpoint after its first sync, and retention signed its mark
    // before deleting: the pruned journal verifies against the daemon's key.
    let all = j.checkpoints_between(i64::MIN, i64::MAX).unwrap();
    let parsed: Vec<_> = all.iter().map(|c| c.parse().unwrap()).collect();
    assert!(parsed.iter().any(|c| c.reason == "scheduled"), "{parsed:?}");
    assert!(parsed.iter().any(|c| c.reason == "retention" && c.pruned_through == 500), "{parsed:?}");
    let out = run_bin(&["verify", "--data-dir", &data.display().to_string(), "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["verified"], 100, "{report}");
    assert_eq!(report["checkpoints"], all.len(), "{report}");
    mock.shutdown().await;
}

/// The daemon, stopped when the test ends whichever way it ends (its log shown on failure).
struct Daemon(Child, PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!("daemon log:\n{}", std::fs::read_to_string(&self.1).unwrap_or_default());
        }
    }
}
