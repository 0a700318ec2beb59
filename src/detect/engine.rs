//! Rule evaluation: each journal event is parsed into the rules' view,
//! enriched (catalog category and verb, GeoIP, first country for the user,
//! object count), run through rsigma's correlation engine, and every match
//! that is not suppressed becomes a [`Raised`] alert. The engine's whole
//! mutable state (correlation windows, suppression, the countries seen per
//! user) serialises to one JSON document, committed with the detector's
//! offset so that a restart resumes exactly where the last commit was.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rsigma_eval::{CorrelationConfig, CorrelationEngine, CorrelationEventMode, EvaluationResult, ResultBody};
use serde::{Deserialize, Serialize};

use super::fields::{AuditEvent, names};
use super::geoip::{GeoIp, Location};
use super::rules::{DocKind, RulePack, RuleProblem};
use crate::catalog;

/// Settings of the engine that come from the configuration.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Values for `%name%` placeholders (`|expand`), e.g. `allowed_countries`.
    pub vars: BTreeMap<String, Vec<String>>,
    /// Default suppression of a (rule, group) after an alert, in seconds.
    pub suppress_secs: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { vars: BTreeMap::new(), suppress_secs: 3600 }
    }
}

/// What a rule says about itself, kept for the alerts it raises.
#[derive(Debug, Clone, Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub title: String,
    pub level: String,
    pub description: String,
    pub tags: Vec<String>,
    pub file: String,
    #[serde(skip)]
    pub suppress_by: Vec<String>,
    #[serde(skip)]
    pub suppress_secs: Option<i64>,
}

/// The event that completed a match, in a few fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    pub seq: i64,
    pub tenant: String,
    pub id: Option<i64>,
    pub created_at: i64,
    pub operation_name: String,
    pub user_id: Option<i64>,
    pub user_email: Option<String>,
    pub user_name: Option<String>,
    pub request_ip: Option<String>,
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
}

/// A match that should become an alert.
#[derive(Debug, Clone)]
pub struct Raised {
    pub rule: Arc<RuleInfo>,
    /// `event_count`, `value_count`, `value_sum`, `temporal`, … or `None` for a single-event rule.
    pub correlation: Option<String>,
    /// The values the alert is grouped (and suppressed) by.
    pub group: Vec<(String, String)>,
    /// The correlation's aggregate (count, distinct values, sum) and window.
    pub value: Option<f64>,
    pub timespan_secs: Option<u64>,
    pub trigger: EventSummary,
    /// Tines ids (and times) of the events that made up a correlation, oldest first.
    pub event_ids: Vec<(i64, i64)>,
}

/// Counters for a batch or a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub events: u64,
    pub unparsable: u64,
    pub matches: u64,
    pub suppressed: u64,
    pub too_old: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    #[serde(default)]
    correlation: Option<serde_json::Value>,
    /// (rule id, group) → event time of the last alert.
    #[serde(default)]
    suppression: Vec<(String, String, i64)>,
    /// tenant → user id → countries seen.
    #[serde(default)]
    countries: BTreeMap<String, BTreeMap<i64, Vec<String>>>,
}

const STATE_VERSION: u32 = 1;
const GEO_CACHE_MAX: usize = 50_000;

/// The evaluator. Not `Sync`; the detector owns one and moves it to a blocking thread per batch.
pub struct Engine {
    corr: CorrelationEngine,
    rules: HashMap<String, Arc<RuleInfo>>,
    geo: Arc<GeoIp>,
    geo_cache: HashMap<String, Location>,
    class_cache: HashMap<String, (&'static str, &'static str)>,
    suppress_secs: i64,
    suppression: HashMap<(String, String), i64>,
    countries: HashMap<String, HashMap<i64, Vec<String>>>,
    /// Events with a `created_at` before this are evaluated (state is built) but raise nothing.
    pub raise_after: Option<i64>,
    pub counters: Counters,
}

impl Engine {
    /// Builds the engine from a loaded pack. Rules that cannot run with these
    /// options (a placeholder without a value, a compile error) are left out
    /// and reported; the rest run.
    pub fn new(pack: &RulePack, opts: &EngineOptions, geo: Arc<GeoIp>) -> (Engine, Vec<RuleProblem>) {
        let config = CorrelationConfig {
            emit_detections: false,
            correlation_event_mode: CorrelationEventMode::Refs,
            max_correlation_events: 50,
            suppress: None,
            ..CorrelationConfig::default()
        };
        let mut corr = CorrelationEngine::new(config);
        if !opts.vars.is_empty() {
            corr.add_pipeline(super::rules::placeholder_pipeline(&opts.vars));
        }
        let mut problems = Vec::new();
        let mut rules = HashMap::new();
        let mut skipped: Vec<String> = Vec::new();
        for doc in &pack.docs {
            let missing: Vec<&String> = doc.placeholders.iter().filter(|p| !opts.vars.contains_key(*p)).collect();
            if !missing.is_empty() {
                problems.push(doc.problem(
                    None,
                    format!(
                        "rule is off: it needs a value for {} (set detect.{} in the configuration)",
                        missing.iter().map(|m| format!("%{m}%")).collect::<Vec<_>>().join(", "),
                        missing[0]
                    ),
                ));
                skipped.push(doc.id.clone());
                continue;
            }
            if let DocKind::Correlation(c) = &doc.kind
                && let Some(r) = c.rules.iter().find(|r| skipped.contains(r))
            {
                problems.push(doc.problem(None, format!("correlation is off: the rule it counts ({r}) is off")));
                skipped.push(doc.id.clone());
                continue;
            }
            let added = match &doc.kind {
                DocKind::Detection(r) => corr.add_rule(r),
                DocKind::Correlation(c) => corr.add_correlation(c),
            };
            if let Err(e) = added {
                problems.push(doc.problem(None, format!("rule is off: {e}")));
                skipped.push(doc.id.clone());
                continue;
            }
            rules.insert(doc.id.clone(), Arc::new(doc.info()));
        }
        let engine = Engine {
            corr,
            rules,
            geo,
            geo_cache: HashMap::new(),
            class_cache: HashMap::new(),
            suppress_secs: opts.suppress_secs,
            suppression: HashMap::new(),
            countries: HashMap::new(),
            raise_after: None,
            counters: Counters::default(),
        };
        (engine, problems)
    }

    /// How many rules (detections and correlations) are running.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub fn rules(&self) -> impl Iterator<Item = &Arc<RuleInfo>> {
        self.rules.values()
    }

    fn locate(&mut self, ip: &str) -> Location {
        if self.geo.is_empty() {
            return Location::default();
        }
        if let Some(l) = self.geo_cache.get(ip) {
            return l.clone();
        }
        if self.geo_cache.len() >= GEO_CACHE_MAX {
            self.geo_cache.clear();
        }
        let l = self.geo.lookup(ip);
        self.geo_cache.insert(ip.to_string(), l.clone());
        l
    }

    fn enrich(&mut self, ev: &mut AuditEvent<'_>) {
        let op = ev.operation_name();
        let (category, verb) = match self.class_cache.get(op) {
            Some(c) => *c,
            None => {
                let c = catalog::classify(op);
                let v = (c.category.as_str(), c.verb.as_str());
                self.class_cache.insert(op.to_string(), v);
                v
            }
        };
        ev.enrich.category = category;
        ev.enrich.verb = verb;
        if let Some(ip) = ev.record.request_ip.as_deref() {
            let loc = self.locate(ip);
            ev.enrich.country = loc.country;
            ev.enrich.asn = loc.asn;
            ev.enrich.as_org = loc.as_org;
        }
        if let (Some(user), Some(country)) = (ev.record.user_id, ev.enrich.country.as_deref()) {
            let seen = self.countries.entry(ev.tenant.to_string()).or_default().entry(user).or_default();
            if !seen.iter().any(|c| c == country) {
                // New only against a history: a user's very first event is not "unexpected".
                ev.enrich.new_country_for_user = !seen.is_empty();
                seen.push(country.to_string());
            }
        }
        ev.enrich.object_count = ev.count_objects();
    }

    /// Evaluates one journal event; returns the alerts it raises.
    pub fn evaluate(&mut self, seq: i64, tenant: &str, created_at: i64, raw: &str) -> Vec<Raised> {
        self.counters.events += 1;
        let Some(mut ev) = AuditEvent::parse(tenant, raw) else {
            self.counters.unparsable += 1;
            return Vec::new();
        };
        self.enrich(&mut ev);
        let results = self.corr.process_event_at(&ev, created_at);
        if results.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for r in results {
            self.counters.matches += 1;
            if let Some(raised) = self.raise(&ev, seq, created_at, r) {
                out.push(raised);
            }
        }
        out
    }

    fn raise(&mut self, ev: &AuditEvent<'_>, seq: i64, created_at: i64, r: EvaluationResult) -> Option<Raised> {
        let id = r.header.rule_id.clone().unwrap_or_else(|| r.header.rule_title.clone());
        let rule = self
            .rules
            .get(&id)
            .cloned()
            .or_else(|| self.rules.values().find(|i| i.title == r.header.rule_title).cloned())?;
        let (correlation, group, value, timespan_secs, event_ids) = match r.body {
            ResultBody::Detection(_) => {
                let fields: &[String] = &rule.suppress_by;
                let group = fields
                    .iter()
                    .map(|f| {
                        let v = rsigma_eval::event::Event::get_field(ev, f)
                            .and_then(|v| v.as_str().map(|s| s.into_owned()))
                            .unwrap_or_default();
                        (f.clone(), v)
                    })
                    .collect();
                (None, group, None, None, Vec::new())
            }
            ResultBody::Correlation(c) => {
                let ids = c
                    .event_refs
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|r| Some((r.timestamp, r.id?.parse::<i64>().ok()?)))
                    .collect();
                let kind = c.correlation_type.as_str().to_string();
                (Some(kind), c.group_key, Some(c.aggregated_value), Some(c.timespan_secs), ids)
            }
        };
        let key = (rule.id.clone(), serde_json::to_string(&group).unwrap_or_default());
        let window = rule.suppress_secs.unwrap_or(self.suppress_secs);
        if let Some(last) = self.suppression.get(&key)
            && created_at < last + window
        {
            self.counters.suppressed += 1;
            return None;
        }
        if self.raise_after.is_some_and(|t| created_at < t) {
            self.counters.too_old += 1;
            return None;
        }
        self.suppression.insert(key, created_at);
        let rec = &ev.record;
        let trigger = EventSummary {
            seq,
            tenant: ev.tenant.to_string(),
            id: rec.id,
            created_at,
            operation_name: ev.operation_name().to_string(),
            user_id: rec.user_id,
            user_email: rec.user_email.as_deref().map(str::to_string),
            user_name: rec.user_name.as_deref().map(str::to_string),
            request_ip: rec.request_ip.as_deref().map(str::to_string),
            country: ev.enrich.country.clone(),
            asn: ev.enrich.asn,
            as_org: ev.enrich.as_org.clone(),
        };
        Some(Raised { rule, correlation, group, value, timespan_secs, trigger, event_ids })
    }

    /// The engine's state, to commit with the offset of the last evaluated event.
    pub fn export_state(&mut self, now_event_time: i64) -> String {
        // Forget suppressions that have run out: the state stays as small as the rules need.
        let longest = self.rules.values().filter_map(|r| r.suppress_secs).max().unwrap_or(0).max(self.suppress_secs);
        self.suppression.retain(|_, t| *t + longest > now_event_time);
        let state = State {
            version: STATE_VERSION,
            correlation: serde_json::to_value(self.corr.export_state()).ok(),
            suppression: self.suppression.iter().map(|((r, g), t)| (r.clone(), g.clone(), *t)).collect(),
            countries: self
                .countries
                .iter()
                .map(|(t, users)| (t.clone(), users.iter().map(|(u, c)| (*u, c.clone())).collect()))
                .collect(),
        };
        serde_json::to_string(&state).unwrap_or_default()
    }

    /// Restores a state written by [`Engine::export_state`]; an unreadable or
    /// incompatible one is reported and the engine starts empty.
    pub fn import_state(&mut self, text: &str) -> Result<(), String> {
        let state: State = serde_json::from_str(text).map_err(|e| format!("detector state is unreadable: {e}"))?;
        if state.version != STATE_VERSION {
            return Err(format!("detector state version {} is not {STATE_VERSION}", state.version));
        }
        if let Some(c) = state.correlation {
            let snap = serde_json::from_value(c).map_err(|e| format!("correlation state is unreadable: {e}"))?;
            if !self.corr.import_state(snap) {
                return Err("correlation state was written by an incompatible rsigma version".into());
            }
        }
        self.suppression = state.suppression.into_iter().map(|(r, g, t)| ((r, g), t)).collect();
        self.countries =
            state.countries.into_iter().map(|(t, users)| (t, users.into_iter().collect::<HashMap<_, _>>())).collect();
        Ok(())
    }
}

/// The field a detection rule's alerts are grouped by when it does not say.
pub fn default_suppress_by() -> Vec<String> {
    vec![names::TENANT.to_string(), "user_id".to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
title: Deleted
id: deleted
logsource: {product: tines}
detection:
  sel:
    operation_name: [CredentialDestruction, CredentialBulkDestruction]
  condition: sel
---
title: Many deletions
id: many
correlation:
  type: value_sum
  rules: [deleted]
  group-by: [tenant, user_id]
  timespan: 24h
  condition: {field: object_count, gt: 5}
---
title: Login
id: login
logsource: {product: tines}
detection:
  sel:
    operation_name: Login
  condition: sel
---
title: Logins from many countries
id: countries
correlation:
  type: value_count
  rules: [login]
  group-by: [user_id]
  timespan: 1h
  condition: {field: source_country, gte: 3}
---
title: Token made
id: token
logsource: {product: tines}
detection:
  sel:
    operation_name: AuthenticationTokenCreation
  condition: sel
---
title: Token then SSO change
id: token_then_sso
correlation:
  type: temporal
  rules: [token, sso]
  group-by: [user_id]
  timespan: 10m
  condition: {gte: 2}
  generate: true
---
title: SSO
id: sso
logsource: {product: tines}
detection:
  sel:
    operation_name: SsoConfigurationSamlSet
  condition: sel
tines_audit.suppress_for: 30m
"#;

    fn engine() -> Engine {
        let pack = RulePack::from_sources([("t.yml", RULES)]);
        assert!(pack.problems.is_empty(), "{:?}", pack.problems);
        let (e, problems) = Engine::new(&pack, &EngineOptions::default(), Arc::new(GeoIp::emulator()));
        assert!(problems.is_empty(), "{problems:?}");
        e
    }

    fn rec(id: i64, op: &str, user: i64, ip: &str) -> String {
        format!(
            r#"{{"id":{id},"operation_name":"{op}","user_id":{user},"request_ip":"{ip}","inputs":{{"inputs":{{"credentialId":{id}}}}}}}"#
        )
    }

    fn feed(e: &mut Engine, seq: i64, t: i64, op: &str, user: i64, ip: &str) -> Vec<String> {
        e.evaluate(seq, "acme", t, &rec(seq, op, user, ip)).into_iter().map(|r| r.rule.id.clone()).collect()
    }

    #[test]
    fn sixth_deletion_after_a_restart_still_fires_and_the_alert_is_not_raised_twice() {
        let mut e = engine();
        let t0 = 1_700_000_000;
        for i in 1..=3 {
            assert!(feed(&mut e, i, t0 + i * 60, "CredentialDestruction", 7, "86.40.0.1").is_empty());
        }
        let state = e.export_state(t0 + 180);
        // Restart: a new engine from the committed state.
        let mut e = engine();
        e.import_state(&state).unwrap();
        assert!(feed(&mut e, 4, t0 + 3600, "CredentialDestruction", 7, "86.40.0.1").is_empty());
        assert!(feed(&mut e, 5, t0 + 7200, "CredentialDestruction", 7, "86.40.0.1").is_empty());
        assert!(feed(&mut e, 6, t0 + 7300, "CredentialDestruction", 8, "86.40.0.1").is_empty(), "other user");
        assert_eq!(feed(&mut e, 7, t0 + 7400, "CredentialDestruction", 7, "86.40.0.1"), vec!["many"]);
        // Further deletions in the window are the same situation: suppressed, not a new alert.
        assert!(feed(&mut e, 8, t0 + 7500, "CredentialDestruction", 7, "86.40.0.1").is_empty());
        assert_eq!(e.counters.suppressed, 1);
        // Suppression survives a restart too.
        let state = e.export_state(t0 + 7500);
        let mut e = engine();
        e.import_state(&state).unwrap();
        assert!(feed(&mut e, 9, t0 + 7600, "CredentialDestruction", 7, "86.40.0.1").is_empty());
        // A fresh engine without the state would have missed the first three: no alert at the sixth.
        let mut cold = engine();
        for (seq, t) in [(4, 3600), (5, 7200), (7, 7400)] {
            assert!(feed(&mut cold, seq, t0 + t, "CredentialDestruction", 7, "86.40.0.1").is_empty());
        }
    }

    #[test]
    fn suppression_is_per_rule_and_group_for_the_rules_period() {
        let mut e = engine();
        let t0 = 1_700_000_000;
        assert_eq!(feed(&mut e, 1, t0, "SsoConfigurationSamlSet", 1, "86.40.0.1"), vec!["sso"]);
        assert!(
            feed(&mut e, 2, t0 + 60, "SsoConfigurationSamlSet", 1, "86.40.0.1").is_empty(),
            "same user: suppressed"
        );
        assert_eq!(feed(&mut e, 3, t0 + 120, "SsoConfigurationSamlSet", 2, "86.40.0.1"), vec!["sso"], "other user");
        assert_eq!(feed(&mut e, 4, t0 + 1801, "SsoConfigurationSamlSet", 1, "86.40.0.1"), vec!["sso"], "30m later");
        assert_eq!(e.counters.suppressed, 1);
    }

    #[test]
    fn value_count_and_temporal_correlations_fire() {
        let mut e = engine();
        let t0 = 1_700_000_000;
        assert!(feed(&mut e, 1, t0, "Login", 3, "86.40.0.1").is_empty());
        assert!(feed(&mut e, 2, t0 + 60, "Login", 3, "86.40.0.2").is_empty(), "same country twice");
        assert!(feed(&mut e, 3, t0 + 120, "Login", 3, "90.0.0.1").is_empty());
        let fired = feed(&mut e, 4, t0 + 180, "Login", 3, "126.0.0.1");
        assert_eq!(fired, vec!["countries"]);
        // `generate: true` lets the temporal's rules alert on their own too.
        assert_eq!(feed(&mut e, 5, t0 + 300, "AuthenticationTokenCreation", 9, "86.40.0.1"), vec!["token"]);
        let fired = feed(&mut e, 6, t0 + 400, "SsoConfigurationSamlSet", 9, "86.40.0.1");
        assert!(fired.contains(&"token_then_sso".to_string()) && fired.contains(&"sso".to_string()), "{fired:?}");
    }

    #[test]
    fn old_events_build_state_but_raise_nothing_and_raised_alerts_carry_their_events() {
        let mut e = engine();
        let t0 = 1_700_000_000;
        e.raise_after = Some(t0 + 1000);
        for i in 1..=5 {
            feed(&mut e, i, t0 + i, "CredentialDestruction", 7, "86.40.0.1");
        }
        assert!(feed(&mut e, 6, t0 + 6, "CredentialDestruction", 7, "86.40.0.1").is_empty(), "too old to alert");
        assert_eq!(e.counters.too_old, 1);
        let r = e.evaluate(7, "acme", t0 + 1001, &rec(7, "CredentialDestruction", 7, "86.40.0.1"));
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert_eq!(r.correlation.as_deref(), Some("value_sum"));
        assert_eq!(r.value, Some(7.0));
        assert_eq!(r.trigger.country.as_deref(), Some("IE"));
        assert_eq!(r.event_ids.iter().map(|(_, id)| *id).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
        assert!(r.group.contains(&("user_id".to_string(), "7".to_string())), "{:?}", r.group);
    }

    #[test]
    fn unreadable_state_is_refused() {
        let mut e = engine();
        assert!(e.import_state("not json").is_err());
        assert!(e.import_state(r#"{"version":99}"#).is_err());
    }
}
