//! `GET /metrics`: the broker's counters in the Prometheus text exposition format (version 0.0.4), each
//! family with `# HELP` and `# TYPE`, names prefixed `mqttd_`, in base units (bytes, seconds).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use hyper::{Response, StatusCode};

use super::web::{full, Body};
use crate::broker::Broker;
use crate::observe::{DisconnectReason, DropCause, WillCount};

pub fn respond(broker: &Broker) -> Response<Body> {
    full(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", render(broker))
}

/// Writes one family: its HELP and TYPE lines, then `samples` as `(labels, value)`.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP mqttd_{name} {help}");
    let _ = writeln!(out, "# TYPE mqttd_{name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "mqttd_{name} {value}");
        } else {
            let _ = writeln!(out, "mqttd_{name}{{{labels}}} {value}");
        }
    }
}

fn one(value: u64) -> Vec<(String, u64)> {
    vec![(String::new(), value)]
}

/// Queue figures summed over every session: in flight, queued, queued bytes. One short lock per
/// session, per scrape (not per message).
fn queues(broker: &Broker) -> (u64, u64, u64) {
    let sessions: Vec<_> = broker.sessions.lock().values().cloned().collect();
    let mut totals = (0u64, 0u64, 0u64);
    for session in sessions {
        let state = session.state.lock();
        totals.0 += state.inflight() as u64;
        totals.1 += state.queued() as u64;
        totals.2 += state.queued_bytes() as u64;
    }
    totals
}

/// The whole exposition.
pub fn render(broker: &Broker) -> String {
    let c = &broker.counters;
    let s = &broker.stats;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(4096);
    let version = env!("CARGO_PKG_VERSION");
    family(&mut out, "build_info", "gauge", "The mqttd version running.", &[(format!("version=\"{version}\""), 1)]);
    family(
        &mut out,
        "uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
        &one(broker.started.elapsed().as_secs()),
    );
    let connections: Vec<(String, u64)> = c
        .connections()
        .into_iter()
        .map(|(listener, v, n)| (format!("listener=\"{listener}\",protocol=\"{v}\""), n))
        .collect();
    family(
        &mut out,
        "connections",
        "gauge",
        "Connected clients by listener (index in the configuration) and MQTT version.",
        &connections,
    );
    family(
        &mut out,
        "connections_parked",
        "gauge",
        "Idle plain-TCP connections parked without a task.",
        &one(get(&s.clients_parked)),
    );
    family(&mut out, "connects_total", "counter", "CONNECTs accepted.", &one(get(&s.clients_total_connects)));
    let refusals: Vec<(String, u64)> = c
        .refusals()
        .into_iter()
        .map(|(code, n)| (format!("reason=\"{}\"", mqttd_proto::reason::name(code).replace(' ', "_")), n))
        .collect();
    family(
        &mut out,
        "connect_refusals_total",
        "counter",
        "CONNECTs refused, by CONNACK reason (MQTT 5.0 names).",
        &refusals,
    );
    let disconnects: Vec<(String, u64)> =
        DisconnectReason::ALL.iter().map(|r| (format!("reason=\"{}\"", r.name()), c.disconnects(*r))).collect();
    family(
        &mut out,
        "disconnects_total",
        "counter",
        "Connections of connected clients ended, by reason.",
        &disconnects,
    );
    let wills: Vec<(String, u64)> =
        WillCount::ALL.iter().map(|w| (format!("outcome=\"{}\"", w.name()), c.wills(*w))).collect();
    family(&mut out, "wills_total", "counter", "Wills by what became of them: published, delayed, discarded by DISCONNECT, cancelled by a reconnect within the will delay, denied by the ACL.", &wills);
    let by_qos =
        |f: &dyn Fn(usize) -> u64| -> Vec<(String, u64)> { (0..3).map(|q| (format!("qos=\"{q}\""), f(q))).collect() };
    family(
        &mut out,
        "messages_received_total",
        "counter",
        "PUBLISH packets received from clients, by QoS.",
        &by_qos(&|q| c.received_at(q).0),
    );
    family(
        &mut out,
        "messages_sent_total",
        "counter",
        "PUBLISH packets sent to clients, by QoS.",
        &by_qos(&|q| c.sent_at(q).0),
    );
    family(
        &mut out,
        "payload_received_bytes_total",
        "counter",
        "Payload bytes of PUBLISH packets received, by QoS.",
        &by_qos(&|q| c.received_at(q).1),
    );
    family(
        &mut out,
        "payload_sent_bytes_total",
        "counter",
        "Payload bytes of PUBLISH packets sent, by QoS.",
        &by_qos(&|q| c.sent_at(q).1),
    );
    family(
        &mut out,
        "network_received_bytes_total",
        "counter",
        "Bytes read from MQTT sockets.",
        &one(get(&s.bytes_received)),
    );
    family(&mut out, "network_sent_bytes_total", "counter", "Bytes written to MQTT sockets.", &one(get(&s.bytes_sent)));
    let dropped: Vec<(String, u64)> =
        DropCause::ALL.iter().map(|d| (format!("cause=\"{}\"", d.name()), c.dropped_by(*d))).collect();
    family(&mut out, "messages_dropped_total", "counter", "Deliveries dropped, by cause.", &dropped);
    family(&mut out, "retained_messages", "gauge", "Retained messages stored.", &one(broker.retained_count() as u64));
    let sessions = broker.session_count() as u64;
    let online = get(&s.clients_connected);
    let by_state =
        [("state=\"online\"".to_owned(), online), ("state=\"offline\"".to_owned(), sessions.saturating_sub(online))];
    family(&mut out, "sessions", "gauge", "Sessions, online (a connection attached) or offline.", &by_state);
    let shared = broker.shared_subscription_count();
    let plain = broker.subscription_count() - shared;
    let kind = [("kind=\"plain\"".to_owned(), plain as u64), ("kind=\"shared\"".to_owned(), shared as u64)];
    family(
        &mut out,
        "subscriptions",
        "gauge",
        "Subscriptions, plain or shared (members of `$share/...` groups).",
        &kind,
    );
    let (inflight, queued, queued_bytes) = queues(broker);
    family(
        &mut out,
        "inflight_messages",
        "gauge",
        "QoS 1 and 2 messages sent and not yet acknowledged.",
        &one(inflight),
    );
    family(&mut out, "queued_messages", "gauge", "Messages waiting in session queues.", &one(queued));
    family(&mut out, "queued_bytes", "gauge", "Memory held by session queues, in bytes.", &one(queued_bytes));
    family(
        &mut out,
        "auth_failures_total",
        "counter",
        "Failed authentications: refused MQTT credentials and HTTP requests with wrong or missing credentials.",
        &one(get(&c.auth_failures)),
    );
    family(
        &mut out,
        "tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed, on any listener.",
        &one(get(&c.tls_handshake_failures)),
    );
    if let Some(store) = broker.store() {
        store_families(&mut out, store);
    }
    out
}

/// The durable store's figures (`persistence true`): syncs, records synced (their ratio is the batch
/// size of group commit), bytes appended.
fn store_families(out: &mut String, store: &crate::store::Store) {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    family(
        out,
        "store_syncs_total",
        "counter",
        "Syncs (fdatasync) of the durable store's log.",
        &one(get(&store.syncs)),
    );
    family(
        out,
        "store_records_total",
        "counter",
        "Records made durable; divided by the syncs, the average group-commit batch.",
        &one(get(&store.synced_records)),
    );
    family(
        out,
        "store_appended_bytes_total",
        "counter",
        "Bytes appended to the durable store's log since the start (compaction does not lower it).",
        &one(store.durable()),
    );
    family(
        out,
        "store_full",
        "gauge",
        "1 while the disk is full: the store retries its write and new QoS 1/2 publishes are refused.",
        &one(u64::from(store.full())),
    );
}
