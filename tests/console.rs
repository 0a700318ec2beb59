//! The console end to end in a real headless Chromium (Debian's `chromium`
//! and `chromium-driver`, driven over WebDriver) against `tines-audit run`:
//! log in, filter events, open a record, work alerts (filter, open one with its events and
//! rule, triage it and see the history name who did), view the status. Screenshots
//! go to `artifacts/console/`. Requests without the token are refused.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::webdriver::Browser;
use common::*;
use serde_json::Value;
use tines_audit::mock::{DEMO_KEY, MockConfig, MockServer};

const WEB_TOKEN: &str = "console-test-token-0123456789";
const XSS: &str = "<script>document.title='pwned'</script>\"><img src=x onerror=\"document.title='pwned'\">";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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

/// An alert of the shipped mass-deletion rule (so its Sigma text is there to show) about the
/// journal's events `seqs`, as the detector stores one.
fn add_alert(data: &std::path::Path, tenant: &str, event_time: i64, n: i64, title: &str, seqs: &[i64]) -> String {
    let c = rusqlite::Connection::open(data.join("journal.db")).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let rule = "tines_credential_mass_deletion";
    let id = format!("{rule}:{n}");
    let body = serde_json::json!({
        "summary": "Mass credential deletion: ann@example.com deleted 7 credentials within 1d",
        "rule": {"id": rule, "title": title, "level": "high", "description": "More than five credentials deleted by one user."},
        "group": {"tenant": tenant, "user_id": "58468"},
        "events": seqs.iter().map(|s| serde_json::json!({"seq": s})).collect::<Vec<_>>(),
    });
    c.execute(
        "INSERT INTO alerts (id, rule_id, group_key, tenant, event_time, raised_at, body, level)
         VALUES (?1, ?2, '[[\"tenant\",\"t1\"],[\"user_id\",\"58468\"]]', ?3, ?4, ?4, ?5, 'high')",
        rusqlite::params![id, rule, tenant, event_time, body.to_string()],
    )
    .unwrap();
    let seq = c.last_insert_rowid();
    for s in seqs {
        c.execute("INSERT INTO alert_events (alert_seq, event_seq) VALUES (?1, ?2)", [seq, *s]).unwrap();
    }
    id
}

/// The emulator with 20 days of history and `tines-audit run` with the console on it, once
/// everything is collected and indexed.
struct Console {
    mock: MockServer,
    dir: tempfile::TempDir,
    _daemon: Daemon,
    base: String,
    total: i64,
}

async fn start_console(seed: u64) -> Console {
    let mock = start_mock(MockConfig {
        history: 3_000,
        seed,
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
    let daemon = Daemon(
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
    Console { mock, dir, _daemon: daemon, base, total }
}

/// Logs the browser in with the token, landing on the events page.
async fn log_in(b: &Browser, base: &str) {
    b.goto(&format!("{base}/login")).await;
    b.type_text(&b.find("input[name=token]").await, WEB_TOKEN).await;
    b.click(&b.find("button[type=submit]").await).await;
    b.wait_url("/events").await;
    b.find("details.event").await;
}

fn shots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts/console")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium() {
    let Console { mock, dir, _daemon, base, total } = start_console(61).await;
    let now = tines_audit::timeutil::now_secs();
    let data = dir.path().join("data");
    let alert = add_alert(&data, TENANT, now - 3600, 1, "Mass credential deletion", &[1, 2]);
    // The earlier XSS payloads, as a rule title: they must stay text on every alert page.
    let xss = add_alert(&data, TENANT, now - 7200, 2, XSS, &[3]);

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

    let shots = shots();
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
    // The time opens it (the other cells are links that narrow the search).
    b.click(&b.find(&format!("details.event[data-id='{id}'] summary time")).await).await;
    let raw = b.find(&format!("details.event[data-id='{id}'] pre.raw")).await;
    assert!(b.displayed(&raw).await);
    let text = b.text(&raw).await;
    assert!(text.contains(&format!("\"id\": {id}")) && text.contains("\"inputs\""), "{text}");
    b.screenshot(&shots.join("4-record.png")).await;

    // Alerts: coloured by severity, filtered, one opened with its events, rule and history.
    b.click(&b.find("nav a[href='/alerts']").await).await;
    b.wait_url("/alerts").await;
    let table = b.text(&b.find("#alerts").await).await;
    assert!(table.contains("Mass credential deletion") && table.contains("deleted 7 credentials"), "{table}");
    let badge = b.find(&format!("tr[data-id='{alert}'] .badge.level-high")).await;
    assert_eq!(b.css(&badge, "background-color").await, "rgba(198, 40, 40, 1)", "high is red");
    b.screenshot(&shots.join("5-alerts.png")).await;
    b.click(&b.find("#f-status option[value=open]").await).await;
    b.click(&b.find("#f-level option[value=high]").await).await;
    b.click(&b.find("#apply").await).await;
    b.wait_url("level=high").await;
    assert_eq!(b.find_all("#alerts tr.alert").await.len(), 2, "both alerts are open and high");
    assert!(b.find_all("img").await.is_empty() && b.title().await != "pwned", "the payload stayed text");
    let row = b.text(&b.find(&format!("tr[data-id='{xss}']")).await).await;
    assert!(row.contains(XSS), "shown as written: {row}");

    b.click(&b.find(&format!("tr[data-id='{alert}'] a.open")).await).await;
    b.wait_url(&format!("/alerts/{alert}")).await;
    let own = api(&base, &format!("/api/v1/alerts/{alert}/events")).await.1;
    let mut want: Vec<i64> = own["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    want.sort_unstable();
    let mut shown = Vec::new();
    for r in b.find_all("#alert-events tr[data-id]").await {
        shown.push(b.attribute(&r, "data-id").await.parse::<i64>().unwrap());
    }
    shown.sort_unstable();
    assert_eq!((shown.len(), &shown), (2, &want), "exactly the alert's two events");
    let description = b.text(&b.find("#rule-description").await).await;
    assert!(description.contains("More than five credentials"), "{description}");
    b.click(&b.find("#sigma summary").await).await;
    let sigma = b.find("#sigma pre").await;
    assert!(b.displayed(&sigma).await);
    assert!(b.text(&sigma).await.contains("id: tines_credential_mass_deletion"), "the Sigma text, one click away");
    b.screenshot(&shots.join("5a-alert.png")).await;
    b.click(&b.find("#all-events").await).await;
    b.wait_url("alert=").await;
    let mut listed = Vec::new();
    for d in b.find_all("details.event").await {
        listed.push(b.attribute(&d, "data-id").await.parse::<i64>().unwrap());
    }
    listed.sort_unstable();
    assert_eq!(listed, want, "the event search shows the same events");
    b.screenshot(&shots.join("5b-alert-events.png")).await;

    // Triage it: acknowledged with a note, then the history names who did it.
    b.goto(&format!("{base}/alerts/{alert}")).await;
    assert!(b.text(&b.find("#no-history").await).await.contains("Nobody"));
    b.click(&b.find("#t-status option[value=acknowledged]").await).await;
    let note = format!("Checked with Ann: planned clean-up {XSS}");
    b.type_text(&b.find("#t-note").await, &note).await;
    b.click(&b.find("#t-save").await).await;
    b.wait_url("#history").await;
    let history = b.text(&b.find("#history").await).await;
    assert!(history.contains("admin") && history.contains("open → acknowledged"), "{history}");
    assert!(history.contains(&note), "the note as written: {history}");
    assert!(b.text(&b.find("#alert-state").await).await.contains("acknowledged"));
    assert!(b.find_all("img").await.is_empty() && b.title().await != "pwned", "the note stayed text");
    let api_history = api(&base, &format!("/api/v1/alerts/{alert}")).await.1["history"].clone();
    assert_eq!((api_history[0]["by"].as_str(), api_history[0]["note"].as_str()), (Some("admin"), Some(note.as_str())));
    b.screenshot(&shots.join("5c-alert-triaged.png")).await;
    b.goto(&format!("{base}/alerts/{xss}")).await;
    assert!(b.text(&b.find("#alert-title").await).await.contains(XSS));
    assert!(b.find_all("img").await.is_empty() && b.title().await != "pwned");
    b.goto(&format!("{base}/alerts?group=true")).await;
    let groups = b.text(&b.find("#alert-groups").await).await;
    assert!(groups.contains("user_id=58468"), "the two alerts are one group of repeats: {groups}");
    assert_eq!(b.find_all("#alert-groups tr.group").await.len(), 1);
    b.screenshot(&shots.join("5d-alert-groups.png")).await;

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

/// The numbers a page shows: the total and one facet's values with counts.
async fn facet_api(base: &str, field: &str, filter: &str) -> Vec<(String, i64)> {
    let (code, v) = api(base, &format!("/api/v1/events/facets?field={field}&limit=5&{filter}")).await;
    assert_eq!(code, 200, "{v}");
    v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["value"].as_str().unwrap().to_string(), x["count"].as_i64().unwrap()))
        .collect()
}

async fn total_api(base: &str, filter: &str) -> i64 {
    let (code, v) = api(base, &format!("/api/v1/events?limit=1&{filter}")).await;
    assert_eq!(code, 200, "{v}");
    v["total"].as_i64().unwrap()
}

/// The query string of the browser's address, decoded.
async fn query_of(b: &Browser) -> Vec<(String, String)> {
    let url = b.url().await;
    let q = url.split_once('?').map_or("", |(_, q)| q).to_string();
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn encode(pairs: &[(String, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(k, _)| k != "tz") {
        s.append_pair(k, v);
    }
    s.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pivots_excludes_zooms_and_links_events_in_chromium() {
    let Console { mock, dir: _dir, _daemon, base, total } = start_console(62).await;
    let shots = shots();
    // The browser's clock is in India (UTC+05:30, no daylight saving): local time is visible.
    let b = Browser::start_in_zone(Some("Asia/Kolkata")).await;
    log_in(&b, &base).await;

    // Top values beside the timeline, as the facets API counts them.
    for field in ["user", "operation", "ip", "tenant", "category"] {
        let want = facet_api(&base, field, "").await;
        let mut shown = Vec::new();
        for li in b.find_all(&format!("#top-{field} li")).await {
            let text = b.text(&li).await;
            let (value, count) = text.rsplit_once(|c: char| c.is_whitespace()).unwrap();
            shown.push((value.trim_end_matches('−').trim().to_string(), count.parse::<i64>().unwrap()));
        }
        assert_eq!(shown, want, "top {field} values");
    }
    let y_axis = b.find_all("#timeline text.axis").await;
    assert!(y_axis.len() >= 7, "a y-axis with ticks and time labels");
    b.screenshot(&shots.join("7-top-values.png")).await;

    // Pivot: the top operation narrows the search to it.
    let op = facet_api(&base, "operation", "").await[0].clone();
    b.click(&b.find("#top-operation li a.pivot").await).await;
    b.wait_url("operation=").await;
    assert_eq!(query_of(&b).await, vec![("operation".to_string(), op.0.clone())]);
    assert_eq!(b.text(&b.find("#total").await).await, op.1.to_string(), "the count the top values promised");
    for r in b.find_all("details.event summary").await {
        assert!(b.text(&r).await.contains(&op.0), "every row is {}", op.0);
    }
    b.screenshot(&shots.join("8-pivot.png")).await;

    // Exclude: the first row's user is excluded; the total is the API's for the same filter.
    let user = b.attribute(&b.find("details.event summary span:nth-child(4) a.pivot").await, "title").await;
    let user = user.strip_prefix("Only user ").unwrap().to_string();
    b.click(&b.find("details.event summary span:nth-child(4) a.exclude").await).await;
    b.wait_url("q=").await;
    let q = query_of(&b).await;
    assert!(q.contains(&("q".to_string(), format!("-user:{user}"))), "{q:?}");
    let expected = total_api(&base, &encode(&q)).await;
    assert!(expected < op.1, "the excluded user had events");
    assert_eq!(b.text(&b.find("#total").await).await, expected.to_string());
    for r in b.find_all("details.event summary").await {
        assert!(!b.text(&r).await.contains(&user), "no row of {user}");
    }
    b.screenshot(&shots.join("9-exclude.png")).await;

    // Zoom: a bar narrows the period to its own; the count is that bar's.
    b.goto(&format!("{base}/events")).await;
    b.click(&b.find("#timeline a.bar rect").await).await;
    b.wait_url("from=").await;
    let q = query_of(&b).await;
    assert!(q.iter().any(|(k, _)| k == "to"), "{q:?}");
    let zoomed = total_api(&base, &encode(&q)).await;
    assert!(zoomed > 0 && zoomed < total, "one bar of {total}: {zoomed}");
    assert_eq!(b.text(&b.find("#total").await).await, zoomed.to_string());
    b.screenshot(&shots.join("10-zoom.png")).await;

    // Permalink: an event's own page, the same event as the API's.
    let first = b.find("details.event").await;
    let seq = b.attribute(&first, "data-seq").await;
    let id = b.attribute(&first, "data-id").await;
    b.click(&b.find("details.event summary time").await).await;
    b.click(&b.find("details.event a.permalink").await).await;
    b.wait_url(&format!("/events/{seq}")).await;
    let facts = b.text(&b.find("#facts").await).await;
    assert!(facts.contains(&format!("Tines id {id}")) && facts.contains(TENANT), "{facts}");
    let (code, ev) = api(&base, &format!("/api/v1/events/{seq}")).await;
    assert_eq!((code, ev["id"].to_string()), (200, id.clone()));
    b.click(&b.find("#around").await).await;
    b.wait_url("from=").await;
    assert!(b.find_all(&format!("details.event[data-seq='{seq}']")).await.len() == 1, "its neighbours include it");
    b.goto(&format!("{base}/events/999999999")).await;
    assert!(b.text(&b.find("#error").await).await.contains("no event 999999999"));

    // A bad entry keeps the others and says which field is wrong.
    b.goto(&format!("{base}/events")).await;
    b.type_text(&b.find("#f-user").await, &user).await;
    b.type_text(&b.find("#f-from").await, "yesterdayish").await;
    b.type_text(&b.find("#f-q").await, XSS).await;
    b.click(&b.find("#apply").await).await;
    b.wait_url("from=yesterdayish").await;
    assert!(b.text(&b.find("#error").await).await.starts_with("from:"));
    assert_eq!(b.attribute(&b.find("#f-user").await, "value").await, user, "the user survives");
    assert_eq!(b.attribute(&b.find("#f-q").await, "value").await, XSS, "the search text survives, as text");
    assert_eq!(b.attribute(&b.find("#f-from").await, "aria-invalid").await, "true");
    assert!(b.find_all("img").await.is_empty() && b.title().await != "pwned", "the payload stayed text");
    b.screenshot(&shots.join("11-invalid.png")).await;

    // Local time: the same instants, shown in the browser's zone.
    b.goto(&format!("{base}/events?tz=local")).await;
    let t = b.find("details.event summary time").await;
    let utc = tines_audit::timeutil::parse_rfc3339(&b.attribute(&t, "datetime").await).unwrap();
    let shown = b.text(&t).await;
    let local = chrono_free_local(utc + 5 * 3600 + 1800);
    assert_eq!(shown, local, "UTC {utc} shown at +05:30");
    assert_eq!(b.text(&b.find(".tz-name").await).await, "UTC+05:30");

    // Keys: / goes to the search box, Escape leaves it, n is the older page.
    b.keys("/").await;
    assert_eq!(b.focused_id().await, "f-q");
    b.keys("\u{e00c}n").await;
    b.wait_url("cursor=").await;
    assert!(
        query_of(&b).await.contains(&("tz".to_string(), "local".to_string())),
        "the older page stays in local time"
    );

    // Export: the download holds every matching event.
    let downloads = tempfile::tempdir().unwrap();
    b.cdp("Browser.setDownloadBehavior", serde_json::json!({"behavior": "allow", "downloadPath": downloads.path()}))
        .await;
    b.goto(&format!("{base}/events?operation={}", op.0)).await;
    b.click(&b.find("#export-csv").await).await;
    let csv = downloaded(downloads.path(), "csv").await;
    assert_eq!(csv.lines().count() as i64, op.1 + 1, "a header and every {} event", op.0);

    // Save the search, find it listed, open it again: the same events.
    b.click(&b.find("#tools summary").await).await;
    let name = format!("Every {} {XSS}", op.0);
    b.type_text(&b.find("#save-search-name").await, &name).await;
    b.click(&b.find("#save-search-button").await).await;
    b.wait_url("/events?operation=").await;
    b.click(&b.find("nav a[href='/searches']").await).await;
    b.wait_url("/searches").await;
    let listed = b.text(&b.find("#searches").await).await;
    assert!(listed.contains(&name), "listed by name, as written: {listed}");
    assert!(b.find_all("img").await.is_empty() && b.title().await != "pwned", "the name stayed text");
    b.screenshot(&shots.join("14-saved-searches.png")).await;
    b.click(&b.find("#searches a[href^='/events?']").await).await;
    b.wait_url("operation=").await;
    assert_eq!(b.text(&b.find("#total").await).await, op.1.to_string(), "the saved search replays");

    // A compliance report for the search's tenants and period, from the page.
    b.goto(&format!("{base}/events?tenant={TENANT}&from=30d")).await;
    b.click(&b.find("#tools summary").await).await;
    b.click(&b.find("#report-download").await).await;
    let report = downloaded(downloads.path(), "html").await;
    assert!(report.contains(TENANT) && report.to_lowercase().contains("soc 2"), "a SOC 2 report on {TENANT}");

    // Dark mode and a phone's width.
    b.cdp(
        "Emulation.setEmulatedMedia",
        serde_json::json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    )
    .await;
    b.goto(&format!("{base}/events")).await;
    assert_eq!(b.css(&b.find("body").await, "background-color").await, "rgba(21, 23, 26, 1)", "dark");
    b.screenshot(&shots.join("12-dark.png")).await;
    b.cdp(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 420, "height": 900, "deviceScaleFactor": 1, "mobile": true}),
    )
    .await;
    b.goto(&format!("{base}/events")).await;
    let fits = b.eval("return [document.documentElement.scrollWidth, window.innerWidth];").await;
    assert!(
        fits[0].as_i64() <= fits[1].as_i64() && fits[1].as_i64() == Some(420),
        "no sideways scrolling at 420 px: {fits}"
    );
    assert!(b.displayed(&b.find("#top-values").await).await);
    b.screenshot(&shots.join("13-narrow-dark.png")).await;
    b.quit().await;
    mock.shutdown().await;
}

/// The text of the first file with extension `ext` the browser finishes downloading into `dir`.
async fn downloaded(dir: &std::path::Path, ext: &str) -> String {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == ext));
        if let Some(p) = done {
            return std::fs::read_to_string(p).unwrap();
        }
        assert!(std::time::Instant::now() < end, "no .{ext} downloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time, as the console script writes local times.
fn chrono_free_local(t: i64) -> String {
    tines_audit::timeutil::format_rfc3339(t).replace('T', " ").trim_end_matches('Z').to_string()
}
