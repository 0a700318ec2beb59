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

use crate::journal::{Quarantined, Record};
use crate::timeutil::parse_rfc3339;

/// Why a response body could not be read as a page.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("response is not an audit-log page: {0}")]
    NotAPage(String),
}

/// A record of a page that cannot be stored as an event (no `id`, no usable
/// `created_at`, not an object): kept byte for byte for the quarantine.
#[derive(Debug, Clone)]
struct Reject {
    raw: Range<usize>,
    reason: String,
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
    rejects: Vec<Reject>,
    /// The first record as sent, to notice a page served again under another number.
    first: Option<Range<usize>>,
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
    #[serde(default, deserialize_with = "lenient_i64")]
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
        let (records, meta, rejects, first) = {
            let wire: WirePage<'_> = serde_json::from_str(&body).map_err(|e| WireError::NotAPage(e.to_string()))?;
            let mut records = Vec::with_capacity(wire.audit_logs.len());
            let mut rejects = Vec::new();
            let mut first = None;
            for raw in &wire.audit_logs {
                // A `RawValue` borrowed from the body always lies inside it.
                let Some(span) = span_of(&body, raw.get()) else {
                    return Err(WireError::NotAPage("a record lies outside the response body".into()));
                };
                first.get_or_insert(span.clone());
                // One odd record must not hold up the tenant: it goes to the quarantine instead.
                let r: WireRecord<'_> = match serde_json::from_str(raw.get()) {
                    Ok(r) => r,
                    Err(e) => {
                        rejects.push(Reject { raw: span, reason: format!("not an audit-log record: {e}") });
                        continue;
                    }
                };
                let Some(id) = r.id else {
                    rejects.push(Reject { raw: span, reason: "the record has no id".into() });
                    continue;
                };
                let Some(created_at) = parse_rfc3339(&r.created_at) else {
                    let reason = format!("created_at {:?} is not an RFC 3339 time", r.created_at);
                    rejects.push(Reject { raw: span, reason });
                    continue;
                };
                records.push(Parsed {
                    id,
                    created_at,
                    user_id: r.user_id,
                    raw: span,
                    op: place(&body, &mut extra, &r.operation_name),
                    email: r.user_email.as_ref().map(|e| place(&body, &mut extra, e)),
                    ip: r.request_ip.as_ref().map(|i| place(&body, &mut extra, i)),
                });
            }
            let meta = wire
                .meta
                .map(|m| Meta { count: m.count, pages: m.pages, next_page_number: m.next_page_number })
                .unwrap_or_default();
            (records, meta, rejects, first)
        };
        Ok(Page { body, extra, records, rejects, first, meta })
    }

    fn text(&self, r: &Range<usize>) -> &str {
        if r.end <= self.body.len() {
            &self.body[r.clone()]
        } else {
            let b = self.body.len();
            &self.extra[r.start - b..r.end - b]
        }
    }

    /// Records that can be stored as events.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record the API sent, quarantined ones included: what says whether a page was full.
    pub fn sent(&self) -> usize {
        self.records.len() + self.rejects.len()
    }

    /// The first record exactly as sent: two pages that start with the same
    /// record are the same page (the API answers page 1 to a page it cannot use).
    pub fn first_record(&self) -> Option<&str> {
        self.first.as_ref().map(|r| &self.body[r.clone()])
    }

    /// The records that cannot be stored as events, for the quarantine.
    pub fn rejected(&self) -> impl Iterator<Item = Quarantined<'_>> + '_ {
        self.rejects.iter().map(|r| Quarantined { raw: &self.body[r.raw.clone()], reason: &r.reason })
    }

    /// Bytes held by the page (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.body.capacity()
            + self.extra.capacity()
            + self.records.capacity() * size_of::<Parsed>()
            + self.rejects.iter().map(|r| size_of::<Reject>() + r.reason.capacity()).sum::<usize>()
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
    }

    #[test]
    fn a_record_without_id_blocked_the_tenant_forever() {
        // It used to fail the whole page, retried as transient on every sync.
        let body = r#"{"audit_logs":[
          {"created_at":"2024-01-01T00:00:02Z","id":2,"operation_name":"Login"},
          {"created_at":"2024-01-01T00:00:01Z","operation_name":"Login"},
          {"id":3,"created_at":"yesterday","operation_name":"Login"},
          17
        ],"meta":{"count":4}}"#;
        let p = Page::parse(body.into()).unwrap();
        assert_eq!((p.len(), p.sent()), (1, 4));
        let rejected: Vec<_> = p.rejected().collect();
        assert_eq!(rejected.len(), 3);
        assert!(
            rejected[0].raw.starts_with('{') && rejected[0].raw.ends_with('}') && !rejected[0].raw.contains("\"id\"")
        );
        assert_eq!(rejected[0].reason, "the record has no id");
        assert!(rejected[1].reason.contains("yesterday"));
        assert_eq!(rejected[2].raw, "17");
        assert!(p.first_record().unwrap().contains("\"id\":2"));
    }

    #[test]
    fn system_records_with_null_user_and_request_fields_are_events() {
        let body = r#"{"audit_logs":[{"created_at":"2024-01-01T00:00:02Z","id":9,"operation_name":"TenantUpdate","request_ip":null,"request_user_agent":null,"user_email":null,"user_id":null,"user_name":null}]}"#;
        let p = Page::parse(body.into()).unwrap();
        assert_eq!((p.len(), p.sent()), (1, 1));
        let r = p.record(0);
        assert_eq!((r.id, r.user_id, r.user_email, r.request_ip), (9, None, None, None));
        assert_eq!(r.raw, &body[15..body.len() - 2]);
    }
}
