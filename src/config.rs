//! Configuration: one TOML file (or flags alone), read raw, `${VAR}`
//! interpolated, then validated and built into typed [`Settings`] by
//! [`RawConfig::build`]. After that, a bad state cannot be represented.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::catalog;
use crate::journal::Location;
use crate::secret::Secret;
use crate::sinks::SinkConfig;
use crate::source::tines::client::ClientSettings;
use crate::source::tines::collector::{Filters, WindowSettings};
use crate::source::tines::endpoint::Endpoint;
use crate::timeutil::{TimeArgError, parse_age, parse_time_arg, try_parse_duration};

/// A configuration problem, said so that the user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Format version of the file; 1 today.
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub collect: RawCollect,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// The console, API, health and metrics listener; off when absent.
    #[serde(default)]
    pub web: Option<RawWeb>,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub journal: RawJournal,
    #[serde(default)]
    pub retention: RawRetention,
    /// Detection rules and alerting (`[detect]`); off when absent.
    #[serde(default)]
    pub detect: Option<crate::detect::RawDetect>,
    /// The key that signs checkpoints and digests (`[integrity]`).
    #[serde(default)]
    pub integrity: RawIntegrity,
    /// Checks of each tenant's live posture against its audit history (`[posture]`).
    #[serde(default)]
    pub posture: RawPosture,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPosture {
    /// How often `run` reads each tenant's admin API and raises a `posture_drift` alert
    /// when it holds entries no record created, or lacks ones the records left in force
    /// (off by default; at least 5m).
    pub check_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntegrity {
    /// An Ed25519 private key (PKCS#8 PEM) to sign with; default: `signing-key.pem` in the
    /// data directory, created on first use. `TINES_AUDIT_SIGNING_KEY` overrides it.
    pub signing_key: Option<PathBuf>,
    /// How often the daemon signs a checkpoint of each tenant's chain (default 1h).
    pub checkpoint_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    /// Cap on the journal's size (e.g. "50GB"); past it collection pauses as on a full disk.
    pub max_size: Option<String>,
    /// A PostgreSQL database for the journal (`postgresql://user:password@host:5432/db`)
    /// instead of SQLite in `data_dir`.
    pub url: Option<String>,
    /// With a PostgreSQL journal: how long a job's lease lasts unless renewed (default 30s);
    /// a dead instance's jobs move to the others within about this long.
    pub lease_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Delete events older than this (e.g. "400d") once every sink and the detector have passed
    /// them. Default: keep everything.
    pub events: Option<String>,
    /// How often to prune (default 1h).
    pub check_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    /// Address to listen on (default 127.0.0.1:8484).
    pub bind: Option<String>,
    /// The token people log in with and scripts send as a Bearer token.
    pub token: Option<String>,
    pub token_env: Option<String>,
    /// Host names the console answers to besides IP literals and `localhost` (the
    /// names a reverse proxy or users put in the `Host` header); others get 421.
    pub allowed_hosts: Option<Vec<String>>,
    /// People and scripts by name, each with a token and a role; `token` alone is one user.
    pub users: Option<Vec<RawWebUser>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebUser {
    pub name: String,
    /// `viewer` (reads) or `analyst` (also triages alerts); default viewer.
    pub role: Option<String>,
    pub token: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// A tenant without a successful sync for this long makes `/readyz` fail (default 10m).
    pub tenant_stale_after: Option<String>,
    /// A sink failing for this long makes `/readyz` fail (default 15m).
    pub sink_stuck_after: Option<String>,
    /// Raise a self-alert when a tenant has produced no new events (or only errors) for this long (default 24h).
    pub silence_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCollect {
    pub interval: Option<String>,
    pub settle_delay: Option<String>,
    pub overlap: Option<String>,
    pub concurrency: Option<usize>,
    pub requests_per_minute: Option<u32>,
    pub per_page: Option<u32>,
    pub window_events: Option<u64>,
    pub max_attempts: Option<u32>,
    pub request_timeout: Option<String>,
    pub reconcile_every: Option<String>,
    /// A look at the newest page between syncs this often (default 5s), or "off".
    pub quick_look_every: Option<String>,
    pub reconcile_window: Option<String>,
    pub reconcile_slice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub name: Option<String>,
    /// `acme.tines.com`, or a loopback `http://127.0.0.1:PORT` for the emulator.
    pub domain: Option<String>,
    pub api_key: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub api_key_env: Option<String>,
    pub since: Option<String>,
    #[serde(default)]
    pub user_ids: Vec<u64>,
    #[serde(default)]
    pub operation_names: Vec<String>,
}

/// When a tenant's collection starts if it has no cursor yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// No history: from the moment of the first sync.
    Now,
    At(i64),
    Ago(Duration),
}

impl Since {
    pub fn parse(s: &str) -> Result<Since, TimeArgError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("now") {
            return Ok(Since::Now);
        }
        if crate::timeutil::looks_like_age(t) {
            return parse_age(t, crate::timeutil::now_secs()).map(Since::Ago);
        }
        parse_time_arg(t, crate::timeutil::now_secs()).map(Since::At)
    }

    pub fn resolve(&self, now: i64) -> i64 {
        match self {
            Since::Now => now,
            Since::At(t) => *t,
            Since::Ago(d) => now - d.as_secs() as i64,
        }
    }
}

/// One tenant, validated.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub name: String,
    pub endpoint: Endpoint,
    pub api_key: Secret,
    pub since: Since,
    pub filters: Filters,
}

/// Everything validated and built.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// Where the journal is: `journal.url`, else SQLite in `data_dir`.
    pub journal: Location,
    pub interval: Duration,
    /// `collect.quick_look_every`: a look at each tenant's newest page between syncs
    /// (`source::tines::quick_look`); `None` is off.
    pub quick_look: Option<Duration>,
    pub client: ClientSettings,
    pub windows: WindowSettings,
    pub reconcile: crate::source::tines::reconcile::ReconcileSettings,
    /// `posture.check_every`: drift checks against each tenant's admin API in `run`; `None` is off.
    pub posture_check: Option<Duration>,
    pub tenants: Vec<TenantConfig>,
    pub sinks: Vec<SinkConfig>,
    pub web: Option<crate::web::WebSettings>,
    pub readiness: crate::web::ReadinessSettings,
    pub silence_after: Duration,
    pub journal_max_size: Option<u64>,
    /// How long a job's lease lasts unless renewed (PostgreSQL journal only).
    pub lease_ttl: Duration,
    pub retention: Option<Duration>,
    pub retention_every: Duration,
    pub detect: Option<crate::detect::DetectSettings>,
    /// `[integrity] signing_key`; see [`Settings::signing_key`].
    pub signing_key_path: Option<PathBuf>,
    pub checkpoint_every: Duration,
}

impl Settings {
    /// Where the signing key is: `TINES_AUDIT_SIGNING_KEY`, else `[integrity] signing_key`,
    /// else the data directory.
    pub fn signing_key(&self) -> crate::signing::KeyLocation {
        crate::signing::KeyLocation::resolve(self.signing_key_path.as_deref(), &self.data_dir)
    }
}

/// Parses a size such as `512MB`, `50GiB` or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

pub const DEFAULT_DATA_DIR: &str = "tines-audit-data";

/// The `sslmode`s libpq knows.
const SSL_MODES: [&str; 6] = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

/// Validates a journal database URL given by `key` (`journal.url`, `--journal-url`): it
/// must parse and be `postgresql://` or `postgres://`, with a known `sslmode` if one is
/// given. Its password is registered as a secret; messages never quote the URL.
pub fn journal_url(text: &str, key: &str) -> Result<Location, ConfigError> {
    let text = text.trim();
    crate::secret::register_password_url(text);
    let example = "postgresql://user:password@host:5432/db";
    let u = url::Url::parse(text)
        .map_err(|e| invalid(format!("{key}: not a database URL ({e}); write it as {example}")))?;
    if !matches!(u.scheme(), "postgresql" | "postgres") {
        return Err(invalid(format!(
            "{key}: only PostgreSQL journals are given by URL ({example}); for SQLite in the data directory, leave the URL out"
        )));
    }
    for (k, v) in u.query_pairs() {
        if k == "sslmode" && !SSL_MODES.contains(&v.as_ref()) {
            return Err(invalid(format!("{key}: sslmode must be one of {}", SSL_MODES.join(", "))));
        }
    }
    Ok(Location::Url(Secret::url(text)))
}

/// Replaces `${VAR}` with the environment variable's value (`$$` is a `$`).
pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            // The value is not quoted: it may be a secret.
            let end = body.find('}').ok_or_else(|| "unclosed ${ (write $$ for a literal $)".to_string())?;
            let var = &body[..end];
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {var:?}"));
            }
            let value = env(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether a config key holds a secret by its name (`api_key`, `token`,
/// `secret_access_key`, `pseudonymize.key`, any `headers` value); `*_env`,
/// `*_file` and `*_path` name where a secret is, not the secret.
fn is_secret_field(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last).to_ascii_lowercase();
    if ["_env", "_file", "_path"].iter().any(|s| last.ends_with(s)) {
        return false;
    }
    ["key", "token", "secret", "password", "passphrase", "credential"].iter().any(|w| last.contains(w))
        || path.contains(".headers.")
}

fn interpolate_value(v: &mut toml::Value, path: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    match v {
        toml::Value::String(s) => {
            let secret = is_secret_field(path);
            if secret {
                crate::secret::register(s);
            }
            *s = interpolate(s, env).map_err(|e| format!("{path}: {e}"))?;
            if secret {
                crate::secret::register(s);
            }
        }
        toml::Value::Array(a) => {
            for (i, item) in a.iter_mut().enumerate() {
                interpolate_value(item, &format!("{path}[{i}]"), env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                interpolate_value(item, &p, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl RawConfig {
    /// Parses TOML text, interpolating `${VAR}` from `env` in every string.
    pub fn parse(text: &str, origin: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<RawConfig, ConfigError> {
        let perr = |message: String| ConfigError::Parse { path: origin.to_string(), message };
        let mut value: toml::Value = toml::from_str(text).map_err(|e| perr(toml_error(text, e)))?;
        interpolate_value(&mut value, "", env).map_err(perr)?;
        let raw: RawConfig = value.try_into().map_err(|e: toml::de::Error| perr(toml_error(text, e)))?;
        raw.register_secret_urls();
        if let Some(v) = raw.version
            && v != 1
        {
            return Err(perr(format!("version {v} is not supported by this build (it reads version 1)")));
        }
        Ok(raw)
    }

    /// Registers the URLs that are credentials for redaction: webhook URLs
    /// (Slack's and Sumo Logic's carry the secret in the path) and any
    /// `user:password@` in the others.
    fn register_secret_urls(&self) {
        use crate::secret::{register_password_url, register_url, register_url_password};
        if let Some(u) = &self.journal.url {
            register_password_url(u);
        }
        for s in &self.sinks {
            match s {
                SinkConfig::Webhook(c) => register_url(&c.url),
                SinkConfig::SplunkHec(c) => register_url_password(&c.endpoint),
                SinkConfig::Datadog(c) => c.endpoint.iter().for_each(|e| register_url_password(e)),
                SinkConfig::ObjectStore(c) => {
                    register_url_password(&c.url);
                    c.endpoint.iter().for_each(|e| register_url_password(e));
                }
                SinkConfig::File { .. } | SinkConfig::Stdout { .. } | SinkConfig::Syslog(_) => {}
            }
        }
        for o in self.detect.iter().flat_map(|d| &d.outputs) {
            if let crate::detect::alerts::OutputConfig::Webhook { url, .. } = o {
                register_url(url);
            }
        }
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string(), &|k| std::env::var(k).ok())
    }

    /// Validates everything and builds [`Settings`].
    pub fn build(self) -> Result<Settings, ConfigError> {
        let c = &self.collect;
        let dur = |field: &str, v: &Option<String>, default: Duration| -> Result<Duration, ConfigError> {
            match v {
                None => Ok(default),
                Some(s) => try_parse_duration(s).map_err(|e| invalid(format!("collect.{field}: {e}"))),
            }
        };
        let mut windows = WindowSettings::default();
        let mut client = ClientSettings::default();
        let interval = dur("interval", &c.interval, Duration::from_secs(60))?;
        if interval < Duration::from_secs(1) {
            return Err(invalid("collect.interval must be at least 1s"));
        }
        let quick_look = match c.quick_look_every.as_deref().map(str::trim) {
            Some(off) if off.eq_ignore_ascii_case("off") => None,
            v => {
                let every = dur("quick_look_every", &v.map(str::to_string), Duration::from_secs(5))?;
                if every < Duration::from_secs(1) {
                    return Err(invalid(
                        "collect.quick_look_every must be at least 1s (each look is one request), or \"off\"",
                    ));
                }
                Some(every)
            }
        };
        windows.settle_secs = dur("settle_delay", &c.settle_delay, Duration::from_secs(10))?.as_secs() as i64;
        windows.overlap_secs = dur("overlap", &c.overlap, Duration::from_secs(60))?.as_secs() as i64;
        client.clock_tolerance_secs = windows.settle_secs as u64;
        let posture_check = match self.posture.check_every.as_deref().map(str::trim) {
            None | Some("off") => None,
            Some(text) => {
                let every = try_parse_duration(text).map_err(|e| invalid(format!("posture.check_every: {e}")))?;
                if every < Duration::from_secs(300) {
                    return Err(invalid(format!(
                        "posture.check_every: {text:?} is too often: at least 5m (each check reads three admin lists per tenant)"
                    )));
                }
                Some(every)
            }
        };
        let reconcile = {
            let every = dur("reconcile_every", &c.reconcile_every, Duration::from_secs(3600))?;
            let window = dur("reconcile_window", &c.reconcile_window, Duration::from_secs(7 * 86_400))?;
            let slice = dur("reconcile_slice", &c.reconcile_slice, Duration::from_secs(3600))?;
            if slice < Duration::from_secs(60) {
                return Err(invalid("collect.reconcile_slice must be at least 1m"));
            }
            if !every.is_zero() && window < slice {
                return Err(invalid("collect.reconcile_window must be at least collect.reconcile_slice"));
            }
            crate::source::tines::reconcile::ReconcileSettings {
                every: (!every.is_zero()).then_some(every),
                window,
                slice,
            }
        };
        if let Some(n) = c.concurrency {
            if !(1..=64).contains(&n) {
                return Err(invalid("collect.concurrency must be between 1 and 64"));
            }
            windows.concurrency = n;
        }
        if let Some(p) = c.per_page {
            if !(1..=500).contains(&p) {
                return Err(invalid("collect.per_page must be between 1 and 500 (the API's maximum)"));
            }
            windows.per_page = p;
        }
        if let Some(w) = c.window_events {
            if w < u64::from(windows.per_page) {
                return Err(invalid("collect.window_events must be at least per_page"));
            }
            windows.window_events = w;
            windows.buffered_events = w;
        }
        if let Some(r) = c.requests_per_minute {
            // The pacer remembers one send time per request of the window.
            if r > 60_000 {
                return Err(invalid("collect.requests_per_minute must be at most 60000 (0 turns pacing off)"));
            }
            if r > 1000 {
                tracing::warn!(
                    "collect.requests_per_minute = {r} is above the API's 1000/min limit for audit logs; expect 429s"
                );
            }
            client.requests_per_minute = r;
        }
        if let Some(a) = c.max_attempts {
            if a == 0 {
                return Err(invalid("collect.max_attempts must be at least 1"));
            }
            client.max_attempts = a;
        }
        client.request_timeout = dur("request_timeout", &c.request_timeout, client.request_timeout)?;

        let mut names = HashSet::new();
        let mut tenants = Vec::with_capacity(self.tenants.len());
        for (i, t) in self.tenants.into_iter().enumerate() {
            let tc = build_tenant(t, &format!("tenants[{i}]"), &|k| std::env::var(k).ok())?;
            if !names.insert(tc.name.clone()) {
                return Err(invalid(format!("tenants[{i}]: tenant name {:?} is used twice", tc.name)));
            }
            tenants.push(tc);
        }
        let mut sink_names = HashSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            if !sink_names.insert(s.name()) {
                return Err(invalid(format!(
                    "sinks[{i}]: sink name {:?} is used twice; give each a distinct name",
                    s.name()
                )));
            }
            if let SinkConfig::File { max_bytes: Some(0), .. } = s {
                return Err(invalid(format!("sinks[{i}]: max_bytes must be above 0")));
            }
            // Building validates every setting (URLs, sites, certificates, keys) before anything runs.
            s.build().map_err(|e| invalid(format!("sinks[{i}] ({}): {e}", s.name())))?;
        }
        let detect = match self.detect {
            Some(d) => d.build(&self.sinks).map_err(invalid)?,
            None => None,
        };

        let web = match self.web {
            None => None,
            Some(w) => Some(build_web(w, &|k| std::env::var(k).ok())?),
        };
        let h = &self.health;
        let readiness = crate::web::ReadinessSettings {
            tenant_stale_after: dur_field(
                "health.tenant_stale_after",
                &h.tenant_stale_after,
                Duration::from_secs(600),
            )?,
            sink_stuck_after: dur_field("health.sink_stuck_after", &h.sink_stuck_after, Duration::from_secs(900))?,
        };
        let silence_after = dur_field("health.silence_after", &h.silence_after, Duration::from_secs(86_400))?;
        let journal_max_size = match &self.journal.max_size {
            None => None,
            Some(v) => Some(parse_size(v).filter(|b| *b >= 1 << 20).ok_or_else(|| {
                invalid(format!("journal.max_size: {v:?} is not a size of at least 1MiB (use 500MB, 50GB)"))
            })?),
        };
        let retention = match &self.retention.events {
            None => None,
            Some(v) => {
                let d = try_parse_duration(v).map_err(|e| invalid(format!("retention.events: {e}")))?;
                if d < Duration::from_secs(86_400) {
                    return Err(invalid("retention.events must be at least 1d"));
                }
                Some(d)
            }
        };
        let retention_every =
            dur_field("retention.check_every", &self.retention.check_every, Duration::from_secs(3600))?;
        let lease_ttl = dur_field("journal.lease_ttl", &self.journal.lease_ttl, Duration::from_secs(30))?;
        if lease_ttl < Duration::from_secs(3) {
            return Err(invalid("journal.lease_ttl must be at least 3s (leases are renewed every third of it)"));
        }
        let checkpoint_every =
            dur_field("integrity.checkpoint_every", &self.integrity.checkpoint_every, Duration::from_secs(3600))?;
        if !(Duration::from_secs(60)..=Duration::from_secs(3600)).contains(&checkpoint_every) {
            return Err(invalid(
                "integrity.checkpoint_every must be between 1m and 1h (a checkpoint is signed at least hourly)",
            ));
        }
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let journal = match &self.journal.url {
            Some(u) => journal_url(u, "journal.url")?,
            None => Location::Dir(data_dir.clone()),
        };
        Ok(Settings {
            signing_key_path: self.integrity.signing_key,
            checkpoint_every,
            detect,
            retention_every,
            silence_after,
            journal_max_size,
            lease_ttl,
            retention,
            data_dir,
            journal,
            interval,
            quick_look,
            client,
            windows,
            reconcile,
            posture_check,
            tenants,
            sinks: self.sinks,
            web,
            readiness,
        })
    }
}

/// A TOML error as `line L, column C: message`, without the line itself:
/// toml renders the offending source line, and that line may hold a key.
fn toml_error(text: &str, mut e: toml::de::Error) -> String {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
        format!("line {line}, column {column}: ")
    });
    e.set_input(None);
    let message = e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    format!("{}{}", at.unwrap_or_default(), mask_quoted_value(&message))
}

/// serde says `invalid type: string "VALUE", expected ...`: the value goes (it
/// may be a key put in the wrong field), the kind stays.
fn mask_quoted_value(message: &str) -> String {
    let Some(start) = message.find("string \"") else { return message.to_string() };
    let from = start + "string ".len();
    match message[from..].rfind("\", expected").or_else(|| message[from + 1..].rfind('"').map(|i| i + 1)) {
        Some(end) if end > 0 => format!("{}a string{}", &message[..start], &message[from + end + 1..]),
        _ => message.to_string(),
    }
}

fn dur_field(field: &str, v: &Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => try_parse_duration(s).map_err(|e| invalid(format!("{field}: {e}"))),
    }
}

/// Validates the `[web]` section.
pub fn build_web(w: RawWeb, env: &dyn Fn(&str) -> Option<String>) -> Result<crate::web::WebSettings, ConfigError> {
    use crate::web::auth::{Role, WebUser};
    let bind_text = w.bind.unwrap_or_else(|| "127.0.0.1:8484".into());
    let bind: std::net::SocketAddr = bind_text
        .parse()
        .map_err(|_| invalid(format!("web.bind: {bind_text:?} is not an address such as 127.0.0.1:8484")))?;
    let mut users = Vec::new();
    // The single token of earlier versions is one user, who may triage.
    let single = match (w.token, w.token_env) {
        (Some(_), Some(_)) => return Err(invalid("web: give token or token_env, not both")),
        (Some(t), None) => Some(t),
        (None, Some(var)) => {
            Some(env(&var).ok_or_else(|| invalid(format!("web.token_env: environment variable {var} is not set")))?)
        }
        (None, None) if w.users.is_some() => None,
        (None, None) => Some(env("TINES_AUDIT_WEB_TOKEN").ok_or_else(|| {
            invalid("web: a token is required (web.token = \"${VAR}\", web.token_env, TINES_AUDIT_WEB_TOKEN, or [[web.users]]); the console never runs open")
        })?),
    };
    if let Some(token) = single {
        users.push(("web".to_string(), "admin".to_string(), Role::Analyst, token));
    }
    for (i, u) in w.users.unwrap_or_default().into_iter().enumerate() {
        let at = format!("web.users[{i}]");
        let name = u.name.trim().to_string();
        if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
            return Err(invalid(format!("{at}: name must be 1 to 64 printable characters")));
        }
        let role = match u.role.as_deref().unwrap_or("viewer") {
            "viewer" => Role::Viewer,
            "analyst" => Role::Analyst,
            other => return Err(invalid(format!("{at} ({name}): role {other:?} is not viewer or analyst"))),
        };
        let token = match (u.token, u.token_env, u.token_file) {
            (Some(t), None, None) => t,
            (None, Some(var), None) => env(&var)
                .ok_or_else(|| invalid(format!("{at} ({name}): environment variable {var} (token_env) is not set")))?,
            (None, None, Some(path)) => std::fs::read_to_string(&path)
                .map_err(|e| invalid(format!("{at} ({name}): cannot read token_file {}: {e}", path.display())))?,
            _ => return Err(invalid(format!("{at} ({name}): give exactly one of token, token_env, token_file"))),
        };
        users.push((at, name, role, token));
    }
    let mut built: Vec<WebUser> = Vec::with_capacity(users.len());
    for (at, name, role, token) in users {
        let token = token.trim();
        crate::secret::register(token);
        if token.len() < 16 {
            return Err(invalid(format!("{at}: the token must be at least 16 characters")));
        }
        if built.iter().any(|u| u.name == name) {
            return Err(invalid(format!("{at}: a second user named {name:?}; names identify who triaged what")));
        }
        if built.iter().any(|u| u.token.expose() == token) {
            return Err(invalid(format!("{at} ({name}): the same token as user {:?}; each user needs their own", {
                built.iter().find(|u| u.token.expose() == token).map_or("", |u| u.name.as_str())
            })));
        }
        built.push(WebUser { name, role, token: Secret::new(token) });
    }
    if !bind.ip().is_loopback() {
        tracing::warn!(%bind, "the console listens beyond this machine; put it behind TLS (a reverse proxy) and a firewall");
    }
    let mut allowed_hosts = Vec::new();
    for h in w.allowed_hosts.unwrap_or_default() {
        let name = h.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !valid {
            return Err(invalid(format!(
                "web.allowed_hosts: {h:?} is not a host name such as audit.example.com (no scheme, port or path)"
            )));
        }
        allowed_hosts.push(name);
    }
    Ok(crate::web::WebSettings { bind, users: built, allowed_hosts })
}

/// Validates one tenant (config file or flags).
pub fn build_tenant(t: RawTenant, at: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<TenantConfig, ConfigError> {
    let domain = t.domain.ok_or_else(|| invalid(format!("{at}: domain is required (for example acme.tines.com)")))?;
    crate::secret::register_url_password(&domain);
    let endpoint = Endpoint::parse(&domain).map_err(|e| invalid(format!("{at}: {e}")))?;
    let name = t.name.unwrap_or_else(|| endpoint.default_name());
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(invalid(format!("{at}: tenant name must be 1 to 128 printable characters")));
    }
    let sources = [t.api_key.is_some(), t.api_key_file.is_some(), t.api_key_env.is_some()];
    let api_key = match (t.api_key, t.api_key_file, t.api_key_env) {
        _ if sources.iter().filter(|s| **s).count() > 1 => {
            return Err(invalid(format!("{at} ({name}): give only one of api_key, api_key_file, api_key_env")));
        }
        (Some(k), _, _) => k,
        (_, Some(path), _) => std::fs::read_to_string(&path)
            .map_err(|e| invalid(format!("{at} ({name}): cannot read api_key_file {}: {e}", path.display())))?
            .trim()
            .to_string(),
        (_, _, Some(var)) => env(&var)
            .ok_or_else(|| invalid(format!("{at} ({name}): environment variable {var} (api_key_env) is not set")))?,
        (None, None, None) => env("TINES_API_KEY").ok_or_else(|| {
            invalid(format!(
                "{at} ({name}): no API key: set api_key_env, api_key_file or api_key = \"${{VAR}}\", or the TINES_API_KEY environment variable"
            ))
        })?,
    };
    if api_key.trim().is_empty() {
        return Err(invalid(format!("{at} ({name}): the API key is empty")));
    }
    // A key with a line break inside cannot go in a header; say so (never the key) rather than fail later.
    if api_key.trim().chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(format!(
            "{at} ({name}): the API key contains a line break, space or other control character; the key is one line of printable characters: check the file or variable it comes from holds only the key"
        )));
    }
    let since = match &t.since {
        None => Since::Now,
        Some(s) => Since::parse(s).map_err(|e| invalid(format!("{at} ({name}): since: {e}")))?,
    };
    // A documented pattern (SCIM/2.0/User/{operation}) is sent to the API as the real names it stands for.
    let mut operation_names = Vec::with_capacity(t.operation_names.len());
    for op in &t.operation_names {
        let names = catalog::resolve(op).map_err(|e| invalid(format!("{at} ({name}): operation_names: {e}")))?;
        for n in names {
            if !operation_names.iter().any(|o| o == n) {
                operation_names.push(n.to_string());
            }
        }
    }
    Ok(TenantConfig {
        name,
        endpoint,
        api_key: Secret::new(api_key.trim()),
        since,
        filters: Filters { user_ids: t.user_ids, operation_names },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "ACME_KEY" => Some("secret-acme".into()),
            _ => None,
        }
    }

    fn web(text: &str) -> Result<crate::web::WebSettings, ConfigError> {
        let raw: RawWeb = toml::from_str(text).unwrap();
        let env = |k: &str| match k {
            "ALICE" => Some("alice-token-0123456789".to_string()),
            "SHORT" => Some("short".to_string()),
            _ => None,
        };
        build_web(raw, &env)
    }

    #[test]
    fn web_users_each_have_their_own_token_and_role() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bob.token");
        std::fs::write(&file, "bob-token-0123456789ab\n").unwrap();
        let w = web(&format!(
            "token = \"single-token-0123456789\"\n[[users]]\nname = \"alice\"\nrole = \"analyst\"\ntoken_env = \"ALICE\"\n\
             [[users]]\nname = \"bob\"\ntoken_file = {:?}\n",
            file.display().to_string()
        ))
        .unwrap();
        let who: Vec<(&str, crate::web::auth::Role)> = w.users.iter().map(|u| (u.name.as_str(), u.role)).collect();
        use crate::web::auth::Role::*;
        assert_eq!(who, vec![("admin", Analyst), ("alice", Analyst), ("bob", Viewer)], "the single token is one user");
        assert_eq!(w.users[2].token.expose(), "bob-token-0123456789ab", "read from the file, trimmed");
        // Users alone need no single token.
        assert_eq!(web("[[users]]\nname = \"alice\"\ntoken_env = \"ALICE\"\n").unwrap().users.len(), 1);
        let refused = |text: &str, says: &str| {
            let e = web(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
            assert!(!e.contains("alice-token"), "no token in the error: {e}");
        };
        refused("[[users]]\nname = \"a\"\nrole = \"root\"\ntoken_env = \"ALICE\"\n", "is not viewer or analyst");
        refused("[[users]]\nname = \"a\"\ntoken_env = \"SHORT\"\n", "at least 16 characters");
        refused("[[users]]\nname = \"a\"\ntoken_env = \"NOPE\"\n", "NOPE (token_env) is not set");
        refused("[[users]]\nname = \"a\"\n", "exactly one of token, token_env, token_file");
        refused(
            "[[users]]\nname = \"a\"\ntoken_env = \"ALICE\"\n[[users]]\nname = \"b\"\ntoken_env = \"ALICE\"\n",
            "the same token as user \"a\"",
        );
        refused(
            "[[users]]\nname = \"a\"\ntoken_env = \"ALICE\"\n[[users]]\nname = \"a\"\ntoken = \"other-token-0123456789\"\n",
            "a second user named",
        );
        refused("allowed_hosts = [\"https://x.example\"]\ntoken_env = \"ALICE\"\n", "not a host name");
    }

    #[test]
    fn interpolates_variables_and_escapes() {
        assert_eq!(interpolate("a${ACME_KEY}b", &env).unwrap(), "asecret-acmeb");
        assert_eq!(interpolate("cost $$5 and $x", &env).unwrap(), "cost $5 and $x");
        assert!(interpolate("${MISSING}", &env).unwrap_err().contains("MISSING is not set"));
        assert!(interpolate("${OPEN", &env).is_err());
    }

    #[test]
    fn builds_a_full_config() {
        let text = r#"
            version = 1
            data_dir = "/tmp/x"
            [collect]
            interval = "30s"
            requests_per_minute = 900
            [[tenants]]
            name = "acme"
            domain = "acme.tines.com"
            api_key = "${ACME_KEY}"
            since = "30d"
            operation_names = ["CredentialDestruction"]
            [[sinks]]
            type = "file"
            path = "/tmp/out.ndjson"
            [[sinks]]
            type = "stdout"
        "#;
        let raw = RawConfig::parse(text, "test", &env).unwrap();
        let t = build_tenant(
            RawTenant {
                name: Some("acme".into()),
                domain: Some("acme.tines.com".into()),
                api_key: raw.tenants[0].api_key.clone(),
                since: Some("30d".into()),
                ..Default::default()
            },
            "tenants[0]",
            &env,
        )
        .unwrap();
        assert_eq!(t.api_key.expose(), "secret-acme");
        assert_eq!(t.since, Since::Ago(Duration::from_secs(30 * 86_400)));
        assert!(!format!("{t:?}").contains("secret-acme"), "Debug must not show the key");
        let s = raw.build().unwrap();
        assert_eq!(s.interval, Duration::from_secs(30));
        assert_eq!(s.client.requests_per_minute, 900);
        let huge = RawConfig::parse("[collect]\nrequests_per_minute = 4000000000\n", "c", &env).unwrap();
        assert!(huge.build().err().unwrap().to_string().contains("collect.requests_per_minute must be at most 60000"));
        assert_eq!(RawConfig::default().build().unwrap().client.requests_per_minute, 1000);
        assert_eq!(s.sinks.len(), 2);
    }

    #[test]
    fn quick_look_is_on_every_5s_by_default_can_be_turned_off_and_is_validated() {
        let build = |collect: &str| RawConfig::parse(&format!("[collect]\n{collect}\n"), "c", &env).unwrap().build();
        assert_eq!(build("").unwrap().quick_look, Some(Duration::from_secs(5)));
        assert_eq!(build("quick_look_every = \"2s\"").unwrap().quick_look, Some(Duration::from_secs(2)));
        assert_eq!(build("quick_look_every = \"off\"").unwrap().quick_look, None);
        let e = build("quick_look_every = \"500ms\"").err().unwrap().to_string();
        assert!(e.contains("collect.quick_look_every must be at least 1s"), "{e}");
        let e = build("quick_look_every = \"soon\"").err().unwrap().to_string();
        assert!(e.contains("collect.quick_look_every") && e.contains("is not a duration"), "{e}");
    }

    #[test]
    fn rejects_unknown_keys_bad_values_and_names_the_place() {
        let e = RawConfig::parse("[collect]\nintervall = \"5s\"", "c.toml", &env).unwrap_err().to_string();
        assert!(e.contains("intervall") && e.contains("c.toml"), "{e}");
        let e = RawConfig::parse("[[sinks]]\ntype = \"kafka\"", "c.toml", &env).unwrap_err().to_string();
        assert!(e.contains("kafka"), "{e}");
        let raw = RawConfig::parse("[collect]\ninterval = \"soon\"", "c", &env).unwrap();
        assert!(raw.build().unwrap_err().to_string().contains("collect.interval"));
        let raw = RawConfig::parse("[[tenants]]\ndomain = \"acme\"\napi_key = \"k\"", "c", &env).unwrap();
        assert!(raw.build().unwrap_err().to_string().contains("must contain a dot"));
        let raw = RawConfig::parse(
            "[[tenants]]\ndomain = \"a.tines.com\"\napi_key = \"k\"\noperation_names = [\"story.created\"]",
            "c",
            &env,
        )
        .unwrap();
        assert!(raw.build().unwrap_err().to_string().contains("did you mean StoryCreation"));
        let raw = RawConfig::parse(
            "[[tenants]]\ndomain = \"a.tines.com\"\napi_key = \"k\"\nsince = \"last tuesday\"",
            "c",
            &env,
        )
        .unwrap();
        assert!(raw.build().unwrap_err().to_string().contains("invalid time"));
        let e = RawConfig::parse("version = 2", "c", &env).unwrap_err().to_string();
        assert!(e.contains("version 2"), "{e}");
    }

    #[test]
    fn config_syntax_errors_echoed_the_offending_line_with_its_key() {
        let key = "tines-key-in-a-broken-line-42";
        for text in [
            format!("[[tenants]]\ndomain = \"a.tines.com\"\napi_key = \"{key}"),
            format!("[[tenants]]\ndomain = \"a.tines.com\"\napi_key = \"{key}\" trailing"),
            format!("[[tenants]]\ndomain = \"a.tines.com\"\napi_key = {key}"),
            format!("[web]\ntoken = \"{key}\"\n[web]\n"),
            format!("[collect]\nper_page = \"{key}\""),
        ] {
            let e = RawConfig::parse(&text, "c.toml", &env).unwrap_err().to_string();
            assert!(!e.contains(key) && !e.contains("in-a-broken"), "{e}");
            assert!(e.starts_with("config c.toml: "), "{e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let e = RawConfig::parse(&format!("version = 1\n[[tenants]]\napi_key = \"{key}"), "c", &env).unwrap_err();
        assert!(e.to_string().contains("config c: line 3, column "), "{e}");
        let e = RawConfig::parse(&format!("[collect]\nper_page = \"{key}\""), "c", &env).unwrap_err();
        assert!(e.to_string().contains("invalid type: a string, expected u32"), "{e}");
    }

    #[test]
    fn secret_fields_literal_or_from_the_environment_are_registered_for_redaction() {
        let env = |k: &str| (k == "HOOK_HDR").then(|| "hdr-value-from-env-77".to_string());
        RawConfig::parse(
            "[[sinks]]\ntype = \"webhook\"\nurl = \"https://collectors.example/receiver/v1/http/UNITCODE77\"\n\
             [sinks.headers]\nX-Key = \"${HOOK_HDR}\"\n[sinks.pseudonymize]\nkey = \"literal-hmac-key-77\"",
            "c",
            &env,
        )
        .unwrap();
        let out = crate::secret::redact("hdr-value-from-env-77 literal-hmac-key-77 /receiver/v1/http/UNITCODE77");
        assert_eq!(out, "**REDACTED** **REDACTED** **REDACTED**");
        assert!(!is_secret_field("tenants[0].api_key_env") && is_secret_field("tenants[0].api_key"));
    }

    #[test]
    fn journal_url_picks_postgresql_interpolates_and_registers_its_password() {
        let env = |k: &str| (k == "UNIT_PG_PASS").then(|| "unit-pg-pass-31".to_string());
        let text = "data_dir = \"/srv/audit\"\n[journal]\nurl = \"postgresql://audit:${UNIT_PG_PASS}@db.example:5432/audit?sslmode=verify-full\"\n";
        let s = RawConfig::parse(text, "c", &env).unwrap().build().unwrap();
        let Location::Url(u) = &s.journal else { panic!("{:?}", s.journal) };
        assert_eq!(u.expose(), "postgresql://audit:unit-pg-pass-31@db.example:5432/audit?sslmode=verify-full");
        assert_eq!(s.journal.to_string(), "postgresql://audit:***@db.example:5432/audit?sslmode=verify-full");
        assert_eq!(s.data_dir, PathBuf::from("/srv/audit"), "the data directory stays");
        assert!(!format!("{s:?}").contains("unit-pg-pass-31"));
        assert_eq!(crate::secret::redact("auth failed for unit-pg-pass-31"), "auth failed for **REDACTED**");
        // `postgres://` is the same thing; without a URL the journal is SQLite in data_dir.
        let raw = RawConfig::parse("[journal]\nurl = \"postgres://reader@db.example/audit\"", "c", &env).unwrap();
        assert!(matches!(raw.build().unwrap().journal, Location::Url(_)));
        let s = RawConfig::parse("data_dir = \"/srv/audit\"", "c", &env).unwrap().build().unwrap();
        assert_eq!(s.journal, Location::Dir("/srv/audit".into()));
    }

    #[test]
    fn a_journal_url_that_is_not_postgresql_is_refused_by_its_key_without_its_password() {
        let err = |url: &str| {
            let text = format!("[journal]\nurl = \"{url}\"\n");
            RawConfig::parse(&text, "c", &env).unwrap().build().err().unwrap().to_string()
        };
        for url in [
            "mysql://audit:unit-bad-pass-41@db.example/audit",
            "sqlite:///var/lib/unit-bad-pass-41/journal.db",
            "audit:unit-bad-pass-41@db.example/audit",
            "postgresql://audit:unit-bad-pass-41@db.example:99999/audit",
            "postgresql://audit:unit-bad-pass-41@db.example/audit?sslmode=sure",
            "",
        ] {
            let e = err(url);
            assert!(e.starts_with("journal.url: "), "{url}: {e}");
            assert!(!e.contains("unit-bad-pass-41"), "{url}: {e}");
        }
        assert!(err("mysql://audit:unit-bad-pass-41@db.example/audit").contains("postgresql://"));
        assert!(err("postgresql://audit:unit-bad-pass-41@db.example/audit?sslmode=sure").contains("verify-full"));
        assert_eq!(crate::secret::redact("unit-bad-pass-41"), "**REDACTED**", "registered even when refused");
        // A variable the URL needs must be set.
        let e = RawConfig::parse("[journal]\nurl = \"postgresql://a:${UNIT_UNSET_PG}@h/d\"", "c", &env).unwrap_err();
        assert!(e.to_string().contains("journal.url: environment variable UNIT_UNSET_PG is not set"), "{e}");
    }

    #[test]
    fn config_durations_longer_than_100_years_are_refused_instead_of_wrapping_into_the_future() {
        let cfg = |collect: &str| {
            RawConfig::parse(&format!("[collect]\n{collect}\n"), "c", &env).unwrap().build().err().unwrap().to_string()
        };
        // A settle delay this long wrapped to a negative i64 and put every window in the future.
        let err = cfg("settle_delay = \"10000000000000000000s\"");
        assert!(err.contains("collect.settle_delay") && err.contains("longer than 100 years"), "{err}");
        let err = cfg("overlap = \"99999999999999999999999s\"");
        assert!(err.contains("collect.overlap") && err.contains("longer than 100 years"), "{err}");
        assert!(cfg("interval = \"soon\"").contains("is not a duration"));
        let raw = RawConfig::parse("[retention]\nevents = \"9999999999999d\"\n", "c", &env).unwrap();
        assert!(raw.build().err().unwrap().to_string().contains("longer than 100 years"));
    }

    #[test]
    fn api_key_containing_a_newline_is_a_config_error_not_an_internal_one() {
        let env = |k: &str| (k == "TINES_API_KEY").then(|| "first-half\nsecond-half".to_string());
        let t = RawTenant { domain: Some("acme.tines.com".into()), ..Default::default() };
        let err = build_tenant(t, "--tenant", &env).unwrap_err().to_string();
        assert!(err.contains("line break"), "{err}");
        assert!(!err.contains("first-half") && !err.contains("second-half"), "the key leaked: {err}");
        // A trailing newline (a file written by echo) is only trimmed.
        let env = |k: &str| (k == "TINES_API_KEY").then(|| "whole-key\n".to_string());
        let t = RawTenant { domain: Some("acme.tines.com".into()), ..Default::default() };
        assert_eq!(build_tenant(t, "--tenant", &env).unwrap().api_key.expose(), "whole-key");
    }

    #[test]
    fn api_key_sources_are_exclusive_and_required() {
        let t = |k: Option<&str>, var: Option<&str>| RawTenant {
            domain: Some("a.tines.com".into()),
            api_key: k.map(Into::into),
            api_key_env: var.map(Into::into),
            ..Default::default()
        };
        assert!(build_tenant(t(Some("x"), Some("ACME_KEY")), "t", &env).unwrap_err().to_string().contains("only one"));
        assert_eq!(build_tenant(t(None, Some("ACME_KEY")), "t", &env).unwrap().api_key.expose(), "secret-acme");
        assert!(build_tenant(t(None, Some("NOPE")), "t", &env).unwrap_err().to_string().contains("NOPE"));
        assert!(build_tenant(t(None, None), "t", &env).unwrap_err().to_string().contains("no API key"));
    }
}
