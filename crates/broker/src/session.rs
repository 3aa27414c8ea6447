//! Sessions in the broker: attaching a connection (with takeover), detaching it (with the will and the
//! session expiry), and the delayed tasks for wills and expiry. This module owns the takeover protocol.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqttd_core::{Delivery, MemoryUse, Message, QueueLimits, SessionState};
use mqttd_proto::{SubscriptionOptions, Will};
use parking_lot::Mutex;

use crate::broker::{Broker, ClientIdentity, Stats};
use crate::observe::{EventKind, WillCount};

/// How long a session lives after its connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Ends with the connection (clean session, or Session Expiry Interval 0).
    Immediate,
    After(Duration),
    Never,
}

impl Expiry {
    /// From a 5.0 Session Expiry Interval in seconds (0xFFFFFFFF means never [MQTT-3.1.2-?]).
    pub fn from_v5(seconds: u32) -> Expiry {
        match seconds {
            0 => Expiry::Immediate,
            u32::MAX => Expiry::Never,
            s => Expiry::After(Duration::from_secs(u64::from(s))),
        }
    }
}

/// What a session knows about itself beyond its queues: owner, will, subscriptions, expiry.
#[derive(Debug)]
pub struct Control {
    /// The attached connection's id; 0 when none is attached.
    pub owner: u64,
    pub identity: ClientIdentity,
    /// The will of the attached connection, taken exactly once: on abnormal end or on takeover.
    pub will: Option<Box<Will>>,
    /// Subscriptions by filter, with their subscription identifiers: to remove them from the tree, and
    /// for the durable store.
    pub subscriptions: BTreeMap<String, (SubscriptionOptions, Option<u32>)>,
    pub expiry: Expiry,
    /// Bumped whenever a connection attaches or the session ends, so delayed tasks can tell if they still
    /// apply.
    pub epoch: u64,
    /// A will waiting for its Will Delay Interval [MQTT-3.1.3-9].
    pub pending_will: Option<Box<Will>>,
}

/// A session: shared by its connection task and every publisher that delivers to it.
#[derive(Debug)]
pub struct Session {
    /// Unique per session instance; the subscription tree key and the No Local origin.
    pub id: u64,
    pub client_id: Arc<str>,
    /// Queues and inflight window; locked briefly by publishers (enqueue) and the connection (drain).
    /// Holds the attached connection task's waker ([`Session::wake`]).
    pub state: Mutex<SessionState>,
    /// Publishers waiting for this session's queue to drain (backpressure); when there are any, the
    /// connection wakes them through `Broker::drained` as the queue empties.
    pub waiting: AtomicU32,
    /// Ownership, will, subscriptions; never held while `state` is locked by the same thread.
    pub control: Mutex<Control>,
    /// When the connection last wrote deliveries or the outbox last became non-empty, in [`clock`]
    /// nanoseconds; tells a slow subscriber from one that stopped reading.
    pub progress: AtomicU64,
    /// The attached connection's id (0: none). Atomic so a replaced connection sees, under the `state`
    /// lock, that it must stop draining the outbox, and ends (takeover [MQTT-3.1.4-3]).
    pub connection: AtomicU64,
    /// When the attached connection's keep-alive allowance runs out, in [`clock`] nanoseconds (0: none);
    /// the connection moves it on with every control packet. The broker's sweeper sets it to
    /// [`KEEP_ALIVE_EXPIRED`] once passed and wakes the connection, which then ends.
    pub keep_alive_deadline: AtomicU64,
    /// When the attached plain-TCP connection last woke, in [`clock`] nanoseconds; 0 while no connection
    /// that can park is running. The sweeper sets it to [`PARK_REQUESTED`] once the connection has been
    /// quiet for `park_after` and wakes it; the connection then parks (`park.rs`) if it holds nothing.
    pub active: AtomicU64,
}

impl Session {
    fn new(id: u64, identity: ClientIdentity, limits: Arc<QueueLimits>, usage: Arc<MemoryUse>) -> Session {
        Session {
            id,
            client_id: identity.client_id.clone(),
            state: Mutex::new(SessionState::counted(limits, usage)),
            waiting: AtomicU32::new(0),
            progress: AtomicU64::new(clock()),
            connection: AtomicU64::new(0),
            keep_alive_deadline: AtomicU64::new(0),
            active: AtomicU64::new(0),
            control: Mutex::new(Control {
                owner: 0,
                identity,
                will: None,
                subscriptions: BTreeMap::new(),
                expiry: Expiry::Immediate,
                epoch: 0,
                pending_will: None,
            }),
        }
    }

    /// Wakes the attached connection's task (if it waits): it drains the outbox and checks for takeover,
    /// shutdown and keep-alive.
    pub fn wake(&self) {
        let waker = self.state.lock().take_waker();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Tells the attached connection its session was taken over or ended: it sees that `connection` is no
    /// longer its own, sends DISCONNECT 0x8E (5.0) and ends.
    fn kick(&self) {
        self.connection.store(0, Ordering::Release);
        self.wake();
    }

    /// Asks a connection quiet since before `now - after` to park; true if it is to be woken for that.
    pub(crate) fn request_park(&self, now: u64, after: u64) -> bool {
        let active = self.active.load(Ordering::Relaxed);
        active > PARK_REQUESTED
            && now.saturating_sub(active) >= after
            && self.active.compare_exchange(active, PARK_REQUESTED, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Records that deliveries were written to the client.
    pub fn made_progress(&self) {
        self.progress.store(clock(), Ordering::Relaxed);
    }

    /// Whether deliveries were written within the last [`STALL`]: a subscriber that still reads.
    pub fn progressing(&self) -> bool {
        clock().saturating_sub(self.progress.load(Ordering::Relaxed)) < STALL.as_nanos() as u64
    }

    /// Who owns this session, for authorization.
    pub fn identity(&self) -> ClientIdentity {
        self.control.lock().identity.clone()
    }
}

/// What a new connection asks of the session registry.
#[derive(Debug)]
pub struct Attach {
    pub identity: ClientIdentity,
    pub clean_start: bool,
    pub expiry: Expiry,
    pub will: Option<Will>,
    /// The connection attaching (never 0).
    pub connection_id: u64,
}

/// What happened to a will when a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WillOutcome {
    None,
    Published,
    Delayed(Duration),
    /// Normal DISCONNECT: the will is discarded [MQTT-3.1.2-10].
    Discarded,
    /// The owner may not publish to the will topic.
    Denied,
    /// Taken over: decided by the new connection.
    HandedOver,
}

impl std::fmt::Display for WillOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WillOutcome::None => f.write_str("no will"),
            WillOutcome::Published => f.write_str("will published"),
            WillOutcome::Delayed(d) => write!(f, "will delayed {}s", d.as_secs()),
            WillOutcome::Discarded => f.write_str("will discarded (normal disconnect)"),
            WillOutcome::Denied => f.write_str("will not published: not authorized"),
            WillOutcome::HandedOver => f.write_str("will handled by takeover"),
        }
    }
}

impl Broker {
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
        let Some(session) = self.sessions.lock().get(client_id).cloned() else { return false };
        let owned = session.control.lock().owner != 0;
        if owned {
            session.kick();
        }
        owned
    }

    /// Ends the connection attached to `client_id`'s session because an operator asked (5.0: DISCONNECT
    /// 0x98 Administrative action), publishing its will only if `with_will` (as Mosquitto's
    /// `mosquitto_kick_client_by_clientid`). False when no connection is attached.
    pub fn kick_client(&self, client_id: &str, with_will: bool) -> bool {
        let Some(session) = self.session(client_id) else { return false };
        let ctl = session.control.lock();
        let mark = if with_will { KICKED_WITH_WILL } else { KICKED };
        // Only the connection that owns the session now: one attaching meanwhile is not kicked.
        let kicked = ctl.owner != 0
            && session.connection.compare_exchange(ctl.owner, mark, Ordering::AcqRel, Ordering::Acquire).is_ok();
        drop(ctl);
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
            let Some(session) = self.session(client_id) else { return false };
            let (owner, epoch) = {
                let ctl = session.control.lock();
                (ctl.owner, ctl.epoch)
            };
            if owner == 0 {
                self.end_session(&session, epoch);
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
        let session = self.sessions.lock().get(client_id).cloned();
        session.is_some_and(|s| s.control.lock().owner != 0)
    }

    /// Attaches a connection to the session of its client id: resumes or discards an existing one per
    /// Clean Start. Returns the session and Session Present. A connection still attached
    /// ([`Broker::await_release`] gave up waiting for it) is taken over at once.
    pub fn attach(self: &Arc<Self>, attach: Attach) -> (Arc<Session>, bool) {
        let client_id = attach.identity.client_id.clone();
        let connection_id = attach.connection_id;
        let mut sessions = self.sessions.lock();
        let existing = sessions.get(&client_id).cloned();
        let mut resumed = None;
        if let Some(old) = existing {
            let mut ctl = old.control.lock();
            if std::mem::take(&mut ctl.owner) != 0 {
                old.kick();
            }
            let old_will = ctl.will.take();
            ctl.epoch += 1;
            // A new connection within the Will Delay Interval: the pending will is not sent
            // [MQTT-3.1.3-9], whether the session continues or not (as Mosquitto).
            if ctl.pending_will.take().is_some() {
                self.counters.will(WillCount::CancelledByReconnect);
            }
            // A clean session ends with its connection [MQTT-3.1.2-6]: there is nothing to resume.
            let ended = ctl.expiry == Expiry::Immediate;
            if attach.clean_start || ended {
                drop(ctl);
                // The old connection was still attached (taken over at once): its will goes out.
                if let Some(will) = old_will {
                    self.publish_will(&old, will);
                }
                self.remove_subscriptions(&old);
                sessions.remove(&client_id);
                self.persist_end(&client_id);
            } else {
                // The session continues: a will with a delay is not sent [MQTT-3.1.3-9]; without one it is.
                if let Some(will) = old_will {
                    if will_delay(&will).is_zero() {
                        drop(ctl);
                        self.publish_will(&old, will);
                        ctl = old.control.lock();
                    }
                }
                ctl.identity = attach.identity.clone();
                ctl.owner = connection_id;
                ctl.will = attach.will.clone().map(Box::new);
                ctl.expiry = attach.expiry;
                drop(ctl);
                resumed = Some(old);
            }
        }
        if let Some(session) = resumed {
            // The old connection's keep-alive is not the new one's (which may have none).
            session.keep_alive_deadline.store(0, Ordering::Relaxed);
            session.active.store(0, Ordering::Relaxed);
            session.connection.store(connection_id, Ordering::Release);
            let mut state = session.state.lock();
            state.online = true;
            state.durable = self.store().is_some() && attach.expiry != Expiry::Immediate;
            state.resume();
            drop(state);
            return (session, true);
        }
        let session =
            Arc::new(Session::new(self.next_id(), attach.identity, self.queue_limits.clone(), self.memory.clone()));
        let ctl_expiry = attach.expiry;
        {
            let mut ctl = session.control.lock();
            ctl.owner = connection_id;
            ctl.will = attach.will.map(Box::new);
            ctl.expiry = attach.expiry;
        }
        session.connection.store(connection_id, Ordering::Release);
        {
            let mut state = session.state.lock();
            state.online = true;
            state.durable = self.store().is_some() && ctl_expiry != Expiry::Immediate;
        }
        sessions.insert(client_id, session.clone());
        (session, false)
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
        let mut ctl = session.control.lock();
        if ctl.owner != connection_id {
            return WillOutcome::HandedOver;
        }
        ctl.owner = 0;
        session.connection.store(0, Ordering::Release);
        session.keep_alive_deadline.store(0, Ordering::Relaxed);
        session.active.store(0, Ordering::Relaxed);
        if let Some(e) = expiry {
            ctl.expiry = e;
        }
        let will = ctl.will.take();
        ctl.epoch += 1;
        let epoch = ctl.epoch;
        let expiry = ctl.expiry;
        drop(ctl);
        let stale_waker = {
            let mut state = session.state.lock();
            state.online = false;
            // The task is ending: its waker would keep its memory alive for as long as the session lasts.
            state.take_waker()
        };
        drop(stale_waker);
        // A new connection may be waiting for this one to end (`await_release`).
        self.released.notify_waiters();
        let outcome = match will {
            None => WillOutcome::None,
            Some(_) if !publish_will => {
                self.counters.will(WillCount::Discarded);
                WillOutcome::Discarded
            }
            Some(will) => {
                let delay = will_delay(&will);
                if delay.is_zero() || expiry == Expiry::Immediate {
                    self.publish_will(session, will)
                } else {
                    self.counters.will(WillCount::Delayed);
                    session.control.lock().pending_will = Some(will);
                    match expiry {
                        // The session ends first: its expiry publishes the pending will [MQTT-3.1.3-9].
                        Expiry::After(d) if d <= delay => WillOutcome::Delayed(d),
                        _ => {
                            self.schedule_will(session.clone(), epoch, delay);
                            WillOutcome::Delayed(delay)
                        }
                    }
                }
            }
        };
        match expiry {
            Expiry::Immediate => self.end_session(session, epoch),
            Expiry::After(d) => self.schedule_expiry(session.clone(), epoch, d),
            Expiry::Never => {}
        }
        if expiry != Expiry::Immediate {
            // Disconnected now, its will published, pending or gone.
            self.persist_session(session, crate::store::now_ms());
        }
        outcome
    }

    /// Publishes a will as its owner, if the owner may write its topic.
    pub fn publish_will(&self, session: &Session, will: Box<Will>) -> WillOutcome {
        let will = *will;
        let identity = session.identity();
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
        let expires_at = properties.message_expiry_interval.map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        let message = Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos.min(mqttd_proto::QoS::from_u8(self.settings.max_qos(identity.listener)).unwrap_or_default()),
            retain: will.retain,
            properties: Message::store_properties(properties),
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

    fn schedule_will(self: &Arc<Self>, session: Arc<Session>, epoch: u64, delay: Duration) {
        let broker = Arc::clone(self);
        // Weak: a session that ended meanwhile is let go at once, not when this task wakes.
        let session = Arc::downgrade(&session);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(session) = session.upgrade() else { return };
            let will = {
                let mut ctl = session.control.lock();
                if ctl.epoch != epoch {
                    return;
                }
                ctl.pending_will.take()
            };
            if let Some(will) = will {
                broker.publish_will(&session, will);
                tracing::info!(client_id = %session.client_id, "delayed will published");
                // The session lives on without its will (its disconnection time: the delay ago).
                let delay_ms = delay.as_millis() as u64;
                broker.persist_session(&session, crate::store::now_ms().saturating_sub(delay_ms));
            }
        });
    }

    fn schedule_expiry(self: &Arc<Self>, session: Arc<Session>, epoch: u64, after: Duration) {
        let broker = Arc::clone(self);
        // Weak: a session that ended meanwhile (taken over, discarded) is let go at once, with its queue
        // and its share of `memory_limit`, not when this task wakes.
        let session = Arc::downgrade(&session);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(session) = session.upgrade() {
                broker.end_session(&session, epoch);
            }
        });
    }

    /// Rebuilds a session from the durable store as disconnected at startup: its subscriptions, its
    /// queue, and its expiry counted from its disconnection. Its will waits for
    /// [`Broker::restart_session`], called once every session is back (a will may go to any of them).
    pub(crate) fn restore_session(
        self: &Arc<Self>,
        stored: &crate::store::StoredSession,
        queue: Vec<(Delivery, Option<(u16, bool)>)>,
        now_ms: u64,
    ) -> Arc<Session> {
        let identity = ClientIdentity {
            client_id: Arc::from(stored.client_id.as_str()),
            username: stored.username.as_deref().map(Arc::from),
            listener: stored.listener,
        };
        let expiry = crate::store::restore::remaining_expiry(stored, now_ms);
        let session = Arc::new(Session::new(self.next_id(), identity, self.queue_limits.clone(), self.memory.clone()));
        {
            let mut ctl = session.control.lock();
            ctl.expiry = expiry;
            ctl.epoch = 1;
        }
        for (filter, options, id) in &stored.subscriptions {
            self.subscribe(&session, filter, *options, *id);
        }
        let mut dropped = 0;
        {
            let mut state = session.state.lock();
            state.durable = expiry != Expiry::Immediate;
            for (delivery, sent) in queue {
                match sent.and_then(|(id, released)| Some((mqttd_proto::PacketId::new(id)?, released))) {
                    // In flight when the broker stopped: resent first, with its packet id.
                    Some((packet_id, released)) => state.restore_inflight(delivery, packet_id, released),
                    None if state.enqueue(delivery) != mqttd_core::Enqueued::Queued => dropped += 1,
                    None => {}
                }
            }
        }
        if dropped > 0 {
            tracing::warn!(client_id = %session.client_id, dropped, "restored queue over its limits");
        }
        self.sessions.lock().insert(session.client_id.clone(), session.clone());
        session
    }

    /// Starts a restored session's clock: its will fires once its delay, counted from now, has passed
    /// (unless the client is back first) and the session expires.
    pub(crate) fn restart_session(self: &Arc<Self>, session: &Arc<Session>, will: Option<Will>, now_ms: u64) {
        let expiry = session.control.lock().expiry;
        if let Some(will) = will.map(Box::new) {
            let delay = will_delay(&will);
            if delay.is_zero() || expiry == Expiry::Immediate {
                self.publish_will(session, will);
                if expiry != Expiry::Immediate {
                    self.persist_session(session, now_ms);
                }
            } else {
                session.control.lock().pending_will = Some(will);
                if !matches!(expiry, Expiry::After(d) if d <= delay) {
                    self.schedule_will(session.clone(), 1, delay);
                }
            }
        }
        match expiry {
            Expiry::Immediate => self.end_session(session, 1),
            Expiry::After(d) => self.schedule_expiry(session.clone(), 1, d),
            Expiry::Never => {}
        }
    }

    /// Ends a session that is still at `epoch` (no connection came back): its pending will goes out, its
    /// subscriptions and queue go away.
    fn end_session(&self, session: &Arc<Session>, epoch: u64) {
        let mut sessions = self.sessions.lock();
        let pending = {
            let mut ctl = session.control.lock();
            if ctl.epoch != epoch || ctl.owner != 0 {
                return;
            }
            ctl.epoch += 1;
            ctl.pending_will.take()
        };
        if sessions.get(&session.client_id).is_some_and(|s| Arc::ptr_eq(s, session)) {
            sessions.remove(&session.client_id);
            self.events.forget(&session.client_id);
            self.persist_end(&session.client_id);
        }
        drop(sessions);
        if let Some(will) = pending {
            self.publish_will(session, will);
        }
        self.remove_subscriptions(session);
        tracing::debug!(client_id = %session.client_id, "session ended");
    }

    /// The session ends: its subscriptions go, and what its shared subscriptions gave it that its client
    /// did not receive goes to other members of their groups [MQTT-4.8.2-6].
    pub(crate) fn remove_subscriptions(&self, session: &Session) {
        let filters = std::mem::take(&mut session.control.lock().subscriptions);
        for filter in filters.into_keys() {
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

/// The Will Delay Interval of a will (5.0; zero before).
pub fn will_delay(will: &Will) -> Duration {
    Duration::from_secs(u64::from(will.properties.will_delay_interval.unwrap_or(0)))
}

/// [`Session::keep_alive_deadline`] once the sweeper found it passed (never a real deadline: the clock
/// starts at 0 and deadlines lie at least a second ahead).
pub const KEEP_ALIVE_EXPIRED: u64 = 1;

/// [`Session::active`] once the sweeper asked the connection to park (never a real time: the clock starts
/// at 0 and connections store at least `PARK_REQUESTED + 1`).
pub const PARK_REQUESTED: u64 = 1;

/// [`Session::connection`] once an operator kicked the connection without its will (never a connection
/// id: ids count up from 1).
pub const KICKED: u64 = u64::MAX;

/// [`Session::connection`] once an operator kicked the connection with its will.
pub const KICKED_WITH_WILL: u64 = u64::MAX - 1;

/// A subscriber that wrote nothing for this long counts as stalled: publishers stop waiting for it.
pub const STALL: Duration = Duration::from_millis(200);

/// How long a new connection waits for the connection it takes over to handle what it had received
/// and end ([`Broker::await_release`]); past it, the takeover happens at once.
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

/// Monotonic nanoseconds since the first call; cheap to store in an atomic.
pub fn clock() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}
