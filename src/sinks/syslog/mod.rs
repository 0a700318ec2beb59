//! Syslog: RFC 5424 messages over TCP with octet-counting framing (RFC 6587),
//! over TLS (RFC 5425, same framing), or over UDP (one datagram a message),
//! with the event as JSON in the chosen shape or as CEF.
//!
//! Delivery is at-least-once over TCP/TLS and best-effort over UDP, as the
//! transports allow: syslog has no application-level acknowledgement. A batch
//! counts as delivered only once the receiver's TCP stack has acknowledged all
//! of it on a connection the receiver had not closed; on any doubt the whole
//! batch goes again on a new connection (see `conn`).

mod conn;
mod message;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::{TcpStream, UdpSocket};

use self::conn::Conn;
use super::{BatchPolicy, BoxFuture, Sink, SinkError};
use crate::format::{Encoder, Shape};
use crate::journal::EventBatch;

/// How messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Tls,
    Udp,
}

/// What the MSG part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The event as JSON, in the sink's `format` (raw, ecs, ocsf).
    #[default]
    Json,
    /// ArcSight Common Event Format.
    Cef,
}

/// `type = "syslog"` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// `host:port` of the syslog receiver.
    pub address: String,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub format: Shape,
    /// Replace or drop user e-mail, name and IP with a keyed hash (GDPR).
    #[serde(default)]
    pub pseudonymize: Option<crate::format::PseudonymizeConfig>,
    /// 0..=23; default 13 (log audit).
    #[serde(default)]
    pub facility: Option<u8>,
    /// 0..=7; default 5 (notice).
    #[serde(default)]
    pub severity: Option<u8>,
    /// CEF severity 0..=10; default 3.
    #[serde(default)]
    pub cef_severity: Option<u8>,
    /// HOSTNAME in the header (default: this machine's name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// APP-NAME in the header (default `tines-audit`).
    #[serde(default)]
    pub app_name: Option<String>,
    /// PEM file of CA certificates to trust for TLS (default: the public web roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name to verify the server's certificate against (default: the host of `address`).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    #[serde(default)]
    pub connect_timeout_secs: Option<u64>,
    /// How long one batch may take to be written and acknowledged by the receiver's TCP
    /// stack before it is sent again on a new connection (default 30).
    #[serde(default)]
    pub send_timeout_secs: Option<u64>,
}

const UDP_MAX: usize = 65_000;

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl SyslogConfig {
    pub fn default_name(&self) -> String {
        format!("syslog:{}", self.address)
    }

    /// `encoder` shapes JSON messages; `raw` (the raw shape with the same pseudonymisation)
    /// is what the header and CEF fields are read from, so that CEF is pseudonymised too.
    pub fn build(&self, name: String, encoder: Encoder, raw: Encoder) -> Result<SyslogSink, String> {
        let (host, port) =
            self.address.rsplit_once(':').filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()).ok_or_else(
                || format!("syslog address {:?} must be host:port, for example siem.example.com:6514", self.address),
            )?;
        let facility = self.facility.unwrap_or(13);
        if facility > 23 {
            return Err(format!("syslog facility {facility} is out of range 0..=23"));
        }
        let severity = self.severity.unwrap_or(5);
        if severity > 7 {
            return Err(format!("syslog severity {severity} is out of range 0..=7"));
        }
        let cef_severity = self.cef_severity.unwrap_or(3);
        if cef_severity > 10 {
            return Err(format!("cef_severity {cef_severity} is out of range 0..=10"));
        }
        if self.transport != Transport::Tls && (self.ca_file.is_some() || self.tls_server_name.is_some()) {
            return Err("ca_file and tls_server_name apply only with transport = \"tls\"".into());
        }
        let tls = if self.transport == Transport::Tls {
            let mut roots = rustls::RootCertStore::empty();
            match &self.ca_file {
                Some(path) => {
                    use rustls_pki_types::pem::PemObject;
                    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                        .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
                    for c in certs {
                        let c = c.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
                        roots.add(c).map_err(|e| format!("unusable certificate in {}: {e}", path.display()))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup failed: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let server = self.tls_server_name.clone().unwrap_or_else(|| host.trim_matches(['[', ']']).to_string());
            let server_name = rustls_pki_types::ServerName::try_from(server.clone())
                .map_err(|_| format!("{server:?} is not a valid TLS server name"))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), server_name))
        } else {
            None
        };
        let hostname = self.hostname.clone().unwrap_or_else(machine_hostname);
        Ok(SyslogSink {
            name,
            address: self.address.clone(),
            _port: port.to_string(),
            transport: self.transport,
            encoding: self.encoding,
            encoder,
            raw: self.pseudonymize.is_some().then_some(raw),
            facility,
            severity,
            cef_severity,
            hostname,
            app_name: self.app_name.clone().unwrap_or_else(|| "tines-audit".into()),
            tls,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs.unwrap_or(10)),
            send_timeout: Duration::from_secs(self.send_timeout_secs.unwrap_or(30).max(1)),
            conn: None,
        })
    }
}

type Tls = (tokio_rustls::TlsConnector, rustls_pki_types::ServerName<'static>);

pub struct SyslogSink {
    name: String,
    address: String,
    _port: String,
    transport: Transport,
    encoding: Encoding,
    encoder: Encoder,
    /// Set when pseudonymising: the raw record with personal fields replaced.
    raw: Option<Encoder>,
    facility: u8,
    severity: u8,
    cef_severity: u8,
    hostname: String,
    app_name: String,
    tls: Option<Tls>,
    connect_timeout: Duration,
    send_timeout: Duration,
    conn: Option<Conn>,
}

impl SyslogSink {
    async fn connect(&self) -> Result<Conn, SinkError> {
        let unreachable =
            |e: std::io::Error| SinkError::Transient(format!("cannot connect to syslog {}: {e}", self.address));
        if self.transport == Transport::Udp {
            let sock = UdpSocket::bind(if self.address.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" })
                .await
                .map_err(unreachable)?;
            sock.connect(&self.address).await.map_err(unreachable)?;
            return Ok(Conn::Udp(sock));
        }
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| SinkError::Transient(format!("connecting to syslog {} timed out", self.address)))?
            .map_err(unreachable)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Conn::Tcp(tcp)),
            Some((connector, server)) => {
                let tls = tokio::time::timeout(self.connect_timeout, connector.connect(server.clone(), tcp))
                    .await
                    .map_err(|_| SinkError::Transient(format!("TLS handshake with {} timed out", self.address)))?
                    .map_err(|e| {
                        // A certificate the receiver will keep presenting is not fixed by retrying fast,
                        // but it may be fixed on the receiver: keep it retryable, and say what is wrong.
                        SinkError::Transient(format!("TLS handshake with syslog {} failed: {e}", self.address))
                    })?;
                Ok(Conn::Tls(Box::new(tls)))
            }
        }
    }

    async fn send_datagrams(&mut self, frames: &[u8], datagrams: Vec<std::ops::Range<usize>>) -> Result<(), SinkError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let Some(Conn::Udp(sock)) = &self.conn else { unreachable!("a UDP sink holds a UDP socket") };
        for r in datagrams {
            if let Err(e) = sock.send(&frames[r]).await {
                self.conn = None;
                return Err(SinkError::Transient(format!("sending to syslog {} failed: {e}", self.address)));
            }
        }
        Ok(())
    }

    /// One message (header + MSG) for an event, appended to `out`.
    fn message(&self, e: &crate::journal::StoredEvent<'_>, out: &mut Vec<u8>) -> Result<(), SinkError> {
        let mut scrubbed = Vec::new();
        let source: &[u8] = match &self.raw {
            Some(raw) if self.encoding == Encoding::Cef => {
                raw.encode_into(e, &mut scrubbed).map_err(|err| SinkError::Permanent(err.to_string()))?;
                &scrubbed
            }
            _ => e.raw.as_bytes(),
        };
        let fields: message::HeaderFields<'_> = serde_json::from_slice(source).unwrap_or_default();
        let op = fields.operation_name.as_deref().unwrap_or("-");
        let header = message::Header {
            facility: self.facility,
            severity: self.severity,
            hostname: &self.hostname,
            app_name: &self.app_name,
        };
        header.write(e, op, out);
        match self.encoding {
            Encoding::Json => self.encoder.encode_into(e, out).map_err(|err| SinkError::Permanent(err.to_string())),
            Encoding::Cef => {
                message::write_cef(e, &fields, self.cef_severity, out);
                Ok(())
            }
        }
    }
}

impl Sink for SyslogSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn recover(&mut self, _state: Option<String>) -> BoxFuture<'_, Result<(), SinkError>> {
        self.conn = None;
        Box::pin(async { Ok(()) })
    }

    fn policy(&self) -> BatchPolicy {
        BatchPolicy { max_events: 2_000, max_bytes: 2 * 1024 * 1024, linger: Duration::from_millis(200) }
    }

    fn deliver(&mut self, batch: Arc<EventBatch>) -> BoxFuture<'_, Result<Option<String>, SinkError>> {
        Box::pin(async move {
            let mut frames = Vec::with_capacity(batch.raw_bytes() + batch.len() * 96);
            let mut msg = Vec::with_capacity(4096);
            let mut truncated = 0usize;
            let mut datagrams: Vec<std::ops::Range<usize>> = Vec::new();
            for e in batch.iter() {
                msg.clear();
                self.message(&e, &mut msg)?;
                if self.transport == Transport::Udp {
                    if msg.len() > UDP_MAX {
                        msg.truncate(UDP_MAX);
                        truncated += 1;
                    }
                    let start = frames.len();
                    frames.extend_from_slice(&msg);
                    datagrams.push(start..frames.len());
                } else {
                    // Octet counting: safe with any content, and what RFC 5425 mandates for TLS.
                    frames.extend_from_slice(msg.len().to_string().as_bytes());
                    frames.push(b' ');
                    frames.extend_from_slice(&msg);
                }
            }
            if truncated > 0 {
                tracing::warn!(sink = %self.name, truncated, "syslog over UDP: messages cut to {UDP_MAX} bytes; use transport = \"tcp\" or \"tls\" to keep them whole");
            }
            if self.transport == Transport::Udp {
                return self.send_datagrams(&frames, datagrams).await.map(|()| None);
            }
            // A batch that fails on a connection kept from earlier goes once more on a fresh one
            // (the receiver may have restarted); a fresh connection that fails is the runner's to retry.
            loop {
                let reused = match self.conn.as_mut().map(Conn::closed_by_peer) {
                    Some(None) => true,
                    Some(Some(why)) => {
                        tracing::debug!(sink = %self.name, "syslog connection unusable ({why}); reconnecting");
                        self.conn = None;
                        false
                    }
                    None => false,
                };
                if self.conn.is_none() {
                    self.conn = Some(self.connect().await?);
                }
                let conn = self.conn.as_mut().expect("connected above");
                let sent = match tokio::time::timeout(self.send_timeout, conn.send_stream(&frames)).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("not acknowledged within {}s", self.send_timeout.as_secs()),
                    )),
                };
                match sent {
                    Ok(()) => return Ok(None),
                    Err(e) => {
                        // Part of the batch may have arrived: this connection is done, the batch goes again whole.
                        self.conn = None;
                        if reused {
                            tracing::debug!(sink = %self.name, "sending on a kept syslog connection failed ({e}); resending on a new one");
                            continue;
                        }
                        return Err(SinkError::Transient(format!(
                            "sending to syslog {} failed: {e}; the batch will be sent again",
                            self.address
                        )));
                    }
                }
            }
        })
    }

    fn health_check(&mut self) -> BoxFuture<'_, Result<String, SinkError>> {
        Box::pin(async move {
            self.connect().await?;
            Ok(match self.transport {
                Transport::Tcp => format!("TCP connection to {} works", self.address),
                Transport::Tls => format!("TLS connection to {} works, certificate verified", self.address),
                Transport::Udp => format!("UDP socket for {} ready (UDP cannot confirm a listener)", self.address),
            })
        })
    }
}
