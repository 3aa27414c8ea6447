//! Keep-alive: a client that says nothing for 1.5 times its keep-alive is disconnected and its will
//! published [MQTT-3.1.2-24].

use std::time::{Duration, Instant};

use mqttd_broker::Settings;
use mqttd_proto::{reason, Packet, QoS};
use mqttd_testkit::{connect, will, Peer, TestBroker};

use crate::common::*;

/// Asserts the server closed a connection opened at `start` with keep-alive 1 s after about 1.5 s.
fn assert_closed_after_one_and_a_half_seconds(start: Instant) {
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(1400), "closed too early: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(3000), "closed too late: {elapsed:?}");
}

/// A client silent for 1.5 times its keep-alive is disconnected as if the network failed, so its will
/// is published [MQTT-3.1.2-24] [MQTT-3.1.2-8].
#[tokio::test]
async fn a_silent_3_1_1_client_is_closed_after_one_and_a_half_keep_alives_and_its_will_published() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/silent", QoS::AtLeastOnce).await;
    let mut c = connect("silent", V4);
    c.keep_alive = 1;
    c.will = Some(will("will/silent", b"timed out", QoS::AtLeastOnce, false));
    let start = Instant::now();
    let (mut peer, _) = connect_ok(&tb, c).await;
    assert!(peer.expect_closed().await.is_empty());
    assert_closed_after_one_and_a_half_seconds(start);
    assert_eq!(watcher.recv_publish().await.payload, &b"timed out"[..]);
}

/// A silent 5.0 client gets DISCONNECT 0x8D (keep alive timeout) before the close [MQTT-3.1.2-22].
#[tokio::test]
async fn a_silent_v5_client_gets_disconnect_0x8d() {
    let tb = TestBroker::start();
    let mut c = connect("silent", V5);
    c.keep_alive = 1;
    let start = Instant::now();
    let (mut peer, _) = connect_ok(&tb, c).await;
    assert_eq!(closed_with(&mut peer).await, Some(reason::KEEP_ALIVE_TIMEOUT));
    assert_closed_after_one_and_a_half_seconds(start);
}

/// A 5.0 client is held to the Server Keep Alive, not the longer keep-alive it asked for
/// [MQTT-3.2.2-21].
#[tokio::test]
async fn a_v5_client_is_held_to_the_server_keep_alive() {
    let tb = TestBroker::with_settings(Settings { max_keepalive: 1, ..Settings::default() });
    let start = Instant::now();
    let (mut peer, ack) = Peer::connect_with(tb.addr, connect("capped", V5)).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    assert_eq!(closed_with(&mut peer).await, Some(reason::KEEP_ALIVE_TIMEOUT));
    assert_closed_after_one_and_a_half_seconds(start);
}

/// A client that sends PINGREQ within its keep-alive stays connected and gets PINGRESP each time
/// [MQTT-3.12.4-1].
#[tokio::test]
async fn a_client_that_pings_within_its_keep_alive_stays_connected() {
    let tb = TestBroker::start();
    let mut c = connect("pinger", V4);
    c.keep_alive = 1;
    let (mut peer, _) = connect_ok(&tb, c).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        // Pacing the client at half its keep-alive, as a client would; not a synchronisation.
        tokio::time::sleep(Duration::from_millis(500)).await;
        peer.send(&Packet::PingReq).await;
        assert_eq!(peer.recv().await, Packet::PingResp);
    }
    assert_eq!(peer.subscribe("still/connected", QoS::AtMostOnce).await, vec![0]);
}

/// A socket that stays open but only drips bytes of a packet that never completes is still closed at
/// 1.5 times the keep-alive: only whole control packets count [MQTT-3.1.2-24].
#[tokio::test]
async fn a_client_dripping_an_incomplete_packet_is_closed_by_the_keep_alive() {
    let tb = TestBroker::start();
    let mut c = connect("dripper", V4);
    c.keep_alive = 1;
    let start = Instant::now();
    let (mut peer, _) = connect_ok(&tb, c).await;
    let packet = frame(0x30, &[b'x'; 1000]);
    for byte in &packet {
        if start.elapsed() > Duration::from_millis(1300) {
            break;
        }
        peer.send_raw(std::slice::from_ref(byte)).await;
        // Dripping one byte every 100 ms is the behaviour under test, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(peer.expect_closed().await.is_empty());
    let elapsed = start.elapsed();
    // Had the bytes reset the deadline, the close would come 1.5 s after the last one (2.8 s or later).
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_millis(2500),
        "closed after {elapsed:?}"
    );
}

/// A connection that takes a session over is held to its own keep-alive, not its predecessor's: here the
/// old connection had 1 s, the new one has none, and it stays connected well past 1.5 s [MQTT-3.1.2-24].
#[tokio::test]
async fn a_takeover_without_keep_alive_is_not_held_to_the_old_connections_keep_alive() {
    let tb = TestBroker::start();
    let mut first = connect("ka-takeover", V4);
    first.keep_alive = 1;
    first.clean_start = false;
    let (mut old, _) = connect_ok(&tb, first).await;
    let mut second = connect("ka-takeover", V4);
    second.keep_alive = 0;
    second.clean_start = false;
    let (mut new, session_present) = connect_ok(&tb, second).await;
    assert!(session_present);
    old.expect_closed().await;
    // Past the old connection's allowance (1.5 s) and the sweeper's period; then the new one must answer.
    assert!(new.quiet_for(Duration::from_millis(2500)).await, "the new connection got a packet");
    new.send(&Packet::PingReq).await;
    assert_eq!(new.recv().await, Packet::PingResp);
}
