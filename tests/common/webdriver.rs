//! A small W3C WebDriver client over reqwest, enough to drive Debian's
//! headless Chromium through `chromedriver` in the console tests: open pages,
//! find elements by CSS, type, click, read text, and take screenshots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn which(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium session.
    pub async fn start() -> Browser {
        Browser::start_in_zone(None).await
    }

    /// [`Browser::start`] with the browser's local time zone set (`TZ`, such as `Asia/Kolkata`).
    pub async fn start_in_zone(zone: Option<&str>) -> Browser {
        let driver_bin = which(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .expect("chromedriver is missing: run scripts/install-test-deps.sh (Debian chromium and chromium-driver)");
        let chrome = which(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"])
            .expect("chromium is missing: run scripts/install-test-deps.sh");
        let port = free_port();
        let mut driver = Command::new(driver_bin);
        if let Some(z) = zone {
            driver.env("TZ", z);
        }
        let driver = driver
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => serde_json::from_str::<Value>(&r.text().await.unwrap_or_default())
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(Instant::now() < end, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let r: Value = json_of(
            http.post(format!("{base}/session"))
                .header("content-type", "application/json")
                .body(caps.to_string())
                .send()
                .await
                .unwrap(),
        )
        .await;
        let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {r}")).to_string();
        Browser { http, base, session, driver, _profile: profile }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let v: Value = json_of(req.send().await.unwrap()).await;
        if let Some(err) = v["value"]["error"].as_str() {
            panic!("webdriver {path}: {err}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_string()
    }

    /// Waits up to 10 s for the address to contain `part` (a navigation finished).
    pub async fn wait_url(&self, part: &str) {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url().await;
            if url.contains(part) {
                return;
            }
            assert!(Instant::now() < end, "the browser stayed at {url}, expected {part}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v =
            self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        v.as_array()
            .unwrap_or_else(|| panic!("find {css}: {v}"))
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap_or_else(|| panic!("element {e}")).to_string())
            .collect()
    }

    /// The first element matching `css`, waiting for it up to 10 s.
    pub async fn find(&self, css: &str) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return e;
            }
            assert!(Instant::now() < end, "no element {css} on {}", self.url().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, el: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{el}/click"), Some(json!({}))).await;
    }

    pub async fn clear(&self, el: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{el}/clear"), Some(json!({}))).await;
    }

    pub async fn type_text(&self, el: &str, text: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{el}/value"), Some(json!({"text": text}))).await;
    }

    pub async fn text(&self, el: &str) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{el}/text"), None).await.as_str().unwrap_or("").to_string()
    }

    /// An attribute of an element (empty when it has none).
    pub async fn attribute(&self, el: &str, name: &str) -> String {
        let path = format!("/element/{el}/attribute/{name}");
        self.call(reqwest::Method::GET, &path, None).await.as_str().unwrap_or("").to_string()
    }

    /// The page's title: a script that ran would change it.
    pub async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None).await.as_str().unwrap_or("").to_string()
    }

    pub async fn displayed(&self, el: &str) -> bool {
        self.call(reqwest::Method::GET, &format!("/element/{el}/displayed"), None).await.as_bool().unwrap_or(false)
    }

    /// The computed value of a CSS property: whether the page's styles applied.
    pub async fn css(&self, el: &str, property: &str) -> String {
        let path = format!("/element/{el}/css/{property}");
        self.call(reqwest::Method::GET, &path, None).await.as_str().unwrap_or("").to_string()
    }

    pub async fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", None).await.as_array().cloned().unwrap_or_default()
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64_decode(v.as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Presses and releases each key of `keys` on whatever has the focus (`\u{e00c}` is Escape).
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|k| [json!({"type": "keyDown", "value": k}), json!({"type": "keyUp", "value": k})])
            .collect();
        self.call(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "kb", "actions": actions}]})),
        )
        .await;
    }

    /// The `id` attribute of the element that has the focus.
    pub async fn focused_id(&self) -> String {
        let v = self.call(reqwest::Method::GET, "/element/active", None).await;
        let el = v[ELEMENT].as_str().unwrap_or_else(|| panic!("no active element: {v}")).to_string();
        self.attribute(&el, "id").await
    }

    /// Runs `script` (a function body) in the page and returns what it returns: for reading
    /// the layout, never for acting on the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// A Chrome DevTools command, through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(reqwest::Method::POST, "/goog/cdp/execute", Some(json!({"cmd": cmd, "params": params}))).await
    }

    /// Sets the window's size in CSS pixels.
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    pub async fn quit(mut self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

async fn json_of(r: reqwest::Response) -> Value {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("webdriver answered {text:?}: {e}"))
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => 0,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| acc | u32::from(val(c)) << (18 - 6 * i));
        let pads = chunk.iter().filter(|&&c| c == b'=').count();
        let take = 3 - pads.min(2) - if chunk.len() < 4 { 4 - chunk.len() } else { 0 };
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take.min(3)]);
    }
    out
}
