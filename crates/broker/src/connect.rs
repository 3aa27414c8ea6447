//! The CONNECT exchange: the first packet within the connect timeout, client id rules, keep-alive,
//! authentication, session attach (with takeover), CONNACK, then resending what the session still owes.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use mqttd_auth::AuthOutcome;
use mqttd_proto::{
    decode, reason, reason::v3, ConnAck, Connect, DecodeError, Limits, Packet, Properties, ProtocolVersion,
};

use crate::broker::{Broker, ClientIdentity, Stats};
use crate::connection::{Client, End, Stream, Transport};
use crate::session::{Attach, Expiry};
use crate::tls::CertUsername;

/// A refused CONNECT: the 5.0 reason code (mapped for 3.x) and why, for the log.
struct Refusal(u8, String);

/// Reads CONNECT and answers it. `None` when the connection ended (logged here).
pub(crate) async fn handshake(broker: &Arc<Broker>, mut io: Transport, cert: CertUsername) -> Option<Client> {
    let limits = Limits { max_packet_size: broker.settings.max_incoming_packet() };
    let first = tokio::time::timeout(broker.settings.connect_timeout, first_packet(&mut io, &limits, broker)).await;
    let connect = match first {
        Err(_) => {
            tracing::info!(peer = %io.peer, "closed: no CONNECT within {:?}", broker.settings.connect_timeout);
            return None;
        }
        Ok(Err(end)) => {
            tracing::info!(peer = %io.peer, "closed before CONNECT: {end}");
            io.flush(Duration::from_secs(1), &broker.stats).await;
            return None;
        }
        Ok(Ok(connect)) => connect,
    };
    let version = connect.protocol;
    match accept(broker, io, *connect, limits, cert).await {
        Ok(client) => Some(client),
        Err((mut io, Refusal(code, why), client_id)) => {
            queue_refusal(&mut io, version, code);
            io.flush(Duration::from_secs(1), &broker.stats).await;
            tracing::info!(peer = %io.peer, %client_id, protocol = %version, "connection refused: {why}");
            None
        }
    }
}

/// Queues the CONNACK refusing a connection: the 5.0 reason code, or its 3.x return code.
fn queue_refusal(io: &mut Transport, version: ProtocolVersion, code: u8) {
    let code = if version.is_v5() { code } else { v3::connack_from_v5(code) };
    let ack = ConnAck { session_present: false, code, properties: Properties::default() };
    io.queue(&Packet::ConnAck(ack), version);
}

/// The largest CONNECT read (remaining length, as Mosquitto 2.0.12+): a client that has not yet
/// authenticated does not get to make the broker buffer megabytes.
const MAX_CONNECT: u32 = 100_000;

/// The decoder limits for the first packet: [`MAX_CONNECT`] within the listener's own (the limit counts
/// the whole packet: a remaining length of 100,000 takes 3 bytes, plus the first byte).
fn connect_limits(limits: &Limits) -> Limits {
    Limits { max_packet_size: limits.max_packet_size.min(MAX_CONNECT + 4) }
}

/// Why the connection ends when its first byte is not CONNECT's (0x10) [MQTT-3.1.0-1]: decided on that
/// byte alone, before any body is buffered. `None` while nothing was read or the byte is CONNECT's.
fn not_connect(first: &[u8]) -> Option<End> {
    match first.first() {
        None | Some(0x10) => None,
        Some(&byte) => Some(misdirected(first).unwrap_or_else(|| {
            let why = format!("first packet type {:#04x} is not CONNECT [MQTT-3.1.0-1]", byte >> 4 << 4);
            End::Protocol(why, reason::PROTOCOL_ERROR)
        })),
    }
}

async fn first_packet(io: &mut Transport, limits: &Limits, broker: &Broker) -> Result<Box<Connect>, End> {
    let limits = &connect_limits(limits);
    loop {
        if let Some(end) = not_connect(io.rbuf()) {
            return Err(end);
        }
        match decode(io.rbuf(), ProtocolVersion::V3_1_1, limits) {
            Ok(Some(Packet::Connect(c))) => return Ok(c),
            Ok(Some(other)) => {
                return Err(End::Protocol(
                    format!("first packet is {}, not CONNECT [MQTT-3.1.0-1]", other.name()),
                    reason::PROTOCOL_ERROR,
                ))
            }
            Ok(None) => {}
            Err(e @ DecodeError::UnsupportedProtocol { .. }) => {
                // [MQTT-3.1.2-2]: CONNACK 0x01 (3.1.1 form, the client's version is unknown), then close.
                let ack = ConnAck {
                    session_present: false,
                    code: v3::UNACCEPTABLE_PROTOCOL_VERSION,
                    properties: Properties::default(),
                };
                io.queue(&Packet::ConnAck(ack), ProtocolVersion::V3_1_1);
                return Err(End::protocol(&e));
            }
            Err(e) => return Err(misdirected(io.rbuf()).unwrap_or_else(|| End::protocol(&e))),
        }
        match io.fill(&broker.stats).await {
            Ok(true) => {}
            Ok(false) => return Err(End::Closed),
            Err(e) => return Err(End::Io(e)),
        }
    }
}

/// What [`connect_at_accept`] did with a new plain-TCP socket.
pub(crate) enum AtAccept {
    /// CONNECT answered: the client is connected, its CONNACK written (or left in its write buffer).
    Connected(Client),
    /// Nothing more to do: the CONNECT was refused (CONNACK sent), or the socket closed.
    Done,
    /// Nothing to read yet.
    NotYet(std::net::TcpStream),
    /// The CONNECT is not all there yet, is not a CONNECT, or has a password to hash: the connection task
    /// takes over, with the bytes read so far.
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
    let version = c.protocol;
    let pipelined = !io.rbuf().is_empty();
    match decide(broker, io, *c, limits, CertUsername::Unused, Some(authenticated)) {
        Ok(mut client) => {
            write_now(&mut client.io, &broker.stats);
            client.undecoded = pipelined;
            client.connected();
            AtAccept::Connected(client)
        }
        Err((mut io, Refusal(code, why), client_id)) => {
            queue_refusal(&mut io, version, code);
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

/// A client speaking another protocol to a plain MQTT listener, told apart by its first bytes for the log.
fn misdirected(first: &[u8]) -> Option<End> {
    let why = match first {
        [0x16, 0x03, ..] => "the client sent a TLS ClientHello, but this listener is not TLS",
        [b'G', b'E', b'T', b' ', ..] => {
            "the client sent an HTTP request (a WebSocket client?) to a plain MQTT listener"
        }
        _ => return None,
    };
    Some(End::Protocol(why.to_string(), reason::MALFORMED_PACKET))
}

/// A unique client id for a client that sent an empty one.
fn assigned_id(prefix: &str) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    let a = h.finish();
    h.write_u64(a);
    format!("{prefix}{a:016X}{:016X}", h.finish())
}

type Refused = (Transport, Refusal, String);

fn check_client_id(broker: &Broker, c: &Connect) -> Result<Option<String>, Refusal> {
    if !c.client_id.is_empty() {
        return Ok(None);
    }
    let s = &broker.settings;
    let refuse = |why: &str| Refusal(reason::CLIENT_IDENTIFIER_NOT_VALID, why.to_string());
    if c.protocol == ProtocolVersion::V3_1 {
        return Err(refuse("empty client id in MQTT 3.1"));
    }
    if !c.clean_start && c.protocol == ProtocolVersion::V3_1_1 {
        return Err(refuse("empty client id without clean session [MQTT-3.1.3-8]"));
    }
    if !s.allow_zero_length_clientid {
        return Err(refuse("empty client id and allow_zero_length_clientid is false"));
    }
    Ok(Some(assigned_id(&s.auto_id_prefix)))
}

/// The keep-alive to use, or a refusal for 3.x clients above `max_keepalive` (as Mosquitto does).
fn negotiate_keep_alive(broker: &Broker, c: &Connect) -> Result<(u16, Option<u16>), Refusal> {
    let max = broker.settings.max_keepalive;
    let too_long = c.keep_alive > max || (c.keep_alive == 0 && max < u16::MAX);
    if !too_long {
        return Ok((c.keep_alive, None));
    }
    if c.protocol.is_v5() {
        // Server Keep Alive tells the client the value to use [MQTT-3.2.2-21].
        return Ok((max, Some(max)));
    }
    Err(Refusal(
        reason::CLIENT_IDENTIFIER_NOT_VALID,
        format!("keep-alive {}s above max_keepalive {max}s", c.keep_alive),
    ))
}

fn expiry_of(broker: &Broker, c: &Connect) -> Expiry {
    if c.protocol.is_v5() {
        return Expiry::from_v5(c.properties.session_expiry_interval.unwrap_or(0));
    }
    if c.clean_start {
        return Expiry::Immediate;
    }
    match broker.settings.persistent_client_expiration {
        Some(d) => Expiry::After(d),
        None => Expiry::Never,
    }
}

/// A 5.0 will the broker cannot honour: Will Retain while retain is unavailable [MQTT-3.2.2-13], or a
/// Will QoS above the maximum QoS [MQTT-3.2.2-12].
fn will_refusal(broker: &Broker, w: &mqttd_proto::Will) -> Option<Refusal> {
    let s = &broker.settings;
    if w.retain && !s.retain_available {
        let why = "will retain while retain is unavailable [MQTT-3.2.2-13]".to_string();
        return Some(Refusal(reason::RETAIN_NOT_SUPPORTED, why));
    }
    if w.qos as u8 > s.max_qos {
        let why = format!("will QoS {} above max_qos {} [MQTT-3.2.2-12]", w.qos as u8, s.max_qos);
        return Some(Refusal(reason::QOS_NOT_SUPPORTED, why));
    }
    None
}

async fn accept(
    broker: &Arc<Broker>,
    io: Transport,
    c: Connect,
    limits: Limits,
    cert: CertUsername,
) -> Result<Client, Refused> {
    let authenticated = match cert {
        CertUsername::Unused => Some(authenticate(broker, &c, usize::from(io.listener)).await),
        _ => None,
    };
    decide(broker, io, c, limits, cert, authenticated)
}

/// Answers a CONNECT: checks it, takes the authentication outcome (`None`: the certificate decides) and
/// attaches the session. CONNACK is queued in the transport's write buffer either way.
#[allow(clippy::result_large_err)] // A refusal ends the connection: its size costs nothing that matters.
fn decide(
    broker: &Arc<Broker>,
    io: Transport,
    mut c: Connect,
    limits: Limits,
    cert: CertUsername,
    authenticated: Option<Result<(), Refusal>>,
) -> Result<Client, Refused> {
    let id_for_log = c.client_id.clone();
    let assigned = match check_client_id(broker, &c) {
        Ok(a) => a,
        Err(r) => return Err((io, r, id_for_log)),
    };
    if c.properties.authentication_method.is_some() {
        let why = "enhanced authentication is not supported".to_string();
        return Err((io, Refusal(reason::BAD_AUTHENTICATION_METHOD, why), id_for_log));
    }
    if let Some(r) = c.will.as_ref().filter(|_| c.protocol.is_v5()).and_then(|w| will_refusal(broker, w)) {
        return Err((io, r, id_for_log));
    }
    let (keep_alive, server_keep_alive) = match negotiate_keep_alive(broker, &c) {
        Ok(k) => k,
        Err(r) => return Err((io, r, id_for_log)),
    };
    let client_id = assigned.clone().unwrap_or_else(|| c.client_id.clone());
    // A certificate username replaces the CONNECT one, and no password is checked (as Mosquitto).
    let authenticated = match cert {
        CertUsername::Unused => authenticated.unwrap_or(Ok(())),
        CertUsername::Found(name) => {
            c.username = Some(name);
            Ok(())
        }
        CertUsername::Missing => Err(Refusal(
            reason::NOT_AUTHORIZED,
            "the listener takes the username from the client certificate, and none was sent".into(),
        )),
    };
    if let Err(r) = authenticated {
        return Err((io, r, client_id));
    }
    Ok(attach(broker, io, c, limits, client_id, assigned, keep_alive, server_keep_alive))
}

#[allow(clippy::too_many_arguments)]
fn attach(
    broker: &Arc<Broker>,
    mut io: Transport,
    c: Connect,
    limits: Limits,
    client_id: String,
    assigned: Option<String>,
    keep_alive: u16,
    server_keep_alive: Option<u16>,
) -> Client {
    let version = c.protocol;
    let connection_id = broker.next_id();
    let identity = ClientIdentity {
        client_id: Arc::from(client_id.as_str()),
        username: c.username.as_deref().map(Arc::from),
        listener: io.listener,
    };
    let expiry = expiry_of(broker, &c);
    let attach = Attach { identity, clean_start: c.clean_start, expiry, will: c.will.clone(), connection_id };
    let (session, session_present) = broker.attach(attach);
    let s = &broker.settings;
    let mut properties = Properties::default();
    if version.is_v5() {
        properties.assigned_client_identifier = assigned;
        properties.server_keep_alive = server_keep_alive;
        properties.receive_maximum = Some(s.inflight_window()).filter(|&w| w != u16::MAX);
        properties.maximum_qos = Some(s.max_qos).filter(|&q| q < 2);
        properties.retain_available = Some(0).filter(|_| !s.retain_available);
        properties.maximum_packet_size = Some(s.max_packet_size).filter(|&m| m > 0);
        properties.topic_alias_maximum = None;
        properties.subscription_identifier_available = Some(0);
        properties.shared_subscription_available = Some(0);
    }
    let ack = ConnAck { session_present, code: reason::SUCCESS, properties };
    io.queue(&Packet::ConnAck(ack), version);
    Stats::add(&broker.stats.clients_total_connects, 1);
    // Unacknowledged messages go again (`Broker::attach` marked them), with DUP, before anything new, as
    // the connection task drains the session [MQTT-4.4.0-1].
    tracing::info!(
        client_id = %client_id,
        peer = %io.peer,
        protocol = %version,
        clean_start = c.clean_start,
        keep_alive,
        session_present,
        "connected"
    );
    Client {
        broker: broker.clone(),
        io,
        session,
        connection_id,
        version,
        limits,
        keep_alive,
        send_window: c.properties.receive_maximum.unwrap_or(u16::MAX).min(s.inflight_window()),
        client_max_packet: c.properties.maximum_packet_size,
        connect_expiry: c.properties.session_expiry_interval.unwrap_or(0),
        expiry_override: None,
        retained_backlog: None,
        congested: None,
        busy: false,
        // Packets pipelined behind CONNECT may already be in the read buffer.
        undecoded: true,
    }
}

/// Checks the credentials of a CONNECT on its listener, off the async threads (password hashing is
/// slow by design). The log names the user and the reason, never the password.
async fn authenticate(broker: &Broker, c: &Connect, listener: usize) -> Result<(), Refusal> {
    if let Some(now) = authenticate_now(broker, c, listener) {
        return now;
    }
    let security = broker.security().get(listener);
    let (username, password) = (c.username.clone(), c.password.clone());
    let outcome = tokio::task::spawn_blocking(move || security.authenticate(username.as_deref(), password.as_deref()))
        .await
        .unwrap_or(AuthOutcome::NoCredentials);
    auth_result(c, outcome)
}

/// [`authenticate`] when there is no password to hash (decided here, without a trip to the blocking
/// pool); `None` when there is one.
fn authenticate_now(broker: &Broker, c: &Connect, listener: usize) -> Option<Result<(), Refusal>> {
    let security = broker.security().get(listener);
    if security.passwords.is_some() && c.username.is_some() {
        return None;
    }
    Some(auth_result(c, security.authenticate(c.username.as_deref(), c.password.as_deref())))
}

fn auth_result(c: &Connect, outcome: AuthOutcome) -> Result<(), Refusal> {
    let user = c.username.as_deref().unwrap_or("(anonymous)");
    match outcome {
        AuthOutcome::Allowed => Ok(()),
        AuthOutcome::NoCredentials => {
            Err(Refusal(reason::NOT_AUTHORIZED, format!("user {user}: {}", outcome.reason())))
        }
        // 3.1.1 return code 4 means malformed credentials; a wrong password is 5, not authorized, as
        // in Mosquitto (mosquitto_sub exits 5). 5.0 has a reason code for it.
        AuthOutcome::BadPassword | AuthOutcome::UnknownUser => {
            let code = if c.protocol.is_v5() { reason::BAD_USER_NAME_OR_PASSWORD } else { reason::NOT_AUTHORIZED };
            Err(Refusal(code, format!("user {user}: {}", outcome.reason())))
        }
    }
}
