//! What the tenant holds now, read from its admin API with the tenant's key (through the
//! collector's client, so the requests share the key's pacer and retries):
//! `GET /api/v1/admin/users?filter=TENANT_OWNER`, `GET /api/v1/admin/ip_access_control_rules`
//! and `GET /api/v1/admin/action_egress_control_rules`, each paged with `meta`.
//!
//! A key that may not read one of them (401, 403), or a tenant without the feature (404: IP
//! access control exists only on dedicated cloud tenants), is a note on that area, never a
//! failure of the command.

use serde_json::Value;

use crate::source::tines::client::{FetchError, TinesClient};

/// One area of the tenant as read, or why it was not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fetched<T> {
    Got(T),
    NotChecked(String),
}

/// A tenant owner as the admin API lists them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LiveUser {
    pub id: i64,
    pub email: String,
    pub admin: bool,
    pub permissions: Vec<String>,
}

/// An IP access control rule or an egress allowlist entry as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LiveRule {
    pub id: String,
    /// `ip` (IP rules), `fqdn` or `ip` (egress rules).
    pub address: String,
    pub description: String,
    pub action_types: Vec<String>,
    pub created_at: Option<String>,
}

/// The tenant's state now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Live {
    pub fetched_at: i64,
    pub owners: Fetched<Vec<LiveUser>>,
    pub ip_rules: Fetched<Vec<LiveRule>>,
    pub egress_rules: Fetched<Vec<LiveRule>>,
}

/// Items per page asked for (the documented maximum).
const PER_PAGE: u32 = 500;
/// Pages read at most per list: 50,000 rules or owners is beyond any tenant.
const MAX_PAGES: u64 = 100;

/// Reads the three lists.
pub async fn fetch(client: &TinesClient) -> Live {
    let owners = list(client, "api/v1/admin/users", "admin/users", &[("filter", "TENANT_OWNER")], "the users list")
        .await
        .map(|items| items.iter().filter_map(user).collect());
    let ip = list(
        client,
        "api/v1/admin/ip_access_control_rules",
        "admin/ip_access_control_rules",
        &[],
        "IP access control rules",
    )
    .await
    .map(|items| items.iter().filter_map(|v| rule(v, &["ip"])).collect());
    let egress = list(
        client,
        "api/v1/admin/action_egress_control_rules",
        "admin/action_egress_control_rules",
        &[],
        "action egress control rules",
    )
    .await
    .map(|items| items.iter().filter_map(|v| rule(v, &["fqdn", "ip"])).collect());
    Live { fetched_at: crate::timeutil::now_secs(), owners, ip_rules: ip, egress_rules: egress }
}

impl<T> Fetched<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Fetched<U> {
        match self {
            Fetched::Got(t) => Fetched::Got(f(t)),
            Fetched::NotChecked(w) => Fetched::NotChecked(w),
        }
    }
}

fn user(v: &Value) -> Option<LiveUser> {
    Some(LiveUser {
        id: v["id"].as_i64()?,
        email: v["email"].as_str()?.to_string(),
        admin: v["admin"].as_bool().unwrap_or(false),
        permissions: strings(&v["tenant_permissions"]),
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn rule(v: &Value, address: &[&str]) -> Option<LiveRule> {
    let id = match &v["id"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    Some(LiveRule {
        id,
        address: address.iter().find_map(|k| v[*k].as_str().filter(|s| !s.is_empty()))?.to_string(),
        description: v["description"].as_str().unwrap_or("").to_string(),
        action_types: strings(&v["allowed_action_types"]),
        created_at: v["created_at"].as_str().map(str::to_string),
    })
}

/// Every item of a paged list: pages until one comes back short or `meta` names no next page.
async fn list(client: &TinesClient, path: &str, key: &str, extra: &[(&str, &str)], what: &str) -> Fetched<Vec<Value>> {
    let mut items = Vec::new();
    for page in 1..=MAX_PAGES {
        let mut q: Vec<(&str, String)> = extra.iter().map(|(k, v)| (*k, v.to_string())).collect();
        q.push(("per_page", PER_PAGE.to_string()));
        q.push(("page", page.to_string()));
        let body = match client.fetch_json(path, &q).await {
            Ok(b) => b,
            Err(e) => return Fetched::NotChecked(not_checked(&e, path, what)),
        };
        let Some(list) = body.get(key).and_then(Value::as_array) else {
            return Fetched::NotChecked(format!(
                "not checked: the answer to GET /{path} has no {key:?} list (an API this build does not know)"
            ));
        };
        let n = list.len();
        items.extend(list.iter().cloned());
        let more = match body["meta"].get("next_page_number") {
            Some(Value::Number(_)) => true,
            Some(Value::Null) => false,
            // Older answers omit it: a full page means there may be more.
            _ => n as u32 >= PER_PAGE,
        };
        if !more || n == 0 {
            return Fetched::Got(items);
        }
    }
    Fetched::NotChecked(format!("not checked: {what} ran past {MAX_PAGES} pages"))
}

/// The note for an area that could not be read: what happened, what it means, what to do.
fn not_checked(e: &FetchError, path: &str, what: &str) -> String {
    match e {
        FetchError::Unauthorized { .. } => {
            format!("not checked: the API key was refused (401) reading {what}; it is invalid, expired or revoked")
        }
        FetchError::Forbidden { .. } => format!(
            "not checked: the API key may not read {what} (403 on GET /{path}); a tenant owner's key (or a user with tenant admin rights) can"
        ),
        FetchError::NotFound { .. } if path.contains("ip_access_control") => {
            "not checked: this tenant has no IP access control API (404); it exists only on dedicated cloud tenants"
                .into()
        }
        FetchError::NotFound { .. } => format!("not checked: GET /{path} is not on this tenant (404)"),
        other => format!("not checked: reading {what} failed: {}", crate::secret::redact(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rules_and_users_are_read_from_the_documented_fields() {
        let r = rule(
            &json!({"id": 7, "fqdn": "api.example.com", "description": "CRM", "allowed_action_types": ["http-request"], "created_at": "2024-01-01T00:00:00Z"}),
            &["fqdn", "ip"],
        )
        .unwrap();
        assert_eq!((r.id.as_str(), r.address.as_str(), r.action_types.len()), ("7", "api.example.com", 1));
        let r = rule(&json!({"id": 8, "fqdn": null, "ip": "198.51.100.1"}), &["fqdn", "ip"]).unwrap();
        assert_eq!(r.address, "198.51.100.1");
        assert!(rule(&json!({"id": 9}), &["ip"]).is_none(), "a rule with no address is not a rule");
        let u =
            user(&json!({"id": 5, "email": "a@b.c", "admin": true, "tenant_permissions": ["AUDIT_LOG_READ"]})).unwrap();
        assert_eq!(
            u,
            LiveUser { id: 5, email: "a@b.c".into(), admin: true, permissions: vec!["AUDIT_LOG_READ".into()] }
        );
    }

    #[test]
    fn a_refused_area_is_a_note_saying_what_to_do() {
        let f = FetchError::Forbidden { tenant: "t".into() };
        let n = not_checked(&f, "api/v1/admin/users", "the users list");
        assert!(n.contains("403") && n.contains("tenant owner"), "{n}");
        let n = not_checked(&FetchError::NotFound { url: "u".into() }, "api/v1/admin/ip_access_control_rules", "x");
        assert!(n.contains("dedicated cloud"), "{n}");
        let n = not_checked(&FetchError::Unauthorized { tenant: "t".into() }, "api/v1/admin/users", "the users list");
        assert!(n.starts_with("not checked") && n.contains("401") && n.contains("revoked"), "{n}");
    }
}
