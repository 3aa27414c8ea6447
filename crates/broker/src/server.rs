//! Listeners and the lifetime of the whole server: accept loops, the connection limit, shutdown that
//! waits for every connection task.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::broker::{Broker, KEEP_ALIVE_SWEEP};
use crate::connect::AtAccept;
use crate::connection::{Client, End, Stop, Stream};
use crate::tls::{CertUsername, TlsListener};

/// What a listener puts between the TCP socket and MQTT: TLS, WebSocket, both, or nothing.
#[derive(Debug, Clone, Default)]
pub struct Wrapping {
    /// The TLS configuration (`certfile` given), shared with the SIGHUP reload.
    pub tls: Option<Arc<TlsListener>>,
    /// `protocol websockets`.
    pub websockets: bool,
    /// `http_dir`: static files for plain HTTP GET requests on a WebSocket listener.
    pub http_dir: Option<PathBuf>,
}

impl Wrapping {
    /// The transport's name in log lines.
    fn name(&self) -> &'static str {
        match (self.tls.is_some(), self.websockets) {
            (false, false) => "MQTT",
            (true, false) => "TLS",
            (false, true) => "WebSocket",
            (true, true) => "TLS WebSocket",
        }
    }
}

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
    /// One permit per connection (`max_connections`); all of them back means every connection ended.
    limit: Arc<Semaphore>,
    permits: u32,
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
        let permits = max_connections.map_or(UNLIMITED, |m| u32::try_from(m).unwrap_or(UNLIMITED).min(UNLIMITED));
        let limit = Arc::new(Semaphore::new(permits as usize));
        let mut local_addrs = Vec::new();
        let mut tasks = Vec::new();
        for (listener, index, wrapping) in listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("listening on {addr} ({})", wrapping.name());
                local_addrs.push(addr);
            }
            let accept = accept_loop(broker.clone(), (listener, index, wrapping), limit.clone(), shutdown.subscribe());
            tasks.push(tokio::spawn(accept));
        }
        tasks.push(tokio::spawn(crate::sys::run(broker.clone(), shutdown.subscribe())));
        tasks.push(tokio::spawn(sweep_keep_alive(broker.clone(), shutdown.subscribe())));
        Server { broker, local_addrs, shutdown, limit, permits, tasks }
    }

    /// Stops accepting, tells every connection to close (5.0: DISCONNECT 0x8B), and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.broker.begin_shutdown();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        // Every connection holds a permit until its task ends.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.limit.acquire_many(self.permits)).await;
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
    (listener, index, wrapping): (TcpListener, usize, Arc<Wrapping>),
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Accepted sockets stay unregistered with tokio until they need a task: a plain-TCP client whose
    // CONNECT is there is answered at once and parks (`connect::connect_at_accept`); one whose CONNECT is
    // not there yet waits for it in `waiting`, an epoll set of this loop's own.
    // `AsyncFd::new` is deprecated because a `T` that does not own its descriptor makes it unsound; a
    // `std::net::TcpListener` owns its own (and `AsyncFd::register` needs `unsafe`, which we forbid).
    #[allow(deprecated)]
    let listener = match listener.into_std().and_then(AsyncFd::new) {
        Ok(l) => l,
        Err(e) => return tracing::error!("cannot accept on listener {index}: {e}"),
    };
    let mut waiting = Waiting::new(&broker, &wrapping);
    let mut sweep = tokio::time::interval(CONNECT_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut accepted = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            ready = waiting.readable() => {
                for (socket, peer, permit) in ready {
                    answer(&broker, (socket, peer, index), permit, &wrapping, None);
                }
            }
            _ = sweep.tick() => waiting.sweep(),
            ready = listener.readable() => match ready {
                Ok(mut guard) => {
                    while accepted.len() < ACCEPT_BATCH {
                        match guard.try_io(|l| l.get_ref().accept()) {
                            Ok(Ok(a)) => accepted.push(a),
                            Ok(Err(e)) => {
                                // Out of file descriptors and the like: log and keep serving the others.
                                tracing::warn!("accept failed: {e}");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                break;
                            }
                            Err(_would_block) => break,
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        };
        for (stream, peer) in accepted.drain(..) {
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "connection refused: max_connections reached");
                continue;
            };
            // Accepted sockets are blocking (O_NONBLOCK is not inherited): nothing here may be.
            if let Err(e) = stream.set_nonblocking(true) {
                tracing::warn!(%peer, "cannot serve the connection: {e}");
                continue;
            }
            let _ = stream.set_nodelay(true);
            answer(&broker, (stream, peer, index), permit, &wrapping, Some(&mut waiting));
        }
    }
}

/// How often sockets that sent no CONNECT within `connect_timeout` are looked for.
const CONNECT_SWEEP: Duration = Duration::from_millis(500);

/// New plain-TCP sockets whose CONNECT has not arrived yet, waiting for it without a task: an epoll set
/// (mio) that the accept loop watches as one descriptor.
struct Waiting {
    /// `None` when this listener's sockets do not wait here (TLS, WebSocket, parking disabled, or the
    /// epoll set could not be made): they get a connection task at once.
    poll: Option<AsyncFd<mio::Poll>>,
    sockets: slab::Slab<(std::net::TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit, std::time::Instant)>,
    events: mio::Events,
    timeout: Duration,
}

impl Waiting {
    fn new(broker: &Broker, wrapping: &Wrapping) -> Waiting {
        let plain = wrapping.tls.is_none() && !wrapping.websockets;
        let wanted = cfg!(unix) && plain && broker.settings.park_after.is_some();
        // See `accept_loop` on `AsyncFd::new`: the `Poll` owns its descriptor.
        #[allow(deprecated)]
        let poll = wanted.then(|| mio::Poll::new().and_then(AsyncFd::new).ok()).flatten();
        Waiting {
            poll,
            sockets: slab::Slab::new(),
            events: mio::Events::with_capacity(256),
            timeout: broker.settings.connect_timeout,
        }
    }

    /// Keeps `socket` until it is readable; gives it back if it cannot wait here.
    fn add(
        &mut self,
        (socket, peer): (std::net::TcpStream, SocketAddr),
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<(), (std::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
        use std::os::fd::AsRawFd;
        let Some(poll) = &self.poll else { return Err((socket, permit)) };
        let entry = self.sockets.vacant_entry();
        let fd = socket.as_raw_fd();
        let token = mio::Token(entry.key());
        if poll.get_ref().registry().register(&mut mio::unix::SourceFd(&fd), token, mio::Interest::READABLE).is_err() {
            return Err((socket, permit));
        }
        entry.insert((socket, peer, permit, std::time::Instant::now() + self.timeout));
        Ok(())
    }

    /// The sockets that became readable (a CONNECT, or the client closing); pending while there are none.
    async fn readable(&mut self) -> Vec<(std::net::TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
        use std::os::fd::AsRawFd;
        let Some(poll) = &mut self.poll else { return std::future::pending().await };
        let mut ready = Vec::new();
        while ready.is_empty() {
            let Ok(mut guard) = poll.readable_mut().await else { return std::future::pending().await };
            guard.clear_ready();
            let poll = guard.get_inner_mut();
            if poll.poll(&mut self.events, Some(Duration::ZERO)).is_err() {
                continue;
            }
            for event in self.events.iter() {
                let Some((socket, peer, permit, _)) = self.sockets.try_remove(event.token().0) else { continue };
                let _ = poll.registry().deregister(&mut mio::unix::SourceFd(&socket.as_raw_fd()));
                ready.push((socket, peer, permit));
            }
        }
        ready
    }

    /// Closes the sockets that sent no CONNECT in time.
    fn sweep(&mut self) {
        use std::os::fd::AsRawFd;
        let (Some(poll), now) = (&self.poll, std::time::Instant::now()) else { return };
        let late: Vec<usize> = self.sockets.iter().filter(|(_, w)| w.3 <= now).map(|(k, _)| k).collect();
        for key in late {
            let (socket, peer, _permit, _) = self.sockets.remove(key);
            let _ = poll.get_ref().registry().deregister(&mut mio::unix::SourceFd(&socket.as_raw_fd()));
            tracing::info!(%peer, "closed: no CONNECT within {:?}", self.timeout);
        }
    }
}

/// Serves a new socket: answers its CONNECT now if it is there (plain TCP), lets it wait for it in
/// `waiting`, or gives it a connection task.
fn answer(
    broker: &Arc<Broker>,
    (stream, peer, index): (std::net::TcpStream, SocketAddr, usize),
    permit: tokio::sync::OwnedSemaphorePermit,
    wrapping: &Arc<Wrapping>,
    waiting: Option<&mut Waiting>,
) {
    let plain = wrapping.tls.is_none() && !wrapping.websockets;
    let (stream, read, permit) = if plain {
        match crate::connect::connect_at_accept(broker, stream, peer, index) {
            AtAccept::Connected(client) if client.can_park() && client.holds_nothing() => {
                return park(client, permit);
            }
            AtAccept::Connected(client) => {
                tokio::spawn(serve(client, permit));
                return;
            }
            AtAccept::Done => return,
            // Back from `waiting` with nothing to read after all: a task waits for it instead.
            AtAccept::NotYet(stream) => match waiting {
                Some(waiting) => match waiting.add((stream, peer), permit) {
                    Ok(()) => return,
                    Err((stream, permit)) => (stream, BytesMut::new(), permit),
                },
                None => (stream, BytesMut::new(), permit),
            },
            AtAccept::Later(stream, read) => (stream, read, permit),
        }
    } else {
        (stream, BytesMut::new(), permit)
    };
    let stream = match TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => return tracing::warn!(%peer, "cannot serve the connection: {e}"),
    };
    tokio::spawn(connection_task(broker.clone(), stream, (peer, index, wrapping.clone()), read, permit));
}

/// The task of one connection. Its future holds a `Client` and little else: what only the handshakes need
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
            let (stream, cert_username) = wrap_within(&broker, stream, peer, index, wrapping).await?;
            crate::connection::connect(broker, stream, (peer, index, cert_username), read).await
        });
        // `let else`, not `if let`: the `Option<Client>` must not live on beside `client` in the future.
        let Some(mut client) = connecting.await else { return drop(permit) };
        match client.run().await {
            Stop::End(end) => Box::pin(client.finish(end)).await,
            Stop::Park => return park(client, permit),
        }
        drop(permit);
    }
}

/// The task of a connection coming back from the parker (`park.rs`): its socket registers with tokio again.
pub(crate) async fn serve(mut client: Client, permit: tokio::sync::OwnedSemaphorePermit) {
    if let Stream::Parked(parked) = &mut client.io.stream {
        match parked.take().map(TcpStream::from_std) {
            Some(Ok(tcp)) => client.io.stream = Stream::Tcp(tcp),
            Some(Err(e)) => return Box::pin(client.finish(End::Io(e))).await,
            None => return Box::pin(client.finish(End::Closed)).await,
        }
    }
    match client.run().await {
        Stop::End(end) => Box::pin(client.finish(end)).await,
        Stop::Park => return park(client, permit),
    }
    drop(permit);
}

/// Hands a quiet connection to the parker; its task ends.
fn park(client: Client, permit: tokio::sync::OwnedSemaphorePermit) {
    #[cfg(unix)]
    crate::park::Parker::park(&client.broker.clone(), client, permit);
    #[cfg(not(unix))]
    tokio::spawn(serve(client, permit));
}

/// [`wrap`] within the connect timeout; logs why when it fails.
async fn wrap_within(
    broker: &Broker,
    stream: TcpStream,
    peer: SocketAddr,
    index: usize,
    wrapping: Arc<Wrapping>,
) -> Option<(Stream, CertUsername)> {
    let limit = broker.settings.connect_timeout;
    match tokio::time::timeout(limit, wrap(stream, &wrapping)).await {
        Ok(Ok(wrapped)) => Some(wrapped),
        Ok(Err(why)) => {
            tracing::info!(%peer, listener = index, "closed before MQTT: {why}");
            None
        }
        Err(_) => {
            let name = wrapping.name();
            tracing::info!(%peer, listener = index, "closed: {name} handshake not finished within {limit:?}");
            None
        }
    }
}

/// Runs the listener's handshakes (TLS, WebSocket upgrade) on a new socket. The first byte tells a
/// client that speaks the wrong protocol for this port; the error text is the log line.
async fn wrap(stream: TcpStream, wrapping: &Wrapping) -> Result<(Stream, CertUsername), String> {
    if wrapping.tls.is_none() && !wrapping.websockets {
        // Plain MQTT: no peek (one syscall less per connection); a TLS or HTTP client is recognised by
        // the first packet's decoder instead (`connect::misdirected`).
        return Ok((Stream::Tcp(stream), CertUsername::Unused));
    }
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await.map_err(|e| format!("socket error: {e}"))?;
    if n == 0 {
        return Err("the client closed the connection without sending anything".into());
    }
    let Some(tls) = &wrapping.tls else {
        if first[0] == 0x16 {
            return Err(format!("the client sent a TLS ClientHello, but this {} listener is not TLS", wrapping.name()));
        }
        if first[0] == b'G' && !wrapping.websockets {
            return Err("the client sent an HTTP request (a WebSocket client?) to a plain MQTT listener".into());
        }
        if !wrapping.websockets {
            return Ok((Stream::Tcp(stream), CertUsername::Unused));
        }
        let ws = crate::ws::accept(stream, wrapping.http_dir.as_deref()).await.map_err(|e| e.to_string())?;
        return Ok((Stream::Wrapped(Box::new(ws)), CertUsername::Unused));
    };
    match first[0] {
        0x16 => {}
        0x10 => return Err("the client sent a plain MQTT CONNECT to a TLS listener".into()),
        b'G' | b'H' | b'P' => return Err("the client sent plain HTTP to a TLS listener".into()),
        other => return Err(format!("the client did not start a TLS handshake (first byte {other:#04x})")),
    }
    let stream = tls.acceptor().accept(stream).await.map_err(|e| format!("TLS handshake failed: {e}"))?;
    let cert_username = tls.cert_username(stream.get_ref().1);
    if !wrapping.websockets {
        return Ok((Stream::Wrapped(Box::new(stream)), cert_username));
    }
    let ws = crate::ws::accept(stream, wrapping.http_dir.as_deref()).await.map_err(|e| e.to_string())?;
    Ok((Stream::Wrapped(Box::new(ws)), cert_username))
}
