//! Transports: the byte streams MQTT runs over. The client only needs `AsyncRead + AsyncWrite`, so TLS and
//! WebSocket streams plug in here without touching the protocol code.

use mqttd_proto::ProtocolVersion;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::options::ConnectOptions;

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

/// TLS settings (mqtt.js `--ca`, `--cert`, `--key`, `--insecure`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA certificates (PEM) that verify the server; `None`: the system's store.
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM), sent when the server asks for one.
    pub cert_file: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<std::path::PathBuf>,
    /// Accept any server certificate.
    pub insecure: bool,
    /// A directory of PEM CA certificates (`*.crt`, `*.pem`), added to `ca_file`'s.
    pub ca_path: Option<std::path::PathBuf>,
    /// ALPN protocol names to offer.
    pub alpn: Vec<Vec<u8>>,
    /// Offer TLS 1.3 only (otherwise 1.2 and 1.3).
    pub tls13_only: bool,
}

/// Opens the transport `options` name (TCP, then TLS and/or the WebSocket upgrade), within the connect
/// timeout. Each step's failure is its own error: DNS, TCP, TLS verification, WebSocket upgrade.
pub async fn open(options: &ConnectOptions) -> Result<Box<dyn Transport>> {
    let (host, port, timeout) = (options.host.as_str(), options.port, options.connect_timeout);
    match tokio::time::timeout(timeout, layers(options)).await {
        Ok(result) => result,
        Err(_) => Err(Error::ConnectTimeout { host: host.to_owned(), port, timeout }),
    }
}

async fn layers(options: &ConnectOptions) -> Result<Box<dyn Transport>> {
    let (host, port) = (options.host.as_str(), options.port);
    let stream = tcp(host, port, options.bind_address).await?;
    let subprotocol = if options.version == ProtocolVersion::V3_1 { "mqttv3.1" } else { "mqtt" };
    let path = if options.ws_path.starts_with('/') { options.ws_path.clone() } else { format!("/{}", options.ws_path) };
    let host_header = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let url = format!("{}://{host_header}{path}", options.transport.scheme());
    match options.transport {
        TransportKind::Tcp => Ok(Box::new(stream)),
        TransportKind::Tls => Ok(Box::new(crate::tls::connect(stream, host, port, &options.tls).await?)),
        TransportKind::WebSocket => {
            Ok(Box::new(crate::ws::connect(stream, &url, &host_header, &path, subprotocol).await?))
        }
        TransportKind::SecureWebSocket => {
            let tls = crate::tls::connect(stream, host, port, &options.tls).await?;
            Ok(Box::new(crate::ws::connect(tls, &url, &host_header, &path, subprotocol).await?))
        }
    }
}

/// Resolves `host` and tries each address in turn; the error names the host, the port and the last OS error.
async fn tcp(host: &str, port: u16, bind: Option<std::net::IpAddr>) -> Result<TcpStream> {
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| Error::Resolve { host: host.to_owned(), source })?;
    let mut last = None;
    for addr in addrs {
        match connect_from(addr, bind).await {
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

/// Connects to `addr`, from `bind` (port chosen by the system) when given.
async fn connect_from(addr: std::net::SocketAddr, bind: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(local) = bind else { return TcpStream::connect(addr).await };
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(std::net::SocketAddr::new(local, 0))?;
    socket.connect(addr).await
}
