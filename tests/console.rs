//! The console end to end in a real headless Chromium (Debian's `chromium`
//! and `chromium-driver`, driven over WebDriver) against `tines-audit run`:
//! log in, filter events, open a record, view alerts and status. Screenshots
//! go to `artifacts/console/`. Requests without the token are refused.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::webdriver::Browser;
use common::*;
use serde_json::Value;
use tines_audit::mock::{DEMO_KEY, MockConfig};

const WEB_TOKEN: &str = "console-test-token-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

async fn api(base: &str, path: &str) -> (u16, Value) {
    let Ok(r) = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(WEB_TOKEN).send().await else {
        return (0, Value::Null);
    };
    let code = r.status().as_u16();
    (code, serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or(Value::Null))
}

/// Every event the API returns for a query, following cursors.
async fn api_all(base: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let c = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let (code, v) = api(base, &format!("/api/v1/events?limit=1000&{query}{c}")).await;
        assert_eq!(code, 200, "{v}");
        out.extend(v["events"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn add_alert(data: &std::path::Path, tenant: &str, event_time: i64) {
    // The detector's table (migration 2 of the detection branch); created here if this build lacks it.
    let c = rusqlite::Connection::open(data.join("journal.db")).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS alerts (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, rule_id TEXT NOT NULL,
           group_key TEXT NOT NULL, tenant TEXT NOT NULL, event_time INTEGER NOT NULL, raised_at INTEGER NOT NULL, body TEXT NOT NULL);",
    )
    .unwrap();
    let body = serde_json::json!({
        "summary": "Mass credential deletion: ann@example.com deleted 7 credentials within 1d",
        "rule": {"id": "tines-mass-credential-deletion", "title": "Mass credential deletion", "level": "high"},
        "events": [{"seq": 1}, {"seq": 2}],
    });
    c.execute(
        "INSERT INTO alerts (id, rule_id, group_key, tenant, event_time, raised_at, body) VALUES (?1, ?2, '{}', ?3, ?4, ?4, ?5)",
        rusqlite::params!["tines-mass-credential-deletion:1", "tines-mass-credential-deletion", tenant, event_time, body.to_string()],
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium() {
    let mock = start_mock(MockConfig {
        history: 3_000,
        seed: 61,
        history_span: Duration::from_secs(20 * 86_400),
        ..Default::default()
    })
    .await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out/a.ndjson");
    let cfg = write_config(
        dir.path(),
        &mock.base_url(),
        "interval = \"1s\"",
        &format!("{}[web]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"WEB_TOKEN\"\n", file_sink(&out)),
    );
    let _daemon = Daemon(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("TEST_TINES_KEY", DEMO_KEY)
            .env("WEB_TOKEN", WEB_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let total = mock.event_count() as i64;
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let (200, v) = api(&base, "/api/v1/events?limit=1").await
            && v["search_index"]["position"].as_i64() == Some(total)
        {
            break;
        }
        assert!(std::time::Instant::now() < end, "the daemon did not collect and index {total} events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    add_alert(&dir.path().join("data"), TENANT, tines_audit::timeutil::now_secs() - 3600);

    // Without the token: the API answers 401, pages send you to the login page.
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in ["/api/v1/events", "/api/v1/histogram"] {
        assert_eq!(plain.get(format!("{base}{path}")).send().await.unwrap().status().as_u16(), 401, "{path}");
    }
    for path in ["/events", "/alerts", "/status", "/"] {
        let r = plain.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/login");
    }
    let wrong = plain.get(format!("{base}/api/v1/events")).bearer_auth("not-the-token-at-all").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts/console");
    let b = Browser::start().await;

    // Log in.
    b.goto(&format!("{base}/events")).await;
    assert!(b.url().await.ends_with("/login"), "sent to the login page");
    b.screenshot(&shots.join("1-login.png")).await;
    let width = b.css(&b.find("input[name=token]").await, "box-sizing").await;
    assert_eq!(width, "border-box", "the login page's inline style is allowed by its CSP hash");
    let field = b.find("input[name=token]").await;
    b.type_text(&field, WEB_TOKEN).await;
    b.click(&b.find("button[type=submit]").await).await;
    b.wait_url("/events").await;
    b.find("details.event").await;
    let header = b.css(&b.find("header").await, "background-color").await;
    assert_eq!(header, "rgba(31, 58, 95, 1)", "the console's inline style is allowed by its CSP hash");
    let cookie = b.cookies().await.into_iter().find(|c| c["name"] == "tines_audit_session").expect("session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert_eq!(cookie["secure"], true, "Chromium keeps a Secure cookie on http://127.0.0.1: {cookie}");
    assert_eq!(b.find_all("details.event").await.len(), 50, "a first page of 50");
    assert_eq!(b.text(&b.find("#total").await).await, total.to_string(), "the timeline counts every event");
    assert!(!b.find_all("#histogram svg rect").await.is_empty(), "the timeline has bars");
    b.screenshot(&shots.join("2-events.png")).await;

    // Filter by one user and a category; the page shows exactly what the API says.
    let first = api(&base, "/api/v1/events?limit=1&category=credential").await.1;
    let email = first["events"][0]["user_email"].as_str().unwrap().to_string();
    let user = b.find("#f-user").await;
    b.clear(&user).await;
    b.type_text(&user, &email).await;
    b.click(&b.find("#f-category option[value=credential]").await).await;
    b.click(&b.find("#apply").await).await;
    b.wait_url("category=credential").await;
    let expected = api_all(&base, &format!("user={}&category=credential", email.replace('@', "%40"))).await;
    assert!(!expected.is_empty());
    let rows = b.find_all("details.event").await;
    assert_eq!(rows.len(), expected.len().min(50));
    assert_eq!(b.text(&b.find("#total").await).await, expected.len().to_string());
    for r in &rows {
        let t = b.text(r).await;
        assert!(t.contains(&email), "row of another user: {t}");
    }
    b.screenshot(&shots.join("3-filtered.png")).await;

    // Open a record: the full raw record appears.
    let id = expected[0]["id"].as_i64().unwrap();
    b.click(&b.find(&format!("details.event[data-id='{id}'] summary")).await).await;
    let raw = b.find(&format!("details.event[data-id='{id}'] pre.raw")).await;
    assert!(b.displayed(&raw).await);
    let text = b.text(&raw).await;
    assert!(text.contains(&format!("\"id\": {id}")) && text.contains("\"inputs\""), "{text}");
    b.screenshot(&shots.join("4-record.png")).await;

    // Alerts.
    b.click(&b.find("nav a[href='/alerts']").await).await;
    b.wait_url("/alerts").await;
    let table = b.text(&b.find("#alerts").await).await;
    assert!(table.contains("Mass credential deletion") && table.contains("deleted 7 credentials"), "{table}");
    b.screenshot(&shots.join("5-alerts.png")).await;

    // Status.
    b.click(&b.find("nav a[href='/status']").await).await;
    b.wait_url("/status").await;
    let tenants = b.text(&b.find("#tenants").await).await;
    assert!(tenants.contains(TENANT) && tenants.contains("cursor"), "{tenants}");
    let sinks = b.text(&b.find("#sinks").await).await;
    assert!(sinks.contains("archive"), "{sinks}");
    let page = b.text(&b.find("main").await).await;
    assert!(!page.contains(DEMO_KEY) && !page.contains(WEB_TOKEN), "no secret on the status page");
    b.screenshot(&shots.join("6-status.png")).await;

    // Log out: the session is gone.
    b.click(&b.find("#logout").await).await;
    b.wait_url("/login").await;
    b.goto(&format!("{base}/events")).await;
    assert!(b.url().await.ends_with("/login"), "logged out");
    b.quit().await;
    mock.shutdown().await;
}
