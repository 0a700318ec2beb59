//! Shared helpers for the integration tests: an emulator in the test process,
//! the real binary in a fresh data directory, and journal/file checks.
#![allow(dead_code)]

pub mod rsyslog;
pub mod webdriver;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tines_audit::journal::Journal;
use tines_audit::mock::{DEMO_KEY, MockConfig, MockServer};

pub const BIN: &str = env!("CARGO_BIN_EXE_tines-audit");
pub const TENANT: &str = "t1";

pub async fn start_mock(config: MockConfig) -> MockServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    MockServer::start(config, listener).await.unwrap()
}

/// A config file for one tenant on `base_url`, with test-friendly collection settings.
pub fn write_config(dir: &Path, base_url: &str, collect_extra: &str, sinks: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        r#"
data_dir = "{data}"
[collect]
requests_per_minute = 0
settle_delay = "1s"
overlap = "10s"
{attempts}
{collect_extra}
[[tenants]]
name = "{TENANT}"
domain = "{base_url}"
api_key_env = "TEST_TINES_KEY"
since = "400d"
{sinks}
"#,
        data = dir.join("data").display(),
        attempts = if collect_extra.contains("max_attempts") { "" } else { "max_attempts = 10" },
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub fn file_sink(path: &Path) -> String {
    format!("[[sinks]]\ntype = \"file\"\nname = \"archive\"\npath = \"{}\"\n", path.display())
}

/// Runs the binary to completion with the demo key in the environment.
pub fn run_bin(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("TEST_TINES_KEY", DEMO_KEY)
        .env("TINES_API_KEY", DEMO_KEY)
        .env_remove("TINES_BASE_URL")
        .env_remove("TINES_AUDIT_CONFIG")
        .env_remove("TINES_AUDIT_DATA_DIR")
        .env_remove("TINES_AUDIT_JOURNAL_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Same, off the async threads (the emulator runs on them).
pub async fn run_bin_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || run_bin(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Ids in the journal of `data_dir` for the test tenant.
pub fn journal_ids(data_dir: &Path) -> Vec<i64> {
    match Journal::open_shared(data_dir) {
        Ok(j) => j.ids(TENANT).unwrap(),
        Err(_) => Vec::new(),
    }
}

pub fn journal_count(data_dir: &Path) -> i64 {
    Journal::open_shared(data_dir).and_then(|j| j.count_events(None)).unwrap_or(0)
}

/// The emulator's ids a collector can store: every one but those sent without an `id`.
pub fn mock_ids(mock: &MockServer) -> Vec<i64> {
    let without: std::collections::HashSet<u64> = mock.ids_without_id().into_iter().collect();
    mock.ids().into_iter().filter(|i| !without.contains(i)).map(|i| i as i64).collect()
}

/// Asserts the journal holds exactly the emulator's ids (each once: the
/// journal's unique index makes a double impossible, so equality of the
/// sorted lists is the whole check).
pub fn assert_exactly_once(data_dir: &Path, mock: &MockServer) {
    let got = journal_ids(data_dir);
    let want = mock_ids(mock);
    if got != want {
        let g: std::collections::HashSet<_> = got.iter().collect();
        let missing: Vec<_> = want.iter().filter(|i| !g.contains(i)).take(10).collect();
        panic!("journal has {} ids, emulator {}; first missing: {missing:?}", got.len(), want.len());
    }
}

/// Every `(tenant_id, id)` in the NDJSON files beside `path`, with how often it occurs.
pub fn file_sink_counts(path: &Path) -> HashMap<(i64, i64), u32> {
    let mut counts = HashMap::new();
    let Ok(entries) = std::fs::read_dir(path.parent().unwrap()) else { return counts };
    for e in entries {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ndjson") {
            // A running sink may be appending or rotating: only whole lines of files still there count.
            let Ok(text) = std::fs::read(&p) else { continue };
            let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            for line in std::str::from_utf8(&text[..whole]).unwrap().lines() {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
                *counts.entry((v["tenant_id"].as_i64().unwrap(), v["id"].as_i64().unwrap())).or_default() += 1;
            }
        }
    }
    counts
}

pub fn assert_file_exactly_once(path: &Path, mock: &MockServer) {
    for e in std::fs::read_dir(path.parent().unwrap()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ndjson") {
            let text = std::fs::read(&p).unwrap();
            assert!(text.is_empty() || text.ends_with(b"\n"), "{} ends in a partial line", p.display());
        }
    }
    let counts = file_sink_counts(path);
    let doubled: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).map(|(i, _)| *i).take(10).collect();
    assert!(doubled.is_empty(), "ids written more than once: {doubled:?}");
    let want = mock_ids(mock);
    let ids: std::collections::HashSet<i64> = counts.keys().map(|k| k.1).collect();
    let missing: Vec<_> = want.iter().filter(|i| !ids.contains(i)).take(10).collect();
    assert!(missing.is_empty(), "ids missing from the file sink: {missing:?}");
    assert_eq!(counts.len(), want.len());
}

/// Polls `cond` until it holds or `deadline` passes (then panics with `what`).
pub async fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until wall-clock time is past `t` (unix seconds): the collector's
/// settle delay is measured against the clock, so this is the condition.
pub async fn wait_until_clock_past(t: i64) {
    wait_until("the clock to pass the settle point", Duration::from_secs(30), || tines_audit::timeutil::now_secs() > t)
        .await;
}

/// Waits until the emulator's newest record is older than the test configs' 1 s settle delay
/// by the API's clock as the collector can know it: its `Date` header has whole seconds, so
/// the collector's idea of the API's "now" may be up to a second behind (never ahead).
pub async fn wait_settled(mock: &MockServer) {
    if let Some(newest) = mock.newest_created_at() {
        wait_until_clock_past(newest + 2 - (mock.now() - tines_audit::timeutil::now_secs())).await;
    }
}

/// Starts `tines-audit run --config cfg` with the demo key as `TEST_TINES_KEY` and
/// the extra environment, its logs going to `log`.
/// A daemon stopped (SIGTERM, then waited for) when it goes out of scope, also when an
/// assertion fails first.
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

pub fn spawn_run(cfg: &Path, log: &Path, env: &[(&str, &str)]) -> std::process::Child {
    let mut c = Command::new(BIN);
    c.args(["run", "--config"])
        .arg(cfg)
        .env("TEST_TINES_KEY", DEMO_KEY)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// A syslog sink (TCP, JSON) section named `name` towards `port` on loopback.
pub fn syslog_sink(name: &str, port: u16) -> String {
    format!("[[sinks]]\ntype = \"syslog\"\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\n")
}

/// `<script` tags on a console page other than the console's own (inline, allowed by its
/// hash): any is markup from data that reached the page unescaped.
pub fn foreign_scripts(html: &str) -> usize {
    html.matches("<script").count() - html.matches("<script>// The console's one script").count()
}
