//! What a listener puts between the TCP socket and MQTT ([`Wrapping`]: TLS, WebSocket, or an HTTP
//! listener's settings), and the handshakes that unwrap a new socket into a byte stream for MQTT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::broker::Broker;
use crate::tls::{CertUsername, TlsListener};
use crate::transport::Stream;

/// What a listener puts between the TCP socket and MQTT: TLS, WebSocket, both, or nothing.
#[derive(Debug, Clone, Default)]
pub struct Wrapping {
    /// The TLS configuration (`certfile` given), shared with the SIGHUP reload.
    pub tls: Option<Arc<TlsListener>>,
    /// `protocol websockets`.
    pub websockets: bool,
    /// `http_dir`: static files for plain HTTP GET requests on a WebSocket listener.
    pub http_dir: Option<PathBuf>,
    /// `protocol http`: the listener serves metrics, the admin API and the dashboard (`http/`), not MQTT.
    pub http: Option<HttpSettings>,
    /// `websockets_headers_size`: the largest WebSocket upgrade request head (`None`: 16 KiB).
    pub websockets_headers_size: Option<usize>,
}

impl Wrapping {
    /// The transport's name in log lines.
    pub(crate) fn name(&self) -> &'static str {
        if self.http.is_some() {
            return if self.tls.is_some() { "HTTPS admin" } else { "HTTP admin" };
        }
        match (self.tls.is_some(), self.websockets) {
            (false, false) => "MQTT",
            (true, false) => "TLS",
            (false, true) => "WebSocket",
            (true, true) => "TLS WebSocket",
        }
    }
}

/// What an HTTP listener needs beyond its transport.
#[derive(Clone, Default)]
pub struct HttpSettings {
    /// `http_token`: a bearer token that grants access (mqttd's own directive).
    pub token: Option<String>,
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("HttpSettings").field("token", &self.token.as_ref().map(|_| "(set)")).finish()
    }
}

/// [`wrap`] within the connect timeout; logs why when it fails.
pub(crate) async fn wrap_within(
    broker: &Broker,
    stream: TcpStream,
    peer: SocketAddr,
    index: usize,
    wrapping: Arc<Wrapping>,
) -> Option<(Stream, CertUsername)> {
    let limit = broker.settings.connect_timeout;
    match tokio::time::timeout(limit, wrap(broker, stream, &wrapping)).await {
        Ok(Ok(wrapped)) => Some(wrapped),
        Ok(Err(why)) => {
            tracing::info!(%peer, listener = index, "closed before MQTT: {why}");
            None
        }
        Err(_) => {
            let name = wrapping.name();
            tracing::info!(%peer, listener = index, "closed: {name} handshake not finished within {limit:?}");
            None
        }
    }
}

/// Runs the listener's handshakes (TLS, WebSocket upgrade) on a new socket. The first byte tells a
/// client that speaks the wrong protocol for this port; the error text is the log line.
async fn wrap(broker: &Broker, stream: TcpStream, wrapping: &Wrapping) -> Result<(Stream, CertUsername), String> {
    if wrapping.tls.is_none() && !wrapping.websockets {
        // Plain MQTT: no peek (one syscall less per connection); a TLS or HTTP client is recognised by
        // the first packet's decoder instead (`connect::misdirected`).
        return Ok((Stream::Tcp(stream), CertUsername::Unused));
    }
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await.map_err(|e| format!("socket error: {e}"))?;
    if n == 0 {
        return Err("the client closed the connection without sending anything".into());
    }
    let Some(tls) = &wrapping.tls else {
        if first[0] == 0x16 {
            return Err(format!("the client sent a TLS ClientHello, but this {} listener is not TLS", wrapping.name()));
        }
        if first[0] == b'G' && !wrapping.websockets {
            return Err("the client sent an HTTP request (a WebSocket client?) to a plain MQTT listener".into());
        }
        if !wrapping.websockets {
            return Ok((Stream::Tcp(stream), CertUsername::Unused));
        }
        let ws = crate::ws::accept(stream, wrapping.http_dir.as_deref(), wrapping.websockets_headers_size)
            .await
            .map_err(|e| e.to_string())?;
        return Ok((Stream::Wrapped(Box::new(ws)), CertUsername::Unused));
    };
    match first[0] {
        0x16 => {}
        0x10 => return Err("the client sent a plain MQTT CONNECT to a TLS listener".into()),
        b'G' | b'H' | b'P' => return Err("the client sent plain HTTP to a TLS listener".into()),
        other => return Err(format!("the client did not start a TLS handshake (first byte {other:#04x})")),
    }
    let stream = tls.acceptor().accept(stream).await.map_err(|e| {
        crate::observe::add(&broker.counters.tls_handshake_failures, 1);
        format!("TLS handshake failed: {e}")
    })?;
    let cert_username = tls.cert_username(stream.get_ref().1);
    if !wrapping.websockets {
        return Ok((Stream::Wrapped(Box::new(stream)), cert_username));
    }
    let ws = crate::ws::accept(stream, wrapping.http_dir.as_deref(), wrapping.websockets_headers_size)
        .await
        .map_err(|e| e.to_string())?;
    Ok((Stream::Wrapped(Box::new(ws)), cert_username))
}
