//! The console's pages keep hostile values as text: an alert's title, summary and group, a
//! triage note, a posture entry and its note, a tenant's name and a sync error that carry
//! markup come out escaped on every page that shows them, in element text and in attribute
//! values alike; and each inline stylesheet is the one the Content-Security-Policy hashes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::journal::{Journal, NewAlert, PostureNote, Record, WindowCommit};
use crate::secret::Secret;
use crate::web::{AppState, ReadinessSettings, auth::Auth};

/// The bearer token of [`serve`]'s router.
pub(super) const TOKEN: &str = "page-escape-unit-token-0123";
/// Markup that runs a script as element content, and markup that leaves an attribute value.
const SCRIPT: &str = "<script>alert(1)</script>";
const ATTR: &str = "\"><img src=x onerror=alert(2)>";
const T0: i64 = 1_700_000_000;

fn hostile(what: &str) -> String {
    format!("{what} {SCRIPT}{ATTR}")
}

/// `hostile(what)` as a page must carry it: as text, whether in an element or an attribute.
fn escaped(what: &str) -> String {
    format!("{what} &lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;")
}

fn url_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A journal of one tenant with a hostile name: an API key and an IP rule whose records
/// carry markup (so does the actor's address), a note on the rule, and an alert whose rule
/// title, summary and group do too.
fn journal(dir: &std::path::Path, tenant: &str) -> Journal {
    let j = Journal::open(dir).unwrap();
    j.start_progress(tenant, "cursor", 0, None, "").unwrap();
    let actor = hostile("ann@acme.example");
    let events = [
        (1, "AuthenticationTokenCreation", json!({"inputs": {"name": hostile("key"), "isServiceToken": true}})),
        (2, "IPAccessControlRuleCreation", json!({"inputs": {"ip": "203.0.113.0/24", "description": hostile("rule")}})),
    ];
    let raws: Vec<String> = events
        .iter()
        .map(|(id, op, inputs)| {
            json!({"id": id, "created_at": crate::timeutil::format_rfc3339(T0 + id), "operation_name": op,
                   "user_email": actor, "user_id": 5101, "request_ip": "86.40.0.10", "inputs": inputs})
            .to_string()
        })
        .collect();
    let recs = events.iter().zip(&raws).map(|((id, op, _), raw)| Record {
        id: *id,
        created_at: T0 + id,
        operation_name: op,
        user_id: Some(5101),
        user_email: Some(&actor),
        request_ip: Some("86.40.0.10"),
        raw,
    });
    let window = WindowCommit { tenant, job: "cursor", from: 0, to: T0 + 100, fetched: 2 };
    j.commit_window(&window, recs).unwrap();
    j.add_posture_note(&PostureNote {
        seq: 0,
        tenant: tenant.into(),
        kind: "ip_rule".into(),
        entry_id: "203.0.113.0/24".into(),
        why: hostile("why"),
        requested_by: hostile("asker"),
        noted_by: "ops".into(),
        noted_at: T0 + 50,
    })
    .unwrap();
    let alert = NewAlert {
        id: "ip-rule:2".into(),
        rule_id: "ip-rule".into(),
        group_key: "[]".into(),
        tenant: tenant.into(),
        event_time: T0 + 2,
        trigger_seq: 2,
        event_ids: vec![2],
    };
    let body = json!({
        "rule": {"title": hostile("title"), "level": "high"},
        "summary": hostile("summary"),
        "group": {"user": hostile("group")},
        "events": [{}],
    })
    .to_string();
    j.commit_detection("detector", 0, 2, "{}", &[alert], |_, _| body.clone()).unwrap();
    j
}

/// The real router on a port of its own, over `journal`, for `tenant`, taking [`TOKEN`].
pub(super) async fn serve(journal: Journal, tenant: &str) -> String {
    let state = AppState {
        journal,
        auth: Arc::new(Auth::new(Secret::new(TOKEN))),
        tenants: vec![tenant.into()],
        sinks: vec![],
        readiness: ReadinessSettings {
            tenant_stale_after: Duration::from_secs(600),
            sink_stuck_after: Duration::from_secs(900),
        },
        geo: Arc::new(crate::query::geo::NoCountries),
        rules: Arc::new(crate::web::alerts::RuleBook::default()),
        signing_key: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(crate::web::serve(listener, state, std::future::pending()));
    base
}

async fn get(base: &str, path: &str, status: u16) -> String {
    let resp = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), status, "{path}");
    resp.text().await.unwrap()
}

async fn post_form(base: &str, path: &str, pairs: &[(&str, &str)]) -> (u16, String) {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        form.append_pair(k, v);
    }
    // The 303 a saved form answers is what is checked, not the page it leads to.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = client
        .post(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// `page` carries none of the markup as markup, and each of `whats` as escaped text.
fn assert_escaped(path: &str, page: &str, whats: &[&str]) {
    for raw in [SCRIPT, "<img"] {
        assert!(!page.contains(raw), "{path}: {raw} reached the page as markup:\n{page}");
    }
    for what in whats {
        assert!(page.contains(&escaped(what)), "{path}: {what} is not on the page as text:\n{page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_titles_notes_posture_entries_and_tenant_names_stays_text_on_every_page() {
    let tenant = hostile("acme");
    let dir = tempfile::tempdir().unwrap();
    let base = serve(journal(dir.path(), &tenant), &tenant).await;
    crate::status::sync_failed(&tenant, &hostile("sync error"));

    // A triage note, saved, then shown in the history.
    let (code, _) =
        post_form(&base, "/alerts/ip-rule%3A2/triage", &[("status", "acknowledged"), ("note", &hostile("note"))]).await;
    assert_eq!(code, 303, "the triage form saved");

    // The alert list (the tenant is also a datalist option's value), its groups, the detail.
    let path = "/alerts";
    assert_escaped(path, &get(&base, path, 200).await, &["title", "summary", "acme"]);
    let path = "/alerts?group=true";
    assert_escaped(path, &get(&base, path, 200).await, &["title", "acme"]);
    let path = "/alerts/ip-rule%3A2";
    let detail = get(&base, path, 200).await;
    assert_escaped(path, &detail, &["title", "summary", "acme", "note"]);
    assert!(detail.contains(&format!("user={}", escaped("group"))), "the group's values as text:\n{detail}");
    // A refused filter and a refused triage show what was typed again, in a value and a textarea.
    let path = format!("/alerts?status=resolved&tenant={}", url_encoded(&tenant));
    let refused = get(&base, &path, 400).await;
    assert_escaped(&path, &refused, &["acme"]);
    assert!(refused.contains(&format!("value=\"{}\"", escaped("acme"))), "the tenant box keeps it:\n{refused}");
    let path = "/alerts/ip-rule%3A2/triage";
    let (code, echo) = post_form(&base, path, &[("status", "bogus"), ("note", &hostile("second note"))]).await;
    assert_eq!(code, 400, "{echo}");
    assert_escaped(path, &echo, &["title", "second note"]);
    assert!(echo.contains(&format!("placeholder=\"why\">{}</textarea>", escaped("second note"))), "{echo}");
    let path = format!("/alerts/{}", url_encoded(&hostile("id")).replace('+', "%20"));
    assert_escaped(&path, &get(&base, &path, 404).await, &["id"]);

    // The posture: the tenant (in the heading and the picker), the key's name, the rule's
    // description, who changed them, and the note on the rule.
    let path = format!("/posture?tenant={}", url_encoded(&tenant));
    let posture = get(&base, &path, 200).await;
    assert_escaped(&path, &posture, &["acme", "key", "rule", "ann@acme.example", "why", "asker"]);
    assert!(posture.contains(&format!("<option value=\"{}\" selected>", escaped("acme"))), "{posture}");
    assert!(posture.contains(&format!("data-id=\"{}\"", escaped("key"))), "the key's row:\n{posture}");

    // The status page: the tenant and its last sync error.
    assert_escaped("/status", &get(&base, "/status", 200).await, &["acme", "sync error"]);
}

/// The Content-Security-Policy allows inline styles by hash: the login page's and the
/// console's `<style>` must be byte for byte what it hashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pages_inline_style_is_the_one_the_policy_hashes() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let base = serve(Journal::open(dir.path()).unwrap(), "t").await;
    for path in ["/login", "/status"] {
        let resp = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_string();
        let page = resp.text().await.unwrap();
        let style = &page[page.find("<style>").expect("an inline style") + "<style>".len()..];
        let style = &style[..style.find("</style>").unwrap()];
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style.as_bytes()));
        assert!(csp.contains(&format!("'sha256-{hash}'")), "{path}: its style is not the hashed one: {csp}");
    }
}
