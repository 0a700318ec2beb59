//! Sinks: consumers of the journal that deliver events somewhere. Each sink
//! has a durable offset in the journal; the [`runner`] reads a batch past it,
//! has the sink deliver it, and only then commits the new offset, with any
//! state the sink needs to make a retry after a crash exact.

pub mod datadog;
pub mod file;
pub mod http;
pub mod object_store;
pub mod runner;
pub mod splunk_hec;
pub mod stdout;
pub mod syslog;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::journal::EventBatch;

/// A boxed future, for a trait that must stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth trying again later (destination down, timeout, 5xx).
    #[error("{0}")]
    Transient(String),
    /// Will not heal by itself (bad configuration, permission, rejected data).
    #[error("{0}")]
    Permanent(String),
    /// The destination holds data this sink has no record of (or another sink
    /// writes it): nothing was changed, and the settings must say what to do.
    #[error("{0}")]
    Refused(String),
}

/// A destination for journal events.
pub trait Sink: Send {
    /// The consumer name its offset is stored under.
    fn name(&self) -> &str;

    /// Brings the destination back in line with the state committed with the
    /// last offset (for example, cuts what a file sink wrote but never recorded).
    /// Sinks without state (what they delivered stays delivered; the runner
    /// resends from the offset) keep this default.
    fn recover(&mut self, _state: Option<String>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    /// Called with each batch before `deliver`: a state the runner commits at the current
    /// offset first, for a sink that must know after a crash what an interrupted delivery
    /// may have left at the destination (the object-store sink: how far the objects it is
    /// about to write reach). `None`: nothing to commit.
    fn prepare(&mut self, _batch: &EventBatch) -> Option<String> {
        None
    }

    /// Delivers a batch; returns the state to commit with the batch's last seq.
    fn deliver(&mut self, batch: Arc<EventBatch>) -> BoxFuture<'_, Result<Option<String>, SinkError>>;

    /// A state to commit at the current offset after delivery settles (e.g. a
    /// file rotated), or `None` when there is nothing to record.
    fn checkpoint(&mut self) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(async { Ok(None) })
    }

    /// A state to commit at the current offset when a final drain (a one-shot `collect`,
    /// the daemon stopping) has delivered everything: e.g. the object-store sink signs the
    /// digest of what it wrote so far rather than leave it for the next run. `None`: nothing
    /// to record.
    fn seal(&mut self) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(async { Ok(None) })
    }

    /// How big a batch may be, and how long a small backlog may wait to fill one.
    fn policy(&self) -> BatchPolicy {
        BatchPolicy::default()
    }

    /// Tests the destination without delivering anything (for `tines-audit check`):
    /// a short description of what was checked, or why it failed.
    fn health_check(&mut self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(async { Ok("nothing to check".to_string()) })
    }
}

/// Batching of one sink: a batch is delivered once it reaches `max_events` or
/// `max_bytes` of raw records, or once the oldest undelivered event has waited
/// `linger` (a one-shot `collect` flushes regardless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPolicy {
    pub max_events: usize,
    pub max_bytes: usize,
    pub linger: std::time::Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy { max_events: 5_000, max_bytes: 4 * 1024 * 1024, linger: std::time::Duration::ZERO }
    }
}

/// The encoder of a sink: its shape, with pseudonymisation when configured.
pub fn encoder(
    shape: crate::format::Shape,
    pseudonymize: &Option<crate::format::PseudonymizeConfig>,
) -> Result<crate::format::Encoder, String> {
    let p = match pseudonymize {
        Some(c) => Some(c.build().map_err(|e| format!("pseudonymize: {e}"))?),
        None => None,
    };
    Ok(crate::format::Encoder::new(shape, p))
}

/// A sink as configured: a closed set, chosen by `type` in the config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// NDJSON files, one event a line (raw by default), rotated by size.
    File {
        #[serde(default)]
        name: Option<String>,
        path: std::path::PathBuf,
        /// Rotate once the active file reaches this many bytes (default 100 MiB).
        #[serde(default)]
        max_bytes: Option<u64>,
        #[serde(default)]
        format: crate::format::Shape,
        #[serde(default)]
        pseudonymize: Option<crate::format::PseudonymizeConfig>,
        /// Keep a file (and segments) this journal has no record of as it is and
        /// append after it, instead of refusing to start.
        #[serde(default)]
        adopt_existing: bool,
    },
    /// One raw record a line on standard output.
    Stdout {
        #[serde(default)]
        name: Option<String>,
    },
    /// RFC 5424 syslog over TCP (octet counting), TLS or UDP; JSON or CEF messages.
    Syslog(syslog::SyslogConfig),
    /// Splunk HTTP Event Collector.
    SplunkHec(splunk_hec::SplunkHecConfig),
    /// Datadog Logs intake (v2), any Datadog site.
    Datadog(datadog::DatadogConfig),
    /// POST batches (JSON array or NDJSON) to any URL.
    Webhook(webhook::WebhookConfig),
    /// Gzipped NDJSON objects in S3 (and compatibles), GCS, Azure Blob or a directory, exactly once.
    ObjectStore(object_store::ObjectStoreConfig),
}

impl SinkConfig {
    /// Parses the command-line form: `file:<path>`, `file+adopt:<path>` (keep an
    /// existing file and append after it) or `stdout`.
    pub fn parse_flag(spec: &str) -> Result<Self, String> {
        if spec == "stdout" || spec == "-" {
            return Ok(SinkConfig::Stdout { name: None });
        }
        let file = |adopt_existing: bool, path: &str| {
            if path.is_empty() {
                return Err("file sink needs a path: --sink file:/var/lib/tines-audit/audit.ndjson".to_string());
            }
            Ok(SinkConfig::File {
                name: None,
                path: path.into(),
                max_bytes: None,
                format: crate::format::Shape::Raw,
                pseudonymize: None,
                adopt_existing,
            })
        };
        if let Some(path) = spec.strip_prefix("file:") {
            return file(false, path);
        }
        if let Some(path) = spec.strip_prefix("file+adopt:") {
            return file(true, path);
        }
        Err(format!(
            "unknown sink {spec:?}: use file:<path>, file+adopt:<path> or stdout (other sinks are set in the config file)"
        ))
    }

    /// The consumer name: the configured one, else derived from the destination.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::File { name: Some(n), .. } | SinkConfig::Stdout { name: Some(n) } => n.clone(),
            SinkConfig::File { path, .. } => format!("file:{}", file::normalize(path).display()),
            SinkConfig::Stdout { .. } => "stdout".into(),
            SinkConfig::Syslog(c) => c.name.clone().unwrap_or_else(|| c.default_name()),
            SinkConfig::SplunkHec(c) => c.name.clone().unwrap_or_else(|| c.default_name()),
            SinkConfig::Datadog(c) => c.name.clone().unwrap_or_else(|| c.default_name()),
            SinkConfig::Webhook(c) => c.name.clone().unwrap_or_else(|| c.default_name()),
            SinkConfig::ObjectStore(c) => c.name(),
        }
    }

    /// The same sink writing records as they are (`format = "raw"`), for things that are not audit records (alerts).
    pub fn with_raw_format(mut self) -> SinkConfig {
        let raw = crate::format::Shape::Raw;
        match &mut self {
            SinkConfig::File { format, .. } => *format = raw,
            SinkConfig::Stdout { .. } => {}
            SinkConfig::Syslog(c) => c.format = raw,
            SinkConfig::SplunkHec(c) => c.format = raw,
            SinkConfig::Datadog(c) => c.format = raw,
            SinkConfig::Webhook(c) => c.format = raw,
            SinkConfig::ObjectStore(c) => c.format = raw,
        }
        self
    }

    /// Builds the sink that delivers journal events: as [`SinkConfig::build`], and an
    /// object-store sink also signs a digest of each period with `key`, the installation's
    /// signing key.
    pub fn build_signed(&self, key: Arc<crate::signing::SigningKey>) -> Result<Box<dyn Sink>, String> {
        match self {
            SinkConfig::ObjectStore(c) => Ok(Box::new(c.build(encoder(c.format, &c.pseudonymize)?)?.with_digests(key))),
            _ => self.build(),
        }
    }

    /// Builds the sink, ready for [`Sink::recover`]; says what is wrong with its settings otherwise.
    pub fn build(&self) -> Result<Box<dyn Sink>, String> {
        Ok(match self {
            SinkConfig::File { path, max_bytes, format, pseudonymize, adopt_existing, .. } => Box::new(
                file::FileSink::new(self.name(), path.clone(), max_bytes.unwrap_or(file::DEFAULT_MAX_BYTES))
                    .with_encoder(encoder(*format, pseudonymize)?)
                    .adopting_existing(*adopt_existing),
            ),
            SinkConfig::Stdout { .. } => Box::new(stdout::StdoutSink::new(self.name())),
            SinkConfig::Syslog(c) => Box::new(c.build(
                self.name(),
                encoder(c.format, &c.pseudonymize)?,
                encoder(crate::format::Shape::Raw, &c.pseudonymize)?,
            )?),
            SinkConfig::SplunkHec(c) => Box::new(c.build(encoder(c.format, &c.pseudonymize)?)?),
            SinkConfig::Datadog(c) => Box::new(c.build(encoder(c.format, &c.pseudonymize)?)?),
            SinkConfig::Webhook(c) => Box::new(c.build(encoder(c.format, &c.pseudonymize)?)?),
            SinkConfig::ObjectStore(c) => Box::new(c.build(encoder(c.format, &c.pseudonymize)?)?),
        })
    }
}
