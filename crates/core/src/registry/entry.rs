//! One session as the registry knows it.

use std::collections::BTreeMap;

use mqttd_proto::Will;

use crate::deadline::{DeadlineKey, Time};
use crate::event::{ClientIdentity, Expiry, SessionSnapshot, Subscription};

/// What the registry knows of one session, and the caller's `handle` on it (the broker keeps its
/// runtime half of the session there, so one table serves both; replay uses `()`).
#[derive(Debug, Clone)]
pub struct Entry<H = ()> {
    /// The attached connection's id; 0 when none is attached.
    pub owner: u64,
    pub identity: ClientIdentity,
    /// While attached: the connection's will. Detached: the will waiting for its delay
    /// [MQTT-3.1.3-9]. Taken exactly once, by [`Event::WillFired`] or a normal DISCONNECT. Boxed: most
    /// sessions have none, and a will is large.
    pub will: Option<Box<Will>>,
    pub subscriptions: BTreeMap<String, Subscription>,
    pub expiry: Expiry,
    /// When the last connection ended; `None` while one is attached.
    pub disconnected_at: Option<Time>,
    pub(super) will_due: Option<DeadlineKey>,
    pub(super) expires: Option<DeadlineKey>,
    /// The caller's own: never read or changed by the registry (a new entry starts with the default).
    pub handle: H,
}

impl<H> PartialEq for Entry<H> {
    /// Equal state: the same fields and deadlines falling due at the same times (whatever their place in
    /// the queue); the handles are the caller's business.
    fn eq(&self, other: &Entry<H>) -> bool {
        self.owner == other.owner
            && self.identity == other.identity
            && self.will == other.will
            && self.subscriptions == other.subscriptions
            && self.expiry == other.expiry
            && self.disconnected_at == other.disconnected_at
            && self.will_due() == other.will_due()
            && self.expires_at() == other.expires_at()
    }
}

impl<H: Default> Entry<H> {
    pub(super) fn new(identity: ClientIdentity, owner: u64, expiry: Expiry, will: Option<Will>) -> Entry<H> {
        Entry {
            handle: H::default(),
            owner,
            identity,
            will: will.map(Box::new),
            subscriptions: BTreeMap::new(),
            expiry,
            disconnected_at: None,
            will_due: None,
            expires: None,
        }
    }
}

impl<H> Entry<H> {
    /// A copy without the caller's handle.
    pub fn without_handle(&self) -> Entry {
        Entry {
            owner: self.owner,
            identity: self.identity.clone(),
            will: self.will.clone(),
            subscriptions: self.subscriptions.clone(),
            expiry: self.expiry,
            disconnected_at: self.disconnected_at,
            will_due: self.will_due,
            expires: self.expires,
            handle: (),
        }
    }

    pub fn attached(&self) -> bool {
        self.owner != 0
    }

    /// The will waiting for its delay (none while a connection is attached).
    pub fn pending_will(&self) -> Option<&Will> {
        self.will.as_deref().filter(|_| !self.attached())
    }

    /// When the pending will fires, unless the client is back first or the session ends before.
    pub fn will_due(&self) -> Option<Time> {
        self.will_due.map(|(at, _)| at)
    }

    /// When the session ends, unless a connection attaches first.
    pub fn expires_at(&self) -> Option<Time> {
        self.expires.map(|(at, _)| at)
    }

    /// Whether a durable store keeps this session: it outlives its connection, or its will must fire
    /// after a restart.
    pub fn recorded(&self) -> bool {
        self.expiry != Expiry::Immediate || self.will.is_some()
    }

    pub fn snapshot(&self) -> SessionSnapshot {
        SessionSnapshot {
            identity: self.identity.clone(),
            owner: self.owner,
            expiry: self.expiry,
            will: self.will.as_deref().cloned(),
            disconnected_at: self.disconnected_at,
            subscriptions: self.subscriptions.iter().map(|(f, s)| (f.clone(), *s)).collect(),
        }
    }
}
