//! Byte-literal fixtures: every packet type in each protocol version, decoded and encoded.

use bytes::{Bytes, BytesMut};
use mqttd_proto::*;

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// Decodes `bytes` as one whole packet and checks encoding it gives the same bytes back.
fn both_ways(bytes: &[u8], version: ProtocolVersion, expected: Packet) {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, version, &Limits::default()).unwrap().expect("a whole packet");
    assert_eq!(packet, expected);
    assert!(buf.is_empty(), "the decoder consumed the whole packet");
    let mut out = BytesMut::new();
    encode(&expected, version, &mut out).unwrap();
    assert_eq!(&out[..], bytes);
    assert_eq!(encoded_len(&expected, version), bytes.len());
}

fn decode_err(bytes: &[u8], version: ProtocolVersion) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    decode(&mut buf, version, &Limits::default()).expect_err("must be refused")
}

fn connect(protocol: ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: "c1".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
        bridge: false,
    }
}

#[test]
fn the_bridge_bit_is_0x80_on_the_protocol_level() {
    // Mosquitto's `try_private`: level 4 | 0x80 = 0x84 (not in the MQTT specification).
    let bytes = [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 0x84, 0x02, 0, 60, 0, 2, b'c', b'1'];
    both_ways(&bytes, V311, Packet::Connect(Box::new(Connect { bridge: true, ..connect(V311) })));
}

#[test]
fn connect_3_1_uses_mqisdp_level_3() {
    let bytes = [0x10, 16, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 2, b'c', b'1'];
    both_ways(&bytes, V311, Packet::Connect(Box::new(connect(V31))));
}

#[test]
fn connect_3_1_1_with_will_user_and_password() {
    let bytes = [
        0x10,
        28,
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        4,
        0b1110_1110,
        0,
        10,
        0,
        2,
        b'c',
        b'1', // header + id
        0,
        1,
        b'w',
        0,
        2,
        b'h',
        b'i', // will topic and payload
        0,
        1,
        b'u',
        0,
        2,
        b'p',
        b'w', // user and password
    ];
    let mut c = connect(V311);
    c.keep_alive = 10;
    c.will = Some(Will {
        topic: "w".into(),
        payload: Bytes::from_static(b"hi"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::default(),
    });
    c.username = Some("u".into());
    c.password = Some(Bytes::from_static(b"pw"));
    both_ways(&bytes, V311, Packet::Connect(Box::new(c)));
}

#[test]
fn connect_5_with_properties_and_will_properties() {
    let bytes = [
        0x10,
        31,
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        5,
        0b0000_0110,
        0,
        60, // fixed part
        5,
        0x11,
        0,
        0,
        0,
        30, // session expiry 30
        0,
        2,
        b'c',
        b'1', // client id
        5,
        0x18,
        0,
        0,
        0,
        5, // will delay 5
        0,
        1,
        b'w',
        0,
        0, // will topic, empty payload
    ];
    let mut c = connect(V5);
    c.properties.session_expiry_interval = Some(30);
    let wp = Properties { will_delay_interval: Some(5), ..Properties::default() };
    c.will =
        Some(Will { topic: "w".into(), payload: Bytes::new(), qos: QoS::AtMostOnce, retain: false, properties: wp });
    both_ways(&bytes, V311, Packet::Connect(Box::new(c)));
}

#[test]
fn connack_in_each_version() {
    let ack = ConnAck { session_present: true, code: 0, properties: Properties::default() };
    // 3.1 has no Session Present flag: the byte is reserved and 0, whatever the packet says.
    let mut out = BytesMut::new();
    encode(&Packet::ConnAck(ack.clone()), V31, &mut out).unwrap();
    assert_eq!(&out[..], [0x20, 2, 0, 0]);
    both_ways(&[0x20, 2, 0, 0], V31, Packet::ConnAck(ConnAck { session_present: false, ..ack.clone() }));
    both_ways(&[0x20, 2, 1, 0], V311, Packet::ConnAck(ack.clone()));
    let mut v5 = ack;
    v5.properties.assigned_client_identifier = Some("a".into());
    both_ways(&[0x20, 7, 1, 0, 4, 0x12, 0, 1, b'a'], V5, Packet::ConnAck(v5));
}

#[test]
fn publish_at_each_qos_and_version() {
    let p0 = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: "a/b".into(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::from_static(b"x"),
    };
    both_ways(&[0x31, 6, 0, 3, b'a', b'/', b'b', b'x'], V311, Packet::Publish(p0.clone()));
    both_ways(&[0x31, 6, 0, 3, b'a', b'/', b'b', b'x'], V31, Packet::Publish(p0.clone()));
    let p1 = Publish { qos: QoS::AtLeastOnce, dup: true, retain: false, packet_id: Some(id(7)), ..p0.clone() };
    both_ways(&[0x3A, 8, 0, 3, b'a', b'/', b'b', 0, 7, b'x'], V311, Packet::Publish(p1));
    let mut p2 = Publish { qos: QoS::ExactlyOnce, retain: false, packet_id: Some(id(1)), ..p0 };
    p2.properties.message_expiry_interval = Some(9);
    p2.properties.user_properties.push(("k".into(), "v".into()));
    let bytes = [0x34, 21, 0, 3, b'a', b'/', b'b', 0, 1, 12, 0x02, 0, 0, 0, 9, 0x26, 0, 1, b'k', 0, 1, b'v', b'x'];
    // The properties come in identifier order on encode: 0x02 before 0x26.
    both_ways(&bytes[..], V5, Packet::Publish(p2));
}

#[test]
fn publish_acks_in_3_1_1_and_5() {
    both_ways(&[0x40, 2, 0, 5], V311, Packet::PubAck(Ack::new(id(5))));
    both_ways(&[0x50, 2, 0, 5], V311, Packet::PubRec(Ack::new(id(5))));
    both_ways(&[0x62, 2, 0, 5], V311, Packet::PubRel(Ack::new(id(5))));
    both_ways(&[0x70, 2, 0, 5], V31, Packet::PubComp(Ack::new(id(5))));
    // 5.0: a success without properties may omit the reason code [MQTT-3.4.2-1].
    both_ways(&[0x40, 2, 0, 5], V5, Packet::PubAck(Ack::new(id(5))));
    let refused = Ack { packet_id: id(5), reason: reason::NO_MATCHING_SUBSCRIBERS, properties: Properties::default() };
    both_ways(&[0x50, 3, 0, 5, 0x10], V5, Packet::PubRec(refused));
    let mut with_reason = Ack { packet_id: id(5), reason: 0x92, properties: Properties::default() };
    with_reason.properties.reason_string = Some("no".into());
    both_ways(&[0x70, 9, 0, 5, 0x92, 5, 0x1F, 0, 2, b'n', b'o'], V5, Packet::PubComp(with_reason));
}

#[test]
fn subscribe_and_suback() {
    let opts = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
    let s = Subscribe { packet_id: id(1), filters: vec![("a/+".into(), opts)], properties: Properties::default() };
    both_ways(&[0x82, 8, 0, 1, 0, 3, b'a', b'/', b'+', 1], V311, Packet::Subscribe(s.clone()));
    let v5opts = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    let mut s5 = Subscribe { filters: vec![("#".into(), v5opts)], ..s };
    s5.properties.subscription_identifiers.push(3);
    both_ways(&[0x82, 9, 0, 1, 2, 0x0B, 3, 0, 1, b'#', 0b0010_1110], V5, Packet::Subscribe(s5));
    let ack = SubAck { packet_id: id(1), reasons: vec![0, 1, 0x80], properties: Properties::default() };
    both_ways(&[0x90, 5, 0, 1, 0, 1, 0x80], V311, Packet::SubAck(ack.clone()));
    both_ways(&[0x90, 6, 0, 1, 0, 0, 1, 0x80], V5, Packet::SubAck(ack));
}

#[test]
fn unsubscribe_and_unsuback() {
    let u = Unsubscribe { packet_id: id(2), filters: vec!["a".into()], properties: Properties::default() };
    both_ways(&[0xA2, 5, 0, 2, 0, 1, b'a'], V311, Packet::Unsubscribe(u.clone()));
    both_ways(&[0xA2, 6, 0, 2, 0, 0, 1, b'a'], V5, Packet::Unsubscribe(u));
    let ack = UnsubAck { packet_id: id(2), reasons: vec![], properties: Properties::default() };
    both_ways(&[0xB0, 2, 0, 2], V311, Packet::UnsubAck(ack));
    // 3.1.1 UNSUBACK carries no reason codes (found by fuzzing `b0 04 f0 04 10 5b`).
    assert!(matches!(decode_err(&[0xB0, 4, 0, 2, 0x10, 0x5B], V311), DecodeError::Malformed(_)));
    let ack5 = UnsubAck { packet_id: id(2), reasons: vec![0x11], properties: Properties::default() };
    both_ways(&[0xB0, 4, 0, 2, 0, 0x11], V5, Packet::UnsubAck(ack5));
}

#[test]
fn ping_disconnect_and_auth() {
    for v in [V31, V311, V5] {
        both_ways(&[0xC0, 0], v, Packet::PingReq);
        both_ways(&[0xD0, 0], v, Packet::PingResp);
        both_ways(&[0xE0, 0], v, Packet::Disconnect(Disconnect::default()));
    }
    let with_will = Disconnect { reason: reason::DISCONNECT_WITH_WILL_MESSAGE, properties: Properties::default() };
    both_ways(&[0xE0, 1, 4], V5, Packet::Disconnect(with_will));
    let mut expiry = Disconnect { reason: 0, properties: Properties::default() };
    expiry.properties.session_expiry_interval = Some(0);
    both_ways(&[0xE0, 7, 0, 5, 0x11, 0, 0, 0, 0], V5, Packet::Disconnect(expiry));
    both_ways(&[0xF0, 0], V5, Packet::Auth(Auth::default()));
    assert!(matches!(decode_err(&[0xF0, 0], V311), DecodeError::Malformed(_)));
}

#[test]
fn incomplete_input_asks_for_more_and_leaves_the_buffer_alone() {
    let whole = [0x30, 4, 0, 1, b'a', b'x'];
    for cut in 0..whole.len() {
        let mut buf = BytesMut::from(&whole[..cut]);
        assert_eq!(decode(&mut buf, V311, &Limits::default()).unwrap(), None);
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn size_limit_is_checked_on_the_fixed_header_before_the_body_arrives() {
    // A declared remaining length of 2^21 with no body at all.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..]);
    let err = decode(&mut buf, V311, &Limits { max_packet_size: 1024 }).unwrap_err();
    assert_eq!(err, DecodeError::TooLarge { size: 2_097_157, max: 1024 });
    assert_eq!(err.reason_code(), reason::PACKET_TOO_LARGE);
}

#[test]
fn remaining_length_over_four_bytes_is_malformed() {
    // [MQTT-1.5.5-1]
    let err = decode_err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], V311);
    assert!(matches!(err, DecodeError::Malformed(_)));
}

#[test]
fn reserved_flag_bits_are_malformed_for_every_packet_type() {
    // [MQTT-2.2.2-2]: flags other than those the spec lists are malformed.
    for (first, body) in [
        (0x11u8, &[][..]),
        (0x21, &[0, 0][..]),
        (0x41, &[0, 1][..]),
        (0x51, &[0, 1][..]),
        (0x60, &[0, 1][..]),
        (0x71, &[0, 1][..]),
        (0x80, &[0, 1, 0, 1, b'a', 0][..]),
        (0x91, &[0, 1, 0][..]),
        (0xA0, &[0, 1, 0, 1, b'a'][..]),
        (0xB1, &[0, 1][..]),
        (0xC1, &[][..]),
        (0xD1, &[][..]),
        (0xE1, &[][..]),
    ] {
        let mut bytes = vec![first, body.len() as u8];
        bytes.extend_from_slice(body);
        assert!(matches!(decode_err(&bytes, V311), DecodeError::Malformed(_)), "first byte {first:#x}");
    }
}

#[test]
fn bad_publishes_are_refused() {
    // QoS 3 [MQTT-3.3.1-4]
    assert!(matches!(decode_err(&[0x36, 5, 0, 1, b'a', 0, 1], V311), DecodeError::Malformed(_)));
    // packet id 0 [MQTT-2.3.1-1]
    assert!(matches!(decode_err(&[0x32, 5, 0, 1, b'a', 0, 0], V311), DecodeError::Malformed(_)));
    // wildcard in the topic name [MQTT-3.3.2-2]
    let err = decode_err(&[0x30, 3, 0, 1, b'#'], V311);
    assert_eq!(err.reason_code(), reason::TOPIC_NAME_INVALID);
    // invalid UTF-8 [MQTT-1.5.3-1] and U+0000 [MQTT-1.5.3-2]
    assert!(matches!(decode_err(&[0x30, 4, 0, 2, 0xC3, 0x28], V311), DecodeError::Malformed(_)));
    assert!(matches!(decode_err(&[0x30, 4, 0, 2, b'a', 0], V311), DecodeError::Malformed(_)));
}

#[test]
fn bad_connects_are_refused() {
    let base = [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'c', b'1'];
    let with = |i: usize, v: u8| {
        let mut b = base.to_vec();
        b[i] = v;
        b
    };
    // reserved flag [MQTT-3.1.2-3]
    assert!(matches!(decode_err(&with(9, 0x03), V311), DecodeError::Malformed(_)));
    // will QoS 3 [MQTT-3.1.2-14]
    assert!(matches!(decode_err(&with(9, 0x1E), V311), DecodeError::Malformed(_)));
    // will QoS without a will [MQTT-3.1.2-13]
    assert!(matches!(decode_err(&with(9, 0x0A), V311), DecodeError::Malformed(_)));
    // password without user name in 3.1.1 [MQTT-3.1.2-22]
    let mut pw = with(9, 0x42);
    pw[1] += 3;
    pw.extend_from_slice(&[0, 1, b'p']);
    assert!(matches!(decode_err(&pw, V311), DecodeError::Malformed(_)));
    // unknown protocol level
    let err = decode_err(&with(8, 6), V311);
    assert_eq!(err, DecodeError::UnsupportedProtocol { name: "MQTT".into(), level: 6 });
    // client id with U+0000
    assert!(matches!(decode_err(&with(15, 0), V311), DecodeError::Malformed(_)));
}

#[test]
fn bad_subscribes_are_refused() {
    // no filter [MQTT-3.8.3-3]
    assert!(matches!(decode_err(&[0x82, 2, 0, 1], V311), DecodeError::Protocol(_)));
    // `a/#/b` and `a+` [MQTT-4.7.1-2], [MQTT-4.7.1-3]
    let err = decode_err(&[0x82, 10, 0, 1, 0, 5, b'a', b'/', b'#', b'/', b'b', 0], V311);
    assert_eq!(err.reason_code(), reason::TOPIC_FILTER_INVALID);
    let err = decode_err(&[0x82, 7, 0, 1, 0, 2, b'a', b'+', 0], V311);
    assert_eq!(err.reason_code(), reason::TOPIC_FILTER_INVALID);
    // requested QoS 3 and reserved bits
    assert!(matches!(decode_err(&[0x82, 6, 0, 1, 0, 1, b'a', 3], V311), DecodeError::Malformed(_)));
    assert!(matches!(decode_err(&[0x82, 6, 0, 1, 0, 1, b'a', 4], V311), DecodeError::Malformed(_)));
}

#[test]
fn duplicate_and_misplaced_properties_are_refused() {
    // Message Expiry twice in a PUBLISH [MQTT-2.2.2-2].
    let bytes = [0x30, 14, 0, 1, b'a', 10, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2];
    assert_eq!(decode_err(&bytes, V5).reason_code(), reason::PROTOCOL_ERROR);
    // Session Expiry is not a PUBLISH property.
    let bytes = [0x30, 9, 0, 1, b'a', 5, 0x11, 0, 0, 0, 1];
    assert_eq!(decode_err(&bytes, V5).reason_code(), reason::MALFORMED_PACKET);
}

#[test]
fn several_packets_in_one_buffer_decode_one_at_a_time() {
    let mut buf = BytesMut::from(&[0xC0, 0, 0xD0, 0, 0xC0][..]);
    let limits = Limits::default();
    assert_eq!(decode(&mut buf, V311, &limits).unwrap(), Some(Packet::PingReq));
    assert_eq!(decode(&mut buf, V311, &limits).unwrap(), Some(Packet::PingResp));
    assert_eq!(decode(&mut buf, V311, &limits).unwrap(), None);
    assert_eq!(buf.len(), 1);
}
