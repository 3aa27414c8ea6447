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
        .args(["-h", "127.0.0.1", "-p", &port, "--json", "--no-progress", "--drain", "5"])
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

/// `--source-ip`, repeated, makes `conns` connect from each address in turn (what 100k connections to one
/// loopback port need). The server here is a bare listener that answers each CONNECT with a CONNACK and
/// records where the connection came from.
#[test]
fn mqtt_bench_conns_connects_from_each_source_address_in_turn() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port().to_string();
    let server = std::thread::spawn(move || {
        let mut open = Vec::new();
        for _ in 0..6 {
            let (mut stream, peer) = listener.accept().expect("accept");
            // A CONNECT's fixed header and remaining length (under 128 here), then its body.
            let mut header = [0u8; 2];
            stream.read_exact(&mut header).expect("CONNECT header");
            assert_eq!(header[0], 0x10, "a CONNECT comes first");
            let mut body = vec![0u8; usize::from(header[1])];
            stream.read_exact(&mut body).expect("CONNECT body");
            stream.write_all(&[0x20, 0x02, 0x00, 0x00]).expect("CONNACK");
            open.push((peer.ip(), stream));
        }
        open
    });
    let out = Command::cargo_bin("mqtt")
        .expect("mqtt binary")
        .args(["bench", "conns", "-n", "6", "--duration", "0.1", "--concurrency", "1"])
        .args(["--source-ip", "127.0.0.2", "--source-ip", "127.0.0.3"])
        .args(["-h", "127.0.0.1", "-p", &port, "--json", "--no-progress"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run mqtt bench");
    assert!(out.status.success(), "mqtt bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let peers: Vec<String> = server.join().expect("server").into_iter().map(|(ip, _)| ip.to_string()).collect();
    assert_eq!(peers, ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]);
}
