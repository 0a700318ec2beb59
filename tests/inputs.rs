//! Input that must be refused rather than stored (times, operation names,
//! tenant addresses, API keys), and the read-only commands as a reader meets
//! them: hostile record text, a journal it may not write, a config without
//! keys, a closed pipe, NO_COLOR. Each test is named after the bug it pins.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use tines_audit::journal::{Journal, Record, WindowCommit};
use tines_audit::mock::{DEMO_KEY, MockConfig};

/// Runs the binary with exactly this environment (beside PATH).
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn assert_exit(out: &Output, code: i32, needle: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    assert!(all.contains(needle), "expected {needle:?} in:\n{all}");
}

/// `collect --since SINCE` on a tenant that is never contacted: the value must be refused first.
fn collect_since(data: &Path, since: &str) -> Output {
    let d = data.to_str().unwrap();
    run_bin(&["collect", "--no-progress", "--tenant", "http://127.0.0.1:9", "--data-dir", d, "--since", since])
}

#[test]
fn since_of_ten_quintillion_seconds_is_refused_instead_of_a_cursor_in_year_267666666212() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = collect_since(&data, "10000000000000000000s");
    assert_exit(&out, 2, "longer than 100 years");
    assert!(!data.join("journal.db").exists(), "a journal (and a cursor) was written");
    let out = collect_since(&data, "99999999999999999999999999s");
    assert_exit(&out, 2, "longer than 100 years");
}

#[test]
fn since_9999999999999d_is_refused_instead_of_failing_every_run_with_exit_7() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert_exit(&collect_since(&data, "9999999999999d"), 2, "longer than 100 years");
    // Within 100 years but before 1970.
    assert_exit(&collect_since(&data, "36000d"), 2, "before 1970");
    assert!(!data.join("journal.db").exists());
}

#[test]
fn february_30th_is_refused_instead_of_read_as_march_2nd() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert_exit(&collect_since(&data, "2026-02-30T00:00:00Z"), 2, "the date must exist");
    let d = data.to_str().unwrap();
    let out = run_bin(&[
        "backfill",
        "--no-progress",
        "--tenant",
        "http://127.0.0.1:9",
        "--data-dir",
        d,
        "--since",
        "2024-02-30T00:00:00Z",
        "--until",
        "2024-03-03T00:00:00Z",
    ]);
    assert_exit(&out, 2, "the date must exist");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{d}\"\n[[tenants]]\ndomain = \"http://127.0.0.1:9\"\napi_key_env = \"TEST_TINES_KEY\"\nsince = \"2026-02-30T00:00:00Z\"\n"
        ),
    )
    .unwrap();
    assert_exit(&run_bin(&["check", "--offline", "--config", cfg.to_str().unwrap()]), 2, "the date must exist");
    assert_exit(&run_bin(&["search", "--data-dir", d, "--from", "2026-02-30"]), 2, "invalid time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_operation_is_accepted_and_the_placeholder_collects_the_real_scim_events() {
    // Every operation name appears in a history as long as the catalog.
    let mock = start_mock(MockConfig { history: 1_000, seed: 9, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap().to_string();
    let url = mock.base_url();
    let scim_in_mock = {
        let c = reqwest::Client::new();
        let q = format!("{url}/api/v1/audit_logs?per_page=500&after=2000-01-01T00:00:00Z");
        let mut n = 0;
        for page in 1..=2 {
            let body =
                c.get(format!("{q}&page={page}")).bearer_auth(DEMO_KEY).send().await.unwrap().text().await.unwrap();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            n += v["audit_logs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["operation_name"].as_str().unwrap().starts_with("SCIM/2.0/User/"))
                .count();
        }
        n
    };
    assert!(scim_in_mock >= 4, "the emulator serves every SCIM name");
    // Refused before ("did you mean SCIM/2.0/User/{operation}?").
    let args: Vec<String> = ["collect", "--no-progress", "--tenant", &url, "--data-dir", &d, "--since", "400d"]
        .into_iter()
        .map(String::from)
        .chain(["--operation".into(), "SCIM/2.0/User/{operation}".into()])
        .collect();
    let out = run_bin_async(args).await;
    assert!(out.status.success(), "{}", text(&out));
    let j = Journal::open_read_only(&data).unwrap();
    assert_eq!(j.count_events(None).unwrap() as usize, scim_in_mock, "the pattern collects every SCIM event");
    drop(j);
    let out = run_bin_async(
        ["search", "--data-dir", &d, "--operation", "SCIM/2.0/User/create", "--format", "ndjson", "--all"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let lines = String::from_utf8(out.stdout).unwrap();
    assert!(lines.lines().count() >= 1);
    assert!(lines.lines().all(|l| l.contains(r#""operation_name":"SCIM/2.0/User/create""#)), "{lines}");
    let out = run_bin_async(["operations", "scim"].map(String::from).to_vec()).await;
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.contains("SCIM/2.0/User/destroy") && !listed.contains('{'), "{listed}");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_in_tenant_url_is_not_printed_in_the_404_error() {
    // A web server that is not a Tines tenant: every path is 404.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, axum::Router::new()).await });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data").to_str().unwrap().to_string();
    let tenant = format!("http://audit:hunter2-pw@127.0.0.1:{port}/");
    let out =
        run_bin_async(["collect", "--no-progress", "--tenant", &tenant, "--data-dir", &d].map(String::from).to_vec())
            .await;
    let all = text(&out);
    assert!(!all.contains("hunter2-pw"), "the password was printed:\n{all}");
    assert_exit(&out, 2, "user name or password");
    server.abort();
}

#[test]
fn api_key_with_a_newline_exits_2_instead_of_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let out = run_env(
        &["collect", "--no-progress", "--tenant", "http://127.0.0.1:9", "--data-dir", d.to_str().unwrap()],
        &[("TINES_API_KEY", "first-half\nsecond-half")],
    );
    assert_exit(&out, 2, "line break");
    assert!(!text(&out).contains("first-half"), "{}", text(&out));
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "first-half\r\nsecond-half\n").unwrap();
    let out = run_env(
        &[
            "collect",
            "--no-progress",
            "--tenant",
            "http://127.0.0.1:9",
            "--data-dir",
            d.to_str().unwrap(),
            "--api-key-file",
            key_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_exit(&out, 2, "line break");
}

const T0: i64 = 1_714_521_600; // 2024-05-01T00:00:00Z

/// A journal written through the library (so its search index is behind, as when a
/// daemon has not indexed yet): `n` ordinary events, one with hostile text and one
/// whose operation name is not in the catalog.
fn make_journal(data: &Path, n: i64) {
    let j = Journal::open(data).unwrap();
    j.start_progress(TENANT, "cursor", T0, None, "").unwrap();
    let mut raws = Vec::new();
    for i in 1..=n {
        let (op, email, name) = match i {
            1 => ("CredentialDestruction", "evil\u{1b}]0;pwned\u{7}@x.example", "Mal\u{1b}[2J\rlory\u{9b}31m"),
            2 => ("WidgetTelemetryToggle", "ann@acme.example", "Ann"),
            _ => ("ActionRun", "ann@acme.example", "Ann"),
        };
        let raw = serde_json::json!({
            "created_at": tines_audit::timeutil::format_rfc3339(T0 + i),
            "id": i, "inputs": {"note": "padding to make each line a few hundred bytes long ".repeat(4)},
            "operation_name": op, "request_ip": "86.40.0.10", "request_user_agent": "test",
            "tenant_id": 1, "updated_at": tines_audit::timeutil::format_rfc3339(T0 + i),
            "user_email": email, "user_id": 7, "user_name": name,
        })
        .to_string();
        raws.push((i, op, email, raw));
    }
    let recs = raws.iter().map(|(i, op, email, raw)| Record {
        id: *i,
        created_at: T0 + i,
        operation_name: op,
        user_id: Some(7),
        user_email: Some(email),
        request_ip: Some("86.40.0.10"),
        raw,
    });
    let commit = WindowCommit { tenant: TENANT, job: "cursor", from: T0, to: T0 + n + 1, fetched: n as u64 };
    j.commit_window(&commit, recs).unwrap();
}

#[test]
fn search_table_and_csv_pass_no_terminal_escape_sequences_from_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_journal(&data, 3);
    let d = data.to_str().unwrap();
    for format in ["table", "csv"] {
        let out = run_bin(&["search", "--data-dir", d, "--format", format, "--from", "2024-01-01"]);
        assert!(out.status.success(), "{}", text(&out));
        let s = String::from_utf8(out.stdout).unwrap();
        assert!(s.contains("evil"), "{format}: the hostile event is listed:\n{s}");
        for c in ['\u{1b}', '\u{7}', '\r', '\u{9b}'] {
            assert!(!s.contains(c), "{format}: {c:?} reached the terminal:\n{s:?}");
        }
        assert!(s.contains("\\u{1b}"), "{format}: the escape is shown, not dropped:\n{s}");
    }
}

#[test]
fn operation_filter_accepts_a_name_in_the_journal_that_the_catalog_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_journal(&data, 3);
    let d = data.to_str().unwrap();
    let out = run_bin(&["search", "--data-dir", d, "--operation", "WidgetTelemetryToggle", "--format", "ndjson"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8(out.stdout).unwrap();
    assert_eq!(s.lines().count(), 1, "{s}");
    assert_exit(
        &run_bin(&["search", "--data-dir", d, "--operation", "NoSuchOperationAnywhere"]),
        2,
        "unknown operation",
    );
}

/// The journal's data: the database file and any write-ahead log with content (the
/// `-shm` index a reader may create holds no data).
fn snapshot(data: &Path) -> Vec<(String, Vec<u8>, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n == "journal.db" || n == "journal.db-wal"))
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap(), m.modified().unwrap())
        })
        .filter(|(name, bytes, _)| name == "journal.db" || !bytes.is_empty())
        .collect();
    files.sort();
    files
}

fn chmod_tree(dir: &Path, dir_mode: u32, file_mode: u32) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(file_mode)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
}

#[test]
fn search_against_a_read_only_journal_neither_fails_nor_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_journal(&data, 3);
    let d = data.to_str().unwrap().to_string();
    let before = snapshot(&data);
    // As the owner: search (its index is behind, which made it index, i.e. write), report and state.
    let reads: [Vec<&str>; 4] = [
        vec!["search", "--data-dir", &d, "--format", "ndjson", "--from", "2024-01-01"],
        vec!["search", "--data-dir", &d, "--text", "padding", "--from", "2024-01-01"],
        vec!["report", "--data-dir", &d, "--framework", "soc2", "--from", "2024-04-01", "--format", "md"],
        vec!["state", "show", "--data-dir", &d],
    ];
    for args in &reads {
        let out = run_bin(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    assert_eq!(snapshot(&data), before, "a reader changed the journal");

    // Files nobody may write, read by someone who is not their owner (root ignores modes),
    // without the WAL index a reader would need to create (the log holds no commit).
    let wal = data.join("journal.db-wal");
    assert!(std::fs::metadata(&wal).map_or(true, |m| m.len() == 0), "the test journal was closed cleanly");
    let _ = std::fs::remove_file(&wal);
    let _ = std::fs::remove_file(data.join("journal.db-shm"));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    chmod_tree(&data, 0o555, 0o444);
    let as_reader = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args).env_remove("TINES_AUDIT_CONFIG").env_remove("TINES_AUDIT_DATA_DIR").stdin(Stdio::null());
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::process::CommandExt::uid(&mut c, 65534);
            std::os::unix::process::CommandExt::gid(&mut c, 65534);
        }
        c.output().unwrap()
    };
    let out = as_reader(&["search", "--data-dir", &d, "--format", "ndjson", "--from", "2024-01-01"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("readonly database"), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3, "{}", text(&out));
    let out = as_reader(&["state", "show", "--data-dir", &d]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(snapshot(&data), before, "a reader changed the journal");
    chmod_tree(&data, 0o755, 0o644);
}

#[test]
fn search_report_and_state_with_config_need_no_api_key_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_journal(&data, 3);
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir = "{}"
[[tenants]]
name = "{TENANT}"
domain = "acme.tines.com"
api_key = "${{ACME_TINES_KEY}}"
[[tenants]]
name = "globex"
domain = "globex.tines.com"
api_key_env = "GLOBEX_TINES_KEY"
[web]
token_env = "CONSOLE_TOKEN"
"#,
            data.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    for args in [
        vec!["search", "--config", c, "--from", "2024-01-01"],
        vec!["report", "--config", c, "--framework", "gdpr", "--from", "2024-04-01", "--format", "csv"],
        vec!["state", "show", "--config", c],
    ] {
        let out = run_env(&args, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
}

#[test]
fn search_all_piped_into_head_exits_0_without_broken_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Far more than a pipe buffer holds, so the writer meets the closed pipe.
    make_journal(&data, 3_000);
    let d = data.to_str().unwrap();
    for args in [
        vec!["search", "--data-dir", d, "--all", "--format", "ndjson", "--from", "2024-01-01"],
        vec!["search", "--data-dir", d, "--all", "--format", "csv", "--from", "2024-01-01"],
    ] {
        let mut child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `head -1`: read one line, then close the pipe.
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        assert!(!first.is_empty());
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.to_lowercase().contains("broken pipe"), "{args:?}: {err}");
    }
}

/// Runs the binary with its standard error on a pseudo-terminal and returns what it wrote there.
fn stderr_on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty failed");
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut c = Command::new(BIN);
    c.args(args).env("TINES_API_KEY", DEMO_KEY).env_remove("NO_COLOR").stdin(Stdio::null()).stdout(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.stderr(Stdio::from(slave)).spawn().unwrap();
    drop(c);
    let mut out = Vec::new();
    let mut f = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    // The read ends (EIO) once the child has exited and the terminal's last writer is gone.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    child.wait().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_color_removes_ansi_codes_from_log_lines_on_a_terminal() {
    let mock = start_mock(MockConfig { history: 50, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let url = mock.base_url();
    let collect = move |data: &str, env: &'static [(&'static str, &'static str)]| {
        let (url, data) = (url.clone(), dir.path().join(data));
        move || {
            let d = data.to_str().unwrap();
            stderr_on_a_terminal(&["collect", "--no-progress", "--tenant", &url, "--data-dir", d], env)
        }
    };
    let coloured = tokio::task::spawn_blocking(collect("a", &[])).await.unwrap();
    assert!(coloured.contains("sync complete"), "{coloured}");
    assert!(coloured.contains("\u{1b}["), "on a terminal, log lines are coloured: {coloured:?}");
    let plain = tokio::task::spawn_blocking(collect("b", &[("NO_COLOR", "1")])).await.unwrap();
    assert!(plain.contains("sync complete"), "{plain}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR is set, yet: {plain:?}");
    mock.shutdown().await;
}
