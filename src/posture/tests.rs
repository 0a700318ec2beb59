//! The replay over a real (SQLite) journal: what ends up in force, what stays unknown, and
//! the drift against a tenant's lists.

use serde_json::{Value, json};

use super::*;
use crate::journal::testing::{Kind as Backend, fresh};
use crate::journal::{Record, WindowCommit};

const ANN: &str = "ann@acme.example";
const BOB: &str = "bob@acme.example";
const T0: i64 = 1_700_000_000;

/// `(id, seconds after T0, operation, actor, inputs)`.
type Ev = (i64, i64, &'static str, &'static str, Value);

fn journal_with(events: &[Ev]) -> crate::journal::testing::Fresh {
    let j = fresh(Backend::Sqlite);
    j.start_progress("acme", "cursor", 0, None, "").unwrap();
    let raws: Vec<String> = events
        .iter()
        .map(|(id, t, op, who, inputs)| {
            json!({"id": id, "created_at": format_rfc3339(T0 + t), "operation_name": op, "user_email": who,
                   "user_id": if *who == ANN { 5101 } else { 5102 }, "request_ip": "86.40.0.10", "inputs": inputs})
            .to_string()
        })
        .collect();
    let recs = events.iter().zip(&raws).map(|((id, t, op, who, _), raw)| Record {
        id: *id,
        created_at: T0 + t,
        operation_name: op,
        user_id: Some(if *who == ANN { 5101 } else { 5102 }),
        user_email: Some(who),
        request_ip: Some("86.40.0.10"),
        raw,
    });
    let c = WindowCommit { tenant: "acme", job: "cursor", from: 0, to: T0 + 10_000, fetched: events.len() as u64 };
    j.commit_window(&c, recs).unwrap();
    j
}

fn scripted() -> Vec<Ev> {
    vec![
        (1, 10, "Login", ANN, json!(null)),
        (
            2,
            20,
            "UserEdit",
            ANN,
            json!({"inputs": {"userId": 5200, "email": "ava@acme.example", "admin": true, "isTenantOwner": true}}),
        ),
        (
            3,
            30,
            "IPAccessControlRuleCreation",
            ANN,
            json!({"inputs": {"ip": "203.0.113.0/24", "description": "office VPN"}}),
        ),
        (
            4,
            40,
            "IPAccessControlRuleCreation",
            BOB,
            json!({"inputs": {"ip": "198.51.100.0/24", "description": "DR site"}}),
        ),
        (
            5,
            50,
            "IPAccessControlRuleChange",
            BOB,
            json!({"inputs": {"id": 11, "ip": "198.51.100.0/24", "description": "DR site (new)"}}),
        ),
        (6, 60, "IPAccessControlRuleDeletion", BOB, json!({"inputs": {"id": 11}})),
        (
            7,
            70,
            "ActionEgressControlRuleCreation",
            ANN,
            json!({"inputs": {"fqdn": "api.crm.example", "description": "CRM", "allowedActionTypes": ["http-request"]}}),
        ),
        (8, 80, "AuthenticationTokenCreation", ANN, json!({"inputs": {"name": "SIEM export", "isServiceToken": true}})),
        (9, 90, "AuthenticationTokenCreation", BOB, json!({"inputs": {"name": "laptop", "isServiceToken": false}})),
        (
            10,
            100,
            "SsoConfigurationSamlSet",
            ANN,
            json!({"domainId": 3, "fingerprint": "REDACTED", "idpCertificate": "REDACTED", "targetUrl": "REDACTED"}),
        ),
        (11, 110, "TenantSessionTimeoutChange", ANN, json!({"inputs": {"sessionTimeout": 720}})),
        // Past the --at of the tests below.
        (12, 200, "AuthenticationTokenDeletion", BOB, json!({"inputs": {"authenticationTokenId": 693}})),
        (13, 210, "IPAccessControlRuleDeletion", ANN, json!({"inputs": {"id": 12}})),
        (14, 220, "SsoConfigurationOidcSet", ANN, json!({})),
        (
            15,
            230,
            "UserEdit",
            BOB,
            json!({"inputs": {"userId": 5200, "email": "ava@acme.example", "admin": false, "isTenantOwner": false}}),
        ),
        (16, 240, "UsersInvitation", BOB, json!({"inputs": {"email": "carol@acme.example", "admin": true}})),
    ]
}

fn ids(p: &Posture, kind: Kind) -> Vec<String> {
    p.entries_of(kind).map(|e| e.id.clone()).collect()
}

fn entry<'a>(p: &'a Posture, kind: Kind, id: &str) -> &'a Entry {
    p.entries_of(kind).find(|e| e.id == id).unwrap_or_else(|| panic!("no {kind} {id}: {:#?}", p.entries))
}

#[test]
fn a_scripted_history_gives_the_state_at_the_end_and_at_a_past_moment() {
    let j = journal_with(&scripted());
    let end = compute(&j, "acme", &Options::default()).unwrap();
    assert_eq!(end.events, 15, "every posture event, and no Login");
    assert_eq!(ids(&end, Kind::Owner), vec!["carol@acme.example"]);
    assert_eq!(entry(&end, Kind::Owner, "carol@acme.example").fields["status"], "invited");
    assert_eq!(ids(&end, Kind::IpRule), vec!["203.0.113.0/24"]);
    assert_eq!(ids(&end, Kind::EgressRule), vec!["api.crm.example"]);
    assert_eq!(ids(&end, Kind::ApiKey), vec!["SIEM export", "laptop"]);
    assert_eq!(entry(&end, Kind::Setting, "sso").fields["value"], "OIDC");
    assert_eq!(entry(&end, Kind::Setting, "session_timeout").fields["value"], "record says {\"sessionTimeout\":720}");

    // The rule bound to id 11 by its change went with its deletion; the deletion of id 12
    // named a rule no record tied to an address: unknown which, and the one it could be says so.
    let vpn = entry(&end, Kind::IpRule, "203.0.113.0/24");
    assert_eq!(vpn.doubts.len(), 1, "{vpn:#?}");
    assert!(vpn.doubts[0].contains("event 13"), "{:?}", vpn.doubts);
    assert_eq!(vpn.fields["description"], "office VPN");
    let last = vpn.last.as_ref().unwrap();
    assert_eq!(
        (last.event_id, last.user_email.as_deref(), last.request_ip.as_deref()),
        (3, Some(ANN), Some("86.40.0.10"))
    );
    // The key deletion names only an id: both keys may be the one.
    for k in ["SIEM export", "laptop"] {
        let e = entry(&end, Kind::ApiKey, k);
        assert!(e.doubts.iter().any(|d| d.contains("event 12")), "{e:#?}");
    }
    assert_eq!(entry(&end, Kind::ApiKey, "SIEM export").fields["type"], "service");
    let why: Vec<(i64, &str)> = end.unresolved.iter().map(|u| (u.change.event_id, u.why.as_str())).collect();
    assert_eq!(why.len(), 2, "{why:?}");
    assert!(why[0].1.contains("unknown which key") && why[1].1.contains("unknown which rule"), "{why:?}");
    // Every entry that wants a note is flagged: there are none yet.
    assert!(end.entries.iter().filter(|e| e.kind != Kind::Setting).all(|e| e.needs_note));
    assert!(end.caveats[0].contains(&format_rfc3339(T0 + 10)), "{:?}", end.caveats);

    let past = compute(&j, "acme", &Options { at: Some(T0 + 150), ..Options::default() }).unwrap();
    assert_eq!(past.events, 10);
    assert_eq!(ids(&past, Kind::Owner), vec!["ava@acme.example"]);
    let ava = entry(&past, Kind::Owner, "ava@acme.example");
    assert_eq!(ava.fields["role"], "tenant owner, admin");
    assert_eq!(ava.since.as_ref().unwrap().event_id, 2);
    assert_eq!(ids(&past, Kind::IpRule), vec!["203.0.113.0/24"]);
    assert!(entry(&past, Kind::IpRule, "203.0.113.0/24").doubts.is_empty());
    assert_eq!(entry(&past, Kind::Setting, "sso").fields["value"], "SAML");
    assert!(past.entries_of(Kind::ApiKey).all(|e| e.doubts.is_empty()));
    assert_eq!(past.unresolved_total, 0);
}

#[test]
fn history_and_period_changes_are_kept_only_when_asked() {
    let j = journal_with(&scripted());
    let plain = compute(&j, "acme", &Options::default()).unwrap();
    assert!(plain.entries.iter().all(|e| e.history.is_empty()) && plain.changes.is_empty());
    let full = compute(&j, "acme", &Options { history: true, changes_since: Some(T0 + 200), at: None }).unwrap();
    let sso = entry(&full, Kind::Setting, "sso");
    assert_eq!(sso.history.iter().map(|c| c.event_id).collect::<Vec<_>>(), vec![10, 14]);
    assert_eq!(sso.since.as_ref().unwrap().event_id, 14, "in force since the change that set OIDC");
    let period: Vec<i64> = full.changes.iter().map(|c| c.change.event_id).collect();
    assert_eq!(period, vec![12, 13, 14, 15, 16]);
    let revoked = full.changes.iter().find(|c| c.change.event_id == 15).unwrap();
    assert_eq!((revoked.kind, revoked.entry.as_str()), (Kind::Owner, "ava@acme.example"));
    assert!(revoked.change.what.contains("not tenant owner, not admin"), "{revoked:?}");
}

fn note(kind: &str, id: &str, why: &str, seq_hint: i64) -> PostureNote {
    PostureNote {
        seq: 0,
        tenant: "acme".into(),
        kind: kind.into(),
        entry_id: id.into(),
        why: why.into(),
        requested_by: "CISO".into(),
        noted_by: "ops".into(),
        noted_at: T0 + seq_hint,
    }
}

#[test]
fn the_latest_note_is_the_entrys_why_and_earlier_ones_stay() {
    let j = journal_with(&scripted());
    j.add_posture_note(&note("ip_rule", "203.0.113.0/24", "office VPN for staff", 1)).unwrap();
    j.add_posture_note(&note("ip_rule", "203.0.113.0/24", "office VPN, new ISP", 2)).unwrap();
    j.add_posture_note(&note("egress_rule", "API.CRM.example", "CRM sync", 3)).unwrap();
    j.add_posture_note(&note("ip_rule", "198.51.100.0/24", "DR site", 4)).unwrap();
    j.add_posture_note(&note("owner", "carol@acme.example", "on call lead", 5)).unwrap();
    let p = compute(&j, "acme", &Options::default()).unwrap();
    let vpn = entry(&p, Kind::IpRule, "203.0.113.0/24");
    assert_eq!(vpn.note.as_ref().unwrap().why, "office VPN, new ISP");
    assert_eq!(vpn.notes.len(), 2);
    assert!(!vpn.needs_note);
    assert!(!entry(&p, Kind::EgressRule, "api.crm.example").needs_note, "ids match case-insensitively");
    assert!(entry(&p, Kind::ApiKey, "laptop").needs_note);
    // The deleted rule's note is kept, apart.
    assert_eq!(p.other_notes.iter().map(|n| n.entry_id.as_str()).collect::<Vec<_>>(), vec!["198.51.100.0/24"]);
    let text = render::table(&p, None, false);
    assert!(text.contains("office VPN, new ISP") && text.contains("[no note: why?]"), "{text}");
    assert!(text.contains("posture annotate --tenant acme --kind api_key --id laptop"), "{text}");
}

#[test]
fn an_unknown_tenant_is_an_error_naming_it() {
    let j = journal_with(&scripted());
    let e = compute(&j, "globex", &Options::default()).unwrap_err();
    assert!(matches!(e, PostureError::UnknownTenant(ref t) if t == "globex"), "{e}");
}

fn live_rule(id: &str, address: &str, description: &str) -> LiveRule {
    LiveRule {
        id: id.into(),
        address: address.into(),
        description: description.into(),
        action_types: vec!["http-request".into()],
        created_at: None,
    }
}

#[test]
fn drift_names_what_the_tenant_holds_without_a_creation_and_what_it_lacks() {
    let j = journal_with(&scripted());
    let p = compute(&j, "acme", &Options::default()).unwrap();
    let live = Live {
        fetched_at: T0 + 1_000,
        owners: Fetched::Got(vec![
            LiveUser { id: 5300, email: "Carol@acme.example".into(), admin: true, permissions: vec![] },
            LiveUser { id: 5301, email: "mallory@acme.example".into(), admin: false, permissions: vec![] },
        ]),
        // The VPN rule (which event 13 might have deleted) is still there; one rule was made
        // with no event; the CRM entry's description was changed with none.
        ip_rules: Fetched::Got(vec![
            live_rule("12", "203.0.113.0/24", "office VPN"),
            live_rule("40", "192.0.2.0/24", ""),
        ]),
        egress_rules: Fetched::Got(vec![live_rule("3", "api.crm.example", "CRM (prod)")]),
    };
    let d = drift(&p, &live);
    let undocumented: Vec<(Kind, &str)> = d.undocumented().map(|i| (i.kind, i.id.as_str())).collect();
    assert_eq!(undocumented, vec![(Kind::Owner, "mallory@acme.example"), (Kind::IpRule, "192.0.2.0/24")]);
    assert_eq!(d.missing().count(), 0);
    let egress = d.areas.iter().find(|a| a.kind == Kind::EgressRule).unwrap();
    assert_eq!(egress.differs.len(), 1);
    assert!(egress.differs[0].detail.contains("CRM (prod)"), "{egress:?}");
    let keys = d.areas.iter().find(|a| a.kind == Kind::ApiKey).unwrap();
    assert!(!keys.checked && keys.note.as_deref().unwrap().contains("no API"));

    // And the other way: the tenant lost the rule and the owner without an event.
    let gone = Live {
        fetched_at: T0 + 1_000,
        owners: Fetched::Got(vec![]),
        ip_rules: Fetched::Got(vec![]),
        egress_rules: Fetched::Got(vec![]),
    };
    let d = drift(&p, &gone);
    let missing: Vec<(Kind, &str)> = d.missing().map(|i| (i.kind, i.id.as_str())).collect();
    assert_eq!(missing, vec![(Kind::EgressRule, "api.crm.example")], "{d:#?}");
    assert!(d.any());
    // The rule event 13 may have deleted is gone: that settles the doubt, it is no drift.
    let ip = d.areas.iter().find(|a| a.kind == Kind::IpRule).unwrap();
    assert_eq!(ip.explained.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), vec!["203.0.113.0/24"]);
    assert!(ip.explained[0].detail.contains("event 13"), "{ip:?}");
    // Carol is an invited admin the records never called tenant owner: not expected in the list.
    let owners = d.areas.iter().find(|a| a.kind == Kind::Owner).unwrap();
    assert!(owners.missing.is_empty() && owners.note.is_some(), "{owners:?}");
    let refused =
        Live { egress_rules: Fetched::NotChecked("not checked: the API key may not read it (403)".into()), ..gone };
    let d = drift(&p, &refused);
    let egress = d.areas.iter().find(|a| a.kind == Kind::EgressRule).unwrap();
    assert!(!egress.checked && egress.note.as_deref().unwrap().contains("403"));
    assert_eq!(d.missing().count(), 0);
}

#[test]
fn a_deleted_user_loses_rights_and_one_the_records_cannot_name_casts_doubt() {
    let j = journal_with(&[
        (1, 1, "UserEdit", ANN, json!({"inputs": {"userId": 7, "email": "x@acme.example", "isTenantOwner": true}})),
        (2, 2, "UsersInvitation", ANN, json!({"inputs": {"email": "y@acme.example", "admin": true}})),
        (3, 3, "UserDeletion", ANN, json!({"inputs": {"userId": 7}})),
        (4, 4, "UserDeletion", ANN, json!({"inputs": {"userId": 99}})),
        (5, 5, "UserEdit", ANN, json!({"inputs": {"userId": 8, "tenantPermissions": ["AUDIT_LOG_READ"]}})),
    ]);
    let p = compute(&j, "acme", &Options::default()).unwrap();
    assert_eq!(ids(&p, Kind::Owner), vec!["y@acme.example"]);
    let y = entry(&p, Kind::Owner, "y@acme.example");
    assert!(y.doubts[0].contains("event 4"), "known only by address, y may be user 99: {y:#?}");
    assert_eq!(ids(&p, Kind::Permission), vec!["user:8"]);
    assert_eq!(entry(&p, Kind::Permission, "user:8").fields["permissions"], "AUDIT_LOG_READ");
}

fn bare(id: &str, doubt_events: &[i64]) -> Entry {
    Entry {
        kind: Kind::IpRule,
        id: id.into(),
        aliases: vec![],
        title: id.into(),
        fields: Default::default(),
        since: None,
        last: None,
        doubts: vec![],
        doubts_total: doubt_events.len(),
        doubt_events: doubt_events.to_vec(),
        unknown: vec![],
        history: vec![],
        note: None,
        notes: vec![],
        needs_note: false,
    }
}

/// Each record that removed an entry without saying which accounts for one absence: as many
/// absences as can be are explained, whatever the order the entries come in.
#[test]
fn records_that_did_not_say_which_explain_one_absence_each_as_many_as_can_be() {
    let (x, y, z) = (bare("x", &[1, 2]), bare("y", &[1]), bare("z", &[1]));
    assert_eq!(match_records(&[&x, &y]), vec![Some(2), Some(1)], "x takes record 2 so that y can have 1");
    let m = match_records(&[&x, &y, &z]);
    assert_eq!(m.iter().filter(|e| e.is_some()).count(), 2, "two records, three absences: one is missing");
    let mut a = area(Kind::IpRule, true, None);
    absent(&mut a, &[&y, &z, &bare("w", &[])]);
    assert_eq!(a.explained.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["y"]);
    assert_eq!(a.missing.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["z", "w"]);
    assert!(a.missing[0].detail.contains("event 1 by y"), "{:?}", a.missing[0]);
    assert!(a.missing[1].detail.contains("removed without an audit record"), "{:?}", a.missing[1]);
}
