//! The events of the session registry: every change of a session, its subscriptions or its will is one
//! [`Event`]. The durable store records them, replay ([`crate::Registry::apply`]) rebuilds the registry
//! from them, and a cluster can ship them to other nodes: they carry everything a change needs and no
//! reference to anything local to one process but the attaching connection's id.

use std::sync::Arc;
use std::time::Duration;

use mqttd_proto::{SubscriptionOptions, Will};

use crate::deadline::Time;

/// Who owns a session, for authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Shared with the session and the session registry's key: one allocation per client.
    pub client_id: Arc<str>,
    pub username: Option<Arc<str>>,
    /// Index of the listener the client connected through (for per-listener security).
    pub listener: u16,
}

/// How long a session lives after its connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Ends with the connection (clean session, or Session Expiry Interval 0).
    Immediate,
    After(Duration),
    Never,
}

impl Expiry {
    /// From a 5.0 Session Expiry Interval in seconds (0xFFFFFFFF means never [MQTT-3.1.2-11]).
    pub fn from_v5(seconds: u32) -> Expiry {
        match seconds {
            0 => Expiry::Immediate,
            u32::MAX => Expiry::Never,
            s => Expiry::After(Duration::from_secs(u64::from(s))),
        }
    }

    /// As a Session Expiry Interval in seconds (a sub-second expiry rounds up to 1).
    pub fn as_v5(self) -> u32 {
        match self {
            Expiry::Immediate => 0,
            Expiry::After(d) => {
                u32::try_from(d.as_millis().div_ceil(1000)).unwrap_or(u32::MAX - 1).clamp(1, u32::MAX - 1)
            }
            Expiry::Never => u32::MAX,
        }
    }

    /// How long after a disconnection the session ends (`None`: never).
    pub fn duration(self) -> Option<Duration> {
        match self {
            Expiry::Immediate => Some(Duration::ZERO),
            Expiry::After(d) => Some(d),
            Expiry::Never => None,
        }
    }
}

/// The Will Delay Interval of a will (5.0; zero before) [MQTT-3.1.3-9].
pub fn will_delay(will: &Will) -> Duration {
    Duration::from_secs(u64::from(will.properties.will_delay_interval.unwrap_or(0)))
}

/// A subscription of a session: its options and its Subscription Identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// A whole session as it stands: what a compacted log, or a node joining a cluster, starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    pub identity: ClientIdentity,
    /// The attached connection (0: none); [`crate::STALE_CONNECTION`] for one attached before
    /// a restart.
    pub owner: u64,
    pub expiry: Expiry,
    /// The will of the attached connection, or the will waiting for its delay.
    pub will: Option<Will>,
    /// When its connection ended; `None` while one is attached.
    pub disconnected_at: Option<Time>,
    /// By filter, in filter order.
    pub subscriptions: Vec<(String, Subscription)>,
}

/// One change of the session registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A connection attached to a new session (there was none, or Clean Start ended it just before)
    /// [MQTT-3.1.2-4].
    SessionOpened {
        identity: ClientIdentity,
        connection: u64,
        expiry: Expiry,
        will: Option<Will>,
        at: Time,
    },
    /// A connection attached to the session its client id had [MQTT-3.1.2-5]: a will waiting for its
    /// delay is dropped [MQTT-3.1.3-9], the session no longer expires; identity, will and expiry are the
    /// new connection's.
    SessionResumed {
        identity: ClientIdentity,
        connection: u64,
        expiry: Expiry,
        will: Option<Will>,
        at: Time,
    },
    /// The attached connection ended at `at`; the session expires `expiry` later (a DISCONNECT may have
    /// changed it [MQTT-3.14.2-2]). After a normal DISCONNECT the will is deleted (`will_deleted`)
    /// [MQTT-3.1.2-10]; otherwise it waits for its delay, or for the session to end.
    SessionDisconnected {
        client_id: Arc<str>,
        at: Time,
        expiry: Expiry,
        will_deleted: bool,
    },
    /// A subscription added or replaced [MQTT-3.8.4-3].
    Subscribed {
        client_id: Arc<str>,
        filter: String,
        subscription: Subscription,
    },
    Unsubscribed {
        client_id: Arc<str>,
        filter: String,
    },
    /// The will is published, and forgotten with it: the one record that says so, so it fires once.
    WillFired {
        client_id: Arc<str>,
        will: Will,
        at: Time,
    },
    /// The session ended (expired, discarded by Clean Start or an operator, or ended with its
    /// connection): it, its subscriptions and its queue are gone.
    SessionEnded {
        client_id: Arc<str>,
        at: Time,
    },
    /// A session as a whole (replaces whatever the registry held for its client id).
    SessionSnapshot(SessionSnapshot),
}

impl Event {
    /// The client id of the session the event is about.
    pub fn client_id(&self) -> &Arc<str> {
        match self {
            Event::SessionOpened { identity, .. } | Event::SessionResumed { identity, .. } => &identity.client_id,
            Event::SessionSnapshot(s) => &s.identity.client_id,
            Event::SessionDisconnected { client_id, .. }
            | Event::Subscribed { client_id, .. }
            | Event::Unsubscribed { client_id, .. }
            | Event::WillFired { client_id, .. }
            | Event::SessionEnded { client_id, .. } => client_id,
        }
    }
}
