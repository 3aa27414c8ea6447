//! The one error type of the load generator.

use std::net::SocketAddr;

/// Why a benchmark could not run or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid option: {0}")]
    Options(String),
    #[error("cannot resolve {host}:{port}: {reason}")]
    Resolve { host: String, port: u16, reason: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what} timed out after {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("the broker refused {what} with code 0x{code:02x}")]
    Refused { what: String, code: u8 },
    #[error("protocol error from the broker: {0}")]
    Protocol(String),
    #[error("cannot decode a packet from the broker: {0}")]
    Decode(#[from] mqttd_proto::DecodeError),
    #[error("cannot encode a packet: {0}")]
    Encode(#[from] mqttd_proto::EncodeError),
    #[error("a load task failed: {0}")]
    Task(String),
}

impl BenchError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> BenchError {
        BenchError::Io { what: what.into(), source }
    }
}
