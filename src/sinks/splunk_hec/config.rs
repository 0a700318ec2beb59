//! `type = "splunk_hec"`: where the collector is, the token, the envelope's
//! metadata, and how requests are batched and retried.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::sink::{AckSettings, Envelope, SplunkHecSink, new_channel};
use crate::format::{Encoder, Shape};
use crate::secret::Secret;
use crate::sinks::http::{self, BatchConfig, RequestConfig, RequestLimits, Resume};

/// Splunk's documented ceiling is far higher (800 MiB in `limits.conf`); Splunk
/// Cloud and older releases stop at about 1 MB, which is the default.
const HARD_MAX_BYTES: usize = 800 * 1024 * 1024;
const DEFAULT_LIMITS: RequestLimits =
    RequestLimits { max_events: 10_000, max_bytes: 1_000_000, linger: Duration::from_secs(1) };

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub format: Shape,
    /// Replace or drop user e-mail, name and IP with a keyed hash (GDPR).
    #[serde(default)]
    pub pseudonymize: Option<crate::format::PseudonymizeConfig>,
    /// `https://splunk.example.com:8088` (the collector's base URL, without `/services/...`).
    pub endpoint: String,
    /// The HEC token (a GUID); sent as `Authorization: Splunk <token>`.
    pub token: String,
    /// Envelope `host` (default: the Tines tenant the event came from).
    #[serde(default)]
    pub host: Option<String>,
    /// Envelope `source` (default `tines-audit`).
    #[serde(default)]
    pub source: Option<String>,
    /// Envelope `sourcetype` (default `tines:audit`).
    #[serde(default)]
    pub sourcetype: Option<String>,
    /// Envelope `index`; it must be in the token's allowed indexes (default: the token's default index).
    #[serde(default)]
    pub index: Option<String>,
    /// Gzip request bodies (default true).
    #[serde(default)]
    pub gzip: Option<bool>,
    /// Wait for indexer acknowledgement before a batch counts as delivered (default false;
    /// needs `useACK` on the token, Splunk Enterprise only).
    #[serde(default)]
    pub ack: bool,
    /// First wait before asking whether a request was indexed (default 1s); doubles up to 10s.
    #[serde(default)]
    pub ack_poll_interval: Option<String>,
    /// Ack polls before giving up on a batch and sending it again (default 30).
    #[serde(default)]
    pub ack_max_polls: Option<u32>,
    /// Verify the server's TLS certificate (default true). `false` is for lab setups only.
    #[serde(default)]
    pub tls_verify: Option<bool>,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub request: RequestConfig,
}

impl fmt::Debug for SplunkHecConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplunkHecConfig")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("endpoint", &self.endpoint)
            .field("token", &"**REDACTED**")
            .field("host", &self.host)
            .field("source", &self.source)
            .field("sourcetype", &self.sourcetype)
            .field("index", &self.index)
            .field("gzip", &self.gzip)
            .field("ack", &self.ack)
            .field("ack_poll_interval", &self.ack_poll_interval)
            .field("ack_max_polls", &self.ack_max_polls)
            .field("tls_verify", &self.tls_verify)
            .field("batch", &self.batch)
            .field("request", &self.request)
            .finish()
    }
}

impl SplunkHecConfig {
    /// The consumer name when none is configured: `splunk_hec:<host>`.
    pub fn default_name(&self) -> String {
        let host = url::Url::parse(&self.endpoint).ok().and_then(|u| u.host_str().map(str::to_string));
        format!("splunk_hec:{}", host.unwrap_or_else(|| self.endpoint.clone()))
    }

    /// Validates the config and builds the sink.
    pub fn build(&self, encoder: Encoder) -> Result<SplunkHecSink, String> {
        let endpoint = http::destination_url("endpoint", &self.endpoint)?;
        if endpoint.path().contains("/services/collector") {
            return Err(format!(
                "endpoint: give the collector's base URL ({}), without /services/collector/...",
                http::origin(&endpoint)
            ));
        }
        let token = self.token.trim();
        if token.is_empty() {
            return Err("token is empty: set it to the HEC token (for example token = \"${SPLUNK_HEC_TOKEN}\")".into());
        }
        let token = Secret::new(token);
        let mut auth = HeaderValue::from_str(&format!("Splunk {}", token.expose()))
            .map_err(|_| "token contains characters that cannot be sent in a header".to_string())?;
        auth.set_sensitive(true);
        let request = self.request.build()?;
        let limits = self.batch.build(DEFAULT_LIMITS, (usize::MAX, HARD_MAX_BYTES))?;
        let tls_verify = self.tls_verify.unwrap_or(true);
        if !tls_verify {
            tracing::warn!(
                endpoint = %http::origin(&endpoint),
                "splunk_hec: tls_verify = false: the server's certificate is not checked, so anyone on the path can read the token and the events; use it only in a lab"
            );
        }
        let ack = if self.ack {
            let interval = http::duration_field("ack_poll_interval", &self.ack_poll_interval, Duration::from_secs(1))?;
            let max_polls = self.ack_max_polls.unwrap_or(30);
            if max_polls == 0 {
                return Err("ack_max_polls must be at least 1".into());
            }
            Some(AckSettings { interval, max_polls })
        } else {
            if self.ack_poll_interval.is_some() || self.ack_max_polls.is_some() {
                return Err("ack_poll_interval and ack_max_polls only apply with ack = true".into());
            }
            None
        };
        let envelope = Envelope::new(
            http::nonempty("host", &self.host)?,
            http::nonempty("source", &self.source)?.unwrap_or_else(|| "tines-audit".into()),
            http::nonempty("sourcetype", &self.sourcetype)?.unwrap_or_else(|| "tines:audit".into()),
            http::nonempty("index", &self.index)?,
        );
        let client = http::client(&endpoint, request.timeout, tls_verify)?;
        Ok(SplunkHecSink {
            name: self.name.clone().unwrap_or_else(|| self.default_name()),
            encoder,
            client,
            endpoint,
            token,
            auth,
            channel: new_channel(),
            envelope: Arc::new(envelope),
            gzip: self.gzip.unwrap_or(true),
            ack,
            limits,
            retry: request.retry,
            resume: Resume::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<SplunkHecConfig, String> {
        toml::from_str(&format!("endpoint = \"https://splunk.example.com:8088\"\ntoken = \"tok-123\"\n{extra}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn builds_with_defaults_and_never_prints_the_token() {
        let c = parse("").unwrap();
        let sink = c.build(Encoder::default()).unwrap();
        assert!(!format!("{c:?}").contains("tok-123"));
        assert!(!format!("{sink:?}").contains("tok-123"));
        assert_eq!(c.default_name(), "splunk_hec:splunk.example.com");
    }

    #[test]
    fn refuses_bad_settings_with_a_reason() {
        assert!(parse("bogus = 1").unwrap_err().contains("unknown field"));
        let err = |extra: &str| parse(extra).unwrap().build(Encoder::default()).unwrap_err();
        let c: SplunkHecConfig =
            toml::from_str("endpoint = \"http://splunk.example.com:8088\"\ntoken = \"t\"").unwrap();
        assert!(c.build(Encoder::default()).unwrap_err().contains("loopback"));
        assert!(err("ack_max_polls = 3").contains("ack = true"));
        assert!(err("[batch]\nmax_bytes = 10").contains("batch.max_bytes"));
        assert!(err("[request]\ntimeout = \"soon\"").contains("request.timeout"));
        assert!(err("index = \" \"").contains("index"));
        let c: SplunkHecConfig =
            toml::from_str("endpoint = \"https://s.example.com/services/collector/event\"\ntoken = \"t\"").unwrap();
        assert!(c.build(Encoder::default()).unwrap_err().contains("base URL"));
        let c: SplunkHecConfig = toml::from_str("endpoint = \"https://s.example.com\"\ntoken = \"\"").unwrap();
        assert!(c.build(Encoder::default()).unwrap_err().contains("token is empty"));
    }
}
