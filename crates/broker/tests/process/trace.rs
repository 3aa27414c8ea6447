//! `-v` and `log_type all`: a line per packet received and sent, in Mosquitto's words (issue 16), the
//! connect line with the user name, and a will that fires names its topic.

use mqttd_proto::{Ack, Packet, PacketId, QoS};
use mqttd_testkit::{connect, publish, will, Peer};

use crate::common::{Mqttd, V4};

#[tokio::test]
async fn log_type_all_traces_every_packet_in_mosquittos_words() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mqttd = Mqttd::start(dir.path(), "allow_anonymous true\nlog_type all\n");
    let mut sub = Peer::connect(mqttd.addr(), "sub", V4).await;
    sub.subscribe("a/#", QoS::AtLeastOnce).await;

    let mut c = connect("dev1", V4);
    c.username = Some("alice".into());
    c.will = Some(will("dev1/gone", b"bye", QoS::AtMostOnce, false));
    let (mut dev1, _) = Peer::connect_with(mqttd.addr(), c).await;
    dev1.send(&Packet::Publish(publish("a/b", b"hello", QoS::AtLeastOnce, false, PacketId::new(3)))).await;
    assert!(matches!(dev1.recv().await, Packet::PubAck(_)));
    let got = sub.recv_publish().await;
    sub.send(&Packet::PubAck(Ack::new(got.packet_id.expect("QoS 1")))).await;
    dev1.send(&Packet::PingReq).await;
    assert_eq!(dev1.recv().await, Packet::PingResp);
    dev1.drop_abruptly();

    let expected = [
        "New client connected from 127.0.0.1:",
        " as dev1 (p2, c1, k60, u'alice').",
        "Will message specified (3 bytes) (r0, q0).",
        "\tdev1/gone",
        "Sending CONNACK to dev1 (0, 0)",
        "Received SUBSCRIBE from sub",
        "\ta/# (QoS 1)",
        "Sending SUBACK to sub",
        "Received PUBLISH from dev1 (d0, q1, r0, m3, 'a/b', ... (5 bytes))",
        "Sending PUBACK to dev1 (m3, rc0)",
        "Sending PUBLISH to sub (d0, q1, r0, m1, 'a/b', ... (5 bytes))",
        "Received PUBACK from sub (Mid: 1, RC:0)",
        "Received PINGREQ from dev1",
        "Sending PINGRESP to dev1",
        "will of dev1 published to 'dev1/gone'",
    ];
    mqttd.wait_for_log("will of dev1 published", 1);
    let log = mqttd.log();
    for line in expected {
        assert!(log.contains(line), "no {line:?} in:\n{log}");
    }
}

#[tokio::test]
async fn without_debug_no_packet_is_traced() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mqttd = Mqttd::start(dir.path(), "allow_anonymous true\n");
    let mut peer = Peer::connect(mqttd.addr(), "quiet", V4).await;
    peer.publish("a/b", b"x", QoS::AtLeastOnce, false).await;
    peer.disconnect().await;
    mqttd.wait_for_log("quiet", 2);
    let log = mqttd.log();
    assert!(log.contains("New client connected from") && log.contains("as quiet (p2, c1, k60)."), "{log}");
    assert!(!log.contains("Received ") && !log.contains("Sending "), "{log}");
}
