//! The WebSocket transport (`ws`, and `wss` over the TLS transport): the HTTP upgrade with subprotocol
//! `mqtt` (`mqttv3.1` for MQTT 3.1, as mqtt.js), then [`WsBytes`], which carries the MQTT byte stream
//! in binary messages. The broker crate has the same adapter for its side of the connection.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use base64::Engine as _;
use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

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
        return Ok(WsBytes { ws, pending: Bytes::new() });
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A WebSocket as a byte stream: each write is one binary message; reads return the bytes of binary
/// messages in order, however they are framed. A close message ends the stream.
pub struct WsBytes<S> {
    ws: WebSocketStream<S>,
    /// The rest of the last message read.
    pending: Bytes,
}

fn io_error(e: tokio_tungstenite::tungstenite::Error) -> std::io::Error {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Io(e) => e,
        Error::ConnectionClosed | Error::AlreadyClosed => std::io::ErrorKind::BrokenPipe.into(),
        other => std::io::Error::other(format!("WebSocket: {other}")),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Text(_))) => {
                    let e =
                        std::io::Error::new(std::io::ErrorKind::InvalidData, "WebSocket text frame from the broker");
                    return Poll::Ready(Err(e));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut self.ws).start_send(Message::Binary(Bytes::copy_from_slice(buf))).map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}
