//! The console: server-rendered pages (no script, nothing fetched from
//! elsewhere, so it works offline and prints): events with the search filters
//! and a timeline, and the collection status (the alert pages are `web::alerts`). No key or
//! secret of a tenant or sink is ever on a page: every page passes through the
//! secret registry on its way out (`web::redact_response`).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, PreEscaped, html};

use super::AppState;
use crate::query;
use crate::timeutil::{format_rfc3339, now_secs};

pub(super) const CSS: &str = include_str!("console.css");

pub(super) fn login_redirect() -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, "/login")]).into_response()
}

pub(super) const JS: &str = include_str!("console.js");

/// A console page around `body` (already HTML): the stylesheet and the script inline (the
/// Content-Security-Policy allows exactly these two by hash), the navigation, and the
/// logout form with the session's CSRF token.
pub(super) fn page(title: &str, active: &str, body: &str, csrf: &str) -> Html<String> {
    const NAV: [(&str, &str); 5] = [
        ("/events", "Events"),
        ("/searches", "Searches"),
        ("/alerts", "Alerts"),
        ("/posture", "Posture"),
        ("/status", "Status"),
    ];
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width,initial-scale=1";
                    title { (title) " · tines-audit" }
                    style { (PreEscaped(CSS)) }
                    script { (PreEscaped(JS)) }
                }
                body {
                    header {
                        b { "tines-audit" }
                        nav { @for (href, name) in NAV { a href=(href) .active[name == active] { (name) } } }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button #logout { "Log out" }
                        }
                    }
                    main { (PreEscaped(body)) }
                }
            }
        }
        .into_string(),
    )
}

pub(super) fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub(super) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    (StatusCode::SEE_OTHER, [(LOCATION, "/events")]).into_response()
}

pub(super) async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let snapshot = state
        .journal
        .call(|j| {
            let now = now_secs();
            let rates = (j.inserted_since(now - 300)?, j.inserted_since(now - 3600)?);
            Ok((
                j.all_progress()?,
                j.consumers()?,
                j.max_seq()?,
                j.count_events(None)?,
                rates,
                query::index::state(j)?,
                j.size_bytes(),
                (j.quarantine_counts()?, j.latest_checkpoints()?),
            ))
        })
        .await;
    let (progress, consumers, max_seq, total, (last5, last60), index, bytes, (quarantined, checkpoints)) =
        match snapshot {
            Ok(s) => s,
            Err(e) => {
                let body = html! { p.error { (e.to_string()) } };
                return page("Status", "Status", &body.into_string(), &csrf).into_response();
            }
        };
    let now = now_secs();
    let ago = |t: Option<i64>| t.map_or("—".to_string(), |t| format!("{} ago", age(now - t)));
    let last_error = |e: &Option<String>, at: Option<i64>| match (e, at) {
        (Some(e), Some(at)) => format!("{e} ({} ago)", age(now - at)),
        _ => "—".into(),
    };
    let tenants = crate::status::tenants();
    let sinks = crate::status::sinks();
    let mut names: Vec<&String> = state.tenants.iter().collect();
    for p in &progress {
        if !names.contains(&&p.tenant) {
            names.push(&p.tenant);
        }
    }
    let body = html! {
        h1 { "Status" }
        p #rates {
            "Journal: " b { (total) } " events (" (format!("{:.1}", bytes as f64 / 1_048_576.0)) " MiB). "
            "Collected in the last 5 minutes: " b { (last5) } " (" (format!("{:.1}", last5 as f64 / 300.0)) "/s); "
            "last hour: " b { (last60) } ". Search index at seq " (index.position) " of " (max_seq) "."
        }
        h2 { "Tenants" }
        table #tenants {
            tr {
                th { "Tenant" } th { "Job" } th { "Position" } th { "Lag behind now" } th { "Last sync" }
                th { "Last error" }
            }
            @for name in names {
                @let st = tenants.get(name.as_str()).cloned().unwrap_or_default();
                @let jobs: Vec<_> = progress.iter().filter(|p| &p.tenant == name).collect();
                @if jobs.is_empty() {
                    tr { td { (name) } td colspan="5" { "not collected yet" } }
                }
                @for p in jobs {
                    @let lag = match (p.range_end, p.finished_at) {
                        (None, _) => age(now - p.position),
                        (Some(_), Some(_)) => "finished".into(),
                        (Some(end), None) => format!("{} to go", age(end - p.position)),
                    };
                    tr {
                        td { (p.tenant) } td { (p.job) } td { (format_rfc3339(p.position)) } td { (lag) }
                        td { (ago(st.last_success)) } td { (last_error(&st.last_error, st.last_error_at)) }
                    }
                }
            }
        }
        // What collection learnt about the API beside the events: its clock, the records it
        // could not store, and the late events reconciliation found.
        h2 { "Collection checks" }
        table #checks {
            tr {
                th { "Tenant" } th { "API clock" } th { "Quarantined records" } th { "Last reconciliation" }
                th { "Late events found (this process)" }
            }
            @for (name, st) in &tenants {
                @let clock = match st.api_clock_offset_secs {
                    None => "—".to_string(),
                    Some(0) => "in step with ours".to_string(),
                    Some(o) if o > 0 => format!("{o} s ahead of ours"),
                    Some(o) => format!("{} s behind ours", -o),
                };
                tr {
                    td { (name) } td { (clock) }
                    td { (quarantined.iter().find(|(t, _)| t == name).map_or(0, |(_, n)| *n)) }
                    td { (ago(st.last_reconcile)) } td { (st.reconcile_found) }
                }
            }
        }
        h2 { "Sinks" }
        table #sinks {
            tr { th { "Sink" } th { "Offset (seq)" } th { "Backlog" } th { "Last delivery" } th { "Last error" } }
            @for (name, off) in &consumers {
                @let st = sinks.get(name.as_str()).cloned().unwrap_or_default();
                tr {
                    td { (name) } td { (off.position) } td { (max_seq - off.position) } td { (ago(st.last_success)) }
                    td { (last_error(&st.last_error, st.last_error_at)) }
                }
            }
        }
        // The last signed checkpoint of each tenant's chain: what `tines-audit verify` and an
        // auditor with the public key can hold the journal to.
        h2 { "Signed checkpoints" }
        table #checkpoints {
            tr {
                th { "Tenant" } th { "Last checkpoint" } th { "Signed" } th { "Chain position" } th { "Why" }
                th { "Key" }
            }
            @if checkpoints.is_empty() {
                tr { td colspan="6" { "none yet: the first is signed after the first collection" } }
            }
            @for c in &checkpoints {
                @if let Some(p) = c.parse() {
                    @let signed = crate::timeutil::parse_rfc3339(&p.time)
                        .map_or(p.time.clone(), |t| format!("{} ({} ago)", p.time, age(now - t)));
                    tr {
                        td { (c.tenant) } td { (p.number) } td { (signed) } td { (p.chain_n) } td { (p.reason) }
                        td { code { (p.key) } }
                    }
                }
            }
        }
    };
    page("Status", "Status", &body.into_string(), &csrf).into_response()
}

#[cfg(test)]
mod tests {
    use crate::journal::{Journal, NewAlert, Record, WindowCommit};

    use crate::web::page_tests::TOKEN;

    async fn serve(journal: Journal) -> String {
        crate::web::page_tests::serve(journal, "t").await
    }

    async fn page(url: &str) -> String {
        let resp = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        resp.text().await.unwrap()
    }

    fn data_ids(html: &str) -> Vec<i64> {
        let mut ids: Vec<i64> =
            html.split("data-id=\"").skip(1).map(|s| s[..s.find('"').unwrap()].parse().unwrap()).collect();
        ids.sort_unstable();
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_alert_events_link_opened_the_tenants_last_24h_instead_of_the_alerts_own_events() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.start_progress("t", "cursor", 0, None, "").unwrap();
        // Six events of one tenant within a minute; the alert is about the last three.
        let raws: Vec<String> = (1..=6).map(|i| format!("{{\"id\":{i}}}")).collect();
        let recs = raws.iter().enumerate().map(|(i, raw)| Record {
            id: i as i64 + 1,
            created_at: 1_700_000_000 + i as i64,
            operation_name: "CredentialDestruction",
            user_id: Some(1),
            user_email: None,
            request_ip: None,
            raw,
        });
        let window = WindowCommit { tenant: "t", job: "cursor", from: 0, to: 1_700_000_100, fetched: 6 };
        j.commit_window(&window, recs).unwrap();
        let alert = NewAlert {
            id: "mass:6".into(),
            rule_id: "mass".into(),
            group_key: "[]".into(),
            tenant: "t".into(),
            event_time: 1_700_000_005,
            trigger_seq: 6,
            event_ids: vec![4, 5, 6],
        };
        let body = r#"{"rule":{"title":"Mass deletion","level":"high"},"summary":"s","events":[{},{},{}]}"#;
        j.commit_detection("detector", 0, 6, "{}", &[alert], |_, _| body.to_string()).unwrap();
        let base = serve(j).await;

        let alerts = page(&format!("{base}/alerts")).await;
        let row = &alerts[alerts.find("<tr class=\"alert").expect("the alert is listed")..];
        let href = &row[row.find("href=\"/events?").unwrap() + 6..];
        let href = href[..href.find('"').unwrap()].replace("&amp;", "&");
        assert!(href.starts_with("/events?"), "{href}");
        let events = page(&format!("{base}{href}")).await;
        assert_eq!(data_ids(&events), vec![4, 5, 6], "the link shows the alert's own events: {href}");
        assert!(events.contains("id=\"alert-filter\"") && events.contains("mass:6"));
        // The same through the API.
        let api: serde_json::Value =
            serde_json::from_str(&page(&format!("{base}/api/v1/events?alert=mass%3A6")).await).unwrap();
        let mut ids: Vec<i64> = api["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![4, 5, 6]);
        assert!(data_ids(&page(&format!("{base}/events?alert=nope")).await).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_values_in_records_stay_text_on_the_events_page_and_permalinks() {
        const XSS: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.start_progress("t", "cursor", 0, None, "").unwrap();
        let raw =
            serde_json::json!({"id": 1, "operation_name": XSS, "user_name": XSS, "inputs": {"name": XSS}}).to_string();
        let email = format!("{XSS}@x.io");
        let recs = [Record {
            id: 1,
            created_at: 1_700_000_000,
            operation_name: XSS,
            user_id: Some(7),
            user_email: Some(&email),
            request_ip: Some(XSS),
            raw: &raw,
        }];
        let window = WindowCommit { tenant: "t", job: "cursor", from: 0, to: 1_700_000_100, fetched: 1 };
        j.commit_window(&window, recs).unwrap();
        j.index_batch(100).unwrap();
        let base = serve(j).await;
        let q = url::form_urlencoded::byte_serialize(XSS.as_bytes()).collect::<String>();
        for path in ["/events".to_string(), "/events/1".to_string(), format!("/events?q={q}&from={q}")] {
            let resp = reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(TOKEN).send().await.unwrap();
            let html = resp.text().await.unwrap();
            assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path}: the value is shown, as text");
            assert_eq!(html.matches("<script").count(), 1, "{path}: only the console's own script");
            assert!(!html.contains("<img"), "{path}: {html}");
        }
    }
}
