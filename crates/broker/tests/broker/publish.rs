//! PUBLISH at QoS 0, 1 and 2 in both directions, 5.0 reason codes and properties, Receive Maximum,
//! Maximum Packet Size and Message Expiry.

use std::time::Duration;

use bytes::Bytes;
use mqttd_proto::{reason, Ack, Packet, PacketId, QoS};
use mqttd_testkit::{connect, publish, Peer, TestBroker};

use crate::common::*;

fn id(n: u16) -> Option<PacketId> {
    PacketId::new(n)
}

/// A QoS 0 message goes out at QoS 0, without packet id or acknowledgement, in every version
/// [MQTT-4.3.1-1].
#[tokio::test]
async fn a_qos0_message_is_delivered_at_qos0_in_every_version() {
    let tb = TestBroker::start();
    for version in [V3, V4, V5] {
        let topic = format!("q0/{}", version.level());
        let mut sub = subscriber(&tb, &format!("s{}", version.level()), version, &topic, QoS::ExactlyOnce).await;
        let mut publisher = Peer::connect(tb.addr, &format!("p{}", version.level()), version).await;
        publisher.publish(&topic, b"zero", QoS::AtMostOnce, false).await;
        let got = recv_publish_raw(&mut sub).await;
        assert_eq!((got.qos, got.packet_id, got.dup, &got.payload[..]), (QoS::AtMostOnce, None, false, &b"zero"[..]));
    }
}

/// QoS 1 both ways: the publisher gets PUBACK with its packet id [MQTT-4.3.2-2] and the subscriber a
/// QoS 1 PUBLISH with a packet id, which its PUBACK completes [MQTT-4.3.2-1].
#[tokio::test]
async fn a_qos1_message_is_acknowledged_and_delivered_at_qos1() {
    let tb = TestBroker::start();
    let mut sub = subscriber(&tb, "sub", V4, "q1", QoS::AtLeastOnce).await;
    let mut publisher = Peer::connect(tb.addr, "pub", V4).await;
    publisher.send(&Packet::Publish(publish("q1", b"one", QoS::AtLeastOnce, false, id(7)))).await;
    assert_eq!(publisher.recv().await, Packet::PubAck(Ack::new(id(7).unwrap())));
    let got = recv_publish_raw(&mut sub).await;
    assert_eq!((got.qos, got.dup, &got.payload[..]), (QoS::AtLeastOnce, false, &b"one"[..]));
    let packet_id = got.packet_id.expect("QoS 1 has a packet id");
    let session = tb.broker.session("sub").expect("session");
    assert_eq!(session.state.lock().inflight(), 1);
    sub.send(&Packet::PubAck(Ack::new(packet_id))).await;
    wait_until("the PUBACK frees the inflight slot", || session.state.lock().inflight() == 0).await;
}

/// QoS 2 both ways: PUBLISH, PUBREC, PUBREL, PUBCOMP from the publisher to the broker and from the
/// broker to the subscriber [MQTT-4.3.3-1] [MQTT-4.3.3-2].
#[tokio::test]
async fn a_qos2_message_completes_the_full_flow_in_both_directions() {
    let tb = TestBroker::start();
    for version in [V4, V5] {
        let mut sub = subscriber(&tb, &format!("sub{version}"), version, "q2", QoS::ExactlyOnce).await;
        let mut publisher = Peer::connect(tb.addr, &format!("pub{version}"), version).await;
        publisher.send(&Packet::Publish(publish("q2", b"two", QoS::ExactlyOnce, false, id(9)))).await;
        assert!(matches!(publisher.recv().await, Packet::PubRec(a) if a.packet_id == id(9).unwrap()));
        publisher.send(&Packet::PubRel(Ack::new(id(9).unwrap()))).await;
        assert!(matches!(publisher.recv().await, Packet::PubComp(a) if a.packet_id == id(9).unwrap()));

        let got = recv_publish_raw(&mut sub).await;
        assert_eq!((got.qos, &got.payload[..]), (QoS::ExactlyOnce, &b"two"[..]));
        let packet_id = got.packet_id.expect("QoS 2 has a packet id");
        sub.send(&Packet::PubRec(Ack::new(packet_id))).await;
        assert!(matches!(sub.recv().await, Packet::PubRel(a) if a.packet_id == packet_id));
        sub.send(&Packet::PubComp(Ack::new(packet_id))).await;
        let session = tb.broker.session(&format!("sub{version}")).expect("session");
        wait_until("the PUBCOMP ends the flow", || session.state.lock().inflight() == 0).await;
        sub.disconnect().await;
        publisher.disconnect().await;
    }
}

/// A QoS 2 PUBLISH sent again with DUP before PUBREL is acknowledged again but delivered exactly once
/// [MQTT-4.3.3-2] (3.1.1) [MQTT-4.3.3-10] (5.0).
#[tokio::test]
async fn a_qos2_message_resent_with_dup_is_delivered_exactly_once() {
    let tb = TestBroker::start();
    let mut sub = subscriber(&tb, "sub", V4, "once", QoS::ExactlyOnce).await;
    let mut publisher = Peer::connect(tb.addr, "pub", V4).await;
    let mut p = publish("once", b"exactly once", QoS::ExactlyOnce, false, id(3));
    publisher.send(&Packet::Publish(p.clone())).await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(_)));
    p.dup = true;
    publisher.send(&Packet::Publish(p.clone())).await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(_)), "the resend is acknowledged again");
    publisher.send(&Packet::PubRel(Ack::new(id(3).unwrap()))).await;
    assert!(matches!(publisher.recv().await, Packet::PubComp(_)));
    assert_eq!(sub.recv_publish().await.payload, &b"exactly once"[..]);
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "delivered once");
    // After PUBREL the packet id is free: the same id carries a new message.
    publisher.publish("once", b"next", QoS::ExactlyOnce, false).await;
    assert_eq!(sub.recv_publish().await.payload, &b"next"[..]);
}

/// A message goes out at the lower of its QoS and the granted QoS [MQTT-3.8.4-6].
#[tokio::test]
async fn a_message_is_delivered_at_the_minimum_of_published_and_granted_qos() {
    let tb = TestBroker::start();
    let mut sub0 = subscriber(&tb, "sub0", V4, "min", QoS::AtMostOnce).await;
    let mut sub2 = subscriber(&tb, "sub2", V4, "min", QoS::ExactlyOnce).await;
    publish_once(&tb, "min", b"2", QoS::ExactlyOnce, false).await;
    assert_eq!(sub0.recv_publish().await.qos, QoS::AtMostOnce);
    assert_eq!(sub2.recv_publish().await.qos, QoS::ExactlyOnce);
    publish_once(&tb, "min", b"1", QoS::AtLeastOnce, false).await;
    assert_eq!(sub0.recv_publish().await.qos, QoS::AtMostOnce);
    assert_eq!(sub2.recv_publish().await.qos, QoS::AtLeastOnce);
}

/// A 5.0 publish that reaches nobody is acknowledged with 0x10 (no matching subscribers) in PUBACK and
/// PUBREC; 3.1.1 acknowledgements carry no reason code.
#[tokio::test]
async fn a_v5_publish_without_subscribers_is_acknowledged_with_0x10() {
    let tb = TestBroker::start();
    let mut v5 = Peer::connect(tb.addr, "v5", V5).await;
    v5.send(&Packet::Publish(publish("nobody", b"x", QoS::AtLeastOnce, false, id(1)))).await;
    assert!(matches!(v5.recv().await, Packet::PubAck(a) if a.reason == reason::NO_MATCHING_SUBSCRIBERS));
    v5.send(&Packet::Publish(publish("nobody", b"x", QoS::ExactlyOnce, false, id(2)))).await;
    assert!(matches!(v5.recv().await, Packet::PubRec(a) if a.reason == reason::NO_MATCHING_SUBSCRIBERS));
    v5.send(&Packet::PubRel(Ack::new(id(2).unwrap()))).await;
    assert!(matches!(v5.recv().await, Packet::PubComp(a) if a.reason == 0));
    let _sub = subscriber(&tb, "sub", V5, "somebody", QoS::AtLeastOnce).await;
    v5.send(&Packet::Publish(publish("somebody", b"x", QoS::AtLeastOnce, false, id(3)))).await;
    assert!(matches!(v5.recv().await, Packet::PubAck(a) if a.reason == reason::SUCCESS));
    let mut v4 = Peer::connect(tb.addr, "v4", V4).await;
    v4.send(&Packet::Publish(publish("nobody", b"x", QoS::AtLeastOnce, false, id(1)))).await;
    assert!(matches!(v4.recv().await, Packet::PubAck(a) if a.reason == 0));
}

/// Payload Format Indicator, Content Type, Response Topic, Correlation Data and User Properties (in
/// order) reach a 5.0 subscriber unchanged [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16]
/// [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]; a 3.1.1 subscriber gets the payload.
#[tokio::test]
async fn v5_publish_properties_are_forwarded_unchanged() {
    let tb = TestBroker::start();
    let mut sub5 = subscriber(&tb, "sub5", V5, "props", QoS::AtLeastOnce).await;
    let mut sub4 = subscriber(&tb, "sub4", V4, "props", QoS::AtLeastOnce).await;
    let mut publisher = Peer::connect(tb.addr, "pub", V5).await;
    let mut p = publish("props", b"{\"a\":1}", QoS::AtLeastOnce, false, id(1));
    p.properties.payload_format_indicator = Some(1);
    p.properties.content_type = Some("application/json".into());
    p.properties.response_topic = Some("reply/to/me".into());
    p.properties.correlation_data = Some(Bytes::from_static(b"\x00\x01corr"));
    p.properties.user_properties =
        vec![("k".into(), "1".into()), ("other".into(), "x".into()), ("k".into(), "2".into())];
    let sent = p.properties.clone();
    publisher.send(&Packet::Publish(p)).await;
    assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
    let got = sub5.recv_publish().await;
    assert_eq!(got.properties, sent);
    assert_eq!(got.payload, &b"{\"a\":1}"[..]);
    let got = sub4.recv_publish().await;
    assert!(got.properties.is_empty());
    assert_eq!(got.payload, &b"{\"a\":1}"[..]);
}

/// A queued message whose Message Expiry Interval passes before delivery is not delivered
/// [MQTT-3.3.2-5]; one still valid is delivered with the interval reduced by the time it waited
/// [MQTT-3.3.2-6].
#[tokio::test]
async fn an_expired_message_is_not_delivered_and_a_waiting_one_has_its_expiry_reduced() {
    let tb = TestBroker::start();
    let (mut sub, _) = connect_ok(&tb, persistent("sub", V5, 60)).await;
    sub.subscribe("expiry", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = Peer::connect(tb.addr, "pub", V5).await;
    for (payload, expiry) in [(&b"short"[..], 1), (&b"long"[..], 60)] {
        let mut p = publish("expiry", payload, QoS::AtLeastOnce, false, id(1));
        p.properties.message_expiry_interval = Some(expiry);
        publisher.send(&Packet::Publish(p)).await;
        assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
    }
    // Lets the one-second expiry run out while the subscriber is away: the subject of the test.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (mut sub, present) = connect_ok(&tb, persistent("sub", V5, 60)).await;
    assert!(present);
    let got = sub.recv_publish().await;
    assert_eq!(got.payload, &b"long"[..]);
    let left = got.properties.message_expiry_interval.expect("expiry forwarded");
    assert!((57..60).contains(&left), "expiry reduced by the waiting time: {left}");
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "the expired message is dropped");
}

/// The broker never has more unacknowledged QoS 1 messages out to a 5.0 client than the client's
/// Receive Maximum [MQTT-3.3.4-9]; each PUBACK lets one more go.
#[tokio::test]
async fn the_broker_honours_the_client_receive_maximum() {
    let tb = TestBroker::start();
    let mut c = connect("slow", V5);
    c.properties.receive_maximum = Some(2);
    let (mut sub, _) = connect_ok(&tb, c).await;
    sub.subscribe("window", QoS::AtLeastOnce).await;
    let mut publisher = Peer::connect(tb.addr, "pub", V4).await;
    for i in 0..5u8 {
        publisher.publish("window", &[b'0' + i], QoS::AtLeastOnce, false).await;
    }
    let first = recv_publish_raw(&mut sub).await;
    let second = recv_publish_raw(&mut sub).await;
    assert_eq!((&first.payload[..], &second.payload[..]), (&b"0"[..], &b"1"[..]));
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "no third message before an acknowledgement");
    let session = tb.broker.session("slow").expect("session");
    assert_eq!(session.state.lock().inflight(), 2);
    for (expected, acked) in [(b'2', &first), (b'3', &second)] {
        sub.send(&Packet::PubAck(Ack::new(acked.packet_id.unwrap()))).await;
        let next = recv_publish_raw(&mut sub).await;
        assert_eq!(next.payload[..], [expected]);
        assert!(session.state.lock().inflight() <= 2);
    }
}

/// A message larger than the 5.0 client's Maximum Packet Size is not sent to it, and is treated as
/// delivered [MQTT-3.1.2-24] [MQTT-3.1.2-25]; smaller ones still are.
#[tokio::test]
async fn messages_larger_than_the_client_maximum_packet_size_are_not_sent() {
    let tb = TestBroker::start();
    let mut c = connect("small", V5);
    c.properties.maximum_packet_size = Some(100);
    let (mut sub, _) = connect_ok(&tb, c).await;
    sub.subscribe("size", QoS::AtLeastOnce).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        publish_once(&tb, "size", &[b'x'; 200], qos, false).await;
    }
    publish_once(&tb, "size", b"fits", QoS::AtLeastOnce, false).await;
    let got = sub.recv_publish().await;
    assert_eq!(got.payload, &b"fits"[..]);
    let session = tb.broker.session("small").expect("session");
    wait_until("nothing is left inflight", || session.state.lock().inflight() == 0).await;
}

/// A QoS 2 message whose PUBREL is lost with the connection is still delivered once: the resumed session
/// remembers the packet id, so the DUP resend is acknowledged but not routed again [MQTT-4.3.3-2]
/// [MQTT-4.4.0-1].
#[tokio::test]
async fn a_qos2_message_resent_after_a_reconnect_is_delivered_exactly_once() {
    let tb = TestBroker::start();
    let mut sub = subscriber(&tb, "sub", V4, "across", QoS::ExactlyOnce).await;
    let (mut publisher, _) = connect_ok(&tb, persistent("pub", V4, 0)).await;
    let mut p = publish("across", b"once", QoS::ExactlyOnce, false, id(11));
    publisher.send(&Packet::Publish(p.clone())).await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(_)));
    publisher.drop_abruptly();
    let (mut publisher, present) = connect_ok(&tb, persistent("pub", V4, 0)).await;
    assert!(present);
    p.dup = true;
    publisher.send(&Packet::Publish(p)).await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(_)));
    publisher.send(&Packet::PubRel(Ack::new(id(11).unwrap()))).await;
    assert!(matches!(publisher.recv().await, Packet::PubComp(a) if a.reason == 0));
    assert_eq!(sub.recv_publish().await.payload, &b"once"[..]);
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "delivered once");
}

/// The Message Expiry Interval forwarded is the time left rounded up [MQTT-3.3.2-6]: a message that has
/// not expired never arrives with 0 (which the receiver would take as expired), and one forwarded at once
/// keeps its full interval.
#[tokio::test]
async fn the_message_expiry_forwarded_is_the_time_left_rounded_up() {
    let tb = TestBroker::start();
    let mut sub = subscriber(&tb, "sub", V5, "expiry", QoS::AtLeastOnce).await;
    let mut publisher = Peer::connect(tb.addr, "pub", V5).await;
    for expiry in [1, 4] {
        let mut p = publish("expiry", b"m", QoS::AtLeastOnce, false, id(1));
        p.properties.message_expiry_interval = Some(expiry);
        publisher.send(&Packet::Publish(p)).await;
        assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
        let got = sub.recv_publish().await;
        assert_eq!(got.properties.message_expiry_interval, Some(expiry), "forwarded at once");
    }
}

/// Clients cannot publish to `$SYS/...` (the broker's own statistics), whatever the ACL, as in
/// Mosquitto (`acl__check_dollar`): 5.0 PUBACK / PUBREC 0x87, 3.1.1 acknowledged and dropped. A bridge's
/// `$SYS/broker/connection/<name>/state` is the one exception Mosquitto makes, and so do we.
#[tokio::test]
async fn publishes_to_sys_topics_are_refused() {
    let tb = without_sys();
    let mut watcher = Peer::connect(tb.addr, "watcher", V4).await;
    assert_eq!(watcher.subscribe("$SYS/#", QoS::AtLeastOnce).await, vec![1]);
    assert_eq!(watcher.subscribe("marker", QoS::AtLeastOnce).await, vec![1]);
    let mut v5 = Peer::connect(tb.addr, "forger5", V5).await;
    for (qos, n) in [(QoS::AtLeastOnce, 1), (QoS::ExactlyOnce, 2)] {
        v5.send(&Packet::Publish(publish("$SYS/broker/uptime", b"1 seconds", qos, false, id(n)))).await;
        match v5.recv().await {
            Packet::PubAck(a) | Packet::PubRec(a) => assert_eq!(a.reason, reason::NOT_AUTHORIZED, "{qos:?}"),
            other => panic!("expected an acknowledgement, got {other:?}"),
        }
    }
    let mut v4 = Peer::connect(tb.addr, "forger4", V4).await;
    v4.publish("$SYS/broker/clients/connected", b"1000", QoS::AtLeastOnce, true).await;
    v4.publish("$SYS/broker/clients/connected", b"1000", QoS::AtMostOnce, false).await;
    assert_eq!(tb.broker.retained_count(), 0, "nothing forged was retained");
    v4.publish("$SYS/broker/connection/bridge-1/state", b"1", QoS::AtLeastOnce, false).await;
    v4.publish("marker", b"end", QoS::AtLeastOnce, false).await;
    assert_eq!(watcher.recv_publish().await.topic, "$SYS/broker/connection/bridge-1/state");
    assert_eq!(watcher.recv_publish().await.topic, "marker", "no forged $SYS message arrived");
}
