//! Alerts: what one says (what happened, who, from where, which events),
//! and where it goes. Every output (a webhook, optionally Slack-shaped;
//! stdout; a configured sink, as alert events) reads the journal's alerts
//! table from its own offset and commits only after delivery, like a sink
//! over events: a down webhook delays its alerts, never loses them, and a
//! restart does not send an alert twice (except the one batch in flight at a
//! crash, which carries the same alert `id` for receivers to deduplicate).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::engine::Raised;
use crate::journal::{AlertRow, EventBatch, EventRow, Journal, JournalError, NewAlert};
use crate::sinks::{Sink, SinkConfig, SinkError};
use crate::timeutil::format_rfc3339;

/// An alert output as configured (`[[detect.outputs]]`). A webhook URL is a
/// credential (Slack's is): `Debug` shows its scheme and host only, and
/// messages name it the same way.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputConfig {
    /// POST each alert as JSON to a URL (`format = "slack"` for a Slack incoming webhook).
    Webhook {
        #[serde(default)]
        name: Option<String>,
        url: String,
        #[serde(default)]
        format: WebhookFormat,
    },
    /// One line per alert on standard output (`format = "json"` for the whole alert).
    Stdout {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        format: StdoutFormat,
    },
    /// Alerts as events to a sink of `[[sinks]]`, by name (a file sink writes `<stem>.alerts.<ext>` beside its
    /// file, an object-store sink under `<prefix>.alerts`).
    Sink { sink: String },
}

impl std::fmt::Debug for OutputConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputConfig::Webhook { name, url, format } => f
                .debug_struct("Webhook")
                .field("name", name)
                .field("url", &url_origin(url))
                .field("format", format)
                .finish(),
            OutputConfig::Stdout { name, format } => {
                f.debug_struct("Stdout").field("name", name).field("format", format).finish()
            }
            OutputConfig::Sink { sink } => f.debug_struct("Sink").field("sink", sink).finish(),
        }
    }
}

/// `scheme://host:port` of a webhook URL: what messages may show of it.
fn url_origin(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| "(not a URL)".to_string(), |u| crate::sinks::http::origin(&u))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdoutFormat {
    #[default]
    Text,
    Json,
}

impl OutputConfig {
    /// The consumer name its offset over the alerts table is kept under.
    pub fn consumer_name(&self) -> String {
        match self {
            OutputConfig::Webhook { name: Some(n), .. } | OutputConfig::Stdout { name: Some(n), .. } => {
                format!("alerts>{n}")
            }
            OutputConfig::Webhook { url, .. } => {
                let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
                format!("alerts>webhook:{host}")
            }
            OutputConfig::Stdout { .. } => "alerts>stdout".into(),
            OutputConfig::Sink { sink } => format!("alerts>sink:{sink}"),
        }
    }

    /// Checks the settings against the configured sinks.
    pub fn validate(&self, sinks: &[SinkConfig]) -> Result<(), String> {
        match self {
            // The URL is not quoted back: it may be a credential.
            OutputConfig::Webhook { url, .. } => {
                let u = url::Url::parse(url).map_err(|e| format!("webhook url: not a URL ({e})"))?;
                if !matches!(u.scheme(), "https" | "http") {
                    return Err(format!("webhook url: scheme {}:// is not supported; use https://", u.scheme()));
                }
                Ok(())
            }
            OutputConfig::Stdout { .. } => Ok(()),
            OutputConfig::Sink { sink } => {
                if let Some(conf) = sinks.iter().find(|s| &s.name() == sink) {
                    alert_sink_config(conf).map(|_| ()).map_err(|e| format!("alert output sink {sink:?}: {e}"))
                } else {
                    Err(format!(
                        "alert output sink {sink:?} is not a configured sink (names: {})",
                        sinks.iter().map(SinkConfig::name).collect::<Vec<_>>().join(", ")
                    ))
                }
            }
        }
    }
}

/// How alert bodies link to events (`detect.event_link`, with `{tenant}`, `{id}`, `{seq}`, `{created_at}`).
#[derive(Debug, Clone, Default)]
pub struct Linker {
    pub template: Option<String>,
    /// Tenant name → its API base URL, for the default link (the API query that returns the event).
    pub bases: HashMap<String, String>,
}

impl Linker {
    pub fn link(&self, e: &EventRow, operation: &str) -> Option<String> {
        if let Some(t) = &self.template {
            return Some(
                t.replace("{tenant}", &e.tenant)
                    .replace("{id}", &e.id.to_string())
                    .replace("{seq}", &e.seq.to_string())
                    .replace("{created_at}", &format_rfc3339(e.created_at)),
            );
        }
        let base = self.bases.get(&e.tenant)?;
        let mut u = url::Url::parse(base).ok()?.join("api/v1/audit_logs").ok()?;
        u.query_pairs_mut()
            .append_pair("after", &format_rfc3339(e.created_at - 1))
            .append_pair("before", &format_rfc3339(e.created_at + 1))
            .append_pair("operation_name", operation);
        Some(u.to_string())
    }
}

/// The stored form of a raised match, before its events are looked up.
pub fn new_alert(r: &Raised) -> NewAlert {
    NewAlert {
        id: format!("{}:{}", r.rule.id, r.trigger.seq),
        rule_id: r.rule.id.clone(),
        group_key: serde_json::to_string(&r.group).unwrap_or_default(),
        tenant: r.trigger.tenant.clone(),
        event_time: r.trigger.created_at,
        trigger_seq: r.trigger.seq,
        event_ids: r.event_ids.iter().map(|(_, id)| *id).collect(),
    }
}

fn who(r: &Raised) -> String {
    let t = &r.trigger;
    match (&t.user_email, t.user_id) {
        (Some(e), Some(id)) => format!("{e} (user {id})"),
        (Some(e), None) => e.clone(),
        (None, Some(id)) => format!("user {id}"),
        (None, None) => "an unknown user".into(),
    }
}

fn place(r: &Raised) -> String {
    let t = &r.trigger;
    let ip = t.request_ip.clone().unwrap_or_else(|| "an unknown address".into());
    match (&t.country, &t.as_org) {
        (Some(c), Some(o)) => format!("{ip} ({c}, {o})"),
        (Some(c), None) => format!("{ip} ({c})"),
        _ => ip,
    }
}

fn span(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// One sentence: what happened, who, from where.
pub fn summary(r: &Raised) -> String {
    let mut s = format!("{}: {} from {}", r.rule.title, who(r), place(r));
    if let (Some(v), Some(ts)) = (r.value, r.timespan_secs) {
        s.push_str(&format!(", {v} within {} (last: {})", span(ts), r.trigger.operation_name));
    } else {
        s.push_str(&format!(" ({})", r.trigger.operation_name));
    }
    s.push_str(&format!(" in tenant {}", r.trigger.tenant));
    s
}

/// The alert as delivered: JSON with the rule, a summary, who, from where, the group, and the events with links.
pub fn body(r: &Raised, events: &[EventRow], linker: &Linker, raised_at: i64) -> Value {
    let t = &r.trigger;
    let rule = &r.rule;
    json!({
        "type": "tines_audit_alert",
        "id": format!("{}:{}", rule.id, t.seq),
        "summary": summary(r),
        "rule": {"id": rule.id, "title": rule.title, "level": rule.level, "description": rule.description, "tags": rule.tags, "file": rule.file},
        "tenant": t.tenant,
        "who": {"user_id": t.user_id, "user_email": t.user_email, "user_name": t.user_name},
        "from": {"ip": t.request_ip, "country": t.country, "asn": t.asn, "as_org": t.as_org},
        "correlation": r.correlation.as_ref().map(|c| json!({
            "type": c, "value": r.value, "timespan_secs": r.timespan_secs,
        })),
        "group": r.group.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
        "event_time": format_rfc3339(t.created_at),
        "raised_at": format_rfc3339(raised_at),
        "events": events.iter().map(|e| json!({
            "seq": e.seq, "tenant": e.tenant, "id": e.id, "created_at": format_rfc3339(e.created_at),
            "operation_name": e.operation_name, "link": linker.link(e, &e.operation_name),
        })).collect::<Vec<_>>(),
    })
}

/// A human line for stdout.
pub fn text_line(a: &AlertRow) -> String {
    let v: Value = serde_json::from_str(&a.body).unwrap_or_default();
    let level = v["rule"]["level"].as_str().unwrap_or("").to_ascii_uppercase();
    let events = v["events"].as_array().map_or(0, Vec::len);
    format!(
        "ALERT [{level}] {} ({} event{}; alert {})",
        v["summary"].as_str().unwrap_or(&a.id),
        events,
        if events == 1 { "" } else { "s" },
        a.id
    )
}

/// A Slack incoming-webhook payload for an alert.
pub fn slack_payload(a: &AlertRow) -> Value {
    let v: Value = serde_json::from_str(&a.body).unwrap_or_default();
    let summary = v["summary"].as_str().unwrap_or(&a.id).to_string();
    let links: Vec<String> = v["events"]
        .as_array()
        .into_iter()
        .flatten()
        .take(10)
        .map(|e| match e["link"].as_str() {
            Some(l) => format!("<{l}|{} #{}>", e["operation_name"].as_str().unwrap_or("event"), e["id"]),
            None => format!("{} #{}", e["operation_name"].as_str().unwrap_or("event"), e["id"]),
        })
        .collect();
    let level = v["rule"]["level"].as_str().unwrap_or("medium");
    json!({
        "text": format!(":rotating_light: {summary}"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": v["rule"]["title"].as_str().unwrap_or("tines-audit alert")}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}* ({level})\n{}", summary, v["rule"]["description"].as_str().unwrap_or(""))}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Events: {}  ·  alert `{}`", if links.is_empty() { "none".to_string() } else { links.join(", ") }, a.id)}]},
        ],
    })
}

/// POSTs one alert to a webhook as `format` says; any answer is returned, and no answer
/// is why, without the URL (reqwest's own message quotes all of it).
async fn post_alert(
    client: &reqwest::Client,
    url: &str,
    format: WebhookFormat,
    a: &AlertRow,
) -> Result<reqwest::Response, String> {
    let payload = match format {
        WebhookFormat::Json => serde_json::from_str(&a.body).unwrap_or(Value::Null),
        WebhookFormat::Slack => slack_payload(a),
    };
    client
        .post(url)
        .header("Idempotency-Key", &a.id)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(payload.to_string())
        .send()
        .await
        .map_err(|e| crate::sinks::http::describe(&e))
}

fn webhook_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| format!("alert webhook client: {e}"))
}

/// What an output answered the self-test's alerts (`detect::selftest`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", content = "answer", rename_all = "snake_case")]
pub enum TestAnswer {
    /// The destination took every test alert; what it answered.
    Delivered(String),
    /// An exactly-once destination (a file or object-store sink): reached and written to by
    /// its health check's probe, but given no test alert, since its files and objects are
    /// named and counted by journal number and one the journal does not hold would break that.
    Checked(String),
    /// The destination refused or could not be reached: why.
    Failed(String),
}

impl TestAnswer {
    pub fn ok(&self) -> bool {
        !matches!(self, TestAnswer::Failed(_))
    }
}

impl OutputConfig {
    /// Where the output delivers, as messages may show it (a webhook by its origin only).
    pub fn destination(&self) -> String {
        match self {
            OutputConfig::Webhook { url, format: WebhookFormat::Json, .. } => format!("webhook {}", url_origin(url)),
            OutputConfig::Webhook { url, format: WebhookFormat::Slack, .. } => {
                format!("webhook {} (Slack)", url_origin(url))
            }
            OutputConfig::Stdout { .. } => "standard output".into(),
            OutputConfig::Sink { sink } => format!("sink {sink}"),
        }
    }
}

/// Hands `alerts` (the self-test's, marked as tests) to an output by its real delivery
/// path, outside its offset over the alerts table: nothing is committed, and the
/// detector's own alerts are not touched. Stops at the first alert refused.
pub async fn deliver_test(c: &OutputConfig, sinks: &[SinkConfig], alerts: &[AlertRow]) -> TestAnswer {
    let answer = deliver_test_inner(c, sinks, alerts).await;
    // What a receiver or a sink says may quote a configured secret: never shown.
    match answer {
        TestAnswer::Delivered(m) => TestAnswer::Delivered(crate::secret::redact(&m).into_owned()),
        TestAnswer::Checked(m) => TestAnswer::Checked(crate::secret::redact(&m).into_owned()),
        TestAnswer::Failed(m) => TestAnswer::Failed(crate::secret::redact(&m).into_owned()),
    }
}

async fn deliver_test_inner(c: &OutputConfig, sinks: &[SinkConfig], alerts: &[AlertRow]) -> TestAnswer {
    let n = alerts.len();
    match c {
        OutputConfig::Webhook { url, format, .. } => {
            let client = match webhook_client() {
                Ok(c) => c,
                Err(e) => return TestAnswer::Failed(e),
            };
            let mut last = None;
            for a in alerts {
                match post_alert(&client, url, *format, a).await {
                    Ok(resp) if resp.status().is_success() => last = Some(resp.status()),
                    Ok(resp) => {
                        let status = resp.status();
                        let said = body_excerpt(resp).await;
                        return TestAnswer::Failed(format!("answered {status}{said} to test alert {}", a.id));
                    }
                    Err(e) => return TestAnswer::Failed(format!("unreachable ({e})")),
                }
            }
            match last {
                Some(s) => TestAnswer::Delivered(format!("HTTP {s} to each of {n} test alert(s)")),
                None => TestAnswer::Delivered("no test alert to send".into()),
            }
        }
        OutputConfig::Stdout { format, .. } => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for a in alerts {
                let line = match format {
                    StdoutFormat::Text => text_line(a),
                    StdoutFormat::Json => a.body.clone(),
                };
                if let Err(e) = writeln!(out, "{line}") {
                    return TestAnswer::Failed(format!("standard output: {e}"));
                }
            }
            TestAnswer::Delivered(format!("{n} test alert(s) written"))
        }
        OutputConfig::Sink { sink } => {
            let Some(conf) = sinks.iter().find(|s| &s.name() == sink) else {
                return TestAnswer::Failed(format!("no sink named {sink}"));
            };
            let twin = match alert_sink_config(conf) {
                Ok(t) => t,
                Err(e) => return TestAnswer::Failed(e),
            };
            let exactly_once = matches!(twin, SinkConfig::File { .. } | SinkConfig::ObjectStore(_));
            let mut built = match twin.build() {
                Ok(b) => b,
                Err(e) => return TestAnswer::Failed(e),
            };
            if exactly_once {
                return match built.health_check().await {
                    Ok(m) => TestAnswer::Checked(format!(
                        "{m}; no test alert written (its alerts are named and counted by journal number)"
                    )),
                    Err(e) => TestAnswer::Failed(e.to_string()),
                };
            }
            let mut batch = EventBatch::default();
            for a in alerts {
                batch.push(a.seq, &a.tenant, a.seq, a.event_time, &a.body);
            }
            match built.deliver(Arc::new(batch)).await {
                Ok(_) => TestAnswer::Delivered(format!("the sink accepted {n} test alert(s)")),
                Err(e) => TestAnswer::Failed(e.to_string()),
            }
        }
    }
}

/// The start of an error answer's body, on one line (`: text`), or nothing.
async fn body_excerpt(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect();
    if line.is_empty() { String::new() } else { format!(": {}", crate::query::search::printable(&line)) }
}

/// Why an output could not deliver.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("alert output {name}: {message}")]
    Deliver { name: String, message: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

enum Target {
    /// `origin` is what messages show of the URL.
    Webhook {
        client: reqwest::Client,
        url: String,
        origin: String,
        format: WebhookFormat,
    },
    Stdout(StdoutFormat),
    Sink {
        sink: Box<dyn Sink>,
        recovered: bool,
    },
}

/// One output with its offset over the alerts table.
pub struct Output {
    name: String,
    target: Target,
}

/// A sink's alert twin writes beside it, never among the events: a file sink's
/// `audit.ndjson` → `audit.alerts.ndjson`, an object-store sink's
/// `s3://bucket/tines/audit` → `s3://bucket/tines/audit.alerts`. Alerts are not
/// audit records: every twin writes them as they are (raw), keeping the sink's
/// pseudonymisation.
fn alert_sink_config(c: &SinkConfig) -> Result<SinkConfig, String> {
    let twin = match c {
        SinkConfig::File { name, path, max_bytes, format, pseudonymize, adopt_existing } => {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "audit".into());
            let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
            SinkConfig::File {
                name: name.clone(),
                path: path.with_file_name(format!("{stem}.alerts{ext}")),
                max_bytes: *max_bytes,
                format: *format,
                pseudonymize: pseudonymize.clone(),
                adopt_existing: *adopt_existing,
            }
        }
        SinkConfig::ObjectStore(o) => SinkConfig::ObjectStore(o.for_alerts()?),
        other => other.clone(),
    };
    Ok(twin.with_raw_format())
}

impl Output {
    pub fn build(c: &OutputConfig, sinks: &[SinkConfig]) -> Result<Output, String> {
        let name = c.consumer_name();
        let target = match c {
            OutputConfig::Webhook { url, format, .. } => Target::Webhook {
                client: webhook_client()?,
                url: url.clone(),
                origin: url_origin(url),
                format: *format,
            },
            OutputConfig::Stdout { format, .. } => Target::Stdout(*format),
            OutputConfig::Sink { sink } => {
                let conf = sinks.iter().find(|s| &s.name() == sink).ok_or_else(|| format!("no sink named {sink}"))?;
                Target::Sink { sink: alert_sink_config(conf)?.build()?, recovered: false }
            }
        };
        Ok(Output { name, target })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Delivers alerts past `after`; `state` is the committed one, for a sink to recover from.
    async fn deliver(
        &mut self,
        journal: &Journal,
        after: i64,
        alerts: &[AlertRow],
        state: Option<String>,
    ) -> Result<Option<String>, OutputError> {
        match &mut self.target {
            Target::Stdout(format) => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                for a in alerts {
                    let line = match format {
                        StdoutFormat::Text => text_line(a),
                        StdoutFormat::Json => a.body.clone(),
                    };
                    writeln!(out, "{line}")
                        .map_err(|e| OutputError::Deliver { name: "stdout".into(), message: e.to_string() })?;
                }
                Ok(None)
            }
            Target::Webhook { client, url, origin, format } => {
                for a in alerts {
                    let failed = match post_alert(client, url, *format, a).await {
                        Ok(resp) if resp.status().is_success() => continue,
                        Ok(resp) => format!("webhook {origin} answered {}; will retry", resp.status()),
                        Err(e) => format!("webhook {origin} unreachable ({e}); will retry"),
                    };
                    return Err(OutputError::Deliver { name: self.name.clone(), message: failed });
                }
                Ok(None)
            }
            Target::Sink { sink, recovered } => {
                if !*recovered {
                    sink.recover(state).await.map_err(|e: SinkError| OutputError::Deliver {
                        name: self.name.clone(),
                        message: e.to_string(),
                    })?;
                    *recovered = true;
                }
                let mut batch = EventBatch::default();
                for a in alerts {
                    batch.push(a.seq, &a.tenant, a.seq, a.event_time, &a.body);
                }
                // As the sink runner does: committed before the sink writes anything.
                if let Some(prepared) = sink.prepare(&batch) {
                    let name = self.name.clone();
                    let committed = journal.call(move |j| j.commit_offset(&name, after, after, Some(&prepared))).await;
                    if committed.is_err() {
                        // The sink believes it prepared: recover from what the journal holds instead.
                        *recovered = false;
                    }
                    committed?;
                }
                let r = sink.deliver(Arc::new(batch)).await;
                r.map_err(|e| {
                    *recovered = false;
                    OutputError::Deliver { name: self.name.clone(), message: e.to_string() }
                })
            }
        }
    }

    /// Delivers every alert past this output's offset; returns how many.
    pub async fn drain(&mut self, journal: &Journal) -> Result<u64, OutputError> {
        let name = self.name.clone();
        // A new output starts at the first alert: alerts raised before it was added are delivered once too.
        let off = journal.call(move |j| j.consumer(&name, 0)).await?;
        let (mut position, mut state) = (off.position, off.state);
        let mut n = 0u64;
        loop {
            let after = position;
            let batch = journal.call(move |j| j.alerts_after(after, 200)).await?;
            let Some(last) = batch.last().map(|a| a.seq) else { return Ok(n) };
            let new_state = self.deliver(journal, after, &batch, state.clone()).await?;
            let name = self.name.clone();
            let st = new_state.clone().or(state.clone());
            journal.call(move |j| j.commit_offset(&name, after, last, st.as_deref())).await?;
            n += batch.len() as u64;
            position = last;
            if new_state.is_some() {
                state = new_state;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alert `r:1` of tenant `t`, committed by the detector with offset 1.
    fn commit_one_alert(j: &Journal) {
        let alert = NewAlert {
            id: "r:1".into(),
            rule_id: "r".into(),
            group_key: "[]".into(),
            tenant: "t".into(),
            event_time: 100,
            trigger_seq: 1,
            event_ids: vec![],
        };
        j.commit_detection("detector", 0, 1, "{}", &[alert], |a, _| json!({"id": a.id}).to_string()).unwrap();
    }

    #[tokio::test]
    async fn a_file_sink_gets_alerts_as_events_beside_its_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("data")).unwrap();
        commit_one_alert(&j);
        let sinks = vec![SinkConfig::File {
            name: Some("archive".into()),
            path: dir.path().join("out/audit.ndjson"),
            max_bytes: None,
            format: crate::format::Shape::Ecs,
            pseudonymize: None,
            adopt_existing: false,
        }];
        let conf = OutputConfig::Sink { sink: "archive".into() };
        conf.validate(&sinks).unwrap();
        assert!(OutputConfig::Sink { sink: "nope".into() }.validate(&sinks).unwrap_err().contains("archive"));
        let mut out = Output::build(&conf, &sinks).unwrap();
        assert_eq!(out.drain(&j).await.unwrap(), 1);
        let mut again = Output::build(&conf, &sinks).unwrap();
        assert_eq!(again.drain(&j).await.unwrap(), 0, "a restarted output does not resend");
        let text = std::fs::read_to_string(dir.path().join("out/audit.alerts.ndjson")).unwrap();
        assert_eq!(text.lines().collect::<Vec<_>>(), vec![r#"{"id":"r:1"}"#]);
        assert!(!dir.path().join("out/audit.ndjson").exists(), "the events' file is not touched");
    }

    /// Every file under `root`, as paths relative to it.
    fn files(root: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    fn gunzip(path: &std::path::Path) -> String {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut s).unwrap();
        s
    }

    #[tokio::test]
    async fn alerts_to_an_object_store_sink_landed_in_the_audit_event_prefix_with_seq_based_names() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("data")).unwrap();
        crate::journal::three_events(&j);
        // Alert seq 1, in the same tenant and hour as event seqs 1..=3.
        let alert = NewAlert {
            id: "r:3".into(),
            rule_id: "r".into(),
            group_key: "[]".into(),
            tenant: "t".into(),
            event_time: 102,
            trigger_seq: 3,
            event_ids: vec![1, 2, 3],
        };
        j.commit_detection("detector", 0, 3, "{}", &[alert], |a, _| json!({"alert": a.id}).to_string()).unwrap();
        let objects = dir.path().join("objects");
        let sink: SinkConfig = toml::from_str(&format!(
            "type = \"object_store\"\nname = \"lake\"\nurl = \"file://{}\"",
            objects.display()
        ))
        .unwrap();
        let sinks = vec![sink.clone()];
        let mut events = crate::sinks::runner::Consumer::new(sink.build().unwrap());
        assert_eq!(events.drain(&j, crate::sinks::runner::Flush::All).await.unwrap(), 3);
        let conf = OutputConfig::Sink { sink: "lake".into() };
        conf.validate(&sinks).unwrap();
        assert_eq!(Output::build(&conf, &sinks).unwrap().drain(&j).await.unwrap(), 1);
        assert_eq!(Output::build(&conf, &sinks).unwrap().drain(&j).await.unwrap(), 0, "a restart does not resend");

        let part = "tenant=t/dt=1970-01-01/hour=00";
        assert_eq!(
            files(&objects),
            vec![format!("{part}/00000000000000000001-00000000000000000003.ndjson.gz")],
            "the events' prefix holds the events' object only"
        );
        let ids: Vec<i64> =
            gunzip(&objects.join(format!("{part}/00000000000000000001-00000000000000000003.ndjson.gz")))
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_i64().unwrap())
                .collect();
        assert_eq!(ids, vec![1, 2, 3]);
        let alerts = dir.path().join("objects.alerts");
        let alert_object = format!("{part}/00000000000000000001-00000000000000000001.ndjson.gz");
        assert_eq!(files(&alerts), vec![alert_object.clone()], "alerts have a prefix of their own");
        assert_eq!(gunzip(&alerts.join(alert_object)), "{\"alert\":\"r:3\"}\n");

        // A sink at the bucket root has no beside: refused when the config is checked.
        let root: SinkConfig =
            toml::from_str("type = \"object_store\"\nname = \"root\"\nurl = \"s3://bucket\"\nregion = \"eu-west-1\"")
                .unwrap();
        let e = OutputConfig::Sink { sink: "root".into() }.validate(&[root]).unwrap_err();
        assert!(e.contains("prefix of their own") && e.contains("s3://bucket/tines/audit"), "{e}");
    }

    #[tokio::test]
    async fn alert_webhook_errors_printed_the_webhook_url() {
        let secret_path = "/services/T0UNIT/B0UNIT/unit-webhook-path-secret";
        // Nothing listens on a port just released: the request fails to connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}{secret_path}");
        let conf = OutputConfig::Webhook { name: None, url: url.clone(), format: WebhookFormat::Slack };
        assert!(!format!("{conf:?}").contains("unit-webhook"), "{conf:?}");
        let mut out = Output::build(&conf, &[]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        commit_one_alert(&j);
        let e = out.drain(&j).await.unwrap_err().to_string();
        assert!(e.contains(&format!("webhook http://127.0.0.1:{port} unreachable")), "{e}");
        assert!(!e.contains("unit-webhook"), "{e}");
        let bad = OutputConfig::Webhook {
            name: None,
            url: format!("ftp://h.example{secret_path}"),
            format: WebhookFormat::Json,
        };
        let e = bad.validate(&[]).unwrap_err();
        assert!(e.contains("ftp://") && !e.contains("unit-webhook"), "{e}");
    }
}
