//! Exit codes: one per failure a script may want to tell apart.

use crate::config::ConfigError;
use crate::journal::JournalError;
use crate::sinks::object_store::verify_lake::VerifyLakeError;
use crate::sinks::runner::DrainError;
use crate::source::tines::client::FetchError;
use crate::source::tines::collector::CollectError;

/// The process exit codes, as documented in `--help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Internal = 1,
    Usage = 2,
    Unauthorized = 3,
    Forbidden = 4,
    NotFound = 5,
    Unreachable = 6,
    ApiFailing = 7,
    Sink = 8,
    Locked = 9,
    DiskFull = 10,
    JournalUnreachable = 12,
    /// `selftest`: a rule did not fire on its synthetic events, or an alert output failed.
    Selftest = 14,
}

fn from_fetch(e: &FetchError) -> Exit {
    match e {
        FetchError::Unauthorized { .. } => Exit::Unauthorized,
        FetchError::Forbidden { .. } => Exit::Forbidden,
        FetchError::NotFound { .. } => Exit::NotFound,
        FetchError::Unreachable { .. } => Exit::Unreachable,
        FetchError::BadRequest { .. } | FetchError::Exhausted { .. } => Exit::ApiFailing,
    }
}

fn from_journal(e: &JournalError) -> Exit {
    match e {
        JournalError::Locked(_) => Exit::Locked,
        JournalError::DiskFull => Exit::DiskFull,
        JournalError::Missing(_)
        | JournalError::TooNew { .. }
        | JournalError::NeedsUpgrade { .. }
        | JournalError::Config(_)
        | JournalError::NotEmpty(_) => Exit::Usage,
        JournalError::Unavailable(_) => Exit::JournalUnreachable,
        _ => Exit::Internal,
    }
}

/// The exit code for an error, found anywhere in its chain.
pub fn exit_code(e: &anyhow::Error) -> Exit {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<FetchError>() {
            return from_fetch(f);
        }
        if let Some(c) = cause.downcast_ref::<CollectError>() {
            return match c {
                CollectError::Fetch(f) => from_fetch(f),
                CollectError::Journal(j) => from_journal(j),
                CollectError::Unpageable { .. } => Exit::ApiFailing,
            };
        }
        if let Some(j) = cause.downcast_ref::<JournalError>() {
            return from_journal(j);
        }
        if let Some(p) = cause.downcast_ref::<crate::posture::PostureError>() {
            return match p {
                crate::posture::PostureError::Journal(j) => from_journal(j),
                crate::posture::PostureError::UnknownTenant(_) => Exit::Usage,
            };
        }
        if let Some(v) = cause.downcast_ref::<VerifyLakeError>() {
            return match v {
                VerifyLakeError::Config(_) => Exit::Usage,
                VerifyLakeError::Store(_) => Exit::Sink,
            };
        }
        if let Some(d) = cause.downcast_ref::<DrainError>() {
            return match d {
                DrainError::Sink { source: crate::sinks::SinkError::Refused(_), .. } => Exit::Usage,
                DrainError::Sink { .. } => Exit::Sink,
                DrainError::Journal(j) => from_journal(j),
            };
        }
        if let Some(crate::detect::DetectError::Setup(_)) = cause.downcast_ref::<crate::detect::DetectError>() {
            // Rules, GeoIP databases or outputs that cannot be used as configured.
            return Exit::Usage;
        }
        if cause.downcast_ref::<ConfigError>().is_some()
            || cause.downcast_ref::<crate::source::tines::endpoint::EndpointError>().is_some()
            || cause.downcast_ref::<crate::timeutil::TimeArgError>().is_some()
            || cause.downcast_ref::<crate::catalog::UnknownOperation>().is_some()
            || cause.downcast_ref::<crate::signing::KeyError>().is_some()
        {
            return Exit::Usage;
        }
    }
    Exit::Internal
}

/// One line for the user: the error and its causes (a cause the message already quotes is not
/// repeated), without any configured secret.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    crate::secret::redact(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_message_quotes_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no way in");
        let e = anyhow::Error::new(JournalError::Io { path: "d".into(), source: io });
        assert_eq!(describe(&e), "cannot use data directory d: no way in");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe(&e), "outer: inner");
    }
}
