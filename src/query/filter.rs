//! The filters every search takes, wherever it comes from (command line, HTTP
//! API, console form): parsed from strings in one place, validated, and then
//! typed. Values of one filter are alternatives (any of them); different
//! filters must all hold.

use std::net::IpAddr;

use super::syntax::{self, Field};
use crate::catalog::{self, Category};
use crate::journal::TextTerm;
use crate::timeutil::{TimeArgError, format_rfc3339, looks_like_age, parse_age, parse_rfc3339};

/// Why a filter was refused; the message says what to write instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct FilterError(pub String);

/// Who acted: a Tines user id, an e-mail address (exact, any case) or part of a display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSpec {
    Id(i64),
    Email(String),
    Name(String),
}

/// An address or a network (`203.0.113.7`, `10.0.0.0/8`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub bits: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(IpNet { addr, bits })
    }

    /// Whether this is one address rather than a network.
    pub fn is_host(&self) -> bool {
        self.bits == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = if self.bits == 0 { 0 } else { u32::MAX << (32 - u32::from(self.bits)) };
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = if self.bits == 0 { 0 } else { u128::MAX << (128 - u32::from(self.bits)) };
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_host() { write!(f, "{}", self.addr) } else { write!(f, "{}/{}", self.addr, self.bits) }
    }
}

/// A validated search: what to match. `from` is inclusive, `to` exclusive (unix seconds).
/// The lists are alternatives (any value); `exclude` removes events matching any of its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub tenants: Vec<String>,
    pub users: Vec<UserSpec>,
    pub operations: Vec<String>,
    pub categories: Vec<Category>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub ips: Vec<IpNet>,
    /// ISO 3166-1 alpha-2 codes, upper case.
    pub countries: Vec<String>,
    /// Free text (words, "quoted phrases", `prefix*`, OR, exclusions).
    pub text: TextQuery,
    /// Events with any of these values are left out (`-field:value` in `q`).
    pub exclude: Excluded,
    /// Only the events an alert is about, by the alert's id (the console's "Events" link).
    pub alert: Option<String>,
}

/// Values excluded from a search, one list per field (any value excludes an event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Excluded {
    pub tenants: Vec<String>,
    pub users: Vec<UserSpec>,
    pub operations: Vec<String>,
    pub categories: Vec<Category>,
    pub ips: Vec<IpNet>,
    pub countries: Vec<String>,
}

impl Excluded {
    pub fn is_empty(&self) -> bool {
        *self == Excluded::default()
    }
}

/// Free text: every group in `all` must match (a group matches when any of its terms
/// occurs), and no term of `none` may occur.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextQuery {
    pub all: Vec<Vec<TextTerm>>,
    pub none: Vec<TextTerm>,
}

impl TextQuery {
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.none.is_empty()
    }
}

/// Most values one field may list: the lists become SQL parameters or arrays, and a
/// search naming more is a mistake, not a query.
pub const MAX_VALUES: usize = 10_000;

/// The filters as strings, before validation (flags, query parameters, form fields).
/// Each list also takes comma-separated values.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct FilterArgs {
    /// Only this tenant (its name in the journal; repeatable).
    #[arg(long = "tenant", value_name = "NAME")]
    pub tenant: Vec<String>,
    /// Who acted: a user id, an e-mail address, or part of a display name (repeatable).
    #[arg(long = "user", value_name = "ID|EMAIL|NAME")]
    pub user: Vec<String>,
    /// Operation name, checked against `tines-audit operations` (repeatable).
    #[arg(long = "operation", value_name = "NAME")]
    pub operation: Vec<String>,
    /// Operation category, such as credential, user, authentication, access_control (repeatable).
    #[arg(long = "category", value_name = "NAME")]
    pub category: Vec<String>,
    /// Start (inclusive): RFC 3339, a date (2024-05-01), or an age such as 30d or 12h.
    #[arg(long = "from", visible_alias = "since", value_name = "TIME")]
    pub from: Option<String>,
    /// End (exclusive): RFC 3339, a date, or an age such as 1d (default: now).
    #[arg(long = "to", visible_alias = "until", value_name = "TIME")]
    pub to: Option<String>,
    /// Source IP address or CIDR network (repeatable).
    #[arg(long = "ip", value_name = "ADDR|CIDR")]
    pub ip: Vec<String>,
    /// Source country, ISO code such as IE or US (repeatable; needs a GeoIP database, or the emulator).
    #[arg(long = "country", value_name = "CODE")]
    pub country: Vec<String>,
    /// The search box: words (all must occur, also inside operation names), "quoted phrases",
    /// prefix*, a OR b, field:value (user, operation, ip, country, tenant, category, from, to),
    /// and -term or NOT term to exclude (write --text=-user:x when it starts with a dash).
    #[arg(long = "text", short = 'q', value_name = "TEXT")]
    pub text: Option<String>,
}

fn split_list(values: &[String]) -> impl Iterator<Item = &str> {
    values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty())
}

/// Parses a point in time for a filter: RFC 3339, a date (midnight UTC), `now`, or an age before `now`.
/// A date that does not exist, or an age reaching before 1970, is refused.
pub fn parse_point(s: &str, now: i64) -> Result<i64, FilterError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if t.len() == 10
        && let Some(v) = parse_rfc3339(&format!("{t}T00:00:00Z"))
    {
        return Ok(v);
    }
    if let Some(v) = parse_rfc3339(t) {
        return Ok(v);
    }
    if looks_like_age(t) {
        match parse_age(t, now) {
            Ok(d) => return Ok(now - d.as_secs() as i64),
            Err(TimeArgError::Invalid(_)) => {}
            Err(e) => return Err(FilterError(e.to_string())),
        }
    }
    Err(FilterError(format!(
        "invalid time {s:?}: give RFC 3339 (2024-05-01T00:00:00Z), a date (2024-05-01) or an age such as 30d, 12h, 90m"
    )))
}

/// A category by its snake_case name.
pub fn parse_category(s: &str) -> Result<Category, FilterError> {
    let want = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    Category::ALL.into_iter().find(|c| c.as_str() == want).ok_or_else(|| {
        let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        FilterError(format!("unknown category {s:?}; use one of {}", names.join(", ")))
    })
}

impl FilterArgs {
    /// From `key=value` pairs (an HTTP query string or a form); unknown keys are refused
    /// unless `extra` accepts them.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        mut extra: impl FnMut(&str, &str) -> bool,
    ) -> Result<FilterArgs, FilterError> {
        let mut a = FilterArgs::default();
        for (k, v) in pairs {
            refuse_nul(k, v)?;
            if v.trim().is_empty() {
                continue;
            }
            let v = v.to_string();
            match k {
                "tenant" => a.tenant.push(v),
                "user" => a.user.push(v),
                "operation" => a.operation.push(v),
                "category" => a.category.push(v),
                "from" | "since" => a.from = Some(v),
                "to" | "until" => a.to = Some(v),
                "ip" => a.ip.push(v),
                "country" => a.country.push(v),
                "q" | "text" => a.text = Some(v),
                other if extra(other, &v) => {}
                other => return Err(FilterError(format!("unknown parameter {other:?}"))),
            }
        }
        Ok(a)
    }

    /// The same filters as `key=value` pairs, for links (next page, console forms).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let lists: [(&'static str, &Vec<String>); 6] = [
            ("tenant", &self.tenant),
            ("user", &self.user),
            ("operation", &self.operation),
            ("category", &self.category),
            ("ip", &self.ip),
            ("country", &self.country),
        ];
        for (k, vs) in lists {
            out.extend(vs.iter().map(|v| (k, v.clone())));
        }
        if let Some(v) = &self.from {
            out.push(("from", v.clone()));
        }
        if let Some(v) = &self.to {
            out.push(("to", v.clone()));
        }
        if let Some(v) = &self.text {
            out.push(("q", v.clone()));
        }
        out
    }

    /// Validates every value, parameters and the search box's `field:value` terms alike;
    /// relative times are taken against `now`. Each refusal names the parameter.
    pub fn build(&self, now: i64) -> Result<EventFilter, FilterError> {
        let lists: [(Field, &Vec<String>); 6] = [
            (Field::Tenant, &self.tenant),
            (Field::User, &self.user),
            (Field::Operation, &self.operation),
            (Field::Category, &self.category),
            (Field::Ip, &self.ip),
            (Field::Country, &self.country),
        ];
        for (field, values) in lists {
            values.iter().try_for_each(|v| refuse_nul(field.as_str(), v))?;
        }
        for (name, v) in [("from", &self.from), ("to", &self.to), ("q", &self.text)] {
            v.iter().try_for_each(|v| refuse_nul(name, v))?;
        }
        let text = self.text.as_deref().map(str::trim).unwrap_or("");
        let parsed = syntax::parse(text)?;
        if !text.is_empty() && parsed == syntax::Parsed::default() {
            return Err(FilterError(format!(
                "q: no word to look for in {text:?}: give words, \"a phrase\", prefix* or field:value"
            )));
        }
        let mut f = EventFilter::default();
        let mut include = Excluded::default();
        for (field, values) in lists {
            for v in split_list(values) {
                include.add(field, v, field.as_str())?;
            }
        }
        let mut from = self.from.clone().map(|v| ("from", v));
        let mut to = self.to.clone().map(|v| ("to", v));
        for (field, v) in &parsed.fields {
            let label = format!("q ({})", syntax::clause(*field, v, false));
            match field {
                Field::From | Field::To => {
                    let slot = if *field == Field::From { &mut from } else { &mut to };
                    if let Some((was, _)) = slot {
                        return Err(FilterError(format!(
                            "{label}: the period's {} is also given as {was}; give it once",
                            field.as_str()
                        )));
                    }
                    *slot = Some(("q", v.clone()));
                }
                _ => include.add(*field, v, &label)?,
            }
        }
        for (field, v) in &parsed.excluded {
            let label = format!("q ({})", syntax::clause(*field, v, true));
            f.exclude.add(*field, v, &label)?;
        }
        for (name, n) in [
            ("tenant", include.tenants.len() + f.exclude.tenants.len()),
            ("user", include.users.len() + f.exclude.users.len()),
            ("operation", include.operations.len() + f.exclude.operations.len()),
            ("category", include.categories.len() + f.exclude.categories.len()),
            ("ip", include.ips.len() + f.exclude.ips.len()),
            ("country", include.countries.len() + f.exclude.countries.len()),
        ] {
            if n > MAX_VALUES {
                return Err(FilterError(format!("{name}: {n} values; a search takes at most {MAX_VALUES} per field")));
            }
        }
        let point = |slot: Option<(&str, String)>| -> Result<Option<i64>, FilterError> {
            slot.map(|(name, v)| parse_point(&v, now).map_err(|e| FilterError(format!("{name}: {}", e.0)))).transpose()
        };
        f.from = point(from)?;
        f.to = point(to)?;
        if let (Some(a), Some(b)) = (f.from, f.to)
            && a >= b
        {
            return Err(FilterError(format!(
                "from: the range is empty: from {} is not before to {}",
                format_rfc3339(a),
                format_rfc3339(b)
            )));
        }
        let Excluded { tenants, users, operations, categories, ips, countries } = include;
        (f.tenants, f.users, f.operations, f.categories, f.ips, f.countries) =
            (tenants, users, operations, categories, ips, countries);
        f.text = TextQuery { all: parsed.text, none: parsed.not_text };
        Ok(f)
    }
}

/// A NUL byte reaches no event (PostgreSQL cannot store one, SQLite's full-text parser
/// stops at it): refused by name rather than failing in the database.
fn refuse_nul(name: &str, value: &str) -> Result<(), FilterError> {
    if value.contains('\0') {
        return Err(FilterError(format!(
            "{name}: the value holds a NUL byte (\\0), which no event can hold; remove it"
        )));
    }
    Ok(())
}

impl UserSpec {
    /// A user id (digits), an e-mail address (has `@`), or else part of a display name.
    pub fn parse(s: &str) -> UserSpec {
        if let Ok(id) = s.parse::<i64>() {
            UserSpec::Id(id)
        } else if s.contains('@') {
            UserSpec::Email(s.to_string())
        } else {
            UserSpec::Name(s.to_string())
        }
    }
}

impl Excluded {
    /// Checks one value of a list field and adds it; `label` says where it came from.
    fn add(&mut self, field: Field, v: &str, label: &str) -> Result<(), FilterError> {
        let v = v.trim();
        let bad = |why: String| FilterError(format!("{label}: {why}"));
        match field {
            Field::Tenant => self.tenants.push(v.to_string()),
            Field::User => self.users.push(UserSpec::parse(v)),
            Field::Operation => match catalog::resolve(v) {
                Ok(names) => self.operations.extend(names.into_iter().map(str::to_string)),
                // Tines adds names the catalog lacks: the search accepts one the journal holds.
                Err(_) => self.operations.push(v.to_string()),
            },
            Field::Category => self.categories.push(parse_category(v).map_err(|e| bad(e.0))?),
            Field::Ip => self.ips.push(IpNet::parse(v).ok_or_else(|| {
                bad(format!(
                    "{v:?} is not an IP address or network: give an address (203.0.113.7) or a network (10.0.0.0/8)"
                ))
            })?),
            Field::Country => {
                if v.len() != 2 || !v.chars().all(|ch| ch.is_ascii_alphabetic()) {
                    return Err(bad(format!("{v:?} is not a country code: give an ISO 3166 code such as IE or US")));
                }
                self.countries.push(v.to_ascii_uppercase());
            }
            Field::From | Field::To => unreachable!("times are not lists"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_of_value() {
        let a = FilterArgs {
            tenant: vec!["acme".into()],
            user: vec!["42,ann@x.io".into(), "Seán".into()],
            operation: vec!["CredentialDestruction".into()],
            category: vec!["access-control".into()],
            from: Some("30d".into()),
            to: Some("2024-06-01".into()),
            ip: vec!["10.0.0.0/8, 203.0.113.7".into()],
            country: vec!["ie".into()],
            text: Some("  phishing ".into()),
        };
        let f = a.build(1_714_521_600 + 40 * 86_400).unwrap();
        assert_eq!(f.users, vec![UserSpec::Id(42), UserSpec::Email("ann@x.io".into()), UserSpec::Name("Seán".into())]);
        assert_eq!(f.categories, vec![Category::AccessControl]);
        assert_eq!(f.from, Some(1_714_521_600 + 10 * 86_400));
        assert_eq!(f.to, Some(1_714_521_600 + 31 * 86_400));
        assert_eq!(f.ips.len(), 2);
        assert!(f.ips[0].contains("10.9.8.7".parse().unwrap()));
        assert!(!f.ips[0].contains("11.0.0.1".parse().unwrap()));
        assert!(f.ips[1].is_host());
        assert_eq!(f.countries, vec!["IE"]);
        assert_eq!(f.text.all, vec![vec![TextTerm { words: "phishing".into(), prefix: false }]]);
    }

    #[test]
    fn refuses_bad_values_with_a_hint() {
        let bad = |a: FilterArgs| a.build(1_000_000_000).unwrap_err().0;
        assert!(bad(FilterArgs { category: vec!["nope".into()], ..Default::default() }).contains("credential"));
        assert!(bad(FilterArgs { from: Some("yesterday-ish".into()), ..Default::default() }).contains("RFC 3339"));
        assert!(bad(FilterArgs { ip: vec!["10.0.0.0/33".into()], ..Default::default() }).contains("network"));
        assert!(bad(FilterArgs { country: vec!["Ireland".into()], ..Default::default() }).contains("ISO"));
        assert!(
            bad(FilterArgs { from: Some("1d".into()), to: Some("2d".into()), ..Default::default() }).contains("empty")
        );
        assert!(bad(FilterArgs { text: Some("\"unclosed".into()), ..Default::default() }).contains("quote"));
        // Each refusal names its parameter, and a value from the search box says so.
        assert!(bad(FilterArgs { ip: vec!["nope".into()], ..Default::default() }).starts_with("ip: "));
        assert!(bad(FilterArgs { text: Some("ip:nope".into()), ..Default::default() }).starts_with("q (ip:nope): "));
        assert!(
            bad(FilterArgs { text: Some("-country:Ireland".into()), ..Default::default() })
                .starts_with("q (-country:Ireland): ")
        );
        assert!(
            bad(FilterArgs { from: Some("1d".into()), text: Some("from:2d".into()), ..Default::default() })
                .contains("give it once")
        );
        assert!(bad(FilterArgs { text: Some("( & )".into()), ..Default::default() }).contains("no word"));
    }

    #[test]
    fn search_box_fields_join_the_parameters_and_exclusions_stand_apart() {
        let a = FilterArgs {
            user: vec!["ann@x.io".into()],
            text: Some("user:bob@x.io -user:7 -category:credential country:ie -ip:10.0.0.0/8 word since:2d".into()),
            ..Default::default()
        };
        let f = a.build(1_000_000_000).unwrap();
        assert_eq!(f.users, vec![UserSpec::Email("ann@x.io".into()), UserSpec::Email("bob@x.io".into())]);
        assert_eq!(f.exclude.users, vec![UserSpec::Id(7)]);
        assert_eq!(f.exclude.categories, vec![Category::Credential]);
        assert_eq!(f.countries, vec!["IE"]);
        assert_eq!(f.exclude.ips.len(), 1);
        assert_eq!(f.from, Some(1_000_000_000 - 2 * 86_400));
        assert_eq!(f.text.all.len(), 1);
    }

    /// Regression: a NUL byte in `q` reached SQLite's full-text parser, which stops at it
    /// ("unterminated string", a 500); PostgreSQL refuses NUL in any text. Every parameter
    /// now refuses it by name.
    #[test]
    fn nul_byte_in_q_was_a_500() {
        let e = FilterArgs { text: Some("a\0b".into()), ..Default::default() }.build(0).unwrap_err().0;
        assert!(e.starts_with("q: ") && e.contains("NUL"), "{e}");
        let e = FilterArgs { user: vec!["x\0".into()], ..Default::default() }.build(0).unwrap_err().0;
        assert!(e.starts_with("user: "), "{e}");
        let e = FilterArgs::from_pairs([("cursor", "\0")], |_, _| true).unwrap_err().0;
        assert!(e.starts_with("cursor: "), "{e}");
    }

    #[test]
    fn too_many_values_of_one_field_are_refused_by_name() {
        let many = (0..=MAX_VALUES).map(|i| format!("u{i}@x.io")).collect::<Vec<_>>().join(",");
        let e = FilterArgs { user: vec![many], ..Default::default() }.build(0).unwrap_err().0;
        assert!(e.starts_with("user: ") && e.contains("at most"), "{e}");
    }

    #[test]
    fn ipv6_networks_and_pairs_round_trip() {
        let n = IpNet::parse("2001:db8::/32").unwrap();
        assert!(n.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!n.contains("2001:db9::1".parse().unwrap()));
        assert!(!n.contains("10.0.0.1".parse().unwrap()));
        let a = FilterArgs::from_pairs(
            [("user", "7"), ("operation", "Login"), ("q", "x"), ("cursor", "abc"), ("from", "")],
            |k, _| k == "cursor",
        )
        .unwrap();
        assert_eq!(a.user, vec!["7"]);
        assert_eq!(a.from, None);
        let back = FilterArgs::from_pairs(a.to_pairs().iter().map(|(k, v)| (*k, v.as_str())), |_, _| false).unwrap();
        assert_eq!(back, a);
        assert!(FilterArgs::from_pairs([("bogus", "1")], |_, _| false).is_err());
    }
}
