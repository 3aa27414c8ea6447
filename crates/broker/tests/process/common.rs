//! Running the real `mqttd` binary: a child per test on a free port of 127.0.0.1, its stdout and stderr
//! collected for assertions, stopped by its pid when the test ends. Waits poll with a bound
//! ([`TIMEOUT`]); nothing sleeps to synchronise. Also a real Mosquitto ([`Mosquitto`]) for the tests that
//! run both.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqttd_proto::ProtocolVersion;
pub use mqttd_testkit::TIMEOUT;

pub const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// A port that was free a moment ago (bound on port 0, then released for the broker).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds port 0");
    listener.local_addr().expect("has an address").port()
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after [`TIMEOUT`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether 127.0.0.1:`port` accepts connections.
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The address of 127.0.0.1:`port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A `mqttd` child process; its stdout and stderr are collected for assertions. Killed (by pid) on drop.
pub struct Mqttd {
    pub child: Child,
    pub port: u16,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Mqttd {
    /// Writes `settings` after a `listener` line for a free port into `dir/mqttd.conf`, starts mqttd
    /// with it and waits until it accepts connections.
    pub fn start(dir: &Path, settings: &str) -> Mqttd {
        let port = free_port();
        Mqttd::start_config(dir, &format!("listener {port} 127.0.0.1\n{settings}"), port)
    }

    /// Starts mqttd with the whole config `text` and waits until `port` accepts connections. Tests run
    /// as root in some containers, where mqttd (as Mosquitto) would switch to `mosquitto` or `nobody`;
    /// a `user root` line keeps the test's files readable unless `text` names a user itself.
    pub fn start_config(dir: &Path, text: &str, port: u16) -> Mqttd {
        let config = dir.join("mqttd.conf");
        let has_user = text.lines().any(|l| l.starts_with("user "));
        let text = if has_user { text.to_owned() } else { format!("user root\n{text}") };
        std::fs::write(&config, text).expect("writes the config");
        let mut mqttd = Mqttd::spawn(&["-c".as_ref(), config.as_os_str()], port);
        mqttd.wait_listening();
        mqttd
    }

    /// Starts mqttd with `args`, without waiting.
    pub fn spawn(args: &[&std::ffi::OsStr], port: u16) -> Mqttd {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args(args)
            .env_remove("MQTTD_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mqttd starts");
        let stdout = collect(child.stdout.take().expect("stdout is piped"));
        let stderr = collect(child.stderr.take().expect("stderr is piped"));
        Mqttd { child, port, stdout, stderr }
    }

    /// Waits until the port accepts connections; panics with the log if mqttd exits first.
    pub fn wait_listening(&mut self) {
        let start = Instant::now();
        while !listening(self.port) {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("mqttd exited with {status} before listening:\n{}", self.log());
            }
            assert!(start.elapsed() < TIMEOUT, "mqttd did not listen on {}:\n{}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        local(self.port)
    }

    /// Everything mqttd wrote to stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().expect("log lock").clone()
    }

    /// Everything mqttd wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("log lock").clone()
    }

    /// Waits until stderr has `needle` `count` times or more.
    pub fn wait_for_log(&self, needle: &str, count: usize) {
        let start = Instant::now();
        while self.log().matches(needle).count() < count {
            assert!(start.elapsed() < TIMEOUT, "no {needle:?} (x{count}) in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGHUP to this child only.
    pub fn hangup(&self) {
        signal(self.child.id(), "-HUP");
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "-TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            assert!(start.elapsed() < TIMEOUT, "mqttd did not stop on SIGTERM:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Sends `signal` (e.g. "-HUP") to process `pid` only.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").arg(signal).arg(pid.to_string()).status().expect("runs kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// Collects a child's output lines into a string shared with the test.
fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut log = sink.lock().expect("log lock");
            log.push_str(&line);
            log.push('\n');
        }
    });
    text
}

impl Drop for Mqttd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs mqttd with `settings` after a listener line, expecting it to exit with an error; returns stderr.
pub fn startup_error(dir: &Path, settings: &str) -> String {
    let text = format!("user root\nlistener {} 127.0.0.1\n{settings}", free_port());
    config_error(dir, &text)
}

/// Runs mqttd with the whole config `text`, expecting it to exit with an error; returns its stderr.
pub fn config_error(dir: &Path, text: &str) -> String {
    let config = dir.join("mqttd.conf");
    std::fs::write(&config, text).expect("writes the config");
    let mut mqttd = Mqttd::spawn(&["-c".as_ref(), config.as_os_str()], 0);
    let mut status = None;
    wait_until("mqttd exits on a bad config", || {
        status = mqttd.child.try_wait().expect("child status");
        status.is_some()
    });
    let status = status.expect("exited");
    assert!(!status.success(), "mqttd must fail to start:\n{}", mqttd.log());
    // The stderr reader finishes when the pipe closes; wait for the error line to be collected.
    wait_until("the startup error is read", || mqttd.log().contains("mqttd:"));
    mqttd.log()
}

/// Whether `program` can be run; panics when it cannot and `MQTTD_REQUIRE_PEERS=1`.
pub fn peer_available(program: &str) -> bool {
    let found = Command::new(program).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(
            std::env::var("MQTTD_REQUIRE_PEERS").as_deref() != Ok("1"),
            "{program} is required (MQTTD_REQUIRE_PEERS=1) but cannot be run; install the mosquitto-clients \
             and mosquitto packages"
        );
        eprintln!("skipped: {program} not found (install mosquitto and mosquitto-clients to run this test)");
    }
    found
}

/// Runs a Mosquitto client to completion (bounded by its own `-W` where it waits).
pub fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// Whether Mosquitto can run; when it cannot, skip (or fail under `MQTTD_REQUIRE_PEERS=1`).
pub fn mosquitto_available() -> bool {
    if Path::new(MOSQUITTO).exists() {
        return true;
    }
    if std::env::var("MQTTD_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{MOSQUITTO} is required (MQTTD_REQUIRE_PEERS=1) but not installed");
    }
    eprintln!("skipping: {MOSQUITTO} is not installed (set MQTTD_REQUIRE_PEERS=1 to make this a failure)");
    false
}

/// A Mosquitto broker on 127.0.0.1, stopped (by its pid) when dropped.
pub struct Mosquitto {
    pub child: Child,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Mosquitto {
    /// Writes `settings` after a `listener` line for `port` into `dir/mosquitto.conf` and starts it.
    pub fn start(dir: &Path, port: u16, settings: &str) -> Mosquitto {
        let config = dir.join("mosquitto.conf");
        let text = format!("user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n{settings}");
        std::fs::write(&config, text).expect("writes the Mosquitto config");
        Mosquitto::spawn(config, dir.join("mosquitto.log"), port)
    }

    pub fn spawn(config: PathBuf, log: PathBuf, port: u16) -> Mosquitto {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("opens the log");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("mosquitto starts");
        let mut mosquitto = Mosquitto { child, port, config, log };
        mosquitto.wait_listening();
        mosquitto
    }

    fn wait_listening(&mut self) {
        let start = Instant::now();
        while !listening(self.port) {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("mosquitto exited with {status}:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            assert!(start.elapsed() < TIMEOUT, "mosquitto did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM (Mosquitto saves its persistence file) and waits for the exit.
    pub fn stop(mut self) -> (PathBuf, PathBuf, u16) {
        signal(self.child.id(), "-TERM");
        let _ = self.child.wait();
        (std::mem::take(&mut self.config), std::mem::take(&mut self.log), self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
