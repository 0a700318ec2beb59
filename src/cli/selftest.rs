//! `tines-audit selftest`: runs the self-test (`detect::selftest`) once and prints what
//! each rule and each alert output did. Reads the config only: no journal is opened.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::Exit;
use crate::config::{ConfigError, RawConfig};
use crate::detect::alerts::TestAnswer;
use crate::detect::selftest::{self, Report, RuleResult};
use crate::query::search::printable;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SelftestFormat {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON document (after any test alerts a stdout alert output prints).
    Json,
}

#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Config file: its [detect] rules, values, GeoIP and alert outputs are tested (and its
    /// [[sinks]], for outputs of type sink). Its journal is never opened.
    #[arg(long, short = 'c', env = "TINES_AUDIT_CONFIG")]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: SelftestFormat,
}

pub async fn selftest(args: SelftestArgs) -> anyhow::Result<ExitCode> {
    let settings = RawConfig::load(&args.config)?.build()?;
    let Some(detect) = &settings.detect else {
        return Err(ConfigError::Invalid(format!(
            "{} has no [detect] section (or it says enabled = false): detection is off, so there is nothing to test",
            args.config.display()
        ))
        .into());
    };
    let report = selftest::run(detect, &settings.sinks).await?;
    let mut out = std::io::stdout().lock();
    match args.format {
        SelftestFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        SelftestFormat::Table => write!(out, "{}", table(&report))?,
    }
    out.flush()?;
    if report.passed {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("error: self-test {}", report.summary);
    Ok(ExitCode::from(Exit::Selftest as u8))
}

fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Self-test {} at {}: synthetic events (tenant {}, marked by the field {}) through the configured rules; nothing was written to the journal or the event sinks.\n",
        r.run_id,
        r.started_at,
        selftest::TENANT,
        selftest::SYNTHETIC_FIELD
    );
    let w = r.rules.iter().map(|x| x.rule.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(o, "{:w$}  {:<9}  HOW", "RULE", "RESULT");
    for x in &r.rules {
        let result = match x.result {
            RuleResult::Fired => "fired",
            RuleResult::Counted => "counted",
            RuleResult::NotFired => "NOT FIRED",
            RuleResult::Off => "off",
        };
        let how: Vec<&str> = [x.canary.as_deref(), x.note.as_deref()].into_iter().flatten().collect();
        let _ = writeln!(o, "{:w$}  {result:<9}  {}", x.rule, printable(&how.join("; ")));
    }
    for p in &r.left_out {
        let _ = writeln!(o, "left out: {}", printable(p));
    }
    o.push('\n');
    if r.outputs.is_empty() {
        o.push_str(
            "No alert output is configured ([[detect.outputs]]): alerts reach the journal and the console only.\n",
        );
    } else {
        let w = r.outputs.iter().map(|x| x.output.len()).max().unwrap_or(6).max(6);
        let _ = writeln!(o, "{:w$}  {:<9}  ANSWER", "OUTPUT", "RESULT");
        for x in &r.outputs {
            let (result, answer) = match &x.answer {
                TestAnswer::Delivered(a) => ("delivered", a),
                TestAnswer::Checked(a) => ("checked", a),
                TestAnswer::Failed(a) => ("FAILED", a),
            };
            let _ = writeln!(o, "{:w$}  {result:<9}  {}: {}", x.output, x.destination, printable(answer));
        }
    }
    let _ = writeln!(o, "\n{}", printable(&r.summary));
    o
}
