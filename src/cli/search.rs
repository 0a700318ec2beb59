//! `tines-audit search` and `tines-audit report`: read the journal (catching
//! the search index up first), print a table for people or JSON, NDJSON or
//! CSV for scripts, or write a compliance report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::config::ConfigError;
use crate::journal::{Access, Journal};
use crate::query::search::printable;
pub use crate::query::search::{CSV_HEADER, csv_row};
use crate::query::{self, CountryLookup, Cursor, EventRow, FilterArgs};
use crate::timeutil::now_secs;

/// Where the journal is: a config file, a data directory or a database URL.
#[derive(Debug, Args, Clone, Default)]
pub struct JournalArgs {
    /// Config file (TOML); its data_dir and [journal] url are read (and its tenants decide the country lookup).
    #[arg(long, short = 'c', env = "TINES_AUDIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory holding the journal (overrides the config's data_dir).
    #[arg(long, env = "TINES_AUDIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub journal_url: super::JournalUrlArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchFormat {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON document: {"events": [...], "next_cursor": ...}.
    Json,
    /// One event a line.
    Ndjson,
    /// A header line, then one event a row (the record in the last column).
    Csv,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub journal: JournalArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SearchFormat::Table)]
    pub format: SearchFormat,
    /// Events per page (at most 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Continue after a previous page (its next_cursor).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Every matching event, page after page (for json, ndjson and csv).
    #[arg(long)]
    pub all: bool,
}

/// The journal, opened read-only (no lock, no migration, no write: it may be another
/// user's, or a copy), and the country lookup. A config file is read for where the
/// journal is and the country lookup only: readers need no API key.
pub(super) async fn open(a: &JournalArgs) -> anyhow::Result<(Journal, Arc<dyn CountryLookup>)> {
    let config = a.config.as_deref().map(super::reader::load).transpose()?;
    let geo = config.as_ref().map_or_else(|| query::geo::for_settings(None), |c| c.geo.clone());
    let at = super::reader::location(&a.journal_url, a.data_dir.as_deref(), config)?;
    let journal = super::open_at(&at, Access::ReadOnly).await?;
    Ok((journal, geo))
}

/// Whether a filter's answer depends on the search index (free text, display names,
/// networks, countries, categories, excluded or not), which the daemon and `collect` keep current.
fn uses_index(f: &query::EventFilter) -> bool {
    let x = &f.exclude;
    !f.text.is_empty()
        || f.users.iter().chain(&x.users).any(|u| matches!(u, query::UserSpec::Name(_)))
        || f.ips.iter().chain(&x.ips).any(|n| !n.is_host())
        || !f.countries.is_empty()
        || !x.countries.is_empty()
        || !f.categories.is_empty()
        || !x.categories.is_empty()
}

/// Says so when the index has not caught up with the journal and the answer depends on it.
async fn warn_if_index_behind(journal: &Journal, f: &query::EventFilter) -> anyhow::Result<()> {
    if !uses_index(f) {
        return Ok(());
    }
    let behind = journal.call(query::index::state).await?.behind();
    if behind > 0 {
        eprintln!(
            "warning: the search index is {behind} events behind the journal (the daemon or the next `tines-audit collect` indexes them); free text, names, networks, countries and categories may miss the newest events"
        );
    }
    Ok(())
}

pub async fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let filter = args.filter.build(now_secs()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let cursor =
        args.cursor.as_deref().map(Cursor::decode).transpose().map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let (journal, geo) = open(&args.journal).await?;
    warn_if_index_behind(&journal, &filter).await?;
    match write_results(&args, &journal, filter, cursor, geo).await {
        Err(e) if super::stdout_closed(&e) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

/// Pages through the results, writing each page as it comes.
async fn write_results(
    args: &SearchArgs,
    journal: &Journal,
    filter: query::EventFilter,
    mut cursor: Option<Cursor>,
    geo: Arc<dyn CountryLookup>,
) -> anyhow::Result<ExitCode> {
    let limit = args.limit.clamp(1, query::search::MAX_PAGE);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut first = true;
    let mut total = 0usize;
    loop {
        let (f, g) = (filter.clone(), geo.clone());
        let page = journal.call(move |j| Ok(query::search(j, &f, cursor, limit, g.as_ref()))).await?;
        let page = page.map_err(|e| match e {
            query::SearchError::Journal(j) => anyhow::Error::new(j),
            other => anyhow::Error::new(ConfigError::Invalid(other.to_string())),
        })?;
        total += page.events.len();
        match args.format {
            SearchFormat::Table => write_table(&mut out, &page.events, first)?,
            SearchFormat::Ndjson => {
                for e in &page.events {
                    writeln!(out, "{}", event_json(e))?;
                }
            }
            SearchFormat::Csv => write_csv(&mut out, &page.events, first)?,
            SearchFormat::Json if !args.all => {
                let v = serde_json::json!({
                    "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
                    "next_cursor": page.next_cursor,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            }
            SearchFormat::Json => {
                for (i, e) in page.events.iter().enumerate() {
                    let sep = if first && i == 0 { "[\n" } else { ",\n" };
                    write!(out, "{sep}{}", event_json(e))?;
                }
            }
        }
        first = false;
        match (&page.next_cursor, args.all) {
            (Some(c), true) => cursor = Some(Cursor::decode(c)?),
            (next, _) => {
                if args.format == SearchFormat::Json && args.all {
                    writeln!(out, "{}", if total == 0 { "[]" } else { "\n]" })?;
                }
                if args.format == SearchFormat::Table {
                    if total == 0 {
                        writeln!(out, "no matching events")?;
                    } else if let Some(c) = next {
                        writeln!(out, "\nmore: add --cursor {c} (or --all with --format ndjson)")?;
                    }
                }
                break;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// An event for scripts: the indexed fields, then the record itself as JSON.
pub fn event_json(e: &EventRow) -> serde_json::Value {
    e.to_json()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

fn write_table(out: &mut impl Write, events: &[EventRow], header: bool) -> std::io::Result<()> {
    let color = super::colour(std::io::stdout().is_terminal());
    if header && !events.is_empty() {
        let h = format!(
            "{:<20}  {:<12}  {:<34}  {:<32}  {:<15}  {:<2}  {}",
            "TIME (UTC)", "TENANT", "OPERATION", "USER", "IP", "CC", "ID"
        );
        if color { writeln!(out, "\x1b[1m{h}\x1b[0m")? } else { writeln!(out, "{h}")? }
    }
    // Every value from a record is escaped: a user name holding ESC sequences must not drive the terminal.
    let cell = |v: Option<&str>| printable(v.unwrap_or("")).into_owned();
    for e in events {
        let user = e.user_email.as_deref().or(e.user_name.as_deref());
        writeln!(
            out,
            "{:<20}  {:<12}  {:<34}  {:<32}  {:<15}  {:<2}  {}",
            e.created_at,
            truncate(&cell(Some(&e.tenant)), 12),
            truncate(&cell(Some(&e.operation_name)), 34),
            truncate(&cell(user), 32),
            cell(e.request_ip.as_deref()),
            cell(e.country.as_deref()),
            e.id
        )?;
    }
    Ok(())
}

fn write_csv(out: &mut impl Write, events: &[EventRow], header: bool) -> std::io::Result<()> {
    if header {
        writeln!(out, "{CSV_HEADER}")?;
    }
    for e in events {
        writeln!(out, "{}", csv_row(e))?;
    }
    Ok(())
}

/// Makes sure a report's output directory exists.
pub(super) fn prepare_output(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One self-contained page (inline charts; print it to PDF from a browser).
    Html,
    /// Markdown tables.
    Md,
    /// One row per evidence item.
    Csv,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub journal: JournalArgs,
    /// The framework whose controls the sections are mapped to.
    #[arg(long, value_enum)]
    pub framework: query::report::Framework,
    /// Start of the period (inclusive): RFC 3339, a date, or an age such as 90d.
    #[arg(long)]
    pub from: String,
    /// End of the period (exclusive; default now).
    #[arg(long, default_value = "now")]
    pub to: String,
    /// Only these tenants (repeatable; default every tenant in the journal).
    #[arg(long = "tenant", value_name = "NAME")]
    pub tenants: Vec<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// A public key (PEM) whose signed checkpoints the integrity section trusts (repeatable;
    /// default: this installation's signing key).
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_key: Vec<PathBuf>,
    /// Read each tenant's admin API now (with its key from --config) so the posture section
    /// lists entries in the tenant that no record created; without it, it says they were not checked.
    #[arg(long)]
    pub live: bool,
}

/// What each configured tenant of the report holds now, for the posture section.
async fn live_posture(
    args: &ReportArgs,
    tenants: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, crate::posture::Live>> {
    let mut out = std::collections::BTreeMap::new();
    if !args.live {
        return Ok(out);
    }
    if args.journal.config.is_none() {
        return Err(ConfigError::Invalid(
            "--live reads each tenant's admin API with its key: give --config with the tenants".into(),
        )
        .into());
    }
    let source = super::SourceArgs {
        config: args.journal.config.clone(),
        data_dir: args.journal.data_dir.clone(),
        journal_url: args.journal.journal_url.clone(),
        ..Default::default()
    };
    let settings = super::load_settings(&source, None)?;
    for t in &settings.tenants {
        if !tenants.is_empty() && !tenants.contains(&t.name) {
            continue;
        }
        let client = crate::service::Tenant::new(t.clone(), &settings)?.client;
        out.insert(t.name.clone(), crate::posture::live::fetch(&client).await);
    }
    Ok(out)
}

pub async fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let now = now_secs();
    let bad = |e: query::FilterError| ConfigError::Invalid(e.to_string());
    let from = query::filter::parse_point(&args.from, now).map_err(bad)?;
    let to = query::filter::parse_point(&args.to, now).map_err(bad)?;
    if from >= to {
        return Err(ConfigError::Invalid("--from must be before --to".into()).into());
    }
    let (journal, geo) = open(&args.journal).await?;
    let keys =
        super::verify::keyring(&args.public_key, args.journal.config.as_deref(), args.journal.data_dir.as_deref())?;
    let (framework, tenants) = (args.framework, args.tenants.clone());
    let live = live_posture(&args, &tenants).await?;
    let report = journal
        .call(move |j| Ok(query::report::build_with_live(j, framework, from, to, &tenants, geo.as_ref(), &keys, &live)))
        .await?
        .map_err(|e| match e {
            query::SearchError::Journal(j) => anyhow::Error::new(j),
            other => anyhow::Error::new(ConfigError::Invalid(other.to_string())),
        })?;
    let text = match args.format {
        ReportFormat::Html => query::report::html(&report),
        ReportFormat::Md => query::report::markdown(&report),
        ReportFormat::Csv => query::report::csv(&report),
    };
    match &args.output {
        Some(path) => {
            prepare_output(path)?;
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
            let gaps: usize = report.continuity.iter().map(|c| c.gaps.iter().filter(|g| !g.pending).count()).sum();
            println!(
                "wrote {} ({} events in the period, {} in the report's sections, {} continuity gap(s))",
                path.display(),
                report.total_events,
                report.sections.iter().map(|s| s.count).sum::<usize>(),
                gaps
            );
        }
        None => match std::io::stdout().lock().write_all(text.as_bytes()).and_then(|()| std::io::stdout().flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        },
    }
    Ok(ExitCode::SUCCESS)
}
