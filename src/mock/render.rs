//! JSON writing for the hot path: records go straight into one byte buffer
//! per response from compact [`Event`]s, with every static string escaped once
//! up front, so a page of 500 costs a few hundred microseconds.

use std::collections::HashMap;

use super::generate::{Event, Generator, Odd};
use crate::timeutil;

/// Appends `s` as a quoted JSON string: the same escaping the sinks' encoders use.
pub(crate) use crate::format::json::push_str;

/// `s` as a quoted JSON string, for tables built once.
pub(crate) fn quoted(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 2);
    push_str(&mut v, s);
    v
}

pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub(crate) fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

pub(crate) fn push_bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

pub(crate) fn push_ip(out: &mut Vec<u8>, ip: u32) {
    for (i, o) in ip.to_be_bytes().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_u64(out, u64::from(o));
    }
}

/// Pre-escaped record fragments. Each fragment also carries the punctuation
/// and fixed keys around it, so a record is a handful of `extend_from_slice`s.
pub(crate) struct Tables {
    /// `,"operation_name":"Name"` per operation index.
    op_field: Vec<Vec<u8>>,
    /// `","request_user_agent":"UA","tenant_id":N,"updated_at":"` per agent index.
    agent_field: Vec<Vec<u8>>,
    /// `","user_email":"e","user_id":N,"user_name":"n"}` per user index.
    user_field: Vec<Vec<u8>>,
    op_index: HashMap<&'static str, u16>,
    user_index: HashMap<u64, u8>,
    tenant_id: u64,
}

impl Tables {
    pub(crate) fn new(generator: &Generator, tenant_id: u64) -> Tables {
        let op_field = generator
            .ops
            .iter()
            .map(|op| {
                let mut v = b",\"operation_name\":".to_vec();
                push_str(&mut v, op.name);
                v
            })
            .collect();
        let agent_field = super::tenant::USER_AGENTS
            .iter()
            .map(|ua| {
                let mut v = b"\",\"request_user_agent\":".to_vec();
                push_str(&mut v, ua);
                v.extend_from_slice(b",\"tenant_id\":");
                push_u64(&mut v, tenant_id);
                v.extend_from_slice(b",\"updated_at\":\"");
                v
            })
            .collect();
        let user_field = generator
            .tenant
            .users
            .iter()
            .map(|u| {
                let mut v = b"\",\"user_email\":".to_vec();
                push_str(&mut v, &u.email);
                v.extend_from_slice(b",\"user_id\":");
                push_u64(&mut v, u.id);
                v.extend_from_slice(b",\"user_name\":");
                push_str(&mut v, &u.name);
                v.push(b'}');
                v
            })
            .collect();
        let op_index = generator.ops.iter().enumerate().map(|(i, op)| (op.name, i as u16)).collect();
        let user_index = generator.tenant.users.iter().enumerate().map(|(i, u)| (u.id, i as u8)).collect();
        Tables { op_field, agent_field, user_field, op_index, user_index, tenant_id }
    }

    pub(crate) fn op_index(&self, name: &str) -> Option<u16> {
        self.op_index.get(name).copied()
    }

    pub(crate) fn user_index(&self, id: u64) -> Option<u8> {
        self.user_index.get(&id).copied()
    }
}

/// Remembers the last timestamp written, since neighbouring records usually share it.
#[derive(Default)]
pub(crate) struct TsCache {
    secs: Option<i64>,
    text: String,
}

impl TsCache {
    fn get(&mut self, secs: i64) -> &[u8] {
        if self.secs != Some(secs) {
            self.text.clear();
            timeutil::write_rfc3339(&mut self.text, secs);
            self.secs = Some(secs);
        }
        self.text.as_bytes()
    }
}

/// Appends one record in the key order Tines uses.
pub(crate) fn push_record(
    out: &mut Vec<u8>,
    ev: &Event,
    g: &Generator,
    t: &Tables,
    ts: &mut TsCache,
    model: &super::posture::Model,
) {
    let when = ts.get(ev.created_at);
    out.extend_from_slice(b"{\"created_at\":\"");
    out.extend_from_slice(when);
    out.extend_from_slice(b"\"");
    if ev.odd != Odd::NoId {
        out.extend_from_slice(b",\"id\":");
        push_u64(out, ev.id);
    }
    out.extend_from_slice(b",\"inputs\":");
    match model.inputs(ev.id) {
        Some(inputs) => out.extend_from_slice(inputs),
        None => g.write_inputs(out, ev),
    }
    out.extend_from_slice(&t.op_field[usize::from(ev.op)]);
    if ev.outputs {
        out.extend_from_slice(b",\"outputs\":{}");
    }
    if ev.odd == Odd::NullFields {
        // A system-made event: nobody did it, from nowhere.
        out.extend_from_slice(b",\"request_ip\":null,\"request_user_agent\":null,\"tenant_id\":");
        push_u64(out, t.tenant_id);
        out.extend_from_slice(b",\"updated_at\":\"");
        out.extend_from_slice(ts.get(ev.created_at));
        out.extend_from_slice(b"\",\"user_email\":null,\"user_id\":null,\"user_name\":null}");
        return;
    }
    out.extend_from_slice(b",\"request_ip\":\"");
    push_ip(out, ev.ip);
    out.extend_from_slice(&t.agent_field[usize::from(ev.agent)]);
    out.extend_from_slice(ts.get(ev.created_at));
    out.extend_from_slice(&t.user_field[usize::from(ev.user)]);
}

/// What `meta` says about one page.
pub(crate) struct PageMeta<'a> {
    pub base: &'a str,
    pub per_page: usize,
    pub page: usize,
    /// The count the server reports (not necessarily the truth).
    pub count: usize,
    pub omit_count: bool,
    pub next_page_string_null: bool,
    pub omit_next_page_number: bool,
}

impl PageMeta<'_> {
    /// Pages needed for `count` rows; 0 when there are none (as `ceil(0 / n)`).
    pub(crate) fn pages(&self) -> usize {
        self.count.div_ceil(self.per_page)
    }

    fn push_url(&self, out: &mut Vec<u8>, page: usize) {
        out.push(b'"');
        out.extend_from_slice(self.base.as_bytes());
        out.extend_from_slice(b"/api/v1/audit_logs?per_page=");
        push_u64(out, self.per_page as u64);
        out.extend_from_slice(b"&page=");
        push_u64(out, page as u64);
        out.push(b'"');
    }

    fn push(&self, out: &mut Vec<u8>) {
        let pages = self.pages();
        out.extend_from_slice(b"\"meta\":{\"current_page\":");
        self.push_url(out, self.page);
        out.extend_from_slice(b",\"previous_page\":");
        if self.page > 1 {
            self.push_url(out, self.page - 1);
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"next_page\":");
        let has_next = self.page < pages;
        if has_next {
            self.push_url(out, self.page + 1);
        } else if self.next_page_string_null {
            out.extend_from_slice(b"\"null\"");
        } else {
            out.extend_from_slice(b"null");
        }
        if !self.omit_next_page_number {
            out.extend_from_slice(b",\"next_page_number\":");
            if has_next {
                push_u64(out, self.page as u64 + 1);
            } else {
                out.extend_from_slice(b"null");
            }
        }
        out.extend_from_slice(b",\"per_page\":");
        push_u64(out, self.per_page as u64);
        if !self.omit_count {
            out.extend_from_slice(b",\"pages\":");
            push_u64(out, pages as u64);
            out.extend_from_slice(b",\"count\":");
            push_u64(out, self.count as u64);
        }
        out.push(b'}');
    }
}

/// Upper estimate of one rendered record, to size the buffer once per response.
const RECORD_ESTIMATE: usize = 900;

/// The whole `{"audit_logs":[...],"meta":{...}}` body.
pub(crate) fn render_page(
    events: &[Event],
    g: &Generator,
    t: &Tables,
    meta: &PageMeta<'_>,
    model: &super::posture::Model,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + events.len() * RECORD_ESTIMATE);
    let mut ts = TsCache::default();
    out.extend_from_slice(b"{\"audit_logs\":[");
    for (i, ev) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_record(&mut out, ev, g, t, &mut ts, model);
    }
    out.extend_from_slice(b"],");
    meta.push(&mut out);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_through_serde() {
        for s in ["plain", "quote \" back \\ slash", "new\nline\ttab\r", "ctl \u{1}\u{1f}\u{8}\u{c}", "ünï 陈伟 🚀", ""]
        {
            let v = quoted(s);
            let back: String = serde_json::from_slice(&v).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn numbers_and_ips() {
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        v.push(b' ');
        push_u64(&mut v, u64::MAX);
        v.push(b' ');
        push_i64(&mut v, -34);
        v.push(b' ');
        push_ip(&mut v, u32::from(std::net::Ipv4Addr::new(86, 40, 0, 255)));
        assert_eq!(String::from_utf8(v).unwrap(), "0 18446744073709551615 -34 86.40.0.255");
    }

    #[test]
    fn meta_pages_and_last_page_quirks() {
        let mut m = PageMeta {
            base: "http://h",
            per_page: 10,
            page: 3,
            count: 25,
            omit_count: false,
            next_page_string_null: false,
            omit_next_page_number: false,
        };
        let mut out = vec![b'{'];
        m.push(&mut out);
        out.push(b'}');
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["meta"]["pages"], 3);
        assert_eq!(v["meta"]["next_page"], serde_json::Value::Null);
        assert_eq!(v["meta"]["previous_page"], "http://h/api/v1/audit_logs?per_page=10&page=2");
        m.next_page_string_null = true;
        m.omit_next_page_number = true;
        let mut out = vec![b'{'];
        m.push(&mut out);
        out.push(b'}');
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["meta"]["next_page"], "null");
        assert!(v["meta"].get("next_page_number").is_none());
        m.count = 0;
        assert_eq!(m.pages(), 0);
    }
}
