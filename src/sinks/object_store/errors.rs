//! Which store failures heal by themselves (the runner retries the batch
//! later) and which need the operator, with what to fix. The store client has
//! already retried 5xx, 429 and connection errors a few times by then.

use ::object_store::Error as StoreError;

use super::config::{Backend, Destination};
use crate::sinks::SinkError;

/// Classifies a failed store call: `doing` is what was attempted ("writing x", "listing y").
pub(crate) fn classify(err: StoreError, dest: &Destination, doing: &str) -> SinkError {
    let at = format!("{}: {doing}", dest.url);
    let missing = || {
        let what = match dest.backend {
            Backend::Azure => "the container does not exist",
            Backend::Local => "the directory does not exist",
            _ => "the bucket does not exist",
        };
        let fix = if dest.backend == Backend::S3 { "url, endpoint and region" } else { "url" };
        SinkError::Permanent(format!("{at}: {what}: check the {fix} ({err})"))
    };
    let refused = || {
        SinkError::Permanent(format!(
            "{at}: refused ({err}): the credentials are wrong (a wrong key or secret is refused too) or lack \
             permission; they need {}",
            dest.backend.permissions()
        ))
    };
    match &err {
        StoreError::NotFound { .. } => missing(),
        StoreError::PermissionDenied { .. } | StoreError::Unauthenticated { .. } => refused(),
        StoreError::NotImplemented { .. } | StoreError::NotSupported { .. } => SinkError::Permanent(format!(
            "{at}: the store does not support it ({err}); this sink needs create-only writes (If-None-Match: *)"
        )),
        StoreError::InvalidPath { .. } | StoreError::UnknownConfigurationKey { .. } => {
            SinkError::Permanent(format!("{at}: {err}"))
        }
        // Some calls (listing) report every status as a generic error.
        _ => match status_in(&err) {
            Some(404) => missing(),
            Some(401 | 403) => refused(),
            Some(s) if (300..400).contains(&s) => SinkError::Permanent(format!(
                "{at}: redirected ({s}): the region or endpoint is wrong for this bucket ({err})"
            )),
            Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => {
                SinkError::Permanent(format!("{at}: the store rejected the request ({err})"))
            }
            // 5xx, throttling, timeouts, connection failures, credential refreshes: try again later.
            _ => SinkError::Transient(format!("{at}: {err}")),
        },
    }
}

/// The HTTP status a store error reports, if any. The client's error types that
/// carry it are private, so it is read from their message ("status code: 503 ...").
fn status_in(err: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if let Some(i) = text.find("status code: ") {
            let digits = text.get(i + 13..i + 16)?;
            if let Ok(s) = digits.parse() {
                return Some(s);
            }
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::object_store::config::ObjectStoreConfig;

    fn dest() -> Destination {
        let cfg: ObjectStoreConfig = toml::from_str(
            "url = \"s3://b-bucket/p\"\nendpoint = \"http://127.0.0.1:9\"\naccess_key_id = \"a\"\nsecret_access_key = \"s\"",
        )
        .unwrap();
        cfg.destination().unwrap()
    }

    #[derive(Debug, thiserror::Error)]
    #[error("Server returned non-2xx status code: {0}: <Error/>")]
    struct Status(&'static str);

    fn generic(status: &'static str) -> StoreError {
        StoreError::Generic { store: "S3", source: Box::new(Status(status)) }
    }

    #[test]
    fn client_errors_need_the_operator_and_the_rest_heals() {
        let d = dest();
        let perm = |e: StoreError| matches!(classify(e, &d, "writing x"), SinkError::Permanent(_));
        assert!(perm(StoreError::PermissionDenied { path: "x".into(), source: Box::new(Status("403 Forbidden")) }));
        assert!(perm(StoreError::NotFound { path: "x".into(), source: Box::new(Status("404 Not Found")) }));
        assert!(perm(generic("400 Bad Request")));
        let listing = classify(generic("404 Not Found"), &d, "listing p").to_string();
        assert!(listing.contains("the bucket does not exist: check the url, endpoint and region"), "{listing}");
        assert!(perm(generic("301 Moved Permanently")));
        assert!(!perm(generic("503 Service Unavailable")));
        assert!(!perm(generic("429 Too Many Requests")));
        assert!(!perm(generic("408 Request Timeout")));
        let io = StoreError::Generic { store: "S3", source: "error sending request: connection refused".into() };
        assert!(!perm(io));
        let msg = classify(StoreError::Unauthenticated { path: "x".into(), source: "401".into() }, &d, "writing x")
            .to_string();
        assert!(msg.contains("s3:PutObject") && msg.starts_with("s3://b-bucket/p: writing x"), "{msg}");
    }
}
