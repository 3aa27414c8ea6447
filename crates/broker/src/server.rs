//! Listeners and the lifetime of the whole server: accept loops, the connection limit, shutdown that
//! waits for every connection task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::broker::{Broker, KEEP_ALIVE_SWEEP};
pub use crate::listener::Wrapping;
use crate::park::spawn_connection;

/// One address to bind: the listener it belongs to (for per-listener security) and its transport.
#[derive(Debug, Clone)]
pub struct Bind {
    pub addr: SocketAddr,
    pub listener: usize,
    pub wrapping: Arc<Wrapping>,
}

/// A running server. Dropping it does not stop it: call [`Server::shutdown`].
#[derive(Debug)]
pub struct Server {
    pub broker: Arc<Broker>,
    /// The bound addresses, in listener order (port 0 resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// A watch channel: every task observes the one shutdown flag.
    shutdown: watch::Sender<bool>,
    /// One permit per connection of each listener (its `max_connections`); all of them back means every
    /// connection ended.
    limits: Vec<(Arc<Semaphore>, u32)>,
    tasks: Vec<JoinHandle<()>>,
}

/// Connections accepted before any of them is answered: their CONNACKs leave together.
const ACCEPT_BATCH: usize = 64;

/// The connection limit without `max_connections`: more than any machine holds.
const UNLIMITED: u32 = 1 << 28;

impl Server {
    /// Binds every address and starts accepting. Each address comes with the index of the configured
    /// listener it belongs to (for per-listener security). `max_connections` bounds concurrent clients.
    pub async fn start(
        broker: Arc<Broker>,
        addrs: &[(SocketAddr, usize)],
        max_connections: Option<usize>,
    ) -> std::io::Result<Server> {
        let plain = Arc::new(Wrapping::default());
        let binds: Vec<Bind> =
            addrs.iter().map(|&(addr, listener)| Bind { addr, listener, wrapping: plain.clone() }).collect();
        Server::start_binds(broker, &binds, max_connections).await
    }

    /// Binds every address, each with its transport (TLS, WebSocket), and starts accepting.
    pub async fn start_binds(
        broker: Arc<Broker>,
        binds: &[Bind],
        max_connections: Option<usize>,
    ) -> std::io::Result<Server> {
        let mut listeners = Vec::new();
        for bind in binds {
            let addr = bind.addr;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            listeners.push((listener, bind.listener, bind.wrapping.clone()));
        }
        Ok(Server::from_bound(broker, listeners, max_connections))
    }

    /// Starts accepting plain MQTT on already bound listeners.
    pub fn from_listeners(
        broker: Arc<Broker>,
        listeners: Vec<(TcpListener, usize)>,
        max_connections: Option<usize>,
    ) -> Server {
        let plain = Arc::new(Wrapping::default());
        let listeners = listeners.into_iter().map(|(l, index)| (l, index, plain.clone())).collect();
        Server::from_bound(broker, listeners, max_connections)
    }

    /// Starts accepting on already bound listeners, each with its transport.
    pub fn from_bound(
        broker: Arc<Broker>,
        listeners: Vec<(TcpListener, usize, Arc<Wrapping>)>,
        max_connections: Option<usize>,
    ) -> Server {
        let (shutdown, _) = watch::channel(false);
        // A listener's own `max_connections` (Mosquitto's is per listener); else the one given here.
        let permits = |index: usize| {
            let limit = match broker.settings.listeners.get(index) {
                Some(listener) => listener.max_connections,
                None => max_connections,
            };
            limit.map_or(UNLIMITED, |m| u32::try_from(m).unwrap_or(UNLIMITED).min(UNLIMITED))
        };
        let mut limits: Vec<(Arc<Semaphore>, u32)> = Vec::new();
        let mut local_addrs = Vec::new();
        let mut tasks = Vec::new();
        if broker.settings.park_after.is_some() {
            // Before the accept loops, which hand plain-TCP sockets to it.
            tasks.extend(crate::park::Parker::start(&broker, shutdown.subscribe()));
        }
        for (listener, index, wrapping) in listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("listening on {addr} ({})", wrapping.name());
                local_addrs.push(addr);
            }
            if wrapping.http.is_some() {
                let http = crate::http::serve(broker.clone(), listener, index, wrapping, shutdown.subscribe());
                tasks.push(tokio::spawn(http));
                continue;
            }
            // Before the listener's address is known to anyone, so that the first client is treated alike.
            let inherited = tune_accepts(&listener);
            // Addresses of one listener (IPv4 and IPv6) share its limit.
            while limits.len() <= index {
                let n = permits(limits.len());
                limits.push((Arc::new(Semaphore::new(n as usize)), n));
            }
            let accept = accept_loop(
                broker.clone(),
                (listener, index, wrapping, inherited),
                limits[index].0.clone(),
                shutdown.subscribe(),
            );
            tasks.push(tokio::spawn(accept));
        }
        tasks.push(tokio::spawn(crate::sys::run(broker.clone(), shutdown.subscribe())));
        tasks.push(tokio::spawn(sweep_keep_alive(broker.clone(), shutdown.subscribe())));
        tasks.push(tokio::spawn(crate::sessions::run_deadlines(broker.clone(), shutdown.subscribe())));
        Server { broker, local_addrs, shutdown, limits, tasks }
    }

    /// Stops accepting, tells every connection to close (5.0: DISCONNECT 0x8B), and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.broker.begin_shutdown();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        // Every connection holds a permit until its task ends.
        let all_back = async {
            for (limit, permits) in &self.limits {
                let _ = limit.acquire_many(*permits).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), all_back).await;
    }
}

/// Wakes connections past their keep-alive allowance, until shutdown.
async fn sweep_keep_alive(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(KEEP_ALIVE_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => broker.sweep_keep_alive(),
        }
    }
}

async fn accept_loop(
    broker: Arc<Broker>,
    (listener, index, wrapping, inherited): (TcpListener, usize, Arc<Wrapping>, Inherited),
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Accepted sockets stay unregistered with tokio until they need a task: a plain-TCP socket goes to the
    // parker, which answers its CONNECT when it arrives and keeps the connection while it is idle.
    let listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => return tracing::error!("cannot accept on listener {index}: {e}"),
    };
    // `AsyncFd::new` is deprecated because a `T` that does not own its descriptor makes it unsound; a
    // listener owns its own (and `AsyncFd::register` needs `unsafe`, which we forbid).
    #[allow(deprecated)]
    let listener = match AsyncFd::new(mio::net::TcpListener::from_std(listener)) {
        Ok(l) => l,
        Err(e) => return tracing::error!("cannot accept on listener {index}: {e}"),
    };
    let plain = wrapping.tls.is_none() && !wrapping.websockets;
    let parker = if plain { crate::park::Parker::of(&broker) } else { None };
    let mut accepted = Vec::new();
    loop {
        let failed = tokio::select! {
            _ = shutdown.changed() => return,
            ready = listener.readable() => match ready {
                Ok(mut guard) => loop {
                    if accepted.len() == ACCEPT_BATCH {
                        break None;
                    }
                    match guard.try_io(|l| l.get_ref().accept()) {
                        Ok(Ok(a)) => accepted.push(a),
                        Ok(Err(e)) => break Some(e),
                        Err(_would_block) => break None,
                    }
                },
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failed {
            // Out of file descriptors and the like: log and keep serving the others.
            tracing::warn!("accept failed: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !accepted.is_empty() {
            crate::storm::accepted();
        }
        let mut reclaim_budget = RECLAIM_BUDGET;
        for (stream, peer) in accepted.drain(..) {
            let permit = match limit.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => match reclaim(&limit, &mut reclaim_budget).await {
                    Some(permit) => permit,
                    None => {
                        tracing::warn!(%peer, listener = index, "connection refused: the listener's max_connections reached");
                        continue;
                    }
                },
            };
            // Non-blocking already (mio accepts with SOCK_NONBLOCK).
            // Every MQTT socket gets TCP_NODELAY.
            if !inherited.nodelay {
                let _ = stream.set_nodelay(true);
            }
            let stream = std::net::TcpStream::from(stream);
            let (stream, permit) = match &parker {
                Some(parker) => match parker.accepted(&broker, (stream, peer, index), permit, inherited.deferred) {
                    Ok(()) => continue,
                    Err(back) => back,
                },
                None => (stream, permit),
            };
            spawn_connection(&broker, (stream, peer, index), &wrapping, BytesMut::new(), permit);
        }
    }
}

/// How long one batch of accepts may wait in all for places under `max_connections` to come back.
const RECLAIM_BUDGET: Duration = Duration::from_millis(20);

/// Every place under `max_connections` is taken: waits (within `budget`, shared by the sockets of one
/// accept batch) for one to come back before the new socket is judged. A client that closed its socket
/// before another connected must have freed its place, but its connection ends only when its close is
/// read: by the parker (a parked connection, woken by its readable socket) and then the connection's
/// task, which run while this waits. A broker that is really full refuses after at most `budget`.
async fn reclaim(limit: &Arc<Semaphore>, budget: &mut Duration) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if budget.is_zero() {
        return None;
    }
    let start = std::time::Instant::now();
    let permit = tokio::time::timeout(*budget, limit.clone().acquire_owned()).await;
    *budget = budget.saturating_sub(start.elapsed());
    permit.ok().and_then(Result::ok)
}

/// What the sockets accepted on a listener get from it (Linux copies these options to them).
#[derive(Debug, Clone, Copy)]
struct Inherited {
    /// TCP_NODELAY, which every MQTT socket gets: one `setsockopt` per listener, not per connection.
    nodelay: bool,
    /// Accepts are deferred until data arrives (TCP_DEFER_ACCEPT).
    deferred: bool,
}

/// Sets the options accepted sockets inherit: TCP_NODELAY, and two for a protocol whose client speaks
/// first (HAProxy sets both for HTTP, as `defer-accept` and `tcp-smart-accept`):
/// - TCP_DEFER_ACCEPT: a connection is accepted when its first bytes arrive rather than when its
///   handshake ends. An MQTT client speaks first (CONNECT; a TLS ClientHello; an HTTP upgrade), so the
///   accept loop finds the CONNECT already there and the broker is woken once per new connection instead
///   of twice. A client silent for longer is still accepted, after about a second (the kernel resends its
///   SYN-ACK once), and then has `connect_timeout` like any other.
/// - TCP_QUICKACK off (inherited by accepted sockets): the kernel does not acknowledge the CONNECT on its
///   own at once but with the CONNACK, one packet fewer per connection. The kernel turns quick ACKs back
///   on by itself where delaying them would stall a sender.
#[cfg(target_os = "linux")]
fn tune_accepts(listener: &TcpListener) -> Inherited {
    let socket = socket2::SockRef::from(listener);
    let _ = socket.set_tcp_quickack(false);
    Inherited { nodelay: socket.set_tcp_nodelay(true).is_ok(), deferred: set_defer_accept(listener, 1) }
}

#[cfg(not(target_os = "linux"))]
fn tune_accepts(_: &TcpListener) -> Inherited {
    Inherited { nodelay: false, deferred: false }
}

/// TCP_DEFER_ACCEPT for `seconds`, which no crate wraps yet (socket2 does not have it; std's
/// `set_deferaccept` is unstable). `true` when set.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_defer_accept(listener: &TcpListener, seconds: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: `setsockopt` reads `size_of::<c_int>()` bytes from a pointer to a live `c_int`; the
    // descriptor is the listener's own, open for as long as `listener` is borrowed.
    let done = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    done == 0
}
