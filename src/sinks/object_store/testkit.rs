//! Test doubles that are real: moto (an S3 implementation, from PyPI) run as a
//! child process on a port of its own choosing, and a TCP proxy in front of it
//! that can cut the line to simulate an outage.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

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

    /// Creates a bucket with a name no other test uses.
    pub async fn bucket(&self, label: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("t-{label}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let resp = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto at {} does not answer: {e}", self.endpoint));
        assert!(resp.status().is_success(), "creating bucket {name}: {}", resp.status());
        name
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
pub(crate) struct Proxy {
    pub endpoint: String,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: &str) -> Proxy {
        let target = target.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let (up, rx) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                if !*rx.borrow() {
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { endpoint, up, task }
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.set_up(false);
        self.task.abort();
    }
}
