//! The records of the durable store and their bytes. A message without properties is kept as its expiry,
//! flags, topic and payload ([`RawMessage`], read without the MQTT codec); one with properties as the MQTT
//! 5.0 PUBLISH packet that carries it, and a subscription as the SUBSCRIBE packet that makes it, through the
//! broker's own codec. The records of a session's queue name it by a number bound to its client id by a
//! [`Record::Name`] earlier in the log, so that they are small and fixed-size.
//!
//! Framing: `[len: u32][crc32: u32][kind: u8][body]`, little-endian; `len` and the CRC cover kind and body.

use bytes::{Buf, BufMut, BytesMut};
use mqttd_proto::{Packet, PacketId, Properties, QoS, Subscribe, SubscriptionOptions};

use super::message::{
    get_message, get_packet, get_str, get_u32, get_u64, get_u8, put_message, put_packet, put_str, raw_message,
    RawMessage, StoredMessage,
};

/// A session as stored: enough to rebuild it after a restart, disconnected at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub client_id: String,
    pub username: Option<String>,
    pub listener: u16,
    /// Session Expiry Interval in seconds; `u32::MAX`: never; 0: ends with its connection.
    pub expiry: u32,
    /// When its connection ended (ms since the epoch); 0 while it was connected.
    pub disconnected_at_ms: u64,
    /// The will not yet published, with its Will Delay Interval in seconds.
    pub will: Option<(StoredMessage, u32)>,
    pub subscriptions: Vec<(String, SubscriptionOptions, Option<u32>)>,
}

/// One change of durable state.
// `Session` is much larger than the rest (a will's properties), but rare; the others are what a busy
// store appends, and each is encoded at once, never kept in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A retained message set, or cleared (empty payload).
    Retained(RawMessage),
    /// A session created or changed (the whole of it).
    Session(StoredSession),
    /// A session ended: it, its subscriptions and its queue are gone.
    SessionEnd { client_id: String },
    /// A message queued for persistent sessions, stored once under `id`.
    Message { id: u64, message: RawMessage },
    /// From here on, the queue records of session number `session` are those of `client_id`.
    Name { session: u64, client_id: String },
    /// Message `id` queued for a session, at `qos`, with the flags of that delivery.
    Enqueue { session: u64, id: u64, qos: QoS, retain: bool, subscription_ids: Vec<u32> },
    /// The session's delivery of message `id` is complete (acknowledged, or handed to another session).
    Ack { session: u64, id: u64 },
    /// An incoming QoS 2 packet id of a session: received and awaiting PUBREL (`pending`), or released.
    Incoming { session: u64, packet_id: u16, pending: bool },
    /// Message `id` was sent to the session with `packet_id` (`released`: its PUBREC came, PUBREL is owed).
    Sent { session: u64, id: u64, packet_id: u16, released: bool },
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
const SESSION: u8 = 2;
const SESSION_END: u8 = 3;
const MESSAGE: u8 = 4;
const ENQUEUE: u8 = 5;
const ACK: u8 = 6;
const INCOMING: u8 = 7;
const SENT: u8 = 8;
const NAME: u8 = 9;

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
                body.put_slice(&m.0);
            }
            Record::Session(s) => {
                body.put_u8(SESSION);
                put_session(&mut body, s);
            }
            Record::SessionEnd { client_id } => {
                body.put_u8(SESSION_END);
                put_str(&mut body, client_id);
            }
            Record::Message { id, message } => {
                body.put_u8(MESSAGE);
                body.put_u64_le(*id);
                body.put_slice(&message.0);
            }
            Record::Name { session, client_id } => {
                body.put_u8(NAME);
                body.put_u64_le(*session);
                put_str(&mut body, client_id);
            }
            Record::Enqueue { session, id, qos, retain, subscription_ids } => {
                body.put_u8(ENQUEUE);
                body.put_u64_le(*session);
                body.put_u64_le(*id);
                body.put_u8(*qos as u8 | if *retain { 0x80 } else { 0 });
                body.put_u32_le(subscription_ids.len() as u32);
                for s in subscription_ids {
                    body.put_u32_le(*s);
                }
            }
            Record::Ack { session, id } => {
                body.put_u8(ACK);
                body.put_u64_le(*session);
                body.put_u64_le(*id);
            }
            Record::Incoming { session, packet_id, pending } => {
                body.put_u8(INCOMING);
                body.put_u64_le(*session);
                body.put_u16_le(*packet_id);
                body.put_u8(u8::from(*pending));
            }
            Record::Sent { session, id, packet_id, released } => {
                body.put_u8(SENT);
                body.put_u64_le(*session);
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
        let record = read_record(body).ok_or(Damage::Corrupt("undecodable record"))?;
        Ok((record, HEADER + len))
    }

    /// The topic a retained record sets or clears (true: clears), read without decoding the rest.
    pub fn retained_topic(raw: &RawMessage) -> Option<(String, bool)> {
        raw.topic()
    }
}

/// Reads a record's body in place: fixed fields directly, a message's bytes copied once (so that a message
/// kept does not hold the buffer it was read from), a session through its own reader.
fn read_record(body: &[u8]) -> Option<Record> {
    let (&kind, rest) = body.split_first()?;
    let mut b = rest;
    let record = match kind {
        RETAINED => Record::Retained(raw_message(&mut b)?),
        SESSION => {
            let mut b = BytesMut::from(rest);
            let session = get_session(&mut b)?;
            return b.is_empty().then_some(Record::Session(session));
        }
        SESSION_END => Record::SessionEnd { client_id: take_str(&mut b)? },
        MESSAGE => {
            let id = take_u64(&mut b)?;
            Record::Message { id, message: raw_message(&mut b)? }
        }
        NAME => {
            let session = take_u64(&mut b)?;
            Record::Name { session, client_id: take_str(&mut b)? }
        }
        ENQUEUE => {
            let (session, id) = (take_u64(&mut b)?, take_u64(&mut b)?);
            let flags = take::<1>(&mut b)?[0];
            let qos = QoS::from_u8(flags & 0x03)?;
            let n = u32::from_le_bytes(take(&mut b)?) as usize;
            let subscription_ids =
                (0..n.min(b.len() / 4)).map(|_| take(&mut b).map(u32::from_le_bytes)).collect::<Option<Vec<_>>>()?;
            Record::Enqueue { session, id, qos, retain: flags & 0x80 != 0, subscription_ids }
        }
        ACK => Record::Ack { session: take_u64(&mut b)?, id: take_u64(&mut b)? },
        INCOMING => {
            let session = take_u64(&mut b)?;
            let packet_id = u16::from_le_bytes(take(&mut b)?);
            Record::Incoming { session, packet_id, pending: take::<1>(&mut b)?[0] != 0 }
        }
        SENT => {
            let (session, id) = (take_u64(&mut b)?, take_u64(&mut b)?);
            let packet_id = u16::from_le_bytes(take(&mut b)?);
            Record::Sent { session, id, packet_id, released: take::<1>(&mut b)?[0] != 0 }
        }
        _ => return None,
    };
    b.is_empty().then_some(record)
}

fn take<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = b.split_first_chunk::<N>()?;
    *b = rest;
    Some(*head)
}

fn take_u64(b: &mut &[u8]) -> Option<u64> {
    take(b).map(u64::from_le_bytes)
}

fn take_str(b: &mut &[u8]) -> Option<String> {
    let n = u32::from_le_bytes(take(b)?) as usize;
    let s = std::str::from_utf8(b.get(..n)?).ok()?.to_owned();
    *b = &b[n..];
    Some(s)
}

fn put_session(b: &mut BytesMut, s: &StoredSession) {
    put_str(b, &s.client_id);
    match &s.username {
        Some(u) => {
            b.put_u8(1);
            put_str(b, u);
        }
        None => b.put_u8(0),
    }
    b.put_u16_le(s.listener);
    b.put_u32_le(s.expiry);
    b.put_u64_le(s.disconnected_at_ms);
    match &s.will {
        Some((will, delay)) => {
            b.put_u8(1);
            b.put_u32_le(*delay);
            put_message(b, will);
        }
        None => b.put_u8(0),
    }
    b.put_u32_le(s.subscriptions.len() as u32);
    for (filter, options, id) in &s.subscriptions {
        let subscribe = Subscribe {
            packet_id: PacketId::new(1).expect("1 is not 0"),
            filters: vec![(filter.clone(), *options)],
            properties: Properties { subscription_identifiers: id.iter().copied().collect(), ..Properties::default() },
        };
        put_packet(b, &Packet::Subscribe(subscribe));
    }
}

fn get_session(b: &mut BytesMut) -> Option<StoredSession> {
    let client_id = get_str(b)?;
    let username = match get_u8(b)? {
        0 => None,
        _ => Some(get_str(b)?),
    };
    let listener = (b.remaining() >= 2).then(|| b.get_u16_le())?;
    let expiry = get_u32(b)?;
    let disconnected_at_ms = get_u64(b)?;
    let will = match get_u8(b)? {
        0 => None,
        _ => {
            let delay = get_u32(b)?;
            Some((get_message(b)?, delay))
        }
    };
    let n = get_u32(b)? as usize;
    let mut subscriptions = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let Packet::Subscribe(mut s) = get_packet(b)? else { return None };
        let (filter, options) = s.filters.pop()?;
        subscriptions.push((filter, options, s.properties.subscription_identifiers.first().copied()));
    }
    Some(StoredSession { client_id, username, listener, expiry, disconnected_at_ms, will, subscriptions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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

    fn every_kind() -> Vec<Record> {
        let options = SubscriptionOptions { qos: QoS::ExactlyOnce, no_local: true, ..Default::default() };
        vec![
            Record::Retained(RawMessage::encode(&message("a/b", QoS::AtLeastOnce))),
            Record::Retained(RawMessage::encode(&StoredMessage {
                payload: Bytes::new(),
                properties: Properties::default(),
                ..message("a/b", QoS::AtMostOnce)
            })),
            Record::Session(StoredSession {
                client_id: "c1".into(),
                username: Some("alice".into()),
                listener: 2,
                expiry: u32::MAX,
                disconnected_at_ms: 5,
                will: Some((message("will/t", QoS::ExactlyOnce), 30)),
                subscriptions: vec![("a/#".into(), options, Some(7)), ("$share/g/x".into(), options, None)],
            }),
            Record::SessionEnd { client_id: "c1".into() },
            Record::Message { id: 42, message: RawMessage::encode(&message("q/t", QoS::ExactlyOnce)) },
            Record::Message {
                id: 43,
                message: RawMessage::encode(&StoredMessage {
                    properties: Properties::default(),
                    ..message("q/u", QoS::AtLeastOnce)
                }),
            },
            Record::Name { session: 7, client_id: "c2".into() },
            Record::Enqueue { session: 7, id: 42, qos: QoS::AtLeastOnce, retain: true, subscription_ids: vec![1, 9] },
            Record::Ack { session: 7, id: 42 },
            Record::Incoming { session: 8, packet_id: 65535, pending: true },
            Record::Sent { session: 7, id: 42, packet_id: 9, released: true },
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
            let (got, used) = Record::decode(&bytes[at..]).unwrap_or_else(|e| panic!("{expected:?}: {e:?}"));
            assert_eq!(&got, expected);
            at += used;
        }
        assert_eq!(at, bytes.len());
        // Messages read back whole, with properties (through the codec) or without (compact).
        for props in [true, false] {
            let mut m = message("x/y", QoS::ExactlyOnce);
            if !props {
                m.properties = Properties::default();
            }
            let raw = RawMessage::encode(&m);
            assert_eq!(raw.decode().as_ref(), Some(&m));
            assert_eq!(raw.topic(), Some(("x/y".to_owned(), false)));
            let (topic, payload, ..) = raw.parts(None).expect("parts");
            assert_eq!((topic.as_str(), payload), ("x/y", m.payload.clone()));
        }
    }

    #[test]
    fn a_torn_or_damaged_record_is_told_apart() {
        let mut bytes = Vec::new();
        Record::Ack { session: 1, id: 1 }.encode(&mut bytes);
        for cut in 0..bytes.len() {
            assert_eq!(Record::decode(&bytes[..cut]), Err(Damage::Torn), "cut at {cut}");
        }
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        assert_eq!(Record::decode(&bytes), Err(Damage::Corrupt("checksum mismatch")));
    }
}
