//! Search benchmark (not a test): a journal of 5,000,000 emulator records over
//! a year, written through the collector's own commit path, indexed by the
//! search indexer, then typical queries timed (p50/p95 of first pages).
//!
//!   cargo bench --bench search                 # 5M events (about 10 minutes on 2 cores)
//!   SEARCH_BENCH_EVENTS=500000 cargo bench --bench search
//!
//! It also measures what search costs collection: commit throughput of the
//! same records with and without the search indexes, and the indexer's rate.
//!
//! PostgreSQL: with `SEARCH_BENCH_PG_URL=postgresql://…` (a database the URL's user may
//! create schemas in) the same runs go into the PostgreSQL journal instead, each journal
//! in a new schema of that database (`CREATE SCHEMA` through `psql`, which must be on
//! PATH). The comparison without the search indexes is SQLite-only (it drops them with
//! rusqlite) and is skipped. The schemas are dropped at the end unless
//! `SEARCH_BENCH_PG_KEEP=1`, which keeps the big one for `EXPLAIN ANALYZE` (its name is
//! printed). For example, with a throwaway server:
//!
//!   eval "$(scripts/start-postgres.sh)"
//!   SEARCH_BENCH_PG_URL=$TINES_AUDIT_TEST_PG_URL cargo bench --bench search
//!   eval "$TINES_AUDIT_TEST_PG_STOP"
//!
//! `SEARCH_BENCH_PG_REUSE=<schema>` (with the URL) times the queries alone on a journal a
//! run kept, skipping the 20 minutes of loading and indexing.

use std::time::{Duration, Instant};

use tines_audit::journal::{Access, Journal, Location, Record, WindowCommit};
use tines_audit::query::{self, Cursor, FilterArgs, NoCountries};
use tines_audit::secret::Secret;
use tines_audit::timeutil::parse_rfc3339;

const DAY: i64 = 86_400;

#[derive(serde::Deserialize)]
struct Indexed<'a> {
    id: i64,
    #[serde(borrow)]
    created_at: &'a str,
    #[serde(borrow)]
    operation_name: &'a str,
    user_id: Option<i64>,
    #[serde(borrow)]
    user_email: Option<&'a str>,
    #[serde(borrow)]
    request_ip: Option<&'a str>,
}

/// Writes `n` records into `journal` through `commit_window`, in windows of 5,000 (as the collector does);
/// returns events per second.
fn fill(journal: &Journal, n: usize, anchor: i64, seed: u64) -> f64 {
    journal.start_progress("bench", "cursor", anchor - 366 * DAY, None, "").unwrap();
    let mut raws: Vec<String> = Vec::with_capacity(5_000);
    let mut position = anchor - 366 * DAY;
    let mut busy = Duration::ZERO;
    let flush = |raws: &mut Vec<String>, position: &mut i64, busy: &mut Duration| {
        if raws.is_empty() {
            return;
        }
        let parsed: Vec<Indexed<'_>> = raws.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
        let to = parse_rfc3339(parsed.last().unwrap().created_at).unwrap() + 1;
        let records = parsed.iter().zip(raws.iter()).map(|(p, raw)| Record {
            id: p.id,
            created_at: parse_rfc3339(p.created_at).unwrap(),
            operation_name: p.operation_name,
            user_id: p.user_id,
            user_email: p.user_email,
            request_ip: p.request_ip,
            raw,
        });
        let commit = WindowCommit { tenant: "bench", job: "cursor", from: *position, to, fetched: raws.len() as u64 };
        let t = Instant::now();
        journal.commit_window(&commit, records).unwrap();
        *busy += t.elapsed();
        *position = to;
        raws.clear();
    };
    tines_audit::mock::render_history(seed, 4242, n, Duration::from_secs(365 * DAY as u64), anchor, |rec| {
        raws.push(String::from_utf8(rec.to_vec()).unwrap());
        if raws.len() == 5_000 {
            flush(&mut raws, &mut position, &mut busy);
        }
    });
    flush(&mut raws, &mut position, &mut busy);
    n as f64 / busy.as_secs_f64()
}

/// Where the benchmark's journals go: SQLite files in a temporary directory, or new
/// schemas of a PostgreSQL database.
enum Target {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schemas: Vec<String> },
}

impl Target {
    /// A new, empty journal called `name`.
    fn journal(&mut self, name: &str) -> Journal {
        match self {
            Target::Sqlite(dir) => Journal::open(&dir.path().join(name)).unwrap(),
            Target::Postgres { url, schemas } => {
                let schema = format!("search_bench_{}_{name}", std::process::id());
                psql(url, &format!("CREATE SCHEMA {schema}"));
                schemas.push(schema.clone());
                let mut u = url::Url::parse(url).expect("SEARCH_BENCH_PG_URL is a URL");
                u.query_pairs_mut().append_pair("options", &format!("-c search_path={schema}"));
                Journal::open_at(&Location::Url(Secret::new(u.to_string())), Access::Write).unwrap()
            }
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let Target::Postgres { url, schemas } = self else { return };
        if std::env::var("SEARCH_BENCH_PG_KEEP").is_ok_and(|v| v == "1") {
            println!("kept the schemas {} (SEARCH_BENCH_PG_KEEP=1)", schemas.join(", "));
            return;
        }
        for s in schemas.iter() {
            psql(url, &format!("DROP SCHEMA {s} CASCADE"));
        }
    }
}

/// Runs one statement with `psql` on the benchmark's database.
fn psql(url: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .expect("psql on PATH (SEARCH_BENCH_PG_URL needs it)");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn time_queries(journal: &Journal, name: &str, filters: &[FilterArgs], now: i64, runs: usize) -> (String, usize) {
    let mut ms = Vec::with_capacity(runs);
    let mut hits = 0usize;
    for i in 0..runs {
        let f = filters[i % filters.len()].build(now).unwrap();
        let t = Instant::now();
        let page = query::search(journal, &f, None, 50, &NoCountries).unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        hits += page.events.len();
    }
    ms.sort_by(f64::total_cmp);
    let line = format!(
        "| {name:<44} | {:>8.2} | {:>8.2} | {:>8.2} | {:>6.1} |",
        pct(&ms, 0.5),
        pct(&ms, 0.95),
        ms.last().unwrap(),
        hits as f64 / runs as f64
    );
    (line, hits)
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test --all-targets` this is only a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("SEARCH_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full {
        5_000_000
    } else {
        20_000
    });
    let pg_url = std::env::var("SEARCH_BENCH_PG_URL").ok().filter(|u| !u.is_empty());
    let backend = if pg_url.is_some() { "PostgreSQL" } else { "SQLite" };
    let mut target = match pg_url {
        Some(url) => Target::Postgres { url, schemas: Vec::new() },
        None => Target::Sqlite(tempfile::tempdir().unwrap()),
    };
    let anchor = tines_audit::timeutil::now_secs();
    if let (Target::Postgres { url, .. }, Ok(schema)) = (&target, std::env::var("SEARCH_BENCH_PG_REUSE")) {
        let mut u = url::Url::parse(url).expect("SEARCH_BENCH_PG_URL is a URL");
        u.query_pairs_mut().append_pair("options", &format!("-c search_path={schema}"));
        let j = Journal::open_at(&Location::Url(Secret::new(u.to_string())), Access::Write).unwrap();
        println!("search benchmark: queries alone on the kept journal {schema} ({} events)", j.max_seq().unwrap());
        time_mixes(&j, anchor);
        return;
    }
    println!(
        "search benchmark: {n} emulator events over 365 days, {backend} journal, {} cores",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );

    // What the search indexes cost a commit: 500k records without them, then the same with them.
    let sample = n.min(500_000);
    let without = match &target {
        Target::Sqlite(dir) => {
            let j = Journal::open(&dir.path().join("plain")).unwrap();
            drop(j);
            let c = rusqlite::Connection::open(dir.path().join("plain/journal.db")).unwrap();
            c.execute_batch(
                "DROP INDEX events_created; DROP INDEX events_tenant_created; DROP INDEX events_user_created;
                 DROP INDEX events_email_created; DROP INDEX events_operation_created; DROP INDEX events_ip_created;",
            )
            .unwrap();
            drop(c);
            let j = Journal::open(&dir.path().join("plain")).unwrap();
            Some(fill(&j, sample, anchor, 11))
        }
        // Only SQLite: the indexes are dropped with rusqlite.
        Target::Postgres { .. } => None,
    };
    let with = {
        let j = target.journal("indexed");
        fill(&j, sample, anchor, 11)
    };
    println!();
    println!("| commit path ({sample} events, windows of 5,000) | events/s |");
    println!("|---|---:|");
    if let Some(without) = without {
        println!("| journal without the search indexes | {without:>10.0} |");
    }
    println!("| journal with its search indexes | {with:>10.0} |");

    let j = target.journal("big");
    let t = Instant::now();
    let rate = fill(&j, n, anchor, 7);
    println!("| all {n} events, with the indexes (commit time only) | {rate:>10.0} |");
    println!("(generation and load took {:.0} s)", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let indexed = query::index::catch_up(&j).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "search indexer (full text, users, addresses): {indexed} events in {secs:.0} s = {:.0} events/s",
        indexed as f64 / secs
    );
    println!("journal on disk: {:.0} MiB", j.size_bytes() as f64 / 1_048_576.0);
    time_mixes(&j, anchor);
}

/// Times each query mix on `j`, whose events end at `anchor`.
fn time_mixes(j: &Journal, anchor: i64) {
    // Query mixes: each run picks the next filter of its list, so caches do not flatter one value.
    let users: Vec<String> = {
        let f = FilterArgs::default().build(anchor).unwrap();
        let p = query::search(j, &f, None, 1000, &NoCountries).unwrap();
        let mut u: Vec<String> = p.events.iter().filter_map(|e| e.user_email.clone()).collect();
        u.sort();
        u.dedup();
        u
    };
    let now = anchor;
    let by = |f: &dyn Fn(&str) -> FilterArgs, vals: &[&str]| vals.iter().map(|v| f(v)).collect::<Vec<_>>();
    let user_refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let ops = [
        "CredentialDestruction",
        "UsersInvitation",
        "AuthenticationTokenCreation",
        "Login",
        "IPAccessControlRuleCreation",
        "UserEdit",
        "StoryChangeRequestApproval",
    ];
    let mixes: Vec<(&str, Vec<FilterArgs>)> = vec![
        (
            "one user, last 30 days",
            by(&|u| FilterArgs { user: vec![u.into()], from: Some("30d".into()), ..Default::default() }, &user_refs),
        ),
        (
            "one operation, last 365 days",
            by(&|o| FilterArgs { operation: vec![o.into()], from: Some("365d".into()), ..Default::default() }, &ops),
        ),
        (
            "one user + one operation, 365 days",
            user_refs
                .iter()
                .zip(ops.iter().cycle())
                .map(|(u, o)| FilterArgs {
                    user: vec![u.to_string()],
                    operation: vec![o.to_string()],
                    from: Some("365d".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        (
            "category credential, last 90 days",
            vec![FilterArgs { category: vec!["credential".into()], from: Some("90d".into()), ..Default::default() }],
        ),
        ("everything, newest first", vec![FilterArgs::default()]),
        (
            "one source IP network /16, 30 days",
            by(
                &|c| FilterArgs { ip: vec![c.into()], from: Some("30d".into()), ..Default::default() },
                &["86.40.0.0/16", "24.1.0.0/16", "84.128.0.0/16"],
            ),
        ),
        (
            "user by display name, 30 days",
            by(
                &|u| FilterArgs { user: vec![u.into()], from: Some("30d".into()), ..Default::default() },
                &["Seán", "Priya", "Noah", "Grace"],
            ),
        ),
        (
            "free text (rare words)",
            by(
                &|q| FilterArgs { text: Some(q.into()), ..Default::default() },
                &["jenkins", "\"Sören's laptop\"", "dedupe", "runbook"],
            ),
        ),
        (
            "free text (common words), 30 days",
            by(
                &|q| FilterArgs { text: Some(q.into()), from: Some("30d".into()), ..Default::default() },
                &["phishing", "okta", "\"Daily IOC sweep\"", "slack"],
            ),
        ),
    ];
    println!();
    println!("| query (first page of 50) | p50 ms | p95 ms | max ms | rows |");
    println!("|---|---:|---:|---:|---:|");
    for (name, filters) in &mixes {
        let (line, _) = time_queries(j, name, filters, now, 60);
        println!("{line}");
    }
    // A deep page: 20 pages into one operation's year, by cursor.
    let f = FilterArgs { operation: vec!["ActionRun".into()], from: Some("365d".into()), ..Default::default() }
        .build(now)
        .unwrap();
    let mut cursor: Option<Cursor> = None;
    let mut ms = Vec::new();
    for _ in 0..40 {
        let t = Instant::now();
        let p = query::search(j, &f, cursor, 50, &NoCountries).unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        cursor = p.next_cursor.as_deref().map(|c| Cursor::decode(c).unwrap());
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "| {:<44} | {:>8.2} | {:>8.2} | {:>8.2} | {:>6} |",
        "next pages by cursor (ActionRun, 40 pages)",
        pct(&ms, 0.5),
        pct(&ms, 0.95),
        ms.last().unwrap(),
        50
    );
}
