//! Our `mqtt` against the MQTT.js CLI (npm `mqtt`): each side publishes what the other prints.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// The MQTT.js `mqtt` program on PATH (not ours), if installed.
fn mqtt_js() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("mqtt")).find(|p| {
        std::fs::read_link(p).is_ok_and(|target| target.to_string_lossy().contains("node_modules"))
            || std::fs::read_to_string(p).is_ok_and(|text| text.starts_with("#!/usr/bin/env node"))
    })
}

broker_test! {
    fn mqtt_js_and_our_cli_exchange_messages(broker) {
        let Some(js) = mqtt_js() else {
            assert!(std::env::var("MQTTD_REQUIRE_PEERS").map_or(true, |v| v != "1"), "MQTT.js CLI missing");
            eprintln!("SKIPPED: the MQTT.js CLI is not installed (npm i -g mqtt)");
            return;
        };
        let port = broker.port.to_string();
        // MQTT.js publishes (positional topic and message, as its tutorials do), we print.
        let mut ours = broker.subscribe_ready(&["-t", "interop/+", "-v"], "interop/ready");
        let status = Command::new(&js)
            .args(["pub", "-h", "127.0.0.1", "-p", &port, "-q", "1", "interop/js", "hello from mqtt.js"])
            .status()
            .expect("run mqtt.js pub");
        assert!(status.success());
        assert_eq!(ours.line(), "interop/js hello from mqtt.js");
        // We publish, MQTT.js prints.
        let mut theirs = common::Process::spawn(
            Command::new(&js).args(["sub", "-h", "127.0.0.1", "-p", &port, "-t", "interop/+", "-v"]),
        );
        let start = std::time::Instant::now();
        loop {
            broker.publish(&["-t", "interop/ready", "-m", common::MARKER]);
            if theirs.line_within(std::time::Duration::from_millis(300)).is_some_and(|l| l.contains(common::MARKER)) {
                break;
            }
            assert!(start.elapsed() < common::WAIT, "mqtt.js sub never subscribed");
        }
        broker.publish(&["-t", "interop/ours", "-m", "hello from mqttd's mqtt", "-q", "2"]);
        assert_eq!(theirs.line(), "interop/ours hello from mqttd's mqtt");
    }
}
