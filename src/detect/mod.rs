//! Detection: Sigma rules (with correlations) evaluated over the journal as
//! events arrive, with GeoIP enrichment, and alerts that are stored in the
//! journal and delivered to people.
//!
//! - [`rules`]: loading and checking rule files (file:line:field problems), examples;
//! - [`fields`]: the event as rules see it (raw Tines fields and enrichments);
//! - [`engine`]: enrichment, rsigma evaluation, suppression, exportable state;
//! - [`geoip`] and [`mmdb`]: country/ASN lookups, and the emulator's own database;
//! - [`alerts`]: what an alert says and the outputs that deliver it;
//! - [`selftest`]: synthetic events from each rule's examples through an engine of their
//!   own, test alerts to every output: proof that the controls work, outside the journal.
//!
//! The detector is its own consumer of the journal (offset `detector`), not
//! a [`crate::sinks::Sink`]: a batch's alerts, the engine's state and the
//! offset must be committed in one transaction, which the sink runner (one
//! state string per offset) cannot express. Alert outputs are consumers of
//! the alerts table in turn.

pub mod alerts;
pub mod cli;
pub mod engine;
pub mod fields;
pub mod geoip;
pub mod mmdb;
pub mod rules;
pub mod selftest;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, watch};

use self::alerts::{Linker, Output, OutputConfig};
use self::engine::{Counters, Engine, EngineOptions, Raised};
use self::geoip::GeoIp;
use self::rules::{RulePack, RuleProblem};
use crate::journal::{AlertRow, Journal, JournalError};
use crate::sinks::SinkConfig;
use crate::timeutil::{now_secs, parse_duration};

/// The detector's offset in the journal's `consumers` table.
pub const CONSUMER: &str = "detector";

/// `[detect]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetect {
    /// Default true when the section is present.
    pub enabled: Option<bool>,
    /// Rule files or directories; default: the shipped pack built into the binary.
    pub rules: Option<Vec<PathBuf>>,
    /// MaxMind DB files (GeoLite2/GeoIP2 Country or City, DB-IP lite, GeoLite2 ASN), tried in order.
    #[serde(default)]
    pub geoip: Vec<PathBuf>,
    /// ISO country codes activity is expected from (`%allowed_countries%` in rules).
    #[serde(default)]
    pub allowed_countries: Vec<String>,
    /// Other `%name%` placeholder values for rules.
    #[serde(default)]
    pub vars: BTreeMap<String, Vec<String>>,
    /// After an alert, the same rule and group stay quiet this long (default 1h; rules may say otherwise).
    pub suppress: Option<String>,
    /// Events older than this when first evaluated build state but raise no alert (default 24h; "0s": no limit).
    pub alert_lookback: Option<String>,
    /// Link to an event in alerts, with {tenant}, {id}, {seq}, {created_at} (default: the Tines API query that returns it).
    pub event_link: Option<String>,
    #[serde(default)]
    pub outputs: Vec<OutputConfig>,
    /// `run` only: run the self-test this often and record the result (default "off"; at least 1h).
    pub selftest_every: Option<String>,
}

/// `[detect]` validated.
#[derive(Debug, Clone, Default)]
pub struct DetectSettings {
    pub rules: Option<Vec<PathBuf>>,
    pub geoip: Vec<PathBuf>,
    /// Resolve addresses with the emulator's own database (the demo, and tests).
    pub emulator_geoip: bool,
    pub vars: BTreeMap<String, Vec<String>>,
    pub suppress_secs: i64,
    pub lookback_secs: Option<i64>,
    pub event_link: Option<String>,
    pub outputs: Vec<OutputConfig>,
    /// How often `run` runs the self-test ([`selftest`]); `None`: never.
    pub selftest_every: Option<Duration>,
}

impl RawDetect {
    /// Validates the section; `None` when detection is switched off.
    pub fn build(self, sinks: &[SinkConfig]) -> Result<Option<DetectSettings>, String> {
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let dur = |field: &str, v: &Option<String>, default: i64| -> Result<i64, String> {
            match v {
                None => Ok(default),
                Some(s) => parse_duration(s)
                    .map(|d| d.as_secs() as i64)
                    .ok_or_else(|| format!("detect.{field}: {s:?} is not a duration (use 30m, 1h, 7d)")),
            }
        };
        let suppress_secs = dur("suppress", &self.suppress, 3600)?;
        let lookback = dur("alert_lookback", &self.alert_lookback, 86_400)?;
        let mut vars = self.vars;
        if !self.allowed_countries.is_empty() {
            let mut codes = Vec::new();
            for c in &self.allowed_countries {
                let c = c.trim().to_ascii_uppercase();
                if c.len() != 2 || !c.chars().all(|x| x.is_ascii_alphabetic()) {
                    return Err(format!(
                        "detect.allowed_countries: {c:?} is not a two-letter ISO country code (US, IE, GB…)"
                    ));
                }
                codes.push(c);
            }
            vars.insert("allowed_countries".into(), codes);
        }
        for p in self.rules.iter().flatten().chain(&self.geoip) {
            if !p.exists() {
                return Err(format!("detect: {} does not exist", p.display()));
            }
        }
        for (i, o) in self.outputs.iter().enumerate() {
            o.validate(sinks).map_err(|e| format!("detect.outputs[{i}]: {e}"))?;
        }
        let selftest_every = selftest::parse_every(self.selftest_every.as_deref())?;
        Ok(Some(DetectSettings {
            rules: self.rules,
            geoip: self.geoip,
            emulator_geoip: false,
            vars,
            suppress_secs,
            lookback_secs: (lookback > 0).then_some(lookback),
            event_link: self.event_link,
            outputs: self.outputs,
            selftest_every,
        }))
    }
}

/// Why detection could not start.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Output(#[from] alerts::OutputError),
}

impl DetectSettings {
    /// The rules to run: the configured files, or the shipped pack.
    pub fn load_rules(&self) -> Result<RulePack, DetectError> {
        match &self.rules {
            None => Ok(RulePack::builtin()),
            Some(paths) => RulePack::load(paths).map_err(|e| DetectError::Setup(format!("rules: {e}"))),
        }
    }

    pub fn geoip(&self) -> Result<GeoIp, DetectError> {
        let mut g = GeoIp::open(&self.geoip).map_err(|e| DetectError::Setup(e.to_string()))?;
        if self.emulator_geoip {
            g.add("emulator", mmdb::emulator_database()).map_err(DetectError::Setup)?;
        }
        Ok(g)
    }

    /// The engine for these settings, and the problems of the rules left out.
    pub fn engine(&self) -> Result<(Engine, Vec<RuleProblem>), DetectError> {
        let pack = self.load_rules()?;
        let geo = Arc::new(self.geoip()?);
        let opts = EngineOptions { vars: self.vars.clone(), suppress_secs: self.suppress_secs };
        let (engine, mut problems) = Engine::new(&pack, &opts, geo);
        let mut all = pack.problems;
        all.append(&mut problems);
        Ok((engine, all))
    }
}

/// The running detector: its engine, offset and outputs.
pub struct Detector {
    engine: Option<Engine>,
    position: i64,
    lookback_secs: Option<i64>,
    linker: Linker,
    outputs: Vec<Output>,
}

const BATCH_EVENTS: usize = 2_000;
const BATCH_BYTES: usize = 8 * 1024 * 1024;

impl Detector {
    /// Loads the rules (logging each one left out and why), restores the
    /// committed state, and builds the outputs.
    pub async fn start(
        settings: &DetectSettings,
        sinks: &[SinkConfig],
        bases: HashMap<String, String>,
        journal: &Journal,
    ) -> Result<Detector, DetectError> {
        let s = settings.clone();
        let (mut engine, problems) = tokio::task::spawn_blocking(move || s.engine())
            .await
            .map_err(|e| DetectError::Setup(format!("loading rules: {e}")))??;
        for p in &problems {
            tracing::error!("detection rule left out (the others run): {p}");
        }
        let off = journal.call(|j| j.consumer(CONSUMER, 0)).await?;
        if let Some(state) = off.state.as_deref()
            && let Err(e) = engine.import_state(state)
        {
            tracing::error!(
                "{e}; correlation windows start empty at offset {} (alerts already raised are kept)",
                off.position
            );
        }
        let outputs = settings
            .outputs
            .iter()
            .map(|o| Output::build(o, sinks))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DetectError::Setup)?;
        tracing::info!(
            rules = engine.rule_count(),
            left_out = problems.len(),
            offset = off.position,
            outputs = outputs.len(),
            "detection running"
        );
        Ok(Detector {
            engine: Some(engine),
            position: off.position,
            lookback_secs: settings.lookback_secs,
            linker: Linker { template: settings.event_link.clone(), bases },
            outputs,
        })
    }

    pub fn position(&self) -> i64 {
        self.position
    }

    /// Evaluates the next batch past the offset and commits it with its
    /// alerts; returns how many events were evaluated and the new alerts.
    pub async fn step(&mut self, journal: &Journal) -> Result<(usize, Vec<AlertRow>), DetectError> {
        let after = self.position;
        let batch = journal.call(move |j| j.read_after(after, BATCH_EVENTS, BATCH_BYTES)).await?;
        let Some(last) = batch.last_seq() else { return Ok((0, Vec::new())) };
        let n = batch.len();
        let mut engine =
            self.engine.take().ok_or_else(|| DetectError::Setup("the detection engine was lost".into()))?;
        engine.raise_after = self.lookback_secs.map(|l| now_secs() - l);
        let (engine, raised, state) = tokio::task::spawn_blocking(move || {
            let mut raised: Vec<Raised> = Vec::new();
            let mut newest = 0;
            for ev in batch.iter() {
                newest = newest.max(ev.created_at);
                raised.extend(engine.evaluate(ev.seq, ev.tenant, ev.created_at, ev.raw));
            }
            let state = engine.export_state(newest);
            (engine, raised, state)
        })
        .await
        .map_err(|e| DetectError::Setup(format!("rule evaluation failed: {e}")))?;
        self.engine = Some(engine);
        let new: Vec<_> = raised.iter().map(alerts::new_alert).collect();
        let linker = self.linker.clone();
        let stored = journal
            .call(move |j| {
                let by_id: HashMap<String, &Raised> = raised.iter().map(|r| (alerts::new_alert(r).id, r)).collect();
                j.commit_detection(CONSUMER, after, last, &state, &new, |a, events| {
                    alerts::body(by_id[&a.id], events, &linker, now_secs()).to_string()
                })
            })
            .await?;
        self.position = last;
        Ok((n, stored))
    }

    /// Evaluates everything in the journal now.
    pub async fn catch_up(&mut self, journal: &Journal) -> Result<u64, DetectError> {
        let mut n = 0;
        loop {
            let (events, _) = self.step(journal).await?;
            if events == 0 {
                return Ok(n);
            }
            n += events as u64;
        }
    }

    /// Hands every undelivered alert to each output; an output that fails keeps its backlog for the next try.
    pub async fn deliver(&mut self, journal: &Journal) -> Vec<alerts::OutputError> {
        let mut errors = Vec::new();
        for o in &mut self.outputs {
            if let Err(e) = o.drain(journal).await {
                errors.push(e);
            }
        }
        errors
    }

    pub fn counters(&self) -> Counters {
        self.engine.as_ref().map(|e| e.counters).unwrap_or_default()
    }
}

/// The daemon's detection task: evaluate as events land, deliver alerts,
/// retry outputs with backoff, until shutdown.
pub async fn run(
    mut detector: Detector,
    journal: Journal,
    appended: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    interval: Duration,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let notified = appended.notified();
        let mut wait = interval;
        match detector.catch_up(&journal).await {
            Ok(_) => {}
            Err(e) => {
                tracing::error!(
                    "detection stopped for now, collection goes on; retrying in {}s: {e}",
                    backoff.as_secs()
                );
                wait = backoff;
            }
        }
        let errors = detector.deliver(&journal).await;
        for e in &errors {
            tracing::warn!(
                retry_in_s = backoff.as_secs(),
                "alert delivery failed, the alerts wait in the journal: {e}"
            );
        }
        if errors.is_empty() && wait == interval {
            backoff = Duration::from_secs(1);
        } else {
            wait = wait.min(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(wait) => {}
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    let _ = detector.catch_up(&journal).await;
                    detector.deliver(&journal).await
                }).await;
                return;
            }
        }
    }
}

/// What a backtest found.
#[derive(Debug, Default)]
pub struct Backtest {
    pub events: u64,
    pub raised: Vec<Raised>,
    pub counters: Counters,
}

/// Runs the rules over the journal's events created since `since`, raising
/// (and suppressing) as the detector would, without storing or sending anything.
pub async fn backtest(engine: Engine, journal: &Journal, since: i64) -> Result<Backtest, DetectError> {
    let start = journal.call(move |j| j.first_seq_since(since)).await?;
    let Some(start) = start else { return Ok(Backtest::default()) };
    let j = journal.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<Backtest, JournalError> {
        let mut engine = engine;
        engine.raise_after = Some(since);
        let mut out = Backtest::default();
        let mut after = start - 1;
        loop {
            let batch = j.read_after(after, BATCH_EVENTS, BATCH_BYTES)?;
            let Some(last) = batch.last_seq() else { break };
            for ev in batch.iter() {
                out.events += 1;
                out.raised.extend(engine.evaluate(ev.seq, ev.tenant, ev.created_at, ev.raw));
            }
            after = last;
        }
        out.counters = engine.counters;
        Ok(out)
    })
    .await
    .map_err(|e| DetectError::Setup(format!("backtest failed: {e}")))??;
    Ok(r)
}
