//! Rule evaluation throughput with the whole shipped pack loaded (the
//! unexpected-country rule on, GeoIP from the emulator's database) over a
//! million emulator records, in events per second on one core. Not a test;
//! run with `cargo bench --bench detect`.

use std::sync::Arc;
use std::time::Instant;

use tines_audit::detect::engine::{Engine, EngineOptions};
use tines_audit::detect::geoip::GeoIp;
use tines_audit::detect::rules::RulePack;
use tines_audit::mock::{MockConfig, MockServer};

const UNIQUE_FULL: usize = 250_000;
const PASSES: i64 = 4;
const SPAN_SECS: i64 = 30 * 86_400;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo bench` passes --bench; under `cargo test --all-targets` this is only a smoke run.
    #[allow(non_snake_case)]
    let UNIQUE: usize = if std::env::args().any(|a| a == "--bench") { UNIQUE_FULL } else { 2_000 };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let anchor = 1_700_000_000;
    let config = MockConfig {
        history: UNIQUE,
        anchor: Some(anchor),
        history_span: std::time::Duration::from_secs(SPAN_SECS as u64),
        rate_limit_per_minute: 0,
        ..Default::default()
    };
    let mock = MockServer::start(config, listener).await.unwrap();
    let records: Vec<(i64, String)> = mock
        .records()
        .into_iter()
        .map(|v| {
            let t = tines_audit::timeutil::parse_rfc3339(v["created_at"].as_str().unwrap()).unwrap();
            (t, v.to_string())
        })
        .collect();
    mock.shutdown().await;
    let bytes: usize = records.iter().map(|r| r.1.len()).sum();

    let pack = RulePack::builtin();
    let allowed = ["US", "IE", "GB", "DE", "FR", "NL", "AU", "CA"].map(String::from).to_vec();
    let opts = EngineOptions { vars: [("allowed_countries".to_string(), allowed)].into(), ..Default::default() };
    let (mut engine, problems) = Engine::new(&pack, &opts, Arc::new(GeoIp::emulator()));
    assert!(problems.is_empty(), "{problems:?}");

    let t0 = Instant::now();
    let mut seq = 0i64;
    let mut alerts = 0usize;
    for pass in 0..PASSES {
        for (t, raw) in &records {
            seq += 1;
            alerts += engine.evaluate(seq, "bench", t + pass * SPAN_SECS, raw).len();
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = seq as f64;
    let c = engine.counters;
    println!("detect: whole shipped pack ({} rules), emulator GeoIP, one core", engine.rule_count());
    println!(
        "{:>10} events ({} unique records x {PASSES}, {:.0} bytes/record)  {:>8.2} s  {:>10.0} events/s",
        seq,
        records.len(),
        bytes as f64 / records.len() as f64,
        secs,
        n / secs
    );
    println!("  matches {}, alerts {alerts} (suppressed {}), unparsable {}", c.matches, c.suppressed, c.unparsable);
}
