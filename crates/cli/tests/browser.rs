//! A real browser against mqttd's WebSocket listener: headless Chromium loads a page (served by mqttd's
//! own `http_dir`) that uses the browser build of MQTT.js (npm `mqtt`, `dist/mqtt.min.js`), subscribes,
//! receives a message published by our `mqtt pub`, and observes the will of a client that dies. The page
//! writes what it saw into the DOM, which `chromium --dump-dom` prints.
//!
//! `--dump-dom` prints the page once it has loaded, so the page holds its load open with an image served
//! by a small HTTP server of this test (the gate): the gate answers that image only after the page has
//! reported `done` (or after the test's bounded wait), so the dump shows the final DOM. The page also
//! reports `subscribed`, so the test publishes only once the browser listens.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::{Backend, Broker, WAIT};

fn required() -> bool {
    std::env::var("MQTTD_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

fn skip(what: &str) {
    assert!(!required(), "{what} is missing and MQTTD_REQUIRE_PEERS=1");
    eprintln!("SKIPPED: {what} is not installed");
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.is_file())
}

/// `dist/mqtt.min.js` of the npm package `mqtt` installed globally (as `.ci/run` does) or in
/// `MQTTJS_DIR`.
fn mqtt_min_js() -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = std::env::var_os("MQTTJS_DIR").map(PathBuf::from).into_iter().collect();
    if let Ok(out) = Command::new("npm").args(["root", "-g"]).stderr(Stdio::null()).output() {
        roots.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("mqtt"));
    }
    roots.push(PathBuf::from("/usr/lib/node_modules/mqtt"));
    roots.push(PathBuf::from("/usr/local/lib/node_modules/mqtt"));
    roots.into_iter().map(|r| r.join("dist/mqtt.min.js")).find(|p| p.is_file())
}

/// The gate: records the paths the page requests and holds `/hold.png` until released.
struct Gate {
    port: u16,
    events: mpsc::Receiver<String>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

const EMPTY_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n";

impl Gate {
    fn start() -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("address").port();
        let (tx, events) = mpsc::channel();
        let held = Arc::new(Mutex::new(Vec::new()));
        let holding = held.clone();
        // Ends with the test process; it only ever talks to the page of this test.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 2048];
                let n = stream.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                if path == "/hold.png" {
                    holding.lock().expect("gate lock").push(stream);
                } else {
                    let _ = stream.write_all(EMPTY_RESPONSE);
                }
                if tx.send(path).is_err() {
                    break;
                }
            }
        });
        Gate { port, events, held }
    }

    /// Waits (bounded) for the page to request `path`; false on timeout.
    fn wait_for(&self, path: &str) -> bool {
        let deadline = std::time::Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(p) if p.starts_with(path) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Answers the held image: the page finishes loading and Chromium dumps the DOM.
    fn release(&self) {
        for mut stream in self.held.lock().expect("gate lock").drain(..) {
            let _ = stream.write_all(EMPTY_RESPONSE);
        }
    }
}

fn page(gate: u16) -> String {
    let script = r#"
const gate = 'http://127.0.0.1:GATE';
const seen = { connected: false, message: null, will: null, error: null };
const show = () => { document.getElementById('result').textContent = JSON.stringify(seen); };
const report = (what) => fetch(gate + '/' + what, { mode: 'no-cors' }).catch(() => {});
const client = mqtt.connect('ws://' + location.host + '/mqtt', { clientId: 'browser-page', reconnectPeriod: 0 });
client.on('connect', () => {
  seen.connected = true;
  show();
  client.subscribe(['browser/msg', 'browser/will'], { qos: 1 }, (err) => {
    if (err) { seen.error = String(err); show(); report('done'); } else { report('subscribed'); }
  });
});
client.on('message', (topic, payload) => {
  if (topic === 'browser/msg') seen.message = payload.toString();
  if (topic === 'browser/will') seen.will = payload.toString();
  show();
  if (seen.message !== null && seen.will !== null) { client.end(() => report('done')); }
});
client.on('error', (e) => { seen.error = String(e); show(); report('done'); });
"#
    .replace("GATE", &gate.to_string());
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>mqttd browser test</title>\
         <script src=\"mqtt.min.js\"></script></head>\n<body><p id=\"result\">not started</p>\
         <img src=\"http://127.0.0.1:{gate}/hold.png\" alt=\"\">\n<script>{script}</script></body></html>\n"
    )
}

fn write_site(dir: &Path, gate: u16, mqtt_js: &Path) {
    std::fs::write(dir.join("index.html"), page(gate)).expect("write page");
    std::fs::copy(mqtt_js, dir.join("mqtt.min.js")).expect("copy mqtt.min.js");
}

#[test]
fn a_browser_with_mqtt_js_receives_a_publication_and_a_will_over_websockets() {
    let Some(chromium) = on_path(&["chromium", "chromium-browser", "google-chrome"]) else {
        return skip("Chromium (apt install chromium)");
    };
    let Some(mqtt_js) = mqtt_min_js() else { return skip("the npm package mqtt (npm i -g mqtt)") };
    let site = tempfile::tempdir().expect("temporary directory");
    let profile = tempfile::tempdir().expect("temporary directory");
    let gate = Gate::start();
    write_site(site.path(), gate.port, &mqtt_js);
    let ws_port = common::free_port();
    let lines = [
        format!("listener {ws_port} 127.0.0.1"),
        "protocol websockets".to_owned(),
        format!("http_dir {}", site.path().display()),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let Some(broker) = Broker::start(Backend::Mqttd, &lines) else {
        eprintln!("SKIPPED: mqttd is not built in this target directory (cargo build -p mqttd-broker)");
        return;
    };
    // A client whose will the browser should see: connected (it printed a marker) before the browser starts.
    let mut doomed = broker.subscribe_ready(
        &["-t", "browser/ready", "-v", "--will-topic", "browser/will", "--will-message", "gone"],
        "browser/ready",
    );
    let mut browser = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("http://127.0.0.1:{ws_port}/index.html"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let subscribed = gate.wait_for("/subscribed");
    if subscribed {
        broker.publish(&["-t", "browser/msg", "-m", "hello browser", "-q", "1"]);
        // Killed without DISCONNECT: mqttd publishes its will.
        let _ = doomed.child.kill();
        let _ = doomed.child.wait();
        gate.wait_for("/done");
    }
    gate.release();
    let mut dom = String::new();
    let reader = browser.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = reader;
        let mut text = String::new();
        let _ = reader.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    if let Ok(text) = rx.recv_timeout(WAIT) {
        dom = text;
    }
    let _ = browser.kill();
    let _ = browser.wait();
    assert!(subscribed, "the page never subscribed; DOM: {dom}");
    let expected = r#"{"connected":true,"message":"hello browser","will":"gone","error":null}"#;
    assert!(dom.contains(expected), "expected {expected} in the DOM:\n{dom}");
}
