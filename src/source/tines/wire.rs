//! The audit-log API's wire format: one page of `{"audit_logs":[...],"meta":{...}}`.
//!
//! A page keeps its response body and remembers where each record sits in it,
//! so records are stored byte for byte as Tines sent them and a page of 500
//! costs a few allocations, not thousands. Only the indexed fields are read;
//! `inputs`/`outputs` are polymorphic in the wild and never given a schema.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;

use crate::journal::Record;
use crate::timeutil::parse_rfc3339;

/// Why a response body could not be read as a page.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("response is not an audit-log page: {0}")]
    NotAPage(String),
    #[error("record {index} of the page is unusable: {reason}")]
    BadRecord { index: usize, reason: String },
}

/// What `meta` says about the query. Every field is optional: older API
/// versions leave out `next_page_number`, and a tolerant client copes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub count: Option<u64>,
    pub pages: Option<u64>,
    pub next_page_number: Option<u64>,
}

#[derive(Debug, Clone)]
struct Parsed {
    id: i64,
    created_at: i64,
    user_id: Option<i64>,
    raw: Range<usize>,
    op: Range<usize>,
    email: Option<Range<usize>>,
    ip: Option<Range<usize>>,
}

/// One page of records, owning its body.
#[derive(Debug)]
pub struct Page {
    body: String,
    /// Unescaped field text that could not be borrowed from the body.
    extra: String,
    records: Vec<Parsed>,
    pub meta: Meta,
}

#[derive(Deserialize)]
struct WirePage<'a> {
    #[serde(borrow)]
    audit_logs: Vec<&'a RawValue>,
    #[serde(default)]
    meta: Option<WireMeta>,
}

#[derive(Deserialize)]
struct WireMeta {
    #[serde(default, deserialize_with = "lenient_u64")]
    count: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pages: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    next_page_number: Option<u64>,
}

#[derive(Deserialize)]
struct WireRecord<'a> {
    #[serde(deserialize_with = "lenient_i64")]
    id: Option<i64>,
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    #[serde(borrow)]
    operation_name: Cow<'a, str>,
    #[serde(default, deserialize_with = "lenient_i64")]
    user_id: Option<i64>,
    #[serde(default, borrow)]
    user_email: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    request_ip: Option<Cow<'a, str>>,
}

/// Accepts an integer, a string holding one, or null ("null" included).
struct LenientInt;

impl<'de> Visitor<'de> for LenientInt {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer, a numeric string or null")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v).map(Some).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.is_empty() || v == "null" {
            return Ok(None);
        }
        v.parse().map(Some).map_err(|_| E::custom(format!("{v:?} is not an integer")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(LenientInt)
    }
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(LenientInt)
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    // Meta values are tolerated even when odd: a strange `meta` must not stop collection.
    Ok(d.deserialize_any(LenientInt).ok().flatten().and_then(|v| u64::try_from(v).ok()))
}

fn span_of(body: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    if part.is_empty() {
        return None;
    }
    (start + part.len() <= body.len()).then(|| start..start + part.len())
}

/// Where `s` sits: inside the body when it was borrowed from it, else appended to `extra`.
fn place(body: &str, extra: &mut String, s: &str) -> Range<usize> {
    if let Some(r) = span_of(body, s) {
        return r;
    }
    // Escaped text was unescaped into an owned string: keep it past the body's end.
    let start = body.len() + extra.len();
    extra.push_str(s);
    start..start + s.len()
}

impl Page {
    /// Parses a response body.
    pub fn parse(body: String) -> Result<Page, WireError> {
        let mut extra = String::new();
        let (records, meta) = {
            let wire: WirePage<'_> = serde_json::from_str(&body).map_err(|e| WireError::NotAPage(e.to_string()))?;
            let mut records = Vec::with_capacity(wire.audit_logs.len());
            for (index, raw) in wire.audit_logs.iter().enumerate() {
                let bad = |reason: String| WireError::BadRecord { index, reason };
                let r: WireRecord<'_> = serde_json::from_str(raw.get()).map_err(|e| bad(e.to_string()))?;
                let id = r.id.ok_or_else(|| bad("no id".into()))?;
                let created_at = parse_rfc3339(&r.created_at)
                    .ok_or_else(|| bad(format!("created_at {:?} is not RFC 3339", r.created_at)))?;
                records.push(Parsed {
                    id,
                    created_at,
                    user_id: r.user_id,
                    raw: span_of(&body, raw.get()).ok_or_else(|| bad("record outside body".into()))?,
                    op: place(&body, &mut extra, &r.operation_name),
                    email: r.user_email.as_ref().map(|e| place(&body, &mut extra, e)),
                    ip: r.request_ip.as_ref().map(|i| place(&body, &mut extra, i)),
                });
            }
            let meta = wire
                .meta
                .map(|m| Meta { count: m.count, pages: m.pages, next_page_number: m.next_page_number })
                .unwrap_or_default();
            (records, meta)
        };
        Ok(Page { body, extra, records, meta })
    }

    fn text(&self, r: &Range<usize>) -> &str {
        if r.end <= self.body.len() {
            &self.body[r.clone()]
        } else {
            let b = self.body.len();
            &self.extra[r.start - b..r.end - b]
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes held by the page (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.body.capacity() + self.extra.capacity() + self.records.capacity() * size_of::<Parsed>()
    }

    /// The record at `i`.
    pub fn record(&self, i: usize) -> Record<'_> {
        let p = &self.records[i];
        Record {
            id: p.id,
            created_at: p.created_at,
            operation_name: self.text(&p.op),
            user_id: p.user_id,
            user_email: p.email.as_ref().map(|r| self.text(r)),
            request_ip: p.ip.as_ref().map(|r| self.text(r)),
            raw: &self.body[p.raw.clone()],
        }
    }

    /// `(created_at, id)` of every record, for ordering and completeness checks.
    pub fn keys(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.records.iter().map(|p| (p.created_at, p.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = r#"{"audit_logs":[
      {"created_at":"2024-11-25T10:35:55Z","id":41274135,"inputs":{"fieldId":1688864,"inputs":{"options":["Option 1","Option 2"],"content":"Jac O'All-Trades"}},"operation_name":"FormFieldUpdate","outputs":{},"request_ip":"92.19.2.1","request_user_agent":"Mozilla/5.0","tenant_id":1111,"updated_at":"2024-11-25T10:35:55Z","user_email":"j\u00f6rg@example.com","user_id":58468,"user_name":"J"},
      {"created_at":"2023-01-20T12:15:14Z","id":1488526,"inputs":null,"operation_name":"Login","request_ip":"216.160.83.56","request_user_agent":"x","tenant_id":5044,"updated_at":"2023-01-20T12:15:14Z","user_email":"a@b.c","user_id":"7642","user_name":" "}
    ],"meta":{"current_page":"https://t/api/v1/audit_logs?per_page=2&page=1","previous_page":null,"next_page":"null","per_page":2,"pages":1,"count":2}}"#;

    #[test]
    fn keeps_records_verbatim_and_reads_indexed_fields() {
        let page = Page::parse(REAL.to_string()).unwrap();
        assert_eq!(page.len(), 2);
        let a = page.record(0);
        assert_eq!(a.id, 41274135);
        assert_eq!(a.operation_name, "FormFieldUpdate");
        assert_eq!(a.user_email, Some("jörg@example.com"), "escaped text is unescaped");
        assert!(a.raw.starts_with(r#"{"created_at":"2024-11-25T10:35:55Z""#) && a.raw.ends_with(r#""user_name":"J"}"#));
        assert!(a.raw.contains(r#"j\u00f6rg"#), "raw keeps the original escapes");
        let b = page.record(1);
        assert_eq!((b.user_id, b.request_ip), (Some(7642), Some("216.160.83.56")));
        assert_eq!(page.meta, Meta { count: Some(2), pages: Some(1), next_page_number: None });
    }

    #[test]
    fn tolerates_missing_or_odd_meta() {
        let p = Page::parse(r#"{"audit_logs":[]}"#.into()).unwrap();
        assert_eq!(p.meta, Meta::default());
        let p = Page::parse(r#"{"audit_logs":[],"meta":{"count":"7","next_page_number":"null","pages":null}}"#.into())
            .unwrap();
        assert_eq!(p.meta, Meta { count: Some(7), pages: None, next_page_number: None });
    }

    #[test]
    fn truncated_or_foreign_bodies_are_errors() {
        let cut = &REAL[..REAL.len() / 2];
        assert!(matches!(Page::parse(cut.to_string()), Err(WireError::NotAPage(_))));
        assert!(matches!(Page::parse("<html>502</html>".into()), Err(WireError::NotAPage(_))));
        let no_id = r#"{"audit_logs":[{"created_at":"2024-01-01T00:00:00Z","operation_name":"Login"}]}"#;
        assert!(matches!(Page::parse(no_id.into()), Err(WireError::BadRecord { index: 0, .. })));
        let bad_time = r#"{"audit_logs":[{"id":1,"created_at":"yesterday","operation_name":"Login"}]}"#;
        assert!(matches!(Page::parse(bad_time.into()), Err(WireError::BadRecord { .. })));
    }
}
