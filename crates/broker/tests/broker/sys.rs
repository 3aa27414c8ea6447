//! `$SYS/broker/...`: statistics with Mosquitto's topic names every `sys_interval`.

use std::time::Duration;

use mqttd_broker::Settings;
use mqttd_proto::QoS;
use mqttd_testkit::TestBroker;

use crate::common::*;

fn sys_every_second() -> TestBroker {
    TestBroker::with_settings(Settings { sys_interval: Duration::from_secs(1), ..Settings::default() })
}

/// `$SYS/broker/uptime` is retained and published again every `sys_interval`.
#[tokio::test]
async fn sys_uptime_is_published_every_sys_interval() {
    let tb = sys_every_second();
    let mut sub = subscriber(&tb, "sys", V4, "$SYS/broker/uptime", QoS::AtMostOnce).await;
    let first = sub.recv_publish().await;
    assert!(first.retain, "the last value is retained");
    let next = sub.recv_publish().await;
    assert!(!next.retain);
    let text = String::from_utf8(next.payload.to_vec()).expect("UTF-8");
    let seconds: u64 = text.strip_suffix(" seconds").expect("Mosquitto's format").parse().expect("a number");
    assert!(seconds < 60);
}

/// The other statistics use Mosquitto's topic names: version, clients, messages, bytes, subscriptions,
/// retained messages.
#[tokio::test]
async fn sys_statistics_use_mosquitto_topic_names() {
    let tb = sys_every_second();
    let mut sub = subscriber(&tb, "sys", V4, "$SYS/broker/#", QoS::AtMostOnce).await;
    let mut seen = std::collections::HashMap::new();
    let wanted = [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/clients/total",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/retained messages/count",
    ];
    // The retained values date from before this client connected: wait for a fresh round.
    while !wanted.iter().all(|t| seen.contains_key(*t)) {
        let p = sub.recv_publish().await;
        if !p.retain {
            seen.insert(p.topic, String::from_utf8(p.payload.to_vec()).expect("UTF-8"));
        }
    }
    assert!(seen["$SYS/broker/version"].starts_with("mqttd version "));
    let connected: u64 = seen["$SYS/broker/clients/connected"].parse().expect("a number");
    assert!(connected >= 1);
}
