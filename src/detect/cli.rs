//! `tines-audit rules …`: list, validate and test rule files, and backtest
//! the rules over the journal's history.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::engine::{Engine, EngineOptions};
use super::geoip::GeoIp;
use super::rules::{DocKind, RulePack, run_examples};
use super::{DetectSettings, RawDetect};
use crate::config::{ConfigError, RawConfig};
use crate::journal::{Access, Journal, Location};
use crate::timeutil::{format_rfc3339, now_secs, parse_time_arg};

/// Exit code when rules have problems or examples fail.
pub const EXIT_RULES: u8 = 11;

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub action: RulesAction,
}

#[derive(Debug, Subcommand)]
pub enum RulesAction {
    /// List the rules that would run (the config's detect.rules, else the shipped pack) and those left out.
    List {
        /// Config file whose [detect] section is used.
        #[arg(long, short = 'c', env = "TINES_AUDIT_CONFIG")]
        config: Option<PathBuf>,
        /// Rule files or directories instead of the configured or shipped ones.
        #[arg(long = "rules", value_name = "PATH")]
        rules: Vec<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check rule files (YAML, Sigma, field names, settings, examples); each problem as FILE:LINE [rule] field: message.
    Validate {
        /// Rule files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run every rule's examples: positive ones must fire, negative ones must not.
    Test {
        /// Rule files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// GeoIP databases for the examples' addresses (default: the emulator's own ranges, as the shipped examples use).
        #[arg(long, value_name = "MMDB")]
        geoip: Vec<PathBuf>,
    },
    /// Run the rules over the journal's history and print what would have fired; nothing is stored or sent.
    Backtest {
        /// Config file (its data_dir, [journal] url and [detect] section).
        #[arg(long, short = 'c', env = "TINES_AUDIT_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory holding the journal (overrides the config's).
        #[arg(long, env = "TINES_AUDIT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        journal_url: crate::cli::JournalUrlArg,
        /// Events created since: an age such as 30d, or RFC 3339.
        #[arg(long, default_value = "30d")]
        since: String,
        /// Rule files or directories instead of the configured or shipped ones.
        #[arg(long = "rules", value_name = "PATH")]
        rules: Vec<PathBuf>,
        /// GeoIP databases (adds to the config's detect.geoip).
        #[arg(long, value_name = "MMDB")]
        geoip: Vec<PathBuf>,
        /// Resolve addresses with the emulator's own country ranges (for journals collected from it).
        #[arg(long)]
        emulator_geoip: bool,
        /// Allowed countries for the unexpected-country rule (adds to the config's detect.allowed_countries).
        #[arg(long = "allowed-country", value_name = "CC")]
        allowed_countries: Vec<String>,
        /// Print one JSON object per alert instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The config's detection settings, with where it keeps the journal.
struct Configured {
    data_dir: Option<PathBuf>,
    /// `[journal] url`, when it has one.
    journal_url: Option<Location>,
    detect: DetectSettings,
}

fn detect_settings(config: Option<&PathBuf>) -> anyhow::Result<Configured> {
    let Some(path) = config else {
        let detect = RawDetect::default().build(&[]).map_err(ConfigError::Invalid)?.unwrap_or_default();
        return Ok(Configured { data_dir: None, journal_url: None, detect });
    };
    let raw = RawConfig::load(path)?;
    let data_dir = raw.data_dir.clone();
    let settings = raw.build()?;
    let journal_url = matches!(settings.journal, Location::Url(_)).then_some(settings.journal);
    Ok(Configured { data_dir, journal_url, detect: settings.detect.unwrap_or_default() })
}

pub async fn run(args: RulesArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        RulesAction::List { config, rules, json } => {
            let mut s = detect_settings(config.as_ref())?.detect;
            if !rules.is_empty() {
                s.rules = Some(rules);
            }
            list(&s, json)
        }
        RulesAction::Validate { paths } => {
            let pack = RulePack::load(&paths)?;
            for p in &pack.problems {
                println!("{p}");
            }
            println!("{} file(s), {} rule(s) ok, {} problem(s)", pack.files, pack.docs.len(), pack.problems.len());
            Ok(if pack.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RULES) })
        }
        RulesAction::Test { paths, geoip } => {
            let pack = RulePack::load(&paths)?;
            for p in &pack.problems {
                println!("{p}");
            }
            let geo = if geoip.is_empty() { GeoIp::emulator() } else { GeoIp::open(&geoip)? };
            let outcomes = run_examples(&pack, Arc::new(geo));
            let mut failed = 0;
            for o in &outcomes {
                let want = if o.expect_match { "fires" } else { "stays quiet" };
                if o.passed() {
                    println!("ok    {} / {} ({want})", o.rule, o.example);
                } else {
                    failed += 1;
                    let why = o
                        .error
                        .clone()
                        .unwrap_or_else(|| if o.fired { "it fired".into() } else { "it did not fire".into() });
                    println!("FAIL  {} / {}: should {want}, but {why} ({})", o.rule, o.example, o.file);
                }
            }
            let untested: Vec<&str> = pack
                .docs
                .iter()
                .filter(|d| d.examples.is_empty() && !pack.is_counted_only(&d.id))
                .map(|d| d.id.as_str())
                .collect();
            if !untested.is_empty() {
                println!("no examples: {}", untested.join(", "));
            }
            println!("{} passed, {} failed", outcomes.len() - failed, failed);
            Ok(if failed == 0 && pack.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RULES) })
        }
        RulesAction::Backtest {
            config,
            data_dir,
            journal_url,
            since,
            rules,
            geoip,
            emulator_geoip,
            allowed_countries,
            json,
        } => {
            let Configured { data_dir: cfg_dir, journal_url: cfg_url, detect: mut s } =
                detect_settings(config.as_ref())?;
            if !rules.is_empty() {
                s.rules = Some(rules);
            }
            s.geoip.extend(geoip);
            s.emulator_geoip |= emulator_geoip;
            if !allowed_countries.is_empty() {
                let list = s.vars.entry("allowed_countries".into()).or_default();
                list.extend(allowed_countries.iter().map(|c| c.trim().to_ascii_uppercase()));
            }
            let now = now_secs();
            let since = parse_time_arg(&since, now).map_err(|e| ConfigError::Invalid(format!("--since: {e}")))?;
            let at = journal_url.choose(
                || Ok(cfg_url),
                || data_dir.or(cfg_dir).unwrap_or_else(|| crate::config::DEFAULT_DATA_DIR.into()),
            )?;
            // A backtest only reads: nothing is stored or sent.
            let journal = crate::cli::open_at(&at, Access::ReadOnly).await?;
            let (engine, problems) = s.engine()?;
            for p in &problems {
                eprintln!("left out: {p}");
            }
            backtest(engine, &journal, since, json).await
        }
    }
}

fn list(s: &DetectSettings, json: bool) -> anyhow::Result<ExitCode> {
    let pack = s.load_rules()?;
    let opts = EngineOptions { vars: s.vars.clone(), suppress_secs: s.suppress_secs };
    let (_, off) = Engine::new(&pack, &opts, Arc::new(GeoIp::none()));
    let rows: Vec<(String, String, String, String, String, bool)> = pack
        .docs
        .iter()
        .map(|d| {
            let kind = match &d.kind {
                DocKind::Detection(_) if pack.is_counted_only(&d.id) => "counted".to_string(),
                DocKind::Detection(_) => "detection".to_string(),
                DocKind::Correlation(c) => c.correlation_type.as_str().to_string(),
            };
            let on = !off.iter().any(|p| p.rule.as_deref() == Some(&d.id));
            (d.id.clone(), d.level.clone(), kind, d.title.clone(), d.file.clone(), on)
        })
        .collect();
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(id, level, kind, title, file, on)| {
                serde_json::json!({"id": id, "level": level, "kind": kind, "title": title, "file": file, "on": on})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        for (id, level, kind, title, _, on) in &rows {
            println!("{id:w$}  {level:<8} {kind:<11} {}{title}", if *on { "" } else { "(off) " });
        }
        for p in pack.problems.iter().chain(&off) {
            println!("left out: {p}");
        }
        println!("{} rules, {} left out", rows.len(), pack.problems.len() + off.len());
    }
    Ok(ExitCode::SUCCESS)
}

async fn backtest(engine: Engine, journal: &Journal, since: i64, json: bool) -> anyhow::Result<ExitCode> {
    let report = super::backtest(engine, journal, since).await?;
    let mut per_rule: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &report.raised {
        *per_rule.entry(r.rule.id.clone()).or_default() += 1;
        if json {
            let v = super::alerts::body(r, &[], &super::alerts::Linker::default(), now_secs());
            println!("{v}");
        } else {
            println!("{}  {}", format_rfc3339(r.trigger.created_at), super::alerts::summary(r));
        }
    }
    if !json {
        println!();
        println!(
            "{} events since {}: {} alerts would have fired ({} more suppressed); nothing was stored or sent",
            report.events,
            format_rfc3339(since),
            report.raised.len(),
            report.counters.suppressed
        );
        for (rule, n) in per_rule {
            println!("  {n:>6}  {rule}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
