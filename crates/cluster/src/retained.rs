//! Retained messages in a JetStream KV bucket (`<name>_retained`, one key per topic: [`topic_key`]),
//! which every node watches into its local retained store. A node that accepts a retained message sets
//! its own store at once (its subscribers see it immediately) and writes the bucket; every node, the
//! writer included, then applies the bucket's changes in the bucket's order, so all nodes end with the
//! bucket's last value even when two nodes write one topic at once.
//!
//! [`topic_key`]: crate::subject::topic_key

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation, Store};
use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use mqttd_core::cluster::Node;
use tokio::sync::mpsc;

use crate::{envelope, subject, Error, Options};

/// A retained message set (`value`: its envelope) or cleared (`None`).
#[derive(Debug)]
pub struct Change {
    pub key: String,
    pub value: Option<Bytes>,
}

/// How long a starting node tries to open the bucket before it gives up.
const OPEN_WAIT: Duration = Duration::from_secs(30);

/// How long a retained change is retried while JetStream cannot take it.
const WRITE_WAIT: Duration = Duration::from_secs(60);

/// How long a starting node waits for the bucket's current contents before serving anyway.
const LOAD_WAIT: Duration = Duration::from_secs(10);

pub struct Retained {
    store: Store,
}

impl Retained {
    pub async fn open(client: &Client, options: &Options) -> Result<Retained, Error> {
        let store = open_bucket(client, options, "retained", "mqttd retained messages, one per topic").await?;
        Ok(Retained { store })
    }

    /// Loads what the bucket holds into `node` (waiting at most [`LOAD_WAIT`]), then keeps applying its
    /// changes on a task of its own.
    pub async fn load_and_watch(&self, node: Arc<dyn Node>) -> Result<(), Error> {
        let bucket = || self.store.name.clone();
        let mut watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|e| Error::Bucket { bucket: bucket(), reason: e.to_string() })?;
        let held = self.store.status().await.map_err(|e| Error::Bucket { bucket: bucket(), reason: e.to_string() })?;
        let mut last = 0;
        if held.values() > 0 {
            let load = async {
                while let Some(Ok(entry)) = watch.next().await {
                    let current = entry.delta == 0;
                    last = entry.revision;
                    apply(node.as_ref(), entry);
                    if current {
                        break;
                    }
                }
            };
            if tokio::time::timeout(LOAD_WAIT, load).await.is_err() {
                tracing::warn!("cluster: retained messages still loading; serving meanwhile");
            }
        }
        let store = self.store.clone();
        tokio::spawn(crate::watch::follow(store, watch, last, "retained bucket", move |entry| {
            apply(node.as_ref(), entry)
        }));
        Ok(())
    }

    /// Writes this node's retained changes into the bucket, in order.
    pub async fn write_task(self, mut changes: mpsc::Receiver<Change>) {
        while let Some(Change { key, value }) = changes.recv().await {
            // Retried while JetStream elects a new leader (a NATS server was lost), for a bounded time.
            let deadline = tokio::time::Instant::now() + WRITE_WAIT;
            loop {
                let written = match &value {
                    Some(value) => self.store.put(&key, value.clone()).await.map(|_| ()).map_err(|e| e.to_string()),
                    None => self.store.delete(&key).await.map_err(|e| e.to_string()),
                };
                match written {
                    Ok(()) => break,
                    Err(e) if tokio::time::Instant::now() < deadline => {
                        tracing::debug!("cluster: retained message not stored yet: {e}; trying again");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => break tracing::warn!("cluster: retained message not stored for other nodes: {e}"),
                }
            }
        }
    }
}

/// Opens the KV bucket `<cluster name>_<suffix>`, creating it if no node has yet; retried for
/// [`OPEN_WAIT`] while the JetStream cluster elects its leaders (nodes and NATS servers often start
/// together).
pub async fn open_bucket(client: &Client, options: &Options, suffix: &str, description: &str) -> Result<Store, Error> {
    open_bucket_with(client, options, suffix, description, Duration::ZERO).await
}

/// [`open_bucket`] with entries that expire after `max_age` (zero: never).
pub async fn open_bucket_with(
    client: &Client,
    options: &Options,
    suffix: &str,
    description: &str,
    max_age: Duration,
) -> Result<Store, Error> {
    let deadline = tokio::time::Instant::now() + OPEN_WAIT;
    loop {
        match open_once(client, options, suffix, description, max_age).await {
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!("cluster: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            done => return done,
        }
    }
}

async fn open_once(
    client: &Client,
    options: &Options,
    suffix: &str,
    description: &str,
    max_age: Duration,
) -> Result<Store, Error> {
    let js = async_nats::jetstream::new(client.clone());
    let bucket = format!("{}_{suffix}", options.name);
    let config = kv::Config {
        bucket: bucket.clone(),
        description: description.into(),
        history: 1,
        num_replicas: options.replicas,
        storage: async_nats::jetstream::stream::StorageType::File,
        max_age,
        ..Default::default()
    };
    match js.get_key_value(&bucket).await {
        Ok(store) => Ok(store),
        Err(_) => match js.create_key_value(config).await {
            Ok(store) => Ok(store),
            // Another node created it meanwhile.
            Err(e) => js.get_key_value(&bucket).await.map_err(|_| Error::Bucket { bucket, reason: e.to_string() }),
        },
    }
}

/// Applies one change of the bucket to the node's retained store.
fn apply(node: &dyn Node, entry: kv::Entry) {
    let Some(topic) = subject::key_topic(&entry.key) else { return };
    match entry.operation {
        Operation::Put => match envelope::decode(&entry.value) {
            Some((message, _)) if message.topic == topic => node.set_retained(&topic, Some(message)),
            // Expired (or not ours): gone from this node too.
            _ => node.set_retained(&topic, None),
        },
        Operation::Delete | Operation::Purge => node.set_retained(&topic, None),
    }
}
