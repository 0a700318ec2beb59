//! The webhook delivery loop: encode, cut into requests, POST each with retries.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap};
use url::Url;

use super::WebhookEncoding;
use crate::format::Encoder;
use crate::journal::EventBatch;
use crate::secret::Secret;
use crate::sinks::http::{self, Answer, Encoded, Framing, Reply, RequestLimits, Resume, RetryPolicy};
use crate::sinks::{BatchPolicy, BoxFuture, Sink, SinkError};

/// Delivers to any HTTP receiver; built by [`super::WebhookConfig::build`].
pub struct WebhookSink {
    pub(super) name: String,
    pub(super) encoder: Encoder,
    pub(super) client: reqwest::Client,
    /// May carry a secret in its path: print [`http::origin`] only.
    pub(super) url: Url,
    /// Configured headers, every value marked sensitive.
    pub(super) headers: HeaderMap,
    /// The header values, to scrub from anything the receiver echoes.
    pub(super) secrets: Vec<Secret>,
    pub(super) encoding: WebhookEncoding,
    pub(super) gzip: bool,
    pub(super) limits: RequestLimits,
    pub(super) retry: RetryPolicy,
    pub(super) resume: Resume,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("url", &http::origin(&self.url))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("encoding", &self.encoding)
            .field("gzip", &self.gzip)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    fn what(&self) -> String {
        format!("webhook {}", http::origin(&self.url))
    }

    fn framing(&self) -> Framing {
        match self.encoding {
            WebhookEncoding::JsonArray => Framing::Array,
            WebhookEncoding::Ndjson => Framing::Lines,
        }
    }

    fn refused(&self, reply: &Reply) -> String {
        let secrets: Vec<&Secret> = self.secrets.iter().collect();
        let advice = match reply.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                "authentication failed: check the headers that carry credentials".to_string()
            }
            StatusCode::NOT_FOUND => "nothing receives at this URL: check `url`".to_string(),
            StatusCode::PAYLOAD_TOO_LARGE => "the request is too large for the receiver: lower batch.max_bytes".into(),
            _ => http::scrub(&reply.summary(), &secrets),
        };
        format!("{} refused the request ({}): {advice}", self.what(), reply.status)
    }

    async fn post(&self, body: Bytes) -> Result<(), SinkError> {
        let content_type = match self.encoding {
            WebhookEncoding::JsonArray => "application/json",
            WebhookEncoding::Ndjson => "application/x-ndjson",
        };
        http::with_retries(&self.what(), &self.retry, || {
            let mut req = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, content_type)
                .body(body.clone());
            if self.gzip {
                req = req.header(CONTENT_ENCODING, "gzip");
            }
            async move {
                match http::send(req).await {
                    Ok(reply) if reply.status.is_success() => Answer::Done(()),
                    Ok(reply) => {
                        Answer::from_status(&reply, &self.secrets.iter().collect::<Vec<_>>(), || self.refused(&reply))
                    }
                    Err(why) => Answer::Retry { why, after: None },
                }
            }
        })
        .await
    }

    async fn deliver_batch(&mut self, batch: Arc<EventBatch>) -> Result<Option<String>, SinkError> {
        let skip = self.resume.take_for(&batch);
        let encoder = self.encoder.clone();
        let lines = self.framing() == Framing::Lines;
        let enc = Encoded::build(batch.clone(), skip, None, move |e, out| {
            encoder.encode_into(e, out).map_err(|err| {
                SinkError::Permanent(format!("webhook: event seq {} of tenant {}: {err}", e.seq, e.tenant))
            })?;
            if lines {
                out.push(b'\n');
            }
            Ok(())
        })
        .await?;
        let mut confirmed = skip;
        let mut result = Ok(None);
        for r in enc.plan(0, &self.limits, self.framing()) {
            let raw = enc.body(&r, self.framing());
            let body = match if self.gzip { http::gzip(raw).await } else { Ok(raw) } {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if let Err(e) = self.post(body).await {
                result = Err(e);
                break;
            }
            confirmed = enc.seqs[r.end - 1];
        }
        if result.is_err() {
            self.resume.failed(&batch, confirmed);
        }
        result
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, batch: Arc<EventBatch>) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(self.deliver_batch(batch))
    }

    fn policy(&self) -> BatchPolicy {
        self.limits.policy()
    }

    // No health check: a generic receiver has no side-effect-free probe, and an
    // empty POST could trigger a Tines story or a collector's alerting.
}
