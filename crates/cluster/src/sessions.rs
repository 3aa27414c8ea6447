//! Sessions in a JetStream KV bucket (`<name>_sessions`, one key per client id; the value: `record.rs`).
//! A connecting client's node takes the key over by compare-and-set on its revision; every node watches
//! the bucket and ends its own copy when another node took one over. This node's writes go through one
//! task, in order, each a compare-and-set on the revision it last wrote, so a node that lost a session
//! never overwrites its new owner.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_nats::jetstream::kv::{Operation, Store};
use mqttd_core::cluster::{Node, SessionRecord};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::record::{self, alive, will_delay, will_message, Stored};
use crate::wills::Wills;
use crate::{envelope, subject, Error};

/// What the session task is asked to do.
#[derive(Debug)]
pub enum Command {
    Claim { client_id: String, clean_start: bool, reply: oneshot::Sender<Option<SessionRecord>> },
    Changed(Box<SessionRecord>),
    Ended(String),
}

/// A key this node owns: the revision it last wrote, the epoch of its claim.
#[derive(Debug, Clone, Copy)]
pub struct Own {
    pub revision: u64,
    pub epoch: u64,
}

/// Will epochs remembered for sessions lost to another node (their connection here may still fire the
/// will); forgotten all at once past this many (the will then goes out under epoch 0: still once per node).
const LOST: usize = 4096;
/// Tries of a claim before giving up (lost to another node's write meanwhile, or JetStream electing a
/// leader), with a growing pause between them: about 8 s in all.
const CLAIM_TRIES: usize = 20;
/// How long a session change is retried while JetStream cannot take it.
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// What the session task, the bucket watch and the failover share.
pub struct Shared {
    pub store: Store,
    pub node: u64,
    pub owned: Mutex<HashMap<String, Own>>,
    /// Keys claimed from dead nodes whose sessions the local broker does not hold: a client that comes
    /// back to this node resumes them from the bucket.
    pub adopted: Mutex<HashSet<String>>,
    lost: Mutex<HashMap<String, u64>>,
    pub wills: Arc<Wills>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("node", &self.node).field("owned", &self.owned.lock().len()).finish()
    }
}

impl Shared {
    pub fn new(store: Store, node: u64, wills: Arc<Wills>) -> Arc<Shared> {
        Arc::new(Shared {
            store,
            node,
            owned: Mutex::default(),
            adopted: Mutex::default(),
            lost: Mutex::default(),
            wills,
        })
    }

    /// Publishes the will of `client_id`'s connection on this node (once in the cluster).
    pub fn publish_will(&self, client_id: &str, message: std::sync::Arc<mqttd_core::Message>) {
        let key = key(client_id);
        let owned = self.owned.lock().get(&key).map(|o| o.epoch);
        let epoch = owned.or_else(|| self.lost.lock().remove(&key)).unwrap_or(0);
        self.wills.publish(client_id, epoch, message);
    }
}

/// Starts the task that watches the bucket for sessions other nodes take from this one.
pub async fn watch(shared: &Arc<Shared>, node: Arc<dyn Node>) -> Result<(), Error> {
    let bucket = shared.store.name.clone();
    let watch = shared.store.watch_all().await.map_err(|e| Error::Bucket { bucket, reason: e.to_string() })?;
    let (store, shared) = (shared.store.clone(), shared.clone());
    tokio::spawn(crate::watch::follow(store, watch, 0, "sessions bucket", move |entry| {
        if entry.operation != Operation::Put {
            return;
        }
        let Some(stored) = record::decode(&entry.value) else { return };
        if stored.owner == shared.node {
            return;
        }
        {
            let mut owned = shared.owned.lock();
            // This node claimed the key again after that write: old news.
            if owned.get(&entry.key).is_some_and(|o| o.revision > entry.revision) {
                return;
            }
            if let Some(own) = owned.remove(&entry.key) {
                let mut lost = shared.lost.lock();
                if lost.len() >= LOST {
                    lost.clear();
                }
                lost.insert(entry.key.clone(), own.epoch);
            }
        }
        shared.adopted.lock().remove(&entry.key);
        node.clone().session_moved(stored.record.client_id);
    }));
    Ok(())
}

/// Handles this node's session commands in order.
pub async fn task(shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<Command>) {
    while let Some(command) = commands.recv().await {
        match command {
            Command::Claim { client_id, clean_start, reply } => {
                let _ = reply.send(claim(&shared, &client_id, clean_start).await);
            }
            Command::Changed(record) => changed(&shared, *record).await,
            Command::Ended(client_id) => {
                let key = key(&client_id);
                let own = shared.owned.lock().remove(&key);
                if let Some(own) = own {
                    if let Err(e) = shared.store.delete_expect_revision(&key, Some(own.revision)).await {
                        tracing::debug!(%client_id, "cluster: session end not written (taken over?): {e}");
                    }
                }
            }
        }
    }
}

/// Takes the key of `client_id` over; the session another node held, to resume, unless `clean_start`.
/// The will of that session's connection goes out unless the session continues and the will waits for
/// a delay [MQTT-3.1.3-9] (its node, if alive, fires it too: once in all).
async fn claim(shared: &Shared, client_id: &str, clean_start: bool) -> Option<SessionRecord> {
    let key = key(client_id);
    for try_number in 0..CLAIM_TRIES {
        let entry = match shared.store.entry(&key).await {
            Ok(entry) => entry.filter(|e| e.operation == Operation::Put),
            Err(e) => {
                tracing::warn!(%client_id, "cluster: cannot read the session: {e}");
                return None;
            }
        };
        let previous = entry.as_ref().and_then(|e| record::decode(&e.value));
        let adopted = shared.adopted.lock().contains(&key);
        let now = envelope::now_ms();
        let theirs = previous.clone().filter(|p| p.owner != shared.node || adopted);
        let resumed = theirs.clone().filter(|p| !clean_start && alive(&p.record, now));
        let record = match &resumed {
            Some(p) => SessionRecord { disconnected_at_ms: 0, will: None, ..p.record.clone() },
            None => SessionRecord { client_id: client_id.to_owned(), ..SessionRecord::default() },
        };
        let epoch = previous.as_ref().map_or(1, |p| p.epoch + 1);
        let value = record::encode(&Stored { owner: shared.node, epoch, will_epoch: epoch, record });
        let written = match &entry {
            Some(e) => shared.store.update(&key, value, e.revision).await.map_err(|e| e.to_string()),
            None => shared.store.create(&key, value).await.map_err(|e| e.to_string()),
        };
        match written {
            Ok(revision) => {
                shared.owned.lock().insert(key.clone(), Own { revision, epoch });
                shared.adopted.lock().remove(&key);
                if let Some(p) = theirs.as_ref().filter(|p| will_due(&p.record, now, resumed.is_some())) {
                    let will = p.record.will.as_ref().expect("a due will exists");
                    shared.wills.publish(client_id, p.will_epoch, Arc::new(will_message(will)));
                }
                return resumed.map(|p| SessionRecord { will: None, ..p.record });
            }
            Err(e) => {
                tracing::debug!(%client_id, "cluster: claim lost a race, again: {e}");
                tokio::time::sleep(std::time::Duration::from_millis((50 * try_number as u64).min(500))).await;
            }
        }
    }
    tracing::warn!(%client_id, "cluster: could not take the session over; serving it here anyway");
    None
}

/// Whether the will of a session taken from another node goes out now: its connection was still
/// there (it ended without DISCONNECT) and the session does not continue or the will has no delay; or
/// its connection had ended and the delay (or the session) has run out.
fn will_due(record: &SessionRecord, now_ms: u64, continues: bool) -> bool {
    let Some(will) = &record.will else { return false };
    let delay = will_delay(will);
    match record.disconnected_at_ms {
        0 => !continues || delay == 0,
        at => now_ms >= at + u64::from(delay) * 1000 || !alive(record, now_ms),
    }
}

/// Writes a session this node owns; a node that lost it writes nothing. Retried while JetStream cannot
/// take it (a leader election after a NATS server was lost), for a bounded time.
async fn changed(shared: &Shared, record: SessionRecord) {
    let key = key(&record.client_id);
    let Some(own) = shared.owned.lock().get(&key).copied() else { return };
    let value = record::encode(&Stored { owner: shared.node, epoch: own.epoch, will_epoch: own.epoch, record });
    let deadline = tokio::time::Instant::now() + WRITE_WAIT;
    loop {
        match shared.store.update(&key, value.clone(), own.revision).await {
            Ok(revision) => {
                if let Some(o) = shared.owned.lock().get_mut(&key).filter(|o| o.revision == own.revision) {
                    o.revision = revision;
                }
                return tracing::debug!(client_id = %client_id_of(&key), revision, "cluster: session written");
            }
            Err(e) => {
                // Written by another node meanwhile: not ours any more.
                let taken = matches!(shared.store.entry(&key).await, Ok(entry) if entry.as_ref().is_none_or(|e| e.revision != own.revision));
                if taken || tokio::time::Instant::now() > deadline {
                    return tracing::debug!("cluster: session change not written: {e}");
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// The client id of a key, for logs.
fn client_id_of(key: &str) -> String {
    key.strip_prefix("c.").and_then(|t| subject::key_topic(&format!("t.{t}"))).unwrap_or_default()
}

/// The key of a client id (any UTF-8 string: escaped as one topic level).
pub fn key(client_id: &str) -> String {
    format!("c.{}", subject::token(client_id))
}
