//! The WebSocket transport (`ws`, and `wss` over the TLS transport): the HTTP upgrade with subprotocol
//! `mqtt` (`mqttv3.1` for MQTT 3.1, as mqtt.js), then [`WsBytes`], which carries the MQTT byte stream
//! in binary messages (crate `mqttd-ws`, shared with the broker).

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use mqttd_ws::{accept_key, WsBytes};

use crate::error::{Error, Result};

/// The largest HTTP response head we read.
const MAX_HEAD: usize = 16 * 1024;

/// Upgrades `stream` to a WebSocket at `url` (`ws://host:port/path`, for messages) asking for
/// `subprotocol`; `host_header` is the HTTP Host.
pub async fn connect<S>(
    mut stream: S,
    url: &str,
    host_header: &str,
    path: &str,
    subprotocol: &str,
) -> Result<WsBytes<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = |e: std::io::Error| Error::WebSocket { url: url.to_owned(), why: e.to_string() };
    let key_bytes = [crate::random_u64().to_be_bytes(), crate::random_u64().to_be_bytes()].concat();
    let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut buf = Vec::with_capacity(512);
    loop {
        if buf.len() >= MAX_HEAD {
            return Err(Error::WebSocket { url: url.to_owned(), why: "HTTP response head too large".into() });
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            let why = "the server closed the connection during the upgrade".to_owned();
            return Err(Error::WebSocket { url: url.to_owned(), why });
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => len,
            Err(e) => {
                let why = format!("the answer is not HTTP ({e}); is this a WebSocket port?");
                return Err(Error::WebSocket { url: url.to_owned(), why });
            }
        };
        let status = response.code.unwrap_or(0);
        if status != 101 {
            let reason = response.reason.unwrap_or("").to_owned();
            return Err(Error::WebSocketUpgrade { url: url.to_owned(), status, reason });
        }
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
        };
        if header("sec-websocket-accept").as_deref() != Some(accept_key(&key).as_str()) {
            let why = "the server's Sec-WebSocket-Accept does not match our key".to_owned();
            return Err(Error::WebSocket { url: url.to_owned(), why });
        }
        let rest = buf[len..].to_vec();
        let ws = WebSocketStream::from_partially_read(stream, rest, Role::Client, None).await;
        return Ok(WsBytes::new(ws));
    }
}
