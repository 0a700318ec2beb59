//! Every failure a user can meet says what happened and what to do, with its
//! own exit code, and never prints the API key.

mod common;

use common::*;
use tines_audit::mock::{MockConfig, MockKey};

const SECRET_KEY: &str = "sk-test-9f8e7d6c5b4a";

fn collect_with(tenant: &str, key: &str, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["collect", "--no-progress", "--tenant", tenant, "--data-dir"])
        .arg(dir.path().join("data"))
        .args(extra)
        .env("TINES_API_KEY", key)
        .env_remove("TINES_BASE_URL")
        .env_remove("TINES_AUDIT_CONFIG");
    cmd.output().unwrap()
}

fn assert_fails(out: &std::process::Output, code: i32, needle: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    assert!(all.contains(needle), "expected {needle:?} in:\n{all}");
    assert!(!all.contains(SECRET_KEY), "the API key leaked:\n{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_is_401_with_advice_and_exit_3() {
    let mock = start_mock(MockConfig::default()).await;
    wait_settled(&mock).await;
    let url = mock.base_url();
    let out = tokio::task::spawn_blocking(move || collect_with(&url, SECRET_KEY, &[])).await.unwrap();
    assert_fails(&out, 3, "authentication failed (401)");
    assert_fails(&out, 3, "Settings > API keys");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_without_audit_log_permission_is_403_and_exit_4() {
    let mock = start_mock(MockConfig {
        keys: vec![MockKey { key: SECRET_KEY.into(), can_read_audit_logs: false }],
        ..Default::default()
    })
    .await;
    wait_settled(&mock).await;
    let url = mock.base_url();
    let out = tokio::task::spawn_blocking(move || collect_with(&url, SECRET_KEY, &[])).await.unwrap();
    assert_fails(&out, 4, "AUDIT_LOG_READ");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tenant_is_404_and_exit_5() {
    // A web server that is not a Tines tenant: every path is 404.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, axum::Router::new()).await });
    let out = tokio::task::spawn_blocking(move || collect_with(&url, SECRET_KEY, &[])).await.unwrap();
    assert_fails(&out, 5, "not found (404)");
    assert_fails(&out, 5, "tenant domain is probably wrong");
    server.abort();
}

#[test]
fn unreachable_network_is_exit_6() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    // Port 9 (discard) on loopback is closed here: connections are refused at once.
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[collect]\nmax_attempts = 2\n[[tenants]]\ndomain = \"http://127.0.0.1:9\"\napi_key_env = \"K\"\n",
            dir.path().join("d").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["collect", "--no-progress", "--config"])
        .arg(&cfg)
        .env("K", SECRET_KEY)
        .output()
        .unwrap();
    assert_fails(&out, 6, "cannot reach 127.0.0.1");
}

#[test]
fn invalid_domains_are_refused_before_any_request() {
    assert_fails(&collect_with("acme", SECRET_KEY, &[]), 2, "must contain a dot");
    assert_fails(&collect_with("https://acme.tines.com", SECRET_KEY, &[]), 2, "loopback");
    assert_fails(&collect_with("acme.tines.com/api/v1", SECRET_KEY, &[]), 2, "without https://");
    assert_fails(&collect_with("http://192.0.2.10:8080", SECRET_KEY, &[]), 2, "loopback");
}

#[test]
fn invalid_backfill_times_are_explained() {
    assert_fails(&collect_with("acme.tines.com", SECRET_KEY, &["--since", "last week"]), 2, "RFC 3339");
    assert_fails(&collect_with("acme.tines.com", SECRET_KEY, &["--since", "2999-01-01T00:00:00Z"]), 2, "in the future");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["backfill", "--tenant", "acme.tines.com", "--since", "2024-13-01T00:00:00Z", "--data-dir"])
        .arg(dir.path())
        .env("TINES_API_KEY", SECRET_KEY)
        .output()
        .unwrap();
    assert_fails(&out, 2, "invalid time");
}

#[test]
fn unknown_operation_names_suggest_the_real_one() {
    assert_fails(
        &collect_with("acme.tines.com", SECRET_KEY, &["--operation", "story.created"]),
        2,
        "did you mean StoryCreation",
    );
}

#[test]
fn missing_key_and_missing_tenant_say_how_to_give_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["collect", "--tenant", "acme.tines.com", "--data-dir"])
        .arg(dir.path())
        .env_remove("TINES_API_KEY")
        .output()
        .unwrap();
    assert_fails(&out, 2, "TINES_API_KEY");
    let out = std::process::Command::new(BIN)
        .args(["collect", "--data-dir"])
        .arg(dir.path())
        .env_remove("TINES_BASE_URL")
        .env_remove("TINES_AUDIT_CONFIG")
        .output()
        .unwrap();
    assert_fails(&out, 2, "--tenant");
}

#[test]
fn the_api_key_cannot_be_given_as_an_argument() {
    let out = std::process::Command::new(BIN).args(["collect", "--api-key", SECRET_KEY]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(SECRET_KEY)
            || String::from_utf8_lossy(&out.stderr).contains("unexpected argument")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tines_base_url_and_tines_api_key_environment_are_honoured() {
    // History ending a minute ago: the default settle delay (10 s) is long past.
    let anchor = Some(tines_audit::timeutil::now_secs() - 60);
    let mock = start_mock(MockConfig { history: 50, anchor, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let url = mock.base_url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["collect", "--no-progress", "--since", "31d", "--data-dir"])
            .arg(&data)
            .env("TINES_BASE_URL", url)
            .env("TINES_API_KEY", tines_audit::mock::DEMO_KEY)
            .env_remove("TINES_AUDIT_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("50 new events"), "{}", text(&out));
    mock.shutdown().await;
}

#[test]
fn a_second_collector_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _held = tines_audit::journal::Journal::open(dir.path()).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["collect", "--tenant", "acme.tines.com", "--data-dir"])
        .arg(dir.path())
        .env("TINES_API_KEY", SECRET_KEY)
        .output()
        .unwrap();
    assert_fails(&out, 9, "another tines-audit process");
}
