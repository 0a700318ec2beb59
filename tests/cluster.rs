//! Several instances on one PostgreSQL journal: three `tines-audit run` processes share
//! three emulated tenants (live events) and an object-store lake, are SIGKILLed and
//! restarted at random, and one is paused (SIGSTOP) past its lease while another takes
//! its job over. The journal and the lake must hold every event exactly once, and the
//! paused instance must find its lease gone when it wakes.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tines_audit::journal::{Access, Journal, Location};
use tines_audit::mock::{DEMO_KEY, MockConfig, MockServer};
use tines_audit::secret::Secret;

const TENANTS: usize = 3;
const INSTANCES: usize = 3;

struct Instance {
    child: Child,
    log: PathBuf,
    data: PathBuf,
    starts: usize,
}

/// An instance never outlives its test, even one that fails.
impl Drop for Instance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own, still running child; no memory is involved.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGCONT) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(cfg: &Path, inst: &mut Instance) {
    inst.starts += 1;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&inst.log).unwrap();
    inst.child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(cfg)
        .arg("--data-dir")
        .arg(&inst.data)
        .env("K", DEMO_KEY)
        .env("TINES_AUDIT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// `(tenant_id, id)` of every event in the lake, with how often it occurs.
fn lake_counts(dir: &Path) -> HashMap<(i64, i64), u32> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if !p.to_string_lossy().ends_with(".gz") {
                continue;
            }
            let Ok(f) = std::fs::File::open(&p) else { continue };
            for line in BufReader::new(flate2::read::GzDecoder::new(f)).lines() {
                let Ok(line) = line else { break };
                let v: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                *out.entry((v["tenant_id"].as_i64().unwrap(), v["id"].as_i64().unwrap())).or_insert(0) += 1;
            }
        }
    }
    out
}

fn holder_pid(holder: &str) -> Option<u32> {
    holder.split(':').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_killed_at_random_keep_every_event_exactly_once_and_a_paused_holder_is_fenced() {
    let url = pg::fresh_schema_url();
    let mut mocks: Vec<MockServer> = Vec::new();
    for i in 0..TENANTS {
        mocks.push(
            start_mock(MockConfig {
                history: 1_500,
                live_rate: 8.0,
                seed: 60 + i as u64,
                tenant_id: 500 + i as u64,
                ..Default::default()
            })
            .await,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    // A data directory of the test's own: the instances keep their signing key there (one
    // key for all three, as for a real cluster), never in the working directory.
    let mut cfg_text = format!(
        r#"data_dir = "{}"
[journal]
url = "{url}"
lease_ttl = "3s"
[collect]
interval = "1s"
settle_delay = "1s"
requests_per_minute = 0
[[sinks]]
type = "object_store"
name = "lake"
url = "file://{}"
roll_events = 300
roll_age = "1s"
"#,
        dir.path().join("data").display(),
        lake.display()
    );
    for (i, m) in mocks.iter().enumerate() {
        cfg_text.push_str(&format!(
            "[[tenants]]\nname = \"t{i}\"\ndomain = \"{}\"\napi_key_env = \"K\"\nsince = \"40d\"\n",
            m.base_url()
        ));
    }
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, cfg_text).unwrap();

    let mut instances: Vec<Instance> = (0..INSTANCES)
        .map(|i| Instance {
            child: Command::new("true").spawn().unwrap(),
            log: dir.path().join(format!("i{i}.log")),
            data: dir.path().join(format!("data{i}")),
            starts: 0,
        })
        .collect();
    for inst in &mut instances {
        spawn(&cfg, inst);
    }
    let journal = Journal::open_at(&Location::Url(Secret::new(url.clone())), Access::ReadOnly);
    let journal = match journal {
        Ok(j) => j,
        Err(_) => {
            // The instances create the schema; wait for the first of them.
            let mut j = None;
            wait_until("an instance to create the journal", Duration::from_secs(60), || {
                j = Journal::open_at(&Location::Url(Secret::new(url.clone())), Access::ReadOnly).ok();
                j.is_some()
            })
            .await;
            j.unwrap()
        }
    };
    // Every job leased, spread over the instances.
    wait_until("every job to have a holder", Duration::from_secs(60), || {
        let v = journal.leases().unwrap();
        v.leases.iter().filter(|l| l.expires_at_ms > v.now_ms).count() == TENANTS + 2
    })
    .await;

    // Chaos: for a minute (or $TINES_AUDIT_CLUSTER_CHAOS_SECS, for soaks), SIGKILL an instance
    // at random every few seconds and start it again.
    let chaos_secs = std::env::var("TINES_AUDIT_CLUSTER_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let chaos_until = Instant::now() + Duration::from_secs(chaos_secs);
    let mut kills = 0;
    while Instant::now() < chaos_until {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(1_000..4_000))).await;
        let inst = &mut instances[fastrand::usize(..INSTANCES)];
        signal(&inst.child, libc::SIGKILL);
        inst.child.wait().unwrap();
        kills += 1;
        spawn(&cfg, inst);
    }

    // A paused holder: stop the instance collecting t0 until another takes t0 over, then wake it.
    let live: Vec<u32> = instances.iter().map(|i| i.child.id()).collect();
    let (job, old) = wait_for_holder(&journal, "tenant:t0", &live).await;
    let paused =
        instances.iter_mut().find(|i| Some(i.child.id()) == holder_pid(&old.0)).expect("the holder is one of ours");
    signal(&paused.child, libc::SIGSTOP);
    wait_until("another instance to take t0 over", Duration::from_secs(30), || {
        let v = journal.leases().unwrap();
        v.leases.iter().any(|l| l.job == job && l.holder != old.0 && l.token > old.1 && l.expires_at_ms > v.now_ms)
    })
    .await;
    signal(&paused.child, libc::SIGCONT);
    let paused_log = paused.log.clone();
    wait_until("the paused instance to find its lease gone", Duration::from_secs(30), || {
        std::fs::read_to_string(&paused_log)
            .is_ok_and(|l| l.contains("lost the job's lease") || l.contains("no longer holds the lease"))
    })
    .await;

    // Converge: no new events; every event the emulators served reaches the journal and the lake.
    for m in &mocks {
        m.set_live(false);
    }
    for m in &mocks {
        wait_settled(m).await;
    }
    let want: HashMap<(i64, i64), u32> = mocks
        .iter()
        .enumerate()
        .flat_map(|(i, m)| mock_ids(m).into_iter().map(move |id| ((500 + i as i64, id), 1)))
        .collect();
    for (i, m) in mocks.iter().enumerate() {
        let want_ids = mock_ids(m);
        let tenant = format!("t{i}");
        wait_until(&format!("the journal to hold every event of {tenant}"), Duration::from_secs(120), || {
            journal.ids(&tenant).is_ok_and(|ids| ids == want_ids)
        })
        .await;
    }
    wait_until("the lake to hold every event", Duration::from_secs(120), || {
        let got = lake_counts(&lake);
        want.keys().all(|k| got.contains_key(k))
    })
    .await;
    // Fair shares: with 5 jobs and 3 instances, each instance runs something.
    let pids: Vec<u32> = instances.iter().map(|i| i.child.id()).collect();
    wait_until("every instance to hold a share of the jobs", Duration::from_secs(60), || {
        let v = journal.leases().unwrap();
        let live: Vec<u32> =
            v.leases.iter().filter(|l| l.expires_at_ms > v.now_ms).filter_map(|l| holder_pid(&l.holder)).collect();
        pids.iter().all(|p| live.contains(p))
    })
    .await;
    let show = run_bin(&["state", "show", "--journal-url", &url]);
    let shown = text(&show);
    assert!(show.status.success(), "{shown}");
    for job in ["tenant:t0", "tenant:t1", "tenant:t2", "sink:lake", "indexer"] {
        assert!(shown.lines().any(|l| l.starts_with("lease") && l.contains(job) && l.contains("token")), "{shown}");
    }
    assert!(shown.contains("instances seen in the last minute: "), "{shown}");
    assert!(!shown.contains(url::Url::parse(&url).unwrap().password().unwrap()), "{shown}");
    for inst in &mut instances {
        signal(&inst.child, libc::SIGTERM);
        inst.child.wait().unwrap();
    }
    let got = lake_counts(&lake);
    let doubled: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(doubled.is_empty(), "events in the lake more than once: {doubled:?}");
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(k)).take(10).collect();
    assert!(extra.is_empty(), "events in the lake the emulators never served: {extra:?}");
    assert_eq!(got.len(), want.len());
    let starts: usize = instances.iter().map(|i| i.starts).sum();
    println!("{kills} SIGKILLs, {starts} starts, {} events exactly once in the journal and the lake", want.len());
    assert!(kills >= 10, "the chaos killed often enough ({kills})");
}

/// The holder of `job` and its token, once one of the running instances (`live`) holds it
/// (just after a kill, the dead instance's lease has not expired yet).
async fn wait_for_holder(journal: &Journal, job: &str, live: &[u32]) -> (String, (String, i64)) {
    let mut found = None;
    wait_until(&format!("{job} to have a live holder"), Duration::from_secs(30), || {
        let v = journal.leases().unwrap();
        found = v
            .leases
            .iter()
            .filter(|l| holder_pid(&l.holder).is_some_and(|p| live.contains(&p)))
            .find(|l| l.job == job && l.expires_at_ms > v.now_ms)
            .map(|l| (l.holder.clone(), l.token));
        found.is_some()
    })
    .await;
    (job.to_string(), found.unwrap())
}

/// A single-node install grows: its SQLite journal is exported, imported into PostgreSQL,
/// and exported back into a data directory, keeping every event, cursor and sink offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_journal_moves_to_postgresql_and_back_with_its_positions() {
    let mock = start_mock(MockConfig { history: 2_000, seed: 71, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out/audit.ndjson"));
    let cfg = write_config(dir.path(), &mock.base_url(), "", &file_sink(&out));
    let args = ["collect", "--config", cfg.to_str().unwrap(), "--data-dir", data.to_str().unwrap()];
    let collect = run_bin_async(args.iter().map(|a| a.to_string()).collect()).await;
    assert!(collect.status.success(), "{}", text(&collect));
    let before = Journal::open_read_only(&data).unwrap();
    let (ids, cursor, offset) = (
        before.ids(TENANT).unwrap(),
        before.progress(TENANT, "cursor").unwrap().unwrap().position,
        before.consumers().unwrap(),
    );
    assert_eq!(ids.len(), 2_000);

    let url = pg::fresh_schema_url();
    let file = dir.path().join("single.db");
    let export = run_bin(&["state", "export", "--data-dir", data.to_str().unwrap(), file.to_str().unwrap()]);
    assert!(export.status.success(), "{}", text(&export));
    let import = run_bin(&["state", "import", "--journal-url", &url, file.to_str().unwrap()]);
    assert!(import.status.success(), "{}", text(&import));
    assert!(text(&import).contains("2000 events"), "{}", text(&import));
    let pg = Journal::open_at(&Location::Url(Secret::new(url.clone())), Access::ReadOnly).unwrap();
    assert_eq!(pg.ids(TENANT).unwrap(), ids);
    assert_eq!(pg.progress(TENANT, "cursor").unwrap().unwrap().position, cursor);
    assert_eq!(pg.consumers().unwrap(), offset);
    // Importing again would mix two journals: refused, nothing changed.
    let again = run_bin(&["state", "import", "--journal-url", &url, file.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already holds data"), "{}", text(&again));
    assert_eq!(pg.count_events(None).unwrap(), 2_000);

    // And back: PostgreSQL to a file, the file into a new data directory.
    let back = dir.path().join("back.db");
    let export = run_bin(&["state", "export", "--journal-url", &url, back.to_str().unwrap()]);
    assert!(export.status.success(), "{}", text(&export));
    let data2 = dir.path().join("data2");
    let import = run_bin(&["state", "import", "--data-dir", data2.to_str().unwrap(), back.to_str().unwrap()]);
    assert!(import.status.success(), "{}", text(&import));
    let after = Journal::open_read_only(&data2).unwrap();
    assert_eq!(after.ids(TENANT).unwrap(), ids);
    assert_eq!(after.progress(TENANT, "cursor").unwrap().unwrap().position, cursor);
    assert_eq!(after.consumers().unwrap(), offset);
}

/// The database goes away under a running daemon and comes back: the daemon neither exits
/// nor loses anything; it says the database cannot be reached, and goes on once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_pauses_while_its_database_is_down_and_resumes_without_losing_an_event() {
    let server = pg::OwnServer::start();
    let port = common::rsyslog::free_port();
    let mock = start_mock(MockConfig { history: 500, live_rate: 10.0, seed: 81, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/audit.ndjson");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir = "{}"
[journal]
url = "{}"
lease_ttl = "3s"
[collect]
interval = "1s"
settle_delay = "1s"
requests_per_minute = 0
[[tenants]]
name = "{TENANT}"
domain = "{}"
api_key_env = "TEST_TINES_KEY"
since = "40d"
{}[web]
bind = "127.0.0.1:{port}"
token_env = "WEB_TOKEN"
"#,
            dir.path().join("data").display(),
            server.url,
            mock.base_url(),
            file_sink(&out)
        ),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let token = "readyz-token-0123456789abcdef";
    let mut child = Instance {
        child: spawn_run(&cfg, &log, &[("TINES_AUDIT_LOG", "info"), ("WEB_TOKEN", token)]),
        log: log.clone(),
        data: dir.path().join("data"),
        starts: 1,
    };
    // /readyz with the token: (status, body).
    let readyz = || async {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .bearer_auth(token)
            .send()
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    };
    let mut journal = None;
    wait_until("the daemon to collect the history", Duration::from_secs(60), || {
        journal = journal
            .take()
            .or_else(|| Journal::open_at(&Location::Url(Secret::new(server.url.clone())), Access::ReadOnly).ok());
        journal.as_ref().is_some_and(|j| j.count_events(None).unwrap_or(0) >= 500)
    })
    .await;
    drop(journal);
    // One instance holds all three jobs (t1, the sink, the indexer), as its metrics say.
    let metrics = || async {
        let r = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/metrics")).bearer_auth(token).send().await;
        r.ok()?.text().await.ok()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = metrics().await.unwrap_or_default();
        if m.lines().any(|l| l == "tines_audit_leases_held 3")
            && m.lines().any(|l| l.starts_with("tines_audit_lease_token{job=\"tenant:t1\"} ") && !l.ends_with(" 0"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "lease gauges in /metrics:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    server.ctl("stop -m fast");
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("the daemon to say the database cannot be reached", Duration::from_secs(60), || {
        logged().contains("cannot connect to") || logged().contains("lost the connection")
    })
    .await;
    assert!(child.child.try_wait().unwrap().is_none(), "the daemon exited:\n{}", logged());
    // Not ready, and it says why.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match readyz().await {
            Some((503, body)) if body.contains("journal") => break,
            other => assert!(Instant::now() < deadline, "/readyz while the database is down: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let password = url::Url::parse(&server.url).unwrap().password().unwrap().to_string();
    assert!(!logged().contains(&password), "the database password reached the log:\n{}", logged());

    server.ctl("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    while readyz().await.is_none_or(|(code, _)| code != 200) {
        assert!(Instant::now() < deadline, "/readyz after the database came back: {:?}", readyz().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mock.set_live(false);
    wait_settled(&mock).await;
    let want = mock_ids(&mock);
    let j = Journal::open_at(&Location::Url(Secret::new(server.url.clone())), Access::ReadOnly).unwrap();
    wait_until("every event, those made while the database was down included", Duration::from_secs(90), || {
        j.ids(TENANT).is_ok_and(|ids| ids == want)
    })
    .await;
    wait_until("the file sink to deliver them", Duration::from_secs(60), || file_sink_counts(&out).len() == want.len())
        .await;
    signal(&child.child, libc::SIGTERM);
    child.child.wait().unwrap();
    assert_file_exactly_once(&out, &mock);
}

/// `sslmode`: with the server's CA the journal connects encrypted; `require` without that
/// CA is refused (the certificate is always verified); `disable` connects in the clear.
#[test]
fn tls_to_the_database_verifies_the_server_certificate() {
    let server = pg::OwnServer::start_tls();
    let ca = server.ca.clone().expect("the TLS server has a CA");
    let open =
        |query: &str| Journal::open_at(&Location::Url(Secret::new(format!("{}?{query}", server.url))), Access::Write);
    // Whether the journal's (idle, pooled) connections to the server are encrypted.
    let encrypted = || {
        pg::psql_at(
            &server.url,
            "SELECT string_agg(DISTINCT s.ssl::text, ',') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'tines-audit'",
        )
    };
    let verified = open(&format!("sslmode=verify-full&sslrootcert={ca}")).unwrap();
    verified.start_progress("t", "cursor", 0, None, "").unwrap();
    assert_eq!(encrypted(), "true");
    drop(verified);

    let unknown_ca = open("sslmode=require").err().expect("an unknown CA is refused").to_string();
    assert!(unknown_ca.contains("certificate") || unknown_ca.contains("UnknownIssuer"), "{unknown_ca}");
    assert!(!unknown_ca.contains(url::Url::parse(&server.url).unwrap().password().unwrap()), "{unknown_ca}");

    let clear = open("sslmode=disable").unwrap();
    assert_eq!(clear.progress("t", "cursor").unwrap().map(|p| p.position), Some(0));
    // (The closed journal's connections may take a moment to leave the server's view.)
    let deadline = Instant::now() + Duration::from_secs(20);
    while encrypted() != "false" {
        assert!(Instant::now() < deadline, "the clear journal's connections: {}", encrypted());
        std::thread::yield_now();
    }
}

/// `check` says whether the journal's database answers, before anything runs on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_whether_the_journal_database_answers() {
    let mock = start_mock(MockConfig { history: 10, ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let check = |url: String| {
        let cfg = write_config(dir.path(), &mock.base_url(), "", "");
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, format!("{text}\n[journal]\nurl = \"{url}\"\n")).unwrap();
        let args = vec!["check".to_string(), "--config".into(), cfg.to_str().unwrap().into()];
        async move { run_bin_async(args).await }
    };
    let empty = check(pg::fresh_schema_url()).await;
    assert!(empty.status.success(), "{}", text(&empty));
    assert!(text(&empty).contains("ok (reachable; empty: the first run creates the journal)"), "{}", text(&empty));
    let down = check("postgresql://u:n0t-this-one@127.0.0.1:1/db".into()).await;
    assert_eq!(down.status.code(), Some(12), "{}", text(&down));
    assert!(text(&down).contains("FAILED") && text(&down).contains("127.0.0.1:1"), "{}", text(&down));
    assert!(!text(&down).contains("n0t-this-one"), "{}", text(&down));
}
