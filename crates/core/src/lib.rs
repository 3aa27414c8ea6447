//! Broker logic without I/O: the topic tree, session state (outbox, inflight window, QoS 2 receipts), the
//! retained-message store, and the session registry (attach and takeover, wills, expiry, subscriptions)
//! with its one deadline queue. Time is an argument; nothing here opens a socket, spawns a task, sleeps or
//! reads a clock.
//!
//! Every change of the session registry is an [`Event`]: the durable store records them and
//! [`Registry::apply`] replays them. Every state change of a session's queue, its inflight window or the
//! retained store is one method here, so a persistence layer can record it before the acknowledgement
//! goes out.

pub mod cluster;
mod deadline;
mod event;
mod message;
mod registry;
mod retained;
mod session;
mod tree;

pub use deadline::{DeadlineKey, Deadlines, Time};
pub use event::{will_delay, ClientIdentity, Event, Expiry, SessionSnapshot, Subscription};
pub use message::{Delivery, Message};
pub use registry::{Attach, Attached, Changes, Discard, Emitted, Entry, Registry, WillOutcome, STALE_CONNECTION};
pub use retained::Retained;
pub use session::{AckError, Enqueued, Inflight, InflightState, MemoryUse, Outgoing, QueueLimits, SessionState};
pub use tree::{Match, TopicTree};
