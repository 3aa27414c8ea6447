//! The Mosquitto import on bytes: a file written by Debian's Mosquitto 2.0.11, and chunks built here for
//! what that file does not show (messages in flight, options, damage).

use super::chunks::{CFG, CLIENT, CLIENT_MSG, MSG_STORE, SUB};
use super::*;
use std::collections::BTreeMap;

/// Written by `mosquitto` 2.0.11 (Debian) at SIGTERM, listening on port 18839: `keeper` (MQTT 5, Session
/// Expiry Interval 3600, subscribed to `q/#`, `other/+`, `third` at QoS 1 with Subscription Identifier 7),
/// `old` (3.1.1, clean session 0, `q/#` at QoS 2), three QoS 1 messages `m1`..`m3` to `q/x` with a user
/// property `k`=`v` queued for both, `kept/1` retained (QoS 1), `kept/2` retained (QoS 2, content type
/// `text/plain`, Message Expiry Interval 86400).
const DEBIAN_2_0_11: &[u8] = include_bytes!("testdata/mosquitto-2.0.11.db");
/// When that file was written (seconds since the epoch).
const WRITTEN_AT: u64 = 1_796_561_519;

fn parse_at(bytes: &[u8], seconds: u64) -> Result<(Replayed, Summary), Bad> {
    parse(bytes, seconds * 1000, &[1883, 18839])
}

/// A queued message as the tests look at it: payload, QoS, subscription identifiers, packet id if sent.
type Entry = (String, QoS, Vec<u32>, Option<(u16, bool)>);

fn queue_of(replayed: &Replayed, client: &str) -> Vec<Entry> {
    replayed.queue(client).map_or_else(Vec::new, |q| {
        q.values()
            .map(|e| {
                let m = replayed.messages[&e.id].decode().expect("a message");
                (String::from_utf8_lossy(&m.payload).into_owned(), e.qos, e.subscription_ids.clone(), e.sent)
            })
            .collect()
    })
}

/// A session of the registry the import built, in the terms Mosquitto's file has.
struct Session {
    expiry: u32,
    listener: u16,
    username: Option<String>,
    disconnected_at_ms: u64,
    subscriptions: Vec<(String, mqttd_proto::SubscriptionOptions, Option<u32>)>,
}

fn session(replayed: &Replayed, client_id: &str) -> Session {
    let e = replayed.sessions.get(client_id).expect("imported");
    Session {
        expiry: e.expiry.as_v5(),
        listener: e.identity.listener,
        username: e.identity.username.as_deref().map(str::to_owned),
        disconnected_at_ms: e.disconnected_at.map_or(0, mqttd_core::Time::as_millis),
        subscriptions: e.subscriptions.iter().map(|(f, s)| (f.clone(), s.options, s.identifier)).collect(),
    }
}

#[test]
fn a_file_written_by_mosquitto_2_0_is_imported() {
    let (replayed, summary) = parse_at(DEBIAN_2_0_11, WRITTEN_AT + 60).expect("parses");
    assert_eq!(
        summary,
        Summary { retained: 2, sessions: 2, subscriptions: 4, queued: 6, ..Summary::default() },
        "what the log line reports"
    );
    let kept1 = &replayed.retained["kept/1"].decode().expect("a message");
    assert_eq!(
        (&kept1.payload[..], kept1.qos, kept1.retain, kept1.expires_at_ms),
        (&b"r1"[..], QoS::AtLeastOnce, true, 0)
    );
    let kept2 = &replayed.retained["kept/2"].decode().expect("a message");
    assert_eq!((&kept2.payload[..], kept2.qos), (&b"r2"[..], QoS::ExactlyOnce));
    assert_eq!(kept2.properties.content_type.as_deref(), Some("text/plain"));
    let left = kept2.expires_at_ms / 1000 - WRITTEN_AT;
    assert!((86_000..=86_400).contains(&left), "expiry kept as wall-clock time: {left} s after writing");

    let keeper = session(&replayed, "keeper");
    assert_eq!((keeper.expiry, keeper.listener, keeper.username.as_deref()), (3600, 1, None));
    let since = WRITTEN_AT * 1000 - keeper.disconnected_at_ms;
    assert!(since < 5_000, "disconnected when Mosquitto saw it go, {since} ms before the file was written");
    let mut filters: Vec<_> = keeper.subscriptions.iter().map(|(f, o, id)| (f.as_str(), o.qos, *id)).collect();
    filters.sort();
    let expected = [
        ("other/+", QoS::AtLeastOnce, Some(7)),
        ("q/#", QoS::AtLeastOnce, Some(7)),
        ("third", QoS::AtLeastOnce, Some(7)),
    ];
    assert_eq!(filters, expected);
    let old = session(&replayed, "old");
    assert_eq!(old.expiry, u32::MAX, "a 3.1.1 session with clean session 0 never expires");
    assert_eq!(
        old.subscriptions.iter().map(|(f, o, _)| (f.as_str(), o.qos)).collect::<Vec<_>>(),
        [("q/#", QoS::ExactlyOnce)]
    );

    let one = |p: &str| (p.to_string(), QoS::AtLeastOnce, vec![7], None);
    assert_eq!(queue_of(&replayed, "keeper"), vec![one("m1"), one("m2"), one("m3")], "in order");
    let plain = |p: &str| (p.to_string(), QoS::AtLeastOnce, vec![], None);
    assert_eq!(queue_of(&replayed, "old"), vec![plain("m1"), plain("m2"), plain("m3")]);
    assert_eq!(replayed.messages.len(), 3, "a message queued for two sessions is stored once");
    let m = replayed.messages.values().next().and_then(|h| h.decode()).expect("a message");
    assert_eq!((m.topic.as_str(), &m.properties.user_properties[..]), ("q/x", &[("k".into(), "v".into())][..]));
}

#[test]
fn what_expired_since_mosquitto_stopped_is_left_out() {
    // Two days later: keeper's hour and kept/2's day are over; old never expires.
    let (replayed, summary) = parse_at(DEBIAN_2_0_11, WRITTEN_AT + 2 * 86_400).expect("parses");
    assert_eq!(replayed.sessions.iter().map(|(c, _)| &**c).collect::<Vec<_>>(), ["old"]);
    assert_eq!(replayed.retained.keys().collect::<Vec<_>>(), ["kept/1"]);
    assert_eq!(queue_of(&replayed, "old").len(), 3);
    assert_eq!((summary.sessions, summary.retained, summary.expired), (1, 1, 2));
}

/// Builds a format 6 database chunk by chunk, as Mosquitto 2.0 lays it out.
#[derive(Default)]
struct Db(Vec<u8>);

impl Db {
    fn new() -> Db {
        let mut out = MAGIC.to_vec();
        out.extend([0; 4]);
        out.extend(6u32.to_be_bytes());
        Db(out).chunk(CFG, &[&9u64.to_le_bytes(), &[1, 8, 0, 0, 0, 0, 0, 0]])
    }

    fn chunk(mut self, kind: u32, parts: &[&[u8]]) -> Db {
        let body: Vec<u8> = parts.concat();
        self.0.extend(kind.to_be_bytes());
        self.0.extend((body.len() as u32).to_be_bytes());
        self.0.extend(body);
        self
    }

    fn message(self, id: u64, topic: &str, payload: &[u8], qos: u8, properties: &[u8]) -> Db {
        let fixed = [
            &id.to_le_bytes()[..],
            &0i64.to_le_bytes(),
            &(payload.len() as u32).to_be_bytes(),
            &[0, 0, 0, 0, 0, 0],
            &(topic.len() as u16).to_be_bytes(),
            &[0, 0, qos, 0],
        ]
        .concat();
        self.chunk(MSG_STORE, &[&fixed, topic.as_bytes(), payload, properties])
    }

    fn client(self, id: &str, interval: u32, username: &str) -> Db {
        let fixed = [
            &0i64.to_le_bytes()[..],
            &interval.to_be_bytes(),
            &[0, 0],
            &(id.len() as u16).to_be_bytes(),
            &1883u16.to_be_bytes(),
            &(username.len() as u16).to_be_bytes(),
            &[0; 4],
        ]
        .concat();
        self.chunk(CLIENT, &[&fixed, id.as_bytes(), username.as_bytes()])
    }

    #[allow(clippy::too_many_arguments)]
    fn client_msg(self, client: &str, store: u64, mid: u16, qos: u8, state: u8, dup: bool, out: bool) -> Db {
        let fixed = [
            &store.to_le_bytes()[..],
            &mid.to_be_bytes(),
            &(client.len() as u16).to_be_bytes(),
            &[qos, state, u8::from(dup), u8::from(out)],
        ]
        .concat();
        self.chunk(CLIENT_MSG, &[&fixed, client.as_bytes()])
    }

    fn sub(self, client: &str, filter: &str, qos: u8, options: u8, identifier: u32) -> Db {
        let fixed = [
            &identifier.to_be_bytes()[..],
            &(client.len() as u16).to_be_bytes(),
            &(filter.len() as u16).to_be_bytes(),
            &[qos, options, 0, 0],
        ]
        .concat();
        self.chunk(SUB, &[&fixed, client.as_bytes(), filter.as_bytes()])
    }
}

#[test]
fn messages_in_flight_keep_their_packet_ids_and_subscriptions_their_options() {
    let db = Db::new()
        .message(1, "a/1", b"queued", 1, &[])
        .message(2, "a/2", b"awaiting puback", 1, &[])
        .message(3, "a/3", b"awaiting pubcomp", 2, &[])
        .message(4, "a/4", b"to be resent", 2, &[])
        .message(5, "a/5", b"incoming", 2, &[])
        .client("c", 60, "alice")
        .client_msg("c", 5, 9, 2, 7, false, false)
        .client_msg("c", 2, 11, 1, 3, false, true)
        .client_msg("c", 3, 12, 2, 9, false, true)
        .client_msg("c", 4, 13, 2, 4, true, true)
        .client_msg("c", 1, 14, 1, 11, false, true)
        .client_msg("gone", 1, 15, 1, 11, false, true)
        .sub("c", "a/#", 2, 0x04 | 0x08, 0)
        .sub("c", "b", 0, 0, 268_435_455)
        .sub("gone", "a/#", 1, 0, 0)
        .chunk(77, &[b"from a later Mosquitto"]);
    let (replayed, summary) = parse(&db.0, 0, &[]).expect("parses");
    assert_eq!(
        summary,
        Summary { sessions: 1, subscriptions: 2, queued: 4, incoming: 1, ignored: 3, ..Summary::default() }
    );
    let c = session(&replayed, "c");
    assert_eq!((c.username.as_deref(), c.expiry, c.disconnected_at_ms, c.listener), (Some("alice"), 60, 0, 0));
    let (filter, options, id) = &c.subscriptions[0];
    assert_eq!(
        (filter.as_str(), options.qos, options.no_local, options.retain_as_published, *id),
        ("a/#", QoS::ExactlyOnce, true, true, None)
    );
    assert_eq!(c.subscriptions[1].2, Some(268_435_455));
    let sent: Vec<_> = queue_of(&replayed, "c").into_iter().map(|(p, q, _, s)| (p, q, s)).collect();
    assert_eq!(
        sent,
        vec![
            ("awaiting puback".into(), QoS::AtLeastOnce, Some((11, false))),
            ("awaiting pubcomp".into(), QoS::ExactlyOnce, Some((12, true))),
            ("to be resent".into(), QoS::ExactlyOnce, Some((13, false))),
            ("queued".into(), QoS::AtLeastOnce, None),
        ]
    );
}

#[test]
fn a_session_that_ends_with_its_connection_is_not_imported() {
    let db = Db::new().client("v5-clean", 0, "").sub("v5-clean", "x", 1, 0, 0);
    let (replayed, summary) = parse(&db.0, 0, &[]).expect("parses");
    assert!(replayed.sessions.is_empty());
    assert_eq!((summary.expired, summary.ignored), (1, 1));
}

#[test]
fn a_cut_or_damaged_file_is_refused_with_the_offset() {
    let db = Db::new().message(1, "t", b"payload", 1, &[]).client("c", 60, "");
    let message_at = MAGIC.len() + 8 + 8 + 16;
    let client_at = db.0.len() - (8 + 24 + 1);
    let header_end = MAGIC.len() + 8;
    for cut in MAGIC.len()..db.0.len() {
        let result = parse(&db.0[..cut], 0, &[]);
        if [header_end, message_at, client_at].contains(&cut) {
            assert!(result.is_ok(), "cut at a chunk boundary: the chunks before it");
        } else {
            let bad = result.expect_err("a cut inside a chunk is refused");
            assert!(bad.offset <= cut, "offset {} within the bytes given ({cut})", bad.offset);
        }
    }
    let mut bad_qos = db.0.clone();
    let qos_at = message_at + 8 + 30;
    bad_qos[qos_at] = 3;
    assert_eq!(parse(&bad_qos, 0, &[]).expect_err("QoS 3").offset, qos_at);
    let mut bad_props = Db::new().message(1, "t", b"p", 1, &[2, 0x26, 0]).0;
    let topic_at = bad_props.len() - 5;
    assert_eq!(parse(&bad_props, 0, &[]).expect_err("truncated property").offset, topic_at);
    bad_props[MAGIC.len() + 7] = 4;
    let bad = parse(&bad_props, 0, &[]).expect_err("format 4");
    assert_eq!(bad.offset, MAGIC.len() + 4);
    assert!(bad.why.contains("format 4"), "{}", bad.why);
}

#[test]
fn the_first_start_imports_and_leaves_mosquittos_file_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mosquitto = dir.path().join("mosquitto.db");
    std::fs::write(&mosquitto, DEBIAN_2_0_11).expect("writes");
    let mut config = Config { persistence: true, ..Config::default() };
    config.persistence_location = Some(dir.path().to_path_buf());
    let (store, replayed) = open(&config).expect("imports");
    store.close();
    assert!(replayed.sessions.get("old").is_some() && replayed.retained.contains_key("kept/1"));
    assert!(dir.path().join("mqttd.db").exists(), "mqttd's own log");
    assert_eq!(std::fs::read(&mosquitto).expect("still there"), DEBIAN_2_0_11, "untouched");
    // Not imported again once mqttd has its own log: a changed mosquitto.db is not read.
    std::fs::write(&mosquitto, [&MAGIC[..], b"garbage"].concat()).expect("writes");
    let (store, again) = open(&config).expect("mqttd's log");
    store.close();
    assert_eq!(again.queue("old").map(BTreeMap::len), Some(3));

    // `persistence_file mosquitto.db` (Mosquitto's own setting): imported, mqttd's log beside it.
    let other = tempfile::tempdir().expect("temp dir");
    std::fs::write(other.path().join("mosquitto.db"), DEBIAN_2_0_11).expect("writes");
    config.persistence_location = Some(other.path().to_path_buf());
    config.persistence_file = Some("mosquitto.db".into());
    let (store, replayed) = open(&config).expect("imports");
    store.close();
    assert_eq!(replayed.queue("old").map(BTreeMap::len), Some(3));
    assert!(other.path().join("mqttd.db").exists());
    assert_eq!(std::fs::read(other.path().join("mosquitto.db")).expect("there"), DEBIAN_2_0_11);
}

#[test]
fn a_damaged_mosquitto_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bytes = DEBIAN_2_0_11.to_vec();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(dir.path().join("mosquitto.db"), &bytes).expect("writes");
    let config = Config { persistence: true, persistence_location: Some(dir.path().into()), ..Config::default() };
    let error = open(&config).expect_err("refused").to_string();
    assert!(error.contains("mosquitto.db") && error.contains("at byte"), "{error}");
    assert!(!dir.path().join("mqttd.db").exists(), "nothing imported");
}
