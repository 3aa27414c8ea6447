//! The HTTP listener (`protocol http`, mqttd's own value): `GET /metrics` for Prometheus, a JSON admin
//! API under `/api/v1/`, and a dashboard page at `/` that follows the broker live over server-sent
//! events. Served by hyper (HTTP/1.1); TLS when the listener has a `certfile`.
//!
//! Access ([`access`]): with neither a password file nor an `http_token` in force on the listener, only
//! loopback clients are served (others get 403); with either, every request must bring credentials
//! (HTTP Basic against the password file, or `Authorization: Bearer TOKEN`), else 401.

mod api;
mod dashboard;
mod metrics;
mod web;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
pub use crate::listener::HttpSettings;
use crate::listener::Wrapping;
use web::{error, Body};

/// How long a client may take to send a request's head before the connection is closed.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts HTTP connections on `listener` until shutdown; each gets a task that ends with the shutdown.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    index: usize,
    wrapping: Arc<Wrapping>,
    mut shutdown: watch::Receiver<bool>,
) {
    broker.events.enable();
    let settings = Arc::new(wrapping.http.clone().unwrap_or_default());
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn = Conn { broker: broker.clone(), settings: settings.clone(), index, peer };
        tokio::spawn(conn.run(stream, wrapping.clone(), shutdown.clone()));
    }
}

/// One HTTP connection: who it is from and on which listener.
#[derive(Clone)]
struct Conn {
    broker: Arc<Broker>,
    settings: Arc<HttpSettings>,
    index: usize,
    peer: SocketAddr,
}

impl Conn {
    async fn run(self, stream: tokio::net::TcpStream, wrapping: Arc<Wrapping>, shutdown: watch::Receiver<bool>) {
        let peer = self.peer;
        match &wrapping.tls {
            None => self.http(TokioIo::new(stream), shutdown).await,
            Some(tls) => match tokio::time::timeout(HEADER_TIMEOUT, tls.acceptor().accept(stream)).await {
                Ok(Ok(stream)) => self.http(TokioIo::new(stream), shutdown).await,
                Ok(Err(e)) => {
                    crate::observe::add(&self.broker.counters.tls_handshake_failures, 1);
                    tracing::info!(%peer, "HTTP: TLS handshake failed: {e}");
                }
                Err(_) => tracing::info!(%peer, "HTTP: TLS handshake not finished in time"),
            },
        }
    }

    async fn http<I>(self, io: TokioIo<I>, mut shutdown: watch::Receiver<bool>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let service = hyper::service::service_fn(move |request| {
            let conn = self.clone();
            async move { Ok::<_, Infallible>(conn.respond(request).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            _ = shutdown.changed() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, "HTTP connection ended: {e}");
        }
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        if let Err(refused) = self.access(&request).await {
            return refused;
        }
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        let query = web::Query::parse(request.uri().query().unwrap_or(""));
        let broker = &self.broker;
        match (method.as_str(), path.as_str()) {
            ("GET", "/") | ("GET", "/index.html") => dashboard::page(),
            ("GET", "/metrics") => metrics::respond(broker),
            ("GET", "/api/v1/events/stream") => dashboard::stream(broker.clone()),
            (_, p) if p.starts_with("/api/v1/") => {
                let body = match read_body(request).await {
                    Ok(body) => body,
                    Err(refused) => return refused,
                };
                api::route(broker, method.as_str(), &p["/api/v1/".len()..], &query, &body).await
            }
            _ => error(StatusCode::NOT_FOUND, &format!("no such page: {path}")),
        }
    }

    /// [`access`] for this request; the password check runs off the async threads.
    async fn access(&self, request: &Request<Incoming>) -> Result<(), Response<Body>> {
        let header = request.headers().get(hyper::header::AUTHORIZATION).and_then(|h| h.to_str().ok());
        let security = self.broker.security().get(self.index);
        let passwords = security.passwords.is_some();
        let decision = access(self.peer.ip(), header, self.settings.token.as_deref(), passwords);
        let allowed = match decision {
            Access::Allowed => true,
            Access::Forbidden => {
                return Err(error(StatusCode::FORBIDDEN, "only loopback clients are served without credentials"))
            }
            Access::Unauthorized => false,
            Access::CheckPassword(user, password) => tokio::task::spawn_blocking(move || {
                security.passwords.as_ref().is_some_and(|p| p.verify(&user, password.as_bytes()))
            })
            .await
            .unwrap_or(false),
        };
        if allowed {
            return Ok(());
        }
        tracing::info!(peer = %self.peer, "HTTP: wrong or missing credentials");
        crate::observe::add(&self.broker.counters.auth_failures, 1);
        let mut response = error(StatusCode::UNAUTHORIZED, "credentials required (HTTP Basic or a bearer token)");
        if passwords {
            let challenge = hyper::header::HeaderValue::from_static("Basic realm=\"mqttd\", charset=\"UTF-8\"");
            response.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, challenge);
        }
        Err(response)
    }
}

/// The largest request body read (a publish through the API).
const MAX_BODY: usize = 1 << 20;

async fn read_body(request: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let limited = http_body_util::Limited::new(request.into_body(), MAX_BODY);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, &format!("cannot read the request body: {e}"))),
    }
}

/// What [`access`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// 403: not loopback, and no credentials are configured that could let it in.
    Forbidden,
    /// 401: credentials are required and missing or wrong.
    Unauthorized,
    /// HTTP Basic: the password is still to be checked against the password file.
    CheckPassword(String, String),
}

/// Who may use the HTTP listener: with no credentials configured (`token` unset, no password file) only
/// loopback peers; otherwise anyone with a matching bearer token or a Basic user of the password file.
pub fn access(peer: IpAddr, authorization: Option<&str>, token: Option<&str>, passwords: bool) -> Access {
    if token.is_none() && !passwords {
        return if peer.to_canonical().is_loopback() { Access::Allowed } else { Access::Forbidden };
    }
    let Some((scheme, value)) = authorization.and_then(|a| a.trim().split_once(' ')) else {
        return Access::Unauthorized;
    };
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        let matches = token.is_some_and(|t| bool::from(subtle::ConstantTimeEq::ct_eq(t.as_bytes(), value.as_bytes())));
        return if matches { Access::Allowed } else { Access::Unauthorized };
    }
    if !scheme.eq_ignore_ascii_case("basic") || !passwords {
        return Access::Unauthorized;
    }
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(value).ok().and_then(|d| String::from_utf8(d).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((user, password)) => Access::CheckPassword(user.to_owned(), password.to_owned()),
        None => Access::Unauthorized,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn without_credentials_configured_only_loopback_is_served() {
        assert_eq!(access(LOCAL, None, None, false), Access::Allowed);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(access(mapped, None, None, false), Access::Allowed);
        assert_eq!(access(REMOTE, None, None, false), Access::Forbidden);
        assert_eq!(access(REMOTE, Some("Bearer x"), None, false), Access::Forbidden);
    }

    #[test]
    fn with_a_token_every_client_needs_it_loopback_included() {
        assert_eq!(access(REMOTE, Some("Bearer s3cret"), Some("s3cret"), false), Access::Allowed);
        assert_eq!(access(LOCAL, None, Some("s3cret"), false), Access::Unauthorized);
        assert_eq!(access(LOCAL, Some("Bearer wrong"), Some("s3cret"), false), Access::Unauthorized);
        assert_eq!(access(LOCAL, Some("Basic dTpw"), Some("s3cret"), false), Access::Unauthorized);
    }

    #[test]
    fn basic_credentials_are_decoded_for_the_password_file() {
        // "alice:pa:ss" — a password may contain a colon, a user name may not (RFC 7617).
        let header = "Basic YWxpY2U6cGE6c3M=";
        assert_eq!(access(REMOTE, Some(header), None, true), Access::CheckPassword("alice".into(), "pa:ss".into()));
        assert_eq!(access(REMOTE, Some("Basic !!!"), None, true), Access::Unauthorized);
        assert_eq!(access(REMOTE, None, None, true), Access::Unauthorized);
    }
}
