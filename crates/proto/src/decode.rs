//! Decoding: bytes to [`Packet`]. Limits are checked on the fixed header, before the body is buffered.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::packet::*;
use crate::properties::{Context, Properties};
use crate::topic::{validate_topic_filter, validate_topic_name};
use crate::wire::{read_binary, read_string, read_u16, read_u8, MAX_VARINT};

/// Limits the decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted packet, fixed header included, in bytes.
    pub max_packet_size: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_packet_size: MAX_VARINT + 5 }
    }
}

/// Reads the fixed header: `Ok(None)` if more bytes are needed, else (header length, remaining length).
fn fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value: usize = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else { return Ok(None) };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((2 + i, value)));
        }
    }
    Err(DecodeError::Malformed("remaining length longer than 4 bytes [MQTT-1.5.5-1]"))
}

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet, leaving it untouched. CONNECT is decoded
/// whatever `version` says (it carries its own); every other packet is read as `version` defines it.
pub fn decode(buf: &mut BytesMut, version: ProtocolVersion, limits: &Limits) -> Result<Option<Packet>, DecodeError> {
    let Some((header_len, remaining)) = fixed_header(buf)? else { return Ok(None) };
    let total = header_len + remaining;
    if total as u64 > u64::from(limits.max_packet_size) {
        return Err(DecodeError::TooLarge { size: total as u64, max: limits.max_packet_size });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let first = buf[0];
    let mut frame = buf.split_to(total).freeze();
    frame.advance(header_len);
    decode_body(first, frame, version).map(Some)
}

/// Bytes needed before the packet at the front of `buf` is complete, if its fixed header is readable.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    Ok(fixed_header(buf)?.map(|(h, r)| h + r))
}

fn expect_flags(first: u8, flags: u8) -> Result<(), DecodeError> {
    if first & 0x0F != flags {
        return Err(DecodeError::Malformed("reserved fixed header flags are wrong [MQTT-2.2.2-2]"));
    }
    Ok(())
}

fn finish(body: &Bytes) -> Result<(), DecodeError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Malformed("bytes left after the end of the packet"))
    }
}

fn packet_id(body: &mut Bytes) -> Result<PacketId, DecodeError> {
    PacketId::new(read_u16(body)?).ok_or(DecodeError::Malformed("packet identifier 0 [MQTT-2.3.1-1]"))
}

fn props(body: &mut Bytes, version: ProtocolVersion, ctx: Context) -> Result<Properties, DecodeError> {
    if version.is_v5() {
        Properties::decode(body, ctx)
    } else {
        Ok(Properties::default())
    }
}

fn decode_body(first: u8, mut body: Bytes, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let v5 = version.is_v5();
    let packet = match first >> 4 {
        1 => {
            expect_flags(first, 0)?;
            Packet::Connect(Box::new(connect(&mut body)?))
        }
        2 => {
            expect_flags(first, 0)?;
            let flags = read_u8(&mut body)?;
            if flags & 0xFE != 0 {
                return Err(DecodeError::Malformed("CONNACK reserved flags set [MQTT-3.2.2-1]"));
            }
            let code = read_u8(&mut body)?;
            let properties = props(&mut body, version, Context::ConnAck)?;
            Packet::ConnAck(ConnAck { session_present: flags & 1 == 1, code, properties })
        }
        3 => Packet::Publish(publish(first, &mut body, version)?),
        4 => Packet::PubAck(ack(first, 0, &mut body, v5)?),
        5 => Packet::PubRec(ack(first, 0, &mut body, v5)?),
        6 => Packet::PubRel(ack(first, 2, &mut body, v5)?),
        7 => Packet::PubComp(ack(first, 0, &mut body, v5)?),
        8 => Packet::Subscribe(subscribe(first, &mut body, version)?),
        9 => {
            expect_flags(first, 0)?;
            let packet_id = packet_id(&mut body)?;
            let properties = props(&mut body, version, Context::SubAck)?;
            let reasons = body.split_to(body.len()).to_vec();
            Packet::SubAck(SubAck { packet_id, reasons, properties })
        }
        10 => Packet::Unsubscribe(unsubscribe(first, &mut body, version)?),
        11 => {
            expect_flags(first, 0)?;
            let packet_id = packet_id(&mut body)?;
            let properties = props(&mut body, version, Context::UnsubAck)?;
            // Before 5.0 an UNSUBACK is only the packet id: trailing bytes are malformed.
            let reasons = if v5 { body.split_to(body.len()).to_vec() } else { Vec::new() };
            Packet::UnsubAck(UnsubAck { packet_id, reasons, properties })
        }
        12 => {
            expect_flags(first, 0)?;
            Packet::PingReq
        }
        13 => {
            expect_flags(first, 0)?;
            Packet::PingResp
        }
        14 => {
            expect_flags(first, 0)?;
            let (reason, properties) = reason_and_props(&mut body, v5, Context::Disconnect)?;
            Packet::Disconnect(Disconnect { reason, properties })
        }
        15 => {
            expect_flags(first, 0)?;
            if !v5 {
                return Err(DecodeError::Malformed("AUTH exists only in MQTT 5.0"));
            }
            let (reason, properties) = reason_and_props(&mut body, v5, Context::Auth)?;
            Packet::Auth(Auth { reason, properties })
        }
        _ => return Err(DecodeError::Malformed("reserved packet type 0 [MQTT-2.2.1]")),
    };
    finish(&body)?;
    Ok(packet)
}

/// DISCONNECT and AUTH (5.0): an absent reason code means 0, absent properties mean none.
fn reason_and_props(body: &mut Bytes, v5: bool, ctx: Context) -> Result<(u8, Properties), DecodeError> {
    if !v5 || body.is_empty() {
        return Ok((0, Properties::default()));
    }
    let reason = read_u8(body)?;
    let properties = if body.is_empty() { Properties::default() } else { Properties::decode(body, ctx)? };
    Ok((reason, properties))
}

fn ack(first: u8, flags: u8, body: &mut Bytes, v5: bool) -> Result<Ack, DecodeError> {
    expect_flags(first, flags)?;
    let packet_id = packet_id(body)?;
    let (reason, properties) = reason_and_props(body, v5, Context::PubResponse)?;
    Ok(Ack { packet_id, reason, properties })
}

/// The protocol version and whether the bridge bit (0x80, Mosquitto's `try_private`) is set on the level.
fn protocol(body: &mut Bytes) -> Result<(ProtocolVersion, bool), DecodeError> {
    let name = read_binary(body)?;
    let level = read_u8(body)?;
    let version = match (&name[..], level & 0x7F) {
        (b"MQIsdp", 3) => ProtocolVersion::V3_1,
        (b"MQTT", 4) => ProtocolVersion::V3_1_1,
        (b"MQTT", 5) => ProtocolVersion::V5,
        _ => return Err(DecodeError::UnsupportedProtocol { name: String::from_utf8_lossy(&name).into_owned(), level }),
    };
    Ok((version, level & 0x80 != 0))
}

fn connect(body: &mut Bytes) -> Result<Connect, DecodeError> {
    let (protocol, bridge) = protocol(body)?;
    let flags = read_u8(body)?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("CONNECT reserved flag set [MQTT-3.1.2-3]"));
    }
    let has_will = flags & 0x04 != 0;
    let will_qos = QoS::from_u8((flags >> 3) & 0x03).ok_or(DecodeError::Malformed("will QoS 3 [MQTT-3.1.2-14]"))?;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::Malformed("will QoS or retain set without a will [MQTT-3.1.2-13]"));
    }
    if has_password && !has_username && !protocol.is_v5() {
        return Err(DecodeError::Malformed("password without a user name [MQTT-3.1.2-22]"));
    }
    let keep_alive = read_u16(body)?;
    let properties = props(body, protocol, Context::Connect)?;
    let client_id = read_string(body)?;
    let will = if has_will {
        let properties = props(body, protocol, Context::Will)?;
        let topic = read_string(body)?;
        validate_topic_name(&topic).map_err(DecodeError::TopicName)?;
        let payload = read_binary(body)?;
        Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties })
    } else {
        None
    };
    let username = if has_username { Some(read_string(body)?) } else { None };
    let password = if has_password { Some(read_binary(body)?) } else { None };
    Ok(Connect {
        protocol,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
        bridge,
    })
}

fn publish(first: u8, body: &mut Bytes, version: ProtocolVersion) -> Result<Publish, DecodeError> {
    let dup = first & 0x08 != 0;
    let retain = first & 0x01 != 0;
    let qos = QoS::from_u8((first >> 1) & 0x03).ok_or(DecodeError::Malformed("PUBLISH with QoS 3 [MQTT-3.3.1-4]"))?;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]"));
    }
    let topic = read_string(body)?;
    let packet_id = if qos == QoS::AtMostOnce { None } else { Some(packet_id(body)?) };
    let properties = props(body, version, Context::Publish)?;
    if !(topic.is_empty() && properties.topic_alias.is_some()) {
        validate_topic_name(&topic).map_err(DecodeError::TopicName)?;
    }
    let payload = body.split_to(body.len());
    Ok(Publish { dup, qos, retain, topic, packet_id, properties, payload })
}

fn subscription_options(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
    if byte & reserved != 0 {
        return Err(DecodeError::Malformed("reserved subscription option bits set [MQTT-3.8.3-5]"));
    }
    let qos = QoS::from_u8(byte & 0x03).ok_or(DecodeError::Malformed("subscription with QoS 3 [MQTT-3-8.3-4]"))?;
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::Protocol("retain handling 3 [MQTT-3.8.3-5]")),
    };
    Ok(SubscriptionOptions { qos, no_local: byte & 0x04 != 0, retain_as_published: byte & 0x08 != 0, retain_handling })
}

fn subscribe(first: u8, body: &mut Bytes, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    expect_flags(first, 2)?;
    let packet_id = packet_id(body)?;
    let properties = props(body, version, Context::Subscribe)?;
    let mut filters = Vec::new();
    while !body.is_empty() {
        let filter = read_string(body)?;
        validate_topic_filter(&filter).map_err(DecodeError::TopicFilter)?;
        let options = subscription_options(read_u8(body)?, version)?;
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without a topic filter [MQTT-3.8.3-3]"));
    }
    Ok(Subscribe { packet_id, filters, properties })
}

fn unsubscribe(first: u8, body: &mut Bytes, version: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    expect_flags(first, 2)?;
    let packet_id = packet_id(body)?;
    let properties = props(body, version, Context::Unsubscribe)?;
    let mut filters = Vec::new();
    while !body.is_empty() {
        let filter = read_string(body)?;
        validate_topic_filter(&filter).map_err(DecodeError::TopicFilter)?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]"));
    }
    Ok(Unsubscribe { packet_id, filters, properties })
}
