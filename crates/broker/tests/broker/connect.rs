//! CONNECT: protocol versions, client identifiers, the connect timeout, authentication of anonymous
//! clients, and session takeover.

use std::time::{Duration, Instant};

use mqttd_broker::Settings;
use mqttd_proto::{reason, Packet, QoS};
use mqttd_testkit::{connect, will, Peer, TestBroker, TIMEOUT};

use crate::common::*;

/// Clients of MQTT 3.1 (`MQIsdp`, level 3), 3.1.1 (level 4) and 5.0 (level 5) are served on one port and
/// exchange messages [MQTT-3.1.2-1] [MQTT-3.1.2-2].
#[tokio::test]
async fn clients_of_3_1_and_3_1_1_and_5_connect_on_the_same_port_and_talk_to_each_other() {
    let tb = TestBroker::start();
    let mut s3 = subscriber(&tb, "s3", V3, "mixed", QoS::AtLeastOnce).await;
    let mut s4 = subscriber(&tb, "s4", V4, "mixed", QoS::AtLeastOnce).await;
    let mut s5 = subscriber(&tb, "s5", V5, "mixed", QoS::AtLeastOnce).await;
    for (i, version) in [V3, V4, V5].into_iter().enumerate() {
        let mut publisher = Peer::connect(tb.addr, &format!("p{i}"), version).await;
        let payload = format!("from {version}");
        publisher.publish("mixed", payload.as_bytes(), QoS::AtLeastOnce, false).await;
        for s in [&mut s3, &mut s4, &mut s5] {
            assert_eq!(s.recv_publish().await.payload, payload.as_bytes());
        }
        publisher.disconnect().await;
    }
}

/// An unknown protocol level gets CONNACK 0x01 (unacceptable protocol version) and the connection is
/// closed [MQTT-3.1.2-2].
#[tokio::test]
async fn an_unsupported_protocol_level_is_refused_with_return_code_1() {
    let tb = TestBroker::start();
    let mut peer = Peer::open(tb.addr, V4).await;
    let mut bytes = raw_connect(V4, 0x02, &field(b"level6"));
    bytes[8] = 6;
    peer.send_raw(&bytes).await;
    let got = peer.expect_closed().await;
    assert!(matches!(got.as_slice(), [Packet::ConnAck(a)] if a.code == 1), "got {got:?}");
}

/// A 5.0 client with an empty client id gets a unique one in CONNACK's Assigned Client Identifier
/// [MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.2.2-16].
#[tokio::test]
async fn a_v5_client_with_an_empty_client_id_gets_an_assigned_client_identifier() {
    let tb = TestBroker::start();
    let (mut a, ack_a) = Peer::connect_with(tb.addr, connect("", V5)).await;
    let (_b, ack_b) = Peer::connect_with(tb.addr, connect("", V5)).await;
    assert_eq!((ack_a.code, ack_b.code), (0, 0));
    let id_a = ack_a.properties.assigned_client_identifier.expect("assigned id");
    let id_b = ack_b.properties.assigned_client_identifier.expect("assigned id");
    assert!(!id_a.is_empty());
    assert_ne!(id_a, id_b, "assigned ids are unique");
    assert!(tb.broker.session(&id_a).is_some(), "the session is known by its assigned id");
    assert_eq!(a.subscribe("t", QoS::AtMostOnce).await, vec![0], "the client is served");
}

/// A 3.1.1 client with an empty client id and clean session is accepted with an id of the server's
/// choosing [MQTT-3.1.3-6].
#[tokio::test]
async fn a_3_1_1_client_with_an_empty_client_id_and_clean_session_is_accepted() {
    let tb = TestBroker::start();
    let (peer, ack) = Peer::connect_with(tb.addr, connect("", V4)).await;
    assert_eq!(ack.code, 0);
    assert!(ack.properties.assigned_client_identifier.is_none(), "3.1.1 CONNACK has no properties");
    peer.disconnect().await;
}

/// A 3.1.1 client with an empty client id and clean session 0 gets CONNACK 0x02 (identifier rejected)
/// and is closed [MQTT-3.1.3-8].
#[tokio::test]
async fn a_3_1_1_client_with_an_empty_client_id_without_clean_session_is_refused_with_0x02() {
    let tb = TestBroker::start();
    let mut c = connect("", V4);
    c.clean_start = false;
    let (mut peer, ack) = Peer::connect_with(tb.addr, c).await;
    assert_eq!(ack.code, 0x02);
    assert!(peer.expect_closed().await.is_empty());
    assert_eq!(tb.broker.session_count(), 0);
}

/// With `allow_zero_length_clientid false`, a 5.0 client with an empty id gets 0x85 (client identifier
/// not valid) and 3.1.1 gets 0x02 [MQTT-3.1.3-8].
#[tokio::test]
async fn empty_client_ids_are_refused_when_the_settings_forbid_them() {
    let tb = TestBroker::with_settings(Settings { allow_zero_length_clientid: false, ..Settings::default() });
    for (version, code) in [(V5, reason::CLIENT_IDENTIFIER_NOT_VALID), (V4, 0x02)] {
        let (mut peer, ack) = Peer::connect_with(tb.addr, connect("", version)).await;
        assert_eq!(ack.code, code, "{version}");
        assert!(peer.expect_closed().await.is_empty());
    }
}

/// Anonymous clients are refused when `allow_anonymous` is false: 3.1.1 with 0x05, 5.0 with 0x87.
#[tokio::test]
async fn anonymous_clients_are_refused_when_allow_anonymous_is_false() {
    let tb = TestBroker::with_settings(Settings { allow_anonymous: false, ..Settings::default() });
    for (version, code) in [(V4, 0x05), (V5, reason::NOT_AUTHORIZED)] {
        let (mut peer, ack) = Peer::connect_with(tb.addr, connect("anon", version)).await;
        assert_eq!(ack.code, code, "{version}");
        peer.expect_closed().await;
    }
}

/// A socket that sends no CONNECT within the connect timeout is closed; so is one that sends only part
/// of a CONNECT. (On Linux the silent one reaches the broker about a second after its handshake, when the
/// kernel stops deferring it: TCP_DEFER_ACCEPT; its connect timeout runs from then.)
#[tokio::test]
async fn a_socket_that_sends_no_connect_within_the_connect_timeout_is_closed() {
    let timeout = Duration::from_millis(300);
    let tb = TestBroker::with_settings(Settings { connect_timeout: timeout, ..Settings::default() });
    let start = Instant::now();
    let mut silent = Peer::open(tb.addr, V4).await;
    let mut partial = Peer::open(tb.addr, V4).await;
    partial.send_raw(&raw_connect(V4, 0x02, &field(b"partial"))[..6]).await;
    assert!(silent.expect_closed().await.is_empty());
    assert!(partial.expect_closed().await.is_empty());
    let elapsed = start.elapsed();
    assert!(elapsed >= timeout - Duration::from_millis(50) && elapsed < TIMEOUT, "closed after {elapsed:?}");
}

/// A client that has opened a socket but sent nothing is not yet a connection of the broker's (Linux:
/// TCP_DEFER_ACCEPT on every listener): it does not hold a place under `max_connections`, so a client
/// that speaks takes the only place. (Without deferred accepts the silent socket would hold it.)
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_socket_that_has_sent_nothing_does_not_hold_a_place_under_max_connections() {
    let tb = TestBroker::with_max_connections(Settings::default(), 1);
    let mut silent = Peer::open(tb.addr, V4).await;
    let (mut speaker, ack) = Peer::connect_with(tb.addr, connect("speaker", V4)).await;
    assert_eq!(ack.code, 0);
    speaker.send(&Packet::PingReq).await;
    assert_eq!(speaker.recv().await, Packet::PingResp);
    // Once the kernel hands the silent socket over (about a second on), the place is taken: it is closed.
    assert!(silent.expect_closed().await.is_empty());
}

/// A 3.1.1 client asking for a keep-alive above `max_keepalive` is refused with 0x02, as Mosquitto does.
#[tokio::test]
async fn a_3_1_1_client_above_max_keepalive_is_refused_with_0x02() {
    let tb = TestBroker::with_settings(Settings { max_keepalive: 10, ..Settings::default() });
    let (mut peer, ack) = Peer::connect_with(tb.addr, connect("long", V4)).await;
    assert_eq!(ack.code, 0x02);
    peer.expect_closed().await;
    let mut within = connect("short", V4);
    within.keep_alive = 10;
    connect_ok(&tb, within).await.0.disconnect().await;
}

/// A 5.0 client asking for more than `max_keepalive` is accepted and told the Server Keep Alive to use
/// [MQTT-3.2.2-21]; one within it gets no Server Keep Alive [MQTT-3.2.2-22].
#[tokio::test]
async fn a_v5_client_above_max_keepalive_is_told_the_server_keep_alive() {
    let tb = TestBroker::with_settings(Settings { max_keepalive: 10, ..Settings::default() });
    let (_long, ack) = Peer::connect_with(tb.addr, connect("long", V5)).await;
    assert_eq!(ack.code, 0);
    assert_eq!(ack.properties.server_keep_alive, Some(10));
    let mut within = connect("short", V5);
    within.keep_alive = 5;
    let (_short, ack) = Peer::connect_with(tb.addr, within).await;
    assert_eq!((ack.code, ack.properties.server_keep_alive), (0, None));
}

/// A second connection with a client id already connected closes the first [MQTT-3.1.4-2]; the new one
/// is served.
#[tokio::test]
async fn a_second_connection_with_the_same_client_id_closes_the_first() {
    let tb = TestBroker::start();
    let mut old = Peer::connect(tb.addr, "twin", V4).await;
    let mut new = Peer::connect(tb.addr, "twin", V4).await;
    assert!(old.expect_closed().await.is_empty(), "3.1.1 gets no DISCONNECT");
    assert_eq!(new.subscribe("t", QoS::AtMostOnce).await, vec![0]);
    assert_eq!(tb.broker.session_count(), 1);
}

/// A 5.0 connection that is taken over first gets DISCONNECT 0x8E (session taken over) [MQTT-3.1.4-3].
#[tokio::test]
async fn a_v5_connection_taken_over_gets_disconnect_0x8e() {
    let tb = TestBroker::start();
    let mut old = Peer::connect(tb.addr, "twin", V5).await;
    let _new = Peer::connect(tb.addr, "twin", V5).await;
    assert_eq!(closed_with(&mut old).await, Some(reason::SESSION_TAKEN_OVER));
}

/// The will of a connection that is taken over is published exactly once [MQTT-3.1.2-8] [MQTT-3.1.4-3].
#[tokio::test]
async fn the_will_of_a_connection_taken_over_is_published_exactly_once() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/#", QoS::AtLeastOnce).await;
    for version in [V4, V5] {
        let id = format!("twin{version}");
        let mut c = connect(&id, version);
        c.will = Some(will("will/twin", version.to_string().as_bytes(), QoS::AtLeastOnce, false));
        let (mut old, _) = connect_ok(&tb, c).await;
        let (new, _) = connect_ok(&tb, connect(&id, version)).await;
        old.expect_closed().await;
        assert_eq!(watcher.recv_publish().await.payload, version.to_string().as_bytes());
        new.disconnect().await;
    }
    assert!(watcher.quiet_for(Duration::from_millis(300)).await, "no will twice");
}

/// A 5.0 takeover with Clean Start 0 within the Will Delay Interval continues the session, so the old
/// connection's will is not sent [MQTT-3.1.3-9].
#[tokio::test]
async fn a_v5_takeover_with_clean_start_0_within_the_will_delay_publishes_no_will() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/#", QoS::AtLeastOnce).await;
    let mut c = persistent("delayed", V5, 60);
    let mut w = will("will/delayed", b"gone", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(1);
    c.will = Some(w);
    let (mut old, _) = connect_ok(&tb, c).await;
    let (new, present) = connect_ok(&tb, persistent("delayed", V5, 60)).await;
    assert!(present, "the session continues");
    assert_eq!(closed_with(&mut old).await, Some(reason::SESSION_TAKEN_OVER));
    assert!(watcher.quiet_for(Duration::from_millis(1500)).await, "no will after the delay either");
    new.disconnect().await;
}

/// A 5.0 takeover with Clean Start 1: the old connection ends with its will pending for its delay, and
/// the new connection for the client id within that delay means the will is not sent [MQTT-3.1.3-9]
/// (as Mosquitto), although the old session ends.
#[tokio::test]
async fn a_v5_takeover_with_clean_start_1_does_not_send_the_delayed_will() {
    let tb = TestBroker::start();
    let mut watcher = subscriber(&tb, "watcher", V4, "will/#", QoS::AtLeastOnce).await;
    let mut c = persistent("delayed", V5, 60);
    let mut w = will("will/delayed", b"gone", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(1);
    c.will = Some(w);
    let (mut old, _) = connect_ok(&tb, c).await;
    let (_new, present) = connect_ok(&tb, connect("delayed", V5)).await;
    assert!(!present);
    assert_eq!(closed_with(&mut old).await, Some(reason::SESSION_TAKEN_OVER));
    assert!(watcher.quiet_for(Duration::from_millis(1500)).await, "no will, also past its delay");
}

/// MQTT 5 allows a password without a user name (3.1.2.9), unlike 3.1.1 [MQTT-3.1.2-22].
#[tokio::test]
async fn a_v5_client_may_send_a_password_without_a_user_name() {
    let tb = TestBroker::start();
    let mut c = connect("pw-only", V5);
    c.password = Some(bytes::Bytes::from_static(b"secret"));
    let (peer, ack) = Peer::connect_with(tb.addr, c).await;
    assert_eq!(ack.code, 0);
    peer.disconnect().await;
}

/// MQTT 3.1 has no Session Present flag: the first byte of its CONNACK's variable header is reserved and
/// 0, even when the broker resumes a stored session (Mosquitto sends 0 to 3.1 clients).
#[tokio::test]
async fn a_3_1_connack_never_sets_session_present() {
    let tb = TestBroker::start();
    let (mut first, present) = connect_ok(&tb, persistent("old-timer", V3, 0)).await;
    assert!(!present);
    assert_eq!(first.subscribe("kept", QoS::AtLeastOnce).await, vec![1]);
    first.disconnect().await;
    assert!(tb.broker.session("old-timer").is_some(), "the session is stored");
    let (_again, present) = connect_ok(&tb, persistent("old-timer", V3, 0)).await;
    assert!(!present, "the reserved byte of a 3.1 CONNACK is 0");
}

/// A 5.0 client's Maximum Packet Size bounds every packet the broker sends it [MQTT-3.1.2-24], CONNACK
/// included: optional CONNACK properties are left out until it fits; a limit below the smallest CONNACK
/// (5 bytes) closes the connection without one, as Mosquitto's `send__connack` does.
#[tokio::test]
async fn a_connack_fits_the_client_maximum_packet_size_or_is_not_sent() {
    let tb = TestBroker::with_settings(Settings { max_keepalive: 30, max_qos: 1, ..Settings::default() });
    for max in [5u32, 6, 12, 40] {
        let mut c = connect("", V5);
        c.properties.maximum_packet_size = Some(max);
        let (mut peer, ack) = Peer::connect_with(tb.addr, c).await;
        assert_eq!(ack.code, 0, "CONNACK for a client maximum of {max}: {ack:?}");
        let size = mqttd_proto::encoded_len(&Packet::ConnAck(ack), V5);
        assert!(size <= max as usize, "a CONNACK of {size} bytes for a client maximum of {max}");
        peer.send(&Packet::PingReq).await;
        assert_eq!(peer.recv().await, Packet::PingResp, "connected with a maximum of {max}");
    }
    for max in [1u32, 2, 4] {
        let mut c = connect(&format!("tiny-{max}"), V5);
        c.properties.maximum_packet_size = Some(max);
        let mut peer = Peer::open(tb.addr, V5).await;
        peer.send(&Packet::Connect(Box::new(c))).await;
        assert_eq!(peer.expect_closed().await, vec![], "nothing fits in {max} bytes");
        assert!(tb.broker.session(&format!("tiny-{max}")).is_none());
    }
}

/// Any other packet the broker cannot fit in the client's Maximum Packet Size is not sent either
/// [MQTT-3.1.2-24]: a SUBACK too large for it ends the connection with DISCONNECT 0x95, which fits.
#[tokio::test]
async fn a_suback_larger_than_the_client_maximum_packet_size_ends_the_connection() {
    let tb = TestBroker::start();
    let mut c = connect("tight", V5);
    c.properties.maximum_packet_size = Some(8);
    let (mut peer, ack) = Peer::connect_with(tb.addr, c).await;
    assert_eq!(ack.code, 0);
    assert_eq!(peer.subscribe("a", QoS::AtMostOnce).await, vec![0], "a SUBACK of 6 bytes fits");
    let options = mqttd_proto::SubscriptionOptions::default();
    let filters = (0..5).map(|i| (format!("f{i}"), options)).collect();
    let packet_id = mqttd_proto::PacketId::new(2).expect("non-zero");
    let subscribe = mqttd_proto::Subscribe { packet_id, filters, properties: Default::default() };
    peer.send(&Packet::Subscribe(subscribe)).await;
    assert_eq!(closed_with(&mut peer).await, Some(reason::PACKET_TOO_LARGE), "a SUBACK of 10 bytes does not");
}
