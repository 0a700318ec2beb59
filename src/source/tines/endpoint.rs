//! Where a tenant lives: a validated domain (`acme.tines.com`, a custom
//! domain) served over HTTPS, or, for the emulator and tests only, a plain
//! `http://` base URL on a loopback address.

use std::net::IpAddr;

use url::Url;

/// Why a tenant address was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error(
        "invalid tenant domain {0:?}: give the domain only, without https:// or a path (for example acme.tines.com)"
    )]
    HasSchemeOrPath(String),
    #[error(
        "invalid tenant domain {0:?}: a tenant domain must contain a dot, for example acme.tines.com or acme.tines.io"
    )]
    NoDot(String),
    #[error("invalid tenant domain {0:?}: only letters, digits, '-' and '.' are allowed, with no empty labels")]
    BadCharacters(String),
    #[error(
        "refusing {0}: a base URL is only for the emulator and tests and must be a loopback address (127.0.0.1, ::1, localhost); give a real tenant as its domain, which is always reached over HTTPS"
    )]
    NotLoopback(String),
    #[error("invalid tenant URL {0:?}: {1}")]
    BadUrl(String, String),
    #[error(
        "refusing tenant address {0}: it carries a user name or password (not shown); the API key authenticates, so give the address without them"
    )]
    HasCredentials(String),
}

/// A validated tenant address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    base: Url,
}

impl Endpoint {
    /// Parses what a user gave for a tenant: a domain, or a loopback base URL.
    pub fn parse(input: &str) -> Result<Self, EndpointError> {
        let input = input.trim();
        if input.contains("://") {
            return Self::from_url(input);
        }
        Self::from_domain(input)
    }

    /// `TINES_BASE_URL` is documented (seed 002) as `https://<tenant-domain>`,
    /// so there an `https://` prefix is accepted and stripped.
    pub fn parse_base_url_env(input: &str) -> Result<Self, EndpointError> {
        let trimmed = input.trim().trim_end_matches('/');
        match trimmed.strip_prefix("https://") {
            Some(domain) if !domain.contains('/') && !is_loopback_host(host_part(domain)) => Self::from_domain(domain),
            _ => Self::parse(trimmed),
        }
    }

    fn from_domain(domain: &str) -> Result<Self, EndpointError> {
        if domain.contains('@') {
            return Err(EndpointError::HasCredentials(redact_input(domain)));
        }
        if domain.contains('/') || domain.contains(':') || domain.contains('?') {
            return Err(EndpointError::HasSchemeOrPath(domain.to_string()));
        }
        if !domain.contains('.') {
            return Err(EndpointError::NoDot(domain.to_string()));
        }
        let ok_labels = domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if !ok_labels || domain.len() > 253 {
            return Err(EndpointError::BadCharacters(domain.to_string()));
        }
        let base = Url::parse(&format!("https://{}/", domain.to_ascii_lowercase()))
            .map_err(|e| EndpointError::BadUrl(domain.to_string(), e.to_string()))?;
        Ok(Endpoint { base })
    }

    fn from_url(input: &str) -> Result<Self, EndpointError> {
        let url = Url::parse(input).map_err(|e| EndpointError::BadUrl(redact_input(input), e.to_string()))?;
        let host = url.host_str().unwrap_or_default();
        if !matches!(url.scheme(), "http" | "https") || !is_loopback_host(host) {
            return Err(EndpointError::NotLoopback(display_url(&url)));
        }
        // Credentials in the address would be printed wherever the address is (a 404 said
        // "not found at http://user:password@…"), and Tines takes none: the API key authenticates.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EndpointError::HasCredentials(display_url(&url)));
        }
        if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
            return Err(EndpointError::BadUrl(display_url(&url), "a base URL has no path or query".into()));
        }
        let mut base = url;
        base.set_path("/");
        Ok(Endpoint { base })
    }

    /// `https://acme.tines.com/` or `http://127.0.0.1:PORT/`.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The audit-log endpoint.
    pub fn audit_logs_url(&self) -> Url {
        self.base.join("api/v1/audit_logs").expect("static path joins")
    }

    /// The audit-log endpoint as printed in errors and logs: see [`display_url`].
    pub fn display_audit_logs_url(&self) -> String {
        display_url(&self.audit_logs_url())
    }

    /// A name for the tenant when the user gave none: the host (and port).
    pub fn default_name(&self) -> String {
        match self.base.port() {
            Some(p) => format!("{}:{p}", self.base.host_str().unwrap_or_default()),
            None => self.base.host_str().unwrap_or_default().to_string(),
        }
    }

    pub fn host(&self) -> &str {
        self.base.host_str().unwrap_or_default()
    }
}

fn host_part(s: &str) -> &str {
    s.rsplit_once(':').map_or(s, |(h, _)| h)
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A URL as it may be shown (errors, logs, pages): without user name, password,
/// query or fragment, which can carry credentials.
pub fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Text that did not parse as a URL, with anything before an `@` in its authority hidden.
fn redact_input(s: &str) -> String {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), s),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_tines_and_custom_domains() {
        for d in ["acme.tines.com", "acme.tines.io", "audit.example.co.uk", "Adjective-Noun-1234.tines.com"] {
            let e = Endpoint::parse(d).unwrap();
            assert_eq!(e.base().scheme(), "https");
            assert_eq!(e.audit_logs_url().path(), "/api/v1/audit_logs");
        }
        assert_eq!(Endpoint::parse("ACME.tines.com").unwrap().default_name(), "acme.tines.com");
    }

    #[test]
    fn refuses_bad_domains_with_the_reason() {
        assert!(matches!(Endpoint::parse("acme"), Err(EndpointError::NoDot(_))));
        assert!(matches!(Endpoint::parse("acme.tines.com/api"), Err(EndpointError::HasSchemeOrPath(_))));
        assert!(matches!(Endpoint::parse("acme.tines.com:443"), Err(EndpointError::HasSchemeOrPath(_))));
        assert!(matches!(Endpoint::parse("ac me.tines.com"), Err(EndpointError::BadCharacters(_))));
        assert!(matches!(Endpoint::parse("acme..tines.com"), Err(EndpointError::BadCharacters(_))));
        assert!(matches!(Endpoint::parse("https://acme.tines.com"), Err(EndpointError::NotLoopback(_))));
        let msg = Endpoint::parse("acme").unwrap_err().to_string();
        assert!(msg.contains("must contain a dot"), "{msg}");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(e.audit_logs_url().as_str(), "http://127.0.0.1:8080/api/v1/audit_logs");
        assert_eq!(e.default_name(), "127.0.0.1:8080");
        assert!(Endpoint::parse("http://localhost:9/").is_ok());
        assert!(Endpoint::parse("http://[::1]:9").is_ok());
        assert!(matches!(Endpoint::parse("http://10.0.0.5:8080"), Err(EndpointError::NotLoopback(_))));
        assert!(matches!(Endpoint::parse("http://acme.tines.com"), Err(EndpointError::NotLoopback(_))));
        assert!(matches!(Endpoint::parse("ftp://127.0.0.1"), Err(EndpointError::NotLoopback(_))));
        let msg = Endpoint::parse("http://user:pw@10.0.0.5").unwrap_err().to_string();
        assert!(!msg.contains("pw"), "{msg}");
    }

    #[test]
    fn password_in_tenant_url_is_refused_and_never_printed() {
        for input in [
            "http://user:hunter2@127.0.0.1:8080",
            "http://user:hunter2@127.0.0.1:8080/api",
            "http://user:hunter2@[::1:8080",
            "user:hunter2@acme.tines.com",
            "https://user:hunter2@acme.tines.com",
        ] {
            let err = Endpoint::parse(input).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{input}: {err}");
        }
        let err = Endpoint::parse("http://user:hunter2@127.0.0.1:8080").unwrap_err();
        assert_eq!(err, EndpointError::HasCredentials("http://127.0.0.1:8080/".into()));
        let err = Endpoint::parse_base_url_env("https://user:hunter2@acme.tines.com").unwrap_err();
        assert!(matches!(err, EndpointError::HasCredentials(_)), "{err:?}");
        let url = Url::parse("http://u:p@127.0.0.1:9/api/v1/audit_logs?page=2&token=t#f").unwrap();
        assert_eq!(display_url(&url), "http://127.0.0.1:9/api/v1/audit_logs");
        let e = Endpoint::parse("http://127.0.0.1:9").unwrap();
        assert_eq!(e.display_audit_logs_url(), "http://127.0.0.1:9/api/v1/audit_logs");
    }

    #[test]
    fn base_url_env_accepts_the_documented_https_form() {
        assert_eq!(Endpoint::parse_base_url_env("https://acme.tines.com/").unwrap().host(), "acme.tines.com");
        assert!(Endpoint::parse_base_url_env("http://127.0.0.1:5000").is_ok());
        assert!(Endpoint::parse_base_url_env("https://acme.tines.com/api").is_err());
    }
}
