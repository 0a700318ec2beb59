//! OCSF (schema [`OCSF_VERSION`](super::OCSF_VERSION)).
//!
//! Every event is API Activity (6003, category Application Activity) with
//! `activity_id` from the verb (Create 1, Read 2, Update 3, Delete 4, Other
//! 99), except:
//!
//! | operation | class | activity |
//! |---|---|---|
//! | `Login` | Authentication 3002 | Logon 1 |
//! | `UsersInvitation`, `SCIM/2.0/User/create` | Account Change 3001 | Create 1 |
//! | `UserDeletion`, `SCIM/2.0/User/destroy` | Account Change 3001 | Delete 6 |
//! | `UserEdit`, `UserReinvitation`, `SCIM/2.0/User/replace`, `…/update` | Account Change 3001 | Other 99 |
//! | `UserRecoveryCodesGeneration` / `…Deletion` | Account Change 3001 | MFA Factor Enable 10 / Disable 11 |
//! | `UserTeamRoleChange` | User Access Management 3005 | Assign Privileges 1 |
//! | `TeamMembersAddition` / `TeamMemberRemoval` | Group Management 3006 | Add User 3 / Remove User 4 |
//!
//! The IAM classes require the user (3001, 3005) or the group and user
//! (3006) acted on; Tines puts those in `inputs`, whose shape is not
//! documented. When they cannot be found there the event stays API Activity,
//! so every event has its class's required attributes. `Login`'s user is the
//! actor, and its `service` is Tines.
//!
//! Common to all: `metadata` (product and vendor "Tines", schema version,
//! `uid` = the Tines id, `original_time`, `log_name` "audit_logs",
//! `tenant_uid`, `event_code` = the operation name), `actor.user`,
//! `src_endpoint.ip`, `http_request.user_agent`, `message` (the catalog's
//! description), `unmapped` (`inputs`, `outputs` and every other field as
//! they came, plus `tenant_name` and `operation` with the enrichment), and
//! `raw_data`.

use super::json::{self, Obj};
use super::{Event, Iam, OCSF_VERSION, Source, Target, verb_caption};
use crate::catalog::Verb;

/// The class, activity and captions of one event.
struct Class {
    class_uid: i64,
    class_name: &'static str,
    category_uid: i64,
    category_name: &'static str,
    activity_id: i64,
    activity_name: &'static str,
}

const APPLICATION: (i64, &str) = (6, "Application Activity");
const IAM: (i64, &str) = (3, "Identity & Access Management");

fn class(uid: i64, name: &'static str, cat: (i64, &'static str), activity_id: i64, activity: &'static str) -> Class {
    Class {
        class_uid: uid,
        class_name: name,
        category_uid: cat.0,
        category_name: cat.1,
        activity_id,
        activity_name: activity,
    }
}

fn api_activity(verb: Verb) -> Class {
    let (id, name) = match verb {
        Verb::Create | Verb::Import => (1, "Create"),
        Verb::Read | Verb::Export => (2, "Read"),
        Verb::Update | Verb::Move | Verb::Archive | Verb::Restore | Verb::Enable | Verb::Disable => (3, "Update"),
        Verb::Delete => (4, "Delete"),
        Verb::Run | Verb::Test | Verb::Login | Verb::Other => (99, verb_caption(verb)),
    };
    class(6003, "API Activity", APPLICATION, id, name)
}

fn choose(iam: Option<Iam>, verb: Verb, target: &Target) -> Class {
    let user = target.has_user();
    let account = |id, name| class(3001, "Account Change", IAM, id, name);
    match iam {
        Some(Iam::Login) => class(3002, "Authentication", IAM, 1, "Logon"),
        Some(Iam::UserCreate) if user => account(1, "Create"),
        Some(Iam::UserDelete) if user => account(6, "Delete"),
        Some(Iam::UserChange) if user => account(99, verb_caption(verb)),
        Some(Iam::MfaEnable) if user => account(10, "MFA Factor Enable"),
        Some(Iam::MfaDisable) if user => account(11, "MFA Factor Disable"),
        Some(Iam::RoleAssign) if user => class(3005, "User Access Management", IAM, 1, "Assign Privileges"),
        Some(Iam::MemberAdd) if user && target.team_id.is_some() => class(3006, "Group Management", IAM, 3, "Add User"),
        Some(Iam::MemberRemove) if user && target.team_id.is_some() => {
            class(3006, "Group Management", IAM, 4, "Remove User")
        }
        _ => api_activity(verb),
    }
}

pub(super) fn write(ev: &Event<'_, '_>, out: &mut Vec<u8>) {
    let iam = Iam::of(&ev.r.operation_name.value());
    let target = iam.filter(|i| i.targets_user()).map(|_| ev.target()).unwrap_or_default();
    let c = choose(iam, ev.class.verb, &target);
    let (email, name) = (ev.email(), ev.name());

    let mut doc = Obj::open(out);
    doc.int(out, "activity_id", c.activity_id);
    doc.str(out, "activity_name", c.activity_name);
    doc.int(out, "category_uid", c.category_uid);
    doc.str(out, "category_name", c.category_name);
    doc.int(out, "class_uid", c.class_uid);
    doc.str(out, "class_name", c.class_name);
    doc.int(out, "type_uid", c.class_uid * 100 + c.activity_id);
    doc.key(out, "type_name");
    out.push(b'"');
    json::push_escaped(out, c.class_name);
    out.extend_from_slice(b": ");
    json::push_escaped(out, c.activity_name);
    out.push(b'"');
    doc.int(out, "severity_id", 1);
    doc.str(out, "severity", "Informational");
    // An audit log records an operation that was carried out.
    doc.int(out, "status_id", 1);
    doc.str(out, "status", "Success");
    doc.int(out, "time", ev.e.created_at.saturating_mul(1000));
    match ev.description() {
        Some(d) => doc.str(out, "message", d),
        None => doc.raw(out, "message", ev.op_literal()),
    }

    let mut meta = doc.obj(out, "metadata");
    meta.str(out, "version", OCSF_VERSION);
    let mut product = meta.obj(out, "product");
    product.str(out, "name", "Tines");
    product.str(out, "vendor_name", "Tines");
    product.close(out);
    meta.key(out, "uid");
    out.push(b'"');
    json::push_i64(out, ev.e.id);
    out.push(b'"');
    if let Some(t) = ev.r.created_at {
        meta.raw(out, "original_time", t.literal());
    }
    meta.str(out, "log_name", "audit_logs");
    if let Some(t) = ev.r.tenant_id {
        meta.key(out, "tenant_uid");
        t.write_as_string(out);
    }
    meta.raw(out, "event_code", ev.op_literal());
    meta.close(out);

    // The acting user; for a login also the user who authenticated.
    let write_actor_user = |o: &mut Obj, out: &mut Vec<u8>, key: &str| {
        let mut u = o.obj(out, key);
        if let Some(id) = ev.r.user_id {
            u.key(out, "uid");
            id.write_as_string(out);
        }
        if let Some(e) = email {
            u.key(out, "email_addr");
            e.write(out);
        }
        if let Some(n) = name {
            u.key(out, "name");
            n.write(out);
        }
        u.close(out);
    };
    let has_actor = ev.r.user_id.is_some() || email.is_some() || name.is_some();
    if has_actor {
        let mut actor = doc.obj(out, "actor");
        write_actor_user(&mut actor, out, "user");
        actor.close(out);
    }

    match ev.source() {
        Some(Source::Ip(t)) => {
            let mut src = doc.obj(out, "src_endpoint");
            src.raw(out, "ip", t.literal());
            src.close(out);
        }
        Some(Source::Other(v)) => {
            // A pseudonym or a non-address cannot go in `ip`: it still identifies the endpoint.
            let mut src = doc.obj(out, "src_endpoint");
            src.key(out, "uid");
            v.write(out);
            src.close(out);
        }
        None => {}
    }
    if let Some(ua) = ev.user_agent() {
        let mut http = doc.obj(out, "http_request");
        http.raw(out, "user_agent", ua.literal());
        http.close(out);
    }

    match c.class_uid {
        6003 => {
            let mut api = doc.obj(out, "api");
            api.raw(out, "operation", ev.op_literal());
            api.close(out);
        }
        3002 => {
            if has_actor {
                write_actor_user(&mut doc, out, "user");
            }
            let mut service = doc.obj(out, "service");
            service.str(out, "name", "Tines");
            service.close(out);
        }
        _ => {
            let mut user = doc.obj(out, "user");
            if let Some(id) = &target.user_id {
                user.str(out, "uid", id);
            }
            if let Some(e) = &target.email {
                user.str(out, "email_addr", e);
            }
            user.close(out);
            if c.class_uid == 3006
                && let Some(team) = &target.team_id
            {
                let mut group = doc.obj(out, "group");
                group.str(out, "uid", team);
                group.close(out);
            }
            if c.class_uid == 3005
                && let Some(role) = &target.role
            {
                doc.key(out, "privileges");
                out.push(b'[');
                json::push_str(out, role);
                out.push(b']');
            }
        }
    }

    let mut unmapped = doc.obj(out, "unmapped");
    // `created_at` is in `metadata.original_time` when it is a string.
    let skip: &[&str] = if ev.r.created_at.is_some() { &["created_at"] } else { &[] };
    ev.write_rest(&mut unmapped, out, skip, &[("tenant_name", ev.e.tenant)]);
    unmapped.close(out);

    if ev.original {
        doc.key(out, "raw_data");
        ev.write_original(out);
    }
    doc.close(out);
}
