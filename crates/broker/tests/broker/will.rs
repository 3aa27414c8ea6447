//! Wills: published when a connection ends any way but a normal DISCONNECT, with their QoS, retain flag
//! and 5.0 properties; the 5.0 Will Delay Interval.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mqttd_proto::{reason, Connect, Disconnect, Packet, QoS};
use mqttd_testkit::{connect, will, TestBroker};

use crate::common::*;

fn with_will(mut c: Connect, payload: &[u8], qos: QoS, retain: bool) -> Connect {
    c.will = Some(will("will/t", payload, qos, retain));
    c
}

/// A connection that ends without DISCONNECT has its will published [MQTT-3.1.2-8], at the will's QoS
/// [MQTT-3.1.2-14] (bounded by the subscription), without RETAIN when Will Retain is 0 [MQTT-3.1.2-16].
#[tokio::test]
async fn the_will_is_published_at_its_qos_when_the_connection_drops() {
    let tb = without_sys();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::ExactlyOnce).await;
    for (i, version) in [V3, V4, V5].into_iter().enumerate() {
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][i];
        let c = with_will(connect(&format!("dying{i}"), version), b"bye", qos, false);
        let (peer, _) = connect_ok(&tb, c).await;
        peer.drop_abruptly();
        let got = watcher.recv_publish().await;
        assert_eq!((&got.payload[..], got.qos, got.retain), (&b"bye"[..], qos, false), "{version}");
    }
    assert_eq!(tb.broker.retained_count(), 0);
}

/// A normal DISCONNECT deletes the will: it is never published [MQTT-3.1.2-10].
#[tokio::test]
async fn the_will_is_not_published_after_a_normal_disconnect() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::AtLeastOnce).await;
    for version in [V4, V5] {
        let (peer, _) =
            connect_ok(&tb, with_will(connect(&format!("polite{version}"), version), b"no", QoS::AtLeastOnce, false))
                .await;
        peer.disconnect().await;
    }
    publish_once(&tb, "will/t", b"marker", QoS::AtLeastOnce, false).await;
    assert_eq!(watcher.recv_publish().await.payload, &b"marker"[..], "no will came before the marker");
}

/// A 5.0 DISCONNECT with reason 0x04 (disconnect with will message) publishes the will.
#[tokio::test]
async fn a_v5_disconnect_with_reason_0x04_publishes_the_will() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::AtLeastOnce).await;
    let (mut peer, _) = connect_ok(&tb, with_will(connect("asks", V5), b"asked for", QoS::AtLeastOnce, false)).await;
    peer.send(&Packet::Disconnect(Disconnect { reason: reason::DISCONNECT_WITH_WILL_MESSAGE, ..Default::default() }))
        .await;
    peer.expect_closed().await;
    assert_eq!(watcher.recv_publish().await.payload, &b"asked for"[..]);
}

/// A will with Will Retain 1 is published as a retained message [MQTT-3.1.2-17].
#[tokio::test]
async fn a_will_with_retain_is_published_as_a_retained_message() {
    let tb = without_sys();
    let (peer, _) = connect_ok(&tb, with_will(connect("retains", V4), b"last words", QoS::AtLeastOnce, true)).await;
    peer.drop_abruptly();
    wait_until("the will is retained", || tb.broker.retained_count() == 1).await;
    let mut late = subscriber(&tb, "late", V4, "will/t", QoS::AtLeastOnce).await;
    let got = late.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b"last words"[..], true));
}

/// 5.0 will properties (Message Expiry, Content Type, Response Topic, Correlation Data, User Properties)
/// go out with the will message (3.1.3.2).
#[tokio::test]
async fn v5_will_properties_are_forwarded_with_the_will() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V5, "will/t", QoS::AtLeastOnce).await;
    let mut c = with_will(connect("props", V5), b"bye", QoS::AtLeastOnce, false);
    let w = c.will.as_mut().unwrap();
    w.properties.message_expiry_interval = Some(30);
    w.properties.content_type = Some("text/plain".into());
    w.properties.response_topic = Some("will/answer".into());
    w.properties.correlation_data = Some(Bytes::from_static(b"42"));
    w.properties.user_properties = vec![("why".into(), "test".into())];
    let sent = w.properties.clone();
    let (peer, _) = connect_ok(&tb, c).await;
    peer.drop_abruptly();
    let got = watcher.recv_publish().await;
    let expiry = got.properties.message_expiry_interval.expect("message expiry forwarded");
    assert!((29..=30).contains(&expiry), "expiry {expiry}");
    assert_eq!(got.properties.content_type, sent.content_type);
    assert_eq!(got.properties.response_topic, sent.response_topic);
    assert_eq!(got.properties.correlation_data, sent.correlation_data);
    assert_eq!(got.properties.user_properties, sent.user_properties);
    assert_eq!(got.properties.will_delay_interval, None, "not a PUBLISH property");
}

/// The will waits for its Will Delay Interval before it is published [MQTT-3.1.3-9].
#[tokio::test]
async fn a_will_delay_holds_the_will_until_the_delay_passes() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::AtLeastOnce).await;
    let mut c = with_will(persistent("late", V5, 60), b"delayed", QoS::AtLeastOnce, false);
    c.will.as_mut().unwrap().properties.will_delay_interval = Some(1);
    let (peer, _) = connect_ok(&tb, c).await;
    let dropped = Instant::now();
    peer.drop_abruptly();
    assert_eq!(watcher.recv_publish().await.payload, &b"delayed"[..]);
    let waited = dropped.elapsed();
    assert!(waited >= Duration::from_millis(900), "published after {waited:?}");
}

/// Will delays and session expiry share one deadline queue: a will due in a second, scheduled while the
/// queue waits for one due in an hour, still goes out after its second [MQTT-3.1.3-9].
#[tokio::test]
async fn a_short_will_delay_scheduled_after_a_long_one_fires_on_time() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::AtLeastOnce).await;
    let mut far = with_will(persistent("far", V5, 7200), b"in an hour", QoS::AtLeastOnce, false);
    far.will.as_mut().unwrap().properties.will_delay_interval = Some(3600);
    let (peer, _) = connect_ok(&tb, far).await;
    peer.drop_abruptly();
    // The hour-long deadline is in the queue before the short one is added.
    let bound = Instant::now() + Duration::from_secs(5);
    while tb.broker.session_entry("far").is_none_or(|e| e.will_due().is_none()) {
        assert!(Instant::now() < bound, "the broker saw the first connection end");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut near = with_will(persistent("near", V5, 60), b"in a second", QoS::AtLeastOnce, false);
    near.will.as_mut().unwrap().properties.will_delay_interval = Some(1);
    let (peer, _) = connect_ok(&tb, near).await;
    let dropped = Instant::now();
    peer.drop_abruptly();
    assert_eq!(watcher.recv_publish().await.payload, &b"in a second"[..]);
    let waited = dropped.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "published after {waited:?}");
}

/// The will goes out when the session ends if that comes before the Will Delay Interval
/// [MQTT-3.1.3-9]: Session Expiry 0 with a will delay of 60 s publishes it at once.
#[tokio::test]
async fn a_will_delay_longer_than_the_session_publishes_the_will_when_the_session_ends() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::AtLeastOnce).await;
    let mut c = with_will(connect("short", V5), b"session over", QoS::AtLeastOnce, false);
    c.will.as_mut().unwrap().properties.will_delay_interval = Some(60);
    let (peer, _) = connect_ok(&tb, c).await;
    let dropped = Instant::now();
    peer.drop_abruptly();
    assert_eq!(watcher.recv_publish().await.payload, &b"session over"[..]);
    assert!(dropped.elapsed() < Duration::from_secs(5));
}

/// A client that reconnects to its session within the Will Delay Interval cancels the will
/// [MQTT-3.1.3-9].
#[tokio::test]
async fn reconnecting_within_the_will_delay_cancels_the_will() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::AtLeastOnce).await;
    let mut c = with_will(persistent("back", V5, 60), b"never", QoS::AtLeastOnce, false);
    c.will.as_mut().unwrap().properties.will_delay_interval = Some(1);
    let (peer, _) = connect_ok(&tb, c).await;
    peer.drop_abruptly();
    let (back, present) = connect_ok(&tb, persistent("back", V5, 60)).await;
    assert!(present);
    assert!(watcher.quiet_for(Duration::from_millis(1500)).await, "the will was cancelled");
    back.disconnect().await;
}

/// A will is published once, not again when the session later expires.
#[tokio::test]
async fn a_will_is_never_published_twice() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::AtLeastOnce).await;
    let c = with_will(persistent("once", V5, 1), b"once", QoS::AtLeastOnce, false);
    let (peer, _) = connect_ok(&tb, c).await;
    peer.drop_abruptly();
    assert_eq!(watcher.recv_publish().await.payload, &b"once"[..]);
    wait_until("the session expires", || tb.broker.session_count() == 1).await;
    assert!(watcher.quiet_for(Duration::from_millis(300)).await);
}

/// A 5.0 CONNECT whose will asks for retain while retain is unavailable is refused with CONNACK 0x9A
/// (retain not supported) [MQTT-3.2.2-13].
#[tokio::test]
async fn a_v5_will_with_retain_is_refused_when_retain_is_unavailable() {
    let tb = TestBroker::with_settings(mqttd_broker::Settings { retain_available: false, ..Default::default() });
    let c = with_will(connect("retainer", V5), b"bye", QoS::AtMostOnce, true);
    let (mut peer, ack) = mqttd_testkit::Peer::connect_with(tb.addr, c).await;
    assert_eq!(ack.code, reason::RETAIN_NOT_SUPPORTED);
    assert!(peer.expect_closed().await.is_empty());
    assert_eq!(tb.broker.session_count(), 0);
}

/// A 5.0 CONNECT whose Will QoS exceeds the broker's maximum QoS is refused with CONNACK 0x9B (QoS not
/// supported) [MQTT-3.2.2-12].
#[tokio::test]
async fn a_v5_will_above_the_maximum_qos_is_refused() {
    let tb = TestBroker::with_settings(mqttd_broker::Settings { max_qos: 1, ..Default::default() });
    let c = with_will(connect("eager", V5), b"bye", QoS::ExactlyOnce, false);
    let (mut peer, ack) = mqttd_testkit::Peer::connect_with(tb.addr, c).await;
    assert_eq!(ack.code, reason::QOS_NOT_SUPPORTED);
    assert!(peer.expect_closed().await.is_empty());
}

/// A will whose session expires before the Will Delay Interval goes out when the session ends, not
/// before [MQTT-3.1.3-9]: Session Expiry 1 s with a will delay of 60 s publishes it after about 1 s.
#[tokio::test]
async fn a_will_is_published_when_the_session_expires_before_the_will_delay() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::AtLeastOnce).await;
    let mut c = with_will(persistent("expires", V5, 1), b"session expired", QoS::AtLeastOnce, false);
    c.will.as_mut().unwrap().properties.will_delay_interval = Some(60);
    let (peer, _) = connect_ok(&tb, c).await;
    let dropped = Instant::now();
    peer.drop_abruptly();
    assert_eq!(watcher.recv_publish().await.payload, &b"session expired"[..]);
    let waited = dropped.elapsed();
    assert!(waited >= Duration::from_millis(900), "published after {waited:?}, before the session ended");
    assert!(watcher.quiet_for(Duration::from_millis(300)).await, "once");
}

/// A will larger than `message_size_limit` would bypass the limit when published: the CONNECT is refused,
/// as Mosquitto does (`will__read`): 5.0 CONNACK 0x95 (packet too large), 3.x CONNACK 5 (not
/// authorized). A will at the limit is accepted.
#[tokio::test]
async fn a_will_over_message_size_limit_refuses_the_connect() {
    let tb = TestBroker::with_settings(mqttd_broker::Settings { message_size_limit: 10, ..Default::default() });
    let mut accepted = Vec::new();
    for (version, code) in [(V5, reason::PACKET_TOO_LARGE), (V4, 5), (V3, 5)] {
        let c = with_will(connect(&format!("big-{version}"), version), &[b'x'; 11], QoS::AtMostOnce, false);
        let (mut peer, ack) = mqttd_testkit::Peer::connect_with(tb.addr, c).await;
        assert_eq!(ack.code, code, "{version}");
        assert!(peer.expect_closed().await.is_empty());
        let c = with_will(connect(&format!("fits-{version}"), version), &[b'x'; 10], QoS::AtMostOnce, false);
        accepted.push(connect_ok(&tb, c).await);
    }
    assert_eq!(tb.broker.session_count(), 3, "only the clients whose wills fit are connected");
}
