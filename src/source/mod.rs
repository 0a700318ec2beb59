//! Sources of audit records. Today: the Tines audit-log API.

pub mod tines;
