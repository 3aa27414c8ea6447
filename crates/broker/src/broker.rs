//! The shared broker state: sessions by client id, the subscription tree, retained messages, counters.
//! Publishing tasks route messages themselves: match the tree, authorize, push into outboxes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mqttd_core::{Delivery, Enqueued, Match, MemoryUse, Message, Retained, TopicTree};
use mqttd_proto::{QoS, SubscriptionOptions};
use parking_lot::{Mutex, RwLock};

use crate::backpressure::{CONGESTED_BACKLOG, WAIT_BACKLOG};
use crate::security::{Security, SecuritySet};
use crate::session::Session;
use crate::settings::Settings;
use crate::shared::SharedFilter;
use mqttd_auth::Access;
pub use mqttd_core::ClientIdentity;

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
    /// MQTT packets handled after CONNECT, and packets written (`$SYS/broker/messages/...`, Mosquitto's
    /// meaning: every packet, not only PUBLISH).
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    /// PUBLISH payload bytes in and out (`$SYS/broker/publish/bytes/...`).
    pub publish_bytes_received: AtomicU64,
    pub publish_bytes_sent: AtomicU64,
    /// Connections parked now (`park.rs`): idle, without a task.
    pub clients_parked: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// How often [`Broker::sweep_keep_alive`] runs: keep-alive ends come at most this late.
pub const KEEP_ALIVE_SWEEP: std::time::Duration = std::time::Duration::from_millis(250);

/// Whether `reader` may read `topic` under `security` (which has an ACL).
pub(crate) fn may_read_as(security: &SecuritySet, reader: &ClientIdentity, topic: &str) -> bool {
    let listener = security.get(usize::from(reader.listener));
    listener.allows(reader.username.as_deref(), &reader.client_id, topic, Access::Read)
}

/// Whether a client may write to `topic` as far as `$SYS` goes: only the broker publishes under `$SYS`,
/// whatever the ACL says, except a bridge's `$SYS/broker/connection/<name>/state` (as Mosquitto's
/// `acl__check_dollar`, which also matches any topic starting with `$SYS`).
fn sys_writable(topic: &str) -> bool {
    let Some(rest) = topic.strip_prefix("$SYS") else { return true };
    let mut levels = rest.split('/');
    levels.next() == Some("")
        && levels.next() == Some("broker")
        && levels.next() == Some("connection")
        && levels.next().is_some()
        && levels.next() == Some("state")
        && levels.next().is_none()
}

/// What routing a message did.
#[derive(Debug, Clone, Default)]
pub struct Routed {
    /// Sessions that queued it.
    pub reached: usize,
    /// A subscriber's queue is past `backpressure::CONGESTED_BACKLOG`: the publisher should yield to other tasks.
    pub busy: bool,
    /// An online subscriber whose queue is full while it still reads: the publisher waits for it to catch
    /// up before reading more. A subscriber that stopped reading ([`Session::progressing`] false) never
    /// slows its publishers down: its full queue drops messages instead.
    pub congested: Option<Arc<Session>>,
    /// The durable store's position once the message is stored wherever it must be (retained, queued
    /// for persistent sessions): its acknowledgement waits for it. 0: nothing to wait for.
    pub durable: u64,
    /// Also sent to the other nodes of a cluster (`reached` counts this node's sessions only).
    pub clustered: bool,
}

/// What [`Broker::route_here`] routes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Here {
    /// Everything: a message accepted by this node.
    All,
    /// The plain subscriptions only: a message from another node of the cluster.
    Subscriptions,
}

/// What [`Broker::deliver`] did with one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// `durable`: the store's position once the delivery is stored (0: not stored).
    Queued {
        backlog: usize,
        nearly_full: bool,
        durable: u64,
    },
    Dropped,
}

/// The connections without a task (`park.rs`), as the broker keeps them: for the connection layer, which
/// gets its parker back with [`Any`](std::any::Any), and to close the sockets still waiting for their
/// CONNECT at shutdown.
pub(crate) trait Parking: std::any::Any + Send + Sync + std::fmt::Debug {
    /// Shutdown: sockets still waiting for their CONNECT close now.
    fn close_connecting(&self);
}

/// The broker core shared by every connection task.
#[derive(Debug)]
pub struct Broker {
    pub settings: Settings,
    /// The session registry and each session's runtime half, by client id (`sessions.rs`). A mutex:
    /// takeover must check and replace atomically; held briefly.
    pub(crate) sessions: Mutex<crate::session::Sessions>,
    /// Wakes the task that drives the registry's deadlines (`sessions::run_deadlines`) when an earlier
    /// deadline is scheduled; a `Notify` keeps the permit if the task is not waiting yet.
    pub(crate) deadlines_moved: tokio::sync::Notify,
    /// The registry's clock at `started`: milliseconds since the Unix epoch (`Broker::now`).
    pub(crate) clock_base_ms: u64,
    /// Read-mostly: every publish reads it, only (un)subscribes write.
    pub(crate) tree: RwLock<TopicTree<Arc<Session>>>,
    /// Shared subscription groups (`$share/...`): matched after the plain subscriptions.
    pub(crate) shared: crate::shared::SharedSubscriptions,
    /// Written by retained publishes, read on subscribe.
    pub(crate) retained: RwLock<Retained>,
    /// Swapped whole on SIGHUP; readers take an `Arc` snapshot and never hold the lock.
    security: RwLock<Arc<SecuritySet>>,
    /// Whether the current security has an ACL; routing skips the security snapshot when it has none.
    acl_active: AtomicBool,
    pub stats: Stats,
    /// Counters behind `GET /metrics` (`observe.rs`): atomics only.
    pub counters: crate::observe::Counters,
    /// Recent connects, disconnects, wills and refusals, recorded while an HTTP listener reads them.
    pub events: crate::observe::Events,
    pub started: Instant,
    next_id: AtomicU64,
    /// Set once by [`Broker::begin_shutdown`]; connections check it whenever they wake.
    shutting_down: AtomicBool,
    /// Wakes publishers waiting for a subscriber's queue to drain (backpressure); each re-checks its own.
    pub(crate) drained: tokio::sync::Notify,
    /// Wakes new connections waiting for a connection they take over to end ([`Broker::await_release`]);
    /// notified whenever a connection detaches from its session.
    pub(crate) released: tokio::sync::Notify,
    /// The outbox bounds of every session, shared.
    pub(crate) queue_limits: Arc<mqttd_core::QueueLimits>,
    /// The durable store, with `persistence true` (`store/`).
    pub(crate) store: std::sync::OnceLock<Arc<crate::store::Store>>,
    /// What every session's queues hold, for `memory_limit`; shared with each `SessionState`.
    pub(crate) memory: Arc<MemoryUse>,
    /// [`Retained::bytes`], copied out under the retained write lock so publishers need not take it.
    pub(crate) retained_bytes: AtomicUsize,
    /// Where plain-TCP connections wait without a task (`park.rs`); set by `Server` when parking is on.
    /// A trait object: the parker holds connections, which sit above the broker.
    pub(crate) parker: std::sync::OnceLock<Arc<dyn Parking>>,
    /// Who published each retained message, for `check_retain_source` (Mosquitto keeps it with the
    /// message). A weak reference tells a stale entry (the message was replaced or cleared) from the
    /// current one; stale entries are pruned as the map grows past the store. A mutex: written only by
    /// retained publishes, read by new subscriptions.
    retain_sources: Mutex<HashMap<String, (std::sync::Weak<Message>, ClientIdentity)>>,
    /// The cluster this node belongs to (`cluster.rs`), set once at startup; unset on a single broker.
    pub(crate) cluster: std::sync::OnceLock<Arc<dyn mqttd_core::cluster::ClusterHooks>>,
}

impl Broker {
    pub fn new(settings: Settings) -> Broker {
        let settings_queue = settings.queue;
        let security = SecuritySet::new(vec![Arc::new(Security::anonymous(settings.allow_anonymous))]);
        Broker {
            settings,
            sessions: Mutex::default(),
            deadlines_moved: tokio::sync::Notify::new(),
            clock_base_ms: crate::store::now_ms(),
            tree: RwLock::new(TopicTree::default()),
            shared: Default::default(),
            retained: RwLock::new(Retained::default()),
            acl_active: AtomicBool::new(security.any_acl),
            security: RwLock::new(Arc::new(security)),
            stats: Stats::default(),
            counters: Default::default(),
            events: Default::default(),
            started: Instant::now(),
            next_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            drained: tokio::sync::Notify::new(),
            released: tokio::sync::Notify::new(),
            queue_limits: Arc::new(settings_queue),
            memory: Arc::default(),
            retained_bytes: AtomicUsize::new(0),
            parker: std::sync::OnceLock::new(),
            store: std::sync::OnceLock::new(),
            retain_sources: Mutex::new(HashMap::new()),
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// Whether the server is shutting down: connections end with 5.0 DISCONNECT 0x8B.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Tells every connection to end (each sees the flag when woken; one attaching later sees it at once).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        if let Some(parker) = self.parker.get() {
            parker.close_connecting();
        }
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
        may_read_as(security, &reader.identity(), topic)
    }

    /// The security settings to check deliveries against as they leave an outbox, when an ACL is loaded:
    /// with the reader's identity, taken before the outbox is locked (lock order: the session's `identity` before `state`).
    pub(crate) fn read_check(&self, reader: &Session) -> Option<(Arc<SecuritySet>, ClientIdentity)> {
        if !self.acl_active.load(Ordering::Acquire) {
            return None;
        }
        let security = self.security();
        security.any_acl.then(|| (security, reader.identity()))
    }

    /// A snapshot of the security settings for routing one message, when an ACL is loaded.
    pub(crate) fn read_security(&self) -> Option<Arc<SecuritySet>> {
        self.acl_active.load(Ordering::Acquire).then(|| self.security())
    }

    /// [`Broker::may_write`] for the owner of `session`, without looking it up when no ACL is loaded.
    pub fn may_write_session(&self, session: &Session, topic: &str) -> bool {
        if !self.acl_active.load(Ordering::Acquire) {
            return sys_writable(topic);
        }
        self.may_write(&session.identity(), topic)
    }

    /// The one authorization point for writing: publishes and wills pass here.
    pub fn may_write(&self, writer: &ClientIdentity, topic: &str) -> bool {
        if !sys_writable(topic) {
            return false;
        }
        let security = self.security();
        security.get(usize::from(writer.listener)).allows(
            writer.username.as_deref(),
            &writer.client_id,
            topic,
            Access::Write,
        )
    }

    /// Records who published the retained `message` (`check_retain_source`).
    pub(crate) fn note_retain_source(&self, message: &Arc<Message>, source: ClientIdentity) {
        let retained = self.retained_count();
        let mut sources = self.retain_sources.lock();
        sources.insert(message.topic.clone(), (Arc::downgrade(message), source));
        if sources.len() > 2 * retained + 64 {
            sources.retain(|_, (weak, _)| weak.strong_count() > 0);
        }
    }

    /// `check_retain_source`: whether the publisher of the retained `message` may still write its topic
    /// (the ACL may have changed since); true when its publisher is unknown (the broker's own messages).
    pub(crate) fn retain_source_allowed(&self, message: &Arc<Message>) -> bool {
        if !self.settings.check_retain_source || !self.acl_active.load(Ordering::Acquire) {
            return true;
        }
        let source = match self.retain_sources.lock().get(&message.topic) {
            Some((weak, source)) if std::ptr::eq(weak.as_ptr(), Arc::as_ptr(message)) => source.clone(),
            _ => return true,
        };
        self.may_write(&source, &message.topic)
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

    /// Messages the broker holds (retained, and queued for sessions) and their bytes (retained payloads,
    /// queued deliveries by their queue cost), for `$SYS/broker/messages/stored` and `store/messages/*`.
    pub fn stored_messages(&self) -> (u64, u64) {
        let (mut count, mut bytes) = {
            let retained = self.retained.read();
            (retained.len(), retained.payload_bytes())
        };
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        for session in sessions {
            let state = session.state.lock();
            count += state.queued();
            bytes += state.queued_bytes();
        }
        (count as u64, bytes as u64)
    }

    /// Number of subscriptions, shared ones included.
    pub fn subscription_count(&self) -> usize {
        self.tree.read().len() + self.shared.len()
    }

    /// Number of sessions, online or not.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// The session of `client_id`, online or not (for `$SYS`, administration and tests).
    pub fn session(&self, client_id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().get(client_id).cloned()
    }

    /// Adds or replaces `session`'s subscription to `filter` in the tree, or in its shared subscription
    /// group (the registry's side is `Broker::subscribe`). True if it is new.
    pub(crate) fn insert_subscription(
        &self,
        session: &Arc<Session>,
        filter: &str,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
    ) -> bool {
        let is_new = match SharedFilter::parse(filter) {
            Some(Ok(shared)) => self.shared.subscribe(shared, session, options, subscription_id),
            Some(Err(_)) => return false,
            None => self.tree.write().subscribe(filter, session.id, session.clone(), options, subscription_id),
        };
        if let Some(cluster) = self.cluster.get().filter(|_| is_new) {
            cluster.subscribed(filter);
        }
        is_new
    }

    /// Removes the subscription of session `session_id` to `filter` from the tree or its group.
    pub(crate) fn unsubscribe_filter(&self, session_id: u64, filter: &str) -> bool {
        let existed = match SharedFilter::parse(filter) {
            Some(Ok(shared)) => self.shared.unsubscribe(shared, session_id),
            Some(Err(_)) => false,
            None => self.tree.write().unsubscribe(filter, session_id),
        };
        if let Some(cluster) = self.cluster.get().filter(|_| existed) {
            cluster.unsubscribed(filter);
        }
        existed
    }

    /// Shared subscriptions (members of all groups).
    pub fn shared_subscription_count(&self) -> usize {
        self.shared.len()
    }

    /// Routes a message: updates the retained store, then delivers to each matching session once, at the
    /// highest QoS of its matching subscriptions [MQTT-3.3.4-2].
    pub fn route(&self, message: Arc<Message>) -> Routed {
        let Some(cluster) = self.cluster.get() else { return self.route_here(message, Here::All) };
        let backed_up = cluster.published(&message);
        let routed = self.route_here(message, Here::All);
        Routed { clustered: true, busy: routed.busy || backed_up, ..routed }
    }

    /// [`Broker::route`] on this node only: for a message from the cluster, `here` leaves out the
    /// retained store (the cluster keeps it) and the shared subscriptions (the cluster picks their node).
    pub(crate) fn route_here(&self, message: Arc<Message>, here: Here) -> Routed {
        let mut durable = 0;
        if message.retain && self.settings.retain_available && here == Here::All {
            let mut retained = self.retained.write();
            retained.set(message.clone());
            self.retained_bytes.store(retained.bytes(), Ordering::Relaxed);
            drop(retained);
            durable = self.persist_retained(&message);
        }
        let security = self.read_security();
        let mut matches: Vec<Match<Arc<Session>>> = Vec::new();
        let filters = self.tree.read().matches(&message.topic, &mut matches);
        if filters > 1 && matches.len() > 1 {
            // Overlapping subscriptions of one session sit next to each other for the merge below.
            matches.sort_unstable_by_key(|m| m.subscriber.id);
        }
        let mut routed = Routed { durable, ..Routed::default() };
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
                // `upgrade_outgoing_qos`: the subscription's QoS, as Mosquitto does.
                qos: if self.settings.upgrade_outgoing_qos { qos } else { qos.min(message.qos) },
                // The RETAIN flag is cleared on normal delivery unless Retain As Published [MQTT-3.3.1-9].
                retain: retain_as_published && message.retain,
                message: message.clone(),
                subscription_ids: ids,
                shared_by,
                group: 0,
            };
            self.deliver_routed(session, delivery, message.origin, &mut routed);
        }
        // In a cluster, shared subscriptions get their messages from it (`route_shared`), wherever published.
        let shared = match here {
            Here::All if self.cluster.get().is_none() => {
                self.shared.route(&message, self.settings.shared_strategy, |session| {
                    security.as_ref().is_none_or(|s| self.may_read_with(s, session, &message.topic))
                })
            }
            _ => Vec::new(),
        };
        for chosen in shared {
            self.deliver_routed(&chosen.session, chosen.delivery, message.origin, &mut routed);
        }
        routed
    }

    /// [`Broker::deliver`] as routing does it, noting in `routed` what the publisher should know.
    fn deliver_routed(&self, session: &Arc<Session>, delivery: Delivery, origin: u64, routed: &mut Routed) {
        match self.deliver(session, delivery) {
            Delivered::Queued { backlog, nearly_full, durable } => {
                routed.durable = routed.durable.max(durable);
                routed.reached += 1;
                routed.busy |= backlog > CONGESTED_BACKLOG;
                let own = session.id == origin;
                let long = nearly_full || backlog > WAIT_BACKLOG;
                if long && !own && session.progressing() && routed.congested.is_none() {
                    routed.congested = Some(session.clone());
                }
            }
            // A full queue of a subscriber that still reads: slow the publisher down too.
            Delivered::Dropped if session.id != origin && session.progressing() && routed.congested.is_none() => {
                routed.congested = Some(session.clone());
            }
            Delivered::Dropped => {}
        }
    }

    /// Offers a delivery to a session's outbox and wakes its connection.
    pub(crate) fn deliver(&self, session: &Session, delivery: Delivery) -> Delivered {
        let mut state = session.state.lock();
        let qos = delivery.qos;
        // Stored under the same lock as the enqueue, so a session's records keep its queue's order.
        let kept = (state.durable && delivery.qos != QoS::AtMostOnce).then(|| delivery.clone());
        let outcome = state.enqueue(delivery);
        let durable = match kept {
            Some(d) if outcome == Enqueued::Queued => self.persist_enqueue(session, &d),
            _ => 0,
        };
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
            Delivered::Queued { backlog, nearly_full, durable }
        } else {
            Stats::add(&self.stats.messages_dropped, 1);
            self.counters.dropped(crate::observe::DropCause::QueueFull);
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
