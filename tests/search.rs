//! Search and reports through the real binary and the HTTP API, on emulator
//! histories whose content the test reads back from the emulator itself.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tines_audit::mock::{DEMO_KEY, MockConfig, MockServer};
use tines_audit::query::report::controls::SECTIONS;
use tines_audit::timeutil::{format_rfc3339, now_secs, parse_rfc3339};

/// Every record the emulator holds, read through its API.
async fn emulator_records(mock: &MockServer) -> Vec<Value> {
    let c = reqwest::Client::new();
    let mut out = Vec::new();
    for page in 1.. {
        let url = format!("{}/api/v1/audit_logs?per_page=500&page={page}", mock.base_url());
        let body = c.get(url).bearer_auth(DEMO_KEY).send().await.unwrap().text().await.unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        out.extend(v["audit_logs"].as_array().unwrap().iter().cloned());
        if v["meta"]["next_page_number"].is_null() {
            return out;
        }
    }
    unreachable!()
}

fn at(r: &Value) -> i64 {
    parse_rfc3339(r["created_at"].as_str().unwrap()).unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_formats_filters_and_pages() {
    let mock = start_mock(MockConfig { history: 2_000, seed: 71, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    let cfg = cfg.to_str().unwrap().to_string();
    stdout(&run_bin_async(vec!["collect".into(), "--config".into(), cfg.clone(), "--no-progress".into()]).await);
    let records = emulator_records(&mock).await;
    let search = |args: &[&str]| {
        let mut v = vec!["search".to_string(), "--config".into(), cfg.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        run_bin_async(v)
    };

    // NDJSON with --all: every event once, newest first, each with its record.
    let all = stdout(&search(&["--format", "ndjson", "--all"]).await);
    let lines: Vec<Value> = all.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), records.len());
    let ids: BTreeSet<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), records.len());
    let times: Vec<i64> = lines.iter().map(|l| parse_rfc3339(l["created_at"].as_str().unwrap()).unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert_eq!(lines[0]["record"]["id"], lines[0]["id"]);

    // A user over a time range, as JSON pages that chain by cursor.
    let user = records[0]["user_email"].as_str().unwrap().to_string();
    let from = at(&records[records.len() / 2]);
    let want: BTreeSet<i64> = records
        .iter()
        .filter(|r| r["user_email"] == user.as_str() && at(r) >= from)
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    let mut got = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let from_s = format_rfc3339(from);
        let mut args = vec!["--user", &user, "--from", &from_s, "--format", "json", "--limit", "7"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let v: Value = serde_json::from_str(&stdout(&search(&args).await)).unwrap();
        pages += 1;
        for e in v["events"].as_array().unwrap() {
            assert!(got.insert(e["id"].as_i64().unwrap()), "an event on two pages");
            assert_eq!(e["user_email"], user.as_str());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(got, want);
    assert!(pages > 1, "small pages were used");

    // CSV: a header and one row per event of an operation.
    let csv = stdout(&search(&["--operation", "ActionRun", "--format", "csv", "--all"]).await);
    let mut rows = csv.lines();
    assert!(rows.next().unwrap().starts_with("seq,tenant,id,created_at,operation_name"));
    let n = records.iter().filter(|r| r["operation_name"] == "ActionRun").count();
    assert_eq!(rows.filter(|r| r.contains(",ActionRun,action,")).count(), n);
    assert_eq!(csv.lines().count(), n + 1);

    // The table for people, and a clear refusal of a bad filter.
    let table = stdout(&search(&["--category", "credential", "--limit", "3"]).await);
    assert!(table.starts_with("TIME (UTC)") && table.contains("more: add --cursor"), "{table}");
    let bad = search(&["--operation", "story.created"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("did you mean StoryCreation"), "{}", text(&bad));
    let free = stdout(&search(&["-q", "\"Daily IOC sweep\"", "--format", "ndjson", "--all"]).await);
    let want = records.iter().filter(|r| r.to_string().contains("Daily IOC sweep")).count();
    assert!(want > 0);
    assert_eq!(free.lines().count(), want);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_pages_stay_stable_while_live_events_arrive() {
    let mock = start_mock(MockConfig { history: 1_500, seed: 72, live_rate: 40.0, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = write_config(
        dir.path(),
        &mock.base_url(),
        "interval = \"1s\"",
        &format!("[web]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"WEB_TOKEN\"\n"),
    );
    let _d = Daemon(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("TEST_TINES_KEY", DEMO_KEY)
            .env("WEB_TOKEN", "api-test-token-0123456789")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}/api/v1/events");
    let c = reqwest::Client::new();
    let get = |q: String| {
        let c = c.clone();
        let base = base.clone();
        async move {
            let r = c.get(format!("{base}?{q}")).bearer_auth("api-test-token-0123456789").send().await.ok()?;
            let code = r.status().as_u16();
            Some((code, serde_json::from_str::<Value>(&r.text().await.ok()?).ok()?))
        }
    };
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while get("limit=1".into()).await.is_none_or(|(_, v)| v["events"].as_array().is_none_or(|a| a.is_empty())) {
        assert!(std::time::Instant::now() < end, "the daemon never served events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A snapshot of what is there now, then page through while the daemon keeps adding events.
    let snapshot: BTreeSet<i64> = tines_audit::journal::Journal::open_shared(&dir.path().join("data"))
        .unwrap()
        .ids(TENANT)
        .unwrap()
        .into_iter()
        .collect();
    let max_before = *snapshot.iter().max().unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = format!("limit=50{}", cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default());
        let (code, v) = get(q).await.unwrap();
        assert_eq!(code, 200, "{v}");
        seen.extend(v["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()));
        if seen.len() <= 150 {
            // Early pages: let the daemon commit more live events before asking for the next one.
            let data = dir.path().join("data");
            let before = journal_count(&data);
            wait_until("the daemon to collect more live events", Duration::from_secs(30), || {
                journal_count(&data) > before
            })
            .await;
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event appeared on two pages");
    assert!(snapshot.is_subset(&unique), "an event present before paging was skipped");
    let collected_after: i64 = tines_audit::journal::Journal::open_shared(&dir.path().join("data"))
        .unwrap()
        .ids(TENANT)
        .unwrap()
        .into_iter()
        .filter(|i| *i > max_before)
        .count() as i64;
    assert!(collected_after > 0, "live events did arrive while paging (otherwise the test proves nothing)");
    let (code, v) = get("cursor=garbage".into()).await.unwrap();
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().contains("cursor"));
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_sections_hold_exactly_their_events_and_a_gap_shows() {
    let mock = start_mock(MockConfig {
        history: 6_000,
        seed: 73,
        history_span: Duration::from_secs(30 * 86_400),
        ..Default::default()
    })
    .await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    let cfg = cfg.to_str().unwrap().to_string();
    let now = now_secs();
    let (a, b, c) = (now - 31 * 86_400, now - 20 * 86_400, now - 15 * 86_400);
    let (a_s, b_s, c_s) = (format_rfc3339(a), format_rfc3339(b), format_rfc3339(c));
    // Collected: [a, b) by a backfill and [c, now) by the cursor; [b, c) deliberately never.
    stdout(
        &run_bin_async(
            ["backfill", "--config", &cfg, "--since", &a_s, "--until", &b_s, "--no-progress"]
                .map(String::from)
                .to_vec(),
        )
        .await,
    );
    stdout(
        &run_bin_async(["collect", "--config", &cfg, "--since", &c_s, "--no-progress"].map(String::from).to_vec())
            .await,
    );
    let records = emulator_records(&mock).await;
    let collected: Vec<&Value> = records.iter().filter(|r| (a..b).contains(&at(r)) || at(r) >= c).collect();
    assert!(collected.len() < records.len(), "the gap holds events");

    let report = |format: &str, framework: &str| {
        run_bin_async(
            ["report", "--config", &cfg, "--framework", framework, "--from", &a_s, "--format", format]
                .map(String::from)
                .to_vec(),
        )
    };
    let csv = stdout(&report("csv", "soc2").await);
    let mut by_section: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let (mut gaps, mut integrity, mut selftests, mut posture) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in csv.lines().skip(1) {
        let cols: Vec<&str> = row.split(',').collect();
        if cols[0] == "continuity" {
            gaps.push(row.to_string());
        } else if cols[0] == "integrity" {
            integrity.push(row.to_string());
        } else if cols[0] == "selftest" {
            selftests.push(row.to_string());
        } else if cols[0] == "posture" {
            posture.push(row.to_string());
        } else if cols[0] != "alerts" {
            by_section.entry(cols[0].to_string()).or_default().insert(cols[8].parse().unwrap());
        }
    }
    for s in SECTIONS.iter().filter(|s| !s.soc2.is_empty()) {
        let want: BTreeSet<i64> = collected
            .iter()
            .filter(|r| s.operations.contains(&r["operation_name"].as_str().unwrap()))
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        let got = by_section.remove(s.id).unwrap_or_default();
        assert_eq!(got, want, "section {}", s.id);
        assert!(!want.is_empty() || s.id == "login_notice", "the history exercises {}", s.id);
    }
    assert!(by_section.is_empty(), "rows of unknown sections: {by_section:?}");
    // The posture section is there, and says it was not checked against the tenant.
    assert!(posture.iter().any(|r| r.contains("Not checked against the tenant")), "{posture:?}");
    // No daemon ran the self-test here: the report says so rather than stay silent.
    assert_eq!(selftests.len(), 1, "{selftests:?}");
    assert!(
        selftests[0].starts_with("selftest,CC4.1 CC7.2,") && selftests[0].contains("No self-test ran"),
        "{selftests:?}"
    );
    // The journal verifies, its checkpoints checked with the installation's own key.
    assert!(
        integrity.len() == 1
            && integrity[0].contains("Verified: no record changed")
            && integrity[0].contains("sha256:"),
        "{integrity:?}"
    );
    // Exactly one hole: [b, c), never collected.
    let holes: Vec<_> = gaps.iter().filter(|g| g.contains(",gap until ")).collect();
    assert_eq!(holes.len(), 1, "{gaps:?}");
    assert!(holes[0].contains(&format!(",{b_s},")) && holes[0].ends_with(&format!("gap until {c_s}")), "{holes:?}");

    // HTML: charts inline, print styles, the gap called out; Markdown and the other frameworks too.
    let html = stdout(&report("html", "iso27001").await);
    assert!(html.contains("<svg") && html.contains("@media print") && !html.contains("<script"));
    assert!(html.contains("gap: never collected") && html.contains("A.8.15") && html.contains("A.8.32"));
    assert!(!html.contains("http://") || !html.contains("src=\"http"), "nothing fetched");
    let md = stdout(&report("md", "gdpr").await);
    assert!(md.contains("## Continuity of the audit trail") && md.contains("GAP from") && md.contains("Art. 32"));
    assert!(!md.contains("## Login notices"), "a section with no GDPR control is left out of the GDPR report");
    mock.shutdown().await;
}
