//! Secrets (API keys, tokens) as a type that cannot be printed: `Debug` and
//! `Display` write `**REDACTED**`, so a key never leaks through a log line,
//! an error or a panic message by accident. Only `expose()` gives the value.

use std::fmt;

/// A secret string; see the module docs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
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
        f.write_str("**REDACTED**")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
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
}
