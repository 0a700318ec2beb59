//! Connections to PostgreSQL: the URL (with TLS options), a small pool of clients
//! driven by a runtime of the journal's own, and blocking calls into it.
//!
//! tokio-postgres is async; the journal's interface blocks (it is called from tokio's
//! blocking pool, like SQLite). Each client's socket is driven by a task on a
//! one-thread runtime owned by the journal, and a call waits for its future on the
//! calling thread with a plain thread-parking executor, so it never needs (or
//! panics for lack of) an ambient runtime, and never blocks the journal's runtime.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::journal::JournalError;

/// How long the server lets one of our sessions sit idle inside a transaction. Ours send
/// their statements back to back; only a frozen process waits this long.
pub(super) const IDLE_IN_TRANSACTION: &str = "SET idle_in_transaction_session_timeout = '10s'";

/// Clients kept idle for reuse; more may be open at once while calls overlap.
const POOL_IDLE: usize = 8;

/// Waits for a future on this thread (std's `Wake` example): the futures here only wait
/// on channels to the connection tasks, which run on the journal's runtime.
pub(super) fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// A parsed journal URL.
#[derive(Clone)]
pub(super) struct Target {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    /// `host:port/db` for messages.
    pub shown: String,
}

/// Parses `postgresql://user:password@host:port/db?sslmode=…&sslrootcert=…&options=…`.
///
/// `sslmode`: `disable`, `prefer` (the default: TLS when the server offers it), `require`,
/// `verify-ca` or `verify-full`. Whenever TLS is used the server's certificate is verified
/// (against the Mozilla roots, or the PEM file `sslrootcert` names), so `require` is as
/// strict as `verify-full`.
pub(super) fn parse(url: &str) -> Result<Target, JournalError> {
    let bad = |why: String| JournalError::Config(format!("journal url: {why}"));
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "postgresql" | "postgres") {
        return Err(bad(format!("the scheme must be postgresql://, not {}://", parsed.scheme())));
    }
    let mut rootcert = None;
    let mut mode = None;
    // tokio-postgres decodes `%XX` but not `+`, so the rest of the query is encoded byte by byte.
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let mut rest = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match &*k {
            "sslrootcert" => rootcert = Some(v.into_owned()),
            "sslmode" => mode = Some(v.into_owned()),
            _ => rest.push(format!("{}={}", encode(&k), encode(&v))),
        }
    }
    let mut kept = parsed.clone();
    kept.set_query(None);
    let mut text = kept.as_str().trim_end_matches('?').to_string();
    if !rest.is_empty() {
        text.push('?');
        text.push_str(&rest.join("&"));
    }
    let mut config: Config = text.parse().map_err(|e| bad(format!("{e}")))?;
    let ssl = match mode.as_deref().unwrap_or("prefer") {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" | "verify-ca" | "verify-full" => SslMode::Require,
        other => {
            return Err(bad(format!(
                "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            )));
        }
    };
    config.ssl_mode(ssl);
    config.application_name("tines-audit");
    config.connect_timeout(std::time::Duration::from_secs(10));
    let tls = match ssl {
        SslMode::Disable => None,
        _ => Some(tls_connector(rootcert.as_deref()).map_err(bad)?),
    };
    let host = parsed.host_str().unwrap_or("localhost");
    let shown = format!("{host}:{}{}", parsed.port().unwrap_or(5432), parsed.path());
    Ok(Target { config, tls, shown })
}

fn tls_connector(rootcert: Option<&str>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = rootcert {
        let pem = std::fs::read(path).map_err(|e| format!("sslrootcert {path}: {e}"))?;
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
            roots.add(cert).map_err(|e| format!("sslrootcert {path}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Open clients to one database.
pub(super) struct Pool {
    target: Target,
    runtime: Option<tokio::runtime::Runtime>,
    idle: Mutex<Vec<Client>>,
}

impl Pool {
    pub(super) fn new(target: Target) -> Result<Pool, JournalError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("journal-postgres")
            .enable_all()
            .build()
            .map_err(|e| JournalError::Task(format!("cannot start the journal's runtime: {e}")))?;
        Ok(Pool { target, runtime: Some(runtime), idle: Mutex::new(Vec::new()) })
    }

    pub(super) fn shown(&self) -> &str {
        &self.target.shown
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("the runtime lives as long as the pool").handle()
    }

    fn connect(&self) -> Result<Client, JournalError> {
        let (config, tls) = (self.target.config.clone(), self.target.tls.clone());
        let shown = self.target.shown.clone();
        let connecting = self.handle().spawn(async move {
            let client = match tls {
                None => {
                    let (client, conn) = config.connect(NoTls).await?;
                    tokio::spawn(async move { drop(conn.await) });
                    client
                }
                Some(tls) => {
                    let (client, conn) = config.connect(tls).await?;
                    tokio::spawn(async move { drop(conn.await) });
                    client
                }
            };
            // A process frozen inside a transaction (SIGSTOP, a paused VM) would hold its row
            // and advisory locks, and with them every other instance's commits and take-overs,
            // until it woke. The server ends such a session instead, releasing them.
            client.batch_execute(IDLE_IN_TRANSACTION).await?;
            Ok(client)
        });
        match block_on(connecting) {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(JournalError::Unavailable(format!("cannot connect to {shown}: {}", describe(&e)))),
            Err(e) => Err(JournalError::Task(e.to_string())),
        }
    }

    /// Runs `f` with a client (reconnecting if the pooled one was lost), blocking.
    pub(super) fn run<T>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut client = match pooled {
            Some(c) if !c.is_closed() => c,
            _ => self.connect()?,
        };
        let out = block_on(f(&mut client));
        if !client.is_closed() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < POOL_IDLE {
                idle.push(client);
            }
        }
        out
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        // Never blocks, so a journal may be dropped anywhere (in async code too).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The message of a database error, with the server's detail when it sent one.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str("; ");
                s.push_str(d);
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
    }
}

impl From<tokio_postgres::Error> for JournalError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        match e.code() {
            Some(c) if *c == SqlState::DISK_FULL || *c == SqlState::OUT_OF_MEMORY => JournalError::DiskFull,
            Some(_) => JournalError::Database(describe(&e)),
            // No SQLSTATE: the connection itself failed (closed, reset, timed out).
            None => JournalError::Unavailable(format!("lost the connection to the journal database: {}", describe(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_tls_options_and_show_no_password() {
        let t = parse("postgresql://u:s3cret@db.example:6543/audit?sslmode=require").unwrap();
        assert_eq!(t.shown, "db.example:6543/audit");
        assert!(t.tls.is_some());
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        let t = parse("postgres://u@127.0.0.1/x?sslmode=disable&options=-c%20search_path%3Dj1").unwrap();
        assert!(t.tls.is_none());
        assert_eq!(t.config.get_options(), Some("-c search_path=j1"));
        assert_eq!(parse("postgresql://h/d").unwrap().config.get_ssl_mode(), SslMode::Prefer);
        for bad in ["mysql://u:s3cret@h/d", "postgresql://u:s3cret@h/d?sslmode=maybe", "not a url s3cret"] {
            let e = parse(bad).err().unwrap().to_string();
            assert!(!e.contains("s3cret"), "{e}");
        }
        let e = parse("postgresql://u:p@h/d?sslrootcert=/nonexistent.pem").err().unwrap().to_string();
        assert!(e.contains("/nonexistent.pem"), "{e}");
    }
}
