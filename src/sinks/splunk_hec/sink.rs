//! The HEC delivery loop: encode envelopes, cut them into requests, send each
//! with retries, resend from `invalid-event-number` when HEC refuses one
//! event, and with indexer acknowledgement wait until Splunk says each
//! request is indexed before the batch counts as delivered.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use url::Url;

use crate::format::Encoder;
use crate::journal::{EventBatch, StoredEvent};
use crate::secret::Secret;
use crate::sinks::http::{self, Answer, Encoded, Framing, Reply, RequestLimits, Resume, RetryPolicy};
use crate::sinks::{BatchPolicy, BoxFuture, Sink, SinkError};

const CHANNEL_HEADER: &str = "X-Splunk-Request-Channel";
/// Longest wait between two ack polls.
const ACK_MAX_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckSettings {
    pub interval: Duration,
    pub max_polls: u32,
}

/// The constant parts of every envelope, JSON-escaped once.
#[derive(Debug)]
pub struct Envelope {
    /// `"host"` value; `None`: the event's tenant.
    host: Option<Vec<u8>>,
    /// `,"source":…,"sourcetype":…[,"index":…],"event":`
    rest: Vec<u8>,
}

impl Envelope {
    pub fn new(host: Option<String>, source: String, sourcetype: String, index: Option<String>) -> Envelope {
        let json = |s: &str| {
            let mut v = Vec::new();
            http::push_json_str(&mut v, s);
            v
        };
        let mut rest = Vec::new();
        for (key, value) in [("source", Some(source)), ("sourcetype", Some(sourcetype)), ("index", index)] {
            if let Some(v) = value {
                write!(rest, ",\"{key}\":").expect("Vec write");
                rest.extend_from_slice(&json(&v));
            }
        }
        rest.extend_from_slice(b",\"event\":");
        Envelope { host: host.as_deref().map(json), rest }
    }

    /// One envelope and its newline. `time` is whole seconds, an integer: never exponent form.
    fn write(&self, e: &StoredEvent<'_>, encoder: &Encoder, out: &mut Vec<u8>) -> Result<(), SinkError> {
        write!(out, "{{\"time\":{},\"host\":", e.created_at).expect("Vec write");
        match &self.host {
            Some(h) => out.extend_from_slice(h),
            None => http::push_json_str(out, e.tenant),
        }
        out.extend_from_slice(&self.rest);
        encoder.encode_into(e, out).map_err(|err| {
            SinkError::Permanent(format!("splunk_hec: event seq {} of tenant {}: {err}", e.seq, e.tenant))
        })?;
        out.extend_from_slice(b"}\n");
        Ok(())
    }
}

/// Delivers to a Splunk HTTP Event Collector; built by [`super::SplunkHecConfig::build`].
#[derive(Debug)]
pub struct SplunkHecSink {
    pub(super) name: String,
    pub(super) encoder: Encoder,
    pub(super) client: reqwest::Client,
    pub(super) endpoint: Url,
    pub(super) token: Secret,
    /// `Splunk <token>`, marked sensitive.
    pub(super) auth: HeaderValue,
    /// A random UUIDv4 per sink instance, sent on every request as HEC requires when the token has acks on.
    pub(super) channel: String,
    pub(super) envelope: Arc<Envelope>,
    pub(super) gzip: bool,
    pub(super) ack: Option<AckSettings>,
    pub(super) limits: RequestLimits,
    pub(super) retry: RetryPolicy,
    pub(super) resume: Resume,
}

/// A random version-4 UUID, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`.
pub fn new_channel() -> String {
    let mut b = [0u8; 16];
    b.iter_mut().for_each(|x| *x = fastrand::u8(..));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// HEC's JSON answer: `{"text":..,"code":..}` plus `ackId` or `invalid-event-number`.
#[derive(Debug, Default, Deserialize)]
struct HecReply {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default, rename = "ackId")]
    ack_id: Option<u64>,
    #[serde(default, rename = "invalid-event-number")]
    invalid_event_number: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
struct AckReply {
    #[serde(default)]
    acks: std::collections::HashMap<String, bool>,
}

enum Posted {
    /// Every event of the request was accepted; with acks on, `Some(ackId)`.
    Accepted(Option<u64>),
    /// HEC indexed the events before number `at` (0-based in the request) and none from it on.
    Invalid { at: usize, why: String },
}

/// What an HEC status code means, and what to do about it.
fn code_meaning(code: i64) -> Option<&'static str> {
    Some(match code {
        1 => "token disabled: enable the token under Settings > Data inputs > HTTP Event Collector",
        2 => "token is required: no token reached Splunk; set `token`",
        3 => "invalid authorization: Splunk refused the Authorization header; check `token`",
        4 => {
            "invalid token: Splunk does not know this token; check `token` against Settings > Data inputs > HTTP Event Collector"
        }
        5 => "no data: the request was empty",
        6 => "invalid data format",
        7 => {
            "incorrect index: the index is not among the token's allowed indexes; fix `index` or the token's allowed indexes"
        }
        8 => "internal server error",
        9 => "server is busy",
        10 => "data channel is missing: the token has indexer acknowledgement on",
        11 => "invalid data channel",
        12 => "event field is required",
        13 => "event field cannot be blank",
        14 => {
            "indexer acknowledgement is disabled for this token: set ack = false, or turn acknowledgement on for the token"
        }
        15 => "error in handling indexed fields",
        16 => "query string authorization is not enabled",
        _ => return None,
    })
}

/// Moves the confirmed seq past the leading requests that need no (more) acknowledgement.
fn settle(pending: &mut VecDeque<(Option<u64>, i64)>, confirmed: &mut i64) {
    while let Some((None, seq)) = pending.front() {
        *confirmed = *seq;
        pending.pop_front();
    }
}

impl SplunkHecSink {
    fn origin(&self) -> String {
        http::origin(&self.endpoint)
    }

    fn what(&self) -> String {
        format!("Splunk HEC {}", self.origin())
    }

    /// Why HEC refused a request, for the operator; never contains the token.
    fn refused(&self, reply: &Reply, hec: &HecReply) -> String {
        let meaning = match hec.code.and_then(code_meaning) {
            Some(m) => format!("code {}, {m}", hec.code.unwrap_or_default()),
            None if matches!(reply.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                "authentication failed: check `token`".to_string()
            }
            None if reply.status == StatusCode::PAYLOAD_TOO_LARGE => {
                "the request is larger than the collector accepts: lower batch.max_bytes".to_string()
            }
            None => http::scrub(&reply.summary(), &[&self.token]),
        };
        format!("{} refused the request ({}): {meaning}", self.what(), reply.status)
    }

    fn judge(&self, reply: Reply) -> Answer<Posted> {
        let hec: HecReply = serde_json::from_slice(&reply.body).unwrap_or_default();
        if reply.status.is_success() {
            return Answer::Done(Posted::Accepted(hec.ack_id));
        }
        if reply.status == StatusCode::BAD_REQUEST
            && let Some(at) = hec.invalid_event_number
        {
            let why = match hec.code.and_then(code_meaning) {
                Some(m) => format!("code {}, {m}", hec.code.unwrap_or_default()),
                None => hec.text.clone().unwrap_or_else(|| reply.summary()),
            };
            return Answer::Done(Posted::Invalid { at, why });
        }
        Answer::from_status(&reply, &[&self.token], || self.refused(&reply, &hec))
    }

    fn url(&self, path: &str) -> Url {
        http::join_path(&self.endpoint, path)
    }

    async fn post_events(&self, body: Bytes) -> Result<Posted, SinkError> {
        let url = self.url("/services/collector/event");
        http::with_retries(&self.what(), &self.retry, || {
            let mut req = self
                .client
                .post(url.clone())
                .header(AUTHORIZATION, self.auth.clone())
                .header(CHANNEL_HEADER, &self.channel)
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

    /// Asks which of `ids` are indexed; failures that heal count as "not yet".
    async fn poll_acks(&self, ids: &[u64]) -> Result<HashSet<u64>, SinkError> {
        let req = self
            .client
            .post(self.url("/services/collector/ack"))
            .header(AUTHORIZATION, self.auth.clone())
            .header(CHANNEL_HEADER, &self.channel)
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::json!({ "acks": ids }).to_string());
        let reply = match http::send(req).await {
            Ok(r) => r,
            Err(why) => {
                tracing::debug!("{}: ack poll failed: {why}", self.what());
                return Ok(HashSet::new());
            }
        };
        if !reply.status.is_success() {
            let hec: HecReply = serde_json::from_slice(&reply.body).unwrap_or_default();
            return match Answer::<()>::from_status(&reply, &[&self.token], || self.refused(&reply, &hec)) {
                Answer::Fail(e) => Err(e),
                _ => Ok(HashSet::new()),
            };
        }
        let acks: AckReply = serde_json::from_slice(&reply.body).unwrap_or_default();
        Ok(acks.acks.into_iter().filter(|(_, done)| *done).filter_map(|(id, _)| id.parse().ok()).collect())
    }

    /// Waits until every request in `pending` is indexed, moving `confirmed` along.
    async fn await_acks(
        &self,
        ack: AckSettings,
        pending: &mut VecDeque<(Option<u64>, i64)>,
        confirmed: &mut i64,
    ) -> Result<(), SinkError> {
        let mut wait = ack.interval;
        for _ in 0..ack.max_polls {
            settle(pending, confirmed);
            let ids: Vec<u64> = pending.iter().filter_map(|p| p.0).collect();
            if ids.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(ACK_MAX_INTERVAL.max(ack.interval));
            let done = self.poll_acks(&ids).await?;
            for p in pending.iter_mut() {
                if p.0.is_some_and(|id| done.contains(&id)) {
                    p.0 = None;
                }
            }
        }
        settle(pending, confirmed);
        let open = pending.iter().filter(|p| p.0.is_some()).count();
        if open == 0 {
            return Ok(());
        }
        Err(SinkError::Transient(format!(
            "{}: {open} request(s) not acknowledged as indexed after {} polls; the batch will be sent again, which may duplicate events indexed meanwhile",
            self.what(),
            ack.max_polls
        )))
    }

    async fn body(&self, enc: &Encoded, r: &std::ops::Range<usize>) -> Result<Bytes, SinkError> {
        let raw = enc.body(r, Framing::Lines);
        if self.gzip { http::gzip(raw).await } else { Ok(raw) }
    }

    /// Sends every encoded envelope; `confirmed` follows the last seq Splunk surely has.
    async fn send_all(&self, batch: &EventBatch, enc: &Encoded, confirmed: &mut i64) -> Result<(), SinkError> {
        let mut pending: VecDeque<(Option<u64>, i64)> = VecDeque::new();
        let mut rejected: Option<usize> = None;
        let mut from = 0;
        while from < enc.len() {
            let r = enc.next_request(from, &self.limits, Framing::Lines);
            let body = self.body(enc, &r).await?;
            match self.post_events(body).await? {
                Posted::Accepted(id) => {
                    pending.push_back((id.filter(|_| self.ack.is_some()), enc.seqs[r.end - 1]));
                    from = r.end;
                }
                Posted::Invalid { at, why } => {
                    if at >= r.len() {
                        return Err(SinkError::Permanent(format!(
                            "{}: refused event number {at} of a request with {} events ({why})",
                            self.what(),
                            r.len()
                        )));
                    }
                    let bad = r.start + at;
                    let seq = enc.seqs[bad];
                    if rejected == Some(bad) {
                        let e = batch.iter().find(|e| e.seq == seq);
                        let (tenant, id) = e.map_or(("?", 0), |e| (e.tenant, e.id));
                        return Err(SinkError::Permanent(format!(
                            "{} refuses event id {id} of tenant {tenant} (journal seq {seq}) twice: {why}. The events before it are indexed; delivery stops at this event until it is fixed (check the sink's format, index and sourcetype)",
                            self.what()
                        )));
                    }
                    if at > 0 {
                        pending.push_back((None, enc.seqs[bad - 1]));
                    }
                    tracing::warn!(
                        sink = %self.name,
                        seq,
                        "{} refused one event ({why}); the {at} before it are indexed; sending again from it",
                        self.what()
                    );
                    rejected = Some(bad);
                    from = bad;
                }
            }
            settle(&mut pending, confirmed);
        }
        if let Some(ack) = self.ack {
            self.await_acks(ack, &mut pending, confirmed).await?;
        }
        Ok(())
    }

    async fn deliver_batch(&mut self, batch: Arc<EventBatch>) -> Result<Option<String>, SinkError> {
        let skip = self.resume.take_for(&batch);
        let (envelope, encoder) = (self.envelope.clone(), self.encoder.clone());
        let enc = Encoded::build(batch.clone(), skip, None, move |e, out| envelope.write(e, &encoder, out)).await?;
        let mut confirmed = skip;
        let result = self.send_all(&batch, &enc, &mut confirmed).await;
        if result.is_err() {
            self.resume.failed(&batch, confirmed);
        }
        result.map(|()| None)
    }

    async fn check(&self) -> Result<String, SinkError> {
        let req = self.client.get(self.url("/services/collector/health")).header(AUTHORIZATION, self.auth.clone());
        let reply = http::send(req)
            .await
            .map_err(|why| SinkError::Transient(format!("{}: health check failed: {why}", self.what())))?;
        match reply.status {
            s if s.is_success() => Ok(format!("{} is healthy and accepts the token", self.what())),
            StatusCode::BAD_REQUEST => Err(SinkError::Permanent(format!(
                "{}: health check says the token is invalid (400); check `token` against Settings > Data inputs > HTTP Event Collector",
                self.what()
            ))),
            StatusCode::SERVICE_UNAVAILABLE => Err(SinkError::Transient(format!(
                "{}: the collector's queues are full (503); it accepts events again once indexing catches up",
                self.what()
            ))),
            _ => {
                let hec: HecReply = serde_json::from_slice(&reply.body).unwrap_or_default();
                Err(match Answer::<()>::from_status(&reply, &[&self.token], || self.refused(&reply, &hec)) {
                    Answer::Fail(e) => e,
                    _ => SinkError::Transient(format!("{}: health check answered {}", self.what(), reply.summary())),
                })
            }
        }
    }
}

impl Sink for SplunkHecSink {
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
    fn channels_are_uuid_v4() {
        let c = new_channel();
        assert_eq!(c.len(), 36);
        assert_eq!(&c[14..15], "4");
        assert!(matches!(&c[19..20], "8" | "9" | "a" | "b"), "{c}");
        assert_ne!(c, new_channel());
    }

    #[test]
    fn envelopes_carry_plain_integer_time_and_escaped_metadata() {
        let env = Envelope::new(None, "tines-audit".into(), "tines:audit".into(), Some("main\"x".into()));
        let e = StoredEvent { seq: 1, tenant: "acme.tines.com", id: 7, created_at: 1_790_000_000, raw: "{\"id\":7}" };
        let mut out = Vec::new();
        env.write(&e, &Encoder::default(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time\":1790000000,\"host\":\"acme.tines.com\",\"source\":\"tines-audit\",\"sourcetype\":\"tines:audit\",\"index\":\"main\\\"x\",\"event\":{\"id\":7}}\n"
        );
    }
}
