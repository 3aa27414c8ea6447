//! One connection task per socket: read the CONNECT, attach the session, then loop over
//! `select! { read packets | write pending bytes | outbox ready | keep-alive deadline | kick | shutdown }`.
//! Partial reads and writes live in the struct's buffers, so every branch is cancel-safe.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mqttd_proto::{
    decode, encode, encode_publish, publish_len, reason, DecodeError, Limits, Packet, Properties, ProtocolVersion,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::broker::{Broker, Stats, RELIEVED_BACKLOG};
use crate::session::{Expiry, Session, WillOutcome};

/// Stop draining the outbox into the write buffer beyond this many bytes; stop reading beyond 4x.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Retained messages moved from the backlog into the outbox at a time.
const RETAINED_BATCH: usize = 256;
/// Read sizes adapt between these: an idle client holds no buffer, a busy one reads big batches.
const READ_MIN: usize = 64;
const READ_MAX: usize = 64 * 1024;

pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Why a connection ended; decides the log line, the will and the 5.0 DISCONNECT we send.
#[derive(Debug)]
pub(crate) enum End {
    /// The client sent DISCONNECT; `with_will` for 5.0 reason 0x04.
    Disconnect {
        with_will: bool,
    },
    KeepAlive(Duration),
    Closed,
    Io(std::io::Error),
    Takeover,
    /// A protocol violation: what, and the 5.0 reason code sent in DISCONNECT.
    Protocol(String, u8),
    Shutdown,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Disconnect { with_will: false } => f.write_str("client sent DISCONNECT"),
            End::Disconnect { with_will: true } => f.write_str("client sent DISCONNECT asking for its will (0x04)"),
            End::KeepAlive(d) => write!(f, "keep-alive timeout after {}s", d.as_secs_f32()),
            End::Closed => f.write_str("socket closed by peer"),
            End::Io(e) => write!(f, "socket error: {e}"),
            End::Takeover => f.write_str("session taken over by a new connection"),
            End::Protocol(what, code) => write!(f, "protocol error ({}): {what}", reason::name(*code)),
            End::Shutdown => f.write_str("server shutting down"),
        }
    }
}

impl End {
    pub(crate) fn protocol(err: &DecodeError) -> End {
        End::Protocol(err.to_string(), err.reason_code())
    }

    /// The reason code of the DISCONNECT the server sends a 5.0 client, if any.
    fn disconnect_code(&self) -> Option<u8> {
        match self {
            End::Takeover => Some(reason::SESSION_TAKEN_OVER),
            End::Protocol(_, code) => Some(*code),
            End::Shutdown => Some(reason::SERVER_SHUTTING_DOWN),
            End::KeepAlive(_) => Some(reason::KEEP_ALIVE_TIMEOUT),
            _ => None,
        }
    }
}

/// The socket and its buffers.
pub(crate) struct Transport {
    pub rd: Reader,
    pub wr: Writer,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    pub peer: SocketAddr,
    /// Index of the listener that accepted the socket.
    pub listener: usize,
    /// The username from the client certificate, on listeners with `use_identity_as_username`.
    pub cert_username: crate::tls::CertUsername,
    /// How much room the next read gets; doubles when a read fills it, halves when reads are small.
    pub read_hint: usize,
}

impl Transport {
    /// Reads more bytes; `Ok(false)` on end of stream.
    pub(crate) async fn fill(&mut self, stats: &Stats) -> std::io::Result<bool> {
        fill(&mut self.rd, &mut self.rbuf, &mut self.read_hint, stats).await
    }

    /// Writes everything buffered, bounded by `limit`.
    pub(crate) async fn flush(&mut self, limit: Duration, stats: &Stats) {
        let len = self.wbuf.len() as u64;
        let write = async {
            self.wr.write_all_buf(&mut self.wbuf).await?;
            self.wr.flush().await
        };
        if let Ok(Ok(())) = tokio::time::timeout(limit, write).await {
            Stats::add(&stats.bytes_sent, len);
        }
    }

    pub(crate) fn queue(&mut self, packet: &Packet, version: ProtocolVersion) {
        if let Err(e) = encode(packet, version, &mut self.wbuf) {
            tracing::warn!(peer = %self.peer, packet = packet.name(), "cannot encode: {e}");
        }
    }

    /// Keeps an idle connection small: a quiet client holds no buffers, a busy one keeps its own.
    fn shrink(&mut self) {
        let quiet = self.read_hint <= READ_MIN;
        if self.rbuf.is_empty() && (quiet || self.rbuf.capacity() > 2 * READ_MAX) {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() && (quiet || self.wbuf.capacity() > 4 * WRITE_HIGH_WATER) {
            self.wbuf = BytesMut::new();
        }
    }
}

/// Reads more bytes into `rbuf`; `Ok(false)` on end of stream. Cancel-safe: bytes read stay in `rbuf`.
async fn fill(rd: &mut Reader, rbuf: &mut BytesMut, hint: &mut usize, stats: &Stats) -> std::io::Result<bool> {
    if rbuf.capacity() - rbuf.len() < *hint / 2 {
        rbuf.reserve(*hint);
    }
    let room = rbuf.capacity() - rbuf.len();
    let n = rd.read_buf(rbuf).await?;
    if n >= room {
        *hint = (*hint * 2).min(READ_MAX);
    } else if n < *hint / 8 {
        *hint = (*hint / 2).max(READ_MIN);
    }
    Stats::add(&stats.bytes_received, n as u64);
    Ok(n > 0)
}

/// Backpressure: before reading more from a publisher, wait (at most [`CONGESTION_WAIT`]) until a
/// subscriber it feeds has drained its queue below [`RELIEVED_BACKLOG`], so queues and memory stay bounded
/// without dropping messages.
async fn wait_for_drain(slow: &Session) {
    loop {
        let drained = slow.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        let relieved = {
            let state = slow.state.lock();
            state.queued_bytes() <= RELIEVED_BACKLOG && !state.nearly_full()
        };
        if relieved || !slow.progressing() {
            return;
        }
        let _ = tokio::time::timeout(CONGESTION_POLL, drained).await;
    }
}

/// How often a waiting publisher re-checks that its slow subscriber still makes progress.
const CONGESTION_POLL: Duration = Duration::from_millis(20);

/// A connected client: the transport plus its session and negotiated parameters.
pub(crate) struct Client {
    pub broker: Arc<Broker>,
    pub io: Transport,
    pub session: Arc<Session>,
    pub connection_id: u64,
    pub version: ProtocolVersion,
    pub limits: Limits,
    /// Negotiated keep-alive; zero disables it.
    pub keep_alive: Duration,
    /// The client's Receive Maximum: our outgoing QoS 1/2 window.
    pub send_window: usize,
    /// The client's Maximum Packet Size (5.0).
    pub client_max_packet: Option<u32>,
    /// Session Expiry Interval from CONNECT (5.0), to validate the one in DISCONNECT.
    pub connect_expiry: u32,
    /// Expiry set by a 5.0 DISCONNECT.
    pub expiry_override: Option<Expiry>,
    /// Notified when another connection takes the session over.
    pub kick: Arc<tokio::sync::Notify>,
    /// Retained messages owed to new subscriptions, fed into the outbox as it empties.
    pub retained_backlog: std::collections::VecDeque<mqttd_core::Delivery>,
    /// A subscriber with a full queue, still reading, that a message this client published went to.
    pub congested: Option<Arc<Session>>,
    /// A subscriber this client publishes to has a long queue: yield before reading more.
    pub busy: bool,
}

/// Serves one accepted socket until it ends. Logs once, at the end.
pub async fn serve<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    listener: usize,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    serve_as(broker, stream, (peer, listener, crate::tls::CertUsername::Unused), shutdown).await
}

/// [`serve`], with the username a TLS listener took from the client certificate.
pub async fn serve_as<S>(
    broker: Arc<Broker>,
    stream: S,
    (peer, listener, cert_username): (SocketAddr, usize, crate::tls::CertUsername),
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let (rbuf, wbuf) = (BytesMut::new(), BytesMut::new());
    let io = Transport {
        rd: Box::new(rd),
        wr: Box::new(wr),
        rbuf,
        wbuf,
        peer,
        listener,
        cert_username,
        read_hint: READ_MIN,
    };
    // Boxed steps: the task's future holds only the step under way, so an idle connection keeps only the
    // small `run` state (memory per connection is a tracked figure).
    let Some(mut client) = Box::pin(crate::connect::handshake(&broker, io)).await else { return };
    Stats::add(&broker.stats.clients_connected, 1);
    let end = client.run(shutdown).await;
    Box::pin(client.finish(end)).await;
    broker.stats.clients_connected.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

impl Client {
    async fn run(&mut self, mut shutdown: watch::Receiver<bool>) -> End {
        let far = Duration::from_secs(86400 * 365);
        let grace = if self.keep_alive.is_zero() { far } else { self.keep_alive.mul_f32(1.5) };
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        loop {
            self.drain();
            let reading = self.io.wbuf.len() < 4 * WRITE_HIGH_WATER;
            tokio::select! {
                _ = shutdown.changed() => return End::Shutdown,
                _ = self.kick.notified() => return End::Takeover,
                written = self.io.wr.write_buf(&mut self.io.wbuf), if !self.io.wbuf.is_empty() => {
                    match written {
                        Ok(0) => return End::Closed,
                        Ok(n) => Stats::add(&self.broker.stats.bytes_sent, n as u64),
                        Err(e) => return End::Io(e),
                    }
                    if self.io.wbuf.is_empty() {
                        if let Err(e) = self.io.wr.flush().await { return End::Io(e) }
                        self.io.shrink();
                    }
                }
                read = fill(&mut self.io.rd, &mut self.io.rbuf, &mut self.io.read_hint, &self.broker.stats), if reading => {
                    match read {
                        Ok(true) => {}
                        Ok(false) => return End::Closed,
                        Err(e) => return End::Io(e),
                    }
                    let mut got_packet = false;
                    loop {
                        match decode(&mut self.io.rbuf, self.version, &self.limits) {
                            Ok(Some(packet)) => {
                                got_packet = true;
                                if let Err(end) = self.handle(packet) { return end }
                            }
                            Ok(None) => break,
                            Err(e) => return End::protocol(&e),
                        }
                        if let Some(slow) = self.congested.take() {
                            // Before the next packet: a subscriber's queue is nearly full.
                            self.drain();
                            Box::pin(wait_for_drain(&slow)).await;
                        }
                    }
                    if std::mem::take(&mut self.busy) {
                        // Let subscriber tasks write before this publisher reads more.
                        tokio::task::yield_now().await;
                    }
                    if got_packet {
                        // [MQTT-3.1.2-24]: 1.5 times the keep-alive since the last control packet.
                        deadline.as_mut().reset(tokio::time::Instant::now() + grace);
                    }
                    self.io.shrink();
                }
                _ = self.session.wake.notified() => {}
                _ = &mut deadline => return End::KeepAlive(grace),
            }
        }
    }

    /// Moves deliveries from the outbox into the write buffer, within the inflight window.
    pub(crate) fn drain(&mut self) {
        let now = Instant::now();
        let mut state = self.session.state.lock();
        if self.session.connection.load(std::sync::atomic::Ordering::Acquire) != self.connection_id {
            // Taken over: the session's messages belong to the new connection now.
            return;
        }
        while self.io.wbuf.len() < WRITE_HIGH_WATER {
            let Some(packet) = state.next_resend(self.send_window, now) else { break };
            self.io.queue(&packet, self.version);
        }
        while state.queued() < RETAINED_BATCH && !state.nearly_full() {
            let Some(delivery) = self.retained_backlog.pop_front() else { break };
            state.enqueue(delivery);
        }
        let mut scratch = Properties::default();
        let mut sent = 0;
        while self.io.wbuf.len() < WRITE_HIGH_WATER {
            let Some(out) = state.next_delivery(self.send_window, now) else { break };
            let publish = out.delivery.borrowed(out.packet_id, false, now, &mut scratch);
            if self.client_max_packet.is_some_and(|max| publish_len(&publish, self.version) > max as usize) {
                // Too large for this client: discard as if delivered [MQTT-3.1.2-25].
                if let Some(id) = out.packet_id {
                    let _ = state.puback(id).or_else(|_| state.pubrec(id, reason::PACKET_TOO_LARGE).map(|_| ()));
                }
                continue;
            }
            if let Err(e) = encode_publish(&publish, self.version, &mut self.io.wbuf) {
                tracing::warn!(peer = %self.io.peer, "cannot encode PUBLISH: {e}");
                continue;
            }
            sent += 1;
        }
        if sent > 0 {
            Stats::add(&self.broker.stats.messages_sent, sent);
            self.session.made_progress();
            if state.queued_bytes() <= RELIEVED_BACKLOG && !state.nearly_full() {
                // Publishers waiting on this subscriber may read again (cheap when none waits).
                self.session.drained.notify_waiters();
            }
        }
    }

    /// Ends the connection: a 5.0 DISCONNECT when the server ends it, the will, the session, one log line.
    async fn finish(&mut self, end: End) {
        if self.version.is_v5() {
            if let Some(code) = end.disconnect_code() {
                let d = mqttd_proto::Disconnect { reason: code, properties: Default::default() };
                self.io.queue(&Packet::Disconnect(d), self.version);
            }
        }
        if !matches!(end, End::Io(_) | End::Closed) {
            self.io.flush(Duration::from_secs(1), &self.broker.stats).await;
        }
        let _ = self.io.wr.shutdown().await;
        let publish_will = !matches!(end, End::Disconnect { with_will: false });
        let will = self.broker.detach(&self.session, self.connection_id, publish_will, self.expiry_override);
        if matches!(end, End::Takeover) {
            // This task may have taken a wake-up meant for the new connection: pass one on.
            self.session.wake.notify_one();
        }
        let will = if matches!(end, End::Takeover) && will == WillOutcome::HandedOver {
            "will handled by the takeover".to_string()
        } else {
            will.to_string()
        };
        tracing::info!(
            client_id = %self.session.client_id,
            peer = %self.io.peer,
            protocol = %self.version,
            "disconnected: {end}; {will}"
        );
    }
}
