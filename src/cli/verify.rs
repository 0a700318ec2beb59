//! `tines-audit verify`: checks the journal's hash chain and its signed checkpoints, and
//! names every record changed, deleted, inserted or moved since it was collected
//! (ARCHITECTURE.md, "Tamper evidence").

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{SourceArgs, journal_location, open_at};
use crate::journal::Access;
use crate::journal::chain::verify_journal;
use crate::signing::{Keyring, PublicKey};

/// Exit code when verification finds a problem.
pub const EXIT_VERIFY: u8 = 13;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// A public key (PEM, from `tines-audit keys public`) whose signatures to trust
    /// (repeatable). Default: the public half of this installation's signing key.
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_key: Vec<PathBuf>,
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
}

/// The keys to trust: those given with `--public-key`, else the local signing key's
/// public half (none if there is no key yet).
pub fn keyring(
    files: &[PathBuf],
    config: Option<&std::path::Path>,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<Keyring> {
    if !files.is_empty() {
        let keys = files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f)
                    .map_err(|source| crate::signing::KeyError::Io { path: f.clone(), source })?;
                Ok(PublicKey::from_pem(&text, &f.display().to_string())?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(Keyring::new(keys));
    }
    let local = super::keys::location(config, data_dir)?.load()?;
    Ok(Keyring::new(local.iter().map(|k| *k.public()).collect()))
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(lake) = &args.object_store {
        return super::verify_lake::verify_lake(&args, lake).await;
    }
    let journal = open_at(&journal_location(&args.source)?, Access::ReadOnly).await?;
    let keys = keyring(&args.public_key, args.source.config.as_deref(), args.source.data_dir.as_deref())?;
    if keys.is_empty() && !journal.call(|j| j.latest_checkpoints()).await?.is_empty() {
        return Err(crate::config::ConfigError::Invalid(
            "the journal's checkpoints are signed, but there is no key to check them with: give the public key with \
             --public-key FILE (from `tines-audit keys public`)"
                .into(),
        )
        .into());
    }
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
    let report = journal.call(move |j| verify_journal(j, &keys, &move |seq| b.set_position(seq.max(0) as u64))).await?;
    bar.finish_and_clear();
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        for c in &report.newest_checkpoints {
            println!(
                "tenant {}: newest checkpoint {} signed {} by {} at chain position {}",
                c.tenant, c.number, c.time, c.key, c.chain_n
            );
        }
        let verdict = if report.problems.is_empty() { "verified" } else { "FAILED" };
        println!(
            "journal {verdict}: {} events and {} signed checkpoints checked across {} tenants, {} problem(s){}",
            report.verified,
            report.checkpoints,
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
