//! Saved searches and compliance reports through the real daemon: the API saves a search
//! as its canonical filters (a bad filter is a 400 naming it, a name taken a 409), replays
//! it exactly, and lets a viewer delete only their own while an analyst deletes any; the
//! console's list and forms need the session's CSRF token and keep a hostile name inert;
//! and the report the console downloads is what `tines-audit report` prints for the same
//! tenant and period.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tines_audit::mock::MockConfig;

const ALICE: &str = "alice-analyst-token-0123456789";
const BOB: &str = "bob-viewer-token-0123456789ab";
const NAME_XSS: &str = "<script>alert('name')</script> \"><img src=x onerror=alert(1)>";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A JSON body (reqwest here is built without its `json` feature).
fn with_json(r: reqwest::RequestBuilder, v: &Value) -> reqwest::RequestBuilder {
    r.header("content-type", "application/json").body(v.to_string())
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap();
        let code = r.status();
        let text = r.text().await.unwrap();
        (code, serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {code} {text:?}: {e}")))
    }

    async fn save(&self, token: &str, body: Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let r = with_json(self.http.post(self.url("/api/v1/searches")).bearer_auth(token), &body).send().await.unwrap();
        let (code, headers) = (r.status(), r.headers().clone());
        let text = r.text().await.unwrap();
        (code, headers, serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {body}: {code} {text:?}: {e}")))
    }

    async fn delete(&self, id: &str, token: &str) -> (StatusCode, String) {
        let r = self.http.delete(self.url(&format!("/api/v1/searches/{id}"))).bearer_auth(token).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn total(&self, query: &str) -> i64 {
        let (code, v) = self.get(&format!("/api/v1/events?limit=1&{query}"), ALICE).await;
        assert_eq!(code, StatusCode::OK, "{query}: {v}");
        v["total"].as_i64().unwrap()
    }

    async fn page(&self, path: &str, cookie: &str) -> (StatusCode, String) {
        let r = self.http.get(self.url(path)).header("cookie", cookie).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn form(&self, path: &str, cookie: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(self.url(path)).header("cookie", cookie).form(fields).send().await.unwrap()
    }

    async fn searches(&self) -> Vec<Value> {
        let (code, v) = self.get("/api/v1/searches", ALICE).await;
        assert_eq!(code, StatusCode::OK, "{v}");
        v["searches"].as_array().unwrap().clone()
    }
}

/// Logs in through the form: the session cookie, and the CSRF token its pages carry.
async fn log_in(api: &Api, token: &str) -> (String, String) {
    let r = api.http.post(api.url("/login")).form(&[("token", token)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let (_, html) = api.page("/searches", &cookie).await;
    let at = html.find("name=\"csrf\" value=\"").expect("the page carries its CSRF token") + 19;
    (cookie, html[at..at + html[at..].find('"').unwrap()].to_string())
}

/// A daemon collecting from a fresh emulator, serving alice (analyst) and bob (viewer),
/// once every event is collected and indexed. Also writes `cli.toml`: the same journal
/// without the console, for the command line.
async fn daemon(dir: &Path, seed: u64) -> (tines_audit::mock::MockServer, Daemon, Api) {
    let mock = start_mock(MockConfig { history: 400, seed, ..Default::default() }).await;
    wait_settled(&mock).await;
    let port = free_port();
    let extra = "interval = \"1h\"\n";
    let cli = write_config(dir, &mock.base_url(), extra, "");
    std::fs::rename(&cli, dir.join("cli.toml")).unwrap();
    let web = format!(
        "[web]\nbind = \"127.0.0.1:{port}\"\n[[web.users]]\nname = \"alice\"\nrole = \"analyst\"\ntoken_env = \"ALICE_TOKEN\"\n[[web.users]]\nname = \"bob\"\ntoken_env = \"BOB_TOKEN\"\n"
    );
    let cfg = write_config(dir, &mock.base_url(), extra, &web);
    let log = dir.join("run.log");
    let d = Daemon(spawn_run(&cfg, &log, &[("ALICE_TOKEN", ALICE), ("BOB_TOKEN", BOB)]));
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
    };
    let everything = mock_ids(&mock).len() as i64;
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = api.http.get(api.url("/api/v1/events?limit=1")).bearer_auth(ALICE).send().await
            && r.status() == StatusCode::OK
            && let Ok(v) = serde_json::from_str::<Value>(&r.text().await.unwrap_or_default())
            && v["search_index"]["position"] == v["search_index"]["max_seq"]
            && v["total"].as_i64() == Some(everything)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the daemon never served the whole, indexed journal:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (mock, d, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_searches_replay_exactly_and_only_their_owner_or_an_analyst_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, _daemon, api) = daemon(dir.path(), 131).await;

    // Saved as the canonical filters, by the bearer's user, with a Location.
    let given = "?category=credential&user=&since=2000-01-01";
    let (code, headers, saved) = api.save(ALICE, json!({"name": " Credential changes ", "query": given})).await;
    assert_eq!(code, StatusCode::CREATED, "{saved}");
    let id = saved["id"].as_i64().unwrap();
    assert_eq!(headers["location"].to_str().unwrap(), format!("/api/v1/searches/{id}"));
    assert_eq!(saved["name"], "Credential changes");
    assert_eq!(saved["query"], "category=credential&from=2000-01-01");
    assert_eq!(saved["owner"], "alice");
    assert_eq!(saved["description"], "category credential · from 2000-01-01");
    assert_eq!(saved["events_url"], "/events?category=credential&from=2000-01-01");
    let (code, one) = api.get(&format!("/api/v1/searches/{id}"), BOB).await;
    assert_eq!((code, &one), (StatusCode::OK, &saved), "anyone reads it");
    // The replay is the search that was saved.
    let replayed = api.total(saved["query"].as_str().unwrap()).await;
    assert!(replayed > 0);
    assert_eq!(replayed, api.total(&given[1..]).await);
    let (_, through) = api.get(saved["api_url"].as_str().unwrap(), ALICE).await;
    assert_eq!(through["total"].as_i64(), Some(replayed));

    // One search per name, whatever its case; the refusal names the one that has it.
    let (code, _, v) = api.save(BOB, json!({"name": "credential CHANGES", "query": "tenant=t1"})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.starts_with("name: ") && e.contains(&format!("id {id}")) && e.contains("alice"), "{e}");

    // A bad filter, a page position or a bad body is a 400 naming the field at fault.
    for (body, says) in [
        (json!({"name": "x", "query": "ip=300.1.1.1"}), "ip: "),
        (json!({"name": "x", "query": "q=-country%3AIreland"}), "q (-country:Ireland): "),
        (json!({"name": "x", "query": "q=%22open"}), "quote"),
        (json!({"name": "x", "query": "from=1d&to=2d"}), "from: "),
        (json!({"name": "x", "query": "format=csv"}), "unknown parameter \"format\""),
        (json!({"name": "x", "query": "tenant=t1&cursor=c1.2"}), "cursor: "),
        (json!({"name": "x", "query": "q=a%00b"}), "q: "),
        (json!({"name": "", "query": "tenant=t1"}), "name: missing"),
        (json!({"name": "a\nb", "query": ""}), "name: "),
        (json!({"name": "x", "filter": "tenant=t1"}), "unknown field \"filter\""),
        (json!({"name": 7}), "name: must be a string"),
    ] {
        let (code, _, v) = api.save(ALICE, body.clone()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{body}: {v}");
    }
    assert_eq!(api.searches().await.len(), 1, "nothing refused was saved");

    // Without credentials nothing is read or changed.
    for r in [
        api.http.get(api.url("/api/v1/searches")).send().await.unwrap(),
        api.http.get(api.url(&format!("/api/v1/searches/{id}"))).send().await.unwrap(),
        with_json(api.http.post(api.url("/api/v1/searches")), &json!({"name": "n", "query": ""})).send().await.unwrap(),
        api.http.delete(api.url(&format!("/api/v1/searches/{id}"))).send().await.unwrap(),
    ] {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    // The session cookie alone is what a forged cross-site request carries: refused.
    let (bob_cookie, bob_csrf) = log_in(&api, BOB).await;
    let with_session = |csrf: Option<&str>, name: &str| {
        let mut r =
            with_json(api.http.post(api.url("/api/v1/searches")).header("cookie", &bob_cookie), &json!({"name": name}));
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.send()
    };
    assert_eq!(with_session(None, "forged").await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(with_session(Some("0123"), "forged").await.unwrap().status(), StatusCode::FORBIDDEN);
    let r = with_session(Some(&bob_csrf), "Everything, bob's").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let bobs: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!((bobs["owner"].as_str(), bobs["query"].as_str()), (Some("bob"), Some("")));
    let forged = api.http.delete(api.url(&format!("/api/v1/searches/{id}"))).header("cookie", &bob_cookie);
    assert_eq!(forged.send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // A viewer may save and delete their own, not someone else's; an analyst deletes any.
    let (code, body) = api.delete(&id.to_string(), BOB).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("viewer role") && body.contains("alice's"), "{body}");
    let (code, _, bob_two) = api.save(BOB, json!({"name": "Bob's logins", "query": "operation=Login"})).await;
    assert_eq!(code, StatusCode::CREATED, "{bob_two}");
    let bob_id = bobs["id"].as_i64().unwrap().to_string();
    assert_eq!(api.delete(&bob_id, BOB).await.0, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("/api/v1/searches/{bob_id}"), ALICE).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.delete(&bob_id, BOB).await.0, StatusCode::NOT_FOUND, "gone already");
    assert_eq!(api.delete(&bob_two["id"].to_string(), ALICE).await.0, StatusCode::NO_CONTENT);
    assert_eq!(api.delete("not-a-number", ALICE).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/api/v1/searches/-1", ALICE).await.0, StatusCode::NOT_FOUND);
    let left: Vec<i64> = api.searches().await.iter().map(|s| s["id"].as_i64().unwrap()).collect();
    assert_eq!(left, vec![id]);

    // The console: the list, a hostile name inert, and delete buttons only where allowed.
    let (code, _, xss) = api.save(ALICE, json!({"name": NAME_XSS, "query": "q=%3Cscript%3E"})).await;
    assert_eq!(code, StatusCode::CREATED, "{xss}");
    let (code, _, mine) = api.save(BOB, json!({"name": "Mine", "query": "tenant=t1"})).await;
    assert_eq!(code, StatusCode::CREATED, "{mine}");
    let r = api.http.get(api.url("/searches")).header("cookie", &bob_cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for h in ["content-security-policy", "x-frame-options", "x-content-type-options", "cache-control"] {
        assert!(r.headers().contains_key(h), "{h} missing on /searches");
    }
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"searches\"") && html.contains("<a class=\"active\" href=\"/searches\">Searches</a>"));
    assert!(foreign_scripts(&html) == 0 && !html.contains("<img"), "markup from a name ran: {html}");
    assert!(html.contains("&lt;script&gt;alert('name')&lt;/script&gt; &quot;&gt;&lt;img"), "{html}");
    let row = |html: &str, id: &Value| {
        let at = html.find(&format!("id=\"search-{id}\"")).unwrap_or_else(|| panic!("no row for {id}: {html}"));
        html[at..at + html[at..].find("</tr>").unwrap()].to_string()
    };
    let alices = row(&html, &saved["id"]);
    assert!(alices.contains("href=\"/events?category=credential&amp;from=2000-01-01\""), "{alices}");
    assert!(alices.contains("Open") && alices.contains("category credential · from 2000-01-01"), "{alices}");
    assert!(!alices.contains("/delete"), "bob may not delete alice's: {alices}");
    assert!(row(&html, &mine["id"]).contains(&format!("action=\"/searches/{}/delete\"", mine["id"])));
    let (alice_cookie, alice_csrf) = log_in(&api, ALICE).await;
    let (_, html) = api.page("/searches", &alice_cookie).await;
    assert!(row(&html, &mine["id"]).contains("/delete"), "an analyst may delete bob's");

    // The save form: refused without the session's CSRF token, else saved and opened.
    let before = api.searches().await.len();
    let fields = [("name", "Story changes"), ("query", "category=story&limit=5")];
    let r = api.form("/searches", &bob_cookie, &fields).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("CSRF"));
    let r = api.form("/searches", &bob_cookie, &[fields[0], fields[1], ("csrf", "0123")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(api.searches().await.len(), before, "a refused form saved nothing");
    let r = api.form("/searches", &bob_cookie, &[fields[0], fields[1], ("csrf", &bob_csrf)]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "limit is a page position, not a filter");
    assert!(r.text().await.unwrap().contains("limit: "));
    let r = api.form("/searches", &bob_cookie, &[fields[0], ("query", "category=story"), ("csrf", &bob_csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/events?category=story");
    let r = api.form("/searches", &bob_cookie, &[("name", "story CHANGES"), ("query", ""), ("csrf", &bob_csrf)]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"error\"") && page.contains("id=\"save-search\""), "the form again: {page}");
    let r = api.form("/searches", &bob_cookie, &[("name", "n"), ("query", "ip=nope"), ("csrf", &bob_csrf)]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("ip: "));
    let story = api.searches().await.into_iter().find(|s| s["name"] == "Story changes").unwrap();
    assert_eq!(story["owner"], "bob");

    // The delete button: the CSRF token, and the right to delete.
    let path = |s: &Value| format!("/searches/{}/delete", s["id"]);
    assert_eq!(api.form(&path(&story), &bob_cookie, &[]).await.status(), StatusCode::FORBIDDEN);
    let r = api.form(&path(&saved), &bob_cookie, &[("csrf", &bob_csrf)]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "bob's button on alice's search");
    assert!(r.text().await.unwrap().contains("viewer role"));
    let r = api.form(&path(&story), &bob_cookie, &[("csrf", &bob_csrf)]).await;
    assert_eq!((r.status(), r.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/searches"));
    let r = api.form(&path(&mine), &alice_cookie, &[("csrf", &alice_csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "alice deletes bob's");
    let names: Vec<String> = api.searches().await.iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, vec![NAME_XSS.to_string(), "Credential changes".into()], "by name");
    mock.shutdown().await;
}

/// The report's generation time, which two runs never share.
fn without_generation_time(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("enerated ") {
        let cut = at + "enerated ".len();
        out.push_str(&rest[..cut]);
        out.push_str("<time>");
        rest = &rest[(cut + "2024-05-01T00:00:00Z".len()).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_report_is_what_tines_audit_report_prints_for_the_tenant_and_period() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, _daemon, api) = daemon(dir.path(), 132).await;
    let cli = dir.path().join("cli.toml");
    let (from, to) = ("2000-01-01", tines_audit::timeutil::format_rfc3339(tines_audit::timeutil::now_secs() + 3600));
    let download = |format: &'static str| {
        let path =
            format!("/api/v1/reports?tenant={TENANT}&from={from}&to={}&framework=soc2&format={format}", enc(&to));
        let r = api.http.get(api.url(&path)).bearer_auth(BOB).send();
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let disposition = r.headers()["content-disposition"].to_str().unwrap().to_string();
            assert!(disposition.starts_with("attachment; filename=\"tines-audit-report-soc2-"), "{disposition}");
            assert!(disposition.ends_with(&format!(".{format}\"")), "{disposition}");
            without_generation_time(&r.text().await.unwrap())
        }
    };
    let printed = |format: &str| {
        let args = ["report", "--config", cli.to_str().unwrap(), "--framework", "soc2", "--from", from, "--to", &to];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.extend(["--tenant".into(), TENANT.into(), "--format".into(), format.into()]);
        async move {
            let out = run_bin_async(args).await;
            assert!(out.status.success(), "{}", text(&out));
            without_generation_time(&String::from_utf8(out.stdout).unwrap())
        }
    };
    let events = api.total(&format!("tenant={TENANT}&from={from}&to={}", enc(&to))).await;
    assert!(events > 0);
    for format in ["md", "html", "csv"] {
        // The daemon may still sign a checkpoint: compare once the journal held still around
        // the command's run (two downloads alike on either side of it).
        let end = std::time::Instant::now() + Duration::from_secs(60);
        let (served, cli_text) = loop {
            let before = download(format).await;
            let cli_text = printed(format).await;
            if download(format).await == before {
                break (before, cli_text);
            }
            assert!(std::time::Instant::now() < end, "the journal never held still");
        };
        let shape = match format {
            "md" => {
                served.starts_with("# SOC 2") && served.contains(&format!("\n\n{events} audit events in the period."))
            }
            "html" => served.starts_with("<!doctype html>") && served.contains("SOC 2"),
            _ => served.starts_with("section,controls,") && served.lines().count() > 1,
        };
        assert!(shape, "{format}: {served}");
        assert_eq!(served, cli_text, "{format}");
    }

    // The console's own route downloads the same report with a session.
    let (cookie, _) = log_in(&api, BOB).await;
    let path = format!("/reports?tenant={TENANT}&from={from}&to={}&framework=soc2&format=md", enc(&to));
    let r = api.http.get(api.url(&path)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert_eq!(without_generation_time(&r.text().await.unwrap()), printed("md").await);
    let (code, form) = api.page("/reports", &cookie).await;
    assert_eq!(code, StatusCode::OK);
    assert!(form.contains("id=\"report-link\"") && form.contains("id=\"report-download\""), "{form}");

    // A bad period or an unknown tenant is a 400 that names the parameter, on both routes.
    for (query, says) in [
        (format!("tenant=nope&from={from}&framework=soc2"), "tenant: "),
        ("tenant=t1&from=2024-06-01&to=2024-05-01&framework=soc2".into(), "from: "),
        ("tenant=t1&from=someday&framework=soc2".into(), "from: "),
        ("tenant=t1&from=30d&to=2024-13-01&framework=soc2".into(), "to: "),
        ("tenant=t1&framework=soc2".into(), "from: missing"),
        ("tenant=t1&from=30d".into(), "framework: missing"),
        ("tenant=t1&from=30d&framework=soc2&format=pdf".into(), "format: "),
        ("tenant=t1&from=30d&framework=soc2&user=ann".into(), "user: "),
    ] {
        let (code, v) = api.get(&format!("/api/v1/reports?{query}"), ALICE).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert!(v["error"].as_str().unwrap().starts_with(says), "{query}: {v}");
        let (code, html) = api.page(&format!("/reports?{query}"), &cookie).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}");
        assert!(html.contains("id=\"error\"") && html.contains("id=\"report-link\""), "{query}: {html}");
    }
    let r = api.http.get(api.url(&format!("/api/v1/reports?from={from}&framework=soc2"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    mock.shutdown().await;
}
