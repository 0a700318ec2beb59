//! End-to-end tests over real HTTP against a server on an ephemeral port.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::*;
use crate::{catalog, timeutil};

const ANCHOR: i64 = 1_700_000_000;
const KEY: &str = DEMO_KEY;

fn config(history: usize) -> MockConfig {
    MockConfig {
        seed: 77,
        history,
        history_span: Duration::from_secs(6 * 3600),
        anchor: Some(ANCHOR),
        rate_limit_per_minute: 0,
        ..MockConfig::default()
    }
}

async fn start(config: MockConfig) -> MockServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    MockServer::start(config, listener).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

async fn get_with(s: &MockServer, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().get(format!("{}{path}", s.base_url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.unwrap().to_vec();
    Reply { status, headers, body }
}

async fn get(s: &MockServer, path: &str) -> Reply {
    get_with(s, path, &[("Authorization", &format!("Bearer {KEY}"))]).await
}

/// Every record of a query, following `next_page_number`; checks meta on the way.
async fn pull(s: &MockServer, query: &str, per_page: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page = 1;
    loop {
        let r = get(s, &format!("/api/v1/audit_logs?per_page={per_page}&page={page}{query}")).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        let meta = &v["meta"];
        let count = meta["count"].as_u64().unwrap() as usize;
        let pages = count.div_ceil(per_page);
        assert_eq!(meta["pages"].as_u64().unwrap() as usize, pages);
        assert_eq!(meta["per_page"].as_u64().unwrap() as usize, per_page);
        let base = s.base_url();
        assert_eq!(meta["current_page"], format!("{base}/api/v1/audit_logs?per_page={per_page}&page={page}"));
        if page == 1 {
            assert!(meta["previous_page"].is_null());
        } else {
            assert_eq!(
                meta["previous_page"],
                format!("{base}/api/v1/audit_logs?per_page={per_page}&page={}", page - 1)
            );
        }
        let logs = v["audit_logs"].as_array().unwrap();
        if page < pages {
            assert_eq!(logs.len(), per_page);
            assert_eq!(meta["next_page_number"], page + 1);
            assert_eq!(meta["next_page"], format!("{base}/api/v1/audit_logs?per_page={per_page}&page={}", page + 1));
        } else {
            assert_eq!(logs.len(), count.saturating_sub((page - 1) * per_page));
            assert!(meta["next_page"].is_null() && meta["next_page_number"].is_null());
        }
        out.extend(logs.iter().cloned());
        if page >= pages {
            return out;
        }
        page += 1;
    }
}

fn key(v: &Value) -> (i64, u64) {
    (timeutil::parse_rfc3339(v["created_at"].as_str().unwrap()).unwrap(), v["id"].as_u64().unwrap())
}

#[tokio::test]
async fn auth_answers_401_403_and_404_as_json() {
    let mut cfg = config(10);
    cfg.keys.push(MockKey { key: "no-audit".into(), can_read_audit_logs: false });
    let s = start(cfg).await;
    let p = "/api/v1/audit_logs";

    let r = get_with(&s, p, &[]).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].is_string());
    let r = get_with(&s, p, &[("Authorization", "Bearer wrong")]).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].is_string());
    let r = get_with(&s, p, &[("X-User-Token", "no-audit")]).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["error"].is_string());
    let r = get(&s, "/api/v1/audit_log").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    assert_eq!(get_with(&s, p, &[("X-User-Token", KEY)]).await.status, 200);
    assert_eq!(get(&s, p).await.status, 200);
    assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");

    let stats = s.stats();
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.by_status.get(&401), Some(&2));
    assert_eq!(stats.by_status.get(&403), Some(&1));
    assert_eq!(stats.by_status.get(&200), Some(&2));
    s.shutdown().await;
}

#[tokio::test]
async fn paging_yields_every_id_once_newest_first() {
    let mut cfg = config(3_000);
    cfg.burst = Some(Burst { count: 40, secs_ago: 3600 });
    let s = start(cfg).await;
    let ids = s.ids();
    assert_eq!(ids.len(), 3_040);
    assert_eq!(s.event_count(), 3_040);

    for per_page in [500, 37] {
        let records = pull(&s, "", per_page).await;
        let keys: Vec<(i64, u64)> = records.iter().map(key).collect();
        assert!(keys.windows(2).all(|w| w[0] > w[1]), "not newest first");
        let mut got: Vec<u64> = keys.iter().map(|k| k.1).collect();
        got.sort_unstable();
        assert_eq!(got, ids, "per_page={per_page}");
        assert_eq!(s.newest_created_at(), Some(keys[0].0));
    }

    // Past the last page: an empty list, meta still present.
    let v = get(&s, "/api/v1/audit_logs?per_page=500&page=99").await.json();
    assert_eq!(v["audit_logs"].as_array().unwrap().len(), 0);
    assert_eq!(v["meta"]["count"], 3_040);
    assert_eq!(v["meta"]["pages"], 7);
    assert!(v["meta"]["next_page"].is_null());
    // per_page is clamped to 1..=500 and defaults to 20.
    assert_eq!(get(&s, "/api/v1/audit_logs?per_page=5000").await.json()["meta"]["per_page"], 500);
    assert_eq!(get(&s, "/api/v1/audit_logs?per_page=0").await.json()["meta"]["per_page"], 1);
    let v = get(&s, "/api/v1/audit_logs").await.json();
    assert_eq!(v["meta"]["per_page"], 20);
    assert_eq!(v["audit_logs"].as_array().unwrap().len(), 20);
    // An empty window has 0 pages.
    let v = get(&s, "/api/v1/audit_logs?after=2030-01-01T00:00:00Z").await.json();
    assert_eq!((v["meta"]["count"].as_u64(), v["meta"]["pages"].as_u64()), (Some(0), Some(0)));
    assert!(v["meta"]["next_page_number"].is_null());
    s.shutdown().await;
}

#[tokio::test]
async fn after_and_before_boundaries_follow_the_inclusive_switches() {
    let mut cfg = config(400);
    cfg.burst = Some(Burst { count: 9, secs_ago: 100 });
    let exclusive = start(cfg.clone()).await;
    cfg.after_inclusive = true;
    cfg.before_inclusive = true;
    let inclusive = start(cfg).await;

    let all: Vec<(i64, u64)> = pull(&exclusive, "", 500).await.iter().map(key).collect();
    let t = ANCHOR - 100;
    let at_t = all.iter().filter(|k| k.0 == t).count();
    assert!(at_t >= 9);
    let ts = timeutil::format_rfc3339(t);
    let expect = |f: &dyn Fn(i64) -> bool| all.iter().filter(|k| f(k.0)).count() as u64;
    let count = |v: Value| v["meta"]["count"].as_u64().unwrap();

    let q = format!("/api/v1/audit_logs?after={ts}");
    assert_eq!(count(get(&exclusive, &q).await.json()), expect(&|c| c > t));
    assert_eq!(count(get(&inclusive, &q).await.json()), expect(&|c| c >= t));
    let q = format!("/api/v1/audit_logs?before={ts}");
    assert_eq!(count(get(&exclusive, &q).await.json()), expect(&|c| c < t));
    assert_eq!(count(get(&inclusive, &q).await.json()), expect(&|c| c <= t));
    let q = format!("/api/v1/audit_logs?after={ts}&before={ts}");
    assert_eq!(count(get(&exclusive, &q).await.json()), 0);
    assert_eq!(count(get(&inclusive, &q).await.json()), at_t as u64);
    let records = pull(&inclusive, &format!("&after={ts}&before={ts}"), 4).await;
    assert!(records.iter().all(|r| key(r).0 == t));

    for bad in ["after=yesterday", "before=2024-13-01T00:00:00Z", "per_page=ten"] {
        let r = get(&exclusive, &format!("/api/v1/audit_logs?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].as_str().unwrap().contains("Invalid"));
    }
    exclusive.shutdown().await;
    inclusive.shutdown().await;
}

#[tokio::test]
async fn user_and_operation_filters_select_exactly_the_matches() {
    let s = start(config(2_000)).await;
    let all = pull(&s, "", 500).await;
    let users: Vec<u64> = {
        let mut u: Vec<u64> =
            all.iter().map(|r| r["user_id"].as_u64().unwrap()).collect::<BTreeSet<_>>().into_iter().collect();
        u.truncate(2);
        u
    };
    let ops = ["ActionRun", "StoryItemsMovement"];
    let expect_users: Vec<u64> =
        all.iter().filter(|r| users.contains(&r["user_id"].as_u64().unwrap())).map(|r| key(r).1).collect();
    let expect_ops: Vec<u64> =
        all.iter().filter(|r| ops.contains(&r["operation_name"].as_str().unwrap())).map(|r| key(r).1).collect();
    assert!(!expect_users.is_empty() && !expect_ops.is_empty());

    let q = format!("&user_id%5B%5D={}&user_id[]={}", users[0], users[1]);
    let got: Vec<u64> = pull(&s, &q, 50).await.iter().map(|r| key(r).1).collect();
    assert_eq!(got, expect_users);
    let got: Vec<u64> = pull(&s, "&operation_name[]=ActionRun&operation_name%5B%5D=StoryItemsMovement", 50)
        .await
        .iter()
        .map(|r| key(r).1)
        .collect();
    assert_eq!(got, expect_ops);
    // The plain form with a single value, combined with a user filter.
    let q = format!("&operation_name=ActionRun&user_id={}", users[0]);
    let both = pull(&s, &q, 500).await;
    let expect_both = all.iter().filter(|r| r["operation_name"] == "ActionRun" && r["user_id"] == users[0]).count();
    assert_eq!(both.len(), expect_both);
    // Names outside the catalog are accepted and match nothing.
    let v = get(&s, "/api/v1/audit_logs?operation_name[]=NoSuchThing").await.json();
    assert_eq!(v["meta"]["count"], 0);
    // The slash-bearing catalog name survives percent-encoding.
    let v = get(&s, "/api/v1/audit_logs?operation_name[]=SCIM%2F2.0%2FUser%2Fcreate&per_page=500").await.json();
    assert!(v["audit_logs"].as_array().unwrap().iter().all(|r| r["operation_name"] == "SCIM/2.0/User/create"));
    assert!(v["meta"]["count"].as_u64().unwrap() >= 1);
    s.shutdown().await;
}

#[tokio::test]
async fn same_seed_same_tenant_other_seed_other_tenant() {
    let a = start(config(1_500)).await;
    let b = start(config(1_500)).await;
    let mut other = config(1_500);
    other.seed = 78;
    let c = start(other).await;
    assert_eq!(a.ids(), b.ids());
    let page = "/api/v1/audit_logs?per_page=500&page=2";
    // Compare bodies without the meta URLs, which carry each server's port.
    let strip = |v: Value| v["audit_logs"].clone();
    assert_eq!(strip(get(&a, page).await.json()), strip(get(&b, page).await.json()));
    assert_ne!(a.ids(), c.ids());
    assert_ne!(strip(get(&a, page).await.json()), strip(get(&c, page).await.json()));
    for s in [a, b, c] {
        s.shutdown().await;
    }
}

/// The keys of a JSON object in document order (serde_json's `Value` would sort them).
struct KeyOrder(Vec<String>);

impl<'de> Deserialize<'de> for KeyOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyOrder;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(KeyOrder(keys))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct RawPage {
    audit_logs: Vec<Box<serde_json::value::RawValue>>,
}

#[tokio::test]
async fn records_have_the_tines_shape_and_all_operations_appear() {
    // The first catalog-length draws cover every operation; the rest make the nameless users' turn certain.
    let s = start(config(1_000)).await;
    let mut names = HashSet::new();
    let mut blank_names = 0;
    let mut with_outputs = 0;
    for page in 1..=2 {
        let r = get(&s, &format!("/api/v1/audit_logs?per_page=500&page={page}")).await;
        let raw: RawPage = serde_json::from_slice(&r.body).unwrap();
        for rec in raw.audit_logs {
            let KeyOrder(keys) = serde_json::from_str(rec.get()).unwrap();
            let mut expected = vec!["created_at", "id", "inputs", "operation_name"];
            if keys.iter().any(|k| k == "outputs") {
                expected.push("outputs");
                with_outputs += 1;
            }
            expected.extend(["request_ip", "request_user_agent", "tenant_id", "updated_at"]);
            expected.extend(["user_email", "user_id", "user_name"]);
            assert_eq!(keys, expected, "{}", rec.get());

            let v: Value = serde_json::from_str(rec.get()).unwrap();
            let created = v["created_at"].as_str().unwrap();
            assert_eq!(created.len(), 20);
            assert_eq!(timeutil::format_rfc3339(timeutil::parse_rfc3339(created).unwrap()), created);
            assert_eq!(v["updated_at"], v["created_at"]);
            assert!(v["id"].is_u64() && v["user_id"].is_u64());
            assert_eq!(v["tenant_id"], 4242);
            assert!(v["inputs"].is_null() || v["inputs"].is_object());
            if let Some(o) = v.get("outputs") {
                assert_eq!(o, &serde_json::json!({}));
            }
            let ip: Ipv4Addr = v["request_ip"].as_str().unwrap().parse().unwrap();
            assert!(country_of(ip).is_some(), "{ip} is outside the country table");
            assert!(!v["request_user_agent"].as_str().unwrap().is_empty());
            assert!(v["user_email"].as_str().unwrap().contains('@'));
            if v["user_name"] == " " {
                blank_names += 1;
            }
            let name = v["operation_name"].as_str().unwrap().to_string();
            assert!(catalog::find(&name).is_some());
            if name == "Login" {
                assert!(v["inputs"].is_null());
            }
            names.insert(name);
        }
    }
    assert_eq!(names.len(), catalog::operations().len(), "every operation appears");
    assert!(blank_names > 0, "some user_name should be \" \"");
    assert!(with_outputs > 0, "some records should carry outputs");
    s.shutdown().await;
}

#[tokio::test]
async fn sliding_window_limit_answers_429_with_retry_after() {
    let mut cfg = config(50);
    cfg.rate_limit_per_minute = 5;
    cfg.keys.push(MockKey { key: "second".into(), can_read_audit_logs: true });
    let s = start(cfg).await;
    for _ in 0..5 {
        assert_eq!(get(&s, "/api/v1/audit_logs").await.status, 200);
    }
    let r = get(&s, "/api/v1/audit_logs").await;
    assert_eq!(r.status, 429);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(get(&s, "/api/v1/audit_logs").await.status, 429, "still inside the window");
    // The window is per key.
    assert_eq!(get_with(&s, "/api/v1/audit_logs", &[("X-User-Token", "second")]).await.status, 200);
    let stats = s.stats();
    assert_eq!((stats.rate_limited, stats.injected_429), (2, 0));
    s.shutdown().await;
}

#[tokio::test]
async fn injected_faults_break_responses_as_configured() {
    let s = start(config(800)).await;
    let p = "/api/v1/audit_logs?per_page=500";

    s.set_faults(Faults { rate_truncated: 1.0, ..Faults::default() });
    for _ in 0..5 {
        let r = get(&s, p).await;
        assert_eq!(r.status, 200);
        assert!(serde_json::from_slice::<Value>(&r.body).is_err(), "a truncated body parsed");
    }

    s.set_faults(Faults { rate_reset: 1.0, ..Faults::default() });
    let r = client().get(format!("{}{p}", s.base_url())).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "reading a reset body should fail");

    s.set_faults(Faults { rate_429: 1.0, fault_retry_after_secs: 0, ..Faults::default() });
    let r = get(&s, p).await;
    assert_eq!((r.status, r.headers["retry-after"].to_str().unwrap()), (429, "0"));

    s.set_faults(Faults { rate_5xx: 1.0, ..Faults::default() });
    let mut statuses = BTreeSet::new();
    for _ in 0..30 {
        statuses.insert(get(&s, p).await.status);
    }
    assert_eq!(statuses, BTreeSet::from([500, 502, 503]));

    s.set_faults(Faults::default());
    assert_eq!(get(&s, p).await.json()["meta"]["count"], 800);
    let stats = s.stats();
    assert_eq!((stats.truncated, stats.resets, stats.injected_429, stats.injected_5xx), (5, 1, 1, 30));
    assert_eq!(stats.rate_limited, 0);

    // The control endpoints need no key and see the same counters.
    let v = get_with(&s, "/_mock/stats", &[]).await.json();
    assert_eq!(v["injected_5xx"], 30);
    assert_eq!(v["events"], 800);
    let ids: Vec<u64> = serde_json::from_slice(&get_with(&s, "/_mock/ids", &[]).await.body).unwrap();
    assert_eq!(ids, s.ids());
    s.shutdown().await;
}

#[tokio::test]
async fn burst_puts_count_events_in_one_second_across_pages() {
    let mut cfg = config(0);
    cfg.burst = Some(Burst { count: 700, secs_ago: 30 });
    let s = start(cfg).await;
    let records = pull(&s, "", 500).await;
    assert_eq!(records.len(), 700);
    assert!(records.iter().all(|r| key(r).0 == ANCHOR - 30));
    s.shutdown().await;

    let mut cfg = config(2_000);
    cfg.burst = Some(Burst { count: 700, secs_ago: 30 });
    let s = start(cfg).await;
    let ts = timeutil::format_rfc3339(ANCHOR - 30);
    let v = get(&s, &format!("/api/v1/audit_logs?before={}", timeutil::format_rfc3339(ANCHOR - 29))).await.json();
    let total_before = v["meta"]["count"].as_u64().unwrap();
    let v = get(&s, &format!("/api/v1/audit_logs?before={ts}")).await.json();
    assert!(total_before - v["meta"]["count"].as_u64().unwrap() >= 700);
    s.shutdown().await;
}

#[tokio::test]
async fn quirk_switches_change_the_last_page_meta() {
    let mut cfg = config(30);
    cfg.next_page_string_null = true;
    cfg.omit_next_page_number = true;
    let s = start(cfg).await;
    let v = get(&s, "/api/v1/audit_logs?per_page=20&page=2").await.json();
    assert_eq!(v["meta"]["next_page"], "null");
    assert!(v["meta"].get("next_page_number").is_none());
    let v = get(&s, "/api/v1/audit_logs?per_page=20&page=1").await.json();
    assert!(v["meta"]["next_page"].as_str().unwrap().ends_with("page=2"));
    assert!(v["meta"].get("next_page_number").is_none());
    s.shutdown().await;
}

#[tokio::test]
async fn live_events_arrive_with_new_ids_and_late_ones_are_backdated() {
    let mut cfg = config(100);
    cfg.anchor = None;
    cfg.live_rate = 400.0;
    cfg.late_fraction = 1.0;
    cfg.max_lateness_secs = 120;
    let s = start(cfg).await;
    let history_max = *s.ids().last().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.event_count() < 150 {
        assert!(Instant::now() < deadline, "live events did not arrive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.set_live(false);
    let records = pull(&s, "", 500).await;
    let now = timeutil::now_secs();
    let live: Vec<&Value> = records.iter().filter(|r| key(r).1 > history_max).collect();
    assert!(live.len() >= 50);
    // Every live event here is late: stamped in the past although its id is the newest.
    assert!(live.iter().all(|r| key(r).0 < now && key(r).0 >= now - 125));
    let mut ids: Vec<u64> = records.iter().map(|r| key(r).1).collect();
    ids.sort_unstable();
    assert_eq!(ids, s.ids());
    s.shutdown().await;
}

#[tokio::test]
async fn meta_links_follow_the_host_the_client_used() {
    let s = start(config(30)).await;
    let r = get_with(
        &s,
        "/api/v1/audit_logs",
        &[("Authorization", &format!("Bearer {KEY}")), ("Host", "tenant.example:9")],
    )
    .await;
    assert_eq!(r.json()["meta"]["current_page"], "http://tenant.example:9/api/v1/audit_logs?per_page=20&page=1");
    s.shutdown().await;
}

/// Rendering throughput; run with `cargo test --release --lib mock -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_pull_one_million_events() {
    let mut cfg = config(1_000_000);
    cfg.history_span = Duration::from_secs(30 * 86_400);
    let started = Instant::now();
    let s = start(cfg).await;
    println!("generated 1M events in {:?}", started.elapsed());
    let started = Instant::now();
    let c = client();
    let mut n = 0;
    for page in 1..=2_000 {
        let url = format!("{}/api/v1/audit_logs?per_page=500&page={page}", s.base_url());
        let body = c.get(url).bearer_auth(KEY).send().await.unwrap().bytes().await.unwrap();
        let v: RawPage = serde_json::from_slice(&body).unwrap();
        n += v.audit_logs.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!("pulled {n} events in {secs:.2}s: {:.0} events/s", n as f64 / secs);
    assert_eq!(n, 1_000_000);
    s.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn scenarios_play_the_three_seed_situations_in_the_first_half_minute() {
    let server = start(MockConfig { scenarios: true, ..config(50) }).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let records = server.records();
    let deletions: Vec<&Value> = records.iter().filter(|r| r["operation_name"] == "CredentialDestruction").collect();
    let by = deletions.last().unwrap()["user_id"].clone();
    assert!(deletions.iter().filter(|r| r["user_id"] == by).count() >= SCENARIO_DELETIONS);
    let owner =
        records.iter().find(|r| r["operation_name"] == "UserEdit" && r["inputs"]["inputs"]["isTenantOwner"] == true);
    let owner = owner.expect("a user made tenant owner");
    assert_ne!(owner["inputs"]["inputs"]["userId"], owner["user_id"], "someone else is made owner");
    let login = records.iter().rev().find(|r| r["operation_name"] == "Login").unwrap();
    let ip: Ipv4Addr = login["request_ip"].as_str().unwrap().parse().unwrap();
    assert_eq!(country_of(ip), Some(SCENARIO_COUNTRY));
    server.shutdown().await;
}

/// Every item of an admin list, following `next_page_number`; checks `meta` on the way.
async fn pull_admin(s: &MockServer, path: &str, list: &str, query: &str, per_page: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let r = get(s, &format!("{path}?{query}per_page={per_page}&page={page}")).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        let meta = &v["meta"];
        let (count, pages) = (meta["count"].as_u64().unwrap() as usize, meta["pages"].as_u64().unwrap() as usize);
        assert_eq!(pages, count.div_ceil(per_page));
        assert_eq!(meta["current_page"], format!("{}{path}?{query}per_page={per_page}&page={page}", s.base_url()));
        let items = v[list].as_array().unwrap_or_else(|| panic!("no {list:?} list: {v}"));
        out.extend(items.iter().cloned());
        if page >= pages {
            assert!(meta["next_page_number"].is_null() && meta["next_page"].is_null());
            assert_eq!(out.len(), count);
            return out;
        }
        assert_eq!(meta["next_page_number"], page + 1);
    }
    unreachable!()
}

/// The collector's posture, rebuilt from the emulator's own records in a journal.
fn posture_of_records(s: &MockServer) -> crate::posture::Posture {
    let j = crate::journal::testing::fresh(crate::journal::testing::Kind::Sqlite);
    let records = s.records();
    let raws: Vec<String> = records.iter().map(Value::to_string).collect();
    let recs = records.iter().zip(&raws).map(|(v, raw)| crate::journal::Record {
        id: v["id"].as_i64().unwrap(),
        created_at: timeutil::parse_rfc3339(v["created_at"].as_str().unwrap()).unwrap(),
        operation_name: v["operation_name"].as_str().unwrap(),
        user_id: v["user_id"].as_i64(),
        user_email: v["user_email"].as_str(),
        request_ip: v["request_ip"].as_str(),
        raw,
    });
    j.start_progress("t", "cursor", 0, None, "").unwrap();
    let c = crate::journal::WindowCommit { tenant: "t", job: "cursor", from: 0, to: i64::MAX / 2, fetched: 0 };
    j.commit_window(&c, recs).unwrap();
    crate::posture::compute(&j, "t", &crate::posture::Options::default()).unwrap()
}

async fn live_of(s: &MockServer) -> crate::posture::Live {
    let rules = |items: Vec<Value>| {
        items
            .iter()
            .map(|r| crate::posture::LiveRule {
                id: r["id"].to_string(),
                address: r["fqdn"].as_str().or(r["ip"].as_str()).unwrap().to_string(),
                description: r["description"].as_str().unwrap().to_string(),
                action_types: r["allowed_action_types"]
                    .as_array()
                    .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default(),
                created_at: None,
            })
            .collect()
    };
    let owners = pull_admin(s, "/api/v1/admin/users", "admin/users", "filter=TENANT_OWNER&", 7).await;
    let owners = owners
        .iter()
        .map(|u| crate::posture::LiveUser {
            id: u["id"].as_i64().unwrap(),
            email: u["email"].as_str().unwrap().to_string(),
            admin: u["admin"].as_bool().unwrap(),
            permissions: vec![],
        })
        .collect();
    use crate::posture::Fetched::Got;
    crate::posture::Live {
        fetched_at: 0,
        owners: Got(owners),
        ip_rules: Got(rules(
            pull_admin(s, "/api/v1/admin/ip_access_control_rules", "admin/ip_access_control_rules", "", 2).await,
        )),
        egress_rules: Got(rules(
            pull_admin(s, "/api/v1/admin/action_egress_control_rules", "admin/action_egress_control_rules", "", 2)
                .await,
        )),
    }
}

/// The emulator's admin lists are what its records leave in force: a posture rebuilt from
/// the history it serves shows no drift, whatever the seed, with live events and the
/// scripted tenant-owner grant on top.
#[tokio::test]
async fn the_admin_lists_hold_what_the_emulators_records_leave_in_force() {
    for seed in [1, 7, 41] {
        let s = start(MockConfig { seed, live_rate: 0.0, ..config(4_000) }).await;
        s.push_late(300, 5);
        s.push_posture(3, crate::mock::PostureChange::OwnerGranted { user: 4 }).unwrap();
        let p = posture_of_records(&s);
        let d = crate::posture::drift(&p, &live_of(&s).await);
        assert!(!d.any(), "seed {seed}: {d:#?}");
        // The history did make rules, keys and owners: the check is not empty.
        assert!(p.events > 20 && p.entries_of(crate::posture::Kind::Owner).count() > 0, "seed {seed}");
        s.shutdown().await;
    }
}

#[tokio::test]
async fn posture_drift_adds_what_no_record_made_and_drops_what_no_record_removed() {
    let s = start(config(0)).await;
    use crate::mock::PostureChange::*;
    for (ip, d) in [("203.0.113.0/24", "VPN"), ("198.51.100.0/24", "DR site")] {
        s.push_posture(0, IpRuleCreated { ip: ip.into(), description: d.into() }).unwrap();
    }
    let types = vec!["http-request".to_string()];
    s.push_posture(
        0,
        EgressRuleCreated { host: "hooks.slack.com".into(), description: "alerts".into(), action_types: types },
    )
    .unwrap();
    assert!(s.push_posture(0, IpRuleDeleted { ip: "10.9.9.0/24".into() }).is_none(), "no such rule: no record");
    let rules = pull_admin(&s, "/api/v1/admin/ip_access_control_rules", "admin/ip_access_control_rules", "", 20).await;
    assert_eq!(
        rules.iter().map(|r| r["ip"].as_str().unwrap()).collect::<Vec<_>>(),
        ["203.0.113.0/24", "198.51.100.0/24"]
    );
    for field in ["id", "ip", "description", "created_at", "updated_at"] {
        assert!(rules[0].get(field).is_some(), "{field}: {}", rules[0]);
    }
    let egress =
        pull_admin(&s, "/api/v1/admin/action_egress_control_rules", "admin/action_egress_control_rules", "", 20).await;
    assert_eq!((egress[0]["fqdn"].as_str(), egress[0]["ip"].is_null()), (Some("hooks.slack.com"), true));
    assert_eq!(egress[0]["allowed_action_types"], serde_json::json!(["http-request"]));

    s.set_posture_drift(true);
    let d = crate::posture::drift(&posture_of_records(&s), &live_of(&s).await);
    let undocumented: Vec<&str> = d.undocumented().map(|i| i.id.as_str()).collect();
    assert_eq!(undocumented.len(), 3, "{d:#?}");
    assert!(undocumented.contains(&"192.0.2.0/24") && undocumented.contains(&"exfil.example.net"), "{undocumented:?}");
    let missing: Vec<&str> = d.missing().map(|i| i.id.as_str()).collect();
    assert_eq!(missing, ["203.0.113.0/24", "hooks.slack.com"]);
    s.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints_answer_401_403_and_the_users_list_has_the_lower_limit() {
    let mut cfg = config(0);
    cfg.rate_limit_per_minute = 6;
    cfg.rate_window = Duration::from_secs(600);
    let s = start(cfg).await;
    let users = "/api/v1/admin/users?filter=TENANT_OWNER";
    assert_eq!(get_with(&s, users, &[]).await.status, 401);
    assert_eq!(get_with(&s, users, &[("Authorization", "Bearer wrong")]).await.status, 401);
    assert_eq!(get(&s, "/api/v1/admin/users?filter=NOPE").await.status, 400);
    // Half the audit-log limit: three in the window (the refused filter's request among
    // them, as the API counts requests, not answers), then 429 with Retry-After.
    let (a, b, c, d) = tokio::join!(get(&s, users), get(&s, users), get(&s, users), get(&s, users));
    let codes: Vec<u16> = [&a, &b, &c, &d].iter().map(|r| r.status).collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 2, "{codes:?}");
    assert!([a, b, c, d].iter().filter(|r| r.status == 429).all(|r| r.headers.contains_key("retry-after")));
    // The rule lists count apart, at five times the audit-log limit.
    for _ in 0..10 {
        assert_eq!(get(&s, "/api/v1/admin/ip_access_control_rules").await.status, 200);
    }
    s.shutdown().await;
    let s = start(MockConfig { admin_forbidden: true, ..config(0) }).await;
    let r = get(&s, "/api/v1/admin/ip_access_control_rules").await;
    assert_eq!(r.status, 403);
    assert!(r.json()["error"].as_str().unwrap().contains("admin"));
    assert_eq!(get(&s, "/api/v1/audit_logs").await.status, 200, "audit logs are still readable");
    s.shutdown().await;
}
