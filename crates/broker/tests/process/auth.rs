//! Users and ACLs through the real `mqttd` binary (issue 4): the Mosquitto guide end to end with
//! `mosquitto_passwd`, `mosquitto_sub` and `mosquitto_pub`; SIGHUP reloads without dropping connections;
//! malformed files at startup and on reload.
//!
//! Every broker listens on a free port of 127.0.0.1 and is stopped by its pid when the test ends. Waits
//! poll with a bound ([`TIMEOUT`]); nothing sleeps to synchronise. The Mosquitto clients are skipped with
//! a message when missing, unless `MQTTD_REQUIRE_PEERS=1`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mqttd_auth::{hash_password, HashKind};
use mqttd_proto::{reason, ConnAck, QoS};
use mqttd_testkit::{connect, Peer};

use crate::common::{free_port, peer_available, run, startup_error, wait_until, Mqttd, V5};

/// Writes a `$7$` password file with `users` (name, password).
pub(crate) fn write_passwords(path: &Path, users: &[(&str, &str)]) {
    let mut text = String::new();
    for (name, password) in users {
        let hash = hash_password(password.as_bytes(), HashKind::Sha512Pbkdf2).expect("hashes");
        text.push_str(&format!("{name}:{hash}\n"));
    }
    std::fs::write(path, text).expect("writes the password file");
}

pub(crate) async fn login(mqttd: &Mqttd, client_id: &str, username: &str, password: &str) -> (Peer, ConnAck) {
    let mut c = connect(client_id, V5);
    c.username = Some(username.to_string());
    c.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
    Peer::connect_with(mqttd.addr(), c).await
}

#[test]
fn the_mosquitto_guide_works_end_to_end_with_mosquitto_passwd_sub_and_pub() {
    if !["mosquitto_passwd", "mosquitto_sub", "mosquitto_pub"].into_iter().all(peer_available) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let passwd = dir.path().join("passwd");
    let passwd_s = passwd.to_str().expect("utf-8 path");
    let made = run("mosquitto_passwd", &["-c", "-b", passwd_s, "admin", "s3cret-guide"]);
    assert!(made.status.success(), "mosquitto_passwd: {}", String::from_utf8_lossy(&made.stderr));
    let mqttd = Mqttd::start(dir.path(), &format!("allow_anonymous false\npassword_file {passwd_s}\n"));
    let port = mqttd.port.to_string();
    let base = ["-h", "127.0.0.1", "-p", port.as_str()];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let creds = ["-u", "admin", "-P", "s3cret-guide"];

    // mosquitto_pub with the password: a retained message, so the subscriber's order does not matter.
    let pub_args = with(&[&creds[..], &["-t", "guide/retained", "-m", "kept", "-r", "-q", "1"]].concat());
    let out = run("mosquitto_pub", &pub_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "mosquitto_pub -u -P: {}", String::from_utf8_lossy(&out.stderr));

    // mosquitto_sub with the password gets the retained message, then a live one published after it.
    let sub_args = with(&[&creds[..], &["-t", "guide/#", "-v", "-C", "2", "-W", "10"]].concat());
    let mut sub = Command::new("mosquitto_sub")
        .args(&sub_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub starts");
    let mut lines = BufReader::new(sub.stdout.take().expect("stdout is piped")).lines();
    let first = lines.next().expect("a first line").expect("reads");
    assert_eq!(first, "guide/retained kept");
    let pub_args = with(&[&creds[..], &["-t", "guide/live", "-m", "hello", "-q", "1"]].concat());
    let out = run("mosquitto_pub", &pub_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "mosquitto_pub -u -P: {}", String::from_utf8_lossy(&out.stderr));
    let second = lines.next().expect("a second line").expect("reads");
    assert_eq!(second, "guide/live hello");
    let status = sub.wait().expect("mosquitto_sub ends after -C 2");
    assert!(status.success(), "mosquitto_sub -u -P exits 0");

    // Without credentials, or with a wrong password, both are refused (in 3.1.1 and 5.0).
    for version in ["mqttv311", "mqttv5"] {
        for extra in [&[][..], &["-u", "admin", "-P", "not-the-password"][..], &["-u", "nobody", "-P", "x"][..]] {
            let args = with(&[extra, &["-V", version, "-t", "guide/#", "-C", "1", "-W", "5"]].concat());
            let out = run("mosquitto_sub", &args.iter().map(String::as_str).collect::<Vec<_>>());
            let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
            assert!(!out.status.success(), "mosquitto_sub {version} {extra:?} must be refused");
            assert!(err.contains("not author") || err.contains("bad user name"), "{version} {extra:?}: {err}");
            let args = with(&[extra, &["-V", version, "-t", "guide/x", "-m", "no", "-q", "1"]].concat());
            let out = run("mosquitto_pub", &args.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(!out.status.success(), "mosquitto_pub {version} {extra:?} must be refused");
        }
    }
    // mosquitto_sub exits 5 (its CONNACK code) in 3.1.1, as with Mosquitto itself.
    let args = with(&["-V", "mqttv311", "-u", "admin", "-P", "wrong", "-t", "guide/#", "-C", "1", "-W", "5"]);
    let out = run("mosquitto_sub", &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));

    // The log names the user and the reason, never a password.
    mqttd.wait_for_log("user admin: wrong or missing password", 1);
    mqttd.wait_for_log("user nobody: no such user", 1);
    let log = mqttd.log();
    assert!(!log.contains("not-the-password") && !log.contains("s3cret-guide"), "a password in the log:\n{log}");
}

#[tokio::test]
async fn sighup_reloads_the_password_file_without_dropping_connections() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let passwd = dir.path().join("passwd");
    write_passwords(&passwd, &[("alice", "old-pw"), ("bob", "bob-pw")]);
    let mqttd = Mqttd::start(dir.path(), &format!("allow_anonymous false\npassword_file {}\n", passwd.display()));
    let (mut open, ack) = login(&mqttd, "open", "alice", "old-pw").await;
    assert_eq!(ack.code, 0);
    assert_eq!(open.subscribe("t/#", QoS::AtLeastOnce).await, vec![1]);

    write_passwords(&passwd, &[("alice", "new-pw"), ("bob", "bob-pw")]);
    mqttd.hangup();
    mqttd.wait_for_log("reloaded", 1);
    let (_, ack) = login(&mqttd, "old", "alice", "old-pw").await;
    assert_eq!(ack.code, reason::BAD_USER_NAME_OR_PASSWORD, "the old password no longer works");
    let (mut fresh, ack) = login(&mqttd, "fresh", "alice", "new-pw").await;
    assert_eq!(ack.code, 0, "the new password works");
    fresh.publish("t/reloaded", b"1", QoS::AtLeastOnce, false).await;
    assert_eq!(open.recv_publish().await.topic, "t/reloaded", "the connection opened before SIGHUP still works");

    // A broken file on reload keeps the previous users and names the line at fault.
    let good = std::fs::read_to_string(&passwd).expect("reads");
    std::fs::write(&passwd, format!("{good}carol-without-a-hash\n")).expect("writes");
    mqttd.hangup();
    mqttd.wait_for_log("reload failed", 1);
    let log = mqttd.log();
    let line = log.lines().find(|l| l.contains("reload failed")).expect("the failure line");
    assert!(line.contains(&passwd.display().to_string()) && line.contains("line 3"), "names file and line: {line}");
    let (_, ack) = login(&mqttd, "again", "alice", "new-pw").await;
    assert_eq!(ack.code, 0, "the previous rules stay after a failed reload");
    fresh.publish("t/after-failure", b"2", QoS::AtLeastOnce, false).await;
    assert_eq!(open.recv_publish().await.topic, "t/after-failure", "connections survive a failed reload");
}

#[tokio::test]
async fn sighup_reloads_the_acl_file_and_a_broken_acl_keeps_the_old_rules() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let passwd = dir.path().join("passwd");
    let acl = dir.path().join("acl");
    write_passwords(&passwd, &[("alice", "alice-pw")]);
    std::fs::write(&acl, "user alice\ntopic readwrite a/#\n").expect("writes the ACL");
    let settings = format!("allow_anonymous false\npassword_file {}\nacl_file {}\n", passwd.display(), acl.display());
    let mqttd = Mqttd::start(dir.path(), &settings);
    let (mut alice, ack) = login(&mqttd, "alice", "alice", "alice-pw").await;
    assert_eq!(ack.code, 0);
    assert_eq!(alice.subscribe("b/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED]);

    std::fs::write(&acl, "user alice\ntopic readwrite a/#\ntopic readwrite b/#\n").expect("writes the ACL");
    mqttd.hangup();
    mqttd.wait_for_log("reloaded", 1);
    assert_eq!(alice.subscribe("b/#", QoS::AtMostOnce).await, vec![0], "the new rule applies to an open connection");

    std::fs::write(&acl, "user alice\ntopic readwrite a/#\ntopic sometimes c/#\n").expect("writes the ACL");
    mqttd.hangup();
    mqttd.wait_for_log("reload failed", 1);
    let log = mqttd.log();
    let line = log.lines().find(|l| l.contains("reload failed")).expect("the failure line");
    assert!(line.contains(&acl.display().to_string()) && line.contains("line 3"), "names file and line: {line}");
    assert_eq!(alice.subscribe("b/#", QoS::AtMostOnce).await, vec![0], "the previous rules stay");
    assert_eq!(alice.subscribe("c/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED]);
}

#[tokio::test]
async fn per_listener_settings_give_each_listener_its_own_users_and_acl() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let passwd = dir.path().join("passwd");
    let acl = dir.path().join("acl");
    write_passwords(&passwd, &[("alice", "alice-pw")]);
    std::fs::write(&acl, "topic read open/#\n").expect("writes the ACL");
    let (open_port, closed_port) = (free_port(), free_port());
    let config = format!(
        "per_listener_settings true\n\
         listener {open_port} 127.0.0.1\nallow_anonymous true\nacl_file {}\n\
         listener {closed_port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
        acl.display(),
        passwd.display()
    );
    let mqttd = Mqttd::start_config(dir.path(), &config, open_port);
    wait_until("the second listener accepts", || std::net::TcpStream::connect(("127.0.0.1", closed_port)).is_ok());
    let closed = SocketAddr::from(([127, 0, 0, 1], closed_port));

    // The first listener: anonymous clients welcome, and its ACL applies.
    let mut anon = Peer::connect(mqttd.addr(), "anon", V5).await;
    assert_eq!(anon.subscribe("open/#", QoS::AtMostOnce).await, vec![0]);
    assert_eq!(anon.subscribe("closed/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED]);
    // The second: a password is needed, and without an ACL file everything is allowed.
    let (_, ack) = Peer::connect_with(closed, connect("anon2", V5)).await;
    assert_eq!(ack.code, reason::NOT_AUTHORIZED, "anonymous refused on the second listener");
    let mut c = connect("alice", V5);
    c.username = Some("alice".into());
    c.password = Some("alice-pw".into());
    let (mut alice, ack) = Peer::connect_with(closed, c).await;
    assert_eq!(ack.code, 0);
    assert_eq!(alice.subscribe("closed/#", QoS::AtMostOnce).await, vec![0], "no ACL on the second listener");
}

#[test]
fn an_empty_password_file_with_allow_anonymous_false_logs_that_everyone_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "# no users yet\n").expect("writes the password file");
    let mqttd = Mqttd::start(dir.path(), &format!("allow_anonymous false\npassword_file {}\n", passwd.display()));
    mqttd.wait_for_log("every client is refused", 1);
}

#[test]
fn a_malformed_password_file_at_startup_exits_non_zero_naming_the_file_and_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let passwd = dir.path().join("passwd");
    write_passwords(&passwd, &[("alice", "pw")]);
    let good = std::fs::read_to_string(&passwd).expect("reads");
    std::fs::write(&passwd, format!("# users\n{good}bob:plain-text-password\n")).expect("writes");
    let err = startup_error(dir.path(), &format!("allow_anonymous false\npassword_file {}\n", passwd.display()));
    assert!(err.contains(&format!("{}:line 3", passwd.display())), "names file and line:\n{err}");
    assert!(err.contains("bob") && !err.contains("plain-text-password"), "names the user, not the password:\n{err}");
}

#[test]
fn a_malformed_acl_file_at_startup_exits_non_zero_naming_the_file_and_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let acl: PathBuf = dir.path().join("acl");
    std::fs::write(&acl, "topic read public/#\nuser alice\ntopic readwrite alice/#\ntopic read bad/#/filter\n")
        .expect("writes the ACL");
    let err = startup_error(dir.path(), &format!("acl_file {}\n", acl.display()));
    assert!(err.contains(&format!("{}:line 4", acl.display())), "names file and line:\n{err}");
    assert!(err.contains("bad/#/filter"), "says what is wrong:\n{err}");
}

#[test]
fn a_missing_password_file_at_startup_exits_non_zero_naming_the_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("no-such-passwd");
    let err = startup_error(dir.path(), &format!("allow_anonymous false\npassword_file {}\n", missing.display()));
    assert!(err.contains(&missing.display().to_string()), "names the file:\n{err}");
}
