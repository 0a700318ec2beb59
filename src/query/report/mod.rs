//! Compliance evidence reports: for a framework (SOC 2, ISO 27001, GDPR) and
//! a period, each section's events with the controls they evidence
//! ([`controls::SECTIONS`]), the continuity of the collection itself (the
//! ledger of committed windows, so a hole in the journal shows), and the
//! alerts raised. Rendered as HTML (inline SVG, prints to PDF), Markdown or CSV.

pub mod controls;
mod render;

use std::collections::BTreeMap;

use serde_json::Value;

pub use controls::{Control, SectionDef};
pub(crate) use render::md_cell;
pub use render::{csv, html, markdown};

use super::filter::EventFilter;
use super::geo::CountryLookup;
use super::search::{EventRow, SearchError};
use crate::journal::Journal;

/// The frameworks a report is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Framework {
    Soc2,
    Iso27001,
    Gdpr,
}

impl Framework {
    pub fn title(self) -> &'static str {
        match self {
            Framework::Soc2 => "SOC 2 (Trust Services Criteria)",
            Framework::Iso27001 => "ISO/IEC 27001:2022 Annex A",
            Framework::Gdpr => "GDPR (Regulation (EU) 2016/679)",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Framework::Soc2 => "soc2",
            Framework::Iso27001 => "iso27001",
            Framework::Gdpr => "gdpr",
        }
    }
}

/// Most events one section lists (the count is always exact).
pub const MAX_SECTION_EVENTS: usize = 50_000;

/// One section with its events.
#[derive(Debug)]
pub struct Section {
    pub def: &'static SectionDef,
    pub controls: &'static [Control],
    pub count: usize,
    /// Newest first.
    pub events: Vec<EventRow>,
    pub by_operation: Vec<(String, usize)>,
    pub by_user: Vec<(String, usize)>,
    /// Events that deserve a line of their own (a tenant owner granted, a bulk deletion).
    pub highlights: Vec<String>,
}

/// A stretch of the period with no committed collection window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub from: i64,
    pub to: i64,
    /// The stretch after the cursor that has simply not been collected yet (not a hole).
    pub pending: bool,
}

/// What the collection ledger says about one tenant over the period.
#[derive(Debug, Clone)]
pub struct Continuity {
    pub tenant: String,
    pub gaps: Vec<Gap>,
    /// Windows committed that touch the period, and the events they added.
    pub windows: i64,
    pub inserted: i64,
    pub first_commit: Option<i64>,
    pub last_commit: Option<i64>,
    pub cursor: Option<i64>,
    /// Cursor commits per day of commit: (day, windows, events added).
    pub cursor_history: Vec<(i64, i64, i64)>,
    /// Reconciliation passes that re-counted part of the period with the API,
    /// the last one's end, and the late events they found in it.
    pub reconcile_passes: i64,
    pub last_reconcile: Option<i64>,
    pub reconcile_finds: Vec<crate::journal::ReconcileFind>,
}

impl Continuity {
    /// One sentence on what reconciliation checked in the period, for every format.
    pub fn reconciliation_summary(&self) -> String {
        let found: u64 = self.reconcile_finds.iter().map(|f| f.found).sum();
        match (self.reconcile_passes, self.last_reconcile) {
            (0, _) | (_, None) => "Reconciliation has not re-counted this period with the API: events that reached the API later than the collector's overlap would not show here as gaps (run `tines-audit reconcile`, or keep collect.reconcile_every on).".to_string(),
            (n, Some(last)) if found == 0 => format!(
                "Reconciliation re-counted this period with the API {n} time(s), last at {}: the journal was missing no event.",
                crate::timeutil::format_rfc3339(last)
            ),
            (n, Some(last)) => format!(
                "Reconciliation re-counted this period with the API {n} time(s), last at {}: it found {found} event(s) that reached the API after collection had passed their time; they are in the journal now.",
                crate::timeutil::format_rfc3339(last)
            ),
        }
    }
}

/// One reconciliation find in words.
pub fn describe_find(f: &crate::journal::ReconcileFind) -> String {
    use crate::timeutil::format_rfc3339;
    format!(
        "{}..{}: {} event(s) dated {}..{} found at {} (up to {} s after their time)",
        format_rfc3339(f.slice_start),
        format_rfc3339(f.slice_end),
        f.found,
        format_rfc3339(f.oldest),
        format_rfc3339(f.newest),
        format_rfc3339(f.found_at),
        f.max_late_secs
    )
}

/// An alert from the detector's table.
#[derive(Debug, Clone)]
pub struct AlertEntry {
    pub id: String,
    pub rule_id: String,
    pub title: String,
    pub level: String,
    pub summary: String,
    pub tenant: String,
    pub event_time: i64,
    pub raised_at: i64,
    pub events: usize,
}

#[derive(Debug)]
pub struct Report {
    pub framework: Framework,
    pub from: i64,
    pub to: i64,
    pub generated_at: i64,
    pub tenants: Vec<String>,
    pub total_events: i64,
    /// All events of the period per day.
    pub daily: Vec<(i64, i64)>,
    pub sections: Vec<Section>,
    pub continuity: Vec<Continuity>,
    /// `None` when the journal has no alerts table (detection never ran).
    pub alerts: Option<Vec<AlertEntry>>,
    pub integrity: Integrity,
    /// Each tenant's posture at the end of the period, with the changes within it.
    pub posture: Vec<PostureSection>,
    /// Self-test runs that started in the period, newest first (at most [`MAX_SELFTESTS`]).
    pub selftests: Vec<crate::journal::SelftestRun>,
}

/// One tenant's posture for the report.
#[derive(Debug)]
pub struct PostureSection {
    pub tenant: String,
    /// The state at the end of the period, with every change within it (`changes`).
    pub end: crate::posture::Posture,
    /// The history up to now against the tenant, when the tenant was read (`report --live`).
    pub drift: Option<crate::posture::Drift>,
}

impl PostureSection {
    /// Entries in force at the end of the period whose kind wants a note and that have none.
    pub fn without_note(&self) -> usize {
        self.end.entries.iter().filter(|e| e.needs_note).count()
    }

    /// One sentence on what was compared with the tenant.
    pub fn drift_summary(&self) -> String {
        match &self.drift {
            None => "Not checked against the tenant: the report was written without --live, so entries in the tenant with no creation in the history (undocumented) are not known here.".into(),
            Some(d) => {
                let (u, m) = (d.undocumented().count(), d.missing().count());
                let unchecked: Vec<&str> = d.areas.iter().filter(|a| !a.checked).map(|a| a.kind.title()).collect();
                format!(
                    "Checked against the tenant's admin API at {}: {u} undocumented entr{} (in the tenant with no creation in the history), {m} in force by the history but missing from the tenant. Not checked: {}.",
                    crate::timeutil::format_rfc3339(d.checked_at),
                    if u == 1 { "y" } else { "ies" },
                    if unchecked.is_empty() { "nothing".to_string() } else { unchecked.join(", ") }
                )
            }
        }
    }
}

/// Most self-test runs a report lists (over a year of hourly runs).
pub const MAX_SELFTESTS: usize = 10_000;

impl Report {
    /// One sentence on the self-tests of the period, for every format.
    pub fn selftest_summary(&self) -> String {
        let runs = &self.selftests;
        let Some(last) = runs.first() else {
            return "No self-test ran in the period: nothing here shows that the detection rules fired and the alert outputs delivered (set [detect] selftest_every for the daemon to run and record one; `tines-audit selftest` runs one by hand without recording it).".to_string();
        };
        let failed = runs.iter().filter(|r| !r.passed).count();
        let capped = if runs.len() >= MAX_SELFTESTS { " (the newest shown)" } else { "" };
        format!(
            "{} self-test run(s) in the period{capped}, {} passed, {failed} failed: each ran every enabled detection rule on synthetic events and sent the test alerts to every alert output. The last, at {}: {}",
            runs.len(),
            runs.len() - failed,
            crate::timeutil::format_rfc3339(last.started_at),
            last.summary
        )
    }
}

/// What `tines-audit verify` says of the whole journal, as the report shows it.
#[derive(Debug)]
pub struct Integrity {
    pub result: crate::journal::chain::ChainReport,
    /// The fingerprints of the keys whose signatures were trusted.
    pub keys: Vec<String>,
    /// The oldest and newest event the verification covered (its period).
    pub span: Option<(i64, i64)>,
}

impl Integrity {
    /// One sentence on the verification, for every format.
    pub fn summary(&self) -> String {
        let r = &self.result;
        let period = self.span.map_or("the journal holds no events".to_string(), |(a, b)| {
            format!(
                "the whole journal, events dated {} to {}",
                crate::timeutil::format_rfc3339(a),
                crate::timeutil::format_rfc3339(b)
            )
        });
        let keys = if self.keys.is_empty() { "no signing key".to_string() } else { self.keys.join(", ") };
        let verdict = if r.problems.is_empty() {
            "Verified: no record changed, deleted, inserted or reordered".to_string()
        } else {
            format!("FAILED: {} problem(s)", r.problems.len())
        };
        format!(
            "{verdict}. Checked {} events and {} signed checkpoints across {} tenants, covering {period}; signatures checked with {keys}.",
            r.verified, r.checkpoints, r.tenants
        )
    }
}

/// Reads the alerts raised for events in `[from, to)` (newest first), if detection ever ran.
pub fn read_alerts(
    journal: &Journal,
    from: i64,
    to: i64,
    tenants: &[String],
    limit: usize,
) -> Result<Option<Vec<AlertEntry>>, SearchError> {
    let mut out = Vec::new();
    for a in journal.alerts_between(from, to, limit)? {
        if !tenants.is_empty() && !tenants.contains(&a.tenant) {
            continue;
        }
        let v: Value = serde_json::from_str(&a.body).unwrap_or_default();
        out.push(AlertEntry {
            title: v["rule"]["title"].as_str().unwrap_or(&a.rule_id).to_string(),
            level: v["rule"]["level"].as_str().unwrap_or("").to_string(),
            summary: v["summary"].as_str().unwrap_or("").to_string(),
            events: v["events"].as_array().map_or(0, Vec::len),
            id: a.id,
            rule_id: a.rule_id,
            tenant: a.tenant,
            event_time: a.event_time,
            raised_at: a.raised_at,
        });
    }
    Ok(Some(out))
}

/// Merges the committed ranges of a tenant (every job) over `[from, to)` and returns what is not covered.
fn gaps(mut ranges: Vec<(i64, i64)>, from: i64, to: i64, cursor: Option<i64>) -> Vec<Gap> {
    ranges.sort_unstable();
    let mut out = Vec::new();
    let mut at = from;
    for (a, b) in ranges {
        if b <= at {
            continue;
        }
        if a > at {
            out.push(Gap { from: at, to: a.min(to), pending: false });
        }
        at = at.max(b);
        if at >= to {
            break;
        }
    }
    if at < to {
        out.push(Gap { from: at, to, pending: cursor == Some(at) });
    }
    out.retain(|g| g.from < g.to);
    out
}

fn continuity(journal: &Journal, tenant: &str, from: i64, to: i64) -> Result<Continuity, SearchError> {
    let mut c = Continuity {
        tenant: tenant.to_string(),
        gaps: Vec::new(),
        windows: 0,
        inserted: 0,
        first_commit: None,
        last_commit: None,
        cursor: None,
        cursor_history: Vec::new(),
        reconcile_passes: 0,
        last_reconcile: None,
        reconcile_finds: Vec::new(),
    };
    let Some(ledger) = journal.ledger(tenant, from, to)? else {
        c.gaps = gaps(Vec::new(), from, to, None);
        return Ok(c);
    };
    c.cursor = ledger.cursor;
    let mut ranges = Vec::new();
    let mut history: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (a, b, inserted, at, job) in ledger.windows {
        ranges.push((a, b));
        c.windows += 1;
        c.inserted += inserted;
        c.first_commit = Some(c.first_commit.map_or(at, |f: i64| f.min(at)));
        c.last_commit = Some(c.last_commit.map_or(at, |l: i64| l.max(at)));
        if job == "cursor" {
            let e = history.entry(at - at.rem_euclid(86_400)).or_default();
            e.0 += 1;
            e.1 += inserted;
        }
    }
    c.gaps = gaps(ranges, from, to, c.cursor);
    c.cursor_history = history.into_iter().map(|(d, (w, n))| (d, w, n)).collect();
    c.reconcile_passes = ledger.reconcile_passes;
    c.last_reconcile = ledger.last_reconcile;
    c.reconcile_finds = ledger.reconcile_finds;
    Ok(c)
}

/// Tenant-owner grants and bulk deletions, worth a line each.
fn highlight(e: &EventRow) -> Option<String> {
    let v: Value = serde_json::from_str(&e.raw).ok()?;
    let inputs = &v["inputs"];
    let owner = inputs["isTenantOwner"].as_bool().or_else(|| inputs["inputs"]["isTenantOwner"].as_bool());
    let who = e.user_email.clone().or_else(|| e.user_name.clone()).unwrap_or_else(|| "unknown user".into());
    match (e.operation_name.as_str(), owner) {
        ("UserEdit", Some(true)) => Some(format!("{}: {who} made a user tenant owner (event {})", e.created_at, e.id)),
        ("CredentialBulkDestruction", _) => {
            Some(format!("{}: {who} deleted credentials in bulk (event {})", e.created_at, e.id))
        }
        ("UserImpersonationEnabled", _) => {
            Some(format!("{}: {who} enabled impersonation (event {})", e.created_at, e.id))
        }
        _ => None,
    }
}

fn counted(mut m: BTreeMap<String, usize>) -> Vec<(String, usize)> {
    let mut v: Vec<_> = std::mem::take(&mut m).into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn section(
    journal: &Journal,
    def: &'static SectionDef,
    framework: Framework,
    base: &EventFilter,
    geo: &dyn CountryLookup,
) -> Result<Section, SearchError> {
    let f = EventFilter { operations: def.operations.iter().map(|s| s.to_string()).collect(), ..base.clone() };
    let mut events = Vec::new();
    let mut cursor = None;
    loop {
        let page = super::search::search(journal, &f, cursor, super::search::MAX_PAGE, geo)?;
        events.extend(page.events);
        match page.next_cursor {
            Some(c) if events.len() < MAX_SECTION_EVENTS => cursor = Some(super::search::Cursor::decode(&c)?),
            _ => break,
        }
    }
    let count = match events.len() {
        n if n < MAX_SECTION_EVENTS => n,
        _ => super::search::count(journal, &f, geo)? as usize,
    };
    let (mut ops, mut users) = (BTreeMap::new(), BTreeMap::new());
    for e in &events {
        *ops.entry(e.operation_name.clone()).or_insert(0) += 1;
        let who = e.user_email.clone().or_else(|| e.user_id.map(|i| format!("user {i}"))).unwrap_or_default();
        *users.entry(who).or_insert(0) += 1;
    }
    let highlights = events.iter().filter_map(highlight).collect();
    Ok(Section {
        def,
        controls: def.controls(framework),
        count,
        events,
        by_operation: counted(ops),
        by_user: counted(users),
        highlights,
    })
}

/// Builds the report for `[from, to)` (blocking, read-only). With no tenants given, every tenant in the journal.
pub fn build(
    journal: &Journal,
    framework: Framework,
    from: i64,
    to: i64,
    tenants: &[String],
    geo: &dyn CountryLookup,
    keys: &crate::signing::Keyring,
) -> Result<Report, SearchError> {
    build_with_live(journal, framework, from, to, tenants, geo, keys, &BTreeMap::new())
}

/// One tenant's posture section: the state at the end of the period with its changes, and
/// the drift when the tenant was read.
fn posture_section(
    journal: &Journal,
    tenant: &str,
    from: i64,
    to: i64,
    live: Option<&crate::posture::Live>,
) -> Result<PostureSection, SearchError> {
    use crate::posture::{Options, PostureError, compute, drift};
    let unwrap = |r: Result<crate::posture::Posture, PostureError>| match r {
        Ok(p) => Ok(p),
        Err(PostureError::Journal(j)) => Err(SearchError::Journal(j)),
        Err(e) => Err(SearchError::Filter(super::FilterError(e.to_string()))),
    };
    let end =
        unwrap(compute(journal, tenant, &Options { at: Some(to - 1), history: false, changes_since: Some(from) }))?;
    // Drift is between the tenant now and the history up to now, whatever the period.
    let drift = match live {
        Some(l) => Some(drift(&unwrap(compute(journal, tenant, &Options::default()))?, l)),
        None => None,
    };
    Ok(PostureSection { tenant: tenant.to_string(), end, drift })
}

/// [`build`], with what each tenant (by name) holds now, read from its admin API, for the
/// posture section's undocumented entries.
#[allow(clippy::too_many_arguments)]
pub fn build_with_live(
    journal: &Journal,
    framework: Framework,
    from: i64,
    to: i64,
    tenants: &[String],
    geo: &dyn CountryLookup,
    keys: &crate::signing::Keyring,
    live: &BTreeMap<String, crate::posture::Live>,
) -> Result<Report, SearchError> {
    let tenants: Vec<String> = if tenants.is_empty() { journal.tenants()? } else { tenants.to_vec() };
    let base = EventFilter { tenants: tenants.clone(), from: Some(from), to: Some(to), ..Default::default() };
    let daily = super::search::histogram(journal, &base, 86_400, geo)?;
    let total_events = daily.iter().map(|d| d.1).sum();
    let sections = controls::SECTIONS
        .iter()
        .filter(|d| !d.controls(framework).is_empty())
        .map(|d| section(journal, d, framework, &base, geo))
        .collect::<Result<Vec<_>, _>>()?;
    let continuity = tenants.iter().map(|t| continuity(journal, t, from, to)).collect::<Result<Vec<_>, _>>()?;
    let alerts = read_alerts(journal, from, to, &tenants, 10_000)?;
    let known = journal.tenants()?;
    let posture = tenants
        .iter()
        .filter(|t| known.contains(t))
        .map(|t| posture_section(journal, t, from, to, live.get(t)))
        .collect::<Result<Vec<_>, _>>()?;
    let integrity = Integrity {
        result: crate::journal::chain::verify_journal(journal, keys, &|_| {})?,
        keys: keys.fingerprints(),
        span: journal.span(&crate::journal::EventQuery::default())?,
    };
    let selftests = journal.selftest_runs(from, to, MAX_SELFTESTS)?;
    Ok(Report {
        selftests,
        integrity,
        framework,
        from,
        to,
        generated_at: crate::timeutil::now_secs(),
        tenants,
        total_events,
        daily,
        sections,
        continuity,
        alerts,
        posture,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_what_no_committed_range_covers() {
        let g = gaps(vec![(0, 10), (5, 20), (30, 40)], 0, 50, Some(40));
        assert_eq!(g, vec![Gap { from: 20, to: 30, pending: false }, Gap { from: 40, to: 50, pending: true }]);
        assert_eq!(gaps(vec![(-5, 100)], 0, 50, None), vec![]);
        assert_eq!(gaps(vec![], 0, 50, None), vec![Gap { from: 0, to: 50, pending: false }]);
        assert_eq!(gaps(vec![(10, 60)], 0, 50, Some(60)), vec![Gap { from: 0, to: 10, pending: false }]);
    }
}
