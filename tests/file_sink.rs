//! The file sink through the real binary: an archive it has no record of is
//! refused and left as it is (unless adopted), and one file spelled two ways
//! is one consumer. Kills at every step of a rotation are in the unit tests
//! (src/sinks/file/tests.rs), where a crash hook reaches each step.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use tines_audit::mock::MockConfig;

/// Every file beside the archive, name → bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

fn collect(cfg: &Path, data_dir: &Path, sink: &str) -> std::process::Output {
    let data_dir = data_dir.display().to_string();
    run_bin(&[
        "collect",
        "--config",
        &cfg.display().to_string(),
        "--no-progress",
        "--data-dir",
        &data_dir,
        "--sink",
        sink,
    ])
}

/// Issue 9, finding 2a: `collect --data-dir NEW --sink file:EXISTING` emptied
/// the archive with exit 0, and so did the same path spelled `out//audit.ndjson`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_into_a_new_data_dir_emptied_an_existing_archive() {
    let mock = start_mock(MockConfig { history: 400, seed: 29, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    let out = dir.path().join("out/audit.ndjson");
    let plain = format!("file:{}", out.display());
    let doubled_slash = format!("file:{}//audit.ndjson", out.parent().unwrap().display());
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let o = collect(&cfg, &old, &plain);
    assert!(o.status.success(), "{}", text(&o));
    assert_file_exactly_once(&out, &mock);
    let archive = snapshot(out.parent().unwrap());

    for sink in [&plain, &doubled_slash] {
        let o = collect(&cfg, &new, sink);
        assert_eq!(o.status.code(), Some(2), "{sink}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("no record") && err.contains("nothing was changed") && err.contains("file+adopt:"),
            "{err}"
        );
        assert_eq!(snapshot(out.parent().unwrap()), archive, "{sink}: the archive is left as it was");
    }

    // The journal that wrote it, with the path spelled differently, is the same consumer.
    let o = collect(&cfg, &old, &doubled_slash);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("sink {plain}: delivered 0 events")), "{stdout}");
    assert_file_exactly_once(&out, &mock);

    // Adopting keeps the archive as it is and appends the new journal's events after it.
    let before = std::fs::read(&out).unwrap();
    let o = collect(&cfg, &new, &format!("file+adopt:{}", out.display()));
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("adopted"), "{}", text(&o));
    let after = std::fs::read(&out).unwrap();
    assert!(after.starts_with(&before) && after.len() > before.len(), "appended after what was there");
    let counts = file_sink_counts(&out);
    assert_eq!(counts.len(), mock.ids().len());
    assert!(counts.values().all(|c| *c == 2), "each id once from each journal");
    mock.shutdown().await;
}
