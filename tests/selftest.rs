//! The self-test end to end: the real binary runs every shipped rule on synthetic events and
//! sends the test alerts to receivers in this process, leaving a journal of real events and
//! a file sink exactly as they were; an output that is down fails it by name; the daemon's
//! scheduled run is recorded and listed by the compliance report.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::rsyslog::free_port;
use common::*;
use serde_json::Value;
use tines_audit::journal::Journal;
use tines_audit::mock::{DEMO_KEY, MockConfig};

/// What a receiver got: (path, JSON body, Idempotency-Key).
type Received = Arc<Mutex<Vec<(String, Value, String)>>>;

/// An HTTP receiver on 127.0.0.1 recording every POST and answering `status`.
async fn receiver(status: u16) -> (String, Received) {
    let got: Received = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let g = g.clone();
        async move {
            let path = req.uri().path().to_string();
            let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
            g.lock().unwrap().push((path, serde_json::from_slice(&body).unwrap(), key));
            (axum::http::StatusCode::from_u16(status).unwrap(), "receiver says hello")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// A `[detect]` section with every shipped rule on (the emulator's GeoIP, the allowlist the
/// rules' examples assume) and these outputs.
fn detect_section(dir: &Path, extra: &str, outputs: &str) -> String {
    let geoip = dir.join("emulator.mmdb");
    std::fs::write(&geoip, tines_audit::detect::mmdb::emulator_database()).unwrap();
    format!(
        "[detect]\ngeoip = [\"{}\"]\nallowed_countries = [\"US\", \"IE\", \"GB\"]\n{extra}\n{outputs}",
        geoip.display()
    )
}

fn webhook(name: &str, url: &str, format: &str) -> String {
    format!("[[detect.outputs]]\ntype = \"webhook\"\nname = \"{name}\"\nurl = \"{url}\"\nformat = \"{format}\"\n")
}

/// Every file under `root` with its bytes.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Every row of the journal (events with their chain links, offsets, alerts, ledgers...).
fn journal_rows(data: &Path) -> Vec<tines_audit::journal::dump::Row> {
    let j = Journal::open_read_only(data).unwrap();
    let mut rows = Vec::new();
    j.dump(&mut |r| {
        rows.push(r);
        Ok(())
    })
    .unwrap();
    rows
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The test every other check of the self-test leans on: a journal of real events and a file
/// sink (with its alert twin as an output) are byte for byte what they were, while every
/// shipped rule fired and both webhooks got the test alerts, marked as tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_fires_every_rule_and_delivers_without_touching_the_journal_or_any_sink() {
    let mock = start_mock(MockConfig { history: 300, seed: 61, ..Default::default() }).await;
    wait_settled(&mock).await;
    let (hook, got) = receiver(200).await;
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out/audit.ndjson"));
    // Alerts as events to two sinks: an exactly-once file sink (probed, never written with
    // a record the journal lacks) and an at-least-once webhook sink (sent the test alerts).
    let outputs = format!(
        "{}{}[[detect.outputs]]\ntype = \"sink\"\nsink = \"archive\"\n[[detect.outputs]]\ntype = \"sink\"\nsink = \"hooksink\"\n",
        webhook("siem", &format!("{hook}/json"), "json"),
        webhook("slack", &format!("{hook}/slack"), "slack")
    );
    let webhook_sink = format!(
        "[[sinks]]\ntype = \"webhook\"\nname = \"hooksink\"\nurl = \"{hook}/sink\"\nencoding = \"json_array\"\n"
    );
    let sinks = format!("{}{webhook_sink}{}", file_sink(&out), detect_section(dir.path(), "", &outputs));
    let cfg = write_config(dir.path(), &mock.base_url(), "", &sinks);
    let o = run_bin_async(vec!["collect".into(), "--config".into(), cfg.display().to_string()]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(journal_count(&data) > 250);
    let (rows_before, files_before) = (journal_rows(&data), files(out.parent().unwrap()));
    let sink_events = |got: &[(String, Value, String)]| -> Vec<Value> {
        got.iter().filter(|(p, _, _)| p == "/sink").flat_map(|(_, v, _)| v.as_array().unwrap().clone()).collect()
    };
    let events_before = sink_events(&got.lock().unwrap());
    assert_eq!(events_before.len() as i64, journal_count(&data), "collect fed the webhook sink the journal's events");
    assert!(files_before.keys().any(|p| p.ends_with("audit.ndjson")), "{:?}", files_before.keys());

    let o = run_bin_async(vec![
        "selftest".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--format".into(),
        "json".into(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(report["passed"], true, "{report:#}");
    let rules = report["rules"].as_array().unwrap();
    assert_eq!(rules.len(), tines_audit::detect::rules::RulePack::builtin().docs.len());
    assert!(rules.iter().all(|r| r["result"] == "fired" || r["result"] == "counted"), "{report:#}");
    let fired = rules.iter().filter(|r| r["result"] == "fired").count();
    let by_name = |n: &str| report["outputs"].as_array().unwrap().iter().find(|x| x["output"] == n).unwrap().clone();
    let siem = by_name("alerts>siem");
    assert_eq!(siem["result"], "delivered", "{siem}");
    assert!(siem["answer"].as_str().unwrap().contains("200 OK"), "{siem}");
    assert_eq!(by_name("alerts>slack")["result"], "delivered");
    let archive = by_name("alerts>sink:archive");
    assert_eq!(archive["result"], "checked", "{archive}");
    assert_eq!(by_name("alerts>sink:hooksink")["result"], "delivered");

    let got = got.lock().unwrap().clone();
    let json: Vec<&Value> = got.iter().filter(|(p, _, _)| p == "/json").map(|(_, v, _)| v).collect();
    assert_eq!(json.len(), fired, "one test alert per rule that fired");
    for v in &json {
        assert_eq!(v["test"], true, "{v}");
        assert!(v["summary"].as_str().unwrap().starts_with("[TEST] "), "{v}");
        assert_eq!(v["tenant"], tines_audit::detect::selftest::TENANT);
    }
    assert!(
        got.iter().filter(|(p, _, _)| p != "/sink").all(|(_, _, key)| key.starts_with("selftest:")),
        "the alert webhooks' idempotency keys are the test alerts' ids"
    );
    // The webhook sink got the test alerts as its alert twin sends alerts, and nothing else.
    let sent = sink_events(&got);
    let after = &sent[events_before.len()..];
    assert_eq!(after.len(), fired, "{after:?}");
    assert!(after.iter().all(|v| v["test"] == true && v["id"].as_str().unwrap().starts_with("selftest:")), "{after:?}");
    let slack: Vec<&Value> = got.iter().filter(|(p, _, _)| p == "/slack").map(|(_, v, _)| v).collect();
    assert_eq!(slack.len(), fired);
    assert!(slack.iter().all(|v| v["text"].as_str().unwrap().contains("[TEST] ")), "{slack:?}");

    // Not one row of the journal changed (no event, alert, offset or state), nor one byte of
    // the sink's files (no alerts file beside it either), and the chain still verifies.
    assert!(journal_rows(&data) == rows_before, "the journal changed");
    assert!(files(out.parent().unwrap()) == files_before, "the sink's directory changed");
    let o = run_bin_async(vec!["verify".into(), "--data-dir".into(), data.display().to_string()]).await;
    assert!(o.status.success(), "{}", text(&o));

    // The table names each rule and output.
    let o = run_bin_async(vec!["selftest".into(), "--config".into(), cfg.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = stdout(&o);
    assert!(t.contains("tines_credential_mass_deletion") && t.contains("fired"), "{t}");
    assert!(
        t.contains("alerts>sink:archive") && t.contains("checked") && t.lines().last().unwrap().starts_with("passed: "),
        "{t}"
    );
}

/// An output that answers 500, and one whose port nothing listens on: the self-test fails
/// with its distinct exit code, naming both, and shows neither webhook's secret path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_output_that_is_down_fails_the_selftest_by_name() {
    let (hook, _) = receiver(500).await;
    let closed = free_port();
    let dir = tempfile::tempdir().unwrap();
    let outputs = format!(
        "{}{}",
        webhook("down", &format!("{hook}/services/T0/B0/secret-path-500"), "slack"),
        webhook("closed", &format!("http://127.0.0.1:{closed}/hooks/secret-path-closed"), "json")
    );
    let cfg = write_config(dir.path(), "http://127.0.0.1:9", "", &detect_section(dir.path(), "", &outputs));
    let o = run_bin_async(vec!["selftest".into(), "--config".into(), cfg.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(14), "{}", text(&o));
    let all = text(&o);
    assert!(!all.contains("secret-path"), "{all}");
    let t = stdout(&o);
    let down = t.lines().find(|l| l.starts_with("alerts>down")).unwrap_or_else(|| panic!("{t}"));
    assert!(
        down.contains("FAILED") && down.contains("500 Internal Server Error") && down.contains("receiver says hello"),
        "{down}"
    );
    let closed_line = t.lines().find(|l| l.starts_with("alerts>closed")).unwrap_or_else(|| panic!("{t}"));
    assert!(closed_line.contains("FAILED") && closed_line.contains("unreachable"), "{closed_line}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("self-test FAILED") && err.contains("alerts>down") && err.contains("alerts>closed"), "{err}");
    // Every rule still fired: only the outputs failed.
    assert!(!t.contains("NOT FIRED"), "{t}");

    let o = run_bin_async(vec![
        "selftest".into(),
        "--config".into(),
        cfg.display().to_string(),
        "--format".into(),
        "json".into(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(14), "{}", text(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["passed"], false);
    assert!(report["outputs"].as_array().unwrap().iter().all(|x| x["result"] == "failed"), "{report:#}");
}

#[test]
fn a_bad_selftest_every_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    for (value, says) in [("\"daily\"", "\"daily\" is not a duration"), ("\"10m\"", "shorter than 1h")] {
        let section = detect_section(dir.path(), &format!("selftest_every = {value}"), "");
        let cfg = write_config(dir.path(), "http://127.0.0.1:9", "", &section);
        for cmd in ["selftest", "run"] {
            let o = run_bin(&[cmd, "--config", cfg.to_str().unwrap()]);
            assert_eq!(o.status.code(), Some(2), "{cmd} {value}: {}", text(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("detect.selftest_every") && err.contains(says), "{cmd} {value}: {err}");
        }
    }
    // Without detection there is nothing to test: a usage error too.
    let cfg = write_config(dir.path(), "http://127.0.0.1:9", "", "");
    let o = run_bin(&["selftest", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no [detect] section"), "{}", text(&o));
}

/// The daemon, killed if the test ends before stopping it (a failed assertion).
struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_run(cfg: &Path, log: &Path) -> Daemon {
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(cfg)
        .env("TEST_TINES_KEY", DEMO_KEY)
        .env("WEB_TOKEN", "selftest-web-token-0123456789")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Daemon(Some(child))
}

async fn stop(mut daemon: Daemon) {
    let mut child = daemon.0.take().unwrap();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    wait_until("the daemon to exit", Duration::from_secs(20), || child.try_wait().unwrap().is_some()).await;
}

/// `[detect] selftest_every`: the daemon runs the self-test at once when none is recorded,
/// records it in the journal (and not one synthetic event or test alert there), exports it
/// as metrics, and the compliance report lists it as evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_records_a_scheduled_selftest_and_the_report_lists_it() {
    let mock = start_mock(MockConfig { history: 200, seed: 62, ..Default::default() }).await;
    let (hook, got) = receiver(200).await;
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out/audit.ndjson"));
    let port = free_port();
    let section =
        detect_section(dir.path(), "selftest_every = \"24h\"", &webhook("siem", &format!("{hook}/json"), "json"));
    let extra =
        format!("{}{section}\n[web]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"WEB_TOKEN\"\n", file_sink(&out));
    let cfg = write_config(dir.path(), &mock.base_url(), "interval = \"1s\"", &extra);
    let log = dir.path().join("run.log");
    let child = spawn_run(&cfg, &log);
    let d = data.clone();
    let l = log.clone();
    let mut runs = Vec::new();
    wait_until("the daemon to record a self-test", Duration::from_secs(60), || {
        if std::fs::read_to_string(&l).unwrap_or_default().contains("panicked") {
            panic!("{}", std::fs::read_to_string(&l).unwrap());
        }
        runs = Journal::open_read_only(&d).and_then(|j| j.selftest_runs(i64::MIN, i64::MAX, 10)).unwrap_or_default();
        !runs.is_empty()
    })
    .await;
    let run = runs[0].clone();
    assert!(run.passed, "{run:?}\n{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!((run.outputs_total, run.outputs_ok), (1, 1), "{run:?}");
    assert!(run.rules_fired > 10 && run.rules_fired == run.rules_total, "{run:?}");
    assert!(run.summary.starts_with("passed: "), "{run:?}");
    let detail: Value = serde_json::from_str(&run.detail).unwrap();
    assert_eq!(detail["run_id"], run.run_id.as_str());
    // The same receiver gets the detector's real alerts too (from the emulator's history): the
    // test alerts are told apart by their ids.
    let keys: Vec<String> = got.lock().unwrap().iter().map(|(_, _, k)| k.clone()).collect();
    let tests = keys.iter().filter(|k| k.starts_with(&format!("selftest:{}:", run.run_id))).count();
    let fired = detail["rules"].as_array().unwrap().iter().filter(|r| r["result"] == "fired").count();
    assert_eq!(tests, fired, "{keys:?}");

    let (code, metrics) = {
        let c = reqwest::Client::new();
        let r = c
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .bearer_auth("selftest-web-token-0123456789")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(code, 200);
    assert!(metrics.contains("tines_audit_selftest_last_passed 1"), "{metrics}");
    assert!(
        metrics.contains(&format!("tines_audit_selftest_last_run_timestamp_seconds {}", run.started_at)),
        "{metrics}"
    );
    stop(child).await;

    // Nothing synthetic reached the journal: no event of the self-test's tenant, no test alert.
    let j = Journal::open_read_only(&data).unwrap();
    assert!(j.tenants().unwrap().iter().all(|t| t != tines_audit::detect::selftest::TENANT));
    let stored = j.alerts_after(0, 10_000).unwrap();
    assert!(
        stored.iter().all(|a| !a.id.starts_with("selftest:") && !a.body.contains("tines_audit_selftest")),
        "{stored:?}"
    );
    let in_file = std::fs::read_to_string(&out).unwrap();
    assert!(!in_file.contains("tines_audit_selftest") && !in_file.contains("tines-audit-selftest"));
    drop(j);

    let report = |from: &str, to: &str| {
        run_bin(&[
            "report",
            "--data-dir",
            data.to_str().unwrap(),
            "--framework",
            "soc2",
            "--from",
            from,
            "--to",
            to,
            "--format",
            "md",
        ])
    };
    // A period ends before its `--to` second: the run's second must be over.
    wait_until_clock_past(run.started_at).await;
    let o = report("1d", "now");
    assert!(o.status.success(), "{}", text(&o));
    let md = stdout(&o);
    let section = &md[md.find("## Controls tested (self-test)").unwrap_or_else(|| panic!("{md}"))..];
    assert!(section.contains("CC4.1"), "{section}");
    assert!(section.contains("1 self-test run(s) in the period, 1 passed, 0 failed"), "{section}");
    assert!(section.contains(&run.run_id), "{section}");
    assert!(section.contains("| passed |"), "{section}");
    // A period with no run says so.
    let o = report("10d", "2d");
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("No self-test ran in the period"), "{}", text(&o));
}
