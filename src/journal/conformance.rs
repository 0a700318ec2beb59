//! The journal's contract, run against every backend: what the collector, the sinks,
//! the detector and retention rely on must hold on SQLite and PostgreSQL alike.

use super::Access;
use super::testing::{Kind, fresh};
use super::*;

fn rec(id: i64, raw: &str) -> Record<'_> {
    Record {
        id,
        created_at: 100 + id,
        operation_name: "Login",
        user_id: Some(1),
        user_email: Some("a@b.c"),
        request_ip: None,
        raw,
    }
}

/// Tenant `t` with events 1..=n (ids 1..=n, created `1_000 + id - 1`), 200-byte padded.
pub(crate) fn fill(j: &Journal, n: i64) {
    j.start_progress("t", "cursor", 0, None, "").unwrap();
    let raws: Vec<String> = (1..=n).map(|i| format!("{{\"id\":{i},\"pad\":\"{}\"}}", "x".repeat(200))).collect();
    let recs = raws.iter().enumerate().map(|(i, r)| Record {
        id: i as i64 + 1,
        created_at: 1_000 + i as i64,
        operation_name: "Login",
        user_id: None,
        user_email: None,
        request_ip: None,
        raw: r,
    });
    let p = j.progress("t", "cursor").unwrap().unwrap().position;
    j.commit_window(&WindowCommit { tenant: "t", job: "cursor", from: p, to: p + 1, fetched: n as u64 }, recs).unwrap();
}

fn window_commit_is_atomic_idempotent_and_checks_its_start(kind: Kind) {
    let j = fresh(kind);
    j.start_progress("acme", "cursor", 0, None, "").unwrap();
    let c = WindowCommit { tenant: "acme", job: "cursor", from: 0, to: 50, fetched: 2 };
    assert_eq!(j.commit_window(&c, [rec(1, "{\"id\":1}"), rec(2, "{\"id\":2}")]).unwrap(), 2);
    // A replay of an overlapping window inserts nothing twice.
    let c2 = WindowCommit { tenant: "acme", job: "cursor", from: 50, to: 60, fetched: 2 };
    assert_eq!(j.commit_window(&c2, [rec(2, "{\"id\":2}"), rec(3, "{\"id\":3}")]).unwrap(), 1);
    assert_eq!(j.ids("acme").unwrap(), vec![1, 2, 3]);
    assert_eq!(j.progress("acme", "cursor").unwrap().unwrap().position, 60);
    // A commit that does not start where the job is refuses and changes nothing.
    let stale = WindowCommit { tenant: "acme", job: "cursor", from: 50, to: 70, fetched: 1 };
    assert!(matches!(j.commit_window(&stale, [rec(4, "{}")]), Err(JournalError::ProgressConflict { .. })));
    assert_eq!(j.ids("acme").unwrap(), vec![1, 2, 3]);
}

/// PostgreSQL copies the records of a window past the stored position and inserts the
/// overlap with `ON CONFLICT`, falling back to the latter when the copy meets a record it
/// holds; every way must store each id once, numbered in the window's record order.
fn a_window_stores_each_new_record_once_in_record_order_whichever_way_it_goes_in(kind: Kind) {
    let j = fresh(kind);
    j.start_progress("acme", "cursor", 0, None, "").unwrap();
    let raw = |id: i64| format!("{{\"id\":{id}}}");
    let raws: Vec<String> = (0..=9).map(raw).collect();
    let at = |id: usize, created_at| Record { created_at, ..rec(id as i64, &raws[id]) };
    let commit = |from, to, recs: Vec<Record<'_>>| {
        let fetched = recs.len() as u64;
        j.commit_window(&WindowCommit { tenant: "acme", job: "cursor", from, to, fetched }, recs).unwrap()
    };
    assert_eq!(commit(0, 200, vec![at(1, 101), at(2, 102), at(3, 103)]), 3);
    // Held and new records past the position, an overlap, and an id twice in one window.
    assert_eq!(commit(200, 300, vec![at(1, 101), at(3, 203), at(4, 204), at(4, 204), at(5, 205)]), 2);
    // Only an overlap, all new.
    assert_eq!(commit(300, 400, vec![at(7, 250), at(6, 260)]), 2);
    // Only new records, none held.
    assert_eq!(commit(400, 500, vec![at(9, 450), at(8, 460)]), 2);
    let read = j.read_after(0, 100, usize::MAX).unwrap();
    let ids: Vec<i64> = read.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 7, 6, 9, 8]);
    let seqs: Vec<i64> = read.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(j.count_events(Some("acme")).unwrap(), 9);
}

/// The quick look appends records past the cursor before the settled window that covers
/// them: they are stored once, move no position, and the window later finds them held,
/// storing only what the quick look missed; the chain over both verifies.
fn records_appended_ahead_of_their_window_are_stored_once_and_the_window_skips_them(kind: Kind) {
    let j = fresh(kind);
    j.start_progress("acme", "cursor", 0, None, "").unwrap();
    let raws: Vec<String> = (0..=9).map(|id| format!("{{\"id\":{id}}}")).collect();
    let at = |id: usize, created_at| Record { created_at, ..rec(id as i64, &raws[id]) };
    let c = WindowCommit { tenant: "acme", job: "cursor", from: 0, to: 100, fetched: 2 };
    assert_eq!(j.commit_window(&c, [at(1, 10), at(2, 20)]).unwrap(), 2);
    // Newest first as a page comes, one held already (an old record on the page).
    assert_eq!(j.append_events("acme", [at(5, 150), at(4, 140), at(2, 20)]).unwrap(), 2);
    assert_eq!(j.append_events("acme", [at(5, 150), at(4, 140)]).unwrap(), 0, "a second look stores nothing");
    let p = j.progress("acme", "cursor").unwrap().unwrap();
    assert_eq!(p.position, 100, "the cursor stays where the settled read left it");
    // The settled window over the same time stores only what the quick look missed.
    let c = WindowCommit { tenant: "acme", job: "cursor", from: 100, to: 200, fetched: 4 };
    assert_eq!(j.commit_window(&c, [at(3, 130), at(4, 140), at(5, 150), at(6, 160)]).unwrap(), 2);
    // An id held under another time (as if the API re-dated it) is still stored once.
    let c = WindowCommit { tenant: "acme", job: "cursor", from: 200, to: 500, fetched: 2 };
    assert_eq!(j.commit_window(&c, [at(6, 420), at(7, 430)]).unwrap(), 1);
    let read = j.read_after(0, 100, usize::MAX).unwrap();
    assert_eq!(read.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2, 5, 4, 3, 6, 7]);
    let seqs: Vec<i64> = read.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let report = verified(&j);
    assert_eq!((report.verified, report.problems.clone()), (7, vec![]), "{report:?}");
}

/// Five events of tenant `acme` in two windows (one with a record held already), and
/// two of `globex`.
fn chained(kind: Kind) -> super::testing::Fresh {
    let j = fresh(kind);
    let raws: Vec<String> = (0..=9).map(|i| format!("{{\"id\":{i},\"operation_name\":\"Login\"}}")).collect();
    for t in ["acme", "globex"] {
        j.start_progress(t, "cursor", 0, None, "").unwrap();
    }
    let commit = |t: &str, from, to, ids: &[usize]| {
        let recs = ids.iter().map(|i| Record { created_at: 100 + *i as i64, ..rec(*i as i64, &raws[*i]) });
        j.commit_window(&WindowCommit { tenant: t, job: "cursor", from, to, fetched: ids.len() as u64 }, recs).unwrap();
    };
    commit("acme", 0, 103, &[1, 2]);
    commit("globex", 0, 200, &[1, 2]);
    commit("acme", 103, 200, &[2, 3, 3, 4, 5]);
    j
}

fn verified(j: &Journal) -> chain::ChainReport {
    crate::journal::chain::verify_journal(j, &crate::signing::Keyring::default(), &|_| {}).unwrap()
}

fn an_untouched_chain_verifies_and_each_tampering_through_the_database_is_named(kind: Kind) {
    use chain::Problem::*;
    let j = chained(kind);
    let ok = verified(&j);
    assert_eq!((ok.verified, ok.tenants, ok.problems.clone()), (7, 2, vec![]), "{ok:?}");
    let heads = j.tenant_chains().unwrap();
    assert_eq!(heads.iter().map(|c| (c.tenant.as_str(), c.head.n)).collect::<Vec<_>>(), [("acme", 5), ("globex", 2)]);

    let acme = "(SELECT id FROM tenants WHERE name = 'acme')";
    let problems = |sql: &str| {
        let j = chained(kind);
        j.tamper(sql);
        verified(&j).problems
    };
    let t = || "acme".to_string();
    assert_eq!(
        problems(&format!("UPDATE events SET raw = replace(raw, 'Login', 'Logout') WHERE tenant = {acme} AND id = 2")),
        vec![RecordChanged { tenant: t(), id: 2, seq: 2 }]
    );
    assert_eq!(
        problems(&format!("DELETE FROM events WHERE tenant = {acme} AND id = 3")),
        vec![RecordsDeleted { tenant: t(), from_n: 3, to_n: 3, after_id: Some(2) }]
    );
    assert_eq!(
        problems(&format!("DELETE FROM events WHERE tenant = {acme} AND id = 5")),
        vec![RecordsDeleted { tenant: t(), from_n: 5, to_n: 5, after_id: Some(4) }],
        "the newest event, found missing by the tenant's head"
    );
    assert_eq!(
        problems(&format!(
            "INSERT INTO events (seq, tenant, id, created_at, operation_name, raw) VALUES (1000, {acme}, 99, 150, 'Login', '{{}}')"
        )),
        vec![RecordInserted { tenant: t(), id: 99, seq: 1000 }]
    );
    let moved = problems(&format!("UPDATE events SET seq = 1000 WHERE tenant = {acme} AND id = 3"));
    assert!(moved.contains(&RecordsReordered { tenant: t(), id: 3, seq: 1000, n: 3 }), "{moved:?}");
    // A record rewritten with its own hash recomputed still breaks the link after it.
    let forged = "{\"id\":2,\"operation_name\":\"Forged\"}";
    let first = j.chain_rows(0, 1).unwrap().remove(0);
    let l = first.link.unwrap();
    let rows = j.chain_rows(1, 1).unwrap();
    assert_eq!((rows[0].tenant.as_str(), rows[0].id, rows[0].seq), ("acme", 2, 2));
    let hash = chain::link(&l.hash, "acme", 2, 2, 2, forged);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    let blob = match kind {
        Kind::Sqlite => format!("X'{hex}'"),
        Kind::Postgres => format!("'\\x{hex}'::bytea"),
    };
    assert_eq!(
        problems(&format!("UPDATE events SET raw = '{forged}', chain = {blob} WHERE tenant = {acme} AND id = 2")),
        vec![ChainBroken { tenant: t(), id: 3, seq: 5, n: 3 }]
    );
}

fn a_chain_pruned_by_retention_still_verifies_and_a_copy_carries_it(kind: Kind) {
    let j = chained(kind);
    // Everything created before 103 (acme 1 and 2, globex 1 and 2) has gone, by retention.
    assert_eq!(j.prune(103, i64::MAX, None).unwrap(), 4);
    let report = verified(&j);
    assert_eq!((report.verified, report.problems.clone()), (3, vec![]), "{report:?}");
    let pruned: Vec<_> = j.tenant_chains().unwrap().iter().map(|c| (c.tenant.clone(), c.pruned_through)).collect();
    assert_eq!(pruned, [("acme".to_string(), 2), ("globex".to_string(), 2)]);
    // Deleting one more, not by retention, is still named.
    j.tamper("DELETE FROM events WHERE id = 3");
    assert_eq!(
        verified(&j).problems,
        vec![chain::Problem::RecordsDeleted { tenant: "acme".into(), from_n: 3, to_n: 3, after_id: None }]
    );
    // A copy into either database keeps the chain, and goes on extending it.
    for to_kind in [Kind::Sqlite, Kind::Postgres] {
        let j = chained(kind);
        let to = fresh(to_kind);
        dump::copy(&j, &to, &|_| {}).unwrap();
        assert_eq!(verified(&to).problems, vec![]);
        let raw = "{\"id\":8}";
        let w = WindowCommit { tenant: "acme", job: "cursor", from: 200, to: 300, fetched: 1 };
        to.commit_window(&w, [Record { created_at: 250, ..rec(8, raw) }]).unwrap();
        let after = verified(&to);
        assert_eq!((after.verified, after.problems), (8, vec![]));
    }
}

/// A byte string as an SQL literal of the backend.
fn blob(kind: Kind, bytes: &[u8]) -> String {
    let hex = crate::signing::hex(bytes);
    match kind {
        Kind::Sqlite => format!("X'{hex}'"),
        Kind::Postgres => format!("'\\x{hex}'::bytea"),
    }
}

/// SQL that rewrites acme's event `id` to `raw` and recomputes every hash after it and
/// the tenant's head, as someone with write access to the database (but not the key) can.
fn recompute_chain_sql(j: &Journal, kind: Kind, id: i64, raw: &str) -> String {
    let rows: Vec<chain::ChainRow> = j.chain_rows(0, 100).unwrap().into_iter().filter(|r| r.tenant == "acme").collect();
    let mut sql = String::new();
    let mut head = chain::Head::default();
    for r in rows {
        let body = if r.id == id { raw.to_string() } else { r.raw.clone() };
        let l = head.next("acme", r.id, r.seq, &body);
        sql += &format!(
            "UPDATE events SET raw = '{body}', chain_prev = {}, chain = {} WHERE seq = {};\n",
            blob(kind, &l.prev),
            blob(kind, &l.hash),
            r.seq
        );
    }
    sql + &format!("UPDATE tenants SET chain_head = {} WHERE name = 'acme';", blob(kind, &head.hash))
}

fn signed_checkpoints_name_a_forger_who_recomputes_the_chain_and_survive_retention_and_copy(kind: Kind) {
    use crate::journal::checkpoint::sign_all;
    use crate::signing::{Keyring, SigningKey};
    use chain::Problem::*;
    let key = SigningKey::ephemeral();
    let keys = Keyring::new(vec![*key.public()]);
    let verify = |j: &Journal| crate::journal::chain::verify_journal(j, &keys, &|_| {}).unwrap();
    // Two checkpoints per tenant: acme's first at chain position 5 (seq 7), its second at 6 (seq 8).
    let signed = || {
        let j = chained(kind);
        assert_eq!(sign_all(&j, &key, "collect").unwrap(), 2);
        let raw = "{\"id\":6,\"operation_name\":\"Login\"}";
        let w = WindowCommit { tenant: "acme", job: "cursor", from: 200, to: 300, fetched: 1 };
        j.commit_window(&w, [Record { created_at: 250, ..rec(6, raw) }]).unwrap();
        sign_all(&j, &key, "scheduled").unwrap();
        j
    };
    let j = signed();
    let ok = verify(&j);
    assert_eq!((ok.verified, ok.checkpoints, ok.problems.clone()), (8, 4, vec![]), "{ok:?}");
    let newest: Vec<_> = ok.newest_checkpoints.iter().map(|c| (c.tenant.as_str(), c.number, c.chain_n)).collect();
    assert_eq!(newest, [("acme", 2, 6), ("globex", 2, 2)]);

    let t = || "acme".to_string();
    let acme = "(SELECT id FROM tenants WHERE name = 'acme')";
    let problems = |sql: &dyn Fn(&Journal) -> String| {
        let j = signed();
        j.tamper(&sql(&j));
        verify(&j).problems
    };
    // The chain alone cannot see a rewrite with every hash recomputed; the signed heads can.
    let forged = "{\"id\":2,\"operation_name\":\"Forged\"}";
    assert_eq!(
        problems(&|j| recompute_chain_sql(j, kind, 2, forged)),
        vec![
            CheckpointMismatch { tenant: t(), number: 1, n: 5, seq: 7 },
            CheckpointMismatch { tenant: t(), number: 2, n: 6, seq: 8 }
        ]
    );
    // The newest event deleted and the head moved back to match.
    let truncate = |j: &Journal| {
        let five = j.chain_rows(6, 1).unwrap().remove(0).link.unwrap();
        format!(
            "DELETE FROM events WHERE seq = 8; UPDATE tenants SET chain_n = 5, chain_head = {} WHERE name = 'acme';",
            blob(kind, &five.hash)
        )
    };
    assert_eq!(problems(&truncate), vec![CheckpointHeadMissing { tenant: t(), number: 2, n: 6, seq: 8 }]);
    assert_eq!(
        problems(&|_| format!("DELETE FROM checkpoints WHERE tenant = {acme} AND number = 1")),
        vec![CheckpointMissing { tenant: t(), from: 1, to: 1 }]
    );
    let edited = problems(&|_| {
        format!(
            "UPDATE checkpoints SET body = replace(body, '\"events\":5', '\"events\":4') WHERE tenant = {acme} AND number = 1"
        )
    });
    assert!(
        matches!(&edited[..], [SignatureInvalid { tenant, number: 1, why }] if tenant == "acme" && why.contains("does not match")),
        "{edited:?}"
    );
    // Old events deleted and retention's mark raised by hand to excuse it: the signed mark says otherwise.
    assert_eq!(
        problems(&|_| format!(
            "DELETE FROM events WHERE tenant = {acme} AND id IN (1, 2); UPDATE tenants SET chain_pruned_n = 2 WHERE name = 'acme';"
        )),
        vec![RecordsDeleted { tenant: t(), from_n: 1, to_n: 2, after_id: None }]
    );
    // Checked with a key that did not sign them, nothing passes.
    let stranger = Keyring::new(vec![*SigningKey::ephemeral().public()]);
    let p = crate::journal::chain::verify_journal(&j, &stranger, &|_| {}).unwrap().problems;
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p.iter().all(|p| matches!(p, SignatureInvalid { why, .. } if why.contains("not among"))), "{p:?}");

    // Retention signs its mark before it deletes: the pruned journal verifies, and so does a copy.
    assert_eq!(j.prune(103, i64::MAX, Some(&key)).unwrap(), 4);
    let pruned = verify(&j);
    assert_eq!((pruned.checkpoints, pruned.problems.clone()), (6, vec![]), "{pruned:?}");
    let last = j.latest_checkpoints().unwrap();
    assert!(last.iter().all(|c| c.parse().unwrap().reason == "retention" && c.parse().unwrap().pruned_through == 2));
    for to_kind in [Kind::Sqlite, Kind::Postgres] {
        let to = fresh(to_kind);
        dump::copy(&j, &to, &|_| {}).unwrap();
        let copied = verify(&to);
        assert_eq!((copied.checkpoints, copied.problems), (6, vec![]));
        // The copy goes on signing after the copied checkpoints.
        sign_all(&to, &key, "scheduled").unwrap();
        assert_eq!(verify(&to).problems, vec![]);
    }
}

fn consumers_read_in_order_and_commit_honestly(kind: Kind) {
    let j = fresh(kind);
    j.start_progress("t", "cursor", 0, None, "").unwrap();
    let raws: Vec<String> = (1..=10).map(|i| format!("{{\"id\":{i}}}")).collect();
    let c = WindowCommit { tenant: "t", job: "cursor", from: 0, to: 1, fetched: 10 };
    j.commit_window(&c, raws.iter().enumerate().map(|(i, r)| rec(i as i64 + 1, r))).unwrap();
    let off = j.consumer("file:a", 0).unwrap();
    assert_eq!(off.position, 0);
    let b = j.read_after(0, 4, usize::MAX).unwrap();
    assert_eq!(b.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(b.iter().next().unwrap().raw, "{\"id\":1}");
    let small = j.read_after(0, 100, 10).unwrap();
    assert_eq!(small.len(), 2, "stops once max_bytes is reached");
    j.commit_offset("file:a", 0, b.last_seq().unwrap(), Some("{}")).unwrap();
    assert!(matches!(j.commit_offset("file:a", 0, 9, None), Err(JournalError::OffsetConflict { .. })));
    assert_eq!(j.consumer("file:a", 0).unwrap().position, 4);
}

fn prune_removes_only_old_events_every_consumer_has_passed(kind: Kind) {
    let j = fresh(kind);
    fill(&j, 100);
    // Old enough: created before 1_050 (ids 1..=50); passed by all consumers: seq <= 30.
    assert_eq!(j.prune(1_050, 30, None).unwrap(), 30);
    let ids = j.ids("t").unwrap();
    assert_eq!(ids.first(), Some(&31));
    assert_eq!(ids.len(), 70);
    // Nothing a consumer still needs goes, whatever its age.
    assert_eq!(j.prune(i64::MAX, 30, None).unwrap(), 0);
}

fn alerts_commit_with_the_offset_link_their_events_and_are_never_doubled(kind: Kind) {
    let j = fresh(kind);
    three_events(&j);
    let alert = NewAlert {
        id: "r:3".into(),
        rule_id: "r".into(),
        group_key: "[]".into(),
        tenant: "t".into(),
        event_time: 102,
        trigger_seq: 3,
        event_ids: vec![1, 2, 99],
    };
    let body = |a: &NewAlert, ev: &[EventRow]| format!("{} {:?}", a.id, ev.iter().map(|e| e.id).collect::<Vec<_>>());
    let stored = j.commit_detection("detector", 0, 3, "{}", std::slice::from_ref(&alert), body).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body, "r:3 [1, 2, 3]");
    assert_eq!(j.alert_event_seqs(stored[0].seq).unwrap(), vec![1, 2, 3]);
    assert_eq!(
        j.consumer("detector", 0).unwrap(),
        crate::journal::ConsumerOffset { position: 3, state: Some("{}".into()) }
    );
    // A stale commit changes nothing; a replayed alert is not stored twice.
    assert!(matches!(j.commit_detection("detector", 0, 3, "{}", &[], body), Err(JournalError::OffsetConflict { .. })));
    assert!(j.commit_detection("detector", 3, 3, "{}", &[alert], body).unwrap().is_empty());
    assert_eq!(j.alerts_after(0, 10).unwrap().len(), 1);
    assert_eq!(j.first_seq_since(101).unwrap(), Some(2));
    assert_eq!(j.first_seq_since(1000).unwrap(), None);
}

/// Tenant `t` with events 1..=40, and 30 alerts: rules `r0`/`r1` (levels low/high), three
/// groups each, tenant `t` or `u`, event times two by two alike (so pages meet ties), each
/// linking its trigger event and the one before it.
fn with_alerts(kind: Kind) -> super::testing::Fresh {
    let j = fresh(kind);
    fill(&j, 40);
    let alerts: Vec<NewAlert> = (1..=30)
        .map(|i: i64| NewAlert {
            id: format!("r{}:{i}", i % 2),
            rule_id: format!("r{}", i % 2),
            group_key: format!("{{\"user_id\":\"{}\"}}", i % 3),
            tenant: if i % 5 == 0 { "u".into() } else { "t".into() },
            event_time: 5_000 + i / 2,
            trigger_seq: i,
            event_ids: vec![(i - 1).max(1)],
        })
        .collect();
    let body = |a: &NewAlert, _: &[EventRow]| {
        let level = if a.rule_id == "r1" { "High" } else { "low" };
        format!("{{\"rule\":{{\"id\":\"{}\",\"level\":\"{level}\"}},\"summary\":\"s\"}}", a.rule_id)
    };
    assert_eq!(j.commit_detection("detector", 0, 40, "{}", &alerts, body).unwrap().len(), 30);
    j
}

/// Every alert of `q`, page by page of `size`, following the keyset.
fn all_pages(j: &Journal, q: &AlertQuery, size: usize) -> Vec<TriagedAlert> {
    let mut out: Vec<TriagedAlert> = Vec::new();
    let mut q = q.clone();
    loop {
        let page = j.find_alerts(&q, size).unwrap();
        assert!(page.len() <= size);
        out.extend(page.iter().cloned());
        match page.last() {
            Some(last) if page.len() == size => q.before = Some((last.alert.event_time, last.alert.seq)),
            _ => return out,
        }
    }
}

fn alerts_are_read_with_filters_keyset_pages_and_groups(kind: Kind) {
    let j = with_alerts(kind);
    let every = all_pages(&j, &AlertQuery::default(), 7);
    assert_eq!(every.len(), 30, "each alert once across pages that cut through ties");
    let keys: Vec<(i64, i64)> = every.iter().map(|a| (a.alert.event_time, a.alert.seq)).collect();
    assert!(keys.windows(2).all(|w| w[0] > w[1]), "newest event first, then seq: {keys:?}");
    let first = &every[0];
    assert_eq!((first.alert.id.as_str(), first.level.as_str()), ("r0:30", "low"));
    assert_eq!((first.status, first.assignee.as_deref(), first.triaged_at), (AlertStatus::Open, None, None));
    assert_eq!(first.linked_events, 1, "its trigger: the event before it is tenant t's, and the alert tenant u's");
    assert!(every.iter().all(|a| a.linked_events == j.alert_event_seqs(a.alert.seq).unwrap().len() as i64));
    assert_eq!(j.find_alerts(&AlertQuery::default(), 1000).unwrap(), every, "one page or many, the same alerts");

    let count = |q: AlertQuery| all_pages(&j, &q, 4).len() as i64;
    let high = AlertQuery { levels: vec!["high".into()], ..Default::default() };
    assert_eq!(count(high.clone()), 15, "levels are stored in lower case");
    assert!(all_pages(&j, &high, 4).iter().all(|a| a.alert.rule_id == "r1"));
    assert_eq!(count(AlertQuery { rules: vec!["r0".into(), "nope".into()], ..Default::default() }), 15);
    assert_eq!(count(AlertQuery { tenants: vec!["u".into()], ..Default::default() }), 6);
    // Event times 5_000 + i / 2: [5_005, 5_010) holds i = 10..=19.
    let span = AlertQuery { from: Some(5_005), to: Some(5_010), ..Default::default() };
    assert_eq!(count(span.clone()), 10);
    let both = AlertQuery { levels: vec!["high".into()], tenants: vec!["t".into()], ..span };
    let want: Vec<i64> = (10..=19).filter(|i| i % 2 == 1 && i % 5 != 0).rev().collect();
    assert_eq!(all_pages(&j, &both, 2).iter().map(|a| a.alert.seq).collect::<Vec<_>>(), want);
    assert_eq!(j.count_alerts(&both).unwrap(), AlertCounts { alerts: 4, groups: 2 });
    let paged = AlertQuery { before: Some((5_008, 17)), ..both };
    assert_eq!(j.count_alerts(&paged).unwrap(), AlertCounts { alerts: 4, groups: 2 }, "a count ignores the page");

    // Repeats of one rule and group in a tenant: 2 rules x 3 groups x 2 tenants, all present.
    assert_eq!(j.count_alerts(&AlertQuery::default()).unwrap(), AlertCounts { alerts: 30, groups: 12 });
    let mut groups = Vec::new();
    let mut q = AlertQuery::default();
    loop {
        let page = j.alert_groups(&q, 5).unwrap();
        groups.extend(page.iter().cloned());
        match page.last() {
            Some(g) if page.len() == 5 => q.before = Some((g.newest.alert.event_time, g.newest.alert.seq)),
            _ => break,
        }
    }
    assert_eq!(groups.len(), 12);
    assert_eq!(groups.iter().map(|g| g.count).sum::<i64>(), 30);
    for g in &groups {
        let members: Vec<&TriagedAlert> = every
            .iter()
            .filter(|a| {
                (&a.alert.tenant, &a.alert.rule_id, &a.group_key)
                    == (&g.newest.alert.tenant, &g.newest.alert.rule_id, &g.newest.group_key)
            })
            .collect();
        assert_eq!(g.count, members.len() as i64);
        assert_eq!(g.open, g.count);
        assert_eq!(&g.newest, members[0], "the group's newest alert");
        assert_eq!(g.first_event_time, members.last().unwrap().alert.event_time);
        let only = AlertQuery {
            group_key: Some(g.newest.group_key.clone()),
            rules: vec![g.newest.alert.rule_id.clone()],
            tenants: vec![g.newest.alert.tenant.clone()],
            ..Default::default()
        };
        assert_eq!(j.count_alerts(&only).unwrap(), AlertCounts { alerts: g.count, groups: 1 });
    }
    assert!(groups.windows(2).all(|w| (w[0].newest.alert.event_time, w[0].newest.alert.seq)
        > (w[1].newest.alert.event_time, w[1].newest.alert.seq)));

    // The events of an alert, exactly: a search for them finds its links and nothing else.
    let a = j.alert_by_id("r1:7").unwrap().expect("stored");
    assert_eq!(j.alert_event_seqs(a.alert.seq).unwrap(), vec![6, 7]);
    let found = j.search(&EventQuery { alert: Some("r1:7".into()), ..Default::default() }, 100).unwrap();
    assert_eq!(found.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![7, 6]);
    assert_eq!(j.alert_by_id("r9:1").unwrap(), None);
}

fn triage_changes_an_alert_and_keeps_every_change_in_its_history(kind: Kind) {
    let j = with_alerts(kind);
    let change = |status, assignee, note, by, at| TriageChange { status, assignee, note, by, at };
    let ack = change(Some(AlertStatus::Acknowledged), Some(Some("ann")), "looking <b>now</b>", "ann", 100);
    let t = j.triage_alert("r1:7", &ack).unwrap().expect("the alert exists");
    assert_eq!((t.alert.status, t.alert.assignee.as_deref()), (AlertStatus::Acknowledged, Some("ann")));
    assert_eq!((t.alert.triaged_at, t.alert.triaged_by.as_deref()), (Some(100), Some("ann")));
    let first = t.change.expect("a history entry");
    assert_eq!((first.from_status, first.to_status), (AlertStatus::Open, AlertStatus::Acknowledged));
    assert_eq!((first.from_assignee.as_deref(), first.to_assignee.as_deref()), (None, Some("ann")));
    // Asking again for the same state, with nothing to say, writes nothing.
    let again = change(Some(AlertStatus::Acknowledged), Some(Some("ann")), "", "bob", 150);
    let same = j.triage_alert("r1:7", &again).unwrap().unwrap();
    assert_eq!((same.change, same.alert.triaged_by.as_deref()), (None, Some("ann")));
    let close = change(Some(AlertStatus::Closed), Some(None), "benign: a planned clean-up", "bob", 200);
    let closed = j.triage_alert("r1:7", &close).unwrap().unwrap();
    assert_eq!((closed.alert.status, closed.alert.assignee), (AlertStatus::Closed, None));
    let history = j.alert_history(closed.alert.alert.seq).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0], first);
    assert_eq!(Some(&history[1]), closed.change.as_ref());
    assert!(history[1].seq > history[0].seq);
    assert_eq!((history[1].by.as_str(), history[1].at), ("bob", 200));
    assert_eq!((history[1].from_status, history[1].to_status), (AlertStatus::Acknowledged, AlertStatus::Closed));
    assert_eq!((history[1].from_assignee.as_deref(), history[1].to_assignee.as_deref()), (Some("ann"), None));
    assert_eq!(history[0].note, "looking <b>now</b>", "kept as written; pages escape it");
    assert!(j.triage_alert("nope:1", &close).unwrap().is_none());
    assert!(j.alert_history(j.alert_by_id("r0:8").unwrap().unwrap().alert.seq).unwrap().is_empty());

    // The status filter sees it; the other alerts stay open.
    let open = AlertQuery { statuses: vec![AlertStatus::Open], ..Default::default() };
    assert_eq!(j.count_alerts(&open).unwrap().alerts, 29);
    let closed_q = AlertQuery { statuses: vec![AlertStatus::Closed, AlertStatus::Acknowledged], ..Default::default() };
    assert_eq!(j.find_alerts(&closed_q, 10).unwrap().iter().map(|a| a.alert.id.as_str()).collect::<Vec<_>>(), ["r1:7"]);
    let group = j.alert_groups(&AlertQuery::default(), 100).unwrap();
    let mine = group
        .iter()
        .find(|g| {
            g.newest.group_key == closed.alert.group_key
                && g.newest.alert.rule_id == "r1"
                && g.newest.alert.tenant == "t"
        })
        .unwrap();
    assert_eq!(mine.open, mine.count - 1);
    // A group's newest alert is its newest that matches, not its newest of all (r1:19 here).
    let closed_groups =
        j.alert_groups(&AlertQuery { statuses: vec![AlertStatus::Closed], ..Default::default() }, 10).unwrap();
    assert_eq!(closed_groups.len(), 1);
    assert_eq!(
        (closed_groups[0].newest.alert.id.as_str(), closed_groups[0].count, closed_groups[0].open),
        ("r1:7", 1, 0)
    );

    // The history is append-only, whatever reaches the database.
    let sql = |s: &str| s.replace("{seq}", &history[0].seq.to_string());
    assert!(j.try_tamper(&sql("UPDATE alert_history SET note = 'rewritten' WHERE seq = {seq}")).is_err());
    assert!(j.try_tamper(&sql("DELETE FROM alert_history WHERE seq = {seq}")).is_err());
    assert!(j.try_tamper("UPDATE alerts SET status = 'resolved' WHERE id = 'r1:7'").is_err(), "only known statuses");
    assert_eq!(j.alert_history(closed.alert.alert.seq).unwrap(), history);

    // Retention deletes the events, never the alert, its state or its history; the alert
    // still counts its links, and a search for its events finds what is left (none).
    assert_eq!(j.prune(i64::MAX, 40, None).unwrap(), 40);
    let kept = j.alert_by_id("r1:7").unwrap().unwrap();
    assert_eq!((kept.status, kept.linked_events), (AlertStatus::Closed, 2));
    assert_eq!(j.alert_history(kept.alert.seq).unwrap(), history);
    assert!(j.search(&EventQuery { alert: Some("r1:7".into()), ..Default::default() }, 100).unwrap().is_empty());
    assert_eq!(j.count_alerts(&AlertQuery::default()).unwrap().alerts, 30);
}

crate::on_every_backend!(
    window_commit_is_atomic_idempotent_and_checks_its_start,
    a_window_stores_each_new_record_once_in_record_order_whichever_way_it_goes_in,
    records_appended_ahead_of_their_window_are_stored_once_and_the_window_skips_them,
    an_untouched_chain_verifies_and_each_tampering_through_the_database_is_named,
    a_chain_pruned_by_retention_still_verifies_and_a_copy_carries_it,
    signed_checkpoints_name_a_forger_who_recomputes_the_chain_and_survive_retention_and_copy,
    consumers_read_in_order_and_commit_honestly,
    prune_removes_only_old_events_every_consumer_has_passed,
    alerts_commit_with_the_offset_link_their_events_and_are_never_doubled,
    alerts_are_read_with_filters_keyset_pages_and_groups,
    triage_changes_an_alert_and_keeps_every_change_in_its_history,
);

/// Waits (polling, with a deadline) until `f` returns something.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// A paused holder (its lease expired, another instance took the job over) resumes and
/// commits: every kind of commit is refused, and nothing it tried is in the journal.
#[test]
fn a_stale_holders_commits_are_refused_after_a_take_over() {
    let j = fresh(Kind::Postgres);
    assert!(j.shared());
    let job = "tenant:t";
    let a = j.take_lease(job, "a", 60_000).unwrap().expect("a free job is taken");
    assert_eq!(a.token, 1);
    assert_eq!(j.take_lease(job, "b", 60_000).unwrap(), None, "held and not expired");
    // a's lease runs out (renewed with a TTL of 1 ms); b takes over with a higher token.
    assert_eq!(j.renew_leases(std::slice::from_ref(&a), 1).unwrap(), vec![a.clone()]);
    let b = eventually("the lease to expire", || j.take_lease(job, "b", 60_000).unwrap());
    assert_eq!(b.token, 2);
    assert!(j.renew_leases(std::slice::from_ref(&a), 60_000).unwrap().is_empty(), "a cannot renew what it lost");

    let stale = j.with_fence(a.clone());
    let fresh_holder = j.with_fence(b.clone());
    j.start_progress("t", "cursor", 0, None, "").unwrap();
    let c = WindowCommit { tenant: "t", job: "cursor", from: 0, to: 10, fetched: 1 };
    let refused = stale.commit_window(&c, [rec(1, "{\"id\":1}")]).unwrap_err();
    assert!(matches!(refused, JournalError::Fenced { ref job, token: 1, .. } if job == "tenant:t"), "{refused}");
    assert!(j.ids("t").unwrap().is_empty(), "nothing of the refused window is stored");
    assert_eq!(j.progress("t", "cursor").unwrap().unwrap().position, 0);
    assert_eq!(fresh_holder.commit_window(&c, [rec(1, "{\"id\":1}")]).unwrap(), 1);
    assert!(matches!(stale.append_events("t", [rec(2, "{\"id\":2}")]), Err(JournalError::Fenced { .. })));
    assert_eq!(j.ids("t").unwrap(), vec![1], "nothing of the refused quick look is stored");

    j.consumer("s3:lake", 0).unwrap();
    assert!(matches!(stale.commit_offset("s3:lake", 0, 1, None), Err(JournalError::Fenced { .. })));
    assert_eq!(j.consumer("s3:lake", 0).unwrap().position, 0);
    assert!(matches!(
        stale.commit_detection("detector", 0, 1, "{}", &[], |_, _| String::new()),
        Err(JournalError::Fenced { .. })
    ));
    assert!(matches!(stale.index_batch(10), Err(JournalError::Fenced { .. })));
    assert_eq!(j.index_state().unwrap().position, 0);
    fresh_holder.commit_offset("s3:lake", 0, 1, None).unwrap();

    // Released, the job is free at once, and the next holder's token is higher still.
    j.release_lease(&b).unwrap();
    assert_eq!(j.take_lease(job, "c", 60_000).unwrap().map(|f| f.token), Some(3));
    let view = j.lease_round("c", 60_000).unwrap();
    assert_eq!(view.leases.len(), 1);
    assert_eq!((view.leases[0].holder.as_str(), view.leases[0].token), ("c", 3));
    assert!(view.leases[0].expires_at_ms > view.now_ms);
}

/// Two instances racing for the same free jobs: each job goes to exactly one of them.
#[test]
fn racing_instances_never_both_take_a_job() {
    let j = fresh(Kind::Postgres);
    let jobs: Vec<String> = (0..40).map(|i| format!("sink:s{i}")).collect();
    let takes = |holder: &'static str| {
        let (j, jobs) = (j.journal.clone(), jobs.clone());
        std::thread::spawn(move || {
            jobs.iter().filter_map(|job| j.take_lease(job, holder, 60_000).unwrap()).map(|f| f.job).collect::<Vec<_>>()
        })
    };
    let (a, b) = (takes("a"), takes("b"));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!(a.len() + b.len(), jobs.len(), "every job taken once: a {a:?}, b {b:?}");
    assert!(a.iter().all(|x| !b.contains(x)));
}

#[test]
fn sqlite_is_one_process_and_needs_no_leases() {
    let j = fresh(Kind::Sqlite);
    assert!(!j.shared());
    // A fence on SQLite changes nothing: the directory lock already keeps other writers out.
    let f = j.with_fence(Fence { job: "tenant:t".into(), holder: "x".into(), token: 7 });
    f.start_progress("t", "cursor", 0, None, "").unwrap();
    let c = WindowCommit { tenant: "t", job: "cursor", from: 0, to: 10, fetched: 1 };
    assert_eq!(f.commit_window(&c, [rec(1, "{}")]).unwrap(), 1);
}

/// Everything a journal holds: events (the newest two pruned, so the high-water mark is
/// above every row), progress and ledger, an offset with its sink state, an alert with its
/// events, a quarantined record, a reconciliation pass and find.
fn populated(kind: Kind) -> super::testing::Fresh {
    let j = fresh(kind);
    fill(&j, 20);
    j.start_progress("u", "backfill:1", 5, Some(50), "op=Login").unwrap();
    let c = WindowCommit { tenant: "u", job: "backfill:1", from: 5, to: 9, fetched: 2 };
    let q = [Quarantined { raw: "{\"no\":\"id\"}", reason: "no id" }];
    j.commit_window_quarantining(&c, [rec(1, "{\"id\":1,\"u\":true}")], q).unwrap();
    j.consumer("s3:lake", 0).unwrap();
    j.commit_offset("s3:lake", 0, 12, Some("{\"v\":1,\"offset\":12}")).unwrap();
    let alert = NewAlert {
        id: "r:1".into(),
        rule_id: "r".into(),
        group_key: "[]".into(),
        tenant: "t".into(),
        event_time: 1_003,
        trigger_seq: 4,
        event_ids: vec![2, 3],
    };
    j.commit_detection("detector", 0, 21, "{\"engine\":1}", &[alert], |a, e| format!("{} {}", a.id, e.len())).unwrap();
    let ack = TriageChange {
        status: Some(AlertStatus::Acknowledged),
        assignee: Some(Some("ann")),
        note: "on it",
        by: "ann",
        at: 30,
    };
    j.triage_alert("r:1", &ack).unwrap().unwrap();
    j.triage_alert("r:1", &TriageChange { note: "still on it", at: 31, ..ack }).unwrap().unwrap();
    let pass = ReconcilePass {
        tenant: "t".into(),
        range_start: 1,
        range_end: 2,
        slices: 3,
        reread: 1,
        found: 1,
        started_at: 10,
        finished_at: 11,
    };
    j.record_reconcile_pass(&pass).unwrap();
    let find = ReconcileFind {
        tenant: "t".into(),
        slice_start: 1,
        slice_end: 2,
        api_count: Some(3),
        journal_count: 2,
        found: 1,
        oldest: 1,
        newest: 1,
        max_late_secs: 60,
        found_at: 12,
    };
    j.record_reconcile_find(&find).unwrap();
    j.add_posture_note(&note("t", "ip_rule", "203.0.113.0/24", "office VPN", 40)).unwrap();
    j.record_selftest(&selftest_run("run-1", 1_500, false)).unwrap();
    // Two saved searches, the newer deleted: its id must not be handed out again after a copy.
    assert!(matches!(j.save_search(&saved("Failed logins", "ann", 41), 10).unwrap(), SaveOutcome::Saved(_)));
    let SaveOutcome::Saved(gone) = j.save_search(&saved("gone", "ann", 42), 10).unwrap() else { panic!() };
    assert!(j.delete_saved_search(gone.id).unwrap());
    // The newest event (u's, seq 21, created long ago) goes; its number must never come back.
    assert_eq!(j.prune(500, 21, None).unwrap(), 1);
    assert_eq!((j.max_seq().unwrap(), j.count_events(None).unwrap()), (21, 20));
    j
}

fn note(tenant: &str, kind: &str, entry_id: &str, why: &str, noted_at: i64) -> PostureNote {
    PostureNote {
        seq: 0,
        tenant: tenant.into(),
        kind: kind.into(),
        entry_id: entry_id.into(),
        why: why.into(),
        requested_by: "ann@acme.example".into(),
        noted_by: "ops".into(),
        noted_at,
    }
}

/// Notes are numbered in the order written, a later one on the same entry stands beside
/// the earlier (nothing is replaced), and each tenant sees only its own; a reopened journal
/// still holds them and numbers the next after them.
fn posture_notes_are_kept_in_order_per_tenant_and_never_replaced(kind: Kind) {
    let j = fresh(kind);
    let a = j.add_posture_note(&note("acme", "ip_rule", "203.0.113.0/24", "office VPN", 10)).unwrap();
    let b = j.add_posture_note(&note("globex", "ip_rule", "203.0.113.0/24", "theirs", 11)).unwrap();
    let c = j.add_posture_note(&note("acme", "ip_rule", "203.0.113.0/24", "office VPN, new ISP", 12)).unwrap();
    assert!(a.seq < b.seq && b.seq < c.seq, "{a:?} {b:?} {c:?}");
    let acme = j.posture_notes("acme").unwrap();
    assert_eq!(acme, vec![a.clone(), c.clone()]);
    assert_eq!(acme[1].why, "office VPN, new ISP");
    assert_eq!(j.posture_notes("globex").unwrap(), vec![b]);
    assert!(j.posture_notes("initech").unwrap().is_empty());
    let j = j.reopen();
    let d = j.add_posture_note(&note("acme", "owner", "ann@acme.example", "founder", 13)).unwrap();
    assert!(d.seq > c.seq);
    assert_eq!(j.posture_notes("acme").unwrap().len(), 3);
}

crate::on_every_backend!(posture_notes_are_kept_in_order_per_tenant_and_never_replaced);

fn saved(name: &str, owner: &str, at: i64) -> SavedSearch {
    SavedSearch { id: 0, name: name.into(), query: format!("q={}", name.len()), owner: owner.into(), created_at: at }
}

fn stored(outcome: SaveOutcome) -> SavedSearch {
    match outcome {
        SaveOutcome::Saved(s) => s,
        other => panic!("not saved: {other:?}"),
    }
}

/// Saved searches: one per name whatever its case and spaces (the refusal names the search
/// that has it), listed by name, read and deleted by id, capped at `max`, and an id is
/// never handed out twice, after a delete or a reopen.
fn saved_searches_keep_one_per_name_list_by_name_and_never_reuse_an_id(kind: Kind) {
    let j = fresh(kind);
    assert!(j.saved_searches(10).unwrap().is_empty());
    let a = stored(j.save_search(&saved("Failed logins", "ann", 10), 10).unwrap());
    let b = stored(j.save_search(&saved("admin changes", "bob", 11), 10).unwrap());
    let c = stored(j.save_search(&saved("Zürich <script>", "ann", 12), 10).unwrap());
    assert!(a.id > 0 && a.id < b.id && b.id < c.id, "{a:?} {b:?} {c:?}");
    assert_eq!(c, SavedSearch { id: c.id, ..saved("Zürich <script>", "ann", 12) }, "every field as given");
    assert_eq!(j.save_search(&saved("  failed LOGINS ", "carol", 13), 10).unwrap(), SaveOutcome::NameTaken(a.clone()));
    assert_eq!(j.saved_searches(10).unwrap(), vec![b.clone(), a.clone(), c.clone()], "by name, case aside");
    assert_eq!(j.saved_searches(1).unwrap(), vec![b.clone()]);
    assert_eq!(j.saved_search(b.id).unwrap(), Some(b.clone()));
    assert_eq!(j.saved_search(c.id + 100).unwrap(), None);
    assert_eq!(j.save_search(&saved("one too many", "ann", 14), 3).unwrap(), SaveOutcome::Full);
    assert!(j.delete_saved_search(c.id).unwrap());
    assert!(!j.delete_saved_search(c.id).unwrap(), "gone already");
    assert_eq!(j.saved_search(c.id).unwrap(), None);
    let d = stored(j.save_search(&saved("Zürich <script>", "ann", 15), 3).unwrap());
    assert!(d.id > c.id, "a deleted search's id is not handed out again: {d:?}");
    let j = j.reopen();
    assert_eq!(j.saved_searches(10).unwrap(), vec![b, a, d.clone()]);
    assert!(stored(j.save_search(&saved("after reopen", "ann", 16), 10).unwrap()).id > d.id);
}

crate::on_every_backend!(saved_searches_keep_one_per_name_list_by_name_and_never_reuse_an_id);

/// Posture replays a tenant's history oldest first, a page at a time: every matching event
/// once, in `(created_at, seq)` order, whatever the page size; on PostgreSQL both from the
/// search keys and from the tail the indexer has not reached.
fn oldest_first_pages_read_every_matching_event_once_in_time_order(kind: Kind) {
    let j = fresh(kind);
    j.start_progress("acme", "cursor", 0, None, "").unwrap();
    let ops = ["Login", "IPAccessControlRuleCreation", "UserEdit"];
    let raws: Vec<String> = (0..40).map(|i| format!("{{\"id\":{i}}}")).collect();
    // Out of time order across two windows, several in one second.
    let mk = |i: usize| Record {
        id: i as i64,
        created_at: 1_000 + (i as i64 * 7) % 13,
        operation_name: ops[i % 3],
        user_id: None,
        user_email: None,
        request_ip: None,
        raw: &raws[i],
    };
    let c = WindowCommit { tenant: "acme", job: "cursor", from: 0, to: 10, fetched: 20 };
    j.commit_window(&c, (0..20).map(mk)).unwrap();
    crate::query::index::catch_up(&j).unwrap();
    let c = WindowCommit { tenant: "acme", job: "cursor", from: 10, to: 20, fetched: 20 };
    j.commit_window(&c, (20..40).map(mk)).unwrap();
    let wanted = vec![ops[1].to_string(), ops[2].to_string()];
    let mut expected: Vec<(i64, i64)> = j
        .search(&EventQuery { operations: wanted.clone(), ..EventQuery::default() }, 100)
        .unwrap()
        .iter()
        .map(|e| (e.created_at, e.seq))
        .collect();
    expected.sort_unstable();
    assert_eq!(expected.len(), 26);
    for page in [1, 4, 100] {
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let q = EventQuery {
                tenants: vec!["acme".into()],
                operations: wanted.clone(),
                to: Some(1_012),
                after,
                oldest_first: true,
                ..EventQuery::default()
            };
            let rows = j.search(&q, page).unwrap();
            got.extend(rows.iter().map(|e| (e.created_at, e.seq)));
            match rows.last() {
                Some(e) if rows.len() == page => after = Some((e.created_at, e.seq)),
                _ => break,
            }
        }
        let want: Vec<(i64, i64)> = expected.iter().copied().filter(|e| e.0 < 1_012).collect();
        assert_eq!(got, want, "pages of {page}");
    }
}

crate::on_every_backend!(oldest_first_pages_read_every_matching_event_once_in_time_order);

/// A self-test run as the daemon would record it.
fn selftest_run(id: &str, started_at: i64, passed: bool) -> SelftestRun {
    SelftestRun {
        run_id: id.into(),
        started_at,
        finished_at: started_at + 2,
        passed,
        rules_total: 18,
        rules_fired: if passed { 18 } else { 17 },
        outputs_total: 2,
        outputs_ok: 2,
        summary: format!("summary of {id}"),
        detail: format!("{{\"run\":\"{id}\"}}"),
    }
}

/// The self-test's record: each run stored once (a retried record stays one row), listed
/// newest first within `[from, to)` of its start, as the reports and the metrics read it.
fn selftest_runs_are_recorded_once_and_listed_newest_first_within_the_period(kind: Kind) {
    let j = fresh(kind);
    assert!(j.selftest_runs(i64::MIN, i64::MAX, 10).unwrap().is_empty());
    for (id, at, passed) in [("a", 100, true), ("b", 200, false), ("c", 300, true)] {
        j.record_selftest(&selftest_run(id, at, passed)).unwrap();
    }
    j.record_selftest(&SelftestRun { summary: "again".into(), ..selftest_run("b", 200, false) }).unwrap();
    let ids = |runs: Vec<SelftestRun>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    let all = j.selftest_runs(i64::MIN, i64::MAX, 10).unwrap();
    assert_eq!(all[1], selftest_run("b", 200, false), "stored as recorded first, every field");
    assert_eq!(ids(all), ["c", "b", "a"]);
    assert_eq!(ids(j.selftest_runs(100, 300, 10).unwrap()), ["b", "a"], "[from, to) of the start");
    assert_eq!(ids(j.selftest_runs(i64::MIN, i64::MAX, 1).unwrap()), ["c"], "the newest, for the metrics");
}

crate::on_every_backend!(selftest_runs_are_recorded_once_and_listed_newest_first_within_the_period);

fn rows(j: &Journal) -> Vec<dump::Row> {
    let mut out = Vec::new();
    j.dump(&mut |r| {
        out.push(r);
        Ok(())
    })
    .unwrap();
    out
}

/// A journal moved to another database (SQLite to PostgreSQL and back, and each to itself)
/// holds the same rows, the same numbers and the same offsets, and numbering goes on past
/// everything the source ever handed out.
fn a_copy_holds_every_row_and_number_of_the_original(kind: Kind) {
    let from = populated(kind);
    let want = rows(&from);
    assert!(want.iter().any(|r| matches!(r, dump::Row::Alert { .. })) && want.len() > 10, "{want:?}");
    assert!(want.iter().any(|r| matches!(r, dump::Row::PostureNote(n) if n.why == "office VPN")), "{want:?}");
    assert!(want.iter().any(|r| matches!(r, dump::Row::Selftest(_))), "{want:?}");
    assert!(want.iter().any(|r| matches!(r, dump::Row::SavedSearch(s) if s.name == "Failed logins")), "{want:?}");
    // The deleted search's id counts in the high-water mark, above every stored one.
    let searches_high_water = want
        .iter()
        .find_map(|r| match r {
            dump::Row::HighWater { saved_searches, .. } => Some(*saved_searches),
            _ => None,
        })
        .unwrap();
    let stored_ids = want.iter().filter_map(|r| match r {
        dump::Row::SavedSearch(s) => Some(s.id),
        _ => None,
    });
    assert!(stored_ids.max().unwrap() < searches_high_water);
    assert!(want.iter().any(|r| matches!(r, dump::Row::AlertTriage { .. })), "{want:?}");
    assert_eq!(want.iter().filter(|r| matches!(r, dump::Row::AlertChange(_))).count(), 2);
    for target in [Kind::Sqlite, Kind::Postgres] {
        let to = fresh(target);
        let copied = dump::copy(&from, &to, &|_| {}).unwrap();
        assert_eq!(copied.events, 20);
        assert_eq!(rows(&to), want, "{kind:?} to {target:?}");
        assert_eq!(to.max_seq().unwrap(), from.max_seq().unwrap());
        assert_eq!(to.consumer("s3:lake", 0).unwrap(), from.consumer("s3:lake", 0).unwrap());
        // The search index is rebuilt from the events.
        assert_eq!(to.index_state().unwrap().position, 0);
        crate::query::index::catch_up(&to).unwrap();
        // A new event gets a number above the pruned ones.
        let p = to.progress("t", "cursor").unwrap().unwrap().position;
        let c = WindowCommit { tenant: "t", job: "cursor", from: p, to: p + 1, fetched: 1 };
        to.commit_window(&c, [rec(500, "{\"id\":500}")]).unwrap();
        let next = to.read_after(20, 10, usize::MAX).unwrap();
        assert_eq!(next.iter().map(|e| (e.id, e.seq > 21)).collect::<Vec<_>>(), vec![(500, true)]);
        // A note written after the copy comes after the copied one.
        let copied_note = to.posture_notes("t").unwrap()[0].seq;
        assert!(to.add_posture_note(&note("t", "owner", "x", "y", 50)).unwrap().seq > copied_note);
        // A search saved after the copy takes an id above the deleted one's.
        assert!(stored(to.save_search(&saved("after the copy", "bob", 50), 10).unwrap()).id > searches_high_water);
        // The alert stands where it stood, its level read again from its body, and its
        // history goes on past the numbers it came with.
        let alert = to.alert_by_id("r:1").unwrap().unwrap();
        assert_eq!(alert, from.alert_by_id("r:1").unwrap().unwrap());
        let close = TriageChange { status: Some(AlertStatus::Closed), assignee: None, note: "", by: "bob", at: 40 };
        let entry = to.triage_alert("r:1", &close).unwrap().unwrap().change.unwrap();
        let history = to.alert_history(alert.alert.seq).unwrap();
        assert_eq!(history.len(), 3);
        assert!(history.windows(2).all(|w| w[0].seq < w[1].seq) && history[2] == entry, "{history:?}");
        // Never into a journal that holds anything.
        let again = dump::copy(&from, &to, &|_| {}).unwrap_err();
        assert!(matches!(again, JournalError::NotEmpty(_)), "{again}");
    }
}

crate::on_every_backend!(a_copy_holds_every_row_and_number_of_the_original);

/// Two writers on separate connections commit windows at the same time while a reader
/// follows `seq > offset` as a sink does: the reader must see every event. Without numbers
/// taken in commit order, a later number committing first makes the reader pass an earlier
/// one for good.
#[test]
fn a_reader_following_seq_never_passes_an_event_two_writers_commit_concurrently() {
    let j = fresh(Kind::Postgres);
    let at = j.at.clone();
    const WINDOWS: i64 = 150;
    const PER: i64 = 20;
    let writer = |tenant: &'static str| {
        let w = Journal::open_at(&at, Access::Write).unwrap();
        std::thread::spawn(move || {
            w.start_progress(tenant, "cursor", 0, None, "").unwrap();
            let raws: Vec<String> = (0..WINDOWS * PER).map(|i| format!("{{\"id\":{i}}}")).collect();
            for n in 0..WINDOWS {
                let c = WindowCommit { tenant, job: "cursor", from: n, to: n + 1, fetched: PER as u64 };
                let recs = (n * PER..(n + 1) * PER).map(|i| Record {
                    id: i,
                    created_at: 1_000 + i,
                    operation_name: "Login",
                    user_id: None,
                    user_email: None,
                    request_ip: None,
                    raw: &raws[i as usize],
                });
                w.commit_window(&c, recs).unwrap();
            }
        })
    };
    let (a, b) = (writer("a"), writer("b"));
    let total = (2 * WINDOWS * PER) as usize;
    let mut seen = std::collections::HashSet::new();
    let mut offset = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while seen.len() < total || !(a.is_finished() && b.is_finished()) {
        let batch = j.read_after(offset, 7, usize::MAX).unwrap();
        for e in batch.iter() {
            assert!(seen.insert((e.tenant.to_string(), e.id)), "read twice: {} {}", e.tenant, e.id);
        }
        offset = batch.last_seq().unwrap_or(offset);
        if a.is_finished() && b.is_finished() && batch.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the writers did not finish");
    }
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(seen.len(), total, "a reader following seq > offset passed {} events", total - seen.len());
}
