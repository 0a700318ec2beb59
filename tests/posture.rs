//! `tines-audit posture` end to end: a scripted history of security changes made in the
//! emulator, collected by the real binary, rebuilt into exactly the expected posture (at
//! the end and at a past moment); drift both ways against the emulator's admin API; notes
//! kept with their history on SQLite and PostgreSQL; bad input refused with exit 2.

mod common;
#[path = "common/pg.rs"]
#[allow(dead_code)] // this file uses a part of the helpers
mod pg;

use std::path::Path;

use common::*;
use serde_json::{Value, json};
use tines_audit::mock::{MockConfig, MockServer, PostureChange::*};

const A: &str = "203.0.113.0/24";
const B: &str = "198.51.100.0/24";
const C: &str = "192.0.2.128/25";
const SLACK: &str = "hooks.slack.com";

fn types() -> Vec<String> {
    vec!["http-request".to_string()]
}

/// The scripted history, in two batches a second apart at least; returns the moment between
/// them (unix seconds, by the emulator's clock).
async fn script(mock: &MockServer) -> i64 {
    let push = |change| mock.push_posture(0, change).expect("the change applies");
    push(OwnerGranted { user: 2 });
    push(IpRuleCreated { ip: A.into(), description: "Office VPN".into() });
    push(IpRuleCreated { ip: B.into(), description: "DR site".into() });
    push(EgressRuleCreated { host: SLACK.into(), description: "Alerts to Slack".into(), action_types: types() });
    push(ApiKeyCreated { name: "SIEM export".into(), service: true });
    push(Record {
        operation: "SsoConfigurationSamlSet".into(),
        inputs: json!({"domainId": 3, "fingerprint": "REDACTED", "idpCertificate": "REDACTED", "targetUrl": "REDACTED"}),
    });
    let mid = mock.now();
    wait_until_clock_past(mid).await;
    // The rule B is changed (its record names its id and address) then deleted by id: resolved.
    push(IpRuleChanged { ip: B.into(), description: "DR site (Frankfurt)".into() });
    push(IpRuleDeleted { ip: B.into() });
    // C is deleted by an id no record ties to an address: unknown which rule.
    push(IpRuleCreated { ip: C.into(), description: "Pen test".into() });
    push(IpRuleDeleted { ip: C.into() });
    push(ApiKeyCreated { name: "laptop".into(), service: false });
    push(ApiKeyDeleted { key_id: 42 });
    push(Record { operation: "SsoConfigurationOidcSet".into(), inputs: json!({}) });
    push(Record { operation: "TenantSessionTimeoutChange".into(), inputs: json!({"inputs": {"sessionTimeout": 720}}) });
    push(OwnerGranted { user: 5 });
    push(OwnerRevoked { user: 2 });
    mid
}

async fn scripted_mock(config: MockConfig) -> (MockServer, i64) {
    let mock = start_mock(MockConfig { history: 0, rate_limit_per_minute: 0, ..config }).await;
    let mid = script(&mock).await;
    wait_settled(&mock).await;
    (mock, mid)
}

/// Runs the binary off the async threads (the emulator serves on them).
async fn bin(args: &[&str]) -> std::process::Output {
    run_bin_async(args.iter().map(|a| a.to_string()).collect()).await
}

async fn collect(cfg: &Path, extra: &[&str]) {
    let mut args = vec!["collect", "--config", cfg.to_str().unwrap(), "--no-progress"];
    args.extend_from_slice(extra);
    let out = bin(&args).await;
    assert!(out.status.success(), "{}", text(&out));
}

/// `posture --format json` with `args`, parsed.
async fn posture_json(cfg: &Path, args: &[&str]) -> Value {
    let mut all: Vec<String> =
        ["posture", "--config", cfg.to_str().unwrap(), "--format", "json"].map(String::from).into();
    all.extend(args.iter().map(|a| a.to_string()));
    let out = run_bin_async(all).await;
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

fn ids(p: &Value, kind: &str) -> Vec<String> {
    entries(p, kind).iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

fn entries<'a>(p: &'a Value, kind: &str) -> Vec<&'a Value> {
    p["posture"]["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == kind).collect()
}

fn entry<'a>(p: &'a Value, kind: &str, id: &str) -> &'a Value {
    entries(p, kind).into_iter().find(|e| e["id"] == id).unwrap_or_else(|| panic!("no {kind} {id}: {p:#}"))
}

/// The emulator's record of `operation` whose inputs hold `needle`, the `nth` such (from 0).
fn record<'a>(records: &'a [Value], operation: &str, needle: &str, nth: usize) -> &'a Value {
    records
        .iter()
        .filter(|r| r["operation_name"] == operation && r["inputs"].to_string().contains(needle))
        .nth(nth)
        .unwrap_or_else(|| panic!("no {operation} with {needle}"))
}

fn user_email(records: &[Value], granted_nth: usize) -> String {
    let r = record(records, "UserEdit", "\"isTenantOwner\":true", granted_nth);
    r["inputs"]["inputs"]["email"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_scripted_history_collected_by_the_binary_gives_exactly_the_expected_posture_at_the_end_and_at_a_past_moment()
{
    let dir = tempfile::tempdir().unwrap();
    let (mock, mid) = scripted_mock(MockConfig::default()).await;
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    collect(&cfg, &[]).await;
    let records = mock.records();
    let (first_owner, second_owner) = (user_email(&records, 0), user_email(&records, 1));

    let end = posture_json(&cfg, &["--tenant", TENANT]).await;
    assert_eq!(ids(&end, "owner"), vec![second_owner.clone()]);
    assert_eq!(entry(&end, "owner", &second_owner)["fields"]["role"], "tenant owner, admin");
    let mut rules = ids(&end, "ip_rule");
    rules.sort();
    assert_eq!(rules, vec![C.to_string(), A.to_string()], "B went with a deletion that named it; C's did not");
    assert_eq!(ids(&end, "egress_rule"), vec![SLACK]);
    assert_eq!(ids(&end, "api_key"), vec!["SIEM export", "laptop"]);
    assert_eq!(entry(&end, "setting", "sso")["fields"]["value"], "OIDC");
    assert_eq!(entry(&end, "setting", "session_timeout")["fields"]["value"], "record says {\"sessionTimeout\":720}");
    assert!(ids(&end, "permission").is_empty());

    // Who, when, from where, which event: the emulator's own record of A's creation.
    let made = record(&records, "IPAccessControlRuleCreation", A, 0);
    let last = &entry(&end, "ip_rule", A)["last"];
    assert_eq!(last["event_id"], made["id"]);
    assert_eq!(
        (&last["user_email"], &last["request_ip"], &last["time"]),
        (&made["user_email"], &made["request_ip"], &made["created_at"])
    );
    // What the records did not say: the deletion of C names only an id, so both rules that
    // could be it say so; the key deletion names only an id, so both keys say so.
    let rule_deletion = record(&records, "IPAccessControlRuleDeletion", "id", 1)["id"].as_i64().unwrap();
    let key_deletion = record(&records, "AuthenticationTokenDeletion", "42", 0)["id"].as_i64().unwrap();
    for (kind, id, event) in [
        ("ip_rule", A, rule_deletion),
        ("ip_rule", C, rule_deletion),
        ("api_key", "laptop", key_deletion),
        ("api_key", "SIEM export", key_deletion),
    ] {
        let doubts = entry(&end, kind, id)["doubts"].to_string();
        assert!(doubts.contains(&format!("event {event}")), "{kind} {id}: {doubts}");
    }
    let unresolved: Vec<i64> = end["posture"]["unresolved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["change"]["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(unresolved, vec![rule_deletion, key_deletion]);
    assert_eq!(entry(&end, "api_key", "SIEM export")["fields"]["type"], "service");
    assert!(entries(&end, "ip_rule").iter().all(|e| e["needs_note"] == true), "no note yet: every rule flagged");

    let past = posture_json(&cfg, &["--tenant", TENANT, "--at", &tines_audit::timeutil::format_rfc3339(mid)]).await;
    assert_eq!(ids(&past, "owner"), vec![first_owner]);
    let mut rules = ids(&past, "ip_rule");
    rules.sort();
    assert_eq!(rules, vec![B.to_string(), A.to_string()]);
    assert_eq!(entry(&past, "ip_rule", B)["fields"]["description"], "DR site");
    assert_eq!(ids(&past, "api_key"), vec!["SIEM export"]);
    assert!(entries(&past, "api_key").iter().all(|e| e["doubts"].as_array().unwrap().is_empty()));
    assert_eq!(entry(&past, "setting", "sso")["fields"]["value"], "SAML");
    assert!(entries(&past, "setting").iter().all(|e| e["id"] != "session_timeout"));
    assert!(past["posture"]["unresolved"].as_array().unwrap().is_empty());

    // The table says the same for people, and every change with --history.
    let table = bin(&["posture", "--config", cfg.to_str().unwrap(), "--history"]).await;
    let t = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{}", text(&table));
    assert!(t.contains("IP access control rules in force (2)") && t.contains("[no note: why?]"), "{t}");
    assert!(t.contains("history  ") && !t.contains("DR site (Frankfurt)"), "B is gone, so is its history: {t}");
    mock.shutdown().await;
}

fn drift_area<'a>(p: &'a Value, kind: &str) -> &'a Value {
    p["drift"]["areas"].as_array().unwrap().iter().find(|a| a["kind"] == kind).unwrap()
}

fn drift_ids(p: &Value, kind: &str, list: &str) -> Vec<String> {
    drift_area(p, kind)[list].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn posture_live_reports_drift_both_ways_against_the_emulators_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, _) = scripted_mock(MockConfig::default()).await;
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    collect(&cfg, &[]).await;
    let records = mock.records();

    // As the history says: nothing undocumented or missing; C's deletion, which did not say
    // which rule, is settled by the tenant lacking C.
    let same = posture_json(&cfg, &["--live"]).await;
    for kind in ["owner", "ip_rule", "egress_rule"] {
        let a = drift_area(&same, kind);
        assert_eq!(a["checked"], true, "{a}");
        assert!(
            a["undocumented"].as_array().unwrap().is_empty() && a["missing"].as_array().unwrap().is_empty(),
            "{kind}: {a:#}"
        );
    }
    assert_eq!(drift_ids(&same, "ip_rule", "explained"), vec![C]);
    assert_eq!(drift_area(&same, "ip_rule")["matched"], 1);
    assert_eq!(drift_area(&same, "api_key")["checked"], false);

    // The tenant drifts: a rule, an egress entry and an owner made with no record; the oldest
    // rule and egress entry removed with none.
    mock.set_posture_drift(true);
    let drifted = posture_json(&cfg, &["--live"]).await;
    assert_eq!(drift_ids(&drifted, "ip_rule", "undocumented"), vec!["192.0.2.0/24"]);
    assert_eq!(drift_ids(&drifted, "ip_rule", "missing"), vec![A]);
    assert_eq!(drift_ids(&drifted, "egress_rule", "undocumented"), vec!["exfil.example.net"]);
    assert_eq!(drift_ids(&drifted, "egress_rule", "missing"), vec![SLACK]);
    let owners = drift_ids(&drifted, "owner", "undocumented");
    assert_eq!(owners.len(), 1);
    assert_ne!(owners[0], user_email(&records, 1), "the owner the history granted is documented");
    let table = bin(&["posture", "--config", cfg.to_str().unwrap(), "--live"]).await;
    let t = String::from_utf8_lossy(&table.stdout);
    assert!(t.contains("undocumented 192.0.2.0/24") && t.contains(&format!("missing      {A}")), "{t}");

    // A key the tenant refuses (401): a note per area, the key nowhere in the output.
    let wrong = dir.path().join("wrong-key.toml");
    let text_cfg = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &wrong,
        text_cfg.replace("api_key_env = \"TEST_TINES_KEY\"", "api_key = \"posture-wrong-key-7731\""),
    )
    .unwrap();
    let out = bin(&["posture", "--config", wrong.to_str().unwrap(), "--live", "--format", "json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("posture-wrong-key-7731"), "{}", text(&out));
    let refused: Value = serde_json::from_slice(&out.stdout).unwrap();
    for kind in ["owner", "ip_rule", "egress_rule"] {
        let a = drift_area(&refused, kind);
        assert!(a["checked"] == false && a["note"].as_str().unwrap().contains("(401)"), "{a}");
    }
    mock.shutdown().await;

    // A key that may not read the admin API: a note per area, and the command succeeds.
    let (mock, _) = scripted_mock(MockConfig { admin_forbidden: true, ..MockConfig::default() }).await;
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    collect(&cfg, &[]).await;
    let refused = posture_json(&cfg, &["--live"]).await;
    for kind in ["owner", "ip_rule", "egress_rule"] {
        let a = drift_area(&refused, kind);
        assert_eq!(a["checked"], false);
        assert!(a["note"].as_str().unwrap().contains("403"), "{a}");
    }
    assert_eq!(ids(&refused, "ip_rule").len(), 2, "the history's posture is still there");
    mock.shutdown().await;
}

/// `annotate` stores the note in the journal, a later one supersedes without erasing, and
/// `posture` lists them: on a data directory and on PostgreSQL alike.
#[tokio::test]
async fn annotate_round_trip_on_sqlite_and_postgres() {
    let (mock, _) = scripted_mock(MockConfig::default()).await;
    for backend in ["sqlite", "postgres"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), &mock.base_url(), "", "");
        let url = pg::fresh_schema_url();
        let journal: Vec<&str> = if backend == "postgres" { vec!["--journal-url", &url] } else { vec![] };
        collect(&cfg, &journal).await;
        let annotate = async |why: &str, by: &str| {
            let mut args =
                vec!["posture", "annotate", "--config", cfg.to_str().unwrap(), "--tenant", TENANT, "--kind", "ip_rule"];
            args.extend(["--id", A, "--why", why, "--requested-by", by]);
            args.extend(&journal);
            let out = bin(&args).await;
            assert!(out.status.success(), "{backend}: {}", text(&out));
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let first = annotate("Staff VPN egress", "Ann (IT)").await;
        assert!(first.contains("noted ip_rule 203.0.113.0/24 of t1"), "{first}");
        let second = annotate("Staff VPN egress, new ISP", "Ann (IT), ticket SEC-42").await;
        assert!(second.contains("supersedes 1 earlier note(s)"), "{second}");

        let mut args = vec!["--history"];
        args.extend(&journal);
        let p = posture_json(&cfg, &args).await;
        let a = entry(&p, "ip_rule", A);
        assert_eq!(a["note"]["why"], "Staff VPN egress, new ISP", "{backend}");
        assert_eq!(a["note"]["requested_by"], "Ann (IT), ticket SEC-42");
        let notes: Vec<&str> = a["notes"].as_array().unwrap().iter().map(|n| n["why"].as_str().unwrap()).collect();
        assert_eq!(notes, vec!["Staff VPN egress", "Staff VPN egress, new ISP"], "{backend}");
        assert_eq!(a["needs_note"], false);
        assert_eq!(entry(&p, "ip_rule", C)["needs_note"], true, "{backend}: the other rule is still flagged");

        // A note on something not in force is kept, and said to be so.
        let mut args = vec!["posture", "annotate", "--config", cfg.to_str().unwrap(), "--tenant", TENANT];
        args.extend(["--kind", "egress_rule", "--id", "gone.example.com", "--why", "old", "--requested-by", "x"]);
        args.extend(&journal);
        let out = bin(&args).await;
        assert!(out.status.success() && text(&out).contains("not in force"), "{}", text(&out));
        let mut args = vec!["--format", "md"];
        args.extend(&journal);
        let mut all: Vec<String> = ["posture", "--config", cfg.to_str().unwrap()].map(String::from).into();
        all.extend(args.iter().map(|a| a.to_string()));
        let md = run_bin_async(all).await;
        let md = String::from_utf8_lossy(&md.stdout);
        assert!(md.contains("## Notes on entries not in force") && md.contains("gone.example.com"), "{md}");
    }
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, _) = scripted_mock(MockConfig::default()).await;
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    collect(&cfg, &[]).await;
    let c = cfg.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "posture",
                "annotate",
                "--config",
                c,
                "--tenant",
                TENANT,
                "--kind",
                "firewall",
                "--id",
                A,
                "--why",
                "w",
                "--requested-by",
                "r",
            ],
            "invalid value 'firewall' for '--kind",
        ),
        (&["posture", "--config", c, "--at", "yesterday-ish"], "--at: invalid time \"yesterday-ish\""),
        (&["posture", "--config", c, "--at", "2999-01-01"], "--at is in the future"),
        (&["posture", "--config", c, "--tenant", "nope"], "no tenant named \"nope\" in the journal"),
        (
            &[
                "posture",
                "annotate",
                "--config",
                c,
                "--tenant",
                TENANT,
                "--kind",
                "ip_rule",
                "--id",
                A,
                "--why",
                " ",
                "--requested-by",
                "r",
            ],
            "--why and --requested-by must say something",
        ),
        (&["posture", "--config", c, "--live", "--at", "30d"], "--live compares the tenant as it is now"),
    ];
    for (args, says) in cases {
        let out = bin(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{args:?}: {}", text(&out));
    }
    // Unknown tenant on annotate too, and nothing is written.
    let out = bin(&[
        "posture",
        "annotate",
        "--config",
        c,
        "--tenant",
        "nope",
        "--kind",
        "owner",
        "--id",
        "x",
        "--why",
        "w",
        "--requested-by",
        "r",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let j = tines_audit::journal::Journal::open_read_only(&dir.path().join("data")).unwrap();
    assert!(j.posture_notes("nope").unwrap().is_empty());
    mock.shutdown().await;
}

/// `run` with `[posture] check_every` reads the tenant's admin lists after its first sync
/// and raises one `posture_drift` alert for a drift (naming the undocumented and missing
/// entries, and linking the event that created a missing one), however often it checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_raises_a_posture_drift_alert_once_per_distinct_drift() {
    use tines_audit::journal::Journal;
    let dir = tempfile::tempdir().unwrap();
    let (mock, _) = scripted_mock(MockConfig::default()).await;
    mock.set_posture_drift(true);
    let cfg = write_config(dir.path(), &mock.base_url(), "interval = \"1s\"", "[posture]\ncheck_every = \"5m\"\n");
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&cfg, &log, &[]);
    let data = dir.path().join("data");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let alerts = loop {
        let found = Journal::open_shared(&data).ok().and_then(|j| j.alerts_after(0, 100).ok()).unwrap_or_default();
        if !found.is_empty() {
            break found;
        }
        assert!(std::time::Instant::now() < end, "no drift alert: {}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a.rule_id, "posture_drift");
    assert!(a.id.starts_with(&format!("posture_drift:{TENANT}:")), "{}", a.id);
    let body: Value = serde_json::from_str(&a.body).unwrap();
    let summary = body["summary"].as_str().unwrap();
    for what in
        ["192.0.2.0/24 (undocumented)", "exfil.example.net (undocumented)", &format!("{A} (missing from the tenant)")]
    {
        assert!(summary.contains(what), "{what}: {summary}");
    }
    assert_eq!(body["rule"]["level"], "high");
    let linked: Vec<&str> =
        body["events"].as_array().unwrap().iter().map(|e| e["operation_name"].as_str().unwrap()).collect();
    assert!(linked.contains(&"IPAccessControlRuleCreation"), "the missing rule's creation is linked: {linked:?}");

    // A second daemon checks again at once: the same drift raises nothing new.
    let mut child = spawn_run(&cfg, &log, &[]);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&log).unwrap().contains("Posture drift") {
        assert!(std::time::Instant::now() < end, "no second check: {}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let again = Journal::open_shared(&data).unwrap().alerts_after(0, 100).unwrap();
    assert_eq!(again.len(), 1, "one alert per distinct drift: {again:?}");
    mock.shutdown().await;
}

/// The console's posture page and its API show what `posture` shows: the scripted owner
/// grant with who and the event, entries without a note flagged, a past `at`, and clear
/// refusals (a bad `at` is 400, an unknown tenant 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_posture_page_shows_the_state_who_and_when() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, mid) = scripted_mock(MockConfig::default()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let token = "posture-web-token-0123456789";
    let cfg = write_config(dir.path(), &mock.base_url(), "", "");
    collect(&cfg, &[]).await;
    let cli = posture_json(&cfg, &[]).await;
    let at = tines_audit::timeutil::format_rfc3339(mid);
    let then_cli = posture_json(&cfg, &["--at", &at]).await;
    // The same journal, now with the console.
    let cfg = write_config(
        dir.path(),
        &mock.base_url(),
        "interval = \"1s\"",
        &format!("[web]\nbind = \"127.0.0.1:{port}\"\ntoken_env = \"WEB_TOKEN\"\n"),
    );
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&cfg, &log, &[("WEB_TOKEN", token)]);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let get = |path: String| client.get(format!("{base}{path}")).bearer_auth(token).send();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        if let Ok(r) = get(format!("/posture?tenant={TENANT}")).await
            && r.status().as_u16() == 200
        {
            break r.text().await.unwrap();
        }
        assert!(std::time::Instant::now() < end, "{}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // Every owner the CLI lists is on the page, with the e-mail of whoever granted it.
    let owners = cli["posture"]["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "owner");
    let mut n = 0;
    for o in owners {
        n += 1;
        let id = o["id"].as_str().unwrap();
        let row = page
            .split("<tr class=\"entry\"")
            .find(|r| r.contains(&format!("data-id=\"{id}\"")))
            .unwrap_or_else(|| panic!("{id}"));
        let by = o["since"]["user_email"].as_str().unwrap();
        assert!(
            row.contains(&format!("by {by}")) && row.contains(&format!("event {}", o["since"]["event_id"])),
            "{row}"
        );
    }
    assert!(n >= 1, "the scripted grants are owners");
    assert!(page.contains("id=\"posture-ip_rule\"") && page.contains(A), "{page}");
    assert!(page.contains("no note: why does it exist"), "entries without a note are flagged");
    assert!(page.contains("href=\"/posture\"") && page.contains("No drift alert"), "{page}");
    // The API says what the CLI says; at the midpoint, what the CLI says then.
    let api: Value =
        serde_json::from_str(&get(format!("/api/v1/posture?tenant={TENANT}")).await.unwrap().text().await.unwrap())
            .unwrap();
    assert_eq!(api["posture"]["entries"], cli["posture"]["entries"]);
    let then: Value = serde_json::from_str(
        &get(format!("/api/v1/posture?tenant={TENANT}&at={at}")).await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    assert_eq!(
        then["posture"]["entries"].as_array().unwrap().len(),
        then_cli["posture"]["entries"].as_array().unwrap().len()
    );
    let bad = get("/posture?at=yesterdayish".into()).await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().await.unwrap().contains("id=\"posture-error\""));
    assert_eq!(get("/api/v1/posture?tenant=nope".into()).await.unwrap().status().as_u16(), 404);
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    mock.shutdown().await;
}
