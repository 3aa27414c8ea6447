//! Connection set-up through `mqttd_proto`, and the hot-path helpers: a PUBLISH template patched in place
//! and frame parsing on borrowed bytes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use mqttd_proto::{
    decode, encode, ConnAck, Connect, Limits, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::BenchError;

/// How long connection set-up (CONNECT/CONNACK, SUBSCRIBE/SUBACK) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Read buffer capacity kept free before each read.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

pub(crate) async fn resolve(host: &str, port: u16) -> Result<SocketAddr, BenchError> {
    let fail = |reason: String| BenchError::Resolve { host: host.to_string(), port, reason };
    let mut addrs = tokio::net::lookup_host((host, port)).await.map_err(|e| fail(e.to_string()))?;
    addrs.next().ok_or_else(|| fail("no address".into()))
}

/// An open MQTT connection: the socket and the bytes read past the last decoded packet.
pub(crate) struct Conn {
    pub stream: TcpStream,
    pub rbuf: BytesMut,
    pub version: ProtocolVersion,
}

async fn timed<T>(what: &str, f: impl std::future::Future<Output = Result<T, BenchError>>) -> Result<T, BenchError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, f).await {
        Ok(result) => result,
        Err(_) => Err(BenchError::Timeout { what: what.to_string(), secs: HANDSHAKE_TIMEOUT.as_secs() }),
    }
}

/// Connects with a clean session (or not: `persistent`) and a 60 s keep-alive (loads end sooner, so no
/// PINGREQ is due; some brokers, rumqttd among them, refuse a keep-alive of 0); returns the connection
/// and the CONNACK. `from`: the local address to connect from (the system's choice if `None`).
pub(crate) async fn connect(
    (addr, from): (SocketAddr, Option<IpAddr>),
    version: ProtocolVersion,
    client_id: String,
    persistent: bool,
) -> Result<(Conn, ConnAck), BenchError> {
    timed("CONNECT", async move {
        let packet = Packet::Connect(Box::new(Connect {
            protocol: version,
            clean_start: !persistent,
            keep_alive: 60,
            client_id,
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
            bridge: false,
        }));
        let mut bytes = BytesMut::new();
        encode(&packet, version, &mut bytes)?;
        let stream = open_with(addr, from, &bytes).await.map_err(|source| BenchError::Connect { addr, source })?;
        let mut conn = Conn { stream, rbuf: BytesMut::with_capacity(256), version };
        match conn.read_packet().await? {
            Packet::ConnAck(ack) if ack.code == 0 => Ok((conn, ack)),
            Packet::ConnAck(ack) => Err(BenchError::Refused { what: "CONNECT".into(), code: ack.code }),
            other => Err(BenchError::Protocol(format!("expected CONNACK, got {}", other.name()))),
        }
    })
    .await
}

/// Opens a TCP connection (from `from`, if given), with TCP_NODELAY, and sends `first` on it. The bytes
/// are written as soon as `connect()` returns: on loopback the handshake is over by then, so the socket
/// needs no round through the event loop before its first write (the generator's own cost per connection
/// bounds what `conns` can measure). Where the handshake is still on, it waits for it as usual.
async fn open_with(addr: SocketAddr, from: Option<IpAddr>, first: &[u8]) -> std::io::Result<TcpStream> {
    use std::io::Write;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    if let Some(ip) = from {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let socket = std::net::TcpStream::from(socket);
    let sent = match (&socket).write(first) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    let mut stream = TcpStream::from_std(socket)?;
    if sent < first.len() {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        stream.write_all(&first[sent..]).await?;
    }
    Ok(stream)
}

impl Conn {
    pub async fn send(&mut self, packet: &Packet) -> Result<(), BenchError> {
        let mut buf = BytesMut::new();
        encode(packet, self.version, &mut buf)?;
        self.stream.write_all(&buf).await.map_err(|e| BenchError::io(format!("sending {}", packet.name()), e))
    }

    pub async fn read_packet(&mut self) -> Result<Packet, BenchError> {
        loop {
            if let Some(packet) = decode(&mut self.rbuf, self.version, &Limits::default())? {
                return Ok(packet);
            }
            let n = self.stream.read_buf(&mut self.rbuf).await.map_err(|e| BenchError::io("reading", e))?;
            if n == 0 {
                return Err(BenchError::Protocol("the broker closed the connection".into()));
            }
        }
    }

    /// Subscribes to one filter and waits for a SUBACK that grants it.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<(), BenchError> {
        timed("SUBSCRIBE", async move {
            let packet_id = PacketId::new(1).expect("1 is not 0");
            let options = SubscriptionOptions { qos, ..SubscriptionOptions::default() };
            let packet = Packet::Subscribe(Subscribe {
                packet_id,
                filters: vec![(filter.to_string(), options)],
                properties: Properties::default(),
            });
            self.send(&packet).await?;
            loop {
                match self.read_packet().await? {
                    Packet::SubAck(ack) => {
                        return match ack.reasons.first() {
                            Some(&code) if code < 0x80 => Ok(()),
                            code => Err(BenchError::Refused {
                                what: format!("SUBSCRIBE {filter}"),
                                code: code.copied().unwrap_or(0x80),
                            }),
                        };
                    }
                    Packet::PingResp => {}
                    other => return Err(BenchError::Protocol(format!("expected SUBACK, got {}", other.name()))),
                }
            }
        })
        .await
    }
}

/// An encoded PUBLISH whose packet id and payload header are patched for each message.
pub(crate) struct Template {
    frame: Vec<u8>,
    /// Offset of the packet id (QoS 1/2).
    id_at: Option<usize>,
    payload_at: usize,
}

impl Template {
    pub fn new(topic: &str, qos: QoS, payload: usize, version: ProtocolVersion) -> Result<Template, BenchError> {
        let packet = Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.to_string(),
            packet_id: if qos == QoS::AtMostOnce { None } else { PacketId::new(1) },
            properties: Properties::default(),
            payload: vec![0u8; payload].into(),
        });
        let mut buf = BytesMut::new();
        encode(&packet, version, &mut buf)?;
        let (header, _) = fixed_header(&buf).expect("a whole encoded frame");
        let id_at = (qos != QoS::AtMostOnce).then_some(header + 2 + topic.len());
        Ok(Template { payload_at: buf.len() - payload, frame: buf.to_vec(), id_at })
    }

    pub fn len(&self) -> usize {
        self.frame.len()
    }

    /// Appends one message: `publisher`, `seq` and `sent_ns` go into the first 16 payload bytes.
    pub fn append(&self, out: &mut BytesMut, packet_id: u16, publisher: u32, seq: u32, sent_ns: u64) {
        let start = out.len();
        out.extend_from_slice(&self.frame);
        let frame = &mut out[start..];
        if let Some(at) = self.id_at {
            frame[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        let p = self.payload_at;
        frame[p..p + 4].copy_from_slice(&publisher.to_le_bytes());
        frame[p + 4..p + 8].copy_from_slice(&seq.to_le_bytes());
        frame[p + 8..p + 16].copy_from_slice(&sent_ns.to_le_bytes());
    }
}

/// The header fields a received payload carries.
pub(crate) struct Stamp {
    pub publisher: u32,
    pub seq: u32,
    pub sent_ns: u64,
}

impl Stamp {
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let head: &[u8; 16] = payload.get(..16)?.try_into().ok()?;
        Some(Stamp {
            publisher: u32::from_le_bytes(head[0..4].try_into().ok()?),
            seq: u32::from_le_bytes(head[4..8].try_into().ok()?),
            sent_ns: u64::from_le_bytes(head[8..16].try_into().ok()?),
        })
    }
}

/// (fixed header length, remaining length), or `None` if `buf` does not hold the whole fixed header.
pub(crate) fn fixed_header(buf: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for i in 0..4 {
        let byte = *buf.get(1 + i)?;
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((2 + i, value));
        }
    }
    None
}

/// Reads a variable byte integer at the front of `buf`: (value, bytes used).
fn varint(buf: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for i in 0..4 {
        let byte = *buf.get(i)?;
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// One whole frame at the front of a read buffer.
pub(crate) struct Frame<'a> {
    pub first: u8,
    pub body: &'a [u8],
}

/// Splits the next whole frame off `buf[*pos..]`, advancing `pos`; `None` if more bytes are needed.
pub(crate) fn next_frame<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<Frame<'a>>, BenchError> {
    let rest = &buf[*pos..];
    if rest.len() >= 5 && rest[1..5].iter().all(|b| b & 0x80 != 0) {
        return Err(BenchError::Protocol("remaining length longer than 4 bytes".into()));
    }
    let Some((header, remaining)) = fixed_header(rest) else { return Ok(None) };
    let total = header + remaining;
    if rest.len() < total {
        return Ok(None);
    }
    *pos += total;
    Ok(Some(Frame { first: rest[0], body: &rest[header..total] }))
}

/// A PUBLISH parsed in place: its QoS, packet id and payload.
pub(crate) struct PublishView<'a> {
    pub qos: u8,
    pub packet_id: u16,
    pub payload: &'a [u8],
}

pub(crate) fn parse_publish(first: u8, body: &[u8], v5: bool) -> Result<PublishView<'_>, BenchError> {
    let bad = || BenchError::Protocol("truncated PUBLISH".into());
    let qos = (first >> 1) & 0x03;
    let topic_len = usize::from(u16::from_be_bytes(body.get(..2).ok_or_else(bad)?.try_into().map_err(|_| bad())?));
    let mut at = 2 + topic_len;
    let mut packet_id = 0;
    if qos > 0 {
        packet_id = u16::from_be_bytes(body.get(at..at + 2).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
        at += 2;
    }
    if v5 {
        let (len, used) = varint(body.get(at..).ok_or_else(bad)?).ok_or_else(bad)?;
        at += used + len;
    }
    Ok(PublishView { qos, packet_id, payload: body.get(at..).ok_or_else(bad)? })
}

/// The packet id of an acknowledgement and, in 5.0, whether its reason code is a failure.
pub(crate) fn parse_ack(body: &[u8]) -> Result<(u16, bool), BenchError> {
    let id = body.get(..2).ok_or_else(|| BenchError::Protocol("truncated acknowledgement".into()))?;
    let failed = body.get(2).is_some_and(|&reason| reason >= 0x80);
    Ok((u16::from_be_bytes([id[0], id[1]]), failed))
}

/// Appends PUBACK, PUBREC, PUBREL or PUBCOMP (`first` byte) for `packet_id`, success, no properties.
pub(crate) fn append_ack(out: &mut BytesMut, first: u8, packet_id: u16) {
    let [hi, lo] = packet_id.to_be_bytes();
    out.extend_from_slice(&[first, 2, hi, lo]);
}

pub(crate) const PUBACK: u8 = 0x40;
pub(crate) const PUBREC: u8 = 0x50;
pub(crate) const PUBREL: u8 = 0x62;
pub(crate) const PUBCOMP: u8 = 0x70;

/// A DISCONNECT with reason 0, valid in every version.
pub(crate) const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Describes a packet the broker should not send mid-load (a DISCONNECT with its reason code).
pub(crate) fn unexpected(first: u8, body: &[u8]) -> BenchError {
    if first >> 4 == 14 {
        let reason = body.first().copied().unwrap_or(0);
        return BenchError::Refused { what: "the connection (DISCONNECT)".into(), code: reason };
    }
    BenchError::Protocol(format!("unexpected packet type {}", first >> 4))
}
