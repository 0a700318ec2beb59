//! A real rsyslog daemon for the syslog tests (installed by scripts/test.sh).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Rsyslog {
    child: Child,
    pub out: PathBuf,
    pub port: u16,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rsyslog {
    /// Stops the daemon as a service manager would (SIGTERM) and waits until it has exited,
    /// so every connection it had is closed.
    pub fn stop(mut self) {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "could not signal rsyslogd");
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn rsyslogd() -> &'static str {
    for p in ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("rsyslogd is not installed: run scripts/test.sh, which installs rsyslog and rsyslog-openssl");
}

/// Starts rsyslogd in the foreground with one input, writing each message's raw text as a line.
pub fn start_rsyslog(dir: &Path, input: &str, port: u16, tls: Option<&Path>) -> Rsyslog {
    let out = dir.join(format!("received-{port}.log"));
    let work = dir.join(format!("work-{port}"));
    std::fs::create_dir_all(&work).unwrap();
    let tls_global = tls.map_or(String::new(), |d| {
        format!(
            "global(DefaultNetstreamDriver=\"ossl\" DefaultNetstreamDriverCAFile=\"{0}/ca.pem\" DefaultNetstreamDriverCertFile=\"{0}/server.pem\" DefaultNetstreamDriverKeyFile=\"{0}/server.key\")\n",
            d.display()
        )
    });
    let module = match (input, tls.is_some()) {
        ("imtcp", true) => {
            "module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")"
        }
        ("imtcp", false) => "module(load=\"imtcp\")",
        _ => "module(load=\"imudp\")",
    };
    let conf = format!(
        "global(workDirectory=\"{work}\" maxMessageSize=\"256k\")\n{tls_global}{module}\n\
         template(name=\"rawline\" type=\"string\" string=\"%rawmsg%\\n\")\n\
         ruleset(name=\"in\") {{ action(type=\"omfile\" file=\"{out}\" template=\"rawline\" flushOnTXEnd=\"on\" asyncWriting=\"off\") }}\n\
         input(type=\"{input}\" port=\"{port}\" address=\"127.0.0.1\" ruleset=\"in\")\n",
        work = work.display(),
        out = out.display()
    );
    let conf_path = dir.join(format!("rsyslog-{port}.conf"));
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(rsyslogd())
        .args(["-n", "-i"])
        .arg(dir.join(format!("rsyslog-{port}.pid")))
        .arg("-f")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let r = Rsyslog { child, out, port };
    if input == "imtcp" {
        wait_for("rsyslog to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    } else {
        // UDP has no handshake: wait until rsyslog has opened its socket.
        wait_for("rsyslog to bind UDP", Duration::from_secs(20), || {
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
        });
    }
    r
}

pub fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn received(r: &Rsyslog) -> Vec<String> {
    std::fs::read_to_string(&r.out).map(|s| s.lines().map(str::to_string).collect()).unwrap_or_default()
}

pub fn wait_lines(r: &Rsyslog, n: usize) -> Vec<String> {
    wait_for("rsyslog to write every message", Duration::from_secs(30), || received(r).len() >= n);
    received(r)
}

pub fn ids_in_order(lines: &[String]) -> Vec<i64> {
    lines
        .iter()
        .map(|l| {
            let i = l.find(" id=\"").unwrap() + 5;
            l[i..].split('"').next().unwrap().parse().unwrap()
        })
        .collect()
}
