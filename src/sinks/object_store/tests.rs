//! The sink against a local directory and, in one suite, against three real
//! servers (moto for S3, Azurite for Azure Blob, fake-gcs-server for GCS; see
//! `testkit`), driven through the real runner: layout, content, create-only
//! writes refusing another writer, crashes between a write and its commit
//! (leftovers adopted on restart), lost responses, an outage, and `check`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use ::object_store::path::Path;
use ::object_store::{ObjectMeta, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use futures_util::TryStreamExt;

use super::config::{Destination, ObjectStoreConfig, Preset};
use super::layout::{hour_of, object_name, parse_name, partition_dir};
use super::sink::{gzip, put_create};
use super::testkit::{GcsTranslator, GcsUpload, Proxy, Server, TestStore};
use crate::format::{Encoder, Shape};
use crate::journal::{Journal, Record, WindowCommit};
use crate::sinks::runner::{Consumer, DrainError, Flush};
use crate::sinks::{Sink, SinkError};
use crate::timeutil::format_rfc3339;

mod lake;

/// 2024-03-10T23:00:00Z: events run over midnight, so partitions change day and hour.
const BASE: i64 = 1_710_111_600;
const TENANTS: [&str; 2] = ["acme", "globex"];

/// A journal that events are added to as a collector would: windows of 7 events, tenants alternating.
struct Fixture {
    _dir: tempfile::TempDir,
    j: Journal,
    next_id: HashMap<&'static str, i64>,
    added: usize,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("journal")).unwrap();
        for t in TENANTS {
            j.start_progress(t, "cursor", 0, None, "").unwrap();
        }
        Fixture { _dir: dir, j, next_id: HashMap::new(), added: 0 }
    }

    fn add(&mut self, n: usize) {
        let mut left = n;
        while left > 0 {
            let tenant = TENANTS[(self.added / 7) % 2];
            let take = left.min(7 - self.added % 7);
            let first = *self.next_id.get(tenant).unwrap_or(&1);
            let raws: Vec<(i64, i64, String)> = (first..first + take as i64)
                .map(|id| {
                    // About 37 events an hour per tenant.
                    let at = BASE + id * 97;
                    let raw = format!(
                        r#"{{"id":{id},"tenant":"{tenant}","created_at":"{}","operation_name":"Login","pad":"{}"}}"#,
                        format_rfc3339(at),
                        "x".repeat(40)
                    );
                    (id, at, raw)
                })
                .collect();
            let pos = self.j.progress(tenant, "cursor").unwrap().unwrap().position;
            let commit = WindowCommit { tenant, job: "cursor", from: pos, to: pos + 1, fetched: take as u64 };
            let records = raws.iter().map(|(id, at, raw)| Record {
                id: *id,
                created_at: *at,
                operation_name: "Login",
                user_id: None,
                user_email: None,
                request_ip: None,
                raw,
            });
            self.j.commit_window(&commit, records).unwrap();
            self.next_id.insert(tenant, first + take as i64);
            self.added += take;
            left -= take;
        }
    }

    fn position(&self, consumer: &str) -> i64 {
        self.j.consumer(consumer, 0).unwrap().position
    }
}

fn config(toml_text: &str) -> ObjectStoreConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"))
}

fn local_config(dir: &std::path::Path, extra: &str) -> ObjectStoreConfig {
    config(&format!("url = \"file://{}\"\n{extra}", dir.display()))
}

fn sink(cfg: &ObjectStoreConfig) -> Box<dyn Sink> {
    Box::new(cfg.build(Encoder::new(Shape::Raw, None)).unwrap())
}

async fn drain(cfg: &ObjectStoreConfig, f: &Fixture) -> Result<u64, DrainError> {
    Consumer::new(sink(cfg)).drain(&f.j, Flush::All).await
}

/// Every object's key, checked: the layout, gzip NDJSON that parses, each event in the
/// partition of its tenant and `created_at` hour, the name's seq range exactly that of the
/// events inside, and every journal event in exactly one object. Returns the keys.
async fn check_exactly_once(dest: &Destination, f: &Fixture) -> Vec<String> {
    let all = f.j.read_after(0, 1_000_000, usize::MAX).unwrap();
    let seq_of: HashMap<(String, i64), i64> = all.iter().map(|e| ((e.tenant.to_string(), e.id), e.seq)).collect();
    let metas: Vec<ObjectMeta> = dest.store.list(Some(&dest.prefix)).try_collect().await.unwrap();
    let mut seen: HashMap<(String, i64), String> = HashMap::new();
    let mut keys = Vec::new();
    for m in metas {
        let key = m.location.to_string();
        let rel = key.strip_prefix(&format!("{}/", dest.prefix)).unwrap_or_else(|| panic!("{key} outside prefix"));
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 4, "{rel}: expected tenant=/dt=/hour=/name");
        let tenant = parts[0].strip_prefix("tenant=").unwrap();
        let dt = parts[1].strip_prefix("dt=").unwrap();
        let hour = parts[2].strip_prefix("hour=").unwrap();
        let (first, last) = parse_name(parts[3]).unwrap_or_else(|| panic!("{rel}: not a seq-range name"));
        let gz = dest.store.get(&m.location).await.unwrap().bytes().await.unwrap();
        let mut body = String::new();
        flate2::read::MultiGzDecoder::new(&gz[..]).read_to_string(&mut body).unwrap();
        assert!(body.ends_with('\n'), "{rel}: last line unterminated");
        let mut seqs = Vec::new();
        for line in body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (t, id) = (v["tenant"].as_str().unwrap().to_string(), v["id"].as_i64().unwrap());
            assert_eq!(t, tenant, "{rel}: event of another tenant");
            let at = v["created_at"].as_str().unwrap();
            assert!(at.starts_with(&format!("{dt}T{hour}:")), "{rel}: event created {at}");
            seqs.push(seq_of[&(t.clone(), id)]);
            if let Some(other) = seen.insert((t.clone(), id), key.clone()) {
                panic!("event {t}/{id} is in {other} and in {key}");
            }
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{rel}: events out of journal order");
        assert_eq!((seqs[0], seqs[seqs.len() - 1]), (first, last), "{rel}: name does not match its events");
        keys.push(key);
    }
    assert_eq!(seen.len(), seq_of.len(), "{} journal events are in no object", seq_of.len() - seen.len());
    keys.sort();
    keys
}

async fn list_keys(dest: &Destination) -> Vec<String> {
    let metas: Vec<ObjectMeta> = dest.store.list(Some(&dest.prefix)).try_collect().await.unwrap();
    let mut keys: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
    keys.sort();
    keys
}

/// What the runner does with a batch up to the delivery: commits the state `prepare`
/// returns (at the unchanged offset), then delivers. The delivery's state is not committed.
pub(super) async fn prepare_and_deliver(
    s: &mut Box<dyn Sink>,
    j: &Journal,
    batch: crate::journal::EventBatch,
) -> Result<Option<String>, SinkError> {
    if let Some(state) = s.prepare(&batch) {
        let at = j.consumer(s.name(), 0).unwrap().position;
        j.commit_offset(s.name(), at, at, Some(&state)).unwrap();
    }
    s.deliver(Arc::new(batch)).await
}

/// A crash after `deliver` wrote its objects but before the runner committed the offset:
/// the sink is called directly and dropped, and nothing but what `prepare` said is committed.
async fn deliver_and_crash(cfg: &ObjectStoreConfig, f: &Fixture, after: i64, max_events: usize) -> Option<String> {
    let mut s = sink(cfg);
    let state = f.j.consumer(s.name(), 0).unwrap().state;
    s.recover(state).await.unwrap();
    let batch = f.j.read_after(after, max_events, usize::MAX).unwrap();
    prepare_and_deliver(&mut s, &f.j, batch).await.unwrap()
}

/// The three ways a restart can meet objects written after the last commit.
/// `make(run, extra)` gives a config for a destination of its own per run.
async fn crash_scenarios(make: impl Fn(usize, &str) -> ObjectStoreConfig) {
    // 1. The same batch again (same roll size, nothing new): the orphans are exactly the batch.
    let mut f = Fixture::new();
    f.add(250);
    let cfg = make(0, "roll_events = 100");
    let dest = cfg.destination().unwrap();
    deliver_and_crash(&cfg, &f, 0, 100).await;
    let orphans = list_keys(&dest).await;
    assert!(orphans.len() >= 2, "{orphans:?}");
    assert_eq!(f.position(&cfg.name()), 0, "nothing committed");
    assert_eq!(drain(&cfg, &f).await.unwrap(), 250);
    let keys = check_exactly_once(&dest, &f).await;
    assert!(orphans.iter().all(|o| keys.contains(o)), "orphans were adopted, not replaced");

    // 2. More events arrived before the restart: the batch read again is larger than the one written.
    let mut f = Fixture::new();
    f.add(60);
    let cfg = make(1, "roll_events = 100");
    let dest = cfg.destination().unwrap();
    deliver_and_crash(&cfg, &f, 0, 100).await;
    let orphans = list_keys(&dest).await;
    f.add(100);
    assert_eq!(drain(&cfg, &f).await.unwrap(), 160);
    let keys = check_exactly_once(&dest, &f).await;
    assert!(orphans.iter().all(|o| keys.contains(o)), "orphans were adopted, not replaced");

    // 3. The roll size shrank: batches end inside orphans; a second crash after committing one.
    let mut f = Fixture::new();
    f.add(100);
    let big = make(2, "roll_events = 100");
    let small = make(2, "roll_events = 30");
    let dest = big.destination().unwrap();
    deliver_and_crash(&big, &f, 0, 100).await;
    let orphans = list_keys(&dest).await;
    let mut s = sink(&small);
    s.recover(f.j.consumer(&small.name(), 0).unwrap().state).await.unwrap();
    let batch = f.j.read_after(0, 30, usize::MAX).unwrap();
    let last = batch.last_seq().unwrap();
    let state = prepare_and_deliver(&mut s, &f.j, batch).await.unwrap().unwrap();
    assert!(state.contains("\"adopting\""), "the batch ended inside an orphan: {state}");
    f.j.commit_offset(&small.name(), 0, last, Some(&state)).unwrap();
    drop(s);
    assert_eq!(list_keys(&dest).await, orphans, "adopting writes nothing");
    assert_eq!(drain(&small, &f).await.unwrap(), 100 - last as u64);
    let keys = check_exactly_once(&dest, &f).await;
    assert_eq!(keys, orphans, "all 100 events were in the orphans");

    // 4. As 3, but a feed deleted the partly adopted objects after ingesting them: their
    //    remaining events count as delivered. Put back, the objects complete the set exactly.
    let mut f = Fixture::new();
    f.add(100);
    let (big, small) = (make(3, "roll_events = 100"), make(3, "roll_events = 30"));
    let dest = big.destination().unwrap();
    deliver_and_crash(&big, &f, 0, 100).await;
    let mut s = sink(&small);
    s.recover(f.j.consumer(&small.name(), 0).unwrap().state).await.unwrap();
    let batch = f.j.read_after(0, 30, usize::MAX).unwrap();
    let last = batch.last_seq().unwrap();
    let state = prepare_and_deliver(&mut s, &f.j, batch).await.unwrap().unwrap();
    f.j.commit_offset(&small.name(), 0, last, Some(&state)).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let mut consumed = Vec::new();
    for a in state["adopting"].as_array().unwrap() {
        let path = Path::parse(a["key"].as_str().unwrap()).unwrap();
        consumed.push((path.clone(), dest.store.get(&path).await.unwrap().bytes().await.unwrap()));
        dest.store.delete(&path).await.unwrap();
    }
    assert!(!consumed.is_empty());
    assert_eq!(drain(&small, &f).await.unwrap(), 100 - last as u64);
    for (path, bytes) in consumed {
        dest.store.put(&path, PutPayload::from(bytes)).await.unwrap();
    }
    check_exactly_once(&dest, &f).await;

    // 5. A backfill over many hours, written eight objects at a time, killed part way: any
    //    subset of its objects may have landed. Every other one is removed, standing for the
    //    writes still in flight; the restart (at a smaller roll, so that batches end inside
    //    the objects that landed) adopts those and writes the rest, each event once.
    let mut f = Fixture::new();
    f.add(1200);
    let big = make(4, "roll_events = 1200\nwrite_concurrency = 8");
    let small = make(4, "roll_events = 350\nwrite_concurrency = 8");
    let dest = big.destination().unwrap();
    deliver_and_crash(&big, &f, 0, 1200).await;
    let landed = list_keys(&dest).await;
    assert!(landed.len() >= 30, "one object per tenant and hour: {landed:?}");
    for k in landed.iter().skip(1).step_by(2) {
        dest.store.delete(&Path::parse(k).unwrap()).await.unwrap();
    }
    f.add(50);
    assert_eq!(drain(&small, &f).await.unwrap(), 1250);
    let keys = check_exactly_once(&dest, &f).await;
    assert!(landed.iter().step_by(2).all(|k| keys.contains(k)), "the objects that landed were adopted");
}

#[tokio::test]
async fn local_directory_layout_and_gzip_ndjson_round_trip() {
    let mut f = Fixture::new();
    f.add(500);
    let out = tempfile::tempdir().unwrap();
    let cfg = local_config(&out.path().join("objects"), "roll_events = 120");
    let mut s = sink(&cfg);
    let health = s.health_check().await.unwrap();
    assert!(health.contains("a create-only write, its refusal to overwrite, a read and a listing work"), "{health}");
    assert_eq!(drain(&cfg, &f).await.unwrap(), 500);
    let keys = check_exactly_once(&cfg.destination().unwrap(), &f).await;
    assert!(keys.iter().any(|k| k.contains("/tenant=acme/dt=2024-03-10/hour=23/")), "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("/tenant=globex/dt=2024-03-11/hour=00/")), "{keys:?}");
    assert_eq!(f.position(&cfg.name()), 500);
    // Nothing but log objects in the directory (no state, no staging files).
    let mut stack = vec![out.path().join("objects")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                assert!(p.to_string_lossy().ends_with(".ndjson.gz"), "{}", p.display());
            }
        }
    }
}

#[tokio::test]
async fn local_directory_crash_between_write_and_commit_is_exactly_once() {
    let out = tempfile::tempdir().unwrap();
    crash_scenarios(|run, extra| local_config(&out.path().join(format!("run{run}")), extra)).await;
}

/// Issue 14: each hour partition was listed before its first write after a (re)start, in
/// sequence, so a 30-day backfill made 721 LISTs beside its 721 PUTs. Counted at the S3
/// server: a sink without state sweeps its prefix once, a restart after a clean stop lists
/// nothing, and a restart after a kill lists only the partitions the killed delivery wrote.
#[tokio::test]
async fn s3_backfill_over_many_hours_lists_no_partition_on_the_way() {
    let store = TestStore::start(Server::S3).await;
    let bucket = store.bucket("lists").await;
    let proxy = Proxy::start(&store.endpoint).await;
    let cfg = store.config_via(&proxy.endpoint, &bucket, "roll_events = 100000");
    let direct = store.config(&bucket, "").destination().unwrap();
    let lists = |reqs: &[String]| reqs.iter().filter(|r| r.starts_with("GET ") && r.contains("list-type=2")).count();
    let puts = |reqs: &[String]| reqs.iter().filter(|r| r.starts_with("PUT ")).count();
    let mut f = Fixture::new();
    // Two tenants, about 27 hours each: over 50 partitions in one batch.
    f.add(2000);
    assert_eq!(drain(&cfg, &f).await.unwrap(), 2000);
    let objects = list_keys(&direct).await.len();
    assert!(objects > 50, "{objects} objects");
    let reqs = proxy.take_requests();
    assert_eq!(lists(&reqs), 1, "one sweep of the prefix by a sink with no state: {reqs:#?}");
    assert_eq!(puts(&reqs), objects, "{reqs:#?}");

    f.add(2000);
    assert_eq!(drain(&cfg, &f).await.unwrap(), 2000);
    let reqs = proxy.take_requests();
    assert_eq!(lists(&reqs), 0, "a restart after a clean stop lists nothing: {reqs:#?}");
    assert_eq!(puts(&reqs), list_keys(&direct).await.len() - objects);

    // Killed after writing a batch over many hours: its partitions, and only they, are listed.
    f.add(1000);
    let before = list_keys(&direct).await.len();
    deliver_and_crash(&cfg, &f, f.position(&cfg.name()), 100_000).await;
    let interrupted = list_keys(&direct).await.len() - before;
    f.add(500);
    let reqs = proxy.take_requests();
    assert_eq!(lists(&reqs), 0, "{reqs:#?}");
    assert_eq!(drain(&cfg, &f).await.unwrap(), 1500);
    let reqs = proxy.take_requests();
    assert_eq!(lists(&reqs), interrupted, "one listing per partition the killed delivery wrote: {reqs:#?}");
    check_exactly_once(&direct, &f).await;
}

/// The runner commits what `prepare` returns before each delivery; a delivery it did not
/// prepare could leave objects no restart would look for, so it is refused.
#[tokio::test]
async fn a_delivery_that_was_not_prepared_is_refused() {
    let mut f = Fixture::new();
    f.add(10);
    let out = tempfile::tempdir().unwrap();
    let cfg = local_config(&out.path().join("lake"), "");
    let mut s = sink(&cfg);
    s.recover(None).await.unwrap();
    let err = s.deliver(Arc::new(f.j.read_after(0, 100, usize::MAX).unwrap())).await.unwrap_err();
    assert!(matches!(&err, SinkError::Permanent(m) if m.contains("prepare")), "{err}");
    assert!(list_keys(&cfg.destination().unwrap()).await.is_empty(), "nothing written");
}

/// A state committed by an older tines-audit does not say how far its objects go: the
/// restart sweeps the prefix once and adopts what a kill left, as that version would have.
#[tokio::test]
async fn a_state_from_before_pending_was_recorded_is_settled_by_a_sweep() {
    let mut f = Fixture::new();
    f.add(100);
    let out = tempfile::tempdir().unwrap();
    let cfg = local_config(&out.path().join("lake"), "roll_events = 100");
    assert_eq!(drain(&cfg, &f).await.unwrap(), 100);
    f.add(200);
    deliver_and_crash(&cfg, &f, 100, 100).await;
    let orphans = list_keys(&cfg.destination().unwrap()).await;
    let name = cfg.name();
    let mut state: serde_json::Value = serde_json::from_str(&f.j.consumer(&name, 0).unwrap().state.unwrap()).unwrap();
    assert_eq!(state["pending"], 200, "{state}");
    state.as_object_mut().unwrap().remove("pending");
    f.j.commit_offset(&name, 100, 100, Some(&state.to_string())).unwrap();
    let small = local_config(&out.path().join("lake"), "roll_events = 30");
    assert_eq!(drain(&small, &f).await.unwrap(), 200);
    let keys = check_exactly_once(&cfg.destination().unwrap(), &f).await;
    assert!(orphans.iter().all(|o| keys.contains(o)), "orphans were adopted, not replaced");
}

/// The exactly-once suite, once for each real server: `mod s3`, `mod azure`, `mod gcs`.
/// A server that is missing fails the test (see `testkit`); none is skipped.
macro_rules! server_suite {
    ($($module:ident => $server:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test]
            async fn put_and_list_with_the_partition_layout() {
                put_and_list_with_the_partition_layout_on($server).await
            }

            #[tokio::test]
            async fn create_only_write_refuses_another_writer() {
                create_only_write_refuses_another_writer_on($server).await
            }

            #[tokio::test]
            async fn crash_between_put_and_commit_adopts_the_leftovers_exactly_once() {
                let store = TestStore::start($server).await;
                let mut buckets = Vec::new();
                for _ in 0..5 {
                    buckets.push(store.bucket("crash").await);
                }
                crash_scenarios(|run, extra| store.config(&buckets[run], extra)).await;
            }

            #[tokio::test]
            async fn lost_responses_to_writes_are_retried_and_each_event_lands_once() {
                lost_responses_on($server).await
            }

            #[tokio::test]
            async fn outage_is_transient_leaves_the_offset_and_recovers_exactly_once() {
                outage_on($server).await
            }

            #[tokio::test]
            async fn digests_cover_every_object_across_restarts() {
                let store = TestStore::start($server).await;
                let bucket = store.bucket("digests").await;
                lake::digests_cover_every_object_across_restarts(store.config(&bucket, "")).await
            }

            #[tokio::test]
            async fn tampering_in_each_way_is_named() {
                let store = TestStore::start($server).await;
                let bucket = store.bucket("tamper").await;
                lake::tampering_in_each_way_is_named(store.config(&bucket, "")).await
            }

            #[tokio::test]
            async fn check_and_delivery_name_a_missing_bucket() {
                missing_bucket_on($server).await
            }
        }
    )*};
}

server_suite!(s3 => Server::S3, azure => Server::Azure, gcs => Server::Gcs);

async fn put_and_list_with_the_partition_layout_on(server: Server) {
    let store = TestStore::start(server).await;
    let bucket = store.bucket("layout").await;
    let mut f = Fixture::new();
    f.add(300);
    let cfg = store.config(&bucket, "roll_events = 100\npreset = \"google_secops\"");
    let mut s = sink(&cfg);
    let health = s.health_check().await.unwrap();
    let url = cfg.destination().unwrap().url;
    assert!(health.starts_with(&format!("{url}: a create-only write, its refusal to overwrite")), "{health}");
    assert!(health.contains("(0 tenant partitions)") && !health.contains("could not be removed"), "{health}");
    assert_eq!(drain(&cfg, &f).await.unwrap(), 300);
    let dest = cfg.destination().unwrap();
    let keys = check_exactly_once(&dest, &f).await;
    let first = format!("tines/audit/tenant=acme/dt=2024-03-10/hour=23/{:020}-", 1);
    assert!(keys[0].starts_with(&first), "{keys:?}");
    assert_eq!(f.position(&cfg.name()), 300);
    // Draining again writes nothing.
    assert_eq!(drain(&cfg, &f).await.unwrap(), 0);
    assert_eq!(list_keys(&dest).await, keys);
    let health = s.health_check().await.unwrap();
    assert!(health.contains("(2 tenant partitions)"), "{health}");
    assert_eq!(list_keys(&dest).await, keys, "check leaves nothing behind");
}

async fn create_only_write_refuses_another_writer_on(server: Server) {
    let store = TestStore::start(server).await;
    let cfg = store.config(&store.bucket("create").await, "");
    let dest = cfg.destination().unwrap();
    let path = dest.prefix.clone().join("tenant=acme").join("dt=2024-03-10").join("hour=23").join(object_name(1, 2));
    let first = b"{\"id\":1}\n{\"id\":2}\n".to_vec();
    put_create(&dest, &path, gzip(&first).unwrap()).await.unwrap();
    // The same content again (a retry whose first put did land): delivered.
    put_create(&dest, &path, gzip(&first).unwrap()).await.unwrap();
    let other = b"{\"id\":1}\n{\"id\":3}\n".to_vec();
    let err = put_create(&dest, &path, gzip(&other).unwrap()).await.unwrap_err();
    assert!(matches!(&err, SinkError::Permanent(m) if m.contains("already exists with other content")), "{err}");
    let stored = dest.store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(stored.to_vec(), gzip(&first).unwrap(), "the first object is untouched");

    // Through the runner: a foreign object where the first batch's first object goes.
    let mut f = Fixture::new();
    f.add(20);
    let cfg = store.config(&store.bucket("foreign").await, "roll_events = 100");
    let dest = cfg.destination().unwrap();
    let batch = f.j.read_after(0, 100, usize::MAX).unwrap();
    let e0 = batch.iter().next().unwrap();
    let mine: Vec<i64> = batch
        .iter()
        .filter(|e| e.tenant == e0.tenant && hour_of(e.created_at) == hour_of(e0.created_at))
        .map(|e| e.seq)
        .collect();
    let key =
        partition_dir(&dest.prefix, e0.tenant, hour_of(e0.created_at)).join(object_name(mine[0], mine[mine.len() - 1]));
    let foreign = gzip(b"{\"id\":-1}\n").unwrap();
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    dest.store.put_opts(&key, PutPayload::from(foreign.clone()), opts).await.unwrap();
    match drain(&cfg, &f).await {
        Err(DrainError::Sink { source: SinkError::Permanent(m), .. }) => {
            assert!(m.contains(key.as_ref()) && m.contains("another writer"), "{m}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(f.position(&cfg.name()), 0, "nothing committed");
    let stored = dest.store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(stored.to_vec(), foreign, "the other writer's object is untouched");
}

/// The server carries out a write but its response is lost (the connection drops):
/// the sink cannot know the object landed. Retried, it finds the object holding
/// exactly what it would write and counts it as delivered.
async fn lost_responses_on(server: Server) {
    let store = TestStore::start(server).await;
    let bucket = store.bucket("lost").await;
    let proxy = Proxy::start(&store.endpoint).await;
    let cfg = store.config_via(&proxy.endpoint, &bucket, "roll_events = 40");
    let mut f = Fixture::new();
    f.add(120);
    let mut consumer = Consumer::new(sink(&cfg));
    proxy.lose_put_responses(2);
    let mut failures = 0;
    let delivered = loop {
        match consumer.drain(&f.j, Flush::All).await {
            Ok(n) => break n,
            Err(DrainError::Sink { source: SinkError::Transient(_), .. }) if failures < 5 => failures += 1,
            Err(e) => panic!("after {failures} transient failures: {e:?}"),
        }
    };
    assert_eq!(proxy.put_responses_to_lose(), 0, "both responses were lost");
    assert!(delivered > 0, "the retries delivered the rest");
    assert_eq!(f.position(&cfg.name()), 120);
    check_exactly_once(&cfg.destination().unwrap(), &f).await;
}

async fn outage_on(server: Server) {
    let store = TestStore::start(server).await;
    let bucket = store.bucket("outage").await;
    let proxy = Proxy::start(&store.endpoint).await;
    let cfg = store.config_via(&proxy.endpoint, &bucket, "roll_events = 50");
    let mut f = Fixture::new();
    f.add(100);
    let mut consumer = Consumer::new(sink(&cfg));
    assert_eq!(consumer.drain(&f.j, Flush::All).await.unwrap(), 100);
    let before = f.position(&cfg.name());
    f.add(100);
    proxy.set_up(false);
    match consumer.drain(&f.j, Flush::All).await {
        Err(DrainError::Sink { source: SinkError::Transient(m), .. }) => assert!(m.contains(&bucket), "{m}"),
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert_eq!(f.position(&cfg.name()), before, "the offset stays while the store is down");
    proxy.set_up(true);
    assert_eq!(consumer.drain(&f.j, Flush::All).await.unwrap(), 100);
    check_exactly_once(&cfg.destination().unwrap(), &f).await;
    assert_eq!(f.position(&cfg.name()), 200);
}

async fn missing_bucket_on(server: Server) {
    let store = TestStore::start(server).await;
    let cfg = store.config("no-such-bucket", "");
    let what = format!("the {} does not exist", store.bucket_word());
    let err = sink(&cfg).health_check().await.unwrap_err();
    assert!(matches!(&err, SinkError::Permanent(m) if m.contains(&what) && m.contains("create-only write")), "{err}");
    let mut f = Fixture::new();
    f.add(5);
    match (server, drain(&cfg, &f).await) {
        (_, Err(DrainError::Sink { source: SinkError::Permanent(m), .. })) => assert!(m.contains(&what), "{m}"),
        // fake-gcs-server answers the listing of a missing bucket with 500 (GCS: 404), which
        // is rightly taken as the store's trouble; check above is what names the cause.
        (Server::Gcs, Err(DrainError::Sink { source: SinkError::Transient(m), .. })) => {
            assert!(m.contains("500"), "{m}")
        }
        (_, other) => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(f.position(&cfg.name()), 0);
}

#[tokio::test]
async fn azure_check_names_a_wrong_account_key_without_printing_it() {
    let store = TestStore::start(Server::Azure).await;
    let bucket = store.bucket("key").await;
    let wrong = "d3Jvbmcta2V5LW5vdC1henVyaXRlcy1kZXZlbG9wbWVudC1rZXktYXQtYWxsLTAxMjM0NTY3ODk=";
    let mut cfg = store.config(&bucket, "");
    cfg.azure_access_key = Some(crate::secret::Secret::new(wrong.to_string()));
    let err = sink(&cfg).health_check().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(&err, SinkError::Permanent(_)) && msg.contains("refused"), "{msg}");
    assert!(msg.contains("Storage Blob Data Contributor") && !msg.contains(wrong), "{msg}");
}

#[tokio::test]
async fn gcs_check_refuses_a_server_that_ignores_create_only_writes() {
    // fake-gcs-server's media upload ignores `ifGenerationMatch=0` and overwrites:
    // a real server that does not honour create-only writes.
    let store = TestStore::start(Server::Gcs).await;
    let bucket = store.bucket("ignores").await;
    let target = std::env::var("TINES_AUDIT_TEST_GCS_ENDPOINT").unwrap();
    let media = GcsTranslator::start(&target, GcsUpload::Media).await;
    let cfg = store.config_via(&media.endpoint, &bucket, "");
    let err = sink(&cfg).health_check().await.unwrap_err();
    assert!(
        matches!(&err, SinkError::Permanent(m) if m.contains("accepted a second create-only write (x-goog-if-generation-match: 0)")),
        "{err}"
    );
    assert_eq!(list_keys(&cfg.destination().unwrap()).await, Vec::<String>::new(), "the check object is removed");
    // The same bucket through the translator that keeps the precondition: ok.
    let health = sink(&store.config(&bucket, "")).health_check().await.unwrap();
    assert!(health.contains("a create-only write, its refusal to overwrite"), "{health}");
}

#[test]
fn config_urls_credentials_and_presets() {
    let ok = |t: &str| config(t).destination().unwrap_or_else(|e| panic!("{t}: {e}"));
    let d = ok("url = \"s3://bucket-a/tines/audit/\"\nregion = \"eu-west-1\"");
    assert_eq!((d.url.as_str(), d.prefix.as_ref()), ("s3://bucket-a/tines/audit", "tines/audit"));
    assert_eq!(ok("url = \"s3://bucket-a\"").prefix.as_ref(), "");
    assert_eq!(ok("url = \"gs://bucket-b/x\"").url, "gs://bucket-b/x");
    let az = ok("url = \"az://logs/tines\"\nazure_account = \"acct\"\nazure_access_key = \"a2V5\"");
    assert_eq!(az.url, "az://logs/tines");
    let file = ok("url = \"file:///var/lib/tines-audit/objects\"");
    assert_eq!(file.prefix.as_ref(), "var/lib/tines-audit/objects");

    let bad = |t: &str, want: &str| {
        let e = config(t).destination().unwrap_err();
        assert!(e.contains(want), "{t}: {e}");
    };
    bad("url = \"ftp://x/y\"", "scheme \"ftp\" is not supported");
    bad("url = \"bucket/prefix\"", "is not a URL");
    bad("url = \"s3:///prefix\"", "names no bucket");
    bad("url = \"gs://b/x\"\nregion = \"us-east-1\"", "region applies to S3");
    bad("url = \"s3://bkt/x\"\naccess_key_id = \"AKIA\"", "go together");
    bad("url = \"s3://bkt/x\"\nendpoint = \"minio:9000\"", "endpoint");
    bad("url = \"file://relative/dir\"", "absolute path");
    // Plain http to a GCS emulator on this machine (it used to be refused by the client:
    // "HTTP error: builder error" on the first request); elsewhere the token would travel in clear.
    assert_eq!(ok("url = \"gs://b/x\"\nendpoint = \"http://127.0.0.1:4443/\"").url, "gs://b/x");
    ok("url = \"gs://b/x\"\nendpoint = \"http://localhost:4443\"");
    bad(
        "url = \"gs://b/x\"\nendpoint = \"http://gcs.example.com\"",
        "plain http is for a GCS emulator on this machine only",
    );
    bad("url = \"gs://b/x\"\nendpoint = \"gcs:4443\"", "must start with https://");
    bad("url = \"az://c/x\"\nendpoint = \"devstore\"", "is not a URL");

    assert!(toml::from_str::<ObjectStoreConfig>("url = \"s3://bkt/x\"\nfoo = 1").is_err(), "unknown keys refused");

    let secops = config("url = \"s3://bkt/x\"\npreset = \"google_secops\"\nformat = \"ecs\"");
    assert_eq!(secops.preset, Some(Preset::GoogleSecops));
    let e = secops.build(Encoder::new(Shape::Ecs, None)).err().unwrap();
    assert!(e.contains("needs format = \"raw\""), "{e}");
    let snow = config(
        "url = \"s3://bkt/x\"\npreset = \"snowflake\"\nsecret_access_key = \"s3cr3t\"\naccess_key_id = \"AKIA\"",
    );
    assert!(!format!("{snow:?}").contains("s3cr3t"), "secrets never print");
    assert!(snow.build(Encoder::new(Shape::Raw, None)).is_ok());
}

#[test]
fn config_roll_settings_become_the_batch_policy() {
    let p = config("url = \"s3://bkt/x\"").policy().unwrap();
    assert_eq!((p.max_events, p.max_bytes, p.linger.as_secs()), (100_000, 64 * 1024 * 1024, 60));
    let p =
        config("url = \"s3://bkt/x\"\nroll_events = 500\nroll_bytes = 1048576\nroll_age = \"5m\"").policy().unwrap();
    assert_eq!((p.max_events, p.max_bytes, p.linger.as_secs()), (500, 1_048_576, 300));
    assert!(config("url = \"s3://bkt/x\"\nroll_bytes = 10").policy().is_err());
    assert!(config("url = \"s3://bkt/x\"\nroll_events = 0").policy().is_err());
    assert!(config("url = \"s3://bkt/x\"\nroll_age = \"soon\"").policy().is_err());
    let raw = || Encoder::new(Shape::Raw, None);
    for bad in [0, 257] {
        let e = config(&format!("url = \"s3://bkt/x\"\nwrite_concurrency = {bad}")).build(raw()).err().unwrap();
        assert!(e.contains("write_concurrency must be between 1 and 256"), "{e}");
    }
    assert!(config("url = \"s3://bkt/x\"\nwrite_concurrency = 1").build(raw()).is_ok());
}

#[test]
fn config_works_as_a_variant_of_an_internally_tagged_sink_enum() {
    // How `SinkConfig` will carry it: `type = "object_store"` plus these fields.
    #[derive(Debug, serde::Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Sinks {
        ObjectStore(ObjectStoreConfig),
    }
    let Sinks::ObjectStore(c) = toml::from_str("type = \"object_store\"\nurl = \"gs://b/p\"").unwrap();
    assert_eq!(c.url, "gs://b/p");
    assert!(toml::from_str::<Sinks>("type = \"object_store\"\nurl = \"gs://b/p\"\nbogus = 1").is_err());
}
