//! `tines-audit demo`: the emulator with a week of history and live events,
//! the collector syncing it every few seconds into a journal, and a file sink
//! fed from the journal, and the console on 127.0.0.1 with a fresh token; at the end it checks that every emulator event is in
//! the journal and the file exactly once, and says where everything is.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config::{RawConfig, Settings, Since, TenantConfig};
use crate::journal::{Access, Journal, Location};
use crate::mock::{DEMO_KEY, MockConfig, MockServer};
use crate::secret::Secret;
use crate::service;
use crate::sinks::SinkConfig;
use crate::source::tines::collector::Filters;
use crate::source::tines::endpoint::Endpoint;
use crate::timeutil::{now_secs, parse_duration};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data directory for the journal and the file sink (default: a new temporary directory, kept afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Stop on its own after this long (for example 60s); default: run until Ctrl-C.
    #[arg(long, value_parser = |s: &str| parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration such as 60s or 5m")))]
    pub duration: Option<Duration>,
    /// Events of history the emulated tenant starts with, spread over the past week.
    #[arg(long, default_value_t = 20_000)]
    pub history: usize,
    /// Live events per second the emulated tenant produces while the demo runs.
    #[arg(long, default_value_t = 5.0)]
    pub live_rate: f64,
    /// Port for the emulator on 127.0.0.1 (default: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Seed of the emulated tenant (same seed, same users and operations).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Port for the console on 127.0.0.1 (default: any free port).
    #[arg(long, default_value_t = 0)]
    pub web_port: u16,
}

/// A fresh console token for this demo run: 32 bytes from the system's secure random source.
fn fresh_token() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("system random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const SETTLE_SECS: i64 = 3;

/// Countries the demo expects activity from: every emulator country but the
/// one its scripted foreign login comes from.
const DEMO_ALLOWED: &[&str] = &["US", "IE", "GB", "DE", "FR", "NL", "AU", "JP", "IN", "CA", "SG"];

/// The three situations of Tines's monitoring advice, by the shipped rule that finds each.
const SEED_RULES: &[(&str, &str)] = &[
    ("tines_credential_mass_deletion", "more than five credential deletions"),
    ("tines_tenant_owner_or_admin_granted", "a new tenant owner or admin"),
    ("tines_unexpected_country", "activity from an unexpected country"),
];

fn demo_detection() -> crate::detect::DetectSettings {
    crate::detect::DetectSettings {
        emulator_geoip: true,
        vars: [("allowed_countries".to_string(), DEMO_ALLOWED.iter().map(|c| c.to_string()).collect())].into(),
        suppress_secs: 3600,
        // History builds correlation windows and baselines; only the last minutes raise alerts.
        lookback_secs: Some(120),
        outputs: vec![crate::detect::alerts::OutputConfig::Stdout {
            name: None,
            format: crate::detect::alerts::StdoutFormat::Text,
        }],
        ..Default::default()
    }
}

fn demo_settings(base_url: &str, data_dir: PathBuf, web: crate::web::WebSettings) -> anyhow::Result<Settings> {
    let mut s = RawConfig::default().build()?;
    s.data_dir = data_dir.clone();
    // The demo keeps its journal in SQLite beside the file sink: it needs no database.
    s.journal = Location::Dir(data_dir.clone());
    s.interval = Duration::from_secs(3);
    s.windows.settle_secs = SETTLE_SECS;
    // Day-long reconciliation slices: the demo's first pass over its week costs 7 requests, not 168.
    s.reconcile.slice = Duration::from_secs(86_400);
    s.web = Some(web);
    s.tenants.push(TenantConfig {
        name: "demo".into(),
        endpoint: Endpoint::parse(base_url)?,
        api_key: Secret::new(DEMO_KEY),
        since: Since::Ago(Duration::from_secs(8 * 86_400)),
        filters: Filters::default(),
    });
    s.sinks.push(SinkConfig::File {
        name: Some("archive".into()),
        path: data_dir.join("out/audit.ndjson"),
        max_bytes: None,
        format: Default::default(),
        pseudonymize: None,
        adopt_existing: false,
    });
    s.detect = Some(demo_detection());
    Ok(s)
}

/// Counts lines and distinct ids in the NDJSON files of the sink.
fn file_sink_ids(path: &std::path::Path) -> anyhow::Result<(u64, std::collections::HashSet<i64>)> {
    let dir = path.parent().context("sink path has a directory")?;
    let (mut lines, mut ids) = (0u64, std::collections::HashSet::new());
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == "ndjson") {
            for line in std::fs::read_to_string(&p)?.lines() {
                lines += 1;
                let v: serde_json::Value = serde_json::from_str(line)?;
                ids.insert(v["id"].as_i64().context("record has an id")?);
            }
        }
    }
    Ok((lines, ids))
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // Everything the emulator scripts happens after this (its history lies before).
    let demo_start = now_secs();
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new().prefix("tines-audit-demo-").tempdir()?.keep(),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await.context("binding the emulator")?;
    let mock = MockServer::start(
        MockConfig {
            seed: args.seed,
            history: args.history,
            history_span: Duration::from_secs(7 * 86_400),
            live_rate: args.live_rate,
            late_fraction: 0.05,
            max_lateness_secs: 2,
            scenarios: true,
            ..MockConfig::default()
        },
        listener,
    )
    .await?;
    let token = fresh_token();
    let web = crate::web::WebSettings {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], args.web_port)),
        users: vec![crate::web::auth::WebUser {
            name: "admin".into(),
            role: crate::web::auth::Role::Analyst,
            token: Secret::new(token.clone()),
        }],
        allowed_hosts: Vec::new(),
    };
    let settings = Arc::new(demo_settings(&mock.base_url(), data_dir.clone(), web)?);
    let sink_path = data_dir.join("out/audit.ndjson");
    println!("tines-audit demo");
    println!(
        "  emulated Tines tenant  {} ({} events of history, {}/s live)",
        mock.base_url(),
        args.history,
        args.live_rate
    );
    println!("  data directory         {}", data_dir.display());
    println!("  journal                {}", data_dir.join("journal.db").display());
    println!("  file sink              {}", sink_path.display());
    println!(
        "  detection              the shipped rules; allowed countries {}; alerts print here as ALERT lines",
        DEMO_ALLOWED.join(" ")
    );
    println!("  scripted in the first 30 s: 7 credential deletions, a new tenant owner, a login from Brazil");
    println!("  stop with Ctrl-C{}", args.duration.map_or(String::new(), |d| format!(" (or wait {}s)", d.as_secs())));

    let journal = {
        let at = settings.journal.clone();
        tokio::task::spawn_blocking(move || Journal::open_at(&at, Access::Write)).await??
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let web = crate::cli::start_web(&settings, &journal, &rx).await?;
    if let Some((address, _)) = &web {
        // On standard output only, never in the logs: the token is this run's key to the console.
        println!("  console                http://{address}/  (log in with token {token})");
        println!();
    }
    let daemon = tokio::spawn(service::run(settings.clone(), journal.clone(), rx));
    let started = tokio::time::Instant::now();
    let stop = async {
        match args.duration {
            Some(d) => tokio::select! { _ = tokio::time::sleep(d) => {}, _ = crate::cli::shutdown_signal() => {} },
            None => crate::cli::shutdown_signal().await,
        }
    };
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let (events, offsets) = journal.call(|j| Ok((j.count_events(None)?, j.consumers()?))).await?;
                let delivered = offsets.iter().find(|(n, _)| n == "archive").map_or(0, |(_, o)| o.position);
                println!(
                    "[{:>4}s] emulator {:>7} events | journal {:>7} | file sink at seq {:>7}",
                    started.elapsed().as_secs(), mock.event_count(), events, delivered
                );
            }
        }
    }
    // Stop live events, let the last ones settle, and take them in before checking.
    mock.set_live(false);
    let settle_until = mock.newest_created_at().unwrap_or(0) + SETTLE_SECS + 1;
    while now_secs() <= settle_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = tx.send(true);
    daemon.await??;
    if let Some((_, handle)) = web {
        handle.await??;
    }
    let tenant = service::Tenant::new(settings.tenants[0].clone(), &settings)?;
    service::sync_tenant(&journal, &tenant, &settings, None).await?;
    let mut consumers = service::consumers(&settings, None)?;
    for (_, r) in service::drain_all(&journal, &mut consumers).await {
        r?;
    }
    let expected: Vec<i64> = mock.ids().into_iter().map(|i| i as i64).collect();
    let in_journal = journal.call(|j| j.ids("demo")).await?;
    let (lines, in_file) = file_sink_ids(&sink_path)?;
    println!();
    println!("emulator produced {} events", expected.len());
    println!("journal holds     {} events ({} distinct ids)", in_journal.len(), in_journal.len());
    println!("file sink holds   {lines} lines ({} distinct ids)", in_file.len());
    let alerts = journal.call(|j| j.alerts_after(0, usize::MAX >> 1)).await?;
    println!("alerts raised     {}", alerts.len());
    for (rule, what) in SEED_RULES {
        let n = alerts.iter().filter(|a| a.rule_id == *rule).count();
        println!("  {} {what}: {n} alert(s)", if n > 0 { "found" } else { "MISSING" });
    }
    // The tenant's posture as its audit trail tells it: the scripted owner grant shows
    // with who made it, when and from where.
    let posture = journal
        .call(|j| {
            crate::posture::compute(j, "demo", &crate::posture::Options::default())
                .map_err(|e| crate::journal::JournalError::Task(e.to_string()))
        })
        .await?;
    let owners: Vec<&crate::posture::Entry> = posture.entries_of(crate::posture::Kind::Owner).collect();
    println!("posture           {} tenant owner(s) or admin(s) in force", owners.len());
    let granted_now = owners.iter().filter_map(|e| Some((e, e.since.as_ref()?))).filter(|(_, c)| c.at >= demo_start);
    let mut granted = 0;
    for (e, c) in granted_now {
        granted += 1;
        println!(
            "  granted during the demo: {} by {} at {} from {} (event {})",
            e.title,
            c.actor(),
            c.time,
            c.request_ip.as_deref().unwrap_or("an unknown address"),
            c.event_id
        );
    }
    if granted == 0 && started.elapsed() >= crate::mock::SCENARIO_TIMES[1] {
        println!("  MISSING: the scripted tenant-owner grant is not in the posture");
    }
    // The detection path proven end to end on synthetic events, outside the journal.
    let selftest = match &settings.detect {
        Some(d) => Some(crate::detect::selftest::run(d, &settings.sinks).await?),
        None => None,
    };
    if let Some(r) = &selftest {
        println!("self-test         {}", r.summary);
    }
    let journal_ok = in_journal == expected;
    let file_ok = lines as usize == expected.len() && expected.iter().all(|i| in_file.contains(i));
    if journal_ok && file_ok {
        println!("verified: every emulator event is in the journal and in the file sink exactly once");
    } else {
        println!("MISMATCH: journal ok = {journal_ok}, file sink ok = {file_ok}");
    }
    println!();
    println!("look around:");
    println!("  tines-audit state show --data-dir {}", data_dir.display());
    println!("  head -n 3 {}", sink_path.display());
    println!("  tines-audit rules backtest --since 8d --emulator-geoip --data-dir {}", data_dir.display());
    println!("  tines-audit search --data-dir {} --category credential", data_dir.display());
    println!("  tines-audit posture --data-dir {} --history", data_dir.display());
    println!("  tines-audit report --data-dir {} --framework soc2 --from 8d -o report.html", data_dir.display());
    mock.shutdown().await;
    if !(journal_ok && file_ok) {
        anyhow::bail!("the demo's final check failed");
    }
    if selftest.is_some_and(|r| !r.passed) {
        anyhow::bail!("the demo's self-test failed");
    }
    Ok(())
}
