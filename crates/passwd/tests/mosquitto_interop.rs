//! A `$7$` file written by `mqttd-passwd` works with the real Mosquitto broker: the right password
//! connects, a wrong one is refused. Skips when `mosquitto` or `mosquitto_pub` is missing, unless
//! `MQTTD_REQUIRE_PEERS=1`.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

fn tool(name: &str) -> Option<String> {
    let candidates = [format!("/usr/sbin/{name}"), format!("/usr/bin/{name}")];
    candidates.into_iter().find(|p| Path::new(p).exists())
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mosquitto_accepts_a_pbkdf2_file_written_by_mqttd_passwd() {
    let Some(mosquitto) = tool("mosquitto") else { return skip("mosquitto") };
    let Some(publish) = tool("mosquitto_pub") else { return skip("mosquitto_pub") };
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    Command::cargo_bin("mqttd-passwd")
        .unwrap()
        .args(["-H", "sha512-pbkdf2", "-c", "-b"])
        .arg(&passwd)
        .args(["admin", "guide-secret"])
        .assert()
        .success();

    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nuser root\n", passwd.display()),
    )
    .unwrap();
    let child =
        Process::new(&mosquitto).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let _broker = Broker(child);
    wait_until_listening(port);

    let publish_as = |password: &str| {
        Process::new(&publish)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-u", "admin", "-P", password])
            .args(["-t", "guide/test", "-m", "hello"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    assert!(publish_as("guide-secret").success(), "right password refused by mosquitto");
    assert!(!publish_as("wrong").success(), "wrong password accepted by mosquitto");
}

fn skip(what: &str) {
    if std::env::var("MQTTD_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{what} is not installed and MQTTD_REQUIRE_PEERS=1");
    }
    eprintln!("skipped: {what} is not installed (Debian packages mosquitto, mosquitto-clients)");
}
