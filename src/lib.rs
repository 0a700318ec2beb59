//! tines-audit: collect every Tines audit log exactly once into a local
//! journal, then deliver it, watch it and search it.
//!
//! The modules follow the data:
//! - [`source::tines`]: the audit-log API (endpoint, wire format, client, windowed collector);
//! - [`journal`]: the SQLite journal (events, per-tenant progress, per-consumer offsets);
//! - [`sinks`]: consumers of the journal (NDJSON files, stdout, syslog, Splunk HEC, Datadog,
//!   webhooks) and the runner that feeds them;
//! - [`format`](mod@format): what a sink writes per event: the raw record, ECS or OCSF, optionally pseudonymised;
//! - [`service`]: collect once, backfill, and the `run` daemon;
//! - [`detect`]: Sigma rules and correlations over the journal, GeoIP, alerts and their delivery;
//! - [`query`]: search (filters, free text, stable pages), the search indexer, compliance reports;
//! - [`posture`]: a tenant's security posture rebuilt from its history, its notes, and its drift from the tenant;
//! - [`mock`]: a faithful emulator of the Tines audit-log API, for the demo and the tests;
//! - [`config`], [`catalog`] (operation names), [`secret`], [`signing`] (the key that signs checkpoints and digests), [`timeutil`], [`cli`], [`demo`].

pub mod catalog;
pub mod cli;
pub mod config;
pub mod demo;
pub mod detect;
pub mod format;
pub mod fuzzing;
pub mod journal;
pub mod lease;
pub mod metrics;
pub mod mock;
pub mod posture;
pub mod query;
pub mod secret;
pub mod service;
pub mod signing;
pub mod sinks;
pub mod source;
pub mod status;
pub mod timeutil;
pub mod web;
