//! Detection: Sigma rules (with correlations) evaluated over the journal as
//! events arrive, with GeoIP enrichment, and alerts that are stored in the
//! journal and delivered to people.

pub mod engine;
pub mod fields;
pub mod geoip;
pub mod mmdb;
pub mod rules;
