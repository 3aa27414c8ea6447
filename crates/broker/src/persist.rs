//! The broker's side of the durable store: what each state change appends (retained messages, sessions,
//! queued messages and their acknowledgements), and the state rebuilt from the log at startup.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqttd_core::{Delivery, Message};

use crate::broker::Broker;
use crate::session::Session;
use crate::store::{now_ms, RawMessage, Record, Replayed, Store};

impl Broker {
    /// Makes state changes durable from now on (`persistence true`).
    pub fn set_store(&self, store: Arc<Store>) {
        let _ = self.store.set(store);
    }

    /// The durable store, with `persistence true`.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.get()
    }

    /// Appends that `session` is done with stored message `stored` (acknowledged by its client).
    pub(crate) fn persist_ack(&self, session: &Session, stored: Option<u64>) {
        if let (Some(store), Some(id)) = (self.store(), stored) {
            store.append_for(session.id, &session.client_id, |session| Record::Ack { session, id });
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
            let packet_id = packet_id.get();
            store.append_for(session.id, &session.client_id, |session| Record::Sent {
                session,
                id,
                packet_id,
                released,
            });
        }
    }

    /// Appends an incoming QoS 2 packet id of a session kept in the store: received (`pending`) or
    /// released; returns the position to wait for (0: not kept).
    pub(crate) fn persist_incoming(&self, session: &Session, packet_id: mqttd_proto::PacketId, pending: bool) -> u64 {
        match self.store() {
            Some(store) => store.append_for(session.id, &session.client_id, |session| Record::Incoming {
                session,
                packet_id: packet_id.get(),
                pending,
            }),
            None => 0,
        }
    }

    /// Appends a retained message set or cleared; returns the position to wait for.
    pub(crate) fn persist_retained(&self, message: &Message) -> u64 {
        match self.store() {
            Some(store) => store.append(&Record::Retained(raw_message(message))),
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
            store.append(&Record::Message { id, message: raw_message(message) });
            id
        });
        store.append_for(session.id, &session.client_id, |session| Record::Enqueue {
            session,
            id,
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
        })
    }

    /// Rebuilds what the store held: retained messages, and every session with its subscriptions and
    /// queue; a session whose connection was attached at the crash is disconnected now (its will fires
    /// once its delay, counted from now, has passed, unless the client is back first); pending wills and
    /// session expiry continue from the stored disconnection time. Called once at startup, within the runtime, before any listener accepts.
    pub fn restore(self: &Arc<Self>, replayed: Replayed) {
        let now = now_ms();
        let instant = Instant::now();
        let mut replayed = replayed;
        let (retained, sessions, messages) = (
            std::mem::take(&mut replayed.retained),
            std::mem::take(&mut replayed.sessions),
            std::mem::take(&mut replayed.messages),
        );
        // Retained messages are rebuilt beside the sessions (nothing here reads them before both are done).
        std::thread::scope(|scope| {
            scope.spawn(|| self.restore_retained(retained, now, instant));
            self.restore_sessions(replayed, sessions, messages, now, instant);
        });
    }

    fn restore_retained(&self, retained: impl IntoIterator<Item = (String, RawMessage)>, now: u64, instant: Instant) {
        let retained = retained.into_iter();
        let mut retained_store = self.retained.write();
        retained_store.reserve(retained.size_hint().0);
        for (topic, m) in retained {
            if let Some(message) = live_message(&m, Some(topic), now, instant) {
                retained_store.set(Arc::new(message));
            }
        }
    }

    fn restore_sessions(
        self: &Arc<Self>,
        mut replayed: Replayed,
        sessions: mqttd_core::Registry,
        messages: std::collections::BTreeMap<u64, crate::store::Held>,
        now: u64,
        instant: Instant,
    ) {
        // By id, as the queues mostly hold them: found by binary search, in memory in the order the
        // queues are walked (a hash map here costs a cache miss per insert, lookup and reference).
        let shared: Vec<(u64, Arc<Message>)> = messages
            .into_iter()
            .filter_map(|(id, held)| {
                let message = live_message(&held.message, None, now, instant)?;
                let _ = message.stored.set(id);
                Some((id, Arc::new(message)))
            })
            .collect();
        let find = |id: u64| shared.binary_search_by_key(&id, |(id, _)| *id).ok().map(|i| shared[i].1.clone());
        // The registry as its events left it; each of its sessions gets its runtime half: subscriptions in
        // the tree, its queue, its incoming QoS 2 packet ids.
        let mut live = HashMap::with_capacity(sessions.len());
        for (client_id, entry) in sessions.iter() {
            let session = self.restored_session(entry);
            let queue = replayed.take_queue(client_id).into_values().filter_map(|q| {
                let message = find(q.id)?;
                let delivery = Delivery {
                    message,
                    qos: q.qos,
                    retain: q.retain,
                    subscription_ids: q.subscription_ids,
                    shared_by: 1,
                    group: 0,
                };
                Some((delivery, q.sent))
            });
            restore_queue(&session, queue);
            let ids = replayed.take_incoming(client_id);
            if !ids.is_empty() {
                // A QoS 2 message received before the restart is not routed again when resent
                // [MQTT-4.3.3-10].
                let mut state = session.state.lock();
                for id in ids.into_iter().filter_map(mqttd_proto::PacketId::new) {
                    state.receive_qos2(id);
                }
            }
            live.insert(client_id.clone(), session);
        }
        // Every session is back before any will goes out: a will may be for any of them.
        self.restart_sessions(sessions, live);
    }
}

/// Puts a restored session's queue back: what was in flight first, with its packet id, to be resent.
fn restore_queue(session: &Session, queue: impl Iterator<Item = (Delivery, Option<(u16, bool)>)>) {
    let mut dropped = 0;
    let mut state = session.state.lock();
    for (delivery, sent) in queue {
        match sent.and_then(|(id, released)| Some((mqttd_proto::PacketId::new(id)?, released))) {
            // In flight when the broker stopped: resent first, with its packet id.
            Some((packet_id, released)) => state.restore_inflight(delivery, packet_id, released),
            None if state.enqueue(delivery) != mqttd_core::Enqueued::Queued => dropped += 1,
            None => {}
        }
    }
    drop(state);
    if dropped > 0 {
        tracing::warn!(client_id = %session.client_id, dropped, "restored queue over its limits");
    }
}

/// A stored message as the broker holds it (its payload sharing the stored bytes); `None` once expired.
fn live_message(m: &RawMessage, topic: Option<String>, now_ms: u64, now: Instant) -> Option<Message> {
    let (topic, payload, qos, retain, properties, expires_at_ms) = m.parts(topic)?;
    let expires_at = match expires_at_ms {
        0 => None,
        at if at <= now_ms => return None,
        at => Some(now + Duration::from_millis(at - now_ms)),
    };
    Some(Message {
        topic,
        payload,
        qos,
        retain,
        properties: properties.and_then(Message::store_properties),
        expires_at,
        origin: 0,
        stored: Default::default(),
    })
}

/// A message as stored ([`RawMessage`]).
pub(crate) fn raw_message(m: &Message) -> RawMessage {
    RawMessage::from_parts(&m.topic, &m.payload, m.qos, m.retain, m.properties(), expires_at_ms(m))
}

/// When a message expires, as wall-clock time (ms since the epoch; 0: never).
fn expires_at_ms(m: &Message) -> u64 {
    m.expires_at.map_or(0, |at| now_ms() + at.saturating_duration_since(Instant::now()).as_millis() as u64)
}
