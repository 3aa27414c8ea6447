//! Hostile clients (issue 12): none can crash, stall or bloat the broker. Deep topics, garbage first
//! packets, offline queues fed without end, `memory_limit`, and huge messages; after each, a witness
//! client proves the broker still serves everyone else.

use std::time::{Duration, Instant};

use mqttd_broker::Settings;
use mqttd_proto::{reason, Packet, PacketId, QoS};
use mqttd_testkit::{publish, Peer, TestBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Mosquitto's CVE-2019-11779: a SUBSCRIBE whose filter is 65,535 `/` (65,536 empty levels).
fn deepest_filter() -> String {
    "/".repeat(65_535)
}

/// A SUBSCRIBE to a filter deeper than `max_topic_levels` (200 by default) is refused, 5.0 SUBACK
/// 0x8F, 3.1.1 SUBACK 0x80 [MQTT-3.9.3-1]; a PUBLISH to such a topic gets 5.0 PUBACK/PUBREC 0x90, or
/// DISCONNECT 0x90 for QoS 0 (which has no acknowledgement), and 3.1.1 is closed.
#[tokio::test]
async fn filters_and_topics_deeper_than_max_topic_levels_are_refused() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for (version, code) in [(V4, reason::v3::SUBACK_FAILURE), (V5, reason::TOPIC_FILTER_INVALID)] {
        let mut peer = Peer::connect(tb.addr, &format!("deep{}", unique()), version).await;
        assert_eq!(peer.subscribe(&deepest_filter(), QoS::AtLeastOnce).await, vec![code], "{version:?}");
        assert_eq!(peer.subscribe(&"a/".repeat(201), QoS::AtLeastOnce).await, vec![code], "202 levels");
        assert_eq!(peer.subscribe(&"a/".repeat(199), QoS::AtLeastOnce).await, vec![1], "200 levels are fine");
        witness.still_served(&tb).await;
    }
    let deep_topic = "x/".repeat(30_000);
    let mut v5 = Peer::connect(tb.addr, "deep-pub5", V5).await;
    for (qos, id) in [(QoS::AtLeastOnce, 1), (QoS::ExactlyOnce, 2)] {
        v5.send(&Packet::Publish(publish(&deep_topic, b"x", qos, false, PacketId::new(id)))).await;
        match v5.recv().await {
            Packet::PubAck(a) | Packet::PubRec(a) => assert_eq!(a.reason, reason::TOPIC_NAME_INVALID, "{qos:?}"),
            other => panic!("expected PUBACK or PUBREC, got {other:?}"),
        }
    }
    v5.send(&Packet::Publish(publish(&deep_topic, b"x", QoS::AtMostOnce, false, None))).await;
    assert_closed(&mut v5, reason::TOPIC_NAME_INVALID, "QoS 0 to a deep topic").await;
    let mut v4 = Peer::connect(tb.addr, "deep-pub4", V4).await;
    v4.send(&Packet::Publish(publish(&deep_topic, b"x", QoS::AtLeastOnce, false, PacketId::new(1)))).await;
    assert_closed(&mut v4, 0, "3.1.1 PUBLISH to a deep topic").await;
    witness.still_served(&tb).await;
}

/// With the depth limit off (`max_topic_levels 0`), a 65,536-level filter is subscribed, matched,
/// unsubscribed and dropped with the session without recursion: the broker used to overflow its stack.
#[tokio::test]
async fn without_a_depth_limit_a_65536_level_filter_is_served_and_forgotten_safely() {
    let tb = TestBroker::with_settings(Settings { max_topic_levels: 0, ..Default::default() });
    let mut witness = Witness::new(&tb).await;
    let filter = deepest_filter();
    let mut deep = Peer::connect(tb.addr, "deep", V5).await;
    assert_eq!(deep.subscribe(&filter, QoS::AtLeastOnce).await, vec![1]);
    assert_eq!(deep.subscribe(&format!("{}#", "/".repeat(65_534)), QoS::AtLeastOnce).await, vec![1]);
    witness.still_served(&tb).await;
    publish_once(&tb, &filter, b"deep", QoS::AtLeastOnce, false).await;
    assert_eq!(&deep.recv_publish().await.payload[..], b"deep");
    deep.send(&Packet::Unsubscribe(mqttd_proto::Unsubscribe {
        packet_id: PacketId::new(2).expect("non-zero"),
        filters: vec![filter.clone()],
        properties: Default::default(),
    }))
    .await;
    assert!(matches!(deep.recv().await, Packet::UnsubAck(_)));
    // The session ends with its other deep subscription still in the tree.
    deep.disconnect().await;
    wait_until("the deep subscription is gone", || tb.broker.subscription_count() == 1).await;
    witness.still_served(&tb).await;
}

/// Writes `bytes`, ignoring a broker that closes meanwhile, then reads until it closes: true when it
/// did within `limit`.
async fn closed_within(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> bool {
    let _ = stream.write_all(bytes).await;
    let mut sink = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read).await.is_ok()
}

/// The remaining length 200,000,000 as a variable byte integer.
fn remaining_200_mb() -> Vec<u8> {
    let mut out = Vec::new();
    let mut len = 200_000_000u32;
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            return out;
        }
    }
}

/// The first packet must be CONNECT [MQTT-3.1.0-1]: any other type closes the connection on its first
/// byte alone, before any body is buffered, both when the bytes came with the accept and when they
/// trickle in later. A CONNECT declaring more than 100 kB closes too (Mosquitto 2.0.12+).
#[tokio::test]
async fn a_first_packet_other_than_a_small_connect_closes_on_its_header() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    let filler = vec![0x55u8; 256 * 1024];
    let start = Instant::now();
    let mut open = Vec::new();
    for kind in 2..=15u8 {
        // The whole header and 256 KB of body at once (it comes with the accept).
        let mut bytes = vec![kind << 4];
        bytes.extend(remaining_200_mb());
        bytes.extend(&filler);
        let mut stream = TcpStream::connect(tb.addr).await.expect("connects");
        assert!(closed_within(&mut stream, &bytes, Duration::from_secs(3)).await, "type {kind:#x} with a body");
        // The first byte alone, on a connection that sent nothing before.
        let mut stream = TcpStream::connect(tb.addr).await.expect("connects");
        open.push(stream.write_all(&[kind << 4]).await.map(|_| stream));
    }
    for (i, stream) in open.into_iter().enumerate() {
        if let Ok(mut stream) = stream {
            assert!(closed_within(&mut stream, &[], Duration::from_secs(3)).await, "first byte {i} alone");
        }
    }
    let mut connect = vec![0x10];
    connect.extend(remaining_200_mb());
    connect.extend(raw_connect(V4, 0x02, &field(b"big"))[2..].iter());
    connect.extend(&filler);
    let mut stream = TcpStream::connect(tb.addr).await.expect("connects");
    assert!(closed_within(&mut stream, &connect, Duration::from_secs(3)).await, "a 200 MB CONNECT");
    let mut stream = TcpStream::connect(tb.addr).await.expect("connects");
    let mut header = vec![0x10];
    header.extend(frame(0, &vec![0; 100_001])[1..4].iter());
    assert!(closed_within(&mut stream, &header, Duration::from_secs(3)).await, "a CONNECT of 100,001 bytes");
    assert!(start.elapsed() < Duration::from_secs(10), "all closed promptly: {:?}", start.elapsed());
    witness.still_served(&tb).await;
}

/// A persistent session that is offline keeps at most `max_queued_bytes` (16 MiB by default) of the
/// messages sent to it, not all of them: 400 QoS 1 messages of 256 KB are all acknowledged to the
/// publisher, and the session gets back what fitted, in order, when it returns.
#[tokio::test]
async fn an_offline_session_keeps_a_bounded_number_of_bytes_by_default() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    let (mut offline, _) = connect_ok(&tb, persistent("offline", V4, 0)).await;
    assert_eq!(offline.subscribe("big", QoS::AtLeastOnce).await, vec![1]);
    offline.disconnect().await;
    let payload = vec![7u8; 256 * 1024];
    let mut publisher = Peer::connect(tb.addr, "big-pub", V4).await;
    for i in 1..=400u16 {
        let p = publish("big", &payload, QoS::AtLeastOnce, false, PacketId::new(i));
        publisher.send(&Packet::Publish(p)).await;
        assert!(matches!(publisher.recv().await, Packet::PubAck(a) if a.packet_id.get() == i));
    }
    let session = tb.broker.session("offline").expect("the session lives");
    let (queued, bytes) = {
        let state = session.state.lock();
        (state.queued(), state.queued_bytes())
    };
    assert!(bytes <= mqttd_core::QueueLimits::DEFAULT_MAX_BYTES, "{bytes} bytes queued");
    assert!((60..400).contains(&queued), "{queued} messages queued");
    assert!(tb.broker.memory_in_use() < 20 << 20, "{} bytes in use", tb.broker.memory_in_use());
    let (mut back, present) = connect_ok(&tb, persistent("offline", V4, 0)).await;
    assert!(present);
    let got = receive_all(&mut back, queued).await;
    assert!(got.iter().all(|p| p.payload.len() == payload.len()));
    assert!(back.quiet_for(Duration::from_millis(200)).await, "nothing beyond what was queued");
    witness.still_served(&tb).await;
}

/// Above `memory_limit` new publishes are refused: 5.0 PUBACK/PUBREC 0x97 (Quota exceeded), 5.0 QoS 0
/// DISCONNECT 0x97, 3.1.1 closed. Once the memory is given back, publishing works again.
#[tokio::test]
async fn publishes_past_memory_limit_are_refused_until_memory_is_freed() {
    let settings = Settings { memory_limit: 1 << 20, ..Default::default() };
    let tb = TestBroker::with_settings(settings);
    let mut witness = Witness::new(&tb).await;
    let (mut offline, _) = connect_ok(&tb, persistent("hoarder", V5, 600)).await;
    assert_eq!(offline.subscribe("hoard", QoS::AtLeastOnce).await, vec![1]);
    offline.disconnect().await;
    let payload = vec![1u8; 64 * 1024];
    let mut v5 = Peer::connect(tb.addr, "filler5", V5).await;
    let mut accepted = 0;
    let refused = loop {
        let p = publish("hoard", &payload, QoS::AtLeastOnce, false, PacketId::new(accepted + 1));
        v5.send(&Packet::Publish(p)).await;
        let Packet::PubAck(a) = v5.recv().await else { panic!("expected PUBACK") };
        if a.reason != reason::SUCCESS {
            break a.reason;
        }
        accepted += 1;
        assert!(accepted < 40, "never refused");
    };
    assert_eq!(refused, reason::QUOTA_EXCEEDED);
    assert!(tb.broker.memory_in_use() < (1 << 20) + 2 * payload.len(), "{}", tb.broker.memory_in_use());
    v5.send(&Packet::Publish(publish("hoard", b"x", QoS::ExactlyOnce, false, PacketId::new(100)))).await;
    assert!(matches!(v5.recv().await, Packet::PubRec(a) if a.reason == reason::QUOTA_EXCEEDED));
    v5.send(&Packet::Publish(publish("hoard", b"x", QoS::AtMostOnce, false, None))).await;
    assert_closed(&mut v5, reason::QUOTA_EXCEEDED, "5.0 QoS 0 past memory_limit").await;
    let mut v4 = Peer::connect(tb.addr, "filler4", V4).await;
    v4.send(&Packet::Publish(publish("hoard", b"x", QoS::AtLeastOnce, false, PacketId::new(1)))).await;
    assert_closed(&mut v4, 0, "3.1.1 past memory_limit").await;
    // The hoarder comes back and reads: the memory is free again.
    let (mut back, _) = connect_ok(&tb, persistent("hoarder", V5, 600)).await;
    receive_all(&mut back, accepted as usize).await;
    wait_until("the queue is drained", || tb.broker.memory_in_use() < 1 << 20).await;
    witness.still_served(&tb).await;
}

/// A 100 MB message with no `message_size_limit` reaches a subscriber that reads, whatever the
/// publisher's version and QoS: an empty queue always takes one message [MQTT-4.5.0-1].
#[tokio::test]
async fn a_100_mb_message_reaches_a_subscriber_that_reads() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    let mut sub = subscriber(&tb, "huge-sub", V4, "huge", QoS::AtLeastOnce).await;
    let payload: Vec<u8> = (0..100_000_000u32).map(|i| (i % 251) as u8).collect();
    for version in [V4, V5] {
        let mut publisher = Peer::connect(tb.addr, &format!("huge-pub{}", unique()), version).await;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let start = Instant::now();
            let (sent, got) = tokio::join!(publisher.publish("huge", &payload, qos, false), sub.recv_publish());
            let () = sent;
            assert_eq!(got.qos, qos.min(QoS::AtLeastOnce), "{version:?} {qos:?}");
            assert!(got.payload == payload, "{version:?} {qos:?}: the payload arrives whole");
            eprintln!("{version:?} {qos:?}: 100 MB delivered in {:?}", start.elapsed());
        }
        publisher.disconnect().await;
    }
    witness.still_served(&tb).await;
}
