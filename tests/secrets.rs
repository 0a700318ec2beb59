//! No secret ever leaves the process: a full run with faults, every sink kind
//! and DEBUG logs, then every log line, metric, console page and command
//! output is searched for the configured keys and tokens.

mod common;
mod common_http;

use std::process::{Command, Stdio};
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
    let mut seen = String::new();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for (path, auth) in [("/metrics", true), ("/readyz", false), ("/", true), ("/login", false), ("/nope", true)] {
        let mut r = client.get(format!("{base}{path}"));
        if auth {
            r = r.bearer_auth(WEB_TOKEN);
        }
        let resp = r.send().await.unwrap();
        seen.push_str(&format!("{:?}", resp.headers()));
        seen.push_str(&resp.text().await.unwrap());
    }
    let bad_login = client.post(format!("{base}/login")).form(&[("token", "wrong")]).send().await.unwrap();
    seen.push_str(&bad_login.text().await.unwrap());
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
