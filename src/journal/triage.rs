//! Alert triage: where each alert stands (`open`, `acknowledged`, `closed`) and who has
//! it, changed by people through the console and the API, with an append-only history of
//! every change (who, when, from what to what, and why). The detector never writes any of
//! it, so triage neither holds up nor changes detection and the alert outputs.
//!
//! Alerts are read with filters and keyset pages of their own ([`AlertQuery`], newest
//! event first), and repeats of one rule and group in a tenant come together as
//! [`AlertGroup`]s. The filter's SQL is written once here for both backends.

use super::AlertRow;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Closed,
}

impl AlertStatus {
    pub const ALL: [AlertStatus; 3] = [AlertStatus::Open, AlertStatus::Acknowledged, AlertStatus::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Closed => "closed",
        }
    }

    /// `open`, `acknowledged` or `closed`, in any case.
    pub fn parse(s: &str) -> Option<AlertStatus> {
        let s = s.trim();
        AlertStatus::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    /// A status read back from the database (its CHECK constraint allows only these).
    pub(crate) fn stored(s: &str) -> Result<AlertStatus, super::JournalError> {
        AlertStatus::parse(s).ok_or_else(|| {
            super::JournalError::Database(format!("an alert has status {s:?}, which this build does not know"))
        })
    }
}

impl std::fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which alerts to read. An empty list means no condition; values of one list combine with OR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertQuery {
    pub statuses: Vec<AlertStatus>,
    /// Levels in lower case (`high`, `critical`…).
    pub levels: Vec<String>,
    pub rules: Vec<String>,
    pub tenants: Vec<String>,
    /// Only the repeats of one group (as stored: the JSON of the group's values).
    pub group_key: Option<String>,
    /// `event_time >= from`.
    pub from: Option<i64>,
    /// `event_time < to`.
    pub to: Option<i64>,
    /// Keyset: only alerts (for groups: groups whose newest alert is) strictly older than
    /// `(event_time, seq)`.
    pub before: Option<(i64, i64)>,
}

/// An alert with where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriagedAlert {
    pub alert: AlertRow,
    /// The values the rule grouped (and suppressed) the alert by, as JSON.
    pub group_key: String,
    /// The rule's level when it fired (from the alert's body), lower case; empty if it had none.
    pub level: String,
    pub status: AlertStatus,
    pub assignee: Option<String>,
    /// When and by whom it was last changed (`None`: never triaged).
    pub triaged_at: Option<i64>,
    pub triaged_by: Option<String>,
    /// Events linked to the alert. Retention may have deleted some since (once every alert
    /// output delivered the alert), so a search can find fewer.
    pub linked_events: i64,
}

/// The repeats of one rule and group in one tenant, among the alerts a query matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertGroup {
    /// Alerts of the group that match.
    pub count: i64,
    /// Of those, how many are open.
    pub open: i64,
    pub first_event_time: i64,
    /// The group's newest matching alert (its key in the group pages).
    pub newest: TriagedAlert,
}

/// How many alerts, and groups of repeats, a query matches (keyset ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AlertCounts {
    pub alerts: i64,
    pub groups: i64,
}

/// A change someone asks for; `None` leaves that part as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriageChange<'a> {
    pub status: Option<AlertStatus>,
    /// `Some(None)` takes the alert off whoever has it.
    pub assignee: Option<Option<&'a str>>,
    /// Why (may be empty).
    pub note: &'a str,
    /// Who asks (a `[web]` user's name).
    pub by: &'a str,
    pub at: i64,
}

/// One entry of an alert's history: a change, with who made it, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertChange {
    pub seq: i64,
    pub alert_seq: i64,
    pub at: i64,
    pub by: String,
    pub from_status: AlertStatus,
    pub to_status: AlertStatus,
    pub from_assignee: Option<String>,
    pub to_assignee: Option<String>,
    pub note: String,
}

/// What a triage did: the alert as it now stands, and the history entry written (`None` when
/// the change asked for nothing new and carried no note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triaged {
    pub alert: TriagedAlert,
    pub change: Option<AlertChange>,
}

impl TriageChange<'_> {
    /// The history entry this change makes to alert `alert_seq` standing at `status` with
    /// `assignee` (its `seq` is the database's to give), or `None` when it changes nothing
    /// and says nothing: asking twice for the same state writes one entry.
    pub(crate) fn entry(&self, alert_seq: i64, status: AlertStatus, assignee: Option<&str>) -> Option<AlertChange> {
        let to_status = self.status.unwrap_or(status);
        let to_assignee = self.assignee.unwrap_or(assignee);
        if to_status == status && to_assignee == assignee && self.note.is_empty() {
            return None;
        }
        Some(AlertChange {
            seq: 0,
            alert_seq,
            at: self.at,
            by: self.by.to_string(),
            from_status: status,
            to_status,
            from_assignee: assignee.map(str::to_string),
            to_assignee: to_assignee.map(str::to_string),
            note: self.note.to_string(),
        })
    }
}

/// The rule's level in an alert's body (`{"rule": {"level": "high"}}`), lower case; empty when
/// the body says none. Alerts are stored with it so the level filter reads an index.
pub fn level_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["rule"]["level"].as_str().map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

/// A value bound to a placeholder of [`Filter::sql`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
}

/// The `WHERE` conditions of a query over `alerts a`, with their values.
pub(crate) struct Filter {
    /// `TRUE` when there is no condition.
    pub sql: String,
    /// The same conditions with `{t}` for the table's alias, for a subquery over another alias
    /// (placeholders are numbered, so both bind the same values).
    template: String,
    /// The keyset's placeholders: the time and the seq a page must be older than.
    keyset_marks: Option<(String, String)>,
    pub params: Vec<Param>,
}

impl Filter {
    /// The conditions over `alerts {alias}`.
    pub(crate) fn on(&self, alias: &str) -> String {
        self.template.replace("{t}", alias)
    }

    /// ` AND (time, seq) < (…)` for the keyset, or nothing. A row value, so both databases
    /// start an index scan at the page's start instead of filtering every newer row.
    pub(crate) fn keyset(&self, time: &str, seq: &str) -> String {
        self.keyset_marks.as_ref().map_or(String::new(), |(t, s)| format!(" AND ({time}, {seq}) < ({t}, {s})"))
    }
}

/// Every column of a [`TriagedAlert`], from `alerts a`, in the order the backends read them.
pub(crate) const TRIAGED_COLUMNS: &str = "a.seq, a.id, a.rule_id, a.tenant, a.event_time, a.raised_at, a.body, \
     a.group_key, a.level, a.status, a.assignee, a.triaged_at, a.triaged_by, \
     (SELECT COUNT(*) FROM alert_events l WHERE l.alert_seq = a.seq)";

/// The history's columns, in [`AlertChange`]'s order.
pub(crate) const CHANGE_COLUMNS: &str =
    "seq, alert_seq, changed_at, changed_by, from_status, to_status, from_assignee, to_assignee, note";

impl AlertQuery {
    /// The query's conditions; `placeholder(n)` writes the n-th (1-based) parameter's marker
    /// (`?n` for SQLite, `$n` for PostgreSQL). The keyset condition is apart, as a group page
    /// applies it to each group's newest alert rather than to every alert.
    pub(crate) fn filter(&self, placeholder: impl Fn(usize) -> String) -> Filter {
        let mut params = Vec::new();
        let mut bind = |p: Param| {
            params.push(p);
            placeholder(params.len())
        };
        let mut conds = Vec::new();
        let mut any_of = |column: &str, values: Vec<Param>, bind: &mut dyn FnMut(Param) -> String| {
            if values.is_empty() {
                return;
            }
            let marks: Vec<String> = values.into_iter().map(bind).collect();
            conds.push(format!("{{t}}.{column} IN ({})", marks.join(", ")));
        };
        any_of("status", self.statuses.iter().map(|s| Param::Text(s.as_str().into())).collect(), &mut bind);
        any_of("level", self.levels.iter().map(|s| Param::Text(s.clone())).collect(), &mut bind);
        any_of("rule_id", self.rules.iter().map(|s| Param::Text(s.clone())).collect(), &mut bind);
        any_of("tenant", self.tenants.iter().map(|s| Param::Text(s.clone())).collect(), &mut bind);
        any_of("group_key", self.group_key.iter().map(|s| Param::Text(s.clone())).collect(), &mut bind);
        if let Some(from) = self.from {
            conds.push(format!("{{t}}.event_time >= {}", bind(Param::Int(from))));
        }
        if let Some(to) = self.to {
            conds.push(format!("{{t}}.event_time < {}", bind(Param::Int(to))));
        }
        let keyset_marks = self.before.map(|(t, seq)| (bind(Param::Int(t)), bind(Param::Int(seq))));
        let template = if conds.is_empty() { "TRUE".to_string() } else { conds.join(" AND ") };
        Filter { sql: template.replace("{t}", "a"), template, keyset_marks, params }
    }

    /// A page of alerts, newest event first, at most `limit_mark` (a placeholder) of them.
    pub(crate) fn list_sql(f: &Filter, limit_mark: &str) -> String {
        format!(
            "SELECT {TRIAGED_COLUMNS} FROM alerts a WHERE {}{} ORDER BY a.event_time DESC, a.seq DESC LIMIT {limit_mark}",
            f.sql,
            f.keyset("a.event_time", "a.seq")
        )
    }

    /// A page of groups, by their newest matching alert, newest first; each row is that alert's
    /// columns, then the group's count, open count and first event time. The groups are counted
    /// on the `alerts_group` index alone, each one's newest alert is found by one index seek,
    /// and only the page's groups are then joined to their alert. (A window over every
    /// matching alert carried each body through a sort: seconds for 200,000 alerts; joining
    /// every group before the limit let PostgreSQL hash the whole table.)
    pub(crate) fn groups_sql(f: &Filter, limit_mark: &str) -> String {
        format!(
            "SELECT {TRIAGED_COLUMNS}, p.group_count, p.group_open, p.group_first FROM (
                 SELECT n.* FROM (
                     SELECT g.*, (SELECT b.seq FROM alerts b
                                  WHERE b.tenant = g.tenant AND b.rule_id = g.rule_id AND b.group_key = g.group_key
                                    AND b.event_time = g.group_last AND {}
                                  ORDER BY b.seq DESC LIMIT 1) AS newest
                     FROM (SELECT a.tenant, a.rule_id, a.group_key, COUNT(*) AS group_count,
                                  SUM(CASE WHEN a.status = 'open' THEN 1 ELSE 0 END) AS group_open,
                                  MIN(a.event_time) AS group_first, MAX(a.event_time) AS group_last
                           FROM alerts a WHERE {} GROUP BY a.tenant, a.rule_id, a.group_key) g
                 ) n WHERE TRUE{} ORDER BY n.group_last DESC, n.newest DESC LIMIT {limit_mark}
             ) p JOIN alerts a ON a.seq = p.newest
             ORDER BY a.event_time DESC, a.seq DESC",
            f.on("b"),
            f.sql,
            f.keyset("n.group_last", "n.newest")
        )
    }

    /// The conditions for [`AlertQuery::counts_sql`]: the query's without its keyset (whose
    /// values would otherwise be bound to placeholders the count does not have).
    pub(crate) fn count_filter(&self, placeholder: impl Fn(usize) -> String) -> Filter {
        AlertQuery { before: None, ..self.clone() }.filter(placeholder)
    }

    /// How many alerts and groups match (the keyset is not applied).
    pub(crate) fn counts_sql(f: &Filter) -> String {
        format!(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT), COUNT(*) FROM
               (SELECT COUNT(*) AS n FROM alerts a WHERE {} GROUP BY a.tenant, a.rule_id, a.group_key) g",
            f.sql
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_in_any_case_and_nothing_else() {
        assert_eq!(AlertStatus::parse(" Acknowledged "), Some(AlertStatus::Acknowledged));
        assert_eq!(AlertStatus::parse("CLOSED"), Some(AlertStatus::Closed));
        assert_eq!(AlertStatus::parse("resolved"), None);
        assert_eq!(AlertStatus::parse(""), None);
    }

    #[test]
    fn a_change_that_changes_nothing_and_says_nothing_writes_no_entry() {
        let ask = |status, assignee, note| TriageChange { status, assignee, note, by: "ann", at: 5 };
        assert_eq!(ask(Some(AlertStatus::Open), None, "").entry(1, AlertStatus::Open, None), None);
        assert_eq!(ask(None, Some(Some("bob")), "").entry(1, AlertStatus::Open, Some("bob")), None);
        let e = ask(None, Some(None), "").entry(1, AlertStatus::Open, Some("bob")).expect("unassigns");
        assert_eq!((e.from_assignee.as_deref(), e.to_assignee), (Some("bob"), None));
        let e = ask(None, None, "looked, fine").entry(1, AlertStatus::Closed, None).expect("a note alone counts");
        assert_eq!((e.from_status, e.to_status), (AlertStatus::Closed, AlertStatus::Closed));
    }

    #[test]
    fn the_level_comes_from_the_rule_in_the_body() {
        assert_eq!(level_of(r#"{"rule":{"level":"High"}}"#), "high");
        assert_eq!(level_of(r#"{"rule":{}}"#), "");
        assert_eq!(level_of("not json"), "");
    }

    #[test]
    fn filters_number_their_placeholders_for_any_alias_and_keep_the_keyset_apart() {
        let q = AlertQuery {
            statuses: vec![AlertStatus::Open, AlertStatus::Acknowledged],
            tenants: vec!["t".into()],
            from: Some(10),
            before: Some((50, 7)),
            ..Default::default()
        };
        let f = q.filter(|n| format!("${n}"));
        assert_eq!(f.sql, "a.status IN ($1, $2) AND a.tenant IN ($3) AND a.event_time >= $4");
        assert_eq!(f.keyset("a.event_time", "a.seq"), " AND (a.event_time, a.seq) < ($5, $6)");
        assert_eq!(f.on("b"), "b.status IN ($1, $2) AND b.tenant IN ($3) AND b.event_time >= $4");
        assert_eq!(f.params.len(), 6);
        assert_eq!(AlertQuery::default().filter(|n| format!("?{n}")).sql, "TRUE");
    }
}
