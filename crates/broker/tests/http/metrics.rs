//! `GET /metrics`: the Prometheus text format, with values that follow what the clients do.

use mqttd_proto::{reason, QoS};
use mqttd_testkit::{connect, will, Peer};

use crate::common::{broker, get, parse_prometheus, scrape_until, value, V4, V5};

#[tokio::test]
async fn metrics_are_prometheus_text_with_help_and_type_for_every_family() {
    let tb = broker();
    let reply = get(tb.addrs[1], "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let samples = parse_prometheus(&reply.body);
    for family in [
        "mqttd_connects_total",
        "mqttd_retained_messages",
        "mqttd_inflight_messages",
        "mqttd_queued_bytes",
        "mqttd_auth_failures_total",
        "mqttd_tls_handshake_failures_total",
        "mqttd_network_received_bytes_total",
    ] {
        assert!(samples.keys().any(|(name, _)| name == family), "{family} missing:\n{}", reply.body);
    }
    assert!(reply.body.contains("# TYPE mqttd_connections gauge"));
    assert_eq!(value(&samples, "mqttd_sessions", "state=\"online\""), 0.0);
}

#[tokio::test]
async fn connections_sessions_and_messages_change_as_clients_connect_and_publish() {
    let tb = broker();
    let (mqtt, http) = (tb.addrs[0], tb.addrs[1]);
    let mut sub = Peer::connect(mqtt, "metrics-sub", V5).await;
    sub.subscribe("m/#", QoS::AtLeastOnce).await;
    let mut publisher = Peer::connect(mqtt, "metrics-pub", V4).await;
    let samples = scrape_until(http, "two connections", |s| {
        value(s, "mqttd_connections", "listener=\"0\",protocol=\"5.0\"") == 1.0
            && value(s, "mqttd_connections", "listener=\"0\",protocol=\"3.1.1\"") == 1.0
    })
    .await;
    assert_eq!(value(&samples, "mqttd_sessions", "state=\"online\""), 2.0);
    assert_eq!(value(&samples, "mqttd_subscriptions", "kind=\"plain\""), 1.0);
    for _ in 0..5 {
        publisher.publish("m/a", b"12345", QoS::AtLeastOnce, false).await;
    }
    publisher.publish("m/r", b"kept", QoS::AtMostOnce, true).await;
    for _ in 0..6 {
        let p = sub.recv_publish().await;
        if let Some(id) = p.packet_id {
            sub.send(&mqttd_proto::Packet::PubAck(mqttd_proto::Ack::new(id))).await;
        }
    }
    let samples = scrape_until(http, "six messages in and out", |s| {
        value(s, "mqttd_messages_received_total", "qos=\"1\"") == 5.0
            && value(s, "mqttd_messages_sent_total", "qos=\"1\"") == 5.0
            && value(s, "mqttd_messages_received_total", "qos=\"0\"") == 1.0
    })
    .await;
    assert_eq!(value(&samples, "mqttd_payload_received_bytes_total", "qos=\"1\""), 25.0);
    assert_eq!(value(&samples, "mqttd_retained_messages", ""), 1.0);
    assert!(value(&samples, "mqttd_network_received_bytes_total", "") > 25.0);
    publisher.disconnect().await;
    scrape_until(http, "a normal disconnect counted", |s| {
        value(s, "mqttd_disconnects_total", "reason=\"disconnect\"") == 1.0
            && value(s, "mqttd_connections", "listener=\"0\",protocol=\"3.1.1\"") == 0.0
    })
    .await;
}

#[tokio::test]
async fn wills_and_refusals_are_counted_by_outcome_and_reason() {
    let tb = broker();
    let (mqtt, http) = (tb.addrs[0], tb.addrs[1]);
    let mut c = connect("metrics-doomed", V5);
    c.will = Some(will("wills/doomed", b"gone", QoS::AtMostOnce, false));
    let (doomed, _) = Peer::connect_with(mqtt, c).await;
    doomed.drop_abruptly();
    // An empty client id with Clean Start 0 is refused in 3.1.1 [MQTT-3.1.3-8].
    let mut bad = connect("", V4);
    bad.clean_start = false;
    let (_peer, ack) = Peer::connect_with(mqtt, bad).await;
    assert_ne!(ack.code, 0);
    let samples = scrape_until(http, "the will and the refusal counted", |s| {
        value(s, "mqttd_wills_total", "outcome=\"published\"") == 1.0
            && value(s, "mqttd_disconnects_total", "reason=\"closed_by_peer\"") == 1.0
            && s.iter().any(|((n, _), v)| n == "mqttd_connect_refusals_total" && *v == 1.0)
    })
    .await;
    let refusal = format!("reason=\"{}\"", reason::name(reason::CLIENT_IDENTIFIER_NOT_VALID).replace(' ', "_"));
    assert_eq!(value(&samples, "mqttd_connect_refusals_total", &refusal), 1.0);
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_is_exposed() {
    let tb = broker();
    let body = get(tb.addrs[1], "/metrics").await.body;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/grafana-mqttd.json");
    let dashboard = std::fs::read_to_string(&path).expect("contrib/grafana-mqttd.json");
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the Grafana dashboard is JSON");
    let mut names: Vec<&str> = dashboard
        .match_indices("mqttd_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())]
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() > 10, "{names:?}");
    for name in names {
        assert!(body.contains(&format!("# TYPE {name} ")), "{name} is queried by Grafana but not exposed");
    }
}
