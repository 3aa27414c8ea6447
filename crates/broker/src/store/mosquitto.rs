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

mod chunks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mqttd_proto::QoS;

use super::{now_ms, RawMessage, Record, Replayed, Store, StoreError, StoredMessage};
use crate::config::Config;
pub use chunks::Bad;
use chunks::{Chunks, Client, ClientMsg, Msg, Subscription};
use mqttd_core::{ClientIdentity, Event, Expiry, SessionSnapshot, Time};

/// What every Mosquitto database starts with.
pub const MAGIC: [u8; 15] = *b"\x00\xB5\x00mosquitto db";

/// Why a Mosquitto database was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
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
    let first_start = !log.try_exists().map_err(|source| ImportError::Io { path: log.clone(), cause: source })?;
    if let Some(source) = source.filter(|_| first_start) {
        let ports: Vec<u16> = config.listeners.iter().map(|l| l.port).collect();
        let (replayed, summary) = read(&source, &ports)?;
        // Written aside and renamed: a crash during the import leaves no log, and the next start imports again.
        super::rewrite(&log, &replayed).map_err(|source| ImportError::Io { path: log.clone(), cause: source })?;
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
        Err(source) => Err(ImportError::Io { path: path.to_path_buf(), cause: source }),
    }
}

/// Reads the Mosquitto database at `path`; `listener_ports[i]` is the port of listener `i` (a session is
/// kept on the listener of the port Mosquitto recorded, else on the first).
pub fn read(path: &Path, listener_ports: &[u16]) -> Result<(Replayed, Summary), ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io { path: path.to_path_buf(), cause: source })?;
    parse(&bytes, now_ms(), listener_ports).map_err(|Bad { offset, why }| ImportError::Unreadable {
        path: path.to_path_buf(),
        offset: offset as u64,
        why,
    })
}

/// Parses a whole database as of `now_ms` into the records it stands for.
pub fn parse(bytes: &[u8], now_ms: u64, listener_ports: &[u16]) -> Result<(Replayed, Summary), Bad> {
    Ok(replay(chunks::read(bytes)?, now_ms, listener_ports))
}

/// The state the chunks stand for, through the records mqttd's own log would hold for it.
fn replay(chunks: Chunks, now_ms: u64, listener_ports: &[u16]) -> (Replayed, Summary) {
    let mut summary = Summary { ignored: chunks.unknown, ..Summary::default() };
    let mut replayed = Replayed::default();
    let live = |m: &Msg| m.expiry_s <= 0 || m.message.expires_at_ms > now_ms;
    for id in &chunks.retained {
        // Not found: expired when Mosquitto saved it (Mosquitto skips these too).
        let Some(m) = chunks.messages.get(id) else { continue };
        if !live(m) || m.message.payload.is_empty() {
            summary.expired += usize::from(!live(m));
            continue;
        }
        summary.retained += 1;
        replayed.apply(Record::Retained(RawMessage::encode(&StoredMessage { retain: true, ..m.message.clone() })));
    }
    let sessions = sessions(chunks.clients, chunks.subs, now_ms, listener_ports, &mut summary);
    summary.sessions = sessions.len();
    summary.subscriptions = sessions.values().map(|s| s.subscriptions.len()).sum();
    let mut clients: Vec<&String> = sessions.keys().collect();
    clients.sort();
    for client_id in clients {
        replayed.apply(Record::Session(Event::SessionSnapshot(sessions[client_id].clone())));
    }
    for m in chunks.client_msgs {
        if !sessions.contains_key(&m.client_id) {
            summary.ignored += 1;
            continue;
        }
        if !m.outgoing {
            summary.incoming += 1;
            continue;
        }
        let Some(stored) = chunks.messages.get(&m.store_id).filter(|s| live(s)) else {
            summary.expired += 1;
            continue;
        };
        summary.queued += 1;
        queue(&mut replayed, m, &stored.message);
    }
    (replayed, summary)
}

/// The sessions still live, with their subscriptions (Mosquitto saves only those of clients whose session
/// outlives their connection).
fn sessions(
    clients: Vec<Client>,
    subs: Vec<Subscription>,
    now_ms: u64,
    listener_ports: &[u16],
    summary: &mut Summary,
) -> HashMap<String, SessionSnapshot> {
    let mut sessions: HashMap<String, SessionSnapshot> = HashMap::new();
    for client in clients {
        let Some((expiry, disconnected_at_ms)) = session_clock(&client, now_ms) else {
            summary.expired += 1;
            continue;
        };
        let listener = listener_ports.iter().position(|&p| p == client.port && p != 0).unwrap_or(0);
        let identity = ClientIdentity {
            client_id: client.client_id.as_str().into(),
            username: client.username.map(Into::into),
            listener: u16::try_from(listener).unwrap_or(0),
        };
        // Connected when Mosquitto stopped: disconnected at this start (`Registry::restart`).
        let disconnected_at = Some(disconnected_at_ms).filter(|&ms| ms != 0).map(Time::from_millis);
        let session = SessionSnapshot {
            identity,
            owner: if disconnected_at.is_none() { mqttd_core::STALE_CONNECTION } else { 0 },
            expiry: Expiry::from_v5(expiry),
            will: None,
            disconnected_at,
            subscriptions: Vec::new(),
        };
        sessions.insert(client.client_id, session);
    }
    for (client_id, filter, options, identifier) in subs {
        let Some(session) = sessions.get_mut(&client_id) else {
            summary.ignored += 1;
            continue;
        };
        session.subscriptions.retain(|(f, _)| *f != filter);
        session.subscriptions.push((filter, mqttd_core::Subscription { options, identifier }));
    }
    sessions
}

/// Appends the records of an outgoing client message: the message (stored once), its enqueue, and the
/// packet id it was sent with if it was in flight.
fn queue(replayed: &mut Replayed, m: ClientMsg, message: &StoredMessage) {
    if !replayed.messages.contains_key(&m.store_id) {
        replayed.apply(Record::Message { id: m.store_id, message: RawMessage::encode(message) });
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
    let session = replayed.name(&client_id);
    replayed.apply(Record::Enqueue { session, id, qos, retain, subscription_ids });
    if let Some(released) = sent.filter(|_| m.packet_id != 0 && qos != QoS::AtMostOnce) {
        // Resent with DUP and the same packet id after the restart [MQTT-4.4.0-1].
        replayed.apply(Record::Sent { session, id, packet_id: m.packet_id, released });
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
#[cfg(test)]
mod tests;
