//! The MQTT wire format for 3.1, 3.1.1 and 5.0: one [`Packet`] model, [`decode`] and [`encode`].
//!
//! Owns: packet types, properties, reason codes, topic validation and matching. Must not: do I/O, know
//! about sockets, sessions or time. Broker and client share this one codec.

mod decode;
mod encode;
mod error;
mod packet;
mod properties;
pub mod reason;
pub mod topic;
mod wire;

pub use decode::{decode, frame_len, Limits};
pub use encode::{encode, encode_publish, encoded_len, publish_len};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use properties::Properties;
pub use wire::MAX_VARINT;
