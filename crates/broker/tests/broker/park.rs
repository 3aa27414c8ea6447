//! Parked connections (`park.rs`): a quiet plain-TCP connection gives up its task and waits in the
//! parker's epoll set. Everything a connection does must work the same when it starts from there: its
//! socket, its session and the broker's sweeps wake it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mqttd_broker::Settings;
use mqttd_proto::{reason, Ack, Packet, PacketId, QoS};
use mqttd_testkit::{connect, publish, will, Peer, TestBroker};

use crate::common::*;

/// Connections park 100 ms after their last packet (and at once after CONNECT when quiet).
fn parking() -> TestBroker {
    TestBroker::with_settings(Settings { park_after: Some(Duration::from_millis(100)), ..Settings::default() })
}

async fn wait_parked(tb: &TestBroker, n: u64) {
    let stats = &tb.broker.stats;
    wait_until(&format!("{n} connections parked"), || stats.clients_parked.load(Ordering::Relaxed) == n).await;
}

/// A parked subscriber is woken by a delivery: it gets the message, acknowledges it, and parks again.
#[tokio::test]
async fn a_parked_subscriber_receives_and_parks_again() {
    let tb = parking();
    let mut sub = subscriber(&tb, "sleeper", V5, "wake/+", QoS::AtLeastOnce).await;
    wait_parked(&tb, 1).await;
    let mut publisher = Peer::connect(tb.addr, "waker", V5).await;
    wait_parked(&tb, 2).await;
    for i in 0..3u8 {
        publisher.publish("wake/up", &[i], QoS::AtLeastOnce, false).await;
        let got = sub.recv_publish().await;
        assert_eq!((got.topic.as_str(), &got.payload[..], got.qos), ("wake/up", &[i][..], QoS::AtLeastOnce));
        // Both park again once quiet: the next message starts from the parker once more.
        wait_parked(&tb, 2).await;
    }
}

/// A parked client's PINGREQ wakes it, and it answers [MQTT-3.12.4-1].
#[tokio::test]
async fn a_parked_client_answers_pingreq() {
    let tb = parking();
    let mut peer = Peer::connect(tb.addr, "pinger", V4).await;
    for _ in 0..2 {
        wait_parked(&tb, 1).await;
        peer.send(&Packet::PingReq).await;
        assert_eq!(peer.recv().await, Packet::PingResp);
    }
}

/// A parked client that stops sending is still held to its keep-alive [MQTT-3.1.2-24]: closed with 0x8D
/// (5.0) and its will published.
#[tokio::test]
async fn a_parked_client_past_its_keep_alive_is_closed_and_its_will_published() {
    let tb = parking();
    let mut watcher = subscriber(&tb, "watcher", V4, "gone/+", QoS::AtMostOnce).await;
    let mut c = connect("silent", V5);
    c.keep_alive = 1;
    c.will = Some(will("gone/silent", b"bye", QoS::AtMostOnce, false));
    let (mut silent, _) = connect_ok(&tb, c).await;
    wait_parked(&tb, 2).await;
    assert_eq!(closed_with(&mut silent).await, Some(reason::KEEP_ALIVE_TIMEOUT));
    let got = watcher.recv_publish().await;
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("gone/silent", &b"bye"[..]));
}

/// Taking over a parked session wakes the old connection, which gets DISCONNECT 0x8E [MQTT-3.1.4-3].
#[tokio::test]
async fn taking_over_a_parked_session_disconnects_the_old_connection() {
    let tb = parking();
    let mut old = Peer::connect(tb.addr, "twice", V5).await;
    wait_parked(&tb, 1).await;
    let mut new = Peer::connect(tb.addr, "twice", V5).await;
    assert_eq!(closed_with(&mut old).await, Some(reason::SESSION_TAKEN_OVER));
    new.send(&Packet::PingReq).await;
    assert_eq!(new.recv().await, Packet::PingResp);
}

/// A parked client whose socket goes away without DISCONNECT leaves its will [MQTT-3.1.2-8].
#[tokio::test]
async fn a_parked_client_that_vanishes_leaves_its_will() {
    let tb = parking();
    let mut watcher = subscriber(&tb, "watcher", V4, "gone/+", QoS::AtMostOnce).await;
    let mut c = connect("vanisher", V4);
    c.will = Some(will("gone/vanisher", b"lost", QoS::AtMostOnce, false));
    let (peer, _) = connect_ok(&tb, c).await;
    wait_parked(&tb, 2).await;
    peer.drop_abruptly();
    let got = watcher.recv_publish().await;
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("gone/vanisher", &b"lost"[..]));
}

/// Shutdown reaches parked connections: 5.0 clients get DISCONNECT 0x8B.
#[tokio::test]
async fn shutdown_disconnects_parked_clients() {
    let tb = parking();
    let mut peer = Peer::connect(tb.addr, "parked", V5).await;
    wait_parked(&tb, 1).await;
    tokio::task::spawn_blocking(move || drop(tb)).await.expect("shutdown completes");
    assert_eq!(closed_with(&mut peer).await, Some(reason::SERVER_SHUTTING_DOWN));
}

/// A CONNECT that arrives in pieces after the socket was accepted is answered: the bytes read while the
/// socket waited without a task go on to the connection task that reads the rest.
#[tokio::test]
async fn a_connect_in_pieces_is_answered() {
    let tb = parking();
    let mut peer = Peer::open(tb.addr, V4).await;
    let raw = bytes_of(&Packet::Connect(Box::new(connect("pieces", V4))), V4);
    peer.send_raw(&raw[..5]).await;
    peer.send_raw(&raw[5..]).await;
    match peer.recv().await {
        Packet::ConnAck(ack) => assert_eq!(ack.code, 0),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let id = PacketId::new(7).expect("non-zero");
    peer.send(&Packet::Publish(publish("pieces/t", b"x", QoS::AtLeastOnce, false, Some(id)))).await;
    assert_eq!(peer.recv().await, Packet::PubAck(Ack::new(id)));
}

/// `max_connections` counts parked connections and sockets still waiting for (the rest of) their CONNECT:
/// one more is closed before CONNACK, and a place freed by a DISCONNECT is taken again.
#[tokio::test]
async fn max_connections_counts_parked_connections() {
    let settings = Settings { park_after: Some(Duration::from_millis(100)), ..Settings::default() };
    let tb = TestBroker::with_max_connections(settings, 2);
    let first = Peer::connect(tb.addr, "first", V4).await;
    let _second = Peer::connect(tb.addr, "second", V4).await;
    wait_parked(&tb, 2).await;
    let mut third = Peer::open(tb.addr, V4).await;
    third.send(&Packet::Connect(Box::new(connect("third", V4)))).await;
    assert!(third.expect_closed().await.is_empty(), "no CONNACK beyond max_connections");
    first.disconnect().await;
    // The place is free once the first connection's task has ended, a moment after it is counted out:
    // tried again until then (bounded).
    let start = std::time::Instant::now();
    let mut again = loop {
        assert!(start.elapsed() < mqttd_testkit::TIMEOUT, "the freed place was never taken");
        let mut peer = Peer::open(tb.addr, V4).await;
        peer.send(&Packet::Connect(Box::new(connect("third", V4)))).await;
        match peer.try_recv(mqttd_testkit::TIMEOUT).await {
            Some(Packet::ConnAck(ack)) if ack.code == 0 => break peer,
            Some(other) => panic!("expected CONNACK, got {other:?}"),
            None => continue,
        }
    };
    again.send(&Packet::PingReq).await;
    assert_eq!(again.recv().await, Packet::PingResp);
}

/// A closed socket frees its place under `max_connections` before new sockets are judged: ten clients
/// close and ten others connect at once, thirty times over, and every one is accepted.
#[tokio::test]
async fn places_freed_by_closed_sockets_are_free_for_the_next_connections() {
    const MAX: usize = 10;
    let tb = TestBroker::with_max_connections(Settings::default(), MAX);
    let mut open = Vec::new();
    for _ in 0..MAX {
        open.push(Peer::connect(tb.addr, &format!("c{}", unique()), V4).await);
    }
    for trial in 0..30 {
        wait_parked(&tb, MAX as u64).await;
        for peer in open.drain(..) {
            peer.drop_abruptly();
        }
        let addr = tb.addr;
        let connects: Vec<_> = (0..MAX)
            .map(|_| {
                let c = connect(&format!("c{}", unique()), V4);
                tokio::spawn(async move {
                    let mut peer = Peer::open(addr, V4).await;
                    peer.send(&Packet::Connect(Box::new(c))).await;
                    (peer.try_recv(mqttd_testkit::TIMEOUT).await, peer)
                })
            })
            .collect();
        for connecting in connects {
            let (ack, peer) = connecting.await.expect("the connecting task ends");
            assert!(matches!(ack, Some(Packet::ConnAck(ref a)) if a.code == 0), "trial {trial}: got {ack:?}");
            open.push(peer);
        }
    }
}
