//! No secret ever leaves the process: a full run with faults, every sink kind
//! and DEBUG logs, then every log line, metric, console page and command
//! output is searched for the configured keys and tokens. Then the ways
//! secrets leaked before: an API (or proxy) answering 400 with the request
//! echoed, alert webhooks that fail, config syntax errors, and every console
//! page and API route with and without the token.

mod common;
mod common_http;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tines_audit::mock::{Faults, MockConfig, MockKey};

const API_KEY: &str = "tines-api-key-SECRET-7f3a9c";
const WEB_TOKEN: &str = "web-token-SECRET-0b1c2d3e4f";
const PSEUDO_KEY: &str = "pseudonym-key-SECRET-8899aa";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_or_token_appears_in_logs_metrics_pages_or_output() {
    let mock = start_mock(MockConfig {
        history: 2_000,
        live_rate: 20.0,
        keys: vec![MockKey { key: API_KEY.into(), can_read_audit_logs: true }],
        faults: Faults {
            rate_429: 0.03,
            rate_5xx: 0.03,
            rate_truncated: 0.02,
            rate_reset: 0.02,
            fault_retry_after_secs: 0,
            ..Default::default()
        },
        seed: 71,
        ..Default::default()
    })
    .await;
    let hec = common_http::Hec::start().await;
    let dd = common_http::Datadog::start().await;
    let hook = common_http::Hook::start().await;
    hec.log().fail_next = 3;
    let dir = tempfile::tempdir().unwrap();
    let port = common::rsyslog::free_port();
    let sinks = format!(
        r#"[[sinks]]
type = "splunk_hec"
name = "splunk"
endpoint = "{hec}"
token = "${{HEC_TOKEN}}"
[[sinks]]
type = "datadog"
name = "dd"
api_key = "${{DD_KEY}}"
endpoint = "{dd}"
[[sinks]]
type = "webhook"
name = "hook"
url = "{hook}"
[sinks.headers]
{hook_header} = "${{HOOK_SECRET}}"
[[sinks]]
type = "file"
name = "archive"
path = "{out}"
format = "ecs"
[sinks.pseudonymize]
key = "${{PSEUDO_KEY}}"
[web]
bind = "127.0.0.1:{port}"
token_env = "WEB_TOKEN"
"#,
        hec = hec.url,
        dd = dd.url,
        hook = hook.url,
        hook_header = common_http::HOOK_HEADER,
        out = dir.path().join("out/a.ndjson").display()
    );
    let cfg = write_config(dir.path(), &mock.base_url(), "interval = \"1s\"", &sinks);
    let env = [
        ("TEST_TINES_KEY", API_KEY),
        ("HEC_TOKEN", common_http::HEC_TOKEN),
        ("DD_KEY", common_http::DD_KEY),
        ("WEB_TOKEN", WEB_TOKEN),
        ("PSEUDO_KEY", PSEUDO_KEY),
        ("HOOK_SECRET", common_http::HOOK_SECRET),
        ("TINES_AUDIT_LOG", "trace"),
    ];
    let log = dir.path().join("run.log");
    let mut child = Command::new(BIN);
    child.args(["run", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        child.env(k, v);
    }
    let mut child = child.spawn().unwrap();
    let h = hec.clone();
    wait_until("events to reach every HTTP sink", Duration::from_secs(60), || {
        h.log().envelopes.len() >= 2_000 && dd.log().ids().len() >= 2_000 && hook.log().ids().len() >= 2_000
    })
    .await;
    let mut seen = fetch_every_route(&format!("http://127.0.0.1:{port}"), WEB_TOKEN).await.all;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    seen.push_str(&std::fs::read_to_string(&log).unwrap());
    // Commands a user runs: check (which contacts every tenant and sink), state show.
    for args in [vec!["check", "--config"], vec!["state", "show", "--config"]] {
        let mut c = Command::new(BIN);
        c.args(&args).arg(&cfg);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        seen.push_str(&text(&out));
    }
    // The file sink was pseudonymised: the key is not in it either.
    seen.push_str(&std::fs::read_to_string(dir.path().join("out/a.ndjson")).unwrap());
    assert!(seen.len() > 10_000, "enough was captured to mean something ({} bytes)", seen.len());
    assert!(seen.contains("DEBUG") || seen.contains("TRACE"), "debug logging was on");
    for secret in
        [API_KEY, WEB_TOKEN, common_http::HOOK_SECRET, PSEUDO_KEY, common_http::HEC_TOKEN, common_http::DD_KEY]
    {
        assert!(!seen.contains(secret), "secret {secret:?} leaked; context: {}", {
            let i = seen.find(secret).unwrap();
            &seen[i.saturating_sub(200)..(i + 100).min(seen.len())]
        });
    }
    mock.shutdown().await;
}

// ------------------------------------------------------------ every route

/// Every route of the service, with requests that reach its error paths too.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/"),
    ("GET", "/events"),
    ("GET", "/events?tenant=t1&q=error"),
    ("GET", "/events?bogus=1"),
    ("GET", "/events?alert=nope"),
    ("GET", "/alerts"),
    ("GET", "/alerts?status=bogus"),
    ("GET", "/alerts?group=true"),
    ("GET", "/alerts/{id}"),
    ("GET", "/alerts/nope%3A1"),
    ("POST", "/alerts/{id}/triage"),
    ("GET", "/events/{seq}"),
    ("GET", "/events/1"),
    ("GET", "/events/x"),
    ("GET", "/searches"),
    ("POST", "/searches"),
    ("POST", "/searches/{id}/delete"),
    ("GET", "/reports"),
    ("GET", "/reports?tenant=nope&from=1d&framework=soc2"),
    ("GET", "/status"),
    ("GET", "/posture"),
    ("GET", "/posture?at=bogus"),
    ("GET", "/api/v1/posture"),
    ("GET", "/api/v1/posture?tenant=nope"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/events?limit=0"),
    ("GET", "/api/v1/events/facets?field=user"),
    ("GET", "/api/v1/events/facets?field=nope&q=%22open"),
    ("GET", "/api/v1/events/export?format=csv"),
    ("GET", "/api/v1/events/export?format=ndjson&q=error"),
    ("GET", "/api/v1/events/export?format=xml"),
    ("GET", "/api/v1/events/{seq}"),
    ("GET", "/api/v1/events/1"),
    ("GET", "/api/v1/events/0"),
    ("GET", "/api/v1/histogram"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/alerts?group=true"),
    ("GET", "/api/v1/alerts?status=bogus"),
    ("GET", "/api/v1/alerts/{id}"),
    ("GET", "/api/v1/alerts/{id}/events"),
    ("PATCH", "/api/v1/alerts/{id}"),
    ("GET", "/api/v1/rules/{id}"),
    ("GET", "/api/v1/searches"),
    ("POST", "/api/v1/searches"),
    ("GET", "/api/v1/searches/{id}"),
    ("DELETE", "/api/v1/searches/{id}"),
    ("GET", "/api/v1/reports"),
    ("GET", "/api/v1/reports?from=1d&framework=soc2&format=md"),
    ("GET", "/nope"),
];

#[test]
fn the_route_list_covers_every_route_of_the_router() {
    let router = include_str!("../src/web/mod.rs");
    let routes: Vec<&str> = router.split(".route(\"").skip(1).map(|s| &s[..s.find('"').unwrap()]).collect();
    assert!(routes.len() >= 10, "{routes:?}");
    for r in routes {
        assert!(
            ROUTES.iter().any(|(_, p)| p.split('?').next() == Some(r)),
            "route {r} is not fetched by the secrets tests"
        );
    }
}

/// What the service answered on every route.
struct Fetched {
    /// Every status line, header and body, with and without the token.
    all: String,
    /// `/readyz` without the token.
    readyz_anonymous: (u16, String),
    /// `/readyz` and `/status` with the token.
    readyz: (u16, String),
    status_page: String,
}

async fn fetch_every_route(base: &str, token: &str) -> Fetched {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut all = String::new();
    let (mut readyz_anonymous, mut readyz, mut status_page) = ((0, String::new()), (0, String::new()), String::new());
    for with_token in [false, true] {
        for (method, path) in ROUTES {
            let url = format!("{base}{path}");
            let mut r = match *method {
                "POST" if *path == "/login" => {
                    client.post(&url).form(&[("token", if with_token { token } else { "wrong-token-0123456789" })])
                }
                "POST" => client.post(&url),
                "PATCH" => client.patch(&url).body(r#"{"status": "closed", "note": "secrets test"}"#),
                "DELETE" => client.delete(&url),
                _ => client.get(&url),
            };
            if with_token {
                r = r.bearer_auth(token);
            }
            let resp = r.send().await.unwrap();
            let code = resp.status().as_u16();
            all.push_str(&format!("{method} {path} {code} {:?}\n", resp.headers()));
            let body = resp.text().await.unwrap();
            all.push_str(&body);
            match (*path, with_token) {
                ("/readyz", false) => readyz_anonymous = (code, body),
                ("/readyz", true) => readyz = (code, body),
                ("/status", true) => status_page = body,
                _ => {}
            }
        }
    }
    Fetched { all, readyz_anonymous, readyz, status_page }
}

fn assert_no_secret(seen: &str, secrets: &[&str]) {
    for secret in secrets {
        if let Some(i) = seen.find(secret) {
            panic!(
                "secret {secret:?} leaked ({} times); context: {}",
                seen.matches(secret).count(),
                &seen[i.saturating_sub(300)..(i + 100).min(seen.len())]
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn command(args: &[&str], cfg: &std::path::Path, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).arg("--config").arg(cfg).env_remove("TINES_API_KEY").env_remove("TINES_AUDIT_WEB_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn output(args: &[&str], cfg: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    command(args, cfg, env).stdin(Stdio::null()).output().unwrap()
}

async fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let mut exited = None;
    wait_until("the daemon to exit", Duration::from_secs(30), || {
        exited = child.try_wait().unwrap();
        exited.is_some()
    })
    .await;
}

// ------------------------------------------------- 400 with the request echoed

/// An API (or a proxy in front of it) that answers every request with 400 and
/// echoes it: the key bare, then as JSON with the headers, then the raw request.
async fn echo_400_server() -> String {
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let line = format!("{} {} {:?}", req.method(), req.uri(), req.version());
        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let token = auth.strip_prefix("Bearer ").unwrap_or(&auth).to_string();
        let headers: serde_json::Map<String, serde_json::Value> =
            req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into())).collect();
        let first = serde_json::json!({"error": format!("invalid token {token}"), "request": line, "headers": headers});
        let mut dump = format!("{first}\n{line}\r\n");
        for (k, v) in req.headers() {
            dump.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
        }
        (axum::http::StatusCode::BAD_REQUEST, dump)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_echoed_in_a_400_body_leaked_into_errors_logs_the_status_page_and_readyz() {
    let api = echo_400_server().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        &api,
        "interval = \"1s\"",
        &format!(
            "[web]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"WEB_TOKEN\"\n[health]\ntenant_stale_after = \"1s\"\n"
        ),
    );
    let env = [("TEST_TINES_KEY", API_KEY), ("WEB_TOKEN", WEB_TOKEN), ("TINES_AUDIT_LOG", "debug")];
    let mut seen = String::new();
    // One-shot commands, text and JSON logs: each says the API refused the query, and how.
    for args in
        [vec!["collect"], vec!["collect", "--log-format", "json"], vec!["check"], vec!["backfill", "--since", "500d"]]
    {
        let out = output(&args, &cfg, &env);
        let t = text(&out);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {t}");
        assert!(t.contains("(400)") && t.contains("invalid token"), "{args:?} says what the API answered: {t}");
        seen.push_str(&t);
    }
    // The daemon: WARN logs, the status page and /readyz.
    let log = dir.path().join("run.log");
    let child = command(&["run", "--log-format", "json"], &cfg, &env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = client.get(format!("{base}/readyz")).bearer_auth(WEB_TOKEN).send().await;
        if let Ok(r) = r
            && r.status().as_u16() == 503
            && r.text().await.unwrap_or_default().contains("(400)")
        {
            break;
        }
        assert!(std::time::Instant::now() < end, "the daemon never became not ready with the 400 as the reason");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fetched = fetch_every_route(&base, WEB_TOKEN).await;
    seen.push_str(&fetched.all);
    stop(child).await;
    let logs = std::fs::read_to_string(&log).unwrap();
    seen.push_str(&logs);
    assert_no_secret(&seen, &[API_KEY, WEB_TOKEN]);
    // What is still said, and to whom.
    assert_eq!(fetched.readyz_anonymous, (503, "not ready\n".to_string()), "no reasons without the token");
    assert!(
        fetched.readyz.1.contains("tenant t1 not synced") && fetched.readyz.1.contains("(400)"),
        "{}",
        fetched.readyz.1
    );
    assert!(fetched.status_page.contains("refused the query (400)"), "the status page shows the error");
    assert!(fetched.status_page.contains("invalid token **REDACTED**"), "masked where it was");
    assert!(logs.lines().any(|l| l.contains("\"WARN\"") && l.contains("(400)")), "a WARN line per failed sync: {logs}");
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

// ------------------------------------------------------- alert webhook URLs

const HOOK_PATH_SECRET: &str = "slack-path-SECRET-5e6f7a";
const DEAD_PATH_SECRET: &str = "dead-hook-SECRET-1a2b3c";

/// A webhook receiver that always fails (500), echoing the path it was posted to.
async fn failing_receiver() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("no_service for {}", req.uri()))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_webhook_urls_leaked_through_delivery_errors() {
    let mock = start_mock(MockConfig {
        history: 200,
        seed: 41,
        scenarios: true,
        keys: vec![MockKey { key: API_KEY.into(), can_read_audit_logs: true }],
        ..Default::default()
    })
    .await;
    let (hook, hits) = failing_receiver().await;
    let failing = format!("{hook}/services/T0A1B2C3/B0D4E5F6/{HOOK_PATH_SECRET}");
    let dead = format!("http://127.0.0.1:{}/services/T9/B9/{DEAD_PATH_SECRET}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let outputs = format!(
        "interval = \"1s\"\n[detect]\nalert_lookback = \"10m\"\n\
         [[detect.outputs]]\ntype = \"webhook\"\nurl = \"{failing}\"\n\
         [[detect.outputs]]\ntype = \"webhook\"\nname = \"slack\"\nformat = \"slack\"\nurl = \"${{SLACK_WEBHOOK}}\"\n"
    );
    let web = format!("[web]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"WEB_TOKEN\"\n");
    let cfg = write_config(dir.path(), &mock.base_url(), &outputs, &web);
    let env = [
        ("TEST_TINES_KEY", API_KEY),
        ("WEB_TOKEN", WEB_TOKEN),
        ("SLACK_WEBHOOK", dead.as_str()),
        ("TINES_AUDIT_LOG", "debug"),
    ];
    let log = dir.path().join("run.log");
    let child = command(&["run"], &cfg, &env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let l = log.clone();
    wait_until("both alert webhooks to fail and the failures to be logged", Duration::from_secs(90), || {
        let logs = std::fs::read_to_string(&l).unwrap_or_default();
        assert!(!logs.contains("panicked"), "{logs}");
        let failed = |output: &str| logs.lines().any(|x| x.contains("alert delivery failed") && x.contains(output));
        hits.load(Ordering::SeqCst) > 0 && failed("alerts>webhook:127.0.0.1") && failed("alerts>slack")
    })
    .await;
    let mut seen = fetch_every_route(&format!("http://127.0.0.1:{port}"), WEB_TOKEN).await.all;
    stop(child).await;
    let logs = std::fs::read_to_string(&log).unwrap();
    seen.push_str(&logs);
    for args in [vec!["check"], vec!["state", "show"], vec!["rules", "list"]] {
        seen.push_str(&text(&output(&args, &cfg, &env)));
    }
    // A webhook URL the config refuses is not quoted back either.
    let bad = write_config(
        dir.path(),
        &mock.base_url(),
        &format!(
            "[detect]\n[[detect.outputs]]\ntype = \"webhook\"\nurl = \"ftp://hooks.example/x/{HOOK_PATH_SECRET}\"\n"
        ),
        "",
    );
    let out = output(&["check", "--offline"], &bad, &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    seen.push_str(&text(&out));
    assert_no_secret(&seen, &[HOOK_PATH_SECRET, DEAD_PATH_SECRET, API_KEY, WEB_TOKEN]);
    // The messages still say which destination failed, by scheme and host.
    let dead_port = dead.split(':').nth(2).unwrap().split('/').next().unwrap();
    assert!(logs.contains(&format!("webhook {hook} answered 500")), "{logs}");
    assert!(logs.contains(&format!("webhook http://127.0.0.1:{dead_port} unreachable")), "{logs}");
    assert!(text(&out).contains("ftp://"), "{}", text(&out));
    mock.shutdown().await;
}

// ------------------------------------------------------- config syntax errors

#[test]
fn config_syntax_error_echoed_the_offending_line_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let broken = [
        // An unclosed string, a stray word after the value, a bare value, a key twice.
        format!("[[tenants]]\ndomain = \"acme.tines.com\"\napi_key = \"{API_KEY}\n"),
        format!("[[tenants]]\ndomain = \"acme.tines.com\"\napi_key = \"{API_KEY}\" # ok\nsince = 30d {API_KEY}\n"),
        format!("[web]\ntoken = {WEB_TOKEN}\n"),
        format!("[web]\ntoken = \"{WEB_TOKEN}\"\ntoken = \"{WEB_TOKEN}\"\n"),
        format!("[collect]\nper_page = \"{API_KEY}\"\n"),
    ];
    for (i, text_) in broken.iter().enumerate() {
        let cfg = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&cfg, text_).unwrap();
        for args in [vec!["check", "--offline"], vec!["collect"], vec!["run"], vec!["state", "show"]] {
            let out = output(&args, &cfg, &[("TINES_AUDIT_LOG", "trace")]);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?} on config {i}: {t}");
            assert!(t.contains(&format!("config {}", cfg.display())), "names the file: {t}");
            assert_no_secret(&t, &[API_KEY, WEB_TOKEN, "SECRET"]);
            assert!(i == 4 || t.contains(": line "), "says where: {t}");
        }
    }
}
