//! A generic HTTP receiver (Sumo Logic HTTP sources, a Tines webhook, custom
//! collectors): events POSTed as a JSON array or NDJSON, with configured headers.

mod config;
mod sink;

pub use config::{WebhookConfig, WebhookEncoding};
pub use sink::WebhookSink;
