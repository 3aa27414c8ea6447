//! What a client did that ends its connection as a protocol error ([`ProtocolViolation`]): each knows the
//! reason code of the DISCONNECT it earns (5.0) and the spec statement it breaks. Its text is the log line
//! and the DISCONNECT's Reason String, so each is said once, here.

use mqttd_proto::{reason, DecodeError};

use crate::alias::AliasError;

/// A protocol violation by the client (or a refusal no acknowledgement can carry), which ends the
/// connection with `End::Protocol`.
#[derive(Debug)]
pub(crate) enum ProtocolViolation {
    /// A packet that does not decode: the decoder knows why and the code (boxed: rare, and large).
    Decode(Box<DecodeError>),
    /// The first byte of the connection is not CONNECT's; the packet type.
    FirstByteNotConnect(u8),
    /// The first packet decoded is not CONNECT; its name.
    FirstPacketNotConnect(&'static str),
    /// Another protocol spoken to a plain MQTT listener (TLS, HTTP), told by its first bytes.
    Misdirected(&'static str),
    SecondConnect,
    AuthWithoutMethod,
    /// A packet only servers send; its name.
    NotSentByClients(&'static str),
    /// An answer of ours would be over the client's Maximum Packet Size.
    OverClientMaximum {
        packet: &'static str,
        size: u32,
        max: u32,
    },
    /// A 5.0 acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) with a reason code it cannot carry.
    ReasonCodeNotAllowed(&'static str),
    QosNotSupported,
    RetainNotSupported,
    TopicAlias(AliasError),
    SubscriptionIdInPublish,
    ReceiveMaximumExceeded,
    /// A PUBLISH refused for `memory_limit` that no acknowledgement can carry (QoS 0, or 3.x).
    MemoryLimit,
    /// A PUBLISH refused for `max_topic_levels` that no acknowledgement can carry (QoS 0, or 3.x).
    TopicTooDeep,
    SubscriptionIds,
    NoLocalOnShared,
    ExpiryAfterZero,
    /// An acknowledgement of the wrong kind for its delivery's flow; the packet and the packet id.
    WrongFlow {
        packet: &'static str,
        packet_id: u16,
    },
}

impl ProtocolViolation {
    /// The reason code of the DISCONNECT a 5.0 client gets.
    pub(crate) fn code(&self) -> u8 {
        use ProtocolViolation::*;
        match self {
            Decode(e) => e.reason_code(),
            Misdirected(_) => reason::MALFORMED_PACKET,
            OverClientMaximum { .. } => reason::PACKET_TOO_LARGE,
            QosNotSupported => reason::QOS_NOT_SUPPORTED,
            RetainNotSupported => reason::RETAIN_NOT_SUPPORTED,
            TopicAlias(_) => reason::TOPIC_ALIAS_INVALID,
            ReceiveMaximumExceeded => reason::RECEIVE_MAXIMUM_EXCEEDED,
            MemoryLimit => reason::QUOTA_EXCEEDED,
            TopicTooDeep => reason::TOPIC_NAME_INVALID,
            FirstByteNotConnect(_)
            | FirstPacketNotConnect(_)
            | SecondConnect
            | AuthWithoutMethod
            | NotSentByClients(_)
            | ReasonCodeNotAllowed(_)
            | SubscriptionIdInPublish
            | SubscriptionIds
            | NoLocalOnShared
            | ExpiryAfterZero
            | WrongFlow { .. } => reason::PROTOCOL_ERROR,
        }
    }

    /// The spec statement the client broke, where one says it.
    pub(crate) fn statement(&self) -> Option<&'static str> {
        use ProtocolViolation::*;
        Some(match self {
            FirstByteNotConnect(_) | FirstPacketNotConnect(_) => "MQTT-3.1.0-1",
            SecondConnect => "MQTT-3.1.0-2",
            OverClientMaximum { .. } => "MQTT-3.1.2-24",
            ReasonCodeNotAllowed(packet) => match *packet {
                "PUBACK" => "MQTT-3.4.2-1",
                "PUBREC" => "MQTT-3.5.2-1",
                "PUBREL" => "MQTT-3.6.2-1",
                _ => "MQTT-3.7.2-1",
            },
            QosNotSupported => "MQTT-3.2.2-11",
            RetainNotSupported => "MQTT-3.2.2-14",
            SubscriptionIdInPublish => "MQTT-3.3.4-6",
            ReceiveMaximumExceeded => "MQTT-3.3.4-7",
            SubscriptionIds => "MQTT-3.8.2.1.2",
            NoLocalOnShared => "MQTT-3.8.3-4",
            ExpiryAfterZero => "MQTT-3.14.2-2",
            WrongFlow { .. } => "MQTT-4.3.3-1",
            Decode(_) | Misdirected(_) | AuthWithoutMethod | NotSentByClients(_) | TopicAlias(_) | MemoryLimit
            | TopicTooDeep => return None,
        })
    }

    /// What happened, without the statement.
    fn describe(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ProtocolViolation::*;
        match self {
            Decode(e) => write!(f, "{e}"),
            FirstByteNotConnect(byte) => write!(f, "first packet type {:#04x} is not CONNECT", byte >> 4 << 4),
            FirstPacketNotConnect(name) => write!(f, "first packet is {name}, not CONNECT"),
            Misdirected(why) => f.write_str(why),
            SecondConnect => f.write_str("second CONNECT"),
            AuthWithoutMethod => f.write_str("AUTH without enhanced authentication"),
            NotSentByClients(name) => write!(f, "{name} is not sent by clients"),
            OverClientMaximum { packet, size, max } => {
                write!(f, "a {packet} of {size} bytes is over the client's Maximum Packet Size {max}")
            }
            ReasonCodeNotAllowed(packet) => write!(f, "a reason code that {packet} cannot carry"),
            QosNotSupported => f.write_str("PUBLISH above the maximum QoS"),
            RetainNotSupported => f.write_str("retained PUBLISH while retain is unavailable"),
            TopicAlias(e) => write!(f, "{e}"),
            SubscriptionIdInPublish => f.write_str("subscription identifier in a client PUBLISH"),
            ReceiveMaximumExceeded => f.write_str("more QoS 2 messages than Receive Maximum"),
            MemoryLimit => f.write_str("memory_limit reached"),
            TopicTooDeep => f.write_str("topic too deep"),
            SubscriptionIds => f.write_str("more than one subscription identifier"),
            NoLocalOnShared => f.write_str("No Local on a shared subscription"),
            ExpiryAfterZero => f.write_str("DISCONNECT sets a session expiry after CONNECT set 0"),
            WrongFlow { packet, packet_id } => {
                write!(f, "{packet} for packet id {packet_id}, whose delivery is at another QoS or stage")
            }
        }
    }
}

impl std::fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.describe(f)?;
        match self.statement() {
            Some(statement) => write!(f, " [{statement}]"),
            None => Ok(()),
        }
    }
}

impl From<DecodeError> for ProtocolViolation {
    fn from(e: DecodeError) -> ProtocolViolation {
        ProtocolViolation::Decode(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::ProtocolViolation;

    /// The text names the statement once, at the end, and the code is the statement's.
    #[test]
    fn a_violation_says_its_statement_and_knows_its_code() {
        let v = ProtocolViolation::ReasonCodeNotAllowed("PUBACK");
        assert_eq!(v.to_string(), "a reason code that PUBACK cannot carry [MQTT-3.4.2-1]");
        assert_eq!(v.code(), mqttd_proto::reason::PROTOCOL_ERROR);
        let v = ProtocolViolation::QosNotSupported;
        assert_eq!(v.to_string(), "PUBLISH above the maximum QoS [MQTT-3.2.2-11]");
        assert_eq!(v.code(), mqttd_proto::reason::QOS_NOT_SUPPORTED);
        assert_eq!(ProtocolViolation::MemoryLimit.to_string(), "memory_limit reached");
    }
}
