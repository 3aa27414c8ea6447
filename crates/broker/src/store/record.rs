//! The records of the durable store and their bytes. A message is kept as the MQTT 5.0 PUBLISH packet that
//! carries it and a subscription as the SUBSCRIBE packet that makes it, through the broker's own codec, so
//! the store needs no second format for topics, payloads and properties.
//!
//! Framing: `[len: u32][crc32: u32][kind: u8][body]`, little-endian; `len` and the CRC cover kind and body.

mod session;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqttd_core::{Event, Time};
use mqttd_proto::{decode, encode, Limits, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS};

use session::{get_event, get_session, put_event};

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

/// One change of durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A retained message set, or cleared (empty payload).
    Retained(StoredMessage),
    /// A change of the session registry, as `mqttd_core::Registry` decided it; replay applies it
    /// (`Registry::apply`). A session that ends takes its queue with it.
    Session(Event),
    /// A message queued for persistent sessions, stored once under `id`.
    Message { id: u64, message: StoredMessage },
    /// Message `id` queued for a session, at `qos`, with the flags of that delivery.
    Enqueue { client_id: String, id: u64, qos: QoS, retain: bool, subscription_ids: Vec<u32> },
    /// The session's delivery of message `id` is complete (acknowledged, or handed to another session).
    Ack { client_id: String, id: u64 },
    /// An incoming QoS 2 packet id of a session: received and awaiting PUBREL (`pending`), or released.
    Incoming { client_id: String, packet_id: u16, pending: bool },
    /// Message `id` was sent to the session with `packet_id` (`released`: its PUBREC came, PUBREL is owed).
    Sent { client_id: String, id: u64, packet_id: u16, released: bool },
}

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The bytes end inside a record (a write torn by a crash, at the end of the log).
    Torn,
    /// The CRC does not match, or the record does not decode.
    Corrupt(&'static str),
}

const RETAINED: u8 = 1;
/// `Event::SessionSnapshot` (the layout of a whole session, as the store has always written it).
const SESSION: u8 = 2;
/// A session ended, as logs written before the registry's events say it: read as `Event::SessionEnded`.
const SESSION_END: u8 = 3;
const MESSAGE: u8 = 4;
const ENQUEUE: u8 = 5;
const ACK: u8 = 6;
const INCOMING: u8 = 7;
const SENT: u8 = 8;
const SESSION_OPENED: u8 = 9;
const SESSION_RESUMED: u8 = 10;
const SESSION_DISCONNECTED: u8 = 11;
const SUBSCRIBED: u8 = 12;
const UNSUBSCRIBED: u8 = 13;
const WILL_FIRED: u8 = 14;
const SESSION_ENDED: u8 = 15;

/// The framing header: length and CRC.
pub const HEADER: usize = 8;

impl Record {
    /// Appends the framed record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER]);
        let mut body = BytesMut::new();
        match self {
            Record::Retained(m) => {
                body.put_u8(RETAINED);
                put_message(&mut body, m);
            }
            Record::Session(event) => put_event(&mut body, event),
            Record::Message { id, message } => {
                body.put_u8(MESSAGE);
                body.put_u64_le(*id);
                put_message(&mut body, message);
            }
            Record::Enqueue { client_id, id, qos, retain, subscription_ids } => {
                body.put_u8(ENQUEUE);
                put_str(&mut body, client_id);
                body.put_u64_le(*id);
                body.put_u8(*qos as u8 | if *retain { 0x80 } else { 0 });
                body.put_u32_le(subscription_ids.len() as u32);
                for s in subscription_ids {
                    body.put_u32_le(*s);
                }
            }
            Record::Ack { client_id, id } => {
                body.put_u8(ACK);
                put_str(&mut body, client_id);
                body.put_u64_le(*id);
            }
            Record::Incoming { client_id, packet_id, pending } => {
                body.put_u8(INCOMING);
                put_str(&mut body, client_id);
                body.put_u16_le(*packet_id);
                body.put_u8(u8::from(*pending));
            }
            Record::Sent { client_id, id, packet_id, released } => {
                body.put_u8(SENT);
                put_str(&mut body, client_id);
                body.put_u64_le(*id);
                body.put_u16_le(*packet_id);
                body.put_u8(u8::from(*released));
            }
        }
        out.extend_from_slice(&body);
        let len = (out.len() - start - HEADER) as u32;
        let crc = crc32fast::hash(&out[start + HEADER..]);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads the record at the start of `bytes`: the record and how many bytes it took.
    pub fn decode(bytes: &[u8]) -> Result<(Record, usize), Damage> {
        if bytes.len() < HEADER {
            return Err(Damage::Torn);
        }
        let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let Some(body) = bytes.get(HEADER..HEADER + len) else { return Err(Damage::Torn) };
        if crc32fast::hash(body) != crc {
            return Err(Damage::Corrupt("checksum mismatch"));
        }
        // One copy out of the log's buffer; packets inside are decoded in place from it.
        let mut b = BytesMut::from(body);
        let record = read_record(&mut b).ok_or(Damage::Corrupt("undecodable record"))?;
        Ok((record, HEADER + len))
    }
}

fn read_record(b: &mut BytesMut) -> Option<Record> {
    let kind = get_u8(b)?;
    let record = match kind {
        RETAINED => Record::Retained(get_message(b)?),
        SESSION => Record::Session(Event::SessionSnapshot(get_session(b)?)),
        SESSION_END => Record::Session(Event::SessionEnded { client_id: get_str(b)?.into(), at: Time::default() }),
        SESSION_OPENED..=SESSION_ENDED => Record::Session(get_event(kind, b)?),
        MESSAGE => {
            let id = get_u64(b)?;
            Record::Message { id, message: get_message(b)? }
        }
        ENQUEUE => {
            let client_id = get_str(b)?;
            let id = get_u64(b)?;
            let flags = get_u8(b)?;
            let qos = QoS::from_u8(flags & 0x03)?;
            let n = get_u32(b)? as usize;
            let subscription_ids = (0..n.min(b.remaining() / 4)).map(|_| get_u32(b)).collect::<Option<Vec<_>>>()?;
            Record::Enqueue { client_id, id, qos, retain: flags & 0x80 != 0, subscription_ids }
        }
        ACK => Record::Ack { client_id: get_str(b)?, id: get_u64(b)? },
        INCOMING => {
            let client_id = get_str(b)?;
            let packet_id = (b.remaining() >= 2).then(|| b.get_u16_le())?;
            Record::Incoming { client_id, packet_id, pending: get_u8(b)? != 0 }
        }
        SENT => {
            let client_id = get_str(b)?;
            let id = get_u64(b)?;
            let packet_id = (b.remaining() >= 2).then(|| b.get_u16_le())?;
            Record::Sent { client_id, id, packet_id, released: get_u8(b)? != 0 }
        }
        _ => return None,
    };
    b.is_empty().then_some(record)
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u32_le(s.len() as u32);
    b.put_slice(s.as_bytes());
}

fn get_str(b: &mut BytesMut) -> Option<String> {
    let n = get_u32(b)? as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

fn get_u8(b: &mut BytesMut) -> Option<u8> {
    (b.remaining() >= 1).then(|| b.get_u8())
}

fn get_u32(b: &mut BytesMut) -> Option<u32> {
    (b.remaining() >= 4).then(|| b.get_u32_le())
}

fn get_u64(b: &mut BytesMut) -> Option<u64> {
    (b.remaining() >= 8).then(|| b.get_u64_le())
}

/// A message as the v5 PUBLISH that carries it (packet id 1 for QoS 1/2), after its expiry.
fn put_message(b: &mut BytesMut, m: &StoredMessage) {
    b.put_u64_le(m.expires_at_ms);
    let publish = Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.clone(),
        packet_id: (m.qos != QoS::AtMostOnce).then(|| PacketId::new(1).expect("1 is not 0")),
        properties: m.properties.clone(),
        payload: m.payload.clone(),
    };
    put_packet(b, &Packet::Publish(publish));
}

fn get_message(b: &mut BytesMut) -> Option<StoredMessage> {
    let expires_at_ms = get_u64(b)?;
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
fn put_packet(b: &mut BytesMut, packet: &Packet) {
    let mut bytes = BytesMut::new();
    // Our own packets of valid topics and filters: encoding cannot fail but for sizes beyond the protocol's,
    // which no stored message reaches (they came in as packets).
    if encode(packet, ProtocolVersion::V5, &mut bytes).is_err() {
        bytes.clear();
    }
    b.put_u32_le(bytes.len() as u32);
    b.put_slice(&bytes);
}

fn get_packet(b: &mut BytesMut) -> Option<Packet> {
    let n = get_u32(b)? as usize;
    if b.remaining() < n {
        return None;
    }
    let mut bytes = b.split_to(n);
    let limits = Limits { max_packet_size: mqttd_proto::MAX_VARINT + 5 };
    decode(&mut bytes, ProtocolVersion::V5, &limits).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqttd_core::{ClientIdentity, Expiry, SessionSnapshot, Subscription};
    use mqttd_proto::Will;

    fn message(topic: &str, qos: QoS) -> StoredMessage {
        let mut properties = Properties::default();
        properties.user_properties.push(("k".into(), "v".into()));
        properties.content_type = Some("text/plain".into());
        StoredMessage {
            topic: topic.into(),
            payload: Bytes::from_static(b"\x00binary\xff"),
            qos,
            retain: true,
            properties,
            expires_at_ms: 1_700_000_000_000,
        }
    }

    fn identity(client_id: &str, username: Option<&str>) -> ClientIdentity {
        ClientIdentity { client_id: client_id.into(), username: username.map(Into::into), listener: 2 }
    }

    fn will(delay: u32) -> Will {
        let m = message("will/t", QoS::ExactlyOnce);
        let mut properties = m.properties;
        properties.will_delay_interval = Some(delay).filter(|&d| d > 0);
        Will { topic: m.topic, payload: m.payload, qos: m.qos, retain: false, properties }
    }

    fn subscription(identifier: Option<u32>) -> Subscription {
        let options = mqttd_proto::SubscriptionOptions { qos: QoS::ExactlyOnce, no_local: true, ..Default::default() };
        Subscription { options, identifier }
    }

    fn every_kind() -> Vec<Record> {
        vec![
            Record::Retained(message("a/b", QoS::AtLeastOnce)),
            Record::Retained(StoredMessage { payload: Bytes::new(), ..message("a/b", QoS::AtMostOnce) }),
            Record::Session(Event::SessionSnapshot(SessionSnapshot {
                identity: identity("c1", Some("alice")),
                owner: 0,
                expiry: Expiry::Never,
                will: Some(will(30)),
                disconnected_at: Some(Time::from_millis(5)),
                subscriptions: vec![("a/#".into(), subscription(Some(7))), ("$share/g/x".into(), subscription(None))],
            })),
            Record::Session(Event::SessionSnapshot(SessionSnapshot {
                identity: identity("c0", None),
                owner: mqttd_core::STALE_CONNECTION,
                expiry: Expiry::from_v5(60),
                will: None,
                disconnected_at: None,
                subscriptions: vec![],
            })),
            Record::Session(Event::SessionOpened {
                identity: identity("c1", None),
                connection: 7,
                expiry: Expiry::Immediate,
                will: Some(will(0)),
                at: Time::from_millis(1_700_000_000_123),
            }),
            Record::Session(Event::SessionResumed {
                identity: identity("c1", Some("bob")),
                connection: 8,
                expiry: Expiry::from_v5(3600),
                will: None,
                at: Time::from_millis(9),
            }),
            Record::Session(Event::SessionDisconnected {
                client_id: "c1".into(),
                at: Time::from_millis(10),
                expiry: Expiry::Never,
                will_deleted: true,
            }),
            Record::Session(Event::Subscribed {
                client_id: "c1".into(),
                filter: "a/+".into(),
                subscription: subscription(Some(268_435_455)),
            }),
            Record::Session(Event::Unsubscribed { client_id: "c1".into(), filter: "a/+".into() }),
            Record::Session(Event::WillFired { client_id: "c1".into(), will: will(30), at: Time::from_millis(11) }),
            Record::Session(Event::SessionEnded { client_id: "c1".into(), at: Time::from_millis(12) }),
            Record::Message { id: 42, message: message("q/t", QoS::ExactlyOnce) },
            Record::Enqueue {
                client_id: "c2".into(),
                id: 42,
                qos: QoS::AtLeastOnce,
                retain: true,
                subscription_ids: vec![1, 9],
            },
            Record::Ack { client_id: "c2".into(), id: 42 },
            Record::Incoming { client_id: "c3".into(), packet_id: 65535, pending: true },
            Record::Sent { client_id: "c2".into(), id: 42, packet_id: 9, released: true },
        ]
    }

    #[test]
    fn every_record_reads_back_as_written() {
        let mut bytes = Vec::new();
        let records = every_kind();
        for r in &records {
            r.encode(&mut bytes);
        }
        let mut at = 0;
        for expected in &records {
            let (got, used) = Record::decode(&bytes[at..]).expect("decodes");
            assert_eq!(&got, expected);
            at += used;
        }
        assert_eq!(at, bytes.len());
    }

    /// Logs written before the session records were the registry's events stay readable.
    #[test]
    fn a_session_end_of_an_older_log_reads_as_the_session_ended_event() {
        let mut body = BytesMut::new();
        body.put_u8(SESSION_END);
        put_str(&mut body, "old");
        let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
        bytes.extend(crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let (record, _) = Record::decode(&bytes).expect("decodes");
        assert_eq!(record, Record::Session(Event::SessionEnded { client_id: "old".into(), at: Time::default() }));
    }

    #[test]
    fn a_torn_or_damaged_record_is_told_apart() {
        let mut bytes = Vec::new();
        Record::Ack { client_id: "c".into(), id: 1 }.encode(&mut bytes);
        for cut in 0..bytes.len() {
            assert_eq!(Record::decode(&bytes[..cut]), Err(Damage::Torn), "cut at {cut}");
        }
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        assert_eq!(Record::decode(&bytes), Err(Damage::Corrupt("checksum mismatch")));
    }
}
