//! Loading Sigma rule files: each YAML document (detection or correlation
//! rule) is linted, parsed, checked against the documented field names and
//! compiled on its own, so that a broken rule is reported with its file,
//! line and field and left out, and never stops the others. Also parses each
//! rule's `examples` (see `docs/detection.md`) and runs them.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rsigma_parser::{CorrelationCondition, CorrelationRule, Detection, Severity, SigmaRule, SigmaValue};
use serde_json::Value;

use super::engine::{Engine, EngineOptions, RuleInfo, default_suppress_by};
use super::fields::names;
use super::geoip::GeoIp;
use crate::timeutil::parse_duration;

/// The shipped rule pack, built into the binary (the same files as `rules/` in the repository).
pub const BUILTIN: &[(&str, &str)] = &[
    ("rules/credential_mass_deletion.yml", include_str!("../../rules/credential_mass_deletion.yml")),
    ("rules/tenant_owner_or_admin_granted.yml", include_str!("../../rules/tenant_owner_or_admin_granted.yml")),
    ("rules/unexpected_country.yml", include_str!("../../rules/unexpected_country.yml")),
    ("rules/new_country_for_user.yml", include_str!("../../rules/new_country_for_user.yml")),
    ("rules/service_api_key_created.yml", include_str!("../../rules/service_api_key_created.yml")),
    ("rules/sso_configuration_changed.yml", include_str!("../../rules/sso_configuration_changed.yml")),
    ("rules/custom_certificate_authority_set.yml", include_str!("../../rules/custom_certificate_authority_set.yml")),
    ("rules/global_resource_deleted.yml", include_str!("../../rules/global_resource_deleted.yml")),
    ("rules/many_actions_disabled.yml", include_str!("../../rules/many_actions_disabled.yml")),
    ("rules/jobs_deleted.yml", include_str!("../../rules/jobs_deleted.yml")),
    ("rules/ip_access_control_rule_changed.yml", include_str!("../../rules/ip_access_control_rule_changed.yml")),
    ("rules/egress_control_rule_changed.yml", include_str!("../../rules/egress_control_rule_changed.yml")),
    ("rules/user_impersonation_enabled.yml", include_str!("../../rules/user_impersonation_enabled.yml")),
    ("rules/recovery_codes_generated.yml", include_str!("../../rules/recovery_codes_generated.yml")),
    ("rules/session_timeout_changed.yml", include_str!("../../rules/session_timeout_changed.yml")),
    ("rules/change_control_settings_changed.yml", include_str!("../../rules/change_control_settings_changed.yml")),
    ("rules/story_deletion_burst.yml", include_str!("../../rules/story_deletion_burst.yml")),
    ("rules/team_deletion_burst.yml", include_str!("../../rules/team_deletion_burst.yml")),
];

/// A problem with a rule: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    pub file: String,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(r) = &self.rule {
            write!(f, " [{r}]")?;
        }
        if let Some(field) = &self.field {
            write!(f, " {field}:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// What a document is.
#[derive(Debug, Clone)]
pub enum DocKind {
    Detection(Box<SigmaRule>),
    Correlation(Box<CorrelationRule>),
}

/// One example of a rule: events in order, and whether the rule should fire.
#[derive(Debug, Clone)]
pub struct Example {
    pub name: String,
    pub expect_match: bool,
    /// Seconds after the first event, and the raw Tines record.
    pub events: Vec<(i64, Value)>,
}

/// One rule, loaded and checked.
#[derive(Debug, Clone)]
pub struct LoadedDoc {
    pub file: String,
    /// 1-based line where the document starts.
    pub line: usize,
    pub text: String,
    pub id: String,
    pub title: String,
    pub level: String,
    pub description: String,
    pub tags: Vec<String>,
    pub kind: DocKind,
    /// `%name%` values the rule expands (`|expand`), needing a configured value.
    pub placeholders: Vec<String>,
    pub suppress_by: Vec<String>,
    pub suppress_secs: Option<i64>,
    /// Placeholder values the examples run with.
    pub example_vars: BTreeMap<String, Vec<String>>,
    pub examples: Vec<Example>,
}

impl LoadedDoc {
    /// A problem at this rule (at `needle`'s line if found, else the rule's first line).
    pub fn problem(&self, field: Option<&str>, message: String) -> RuleProblem {
        let line = field.and_then(|f| line_of(&self.text, f)).map_or(self.line, |l| self.line + l);
        RuleProblem {
            file: self.file.clone(),
            line: Some(line),
            field: field.map(str::to_string),
            rule: Some(self.id.clone()),
            message,
        }
    }

    pub fn is_correlation(&self) -> bool {
        matches!(self.kind, DocKind::Correlation(_))
    }

    pub fn info(&self) -> RuleInfo {
        RuleInfo {
            id: self.id.clone(),
            title: self.title.clone(),
            level: self.level.clone(),
            description: self.description.clone(),
            tags: self.tags.clone(),
            file: self.file.clone(),
            suppress_by: self.suppress_by.clone(),
            suppress_secs: self.suppress_secs,
        }
    }
}

/// The rules found, and the problems of those left out.
#[derive(Debug, Clone, Default)]
pub struct RulePack {
    pub docs: Vec<LoadedDoc>,
    pub problems: Vec<RuleProblem>,
    pub files: usize,
}

/// Placeholder values as an rsigma pipeline (`vars` + `value_placeholders`).
pub fn placeholder_pipeline(vars: &BTreeMap<String, Vec<String>>) -> rsigma_eval::Pipeline {
    let text = serde_json::json!({
        "name": "tines-audit configuration values",
        "priority": 10,
        "vars": vars,
        "transformations": [{"type": "value_placeholders"}],
    })
    .to_string();
    rsigma_eval::parse_pipeline(&text).expect("a vars-only pipeline always parses")
}

/// 0-based index of the first line of `text` that names `needle` as a key
/// (`needle:` or `needle|modifier:`), else that contains it.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    let key = needle.rsplit('/').next().unwrap_or(needle);
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ").trim_start_matches(['\'', '"']);
            t.starts_with(key) && t[key.len()..].trim_start_matches(['\'', '"']).starts_with([':', '|'])
        })
        .or_else(|| lines.iter().position(|l| l.contains(key)))
}

/// Every field name rules may use: documented ones, and paths below `inputs`/`outputs`.
pub fn is_known_field(name: &str) -> bool {
    const RECORD: &[&str] = &[
        "created_at",
        "updated_at",
        "id",
        "operation_name",
        "user_id",
        "user_email",
        "user_name",
        "request_ip",
        "request_user_agent",
        "tenant_id",
        "inputs",
        "outputs",
    ];
    const ADDED: &[&str] = &[
        names::TENANT,
        names::CATEGORY,
        names::VERB,
        names::COUNTRY,
        names::ASN,
        names::AS_ORG,
        names::NEW_COUNTRY,
        names::OBJECT_COUNT,
    ];
    RECORD.contains(&name)
        || ADDED.contains(&name)
        || name.strip_prefix("inputs.").or_else(|| name.strip_prefix("outputs.")).is_some_and(|p| !p.is_empty())
}

fn walk_detection(d: &Detection, fields: &mut Vec<String>, placeholders: &mut Vec<String>) {
    match d {
        Detection::AllOf(items) => {
            for i in items {
                if let Some(n) = &i.field.name {
                    fields.push(n.clone());
                }
                if i.field.has_modifier(rsigma_parser::Modifier::Expand) {
                    for v in &i.values {
                        if let SigmaValue::String(s) = v {
                            let mut rest = s.original.as_str();
                            while let Some(a) = rest.find('%') {
                                let Some(b) = rest[a + 1..].find('%') else { break };
                                placeholders.push(rest[a + 1..a + 1 + b].to_string());
                                rest = &rest[a + 2 + b..];
                            }
                        }
                    }
                }
            }
        }
        Detection::AnyOf(ds) => ds.iter().for_each(|d| walk_detection(d, fields, placeholders)),
        Detection::ArrayMatch { field, body, .. } => {
            fields.push(field.clone());
            let mut inner = Vec::new();
            walk_detection(body, &mut inner, placeholders);
        }
        _ => {}
    }
}

/// A custom attribute of the document as JSON (`null` when absent).
fn attr(attrs: &std::collections::HashMap<String, impl serde::Serialize>, key: &str) -> Value {
    attrs.get(key).and_then(|v| serde_json::to_value(v).ok()).unwrap_or(Value::Null)
}

/// Splits a file into its YAML documents: (0-based first line, text).
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut cur = String::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            if !cur.trim().is_empty() {
                docs.push((start, std::mem::take(&mut cur)));
            }
            cur.clear();
            start = i + 1;
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        docs.push((start, cur));
    }
    docs
}

fn parse_examples(doc: &LoadedDoc, v: &Value, problems: &mut Vec<RuleProblem>) -> Vec<Example> {
    let Some(list) = v.as_array() else {
        if !v.is_null() {
            problems.push(doc.problem(Some("examples"), "must be a list of {name, expect, event | events}".into()));
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let name = e.get("name").and_then(Value::as_str).map_or_else(|| format!("#{}", i + 1), str::to_string);
        let bad = |m: &str| doc.problem(Some("examples"), format!("example {name}: {m}"));
        let expect_match = match e.get("expect").and_then(Value::as_str) {
            Some("match") => true,
            Some("no-match") => false,
            _ => {
                problems.push(bad("expect must be `match` or `no-match`"));
                continue;
            }
        };
        let events = match (e.get("event"), e.get("events").and_then(Value::as_array)) {
            (Some(ev), None) if ev.is_object() => vec![(0, ev.clone())],
            (None, Some(seq)) if !seq.is_empty() => {
                let mut evs = Vec::new();
                for item in seq {
                    let offset = match item.get("offset") {
                        None => Some(0),
                        Some(Value::Number(n)) => n.as_i64(),
                        Some(Value::String(s)) => parse_duration(s).map(|d| d.as_secs() as i64),
                        _ => None,
                    };
                    match (offset, item.get("event")) {
                        (Some(o), Some(ev)) if ev.is_object() => evs.push((o, ev.clone())),
                        _ => {
                            problems.push(bad("each of `events` needs an `event` mapping and an `offset` such as 10m"));
                            evs.clear();
                            break;
                        }
                    }
                }
                if evs.is_empty() {
                    continue;
                }
                evs
            }
            _ => {
                problems.push(bad("needs either `event` (one mapping) or `events` (a list of {offset, event})"));
                continue;
            }
        };
        out.push(Example { name, expect_match, events });
    }
    out
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// Loads one document; `None` (with problems) when it cannot run.
fn load_doc(file: &str, first_line: usize, text: String, problems: &mut Vec<RuleProblem>) -> Option<LoadedDoc> {
    let at = |line: usize, field: Option<String>, message: String| RuleProblem {
        file: file.to_string(),
        line: Some(first_line + 1 + line),
        field,
        rule: None,
        message,
    };
    let mut failed = false;
    for w in rsigma_parser::lint_yaml_str(&text) {
        if w.severity != Severity::Error {
            continue;
        }
        let line = w.span.map(|s| s.start_line as usize).or_else(|| line_of(&text, &w.path)).unwrap_or(0);
        let field = (!w.path.is_empty() && w.path != "/").then(|| w.path.trim_start_matches('/').replace('/', "."));
        problems.push(at(line, field, format!("{} ({})", w.message, w.rule)));
        failed = true;
    }
    if failed {
        return None;
    }
    let coll = match rsigma_parser::parse_sigma_yaml(&text) {
        Ok(c) => c,
        Err(e) => {
            problems.push(at(0, None, e.to_string()));
            return None;
        }
    };
    if !coll.errors.is_empty() {
        for e in &coll.errors {
            // Point at the field an error names, if the text has it.
            let named = e.split(['\'', '"', '`']).nth(1).filter(|n| !n.is_empty() && line_of(&text, n).is_some());
            let line = named.and_then(|n| line_of(&text, n)).unwrap_or(0);
            problems.push(at(line, named.map(str::to_string), e.clone()));
        }
        return None;
    }
    let (kind, id, title, level, description, tags, attrs) = match (coll.rules.first(), coll.correlations.first()) {
        (Some(r), None) if coll.rules.len() == 1 && coll.filters.is_empty() => (
            DocKind::Detection(Box::new(r.clone())),
            r.id.clone(),
            r.title.clone(),
            r.level,
            r.description.clone(),
            r.tags.clone(),
            r.custom_attributes
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Value::Null)))
                .collect::<std::collections::HashMap<_, _>>(),
        ),
        (None, Some(c)) if coll.correlations.len() == 1 && coll.filters.is_empty() => (
            DocKind::Correlation(Box::new(c.clone())),
            c.id.clone().or_else(|| c.name.clone()),
            c.title.clone(),
            c.level,
            c.description.clone(),
            c.tags.clone(),
            c.custom_attributes
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Value::Null)))
                .collect(),
        ),
        _ => {
            problems.push(at(0, None, "each YAML document must hold one detection or correlation rule (filters and `action:` documents are not supported)".into()));
            return None;
        }
    };
    let Some(id) = id else {
        problems.push(at(0, Some("id".into()), "every rule needs an `id`: correlation state and suppression are kept under it, and correlations refer to rules by it".into()));
        return None;
    };
    let mut doc = LoadedDoc {
        file: file.to_string(),
        line: first_line + 1,
        text,
        id,
        title,
        level: level.map_or_else(|| "medium".to_string(), |l| format!("{l:?}").to_ascii_lowercase()),
        description: description.unwrap_or_default(),
        tags,
        kind,
        placeholders: Vec::new(),
        suppress_by: default_suppress_by(),
        suppress_secs: None,
        example_vars: BTreeMap::new(),
        examples: Vec::new(),
    };
    let before = problems.len();
    let mut fields = Vec::new();
    match &doc.kind {
        DocKind::Detection(r) => {
            let mut placeholders = Vec::new();
            for d in r.detection.named.values() {
                walk_detection(d, &mut fields, &mut placeholders);
            }
            placeholders.sort();
            placeholders.dedup();
            doc.placeholders = placeholders;
            if let Err(e) = rsigma_eval::compile_rule(r) {
                problems.push(doc.problem(None, format!("does not compile: {e}")));
            }
        }
        DocKind::Correlation(c) => {
            fields.extend(c.group_by.iter().cloned());
            if let CorrelationCondition::Threshold { field: Some(f), .. } = &c.condition {
                fields.extend(f.iter().cloned());
            }
            // Correlations group by their own fields.
            doc.suppress_by = c.group_by.clone();
        }
    }
    for f in &fields {
        if !is_known_field(f) {
            let hint = if f.contains('.') { "" } else { "; nested fields are inputs.… paths" };
            problems.push(doc.problem(
                Some(f),
                format!("unknown field (see docs/detection.md for the field names{hint}); the rule could never match"),
            ));
        }
    }
    let by = attr(&attrs, "tines_audit.suppress_by");
    if !by.is_null() {
        match string_list(&by) {
            Some(list) if list.iter().all(|f| is_known_field(f)) => doc.suppress_by = list,
            _ => problems
                .push(doc.problem(Some("tines_audit.suppress_by"), "must be a list of known field names".into())),
        }
    }
    match attr(&attrs, "tines_audit.suppress_for") {
        Value::Null => {}
        Value::String(s) if parse_duration(&s).is_some() => {
            doc.suppress_secs = parse_duration(&s).map(|d| d.as_secs() as i64);
        }
        _ => {
            problems.push(doc.problem(Some("tines_audit.suppress_for"), "must be a duration such as 30m or 24h".into()))
        }
    }
    if let Value::Object(m) = attr(&attrs, "tines_audit.example_vars") {
        for (k, v) in m {
            match string_list(&v) {
                Some(list) => {
                    doc.example_vars.insert(k, list);
                }
                None => problems
                    .push(doc.problem(Some("tines_audit.example_vars"), format!("{k}: must be a list of strings"))),
            }
        }
    }
    doc.examples = parse_examples(&doc, &attr(&attrs, "examples"), problems);
    if problems.len() > before { None } else { Some(doc) }
}

impl RulePack {
    /// Loads rules from named texts (file name, YAML).
    pub fn from_sources<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> RulePack {
        let mut pack = RulePack::default();
        for (file, text) in sources {
            pack.files += 1;
            for (line, doc) in documents(text) {
                if let Some(d) = load_doc(file, line, doc, &mut pack.problems) {
                    pack.docs.push(d);
                }
            }
        }
        pack.check_references();
        pack
    }

    /// The shipped pack.
    pub fn builtin() -> RulePack {
        Self::from_sources(BUILTIN.iter().copied())
    }

    /// Loads `*.yml`/`*.yaml` files from each path (a file, or a directory read recursively, in name order).
    pub fn load(paths: &[PathBuf]) -> std::io::Result<RulePack> {
        let mut files = Vec::new();
        for p in paths {
            collect_files(p, &mut files)?;
        }
        let mut texts = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f)
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot read rule file {}: {e}", f.display())))?;
            texts.push((f.display().to_string(), text));
        }
        Ok(Self::from_sources(texts.iter().map(|(f, t)| (f.as_str(), t.as_str()))))
    }

    /// The correlations that count rule `id` without letting it alert on its own (no
    /// `generate: true`): a rule they name raises nothing itself.
    pub fn counted_by(&self, id: &str) -> Vec<&str> {
        self.docs
            .iter()
            .filter(|d| matches!(&d.kind, DocKind::Correlation(c) if !c.generate && c.rules.iter().any(|r| r == id)))
            .map(|d| d.id.as_str())
            .collect()
    }

    /// A detection rule that only feeds correlations (it raises nothing itself).
    pub fn is_counted_only(&self, id: &str) -> bool {
        !self.counted_by(id).is_empty()
    }

    /// Duplicate ids, and correlations counting rules that are not loaded, are problems too.
    fn check_references(&mut self) {
        let mut seen = HashSet::new();
        let mut keep = Vec::new();
        for d in std::mem::take(&mut self.docs) {
            if seen.insert(d.id.clone()) {
                keep.push(d);
            } else {
                self.problems
                    .push(d.problem(Some("id"), format!("id {} is used by another rule; ids must be unique", d.id)));
            }
        }
        let ids: HashSet<String> = keep.iter().map(|d| d.id.clone()).collect();
        let mut out = Vec::new();
        for d in keep {
            if let DocKind::Correlation(c) = &d.kind
                && let Some(missing) = c.rules.iter().find(|r| !ids.contains(*r))
            {
                self.problems.push(d.problem(
                    Some(missing),
                    format!("correlation refers to rule {missing}, which is not loaded (missing or broken)"),
                ));
                continue;
            }
            out.push(d);
        }
        self.docs = out;
    }
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(p).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    if meta.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            collect_files(&e, out)?;
        } else if e.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push(e);
        }
    }
    Ok(())
}

/// How one example went.
#[derive(Debug, Clone)]
pub struct ExampleOutcome {
    pub rule: String,
    pub file: String,
    pub example: String,
    pub expect_match: bool,
    pub fired: bool,
    /// The example could not run (its rule is off with the example values).
    pub error: Option<String>,
}

impl ExampleOutcome {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.fired == self.expect_match
    }
}

/// The first event of every example sequence is stamped at this time.
pub const EXAMPLE_BASE_TIME: i64 = 1_700_000_000;

/// Runs every example of every rule through a fresh engine of the whole pack
/// (so a correlation sees its base rules), enriched with `geo`.
pub fn run_examples(pack: &RulePack, geo: Arc<GeoIp>) -> Vec<ExampleOutcome> {
    let mut out = Vec::new();
    for doc in &pack.docs {
        for ex in &doc.examples {
            let opts = EngineOptions { vars: doc.example_vars.clone(), ..EngineOptions::default() };
            let (mut engine, problems) = Engine::new(pack, &opts, geo.clone());
            let error = problems.iter().find(|p| p.rule.as_deref() == Some(&doc.id)).map(|p| p.message.clone());
            let mut fired = false;
            if error.is_none() {
                for (i, (offset, event)) in ex.events.iter().enumerate() {
                    let mut event = event.clone();
                    let at = EXAMPLE_BASE_TIME + offset;
                    if let Some(m) = event.as_object_mut() {
                        let ts = crate::timeutil::format_rfc3339(at);
                        m.entry("created_at").or_insert_with(|| ts.clone().into());
                        m.entry("id").or_insert_with(|| (i as i64 + 1).into());
                    }
                    let at = event
                        .get("created_at")
                        .and_then(Value::as_str)
                        .and_then(crate::timeutil::parse_rfc3339)
                        .unwrap_or(at);
                    let raw = event.to_string();
                    let tenant = event.get("tenant").and_then(Value::as_str).unwrap_or("example").to_string();
                    fired |= engine.evaluate(i as i64 + 1, &tenant, at, &raw).iter().any(|r| r.rule.id == doc.id);
                }
            }
            out.push(ExampleOutcome {
                rule: doc.id.clone(),
                file: doc.file.clone(),
                example: ex.name.clone(),
                expect_match: ex.expect_match,
                fired,
                error,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Vec<String> {
        RulePack::from_sources([("bad.yml", text)]).problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_file_in_rules_dir_is_built_in_and_loads_cleanly() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let on_disk = RulePack::load(std::slice::from_ref(&dir)).unwrap();
        assert_eq!(on_disk.files, BUILTIN.len(), "rules/ and BUILTIN list different files");
        let pack = RulePack::builtin();
        let problems: Vec<String> = pack.problems.iter().map(ToString::to_string).collect();
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(pack.docs.len(), on_disk.docs.len());
        assert!(pack.docs.len() >= 21, "{} rules", pack.docs.len());
    }

    #[test]
    fn broken_rules_name_file_line_and_field_and_leave_the_others_alone() {
        let text = "title: Good\nid: good\nlogsource: {product: tines}\ndetection:\n  sel:\n    operation_name: Login\n  condition: sel\n---\ntitle: Typo\nid: typo\nlogsource: {product: tines}\ndetection:\n  sel:\n    operation_nme: Login\n  condition: sel\n---\ntitle: Bad modifier\nid: badmod\nlogsource: {product: tines}\ndetection:\n  sel:\n    operation_name|startswith|bogus: Log\n  condition: sel\n";
        let pack = RulePack::from_sources([("mixed.yml", text)]);
        assert_eq!(pack.docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec!["good"]);
        let p: Vec<String> = pack.problems.iter().map(ToString::to_string).collect();
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0].starts_with("mixed.yml:14 [typo] operation_nme: unknown field"), "{}", p[0]);
        assert!(p[1].starts_with("mixed.yml:22 bogus: Unknown modifier"), "{}", p[1]);
    }

    #[test]
    fn yaml_errors_missing_ids_and_dangling_correlations_are_reported() {
        let p = problems_of("title: x\n  bad: [\n");
        assert!(p[0].starts_with("bad.yml:"), "{p:?}");
        let p = problems_of(
            "title: No id\nlogsource: {product: tines}\ndetection:\n  sel:\n    operation_name: Login\n  condition: sel\n",
        );
        assert!(p[0].contains(" id:") && p[0].contains("needs an `id`"), "{p:?}");
        let p = problems_of(
            "title: C\nid: c\ncorrelation:\n  type: event_count\n  rules: [nothing]\n  group-by: [user_id]\n  timespan: 1h\n  condition: {gte: 2}\n",
        );
        assert!(p[0].contains("bad.yml:5") && p[0].contains("nothing"), "{p:?}");
        let p = problems_of(
            "title: S\nid: s\nlogsource: {product: tines}\ndetection:\n  sel:\n    operation_name: Login\n  condition: sel\ntines_audit.suppress_for: soon\n",
        );
        assert!(p[0].contains("bad.yml:8") && p[0].contains("suppress_for"), "{p:?}");
    }

    #[test]
    fn a_rule_needing_a_placeholder_value_is_off_until_configured() {
        let pack = RulePack::builtin();
        let (engine, problems) = Engine::new(&pack, &EngineOptions::default(), Arc::new(GeoIp::emulator()));
        let off: Vec<&RuleProblem> = problems.iter().collect();
        assert_eq!(off.len(), 1, "{off:?}");
        assert_eq!(off[0].rule.as_deref(), Some("tines_unexpected_country"));
        assert!(off[0].message.contains("detect.allowed_countries"), "{}", off[0]);
        let with =
            EngineOptions { vars: [("allowed_countries".to_string(), vec!["IE".into()])].into(), ..Default::default() };
        let (all, problems) = Engine::new(&pack, &with, Arc::new(GeoIp::emulator()));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(all.rule_count(), engine.rule_count() + 1);
    }

    /// Each shipped rule that raises alerts has a positive and a negative
    /// example, and they behave as they say.
    fn check_rule(id: &str) {
        let pack = RulePack::builtin();
        let doc = pack.docs.iter().find(|d| d.id == id).unwrap_or_else(|| panic!("no rule {id}"));
        assert!(doc.examples.iter().any(|e| e.expect_match), "{id} has no positive example");
        assert!(doc.examples.iter().any(|e| !e.expect_match), "{id} has no negative example");
        let outcomes: Vec<ExampleOutcome> =
            run_examples(&pack, Arc::new(GeoIp::emulator())).into_iter().filter(|o| o.rule == id).collect();
        assert_eq!(outcomes.len(), doc.examples.len());
        for o in outcomes {
            assert!(
                o.passed(),
                "{id} / {}: expected {}, fired {} ({:?})",
                o.example,
                if o.expect_match { "match" } else { "no match" },
                o.fired,
                o.error
            );
        }
    }

    macro_rules! rule_tests {
        ($($name:ident => $id:literal),+ $(,)?) => {
            $(#[test] fn $name() { check_rule($id); })+

            #[test]
            fn every_alerting_rule_has_a_test_here() {
                let tested = [$($id),+];
                let pack = RulePack::builtin();
                let referenced: HashSet<&str> = pack.docs.iter().filter_map(|d| match &d.kind {
                    DocKind::Correlation(c) => Some(c.rules.iter().map(String::as_str).collect::<Vec<_>>()),
                    DocKind::Detection(_) => None,
                }).flatten().collect();
                for d in &pack.docs {
                    if !referenced.contains(d.id.as_str()) {
                        assert!(tested.contains(&d.id.as_str()), "rule {} has no test in rules::tests", d.id);
                    }
                }
            }
        };
    }

    rule_tests! {
        rule_credential_mass_deletion => "tines_credential_mass_deletion",
        rule_tenant_owner_or_admin_granted => "tines_tenant_owner_or_admin_granted",
        rule_unexpected_country => "tines_unexpected_country",
        rule_new_country_for_user => "tines_new_country_for_user",
        rule_service_api_key_created => "tines_service_api_key_created",
        rule_sso_configuration_changed => "tines_sso_configuration_changed",
        rule_custom_certificate_authority_set => "tines_custom_certificate_authority_set",
        rule_global_resource_deleted => "tines_global_resource_deleted",
        rule_many_actions_disabled => "tines_many_actions_disabled",
        rule_jobs_deleted => "tines_jobs_deleted",
        rule_ip_access_control_rule_changed => "tines_ip_access_control_rule_changed",
        rule_egress_control_rule_changed => "tines_egress_control_rule_changed",
        rule_user_impersonation_enabled => "tines_user_impersonation_enabled",
        rule_recovery_codes_generated => "tines_recovery_codes_generated",
        rule_session_timeout_changed => "tines_session_timeout_changed",
        rule_change_control_settings_changed => "tines_change_control_settings_changed",
        rule_story_deletion_burst => "tines_story_deletion_burst",
        rule_team_deletion_burst => "tines_team_deletion_burst",
    }
}
