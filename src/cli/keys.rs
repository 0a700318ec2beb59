//! `tines-audit keys`: the key that signs checkpoints and digests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::signing::KeyLocation;

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print the public key (PEM) and its fingerprint, to hand to auditors: with it alone
    /// they can check every checkpoint and digest this installation signs. Creates the
    /// signing key in the data directory first if there is none yet.
    Public(PublicArgs),
}

#[derive(Debug, Args)]
pub struct PublicArgs {
    /// Config file (TOML): where the data directory and `[integrity] signing_key` are.
    #[arg(long, short = 'c', env = "TINES_AUDIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory holding the key (overrides the config's data_dir).
    #[arg(long, env = "TINES_AUDIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output: `pem` (the key, then its fingerprint as a `#` line) or `json`.
    #[arg(long, default_value = "pem", value_parser = ["pem", "json"])]
    pub format: String,
}

/// Where the signing key is for commands that only read the config (`keys`, `verify`).
pub fn location(config: Option<&std::path::Path>, data_dir: Option<&std::path::Path>) -> anyhow::Result<KeyLocation> {
    let config = config.map(super::reader::load).transpose()?;
    let (configured, configured_dir) = match config {
        Some(c) => (c.signing_key, Some(c.data_dir)),
        None => (None, None),
    };
    let dir = data_dir
        .map(std::path::Path::to_path_buf)
        .or(configured_dir)
        .unwrap_or_else(|| crate::config::DEFAULT_DATA_DIR.into());
    Ok(KeyLocation::resolve(configured.as_deref(), &dir))
}

pub fn keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::Public(a) => {
            let at = location(a.config.as_deref(), a.data_dir.as_deref())?;
            let (key, created) = at.load_or_create()?;
            if created {
                eprintln!("created a new signing key at {} (mode 0600; back it up)", at.path().display());
            }
            let public = key.public();
            if a.format == "json" {
                let out = serde_json::json!({ "fingerprint": public.fingerprint(), "public_key_pem": public.to_pem() });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", public.to_pem());
                println!("# fingerprint {}", public.fingerprint());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
