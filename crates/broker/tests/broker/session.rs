//! Sessions: clean session / clean start, queues of a persistent session while the client is away,
//! resending on reconnect, Session Present, and session expiry.

use std::time::{Duration, Instant};

use mqttd_broker::Settings;
use mqttd_core::QueueLimits;
use mqttd_proto::{Ack, Packet, QoS};
use mqttd_testkit::{connect, Peer, TestBroker};

use crate::common::*;

/// A 3.1.1 subscriber with clean session 0 that subscribed to `filter` and then disconnected.
async fn away_subscriber(tb: &TestBroker, id: &str, filter: &str) {
    let (mut sub, present) = connect_ok(tb, persistent(id, V4, 0)).await;
    assert!(!present, "a new session [MQTT-3.2.2-3]");
    sub.subscribe(filter, QoS::ExactlyOnce).await;
    sub.disconnect().await;
}

/// While a clean-session-0 client is away, its session keeps its subscriptions and queues QoS 1 and 2
/// messages [MQTT-3.1.2-4] [MQTT-3.1.2-5]; on return Session Present is 1 [MQTT-3.2.2-2] and the queue is
/// delivered in order [MQTT-4.6.0-6].
#[tokio::test]
async fn a_persistent_session_queues_qos1_and_qos2_messages_while_the_client_is_away() {
    let tb = TestBroker::start();
    away_subscriber(&tb, "away", "queue/#").await;
    publish_once(&tb, "queue/a", b"1", QoS::AtLeastOnce, false).await;
    publish_once(&tb, "queue/b", b"2", QoS::ExactlyOnce, false).await;
    publish_once(&tb, "queue/c", b"dropped", QoS::AtMostOnce, false).await;
    publish_once(&tb, "queue/d", b"3", QoS::AtLeastOnce, false).await;
    let (mut sub, present) = connect_ok(&tb, persistent("away", V4, 0)).await;
    assert!(present);
    let got: Vec<_> = receive_all(&mut sub, 3).await.into_iter().map(|p| (p.payload.to_vec(), p.qos)).collect();
    assert_eq!(
        got,
        [(b"1".to_vec(), QoS::AtLeastOnce), (b"2".to_vec(), QoS::ExactlyOnce), (b"3".to_vec(), QoS::AtLeastOnce)]
    );
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "QoS 0 is not queued by default");
    publish_once(&tb, "queue/e", b"live", QoS::AtMostOnce, false).await;
    assert_eq!(sub.recv_publish().await.payload, &b"live"[..], "the subscription survived");
}

/// With `queue_qos0_messages`, QoS 0 messages are queued for an away client too [MQTT-3.1.2-5].
#[tokio::test]
async fn qos0_messages_are_queued_while_away_with_queue_qos0_messages() {
    let queue = QueueLimits { queue_qos0_offline: true, ..QueueLimits::default() };
    let tb = TestBroker::with_settings(Settings { queue, ..Settings::default() });
    away_subscriber(&tb, "away", "q0").await;
    publish_once(&tb, "q0", b"zero", QoS::AtMostOnce, false).await;
    let (mut sub, _) = connect_ok(&tb, persistent("away", V4, 0)).await;
    let got = sub.recv_publish().await;
    assert_eq!((&got.payload[..], got.qos), (&b"zero"[..], QoS::AtMostOnce));
}

/// The queue of an away client is bounded by `max_queued_messages`: later messages are dropped and the
/// earliest kept.
#[tokio::test]
async fn the_queue_of_an_away_client_is_bounded_by_max_queued_messages() {
    let queue = QueueLimits { max_messages: 3, ..QueueLimits::default() };
    let tb = TestBroker::with_settings(Settings { queue, ..Settings::default() });
    away_subscriber(&tb, "away", "bounded").await;
    let mut publisher = Peer::connect(tb.addr, "pub", V4).await;
    for i in 0..10u8 {
        publisher.publish("bounded", &[b'0' + i], QoS::AtLeastOnce, false).await;
    }
    let session = tb.broker.session("away").expect("session");
    assert_eq!(session.state.lock().queued(), 3);
    let (mut sub, _) = connect_ok(&tb, persistent("away", V4, 0)).await;
    for expected in [b'0', b'1', b'2'] {
        assert_eq!(sub.recv_publish().await.payload[..], [expected]);
    }
    assert!(sub.quiet_for(Duration::from_millis(300)).await);
}

/// On reconnect the broker first resends unacknowledged PUBLISH packets with DUP and their original
/// packet ids, and PUBREL for received QoS 2 messages [MQTT-4.4.0-1] [MQTT-3.3.1-1], then the queue,
/// in order [MQTT-4.6.0-2] [MQTT-4.6.0-3].
#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_then_the_queue_in_order() {
    let tb = TestBroker::start();
    let (mut sub, _) = connect_ok(&tb, persistent("flaky", V4, 0)).await;
    sub.subscribe("resend", QoS::ExactlyOnce).await;
    publish_once(&tb, "resend", b"q1", QoS::AtLeastOnce, false).await;
    publish_once(&tb, "resend", b"q2", QoS::ExactlyOnce, false).await;
    publish_once(&tb, "resend", b"q2-received", QoS::ExactlyOnce, false).await;
    let q1 = recv_publish_raw(&mut sub).await;
    let q2 = recv_publish_raw(&mut sub).await;
    let q2_received = recv_publish_raw(&mut sub).await;
    let received_id = q2_received.packet_id.unwrap();
    sub.send(&Packet::PubRec(Ack::new(received_id))).await;
    assert_eq!(sub.recv().await, Packet::PubRel(Ack::new(received_id)));
    sub.drop_abruptly();

    publish_once(&tb, "resend", b"queued", QoS::AtLeastOnce, false).await;
    let (mut sub, present) = connect_ok(&tb, persistent("flaky", V4, 0)).await;
    assert!(present);
    for sent in [&q1, &q2] {
        let again = recv_publish_raw(&mut sub).await;
        assert!(again.dup, "resent with DUP");
        assert_eq!((again.packet_id, &again.payload), (sent.packet_id, &sent.payload));
    }
    assert_eq!(sub.recv().await, Packet::PubRel(Ack::new(received_id)), "PUBREL resent");
    let queued = recv_publish_raw(&mut sub).await;
    assert_eq!((&queued.payload[..], queued.dup), (&b"queued"[..], false));
}

/// Clean session 1 discards the previous session: Session Present 0, no subscriptions, no queue
/// [MQTT-3.1.2-6] [MQTT-3.2.2-1].
#[tokio::test]
async fn clean_session_discards_the_previous_session() {
    let tb = TestBroker::start();
    away_subscriber(&tb, "away", "clean").await;
    publish_once(&tb, "clean", b"lost", QoS::AtLeastOnce, false).await;
    let (mut sub, present) = connect_ok(&tb, connect("away", V4)).await;
    assert!(!present);
    assert!(sub.quiet_for(Duration::from_millis(300)).await);
    assert_eq!(tb.broker.subscription_count(), 0);
}

/// A 5.0 session with Session Expiry Interval 0 (the default) ends with its connection even with Clean
/// Start 0 [MQTT-3.1.2-23].
#[tokio::test]
async fn a_v5_session_without_expiry_ends_with_the_connection() {
    let tb = TestBroker::start();
    let (sub, _) = connect_ok(&tb, persistent("brief", V5, 0)).await;
    sub.disconnect().await;
    wait_until("the session ends", || tb.broker.session_count() == 0).await;
    let (_sub, present) = connect_ok(&tb, persistent("brief", V5, 0)).await;
    assert!(!present);
}

/// A 5.0 session lives for its Session Expiry Interval after the connection ends, then is discarded
/// [MQTT-3.1.2-23].
#[tokio::test]
async fn a_v5_session_expires_after_its_session_expiry_interval() {
    let tb = TestBroker::start();
    let (mut sub, _) = connect_ok(&tb, persistent("expiring", V5, 1)).await;
    sub.subscribe("expiring", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let (sub, present) = connect_ok(&tb, persistent("expiring", V5, 1)).await;
    assert!(present, "resumed within the interval");
    sub.disconnect().await;
    let gone = Instant::now();
    wait_until("the session expires", || tb.broker.session_count() == 0).await;
    assert!(gone.elapsed() >= Duration::from_millis(900), "expired after {:?}", gone.elapsed());
    assert_eq!(tb.broker.subscription_count(), 0);
    let (_sub, present) = connect_ok(&tb, persistent("expiring", V5, 1)).await;
    assert!(!present);
}

/// A 5.0 DISCONNECT may lengthen the Session Expiry Interval that CONNECT set (3.14.2.2.2).
#[tokio::test]
async fn a_v5_disconnect_can_lengthen_the_session_expiry_interval() {
    let tb = TestBroker::start();
    let (mut sub, _) = connect_ok(&tb, persistent("longer", V5, 1)).await;
    let mut d = mqttd_proto::Disconnect::default();
    d.properties.session_expiry_interval = Some(600);
    sub.send(&Packet::Disconnect(d)).await;
    sub.expect_closed().await;
    // Lets the original one-second interval pass: the subject of the test.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(tb.broker.session("longer").is_some(), "the session outlived its original interval");
}

/// A 5.0 DISCONNECT that sets a Session Expiry Interval after CONNECT set 0 is a protocol error:
/// DISCONNECT 0x82 [MQTT-3.14.2-2].
#[tokio::test]
async fn a_v5_disconnect_setting_an_expiry_after_connect_set_0_is_a_protocol_error() {
    let tb = TestBroker::start();
    let (mut sub, _) = connect_ok(&tb, persistent("zero", V5, 0)).await;
    let mut d = mqttd_proto::Disconnect::default();
    d.properties.session_expiry_interval = Some(600);
    sub.send(&Packet::Disconnect(d)).await;
    assert_eq!(closed_with(&mut sub).await, Some(mqttd_proto::reason::PROTOCOL_ERROR));
    wait_until("the session ends", || tb.broker.session_count() == 0).await;
}

/// 3.x sessions without clean session expire after `persistent_client_expiration`.
#[tokio::test]
async fn v3_sessions_expire_after_persistent_client_expiration() {
    let settings = Settings { persistent_client_expiration: Some(Duration::from_secs(1)), ..Settings::default() };
    let tb = TestBroker::with_settings(settings);
    away_subscriber(&tb, "old", "t").await;
    assert_eq!(tb.broker.session_count(), 1);
    wait_until("the session expires", || tb.broker.session_count() == 0).await;
    let (_sub, present) = connect_ok(&tb, persistent("old", V4, 0)).await;
    assert!(!present);
}

/// The queue of an away client is bounded in bytes by `max_queued_bytes` too.
#[tokio::test]
async fn the_queue_of_an_away_client_is_bounded_by_max_queued_bytes() {
    let queue = QueueLimits { max_bytes: 4096, ..QueueLimits::default() };
    let tb = TestBroker::with_settings(Settings { queue, ..Settings::default() });
    away_subscriber(&tb, "away", "bytes").await;
    let mut publisher = Peer::connect(tb.addr, "pub", V4).await;
    for _ in 0..10 {
        publisher.publish("bytes", &[b'x'; 1000], QoS::AtLeastOnce, false).await;
    }
    let session = tb.broker.session("away").expect("session");
    let (queued, bytes) = {
        let state = session.state.lock();
        (state.queued(), state.queued_bytes())
    };
    assert!(bytes <= 4096 && (1..10).contains(&queued), "{queued} messages, {bytes} bytes queued");
    let (mut sub, _) = connect_ok(&tb, persistent("away", V4, 0)).await;
    assert_eq!(receive_all(&mut sub, queued).await.len(), queued);
    assert!(sub.quiet_for(Duration::from_millis(300)).await);
}

/// A takeover by a connection that keeps the session (clean session 0) hands it the messages the old
/// connection left unacknowledged, resent with DUP [MQTT-4.4.0-1], and the subscriptions.
#[tokio::test]
async fn a_takeover_that_keeps_the_session_resends_unacknowledged_messages() {
    let tb = TestBroker::start();
    let (mut old, _) = connect_ok(&tb, persistent("moving", V4, 0)).await;
    old.subscribe("handover", QoS::AtLeastOnce).await;
    publish_once(&tb, "handover", b"unacked", QoS::AtLeastOnce, false).await;
    let first = recv_publish_raw(&mut old).await;
    let (mut new, present) = connect_ok(&tb, persistent("moving", V4, 0)).await;
    assert!(present);
    old.expect_closed().await;
    let again = recv_publish_raw(&mut new).await;
    assert_eq!((again.dup, again.packet_id, &again.payload[..]), (true, first.packet_id, &b"unacked"[..]));
    new.send(&Packet::PubAck(Ack::new(again.packet_id.unwrap()))).await;
    publish_once(&tb, "handover", b"next", QoS::AtLeastOnce, false).await;
    assert_eq!(new.recv_publish().await.payload, &b"next"[..]);
}

/// A client that comes back with a smaller Receive Maximum gets no more unacknowledged messages than
/// it allows, resent ones included [MQTT-3.3.4-9]; the rest follow its acknowledgements in order.
#[tokio::test]
async fn messages_resent_on_reconnect_respect_the_new_receive_maximum() {
    let tb = TestBroker::start();
    let (mut sub, _) = connect_ok(&tb, persistent("window", V5, 60)).await;
    sub.subscribe("rm", QoS::AtLeastOnce).await;
    for i in 0..3u8 {
        publish_once(&tb, "rm", &[b'0' + i], QoS::AtLeastOnce, false).await;
    }
    for _ in 0..3 {
        recv_publish_raw(&mut sub).await;
    }
    sub.drop_abruptly();
    let mut c = persistent("window", V5, 60);
    c.properties.receive_maximum = Some(1);
    let (mut sub, present) = connect_ok(&tb, c).await;
    assert!(present);
    for expected in [b'0', b'1', b'2'] {
        let p = recv_publish_raw(&mut sub).await;
        assert_eq!(p.payload[..], [expected]);
        assert!(sub.quiet_for(Duration::from_millis(200)).await, "one unacknowledged message at a time");
        sub.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap()))).await;
    }
}
