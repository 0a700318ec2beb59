//! The HTTP sinks against receivers that enforce the real protocols, driven
//! through the real runner: journal -> Consumer::drain -> sink -> HTTP.

mod common_http;

use std::time::{Duration, Instant};

use common_http::*;
use serde_json::Value;
use tines_audit::format::Encoder;
use tines_audit::journal::Journal;
use tines_audit::sinks::datadog::DatadogConfig;
use tines_audit::sinks::runner::{Consumer, DrainError, Flush};
use tines_audit::sinks::splunk_hec::SplunkHecConfig;
use tines_audit::sinks::webhook::WebhookConfig;
use tines_audit::sinks::{Sink, SinkError};

/// Fast retries so failure scenarios take milliseconds.
const FAST_RETRY: &str =
    "[request]\nmax_attempts = 3\nretry_initial_backoff = \"1ms\"\nretry_max_backoff = \"5ms\"\ntimeout = \"10s\"\n";

fn hec_sink(hec: &Hec, extra: &str) -> Box<dyn Sink> {
    hec_sink_with_token(hec, HEC_TOKEN, extra)
}

fn hec_sink_with_token(hec: &Hec, token: &str, extra: &str) -> Box<dyn Sink> {
    let text = format!("endpoint = \"{}\"\ntoken = \"{token}\"\n{extra}", hec.url);
    let cfg: SplunkHecConfig = toml::from_str(&text).unwrap();
    Box::new(cfg.build(Encoder::default()).unwrap())
}

fn dd_sink(dd: &Datadog, key: &str, extra: &str) -> Box<dyn Sink> {
    let text = format!("endpoint = \"{}\"\napi_key = \"{key}\"\n{extra}", dd.url);
    let cfg: DatadogConfig = toml::from_str(&text).unwrap();
    Box::new(cfg.build(Encoder::default()).unwrap())
}

fn hook_sink(hook: &Hook, secret: &str, extra: &str) -> Box<dyn Sink> {
    let text = format!("url = \"{}\"\n{extra}\n[headers]\n{HOOK_HEADER} = \"{secret}\"\n", hook.url);
    let cfg: WebhookConfig = toml::from_str(&text).unwrap();
    Box::new(cfg.build(Encoder::default()).unwrap())
}

fn all(n: i64) -> Vec<i64> {
    (1..=n).collect()
}

fn max_seq(j: &Journal) -> i64 {
    j.max_seq().unwrap()
}

/// The raw record of event `id` as the journal holds it, parsed.
fn raw_of(j: &Journal, id: i64) -> Value {
    let b = j.read_after(id - 1, 1, usize::MAX).unwrap();
    serde_json::from_str(b.iter().next().unwrap().raw).unwrap()
}

fn sink_error(r: Result<u64, DrainError>) -> SinkError {
    match r {
        Err(DrainError::Sink { source, .. }) => source,
        other => panic!("expected a sink error, got {other:?}"),
    }
}

/// Drains until a drain succeeds (transient failures in between), within a deadline.
async fn drain_until_ok(c: &mut Consumer, j: &Journal) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = 0;
    loop {
        match c.drain(j, Flush::All).await {
            Ok(_) => return failures,
            Err(DrainError::Sink { source: SinkError::Transient(_), .. }) => failures += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
        assert!(Instant::now() < deadline, "no successful drain within 30s after {failures} failures");
    }
}

// ---------------------------------------------------------------- Splunk HEC

#[tokio::test]
async fn hec_delivers_thousands_in_journal_order_with_the_envelope_fields() {
    let (_d, j) = journal_with(3_000, 200);
    let hec = Hec::start().await;
    let mut c = Consumer::new(hec_sink(&hec, "index = \"tines\"\n[batch]\nmax_bytes = 100000\n"));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 3_000);
    assert_eq!(c.position(), max_seq(&j));

    let log = hec.log();
    assert_eq!(log.ids(), all(3_000));
    assert_eq!(log.duplicates, 0);
    assert!(log.requests > 5, "{} requests: expected several at 100 kB each", log.requests);
    assert_eq!(log.gzipped, log.requests, "gzip is on by default");
    assert!(log.largest_body <= 100_000, "largest body {}", log.largest_body);
    let batch = j.read_after(0, 3_000, usize::MAX).unwrap();
    for (env, e) in log.envelopes.iter().zip(batch.iter()) {
        assert_eq!(env["time"].as_i64(), Some(e.created_at), "time is plain integer seconds");
        assert_eq!(env["host"], TENANT);
        assert_eq!(env["source"], "tines-audit");
        assert_eq!(env["sourcetype"], "tines:audit");
        assert_eq!(env["index"], "tines");
        assert_eq!(env["event"], serde_json::from_str::<Value>(e.raw).unwrap());
    }
}

#[tokio::test]
async fn the_hec_receiver_refuses_what_splunk_refuses() {
    let hec = Hec::start().await;
    let post = |body: &'static str| {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!("{}/services/collector/event", hec.url))
            .header("Authorization", format!("Splunk {HEC_TOKEN}"))
            .body(body)
            .send()
    };
    let cases = [
        ("{\"time\":1.7E9,\"event\":{\"id\":1}}", 6, 0),
        ("{\"event\":{\"id\":1}}\n{\"time\":1700000000,\"host\":\"h\"}", 12, 1),
        ("{\"event\":{\"id\":1}} {\"event\":", 6, 1),
    ];
    for (body, code, n) in cases {
        let r = post(body).await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!((v["code"].as_i64(), v["invalid-event-number"].as_i64()), (Some(code), Some(n)), "{body}: {v}");
    }
    let r = post("{\"time\":1700000000.250,\"event\":{\"id\":1}}").await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn hec_without_gzip_sends_plain_stacked_envelopes() {
    let (_d, j) = journal_with(500, 50);
    let hec = Hec::start().await;
    let mut c = Consumer::new(hec_sink(&hec, "gzip = false\nsourcetype = \"custom:st\"\nhost = \"collector-1\"\n"));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 500);
    let log = hec.log();
    assert_eq!(log.gzipped, 0);
    assert_eq!(log.ids(), all(500));
    assert!(log.envelopes.iter().all(|e| e["host"] == "collector-1" && e["sourcetype"] == "custom:st"));
    assert!(log.envelopes.iter().all(|e| e.get("index").is_none()));
}

#[tokio::test]
async fn hec_resends_from_the_invalid_event_number_only() {
    let (_d, j) = journal_with(1_000, 50);
    let hec = Hec::start().await;
    hec.log().reject_once_at = Some(37);
    let mut c = Consumer::new(hec_sink(&hec, ""));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 1_000);
    let log = hec.log();
    assert_eq!(log.reject_once_at, None, "the receiver did refuse event 37");
    assert_eq!(log.ids(), all(1_000), "events before 37 indexed once, the rest resent from 37");
    assert_eq!(log.duplicates, 0);
    assert_eq!(c.position(), max_seq(&j));
}

#[tokio::test]
async fn hec_event_refused_twice_is_permanent_names_the_event_and_is_not_resent() {
    let (_d, j) = journal_with(100, 50);
    let hec = Hec::start().await;
    hec.log().poison_id = Some(42);
    let mut c = Consumer::new(hec_sink(&hec, FAST_RETRY));
    let err = sink_error(c.drain(&j, Flush::All).await);
    let SinkError::Permanent(msg) = &err else { panic!("expected permanent: {err:?}") };
    assert!(msg.contains("event id 42") && msg.contains("twice"), "{msg}");
    assert_eq!(hec.log().ids(), all(41));
    assert_eq!(c.position(), 0, "nothing committed past the refused event");
    assert_eq!(hec.log().requests, 2, "one send, one resend from the refused event: no loop");

    // The runner tries again later: events already indexed are not sent twice.
    let err = sink_error(c.drain(&j, Flush::All).await);
    assert!(matches!(err, SinkError::Permanent(_)));
    let log = hec.log();
    assert_eq!(log.ids(), all(41));
    assert_eq!(log.duplicates, 0);
}

#[tokio::test]
async fn hec_waits_for_indexer_acknowledgement_on_one_channel() {
    let (_d, j) = journal_with(2_000, 100);
    let hec = Hec::start().await;
    {
        let mut log = hec.log();
        log.require_channel = true;
        log.ack_after_polls = Some(3);
    }
    let extra = "ack = true\nack_poll_interval = \"2ms\"\n[batch]\nmax_bytes = 60000\n";
    let mut c = Consumer::new(hec_sink(&hec, extra));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 2_000);
    let log = hec.log();
    assert_eq!(log.ids(), all(2_000));
    assert!(log.ack_polls >= 3, "{} polls", log.ack_polls);
    assert_eq!(log.channels.len(), 1, "one channel per sink instance: {:?}", log.channels);
    assert_eq!(c.position(), max_seq(&j));
}

#[tokio::test]
async fn hec_acks_that_never_come_leave_the_batch_uncommitted() {
    let (_d, j) = journal_with(50, 10);
    let hec = Hec::start().await;
    hec.log().ack_after_polls = Some(1_000);
    let mut c = Consumer::new(hec_sink(&hec, "ack = true\nack_poll_interval = \"1ms\"\nack_max_polls = 4\n"));
    let err = sink_error(c.drain(&j, Flush::All).await);
    let SinkError::Transient(msg) = &err else { panic!("expected transient: {err:?}") };
    assert!(msg.contains("not acknowledged"), "{msg}");
    assert_eq!(c.position(), 0);
    assert_eq!(hec.log().ack_polls, 4);
}

#[tokio::test]
async fn hec_rides_out_a_503_storm_without_loss_duplicates_or_reordering() {
    let (_d, j) = journal_with(3_000, 100);
    let hec = Hec::start().await;
    hec.log().fail_next = 8;
    let mut c = Consumer::new(hec_sink(&hec, &format!("[batch]\nmax_bytes = 50000\n{FAST_RETRY}")));
    let failures = drain_until_ok(&mut c, &j).await;
    assert!(failures >= 2, "8 busy answers with 3 attempts per delivery: {failures} failed drains");
    let log = hec.log();
    assert_eq!(log.ids(), all(3_000));
    assert_eq!(log.duplicates, 0);
    assert_eq!(c.position(), max_seq(&j));
}

#[tokio::test]
async fn hec_auth_failures_are_permanent_say_why_and_never_show_the_token() {
    let (_d, j) = journal_with(10, 10);
    let hec = Hec::start().await;
    let cases = [("not-a-guid-token", "401", "code 3"), ("00000000-0000-4000-8000-000000000000", "403", "code 4")];
    for (token, status, code) in cases {
        let mut c = Consumer::new(hec_sink_with_token(&hec, token, FAST_RETRY));
        let err = sink_error(c.drain(&j, Flush::All).await);
        let printed = format!("{err} {err:?}");
        assert!(matches!(err, SinkError::Permanent(_)), "{printed}");
        assert!(printed.contains(status) && printed.contains(code) && printed.contains("token"), "{printed}");
        assert!(!printed.contains(token), "token leaked: {printed}");
        assert_eq!(c.position(), 0);
    }
    assert_eq!(hec.log().requests, 0, "auth failures are not retried");

    let mut bad = hec_sink_with_token(&hec, "00000000-0000-4000-8000-000000000000", "");
    let err = bad.health_check().await.unwrap_err();
    assert!(matches!(err, SinkError::Permanent(_)) && err.to_string().contains("invalid"), "{err}");
    let ok = hec_sink(&hec, "").health_check().await.unwrap();
    assert!(ok.contains("healthy"), "{ok}");
}

#[tokio::test]
async fn hec_oversized_request_is_permanent_with_advice() {
    let (_d, j) = journal_with(200, 2_000);
    let hec = Hec::start().await;
    hec.log().max_body = 50_000;
    let mut c = Consumer::new(hec_sink(&hec, &format!("gzip = false\n[batch]\nmax_bytes = 200000\n{FAST_RETRY}")));
    let err = sink_error(c.drain(&j, Flush::All).await);
    assert!(matches!(&err, SinkError::Permanent(m) if m.contains("413") && m.contains("batch.max_bytes")), "{err}");
}

// ---------------------------------------------------------------- Datadog

#[tokio::test]
async fn datadog_delivers_arrays_of_at_most_1000_with_reserved_attributes() {
    let (_d, j) = journal_with(2_500, 100);
    let dd = Datadog::start().await;
    let extra = "service = \"tines-audit\"\nddtags = \"env:test,team:sec\"\nhostname = \"collector-1\"\n";
    let mut c = Consumer::new(dd_sink(&dd, DD_KEY, extra));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 2_500);
    assert_eq!(c.position(), max_seq(&j));
    let log = dd.log();
    assert_eq!(log.ids(), all(2_500));
    assert_eq!(log.duplicates, 0);
    assert_eq!(log.sizes, vec![1_000, 1_000, 500]);
    assert_eq!(log.gzipped, log.requests, "gzip by default");
    let batch = j.read_after(0, 2_500, usize::MAX).unwrap();
    for (entry, e) in log.entries.iter().zip(batch.iter()) {
        assert_eq!(entry["ddsource"], "tines");
        assert_eq!(entry["service"], "tines-audit");
        assert_eq!(entry["ddtags"], "env:test,team:sec");
        assert_eq!(entry["hostname"], "collector-1");
        assert_eq!(entry["timestamp"].as_i64(), Some(e.created_at * 1000));
        let message: Value = serde_json::from_str(entry["message"].as_str().unwrap()).unwrap();
        assert_eq!(message, raw_of(&j, e.id));
    }
}

#[tokio::test]
async fn datadog_splits_by_bytes_to_stay_under_5_mb() {
    // 900 events of about 12 kB: fewer than 1000, but about 11 MB.
    let (_d, j) = journal_with(900, 12_000);
    let dd = Datadog::start().await;
    let mut c = Consumer::new(dd_sink(&dd, DD_KEY, "gzip = false\n"));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 900);
    let log = dd.log();
    assert_eq!(log.ids(), all(900));
    assert_eq!(log.too_large, 0, "no request over the intake's limits");
    assert!(log.sizes.len() >= 3, "{:?}", log.sizes);
    assert!(log.largest_body <= DD_MAX_BYTES, "{}", log.largest_body);
}

#[tokio::test]
async fn datadog_splits_further_when_the_intake_still_says_413() {
    let (_d, j) = journal_with(400, 1_000);
    let dd = Datadog::start().await;
    dd.log().max_bytes = 100_000;
    let mut c = Consumer::new(dd_sink(&dd, DD_KEY, "[batch]\nmax_bytes = 1000000\n"));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 400);
    let log = dd.log();
    assert_eq!(log.ids(), all(400));
    assert_eq!(log.duplicates, 0);
    assert!(log.too_large > 0);
}

#[tokio::test]
async fn datadog_retries_429_and_5xx_then_delivers_everything_once() {
    let (_d, j) = journal_with(1_500, 50);
    let dd = Datadog::start().await;
    dd.log().fail_next = [429, 500, 503, 429].into();
    let mut c = Consumer::new(dd_sink(&dd, DD_KEY, FAST_RETRY));
    drain_until_ok(&mut c, &j).await;
    let log = dd.log();
    assert_eq!(log.ids(), all(1_500));
    assert_eq!(log.duplicates, 0);
    assert_eq!(log.requests, log.accepted_requests + 4);
    assert_eq!(c.position(), max_seq(&j));
}

#[tokio::test]
async fn datadog_bad_key_is_permanent_and_never_shown() {
    let (_d, j) = journal_with(10, 10);
    let dd = Datadog::start().await;
    let wrong = "ffffffffffffffffffffffffffffffff";
    let mut c = Consumer::new(dd_sink(&dd, wrong, FAST_RETRY));
    let err = sink_error(c.drain(&j, Flush::All).await);
    let printed = format!("{err} {err:?}");
    assert!(matches!(err, SinkError::Permanent(_)), "{printed}");
    assert!(printed.contains("403") && printed.contains("api_key"), "{printed}");
    assert!(!printed.contains(wrong));
    assert_eq!(c.position(), 0);

    let err = dd_sink(&dd, wrong, "").health_check().await.unwrap_err();
    assert!(matches!(err, SinkError::Permanent(_)) && !err.to_string().contains(wrong), "{err}");
    let ok = dd_sink(&dd, DD_KEY, "").health_check().await.unwrap();
    assert!(ok.contains("valid"), "{ok}");
}

// ---------------------------------------------------------------- Webhook

#[tokio::test]
async fn webhook_posts_json_arrays_with_the_custom_header() {
    let (_d, j) = journal_with(1_200, 50);
    let hook = Hook::start().await;
    let mut c = Consumer::new(hook_sink(&hook, HOOK_SECRET, "encoding = \"json_array\"\n[batch]\nmax_events = 500\n"));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 1_200);
    let log = hook.log();
    assert_eq!(log.ids(), all(1_200));
    assert_eq!(log.sizes, vec![500, 500, 200]);
    assert_eq!(log.content_types.iter().collect::<Vec<_>>(), vec!["application/json"]);
    assert_eq!(log.gzipped, 0);
    assert_eq!(log.events[0], raw_of(&j, 1));
}

#[tokio::test]
async fn webhook_posts_gzipped_ndjson_and_retries_5xx() {
    let (_d, j) = journal_with(800, 50);
    let hook = Hook::start().await;
    hook.log().fail_next = 2;
    let extra = format!("encoding = \"ndjson\"\ngzip = true\n{FAST_RETRY}");
    let mut c = Consumer::new(hook_sink(&hook, HOOK_SECRET, &extra));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 800);
    let log = hook.log();
    assert_eq!(log.ids(), all(800));
    assert_eq!(log.content_types.iter().collect::<Vec<_>>(), vec!["application/x-ndjson"]);
    assert_eq!(log.gzipped, log.requests - 2);
}

#[tokio::test]
async fn webhook_refusal_is_permanent_and_hides_header_values_and_url_path() {
    let (_d, j) = journal_with(10, 10);
    let hook = Hook::start().await;
    let wrong = "wrong-secret-123";
    let mut c = Consumer::new(hook_sink(&hook, wrong, FAST_RETRY));
    let err = sink_error(c.drain(&j, Flush::All).await);
    let printed = format!("{err} {err:?}");
    assert!(matches!(err, SinkError::Permanent(_)) && printed.contains("401"), "{printed}");
    assert!(!printed.contains(wrong) && !printed.contains("c0ffee"), "{printed}");
}

#[tokio::test]
async fn webhook_outage_is_transient_and_scrubs_secrets_the_receiver_echoes() {
    let (_d, j) = journal_with(10, 10);
    let hook = Hook::start().await;
    hook.log().fail_next = 100;
    let mut c = Consumer::new(hook_sink(&hook, HOOK_SECRET, FAST_RETRY));
    let err = sink_error(c.drain(&j, Flush::All).await);
    let printed = format!("{err} {err:?}");
    assert!(matches!(err, SinkError::Transient(_)) && printed.contains("502"), "{printed}");
    assert!(printed.contains("gave up after 3 attempts"), "{printed}");
    assert!(!printed.contains(HOOK_SECRET) && printed.contains("**REDACTED**"), "{printed}");
    assert_eq!(hook.log().requests, 3);
    assert_eq!(c.position(), 0);
}
