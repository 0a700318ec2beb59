//! Replaying a tenant's posture changes in time order into the state in force.
//!
//! Records often do not name what they change well enough: a key's deletion gives only its
//! id, which its creation never gave; a rule's deletion may give only an id. Such a record
//! is never matched by guess. It becomes an [`Unresolved`] line, and each entry it may have
//! removed carries a doubt naming it, so the output says "may have been removed by event N"
//! instead of silently keeping or dropping the entry.

use std::collections::{BTreeMap, HashMap};

use super::mapping::{Effect, Kind, RuleAction, SettingValue, UserRef};
use super::{Change, Entry, Unresolved};

/// Doubts kept per entry (the count is exact).
const MAX_DOUBTS: usize = 5;
/// Unresolved records and period changes kept (the counts are exact).
pub(super) const MAX_LISTED: usize = 2_000;

/// What an entry's tracking holds whatever its kind.
#[derive(Debug, Default)]
struct Track {
    /// The change that put it in force; `None` when that is not in the history.
    since: Option<Change>,
    last: Option<Change>,
    history: Vec<Change>,
    doubts: Vec<String>,
    doubts_total: usize,
    /// The events behind the doubts (bounded like the unresolved records).
    doubt_events: Vec<i64>,
    unknown: Vec<String>,
}

impl Track {
    fn touch(&mut self, c: &Change, keep_history: bool) {
        if keep_history {
            self.history.push(c.clone());
        }
        self.last = Some(c.clone());
    }

    fn doubt(&mut self, why: String, event: i64) {
        if self.doubt_events.len() < MAX_LISTED {
            self.doubt_events.push(event);
        }
        self.doubts_total += 1;
        if self.doubts.len() < MAX_DOUBTS {
            self.doubts.push(why);
        }
    }

    fn know_unknown(&mut self, what: &str) {
        if !self.unknown.iter().any(|u| u == what) {
            self.unknown.push(what.to_string());
        }
    }
}

#[derive(Debug, Default)]
struct UserState {
    id: Option<i64>,
    email: Option<String>,
    owner: Option<bool>,
    admin: Option<bool>,
    permissions: Option<Vec<String>>,
    /// Tracks the owner/admin entry and the permission entry apart.
    rights: Track,
    perms: Track,
    how: &'static str,
}

impl UserState {
    fn elevated(&self) -> bool {
        self.owner == Some(true) || self.admin == Some(true)
    }
    fn has_permissions(&self) -> bool {
        self.permissions.as_ref().is_some_and(|p| !p.is_empty())
    }
    fn name(&self) -> String {
        match (&self.email, self.id) {
            (Some(e), _) => e.clone(),
            (None, Some(i)) => format!("user:{i}"),
            (None, None) => "user (unnamed)".into(),
        }
    }
}

#[derive(Debug, Default)]
struct RuleState {
    kind: Option<Kind>,
    alive: bool,
    id: Option<String>,
    address: Option<String>,
    description: Option<String>,
    action_types: Option<Vec<String>>,
    /// The event that created it (or first showed it), for an id when nothing else names it.
    first_event: i64,
    track: Track,
}

impl RuleState {
    fn key(&self) -> String {
        match (&self.address, &self.id) {
            (Some(a), _) => a.clone(),
            (None, Some(i)) => format!("id:{i}"),
            (None, None) => format!("event:{}", self.first_event),
        }
    }
}

#[derive(Debug, Default)]
struct KeyState {
    alive: bool,
    id: Option<String>,
    name: Option<String>,
    service: Option<bool>,
    team: Option<String>,
    created_event: i64,
    track: Track,
}

#[derive(Debug, Default)]
struct SettingState {
    label: &'static str,
    value: String,
    track: Track,
}

/// A change within the period a caller asked about (reports), with the entry it is about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeriodChange {
    pub kind: Kind,
    pub entry: String,
    #[serde(flatten)]
    pub change: Change,
}

/// Builds the state from changes applied oldest first.
pub(super) struct Builder {
    keep_history: bool,
    changes_since: Option<i64>,
    users: Vec<UserState>,
    user_by_email: HashMap<String, usize>,
    user_by_id: HashMap<i64, usize>,
    rules: Vec<RuleState>,
    rule_by_address: HashMap<(Kind, String), usize>,
    rule_by_id: HashMap<(Kind, String), usize>,
    keys: Vec<KeyState>,
    key_by_id: HashMap<String, usize>,
    /// Keys in force per name (names are not unique).
    keys_named: HashMap<String, Vec<usize>>,
    settings: BTreeMap<String, SettingState>,
    pub(super) unresolved: Vec<Unresolved>,
    pub(super) unresolved_total: usize,
    pub(super) changes: Vec<PeriodChange>,
    pub(super) changes_total: usize,
}

fn list_of(names: &[String]) -> String {
    match names.len() {
        0 => "none".into(),
        n if n <= 5 => names.join(", "),
        n => format!("{} and {} more", names[..5].join(", "), n - 5),
    }
}

impl Builder {
    pub(super) fn new(keep_history: bool, changes_since: Option<i64>) -> Builder {
        Builder {
            keep_history,
            changes_since,
            users: Vec::new(),
            user_by_email: HashMap::new(),
            user_by_id: HashMap::new(),
            rules: Vec::new(),
            rule_by_address: HashMap::new(),
            rule_by_id: HashMap::new(),
            keys: Vec::new(),
            key_by_id: HashMap::new(),
            keys_named: HashMap::new(),
            settings: BTreeMap::new(),
            unresolved: Vec::new(),
            unresolved_total: 0,
            changes: Vec::new(),
            changes_total: 0,
        }
    }

    fn period(&mut self, kind: Kind, entry: &str, c: &Change) {
        if self.changes_since.is_none_or(|s| c.at < s) {
            return;
        }
        self.changes_total += 1;
        if self.changes.len() < MAX_LISTED {
            self.changes.push(PeriodChange { kind, entry: entry.to_string(), change: c.clone() });
        }
    }

    fn unresolved(&mut self, kind: Kind, c: &Change, why: String) {
        self.unresolved_total += 1;
        if self.unresolved.len() < MAX_LISTED {
            self.unresolved.push(Unresolved { kind, change: c.clone(), why: why.clone() });
        }
        self.period(kind, "(unknown)", &Change { what: why, ..c.clone() });
    }

    /// Applies one record's effect; `c.what` is filled in here.
    pub(super) fn apply(&mut self, effect: Effect, c: Change) {
        match effect {
            Effect::UserRights { user, owner, admin, permissions, how } => {
                self.rights(user, owner, admin, permissions, how, c)
            }
            Effect::UserRemoved { user } => self.user_removed(user, c),
            Effect::Rule { kind, action, id, address, description, action_types } => {
                self.rule(kind, action, id, address, description, action_types, c)
            }
            Effect::KeyCreated { id, name, service, team } => self.key_created(id, name, service, team, c),
            Effect::KeyEdited { id, name } => self.key_edited(id, name, c),
            Effect::KeyDeleted { id, name } => self.key_deleted(id, name, c),
            Effect::Setting { key, label, value } => self.setting(key, label, value, c),
        }
    }

    // --- users -------------------------------------------------------------------------------

    fn find_user(&self, u: &UserRef) -> Option<usize> {
        u.email
            .as_ref()
            .and_then(|e| self.user_by_email.get(e))
            .or_else(|| u.id.and_then(|i| self.user_by_id.get(&i)))
            .copied()
    }

    fn user_index(&mut self, u: &UserRef) -> usize {
        let i = self.find_user(u).unwrap_or_else(|| {
            self.users.push(UserState::default());
            self.users.len() - 1
        });
        let s = &mut self.users[i];
        if s.email.is_none()
            && let Some(e) = &u.email
        {
            s.email = Some(e.clone());
            self.user_by_email.insert(e.clone(), i);
        }
        if s.id.is_none()
            && let Some(id) = u.id
        {
            s.id = Some(id);
            self.user_by_id.insert(id, i);
        }
        i
    }

    fn rights(
        &mut self,
        user: UserRef,
        owner: Option<bool>,
        admin: Option<bool>,
        permissions: Option<Vec<String>>,
        how: &'static str,
        mut c: Change,
    ) {
        if user.is_empty() {
            if owner.is_some() || admin.is_some() || permissions.is_some() {
                self.unresolved(
                    Kind::Owner,
                    &c,
                    format!("a user was {how} with rights set, but the record names no user"),
                );
            }
            return;
        }
        if owner.is_none() && admin.is_none() && permissions.is_none() {
            // An edit of a name or an address: no right changes.
            return;
        }
        let i = self.user_index(&user);
        let keep = self.keep_history;
        let s = &mut self.users[i];
        let (was_elevated, had_perms) = (s.elevated(), s.has_permissions());
        let mut said = Vec::new();
        if let Some(o) = owner {
            s.owner = Some(o);
            said.push(if o { "tenant owner" } else { "not tenant owner" });
        }
        if let Some(a) = admin {
            s.admin = Some(a);
            said.push(if a { "admin" } else { "not admin" });
        }
        let mut perm_text = None;
        if let Some(p) = permissions {
            perm_text = Some(if p.is_empty() { "no tenant permissions".to_string() } else { p.join(", ") });
            s.permissions = Some(p);
        }
        s.how = how;
        let name = s.name();
        c.what = format!(
            "{how}: {}{}",
            said.join(", "),
            perm_text.as_deref().map_or(String::new(), |p| format!(
                "{}tenant permissions {p}",
                if said.is_empty() { "" } else { "; " }
            ))
        );
        if owner.is_some() || admin.is_some() {
            if s.elevated() && !was_elevated {
                s.rights.since = Some(c.clone());
                s.rights.doubts.clear();
                s.rights.doubt_events.clear();
                s.rights.doubts_total = 0;
            }
            s.rights.touch(&c, keep);
        }
        if perm_text.is_some() {
            if s.has_permissions() && !had_perms {
                s.perms.since = Some(c.clone());
            }
            s.perms.touch(&c, keep);
        }
        // A revocation of rights the history never showed granted (before it began) is still a change.
        let kind = if owner.is_some() || admin.is_some() { Kind::Owner } else { Kind::Permission };
        self.period(kind, &name, &c);
    }

    fn user_removed(&mut self, user: UserRef, mut c: Change) {
        match self.find_user(&user) {
            Some(i) => {
                let keep = self.keep_history;
                let s = &mut self.users[i];
                let held = s.elevated() || s.has_permissions();
                c.what = format!("user deleted{}", if held { ": their rights end" } else { "" });
                s.owner = Some(false);
                s.admin = Some(false);
                s.permissions = Some(Vec::new());
                s.rights.touch(&c, keep);
                s.perms.touch(&c, keep);
                let name = s.name();
                if held {
                    self.period(Kind::Owner, &name, &c);
                }
            }
            None => {
                // Who may it have been: a user holding rights whom the record's name cannot be matched with.
                let candidates: Vec<usize> = (0..self.users.len())
                    .filter(|&i| {
                        let s = &self.users[i];
                        (s.elevated() || s.has_permissions())
                            && (user.is_empty()
                                || (user.id.is_some() && s.id.is_none())
                                || (user.email.is_some() && s.email.is_none()))
                    })
                    .collect();
                let named = match (user.id, &user.email) {
                    (_, Some(e)) => format!("user {e}"),
                    (Some(i), None) => format!("user id {i}"),
                    (None, None) => "a user the record does not name".into(),
                };
                if candidates.is_empty() {
                    if !user.is_empty() {
                        // Not someone the history shows holding rights: nothing in force changes.
                        return;
                    }
                    self.unresolved(
                        Kind::Owner,
                        &c,
                        format!("deleted {named}; no one the history shows holding rights could be them"),
                    );
                    return;
                }
                let names: Vec<String> = candidates.iter().map(|&i| self.users[i].name()).collect();
                let why = format!(
                    "deleted {named}, whom no earlier record ties to a known user: it may have been {}",
                    list_of(&names)
                );
                let doubt = format!("may have been deleted by event {} ({})", c.event_id, c.time);
                for &i in &candidates {
                    let s = &mut self.users[i];
                    if s.elevated() {
                        s.rights.doubt(doubt.clone(), c.event_id);
                    }
                    if s.has_permissions() {
                        s.perms.doubt(doubt.clone(), c.event_id);
                    }
                }
                self.unresolved(Kind::Owner, &c, why);
            }
        }
    }

    // --- rules -------------------------------------------------------------------------------

    fn live_rule(&self, kind: Kind, id: &Option<String>, address: &Option<String>) -> Option<usize> {
        let alive = |i: &usize| self.rules[*i].alive;
        let by_id = id.as_ref().and_then(|i| self.rule_by_id.get(&(kind, i.clone()))).copied().filter(alive);
        let by_address =
            address.as_ref().and_then(|a| self.rule_by_address.get(&(kind, a.clone()))).copied().filter(alive);
        by_id.or(by_address)
    }

    fn index_rule(&mut self, i: usize) {
        let r = &self.rules[i];
        let kind = r.kind.expect("a stored rule has its kind");
        if let Some(a) = &r.address {
            self.rule_by_address.insert((kind, a.clone()), i);
        }
        if let Some(id) = &r.id {
            self.rule_by_id.insert((kind, id.clone()), i);
        }
    }

    fn describe_rule(
        address: &Option<String>,
        description: &Option<String>,
        action_types: &Option<Vec<String>>,
    ) -> String {
        let mut parts = Vec::new();
        if let Some(a) = address {
            parts.push(a.clone());
        }
        if let Some(d) = description {
            parts.push(format!("description {d:?}"));
        }
        if let Some(t) = action_types {
            parts.push(format!("for {}", t.join(", ")));
        }
        parts.join(", ")
    }

    #[allow(clippy::too_many_arguments)]
    fn rule(
        &mut self,
        kind: Kind,
        action: RuleAction,
        id: Option<String>,
        address: Option<String>,
        description: Option<String>,
        action_types: Option<Vec<String>>,
        mut c: Change,
    ) {
        let keep = self.keep_history;
        let noun = if kind == Kind::IpRule { "rule" } else { "allowlist entry" };
        let said = Self::describe_rule(&address, &description, &action_types);
        let target = self.live_rule(kind, &id, &address);
        match (action, target) {
            (RuleAction::Created, existing) => {
                let i = existing.unwrap_or_else(|| {
                    self.rules.push(RuleState {
                        kind: Some(kind),
                        alive: true,
                        first_event: c.event_id,
                        ..Default::default()
                    });
                    self.rules.len() - 1
                });
                let r = &mut self.rules[i];
                c.what = if existing.is_some() { format!("created again: {said}") } else { format!("created: {said}") };
                r.id = r.id.take().or(id);
                r.address = r.address.take().or(address);
                if description.is_some() {
                    r.description = description;
                }
                if action_types.is_some() {
                    r.action_types = action_types;
                }
                if r.address.is_none() {
                    r.track.know_unknown("the record does not give its address");
                }
                if existing.is_none() {
                    r.track.since = Some(c.clone());
                }
                r.track.touch(&c, keep);
                let key = r.key();
                self.index_rule(i);
                self.period(kind, &key, &c);
            }
            (RuleAction::Changed, Some(i)) => {
                let r = &mut self.rules[i];
                c.what =
                    format!("changed: {}", if said.is_empty() { "the record does not say what".into() } else { said });
                if r.id.is_none() {
                    r.id = id;
                }
                if let Some(a) = address {
                    r.address = Some(a);
                    r.track.unknown.retain(|u| !u.contains("address"));
                }
                if description.is_some() {
                    r.description = description;
                }
                if action_types.is_some() {
                    r.action_types = action_types;
                }
                r.track.touch(&c, keep);
                let key = r.key();
                self.index_rule(i);
                self.period(kind, &key, &c);
            }
            (RuleAction::Changed, None) => {
                let candidates = self.rule_candidates(kind, &id, &address);
                if address.is_none() && !candidates.is_empty() {
                    let names: Vec<String> = candidates.iter().map(|&i| self.rules[i].key()).collect();
                    let why = format!(
                        "changed {noun} {}, which no earlier record ties to an address ({said}): it may be {}",
                        id.as_deref().map_or("(unnamed)".to_string(), |i| format!("id {i}")),
                        list_of(&names)
                    );
                    self.unresolved(kind, &c, why);
                    return;
                }
                // A rule made before the history began (or by a record that gave no address): in force.
                self.rules.push(RuleState {
                    kind: Some(kind),
                    alive: true,
                    id,
                    address,
                    description,
                    action_types,
                    first_event: c.event_id,
                    track: Track::default(),
                });
                let i = self.rules.len() - 1;
                let r = &mut self.rules[i];
                c.what = format!("changed (its creation is not in the history): {said}");
                r.track.know_unknown("its creation is not in the history");
                if r.address.is_none() {
                    r.track.know_unknown("no record gives its address");
                }
                r.track.touch(&c, keep);
                let key = r.key();
                self.index_rule(i);
                self.period(kind, &key, &c);
            }
            (RuleAction::Deleted, Some(i)) => {
                let r = &mut self.rules[i];
                r.alive = false;
                c.what = format!("deleted{}", if said.is_empty() { String::new() } else { format!(": {said}") });
                r.track.touch(&c, keep);
                let key = r.key();
                self.period(kind, &key, &c);
            }
            (RuleAction::Deleted, None) => {
                let candidates = self.rule_candidates(kind, &id, &address);
                let named = match (&address, &id) {
                    (Some(a), _) => a.clone(),
                    (None, Some(i)) => format!("id {i}"),
                    (None, None) => "(the record names none)".into(),
                };
                if address.is_some() || candidates.is_empty() {
                    let why = format!("deleted {noun} {named}, which the history does not hold (made before it began)");
                    self.unresolved(kind, &c, why);
                    return;
                }
                let names: Vec<String> = candidates.iter().map(|&i| self.rules[i].key()).collect();
                let why = format!(
                    "deleted {noun} {named}, which no earlier record ties to an address: unknown which {noun}; it may be {}",
                    list_of(&names)
                );
                let doubt = format!(
                    "may have been deleted by event {} ({}), which does not say which {noun}",
                    c.event_id, c.time
                );
                for &i in &candidates {
                    self.rules[i].track.doubt(doubt.clone(), c.event_id);
                }
                self.unresolved(kind, &c, why);
            }
        }
    }

    /// Rules in force a record naming `id` (but no known address) could be about: those whose id
    /// no record has given. A record naming nothing could be about any.
    fn rule_candidates(&self, kind: Kind, id: &Option<String>, address: &Option<String>) -> Vec<usize> {
        if address.is_some() {
            return Vec::new();
        }
        (0..self.rules.len())
            .filter(|&i| {
                let r = &self.rules[i];
                r.alive && r.kind == Some(kind) && (id.is_none() || r.id.is_none())
            })
            .collect()
    }

    // --- keys --------------------------------------------------------------------------------

    fn key_created(
        &mut self,
        id: Option<String>,
        name: Option<String>,
        service: Option<bool>,
        team: Option<String>,
        mut c: Change,
    ) {
        let kind = match service {
            Some(true) => "service key",
            Some(false) => "non-service key",
            None => "key (type not in the record)",
        };
        c.what = format!("created {kind} {}", name.as_deref().map_or("(unnamed)".to_string(), |n| format!("{n:?}")));
        let mut k = KeyState {
            alive: true,
            id: id.clone(),
            name,
            service,
            team,
            created_event: c.event_id,
            ..Default::default()
        };
        k.track.since = Some(c.clone());
        k.track.touch(&c, self.keep_history);
        if k.id.is_none() {
            k.track.know_unknown(
                "its id (the creation record does not give it, so a deletion naming an id cannot be matched)",
            );
        }
        self.keys.push(k);
        let i = self.keys.len() - 1;
        self.name_key(i, true);
        if let Some(id) = id {
            self.key_by_id.insert(id, i);
        }
        let entry = self.key_entry_name(i);
        self.period(Kind::ApiKey, &entry, &c);
    }

    fn key_by_name(&self, name: &str) -> Vec<usize> {
        self.keys_named.get(name).cloned().unwrap_or_default()
    }

    /// Adds key `i` to (or removes it from) the keys in force under its name.
    fn name_key(&mut self, i: usize, add: bool) {
        let Some(n) = self.keys[i].name.clone() else { return };
        let v = self.keys_named.entry(n).or_default();
        if add {
            v.push(i);
        } else {
            v.retain(|&j| j != i);
        }
    }

    fn find_key(&self, id: &Option<String>, name: &Option<String>) -> Option<usize> {
        if let Some(i) = id.as_ref().and_then(|i| self.key_by_id.get(i)).copied().filter(|&i| self.keys[i].alive) {
            return Some(i);
        }
        match name.as_deref().map(|n| self.key_by_name(n)) {
            Some(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }

    fn key_edited(&mut self, id: Option<String>, name: Option<String>, mut c: Change) {
        match self.find_key(&id, &None) {
            Some(i) => {
                c.what = format!("edited{}", name.as_deref().map_or(String::new(), |n| format!(": named {n:?}")));
                if name.is_some() {
                    self.name_key(i, false);
                    self.keys[i].name = name;
                    self.name_key(i, true);
                }
                self.keys[i].track.touch(&c, self.keep_history);
                let entry = self.key_entry_name(i);
                self.period(Kind::ApiKey, &entry, &c);
            }
            None => {
                // An edit naming an id and a name binds them, when exactly one key in force has that name
                // and no id yet.
                if let (Some(id), Some(n)) = (&id, &name) {
                    let named = self.key_by_name(n);
                    if let [i] = named[..]
                        && self.keys[i].id.is_none()
                    {
                        self.keys[i].id = Some(id.clone());
                        self.keys[i].track.unknown.clear();
                        self.key_by_id.insert(id.clone(), i);
                        c.what = format!("edited (id {id})");
                        self.keys[i].track.touch(&c, self.keep_history);
                        let entry = self.key_entry_name(i);
                        self.period(Kind::ApiKey, &entry, &c);
                        return;
                    }
                }
                let why = format!(
                    "edited API key {}, which no earlier record ties to a key",
                    id.as_deref().map_or("(unnamed)".to_string(), |i| format!("id {i}"))
                );
                self.unresolved(Kind::ApiKey, &c, why);
            }
        }
    }

    fn key_deleted(&mut self, id: Option<String>, name: Option<String>, mut c: Change) {
        if let Some(i) = self.find_key(&id, &name) {
            let entry = self.key_entry_name(i);
            self.name_key(i, false);
            let k = &mut self.keys[i];
            k.alive = false;
            c.what = "deleted".into();
            k.track.touch(&c, self.keep_history);
            self.period(Kind::ApiKey, &entry, &c);
            return;
        }
        let candidates: Vec<usize> = (0..self.keys.len())
            .filter(|&i| {
                let k = &self.keys[i];
                k.alive && (id.is_none() || k.id.is_none()) && name.as_ref().is_none_or(|n| k.name.as_ref() == Some(n))
            })
            .collect();
        let named = id.as_deref().map_or("(the record names none)".to_string(), |i| format!("id {i}"));
        if candidates.is_empty() {
            self.unresolved(
                Kind::ApiKey,
                &c,
                format!("deleted API key {named}, which the history does not hold (made before it began)"),
            );
            return;
        }
        let names: Vec<String> = candidates.iter().map(|&i| self.key_entry_name(i)).collect();
        let why = format!(
            "deleted API key {named}: Tines records a key's id only on deletion, so unknown which key; it may be {}",
            list_of(&names)
        );
        let doubt = format!("may have been deleted by event {} ({}), which names only a key id", c.event_id, c.time);
        for &i in &candidates {
            self.keys[i].track.doubt(doubt.clone(), c.event_id);
        }
        self.unresolved(Kind::ApiKey, &c, why);
    }

    /// A key's entry id: its name, made unique with its creation event when keys in force share it.
    fn key_entry_name(&self, i: usize) -> String {
        let k = &self.keys[i];
        match &k.name {
            Some(n) if self.keys_named.get(n).is_none_or(|v| v.len() <= 1) => n.clone(),
            Some(n) => format!("{n}#{}", k.created_event),
            None => format!("key:{}", k.created_event),
        }
    }

    // --- settings ----------------------------------------------------------------------------

    fn setting(&mut self, key: String, label: &'static str, value: SettingValue, mut c: Change) {
        let shown = match value {
            SettingValue::Stated(s) => s,
            SettingValue::Carried(s) => format!("record says {s}"),
            SettingValue::NotCarried => "changed; the record does not carry the new value".to_string(),
        };
        c.what = format!("{label}: {shown}");
        let keep = self.keep_history;
        let s = self.settings.entry(key.clone()).or_default();
        s.label = label;
        // In force since the change that set the value it has now.
        if s.track.since.is_none() || s.value != shown {
            s.track.since = Some(c.clone());
        }
        s.value = shown;
        s.track.touch(&c, keep);
        self.period(Kind::Setting, &key, &c);
    }

    // --- the result --------------------------------------------------------------------------

    /// The entries in force, by kind then id.
    pub(super) fn entries(self) -> Vec<Entry> {
        let mut out = Vec::new();
        let finish = |kind: Kind,
                      id: String,
                      aliases: Vec<String>,
                      title: String,
                      fields: BTreeMap<String, String>,
                      t: &Track| {
            Entry {
                kind,
                id,
                aliases,
                title,
                fields,
                since: t.since.clone(),
                last: t.last.clone(),
                doubts: t.doubts.clone(),
                doubts_total: t.doubts_total,
                doubt_events: t.doubt_events.clone(),
                unknown: t.unknown.clone(),
                history: t.history.clone(),
                note: None,
                notes: Vec::new(),
                needs_note: false,
            }
        };
        for u in &self.users {
            let mut aliases = Vec::new();
            if let Some(i) = u.id {
                aliases.push(format!("user:{i}"));
                aliases.push(i.to_string());
            }
            let id = u.name();
            if u.elevated() {
                let mut role = Vec::new();
                if u.owner == Some(true) {
                    role.push("tenant owner");
                }
                if u.admin == Some(true) {
                    role.push("admin");
                }
                let mut f = BTreeMap::new();
                f.insert("role".into(), role.join(", "));
                if let Some(i) = u.id {
                    f.insert("user_id".into(), i.to_string());
                }
                if u.owner.is_none() {
                    f.insert("tenant_owner".into(), "unknown (no record says)".into());
                }
                if u.how == "invited" {
                    f.insert("status".into(), "invited".into());
                }
                let mut t = finish(
                    Kind::Owner,
                    id.clone(),
                    aliases.clone(),
                    format!("{id} ({})", role.join(", ")),
                    f,
                    &u.rights,
                );
                if u.email.is_none() {
                    t.unknown.push("their e-mail address (the records give only an id)".into());
                }
                out.push(t);
            }
            if u.has_permissions() {
                let perms = u.permissions.clone().unwrap_or_default().join(", ");
                let mut f = BTreeMap::new();
                f.insert("permissions".into(), perms.clone());
                out.push(finish(Kind::Permission, id.clone(), aliases, format!("{id}: {perms}"), f, &u.perms));
            }
        }
        for r in self.rules.iter().filter(|r| r.alive) {
            let kind = r.kind.expect("a stored rule has its kind");
            let mut f = BTreeMap::new();
            let mut aliases = Vec::new();
            if let Some(a) = &r.address {
                f.insert(if kind == Kind::IpRule { "ip" } else { "address" }.into(), a.clone());
            }
            if let Some(i) = &r.id {
                f.insert("rule_id".into(), i.clone());
                aliases.push(format!("id:{i}"));
                aliases.push(i.clone());
            }
            if let Some(d) = &r.description {
                f.insert("description".into(), d.clone());
            }
            if let Some(t) = &r.action_types {
                f.insert("action_types".into(), t.join(", "));
            }
            let key = r.key();
            let title = match &r.description {
                Some(d) if !d.is_empty() => format!("{key} ({d})"),
                _ => key.clone(),
            };
            out.push(finish(kind, key, aliases, title, f, &r.track));
        }
        for (i, k) in self.keys.iter().enumerate().filter(|(_, k)| k.alive) {
            let id = self.key_entry_name(i);
            let mut f = BTreeMap::new();
            f.insert(
                "type".into(),
                match k.service {
                    Some(true) => "service".into(),
                    Some(false) => {
                        "not a service key (personal, team or tenant owner: the record does not say which)".into()
                    }
                    None => "unknown".into(),
                },
            );
            if let Some(t) = &k.team {
                f.insert("team_id".into(), t.clone());
            }
            if let Some(n) = &k.name {
                f.insert("name".into(), n.clone());
            }
            let mut aliases = vec![format!("event:{}", k.created_event)];
            if let Some(i) = &k.id {
                f.insert("key_id".into(), i.clone());
                aliases.push(format!("id:{i}"));
            }
            if let Some(c) = &k.track.since {
                f.insert("created_by".into(), c.actor());
            }
            let kind = if k.service == Some(true) { "service" } else { "key" };
            out.push(finish(Kind::ApiKey, id.clone(), aliases, format!("{id} ({kind})"), f, &k.track));
        }
        for (key, s) in &self.settings {
            let mut f = BTreeMap::new();
            f.insert("value".into(), s.value.clone());
            out.push(finish(Kind::Setting, key.clone(), Vec::new(), format!("{}: {}", s.label, s.value), f, &s.track));
        }
        out.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
        out
    }
}
