//! The filters every search takes, wherever it comes from (command line, HTTP
//! API, console form): parsed from strings in one place, validated, and then
//! typed. Values of one filter are alternatives (any of them); different
//! filters must all hold.

use std::net::IpAddr;

use crate::catalog::{self, Category};
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
    /// Free text: words (all must occur), "quoted phrases", and `prefix*`.
    pub text: Option<String>,
    /// Only the events an alert is about, by the alert's id (the console's "Events" link).
    pub alert: Option<String>,
}

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
    /// Free text over the whole record: words, "quoted phrases", prefix*.
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

    /// Validates every value; relative times are taken against `now`.
    pub fn build(&self, now: i64) -> Result<EventFilter, FilterError> {
        let mut f =
            EventFilter { tenants: split_list(&self.tenant).map(str::to_string).collect(), ..Default::default() };
        for u in split_list(&self.user) {
            f.users.push(if let Ok(id) = u.parse::<i64>() {
                UserSpec::Id(id)
            } else if u.contains('@') {
                UserSpec::Email(u.to_string())
            } else {
                UserSpec::Name(u.to_string())
            });
        }
        for o in split_list(&self.operation) {
            match catalog::resolve(o) {
                Ok(names) => f.operations.extend(names.into_iter().map(str::to_string)),
                // Tines adds names the catalog lacks: the search accepts one the journal holds.
                Err(_) => f.operations.push(o.to_string()),
            }
        }
        for c in split_list(&self.category) {
            f.categories.push(parse_category(c)?);
        }
        f.from = self.from.as_deref().map(|s| parse_point(s, now)).transpose()?;
        f.to = self.to.as_deref().map(|s| parse_point(s, now)).transpose()?;
        if let (Some(a), Some(b)) = (f.from, f.to)
            && a >= b
        {
            return Err(FilterError(format!(
                "the range is empty: from {} is not before to {}",
                format_rfc3339(a),
                format_rfc3339(b)
            )));
        }
        for i in split_list(&self.ip) {
            f.ips.push(IpNet::parse(i).ok_or_else(|| {
                FilterError(format!("invalid IP {i:?}: give an address (203.0.113.7) or a network (10.0.0.0/8)"))
            })?);
        }
        for c in split_list(&self.country) {
            if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                return Err(FilterError(format!("invalid country {c:?}: give an ISO 3166 code such as IE or US")));
            }
            f.countries.push(c.to_ascii_uppercase());
        }
        f.text = self.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
        if let Some(t) = &f.text {
            super::search::text_terms(t)?;
        }
        Ok(f)
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
        assert_eq!(f.text.as_deref(), Some("phishing"));
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
