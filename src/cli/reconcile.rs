//! `tines-audit reconcile`: one reconciliation pass over every configured
//! tenant (or `--tenant`), from `--since` up to what the cursor has closed.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::{SourceArgs, load_settings, open_journal};
use crate::service;
use crate::timeutil::{format_rfc3339, now_secs, parse_time_arg};

/// Re-count each closed time slice with the API and fetch what the journal is missing.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// How far back to check: RFC 3339 or an age such as 7d (default: collect.reconcile_window, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Do not show progress even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

pub async fn reconcile(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let settings = Arc::new(load_settings(&args.source, None)?);
    if settings.tenants.is_empty() {
        anyhow::bail!(crate::config::ConfigError::Invalid("the configuration has no [[tenants]]".into()));
    }
    let now = now_secs();
    let since = match &args.since {
        Some(s) => parse_time_arg(s, now).map_err(|e| crate::config::ConfigError::Invalid(e.to_string()))?,
        None => now - settings.reconcile.window.as_secs() as i64,
    };
    let journal = open_journal(&settings).await?;
    let mut failed = None;
    for tenant in service::tenants(&settings)? {
        let name = tenant.config.name.clone();
        let show = !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let report = move |done: u64, total: u64| {
            if show {
                eprint!("\r{name}: reconciling, step {done} of {total}   ");
            }
        };
        match service::reconcile_tenant(&journal, &tenant, &settings, since, &report).await {
            Ok(o) => {
                if show {
                    eprintln!();
                }
                println!(
                    "{}: checked {} slices of {}..{}; {} differed and were read again; {} missing events found and collected",
                    tenant.config.name,
                    o.slices,
                    format_rfc3339(o.range_start),
                    format_rfc3339(o.range_end),
                    o.reread,
                    o.found
                );
                for f in &o.finds {
                    println!(
                        "  {}..{}: {} found (API counted {}, journal had {}), dated {}..{}, found up to {} s after they happened",
                        format_rfc3339(f.slice_start),
                        format_rfc3339(f.slice_end),
                        f.found,
                        f.api_count.map_or_else(|| "-".to_string(), |c| c.to_string()),
                        f.journal_count,
                        format_rfc3339(f.oldest),
                        format_rfc3339(f.newest),
                        f.max_late_secs
                    );
                }
            }
            Err(e) => {
                eprintln!("error: {}: {e}", tenant.config.name);
                failed.get_or_insert(anyhow::Error::new(e));
            }
        }
    }
    let mut consumers = service::consumers(&settings, None)?;
    for (name, r) in service::drain_all(&journal, &mut consumers).await {
        match r {
            Ok(n) => println!("sink {name}: delivered {n} events"),
            Err(e) => {
                eprintln!("error: {e}");
                failed.get_or_insert(anyhow::Error::new(e));
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}
