//! Limits: bounded outgoing data to a subscriber that stops reading, message and packet size limits,
//! the broker's Receive Maximum, maximum QoS and retain availability.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mqttd_broker::Settings;
use mqttd_core::QueueLimits;
use mqttd_proto::{reason, Ack, Packet, PacketId, QoS};
use mqttd_testkit::{connect, publish, Peer, TestBroker, TIMEOUT};

use crate::common::*;

/// A subscriber that stops reading does not make the broker grow: 50 MB of QoS 0 published to it leave
/// its queue within `max_qos0_bytes` (the rest is dropped and counted), and the publisher keeps going.
#[tokio::test]
async fn a_subscriber_that_stops_reading_does_not_make_the_broker_grow() {
    const BOUND: usize = 1 << 20;
    let queue = QueueLimits { max_qos0_bytes: BOUND, ..QueueLimits::default() };
    let tb = TestBroker::with_settings(Settings { queue, ..Settings::default() });
    let _stalled = subscriber(&tb, "stalled", V4, "flood", QoS::AtMostOnce).await;
    let mut publisher = Peer::connect(tb.addr, "flooder", V4).await;
    let payload = vec![b'x'; 64 * 1024];
    let chunk: Vec<u8> = (0..16).flat_map(|_| raw_publish_qos0(V4, b"flood", &payload)).collect();
    let session = tb.broker.session("stalled").expect("session");
    let start = Instant::now();
    let mut max_queued = 0;
    for _ in 0..50 {
        publisher.send_raw(&chunk).await;
        max_queued = max_queued.max(session.state.lock().queued_bytes());
    }
    // The publisher is unaffected: its PINGREQ is answered while the subscriber is still stalled.
    publisher.send(&Packet::PingReq).await;
    assert_eq!(publisher.recv().await, Packet::PingResp);
    assert!(start.elapsed() < TIMEOUT, "50 MB took {:?}", start.elapsed());
    let queued = session.state.lock().queued_bytes();
    assert!(queued <= BOUND && max_queued <= BOUND, "queued {queued} (max {max_queued}) > {BOUND}");
    assert!(tb.broker.stats.messages_dropped.load(Ordering::Relaxed) > 0, "excess QoS 0 messages are dropped");
    publisher.publish("other", b"fine", QoS::AtLeastOnce, false).await;
}

/// A PUBLISH above `message_size_limit` is not delivered; a 5.0 publisher gets 0x95 (packet too large)
/// in its PUBACK, a 3.1.1 one a plain PUBACK.
#[tokio::test]
async fn a_message_over_message_size_limit_is_refused_and_not_delivered() {
    let tb = TestBroker::with_settings(Settings { message_size_limit: 100, ..Settings::default() });
    let mut sub = subscriber(&tb, "sub", V4, "size", QoS::AtLeastOnce).await;
    for version in [V4, V5] {
        let mut publisher = Peer::connect(tb.addr, &format!("pub{version}"), version).await;
        publisher
            .send(&Packet::Publish(publish("size", &[b'x'; 101], QoS::AtLeastOnce, false, PacketId::new(1))))
            .await;
        let code = if version.is_v5() { reason::PACKET_TOO_LARGE } else { 0 };
        assert!(matches!(publisher.recv().await, Packet::PubAck(a) if a.reason == code), "{version}");
        publisher.publish("size", &[b'y'; 100], QoS::AtLeastOnce, false).await;
        assert_eq!(sub.recv_publish().await.payload.len(), 100, "{version}: only the message within the limit");
    }
}

/// The 5.0 CONNACK announces the broker's Receive Maximum; a client with more unacknowledged QoS 2
/// messages than that is disconnected with 0x93 (receive maximum exceeded) [MQTT-3.3.4-7].
#[tokio::test]
async fn a_client_exceeding_the_broker_receive_maximum_is_disconnected_with_0x93() {
    let tb = TestBroker::with_settings(Settings { max_inflight_messages: 2, ..Settings::default() });
    let mut witness = Witness::new(&tb).await;
    let (mut peer, ack) = Peer::connect_with(tb.addr, connect("eager", V5)).await;
    assert_eq!(ack.properties.receive_maximum, Some(2));
    for n in 1..=3 {
        peer.send(&Packet::Publish(publish("t", b"x", QoS::ExactlyOnce, false, PacketId::new(n)))).await;
    }
    let got = peer.expect_closed().await;
    assert_eq!(got.iter().filter(|p| matches!(p, Packet::PubRec(_))).count(), 2, "{got:?}");
    assert!(matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason == reason::RECEIVE_MAXIMUM_EXCEEDED));
    witness.still_served(&tb).await;
}

/// With `max_qos 1` a 5.0 CONNACK says Maximum QoS 1, subscriptions are granted QoS 1 at most, and a
/// QoS 2 PUBLISH is refused with DISCONNECT 0x9B (QoS not supported) [MQTT-3.2.2-11].
#[tokio::test]
async fn max_qos_caps_subscriptions_and_refuses_higher_publishes() {
    let tb = TestBroker::with_settings(Settings { max_qos: 1, ..Settings::default() });
    let (mut peer, ack) = Peer::connect_with(tb.addr, connect("capped", V5)).await;
    assert_eq!(ack.properties.maximum_qos, Some(1));
    assert_eq!(peer.subscribe("t", QoS::ExactlyOnce).await, vec![1]);
    peer.send(&Packet::Publish(publish("t", b"x", QoS::ExactlyOnce, false, PacketId::new(1)))).await;
    assert_eq!(closed_with(&mut peer).await, Some(reason::QOS_NOT_SUPPORTED));
}

/// With `retain_available false` a 5.0 CONNACK says so and a retained PUBLISH is refused with
/// DISCONNECT 0x9A (retain not supported) [MQTT-3.2.2-14].
#[tokio::test]
async fn retain_unavailable_refuses_retained_publishes() {
    let tb = TestBroker::with_settings(Settings { retain_available: false, ..Settings::default() });
    let (mut peer, ack) = Peer::connect_with(tb.addr, connect("retainer", V5)).await;
    assert_eq!(ack.properties.retain_available, Some(0));
    peer.send(&Packet::Publish(publish("t", b"x", QoS::AtMostOnce, true, None))).await;
    assert_eq!(closed_with(&mut peer).await, Some(reason::RETAIN_NOT_SUPPORTED));
    assert_eq!(tb.broker.retained_count(), 0);
}

/// The broker's own inflight window (`max_inflight_messages`) bounds unacknowledged QoS 1 messages to a
/// 3.1.1 client too; the rest wait in the queue and follow the acknowledgements.
#[tokio::test]
async fn max_inflight_messages_bounds_unacknowledged_messages_to_any_client() {
    let tb = TestBroker::with_settings(Settings { max_inflight_messages: 1, ..Settings::default() });
    let mut sub = subscriber(&tb, "sub", V4, "w", QoS::AtLeastOnce).await;
    for payload in [b"1", b"2"] {
        publish_once(&tb, "w", payload, QoS::AtLeastOnce, false).await;
    }
    let first = recv_publish_raw(&mut sub).await;
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "one inflight at a time");
    sub.send(&Packet::PubAck(Ack::new(first.packet_id.unwrap()))).await;
    assert_eq!(sub.recv_publish().await.payload, &b"2"[..]);
}

/// Backpressure instead of loss: a publisher pipelining 300 QoS 1 messages at a subscriber whose queue
/// holds 10 is slowed down while the subscriber reads, so every acknowledged message is delivered, in
/// order. (Without it, the burst would overflow `max_queued_messages` and 290 messages would be dropped.)
#[tokio::test]
async fn acknowledged_messages_are_not_dropped_for_a_subscriber_that_keeps_reading() {
    let queue = QueueLimits { max_messages: 10, ..QueueLimits::default() };
    let tb = TestBroker::with_settings(Settings { queue, ..Settings::default() });
    let mut sub = subscriber(&tb, "reader", V4, "burst", QoS::AtLeastOnce).await;
    let mut publisher = Peer::connect(tb.addr, "burster", V4).await;
    publisher.send_raw(&qos1_burst("burst", 300)).await;
    for i in 1..=300u16 {
        let p = sub.recv_publish().await;
        assert_eq!(p.payload[..], i.to_be_bytes(), "message {i} arrives, in order");
    }
    for _ in 0..300 {
        assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
    }
    assert_eq!(tb.broker.stats.messages_dropped.load(Ordering::Relaxed), 0);
}

/// The same after a quiet spell: a subscriber that had nothing to read for a while is not taken for one
/// that stopped reading, so a burst still slows the publisher down instead of being dropped.
#[tokio::test]
async fn a_burst_after_a_quiet_spell_is_not_dropped() {
    let queue = QueueLimits { max_messages: 10, ..QueueLimits::default() };
    let tb = TestBroker::with_settings(Settings { queue, ..Settings::default() });
    let mut sub = subscriber(&tb, "quiet-reader", V4, "later", QoS::AtLeastOnce).await;
    let mut publisher = Peer::connect(tb.addr, "late-burster", V4).await;
    // Longer than the stall threshold (200 ms) without anything to deliver: this wait is the point.
    assert!(sub.quiet_for(Duration::from_millis(400)).await);
    publisher.send_raw(&qos1_burst("later", 200)).await;
    for i in 1..=200u16 {
        let p = sub.recv_publish().await;
        assert_eq!(p.payload[..], i.to_be_bytes(), "message {i} arrives, in order");
    }
    assert_eq!(tb.broker.stats.messages_dropped.load(Ordering::Relaxed), 0);
}
