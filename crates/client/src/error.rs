//! Client errors. Each variant names the step that failed and carries what a person needs to fix it.

use std::io;
use std::time::Duration;

use mqttd_proto::{reason, DecodeError, EncodeError, ProtocolVersion};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot resolve host name {host:?}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("host name {host:?} resolved to no address")]
    NoAddress { host: String },
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect { host: String, port: u16, source: io::Error },
    #[error("no connection to {host}:{port} within {timeout:?}")]
    ConnectTimeout { host: String, port: u16, timeout: Duration },
    #[error("{transport} is not supported yet by this build")]
    UnsupportedTransport { transport: &'static str },
    #[error("TLS handshake with {host}:{port} failed: {why}")]
    Tls { host: String, port: u16, why: String },
    #[error("cannot use {what} {}: {why}", path.display())]
    TlsFile { what: &'static str, path: std::path::PathBuf, why: String },
    #[error("TLS: {0}")]
    TlsConfig(String),
    #[error("WebSocket upgrade at {url} refused: HTTP {status} {reason}")]
    WebSocketUpgrade { url: String, status: u16, reason: String },
    #[error("WebSocket upgrade at {url} failed: {why}")]
    WebSocket { url: String, why: String },
    #[error("no CONNACK within {0:?}")]
    ConnAckTimeout(Duration),
    #[error("connection refused by the broker: {}", refused_name(*.version, *.code))]
    Refused { version: ProtocolVersion, code: u8, reason_string: Option<String> },
    #[error("the broker closed the connection {during}")]
    Closed { during: &'static str },
    #[error("the broker sent {packet} {during}, which is a protocol error")]
    Unexpected { packet: &'static str, during: &'static str },
    #[error("the broker disconnected us: {} (reason code {code:#04x}){}", reason::name(*.code), suffix(.reason_string))]
    Disconnected { code: u8, reason_string: Option<String> },
    #[error("keep-alive timeout: no PINGRESP from the broker within {0} s")]
    KeepAliveTimeout(u16),
    #[error("i/o error while {step}: {source}")]
    Io { step: &'static str, source: io::Error },
    #[error("invalid packet from the broker: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode packet: {0}")]
    Encode(#[from] EncodeError),
    #[error("invalid topic {topic:?}: {reason}")]
    InvalidTopic { topic: String, reason: mqttd_proto::topic::TopicError },
    #[error("the broker refused the publication to {topic:?}: {} (reason code {code:#04x}){}", reason::name(*.code), suffix(.reason_string))]
    PublishRefused { topic: String, code: u8, reason_string: Option<String> },
    #[error("{0} does not exist before MQTT 5; use -V 5")]
    NeedsV5(&'static str),
}

fn suffix(reason_string: &Option<String>) -> String {
    reason_string.as_ref().map(|s| format!(": {s}")).unwrap_or_default()
}

fn refused_name(version: ProtocolVersion, code: u8) -> String {
    if version.is_v5() {
        format!("{} (reason code {code:#04x})", reason::name(code))
    } else {
        format!("{} (return code {code})", reason::v3::connack_name(code))
    }
}

impl Error {
    /// Whether trying again later cannot help: a refusal, an unsupported transport, a bad argument, or a
    /// DISCONNECT whose reason is something we sent (or a takeover, where reconnecting would take the
    /// session back and forth). Server shutdown, keep-alive timeout, busy: retrying may help.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Refused { .. }
            | Error::UnsupportedTransport { .. }
            | Error::Tls { .. }
            | Error::TlsFile { .. }
            | Error::TlsConfig(_)
            | Error::WebSocketUpgrade { .. }
            | Error::InvalidTopic { .. }
            | Error::Encode(_)
            | Error::NeedsV5(_) => true,
            Error::Disconnected { code, .. } => !matches!(
                *code,
                reason::UNSPECIFIED_ERROR
                    | reason::SERVER_BUSY
                    | reason::SERVER_SHUTTING_DOWN
                    | reason::KEEP_ALIVE_TIMEOUT
                    | reason::USE_ANOTHER_SERVER
                    | reason::SERVER_MOVED
                    | reason::ADMINISTRATIVE_ACTION
                    | reason::CONNECTION_RATE_EXCEEDED
                    | reason::MAXIMUM_CONNECT_TIME
                    | reason::SERVER_UNAVAILABLE
            ),
            _ => false,
        }
    }

    /// For a CONNACK refusal, the code as a v5 reason code (3.1.1 return codes are mapped).
    pub fn refusal_reason(&self) -> Option<u8> {
        match self {
            Error::Refused { version, code, .. } if version.is_v5() => Some(*code),
            Error::Refused { code, .. } => Some(match *code {
                1 => reason::UNSUPPORTED_PROTOCOL_VERSION,
                2 => reason::CLIENT_IDENTIFIER_NOT_VALID,
                3 => reason::SERVER_UNAVAILABLE,
                4 => reason::BAD_USER_NAME_OR_PASSWORD,
                5 => reason::NOT_AUTHORIZED,
                _ => reason::UNSPECIFIED_ERROR,
            }),
            _ => None,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
