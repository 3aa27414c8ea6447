//! The dashboard in a real browser: headless Chromium driven by chromedriver (Debian's `chromium` and
//! `chromium-driver`, as `.ci/run` installs them) over the WebDriver protocol, spoken with the same small
//! HTTP client as the API tests. The page must load without console errors, show the connections the
//! test made, a rising message rate while the test publishes, a client's detail, and a will fired by the
//! test in the recent events. Screenshots (phone and desktop widths) go to the test's output directory.
//! Skips when Chromium or chromedriver is missing, unless `MQTTD_REQUIRE_PEERS=1`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqttd_proto::QoS;
use mqttd_testkit::{connect, will, Peer, TIMEOUT};
use serde_json::{json, Value};

use crate::common::{broker, request, V4, V5};

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.is_file())
}

fn skip(what: &str) {
    let required = std::env::var("MQTTD_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    assert!(!required, "{what} is missing and MQTTD_REQUIRE_PEERS=1");
    eprintln!("SKIPPED: {what} is not installed");
}

/// A chromedriver process and one browser session in it; both end on drop.
struct Driver {
    process: Child,
    addr: SocketAddr,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Driver {
    async fn start(chromedriver: PathBuf, chromium: PathBuf) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let process = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut driver = Driver { process, addr, session: String::new() };
        let start = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(start.elapsed() < TIMEOUT, "chromedriver did not listen in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=412,1400"];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let created = driver.call("POST", "/session", Some(capabilities)).await;
        driver.session = created["sessionId"].as_str().expect("a session id").to_owned();
        driver
    }

    /// One WebDriver command; returns its `value` (panics on a WebDriver error).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [("Content-Type", "application/json; charset=utf-8")];
        let reply = request(self.addr, method, path, &headers, &body).await;
        let value = reply.json()["value"].clone();
        assert_eq!(reply.status, 200, "WebDriver {method} {path}: {value}");
        value
    }

    async fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body).await
    }

    async fn script(&self, script: &str) -> Value {
        self.session_call("POST", "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }

    /// Runs `script` until `accept` likes its result; panics after [`TIMEOUT`] with the last result.
    async fn wait_for(&self, what: &str, script: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let value = self.script(script).await;
            if accept(&value) {
                return value;
            }
            assert!(start.elapsed() < TIMEOUT, "timed out waiting until {what}; last: {value}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let png = self.session_call("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().expect("base64")).expect("decodes");
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, bytes).expect("writes the screenshot");
        path
    }
}

fn text_of(id: &str) -> String {
    format!("return document.getElementById('{id}').textContent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_connections_rates_a_client_and_a_fired_will_in_a_real_browser() {
    let Some(chromium) = on_path(&["chromium", "chromium-browser", "google-chrome"]) else {
        return skip("Chromium (apt install chromium)");
    };
    let Some(chromedriver) = on_path(&["chromedriver"]) else {
        return skip("chromedriver (apt install chromium-driver)");
    };
    let tb = broker();
    let (mqtt, http) = (tb.addrs[0], tb.addrs[1]);
    let mut watcher = Peer::connect(mqtt, "dash-watcher", V4).await;
    watcher.subscribe("dash/#", QoS::AtMostOnce).await;
    let mut publisher = Peer::connect(mqtt, "dash-publisher", V5).await;
    let mut c = connect("dash-doomed", V5);
    c.will = Some(will("dash/will", b"gone", QoS::AtMostOnce, false));
    let (doomed, _) = Peer::connect_with(mqtt, c).await;

    let driver = Driver::start(chromedriver, chromium).await;
    driver.session_call("POST", "/url", Some(json!({ "url": format!("http://{http}/") }))).await;
    driver.wait_for("the stream is live", &text_of("live"), |v| v == "live").await;
    driver.wait_for("three connections shown", &text_of("connections"), |v| v == "3").await;

    // The rate rises while the test publishes (QoS 0 to the watcher, 1 in and 1 out per message).
    let publishing = Arc::new(AtomicBool::new(true));
    let running = publishing.clone();
    let load = tokio::spawn(async move {
        while running.load(Ordering::Relaxed) {
            publisher.publish("dash/load", b"x", QoS::AtMostOnce, false).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        publisher
    });
    let rate = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok()).is_some_and(|r| r >= 10.0);
    driver.wait_for("messages in per second >= 10", &text_of("rate-in"), rate).await;
    driver.wait_for("messages out per second >= 10", &text_of("rate-out"), rate).await;
    publishing.store(false, Ordering::Relaxed);
    let _publisher = load.await.expect("publisher task");

    // A client dies without DISCONNECT: its will goes out and shows in the events list.
    doomed.drop_abruptly();
    let events = driver
        .wait_for("the will in the events", &text_of("events"), |v| {
            v.as_str().is_some_and(|t| t.contains("will of dash-doomed published to dash/will"))
        })
        .await;
    assert!(events.as_str().is_some_and(|t| t.contains("dash-doomed disconnected: closed by peer")), "{events}");

    // The clients table is searchable and a click shows one client's detail.
    driver
        .script("const s = document.getElementById('search'); s.value = 'dash-w'; s.dispatchEvent(new Event('input')); return 0")
        .await;
    let rows = "return [...document.querySelectorAll('#clients tr')].map((r) => r.dataset.client)";
    driver.wait_for("only dash-watcher listed", rows, |v| *v == json!(["dash-watcher"])).await;
    driver.script("document.querySelector('#clients tr').click(); return 0").await;
    driver
        .wait_for("the detail of dash-watcher", &text_of("detail"), |v| {
            v.as_str().is_some_and(|t| t.contains("\"filter\": \"dash/#\""))
        })
        .await;

    let phone = driver.screenshot("dashboard-phone.png").await;
    driver.session_call("POST", "/window/rect", Some(json!({ "width": 1280, "height": 1000 }))).await;
    let desktop = driver.screenshot("dashboard-desktop.png").await;
    eprintln!("screenshots: {} {}", phone.display(), desktop.display());

    let logs = driver.session_call("POST", "/se/log", Some(json!({ "type": "browser" }))).await;
    let severe: Vec<&Value> = logs.as_array().into_iter().flatten().filter(|e| e["level"] == "SEVERE").collect();
    assert!(severe.is_empty(), "console errors: {severe:?}");
    assert!(watcher.recv_publish().await.topic.starts_with("dash/"));
    driver.session_call("DELETE", "", None).await;
}
