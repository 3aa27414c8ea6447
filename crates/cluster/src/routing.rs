//! Routing over core NATS: the connections, the task that publishes what this node accepted, and the
//! task that keeps one NATS subscription per distinct local filter and routes what arrives.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::{Client, ConnectOptions};
use bytes::Bytes;
use futures_util::StreamExt;
use mqttd_core::cluster::Node;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dedupe::Dedupe;
use crate::{envelope, subject, Error, Options, MAX_SUBJECT};

/// A message for the other nodes.
#[derive(Debug)]
pub struct Outgoing {
    pub subject: String,
    pub bytes: Bytes,
}

/// One local subscription more or fewer to a filter.
#[derive(Debug)]
pub enum FilterChange {
    Add(String),
    Remove(String),
}

/// The node's two NATS connections.
pub struct Links {
    /// Publishes messages and holds the plain subscriptions; without echo: a node never gets back what
    /// it sent.
    pub main: Client,
    /// Holds the queue subscriptions of shared subscriptions; with echo, so this node's own messages
    /// may be given to its own members.
    pub queues: Client,
}

impl Links {
    pub async fn connect(options: &Options, node: u64) -> Result<Links, Error> {
        let main = connect(options, format!("mqttd-{}-{node:016x}", options.name), true).await?;
        let queues = connect(options, format!("mqttd-{}-{node:016x}-shared", options.name), false).await?;
        Ok(Links { main, queues })
    }
}

async fn connect(options: &Options, name: String, no_echo: bool) -> Result<Client, Error> {
    let mut connect = ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        // JetStream API requests (bucket and watch set-up): short, so a node retries soon while a stream
        // it asks about is still electing its leader (NATS's default is 10 s).
        .request_timeout(Some(std::time::Duration::from_secs(2)));
    if let Some(path) = &options.credentials {
        connect = connect
            .credentials_file(path)
            .await
            .map_err(|source| Error::Credentials { path: path.display().to_string(), source })?;
    }
    if let (Some(user), Some(password)) = (&options.username, &options.password) {
        connect = connect.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &options.cafile {
        connect = connect.add_root_certificates(ca.clone()).require_tls(true);
    }
    if no_echo {
        connect = connect.no_echo();
    }
    let urls = options.urls.join(",");
    // Bounded: a node that cannot reach NATS at startup says so instead of waiting for ever.
    match tokio::time::timeout(std::time::Duration::from_secs(20), connect.connect(options.urls.as_slice())).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(Error::Connect { urls, reason: e.to_string() }),
        Err(_) => Err(Error::Connect { urls, reason: "timed out".into() }),
    }
}

/// Sends what this node accepted, in order.
pub async fn publish_task(client: Client, mut outgoing: mpsc::Receiver<Outgoing>) {
    // A batch per wake-up: the runtime's one thread is shared with every connection.
    let mut batch = Vec::with_capacity(BATCH);
    while outgoing.recv_many(&mut batch, BATCH).await > 0 {
        for Outgoing { subject, bytes } in batch.drain(..) {
            if let Err(e) = client.publish(subject, bytes).await {
                tracing::warn!("cluster: message not sent to other nodes: {e}");
            }
        }
    }
}

/// Messages taken from the outgoing queue at once.
const BATCH: usize = 1024;

/// The NATS subscriptions of one filter and how many local subscriptions want it.
struct Subscribed {
    count: usize,
    /// The tasks that read its NATS subscriptions; aborting one drops its subscription (unsubscribes).
    readers: Vec<JoinHandle<()>>,
}

/// Applies filter changes in order: the first local subscription to a filter subscribes on NATS, the
/// last one gone unsubscribes.
pub async fn subscribe_task(
    links: Links,
    prefix: String,
    node: Arc<dyn Node>,
    mut changes: mpsc::UnboundedReceiver<FilterChange>,
) {
    let mut filters: HashMap<String, Subscribed> = HashMap::new();
    let dedupe = Arc::new(Mutex::new(Dedupe::default()));
    while let Some(change) = changes.recv().await {
        match change {
            FilterChange::Add(filter) => {
                if let Some(entry) = filters.get_mut(&filter) {
                    entry.count += 1;
                    continue;
                }
                let readers = match subscribe(&links, &prefix, &filter, &node, &dedupe).await {
                    Ok(readers) => readers,
                    Err(e) => {
                        tracing::error!(%filter, "cluster: cannot subscribe on NATS, other nodes' messages will not reach it: {e}");
                        Vec::new()
                    }
                };
                filters.insert(filter, Subscribed { count: 1, readers });
            }
            FilterChange::Remove(filter) => {
                let Some(entry) = filters.get_mut(&filter) else { continue };
                entry.count -= 1;
                if entry.count == 0 {
                    for reader in filters.remove(&filter).map(|e| e.readers).unwrap_or_default() {
                        reader.abort();
                    }
                }
            }
        }
    }
}

/// Subscribes to the subjects of `filter` (a queue subscription for `$share/{group}/{filter}`) and
/// starts a reader for each; flushed, so the NATS server has them when this returns.
async fn subscribe(
    links: &Links,
    prefix: &str,
    filter: &str,
    node: &Arc<dyn Node>,
    dedupe: &Arc<Mutex<Dedupe>>,
) -> Result<Vec<JoinHandle<()>>, Error> {
    let shared = filter.strip_prefix("$share/").and_then(|rest| rest.split_once('/'));
    let plain = shared.map_or(filter, |(_, f)| f);
    let mut readers = Vec::new();
    for subject in subject::filter_subjects(prefix, plain) {
        if subject.len() > MAX_SUBJECT {
            tracing::warn!(%filter, "cluster: filter too long for NATS: only local messages reach it");
            continue;
        }
        let node = node.clone();
        let reader = match shared {
            Some((group, f)) => {
                let queue = format!("{}.{}", subject::token(group), subject::token(f));
                let mut sub = links.queues.queue_subscribe(subject, queue).await?;
                let (group, f) = (group.to_owned(), f.to_owned());
                tokio::spawn(async move {
                    while let Some(m) = sub.next().await {
                        if let Some((message, _)) = envelope::decode(&m.payload) {
                            node.route_shared(&group, &f, message);
                        }
                    }
                })
            }
            None => {
                let mut sub = links.main.subscribe(subject).await?;
                let dedupe = dedupe.clone();
                tokio::spawn(async move {
                    while let Some(m) = sub.next().await {
                        let Some((message, origin)) = envelope::decode(&m.payload) else { continue };
                        if dedupe.lock().first(origin) {
                            node.route_remote(message);
                        }
                    }
                })
            }
        };
        readers.push(reader);
    }
    let client = if shared.is_some() { &links.queues } else { &links.main };
    if let Err(e) = client.flush().await {
        tracing::warn!(%filter, "cluster: subscription not confirmed by NATS yet: {e}");
    }
    Ok(readers)
}
