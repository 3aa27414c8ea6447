//! The registry's rules without sockets or clocks: time is whatever the test says.

use std::time::Duration;

use bytes::Bytes;
use mqttd_proto::{Properties, QoS, SubscriptionOptions, Will};
use proptest::prelude::*;

use super::*;

fn t(ms: u64) -> Time {
    Time::from_millis(ms)
}

fn identity(client_id: &str) -> ClientIdentity {
    ClientIdentity { client_id: Arc::from(client_id), username: None, listener: 0 }
}

fn will(delay_s: u32) -> Will {
    let properties = Properties { will_delay_interval: Some(delay_s).filter(|&d| d > 0), ..Properties::default() };
    Will {
        topic: "will/t".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    }
}

fn attach(client_id: &str, connection: u64, clean_start: bool, expiry: Expiry, will: Option<Will>) -> Attach {
    Attach { identity: identity(client_id), connection, clean_start, expiry, will }
}

fn never() -> Expiry {
    Expiry::Never
}

fn secs(s: u64) -> Expiry {
    Expiry::After(Duration::from_secs(s))
}

/// The kinds of the events, in order, for compact assertions.
fn kinds(changes: &Changes) -> Vec<&'static str> {
    changes
        .events
        .iter()
        .map(|e| match e.event {
            Event::SessionOpened { .. } => "opened",
            Event::SessionResumed { .. } => "resumed",
            Event::SessionDisconnected { .. } => "disconnected",
            Event::Subscribed { .. } => "subscribed",
            Event::Unsubscribed { .. } => "unsubscribed",
            Event::WillFired { .. } => "will",
            Event::SessionEnded { .. } => "ended",
            Event::SessionSnapshot(_) => "snapshot",
        })
        .collect()
}

fn options() -> Subscription {
    Subscription { options: SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() }, identifier: Some(3) }
}

#[test]
fn a_new_client_id_opens_a_session_without_session_present() {
    let mut r = Registry::<()>::default();
    let (changes, attached) = r.attach(attach("c", 1, false, never(), None), t(0));
    assert_eq!(kinds(&changes), ["opened"]);
    assert_eq!(attached, Attached { present: false, kicked: None, cancelled_will: false });
    assert_eq!(r.owner("c"), 1);
}

#[test]
fn a_takeover_ends_the_attached_connection_and_resumes_its_session() {
    let mut r = Registry::<()>::default();
    r.attach(attach("c", 1, false, never(), Some(will(0))), t(0));
    r.subscribe("c", "a/#", options());
    // [MQTT-3.1.4-3]: the connection still attached is taken over; its will has no delay: it goes out.
    let (changes, attached) = r.attach(attach("c", 2, false, never(), None), t(5));
    assert_eq!(kinds(&changes), ["disconnected", "will", "resumed"]);
    assert_eq!(attached, Attached { present: true, kicked: Some(1), cancelled_will: false });
    assert_eq!(r.owner("c"), 2);
    assert!(r.get("c").is_some_and(|e| e.subscriptions.contains_key("a/#")));
    // The old connection ending later changes nothing: it no longer owns the session.
    let (changes, outcome) = r.detach("c", 1, t(6), true, None);
    assert!(changes.events.is_empty());
    assert_eq!(outcome, WillOutcome::HandedOver);
}

#[test]
fn a_delayed_will_of_a_connection_taken_over_is_not_sent_when_the_session_goes_on() {
    let mut r = Registry::<()>::default();
    r.attach(attach("c", 1, false, never(), Some(will(30))), t(0));
    let (changes, _) = r.attach(attach("c", 2, false, never(), None), t(5));
    // [MQTT-3.1.3-9]: the client is back within the delay.
    assert_eq!(kinds(&changes), ["disconnected", "resumed"]);
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn clean_start_ends_the_old_session_and_its_attached_connections_will_goes_out() {
    let mut r = Registry::<()>::default();
    r.attach(attach("c", 1, false, never(), Some(will(30))), t(0));
    r.subscribe("c", "a/#", options());
    let (changes, attached) = r.attach(attach("c", 2, true, never(), None), t(5));
    assert_eq!(kinds(&changes), ["disconnected", "will", "ended", "opened"]);
    assert!(!attached.present, "[MQTT-3.2.2-1] no Session Present after Clean Start");
    assert_eq!(changes.ended.len(), 1);
    assert!(changes.ended[0].subscriptions.contains_key("a/#"), "the broker removes what the old session had");
    assert!(r.get("c").is_some_and(|e| e.subscriptions.is_empty()));
}

#[test]
fn a_reconnect_within_the_will_delay_cancels_the_will() {
    let mut r = Registry::<()>::default();
    r.attach(attach("c", 1, false, never(), Some(will(10))), t(0));
    let (changes, outcome) = r.detach("c", 1, t(1_000), true, None);
    assert_eq!(kinds(&changes), ["disconnected"]);
    assert_eq!(outcome, WillOutcome::Delayed(Duration::from_secs(10)));
    assert_eq!(r.next_deadline(), Some(t(11_000)));
    assert!(r.tick(t(10_999)).events.is_empty());
    let (changes, attached) = r.attach(attach("c", 2, false, never(), None), t(6_000));
    assert_eq!(kinds(&changes), ["resumed"]);
    assert!(attached.present && attached.cancelled_will, "[MQTT-3.1.3-9]");
    assert!(r.tick(t(60_000)).events.is_empty(), "the will never fires");
}

#[test]
fn a_will_fires_once_its_delay_has_passed_and_never_again() {
    let mut r = Registry::<()>::default();
    r.attach(attach("c", 1, false, never(), Some(will(10))), t(0));
    r.detach("c", 1, t(1_000), true, None);
    let fired = r.tick(t(11_000));
    assert_eq!(kinds(&fired), ["will"]);
    assert!(r.tick(t(99_000)).events.is_empty());
    let (changes, attached) = r.attach(attach("c", 2, false, never(), None), t(12_000));
    assert_eq!(kinds(&changes), ["resumed"]);
    assert!(attached.present && !attached.cancelled_will);
}

#[test]
fn an_expiring_session_ends_with_its_pending_will_if_that_comes_first() {
    let mut r = Registry::<()>::default();
    r.attach(attach("c", 1, false, secs(30), Some(will(60))), t(0));
    r.subscribe("c", "x", options());
    let (_, outcome) = r.detach("c", 1, t(0), true, None);
    // The will waits for the delay or the end of the session, whichever comes first [MQTT-3.1.3-9].
    assert_eq!(outcome, WillOutcome::Delayed(Duration::from_secs(30)));
    assert!(r.tick(t(29_999)).events.is_empty());
    let ended = r.tick(t(30_000));
    assert_eq!(kinds(&ended), ["will", "ended"]);
    assert_eq!(ended.ended.len(), 1);
    assert!(r.get("c").is_none());
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn a_clean_session_ends_with_its_connection_and_is_never_resumed() {
    let mut r = Registry::<()>::default();
    r.attach(attach("c", 1, true, Expiry::Immediate, Some(will(30))), t(0));
    let (changes, outcome) = r.detach("c", 1, t(5), true, None);
    // Its session ends now, so the will does not wait for its delay.
    assert_eq!(kinds(&changes), ["disconnected", "will", "ended"]);
    assert_eq!(outcome, WillOutcome::Fired);
    // [MQTT-3.1.2-6]: nothing to resume, even without Clean Start.
    let (_, attached) = r.attach(attach("c", 2, false, never(), None), t(6));
    assert!(!attached.present);
    // Taken over while attached: not resumed either.
    r.attach(attach("d", 3, true, Expiry::Immediate, None), t(7));
    let (changes, attached) = r.attach(attach("d", 4, false, never(), None), t(8));
    assert_eq!(kinds(&changes), ["disconnected", "ended", "opened"]);
    assert!(!attached.present);
}

#[test]
fn a_normal_disconnect_deletes_the_will_and_may_change_the_expiry() {
    let mut r = Registry::<()>::default();
    r.attach(attach("c", 1, false, secs(60), Some(will(0))), t(0));
    // [MQTT-3.1.2-10] [MQTT-3.14.4-3]; [MQTT-3.14.2-2]: the DISCONNECT's Session Expiry Interval applies.
    let (changes, outcome) = r.detach("c", 1, t(1), false, Some(Expiry::Never));
    assert_eq!(kinds(&changes), ["disconnected"]);
    assert_eq!(outcome, WillOutcome::Discarded);
    assert_eq!(r.next_deadline(), None, "never expires");
    // A session that was to end with its connection stays that way [MQTT-3.14.2-2].
    r.attach(attach("d", 2, true, Expiry::Immediate, None), t(2));
    let (changes, _) = r.detach("d", 2, t(3), false, Some(Expiry::Never));
    assert_eq!(kinds(&changes), ["disconnected", "ended"]);
}

#[test]
fn an_operator_discards_only_a_detached_session_and_its_pending_will_goes_out() {
    let mut r = Registry::<()>::default();
    r.attach(attach("c", 1, false, never(), Some(will(30))), t(0));
    assert_eq!(r.discard("c", t(1)).1, Discard::Attached(1));
    r.detach("c", 1, t(2), true, None);
    let (changes, found) = r.discard("c", t(3));
    assert_eq!(found, Discard::Ended);
    assert_eq!(kinds(&changes), ["will", "ended"]);
    assert_eq!(r.discard("c", t(4)).1, Discard::NoSession);
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn events_of_a_clean_session_without_a_will_are_not_recorded() {
    let mut r = Registry::<()>::default();
    let (changes, _) = r.attach(attach("c", 1, true, Expiry::Immediate, None), t(0));
    assert!(changes.events.iter().all(|e| !e.recorded));
    assert!(r.subscribe("c", "x", options()).events.iter().all(|e| !e.recorded));
    let (changes, _) = r.attach(attach("p", 2, false, never(), None), t(0));
    assert!(changes.events.iter().all(|e| e.recorded));
    // Ending a recorded session is recorded, even as the new session is a clean one.
    let (changes, _) = r.attach(attach("p", 3, true, Expiry::Immediate, None), t(1));
    assert_eq!(kinds(&changes), ["disconnected", "ended", "opened"]);
    assert!(changes.events.iter().all(|e| e.recorded));
}

/// Replays `events` into a new registry.
fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Registry {
    let mut r = Registry::<()>::default();
    for e in events {
        r.apply(e);
    }
    r
}

#[test]
fn a_will_fires_exactly_once_across_a_restart() {
    let mut r = Registry::<()>::default();
    let mut log: Vec<Event> = Vec::new();
    let record = |c: Changes, log: &mut Vec<Event>| log.extend(c.events.into_iter().map(|e| e.event));
    record(r.attach(attach("c", 1, false, never(), Some(will(10))), t(0)).0, &mut log);
    record(r.detach("c", 1, t(1_000), true, None).0, &mut log);
    // Crash before the delay has passed: the restarted registry fires it once the delay has passed.
    let mut before = replay(&log);
    assert!(before.restart(t(5_000)).events.is_empty());
    assert_eq!(kinds(&before.tick(t(11_000))), ["will"]);
    // Crash after it fired: the record that fired it also forgot it.
    record(r.tick(t(11_000)), &mut log);
    let mut after = replay(&log);
    assert_eq!(after, r);
    assert!(after.restart(t(20_000)).events.is_empty());
    assert!(after.tick(t(99_000)).events.is_empty());
}

#[test]
fn a_connection_attached_at_a_crash_is_disconnected_at_the_restart() {
    let mut r = Registry::<()>::default();
    let (changes, _) = r.attach(attach("c", 7, false, secs(100), Some(will(10))), t(0));
    let mut restarted = replay(changes.events.iter().map(|e| &e.event));
    let changes = restarted.restart(t(50_000));
    assert_eq!(kinds(&changes), ["disconnected"]);
    let entry = restarted.get("c").expect("kept");
    // The will delay and the expiry count from the restart.
    assert_eq!((entry.will_due(), entry.expires_at()), (Some(t(60_000)), Some(t(150_000))));
    assert_eq!(entry.owner, 0);
}

/// One operation of the property test.
#[derive(Debug, Clone)]
enum Op {
    Attach { client: u8, clean_start: bool, expiry: u8, will: Option<u8> },
    Detach { client: u8, stale: bool, normal: bool, expiry: Option<u8> },
    Subscribe { client: u8, filter: u8 },
    Unsubscribe { client: u8, filter: u8 },
    Discard { client: u8 },
    Wait { ms: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u8, any::<bool>(), 0..4u8, proptest::option::of(0..3u8))
            .prop_map(|(client, clean_start, expiry, will)| Op::Attach { client, clean_start, expiry, will }),
        (0..3u8, any::<bool>(), any::<bool>(), proptest::option::of(0..4u8))
            .prop_map(|(client, stale, normal, expiry)| Op::Detach { client, stale, normal, expiry }),
        (0..3u8, 0..3u8).prop_map(|(client, filter)| Op::Subscribe { client, filter }),
        (0..3u8, 0..3u8).prop_map(|(client, filter)| Op::Unsubscribe { client, filter }),
        (0..3u8).prop_map(|client| Op::Discard { client }),
        (0..3_000u16).prop_map(|ms| Op::Wait { ms }),
    ]
}

fn expiry_of(n: u8) -> Expiry {
    match n {
        0 => Expiry::Immediate,
        1 => secs(1),
        2 => secs(2),
        _ => Expiry::Never,
    }
}

/// Runs `ops`; returns every event applied, in order, and the registry.
fn run(ops: &[Op]) -> (Vec<Event>, Registry) {
    let mut r = Registry::<()>::default();
    let (mut now, mut next_connection, mut log) = (0u64, 1u64, Vec::new());
    let client = |c: u8| ["a", "b", "c"][usize::from(c)];
    for op in ops {
        let changes = match op.clone() {
            Op::Attach { client: c, clean_start, expiry, will: w } => {
                next_connection += 1;
                let a =
                    attach(client(c), next_connection, clean_start, expiry_of(expiry), w.map(|d| will(u32::from(d))));
                let (changes, attached) = r.attach(a, t(now));
                assert_eq!(r.owner(client(c)), next_connection);
                assert!(!(attached.present && clean_start), "[MQTT-3.2.2-1]");
                changes
            }
            Op::Detach { client: c, stale, normal, expiry } => {
                let owner = if stale { 1 } else { r.owner(client(c)) };
                r.detach(client(c), owner, t(now), !normal, expiry.map(expiry_of)).0
            }
            Op::Subscribe { client: c, filter } => r.subscribe(client(c), &filter.to_string(), options()),
            Op::Unsubscribe { client: c, filter } => r.unsubscribe(client(c), &filter.to_string()),
            Op::Discard { client: c } => r.discard(client(c), t(now)).0,
            Op::Wait { ms } => {
                now += u64::from(ms);
                r.tick(t(now))
            }
        };
        log.extend(changes.events.into_iter().map(|e| e.event));
        assert!(r.next_deadline().is_none_or(|d| d > t(now)), "nothing due is left behind");
    }
    (log, r)
}

proptest! {
    /// Replaying the events of any sequence of operations rebuilds the same registry, and so does
    /// replaying its snapshot.
    #[test]
    fn replaying_the_events_rebuilds_the_same_registry(ops in proptest::collection::vec(op(), 0..60)) {
        let (log, r) = run(&ops);
        prop_assert_eq!(&replay(&log), &r);
        prop_assert_eq!(&replay(&r.snapshot()), &r);
    }

    /// Each will fires at most once: after a will fired, the next will of that client comes with a
    /// new attach.
    #[test]
    fn a_will_fires_at_most_once_per_connection(ops in proptest::collection::vec(op(), 0..60)) {
        let (log, _) = run(&ops);
        let mut armed: HashMap<Arc<str>, bool> = HashMap::new();
        for e in &log {
            match e {
                Event::SessionOpened { identity, will, .. } | Event::SessionResumed { identity, will, .. } => {
                    armed.insert(identity.client_id.clone(), will.is_some());
                }
                Event::WillFired { client_id, .. } => {
                    prop_assert!(armed.insert(client_id.clone(), false).unwrap_or(false), "fired twice: {client_id}");
                }
                _ => {}
            }
        }
    }
}
