//! The smaller subcommands: help, operations, check, state, and the example config.

mod common;

use common::*;
use tines_audit::mock::MockConfig;

#[test]
fn every_subcommand_has_help() {
    for sub in ["demo", "mock", "collect", "run", "backfill", "state", "operations", "check", "posture"] {
        let out = run_bin(&[sub, "--help"]);
        assert!(out.status.success(), "{sub}: {}", text(&out));
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("Usage:") && s.len() > 200, "{sub} help is too thin:\n{s}");
    }
    let top = String::from_utf8_lossy(&run_bin(&["--help"]).stdout).into_owned();
    assert!(top.contains("Exit codes"), "{top}");
}

#[test]
fn operations_lists_the_catalog_and_filters() {
    let out = run_bin(&["operations"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 398);
    let out = run_bin(&["operations", "credential", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"CredentialDestruction") && names.contains(&"UserCredentialSave"));
    assert!(names.iter().all(|n| n.to_lowercase().contains("credential")));
}

#[test]
fn the_example_config_is_accepted_by_check() {
    let out = std::process::Command::new(BIN)
        .args(["check", "--offline", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml")])
        .env("ACME_TINES_API_KEY", "x")
        .env("GLOBEX_TINES_API_KEY", "y")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration ok: 2 tenant(s)"), "{}", text(&out));
}

#[test]
fn a_journal_database_that_cannot_be_reached_fails_clearly_without_its_password() {
    // Nothing listens on port 1: whatever the backend says, it must fail, say where, and never
    // print the password.
    let url = "postgresql://u:hunter2pass@127.0.0.1:1/db";
    for args in [
        vec!["search", "--journal-url", url],
        vec!["state", "show", "--journal-url", url],
        vec!["state", "export", "--journal-url", url, "/nonexistent/never-written.db"],
    ] {
        let out = run_bin(&args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(!stdout.contains("hunter2pass") && !stderr.contains("hunter2pass"), "{args:?}: {}", text(&out));
        assert!(stderr.contains("127.0.0.1:1") && stderr.contains("journal"), "{args:?}: {stderr}");
    }
    // From the variable too, and a URL that is not PostgreSQL is a usage error naming the flag.
    let out = std::process::Command::new(BIN)
        .args(["search"])
        .env("TINES_AUDIT_JOURNAL_URL", "mysql://u:hunter2pass@127.0.0.1:1/db")
        .env_remove("TINES_AUDIT_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr.contains("--journal-url") && !stderr.contains("hunter2pass"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_tenant_and_sink() {
    let mock = start_mock(MockConfig {
        history: 10,
        history_span: std::time::Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &mock.base_url(), "", &file_sink(&dir.path().join("out/a.ndjson")));
    let out = run_bin_async(vec!["check".into(), "--config".into(), cfg.display().to_string()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("tenant t1: ok") && s.contains("10 events in the last 24 h"), "{s}");
    assert!(s.contains("sink archive: ok"), "{s}");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_show_and_reset() {
    let mock = start_mock(MockConfig { history: 100, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out/a.ndjson");
    let cfg = write_config(dir.path(), &mock.base_url(), "", &file_sink(&out_path));
    let c = cfg.display().to_string();
    let out = run_bin_async(vec!["collect".into(), "--config".into(), c.clone()]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run_bin_async(vec!["state".into(), "show".into(), "--config".into(), c.clone()]).await;
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(s.contains("journal: 100 events") && s.contains("tenant t1") && s.contains("backlog 0"), "{s}");
    let out = run_bin_async(vec![
        "state".into(),
        "reset".into(),
        "--config".into(),
        c.clone(),
        "--tenant".into(),
        "t1".into(),
    ])
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("--yes"), "{}", text(&out));
    let out = run_bin_async(vec![
        "state".into(),
        "reset".into(),
        "--config".into(),
        c.clone(),
        "--tenant".into(),
        "t1".into(),
        "--yes".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    // After a reset the history is read again, and neither journal nor file doubles anything.
    let out = run_bin_async(vec!["collect".into(), "--config".into(), c]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_exactly_once(&dir.path().join("data"), &mock);
    assert_file_exactly_once(&out_path, &mock);
    mock.shutdown().await;
}

#[test]
fn demo_runs_end_to_end_and_verifies_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["demo", "--duration", "4s", "--history", "3000", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("verified: every emulator event is in the journal and in the file sink exactly once"), "{s}");
    assert!(dir.path().join("out/audit.ndjson").exists());
}

#[test]
fn the_multi_tenant_example_config_is_accepted_by_check() {
    let out = std::process::Command::new(BIN)
        .args(["check", "--offline", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/multi-tenant.toml")])
        .env("ACME_TINES_API_KEY", "a")
        .env("GLOBEX_TINES_API_KEY", "b")
        .env("INITECH_TINES_API_KEY", "c")
        .env("TINES_AUDIT_WEB_TOKEN", "0123456789abcdef0123")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("configuration ok: 3 tenant(s), 2 sink(s)"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_sinks_example_config_is_accepted_by_check() {
    let out = std::process::Command::new(BIN)
        .args(["check", "--offline", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/sinks-example.toml")])
        .env("ACME_TINES_API_KEY", "a")
        .env("SPLUNK_HEC_TOKEN", "00000000-0000-0000-0000-000000000000")
        .env("DD_API_KEY", "ddkey")
        .env("SUMO_SOURCE_TOKEN", "sumo-secret")
        .env("PSEUDONYM_KEY", "0123456789abcdef0123")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("configuration ok: 1 tenant(s), 5 sink(s)"), "{}", text(&out));
    assert!(!text(&out).contains("sumo-secret"), "secrets in URLs are never printed");
}
