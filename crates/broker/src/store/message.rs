//! A message's bytes in the durable store: compact (expiry, flags, topic, payload) when it has no
//! properties, read without the MQTT codec; otherwise the MQTT 5.0 PUBLISH that carries it, through the
//! broker's own codec. Also the length-prefixed fields and packets the records are made of.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqttd_proto::{decode, encode, Limits, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS};

/// A message as stored: what the broker's [`mqttd_core::Message`] holds that must survive, with its
/// expiry as wall-clock time (milliseconds since the Unix epoch; 0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
    pub expires_at_ms: u64,
}

/// A message as its stored bytes (what [`put_message`] writes): replay keeps it so, and it is decoded
/// when the broker takes it back, or never if it is gone by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage(pub(super) Bytes);

impl RawMessage {
    pub fn encode(m: &StoredMessage) -> RawMessage {
        RawMessage::from_parts(&m.topic, &m.payload, m.qos, m.retain, &m.properties, m.expires_at_ms)
    }

    /// [`RawMessage::encode`] from the parts of a message held elsewhere (no copy of them first).
    pub fn from_parts(
        topic: &str,
        payload: &Bytes,
        qos: QoS,
        retain: bool,
        properties: &Properties,
        expires_at_ms: u64,
    ) -> RawMessage {
        let mut b = BytesMut::with_capacity(15 + topic.len() + payload.len());
        put_parts(&mut b, topic, payload, qos, retain, properties, expires_at_ms);
        RawMessage(b.freeze())
    }

    /// The message, as it was stored.
    pub fn decode(&self) -> Option<StoredMessage> {
        get_message(&mut BytesMut::from(&self.0[..]))
    }

    /// Its topic, and whether its payload is empty (a retained message cleared); without the codec but
    /// for a message with properties.
    pub(super) fn topic(&self) -> Option<(String, bool)> {
        match Compact::read(&self.0) {
            Some(Some(c)) => Some((c.topic.to_owned(), c.payload.is_empty())),
            Some(None) => self.decode().map(|m| (m.topic, m.payload.is_empty())),
            None => None,
        }
    }

    /// The parts of the message for the broker: topic (`topic` if given, as a retained message's key),
    /// payload (sharing these bytes), QoS, retain flag, properties (`None`: none) and expiry.
    pub fn parts(&self, topic: Option<String>) -> Option<MessageParts> {
        match Compact::read(&self.0)? {
            Some(c) => {
                let start = self.0.len() - c.payload.len();
                let topic = topic.unwrap_or_else(|| c.topic.to_owned());
                Some((topic, self.0.slice(start..), c.qos, c.retain, None, c.expires_at_ms))
            }
            None => {
                let m = self.decode()?;
                Some((m.topic, m.payload, m.qos, m.retain, Some(m.properties), m.expires_at_ms))
            }
        }
    }
}

impl RawMessage {
    /// Its bytes in an allocation of their own (no longer holding the buffer they were read from).
    pub(super) fn unpin(&mut self) {
        self.0 = Bytes::copy_from_slice(&self.0);
    }

    /// How many bytes it holds.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Topic, payload, QoS, retain flag, properties and expiry (ms since the epoch, 0: none) of a message.
pub type MessageParts = (String, Bytes, QoS, bool, Option<Properties>, u64);

/// A message without properties in its compact form: `[expires: u64][flags: u8][topic: u16 + bytes]
/// [payload: u32 + bytes]`; flags hold the QoS and retain (0x80); 0x40 says the PUBLISH packet follows.
struct Compact<'a> {
    expires_at_ms: u64,
    qos: QoS,
    retain: bool,
    topic: &'a str,
    payload: &'a [u8],
}

const THROUGH_CODEC: u8 = 0x40;

impl<'a> Compact<'a> {
    /// `None`: not a message; `Some(None)`: one kept through the codec.
    fn read(b: &'a [u8]) -> Option<Option<Compact<'a>>> {
        let expires_at_ms = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        let flags = *b.get(8)?;
        if flags & THROUGH_CODEC != 0 {
            return Some(None);
        }
        let qos = QoS::from_u8(flags & 0x03)?;
        let topic_len = usize::from(u16::from_le_bytes(b.get(9..11)?.try_into().ok()?));
        let topic = std::str::from_utf8(b.get(11..11 + topic_len)?).ok()?;
        let at = 11 + topic_len;
        let payload_len = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
        let payload = b.get(at + 4..at + 4 + payload_len)?;
        Some(Some(Compact { expires_at_ms, qos, retain: flags & 0x80 != 0, topic, payload }))
    }

    fn len(&self) -> usize {
        11 + self.topic.len() + 4 + self.payload.len()
    }
}

/// The message that makes up the rest of `b` (`b` is then empty): a slice of `owner` when `b` lies in it
/// (no copy), else copied out.
pub(super) fn raw_message(b: &mut &[u8], owner: Option<&Bytes>) -> Option<RawMessage> {
    let len = match Compact::read(b)? {
        Some(c) => c.len(),
        // Through the codec: the packet's length prefix after expiry and flags.
        None => 13 + u32::from_le_bytes(b.get(9..13)?.try_into().ok()?) as usize,
    };
    let bytes = b.get(..len)?;
    let raw = RawMessage(owner.map_or_else(|| Bytes::copy_from_slice(bytes), |o| o.slice_ref(bytes)));
    *b = &b[len..];
    Some(raw)
}

pub(super) fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u32_le(s.len() as u32);
    b.put_slice(s.as_bytes());
}

pub(super) fn get_str(b: &mut BytesMut) -> Option<String> {
    let n = get_u32(b)? as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

pub(super) fn get_u8(b: &mut BytesMut) -> Option<u8> {
    (b.remaining() >= 1).then(|| b.get_u8())
}

pub(super) fn get_u32(b: &mut BytesMut) -> Option<u32> {
    (b.remaining() >= 4).then(|| b.get_u32_le())
}

pub(super) fn get_u64(b: &mut BytesMut) -> Option<u64> {
    (b.remaining() >= 8).then(|| b.get_u64_le())
}

/// A message in its compact form ([`Compact`]), or with properties as the v5 PUBLISH that carries it
/// (packet id 1 for QoS 1/2), after its expiry and flags.
pub(super) fn put_message(b: &mut BytesMut, m: &StoredMessage) {
    put_parts(b, &m.topic, &m.payload, m.qos, m.retain, &m.properties, m.expires_at_ms);
}

fn put_parts(
    b: &mut BytesMut,
    topic: &str,
    payload: &Bytes,
    qos: QoS,
    retain: bool,
    properties: &Properties,
    expires_at_ms: u64,
) {
    b.put_u64_le(expires_at_ms);
    let flags = qos as u8 | if retain { 0x80 } else { 0 };
    if properties.is_empty() && topic.len() <= usize::from(u16::MAX) {
        b.put_u8(flags);
        b.put_u16_le(topic.len() as u16);
        b.put_slice(topic.as_bytes());
        b.put_u32_le(payload.len() as u32);
        b.put_slice(payload);
        return;
    }
    b.put_u8(flags | THROUGH_CODEC);
    let publish = Publish {
        dup: false,
        qos,
        retain,
        topic: topic.to_owned(),
        packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(1).expect("1 is not 0")),
        properties: properties.clone(),
        payload: payload.clone(),
    };
    put_packet(b, &Packet::Publish(publish));
}

pub(super) fn get_message(b: &mut BytesMut) -> Option<StoredMessage> {
    if let Some(c) = Compact::read(b)? {
        let (topic, qos, retain, expires_at_ms) = (c.topic.to_owned(), c.qos, c.retain, c.expires_at_ms);
        let (len, payload_at) = (c.len(), c.len() - c.payload.len());
        let mut m = b.split_to(len);
        m.advance(payload_at);
        let payload = m.freeze();
        return Some(StoredMessage { topic, payload, qos, retain, properties: Properties::default(), expires_at_ms });
    }
    let expires_at_ms = get_u64(b)?;
    get_u8(b)?;
    let Packet::Publish(p) = get_packet(b)? else { return None };
    Some(StoredMessage {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties,
        expires_at_ms,
    })
}

/// A packet with a length prefix (the packet's own length is in its fixed header, but the decoder wants
/// a buffer of its own).
pub(super) fn put_packet(b: &mut BytesMut, packet: &Packet) {
    let mut bytes = BytesMut::new();
    // Our own packets of valid topics and filters: encoding cannot fail but for sizes beyond the protocol's,
    // which no stored message reaches (they came in as packets).
    if encode(packet, ProtocolVersion::V5, &mut bytes).is_err() {
        bytes.clear();
    }
    b.put_u32_le(bytes.len() as u32);
    b.put_slice(&bytes);
}

pub(super) fn get_packet(b: &mut BytesMut) -> Option<Packet> {
    let n = get_u32(b)? as usize;
    if b.remaining() < n {
        return None;
    }
    let mut bytes = b.split_to(n);
    let limits = Limits { max_packet_size: mqttd_proto::MAX_VARINT + 5 };
    decode(&mut bytes, ProtocolVersion::V5, &limits).ok().flatten()
}
