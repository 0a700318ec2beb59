//! A sink that is down never stops collection and loses nothing: the daemon
//! keeps collecting live events while the syslog receiver is down, and when it
//! comes back every event arrives, in journal order.

mod common;

use std::time::Duration;

use common::rsyslog::*;
use common::*;
use tines_audit::mock::MockConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_goes_on_while_a_sink_is_down_and_the_sink_catches_up_in_order() {
    let mock = start_mock(MockConfig { history: 2_000, live_rate: 50.0, seed: 41, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let syslog_port = free_port();
    let out = dir.path().join("out/audit.ndjson");
    let cfg = write_config(
        dir.path(),
        &mock.base_url(),
        "interval = \"1s\"",
        &format!("{}{}", file_sink(&out), syslog_sink("siem", syslog_port)),
    );
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&cfg, &log, &[]);
    // The receiver is down: collection and the file sink go on, the syslog offset stays at 0.
    let d = data.clone();
    wait_until("history and live events collected while syslog is down", Duration::from_secs(60), || {
        journal_count(&d) > 2_100
    })
    .await;
    let j = tines_audit::journal::Journal::open_shared(&data).unwrap();
    assert_eq!(j.consumer("siem", 0).unwrap().position, 0, "nothing was delivered while the receiver was down");
    assert!(std::fs::read_to_string(&log).unwrap().contains("delivery failed, collection goes on"));
    // The receiver comes back; live events keep arriving for a moment, then stop.
    let r = start_rsyslog(dir.path(), "imtcp", syslog_port, None);
    mock.set_live(false);
    let want = mock_ids(&mock);
    let d = data.clone();
    wait_until("every emulator event in the journal", Duration::from_secs(60), || journal_ids(&d) == want).await;
    let total = want.len();
    let lines = tokio::task::spawn_blocking(move || {
        let lines = wait_lines(&r, total);
        drop(r);
        lines
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    // Exactly the journal's events, in the journal's order (syslog is at-least-once, and here nothing doubled).
    let batch = j.read_after(0, 1_000_000, usize::MAX).unwrap();
    let journal_order: Vec<i64> = batch.iter().map(|e| e.id).collect();
    assert_eq!(ids_in_order(&lines), journal_order);
    assert_file_exactly_once(&out, &mock);
    mock.shutdown().await;
}
