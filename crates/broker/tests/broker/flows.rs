//! Acknowledgement flows the client gets wrong: an acknowledgement of the wrong kind for the delivery's
//! QoS, a reason code the packet cannot carry, a Response Topic with wildcards. Each is a protocol error
//! (5.0 DISCONNECT 0x82, 3.1.1 the connection closes). An acknowledgement of a packet id the broker does
//! not know is not: it happens after reconnects, and Mosquitto tolerates it too.

use std::time::Duration;

use mqttd_proto::{reason, Ack, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS};
use mqttd_testkit::{publish, Peer, TestBroker};

use crate::common::*;

/// A subscriber of `version` on `flow` at QoS 2 and the first delivery of a message published at `qos`.
async fn delivery(tb: &TestBroker, version: ProtocolVersion, qos: QoS) -> (Peer, Publish) {
    let mut sub = subscriber(tb, &format!("sub-{}", unique()), version, "flow", QoS::ExactlyOnce).await;
    publish_once(tb, "flow", b"m", qos, false).await;
    let p = recv_publish_raw(&mut sub).await;
    assert_eq!(p.qos, qos);
    (sub, p)
}

/// An acknowledgement packet of one kind.
type AckKind = fn(Ack) -> Packet;

fn ack(p: &Publish, reason: u8) -> Ack {
    Ack { packet_id: p.packet_id.expect("QoS 1/2"), reason, properties: Properties::default() }
}

/// PUBREC or PUBCOMP for a QoS 1 delivery and PUBACK for a QoS 2 one do not belong to its flow
/// [MQTT-4.3.2-1] [MQTT-4.3.3-1].
#[tokio::test]
async fn an_acknowledgement_of_the_wrong_kind_is_a_protocol_error() {
    let tb = TestBroker::start();
    let cases: [(QoS, AckKind); 3] =
        [(QoS::AtLeastOnce, Packet::PubRec), (QoS::AtLeastOnce, Packet::PubComp), (QoS::ExactlyOnce, Packet::PubAck)];
    for version in [V4, V5] {
        for (qos, wrong) in cases {
            let (mut sub, p) = delivery(&tb, version, qos).await;
            let packet = wrong(ack(&p, 0));
            let what = format!("{} for QoS {} ({version})", packet.name(), qos as u8);
            sub.send(&packet).await;
            assert_closed(&mut sub, reason::PROTOCOL_ERROR, &what).await;
        }
    }
}

/// PUBACK and PUBREC carry only their own reason codes [MQTT-3.4.2-1] [MQTT-3.5.2-1] (not 0x92), PUBREL
/// and PUBCOMP only 0x00 and 0x92 [MQTT-3.6.2-1] [MQTT-3.7.2-1]; Mosquitto refuses the others too.
#[tokio::test]
async fn an_acknowledgement_with_a_reason_code_it_cannot_carry_is_a_protocol_error() {
    let tb = TestBroker::start();
    let (mut sub, p) = delivery(&tb, V5, QoS::AtLeastOnce).await;
    sub.send(&Packet::PubAck(ack(&p, reason::PACKET_IDENTIFIER_NOT_FOUND))).await;
    assert_closed(&mut sub, reason::PROTOCOL_ERROR, "PUBACK 0x92").await;
    let (mut sub, p) = delivery(&tb, V5, QoS::ExactlyOnce).await;
    sub.send(&Packet::PubRec(ack(&p, 0x01))).await;
    assert_closed(&mut sub, reason::PROTOCOL_ERROR, "PUBREC 0x01").await;
    let (mut sub, p) = delivery(&tb, V5, QoS::ExactlyOnce).await;
    sub.send(&Packet::PubRec(ack(&p, 0))).await;
    assert_eq!(sub.recv().await, Packet::PubRel(ack(&p, 0)));
    sub.send(&Packet::PubComp(ack(&p, reason::NO_MATCHING_SUBSCRIBERS))).await;
    assert_closed(&mut sub, reason::PROTOCOL_ERROR, "PUBCOMP 0x10").await;
    let mut publisher = Peer::connect(tb.addr, "publisher", V5).await;
    let id = PacketId::new(3).expect("non-zero");
    publisher.send(&Packet::Publish(publish("flow", b"m", QoS::ExactlyOnce, false, Some(id)))).await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(_)));
    let rel = Ack { packet_id: id, reason: reason::NOT_AUTHORIZED, properties: Properties::default() };
    publisher.send(&Packet::PubRel(rel)).await;
    assert_closed(&mut publisher, reason::PROTOCOL_ERROR, "PUBREL 0x87").await;
}

/// A PUBREC with a reason code of 0x80 or more ends the QoS 2 flow: the broker sends no PUBREL for it
/// [MQTT-4.3.3-4], neither the first time nor when it comes again, and the message is not resent.
#[tokio::test]
async fn a_pubrec_with_an_error_reason_ends_the_flow_without_pubrel() {
    let tb = TestBroker::start();
    let (mut sub, p) = delivery(&tb, V5, QoS::ExactlyOnce).await;
    for _ in 0..2 {
        sub.send(&Packet::PubRec(ack(&p, reason::UNSPECIFIED_ERROR))).await;
    }
    sub.send(&Packet::PingReq).await;
    assert_eq!(sub.recv().await, Packet::PingResp, "no PUBREL for an error PUBREC");
    assert!(sub.quiet_for(Duration::from_millis(200)).await);
}

/// A Response Topic with a wildcard cannot be published to: the PUBLISH is a protocol error
/// [MQTT-3.3.2-14] (Mosquitto checks it with `mosquitto_pub_topic_check`).
#[tokio::test]
async fn a_response_topic_with_wildcards_is_a_protocol_error() {
    let tb = TestBroker::start();
    for topic in ["reply/+", "reply/#"] {
        let mut publisher = Peer::connect(tb.addr, "asker", V5).await;
        let mut p = publish("question", b"?", QoS::AtMostOnce, false, None);
        p.properties.response_topic = Some(topic.to_string());
        publisher.send(&Packet::Publish(p)).await;
        assert_closed(&mut publisher, reason::PROTOCOL_ERROR, topic).await;
    }
}

/// An acknowledgement for a packet id the broker does not know is tolerated, as Mosquitto does: after a
/// reconnect the client may acknowledge what the broker already forgot. PUBREL for an unknown id gets
/// PUBCOMP 0x92 [MQTT-3.7.2-1].
#[tokio::test]
async fn an_acknowledgement_for_an_unknown_packet_id_is_not_a_protocol_error() {
    let tb = TestBroker::start();
    let mut peer = Peer::connect(tb.addr, "forgetful", V5).await;
    let unknown = PacketId::new(77).expect("non-zero");
    for packet in [Packet::PubAck(Ack::new(unknown)), Packet::PubComp(Ack::new(unknown))] {
        peer.send(&packet).await;
    }
    peer.send(&Packet::PubRel(Ack::new(unknown))).await;
    let comp =
        Ack { packet_id: unknown, reason: reason::PACKET_IDENTIFIER_NOT_FOUND, properties: Properties::default() };
    assert_eq!(peer.recv().await, Packet::PubComp(comp));
    peer.send(&Packet::PingReq).await;
    assert_eq!(peer.recv().await, Packet::PingResp);
}
