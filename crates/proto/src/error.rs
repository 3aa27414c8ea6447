//! Codec errors. Each decode error maps to exactly one 5.0 reason code in [`DecodeError::reason_code`].

use crate::reason;
use crate::topic::TopicError;

/// Why bytes received are not a valid packet. "Need more bytes" is `Ok(None)`, never an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    TooLarge { size: u64, max: u32 },
    #[error("unsupported protocol name {name:?} with level {level}")]
    UnsupportedProtocol { name: String, level: u8 },
    #[error("invalid topic name: {0}")]
    TopicName(TopicError),
    #[error("invalid topic filter: {0}")]
    TopicFilter(TopicError),
}

impl DecodeError {
    /// The reason code a 5.0 server or client sends in DISCONNECT (or CONNACK) for this error.
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::Malformed(_) => reason::MALFORMED_PACKET,
            DecodeError::Protocol(_) => reason::PROTOCOL_ERROR,
            DecodeError::TooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol { .. } => reason::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicName(_) => reason::TOPIC_NAME_INVALID,
            DecodeError::TopicFilter(_) => reason::TOPIC_FILTER_INVALID,
        }
    }
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("a string or binary field of {0} bytes is longer than 65535 bytes")]
    FieldTooLong(usize),
    #[error("packet body of {0} bytes exceeds the 268435455 bytes a remaining length can express")]
    PacketTooLong(usize),
    #[error("{0} does not exist before MQTT 5.0")]
    NotInVersion(&'static str),
    #[error("a packet with QoS {0} needs a packet id")]
    MissingPacketId(u8),
}
