//! Search over a small journal whose every record is known, so each filter's
//! exact answer can be written down.

use serde_json::json;

use super::index::{catch_up, state};
use super::*;
use crate::journal::testing::{Fresh, Kind, fresh};
use crate::journal::{Journal, Record, WindowCommit};

const T0: i64 = 1_714_521_600; // 2024-05-01T00:00:00Z

struct Ev {
    tenant: &'static str,
    id: i64,
    at: i64,
    op: &'static str,
    user: (i64, &'static str, &'static str),
    ip: &'static str,
    inputs: serde_json::Value,
}

fn raw(e: &Ev) -> String {
    json!({
        "created_at": crate::timeutil::format_rfc3339(e.at),
        "id": e.id,
        "inputs": e.inputs,
        "operation_name": e.op,
        "request_ip": e.ip,
        "request_user_agent": "Mozilla/5.0",
        "tenant_id": 1,
        "updated_at": crate::timeutil::format_rfc3339(e.at),
        "user_email": e.user.1,
        "user_id": e.user.0,
        "user_name": e.user.2,
    })
    .to_string()
}

const ANN: (i64, &str, &str) = (11, "ann@acme.example", "Ann Lee");
const SEAN: (i64, &str, &str) = (12, "Sean.OBrien@acme.example", "Seán O'Brien");
const BOB: (i64, &str, &str) = (13, "bob@globex.example", "Bob Stone");

/// Ireland (86.40.0.0/13) and the US (24.0.0.0/12) in the emulator's plan; 10.x has no country.
fn history() -> Vec<Ev> {
    let e = |tenant, id, at, op, user, ip, inputs| Ev { tenant, id, at, op, user, ip, inputs };
    vec![
        e("acme", 1, T0, "Login", ANN, "86.40.0.10", json!(null)),
        e("acme", 2, T0 + 60, "CredentialSave", ANN, "86.40.0.10", json!({"name": "Okta prod"})),
        e("acme", 3, T0 + 120, "CredentialDestruction", SEAN, "24.1.2.3", json!({"credentialId": 3001})),
        e("acme", 4, T0 + 120, "CredentialDestruction", SEAN, "24.1.2.3", json!({"credentialId": 3002})),
        e("acme", 5, T0 + 86_400, "UsersInvitation", ANN, "86.41.9.9", json!({"emails": ["new@acme.example"]})),
        e("acme", 6, T0 + 2 * 86_400, "StoryNameChange", SEAN, "10.1.2.3", json!({"name": "Phishing triage"})),
        e("acme", 7, T0 + 3 * 86_400, "IPAccessControlRuleCreation", ANN, "86.40.0.10", json!({"cidr": "1.2.3.0/24"})),
        e("globex", 1, T0 + 30, "Login", BOB, "24.9.9.9", json!(null)),
        e("globex", 2, T0 + 86_400 + 5, "StoryNameChange", BOB, "24.9.9.9", json!({"name": "Daily IOC sweep"})),
    ]
}

fn commit(j: &Journal, tenant: &str, evs: &[&Ev]) {
    let raws: Vec<String> = evs.iter().map(|e| raw(e)).collect();
    let p = j.start_progress(tenant, "cursor", 0, None, "").unwrap();
    let pos = j.progress(tenant, "cursor").unwrap().map_or(p.position, |p| p.position);
    let recs = evs.iter().zip(&raws).map(|(e, r)| Record {
        id: e.id,
        created_at: e.at,
        operation_name: e.op,
        user_id: Some(e.user.0),
        user_email: Some(e.user.1),
        request_ip: Some(e.ip),
        raw: r,
    });
    j.commit_window(&WindowCommit { tenant, job: "cursor", from: pos, to: pos + 1, fetched: evs.len() as u64 }, recs)
        .unwrap();
}

fn journal(kind: Kind) -> Fresh {
    let j = fresh(kind);
    let h = history();
    for tenant in ["acme", "globex"] {
        commit(&j, tenant, &h.iter().filter(|e| e.tenant == tenant).collect::<Vec<_>>());
    }
    catch_up(&j).unwrap();
    j
}

/// `(tenant, id)` of every match, newest first.
fn find(j: &Journal, a: FilterArgs) -> Vec<(String, i64)> {
    let f = a.build(T0 + 10 * 86_400).unwrap();
    let page = search(j, &f, None, 100, &EmulatorCountries).unwrap();
    assert!(page.next_cursor.is_none());
    page.events.into_iter().map(|e| (e.tenant, e.id)).collect()
}

fn ids(tenant: &str, ids: &[i64]) -> Vec<(String, i64)> {
    ids.iter().map(|i| (tenant.to_string(), *i)).collect()
}

fn no_filter_returns_everything_newest_first_with_ties_by_seq(kind: Kind) {
    let j = journal(kind);
    let all = find(&j, FilterArgs::default());
    assert_eq!(all.len(), 9);
    // acme 3 and 4 share a second: the later one in the journal comes first.
    let pos = |t: &str, i| all.iter().position(|x| x == &(t.to_string(), i)).unwrap();
    assert!(pos("acme", 4) < pos("acme", 3));
    assert_eq!(all[0], ("acme".to_string(), 7));
    assert_eq!(all[8], ("acme".to_string(), 1));
}

fn each_filter_alone(kind: Kind) {
    let j = journal(kind);
    let tenant = FilterArgs { tenant: vec!["globex".into()], ..Default::default() };
    assert_eq!(find(&j, tenant), ids("globex", &[2, 1]));
    let by_id = FilterArgs { user: vec!["12".into()], ..Default::default() };
    assert_eq!(find(&j, by_id), ids("acme", &[6, 4, 3]));
    let by_email = FilterArgs { user: vec!["SEAN.obrien@ACME.example".into()], ..Default::default() };
    assert_eq!(find(&j, by_email), ids("acme", &[6, 4, 3]));
    let by_name = FilterArgs { user: vec!["seán o'b".into()], ..Default::default() };
    assert_eq!(find(&j, by_name), ids("acme", &[6, 4, 3]));
    let nobody = FilterArgs { user: vec!["Nobody Here".into()], ..Default::default() };
    assert!(find(&j, nobody).is_empty());
    let op = FilterArgs { operation: vec!["CredentialDestruction".into()], ..Default::default() };
    assert_eq!(find(&j, op), ids("acme", &[4, 3]));
    let cat = FilterArgs { category: vec!["credential".into()], ..Default::default() };
    assert_eq!(find(&j, cat), ids("acme", &[4, 3, 2]));
    let access = FilterArgs { category: vec!["access_control".into()], ..Default::default() };
    assert_eq!(find(&j, access), ids("acme", &[7]));
    let from = FilterArgs { from: Some("2024-05-02T00:00:00Z".into()), ..Default::default() };
    assert_eq!(find(&j, from), vec![("acme".into(), 7), ("acme".into(), 6), ("globex".into(), 2), ("acme".into(), 5)]);
    let to = FilterArgs { to: Some("2024-05-01T00:01:00Z".into()), ..Default::default() };
    assert_eq!(find(&j, to), vec![("globex".into(), 1), ("acme".into(), 1)]);
    // Relative: "now" is T0 + 10 days in `find`, so 8d ago is T0 + 2 days.
    let relative = FilterArgs { from: Some("8d".into()), ..Default::default() };
    assert_eq!(find(&j, relative), ids("acme", &[7, 6]));
    let ip = FilterArgs { ip: vec!["24.1.2.3".into()], ..Default::default() };
    assert_eq!(find(&j, ip), ids("acme", &[4, 3]));
    let cidr = FilterArgs { ip: vec!["86.40.0.0/15".into()], ..Default::default() };
    assert_eq!(find(&j, cidr), ids("acme", &[7, 5, 2, 1]));
    let country = FilterArgs { country: vec!["us".into()], ..Default::default() };
    assert_eq!(
        find(&j, country),
        vec![("globex".into(), 2), ("acme".into(), 4), ("acme".into(), 3), ("globex".into(), 1)]
    );
    let nowhere = FilterArgs { country: vec!["JP".into()], ..Default::default() };
    assert!(find(&j, nowhere).is_empty());
}

fn free_text_words_phrases_prefixes_and_accents(kind: Kind) {
    let j = journal(kind);
    let q = |t: &str| find(&j, FilterArgs { text: Some(t.into()), ..Default::default() });
    assert_eq!(q("phishing"), ids("acme", &[6]));
    assert_eq!(q("\"IOC sweep\""), ids("globex", &[2]));
    assert!(q("\"sweep IOC\"").is_empty(), "a phrase keeps its order");
    assert_eq!(q("okt*"), ids("acme", &[2]));
    assert_eq!(q("3002"), ids("acme", &[4]));
    assert_eq!(q("credentialId"), ids("acme", &[4, 3]));
    // Diacritics are folded both ways, and an e-mail is a phrase of its parts.
    assert_eq!(q("sean login").len(), 0);
    assert_eq!(q("sean").len(), 3);
    assert_eq!(q("new@acme.example"), ids("acme", &[5]));
    assert!(q("nothing-like-this").is_empty());
}

fn filters_combine_as_and_and_values_as_or(kind: Kind) {
    let j = journal(kind);
    let a = FilterArgs {
        user: vec!["ann@acme.example".into()],
        category: vec!["credential,user".into()],
        ..Default::default()
    };
    assert_eq!(find(&j, a), ids("acme", &[5, 2]));
    // Operation and category are two filters: both hold.
    let narrowed = FilterArgs {
        operation: vec!["CredentialSave".into(), "Login".into()],
        category: vec!["credential".into()],
        ..Default::default()
    };
    assert_eq!(find(&j, narrowed), ids("acme", &[2]));
    let b = FilterArgs { operation: vec!["Login".into()], country: vec!["IE".into()], ..Default::default() };
    assert_eq!(find(&j, b), ids("acme", &[1]));
    let c = FilterArgs { tenant: vec!["globex".into()], text: Some("sweep".into()), ..Default::default() };
    assert_eq!(find(&j, c), ids("globex", &[2]));
    let d = FilterArgs {
        user: vec!["12".into(), "Bob".into()],
        from: Some("2024-05-01T00:02:00Z".into()),
        to: Some("2024-05-02T12:00:00Z".into()),
        ..Default::default()
    };
    assert_eq!(find(&j, d), vec![("globex".into(), 2), ("acme".into(), 4), ("acme".into(), 3)]);
    let e = FilterArgs { ip: vec!["10.0.0.0/8".into()], country: vec!["IE".into()], ..Default::default() };
    assert!(find(&j, e).is_empty(), "an address must satisfy both the network and the country");
}

fn page_through(j: &Journal, f: &EventFilter, size: usize, between: &mut dyn FnMut(usize)) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let mut cursor = None;
    for n in 0.. {
        let p = search(j, f, cursor, size, &NoCountries).unwrap();
        assert!(p.events.len() <= size);
        out.extend(p.events.iter().map(|e| (e.tenant.clone(), e.id)));
        match p.next_cursor {
            Some(c) => cursor = Some(Cursor::decode(&c).unwrap()),
            None => break,
        }
        between(n);
    }
    out
}

fn pages_concatenate_to_the_whole_answer(kind: Kind) {
    let j = journal(kind);
    let f = EventFilter::default();
    let whole = find(&j, FilterArgs::default());
    for size in [1, 2, 3, 4, 8, 9, 10] {
        assert_eq!(page_through(&j, &f, size, &mut |_| {}), whole, "page size {size}");
    }
    // Networks: several addresses, which PostgreSQL reads address by address.
    for ip in [vec!["86.40.0.0/15".to_string()], vec!["86.40.0.0/15".into(), "24.0.0.0/12".into()]] {
        let args = FilterArgs { ip, from: Some("2024-04-01T00:00:00Z".into()), ..Default::default() };
        let whole = find(&j, args.clone());
        assert!(whole.len() >= 4, "{whole:?}");
        let f = args.build(T0 + 10 * 86_400).unwrap();
        for size in [1, 2, 3, 5] {
            assert_eq!(page_through(&j, &f, size, &mut |_| {}), whole, "{:?}, page size {size}", args.ip);
        }
    }
}

fn paging_stays_stable_while_new_and_backfilled_events_arrive(kind: Kind) {
    let j = journal(kind);
    let f = EventFilter::default();
    let before = find(&j, FilterArgs::default());
    let mut next_id = 100;
    let seen = page_through(&j, &f, 2, &mut |_| {
        // Between pages: a brand-new event, and a backfilled one older than everything.
        let newer = Ev {
            tenant: "acme",
            id: next_id,
            at: T0 + 9 * 86_400,
            op: "Login",
            user: ANN,
            ip: "86.40.0.10",
            inputs: json!(null),
        };
        let older = Ev { id: next_id + 1, at: T0 - 86_400, inputs: json!(null), ..newer };
        next_id += 2;
        commit(&j, "acme", &[&newer]);
        catch_up(&j).unwrap();
        commit(&j, "acme", &[&older]);
    });
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no event is shown twice: {seen:?}");
    let original: Vec<_> = seen.iter().filter(|e| before.contains(e)).cloned().collect();
    assert_eq!(original, before, "every event present at the start comes, once and in order");
    assert!(seen.iter().all(|(t, i)| before.contains(&(t.clone(), *i)) || *i > 100), "newer ones never sneak in");
    assert!(seen.iter().any(|(_, i)| *i > 100), "older backfilled ones show up on later pages");
}

fn text_sees_new_events_once_indexed_and_forgets_pruned_ones(kind: Kind) {
    let j = journal(kind);
    let e = Ev {
        tenant: "acme",
        id: 50,
        at: T0 + 4 * 86_400,
        op: "StoryNameChange",
        user: ANN,
        ip: "86.40.0.10",
        inputs: json!({"name": "Zebra hunt"}),
    };
    commit(&j, "acme", &[&e]);
    let zebra = || find(&j, FilterArgs { text: Some("zebra".into()), ..Default::default() });
    assert!(zebra().is_empty(), "not indexed yet");
    assert_eq!(state(&j).unwrap().behind(), 1);
    assert_eq!(catch_up(&j).unwrap(), 1);
    assert_eq!(zebra(), ids("acme", &[50]));
    assert_eq!(state(&j).unwrap().behind(), 0);
    // Retention removes everything; the text index goes with the events.
    j.prune(i64::MAX, i64::MAX, None).unwrap();
    assert!(zebra().is_empty());
}

/// PostgreSQL answers filters from the indexer's keys up to its position and from the
/// journal past it; SQLite from the journal alone. Either way the answer must not depend
/// on how far the indexer has come. (Networks, countries and display names resolve to the
/// addresses and users the indexer has seen, so they, like free text, wait for it.)
fn filters_answer_alike_wherever_the_indexer_stands(kind: Kind) {
    let j = fresh(kind);
    let h = history();
    for tenant in ["acme", "globex"] {
        commit(&j, tenant, &h.iter().filter(|e| e.tenant == tenant).collect::<Vec<_>>());
    }
    let queries = [
        FilterArgs::default(),
        FilterArgs { tenant: vec!["globex".into()], ..Default::default() },
        FilterArgs { user: vec!["12".into()], ..Default::default() },
        FilterArgs { user: vec!["SEAN.obrien@ACME.example".into()], ..Default::default() },
        FilterArgs { operation: vec!["Login".into(), "StoryNameChange".into()], ..Default::default() },
        FilterArgs { ip: vec!["86.40.0.10".into(), "24.9.9.9".into()], ..Default::default() },
        FilterArgs { text: Some("-operation:Login -user:12 -ip:24.9.9.9 -tenant:nobody".into()), ..Default::default() },
        FilterArgs {
            from: Some("2024-05-01T00:01:00Z".into()),
            to: Some("2024-05-02T12:00:00Z".into()),
            ..Default::default()
        },
    ];
    let answers = |j: &Journal| -> Vec<_> {
        queries
            .iter()
            .map(|a| {
                let f = a.build(T0 + 10 * 86_400).unwrap();
                let whole = find(j, a.clone());
                assert_eq!(page_through(j, &f, 2, &mut |_| {}), whole, "{a:?} in pages of 2");
                (whole, histogram(j, &f, 86_400, &EmulatorCountries).unwrap())
            })
            .collect()
    };
    // Nothing indexed, then part of it (4 of 9 events), then everything.
    let none = answers(&j);
    super::index::index_batch(&j, 4).unwrap();
    assert_eq!(state(&j).unwrap().behind(), 5);
    let part = answers(&j);
    catch_up(&j).unwrap();
    let all = answers(&j);
    assert_eq!(none, all);
    assert_eq!(part, all);
    assert_eq!(all[0].0.len(), 9);
    assert_eq!(all[1].0, ids("globex", &[2, 1]));
    assert_eq!(all[3].0, ids("acme", &[6, 4, 3]));
    assert_eq!(
        all[5].0,
        vec![("acme".into(), 7), ("globex".into(), 2), ("acme".into(), 2), ("globex".into(), 1), ("acme".into(), 1)]
    );
}

fn histogram_counts_the_filtered_events_per_bucket(kind: Kind) {
    let j = journal(kind);
    let f = FilterArgs { tenant: vec!["acme".into()], ..Default::default() }.build(T0 + 10 * 86_400).unwrap();
    let h = histogram(&j, &f, 86_400, &NoCountries).unwrap();
    assert_eq!(h, vec![(T0, 4), (T0 + 86_400, 1), (T0 + 2 * 86_400, 1), (T0 + 3 * 86_400, 1)]);
    // Whichever way a backend counts (bucket by bucket over a short span, grouped over a
    // long one or with free text), the buckets are those of counting by hand.
    let expected = |f: &EventFilter, bucket: i64| {
        let mut by: std::collections::BTreeMap<i64, i64> = Default::default();
        for e in search(&j, f, None, 100, &NoCountries).unwrap().events {
            *by.entry(e.created_at_secs - e.created_at_secs.rem_euclid(bucket)).or_default() += 1;
        }
        by.into_iter().collect::<Vec<_>>()
    };
    let filters = [
        FilterArgs::default(),
        FilterArgs { user: vec!["ann@acme.example".into()], ..Default::default() },
        FilterArgs { text: Some("credential".into()), ..Default::default() },
        FilterArgs {
            from: Some("2024-05-01T00:01:00Z".into()),
            to: Some("2024-05-03T00:00:00Z".into()),
            ..Default::default()
        },
    ];
    for a in &filters {
        let f = a.build(T0 + 10 * 86_400).unwrap();
        // 1 s over three days is past the bucket-by-bucket limit; 7 h starts buckets off midnight.
        for bucket in [1, 60, 3_600, 7 * 3_600, 86_400, 30 * 86_400] {
            assert_eq!(histogram(&j, &f, bucket, &NoCountries).unwrap(), expected(&f, bucket), "{a:?} per {bucket} s");
        }
    }
}

/// Facets count the newest matches up to the sample, and say whether that was all of them.
fn facets_count_the_newest_matches_and_say_when_that_was_not_all(kind: Kind) {
    let j = journal(kind);
    let fields = [syntax::Field::User, syntax::Field::Operation, syntax::Field::Tenant, syntax::Field::Category];
    let all = EventFilter::default();
    let three = facets::facets_of(&j, &all, &fields, 10, 3, &EmulatorCountries).unwrap();
    // The newest three: acme 7 (ann), acme 6 (sean), globex 2 (bob).
    fn v(f: &facets::Facet) -> Vec<(&str, i64)> {
        f.values.iter().map(|v| (v.value.as_str(), v.count)).collect()
    }
    assert_eq!(three.iter().map(|f| f.field).collect::<Vec<_>>(), ["user", "operation", "tenant", "category"]);
    assert_eq!(v(&three[0]), [("ann@acme.example", 1), ("bob@globex.example", 1), ("sean.obrien@acme.example", 1)]);
    assert_eq!(v(&three[1]), [("StoryNameChange", 2), ("IPAccessControlRuleCreation", 1)]);
    assert_eq!(v(&three[2]), [("acme", 2), ("globex", 1)]);
    for f in &three {
        assert_eq!((f.total, f.exact), (3, false), "{f:?}");
        assert_eq!(f.values.iter().map(|v| v.count).sum::<i64>() + f.other + f.missing, 3);
    }
    let eight = facets::facets_of(&j, &all, &fields, 10, 8, &EmulatorCountries).unwrap();
    assert!(eight.iter().all(|f| f.total == 8 && !f.exact), "one of nine left out: {eight:?}");
    let nine = facets::facets_of(&j, &all, &fields, 10, 9, &EmulatorCountries).unwrap();
    assert!(nine.iter().all(|f| f.total == 9 && f.exact), "every match fits: {nine:?}");
    // A filter's sample is its own newest matches.
    let sean = FilterArgs { user: vec!["12".into()], ..Default::default() }.build(T0 + 10 * 86_400).unwrap();
    let ops = facets::facets_of(&j, &sean, &[syntax::Field::Operation], 10, 2, &EmulatorCountries).unwrap();
    assert_eq!(v(&ops[0]), [("CredentialDestruction", 1), ("StoryNameChange", 1)]);
    assert!(!ops[0].exact);
    // One facet is the same count as the same field among several.
    assert_eq!(facets::facet(&j, &all, syntax::Field::Tenant, 10, &EmulatorCountries).unwrap(), nine[2]);
}

fn operation_filter_accepts_names_in_the_journal_but_not_in_the_catalog(kind: Kind) {
    let j = journal(kind);
    let newer = Ev {
        tenant: "acme",
        id: 8,
        at: T0 + 4 * 86_400,
        op: "WidgetTelemetryToggle",
        user: ANN,
        ip: "86.40.0.10",
        inputs: json!(null),
    };
    commit(&j, "acme", &[&newer]);
    catch_up(&j).unwrap();
    assert!(crate::catalog::find("WidgetTelemetryToggle").is_none());
    let by_new = FilterArgs { operation: vec!["WidgetTelemetryToggle".into()], ..Default::default() };
    assert_eq!(find(&j, by_new), ids("acme", &[8]));
    // A name in neither is still refused, with the catalog's and the journal's closest names.
    let typo = FilterArgs { operation: vec!["WidgetTelemetryToggled".into()], ..Default::default() };
    let err = search(&j, &typo.build(T0).unwrap(), None, 10, &EmulatorCountries).unwrap_err().to_string();
    assert!(err.contains("unknown operation name") && err.contains("did you mean WidgetTelemetryToggle"), "{err}");
    let dotted = FilterArgs { operation: vec!["story.created".into()], ..Default::default() };
    let err = search(&j, &dotted.build(T0).unwrap(), None, 10, &EmulatorCountries).unwrap_err().to_string();
    assert!(err.contains("StoryCreation"), "{err}");
}

fn scim_placeholder_filter_matches_the_real_scim_events(kind: Kind) {
    let j = journal(kind);
    let scim = |id, op| Ev {
        tenant: "acme",
        id,
        at: T0 + 5 * 86_400 + id,
        op,
        user: ANN,
        ip: "86.40.0.10",
        inputs: json!(null),
    };
    let (a, b) = (scim(20, "SCIM/2.0/User/create"), scim(21, "SCIM/2.0/User/destroy"));
    commit(&j, "acme", &[&a, &b]);
    let exact = FilterArgs { operation: vec!["SCIM/2.0/User/create".into()], ..Default::default() };
    assert_eq!(find(&j, exact), ids("acme", &[20]));
    let pattern = FilterArgs { operation: vec!["SCIM/2.0/User/{operation}".into()], ..Default::default() };
    assert_eq!(find(&j, pattern), ids("acme", &[21, 20]));
}

/// A record whose values try to drive a terminal, break a Markdown table and inject HTML.
const HOSTILE: (i64, &str, &str) = (14, "<script>alert(1)</script>|mallory@evil.example\u{1b}[2J", "Mallory");

fn markdown_report_escapes_pipes_html_and_control_characters_from_records(kind: Kind) {
    let j = journal(kind);
    let evil = Ev {
        tenant: "acme",
        id: 30,
        at: T0 + 3600,
        op: "CredentialDestruction",
        user: HOSTILE,
        ip: "86.40.0.10",
        inputs: json!({"name": "x"}),
    };
    commit(&j, "acme", &[&evil]);
    catch_up(&j).unwrap();
    let r =
        report::build(&j, report::Framework::Soc2, T0, T0 + 10 * 86_400, &[], &EmulatorCountries, &Default::default())
            .unwrap();
    let md = report::markdown(&r);
    assert!(!md.contains("<script>"), "HTML passed through");
    assert!(!md.contains('\u{1b}'), "an ESC reached the report");
    let row = md.lines().find(|l| l.contains("mallory")).expect("the event is listed");
    // A row of six cells has seven cell borders; an escaped `\|` is not one.
    let borders = row.replace("\\|", "").matches('|').count();
    assert_eq!(borders, 7, "{row}");
    assert!(row.contains("&lt;script&gt;alert(1)&lt;/script&gt;\\|mallory@evil.example\\\\u{1b}\\[2J"), "{row}");
}

fn the_report_carries_the_verification_of_the_journal_and_its_key(kind: Kind) {
    use crate::signing::{Keyring, SigningKey};
    let j = journal(kind);
    let key = SigningKey::ephemeral();
    let keys = Keyring::new(vec![*key.public()]);
    assert_eq!(crate::journal::checkpoint::sign_all(&j, &key, "collect").unwrap(), 2);
    let build = || {
        report::build(&j, report::Framework::Iso27001, T0, T0 + 10 * 86_400, &[], &EmulatorCountries, &keys).unwrap()
    };
    let r = build();
    let summary = r.integrity.summary();
    assert!(summary.starts_with("Verified: no record changed"), "{summary}");
    assert!(summary.contains("2 signed checkpoints") && summary.contains(&key.public().fingerprint()), "{summary}");
    assert!(summary.contains(&format!("events dated {}", crate::timeutil::format_rfc3339(T0))), "{summary}");
    let html = report::html(&r);
    assert!(html.contains("id=\"integrity\"") && html.contains("A.8.15"), "the section and its control");
    assert!(report::markdown(&r).contains("newest checkpoint 1 signed"));
    j.tamper("UPDATE events SET raw = raw || ' ' WHERE seq = (SELECT MIN(seq) FROM events)");
    let r = build();
    assert!(r.integrity.summary().starts_with("FAILED: 1 problem(s)"), "{}", r.integrity.summary());
    assert!(report::csv(&r).contains("integrity,A.8.15,,,,,,,,\"record changed: tenant acme"), "{}", report::csv(&r));
}

/// The posture section: the state at the end of the period, the changes within it, the
/// notes, and a plain statement that the tenant itself was not read.
fn the_reports_posture_section_has_the_state_at_the_periods_end_its_changes_and_notes(kind: Kind) {
    let j = journal(kind);
    j.add_posture_note(&crate::journal::PostureNote {
        seq: 0,
        tenant: "acme".into(),
        kind: "ip_rule".into(),
        entry_id: "1.2.3.0/24".into(),
        why: "partner SOC".into(),
        requested_by: "CISO".into(),
        noted_by: "ops".into(),
        noted_at: T0,
    })
    .unwrap();
    let build =
        |to| report::build(&j, report::Framework::Soc2, T0, to, &[], &EmulatorCountries, &Default::default()).unwrap();
    let r = build(T0 + 10 * 86_400);
    let acme = r.posture.iter().find(|p| p.tenant == "acme").unwrap();
    let ids: Vec<&str> = acme.end.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1.2.3.0/24"]);
    assert_eq!(acme.end.changes.iter().map(|c| c.change.event_id).collect::<Vec<_>>(), [7]);
    assert_eq!((acme.without_note(), acme.drift.is_none()), (0, true));
    let md = report::markdown(&r);
    assert!(
        md.contains("## Security posture")
            && md.contains("partner SOC")
            && md.contains("Not checked against the tenant"),
        "{md}"
    );
    let html = report::html(&r);
    assert!(html.contains("id=\"posture\"") && html.contains("CC6.6"), "the section and its controls");
    assert!(report::csv(&r).contains("change: ip_rule 1.2.3.0/24: created: 1.2.3.0/24"), "{}", report::csv(&r));
    // Ending before the rule was made: nothing in force, no change.
    let r = build(T0 + 2 * 86_400);
    let acme = r.posture.iter().find(|p| p.tenant == "acme").unwrap();
    assert!(acme.end.entries.is_empty() && acme.end.changes.is_empty(), "{:?}", acme.end.entries);
    assert_eq!(acme.end.other_notes.len(), 1, "the note is kept for an entry not in force");
}

/// What an analyst types in the search box: OR, exclusions, phrases, field terms, and the
/// words inside operation names.
fn search_box_or_not_phrases_fields_and_operation_words(kind: Kind) {
    let j = journal(kind);
    // An event with no user and no address: no exclusion of a user or an address drops it.
    let raw = r#"{"id":1,"operation_name":"TenantLogoChange","created_at":"2024-05-01T00:00:10Z"}"#;
    j.start_progress("initech", "cursor", 0, None, "").unwrap();
    let r = Record {
        id: 1,
        created_at: T0 + 10,
        operation_name: "TenantLogoChange",
        user_id: None,
        user_email: None,
        request_ip: None,
        raw,
    };
    j.commit_window(&WindowCommit { tenant: "initech", job: "cursor", from: 0, to: 1, fetched: 1 }, [r]).unwrap();
    catch_up(&j).unwrap();
    let q = |t: &str| find(&j, FilterArgs { text: Some(t.into()), ..Default::default() });
    let initech = ("initech".to_string(), 1);
    assert_eq!(q("phishing OR sweep"), vec![("acme".into(), 6), ("globex".into(), 2)]);
    // Words inside CamelCase operation names, alone, as a phrase, as a prefix.
    assert_eq!(q("credential"), ids("acme", &[4, 3, 2]));
    assert_eq!(q("destruction"), ids("acme", &[4, 3]));
    assert_eq!(q("\"credential destruction\""), ids("acme", &[4, 3]));
    assert!(q("\"destruction credential\"").is_empty());
    assert_eq!(q("cred*"), ids("acme", &[4, 3, 2]));
    assert_eq!(q("access control"), ids("acme", &[7]));
    assert_eq!(q("CredentialDestruction"), ids("acme", &[4, 3]));
    // Exclusions: text, and every kind of field.
    assert_eq!(q("-login").len(), 8);
    assert!(!q("-login").iter().any(|(t, i)| *i == 1 && t != "initech"));
    assert_eq!(q("credential -okta"), ids("acme", &[4, 3]));
    assert_eq!(q("credential NOT 3002"), ids("acme", &[3, 2]));
    let not_ann = q("NOT user:ann@acme.example");
    assert_eq!(not_ann.len(), 6);
    assert!(not_ann.contains(&initech), "an event without a user is no excluded user's");
    assert_eq!(q("-operation:Login -country:US -tenant:initech"), ids("acme", &[7, 6, 5, 2]));
    let not_net = q("-ip:86.40.0.0/15");
    assert_eq!(not_net.len(), 6);
    assert!(not_net.contains(&initech));
    assert_eq!(q("-category:credential -user:\"Seán O'Brien\" -user:13").len(), 4);
    assert_eq!(q("user:ann@acme.example OR user:12 -ip:10.1.2.3"), ids("acme", &[7, 5, 4, 3, 2, 1]));
    assert_eq!(q("user:bob tenant:globex sweep"), ids("globex", &[2]));
    assert_eq!(q("operation:Login OR operation:StoryNameChange -tenant:acme"), ids("globex", &[2, 1]));
    assert_eq!(q("from:2024-05-02 to:2024-05-03"), vec![("globex".into(), 2), ("acme".into(), 5)]);
    // Exclusions count too.
    let f = FilterArgs { text: Some("-tenant:acme".into()), ..Default::default() }.build(T0 + 10 * 86_400).unwrap();
    assert_eq!(search::count(&j, &f, &NoCountries).unwrap(), 3);
}

/// Regression: a thousand e-mail addresses in `user` made SQLite nest a thousand ORs
/// ("Expression tree is too large", a 500). Now one IN over the address index.
fn a_thousand_emails_in_user_was_a_500(kind: Kind) {
    let j = journal(kind);
    let mut emails: Vec<String> = (0..999).map(|i| format!("someone{i}@elsewhere.example")).collect();
    emails.push("ANN@acme.example".into());
    assert_eq!(find(&j, FilterArgs { user: vec![emails.join(",")], ..Default::default() }), ids("acme", &[7, 5, 2, 1]));
    let excluded: Vec<String> = emails.iter().map(|e| format!("-user:{e}")).collect();
    let f = FilterArgs { text: Some(excluded[990..].join(" ")), ..Default::default() };
    assert_eq!(find(&j, f).len(), 5);
}

/// Each facet value's count is what searching for that value too totals, for several
/// filters and every field; the values, the other and the missing add up to the total.
fn facet_counts_equal_the_totals_of_searching_each_value(kind: Kind) {
    let j = journal(kind);
    let now = T0 + 10 * 86_400;
    let bases = [
        FilterArgs::default(),
        FilterArgs { tenant: vec!["acme".into()], ..Default::default() },
        FilterArgs { text: Some("-operation:Login".into()), ..Default::default() },
        FilterArgs { text: Some("credential OR sweep".into()), ..Default::default() },
        FilterArgs {
            from: Some("2024-05-01T00:01:00Z".into()),
            text: Some("-country:IE".into()),
            ..Default::default()
        },
    ];
    let mut checked = 0;
    for base in &bases {
        let total = search::count(&j, &base.build(now).unwrap(), &EmulatorCountries).unwrap();
        for field in syntax::Field::LISTS {
            let fc = facets::facet(&j, &base.build(now).unwrap(), field, 100, &EmulatorCountries).unwrap();
            assert_eq!(fc.total, total, "{base:?} {field:?}");
            assert!(fc.exact, "nine events are fewer than the sample");
            assert_eq!(fc.values.iter().map(|v| v.count).sum::<i64>() + fc.other + fc.missing, total);
            assert_eq!(fc.other, 0, "every value fits in 100");
            assert!(fc.values.windows(2).all(|w| w[0].count >= w[1].count), "most first");
            for v in &fc.values {
                let mut a = base.clone();
                let list = match field {
                    syntax::Field::Tenant => &mut a.tenant,
                    syntax::Field::User => &mut a.user,
                    syntax::Field::Operation => &mut a.operation,
                    syntax::Field::Category => &mut a.category,
                    syntax::Field::Ip => &mut a.ip,
                    syntax::Field::Country => &mut a.country,
                    _ => unreachable!(),
                };
                *list = vec![v.value.clone()];
                let n = search::count(&j, &a.build(now).unwrap(), &EmulatorCountries).unwrap();
                assert_eq!(n, v.count, "{base:?}: {field:?} = {}", v.value);
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "{checked}");
    let all = facets::facet(&j, &EventFilter::default(), syntax::Field::User, 2, &EmulatorCountries).unwrap();
    assert_eq!(
        all.values,
        vec![
            facets::FacetValue { value: "ann@acme.example".into(), count: 4 },
            facets::FacetValue { value: "sean.obrien@acme.example".into(), count: 3 }
        ]
    );
    assert_eq!((all.total, all.other, all.missing), (9, 2, 0));
    let cc = facets::facet(&j, &EventFilter::default(), syntax::Field::Country, 10, &EmulatorCountries).unwrap();
    assert_eq!(cc.missing, 1, "10.1.2.3 is in no country");
    assert!(facets::facet(&j, &EventFilter::default(), syntax::Field::Country, 10, &NoCountries).is_err());
}

crate::on_every_backend!(
    the_reports_posture_section_has_the_state_at_the_periods_end_its_changes_and_notes,
    search_box_or_not_phrases_fields_and_operation_words,
    a_thousand_emails_in_user_was_a_500,
    facet_counts_equal_the_totals_of_searching_each_value,
    facets_count_the_newest_matches_and_say_when_that_was_not_all,
    no_filter_returns_everything_newest_first_with_ties_by_seq,
    each_filter_alone,
    free_text_words_phrases_prefixes_and_accents,
    filters_combine_as_and_and_values_as_or,
    pages_concatenate_to_the_whole_answer,
    paging_stays_stable_while_new_and_backfilled_events_arrive,
    text_sees_new_events_once_indexed_and_forgets_pruned_ones,
    histogram_counts_the_filtered_events_per_bucket,
    filters_answer_alike_wherever_the_indexer_stands,
    operation_filter_accepts_names_in_the_journal_but_not_in_the_catalog,
    scim_placeholder_filter_matches_the_real_scim_events,
    markdown_report_escapes_pipes_html_and_control_characters_from_records,
    the_report_carries_the_verification_of_the_journal_and_its_key,
);
