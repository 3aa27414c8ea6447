//! The CONNECT exchange: the first packet within the connect timeout, client id rules, keep-alive,
//! authentication, session attach (with takeover), CONNACK, then resending what the session still owes.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqttd_auth::AuthOutcome;
use mqttd_proto::{
    decode, encoded_len, reason, reason::v3, ConnAck, Connect, DecodeError, Limits, Packet, Properties, ProtocolVersion,
};

use crate::alias::TopicAliases;
use crate::broker::{Broker, ClientIdentity, Stats};
use crate::connection::Connection;
use crate::end::End;
use crate::handle::{Client, Extras, Negotiated};
use crate::observe::{ConnectionInfo, EventKind};
use crate::session::{Attach, Expiry};
use crate::tls::CertUsername;
use crate::transport::{Stream, Transport};
use crate::violation::ProtocolViolation;

/// A refused CONNECT: the 5.0 reason code (mapped for 3.x) and why, for the log.
pub(crate) struct Refusal(pub u8, pub String);

/// The CONNECT exchange on a byte stream: `Some` once the client is connected (counted in `$SYS`).
pub(crate) async fn connect(
    broker: Arc<Broker>,
    stream: Stream,
    (peer, listener, cert_username): (SocketAddr, usize, CertUsername),
    read: BytesMut,
) -> Option<Connection> {
    let mut io = Transport::new(stream, peer, listener);
    if !read.is_empty() {
        // Read as the socket was accepted ([`connect_at_accept`](crate::at_accept::connect_at_accept)).
        *io.rbuf() = read;
    }
    let conn = handshake(&broker, io, cert_username).await?;
    conn.connected();
    Some(conn)
}

/// Reads CONNECT and answers it. `None` when the connection ended (logged here).
pub(crate) async fn handshake(broker: &Arc<Broker>, mut io: Transport, cert: CertUsername) -> Option<Connection> {
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
    let (version, client_max) = (connect.protocol, connect.properties.maximum_packet_size);
    match accept(broker, io, *connect, limits, cert).await {
        Ok(conn) => Some(conn),
        Err((mut io, Refusal(code, why), client_id)) => {
            refused(broker, code, &client_id);
            queue_refusal(&mut io, version, code, client_max, &why);
            io.flush(Duration::from_secs(1), &broker.stats).await;
            tracing::info!(peer = %io.peer, %client_id, protocol = %version, "connection refused: {why}");
            None
        }
    }
}

/// Counts a refused CONNECT (and an authentication failure) and records it in the recent events.
pub(crate) fn refused(broker: &Broker, code: u8, client_id: &str) {
    broker.counters.refused(code);
    if broker.events.enabled() {
        broker.events.record(&Arc::from(client_id), || EventKind::Refused { reason: reason::name(code) });
    }
}

/// Queues the CONNACK refusing a connection: the 5.0 reason code, or its 3.x return code. None for a
/// client whose Maximum Packet Size is below the smallest CONNACK [MQTT-3.1.2-24].
/// A 5.0 refusal says why in a Reason String (a CONNACK may, whatever Request Problem Information asked
/// [MQTT-3.1.2-29]), left out when it would not fit the client's Maximum Packet Size.
pub(crate) fn queue_refusal(
    io: &mut Transport,
    version: ProtocolVersion,
    code: u8,
    client_max: Option<u32>,
    why: &str,
) {
    if version.is_v5() && client_max.is_some_and(|max| max < SMALLEST_CONNACK) {
        return;
    }
    let code = if version.is_v5() { code } else { v3::connack_from_v5(code) };
    let mut ack = ConnAck { session_present: false, code, properties: Properties::default() };
    if version.is_v5() {
        ack.properties.reason_string = Some(why.to_owned());
        fit_connack(&mut ack, client_max);
    }
    io.queue(&Packet::ConnAck(ack), version);
}

/// The smallest 5.0 CONNACK: fixed header, flags, reason code, empty properties.
const SMALLEST_CONNACK: u32 = 5;

/// CONNACK properties in the order they are left out when the CONNACK would exceed the client's Maximum
/// Packet Size [MQTT-3.1.2-24]: what only informs first, what the client must obey last. (Mosquitto
/// closes the connection instead; a client that cannot hear a limit is held to it all the same.)
const CONNACK_TRIM: [fn(&mut Properties); 8] = [
    |p| p.reason_string = None,
    |p| p.response_information = None,
    |p| p.topic_alias_maximum = None,
    |p| p.maximum_packet_size = None,
    |p| p.retain_available = None,
    |p| p.receive_maximum = None,
    |p| p.maximum_qos = None,
    |p| p.server_keep_alive = None,
];

/// Leaves optional properties out of `ack` until it fits in `max` bytes (the Assigned Client Identifier
/// last); with none left it is [`SMALLEST_CONNACK`], which CONNECT made sure fits.
fn fit_connack(ack: &mut ConnAck, max: Option<u32>) {
    let Some(max) = max else { return };
    let fits = |ack: &ConnAck| encoded_len(&Packet::ConnAck(ack.clone()), ProtocolVersion::V5) <= max as usize;
    for trim in CONNACK_TRIM {
        if fits(ack) {
            return;
        }
        trim(&mut ack.properties);
    }
    if !fits(ack) {
        ack.properties = Properties::default();
    }
}

/// The largest CONNECT read (remaining length, as Mosquitto 2.0.12+): a client that has not yet
/// authenticated does not get to make the broker buffer megabytes.
const MAX_CONNECT: u32 = 100_000;

/// The decoder limits for the first packet: [`MAX_CONNECT`] within the listener's own (the limit counts
/// the whole packet: a remaining length of 100,000 takes 3 bytes, plus the first byte).
pub(crate) fn connect_limits(limits: &Limits) -> Limits {
    Limits { max_packet_size: limits.max_packet_size.min(MAX_CONNECT + 4) }
}

/// Why the connection ends when its first byte is not CONNECT's (0x10) [MQTT-3.1.0-1]: decided on that
/// byte alone, before any body is buffered. `None` while nothing was read or the byte is CONNECT's.
pub(crate) fn not_connect(first: &[u8]) -> Option<End> {
    match first.first() {
        None | Some(0x10) => None,
        Some(&byte) => Some(misdirected(first).unwrap_or(End::Protocol(ProtocolViolation::FirstByteNotConnect(byte)))),
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
            Ok(Some(other)) => return Err(End::Protocol(ProtocolViolation::FirstPacketNotConnect(other.name()))),
            Ok(None) => {}
            Err(e @ DecodeError::UnsupportedProtocol { .. }) => {
                // [MQTT-3.1.2-2]: CONNACK 0x01 (3.1.1 form, the client's version is unknown), then close.
                let ack = ConnAck {
                    session_present: false,
                    code: v3::UNACCEPTABLE_PROTOCOL_VERSION,
                    properties: Properties::default(),
                };
                io.queue(&Packet::ConnAck(ack), ProtocolVersion::V3_1_1);
                return Err(End::Protocol(e.into()));
            }
            Err(e) => return Err(misdirected(io.rbuf()).unwrap_or_else(|| End::Protocol(e.into()))),
        }
        match io.fill(&broker.stats).await {
            Ok(true) => {}
            Ok(false) => return Err(End::Closed),
            Err(e) => return Err(End::Io(e)),
        }
    }
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
    Some(End::Protocol(ProtocolViolation::Misdirected(why)))
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

fn check_client_id(broker: &Broker, c: &Connect, listener: u16) -> Result<Option<String>, Refusal> {
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
    if !s.allow_zero_length_clientid(listener) {
        return Err(refuse("empty client id and allow_zero_length_clientid is false"));
    }
    Ok(Some(assigned_id(s.auto_id_prefix(listener))))
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
fn will_refusal(broker: &Broker, w: &mqttd_proto::Will, listener: u16) -> Option<Refusal> {
    let s = &broker.settings;
    let max_qos = s.max_qos(listener);
    if w.retain && !s.retain_available {
        let why = "will retain while retain is unavailable [MQTT-3.2.2-13]".to_string();
        return Some(Refusal(reason::RETAIN_NOT_SUPPORTED, why));
    }
    if w.qos as u8 > max_qos {
        let why = format!("will QoS {} above max_qos {max_qos} [MQTT-3.2.2-12]", w.qos as u8);
        return Some(Refusal(reason::QOS_NOT_SUPPORTED, why));
    }
    None
}

/// A will larger than `message_size_limit`, which would otherwise be published past the limit: refused
/// in every version as Mosquitto does (`will__read`): 5.0 0x95, 3.x 5 (not authorized).
fn will_over_limit(broker: &Broker, w: &mqttd_proto::Will) -> Option<Refusal> {
    let limit = broker.settings.message_size_limit;
    (limit > 0 && w.payload.len() > limit as usize).then(|| {
        let why = format!("will of {} bytes over message_size_limit {limit}", w.payload.len());
        Refusal(reason::PACKET_TOO_LARGE, why)
    })
}

async fn accept(
    broker: &Arc<Broker>,
    io: Transport,
    mut c: Connect,
    limits: Limits,
    cert: CertUsername,
) -> Result<Connection, Refused> {
    let authenticated = match cert {
        CertUsername::Unused => Some(authenticate(broker, &c, usize::from(io.listener)).await),
        _ => None,
    };
    let checked = match check(broker, &mut c, cert, authenticated, io.listener) {
        Ok(checked) => checked,
        Err((refusal, client_id)) => return Err((io, refusal, client_id)),
    };
    // Only an accepted CONNECT ends the connection it takes over.
    broker.await_release(&checked.client_id).await;
    broker.claim(&checked.client_id, c.clean_start).await;
    Ok(attach(broker, io, c, limits, checked))
}

/// What [`check`] decided of an acceptable CONNECT.
pub(crate) struct Checked {
    pub client_id: String,
    /// The client id the server assigned (5.0: sent back in CONNACK).
    assigned: Option<String>,
    keep_alive: u16,
    server_keep_alive: Option<u16>,
}

/// Checks a CONNECT and takes the authentication outcome (`None`: the certificate decides). A refusal
/// comes with the client id for the log.
pub(crate) fn check(
    broker: &Broker,
    c: &mut Connect,
    cert: CertUsername,
    authenticated: Option<Result<(), Refusal>>,
    listener: u16,
) -> Result<Checked, (Refusal, String)> {
    let assigned = check_client_id(broker, c, listener).map_err(|r| (r, c.client_id.clone()))?;
    let id = assigned.as_deref().unwrap_or(&c.client_id);
    if let Some(r) = outside_clientid_prefixes(broker, id) {
        return Err((r, id.to_owned()));
    }
    if c.properties.authentication_method.is_some() {
        let why = "enhanced authentication is not supported".to_string();
        return Err((Refusal(reason::BAD_AUTHENTICATION_METHOD, why), c.client_id.clone()));
    }
    if let Some(r) = c.will.as_ref().filter(|_| c.protocol.is_v5()).and_then(|w| will_refusal(broker, w, listener)) {
        return Err((r, c.client_id.clone()));
    }
    if let Some(r) = c.will.as_ref().and_then(|w| will_over_limit(broker, w)) {
        return Err((r, c.client_id.clone()));
    }
    if let Some(max) = c.properties.maximum_packet_size.filter(|&m| c.protocol.is_v5() && m < SMALLEST_CONNACK) {
        // Not even a CONNACK fits: the connection closes without one [MQTT-3.1.2-24], as in Mosquitto.
        let why = format!("Maximum Packet Size {max} is below the smallest CONNACK");
        return Err((Refusal(reason::PACKET_TOO_LARGE, why), c.client_id.clone()));
    }
    let (keep_alive, server_keep_alive) = negotiate_keep_alive(broker, c).map_err(|r| (r, c.client_id.clone()))?;
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
    authenticated.map_err(|r| (r, client_id.clone()))?;
    let (client_id, assigned) = username_as_client_id(broker, c, listener, client_id, assigned)?;
    Ok(Checked { client_id, assigned, keep_alive, server_keep_alive })
}

/// `clientid_prefixes`: a client id (given or assigned) without the prefix is refused as not authorized,
/// as Mosquitto does.
fn outside_clientid_prefixes(broker: &Broker, client_id: &str) -> Option<Refusal> {
    let prefix = broker.settings.clientid_prefixes.as_deref()?;
    let why = || format!("client id {client_id:?} does not start with clientid_prefixes {prefix:?}");
    (!client_id.starts_with(prefix)).then(|| Refusal(reason::NOT_AUTHORIZED, why()))
}

/// `use_username_as_clientid` on the listener: the (authenticated, or certificate) username becomes the
/// client id, so one user holds one session; without a username the client is refused as not
/// authorized (Mosquitto's `handle__connect`). An id the server assigned is replaced too, and CONNACK
/// tells the 5.0 client the one in force.
fn username_as_client_id(
    broker: &Broker,
    c: &Connect,
    listener: u16,
    client_id: String,
    assigned: Option<String>,
) -> Result<(String, Option<String>), (Refusal, String)> {
    if !broker.settings.use_username_as_clientid(listener) {
        return Ok((client_id, assigned));
    }
    let Some(username) = c.username.clone() else {
        let why = "use_username_as_clientid is set and the client sent no username".to_string();
        return Err((Refusal(reason::NOT_AUTHORIZED, why), client_id));
    };
    let assigned = assigned.map(|_| username.clone());
    Ok((username, assigned))
}

/// Attaches the session of an accepted CONNECT (see [`check`]) and queues the CONNACK.
pub(crate) fn attach(
    broker: &Arc<Broker>,
    mut io: Transport,
    c: Connect,
    limits: Limits,
    checked: Checked,
) -> Connection {
    let Checked { client_id, assigned, keep_alive, server_keep_alive } = checked;
    let version = c.protocol;
    let connection_id = broker.next_id();
    let identity = ClientIdentity {
        client_id: Arc::from(client_id.as_str()),
        username: c.username.as_deref().map(Arc::from),
        listener: io.listener,
    };
    let expiry = expiry_of(broker, &c);
    let mut will = c.will.clone();
    if let (Some(will), Some(mount_point)) = (will.as_mut(), broker.settings.mount_point(io.listener)) {
        will.topic = format!("{mount_point}{}", will.topic);
    }
    let attach = Attach { identity, clean_start: c.clean_start, expiry, will, connection_id };
    // `stored`: a session kept in the durable store is acknowledged once it is stored.
    let (session, session_present, stored) = broker.attach(attach);
    let s = &broker.settings;
    let mut properties = Properties::default();
    if version.is_v5() {
        properties.assigned_client_identifier = assigned;
        properties.server_keep_alive = server_keep_alive;
        properties.receive_maximum = Some(s.inflight_window()).filter(|&w| w != u16::MAX);
        properties.maximum_qos = Some(s.max_qos(io.listener)).filter(|&q| q < 2);
        properties.retain_available = Some(0).filter(|_| !s.retain_available);
        properties.maximum_packet_size = Some(s.max_packet_size).filter(|&m| m > 0);
        properties.topic_alias_maximum = Some(s.max_topic_alias).filter(|&m| m > 0);
        // Subscription identifiers and shared subscriptions are available: the properties' absence says
        // so [MQTT-3.2.2.3.12] [MQTT-3.2.2.3.13].
        if c.properties.request_response_information == Some(1) {
            // The client asked for a base for its response topics [MQTT-3.1.2.11.6].
            properties.response_information = Some(format!("{}{client_id}", s.response_information_prefix));
        }
    }
    let mut ack = ConnAck { session_present, code: reason::SUCCESS, properties };
    fit_connack(&mut ack, c.properties.maximum_packet_size.filter(|_| version.is_v5()));
    let connack = Packet::ConnAck(ack);
    crate::trace::sent(&client_id, &connack);
    let held: std::collections::VecDeque<(u64, Packet)> = match broker.store() {
        Some(store) if stored > store.durable() => [(stored, connack)].into(),
        _ => {
            io.queue(&connack, version);
            Default::default()
        }
    };
    let aliases = c.properties.topic_alias_maximum.filter(|_| version.is_v5()).and_then(TopicAliases::for_client);
    let no_problem_info = version.is_v5() && c.properties.request_problem_information == Some(0);
    let extras = (aliases.is_some() || !held.is_empty() || no_problem_info)
        .then(|| Box::new(Extras { aliases, held, no_problem_info }));
    Stats::add(&broker.stats.clients_total_connects, 1);
    if broker.events.enabled() {
        broker.events.connected(&session.client_id, ConnectionInfo::now(version, keep_alive, io.peer, c.clean_start));
    }
    // Unacknowledged messages go again (`Broker::attach` marked them), with DUP, before anything new, as
    // the connection task drains the session [MQTT-4.4.0-1].
    crate::trace::connected(&client_id, io.peer, &c, keep_alive);
    let client = Client {
        broker: broker.clone(),
        session,
        connection_id,
        negotiated: Negotiated {
            version,
            limits,
            keep_alive,
            send_window: c.properties.receive_maximum.unwrap_or(u16::MAX).min(s.inflight_window()),
            client_max_packet: c.properties.maximum_packet_size.and_then(std::num::NonZeroU32::new),
            connect_expiry: c.properties.session_expiry_interval.unwrap_or(0),
            bridge: c.bridge,
        },
        expiry_override: None,
        retained_backlog: None,
        congested: None,
        busy: false,
        // Packets pipelined behind CONNECT may already be in the read buffer.
        undecoded: true,
        extras,
    };
    Connection { io, client }
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
pub(crate) fn authenticate_now(broker: &Broker, c: &Connect, listener: usize) -> Option<Result<(), Refusal>> {
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
