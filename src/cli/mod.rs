//! The command line: parsing (clap), turning flags and config into
//! [`Settings`], running the subcommand, and mapping errors to one clear
//! line and a distinct exit code.

mod exit;
mod keys;
mod output;
mod posture;
mod reader;
mod reconcile;
mod search;
mod selftest;
mod verify;
mod verify_lake;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{ConfigError, RawConfig, RawTenant, Settings, build_tenant};
use crate::journal::{Access, Journal, Location};
use crate::secret::{Secret, redact};
use crate::service::{self, OnProgress};
use crate::sinks::SinkConfig;
use crate::source::tines::endpoint::Endpoint;
use crate::timeutil::{format_rfc3339, now_secs, parse_time_arg};

pub use exit::{Exit, exit_code};

/// Collect every Tines audit log exactly once into a local journal, and deliver it.
///
/// Exit codes: 0 ok, 1 internal error, 2 bad usage or configuration,
/// 3 authentication failed (401), 4 permission denied (403), 5 tenant not found (404),
/// 6 network unreachable, 7 the API kept failing, 8 a sink could not deliver,
/// 9 the data directory is in use by another collector, 10 the journal cannot grow (disk full),
/// 11 detection rules have problems or failing examples, 12 the journal's database cannot be reached,
/// 13 `verify` found the journal changed, 14 `selftest` found a rule that did not fire or an
/// alert output that failed.
#[derive(Debug, Parser)]
#[command(name = "tines-audit", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log level: error, warn, info, debug or trace (or a tracing filter such as `tines_audit=debug`).
    #[arg(long, global = true, env = "TINES_AUDIT_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format on standard error: `text` (for people) or `json` (one object a line).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the emulator with a seeded history and live events, collect from it and write a file sink: the quickest look at what this does.
    Demo(crate::demo::DemoArgs),
    /// Run the Tines audit-log API emulator (for trying things out and for tests).
    Mock(crate::mock::cli::MockArgs),
    /// Sync every tenant once (incrementally, from its cursor), deliver to the sinks, and exit.
    Collect(CollectArgs),
    /// Run as a service: sync every tenant on an interval and keep the sinks fed, until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Collect a past time range of a tenant into the journal without moving its cursor; resumable.
    Backfill(BackfillArgs),
    /// Re-count closed time slices with the API and collect events that arrived after the overlap (late ones).
    Reconcile(reconcile::ReconcileArgs),
    /// Show or reset collection state (cursors, backfills, sink offsets).
    State(StateArgs),
    /// List the audit-log operation names Tines documents.
    Operations(OperationsArgs),
    /// Validate the configuration and test each tenant's connectivity and permission.
    Check(CheckArgs),
    /// Detection rules: list, validate and test rule files, and backtest them over the journal.
    Rules(crate::detect::cli::RulesArgs),
    /// Search the journal: who did what, when, from where (newest first).
    Search(search::SearchArgs),
    /// Write a compliance evidence report (SOC 2, ISO 27001, GDPR) for a period.
    Report(search::ReportArgs),
    /// A tenant's security posture from its audit history (owners, IP access rules, egress
    /// allowlist, API keys, SSO and session settings), optionally checked against the tenant;
    /// `posture annotate` records why an entry exists.
    ///
    /// Each entry comes with who changed it last, when, from where and the event it comes
    /// from. Where a record does not say what it changed (a key's deletion names only an id
    /// its creation never gave), the output says so instead of guessing, and the entries it
    /// may have changed carry a doubt naming it. Entries without a note saying why they exist
    /// are flagged. See docs/posture.md.
    Posture(posture::PostureArgs),
    /// Check the journal's hash chain: name every record changed, deleted, inserted or
    /// reordered since it was collected. Exit 0 when everything verifies, 13 when not.
    Verify(verify::VerifyArgs),
    /// The Ed25519 key that signs checkpoints and digests: `keys public` prints what auditors need.
    Keys(keys::KeysArgs),
    /// Prove detection works end to end: every enabled rule on synthetic events built from its
    /// own examples, through the configured engine, and the test alerts it raises to every
    /// alert output. Nothing is written to the journal or the event sinks. Exit 0 when every
    /// rule fired and every output accepted, 14 when not (the table names which).
    Selftest(selftest::SelftestArgs),
}

/// Where settings come from: a config file, or flags alone.
#[derive(Debug, Args, Clone, Default)]
pub struct SourceArgs {
    /// Config file (TOML). Without one, a single tenant is given by --tenant and the environment.
    #[arg(long, short = 'c', env = "TINES_AUDIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory holding the journal (overrides the config's data_dir).
    #[arg(long, env = "TINES_AUDIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub journal_url: JournalUrlArg,
    /// Tenant: a domain such as acme.tines.com (or, for the emulator, http://127.0.0.1:PORT).
    /// With --config, the name of one configured tenant. Default: $TINES_BASE_URL.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Name to keep this tenant's state under (default: its domain).
    #[arg(long)]
    pub name: Option<String>,
    /// Read the API key from this file. Otherwise it comes from $TINES_API_KEY; never from an argument.
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// Only collect these user ids (repeatable).
    #[arg(long = "user-id", value_name = "ID")]
    pub user_ids: Vec<u64>,
    /// Only collect these operations (repeatable; checked against `tines-audit operations`).
    #[arg(long = "operation", value_name = "NAME")]
    pub operations: Vec<String>,
    /// Deliver to this sink: `file:<path>`, `file+adopt:<path>` (keep an existing file this journal
    /// has no record of and append after it) or `stdout` (repeatable; adds to the config's sinks).
    #[arg(long = "sink", value_name = "SPEC")]
    pub sinks: Vec<String>,
}

/// `--journal-url`, taken by every command that takes `--data-dir`.
#[derive(Debug, Args, Clone, Default)]
pub struct JournalUrlArg {
    /// Journal in PostgreSQL instead of SQLite in the data directory (overrides the config's
    /// [journal] url): postgresql://USER:PASSWORD@HOST:5432/DB, ?sslmode=verify-full for TLS.
    /// The password goes in the URL (no PGPASSWORD needed) and is never printed; prefer the
    /// variable to the flag, which `ps` shows.
    #[arg(
        long = "journal-url",
        env = "TINES_AUDIT_JOURNAL_URL",
        hide_env_values = true,
        value_name = "URL",
        value_parser = secret_url
    )]
    pub url: Option<Secret>,
}

/// A URL argument kept as a secret from the start, so that nothing (not even `Debug`) shows its
/// password. Checked later by [`crate::config::journal_url`]: clap would quote a refused value.
fn secret_url(text: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::url(text))
}

impl JournalUrlArg {
    /// Where the journal is: this flag (or its variable), else the config's `[journal] url`
    /// (asked only then, so a problem in a URL that is not used is no error), else SQLite
    /// in the data directory.
    pub fn choose(
        &self,
        configured: impl FnOnce() -> Result<Option<Location>, ConfigError>,
        data_dir: impl FnOnce() -> PathBuf,
    ) -> Result<Location, ConfigError> {
        if let Some(u) = &self.url {
            return crate::config::journal_url(u.expose(), "--journal-url (TINES_AUDIT_JOURNAL_URL)");
        }
        Ok(configured()?.unwrap_or_else(|| Location::Dir(data_dir())))
    }
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Where to start when the tenant has no cursor yet: RFC 3339 or an age such as 30d.
    /// Default: now (no history), as other collectors do. Ignored once a cursor exists.
    #[arg(long)]
    pub since: Option<String>,
    /// Do not show a progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Where to start for tenants with no cursor yet (see `collect --since`).
    #[arg(long)]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Start of the range: RFC 3339 or an age such as 90d.
    #[arg(long)]
    pub since: String,
    /// End of the range (default: the tenant's cursor, or now if it has none).
    #[arg(long)]
    pub until: Option<String>,
    /// Start a new backfill even if an unfinished one exists (it is resumed by default).
    #[arg(long)]
    pub restart: bool,
    /// Do not show a progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    pub action: StateAction,
}

#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Show each tenant's cursor and backfills, and each sink's offset and backlog.
    Show {
        #[command(flatten)]
        source: SourceArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the journal (events, cursors, offsets, alerts) to FILE, even while
    /// collecting. FILE is an SQLite journal whatever the journal's database, so `state import`
    /// can move it between a data directory and PostgreSQL, either way.
    Export {
        #[command(flatten)]
        source: SourceArgs,
        /// Where to write the copy (must not exist).
        file: PathBuf,
    },
    /// Install a journal written by `state export`: as this data directory's journal (collector
    /// stopped), or, with --journal-url, loaded into an empty PostgreSQL journal in one transaction.
    Import {
        #[command(flatten)]
        source: SourceArgs,
        /// The exported file.
        file: PathBuf,
        /// Replace an existing journal in the data directory.
        #[arg(long)]
        replace: bool,
    },
    /// Forget a tenant's cursor (its events stay); the next sync starts again from --since.
    Reset {
        #[command(flatten)]
        source: SourceArgs,
        /// Job to reset: `cursor` (default) or a backfill's name from `state show`.
        #[arg(long, default_value = service::CURSOR_JOB)]
        job: String,
        /// Confirm: without it nothing is changed.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct OperationsArgs {
    /// Only names containing this text (case-insensitive).
    pub filter: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Only validate the configuration; do not contact any tenant.
    #[arg(long)]
    pub offline: bool,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    crate::secret::install_panic_hook();
    init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            let code = exit_code(&e);
            eprintln!("error: {}", exit::describe(&e));
            ExitCode::from(code as u8)
        }
    }
}

/// Two glibc tunings that keep peak RSS bounded by the work in hand rather than by the
/// length of the history (BENCHMARKS.md, "Memory and cost per event"); a value given in
/// the environment (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`) is left as it is, since
/// glibc reads those first.
///
/// - Arenas: glibc gives each thread that allocates under contention an arena of its own,
///   up to eight per core, and an arena keeps what was freed in it. Pages are parsed on
///   blocking threads, committed on another and freed on a worker, so every arena held
///   its own high-water mark: a 1M-event backfill peaked at 123 MiB with the default and
///   at 99 MiB with two, at the same speed.
/// - The mmap threshold: glibc raises it (up to 32 MiB) each time a mapped block is freed,
///   after which the multi-MiB buffers of a long backfill (API pages, journal batches,
///   sink objects) come from the arenas and stay resident when freed: a 1M-event
///   `collect` into an object store reached 334 MiB, 126 MiB with the threshold fixed at
///   128 KiB, within the noise of the CPU figures. Setting it turns the adjustment off.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: called first thing in main, before any thread exists; mallopt only sets
        // tunables of the allocator.
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
        }
    }
}

fn init_logging(g: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&g.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Every log line passes through the secret registry on its way out.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(crate::secret::RedactingStderr);
    if g.log_format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_ansi(colour(std::io::stderr().is_terminal())).init();
    }
}

/// Whether to colour output to a stream: only a terminal, and never when `NO_COLOR`
/// is set to anything but the empty string (https://no-color.org).
pub(crate) fn colour(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether an error is standard output closed by its reader (`search --all | head`):
/// the reader has what it wanted, so that ends the command quietly and successfully.
pub(crate) fn stdout_closed(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(args) => crate::demo::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Mock(args) => crate::mock::cli::run(args, shutdown_signal()).await.map(|()| ExitCode::SUCCESS),
        Command::Collect(args) => collect(args).await,
        Command::Run(args) => run(args).await,
        Command::Backfill(args) => backfill(args).await,
        Command::Reconcile(args) => reconcile::reconcile(args).await,
        Command::State(args) => state(args).await,
        Command::Operations(args) => output::operations(&args),
        Command::Check(args) => check(args).await,
        Command::Rules(args) => crate::detect::cli::run(args).await,
        Command::Search(args) => search::search(args).await,
        Command::Report(args) => search::report(args).await,
        Command::Posture(args) => posture::posture(args).await,
        Command::Verify(args) => verify::verify(args).await,
        Command::Keys(args) => keys::keys(args),
        Command::Selftest(args) => selftest::selftest(args).await,
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Turns flags (and the config file, if any) into settings.
pub fn load_settings(a: &SourceArgs, since: Option<&str>) -> anyhow::Result<Settings> {
    let env = |k: &str| std::env::var(k).ok();
    let mut settings = match &a.config {
        Some(path) => {
            let mut s = RawConfig::load(path)?.build()?;
            if a.api_key_file.is_some() || !a.user_ids.is_empty() || !a.operations.is_empty() || a.name.is_some() {
                return Err(crate::config::ConfigError::Invalid(
                    "--name, --api-key-file, --user-id and --operation apply without --config; set them in the config's [[tenants]]".into(),
                )
                .into());
            }
            if let Some(only) = &a.tenant {
                s.tenants.retain(|t| &t.name == only);
                if s.tenants.is_empty() {
                    return Err(crate::config::ConfigError::Invalid(format!(
                        "no tenant named {only:?} in {}",
                        path.display()
                    ))
                    .into());
                }
            }
            if let Some(since) = since {
                let since = crate::config::Since::parse(since)
                    .map_err(|e| crate::config::ConfigError::Invalid(format!("--since: {e}")))?;
                for t in &mut s.tenants {
                    t.since = since.clone();
                }
            }
            s
        }
        None => {
            let domain = match &a.tenant {
                Some(t) => t.clone(),
                None => match env("TINES_BASE_URL") {
                    // Seed 002 documents TINES_BASE_URL as https://<tenant-domain>.
                    Some(u) => {
                        let e = Endpoint::parse_base_url_env(&u)
                            .map_err(|e| crate::config::ConfigError::Invalid(format!("TINES_BASE_URL: {e}")))?;
                        if e.base().scheme() == "https" { e.host().to_string() } else { u }
                    }
                    None => {
                        return Err(crate::config::ConfigError::Invalid(
                            "no tenant: give --tenant acme.tines.com (or set TINES_BASE_URL), or a config file with --config".into(),
                        )
                        .into());
                    }
                },
            };
            let raw = RawTenant {
                name: a.name.clone(),
                domain: Some(domain),
                api_key_file: a.api_key_file.clone(),
                since: since.map(str::to_string),
                user_ids: a.user_ids.clone(),
                operation_names: a.operations.clone(),
                ..Default::default()
            };
            let tenant = build_tenant(raw, "--tenant", &env)?;
            let mut s = RawConfig::default().build()?;
            s.tenants.push(tenant);
            s
        }
    };
    if let Some(d) = &a.data_dir {
        settings.data_dir = d.clone();
    }
    let configured = match &settings.journal {
        Location::Url(_) => Some(settings.journal.clone()),
        Location::Dir(_) => None,
    };
    settings.journal = a.journal_url.choose(|| Ok(configured), || settings.data_dir.clone())?;
    for spec in &a.sinks {
        let sink = SinkConfig::parse_flag(spec).map_err(crate::config::ConfigError::Invalid)?;
        if settings.sinks.iter().any(|s| s.name() == sink.name()) {
            continue;
        }
        settings.sinks.push(sink);
    }
    Ok(settings)
}

fn progress_reporter(enabled: bool) -> Option<OnProgress> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bars: Arc<Mutex<HashMap<String, ProgressBar>>> = Arc::default();
    let style = ProgressStyle::with_template(
        "{prefix:.bold} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events, eta {eta} | {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    Some(Arc::new(move |tenant: &str, p: &crate::source::tines::collector::SyncProgress| {
        let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(tenant.to_string()).or_insert_with(|| {
            let b = ProgressBar::new(0).with_style(style.clone()).with_prefix(tenant.to_string());
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        if let Some(total) = p.total {
            bar.set_length(total.max(p.fetched));
        }
        bar.set_position(p.fetched);
        let rate = p.fetched as f64 / bar.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!("{rate:.0} events/s, {} pages, cursor {}", p.pages, format_rfc3339(p.position)));
    }))
}

async fn collect(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let settings = Arc::new(load_settings(&args.source, args.since.as_deref())?);
    if settings.tenants.is_empty() {
        bail!(crate::config::ConfigError::Invalid("the configuration has no [[tenants]]".into()));
    }
    let key = Arc::new(service::signing_key(&settings)?);
    let journal = open_journal(&settings).await?;
    let progress = progress_reporter(!args.no_progress);
    let mut failures = Vec::new();
    let tenants = service::tenants(&settings)?;
    let syncs = tenants.iter().map(|t| {
        let (journal, settings, progress) = (journal.clone(), settings.clone(), progress.clone());
        async move { (t.config.name.clone(), service::sync_tenant(&journal, t, &settings, progress).await) }
    });
    for (name, result) in futures_join_all(syncs).await {
        match result {
            Ok(o) => println!(
                "{name}: {} new events ({} fetched in {} pages), cursor at {}",
                o.inserted,
                o.fetched,
                o.pages,
                format_rfc3339(o.to)
            ),
            Err(e) => {
                eprintln!("error: {name}: {}", redact(&e.to_string()));
                failures.push(anyhow::Error::new(e));
            }
        }
    }
    let names: Vec<String> = tenants.iter().map(|t| t.config.name.clone()).collect();
    if let Err(e) = sign_checkpoints(&journal, &key, names, "collect").await {
        eprintln!("error: {}", redact(&e.to_string()));
        failures.push(anyhow::Error::new(e));
    }
    let mut consumers = service::consumers(&settings, Some(&key))?;
    // Indexing is the collector's CPU, delivery mostly the destination's wait: side by side.
    let ((), delivered) = tokio::join!(index_for_search(&journal), service::drain_all(&journal, &mut consumers));
    for (name, r) in delivered {
        match r {
            Ok(n) => println!("sink {name}: delivered {n} events"),
            Err(e) => {
                eprintln!("error: {}", redact(&e.to_string()));
                failures.push(anyhow::Error::new(e));
            }
        }
    }
    match failures.into_iter().next() {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => Ok(ExitCode::from(exit_code(&e) as u8)),
    }
}

/// Signs a checkpoint of each named tenant's chain, and says so.
async fn sign_checkpoints(
    journal: &Journal,
    key: &Arc<crate::signing::SigningKey>,
    tenants: Vec<String>,
    reason: &'static str,
) -> Result<(), crate::journal::JournalError> {
    for name in tenants {
        let key = key.clone();
        let n = name.clone();
        if let Some(cp) = journal.call(move |j| crate::journal::checkpoint::sign(j, &n, &key, reason, 0)).await?
            && let Some(c) = cp.parse()
        {
            println!("{name}: checkpoint {} signed at chain position {} ({})", c.number, c.chain_n, c.key);
        }
    }
    Ok(())
}

/// Brings the search index up to date, as the daemon does: `search` and `report` only
/// read the journal (they may not be able to write it), so the writer indexes.
async fn index_for_search(journal: &Journal) {
    let behind = match journal.call(crate::query::index::state).await {
        Ok(s) => s.behind(),
        Err(_) => 0,
    };
    if behind == 0 {
        return;
    }
    if behind > 20_000 {
        eprintln!("indexing {behind} events for search…");
    }
    if let Err(e) = journal.call(crate::query::index::catch_up).await {
        tracing::warn!(error = %e, "could not bring the search index up to date; the next collect or the daemon retries");
    }
}

/// Awaits futures concurrently, keeping their order.
async fn futures_join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut pending: Vec<(usize, _)> = futs.into_iter().enumerate().collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => {
                out[*i] = Some(v);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    out.into_iter().map(|o| o.expect("every future finished")).collect()
}

/// Opens the journal for writing, applying `journal.max_size`.
pub async fn open_journal(settings: &Settings) -> anyhow::Result<Journal> {
    let journal = open_at(&settings.journal, Access::Write).await?;
    if let Some(bytes) = settings.journal_max_size {
        journal.call(move |j| j.set_max_size(bytes)).await?;
    }
    Ok(journal)
}

/// Opens the journal at `at` off the async threads. A database that cannot be used is named
/// in the error (without its password); a data directory's errors already name it.
pub async fn open_at(at: &Location, access: Access) -> anyhow::Result<Journal> {
    let place = at.clone();
    match tokio::task::spawn_blocking(move || Journal::open_at(&place, access)).await? {
        Ok(j) => Ok(j),
        Err(e) if matches!(at, Location::Url(_)) => {
            Err(anyhow::Error::new(e).context(format!("cannot use the journal database {at}")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let settings = Arc::new(load_settings(&args.source, args.since.as_deref())?);
    if settings.tenants.is_empty() {
        bail!(crate::config::ConfigError::Invalid("the configuration has no [[tenants]]".into()));
    }
    let journal = open_journal(&settings).await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tracing::info!(
        tenants = settings.tenants.len(),
        sinks = settings.sinks.len(),
        interval_s = settings.interval.as_secs(),
        journal = %settings.journal,
        "tines-audit running; stop with Ctrl-C or SIGTERM"
    );
    let web = start_web(&settings, &journal, &rx).await?.map(|(_, handle)| handle);
    let daemon = tokio::spawn(service::run(settings, journal, rx));
    shutdown_signal().await;
    tracing::info!("shutting down: finishing deliveries");
    let _ = tx.send(true);
    daemon.await.context("daemon task failed")??;
    if let Some(w) = web {
        w.await.context("web task failed")??;
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the console/API/metrics listener when `[web]` is configured.
pub async fn start_web(
    settings: &Settings,
    journal: &Journal,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<(std::net::SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)>> {
    let Some(w) = &settings.web else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(w.bind)
        .await
        .with_context(|| format!("cannot listen on {} (web.bind): is another process using it?", w.bind))?;
    // Rule files are read and parsed off the async threads.
    let detect = settings.detect.clone();
    let rules =
        tokio::task::spawn_blocking(move || crate::web::alerts::RuleBook::for_settings(detect.as_ref())).await?;
    let state = crate::web::AppState {
        journal: journal.clone(),
        auth: Arc::new(crate::web::auth::Auth::with_users(w.users.clone()).with_allowed_hosts(w.allowed_hosts.clone())),
        tenants: settings.tenants.iter().map(|t| t.name.clone()).collect(),
        sinks: settings.sinks.iter().map(|s| s.name()).collect(),
        readiness: settings.readiness.clone(),
        geo: crate::query::geo::for_settings(Some(settings)),
        rules: Arc::new(rules),
        signing_key: Some(settings.signing_key()),
    };
    let address = listener.local_addr()?;
    tracing::info!(%address, "console, API, /metrics and /readyz listening");
    let mut stop = stop.clone();
    let handle = tokio::spawn(crate::web::serve(listener, state, async move { service::stopped(&mut stop).await }));
    Ok(Some((address, handle)))
}

async fn backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let settings = load_settings(&args.source, None)?;
    let [tenant_cfg] = settings.tenants.as_slice() else {
        bail!(crate::config::ConfigError::Invalid("backfill works on one tenant: pick one with --tenant NAME".into()));
    };
    let now = now_secs();
    let bad = |e: crate::timeutil::TimeArgError| crate::config::ConfigError::Invalid(e.to_string());
    let start = parse_time_arg(&args.since, now).map_err(bad)?;
    let journal = open_journal(&settings).await?;
    let end = match &args.until {
        Some(u) => parse_time_arg(u, now).map_err(bad)?,
        None => {
            let name = tenant_cfg.name.clone();
            let cursor = journal.call(move |j| j.progress(&name, service::CURSOR_JOB)).await?;
            cursor.map_or(now - settings.windows.settle_secs, |c| c.position)
        }
    };
    if start >= end {
        bail!(crate::config::ConfigError::Invalid(format!(
            "nothing to backfill: --since {} is not before the end {} (the cursor, or --until)",
            format_rfc3339(start),
            format_rfc3339(end)
        )));
    }
    if now - start > 2 * 365 * 86_400 {
        tracing::warn!("Tines keeps audit logs for two years; the start of this range is older than that");
    }
    let tenant = service::Tenant::new(tenant_cfg.clone(), &settings)?;
    let key = Arc::new(service::signing_key(&settings)?);
    let progress = progress_reporter(!args.no_progress);
    let (job, o) = service::backfill(&journal, &tenant, &settings, start, end, args.restart, progress).await?;
    sign_checkpoints(&journal, &key, vec![tenant_cfg.name.clone()], "backfill").await?;
    println!(
        "{}: {} {} new events ({} fetched in {} pages); position {}",
        tenant_cfg.name,
        job.job,
        o.inserted,
        o.fetched,
        o.pages,
        format_rfc3339(o.to)
    );
    let mut consumers = service::consumers(&settings, Some(&key))?;
    // Indexing is the collector's CPU, delivery mostly the destination's wait: side by side.
    let ((), delivered) = tokio::join!(index_for_search(&journal), service::drain_all(&journal, &mut consumers));
    for (name, r) in delivered {
        println!("sink {name}: delivered {} events", r?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn state(args: StateArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        StateAction::Show { source, json } => {
            let journal = open_at(&journal_location(&source)?, Access::ReadOnly).await?;
            output::state_show(&journal, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        StateAction::Export { source, file } => {
            match journal_location(&source)? {
                Location::Dir(dir) => {
                    let f = file.clone();
                    tokio::task::spawn_blocking(move || Journal::open_read_only(&dir)?.export(&f)).await??;
                }
                at => {
                    // Any other database is written out row by row into an SQLite journal file.
                    let journal = open_at(&at, Access::ReadOnly).await?;
                    let f = file.clone();
                    let copied = journal
                        .call(move |j| crate::journal::dump::export_file(j, &f, &|n| eprintln!("{n} events written")))
                        .await?;
                    println!("{} events", copied.events);
                }
            }
            println!("exported the journal to {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        StateAction::Import { source, file, replace } => match journal_location(&source)? {
            Location::Dir(dir) => {
                let (f, d) = (file.clone(), dir.clone());
                let j = tokio::task::spawn_blocking(move || Journal::import(&f, &d, replace)).await??;
                let n = j.call(|j| j.count_events(None)).await?;
                println!("imported {} ({n} events) into {}", file.display(), dir.display());
                Ok(ExitCode::SUCCESS)
            }
            at => {
                if replace {
                    bail!(ConfigError::Invalid(format!(
                        "--replace is for a data directory's journal; the journal at {at} is never replaced: import into an empty database (or schema)"
                    )));
                }
                // Loaded in one transaction into an empty journal: all of it, or nothing.
                let journal = open_at(&at, Access::Write).await?;
                let f = file.clone();
                let copied = journal
                    .call(move |j| crate::journal::dump::import_file(&f, j, &|n| eprintln!("{n} events loaded")))
                    .await?;
                println!("imported {} ({} events) into {at}", file.display(), copied.events);
                Ok(ExitCode::SUCCESS)
            }
        },
        StateAction::Reset { source, job, yes } => {
            let at = journal_location(&source)?;
            let Some(tenant) = source.tenant.clone() else {
                bail!(crate::config::ConfigError::Invalid(
                    "state reset needs --tenant NAME (see `tines-audit state show`)".into()
                ));
            };
            if !yes {
                println!(
                    "would forget {tenant}/{job}: the next sync starts again from its since (events already collected stay, and are not duplicated). Re-run with --yes to do it."
                );
                return Ok(ExitCode::SUCCESS);
            }
            let journal = open_at(&at, Access::Write).await?;
            let (t, j) = (tenant.clone(), job.clone());
            if journal.call(move |jr| jr.reset_progress(&t, &j)).await? {
                println!("forgot {tenant}/{job}");
                Ok(ExitCode::SUCCESS)
            } else {
                bail!(crate::config::ConfigError::Invalid(format!(
                    "no state {tenant}/{job} (see `tines-audit state show`)"
                )))
            }
        }
    }
}

/// Where the journal is, for the commands that need nothing else (no tenant, no key).
fn journal_location(a: &SourceArgs) -> anyhow::Result<Location> {
    let config = a.config.as_deref().map(reader::load).transpose()?;
    Ok(reader::location(&a.journal_url, a.data_dir.as_deref(), config)?)
}

/// The data directory of a SQLite journal, for what only SQLite does (`state export`, `state import`).
async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let settings = load_settings(&args.source, None)?;
    println!(
        "configuration ok: {} tenant(s), {} sink(s), journal {}",
        settings.tenants.len(),
        settings.sinks.len(),
        redact(&settings.journal.to_string())
    );
    if args.offline {
        return Ok(ExitCode::SUCCESS);
    }
    let mut first_error: Option<anyhow::Error> = None;
    if let Location::Url(_) = &settings.journal {
        // Reachable, and at a schema this build reads (or empty: created by the first run).
        let at = settings.journal.clone();
        let shown = redact(&at.to_string()).into_owned();
        match tokio::task::spawn_blocking(move || Journal::open_at(&at, Access::ReadOnly)).await? {
            Ok(j) => {
                let n = j.call(|j| j.count_events(None)).await?;
                println!("journal {shown}: ok ({n} events)");
            }
            Err(crate::journal::JournalError::Missing(_)) => {
                println!("journal {shown}: ok (reachable; empty: the first run creates the journal)")
            }
            Err(e) => {
                println!("journal {shown}: FAILED: {}", redact(&e.to_string()));
                first_error.get_or_insert(e.into());
            }
        }
    }
    for t in service::tenants(&settings)? {
        let now = now_secs();
        let q = crate::source::tines::client::PageQuery {
            after: now - 86_400,
            before: now,
            page: 1,
            per_page: 1,
            user_ids: &t.config.filters.user_ids,
            operation_names: &t.config.filters.operation_names,
        };
        match t.client.fetch_page(&q).await {
            Ok(p) => println!(
                "tenant {}: ok ({} reachable, key can read audit logs; {} events in the last 24 h)",
                t.config.name,
                t.config.endpoint.host(),
                p.meta.count.map_or_else(|| "?".to_string(), |c| c.to_string())
            ),
            Err(e) => {
                println!("tenant {}: FAILED: {}", t.config.name, redact(&e.to_string()));
                first_error.get_or_insert(e.into());
            }
        }
    }
    for mut consumer in service::consumers(&settings, None)? {
        match consumer.health_check().await {
            Ok(what) => println!("sink {}: ok ({})", consumer.name(), redact(&what)),
            Err(e) => {
                println!("sink {}: FAILED: {}", consumer.name(), redact(&e.to_string()));
                first_error.get_or_insert(anyhow::Error::new(e));
            }
        }
    }
    match first_error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => Ok(ExitCode::from(exit_code(&e) as u8)),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_command_with_a_data_dir_takes_a_journal_url_from_the_flag_or_its_hidden_variable() {
        let cli = Cli::command();
        let mut seen = 0;
        let mut stack: Vec<&clap::Command> = vec![&cli];
        while let Some(c) = stack.pop() {
            stack.extend(c.get_subcommands());
            // `demo` makes its own journal; `keys public` reads only the key in the data directory.
            if !c.get_arguments().any(|a| a.get_id() == "data_dir") || ["demo", "public"].contains(&c.get_name()) {
                continue;
            }
            let arg = c.get_arguments().find(|a| a.get_long() == Some("journal-url"));
            let arg = arg.unwrap_or_else(|| panic!("{} takes --data-dir but not --journal-url", c.get_name()));
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some("TINES_AUDIT_JOURNAL_URL"));
            assert!(arg.is_hide_env_values_set(), "{}: --help would show the variable's password", c.get_name());
            seen += 1;
        }
        assert!(seen >= 10, "{seen}");
    }

    #[test]
    fn the_flag_beats_the_configs_url_and_is_never_shown() {
        let cli = Cli::try_parse_from([
            "tines-audit",
            "collect",
            "--tenant",
            "acme.tines.com",
            "--journal-url",
            "postgresql://audit:unit-cli-pass-61@db.example/audit",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("unit-cli-pass-61"));
        let Command::Collect(c) = cli.command else { panic!() };
        let configured = || Ok(Some(Location::Url(Secret::url("postgresql://cfg@cfg.example/audit"))));
        let at = c.source.journal_url.choose(configured, || "d".into()).unwrap();
        assert_eq!(at.to_string(), "postgresql://audit:***@db.example/audit");
        assert_eq!(redact("unit-cli-pass-61"), crate::secret::REDACTED);
        let none = JournalUrlArg::default();
        assert_eq!(none.choose(configured, || "d".into()).unwrap().to_string(), "postgresql://cfg@cfg.example/audit");
        assert_eq!(none.choose(|| Ok(None), || "d".into()).unwrap(), Location::Dir("d".into()));
    }
}
