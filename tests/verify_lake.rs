//! The lake's signed digests through the real binary: `collect` from the emulator into a
//! `file://` lake, `verify --object-store` with the installation's key (by sink name) and
//! with the public key alone (by URL, as an auditor would), then tampering named with
//! exit 13 (an object re-gzipped, a digest altered), and a verification without any key
//! refused with exit 2.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::*;
use tines_audit::mock::MockConfig;

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// Every data object of the lake, sorted.
fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_then_verify_the_lake_and_name_an_object_re_gzipped() {
    let mock = start_mock(MockConfig { history: 300, seed: 41, ..Default::default() }).await;
    wait_settled(&mock).await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let sinks = format!(
        "[[sinks]]\ntype = \"object_store\"\nname = \"lake\"\nurl = \"file://{}\"\nroll_events = 50\n",
        lake.display()
    );
    let cfg = write_config(dir.path(), &mock.base_url(), "", &sinks).display().to_string();
    let o = run_bin_async(vec!["collect".into(), "--config".into(), cfg.clone(), "--no-progress".into()]).await;
    assert!(o.status.success(), "{}", text(&o));
    let events = journal_count(&dir.path().join("data"));
    assert!(events >= 300, "{events}");

    // The operator: the sink by name, the installation's key.
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify".to_string(), "--format".into(), "json".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        run_bin_async(args)
    };
    let o = verify(&["--object-store", "lake", "--config", &cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = json(&o);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["digests"], 1, "collect signs what it wrote: {r}");
    assert_eq!(r["events_verified"], events, "{r}");
    assert_eq!(r["not_yet_covered"], 0, "{r}");
    assert_eq!(r["objects_verified"], objects(&lake).len(), "{r}");

    // The auditor: the public key alone, the lake by URL.
    let o = run_bin_async(vec!["keys".into(), "public".into(), "--config".into(), cfg.clone()]).await;
    assert!(o.status.success(), "{}", text(&o));
    let public = dir.path().join("lake.pub.pem");
    std::fs::write(&public, &o.stdout).unwrap();
    let empty = dir.path().join("auditor");
    std::fs::create_dir_all(&empty).unwrap();
    let url = format!("file://{}", lake.display());
    let (public, empty) = (public.display().to_string(), empty.display().to_string());
    let o = verify(&["--object-store", &url, "--public-key", &public, "--data-dir", &empty]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&o)["ok"], true);

    // Without any key: refused, saying how to give one.
    let o = verify(&["--object-store", &url, "--data-dir", &empty]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--public-key"), "{}", text(&o));

    // Tampered: an object re-gzipped (the same events, other bytes).
    let target = objects(&lake)[0].clone();
    let stored = std::fs::read(&target).unwrap();
    let mut events_text = Vec::new();
    flate2::read::MultiGzDecoder::new(&stored[..]).read_to_end(&mut events_text).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&events_text).unwrap();
    std::fs::write(&target, enc.finish().unwrap()).unwrap();
    let o = verify(&["--object-store", &url, "--public-key", &public, "--data-dir", &empty]).await;
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    let r = json(&o);
    let problems = r["problems"].as_array().unwrap();
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        problems.iter().any(|p| p["kind"] == "object_changed" && p["key"].as_str().unwrap().ends_with(&name)),
        "{r}"
    );
    assert_eq!(problems.len(), 1, "{r}");
    std::fs::write(&target, &stored).unwrap();

    // The digest altered (a byte of its signed line): named in text too.
    let digests = objects(&dir.path().join("lake.digests"));
    assert_eq!(digests.len(), 1, "{digests:?}");
    let text_before = std::fs::read_to_string(&digests[0]).unwrap();
    std::fs::write(&digests[0], text_before.replacen("\"events\":", "\"events\": ", 1)).unwrap();
    let o =
        run_bin_async(vec!["verify".into(), "--object-store".into(), "lake".into(), "--config".into(), cfg.clone()])
            .await;
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("signature invalid") && out.contains("lake FAILED"), "{}", text(&o));
}
