//! Access to the console and API: a bearer token (for scripts and Prometheus)
//! or a session cookie set by the login page (for people). Sessions live in
//! memory and expire; their ids come from the system's secure random source.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};

use crate::secret::Secret;

pub const COOKIE_NAME: &str = "tines_audit_session";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

pub struct Auth {
    token: Secret,
    sessions: Mutex<HashMap<String, Instant>>,
}

/// Equal-length-independent, data-independent comparison, so the time taken does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

impl Auth {
    pub fn new(token: Secret) -> Self {
        Auth { token, sessions: Mutex::new(HashMap::new()) }
    }

    pub fn token_matches(&self, given: &str) -> bool {
        constant_time_eq(given.as_bytes(), self.token.expose().as_bytes())
    }

    /// A new session id after a successful login.
    pub fn new_session(&self) -> String {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("system random source");
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        s.retain(|_, exp| *exp > now);
        s.insert(id.clone(), now + SESSION_TTL);
        id
    }

    pub fn end_session(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers) {
            self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
    }

    /// Whether the request carries the token or a live session.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
            && let Some(t) = v.strip_prefix("Bearer ")
        {
            return self.token_matches(t.trim());
        }
        match session_cookie(headers) {
            Some(id) => {
                let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
                s.get(&id).is_some_and(|exp| *exp > Instant::now())
            }
            None => false,
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
}
