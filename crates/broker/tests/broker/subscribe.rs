//! SUBSCRIBE and UNSUBSCRIBE: wildcards, `$` topics, overlapping subscriptions, replacement, and the 5.0
//! features refused with their reason codes.

use std::time::Duration;

use mqttd_proto::{reason, Packet, PacketId, Properties, QoS, SubscriptionOptions, Unsubscribe};
use mqttd_testkit::{Peer, TestBroker};

use crate::common::*;

/// Publishes each topic in turn and returns the topics `sub` received, ending with a marker message on
/// `marker` that `sub` must also match.
async fn received_of(tb: &TestBroker, sub: &mut Peer, topics: &[&str], marker: &str) -> Vec<String> {
    for topic in topics.iter().chain([&marker]) {
        publish_once(tb, topic, b"m", QoS::AtMostOnce, false).await;
    }
    let mut got = Vec::new();
    loop {
        let p = sub.recv_publish().await;
        if p.topic == marker {
            return got;
        }
        got.push(p.topic);
    }
}

/// `+` matches exactly one whole level, including an empty one [MQTT-4.7.1-3].
#[tokio::test]
async fn the_single_level_wildcard_matches_exactly_one_level() {
    let tb = TestBroker::start();
    let mut sub = subscriber(&tb, "sub", V4, "sport/+/player", QoS::AtMostOnce).await;
    sub.subscribe("end", QoS::AtMostOnce).await;
    let topics = ["sport/tennis/player", "sport//player", "sport/player", "sport/a/b/player", "sport/tennis/player/x"];
    let got = received_of(&tb, &mut sub, &topics, "end").await;
    assert_eq!(got, ["sport/tennis/player", "sport//player"]);
}

/// `#` matches its parent level and every level below it [MQTT-4.7.1-2].
#[tokio::test]
async fn the_multi_level_wildcard_matches_the_parent_and_every_child() {
    let tb = TestBroker::start();
    let mut sub = subscriber(&tb, "sub", V4, "sport/tennis/#", QoS::AtMostOnce).await;
    sub.subscribe("end", QoS::AtMostOnce).await;
    let topics = ["sport/tennis", "sport/tennis/player1", "sport/tennis/a/b/c", "sport/golf", "sport"];
    let got = received_of(&tb, &mut sub, &topics, "end").await;
    assert_eq!(got, ["sport/tennis", "sport/tennis/player1", "sport/tennis/a/b/c"]);
}

/// Topics starting with `$` are not matched by filters starting with a wildcard [MQTT-4.7.2-1], but
/// are by a filter that names the `$` level.
#[tokio::test]
async fn dollar_topics_are_not_matched_by_a_leading_wildcard() {
    let tb = TestBroker::start();
    let mut wild = subscriber(&tb, "wild", V4, "#", QoS::AtMostOnce).await;
    wild.subscribe("+/private/x", QoS::AtMostOnce).await;
    let mut dollar = subscriber(&tb, "dollar", V4, "$private/#", QoS::AtMostOnce).await;
    dollar.subscribe("end", QoS::AtMostOnce).await;
    let got = received_of(&tb, &mut wild, &["$private/x", "a/private/x"], "end").await;
    assert_eq!(got, ["a/private/x"]);
    assert_eq!(dollar.recv_publish().await.topic, "$private/x");
}

/// A client whose subscriptions overlap gets each message once, at the highest granted QoS
/// [MQTT-3.3.5-1].
#[tokio::test]
async fn overlapping_subscriptions_deliver_a_message_once_at_the_highest_qos() {
    let tb = TestBroker::start();
    let mut sub = subscriber(&tb, "sub", V4, "a/#", QoS::AtMostOnce).await;
    sub.subscribe("a/+", QoS::ExactlyOnce).await;
    sub.subscribe("a/b", QoS::AtLeastOnce).await;
    publish_once(&tb, "a/b", b"once", QoS::ExactlyOnce, false).await;
    let got = sub.recv_publish().await;
    assert_eq!((got.qos, &got.payload[..]), (QoS::ExactlyOnce, &b"once"[..]));
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "delivered once");
}

/// A SUBSCRIBE with a filter already subscribed replaces that subscription [MQTT-3.8.4-3]; the SUBACK
/// has one code per filter in order [MQTT-3.8.4-5] and the packet id of the SUBSCRIBE [MQTT-3.8.4-2].
#[tokio::test]
async fn a_subscribe_to_the_same_filter_replaces_the_subscription() {
    let tb = TestBroker::start();
    let mut sub = subscriber(&tb, "sub", V4, "replace", QoS::ExactlyOnce).await;
    let packet_id = PacketId::new(4242).unwrap();
    let filters = vec![
        ("replace".to_string(), SubscriptionOptions { qos: QoS::AtMostOnce, ..Default::default() }),
        ("other".to_string(), SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() }),
    ];
    sub.send(&Packet::Subscribe(mqttd_proto::Subscribe { packet_id, filters, properties: Properties::default() }))
        .await;
    match sub.recv().await {
        Packet::SubAck(ack) => assert_eq!((ack.packet_id, ack.reasons), (packet_id, vec![0, 1])),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    assert_eq!(tb.broker.subscription_count(), 2);
    publish_once(&tb, "replace", b"r", QoS::ExactlyOnce, false).await;
    assert_eq!(sub.recv_publish().await.qos, QoS::AtMostOnce);
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "one subscription, one delivery");
}

/// After UNSUBSCRIBE nothing more arrives on that filter [MQTT-3.10.4-2]; 5.0 UNSUBACK says 0x11 for a
/// filter that was not subscribed.
#[tokio::test]
async fn unsubscribe_stops_delivery_and_v5_unsuback_reports_unknown_filters() {
    let tb = TestBroker::start();
    let mut sub = subscriber(&tb, "sub", V5, "gone", QoS::AtLeastOnce).await;
    sub.subscribe("kept", QoS::AtLeastOnce).await;
    let packet_id = PacketId::new(5).unwrap();
    let filters = vec!["gone".to_string(), "never".to_string()];
    sub.send(&Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties: Properties::default() })).await;
    match sub.recv().await {
        Packet::UnsubAck(ack) => {
            assert_eq!(ack.packet_id, packet_id);
            assert_eq!(ack.reasons, vec![reason::SUCCESS, reason::NO_SUBSCRIPTION_EXISTED]);
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    publish_once(&tb, "gone", b"no", QoS::AtLeastOnce, false).await;
    publish_once(&tb, "kept", b"yes", QoS::AtLeastOnce, false).await;
    assert_eq!(sub.recv_publish().await.payload, &b"yes"[..]);
}

/// Retained messages on `$` topics are not sent for a subscription starting with a wildcard either
/// [MQTT-4.7.2-1]: a subscriber to `#` gets none of the retained `$SYS` values.
#[tokio::test]
async fn retained_dollar_topics_are_not_sent_to_a_leading_wildcard_subscription() {
    let tb = TestBroker::start();
    publish_once(&tb, "$private/kept", b"secret", QoS::AtMostOnce, true).await;
    publish_once(&tb, "public/kept", b"open", QoS::AtMostOnce, true).await;
    assert!(tb.broker.retained_count() > 2, "the $SYS values are retained too");
    let mut sub = subscriber(&tb, "all", V4, "#", QoS::AtMostOnce).await;
    assert_eq!(sub.recv_publish().await.topic, "public/kept");
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "no $ topic");
}

/// 5.0 No Local: a client does not get back its own messages on such a subscription [MQTT-3.8.3-3] (5.0);
/// Retain As Published keeps the RETAIN flag on live delivery (3.8.3.1).
#[tokio::test]
async fn v5_no_local_and_retain_as_published_are_honoured() {
    let tb = TestBroker::start();
    let mut me = Peer::connect(tb.addr, "me", V5).await;
    let no_local = SubscriptionOptions { qos: QoS::AtLeastOnce, no_local: true, ..Default::default() };
    let as_published = SubscriptionOptions { qos: QoS::AtLeastOnce, retain_as_published: true, ..Default::default() };
    let filters = vec![("mine".to_string(), no_local), ("flagged".to_string(), as_published)];
    assert_eq!(me.subscribe_with(filters, Properties::default()).await, vec![1, 1]);
    me.publish("mine", b"echo?", QoS::AtLeastOnce, false).await;
    publish_once(&tb, "flagged", b"retained", QoS::AtLeastOnce, true).await;
    let got = me.recv_publish().await;
    assert_eq!((got.topic.as_str(), got.retain), ("flagged", true), "no echo of 'mine' came first");
}

/// No Local belongs to one subscription [MQTT-3.8.3-3]: a client's own message still reaches it through
/// another overlapping subscription without No Local, once.
#[tokio::test]
async fn no_local_applies_per_subscription_not_per_session() {
    let tb = TestBroker::start();
    let mut me = Peer::connect(tb.addr, "overlap", V5).await;
    let no_local = SubscriptionOptions { qos: QoS::AtLeastOnce, no_local: true, ..Default::default() };
    let plain = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
    let filters = vec![("own/topic".to_string(), no_local), ("own/#".to_string(), plain)];
    assert_eq!(me.subscribe_with(filters, Properties::default()).await, vec![1, 1]);
    me.publish("own/topic", b"back", QoS::AtLeastOnce, false).await;
    let got = me.recv_publish().await;
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("own/topic", &b"back"[..]));
    assert!(me.quiet_for(std::time::Duration::from_millis(200)).await, "delivered once");
}
