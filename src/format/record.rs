//! One journal record, read without a value tree: every top-level field in
//! the order Tines sent it, as the key and the raw JSON text of its value,
//! plus typed views of the fields the shapes map. `inputs` and `outputs`
//! stay raw JSON whatever they hold.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON string literal taken from the record, quotes and escapes included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Text<'a>(&'a str);

impl<'a> Text<'a> {
    /// Wraps a JSON string literal (quotes included) taken from a parsed document.
    pub(crate) fn from_literal(s: &'a str) -> Text<'a> {
        debug_assert!(s.len() >= 2 && s.starts_with('"') && s.ends_with('"'));
        Text(s)
    }

    /// The literal itself, ready to copy into JSON output.
    pub(crate) fn literal(self) -> &'a str {
        self.0
    }

    /// The string's value (unescaped; borrowed unless it held escapes).
    pub(crate) fn value(self) -> Cow<'a, str> {
        let inner = &self.0[1..self.0.len() - 1];
        if !inner.contains('\\') {
            return Cow::Borrowed(inner);
        }
        // Valid by construction: the literal came out of a parsed document.
        serde_json::from_str::<String>(self.0).map_or(Cow::Borrowed(inner), Cow::Owned)
    }

    /// Whether the string is empty or only whitespace (Tines sends `user_name: " "`).
    pub(crate) fn is_blank(self) -> bool {
        self.value().trim().is_empty()
    }
}

/// A user id as it came: a JSON number or a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Id<'a> {
    Number(&'a str),
    Text(Text<'a>),
}

impl<'a> Id<'a> {
    /// The value as it came (a number, or a string literal).
    pub(crate) fn literal(self) -> &'a str {
        match self {
            Id::Number(n) => n,
            Id::Text(t) => t.literal(),
        }
    }

    /// Writes the id as a JSON string.
    pub(crate) fn write_as_string(self, out: &mut Vec<u8>) {
        match self {
            Id::Number(n) => {
                out.push(b'"');
                out.extend_from_slice(n.as_bytes());
                out.push(b'"');
            }
            Id::Text(t) => out.extend_from_slice(t.literal().as_bytes()),
        }
    }
}

/// The top-level fields the shapes map to fields of their own; everything
/// else is passed on under the shape's vendor object as it came.
pub(crate) const MAPPED: &[&str] =
    &["id", "operation_name", "user_id", "user_email", "user_name", "request_ip", "request_user_agent", "tenant_id"];

/// A parsed record.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    /// Every top-level field, in order.
    pub fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    pub operation_name: Text<'a>,
    pub created_at: Option<Text<'a>>,
    pub user_id: Option<Id<'a>>,
    pub user_email: Option<Text<'a>>,
    pub user_name: Option<Text<'a>>,
    pub request_ip: Option<Text<'a>>,
    pub user_agent: Option<Text<'a>>,
    pub tenant_id: Option<Id<'a>>,
    pub inputs: Option<&'a RawValue>,
}

fn as_text(v: &RawValue) -> Option<Text<'_>> {
    let s = v.get();
    (s.len() >= 2 && s.starts_with('"')).then_some(Text(s))
}

fn as_id(v: &RawValue) -> Option<Id<'_>> {
    let s = v.get();
    match s.as_bytes().first() {
        Some(b'"') => as_text(v).map(Id::Text),
        Some(b'-' | b'0'..=b'9') => Some(Id::Number(s)),
        _ => None,
    }
}

impl<'a> Record<'a> {
    /// Reads a record; an error says why it is not a usable audit record.
    pub(crate) fn parse(raw: &'a str) -> Result<Record<'a>, String> {
        let mut de = serde_json::Deserializer::from_str(raw);
        let fields = de.deserialize_map(FieldsVisitor).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        let mut r = Record {
            fields: Vec::new(),
            operation_name: Text("\"\""),
            created_at: None,
            user_id: None,
            user_email: None,
            user_name: None,
            request_ip: None,
            user_agent: None,
            tenant_id: None,
            inputs: None,
        };
        let mut op = None;
        // Later duplicates win, as in serde_json's own maps.
        for (k, v) in &fields {
            match k.as_ref() {
                "operation_name" => op = as_text(v),
                "created_at" => r.created_at = as_text(v),
                "user_id" => r.user_id = as_id(v),
                "user_email" => r.user_email = as_text(v),
                "user_name" => r.user_name = as_text(v),
                "request_ip" => r.request_ip = as_text(v),
                "request_user_agent" => r.user_agent = as_text(v),
                "tenant_id" => r.tenant_id = as_id(v),
                "inputs" => r.inputs = Some(*v),
                _ => {}
            }
        }
        r.operation_name = op.ok_or("operation_name is missing or not a string")?;
        r.fields = fields;
        Ok(r)
    }

    /// Whether a mapped field holds something the shape could not map (a
    /// value of an unexpected type): such a field is passed on as it came.
    pub(crate) fn unmappable(&self, key: &str, v: &RawValue) -> bool {
        let null = v.get() == "null";
        match key {
            "id" | "operation_name" => false,
            "user_id" | "tenant_id" => !null && as_id(v).is_none(),
            "user_email" | "user_name" | "request_ip" | "request_user_agent" => !null && as_text(v).is_none(),
            _ => true,
        }
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an audit-log record (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(14));
        while let Some(k) = map.next_key_seed(KeySeed)? {
            let v: &'de RawValue = map.next_value()?;
            fields.push((k, v));
        }
        Ok(fields)
    }
}

/// A key, borrowed from the record unless it held escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_in_order_and_types_the_mapped_ones() {
        let raw = r#"{"created_at":"2023-01-20T12:15:14Z","id":1,"inputs":null,"operation_name":"Login","user_id":"7642","user_name":" ","tenant_id":5044,"user_email":"j\u00f6rg@example.com","x\"y":[1]}"#;
        let r = Record::parse(raw).unwrap();
        let keys: Vec<_> = r.fields.iter().map(|f| f.0.as_ref()).collect();
        assert_eq!(
            keys,
            ["created_at", "id", "inputs", "operation_name", "user_id", "user_name", "tenant_id", "user_email", "x\"y"]
        );
        assert_eq!(r.operation_name.value(), "Login");
        assert!(r.user_name.unwrap().is_blank());
        assert_eq!(r.user_email.unwrap().value(), "jörg@example.com");
        assert_eq!(r.user_email.unwrap().literal(), r#""j\u00f6rg@example.com""#);
        assert_eq!(r.inputs.unwrap().get(), "null");
        let mut out = Vec::new();
        r.user_id.unwrap().write_as_string(&mut out);
        r.tenant_id.unwrap().write_as_string(&mut out);
        assert_eq!(out, br#""7642""5044""#);
    }

    #[test]
    fn malformed_records_are_errors() {
        for bad in ["", "[]", "null", "{", r#"{"operation_name":"Login"} x"#, r#"{"id":1}"#, r#"{"operation_name":7}"#]
        {
            assert!(Record::parse(bad).is_err(), "{bad:?}");
        }
    }
}
