//! `type = "datadog"`: the site (or a test endpoint), the API key, the
//! reserved attributes every log carries, and batching within the intake's limits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::sink::{DatadogSink, Entry};
use crate::format::{Encoder, Shape};
use crate::secret::Secret;
use crate::sinks::http::{self, BatchConfig, RequestConfig, RequestLimits, Resume};

/// The Datadog sites, as in docs.datadoghq.com/api/latest/logs/send-logs.
pub const SITES: [&str; 9] = [
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "uk1.datadoghq.com",
    "ddog-gov.com",
    "us2.ddog-gov.com",
];

/// The intake's limits per request: 1000 logs, 5 MB uncompressed.
pub const MAX_EVENTS: usize = 1_000;
pub const MAX_BYTES: usize = 5_000_000;
const DEFAULT_LIMITS: RequestLimits =
    RequestLimits { max_events: MAX_EVENTS, max_bytes: 4_250_000, linger: Duration::from_secs(5) };

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub format: Shape,
    /// Replace or drop user e-mail, name and IP with a keyed hash (GDPR).
    #[serde(default)]
    pub pseudonymize: Option<crate::format::PseudonymizeConfig>,
    /// A Datadog API key (not an application key); sent as `DD-API-KEY`.
    pub api_key: String,
    /// The Datadog site of the organisation (default `datadoghq.com`).
    #[serde(default)]
    pub site: Option<String>,
    /// Replaces both `https://http-intake.logs.<site>` and `https://api.<site>` (a relay, or a
    /// test receiver on loopback); `/api/v2/logs` and `/api/v1/validate` are appended.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `service` of every log (default `tines`).
    #[serde(default)]
    pub service: Option<String>,
    /// `ddtags` of every log, comma-separated `key:value` (default none).
    #[serde(default)]
    pub ddtags: Option<String>,
    /// `hostname` of every log (default none).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Gzip request bodies (default true, as Datadog recommends).
    #[serde(default)]
    pub gzip: Option<bool>,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub request: RequestConfig,
}

impl fmt::Debug for DatadogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatadogConfig")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("api_key", &"**REDACTED**")
            .field("site", &self.site)
            .field("endpoint", &self.endpoint)
            .field("service", &self.service)
            .field("ddtags", &self.ddtags)
            .field("hostname", &self.hostname)
            .field("gzip", &self.gzip)
            .field("batch", &self.batch)
            .field("request", &self.request)
            .finish()
    }
}

impl DatadogConfig {
    fn site(&self) -> &str {
        self.site.as_deref().unwrap_or("datadoghq.com")
    }

    /// The consumer name when none is configured: `datadog:<site>` (or the endpoint's host).
    pub fn default_name(&self) -> String {
        match &self.endpoint {
            Some(e) => {
                let host = url::Url::parse(e).ok().and_then(|u| u.host_str().map(str::to_string));
                format!("datadog:{}", host.unwrap_or_else(|| e.clone()))
            }
            None => format!("datadog:{}", self.site()),
        }
    }

    /// Validates the config and builds the sink.
    pub fn build(&self, encoder: Encoder) -> Result<DatadogSink, String> {
        let site = self.site().trim().to_ascii_lowercase();
        if !SITES.contains(&site.as_str()) {
            let hint =
                SITES.iter().find(|s| site.ends_with(*s)).map_or(String::new(), |s| format!(" (did you mean {s}?)"));
            return Err(format!("site {site:?} is not a Datadog site{hint}; use one of {}", SITES.join(", ")));
        }
        let (intake, api) = match &self.endpoint {
            Some(e) => {
                let u = http::destination_url("endpoint", e)?;
                (u.clone(), u)
            }
            None => (
                url::Url::parse(&format!("https://http-intake.logs.{site}")).map_err(|e| e.to_string())?,
                url::Url::parse(&format!("https://api.{site}")).map_err(|e| e.to_string())?,
            ),
        };
        let key = self.api_key.trim();
        if key.is_empty() {
            return Err(
                "api_key is empty: set it to a Datadog API key (for example api_key = \"${DD_API_KEY}\")".into()
            );
        }
        let api_key = Secret::new(key);
        let mut key_header = HeaderValue::from_str(api_key.expose())
            .map_err(|_| "api_key contains characters that cannot be sent in a header".to_string())?;
        key_header.set_sensitive(true);
        let request = self.request.build()?;
        let limits = self.batch.build(DEFAULT_LIMITS, (MAX_EVENTS, MAX_BYTES))?;
        let entry = Entry::new(
            http::nonempty("service", &self.service)?.unwrap_or_else(|| "tines".into()),
            http::nonempty("ddtags", &self.ddtags)?,
            http::nonempty("hostname", &self.hostname)?,
        );
        let client = http::client(&intake, request.timeout, true)?;
        Ok(DatadogSink {
            name: self.name.clone().unwrap_or_else(|| self.default_name()),
            encoder,
            client,
            intake: http::join_path(&intake, "/api/v2/logs"),
            validate: http::join_path(&api, "/api/v1/validate"),
            site,
            api_key,
            key_header,
            entry: Arc::new(entry),
            gzip: self.gzip.unwrap_or(true),
            limits,
            retry: request.retry,
            resume: Resume::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> DatadogConfig {
        toml::from_str(&format!("api_key = \"dd-key-123\"\n{extra}")).unwrap()
    }

    #[test]
    fn every_documented_site_builds_to_its_intake_and_api_hosts() {
        for site in SITES {
            let s = parse(&format!("site = \"{site}\"")).build(Encoder::default()).unwrap();
            assert_eq!(s.intake.as_str(), format!("https://http-intake.logs.{site}/api/v2/logs"));
            assert_eq!(s.validate.as_str(), format!("https://api.{site}/api/v1/validate"));
        }
        let c = parse("");
        assert_eq!(c.default_name(), "datadog:datadoghq.com");
        let s = c.build(Encoder::default()).unwrap();
        assert!(!format!("{c:?}{s:?}").contains("dd-key-123"));
    }

    #[test]
    fn refuses_unknown_sites_and_limits_beyond_the_intake() {
        let e = parse("site = \"app.datadoghq.com\"").build(Encoder::default()).unwrap_err();
        assert!(e.contains("did you mean datadoghq.com"), "{e}");
        let e = parse("[batch]\nmax_events = 1001").build(Encoder::default()).unwrap_err();
        assert!(e.contains("batch.max_events"), "{e}");
        let e = parse("[batch]\nmax_bytes = 6000000").build(Encoder::default()).unwrap_err();
        assert!(e.contains("batch.max_bytes"), "{e}");
        let e = parse("endpoint = \"http://intake.example.com\"").build(Encoder::default()).unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        let s = parse("endpoint = \"http://127.0.0.1:9\"").build(Encoder::default()).unwrap();
        assert_eq!(s.intake.as_str(), "http://127.0.0.1:9/api/v2/logs");
        assert!(toml::from_str::<DatadogConfig>("api_key = \"k\"\ntags = \"x\"").is_err());
    }
}
