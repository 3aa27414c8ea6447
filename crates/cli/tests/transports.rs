//! TLS and WebSockets end to end, with certificates made at test time (rcgen, see `mqttd_testkit::pki`):
//! our `mqtt` against Mosquitto and mqttd over mqtts, ws and wss; `mosquitto_sub --cafile` and the
//! MQTT.js CLI (`mqtt sub -l ws`) against mqttd; client certificates as usernames; wrong CA; `--insecure`;
//! certificate reload on SIGHUP; a missing certificate file at startup.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Backend, Broker, Process, WAIT};
use mqttd_testkit::pki::Pki;
use mqttd_testkit::recipe::Recipe;

fn required() -> bool {
    std::env::var("MQTTD_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Starts `backend` with the plain listener plus `extra` config lines, or says why it is skipped.
fn start(backend: Backend, extra: &[String]) -> Option<Broker> {
    let lines: Vec<&str> = extra.iter().map(String::as_str).collect();
    let Some(broker) = Broker::start(backend, &lines) else {
        assert!(!(required() && backend == Backend::Mosquitto), "mosquitto is missing and MQTTD_REQUIRE_PEERS=1");
        eprintln!("SKIPPED: {backend:?} is not available");
        return None;
    };
    // The first listener is up; Mosquitto opens its WebSocket listeners a moment later.
    let start = Instant::now();
    for port in extra.iter().filter_map(|l| l.strip_prefix("listener ")?.split(' ').next()?.parse::<u16>().ok()) {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < WAIT, "{backend:?} did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Some(broker)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Config lines of a TLS listener on `port` with the server certificate of `pki`.
fn tls_listener(port: u16, pki: &Pki) -> Vec<String> {
    vec![
        format!("listener {port} 127.0.0.1"),
        format!("certfile {}", path(&pki.server_cert)),
        format!("keyfile {}", path(&pki.server_key)),
    ]
}

/// A `mqtt` command for `subcommand` against `localhost:port` (the name the server certificate holds).
fn mqtt_at(port: u16, subcommand: &str, args: &[&str]) -> Command {
    let mut cmd = common::mqtt();
    cmd.args([subcommand, "-h", "localhost", "-p", &port.to_string()]).args(args);
    cmd
}

/// Starts `sub` (a `mqtt sub -v` command) and publishes with `publish` until the subscriber prints the
/// message: the subscription is ready and the transport works both ways. Returns the subscriber.
fn wait_until_delivered(
    sub: &mut Command,
    publish: &mut dyn FnMut() -> std::process::Output,
    expected: &str,
) -> Process {
    let mut sub = Process::spawn(sub);
    let start = Instant::now();
    loop {
        let out = publish();
        assert!(out.status.success(), "mqtt pub failed: {}", String::from_utf8_lossy(&out.stderr));
        if let Some(line) = sub.line_within(Duration::from_millis(300)) {
            assert_eq!(line, expected);
            return sub;
        }
        assert!(start.elapsed() < WAIT, "the subscriber never printed {expected:?}: {}", sub.stderr());
    }
}

fn tls_round_trip(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let port = common::free_port();
    let Some(_broker) = start(backend, &tls_listener(port, &pki)) else { return };
    let ca = path(&pki.ca);
    for proto in ["mqtts", "tls"] {
        let mut sub = mqtt_at(port, "sub", &["-l", proto, "--ca", &ca, "-t", "tls/#", "-v"]);
        let mut publish =
            || mqtt_at(port, "pub", &["-l", proto, "--cafile", &ca, "-t", "tls/x", "-m", "secret"]).output().unwrap();
        wait_until_delivered(&mut sub, &mut publish, "tls/x secret");
    }
    // The wrong CA: refused, naming the host and why; --insecure: accepted.
    let other = Pki::generate(dir.path(), "other");
    let out = mqtt_at(port, "pub", &["-l", "mqtts", "--ca", &path(&other.ca), "-t", "t", "-m", "x"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("\"localhost\"") && stderr.contains("UnknownIssuer"), "{stderr}");
    let out = mqtt_at(port, "pub", &["-l", "mqtts", "--insecure", "-t", "t", "-m", "x"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn our_client_speaks_tls_to_mosquitto() {
    tls_round_trip(Backend::Mosquitto);
}

#[test]
fn our_client_speaks_tls_to_mqttd() {
    tls_round_trip(Backend::Mqttd);
}

fn client_cert_as_username(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user device1\ntopic readwrite device/#\n").unwrap();
    let port = common::free_port();
    let mut lines = tls_listener(port, &pki);
    lines.extend([
        format!("cafile {}", path(&pki.ca)),
        "require_certificate true".into(),
        "use_identity_as_username true".into(),
        format!("acl_file {}", path(&acl)),
    ]);
    let Some(_broker) = start(backend, &lines) else { return };
    let ca = path(&pki.ca);
    let device = pki.client("device1");
    let (cert, key) = (path(&device.cert), path(&device.key));
    let tls = ["-l", "mqtts", "--ca", &ca, "--cert", &cert, "--key", &key];
    let mut sub = mqtt_at(port, "sub", &tls);
    sub.args(["-t", "device/#", "-v"]);
    let mut publish = || mqtt_at(port, "pub", &tls).args(["-t", "device/1", "-m", "on"]).output().unwrap();
    wait_until_delivered(&mut sub, &mut publish, "device/1 on");
    // Without a certificate: refused.
    let out = mqtt_at(port, "pub", &["-l", "mqtts", "--ca", &ca, "-t", "device/1", "-m", "x"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_client_certificate_is_required_and_its_cn_is_the_username_on_mosquitto() {
    client_cert_as_username(Backend::Mosquitto);
}

#[test]
fn a_client_certificate_is_required_and_its_cn_is_the_username_on_mqttd() {
    client_cert_as_username(Backend::Mqttd);
}

/// Certificates of the mosquitto-tls(7) recipe (v1 server and client certificates with OpenSSL 3.0):
/// our `mqtt` verifies the server's, presents its own, and names the real cause of a failure.
fn recipe_certificates(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(recipe) = Recipe::make(dir.path()) else { return };
    let port = common::free_port();
    let lines = vec![
        format!("listener {port} 127.0.0.1"),
        format!("certfile {}", path(&recipe.server_cert)),
        format!("keyfile {}", path(&recipe.server_key)),
        format!("cafile {}", path(&recipe.ca)),
        "require_certificate true".into(),
    ];
    let Some(_broker) = start(backend, &lines) else { return };
    let (cert, key) = recipe.client("client", "dev1");
    let (ca, cert, key) = (path(&recipe.ca), path(&cert), path(&key));
    let tls = ["-l", "mqtts", "--ca", &ca, "--cert", &cert, "--key", &key];
    let mut sub = mqtt_at(port, "sub", &tls);
    sub.args(["-t", "recipe/#", "-v"]);
    let mut publish = || mqtt_at(port, "pub", &tls).args(["-t", "recipe/1", "-m", "v1"]).output().unwrap();
    wait_until_delivered(&mut sub, &mut publish, "recipe/1 v1");

    // The wrong key for a v1 certificate: named as such (it used to be "does not match" for any v1 one).
    let server_key = path(&recipe.server_key);
    let wrong = ["-l", "mqtts", "--ca", &ca, "--cert", &cert, "--key", &server_key, "-t", "t", "-m", "x"];
    let out = mqtt_at(port, "pub", &wrong).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not the key of the certificate in --cert"), "{stderr}");
    // A name the v1 certificate does not hold (its CN is localhost).
    let mut cmd = common::mqtt();
    cmd.args(["pub", "-h", "127.0.0.1", "-p", &port.to_string()]).args(tls).args(["-t", "t", "-m", "x"]);
    let stderr = String::from_utf8_lossy(&cmd.output().unwrap().stderr).into_owned();
    assert!(stderr.contains("NotValidForName") && stderr.contains("connect with a name"), "{stderr}");
    // No client certificate: the broker's refusal is named, not a bare alert.
    let out = mqtt_at(port, "pub", &["-l", "mqtts", "--ca", &ca, "-t", "t", "-m", "x"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("client certificate"), "{stderr}");
}

#[test]
fn our_client_uses_the_mosquitto_tls_recipes_v1_certificates_with_mosquitto() {
    recipe_certificates(Backend::Mosquitto);
}

#[test]
fn our_client_uses_the_mosquitto_tls_recipes_v1_certificates_with_mqttd() {
    recipe_certificates(Backend::Mqttd);
}

fn websockets_round_trip(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let (ws_port, wss_port) = (common::free_port(), common::free_port());
    let mut lines = vec![format!("listener {ws_port} 127.0.0.1"), "protocol websockets".into()];
    lines.extend(tls_listener(wss_port, &pki));
    lines.push("protocol websockets".into());
    let Some(_broker) = start(backend, &lines) else { return };
    let ca = path(&pki.ca);
    for (proto, port, version) in [("ws", ws_port, "4"), ("ws", ws_port, "5"), ("wss", wss_port, "4")] {
        let tls = ["-l", proto, "--ca", &ca, "-V", version];
        let mut sub = mqtt_at(port, "sub", &tls);
        sub.args(["-t", "ws/#", "-v"]);
        let mut publish = || mqtt_at(port, "pub", &tls).args(["-t", "ws/x", "-m", proto]).output().unwrap();
        wait_until_delivered(&mut sub, &mut publish, &format!("ws/x {proto}"));
    }
}

#[test]
fn our_client_speaks_ws_and_wss_to_mosquitto() {
    websockets_round_trip(Backend::Mosquitto);
}

#[test]
fn our_client_speaks_ws_and_wss_to_mqttd() {
    websockets_round_trip(Backend::Mqttd);
}

#[test]
fn mosquitto_sub_with_cafile_reads_from_mqttd_over_tls() {
    if Command::new("mosquitto_sub").arg("--help").output().is_err() {
        assert!(!required(), "mosquitto_sub is missing and MQTTD_REQUIRE_PEERS=1");
        eprintln!("SKIPPED: mosquitto_sub is not installed (apt install mosquitto-clients)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let port = common::free_port();
    let Some(_broker) = start(Backend::Mqttd, &tls_listener(port, &pki)) else { return };
    let ca = path(&pki.ca);
    let mut sub = Command::new("mosquitto_sub");
    sub.args(["-h", "localhost", "-p", &port.to_string(), "--cafile", &ca, "-t", "m/#", "-v"]);
    let mut publish = || mqtt_at(port, "pub", &["-l", "mqtts", "--ca", &ca, "-t", "m/1", "-m", "hi"]).output().unwrap();
    wait_until_delivered(&mut sub, &mut publish, "m/1 hi");
}

/// The MQTT.js `mqtt` program on PATH (not ours), if installed.
fn mqtt_js() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("mqtt")).find(|p| {
        std::fs::read_link(p).is_ok_and(|target| target.to_string_lossy().contains("node_modules"))
            || std::fs::read_to_string(p).is_ok_and(|text| text.starts_with("#!/usr/bin/env node"))
    })
}

#[test]
fn the_mqtt_js_cli_subscribes_to_mqttd_over_websockets() {
    let Some(js) = mqtt_js() else {
        assert!(!required(), "the MQTT.js CLI is missing and MQTTD_REQUIRE_PEERS=1");
        eprintln!("SKIPPED: the MQTT.js CLI is not installed (npm i -g mqtt)");
        return;
    };
    let port = common::free_port();
    let lines = [format!("listener {port} 127.0.0.1"), "protocol websockets".to_owned()];
    let Some(_broker) = start(Backend::Mqttd, &lines) else { return };
    let mut sub = Command::new(js);
    sub.args(["sub", "-l", "ws", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "js/#", "-v"]);
    let mut publish = || mqtt_at(port, "pub", &["-l", "ws", "-t", "js/1", "-m", "from us"]).output().unwrap();
    wait_until_delivered(&mut sub, &mut publish, "js/1 from us");
}

#[test]
fn sighup_makes_mqttd_serve_a_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let old = Pki::generate(dir.path(), "old");
    let port = common::free_port();
    let Some(broker) = start(Backend::Mqttd, &tls_listener(port, &old)) else { return };
    let publish = |ca: &Path| mqtt_at(port, "pub", &["-l", "mqtts", "--ca", &path(ca), "-t", "t", "-m", "x"]).output();
    assert!(publish(&old.ca).unwrap().status.success());
    let new = Pki::generate(dir.path(), "new");
    std::fs::copy(&new.server_cert, &old.server_cert).unwrap();
    std::fs::copy(&new.server_key, &old.server_key).unwrap();
    let status = Command::new("kill").args(["-HUP", &broker.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let start = Instant::now();
    while !publish(&new.ca).unwrap().status.success() {
        assert!(start.elapsed() < WAIT, "mqttd still serves the old certificate after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!publish(&old.ca).unwrap().status.success(), "the old certificate is gone");
}

#[test]
fn a_missing_certificate_file_stops_mqttd_with_the_path_and_the_os_error() {
    let mqttd = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("mqttd");
    if !mqttd.exists() {
        eprintln!("SKIPPED: mqttd is not built in this target directory (cargo build -p mqttd-broker)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mqttd.conf");
    let missing = dir.path().join("nowhere/server.pem");
    let text = format!("listener 0 127.0.0.1\ncertfile {}\nkeyfile {}\n", path(&missing), path(&missing));
    std::fs::write(&conf, text).unwrap();
    let out = Command::new(mqttd).arg("-c").arg(&conf).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("cannot read certfile {}", path(&missing))), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    assert!(stderr.contains("mqttd.conf:1"), "{stderr}");
}
