//! `type = "webhook"`: the URL, extra headers (each value treated as a
//! secret), the body encoding, and batching.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::sink::WebhookSink;
use crate::format::{Encoder, Shape};
use crate::secret::Secret;
use crate::sinks::http::{self, BatchConfig, RequestConfig, RequestLimits, Resume};

const DEFAULT_LIMITS: RequestLimits =
    RequestLimits { max_events: 1_000, max_bytes: 1_000_000, linger: Duration::from_secs(1) };
const HARD_LIMITS: (usize, usize) = (100_000, 100 * 1024 * 1024);
/// Headers the sink sets itself.
const RESERVED: [&str; 5] = ["content-length", "content-encoding", "transfer-encoding", "host", "connection"];

/// How events are put in a request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEncoding {
    /// `[{...},{...}]`, `Content-Type: application/json`.
    JsonArray,
    /// One JSON object a line, `Content-Type: application/x-ndjson`.
    #[default]
    Ndjson,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub format: Shape,
    /// Replace or drop user e-mail, name and IP with a keyed hash (GDPR).
    #[serde(default)]
    pub pseudonymize: Option<crate::format::PseudonymizeConfig>,
    /// Where to POST: `https://…`, or `http://` on loopback only. The path may carry a
    /// secret (Sumo Logic's does), so only scheme, host and port are ever printed.
    pub url: String,
    /// Extra headers, for example `Authorization = "Bearer ${TOKEN}"`; every value is a secret.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub encoding: WebhookEncoding,
    /// Gzip request bodies (default false: not every receiver takes them).
    #[serde(default)]
    pub gzip: bool,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub request: RequestConfig,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = url::Url::parse(&self.url).map_or_else(|_| "**REDACTED**".to_string(), |u| http::origin(&u));
        let headers: BTreeMap<&str, &str> = self.headers.keys().map(|k| (k.as_str(), "**REDACTED**")).collect();
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("url", &url)
            .field("headers", &headers)
            .field("encoding", &self.encoding)
            .field("gzip", &self.gzip)
            .field("batch", &self.batch)
            .field("request", &self.request)
            .finish()
    }
}

impl WebhookConfig {
    /// The consumer name when none is configured: `webhook:<host>`.
    pub fn default_name(&self) -> String {
        let host = url::Url::parse(&self.url).ok().and_then(|u| u.host_str().map(str::to_string));
        format!("webhook:{}", host.unwrap_or_else(|| "?".into()))
    }

    /// Validates the config and builds the sink.
    pub fn build(&self, encoder: Encoder) -> Result<WebhookSink, String> {
        let url = http::destination_url("url", &self.url)?;
        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        for (name, value) in &self.headers {
            let hn = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
            if RESERVED.contains(&hn.as_str()) {
                return Err(format!("headers: {name} is set by the sink itself; remove it"));
            }
            let mut hv = HeaderValue::from_str(value)
                .map_err(|_| format!("headers: the value of {name} contains characters that cannot be sent"))?;
            hv.set_sensitive(true);
            headers.insert(hn, hv);
            secrets.push(Secret::new(value.clone()));
        }
        let request = self.request.build()?;
        let limits = self.batch.build(DEFAULT_LIMITS, HARD_LIMITS)?;
        let client = http::client(&url, request.timeout, true)?;
        Ok(WebhookSink {
            name: self.name.clone().unwrap_or_else(|| self.default_name()),
            encoder,
            client,
            url,
            headers,
            secrets,
            encoding: self.encoding,
            gzip: self.gzip,
            limits,
            retry: request.retry,
            resume: Resume::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_and_url_paths_never_print() {
        let c: WebhookConfig = toml::from_str(
            "url = \"https://collectors.example.com/receiver/v1/http/SECRETCODE\"\nencoding = \"json_array\"\n[headers]\nX-Api-Key = \"hdr-secret\"",
        )
        .unwrap();
        let s = c.build(Encoder::default()).unwrap();
        let printed = format!("{c:?} {s:?}");
        assert!(!printed.contains("hdr-secret") && !printed.contains("SECRETCODE"), "{printed}");
        assert!(printed.contains("X-Api-Key") || printed.contains("x-api-key"));
        assert_eq!(c.default_name(), "webhook:collectors.example.com");
    }

    #[test]
    fn refuses_reserved_headers_plain_http_and_unknown_encodings() {
        let c: WebhookConfig = toml::from_str("url = \"https://h.example.com\"\n[headers]\nHost = \"x\"").unwrap();
        assert!(c.build(Encoder::default()).unwrap_err().contains("set by the sink"));
        let c: WebhookConfig = toml::from_str("url = \"http://h.example.com\"").unwrap();
        assert!(c.build(Encoder::default()).unwrap_err().contains("loopback"));
        assert!(toml::from_str::<WebhookConfig>("url = \"https://h.example.com\"\nencoding = \"csv\"").is_err());
        assert!(toml::from_str::<WebhookConfig>("url = \"https://h.example.com\"\nmethod = \"PUT\"").is_err());
    }
}
