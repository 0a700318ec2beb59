//! `tines-audit verify`: checks the journal's hash chain and names every record changed,
//! deleted, inserted or moved since it was collected (ARCHITECTURE.md, "Tamper evidence").

use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{SourceArgs, journal_location, open_at};
use crate::journal::Access;
use crate::journal::chain::verify_journal;

/// Exit code when verification finds a problem.
pub const EXIT_VERIFY: u8 = 13;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output: `text` (one line per problem and a summary) or `json` (one object, for automation).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// No progress bar on standard error.
    #[arg(long)]
    pub no_progress: bool,
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let journal = open_at(&journal_location(&args.source)?, Access::ReadOnly).await?;
    let total = journal.call(|j| j.max_seq()).await?;
    let bar = if args.no_progress || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total.max(0) as u64).with_style(
            ProgressStyle::with_template("verifying {bar:30} {pos}/{len} journal seq, {per_sec}, {eta} left")
                .expect("a valid template"),
        )
    };
    let b = bar.clone();
    let report = journal.call(move |j| verify_journal(j, &move |seq| b.set_position(seq.max(0) as u64))).await?;
    bar.finish_and_clear();
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        let verdict = if report.problems.is_empty() { "verified" } else { "FAILED" };
        println!(
            "journal {verdict}: {} events checked across {} tenants, {} problem(s){}",
            report.verified,
            report.tenants,
            report.problems.len(),
            if report.unchained > 0 {
                format!(
                    "; {} events predate the chain (collected before this version) and cannot be checked",
                    report.unchained
                )
            } else {
                String::new()
            }
        );
    }
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_VERIFY) })
}
