//! Signed digests, written by the sink through the real runner on a clock the test
//! moves (an hour passes without waiting one), and verified by `verify_lake` with the
//! public key alone: every object covered across restarts (objects adopted after a kill,
//! a digest written again after a kill), and each way of tampering named.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::*;
use crate::signing::{Keyring, PublicKey, SigningKey};
use crate::sinks::BatchPolicy;
use crate::sinks::object_store::digest::{self, PERIOD_SECS};
use crate::sinks::object_store::verify_lake::{Lake, LakeProblem, LakeReport};

/// 2027-01-15T08:10:00Z: ten minutes into an hour.
const START: i64 = 1_800_000_000 - 1_800_000_000 % PERIOD_SECS + 600;

/// A lake written by a signing sink whose clock the test moves.
struct TestLake {
    cfg: ObjectStoreConfig,
    dest: Destination,
    key: Arc<SigningKey>,
    clock: Arc<AtomicI64>,
}

impl TestLake {
    fn new(cfg: ObjectStoreConfig) -> TestLake {
        let dest = cfg.destination().unwrap();
        TestLake { cfg, dest, key: Arc::new(SigningKey::ephemeral()), clock: Arc::new(AtomicI64::new(START)) }
    }

    fn sink(&self) -> Box<dyn Sink> {
        let clock = self.clock.clone();
        let s = self.cfg.build(Encoder::new(Shape::Raw, None)).unwrap().with_digests(self.key.clone());
        Box::new(s.with_clock(Arc::new(move || clock.load(Ordering::SeqCst))))
    }

    /// The daemon's consumer: objects of at most 40 events, no lingering.
    fn consumer(&self) -> Consumer {
        Consumer::new(self.sink()).with_policy(BatchPolicy {
            max_events: 40,
            max_bytes: 64 << 20,
            linger: Duration::ZERO,
        })
    }

    fn advance(&self, secs: i64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }

    async fn verify_with(&self, keys: &[PublicKey]) -> LakeReport {
        let lake = Lake::of(&self.cfg).unwrap();
        lake.verify(&Keyring::new(keys.to_vec()), Arc::new(|_| {})).await.unwrap()
    }

    async fn verify(&self) -> LakeReport {
        self.verify_with(&[*self.key.public()]).await
    }

    fn digest_path(&self, name: &str) -> Path {
        Path::parse(format!("{}/{name}", self.dest.digests.as_ref().unwrap())).unwrap()
    }

    fn data_path(&self, rel: &str) -> Path {
        Path::parse(format!("{}/{rel}", self.dest.prefix)).unwrap()
    }

    /// Digest names (relative to the digest prefix), in chain order.
    async fn digest_names(&self) -> Vec<String> {
        let prefix = self.dest.digests.clone().unwrap();
        let metas: Vec<ObjectMeta> = self.dest.store.list(Some(&prefix)).try_collect().await.unwrap();
        let mut names: Vec<String> =
            metas.iter().map(|m| digest::relative(m.location.as_ref(), &prefix).unwrap().to_string()).collect();
        names.sort();
        names
    }

    async fn get(&self, path: &Path) -> Vec<u8> {
        self.dest.store.get(path).await.unwrap().bytes().await.unwrap().to_vec()
    }

    async fn put(&self, path: &Path, bytes: Vec<u8>) {
        self.dest.store.put(path, PutPayload::from(bytes)).await.unwrap();
    }

    async fn digest(&self, name: &str) -> digest::SignedDigest {
        digest::parse(&self.get(&self.digest_path(name)).await).unwrap()
    }
}

fn assert_ok(r: &LakeReport) {
    assert!(r.ok && r.problems.is_empty(), "{:#?}", r.problems);
}

async fn data_object_count(dest: &Destination) -> usize {
    list_keys(dest).await.len()
}

/// Every object is in a digest once its period ends, whatever the restarts: objects a kill
/// left behind are adopted and listed, an idle sink still closes its hour, a digest written
/// before a kill is adopted (not written twice, the chain unbroken), and a final drain seals.
pub(super) async fn digests_cover_every_object_across_restarts(cfg: ObjectStoreConfig) {
    let lake = TestLake::new(cfg);
    let mut f = Fixture::new();
    f.add(100);
    assert_eq!(lake.consumer().drain(&f.j, Flush::WhenDue).await.unwrap(), 100);
    let r = lake.verify().await;
    assert_ok(&r);
    assert_eq!((r.digests, r.objects_verified), (0, 0), "the first hour is still open");
    assert_eq!(r.not_yet_covered, data_object_count(&lake.dest).await);

    // Killed after writing a batch and before committing it: its objects are orphans.
    f.add(50);
    let mut s = lake.sink();
    s.recover(f.j.consumer(s.name(), 0).unwrap().state).await.unwrap();
    let after = f.position(&lake.cfg.name());
    prepare_and_deliver(&mut s, &f.j, f.j.read_after(after, 30, usize::MAX).unwrap()).await.unwrap();
    drop(s);
    let orphans: Vec<String> = list_keys(&lake.dest).await;

    // Restarted in the next hour: hour 1 is signed first, then the orphans are adopted.
    lake.advance(PERIOD_SECS);
    assert_eq!(lake.consumer().drain(&f.j, Flush::WhenDue).await.unwrap(), 50);
    let r = lake.verify().await;
    assert_ok(&r);
    assert_eq!(r.digests, 1);
    assert_eq!(r.events_verified, 100);
    assert!(r.not_yet_covered > 0);

    // Idle through the next hour: the next drain (the daemon's, each interval) signs hour 2.
    lake.advance(PERIOD_SECS);
    assert_eq!(lake.consumer().drain(&f.j, Flush::WhenDue).await.unwrap(), 0);
    let r = lake.verify().await;
    assert_ok(&r);
    assert_eq!((r.digests, r.not_yet_covered, r.events_verified), (2, 0, 150));
    let adopted = lake.digest(&lake.digest_names().await[1]).await;
    for o in &orphans {
        let rel = digest::relative(o, &lake.dest.prefix).unwrap();
        let listed = lake.digest(&lake.digest_names().await[0]).await.body.objects.iter().any(|e| e.key == rel)
            || adopted.body.objects.iter().any(|e| e.key == rel);
        assert!(listed, "{rel} is in a digest");
    }

    // Killed between writing hour 3's digest and committing that it is written.
    f.add(40);
    assert_eq!(lake.consumer().drain(&f.j, Flush::WhenDue).await.unwrap(), 40);
    lake.advance(PERIOD_SECS);
    let mut s = lake.sink();
    s.recover(f.j.consumer(s.name(), 0).unwrap().state).await.unwrap();
    assert!(s.checkpoint().await.unwrap().is_some(), "hour 3 is signed");
    drop(s);
    let names = lake.digest_names().await;
    assert_eq!(names.len(), 3);
    let third = lake.get(&lake.digest_path(&names[2])).await;
    // Restarted an hour later still: the digest it would write now ends later; the one there
    // is adopted, hour 4 (nothing written) is signed empty, and the final drain seals hour 5.
    lake.advance(PERIOD_SECS);
    f.add(10);
    assert_eq!(lake.consumer().drain(&f.j, Flush::All).await.unwrap(), 10);
    let names = lake.digest_names().await;
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(lake.digest(&names[3]).await.body.objects.is_empty());
    assert_eq!(lake.get(&lake.digest_path(&names[2])).await, third, "the digest there is kept");
    let r = lake.verify().await;
    assert_ok(&r);
    assert_eq!((r.digests, r.not_yet_covered, r.events_verified), (5, 0, 200));
    assert_eq!(r.objects_verified, data_object_count(&lake.dest).await);
    assert_eq!(r.signed_by, vec![lake.key.public().fingerprint()]);
    // Digests are beside the data, never in it: the data prefix holds objects of events only.
    check_exactly_once(&lake.dest, &f).await;
}

/// Each way of tampering with a lake is named, and putting things back verifies again.
pub(super) async fn tampering_in_each_way_is_named(cfg: ObjectStoreConfig) {
    let lake = TestLake::new(cfg);
    let mut f = Fixture::new();
    for _ in 0..3 {
        f.add(100);
        lake.consumer().drain(&f.j, Flush::WhenDue).await.unwrap();
        lake.advance(PERIOD_SECS);
    }
    lake.consumer().drain(&f.j, Flush::WhenDue).await.unwrap();
    assert_ok(&lake.verify().await);
    let names = lake.digest_names().await;
    assert_eq!(names.len(), 3, "{names:?}");
    let (second, third) = (names[1].clone(), names[2].clone());
    let d2 = lake.digest(&second).await;
    let rel = d2.body.objects[0].key.clone();
    let obj = lake.data_path(&rel);
    let original = lake.get(&obj).await;
    let digest2 = lake.get(&lake.digest_path(&second)).await;
    let has = |r: &LakeReport, want: &dyn Fn(&LakeProblem) -> bool| r.problems.iter().any(want);

    // An object's bytes changed.
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    lake.put(&obj, flipped).await;
    let r = lake.verify().await;
    assert!(
        has(&r, &|p| matches!(p, LakeProblem::ObjectChanged { key, digest, .. } if *key == rel && *digest == second)),
        "{r:#?}"
    );
    assert_eq!(r.problems.len(), 1, "{r:#?}");

    // Re-gzipped: the same events, other bytes.
    let mut events = Vec::new();
    flate2::read::MultiGzDecoder::new(&original[..]).read_to_end(&mut events).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    std::io::Write::write_all(&mut enc, &events).unwrap();
    let regzipped = enc.finish().unwrap();
    assert_ne!(regzipped, original);
    lake.put(&obj, regzipped).await;
    let r = lake.verify().await;
    assert!(has(&r, &|p| matches!(p, LakeProblem::ObjectChanged { key, .. } if *key == rel)), "{r:#?}");

    // Deleted.
    lake.dest.store.delete(&obj).await.unwrap();
    let r = lake.verify().await;
    assert!(
        has(&r, &|p| matches!(p, LakeProblem::ObjectDeleted { key, digest } if *key == rel && *digest == second)),
        "{r:#?}"
    );
    lake.put(&obj, original.clone()).await;
    assert_ok(&lake.verify().await);

    // Added: an object named like the sink's, within the seqs the digests cover, and one that is not.
    let forged = lake.data_path(&format!("tenant=mallory/dt=2024-03-10/hour=23/{}", object_name(2, 3)));
    let junk = lake.data_path("notes.txt");
    lake.put(&forged, gzip(b"{\"id\":1}\n").unwrap()).await;
    lake.put(&junk, b"hello".to_vec()).await;
    let r = lake.verify().await;
    let added: Vec<&LakeProblem> = r.problems.iter().filter(|p| matches!(p, LakeProblem::ObjectAdded { .. })).collect();
    assert_eq!(added.len(), 2, "{r:#?}");
    assert!(has(&r, &|p| matches!(p, LakeProblem::ObjectAdded { key, .. } if key.starts_with("tenant=mallory/"))));
    lake.dest.store.delete(&forged).await.unwrap();
    lake.dest.store.delete(&junk).await.unwrap();
    assert_ok(&lake.verify().await);

    // A digest deleted: the gap is named, and its objects are in no digest.
    lake.dest.store.delete(&lake.digest_path(&second)).await.unwrap();
    let r = lake.verify().await;
    assert!(
        has(&r, &|p| matches!(p, LakeProblem::DigestMissing { first: 2, last: 2, named_by: Some(n) } if *n == third)),
        "{r:#?}"
    );
    assert!(has(&r, &|p| matches!(p, LakeProblem::ObjectAdded { key, .. } if *key == rel)), "{r:#?}");
    lake.put(&lake.digest_path(&second), digest2.clone()).await;
    assert_ok(&lake.verify().await);

    // A digest modified (an object's recorded hash replaced to match a changed object).
    let text = String::from_utf8(digest2.clone()).unwrap().replacen(&d2.body.objects[0].sha256, &"0".repeat(64), 1);
    lake.put(&lake.digest_path(&second), text.into_bytes()).await;
    let r = lake.verify().await;
    assert!(has(&r, &|p| matches!(p, LakeProblem::SignatureInvalid { digest, .. } if *digest == second)), "{r:#?}");

    // Re-signed with another key: named as a key not given, and the next digest no longer follows.
    let other = SigningKey::ephemeral();
    let mut body = d2.body.clone();
    body.key = other.public().fingerprint();
    lake.put(&lake.digest_path(&second), digest::encode(&body, &other)).await;
    let r = lake.verify().await;
    assert!(
        has(
            &r,
            &|p| matches!(p, LakeProblem::SignatureInvalid { digest, reason } if *digest == second && reason.contains(&body.key))
        ),
        "{r:#?}"
    );
    assert!(has(&r, &|p| matches!(p, LakeProblem::ChainBroken { digest, .. } if *digest == third)), "{r:#?}");
    // Trusting that key too does not hide the break.
    let r = lake.verify_with(&[*lake.key.public(), *other.public()]).await;
    assert!(!has(&r, &|p| matches!(p, LakeProblem::SignatureInvalid { .. })), "{r:#?}");
    assert!(has(&r, &|p| matches!(p, LakeProblem::ChainBroken { digest, .. } if *digest == third)), "{r:#?}");

    // The chain broken by someone holding the key: a digest rewritten without an object and re-signed.
    let mut body = d2.body.clone();
    body.objects.remove(0);
    lake.put(&lake.digest_path(&second), digest::encode(&body, &lake.key)).await;
    let r = lake.verify().await;
    assert!(!has(&r, &|p| matches!(p, LakeProblem::SignatureInvalid { .. })), "{r:#?}");
    assert!(has(&r, &|p| matches!(p, LakeProblem::ChainBroken { digest, .. } if *digest == third)), "{r:#?}");
    assert!(has(&r, &|p| matches!(p, LakeProblem::ObjectAdded { key, .. } if *key == rel)), "{r:#?}");
    lake.put(&lake.digest_path(&second), digest2).await;

    // Verified with a key that did not sign it: every digest is named.
    let r = lake.verify_with(&[*other.public()]).await;
    let unsigned = r.problems.iter().filter(|p| matches!(p, LakeProblem::SignatureInvalid { .. })).count();
    assert_eq!(unsigned, 3, "{r:#?}");

    let r = lake.verify().await;
    assert_ok(&r);
    assert_eq!(r.digests, 3);
}

#[tokio::test]
async fn local_directory_digests_cover_every_object_across_restarts() {
    let out = tempfile::tempdir().unwrap();
    digests_cover_every_object_across_restarts(local_config(&out.path().join("objects"), "")).await;
    // The digests are beside the directory, not in it.
    assert!(out.path().join("objects.digests").is_dir());
}

#[tokio::test]
async fn local_directory_tampering_in_each_way_is_named() {
    let out = tempfile::tempdir().unwrap();
    tampering_in_each_way_is_named(local_config(&out.path().join("objects"), "")).await;
}

#[test]
fn digests_go_beside_the_data_prefix_never_in_it() {
    let digests = |t: &str| config(t).destination().map(|d| d.digests.map(|p| p.to_string()));
    assert_eq!(digests("url = \"s3://b/tines/audit/\"").unwrap().as_deref(), Some("tines/audit.digests"));
    assert_eq!(digests("url = \"file:///var/lake\"").unwrap().as_deref(), Some("var/lake.digests"));
    assert_eq!(digests("url = \"s3://b\"").unwrap(), None);
    let e = config("url = \"s3://b\"").build(Encoder::new(Shape::Raw, None)).err().unwrap();
    assert!(e.contains("has no prefix") && e.contains("digest_prefix"), "{e}");
    let root = "url = \"s3://b\"\ndigest_prefix = \"tines-audit-digests\"";
    assert_eq!(digests(root).unwrap().as_deref(), Some("tines-audit-digests"));
    assert!(config(root).build(Encoder::new(Shape::Raw, None)).is_ok());
    for (t, want) in [
        ("url = \"s3://b/tines/audit\"\ndigest_prefix = \"tines/audit/digests\"", "contain one another"),
        ("url = \"s3://b/tines/audit\"\ndigest_prefix = \"tines\"", "contain one another"),
        ("url = \"s3://b\"\ndigest_prefix = \"tenant=x\"", "collides"),
        ("url = \"file:///var/lake\"\ndigest_prefix = \"digests\"", "absolute directory"),
    ] {
        let e = digests(t).unwrap_err();
        assert!(e.contains(want), "{t}: {e}");
    }
    assert_eq!(
        digests("url = \"s3://b/tines/audit\"\ndigest_prefix = \"/tines/digests/\"").unwrap().as_deref(),
        Some("tines/digests")
    );
    // Alerts beside the events carry no digests, and never take the events' digest_prefix.
    let alerts = config("url = \"s3://b/tines/audit\"\ndigest_prefix = \"tines/digests\"").for_alerts().unwrap();
    assert_eq!(alerts.digest_prefix, None);
}
