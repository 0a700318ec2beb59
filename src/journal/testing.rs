//! Fresh journals of every backend for tests, so one test body runs against SQLite and
//! PostgreSQL alike ([`on_every_backend!`](crate::on_every_backend)).
//!
//! PostgreSQL comes from `$TINES_AUDIT_TEST_PG_URL` (set by `scripts/test.sh`, which
//! starts a real server with `scripts/start-postgres.sh`); without it, the first test
//! that needs one starts its own with that script, stopped when the test process ends.
//! A server that cannot be had fails the test: nothing is skipped. Each journal gets a
//! schema of its own in that database.

use std::sync::OnceLock;

use super::{Access, Journal, Location};

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A fresh, empty journal; what it needs (a directory) lives as long as it.
pub struct Fresh {
    pub journal: Journal,
    pub at: Location,
    _dir: Option<tempfile::TempDir>,
}

impl Fresh {
    /// Closes the journal and opens it again where it was.
    pub fn reopen(self) -> Fresh {
        let Fresh { journal, at, _dir } = self;
        drop(journal);
        Fresh { journal: Journal::open_at(&at, Access::Write).expect("reopen the journal"), at, _dir }
    }
}

impl Fresh {
    /// Runs SQL on the database behind the journal's back (tests that tamper with it).
    /// Runs SQL behind the journal's back, saying whether the database refused it.
    pub fn try_tamper(&self, sql: &str) -> Result<(), String> {
        match &self.at {
            Location::Dir(dir) => {
                let conn = rusqlite::Connection::open(dir.join("journal.db")).map_err(|e| e.to_string())?;
                conn.execute_batch(sql).map_err(|e| e.to_string())
            }
            Location::Url(url) => super::postgres::execute(url.expose(), sql).map_err(|e| e.to_string()),
        }
    }

    pub fn tamper(&self, sql: &str) {
        match &self.at {
            Location::Dir(dir) => {
                let conn = rusqlite::Connection::open(dir.join("journal.db")).expect("open the journal's file");
                conn.execute_batch(sql).expect("tamper with SQLite");
            }
            Location::Url(url) => super::postgres::execute(url.expose(), sql).expect("tamper with PostgreSQL"),
        }
    }
}

impl std::ops::Deref for Fresh {
    type Target = Journal;
    fn deref(&self) -> &Journal {
        &self.journal
    }
}

/// The test server's URL, starting one if the environment names none.
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TINES_AUDIT_TEST_PG_URL") {
            return url;
        }
        let root = env!("CARGO_MANIFEST_DIR");
        // The server outlives a test process only until a watcher sees it gone.
        let script = format!(
            r#"set -e; eval "$('{root}/scripts/start-postgres.sh')"
               printf '%s\n' "$TINES_AUDIT_TEST_PG_URL"
               setsid bash -c "while kill -0 {pid} 2>/dev/null; do sleep 1; done; $TINES_AUDIT_TEST_PG_STOP" </dev/null >/dev/null 2>&1 &"#,
            pid = std::process::id()
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("bash runs");
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && url.starts_with("postgresql://"),
            "PostgreSQL tests need a server: set TINES_AUDIT_TEST_PG_URL or let scripts/start-postgres.sh start one (it failed)"
        );
        url
    })
    .clone()
}

/// A URL for a new, empty schema of the test server.
pub fn fresh_schema_url() -> String {
    let base = server_url();
    let name = format!("j{:016x}", fastrand::u64(..));
    super::postgres::create_schema(&base, &name).expect("create a schema on the test server");
    let mut u = url::Url::parse(&base).expect("the test server's URL parses");
    u.query_pairs_mut().append_pair("options", &format!("-c search_path={name}"));
    u.to_string()
}

/// A fresh journal of `kind`, opened for writing.
pub fn fresh(kind: Kind) -> Fresh {
    match kind {
        Kind::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let at = Location::Dir(dir.path().to_path_buf());
            Fresh { journal: Journal::open_at(&at, Access::Write).expect("open SQLite journal"), at, _dir: Some(dir) }
        }
        Kind::Postgres => {
            let at = Location::Url(crate::secret::Secret::new(fresh_schema_url()));
            Fresh { journal: Journal::open_at(&at, Access::Write).expect("open PostgreSQL journal"), at, _dir: None }
        }
    }
}

/// Runs each test body against every backend: `fn name(kind: Kind)` becomes the tests
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name($crate::journal::testing::Kind::Sqlite)
                }
                #[test]
                fn postgres() {
                    super::$name($crate::journal::testing::Kind::Postgres)
                }
            }
        )*
    };
}
