//! The same broker on a work-stealing runtime of two threads (what `mqttd` runs on machines of more than
//! two cores): publishers and subscribers on different threads, wake-ups crossing threads. The other
//! tests run on a one-thread runtime, like `mqttd` on small machines.

use std::sync::atomic::Ordering;

use mqttd_proto::{Ack, Packet, QoS};
use mqttd_testkit::{publish, Peer, TestBroker};

use crate::common::*;

/// One publisher pipelines QoS 1 messages to eight subscribers that read concurrently: each gets every
/// message once, in order [MQTT-4.6.0-2], and the publisher every PUBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_across_threads_delivers_every_qos1_message_once_in_order() {
    let tb = TestBroker::start();
    let mut readers = Vec::new();
    for n in 0..8 {
        let mut sub = subscriber(&tb, &format!("mt-sub-{n}"), V4, "mt/fan", QoS::AtLeastOnce).await;
        readers.push(tokio::spawn(async move {
            for i in 1..=500u16 {
                let p = sub.recv_publish().await;
                assert_eq!(p.payload[..], i.to_be_bytes(), "subscriber {n}: message {i} arrives once, in order");
            }
        }));
    }
    let mut publisher = Peer::connect(tb.addr, "mt-pub", V4).await;
    publisher.send_raw(&qos1_burst("mt/fan", 500)).await;
    for _ in 0..500 {
        assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
    }
    for reader in readers {
        reader.await.expect("subscriber task");
    }
    assert_eq!(tb.broker.stats.messages_dropped.load(Ordering::Relaxed), 0);
}

/// Eight publisher/subscriber pairs at QoS 2 at once: every message is delivered exactly once
/// [MQTT-4.3.3-1].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_across_threads_deliver_every_qos2_message_exactly_once() {
    let tb = TestBroker::start();
    let mut pairs = Vec::new();
    for n in 0..8 {
        let topic = format!("mt/pair/{n}");
        let mut sub = subscriber(&tb, &format!("mt-psub-{n}"), V4, &topic, QoS::ExactlyOnce).await;
        let mut publisher = Peer::connect(tb.addr, &format!("mt-ppub-{n}"), V4).await;
        pairs.push(tokio::spawn(async move {
            let reader = tokio::spawn(async move {
                // The broker may send the next QoS 2 PUBLISH before the PUBREL of the previous one (several
                // may be in flight), so this reader answers each packet as it comes.
                let (mut got, mut released) = (0u16, 0u16);
                while released < 100 {
                    match sub.recv().await {
                        Packet::Publish(p) => {
                            got += 1;
                            assert_eq!(p.payload[..], got.to_be_bytes(), "pair {n}: message {got} once, in order");
                            sub.send(&Packet::PubRec(Ack::new(p.packet_id.expect("QoS 2 id")))).await;
                        }
                        Packet::PubRel(rel) => {
                            released += 1;
                            sub.send(&Packet::PubComp(Ack::new(rel.packet_id))).await;
                        }
                        other => panic!("pair {n}: unexpected {other:?}"),
                    }
                }
                assert_eq!(got, 100);
                sub
            });
            for i in 1..=100u16 {
                publisher.publish(&topic, &i.to_be_bytes(), QoS::ExactlyOnce, false).await;
            }
            let mut sub = reader.await.expect("reader");
            assert!(sub.quiet_for(std::time::Duration::from_millis(100)).await, "pair {n}: no duplicate");
        }));
    }
    for pair in pairs {
        pair.await.expect("pair task");
    }
}

/// A subscriber that stops reading, on one thread, does not hold up a reader on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_does_not_hold_up_a_reader_on_another_thread() {
    let tb = TestBroker::start();
    let _stalled = subscriber(&tb, "mt-stalled", V4, "mt/flood", QoS::AtMostOnce).await;
    let mut reader = subscriber(&tb, "mt-reader", V4, "mt/flood", QoS::AtMostOnce).await;
    let mut publisher = Peer::connect(tb.addr, "mt-flooder", V4).await;
    let payload = vec![7u8; 1024];
    let mut burst = Vec::new();
    for _ in 0..4000 {
        burst.extend(bytes_of(&Packet::Publish(publish("mt/flood", &payload, QoS::AtMostOnce, false, None)), V4));
    }
    publisher.send_raw(&burst).await;
    // 4 MB to two subscribers, one of which never reads: the reader still gets all of it.
    for _ in 0..4000 {
        assert_eq!(reader.recv_publish().await.payload.len(), 1024);
    }
}
