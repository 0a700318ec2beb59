//! Output shapes for sinks: the record as Tines sent it (`raw`), Elastic
//! Common Schema (`ecs`) or OCSF (`ocsf`), each optionally pseudonymised.
//!
//! An [`Encoder`] is built once per sink and appends one JSON object per
//! event to a buffer. `raw` without pseudonymisation is a copy of the journal
//! bytes. The other paths read the record once into borrowed fields (no value
//! tree), keep `inputs`/`outputs` as the raw JSON they came as (they are
//! polymorphic in the wild and must never be forced into a schema), and write
//! the output directly. The catalog adds each operation's description,
//! [`Category`](crate::catalog::Category) and [`Verb`].
//!
//! - **ECS** follows Elastic's own Tines integration (`event.*`, `user.*`,
//!   `source.ip`, `user_agent.original`, `related.*`, everything else under
//!   `tines.audit_log.*`), with ECS's IAM categories for user and team
//!   management and `authentication` for logins.
//! - **OCSF** (schema [`OCSF_VERSION`]) is API Activity (6003) by default;
//!   logins are Authentication (3002); user lifecycle operations Account
//!   Change (3001), a user's team role User Access Management (3005) and team
//!   membership Group Management (3006), when the record names the user (and
//!   team) they act on. Without that target the event stays API Activity, so
//!   no event lacks a class's required attributes.

mod ecs;
pub(crate) mod json;
mod ocsf;
mod pseudo;
mod record;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::net::IpAddr;

use serde_json::Value;

use crate::catalog::{self, Classification, Operation, Verb};
use crate::journal::StoredEvent;
use json::Obj;
use pseudo::{Masked, View};
use record::{MAPPED, Record, Text};

pub use pseudo::{PSEUDONYM_PREFIX, PseudoField, PseudoMode, PseudonymizeConfig, Pseudonymizer};

/// The OCSF schema version the `ocsf` shape follows.
pub const OCSF_VERSION: &str = "1.8.0";

/// How a sink writes each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// The record exactly as Tines sent it.
    #[default]
    Raw,
    /// Elastic Common Schema.
    Ecs,
    /// Open Cybersecurity Schema Framework.
    Ocsf,
}

impl Shape {
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Raw => "raw",
            Shape::Ecs => "ecs",
            Shape::Ocsf => "ocsf",
        }
    }
}

/// Why an event could not be formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("journal event {seq} (audit log {id}) is not a usable audit record: {reason}")]
    Malformed { seq: i64, id: i64, reason: String },
}

/// Formats events for one sink.
#[derive(Debug, Clone)]
pub struct Encoder {
    shape: Shape,
    pseudo: Option<Pseudonymizer>,
    original: bool,
}

impl Default for Encoder {
    /// The raw record, untouched.
    fn default() -> Self {
        Encoder::new(Shape::Raw, None)
    }
}

impl Encoder {
    /// An encoder for `shape`, pseudonymising if asked. ECS and OCSF carry the
    /// record itself too (`event.original`, `raw_data`); see [`Encoder::with_original`].
    pub fn new(shape: Shape, pseudonymize: Option<Pseudonymizer>) -> Encoder {
        Encoder { shape, pseudo: pseudonymize, original: true }
    }

    /// Whether ECS `event.original` and OCSF `raw_data` carry the (pseudonymised)
    /// record; on by default, off halves the size of an event.
    pub fn with_original(mut self, keep: bool) -> Encoder {
        self.original = keep;
        self
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Appends one JSON object (no trailing newline) for the event to `out`.
    /// On error nothing is appended.
    pub fn encode_into(&self, e: &StoredEvent<'_>, out: &mut Vec<u8>) -> Result<(), FormatError> {
        if self.shape == Shape::Raw && self.pseudo.is_none() {
            out.extend_from_slice(e.raw.as_bytes());
            return Ok(());
        }
        let r = Record::parse(e.raw).map_err(|reason| FormatError::Malformed { seq: e.seq, id: e.id, reason })?;
        let view = self.pseudo.as_ref().map(|p| p.view(&r)).unwrap_or_default();
        let (op, class) = catalog::describe(&r.operation_name.value());
        let ev = Event { e, r: &r, view: &view, pseudo: self.pseudo.as_ref(), op, class, original: self.original };
        match self.shape {
            Shape::Raw => ev.write_raw(out),
            Shape::Ecs => ecs::write(&ev, out),
            Shape::Ocsf => ocsf::write(&ev, out),
        }
        Ok(())
    }
}

/// One event being encoded: the record, its pseudonymised view and its catalog entry.
pub(crate) struct Event<'x, 'a> {
    e: &'x StoredEvent<'a>,
    r: &'x Record<'a>,
    view: &'x View,
    pseudo: Option<&'x Pseudonymizer>,
    op: Option<&'static Operation>,
    class: Classification,
    original: bool,
}

/// A personal value as it is to be shown.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shown<'x> {
    Original(Text<'x>),
    Pseudonym(&'x str),
}

impl<'x> Shown<'x> {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Shown::Original(t) => out.extend_from_slice(t.literal().as_bytes()),
            Shown::Pseudonym(p) => json::push_str(out, p),
        }
    }

    fn value(self) -> Cow<'x, str> {
        match self {
            Shown::Original(t) => t.value(),
            Shown::Pseudonym(p) => Cow::Borrowed(p),
        }
    }
}

fn shown<'x>(text: Option<Text<'x>>, masked: &'x Option<Masked>) -> Option<Shown<'x>> {
    let text = text.filter(|t| !t.is_blank())?;
    match masked {
        None => Some(Shown::Original(text)),
        Some(Masked::Pseudonym(p)) => Some(Shown::Pseudonym(p)),
        Some(Masked::Dropped) => None,
    }
}

/// Where the request came from, as an ECS or OCSF field can hold it.
pub(crate) enum Source<'x> {
    /// A valid IP address, shown as it came.
    Ip(Text<'x>),
    /// A pseudonym, or something that is not an IP address: not for an `ip` field.
    Other(Shown<'x>),
}

impl<'x, 'a: 'x> Event<'x, 'a> {
    fn email(&self) -> Option<Shown<'x>> {
        shown(self.r.user_email, &self.view.email)
    }

    fn name(&self) -> Option<Shown<'x>> {
        shown(self.r.user_name, &self.view.name)
    }

    fn user_agent(&self) -> Option<Text<'a>> {
        self.r.user_agent.filter(|t| !t.is_blank())
    }

    fn source(&self) -> Option<Source<'x>> {
        match shown(self.r.request_ip, &self.view.ip)? {
            Shown::Original(t) if t.value().parse::<IpAddr>().is_ok() => Some(Source::Ip(t)),
            other => Some(Source::Other(other)),
        }
    }

    fn op_literal(&self) -> &'a str {
        self.r.operation_name.literal()
    }

    fn description(&self) -> Option<&'static str> {
        self.op.map(|o| o.description)
    }

    /// The raw shape: the record with pseudonymised fields replaced, field order kept.
    fn write_raw(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        for (i, (k, v)) in self.r.fields.iter().enumerate() {
            o.key_escaped(out, k);
            out.extend_from_slice(self.view.field_json(i, v).as_bytes());
        }
        o.close(out);
    }

    /// The record as a JSON string (pseudonymised when the sink pseudonymises).
    fn write_original(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        if self.pseudo.is_none() {
            json::push_escaped(out, self.e.raw);
        } else {
            let mut raw = Vec::with_capacity(self.e.raw.len() + 64);
            self.write_raw(&mut raw);
            json::push_escaped(out, std::str::from_utf8(&raw).unwrap_or_default());
        }
        out.push(b'"');
    }

    /// Writes the record's fields that no shape field holds (`inputs`,
    /// `outputs`, `updated_at`, anything Tines adds) into `o` as they came,
    /// then the `extra` strings and `operation: {description, category, verb}`,
    /// each unless the record has a field of that name (the record wins).
    fn write_rest(&self, o: &mut Obj, out: &mut Vec<u8>, skip: &[&str], extra: &[(&str, &str)]) {
        for (i, (k, v)) in self.r.fields.iter().enumerate() {
            let k = k.as_ref();
            if skip.contains(&k) || (MAPPED.contains(&k) && !self.r.unmappable(k, v)) {
                continue;
            }
            o.key_escaped(out, k);
            out.extend_from_slice(self.view.field_json(i, v).as_bytes());
        }
        let taken = |key: &str| self.r.fields.iter().any(|(k, _)| k == key && !skip.contains(&key));
        for (k, v) in extra {
            if !taken(k) {
                o.str(out, k, v);
            }
        }
        if taken("operation") {
            return;
        }
        let mut op = o.obj(out, "operation");
        if let Some(d) = self.description() {
            op.str(out, "description", d);
        }
        op.str(out, "category", self.class.category.as_str());
        op.str(out, "verb", self.class.verb.as_str());
        op.close(out);
    }

    fn target(&self) -> Target {
        Target::find(self.r.inputs.map(|i| i.get()), self.pseudo)
    }
}

/// The user (and team) an IAM operation acts on, as far as its `inputs` name them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Target {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub team_id: Option<String>,
    pub role: Option<String>,
}

impl Target {
    fn find(inputs: Option<&str>, pseudo: Option<&Pseudonymizer>) -> Target {
        let Some(Value::Object(top)) = inputs.and_then(|i| serde_json::from_str::<Value>(i).ok()) else {
            return Target::default();
        };
        let nested = match top.get("inputs") {
            Some(Value::Object(n)) => Some(n),
            _ => None,
        };
        let pick = |keys: &[&str], numbers: bool| {
            [Some(&top), nested].into_iter().flatten().find_map(|m| {
                keys.iter().find_map(|k| match m.get(*k)? {
                    Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
                    Value::Number(n) if numbers => Some(n.to_string()),
                    _ => None,
                })
            })
        };
        let email = pick(&["email", "userEmail", "user_email"], false).and_then(|email| {
            match pseudo.and_then(|p| p.mask(PseudoField::UserEmail, &email)) {
                None => Some(email),
                Some(Masked::Pseudonym(p)) => Some(p),
                Some(Masked::Dropped) => None,
            }
        });
        Target {
            user_id: pick(&["userId", "user_id", "targetUserId"], true),
            email,
            team_id: pick(&["teamId", "team_id"], true),
            role: pick(&["role", "roleName"], false),
        }
    }

    fn has_user(&self) -> bool {
        self.user_id.is_some() || self.email.is_some()
    }
}

/// Identity and access management operations, which ECS and OCSF both single out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Iam {
    Login,
    UserCreate,
    UserDelete,
    UserChange,
    MfaEnable,
    MfaDisable,
    RoleAssign,
    TeamCreate,
    TeamDelete,
    TeamChange,
    MemberAdd,
    MemberRemove,
    RoleCreate,
    RoleDelete,
    RoleChange,
}

impl Iam {
    pub(crate) fn of(operation: &str) -> Option<Iam> {
        Some(match operation {
            "Login" => Iam::Login,
            "UsersInvitation" | "SCIM/2.0/User/create" => Iam::UserCreate,
            "UserDeletion" | "SCIM/2.0/User/destroy" => Iam::UserDelete,
            "UserEdit" | "UserReinvitation" | "SCIM/2.0/User/replace" | "SCIM/2.0/User/update" => Iam::UserChange,
            "UserRecoveryCodesGeneration" => Iam::MfaEnable,
            "UserRecoveryCodesDeletion" => Iam::MfaDisable,
            "UserTeamRoleChange" => Iam::RoleAssign,
            "TeamCreation" => Iam::TeamCreate,
            "TeamDestruction" => Iam::TeamDelete,
            "TeamUpdate" => Iam::TeamChange,
            "TeamMembersAddition" => Iam::MemberAdd,
            "TeamMemberRemoval" => Iam::MemberRemove,
            "CustomTeamRoleCreation" => Iam::RoleCreate,
            "CustomTeamRoleDestruction" => Iam::RoleDelete,
            "CustomTeamRoleUpdate" => Iam::RoleChange,
            _ => return None,
        })
    }

    /// Whether the operation acts on another user (named in `inputs`).
    pub(crate) fn targets_user(self) -> bool {
        matches!(
            self,
            Iam::UserCreate
                | Iam::UserDelete
                | Iam::UserChange
                | Iam::MfaEnable
                | Iam::MfaDisable
                | Iam::RoleAssign
                | Iam::MemberAdd
                | Iam::MemberRemove
        )
    }

    /// Whether the operation acts on a team.
    pub(crate) fn targets_team(self) -> bool {
        matches!(
            self,
            Iam::TeamCreate | Iam::TeamDelete | Iam::TeamChange | Iam::MemberAdd | Iam::MemberRemove | Iam::RoleAssign
        )
    }
}

/// A verb's name with a capital, for OCSF's `activity_name` of "Other" activities.
fn verb_caption(v: Verb) -> &'static str {
    match v {
        Verb::Create => "Create",
        Verb::Read => "Read",
        Verb::Update => "Update",
        Verb::Delete => "Delete",
        Verb::Move => "Move",
        Verb::Archive => "Archive",
        Verb::Restore => "Restore",
        Verb::Run => "Run",
        Verb::Test => "Test",
        Verb::Login => "Login",
        Verb::Import => "Import",
        Verb::Export => "Export",
        Verb::Enable => "Enable",
        Verb::Disable => "Disable",
        Verb::Other => "Other",
    }
}
