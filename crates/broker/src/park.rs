//! Where a connection runs: a task while it has work ([`spawn_connection`], [`serve`]), none while it has
//! not. A plain-TCP socket starts here: the accept loop hands it over at once, and
//! its CONNECT is answered without a task or a tokio registration (at once when it came with the accept,
//! as it does on a listener with deferred accepts; otherwise when it arrives). A connection
//! that then has nothing to do stays here, parked, as an [`Asleep`] in one small allocation; so does one
//! that has been quiet for `park_after` later on (it gives up its task and its tokio registration, the
//! two largest things an idle connection holds). A parked connection gets a task again when its socket
//! becomes readable (a packet, or the peer closing) or when anything wakes its session (a delivery, a
//! takeover, the keep-alive sweeper, shutdown): the waker the session keeps is the parked connection.
//!
//! The sockets wait in one epoll set (mio) per broker, which a task of the runtime watches as a single
//! descriptor. EMQX hibernates idle connection processes for the same reason: most connections of a big
//! broker are idle most of the time. Memory per idle connection is a tracked figure (bench/README.md).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use parking_lot::Mutex;
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};

use crate::asleep::Asleep;
use crate::at_accept::AtAccept;
use crate::broker::{Broker, Parking, Stats};
use crate::connection::{Connection, Stop};
use crate::end::End;
use crate::listener::Wrapping;
use crate::transport::Stream;

/// How often sockets that sent no CONNECT within `connect_timeout` are looked for.
const CONNECT_SWEEP: Duration = Duration::from_millis(500);

/// The sockets of one broker that have no task: new ones waiting for their CONNECT, and parked ones.
pub(crate) struct Parker {
    registry: Registry,
    /// By token.
    entries: Mutex<Slab<Entry>>,
    /// The tokens of the sockets waiting for their CONNECT (the sweep looks at these only). Locked after
    /// `entries` when both are.
    waiting: Mutex<Slab<usize>>,
    /// The broker the connections belong to (weak: the broker owns the parker).
    broker: Weak<Broker>,
    /// Where woken connections get their task.
    runtime: tokio::runtime::Handle,
}

enum Entry {
    /// A new socket whose CONNECT has not arrived yet.
    Connecting(Box<Connecting>),
    /// Its CONNECT is being answered (the token stays taken).
    Answering,
    Parked(Arc<Parked>),
}

struct Connecting {
    socket: std::net::TcpStream,
    peer: SocketAddr,
    listener: usize,
    permit: OwnedSemaphorePermit,
    /// When it is closed if no CONNECT came (`connect_timeout`).
    deadline: Instant,
    /// Its key in `Parker::waiting`.
    waiting: usize,
}

impl std::fmt::Debug for Parker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parker").field("entries", &self.entries.lock().len()).finish()
    }
}

/// One parked connection, shared by the slab and the waker its session keeps.
struct Parked {
    parker: Arc<Parker>,
    slot: usize,
    /// Taken by the first wake.
    conn: Mutex<Option<Asleep>>,
}

impl Parking for Parker {
    fn close_connecting(&self) {
        self.sweep_connecting(true);
    }
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.parker.unpark(self.slot, Some(&self));
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.parker.unpark(self.slot, Some(self));
    }
}

impl Parker {
    /// Makes the broker's parker and spawns the task that watches it (until `shutdown`). Called within the
    /// runtime. `None` (logged) if the epoll set cannot be made: connections then always have a task.
    pub(crate) fn start(broker: &Arc<Broker>, shutdown: watch::Receiver<bool>) -> Option<tokio::task::JoinHandle<()>> {
        let made = Poll::new().and_then(|poll| {
            let registry = poll.registry().try_clone()?;
            // `AsyncFd::new` is deprecated because a `T` that does not own its descriptor makes it unsound;
            // a `Poll` owns its own (and `AsyncFd::register` needs `unsafe`, which we forbid).
            #[allow(deprecated)]
            let poll = AsyncFd::new(poll)?;
            Ok((poll, registry))
        });
        let (poll, registry) = match made {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("connections will not park: {e}");
                return None;
            }
        };
        let parker = Arc::new(Parker {
            registry,
            entries: Mutex::new(Slab::new()),
            waiting: Mutex::new(Slab::new()),
            broker: Arc::downgrade(broker),
            runtime: tokio::runtime::Handle::current(),
        });
        let _ = broker.parker.set(parker.clone());
        Some(tokio::spawn(watch_sockets(parker, poll, shutdown)))
    }

    /// Takes a new plain-TCP socket. `data_first`: its listener defers accepts until data arrives
    /// (TCP_DEFER_ACCEPT), so its CONNECT is usually there already and is answered now; otherwise it
    /// waits in the epoll set for its CONNECT. `Err` gives the socket back (it cannot be watched): it
    /// needs a task.
    pub(crate) fn accepted(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        (socket, peer, listener): (std::net::TcpStream, SocketAddr, usize),
        permit: OwnedSemaphorePermit,
        data_first: bool,
    ) -> Result<(), (std::net::TcpStream, OwnedSemaphorePermit)> {
        if !data_first {
            return self.await_connect((socket, peer, listener), permit, broker.settings.connect_timeout);
        }
        match crate::at_accept::connect_at_accept(broker, socket, peer, listener) {
            AtAccept::Connected(conn) => match Asleep::from_connection(conn, permit) {
                Ok(asleep) => self.sleep(broker, asleep),
                Err((conn, permit)) => resume(conn, permit),
            },
            AtAccept::Done => {}
            AtAccept::NotYet(socket) => {
                return self.await_connect((socket, peer, listener), permit, broker.settings.connect_timeout)
            }
            AtAccept::Later(socket, read) => plain_task(broker, (socket, peer, listener), read, permit),
        }
        Ok(())
    }

    /// Takes a new plain-TCP socket until its CONNECT arrives. `Err` gives it back (it cannot be
    /// watched): it needs a task.
    fn await_connect(
        &self,
        (socket, peer, listener): (std::net::TcpStream, SocketAddr, usize),
        permit: OwnedSemaphorePermit,
        timeout: Duration,
    ) -> Result<(), (std::net::TcpStream, OwnedSemaphorePermit)> {
        let fd = socket.as_raw_fd();
        let deadline = Instant::now() + timeout;
        let mut entries = self.entries.lock();
        let entry = entries.vacant_entry();
        let key = entry.key();
        // Registered under the lock: an event for the token finds the entry.
        if self.registry.register(&mut SourceFd(&fd), Token(key), Interest::READABLE).is_err() {
            return Err((socket, permit));
        }
        let waiting = self.waiting.lock().insert(key);
        entry.insert(Entry::Connecting(Box::new(Connecting { socket, peer, listener, permit, deadline, waiting })));
        Ok(())
    }

    /// A socket became readable: answer its CONNECT, or wake its parked connection.
    fn ready(self: &Arc<Self>, key: usize) {
        let connecting = {
            let mut entries = self.entries.lock();
            match entries.get_mut(key) {
                Some(Entry::Parked(_)) => {
                    drop(entries);
                    return self.unpark(key, None);
                }
                Some(e @ Entry::Connecting(_)) => match std::mem::replace(e, Entry::Answering) {
                    Entry::Connecting(c) => {
                        self.waiting.lock().try_remove(c.waiting);
                        c
                    }
                    _ => return,
                },
                _ => return,
            }
        };
        self.answer(key, *connecting);
    }

    /// Answers the CONNECT of a socket that became readable; the connection parks in place (same token,
    /// no change to the epoll set) if it has nothing more to do.
    fn answer(self: &Arc<Self>, key: usize, c: Connecting) {
        let Some(broker) = self.broker.upgrade() else { return self.forget(key, &c.socket) };
        let Connecting { socket, peer, listener, permit, deadline, .. } = c;
        match crate::at_accept::connect_at_accept(&broker, socket, peer, listener) {
            AtAccept::Connected(conn) => match Asleep::from_connection(conn, permit) {
                Ok(asleep) => {
                    let parked = Arc::new(Parked { parker: self.clone(), slot: key, conn: Mutex::new(Some(asleep)) });
                    if let Some(e) = self.entries.lock().get_mut(key) {
                        *e = Entry::Parked(parked.clone());
                    }
                    self.parked(&broker, parked);
                }
                // Packets came with the CONNECT, or the session has messages to send: it needs a task.
                Err((conn, permit)) => {
                    self.forget_key(key, conn.io.socket_fd());
                    resume(conn, permit);
                }
            },
            AtAccept::Done => {
                let mut entries = self.entries.lock();
                entries.try_remove(key);
            }
            // Readable but nothing to read after all: it waits on.
            AtAccept::NotYet(socket) => {
                let mut entries = self.entries.lock();
                if let Some(e) = entries.get_mut(key) {
                    let waiting = self.waiting.lock().insert(key);
                    *e = Entry::Connecting(Box::new(Connecting { socket, peer, listener, permit, deadline, waiting }));
                }
            }
            AtAccept::Later(socket, read) => {
                self.forget(key, &socket);
                plain_task(&broker, (socket, peer, listener), read, permit);
            }
        }
    }

    /// Removes `key` and takes its socket out of the epoll set.
    fn forget(&self, key: usize, socket: &std::net::TcpStream) {
        self.forget_key(key, Some(socket.as_raw_fd()));
    }

    fn forget_key(&self, key: usize, fd: Option<std::os::fd::RawFd>) {
        if let Some(fd) = fd {
            let _ = self.registry.deregister(&mut SourceFd(&fd));
        }
        self.entries.lock().try_remove(key);
    }

    /// Closes the sockets that sent no CONNECT in time; all of them at shutdown.
    fn sweep_connecting(&self, all: bool) {
        let now = Instant::now();
        let expired: Vec<Box<Connecting>> = {
            let mut entries = self.entries.lock();
            let mut waiting = self.waiting.lock();
            let late: Vec<(usize, usize)> = waiting
                .iter()
                .filter(|&(_, &key)| matches!(entries.get(key), Some(Entry::Connecting(c)) if all || c.deadline <= now))
                .map(|(w, &key)| (w, key))
                .collect();
            late.into_iter()
                .filter_map(|(w, key)| {
                    waiting.remove(w);
                    match entries.remove(key) {
                        Entry::Connecting(c) => Some(c),
                        _ => None,
                    }
                })
                .collect()
        };
        for c in expired {
            let _ = self.registry.deregister(&mut SourceFd(&c.socket.as_raw_fd()));
            if !all {
                tracing::info!(peer = %c.peer, "closed: no CONNECT within the connect timeout");
            }
        }
    }

    /// The broker's parker, when parking is on.
    pub(crate) fn of(broker: &Broker) -> Option<Arc<Parker>> {
        let parker: Arc<dyn std::any::Any + Send + Sync> = broker.parker.get()?.clone();
        parker.downcast().ok()
    }

    /// Parks `client`, whose task is about to end. On failure the client goes on in a new task.
    pub(crate) fn park(broker: &Arc<Broker>, mut conn: Connection, permit: OwnedSemaphorePermit) {
        let Some(parker) = Parker::of(broker) else { return resume(conn, permit) };
        let stream = std::mem::replace(&mut conn.io.stream, Stream::Parked(None));
        let std = match stream {
            Stream::Tcp(tcp) => tcp.into_std(),
            other => {
                conn.io.stream = other;
                return resume(conn, permit);
            }
        };
        let std = match std {
            Ok(s) => s,
            // The socket is gone with its registration: the task ends the connection on its first read.
            Err(_) => return resume(conn, permit),
        };
        conn.io.stream = Stream::Parked(Some(std));
        match Asleep::from_connection(conn, permit) {
            Ok(asleep) => parker.sleep(broker, asleep),
            Err((conn, permit)) => resume(conn, permit),
        }
    }

    /// Adds a connection that has no task to the epoll set; on failure it goes on in a new task.
    fn sleep(self: &Arc<Self>, broker: &Arc<Broker>, asleep: Asleep) {
        let parked = {
            let mut entries = self.entries.lock();
            let entry = entries.vacant_entry();
            let slot = entry.key();
            let fd = asleep.socket.as_raw_fd();
            if self.registry.register(&mut SourceFd(&fd), Token(slot), Interest::READABLE).is_err() {
                drop(entries);
                let (conn, permit) = asleep.wake_up(broker.clone());
                return resume(conn, permit);
            }
            let parked = Arc::new(Parked { parker: self.clone(), slot, conn: Mutex::new(Some(asleep)) });
            entry.insert(Entry::Parked(parked.clone()));
            parked
        };
        self.parked(broker, parked);
    }

    /// A connection just parked: from here on, whatever wakes its session wakes it. A delivery queued, or
    /// a takeover, shutdown or keep-alive end signalled, before the waker changed wakes it now (the waker
    /// it went to belongs to a task that is ending, or to none).
    fn parked(&self, broker: &Broker, parked: Arc<Parked>) {
        Stats::add(&broker.stats.clients_parked, 1);
        let Some(session) = parked.conn.lock().as_ref().map(Asleep::session) else { return };
        let waker = Waker::from(parked.clone());
        let pending = {
            let mut state = session.state.lock();
            state.register(&waker);
            state.has_outgoing()
        };
        // Checked after the waker changed, so a signal that comes later wakes the parked connection.
        if pending || parked.conn.lock().as_ref().is_some_and(|a| a.interrupted(broker)) {
            waker.wake();
        }
    }

    /// Gives the connection in `slot` a task again (if it is still `which`: a stale wake is ignored).
    fn unpark(&self, slot: usize, which: Option<&Arc<Parked>>) {
        let parked = {
            let mut entries = self.entries.lock();
            match entries.get(slot) {
                Some(Entry::Parked(p)) if which.is_none_or(|w| Arc::ptr_eq(p, w)) => match entries.remove(slot) {
                    Entry::Parked(p) => p,
                    _ => return,
                },
                _ => return,
            }
        };
        let Some(asleep) = parked.conn.lock().take() else { return };
        let _ = self.registry.deregister(&mut SourceFd(&asleep.socket.as_raw_fd()));
        // The broker is gone only when the process ends: its connections go with it.
        let Some(broker) = self.broker.upgrade() else { return };
        broker.stats.clients_parked.fetch_sub(1, Ordering::Relaxed);
        let (conn, permit) = asleep.wake_up(broker);
        drop(self.runtime.spawn(serve(conn, permit)));
    }
}

/// The task that watches the parker's epoll set: readable sockets are answered or woken; sockets that
/// sent no CONNECT in time are closed.
async fn watch_sockets(parker: Arc<Parker>, mut poll: AsyncFd<Poll>, mut shutdown: watch::Receiver<bool>) {
    const CAPACITY: usize = 1024;
    let mut events = Events::with_capacity(CAPACITY);
    let mut sweep = tokio::time::interval(CONNECT_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = sweep.tick() => parker.sweep_connecting(false),
            ready = poll.readable_mut() => {
                let Ok(mut guard) = ready else { return };
                if let Err(e) = guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        tracing::error!("parked connections: poll failed: {e}");
                        return;
                    }
                    continue;
                }
                let mut n = 0;
                for event in events.iter() {
                    n += 1;
                    parker.ready(event.token().0);
                }
                if n < CAPACITY {
                    // Only the readiness this guard saw is cleared: an event after the poll sets it again.
                    // A full batch leaves it set: more are waiting (other tasks run in between, as the
                    // budget of `readable_mut` runs out).
                    guard.clear_ready();
                }
            }
        }
    }
}

/// Gives a client a task again (when parking did not happen).
fn resume(conn: Connection, permit: OwnedSemaphorePermit) {
    tokio::spawn(serve(conn, permit));
}

/// A plain-TCP socket whose CONNECT needs more than one read and write: it gets a connection task, with
/// the bytes `read` so far.
fn plain_task(
    broker: &Arc<Broker>,
    socket: (std::net::TcpStream, SocketAddr, usize),
    read: bytes::BytesMut,
    permit: OwnedSemaphorePermit,
) {
    spawn_connection(broker, socket, &Arc::new(Wrapping::default()), read, permit);
}

/// Gives a new socket a connection task; `read`: bytes already read from it.
pub(crate) fn spawn_connection(
    broker: &Arc<Broker>,
    (stream, peer, index): (std::net::TcpStream, SocketAddr, usize),
    wrapping: &Arc<Wrapping>,
    read: BytesMut,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let stream = match TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => return tracing::warn!(%peer, "cannot serve the connection: {e}"),
    };
    tokio::spawn(connection_task(broker.clone(), stream, (peer, index, wrapping.clone()), read, permit));
}

/// The task of one connection. Its future holds a `Connection` and little else: what only the handshakes need
/// is boxed and gone once they are done (memory per idle connection is a tracked figure: tokio allocates
/// a task as a 128-byte-aligned cell of 96 bytes plus the future, so up to 416 bytes of future make a
/// 512-byte task in release builds).
fn connection_task(
    broker: Arc<Broker>,
    stream: TcpStream,
    (peer, index, wrapping): (SocketAddr, usize, Arc<Wrapping>),
    read: BytesMut,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> impl std::future::Future<Output = ()> + Send {
    let setup = Box::new((broker, stream, peer, index, wrapping, read));
    async move {
        let connecting = Box::pin(async move {
            let (broker, stream, peer, index, wrapping, read) = *setup;
            let (stream, cert_username) = crate::listener::wrap_within(&broker, stream, peer, index, wrapping).await?;
            crate::connect::connect(broker, stream, (peer, index, cert_username), read).await
        });
        // `let else`, not `if let`: the `Option<Connection>` must not live on beside `conn` in the future.
        let Some(mut conn) = connecting.await else { return drop(permit) };
        // The same as `serve`, written out: awaiting `serve(client, permit)` here makes this future 512
        // bytes instead of 288 (a 640-byte task instead of 384).
        match conn.run().await {
            Stop::End(end) => Box::pin(conn.finish(end)).await,
            Stop::Park => return park(conn, permit),
        }
        drop(permit);
    }
}

/// The task of a connection coming back from the parker: its socket registers with tokio again.
pub(crate) async fn serve(mut conn: Connection, permit: tokio::sync::OwnedSemaphorePermit) {
    if let Stream::Parked(parked) = &mut conn.io.stream {
        match parked.take().map(TcpStream::from_std) {
            Some(Ok(tcp)) => conn.io.stream = Stream::Tcp(tcp),
            Some(Err(e)) => return Box::pin(conn.finish(End::Io(e))).await,
            None => return Box::pin(conn.finish(End::Closed)).await,
        }
    }
    match conn.run().await {
        Stop::End(end) => Box::pin(conn.finish(end)).await,
        Stop::Park => return park(conn, permit),
    }
    drop(permit);
}

/// Hands a quiet connection to the parker; its task ends.
fn park(conn: Connection, permit: tokio::sync::OwnedSemaphorePermit) {
    Parker::park(&conn.client.broker.clone(), conn, permit);
}
