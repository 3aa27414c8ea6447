//! Helpers shared by the broker tests: CONNECT builders, raw packet bytes, bounded waits and a witness
//! client that proves the broker still serves others.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqttd_proto::{encode, Ack, Connect, Packet, ProtocolVersion, Publish, QoS};
use mqttd_testkit::{connect, Peer, TestBroker, TIMEOUT};

pub const V3: ProtocolVersion = ProtocolVersion::V3_1;
pub const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// A broker without `$SYS` messages, for tests that count retained messages.
pub fn without_sys() -> TestBroker {
    TestBroker::with_settings(mqttd_broker::Settings { sys_interval: Duration::ZERO, ..Default::default() })
}

/// Receives `n` PUBLISH packets, acknowledging them as a well-behaved client even when they interleave
/// with the QoS 2 handshakes (PUBREC out, PUBREL in, PUBCOMP out); returns them in arrival order once
/// every QoS 2 flow is complete.
pub async fn receive_all(peer: &mut Peer, n: usize) -> Vec<Publish> {
    let mut got = Vec::new();
    let mut open_qos2 = 0;
    while got.len() < n || open_qos2 > 0 {
        match peer.recv().await {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => peer.send(&Packet::PubAck(Ack::new(id))).await,
                    (QoS::ExactlyOnce, Some(id)) => {
                        open_qos2 += 1;
                        peer.send(&Packet::PubRec(Ack::new(id))).await;
                    }
                    _ => {}
                }
                got.push(p);
            }
            Packet::PubRel(rel) => {
                open_qos2 -= 1;
                peer.send(&Packet::PubComp(Ack::new(rel.packet_id))).await;
            }
            other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
        }
    }
    got
}

/// Polls `condition` every 10 ms until it holds; panics after [`TIMEOUT`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A CONNECT without clean start that keeps its session for `expiry` seconds (5.0) or until it expires
/// by the broker's rules (3.x).
pub fn persistent(client_id: &str, version: ProtocolVersion, expiry: u32) -> Connect {
    let mut c = connect(client_id, version);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

/// Connects with `c` and asserts CONNACK success; returns the peer and Session Present.
pub async fn connect_ok(tb: &TestBroker, c: Connect) -> (Peer, bool) {
    let (peer, ack) = Peer::connect_with(tb.addr, c).await;
    assert_eq!(ack.code, 0, "CONNACK refused: {ack:?}");
    (peer, ack.session_present)
}

/// A connected client subscribed to `filter` at `qos` (the SUBACK follows the tree update, so the
/// subscription is live when this returns).
pub async fn subscriber(tb: &TestBroker, id: &str, version: ProtocolVersion, filter: &str, qos: QoS) -> Peer {
    let mut peer = Peer::connect(tb.addr, id, version).await;
    assert_eq!(peer.subscribe(filter, qos).await, vec![qos as u8], "SUBACK for {filter}");
    peer
}

/// Publishes once from a fresh short-lived 3.1.1 client.
pub async fn publish_once(tb: &TestBroker, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
    let mut publisher = Peer::connect(tb.addr, &format!("pub-{}", unique()), V4).await;
    publisher.publish(topic, payload, qos, retain).await;
    publisher.disconnect().await;
}

/// A process-wide unique number for client ids.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The next packet, which must be a PUBLISH; not acknowledged.
pub async fn recv_publish_raw(peer: &mut Peer) -> Publish {
    match peer.recv().await {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// Reads until the server closes; returns the reason code of the DISCONNECT it sent, if any.
pub async fn closed_with(peer: &mut Peer) -> Option<u8> {
    let packets = peer.expect_closed().await;
    packets.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason),
        _ => None,
    })
}

/// Asserts the server closes the connection; for a 5.0 peer, that it first sends DISCONNECT `code`.
pub async fn assert_closed(peer: &mut Peer, code: u8, what: &str) {
    let sent = closed_with(peer).await;
    if peer.version.is_v5() {
        assert_eq!(sent, Some(code), "DISCONNECT reason for {what}");
    } else {
        assert_eq!(sent, None, "no DISCONNECT before 5.0 ({what})");
    }
}

/// The wire bytes of `packet`.
pub fn bytes_of(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).expect("test packet encodes");
    out.to_vec()
}

/// A packet from a first byte and a body: the remaining length is encoded here.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field, with any bytes (valid UTF-8 or not).
pub fn field(raw: &[u8]) -> Vec<u8> {
    let mut out = (raw.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(raw);
    out
}

/// A CONNECT: protocol name and level of `version`, `flags`, keep-alive 60, empty 5.0 properties, then
/// `payload` (client id, will, user name, password as the flags say).
pub fn raw_connect(version: ProtocolVersion, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = match version {
        ProtocolVersion::V3_1 => field(b"MQIsdp"),
        _ => field(b"MQTT"),
    };
    body.push(version.level());
    body.push(flags);
    body.extend([0, 60]);
    if version.is_v5() {
        body.push(0);
    }
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

/// A QoS 0 PUBLISH body with a raw topic.
pub fn raw_publish_qos0(version: ProtocolVersion, topic: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    if version.is_v5() {
        body.push(0);
    }
    body.extend_from_slice(payload);
    frame(0x30, &body)
}

/// A client subscribed to `witness` that proves the broker still serves everyone else.
pub struct Witness {
    peer: Peer,
    count: u32,
}

impl Witness {
    pub async fn new(tb: &TestBroker) -> Witness {
        let peer = subscriber(tb, "witness", V4, "witness", QoS::AtLeastOnce).await;
        Witness { peer, count: 0 }
    }

    /// A new client publishes to `witness` and the witness receives it.
    pub async fn still_served(&mut self, tb: &TestBroker) {
        self.count += 1;
        let payload = format!("still here {}", self.count);
        publish_once(tb, "witness", payload.as_bytes(), QoS::AtLeastOnce, false).await;
        let got = self.peer.recv_publish().await;
        assert_eq!(got.payload, Bytes::from(payload), "the witness still gets messages");
    }
}

/// The bytes of `count` pipelined QoS 1 PUBLISHes to `topic` (3.1.1), payloads 1..=count as big-endian
/// u16, packet ids the same numbers.
pub fn qos1_burst(topic: &str, count: u16) -> Vec<u8> {
    let mut burst = Vec::new();
    for i in 1..=count {
        let p = mqttd_testkit::publish(topic, &i.to_be_bytes(), QoS::AtLeastOnce, false, mqttd_proto::PacketId::new(i));
        burst.extend(bytes_of(&Packet::Publish(p), V4));
    }
    burst
}
