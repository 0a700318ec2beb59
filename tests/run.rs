//! The daemon: several tenants at once on an interval, sinks fed as events
//! land, and a clean stop on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tines_audit::mock::{DEMO_KEY, MockConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_collects_several_tenants_live_and_stops_cleanly_on_sigterm() {
    let a = start_mock(MockConfig { history: 3_000, live_rate: 20.0, seed: 31, ..Default::default() }).await;
    let b =
        start_mock(MockConfig { history: 2_000, live_rate: 20.0, seed: 32, tenant_id: 99, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out/audit.ndjson");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir = "{}"
[collect]
interval = "1s"
settle_delay = "1s"
requests_per_minute = 0
[[tenants]]
name = "a"
domain = "{}"
api_key_env = "K"
since = "40d"
[[tenants]]
name = "b"
domain = "{}"
api_key_env = "K"
since = "40d"
[[sinks]]
type = "file"
path = "{}"
"#,
            data.display(),
            a.base_url(),
            b.base_url(),
            out.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .env("K", DEMO_KEY)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Live events keep arriving; wait until both tenants' history and some live events are in.
    let d = data.clone();
    wait_until("both tenants collected, live events included", Duration::from_secs(60), || {
        let Ok(j) = tines_audit::journal::Journal::open_shared(&d) else { return false };
        j.count_events(Some("a")).unwrap_or(0) > 3_020 && j.count_events(Some("b")).unwrap_or(0) > 2_020
    })
    .await;
    // Stop producing, let the last events settle, and wait for the daemon to take them all in.
    a.set_live(false);
    b.set_live(false);
    let (ida, idb) = (mock_ids(&a), mock_ids(&b));
    let d = data.clone();
    wait_until("every event of both tenants in the journal", Duration::from_secs(60), || {
        let Ok(j) = tines_audit::journal::Journal::open_shared(&d) else { return false };
        j.ids("a").unwrap() == ida && j.ids("b").unwrap() == idb
    })
    .await;
    let o = out.clone();
    let total = ida.len() + idb.len();
    let l = log.clone();
    wait_until("the file sink to catch up", Duration::from_secs(30), || {
        let n = file_sink_counts(&o).len();
        if n > total {
            panic!("{n} ids in the file, more than {total}: {}", std::fs::read_to_string(&l).unwrap());
        }
        n == total
    })
    .await;
    stop(&mut child).await;
    let counts = file_sink_counts(&out);
    assert!(counts.values().all(|c| *c == 1), "no id twice in the file");
    assert_eq!(counts.len(), total);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(!stderr.contains(DEMO_KEY), "the key never appears in logs");
    a.shutdown().await;
    b.shutdown().await;
}

/// Stops a daemon with SIGTERM and waits for its clean exit.
async fn stop(child: &mut std::process::Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut exited = None;
    wait_until("the daemon to exit after SIGTERM", Duration::from_secs(20), || {
        exited = child.try_wait().unwrap();
        exited.is_some()
    })
    .await;
    assert_eq!(exited.unwrap().code(), Some(0), "clean exit on SIGTERM");
}

fn journal_count(data: &std::path::Path) -> i64 {
    tines_audit::journal::Journal::open_shared(data).ok().and_then(|j| j.count_events(Some(TENANT)).ok()).unwrap_or(0)
}

/// With settled syncs an hour apart, only the quick look can bring live events in: they
/// reach the journal and the file sink within seconds, and the settled read over the same
/// time afterwards stores none of them twice and loses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_look_delivers_live_events_before_the_next_sync_and_the_sync_stores_nothing_twice() {
    let mock = start_mock(MockConfig { history: 500, live_rate: 5.0, seed: 33, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out/audit.ndjson");
    let extra = "interval = \"1h\"\nquick_look_every = \"1s\"";
    let cfg = write_config(dir.path(), &mock.base_url(), extra, &file_sink(&out));
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&cfg, &log, &[("TINES_AUDIT_LOG", "info,tines_audit::service=debug")]);
    wait_until("the first sync", Duration::from_secs(60), || journal_count(&data) >= 500).await;
    let first = journal_count(&data);
    wait_until("live events brought in by quick looks", Duration::from_secs(30), || journal_count(&data) >= first + 10)
        .await;
    wait_until("the file sink to have them", Duration::from_secs(30), || {
        file_sink_counts(&out).len() as i64 >= first + 10
    })
    .await;
    mock.set_live(false);
    stop(&mut child).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("quick look"), "{logged}");
    assert_eq!(logged.matches("sync complete").count(), 1, "one settled sync only: {logged}");
    // The settled read over the time the quick looks covered.
    wait_settled(&mock).await;
    let run =
        run_bin_async(vec!["collect".into(), "--config".into(), cfg.display().to_string(), "--no-progress".into()])
            .await;
    assert!(run.status.success(), "{}", text(&run));
    assert_exactly_once(&data, &mock);
    assert_file_exactly_once(&out, &mock);
    mock.shutdown().await;
}

/// Events that appear late (dated up to 5 s before they become visible, beyond the quick
/// look's look-back of one settle delay) are still collected, once, by the settled read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_arrivals_the_quick_look_misses_are_collected_once_by_the_settled_read() {
    let mock = start_mock(MockConfig {
        history: 300,
        live_rate: 20.0,
        late_fraction: 0.5,
        max_lateness_secs: 5,
        seed: 34,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out/audit.ndjson");
    let extra = "interval = \"3s\"\nquick_look_every = \"1s\"";
    let cfg = write_config(dir.path(), &mock.base_url(), extra, &file_sink(&out));
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&cfg, &log, &[("TINES_AUDIT_LOG", "info,tines_audit::service=debug")]);
    wait_until("live events collected", Duration::from_secs(60), || journal_count(&data) >= 300 + 150).await;
    mock.set_live(false);
    let want = mock_ids(&mock);
    let d = data.clone();
    wait_until("every event in the journal", Duration::from_secs(60), || {
        tines_audit::journal::Journal::open_shared(&d).is_ok_and(|j| j.ids(TENANT).unwrap() == want)
    })
    .await;
    wait_until("the file sink to catch up", Duration::from_secs(30), || file_sink_counts(&out).len() == want.len())
        .await;
    stop(&mut child).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("quick look"), "quick looks ran: {logged}");
    assert_exactly_once(&data, &mock);
    assert_file_exactly_once(&out, &mock);
    mock.shutdown().await;
}
