//! Bridges (issue 15): the real `mqttd` binary with `connection` sections, bridging to a real Mosquitto
//! (started per test on a free port of 127.0.0.1 with its own config in a temporary directory, stopped
//! by its pid) and to another mqttd; and a Mosquitto bridge pointed at mqttd. Skipped when Mosquitto is
//! not installed, unless `MQTTD_REQUIRE_PEERS=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mqttd_proto::{Ack, Connect, Packet, Publish, QoS};
use mqttd_testkit::Peer;

use crate::common::{free_port, local, mosquitto_available, Mosquitto, Mqttd, TIMEOUT, V4, V5};

/// A bridge section towards `port` sharing `topics`, reconnecting after 1 s.
fn bridge(name: &str, port: u16, topics: &str, extra: &str) -> String {
    format!("connection {name}\naddress 127.0.0.1:{port}\nremote_clientid {name}\nrestart_timeout 1\n{topics}{extra}")
}

fn state_topic(name: &str) -> String {
    format!("$SYS/broker/connection/{name}/state")
}

/// Subscribes `peer` to the bridge's state topic and waits until it says `state`.
async fn wait_for_state(peer: &mut Peer, name: &str, state: &[u8]) {
    peer.subscribe(&state_topic(name), QoS::AtLeastOnce).await;
    let start = Instant::now();
    loop {
        let p = peer.recv_publish().await;
        if p.topic == state_topic(name) && &p.payload[..] == state {
            return;
        }
        assert!(start.elapsed() < TIMEOUT, "bridge {name} never reported {state:?}");
    }
}

async fn expect(peer: &mut Peer, topic: &str, payload: &[u8]) -> Publish {
    let p = peer.recv_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), (topic, payload));
    p
}

/// Publishes on one side and checks the other side's subscriber gets it on the remapped topic, for each
/// direction; the remote is Mosquitto or another mqttd.
async fn both_directions_are_remapped(remote_port: u16) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let topics = "topic sensors/# out 1 site/ cloud/\ntopic cmd/# in 1 local/ remote/\n";
    let mqttd = Mqttd::start(dir.path(), &format!("allow_anonymous true\n{}", bridge("edge", remote_port, topics, "")));
    let mut watcher = Peer::connect(mqttd.addr(), "watcher", V4).await;
    wait_for_state(&mut watcher, "edge", b"1").await;

    let mut remote_sub = Peer::connect(local(remote_port), "remote-sub", V4).await;
    remote_sub.subscribe("cloud/#", QoS::AtLeastOnce).await;
    let mut local_pub = Peer::connect(mqttd.addr(), "local-pub", V4).await;
    local_pub.publish("site/sensors/t1", b"21.5", QoS::AtLeastOnce, false).await;
    let got = expect(&mut remote_sub, "cloud/sensors/t1", b"21.5").await;
    assert_eq!(got.qos, QoS::AtLeastOnce, "at the topic's QoS");
    local_pub.publish("site/other", b"no", QoS::AtLeastOnce, false).await;
    local_pub.publish("cmd/x", b"no", QoS::AtLeastOnce, false).await;

    let mut local_sub = Peer::connect(mqttd.addr(), "local-sub", V4).await;
    local_sub.subscribe("local/#", QoS::AtLeastOnce).await;
    let mut remote_pub = Peer::connect(local(remote_port), "remote-pub", V4).await;
    remote_pub.publish("remote/cmd/open", b"now", QoS::ExactlyOnce, false).await;
    let got = expect(&mut local_sub, "local/cmd/open", b"now").await;
    assert_eq!(got.qos, QoS::AtLeastOnce, "capped at the topic's QoS 1");
    assert!(remote_sub.quiet_for(Duration::from_millis(300)).await, "nothing else went out, nothing came back");
    assert!(
        mqttd.log().contains(&format!("bridge edge: connected to 127.0.0.1:{remote_port} as edge")),
        "{}",
        mqttd.log()
    );
}

#[tokio::test]
async fn a_bridge_to_mosquitto_remaps_prefixes_each_way() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mosquitto = Mosquitto::start(dir.path(), free_port(), "");
    both_directions_are_remapped(mosquitto.port).await;
}

#[tokio::test]
async fn a_bridge_to_another_mqttd_remaps_prefixes_each_way() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let remote = Mqttd::start(dir.path(), "allow_anonymous true\n");
    both_directions_are_remapped(remote.port).await;
}

#[tokio::test]
async fn notifications_say_1_on_both_sides_and_0_when_the_bridge_goes() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mosquitto = Mosquitto::start(dir.path(), free_port(), "");
    let mut remote_watcher = Peer::connect(local(mosquitto.port), "rw", V4).await;
    remote_watcher.subscribe(&state_topic("edge"), QoS::AtLeastOnce).await;
    let mqttd_dir = tempfile::tempdir().expect("temporary directory");
    let mut mqttd = Mqttd::start(
        mqttd_dir.path(),
        &format!("allow_anonymous true\n{}", bridge("edge", mosquitto.port, "topic a/#\n", "")),
    );
    let mut watcher = Peer::connect(mqttd.addr(), "watcher", V4).await;
    wait_for_state(&mut watcher, "edge", b"1").await;
    let p = expect(&mut remote_watcher, &state_topic("edge"), b"1").await;
    assert!(!p.retain, "a live message");
    // A new subscriber gets the retained state.
    let mut late = Peer::connect(local(mosquitto.port), "late", V4).await;
    late.subscribe(&state_topic("edge"), QoS::AtLeastOnce).await;
    assert!(expect(&mut late, &state_topic("edge"), b"1").await.retain);
    // Killed: the remote's copy of the bridge's will says 0.
    let _ = mqttd.child.kill();
    expect(&mut remote_watcher, &state_topic("edge"), b"0").await;
}

/// Numbered messages, odd ones QoS 1 and even ones QoS 2, until `to`.
async fn publish_numbered(peer: &mut Peer, from: u32, to: u32) {
    for n in from..=to {
        let qos = if n % 2 == 1 { QoS::AtLeastOnce } else { QoS::ExactlyOnce };
        peer.publish("site/n", n.to_string().as_bytes(), qos, false).await;
    }
}

/// Receives until every number up to `to` has come; returns how often each came.
/// Receives numbered messages until 1..=`to` have all arrived, as a QoS 2 receiver keeps its session:
/// the packet ids of QoS 2 messages it answered with PUBREC stay in `pending` until their PUBREL (across
/// reconnects), so a resend of one (DUP, same id) is not delivered again [MQTT-4.3.3-10].
async fn receive_numbered(peer: &mut Peer, seen: &mut BTreeMap<u32, usize>, pending: &mut BTreeSet<u16>, to: u32) {
    while (1..=to).any(|n| !seen.contains_key(&n)) {
        let p = match peer.recv().await {
            Packet::Publish(p) => p,
            Packet::PubRel(rel) => {
                pending.remove(&rel.packet_id.get());
                peer.send(&Packet::PubComp(Ack::new(rel.packet_id))).await;
                continue;
            }
            other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => peer.send(&Packet::PubAck(Ack::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => {
                let new = pending.insert(id.get());
                peer.send(&Packet::PubRec(Ack::new(id))).await;
                if !new {
                    continue;
                }
            }
            _ => {}
        }
        let n: u32 = std::str::from_utf8(&p.payload).expect("text").parse().expect("a number");
        *seen.entry(n).or_default() += 1;
    }
}

fn persistent(client_id: &str) -> Connect {
    Connect { clean_start: false, ..mqttd_testkit::connect(client_id, V4) }
}

#[tokio::test]
async fn qos_1_and_2_messages_queued_while_the_remote_restarts_all_arrive() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = format!("persistence true\npersistence_location {}/\n", dir.path().display());
    let mosquitto = Mosquitto::start(dir.path(), free_port(), &store);
    let (mut sub, _) = Peer::connect_with(local(mosquitto.port), persistent("counter")).await;
    sub.subscribe("n", QoS::ExactlyOnce).await;
    let mqttd_dir = tempfile::tempdir().expect("temporary directory");
    let topics = "topic n out 2 site/ \"\"\n";
    let mqttd = Mqttd::start(
        mqttd_dir.path(),
        &format!("allow_anonymous true\n{}", bridge("edge", mosquitto.port, topics, "")),
    );
    let mut watcher = Peer::connect(mqttd.addr(), "watcher", V4).await;
    wait_for_state(&mut watcher, "edge", b"1").await;
    let mut publisher = Peer::connect(mqttd.addr(), "publisher", V4).await;
    let (mut seen, mut pending) = (BTreeMap::new(), BTreeSet::new());
    publish_numbered(&mut publisher, 1, 10).await;
    receive_numbered(&mut sub, &mut seen, &mut pending, 10).await;

    let (config, log, port) = mosquitto.stop();
    drop(sub);
    expect(&mut watcher, &state_topic("edge"), b"0").await;
    publish_numbered(&mut publisher, 11, 40).await;
    let _mosquitto = Mosquitto::spawn(config, log, port);
    let (mut sub, ack) = Peer::connect_with(local(port), persistent("counter")).await;
    assert!(ack.session_present, "Mosquitto kept the subscriber's session");
    receive_numbered(&mut sub, &mut seen, &mut pending, 40).await;
    let missing: Vec<u32> = (1..=40).filter(|n| !seen.contains_key(n)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let twice: Vec<u32> = seen.iter().filter(|(n, c)| *n % 2 == 0 && **c > 1).map(|(n, _)| *n).collect();
    assert!(twice.is_empty(), "QoS 2 delivered more than once: {twice:?}");
    assert!(mqttd.log().contains("bridge edge: retrying in 1s"), "{}", mqttd.log());
}

#[tokio::test]
async fn a_bridge_over_tls_verifies_mosquitto_with_the_given_ca() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let pki = mqttd_testkit::pki::Pki::generate(dir.path(), "bridge");
    let tls = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display()
    );
    let tls_port = free_port();
    let mosquitto = Mosquitto::start(dir.path(), free_port(), &format!("listener {tls_port} 127.0.0.1\n{tls}"));
    let mqttd_dir = tempfile::tempdir().expect("temporary directory");
    let settings = format!(
        "allow_anonymous true\nconnection edge\naddress localhost:{tls_port}\nremote_clientid edge\nrestart_timeout 1\n\
         topic t/# out 1\nbridge_cafile {}\nbridge_tls_version tlsv1.2\n",
        pki.ca.display()
    );
    let mqttd = Mqttd::start(mqttd_dir.path(), &settings);
    let mut watcher = Peer::connect(mqttd.addr(), "watcher", V4).await;
    wait_for_state(&mut watcher, "edge", b"1").await;
    let mut sub = Peer::connect(local(mosquitto.port), "sub", V4).await;
    sub.subscribe("t/#", QoS::AtLeastOnce).await;
    watcher.publish("t/secret", b"over tls", QoS::AtLeastOnce, false).await;
    expect(&mut sub, "t/secret", b"over tls").await;

    // A CA that did not sign Mosquitto's certificate: the handshake fails, and the log says why.
    std::fs::create_dir(dir.path().join("other")).expect("makes a directory");
    let other = mqttd_testkit::pki::Pki::generate(&dir.path().join("other"), "other");
    let wrong = settings.replace(&pki.ca.display().to_string(), &other.ca.display().to_string());
    let bad_dir = tempfile::tempdir().expect("temporary directory");
    let refused = Mqttd::start(bad_dir.path(), &wrong);
    refused.wait_for_log("bridge edge: connecting to localhost", 1);
    refused.wait_for_log("failed", 1);
    assert!(refused.log().contains("not accepted") || refused.log().contains("certificate"), "{}", refused.log());
}

#[tokio::test]
async fn a_lazy_bridge_connects_once_threshold_messages_are_queued() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mosquitto = Mosquitto::start(dir.path(), free_port(), "");
    let mut sub = Peer::connect(local(mosquitto.port), "sub", V4).await;
    sub.subscribe("lazy/#", QoS::AtLeastOnce).await;
    let mqttd_dir = tempfile::tempdir().expect("temporary directory");
    let extra = "start_type lazy\nthreshold 3\nidle_timeout 1\n";
    let mqttd = Mqttd::start(
        mqttd_dir.path(),
        &format!("allow_anonymous true\n{}", bridge("edge", mosquitto.port, "topic lazy/# out 1\n", extra)),
    );
    let mut publisher = Peer::connect(mqttd.addr(), "publisher", V4).await;
    publisher.publish("lazy/1", b"1", QoS::AtLeastOnce, false).await;
    publisher.publish("lazy/2", b"2", QoS::AtLeastOnce, false).await;
    assert!(!mqttd.log().contains("bridge edge: connecting"), "below the threshold:\n{}", mqttd.log());
    publisher.publish("lazy/3", b"3", QoS::AtLeastOnce, false).await;
    for n in 1..=3 {
        expect(&mut sub, &format!("lazy/{n}"), n.to_string().as_bytes()).await;
    }
    mqttd.wait_for_log("bridge edge: idle for 1s", 1);
}

#[tokio::test]
async fn two_mqttds_bridging_everything_both_ways_do_not_loop() {
    for version in ["mqttv311", "mqttv50"] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let remote = Mqttd::start(dir.path(), "allow_anonymous true\n");
        let local_dir = tempfile::tempdir().expect("temporary directory");
        let extra = format!("bridge_protocol_version {version}\n");
        let settings = format!("allow_anonymous true\n{}", bridge("loop", remote.port, "topic # both 1\n", &extra));
        let edge = Mqttd::start(local_dir.path(), &settings);
        let mut watcher = Peer::connect(edge.addr(), "watcher", V4).await;
        wait_for_state(&mut watcher, "loop", b"1").await;
        let mut here = Peer::connect(edge.addr(), "here", V5).await;
        here.subscribe("#", QoS::AtLeastOnce).await;
        let mut there = Peer::connect(remote.addr(), "there", V5).await;
        there.subscribe("#", QoS::AtLeastOnce).await;
        let mut publisher = Peer::connect(edge.addr(), "p1", V4).await;
        publisher.publish("a", b"from here", QoS::AtLeastOnce, false).await;
        expect(&mut here, "a", b"from here").await;
        expect(&mut there, "a", b"from here").await;
        let mut publisher = Peer::connect(remote.addr(), "p2", V4).await;
        publisher.publish("b", b"from there", QoS::AtLeastOnce, true).await;
        expect(&mut there, "b", b"from there").await;
        expect(&mut here, "b", b"from there").await;
        // The bridge saw the RETAIN flag as published (No Local and Retain As Published in 5.0, the
        // bridge bit in 3.1.1), so the message is retained here too.
        let mut late = Peer::connect(edge.addr(), "late", V4).await;
        late.subscribe("b", QoS::AtLeastOnce).await;
        assert!(expect(&mut late, "b", b"from there").await.retain, "{version}: retained on this side");
        for peer in [&mut here, &mut there] {
            assert!(peer.quiet_for(Duration::from_millis(500)).await, "{version}: a message came back");
        }
    }
}

#[tokio::test]
async fn a_mosquitto_bridge_to_mqttd_works_with_its_bridge_bit() {
    if !mosquitto_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mqttd = Mqttd::start(dir.path(), "allow_anonymous true\n");
    let mut watcher = Peer::connect(mqttd.addr(), "watcher", V4).await;
    let mosquitto_dir = tempfile::tempdir().expect("temporary directory");
    let mosquitto =
        Mosquitto::start(mosquitto_dir.path(), free_port(), &bridge("m", mqttd.port, "topic # both 1\n", ""));
    wait_for_state(&mut watcher, "m", b"1").await;
    let mut on_mqttd = Peer::connect(mqttd.addr(), "on-mqttd", V4).await;
    on_mqttd.subscribe("x/#", QoS::AtLeastOnce).await;
    let mut on_mosquitto = Peer::connect(local(mosquitto.port), "on-mosquitto", V4).await;
    on_mosquitto.subscribe("x/#", QoS::AtLeastOnce).await;
    let mut publisher = Peer::connect(local(mosquitto.port), "pub-mosquitto", V4).await;
    publisher.publish("x/1", b"from mosquitto", QoS::AtLeastOnce, false).await;
    expect(&mut on_mosquitto, "x/1", b"from mosquitto").await;
    expect(&mut on_mqttd, "x/1", b"from mosquitto").await;
    let mut publisher = Peer::connect(mqttd.addr(), "pub-mqttd", V4).await;
    publisher.publish("x/2", b"from mqttd", QoS::AtLeastOnce, false).await;
    expect(&mut on_mqttd, "x/2", b"from mqttd").await;
    expect(&mut on_mosquitto, "x/2", b"from mqttd").await;
    for peer in [&mut on_mqttd, &mut on_mosquitto] {
        assert!(peer.quiet_for(Duration::from_millis(300)).await, "a message came back through the bridge");
    }
}

#[tokio::test]
async fn bridges_keep_running_across_sighup() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let remote = Mqttd::start(dir.path(), "allow_anonymous true\n");
    let local_dir = tempfile::tempdir().expect("temporary directory");
    let edge = Mqttd::start(
        local_dir.path(),
        &format!("allow_anonymous true\n{}", bridge("edge", remote.port, "topic # out 1\n", "")),
    );
    let mut watcher = Peer::connect(edge.addr(), "watcher", V4).await;
    wait_for_state(&mut watcher, "edge", b"1").await;
    edge.hangup();
    edge.wait_for_log("SIGHUP: config file", 1);
    let mut sub = Peer::connect(remote.addr(), "sub", V4).await;
    sub.subscribe("after/#", QoS::AtLeastOnce).await;
    watcher.publish("after/hup", b"still bridged", QoS::AtLeastOnce, false).await;
    expect(&mut sub, "after/hup", b"still bridged").await;
    assert_eq!(edge.log().matches("bridge edge: connecting").count(), 1, "not restarted:\n{}", edge.log());
    assert!(edge.terminate().success());
}
