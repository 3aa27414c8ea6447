//! Takeover: a client id connecting again while its previous connection is still known to the broker
//! (running, parked, or not yet past its CONNECT). Everything the previous connection sent comes first,
//! in order, and only then does the new connection get the session [MQTT-3.1.4-3]. Each racing case runs
//! [`TRIALS`] times with no pause between the old connection's last packet and the new CONNECT, on every
//! runtime shape the broker runs on (one thread, two threads, parking off).

use std::time::Duration;

use mqttd_broker::Settings;
use mqttd_proto::{encode, Disconnect, Packet, ProtocolVersion, QoS};
use mqttd_testkit::{connect, publish, will, Peer, TestBroker};

use crate::common::*;

const TRIALS: usize = 30;

/// The broker shapes a takeover can meet: the default one-thread runtime (`mqttd` on up to two cores),
/// two worker threads, and parking disabled (every connection keeps its task).
fn brokers() -> Vec<(&'static str, TestBroker)> {
    let quiet = || Settings { sys_interval: Duration::ZERO, ..Default::default() };
    vec![
        ("one thread", TestBroker::single_threaded(quiet())),
        ("two threads", TestBroker::with_settings(quiet())),
        ("parking off", TestBroker::single_threaded(Settings { park_after: None, ..quiet() })),
    ]
}

/// The bytes of `packets`, to be sent in one write (pipelined).
fn bytes_of(version: ProtocolVersion, packets: &[Packet]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for p in packets {
        encode(p, version, &mut out).expect("test packet encodes");
    }
    out.to_vec()
}

/// Sends a marker on `topic` and asserts it is the next thing `watcher` receives: nothing (no will)
/// came before it.
async fn nothing_before_marker(tb: &TestBroker, watcher: &mut Peer, topic: &str, what: &str) {
    publish_once(tb, topic, b"marker", QoS::AtLeastOnce, false).await;
    let got = watcher.recv_publish().await;
    assert_eq!(&got.payload[..], b"marker", "{what}: something came before the marker: {got:?}");
}

/// Finding 1: a client with a will sends DISCONNECT (reason 0), closes, and connects again at once: the
/// normal DISCONNECT deleted the will, so it is never published [MQTT-3.1.2-10] [MQTT-3.14.4-3].
#[tokio::test]
async fn a_will_is_not_sent_after_a_normal_disconnect_followed_at_once_by_a_reconnect() {
    for (shape, tb) in brokers() {
        let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::AtLeastOnce).await;
        for version in [V3, V4, V5] {
            for trial in 0..TRIALS {
                let mut c = connect("leaver", version);
                c.will = Some(will("will/t", b"must not be sent", QoS::AtLeastOnce, false));
                let (mut old, _) = connect_ok(&tb, c.clone()).await;
                old.send(&Packet::Disconnect(Disconnect::default())).await;
                old.drop_abruptly();
                let (new, _) = connect_ok(&tb, c).await;
                let what = format!("{shape}, {version}, trial {trial}");
                nothing_before_marker(&tb, &mut watcher, "will/t", &what).await;
                new.disconnect().await;
            }
        }
    }
}

/// The same when the old connection is still open: the DISCONNECT is in its socket, unread, as the new
/// CONNECT arrives; it is handled first.
#[tokio::test]
async fn a_disconnect_still_unread_at_takeover_is_handled_before_the_new_connection() {
    for (shape, tb) in brokers() {
        let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::AtLeastOnce).await;
        for version in [V4, V5] {
            for trial in 0..TRIALS {
                let mut c = connect("stays", version);
                c.will = Some(will("will/t", b"must not be sent", QoS::AtLeastOnce, false));
                let (mut old, _) = connect_ok(&tb, c.clone()).await;
                old.send(&Packet::Disconnect(Disconnect::default())).await;
                let (new, _) = connect_ok(&tb, c).await;
                old.expect_closed().await;
                let what = format!("{shape}, {version}, trial {trial}");
                nothing_before_marker(&tb, &mut watcher, "will/t", &what).await;
                new.disconnect().await;
            }
        }
    }
}

/// Finding 2: a 5.0 DISCONNECT with Session Expiry Interval 0 ends the session [MQTT-3.14.2-2]... even
/// when the client connects again at once with Clean Start 0: Session Present is 0 [MQTT-3.2.2-2].
#[tokio::test]
async fn a_disconnect_session_expiry_of_zero_ends_the_session_before_an_immediate_reconnect() {
    for (shape, tb) in brokers() {
        for trial in 0..TRIALS {
            let (mut old, _) = connect_ok(&tb, persistent("expiring", V5, 300)).await;
            assert_eq!(old.subscribe("gone/t", QoS::AtLeastOnce).await, vec![1]);
            let mut d = Disconnect::default();
            d.properties.session_expiry_interval = Some(0);
            old.send(&Packet::Disconnect(d)).await;
            old.drop_abruptly();
            let (new, present) = connect_ok(&tb, persistent("expiring", V5, 300)).await;
            assert!(!present, "{shape}, trial {trial}: the session ended with the DISCONNECT");
            new.disconnect().await;
        }
        let (end, _) = connect_ok(&tb, connect("expiring", V5)).await;
        end.disconnect().await;
    }
}

/// Finding 3: a PUBLISH sent just before the socket closed is routed before the same client id gets its
/// session again, whether the old connection had its CONNACK yet (pipelined: CONNECT, PUBLISH and close
/// in one go) or not.
#[tokio::test]
async fn a_publish_sent_just_before_a_takeover_is_routed() {
    for (shape, tb) in brokers() {
        for version in [V4, V5] {
            for trial in 0..TRIALS {
                let topic = format!("kept/{version}/{trial}");
                let payload = format!("value {trial}");
                let message = publish(&topic, payload.as_bytes(), QoS::AtMostOnce, true, None);
                if trial % 2 == 0 {
                    let (mut old, _) = connect_ok(&tb, connect("publisher", version)).await;
                    old.send(&Packet::Publish(message)).await;
                    old.drop_abruptly();
                } else {
                    // Not waiting for the CONNACK at all.
                    let mut old = Peer::open(tb.addr, version).await;
                    let c = Packet::Connect(Box::new(connect("publisher", version)));
                    old.send_raw(&bytes_of(version, &[c, Packet::Publish(message)])).await;
                    old.drop_abruptly();
                }
                let (mut new, _) = connect_ok(&tb, connect("publisher", version)).await;
                let what = format!("{shape}, {version}, trial {trial}");
                assert_eq!(new.subscribe(&topic, QoS::AtMostOnce).await, vec![0], "{what}");
                let got = new.recv_publish().await;
                assert_eq!((&got.payload[..], got.retain), (payload.as_bytes(), true), "{what}");
                new.disconnect().await;
            }
        }
    }
}

/// Finding 4: a clean session ends with its connection [MQTT-3.1.2-6]; a connection with Clean Session
/// 0 (or a positive Session Expiry) taking over from it finds no session: Session Present 0, none of the
/// old subscriptions.
#[tokio::test]
async fn a_clean_session_taken_over_is_not_resumed() {
    for (shape, tb) in brokers() {
        for version in [V4, V5] {
            for trial in 0..TRIALS {
                let (mut old, _) = connect_ok(&tb, connect("cleaner", version)).await;
                assert_eq!(old.subscribe("clean/t", QoS::AtMostOnce).await, vec![0]);
                let abrupt = trial % 2 == 0;
                if abrupt {
                    old.drop_abruptly();
                }
                let (mut new, present) = connect_ok(&tb, persistent("cleaner", version, 60)).await;
                let what = format!("{shape}, {version}, trial {trial}, old closed first: {abrupt}");
                assert!(!present, "{what}: Session Present for a clean session");
                publish_once(&tb, "clean/t", b"not for the new session", QoS::AtMostOnce, false).await;
                assert!(new.quiet_for(Duration::from_millis(50)).await, "{what}: an old subscription survived");
                new.disconnect().await;
                let (gone, _) = connect_ok(&tb, connect("cleaner", version)).await;
                gone.disconnect().await;
            }
        }
    }
}

/// Finding 5: a will with a Will Delay Interval is not sent when the client connects again within the
/// delay [MQTT-3.1.3-9], with Clean Start 1 as with Clean Start 0 (as Mosquitto).
#[tokio::test]
async fn a_delayed_will_is_not_sent_when_the_client_is_back_within_the_delay() {
    let tb = without_sys();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/t", QoS::AtLeastOnce).await;
    for clean_start in [true, false] {
        let mut c = persistent("delayed", V5, 30);
        let mut w = will("will/t", b"must not be sent", QoS::AtLeastOnce, false);
        w.properties.will_delay_interval = Some(1);
        c.will = Some(w);
        let (old, _) = connect_ok(&tb, c).await;
        old.drop_abruptly();
        let mut back = persistent("delayed", V5, 30);
        back.clean_start = clean_start;
        let (new, _) = connect_ok(&tb, back).await;
        // Past the delay, nothing came.
        assert!(watcher.quiet_for(Duration::from_millis(1500)).await, "clean start {clean_start}: the will was sent");
        new.disconnect().await;
    }
}
