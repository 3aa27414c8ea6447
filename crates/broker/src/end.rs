//! Why a connection ends ([`End`]), and the check running and parked connections share for whether it
//! must end now ([`interruption`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use mqttd_proto::reason;

use crate::broker::Broker;
use crate::observe::DisconnectReason;
use crate::session::Session;
use crate::violation::ProtocolViolation;

/// Why a connection ended; decides the log line, the will and the 5.0 DISCONNECT we send.
#[derive(Debug)]
pub(crate) enum End {
    /// The client sent DISCONNECT; `with_will` for 5.0 reason 0x04.
    Disconnect {
        with_will: bool,
    },
    KeepAlive(Duration),
    Closed,
    Io(std::io::Error),
    Takeover,
    /// An operator ended the connection (admin API `DELETE /api/v1/clients/ID`); `with_will` as asked.
    Kicked {
        with_will: bool,
    },
    /// A protocol violation: what, and the 5.0 reason code sent in DISCONNECT.
    Protocol(ProtocolViolation),
    Shutdown,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Disconnect { with_will: false } => f.write_str("client sent DISCONNECT"),
            End::Disconnect { with_will: true } => f.write_str("client sent DISCONNECT asking for its will (0x04)"),
            End::KeepAlive(d) => write!(f, "keep-alive timeout after {}s", d.as_secs_f32()),
            End::Closed => f.write_str("socket closed by peer"),
            End::Io(e) => write!(f, "socket error: {e}"),
            End::Takeover => f.write_str("session taken over by a new connection"),
            End::Kicked { .. } => f.write_str("disconnected by an operator"),
            End::Protocol(v) => write!(f, "protocol error ({}): {v}", reason::name(v.code())),
            End::Shutdown => f.write_str("server shutting down"),
        }
    }
}

impl End {
    /// The reason as the metrics and the events name it.
    pub(crate) fn reason(&self) -> DisconnectReason {
        match self {
            End::Disconnect { with_will: false } => DisconnectReason::Disconnect,
            End::Disconnect { with_will: true } => DisconnectReason::DisconnectWithWill,
            End::KeepAlive(_) => DisconnectReason::KeepAlive,
            End::Closed => DisconnectReason::Closed,
            End::Io(_) => DisconnectReason::SocketError,
            End::Takeover => DisconnectReason::Takeover,
            End::Kicked { .. } => DisconnectReason::Kicked,
            End::Protocol(..) => DisconnectReason::ProtocolError,
            End::Shutdown => DisconnectReason::Shutdown,
        }
    }

    /// The reason code of the DISCONNECT the server sends a 5.0 client, if any.
    pub(crate) fn disconnect_code(&self) -> Option<u8> {
        match self {
            End::Takeover => Some(reason::SESSION_TAKEN_OVER),
            End::Kicked { .. } => Some(reason::ADMINISTRATIVE_ACTION),
            End::Protocol(v) => Some(v.code()),
            End::Shutdown => Some(reason::SERVER_SHUTTING_DOWN),
            End::KeepAlive(_) => Some(reason::KEEP_ALIVE_TIMEOUT),
            _ => None,
        }
    }
}

/// The keep-alive allowance for a keep-alive of `seconds`: 1.5 times it [MQTT-3.1.2-24].
pub(crate) fn grace(seconds: u16) -> Duration {
    Duration::from_millis(u64::from(seconds) * 1500)
}

/// Why connection `connection_id` of `session` must end now, if it must: shutdown, takeover, or its
/// keep-alive expired (the sweeper marked it). Running and parked connections ask the same.
pub(crate) fn interruption(broker: &Broker, session: &Session, connection_id: u64, keep_alive: u16) -> Option<End> {
    if broker.shutting_down() {
        return Some(End::Shutdown);
    }
    match session.connection.load(Ordering::Acquire) {
        own if own == connection_id => {}
        crate::session::KICKED => return Some(End::Kicked { with_will: false }),
        crate::session::KICKED_WITH_WILL => return Some(End::Kicked { with_will: true }),
        _ => return Some(End::Takeover),
    }
    if keep_alive > 0 && session.keep_alive_deadline.load(Ordering::Relaxed) == crate::session::KEEP_ALIVE_EXPIRED {
        return Some(End::KeepAlive(grace(keep_alive)));
    }
    None
}

#[cfg(test)]
mod tests {
    /// Every handler returns `Result<(), End>`: a [`ProtocolViolation`](super::ProtocolViolation) keeps
    /// `End` as small as the `String` and reason code it replaced.
    #[test]
    fn an_end_stays_small() {
        let end = std::mem::size_of::<super::End>();
        assert!(end <= 32, "End grew to {end} bytes");
    }
}
