//! Helpers of the HTTP tests: a broker with an MQTT and an HTTP listener, a small HTTP/1.1 client over
//! real TCP, and a strict parser of the Prometheus text format.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mqttd_broker::http::HttpSettings;
use mqttd_broker::Settings;
use mqttd_testkit::{TestBroker, Wrapping, TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A broker with an MQTT listener (`addrs[0]`) and an HTTP listener (`addrs[1]`), without `$SYS`.
pub fn broker_with(http: HttpSettings) -> TestBroker {
    let settings = Settings { sys_interval: Duration::ZERO, ..Default::default() };
    let listeners = vec![Wrapping::default(), Wrapping { http: Some(http), ..Wrapping::default() }];
    TestBroker::with_listeners(settings, listeners)
}

pub fn broker() -> TestBroker {
    broker_with(HttpSettings::default())
}

/// A response: status, headers (names lowercase) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request (`Connection: close`) and reads the whole response, within [`TIMEOUT`].
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects to the HTTP listener");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(head.as_bytes()).await.expect("writes the request");
        read_response(&mut stream).await
    };
    let raw = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no HTTP response to {method} {path} within {TIMEOUT:?}"));
    parse_reply(&String::from_utf8(raw).expect("UTF-8 response"))
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], "").await
}

/// Reads a response: its head, then `Content-Length` bytes (some servers, chromedriver among them, do
/// not close at once after `Connection: close`), or up to the end without one.
async fn read_response(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length: Option<usize> =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok());
            if let Some(length) = length {
                if raw.len() >= end + 4 + length {
                    return raw;
                }
            }
        }
        let n = stream.read(&mut chunk).await.expect("reads the response");
        if n == 0 {
            return raw;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

fn parse_reply(text: &str) -> Reply {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: body.to_owned() }
}

/// Samples of an exposition by name and sorted `k="v"` labels, e.g. `("mqttd_sessions", "state=\"online\"")`.
pub type Samples = BTreeMap<(String, String), f64>;

/// Parses the Prometheus text format strictly: every sample's family has `# HELP` and `# TYPE` (counter
/// or gauge) before its first sample, names and labels are well-formed, values are numbers, no sample
/// appears twice. Panics naming the line otherwise.
pub fn parse_prometheus(text: &str) -> Samples {
    let mut helped = std::collections::HashSet::new();
    let mut typed = std::collections::HashMap::new();
    let mut samples = Samples::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for (i, line) in text.lines().enumerate() {
        let fail = |why: &str| -> ! { panic!("line {}: {why}: {line:?}", i + 1) };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| fail("HELP without text"));
            if !name_ok(name) || help.trim().is_empty() || !helped.insert(name.to_owned()) {
                fail("bad or repeated HELP");
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| fail("TYPE without a type"));
            if !["counter", "gauge"].contains(&kind) || typed.insert(name.to_owned(), kind.to_owned()).is_some() {
                fail("bad or repeated TYPE");
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            fail("unexpected comment or empty line");
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| fail("sample without a value"));
        let value: f64 = value.parse().unwrap_or_else(|_| fail("value is not a number"));
        let (name, labels) = match series.split_once('{') {
            None => (series, String::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| fail("labels not closed"));
                let mut pairs: Vec<&str> = inner.split(',').collect();
                for pair in &pairs {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| fail("label without ="));
                    if !(name_ok(k) && v.len() >= 2 && v.starts_with('"') && v.ends_with('"')) {
                        fail("bad label");
                    }
                }
                pairs.sort_unstable();
                (name, pairs.join(","))
            }
        };
        if !name_ok(name) || !name.starts_with("mqttd_") {
            fail("bad metric name");
        }
        if !helped.contains(name) || !typed.contains_key(name) {
            fail("sample before its HELP and TYPE");
        }
        if typed[name] == "counter" && !name.ends_with("_total") {
            fail("a counter's name must end in _total");
        }
        if samples.insert((name.to_owned(), labels), value).is_some() {
            fail("repeated sample");
        }
    }
    samples
}

/// The value of `name` with exactly `labels` (sorted `k="v"` joined by commas); 0 when absent.
pub fn value(samples: &Samples, name: &str, labels: &str) -> f64 {
    samples.get(&(name.to_owned(), labels.to_owned())).copied().unwrap_or(0.0)
}

/// Scrapes `/metrics` until `condition` holds on the parsed samples; panics after [`TIMEOUT`].
pub async fn scrape_until(addr: SocketAddr, what: &str, condition: impl Fn(&Samples) -> bool) -> Samples {
    let start = Instant::now();
    loop {
        let reply = get(addr, "/metrics").await;
        assert_eq!(reply.status, 200);
        let samples = parse_prometheus(&reply.body);
        if condition(&samples) {
            return samples;
        }
        assert!(start.elapsed() < TIMEOUT, "timed out waiting until {what}; last scrape:\n{}", reply.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub const V4: mqttd_proto::ProtocolVersion = mqttd_proto::ProtocolVersion::V3_1_1;
pub const V5: mqttd_proto::ProtocolVersion = mqttd_proto::ProtocolVersion::V5;

/// Waits until the broker holds `n` retained messages.
pub async fn wait_retained(tb: &TestBroker, n: usize) {
    let start = Instant::now();
    while tb.broker.retained_count() != n {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {n} retained messages");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `/api/v1/events` until it holds at least `n` events; returns them.
pub async fn events_until(addr: SocketAddr, n: usize) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let reply = get(addr, "/api/v1/events").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let events = reply.json()["events"].as_array().cloned().unwrap_or_default();
        if events.len() >= n {
            return events;
        }
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {n} events: {events:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
