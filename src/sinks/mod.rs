//! Sinks: consumers of the journal that deliver events somewhere. Each sink
//! has a durable offset in the journal; the [`runner`] reads a batch past it,
//! has the sink deliver it, and only then commits the new offset, with any
//! state the sink needs to make a retry after a crash exact.

pub mod file;
pub mod object_store;
pub mod runner;
pub mod stdout;

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
}

/// A destination for journal events.
pub trait Sink: Send {
    /// The consumer name its offset is stored under.
    fn name(&self) -> &str;

    /// Brings the destination back in line with the state committed with the
    /// last offset (for example, cuts a file back to its committed length).
    fn recover(&mut self, state: Option<String>) -> BoxFuture<'_, Result<(), SinkError>>;

    /// Delivers a batch; returns the state to commit with the batch's last seq.
    fn deliver(&mut self, batch: Arc<EventBatch>) -> BoxFuture<'_, Result<Option<String>, SinkError>>;

    /// A state to commit at the current offset after delivery settles (e.g. a
    /// file rotated), or `None` when there is nothing to record.
    fn checkpoint(&mut self) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
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

/// A sink as configured: a closed set, chosen by `type` in the config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// NDJSON files, one raw record a line, rotated by size.
    File {
        #[serde(default)]
        name: Option<String>,
        path: std::path::PathBuf,
        /// Rotate once the active file reaches this many bytes (default 100 MiB).
        #[serde(default)]
        max_bytes: Option<u64>,
    },
    /// One raw record a line on standard output.
    Stdout {
        #[serde(default)]
        name: Option<String>,
    },
}

impl SinkConfig {
    /// Parses the command-line form: `file:<path>` or `stdout`.
    pub fn parse_flag(spec: &str) -> Result<Self, String> {
        if spec == "stdout" || spec == "-" {
            return Ok(SinkConfig::Stdout { name: None });
        }
        if let Some(path) = spec.strip_prefix("file:") {
            if path.is_empty() {
                return Err("file sink needs a path: --sink file:/var/lib/tines-audit/audit.ndjson".into());
            }
            return Ok(SinkConfig::File { name: None, path: path.into(), max_bytes: None });
        }
        Err(format!("unknown sink {spec:?}: use file:<path> or stdout (other sinks are set in the config file)"))
    }

    /// The consumer name: the configured one, else derived from the destination.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::File { name: Some(n), .. } | SinkConfig::Stdout { name: Some(n) } => n.clone(),
            SinkConfig::File { path, .. } => format!("file:{}", path.display()),
            SinkConfig::Stdout { .. } => "stdout".into(),
        }
    }

    /// Builds the sink, ready for [`Sink::recover`].
    pub fn build(&self) -> Box<dyn Sink> {
        match self {
            SinkConfig::File { path, max_bytes, .. } => {
                Box::new(file::FileSink::new(self.name(), path.clone(), max_bytes.unwrap_or(file::DEFAULT_MAX_BYTES)))
            }
            SinkConfig::Stdout { .. } => Box::new(stdout::StdoutSink::new(self.name())),
        }
    }
}
