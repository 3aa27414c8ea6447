//! Client flows against a scripted peer over an in-memory stream: no network, no broker.

use bytes::{Bytes, BytesMut};
use mqttd_client::proto::{
    decode, encode, Ack, ConnAck, Limits, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS,
};
use mqttd_client::{random_client_id, Client, ConnectOptions, Error, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const V: ProtocolVersion = ProtocolVersion::V3_1_1;

struct Peer {
    stream: DuplexStream,
    buf: BytesMut,
}

impl Peer {
    async fn read(&mut self) -> Packet {
        loop {
            if let Some(p) = decode(&mut self.buf, V, &Limits::default()).expect("valid packet from client") {
                return p;
            }
            assert!(self.stream.read_buf(&mut self.buf).await.expect("read") > 0, "client closed");
        }
    }

    async fn write(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, V, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }
}

async fn connected(options: &ConnectOptions) -> (Client, Peer) {
    let (a, b) = tokio::io::duplex(4096);
    let mut peer = Peer { stream: b, buf: BytesMut::new() };
    let opts = options.clone();
    let client = tokio::spawn(async move { Client::handshake(Box::new(a), &opts).await });
    assert!(matches!(peer.read().await, Packet::Connect(_)));
    peer.write(Packet::ConnAck(ConnAck { session_present: false, code: 0, properties: Properties::default() })).await;
    (client.await.expect("join").expect("connected"), peer)
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn qos2(n: u16, dup: bool) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "t".into(),
        packet_id: Some(id(n)),
        properties: Properties::default(),
        payload: Bytes::from_static(b"once"),
    })
}

#[test]
fn default_client_ids_look_like_mqtt_js_ones() {
    let id = ConnectOptions::new("h", 1).client_id;
    assert_eq!(id.len(), "mqttjs_".len() + 8);
    assert!(id.starts_with("mqttjs_") && id[7..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(random_client_id("x"), random_client_id("x"));
}

#[tokio::test]
async fn a_resent_qos2_message_is_delivered_once_and_acknowledged_each_time() {
    let (mut client, mut peer) = connected(&ConnectOptions::new("h", 1)).await;
    peer.write(qos2(5, false)).await;
    peer.write(qos2(5, true)).await;
    peer.write(Packet::PubRel(Ack::new(id(5)))).await;
    peer.write(qos2(6, false)).await;
    let first = client.recv().await.expect("first");
    assert_eq!(first.packet_id, Some(id(5)));
    let second = client.recv().await.expect("second");
    assert_eq!(second.packet_id, Some(id(6)), "the DUP of 5 was not delivered again");
    assert_eq!(peer.read().await, Packet::PubRec(Ack::new(id(5))));
    assert_eq!(peer.read().await, Packet::PubRec(Ack::new(id(5))));
    assert_eq!(peer.read().await, Packet::PubComp(Ack::new(id(5))));
    assert_eq!(peer.read().await, Packet::PubRec(Ack::new(id(6))));
}

#[tokio::test]
async fn publish_qos2_runs_pubrec_pubrel_pubcomp_and_queues_messages_meanwhile() {
    let (mut client, mut peer) = connected(&ConnectOptions::new("h", 1)).await;
    let broker = tokio::spawn(async move {
        let Packet::Publish(p) = peer.read().await else { panic!("expected PUBLISH") };
        let pid = p.packet_id.expect("QoS 2 has an id");
        peer.write(Packet::Publish(Publish { qos: QoS::AtMostOnce, packet_id: None, ..p.clone() })).await;
        peer.write(Packet::PubRec(Ack::new(pid))).await;
        assert_eq!(peer.read().await, Packet::PubRel(Ack::new(pid)));
        peer.write(Packet::PubComp(Ack::new(pid))).await;
        peer
    });
    let message =
        Message { topic: "a/b".into(), payload: Bytes::from_static(b"x"), qos: QoS::ExactlyOnce, ..Message::default() };
    assert_eq!(client.publish(message).await.expect("published"), 0);
    let echoed = client.recv().await.expect("queued while waiting");
    assert_eq!(echoed.topic, "a/b");
    let mut peer = broker.await.expect("peer");
    client.disconnect(0, Properties::default()).await.expect("disconnect");
    assert!(matches!(peer.read().await, Packet::Disconnect(_)));
}

#[tokio::test]
async fn abort_closes_without_disconnect() {
    let (client, mut peer) = connected(&ConnectOptions::new("h", 1)).await;
    client.abort();
    let mut rest = Vec::new();
    peer.stream.read_to_end(&mut rest).await.expect("read to end");
    assert!(rest.is_empty(), "no DISCONNECT (or anything) after abort");
}

#[tokio::test]
async fn a_refused_connack_names_the_code_in_words() {
    let (a, b) = tokio::io::duplex(4096);
    let mut peer = Peer { stream: b, buf: BytesMut::new() };
    let opts = ConnectOptions::new("h", 1);
    let client = tokio::spawn(async move { Client::handshake(Box::new(a), &opts).await });
    peer.read().await;
    peer.write(Packet::ConnAck(ConnAck { session_present: false, code: 5, properties: Properties::default() })).await;
    let err = client.await.expect("join").expect_err("refused");
    assert!(matches!(err, Error::Refused { code: 5, .. }));
    assert_eq!(err.to_string(), "connection refused by the broker: not authorized (return code 5)");
}

#[tokio::test]
async fn keep_alive_sends_pingreq_when_idle() {
    let mut options = ConnectOptions::new("h", 1);
    options.keep_alive = 1;
    let (mut client, mut peer) = connected(&options).await;
    let recv = tokio::spawn(async move { client.recv().await.map(|_| ()) });
    assert_eq!(peer.read().await, Packet::PingReq);
    peer.write(Packet::PingResp).await;
    assert_eq!(peer.read().await, Packet::PingReq, "pings continue after PINGRESP");
    recv.abort();
}
