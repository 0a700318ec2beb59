//! A real PostgreSQL for the tests: `$TINES_AUDIT_TEST_PG_URL` (set by `scripts/test.sh`),
//! or one this test process starts with `scripts/start-postgres.sh`, stopped by a watcher
//! when the process ends. No server is a failure, never a skip.

use std::process::Command;
use std::sync::OnceLock;

pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TINES_AUDIT_TEST_PG_URL") {
            return url;
        }
        let script = format!(
            r#"set -e; eval "$('{root}/scripts/start-postgres.sh')"
               printf '%s\n' "$TINES_AUDIT_TEST_PG_URL"
               setsid bash -c "while kill -0 {pid} 2>/dev/null; do sleep 1; done; $TINES_AUDIT_TEST_PG_STOP" </dev/null >/dev/null 2>&1 &"#,
            root = env!("CARGO_MANIFEST_DIR"),
            pid = std::process::id()
        );
        let out = Command::new("bash").args(["-c", &script]).output().expect("bash runs");
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && url.starts_with("postgresql://"),
            "these tests need PostgreSQL: set TINES_AUDIT_TEST_PG_URL or let scripts/start-postgres.sh start one:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        url
    })
    .clone()
}

/// Runs SQL on the test server with psql (from the same packages as the server).
pub fn psql(sql: &str) -> String {
    psql_at(&server_url(), sql)
}

/// Runs SQL on the server at `url` with psql.
pub fn psql_at(url: &str, sql: &str) -> String {
    let out =
        Command::new("psql").args([url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]).output().expect("psql runs");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A journal URL of a new, empty schema on the test server.
pub fn fresh_schema_url() -> String {
    let name = format!("t{:016x}", fastrand::u64(..));
    psql(&format!("CREATE SCHEMA {name}"));
    let mut u = url::Url::parse(&server_url()).expect("the server URL parses");
    u.query_pairs_mut().append_pair("options", &format!("-c search_path={name}"));
    u.to_string()
}

/// A PostgreSQL server of the test's own (to stop and start under a daemon), removed on drop.
pub struct OwnServer {
    pub url: String,
    /// With TLS: the CA that signed the server's certificate (for 127.0.0.1).
    pub ca: Option<String>,
    ctl: String,
    stop: String,
}

impl OwnServer {
    pub fn start() -> OwnServer {
        Self::start_with(false)
    }

    /// A server that offers TLS with a certificate from a CA of the test's own.
    pub fn start_tls() -> OwnServer {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> OwnServer {
        let script = format!(
            r#"set -e; eval "$('{root}/scripts/start-postgres.sh')"
               printf '%s\n%s\n%s\n%s\n' "$TINES_AUDIT_TEST_PG_URL" "$TINES_AUDIT_TEST_PG_CTL" "$TINES_AUDIT_TEST_PG_STOP" "${{TINES_AUDIT_TEST_PG_CA:-}}""#,
            root = env!("CARGO_MANIFEST_DIR"),
        );
        let out = Command::new("bash")
            .args(["-c", &script])
            .env("TINES_AUDIT_TEST_PG_TLS", if tls { "1" } else { "0" })
            .output()
            .expect("bash runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let (url, ctl, stop, ca) = (lines.next(), lines.next(), lines.next(), lines.next());
        match (out.status.success(), url, ctl, stop) {
            (true, Some(url), Some(ctl), Some(stop)) => OwnServer {
                url: url.to_string(),
                ca: ca.filter(|c| !c.is_empty()).map(str::to_string),
                ctl: ctl.to_string(),
                stop: stop.to_string(),
            },
            _ => panic!("scripts/start-postgres.sh failed:\n{}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    /// `pg_ctl stop -m fast` / `pg_ctl start` on this server (same port and data).
    pub fn ctl(&self, action: &str) {
        let st = Command::new("bash").args(["-c", &format!("{} {action}", self.ctl)]).status().expect("bash runs");
        assert!(st.success(), "pg_ctl {action} failed");
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = Command::new("bash").args(["-c", &self.stop]).status();
    }
}
