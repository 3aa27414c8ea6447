//! Interoperability with real clients against an in-process broker: `mosquitto_pub`/`mosquitto_sub`
//! (3.1.1 and 5), Python paho-mqtt (3.1.1 and 5, with will delay) and the mqtt.js CLI running the
//! last-will walk-through of issue 2.
//!
//! A test whose client is not installed is skipped with a message, unless `MQTTD_REQUIRE_PEERS=1`, where
//! it fails. Subscribers are known to be subscribed by polling the broker's subscription count.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mqttd_testkit::{TestBroker, TIMEOUT};

/// Whether a peer client can run; when it cannot, skip (or fail under `MQTTD_REQUIRE_PEERS=1`).
fn peer_available(name: &str, probe: &mut Command) -> bool {
    let works = probe.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if works {
        return true;
    }
    if std::env::var("MQTTD_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{name} is required (MQTTD_REQUIRE_PEERS=1) but not installed");
    }
    eprintln!("skipping: {name} is not installed (set MQTTD_REQUIRE_PEERS=1 to make this a failure)");
    false
}

fn mosquitto_available() -> bool {
    // `mosquitto_sub --help` exits 1; `which` tells whether it is on PATH.
    peer_available(
        "mosquitto_sub/mosquitto_pub (Debian mosquitto-clients)",
        Command::new("sh").args(["-c", "command -v mosquitto_sub && command -v mosquitto_pub"]),
    )
}

fn paho_available() -> bool {
    peer_available("Python paho-mqtt (pip install paho-mqtt)", Command::new("python3").args(["-c", "import paho.mqtt"]))
}

fn mqtt_js_available() -> bool {
    let probe = Command::new("mqtt").arg("version").output();
    let is_mqtt_js = probe.as_ref().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("MQTT.js"));
    peer_available(
        "the mqtt.js CLI (npm i -g mqtt)",
        Command::new("sh").args(["-c", if is_mqtt_js { "true" } else { "false" }]),
    )
}

/// A child process that is killed (by its pid) and reaped when the test ends, however it ends.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawns");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The next line of output, within [`TIMEOUT`].
    fn line(&self) -> String {
        self.lines.recv_timeout(TIMEOUT).expect("a line of output within the timeout")
    }

    /// Sends `signal` to the process by its pid and waits for it to exit.
    fn signal(&mut self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
        self.wait();
    }

    /// Waits for the process to exit, within [`TIMEOUT`].
    fn wait(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(start.elapsed() < TIMEOUT, "process {} did not exit in time", self.child.id());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command to completion within [`TIMEOUT`] and returns its output.
fn run(cmd: &mut Command) -> Output {
    let mut running = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawns");
    let start = Instant::now();
    while running.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > TIMEOUT {
            let _ = running.kill();
            let out = running.wait_with_output().expect("output");
            panic!("{cmd:?} did not finish in time; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    running.wait_with_output().expect("output")
}

/// Polls until the broker has `n` subscriptions (bounded by [`TIMEOUT`]).
fn wait_for_subscriptions(tb: &TestBroker, n: usize) {
    let start = Instant::now();
    while tb.broker.subscription_count() < n {
        assert!(start.elapsed() < TIMEOUT, "subscriptions: {} of {n}", tb.broker.subscription_count());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(name)
}

/// `mosquitto_sub` receives, at the requested QoS, what `mosquitto_pub` publishes, in protocol `version`.
fn mosquitto_round_trip(version: &str) {
    let tb = TestBroker::start();
    let port = tb.port().to_string();
    let common = ["-h", "127.0.0.1", "-p", &port, "-V", version];
    let mut sub = Running::spawn(Command::new("mosquitto_sub").args(common).args([
        "-t",
        "interop/#",
        "-q",
        "2",
        "-v",
        "-C",
        "3",
    ]));
    wait_for_subscriptions(&tb, 1);
    for qos in ["0", "1", "2"] {
        let topic = format!("interop/q{qos}");
        let out = run(Command::new("mosquitto_pub").args(common).args([
            "-t",
            &topic,
            "-q",
            qos,
            "-m",
            &format!("hello {qos}"),
        ]));
        assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(sub.line(), format!("interop/q{qos} hello {qos}"));
    }
    assert!(sub.wait().success(), "mosquitto_sub exits after 3 messages");

    // A retained message is there for a later subscriber.
    let out =
        run(Command::new("mosquitto_pub").args(common).args(["-t", "interop/kept", "-r", "-q", "1", "-m", "kept"]));
    assert!(out.status.success());
    let out = run(Command::new("mosquitto_sub").args(common).args(["-t", "interop/kept", "-v", "-C", "1"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "interop/kept kept");
}

/// mosquitto_pub and mosquitto_sub talk through mqttd with MQTT 3.1.1.
#[test]
fn mosquitto_clients_interoperate_over_mqtt_3_1_1() {
    if mosquitto_available() {
        mosquitto_round_trip("mqttv311");
    }
}

/// mosquitto_pub and mosquitto_sub talk through mqttd with MQTT 5.
#[test]
fn mosquitto_clients_interoperate_over_mqtt_5() {
    if mosquitto_available() {
        mosquitto_round_trip("mqttv5");
    }
}

/// mosquitto_sub -V 5 sees user properties set by mosquitto_pub -D, forwarded unchanged [MQTT-3.3.2-17].
#[test]
fn mosquitto_v5_user_properties_are_forwarded() {
    if !mosquitto_available() {
        return;
    }
    let tb = TestBroker::start();
    let port = tb.port().to_string();
    let common = ["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5"];
    let sub =
        Running::spawn(Command::new("mosquitto_sub").args(common).args(["-t", "props", "-C", "1", "-F", "%P %p"]));
    wait_for_subscriptions(&tb, 1);
    let out = run(Command::new("mosquitto_pub").args(common).args([
        "-t",
        "props",
        "-m",
        "body",
        "-D",
        "publish",
        "user-property",
        "who",
        "mosquitto",
    ]));
    assert!(out.status.success());
    assert_eq!(sub.line(), "who:mosquitto body");
}

fn paho(script_name: &str, args: &[&str]) {
    let out = run(Command::new("python3").arg(script(script_name)).args(args));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{script_name} {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// paho-mqtt subscribes and publishes at QoS 0, 1 and 2 and gets retained messages over MQTT 3.1.1.
#[test]
fn paho_mqtt_interoperates_over_mqtt_3_1_1() {
    if paho_available() {
        let tb = TestBroker::start();
        paho("paho_roundtrip.py", &[&tb.port().to_string(), "3.1.1"]);
    }
}

/// paho-mqtt does the same over MQTT 5, with user properties and content type forwarded.
#[test]
fn paho_mqtt_interoperates_over_mqtt_5() {
    if paho_available() {
        let tb = TestBroker::start();
        paho("paho_roundtrip.py", &[&tb.port().to_string(), "5"]);
    }
}

/// paho-mqtt over MQTT 5: a shared subscription group splits the messages, subscription identifiers
/// and topic aliases (both ways) work with a real client.
#[test]
fn paho_mqtt_v5_shared_subscriptions_identifiers_and_topic_aliases() {
    if paho_available() {
        let tb = TestBroker::start();
        paho("paho_mqtt5_features.py", &[&tb.port().to_string()]);
    }
}

/// Two `mosquitto_sub -V 5` in one shared group split what `mosquitto_pub` sends: each message once.
#[test]
fn mosquitto_v5_shared_subscription_group_splits_the_messages() {
    if !mosquitto_available() {
        return;
    }
    let tb = TestBroker::start();
    let port = tb.port().to_string();
    let common = ["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5"];
    let members: Vec<Running> = (0..2)
        .map(|_| Running::spawn(Command::new("mosquitto_sub").args(common).args(["-t", "$share/g/ms/t", "-q", "1"])))
        .collect();
    wait_for_subscriptions(&tb, 2);
    for i in 0..10 {
        let out = run(Command::new("mosquitto_pub").args(common).args(["-t", "ms/t", "-q", "1", "-m", &i.to_string()]));
        assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut got: Vec<Vec<u32>> = vec![Vec::new(); 2];
    let start = Instant::now();
    while got.iter().map(Vec::len).sum::<usize>() < 10 {
        assert!(start.elapsed() < TIMEOUT, "only {got:?} arrived");
        for (k, m) in members.iter().enumerate() {
            while let Ok(line) = m.lines.recv_timeout(Duration::from_millis(10)) {
                got[k].push(line.trim().parse().expect("a number"));
            }
        }
    }
    let mut all: Vec<u32> = got.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>(), "each message once: {got:?}");
    assert!(got.iter().all(|g| !g.is_empty()), "both members got some: {got:?}");
}

/// A paho-mqtt MQTT 5 will with Will Delay Interval waits for the delay, and is cancelled when the client
/// reconnects in time [MQTT-3.1.3-9].
#[test]
fn paho_mqtt_v5_will_delay_is_honoured() {
    if paho_available() {
        let tb = TestBroker::start();
        paho("paho_will_delay.py", &[&tb.port().to_string()]);
    }
}

/// The last-will walk-through of issue 2 with the mqtt.js CLI, verbatim; terminal 1 is ended with
/// `signal`. Terminal 2 must print the message of terminal 3, then terminal 1's will [MQTT-3.1.2-8].
fn mqtt_js_walk_through(signal: &str) {
    let tb = TestBroker::start();
    let port = tb.port().to_string();
    let mut terminal1 = Running::spawn(Command::new("mqtt").args([
        "sub",
        "-t",
        "mars",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--will-topic",
        "HQ/die",
        "--will-message",
        "matt damon",
    ]));
    let mut terminal2 =
        Running::spawn(Command::new("mqtt").args(["sub", "-t", "HQ/+", "-h", "127.0.0.1", "-p", &port, "-v"]));
    wait_for_subscriptions(&tb, 2);
    let out = run(Command::new("mqtt").args([
        "pub",
        "-t",
        "HQ/mattdamon",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "I'M PRETTY MUCH FUCKED.",
    ]));
    assert!(out.status.success(), "mqtt pub: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(terminal2.line(), "HQ/mattdamon I'M PRETTY MUCH FUCKED.");
    terminal1.signal(signal);
    assert_eq!(terminal2.line(), "HQ/die matt damon");
    terminal2.signal("INT");
}

/// The walk-through with terminal 1 ended by SIGINT (Ctrl-C).
#[test]
fn mqtt_js_walk_through_publishes_the_will_when_terminal_1_gets_sigint() {
    if mqtt_js_available() {
        mqtt_js_walk_through("INT");
    }
}

/// The walk-through with terminal 1 ended by SIGKILL.
#[test]
fn mqtt_js_walk_through_publishes_the_will_when_terminal_1_gets_sigkill() {
    if mqtt_js_available() {
        mqtt_js_walk_through("KILL");
    }
}
