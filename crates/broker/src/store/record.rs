//! The records of the durable store and their bytes. A message without properties is kept as its expiry,
//! flags, topic and payload ([`RawMessage`], read without the MQTT codec); one with properties as the MQTT
//! 5.0 PUBLISH packet that carries it, and a subscription as the SUBSCRIBE packet that makes it, through the
//! broker's own codec. The records of a session's queue name it by a number bound to its client id by a
//! [`Record::Name`] earlier in the log, so that they are small and fixed-size.
//!
//! Framing: `[len: u32][crc32: u32][kind: u8][body]`, little-endian; `len` and the CRC cover kind and body.

mod session;

use bytes::{BufMut, Bytes, BytesMut};
use mqttd_core::{Event, Time};
use mqttd_proto::QoS;

use session::{get_event, get_session, put_event};

use super::message::{
    get_message, get_packet, get_str, get_u32, get_u64, get_u8, put_message, put_packet, put_str, raw_message,
    RawMessage, StoredMessage,
};

/// One change of durable state.
// `Session` is much larger than the rest (a will's properties), but rare; the others are what a busy
// store appends, and each is encoded at once, never kept in bulk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A retained message set, or cleared (empty payload).
    Retained(RawMessage),
    /// A change of the session registry, as `mqttd_core::Registry` decided it; replay applies it
    /// (`Registry::apply`). A session that ends takes its queue with it.
    Session(Event),
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
/// `Event::SessionSnapshot` (the layout of a whole session, as the store has always written it).
const SESSION: u8 = 2;
/// A session ended, as logs written before the registry's events say it: read as `Event::SessionEnded`.
const SESSION_END: u8 = 3;
const MESSAGE: u8 = 4;
const ENQUEUE: u8 = 5;
const ACK: u8 = 6;
const INCOMING: u8 = 7;
const SENT: u8 = 8;
const NAME: u8 = 9;
const SESSION_OPENED: u8 = 10;
const SESSION_RESUMED: u8 = 11;
const SESSION_DISCONNECTED: u8 = 12;
const SUBSCRIBED: u8 = 13;
const UNSUBSCRIBED: u8 = 14;
const WILL_FIRED: u8 = 15;
const SESSION_ENDED: u8 = 16;

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
            Record::Session(event) => put_event(&mut body, event),
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
        Record::decode_from(bytes, None)
    }

    /// [`Record::decode`] of `bytes`, which lie in `owner` when given: a message's bytes are then a
    /// slice of `owner` (no copy; they hold all of it while they live).
    pub(super) fn decode_from(bytes: &[u8], owner: Option<&Bytes>) -> Result<(Record, usize), Damage> {
        if bytes.len() < HEADER {
            return Err(Damage::Torn);
        }
        let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let Some(body) = bytes.get(HEADER..HEADER + len) else { return Err(Damage::Torn) };
        if crc32fast::hash(body) != crc {
            return Err(Damage::Corrupt("checksum mismatch"));
        }
        let record = read_record(body, owner).ok_or(Damage::Corrupt("undecodable record"))?;
        Ok((record, HEADER + len))
    }

    /// The topic a retained record sets or clears (true: clears), read without decoding the rest.
    pub fn retained_topic(raw: &RawMessage) -> Option<(String, bool)> {
        raw.topic()
    }
}

/// Reads a record's body in place: fixed fields directly, a message's bytes as a slice of `owner` or
/// copied once, a session event through its own reader.
fn read_record(body: &[u8], owner: Option<&Bytes>) -> Option<Record> {
    let (&kind, rest) = body.split_first()?;
    let mut b = rest;
    let record = match kind {
        RETAINED => Record::Retained(raw_message(&mut b, owner)?),
        SESSION | SESSION_OPENED..=SESSION_ENDED => {
            let mut b = BytesMut::from(rest);
            let event =
                if kind == SESSION { Event::SessionSnapshot(get_session(&mut b)?) } else { get_event(kind, &mut b)? };
            return b.is_empty().then_some(Record::Session(event));
        }
        SESSION_END => {
            Record::Session(Event::SessionEnded { client_id: take_str(&mut b)?.into(), at: Time::default() })
        }
        MESSAGE => {
            let id = take_u64(&mut b)?;
            Record::Message { id, message: raw_message(&mut b, owner)? }
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqttd_core::{ClientIdentity, Expiry, SessionSnapshot, Subscription};
    use mqttd_proto::{Properties, Will};

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
            Record::Retained(RawMessage::encode(&message("a/b", QoS::AtLeastOnce))),
            Record::Retained(RawMessage::encode(&StoredMessage {
                payload: Bytes::new(),
                properties: Properties::default(),
                ..message("a/b", QoS::AtMostOnce)
            })),
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
        Record::Ack { session: 1, id: 1 }.encode(&mut bytes);
        for cut in 0..bytes.len() {
            assert_eq!(Record::decode(&bytes[..cut]), Err(Damage::Torn), "cut at {cut}");
        }
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        assert_eq!(Record::decode(&bytes), Err(Damage::Corrupt("checksum mismatch")));
    }
}
