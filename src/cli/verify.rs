//! `tines-audit verify`: checks the journal's hash chain and names every record changed,
//! deleted, inserted or moved since it was collected (ARCHITECTURE.md, "Tamper evidence").

use std::path::PathBuf;
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
    /// Verify an object-store lake against its signed digests instead of the journal: the
    /// name of an object_store sink in --config (its credentials and digest_prefix are used),
    /// or the lake's URL (s3://bucket/prefix, gs://, az://, file:///dir; credentials from the
    /// environment). See docs/verifying.md.
    #[arg(long = "object-store", value_name = "SINK_OR_URL")]
    pub object_store: Option<String>,
    /// A public key (PEM, from `tines-audit keys public`) the signatures may be made with;
    /// repeatable. Default: the public half of this installation's signing key.
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_key: Vec<PathBuf>,
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(lake) = &args.object_store {
        return super::verify_lake::verify_lake(&args, lake).await;
    }
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
