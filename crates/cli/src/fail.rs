//! Exit codes and error messages: what failed, why, and what to try next.

use mqttd_client::{proto::reason, Error};

pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const CANNOT_CONNECT: u8 = 3;
pub const REFUSED: u8 = 4;
pub const NOT_ACCEPTED: u8 = 5;
/// As mosquitto_sub: ETIMEDOUT.
pub const TIMEOUT: u8 = 27;
pub const INTERRUPTED: u8 = 130;

/// A failure that ends the program with `code`.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { code: USAGE, message: message.into(), hint: None }
    }

    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    /// Prints the failure on stderr.
    pub fn report(&self) {
        eprintln!("mqtt: error: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("mqtt: hint: {hint}");
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::new(ERROR, e.to_string())
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let message = e.to_string();
        match &e {
            Error::Resolve { .. } | Error::NoAddress { .. } => {
                Failure::new(CANNOT_CONNECT, message).with_hint("check the host name given with -h/--hostname")
            }
            Error::Connect { host, port, .. } | Error::ConnectTimeout { host, port, .. } => {
                Failure::new(CANNOT_CONNECT, message).with_hint(format!(
                    "is an MQTT broker listening on {host}:{port}? start one (mqttd) or give -h HOST -p PORT"
                ))
            }
            Error::UnsupportedTransport { .. } => Failure::new(CANNOT_CONNECT, message),
            Error::Tls { .. } | Error::TlsFile { .. } | Error::TlsConfig(_) => Failure::new(CANNOT_CONNECT, message),
            Error::WebSocketUpgrade { .. } | Error::WebSocket { .. } => Failure::new(CANNOT_CONNECT, message)
                .with_hint("is this a WebSocket listener? check -p/--port and --ws-path"),
            Error::Refused { .. } => {
                let failure = Failure::new(REFUSED, message);
                match e.refusal_reason() {
                    Some(reason::BAD_USER_NAME_OR_PASSWORD | reason::NOT_AUTHORIZED) => {
                        failure.with_hint("check -u/--username and -P/--password")
                    }
                    Some(reason::CLIENT_IDENTIFIER_NOT_VALID) => {
                        failure.with_hint("check -i/--client-id, or leave it out to get a random one")
                    }
                    Some(reason::UNSUPPORTED_PROTOCOL_VERSION) => {
                        failure.with_hint("try another -V/--protocol-version (3.1, 3.1.1 or 5)")
                    }
                    _ => failure,
                }
            }
            Error::PublishRefused { .. } => Failure::new(NOT_ACCEPTED, message),
            Error::InvalidTopic { .. } | Error::NeedsV5(_) => Failure::usage(message),
            _ => Failure::new(ERROR, message),
        }
    }
}
