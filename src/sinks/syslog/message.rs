//! Building syslog messages: RFC 5424 headers and structured data, and CEF
//! bodies, with each format's escaping rules. Pure functions over bytes.

use std::borrow::Cow;
use std::io::Write;

use serde::Deserialize;

use crate::journal::StoredEvent;
use crate::timeutil::write_rfc3339;

/// Fields of a record that CEF and the header need; everything else stays in the body.
#[derive(Debug, Default, Deserialize)]
pub struct HeaderFields<'a> {
    #[serde(borrow, default)]
    pub operation_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user_email: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user_name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub user_id: Option<serde_json::Value>,
    #[serde(borrow, default)]
    pub request_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub request_user_agent: Option<Cow<'a, str>>,
    #[serde(default)]
    pub tenant_id: Option<serde_json::Value>,
    #[serde(borrow, default)]
    pub inputs: Option<&'a serde_json::value::RawValue>,
}

/// Appends `s` keeping only printable US-ASCII (33..=126), at most `max` bytes; `-` when empty.
pub fn push_header_field(out: &mut Vec<u8>, s: &str, max: usize) {
    let start = out.len();
    out.extend(s.bytes().filter(|b| (33..=126).contains(b)).take(max));
    if out.len() == start {
        out.push(b'-');
    }
}

/// Appends an SD PARAM-VALUE with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
pub fn push_sd_value(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// The RFC 5424 header and structured data, up to and including the space before MSG.
pub struct Header<'a> {
    pub facility: u8,
    pub severity: u8,
    pub hostname: &'a str,
    pub app_name: &'a str,
}

impl Header<'_> {
    pub fn write(&self, e: &StoredEvent<'_>, operation: &str, out: &mut Vec<u8>) {
        let pri = u16::from(self.facility) * 8 + u16::from(self.severity);
        let _ = write!(out, "<{pri}>1 ");
        let mut ts = String::with_capacity(20);
        write_rfc3339(&mut ts, e.created_at);
        out.extend_from_slice(ts.as_bytes());
        out.push(b' ');
        push_header_field(out, self.hostname, 255);
        out.push(b' ');
        push_header_field(out, self.app_name, 48);
        out.extend_from_slice(b" - ");
        push_header_field(out, operation, 32);
        // 32473 is the enterprise number RFC 5612 reserves for documentation and examples.
        out.extend_from_slice(b" [tines@32473 tenant=\"");
        push_sd_value(out, e.tenant);
        let _ = write!(out, "\" id=\"{}\" seq=\"{}\"] ", e.id, e.seq);
    }
}

/// Escapes a CEF header field: `\` and `|`.
pub fn push_cef_header(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' | b'|' => out.extend_from_slice(&[b'\\', b]),
            b'\r' | b'\n' => out.push(b' '),
            _ => out.push(b),
        }
    }
}

/// Escapes a CEF extension value: `\`, `=`, and line breaks as `\n` / `\r`.
pub fn push_cef_value(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'=' => out.extend_from_slice(b"\\="),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

fn value_text(v: &serde_json::Value) -> Cow<'_, str> {
    match v {
        serde_json::Value::String(s) => Cow::Borrowed(s),
        serde_json::Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

/// Appends a CEF:0 message for the event.
pub fn write_cef(e: &StoredEvent<'_>, f: &HeaderFields<'_>, severity: u8, out: &mut Vec<u8>) {
    let op = f.operation_name.as_deref().unwrap_or("Unknown");
    let name = crate::catalog::find(op).map_or(op, |o| o.description);
    out.extend_from_slice(b"CEF:0|Tines|Tines|1.0|");
    push_cef_header(out, op);
    out.push(b'|');
    push_cef_header(out, name);
    let _ = write!(out, "|{}|rt={} externalId={}", severity.min(10), e.created_at * 1000, e.id);
    let mut ext = |key: &str, value: &str| {
        if value.is_empty() {
            return;
        }
        out.push(b' ');
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        push_cef_value(out, value);
    };
    ext("act", op);
    ext("suser", f.user_email.as_deref().unwrap_or(""));
    ext("suid", &f.user_id.as_ref().map(value_text).unwrap_or_default());
    ext("sntdom", f.user_name.as_deref().unwrap_or("").trim());
    ext("src", f.request_ip.as_deref().unwrap_or(""));
    ext("requestClientApplication", f.request_user_agent.as_deref().unwrap_or(""));
    ext("cs1Label", "tenant");
    ext("cs1", e.tenant);
    ext("cs2Label", "tines_tenant_id");
    ext("cs2", &f.tenant_id.as_ref().map(value_text).unwrap_or_default());
    ext("cs3Label", "inputs");
    ext("cs3", f.inputs.map_or("", |r| r.get()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(raw: &str) -> StoredEvent<'_> {
        StoredEvent { seq: 7, tenant: "acme]\"x", id: 41274135, created_at: 1_732_530_955, raw }
    }

    #[test]
    fn rfc5424_header_escapes_structured_data_and_limits_fields() {
        let mut out = Vec::new();
        let h = Header { facility: 13, severity: 5, hostname: "collector 01", app_name: "tines-audit" };
        h.write(&ev("{}"), "StoryItemsCreationWithAVeryLongNameIndeed", &mut out);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "<109>1 2024-11-25T10:35:55Z collector01 tines-audit - StoryItemsCreationWithAVeryLongN \
             [tines@32473 tenant=\"acme\\]\\\"x\" id=\"41274135\" seq=\"7\"] "
        );
    }

    #[test]
    fn cef_escapes_headers_and_extension_values() {
        let raw = r#"{"operation_name":"Login","user_email":"a=b\\c@x.io","user_id":58468,"user_name":"J|K","request_ip":"92.19.2.1","request_user_agent":"UA\nnext","tenant_id":1111,"inputs":{"k":"v=1"}}"#;
        let f: HeaderFields<'_> = serde_json::from_str(raw).unwrap();
        let mut out = Vec::new();
        write_cef(&ev(raw), &f, 3, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("CEF:0|Tines|Tines|1.0|Login|A user logged in|3|rt=1732530955000 externalId=41274135"),
            "{s}"
        );
        assert!(s.contains(r"suser=a\=b\\c@x.io"), "{s}");
        assert!(s.contains("suid=58468"), "{s}");
        assert!(s.contains(r"requestClientApplication=UA\nnext"), "{s}");
        assert!(s.contains(r#"cs3={"k":"v\=1"}"#), "{s}");
        assert!(!s.contains('\n'));
        let mut h = Vec::new();
        push_cef_header(&mut h, r"a|b\c");
        assert_eq!(h, br"a\|b\\c");
    }
}
