//! What the broker counts for operators: the counters behind `GET /metrics` ([`Counters`]: atomics, no
//! lock on the message path) and the ring of recent events (connects, disconnects with their reason,
//! wills, refusals) the admin API and the dashboard show ([`Events`]). The HTTP side (`http/`) only reads
//! them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mqttd_proto::{ProtocolVersion, QoS};
use parking_lot::Mutex;

/// Listeners counted one by one; connections of listeners past it count under the last.
pub const MAX_LISTENERS: usize = 16;

/// Why a connection ended, as the metrics and the events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT (normal).
    Disconnect,
    /// The client sent DISCONNECT with reason 0x04 (publish my will).
    DisconnectWithWill,
    KeepAlive,
    /// The peer closed the socket without DISCONNECT.
    Closed,
    SocketError,
    Takeover,
    /// An operator kicked it (admin API).
    Kicked,
    ProtocolError,
    Shutdown,
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 9] = [
        DisconnectReason::Disconnect,
        DisconnectReason::DisconnectWithWill,
        DisconnectReason::KeepAlive,
        DisconnectReason::Closed,
        DisconnectReason::SocketError,
        DisconnectReason::Takeover,
        DisconnectReason::Kicked,
        DisconnectReason::ProtocolError,
        DisconnectReason::Shutdown,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            DisconnectReason::Disconnect => "disconnect",
            DisconnectReason::DisconnectWithWill => "disconnect_with_will",
            DisconnectReason::KeepAlive => "keep_alive_timeout",
            DisconnectReason::Closed => "closed_by_peer",
            DisconnectReason::SocketError => "socket_error",
            DisconnectReason::Takeover => "session_taken_over",
            DisconnectReason::Kicked => "administrative_action",
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::Shutdown => "server_shutting_down",
        }
    }
}

/// What became of a will, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WillCount {
    Published,
    /// Waiting for its Will Delay Interval [MQTT-3.1.3-9].
    Delayed,
    /// Deleted by a normal DISCONNECT [MQTT-3.1.2-10].
    Discarded,
    /// A pending (delayed) will dropped because the client came back in time [MQTT-3.1.3-9].
    CancelledByReconnect,
    /// The owner may not write the will topic.
    Denied,
}

impl WillCount {
    pub const ALL: [WillCount; 5] = [
        WillCount::Published,
        WillCount::Delayed,
        WillCount::Discarded,
        WillCount::CancelledByReconnect,
        WillCount::Denied,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WillCount::Published => "published",
            WillCount::Delayed => "delayed",
            WillCount::Discarded => "discarded",
            WillCount::CancelledByReconnect => "cancelled_by_reconnect",
            WillCount::Denied => "denied",
        }
    }
}

/// Why a message was not queued for a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// The subscriber's queue was full (`max_queued_messages`, `max_queued_bytes`).
    QueueFull,
    /// Larger than the subscriber's Maximum Packet Size [MQTT-3.1.2-25].
    TooLarge,
}

impl DropCause {
    pub const ALL: [DropCause; 2] = [DropCause::QueueFull, DropCause::TooLarge];

    pub fn name(self) -> &'static str {
        match self {
            DropCause::QueueFull => "queue_full",
            DropCause::TooLarge => "too_large_for_client",
        }
    }
}

/// The protocol versions in label order.
pub const VERSIONS: [ProtocolVersion; 3] = [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5];

fn version_index(v: ProtocolVersion) -> usize {
    match v {
        ProtocolVersion::V3_1 => 0,
        ProtocolVersion::V3_1_1 => 1,
        ProtocolVersion::V5 => 2,
    }
}

/// Counters for the Prometheus endpoint. Every field is a relaxed atomic added to where the event
/// happens; nothing here takes a lock. (`Stats` in `broker.rs` keeps the `$SYS` totals.)
#[derive(Debug)]
pub struct Counters {
    /// Connections now, by listener and protocol version.
    connections: [[AtomicU64; 3]; MAX_LISTENERS],
    /// Refused CONNECTs by 5.0 reason code (3.x refusals counted under their 5.0 equivalent).
    refusals: [AtomicU64; 256],
    disconnects: [AtomicU64; DisconnectReason::ALL.len()],
    wills: [AtomicU64; WillCount::ALL.len()],
    /// PUBLISH received from clients, by QoS: messages, payload bytes.
    received: [(AtomicU64, AtomicU64); 3],
    /// PUBLISH sent to clients, by QoS: messages, payload bytes.
    sent: [(AtomicU64, AtomicU64); 3],
    dropped: [AtomicU64; DropCause::ALL.len()],
    pub auth_failures: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            connections: Default::default(),
            refusals: std::array::from_fn(|_| AtomicU64::new(0)),
            disconnects: Default::default(),
            wills: Default::default(),
            received: Default::default(),
            sent: Default::default(),
            dropped: Default::default(),
            auth_failures: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
        }
    }
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn connection_slot(&self, listener: u16, version: ProtocolVersion) -> &AtomicU64 {
        &self.connections[usize::from(listener).min(MAX_LISTENERS - 1)][version_index(version)]
    }

    /// A client connected (counted where `$SYS`'s `clients_connected` is).
    pub fn connected(&self, listener: u16, version: ProtocolVersion) {
        add(self.connection_slot(listener, version), 1);
    }

    /// A connected client's connection ended.
    pub fn disconnected(&self, listener: u16, version: ProtocolVersion, reason: DisconnectReason) {
        self.connection_slot(listener, version).fetch_sub(1, Ordering::Relaxed);
        add(&self.disconnects[reason as usize], 1);
    }

    /// A CONNECT was refused with `code` (5.0 reason code).
    pub fn refused(&self, code: u8) {
        add(&self.refusals[usize::from(code)], 1);
        if matches!(code, mqttd_proto::reason::BAD_USER_NAME_OR_PASSWORD | mqttd_proto::reason::NOT_AUTHORIZED) {
            add(&self.auth_failures, 1);
        }
    }

    pub fn will(&self, what: WillCount) {
        add(&self.wills[what as usize], 1);
    }

    /// A PUBLISH from a client.
    pub fn received(&self, qos: QoS, payload: usize) {
        let (messages, bytes) = &self.received[qos as usize];
        add(messages, 1);
        add(bytes, payload as u64);
    }

    /// PUBLISH packets written to clients in one turn: `[count, payload bytes]` by QoS.
    pub fn sent(&self, by_qos: &[[u64; 2]; 3]) {
        for ((messages, bytes), [n, b]) in self.sent.iter().zip(by_qos) {
            if *n > 0 {
                add(messages, *n);
                add(bytes, *b);
            }
        }
    }

    pub fn dropped(&self, cause: DropCause) {
        add(&self.dropped[cause as usize], 1);
    }

    /// Connections now: `(listener, version, count)` for every non-zero slot.
    pub fn connections(&self) -> Vec<(usize, ProtocolVersion, u64)> {
        let mut out = Vec::new();
        for (listener, row) in self.connections.iter().enumerate() {
            for (v, slot) in row.iter().enumerate() {
                let n = slot.load(Ordering::Relaxed);
                if n > 0 {
                    out.push((listener, VERSIONS[v], n));
                }
            }
        }
        out
    }

    /// Refusals so far: `(reason code, count)` for every non-zero code.
    pub fn refusals(&self) -> Vec<(u8, u64)> {
        (0..=255u8)
            .map(|c| (c, self.refusals[usize::from(c)].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn disconnects(&self, reason: DisconnectReason) -> u64 {
        self.disconnects[reason as usize].load(Ordering::Relaxed)
    }

    pub fn wills(&self, what: WillCount) -> u64 {
        self.wills[what as usize].load(Ordering::Relaxed)
    }

    /// `(messages, payload bytes)` received at `qos`.
    pub fn received_at(&self, qos: usize) -> (u64, u64) {
        let (m, b) = &self.received[qos];
        (m.load(Ordering::Relaxed), b.load(Ordering::Relaxed))
    }

    /// `(messages, payload bytes)` sent at `qos`.
    pub fn sent_at(&self, qos: usize) -> (u64, u64) {
        let (m, b) = &self.sent[qos];
        (m.load(Ordering::Relaxed), b.load(Ordering::Relaxed))
    }

    pub fn dropped_by(&self, cause: DropCause) -> u64 {
        self.dropped[cause as usize].load(Ordering::Relaxed)
    }
}

/// What happened, for the recent-events ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Connected,
    Disconnected {
        reason: DisconnectReason,
        will: String,
    },
    /// A will went out (published to its topic).
    WillPublished {
        topic: String,
    },
    Refused {
        reason: &'static str,
    },
    Kicked,
}

/// One entry of the recent-events ring.
#[derive(Debug, Clone)]
pub struct Event {
    /// Increasing from 1; a reader asks for events after the last one it saw.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub client_id: Arc<str>,
    pub kind: EventKind,
}

/// How many events the ring keeps.
pub const EVENT_RING: usize = 512;

/// The recent events: a bounded ring, recorded only while something reads it (an HTTP listener is
/// configured), so a broker without one pays a relaxed load per connect and nothing else.
#[derive(Debug, Default)]
pub struct Events {
    enabled: AtomicBool,
    /// A mutex: events come at connection rate, not message rate, and each push is a few stores.
    ring: Mutex<(u64, VecDeque<Event>)>,
    /// The last connection's details per client id, for the admin API; an entry goes with its session.
    /// Kept here, not in `Session`, so a broker without an HTTP listener pays nothing per session.
    infos: Mutex<HashMap<Arc<str>, ConnectionInfo>>,
}

impl Events {
    /// Starts recording (the HTTP listener calls it when it starts).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Records an event if enabled; `kind` is only built then.
    pub fn record(&self, client_id: &Arc<str>, kind: impl FnOnce() -> EventKind) {
        if !self.enabled() {
            return;
        }
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let kind = kind();
        let mut ring = self.ring.lock();
        ring.0 += 1;
        let seq = ring.0;
        if ring.1.len() == EVENT_RING {
            ring.1.pop_front();
        }
        ring.1.push_back(Event { seq, at_ms, client_id: client_id.clone(), kind });
    }

    /// A client connected: records the event and its connection's details.
    pub fn connected(&self, client_id: &Arc<str>, info: ConnectionInfo) {
        self.record(client_id, || EventKind::Connected);
        self.infos.lock().insert(client_id.clone(), info);
    }

    /// The details of `client_id`'s last connection, if its session is known.
    pub fn info(&self, client_id: &str) -> Option<ConnectionInfo> {
        self.infos.lock().get(client_id).cloned()
    }

    /// Forgets the details of a session that ended.
    pub fn forget(&self, client_id: &str) {
        if self.enabled() {
            self.infos.lock().remove(client_id);
        }
    }

    /// Events after `seq`, oldest first, at most `limit` (the newest of them).
    pub fn since(&self, seq: u64, limit: usize) -> Vec<Event> {
        let ring = self.ring.lock();
        let newer: Vec<&Event> = ring.1.iter().filter(|e| e.seq > seq).collect();
        newer[newer.len().saturating_sub(limit)..].iter().map(|e| (*e).clone()).collect()
    }

    /// The sequence number of the newest event (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.ring.lock().0
    }
}

/// What the admin API shows of a connected client beyond its identity; kept while an HTTP listener is
/// configured.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
    pub protocol: ProtocolVersion,
    pub keep_alive: u16,
    pub peer: std::net::SocketAddr,
    pub clean_start: bool,
}

impl ConnectionInfo {
    pub fn now(protocol: ProtocolVersion, keep_alive: u16, peer: std::net::SocketAddr, clean_start: bool) -> Self {
        let connected_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        ConnectionInfo { connected_at_ms, protocol, keep_alive, peer, clean_start }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_events_and_reads_after_a_sequence_number() {
        let events = Events::default();
        let id: Arc<str> = Arc::from("c");
        events.record(&id, || EventKind::Connected);
        assert!(events.since(0, 10).is_empty(), "recording is off until enabled");
        events.enable();
        for _ in 0..EVENT_RING + 5 {
            events.record(&id, || EventKind::Connected);
        }
        let all = events.since(0, usize::MAX);
        assert_eq!(all.len(), EVENT_RING);
        assert_eq!(all.last().map(|e| e.seq), Some(EVENT_RING as u64 + 5));
        assert_eq!(events.since(EVENT_RING as u64 + 3, 10).len(), 2);
        assert_eq!(events.since(0, 3).first().map(|e| e.seq), Some(EVENT_RING as u64 + 3));
    }

    #[test]
    fn connections_count_by_listener_and_version_and_clamp_the_listener() {
        let c = Counters::default();
        c.connected(0, ProtocolVersion::V5);
        c.connected(400, ProtocolVersion::V3_1_1);
        c.disconnected(0, ProtocolVersion::V5, DisconnectReason::Closed);
        assert_eq!(c.connections(), vec![(MAX_LISTENERS - 1, ProtocolVersion::V3_1_1, 1)]);
        assert_eq!(c.disconnects(DisconnectReason::Closed), 1);
        c.refused(mqttd_proto::reason::BAD_USER_NAME_OR_PASSWORD);
        assert_eq!(c.auth_failures.load(Ordering::Relaxed), 1);
    }
}
