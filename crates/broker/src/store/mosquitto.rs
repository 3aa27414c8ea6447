//! Moving from Mosquitto: on the first start with `persistence true`, the `mosquitto.db` that Mosquitto
//! 1.6 or 2.0 wrote (database format 5 or 6) is read into [`Replayed`], written as mqttd's own log, and
//! left untouched. Retained messages, persistent sessions with their subscriptions, and the messages
//! queued or in flight to them carry over.
//!
//! The format, as Mosquitto's `persist_read*.c`/`persist_write*.c` define it: a 15-byte magic, a CRC (always
//! 0, unchecked), the format version (u32), then chunks `[kind: u32][length: u32][body]`. Integers are
//! big-endian except the 64-bit ones (message ids, times), which are in the writer's byte order (little-endian
//! on every platform Debian ships Mosquitto for). Each chunk body starts with a C struct written as is, so
//! its size includes padding. Message and client-message chunks end with MQTT 5 properties, with their
//! length as in a PUBLISH.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use mqttd_proto::{decode, Limits, Packet, ProtocolVersion, QoS, SubscriptionOptions};

use super::{now_ms, Record, Replayed, Store, StoreError, StoredMessage, StoredSession};
use crate::config::Config;

/// What every Mosquitto database starts with.
pub const MAGIC: [u8; 15] = *b"\x00\xB5\x00mosquitto db";

/// Why a Mosquitto database was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot import this Mosquitto database: {why} at byte {offset}")]
    Unreadable { path: PathBuf, offset: u64, why: String },
    #[error(
        "{path} is a Mosquitto database and mqttd's own store would have the same name: set \
         `persistence_file` to another name (the Mosquitto file is then imported from `persistence_location`)"
    )]
    SameName { path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import carried over and what it left out, for the log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub retained: usize,
    pub sessions: usize,
    pub subscriptions: usize,
    pub queued: usize,
    /// Messages past their Message Expiry Interval, and sessions past their expiry or ending with their
    /// connection (Session Expiry Interval 0): Mosquitto would drop them too.
    pub expired: usize,
    /// Incoming QoS 2 messages awaiting PUBREL: Mosquitto routes them at PUBREL, mqttd at PUBLISH; not
    /// carried over (the client's PUBREL is answered, the message is not delivered).
    pub incoming: usize,
    /// Subscriptions or client messages of a client without a session chunk, and unknown chunks.
    pub ignored: usize,
}

/// Opens the durable store for `config`. On the first start (mqttd's log does not exist yet) a Mosquitto
/// database at the configured place (`persistence_file` if it is one, else `mosquitto.db` in
/// `persistence_location`) is imported first; mqttd's log is then `mqttd.db` beside it if
/// `persistence_file` named the Mosquitto file.
pub fn open(config: &Config) -> Result<(Arc<Store>, Replayed), ImportError> {
    let configured = config.store_path();
    let location = config.persistence_location.clone().unwrap_or_default();
    let (log, source) = if is_mosquitto(&configured)? {
        let log = configured.with_file_name("mqttd.db");
        if log == configured {
            return Err(ImportError::SameName { path: configured });
        }
        (log, Some(configured))
    } else {
        let candidate = location.join("mosquitto.db");
        (configured, is_mosquitto(&candidate)?.then_some(candidate))
    };
    let first_start = !log.try_exists().map_err(|source| ImportError::Io { path: log.clone(), source })?;
    if let Some(source) = source.filter(|_| first_start) {
        let ports: Vec<u16> = config.listeners.iter().map(|l| l.port).collect();
        let (replayed, summary) = read(&source, &ports)?;
        // Written aside and renamed: a crash during the import leaves no log, and the next start imports again.
        super::rewrite(&log, &replayed).map_err(|source| ImportError::Io { path: log.clone(), source })?;
        tracing::info!(
            "imported {} into {} (left unchanged): {} retained messages, {} sessions with {} subscriptions, \
             {} queued messages; not imported: {} expired, {} incoming QoS 2 messages awaiting PUBREL, {} ignored",
            source.display(),
            log.display(),
            summary.retained,
            summary.sessions,
            summary.subscriptions,
            summary.queued,
            summary.expired,
            summary.incoming,
            summary.ignored,
        );
    }
    Ok(Store::open(&log, config.recover)?)
}

/// Whether the file at `path` exists and starts with Mosquitto's magic.
pub fn is_mosquitto(path: &Path) -> Result<bool, ImportError> {
    use std::io::Read;
    let mut start = [0; MAGIC.len()];
    match std::fs::File::open(path) {
        Ok(f) => Ok(f.take(MAGIC.len() as u64).read_exact(&mut start).is_ok() && start == MAGIC),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ImportError::Io { path: path.to_path_buf(), source }),
    }
}

/// Reads the Mosquitto database at `path`; `listener_ports[i]` is the port of listener `i` (a session is
/// kept on the listener of the port Mosquitto recorded, else on the first).
pub fn read(path: &Path, listener_ports: &[u16]) -> Result<(Replayed, Summary), ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io { path: path.to_path_buf(), source })?;
    parse(&bytes, now_ms(), listener_ports).map_err(|Bad { offset, why }| ImportError::Unreadable {
        path: path.to_path_buf(),
        offset: offset as u64,
        why,
    })
}

/// Where and why the bytes are not a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub offset: usize,
    pub why: String,
}

/// A message chunk (`DB_CHUNK_MSG_STORE`).
struct Msg {
    message: StoredMessage,
    /// Expiry time in seconds since the epoch (0: none).
    expiry_s: i64,
}

/// A client chunk (`DB_CHUNK_CLIENT`): a session.
struct Client {
    expiry_time_s: i64,
    interval: u32,
    port: u16,
    client_id: String,
    username: Option<String>,
}

/// A client message chunk (`DB_CHUNK_CLIENT_MSG`): a message queued for, in flight to, or received from
/// a client.
struct ClientMsg {
    store_id: u64,
    packet_id: u16,
    qos: QoS,
    state: u8,
    retain: bool,
    dup: bool,
    outgoing: bool,
    client_id: String,
    subscription_ids: Vec<u32>,
}

/// The chunks of a database, in file order.
#[derive(Default)]
struct Chunks {
    messages: HashMap<u64, Msg>,
    clients: Vec<Client>,
    client_msgs: Vec<ClientMsg>,
    subs: Vec<(String, String, SubscriptionOptions, Option<u32>)>,
    retained: Vec<u64>,
    unknown: usize,
}

const CFG: u32 = 1;
const MSG_STORE: u32 = 2;
const CLIENT_MSG: u32 = 3;
const RETAIN: u32 = 4;
const SUB: u32 = 5;
const CLIENT: u32 = 6;

/// Parses a whole database as of `now_ms` into the records it stands for.
pub fn parse(bytes: &[u8], now_ms: u64, listener_ports: &[u16]) -> Result<(Replayed, Summary), Bad> {
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
    Ok(chunks.into_replayed(now_ms, listener_ports))
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

fn sub(c: &mut Reader<'_>) -> Result<(String, String, SubscriptionOptions, Option<u32>), Bad> {
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

impl Chunks {
    /// The records the chunks stand for, applied in the order mqttd's own log would hold them.
    fn into_replayed(self, now_ms: u64, listener_ports: &[u16]) -> (Replayed, Summary) {
        let mut summary = Summary { ignored: self.unknown, ..Summary::default() };
        let mut replayed = Replayed::default();
        let live = |m: &Msg| m.expiry_s <= 0 || m.message.expires_at_ms > now_ms;
        for id in &self.retained {
            // Not found: expired when Mosquitto saved it (Mosquitto skips these too).
            let Some(m) = self.messages.get(id) else { continue };
            if !live(m) || m.message.payload.is_empty() {
                summary.expired += usize::from(!live(m));
                continue;
            }
            summary.retained += 1;
            replayed.apply(Record::Retained(StoredMessage { retain: true, ..m.message.clone() }));
        }
        let mut sessions: HashMap<String, StoredSession> = HashMap::new();
        for client in self.clients {
            let Some((expiry, disconnected_at_ms)) = session_clock(&client, now_ms) else {
                summary.expired += 1;
                continue;
            };
            let listener = listener_ports.iter().position(|&p| p == client.port && p != 0).unwrap_or(0);
            let session = StoredSession {
                client_id: client.client_id.clone(),
                username: client.username,
                listener: u16::try_from(listener).unwrap_or(0),
                expiry,
                disconnected_at_ms,
                will: None,
                subscriptions: Vec::new(),
            };
            sessions.insert(client.client_id, session);
        }
        for (client_id, filter, options, identifier) in self.subs {
            let Some(session) = sessions.get_mut(&client_id) else {
                summary.ignored += 1;
                continue;
            };
            session.subscriptions.retain(|(f, ..)| *f != filter);
            session.subscriptions.push((filter, options, identifier));
        }
        summary.sessions = sessions.len();
        summary.subscriptions = sessions.values().map(|s| s.subscriptions.len()).sum();
        let mut clients: Vec<&String> = sessions.keys().collect();
        clients.sort();
        for client_id in clients {
            replayed.apply(Record::Session(sessions[client_id].clone()));
        }
        for m in self.client_msgs {
            if !sessions.contains_key(&m.client_id) {
                summary.ignored += 1;
                continue;
            }
            if !m.outgoing {
                summary.incoming += 1;
                continue;
            }
            let Some(stored) = self.messages.get(&m.store_id).filter(|s| live(s)) else {
                summary.expired += 1;
                continue;
            };
            summary.queued += 1;
            queue(&mut replayed, m, &stored.message);
        }
        (replayed, summary)
    }
}

/// Appends the records of an outgoing client message: the message (stored once), its enqueue, and the
/// packet id it was sent with if it was in flight.
fn queue(replayed: &mut Replayed, m: ClientMsg, message: &StoredMessage) {
    if !replayed.messages.contains_key(&m.store_id) {
        replayed.apply(Record::Message { id: m.store_id, message: message.clone() });
    }
    let ClientMsg { store_id: id, client_id, qos, retain, subscription_ids, .. } = m;
    // Mosquitto's states (`enum mosquitto_msg_state`): 3 and 5 wait for PUBACK and PUBREC; 6 and 9 are
    // past PUBREC; 2 and 4 are to be sent, and were sent before if DUP is set (a client reconnected).
    let sent = match m.state {
        3 | 5 => Some(false),
        2 | 4 if m.dup => Some(false),
        6 | 9 => Some(true),
        _ => None,
    };
    replayed.apply(Record::Enqueue { client_id: client_id.clone(), id, qos, retain, subscription_ids });
    if let Some(released) = sent.filter(|_| m.packet_id != 0 && qos != QoS::AtMostOnce) {
        // Resent with DUP and the same packet id after the restart [MQTT-4.4.0-1].
        replayed.apply(Record::Sent { client_id, id, packet_id: m.packet_id, released });
    }
}

/// A client's Session Expiry Interval and disconnect time as mqttd stores them; `None` if the session
/// has ended: it ends with its connection (interval 0), or its expiry time has passed.
fn session_clock(client: &Client, now_ms: u64) -> Option<(u32, u64)> {
    if client.interval == 0 {
        return None;
    }
    // Mosquitto sets the expiry time when a client disconnects (and only if it expires): 0 for a client
    // connected when Mosquitto stopped, whose expiry then counts from this start.
    let Ok(deadline_ms) = u64::try_from(client.expiry_time_s).map(|s| s.saturating_mul(1000)) else {
        return Some((client.interval, 0));
    };
    if deadline_ms == 0 {
        return Some((client.interval, 0));
    }
    if deadline_ms <= now_ms {
        return None;
    }
    if client.interval == u32::MAX {
        // A global `persistent_client_expiration` gave a session that never expires a deadline.
        let left = ((deadline_ms - now_ms) / 1000).clamp(1, u64::from(u32::MAX - 1));
        return Some((left as u32, now_ms.max(1)));
    }
    Some((client.interval, deadline_ms.saturating_sub(u64::from(client.interval) * 1000).max(1)))
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

#[cfg(test)]
#[path = "mosquitto_tests.rs"]
mod tests;
