//! MQTT 5.0 properties (section 2.2.2): one struct for every packet, with the set of identifiers each
//! packet may carry checked on decode.

use bytes::{BufMut, Bytes};

use crate::error::{DecodeError, EncodeError};
use crate::wire::{
    check_field, read_binary, read_string, read_u16, read_u32, read_u8, read_varint, varint_len, write_binary,
    write_varint,
};

/// All 5.0 properties. Unset properties are `None` or empty; a packet before 5.0 has none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub user_properties: Vec<(String, String)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

/// Which packet a property block belongs to; decides which identifiers are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Connect,
    ConnAck,
    Publish,
    Will,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    PubResponse,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

fn allowed(id: u8, ctx: Context) -> bool {
    use Context::*;
    match id {
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => matches!(ctx, Publish | Will),
        0x0B => matches!(ctx, Publish | Subscribe),
        0x11 => matches!(ctx, Connect | ConnAck | Disconnect),
        0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => ctx == ConnAck,
        0x15 | 0x16 => matches!(ctx, Connect | ConnAck | Auth),
        0x17 | 0x19 => ctx == Connect,
        0x18 => ctx == Will,
        0x1C => matches!(ctx, ConnAck | Disconnect),
        0x1F => matches!(ctx, ConnAck | PubResponse | SubAck | UnsubAck | Disconnect | Auth),
        0x21 | 0x22 | 0x27 => matches!(ctx, Connect | ConnAck),
        0x23 => ctx == Publish,
        0x26 => true,
        _ => false,
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol("a property appears twice [MQTT-2.2.2-2]"));
    }
    *slot = Some(value);
    Ok(())
}

fn read_flag(buf: &mut Bytes) -> Result<u8, DecodeError> {
    let value = read_u8(buf)?;
    if value > 1 {
        return Err(DecodeError::Protocol("a property that must be 0 or 1 has another value"));
    }
    Ok(value)
}

impl Properties {
    /// No property set, as a constant (a `&'static` default for borrowers).
    pub const EMPTY: Properties = Properties {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };

    /// Whether no property is set (field by field: no default is built to compare with).
    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval.is_none()
            && self.content_type.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.subscription_identifiers.is_empty()
            && self.session_expiry_interval.is_none()
            && self.assigned_client_identifier.is_none()
            && self.server_keep_alive.is_none()
            && self.authentication_method.is_none()
            && self.authentication_data.is_none()
            && self.request_problem_information.is_none()
            && self.will_delay_interval.is_none()
            && self.request_response_information.is_none()
            && self.response_information.is_none()
            && self.server_reference.is_none()
            && self.reason_string.is_none()
            && self.receive_maximum.is_none()
            && self.topic_alias_maximum.is_none()
            && self.topic_alias.is_none()
            && self.maximum_qos.is_none()
            && self.retain_available.is_none()
            && self.user_properties.is_empty()
            && self.maximum_packet_size.is_none()
            && self.wildcard_subscription_available.is_none()
            && self.subscription_identifier_available.is_none()
            && self.shared_subscription_available.is_none()
    }

    /// Reads a property length and the properties that follow it.
    pub(crate) fn decode(buf: &mut Bytes, ctx: Context) -> Result<Properties, DecodeError> {
        let len = read_varint(buf)? as usize;
        crate::wire::need(buf, len)?;
        let mut block = buf.split_to(len);
        let mut p = Properties::default();
        while !block.is_empty() {
            let id = read_varint(&mut block)?;
            let id = u8::try_from(id).map_err(|_| DecodeError::Malformed("unknown property identifier"))?;
            if !allowed(id, ctx) {
                return Err(DecodeError::Malformed("property not allowed in this packet or unknown"));
            }
            p.decode_one(id, &mut block)?;
        }
        Ok(p)
    }

    fn decode_one(&mut self, id: u8, b: &mut Bytes) -> Result<(), DecodeError> {
        match id {
            0x01 => set_once(&mut self.payload_format_indicator, read_flag(b)?),
            0x02 => set_once(&mut self.message_expiry_interval, read_u32(b)?),
            0x03 => set_once(&mut self.content_type, read_string(b)?),
            0x08 => {
                let topic = read_string(b)?;
                if topic.contains(['+', '#']) {
                    return Err(DecodeError::Protocol("response topic with a wildcard [MQTT-3.3.2-14]"));
                }
                set_once(&mut self.response_topic, topic)
            }
            0x09 => set_once(&mut self.correlation_data, read_binary(b)?),
            0x0B => {
                let value = read_varint(b)?;
                if value == 0 {
                    return Err(DecodeError::Protocol("subscription identifier 0 [MQTT-3.8.2.1]"));
                }
                self.subscription_identifiers.push(value);
                Ok(())
            }
            0x11 => set_once(&mut self.session_expiry_interval, read_u32(b)?),
            0x12 => set_once(&mut self.assigned_client_identifier, read_string(b)?),
            0x13 => set_once(&mut self.server_keep_alive, read_u16(b)?),
            0x15 => set_once(&mut self.authentication_method, read_string(b)?),
            0x16 => set_once(&mut self.authentication_data, read_binary(b)?),
            0x17 => set_once(&mut self.request_problem_information, read_flag(b)?),
            0x18 => set_once(&mut self.will_delay_interval, read_u32(b)?),
            0x19 => set_once(&mut self.request_response_information, read_flag(b)?),
            0x1A => set_once(&mut self.response_information, read_string(b)?),
            0x1C => set_once(&mut self.server_reference, read_string(b)?),
            0x1F => set_once(&mut self.reason_string, read_string(b)?),
            0x21 => {
                let value = read_u16(b)?;
                if value == 0 {
                    return Err(DecodeError::Protocol("receive maximum 0 [MQTT-3.1.2.11.3]"));
                }
                set_once(&mut self.receive_maximum, value)
            }
            0x22 => set_once(&mut self.topic_alias_maximum, read_u16(b)?),
            0x23 => set_once(&mut self.topic_alias, read_u16(b)?),
            0x24 => set_once(&mut self.maximum_qos, read_flag(b)?),
            0x25 => set_once(&mut self.retain_available, read_flag(b)?),
            0x26 => {
                let key = read_string(b)?;
                let value = read_string(b)?;
                self.user_properties.push((key, value));
                Ok(())
            }
            0x27 => {
                let value = read_u32(b)?;
                if value == 0 {
                    return Err(DecodeError::Protocol("maximum packet size 0 [MQTT-3.1.2.11.4]"));
                }
                set_once(&mut self.maximum_packet_size, value)
            }
            0x28 => set_once(&mut self.wildcard_subscription_available, read_flag(b)?),
            0x29 => set_once(&mut self.subscription_identifier_available, read_flag(b)?),
            0x2A => set_once(&mut self.shared_subscription_available, read_flag(b)?),
            _ => Err(DecodeError::Malformed("unknown property identifier")),
        }
    }

    /// Length of the properties without the length prefix.
    pub(crate) fn body_len(&self) -> usize {
        let byte = |o: &Option<u8>| o.map_or(0, |_| 2);
        let short = |o: &Option<u16>| o.map_or(0, |_| 3);
        let int = |o: &Option<u32>| o.map_or(0, |_| 5);
        let text = |o: &Option<String>| o.as_ref().map_or(0, |s| 3 + s.len());
        let bin = |o: &Option<Bytes>| o.as_ref().map_or(0, |s| 3 + s.len());
        byte(&self.payload_format_indicator)
            + int(&self.message_expiry_interval)
            + text(&self.content_type)
            + text(&self.response_topic)
            + bin(&self.correlation_data)
            + self.subscription_identifiers.iter().map(|&v| 1 + varint_len(v as usize)).sum::<usize>()
            + int(&self.session_expiry_interval)
            + text(&self.assigned_client_identifier)
            + short(&self.server_keep_alive)
            + text(&self.authentication_method)
            + bin(&self.authentication_data)
            + byte(&self.request_problem_information)
            + int(&self.will_delay_interval)
            + byte(&self.request_response_information)
            + text(&self.response_information)
            + text(&self.server_reference)
            + text(&self.reason_string)
            + short(&self.receive_maximum)
            + short(&self.topic_alias_maximum)
            + short(&self.topic_alias)
            + byte(&self.maximum_qos)
            + byte(&self.retain_available)
            + self.user_properties.iter().map(|(k, v)| 5 + k.len() + v.len()).sum::<usize>()
            + int(&self.maximum_packet_size)
            + byte(&self.wildcard_subscription_available)
            + byte(&self.subscription_identifier_available)
            + byte(&self.shared_subscription_available)
    }

    /// Length including the variable byte integer length prefix.
    pub(crate) fn encoded_len(&self) -> usize {
        let body = self.body_len();
        varint_len(body) + body
    }

    /// Checks every string and binary property fits its 16-bit length.
    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        for s in [
            &self.content_type,
            &self.response_topic,
            &self.assigned_client_identifier,
            &self.authentication_method,
            &self.response_information,
            &self.server_reference,
            &self.reason_string,
        ]
        .into_iter()
        .flatten()
        {
            check_field(s.len())?;
        }
        for b in [&self.correlation_data, &self.authentication_data].into_iter().flatten() {
            check_field(b.len())?;
        }
        for (k, v) in &self.user_properties {
            check_field(k.len())?;
            check_field(v.len())?;
        }
        Ok(())
    }

    /// Writes the length prefix and the properties; lengths were checked with [`Properties::check`].
    pub(crate) fn encode(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        write_varint(buf, self.body_len());
        let byte = put_u8;
        byte(buf, 0x01, self.payload_format_indicator);
        put_u32(buf, 0x02, self.message_expiry_interval);
        put_bin(buf, 0x03, self.content_type.as_deref().map(str::as_bytes));
        put_bin(buf, 0x08, self.response_topic.as_deref().map(str::as_bytes));
        put_bin(buf, 0x09, self.correlation_data.as_deref());
        for &id in &self.subscription_identifiers {
            buf.put_u8(0x0B);
            write_varint(buf, id as usize);
        }
        put_u32(buf, 0x11, self.session_expiry_interval);
        put_bin(buf, 0x12, self.assigned_client_identifier.as_deref().map(str::as_bytes));
        put_u16(buf, 0x13, self.server_keep_alive);
        put_bin(buf, 0x15, self.authentication_method.as_deref().map(str::as_bytes));
        put_bin(buf, 0x16, self.authentication_data.as_deref());
        byte(buf, 0x17, self.request_problem_information);
        put_u32(buf, 0x18, self.will_delay_interval);
        byte(buf, 0x19, self.request_response_information);
        put_bin(buf, 0x1A, self.response_information.as_deref().map(str::as_bytes));
        put_bin(buf, 0x1C, self.server_reference.as_deref().map(str::as_bytes));
        put_bin(buf, 0x1F, self.reason_string.as_deref().map(str::as_bytes));
        put_u16(buf, 0x21, self.receive_maximum);
        put_u16(buf, 0x22, self.topic_alias_maximum);
        put_u16(buf, 0x23, self.topic_alias);
        byte(buf, 0x24, self.maximum_qos);
        byte(buf, 0x25, self.retain_available);
        for (k, v) in &self.user_properties {
            buf.put_u8(0x26);
            write_binary(buf, k.as_bytes());
            write_binary(buf, v.as_bytes());
        }
        put_u32(buf, 0x27, self.maximum_packet_size);
        byte(buf, 0x28, self.wildcard_subscription_available);
        byte(buf, 0x29, self.subscription_identifier_available);
        byte(buf, 0x2A, self.shared_subscription_available);
        Ok(())
    }
}

fn put_u8(buf: &mut impl BufMut, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        buf.put_u8(id);
        buf.put_u8(v);
    }
}

fn put_u16(buf: &mut impl BufMut, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        buf.put_u8(id);
        buf.put_u16(v);
    }
}

fn put_u32(buf: &mut impl BufMut, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        buf.put_u8(id);
        buf.put_u32(v);
    }
}

fn put_bin(buf: &mut impl BufMut, id: u8, v: Option<&[u8]>) {
    if let Some(v) = v {
        buf.put_u8(id);
        write_binary(buf, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_empty_sees_every_property() {
        assert!(Properties::default().is_empty());
        assert!(Properties::EMPTY.is_empty());
        let set = [
            Properties { shared_subscription_available: Some(0), ..Properties::default() },
            Properties { user_properties: vec![("k".into(), "v".into())], ..Properties::default() },
            Properties { subscription_identifiers: vec![1], ..Properties::default() },
            Properties { correlation_data: Some(Bytes::new()), ..Properties::default() },
        ];
        for p in set {
            assert!(!p.is_empty(), "{p:?}");
        }
    }
}
