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

/// The console's hardening, through the real service: security headers on every
/// answer, a foreign `Host` refused (DNS rebinding), a forged logout refused (CSRF),
/// logout clearing the cookie, `bearer` in any case, and repeated failed logins
/// throttled and logged with their source but never their token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_foreign_hosts_forged_forms_and_token_guessing() {
    let mock = start_mock(MockConfig { history: 50, seed: 52, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        &mock.base_url(),
        "interval = \"1s\"",
        &format!(
            "[web]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"WEB_TOKEN\"\nallowed_hosts = [\"Audit.Example.com\"]\n"
        ),
    );
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&cfg, &log, &[("WEB_TOKEN", WEB_TOKEN)]);
    let base = format!("http://127.0.0.1:{port}");
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while get(&format!("{base}/healthz"), None).await.0 != 200 {
        assert!(
            std::time::Instant::now() < end,
            "the service did not start: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // Security headers on every page and answer, with and without the token.
    let paths = [
        "/login",
        "/events",
        "/events?from=bogus",
        "/events/1",
        "/alerts",
        "/alerts/nope",
        "/posture",
        "/searches",
        "/reports",
        "/status",
        "/api/v1/events",
        "/api/v1/events/1",
        "/api/v1/alerts",
        "/api/v1/searches",
        "/healthz",
        "/nope",
    ];
    for path in paths {
        for token in [None, Some(WEB_TOKEN)] {
            let mut r = client.get(format!("{base}{path}"));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let resp = r.send().await.unwrap();
            let h = resp.headers();
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(
                csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"),
                "{path}: {csp}"
            );
            assert_eq!(h["x-frame-options"], "DENY", "{path}");
            assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
            assert_eq!(h["cache-control"], "no-store", "{path}");
        }
    }

    // A name the service was not told about is refused, whatever the credentials.
    let foreign = client
        .get(format!("{base}/api/v1/events"))
        .bearer_auth(WEB_TOKEN)
        .header("host", format!("rebind.attacker.test:{port}"));
    assert_eq!(foreign.send().await.unwrap().status().as_u16(), 421);
    for host in [format!("audit.example.com:{port}"), format!("localhost:{port}")] {
        let r = client.get(format!("{base}/api/v1/events")).bearer_auth(WEB_TOKEN).header("host", &host);
        assert_eq!(r.send().await.unwrap().status().as_u16(), 200, "{host}");
    }

    // `bearer` in any case (RFC 9110: the scheme is case-insensitive).
    let lower = client.get(format!("{base}/api/v1/events")).header("authorization", format!("bearer {WEB_TOKEN}"));
    assert_eq!(lower.send().await.unwrap().status().as_u16(), 200);

    // A session; a cross-site form carries its cookie but not its CSRF token.
    let good = client.post(format!("{base}/login")).form(&[("token", WEB_TOKEN)]).send().await.unwrap();
    assert_eq!(good.status().as_u16(), 303);
    let session = good.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let forged =
        client.post(format!("{base}/logout")).header("cookie", &session).form(&[("x", "1")]).send().await.unwrap();
    assert_eq!(forged.status().as_u16(), 403, "a logout without the CSRF token is refused");
    let page = client.get(format!("{base}/events")).header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200, "and the session lives on");
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().to_string();
    assert_eq!(csrf.len(), 64, "{csrf}");
    let stale = client.post(format!("{base}/logout")).header("cookie", &session).form(&[("csrf", "0".repeat(64))]);
    assert_eq!(stale.send().await.unwrap().status().as_u16(), 403);
    let out =
        client.post(format!("{base}/logout")).header("cookie", &session).form(&[("csrf", &csrf)]).send().await.unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let cleared = out.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("tines_audit_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    let after = client.get(format!("{base}/events")).header("cookie", &session).send().await.unwrap();
    assert_eq!(after.headers()["location"], "/login", "the session is gone");

    // Guessing: a few failures are answered, then the address must wait, even with the right token.
    let guess = "guess-0123456789-not-it";
    for _ in 0..5 {
        let r = client.post(format!("{base}/login")).form(&[("token", guess)]).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let held = client.post(format!("{base}/login")).form(&[("token", WEB_TOKEN)]).send().await.unwrap();
    assert_eq!(held.status().as_u16(), 429);
    let wait: u64 = held.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let api = client.get(format!("{base}/api/v1/events")).bearer_auth(WEB_TOKEN).send().await.unwrap();
    assert_eq!(api.status().as_u16(), 429, "bearer tokens from the address wait too");

    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("console login failed") && logs.contains("127.0.0.1"), "{logs}");
    assert!(logs.contains("console login succeeded"), "{logs}");
    assert!(logs.contains("Host header does not name this service"), "{logs}");
    assert!(!logs.contains(guess) && !logs.contains(WEB_TOKEN), "no token, right or wrong, in the log");
    mock.shutdown().await;
}
