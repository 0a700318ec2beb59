//! From audit records to changes of security-relevant state: one table row per
//! operation name (its kind of entry, what it does, and how its record is read).
//!
//! What Tines documents about these records is little: operation names, a few
//! observed `inputs` (`AuthenticationTokenCreation` carries `name` and
//! `isServiceToken`, `AuthenticationTokenDeletion` only `authenticationTokenId`,
//! `CustomCertificateAuthoritySet` `{}`, `SsoConfigurationSamlSet` `domainId` and
//! redacted certificate fields) and the admin API's field names (`ip`, `fqdn`,
//! `description`, `allowed_action_types`, `admin`, `tenant_permissions`). So each row
//! looks for a field under the names a record plausibly uses (the admin API's, their
//! camelCase forms, in `inputs.inputs` then `inputs`), and an [`Effect`] says what was
//! *not* found as `None`: the state built from it then says "unknown" rather than guess.

use serde_json::Value;

/// A kind of posture entry, as `posture annotate --kind` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Tenant owners and admins.
    Owner,
    /// Users holding tenant permissions (such as `AUDIT_LOG_READ`).
    Permission,
    IpRule,
    EgressRule,
    ApiKey,
    /// Tenant-wide settings: SSO, session timeout, login notice, custom CA, ...
    Setting,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::Owner, Kind::Permission, Kind::IpRule, Kind::EgressRule, Kind::ApiKey, Kind::Setting];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Owner => "owner",
            Kind::Permission => "permission",
            Kind::IpRule => "ip_rule",
            Kind::EgressRule => "egress_rule",
            Kind::ApiKey => "api_key",
            Kind::Setting => "setting",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The heading of this kind's entries.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Owner => "Tenant owners and admins",
            Kind::Permission => "Users with tenant permissions",
            Kind::IpRule => "IP access control rules in force",
            Kind::EgressRule => "Action egress control allowlist",
            Kind::ApiKey => "API keys created and not deleted",
            Kind::Setting => "Tenant-wide settings",
        }
    }

    /// Whether an entry of this kind without a note is flagged: the seed asks to "document
    /// why each IP access rule exists and who requested it" and to "keep a record of what
    /// destinations are on your egress control allowlist and why"; who holds rights and
    /// keys deserves the same. A setting is its own record.
    pub fn wants_note(self) -> bool {
        self != Kind::Setting
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The user a record is about, as far as it says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRef {
    pub id: Option<i64>,
    /// Lower case.
    pub email: Option<String>,
}

impl UserRef {
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.email.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Created,
    Changed,
    Deleted,
}

/// What a setting's record says of its new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingValue {
    /// Said by the operation itself (`SsoConfigurationSamlSet`: SAML).
    Stated(String),
    /// The record's `inputs` as sent, compact: Tines documents no field names for these.
    Carried(String),
    /// The record has no `inputs` to show.
    NotCarried,
}

/// One change a record makes. `None` fields are what the record did not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A user's tenant-wide rights as the record sets them (an edit logs the new settings).
    UserRights {
        user: UserRef,
        owner: Option<bool>,
        admin: Option<bool>,
        permissions: Option<Vec<String>>,
        how: &'static str,
    },
    /// A user deleted: whatever rights they held are gone.
    UserRemoved {
        user: UserRef,
    },
    /// An IP access control rule or an egress allowlist entry.
    Rule {
        kind: Kind,
        action: RuleAction,
        /// Tines's id of the rule.
        id: Option<String>,
        /// The IP or CIDR (IP rules), the FQDN or IP (egress rules).
        address: Option<String>,
        description: Option<String>,
        /// Egress rules: `http-request`, `send-email`.
        action_types: Option<Vec<String>>,
    },
    KeyCreated {
        id: Option<String>,
        name: Option<String>,
        service: Option<bool>,
        team: Option<String>,
    },
    KeyEdited {
        id: Option<String>,
        name: Option<String>,
    },
    KeyDeleted {
        id: Option<String>,
        name: Option<String>,
    },
    Setting {
        /// Stable key (`sso`, `session_timeout`, ...), the entry's id.
        key: String,
        label: &'static str,
        value: SettingValue,
    },
}

/// One row of the table.
pub struct Mapping {
    pub operation: &'static str,
    pub kind: Kind,
    /// What the operation does to the state, in words (docs and `--help`).
    pub what: &'static str,
    read: fn(&Value) -> Effect,
}

/// Where fields are looked for, in order: most operations nest their input as
/// `inputs.inputs`; some are flat (`UserCredentialDestruction`, `SsoConfigurationSamlSet`).
fn scopes(rec: &Value) -> [&Value; 2] {
    [&rec["inputs"]["inputs"], &rec["inputs"]]
}

fn find<'a>(rec: &'a Value, names: &[&str]) -> Option<&'a Value> {
    scopes(rec).into_iter().find_map(|s| names.iter().find_map(|n| s.get(n).filter(|v| !v.is_null())))
}

/// An id may also come back in `outputs` (seen as `{}`; never seen with an id, but a
/// creation that did say its id would be used).
fn find_id(rec: &Value, names: &[&str]) -> Option<String> {
    find(rec, names)
        .or_else(|| names.iter().find_map(|n| rec["outputs"].get(n).filter(|v| !v.is_null())))
        .and_then(text)
}

/// A scalar as text (numbers as written); empty and `REDACTED` are nothing.
fn text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s != "REDACTED").then_some(s)
}

fn text_of(rec: &Value, names: &[&str]) -> Option<String> {
    find(rec, names).and_then(text)
}

fn flag(rec: &Value, names: &[&str]) -> Option<bool> {
    match find(rec, names)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn list(rec: &Value, names: &[&str]) -> Option<Vec<String>> {
    match find(rec, names)? {
        Value::Array(a) => Some(a.iter().filter_map(text).collect()),
        _ => None,
    }
}

fn int(rec: &Value, names: &[&str]) -> Option<i64> {
    match find(rec, names)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

const USER_ID: &[&str] = &["userId", "user_id"];
const EMAIL: &[&str] = &["email", "userEmail", "user_email"];
const OWNER: &[&str] = &["isTenantOwner", "tenantOwner", "is_tenant_owner"];
const ADMIN: &[&str] = &["admin", "isAdmin"];
const PERMISSIONS: &[&str] = &["tenantPermissions", "tenant_permissions"];

fn email(rec: &Value) -> Option<String> {
    text_of(rec, EMAIL).filter(|e| e.contains('@')).map(|e| e.to_ascii_lowercase())
}

fn rights(rec: &Value, how: &'static str, user: UserRef) -> Effect {
    Effect::UserRights {
        user,
        owner: flag(rec, OWNER),
        admin: flag(rec, ADMIN),
        permissions: list(rec, PERMISSIONS),
        how,
    }
}

fn invited(rec: &Value) -> Effect {
    rights(rec, "invited", UserRef { id: int(rec, USER_ID), email: email(rec) })
}

fn edited(rec: &Value) -> Effect {
    rights(rec, "edited", UserRef { id: int(rec, USER_ID), email: email(rec) })
}

/// SCIM sends the user's `userName` (an e-mail address in practice) rather than `email`.
fn scim_user(rec: &Value) -> UserRef {
    let email =
        email(rec).or_else(|| text_of(rec, &["userName"]).filter(|e| e.contains('@')).map(|e| e.to_lowercase()));
    UserRef { id: int(rec, USER_ID).or_else(|| int(rec, &["id"])), email }
}

fn scim_provisioned(rec: &Value) -> Effect {
    rights(rec, "provisioned through SCIM", scim_user(rec))
}

fn user_deleted(rec: &Value) -> Effect {
    Effect::UserRemoved { user: UserRef { id: int(rec, USER_ID).or_else(|| int(rec, &["id"])), email: email(rec) } }
}

fn scim_destroyed(rec: &Value) -> Effect {
    Effect::UserRemoved { user: scim_user(rec) }
}

const IP_ADDRESS: &[&str] = &["ip", "cidr", "ipAddress", "ip_address", "address", "ipRange"];
const EGRESS_ADDRESS: &[&str] = &["fqdn", "ip", "host", "hostname", "domain", "address"];
const ACTION_TYPES: &[&str] = &["allowedActionTypes", "allowed_action_types", "actionTypes"];

fn rule(rec: &Value, kind: Kind, action: RuleAction) -> Effect {
    let (ids, address): (&[&str], &[&str]) = match kind {
        Kind::IpRule => (&["ipAccessControlRuleId", "ruleId", "id"], IP_ADDRESS),
        _ => (&["actionEgressControlRuleId", "egressControlRuleId", "ruleId", "id"], EGRESS_ADDRESS),
    };
    Effect::Rule {
        kind,
        action,
        id: find_id(rec, ids),
        address: text_of(rec, address).map(|a| normalise_address(&a)),
        description: find(rec, &["description"]).and_then(|d| d.as_str().map(str::to_string)),
        action_types: if kind == Kind::EgressRule { list(rec, ACTION_TYPES) } else { None },
    }
}

/// Addresses compare as the admin API would hold them: trimmed, host names lower case.
pub fn normalise_address(a: &str) -> String {
    a.trim().trim_end_matches('.').to_ascii_lowercase()
}

const TOKEN_ID: &[&str] = &["authenticationTokenId", "tokenId", "id"];

fn key_created(rec: &Value) -> Effect {
    Effect::KeyCreated {
        id: find_id(rec, TOKEN_ID),
        name: text_of(rec, &["name"]),
        service: flag(rec, &["isServiceToken"]),
        team: text_of(rec, &["teamId"]),
    }
}

fn key_edited(rec: &Value) -> Effect {
    Effect::KeyEdited { id: find_id(rec, TOKEN_ID), name: text_of(rec, &["name"]) }
}

fn key_deleted(rec: &Value) -> Effect {
    Effect::KeyDeleted { id: find_id(rec, TOKEN_ID), name: text_of(rec, &["name"]) }
}

/// The record's `inputs` as sent (the nested object where there is one), compact and cut
/// to a line; secret fields already read `REDACTED` (Tines writes that itself).
fn carried(rec: &Value) -> SettingValue {
    let v = match &rec["inputs"]["inputs"] {
        Value::Null => &rec["inputs"],
        inner => inner,
    };
    match v {
        Value::Null => SettingValue::NotCarried,
        Value::Object(m) if m.is_empty() => SettingValue::NotCarried,
        v => {
            let s = v.to_string();
            let cut: String = s.chars().take(160).collect();
            SettingValue::Carried(if cut.len() < s.len() { format!("{cut}…") } else { cut })
        }
    }
}

fn setting(key: &str, label: &'static str, value: SettingValue) -> Effect {
    Effect::Setting { key: key.to_string(), label, value }
}

fn stated(s: &str) -> SettingValue {
    SettingValue::Stated(s.to_string())
}

macro_rules! row {
    ($op:literal, $kind:ident, $what:literal, $read:expr) => {
        Mapping { operation: $op, kind: Kind::$kind, what: $what, read: $read }
    };
}

/// Every operation that changes posture state. Operations not here change none.
pub static TABLE: &[Mapping] = &[
    row!("UsersInvitation", Owner, "invites a user; with admin or tenant-owner set, grants those rights", invited),
    row!("UserReinvitation", Owner, "invites a user again; the rights it states are the user's", invited),
    row!("UserEdit", Owner, "sets a user's admin, tenant-owner and tenant-permission flags (the new values)", edited),
    row!(
        "SCIM/2.0/User/create",
        Owner,
        "provisions a user through SCIM; rights it states are granted",
        scim_provisioned
    ),
    row!("SCIM/2.0/User/replace", Owner, "replaces a user through SCIM; rights it states are set", scim_provisioned),
    row!("SCIM/2.0/User/update", Owner, "updates a user through SCIM; rights it states are set", scim_provisioned),
    row!("SCIM/2.0/User/destroy", Owner, "deprovisions a user: their rights end", scim_destroyed),
    row!("UserDeletion", Owner, "deletes a user: their rights end", user_deleted),
    row!("IPAccessControlRuleCreation", IpRule, "adds an IP access control rule", |r| rule(
        r,
        Kind::IpRule,
        RuleAction::Created
    )),
    row!("IPAccessControlRuleChange", IpRule, "changes an IP access control rule", |r| rule(
        r,
        Kind::IpRule,
        RuleAction::Changed
    )),
    row!("IPAccessControlRuleDeletion", IpRule, "removes an IP access control rule", |r| rule(
        r,
        Kind::IpRule,
        RuleAction::Deleted
    )),
    row!("ActionEgressControlRuleCreation", EgressRule, "adds an egress allowlist entry", |r| rule(
        r,
        Kind::EgressRule,
        RuleAction::Created
    )),
    row!("ActionEgressControlRuleChange", EgressRule, "changes an egress allowlist entry", |r| rule(
        r,
        Kind::EgressRule,
        RuleAction::Changed
    )),
    row!("ActionEgressControlRuleDeletion", EgressRule, "removes an egress allowlist entry", |r| rule(
        r,
        Kind::EgressRule,
        RuleAction::Deleted
    )),
    row!("AuthenticationTokenCreation", ApiKey, "creates an API key (service or not, by whom)", key_created),
    row!("AuthenticationTokenEdit", ApiKey, "edits an API key", key_edited),
    row!("AuthenticationTokenDeletion", ApiKey, "deletes an API key (the record names its id only)", key_deleted),
    row!("SsoConfigurationDefaultSet", Setting, "sets sign-in to Tines-powered", |_| setting(
        "sso",
        "SSO configuration",
        stated("Tines-powered (default)")
    )),
    row!("SsoConfigurationOidcSet", Setting, "sets sign-in to OIDC", |_| setting(
        "sso",
        "SSO configuration",
        stated("OIDC")
    )),
    row!("SsoConfigurationSamlSet", Setting, "sets sign-in to SAML", |r| {
        let url = text_of(r, &["targetUrl", "target_url"]);
        setting("sso", "SSO configuration", stated(&url.map_or("SAML".to_string(), |u| format!("SAML ({u})"))))
    }),
    row!("SsoConfigurationJitConfigurationSet", Setting, "sets SSO just-in-time provisioning", |r| setting(
        "sso_jit",
        "SSO just-in-time provisioning",
        carried(r)
    )),
    row!("SsoConfigurationPageGroupAttributeNameUpdate", Setting, "sets the SSO page group attribute", |r| {
        setting("sso_page_group_attribute", "SSO page group attribute name", carried(r))
    }),
    row!("TenantSessionTimeoutChange", Setting, "sets the tenant's session timeout", |r| setting(
        "session_timeout",
        "Session timeout",
        carried(r)
    )),
    row!("UserSessionExpiryChange", Setting, "sets user session expiry", |r| setting(
        "user_session_expiry",
        "User session expiry",
        carried(r)
    )),
    row!("LoginNoticeChange", Setting, "sets the login notice", |r| setting(
        "login_notice",
        "Login notice",
        carried(r)
    )),
    row!("CustomCertificateAuthoritySet", Setting, "sets a custom certificate authority", |_| setting(
        "custom_certificate_authority",
        "Custom certificate authority",
        stated("set")
    )),
    row!("CustomCertificateAuthorityCreation", Setting, "creates a custom certificate authority", |_| setting(
        "custom_certificate_authority",
        "Custom certificate authority",
        stated("created")
    )),
    row!("CustomCertificateAuthorityDeletion", Setting, "removes the custom certificate authority", |_| setting(
        "custom_certificate_authority",
        "Custom certificate authority",
        stated("removed")
    )),
    row!("TenantChangeControlSettingsUpdate", Setting, "sets change control", |r| setting(
        "change_control",
        "Change control settings",
        carried(r)
    )),
    row!("TenantConfigChange", Setting, "changes the tenant's config", |r| setting(
        "tenant_config",
        "Tenant config",
        carried(r)
    )),
    row!("TenantSettingsChange", Setting, "changes tenant settings", |r| setting(
        "tenant_settings",
        "Tenant settings",
        carried(r)
    )),
    row!("TenantFeatureFlagToggle", Setting, "turns a feature flag on or off", |r| {
        let key = text_of(r, &["flag", "featureFlag", "name"])
            .map_or("feature_flags".to_string(), |f| format!("feature_flag:{f}"));
        setting(&key, "Feature flag", carried(r))
    }),
    row!("TenantAiEnabledToggle", Setting, "turns AI features on or off", |r| setting(
        "ai_enabled",
        "AI features",
        match flag(r, &["enabled", "aiEnabled"]) {
            Some(true) => stated("enabled"),
            Some(false) => stated("disabled"),
            None => carried(r),
        }
    )),
    row!("TenantAiProviderChange", Setting, "changes the AI provider", |r| setting(
        "ai_provider",
        "AI provider",
        carried(r)
    )),
    row!("TenantAiProviderDeletion", Setting, "deletes an AI provider", |r| setting(
        "ai_provider",
        "AI provider",
        match carried(r) {
            SettingValue::Carried(c) => SettingValue::Carried(format!("deleted: {c}")),
            _ => stated("deleted"),
        }
    )),
    row!("TenantAiProviderRestoreDefault", Setting, "restores the default AI provider", |_| setting(
        "ai_provider",
        "AI provider",
        stated("default")
    )),
    row!("TenantAiDefaultProviderSelect", Setting, "selects the default AI provider", |r| setting(
        "ai_provider",
        "AI provider",
        carried(r)
    )),
    row!("AiCustomModelsChange", Setting, "changes custom AI models", |r| setting(
        "ai_models",
        "AI models",
        carried(r)
    )),
    row!("AiProviderModelChange", Setting, "changes the AI provider's model", |r| setting(
        "ai_models",
        "AI models",
        carried(r)
    )),
    row!("TenantLimitsChange", Setting, "changes the tenant's limits", |r| setting(
        "limits",
        "Tenant limits",
        carried(r)
    )),
    row!("UserImpersonationEnabled", Setting, "allows user impersonation", |r| impersonation(r, "enabled")),
    row!("UserImpersonationDisabled", Setting, "stops user impersonation", |r| impersonation(r, "disabled")),
];

/// Impersonation is tenant-wide unless the record names a user.
fn impersonation(rec: &Value, state: &str) -> Effect {
    match int(rec, USER_ID).map(|u| format!("user {u}")).or_else(|| email(rec)) {
        Some(who) => setting(&format!("user_impersonation:{who}"), "User impersonation", stated(state)),
        None => setting("user_impersonation", "User impersonation", stated(state)),
    }
}

/// The row of an operation.
pub fn mapping(operation: &str) -> Option<&'static Mapping> {
    TABLE.iter().find(|m| m.operation == operation)
}

/// Every operation name the table reads (what posture asks the journal for).
pub fn operations() -> Vec<String> {
    TABLE.iter().map(|m| m.operation.to_string()).collect()
}

/// What a record of `operation` changes (`None` for an operation that changes no posture).
pub fn effect(operation: &str, record: &Value) -> Option<Effect> {
    mapping(operation).map(|m| (m.read)(record))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn eff(op: &str, inputs: Value) -> Effect {
        effect(op, &json!({"operation_name": op, "inputs": inputs})).unwrap()
    }

    fn user(id: Option<i64>, email: Option<&str>) -> UserRef {
        UserRef { id, email: email.map(str::to_string) }
    }

    #[test]
    fn every_row_names_a_catalogued_operation_once() {
        let mut seen = std::collections::HashSet::new();
        for m in TABLE {
            assert!(crate::catalog::find(m.operation).is_some(), "{} is not in the catalog", m.operation);
            assert!(seen.insert(m.operation), "{} twice", m.operation);
        }
        // Everything seed 004 names for owners, rules, keys and the tenant-wide settings.
        for op in [
            "IPAccessControlRuleCreation",
            "ActionEgressControlRuleDeletion",
            "AuthenticationTokenDeletion",
            "SsoConfigurationSamlSet",
            "TenantSessionTimeoutChange",
            "LoginNoticeChange",
            "CustomCertificateAuthoritySet",
            "TenantChangeControlSettingsUpdate",
            "UserEdit",
        ] {
            assert!(mapping(op).is_some(), "{op}");
        }
        assert!(effect("ActionRun", &json!({})).is_none());
        assert_eq!(Kind::ALL.iter().map(|k| Kind::parse(k.as_str())).collect::<Vec<_>>(), Kind::ALL.map(Some));
    }

    /// Each row's operation is read by a test here: its name is quoted in this file
    /// beyond the table's row.
    #[test]
    fn every_row_is_read_by_a_test() {
        let source = include_str!("mapping.rs");
        for m in TABLE {
            let quoted = format!("\"{}\"", m.operation);
            assert!(source.matches(&quoted).count() >= 2, "no test reads a record of {}", m.operation);
        }
    }

    /// docs/posture.md lists what posture reads: every operation of the table is in it.
    #[test]
    fn the_docs_name_every_operation_of_the_table() {
        let docs = include_str!("../../docs/posture.md");
        for m in TABLE {
            assert!(docs.contains(m.operation), "docs/posture.md does not name {}", m.operation);
        }
    }

    #[test]
    fn users_invitation_grants_the_rights_it_states_to_the_invited_address() {
        assert_eq!(
            eff("UsersInvitation", json!({"inputs": {"email": "New.Hire@Acme.example", "admin": true}})),
            Effect::UserRights {
                user: user(None, Some("new.hire@acme.example")),
                owner: None,
                admin: Some(true),
                permissions: None,
                how: "invited"
            }
        );
        let Effect::UserRights { admin, .. } =
            eff("UserReinvitation", json!({"inputs": {"email": "a@b.c", "admin": false}}))
        else {
            panic!()
        };
        assert_eq!(admin, Some(false));
    }

    #[test]
    fn user_edit_sets_owner_admin_and_permissions_only_where_the_record_says() {
        let e = eff(
            "UserEdit",
            json!({"inputs": {"userId": 5200, "email": "ava@x.test", "admin": false, "isTenantOwner": true,
                              "tenantPermissions": ["AUDIT_LOG_READ"]}}),
        );
        assert_eq!(
            e,
            Effect::UserRights {
                user: user(Some(5200), Some("ava@x.test")),
                owner: Some(true),
                admin: Some(false),
                permissions: Some(vec!["AUDIT_LOG_READ".into()]),
                how: "edited"
            }
        );
        // A name change says nothing of rights: nothing changes.
        let Effect::UserRights { owner, admin, permissions, .. } =
            eff("UserEdit", json!({"inputs": {"userId": 5200, "firstName": "Ava"}}))
        else {
            panic!()
        };
        assert_eq!((owner, admin, permissions), (None, None, None));
    }

    #[test]
    fn scim_operations_provision_and_deprovision_by_user_name() {
        let Effect::UserRights { user: u, how, .. } =
            eff("SCIM/2.0/User/create", json!({"userName": "Sam@X.test", "active": true}))
        else {
            panic!()
        };
        assert_eq!((u, how), (user(None, Some("sam@x.test")), "provisioned through SCIM"));
        for op in ["SCIM/2.0/User/replace", "SCIM/2.0/User/update"] {
            assert!(matches!(eff(op, json!({"inputs": {"id": 9, "admin": true}})), Effect::UserRights { .. }));
        }
        assert_eq!(
            eff("SCIM/2.0/User/destroy", json!({"id": "77"})),
            Effect::UserRemoved { user: user(Some(77), None) }
        );
    }

    #[test]
    fn user_deletion_names_the_user_when_the_record_does() {
        assert_eq!(
            eff("UserDeletion", json!({"inputs": {"userId": 12}})),
            Effect::UserRemoved { user: user(Some(12), None) }
        );
        let Effect::UserRemoved { user: u } = eff("UserDeletion", json!({})) else { panic!() };
        assert!(u.is_empty(), "a deletion that names no one is unknown, not anyone");
    }

    #[test]
    fn ip_access_control_rules_are_read_from_the_admin_apis_field_names() {
        assert_eq!(
            eff("IPAccessControlRuleCreation", json!({"inputs": {"ip": " 203.0.113.0/24 ", "description": "VPN"}})),
            Effect::Rule {
                kind: Kind::IpRule,
                action: RuleAction::Created,
                id: None,
                address: Some("203.0.113.0/24".into()),
                description: Some("VPN".into()),
                action_types: None
            }
        );
        let Effect::Rule { id, address, action, .. } =
            eff("IPAccessControlRuleChange", json!({"inputs": {"id": 77, "description": "office"}}))
        else {
            panic!()
        };
        assert_eq!((id.as_deref(), address, action), (Some("77"), None, RuleAction::Changed));
        // The rule named only by an id, as the detection rule's example records it.
        let Effect::Rule { id, address, action, .. } =
            eff("IPAccessControlRuleDeletion", json!({"inputs": {"id": 77}}))
        else {
            panic!()
        };
        assert_eq!((id.as_deref(), address, action), (Some("77"), None, RuleAction::Deleted));
        let Effect::Rule { address, .. } = eff("IPAccessControlRuleCreation", json!({"cidr": "1.2.3.0/24"})) else {
            panic!()
        };
        assert_eq!(address.as_deref(), Some("1.2.3.0/24"));
    }

    #[test]
    fn egress_rules_take_an_fqdn_or_an_ip_and_the_action_types() {
        assert_eq!(
            eff(
                "ActionEgressControlRuleCreation",
                json!({"inputs": {"fqdn": "API.Example.com.", "description": "CRM", "allowedActionTypes": ["http-request", "send-email"]}})
            ),
            Effect::Rule {
                kind: Kind::EgressRule,
                action: RuleAction::Created,
                id: None,
                address: Some("api.example.com".into()),
                description: Some("CRM".into()),
                action_types: Some(vec!["http-request".into(), "send-email".into()])
            }
        );
        let Effect::Rule { address, .. } =
            eff("ActionEgressControlRuleChange", json!({"inputs": {"id": 4, "ip": "198.51.100.7"}}))
        else {
            panic!()
        };
        assert_eq!(address.as_deref(), Some("198.51.100.7"));
        let Effect::Rule { id, address, .. } = eff("ActionEgressControlRuleDeletion", json!({"inputs": {}})) else {
            panic!()
        };
        assert_eq!((id, address), (None, None));
    }

    #[test]
    fn api_keys_as_tines_records_them_name_and_service_flag_then_an_id_on_deletion() {
        // Elastic's pipeline test and Grove's fixture (reference §4).
        assert_eq!(
            eff("AuthenticationTokenCreation", json!({"inputs": {"isServiceToken": true, "name": "Elastic"}})),
            Effect::KeyCreated { id: None, name: Some("Elastic".into()), service: Some(true), team: None }
        );
        assert_eq!(
            eff("AuthenticationTokenDeletion", json!({"inputs": {"authenticationTokenId": 693}})),
            Effect::KeyDeleted { id: Some("693".into()), name: None }
        );
        assert_eq!(
            eff("AuthenticationTokenEdit", json!({"inputs": {"id": 693, "name": "SIEM"}})),
            Effect::KeyEdited { id: Some("693".into()), name: Some("SIEM".into()) }
        );
        // An id in the outputs would bind the key.
        let e = effect(
            "AuthenticationTokenCreation",
            &json!({"inputs": {"inputs": {"name": "x"}}, "outputs": {"authenticationTokenId": 9}}),
        );
        assert!(matches!(e, Some(Effect::KeyCreated { id: Some(i), .. }) if i == "9"));
    }

    fn value(op: &str, inputs: Value) -> (String, SettingValue) {
        match eff(op, inputs) {
            Effect::Setting { key, value, .. } => (key, value),
            e => panic!("{op}: {e:?}"),
        }
    }

    #[test]
    fn sso_operations_state_the_provider() {
        assert_eq!(value("SsoConfigurationDefaultSet", json!(null)), ("sso".into(), stated("Tines-powered (default)")));
        assert_eq!(value("SsoConfigurationOidcSet", json!({})), ("sso".into(), stated("OIDC")));
        // Panther's test record: every field but the domain redacted.
        let saml =
            json!({"domainId": 12, "fingerprint": "REDACTED", "idpCertificate": "REDACTED", "targetUrl": "REDACTED"});
        assert_eq!(value("SsoConfigurationSamlSet", saml), ("sso".into(), stated("SAML")));
        let saml = json!({"inputs": {"targetUrl": "https://idp.example/sso"}});
        assert_eq!(value("SsoConfigurationSamlSet", saml).1, stated("SAML (https://idp.example/sso)"));
        assert_eq!(
            value("SsoConfigurationJitConfigurationSet", json!({"inputs": {"enabled": true}})),
            ("sso_jit".into(), SettingValue::Carried("{\"enabled\":true}".into()))
        );
        assert_eq!(
            value("SsoConfigurationPageGroupAttributeNameUpdate", json!({"inputs": {"name": "groups"}})).0,
            "sso_page_group_attribute"
        );
    }

    #[test]
    fn session_and_login_notice_settings_carry_the_inputs_or_say_they_do_not() {
        assert_eq!(
            value("TenantSessionTimeoutChange", json!({"inputs": {"sessionTimeout": 720}})),
            ("session_timeout".into(), SettingValue::Carried("{\"sessionTimeout\":720}".into()))
        );
        assert_eq!(value("TenantSessionTimeoutChange", json!({})).1, SettingValue::NotCarried);
        assert_eq!(value("UserSessionExpiryChange", json!(null)).0, "user_session_expiry");
        let long = "x".repeat(400);
        let SettingValue::Carried(c) = value("LoginNoticeChange", json!({"inputs": {"notice": long}})).1 else {
            panic!()
        };
        assert!(c.chars().count() <= 161 && c.ends_with('…'), "{c}");
    }

    #[test]
    fn custom_certificate_authority_is_set_created_or_removed() {
        // Panther's test record: `inputs: {}`.
        assert_eq!(value("CustomCertificateAuthoritySet", json!({})).1, stated("set"));
        assert_eq!(value("CustomCertificateAuthorityCreation", json!({})).1, stated("created"));
        assert_eq!(
            value("CustomCertificateAuthorityDeletion", json!({})),
            ("custom_certificate_authority".into(), stated("removed"))
        );
    }

    #[test]
    fn tenant_settings_operations_each_have_their_key() {
        for (op, key) in [
            ("TenantChangeControlSettingsUpdate", "change_control"),
            ("TenantConfigChange", "tenant_config"),
            ("TenantSettingsChange", "tenant_settings"),
            ("TenantLimitsChange", "limits"),
            ("TenantAiProviderChange", "ai_provider"),
            ("TenantAiDefaultProviderSelect", "ai_provider"),
            ("AiCustomModelsChange", "ai_models"),
            ("AiProviderModelChange", "ai_models"),
            ("TenantFeatureFlagToggle", "feature_flags"),
        ] {
            assert_eq!(value(op, json!({"inputs": {"x": 1}})).0, key, "{op}");
        }
        assert_eq!(value("TenantFeatureFlagToggle", json!({"inputs": {"flag": "beta"}})).0, "feature_flag:beta");
        assert_eq!(value("TenantAiEnabledToggle", json!({"inputs": {"enabled": false}})).1, stated("disabled"));
        assert_eq!(value("TenantAiEnabledToggle", json!({})).1, SettingValue::NotCarried);
        assert_eq!(value("TenantAiProviderDeletion", json!({})).1, stated("deleted"));
        assert_eq!(value("TenantAiProviderRestoreDefault", json!({})).1, stated("default"));
    }

    #[test]
    fn impersonation_is_tenant_wide_unless_the_record_names_a_user() {
        assert_eq!(value("UserImpersonationEnabled", json!({})), ("user_impersonation".into(), stated("enabled")));
        assert_eq!(
            value("UserImpersonationDisabled", json!({"inputs": {"userId": 5}})),
            ("user_impersonation:user 5".into(), stated("disabled"))
        );
    }
}
