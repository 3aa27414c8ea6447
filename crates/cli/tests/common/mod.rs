//! Test helpers: a broker started per test (Mosquitto, or our `mqttd`), `mqtt` processes run in the
//! background with their output read line by line, and bounded waits instead of sleeps.
//!
//! Backends: every test written with [`broker_test!`] runs once per backend listed in that macro. Adding a
//! backend is one line there; a backend whose program is missing is skipped with a message on stderr (or
//! fails when `MQTTD_REQUIRE_PEERS=1`, for Mosquitto).
#![allow(dead_code)] // each test binary uses a different part of these helpers

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long any wait for a line, a process or a broker may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// Runs a test body once per broker backend.
#[macro_export]
macro_rules! broker_test {
    (fn $name:ident($broker:ident) $body:block) => {
        broker_test! { config [], fn $name($broker) $body }
    };
    (config [$($line:expr),*], fn $name:ident($broker:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($broker: &mut $crate::common::Broker) $body
            const CONFIG: &[&str] = &[$($line),*];
            #[test]
            fn against_mosquitto() {
                $crate::common::with_broker($crate::common::Backend::Mosquitto, CONFIG, body)
            }
            #[test]
            fn against_mqttd() {
                $crate::common::with_broker($crate::common::Backend::Mqttd, CONFIG, body)
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Debian's `mosquitto`, a broker we did not write.
    Mosquitto,
    /// Our broker, the `mqttd` binary of this workspace's target directory.
    Mqttd,
}

impl Backend {
    fn program(self) -> Option<PathBuf> {
        match self {
            Backend::Mosquitto => {
                ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].iter().map(PathBuf::from).find(|p| p.exists())
            }
            Backend::Mqttd => {
                // target/debug/deps/<test binary> -> target/debug/mqttd
                let exe = std::env::current_exe().ok()?;
                let path = exe.parent()?.parent()?.join("mqttd");
                path.exists().then_some(path)
            }
        }
    }
}

/// Runs `body` against a fresh broker of `backend` with extra config lines, or skips.
pub fn with_broker(backend: Backend, config: &[&str], body: fn(&mut Broker)) {
    match Broker::start(backend, config) {
        Some(mut broker) => body(&mut broker),
        None => skip(backend),
    }
}

fn skip(backend: Backend) {
    let required = std::env::var("MQTTD_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    match backend {
        Backend::Mosquitto if required => panic!("mosquitto is missing and MQTTD_REQUIRE_PEERS=1"),
        Backend::Mosquitto => eprintln!("SKIPPED: mosquitto is not installed (apt install mosquitto)"),
        Backend::Mqttd => {
            eprintln!("SKIPPED: mqttd is not built in this target directory (cargo build -p mqttd-broker)")
        }
    }
}

/// A broker process on 127.0.0.1, killed (by its pid) when dropped.
pub struct Broker {
    pub backend: Backend,
    pub port: u16,
    child: Child,
    config: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker with `listener PORT 127.0.0.1`, anonymous access allowed unless `config` says otherwise.
    /// A line `user NAME PASSWORD` is not a directive: it adds the user to a password file (made with
    /// mosquitto_passwd) that the broker is told to use.
    pub fn start(backend: Backend, config: &[&str]) -> Option<Broker> {
        let program = backend.program()?;
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let mut text = format!("listener {port} 127.0.0.1\n");
        if !config.iter().any(|l| l.starts_with("allow_anonymous")) {
            text.push_str("allow_anonymous true\n");
        }
        let users: Vec<&str> = config.iter().filter_map(|l| l.strip_prefix("user ")).collect();
        if !users.is_empty() {
            let passwd = dir.path().join("passwd");
            for (i, user) in users.iter().enumerate() {
                let (name, password) = user.split_once(' ').expect("user NAME PASSWORD");
                let mut cmd = Command::new("mosquitto_passwd");
                cmd.arg("-b");
                if i == 0 {
                    cmd.arg("-c");
                }
                let status = cmd.arg(&passwd).args([name, password]).status().ok()?;
                assert!(status.success(), "mosquitto_passwd failed");
            }
            text.push_str(&format!("password_file {}\n", passwd.display()));
        }
        for line in config.iter().filter(|l| !l.starts_with("user ")) {
            text.push_str(&line.replace("{dir}", &dir.path().display().to_string()));
            text.push('\n');
        }
        let path = dir.path().join("broker.conf");
        std::fs::write(&path, text).expect("write broker config");
        let child = spawn_broker(&program, &path);
        let broker = Broker { backend, port, child, config: path, dir };
        broker.wait_ready();
        Some(broker)
    }

    /// Kills the broker and starts it again on the same port (to test reconnecting).
    pub fn restart(&mut self) {
        self.stop();
        let program = self.backend.program().expect("broker program");
        self.child = spawn_broker(&program, &self.config);
        self.wait_ready();
    }

    /// The broker's process id (to send it SIGHUP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the broker (SIGKILL to its pid) and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < WAIT, "{:?} did not listen on port {} within {WAIT:?}", self.backend, self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A `mqtt` command with `-h 127.0.0.1 -p PORT` after the subcommand.
    pub fn mqtt(&self, subcommand: &str) -> Command {
        let mut cmd = mqtt();
        cmd.args([subcommand, "-h", "127.0.0.1", "-p", &self.port.to_string()]);
        cmd
    }

    /// Runs `mqtt pub` with `args` and asserts it succeeds.
    pub fn publish(&self, args: &[&str]) {
        let out = self.mqtt("pub").args(args).output().expect("run mqtt pub");
        assert!(out.status.success(), "mqtt pub {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts `mqtt sub` with `args` in the background.
    pub fn subscribe(&self, args: &[&str]) -> Process {
        Process::spawn(self.mqtt("sub").args(args))
    }

    /// Starts `mqtt sub -v` on `filter` (plus `args`) and returns once it is subscribed: it publishes
    /// markers to `marker_topic` until one is printed. Marker lines are skipped by [`Process::line`].
    pub fn subscribe_ready(&self, args: &[&str], marker_topic: &str) -> Process {
        let mut sub = self.subscribe(args);
        let start = Instant::now();
        loop {
            self.publish(&["-t", marker_topic, "-m", MARKER]);
            match sub.lines.recv_timeout(Duration::from_millis(300)) {
                Ok(line) if line.contains(MARKER) => break,
                Ok(line) => panic!("unexpected line before the subscription was ready: {line:?}"),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => panic!("mqtt sub ended: {}", sub.stderr()),
            }
            assert!(start.elapsed() < WAIT, "mqtt sub {args:?} never received a marker");
        }
        sub
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_broker(program: &PathBuf, config: &PathBuf) -> Child {
    Command::new(program)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start broker")
}

/// The payload that marks "subscribed" in [`Broker::subscribe_ready`].
pub const MARKER: &str = "__ready_marker__";

/// A port that was free a moment ago (Mosquitto cannot listen on port 0 and tell us the port).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// The `mqtt` binary under test.
pub fn mqtt() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqtt"));
    cmd.stdin(Stdio::null());
    cmd
}

/// A background `mqtt` process whose stdout is read line by line on a thread.
pub struct Process {
    pub child: Child,
    lines: Receiver<String>,
    /// Filled by a thread until stderr closes, so a panic message can show it while the process runs.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    pub fn spawn(cmd: &mut Command) -> Process {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn mqtt");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().expect("stderr lock").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Process { child, lines, stderr, stderr_thread: Some(stderr_thread) }
    }

    /// The next line that is not a marker, within [`WAIT`].
    pub fn line(&mut self) -> String {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) if line.contains(MARKER) => continue,
                Ok(line) => return line,
                Err(e) => panic!("no line from mqtt within {WAIT:?} ({e}); stderr: {}", self.stderr()),
            }
        }
    }

    /// The next line (markers included) if one comes within `timeout`.
    pub fn line_within(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Sends a signal to this process, by its pid, with kill(1).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (bounded) for the exit status code; `None` if killed by a signal.
    pub fn wait(&mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for mqtt") {
                return status.code();
            }
            assert!(start.elapsed() < WAIT, "mqtt did not exit within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Remaining stdout lines after the process ended (markers skipped).
    pub fn rest(&mut self) -> Vec<String> {
        self.lines.iter().filter(|l| !l.contains(MARKER)).collect()
    }

    /// What the process wrote to stderr so far (all of it once the process has ended).
    pub fn stderr(&mut self) -> String {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            if let Some(thread) = self.stderr_thread.take() {
                let _ = thread.join();
            }
        }
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits (bounded) until stderr contains `text`.
    pub fn wait_stderr(&mut self, text: &str) {
        let start = Instant::now();
        while !self.stderr().contains(text) {
            assert!(start.elapsed() < WAIT, "stderr never contained {text:?}: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
