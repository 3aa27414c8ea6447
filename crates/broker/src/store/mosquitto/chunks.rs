//! The chunks of a Mosquitto database, read from its bytes: every read bounded by the end of the file or of
//! its chunk, every length checked against what is there.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use mqttd_proto::{decode, Limits, Packet, ProtocolVersion, QoS, SubscriptionOptions};

use super::MAGIC;
use crate::store::StoredMessage;

/// Where and why the bytes are not a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub offset: usize,
    pub why: String,
}

/// A message chunk (`DB_CHUNK_MSG_STORE`).
pub(super) struct Msg {
    pub(super) message: StoredMessage,
    /// Expiry time in seconds since the epoch (0: none).
    pub(super) expiry_s: i64,
}

/// A client chunk (`DB_CHUNK_CLIENT`): a session.
pub(super) struct Client {
    pub(super) expiry_time_s: i64,
    pub(super) interval: u32,
    pub(super) port: u16,
    pub(super) client_id: String,
    pub(super) username: Option<String>,
}

/// A client message chunk (`DB_CHUNK_CLIENT_MSG`): a message queued for, in flight to, or received from
/// a client.
pub(super) struct ClientMsg {
    pub(super) store_id: u64,
    pub(super) packet_id: u16,
    pub(super) qos: QoS,
    pub(super) state: u8,
    pub(super) retain: bool,
    pub(super) dup: bool,
    pub(super) outgoing: bool,
    pub(super) client_id: String,
    pub(super) subscription_ids: Vec<u32>,
}

/// A subscription chunk (`DB_CHUNK_SUB`): client id, filter, options, identifier.
pub(super) type Subscription = (String, String, SubscriptionOptions, Option<u32>);

/// The chunks of a database, in file order.
#[derive(Default)]
pub(super) struct Chunks {
    pub(super) messages: HashMap<u64, Msg>,
    pub(super) clients: Vec<Client>,
    pub(super) client_msgs: Vec<ClientMsg>,
    pub(super) subs: Vec<Subscription>,
    pub(super) retained: Vec<u64>,
    pub(super) unknown: usize,
}

pub(super) const CFG: u32 = 1;
pub(super) const MSG_STORE: u32 = 2;
pub(super) const CLIENT_MSG: u32 = 3;
pub(super) const RETAIN: u32 = 4;
pub(super) const SUB: u32 = 5;
pub(super) const CLIENT: u32 = 6;

/// Reads the header and every chunk of a database.
pub(super) fn read(bytes: &[u8]) -> Result<Chunks, Bad> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(Bad { offset: 0, why: "not a Mosquitto database".into() });
    }
    r.take(4)?; // CRC: written as 0, never checked
    let version_at = r.at;
    let version = r.u32()?;
    if version != 5 && version != 6 {
        let why = format!("database format {version} (mqttd reads 5 and 6: Mosquitto 1.6 and 2.x)");
        return Err(Bad { offset: version_at, why });
    }
    let mut chunks = Chunks::default();
    while r.at < bytes.len() {
        let kind = r.u32()?;
        let len = r.u32()? as usize;
        let start = r.at;
        let body = r.take(len)?;
        let mut c = Reader { bytes: &bytes[..start + body.len()], at: start };
        match kind {
            CFG => {
                c.take(8)?; // last message id: mqttd numbers on from the largest it imports
                c.u8()?; // whether it was written at shutdown
                if c.u8()? != 8 {
                    return Err(Bad { offset: c.at - 1, why: "message ids are not 8 bytes".into() });
                }
                c.rest();
            }
            MSG_STORE => {
                let (id, msg) = msg_store(&mut c)?;
                chunks.messages.insert(id, msg);
            }
            CLIENT_MSG => chunks.client_msgs.push(client_msg(&mut c)?),
            RETAIN => chunks.retained.push(c.u64_native()?),
            SUB => chunks.subs.push(sub(&mut c)?),
            CLIENT => chunks.clients.push(client(&mut c, version)?),
            _ => {
                chunks.unknown += 1;
                c.rest();
            }
        }
        if c.at != start + len {
            return Err(Bad { offset: c.at, why: format!("chunk of kind {kind} longer than its fields") });
        }
    }
    Ok(chunks)
}

fn msg_store(c: &mut Reader<'_>) -> Result<(u64, Msg), Bad> {
    let id = c.u64_native()?;
    let expiry_s = c.i64_native()?;
    let payload_len = c.u32()? as usize;
    c.u16()?; // the packet id it came with
    let source_id_len = c.u16()? as usize;
    let source_username_len = c.u16()? as usize;
    let topic_len = c.u16()? as usize;
    c.u16()?; // the port it came in on
    let qos_at = c.at;
    let qos = QoS::from_u8(c.u8()?).ok_or_else(|| Bad { offset: qos_at, why: "QoS above 2".into() })?;
    let retain = c.u8()? != 0;
    c.take(source_id_len + source_username_len)?; // who published it: not kept
    let topic_at = c.at;
    let topic = c.take(topic_len)?;
    let payload = c.take(payload_len)?;
    let properties = c.rest();
    let publish = as_publish(topic, properties, payload)
        .ok_or_else(|| Bad { offset: topic_at, why: "message topic, payload or properties undecodable".into() })?;
    let expires_at_ms = u64::try_from(expiry_s).map_or(0, |s| s.saturating_mul(1000));
    let message = StoredMessage {
        topic: publish.topic,
        payload: publish.payload,
        qos,
        retain,
        properties: publish.properties,
        expires_at_ms,
    };
    Ok((id, Msg { message, expiry_s }))
}

fn client_msg(c: &mut Reader<'_>) -> Result<ClientMsg, Bad> {
    let store_id = c.u64_native()?;
    let packet_id = c.u16()?;
    let id_len = c.u16()? as usize;
    let qos_at = c.at;
    let qos = QoS::from_u8(c.u8()?).ok_or_else(|| Bad { offset: qos_at, why: "QoS above 2".into() })?;
    let state = c.u8()?;
    let retain_dup = c.u8()?;
    let direction = c.u8()?;
    let client_id = c.string(id_len)?;
    let props_at = c.at;
    let properties = c.rest();
    let subscription_ids = as_publish(b"x", properties, b"")
        .ok_or_else(|| Bad { offset: props_at, why: "client message properties undecodable".into() })?
        .properties
        .subscription_identifiers;
    Ok(ClientMsg {
        store_id,
        packet_id,
        qos,
        state,
        retain: retain_dup & 0xF0 != 0,
        dup: retain_dup & 0x0F != 0,
        outgoing: direction == 1,
        client_id,
        subscription_ids,
    })
}

fn sub(c: &mut Reader<'_>) -> Result<Subscription, Bad> {
    let identifier = c.u32()?;
    let id_len = c.u16()? as usize;
    let topic_len = c.u16()? as usize;
    let qos_at = c.at;
    let qos = QoS::from_u8(c.u8()?).ok_or_else(|| Bad { offset: qos_at, why: "QoS above 2".into() })?;
    // Mosquitto keeps No Local and Retain As Published; Retain Handling only acts at SUBSCRIBE.
    let options = c.u8()?;
    c.take(2)?; // padding
    let client_id = c.string(id_len)?;
    let filter_at = c.at;
    let filter = c.string(topic_len)?;
    if mqttd_proto::topic::validate_topic_filter(&filter).is_err() {
        return Err(Bad { offset: filter_at, why: format!("invalid topic filter {filter:?}") });
    }
    let options = SubscriptionOptions {
        qos,
        no_local: options & 0x04 != 0,
        retain_as_published: options & 0x08 != 0,
        ..Default::default()
    };
    Ok((client_id, filter, options, Some(identifier).filter(|&i| i != 0)))
}

fn client(c: &mut Reader<'_>, version: u32) -> Result<Client, Bad> {
    let expiry_time_s = c.i64_native()?;
    let interval = c.u32()?;
    c.u16()?; // the last packet id it used
    let id_len = c.u16()? as usize;
    // Format 6 added the listener's port and the username (and the struct grew 8 bytes, 4 of padding).
    let (port, username_len) = if version >= 6 {
        let port = c.u16()?;
        let username_len = c.u16()? as usize;
        c.take(4)?;
        (port, username_len)
    } else {
        (0, 0)
    };
    let client_id = c.string(id_len)?;
    let username = if username_len > 0 { Some(c.string(username_len)?) } else { None };
    Ok(Client { expiry_time_s, interval, port, client_id, username })
}

/// A message's topic, properties (with their length, as Mosquitto writes them; none if empty) and payload,
/// read by the broker's own codec as the PUBLISH that would carry them.
fn as_publish(topic: &[u8], properties: &[u8], payload: &[u8]) -> Option<mqttd_proto::Publish> {
    let properties: &[u8] = if properties.is_empty() { &[0] } else { properties };
    let remaining = 2 + topic.len() + properties.len() + payload.len();
    if remaining > mqttd_proto::MAX_VARINT as usize || topic.len() > usize::from(u16::MAX) {
        return None;
    }
    let mut packet = BytesMut::with_capacity(remaining + 5);
    packet.put_u8(0x30);
    let mut n = remaining;
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        packet.put_u8(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            break;
        }
    }
    packet.put_u16(topic.len() as u16);
    packet.put_slice(topic);
    packet.put_slice(properties);
    packet.put_slice(payload);
    let limits = Limits { max_packet_size: mqttd_proto::MAX_VARINT + 5 };
    match decode(&mut packet, ProtocolVersion::V5, &limits) {
        Ok(Some(Packet::Publish(p))) if packet.is_empty() => Some(p),
        _ => None,
    }
}

/// Bytes read from the front, every read bounded by the end (of the file or the chunk).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(Bad {
                offset: self.at,
                why: format!("{n} bytes expected, {} left", self.bytes.len() - self.at),
            });
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.at..];
        self.at = self.bytes.len();
        out
    }

    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Bad> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, Bad> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// A 64-bit value as Mosquitto writes it: in its own byte order, little-endian here.
    fn u64_native(&mut self) -> Result<u64, Bad> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn i64_native(&mut self) -> Result<i64, Bad> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn string(&mut self, n: usize) -> Result<String, Bad> {
        let at = self.at;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Bad { offset: at, why: "a string that is not UTF-8".into() })
    }
}
