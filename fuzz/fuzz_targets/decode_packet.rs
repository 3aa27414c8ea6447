//! Fuzzes the codec: any bytes, read as each protocol version, must decode without panicking, and every
//! packet that decodes must encode and decode back to the same packet.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqttd_proto::{decode, encode, Limits, Packet, ProtocolVersion};

const VERSIONS: [ProtocolVersion; 3] = [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5];

fuzz_target!(|data: &[u8]| {
    for version in VERSIONS {
        let mut buf = BytesMut::from(data);
        // Each successful decode consumes a whole packet, so this ends within data.len() rounds.
        while let Ok(Some(packet)) = decode(&mut buf, version, &Limits::default()) {
            round_trip(&packet, version);
        }
    }
});

/// CONNECT is decoded whatever version the caller asks for (it names its own), so it is re-encoded in that one.
fn round_trip(packet: &Packet, version: ProtocolVersion) {
    let version = match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => version,
    };
    let mut encoded = BytesMut::new();
    if let Err(e) = encode(packet, version, &mut encoded) {
        panic!("a decoded packet failed to encode ({version:?}): {e}\n{packet:?}");
    }
    let bytes = encoded.clone();
    match decode(&mut encoded, version, &Limits::default()) {
        Ok(Some(again)) => {
            assert_eq!(&again, packet, "decode(encode(p)) != p ({version:?}), encoded as {bytes:02x?}");
            assert!(encoded.is_empty(), "encode wrote more than one packet ({version:?}): {bytes:02x?}");
        }
        other => panic!("the encoding of a decoded packet does not decode ({version:?}): {other:?}\n{packet:?}"),
    }
}
