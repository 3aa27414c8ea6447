//! The shared broker state: sessions by client id, the subscription tree, retained messages, counters.
//! Publishing tasks route messages themselves: match the tree, authorize, push into outboxes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mqttd_core::{Delivery, Enqueued, Match, MemoryUse, Message, Retained, TopicTree};
use mqttd_proto::QoS;
use parking_lot::{Mutex, RwLock};

use crate::security::{Security, SecuritySet};
use crate::session::Session;
use crate::settings::Settings;
use mqttd_auth::Access;

/// Counters behind `$SYS/broker/...`.
#[derive(Debug, Default)]
pub struct Stats {
    pub clients_connected: AtomicU64,
    pub clients_total_connects: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub messages_dropped: AtomicU64,
    /// Connections parked now (`park.rs`): idle, without a task.
    pub clients_parked: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Memory queued for an online subscriber (`SessionState::backlog`: entries plus their share of the
/// messages) above which its publishers yield before reading more.
pub const CONGESTED_BACKLOG: usize = 16 * 1024;
/// Memory queued for an online subscriber above which its publishers wait for it, whatever the configured
/// queue limits (`max_queued_messages 0` included): memory stays bounded under overload.
pub const WAIT_BACKLOG: usize = 2 * CONGESTED_BACKLOG;
/// Memory queued below which waiting publishers resume (hysteresis: they do not wake for every message).
pub const RELIEVED_BACKLOG: usize = CONGESTED_BACKLOG / 2;

/// How often [`Broker::sweep_keep_alive`] runs: keep-alive ends come at most this late.
pub const KEEP_ALIVE_SWEEP: std::time::Duration = std::time::Duration::from_millis(250);

/// What routing a message did.
#[derive(Debug, Clone, Default)]
pub struct Routed {
    /// Sessions that queued it.
    pub reached: usize,
    /// A subscriber's queue is past [`CONGESTED_BACKLOG`]: the publisher should yield to other tasks.
    pub busy: bool,
    /// An online subscriber whose queue is full while it still reads: the publisher waits for it to catch
    /// up before reading more. A subscriber that stopped reading ([`Session::progressing`] false) never
    /// slows its publishers down: its full queue drops messages instead.
    pub congested: Option<Arc<Session>>,
}

/// What [`Broker::deliver`] did with one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    Queued { backlog: usize, nearly_full: bool },
    Dropped,
}

/// Who is asking, for authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Shared with the session and the session registry's key: one allocation per client.
    pub client_id: Arc<str>,
    pub username: Option<Arc<str>>,
    /// Index of the listener the client connected through (for per-listener security).
    pub listener: u16,
}

/// The broker core shared by every connection task.
#[derive(Debug)]
pub struct Broker {
    pub settings: Settings,
    /// Sessions by client id. A mutex: takeover must check and replace atomically; held briefly.
    pub(crate) sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    /// Read-mostly: every publish reads it, only (un)subscribes write.
    pub(crate) tree: RwLock<TopicTree<Arc<Session>>>,
    /// Written by retained publishes, read on subscribe.
    pub(crate) retained: RwLock<Retained>,
    /// Swapped whole on SIGHUP; readers take an `Arc` snapshot and never hold the lock.
    security: RwLock<Arc<SecuritySet>>,
    /// Whether the current security has an ACL; routing skips the security snapshot when it has none.
    acl_active: AtomicBool,
    pub stats: Stats,
    pub started: Instant,
    next_id: AtomicU64,
    /// Set once by [`Broker::begin_shutdown`]; connections check it whenever they wake.
    shutting_down: AtomicBool,
    /// Wakes publishers waiting for a subscriber's queue to drain (backpressure); each re-checks its own.
    pub(crate) drained: tokio::sync::Notify,
    /// The outbox bounds of every session, shared.
    pub(crate) queue_limits: Arc<mqttd_core::QueueLimits>,
    /// What every session's queues hold, for `memory_limit`; shared with each `SessionState`.
    pub(crate) memory: Arc<MemoryUse>,
    /// [`Retained::bytes`], copied out under the retained write lock so publishers need not take it.
    retained_bytes: AtomicUsize,
    /// Where plain-TCP connections wait without a task (`park.rs`); set by `Server` when parking is on.
    pub(crate) parker: std::sync::OnceLock<Arc<crate::park::Parker>>,
}

impl Broker {
    pub fn new(settings: Settings) -> Broker {
        let settings_queue = settings.queue;
        let security = SecuritySet::new(vec![Arc::new(Security::anonymous(settings.allow_anonymous))]);
        Broker {
            settings,
            sessions: Mutex::new(HashMap::new()),
            tree: RwLock::new(TopicTree::default()),
            retained: RwLock::new(Retained::default()),
            acl_active: AtomicBool::new(security.any_acl),
            security: RwLock::new(Arc::new(security)),
            stats: Stats::default(),
            started: Instant::now(),
            next_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            drained: tokio::sync::Notify::new(),
            queue_limits: Arc::new(settings_queue),
            memory: Arc::default(),
            retained_bytes: AtomicUsize::new(0),
            parker: std::sync::OnceLock::new(),
        }
    }

    /// Whether the server is shutting down: connections end with 5.0 DISCONNECT 0x8B.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Tells every connection to end (each sees the flag when woken; one attaching later sees it at once).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        crate::park::Parker::close_connecting(self);
        self.wake_sessions(|_| true);
    }

    /// Wakes every connection whose keep-alive allowance ran out, so it ends [MQTT-3.1.2-24], and every
    /// connection quiet for `park_after`, so it parks. Called every [`KEEP_ALIVE_SWEEP`]: connections keep
    /// no timer of their own.
    pub fn sweep_keep_alive(&self) {
        use crate::session::KEEP_ALIVE_EXPIRED;
        let now = crate::session::clock();
        let park_after = self.settings.park_after.map(|d| d.as_nanos() as u64);
        self.wake_sessions(|s| {
            let deadline = s.keep_alive_deadline.load(Ordering::Relaxed);
            // Fails if the connection moved the deadline on meanwhile: a packet came in time.
            let expired = deadline > KEEP_ALIVE_EXPIRED
                && deadline <= now
                && s.keep_alive_deadline
                    .compare_exchange(deadline, KEEP_ALIVE_EXPIRED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
            expired || park_after.is_some_and(|after| s.request_park(now, after))
        });
    }

    /// Wakes the connection of every session `pick` chooses (woken after the registry lock is released).
    fn wake_sessions(&self, pick: impl Fn(&Session) -> bool) {
        let picked: Vec<Arc<Session>> = self.sessions.lock().values().filter(|s| pick(s)).cloned().collect();
        for session in picked {
            session.wake();
        }
    }

    /// A fresh identifier for a session or connection.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The current security settings.
    pub fn security(&self) -> Arc<SecuritySet> {
        self.security.read().clone()
    }

    /// Replaces the security settings (startup and SIGHUP); connections keep running.
    pub fn set_security(&self, set: SecuritySet) {
        let any_acl = set.any_acl;
        *self.security.write() = Arc::new(set);
        self.acl_active.store(any_acl, Ordering::Release);
    }

    /// The one authorization point for reading: every delivery passes here (with a snapshot of the
    /// security settings taken once per routed message).
    pub fn may_read_with(&self, security: &SecuritySet, reader: &Session, topic: &str) -> bool {
        if !security.any_acl {
            return true;
        }
        let id = reader.identity();
        security.get(usize::from(id.listener)).allows(id.username.as_deref(), &id.client_id, topic, Access::Read)
    }

    /// [`Broker::may_write`] for the owner of `session`, without looking it up when no ACL is loaded.
    pub fn may_write_session(&self, session: &Session, topic: &str) -> bool {
        !self.acl_active.load(Ordering::Acquire) || self.may_write(&session.identity(), topic)
    }

    /// The one authorization point for writing: publishes and wills pass here.
    pub fn may_write(&self, writer: &ClientIdentity, topic: &str) -> bool {
        let security = self.security();
        security.get(usize::from(writer.listener)).allows(
            writer.username.as_deref(),
            &writer.client_id,
            topic,
            Access::Write,
        )
    }

    /// Memory held for messages now: queued and inflight deliveries, and retained messages.
    pub fn memory_in_use(&self) -> usize {
        self.memory.bytes() + self.retained_bytes.load(Ordering::Relaxed)
    }

    /// Memory held by the sessions' queues alone (0 once every session has ended).
    pub fn queued_memory(&self) -> usize {
        self.memory.bytes()
    }

    /// Whether [`Broker::memory_in_use`] is past `memory_limit`: new publishes are refused.
    pub fn over_memory_limit(&self) -> bool {
        let limit = self.settings.memory_limit;
        limit > 0 && self.memory_in_use() > limit
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.tree.read().len()
    }

    /// Number of sessions, online or not.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// The session of `client_id`, online or not (for `$SYS`, administration and tests).
    pub fn session(&self, client_id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().get(client_id).cloned()
    }

    /// Routes a message: updates the retained store, then delivers to each matching session once, at the
    /// highest QoS of its matching subscriptions [MQTT-3.3.4-2].
    pub fn route(&self, message: Arc<Message>) -> Routed {
        if message.retain && self.settings.retain_available {
            let mut retained = self.retained.write();
            retained.set(message.clone());
            self.retained_bytes.store(retained.bytes(), Ordering::Relaxed);
        }
        let security = self.acl_active.load(Ordering::Acquire).then(|| self.security());
        let mut matches: Vec<Match<Arc<Session>>> = Vec::new();
        let filters = self.tree.read().matches(&message.topic, &mut matches);
        if filters > 1 && matches.len() > 1 {
            // Overlapping subscriptions of one session sit next to each other for the merge below.
            matches.sort_unstable_by_key(|m| m.subscriber.id);
        }
        let mut routed = Routed::default();
        let shared_by = u16::try_from(matches.len()).unwrap_or(u16::MAX);
        let mut i = 0;
        while i < matches.len() {
            let session = &matches[i].subscriber;
            let mut j = i;
            let mut qos = QoS::AtMostOnce;
            let mut retain_as_published = false;
            let mut wanted = false;
            let mut ids = Vec::new();
            let own = session.id == message.origin;
            while j < matches.len() && Arc::ptr_eq(&matches[j].subscriber, session) {
                let o = matches[j].options;
                j += 1;
                // No Local: this subscription does not get its own session's messages [MQTT-3.8.3-3];
                // other overlapping subscriptions of the session still do.
                if o.no_local && own {
                    continue;
                }
                wanted = true;
                qos = qos.max(o.qos);
                retain_as_published |= o.retain_as_published;
                ids.extend(matches[j - 1].subscription_id);
            }
            i = j;
            if !wanted {
                continue;
            }
            if security.as_ref().is_some_and(|s| !self.may_read_with(s, session, &message.topic)) {
                continue;
            }
            let delivery = Delivery {
                qos: qos.min(message.qos),
                // The RETAIN flag is cleared on normal delivery unless Retain As Published [MQTT-3.3.1-9].
                retain: retain_as_published && message.retain,
                message: message.clone(),
                subscription_ids: ids,
                shared_by,
            };
            match self.deliver(session, delivery) {
                Delivered::Queued { backlog, nearly_full } => {
                    routed.reached += 1;
                    routed.busy |= backlog > CONGESTED_BACKLOG;
                    let own = session.id == message.origin;
                    let long = nearly_full || backlog > WAIT_BACKLOG;
                    if long && !own && session.progressing() && routed.congested.is_none() {
                        routed.congested = Some(session.clone());
                    }
                }
                // A full queue of a subscriber that still reads: slow the publisher down too.
                Delivered::Dropped
                    if session.id != message.origin && session.progressing() && routed.congested.is_none() =>
                {
                    routed.congested = Some(session.clone());
                }
                Delivered::Dropped => {}
            }
        }
        routed
    }

    /// Offers a delivery to a session's outbox and wakes its connection.
    pub(crate) fn deliver(&self, session: &Session, delivery: Delivery) -> Delivered {
        let mut state = session.state.lock();
        let qos = delivery.qos;
        let outcome = state.enqueue(delivery);
        if outcome == Enqueued::DroppedFull && state.dropped.is_power_of_two() {
            // Logged at the 1st, 2nd, 4th, 8th... drop of a session: visible, but never a flood.
            let (dropped, queued, bytes) = (state.dropped, state.queued(), state.queued_bytes());
            tracing::warn!(client_id = %session.client_id, ?qos, dropped, queued, bytes, "queue full: message dropped");
        }
        if outcome == Enqueued::Queued && state.queued() == 1 {
            // The queue was empty: the stall clock starts now, not at the subscriber's last write.
            session.made_progress();
        }
        // An offline session's queue is not a reason to slow publishers down.
        let (backlog, nearly_full) = if state.online { (state.backlog(), state.nearly_full()) } else { (0, false) };
        let waker = if outcome == Enqueued::Queued { state.take_waker() } else { None };
        drop(state);
        if let Some(waker) = waker {
            wake(waker);
        }
        if outcome == Enqueued::Queued {
            Delivered::Queued { backlog, nearly_full }
        } else {
            Stats::add(&self.stats.messages_dropped, 1);
            Delivered::Dropped
        }
    }
}

thread_local! {
    /// Wake-ups held back while a connection handles the packets of one read ([`DeferWakes`]).
    static DEFERRED: std::cell::RefCell<Vec<std::task::Waker>> = const { std::cell::RefCell::new(Vec::new()) };
    static DEFERRING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Wakes a subscriber's connection now, or at the end of the current [`DeferWakes`] scope.
fn wake(waker: std::task::Waker) {
    if DEFERRING.get() {
        DEFERRED.with_borrow_mut(|d| d.push(waker));
    } else {
        waker.wake();
    }
}

/// While alive, wake-ups of subscribers are held back and sent together when it drops: a publisher
/// that routes a whole read's worth of messages wakes each subscriber once, after all of them are
/// queued, so subscribers write big batches instead of racing the publisher message by message.
pub(crate) struct DeferWakes(());

impl DeferWakes {
    pub(crate) fn start() -> DeferWakes {
        DEFERRING.set(true);
        DeferWakes(())
    }
}

impl Drop for DeferWakes {
    fn drop(&mut self) {
        DEFERRING.set(false);
        let wakers = DEFERRED.with_borrow_mut(std::mem::take);
        for waker in &wakers {
            waker.wake_by_ref();
        }
        // Keep the allocation for the next turn on this thread.
        DEFERRED.with_borrow_mut(|d| {
            if d.is_empty() {
                *d = wakers;
                d.clear();
            }
        });
    }
}
