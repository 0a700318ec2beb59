//! Elastic Common Schema, as Elastic's own Tines integration maps audit logs
//! (`packages/tines/data_stream/audit_logs`): `@timestamp`, `event.id`,
//! `event.action`, `user.*`, `source.ip`, `user_agent.original`, `related.*`,
//! and the rest of the record under `tines.audit_log.*` as it came, plus
//! `event.module`/`event.dataset` and the catalog's enrichment under
//! `tines.audit_log.operation`.
//!
//! Elastic's pipeline writes `event.category: [configuration]` and
//! `event.type: [info]` for everything; here the type follows the verb
//! (creation, deletion, change, access, info), logins are `authentication` /
//! `start`, and user and team management is `iam` with `user` or `group`
//! plus creation/deletion/change, with `user.target.*` and `group.id` when
//! `inputs` name them (ECS's guidance for IAM events).
//!
//! `source.ip` and `related.ip` are `ip` fields in Elasticsearch, so a value
//! that is not an IP address (a pseudonym, or something odd) goes to
//! `source.address` instead of failing the whole document.

use super::json::{self, Obj};
use super::{Event, Iam, Shown, Source, Target};
use crate::catalog::Verb;
use crate::timeutil::write_rfc3339;

fn kind(ev: &Event<'_, '_>, iam: Option<Iam>) -> (&'static str, [&'static str; 2]) {
    let by_verb = match ev.class.verb {
        Verb::Create | Verb::Import => "creation",
        Verb::Delete => "deletion",
        Verb::Update | Verb::Move | Verb::Archive | Verb::Restore | Verb::Enable | Verb::Disable => "change",
        Verb::Read | Verb::Export => "access",
        Verb::Run | Verb::Test | Verb::Login | Verb::Other => "info",
    };
    match iam {
        Some(Iam::Login) => ("authentication", ["start", ""]),
        Some(Iam::UserCreate) => ("iam", ["user", "creation"]),
        Some(Iam::UserDelete) => ("iam", ["user", "deletion"]),
        Some(Iam::UserChange | Iam::MfaEnable | Iam::MfaDisable | Iam::RoleAssign) => ("iam", ["user", "change"]),
        Some(Iam::TeamCreate) => ("iam", ["group", "creation"]),
        Some(Iam::TeamDelete) => ("iam", ["group", "deletion"]),
        Some(Iam::TeamChange | Iam::MemberAdd | Iam::MemberRemove) => ("iam", ["group", "change"]),
        Some(Iam::RoleCreate | Iam::RoleDelete | Iam::RoleChange) => ("iam", [by_verb, ""]),
        None => ("configuration", [by_verb, ""]),
    }
}

pub(super) fn write(ev: &Event<'_, '_>, out: &mut Vec<u8>) {
    let iam = Iam::of(&ev.r.operation_name.value());
    let target = iam.filter(|i| i.targets_user() || i.targets_team()).map(|_| ev.target()).unwrap_or_default();
    let (category, types) = kind(ev, iam);
    let (email, name, source) = (ev.email(), ev.name(), ev.source());

    let mut doc = Obj::open(out);
    doc.key(out, "@timestamp");
    let mut ts = String::with_capacity(20);
    write_rfc3339(&mut ts, ev.e.created_at);
    json::push_str(out, &ts);

    let mut event = doc.obj(out, "event");
    event.key(out, "id");
    out.push(b'"');
    json::push_i64(out, ev.e.id);
    out.push(b'"');
    event.raw(out, "action", ev.op_literal());
    event.str(out, "kind", "event");
    event.key(out, "category");
    out.push(b'[');
    json::push_str(out, category);
    out.push(b']');
    event.key(out, "type");
    out.push(b'[');
    for (i, t) in types.iter().filter(|t| !t.is_empty()).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::push_str(out, t);
    }
    out.push(b']');
    // An audit log records an operation that was carried out.
    event.str(out, "outcome", "success");
    event.str(out, "module", "tines");
    event.str(out, "dataset", "tines.audit_logs");
    if ev.original {
        event.key(out, "original");
        ev.write_original(out);
    }
    event.close(out);

    if ev.r.user_id.is_some() || email.is_some() || name.is_some() || target.has_user() || target.role.is_some() {
        write_user(ev, email, name, &target, &mut doc, out);
    }

    if let Some(team) = &target.team_id {
        let mut group = doc.obj(out, "group");
        group.str(out, "id", team);
        group.close(out);
    }

    if let Some(s) = &source {
        let mut src = doc.obj(out, "source");
        match s {
            Source::Ip(t) => src.raw(out, "ip", t.literal()),
            Source::Other(v) => {
                src.key(out, "address");
                v.write(out);
            }
        }
        src.close(out);
    }

    if let Some(ua) = ev.user_agent() {
        let mut u = doc.obj(out, "user_agent");
        u.raw(out, "original", ua.literal());
        u.close(out);
    }

    let mut users: Vec<Shown<'_>> = Vec::with_capacity(3);
    for s in [name, email].into_iter().flatten() {
        if !users.iter().any(|u| u.value() == s.value()) {
            users.push(s);
        }
    }
    let target_email = target.email.as_deref().filter(|t| !users.iter().any(|u| u.value() == *t));
    let ip = match &source {
        Some(Source::Ip(t)) => Some(t),
        _ => None,
    };
    if !users.is_empty() || target_email.is_some() || ip.is_some() {
        let mut related = doc.obj(out, "related");
        if !users.is_empty() || target_email.is_some() {
            related.key(out, "user");
            out.push(b'[');
            for (i, u) in users.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                u.write(out);
            }
            if let Some(t) = target_email {
                if !users.is_empty() {
                    out.push(b',');
                }
                json::push_str(out, t);
            }
            out.push(b']');
        }
        if let Some(ip) = ip {
            related.key(out, "ip");
            out.push(b'[');
            out.extend_from_slice(ip.literal().as_bytes());
            out.push(b']');
        }
        related.close(out);
    }

    let mut tines = doc.obj(out, "tines");
    if let Some(t) = ev.r.tenant_id {
        tines.key(out, "tenant_id");
        out.extend_from_slice(t.literal().as_bytes());
    }
    tines.str(out, "tenant_name", ev.e.tenant);
    let mut log = tines.obj(out, "audit_log");
    ev.write_rest(&mut log, out, &[], &[]);
    log.close(out);
    tines.close(out);

    doc.close(out);
}

fn write_user(
    ev: &Event<'_, '_>,
    email: Option<Shown<'_>>,
    name: Option<Shown<'_>>,
    target: &Target,
    doc: &mut Obj,
    out: &mut Vec<u8>,
) {
    let mut user = doc.obj(out, "user");
    if let Some(id) = ev.r.user_id {
        user.key(out, "id");
        id.write_as_string(out);
    }
    if let Some(e) = email {
        user.key(out, "email");
        e.write(out);
    }
    if let Some(n) = name {
        user.key(out, "name");
        n.write(out);
    }
    if target.has_user() || target.role.is_some() {
        let mut t = user.obj(out, "target");
        if let Some(id) = &target.user_id {
            t.str(out, "id", id);
        }
        if let Some(e) = &target.email {
            t.str(out, "email", e);
        }
        if let Some(r) = &target.role {
            t.key(out, "roles");
            out.push(b'[');
            json::push_str(out, r);
            out.push(b']');
        }
        t.close(out);
    }
    user.close(out);
}
