//! The real servers the sink's tests run against, one [`TestStore`] for each:
//! moto for S3 (from PyPI; run as a child process unless
//! `TINES_AUDIT_TEST_S3_ENDPOINT` names one), Azurite for Azure Blob
//! (`TINES_AUDIT_TEST_AZURITE_ENDPOINT`, from `scripts/start-azurite.sh`) and
//! fake-gcs-server for GCS (`TINES_AUDIT_TEST_GCS_ENDPOINT`, from
//! `scripts/start-gcs.sh`) behind [`GcsTranslator`]; and a TCP proxy that can
//! cut the line (an outage) or lose the responses to writes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::config::ObjectStoreConfig;

const HOW: &str = "the S3 tests need moto: run scripts/start-moto.sh (it installs moto[server]==5.2.1 if missing \
                   and prints TINES_AUDIT_TEST_S3_ENDPOINT to reuse one server), or pip install 'moto[server]==5.2.1'";

/// A moto S3 server for one test: `TINES_AUDIT_TEST_S3_ENDPOINT` if set, else a child process killed on drop.
pub(crate) struct Moto {
    child: Option<Child>,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        if let Some(ep) = std::env::var("TINES_AUDIT_TEST_S3_ENDPOINT").ok().filter(|e| !e.is_empty()) {
            return Moto { child: None, endpoint: ep.trim_end_matches('/').to_string() };
        }
        let mut child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}); {HOW}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel::<Result<u16, String>>();
        // Reads the port werkzeug announces, then keeps draining stderr (moto logs every request there).
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let Some(sender) = &tx else { continue };
                if let Some(port) = line.split("Running on http://127.0.0.1:").nth(1) {
                    let _ = sender.send(port.trim().parse().map_err(|e| format!("{line}: {e}")));
                    tx = None;
                } else if seen.len() < 20 {
                    seen.push(line);
                }
            }
            if let Some(sender) = tx {
                let _ = sender.send(Err(seen.join("\n")));
            }
        });
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(Ok(port)) => Moto { child: Some(child), endpoint: format!("http://127.0.0.1:{port}") },
            Ok(Err(output)) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto did not start:\n{output}\n{HOW}")
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto did not announce its port within 90 s; {HOW}")
            }
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP forwarder to `target` (`http://127.0.0.1:PORT`) whose line can be cut:
/// while down it accepts and drops every connection and closes those open.
/// It can also lose responses: the next `n` PUT requests reach the server, and
/// the connection is closed the moment the server answers, so the client never
/// learns that the write happened.
pub(crate) struct Proxy {
    pub endpoint: String,
    up: watch::Sender<bool>,
    lose_puts: Arc<AtomicU32>,
    /// The request line of every request forwarded (`GET /bucket?list-type=2&... HTTP/1.1`).
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: &str) -> Proxy {
        let target = target.trim_start_matches("http://").split('/').next().unwrap_or_default().to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let (up, rx) = watch::channel(true);
        let lose_puts = Arc::new(AtomicU32::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (lose, seen) = (lose_puts.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                if !*rx.borrow() {
                    continue;
                }
                let (target, lose, seen) = (target.clone(), lose.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = forward(inbound, outbound, &lose, &seen) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { endpoint, up, lose_puts, requests, task }
    }

    /// The request lines forwarded since the last call, in order.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// Loses the responses to the next `n` PUT requests (which the server does carry out).
    pub fn lose_put_responses(&self, n: u32) {
        self.lose_puts.store(n, Ordering::SeqCst);
    }

    /// How many of the responses to lose are still to come.
    pub fn put_responses_to_lose(&self) -> u32 {
        self.lose_puts.load(Ordering::SeqCst)
    }
}

/// Copies both ways. HTTP/1.1 clients send a request only once the previous response
/// has arrived, so the first bytes from the client after a response start a request:
/// a PUT is marked to lose its response while `lose` is above zero.
async fn forward(
    mut inbound: TcpStream,
    mut outbound: TcpStream,
    lose: &AtomicU32,
    seen: &std::sync::Mutex<Vec<String>>,
) {
    let (mut from_client, mut to_client) = inbound.split();
    let (mut from_server, mut to_server) = outbound.split();
    let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let (mut new_request, mut losing) = (true, false);
    loop {
        tokio::select! {
            n = from_client.read(&mut up) => {
                let Ok(n @ 1..) = n else { return };
                if new_request {
                    new_request = false;
                    let line = up[..n].split(|b| *b == b'\r').next().unwrap_or_default();
                    seen.lock().unwrap().push(String::from_utf8_lossy(line).into_owned());
                    losing = up[..n].starts_with(b"PUT ")
                        && lose.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1)).is_ok();
                }
                if to_server.write_all(&up[..n]).await.is_err() {
                    return;
                }
            }
            n = from_server.read(&mut down) => {
                let Ok(n @ 1..) = n else { return };
                if losing {
                    return; // the write happened; its answer goes nowhere
                }
                new_request = true;
                if to_client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.set_up(false);
        self.task.abort();
    }
}

/// The real servers the sink's exactly-once suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    /// moto 5.2.1
    S3,
    /// Azurite 3.35.0
    Azure,
    /// fake-gcs-server 1.54.0 behind [`GcsTranslator`]
    Gcs,
}

/// Azurite's documented development account and its published key (not a secret).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// One of the [`Server`]s, running, with what a sink config needs to reach it.
pub(crate) struct TestStore {
    pub server: Server,
    /// Where sinks are pointed: the server, or for GCS the translator in front of it.
    pub endpoint: String,
    _moto: Option<Moto>,
    _translator: Option<GcsTranslator>,
    /// GCS: a service-account key file that turns OAuth off, as emulators need.
    gcs_key: Option<tempfile::NamedTempFile>,
}

/// The endpoint a start script exported, or a loud failure saying how to get one.
fn endpoint_from_env(var: &str, script: &str) -> String {
    match std::env::var(var).ok().filter(|e| !e.is_empty()) {
        Some(e) => e.trim_end_matches('/').to_string(),
        None => panic!(
            "{var} is not set: this test needs a real server. Run scripts/install-test-deps.sh once, then \
             `eval \"$({script})\"` before cargo test (scripts/test.sh does both)"
        ),
    }
}

impl TestStore {
    pub async fn start(server: Server) -> TestStore {
        let mut store = TestStore { server, endpoint: String::new(), _moto: None, _translator: None, gcs_key: None };
        match server {
            Server::S3 => {
                let moto = Moto::start();
                store.endpoint = moto.endpoint.clone();
                store._moto = Some(moto);
            }
            Server::Azure => {
                store.endpoint = endpoint_from_env("TINES_AUDIT_TEST_AZURITE_ENDPOINT", "scripts/start-azurite.sh");
            }
            Server::Gcs => {
                let target = endpoint_from_env("TINES_AUDIT_TEST_GCS_ENDPOINT", "scripts/start-gcs.sh");
                let t = GcsTranslator::start(&target, GcsUpload::Multipart).await;
                store.endpoint = t.endpoint.clone();
                store._translator = Some(t);
                let mut key = tempfile::NamedTempFile::new().expect("temp file");
                key.write_all(
                    br#"{"disable_oauth": true, "client_email": "test@example.com", "private_key": "", "private_key_id": ""}"#,
                )
                .expect("write key file");
                store.gcs_key = Some(key);
            }
        }
        store
    }

    /// Creates a bucket (a container on Azure) with a name no other test uses.
    pub async fn bucket(&self, label: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("t-{label}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let http = reqwest::Client::new();
        let req = match self.server {
            Server::S3 => http.put(format!("{}/{name}", self.endpoint)),
            Server::Azure => azurite_create_container(&http, &self.endpoint, &name),
            Server::Gcs => http
                .post(format!("{}/storage/v1/b", self.endpoint))
                .header("content-type", "application/json")
                .body(serde_json::json!({ "name": name }).to_string()),
        };
        let resp =
            req.send().await.unwrap_or_else(|e| panic!("{:?} at {} does not answer: {e}", self.server, self.endpoint));
        let status = resp.status();
        assert!(
            status.is_success(),
            "creating bucket {name} on {:?}: {status} {}",
            self.server,
            resp.text().await.unwrap_or_default()
        );
        name
    }

    /// A sink config for `bucket` under the prefix `tines/audit`, reaching the server
    /// through `endpoint` (the server's, or a [`Proxy`]'s in front of it).
    pub fn config_via(&self, endpoint: &str, bucket: &str, extra: &str) -> ObjectStoreConfig {
        let text = match self.server {
            Server::S3 => format!(
                "url = \"s3://{bucket}/tines/audit\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
                 access_key_id = \"testing\"\nsecret_access_key = \"testing\"\n{extra}"
            ),
            Server::Azure => {
                // A proxy stands in for the host and port; the account stays in the path.
                let path = self.endpoint.split_once("://").and_then(|(_, r)| r.split_once('/')).map_or("", |(_, p)| p);
                format!(
                    "url = \"az://{bucket}/tines/audit\"\nendpoint = \"{}/{path}\"\nazure_account = \"{AZURITE_ACCOUNT}\"\n\
                     azure_access_key = \"{AZURITE_KEY}\"\n{extra}",
                    endpoint.split('/').take(3).collect::<Vec<_>>().join("/")
                )
            }
            Server::Gcs => format!(
                "url = \"gs://{bucket}/tines/audit\"\nendpoint = \"{endpoint}\"\ngcs_service_account_path = \"{}\"\n{extra}",
                self.gcs_key.as_ref().expect("GCS key file").path().display()
            ),
        };
        toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    pub fn config(&self, bucket: &str, extra: &str) -> ObjectStoreConfig {
        self.config_via(&self.endpoint, bucket, extra)
    }

    /// The word users see for a missing bucket on this server.
    pub fn bucket_word(&self) -> &'static str {
        if self.server == Server::Azure { "container" } else { "bucket" }
    }
}

/// `Create Container`, signed with Azurite's development key (Shared Key authorization).
fn azurite_create_container(http: &reqwest::Client, endpoint: &str, name: &str) -> reqwest::RequestBuilder {
    let date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .expect("format date");
    let version = "2021-08-06";
    let path = endpoint.split_once("://").and_then(|(_, r)| r.split_once('/')).map_or("", |(_, p)| p);
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{path}/{name}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD.decode(AZURITE_KEY).expect("Azurite key is base64");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    http.put(format!("{endpoint}/{name}?restype=container"))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header("content-length", "0")
        .header("authorization", format!("SharedKey {AZURITE_ACCOUNT}:{signature}"))
}

/// How [`GcsTranslator`] hands a create-only upload to fake-gcs-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GcsUpload {
    /// A JSON-API multipart upload with the request's `ifGenerationMatch`: fake-gcs-server
    /// checks it (412 for `0` on an existing object).
    Multipart,
    /// A JSON-API media upload with the request's `ifGenerationMatch`: fake-gcs-server ignores
    /// the precondition there and overwrites, so this is a real store that ignores create-only writes.
    Media,
}

/// A translator in front of fake-gcs-server, which serves the XML API's reads, listings
/// and deletes but has no XML upload (`PUT /bucket/object` answers 400). It turns that
/// request, as the `object_store` crate sends it (with `x-goog-if-generation-match: 0`
/// for a create-only write), into the server's JSON upload with the same precondition, and
/// answers with the headers the XML API gives (`ETag`, `x-goog-generation`). Every other
/// request goes to the server unchanged. It decides nothing itself: a 412, a 404 or a
/// 200 is the server's own.
pub(crate) struct GcsTranslator {
    pub endpoint: String,
    task: tokio::task::JoinHandle<()>,
}

impl GcsTranslator {
    pub async fn start(target: &str, upload: GcsUpload) -> GcsTranslator {
        let target = target.trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind translator");
        let endpoint = format!("http://{}", listener.local_addr().expect("translator address"));
        let http = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (http, target) = (http.clone(), target.clone());
            async move { translate(&http, &target, upload, req).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GcsTranslator { endpoint, task }
    }
}

impl Drop for GcsTranslator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn translate(
    http: &reqwest::Client,
    target: &str,
    upload: GcsUpload,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{HeaderName, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let object = parts.uri.path().trim_start_matches('/').split_once('/');
    let put_object =
        (parts.method == axum::http::Method::PUT && parts.uri.query().is_none()).then_some(object).flatten();
    let resp = match put_object {
        Some((bucket, object)) => {
            let name = percent_decode(object);
            let content_type = header("content-type").unwrap_or("application/octet-stream").to_string();
            let boundary = "tines-audit-translator-boundary";
            let meta = serde_json::json!({ "name": name, "contentType": content_type });
            let mut multipart = format!(
                "--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n\
                 --{boundary}\r\ncontent-type: {content_type}\r\n\r\n"
            )
            .into_bytes();
            multipart.extend_from_slice(&body);
            multipart.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let (kind, payload, ct) = match upload {
                GcsUpload::Multipart => ("multipart", multipart, format!("multipart/related; boundary={boundary}")),
                GcsUpload::Media => ("media", body.to_vec(), content_type),
            };
            let mut url = url::Url::parse(&format!("{target}/upload/storage/v1/b/{bucket}/o")).expect("upload URL");
            url.query_pairs_mut().append_pair("uploadType", kind);
            if let Some(generation) = header("x-goog-if-generation-match") {
                url.query_pairs_mut().append_pair("ifGenerationMatch", generation);
            }
            if upload == GcsUpload::Media {
                url.query_pairs_mut().append_pair("name", &name);
            }
            let sent = http.post(url).header("content-type", ct).body(payload).send().await;
            let Ok(r) = sent else { return StatusCode::BAD_GATEWAY.into_response() };
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = r.text().await.unwrap_or_default();
            if !status.is_success() {
                return (status, text).into_response();
            }
            let meta: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let mut out = StatusCode::OK.into_response();
            for (name, value) in [
                ("etag", format!("\"{}\"", meta["etag"].as_str().unwrap_or(""))),
                ("x-goog-generation", meta["generation"].as_str().unwrap_or("").to_string()),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    out.headers_mut().insert(HeaderName::from_static(name), v);
                }
            }
            return out;
        }
        _ => {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).expect("method");
            let mut req = http.request(method, format!("{target}{path}")).body(body);
            for (name, value) in &parts.headers {
                if !matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
                    req = req.header(name.as_str(), value.as_bytes());
                }
            }
            req.send().await
        }
    };
    let Ok(r) = resp else { return StatusCode::BAD_GATEWAY.into_response() };
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers: Vec<(String, Vec<u8>)> = r
        .headers()
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "content-length" | "connection" | "transfer-encoding"))
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let bytes = r.bytes().await.unwrap_or_default();
    let mut out = (status, bytes).into_response();
    for (n, v) in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_bytes(&v)) {
            out.headers_mut().insert(n, v);
        }
    }
    out
}

/// `%2F` and the like back to bytes (the `object_store` crate encodes every non-alphanumeric).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex =
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
