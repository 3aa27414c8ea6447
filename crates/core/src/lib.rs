//! Broker logic without I/O: the topic tree, session state (outbox, inflight window, QoS 2 receipts) and
//! the retained-message store. Time is an argument; nothing here opens a socket, spawns a task or sleeps.
//!
//! Every state change of a session, its queue, its inflight window or the retained store is one method
//! here, so a persistence layer can record it before the acknowledgement goes out.

pub mod cluster;
mod message;
mod retained;
mod session;
mod tree;

pub use message::{Delivery, Message};
pub use retained::Retained;
pub use session::{AckError, Enqueued, Inflight, InflightState, MemoryUse, Outgoing, QueueLimits, SessionState};
pub use tree::{Match, TopicTree};
