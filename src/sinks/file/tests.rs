//! The file sink against kills at every step of its work on disk (a crash
//! hook compiled only for tests), journals rolled back to any earlier commit,
//! and targets it must not touch.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::journal::{Journal, Record as JournalRecord, WindowCommit};
use crate::sinks::BatchPolicy;
use crate::sinks::runner::{Consumer, DrainError, Flush};

/// Stops the sink at one step, as a SIGKILL there would: that step's work is
/// on disk, nothing after it happens (every later step fails too).
#[derive(Default)]
pub(super) struct Crash {
    /// Crash at this step (counted from 0 across one start of the sink).
    at: Option<usize>,
    /// Or at the first step with this name.
    at_name: Option<&'static str>,
    steps: AtomicUsize,
    dead: AtomicBool,
    log: Mutex<Vec<&'static str>>,
}

impl Crash {
    fn never() -> Arc<Self> {
        Arc::new(Crash::default())
    }
    fn at(n: usize) -> Arc<Self> {
        Arc::new(Crash { at: Some(n), ..Default::default() })
    }
    fn at_name(name: &'static str) -> Arc<Self> {
        Arc::new(Crash { at_name: Some(name), ..Default::default() })
    }
    fn crashed(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }
    fn log(&self) -> Vec<&'static str> {
        self.log.lock().unwrap().clone()
    }

    pub(super) fn step(&self, what: &'static str) -> std::io::Result<()> {
        let killed = || std::io::Error::other(format!("killed at {what}"));
        if self.crashed() {
            return Err(killed());
        }
        let n = self.steps.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(what);
        if self.at == Some(n) || self.at_name == Some(what) {
            self.dead.store(true, Ordering::SeqCst);
            return Err(killed());
        }
        Ok(())
    }

    /// A kill before the appended bytes were synced may leave any prefix of them: half, mid-line.
    pub(super) fn tear(&self, file: &std::fs::File, len: u64, appended: u64) -> std::io::Result<()> {
        self.step("torn").inspect_err(|_| {
            let _ = file.set_len(len + (appended / 2 + 1).min(appended - 1));
        })
    }
}

/// A directory on tmpfs when there is one: these tests sync thousands of times.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() }
}

fn raw(id: i64) -> String {
    format!("{{\"id\":{id},\"pad\":\"{}\"}}", "x".repeat(50))
}

/// Appends events with ids `ids` (the journal gives them the same seqs when it starts empty).
fn add(j: &Journal, ids: std::ops::RangeInclusive<i64>, window: i64) {
    let raws: Vec<String> = ids.clone().map(raw).collect();
    let recs = raws.iter().zip(ids).map(|(raw, id)| JournalRecord {
        id,
        created_at: id,
        operation_name: "Login",
        user_id: None,
        user_email: None,
        request_ip: None,
        raw,
    });
    let commit = WindowCommit { tenant: "t", job: "cursor", from: window, to: window + 1, fetched: raws.len() as u64 };
    j.commit_window(&commit, recs).unwrap();
}

fn journal_with(n: i64) -> (tempfile::TempDir, Journal) {
    let dir = scratch();
    let j = Journal::open(&dir.path().join("j")).unwrap();
    j.start_progress("t", "cursor", 0, None, "").unwrap();
    add(&j, 1..=n, 0);
    (dir, j)
}

fn policy(max_events: usize) -> BatchPolicy {
    BatchPolicy { max_events, max_bytes: usize::MAX, linger: std::time::Duration::ZERO }
}

fn consumer(name: &str, path: &Path, max_bytes: u64, batch: usize) -> Consumer {
    Consumer::new(Box::new(FileSink::new(name.into(), path.to_path_buf(), max_bytes))).with_policy(policy(batch))
}

/// The data files of the target (the active file and its segments), name → bytes.
fn data_files(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(path.parent().unwrap()) else { return BTreeMap::new() };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

fn ids_of(bytes: &[u8], file: &str) -> Vec<i64> {
    assert!(bytes.is_empty() || bytes.ends_with(b"\n"), "{file} ends in a partial line");
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: bad line {l:?}: {e}"));
            v["id"].as_i64().unwrap()
        })
        .collect()
}

fn ids_in(path: &Path) -> Vec<i64> {
    let mut ids: Vec<i64> = data_files(path).iter().flat_map(|(f, b)| ids_of(b, f)).collect();
    ids.sort_unstable();
    ids
}

/// Every id once across the active file and the segments, no partial line, and
/// each segment holding exactly the seqs its name gives (ids equal seqs here).
fn assert_exactly_once(path: &Path, n: i64, context: &str) {
    let paths = Paths::new(path.to_path_buf());
    for (first, last) in paths.segments().unwrap() {
        let name = paths.segment(first, last);
        let ids = ids_of(&std::fs::read(&name).unwrap(), &name.display().to_string());
        assert_eq!(ids, (first..=last).collect::<Vec<_>>(), "{context}: {} holds other seqs", name.display());
    }
    assert_eq!(ids_in(path), (1..=n).collect::<Vec<_>>(), "{context}: {:?}", data_files(path).keys());
}

/// A small run with every kind of step: 14 events in batches of 3, rotated every 2 batches (2 left in the active file).
const EVENTS: i64 = 14;
const BATCH: usize = 3;

fn rotate_every_two_batches() -> u64 {
    (raw(1).len() as u64 + 1) * 2 * BATCH as u64
}

/// One start of the sink (a process), killed where `crash` says.
async fn start(j: &Journal, name: &str, path: &Path, crash: Arc<Crash>) -> Result<u64, DrainError> {
    let sink = FileSink::new(name.into(), path.to_path_buf(), rotate_every_two_batches()).with_crash(crash);
    Consumer::new(Box::new(sink)).with_policy(policy(BATCH)).drain(j, Flush::All).await
}

/// The steps of an uninterrupted run, by name.
async fn clean_run(j: &Journal, dir: &Path) -> Vec<&'static str> {
    let path = dir.join("clean/a.ndjson");
    let crash = Crash::never();
    assert_eq!(start(j, "clean", &path, crash.clone()).await.unwrap(), EVENTS as u64);
    assert_exactly_once(&path, EVENTS, "clean run");
    let log = crash.log();
    assert!(log.iter().filter(|s| **s == "renamed").count() >= 2, "the run rotates: {log:?}");
    log
}

#[tokio::test]
async fn uncommitted_tail_is_cut_on_restart_so_nothing_doubles() {
    let (dir, j) = journal_with(100);
    let path = dir.path().join("out/a.ndjson");
    assert_eq!(consumer("f", &path, DEFAULT_MAX_BYTES, 30).drain(&j, Flush::All).await.unwrap(), 100);
    // A crash after writing a batch but before recording it:
    let recorded = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"id\":1}\n{\"id\":2").unwrap();
    assert_eq!(consumer("f", &path, DEFAULT_MAX_BYTES, 30).drain(&j, Flush::All).await.unwrap(), 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), recorded);
    assert_eq!(ids_in(&path), (1..=100).collect::<Vec<_>>());
}

#[tokio::test]
async fn rotates_by_size_into_names_from_the_seq_range() {
    let (dir, j) = journal_with(100);
    let path = dir.path().join("out/a.ndjson");
    consumer("f", &path, 1500, 10).drain(&j, Flush::All).await.unwrap();
    let names: Vec<String> = data_files(&path).into_keys().collect();
    assert!(names.iter().any(|n| n == "a.000000000001-000000000030.ndjson"), "{names:?}");
    assert!(names.len() > 3, "{names:?}");
    assert_exactly_once(&path, 100, "rotated");
}

#[tokio::test]
async fn a_rotation_interrupted_before_its_record_is_finished_on_restart() {
    let (dir, j) = journal_with(40);
    let path = dir.path().join("out/a.ndjson");
    consumer("f", &path, u64::MAX, 20).drain(&j, Flush::All).await.unwrap();
    // Renamed, then killed before the record says so:
    std::fs::rename(&path, Paths::new(path.clone()).segment(1, 40)).unwrap();
    assert_eq!(consumer("f", &path, u64::MAX, 20).drain(&j, Flush::All).await.unwrap(), 0);
    add(&j, 41..=45, 1);
    assert_eq!(consumer("f", &path, u64::MAX, 20).drain(&j, Flush::All).await.unwrap(), 5);
    assert_exactly_once(&path, 45, "finished rotation");
}

/// Issue 9, finding 2b, without the crash hook: a kill right after a
/// rotation's rename and another right after the next batch's fdatasync
/// leave the journal's state from before the rotation. The restart cut the
/// new file to the old one's length and renamed it over the rotated segment.
#[tokio::test]
async fn two_crashes_around_a_rotation_renamed_a_cut_file_over_the_rotated_segment() {
    let (dir, j) = journal_with(20);
    let path = dir.path().join("out/a.ndjson");
    consumer("f", &path, u64::MAX, 50).drain(&j, Flush::All).await.unwrap();
    let before_rotation = j.consumer("f", 0).unwrap();
    let full = std::fs::metadata(&path).unwrap().len();
    consumer("f", &path, full, 50).drain(&j, Flush::All).await.unwrap();
    add(&j, 21..=50, 1);
    consumer("f", &path, u64::MAX, 50).drain(&j, Flush::All).await.unwrap();
    // Neither the rotation nor the next delivery reached the journal:
    let now = j.consumer("f", 0).unwrap();
    j.commit_offset("f", now.position, before_rotation.position, before_rotation.state.as_deref()).unwrap();
    consumer("f", &path, full, 50).drain(&j, Flush::All).await.unwrap();
    assert_exactly_once(&path, 50, "after two crashes around a rotation");
}

/// The same two kills, with the hook: right after the rename, then right after the next fdatasync.
#[tokio::test]
async fn a_kill_after_a_rotation_rename_then_after_the_next_fdatasync_loses_and_doubles_nothing() {
    let (dir, j) = journal_with(EVENTS);
    let path = dir.path().join("out/a.ndjson");
    assert!(start(&j, "f", &path, Crash::at_name("renamed")).await.is_err());
    let crash = Crash::at_name("synced");
    assert!(start(&j, "f", &path, crash.clone()).await.is_err());
    assert!(crash.crashed());
    start(&j, "f", &path, Crash::never()).await.unwrap();
    assert_exactly_once(&path, EVENTS, "two kills");
}

/// A kill at every step of a run with rotations (appends, torn appends,
/// syncs, renames, record writes, recovery's own steps), then a restart.
#[tokio::test]
async fn a_kill_at_every_step_then_a_restart_holds_every_id_exactly_once() {
    let (dir, j) = journal_with(EVENTS);
    let steps = clean_run(&j, dir.path()).await.len();
    for k in 0..steps {
        let (name, path) = (format!("k{k}"), dir.path().join(format!("k{k}/a.ndjson")));
        assert!(start(&j, &name, &path, Crash::at(k)).await.is_err(), "killed at step {k}");
        start(&j, &name, &path, Crash::never()).await.unwrap_or_else(|e| panic!("restart after step {k}: {e}"));
        assert_exactly_once(&path, EVENTS, &format!("killed at step {k}"));
    }
}

/// Two kills in a row: at every step of the first start, then at every step of
/// the restart (recovery included), then a last start.
#[tokio::test]
async fn two_kills_in_a_row_at_every_pair_of_steps_hold_every_id_exactly_once() {
    let (dir, j) = journal_with(EVENTS);
    let steps = clean_run(&j, dir.path()).await.len();
    let mut pairs = 0;
    for k in 0..steps {
        for m in 0.. {
            let (name, path) = (format!("k{k}m{m}"), dir.path().join(format!("k{k}m{m}/a.ndjson")));
            assert!(start(&j, &name, &path, Crash::at(k)).await.is_err());
            let second = Crash::at(m);
            let r = start(&j, &name, &path, second.clone()).await;
            let context = format!("killed at step {k}, then at step {m} of the restart");
            if !second.crashed() {
                r.unwrap_or_else(|e| panic!("{context}: {e}"));
                assert_exactly_once(&path, EVENTS, &context);
                break;
            }
            start(&j, &name, &path, Crash::never()).await.unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_exactly_once(&path, EVENTS, &context);
            pairs += 1;
        }
    }
    assert!(pairs > steps * 10, "{pairs} pairs of kills");
}

/// A kill at every step, then the journal rolled back to any state it
/// committed before (a system crash with synchronous=NORMAL loses the last
/// commits): the restart still ends with every id once. Only a journal rolled
/// back past its first commit cannot be told from a new journal: then the sink
/// refuses and changes nothing.
#[tokio::test]
async fn a_kill_at_every_step_with_the_journal_rolled_back_to_any_earlier_commit() {
    let (dir, j) = journal_with(EVENTS);
    let steps = clean_run(&j, dir.path()).await.len();
    let mut refused = 0;
    for k in 0..steps {
        for back in 0.. {
            let (name, path) = (format!("k{k}b{back}"), dir.path().join(format!("k{k}b{back}/a.ndjson")));
            assert!(start(&j, &name, &path, Crash::at(k)).await.is_err());
            let now = j.consumer(&name, 0).unwrap();
            // Committed offsets are batch ends; the state names the owner and the offset.
            let to = now.position - back * BATCH as i64;
            if to < 0 || (now.state.is_none() && back > 0) {
                break;
            }
            let state = now.state.as_ref().map(|s| {
                let mut c: Committed = serde_json::from_str(s).unwrap();
                c.at = to;
                serde_json::to_string(&c).unwrap()
            });
            j.commit_offset(&name, now.position, to, state.as_deref()).unwrap();
            let context = format!("killed at step {k}, journal back at seq {to}");
            start(&j, &name, &path, Crash::never()).await.unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_exactly_once(&path, EVENTS, &context);
        }
        // Back past the first commit:
        let (name, path) = (format!("k{k}n"), dir.path().join(format!("k{k}n/a.ndjson")));
        assert!(start(&j, &name, &path, Crash::at(k)).await.is_err());
        let now = j.consumer(&name, 0).unwrap();
        j.commit_offset(&name, now.position, 0, None).unwrap();
        let before = data_files(&path);
        match start(&j, &name, &path, Crash::never()).await {
            Ok(_) => assert_exactly_once(&path, EVENTS, &format!("killed at step {k}, journal emptied")),
            Err(DrainError::Sink { source: SinkError::Refused(m), .. }) => {
                assert!(m.contains("no record"), "{m}");
                assert_eq!(data_files(&path), before, "a refusal changes nothing");
                refused += 1;
            }
            Err(e) => panic!("killed at step {k}, journal emptied: {e}"),
        }
    }
    assert!(refused > 0);
}

/// Alert outputs deliver without a checkpoint, so the journal first hears of
/// the owner with the first delivery: killed before that commit, the restart
/// finds data and no committed state, and must take it for its own uncommitted write.
#[tokio::test]
async fn a_first_delivery_the_journal_never_recorded_is_cut_on_restart_not_refused() {
    let (dir, j) = journal_with(6);
    let path = dir.path().join("a.ndjson");
    let batch = |after| Arc::new(j.read_after(after, 3, usize::MAX).unwrap());
    let mut first = FileSink::new("f".into(), path.clone(), DEFAULT_MAX_BYTES);
    first.recover(None).await.unwrap();
    first.deliver(batch(0)).await.unwrap();
    drop(first);
    assert_eq!(ids_in(&path), vec![1, 2, 3]);
    let mut again = FileSink::new("f".into(), path.clone(), DEFAULT_MAX_BYTES);
    again.recover(None).await.unwrap();
    assert_eq!(ids_in(&path), Vec::<i64>::new(), "the uncommitted delivery is cut");
    let state = again.deliver(batch(0)).await.unwrap();
    again.deliver(batch(3)).await.unwrap();
    drop(again);
    assert_exactly_once(&path, 6, "no checkpoint");
    // Once the journal has the owner, the sink's data is its own for good:
    let mut third = FileSink::new("f".into(), path.clone(), DEFAULT_MAX_BYTES);
    third.recover(state).await.unwrap();
    assert!(third.deliver(batch(3)).await.unwrap().is_some());
    drop(third);
    assert_exactly_once(&path, 6, "skipped what the file holds");
}

#[tokio::test]
async fn an_existing_file_this_journal_has_no_record_of_is_refused_and_left_as_it_is() {
    let (dir, j) = journal_with(10);
    let path = dir.path().join("out/a.ndjson");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{\"id\":1000}\n{\"id\":1001}\n").unwrap();
    let before: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().path()).collect();
    let err = consumer("f", &path, DEFAULT_MAX_BYTES, 5).drain(&j, Flush::All).await.unwrap_err();
    let DrainError::Sink { source: SinkError::Refused(m), .. } = &err else { panic!("{err}") };
    assert!(m.contains("no record") && m.contains("adopt_existing"), "{m}");
    let after: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(after, before, "nothing created beside it");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"id\":1000}\n{\"id\":1001}\n");
    assert_eq!(j.consumer("f", 0).unwrap().position, 0);
}

#[tokio::test]
async fn a_target_written_by_another_journal_is_refused() {
    let (dir, j) = journal_with(10);
    let (_other_dir, other) = journal_with(4);
    let path = dir.path().join("out/a.ndjson");
    consumer("f", &path, DEFAULT_MAX_BYTES, 5).drain(&other, Flush::All).await.unwrap();
    let before = data_files(&path);
    // A new journal, and a journal that has a record of another owner:
    let err = consumer("f", &path, DEFAULT_MAX_BYTES, 5).drain(&j, Flush::All).await.unwrap_err();
    assert!(matches!(&err, DrainError::Sink { source: SinkError::Refused(m), .. } if m.contains("no record")), "{err}");
    j.commit_offset("f", 0, 0, Some(r#"{"v":2,"owner":"someone-else","at":0}"#)).unwrap();
    let err = consumer("f", &path, DEFAULT_MAX_BYTES, 5).drain(&j, Flush::All).await.unwrap_err();
    assert!(
        matches!(&err, DrainError::Sink { source: SinkError::Refused(m), .. } if m.contains("another owner")),
        "{err}"
    );
    assert_eq!(data_files(&path), before);
}

#[tokio::test]
async fn adopting_an_existing_file_keeps_it_and_appends_after_it() {
    let (dir, j) = journal_with(10);
    let path = dir.path().join("out/a.ndjson");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let old = "{\"id\":1000}\n{\"id\":1001}\n";
    std::fs::write(&path, old).unwrap();
    let adopting = || {
        let sink = FileSink::new("f".into(), path.clone(), 200).adopting_existing(true);
        Consumer::new(Box::new(sink)).with_policy(policy(4))
    };
    assert_eq!(adopting().drain(&j, Flush::All).await.unwrap(), 10);
    assert_eq!(adopting().drain(&j, Flush::All).await.unwrap(), 0, "once adopted, it is this journal's");
    let mut want: Vec<i64> = (1..=10).collect();
    want.extend([1000, 1001]);
    assert_eq!(ids_in(&path), want);
    // The adopted lines open the first segment, before the events written after them.
    let first = data_files(&path).into_iter().find(|(n, _)| n.starts_with("a.000000000001-")).unwrap();
    assert!(String::from_utf8(first.1).unwrap().starts_with(old));
}

#[tokio::test]
async fn a_file_ending_in_a_partial_line_is_not_adopted() {
    let (dir, j) = journal_with(3);
    let path = dir.path().join("a.ndjson");
    std::fs::write(&path, "{\"id\":1000}\n{\"id\":10").unwrap();
    let sink = FileSink::new("f".into(), path.clone(), DEFAULT_MAX_BYTES).adopting_existing(true);
    let err = Consumer::new(Box::new(sink)).drain(&j, Flush::All).await.unwrap_err();
    assert!(
        matches!(&err, DrainError::Sink { source: SinkError::Refused(m), .. } if m.contains("partial line")),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"id\":1000}\n{\"id\":10");
}

#[tokio::test]
async fn two_sinks_on_one_file_are_refused() {
    let (dir, j) = journal_with(6);
    let path = dir.path().join("out/a.ndjson");
    let mut first = consumer("f", &path, DEFAULT_MAX_BYTES, 5);
    first.drain(&j, Flush::All).await.unwrap();
    let spelled_otherwise = dir.path().join("out/.//a.ndjson");
    let err = consumer("g", &spelled_otherwise, DEFAULT_MAX_BYTES, 5).drain(&j, Flush::All).await.unwrap_err();
    assert!(
        matches!(&err, DrainError::Sink { source: SinkError::Refused(m), .. } if m.contains("another sink")),
        "{err}"
    );
    drop(first);
    assert_exactly_once(&path, 6, "one writer");
}

#[test]
fn one_file_spelled_two_ways_is_one_consumer() {
    let name = |spec: &str| crate::sinks::SinkConfig::parse_flag(spec).unwrap().name();
    assert_eq!(name("file:out//audit.ndjson"), "file:out/audit.ndjson");
    assert_eq!(name("file:./out/./audit.ndjson"), "file:out/audit.ndjson");
    assert_eq!(name("file+adopt:/var/x//a.ndjson"), "file:/var/x/a.ndjson");
    assert_eq!(normalize(Path::new("../out/a.ndjson")), PathBuf::from("../out/a.ndjson"));
}

#[tokio::test]
async fn a_target_that_vanished_is_refused_rather_than_started_anew() {
    let (dir, j) = journal_with(6);
    let path = dir.path().join("out/a.ndjson");
    consumer("f", &path, DEFAULT_MAX_BYTES, 5).drain(&j, Flush::All).await.unwrap();
    std::fs::rename(dir.path().join("out"), dir.path().join("elsewhere")).unwrap();
    let err = consumer("f", &path, DEFAULT_MAX_BYTES, 5).drain(&j, Flush::All).await.unwrap_err();
    assert!(matches!(&err, DrainError::Sink { source: SinkError::Refused(m), .. } if m.contains("are gone")), "{err}");
    assert!(!dir.path().join("out").exists(), "nothing created");
}

#[tokio::test]
async fn a_file_cut_outside_tines_audit_stops_the_sink() {
    let (dir, j) = journal_with(6);
    let path = dir.path().join("a.ndjson");
    consumer("f", &path, DEFAULT_MAX_BYTES, 5).drain(&j, Flush::All).await.unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 10).unwrap();
    add(&j, 7..=8, 1);
    let err = consumer("f", &path, DEFAULT_MAX_BYTES, 5).drain(&j, Flush::All).await.unwrap_err();
    assert!(matches!(&err, DrainError::Sink { source: SinkError::Permanent(m), .. } if m.contains("shorter")), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len - 10);
}

#[tokio::test]
async fn a_journal_that_numbers_events_anew_stops_the_sink_instead_of_skipping_them() {
    let (dir, j) = journal_with(6);
    let path = dir.path().join("a.ndjson");
    consumer("f", &path, DEFAULT_MAX_BYTES, 3).drain(&j, Flush::All).await.unwrap();
    let state = j.consumer("f", 0).unwrap().state.unwrap();
    // A journal restored from a backup taken at seq 3, which then collected events 4..6 in another order:
    let other_dir = scratch();
    let other = Journal::open(other_dir.path()).unwrap();
    other.start_progress("t", "cursor", 0, None, "").unwrap();
    add(&other, 1..=3, 0);
    add(&other, 6..=6, 1);
    add(&other, 4..=5, 2);
    let mut c: Committed = serde_json::from_str(&state).unwrap();
    c.at = 3;
    other.consumer("f", 0).unwrap();
    other.commit_offset("f", 0, 3, Some(&serde_json::to_string(&c).unwrap())).unwrap();
    let err = consumer("f", &path, DEFAULT_MAX_BYTES, 3).drain(&other, Flush::All).await.unwrap_err();
    assert!(matches!(&err, DrainError::Sink { source: SinkError::Permanent(m), .. } if m.contains("anew")), "{err}");
}

#[tokio::test]
async fn a_state_committed_before_the_record_existed_is_upgraded() {
    let (dir, j) = journal_with(8);
    let path = dir.path().join("a.ndjson");
    // What the sink wrote before it kept a record: six events committed, two more not.
    let lines: String = (1..=8).map(|i| raw(i) + "\n").collect();
    let committed = (raw(1).len() as u64 + 1) * 6;
    std::fs::write(&path, &lines).unwrap();
    j.consumer("f", 0).unwrap();
    let legacy = format!(r#"{{"v":1,"len":{committed},"first_seq":1,"last_seq":6}}"#);
    j.commit_offset("f", 0, 6, Some(&legacy)).unwrap();
    assert_eq!(consumer("f", &path, DEFAULT_MAX_BYTES, 5).drain(&j, Flush::All).await.unwrap(), 2);
    assert_exactly_once(&path, 8, "upgraded");
}
