//! Alerts you can work, end to end: the real binary collects from the emulator and its
//! detector raises an alert for every event (a rule that matches everything, without
//! suppression) and one for every story event; the alert API pages them past 500, filters
//! and groups them, opens one with its events, history and rule, and lets an analyst, and
//! only an analyst with a bearer token or the session's CSRF token, triage it. Bad input
//! is a 400 that says what is wrong, never a 500; the console's alert pages keep a rule's
//! and a note's markup inert.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tines_audit::mock::MockConfig;

const ALICE: &str = "alice-analyst-token-0123456789";
const BOB: &str = "bob-viewer-token-0123456789ab";
const EVERY: &str = "every_event";
const STORY: &str = "story_activity";
const TITLE_XSS: &str = "<script>alert('title')</script>";
const DESCRIPTION_XSS: &str = "\"><img src=x onerror=alert('description')>";
const NOTE_XSS: &str = "checked <script>alert('note')</script> \"><img src=x onerror=alert('note')>";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A rule for every event of the tenant (high) and one for story events (low), neither suppressed.
fn write_rules(dir: &Path) -> std::path::PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    // YAML's single-quoted strings double their quotes.
    let (title, description) = (TITLE_XSS.replace('\'', "''"), DESCRIPTION_XSS.replace('\'', "''"));
    let yaml = format!(
        r#"title: 'Every event {title}'
id: {EVERY}
description: 'Matches every event of the tenant {description}'
logsource: {{product: tines, service: audit}}
detection:
  selection:
    tenant: {TENANT}
  condition: selection
level: high
tines_audit.suppress_for: 0s
---
title: Story activity
id: {STORY}
description: Any change to a story.
logsource: {{product: tines, service: audit}}
detection:
  selection:
    operation_category: story
  condition: selection
level: low
tines_audit.suppress_for: 0s
"#
    );
    std::fs::write(rules.join("test.yml"), yaml).unwrap();
    rules
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// `None` until the daemon listens and answers JSON.
    async fn try_get(&self, path: &str) -> Option<Value> {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(ALICE).send().await.ok()?;
        if r.status() != StatusCode::OK {
            return None;
        }
        serde_json::from_str(&r.text().await.ok()?).ok()
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap();
        let code = r.status();
        let text = r.text().await.unwrap();
        (code, serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {code} {text:?}: {e}")))
    }

    async fn ok(&self, path: &str) -> Value {
        let (code, v) = self.get(path, ALICE).await;
        assert_eq!(code, StatusCode::OK, "GET {path}: {v}");
        v
    }

    async fn patch(&self, id: &str, token: &str, body: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .patch(format!("{}/api/v1/alerts/{id}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let code = r.status();
        let text = r.text().await.unwrap();
        (code, serde_json::from_str(&text).unwrap_or_else(|e| panic!("PATCH {id}: {code} {text:?}: {e}")))
    }

    /// Every alert of a query, following cursors with pages of `limit`.
    async fn all(&self, query: &str, limit: usize) -> (Vec<Value>, usize) {
        let mut out = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let c = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
            let v = self.ok(&format!("/api/v1/alerts?limit={limit}&{query}{c}")).await;
            let page = v["alerts"].as_array().unwrap();
            assert!(page.len() <= limit);
            pages += 1;
            out.extend(page.iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return (out, pages),
            }
        }
    }
}

fn ids(alerts: &[Value]) -> Vec<String> {
    alerts.iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
}

fn total(v: &Value) -> i64 {
    v["total"]["alerts"].as_i64().unwrap()
}

/// Logs in through the form: the session cookie, and the CSRF token its pages carry.
async fn log_in(api: &Api, token: &str) -> (String, String) {
    let r = api.http.post(format!("{}/login", api.base)).form(&[("token", token)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = api.http.get(format!("{}/alerts", api.base)).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("the page carries its CSRF token") + 19;
    (cookie, html[at..at + html[at..].find('"').unwrap()].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_page_past_500_filter_group_open_and_triage_with_history() {
    let mock = start_mock(MockConfig { history: 700, seed: 71, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rules = write_rules(dir.path());
    let detect = format!("interval = \"1s\"\n[detect]\nrules = [\"{}\"]\nalert_lookback = \"0s\"\n", rules.display());
    let web = format!(
        "{}[web]\nbind = \"127.0.0.1:{port}\"\n[[web.users]]\nname = \"alice\"\nrole = \"analyst\"\ntoken_env = \"ALICE_TOKEN\"\n[[web.users]]\nname = \"bob\"\ntoken_env = \"BOB_TOKEN\"\n",
        file_sink(&dir.path().join("out/a.ndjson"))
    );
    let cfg = write_config(dir.path(), &mock.base_url(), &detect, &web);
    let log = dir.path().join("run.log");
    let _daemon = Daemon(spawn_run(&cfg, &log, &[("ALICE_TOKEN", ALICE), ("BOB_TOKEN", BOB)]));
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
    };

    // Every event raises one `every_event` alert: wait for all of them, and for the index.
    let events = mock_ids(&mock).len() as i64;
    assert!(events > 500, "the test needs more than 500 alerts of one rule");
    let end = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let every = api.try_get(&format!("/api/v1/alerts?rule={EVERY}&limit=1")).await;
        let index = api.try_get("/api/v1/events?limit=1").await;
        if let (Some(every), Some(index)) = (&every, &index)
            && total(every) == events
            && index["search_index"]["position"] == index["search_index"]["max_seq"]
        {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the daemon did not raise {events} alerts: {every:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut stories = 0;
    let mut cursor = String::new();
    loop {
        let v = api.ok(&format!("/api/v1/events?category=story&limit=1000{cursor}")).await;
        stories += v["events"].as_array().unwrap().len() as i64;
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert!(stories > 0);
    let everything = api.ok("/api/v1/alerts?limit=1").await;
    assert_eq!(total(&everything), events + stories, "{everything}");

    // Pages past 500: cursors walk every alert once, newest event first, and one page of
    // 1000 holds the same (no cap at 500).
    let (paged, pages) = api.all(&format!("rule={EVERY}"), 200).await;
    assert_eq!(paged.len() as i64, events);
    assert_eq!(pages, (events as usize).div_ceil(200));
    let unique: std::collections::HashSet<String> = ids(&paged).into_iter().collect();
    assert_eq!(unique.len(), paged.len(), "no alert twice");
    let keys: Vec<(String, i64)> =
        paged.iter().map(|a| (a["event_time"].as_str().unwrap().to_string(), a["seq"].as_i64().unwrap())).collect();
    assert!(keys.windows(2).all(|w| w[0] > w[1]), "newest event first, then newest seq");
    let one = api.ok(&format!("/api/v1/alerts?rule={EVERY}&limit=1000")).await;
    assert_eq!(ids(one["alerts"].as_array().unwrap()), ids(&paged));
    assert!(one["next_cursor"].is_null());

    // Filters: level, rule, tenant, time; each page agrees with the total it reports.
    let high = api.ok("/api/v1/alerts?level=high&limit=1").await;
    assert_eq!(total(&high), events);
    let (low, _) = api.all("level=LOW", 500).await;
    assert_eq!(low.len() as i64, stories);
    assert!(low.iter().all(|a| a["rule"]["id"] == STORY && a["level"] == "low"));
    assert_eq!(total(&api.ok("/api/v1/alerts?level=critical,medium").await), 0);
    assert_eq!(total(&api.ok(&format!("/api/v1/alerts?rule={STORY}&rule={EVERY}")).await), events + stories);
    assert_eq!(total(&api.ok(&format!("/api/v1/alerts?tenant={TENANT}")).await), events + stories);
    assert_eq!(total(&api.ok("/api/v1/alerts?tenant=elsewhere").await), 0);
    let (from, to) = (keys[keys.len() * 3 / 4].0.clone(), keys[keys.len() / 4].0.clone());
    let inside: Vec<&Value> = paged
        .iter()
        .filter(|a| {
            let t = a["event_time"].as_str().unwrap();
            t >= from.as_str() && t < to.as_str()
        })
        .collect();
    assert!(!inside.is_empty());
    let (window, _) = api.all(&format!("rule={EVERY}&from={from}&to={to}"), 100).await;
    assert_eq!(ids(&window), inside.iter().map(|a| a["id"].as_str().unwrap().to_string()).collect::<Vec<_>>());

    // Repeats of one rule and group (tenant and user) come together, with counts that add up.
    let grouped = api.ok(&format!("/api/v1/alerts?rule={EVERY}&group=true&limit=1000")).await;
    let groups = grouped["groups"].as_array().unwrap();
    assert_eq!(groups.len() as i64, grouped["total"]["groups"].as_i64().unwrap());
    assert!(groups.len() > 1 && (groups.len() as i64) < events, "{} groups", groups.len());
    assert_eq!(groups.iter().map(|g| g["count"].as_i64().unwrap()).sum::<i64>(), events);
    for g in groups.iter().take(5) {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rule", g["rule_id"].as_str().unwrap())
            .append_pair("tenant", g["tenant"].as_str().unwrap())
            .append_pair("group_key", g["group_key"].as_str().unwrap())
            .finish();
        let (members, _) = api.all(&q, 1000).await;
        assert_eq!(members.len() as i64, g["count"].as_i64().unwrap());
        assert_eq!(members[0], g["newest"], "the group shows its newest alert");
        assert_eq!(g["open"], g["count"]);
    }

    // One alert: its rule with the Sigma text, and exactly the events that made it.
    let alert = &paged[paged.len() / 2];
    let id = alert["id"].as_str().unwrap().to_string();
    let detail = api.ok(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(detail["id"], id.as_str());
    assert_eq!(detail["status"], "open");
    assert_eq!(detail["history"], json!([]));
    assert!(detail["rule"]["description"].as_str().unwrap().contains(DESCRIPTION_XSS));
    assert_eq!(detail["rule"]["loaded"], true);
    assert!(detail["rule"]["sigma"].as_str().unwrap().contains(&format!("id: {EVERY}")));
    let mut made_of: Vec<i64> =
        detail["body"]["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    made_of.sort_unstable();
    assert_eq!(made_of.len() as i64, detail["events"].as_i64().unwrap());
    let own = api.ok(&format!("/api/v1/alerts/{id}/events")).await;
    let mut seqs: Vec<i64> = own["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, made_of, "exactly the alert's events");
    let searched = api.ok(&format!("/api/v1/events?alert={id}")).await;
    assert_eq!(searched["events"], own["events"], "the event search's alert filter agrees");
    let rule = api.ok(&format!("/api/v1/rules/{EVERY}")).await;
    assert_eq!(rule["sigma"], detail["rule"]["sigma"]);
    assert_eq!((rule["level"].as_str(), rule["running"].as_bool()), (Some("high"), Some(true)));
    for path in ["/api/v1/alerts/nope:1", "/api/v1/alerts/nope:1/events", "/api/v1/rules/nope"] {
        let (code, v) = api.get(path, ALICE).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}: {v}");
        assert!(v["error"].as_str().is_some(), "{v}");
    }

    // Triage by an analyst with a bearer token: recorded with who and when.
    let before = tines_audit::timeutil::now_secs();
    let body = json!({"status": "acknowledged", "assignee": "alice", "note": NOTE_XSS}).to_string();
    let (code, ack) = api.patch(&id, ALICE, &body).await;
    assert_eq!(code, StatusCode::OK, "{ack}");
    assert_eq!(ack["alert"]["status"], "acknowledged");
    assert_eq!((ack["change"]["by"].as_str(), ack["change"]["from_status"].as_str()), (Some("alice"), Some("open")));
    let at = tines_audit::timeutil::parse_rfc3339(ack["change"]["at"].as_str().unwrap()).unwrap();
    assert!(at >= before && at <= tines_audit::timeutil::now_secs(), "{at}");
    let (code, again) = api.patch(&id, ALICE, r#"{"status": "acknowledged"}"#).await;
    assert_eq!((code, &again["change"]), (StatusCode::OK, &Value::Null), "nothing new, nothing written");
    let (code, closed) = api.patch(&id, ALICE, r#"{"status": "closed", "assignee": null, "note": "benign"}"#).await;
    assert_eq!(code, StatusCode::OK, "{closed}");
    let history = api.ok(&format!("/api/v1/alerts/{id}")).await["history"].clone();
    let steps: Vec<(&str, &str, &str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["by"].as_str().unwrap(),
                c["from_status"].as_str().unwrap(),
                c["to_status"].as_str().unwrap(),
                c["note"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps, vec![("alice", "open", "acknowledged", NOTE_XSS), ("alice", "acknowledged", "closed", "benign")]);
    assert_eq!(history[1]["from_assignee"], "alice");
    assert!(history[1]["to_assignee"].is_null());
    let closed_list = api.ok("/api/v1/alerts?status=closed").await;
    assert_eq!(ids(closed_list["alerts"].as_array().unwrap()), vec![id.clone()]);
    assert_eq!(total(&api.ok("/api/v1/alerts?status=open&limit=1").await), events + stories - 1);
    assert_eq!(total(&api.ok("/api/v1/alerts?status=acknowledged").await), 0);

    // A viewer reads but cannot triage; nothing is written.
    let other = paged[0]["id"].as_str().unwrap().to_string();
    let (code, v) = api.patch(&other, BOB, r#"{"status": "closed"}"#).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains("bob has the viewer role"), "{v}");
    assert_eq!(api.get(&format!("/api/v1/alerts/{other}"), BOB).await.1["history"], json!([]));
    // No token at all: 401 on every alert route.
    for path in [
        "/api/v1/alerts",
        &format!("/api/v1/alerts/{other}"),
        &format!("/api/v1/alerts/{other}/events"),
        "/api/v1/rules/every_event",
    ] {
        let r = api.http.get(format!("{}{path}", api.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = api.http.patch(format!("{}/api/v1/alerts/{other}", api.base)).body("{}").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A session: the cookie alone is what a forged cross-site request carries, and is refused;
    // with the page's CSRF token it goes through.
    let (cookie, csrf) = log_in(&api, ALICE).await;
    let with_cookie = |csrf: Option<&str>| {
        let mut r = api
            .http
            .patch(format!("{}/api/v1/alerts/{other}", api.base))
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body(r#"{"status": "acknowledged", "note": "from the console"}"#);
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.send()
    };
    let refused = with_cookie(None).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("CSRF"));
    assert_eq!(with_cookie(Some("0123")).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(api.ok(&format!("/api/v1/alerts/{other}")).await["history"], json!([]));
    assert_eq!(with_cookie(Some(&csrf)).await.unwrap().status(), StatusCode::OK);
    // The console's form: refused without the token, saved and sent back to the alert with it.
    let form = |fields: &[(&str, &str)]| {
        api.http
            .post(format!("{}/alerts/{other}/triage", api.base))
            .header("cookie", &cookie)
            .form(&fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
            .send()
    };
    let r = form(&[("status", "closed"), ("assignee", ""), ("note", "")]).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = form(&[("csrf", &csrf), ("status", "closed"), ("assignee", "carol"), ("note", "done")]).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], format!("/alerts/{other}#history"));
    let r = form(&[("csrf", &csrf), ("status", "resolved"), ("assignee", ""), ("note", "")]).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("status: &quot;resolved&quot; is not one of open, acknowledged, closed"));
    let h = api.ok(&format!("/api/v1/alerts/{other}")).await;
    let steps: Vec<(&str, &str)> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["to_status"].as_str().unwrap(), c["note"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, vec![("acknowledged", "from the console"), ("closed", "done")]);
    assert_eq!((h["assignee"].as_str(), h["triaged_by"].as_str()), (Some("carol"), Some("alice")));

    // A viewer's console: the alert reads, the form is not there, and a forged post is refused.
    let (bob_cookie, bob_csrf) = log_in(&api, BOB).await;
    let page = api.http.get(format!("{}/alerts/{other}", api.base)).header("cookie", &bob_cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"triage-viewer\"") && !html.contains("id=\"triage\""), "no form for a viewer");
    let r = api
        .http
        .post(format!("{}/alerts/{other}/triage", api.base))
        .header("cookie", &bob_cookie)
        .form(&[("csrf", bob_csrf.as_str()), ("status", "open"), ("assignee", ""), ("note", "reopen")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("viewer role"));

    // The console pages past 500 too: following `Older →` shows every alert once.
    let mut next = Some(format!("/alerts?rule={EVERY}"));
    let (mut rows, mut seen_pages) = (Vec::new(), 0);
    while let Some(path) = next.take() {
        let r = api.http.get(format!("{}{path}", api.base)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let html = r.text().await.unwrap();
        seen_pages += 1;
        rows.extend(html.split("<tr class=\"alert ").skip(1).map(|row| {
            let at = row.find("data-id=\"").unwrap() + 9;
            row[at..at + row[at..].find('"').unwrap()].to_string()
        }));
        next = html.find("id=\"older\"").map(|end| {
            let start = html[..end].rfind("href=\"").unwrap() + 6;
            html[start..start + html[start..].find('"').unwrap()].replace("&amp;", "&")
        });
    }
    assert_eq!(seen_pages, (events as usize).div_ceil(100), "100 a page");
    assert_eq!(rows, ids(&paged), "the same alerts as the API, in the same order");

    // Bad input is a 400 that names the problem, never a 500.
    let long = "x".repeat(2001);
    let bad_patches = [
        (r#"{"status": "resolved"}"#.to_string(), "not one of open, acknowledged, closed"),
        (json!({"note": long}).to_string(), "at most 2000 characters"),
        (json!({"note": "a\u{0}b"}).to_string(), "control characters"),
        (json!({"assignee": "a\nb"}).to_string(), "control characters"),
        (r#"{"state": "closed"}"#.to_string(), "unknown field"),
        (r#"{"status": 1}"#.to_string(), "must be a string"),
        ("{}".to_string(), "nothing to change"),
        ("status=closed".to_string(), "JSON object"),
        ("[]".to_string(), "JSON object"),
    ];
    for (body, says) in &bad_patches {
        let (code, v) = api.patch(&other, ALICE, body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    let (code, _) = api.patch("nope:1", ALICE, r#"{"status": "closed"}"#).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    for (query, field) in [
        ("status=resolved", "status"),
        ("level=urgent", "level"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("cursor=junk", "cursor"),
        ("from=yesterday-ish", "from"),
        ("from=1d&to=2d", "to"),
        ("group=perhaps", "group"),
        ("bogus=1", "query"),
        ("rule=a%00b", "rule"),
    ] {
        let (code, v) = api.get(&format!("/api/v1/alerts?{query}"), ALICE).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert!(v["error"].as_str().unwrap().starts_with(&format!("{field}:")), "{query}: {v}");
    }
    for query in ["limit=0", "cursor=junk", "bogus=1"] {
        let (code, v) = api.get(&format!("/api/v1/alerts/{id}/events?{query}"), ALICE).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {v}");
    }
    assert_eq!(api.ok(&format!("/api/v1/alerts/{other}")).await["history"].as_array().unwrap().len(), 2);

    // The console's alert pages keep the rule's and the note's markup as text.
    let mut pages = String::new();
    for path in [
        "/alerts".to_string(),
        "/alerts?group=true".to_string(),
        format!("/alerts/{id}"),
        format!(
            "/alerts?status=resolved&tenant={}",
            url::form_urlencoded::byte_serialize(TITLE_XSS.as_bytes()).collect::<String>()
        ),
        "/alerts/%3Cscript%3E".to_string(),
    ] {
        let r = api.http.get(format!("{}{path}", api.base)).header("cookie", &cookie).send().await.unwrap();
        assert!(r.status().is_success() || r.status().is_client_error(), "{path}: {}", r.status());
        pages.push_str(&r.text().await.unwrap());
    }
    assert_eq!(foreign_scripts(&pages), 0, "<script reached a page unescaped");
    assert!(!pages.contains("<img"), "<img reached a page unescaped");
    // maud escapes what can end an element or a (double-quoted) attribute; a quote mark cannot.
    assert!(pages.contains("Every event &lt;script&gt;alert('title')&lt;/script&gt;"));
    assert!(pages.contains("&quot;&gt;&lt;img src=x onerror=alert('description')&gt;"));
    assert!(pages.contains("checked &lt;script&gt;alert('note')&lt;/script&gt;"));
    mock.shutdown().await;
}
