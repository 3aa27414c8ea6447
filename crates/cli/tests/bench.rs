//! `mqtt bench` against an in-process mqttd: it counts every message, so a run at QoS 1 reports no loss,
//! no duplicate and no reordering, and the JSON line carries the figures.

use assert_cmd::Command;
use mqttd_testkit::TestBroker;

fn bench_json(broker: &TestBroker, args: &[&str]) -> serde_json::Value {
    let port = broker.port().to_string();
    let out = Command::cargo_bin("mqtt")
        .expect("mqtt binary")
        .args(["bench"])
        .args(args)
        .args(["--host", "127.0.0.1", "--port", &port, "--json", "--no-progress", "--drain", "5"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run mqtt bench");
    assert!(out.status.success(), "mqtt bench failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

#[test]
fn mqtt_bench_pairs_at_qos_1_delivers_every_message_once_and_in_order() {
    let broker = TestBroker::start();
    let report = bench_json(&broker, &["pairs", "-n", "4", "--qos", "1", "--duration", "0.5"]);
    let sent = report["sent"].as_u64().expect("sent");
    assert!(sent > 0, "the publishers sent something: {report}");
    assert_eq!(report["received"].as_u64(), Some(sent), "every message arrived: {report}");
    assert_eq!(report["lost"].as_u64(), Some(0));
    assert_eq!(report["duplicates"].as_u64(), Some(0));
    assert_eq!(report["reordered"].as_u64(), Some(0));
    assert!(report["latency_us"]["p50"].as_f64().is_some_and(|p| p > 0.0), "latency measured: {report}");
}

#[test]
fn mqtt_bench_conns_reports_the_connect_rate() {
    let broker = TestBroker::start();
    let report = bench_json(&broker, &["conns", "-n", "50", "--duration", "0.2"]);
    assert_eq!(report["connections"].as_u64(), Some(50), "{report}");
    assert_eq!(report["failed_connections"].as_u64(), Some(0));
    assert!(report["connect_rate"].as_f64().is_some_and(|r| r > 0.0), "{report}");
}
