//! Node failure. Every node writes a heartbeat into the KV bucket `<name>_nodes` (entries expire after
//! [`HEARTBEAT_TTL`]) and looks at which nodes have one. When a node it saw disappears, it races the
//! others to claim each session the dead node owned (compare-and-set on the session's revision: one
//! node wins each). The winner keeps the session in the bucket for its client to resume on any node, and
//! waits for the will's delay (or the session's end) before publishing it once (`wills.rs`) and for the
//! session's expiry before deleting it. A client that comes back first changes the session's revision,
//! which cancels both.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Operation;
use async_nats::Client;
use futures_util::StreamExt;

use crate::record::{self, alive, will_delay, will_message, Stored};
use crate::sessions::{Own, Shared};
use crate::{envelope, Error, Options};

/// How often a node writes its heartbeat and looks at the others'.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A heartbeat expires after this long; a node whose heartbeat has been gone for this long again (seen
/// from a node whose own heartbeats work) is dead.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(4);

/// Starts the heartbeat and the watch on the other nodes.
pub async fn start(client: &Client, options: &Options, shared: Arc<Shared>) -> Result<(), Error> {
    let store = open_nodes(client, options).await?;
    let me = format!("n.{:016x}", shared.node);
    // The first heartbeat, before the node serves: the buckets just created may take a moment to accept
    // writes (their stream leaders are being elected).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = store.put(&me, bytes::Bytes::new()).await {
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Bucket { bucket: store.name.clone(), reason: e.to_string() });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::spawn(async move {
        // Nodes seen, and since when each has been missing from the heartbeats.
        let mut seen: HashMap<String, Option<Instant>> = HashMap::new();
        let mut tick = tokio::time::interval(HEARTBEAT);
        loop {
            tick.tick().await;
            let looked = match store.put(&me, bytes::Bytes::new()).await {
                Ok(_) => alive_nodes(&store).await,
                Err(e) => Err(e.to_string()),
            };
            let alive = match looked {
                Ok(alive) => alive,
                Err(e) => {
                    // This node's view is not reliable (JetStream electing leaders, or out of reach):
                    // nobody counts as missing until it is again.
                    tracing::warn!("cluster: heartbeat not written or read: {e}");
                    seen.values_mut().for_each(|missing| *missing = None);
                    continue;
                }
            };
            for dead in missing_for(&mut seen, &alive, &me, HEARTBEAT_TTL) {
                let Some(node) = dead.strip_prefix("n.").and_then(|h| u64::from_str_radix(h, 16).ok()) else {
                    continue;
                };
                tracing::warn!(node = %format!("{node:016x}"), "cluster: a node stopped: claiming its sessions");
                tokio::spawn(claim_orphans(shared.clone(), node));
            }
        }
    });
    Ok(())
}

/// The nodes with a heartbeat now.
async fn alive_nodes(store: &async_nats::jetstream::kv::Store) -> Result<HashSet<String>, String> {
    let keys = store.keys().await.map_err(|e| e.to_string())?;
    let keys: Vec<Result<String, _>> = keys.collect().await;
    keys.into_iter().map(|k| k.map_err(|e| e.to_string())).collect()
}

/// Updates `seen` with the nodes `alive` now; returns those missing for `after` (then forgotten). A node
/// must be missing from several looks in a row: after JetStream recovers from an outage, the others'
/// heartbeats may all have expired at once and come back within one beat.
fn missing_for(
    seen: &mut HashMap<String, Option<Instant>>,
    alive: &HashSet<String>,
    me: &str,
    after: Duration,
) -> Vec<String> {
    let now = Instant::now();
    for node in alive.iter().filter(|n| *n != me) {
        seen.insert(node.clone(), None);
    }
    let mut dead = Vec::new();
    for (node, missing) in seen.iter_mut() {
        if alive.contains(node) {
            continue;
        }
        let since = *missing.get_or_insert(now);
        if now - since >= after {
            dead.push(node.clone());
        }
    }
    for node in &dead {
        seen.remove(node);
    }
    dead
}

async fn open_nodes(client: &Client, options: &Options) -> Result<async_nats::jetstream::kv::Store, Error> {
    let mut options = options.clone();
    options.replicas = options.replicas.max(1);
    crate::retained::open_bucket_with(client, &options, "nodes", "mqttd node heartbeats", HEARTBEAT_TTL).await
}

/// Claims every session `dead` owned that no other node claims first.
async fn claim_orphans(shared: Arc<Shared>, dead: u64) {
    let Ok(keys) = shared.store.keys().await else { return };
    let keys: Vec<String> = keys.filter_map(|k| async move { k.ok() }).collect().await;
    for key in keys {
        let Ok(Some(entry)) = shared.store.entry(&key).await else { continue };
        if entry.operation != Operation::Put {
            continue;
        }
        let Some(stored) = record::decode(&entry.value).filter(|s| s.owner == dead) else { continue };
        let mut record = stored.record.clone();
        if record.disconnected_at_ms == 0 {
            // Its connection ended with its node.
            record.disconnected_at_ms = envelope::now_ms();
        }
        let epoch = stored.epoch + 1;
        let claimed = Stored { owner: shared.node, epoch, will_epoch: stored.will_epoch, record };
        let Ok(revision) = shared.store.update(&key, record::encode(&claimed), entry.revision).await else {
            continue; // Another node was faster, or the client is back.
        };
        shared.owned.lock().insert(key.clone(), Own { revision, epoch });
        shared.adopted.lock().insert(key.clone());
        tracing::info!(client_id = %claimed.record.client_id, "cluster: session of a stopped node claimed");
        tokio::spawn(keep(shared.clone(), key, revision, claimed));
    }
}

/// Publishes the will of a claimed session when due and deletes the session when it expires, unless its
/// revision changes first (its client is back, on any node).
async fn keep(shared: Arc<Shared>, key: String, mut revision: u64, mut stored: Stored) {
    let at = stored.record.disconnected_at_ms;
    let ends = match stored.record.expiry {
        u32::MAX => None,
        expiry => Some(at + u64::from(expiry) * 1000),
    };
    if let Some(will) = stored.record.will.clone() {
        let due = at + u64::from(will_delay(&will)) * 1000;
        sleep_until_ms(ends.map_or(due, |end| due.min(end))).await;
        if !still(&shared, &key, revision).await {
            return;
        }
        shared.wills.publish(&stored.record.client_id, stored.will_epoch, Arc::new(will_message(&will)));
        stored.record.will = None;
        match shared.store.update(&key, record::encode(&stored), revision).await {
            Ok(next) => {
                revision = next;
                if let Some(own) = shared.owned.lock().get_mut(&key) {
                    own.revision = next;
                }
            }
            Err(_) => return,
        }
    }
    let Some(end) = ends else { return };
    sleep_until_ms(end).await;
    if still(&shared, &key, revision).await && !alive(&stored.record, envelope::now_ms()) {
        let _ = shared.store.delete_expect_revision(&key, Some(revision)).await;
        shared.owned.lock().remove(&key);
        shared.adopted.lock().remove(&key);
    }
}

/// Whether the session at `key` is still as this node last wrote it.
async fn still(shared: &Shared, key: &str, revision: u64) -> bool {
    matches!(shared.store.entry(key).await, Ok(Some(e)) if e.revision == revision)
}

async fn sleep_until_ms(at_ms: u64) {
    let now = envelope::now_ms();
    if at_ms > now {
        tokio::time::sleep(Duration::from_millis(at_ms - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_dead_only_after_missing_for_the_whole_interval() {
        let mut seen = HashMap::new();
        let both: HashSet<String> = ["n.a".to_owned(), "n.me".to_owned()].into();
        let me_only: HashSet<String> = ["n.me".to_owned()].into();
        assert!(missing_for(&mut seen, &both, "n.me", Duration::ZERO).is_empty());
        assert!(missing_for(&mut seen, &me_only, "n.me", Duration::from_secs(60)).is_empty(), "not yet");
        assert!(missing_for(&mut seen, &both, "n.me", Duration::ZERO).is_empty(), "back: the clock restarts");
        assert_eq!(missing_for(&mut seen, &me_only, "n.me", Duration::ZERO), ["n.a"]);
        assert!(missing_for(&mut seen, &me_only, "n.me", Duration::ZERO).is_empty(), "reported once");
    }
}
