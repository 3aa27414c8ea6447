//! Bad input: every malformed packet or protocol violation closes that one connection (5.0: after a
//! DISCONNECT with the reason code) and nothing else; a witness client proves the broker still serves.

use std::time::Duration;

use mqttd_broker::Settings;
use mqttd_proto::{reason, Packet, ProtocolVersion, QoS};
use mqttd_testkit::{connect, Peer, TestBroker};

use crate::common::*;

/// Sends `bytes` on a fresh connection of `version` that has completed CONNECT, and asserts it is closed
/// (5.0: with DISCONNECT `code`), then that the witness is still served.
async fn connected_then(
    tb: &TestBroker,
    witness: &mut Witness,
    version: ProtocolVersion,
    bytes: &[u8],
    code: u8,
    what: &str,
) {
    let mut peer = Peer::connect(tb.addr, &format!("bad{}", unique()), version).await;
    peer.send_raw(bytes).await;
    assert_closed(&mut peer, code, what).await;
    witness.still_served(tb).await;
}

/// Sends `bytes` as the first thing on a fresh connection and asserts it is closed without CONNACK
/// success, then that the witness is still served.
async fn first_then(tb: &TestBroker, witness: &mut Witness, bytes: &[u8], what: &str) {
    let mut peer = Peer::open(tb.addr, V4).await;
    peer.send_raw(bytes).await;
    let got = peer.expect_closed().await;
    assert!(!got.iter().any(|p| matches!(p, Packet::ConnAck(a) if a.code == 0)), "{what}: got {got:?}");
    witness.still_served(tb).await;
}

/// A packet other than CONNECT as the first packet closes the connection [MQTT-3.1.0-1].
#[tokio::test]
async fn a_packet_before_connect_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    first_then(&tb, &mut witness, &[0xC0, 0x00], "PINGREQ first").await;
    first_then(&tb, &mut witness, &raw_publish_qos0(V4, b"t", b"x"), "PUBLISH first").await;
}

/// A second CONNECT on a connection is a protocol violation [MQTT-3.1.0-2]: 5.0 DISCONNECT 0x82.
#[tokio::test]
async fn a_second_connect_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for version in [V4, V5] {
        let again = bytes_of(&Packet::Connect(Box::new(connect("again", version))), version);
        connected_then(&tb, &mut witness, version, &again, reason::PROTOCOL_ERROR, "second CONNECT").await;
    }
}

/// Wrong reserved flag bits in the fixed header of any packet type close the connection [MQTT-2.2.2-2]:
/// 5.0 DISCONNECT 0x81 (malformed packet). Packets only a server sends are refused too.
#[tokio::test]
async fn reserved_flag_bits_set_on_any_packet_type_close_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    let subscribe_body = [&[0, 1][..], &field(b"t"), &[0]].concat();
    let unsubscribe_body = [&[0, 1][..], &field(b"t")].concat();
    for version in [V4, V5] {
        let props = if version.is_v5() { vec![0] } else { vec![] };
        let sub = [&subscribe_body[..2], &props, &subscribe_body[2..]].concat();
        let unsub = [&unsubscribe_body[..2], &props, &unsubscribe_body[2..]].concat();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("PUBACK 0x41", frame(0x41, &[0, 1])),
            ("PUBREC 0x51", frame(0x51, &[0, 1])),
            ("PUBREL 0x60", frame(0x60, &[0, 1])),
            ("PUBREL 0x63", frame(0x63, &[0, 1])),
            ("PUBCOMP 0x72", frame(0x72, &[0, 1])),
            ("SUBSCRIBE 0x80", frame(0x80, &sub)),
            ("SUBSCRIBE 0x8A", frame(0x8A, &sub)),
            ("UNSUBSCRIBE 0xA0", frame(0xA0, &unsub)),
            ("UNSUBSCRIBE 0xA3", frame(0xA3, &unsub)),
            ("PINGREQ 0xC1", frame(0xC1, &[])),
            ("PINGREQ 0xC8", frame(0xC8, &[])),
            ("DISCONNECT 0xE2", frame(0xE2, &[])),
            ("AUTH 0xF1", frame(0xF1, &[])),
            ("reserved type 0", frame(0x00, &[])),
        ];
        for (what, bytes) in cases {
            connected_then(&tb, &mut witness, version, &bytes, reason::MALFORMED_PACKET, what).await;
        }
        let qos0_dup = raw_publish_qos0(version, b"t", b"x");
        let dup = [&[0x38][..], &qos0_dup[1..]].concat();
        connected_then(&tb, &mut witness, version, &dup, reason::MALFORMED_PACKET, "DUP on QoS 0 [MQTT-3.3.1-2]").await;
    }
    let mut connect = raw_connect(V4, 0x02, &field(b"flags"));
    connect[0] = 0x11;
    first_then(&tb, &mut witness, &connect, "CONNECT 0x11").await;
    first_then(&tb, &mut witness, &raw_connect(V4, 0x03, &field(b"bit0")), "CONNECT flag bit 0 [MQTT-3.1.2-3]").await;
}

/// PINGREQ with a flag bit set is malformed like any other packet [MQTT-2.2.2-2].
#[tokio::test]
async fn a_pingreq_with_reserved_flags_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    connected_then(&tb, &mut witness, V5, &[0xC1, 0x00], reason::MALFORMED_PACKET, "PINGREQ 0xC1").await;
    connected_then(&tb, &mut witness, V4, &[0xC2, 0x00], reason::MALFORMED_PACKET, "PINGREQ 0xC2").await;
}

/// Packets that only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP) are a protocol error from a
/// client: 5.0 DISCONNECT 0x82.
#[tokio::test]
async fn server_only_packets_from_a_client_close_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for version in [V4, V5] {
        let props: &[u8] = if version.is_v5() { &[0] } else { &[] };
        let cases = [
            ("CONNACK", frame(0x20, &[&[0, 0][..], props].concat())),
            ("SUBACK", frame(0x90, &[&[0, 1][..], props, &[0]].concat())),
            ("PINGRESP", frame(0xD0, &[])),
        ];
        for (what, bytes) in cases {
            connected_then(&tb, &mut witness, version, &bytes, reason::PROTOCOL_ERROR, what).await;
        }
    }
}

/// A remaining length of more than four bytes is malformed [MQTT-1.5.5-1] (3.1.1 2.2.3): 5.0
/// DISCONNECT 0x81.
#[tokio::test]
async fn a_remaining_length_longer_than_four_bytes_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    let bytes = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    for version in [V4, V5] {
        connected_then(&tb, &mut witness, version, &bytes, reason::MALFORMED_PACKET, "5-byte length").await;
    }
    first_then(&tb, &mut witness, &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], "5-byte length in CONNECT").await;
}

/// A packet declared longer than `max_packet_size` is refused from its fixed header, before its body
/// arrives: 5.0 DISCONNECT 0x95 (packet too large) [MQTT-3.2.2-15] (5.0: the client must not exceed the
/// Maximum Packet Size in CONNACK, which announces it).
#[tokio::test]
async fn a_packet_over_max_packet_size_is_refused_from_its_header() {
    let tb = TestBroker::with_settings(Settings { max_packet_size: 1024, ..Settings::default() });
    let mut witness = Witness::new(&tb).await;
    let (_, ack) = Peer::connect_with(tb.addr, connect("asks", V5)).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(1024));
    for version in [V4, V5] {
        // Only the fixed header of a 2000-byte PUBLISH: no body follows.
        let header = [0x30, 0xD0, 0x0F];
        connected_then(&tb, &mut witness, version, &header, reason::PACKET_TOO_LARGE, "2000 > 1024").await;
    }
    first_then(&tb, &mut witness, &[0x10, 0xD0, 0x0F], "oversized CONNECT").await;
}

/// A huge declared length with no data behind it allocates nothing and blocks nobody: the connection
/// waits for bytes that never come and the keep-alive closes it [MQTT-3.1.2-24].
#[tokio::test]
async fn a_huge_declared_length_with_no_data_blocks_nobody() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    let mut c = connect("huge", V4);
    c.keep_alive = 1;
    let (mut peer, _) = connect_ok(&tb, c).await;
    // PUBLISH with remaining length 268,435,455 (the maximum) and nothing after it.
    peer.send_raw(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).await;
    witness.still_served(&tb).await;
    assert!(peer.expect_closed().await.is_empty());
    witness.still_served(&tb).await;
}

/// A valid packet dripped one byte at a time is reassembled and delivered intact, while other clients
/// are served meanwhile.
#[tokio::test]
async fn a_packet_dripped_slowly_is_reassembled_while_others_are_served() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    let mut sub = subscriber(&tb, "sub", V4, "drip", QoS::AtMostOnce).await;
    let mut dripper = Peer::connect(tb.addr, "dripper", V4).await;
    let bytes = raw_publish_qos0(V4, b"drip", b"slowly but surely");
    for (i, byte) in bytes.iter().enumerate() {
        dripper.send_raw(std::slice::from_ref(byte)).await;
        // Dripping is the behaviour under test, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if i == bytes.len() / 2 {
            witness.still_served(&tb).await;
        }
    }
    assert_eq!(sub.recv_publish().await.payload, &b"slowly but surely"[..]);
}

/// Ill-formed UTF-8 in a topic name closes the connection [MQTT-1.5.3-1]: 5.0 DISCONNECT 0x81.
#[tokio::test]
async fn invalid_utf8_in_a_topic_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for version in [V4, V5] {
        for topic in [&b"a/\xC3\x28"[..], b"\xED\xA0\x80", b"\xFF"] {
            let bytes = raw_publish_qos0(version, topic, b"x");
            connected_then(&tb, &mut witness, version, &bytes, reason::MALFORMED_PACKET, "bad UTF-8 topic").await;
        }
        let filter =
            frame(0x82, &[&[0, 1][..], if version.is_v5() { &[0] } else { &[] }, &field(b"\xC3\x28"), &[0]].concat());
        connected_then(&tb, &mut witness, version, &filter, reason::MALFORMED_PACKET, "bad UTF-8 filter").await;
    }
}

/// U+0000 in a topic closes the connection [MQTT-1.5.3-2] [MQTT-4.7.3-2]: 5.0 DISCONNECT 0x81.
#[tokio::test]
async fn a_nul_character_in_a_topic_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for version in [V4, V5] {
        let bytes = raw_publish_qos0(version, b"a\0b", b"x");
        connected_then(&tb, &mut witness, version, &bytes, reason::MALFORMED_PACKET, "U+0000 topic").await;
    }
}

/// Ill-formed UTF-8 or U+0000 in a client id closes the connection without accepting it
/// [MQTT-1.5.3-1] [MQTT-1.5.3-2].
#[tokio::test]
async fn invalid_utf8_or_nul_in_a_client_id_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for version in [V4, V5] {
        for id in [&b"bad\xC3\x28"[..], b"nul\0id"] {
            first_then(&tb, &mut witness, &raw_connect(version, 0x02, &field(id)), "bad client id").await;
        }
    }
}

/// A topic name with a wildcard closes the connection [MQTT-3.3.2-2]: 5.0 DISCONNECT 0x90 (topic name
/// invalid).
#[tokio::test]
async fn a_wildcard_in_a_publish_topic_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for version in [V4, V5] {
        for topic in [&b"a/+"[..], b"a/#", b"#", b"a+"] {
            let bytes = raw_publish_qos0(version, topic, b"x");
            connected_then(&tb, &mut witness, version, &bytes, reason::TOPIC_NAME_INVALID, "wildcard topic").await;
        }
    }
}

/// A PUBLISH with QoS 3 (both QoS bits set) closes the connection [MQTT-3.3.1-4]: 5.0 DISCONNECT 0x81.
#[tokio::test]
async fn a_publish_with_qos_3_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for version in [V4, V5] {
        let props: &[u8] = if version.is_v5() { &[0] } else { &[] };
        let bytes = frame(0x36, &[&field(b"t")[..], &[0, 1], props, b"x"].concat());
        connected_then(&tb, &mut witness, version, &bytes, reason::MALFORMED_PACKET, "QoS 3").await;
    }
}

/// Packet identifier 0 in PUBLISH, SUBSCRIBE or UNSUBSCRIBE closes the connection [MQTT-2.3.1-1]:
/// 5.0 DISCONNECT 0x81.
#[tokio::test]
async fn packet_id_0_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for version in [V4, V5] {
        let props: &[u8] = if version.is_v5() { &[0] } else { &[] };
        let cases = [
            ("PUBLISH QoS 1", frame(0x32, &[&field(b"t")[..], &[0, 0], props, b"x"].concat())),
            ("PUBLISH QoS 2", frame(0x34, &[&field(b"t")[..], &[0, 0], props, b"x"].concat())),
            ("SUBSCRIBE", frame(0x82, &[&[0, 0][..], props, &field(b"t"), &[0]].concat())),
            ("UNSUBSCRIBE", frame(0xA2, &[&[0, 0][..], props, &field(b"t")].concat())),
        ];
        for (what, bytes) in cases {
            connected_then(&tb, &mut witness, version, &bytes, reason::MALFORMED_PACKET, what).await;
        }
    }
}

/// A SUBSCRIBE without any topic filter closes the connection [MQTT-3.8.3-3]: 5.0 DISCONNECT 0x82
/// (protocol error); the same for UNSUBSCRIBE [MQTT-3.10.3-2].
#[tokio::test]
async fn a_subscribe_without_filters_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for version in [V4, V5] {
        let props: &[u8] = if version.is_v5() { &[0] } else { &[] };
        let subscribe = frame(0x82, &[&[0, 1][..], props].concat());
        connected_then(&tb, &mut witness, version, &subscribe, reason::PROTOCOL_ERROR, "empty SUBSCRIBE").await;
        let unsubscribe = frame(0xA2, &[&[0, 1][..], props].concat());
        connected_then(&tb, &mut witness, version, &unsubscribe, reason::PROTOCOL_ERROR, "empty UNSUBSCRIBE").await;
    }
}

/// Malformed topic filters (`a/#/b`, `a+`, `a#`) close the connection [MQTT-4.7.1-2] [MQTT-4.7.1-3]:
/// 5.0 DISCONNECT 0x8F (topic filter invalid).
#[tokio::test]
async fn malformed_topic_filters_close_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for version in [V4, V5] {
        let props: &[u8] = if version.is_v5() { &[0] } else { &[] };
        for filter in [&b"a/#/b"[..], b"a+", b"a#", b"+a/b"] {
            let bytes = frame(0x82, &[&[0, 1][..], props, &field(filter), &[0]].concat());
            connected_then(&tb, &mut witness, version, &bytes, reason::TOPIC_FILTER_INVALID, "bad filter").await;
        }
    }
}

/// A 5.0 property that appears twice is a protocol error [MQTT-2.2.2-2] (5.0): DISCONNECT 0x82; in
/// CONNECT the connection is refused.
#[tokio::test]
async fn a_duplicate_v5_property_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    // PUBLISH with Message Expiry Interval (0x02) twice.
    let props = [10u8, 0x02, 0, 0, 0, 10, 0x02, 0, 0, 0, 20];
    let publish = frame(0x30, &[&field(b"t")[..], &props, b"x"].concat());
    connected_then(&tb, &mut witness, V5, &publish, reason::PROTOCOL_ERROR, "duplicate expiry").await;
    // PUBLISH with Content Type (0x03) twice.
    let ct = [&[0x03][..], &field(b"a")].concat();
    let publish = frame(0x30, &[&field(b"t")[..], &[(2 * ct.len()) as u8], &ct, &ct, b"x"].concat());
    connected_then(&tb, &mut witness, V5, &publish, reason::PROTOCOL_ERROR, "duplicate content type").await;
    // CONNECT with Session Expiry Interval (0x11) twice.
    let mut body = field(b"MQTT");
    body.extend([5, 0x02, 0, 60, 10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]);
    body.extend(field(b"dup-props"));
    first_then(&tb, &mut witness, &frame(0x10, &body), "duplicate session expiry in CONNECT").await;
}

/// Will QoS 3 in CONNECT closes the connection [MQTT-3.1.2-14].
#[tokio::test]
async fn will_qos_3_closes_the_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for version in [V4, V5] {
        let will_props: &[u8] = if version.is_v5() { &[0] } else { &[] };
        // Clean session, will flag, will QoS 3.
        let payload = [&field(b"will-qos3")[..], will_props, &field(b"will/t"), &field(b"bye")].concat();
        first_then(&tb, &mut witness, &raw_connect(version, 0x02 | 0x04 | 0x18, &payload), "will QoS 3").await;
    }
    // Will QoS without the will flag is malformed too [MQTT-3.1.2-13].
    first_then(&tb, &mut witness, &raw_connect(V4, 0x02 | 0x08, &field(b"no-will")), "will QoS, no will").await;
}

/// A 3.1.1 CONNECT with a password but no user name closes the connection [MQTT-3.1.2-22].
#[tokio::test]
async fn a_password_without_a_user_name_closes_a_3_1_1_connection() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    let payload = [&field(b"pw-only")[..], &field(b"secret")].concat();
    first_then(&tb, &mut witness, &raw_connect(V4, 0x02 | 0x40, &payload), "password without user name").await;
    assert_eq!(tb.broker.session("pw-only").map(|_| ()), None);
}
