//! Delivery throughput of the local sinks (file, syslog over TCP) from a real
//! journal of emulator records: events per second and CPU seconds per million
//! events. Not a test; run with `cargo bench --bench local_sinks`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tines_audit::config::{RawConfig, Since, TenantConfig};
use tines_audit::format::Shape;
use tines_audit::journal::Journal;
use tines_audit::mock::{DEMO_KEY, MockConfig, MockServer};
use tines_audit::secret::Secret;
use tines_audit::service;
use tines_audit::sinks::SinkConfig;
use tines_audit::sinks::runner::{Consumer, Flush};
use tines_audit::source::tines::collector::Filters;
use tines_audit::source::tines::endpoint::Endpoint;
use tokio::io::AsyncReadExt;

/// Events in the journal: 200,000 under `cargo bench` (which passes --bench), a smoke run otherwise.
fn events() -> usize {
    if std::env::args().any(|a| a == "--bench") { 200_000 } else { 2_000 }
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of the stat line (utime, stime) are at 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

async fn journal_of_emulator_records(dir: &std::path::Path) -> Journal {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let anchor = Some(tines_audit::timeutil::now_secs() - 3600);
    let mock = MockServer::start(
        MockConfig { history: events(), anchor, rate_limit_per_minute: 0, ..Default::default() },
        listener,
    )
    .await
    .unwrap();
    let mut settings = RawConfig::default().build().unwrap();
    settings.client.requests_per_minute = 0;
    settings.tenants.push(TenantConfig {
        name: "bench".into(),
        endpoint: Endpoint::parse(&mock.base_url()).unwrap(),
        api_key: Secret::new(DEMO_KEY),
        since: Since::Ago(Duration::from_secs(40 * 86_400)),
        filters: Filters::default(),
    });
    let journal = Journal::open(dir).unwrap();
    let tenant = service::Tenant::new(settings.tenants[0].clone(), &settings).unwrap();
    service::sync_tenant(&journal, &tenant, &settings, None).await.unwrap();
    mock.shutdown().await;
    journal
}

async fn measure(label: &str, journal: &Journal, config: SinkConfig) {
    let mut consumer = Consumer::new(config.build().unwrap());
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let n = consumer.drain(journal, Flush::All).await.unwrap();
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    println!("{label:<28} {n:>9} {:>12.0} {:>22.2}", n as f64 / wall, cpu / n as f64 * 1e6);
}

/// A syslog receiver that only counts bytes, so the sink is what is measured.
async fn counting_tcp_receiver() -> (u16, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bytes = Arc::new(AtomicU64::new(0));
    let b = bytes.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let b = b.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    b.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (port, bytes)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let journal = journal_of_emulator_records(&dir.path().join("journal")).await;
        println!(
            "machine: {} cores; {} emulator records in the journal",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            events()
        );
        println!();
        println!("{:<28} {:>9} {:>12} {:>22}", "sink", "events", "events/s", "CPU s per 1M events");
        let file = |name: &str, format: Shape| SinkConfig::File {
            name: Some(name.into()),
            path: dir.path().join(format!("{name}/a.ndjson")),
            max_bytes: None,
            format,
            pseudonymize: None,
            adopt_existing: false,
        };
        measure("file raw (fsync per batch)", &journal, file("file-raw", Shape::Raw)).await;
        measure("file ECS", &journal, file("file-ecs", Shape::Ecs)).await;
        measure("file OCSF", &journal, file("file-ocsf", Shape::Ocsf)).await;
        let (port, _bytes) = counting_tcp_receiver().await;
        let syslog = |name: &str, extra: &str| -> SinkConfig {
            #[derive(serde::Deserialize)]
            struct W {
                sinks: Vec<SinkConfig>,
            }
            let text =
                format!("[[sinks]]\ntype = \"syslog\"\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\n{extra}");
            toml::from_str::<W>(&text).unwrap().sinks.remove(0)
        };
        measure("syslog TCP, JSON", &journal, syslog("syslog-json", "")).await;
        measure("syslog TCP, CEF", &journal, syslog("syslog-cef", "encoding = \"cef\"")).await;
    });
}
