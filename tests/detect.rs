//! Detection end to end: the real binary collecting from the emulator,
//! evaluating the shipped rules, and sending alerts to a webhook receiver in
//! this process; a crash in the middle of a correlation window; the demo.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tines_audit::mock::{DEMO_KEY, MockConfig, SCENARIO_COUNTRY};

/// What the receiver got: (path, JSON body, Idempotency-Key).
type Received = Arc<Mutex<Vec<(String, Value, String)>>>;

/// An HTTP receiver on 127.0.0.1 that records every POST, answering 500 to the first `fail_first`.
async fn webhook_receiver(fail_first: usize) -> (String, Received) {
    let got: Received = Arc::default();
    let failures = Arc::new(Mutex::new(fail_first));
    let (g, f) = (got.clone(), failures.clone());
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (g, f) = (g.clone(), f.clone());
        async move {
            {
                let mut left = f.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
            }
            let path = req.uri().path().to_string();
            let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            g.lock().unwrap().push((path, v, key));
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn write_geoip(dir: &Path) -> PathBuf {
    let p = dir.join("emulator.mmdb");
    std::fs::write(&p, tines_audit::detect::mmdb::emulator_database()).unwrap();
    p
}

/// A config with detection on, alerts to `{hook}/json` and `{hook}/slack`.
fn detect_config(dir: &Path, base_url: &str, hook: &str) -> PathBuf {
    let geoip = write_geoip(dir);
    let allowed: Vec<String> = tines_audit::mock::country_ranges()
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .filter(|c| c != &format!("\"{SCENARIO_COUNTRY}\""))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let extra = format!(
        r#"interval = "1s"
[detect]
geoip = ["{}"]
allowed_countries = [{}]
alert_lookback = "10m"
[[detect.outputs]]
type = "webhook"
url = "{hook}/json"
[[detect.outputs]]
type = "webhook"
name = "slack"
url = "{hook}/slack"
format = "slack"
"#,
        geoip.display(),
        allowed.join(", ")
    );
    write_config(dir, base_url, &extra, "")
}

fn spawn_run(cfg: &Path, log: &Path) -> Child {
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(cfg)
        .env("TEST_TINES_KEY", DEMO_KEY)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn alerts_for<'a>(got: &'a [(String, Value, String)], path: &str, rule: &str) -> Vec<&'a Value> {
    got.iter().filter(|(p, v, _)| p == path && v["rule"]["id"] == rule).map(|(_, v, _)| v).collect()
}

async fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let mut exited = None;
    wait_until("the daemon to exit", Duration::from_secs(20), || {
        exited = child.try_wait().unwrap();
        exited.is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenarios_reach_a_webhook_from_the_emulator_through_the_journal() {
    let mock = start_mock(MockConfig { history: 400, seed: 41, scenarios: true, ..Default::default() }).await;
    // The first two deliveries fail: alerts wait in the journal and go out on retry.
    let (hook, got) = webhook_receiver(2).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = detect_config(dir.path(), &mock.base_url(), &hook);
    let log = dir.path().join("run.log");
    let child = spawn_run(&cfg, &log);
    let seed = ["tines_credential_mass_deletion", "tines_tenant_owner_or_admin_granted", "tines_unexpected_country"];
    let g = got.clone();
    let l = log.clone();
    wait_until("an alert of each seed kind at the webhook, in both formats", Duration::from_secs(90), || {
        let got = g.lock().unwrap();
        let ok = seed.iter().all(|r| !alerts_for(&got, "/json", r).is_empty())
            && got.iter().filter(|(p, _, _)| p == "/slack").count() >= 3;
        if !ok && std::fs::read_to_string(&l).unwrap_or_default().contains("panicked") {
            panic!("{}", std::fs::read_to_string(&l).unwrap());
        }
        ok
    })
    .await;
    stop(child).await;
    let got = got.lock().unwrap().clone();
    let deletion = alerts_for(&got, "/json", seed[0]);
    assert_eq!(deletion.len(), 1, "one alert for one burst of deletions: {deletion:#?}");
    let d = deletion[0];
    assert_eq!(d["correlation"]["type"], "value_sum");
    assert!(d["correlation"]["value"].as_f64().unwrap() > 5.0);
    assert!(d["who"]["user_email"].as_str().unwrap().ends_with("@acme-sec.example.com"));
    assert!(d["from"]["country"].is_string() && d["from"]["ip"].is_string());
    let events = d["events"].as_array().unwrap();
    assert!(events.len() >= 6, "the alert links every deletion: {events:#?}");
    assert!(events.iter().all(|e| e["operation_name"] == "CredentialDestruction"));
    let link = events[0]["link"].as_str().unwrap();
    assert!(link.starts_with(&mock.base_url()) && link.contains("operation_name=CredentialDestruction"), "{link}");
    let owner = alerts_for(&got, "/json", seed[1]);
    assert!(owner.iter().any(|a| a["summary"].as_str().unwrap().contains("UserEdit")), "{owner:#?}");
    let foreign = alerts_for(&got, "/json", seed[2]);
    assert!(foreign.iter().any(|a| a["from"]["country"] == SCENARIO_COUNTRY), "{foreign:#?}");
    // Every alert went out once per output (keys unique), and Slack got its own shape.
    let mut keys: Vec<&str> = got.iter().filter(|(p, _, _)| p == "/json").map(|(_, _, k)| k.as_str()).collect();
    let n = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), n, "an alert was sent twice");
    let slack =
        got.iter().find(|(p, v, _)| p == "/slack" && v["text"].as_str().unwrap().contains("credentials")).unwrap();
    assert!(slack.1["blocks"].is_array());
    // The alerts are in the journal with their events.
    let j = tines_audit::journal::Journal::open_shared(&dir.path().join("data")).unwrap();
    let stored = j.alerts_after(0, 1000).unwrap();
    let a = stored.iter().find(|a| a.rule_id == seed[0]).unwrap();
    assert!(j.alert_event_seqs(a.seq).unwrap().len() >= 6);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixth_deletion_after_a_crash_mid_window_fires_once_and_no_alert_is_sent_twice() {
    let mock = start_mock(MockConfig { history: 200, seed: 43, ..Default::default() }).await;
    let (hook, got) = webhook_receiver(0).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = detect_config(dir.path(), &mock.base_url(), &hook);
    let data = dir.path().join("data");
    let detector_at = |seq: i64| {
        let d = data.clone();
        move || {
            tines_audit::journal::Journal::open_shared(&d)
                .and_then(|j| Ok(j.consumer("detector", 0)?.position >= seq && seq > 0))
                .unwrap_or(false)
        }
    };
    let max_seq = || tines_audit::journal::Journal::open_shared(&data).and_then(|j| j.max_seq()).unwrap_or(0);
    // A human user of the emulated tenant.
    let user = 3;
    let child = spawn_run(&cfg, &dir.path().join("run1.log"));
    for _ in 0..3 {
        mock.push_event("CredentialDestruction", user, None);
    }
    let n = mock.event_count();
    wait_until("the first three deletions collected", Duration::from_secs(60), || journal_count(&data) as usize == n)
        .await;
    wait_until("the detector past them", Duration::from_secs(30), detector_at(max_seq())).await;
    // Crash: no chance to flush anything.
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
    let child = spawn_run(&cfg, &dir.path().join("run2.log"));
    for _ in 0..3 {
        mock.push_event("CredentialDestruction", user, None);
    }
    let rule = "tines_credential_mass_deletion";
    let g = got.clone();
    wait_until("the alert after the sixth deletion", Duration::from_secs(60), || {
        !alerts_for(&g.lock().unwrap(), "/json", rule).is_empty()
    })
    .await;
    // A seventh is the same situation (suppressed), and a second crash-restart sends nothing again.
    mock.push_event("CredentialDestruction", user, None);
    let n = mock.event_count();
    wait_until("the seventh collected", Duration::from_secs(60), || journal_count(&data) as usize == n).await;
    wait_until("the detector past it", Duration::from_secs(30), detector_at(max_seq())).await;
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
    let child = spawn_run(&cfg, &dir.path().join("run3.log"));
    // Wait until the restarted daemon has synced once (its cursor moved past now), then check nothing was resent.
    let t = tines_audit::timeutil::now_secs();
    let d = data.clone();
    wait_until("a sync after the restart", Duration::from_secs(30), || {
        tines_audit::journal::Journal::open_shared(&d)
            .ok()
            .and_then(|j| j.progress(TENANT, "cursor").ok().flatten())
            .is_some_and(|p| p.updated_at > t)
    })
    .await;
    stop(child).await;
    let got = got.lock().unwrap().clone();
    let alerts = alerts_for(&got, "/json", rule);
    assert_eq!(alerts.len(), 1, "exactly one alert across two crashes: {alerts:#?}");
    assert_eq!(alerts[0]["correlation"]["value"], 6.0);
    assert_eq!(alerts[0]["events"].as_array().unwrap().len(), 6, "all six deletions, three from before the crash");
    mock.shutdown().await;
}

#[test]
fn rules_validate_points_at_file_line_and_field_and_rules_test_runs_examples() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("typo.yml"),
        "title: Typo\nid: typo\nlogsource: {product: tines}\ndetection:\n  sel:\n    operation_nme: Login\n  condition: sel\n",
    )
    .unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/jobs_deleted.yml"),
        dir.path().join("jobs_deleted.yml"),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let o = run_bin(&["rules", "validate", d]);
    assert_eq!(o.status.code(), Some(11), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("typo.yml:6 [typo] operation_nme: unknown field"), "{out}");
    assert!(out.contains("1 rule(s) ok, 1 problem(s)"), "{out}");
    let o = run_bin(&["rules", "test", "rules"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(" passed, 0 failed"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_raises_each_seed_alert_within_its_first_minute_and_backtest_replays_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let args: Vec<String> = ["demo", "--duration", "40s", "--history", "2000", "--data-dir", data.to_str().unwrap()]
        .map(String::from)
        .to_vec();
    let o = run_bin_async(args).await;
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for what in
        ["more than five credential deletions", "a new tenant owner or admin", "activity from an unexpected country"]
    {
        assert!(out.contains(&format!("found {what}")), "{what}: {out}");
    }
    assert!(out.contains("ALERT [HIGH] More than five credentials deleted"), "{out}");
    // Its posture names the scripted owner grant with who, when and from where, and the
    // self-test it runs once passes, its test alerts marked as tests.
    let grant = out.lines().find(|l| l.contains("granted during the demo:")).unwrap_or_else(|| panic!("{out}"));
    assert!(
        grant.contains("(tenant owner, admin) by ") && grant.contains(" from ") && grant.contains("(event "),
        "{grant}"
    );
    assert!(out.contains("self-test         passed:"), "{out}");
    assert!(out.contains("ALERT [HIGH] [TEST] More than five credentials deleted"), "{out}");
    let o = run_bin_async(
        ["rules", "backtest", "--since", "10m", "--emulator-geoip", "--data-dir", data.to_str().unwrap()]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("tines_credential_mass_deletion") && out.contains("nothing was stored or sent"), "{out}");
}
