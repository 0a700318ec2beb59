//! The self-test: proof that the detection path works end to end, without touching the
//! audit trail. Every enabled rule gets synthetic events built from its own positive
//! examples (a canary built from its selection when it has none), marked by a field no
//! Tines record has ([`SYNTHETIC_FIELD`]) and a tenant of their own ([`TENANT`]). They run
//! through the real engine (the configured rules, values, GeoIP and lookback), a fresh one
//! per example: the detector's correlation windows, suppression and countries seen are
//! neither read nor changed. The alerts raised are marked as tests and handed to every
//! configured alert output by its real delivery path, outside its offset over the alerts
//! table ([`alerts::deliver_test`]). Nothing is written to the journal or to an event sink;
//! the daemon records each result it runs (`[detect] selftest_every`) for the reports.

use std::sync::Arc;
use std::time::Duration;

use rsigma_parser::{
    ConditionExpr, ConditionOperator, CorrelationCondition, CorrelationType, Detection, Modifier, Quantifier,
    SelectorPattern, SigmaRule, SigmaValue, SpecialChar, StringPart,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::alerts::{self, Linker, TestAnswer};
use super::engine::{Engine, EngineOptions, Raised};
use super::fields::names;
use super::rules::{DocKind, LoadedDoc, RulePack};
use super::{DetectError, DetectSettings};
use crate::journal::{AlertRow, EventRow, Journal, SelftestRun};
use crate::sinks::SinkConfig;
use crate::timeutil::{format_rfc3339, now_secs};

/// The top-level field every synthetic event carries (Tines records have no such field).
pub const SYNTHETIC_FIELD: &str = "tines_audit_selftest";
/// The tenant synthetic events belong to, unless an example names one.
pub const TENANT: &str = "tines-audit-selftest";
/// `[detect] selftest_every` at its shortest: each run sends a test alert per rule to
/// every output, and more often than hourly that is noise for whoever reads them.
pub const MIN_EVERY: Duration = Duration::from_secs(3600);
/// The most events a correlation canary is made of.
const MAX_CANARY_EVENTS: u64 = 1_000;

/// Reads `[detect] selftest_every`: `None` (absent or "off") turns the schedule off.
pub fn parse_every(v: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(v) = v.map(str::trim) else { return Ok(None) };
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let every = crate::timeutil::try_parse_duration(v)
        .map_err(|e| format!("detect.selftest_every: {e}, or \"off\" (such as \"24h\")"))?;
    if every < MIN_EVERY {
        return Err(format!(
            "detect.selftest_every: {v:?} is shorter than 1h; each run sends a test alert per rule to every alert output, so run it at most hourly (such as \"24h\")"
        ));
    }
    Ok(Some(every))
}

/// How a rule did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleResult {
    /// It raised its test alert.
    Fired,
    /// A rule that only feeds correlations (it raises nothing itself), one of which fired.
    Counted,
    /// It raised nothing on its synthetic events: a control that does not work as configured.
    NotFired,
    /// Not running with this configuration (see the note); not tested.
    Off,
}

/// One rule's line of the result.
#[derive(Debug, Clone, Serialize)]
pub struct RuleOutcome {
    pub rule: String,
    pub title: String,
    pub result: RuleResult,
    /// What its synthetic events were built from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// The id of the test alert it raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    /// Why it did not fire, or what else to know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One alert output's line of the result.
#[derive(Debug, Clone, Serialize)]
pub struct OutputOutcome {
    /// The output's name (its consumer name, as `state show` lists it).
    pub output: String,
    pub destination: String,
    #[serde(flatten)]
    pub answer: TestAnswer,
}

/// What a self-test found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub passed: bool,
    pub summary: String,
    pub rules: Vec<RuleOutcome>,
    pub outputs: Vec<OutputOutcome>,
    /// Rules left out when loading (broken files), as `rules list` shows them.
    pub left_out: Vec<String>,
    #[serde(skip)]
    started: i64,
    #[serde(skip)]
    finished: i64,
}

impl Report {
    /// Enabled rules (not off), and those of them that fired (or were counted by a correlation that fired).
    pub fn rule_counts(&self) -> (u64, u64) {
        let on = self.rules.iter().filter(|r| r.result != RuleResult::Off).count() as u64;
        let ok = self.rules.iter().filter(|r| matches!(r.result, RuleResult::Fired | RuleResult::Counted)).count();
        (on, ok as u64)
    }

    /// Alert outputs, and those that accepted.
    pub fn output_counts(&self) -> (u64, u64) {
        (self.outputs.len() as u64, self.outputs.iter().filter(|o| o.answer.ok()).count() as u64)
    }

    /// The record the daemon keeps of this run.
    pub fn record(&self) -> SelftestRun {
        let (rules_total, rules_fired) = self.rule_counts();
        let (outputs_total, outputs_ok) = self.output_counts();
        SelftestRun {
            run_id: self.run_id.clone(),
            started_at: self.started,
            finished_at: self.finished,
            passed: self.passed,
            rules_total,
            rules_fired,
            outputs_total,
            outputs_ok,
            summary: self.summary.clone(),
            detail: serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// The one line that says how it went, naming every rule and output that failed.
fn summarise(rules: &[RuleOutcome], outputs: &[OutputOutcome]) -> (bool, String) {
    let failed_rules: Vec<&str> =
        rules.iter().filter(|r| r.result == RuleResult::NotFired).map(|r| r.rule.as_str()).collect();
    let failed_outputs: Vec<String> = outputs
        .iter()
        .filter_map(|o| match &o.answer {
            TestAnswer::Failed(why) => Some(format!("{} ({}: {why})", o.output, o.destination)),
            _ => None,
        })
        .collect();
    let on = rules.iter().filter(|r| r.result != RuleResult::Off).count();
    let ok = rules.iter().filter(|r| matches!(r.result, RuleResult::Fired | RuleResult::Counted)).count();
    let accepted = outputs.iter().filter(|o| o.answer.ok()).count();
    if failed_rules.is_empty() && failed_outputs.is_empty() {
        let outputs = if outputs.is_empty() {
            "no alert output is configured (alerts reach the journal and the console only)".to_string()
        } else {
            format!("{accepted} of {} alert output(s) accepted the test alerts", outputs.len())
        };
        return (true, format!("passed: {ok} of {on} enabled rule(s) fired on their synthetic events; {outputs}"));
    }
    let mut parts = Vec::new();
    if !failed_rules.is_empty() {
        parts.push(format!("rule(s) that did not fire: {}", failed_rules.join(", ")));
    }
    if !failed_outputs.is_empty() {
        parts.push(format!("alert output(s) that failed: {}", failed_outputs.join("; ")));
    }
    (false, format!("FAILED: {}", parts.join("; ")))
}

/// A new run id: the start time and a random part, so two runs never share test alert ids.
fn new_run_id(now: i64) -> String {
    let t: String = format_rfc3339(now).chars().filter(char::is_ascii_alphanumeric).collect();
    format!("selftest-{t}-{:08x}", fastrand::u32(..))
}

/// Runs the self-test: every enabled rule on its synthetic events, the test alerts to every
/// alert output of `settings` (`sinks` are the configured ones, for outputs of type sink).
pub async fn run(settings: &DetectSettings, sinks: &[SinkConfig]) -> Result<Report, DetectError> {
    let started = now_secs();
    let run_id = new_run_id(started);
    let (s, id) = (settings.clone(), run_id.clone());
    // Rule evaluation is CPU work: off the async threads.
    let Evaluated { rules, alerts: test_alerts, left_out } =
        tokio::task::spawn_blocking(move || evaluate(&s, &id, started))
            .await
            .map_err(|e| DetectError::Setup(format!("the self-test's rule evaluation failed: {e}")))??;
    let mut outputs = Vec::with_capacity(settings.outputs.len());
    for o in &settings.outputs {
        let answer = alerts::deliver_test(o, sinks, &test_alerts).await;
        outputs.push(OutputOutcome { output: o.consumer_name(), destination: o.destination(), answer });
    }
    let (passed, summary) = summarise(&rules, &outputs);
    let finished = now_secs();
    Ok(Report {
        run_id,
        started_at: format_rfc3339(started),
        finished_at: format_rfc3339(finished),
        passed,
        summary,
        rules,
        outputs,
        left_out,
        started,
        finished,
    })
}

/// Synthetic events for a rule, and what they were built from.
#[derive(Debug, Clone)]
struct Canary {
    label: String,
    /// Seconds after the first event, and the record.
    events: Vec<(i64, Value)>,
}

/// What the rules did on their synthetic events.
struct Evaluated {
    rules: Vec<RuleOutcome>,
    alerts: Vec<AlertRow>,
    /// The problems of rules left out when loading.
    left_out: Vec<String>,
}

/// Every rule on its synthetic events (blocking).
fn evaluate(s: &DetectSettings, run_id: &str, now: i64) -> Result<Evaluated, DetectError> {
    let pack = s.load_rules()?;
    let geo = Arc::new(s.geoip()?);
    let opts = EngineOptions { vars: s.vars.clone(), suppress_secs: s.suppress_secs };
    let (_, off) = Engine::new(&pack, &opts, geo.clone());
    let raise_after = s.lookback_secs.map(|l| now - l);
    let mut outcomes = Vec::new();
    let mut test_alerts: Vec<AlertRow> = Vec::new();
    for doc in &pack.docs {
        let mut outcome = RuleOutcome {
            rule: doc.id.clone(),
            title: doc.title.clone(),
            result: RuleResult::NotFired,
            canary: None,
            alert_id: None,
            note: None,
        };
        if let Some(p) = off.iter().find(|p| p.rule.as_deref() == Some(doc.id.as_str())) {
            outcome.result = RuleResult::Off;
            outcome.note = Some(p.message.clone());
        } else if pack.is_counted_only(&doc.id) {
            // Settled below, once the correlations that count it have run.
            outcome.result = RuleResult::Counted;
        } else {
            match canaries(&pack, doc) {
                Err(why) => outcome.note = Some(why),
                Ok(candidates) => {
                    for c in &candidates {
                        let (mut engine, _) = Engine::new(&pack, &opts, geo.clone());
                        engine.raise_after = raise_after;
                        if let Some((raised, events)) = fire(&mut engine, &doc.id, &c.events, run_id, now) {
                            let alert = test_alert(&raised, &events, run_id, test_alerts.len() as i64 + 1, now);
                            outcome.result = RuleResult::Fired;
                            outcome.alert_id = Some(alert.id.clone());
                            outcome.canary = Some(c.label.clone());
                            test_alerts.push(alert);
                            break;
                        }
                    }
                    if outcome.result == RuleResult::NotFired {
                        outcome.canary = candidates.first().map(|c| c.label.clone());
                        outcome.note = Some(not_fired_note(doc, &candidates, geo.is_empty()));
                    }
                }
            }
        }
        outcomes.push(outcome);
    }
    let with = |result: RuleResult| -> Vec<String> {
        outcomes.iter().filter(|o| o.result == result).map(|o| o.rule.clone()).collect()
    };
    let (fired, is_off) = (with(RuleResult::Fired), with(RuleResult::Off));
    for o in outcomes.iter_mut().filter(|o| o.result == RuleResult::Counted) {
        let by: Vec<&str> = pack.counted_by(&o.rule).into_iter().filter(|c| !is_off.iter().any(|f| f == c)).collect();
        let covered: Vec<&str> = by.iter().copied().filter(|c| fired.iter().any(|f| f == c)).collect();
        if by.is_empty() {
            o.result = RuleResult::Off;
            o.note = Some("raises no alert itself, and every correlation counting it is off".into());
        } else if covered.is_empty() {
            o.result = RuleResult::NotFired;
            o.note = Some(format!("raises no alert itself; counted by {}, which did not fire", by.join(", ")));
        } else {
            o.note = Some(format!("raises no alert itself; counted by {}, which fired", covered.join(", ")));
        }
    }
    Ok(Evaluated {
        rules: outcomes,
        alerts: test_alerts,
        left_out: pack.problems.iter().map(ToString::to_string).collect(),
    })
}

fn not_fired_note(doc: &LoadedDoc, candidates: &[Canary], no_geoip: bool) -> String {
    let tried = if doc.examples.iter().any(|e| e.expect_match) {
        format!("none of its {} positive example(s) raised an alert", candidates.len())
    } else {
        "the canary built from its selection raised no alert; give the rule a positive example (docs/detection.md, \"Examples\")".to_string()
    };
    let located = [names::COUNTRY, names::ASN, names::AS_ORG, names::NEW_COUNTRY];
    if no_geoip && located.iter().any(|f| doc.text.contains(f)) {
        // The likeliest cause first: without a database these fields are never set.
        return format!(
            "{tried}: it reads where addresses are (source_country and the like), and no GeoIP database is configured (detect.geoip), so it cannot fire"
        );
    }
    if doc.placeholders.is_empty() {
        format!("{tried} with this configuration")
    } else {
        // The examples run with their own values under `rules test`; here with the configured ones.
        format!(
            "{tried} with the configured values of {} (its examples were written for {:?})",
            doc.placeholders.iter().map(|p| format!("%{p}%")).collect::<Vec<_>>().join(", "),
            doc.example_vars
        )
    }
}

/// The rule's positive examples, or a canary built from its selection when it has none.
fn canaries(pack: &RulePack, doc: &LoadedDoc) -> Result<Vec<Canary>, String> {
    let examples: Vec<Canary> = doc
        .examples
        .iter()
        .filter(|e| e.expect_match)
        .map(|e| Canary { label: format!("example {:?}", e.name), events: e.events.clone() })
        .collect();
    if !examples.is_empty() {
        return Ok(examples);
    }
    let no =
        |why: String| format!("it has no positive example, and {why}; give it one (docs/detection.md, \"Examples\")");
    match &doc.kind {
        DocKind::Detection(r) => {
            let event =
                selection_event(r).map_err(|e| no(format!("no canary can be built from its selection: {e}")))?;
            Ok(vec![Canary {
                label: "canary built from its selection (the rule has no positive example)".into(),
                events: vec![(0, event)],
            }])
        }
        DocKind::Correlation(c) => {
            if c.correlation_type != CorrelationType::EventCount {
                return Err(no(format!(
                    "a canary is built for event_count correlations only, not {}",
                    c.correlation_type.as_str()
                )));
            }
            let base = c.rules.first().and_then(|id| pack.docs.iter().find(|d| &d.id == id));
            let event = match base.map(|b| (&b.kind, b.examples.iter().find(|e| e.expect_match))) {
                Some((_, Some(ex))) => ex.events[0].1.clone(),
                Some((DocKind::Detection(r), None)) => {
                    selection_event(r).map_err(|e| no(format!("no canary can be built for the rule it counts: {e}")))?
                }
                _ => return Err(no("the rule it counts is not a detection rule".into())),
            };
            let n = threshold(&c.condition).filter(|n| *n <= MAX_CANARY_EVENTS).ok_or_else(|| {
                no(format!("its condition needs no count up to {MAX_CANARY_EVENTS} a canary can make"))
            })?;
            Ok(vec![Canary {
                label: format!("canary: {n} events matching the rule it counts, a second apart (no positive example)"),
                events: (0..n as i64).map(|i| (i, event.clone())).collect(),
            }])
        }
    }
}

/// How many events an event_count condition needs to hold.
fn threshold(c: &CorrelationCondition) -> Option<u64> {
    let CorrelationCondition::Threshold { predicates, .. } = c else { return None };
    let mut n = 1;
    for (op, v) in predicates {
        match op {
            ConditionOperator::Gte | ConditionOperator::Eq => n = n.max(*v),
            ConditionOperator::Gt => n = n.max(v + 1),
            ConditionOperator::Lt | ConditionOperator::Lte | ConditionOperator::Neq => {}
        }
    }
    let holds = predicates.iter().all(|(op, v)| match op {
        ConditionOperator::Gte => n >= *v,
        ConditionOperator::Gt => n > *v,
        ConditionOperator::Eq => n == *v,
        ConditionOperator::Lt => n < *v,
        ConditionOperator::Lte => n <= *v,
        ConditionOperator::Neq => n != *v,
    });
    holds.then_some(n)
}

/// A record that satisfies the rule's condition, built from the selections it requires.
fn selection_event(r: &SigmaRule) -> Result<Value, String> {
    let cond = r.detection.conditions.first().ok_or("the rule has no condition")?;
    let mut wanted = Vec::new();
    required(cond, &r.detection.named.keys().cloned().collect::<Vec<_>>(), &mut wanted);
    if wanted.is_empty() {
        return Err("its condition requires no selection".into());
    }
    let mut event = Value::Object(Map::new());
    for name in wanted {
        let d = r.detection.named.get(&name).ok_or_else(|| format!("no detection named {name}"))?;
        fill(d, &mut event)?;
    }
    Ok(event)
}

/// The named detections a condition needs to hold: every part of an `and`, the first
/// of an `or`, none under a `not`.
fn required(c: &ConditionExpr, names: &[String], out: &mut Vec<String>) {
    match c {
        ConditionExpr::Identifier(n) => out.push(n.clone()),
        ConditionExpr::And(all) => all.iter().for_each(|c| required(c, names, out)),
        ConditionExpr::Or(any) => {
            if let Some(first) = any.first() {
                required(first, names, out);
            }
        }
        ConditionExpr::Not(_) => {}
        ConditionExpr::Selector { quantifier, pattern } => {
            let mut matching: Vec<&String> = names
                .iter()
                .filter(|n| match pattern {
                    SelectorPattern::Them => !n.starts_with('_'),
                    SelectorPattern::Pattern(p) => rsigma_parser::detection_name_matches(p, n),
                })
                .collect();
            matching.sort();
            let take = match quantifier {
                Quantifier::Any => 1,
                Quantifier::All => matching.len(),
                Quantifier::Count(n) => *n as usize,
            };
            out.extend(matching.into_iter().take(take).cloned());
        }
    }
}

/// Sets the fields of a detection on `event` to values that match it.
fn fill(d: &Detection, event: &mut Value) -> Result<(), String> {
    match d {
        Detection::AllOf(items) => {
            for item in items {
                let name = item.field.name.as_deref().ok_or("keyword detections cannot be turned into a canary")?;
                let Some(value) = canary_value(name, &item.field.modifiers, &item.values)? else { continue };
                if name == names::TENANT {
                    event["tenant"] = value;
                    continue;
                }
                let enriched = [
                    names::CATEGORY,
                    names::VERB,
                    names::COUNTRY,
                    names::ASN,
                    names::AS_ORG,
                    names::NEW_COUNTRY,
                    names::OBJECT_COUNT,
                ];
                if enriched.contains(&name) {
                    return Err(format!("{name} is computed by the detector, not a field a canary can set"));
                }
                set_path(event, name, value);
            }
            Ok(())
        }
        Detection::AnyOf(any) => match any.first() {
            Some(first) => fill(first, event),
            None => Ok(()),
        },
        Detection::Keywords(_) => Err("keyword detections cannot be turned into a canary".into()),
        Detection::And(all) => all.iter().try_for_each(|d| fill(d, event)),
        Detection::ArrayMatch { field, .. } => Err(format!("{field}: array matches cannot be turned into a canary")),
        Detection::Conditional { .. } => Err("conditional array blocks cannot be turned into a canary".into()),
    }
}

/// A value that matches `values` under `modifiers`; `None` when the field must be absent.
fn canary_value(name: &str, modifiers: &[Modifier], values: &[SigmaValue]) -> Result<Option<Value>, String> {
    let text = |v: &SigmaValue| match v {
        SigmaValue::String(s) => Some(
            s.parts
                .iter()
                .map(|p| match p {
                    StringPart::Plain(t) => t.as_str(),
                    StringPart::Special(SpecialChar::WildcardMulti) => "",
                    StringPart::Special(SpecialChar::WildcardSingle) => "x",
                })
                .collect::<String>(),
        ),
        _ => None,
    };
    let first = values.first().ok_or_else(|| format!("{name} has no value"))?;
    let mut number_shift = 0i64;
    for m in modifiers {
        match m {
            Modifier::Contains | Modifier::StartsWith | Modifier::EndsWith | Modifier::Cased | Modifier::All => {}
            Modifier::Exists => {
                return Ok(matches!(first, SigmaValue::Bool(true)).then(|| Value::from("canary")));
            }
            Modifier::Cidr => {
                let net = text(first).ok_or_else(|| format!("{name}|cidr needs a network"))?;
                return Ok(Some(Value::from(net.split('/').next().unwrap_or_default())));
            }
            Modifier::Gt => number_shift = 1,
            Modifier::Lt => number_shift = -1,
            Modifier::Gte | Modifier::Lte => {}
            other => {
                return Err(format!("{name}|{} cannot be satisfied by a canary", format!("{other:?}").to_lowercase()));
            }
        }
    }
    if modifiers.contains(&Modifier::All) && modifiers.contains(&Modifier::Contains) {
        return Ok(Some(Value::from(values.iter().filter_map(text).collect::<Vec<_>>().join(" "))));
    }
    Ok(Some(match first {
        SigmaValue::String(_) => Value::from(text(first).unwrap_or_default()),
        SigmaValue::Integer(i) => Value::from(i + number_shift),
        SigmaValue::Float(f) => Value::from(f + number_shift as f64),
        SigmaValue::Bool(b) => Value::from(*b),
        SigmaValue::Null => Value::Null,
    }))
}

/// Sets `a.b.c` in nested objects.
fn set_path(event: &mut Value, path: &str, value: Value) {
    let mut at = event;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let m = at.as_object_mut().expect("made an object above");
        if parts.peek().is_none() {
            m.insert(p.to_string(), value);
            return;
        }
        at = m.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Runs a canary's events through `engine`, the last at `now`; the first alert of rule
/// `rule` it raises, with the synthetic events as alerts list them.
fn fire(
    engine: &mut Engine,
    rule: &str,
    events: &[(i64, Value)],
    run_id: &str,
    now: i64,
) -> Option<(Raised, Vec<EventRow>)> {
    let base = now - events.iter().map(|e| e.0).max().unwrap_or(0);
    let mut rows = Vec::with_capacity(events.len());
    let mut hit = None;
    for (i, (offset, event)) in events.iter().enumerate() {
        let (seq, at) = (i as i64 + 1, base + offset);
        let event = synthesize(event, seq, at, run_id)?;
        let tenant = event.get("tenant").and_then(Value::as_str).unwrap_or(TENANT).to_string();
        let id = event.get("id").and_then(Value::as_i64).unwrap_or(seq);
        let operation_name = event.get("operation_name").and_then(Value::as_str).unwrap_or("").to_string();
        rows.push(EventRow { seq, tenant: tenant.clone(), id, created_at: at, operation_name });
        for r in engine.evaluate(seq, &tenant, at, &event.to_string()) {
            if hit.is_none() && r.rule.id == rule {
                hit = Some(r);
            }
        }
    }
    let r = hit?;
    // As the journal links them: the trigger and the correlation's events.
    let linked: Vec<EventRow> =
        rows.into_iter().filter(|e| e.seq == r.trigger.seq || r.event_ids.iter().any(|(_, id)| *id == e.id)).collect();
    Some((r, linked))
}

/// A canary's record as the engine gets it: dated `at` (now, for the last one, so the
/// configured alert_lookback lets it alert as a live event would), with an id, and marked
/// as synthetic by a field no Tines record has. `None` for an event that is not an object.
fn synthesize(event: &Value, seq: i64, at: i64, run_id: &str) -> Option<Value> {
    let mut event = event.clone();
    let m = event.as_object_mut()?;
    m.insert("created_at".into(), format_rfc3339(at).into());
    m.entry("id").or_insert_with(|| seq.into());
    m.insert(SYNTHETIC_FIELD.into(), json!({"synthetic": true, "run": run_id}));
    Some(event)
}

/// The alert as outputs get it, marked as a test in its id, title, summary and body.
fn test_alert(r: &Raised, events: &[EventRow], run_id: &str, seq: i64, now: i64) -> AlertRow {
    let id = format!("selftest:{run_id}:{}", r.rule.id);
    let mut body = alerts::body(r, events, &Linker::default(), now);
    body["id"] = id.clone().into();
    body["test"] = true.into();
    body["selftest"] = json!({
        "run": run_id,
        "synthetic": true,
        "note": "A test alert from `tines-audit selftest`: synthetic events, nothing happened in any tenant.",
    });
    let summary = body["summary"].as_str().unwrap_or_default().to_string();
    body["summary"] = format!("[TEST] {summary}").into();
    let title = body["rule"]["title"].as_str().unwrap_or_default().to_string();
    body["rule"]["title"] = format!("[TEST] {title}").into();
    if let Some(list) = body["events"].as_array_mut() {
        for e in list {
            e["synthetic"] = true.into();
        }
    }
    AlertRow {
        seq,
        id,
        rule_id: r.rule.id.clone(),
        tenant: r.trigger.tenant.clone(),
        event_time: r.trigger.created_at,
        raised_at: now,
        body: body.to_string(),
    }
}

/// The daemon's schedule: a self-test every `every` (the first once the last recorded run
/// is that old, at once when none is), each result recorded in the journal, logged and in
/// the metrics, until `stop`.
pub async fn schedule(
    settings: DetectSettings,
    sinks: Vec<SinkConfig>,
    journal: Journal,
    mut stop: watch::Receiver<bool>,
) {
    let Some(every) = settings.selftest_every else { return };
    let every = every.as_secs() as i64;
    // Also kept here: a run whose record failed must not start the next one at once.
    let mut last_started: Option<i64> = None;
    loop {
        let recorded = journal.call(|j| j.selftest_runs(i64::MIN, i64::MAX, 1)).await;
        let last = match recorded {
            Ok(runs) => {
                if let Some(r) = runs.first() {
                    crate::metrics::selftest_ran(r);
                }
                runs.first().map(|r| r.started_at).max(last_started)
            }
            Err(e) => {
                tracing::warn!("self-test: reading when it last ran failed, will try again in a minute: {e}");
                if wait(Duration::from_secs(60), &mut stop).await {
                    return;
                }
                continue;
            }
        };
        let due = last.map_or(0, |t| t + every);
        let now = now_secs();
        if now < due {
            if wait(Duration::from_secs((due - now) as u64), &mut stop).await {
                return;
            }
            continue;
        }
        let started = now;
        last_started = Some(started);
        let result = tokio::select! {
            r = run(&settings, &sinks) => r,
            _ = crate::service::stopped(&mut stop) => return,
        };
        let record = match result {
            Ok(report) => {
                if report.passed {
                    tracing::info!(run = %report.run_id, "self-test {}", report.summary);
                } else {
                    tracing::error!(
                        run = %report.run_id,
                        "self-test {}; a detection control is not working as configured (`tines-audit selftest --config FILE` shows each rule and output)",
                        report.summary
                    );
                }
                report.record()
            }
            Err(e) => {
                tracing::error!("self-test could not run, will try again in {every}s: {e}");
                SelftestRun {
                    run_id: new_run_id(started),
                    started_at: started,
                    finished_at: now_secs(),
                    passed: false,
                    rules_total: 0,
                    rules_fired: 0,
                    outputs_total: settings.outputs.len() as u64,
                    outputs_ok: 0,
                    summary: crate::secret::redact(&format!("FAILED: the self-test could not run: {e}")).into_owned(),
                    detail: "{}".into(),
                }
            }
        };
        crate::metrics::selftest_ran(&record);
        let r = record.clone();
        if let Err(e) = journal.call(move |j| j.record_selftest(&r)).await {
            tracing::warn!(run = %record.run_id, "self-test: recording the result in the journal failed (it is logged above): {e}");
        }
    }
}

/// Waits `d` unless `stop` turns true first (then `true`).
async fn wait(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = crate::service::stopped(stop) => true,
    }
}

#[cfg(test)]
mod tests;
