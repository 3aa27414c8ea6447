//! Several mqttd nodes as one broker, on NATS: this crate is the adapter between one node
//! (`mqttd_core::cluster::Node`, implemented by the broker) and the others, reached through a NATS
//! system with JetStream. It owns the NATS connections and every task that talks to them; the broker
//! only calls the plain, non-blocking hooks of `mqttd_core::cluster::ClusterHooks`, which queue work here.
//!
//! What goes through NATS (see ARCHITECTURE.md, "Cluster"):
//! - routing over core NATS: one subscription per distinct local filter (counted), each accepted message
//!   published on its topic's subject ([`subject`]) from a connection without echo; a receiving node
//!   routes it to its own subscriptions and never sends it on (`routing.rs`);
//! - shared subscriptions: a NATS queue group per share name and filter, on a second connection that
//!   hears its own node's messages, so the publishing node may be the one chosen;
//! - retained messages: a JetStream KV bucket every node watches into its local store (`retained.rs`).
//!
//! It must not decide MQTT rules: matching, QoS, ACLs and the retained store stay with the node.

mod dedupe;
pub mod envelope;
mod error;
mod failover;
mod record;
mod retained;
mod routing;
mod sessions;
pub mod subject;
mod watch;
mod wills;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mqttd_core::cluster::{Claim, ClusterHooks, Node, SessionRecord};
use mqttd_core::Message;
use tokio::sync::mpsc;

pub use error::Error;

/// How to reach the NATS system and what to call things there (the broker's `cluster_*` directives).
#[derive(Debug, Clone)]
pub struct Options {
    /// Prefixes subjects and buckets: clusters of other names share the NATS system without meeting.
    pub name: String,
    pub urls: Vec<String>,
    /// Replicas of the JetStream buckets.
    pub replicas: usize,
    pub credentials: Option<std::path::PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub cafile: Option<std::path::PathBuf>,
}

/// Messages queued for NATS before they are dropped (the publishing task sends them in order).
const OUTGOING: usize = 64 * 1024;
/// How long a connecting client waits for this node to own its client id before it is served anyway.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Subjects longer than this are not sent: NATS closes a connection whose control line passes 4096.
pub const MAX_SUBJECT: usize = 3072;

/// This node's link to the cluster.
#[derive(Debug)]
pub struct Cluster {
    /// `mqttd.<name>.m`: the root of every message subject.
    prefix: String,
    /// This node's id in envelopes (random at start).
    node: u64,
    sequence: AtomicU64,
    /// To the publishing task: bounded, so a NATS system that stops taking messages costs bounded
    /// memory (what does not fit is dropped and counted, as a full outbox drops QoS 0).
    outgoing: mpsc::Sender<routing::Outgoing>,
    /// To the task that writes the retained bucket (in order; bounded as `outgoing`).
    retained: mpsc::Sender<retained::Change>,
    /// To the subscribing task, in order: one change per local subscription added or removed, small and
    /// as many as clients make (each is handled at once).
    filters: mpsc::UnboundedSender<routing::FilterChange>,
    /// To the task that writes this node's sessions, in order (claims, changes, ends: a few per
    /// connection, each handled at once).
    sessions: mpsc::UnboundedSender<sessions::Command>,
    /// What this node knows of the sessions bucket, for wills fired here.
    shared: Arc<sessions::Shared>,
    /// Messages not sent to the cluster because the queue was full or the subject too long.
    pub dropped: AtomicU64,
}

impl Cluster {
    /// Connects to NATS, opens (or creates) the buckets, loads the retained messages into `node` and
    /// starts the tasks that keep them in step. The node should be serving no client yet.
    pub async fn start(options: Options, node: Arc<dyn Node>) -> Result<Arc<Cluster>, Error> {
        let id = random_id();
        let links = routing::Links::connect(&options, id).await?;
        let prefix = format!("mqttd.{}.m", options.name);
        tracing::debug!("cluster: connected to NATS");
        let retained = retained::Retained::open(&links.main, &options).await?;
        tracing::debug!("cluster: retained bucket open");
        retained.load_and_watch(node.clone()).await?;
        tracing::debug!("cluster: retained messages loaded");
        let wills = Arc::new(wills::Wills::open(&links.main, &options, node.clone()).await?);
        let store =
            retained::open_bucket(&links.main, &options, "sessions", "mqttd sessions, one per client id").await?;
        let shared = sessions::Shared::new(store, id, wills);
        sessions::watch(&shared, node.clone()).await?;
        failover::start(&links.main, &options, shared.clone()).await?;
        let (session_tx, session_rx) = mpsc::unbounded_channel();
        tokio::spawn(sessions::task(shared.clone(), session_rx));
        let (retained_tx, retained_rx) = mpsc::channel(OUTGOING);
        tokio::spawn(retained.write_task(retained_rx));
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING);
        let (filters, filters_rx) = mpsc::unbounded_channel();
        tokio::spawn(routing::publish_task(links.main.clone(), outgoing_rx));
        tokio::spawn(routing::subscribe_task(links, prefix.clone(), node, filters_rx));
        tracing::info!(cluster = %options.name, node = format!("{id:016x}"), "joined the cluster");
        let sequence = AtomicU64::new(0);
        let dropped = AtomicU64::new(0);
        let sessions = session_tx;
        let retained = retained_tx;
        Ok(Arc::new(Cluster { prefix, node: id, sequence, outgoing, retained, filters, sessions, shared, dropped }))
    }

    fn queue<T>(&self, queue: &mpsc::Sender<T>, item: T) {
        if queue.try_send(item).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "cluster: outgoing queue full, message not sent to other nodes");
            }
        }
    }
}

/// Topics each node keeps to itself: its `$SYS` tree.
fn node_local(topic_or_filter: &str) -> bool {
    topic_or_filter == "$SYS" || topic_or_filter.starts_with("$SYS/")
}

impl ClusterHooks for Cluster {
    fn published(&self, message: &Arc<Message>) -> bool {
        if node_local(&message.topic) {
            return false;
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let origin = envelope::Origin { node: self.node, sequence };
        let bytes = match envelope::encode(message, origin) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(topic = %message.topic, "cluster: message not encoded: {e}");
                return false;
            }
        };
        let subject = subject::topic_subject(&self.prefix, &message.topic);
        if subject.len() > MAX_SUBJECT {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic_len = message.topic.len(), "cluster: topic too long for NATS, not sent");
            return false;
        }
        if message.retain {
            let value = (!message.payload.is_empty()).then(|| bytes.clone());
            self.queue(&self.retained, retained::Change { key: subject::topic_key(&message.topic), value });
        }
        self.queue(&self.outgoing, routing::Outgoing { subject, bytes });
        // Past half full: publishers yield, so the task that sends to NATS gets its turn.
        self.outgoing.capacity() < OUTGOING / 2
    }

    fn subscribed(&self, filter: &str) {
        if !node_local(filter) {
            let _ = self.filters.send(routing::FilterChange::Add(filter.to_owned()));
        }
    }

    fn unsubscribed(&self, filter: &str) {
        if !node_local(filter) {
            let _ = self.filters.send(routing::FilterChange::Remove(filter.to_owned()));
        }
    }

    fn claim(&self, client_id: &str, clean_start: bool) -> Claim {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let client_id = client_id.to_owned();
        let sent = self.sessions.send(sessions::Command::Claim { client_id, clean_start, reply }).is_ok();
        Box::pin(async move {
            if !sent {
                return None;
            }
            match tokio::time::timeout(CLAIM_WAIT, answer).await {
                Ok(Ok(resumed)) => resumed,
                _ => {
                    tracing::warn!("cluster: no answer from NATS in time: the session is served here without it");
                    None
                }
            }
        })
    }

    fn session_changed(&self, record: SessionRecord) {
        let _ = self.sessions.send(sessions::Command::Changed(Box::new(record)));
    }

    fn session_ended(&self, client_id: &str) {
        let _ = self.sessions.send(sessions::Command::Ended(client_id.to_owned()));
    }

    fn publish_will(&self, client_id: &str, message: Arc<Message>) {
        self.shared.publish_will(client_id, message);
    }
}

/// A node id unlikely to repeat: time, process id and an address, mixed.
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}
