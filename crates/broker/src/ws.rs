//! WebSocket listeners (`protocol websockets`): the HTTP upgrade with subprotocol `mqtt` or `mqttv3.1`
//! (RFC 6455 section 4.2), optional static files from `http_dir` for plain GET requests, and
//! [`WsBytes`] (shared with the client, crate `mqttd-ws`), which turns the WebSocket's binary messages back into the byte stream the MQTT
//! connection reads: an MQTT packet may span several frames and a frame may hold several packets.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

pub use mqttd_ws::{accept_key, WsBytes};

/// The largest HTTP request head we read unless `websockets_headers_size` says otherwise.
const MAX_HEAD: usize = 16 * 1024;
/// Subprotocols we speak, in our order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Why a WebSocket connection did not become an MQTT connection; the text is the log line.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("socket error during the WebSocket handshake: {0}")]
    Io(#[from] std::io::Error),
    #[error("the first bytes are a TLS ClientHello, but this WebSocket listener is not TLS")]
    TlsOnPlain,
    #[error("the first bytes are an MQTT packet, but this listener expects a WebSocket upgrade")]
    MqttOnWebSocket,
    #[error("not an HTTP request: {0}")]
    BadRequest(String),
    #[error("HTTP request head larger than {0} bytes (websockets_headers_size); answered 431")]
    HeadTooLarge(usize),
    #[error("HTTP {method} {path} is not a WebSocket upgrade; answered {status}")]
    NotUpgrade { method: String, path: String, status: u16 },
    #[error("served HTTP {method} {path} from http_dir: {status}")]
    Served { method: String, path: String, status: u16 },
    #[error("WebSocket upgrade without subprotocol mqtt or mqttv3.1 (offered: {offered:?}); answered 400")]
    NoSubprotocol { offered: String },
    #[error("WebSocket upgrade with Sec-WebSocket-Version {0:?}, not 13; answered 426")]
    Version(String),
}

/// A parsed request head.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// Every value of header `name`, comma-separated lists split.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn has(&self, name: &str, token: &str) -> bool {
        self.values(name).any(|v| v.eq_ignore_ascii_case(token))
    }
}

/// Accepts a WebSocket connection on `stream`: reads the HTTP request, answers it, and on a valid
/// upgrade returns the MQTT byte stream. Plain GET requests are served from `http_dir` when set.
pub async fn accept<S>(mut stream: S, http_dir: Option<&Path>, max_head: Option<usize>) -> Result<WsBytes<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max_head = max_head.unwrap_or(MAX_HEAD);
    let (request, rest) = match read_head(&mut stream, max_head).await {
        Err(WsError::HeadTooLarge(n)) => {
            let body = b"request header too large (websockets_headers_size)\n";
            respond(&mut stream, "431 Request Header Fields Too Large", &[("Content-Type", "text/plain")], body).await;
            return Err(WsError::HeadTooLarge(n));
        }
        other => other?,
    };
    let upgrade = request.has("connection", "upgrade") && request.has("upgrade", "websocket");
    if !upgrade {
        return Err(answer_http(&mut stream, request, http_dir).await);
    }
    let version = request.values("sec-websocket-version").next().unwrap_or("").to_owned();
    if version != "13" {
        respond(&mut stream, "426 Upgrade Required", &[("Sec-WebSocket-Version", "13")], b"").await;
        return Err(WsError::Version(version));
    }
    let offered: Vec<&str> = request.values("sec-websocket-protocol").collect();
    let chosen = offered.iter().find(|p| SUBPROTOCOLS.iter().any(|s| s.eq_ignore_ascii_case(p)));
    let (Some(chosen), Some(key)) = (chosen, request.values("sec-websocket-key").next()) else {
        let body = b"MQTT over WebSocket needs the subprotocol mqtt (Sec-WebSocket-Protocol: mqtt)\n";
        respond(&mut stream, "400 Bad Request", &[("Content-Type", "text/plain")], body).await;
        return Err(WsError::NoSubprotocol { offered: offered.join(", ") });
    };
    let accept = accept_key(key);
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {chosen}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;
    let ws = WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(ws_config())).await;
    Ok(WsBytes::new(ws))
}

fn ws_config() -> WebSocketConfig {
    // MQTT packets may be large (256 MB); the MQTT layer enforces its own limits on the byte stream.
    WebSocketConfig::default().max_message_size(Some(268_435_456 + 5)).max_frame_size(Some(268_435_456 + 5))
}

/// Reads until the end of the request head; returns it and any bytes read past it.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, max: usize) -> Result<(Request, Vec<u8>), WsError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() >= max {
            return Err(WsError::HeadTooLarge(max));
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(WsError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        match buf.first() {
            Some(0x16) => return Err(WsError::TlsOnPlain),
            Some(0x10) => return Err(WsError::MqttOnWebSocket),
            _ => {}
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => {
                let request = Request {
                    method: parsed.method.unwrap_or("").to_owned(),
                    path: parsed.path.unwrap_or("").to_owned(),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect(),
                };
                return Ok((request, buf[len..].to_vec()));
            }
            Err(e) => return Err(WsError::BadRequest(e.to_string())),
        }
    }
}

/// Answers a request that is not an upgrade: a file from `http_dir`, or 400 / 404 / 405.
async fn answer_http<S: AsyncWrite + Unpin>(stream: &mut S, request: Request, http_dir: Option<&Path>) -> WsError {
    let Request { method, path, .. } = request;
    let Some(dir) = http_dir else {
        let body = b"This is an MQTT over WebSocket endpoint: connect with a WebSocket client and subprotocol mqtt.\n";
        respond(stream, "400 Bad Request", &[("Content-Type", "text/plain")], body).await;
        return WsError::NotUpgrade { method, path, status: 400 };
    };
    if method != "GET" && method != "HEAD" {
        respond(stream, "405 Method Not Allowed", &[("Allow", "GET, HEAD")], b"").await;
        return WsError::Served { method, path, status: 405 };
    }
    let status = match file_in(dir, &path) {
        Some(file) => match read_file(file.clone()).await {
            Ok(data) => {
                let body = if method == "HEAD" { &[][..] } else { &data[..] };
                respond(stream, "200 OK", &[("Content-Type", content_type(&file))], body).await;
                200
            }
            Err(_) => {
                respond(stream, "404 Not Found", &[("Content-Type", "text/plain")], b"not found\n").await;
                404
            }
        },
        None => {
            respond(stream, "403 Forbidden", &[("Content-Type", "text/plain")], b"forbidden\n").await;
            403
        }
    };
    WsError::Served { method, path, status }
}

/// Reads a file off the async threads.
async fn read_file(file: PathBuf) -> std::io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || std::fs::read(file)).await.map_err(std::io::Error::other)?
}

/// The file under `dir` that `path` names; `None` for paths that try to leave `dir`.
fn file_in(dir: &Path, path: &str) -> Option<PathBuf> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut file = dir.to_path_buf();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let bad = segment == ".." || segment == "." || segment.contains(['\\', '\0', '%']);
        if bad {
            return None;
        }
        file.push(segment);
    }
    if path.ends_with('/') || file == dir {
        file.push("index.html");
    }
    Some(file)
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Writes a complete HTTP response; errors are ignored (the connection closes next anyway).
async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn http_dir_paths_stay_inside_the_directory() {
        let dir = Path::new("/srv/www");
        assert_eq!(file_in(dir, "/"), Some(PathBuf::from("/srv/www/index.html")));
        assert_eq!(file_in(dir, "/a/b.js?x=1"), Some(PathBuf::from("/srv/www/a/b.js")));
        assert_eq!(file_in(dir, "/../etc/passwd"), None);
        assert_eq!(file_in(dir, "/%2e%2e/x"), None);
    }
}
