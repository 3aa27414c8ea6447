//! A message as it travels between nodes: who sent it (node and sequence, to drop the second copy a
//! node gets through overlapping subscriptions), when it expires (wall-clock milliseconds, so a message
//! read later from a bucket keeps its deadline), and the message as an MQTT 5.0 PUBLISH through our own
//! codec (topic, QoS, RETAIN, properties, payload).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqttd_core::Message;
use mqttd_proto::{Packet, PacketId, ProtocolVersion, Publish, QoS};

/// The first byte of every envelope: its format.
const FORMAT: u8 = 1;
/// Format byte, node, sequence, expiry.
const HEADER: usize = 1 + 8 + 8 + 8;

/// Where a message came from: the node (random at its start) and its count of messages sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub node: u64,
    pub sequence: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Encodes `message` sent by `origin`.
pub fn encode(message: &Message, origin: Origin) -> Result<Bytes, mqttd_proto::EncodeError> {
    let expires_ms = message.expires_at.map_or(0, |at| {
        let left = at.saturating_duration_since(Instant::now());
        now_ms().saturating_add(left.as_millis() as u64).max(1)
    });
    let publish = Publish {
        dup: false,
        qos: message.qos,
        retain: message.retain,
        topic: message.topic.clone(),
        packet_id: (message.qos != QoS::AtMostOnce).then(|| PacketId::new(1).expect("1 is not 0")),
        properties: message.properties().clone(),
        payload: message.payload.clone(),
    };
    let mut buf = BytesMut::with_capacity(HEADER + message.topic.len() + message.payload.len() + 16);
    buf.put_u8(FORMAT);
    buf.put_u64_le(origin.node);
    buf.put_u64_le(origin.sequence);
    buf.put_u64_le(expires_ms);
    mqttd_proto::encode(&Packet::Publish(publish), ProtocolVersion::V5, &mut buf)?;
    Ok(buf.freeze())
}

/// Decodes an envelope; `None` for bytes that are not one, or a message already expired.
pub fn decode(bytes: &[u8]) -> Option<(Arc<Message>, Origin)> {
    if bytes.len() < HEADER || bytes[0] != FORMAT {
        return None;
    }
    let mut header = &bytes[1..HEADER];
    let origin = Origin { node: header.get_u64_le(), sequence: header.get_u64_le() };
    let expires_ms = header.get_u64_le();
    let mut body = BytesMut::from(&bytes[HEADER..]);
    let limits = mqttd_proto::Limits { max_packet_size: u32::MAX };
    let Ok(Some(Packet::Publish(p))) = mqttd_proto::decode(&mut body, ProtocolVersion::V5, &limits) else {
        return None;
    };
    let expires_at = match expires_ms {
        0 => None,
        ms => Some(Instant::now() + Duration::from_millis(ms.checked_sub(now_ms()).filter(|&left| left > 0)?)),
    };
    let message = Message {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: Message::store_properties(p.properties),
        expires_at,
        // No session of this node published it: No Local never applies [MQTT-3.8.3-3].
        origin: 0,
        stored: Default::default(),
    };
    Some((Arc::new(message), origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_comes_back_with_its_origin_flags_properties_and_deadline() {
        let mut message = Message::new("a/b".into(), Bytes::from_static(b"hi"), QoS::ExactlyOnce, true, 7);
        let properties = mqttd_proto::Properties { content_type: Some("text/plain".into()), ..Default::default() };
        message.properties = Message::store_properties(properties);
        message.expires_at = Some(Instant::now() + Duration::from_secs(60));
        let bytes = encode(&message, Origin { node: 3, sequence: 9 }).expect("encodes");
        let (back, origin) = decode(&bytes).expect("decodes");
        assert_eq!(origin, Origin { node: 3, sequence: 9 });
        assert_eq!(
            (back.topic.as_str(), &back.payload[..], back.qos, back.retain),
            ("a/b", &b"hi"[..], QoS::ExactlyOnce, true)
        );
        assert_eq!(back.properties().content_type.as_deref(), Some("text/plain"));
        let left = back.expires_at.expect("a deadline").saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(58) && left <= Duration::from_secs(60), "{left:?}");
        assert_eq!(back.origin, 0);
    }

    #[test]
    fn garbage_and_expired_messages_decode_to_nothing() {
        assert!(decode(b"").is_none());
        assert!(decode(&[9; 40]).is_none());
        let message = Message::new("a".into(), Bytes::new(), QoS::AtMostOnce, false, 0);
        let mut bytes = BytesMut::from(&encode(&message, Origin { node: 1, sequence: 1 }).expect("encodes")[..]);
        bytes[17..25].copy_from_slice(&1u64.to_le_bytes());
        assert!(decode(&bytes).is_none(), "expired in 1970");
    }
}
