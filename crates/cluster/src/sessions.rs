//! Sessions in a JetStream KV bucket (`<name>_sessions`, one key per client id): each value is the
//! session ([`SessionRecord`]) with the node that owns it and an epoch counting owners. A connecting
//! client's node takes the key over by compare-and-set on its revision; every node watches the bucket
//! and ends its own copy when another node took one over. All of this node's writes go through one task,
//! in order; a write is a compare-and-set on the revision this node last wrote, so a node that lost a
//! session never overwrites its new owner.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::kv::{Operation, Store};
use async_nats::Client;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use mqttd_core::cluster::{Node, SessionRecord};
use mqttd_proto::{QoS, RetainHandling, SubscriptionOptions};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::{envelope, subject, Error, Options};

/// What the session task is asked to do.
#[derive(Debug)]
pub enum Command {
    Claim { client_id: String, clean_start: bool, reply: oneshot::Sender<Option<SessionRecord>> },
    Changed(SessionRecord),
    Ended(String),
}

/// A session as the bucket holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub owner: u64,
    pub epoch: u64,
    pub record: SessionRecord,
}

/// Keys this node owns, with the revision it last wrote: shared by the writing task (which adds and
/// updates them) and the watching task (which tells stale news from a takeover by another node).
type Owned = Arc<Mutex<HashMap<String, u64>>>;

/// Tries of a claim before giving up (each lost only to another node's write meanwhile).
const CLAIM_TRIES: usize = 8;

pub struct Sessions {
    store: Store,
    node: u64,
    owned: Owned,
}

impl Sessions {
    pub async fn open(client: &Client, options: &Options, node: u64) -> Result<Sessions, Error> {
        let store =
            crate::retained::open_bucket(client, options, "sessions", "mqttd sessions, one per client id").await?;
        Ok(Sessions { store, node, owned: Arc::default() })
    }

    /// Starts the task that watches the bucket for sessions other nodes take from this one.
    pub async fn watch(&self, node: Arc<dyn Node>) -> Result<(), Error> {
        let mut watch = self
            .store
            .watch_all()
            .await
            .map_err(|e| Error::Bucket { bucket: self.store.name.clone(), reason: e.to_string() })?;
        let (owned, me) = (self.owned.clone(), self.node);
        tokio::spawn(async move {
            while let Some(entry) = watch.next().await {
                let Ok(entry) = entry else { continue };
                if entry.operation != Operation::Put {
                    continue;
                }
                let Some(stored) = decode(&entry.value) else { continue };
                if stored.owner == me {
                    continue;
                }
                {
                    let mut owned = owned.lock();
                    // This node claimed the key again after that write: old news.
                    if owned.get(&entry.key).is_some_and(|&rev| rev > entry.revision) {
                        continue;
                    }
                    owned.remove(&entry.key);
                }
                node.clone().session_moved(stored.record.client_id);
            }
            tracing::error!("cluster: sessions bucket watch ended: takeovers by other nodes go unnoticed");
        });
        Ok(())
    }

    /// Handles this node's session commands in order.
    pub async fn task(self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(command) = commands.recv().await {
            match command {
                Command::Claim { client_id, clean_start, reply } => {
                    let _ = reply.send(self.claim(&client_id, clean_start).await);
                }
                Command::Changed(record) => self.changed(record).await,
                Command::Ended(client_id) => {
                    let key = key(&client_id);
                    let revision = self.owned.lock().remove(&key);
                    if let Some(revision) = revision {
                        if let Err(e) = self.store.delete_expect_revision(&key, Some(revision)).await {
                            tracing::debug!(%client_id, "cluster: session end not written (taken over?): {e}");
                        }
                    }
                }
            }
        }
    }

    /// Takes the key of `client_id` over; the session another node held, to resume, unless `clean_start`.
    async fn claim(&self, client_id: &str, clean_start: bool) -> Option<SessionRecord> {
        let key = key(client_id);
        for _ in 0..CLAIM_TRIES {
            let entry = match self.store.entry(&key).await {
                Ok(entry) => entry.filter(|e| e.operation == Operation::Put),
                Err(e) => {
                    tracing::warn!(%client_id, "cluster: cannot read the session: {e}");
                    return None;
                }
            };
            let previous = entry.as_ref().and_then(|e| decode(&e.value));
            let resumed = previous.clone().filter(|p| p.owner != self.node && !clean_start && alive(&p.record));
            let record = match &resumed {
                Some(p) => SessionRecord { disconnected_at_ms: 0, ..p.record.clone() },
                None => SessionRecord { client_id: client_id.to_owned(), ..SessionRecord::default() },
            };
            let stored = Stored { owner: self.node, epoch: previous.map_or(1, |p| p.epoch + 1), record };
            let value = encode(&stored);
            let written = match &entry {
                Some(e) => self.store.update(&key, value, e.revision).await.map_err(|e| e.to_string()),
                None => self.store.create(&key, value).await.map_err(|e| e.to_string()),
            };
            match written {
                Ok(revision) => {
                    self.owned.lock().insert(key, revision);
                    return resumed.map(|p| p.record);
                }
                Err(e) => tracing::debug!(%client_id, "cluster: claim lost a race, again: {e}"),
            }
        }
        tracing::warn!(%client_id, "cluster: could not take the session over; serving it here anyway");
        None
    }

    /// Writes a session this node owns; a node that lost it writes nothing.
    async fn changed(&self, record: SessionRecord) {
        let key = key(&record.client_id);
        let Some(revision) = self.owned.lock().get(&key).copied() else { return };
        let epoch = match self.store.entry(&key).await {
            Ok(Some(entry)) if entry.revision == revision => decode(&entry.value).map_or(1, |s| s.epoch),
            // Written by another node meanwhile: not ours any more.
            _ => return,
        };
        let value = encode(&Stored { owner: self.node, epoch, record });
        match self.store.update(&key, value, revision).await {
            Ok(revision) => {
                self.owned.lock().insert(key, revision);
            }
            Err(e) => tracing::debug!("cluster: session change not written (taken over?): {e}"),
        }
    }
}

/// Whether a session held by the bucket has not expired: connected, or disconnected for less than its
/// Session Expiry Interval.
fn alive(record: &SessionRecord) -> bool {
    match (record.expiry, record.disconnected_at_ms) {
        (0, 0) => false,
        (_, 0) | (u32::MAX, _) => true,
        (expiry, at) => envelope::now_ms() < at + u64::from(expiry) * 1000,
    }
}

/// The key of a client id (any UTF-8 string: escaped as one topic level).
pub fn key(client_id: &str) -> String {
    format!("c.{}", subject::token(client_id))
}

const FORMAT: u8 = 1;

pub fn encode(stored: &Stored) -> Bytes {
    let r = &stored.record;
    let mut buf = BytesMut::with_capacity(64 + r.client_id.len());
    buf.put_u8(FORMAT);
    buf.put_u64_le(stored.owner);
    buf.put_u64_le(stored.epoch);
    buf.put_u32_le(r.expiry);
    buf.put_u64_le(r.disconnected_at_ms);
    put_str(&mut buf, &r.client_id);
    match &r.username {
        Some(name) => {
            buf.put_u8(1);
            put_str(&mut buf, name);
        }
        None => buf.put_u8(0),
    }
    buf.put_u32_le(r.subscriptions.len() as u32);
    for (filter, options, id) in &r.subscriptions {
        put_str(&mut buf, filter);
        let flags = options.qos as u8
            | u8::from(options.no_local) << 2
            | u8::from(options.retain_as_published) << 3
            | (options.retain_handling as u8) << 4;
        buf.put_u8(flags);
        buf.put_u32_le(id.unwrap_or(0));
    }
    buf.freeze()
}

pub fn decode(mut bytes: &[u8]) -> Option<Stored> {
    if bytes.len() < 29 || bytes.get_u8() != FORMAT {
        return None;
    }
    let owner = bytes.get_u64_le();
    let epoch = bytes.get_u64_le();
    let expiry = bytes.get_u32_le();
    let disconnected_at_ms = bytes.get_u64_le();
    let client_id = get_str(&mut bytes)?;
    let username = match get_u8(&mut bytes)? {
        0 => None,
        _ => Some(get_str(&mut bytes)?),
    };
    let count = get_u32(&mut bytes)? as usize;
    // Each takes at least 7 bytes: a count larger than what is left is damage, not an allocation.
    if count > bytes.len() / 7 {
        return None;
    }
    let mut subscriptions = Vec::with_capacity(count);
    for _ in 0..count {
        let filter = get_str(&mut bytes)?;
        let flags = get_u8(&mut bytes)?;
        let id = get_u32(&mut bytes)?;
        let options = SubscriptionOptions {
            qos: QoS::from_u8(flags & 3)?,
            no_local: flags & 4 != 0,
            retain_as_published: flags & 8 != 0,
            retain_handling: match flags >> 4 {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                _ => RetainHandling::DoNotSend,
            },
        };
        subscriptions.push((filter, options, (id != 0).then_some(id)));
    }
    let record = SessionRecord { client_id, username, expiry, disconnected_at_ms, subscriptions };
    Some(Stored { owner, epoch, record })
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32_le(s.len() as u32);
    buf.put_slice(s.as_bytes());
}

fn get_u8(bytes: &mut &[u8]) -> Option<u8> {
    (!bytes.is_empty()).then(|| bytes.get_u8())
}

fn get_u32(bytes: &mut &[u8]) -> Option<u32> {
    (bytes.len() >= 4).then(|| bytes.get_u32_le())
}

fn get_str(bytes: &mut &[u8]) -> Option<String> {
    let len = get_u32(bytes)? as usize;
    if bytes.len() < len {
        return None;
    }
    let (s, rest) = bytes.split_at(len);
    *bytes = rest;
    String::from_utf8(s.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_comes_back_from_its_bytes_and_damage_decodes_to_nothing() {
        let options = SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: false,
            retain_handling: RetainHandling::SendIfNew,
        };
        let record = SessionRecord {
            client_id: "c é".into(),
            username: Some("u".into()),
            expiry: 300,
            disconnected_at_ms: 17,
            subscriptions: vec![("a/#".into(), options, Some(9)), ("b".into(), SubscriptionOptions::default(), None)],
        };
        let stored = Stored { owner: 5, epoch: 2, record };
        let bytes = encode(&stored);
        assert_eq!(decode(&bytes), Some(stored));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_session_is_alive_while_connected_or_within_its_expiry() {
        let record = |expiry, disconnected_at_ms| SessionRecord { expiry, disconnected_at_ms, ..Default::default() };
        assert!(alive(&record(10, 0)));
        assert!(!alive(&record(0, 0)), "a clean session has nothing to resume");
        assert!(alive(&record(u32::MAX, 1)));
        assert!(alive(&record(60, envelope::now_ms())));
        assert!(!alive(&record(60, envelope::now_ms() - 61_000)));
    }
}
