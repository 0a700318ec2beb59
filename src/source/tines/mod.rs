//! The Tines audit-log API: tenant addresses, wire format, the HTTP client
//! the windowed, exactly-once collector and the quick look between its syncs.

pub mod client;
pub mod collector;
pub mod endpoint;
pub mod quick_look;
pub mod reconcile;
pub mod wire;
