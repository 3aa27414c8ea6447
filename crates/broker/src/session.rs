//! Sessions in the broker, the runtime half: a session's queues and the liveness of its attached
//! connection (waker, keep-alive, parking, takeover). What a session is (owner, identity, will,
//! subscriptions, expiry) is decided by `mqttd_core::Registry`; `sessions.rs` applies its decisions.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqttd_core::{ClientIdentity, MemoryUse, QueueLimits, Registry, SessionState};
use mqttd_proto::Will;
use parking_lot::Mutex;

pub use mqttd_core::{will_delay, Expiry};

/// What the `sessions` lock guards: the session registry, whose handle on each session is its runtime
/// half (`None` only for the moment between the registry opening a session and `Broker::attach` making
/// it). Every change goes through the registry (`sessions.rs`); reads see the runtime sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    pub(crate) registry: Registry<Option<Arc<Session>>>,
}

impl Sessions {
    /// The runtime session of `client_id`.
    pub(crate) fn get(&self, client_id: &str) -> Option<&Arc<Session>> {
        self.registry.get(client_id)?.handle.as_ref()
    }

    /// Every runtime session.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.registry.iter().filter_map(|(_, e)| e.handle.as_ref())
    }

    pub(crate) fn len(&self) -> usize {
        self.registry.len()
    }

    /// Whether `session` is the one its client id has now (not one ended or replaced meanwhile).
    pub(crate) fn current(&self, session: &Arc<Session>) -> bool {
        self.get(&session.client_id).is_some_and(|s| Arc::ptr_eq(s, session))
    }
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
    /// Who owns the session, for authorization: a copy of the registry's, set when a connection
    /// attaches, so that routing reads it without the registry's lock. Never held while `state` is locked
    /// by the same thread.
    identity: Mutex<ClientIdentity>,
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
    pub(crate) fn new(id: u64, identity: ClientIdentity, limits: Arc<QueueLimits>, usage: Arc<MemoryUse>) -> Session {
        Session {
            id,
            client_id: identity.client_id.clone(),
            identity: Mutex::new(identity),
            state: Mutex::new(SessionState::counted(limits, usage)),
            waiting: AtomicU32::new(0),
            progress: AtomicU64::new(clock()),
            connection: AtomicU64::new(0),
            keep_alive_deadline: AtomicU64::new(0),
            active: AtomicU64::new(0),
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
    pub(crate) fn kick(&self) {
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
        self.identity.lock().clone()
    }

    /// A connection attached: the session is now its client's (who may have another username).
    pub(crate) fn set_identity(&self, identity: ClientIdentity) {
        *self.identity.lock() = identity;
    }

    /// A connection attaches: `connection` is its id, its keep-alive and parking start afresh (the old
    /// connection's are not the new one's, which may have no keep-alive), the outbox is online again.
    pub(crate) fn attached(&self, connection: u64, durable: bool, resumed: bool) {
        self.keep_alive_deadline.store(0, Ordering::Relaxed);
        self.active.store(0, Ordering::Relaxed);
        self.connection.store(connection, Ordering::Release);
        let mut state = self.state.lock();
        state.online = true;
        state.durable = durable;
        if resumed {
            state.resume();
        }
    }

    /// The attached connection detached: its atomics reset, the outbox offline; its task's waker is let
    /// go (it would keep the task's memory alive for as long as the session lasts).
    pub(crate) fn detached(&self) {
        self.connection.store(0, Ordering::Release);
        self.keep_alive_deadline.store(0, Ordering::Relaxed);
        self.active.store(0, Ordering::Relaxed);
        let stale_waker = {
            let mut state = self.state.lock();
            state.online = false;
            state.take_waker()
        };
        drop(stale_waker);
    }
}

/// What a new connection asks of the session registry (`Broker::attach`).
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
    /// Normal DISCONNECT: the will is deleted [MQTT-3.1.2-10].
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
/// and end (`Broker::await_release`); past it, the takeover happens at once.
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

/// Monotonic nanoseconds since the first call; cheap to store in an atomic.
pub fn clock() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}
