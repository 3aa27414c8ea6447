//! `-d/--debug`: the packet trace of mosquitto_sub and mosquitto_pub `-d`, in their words
//! (`Client ID sending CONNECT`, `Client ID received PUBLISH (d0, q1, r0, m1, 'a/b', ... (5 bytes))`),
//! on standard output as Mosquitto's clients print it.

use std::io::Write;
use std::sync::Arc;

use mqttd_client::proto::{Packet, PacketId, Publish};
use mqttd_client::{Direction, PacketTrace};

/// The trace for client `id`.
pub fn trace(id: String) -> PacketTrace {
    PacketTrace(Arc::new(move |direction, packet| {
        let line = describe(&id, direction, packet);
        let mut out = std::io::stdout().lock();
        // Best effort, as a log line: a closed stdout shows up when the messages are printed.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }))
}

fn mid(id: Option<PacketId>) -> u16 {
    id.map_or(0, PacketId::get)
}

fn publish(p: &Publish) -> String {
    let (d, q, r) = (u8::from(p.dup), p.qos as u8, u8::from(p.retain));
    format!("(d{d}, q{q}, r{r}, m{}, '{}', ... ({} bytes))", mid(p.packet_id), p.topic, p.payload.len())
}

/// One line of the trace.
pub fn describe(id: &str, direction: Direction, packet: &Packet) -> String {
    let verb = match direction {
        Direction::Sent => "sending",
        Direction::Received => "received",
    };
    let name = packet.name();
    let detail = match packet {
        Packet::ConnAck(c) => format!(" ({})", c.code),
        Packet::Publish(p) => format!(" {}", publish(p)),
        Packet::PubAck(a) | Packet::PubRec(a) if direction == Direction::Sent => {
            format!(" (m{}, rc{})", a.packet_id.get(), a.reason)
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            format!(" (Mid: {})", a.packet_id.get())
        }
        Packet::Subscribe(s) => {
            let topics: Vec<String> = s
                .filters
                .iter()
                .map(|(f, o)| {
                    let options = u8::from(o.no_local) << 2
                        | u8::from(o.retain_as_published) << 3
                        | (o.retain_handling as u8) << 4;
                    format!("Topic: {f}, QoS: {}, Options: 0x{options:02x}", o.qos as u8)
                })
                .collect();
            format!(" (Mid: {}, {})", s.packet_id.get(), topics.join(", "))
        }
        Packet::Unsubscribe(u) => format!(" (Mid: {}, Topic: {})", u.packet_id.get(), u.filters.join(", ")),
        Packet::Disconnect(d) if d.reason != 0 => format!(" ({})", d.reason),
        _ => String::new(),
    };
    format!("Client {id} {verb} {name}{detail}")
}
