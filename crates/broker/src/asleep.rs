//! A connection without a task ([`Asleep`]): what the parker (`park.rs`) keeps of a [`Connection`] while
//! it is quiet, and the connection again when it wakes.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::broker::Broker;
use crate::connection::Connection;
use crate::end::interruption;
use crate::handle::{Client, Extras, Negotiated};
use crate::session::Session;
use crate::transport::{Stream, Transport};

/// What a parked connection keeps of its [`Connection`] (`park.rs`): the socket, the session and what CONNECT
/// negotiated; no buffers (it parks holding none), no transport state, so it stays small.
pub(crate) struct Asleep {
    pub socket: std::net::TcpStream,
    session: Arc<Session>,
    connection_id: u64,
    peer: SocketAddr,
    listener: u16,
    negotiated: Negotiated,
    extras: Option<Box<Extras>>,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl Asleep {
    /// A connection as it parks: its socket must have left tokio already ([`Stream::Parked`]) and the
    /// client must hold nothing else ([`Connection::holds_nothing`]); otherwise it comes back unchanged.
    #[allow(clippy::result_large_err)] // Once per park, moved straight into a task or the parker.
    pub(crate) fn from_connection(
        mut conn: Connection,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Asleep, (Connection, tokio::sync::OwnedSemaphorePermit)> {
        if !conn.holds_nothing() || conn.client.expiry_override.is_some() {
            return Err((conn, permit));
        }
        let Stream::Parked(Some(socket)) = std::mem::replace(&mut conn.io.stream, Stream::Parked(None)) else {
            return Err((conn, permit));
        };
        Ok(Asleep {
            socket,
            session: conn.client.session,
            connection_id: conn.client.connection_id,
            peer: conn.io.peer,
            listener: conn.io.listener,
            negotiated: conn.client.negotiated,
            extras: conn.client.extras,
            permit,
        })
    }

    pub(crate) fn session(&self) -> Arc<Session> {
        self.session.clone()
    }

    /// Whether the connection must end now, as a running one asks ([`Connection::interrupted`]).
    pub(crate) fn interrupted(&self, broker: &Broker) -> bool {
        interruption(broker, &self.session, self.connection_id, self.negotiated.keep_alive).is_some()
    }

    /// The client again, its socket still outside tokio (the task it runs in registers it).
    pub(crate) fn wake_up(self, broker: Arc<Broker>) -> (Connection, tokio::sync::OwnedSemaphorePermit) {
        let io = Transport::new(Stream::Parked(Some(self.socket)), self.peer, usize::from(self.listener));
        let client = Client {
            broker,
            session: self.session,
            connection_id: self.connection_id,
            negotiated: self.negotiated,
            // Only a DISCONNECT sets it, and a connection that received one ends: it never parks.
            expiry_override: None,
            retained_backlog: None,
            congested: None,
            busy: false,
            undecoded: false,
            extras: self.extras,
        };
        let client = Connection { io, client };
        (client, self.permit)
    }
}

#[cfg(test)]
mod tests {
    /// Memory per parked connection is a tracked figure (bench/README.md).
    #[test]
    fn a_parked_connection_stays_small() {
        let asleep = std::mem::size_of::<super::Asleep>();
        assert!(asleep <= 104, "Asleep grew to {asleep} bytes");
    }
}
