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

/// Every topic Mosquitto 2.0 publishes (src/sys_tree.c, with the default build), by name.
fn mosquitto_sys_topics() -> Vec<String> {
    let mut names: Vec<String> = [
        "version",
        "uptime",
        "clients/total",
        "clients/maximum",
        "clients/inactive",
        "clients/disconnected",
        "clients/active",
        "clients/connected",
        "clients/expired",
        "heap/current",
        "heap/maximum",
        "messages/stored",
        "store/messages/count",
        "store/messages/bytes",
        "subscriptions/count",
        "shared_subscriptions/count",
        "retained messages/count",
        "messages/received",
        "messages/sent",
        "publish/messages/dropped",
        "publish/messages/received",
        "publish/messages/sent",
        "bytes/received",
        "bytes/sent",
        "publish/bytes/received",
        "publish/bytes/sent",
    ]
    .iter()
    .map(|n| format!("$SYS/broker/{n}"))
    .collect();
    for load in [
        "messages/received",
        "messages/sent",
        "publish/dropped",
        "publish/received",
        "publish/sent",
        "bytes/received",
        "bytes/sent",
        "sockets",
        "connections",
    ] {
        for period in ["1min", "5min", "15min"] {
            names.push(format!("$SYS/broker/load/{load}/{period}"));
        }
    }
    names
}

/// Mosquitto's whole tree, load averages included (from the second update on), and nothing it does not
/// have. Left out, as documented in sys.rs: the heap figures (Mosquitto too, without memory tracking)
/// and `clients/expired`.
#[tokio::test]
async fn sys_publishes_mosquittos_tree_with_load_averages() {
    let tb = sys_every_second();
    let mut sub = subscriber(&tb, "sys-tree", V4, "$SYS/#", QoS::AtMostOnce).await;
    let known = mosquitto_sys_topics();
    let left_out = ["$SYS/broker/heap/current", "$SYS/broker/heap/maximum", "$SYS/broker/clients/expired"];
    let wanted: Vec<&String> = known.iter().filter(|t| !left_out.contains(&t.as_str())).collect();
    assert_eq!(wanted.len(), 50);
    let mut seen = std::collections::HashMap::new();
    while !wanted.iter().all(|t| seen.contains_key(*t)) {
        let p = sub.recv_publish().await;
        assert!(known.contains(&p.topic), "{} is not a Mosquitto $SYS topic", p.topic);
        seen.insert(p.topic, String::from_utf8(p.payload.to_vec()).expect("UTF-8"));
    }
    let load = &seen["$SYS/broker/load/connections/1min"];
    let (whole, decimals) = load.split_once('.').expect("two decimals, as Mosquitto");
    assert!(whole.parse::<u64>().is_ok() && decimals.len() == 2, "{load}");
    let sent: u64 = seen["$SYS/broker/messages/sent"].parse().expect("a count");
    assert!(sent >= 1, "every packet counts (the SUBACK at least)");
}
