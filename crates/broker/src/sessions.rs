//! The broker's side of the session registry: `mqttd_core::Registry` decides every change of a session
//! (attach and takeover, detach, wills, expiry, subscriptions); this file asks it, under the `sessions`
//! lock, and does the I/O its decisions call for: the events go to the durable store, fired wills are
//! routed, ended sessions leave the topic tree, connections are woken or kicked. One task drives the
//! registry's deadline queue (will delays, session expiry).

use std::collections::HashMap;
use std::sync::Arc;

use mqttd_core::{Changes, ClientIdentity, Discard, Entry, Event, Registry, Subscription, Time};
use mqttd_proto::{SubscriptionOptions, Will};
use tokio::sync::watch;

use crate::broker::{Broker, Stats};
use crate::observe::{EventKind, WillCount};
use crate::session::{Attach, Expiry, Session, Sessions, WillOutcome, TAKEOVER_WAIT};
use crate::shared::SharedFilter;

/// The registry's handle on a session: its runtime half.
type Handle = Option<Arc<Session>>;

/// What is left to do of the registry's changes once the `sessions` lock is released.
#[derive(Default)]
struct Aftermath {
    /// Wills that fired, with the session that owned them (the origin, for No Local) and its owner then.
    wills: Vec<(Arc<Session>, ClientIdentity, Will)>,
    /// Ended sessions and the filters they had.
    ended: Vec<(Arc<Session>, Vec<String>)>,
    /// The store's position once the recorded events are durable (0: nothing recorded).
    durable: u64,
}

impl Broker {
    /// The registry's clock: milliseconds since the Unix epoch as of the broker's start, moving on
    /// monotonically (a disconnection time survives a restart; a clock step does not move deadlines).
    pub(crate) fn now(&self) -> Time {
        Time::from_millis(self.clock_base_ms + self.started.elapsed().as_millis() as u64)
    }

    /// Applies the registry's `changes` under the `sessions` lock: appends the recorded events to the
    /// store (in the order the registry applied them), lets ended sessions go from the map, and wakes the
    /// deadline task if a deadline earlier than `before` appeared.
    fn record(&self, sessions: &mut Sessions, changes: Changes<Handle>, before: Option<Time>) -> Aftermath {
        let mut after = Aftermath::default();
        let store = self.store();
        let ended: Vec<(Handle, Vec<String>)> =
            changes.ended.into_iter().map(|e| (e.handle, e.subscriptions.into_keys().collect())).collect();
        for emitted in changes.events {
            if let Event::WillFired { client_id, will, .. } = &emitted.event {
                // Its session is still registered, or it ended in these same changes.
                let session = sessions.get(client_id).cloned().or_else(|| {
                    ended.iter().find_map(|(h, _)| h.as_ref().filter(|s| s.client_id == *client_id).cloned())
                });
                if let Some(session) = session {
                    after.wills.push((session.clone(), session.identity(), will.clone()));
                }
            }
            if emitted.recorded {
                self.share_event(sessions, &emitted.event);
            }
            if let Some(store) = store.filter(|_| emitted.recorded) {
                after.durable = store.append(&crate::store::Record::Session(emitted.event));
            }
        }
        after.ended = ended.into_iter().filter_map(|(h, filters)| Some((h?, filters))).collect();
        let next = sessions.registry.next_deadline();
        if next.is_some_and(|next| before.is_none_or(|before| next < before)) {
            self.deadlines_moved.notify_one();
        }
        after
    }

    /// The rest of [`Broker::record`], without the lock: wills are routed, ended sessions' subscriptions
    /// go. Returns what became of each will, by client id.
    fn settle(&self, after: Aftermath) -> Vec<(Arc<str>, WillOutcome)> {
        let mut outcomes = Vec::with_capacity(after.wills.len());
        for (session, identity, will) in after.wills {
            outcomes.push((session.client_id.clone(), self.publish_will(&session, identity, will)));
        }
        for (session, filters) in after.ended {
            self.events.forget(&session.client_id);
            self.remove_subscriptions(&session, filters);
            tracing::debug!(client_id = %session.client_id, "session ended");
        }
        outcomes
    }

    /// Attaches a connection to the session of its client id: resumes or discards an existing one per
    /// Clean Start. Returns the session, Session Present, and the store's position once the session is
    /// durable (CONNACK waits for it; 0: nothing to wait for). A connection still attached
    /// ([`Broker::await_release`] gave up waiting for it) is taken over at once.
    pub fn attach(self: &Arc<Self>, attach: Attach) -> (Arc<Session>, bool, u64) {
        let Attach { identity, clean_start, expiry, will, connection_id } = attach;
        let client_id = identity.client_id.clone();
        let ask =
            mqttd_core::Attach { identity: identity.clone(), connection: connection_id, clean_start, expiry, will };
        let now = self.now();
        let mut sessions = self.sessions.lock();
        let before = sessions.registry.next_deadline();
        let old = sessions.get(&client_id).cloned();
        let (changes, attached) = sessions.registry.attach(ask, now);
        if let Some(old) = old.as_ref().filter(|_| attached.kicked.is_some()) {
            // Still attached: told to end (`connection` is no longer its own) before the new one is set.
            old.kick();
        }
        let after = self.record(&mut sessions, changes, before);
        let session = match old {
            Some(session) if attached.present => session,
            _ => {
                let session =
                    Session::new(self.next_id(), identity.clone(), self.queue_limits.clone(), self.memory.clone());
                let session = Arc::new(session);
                if let Some(handle) = sessions.registry.handle_mut(&client_id) {
                    *handle = Some(session.clone());
                }
                session
            }
        };
        session.attached(connection_id, self.store().is_some() && expiry != Expiry::Immediate, attached.present);
        // The old owner's will (taken over at once) was noted with the old owner's identity.
        session.set_identity(identity);
        drop(sessions);
        if attached.cancelled_will {
            self.counters.will(WillCount::CancelledByReconnect);
        }
        let durable = after.durable;
        self.settle(after);
        (session, attached.present, durable)
    }

    /// Detaches connection `connection_id` from `session`. `publish_will` is false after a normal
    /// DISCONNECT. `expiry` overrides the session expiry (5.0 DISCONNECT may change it).
    pub fn detach(
        self: &Arc<Self>,
        session: &Arc<Session>,
        connection_id: u64,
        publish_will: bool,
        expiry: Option<Expiry>,
    ) -> WillOutcome {
        let now = self.now();
        let mut sessions = self.sessions.lock();
        if !sessions.current(session) {
            return WillOutcome::HandedOver;
        }
        let before = sessions.registry.next_deadline();
        let (changes, outcome) = sessions.registry.detach(&session.client_id, connection_id, now, publish_will, expiry);
        if outcome == mqttd_core::WillOutcome::HandedOver {
            return WillOutcome::HandedOver;
        }
        session.detached();
        let after = self.record(&mut sessions, changes, before);
        drop(sessions);
        // A new connection may be waiting for this one to end (`await_release`).
        self.released.notify_waiters();
        let published = self.settle(after);
        match outcome {
            mqttd_core::WillOutcome::None => WillOutcome::None,
            mqttd_core::WillOutcome::Discarded => {
                self.counters.will(WillCount::Discarded);
                WillOutcome::Discarded
            }
            mqttd_core::WillOutcome::Delayed(d) => {
                self.counters.will(WillCount::Delayed);
                WillOutcome::Delayed(d)
            }
            mqttd_core::WillOutcome::Fired => published
                .into_iter()
                .find(|(c, _)| *c == session.client_id)
                .map_or(WillOutcome::Published, |(_, outcome)| outcome),
            mqttd_core::WillOutcome::HandedOver => WillOutcome::HandedOver,
        }
    }

    /// Runs whatever of the registry's deadlines has fallen due: delayed wills, expired sessions.
    pub(crate) fn tick_deadlines(&self) {
        let now = self.now();
        let mut sessions = self.sessions.lock();
        let before = sessions.registry.next_deadline();
        let changes = sessions.registry.tick(now);
        if changes.events.is_empty() {
            return;
        }
        let after = self.record(&mut sessions, changes, before);
        drop(sessions);
        for (client_id, _) in self.settle(after) {
            tracing::info!(%client_id, "delayed will published");
        }
    }

    /// Adds or replaces `session`'s subscription to `filter` (a valid filter; a shared one well formed):
    /// in the registry and in the tree, or the shared subscription group. Returns whether it is new, and
    /// the store's position once it is durable (SUBACK waits for it; 0: nothing to wait for).
    pub(crate) fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &str,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> (bool, u64) {
        if matches!(SharedFilter::parse(filter), Some(Err(_))) {
            return (false, 0);
        }
        let mut sessions = self.sessions.lock();
        // A session that ended meanwhile (taken over with Clean Start) subscribes to nothing.
        if !sessions.current(session) {
            return (false, 0);
        }
        let changes = sessions.registry.subscribe(&session.client_id, filter, Subscription { options, identifier });
        // No deadline moves: the deadline task is not woken.
        let unchanged = sessions.registry.next_deadline();
        let durable = self.record(&mut sessions, changes, unchanged).durable;
        (self.insert_subscription(session, filter, options, identifier), durable)
    }

    /// Removes `session`'s subscription to `filter`; returns whether it existed, and the store's position
    /// once that is durable.
    pub(crate) fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> (bool, u64) {
        let mut sessions = self.sessions.lock();
        let durable = match sessions.current(session) {
            true => {
                let changes = sessions.registry.unsubscribe(&session.client_id, filter);
                let unchanged = sessions.registry.next_deadline();
                self.record(&mut sessions, changes, unchanged).durable
            }
            false => 0,
        };
        drop(sessions);
        (self.unsubscribe_filter(session.id, filter), durable)
    }

    /// What the registry holds of `client_id`'s session (for the admin API).
    pub fn session_entry(&self, client_id: &str) -> Option<Entry> {
        self.sessions.lock().registry.get(client_id).map(Entry::without_handle)
    }

    /// Before a new connection takes over client id `client_id`: tells the connection attached to it, if
    /// any, to end, and waits (at most [`TAKEOVER_WAIT`]) until it has. The old connection first handles
    /// every packet it had received (`Client::last_words`), so what the client sent before it connected
    /// again takes effect first, in order: a DISCONNECT deletes the will [MQTT-3.1.2-10] and applies its
    /// Session Expiry, a PUBLISH is routed. Only then does the new connection get the session
    /// [MQTT-3.1.4-3].
    pub async fn await_release(&self, client_id: &str) {
        let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.kick_owner(client_id) {
                return;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                tracing::warn!(%client_id, "the connection taken over did not end in time: taken over at once");
                return;
            }
        }
    }

    /// Tells the connection attached to `client_id`'s session, if one is, to end; true if one is.
    pub(crate) fn kick_owner(&self, client_id: &str) -> bool {
        let sessions = self.sessions.lock();
        if sessions.registry.owner(client_id) == 0 {
            return false;
        }
        if let Some(session) = sessions.get(client_id) {
            session.kick();
        }
        true
    }

    /// Ends the connection attached to `client_id`'s session because an operator asked (5.0: DISCONNECT
    /// 0x98 Administrative action), publishing its will only if `with_will` (as Mosquitto's
    /// `mosquitto_kick_client_by_clientid`). False when no connection is attached.
    pub fn kick_client(&self, client_id: &str, with_will: bool) -> bool {
        use std::sync::atomic::Ordering;
        let sessions = self.sessions.lock();
        let owner = sessions.registry.owner(client_id);
        let Some(session) = sessions.get(client_id).cloned() else { return false };
        drop(sessions);
        let mark = if with_will { crate::session::KICKED_WITH_WILL } else { crate::session::KICKED };
        // Only the connection that owns the session now: one attaching meanwhile is not kicked.
        let kicked =
            owner != 0 && session.connection.compare_exchange(owner, mark, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if kicked {
            session.wake();
            self.events.record(&session.client_id, || EventKind::Kicked);
        }
        kicked
    }

    /// Ends `client_id`'s session (subscriptions, queue, a pending will goes out) once no connection is
    /// attached; a connection still attached is first kicked (without its will) and waited for, at most
    /// [`TAKEOVER_WAIT`]. False if there is no such session or its connection did not end in time.
    pub async fn discard_session(&self, client_id: &str) -> bool {
        let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let now = self.now();
            let ended = {
                let mut sessions = self.sessions.lock();
                let before = sessions.registry.next_deadline();
                match sessions.registry.discard(client_id, now) {
                    (_, Discard::NoSession) => return false,
                    (changes, Discard::Ended) => Some(self.record(&mut sessions, changes, before)),
                    (_, Discard::Attached(_)) => None,
                }
            };
            if let Some(after) = ended {
                self.settle(after);
                return true;
            }
            self.kick_client(client_id, false);
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return false;
            }
        }
    }

    /// Whether a connection is attached to `client_id`'s session.
    pub(crate) fn is_attached(&self, client_id: &str) -> bool {
        self.sessions.lock().registry.owner(client_id) != 0
    }

    /// Publishes a will as its owner `identity`, if the owner may write its topic.
    fn publish_will(&self, session: &Session, identity: ClientIdentity, will: Will) -> WillOutcome {
        if !self.may_write(&identity, &will.topic) {
            tracing::info!(client_id = %identity.client_id, topic = %will.topic, "will dropped: not authorized");
            self.counters.will(WillCount::Denied);
            return WillOutcome::Denied;
        }
        self.counters.will(WillCount::Published);
        tracing::info!(client_id = %identity.client_id, "will of {} published to '{}'", identity.client_id, will.topic);
        self.events.record(&session.client_id, || EventKind::WillPublished { topic: will.topic.clone() });
        let mut properties = will.properties;
        properties.will_delay_interval = None;
        let expires_at = properties
            .message_expiry_interval
            .map(|s| std::time::Instant::now() + std::time::Duration::from_secs(u64::from(s)));
        let max_qos = mqttd_proto::QoS::from_u8(self.settings.max_qos(identity.listener)).unwrap_or_default();
        let message = mqttd_core::Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos.min(max_qos),
            retain: will.retain,
            properties: mqttd_core::Message::store_properties(properties),
            expires_at,
            origin: session.id,
            stored: Default::default(),
        };
        match self.cluster.get() {
            // Once in the whole cluster, even if another node fires it too (issue 18).
            Some(cluster) => cluster.publish_will(&session.client_id, Arc::new(message)),
            None => {
                self.route(Arc::new(message));
            }
        }
        WillOutcome::Published
    }

    /// A session of the durable store, rebuilt as the registry replayed it: its runtime half, its
    /// subscriptions in the tree. Not yet in the map: [`Broker::restart_sessions`] puts every one there.
    pub(crate) fn restored_session(&self, entry: &Entry) -> Arc<Session> {
        let session =
            Session::new(self.next_id(), entry.identity.clone(), self.queue_limits.clone(), self.memory.clone());
        let session = Arc::new(session);
        for (filter, s) in &entry.subscriptions {
            self.insert_subscription(&session, filter, s.options, s.identifier);
        }
        session.state.lock().durable = entry.expiry != Expiry::Immediate;
        session
    }

    /// Takes the registry the store replayed, with the runtime half of each of its sessions, and starts
    /// its clock: every session that had a connection at the crash is disconnected now; wills whose delay
    /// passed while the broker was down fire, sessions that expired meanwhile end. Called once every
    /// session is back (a will may go to any of them), before any listener accepts.
    pub(crate) fn restart_sessions(&self, registry: Registry, mut live: HashMap<Arc<str>, Arc<Session>>) {
        let now = self.now();
        let registry = registry.with_handles(|entry| live.remove(&entry.identity.client_id));
        let mut sessions = self.sessions.lock();
        *sessions = Sessions { registry };
        let changes = sessions.registry.restart(now);
        let after = self.record(&mut sessions, changes, None);
        drop(sessions);
        self.settle(after);
    }

    /// The session ends: its subscriptions go, and what its shared subscriptions gave it that its client
    /// did not receive goes to other members of their groups [MQTT-4.8.2-6].
    pub(crate) fn remove_subscriptions(&self, session: &Session, filters: Vec<String>) {
        for filter in filters {
            self.unsubscribe_filter(session.id, &filter);
        }
        let taken = session.state.lock().take_shared();
        for delivery in taken {
            match self.shared.reassign(delivery, session.id, self.settings.shared_strategy) {
                Some(chosen) => {
                    self.deliver(&chosen.session, chosen.delivery);
                }
                None => {
                    Stats::add(&self.stats.messages_dropped, 1);
                    tracing::info!(client_id = %session.client_id, "shared subscription message dropped: no other member");
                }
            }
        }
    }
}

/// Drives the registry's deadline queue until shutdown: sleeps until the earliest deadline, or until an
/// earlier one is scheduled (`Broker::deadlines_moved`), then runs what fell due. The only timer of will
/// delays and session expiry: no task per session.
pub(crate) async fn run_deadlines(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let next = broker.sessions.lock().registry.next_deadline();
        let wait = next.map(|at| at.since(broker.now()));
        let due = async {
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            // A permit is kept if no one waits: a deadline scheduled after `next` was read is not missed.
            _ = broker.deadlines_moved.notified() => {}
            _ = due => broker.tick_deadlines(),
        }
    }
}
