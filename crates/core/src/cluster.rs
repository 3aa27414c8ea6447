//! The seam between one broker node and a cluster of them, without I/O: what a node tells the cluster
//! ([`ClusterHooks`], called by the broker where its state changes) and what the cluster asks of the
//! node ([`Node`], implemented by the broker). The cluster adapter (`mqttd-cluster`, on NATS) implements
//! the first and calls the second; a node without a cluster has no hooks and behaves as a single broker.
//!
//! The calls are plain and must not block: an adapter queues what it has to send and does its I/O on
//! its own tasks. When session changes become typed events of a `core` state machine, the adapter is
//! meant to take those events through one more method here instead of the per-change calls below.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use mqttd_proto::{SubscriptionOptions, Will};

use crate::message::Message;

/// A session as the cluster keeps it (the whole of it, written at each change), so that another node
/// can resume it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionRecord {
    pub client_id: String,
    pub username: Option<String>,
    /// Session Expiry Interval in seconds; `u32::MAX`: never; 0: ends with its connection.
    pub expiry: u32,
    /// When its connection ended (ms since the epoch); 0 while connected.
    pub disconnected_at_ms: u64,
    pub subscriptions: Vec<(String, SubscriptionOptions, Option<u32>)>,
    /// The will not yet published (of the connection, or pending for its Will Delay Interval).
    pub will: Option<Will>,
}

/// What [`ClusterHooks::claim`] returns once this node owns the client id.
pub type Claim = Pin<Box<dyn Future<Output = Option<SessionRecord>> + Send>>;

/// What a node reports to its cluster.
pub trait ClusterHooks: Send + Sync + std::fmt::Debug {
    /// A message this node accepted for routing (from a client, a will, a bridge or the admin API), not
    /// one that came from the cluster; retained ones included. True when the way to the other nodes is
    /// backed up: the publisher should let other tasks run before it reads more.
    fn published(&self, message: &Arc<Message>) -> bool;
    /// A local session subscribed to `filter` (a valid filter, `$share/...` included); each call is one
    /// more subscriber: the adapter keeps the count.
    fn subscribed(&self, filter: &str);
    /// A local session's subscription to `filter` went away (one fewer subscriber).
    fn unsubscribed(&self, filter: &str);
    /// A connection for `client_id` was accepted here: this node takes the client id over from any other
    /// node (which ends its connection, [MQTT-3.1.4-3]). Awaited before CONNACK. Gives the session
    /// another node held, unless `clean_start` or it has ended: this node resumes it.
    fn claim(&self, client_id: &str, clean_start: bool) -> Claim;
    /// A session this node owns changed (connected, subscribed, disconnected...).
    fn session_changed(&self, record: SessionRecord);
    /// A session this node owns ended.
    fn session_ended(&self, client_id: &str);
    /// The will of `client_id`'s session is due: the cluster makes sure it goes out once even if
    /// several nodes fire it (this one, and one that claimed the session after this one seemed dead),
    /// then hands it to [`Node::route_accepted`] of the node whose copy counted.
    fn publish_will(&self, client_id: &str, message: Arc<Message>);
}

/// What the cluster asks of the local node.
pub trait Node: Send + Sync {
    /// Routes a message another node accepted to this node's plain subscriptions, without telling the
    /// cluster again and without touching the retained store.
    fn route_remote(&self, message: Arc<Message>);
    /// Routes a message another node (or this one) accepted to this node's members of the shared
    /// subscription `$share/{group}/{filter}` only: the cluster chose this node for it.
    fn route_shared(&self, group: &str, filter: &str, message: Arc<Message>);
    /// Replaces the retained message of `topic` (`None`: clears it) with what the cluster holds.
    fn set_retained(&self, topic: &str, message: Option<Arc<Message>>);
    /// Another node took `client_id` over: the connection here, if any, ends (5.0 DISCONNECT 0x8E
    /// Session taken over), and the session here goes without its will, which is now the other node's.
    fn session_moved(self: Arc<Self>, client_id: String);
    /// Routes a message as one this node accepted (the cluster is told, as for any publish).
    fn route_accepted(&self, message: Arc<Message>);
}
