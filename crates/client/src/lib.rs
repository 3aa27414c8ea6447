//! `mqttd_client`: an async MQTT 3.1, 3.1.1 and 5.0 client on tokio and `mqttd_proto`.
//!
//! Owns: opening transports, CONNECT/CONNACK, QoS 0/1/2 flows both ways (QoS 2 delivered once), keep-alive,
//! subscribe/unsubscribe, DISCONNECT or closing without one (so the broker publishes the will), and
//! reconnecting. Must not: print, exit, or parse command lines; errors are values ([`Error`]).

mod client;
mod error;
mod options;
mod tls;
mod transport;
mod ws;

use std::time::Duration;

pub use client::{code_name, is_failure, Client, Message};
pub use error::{Error, Result};
pub use mqttd_proto as proto;
pub use options::{random_client_id, random_u64, ConnectOptions, Direction, PacketTrace};
pub use transport::{open, TlsOptions, Transport, TransportKind};

/// Connects, and after a failure that may pass (refused TCP connection, lost network, broker restarting)
/// tries again every `period`, reporting each failure to `on_error`. Returns the first permanent error
/// (for example a CONNACK refusal: retrying cannot fix credentials).
pub async fn connect_retrying(
    options: &ConnectOptions,
    period: Duration,
    mut on_error: impl FnMut(&Error),
) -> Result<Client> {
    loop {
        match Client::connect(options).await {
            Ok(client) => return Ok(client),
            Err(e) if e.is_permanent() => return Err(e),
            Err(e) => on_error(&e),
        }
        tokio::time::sleep(period).await;
    }
}
