//! The bytes of a connection: the socket under MQTT ([`Stream`]: plain TCP, or TLS and WebSocket behind a
//! [`ByteStream`]) and its read and write buffers (`Transport`), lent by the thread for each turn.
//! Knows nothing of packets beyond encoding one into the write buffer.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use mqttd_proto::{encode, Packet, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::broker::Stats;

/// Stop draining the outbox into the write buffer beyond this many bytes; stop reading beyond 4x.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;
/// The same for a connection whose socket is full: what waits in its own buffer stays small.
const WRITE_HELD: usize = 16 * 1024;
/// Read sizes adapt between these in a connection's own buffer (the handshake, a big partial packet); the
/// thread's shared buffer always offers `READ_MAX`.
const READ_MIN: usize = 64;
const READ_MAX: usize = 16 * 1024;

/// A byte stream that carries MQTT after the listener's handshakes (TLS, WebSocket).
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin {
    /// The TCP socket under the stream.
    fn socket(&self) -> &TcpStream;
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

impl ByteStream for TlsStream {
    fn socket(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl ByteStream for mqttd_ws::WsBytes<TcpStream> {
    fn socket(&self) -> &TcpStream {
        self.get_ref()
    }
}

impl ByteStream for mqttd_ws::WsBytes<TlsStream> {
    fn socket(&self) -> &TcpStream {
        self.get_ref().get_ref().0
    }
}

/// The socket under MQTT: plain TCP inline (no allocation, no dynamic call), anything else boxed.
pub enum Stream {
    Tcp(TcpStream),
    Wrapped(Box<dyn ByteStream>),
    /// A socket not registered with tokio: a parked connection's (`park.rs`), or one whose CONNECT was
    /// answered as it was accepted; `None` while it moves. Reads and writes fail: a connection gets its
    /// `Tcp` back before it runs.
    Parked(Option<std::net::TcpStream>),
}

impl Stream {
    /// Whether the kernel holds bytes (or the end of the stream) for this socket that have not been read.
    /// Asks the socket itself: the runtime's idea of its readiness may lag behind (a socket registered
    /// just now, or an event not yet polled). An error counts as input: the next read reports it.
    pub(crate) fn input_waiting(&self) -> bool {
        let socket = match self {
            Stream::Tcp(s) => socket2::SockRef::from(s),
            Stream::Wrapped(s) => socket2::SockRef::from(s.socket()),
            Stream::Parked(Some(s)) => socket2::SockRef::from(s),
            Stream::Parked(None) => return false,
        };
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        match socket.peek(&mut byte) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

/// The error of I/O on a [`Stream::Parked`].
fn parked() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "the connection is parked")
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Wrapped(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Parked(_) => Poll::Ready(Err(parked())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Wrapped(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Parked(_) => Poll::Ready(Err(parked())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Wrapped(s) => Pin::new(s).poll_flush(cx),
            Stream::Parked(_) => Poll::Ready(Err(parked())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Wrapped(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Parked(_) => Poll::Ready(Err(parked())),
        }
    }
}

/// A connection's read and write buffers; boxed, and absent while the connection is idle.
#[derive(Default)]
pub(crate) struct Buffers {
    pub r: BytesMut,
    pub w: BytesMut,
}

/// The socket and its buffers.
pub(crate) struct Transport {
    pub stream: Stream,
    /// `None` while idle; this thread's buffers during a turn ([`Transport::borrow_scratch`]); the
    /// connection's own when bytes are left over (a partial packet, output the socket did not take).
    pub bufs: Option<Box<Buffers>>,
    pub peer: SocketAddr,
    /// Index of the listener that accepted the socket.
    pub listener: u16,
    /// How much room the next read gets; doubles when a read fills it, halves when reads are small.
    pub read_hint: u32,
    /// The write buffer was written out but the stream (TLS, WebSocket) still holds bytes to flush.
    pub flush_pending: bool,
    /// `bufs` are this thread's, lent for the turn.
    pub lent: bool,
}

impl Transport {
    pub(crate) fn new(stream: Stream, peer: SocketAddr, listener: usize) -> Transport {
        Transport {
            stream,
            bufs: None,
            peer,
            listener: u16::try_from(listener).unwrap_or(u16::MAX),
            read_hint: READ_MIN as u32,
            flush_pending: false,
            lent: false,
        }
    }

    /// The socket's descriptor while it is outside tokio ([`Stream::Parked`]).
    pub(crate) fn socket_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match &self.stream {
            Stream::Parked(Some(s)) => Some(s.as_raw_fd()),
            _ => None,
        }
    }

    /// The read buffer (made if there is none).
    pub(crate) fn rbuf(&mut self) -> &mut BytesMut {
        &mut self.bufs.get_or_insert_with(Box::default).r
    }

    /// The write buffer (made if there is none).
    pub(crate) fn wbuf(&mut self) -> &mut BytesMut {
        &mut self.bufs.get_or_insert_with(Box::default).w
    }

    /// Bytes waiting to be written.
    pub(crate) fn output_len(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.w.len())
    }

    /// Reads more bytes; `Ok(false)` on end of stream.
    pub(crate) async fn fill(&mut self, stats: &Stats) -> std::io::Result<bool> {
        std::future::poll_fn(|cx| self.poll_fill(cx, stats)).await
    }

    /// Reads more bytes into the read buffer; `Ok(false)` on end of stream. Bytes read stay there.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>, stats: &Stats) -> Poll<std::io::Result<bool>> {
        let hint = self.read_hint as usize;
        let r = &mut self.bufs.get_or_insert_with(Box::default).r;
        if r.capacity() - r.len() < hint / 2 {
            r.reserve(hint);
        }
        let room = r.capacity() - r.len();
        let n = std::task::ready!(tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, r))?;
        if n >= room {
            self.read_hint = (self.read_hint * 2).min(READ_MAX as u32);
        } else if n < hint / 8 {
            self.read_hint = (self.read_hint / 2).max(READ_MIN as u32);
        }
        Stats::add(&stats.bytes_received, n as u64);
        Poll::Ready(Ok(n > 0))
    }

    /// Writes the write buffer out, then flushes the stream. `Ready(Ok(wrote))` when done or nothing is
    /// left to write, `Pending` (the socket will wake the task) when it could write nothing.
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>, stats: &Stats) -> Poll<std::io::Result<bool>> {
        let mut wrote = false;
        if let Some(b) = self.bufs.as_mut() {
            while !b.w.is_empty() {
                match Pin::new(&mut self.stream).poll_write(cx, &b.w) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        b.w.advance(n);
                        Stats::add(&stats.bytes_sent, n as u64);
                        wrote = true;
                        self.flush_pending = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending if wrote => return Poll::Ready(Ok(true)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        if self.flush_pending {
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flush_pending = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if wrote => return Poll::Ready(Ok(true)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(wrote))
    }

    /// Writes everything buffered, bounded by `limit`.
    pub(crate) async fn flush(&mut self, limit: Duration, stats: &Stats) {
        let w = &mut self.bufs.get_or_insert_with(Box::default).w;
        let len = w.len() as u64;
        let write = async {
            self.stream.write_all_buf(w).await?;
            self.stream.flush().await
        };
        if let Ok(Ok(())) = tokio::time::timeout(limit, write).await {
            Stats::add(&stats.bytes_sent, len);
        }
    }

    pub(crate) fn queue(&mut self, packet: &Packet, version: ProtocolVersion) {
        if let Err(e) = encode(packet, version, self.wbuf()) {
            tracing::warn!(peer = %self.peer, packet = packet.name(), "cannot encode: {e}");
        }
    }

    /// Lends this thread's buffers to the connection for one turn ([`Transport::give_back`] ends it):
    /// reads and writes go through buffers shared by every connection on the thread, so a busy
    /// connection holds memory only for bytes it could not finish, and an idle one none.
    pub(crate) fn borrow_scratch(&mut self) {
        if self.bufs.as_ref().is_some_and(|b| !b.w.is_empty() || b.r.len() > KEEP_MAX) {
            // Output waits for the socket, or a big packet is half read: this turn uses the own buffers.
            self.lent = false;
            return;
        }
        let own = self.bufs.take();
        let mut scratch = SCRATCH.take().unwrap_or_default();
        scratch.r.clear();
        scratch.w.clear();
        scratch.r.reserve(READ_MAX);
        if let Some(own) = own {
            // A small partial packet moves into the shared buffer.
            scratch.r.extend_from_slice(&own.r);
        }
        self.bufs = Some(scratch);
        self.lent = true;
    }

    /// How far the connection's `drain` fills the write buffer: far while the socket takes everything (one
    /// write for many messages), less once bytes wait in a buffer of the connection's own.
    pub(crate) fn write_limit(&self) -> usize {
        if self.lent {
            WRITE_HIGH_WATER
        } else {
            WRITE_HELD
        }
    }

    /// Ends [`Transport::borrow_scratch`]: the thread's buffers go back to it; bytes left in them are
    /// copied into buffers of their exact size; empty own buffers are let go.
    pub(crate) fn give_back(&mut self) {
        let Some(b) = self.bufs.take() else { return };
        let leftover = !b.r.is_empty() || !b.w.is_empty();
        if !std::mem::take(&mut self.lent) {
            if leftover {
                self.bufs = Some(b);
            }
            return;
        }
        if leftover {
            self.bufs = Some(Box::new(Buffers { r: exact_copy(&b.r), w: exact_copy(&b.w) }));
        }
        // A buffer grown for one huge packet is not kept for the thread's lifetime.
        if b.r.capacity() <= 4 * READ_MAX && b.w.capacity() <= 4 * WRITE_HIGH_WATER {
            SCRATCH.set(Some(b));
        }
    }
}

/// A buffer holding just `bytes` (none when empty).
fn exact_copy(bytes: &[u8]) -> BytesMut {
    if bytes.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(bytes)
    }
}

/// A partial packet up to this size moves into the thread's read buffer for the next read; a bigger one
/// keeps reading into its own buffer.
const KEEP_MAX: usize = 4096;

thread_local! {
    /// Each runtime thread's read and write buffers, lent to one connection at a time
    /// ([`Transport::borrow_scratch`]).
    static SCRATCH: std::cell::Cell<Option<Box<Buffers>>> = const { std::cell::Cell::new(None) };
}
