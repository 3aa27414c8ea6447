//! Users and ACLs over TCP (issue 4): password files and `allow_anonymous` on CONNECT, ACL files on
//! publish, on every delivery, on retained messages sent at subscribe, on wills and on `$SYS`, and the
//! attempts to get around them (wildcard subscriptions, chosen client ids and usernames).
//!
//! Each test starts its own in-process broker on port 0 and installs a [`SecuritySet`] read from fixture
//! files in a temporary directory. Hashes are `$7$` (PBKDF2): argon2id is slow by design.
//!
//! "Nothing forbidden arrives" is checked without sleeping: the forbidden messages are published first
//! by a QoS 1 publisher (its PUBACK means routing is done), then an allowed marker; the next message the
//! subscriber receives must be the marker.

use std::sync::Arc;

use mqttd_auth::{hash_password, HashKind};
use mqttd_broker::security::{Security, SecuritySet};
use mqttd_proto::{reason, ConnAck, Packet, PacketId, ProtocolVersion, QoS};
use mqttd_testkit::{connect, publish, will, Peer, TestBroker, TIMEOUT};
use tempfile::TempDir;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// 3.1.1 CONNACK return code "not authorized".
const V4_NOT_AUTHORIZED: u8 = 5;
/// 3.1.1 SUBACK return code "failure".
const V4_SUBACK_FAILURE: u8 = 0x80;

/// The ACL used by the ACL tests.
const ACL: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite public/#
topic readwrite alice/#
topic read rooms/+/temp
topic deny alice/secret/#

user admin
topic readwrite #
topic read $SYS/#

user watcher
topic read $SYS/broker/clients/#
topic read public/#

pattern readwrite clients/%c/#
pattern read users/%u/#
";

/// Users of the ACL tests: (name, password).
const USERS: &[(&str, &str)] = &[("alice", "alice-pw"), ("admin", "admin-pw"), ("watcher", "watcher-pw")];

/// A broker with security from fixture files; the directory lives as long as the broker.
struct Secured {
    tb: TestBroker,
    _dir: TempDir,
}

/// Starts a broker with `allow_anonymous`, a password file holding `users` (none: no password file) and
/// an ACL file with `acl` (none: no ACL file).
fn secured(allow_anonymous: bool, users: Option<&[(&str, &str)]>, acl: Option<&str>) -> Secured {
    let dir = tempfile::tempdir().expect("temporary directory");
    let password_file = users.map(|users| {
        let path = dir.path().join("passwd");
        let mut text = String::new();
        for (name, password) in users {
            let hash = hash_password(password.as_bytes(), HashKind::Sha512Pbkdf2).expect("hashes");
            text.push_str(&format!("{name}:{hash}\n"));
        }
        std::fs::write(&path, text).expect("writes the password file");
        path
    });
    let acl_file = acl.map(|acl| {
        let path = dir.path().join("acl");
        std::fs::write(&path, acl).expect("writes the ACL file");
        path
    });
    let security =
        Security::open(allow_anonymous, password_file.as_deref(), acl_file.as_deref()).expect("fixtures parse");
    let tb = TestBroker::start();
    tb.broker.set_security(SecuritySet::new(vec![Arc::new(security)]));
    Secured { tb, _dir: dir }
}

/// The ACL fixture with its users, anonymous clients allowed (they get the rules before any `user`).
fn acl_broker() -> Secured {
    secured(true, Some(USERS), Some(ACL))
}

/// Sends CONNECT with these credentials and returns the peer and the CONNACK.
async fn login(
    s: &Secured,
    client_id: &str,
    version: ProtocolVersion,
    username: Option<&str>,
    password: Option<&str>,
) -> (Peer, ConnAck) {
    let mut c = connect(client_id, version);
    c.username = username.map(str::to_string);
    c.password = password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
    Peer::connect_with(s.tb.addr, c).await
}

/// Connects as `user` with the right password from [`USERS`] (or anonymously) and asserts success.
async fn user(s: &Secured, client_id: &str, version: ProtocolVersion, user: Option<&str>) -> Peer {
    let password = user.map(|u| USERS.iter().find(|(name, _)| *name == u).map_or("", |(_, p)| *p));
    let (peer, ack) = login(s, client_id, version, user, password).await;
    assert_eq!(ack.code, 0, "CONNACK for {user:?}: {ack:?}");
    peer
}

/// Asserts a refused CONNACK with `code`, then that the broker closes the connection.
async fn assert_refused(mut peer: Peer, ack: ConnAck, code: u8, what: &str) {
    assert_eq!(ack.code, code, "{what}: {ack:?}");
    peer.expect_closed().await;
}

/// Publishes at QoS 1 and returns the PUBACK reason (5.0; always success in 3.1.1). 0x10 No matching
/// subscribers counts as success: the message was accepted.
async fn publish_qos1(peer: &mut Peer, topic: &str, payload: &[u8], retain: bool) -> u8 {
    let packet_id = PacketId::new(7);
    peer.send(&Packet::Publish(publish(topic, payload, QoS::AtLeastOnce, retain, packet_id))).await;
    match peer.recv().await {
        Packet::PubAck(ack) if ack.reason == reason::NO_MATCHING_SUBSCRIBERS => reason::SUCCESS,
        Packet::PubAck(ack) => ack.reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// Topics received until (and including) the one on `marker`.
async fn topics_until(peer: &mut Peer, marker: &str) -> Vec<String> {
    let mut topics = Vec::new();
    loop {
        let p = peer.recv_publish().await;
        let done = p.topic == marker;
        topics.push(p.topic);
        if done {
            return topics;
        }
    }
}

// ---------------------------------------------------------------- CONNECT

#[tokio::test]
async fn an_anonymous_client_is_refused_with_5_in_3_1_1_and_0x87_in_5_when_allow_anonymous_is_false() {
    let s = secured(false, Some(USERS), None);
    let (peer, ack) = login(&s, "anon4", V4, None, None).await;
    assert_refused(peer, ack, V4_NOT_AUTHORIZED, "anonymous 3.1.1").await;
    let (peer, ack) = login(&s, "anon5", V5, None, None).await;
    assert_refused(peer, ack, reason::NOT_AUTHORIZED, "anonymous 5.0").await;
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_5_in_3_1_1_and_0x86_in_5() {
    let s = secured(false, Some(USERS), None);
    let (peer, ack) = login(&s, "wrong4", V4, Some("alice"), Some("not-alice-pw")).await;
    assert_refused(peer, ack, V4_NOT_AUTHORIZED, "wrong password 3.1.1").await;
    let (peer, ack) = login(&s, "wrong5", V5, Some("alice"), Some("not-alice-pw")).await;
    assert_refused(peer, ack, reason::BAD_USER_NAME_OR_PASSWORD, "wrong password 5.0").await;
}

#[tokio::test]
async fn a_wrong_password_is_refused_even_when_anonymous_clients_are_allowed() {
    let s = secured(true, Some(USERS), None);
    let (peer, ack) = login(&s, "wrong5", V5, Some("alice"), Some("nope")).await;
    assert_refused(peer, ack, reason::BAD_USER_NAME_OR_PASSWORD, "wrong password, anonymous on").await;
    user(&s, "anon", V5, None).await.disconnect().await;
}

#[tokio::test]
async fn an_unknown_user_is_refused_like_a_wrong_password() {
    let s = secured(false, Some(USERS), None);
    let (peer, ack) = login(&s, "who4", V4, Some("mallory"), Some("alice-pw")).await;
    assert_refused(peer, ack, V4_NOT_AUTHORIZED, "unknown user 3.1.1").await;
    let (peer, ack) = login(&s, "who5", V5, Some("mallory"), Some("alice-pw")).await;
    assert_refused(peer, ack, reason::BAD_USER_NAME_OR_PASSWORD, "unknown user 5.0").await;
}

#[tokio::test]
async fn a_username_without_a_password_is_refused() {
    let s = secured(false, Some(USERS), None);
    let (peer, ack) = login(&s, "nopw4", V4, Some("alice"), None).await;
    assert_refused(peer, ack, V4_NOT_AUTHORIZED, "missing password 3.1.1").await;
    let (peer, ack) = login(&s, "nopw5", V5, Some("alice"), None).await;
    assert_refused(peer, ack, reason::BAD_USER_NAME_OR_PASSWORD, "missing password 5.0").await;
}

#[tokio::test]
async fn the_right_password_is_accepted_in_3_1_1_and_5() {
    let s = secured(false, Some(USERS), None);
    for (id, version) in [("ok4", V4), ("ok5", V5)] {
        let mut peer = user(&s, id, version, Some("alice")).await;
        assert_eq!(peer.subscribe("a/b", QoS::AtLeastOnce).await, vec![1], "{version:?} works after CONNECT");
        peer.disconnect().await;
    }
}

#[tokio::test]
async fn an_empty_password_file_with_allow_anonymous_false_refuses_everyone() {
    let s = secured(false, Some(&[]), None);
    let (peer, ack) = login(&s, "anon", V5, None, None).await;
    assert_refused(peer, ack, reason::NOT_AUTHORIZED, "anonymous").await;
    let (peer, ack) = login(&s, "alice", V5, Some("alice"), Some("alice-pw")).await;
    assert_refused(peer, ack, reason::BAD_USER_NAME_OR_PASSWORD, "any user").await;
    let (peer, ack) = login(&s, "alice4", V4, Some("alice"), Some("")).await;
    assert_refused(peer, ack, V4_NOT_AUTHORIZED, "empty password").await;
}

/// An empty password never matches, even an entry whose hash is of the empty string: Mosquitto reads a
/// zero-length password as none (`packet__read_binary`), which its password check refuses.
#[tokio::test]
async fn an_empty_password_is_refused_even_when_the_hash_is_of_the_empty_string() {
    let s = secured(true, Some(&[("blank", "")]), None);
    let (peer, ack) = login(&s, "blank4", V4, Some("blank"), Some("")).await;
    assert_refused(peer, ack, V4_NOT_AUTHORIZED, "empty password 3.1.1").await;
    let (peer, ack) = login(&s, "blank5", V5, Some("blank"), Some("")).await;
    assert_refused(peer, ack, reason::BAD_USER_NAME_OR_PASSWORD, "empty password 5.0").await;
}

// ---------------------------------------------------------------- ACL: publish and subscribe

#[tokio::test]
async fn a_publish_to_a_forbidden_topic_gets_puback_0x87_in_5_and_is_not_delivered() {
    let s = acl_broker();
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    assert_eq!(admin.subscribe("#", QoS::AtMostOnce).await, vec![0]);
    let mut alice = user(&s, "alice", V5, Some("alice")).await;
    assert_eq!(publish_qos1(&mut alice, "admin/x", b"forbidden", false).await, reason::NOT_AUTHORIZED);
    assert_eq!(publish_qos1(&mut alice, "alice/secret/x", b"denied", false).await, reason::NOT_AUTHORIZED);
    assert_eq!(publish_qos1(&mut alice, "alice/x", b"allowed", false).await, reason::SUCCESS);
    assert_eq!(topics_until(&mut admin, "alice/x").await, vec!["alice/x"]);

    // 3.1.1 has no reason in PUBACK: the flow completes and the message is dropped.
    let mut alice4 = user(&s, "alice4", V4, Some("alice")).await;
    assert_eq!(publish_qos1(&mut alice4, "admin/y", b"forbidden", false).await, reason::SUCCESS);
    assert_eq!(publish_qos1(&mut alice4, "alice/y", b"allowed", false).await, reason::SUCCESS);
    assert_eq!(topics_until(&mut admin, "alice/y").await, vec!["alice/y"]);
}

#[tokio::test]
async fn anonymous_clients_get_the_rules_before_any_user_line() {
    let s = acl_broker();
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    let mut anon = user(&s, "anon", V5, None).await;
    assert_eq!(anon.subscribe("public/#", QoS::AtMostOnce).await, vec![0]);
    assert_eq!(anon.subscribe("alice/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED]);
    assert_eq!(publish_qos1(&mut anon, "public/x", b"read only", false).await, reason::NOT_AUTHORIZED);
    assert_eq!(publish_qos1(&mut admin, "public/news", b"hello", false).await, reason::SUCCESS);
    assert_eq!(topics_until(&mut anon, "public/news").await, vec!["public/news"]);
}

#[tokio::test]
async fn a_subscribe_to_a_forbidden_filter_gets_0x87_in_5_and_0x80_in_3_1_1() {
    let s = acl_broker();
    let mut alice5 = user(&s, "alice5", V5, Some("alice")).await;
    let mut alice4 = user(&s, "alice4", V4, Some("alice")).await;
    for filter in ["admin/#", "alice/secret/#", "alice/secret/x", "$SYS/#", "rooms/+/humidity"] {
        assert_eq!(alice5.subscribe(filter, QoS::AtLeastOnce).await, vec![reason::NOT_AUTHORIZED], "5.0 {filter}");
        assert_eq!(alice4.subscribe(filter, QoS::AtLeastOnce).await, vec![V4_SUBACK_FAILURE], "3.1.1 {filter}");
    }
    for filter in ["alice/#", "rooms/kitchen/temp", "rooms/+/temp", "#", "+/secret"] {
        assert_eq!(alice5.subscribe(filter, QoS::AtLeastOnce).await, vec![1], "5.0 {filter}");
        assert_eq!(alice4.subscribe(filter, QoS::AtLeastOnce).await, vec![1], "3.1.1 {filter}");
    }
}

#[tokio::test]
async fn a_refused_filter_in_a_subscribe_does_not_refuse_the_others() {
    let s = acl_broker();
    let mut alice = user(&s, "alice", V5, Some("alice")).await;
    let options = mqttd_proto::SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
    let filters = vec![("admin/#".to_string(), options), ("alice/#".to_string(), options)];
    let codes = alice.subscribe_with(filters, Default::default()).await;
    assert_eq!(codes, vec![reason::NOT_AUTHORIZED, 1]);
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    assert_eq!(publish_qos1(&mut admin, "admin/x", b"no", false).await, reason::SUCCESS);
    assert_eq!(publish_qos1(&mut admin, "alice/x", b"yes", false).await, reason::SUCCESS);
    assert_eq!(topics_until(&mut alice, "alice/x").await, vec!["alice/x"]);
}

// ---------------------------------------------------------------- ACL: bypass attempts

#[tokio::test]
async fn a_hash_subscription_receives_the_allowed_topics_and_nothing_forbidden() {
    let s = acl_broker();
    let mut alice = user(&s, "alice", V5, Some("alice")).await;
    assert_eq!(alice.subscribe("#", QoS::AtMostOnce).await, vec![0], "# is granted, then filtered");
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    for topic in ["admin/x", "alice/secret", "alice/secret/x", "rooms/a/humidity", "other", "public/x", "alice/x"] {
        assert_eq!(publish_qos1(&mut admin, topic, b"m", false).await, reason::SUCCESS, "{topic}");
    }
    assert_eq!(publish_qos1(&mut admin, "rooms/a/temp", b"21", false).await, reason::SUCCESS);
    assert_eq!(topics_until(&mut alice, "rooms/a/temp").await, vec!["public/x", "alice/x", "rooms/a/temp"]);
}

#[tokio::test]
async fn a_plus_secret_subscription_receives_no_forbidden_secret() {
    let s = acl_broker();
    let mut alice = user(&s, "alice", V4, Some("alice")).await;
    assert_eq!(alice.subscribe("+/secret", QoS::AtLeastOnce).await, vec![1], "public/secret is readable");
    assert_eq!(alice.subscribe("+/+/secret", QoS::AtLeastOnce).await, vec![1]);
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    for topic in ["admin/secret", "alice/secret", "other/secret", "rooms/a/secret"] {
        assert_eq!(publish_qos1(&mut admin, topic, b"classified", false).await, reason::SUCCESS, "{topic}");
    }
    assert_eq!(publish_qos1(&mut admin, "public/secret", b"not really", false).await, reason::SUCCESS);
    let p = alice.recv_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("public/secret", &b"not really"[..]));
}

#[tokio::test]
async fn retained_messages_on_forbidden_topics_are_not_sent_on_subscribe() {
    let s = acl_broker();
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    for topic in ["admin/r", "alice/secret/r", "rooms/a/humidity", "public/r", "alice/r"] {
        assert_eq!(publish_qos1(&mut admin, topic, b"kept", true).await, reason::SUCCESS, "{topic}");
    }
    for (version, id) in [(V5, "alice5"), (V4, "alice4")] {
        let mut alice = user(&s, id, version, Some("alice")).await;
        let want = if version.is_v5() { reason::NOT_AUTHORIZED } else { V4_SUBACK_FAILURE };
        assert_eq!(alice.subscribe("admin/r", QoS::AtMostOnce).await, vec![want], "exact forbidden topic");
        assert_eq!(alice.subscribe("alice/secret/#", QoS::AtMostOnce).await, vec![want]);
        let options = mqttd_proto::SubscriptionOptions::default();
        let both = vec![("#".to_string(), options), ("+/r".to_string(), options)];
        assert_eq!(alice.subscribe_with(both, Default::default()).await, vec![0, 0]);
        // Retained messages go out right after the SUBACK, so they come before this marker.
        let marker = format!("alice/marker/{id}");
        assert_eq!(publish_qos1(&mut admin, &marker, b"m", false).await, reason::SUCCESS);
        let mut got = topics_until(&mut alice, &marker).await;
        got.sort();
        assert_eq!(got, vec![marker.as_str(), "alice/r", "alice/r", "public/r", "public/r"], "{version:?}");
    }
}

#[tokio::test]
async fn a_will_to_a_forbidden_topic_is_dropped_and_an_allowed_one_published() {
    let s = acl_broker();
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    assert_eq!(admin.subscribe("#", QoS::AtMostOnce).await, vec![0]);
    for (client_id, topic) in [("w-denied", "admin/will"), ("w-deny-rule", "alice/secret/will"), ("w-ok", "alice/will")]
    {
        let mut c = connect(client_id, V5);
        c.username = Some("alice".into());
        c.password = Some("alice-pw".into());
        c.will = Some(will(topic, b"gone", QoS::AtLeastOnce, false));
        let (peer, ack) = Peer::connect_with(s.tb.addr, c).await;
        assert_eq!(ack.code, 0);
        peer.drop_abruptly();
        wait_for_session_end(&s, client_id).await;
    }
    // The will of w-ok is published before its session ends, after the two dropped ones.
    let mut marker = user(&s, "marker", V5, Some("admin")).await;
    assert_eq!(publish_qos1(&mut marker, "public/after", b"m", false).await, reason::SUCCESS);
    assert_eq!(topics_until(&mut admin, "public/after").await, vec!["alice/will", "public/after"]);
}

/// Waits (bounded) until the broker has no session for `client_id` (a clean session ends after its will).
async fn wait_for_session_end(s: &Secured, client_id: &str) {
    let start = std::time::Instant::now();
    while s.tb.broker.session(client_id).is_some() {
        assert!(start.elapsed() < TIMEOUT, "session {client_id} did not end");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn sys_reads_follow_the_acl() {
    let s = acl_broker();
    mqttd_broker::sys::publish_all(&s.tb.broker);
    // alice may read `#`-style wildcards but has no `$SYS` rule; `#` does not reach `$SYS` topics.
    let mut alice = user(&s, "alice", V5, Some("alice")).await;
    assert_eq!(alice.subscribe("$SYS/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED]);
    assert_eq!(alice.subscribe("$SYS/broker/version", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED]);
    assert_eq!(alice.subscribe("#", QoS::AtMostOnce).await, vec![0]);
    assert_eq!(alice.subscribe("+/broker/#", QoS::AtMostOnce).await, vec![0]);
    let mut anon = user(&s, "anon", V4, None).await;
    assert_eq!(anon.subscribe("$SYS/#", QoS::AtMostOnce).await, vec![V4_SUBACK_FAILURE]);
    // watcher may read `$SYS/broker/clients/#` only.
    let mut watcher = user(&s, "watcher", V5, Some("watcher")).await;
    let options = mqttd_proto::SubscriptionOptions::default();
    let both = vec![("$SYS/#".to_string(), options), ("public/#".to_string(), options)];
    assert_eq!(watcher.subscribe_with(both, Default::default()).await, vec![0, 0]);
    // admin may read all of `$SYS`.
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    assert_eq!(admin.subscribe("$SYS/broker/version", QoS::AtMostOnce).await, vec![0]);
    assert!(admin.recv_publish().await.topic == "$SYS/broker/version", "admin reads $SYS");

    mqttd_broker::sys::publish_all(&s.tb.broker);
    let mut marker = user(&s, "marker", V5, Some("admin")).await;
    assert_eq!(publish_qos1(&mut marker, "public/marker", b"m", false).await, reason::SUCCESS);
    let got = topics_until(&mut watcher, "public/marker").await;
    assert!(got.len() > 1, "watcher gets the client counts: {got:?}");
    assert!(
        got.iter().all(|t| t.starts_with("$SYS/broker/clients/") || t == "public/marker"),
        "watcher reads only $SYS/broker/clients/#: {got:?}"
    );
    assert_eq!(topics_until(&mut alice, "public/marker").await, vec!["public/marker"], "no $SYS for alice");
    // A client may not write `$SYS` without a write rule.
    assert_eq!(publish_qos1(&mut watcher, "$SYS/broker/clients/connected", b"0", false).await, reason::NOT_AUTHORIZED);
}

// ---------------------------------------------------------------- patterns

#[tokio::test]
async fn a_client_id_pattern_grants_the_clients_own_subtree_only() {
    let s = acl_broker();
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    assert_eq!(admin.subscribe("clients/#", QoS::AtMostOnce).await, vec![0]);
    // Anonymous and named clients alike get `%c` patterns.
    for (id, who) in [("dev-1", None), ("alice-phone", Some("alice"))] {
        let mut c = user(&s, id, V5, who).await;
        let own = format!("clients/{id}/status");
        assert_eq!(publish_qos1(&mut c, &own, b"up", false).await, reason::SUCCESS, "{id} writes its own");
        assert_eq!(publish_qos1(&mut c, "clients/dev-2/status", b"x", false).await, reason::NOT_AUTHORIZED);
        assert_eq!(c.subscribe(&format!("clients/{id}/#"), QoS::AtMostOnce).await, vec![0]);
        assert_eq!(c.subscribe("clients/dev-2/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED]);
        assert_eq!(topics_until(&mut admin, &own).await, vec![own.clone()]);
    }
}

#[tokio::test]
async fn a_username_pattern_grants_the_users_own_subtree_only() {
    let s = acl_broker();
    let mut alice = user(&s, "a1", V5, Some("alice")).await;
    let mut anon = user(&s, "a2", V5, None).await;
    assert_eq!(alice.subscribe("users/alice/#", QoS::AtMostOnce).await, vec![0]);
    assert_eq!(alice.subscribe("users/admin/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED]);
    assert_eq!(anon.subscribe("users/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED], "no %u without a name");
    assert_eq!(publish_qos1(&mut alice, "users/alice/inbox", b"x", false).await, reason::NOT_AUTHORIZED, "read only");
    assert_eq!(alice.subscribe("users/+/inbox", QoS::AtMostOnce).await, vec![0]);
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    assert_eq!(publish_qos1(&mut admin, "users/admin/inbox", b"no", false).await, reason::SUCCESS);
    assert_eq!(publish_qos1(&mut admin, "users/alice/inbox", b"yes", false).await, reason::SUCCESS);
    assert_eq!(topics_until(&mut alice, "users/alice/inbox").await, vec!["users/alice/inbox"]);
}

#[tokio::test]
async fn a_client_id_with_plus_or_hash_never_widens_a_pattern() {
    let s = acl_broker();
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    for id in ["+", "#", "a/+", "x#", "+/+"] {
        let mut c = user(&s, id, V5, None).await;
        assert_eq!(publish_qos1(&mut c, "clients/dev-2/status", b"x", false).await, reason::NOT_AUTHORIZED, "{id}");
        assert_eq!(publish_qos1(&mut c, "clients/a/b/status", b"x", false).await, reason::NOT_AUTHORIZED, "{id}");
        assert_eq!(c.subscribe("clients/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED], "{id}");
        assert_eq!(c.subscribe("clients/+/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED], "{id}");
        assert_eq!(c.subscribe("#", QoS::AtMostOnce).await, vec![0], "anonymous may read public/#");
        assert_eq!(publish_qos1(&mut admin, "clients/dev-2/status", b"private", false).await, reason::SUCCESS);
        assert_eq!(publish_qos1(&mut admin, "public/marker", b"m", false).await, reason::SUCCESS);
        assert_eq!(topics_until(&mut c, "public/marker").await, vec!["public/marker"], "{id} reads nothing private");
        c.disconnect().await;
    }
}

#[tokio::test]
async fn a_username_with_plus_or_hash_never_widens_a_pattern() {
    // Without a password file a username is taken as given (as in Mosquitto) and still names the ACL
    // section and `%u`: the place where a chosen username could try to widen a pattern.
    let s = secured(true, None, Some(ACL));
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    for (i, name) in ["+", "#", "alice/+", "+/+"].into_iter().enumerate() {
        let id = format!("c{i}");
        let mut c = user(&s, &id, V5, Some(name)).await;
        assert_eq!(c.subscribe("users/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED], "{name}");
        assert_eq!(c.subscribe("users/alice/#", QoS::AtMostOnce).await, vec![reason::NOT_AUTHORIZED], "{name}");
        // `%c` still applies to its own (wildcard-free) client id, so `#` is granted and filtered.
        assert_eq!(c.subscribe("#", QoS::AtMostOnce).await, vec![0], "{name}");
        assert_eq!(publish_qos1(&mut admin, "users/alice/inbox", b"private", false).await, reason::SUCCESS);
        let own = format!("clients/{id}/x");
        assert_eq!(publish_qos1(&mut admin, &own, b"own", false).await, reason::SUCCESS);
        assert_eq!(topics_until(&mut c, &own).await, vec![own.clone()], "{name}");
        c.disconnect().await;
    }
}

#[tokio::test]
async fn a_reloaded_acl_applies_to_connections_already_open() {
    let s = acl_broker();
    let mut alice = user(&s, "alice", V5, Some("alice")).await;
    assert_eq!(alice.subscribe("#", QoS::AtMostOnce).await, vec![0]);
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    assert_eq!(publish_qos1(&mut admin, "news/a", b"before", false).await, reason::SUCCESS);
    assert_eq!(publish_qos1(&mut admin, "alice/a", b"m", false).await, reason::SUCCESS);
    assert_eq!(topics_until(&mut alice, "alice/a").await, vec!["alice/a"]);

    let dir = tempfile::tempdir().expect("temporary directory");
    let acl = dir.path().join("acl");
    let widened = ACL.replace("topic read rooms/+/temp\n", "topic read rooms/+/temp\ntopic read news/#\n");
    std::fs::write(&acl, widened).expect("writes the ACL");
    let current = s.tb.broker.security().get(0);
    let fresh = Security::open(true, current.password_file.as_deref(), Some(&acl)).expect("parses");
    s.tb.broker.set_security(SecuritySet::new(vec![Arc::new(fresh)]));

    assert_eq!(publish_qos1(&mut admin, "news/b", b"after", false).await, reason::SUCCESS);
    assert_eq!(topics_until(&mut alice, "news/b").await, vec!["news/b"]);
}

/// An ACL reload reaches messages already queued: read access is checked again when a message leaves
/// the outbox, so one queued before the reload revoked it is not delivered (Mosquitto likewise drops
/// queued messages the ACL no longer allows when a client reconnects, `connection_check_acl`).
#[tokio::test]
async fn a_reloaded_acl_applies_to_messages_already_queued() {
    let s = acl_broker();
    let mut c = connect("alice", V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    c.username = Some("alice".into());
    c.password = Some(bytes::Bytes::from_static(b"alice-pw"));
    let (mut alice, ack) = Peer::connect_with(s.tb.addr, c.clone()).await;
    assert_eq!(ack.code, 0);
    assert_eq!(alice.subscribe("#", QoS::AtLeastOnce).await, vec![1]);
    alice.disconnect().await;
    let mut admin = user(&s, "admin", V5, Some("admin")).await;
    assert_eq!(publish_qos1(&mut admin, "public/queued", b"before", false).await, reason::SUCCESS);

    let dir = tempfile::tempdir().expect("temporary directory");
    let acl = dir.path().join("acl");
    let narrowed = ACL.replace("user alice\ntopic readwrite public/#\n", "user alice\n");
    assert_ne!(narrowed, ACL);
    std::fs::write(&acl, narrowed).expect("writes the ACL");
    let current = s.tb.broker.security().get(0);
    let fresh = Security::open(true, current.password_file.as_deref(), Some(&acl)).expect("parses");
    s.tb.broker.set_security(SecuritySet::new(vec![Arc::new(fresh)]));

    let (mut alice, ack) = Peer::connect_with(s.tb.addr, c).await;
    assert!(ack.session_present);
    assert_eq!(publish_qos1(&mut admin, "alice/marker", b"after", false).await, reason::SUCCESS);
    assert_eq!(topics_until(&mut alice, "alice/marker").await, vec!["alice/marker"]);
}
