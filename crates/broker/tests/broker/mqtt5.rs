//! MQTT 5.0 features: shared subscriptions (every strategy, members leaving mid-stream, 3.1.1 members),
//! subscription identifiers, topic aliases both ways, Response Information.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mqttd_broker::shared::Strategy;
use mqttd_broker::Settings;
use mqttd_proto::{
    reason, Ack, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, Subscribe, SubscriptionOptions,
};
use mqttd_testkit::{connect, publish, Peer, TestBroker};

use crate::common::*;

fn with_strategy(strategy: Strategy) -> TestBroker {
    TestBroker::with_settings(Settings {
        shared_strategy: strategy,
        sys_interval: Duration::ZERO,
        ..Default::default()
    })
}

/// A member of a shared group: a client subscribed to `$share/{group}/{filter}` at QoS 1.
async fn member(tb: &TestBroker, id: &str, version: ProtocolVersion, shared: &str) -> Peer {
    subscriber(tb, id, version, shared, QoS::AtLeastOnce).await
}

/// Publishes `n` numbered QoS 1 messages to `topic(i)` from one client, each acknowledged.
async fn publish_numbered(tb: &TestBroker, client_id: &str, n: usize, topic: impl Fn(usize) -> String) {
    let mut publisher = Peer::connect(tb.addr, client_id, V5).await;
    for i in 0..n {
        publisher.publish(&topic(i), i.to_string().as_bytes(), QoS::AtLeastOnce, false).await;
    }
    publisher.disconnect().await;
}

/// Reads what each member gets, each in its own task (members read as promptly as real clients do),
/// until `total` messages arrived over all of them, acknowledging each; returns the payloads (as numbers)
/// and topics per member.
fn read_all(members: Vec<Peer>, total: usize) -> tokio::task::JoinHandle<Vec<Vec<(usize, String)>>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = members
        .into_iter()
        .map(|mut m| {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let deadline = tokio::time::Instant::now() + mqttd_testkit::TIMEOUT;
                while seen.load(Ordering::SeqCst) < total {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "only {} of {total} arrived",
                        seen.load(Ordering::SeqCst)
                    );
                    let Some(Packet::Publish(p)) = m.recv_within(Duration::from_millis(20)).await else { continue };
                    if let Some(id) = p.packet_id {
                        m.send(&Packet::PubAck(Ack::new(id))).await;
                    }
                    let n: usize = std::str::from_utf8(&p.payload).expect("numbers").parse().expect("a number");
                    got.push((n, p.topic.clone()));
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                got
            })
        })
        .collect();
    tokio::spawn(async move {
        let mut all = Vec::new();
        for r in readers {
            all.push(r.await.expect("reader"));
        }
        all
    })
}

/// Starts the readers, publishes, and returns what each member got.
async fn distribute(
    tb: &TestBroker,
    members: Vec<Peer>,
    n: usize,
    topic: impl Fn(usize) -> String,
) -> Vec<Vec<(usize, String)>> {
    let readers = read_all(members, n);
    publish_numbered(tb, "producer", n, topic).await;
    readers.await.expect("readers")
}

fn all_once(got: &[Vec<(usize, String)>], n: usize) {
    let mut all: Vec<usize> = got.iter().flatten().map(|(i, _)| *i).collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "every message exactly once over the group");
}

/// Round robin (the default): 1000 messages over 3 members, one of them 3.1.1; each message goes to one
/// member [MQTT-4.8.2], every member gets its share.
#[tokio::test]
async fn round_robin_spreads_a_shared_subscription_over_its_members_of_both_versions() {
    let tb = with_strategy(Strategy::RoundRobin);
    let members = vec![
        member(&tb, "rr1", V5, "$share/g/work/#").await,
        member(&tb, "rr2", V5, "$share/g/work/#").await,
        member(&tb, "rr3", V4, "$share/g/work/#").await,
    ];
    assert_eq!(tb.broker.shared_subscription_count(), 3);
    let got = distribute(&tb, members, 1000, |i| format!("work/{}", i % 7)).await;
    all_once(&got, 1000);
    for (k, m) in got.iter().enumerate() {
        assert!(m.len() >= 200, "member {k} got {} of 1000", m.len());
    }
}

/// Random: every member gets some of 1000 messages, none twice.
#[tokio::test]
async fn random_gives_every_member_some_messages() {
    let tb = with_strategy(Strategy::Random);
    let mut members = Vec::new();
    for id in ["rand1", "rand2", "rand3"] {
        members.push(member(&tb, id, V5, "$share/g/r").await);
    }
    let got = distribute(&tb, members, 1000, |_| "r".into()).await;
    all_once(&got, 1000);
    for (k, m) in got.iter().enumerate() {
        assert!(m.len() >= 100, "member {k} got {} of 1000", m.len());
    }
}

/// Hash of the topic: one topic's messages all go to one member.
#[tokio::test]
async fn hash_topic_keeps_each_topic_on_one_member() {
    let tb = with_strategy(Strategy::HashTopic);
    let mut members = Vec::new();
    for id in ["ht1", "ht2", "ht3"] {
        members.push(member(&tb, id, V5, "$share/g/h/+").await);
    }
    let got = distribute(&tb, members, 300, |i| format!("h/{}", i % 10)).await;
    all_once(&got, 300);
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for (k, m) in got.iter().enumerate() {
        for (_, topic) in m {
            assert_eq!(*owner.entry(topic.clone()).or_insert(k), k, "{topic} went to two members");
        }
    }
    assert!(got.iter().filter(|m| !m.is_empty()).count() >= 2, "10 topics over 3 members use more than one");
}

/// Hash of the publisher, and sticky: one publisher's messages all go to one member.
#[tokio::test]
async fn hash_clientid_and_sticky_keep_a_publisher_on_one_member() {
    for strategy in [Strategy::HashClientId, Strategy::Sticky] {
        let tb = with_strategy(strategy);
        let mut members = Vec::new();
        for id in ["s1", "s2", "s3"] {
            members.push(member(&tb, id, V5, "$share/g/s").await);
        }
        let got = distribute(&tb, members, 200, |_| "s".into()).await;
        all_once(&got, 200);
        let used = got.iter().filter(|m| !m.is_empty()).count();
        assert_eq!(
            used,
            1,
            "{strategy:?}: one member took them all: {:?}",
            got.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
}

/// A member whose session ends mid-stream (killed, clean session) loses none of its QoS 1 messages to the
/// group: what it had not acknowledged goes to the other member [MQTT-4.8.2-6].
#[tokio::test]
async fn a_member_killed_mid_stream_hands_its_unacknowledged_messages_to_the_group() {
    let tb = with_strategy(Strategy::RoundRobin);
    let mut dying = member(&tb, "dying", V5, "$share/g/k").await;
    let staying = vec![member(&tb, "staying", V5, "$share/g/k").await];
    publish_numbered(&tb, "producer", 200, |_| "k".into()).await;
    // The dying member reads a few without acknowledging, then its socket goes.
    let mut unacknowledged = BTreeSet::new();
    for _ in 0..5 {
        let p = recv_publish_raw(&mut dying).await;
        unacknowledged.insert(std::str::from_utf8(&p.payload).expect("numbers").parse::<usize>().expect("number"));
    }
    dying.drop_abruptly();
    // Everything else, and the five again.
    let got = read_all(staying, 200).await.expect("reader");
    let received: BTreeSet<usize> = got[0].iter().map(|(i, _)| *i).collect();
    assert!(unacknowledged.is_subset(&received), "the messages the dead member did not acknowledge arrived");
    let mut all = received;
    all.extend(unacknowledged);
    assert_eq!(all.len(), 200, "none lost");
}

/// Retained messages are not sent on shared subscriptions; a plain subscription to the same filter gets
/// them as usual.
#[tokio::test]
async fn retained_messages_are_not_sent_on_shared_subscriptions() {
    let tb = with_strategy(Strategy::RoundRobin);
    publish_once(&tb, "kept/t", b"retained", QoS::AtLeastOnce, true).await;
    let mut shared = member(&tb, "shared", V5, "$share/g/kept/#").await;
    assert!(shared.quiet_for(Duration::from_millis(200)).await, "no retained message on a shared subscription");
    let mut plain = subscriber(&tb, "plain", V5, "kept/#", QoS::AtLeastOnce).await;
    assert_eq!(plain.recv_publish().await.payload, &b"retained"[..]);
}

/// A malformed shared filter gets 0x8F (5.0) or 0x80 (3.1.1) [MQTT-4.8.2-1] [MQTT-4.8.2-2]; No Local on
/// a shared subscription is a protocol error [MQTT-3.8.3-4].
#[tokio::test]
async fn malformed_shared_filters_are_refused_and_no_local_on_one_is_a_protocol_error() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    for (version, code) in [(V5, reason::TOPIC_FILTER_INVALID), (V4, 0x80)] {
        let mut peer = Peer::connect(tb.addr, &format!("bad{version}"), version).await;
        for filter in ["$share//t", "$share/g", "$share/g/", "$share/+/t"] {
            assert_eq!(peer.subscribe(filter, QoS::AtMostOnce).await, vec![code], "{version} {filter}");
        }
        peer.disconnect().await;
    }
    let mut peer = Peer::connect(tb.addr, "no-local", V5).await;
    let options = SubscriptionOptions { qos: QoS::AtMostOnce, no_local: true, ..Default::default() };
    let subscribe = Subscribe {
        packet_id: PacketId::new(1).expect("nonzero"),
        filters: vec![("$share/g/t".into(), options)],
        properties: Properties::default(),
    };
    peer.send(&Packet::Subscribe(subscribe)).await;
    assert_eq!(closed_with(&mut peer).await, Some(reason::PROTOCOL_ERROR));
    witness.still_served(&tb).await;
}

/// Subscription identifiers [MQTT-3.3.4-3]: a message matching two overlapping subscriptions of one
/// session carries both identifiers; one matching one subscription carries that one; identifiers are
/// kept across a reconnect of a persistent session.
#[tokio::test]
async fn deliveries_carry_the_identifiers_of_every_matching_subscription() {
    let tb = without_sys();
    let (mut sub, ack) = Peer::connect_with(tb.addr, persistent("ids", V5, 60)).await;
    assert_eq!(ack.properties.subscription_identifier_available, None, "available");
    for (id, filter) in [(1, "ids/#"), (2, "ids/+/x")] {
        let options = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
        let properties = Properties { subscription_identifiers: vec![id], ..Properties::default() };
        assert_eq!(sub.subscribe_with(vec![(filter.into(), options)], properties).await, vec![1]);
    }
    publish_once(&tb, "ids/a/x", b"both", QoS::AtLeastOnce, false).await;
    let mut ids = sub.recv_publish().await.properties.subscription_identifiers;
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    publish_once(&tb, "ids/a", b"one", QoS::AtLeastOnce, false).await;
    assert_eq!(sub.recv_publish().await.properties.subscription_identifiers, vec![1]);
    sub.drop_abruptly();
    let (mut back, present) = connect_ok(&tb, persistent("ids", V5, 60)).await;
    assert!(present);
    publish_once(&tb, "ids/b", b"again", QoS::AtLeastOnce, false).await;
    assert_eq!(back.recv_publish().await.properties.subscription_identifiers, vec![1]);
}

fn aliased(topic: &str, alias: u16, payload: &[u8]) -> Packet {
    let mut p = publish(topic, payload, QoS::AtMostOnce, false, None);
    p.properties.topic_alias = Some(alias);
    Packet::Publish(p)
}

/// Incoming topic aliases: the CONNACK announces Topic Alias Maximum (10 by default); an alias set with a
/// topic stands for it afterwards; 0, one above the maximum, or one never set ends the connection with
/// DISCONNECT 0x94 [MQTT-3.3.2-8] [MQTT-3.3.2-9].
#[tokio::test]
async fn incoming_topic_aliases_are_resolved_and_bad_ones_refused_with_0x94() {
    let tb = TestBroker::start();
    let mut witness = Witness::new(&tb).await;
    let mut sub = subscriber(&tb, "alias-reader", V4, "alias/#", QoS::AtMostOnce).await;
    let (mut peer, ack) = Peer::connect_with(tb.addr, connect("aliaser", V5)).await;
    assert_eq!(ack.properties.topic_alias_maximum, Some(10));
    peer.send(&aliased("alias/long/topic", 10, b"first")).await;
    peer.send(&aliased("", 10, b"second")).await;
    for expected in [&b"first"[..], b"second"] {
        let got = sub.recv_publish().await;
        assert_eq!((got.topic.as_str(), &got.payload[..]), ("alias/long/topic", expected));
    }
    for (bad, what) in [(aliased("alias/x", 11, b"x"), "above the maximum"), (aliased("", 3, b"x"), "never set")] {
        let (mut peer, _) = Peer::connect_with(tb.addr, connect(&format!("bad-alias-{what}"), V5)).await;
        peer.send(&bad).await;
        assert_eq!(closed_with(&mut peer).await, Some(reason::TOPIC_ALIAS_INVALID), "{what}");
    }
    peer.disconnect().await;
    witness.still_served(&tb).await;
}

/// Outgoing topic aliases: a client allowing 2 gets each topic once with its alias, then the alias alone;
/// a third topic takes the least recently used alias. A client that allows none (no Topic Alias Maximum,
/// or 0) always gets the topic.
#[tokio::test]
async fn outgoing_topic_aliases_are_used_when_the_client_allows_them() {
    let tb = without_sys();
    let mut c = connect("takes-aliases", V5);
    c.properties.topic_alias_maximum = Some(2);
    let (mut sub, _) = connect_ok(&tb, c).await;
    assert_eq!(sub.subscribe("out/#", QoS::AtMostOnce).await, vec![0]);
    let mut plain = Vec::new();
    for max in [None, Some(0)] {
        let mut c = connect(&format!("no-aliases-{max:?}"), V5);
        c.properties.topic_alias_maximum = max;
        let (mut p, _) = connect_ok(&tb, c).await;
        assert_eq!(p.subscribe("out/#", QoS::AtMostOnce).await, vec![0]);
        plain.push(p);
    }
    let topics = ["out/a", "out/a", "out/b", "out/b", "out/c", "out/a"];
    let mut publisher = Peer::connect(tb.addr, "alias-pub", V5).await;
    for t in topics {
        publisher.publish(t, b"x", QoS::AtMostOnce, false).await;
    }
    let got: Vec<(String, Option<u16>)> = {
        let mut v = Vec::new();
        for _ in topics {
            let p: Publish = recv_publish_raw(&mut sub).await;
            v.push((p.topic, p.properties.topic_alias));
        }
        v
    };
    let expected = [("out/a", 1), ("", 1), ("out/b", 2), ("", 2), ("out/c", 1), ("out/a", 2)];
    let expected: Vec<(String, Option<u16>)> = expected.iter().map(|(t, a)| (t.to_string(), Some(*a))).collect();
    assert_eq!(got, expected);
    for p in &mut plain {
        for t in topics {
            let got = recv_publish_raw(p).await;
            assert_eq!((got.topic.as_str(), got.properties.topic_alias), (t, None));
        }
    }
}

/// Response Information [MQTT-3.1.2.11.6]: sent when the client asks for it, from the configured prefix
/// and the client id; not sent otherwise.
#[tokio::test]
async fn response_information_is_sent_when_asked_for() {
    let tb = TestBroker::start();
    let mut c = connect("asker", V5);
    c.properties.request_response_information = Some(1);
    let (_peer, ack) = Peer::connect_with(tb.addr, c).await;
    assert_eq!(ack.properties.response_information.as_deref(), Some("responses/asker"));
    let (_other, ack) = Peer::connect_with(tb.addr, connect("silent", V5)).await;
    assert_eq!(ack.properties.response_information, None);
}

/// Problem information [MQTT-3.1.2-29]: refusals in PUBACK and SUBACK carry a Reason String when the
/// client allows them (the default), none when it sent Request Problem Information 0; a DISCONNECT or a
/// refusing CONNACK says why either way.
#[tokio::test]
async fn reason_strings_follow_request_problem_information() {
    let tb = TestBroker::start();
    for (request, expected) in [(None, true), (Some(1), true), (Some(0), false)] {
        let mut c = connect(&format!("problems-{request:?}"), V5);
        c.properties.request_problem_information = request;
        let (mut peer, _) = connect_ok(&tb, c).await;
        peer.send(&Packet::Publish(publish("$SYS/forged", b"x", QoS::AtLeastOnce, false, PacketId::new(1)))).await;
        match peer.recv().await {
            Packet::PubAck(ack) => {
                assert_eq!(ack.reason, reason::NOT_AUTHORIZED);
                assert_eq!(ack.properties.reason_string.is_some(), expected, "PUBACK, request {request:?}");
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
        let options = SubscriptionOptions { qos: QoS::AtMostOnce, ..Default::default() };
        let subscribe = Subscribe {
            packet_id: PacketId::new(2).expect("nonzero"),
            filters: vec![("$share//bad".into(), options)],
            properties: Properties::default(),
        };
        peer.send(&Packet::Subscribe(subscribe)).await;
        match peer.recv().await {
            Packet::SubAck(ack) => {
                assert_eq!(ack.reasons, vec![reason::TOPIC_FILTER_INVALID]);
                assert_eq!(ack.properties.reason_string.is_some(), expected, "SUBACK, request {request:?}");
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
        // A protocol error: the DISCONNECT says why, whatever was requested.
        peer.send(&aliased("", 9, b"x")).await;
        let closing = peer.expect_closed().await;
        let why = closing.iter().find_map(|p| match p {
            Packet::Disconnect(d) => Some(d.properties.reason_string.clone()),
            _ => None,
        });
        assert!(matches!(why, Some(Some(ref s)) if s.contains("alias")), "DISCONNECT: {closing:?}");
    }
    let mut c = connect("enhanced", V5);
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let (_, ack) = Peer::connect_with(tb.addr, c).await;
    assert_eq!(ack.code, reason::BAD_AUTHENTICATION_METHOD);
    assert!(ack.properties.reason_string.is_some(), "a refusing CONNACK says why");
}
