//! A plain-TCP socket's CONNECT answered as the socket is accepted, when it came with the accept: no task,
//! no tokio registration, one read and one write (`park.rs` then keeps the connection while it is
//! quiet). Anything unusual goes to the connection task and the full exchange of `connect.rs`.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use mqttd_proto::{decode, Limits, Packet, ProtocolVersion};

use crate::broker::{Broker, Stats};
use crate::connect::{attach, authenticate_now, check, connect_limits, not_connect, queue_refusal, refused, Refusal};
use crate::connection::Connection;
use crate::end::End;
use crate::tls::CertUsername;
use crate::transport::{Stream, Transport};

/// What [`connect_at_accept`] did with a new plain-TCP socket.
pub(crate) enum AtAccept {
    /// CONNECT answered: the client is connected, its CONNACK written (or left in its write buffer).
    Connected(Connection),
    /// Nothing more to do: the CONNECT was refused (CONNACK sent), or the socket closed.
    Done,
    /// Nothing to read yet.
    NotYet(std::net::TcpStream),
    /// The CONNECT is not all there yet, is not a CONNECT, has a password to hash, or takes over a
    /// connected client id (the old connection must end first): the connection task takes over, with the
    /// bytes read so far.
    Later(std::net::TcpStream, BytesMut),
}

/// Bytes read from a new socket to find its CONNECT (most are well under 100 bytes).
const READ_AT_ACCEPT: usize = 512;

/// Answers a new socket's CONNECT as it is accepted, when it is already there (it usually is: a client
/// sends it right after the TCP handshake): no task, no tokio registration, one read and one write. A
/// connection that sends nothing more then parks at once. Anything unusual goes to the connection task
/// ([`AtAccept::Later`]), which handles it as if nothing had happened.
pub(crate) fn connect_at_accept(
    broker: &Arc<Broker>,
    stream: std::net::TcpStream,
    peer: std::net::SocketAddr,
    listener: usize,
) -> AtAccept {
    use std::io::Read;
    let mut first = [0u8; READ_AT_ACCEPT];
    let n = match (&stream).read(&mut first) {
        Ok(0) => {
            tracing::info!(%peer, "closed before CONNECT: {}", End::Closed);
            return AtAccept::Done;
        }
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return AtAccept::NotYet(stream),
        Err(e) => {
            tracing::info!(%peer, "closed before CONNECT: {}", End::Io(e));
            return AtAccept::Done;
        }
    };
    Stats::add(&broker.stats.bytes_received, n as u64);
    let first = &first[..n];
    if let Some(end) = not_connect(first) {
        tracing::info!(%peer, "closed before CONNECT: {end}");
        return AtAccept::Done;
    }
    let limits = Limits { max_packet_size: broker.settings.max_incoming_packet() };
    // The thread's buffers, as for a connection's turn: nothing allocated unless bytes are left over.
    let mut io = Transport::new(Stream::Parked(Some(stream)), peer, listener);
    io.borrow_scratch();
    io.rbuf().extend_from_slice(first);
    let connect = match decode(io.rbuf(), ProtocolVersion::V3_1_1, &connect_limits(&limits)) {
        Ok(Some(Packet::Connect(c))) => authenticate_now(broker, &c, listener).map(|a| (c, a)),
        _ => None,
    };
    let Some((c, authenticated)) = connect else {
        io.give_back();
        let Stream::Parked(Some(stream)) = io.stream else { return AtAccept::Done };
        return AtAccept::Later(stream, BytesMut::from(first));
    };
    let mut c = *c;
    let (version, client_max) = (c.protocol, c.properties.maximum_packet_size);
    let pipelined = !io.rbuf().is_empty();
    match check(broker, &mut c, CertUsername::Unused, Some(authenticated), io.listener) {
        Ok(checked) if broker.is_attached(&checked.client_id) || broker.clustered() => {
            // A takeover waits for the old connection to end, a cluster for this node to own the client
            // id: that takes a task.
            io.give_back();
            let Stream::Parked(Some(stream)) = io.stream else { return AtAccept::Done };
            AtAccept::Later(stream, BytesMut::from(first))
        }
        Ok(checked) => {
            let mut conn = attach(broker, io, c, limits, checked);
            write_now(&mut conn.io, &broker.stats);
            conn.client.undecoded = pipelined;
            conn.connected();
            AtAccept::Connected(conn)
        }
        Err((Refusal(code, why), client_id)) => {
            refused(broker, code, &client_id);
            queue_refusal(&mut io, version, code, client_max, &why);
            write_now(&mut io, &broker.stats);
            tracing::info!(%peer, %client_id, protocol = %version, "connection refused: {why}");
            AtAccept::Done
        }
    }
}

/// Writes what the socket takes now of a [`Stream::Parked`] transport's write buffer (a CONNACK into a new
/// socket: all of it), then gives the thread's buffers back.
fn write_now(io: &mut Transport, stats: &Stats) {
    use std::io::Write;
    if let (Stream::Parked(Some(socket)), Some(b)) = (&io.stream, io.bufs.as_mut()) {
        while !b.w.is_empty() {
            match (&*socket).write(&b.w) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    b.w.advance(n);
                    Stats::add(&stats.bytes_sent, n as u64);
                }
            }
        }
    }
    io.give_back();
}
