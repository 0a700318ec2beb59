//! The console: server-rendered pages (no script, nothing fetched from
//! elsewhere, so it works offline and prints): events with the search filters
//! and a timeline, and the collection status (the alert pages are `web::alerts`). No key or
//! secret of a tenant or sink is ever on a page: every page passes through the
//! secret registry on its way out (`web::redact_response`).

use std::fmt::Write;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{Html, IntoResponse, Response};

use super::{AppState, html_escape as esc};
use crate::catalog::Category;
use crate::query::{self, chart};
use crate::timeutil::{format_rfc3339, now_secs};

pub(super) const CSS: &str = include_str!("console.css");

pub(super) fn login_redirect() -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, "/login")]).into_response()
}

pub(super) fn page(title: &str, active: &str, body: &str, csrf: &str) -> Html<String> {
    let nav = [
        ("/events", "Events"),
        ("/searches", "Searches"),
        ("/alerts", "Alerts"),
        ("/posture", "Posture"),
        ("/status", "Status"),
    ]
    .iter()
    .map(|(href, name)| {
        let cls = if *name == active { " class=\"active\"" } else { "" };
        format!("<a href=\"{href}\"{cls}>{name}</a>")
    })
    .collect::<String>();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{} · tines-audit</title><style>{CSS}</style></head><body><header><b>tines-audit</b><nav>{nav}</nav><form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button id=\"logout\">Log out</button></form></header><main>{body}</main></body></html>",
        esc(title),
        esc(csrf)
    ))
}

fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn input(name: &str, label: &str, value: &str, hint: &str) -> String {
    format!(
        "<label>{label}<input name=\"{name}\" id=\"f-{name}\" value=\"{}\" placeholder=\"{}\"></label>",
        esc(value),
        esc(hint)
    )
}

fn pretty(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| raw.to_string())
}

fn query_string(pairs: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub(super) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    (StatusCode::SEE_OTHER, [(LOCATION, "/events")]).into_response()
}

pub(super) async fn events(State(state): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !state.auth.allows(&headers) {
        return login_redirect();
    }
    let csrf = state.auth.csrf_token(&headers).unwrap_or_default();
    let parsed = super::api::parse_query(raw.as_deref());
    let args = parsed.as_ref().map(|q| q.args.clone()).unwrap_or_default();
    let alert = parsed.as_ref().ok().and_then(|q| q.alert.clone());
    let first = |v: &Vec<String>| v.join(", ");
    let mut body = String::new();
    let cats = Category::ALL
        .iter()
        .map(|c| {
            let sel = if args.category.iter().any(|x| x == c.as_str()) { " selected" } else { "" };
            format!("<option value=\"{0}\"{sel}>{0}</option>", c.as_str())
        })
        .collect::<String>();
    let _ = write!(
        body,
        "<form id=\"filters\" method=\"get\" action=\"/events\" class=\"filters\">{}{}{}{}<label>Category<select name=\"category\" id=\"f-category\"><option value=\"\">any</option>{cats}</select></label>{}{}{}{}{}<button type=\"submit\" id=\"apply\">Search</button> <a href=\"/events\">Clear</a></form>",
        // Refining the filters keeps to the alert's events.
        alert
            .as_deref()
            .map_or(String::new(), |a| format!("<input type=\"hidden\" name=\"alert\" value=\"{}\">", esc(a))),
        input("user", "User", &first(&args.user), "id, e-mail or name"),
        input("operation", "Operation", &first(&args.operation), "e.g. CredentialDestruction"),
        input("tenant", "Tenant", &first(&args.tenant), "any"),
        input("from", "From", args.from.as_deref().unwrap_or(""), "30d or 2024-05-01"),
        input("to", "To", args.to.as_deref().unwrap_or(""), "now"),
        input("ip", "IP or CIDR", &first(&args.ip), "10.0.0.0/8"),
        input("country", "Country", &first(&args.country), "IE"),
        input("q", "Free text", args.text.as_deref().unwrap_or(""), "words, \"phrase\", prefix*"),
    );
    let q = match parsed {
        Ok(q) => q,
        Err(e) => {
            let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", esc(&e));
            return (StatusCode::BAD_REQUEST, page("Events", "Events", &body, &csrf)).into_response();
        }
    };
    if let Some(a) = &alert {
        let _ = write!(
            body,
            "<p class=\"meta\" id=\"alert-filter\">The events of alert <code>{}</code>. <a href=\"/events\">All events</a></p>",
            esc(a)
        );
    }
    let geo = state.geo.clone();
    let (filter, cursor, limit) = (q.filter.clone(), q.cursor, q.limit.unwrap_or(50));
    let result = state
        .journal
        .call(move |j| {
            let run = || -> Result<_, query::SearchError> {
                let page = query::search(j, &filter, cursor, limit, geo.as_ref())?;
                let span = query::search::span(j, &filter, geo.as_ref())?;
                let hist = match span {
                    Some((a, b)) => {
                        let (from, to) = (filter.from.unwrap_or(a), filter.to.unwrap_or(b + 1).min(now_secs() + 1));
                        let bucket = chart::bucket_for((to - from).max(1));
                        let from = from - from.rem_euclid(bucket);
                        Some((query::histogram(j, &filter, bucket, geo.as_ref())?, from, to.max(from + bucket), bucket))
                    }
                    None => None,
                };
                Ok((page, hist, query::index::state(j)?))
            };
            Ok(run())
        })
        .await;
    let (found, hist, index) = match result {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", esc(&e.to_string()));
            return (StatusCode::BAD_REQUEST, page("Events", "Events", &body, &csrf)).into_response();
        }
        Err(e) => {
            let _ = write!(body, "<p class=\"error\" id=\"error\">search failed: {}</p>", esc(&e.to_string()));
            return (StatusCode::INTERNAL_SERVER_ERROR, page("Events", "Events", &body, &csrf)).into_response();
        }
    };
    match &hist {
        Some((points, from, to, bucket)) => {
            let total: i64 = points.iter().map(|p| p.1).sum();
            let _ = write!(
                body,
                "<div id=\"histogram\"><p class=\"meta\"><span id=\"total\">{total}</span> matching events, {} to {} ({} per bar)</p>{}</div>",
                format_rfc3339(*from),
                format_rfc3339(*to),
                age(*bucket),
                chart::bar_chart(points, *from, *to, *bucket, 960, 120)
            );
        }
        None => body
            .push_str("<div id=\"histogram\"><p class=\"meta\"><span id=\"total\">0</span> matching events</p></div>"),
    }
    if index.behind() > 0 {
        let _ = write!(
            body,
            "<p class=\"meta\">The search index is {} events behind the journal: free text, names, networks, countries and categories do not see them yet.</p>",
            index.behind()
        );
    }
    if found.events.is_empty() {
        body.push_str("<p id=\"empty\">No matching events.</p>");
    }
    body.push_str("<div id=\"events\"><div class=\"row head\"><span>Time (UTC)</span><span>Tenant</span><span>Operation</span><span>User</span><span>IP</span><span>Country</span></div>");
    for e in &found.events {
        let user = match (&e.user_email, &e.user_name) {
            (Some(m), Some(n)) if !n.trim().is_empty() => format!("{n} <{m}>"),
            (Some(m), _) => m.clone(),
            (None, Some(n)) => n.clone(),
            (None, None) => String::new(),
        };
        let _ = write!(
            body,
            "<details class=\"event\" data-id=\"{}\"><summary class=\"row\"><span>{}</span><span>{}</span><span title=\"{}\">{}</span><span>{}</span><span>{}</span><span>{}</span></summary><div class=\"record\"><p class=\"meta\">Tines id {} · journal seq {} · category {}</p><pre class=\"raw\">{}</pre></div></details>",
            e.id,
            e.created_at,
            esc(&e.tenant),
            esc(crate::catalog::find(&e.operation_name).map_or("", |o| o.description)),
            esc(&e.operation_name),
            esc(&user),
            esc(e.request_ip.as_deref().unwrap_or("")),
            esc(e.country.as_deref().unwrap_or("")),
            e.id,
            e.seq,
            e.category,
            esc(&pretty(&e.raw))
        );
    }
    body.push_str("</div>");
    let mut pairs = q.args.to_pairs();
    if let Some(a) = &alert {
        pairs.push(("alert", a.clone()));
    }
    if q.limit.is_some() {
        pairs.push(("limit", limit.to_string()));
    }
    body.push_str("<p class=\"pager\">");
    if q.cursor.is_some() {
        let _ = write!(body, "<a href=\"/events?{}\" id=\"newest\">← Newest</a> ", esc(&query_string(&pairs)));
    }
    if let Some(c) = &found.next_cursor {
        pairs.push(("cursor", c.clone()));
        let _ = write!(body, "<a href=\"/events?{}\" id=\"older\">Older →</a>", esc(&query_string(&pairs)));
    }
    body.push_str("</p>");
    page("Events", "Events", &body, &csrf).into_response()
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
                return page("Status", "Status", &format!("<p class=\"error\">{}</p>", esc(&e.to_string())), &csrf)
                    .into_response();
            }
        };
    let now = now_secs();
    let tenants = crate::status::tenants();
    let sinks = crate::status::sinks();
    let mut body = String::from("<h1>Status</h1>");
    let _ = write!(
        body,
        "<p id=\"rates\">Journal: <b>{total}</b> events ({:.1} MiB). Collected in the last 5 minutes: <b>{last5}</b> ({:.1}/s); last hour: <b>{last60}</b>. Search index at seq {} of {max_seq}.</p>",
        bytes as f64 / 1_048_576.0,
        last5 as f64 / 300.0,
        index.position
    );
    body.push_str("<h2>Tenants</h2><table id=\"tenants\"><tr><th>Tenant</th><th>Job</th><th>Position</th><th>Lag behind now</th><th>Last sync</th><th>Last error</th></tr>");
    let mut names: Vec<&String> = state.tenants.iter().collect();
    for p in &progress {
        if !names.contains(&&p.tenant) {
            names.push(&p.tenant);
        }
    }
    for name in names {
        let st = tenants.get(name.as_str()).cloned().unwrap_or_default();
        let jobs: Vec<_> = progress.iter().filter(|p| &p.tenant == name).collect();
        if jobs.is_empty() {
            let _ = write!(body, "<tr><td>{}</td><td colspan=\"5\">not collected yet</td></tr>", esc(name));
        }
        for p in jobs {
            let lag = match (p.range_end, p.finished_at) {
                (None, _) => age(now - p.position),
                (Some(_), Some(_)) => "finished".into(),
                (Some(end), None) => format!("{} to go", age(end - p.position)),
            };
            let last_sync = st.last_success.map_or("—".to_string(), |t| format!("{} ago", age(now - t)));
            let last_error = match (&st.last_error, st.last_error_at) {
                (Some(e), Some(at)) => format!("{} ({} ago)", esc(e), age(now - at)),
                _ => "—".into(),
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{lag}</td><td>{last_sync}</td><td>{last_error}</td></tr>",
                esc(&p.tenant),
                esc(&p.job),
                format_rfc3339(p.position)
            );
        }
    }
    // What collection learnt about the API beside the events: its clock, the records it could
    // not store, and the late events reconciliation found.
    body.push_str("</table><h2>Collection checks</h2><table id=\"checks\"><tr><th>Tenant</th><th>API clock</th><th>Quarantined records</th><th>Last reconciliation</th><th>Late events found (this process)</th></tr>");
    for (name, st) in &tenants {
        let clock = match st.api_clock_offset_secs {
            None => "—".to_string(),
            Some(0) => "in step with ours".to_string(),
            Some(o) if o > 0 => format!("{o} s ahead of ours"),
            Some(o) => format!("{} s behind ours", -o),
        };
        let q = quarantined.iter().find(|(t, _)| t == name).map_or(0, |(_, n)| *n);
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{clock}</td><td>{q}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            st.last_reconcile.map_or("—".to_string(), |t| format!("{} ago", age(now - t))),
            st.reconcile_found
        );
    }
    body.push_str("</table><h2>Sinks</h2><table id=\"sinks\"><tr><th>Sink</th><th>Offset (seq)</th><th>Backlog</th><th>Last delivery</th><th>Last error</th></tr>");
    for (name, off) in &consumers {
        let st = sinks.get(name.as_str()).cloned().unwrap_or_default();
        let last_error = match (&st.last_error, st.last_error_at) {
            (Some(e), Some(at)) => format!("{} ({} ago)", esc(e), age(now - at)),
            _ => "—".into(),
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{last_error}</td></tr>",
            esc(name),
            off.position,
            max_seq - off.position,
            st.last_success.map_or("—".to_string(), |t| format!("{} ago", age(now - t)))
        );
    }
    // The last signed checkpoint of each tenant's chain: what `tines-audit verify` and an
    // auditor with the public key can hold the journal to.
    body.push_str("</table><h2>Signed checkpoints</h2><table id=\"checkpoints\"><tr><th>Tenant</th><th>Last checkpoint</th><th>Signed</th><th>Chain position</th><th>Why</th><th>Key</th></tr>");
    if checkpoints.is_empty() {
        body.push_str("<tr><td colspan=\"6\">none yet: the first is signed after the first collection</td></tr>");
    }
    for c in &checkpoints {
        let Some(p) = c.parse() else { continue };
        let signed = crate::timeutil::parse_rfc3339(&p.time)
            .map_or(p.time.clone(), |t| format!("{} ({} ago)", p.time, age(now - t)));
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&c.tenant),
            p.number,
            esc(&signed),
            p.chain_n,
            esc(&p.reason),
            esc(&p.key)
        );
    }
    body.push_str("</table>");
    page("Status", "Status", &body, &csrf).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::journal::{Journal, NewAlert, Record, WindowCommit};
    use crate::secret::Secret;
    use crate::web::{AppState, ReadinessSettings, auth::Auth};

    const TOKEN: &str = "console-unit-token-0123";

    /// The real router on a port of its own, over `journal`.
    async fn serve(journal: Journal) -> String {
        let state = AppState {
            journal,
            auth: Arc::new(Auth::new(Secret::new(TOKEN))),
            tenants: vec!["t".into()],
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
}
