//! The event as rules see it: the raw Tines record's fields under their own
//! names (nested `inputs.…` paths included) plus a few enrichments, all
//! documented in `docs/detection.md`. Only the top level of a record is
//! parsed up front; `inputs`, `outputs` and unknown fields are parsed the
//! first time a rule asks for them, so the usual rule (on `operation_name`)
//! costs one small borrowed parse per event.

use std::borrow::Cow;
use std::cell::OnceCell;

use rsigma_eval::event::{Event, EventValue, JsonEvent};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// Field names added to every event (besides the record's own).
pub mod names {
    pub const TENANT: &str = "tenant";
    pub const CATEGORY: &str = "operation_category";
    pub const VERB: &str = "operation_verb";
    pub const COUNTRY: &str = "source_country";
    pub const ASN: &str = "source_asn";
    pub const AS_ORG: &str = "source_as_org";
    pub const NEW_COUNTRY: &str = "source_country_new_for_user";
    pub const OBJECT_COUNT: &str = "object_count";
}

/// The top level of a Tines audit record, borrowed from its text where it can be.
#[derive(Debug, Default, Deserialize)]
pub struct Record<'a> {
    #[serde(borrow, default)]
    pub created_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub updated_at: Option<Cow<'a, str>>,
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(borrow, default)]
    pub operation_name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(borrow, default)]
    pub user_email: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub request_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub request_user_agent: Option<Cow<'a, str>>,
    #[serde(default)]
    pub tenant_id: Option<i64>,
    #[serde(borrow, default)]
    pub inputs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub outputs: Option<&'a RawValue>,
}

/// What the detector adds to a record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enrichment {
    pub category: &'static str,
    pub verb: &'static str,
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
    /// The user has been seen before, never from this country.
    pub new_country_for_user: bool,
    /// How many objects the operation acted on (the longest `…Ids` list in its inputs, else 1).
    pub object_count: i64,
}

/// One journal event as rules see it.
pub struct AuditEvent<'a> {
    pub tenant: &'a str,
    pub raw: &'a str,
    pub record: Record<'a>,
    pub enrich: Enrichment,
    inputs: OnceCell<Value>,
    outputs: OnceCell<Value>,
    whole: OnceCell<Value>,
}

/// Top-level fields a record may have, in the order Tines writes them, then the enrichments.
const TOP_LEVEL: &[&str] = &[
    "created_at",
    "id",
    "inputs",
    "operation_name",
    "outputs",
    "request_ip",
    "request_user_agent",
    "tenant_id",
    "updated_at",
    "user_email",
    "user_id",
    "user_name",
    names::TENANT,
    names::CATEGORY,
    names::VERB,
    names::COUNTRY,
    names::ASN,
    names::AS_ORG,
    names::NEW_COUNTRY,
    names::OBJECT_COUNT,
];

fn parse_raw(raw: Option<&RawValue>) -> Value {
    raw.and_then(|r| serde_json::from_str(r.get()).ok()).unwrap_or(Value::Null)
}

fn s<'v>(v: &'v Option<Cow<'_, str>>) -> Option<EventValue<'v>> {
    v.as_deref().map(|x| EventValue::Str(Cow::Borrowed(x)))
}

impl<'a> AuditEvent<'a> {
    /// Parses the top level of `raw`; `None` when it is not a JSON object.
    pub fn parse(tenant: &'a str, raw: &'a str) -> Option<AuditEvent<'a>> {
        let record: Record<'a> = serde_json::from_str(raw).ok()?;
        Some(AuditEvent {
            tenant,
            raw,
            record,
            enrich: Enrichment { object_count: 1, ..Enrichment::default() },
            inputs: OnceCell::new(),
            outputs: OnceCell::new(),
            whole: OnceCell::new(),
        })
    }

    pub fn operation_name(&self) -> &str {
        self.record.operation_name.as_deref().unwrap_or("")
    }

    pub fn inputs(&self) -> &Value {
        self.inputs.get_or_init(|| parse_raw(self.record.inputs))
    }

    fn outputs(&self) -> &Value {
        self.outputs.get_or_init(|| parse_raw(self.record.outputs))
    }

    fn whole(&self) -> &Value {
        self.whole.get_or_init(|| serde_json::from_str(self.raw).unwrap_or(Value::Null))
    }

    /// The longest list of ids (`credentialIds`, `actionIds`, …) in the inputs or
    /// their nested `inputs`, or 1: how many objects one operation acted on.
    pub fn count_objects(&self) -> i64 {
        let Some(raw) = self.record.inputs else { return 1 };
        if !raw.get().contains("Ids\"") {
            return 1;
        }
        let longest = |v: &Value| -> usize {
            v.as_object().map_or(0, |m| {
                m.iter()
                    .filter(|(k, _)| k.ends_with("Ids"))
                    .filter_map(|(_, v)| v.as_array())
                    .map(Vec::len)
                    .max()
                    .unwrap_or(0)
            })
        };
        let inputs = self.inputs();
        let n = longest(inputs).max(inputs.get("inputs").map_or(0, longest));
        if n == 0 { 1 } else { n as i64 }
    }

    /// Every documented field with its value, as a JSON object (for alerts and `to_json`).
    pub fn view(&self) -> Value {
        let r = &self.record;
        let e = &self.enrich;
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put("created_at", r.created_at.as_deref().map_or(Value::Null, |v| v.into()));
        put("id", r.id.map_or(Value::Null, Value::from));
        put("inputs", self.inputs().clone());
        put("operation_name", self.operation_name().into());
        if r.outputs.is_some() {
            put("outputs", self.outputs().clone());
        }
        put("request_ip", r.request_ip.as_deref().map_or(Value::Null, |v| v.into()));
        put("request_user_agent", r.request_user_agent.as_deref().map_or(Value::Null, |v| v.into()));
        put("tenant_id", r.tenant_id.map_or(Value::Null, Value::from));
        put("updated_at", r.updated_at.as_deref().map_or(Value::Null, |v| v.into()));
        put("user_email", r.user_email.as_deref().map_or(Value::Null, |v| v.into()));
        put("user_id", r.user_id.map_or(Value::Null, Value::from));
        put("user_name", r.user_name.as_deref().map_or(Value::Null, |v| v.into()));
        put(names::TENANT, self.tenant.into());
        put(names::CATEGORY, e.category.into());
        put(names::VERB, e.verb.into());
        put(names::COUNTRY, e.country.clone().map_or(Value::Null, Value::from));
        put(names::ASN, e.asn.map_or(Value::Null, Value::from));
        put(names::AS_ORG, e.as_org.clone().map_or(Value::Null, Value::from));
        put(names::NEW_COUNTRY, e.new_country_for_user.into());
        put(names::OBJECT_COUNT, e.object_count.into());
        Value::Object(m)
    }
}

/// Follows a dot path below `v`; crossing an array follows every element,
/// and several hits come back as an array (any-member semantics, as rsigma's
/// own JSON events do).
fn walk<'v>(v: &'v Value, path: &str, out: &mut Vec<EventValue<'v>>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| walk(i, path, out)),
        Value::Object(m) => {
            if let Some(hit) = m.get(path) {
                out.push(EventValue::from(hit));
                return;
            }
            let Some((head, rest)) = path.split_once('.') else { return };
            if let Some(next) = m.get(head) {
                walk(next, rest, out);
            }
        }
        _ => {}
    }
}

fn lookup<'v>(root: &'v Value, path: &str) -> Option<EventValue<'v>> {
    let mut hits = Vec::new();
    walk(root, path, &mut hits);
    match hits.len() {
        0 => None,
        1 => hits.pop(),
        _ => Some(EventValue::Array(hits)),
    }
}

fn nested<'v>(root: &'v Value, rest: Option<&str>) -> Option<EventValue<'v>> {
    match rest {
        None => Some(EventValue::from(root)),
        Some(path) => lookup(root, path),
    }
}

impl Event for AuditEvent<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        let r = &self.record;
        let e = &self.enrich;
        let (head, rest) = match path.split_once('.') {
            Some((h, t)) => (h, Some(t)),
            None => (path, None),
        };
        match (head, rest) {
            ("inputs", _) => r.inputs.and_then(|_| nested(self.inputs(), rest)),
            ("outputs", _) => r.outputs.and_then(|_| nested(self.outputs(), rest)),
            ("operation_name", None) => s(&r.operation_name),
            ("created_at", None) => s(&r.created_at),
            ("updated_at", None) => s(&r.updated_at),
            ("id", None) => r.id.map(EventValue::Int),
            ("user_id", None) => r.user_id.map(EventValue::Int),
            ("tenant_id", None) => r.tenant_id.map(EventValue::Int),
            ("user_email", None) => s(&r.user_email),
            ("user_name", None) => s(&r.user_name),
            ("request_ip", None) => s(&r.request_ip),
            ("request_user_agent", None) => s(&r.request_user_agent),
            (names::TENANT, None) => Some(EventValue::Str(Cow::Borrowed(self.tenant))),
            (names::CATEGORY, None) => Some(EventValue::Str(Cow::Borrowed(e.category))),
            (names::VERB, None) => Some(EventValue::Str(Cow::Borrowed(e.verb))),
            (names::COUNTRY, None) => e.country.as_deref().map(|c| EventValue::Str(Cow::Borrowed(c))),
            (names::ASN, None) => e.asn.map(|a| EventValue::Int(i64::from(a))),
            (names::AS_ORG, None) => e.as_org.as_deref().map(|c| EventValue::Str(Cow::Borrowed(c))),
            (names::NEW_COUNTRY, None) => Some(EventValue::Bool(e.new_country_for_user)),
            (names::OBJECT_COUNT, None) => Some(EventValue::Int(e.object_count)),
            // Anything else (a field newer than this build): look in the whole record.
            _ => lookup(self.whole(), path),
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        let mut found = false;
        self.visit_string_values(&mut |v| found = found || pred(v));
        found
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        self.visit_string_values(&mut |v| out.push(Cow::Owned(v.to_string())));
        out
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        JsonEvent::borrow(self.whole()).visit_string_values(visit);
        for v in [self.tenant, self.enrich.category, self.enrich.verb] {
            visit(v);
        }
        for v in [&self.enrich.country, &self.enrich.as_org].into_iter().flatten() {
            visit(v);
        }
    }

    fn to_json(&self) -> Value {
        self.view()
    }

    fn top_level_keys(&self) -> Option<Vec<Cow<'_, str>>> {
        Some(TOP_LEVEL.iter().map(|k| Cow::Borrowed(*k)).collect())
    }

    fn visit_top_level_keys(&self, visit: &mut dyn FnMut(&str)) -> bool {
        for k in TOP_LEVEL {
            visit(k);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REC: &str = r#"{"created_at":"2024-11-25T10:35:55Z","id":41274135,"inputs":{"fieldId":7,"inputs":{"credentialIds":[1,2,3],"name":"Caf\u00e9 \"x\""}},"operation_name":"CredentialBulkDestruction","request_ip":"92.19.2.1","request_user_agent":"curl/8","tenant_id":1111,"updated_at":"2024-11-25T10:35:55Z","user_email":"a@b.c","user_id":58468,"user_name":"Seán O'Brien","future_field":{"x":"y"}}"#;

    #[test]
    fn fields_resolve_from_the_record_its_nested_inputs_and_enrichments() {
        let mut ev = AuditEvent::parse("acme", REC).unwrap();
        ev.enrich.country = Some("IE".into());
        ev.enrich.category = "credential";
        assert_eq!(ev.get_field("operation_name"), Some(EventValue::Str("CredentialBulkDestruction".into())));
        assert_eq!(ev.get_field("user_id"), Some(EventValue::Int(58468)));
        assert_eq!(ev.get_field("inputs.fieldId"), Some(EventValue::Int(7)));
        assert_eq!(ev.get_field("inputs.inputs.name"), Some(EventValue::Str("Café \"x\"".into())));
        assert_eq!(ev.get_field("inputs.inputs.missing"), None);
        assert_eq!(ev.get_field("future_field.x"), Some(EventValue::Str("y".into())));
        assert_eq!(ev.get_field("source_country"), Some(EventValue::Str("IE".into())));
        assert_eq!(ev.get_field("operation_category"), Some(EventValue::Str("credential".into())));
        assert_eq!(ev.get_field("tenant"), Some(EventValue::Str("acme".into())));
        assert_eq!(ev.count_objects(), 3);
        assert!(ev.any_string_value(&|v| v == "Seán O'Brien"));
        let view = ev.view();
        assert_eq!(view["inputs"]["inputs"]["credentialIds"][2], 3);
        assert_eq!(view["source_country"], "IE");
    }

    #[test]
    fn null_and_flat_inputs_and_missing_fields_are_absent_not_errors() {
        let login =
            r#"{"created_at":"2024-01-01T00:00:00Z","id":1,"inputs":null,"operation_name":"Login","user_id":null}"#;
        let ev = AuditEvent::parse("t", login).unwrap();
        assert_eq!(ev.get_field("inputs.inputs.x"), None);
        assert_eq!(ev.get_field("user_id"), None);
        assert_eq!(ev.get_field("request_ip"), None);
        assert_eq!(ev.count_objects(), 1);
        let flat = r#"{"id":2,"inputs":{"credentialId":3013},"operation_name":"UserCredentialDestruction"}"#;
        let ev = AuditEvent::parse("t", flat).unwrap();
        assert_eq!(ev.get_field("inputs.credentialId"), Some(EventValue::Int(3013)));
        assert!(AuditEvent::parse("t", "[1,2]").is_none());
    }
}
