//! The analyst's API through the real daemon: totals, facets that agree with them,
//! streamed exports whose rows match the totals and leak no secret, and the search
//! box's refusals as 400s (never 500s), the same through the `search` command.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tines_audit::journal::{Journal, Record, WindowCommit};
use tines_audit::mock::{DEMO_KEY, MockConfig};

const WEB_TOKEN: &str = "search-api-token-SECRET-5e6f7a8b";

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let r = self.client.get(format!("{}{path}", self.base)).bearer_auth(WEB_TOKEN).send().await.unwrap();
        let (code, headers) = (r.status().as_u16(), r.headers().clone());
        (code, headers, r.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> (u16, Value) {
        let (code, _, body) = self.get(path).await;
        (code, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
    }

    async fn total(&self, filter: &str) -> i64 {
        let (code, v) = self.json(&format!("/api/v1/events?limit=1&{filter}")).await;
        assert_eq!(code, 200, "{filter}: {v}");
        v["total"].as_i64().unwrap()
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// CSV rows, quotes understood (a quoted cell may hold commas, quotes and line breaks).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut cell, mut quoted) = (Vec::new(), Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut cell)),
            ('\n', false) => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => cell.push(c),
        }
    }
    assert!(!quoted && cell.is_empty() && row.is_empty(), "the CSV ends in a whole row");
    rows
}

/// Events written straight into the journal before the daemon starts: records holding
/// the configured secrets (the console token, the tenant's API key) and spreadsheet formulas.
fn add_leaky_tenant(data: &std::path::Path) {
    let j = Journal::open(data).unwrap();
    j.start_progress("leaky", "cursor", 0, None, "").unwrap();
    let raws: Vec<String> = (1..=3)
        .map(|i| {
            json!({
                "id": i,
                "created_at": "2024-05-01T00:00:00Z",
                "operation_name": "CredentialDestruction",
                "user_id": 900 + i,
                "user_email": format!("-2+3@leaky.example{i}"),
                "user_name": format!("=HYPERLINK(\"http://x\",\"{WEB_TOKEN}\") {i}"),
                "request_ip": "10.9.9.9",
                "inputs": {"note": format!("key {DEMO_KEY} said \"hi\""), "formula": "@SUM(A1)"},
            })
            .to_string()
        })
        .collect();
    let records = raws.iter().enumerate().map(|(i, raw)| Record {
        id: i as i64 + 1,
        created_at: 1_714_521_600,
        operation_name: "CredentialDestruction",
        user_id: Some(901 + i as i64),
        user_email: None,
        request_ip: Some("10.9.9.9"),
        raw,
    });
    j.commit_window(&WindowCommit { tenant: "leaky", job: "cursor", from: 0, to: 1, fetched: 3 }, records).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_facets_and_exports_agree_and_malformed_searches_are_400s() {
    let mock = start_mock(MockConfig { history: 3_000, seed: 91, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Collected (and searched) without the console, which `run` then serves.
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    let c = cfg.to_str().unwrap().to_string();
    let out = run_bin_async(vec!["collect".into(), "--config".into(), c.clone(), "--no-progress".into()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let web = format!("[web]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"WEB_TOKEN\"\n");
    add_leaky_tenant(&dir.path().join("data"));
    let cfg = write_config(dir.path(), &mock.base_url(), "", &web);
    let _d = Daemon(spawn_run(&cfg, &dir.path().join("run.log"), &[("WEB_TOKEN", WEB_TOKEN)]));
    let api = Api { base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
    let everything = mock_ids(&mock).len() as i64 + 3;
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = api.client.get(format!("{}/api/v1/events?limit=1", api.base)).bearer_auth(WEB_TOKEN).send().await
            && r.status() == 200
            && let Ok(body) = r.text().await
            && let Ok(v) = serde_json::from_str::<Value>(&body)
            && v["search_index"]["position"] == v["search_index"]["max_seq"]
            && v["total"].as_i64() == Some(everything)
        {
            break;
        }
        assert!(std::time::Instant::now() < end, "the daemon never served the whole, indexed journal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Totals and facets: each value's count is the total of searching for it too.
    let filters = [
        String::new(),
        "tenant=t1".into(),
        "category=credential".into(),
        format!("q={}", enc("-operation:ActionRun -country:US")),
        format!("q={}", enc("credential OR story")),
        "from=2000-01-01&country=IE".into(),
    ];
    let mut checked = 0;
    for filter in &filters {
        let total = api.total(filter).await;
        assert!(total > 0, "{filter}");
        for field in ["user", "operation", "ip", "country", "tenant", "category"] {
            if filter.contains(&format!("{field}=")) {
                continue; // the pivot would widen the field's alternatives, not narrow them
            }
            let (code, f) = api.json(&format!("/api/v1/events/facets?field={field}&limit=1000&{filter}")).await;
            assert_eq!(code, 200, "{field} {filter}: {f}");
            let values = f["values"].as_array().unwrap();
            let sum: i64 = values.iter().map(|v| v["count"].as_i64().unwrap()).sum();
            assert_eq!(f["total"].as_i64().unwrap(), total, "{field} {filter}");
            assert_eq!(f["exact"], true, "3,000 events are fewer than the sample: every one is counted");
            assert_eq!(sum + f["missing"].as_i64().unwrap() + f["other"].as_i64().unwrap(), total);
            // The three most frequent values and the least frequent one.
            let pick = values.iter().take(3).chain(values.last());
            for v in pick {
                let (value, count) = (v["value"].as_str().unwrap(), v["count"].as_i64().unwrap());
                let sep = if filter.is_empty() { "" } else { "&" };
                assert_eq!(
                    api.total(&format!("{filter}{sep}{field}={}", enc(value))).await,
                    count,
                    "{filter} {field}={value}"
                );
                checked += 1;
            }
        }
        let (_, top) = api.json(&format!("/api/v1/events/facets?field=operation&{filter}")).await;
        assert!(top["values"].as_array().unwrap().len() <= 10, "ten values unless asked");
    }
    assert!(checked > 60, "{checked}");

    // Exports: every matching row, as many as the total, as an attachment.
    for filter in ["", "category=credential", "q=-tenant%3Aleaky+-login"] {
        let total = api.total(filter).await;
        let (code, headers, body) = api.get(&format!("/api/v1/events/export?format=csv&{filter}")).await;
        assert_eq!(code, 200, "{body}");
        assert!(
            headers["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"tines-audit-events-")
        );
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"));
        let rows = csv_rows(&body);
        assert_eq!(rows[0].join(","), tines_audit::query::search::CSV_HEADER);
        assert_eq!(rows.len() as i64 - 1, total, "csv {filter}");
        assert!(rows.iter().all(|r| r.len() == 12));
        let (code, headers, body) = api.get(&format!("/api/v1/events/export?format=ndjson&{filter}")).await;
        assert_eq!(code, 200);
        assert!(headers["content-type"].to_str().unwrap().starts_with("application/x-ndjson"));
        let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len() as i64, total, "ndjson {filter}");
        let seqs: std::collections::BTreeSet<i64> = lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs.len(), lines.len(), "no event twice across the export's pages");
    }

    // The secrets in the leaky records are removed row by row; formulas are defused.
    let (_, _, csv) = api.get("/api/v1/events/export?format=csv&tenant=leaky").await;
    let (_, _, ndjson) = api.get("/api/v1/events/export?format=ndjson&tenant=leaky").await;
    let (_, _, page) = api.get("/api/v1/events?tenant=leaky").await;
    for (what, body) in [("csv", &csv), ("ndjson", &ndjson), ("page", &page)] {
        for secret in [WEB_TOKEN, DEMO_KEY] {
            assert!(!body.contains(secret), "{what} leaked {secret}: {body}");
        }
        assert!(body.contains("**REDACTED**"), "{what}: {body}");
    }
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 4);
    for r in &rows[1..] {
        assert!(r[8].starts_with("'=HYPERLINK("), "user_name: {}", r[8]);
        assert!(r[11].contains("@SUM(A1)") && r[11].starts_with('{'), "the record is one cell");
        for cell in r {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "a formula cell: {cell}");
        }
    }

    // Malformed searches are 400s naming the parameter, through every route.
    let bad = [
        ("/api/v1/events?q=a%00b", "q: "),
        ("/api/v1/events?user=x%00", "user: "),
        ("/api/v1/events?q=usr%3Aann", "unknown field"),
        ("/api/v1/events?q=%22open", "unclosed quote"),
        ("/api/v1/events?q=user%3Aa+OR+ip%3A1.2.3.4", "values of one field"),
        ("/api/v1/events?ip=300.1.1.1", "ip: "),
        ("/api/v1/events?q=-country%3AIreland", "q (-country:Ireland): "),
        ("/api/v1/events/facets?field=nope", "field: "),
        ("/api/v1/events/facets", "field: missing"),
        ("/api/v1/events/facets?field=user&q=%00", "q: "),
        ("/api/v1/events/export?format=xml", "format: "),
        ("/api/v1/events/export?cursor=c11.1", "cursor, limit"),
        ("/api/v1/events/export?operation=NoSuchThing", "unknown operation"),
        ("/api/v1/histogram?q=%00", "q: "),
    ];
    for (path, says) in bad {
        let (code, v) = api.json(path).await;
        assert_eq!(code, 400, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{path}: {v}");
    }
    mock.shutdown().await;
}

/// Regression: a thousand e-mail addresses in `user` nested a thousand ORs in SQLite's
/// query ("Expression tree is too large"): a 500 from the API, an internal error from
/// `search`. A NUL byte in `q` was the other 500 (the API test above; a command line
/// cannot carry one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_emails_in_user_was_a_500() {
    let mock = start_mock(MockConfig { history: 1_000, seed: 92, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Collected (and searched) without the console, which `run` then serves.
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    let c = cfg.to_str().unwrap().to_string();
    let out = run_bin_async(vec!["collect".into(), "--config".into(), c.clone(), "--no-progress".into()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let web = format!("[web]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"WEB_TOKEN\"\n");
    let search = |args: &[&str]| {
        let mut v = vec!["search".to_string(), "--config".into(), c.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        run_bin_async(v)
    };
    let first = search(&["--format", "ndjson", "--limit", "1"]).await;
    let e: Value = serde_json::from_str(String::from_utf8_lossy(&first.stdout).trim()).unwrap();
    let who = e["user_email"].as_str().unwrap().to_string();
    let mut emails: Vec<String> = (0..999).map(|i| format!("nobody{i}@elsewhere.example")).collect();
    emails.push(who.to_uppercase());
    let list = emails.join(",");
    let alone = search(&["--user", &who, "--format", "ndjson", "--all"]).await;
    let many = search(&["--user", &list, "--format", "ndjson", "--all"]).await;
    assert!(many.status.success(), "{}", text(&many));
    assert!(!alone.stdout.is_empty());
    assert_eq!(many.stdout, alone.stdout, "the thousand addresses find exactly that user's events");
    // The same search box in the command line: exclusions, and a refusal with exit 2.
    let not_him = search(&[&format!("--text=-user:{who}"), "--format", "ndjson", "--all"]).await;
    let all = search(&["--format", "ndjson", "--all"]).await;
    let n = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).lines().count();
    assert!(n(&alone) > 0 && n(&not_him) > 0);
    assert_eq!(n(&not_him) + n(&alone), n(&all));
    let refused = search(&["-q", "usr:ann"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown field \"usr\""), "{}", text(&refused));

    let cfg = write_config(dir.path(), &mock.base_url(), "", &web);
    let _d = Daemon(spawn_run(&cfg, &dir.path().join("run.log"), &[("WEB_TOKEN", WEB_TOKEN)]));
    let api = Api { base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while api.client.get(format!("{}/healthz", api.base)).send().await.is_err() {
        assert!(std::time::Instant::now() < end, "the daemon never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, v) = api.json(&format!("/api/v1/events?limit=1000&user={}", enc(&list))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), n(&alone));
    assert_eq!(v["total"].as_i64().unwrap() as usize, n(&alone));
    let (code, f) = api.json(&format!("/api/v1/events/facets?field=user&user={}", enc(&list))).await;
    assert_eq!(code, 200, "{f}");
    assert_eq!(f["values"][0]["value"], who.to_lowercase().as_str());
    mock.shutdown().await;
}
