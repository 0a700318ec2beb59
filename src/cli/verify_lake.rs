//! `tines-audit verify --object-store`: a lake against its signed digests, with public
//! keys alone (docs/verifying.md). The verification itself is
//! [`crate::sinks::object_store::verify_lake`]; this picks the lake and the keys, and
//! prints what it found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use super::verify::{EXIT_VERIFY, VerifyArgs};
use crate::config::{ConfigError, RawConfig};
use crate::signing::Keyring;
use crate::sinks::SinkConfig;
use crate::sinks::object_store::ObjectStoreConfig;
use crate::sinks::object_store::verify_lake::{Lake, LakeReport, Progress};

pub async fn verify_lake(args: &VerifyArgs, target: &str) -> anyhow::Result<ExitCode> {
    let config = args.source.config.as_deref();
    let lake = Lake::of(&sink_config(config, target)?)?;
    let keys = keyring(&args.public_key, config, args.source.data_dir.as_deref())?;
    let bar = if args.no_progress || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "verifying {bar:30} {bytes}/{total_bytes} of objects, {bytes_per_sec}, {eta} left",
            )
            .expect("a valid template"),
        )
    };
    let b = bar.clone();
    let progress = Arc::new(move |p: Progress| match p {
        Progress::Total(n) => b.set_length(n),
        Progress::Hashed(n) => b.inc(n),
    });
    let report = lake.verify(&keys, progress).await?;
    bar.finish_and_clear();
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(EXIT_VERIFY) })
}

fn print_text(r: &LakeReport) {
    for p in &r.problems {
        println!("{p}");
    }
    let verdict = if r.ok { "verified" } else { "FAILED" };
    let period = match (&r.covers_from, &r.covers_to) {
        (Some(a), Some(b)) => format!(" from {a} to {b}"),
        _ => String::new(),
    };
    let signed = if r.signed_by.is_empty() { String::new() } else { format!(", signed by {}", r.signed_by.join(", ")) };
    println!(
        "lake {verdict}: {} against {} digest(s){period}{signed}: {} objects ({} events, {} bytes) verified, {} problem(s)",
        r.url,
        r.digests,
        r.objects_verified,
        r.events_verified,
        r.bytes_verified,
        r.problems.len()
    );
    if r.not_yet_covered > 0 {
        println!(
            "{} object(s) not yet covered by a digest: written in the open period (the oldest at {}); its digest is \
             signed once the period ends",
            r.not_yet_covered,
            r.oldest_not_yet_covered.as_deref().unwrap_or("?")
        );
    }
    if r.predating_chain > 0 {
        println!(
            "{} object(s) predate the first digest (written before digests were on) and cannot be checked",
            r.predating_chain
        );
    }
}

/// The sink `target` names in the config (by name or URL), else `target` as a URL whose
/// credentials come from the environment.
fn sink_config(config: Option<&Path>, target: &str) -> anyhow::Result<ObjectStoreConfig> {
    let mut names = Vec::new();
    if let Some(path) = config {
        for s in RawConfig::load(path)?.sinks {
            if let SinkConfig::ObjectStore(c) = s {
                if c.name() == target || c.url.trim_end_matches('/') == target.trim_end_matches('/') {
                    return Ok(c);
                }
                names.push(c.name());
            }
        }
    }
    if target.contains("://") {
        let cfg: ObjectStoreConfig = serde_json::from_value(serde_json::json!({ "url": target }))
            .map_err(|e| ConfigError::Invalid(format!("--object-store {target:?}: {e}")))?;
        return Ok(cfg);
    }
    Err(ConfigError::Invalid(match config {
        Some(path) if names.is_empty() => {
            format!("--object-store {target:?}: {} has no object_store sink; give the lake's URL", path.display())
        }
        Some(path) => format!(
            "--object-store {target:?}: {} has no object_store sink of that name or URL (it has: {})",
            path.display(),
            names.join(", ")
        ),
        None => format!(
            "--object-store {target:?} is not a URL: give the lake's URL (s3://bucket/prefix), or a sink name with --config"
        ),
    })
    .into())
}

/// The keys given with --public-key, else this installation's own public key; one is needed.
fn keyring(files: &[PathBuf], config: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<Keyring> {
    let keys = super::verify::keyring(files, config, data_dir)?;
    if keys.is_empty() {
        let at = super::keys::location(config, data_dir)?;
        return Err(ConfigError::Invalid(format!(
            "no public key to verify with: there is no signing key at {}; give the lake's public key with \
             --public-key FILE (the output of `tines-audit keys public` where the lake is written)",
            at.path().display()
        ))
        .into());
    }
    Ok(keys)
}
