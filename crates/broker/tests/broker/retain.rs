//! Retained messages: stored, replaced, cleared with an empty payload, sent on subscribe with RETAIN set.

use std::time::Duration;

use mqttd_proto::{Properties, QoS, RetainHandling, SubscriptionOptions};
use mqttd_testkit::Peer;

use crate::common::*;

/// A retained message is stored and sent to a later subscriber with RETAIN set [MQTT-3.3.1-5]
/// [MQTT-3.3.1-6] [MQTT-3.3.1-8].
#[tokio::test]
async fn a_retained_message_is_sent_to_a_new_subscriber_with_retain_set() {
    let tb = without_sys();
    publish_once(&tb, "r/temp", b"21", QoS::AtLeastOnce, true).await;
    assert_eq!(tb.broker.retained_count(), 1);
    let mut sub = subscriber(&tb, "sub", V4, "r/#", QoS::AtLeastOnce).await;
    let got = sub.recv_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..], got.retain, got.qos),
        ("r/temp", &b"21"[..], true, QoS::AtLeastOnce)
    );
}

/// A retained message sent to a client already subscribed goes out with RETAIN 0 [MQTT-3.3.1-9].
#[tokio::test]
async fn a_retained_message_reaches_existing_subscribers_with_retain_cleared() {
    let tb = without_sys();
    let mut sub = subscriber(&tb, "sub", V4, "r/live", QoS::AtMostOnce).await;
    publish_once(&tb, "r/live", b"now", QoS::AtMostOnce, true).await;
    let got = sub.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b"now"[..], false));
}

/// A new retained message replaces the one stored for its topic [MQTT-3.3.1-5].
#[tokio::test]
async fn a_retained_message_replaces_the_previous_one() {
    let tb = without_sys();
    publish_once(&tb, "r/t", b"old", QoS::AtMostOnce, true).await;
    publish_once(&tb, "r/t", b"new", QoS::AtMostOnce, true).await;
    assert_eq!(tb.broker.retained_count(), 1);
    let mut sub = subscriber(&tb, "sub", V4, "r/t", QoS::AtMostOnce).await;
    assert_eq!(sub.recv_publish().await.payload, &b"new"[..]);
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "only the latest is kept");
}

/// A retained message with an empty payload removes the stored one and is not stored itself
/// [MQTT-3.3.1-10] [MQTT-3.3.1-11].
#[tokio::test]
async fn an_empty_retained_message_clears_the_topic() {
    let tb = without_sys();
    publish_once(&tb, "r/t", b"old", QoS::AtMostOnce, true).await;
    publish_once(&tb, "r/t", b"", QoS::AtMostOnce, true).await;
    assert_eq!(tb.broker.retained_count(), 0);
    let mut sub = subscriber(&tb, "sub", V4, "r/#", QoS::AtMostOnce).await;
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "nothing retained");
}

/// A message without RETAIN neither stores nor replaces a retained message [MQTT-3.3.1-12].
#[tokio::test]
async fn a_message_without_retain_leaves_the_retained_message_alone() {
    let tb = without_sys();
    publish_once(&tb, "r/t", b"kept", QoS::AtMostOnce, true).await;
    publish_once(&tb, "r/t", b"passing", QoS::AtMostOnce, false).await;
    let mut sub = subscriber(&tb, "sub", V4, "r/t", QoS::AtMostOnce).await;
    assert_eq!(sub.recv_publish().await.payload, &b"kept"[..]);
}

/// Every retained message matching a wildcard subscription is sent, at the lower of its QoS and the
/// granted QoS [MQTT-3.3.1-6] [MQTT-3.8.4-6].
#[tokio::test]
async fn every_retained_message_matching_a_wildcard_is_sent() {
    let tb = without_sys();
    for topic in ["home/kitchen", "home/hall", "office/desk"] {
        publish_once(&tb, topic, topic.as_bytes(), QoS::ExactlyOnce, true).await;
    }
    let mut sub = subscriber(&tb, "sub", V4, "home/+", QoS::AtLeastOnce).await;
    let mut topics = Vec::new();
    for _ in 0..2 {
        let got = sub.recv_publish().await;
        assert_eq!((got.retain, got.qos), (true, QoS::AtLeastOnce));
        topics.push(got.topic);
    }
    topics.sort();
    assert_eq!(topics, ["home/hall", "home/kitchen"]);
    assert!(sub.quiet_for(Duration::from_millis(300)).await);
}

/// 5.0 Retain Handling: 0 sends the retained messages at subscribe [MQTT-3.3.1-9] (5.0), 1 only for a
/// subscription that did not exist [MQTT-3.3.1-10], 2 never [MQTT-3.3.1-11].
#[tokio::test]
async fn v5_retain_handling_decides_whether_retained_messages_are_sent() {
    let tb = without_sys();
    publish_once(&tb, "r/t", b"kept", QoS::AtMostOnce, true).await;
    let mut sub = Peer::connect(tb.addr, "sub", V5).await;
    let with =
        |handling| vec![("r/t".to_string(), SubscriptionOptions { retain_handling: handling, ..Default::default() })];
    sub.subscribe_with(with(RetainHandling::DoNotSend), Properties::default()).await;
    assert!(sub.quiet_for(Duration::from_millis(200)).await, "handling 2: nothing");
    sub.subscribe_with(with(RetainHandling::SendIfNew), Properties::default()).await;
    assert!(sub.quiet_for(Duration::from_millis(200)).await, "handling 1 on an existing subscription: nothing");
    sub.subscribe_with(with(RetainHandling::SendAtSubscribe), Properties::default()).await;
    assert_eq!(sub.recv_publish().await.payload, &b"kept"[..], "handling 0: sent");
}

/// A retained message whose Message Expiry Interval has passed is no longer sent to new subscribers
/// [MQTT-3.3.2-5].
#[tokio::test]
async fn an_expired_retained_message_is_not_sent() {
    let tb = without_sys();
    let mut publisher = Peer::connect(tb.addr, "pub", V5).await;
    for (topic, expiry) in [("r/short", 1), ("r/long", 60)] {
        let mut p = mqttd_testkit::publish(topic, b"x", QoS::AtMostOnce, true, None);
        p.properties.message_expiry_interval = Some(expiry);
        publisher.send(&mqttd_proto::Packet::Publish(p)).await;
    }
    wait_until("both are retained", || tb.broker.retained_count() == 2).await;
    // Lets the one-second expiry run out: the subject of the test.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut sub = subscriber(&tb, "sub", V5, "r/#", QoS::AtMostOnce).await;
    let got = sub.recv_publish().await;
    assert_eq!(got.topic, "r/long");
    assert!(got.properties.message_expiry_interval.is_some_and(|s| s < 60));
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "the expired one is gone");
}

/// More retained messages than `max_queued_messages` (default 1000): a `#` subscriber still gets every
/// one, with RETAIN set, because they are fed to its queue as it drains instead of overflowing it.
#[tokio::test]
async fn a_wildcard_subscriber_gets_more_retained_messages_than_the_queue_holds() {
    let tb = without_sys();
    let mut publisher = Peer::connect(tb.addr, "many-retained", V4).await;
    let mut burst = Vec::new();
    for i in 0..3000u32 {
        burst.extend(raw_publish_qos0_retained(&format!("many/{i}"), &i.to_be_bytes()));
    }
    publisher.send_raw(&burst).await;
    // A QoS 1 publish after them: its PUBACK means the broker has stored them all.
    publisher.publish("many-done", b"", QoS::AtLeastOnce, false).await;
    assert_eq!(tb.broker.retained_count(), 3000);
    let mut sub = Peer::connect(tb.addr, "all-of-them", V4).await;
    sub.subscribe("many/#", QoS::AtMostOnce).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3000 {
        let p = sub.recv_publish().await;
        assert!(p.retain, "sent because retained [MQTT-3.3.1-8]");
        seen.insert(p.topic);
    }
    assert_eq!(seen.len(), 3000, "every retained topic once");
}

fn raw_publish_qos0_retained(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut bytes = raw_publish_qos0(V4, topic.as_bytes(), payload);
    bytes[0] |= 0x01;
    bytes
}
