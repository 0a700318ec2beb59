//! The emulated tenant's security state, kept in step with the records the emulator
//! serves: IP access control rules, the action egress allowlist and who is tenant owner or
//! admin. The admin API (`GET /api/v1/admin/users`, `.../ip_access_control_rules`,
//! `.../action_egress_control_rules`) serves this state, so a collector's posture rebuilt
//! from the history agrees with it, unless drift is switched on ([`Model::drift`]): then
//! the tenant holds a rule and an owner no record created, and lacks a rule no record deleted.
//!
//! The records follow what Tines documents for similar operations, not a documented shape of
//! these (there is none): a creation carries the rule's fields and no id (as
//! `AuthenticationTokenCreation` carries no id), a change carries the id and the new fields,
//! a deletion only the id (as `AuthenticationTokenDeletion`). So a collector meets deletions
//! it cannot tie to a rule, as it would with the real API.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::generate::{Event, Generator};
use super::render::Tables;
use super::rng::{SplitMix64, mix};
use super::tenant::ip_in;

const POSTURE_TAG: u64 = 0x504F_5354_5552_4501;

/// A change a test scripts into the emulated tenant (`MockServer::push_posture`): an audit
/// record of it is appended, and the tenant's state follows.
#[derive(Debug, Clone, PartialEq)]
pub enum PostureChange {
    IpRuleCreated {
        ip: String,
        description: String,
    },
    /// The rule now at `ip` gets a new description.
    IpRuleChanged {
        ip: String,
        description: String,
    },
    IpRuleDeleted {
        ip: String,
    },
    EgressRuleCreated {
        host: String,
        description: String,
        action_types: Vec<String>,
    },
    EgressRuleDeleted {
        host: String,
    },
    /// The tenant's `user`-th user made tenant owner and admin.
    OwnerGranted {
        user: usize,
    },
    /// The tenant's `user`-th user made neither.
    OwnerRevoked {
        user: usize,
    },
    ApiKeyCreated {
        name: String,
        service: bool,
    },
    /// A key deleted by its id (all the record carries).
    ApiKeyDeleted {
        key_id: u64,
    },
    /// Any other operation, with these `inputs`.
    Record {
        operation: String,
        inputs: Value,
    },
}

impl PostureChange {
    fn operation(&self) -> &str {
        match self {
            PostureChange::IpRuleCreated { .. } => "IPAccessControlRuleCreation",
            PostureChange::IpRuleChanged { .. } => "IPAccessControlRuleChange",
            PostureChange::IpRuleDeleted { .. } => "IPAccessControlRuleDeletion",
            PostureChange::EgressRuleCreated { .. } => "ActionEgressControlRuleCreation",
            PostureChange::EgressRuleDeleted { .. } => "ActionEgressControlRuleDeletion",
            PostureChange::OwnerGranted { .. } | PostureChange::OwnerRevoked { .. } => "UserEdit",
            PostureChange::ApiKeyCreated { .. } => "AuthenticationTokenCreation",
            PostureChange::ApiKeyDeleted { .. } => "AuthenticationTokenDeletion",
            PostureChange::Record { operation, .. } => operation,
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    egress: bool,
    address: String,
    /// Egress entries: a host name rather than an IP.
    fqdn: bool,
    description: String,
    action_types: Vec<String>,
    created_at: i64,
    updated_at: i64,
}

/// The operation indices of one family of rule operations.
#[derive(Debug, Clone, Copy)]
struct Family {
    create: u16,
    change: u16,
    delete: u16,
    egress: bool,
}

static IP_DESCRIPTIONS: &[&str] =
    &["Head office", "VPN egress (Dublin)", "SOC \"jump\" host", "DR site", "Partner: MSSP", "CI runners"];
static EGRESS_HOSTS: &[&str] = &[
    "api.crowdstrike.com",
    "hooks.slack.com",
    "acme-sec.atlassian.net",
    "www.virustotal.com",
    "login.microsoftonline.com",
    "api.pagerduty.com",
    "smtp.acme-sec.example.com",
];

#[derive(Debug, Default)]
pub(crate) struct Model {
    ip_rules: BTreeMap<u64, Rule>,
    egress_rules: BTreeMap<u64, Rule>,
    /// User index → (tenant owner, admin).
    rights: BTreeMap<usize, (bool, bool)>,
    /// The `inputs` of the records this model renders, by event id.
    inputs: HashMap<u64, Box<[u8]>>,
    next_rule_id: u64,
    /// The tenant holds what no record says and lacks what no record removed.
    pub(crate) drift: bool,
    families: Vec<Family>,
}

fn family(t: &Tables, names: [&str; 3], egress: bool) -> Option<Family> {
    Some(Family { create: t.op_index(names[0])?, change: t.op_index(names[1])?, delete: t.op_index(names[2])?, egress })
}

impl Model {
    /// The state after `events` (a history, oldest first): the rule operations of each
    /// family are first reordered among themselves so that no change or deletion comes
    /// before a rule exists to change (every event keeps its time and author).
    pub(crate) fn build(g: &Generator, t: &Tables, events: &mut [Event]) -> Model {
        let mut m = Model { next_rule_id: 100 + g.seed % 900, ..Model::default() };
        m.families = [
            family(
                t,
                ["IPAccessControlRuleCreation", "IPAccessControlRuleChange", "IPAccessControlRuleDeletion"],
                false,
            ),
            family(
                t,
                ["ActionEgressControlRuleCreation", "ActionEgressControlRuleChange", "ActionEgressControlRuleDeletion"],
                true,
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        for f in m.families.clone() {
            reorder(events, f, g.seed);
        }
        for ev in events.iter() {
            m.apply(g, ev);
        }
        m
    }

    fn family_of(&self, op: u16) -> Option<Family> {
        self.families.iter().copied().find(|f| [f.create, f.change, f.delete].contains(&op))
    }

    fn rules(&mut self, egress: bool) -> &mut BTreeMap<u64, Rule> {
        if egress { &mut self.egress_rules } else { &mut self.ip_rules }
    }

    /// A live event's operation, made consistent with the state: a change or deletion of a
    /// rule when none exists becomes a creation.
    pub(crate) fn fit_live(&mut self, op: u16) -> u16 {
        match self.family_of(op) {
            Some(f) if op != f.create && self.rules(f.egress).is_empty() => f.create,
            _ => op,
        }
    }

    /// Follows one event (generated or live): its effect on the state, and its rendered inputs
    /// for the rule operations.
    pub(crate) fn apply(&mut self, g: &Generator, ev: &Event) {
        if g.changes_a_user(ev) {
            let (u, admin, owner) = g.user_change(ev);
            if g.is_user_edit(ev) {
                self.rights.insert(u, (owner, admin));
            } else {
                self.rights.remove(&u);
            }
            return;
        }
        let Some(f) = self.family_of(ev.op) else { return };
        let mut r = SplitMix64::new(mix(g.seed ^ POSTURE_TAG, ev.id));
        let inputs = if ev.op == f.create {
            let rule = self.new_rule(g, f.egress, &mut r, ev.created_at);
            let v = creation_inputs(&rule);
            let id = self.next_rule_id;
            self.next_rule_id += 1 + r.below(3);
            self.rules(f.egress).insert(id, rule);
            v
        } else {
            // Generated histories are reordered so a rule exists; a deletion with none (more
            // deletions than creations) removed one made before the history began.
            let ids: Vec<u64> = self.rules(f.egress).keys().copied().collect();
            match (ids.is_empty(), ev.op == f.change) {
                (true, _) => json!({"inputs": {"id": 1 + r.below(99)}}),
                (false, true) => {
                    let id = ids[r.index(ids.len())];
                    let description = format!("{} (updated)", pick_description(f.egress, &mut r));
                    let rule = self.rules(f.egress).get_mut(&id).expect("picked from the keys");
                    rule.description = description;
                    rule.updated_at = ev.created_at;
                    change_inputs(id, rule)
                }
                (false, false) => {
                    let id = ids[r.index(ids.len())];
                    self.rules(f.egress).remove(&id);
                    json!({"inputs": {"id": id}})
                }
            }
        };
        self.inputs.insert(ev.id, inputs.to_string().into_bytes().into_boxed_slice());
    }

    fn new_rule(&self, g: &Generator, egress: bool, r: &mut SplitMix64, at: i64) -> Rule {
        let taken = |a: &str| self.ip_rules.values().chain(self.egress_rules.values()).any(|x| x.address == a);
        let mut address;
        let mut fqdn;
        loop {
            address = if egress && r.chance(0.8) {
                fqdn = true;
                EGRESS_HOSTS[r.index(EGRESS_HOSTS.len())].to_string()
            } else {
                fqdn = false;
                // An office or VPN address where the tenant's people sit.
                let home = g.tenant.users[r.index(g.tenant.users.len())].home;
                let ip = std::net::Ipv4Addr::from(ip_in(home, r) & !0xff);
                if egress { ip.to_string() } else { format!("{ip}/24") }
            };
            if !taken(&address) {
                break;
            }
            if r.chance(0.05) {
                // Every host of the pool taken: a numbered one.
                address = format!("{}.svc{}.acme-sec.example.com", r.below(1000), r.below(1000));
                fqdn = egress;
                break;
            }
        }
        let action_types = match (egress, fqdn && r.chance(0.3)) {
            (false, _) => Vec::new(),
            (true, true) => vec!["http-request".to_string(), "send-email".to_string()],
            (true, false) => vec!["http-request".to_string()],
        };
        Rule {
            egress,
            address,
            fqdn,
            description: pick_description(egress, r),
            action_types,
            created_at: at,
            updated_at: at,
        }
    }

    /// A scripted change: its record's inputs, and the state after it. `None` when it names
    /// a rule the tenant does not hold.
    pub(crate) fn script(&mut self, g: &Generator, change: &PostureChange, at: i64) -> Option<(String, Value)> {
        let op = change.operation().to_string();
        let find = |rules: &BTreeMap<u64, Rule>, a: &str| rules.iter().find(|(_, r)| r.address == a).map(|(i, _)| *i);
        let inputs = match change {
            PostureChange::IpRuleCreated { ip, description } => {
                let rule = Rule {
                    egress: false,
                    address: ip.clone(),
                    fqdn: false,
                    description: description.clone(),
                    action_types: Vec::new(),
                    created_at: at,
                    updated_at: at,
                };
                let v = creation_inputs(&rule);
                self.ip_rules.insert(self.next_rule_id, rule);
                self.next_rule_id += 1;
                v
            }
            PostureChange::IpRuleChanged { ip, description } => {
                let id = find(&self.ip_rules, ip)?;
                let rule = self.ip_rules.get_mut(&id).expect("found");
                rule.description = description.clone();
                rule.updated_at = at;
                change_inputs(id, rule)
            }
            PostureChange::IpRuleDeleted { ip } => {
                let id = find(&self.ip_rules, ip)?;
                self.ip_rules.remove(&id);
                json!({"inputs": {"id": id}})
            }
            PostureChange::EgressRuleCreated { host, description, action_types } => {
                let rule = Rule {
                    egress: true,
                    address: host.clone(),
                    fqdn: host.parse::<std::net::IpAddr>().is_err(),
                    description: description.clone(),
                    action_types: action_types.clone(),
                    created_at: at,
                    updated_at: at,
                };
                let v = creation_inputs(&rule);
                self.egress_rules.insert(self.next_rule_id, rule);
                self.next_rule_id += 1;
                v
            }
            PostureChange::EgressRuleDeleted { host } => {
                let id = find(&self.egress_rules, host)?;
                self.egress_rules.remove(&id);
                json!({"inputs": {"id": id}})
            }
            PostureChange::OwnerGranted { user } | PostureChange::OwnerRevoked { user } => {
                let granted = matches!(change, PostureChange::OwnerGranted { .. });
                let u = user % g.tenant.users.len();
                self.rights.insert(u, (granted, granted));
                let who = &g.tenant.users[u];
                json!({"inputs": {"userId": who.id, "email": who.email, "admin": granted, "isTenantOwner": granted}})
            }
            PostureChange::ApiKeyCreated { name, service } => {
                json!({"inputs": {"name": name, "isServiceToken": service}})
            }
            PostureChange::ApiKeyDeleted { key_id } => json!({"inputs": {"authenticationTokenId": key_id}}),
            PostureChange::Record { inputs, .. } => inputs.clone(),
        };
        Some((op, inputs))
    }

    /// Keeps the rendered inputs of a scripted record.
    pub(crate) fn keep_inputs(&mut self, event_id: u64, inputs: &Value) {
        self.inputs.insert(event_id, inputs.to_string().into_bytes().into_boxed_slice());
    }

    /// The `inputs` this model renders for an event, if it renders them.
    pub(crate) fn inputs(&self, event_id: u64) -> Option<&[u8]> {
        self.inputs.get(&event_id).map(|b| &b[..])
    }

    fn rule_json(id: u64, r: &Rule, egress: bool) -> Value {
        let created = crate::timeutil::format_rfc3339(r.created_at);
        let updated = crate::timeutil::format_rfc3339(r.updated_at);
        if egress {
            json!({
                "id": id,
                "ip": if r.fqdn { Value::Null } else { Value::from(r.address.clone()) },
                "fqdn": if r.fqdn { Value::from(r.address.clone()) } else { Value::Null },
                "description": r.description,
                "allowed_action_types": r.action_types,
                "created_at": created,
                "updated_at": updated,
            })
        } else {
            json!({"id": id, "ip": r.address, "description": r.description, "created_at": created, "updated_at": updated})
        }
    }

    /// The rules as the admin API lists them, with drift applied when it is on.
    pub(crate) fn rule_list(&self, egress: bool, now: i64) -> Vec<Value> {
        let rules = if egress { &self.egress_rules } else { &self.ip_rules };
        let mut out: Vec<Value> = rules
            .iter()
            .skip(usize::from(self.drift && !rules.is_empty()))
            .map(|(id, r)| Self::rule_json(*id, r, egress))
            .collect();
        if self.drift {
            // Made in the tenant with no audit record (the ids are above any the model hands out).
            let (address, description) =
                if egress { ("exfil.example.net", "no audit record") } else { ("192.0.2.0/24", "no audit record") };
            let rule = Rule {
                egress,
                address: address.into(),
                fqdn: egress,
                description: description.into(),
                action_types: if egress { vec!["http-request".into()] } else { Vec::new() },
                created_at: now,
                updated_at: now,
            };
            out.push(Self::rule_json(900_000 + u64::from(egress), &rule, egress));
        }
        out
    }

    /// The users as the admin API lists them (only tenant owners with `owners_only`), with
    /// drift applied when it is on: one more tenant owner no record made.
    pub(crate) fn user_list(&self, g: &Generator, owners_only: bool, now: i64) -> Vec<Value> {
        let undocumented = self
            .drift
            .then(|| (0..g.tenant.users.len()).find(|u| !self.rights.get(u).is_some_and(|r| r.0 || r.1)))
            .flatten();
        let created = crate::timeutil::format_rfc3339(now - 400 * 86_400);
        g.tenant
            .users
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                let (owner, admin) = if Some(i) == undocumented {
                    (true, true)
                } else {
                    self.rights.get(&i).copied().unwrap_or((false, false))
                };
                if owners_only && !owner {
                    return None;
                }
                let (first, last) = u.name.split_once(' ').unwrap_or((&u.name, ""));
                Some(json!({
                    "id": u.id,
                    "scim_uid": Value::Null,
                    "email": u.email,
                    "admin": admin,
                    "tenant_permissions": if u.service { vec!["AUDIT_LOG_READ"] } else { Vec::new() },
                    "is_active": true,
                    "created_at": created,
                    "updated_at": created,
                    "first_name": first,
                    "last_name": last,
                    "last_seen": Value::Null,
                }))
            })
            .collect()
    }
}

fn pick_description(egress: bool, r: &mut SplitMix64) -> String {
    if egress {
        ["CRM sync", "Alerts to Slack", "Ticketing", "Threat intel lookups", "Paging", "Mail relay"][r.index(6)]
            .to_string()
    } else {
        IP_DESCRIPTIONS[r.index(IP_DESCRIPTIONS.len())].to_string()
    }
}

/// A creation's `inputs`: the admin API's fields in the camelCase Tines's records use elsewhere.
fn creation_inputs(r: &Rule) -> Value {
    match (r.egress, r.fqdn) {
        (false, _) => json!({"inputs": {"ip": r.address, "description": r.description}}),
        (true, true) => {
            json!({"inputs": {"fqdn": r.address, "description": r.description, "allowedActionTypes": r.action_types}})
        }
        (true, false) => {
            json!({"inputs": {"ip": r.address, "description": r.description, "allowedActionTypes": r.action_types}})
        }
    }
}

fn change_inputs(id: u64, r: &Rule) -> Value {
    let mut v = creation_inputs(r);
    v["inputs"]["id"] = json!(id);
    v
}

/// Reorders one family's operations among its events so that, in time order, every change
/// and deletion meets a rule in force, where the counts allow: the same operations, at the
/// same events' times, in a seeded order.
fn reorder(events: &mut [Event], f: Family, seed: u64) {
    let at: Vec<usize> =
        (0..events.len()).filter(|&i| [f.create, f.change, f.delete].contains(&events[i].op)).collect();
    let count = |op| at.iter().filter(|&&i| events[i].op == op).count();
    let (mut creates, mut changes, mut deletes) = (count(f.create), count(f.change), count(f.delete));
    let mut r = SplitMix64::new(mix(seed ^ POSTURE_TAG, u64::from(f.create)));
    let mut alive = 0usize;
    for i in at {
        let op = if alive == 0 {
            // Nothing to change or delete: a creation if one is left (else a deletion of a rule
            // from before the history, which leaves no trace in the tenant).
            if creates > 0 {
                f.create
            } else if deletes > 0 {
                f.delete
            } else {
                f.change
            }
        } else {
            // Keep a rule alive for the changes still to come once no creation is left.
            let may_delete = deletes > 0 && !(alive == 1 && creates == 0 && changes > 0);
            let weights = [creates, changes, if may_delete { deletes } else { 0 }];
            let mut x = r.below(weights.iter().sum::<usize>().max(1) as u64) as usize;
            let mut pick = 0;
            for (k, w) in weights.iter().enumerate() {
                if x < *w {
                    pick = k;
                    break;
                }
                x -= w;
            }
            [f.create, f.change, f.delete][pick]
        };
        match op {
            o if o == f.create => {
                creates -= 1;
                alive += 1;
            }
            o if o == f.change => changes -= 1,
            _ => {
                deletes -= 1;
                alive = alive.saturating_sub(1);
            }
        }
        events[i].op = op;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_history_never_changes_or_deletes_a_rule_before_one_exists() {
        for seed in 1..20 {
            let g = Generator::new(seed);
            let t = Tables::new(&g, 1);
            let mut h = g.history(3_000, 86_400, 1_700_000_000, None);
            let before: Vec<u16> = {
                let mut v: Vec<u16> = h.iter().map(|e| e.op).collect();
                v.sort_unstable();
                v
            };
            let m = Model::build(&g, &t, &mut h);
            let mut after: Vec<u16> = h.iter().map(|e| e.op).collect();
            after.sort_unstable();
            assert_eq!(before, after, "the same operations, only reordered");
            for f in &m.families {
                let mut alive = 0i64;
                let (mut creates_left, mut prehistory_deletes) = (h.iter().filter(|e| e.op == f.create).count(), 0);
                for e in h.iter().filter(|e| [f.create, f.change, f.delete].contains(&e.op)) {
                    match e.op {
                        o if o == f.create => {
                            alive += 1;
                            creates_left -= 1;
                        }
                        o if o == f.change => assert!(alive > 0, "seed {seed}: a change before any rule"),
                        _ if alive == 0 => {
                            assert_eq!(creates_left, 0, "seed {seed}: a deletion before a rule while creations remain");
                            prehistory_deletes += 1;
                        }
                        _ => alive -= 1,
                    }
                }
                let held = if f.egress { m.egress_rules.len() } else { m.ip_rules.len() };
                assert_eq!(
                    held as i64, alive,
                    "seed {seed}: the tenant holds what the records leave ({prehistory_deletes} older)"
                );
            }
        }
    }

    #[test]
    fn drift_adds_an_unrecorded_rule_and_owner_and_drops_the_oldest_rule() {
        let g = Generator::new(3);
        let t = Tables::new(&g, 1);
        let mut m = Model::build(&g, &t, &mut []);
        for (ip, d) in [("203.0.113.0/24", "VPN"), ("198.51.100.0/24", "DR")] {
            m.script(&g, &PostureChange::IpRuleCreated { ip: ip.into(), description: d.into() }, 10).unwrap();
        }
        m.script(&g, &PostureChange::OwnerGranted { user: 2 }, 11).unwrap();
        let ips = |m: &Model| {
            m.rule_list(false, 20).iter().map(|r| r["ip"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(ips(&m), vec!["203.0.113.0/24", "198.51.100.0/24"]);
        assert_eq!(m.user_list(&g, true, 20).len(), 1);
        m.drift = true;
        assert_eq!(ips(&m), vec!["198.51.100.0/24", "192.0.2.0/24"]);
        assert_eq!(m.user_list(&g, true, 20).len(), 2);
        assert!(m.script(&g, &PostureChange::IpRuleDeleted { ip: "10.0.0.0/8".into() }, 12).is_none());
    }
}
