//! The Tines audit-log API: tenant addresses, wire format, the HTTP client
//! and the windowed, exactly-once collector.

pub mod client;
pub mod collector;
pub mod endpoint;
pub mod reconcile;
pub mod wire;
