//! The syslog sink against a real rsyslog daemon (installed by scripts/test.sh):
//! RFC 5424 with octet counting over TCP, over TLS with a private CA, over UDP,
//! CEF messages, and an outage that loses nothing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::rsyslog::*;
use tines_audit::journal::{Journal, Record, WindowCommit};
use tines_audit::sinks::SinkConfig;
use tines_audit::sinks::runner::{Consumer, Flush};

/// A journal with `n` events; every 50th has a literal newline inside its JSON and quotes in its name.
fn journal_with(dir: &Path, n: i64) -> Journal {
    let j = Journal::open(&dir.join("journal")).unwrap();
    j.start_progress("t", "cursor", 0, None, "").unwrap();
    let raws: Vec<String> = (1..=n)
        .map(|i| {
            let sep = if i % 50 == 0 { ",\n" } else { "," };
            format!(
                r#"{{"created_at":"2024-11-25T10:35:55Z","id":{i}{sep}"inputs":{{"name":"a \"quoted\" ]name= |x"}},"operation_name":"CredentialDestruction","request_ip":"92.19.2.1","request_user_agent":"Mozilla/5.0","tenant_id":1111,"user_email":"jo@example.com","user_id":58468,"user_name":"Jo"}}"#
            )
        })
        .collect();
    let recs = raws.iter().enumerate().map(|(i, raw)| Record {
        id: i as i64 + 1,
        created_at: 1_732_530_955,
        operation_name: "CredentialDestruction",
        user_id: Some(58468),
        user_email: Some("jo@example.com"),
        request_ip: Some("92.19.2.1"),
        raw,
    });
    j.commit_window(&WindowCommit { tenant: "t", job: "cursor", from: 0, to: 1, fetched: n as u64 }, recs).unwrap();
    j
}

/// Appends events with ids `ids` (same shape as `journal_with`) as the next collection window.
fn append(j: &Journal, ids: std::ops::RangeInclusive<i64>) {
    let raws: Vec<(i64, String)> = ids
        .map(|i| (i, format!(r#"{{"created_at":"2024-11-25T10:35:55Z","id":{i},"operation_name":"CredentialDestruction","tenant_id":1111}}"#)))
        .collect();
    let recs = raws.iter().map(|(i, raw)| Record {
        id: *i,
        created_at: 1_732_530_955,
        operation_name: "CredentialDestruction",
        user_id: None,
        user_email: None,
        request_ip: None,
        raw,
    });
    let from = j.progress("t", "cursor").unwrap().unwrap().position;
    j.commit_window(&WindowCommit { tenant: "t", job: "cursor", from, to: from + 1, fetched: raws.len() as u64 }, recs)
        .unwrap();
}

fn sink(toml: &str) -> Consumer {
    #[derive(serde::Deserialize)]
    struct W {
        sinks: Vec<SinkConfig>,
    }
    let w: W = toml::from_str(toml).unwrap();
    Consumer::new(w.sinks[0].build().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_octet_counting_delivers_every_message_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let r = start_rsyslog(dir.path(), "imtcp", port, None);
    let j = journal_with(dir.path(), 1_000);
    let mut c = sink(&format!(
        "[[sinks]]\ntype = \"syslog\"\naddress = \"127.0.0.1:{}\"\nhostname = \"collector-1\"\n",
        r.port
    ));
    assert!(c.health_check().await.unwrap().contains("TCP connection"));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 1_000);
    let lines = wait_lines(&r, 1_000);
    assert_eq!(
        lines.len(),
        1_000,
        "each message is one record even with a newline inside (rsyslog escapes it as #012)"
    );
    assert_eq!(ids_in_order(&lines), (1..=1_000).collect::<Vec<_>>());
    let first = &lines[0];
    assert!(first.starts_with("<109>1 2024-11-25T10:35:55Z collector-1 tines-audit - CredentialDestruction [tines@32473 tenant=\"t\" id=\"1\" seq=\"1\"] {\"created_at\""), "{first}");
    assert!(lines[49].contains("#012"), "the embedded newline travelled inside its frame: {}", lines[49]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cef_messages_are_escaped_and_parseable() {
    let dir = tempfile::tempdir().unwrap();
    let r = start_rsyslog(dir.path(), "imtcp", free_port(), None);
    let j = journal_with(dir.path(), 20);
    let mut c =
        sink(&format!("[[sinks]]\ntype = \"syslog\"\naddress = \"127.0.0.1:{}\"\nencoding = \"cef\"\n", r.port));
    c.drain(&j, Flush::All).await.unwrap();
    let lines = wait_lines(&r, 20);
    let msg = &lines[0][lines[0].find("CEF:").unwrap()..];
    assert!(msg.starts_with("CEF:0|Tines|Tines|1.0|CredentialDestruction|A credential was deleted|3|"), "{msg}");
    assert!(
        msg.contains("suser=jo@example.com") && msg.contains("src=92.19.2.1") && msg.contains("externalId=1"),
        "{msg}"
    );
    assert!(msg.contains(r#"cs3={"name":"a \\"quoted\\" ]name\= |x"}"#), "\\ and = escaped in extension values: {msg}");
}

fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tines-audit test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_refusal_of_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let r = start_rsyslog(dir.path(), "imtcp", free_port(), Some(&certs));
    let j = journal_with(dir.path(), 300);
    let mut c = sink(&format!(
        "[[sinks]]\ntype = \"syslog\"\ntransport = \"tls\"\naddress = \"127.0.0.1:{}\"\nca_file = \"{}\"\ntls_server_name = \"localhost\"\n",
        r.port,
        certs.join("ca.pem").display()
    ));
    assert!(c.health_check().await.unwrap().contains("certificate verified"));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 300);
    assert_eq!(ids_in_order(&wait_lines(&r, 300)), (1..=300).collect::<Vec<_>>());
    // Without the private CA the public roots do not vouch for this server: refused, nothing delivered.
    let mut untrusting = sink(&format!(
        "[[sinks]]\ntype = \"syslog\"\nname = \"other\"\ntransport = \"tls\"\naddress = \"127.0.0.1:{}\"\ntls_server_name = \"localhost\"\n",
        r.port
    ));
    let err = untrusting.drain(&j, Flush::All).await.unwrap_err().to_string();
    assert!(err.contains("TLS handshake") && err.contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let r = start_rsyslog(dir.path(), "imudp", port, None);
    let j = journal_with(dir.path(), 50);
    let mut c = sink(&format!("[[sinks]]\ntype = \"syslog\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{port}\"\n"));
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 50);
    let mut ids = ids_in_order(&wait_lines(&r, 50));
    ids.sort_unstable();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_stops_the_sink_without_loss_and_it_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let j = journal_with(dir.path(), 500);
    let mut c = sink(&format!("[[sinks]]\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\n"));
    // Nothing listens yet: a transient failure, and the offset stays where it was.
    let err = c.drain(&j, Flush::All).await.unwrap_err().to_string();
    assert!(err.contains("cannot connect"), "{err}");
    assert_eq!(j.consumer(c.name(), 0).unwrap().position, 0);
    let r = start_rsyslog(dir.path(), "imtcp", port, None);
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 500);
    assert_eq!(ids_in_order(&wait_lines(&r, 500)), (1..=500).collect::<Vec<_>>());
    assert_eq!(j.consumer(c.name(), 0).unwrap().position, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pseudonymised_cef_and_json_carry_no_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let r = start_rsyslog(dir.path(), "imtcp", free_port(), None);
    let j = journal_with(dir.path(), 10);
    for (name, encoding) in [("cef", "cef"), ("json", "json")] {
        let mut c = sink(&format!(
            "[[sinks]]\ntype = \"syslog\"\nname = \"{name}\"\naddress = \"127.0.0.1:{}\"\nencoding = \"{encoding}\"\nformat = \"ecs\"\n[sinks.pseudonymize]\nkey = \"0123456789abcdef-secret\"\n",
            r.port
        ));
        c.drain(&j, Flush::All).await.unwrap();
    }
    let lines = wait_lines(&r, 20);
    for l in &lines {
        assert!(
            !l.contains("jo@example.com") && !l.contains("92.19.2.1") && !l.contains("\"Jo\""),
            "personal data leaked: {l}"
        );
        assert!(l.contains("pseu:"), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("CEF:0|") && l.contains("suser=pseu:")));
    assert!(lines.iter().any(|l| l.contains("\"event\":{") || l.contains("\"@timestamp\"")), "ECS JSON delivered");
}

/// Issue 9, finding 8: a write to a connection the receiver has closed succeeds locally, so
/// the first batch after rsyslog stopped (or restarted) was committed and lost. Here rsyslog
/// is stopped between batches, a batch is delivered while it is down, it comes back, and is
/// then restarted under a live connection; every id must arrive at least once.
async fn stop_and_restart_rsyslog_mid_stream(tls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let certs = dir.path().join("certs");
    let tls_dir = tls.then(|| {
        std::fs::create_dir_all(&certs).unwrap();
        make_certs(&certs);
        certs.as_path()
    });
    let extra = if tls {
        format!(
            "transport = \"tls\"\nca_file = \"{}\"\ntls_server_name = \"localhost\"\n",
            certs.join("ca.pem").display()
        )
    } else {
        String::new()
    };
    let j = journal_with(dir.path(), 100);
    let mut c = sink(&format!("[[sinks]]\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\n{extra}"));
    let r = start_rsyslog(dir.path(), "imtcp", port, tls_dir);
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 100);
    wait_lines(&r, 100);

    // The receiver goes away with our connection open: the next batch must not count as delivered.
    r.stop();
    append(&j, 101..=200);
    let err = c.drain(&j, Flush::All).await.expect_err("nothing listens, so nothing can be delivered");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert_eq!(j.consumer(c.name(), 0).unwrap().position, 100, "the undelivered batch is not committed");

    let r = start_rsyslog(dir.path(), "imtcp", port, tls_dir);
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 100);
    wait_lines(&r, 200);

    // Restarted between two batches: the kept connection is dead, the new receiver is up.
    r.stop();
    let r = start_rsyslog(dir.path(), "imtcp", port, tls_dir);
    append(&j, 201..=300);
    assert_eq!(c.drain(&j, Flush::All).await.unwrap(), 100);
    assert_eq!(j.consumer(c.name(), 0).unwrap().position, 300);

    let mut missing = Vec::new();
    wait_for("every id at rsyslog", std::time::Duration::from_secs(30), || {
        let got: std::collections::HashSet<i64> = ids_in_order(&received(&r)).into_iter().collect();
        missing = (1..=300).filter(|i| !got.contains(i)).collect();
        missing.is_empty()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tcp_lost_the_first_batch_sent_to_a_closed_connection() {
    stop_and_restart_rsyslog_mid_stream(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_lost_the_first_batch_sent_to_a_closed_connection() {
    stop_and_restart_rsyslog_mid_stream(true).await;
}
