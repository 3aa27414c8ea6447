//! The packet trace of `-v` / `log_type debug` / `log_type all`: one line per packet received and sent,
//! in Mosquitto's words (its `src/handle_*.c` and `lib/send_*.c` debug lines), so that admins' habits and
//! scripts that read Mosquitto's log work: `Received PUBLISH from dev1 (d0, q1, r0, m3, 'a/b', ... (5
//! bytes))`, `Sending CONNACK to dev1 (0, 0)`.
//!
//! Costs nothing when the debug level is off: each function asks `tracing::enabled!` (a cached
//! per-callsite check) before formatting anything.

use mqttd_proto::{Packet, PacketId, PublishRef};

/// Target of the packet trace lines (debug level, as Mosquitto's `MOSQ_LOG_DEBUG`).
pub const PACKET: &str = "mqttd::log::packet";

fn mid(id: Option<PacketId>) -> u16 {
    id.map_or(0, PacketId::get)
}

/// Whether packet lines are shown at all.
pub fn enabled() -> bool {
    tracing::enabled!(target: PACKET, tracing::Level::DEBUG)
}

fn line(text: std::fmt::Arguments<'_>) {
    tracing::debug!(target: PACKET, "{text}");
}

/// A packet received from `client_id`.
pub fn received(client_id: &str, packet: &Packet) {
    if !enabled() {
        return;
    }
    let id = client_id;
    match packet {
        Packet::Publish(p) => publish_line("Received PUBLISH from", id, &p.as_borrowed()),
        Packet::PubAck(a) | Packet::PubComp(a) => {
            line(format_args!("Received {} from {id} (Mid: {}, RC:{})", packet.name(), a.packet_id.get(), a.reason))
        }
        Packet::PubRec(a) | Packet::PubRel(a) => {
            line(format_args!("Received {} from {id} (Mid: {})", packet.name(), a.packet_id.get()))
        }
        Packet::Subscribe(s) => {
            line(format_args!("Received SUBSCRIBE from {id}"));
            for (filter, options) in &s.filters {
                line(format_args!("\t{filter} (QoS {})", options.qos as u8));
            }
        }
        Packet::Unsubscribe(u) => {
            line(format_args!("Received UNSUBSCRIBE from {id}"));
            for filter in &u.filters {
                line(format_args!("\t{filter}"));
            }
        }
        other => line(format_args!("Received {} from {id}", other.name())),
    }
}

/// A packet queued for `client_id` (PUBLISH from the outbox: [`sent_publish`]).
pub fn sent(client_id: &str, packet: &Packet) {
    if !enabled() {
        return;
    }
    let id = client_id;
    match packet {
        Packet::ConnAck(c) => {
            line(format_args!("Sending CONNACK to {id} ({}, {})", u8::from(c.session_present), c.code))
        }
        Packet::Publish(p) => publish_line("Sending PUBLISH to", id, &p.as_borrowed()),
        Packet::PubAck(a) | Packet::PubRec(a) => {
            line(format_args!("Sending {} to {id} (m{}, rc{})", packet.name(), a.packet_id.get(), a.reason))
        }
        Packet::PubRel(a) | Packet::PubComp(a) => {
            line(format_args!("Sending {} to {id} (m{})", packet.name(), a.packet_id.get()))
        }
        Packet::Disconnect(d) => line(format_args!("Sending DISCONNECT to {id} (rc{})", d.reason)),
        other => line(format_args!("Sending {} to {id}", other.name())),
    }
}

/// A PUBLISH written for `client_id` from its outbox.
pub fn sent_publish(client_id: &str, publish: &PublishRef<'_>) {
    if enabled() {
        publish_line("Sending PUBLISH to", client_id, publish);
    }
}

/// A PUBLISH line: `what` is "Received PUBLISH from" or "Sending PUBLISH to".
fn publish_line(what: &str, id: &str, p: &PublishRef<'_>) {
    line(format_args!(
        "{what} {id} (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
        u8::from(p.dup),
        p.qos as u8,
        u8::from(p.retain),
        mid(p.packet_id),
        p.topic,
        p.payload.len()
    ));
}

/// The connect line (`connection_messages`, information level), as Mosquitto's `handle__connect`
/// writes it: `New client connected from 127.0.0.1:44410 as dev1 (p2, c1, k60, u'alice').` (`p` is
/// Mosquitto's protocol number: 1 for 3.1, 2 for 3.1.1, 5 for 5.0); then, at debug level, the will.
pub fn connected(client_id: &str, peer: std::net::SocketAddr, c: &mqttd_proto::Connect, keep_alive: u16) {
    let p = match c.protocol {
        mqttd_proto::ProtocolVersion::V3_1 => 1,
        mqttd_proto::ProtocolVersion::V3_1_1 => 2,
        mqttd_proto::ProtocolVersion::V5 => 5,
    };
    let c1 = u8::from(c.clean_start);
    match &c.username {
        Some(user) => tracing::info!(
            target: crate::log::CONNECTION,
            "New client connected from {peer} as {client_id} (p{p}, c{c1}, k{keep_alive}, u'{user}')."
        ),
        None => tracing::info!(
            target: crate::log::CONNECTION,
            "New client connected from {peer} as {client_id} (p{p}, c{c1}, k{keep_alive})."
        ),
    }
    if !enabled() {
        return;
    }
    match &c.will {
        Some(w) => {
            let (len, r, q) = (w.payload.len(), u8::from(w.retain), w.qos as u8);
            line(format_args!("Will message specified ({len} bytes) (r{r}, q{q})."));
            line(format_args!("\t{}", w.topic));
        }
        None => line(format_args!("No will message specified.")),
    }
}
