//! Test-only helpers: an in-process broker on 127.0.0.1 port 0 ([`TestBroker`]), a raw-byte MQTT peer
//! ([`Peer`]) and packet builders. Waits are bounded by [`TIMEOUT`]; nothing sleeps to synchronise.

pub mod pki;
pub mod recipe;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqttd_broker::server::Bind;
pub use mqttd_broker::server::Wrapping;
use mqttd_broker::{Broker, Server, Settings};
use mqttd_proto::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound of every wait in tests.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// An mqttd running on its own runtime thread, listening on 127.0.0.1 with an ephemeral port.
/// Dropping it shuts the server down and waits for it.
pub struct TestBroker {
    pub addr: SocketAddr,
    /// Every listener's address, in the order given to [`TestBroker::with_listeners`].
    pub addrs: Vec<SocketAddr>,
    pub broker: Arc<Broker>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestBroker {
    /// Starts a broker with default settings (anonymous allowed, `$SYS` every 10 s).
    pub fn start() -> TestBroker {
        TestBroker::with_settings(Settings::default())
    }

    /// Starts a broker with `settings`.
    pub fn with_settings(settings: Settings) -> TestBroker {
        TestBroker::with_listeners(settings, vec![Wrapping::default()])
    }

    /// Starts a broker with one listener on 127.0.0.1 port 0 per transport (plain, TLS, WebSocket);
    /// listener indexes follow the order of `listeners`.
    pub fn with_listeners(settings: Settings, listeners: Vec<Wrapping>) -> TestBroker {
        TestBroker::with_limit(settings, listeners, None)
    }

    /// Starts a broker with one plain listener that holds at most `max_connections` clients at once.
    pub fn with_max_connections(settings: Settings, max_connections: usize) -> TestBroker {
        TestBroker::with_limit(settings, vec![Wrapping::default()], Some(max_connections))
    }

    /// Starts a broker with `settings` on one runtime thread (tokio current-thread), as `mqttd` runs on
    /// machines of up to two cores; the other constructors use two worker threads.
    pub fn single_threaded(settings: Settings) -> TestBroker {
        TestBroker::with_runtime(settings, vec![Wrapping::default()], None, true)
    }

    fn with_limit(settings: Settings, listeners: Vec<Wrapping>, max_connections: Option<usize>) -> TestBroker {
        TestBroker::with_runtime(settings, listeners, max_connections, false)
    }

    fn with_runtime(
        settings: Settings,
        listeners: Vec<Wrapping>,
        max_connections: Option<usize>,
        current_thread: bool,
    ) -> TestBroker {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut builder = if current_thread {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(2);
                b
            };
            let runtime = builder.enable_all().build().expect("test runtime starts");
            runtime.block_on(async move {
                let broker = Arc::new(Broker::new(settings));
                let addr = SocketAddr::from(([127, 0, 0, 1], 0));
                let binds: Vec<Bind> = listeners
                    .into_iter()
                    .enumerate()
                    .map(|(listener, w)| Bind { addr, listener, wrapping: Arc::new(w) })
                    .collect();
                let server = Server::start_binds(broker.clone(), &binds, max_connections).await.expect("binds port 0");
                ready_tx.send((server.local_addrs.clone(), broker)).expect("test waits for the address");
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                server.shutdown().await;
            });
        });
        let (addrs, broker) = ready_rx.recv_timeout(TIMEOUT).expect("broker starts");
        TestBroker { addr: addrs[0], addrs, broker, stop: Some(stop_tx), thread: Some(thread) }
    }

    /// `host:port` string.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A raw MQTT peer over TCP: sends packets or bytes, reads packets, notices when the server closes.
pub struct Peer {
    stream: TcpStream,
    buf: BytesMut,
    /// Packets read ahead while completing a QoS 2 flow ([`Peer::recv_publish`]), returned first.
    ahead: std::collections::VecDeque<Packet>,
    pub version: ProtocolVersion,
}

impl Peer {
    /// Opens a TCP connection without sending anything.
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> Peer {
        let stream =
            tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await.expect("connect in time").expect("connects");
        Peer { stream, buf: BytesMut::new(), ahead: Default::default(), version }
    }

    /// Connects with `connect` and returns the peer and its CONNACK.
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (Peer, ConnAck) {
        let mut peer = Peer::open(addr, connect.protocol).await;
        peer.send(&Packet::Connect(Box::new(connect))).await;
        match peer.recv().await {
            Packet::ConnAck(ack) => (peer, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with a clean session and asserts success.
    pub async fn connect(addr: SocketAddr, client_id: &str, version: ProtocolVersion) -> Peer {
        let (peer, ack) = Peer::connect_with(addr, connect(client_id, version)).await;
        assert_eq!(ack.code, 0, "CONNACK refused: {ack:?}");
        peer
    }

    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out).expect("test packet encodes");
        self.send_raw(&out).await;
    }

    /// Sends a packet; an error when the connection is gone (a broker that was killed).
    pub async fn try_send(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out).expect("test packet encodes");
        self.stream.write_all(&out).await
    }

    /// Connects with `connect` and returns the peer and its CONNACK; `None` if the broker cannot be reached
    /// or closes before answering.
    pub async fn try_connect_with(addr: SocketAddr, connect: Connect) -> Option<(Peer, ConnAck)> {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await.ok()?.ok()?;
        let mut peer = Peer { stream, buf: BytesMut::new(), ahead: Default::default(), version: connect.protocol };
        peer.try_send(&Packet::Connect(Box::new(connect))).await.ok()?;
        match peer.recv_within(TIMEOUT).await? {
            Packet::ConnAck(ack) => Some((peer, ack)),
            _ => None,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to broker");
    }

    /// The next packet; panics after [`TIMEOUT`] or if the connection closes.
    pub async fn recv(&mut self) -> Packet {
        match self.try_recv(TIMEOUT).await {
            Some(p) => p,
            None => panic!("connection closed while a packet was expected"),
        }
    }

    /// The next packet, or `None` if the server closed the connection. Panics on timeout.
    pub async fn try_recv(&mut self, limit: Duration) -> Option<Packet> {
        tokio::time::timeout(limit, self.next_packet()).await.expect("packet or close within the timeout")
    }

    /// The next packet if one arrives within `limit`; `None` if none does (nothing is lost: a packet that
    /// arrives later is returned by the next read) or if the connection closes.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Packet> {
        tokio::time::timeout(limit, self.next_packet()).await.ok().flatten()
    }

    /// The next packet (read ahead, buffered or read now); `None` once the connection closes.
    async fn next_packet(&mut self) -> Option<Packet> {
        if let Some(p) = self.ahead.pop_front() {
            return Some(p);
        }
        loop {
            if let Some(p) =
                decode(&mut self.buf, self.version, &Limits::default()).expect("server sends valid packets")
            {
                return Some(p);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Whether a packet arrives within `limit` (false if none does); for asserting that nothing comes.
    pub async fn quiet_for(&mut self, limit: Duration) -> bool {
        if !self.ahead.is_empty() {
            return false;
        }
        let read = async {
            loop {
                if let Ok(Some(p)) = decode(&mut self.buf, self.version, &Limits::default()) {
                    return Some(p);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        !matches!(tokio::time::timeout(limit, read).await, Ok(Some(_)))
    }

    /// Reads until the server closes; returns the packets received before that (e.g. a DISCONNECT).
    pub async fn expect_closed(&mut self) -> Vec<Packet> {
        let mut got = Vec::new();
        while let Some(p) = self.try_recv(TIMEOUT).await {
            got.push(p);
        }
        got
    }

    /// Subscribes and returns the SUBACK codes.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<u8> {
        let options = SubscriptionOptions { qos, ..Default::default() };
        self.subscribe_with(vec![(filter.to_string(), options)], Properties::default()).await
    }

    pub async fn subscribe_with(
        &mut self,
        filters: Vec<(String, SubscriptionOptions)>,
        properties: Properties,
    ) -> Vec<u8> {
        let packet_id = PacketId::new(1).expect("non-zero");
        self.send(&Packet::Subscribe(Subscribe { packet_id, filters, properties })).await;
        match self.recv().await {
            Packet::SubAck(ack) => ack.reasons,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the QoS flow as a well-behaved client.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        let packet_id = if qos == QoS::AtMostOnce { None } else { PacketId::new(10) };
        self.send(&Packet::Publish(publish(topic, payload, qos, retain, packet_id))).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert!(matches!(self.recv().await, Packet::PubAck(_))),
            QoS::ExactlyOnce => {
                assert!(matches!(self.recv().await, Packet::PubRec(_)));
                self.send(&Packet::PubRel(Ack::new(packet_id.expect("QoS 2 id")))).await;
                assert!(matches!(self.recv().await, Packet::PubComp(_)));
            }
        }
    }

    /// The next PUBLISH, acknowledged as a well-behaved client (QoS 1: PUBACK; QoS 2: PUBREC, PUBREL,
    /// PUBCOMP).
    pub async fn recv_publish(&mut self) -> Publish {
        let p = match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(Ack::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(&Packet::PubRec(Ack::new(id))).await;
                // The server may send further PUBLISHes before this PUBREL (several QoS 2 messages can be
                // in flight): they are kept for the next calls.
                let mut later = Vec::new();
                loop {
                    match self.recv().await {
                        Packet::PubRel(rel) if rel.packet_id == id => break,
                        other => later.push(other),
                    }
                }
                self.ahead.extend(later);
                self.send(&Packet::PubComp(Ack::new(id))).await;
            }
            _ => {}
        }
        p
    }

    /// Sends DISCONNECT and waits for the server to close.
    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default())).await;
        self.expect_closed().await;
    }

    /// Drops the socket without DISCONNECT (an abnormal end: the will is published).
    pub fn drop_abruptly(self) {
        drop(self);
    }
}

/// A CONNECT with clean start, keep-alive 60 and no will.
pub fn connect(client_id: &str, protocol: ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
        bridge: false,
    }
}

/// A PUBLISH without properties.
pub fn publish(topic: &str, payload: &[u8], qos: QoS, retain: bool, packet_id: Option<PacketId>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic.to_string(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A will without properties.
pub fn will(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Will {
    Will {
        topic: topic.to_string(),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
        properties: Properties::default(),
    }
}
