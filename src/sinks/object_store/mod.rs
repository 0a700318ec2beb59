//! Gzipped NDJSON objects in S3 (and S3-compatible stores), GCS, Azure Blob
//! or a local directory, laid out for Snowflake and Google SecOps feeds:
//! `<prefix>/tenant=<t>/dt=YYYY-MM-DD/hour=HH/<first seq>-<last seq>.ndjson.gz`.
//!
//! - [`config`]: the `[[sinks]]` table, validated and built into a sink;
//! - [`layout`]: partitions and object names, derived from journal seqs;
//! - [`errors`]: which store failures heal by themselves and which need the operator;
//! - [`sink`]: encode, gzip, write with create-only puts, and adopt objects a
//!   crash left behind, so that every event lands in exactly one object;
//! - [`digest`]: the signed digest of each period, listing every object written in it;
//! - [`verify_lake`]: checks a lake against its digests with the public key alone.

pub mod config;
pub mod digest;
mod errors;
mod layout;
pub mod sink;
pub mod verify_lake;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

pub use config::{ObjectStoreConfig, Preset};
pub use sink::ObjectStoreSink;
