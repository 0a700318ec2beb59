//! Alerts you can work: the alert API (`/api/v1/alerts…`, `/api/v1/rules/{id}`) and the
//! console's alert pages (a filtered, paged list that can group repeats; a detail page
//! with the alert's events, its history, its rule and a triage form). Both read one query
//! string the same way ([`parse_params`]), and both validate a change the same way
//! ([`parse_change`]), so a script gets what the page shows and is refused what it refuses.

pub mod api;
pub mod pages;

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::detect::rules::RulePack;
use crate::journal::{AlertChange, AlertQuery, AlertStatus, TriagedAlert};
use crate::timeutil::format_rfc3339;

/// Alerts per page unless `limit` says otherwise, and at most.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;
/// Longest note and assignee accepted, in characters.
pub const MAX_NOTE: usize = 2000;
pub const MAX_ASSIGNEE: usize = 100;
/// Values one filter takes at most, and their length: a query string cannot make a huge query.
const MAX_VALUES: usize = 100;
const MAX_VALUE_LEN: usize = 200;

/// The rule levels Sigma knows, most severe first.
pub const LEVELS: [&str; 5] = ["critical", "high", "medium", "low", "informational"];

/// One rule as loaded: what an alert's reader needs to know about the rule that raised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleText {
    pub id: String,
    pub title: String,
    pub level: String,
    pub description: String,
    pub tags: Vec<String>,
    pub file: String,
    /// The rule's YAML document, as written.
    pub sigma: String,
}

/// The rules the console can show, by id: the configured `[detect]` rules, or the shipped
/// pack when detection is off here (alerts in a shared journal may come from elsewhere).
#[derive(Debug, Clone, Default)]
pub struct RuleBook {
    rules: HashMap<String, RuleText>,
    /// Whether these are the rules this service runs.
    pub detection: bool,
}

impl RuleBook {
    pub fn from_pack(pack: &RulePack, detection: bool) -> RuleBook {
        let rules = pack
            .docs
            .iter()
            .map(|d| {
                let text = RuleText {
                    id: d.id.clone(),
                    title: d.title.clone(),
                    level: d.level.clone(),
                    description: d.description.clone(),
                    tags: d.tags.clone(),
                    file: d.file.clone(),
                    sigma: d.text.clone(),
                };
                (d.id.clone(), text)
            })
            .collect();
        RuleBook { rules, detection }
    }

    /// The rules of `[detect]` (or the shipped pack without it). Rules that cannot be read
    /// leave the book without them: the detector reports why, and pages fall back on what
    /// each alert says of its rule.
    pub fn for_settings(detect: Option<&crate::detect::DetectSettings>) -> RuleBook {
        match detect {
            None => RuleBook::from_pack(&RulePack::builtin(), false),
            Some(d) => match d.load_rules() {
                Ok(pack) => RuleBook::from_pack(&pack, true),
                Err(e) => {
                    tracing::warn!("the console cannot show rule texts: {e}");
                    RuleBook { rules: HashMap::new(), detection: true }
                }
            },
        }
    }

    pub fn get(&self, id: &str) -> Option<&RuleText> {
        self.rules.get(id)
    }

    /// Every rule id, sorted.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.rules.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

/// A bad parameter: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn bad(field: &'static str, message: impl Into<String>) -> ParamError {
    ParamError { field, message: message.into() }
}

/// The filters of an alert list as given (for forms and links), and as a query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertParams {
    pub status: Vec<String>,
    pub level: Vec<String>,
    pub rule: Vec<String>,
    pub tenant: Vec<String>,
    pub group_key: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub grouped: bool,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

impl AlertParams {
    /// The filters (not the cursor) as query-string pairs, for links that keep them.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (k, vs) in
            [("status", &self.status), ("level", &self.level), ("rule", &self.rule), ("tenant", &self.tenant)]
        {
            out.extend(vs.iter().map(|v| (k, v.clone())));
        }
        for (k, v) in [("group_key", &self.group_key), ("from", &self.from), ("to", &self.to)] {
            if let Some(v) = v {
                out.push((k, v.clone()));
            }
        }
        if self.grouped {
            out.push(("group", "true".into()));
        }
        if let Some(l) = self.limit {
            out.push(("limit", l.to_string()));
        }
        out
    }
}

/// A keyset position in the alert list: `{event_time}_{seq}` of the last alert (or group's
/// newest alert) of the page before.
pub fn encode_cursor(event_time: i64, seq: i64) -> String {
    format!("{event_time}_{seq}")
}

fn decode_cursor(s: &str) -> Option<(i64, i64)> {
    let (t, seq) = s.split_once('_')?;
    Some((t.parse().ok()?, seq.parse().ok()?))
}

/// Values of a filter: repeated or comma-separated, trimmed, without empties.
fn push_values(into: &mut Vec<String>, field: &'static str, v: &str) -> Result<(), ParamError> {
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part.chars().count() > MAX_VALUE_LEN || part.chars().any(char::is_control) {
            return Err(bad(
                field,
                format!("values are at most {MAX_VALUE_LEN} characters, without control characters"),
            ));
        }
        into.push(part.to_string());
        if into.len() > MAX_VALUES {
            return Err(bad(field, format!("at most {MAX_VALUES} values")));
        }
    }
    Ok(())
}

/// Reads an alert list's query string (`status`, `level`, `rule`, `tenant`, `group_key`,
/// `from`, `to`, `group`, `limit`, `cursor`), refusing anything else. What was read comes
/// back whatever the outcome, so a form can be shown again as it was sent.
pub fn parse_params(raw: Option<&str>, now: i64) -> (AlertParams, Result<AlertQuery, ParamError>) {
    let mut p = AlertParams::default();
    let q = read_params(raw, now, &mut p);
    (p, q)
}

fn read_params(raw: Option<&str>, now: i64, p: &mut AlertParams) -> Result<AlertQuery, ParamError> {
    let mut first_error = None;
    let mut keep = |r: Result<(), ParamError>| {
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let v = v.trim();
        match k.as_ref() {
            "status" => keep(push_values(&mut p.status, "status", v)),
            "level" => keep(push_values(&mut p.level, "level", v)),
            "rule" => keep(push_values(&mut p.rule, "rule", v)),
            "tenant" => keep(push_values(&mut p.tenant, "tenant", v)),
            "group_key" if !v.is_empty() => p.group_key = Some(v.to_string()),
            "from" if !v.is_empty() => p.from = Some(v.to_string()),
            "to" if !v.is_empty() => p.to = Some(v.to_string()),
            "group_key" | "from" | "to" => {}
            "group" => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "on" | "yes" => p.grouped = true,
                "false" | "0" | "off" | "no" | "" => p.grouped = false,
                _ => keep(Err(bad("group", "say true or false"))),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => p.limit = Some(n),
                _ => keep(Err(bad("limit", format!("a number from 1 to {MAX_PAGE}")))),
            },
            "cursor" if !v.is_empty() => p.cursor = Some(v.to_string()),
            "cursor" => {}
            other => keep(Err(ParamError {
                field: "query",
                message: format!(
                    "unknown parameter {:?}: alerts take status, level, rule, tenant, group_key, from, to, group, limit and cursor",
                    other.chars().take(40).collect::<String>()
                ),
            })),
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut q = AlertQuery::default();
    for s in &p.status {
        let status = AlertStatus::parse(s)
            .ok_or_else(|| bad("status", format!("{s:?} is not one of open, acknowledged, closed")))?;
        q.statuses.push(status);
    }
    for l in &p.level {
        let l = l.to_ascii_lowercase();
        if !LEVELS.contains(&l.as_str()) {
            return Err(bad("level", format!("{l:?} is not one of {}", LEVELS.join(", "))));
        }
        q.levels.push(l);
    }
    q.rules = p.rule.clone();
    q.tenants = p.tenant.clone();
    q.group_key = p.group_key.clone();
    let point = |field: &'static str, v: &Option<String>| {
        v.as_deref()
            .map(|s| crate::query::filter::parse_point(s, now).map_err(|e| bad(field, e.to_string())))
            .transpose()
    };
    q.from = point("from", &p.from)?;
    q.to = point("to", &p.to)?;
    if let (Some(a), Some(b)) = (q.from, q.to)
        && a >= b
    {
        return Err(bad(
            "to",
            format!("the range is empty: from {} is not before to {}", format_rfc3339(a), format_rfc3339(b)),
        ));
    }
    if let Some(c) = &p.cursor {
        q.before = Some(
            decode_cursor(c).ok_or_else(|| bad("cursor", "not one this service gave out; start again without it"))?,
        );
    }
    Ok(q)
}

/// A change as asked for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRequest {
    pub status: Option<AlertStatus>,
    /// `Some(None)`: take the alert off whoever has it.
    pub assignee: Option<Option<String>>,
    pub note: String,
}

/// Applies a validated change to alert `id` as user `by`, now, and logs it (blocking: run
/// it through `Journal::call`). `None` when there is no such alert. The API and the
/// console's form both triage through this.
pub fn apply(
    j: &crate::journal::Journal,
    id: &str,
    change: &ChangeRequest,
    by: &str,
) -> Result<Option<crate::journal::triage::Triaged>, crate::journal::JournalError> {
    let ask = crate::journal::triage::TriageChange {
        status: change.status,
        assignee: change.assignee.as_ref().map(|a| a.as_deref()),
        note: &change.note,
        by,
        at: crate::timeutil::now_secs(),
    };
    let done = j.triage_alert(id, &ask)?;
    if let Some(c) = done.as_ref().and_then(|d| d.change.as_ref()) {
        tracing::info!(alert = %id, user = %by, from = %c.from_status, to = %c.to_status, "alert triaged");
    }
    Ok(done)
}

/// Checks a change: a known status, an assignee and a note of sensible size without control
/// characters (a note may have line breaks), and something to do.
pub fn parse_change(
    status: Option<&str>,
    assignee: Option<Option<&str>>,
    note: Option<&str>,
) -> Result<ChangeRequest, ParamError> {
    let status = status
        .map(|s| {
            AlertStatus::parse(s).ok_or_else(|| {
                bad(
                    "status",
                    format!("{:?} is not one of open, acknowledged, closed", s.chars().take(40).collect::<String>()),
                )
            })
        })
        .transpose()?;
    let assignee = match assignee {
        None => None,
        Some(None) => Some(None),
        Some(Some(a)) => {
            let a = a.trim();
            if a.chars().count() > MAX_ASSIGNEE {
                return Err(bad("assignee", format!("at most {MAX_ASSIGNEE} characters")));
            }
            if a.chars().any(char::is_control) {
                return Err(bad("assignee", "control characters (line breaks, NUL…) are not allowed in a name"));
            }
            Some((!a.is_empty()).then(|| a.to_string()))
        }
    };
    let note = note.unwrap_or("").replace("\r\n", "\n");
    let note = note.trim();
    if note.chars().count() > MAX_NOTE {
        return Err(bad("note", format!("at most {MAX_NOTE} characters (this one has {})", note.chars().count())));
    }
    if note.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad("note", "control characters (NUL, escapes…) are not allowed; line breaks and tabs are"));
    }
    if status.is_none() && assignee.is_none() && note.is_empty() {
        return Err(bad("body", "nothing to change: send status, assignee or note"));
    }
    Ok(ChangeRequest { status, assignee, note: note.to_string() })
}

/// What an alert's body says, read once.
pub struct Said {
    pub title: String,
    pub summary: String,
    pub description: String,
    pub level: String,
    pub group: Value,
    pub body: Value,
}

/// Reads an alert's body, falling back on the loaded rule where the body is silent.
pub fn said(a: &TriagedAlert, rules: &RuleBook) -> Said {
    let body: Value = serde_json::from_str(&a.alert.body).unwrap_or(Value::Null);
    let rule = rules.get(&a.alert.rule_id);
    let text = |v: &Value, fallback: Option<&String>| {
        v.as_str().map(str::to_string).or_else(|| fallback.cloned()).unwrap_or_default()
    };
    let level = if a.level.is_empty() { text(&body["rule"]["level"], rule.map(|r| &r.level)) } else { a.level.clone() };
    Said {
        title: text(&body["rule"]["title"], rule.map(|r| &r.title)).chars().take(500).collect::<String>(),
        summary: text(&body["summary"], None),
        description: text(&body["rule"]["description"], rule.map(|r| &r.description)),
        level: level.to_ascii_lowercase(),
        group: if body["group"].is_object() {
            body["group"].clone()
        } else {
            serde_json::from_str(&a.group_key).unwrap_or_else(|_| Value::String(a.group_key.clone()))
        },
        body,
    }
}

/// Percent-encodes a path segment (an alert or rule id in a link).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn time(t: Option<i64>) -> Value {
    t.map_or(Value::Null, |t| Value::String(format_rfc3339(t)))
}

/// An alert for the API.
pub fn alert_json(a: &TriagedAlert, rules: &RuleBook) -> Value {
    let s = said(a, rules);
    let id = path_segment(&a.alert.id);
    json!({
        "id": a.alert.id,
        "seq": a.alert.seq,
        "rule": {"id": a.alert.rule_id, "title": s.title, "level": s.level, "description": s.description},
        "level": s.level,
        "summary": s.summary,
        "tenant": a.alert.tenant,
        "group": s.group,
        "group_key": a.group_key,
        "event_time": format_rfc3339(a.alert.event_time),
        "raised_at": format_rfc3339(a.alert.raised_at),
        "status": a.status,
        "assignee": a.assignee,
        "triaged_at": time(a.triaged_at),
        "triaged_by": a.triaged_by,
        "events": a.linked_events,
        "links": {
            "self": format!("/api/v1/alerts/{id}"),
            "events": format!("/api/v1/alerts/{id}/events"),
            "rule": format!("/api/v1/rules/{}", path_segment(&a.alert.rule_id)),
            "console": format!("/alerts/{id}"),
        },
    })
}

/// An entry of an alert's history for the API.
pub fn change_json(c: &AlertChange) -> Value {
    json!({
        "seq": c.seq,
        "at": format_rfc3339(c.at),
        "by": c.by,
        "from_status": c.from_status,
        "to_status": c.to_status,
        "from_assignee": c.from_assignee,
        "to_assignee": c.to_assignee,
        "note": c.note,
    })
}

/// A loaded rule for the API.
pub fn rule_json(r: &RuleText, detection: bool) -> Value {
    json!({
        "id": r.id,
        "title": r.title,
        "level": r.level,
        "description": r.description,
        "tags": r.tags,
        "file": r.file,
        "sigma": r.sigma,
        "running": detection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;

    #[test]
    fn alert_lists_read_filters_repeated_or_comma_separated_and_name_the_bad_one() {
        let (p, q) = parse_params(
            Some(
                "status=open,Acknowledged&level=HIGH&level=critical&rule=r1&tenant=t&from=1d&group=on&limit=5&cursor=100_7",
            ),
            NOW,
        );
        let q = q.unwrap();
        assert_eq!(q.statuses, vec![AlertStatus::Open, AlertStatus::Acknowledged]);
        assert_eq!(q.levels, vec!["high", "critical"]);
        assert_eq!((q.rules.as_slice(), q.tenants.as_slice()), (&["r1".to_string()][..], &["t".to_string()][..]));
        assert_eq!((q.from, q.to, q.before), (Some(NOW - 86_400), None, Some((100, 7))));
        assert!(p.grouped && p.limit == Some(5));
        let field = |s: &str| parse_params(Some(s), NOW).1.unwrap_err().field;
        assert_eq!(field("status=resolved"), "status");
        assert_eq!(field("level=urgent"), "level");
        assert_eq!(field("from=yesterday-ish"), "from");
        assert_eq!(field("from=2d&to=3d"), "to");
        assert_eq!(field("limit=0"), "limit");
        assert_eq!(field("limit=1001"), "limit");
        assert_eq!(field("cursor=nope"), "cursor");
        assert_eq!(field("group=maybe"), "group");
        assert_eq!(field("bogus=1"), "query");
        assert_eq!(field(&format!("rule={}", "x".repeat(201))), "rule");
        assert_eq!(field("rule=a%00b"), "rule");
        // What was read before the error comes back, so the form shows it again.
        let (kept, q) = parse_params(Some("tenant=t&status=resolved"), NOW);
        assert!(q.is_err());
        assert_eq!((kept.tenant, kept.status), (vec!["t".to_string()], vec!["resolved".to_string()]));
        let (p, q) = parse_params(None, NOW);
        assert_eq!((p, q.unwrap()), (AlertParams::default(), AlertQuery::default()));
    }

    #[test]
    fn a_change_needs_something_to_do_a_known_status_and_sane_text() {
        let ok = parse_change(Some("Closed"), Some(Some("  ann ")), Some(" done\r\nreally ")).unwrap();
        assert_eq!(
            ok,
            ChangeRequest {
                status: Some(AlertStatus::Closed),
                assignee: Some(Some("ann".into())),
                note: "done\nreally".into()
            }
        );
        assert_eq!(parse_change(None, Some(Some("")), None).unwrap().assignee, Some(None), "empty unassigns");
        fn field(s: Option<&str>, a: Option<Option<&str>>, n: Option<&str>) -> &'static str {
            parse_change(s, a, n).unwrap_err().field
        }
        assert_eq!(field(Some("resolved"), None, None), "status");
        assert_eq!(field(None, None, Some(&"x".repeat(MAX_NOTE + 1))), "note");
        assert_eq!(field(None, None, Some("a\u{0}b")), "note");
        assert_eq!(field(None, None, Some("\u{1b}[31m")), "note");
        assert_eq!(field(None, Some(Some("a\nb")), None), "assignee");
        assert_eq!(field(None, Some(Some(&"a".repeat(MAX_ASSIGNEE + 1))), None), "assignee");
        assert_eq!(field(None, None, Some("   ")), "body");
        assert!(parse_change(None, None, Some(&"é".repeat(MAX_NOTE))).is_ok(), "characters, not bytes");
    }

    #[test]
    fn ids_in_links_are_one_path_segment() {
        assert_eq!(path_segment("rule_a:12"), "rule_a:12");
        assert_eq!(path_segment("a/b c?d#\"<"), "a%2Fb%20c%3Fd%23%22%3C");
    }
}
