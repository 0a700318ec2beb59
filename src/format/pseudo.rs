//! Pseudonymisation (GDPR art. 4(5)) of the acting user's e-mail, name and IP
//! address, per sink: each value is replaced by a keyed HMAC-SHA256
//! pseudonym (`pseu:` + 32 hex digits: stable for one key, unlinkable without
//! it) or dropped. The top-level fields are replaced wherever a shape puts
//! them, and any other field of the record (`inputs`, `outputs`, fields Tines
//! adds later) that holds the same value is rewritten too, so the original
//! never reaches the sink.
//!
//! Limits: only the three fields' *values* are looked for. Other people's
//! data inside `inputs` (an invited user's e-mail, say) is passed on as it
//! came, except where a shape maps it to a user field of its own (ECS
//! `user.target.email`, OCSF `user.email_addr`), which gets the e-mail rule.

use std::borrow::Cow;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::Sha256;

use super::json;
use super::record::{MAPPED, Record, Text};

/// A field that can be pseudonymised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PseudoField {
    UserEmail,
    UserName,
    RequestIp,
}

impl PseudoField {
    pub const ALL: [PseudoField; 3] = [PseudoField::UserEmail, PseudoField::UserName, PseudoField::RequestIp];

    /// The record field it names.
    pub fn key(self) -> &'static str {
        match self {
            PseudoField::UserEmail => "user_email",
            PseudoField::UserName => "user_name",
            PseudoField::RequestIp => "request_ip",
        }
    }
}

/// What happens to a pseudonymised value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PseudoMode {
    /// Replaced by `pseu:` and the first 32 hex digits of HMAC-SHA256(key, value).
    #[default]
    Hash,
    /// Removed: `null` in the raw record, left out of ECS and OCSF.
    Drop,
}

/// Replaces personal fields as configured; cheap to clone, built once per sink.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
    fields: [bool; 3],
    mode: PseudoMode,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<_> = PseudoField::ALL.into_iter().filter(|p| self.covers(*p)).collect();
        f.debug_struct("Pseudonymizer")
            .field("key", &"**REDACTED**")
            .field("fields", &fields)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Prefix of every pseudonym, so a reader can tell one from a real value.
pub const PSEUDONYM_PREFIX: &str = "pseu:";

/// What a Drop leaves inside a longer string that contained the value.
const DROPPED_TEXT: &str = "[redacted]";

impl Pseudonymizer {
    /// A pseudonymiser with this secret key (any length; [`PseudonymizeConfig`]
    /// insists on 16 bytes or more) for these fields.
    pub fn new(key: &[u8], fields: &[PseudoField], mode: PseudoMode) -> Pseudonymizer {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
        let mut on = [false; 3];
        for f in fields {
            on[*f as usize] = true;
        }
        Pseudonymizer { mac, fields: on, mode }
    }

    pub fn mode(&self) -> PseudoMode {
        self.mode
    }

    /// Whether `field` is pseudonymised.
    pub fn covers(&self, field: PseudoField) -> bool {
        self.fields[field as usize]
    }

    /// The pseudonym of a value: `pseu:` + 32 hex digits (128 bits) of HMAC-SHA256(key, value).
    pub fn pseudonym(&self, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(PSEUDONYM_PREFIX.len() + 32);
        s.push_str(PSEUDONYM_PREFIX);
        for b in &digest[..16] {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    fn field_of(key: &str) -> Option<PseudoField> {
        PseudoField::ALL.into_iter().find(|f| f.key() == key)
    }

    /// What a value of `field` becomes: `None` when the field is not covered.
    pub(crate) fn mask(&self, field: PseudoField, value: &str) -> Option<Masked> {
        self.covers(field).then(|| match self.mode {
            PseudoMode::Hash => Masked::Pseudonym(self.pseudonym(value)),
            PseudoMode::Drop => Masked::Dropped,
        })
    }

    /// The record as it will be shown: covered fields replaced, and any other
    /// field holding one of their values rewritten.
    pub(crate) fn view<'a>(&self, r: &Record<'a>) -> View {
        let mut v = View::default();
        let mut needles: Vec<(Cow<'a, str>, Option<String>)> = Vec::new();
        for (field, text, slot) in [
            (PseudoField::UserEmail, r.user_email, &mut v.email),
            (PseudoField::UserName, r.user_name, &mut v.name),
            (PseudoField::RequestIp, r.request_ip, &mut v.ip),
        ] {
            let Some(text) = text else { continue };
            let value = text.value();
            *slot = self.mask(field, &value);
            if let Some(m) = slot.as_ref()
                && !value.trim().is_empty()
            {
                needles.push((value, m.pseudonym().map(str::to_owned)));
            }
        }
        for (i, (key, raw)) in r.fields.iter().enumerate() {
            if let Some(field) = Self::field_of(key) {
                if self.covers(field) {
                    // The typed field is this occurrence unless the key is repeated: reuse its result.
                    let (typed, masked) = match field {
                        PseudoField::UserEmail => (r.user_email, &v.email),
                        PseudoField::UserName => (r.user_name, &v.name),
                        PseudoField::RequestIp => (r.request_ip, &v.ip),
                    };
                    let json = match (typed, masked) {
                        (Some(t), Some(m)) if t.literal() == raw.get() => match m {
                            Masked::Pseudonym(p) => format!("\"{p}\""),
                            Masked::Dropped => "null".into(),
                        },
                        _ => self.mask_raw(field, raw),
                    };
                    v.replaced.push((i, json));
                }
                continue;
            }
            if MAPPED.contains(&key.as_ref()) || needles.is_empty() {
                continue;
            }
            if let Some(s) = scrub(raw, &needles) {
                v.replaced.push((i, s));
            }
        }
        v
    }

    /// The JSON that replaces one occurrence of a covered field in the raw record.
    fn mask_raw(&self, field: PseudoField, raw: &RawValue) -> String {
        if raw.get() == "null" {
            return "null".into();
        }
        let value = match raw.get().starts_with('"') {
            true => Text::from_literal(raw.get()).value(),
            false => Cow::Borrowed(raw.get()),
        };
        match self.mask(field, &value) {
            Some(Masked::Pseudonym(p)) => format!("\"{p}\""),
            _ => "null".into(),
        }
    }
}

/// A covered value after pseudonymisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Masked {
    Pseudonym(String),
    Dropped,
}

impl Masked {
    pub(crate) fn pseudonym(&self) -> Option<&str> {
        match self {
            Masked::Pseudonym(p) => Some(p),
            Masked::Dropped => None,
        }
    }
}

/// The personal fields of one record after pseudonymisation (`None`: not covered).
#[derive(Debug, Default)]
pub(crate) struct View {
    pub email: Option<Masked>,
    pub name: Option<Masked>,
    pub ip: Option<Masked>,
    /// Replacement JSON for fields of the record, by index in `Record::fields`.
    pub replaced: Vec<(usize, String)>,
}

impl View {
    /// The JSON of field `i` as it will be shown.
    pub(crate) fn field_json<'r>(&'r self, i: usize, raw: &'r RawValue) -> &'r str {
        self.replaced.iter().find(|(j, _)| *j == i).map_or(raw.get(), |(_, s)| s.as_str())
    }
}

/// Where a value may hide in `raw` without appearing literally.
fn may_hide(raw: &str, needle: &str) -> bool {
    raw.contains("\\u") || (needle.contains('/') && raw.contains("\\/"))
}

/// Rewrites every string in `raw` that is one of the needles (or, for an
/// e-mail address, contains one). `None` when nothing had to change.
fn scrub(raw: &RawValue, needles: &[(Cow<'_, str>, Option<String>)]) -> Option<String> {
    let text = raw.get();
    let mut escaped = Vec::new();
    let suspicious = needles.iter().any(|(n, _)| {
        escaped.clear();
        json::push_escaped(&mut escaped, n);
        text.contains(std::str::from_utf8(&escaped).unwrap_or(n)) || may_hide(text, n)
    });
    if !suspicious {
        return None;
    }
    let mut value: Value = serde_json::from_str(text).ok()?;
    if !walk(&mut value, needles) {
        return None;
    }
    serde_json::to_string(&value).ok()
}

fn walk(v: &mut Value, needles: &[(Cow<'_, str>, Option<String>)]) -> bool {
    match v {
        Value::String(s) => {
            for (needle, pseudonym) in needles {
                if s == needle.as_ref() {
                    *v = pseudonym.as_ref().map_or(Value::Null, |p| Value::String(p.clone()));
                    return true;
                }
            }
            let mut changed = false;
            for (needle, pseudonym) in needles {
                // Inside longer text only e-mail addresses are distinctive enough to look for.
                if needle.contains('@') && needle.len() >= 6 && s.contains(needle.as_ref()) {
                    *s = s.replace(needle.as_ref(), pseudonym.as_deref().unwrap_or(DROPPED_TEXT));
                    changed = true;
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |acc, i| walk(i, needles) | acc),
        Value::Object(map) => map.values_mut().fold(false, |acc, i| walk(i, needles) | acc),
        _ => false,
    }
}

fn all_fields() -> Vec<PseudoField> {
    PseudoField::ALL.to_vec()
}

/// The `pseudonymize` table of a sink's configuration.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PseudonymizeConfig {
    /// The secret HMAC key, at least 16 bytes. Keep it: a new key gives new pseudonyms.
    pub key: String,
    /// The fields to replace (default: all three).
    #[serde(default = "all_fields")]
    pub fields: Vec<PseudoField>,
    /// `hash` (default) or `drop`.
    #[serde(default)]
    pub mode: PseudoMode,
}

impl fmt::Debug for PseudonymizeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PseudonymizeConfig")
            .field("key", &"**REDACTED**")
            .field("fields", &self.fields)
            .field("mode", &self.mode)
            .finish()
    }
}

impl PseudonymizeConfig {
    /// Checks the settings and builds the pseudonymiser.
    pub fn build(&self) -> Result<Pseudonymizer, String> {
        if self.key.len() < 16 {
            return Err(format!(
                "pseudonymize.key is {} bytes; use a random secret of at least 16 bytes (e.g. `openssl rand -hex 32`)",
                self.key.len()
            ));
        }
        if self.fields.is_empty() {
            return Err(
                "pseudonymize.fields is empty; list user_email, user_name and/or request_ip, or leave out pseudonymize"
                    .into(),
            );
        }
        Ok(Pseudonymizer::new(self.key.as_bytes(), &self.fields, self.mode))
    }
}
