//! Parked connections: a plain-TCP connection that has been quiet for `park_after` gives up its task and
//! its tokio registration, the two largest things an idle connection holds, and waits in the parker's own
//! epoll set instead, as an [`Asleep`] in one small allocation. It gets a task again when its socket becomes
//! readable (a packet, or the peer closing) or when anything wakes its session (a delivery, a takeover,
//! the keep-alive sweeper, shutdown): the waker the session keeps is the parked connection itself.
//!
//! EMQX hibernates idle connection processes for the same reason: most of a large broker's connections
//! are idle most of the time. Memory per idle connection is a tracked figure (bench/README.md).

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Wake, Waker};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use parking_lot::Mutex;
use slab::Slab;
use tokio::sync::OwnedSemaphorePermit;

use crate::broker::{Broker, Stats};
use crate::connection::{Asleep, Client, Stream};

/// The token of the poll thread's own waker (never a slab key).
const WAKE: Token = Token(usize::MAX);

/// The parked connections of one broker and the thread that waits on their sockets.
pub(crate) struct Parker {
    registry: Registry,
    /// Parked connections by their token; a connection leaves on its first wake.
    parked: Mutex<Slab<Arc<Parked>>>,
    /// Where a woken connection's task is spawned.
    runtime: tokio::runtime::Handle,
    /// The broker the connections belong to (weak: the broker owns the parker).
    broker: Weak<Broker>,
    /// Tells the poll thread to look again (it ends once the parker is gone).
    waker: mio::Waker,
}

impl std::fmt::Debug for Parker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parker").field("parked", &self.parked.lock().len()).finish()
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        let _ = self.waker.wake();
    }
}

/// One parked connection, shared by the slab and the waker its session keeps.
struct Parked {
    parker: Arc<Parker>,
    slot: usize,
    /// Taken by the first wake.
    conn: Mutex<Option<Asleep>>,
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
    /// Starts the poll thread. Called within the runtime that will run woken connections.
    fn start(broker: &Arc<Broker>) -> std::io::Result<Arc<Parker>> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKE)?;
        let parker = Arc::new(Parker {
            registry: poll.registry().try_clone()?,
            parked: Mutex::new(Slab::new()),
            runtime: tokio::runtime::Handle::current(),
            broker: Arc::downgrade(broker),
            waker,
        });
        let weak = Arc::downgrade(&parker);
        std::thread::Builder::new().name("mqttd-parked".into()).spawn(move || watch(poll, weak))?;
        Ok(parker)
    }

    /// Parks `client`, whose task is about to end. On failure the client goes on in a new task.
    pub(crate) fn park(broker: &Arc<Broker>, mut client: Client, permit: OwnedSemaphorePermit) {
        let parker = match broker.parker.get() {
            Some(p) => p.clone(),
            None => match Parker::start(broker) {
                // Two first parkers at once: one parker stays, the other's thread ends with it.
                Ok(p) => broker.parker.get_or_init(|| p).clone(),
                Err(e) => {
                    tracing::warn!("cannot park idle connections: {e}");
                    return resume(client, permit);
                }
            },
        };
        let stream = std::mem::replace(&mut client.io.stream, Stream::Parked(None));
        let std = match stream {
            Stream::Tcp(tcp) => tcp.into_std(),
            // Answered as it was accepted: never registered with tokio.
            Stream::Parked(Some(std)) => Ok(std),
            other => {
                client.io.stream = other;
                return resume(client, permit);
            }
        };
        let std = match std {
            Ok(s) => s,
            // The socket is gone with its registration: the task ends the connection on its first read.
            Err(_) => return resume(client, permit),
        };
        let fd = std.as_raw_fd();
        client.io.stream = Stream::Parked(Some(std));
        let session = client.session.clone();
        let connection_id = client.connection_id;
        let asleep = match client.into_asleep(permit) {
            Ok(a) => a,
            Err((client, permit)) => return resume(client, permit),
        };
        let parked = {
            let mut slab = parker.parked.lock();
            let entry = slab.vacant_entry();
            let slot = entry.key();
            if parker.registry.register(&mut SourceFd(&fd), Token(slot), Interest::READABLE).is_err() {
                drop(slab);
                let (client, permit) = asleep.wake_up(broker.clone());
                return resume(client, permit);
            }
            let parked = Arc::new(Parked { parker: parker.clone(), slot, conn: Mutex::new(Some(asleep)) });
            entry.insert(parked.clone());
            parked
        };
        Stats::add(&broker.stats.clients_parked, 1);
        // From here on, whatever wakes the session wakes the parked connection. A delivery queued, or a
        // takeover, shutdown or keep-alive end signalled, before the waker changed wakes it now: the
        // task's waker it went to belongs to a task that is ending.
        let waker = Waker::from(parked.clone());
        let pending = {
            let mut state = session.state.lock();
            state.register(&waker);
            state.has_outgoing()
        };
        let interrupted = broker.shutting_down()
            || session.connection.load(Ordering::Acquire) != connection_id
            || session.keep_alive_deadline.load(Ordering::Relaxed) == crate::session::KEEP_ALIVE_EXPIRED;
        if pending || interrupted {
            waker.wake();
        }
    }

    /// Gives the connection in `slot` a task again (if it is still `which`: a stale wake is ignored).
    fn unpark(&self, slot: usize, which: Option<&Arc<Parked>>) {
        let parked = {
            let mut slab = self.parked.lock();
            match slab.get(slot) {
                Some(p) if which.is_none_or(|w| Arc::ptr_eq(p, w)) => slab.remove(slot),
                _ => return,
            }
        };
        let Some(asleep) = parked.conn.lock().take() else { return };
        let _ = self.registry.deregister(&mut SourceFd(&asleep.socket.as_raw_fd()));
        // The broker is gone only when the process ends: its connections go with it.
        let Some(broker) = self.broker.upgrade() else { return };
        broker.stats.clients_parked.fetch_sub(1, Ordering::Relaxed);
        let (client, permit) = asleep.wake_up(broker);
        drop(self.runtime.spawn(crate::server::serve(client, permit)));
    }
}

/// The poll thread: a readable socket (a packet, or the peer closing) wakes its connection.
fn watch(mut poll: Poll, parker: Weak<Parker>) {
    let mut events = Events::with_capacity(256);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!("parked connections: poll failed: {e}");
            return;
        }
        let Some(parker) = parker.upgrade() else { return };
        for event in events.iter() {
            if event.token() != WAKE {
                parker.unpark(event.token().0, None);
            }
        }
    }
}

/// Gives a client a task again (when parking did not happen).
fn resume(client: Client, permit: OwnedSemaphorePermit) {
    tokio::spawn(crate::server::serve(client, permit));
}
