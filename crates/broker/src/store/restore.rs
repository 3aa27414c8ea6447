//! The broker's side of the durable store: what each state change appends (retained messages, sessions,
//! queued messages and their acknowledgements), and the state rebuilt from the log at startup.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqttd_core::{Delivery, Message};
use mqttd_proto::Will;

use super::{now_ms, Record, Replayed, Store, StoredMessage, StoredSession};
use crate::broker::Broker;
use crate::session::{Expiry, Session};

impl Broker {
    /// Makes state changes durable from now on (`persistence true`).
    pub fn set_store(&self, store: Arc<Store>) {
        let _ = self.store.set(store);
    }

    /// The durable store, with `persistence true`.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.get()
    }

    /// Whether a session with this expiry and will is kept in the store: persistent sessions, and any
    /// session with a will (it fires after a restart).
    pub(crate) fn keeps(&self, expiry: Expiry, has_will: bool) -> bool {
        (self.store().is_some() || self.clustered()) && (expiry != Expiry::Immediate || has_will)
    }

    /// Appends the session as it stands (`disconnected_at_ms`: 0 while connected); returns the position to
    /// wait for (0 without a store).
    pub(crate) fn persist_session(&self, session: &Session, disconnected_at_ms: u64) -> u64 {
        self.share_session(session, disconnected_at_ms);
        let Some(store) = self.store() else { return 0 };
        let ctl = session.control.lock();
        let will = ctl.will.as_deref().or(ctl.pending_will.as_deref()).map(stored_will);
        let stored = StoredSession {
            client_id: session.client_id.to_string(),
            username: ctl.identity.username.as_deref().map(str::to_owned),
            listener: ctl.identity.listener,
            expiry: match ctl.expiry {
                Expiry::Immediate => 0,
                Expiry::After(d) => u32::try_from(d.as_secs()).unwrap_or(u32::MAX - 1),
                Expiry::Never => u32::MAX,
            },
            disconnected_at_ms,
            will,
            subscriptions: ctl.subscriptions.iter().map(|(f, (o, id))| (f.clone(), *o, *id)).collect(),
        };
        drop(ctl);
        store.append(&Record::Session(stored))
    }

    /// Appends the end of a session.
    pub(crate) fn persist_end(&self, client_id: &str) {
        if let Some(cluster) = self.cluster.get() {
            cluster.session_ended(client_id);
        }
        if let Some(store) = self.store() {
            store.append(&Record::SessionEnd { client_id: client_id.to_owned() });
        }
    }

    /// Appends that `session` is done with stored message `stored` (acknowledged by its client).
    pub(crate) fn persist_ack(&self, session: &Session, stored: Option<u64>) {
        if let (Some(store), Some(id)) = (self.store(), stored) {
            store.append(&Record::Ack { client_id: session.client_id.to_string(), id });
        }
    }

    /// Appends that stored message `stored` went to `session` with `packet_id` (`released`: its PUBREC
    /// came), so that after a restart it is resent with that id, or its PUBREL is. Not waited for: a crash
    /// before it is durable resends the message as a new one.
    pub(crate) fn persist_sent(
        &self,
        session: &Session,
        stored: Option<u64>,
        packet_id: mqttd_proto::PacketId,
        released: bool,
    ) {
        if let (Some(store), Some(id)) = (self.store(), stored) {
            let client_id = session.client_id.to_string();
            store.append(&Record::Sent { client_id, id, packet_id: packet_id.get(), released });
        }
    }

    /// Appends an incoming QoS 2 packet id of a session kept in the store: received (`pending`) or
    /// released; returns the position to wait for (0: not kept).
    pub(crate) fn persist_incoming(&self, session: &Session, packet_id: mqttd_proto::PacketId, pending: bool) -> u64 {
        match self.store() {
            Some(store) => store.append(&Record::Incoming {
                client_id: session.client_id.to_string(),
                packet_id: packet_id.get(),
                pending,
            }),
            None => 0,
        }
    }

    /// Appends a retained message set or cleared; returns the position to wait for.
    pub(crate) fn persist_retained(&self, message: &Message) -> u64 {
        match self.store() {
            Some(store) => store.append(&Record::Retained(stored_message(message))),
            None => 0,
        }
    }

    /// Appends a delivery queued for a session kept in the store (the message itself once, at its first
    /// delivery); returns the position to wait for.
    pub(crate) fn persist_enqueue(&self, session: &Session, delivery: &Delivery) -> u64 {
        let Some(store) = self.store() else { return 0 };
        let message = &delivery.message;
        let id = *message.stored.get_or_init(|| {
            let id = store.message_id();
            store.append(&Record::Message { id, message: stored_message(message) });
            id
        });
        store.append(&Record::Enqueue {
            client_id: session.client_id.to_string(),
            id,
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
        })
    }

    /// Rebuilds what the store held: retained messages, and every session as disconnected now, with its
    /// subscriptions and queue; wills fire once their delay (counted from now) has passed, unless the
    /// client is back first. Called once at startup, within the runtime, before any listener accepts.
    pub fn restore(self: &Arc<Self>, replayed: Replayed) {
        let now = now_ms();
        let instant = Instant::now();
        let Replayed { retained, sessions, messages, mut queues, mut incoming, .. } = replayed;
        let mut retained_store = self.retained.write();
        for m in retained.into_values() {
            if let Some(message) = live_message(m, now, instant) {
                retained_store.set(Arc::new(message));
            }
        }
        drop(retained_store);
        let shared: std::collections::HashMap<u64, Arc<Message>> = messages
            .into_iter()
            .filter_map(|(id, m)| {
                let message = live_message(m, now, instant)?;
                let _ = message.stored.set(id);
                Some((id, Arc::new(message)))
            })
            .collect();
        let mut restored = Vec::with_capacity(sessions.len());
        for stored in sessions.into_values() {
            let queue: Vec<(Delivery, Option<(u16, bool)>)> = queues
                .remove(&stored.client_id)
                .unwrap_or_default()
                .into_values()
                .filter_map(|q| {
                    let message = shared.get(&q.id)?.clone();
                    let delivery = Delivery {
                        message,
                        qos: q.qos,
                        retain: q.retain,
                        subscription_ids: q.subscription_ids,
                        shared_by: 1,
                        group: 0,
                    };
                    Some((delivery, q.sent))
                })
                .collect();
            let session = self.restore_session(&stored, queue, now);
            if let Some(ids) = incoming.remove(&stored.client_id) {
                // A QoS 2 message received before the restart is not routed again when resent
                // [MQTT-4.3.3-10].
                let mut state = session.state.lock();
                for id in ids.into_iter().filter_map(mqttd_proto::PacketId::new) {
                    state.receive_qos2(id);
                }
            }
            restored.push((session, stored.will.as_ref().map(will_of)));
        }
        // Every session is back before any will goes out: a will may be for any of them.
        for (session, will) in restored {
            self.restart_session(&session, will, now);
        }
    }
}

/// A stored message as the broker holds it; `None` once expired.
fn live_message(m: StoredMessage, now_ms: u64, now: Instant) -> Option<Message> {
    let expires_at = match m.expires_at_ms {
        0 => None,
        at if at <= now_ms => return None,
        at => Some(now + Duration::from_millis(at - now_ms)),
    };
    Some(Message {
        topic: m.topic,
        payload: m.payload,
        qos: m.qos,
        retain: m.retain,
        properties: Message::store_properties(m.properties),
        expires_at,
        origin: 0,
        stored: Default::default(),
    })
}

/// A message as stored, its expiry as wall-clock time.
pub(crate) fn stored_message(m: &Message) -> StoredMessage {
    let now = Instant::now();
    StoredMessage {
        topic: m.topic.clone(),
        payload: m.payload.clone(),
        qos: m.qos,
        retain: m.retain,
        properties: m.properties().clone(),
        expires_at_ms: m.expires_at.map_or(0, |at| now_ms() + at.saturating_duration_since(now).as_millis() as u64),
    }
}

fn stored_will(will: &Will) -> (StoredMessage, u32) {
    let mut properties = will.properties.clone();
    let delay = properties.will_delay_interval.take().unwrap_or(0);
    let expires_at_ms = 0;
    let message = StoredMessage {
        topic: will.topic.clone(),
        payload: will.payload.clone(),
        qos: will.qos,
        retain: will.retain,
        properties,
        expires_at_ms,
    };
    (message, delay)
}

/// The will of a stored session, as CONNECT carried it.
pub(crate) fn will_of(stored: &(StoredMessage, u32)) -> Will {
    let (m, delay) = stored;
    let mut properties = m.properties.clone();
    properties.will_delay_interval = Some(*delay).filter(|&d| d > 0);
    Will { topic: m.topic.clone(), payload: m.payload.clone(), qos: m.qos, retain: m.retain, properties }
}

/// How long a stored session has left: its expiry counted from its disconnection (or from now if it was
/// connected when the broker stopped).
pub(crate) fn remaining_expiry(stored: &StoredSession, now_ms: u64) -> Expiry {
    match stored.expiry {
        0 => Expiry::Immediate,
        u32::MAX => Expiry::Never,
        s => {
            let since = match stored.disconnected_at_ms {
                0 => 0,
                at => now_ms.saturating_sub(at),
            };
            let total = u64::from(s) * 1000;
            Expiry::After(Duration::from_millis(total.saturating_sub(since).max(1)))
        }
    }
}
