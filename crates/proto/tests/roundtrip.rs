//! Property test: `decode(encode(p)) == p` for packets of every type and version.

use bytes::{Bytes, BytesMut};
use mqttd_proto::*;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _/é€-]{0,12}"
}

fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,5}(/[a-z0-9]{0,5}){0,3}"
}

fn topic_filter() -> impl Strategy<Value = String> {
    prop_oneof![topic_name(), Just("#".to_string()), "[a-z]{1,3}/\\+/[a-z]{1,3}", "[a-z]{1,3}/#"]
}

fn bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1u16..).prop_map(|n| PacketId::new(n).expect("non-zero"))
}

/// Properties that are valid in a PUBLISH (and a will).
fn publish_properties() -> impl Strategy<Value = Properties> {
    (
        proptest::option::of(0u8..=1),
        proptest::option::of(any::<u32>()),
        proptest::option::of(text()),
        proptest::option::of(topic_name()),
        proptest::option::of(bytes()),
        proptest::collection::vec((text(), text()), 0..3),
    )
        .prop_map(|(pfi, expiry, content_type, response_topic, correlation, user)| Properties {
            payload_format_indicator: pfi,
            message_expiry_interval: expiry,
            content_type,
            response_topic,
            correlation_data: correlation,
            user_properties: user,
            ..Properties::default()
        })
}

fn reason_properties() -> impl Strategy<Value = Properties> {
    (proptest::option::of(text()), proptest::collection::vec((text(), text()), 0..2)).prop_map(|(r, user)| Properties {
        reason_string: r,
        user_properties: user,
        ..Properties::default()
    })
}

fn packet(v5: bool) -> impl Strategy<Value = Packet> {
    let props = move |p: Properties| if v5 { p } else { Properties::default() };
    let publish = (any::<bool>(), qos(), any::<bool>(), topic_name(), packet_id(), publish_properties(), bytes())
        .prop_map(move |(dup, qos, retain, topic, id, p, payload)| {
            let zero = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !zero,
                qos,
                retain,
                topic,
                packet_id: if zero { None } else { Some(id) },
                properties: props(p),
                payload,
            })
        });
    let ack = move |reasons: &'static [u8]| {
        (packet_id(), proptest::sample::select(reasons), reason_properties())
            .prop_map(move |(id, reason, p)| {
                let (reason, properties) = if v5 { (reason, p) } else { (0, Properties::default()) };
                Ack { packet_id: id, reason, properties }
            })
            .boxed()
    };
    // Each acknowledgement with reason codes it may carry [MQTT-3.4.2-1] [MQTT-3.6.2-1].
    let (puback, pubrel): (&[u8], &[u8]) = (&[0, 0x10, 0x80, 0x87], &[0, 0x92]);
    let options = (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(move |(qos, nl, rap, rh)| {
        if !v5 {
            return SubscriptionOptions { qos, ..Default::default() };
        }
        let retain_handling =
            [RetainHandling::SendAtSubscribe, RetainHandling::SendIfNew, RetainHandling::DoNotSend][usize::from(rh)];
        SubscriptionOptions { qos, no_local: nl, retain_as_published: rap, retain_handling }
    });
    let subscribe =
        (packet_id(), proptest::collection::vec((topic_filter(), options), 1..4)).prop_map(|(id, filters)| {
            Packet::Subscribe(Subscribe { packet_id: id, filters, properties: Properties::default() })
        });
    let suback = (packet_id(), proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(0x80)], 1..4))
        .prop_map(|(id, reasons)| Packet::SubAck(SubAck { packet_id: id, reasons, properties: Properties::default() }));
    let unsubscribe = (packet_id(), proptest::collection::vec(topic_filter(), 1..4)).prop_map(|(id, filters)| {
        Packet::Unsubscribe(Unsubscribe { packet_id: id, filters, properties: Properties::default() })
    });
    let unsuback = (packet_id(), proptest::collection::vec(prop_oneof![Just(0u8), Just(0x11)], 1..4)).prop_map(
        move |(id, reasons)| {
            let reasons = if v5 { reasons } else { Vec::new() };
            Packet::UnsubAck(UnsubAck { packet_id: id, reasons, properties: Properties::default() })
        },
    );
    let disconnect = (prop_oneof![Just(0u8), Just(4), Just(0x8E)], reason_properties()).prop_map(move |(r, p)| {
        if v5 {
            Packet::Disconnect(Disconnect { reason: r, properties: p })
        } else {
            Packet::Disconnect(Disconnect::default())
        }
    });
    let connack = (any::<bool>(), 0u8..6, proptest::option::of(text())).prop_map(move |(sp, code, assigned)| {
        let mut properties = Properties::default();
        if v5 {
            properties.assigned_client_identifier = assigned;
        }
        Packet::ConnAck(ConnAck { session_present: sp, code, properties })
    });
    prop_oneof![
        publish,
        ack(puback).prop_map(Packet::PubAck),
        ack(puback).prop_map(Packet::PubRec),
        ack(pubrel).prop_map(Packet::PubRel),
        ack(pubrel).prop_map(Packet::PubComp),
        subscribe,
        suback,
        unsubscribe,
        unsuback,
        disconnect,
        connack,
        Just(Packet::PingReq),
        Just(Packet::PingResp),
    ]
}

fn connect() -> impl Strategy<Value = Packet> {
    let version = prop_oneof![Just(ProtocolVersion::V3_1), Just(ProtocolVersion::V3_1_1), Just(ProtocolVersion::V5)];
    let will = proptest::option::of((topic_name(), bytes(), qos(), any::<bool>(), publish_properties()));
    (
        version,
        any::<bool>(),
        any::<u16>(),
        "[a-z0-9]{0,23}",
        will,
        proptest::option::of(text()),
        proptest::option::of(bytes()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(protocol, clean_start, keep_alive, client_id, will, username, password, expiry)| {
            let v5 = protocol.is_v5();
            let will = will.map(|(topic, payload, qos, retain, p)| Will {
                topic,
                payload,
                qos,
                retain,
                properties: if v5 { p } else { Properties::default() },
            });
            // Before 5.0 a password needs a user name [MQTT-3.1.2-22].
            let password = if v5 || username.is_some() { password } else { None };
            let mut properties = Properties::default();
            if v5 {
                properties.session_expiry_interval = expiry;
            }
            Packet::Connect(Box::new(Connect {
                protocol,
                clean_start,
                keep_alive,
                client_id,
                will,
                username,
                password,
                properties,
                // Varied with the other fields rather than a generator of its own.
                bridge: keep_alive % 3 == 0,
            }))
        })
}

fn round_trip(packet: &Packet, version: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("generated packets encode");
    assert_eq!(buf.len(), encoded_len(packet, version));
    let decoded = decode(&mut buf, version, &Limits::default()).expect("decodes").expect("whole packet");
    assert!(buf.is_empty());
    decoded
}

proptest! {
    #[test]
    fn v3_packets_round_trip(p in packet(false)) {
        prop_assert_eq!(round_trip(&p, ProtocolVersion::V3_1_1), p.clone());
        let mut p31 = p.clone();
        if let Packet::ConnAck(c) = &mut p31 {
            // 3.1 has no Session Present flag: the byte is reserved and 0.
            c.session_present = false;
        }
        prop_assert_eq!(round_trip(&p, ProtocolVersion::V3_1), p31);
    }

    #[test]
    fn v5_packets_round_trip(p in packet(true)) {
        prop_assert_eq!(round_trip(&p, ProtocolVersion::V5), p);
    }

    #[test]
    fn connect_round_trips_in_every_version(p in connect()) {
        prop_assert_eq!(round_trip(&p, ProtocolVersion::V3_1_1), p);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = decode(&mut buf, version, &Limits::default()) {}
        }
    }
}
