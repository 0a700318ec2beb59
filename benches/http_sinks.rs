//! Throughput and CPU cost of the HTTP sinks: 200,000 journal events pushed
//! through each sink (by the real runner) into minimal local receivers.
//!
//! The receivers run in a child process (this binary, re-run with `receiver`)
//! so the CPU time measured here is the sink side only: journal reads,
//! encoding, gzip and HTTP. Run with `cargo bench --bench http_sinks`;
//! under `cargo test --all-targets` (no `--bench` argument) it is a quick
//! smoke run of 2,000 events, so CI keeps it working.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use tines_audit::format::Encoder;
use tines_audit::journal::{EventBatch, Journal, Record, WindowCommit};
use tines_audit::sinks::datadog::DatadogConfig;
use tines_audit::sinks::runner::{Consumer, Flush};
use tines_audit::sinks::splunk_hec::SplunkHecConfig;
use tines_audit::sinks::webhook::WebhookConfig;
use tines_audit::sinks::{BoxFuture, Sink, SinkError};

fn main() {
    if std::env::args().any(|a| a == "receiver") {
        receiver();
        return;
    }
    let events = if std::env::args().any(|a| a == "--bench") { 200_000 } else { 2_000 };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(bench(events));
}

// ------------------------------------------------------------ receivers (child process)

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    events: AtomicU64,
    body_bytes: AtomicU64,
    wire_bytes: AtomicU64,
}

fn count(c: &Counts, headers: &HeaderMap, body: &[u8], per_event: &[u8]) {
    let plain = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::with_capacity(body.len() * 8);
        flate2::read::GzDecoder::new(body).read_to_end(&mut out).unwrap();
        out
    } else {
        body.to_vec()
    };
    let n = if per_event == b"\n" {
        plain.iter().filter(|b| **b == b'\n').count()
    } else {
        plain.windows(per_event.len()).filter(|w| *w == per_event).count()
    };
    c.requests.fetch_add(1, Ordering::Relaxed);
    c.events.fetch_add(n as u64, Ordering::Relaxed);
    c.body_bytes.fetch_add(plain.len() as u64, Ordering::Relaxed);
    c.wire_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
}

fn receiver() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let counts = Arc::new(Counts::default());
        let app = Router::new()
            .route(
                "/services/collector/event",
                post(|State(c): State<Arc<Counts>>, h: HeaderMap, b: Bytes| async move {
                    count(&c, &h, &b, b"\n");
                    (StatusCode::OK, r#"{"text":"Success","code":0}"#)
                }),
            )
            .route(
                "/api/v2/logs",
                post(|State(c): State<Arc<Counts>>, h: HeaderMap, b: Bytes| async move {
                    count(&c, &h, &b, b"{\"ddsource\"");
                    (StatusCode::ACCEPTED, "{}")
                }),
            )
            .route(
                "/hook",
                post(|State(c): State<Arc<Counts>>, h: HeaderMap, b: Bytes| async move {
                    let json_array = h.get("content-type").is_some_and(|v| v == "application/json");
                    count(&c, &h, &b, if json_array { b"{\"created_at\"" } else { b"\n" });
                    StatusCode::OK
                }),
            )
            .route(
                "/stats",
                get(|State(c): State<Arc<Counts>>| async move {
                    let v =
                        [&c.requests, &c.events, &c.body_bytes, &c.wire_bytes].map(|a| a.swap(0, Ordering::Relaxed));
                    format!("{} {} {} {}", v[0], v[1], v[2], v[3])
                }),
            )
            .with_state(counts)
            .layer(DefaultBodyLimit::disable());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("PORT {}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes our stdin.
        let stop = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await
            .unwrap();
    });
}

// ------------------------------------------------------------ the bench (parent process)

fn cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0);
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// A sink that does nothing: the cost of the runner and journal reads alone.
struct NullSink;

impl Sink for NullSink {
    fn name(&self) -> &str {
        "null"
    }
    fn recover(&mut self, _: Option<String>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
    fn deliver(&mut self, _: Arc<EventBatch>) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(async { Ok(None) })
    }
}

fn journal(dir: &std::path::Path, events: i64) -> Journal {
    let j = Journal::open(&dir.join("j")).unwrap();
    j.start_progress("acme.tines.com", "cursor", 0, None, "").unwrap();
    let base = 1_780_000_000i64;
    let raws: Vec<String> = (1..=events)
        .map(|i| {
            format!(
                r#"{{"created_at":"{}","id":{i},"inputs":{{"storyId":{},"name":"Story {i}"}},"operation_name":"StoryUpdate","outputs":{{}},"request_ip":"10.0.{}.{}","request_user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36","tenant_id":1111,"updated_at":"{}","user_email":"user{}@example.com","user_id":{},"user_name":"User {}"}}"#,
                tines_audit::timeutil::format_rfc3339(base + i),
                i % 977,
                i % 256,
                i % 251,
                tines_audit::timeutil::format_rfc3339(base + i),
                i % 50,
                58_000 + i % 50,
                i % 50
            )
        })
        .collect();
    let recs = raws.iter().enumerate().map(|(i, raw)| Record {
        id: i as i64 + 1,
        created_at: base + i as i64 + 1,
        operation_name: "StoryUpdate",
        user_id: None,
        user_email: None,
        request_ip: None,
        raw,
    });
    let w = WindowCommit { tenant: "acme.tines.com", job: "cursor", from: 0, to: 1, fetched: events as u64 };
    j.commit_window(&w, recs).unwrap();
    j
}

async fn stats(base: &str) -> [u64; 4] {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: Vec<u64> = text.split(' ').map(|s| s.parse().unwrap()).collect();
    [v[0], v[1], v[2], v[3]]
}

async fn bench(events: i64) {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), events);
    let raw_mb = j.read_after(0, events as usize, usize::MAX).unwrap().raw_bytes() as f64 / 1e6;

    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("receiver")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    let base = format!("http://127.0.0.1:{port}");

    let token = "3f1c2a9e-8b7d-4e6f-a5c4-1d2e3f4a5b6c";
    let hec = |extra: &str| -> Box<dyn Sink> {
        let c: SplunkHecConfig =
            toml::from_str(&format!("endpoint = \"{base}\"\ntoken = \"{token}\"\n{extra}")).unwrap();
        Box::new(c.build(Encoder::default()).unwrap())
    };
    let dd = |extra: &str| -> Box<dyn Sink> {
        let c: DatadogConfig = toml::from_str(&format!("endpoint = \"{base}\"\napi_key = \"k\"\n{extra}")).unwrap();
        Box::new(c.build(Encoder::default()).unwrap())
    };
    let hook = |extra: &str| -> Box<dyn Sink> {
        let c: WebhookConfig = toml::from_str(&format!("url = \"{base}/hook\"\n{extra}")).unwrap();
        Box::new(c.build(Encoder::default()).unwrap())
    };
    let runs: Vec<(&str, Box<dyn Sink>)> = vec![
        ("runner + journal only (null sink)", Box::new(NullSink)),
        ("splunk_hec (gzip, default)", hec("name = \"hec-gz\"")),
        ("splunk_hec (no gzip)", hec("name = \"hec\"\ngzip = false")),
        ("datadog (gzip, default)", dd("name = \"dd\"")),
        ("webhook ndjson (no gzip, default)", hook("name = \"hook\"")),
        ("webhook json_array + gzip", hook("name = \"hook-gz\"\nencoding = \"json_array\"\ngzip = true")),
    ];

    println!(
        "{events} events, {raw_mb:.1} MB of raw records; {} CPUs ({})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l
                .split(':')
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string()))
            .unwrap_or_default()
    );
    println!(
        "{:<36} {:>10} {:>14} {:>9} {:>11} {:>10}",
        "sink", "events/s", "CPU s/M events", "requests", "body MB", "wire MB"
    );
    for (label, sink) in runs {
        let mut c = Consumer::new(sink);
        let (t0, cpu0) = (Instant::now(), cpu_seconds());
        let n = c.drain(&j, Flush::All).await.unwrap();
        let (wall, cpu) = (t0.elapsed(), cpu_seconds() - cpu0);
        assert_eq!(n, events as u64);
        let [requests, received, body, wire] = stats(&base).await;
        if label.starts_with("runner") {
            assert_eq!(requests, 0);
        } else {
            assert_eq!(received, events as u64, "{label}: the receiver counted {received} events");
        }
        println!(
            "{:<36} {:>10.0} {:>14.2} {:>9} {:>11.1} {:>10.1}",
            label,
            events as f64 / wall.max(Duration::from_micros(1)).as_secs_f64(),
            cpu / events as f64 * 1e6,
            requests,
            body as f64 / 1e6,
            wire as f64 / 1e6
        );
    }
    drop(child.stdin.take());
    let _ = child.wait();
}
