//! `tines-audit mock`: serve the emulator from the command line.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use super::{Burst, DEMO_KEY, Faults, MockConfig, MockKey, MockServer};
use crate::timeutil;

/// Environment variable the served API key is read from.
const KEY_ENV: &str = "TINES_API_KEY";

fn parse_span(s: &str) -> Result<Duration, String> {
    timeutil::parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration such as 90s, 100ms, 15m, 12h or 30d"))
}

/// A signed duration such as `5m`, `-90s` or `+1h`, in seconds.
fn parse_offset(s: &str) -> Result<i64, String> {
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let d = parse_span(rest)?;
    i64::try_from(d.as_secs()).map(|v| sign * v).map_err(|_| format!("{s:?} is too large"))
}

fn parse_probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability between 0 and 1")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a non-negative number")),
    }
}

/// Serve an emulated Tines audit-log API over a synthetic tenant.
#[derive(Debug, Clone, clap::Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Seed of the synthetic tenant: the same seed and flags give the same users, ids and records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Tenant id written into every record.
    #[arg(long, default_value_t = 4242)]
    pub tenant_id: u64,

    /// Number of past events generated before serving (at least 398 includes every operation name).
    #[arg(long, default_value_t = 5000)]
    pub history: usize,

    /// How far back the history reaches, e.g. 30d, 12h.
    #[arg(long, default_value = "30d", value_parser = parse_span)]
    pub span: Duration,

    /// Fix the end of the history at this RFC 3339 time instead of now, for repeatable runs.
    #[arg(long, value_name = "TIME")]
    pub anchor: Option<String>,

    /// Add COUNT extra events that all share one created_at second (tests bursts straddling pages).
    #[arg(long, value_name = "COUNT")]
    pub burst: Option<usize>,

    /// How long before the end of the history the burst second lies, e.g. 10m.
    #[arg(long, default_value = "10m", value_parser = parse_span, value_name = "AGO")]
    pub burst_ago: Duration,

    /// Live events per second appended while serving (0 = none).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate, value_name = "PER_SEC")]
    pub live_rate: f64,

    /// Share (0-1) of live events that arrive late: visible now, stamped up to --max-lateness ago.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability, value_name = "P")]
    pub late_fraction: f64,

    /// Largest lateness of a late live event, e.g. 90s.
    #[arg(long, default_value = "60s", value_parser = parse_span)]
    pub max_lateness: Duration,

    /// Make `after` inclusive (created_at >= after); by default it is exclusive.
    #[arg(long)]
    pub after_inclusive: bool,

    /// Make `before` inclusive (created_at <= before); by default it is exclusive.
    #[arg(long)]
    pub before_inclusive: bool,

    /// On the last page send "next_page":"null" as a string (the quirk of Elastic's mock).
    #[arg(long)]
    pub next_page_string_null: bool,

    /// Leave next_page_number out of meta (as older Tines responses did).
    #[arg(long)]
    pub omit_next_page_number: bool,

    /// Delay added to every API request, e.g. 100ms.
    #[arg(long, value_parser = parse_span, value_name = "DURATION")]
    pub latency: Option<Duration>,

    /// Probability (0-1) per request of an extra --latency-spike delay.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability, value_name = "P")]
    pub latency_spike_rate: f64,

    /// Extra delay of a latency spike, e.g. 3s.
    #[arg(long, default_value = "3s", value_parser = parse_span, value_name = "DURATION")]
    pub latency_spike: Duration,

    /// Probability (0-1) per request of any injected fault, split evenly over 429, 5xx, truncated body and reset.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability, value_name = "P")]
    pub fault_rate: f64,

    /// Probability of an injected 429 (overrides its --fault-rate share).
    #[arg(long, value_parser = parse_probability, value_name = "P")]
    pub rate_429: Option<f64>,

    /// Probability of an injected 500/502/503 (overrides its --fault-rate share).
    #[arg(long, value_parser = parse_probability, value_name = "P")]
    pub rate_5xx: Option<f64>,

    /// Probability of a 200 whose JSON body is cut short (overrides its --fault-rate share).
    #[arg(long, value_parser = parse_probability, value_name = "P")]
    pub rate_truncated: Option<f64>,

    /// Probability of a connection dropped mid-body (overrides its --fault-rate share).
    #[arg(long, value_parser = parse_probability, value_name = "P")]
    pub rate_reset: Option<f64>,

    /// Retry-After seconds sent with injected 429s (0 allowed).
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    pub fault_retry_after: u64,

    /// Play the scripted detection scenarios (credential deletions, a new tenant owner, a foreign login) in the first half minute.
    #[arg(long)]
    pub scenarios: bool,

    /// Write a GeoIP (MaxMind DB) file of the emulator's country ranges here, for `[detect] geoip`.
    #[arg(long, value_name = "FILE")]
    pub geoip_out: Option<std::path::PathBuf>,

    /// Requests per key allowed in any 60 s window (sliding, closed at both ends: the strictest
    /// reading of Tines's audit_logs limit; 0 = unlimited).
    #[arg(long, default_value_t = 1000, value_name = "PER_MINUTE")]
    pub rate_limit: u32,

    /// The window --rate-limit counts in (60s like the API; shorter for quick experiments).
    #[arg(long, default_value = "60s", value_parser = parse_span, value_name = "DURATION")]
    pub rate_window: Duration,

    /// The server's clock relative to this machine's, such as 5m or -5m: records are dated and the
    /// Date header written by it.
    #[arg(long, default_value = "0s", value_parser = parse_offset, value_name = "OFFSET", allow_hyphen_values = true)]
    pub clock_offset: i64,

    /// Leave `count` and `pages` out of every page's `meta`.
    #[arg(long)]
    pub omit_count: bool,

    /// Add this to the true `meta.count` (negative under-reports; pages and next_page_number follow it).
    #[arg(long, default_value_t = 0, value_name = "N", allow_hyphen_values = true)]
    pub count_skew: i64,

    /// Skew only the first page's count.
    #[arg(long)]
    pub count_skew_first_page_only: bool,

    /// Serve page 1 again for a page past the last one or one that cannot be parsed (as the real API
    /// does for the latter).
    #[arg(long)]
    pub first_page_for_bad_page: bool,

    /// Share of records made by the system, with null user and request fields.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability, value_name = "P")]
    pub null_fields_rate: f64,

    /// Send this many history records without an `id`.
    #[arg(long, default_value_t = 0, value_name = "COUNT")]
    pub records_without_id: usize,

    /// Answer 4xx with the request echoed back, API key included, as careless proxies do.
    #[arg(long)]
    pub echo_4xx: bool,

    /// Probability of answering 400 Bad Request.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability, value_name = "P")]
    pub rate_400: f64,

    /// Make the admin API (users, IP access control and egress rules) drift from the history:
    /// a rule, an egress entry and a tenant owner no record made, and the oldest rule and
    /// egress entry gone with no record (also `POST /_mock/posture/drift/on` and `/off`).
    #[arg(long)]
    pub posture_drift: bool,

    /// Answer 403 on the admin API, as for a key whose user is not a tenant admin.
    #[arg(long)]
    pub admin_forbidden: bool,
}

impl MockArgs {
    /// The emulator config these flags describe, serving `key`.
    pub fn config(&self, key: String) -> anyhow::Result<MockConfig> {
        let share = self.fault_rate / 4.0;
        let anchor = match &self.anchor {
            Some(s) => {
                Some(timeutil::parse_rfc3339(s).with_context(|| format!("--anchor {s:?} is not an RFC 3339 time"))?)
            }
            None => None,
        };
        Ok(MockConfig {
            seed: self.seed,
            tenant_id: self.tenant_id,
            history: self.history,
            history_span: self.span,
            anchor,
            burst: self.burst.map(|count| Burst { count, secs_ago: self.burst_ago.as_secs() }),
            live_rate: self.live_rate,
            late_fraction: self.late_fraction,
            max_lateness_secs: u32::try_from(self.max_lateness.as_secs()).unwrap_or(u32::MAX),
            after_inclusive: self.after_inclusive,
            before_inclusive: self.before_inclusive,
            next_page_string_null: self.next_page_string_null,
            omit_next_page_number: self.omit_next_page_number,
            faults: Faults {
                rate_429: self.rate_429.unwrap_or(share),
                rate_5xx: self.rate_5xx.unwrap_or(share),
                rate_400: self.rate_400,
                rate_truncated: self.rate_truncated.unwrap_or(share),
                rate_reset: self.rate_reset.unwrap_or(share),
                fault_retry_after_secs: self.fault_retry_after,
                latency: self.latency.unwrap_or_default(),
                latency_spike_rate: self.latency_spike_rate,
                latency_spike: self.latency_spike,
            },
            rate_limit_per_minute: self.rate_limit,
            rate_window: self.rate_window,
            keys: vec![MockKey { key, can_read_audit_logs: true }],
            scenarios: self.scenarios,
            posture_drift: self.posture_drift,
            admin_forbidden: self.admin_forbidden,
            quirks: super::Quirks {
                clock_offset_secs: self.clock_offset,
                omit_count: self.omit_count,
                count_skew: self.count_skew,
                count_skew_first_page_only: self.count_skew_first_page_only,
                first_page_for_bad_page: self.first_page_for_bad_page,
                null_fields_fraction: self.null_fields_rate,
                records_without_id: self.records_without_id,
                echo_4xx: self.echo_4xx,
            },
        })
    }
}

/// Binds, announces the URL on stdout and serves until `shutdown` resolves.
pub async fn run(args: MockArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let from_env = std::env::var(KEY_ENV).ok().filter(|k| !k.trim().is_empty());
    let key_hint = match &from_env {
        Some(_) => format!("the API key in ${KEY_ENV}"),
        None => format!("API key {DEMO_KEY} (export {KEY_ENV}={DEMO_KEY})"),
    };
    let config = args.config(from_env.unwrap_or_else(|| DEMO_KEY.to_string()))?;
    if let Some(path) = &args.geoip_out {
        std::fs::write(path, crate::detect::mmdb::emulator_database())
            .with_context(|| format!("writing the emulator's GeoIP database to {}", path.display()))?;
        println!("GeoIP database of the emulator's country ranges written to {}", path.display());
    }
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding the mock API to {}", args.bind))?;
    let server = MockServer::start(config, listener).await?;
    println!(
        "Mock Tines audit-log API with {} events at {url}/api/v1/audit_logs; point the collector at tenant URL {url} with {key_hint}",
        server.event_count(),
        url = server.base_url(),
    );
    shutdown.await;
    server.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mock: MockArgs,
    }

    #[test]
    fn flags_build_the_config_and_every_flag_is_documented() {
        Cli::command().debug_assert();
        for arg in Cli::command().get_arguments() {
            if arg.get_id() != "help" {
                assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
            }
        }
        let cli = Cli::try_parse_from([
            "x",
            "--span",
            "2d",
            "--burst",
            "700",
            "--fault-rate",
            "0.4",
            "--rate-reset",
            "0",
            "--latency",
            "100ms",
            "--rate-limit",
            "5",
            "--anchor",
            "2024-01-01T00:00:00Z",
        ])
        .unwrap();
        let c = cli.mock.config("k".into()).unwrap();
        assert_eq!(c.history_span, Duration::from_secs(2 * 86_400));
        assert_eq!(c.burst, Some(Burst { count: 700, secs_ago: 600 }));
        assert_eq!((c.faults.rate_429, c.faults.rate_5xx, c.faults.rate_truncated), (0.1, 0.1, 0.1));
        assert_eq!(c.faults.rate_reset, 0.0);
        assert_eq!(c.faults.latency, Duration::from_millis(100));
        assert_eq!(c.rate_limit_per_minute, 5);
        assert_eq!(c.anchor, Some(1_704_067_200));
        assert!(Cli::try_parse_from(["x", "--fault-rate", "2"]).is_err());
        assert!(Cli::try_parse_from(["x", "--span", "forever"]).is_err());
    }

    #[tokio::test]
    async fn run_serves_until_shutdown_resolves() {
        let cli = Cli::try_parse_from(["x", "--bind", "127.0.0.1:0", "--history", "10"]).unwrap();
        run(cli.mock, async {}).await.unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let cli = Cli::try_parse_from(["x", "--bind", &taken.local_addr().unwrap().to_string()]).unwrap();
        assert!(run(cli.mock, async {}).await.is_err(), "binding a taken port must fail");
    }
}
