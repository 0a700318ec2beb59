//! Splunk HTTP Event Collector: events as stacked JSON envelopes to
//! `/services/collector/event`, gzip, resend from the first rejected event,
//! and optional indexer acknowledgement.

mod config;
mod sink;

pub use config::SplunkHecConfig;
pub use sink::SplunkHecSink;
