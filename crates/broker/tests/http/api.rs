//! The admin API under `/api/v1/`: every route with good and bad input.

use mqttd_proto::{reason, Packet, QoS};
use mqttd_testkit::{connect, will, Peer};

use crate::common::{broker, get, request, V4, V5};

#[tokio::test]
async fn clients_are_listed_with_paging_and_filters() {
    let tb = broker();
    let mqtt = tb.addrs[0];
    let mut peers = Vec::new();
    for id in ["sensor-1", "sensor-2", "sensor-3", "other"] {
        peers.push(Peer::connect(mqtt, id, V4).await);
    }
    let all = get(tb.addrs[1], "/api/v1/clients").await.json();
    assert_eq!(all["total"], 4);
    let page = get(tb.addrs[1], "/api/v1/clients?prefix=sensor-&offset=1&limit=1").await.json();
    assert_eq!(page["total"], 3);
    assert_eq!(page["clients"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["clients"][0]["client_id"], "sensor-2");
    assert_eq!(page["clients"][0]["connected"], true);
    assert_eq!(page["clients"][0]["protocol"], "3.1.1");
    let by_listener = get(tb.addrs[1], "/api/v1/clients?listener=1").await.json();
    assert_eq!(by_listener["total"], 0, "nobody connected through the HTTP listener");
    let by_user = get(tb.addrs[1], "/api/v1/clients?user=nobody").await.json();
    assert_eq!(by_user["total"], 0);
}

#[tokio::test]
async fn bad_paging_values_are_400_with_a_json_message() {
    let tb = broker();
    for query in ["limit=0", "limit=1001", "offset=-1", "limit=ten", "listener=x"] {
        let reply = get(tb.addrs[1], &format!("/api/v1/clients?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        assert!(reply.json()["error"].as_str().is_some_and(|m| !m.is_empty()), "{query}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }
    assert_eq!(get(tb.addrs[1], "/api/v1/retained?limit=0").await.status, 400);
    assert_eq!(get(tb.addrs[1], "/api/v1/events?since=x").await.status, 400);
    assert_eq!(get(tb.addrs[1], "/api/v1/retained?filter=a/%23/b").await.status, 400, "# not last");
}

#[tokio::test]
async fn one_clients_session_shows_its_subscriptions_and_queue_and_unknown_ones_are_404() {
    let tb = broker();
    let mut c = connect("detail", V5);
    c.keep_alive = 30;
    c.will = Some(will("wills/detail", b"secret payload", QoS::AtLeastOnce, false));
    let (mut peer, _) = Peer::connect_with(tb.addrs[0], c).await;
    peer.subscribe("a/+", QoS::AtLeastOnce).await;
    let detail = get(tb.addrs[1], "/api/v1/clients/detail").await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    let d = detail.json();
    assert_eq!(d["keep_alive"], 30);
    assert_eq!(d["protocol"], "5.0");
    assert_eq!(d["subscription_list"][0]["filter"], "a/+");
    assert_eq!(d["subscription_list"][0]["qos"], 1);
    assert_eq!(d["will"]["topic"], "wills/detail");
    assert_eq!(d["queued"], 0);
    assert!(!detail.body.contains("secret payload"), "will payloads are not shown");
    let missing = get(tb.addrs[1], "/api/v1/clients/nobody%20here").await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().is_some_and(|m| m.contains("nobody here")));
    assert_eq!(request(tb.addrs[1], "DELETE", "/api/v1/clients/nobody", &[], "").await.status, 404);
}

#[tokio::test]
async fn deleting_a_client_disconnects_it_with_0x98_without_its_will_unless_asked() {
    let tb = broker();
    let mqtt = tb.addrs[0];
    let mut watcher = Peer::connect(mqtt, "watcher", V4).await;
    watcher.subscribe("wills/#", QoS::AtMostOnce).await;
    for (id, with_will) in [("kick-quiet", false), ("kick-loud", true)] {
        let mut c = connect(id, V5);
        c.will = Some(will(&format!("wills/{id}"), b"bye", QoS::AtMostOnce, false));
        let (mut peer, _) = Peer::connect_with(mqtt, c).await;
        let path = format!("/api/v1/clients/{id}?will={with_will}");
        let reply = request(tb.addrs[1], "DELETE", &path, &[], "").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["kicked"], true);
        let last = peer.expect_closed().await;
        let codes: Vec<u8> =
            last.iter().filter_map(|p| if let Packet::Disconnect(d) = p { Some(d.reason) } else { None }).collect();
        assert_eq!(codes, vec![reason::ADMINISTRATIVE_ACTION], "{id}: {last:?}");
    }
    // Only the second will goes out; the first was kicked without it (Mosquitto's with_will = false).
    assert_eq!(watcher.recv_publish().await.topic, "wills/kick-loud");
    assert!(watcher.quiet_for(std::time::Duration::from_millis(200)).await);
}

#[tokio::test]
async fn deleting_a_client_with_discard_ends_its_persistent_session() {
    let tb = broker();
    let mut c = connect("keeper", V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(3600);
    let (mut peer, _) = Peer::connect_with(tb.addrs[0], c).await;
    peer.subscribe("k/#", QoS::AtLeastOnce).await;
    let reply = request(tb.addrs[1], "DELETE", "/api/v1/clients/keeper?discard=1", &[], "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["discarded"], true);
    peer.expect_closed().await;
    assert_eq!(get(tb.addrs[1], "/api/v1/clients/keeper").await.status, 404);
    assert_eq!(tb.broker.subscription_count(), 0);
}

#[tokio::test]
async fn subscriptions_are_listed_and_filtered() {
    let tb = broker();
    let mut a = Peer::connect(tb.addrs[0], "sub-a", V4).await;
    a.subscribe("x/1", QoS::AtMostOnce).await;
    a.subscribe("x/2", QoS::ExactlyOnce).await;
    let mut b = Peer::connect(tb.addrs[0], "sub-b", V4).await;
    b.subscribe("x/1", QoS::AtLeastOnce).await;
    let all = get(tb.addrs[1], "/api/v1/subscriptions").await.json();
    assert_eq!(all["total"], 3);
    let x1 = get(tb.addrs[1], "/api/v1/subscriptions?filter=x/1").await.json();
    assert_eq!(x1["total"], 2);
    let of_b = get(tb.addrs[1], "/api/v1/subscriptions?prefix=sub-b").await.json();
    assert_eq!(of_b["subscriptions"][0]["qos"], 1);
}

#[tokio::test]
async fn retained_messages_are_browsed_by_filter_and_deleted_one_by_one() {
    let tb = broker();
    let mut p = Peer::connect(tb.addrs[0], "retainer", V4).await;
    p.publish("r/a", b"one", QoS::AtMostOnce, true).await;
    p.publish("r/b", &[0xff, 0x00], QoS::AtMostOnce, true).await;
    p.publish("s/c", b"three", QoS::AtMostOnce, true).await;
    crate::common::wait_retained(&tb, 3).await;
    let r = get(tb.addrs[1], "/api/v1/retained?filter=r/%2B").await.json();
    assert_eq!(r["total"], 2);
    assert_eq!(r["retained"][0]["topic"], "r/a");
    assert_eq!(r["retained"][0]["payload"], "one");
    assert_eq!(r["retained"][1]["payload_encoding"], "base64");
    assert_eq!(r["retained"][1]["payload"], "/wA=");
    let deleted = request(tb.addrs[1], "DELETE", "/api/v1/retained/r/a", &[], "").await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(tb.broker.retained_count(), 2);
    assert_eq!(request(tb.addrs[1], "DELETE", "/api/v1/retained/r/a", &[], "").await.status, 404);
}

#[tokio::test]
async fn a_message_published_through_the_api_reaches_subscribers() {
    let tb = broker();
    let mut sub = Peer::connect(tb.addrs[0], "api-sub", V4).await;
    sub.subscribe("api/#", QoS::AtLeastOnce).await;
    let body = r#"{"topic":"api/hello","payload":"from http","qos":1}"#;
    let reply = request(tb.addrs[1], "POST", "/api/v1/publish", &[("Content-Type", "application/json")], body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["delivered_to"], 1);
    let p = sub.recv_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..], p.qos), ("api/hello", &b"from http"[..], QoS::AtLeastOnce));
    for bad in [r#"{"topic":"a/#"}"#, r#"{"payload":"x"}"#, "not json", r#"{"topic":"a","qos":3}"#] {
        let reply = request(tb.addrs[1], "POST", "/api/v1/publish", &[], bad).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
    assert_eq!(get(tb.addrs[1], "/api/v1/publish").await.status, 405);
    assert_eq!(get(tb.addrs[1], "/api/v1/nothing").await.status, 404);
    assert_eq!(get(tb.addrs[1], "/nothing").await.status, 404);
}

#[tokio::test]
async fn the_events_ring_shows_connects_disconnects_with_reason_wills_and_refusals() {
    let tb = broker();
    let mut c = connect("ev-doomed", V4);
    c.will = Some(will("wills/ev", b"x", QoS::AtMostOnce, false));
    let (doomed, _) = Peer::connect_with(tb.addrs[0], c).await;
    doomed.drop_abruptly();
    let mut bad = connect("", V4);
    bad.clean_start = false;
    let _refused = Peer::connect_with(tb.addrs[0], bad).await;
    let events = crate::common::events_until(tb.addrs[1], 4).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"connected") && kinds.contains(&"refused"), "{events:?}");
    let will = events.iter().find(|e| e["kind"] == "will_published").expect("a will event");
    assert_eq!((will["client_id"].as_str(), will["topic"].as_str()), (Some("ev-doomed"), Some("wills/ev")));
    let gone = events.iter().find(|e| e["kind"] == "disconnected").expect("a disconnect event");
    assert_eq!(gone["reason"], "closed_by_peer");
    let later = get(tb.addrs[1], &format!("/api/v1/events?since={}", events[1]["seq"])).await.json();
    assert_eq!(later["events"].as_array().map(Vec::len), Some(events.len() - 2));
}
