//! Object-store sink benchmark (not a test): events from a journal through the
//! real runner into gzipped NDJSON objects, in a local directory and in moto
//! (a real S3 implementation on loopback, started by scripts/start-moto.sh
//! unless TINES_AUDIT_TEST_S3_ENDPOINT names one). Prints events/s and CPU
//! seconds per million events of this process (journal read, encoding, gzip,
//! HTTP client), and moto's own CPU apart. The sink signs digests as it runs;
//! each lake is then verified against them (`verify --object-store`'s work:
//! every digest checked, every object listed, downloaded and hashed), in
//! events/s and objects/s.
//!
//!   cargo bench --bench object_store              # 500,000 events
//!   EVENTS=1000000 cargo bench --bench object_store

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use tines_audit::format::{Encoder, Shape};
use tines_audit::journal::{Journal, Record, WindowCommit};
use tines_audit::signing::{Keyring, SigningKey};
use tines_audit::sinks::object_store::ObjectStoreConfig;
use tines_audit::sinks::object_store::verify_lake::Lake;
use tines_audit::sinks::runner::{Consumer, Flush};

const TENANTS: [&str; 2] = ["acme", "globex"];
const OPERATIONS: [&str; 6] =
    ["Login", "StoryCreation", "ActionUpdate", "CredentialUpdate", "TeamMembershipCreation", "StoryExport"];

fn cpu_secs() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU seconds a process has used so far (from /proc), for the moto server.
fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    Some(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

/// Realistic Tines audit records (about 450 bytes), 5 a second, two tenants in windows of 5,000.
fn fill(j: &Journal, n: usize) {
    let base = 1_710_000_000i64;
    for t in TENANTS {
        j.start_progress(t, "cursor", 0, None, "").unwrap();
    }
    let mut i = 0usize;
    while i < n {
        let tenant = TENANTS[(i / 5000) % 2];
        let take = (n - i).min(5000);
        let raws: Vec<(i64, i64, String)> = (i..i + take)
            .map(|k| {
                let at = base + k as i64 / 5;
                let op = OPERATIONS[k % OPERATIONS.len()];
                let raw = format!(
                    r#"{{"id":{id},"created_at":"{ts}","updated_at":"{ts}","user_id":{uid},"user_email":"user{uid}@example.com","user_name":"User {uid}","tenant_id":"{tenant}","operation_name":"{op}","request_ip":"203.0.113.{ip}","request_user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15","inputs":{{"story_id":{sid},"name":"Story {sid}","team_id":{team}}}}}"#,
                    id = k + 1,
                    ts = tines_audit::timeutil::format_rfc3339(at),
                    uid = 1000 + k % 97,
                    ip = k % 250,
                    sid = 50_000 + k % 1013,
                    team = k % 7,
                );
                ((k + 1) as i64, at, raw)
            })
            .collect();
        let pos = j.progress(tenant, "cursor").unwrap().unwrap().position;
        let commit = WindowCommit { tenant, job: "cursor", from: pos, to: pos + 1, fetched: take as u64 };
        let recs = raws.iter().map(|(id, at, raw)| Record {
            id: *id,
            created_at: *at,
            operation_name: "Login",
            user_id: None,
            user_email: None,
            request_ip: None,
            raw,
        });
        j.commit_window(&commit, recs).unwrap();
        i += take;
    }
}

struct Moto {
    endpoint: String,
    pid: Option<u32>,
}

impl Moto {
    fn start() -> Moto {
        if let Ok(ep) = std::env::var("TINES_AUDIT_TEST_S3_ENDPOINT") {
            return Moto { endpoint: ep, pid: None };
        }
        let root = env!("CARGO_MANIFEST_DIR");
        let out =
            Command::new("bash").arg(format!("{root}/scripts/start-moto.sh")).output().expect("run start-moto.sh");
        assert!(out.status.success(), "start-moto.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let value = |k: &str| {
            text.lines().find_map(|l| l.strip_prefix(&format!("export {k}="))).map(str::to_string).expect("moto output")
        };
        Moto { endpoint: value("TINES_AUDIT_TEST_S3_ENDPOINT"), pid: value("MOTO_PID").parse().ok() }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            // SAFETY: signals the moto process this benchmark started.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
}

struct Row {
    label: String,
    events: u64,
    wall: f64,
    cpu: f64,
    server_cpu: Option<f64>,
    objects: usize,
    raw_mib: f64,
    gz_mib: f64,
}

/// A verification of a lake.
struct Verified {
    label: String,
    digests: usize,
    objects: usize,
    events: u64,
    bytes: u64,
    wall: f64,
    cpu: f64,
}

async fn verify(label: &str, cfg: &ObjectStoreConfig, key: &SigningKey) -> Verified {
    let lake = Lake::of(cfg).expect("lake");
    let (cpu0, t0) = (cpu_secs(), Instant::now());
    let r = lake.verify(&Keyring::new(vec![*key.public()]), Arc::new(|_| {})).await.expect("verify");
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - cpu0);
    assert!(r.ok && r.not_yet_covered == 0, "{label}: {:?}", r.problems);
    Verified {
        label: label.to_string(),
        digests: r.digests,
        objects: r.objects_verified,
        events: r.events_verified,
        bytes: r.bytes_verified,
        wall,
        cpu,
    }
}

async fn run(label: &str, cfg: &ObjectStoreConfig, j: &Journal, server: Option<u32>, key: &Arc<SigningKey>) -> Row {
    let sink = cfg.build(Encoder::new(Shape::Raw, None)).expect("sink config").with_digests(key.clone());
    let mut consumer = Consumer::new(Box::new(sink));
    let (server0, cpu0, t0) = (server.and_then(process_cpu_secs), cpu_secs(), Instant::now());
    let events = consumer.drain(j, Flush::All).await.expect("drain");
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - cpu0);
    let server_cpu = server.and_then(process_cpu_secs).zip(server0).map(|(b, a)| b - a);
    // Sizes, read back through the same store.
    let url = url::Url::parse(&cfg.url).unwrap();
    let dest_prefix = url.path().trim_matches('/').to_string();
    let store: std::sync::Arc<dyn object_store::ObjectStore> = match url.scheme() {
        "file" => std::sync::Arc::new(object_store::local::LocalFileSystem::new()),
        _ => std::sync::Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(url.host_str().unwrap())
                .with_endpoint(cfg.endpoint.clone().unwrap())
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id("bench")
                .with_secret_access_key("bench")
                .build()
                .unwrap(),
        ),
    };
    let prefix = object_store::path::Path::from(dest_prefix);
    let metas: Vec<object_store::ObjectMeta> =
        futures_util::TryStreamExt::try_collect(store.list(Some(&prefix))).await.unwrap();
    let gz: u64 = metas.iter().map(|m| m.size).sum();
    let raw = j.read_after(0, 10_000_000, usize::MAX).unwrap().raw_bytes() as f64 + events as f64;
    Row {
        label: label.to_string(),
        events,
        wall,
        cpu,
        server_cpu,
        objects: metas.len(),
        raw_mib: raw / 1_048_576.0,
        gz_mib: gz as f64 / 1_048_576.0,
    }
}

fn main() {
    let n: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") { 500_000 } else { 2_000 });
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap().trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("machine: {cores} cores, {cpu_model}; {n} events");

    let work = tempfile::tempdir().unwrap();
    let j = Journal::open(&work.path().join("journal")).unwrap();
    let t = Instant::now();
    fill(&j, n);
    println!("journal filled in {:.1} s\n", t.elapsed().as_secs_f64());

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let moto = Moto::start();
    let key = Arc::new(SigningKey::ephemeral());
    let mut rows = Vec::new();
    let mut verified = Vec::new();
    rt.block_on(async {
        let local = |extra: &str, dir: &str| -> ObjectStoreConfig {
            toml::from_str(&format!("url = \"file://{}\"\n{extra}", work.path().join(dir).display())).unwrap()
        };
        for (label, extra, dir) in [
            ("local dir, roll 100k events/64 MiB", "", "local-default"),
            ("local dir, roll 10k events", "roll_events = 10000", "local-10k"),
        ] {
            let cfg = local(extra, dir);
            rows.push(run(label, &cfg, &j, None, &key).await);
            verified.push(verify(label, &cfg, &key).await);
        }
        for (label, extra) in [
            ("moto S3, roll 100k events/64 MiB", ""),
            ("moto S3, roll 10k events", "roll_events = 10000"),
            ("moto S3, roll 1k events", "roll_events = 1000"),
        ] {
            let bucket = format!("bench-{}-{}", std::process::id(), rows.len());
            let resp = reqwest::Client::new().put(format!("{}/{bucket}", moto.endpoint)).send().await.unwrap();
            assert!(resp.status().is_success(), "create bucket: {}", resp.status());
            let cfg: ObjectStoreConfig = toml::from_str(&format!(
                "url = \"s3://{bucket}/tines/audit\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
                 access_key_id = \"bench\"\nsecret_access_key = \"bench\"\n{extra}",
                moto.endpoint
            ))
            .unwrap();
            rows.push(run(label, &cfg, &j, moto.pid, &key).await);
            verified.push(verify(label, &cfg, &key).await);
        }
    });

    println!(
        "{:<34} {:>8} {:>8} {:>10} {:>12} {:>12} {:>8} {:>9} {:>8}",
        "run", "events", "wall s", "events/s", "CPU s/1M ev", "server CPU s", "objects", "raw MiB", "gz MiB"
    );
    for r in rows {
        println!(
            "{:<34} {:>8} {:>8.2} {:>10.0} {:>12.2} {:>12} {:>8} {:>9.1} {:>8.1}",
            r.label,
            r.events,
            r.wall,
            r.events as f64 / r.wall,
            r.cpu / r.events as f64 * 1e6,
            r.server_cpu.map(|s| format!("{s:.2}")).unwrap_or_else(|| "-".into()),
            r.objects,
            r.raw_mib,
            r.gz_mib
        );
    }

    println!(
        "\n{:<34} {:>8} {:>8} {:>9} {:>8} {:>10} {:>10} {:>8} {:>10}",
        "verify --object-store", "digests", "objects", "events", "wall s", "events/s", "objects/s", "MiB/s", "CPU s"
    );
    for v in verified {
        println!(
            "{:<34} {:>8} {:>8} {:>9} {:>8.2} {:>10.0} {:>10.0} {:>8.1} {:>10.2}",
            v.label,
            v.digests,
            v.objects,
            v.events,
            v.wall,
            v.events as f64 / v.wall,
            v.objects as f64 / v.wall,
            v.bytes as f64 / 1_048_576.0 / v.wall,
            v.cpu
        );
    }
}
