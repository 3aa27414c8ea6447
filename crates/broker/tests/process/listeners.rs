//! Directives Mosquitto applies per listener or per message, through the real binary and real config
//! files (issue 16): `mount_point`, `max_qos` and `max_connections` after a `listener` line,
//! `allow_zero_length_clientid` under `per_listener_settings`, `upgrade_outgoing_qos`,
//! `max_inflight_bytes` in payload bytes, `check_retain_source`, `tls_version tlsv1.1`.

use std::time::Duration;

use mqttd_proto::{reason, Packet, QoS};
use mqttd_testkit::{connect, Peer};

use crate::common::{config_error, free_port, listening, local, wait_until, Mqttd, V4, V5};

/// Two listeners on free ports: `first` settings after the first `listener` line, `second` after the
/// second; `global` before both. Returns the broker and both ports.
fn two_listeners(dir: &std::path::Path, global: &str, first: &str, second: &str) -> (Mqttd, u16, u16) {
    let (a, b) = (free_port(), free_port());
    // Global anonymous access, unless security is per listener (then `first` and `second` say it).
    let anonymous = if global.contains("per_listener_settings") { "" } else { "allow_anonymous true\n" };
    let text = format!("{global}{anonymous}listener {a} 127.0.0.1\n{first}listener {b} 127.0.0.1\n{second}");
    let mqttd = Mqttd::start_config(dir, &text, a);
    wait_until("the second listener accepts", || listening(b));
    (mqttd, a, b)
}

#[tokio::test]
async fn a_mount_point_prefixes_topics_in_and_strips_them_out_as_in_mosquitto() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_mqttd, plain, mounted) = two_listeners(dir.path(), "", "", "mount_point mp/\n");
    let mut everything = Peer::connect(local(plain), "everything", V5).await;
    assert_eq!(everything.subscribe("#", QoS::AtMostOnce).await, vec![0]);
    let mut inside = Peer::connect(local(mounted), "inside", V5).await;
    assert_eq!(inside.subscribe("#", QoS::AtMostOnce).await, vec![0]);

    inside.publish("a/b", b"in", QoS::AtLeastOnce, false).await;
    assert_eq!(everything.recv_publish().await.topic, "mp/a/b", "a subscriber elsewhere sees the mount point");
    assert_eq!(inside.recv_publish().await.topic, "a/b", "the mounted client sees its own topic");

    let mut outside = Peer::connect(local(plain), "outside", V5).await;
    outside.publish("other/x", b"no", QoS::AtLeastOnce, false).await;
    outside.publish("mp/c/d", b"yes", QoS::AtLeastOnce, false).await;
    let got = inside.recv_publish().await;
    assert_eq!((got.topic.as_str(), &got.payload[..]), ("c/d", &b"yes"[..]), "isolated: other/x never arrives");
}

#[tokio::test]
async fn max_qos_after_a_listener_line_limits_that_listener_only() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_mqttd, limited, free) = two_listeners(dir.path(), "", "max_qos 1\n", "");
    let (mut peer, ack) = Peer::connect_with(local(limited), connect("limited", V5)).await;
    assert_eq!(ack.properties.maximum_qos, Some(1), "CONNACK Maximum QoS [MQTT-3.2.2-9]");
    assert_eq!(peer.subscribe("t", QoS::ExactlyOnce).await, vec![1], "SUBACK grants at most 1");
    let (mut other, ack) = Peer::connect_with(local(free), connect("free", V5)).await;
    assert_eq!(ack.properties.maximum_qos, None, "the other listener keeps QoS 2");
    assert_eq!(other.subscribe("t", QoS::ExactlyOnce).await, vec![2]);
}

#[tokio::test]
async fn max_connections_after_a_listener_line_limits_that_listener_only() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (_mqttd, small, big) = two_listeners(dir.path(), "", "max_connections 1\n", "");
    let _first = Peer::connect(local(small), "first", V4).await;
    let mut refused = Peer::open(local(small), V4).await;
    refused.send(&Packet::Connect(Box::new(connect("second", V4)))).await;
    assert!(refused.expect_closed().await.is_empty(), "the full listener closes without CONNACK");
    let _a = Peer::connect(local(big), "a", V4).await;
    let _b = Peer::connect(local(big), "b", V4).await;
}

#[tokio::test]
async fn allow_zero_length_clientid_is_per_listener_under_per_listener_settings() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let first = "allow_anonymous true\nallow_zero_length_clientid false\n";
    let (_mqttd, strict, lax) =
        two_listeners(dir.path(), "per_listener_settings true\n", first, "allow_anonymous true\n");
    let (_, ack) = Peer::connect_with(local(strict), connect("", V5)).await;
    assert_eq!(ack.code, reason::CLIENT_IDENTIFIER_NOT_VALID);
    let (_, ack) = Peer::connect_with(local(lax), connect("", V5)).await;
    assert_eq!(ack.code, 0, "the other listener assigns an id");
    assert!(ack.properties.assigned_client_identifier.is_some());
}

#[tokio::test]
async fn upgrade_outgoing_qos_delivers_at_the_subscription_qos() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mqttd = Mqttd::start(dir.path(), "allow_anonymous true\nupgrade_outgoing_qos true\n");
    let mut sub = Peer::connect(mqttd.addr(), "sub", V5).await;
    assert_eq!(sub.subscribe("t", QoS::ExactlyOnce).await, vec![2]);
    let mut publisher = Peer::connect(mqttd.addr(), "pub", V5).await;
    publisher.publish("t", b"up", QoS::AtMostOnce, false).await;
    assert_eq!(sub.recv_publish().await.qos, QoS::ExactlyOnce, "QoS 0 message upgraded to the granted 2");
}

#[tokio::test]
async fn max_inflight_bytes_counts_payload_bytes_as_mosquitto() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mqttd = Mqttd::start(dir.path(), "allow_anonymous true\nmax_inflight_bytes 10\n");
    let mut sub = Peer::connect(mqttd.addr(), "sub", V5).await;
    assert_eq!(sub.subscribe("a/rather/long/topic/name", QoS::AtLeastOnce).await, vec![1]);
    let mut publisher = Peer::connect(mqttd.addr(), "pub", V5).await;
    for _ in 0..3 {
        publisher.publish("a/rather/long/topic/name", b"123456", QoS::AtLeastOnce, false).await;
    }
    // 6 payload bytes in flight are under 10, so a second goes; 12 are not, so the third waits. Counted
    // with the topic (and overhead), only the first would go.
    let mut ids = Vec::new();
    for _ in 0..2 {
        match sub.recv().await {
            Packet::Publish(p) => ids.push(p.packet_id.expect("QoS 1")),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    assert!(sub.quiet_for(Duration::from_millis(300)).await, "a third message would exceed 10 payload bytes");
    sub.send(&Packet::PubAck(mqttd_proto::Ack::new(ids[0]))).await;
    assert!(matches!(sub.recv().await, Packet::Publish(_)), "the third goes once one is acknowledged");
}

#[test]
fn tls_version_tlsv1_1_is_refused_at_startup_with_file_and_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let err =
        config_error(dir.path(), &format!("listener {}\ncertfile /x\nkeyfile /y\ntls_version tlsv1.1\n", free_port()));
    let config = dir.path().join("mqttd.conf");
    assert!(err.contains(&format!("{}:4: tls_version", config.display())), "names file and line:\n{err}");
    assert!(err.contains("tlsv1.2"), "says what to write instead:\n{err}");
}

#[tokio::test]
async fn check_retain_source_withholds_a_retained_message_whose_publisher_lost_write_access() {
    for (setting, delivered) in [("", false), ("check_retain_source false\n", true)] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (passwd, acl) = (dir.path().join("passwd"), dir.path().join("acl"));
        crate::auth::write_passwords(&passwd, &[("alice", "a"), ("bob", "b")]);
        std::fs::write(&acl, "user alice\ntopic readwrite r/#\nuser bob\ntopic read r/#\n").expect("writes");
        let settings =
            format!("allow_anonymous false\npassword_file {}\nacl_file {}\n{setting}", passwd.display(), acl.display());
        let mqttd = Mqttd::start(dir.path(), &settings);
        let (mut alice, _) = crate::auth::login(&mqttd, "alice", "alice", "a").await;
        alice.publish("r/x", b"kept", QoS::AtLeastOnce, true).await;

        std::fs::write(&acl, "user alice\ntopic read r/#\nuser bob\ntopic read r/#\n").expect("writes");
        mqttd.hangup();
        mqttd.wait_for_log("reloaded", 1);
        let (mut bob, _) = crate::auth::login(&mqttd, "bob", "bob", "b").await;
        assert_eq!(bob.subscribe("r/#", QoS::AtMostOnce).await, vec![0]);
        let got = !bob.quiet_for(Duration::from_millis(300)).await;
        assert_eq!(got, delivered, "with {setting:?}");
    }
}
