//! Transports: the byte streams MQTT runs over. The client only needs `AsyncRead + AsyncWrite`, so TLS and
//! WebSocket streams plug in here without touching the protocol code.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// A byte stream carrying MQTT packets.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// Which transport to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportKind {
    /// Plain TCP (`mqtt://`).
    #[default]
    Tcp,
    /// TLS over TCP (`mqtts://`).
    Tls,
    /// WebSocket (`ws://`).
    WebSocket,
    /// WebSocket over TLS (`wss://`).
    SecureWebSocket,
}

impl TransportKind {
    /// The URL scheme of the transport.
    pub fn scheme(self) -> &'static str {
        match self {
            TransportKind::Tcp => "mqtt",
            TransportKind::Tls => "mqtts",
            TransportKind::WebSocket => "ws",
            TransportKind::SecureWebSocket => "wss",
        }
    }
}

/// TLS settings, kept for the TLS transport (not yet in this build).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub ca_file: Option<std::path::PathBuf>,
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    pub insecure: bool,
}

/// Opens the transport to `host:port`, within `timeout`.
pub async fn open(kind: TransportKind, host: &str, port: u16, timeout: Duration) -> Result<Box<dyn Transport>> {
    match kind {
        TransportKind::Tcp => {
            let connect = tcp(host, port);
            match tokio::time::timeout(timeout, connect).await {
                Ok(result) => Ok(Box::new(result?)),
                Err(_) => Err(Error::ConnectTimeout { host: host.to_owned(), port, timeout }),
            }
        }
        other => Err(Error::UnsupportedTransport { transport: other.scheme() }),
    }
}

/// Resolves `host` and tries each address in turn; the error names the host, the port and the last OS error.
async fn tcp(host: &str, port: u16) -> Result<TcpStream> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| Error::Resolve { host: host.to_owned(), source })?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Small packets (acks, pings) must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(source) => Err(Error::Connect { host: host.to_owned(), port, source }),
        None => Err(Error::NoAddress { host: host.to_owned() }),
    }
}
