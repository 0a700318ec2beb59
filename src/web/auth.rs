//! Access to the console and API: a bearer token (for scripts and Prometheus)
//! or a session cookie set by the login page (for people). Sessions live in
//! memory and expire; their ids and CSRF tokens come from the system's secure
//! random source. Also the request guards every route passes: the `Host` check
//! (against DNS rebinding), throttling of repeated failed logins, and the
//! security headers of every answer.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE, HOST};

use crate::secret::Secret;

pub const COOKIE_NAME: &str = "tines_audit_session";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins (form or bearer) from one address within [`FAILURE_WINDOW`] before it must wait.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses whose failures are remembered at most: an attacker with many addresses
/// cannot grow the table without bound (the oldest entry goes).
const MAX_TRACKED: usize = 10_000;

/// What a user may do: read everything, or also triage alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Analyst,
}

/// A person or script allowed in, by name (kept with every change they make).
#[derive(Debug, Clone)]
pub struct WebUser {
    pub name: String,
    pub role: Role,
    pub token: Secret,
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

struct Session {
    expires: Instant,
    csrf: String,
    user: usize,
}

pub struct Auth {
    users: Vec<WebUser>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Host names (besides IP literals and `localhost`) the console answers to.
    allowed_hosts: Vec<String>,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// Equal-length-independent, data-independent comparison, so the time taken does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("system random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The credentials of an `Authorization: Bearer` header; the scheme is case-insensitive (RFC 9110).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?.trim_start();
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

impl Auth {
    /// One user, `admin`, who may triage: the single token of `[web] token`.
    pub fn new(token: Secret) -> Self {
        Self::with_users(vec![WebUser { name: "admin".into(), role: Role::Analyst, token }])
    }

    pub fn with_users(users: Vec<WebUser>) -> Self {
        Auth {
            users,
            sessions: Mutex::new(HashMap::new()),
            allowed_hosts: Vec::new(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Host names the console also answers to (as `web.allowed_hosts`), lower case.
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }

    /// The user whose token this is. Every token is compared in full, so the time
    /// taken says nothing about which matched or how much.
    fn user_of(&self, given: &str) -> Option<usize> {
        let mut found = None;
        for (i, u) in self.users.iter().enumerate() {
            if constant_time_eq(given.as_bytes(), u.token.expose().as_bytes()) {
                found = Some(i);
            }
        }
        found
    }

    #[cfg(test)]
    fn token_matches(&self, given: &str) -> bool {
        self.user_of(given).is_some()
    }

    fn identity_of(&self, user: usize) -> Identity {
        let u = &self.users[user];
        Identity { name: u.name.clone(), role: u.role }
    }

    /// A new session for the user whose token was given, if any: (session id, who).
    pub fn log_in(&self, token: &str) -> Option<(String, Identity)> {
        let user = self.user_of(token)?;
        let id = random_hex();
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        s.retain(|_, v| v.expires > now);
        s.insert(id.clone(), Session { expires: now + SESSION_TTL, csrf: random_hex(), user });
        Some((id, self.identity_of(user)))
    }

    /// A new session id for the first user.
    #[cfg(test)]
    fn new_session(&self) -> String {
        let token = self.users[0].token.expose().to_string();
        self.log_in(&token).expect("the first user's token").0
    }

    /// Who the request is from: its bearer token's user, or its live session's.
    pub fn identity(&self, headers: &HeaderMap) -> Option<Identity> {
        if let Some(t) = bearer(headers) {
            return self.user_of(t).map(|u| self.identity_of(u));
        }
        let id = session_cookie(headers)?;
        let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.get(&id).filter(|v| v.expires > Instant::now()).map(|v| self.identity_of(v.user))
    }

    pub fn end_session(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers) {
            self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
    }

    /// Whether the request carries the token or a live session.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        self.identity(headers).is_some()
    }

    /// The CSRF token of the request's live session (what its forms must send back).
    pub fn csrf_token(&self, headers: &HeaderMap) -> Option<String> {
        let id = session_cookie(headers)?;
        let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.get(&id).filter(|v| v.expires > Instant::now()).map(|v| v.csrf.clone())
    }

    /// Whether a state-changing request may go ahead: the bearer token, or a live
    /// session whose CSRF token came with the request (a form field or `X-CSRF-Token`).
    pub fn may_change(&self, headers: &HeaderMap, form_csrf: Option<&str>) -> bool {
        self.changer(headers, form_csrf).is_some()
    }

    /// Who makes a state-changing request, if it may go ahead (see [`Auth::may_change`]).
    pub fn changer(&self, headers: &HeaderMap, form_csrf: Option<&str>) -> Option<Identity> {
        if bearer(headers).is_some() {
            return self.identity(headers);
        }
        let given = form_csrf.or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()))?;
        let want = self.csrf_token(headers)?;
        constant_time_eq(given.as_bytes(), want.as_bytes()).then(|| self.identity(headers)).flatten()
    }

    /// Whether the request's `Host` names this service: an IP literal or `localhost`
    /// (which no DNS rebinding can produce) or one of the allowed names.
    pub fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else { return false };
        let host = host.trim().to_ascii_lowercase();
        // Strip the port: `[::1]:8484`, `127.0.0.1:8484`, `name:8484`.
        let name = match host.strip_prefix('[') {
            Some(rest) => return rest.split_once(']').is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok()),
            None => host.rsplit_once(':').map_or(host.as_str(), |(n, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) { n } else { host.as_str() }
            }),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        name.parse::<IpAddr>().is_ok() || name == "localhost" || self.allowed_hosts.iter().any(|h| h == name)
    }

    /// How long `source` must wait before its credentials are looked at again, if it must.
    pub fn throttled(&self, source: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let times = f.get(&source)?;
        let recent: Vec<&Instant> = times.iter().filter(|t| now.duration_since(**t) < FAILURE_WINDOW).collect();
        (recent.len() >= MAX_FAILURES).then(|| FAILURE_WINDOW.saturating_sub(now.duration_since(*recent[0])))
    }

    /// Counts a refused credential from `source`.
    pub fn record_failure(&self, source: IpAddr) {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() >= MAX_TRACKED && !f.contains_key(&source) {
            f.retain(|_, t| t.back().is_some_and(|last| now.duration_since(*last) < FAILURE_WINDOW));
            if f.len() >= MAX_TRACKED
                && let Some(oldest) = f.iter().min_by_key(|(_, t)| t.back().copied()).map(|(ip, _)| *ip)
            {
                f.remove(&oldest);
            }
        }
        let times = f.entry(source).or_default();
        times.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        times.push_back(now);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_string())
}

/// The `Set-Cookie` value for a session.
pub fn session_cookie_header(id: &str) -> String {
    format!("{COOKIE_NAME}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", SESSION_TTL.as_secs())
}

/// The `Set-Cookie` value that makes the browser forget its session cookie (logout).
pub fn cleared_cookie_header() -> String {
    format!("{COOKIE_NAME}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_sessions() {
        let a = Auth::new(Secret::new("s3cret-token"));
        assert!(a.token_matches("s3cret-token"));
        assert!(!a.token_matches("s3cret-toke"));
        assert!(!a.token_matches("s3cret-tokenX"));
        let mut h = HeaderMap::new();
        assert!(!a.allows(&h));
        h.insert(AUTHORIZATION, "Bearer s3cret-token".parse().unwrap());
        assert!(a.allows(&h));
        let id = a.new_session();
        assert_eq!(id.len(), 64);
        let mut c = HeaderMap::new();
        c.insert(COOKIE, format!("other=1; {COOKIE_NAME}={id}").parse().unwrap());
        assert!(a.allows(&c));
        a.end_session(&c);
        assert!(!a.allows(&c));
        assert!(session_cookie_header(&id).contains("HttpOnly; Secure; SameSite=Strict"));
    }

    #[test]
    fn each_user_is_known_by_their_own_token_and_keeps_their_role() {
        let user = |name: &str, role, token: &str| WebUser { name: name.into(), role, token: Secret::new(token) };
        let a = Auth::with_users(vec![
            user("alice", Role::Analyst, "alice-token-0123456789"),
            user("bob", Role::Viewer, "bob-token-0123456789ab"),
        ]);
        let bearer_of = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
            a.identity(&h)
        };
        assert_eq!(bearer_of("alice-token-0123456789"), Some(Identity { name: "alice".into(), role: Role::Analyst }));
        assert_eq!(bearer_of("bob-token-0123456789ab"), Some(Identity { name: "bob".into(), role: Role::Viewer }));
        assert_eq!(bearer_of("carol-token-0123456789"), None);
        let (id, who) = a.log_in("bob-token-0123456789ab").unwrap();
        assert_eq!(who.name, "bob");
        let mut c = HeaderMap::new();
        c.insert(COOKIE, format!("{COOKIE_NAME}={id}").parse().unwrap());
        assert_eq!(a.identity(&c).map(|i| i.name), Some("bob".into()), "the session is bob's");
        assert!(a.log_in("nobody-0123456789abcdef").is_none());
    }

    #[test]
    fn bearer_scheme_in_any_case_was_refused() {
        let a = Auth::new(Secret::new("s3cret-token"));
        for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, format!("{scheme} s3cret-token").parse().unwrap());
            assert!(a.allows(&h), "{scheme}");
        }
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Basic s3cret-token".parse().unwrap());
        assert!(!a.allows(&h));
    }

    #[test]
    fn a_state_change_needs_the_sessions_csrf_token_or_the_bearer_token() {
        let a = Auth::new(Secret::new("s3cret-token"));
        let id = a.new_session();
        let mut h = HeaderMap::new();
        h.insert(COOKIE, format!("{COOKIE_NAME}={id}").parse().unwrap());
        let csrf = a.csrf_token(&h).expect("a live session has a CSRF token");
        assert!(!a.may_change(&h, None), "the cookie alone is what a forged cross-site form carries");
        assert!(!a.may_change(&h, Some("0123")));
        assert!(a.may_change(&h, Some(&csrf)));
        let mut with_header = h.clone();
        with_header.insert("x-csrf-token", csrf.parse().unwrap());
        assert!(a.may_change(&with_header, None));
        let other = a.new_session();
        let mut o = HeaderMap::new();
        o.insert(COOKIE, format!("{COOKIE_NAME}={other}").parse().unwrap());
        assert!(!a.may_change(&o, Some(&csrf)), "one session's token is no good for another");
        let mut b = HeaderMap::new();
        b.insert(AUTHORIZATION, "Bearer s3cret-token".parse().unwrap());
        assert!(a.may_change(&b, None));
    }

    #[test]
    fn hosts_other_than_ip_literals_localhost_and_allowed_names_are_refused() {
        let a = Auth::new(Secret::new("s3cret-token")).with_allowed_hosts(vec!["Audit.Example.com".into()]);
        let host = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(HOST, v.parse().unwrap());
            a.host_allowed(&h)
        };
        for ok in [
            "127.0.0.1:8484",
            "127.0.0.1",
            "[::1]:8484",
            "localhost:8484",
            "LOCALHOST",
            "10.0.0.5:80",
            "audit.example.com",
            "audit.example.com.:443",
        ] {
            assert!(host(ok), "{ok}");
        }
        for refused in
            ["evil.example:8484", "attacker.test", "127.0.0.1.nip.io:8484", "localhost.evil.test", "[evil]:80", ""]
        {
            assert!(!host(refused), "{refused}");
        }
        assert!(!a.host_allowed(&HeaderMap::new()), "no Host at all");
    }

    #[test]
    fn failed_logins_are_throttled_per_address() {
        let a = Auth::new(Secret::new("s3cret-token"));
        let (x, y): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..MAX_FAILURES - 1 {
            a.record_failure(x);
        }
        assert_eq!(a.throttled(x), None, "under the limit");
        a.record_failure(x);
        let wait = a.throttled(x).expect("at the limit");
        assert!(wait <= FAILURE_WINDOW && wait > Duration::ZERO);
        assert_eq!(a.throttled(y), None, "another address is not held back");
    }
}
