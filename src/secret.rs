//! Secrets (API keys, tokens, passwords, credential-bearing URLs), kept out
//! of every text that leaves the process.
//!
//! Two layers:
//! - [`Secret`] is a type that cannot be printed: `Debug` and `Display` write
//!   `**REDACTED**`; only `expose()` gives the value.
//! - A process-wide registry of every configured secret value. [`Secret::new`]
//!   registers its value, and configuration loading registers the values that
//!   are plain strings (webhook URLs, header values, HMAC keys). [`redact`]
//!   replaces each of them wherever it appears, and runs at every edge: the log
//!   writer ([`RedactingStderr`]), error messages printed by the CLI, panic
//!   messages, and every HTTP response of the console and API. So a secret
//!   echoed back by an API or proxy (a 400 that quotes the request) is caught
//!   even where no code knew it was there.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;
use std::sync::{OnceLock, RwLock};

/// What a secret is replaced with.
pub const REDACTED: &str = "**REDACTED**";

/// Values shorter than this are not registered: masking every `abc` of every
/// log line would make the logs unreadable, and no real key is that short.
const MIN_LEN: usize = 4;

/// A path of a credential URL is registered only from this length on, so a
/// test receiver's `/json` does not mask `application/json` everywhere.
const MIN_URL_PART_LEN: usize = 8;

/// A secret string; see the module docs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value and registers it for [`redact`].
    pub fn new(value: impl Into<String>) -> Self {
        let s = Secret(value.into());
        register(&s.0);
        s
    }

    /// Wraps a URL whose credential is its password (a database URL) and registers what is
    /// secret in it (see [`register_password_url`]). A URL without a password is not itself
    /// registered, so it stays readable in messages.
    pub fn url(text: impl Into<String>) -> Self {
        let s = Secret(text.into());
        register_password_url(&s.0);
        s
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, stable, non-reversible label for the key (for rate-limiter
    /// sharing and diagnostics): never the key itself.
    pub fn fingerprint(&self) -> String {
        // FNV-1a: not a security boundary, only an identity for equal keys.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.0.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:08x}", h >> 32)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Registered values, longest first (so a URL is masked whole before its path is).
fn registry() -> &'static RwLock<Vec<String>> {
    static R: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    R.get_or_init(RwLock::default)
}

fn insert(values: &mut Vec<String>, v: &str) {
    if v.chars().count() >= MIN_LEN && !values.iter().any(|x| x == v) {
        values.push(v.to_string());
    }
}

/// Registers a secret value for [`redact`], with the forms it takes when
/// quoted in JSON, in a URL, or escaped on an HTML page.
pub fn register(value: &str) {
    let v = value.trim();
    if v.chars().count() < MIN_LEN {
        return;
    }
    let json = serde_json::to_string(v).unwrap_or_default();
    let json = json.get(1..json.len().saturating_sub(1)).unwrap_or_default().to_string();
    let encoded: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
    // As a page shows it: the console's templates escape `& < > "`, the report's also `'`.
    let html = v.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let html_all = html.replace('\'', "&#39;");
    let mut values = registry().write().unwrap_or_else(|p| p.into_inner());
    let before = values.len();
    let url_spaces = encoded.replace('+', "%20");
    for form in [v, json.as_str(), encoded.as_str(), url_spaces.as_str(), html.as_str(), html_all.as_str()] {
        insert(&mut values, form);
    }
    if values.len() != before {
        values.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Registers a URL that is itself a credential (a Slack or Sumo Logic webhook):
/// the URL, its password, and its path and query, which carry the secret.
pub fn register_url(text: &str) {
    register(text);
    let Ok(u) = url::Url::parse(text.trim()) else { return };
    register(u.as_str());
    register_url_password(text);
    if u.path().trim_matches('/').len() >= MIN_URL_PART_LEN {
        register(u.path());
    }
    if let Some(q) = u.query().filter(|q| q.len() >= MIN_URL_PART_LEN) {
        register(q);
    }
}

/// Registers the password of a URL (`https://user:PASSWORD@host`), if it has one.
pub fn register_url_password(text: &str) {
    let Ok(u) = url::Url::parse(text.trim()) else { return };
    if let Some(p) = u.password() {
        register(p);
        register(&percent_decode(p));
    }
}

/// Registers the secrets of a URL whose credential is its password (a database URL): the
/// password, given as `user:PASSWORD@` or as a `password` query parameter, and then the whole
/// URL too. Returns whether it had a password.
pub fn register_password_url(text: &str) -> bool {
    let Ok(u) = url::Url::parse(text.trim()) else { return false };
    let mut found = u.password().is_some();
    register_url_password(text);
    for (k, v) in u.query_pairs() {
        if k.eq_ignore_ascii_case("password") && !v.is_empty() {
            register(&v);
            found = true;
        }
    }
    if found {
        register(text);
        register(u.as_str());
    }
    found
}

/// `%XX` decoded (a URL's password is kept encoded by `url`); `+` stays a `+`.
fn percent_decode(s: &str) -> String {
    let text = format!("x={}", s.replace('+', "%2B"));
    url::form_urlencoded::parse(text.as_bytes()).map(|(_, v)| v.into_owned()).next().unwrap_or_default()
}

/// `text` with every registered secret replaced by `**REDACTED**`. Borrows when
/// there is nothing to replace (the common case: no allocation).
pub fn redact(text: &str) -> Cow<'_, str> {
    let values = registry().read().unwrap_or_else(|p| p.into_inner());
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    for v in values.iter() {
        if out.contains(v.as_str()) {
            out = Cow::Owned(out.replace(v.as_str(), REDACTED));
        }
    }
    out
}

/// A short, printable excerpt of a body someone else sent (an API error, a
/// proxy page), for an error message: its first non-blank line, redacted,
/// with any `Bearer` credential masked whatever it is, at most `max_chars`.
/// A body that echoes the request is thereby cut to its request line.
pub fn excerpt(body: &str, max_chars: usize) -> String {
    let line = body.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    let line = mask_bearer(&redact(line));
    let mut out: String =
        line.chars().take(max_chars).map(|c| if c.is_control() { ' ' } else { c }).collect::<String>();
    if line.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Masks the word after every `Bearer ` (any case), a credential by definition.
fn mask_bearer(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(i) = lower[at..].find("bearer ") {
        let start = at + i + "bearer ".len();
        out.push_str(&text[at..start]);
        let end = text[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | '}' | ']'))
            .map_or(text.len(), |n| start + n);
        if end > start {
            out.push_str(REDACTED);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The log writer: standard error, with every line passed through [`redact`].
/// Each log event is buffered and written whole when the formatter is done.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr;

/// One log event on its way to standard error.
pub struct RedactingWriter(Vec<u8>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(Vec::with_capacity(256))
    }
}

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.0);
        let result = std::io::stderr().lock().write_all(redact(&text).as_bytes());
        self.0.clear();
        result
    }
}

impl Drop for RedactingWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Panic messages go through [`redact`] too (a panic may quote an error or a URL).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".into());
        let thread = std::thread::current();
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        let mut text = format!("thread '{}' panicked at {at}:\n{msg}\n", thread.name().unwrap_or("<unnamed>"));
        let bt = std::backtrace::Backtrace::capture();
        if bt.status() == std::backtrace::BacktraceStatus::Captured {
            text.push_str(&format!("stack backtrace:\n{bt}\n"));
        }
        let _ = std::io::stderr().lock().write_all(redact(&text).as_bytes());
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("sk-live-123");
        assert_eq!(format!("{s}"), "**REDACTED**");
        assert_eq!(format!("{s:?}"), "**REDACTED**");
        assert_eq!(format!("{:?}", Some(&s)), "Some(**REDACTED**)");
        assert!(!s.fingerprint().contains("sk-live"));
        assert_eq!(s.expose(), "sk-live-123");
    }

    #[test]
    fn redacts_every_registered_value_in_its_json_and_url_forms() {
        let _ = Secret::new("unit-key-1\"quoted/+x");
        let text = r#"400: {"echo":"Bearer unit-key-1\"quoted/+x"} url ?k=unit-key-1%22quoted%2F%2Bx raw unit-key-1"quoted/+x"#;
        let out = redact(text);
        assert!(!out.contains("unit-key-1"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
        assert!(matches!(redact("nothing secret here"), Cow::Borrowed(_)));
        let _ = Secret::new("ab");
        assert_eq!(redact("ab cab"), "ab cab", "too short to register");
    }

    #[test]
    fn a_secret_with_markup_characters_is_redacted_as_a_page_shows_it_escaped() {
        let _ = Secret::new("unit-html-<&>\"'-key");
        let page = r#"<td>unit-html-&lt;&amp;&gt;&quot;'-key</td><td>unit-html-&lt;&amp;&gt;&quot;&#39;-key</td>"#;
        let out = redact(page);
        assert!(!out.contains("unit-html"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 2, "{out}");
    }

    #[test]
    fn credential_urls_are_masked_whole_and_by_path_and_password() {
        register_url("https://hooks.slack.example/services/T0UNIT/B0UNIT/unitpathsecret?token=unitquerysecret");
        register_url_password("https://user:unit-pass-word@proxy.example:8443");
        let out = redact(
            "POST https://hooks.slack.example/services/T0UNIT/B0UNIT/unitpathsecret?token=unitquerysecret failed; \
             path /services/T0UNIT/B0UNIT/unitpathsecret; query token=unitquerysecret; unit-pass-word",
        );
        for s in ["unitpathsecret", "unitquerysecret", "unit-pass-word"] {
            assert!(!out.contains(s), "{out}");
        }
        assert!(out.starts_with("POST **REDACTED** failed"), "the URL is masked whole: {out}");
        register_url("http://127.0.0.1:9/json");
        assert_eq!(redact("application/json"), "application/json", "a short path is no secret");
    }

    #[test]
    fn a_database_url_is_masked_by_its_password_and_readable_without_one() {
        let with = Secret::url("postgresql://audit:unit-db-pass-1@db.example:5432/audit?sslmode=require");
        assert_eq!(format!("{with:?}"), REDACTED);
        let out =
            redact("connect unit-db-pass-1 postgresql://audit:unit-db-pass-1@db.example:5432/audit?sslmode=require");
        assert_eq!(out, "connect **REDACTED** **REDACTED**");
        assert!(register_password_url("postgres://audit@db.example/audit?password=unit-query-pass-2"));
        assert_eq!(redact("pw unit-query-pass-2"), "pw **REDACTED**");
        // Without a password the URL says only where the database is: it stays readable.
        let without = Secret::url("postgresql://reader@unit-db-host.example:5432/audit");
        assert_eq!(without.expose(), "postgresql://reader@unit-db-host.example:5432/audit");
        assert_eq!(
            redact("at postgresql://reader@unit-db-host.example:5432/audit"),
            "at postgresql://reader@unit-db-host.example:5432/audit"
        );
        assert!(!register_password_url("not a url"));
    }

    #[test]
    fn an_excerpt_is_one_line_short_and_masks_bearer_tokens() {
        let body = "\n  GET /api/v1/audit_logs?page=1 HTTP/1.1\r\nAuthorization: Bearer never-registered-key\r\n";
        assert_eq!(excerpt(body, 200), "GET /api/v1/audit_logs?page=1 HTTP/1.1");
        let one = r#"{"error":"bad","headers":{"authorization":"Bearer never-registered-key"}}"#;
        let e = excerpt(one, 200);
        assert!(!e.contains("never-registered") && e.contains("Bearer **REDACTED**"), "{e}");
        assert_eq!(excerpt(&"x".repeat(300), 10), format!("{}…", "x".repeat(10)));
        assert_eq!(excerpt("a\u{1b}[31mb", 20), "a [31mb");
    }
}
