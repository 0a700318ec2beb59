//! The service's HTTP side: health probes, readiness transitions, metrics
//! content, and that everything else needs the token.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use tines_audit::mock::{DEMO_KEY, Faults, MockConfig};

const WEB_TOKEN: &str = "web-token-0123456789abcdef";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    let c = reqwest::Client::new();
    let mut r = c.get(url);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    match r.send().await {
        Ok(resp) => (resp.status().as_u16(), resp.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_transitions_metrics_and_auth() {
    let mock = start_mock(MockConfig { history: 500, seed: 51, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out/a.ndjson");
    let cfg = write_config(
        dir.path(),
        &mock.base_url(),
        "interval = \"1s\"\nmax_attempts = 2",
        &format!(
            "{}[web]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"WEB_TOKEN\"\n[health]\ntenant_stale_after = \"3s\"\n",
            file_sink(&out)
        ),
    );
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&cfg, &log, &[("WEB_TOKEN", WEB_TOKEN), ("TINES_AUDIT_LOG", "debug")]);
    let base = format!("http://127.0.0.1:{port}");
    let mut last = (0, String::new());
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < end {
        last = get(&format!("{base}/readyz"), None).await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last.0, 200, "ready once synced: {}", last.1);
    assert_eq!(get(&format!("{base}/healthz"), None).await, (200, "ok\n".to_string()));

    // Metrics need the token, and say what happened.
    assert_eq!(get(&format!("{base}/metrics"), None).await.0, 401);
    assert_eq!(get(&format!("{base}/metrics"), Some("wrong-token-0123456789")).await.0, 401);
    // Ready means collected; the sink delivers right after, so wait for it.
    let delivered = "tines_audit_sink_delivered_events_total{sink=\"archive\"} 500";
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let (code, m) = loop {
        let (code, m) = get(&format!("{base}/metrics"), Some(WEB_TOKEN)).await;
        if code != 200 || m.contains(delivered) || std::time::Instant::now() > end {
            break (code, m);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, 200);
    assert!(m.contains("tines_audit_events_collected_total{tenant=\"t1\"} 500"), "{m}");
    assert!(m.contains("tines_audit_api_requests_total{tenant=\"t1\",code=\"200\"}"), "{m}");
    assert!(m.contains("tines_audit_sink_delivered_events_total{sink=\"archive\"} 500"), "{m}");
    assert!(m.contains("tines_audit_sink_backlog_events{sink=\"archive\"} 0"), "{m}");
    assert!(m.contains("tines_audit_cursor_lag_seconds{tenant=\"t1\"}"), "{m}");
    assert!(m.contains("tines_audit_journal_events 500"), "{m}");
    assert!(!m.contains(DEMO_KEY) && !m.contains(WEB_TOKEN));

    // The API starts failing: after tenant_stale_after the service is not ready, and says why
    // to whoever has the token.
    mock.set_faults(Faults { rate_5xx: 1.0, ..Default::default() });
    let mut not_ready = (0, String::new());
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < end {
        not_ready = get(&format!("{base}/readyz"), Some(WEB_TOKEN)).await;
        if not_ready.0 == 503 && not_ready.1.contains("server error") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(not_ready.0, 503, "{}", not_ready.1);
    assert!(not_ready.1.contains("tenant t1 not synced") && not_ready.1.contains("server error"), "{}", not_ready.1);
    assert_eq!(
        get(&format!("{base}/readyz"), None).await,
        (503, "not ready\n".to_string()),
        "no reasons without the token"
    );
    // It recovers on its own.
    mock.set_faults(Faults::default());
    let mut ready = (0, String::new());
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < end {
        ready = get(&format!("{base}/readyz"), None).await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready.0, 200, "ready again: {}", ready.1);

    // People log in through the form and get a hardened session cookie.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let bad = client.post(format!("{base}/login")).form(&[("token", "nope")]).send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    let good = client.post(format!("{base}/login")).form(&[("token", WEB_TOKEN)]).send().await.unwrap();
    assert_eq!(good.status().as_u16(), 303);
    let cookie = good.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let home = client.get(format!("{base}/")).header("cookie", &session).send().await.unwrap();
    assert_eq!(home.status().as_u16(), 303);
    assert_eq!(home.headers()["location"], "/events", "a session goes to the console");
    let events = client.get(format!("{base}/events")).header("cookie", &session).send().await.unwrap();
    assert_eq!(events.status().as_u16(), 200);
    let anonymous = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 303, "no session, sent to the login page");
    assert_eq!(anonymous.headers()["location"], "/login");

    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.contains(DEMO_KEY) && !logs.contains(WEB_TOKEN), "no secret in debug logs");
    mock.shutdown().await;
}

#[test]
fn the_console_never_runs_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "http://127.0.0.1:9", "", "[web]\nbind = \"127.0.0.1:0\"\n");
    let out = Command::new(BIN)
        .args(["check", "--offline", "--config"])
        .arg(&cfg)
        .env_remove("TINES_AUDIT_WEB_TOKEN")
        .env("TEST_TINES_KEY", "k")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a token is required"));
}
