//! Moving from Mosquitto (issue 13): the real Mosquitto writes its `mosquitto.db` at SIGTERM; mqttd,
//! started on the same `persistence_location`, carries over its retained messages, sessions,
//! subscriptions and queued and in-flight messages, and leaves the file as it was. Skipped when
//! Mosquitto is not installed, unless `MQTTD_REQUIRE_PEERS=1`.

use std::path::Path;
use std::time::Duration;

use mqttd_proto::{Ack, Connect, Packet, Properties, Publish, QoS, SubscriptionOptions};
use mqttd_testkit::{connect, Peer};

use crate::common::{free_port, local, mosquitto_available, Mosquitto, Mqttd, V4, V5};

/// `keeper`'s MQTT 5 persistent session (an hour), with Receive Maximum `receive_maximum`.
fn keeper(receive_maximum: Option<u16>) -> Connect {
    let mut c = connect("keeper", V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(3600);
    c.properties.receive_maximum = receive_maximum;
    c
}

fn options(qos: QoS, no_local: bool) -> SubscriptionOptions {
    SubscriptionOptions { qos, no_local, retain_as_published: no_local, ..Default::default() }
}

async fn subscribe(peer: &mut Peer, filter: &str, options: SubscriptionOptions, id: Option<u32>) -> Vec<u8> {
    let properties = Properties { subscription_identifiers: id.into_iter().collect(), ..Properties::default() };
    peer.subscribe_with(vec![(filter.into(), options)], properties).await
}

async fn recv_raw(peer: &mut Peer) -> Publish {
    match peer.recv().await {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// Fills Mosquitto (persistence on, in `data`) with what is to carry over, and stops it with SIGTERM:
/// `keeper` with three subscriptions and ten QoS 1 messages `queued/0..9`, of which Mosquitto sent the
/// first two (Receive Maximum 2) without getting PUBACK; five retained messages `kept/0..4`. Returns
/// the packet ids of the two messages in flight.
async fn fill_mosquitto(dir: &Path, data: &Path) -> (Option<mqttd_proto::PacketId>, Option<mqttd_proto::PacketId>) {
    let store = format!("persistence true\npersistence_location {}/\n", data.display());
    let mosquitto = Mosquitto::start(dir, free_port(), &store);
    let addr = local(mosquitto.port);
    let (mut sub, ack) = Peer::connect_with(addr, keeper(None)).await;
    assert_eq!((ack.code, ack.session_present), (0, false));
    assert_eq!(subscribe(&mut sub, "queued/#", options(QoS::AtLeastOnce, false), Some(5)).await, vec![1]);
    assert_eq!(subscribe(&mut sub, "other/+", options(QoS::ExactlyOnce, true), Some(6)).await, vec![2]);
    assert_eq!(subscribe(&mut sub, "third", options(QoS::AtMostOnce, false), None).await, vec![0]);
    sub.disconnect().await;
    let mut publisher = Peer::connect(addr, "publisher", V4).await;
    for i in 0..10 {
        publisher.publish(&format!("queued/{i}"), format!("{i}").as_bytes(), QoS::AtLeastOnce, false).await;
    }
    for i in 0..5 {
        publisher.publish(&format!("kept/{i}"), format!("r{i}").as_bytes(), QoS::AtLeastOnce, true).await;
    }
    let (mut sub, ack) = Peer::connect_with(addr, keeper(Some(2))).await;
    assert!(ack.session_present, "Mosquitto kept the session");
    let (first, second) = (recv_raw(&mut sub).await, recv_raw(&mut sub).await);
    assert_eq!((&first.payload[..], &second.payload[..]), (&b"0"[..], &b"1"[..]));
    // Stopped with keeper connected and both unacknowledged: Mosquitto saves them as in flight.
    mosquitto.stop();
    drop(sub);
    (first.packet_id, second.packet_id)
}

#[tokio::test]
async fn a_mosquitto_database_is_imported_on_the_first_start() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("creates the data directory");
    let in_flight = fill_mosquitto(dir.path(), &data).await;
    let written = std::fs::read(data.join("mosquitto.db")).expect("Mosquitto saved its database at SIGTERM");

    let settings = format!("allow_anonymous true\npersistence true\npersistence_location {}/\n", data.display());
    let mqttd = Mqttd::start(dir.path(), &settings);
    mqttd.wait_for_log("5 retained messages, 1 sessions with 3 subscriptions, 10 queued messages", 1);

    let (mut sub, ack) = Peer::connect_with(mqttd.addr(), keeper(None)).await;
    assert_eq!((ack.code, ack.session_present), (0, true), "the session carried over");
    // In flight first, with DUP and the packet ids Mosquitto used [MQTT-4.4.0-1]; then the queue, in order.
    for i in 0..10 {
        let p = recv_raw(&mut sub).await;
        assert_eq!((p.topic.clone(), &p.payload[..]), (format!("queued/{i}"), format!("{i}").as_bytes()));
        assert_eq!(p.properties.subscription_identifiers, vec![5], "queued/{i} keeps its subscription identifier");
        if i < 2 {
            assert!(p.dup, "queued/{i} was in flight");
            assert_eq!(p.packet_id, [in_flight.0, in_flight.1][i]);
        }
        sub.send(&Packet::PubAck(Ack::new(p.packet_id.expect("QoS 1")))).await;
    }
    // The other two subscriptions, with their QoS, identifier and No Local [MQTT-3.8.3-3].
    sub.send(&Packet::Publish(mqttd_testkit::publish("other/own", b"no local", QoS::AtMostOnce, false, None))).await;
    let mut publisher = Peer::connect(mqttd.addr(), "publisher", V4).await;
    publisher.publish("other/x", b"two", QoS::ExactlyOnce, false).await;
    publisher.publish("third", b"zero", QoS::AtLeastOnce, false).await;
    let other = sub.recv_publish().await;
    assert_eq!(
        (other.topic.as_str(), other.qos, &other.properties.subscription_identifiers[..]),
        ("other/x", QoS::ExactlyOnce, &[6][..])
    );
    let third = sub.recv_publish().await;
    assert_eq!((third.topic.as_str(), third.qos), ("third", QoS::AtMostOnce));
    assert!(third.properties.subscription_identifiers.is_empty());
    assert!(sub.quiet_for(Duration::from_millis(200)).await, "nothing else: not its own message");

    let mut reader = Peer::connect(mqttd.addr(), "reader", V4).await;
    assert_eq!(reader.subscribe("kept/#", QoS::AtLeastOnce).await, vec![1]);
    let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
    for _ in 0..5 {
        let p = reader.recv_publish().await;
        assert!(p.retain);
        kept.push((p.topic, p.payload.to_vec()));
    }
    kept.sort();
    let expected: Vec<(String, Vec<u8>)> =
        (0..5).map(|i| (format!("kept/{i}"), format!("r{i}").into_bytes())).collect();
    assert_eq!(kept, expected, "every retained message carried over");

    assert_eq!(std::fs::read(data.join("mosquitto.db")).expect("still there"), written, "mosquitto.db untouched");
    assert!(data.join("mqttd.db").exists(), "mqttd writes its own log");
    // Imported once: the next start reads mqttd's own log only.
    mqttd.terminate();
    let mqttd = Mqttd::start(dir.path(), &settings);
    let (_sub, ack) = Peer::connect_with(mqttd.addr(), keeper(None)).await;
    assert!(ack.session_present);
    assert!(!mqttd.log().contains("(left unchanged)"), "{}", mqttd.log());
}

/// A file that starts as Mosquitto's but cannot be read stops the start, naming the file and the byte.
#[test]
fn a_damaged_mosquitto_database_stops_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bytes = b"\x00\xB5\x00mosquitto db\x00\x00\x00\x00\x00\x00\x00\x06".to_vec();
    bytes.extend([0, 0, 0, 2, 0, 0, 0, 40, 1, 2, 3]); // a message chunk cut short
    std::fs::write(dir.path().join("mosquitto.db"), &bytes).expect("writes");
    let settings = format!("persistence true\npersistence_location {}/\n", dir.path().display());
    let log = crate::common::startup_error(dir.path(), &settings);
    assert!(log.contains("mosquitto.db") && log.contains("at byte 31"), "{log}");
    assert!(!dir.path().join("mqttd.db").exists());
}
