//! Running mqttd as a Mosquitto admin does (issue 16): `pid_file`, `user`, `-d`, `-p`, the logging
//! directives (`connection_messages`, `log_timestamp`, `log_timestamp_format`, `log_type`, several
//! `log_dest`), and SIGHUP re-reading the config file.

use std::path::Path;
use std::process::Command;

use mqttd_proto::QoS;
use mqttd_testkit::Peer;

use crate::common::{free_port, listening, signal, wait_until, Mqttd, V5};

#[test]
fn pid_file_holds_the_process_id_and_is_removed_at_exit() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let pid_file = dir.path().join("mqttd.pid");
    let mqttd = Mqttd::start(dir.path(), &format!("pid_file {}\n", pid_file.display()));
    let written = std::fs::read_to_string(&pid_file).expect("the pid file exists once listening");
    assert_eq!(written, format!("{}\n", mqttd.child.id()));
    assert!(mqttd.terminate().success());
    assert!(!pid_file.exists(), "removed at exit, as Mosquitto does");
}

#[tokio::test]
async fn connection_messages_false_hides_connects_and_disconnects() {
    for (setting, shown) in [("", true), ("connection_messages false\n", false)] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mqttd = Mqttd::start(dir.path(), &format!("allow_anonymous true\nlog_type all\n{setting}"));
        let mut peer = Peer::connect(mqttd.addr(), "visitor", V5).await;
        peer.subscribe("marker", QoS::AtMostOnce).await;
        peer.disconnect().await;
        mqttd.wait_for_log("visitor 0 marker", 1);
        // Another client's subscription, after the first one's disconnect line would have been written.
        let mut second = Peer::connect(mqttd.addr(), "second", V5).await;
        second.subscribe("marker", QoS::AtMostOnce).await;
        mqttd.wait_for_log("second 0 marker", 1);
        let log = mqttd.log();
        let lines = log.lines().filter(|l| l.contains("visitor") && l.contains("connected")).count();
        assert_eq!(lines > 0, shown, "with {setting:?}:\n{log}");
    }
}

#[test]
fn log_timestamp_is_seconds_a_strftime_format_or_nothing() {
    let cases = [
        ("", r"^\d{10}: "),
        ("log_timestamp_format %Y-%m-%dT%H:%M:%S\n", r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: "),
        ("log_timestamp false\n", r"^[A-Z]"),
    ];
    for (setting, pattern) in cases {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mqttd = Mqttd::start(dir.path(), setting);
        mqttd.wait_for_log("running", 1);
        let log = mqttd.log();
        let line = log.lines().find(|l| l.contains("running")).expect("the running line");
        assert!(matches(pattern, line), "with {setting:?} the line should match {pattern}: {line:?}");
    }
}

/// A tiny matcher for the three patterns above: `\d` a digit, `{n}` repeats it, `[A-Z]` a capital,
/// `^` anchors; anything else is literal.
fn matches(pattern: &str, line: &str) -> bool {
    let mut chars = line.chars();
    let mut rest = pattern.trim_start_matches('^');
    while !rest.is_empty() {
        let (class, after): (fn(char) -> bool, &str) = if let Some(r) = rest.strip_prefix(r"\d") {
            (|c| c.is_ascii_digit(), r)
        } else if let Some(r) = rest.strip_prefix("[A-Z]") {
            (|c| c.is_ascii_uppercase(), r)
        } else {
            let literal = rest.chars().next().expect("not empty");
            if chars.next() != Some(literal) {
                return false;
            }
            rest = &rest[literal.len_utf8()..];
            continue;
        };
        let (times, after) = match after.strip_prefix('{').and_then(|a| a.split_once('}')) {
            Some((n, a)) => (n.parse().expect("a count"), a),
            None => (1, after),
        };
        if !(0..times).all(|_| chars.next().is_some_and(class)) {
            return false;
        }
        rest = after;
    }
    true
}

#[tokio::test]
async fn log_type_subscribe_logs_subscriptions_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mqttd = Mqttd::start(dir.path(), "allow_anonymous true\nlog_type subscribe\n");
    let mut peer = Peer::connect(mqttd.addr(), "sub1", V5).await;
    peer.subscribe("a/b", QoS::AtLeastOnce).await;
    mqttd.wait_for_log("sub1 1 a/b", 1);
    peer.send(&mqttd_proto::Packet::Unsubscribe(mqttd_proto::Unsubscribe {
        packet_id: mqttd_proto::PacketId::new(2).expect("non-zero"),
        filters: vec!["a/b".into()],
        properties: Default::default(),
    }))
    .await;
    peer.recv().await;
    peer.subscribe("c", QoS::AtMostOnce).await;
    mqttd.wait_for_log("sub1 0 c", 1);
    let log = mqttd.log();
    assert!(!log.contains("sub1 a/b"), "no unsubscribe line without log_type unsubscribe:\n{log}");
    assert!(!log.contains("running") && !log.contains("connected"), "no information lines:\n{log}");
}

#[test]
fn several_log_dest_lines_write_to_each() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("mqttd.log");
    let mqttd = Mqttd::start(dir.path(), &format!("log_dest file {}\nlog_dest stdout\n", file.display()));
    wait_until("stdout has the running line", || mqttd.stdout().contains("running"));
    wait_until("the file has it", || std::fs::read_to_string(&file).is_ok_and(|t| t.contains("running")));
    assert!(!mqttd.log().contains("running"), "stderr is not a destination any more:\n{}", mqttd.log());
}

#[tokio::test]
async fn sighup_applies_log_type_but_not_max_qos_as_mosquitto() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let config =
        |extra: &str| format!("user root\nallow_anonymous true\nlog_type warning\n{extra}listener {port} 127.0.0.1\n");
    let mqttd = Mqttd::start_config(dir.path(), &config(""), port);
    let mut peer = Peer::connect(mqttd.addr(), "watcher", V5).await;
    assert_eq!(peer.subscribe("before", QoS::ExactlyOnce).await, vec![2]);

    std::fs::write(dir.path().join("mqttd.conf"), config("log_type subscribe\n") + "max_qos 1\n")
        .expect("rewrites the config");
    mqttd.hangup();
    mqttd.wait_for_log("not reloaded", 1);
    assert!(mqttd.log().contains("max_qos"), "the log names max_qos:\n{}", mqttd.log());
    assert_eq!(peer.subscribe("after", QoS::ExactlyOnce).await, vec![2], "max_qos needs a restart");
    mqttd.wait_for_log("watcher 2 after", 1);
    assert!(!mqttd.log().contains("watcher 2 before"), "log_type subscribe came with SIGHUP:\n{}", mqttd.log());
}

/// The numeric user id of process `pid`.
fn uid_of(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1).map(str::to_owned)
}

/// Whether this test runs as root (the `user` directive only acts then).
fn root() -> bool {
    let root = uid_of(std::process::id()).as_deref() == Some("0");
    if !root {
        eprintln!("skipped: the user directive only acts when mqttd is started as root");
    }
    root
}

#[test]
fn user_switches_to_that_account_after_binding() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mqttd = Mqttd::start(dir.path(), "user nobody\n");
    mqttd.wait_for_log("running as user nobody", 1);
    assert_eq!(uid_of(mqttd.child.id()).as_deref(), Some("65534"), "serves as nobody:\n{}", mqttd.log());
}

#[test]
fn a_user_that_does_not_exist_stops_startup_with_mosquittos_message() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let text = format!("user no-such-user-16\nlistener {} 127.0.0.1\n", free_port());
    let err = crate::common::config_error(dir.path(), &text);
    assert!(err.contains("Unable to drop privileges to 'no-such-user-16' because this user does not exist."), "{err}");
}

#[test]
fn started_as_root_without_a_user_line_it_leaves_root_as_mosquitto_does() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    std::fs::write(dir.path().join("mqttd.conf"), format!("listener {port} 127.0.0.1\n")).expect("writes");
    let mut mqttd = Mqttd::spawn(&["-c".as_ref(), dir.path().join("mqttd.conf").as_os_str()], port);
    mqttd.wait_listening();
    let mosquitto = Command::new("getent").args(["passwd", "mosquitto"]).output().is_ok_and(|o| o.status.success());
    let expected = if mosquitto { "running as user mosquitto" } else { "Trying 'nobody' instead" };
    mqttd.wait_for_log(expected, 1);
    assert_ne!(uid_of(mqttd.child.id()).as_deref(), Some("0"));
}

/// Kills a daemon (not our child) by the pid it wrote, when the test ends.
struct Daemon(u32);

impl Drop for Daemon {
    fn drop(&mut self) {
        signal(self.0, "-KILL");
    }
}

#[test]
fn d_returns_once_listening_and_the_daemon_serves() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (port, pid_file) = (free_port(), dir.path().join("mqttd.pid"));
    let config = dir.path().join("mqttd.conf");
    let text = format!("user root\nlistener {port} 127.0.0.1\npid_file {}\n", pid_file.display());
    std::fs::write(&config, text).expect("writes the config");
    // `output` waits for the foreground process and for its pipes to close: the daemon must let go of them.
    let out = Command::new(env!("CARGO_BIN_EXE_mqttd")).arg("-d").arg("-c").arg(&config).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("the daemon wrote its pid", || std::fs::read_to_string(&pid_file).is_ok_and(|p| p.ends_with('\n')));
    let pid: u32 = std::fs::read_to_string(&pid_file).expect("reads").trim().parse().expect("a pid");
    let daemon = Daemon(pid);
    assert!(listening(port), "the daemon serves");
    signal(daemon.0, "-TERM");
    wait_until("the daemon stops and removes its pid file", || !pid_file.exists());
}

#[test]
fn p_moves_the_local_only_listeners_and_is_ignored_with_configured_listeners() {
    let (a, b) = (free_port(), free_port());
    let mut local_only =
        Mqttd::spawn(&["-p".as_ref(), a.to_string().as_ref(), "-p".as_ref(), b.to_string().as_ref()], a);
    local_only.wait_listening();
    wait_until("the second -p port listens", || listening(b));
    drop(local_only);

    let dir = tempfile::tempdir().expect("temporary directory");
    let (first, second, ignored) = (free_port(), free_port(), free_port());
    write_config(dir.path(), &format!("user root\nlistener {first} 127.0.0.1\nlistener {second} 127.0.0.1\n"));
    let config = dir.path().join("mqttd.conf");
    let mut mqttd =
        Mqttd::spawn(&["-c".as_ref(), config.as_os_str(), "-p".as_ref(), ignored.to_string().as_ref()], first);
    mqttd.wait_listening();
    wait_until("the second listener listens", || listening(second));
    mqttd.wait_for_log("-p is ignored", 1);
    assert!(!listening(ignored));
}

fn write_config(dir: &Path, text: &str) {
    std::fs::write(dir.join("mqttd.conf"), text).expect("writes the config");
}
