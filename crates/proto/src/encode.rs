//! Encoding: [`Packet`] to bytes. Lengths are computed first so the body is written once, without copies.

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;
use crate::packet::*;
use crate::properties::Properties;
use crate::wire::{check_field, varint_len, write_binary, write_varint, MAX_VARINT};

fn props_len(p: &Properties, v5: bool) -> usize {
    if v5 {
        p.encoded_len()
    } else {
        0
    }
}

/// DISCONNECT / AUTH / acks in 5.0: the reason code and properties may be omitted when they are defaults.
fn reason_len(reason: u8, p: &Properties, v5: bool) -> usize {
    match (v5, reason, p.is_empty()) {
        (false, _, _) => 0,
        (true, 0, true) => 0,
        (true, _, true) => 1,
        (true, _, false) => 1 + p.encoded_len(),
    }
}

fn body_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(c) => {
            let name = if c.protocol == ProtocolVersion::V3_1 { 6 } else { 4 };
            let cv5 = c.protocol.is_v5();
            let mut len = 2 + name + 1 + 1 + 2 + props_len(&c.properties, cv5) + 2 + c.client_id.len();
            if let Some(w) = &c.will {
                len += props_len(&w.properties, cv5) + 2 + w.topic.len() + 2 + w.payload.len();
            }
            len += c.username.as_ref().map_or(0, |u| 2 + u.len());
            len += c.password.as_ref().map_or(0, |p| 2 + p.len());
            len
        }
        Packet::ConnAck(c) => 2 + props_len(&c.properties, v5),
        Packet::Publish(p) => publish_body_len(&p.as_borrowed(), v5),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            2 + reason_len(a.reason, &a.properties, v5)
        }
        Packet::Subscribe(s) => {
            2 + props_len(&s.properties, v5) + s.filters.iter().map(|(f, _)| 3 + f.len()).sum::<usize>()
        }
        Packet::SubAck(s) => 2 + props_len(&s.properties, v5) + s.reasons.len(),
        Packet::Unsubscribe(u) => {
            2 + props_len(&u.properties, v5) + u.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
        }
        Packet::UnsubAck(u) => 2 + if v5 { u.properties.encoded_len() + u.reasons.len() } else { 0 },
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => reason_len(d.reason, &d.properties, v5),
        Packet::Auth(a) => reason_len(a.reason, &a.properties, v5),
    }
}

/// The whole encoded size of `packet` (fixed header included), to compare with a Maximum Packet Size.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let body = body_len(packet, version);
    1 + varint_len(body) + body
}

fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => publish_first_byte(&p.as_borrowed()),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

/// Appends the encoding of `packet` for a peer speaking `version` (CONNECT uses its own `protocol`).
///
/// Properties are written only for 5.0. On error nothing is appended.
pub fn encode(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = version.is_v5();
    check(packet, v5)?;
    fixed_header(buf, first_byte(packet), body_len(packet, version))?;
    match packet {
        Packet::Connect(c) => connect(c, buf)?,
        Packet::ConnAck(c) => {
            // MQTT 3.1 has no Session Present flag: the byte is reserved and 0.
            buf.put_u8(u8::from(c.session_present && version != ProtocolVersion::V3_1));
            buf.put_u8(c.code);
            if v5 {
                c.properties.encode(buf)?;
            }
        }
        Packet::Publish(p) => publish_body(&p.as_borrowed(), v5, buf)?,
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            buf.put_u16(a.packet_id.get());
            reason_and_props(a.reason, &a.properties, v5, buf)?;
        }
        Packet::Subscribe(s) => {
            buf.put_u16(s.packet_id.get());
            if v5 {
                s.properties.encode(buf)?;
            }
            for (filter, o) in &s.filters {
                write_binary(buf, filter.as_bytes());
                buf.put_u8(
                    o.qos as u8
                        | u8::from(o.no_local) << 2
                        | u8::from(o.retain_as_published) << 3
                        | (o.retain_handling as u8) << 4,
                );
            }
        }
        Packet::SubAck(s) => {
            buf.put_u16(s.packet_id.get());
            if v5 {
                s.properties.encode(buf)?;
            }
            buf.put_slice(&s.reasons);
        }
        Packet::Unsubscribe(u) => {
            buf.put_u16(u.packet_id.get());
            if v5 {
                u.properties.encode(buf)?;
            }
            for filter in &u.filters {
                write_binary(buf, filter.as_bytes());
            }
        }
        Packet::UnsubAck(u) => {
            buf.put_u16(u.packet_id.get());
            if v5 {
                u.properties.encode(buf)?;
                buf.put_slice(&u.reasons);
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => reason_and_props(d.reason, &d.properties, v5, buf)?,
        Packet::Auth(a) => reason_and_props(a.reason, &a.properties, v5, buf)?,
    }
    Ok(())
}

fn properties_of(packet: &Packet) -> [Option<&Properties>; 2] {
    match packet {
        Packet::Connect(c) => [Some(&c.properties), c.will.as_ref().map(|w| &w.properties)],
        Packet::ConnAck(c) => [Some(&c.properties), None],
        Packet::Publish(p) => [Some(&p.properties), None],
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => [Some(&a.properties), None],
        Packet::Subscribe(s) => [Some(&s.properties), None],
        Packet::SubAck(s) => [Some(&s.properties), None],
        Packet::Unsubscribe(u) => [Some(&u.properties), None],
        Packet::UnsubAck(u) => [Some(&u.properties), None],
        Packet::PingReq | Packet::PingResp => [None, None],
        Packet::Disconnect(d) => [Some(&d.properties), None],
        Packet::Auth(a) => [Some(&a.properties), None],
    }
}

/// Validates everything that could fail before the first byte is written.
fn check(packet: &Packet, v5: bool) -> Result<(), EncodeError> {
    let carries_props = match packet {
        Packet::Connect(c) => c.protocol.is_v5(),
        _ => v5,
    };
    if carries_props {
        for p in properties_of(packet).into_iter().flatten() {
            p.check()?;
        }
    }
    match packet {
        Packet::Connect(c) => {
            check_field(c.client_id.len())?;
            if let Some(w) = &c.will {
                check_field(w.topic.len())?;
                check_field(w.payload.len())?;
            }
            for f in [c.username.as_ref().map(String::len), c.password.as_ref().map(|p| p.len())].into_iter().flatten()
            {
                check_field(f)?;
            }
        }
        Packet::Publish(p) => check_publish(&p.as_borrowed())?,
        Packet::Subscribe(s) => {
            for (f, _) in &s.filters {
                check_field(f.len())?;
            }
        }
        Packet::Unsubscribe(u) => {
            for f in &u.filters {
                check_field(f.len())?;
            }
        }
        Packet::Auth(_) if !v5 => return Err(EncodeError::NotInVersion("AUTH")),
        _ => {}
    }
    Ok(())
}

fn reason_and_props(reason: u8, p: &Properties, v5: bool, buf: &mut BytesMut) -> Result<(), EncodeError> {
    match reason_len(reason, p, v5) {
        0 => {}
        1 => buf.put_u8(reason),
        _ => {
            buf.put_u8(reason);
            p.encode(buf)?;
        }
    }
    Ok(())
}

fn connect(c: &Connect, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = c.protocol.is_v5();
    let name: &[u8] = if c.protocol == ProtocolVersion::V3_1 { b"MQIsdp" } else { b"MQTT" };
    write_binary(buf, name);
    buf.put_u8(c.protocol.level() | if c.bridge { 0x80 } else { 0 });
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3 | u8::from(w.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    if v5 {
        c.properties.encode(buf)?;
    }
    write_binary(buf, c.client_id.as_bytes());
    if let Some(w) = &c.will {
        if v5 {
            w.properties.encode(buf)?;
        }
        write_binary(buf, w.topic.as_bytes());
        write_binary(buf, &w.payload);
    }
    if let Some(u) = &c.username {
        write_binary(buf, u.as_bytes());
    }
    if let Some(p) = &c.password {
        write_binary(buf, p);
    }
    Ok(())
}

fn publish_body_len(p: &PublishRef<'_>, v5: bool) -> usize {
    let id = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
    2 + p.topic.len() + id + props_len(p.properties, v5) + p.payload.len()
}

fn publish_first_byte(p: &PublishRef<'_>) -> u8 {
    0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
}

fn check_publish(p: &PublishRef<'_>) -> Result<(), EncodeError> {
    check_field(p.topic.len())?;
    if p.qos != QoS::AtMostOnce && p.packet_id.is_none() {
        return Err(EncodeError::MissingPacketId(p.qos as u8));
    }
    Ok(())
}

fn publish_body(p: &PublishRef<'_>, v5: bool, buf: &mut BytesMut) -> Result<(), EncodeError> {
    write_binary(buf, p.topic.as_bytes());
    if let Some(id) = p.packet_id {
        buf.put_u16(id.get());
    }
    if v5 {
        p.properties.encode(buf)?;
    }
    buf.put_slice(p.payload);
    Ok(())
}

/// The whole encoded size of a borrowed PUBLISH.
pub fn publish_len(p: &PublishRef<'_>, version: ProtocolVersion) -> usize {
    let body = publish_body_len(p, version.is_v5());
    1 + varint_len(body) + body
}

/// Appends a PUBLISH from borrowed parts: a stored message is encoded without being copied into a
/// [`Publish`] first. Same bytes as `encode(&Packet::Publish(..))`.
pub fn encode_publish(p: &PublishRef<'_>, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = version.is_v5();
    check_publish(p)?;
    if v5 {
        p.properties.check()?;
    }
    fixed_header(buf, publish_first_byte(p), publish_body_len(p, v5))?;
    publish_body(p, v5, buf)
}

/// Checks the body fits a remaining length, reserves room for the whole packet, writes the fixed header.
fn fixed_header(buf: &mut BytesMut, first: u8, body: usize) -> Result<(), EncodeError> {
    if body > MAX_VARINT as usize {
        return Err(EncodeError::PacketTooLong(body));
    }
    buf.reserve(1 + varint_len(body) + body);
    buf.put_u8(first);
    write_varint(buf, body);
    Ok(())
}
