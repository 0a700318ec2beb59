//! A tenant's security posture rebuilt from its audit history: tenant owners and
//! admins, users with tenant permissions, IP access control rules, the action egress
//! allowlist, API keys and tenant-wide settings, each with who changed it last, when,
//! from where and by which event; the notes saying why an entry exists; and, against
//! the tenant's admin API, the drift between the history and what is in force.
//!
//! [`compute`] builds a plain [`Posture`] from the journal (the CLI, reports, and later
//! the console and alerts use the same); [`drift`] compares it with a [`Live`] read.
//! The table from operations to changes is [`mapping`]; the replay is `state`.

pub mod live;
pub mod mapping;
pub mod render;
mod state;

use std::collections::BTreeMap;

pub use live::{Fetched, Live, LiveRule, LiveUser};
pub use mapping::Kind;
pub use state::PeriodChange;

use crate::journal::{EventQuery, FoundEvent, Journal, JournalError, PostureNote};
use crate::timeutil::format_rfc3339;

/// What went wrong building a posture.
#[derive(Debug, thiserror::Error)]
pub enum PostureError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("no tenant named {0:?} in the journal; `tines-audit state show` lists the tenants collected")]
    UnknownTenant(String),
}

/// One change of an entry: the event it comes from and who made it, when and from where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Unix seconds.
    pub at: i64,
    /// The same, RFC 3339.
    pub time: String,
    pub operation: String,
    /// The Tines audit-log id of the event.
    pub event_id: i64,
    pub user_id: Option<i64>,
    pub user_email: Option<String>,
    pub request_ip: Option<String>,
    /// What it did, in words.
    pub what: String,
}

impl Change {
    fn from_event(e: &FoundEvent) -> Change {
        Change {
            at: e.created_at,
            time: format_rfc3339(e.created_at),
            operation: e.operation_name.clone(),
            event_id: e.id,
            user_id: e.user_id,
            user_email: e.user_email.clone(),
            request_ip: e.request_ip.clone(),
            what: String::new(),
        }
    }

    /// Who made it: the e-mail address, else the user id, else "the system".
    pub fn actor(&self) -> String {
        match (&self.user_email, self.user_id) {
            (Some(e), _) if !e.is_empty() => e.clone(),
            (_, Some(i)) => format!("user {i}"),
            _ => "the system (no user in the record)".into(),
        }
    }
}

/// One entry in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub kind: Kind,
    /// What `posture annotate --id` takes: the address of a rule, the e-mail of a user, the
    /// name of a key, the key of a setting.
    pub id: String,
    /// Other ids that name it (`id:77` for a rule whose Tines id is known, `user:5101`).
    pub aliases: Vec<String>,
    pub title: String,
    pub fields: BTreeMap<String, String>,
    /// The change that put it in force; `None` when that is not in the history.
    pub since: Option<Change>,
    /// The latest change.
    pub last: Option<Change>,
    /// Records that may have removed or changed it without saying so (the newest few).
    pub doubts: Vec<String>,
    pub doubts_total: usize,
    /// The events behind the doubts.
    pub doubt_events: Vec<i64>,
    /// What the records did not say about it.
    pub unknown: Vec<String>,
    /// Every change, oldest first (only when asked for).
    pub history: Vec<Change>,
    /// The latest note on it.
    pub note: Option<PostureNote>,
    /// Every note on it, oldest first.
    pub notes: Vec<PostureNote>,
    /// No note says why it exists, and its kind wants one.
    pub needs_note: bool,
}

impl Entry {
    /// Whether `id` names this entry (its id or an alias, case-insensitively).
    pub fn named(&self, id: &str) -> bool {
        let id = id.trim();
        self.id.eq_ignore_ascii_case(id) || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
    }
}

/// A record that changed the posture without naming what well enough to apply it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unresolved {
    pub kind: Kind,
    pub change: Change,
    pub why: String,
}

/// A tenant's posture at a moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Posture {
    pub tenant: String,
    /// The state includes every event created at or before this (unix seconds).
    pub at: i64,
    pub at_time: String,
    /// The oldest event of the tenant in the journal: nothing before it is known.
    pub history_from: Option<i64>,
    /// Posture events read.
    pub events: u64,
    pub entries: Vec<Entry>,
    pub unresolved: Vec<Unresolved>,
    pub unresolved_total: usize,
    /// Changes at or after `Options::changes_since` (reports), oldest first.
    pub changes: Vec<PeriodChange>,
    pub changes_total: usize,
    /// Notes whose entry is not in force (removed, or never in the history).
    pub other_notes: Vec<PostureNote>,
    /// What the reader must know to read it right.
    pub caveats: Vec<String>,
}

impl Posture {
    pub fn entries_of(&self, kind: Kind) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.kind == kind)
    }
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The moment (unix seconds, inclusive); `None` is everything in the journal.
    pub at: Option<i64>,
    /// Keep every entry's full history.
    pub history: bool,
    /// Also list every change at or after this moment.
    pub changes_since: Option<i64>,
}

/// Events read per query: memory is this page and the state, whatever the history's length.
const PAGE: usize = 5_000;

/// Builds a tenant's posture from the journal (blocking; run it through `Journal::call`).
pub fn compute(journal: &Journal, tenant: &str, opts: &Options) -> Result<Posture, PostureError> {
    if !journal.tenants()?.iter().any(|t| t == tenant) {
        return Err(PostureError::UnknownTenant(tenant.to_string()));
    }
    let at = opts.at.unwrap_or(i64::MAX - 1);
    let mut builder = state::Builder::new(opts.history, opts.changes_since);
    let mut after = None;
    let mut events = 0u64;
    let operations = mapping::operations();
    loop {
        let q = EventQuery {
            tenants: vec![tenant.to_string()],
            operations: operations.clone(),
            to: Some(at.saturating_add(1)),
            after,
            oldest_first: true,
            ..EventQuery::default()
        };
        let page = journal.search(&q, PAGE)?;
        for e in &page {
            events += 1;
            // A record that is not JSON (it would not have been stored) changes nothing.
            let Ok(record) = serde_json::from_str::<serde_json::Value>(&e.raw) else { continue };
            if let Some(effect) = mapping::effect(&e.operation_name, &record) {
                builder.apply(effect, Change::from_event(e));
            }
        }
        match page.last() {
            Some(e) if page.len() == PAGE => after = Some((e.created_at, e.seq)),
            _ => break,
        }
    }
    let (unresolved, unresolved_total) = (std::mem::take(&mut builder.unresolved), builder.unresolved_total);
    let (changes, changes_total) = (std::mem::take(&mut builder.changes), builder.changes_total);
    let mut entries = builder.entries();
    let other_notes = attach_notes(&mut entries, journal.posture_notes(tenant)?);
    let history_from = journal.span(&EventQuery { tenants: vec![tenant.to_string()], ..EventQuery::default() })?;
    let filters: Vec<String> = journal
        .all_progress()?
        .into_iter()
        .filter(|p| p.tenant == tenant && !p.filter.is_empty())
        .map(|p| format!("{} ({})", p.job, p.filter))
        .collect();
    let caveats = caveats(history_from.map(|s| s.0), &filters, unresolved_total);
    Ok(Posture {
        tenant: tenant.to_string(),
        at: opts.at.unwrap_or_else(crate::timeutil::now_secs),
        at_time: format_rfc3339(opts.at.unwrap_or_else(crate::timeutil::now_secs)),
        history_from: history_from.map(|s| s.0),
        events,
        entries,
        unresolved,
        unresolved_total,
        changes,
        changes_total,
        other_notes,
        caveats,
    })
}

fn caveats(history_from: Option<i64>, filters: &[String], unresolved: usize) -> Vec<String> {
    let mut out = Vec::new();
    match history_from {
        Some(t) => out.push(format!(
            "The journal holds this tenant's history from {}: whatever was in force before then and never changed since is not known here (`tines-audit backfill --since` reaches up to two years back; `posture --live` shows what the tenant holds).",
            format_rfc3339(t)
        )),
        None => out.push("The journal holds no event of this tenant yet.".into()),
    }
    if !filters.is_empty() {
        out.push(format!(
            "This tenant is collected with filters ({}): posture sees only the operations they let through.",
            filters.join("; ")
        ));
    }
    if unresolved > 0 {
        out.push(format!(
            "{unresolved} record(s) changed the posture without naming what they changed (listed as records that did not say what they changed); the entries they may have changed carry a doubt naming them."
        ));
    }
    out
}

/// Attaches each note to the entry it names (the latest note is the entry's `note`); flags
/// entries that want one and have none. Returns the notes no entry in force took.
fn attach_notes(entries: &mut [Entry], notes: Vec<PostureNote>) -> Vec<PostureNote> {
    let mut other = Vec::new();
    for n in notes {
        let kind = Kind::parse(&n.kind);
        match entries.iter_mut().find(|e| Some(e.kind) == kind && e.named(&n.entry_id)) {
            Some(e) => {
                e.note = Some(n.clone());
                e.notes.push(n);
            }
            None => other.push(n),
        }
    }
    for e in entries.iter_mut() {
        e.needs_note = e.kind.wants_note() && e.note.is_none();
    }
    other
}

/// One difference between the history and the tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriftItem {
    pub kind: Kind,
    /// The entry's id (the address, the e-mail address).
    pub id: String,
    /// The tenant's id of it, when the tenant holds it.
    pub live_id: Option<String>,
    pub detail: String,
}

/// One area of the posture compared with the tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriftArea {
    pub kind: Kind,
    /// Whether the tenant was read; when not, `note` says why.
    pub checked: bool,
    pub note: Option<String>,
    /// In the tenant, with no creation in the history.
    pub undocumented: Vec<DriftItem>,
    /// In force by the history, not in the tenant, and no record explains it.
    pub missing: Vec<DriftItem>,
    /// Not in the tenant, and a record that did not say which entry it removed explains it
    /// (the doubt the history carried is settled): not drift.
    pub explained: Vec<DriftItem>,
    /// In both, but the tenant's fields differ from the history's.
    pub differs: Vec<DriftItem>,
    /// In both, alike.
    pub matched: usize,
}

impl DriftArea {
    /// The counts in one sentence, as every rendering gives them.
    pub fn counts(&self) -> String {
        format!(
            "{} as in the history, {} undocumented, {} missing from the tenant, {} different, {} removed as the history allowed",
            self.matched,
            self.undocumented.len(),
            self.missing.len(),
            self.differs.len(),
            self.explained.len()
        )
    }

    /// The items by what they are, labelled.
    pub fn labelled(&self) -> [(&'static str, &[DriftItem]); 4] {
        [
            ("undocumented", &self.undocumented),
            ("missing", &self.missing),
            ("differs", &self.differs),
            ("removed", &self.explained),
        ]
    }
}

/// The history against the tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    pub checked_at: i64,
    pub areas: Vec<DriftArea>,
}

impl Drift {
    pub fn undocumented(&self) -> impl Iterator<Item = &DriftItem> {
        self.areas.iter().flat_map(|a| a.undocumented.iter())
    }
    pub fn missing(&self) -> impl Iterator<Item = &DriftItem> {
        self.areas.iter().flat_map(|a| a.missing.iter())
    }
    /// Whether anything differs.
    pub fn any(&self) -> bool {
        self.areas.iter().any(|a| !a.undocumented.is_empty() || !a.missing.is_empty() || !a.differs.is_empty())
    }
}

fn area(kind: Kind, checked: bool, note: Option<String>) -> DriftArea {
    DriftArea {
        kind,
        checked,
        note,
        undocumented: Vec::new(),
        missing: Vec::new(),
        explained: Vec::new(),
        differs: Vec::new(),
        matched: 0,
    }
}

fn history_start(p: &Posture) -> String {
    p.history_from.map_or("the journal holds none".into(), format_rfc3339)
}

/// Compares the posture with what the tenant holds now. Compare with a posture at the
/// present (`at` = now): a past one differs by whatever changed since.
pub fn drift(p: &Posture, live: &Live) -> Drift {
    let mut areas = Vec::new();
    match &live.owners {
        Fetched::Got(users) => areas.push(owners_drift(p, users)),
        Fetched::NotChecked(why) => areas.push(area(Kind::Owner, false, Some(why.clone()))),
    }
    areas.push(area(
        Kind::Permission,
        false,
        Some("not checked: the tenant-owner list does not show other users' tenant permissions".into()),
    ));
    for (kind, fetched) in [(Kind::IpRule, &live.ip_rules), (Kind::EgressRule, &live.egress_rules)] {
        match fetched {
            Fetched::Got(rules) => areas.push(rules_drift(p, kind, rules)),
            Fetched::NotChecked(why) => areas.push(area(kind, false, Some(why.clone()))),
        }
    }
    areas.push(area(Kind::ApiKey, false, Some("not checked: Tines has no API that lists API keys".into())));
    areas.push(area(Kind::Setting, false, Some("not checked: no admin API reads these settings".into())));
    Drift { checked_at: live.fetched_at, areas }
}

/// Files the entries the history holds and the tenant lacks. A record that removed an
/// entry without saying which accounts for one absence among the entries it may have
/// removed: those are explained; an absence no such record is left to account for is
/// missing (removed without an audit record, or by one not collected).
fn absent(a: &mut DriftArea, gone: &[&Entry]) {
    let made = |e: &Entry| {
        e.since.as_ref().map_or("its creation is not in the history".to_string(), |c| {
            format!("{} by {} at {} (event {})", c.operation, c.actor(), c.time, c.event_id)
        })
    };
    let by_event = match_records(gone);
    let mut used: std::collections::BTreeMap<i64, String> = std::collections::BTreeMap::new();
    for (e, ev) in gone.iter().zip(&by_event) {
        if let Some(ev) = ev {
            used.insert(*ev, e.id.clone());
        }
    }
    for (e, ev) in gone.iter().zip(by_event) {
        match ev {
            Some(ev) => {
                a.explained.push(DriftItem {
                    kind: e.kind,
                    id: e.id.clone(),
                    live_id: None,
                    detail: format!(
                        "not in the tenant: removed, as the history allowed, by event {ev}, which did not say which ({})",
                        made(e)
                    ),
                });
            }
            None => {
                let taken: Vec<String> = e
                    .doubt_events
                    .iter()
                    .filter_map(|ev| used.get(ev).map(|id| format!("event {ev} by {id}")))
                    .collect();
                let detail = if taken.is_empty() {
                    format!(
                        "in force by the history ({}) but not in the tenant: removed without an audit record, or by one not collected",
                        made(e)
                    )
                } else {
                    format!(
                        "not in the tenant, and the records that may have removed it are accounted for ({}, also absent): one of them was removed without an audit record ({})",
                        taken.join(", "),
                        made(e)
                    )
                };
                a.missing.push(DriftItem { kind: e.kind, id: e.id.clone(), live_id: None, detail });
            }
        }
    }
}

/// Pairs absent entries with the records that may have removed them, each record with one
/// entry, as many as can be (augmenting paths; the lists are short). Earlier entries win ties.
fn match_records(gone: &[&Entry]) -> Vec<Option<i64>> {
    fn assign(
        i: usize,
        gone: &[&Entry],
        owner: &mut std::collections::HashMap<i64, usize>,
        seen: &mut std::collections::HashSet<i64>,
    ) -> bool {
        for &ev in &gone[i].doubt_events {
            if !seen.insert(ev) {
                continue;
            }
            let free = match owner.get(&ev) {
                None => true,
                Some(&j) => assign(j, gone, owner, seen),
            };
            if free {
                owner.insert(ev, i);
                return true;
            }
        }
        false
    }
    let mut owner = std::collections::HashMap::new();
    for i in 0..gone.len() {
        assign(i, gone, &mut owner, &mut std::collections::HashSet::new());
    }
    let mut out = vec![None; gone.len()];
    for (ev, i) in owner {
        out[i] = Some(ev);
    }
    out
}

fn rules_drift(p: &Posture, kind: Kind, live: &[LiveRule]) -> DriftArea {
    let mut a = area(kind, true, None);
    let entries: Vec<&Entry> = p.entries_of(kind).collect();
    let mut seen = vec![false; entries.len()];
    for r in live {
        let address = mapping::normalise_address(&r.address);
        let found = entries
            .iter()
            .position(|e| e.fields.get("ip").or(e.fields.get("address")) == Some(&address))
            .or_else(|| entries.iter().position(|e| e.named(&format!("id:{}", r.id))));
        let Some(i) = found else {
            a.undocumented.push(DriftItem {
                kind,
                id: address,
                live_id: Some(r.id.clone()),
                detail: format!(
                    "in the tenant (created {}), with no creation in the history (which starts {}): made before the history, or without an audit record",
                    r.created_at.as_deref().unwrap_or("at an unknown time"),
                    history_start(p)
                ),
            });
            continue;
        };
        seen[i] = true;
        let e = entries[i];
        if e.since.is_none() {
            a.undocumented.push(DriftItem {
                kind,
                id: e.id.clone(),
                live_id: Some(r.id.clone()),
                detail: "in the tenant; the history shows it changed but has no creation of it".into(),
            });
            continue;
        }
        let mut differs = Vec::new();
        if let Some(d) = e.fields.get("description")
            && d != &r.description
        {
            differs.push(format!("description {:?} in the tenant, {d:?} by the history", r.description));
        }
        if let Some(t) = e.fields.get("action_types") {
            let mut live_types = r.action_types.clone();
            live_types.sort();
            let mut ours: Vec<String> = t.split(", ").map(str::to_string).collect();
            ours.sort();
            if live_types != ours {
                differs.push(format!("action types {} in the tenant, {t} by the history", live_types.join(", ")));
            }
        }
        if differs.is_empty() {
            a.matched += 1;
        } else {
            a.differs.push(DriftItem {
                kind,
                id: e.id.clone(),
                live_id: Some(r.id.clone()),
                detail: differs.join("; "),
            });
        }
    }
    let gone: Vec<&Entry> = entries.iter().zip(&seen).filter(|(_, s)| !**s).map(|(e, _)| *e).collect();
    absent(&mut a, &gone);
    a
}

fn owners_drift(p: &Posture, live: &[LiveUser]) -> DriftArea {
    let mut a = area(Kind::Owner, true, None);
    let entries: Vec<&Entry> = p.entries_of(Kind::Owner).collect();
    let mut seen = vec![false; entries.len()];
    for u in live {
        let email = u.email.to_ascii_lowercase();
        let found = entries.iter().position(|e| e.named(&email) || e.named(&format!("user:{}", u.id)));
        match found {
            Some(i) => {
                seen[i] = true;
                if entries[i].since.is_none() {
                    a.undocumented.push(DriftItem {
                        kind: Kind::Owner,
                        id: email,
                        live_id: Some(u.id.to_string()),
                        detail: "a tenant owner; the history has no grant of the rights (only later changes)".into(),
                    });
                } else {
                    a.matched += 1;
                }
            }
            None => a.undocumented.push(DriftItem {
                kind: Kind::Owner,
                id: email,
                live_id: Some(u.id.to_string()),
                detail: format!(
                    "a tenant owner{} in the tenant, with no grant in the history (which starts {})",
                    if u.admin { " and admin" } else { "" },
                    history_start(p)
                ),
            }),
        }
    }
    // The tenant-owner list settles only who is a tenant owner: an admin the records never
    // called tenant owner may rightly be absent from it.
    let gone: Vec<&Entry> = entries
        .iter()
        .zip(&seen)
        .filter(|(e, s)| !**s && e.fields.get("role").is_some_and(|r| r.contains("tenant owner")))
        .map(|(e, _)| *e)
        .collect();
    absent(&mut a, &gone);
    if entries.iter().any(|e| e.fields.get("role").is_some_and(|r| !r.contains("tenant owner"))) {
        a.note = Some(
            "admins the records never call tenant owner are not checked: Tines documents the list as tenant owners only"
                .into(),
        );
    }
    a
}

#[cfg(test)]
mod tests;
