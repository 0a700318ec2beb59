//! The Datadog delivery loop: one log entry per event, cut into arrays within
//! the intake's limits, each posted with retries; a 413 splits the request.
//!
//! `message` is the encoded event as a JSON *string*: the intake's
//! `HTTPLogItem` model declares `message` a required string, and Datadog
//! parses a message that is itself JSON into the log's attributes, so the
//! audit record stays searchable field by field.

use std::collections::VecDeque;
use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use url::Url;

use crate::format::Encoder;
use crate::journal::{EventBatch, StoredEvent};
use crate::secret::Secret;
use crate::sinks::http::{self, Answer, Encoded, Framing, Reply, RequestLimits, Resume, RetryPolicy};
use crate::sinks::{BatchPolicy, BoxFuture, Sink, SinkError};
use crate::timeutil::{format_rfc3339, now_secs};

/// Datadog accepts logs up to 18 hours old.
const INTAKE_WINDOW_SECS: i64 = 18 * 3600;

/// The constant head of every log entry, JSON-escaped once:
/// `{"ddsource":"tines","service":…[,"ddtags":…][,"hostname":…],"timestamp":`
#[derive(Debug)]
pub struct Entry {
    head: Vec<u8>,
}

impl Entry {
    pub fn new(service: String, ddtags: Option<String>, hostname: Option<String>) -> Entry {
        let mut head = b"{\"ddsource\":\"tines\"".to_vec();
        for (key, value) in [("service", Some(service)), ("ddtags", ddtags), ("hostname", hostname)] {
            if let Some(v) = value {
                write!(head, ",\"{key}\":").expect("Vec write");
                http::push_json_str(&mut head, &v);
            }
        }
        head.extend_from_slice(b",\"timestamp\":");
        Entry { head }
    }

    /// One log entry; `timestamp` in epoch milliseconds.
    fn write(&self, e: &StoredEvent<'_>, encoder: &Encoder, out: &mut Vec<u8>) -> Result<(), SinkError> {
        out.extend_from_slice(&self.head);
        write!(out, "{},\"message\":", e.created_at.saturating_mul(1000)).expect("Vec write");
        let mut event = Vec::with_capacity(e.raw.len() + 16);
        encoder.encode_into(e, &mut event).map_err(|err| {
            SinkError::Permanent(format!("datadog: event seq {} of tenant {}: {err}", e.seq, e.tenant))
        })?;
        let text = std::str::from_utf8(&event)
            .map_err(|_| SinkError::Permanent(format!("datadog: event seq {} encoded to invalid UTF-8", e.seq)))?;
        http::push_json_str(out, text);
        out.push(b'}');
        Ok(())
    }
}

/// Delivers to the Datadog Logs intake; built by [`super::DatadogConfig::build`].
#[derive(Debug)]
pub struct DatadogSink {
    pub(super) name: String,
    pub(super) encoder: Encoder,
    pub(super) client: reqwest::Client,
    pub(super) intake: Url,
    pub(super) validate: Url,
    pub(super) site: String,
    pub(super) api_key: Secret,
    /// The key as a header value, marked sensitive.
    pub(super) key_header: HeaderValue,
    pub(super) entry: Arc<Entry>,
    pub(super) gzip: bool,
    pub(super) limits: RequestLimits,
    pub(super) retry: RetryPolicy,
    pub(super) resume: Resume,
}

enum Posted {
    Accepted,
    TooLarge,
}

impl DatadogSink {
    fn what(&self) -> String {
        format!("Datadog intake {}", http::origin(&self.intake))
    }

    fn refused(&self, reply: &Reply) -> String {
        let advice = match reply.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                "the API key was refused; check `api_key` (an API key, not an application key) and that it belongs to site {}",
                self.site
            ),
            StatusCode::BAD_REQUEST => {
                format!("the payload was refused as malformed: {}", http::scrub(&reply.summary(), &[&self.api_key]))
            }
            _ => http::scrub(&reply.summary(), &[&self.api_key]),
        };
        format!("{} refused the request ({}): {advice}", self.what(), reply.status)
    }

    fn judge(&self, reply: Reply) -> Answer<Posted> {
        match reply.status {
            s if s.is_success() => Answer::Done(Posted::Accepted),
            StatusCode::PAYLOAD_TOO_LARGE => Answer::Done(Posted::TooLarge),
            _ => Answer::from_status(&reply, &[&self.api_key], || self.refused(&reply)),
        }
    }

    async fn post(&self, body: Bytes) -> Result<Posted, SinkError> {
        http::with_retries(&self.what(), &self.retry, || {
            let mut req = self
                .client
                .post(self.intake.clone())
                .header("DD-API-KEY", self.key_header.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            if self.gzip {
                req = req.header(CONTENT_ENCODING, "gzip");
            }
            async move {
                match http::send(req).await {
                    Ok(reply) => self.judge(reply),
                    Err(why) => Answer::Retry { why, after: None },
                }
            }
        })
        .await
    }

    async fn send_all(&self, enc: &Encoded, confirmed: &mut i64) -> Result<(), SinkError> {
        let mut queue: VecDeque<Range<usize>> = enc.plan(0, &self.limits, Framing::Array).into();
        while let Some(r) = queue.pop_front() {
            let raw = enc.body(&r, Framing::Array);
            let body = if self.gzip { http::gzip(raw).await? } else { raw };
            match self.post(body).await? {
                Posted::Accepted => *confirmed = enc.seqs[r.end - 1],
                Posted::TooLarge if r.len() > 1 => {
                    // The intake measures differently from us: halve and go on in order.
                    let mid = r.start + r.len() / 2;
                    tracing::debug!(events = r.len(), "{}: 413, splitting the request", self.what());
                    queue.push_front(mid..r.end);
                    queue.push_front(r.start..mid);
                }
                Posted::TooLarge => {
                    return Err(SinkError::Permanent(format!(
                        "{} refuses a single log (journal seq {}) as too large (413); Datadog takes at most 5 MB per request",
                        self.what(),
                        enc.seqs[r.start]
                    )));
                }
            }
        }
        Ok(())
    }

    async fn deliver_batch(&mut self, batch: Arc<EventBatch>) -> Result<Option<String>, SinkError> {
        let skip = self.resume.take_for(&batch);
        let (entry, encoder) = (self.entry.clone(), self.encoder.clone());
        let stale_before = now_secs() - INTAKE_WINDOW_SECS;
        let enc = Encoded::build(batch.clone(), skip, Some(stale_before), move |e, out| entry.write(e, &encoder, out))
            .await?;
        if enc.stale > 0 {
            tracing::warn!(
                sink = %self.name,
                stale = enc.stale,
                events = enc.len(),
                "datadog: {} of {} events in this batch are older than 18 hours (oldest created {}); Datadog's intake may drop them",
                enc.stale,
                enc.len(),
                format_rfc3339(enc.oldest.unwrap_or_default())
            );
        }
        let mut confirmed = skip;
        let result = self.send_all(&enc, &mut confirmed).await;
        if result.is_err() {
            self.resume.failed(&batch, confirmed);
        }
        result.map(|()| None)
    }

    async fn check(&self) -> Result<String, SinkError> {
        let req = self.client.get(self.validate.clone()).header("DD-API-KEY", self.key_header.clone());
        let reply = http::send(req)
            .await
            .map_err(|why| SinkError::Transient(format!("Datadog {}: key check failed: {why}", self.validate)))?;
        let valid = serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("valid").and_then(|v| v.as_bool()));
        match reply.status {
            s if s.is_success() && valid != Some(false) => {
                Ok(format!("Datadog API key is valid for site {} ({})", self.site, http::origin(&self.validate)))
            }
            s if s.is_success() => Err(SinkError::Permanent(format!(
                "Datadog says the API key is not valid for site {}; check `api_key` and `site`",
                self.site
            ))),
            _ => Err(match Answer::<()>::from_status(&reply, &[&self.api_key], || self.refused(&reply)) {
                Answer::Fail(e) => e,
                _ => SinkError::Transient(format!("Datadog key check answered {}", reply.summary())),
            }),
        }
    }
}

impl Sink for DatadogSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, batch: Arc<EventBatch>) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(self.deliver_batch(batch))
    }

    fn policy(&self) -> BatchPolicy {
        self.limits.policy()
    }

    fn health_check(&mut self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(async move { self.check().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_reserved_attributes_and_the_event_as_a_json_string() {
        let entry = Entry::new("tines".into(), Some("env:prod,team:sec".into()), None);
        let e =
            StoredEvent { seq: 1, tenant: "t", id: 7, created_at: 1_700_000_000, raw: "{\"id\":7,\"op\":\"Login\"}" };
        let mut out = Vec::new();
        entry.write(&e, &Encoder::default(), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["ddsource"], "tines");
        assert_eq!(v["service"], "tines");
        assert_eq!(v["ddtags"], "env:prod,team:sec");
        assert!(v.get("hostname").is_none());
        assert_eq!(v["timestamp"], 1_700_000_000_000i64);
        assert_eq!(v["message"], "{\"id\":7,\"op\":\"Login\"}");
    }
}
