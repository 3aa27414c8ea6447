//! Who may use the HTTP listener: loopback only without credentials configured (others 403); with a
//! bearer token or a password file, whoever brings them (others 401).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use mqttd_auth::{hash_password, HashKind};
use mqttd_broker::http::HttpSettings;
use mqttd_broker::security::{Security, SecuritySet};
use mqttd_broker::server::{Bind, Wrapping};
use mqttd_broker::{Broker, Server, Settings};

use crate::common::{broker, broker_with, get, request};

#[tokio::test]
async fn a_bearer_token_is_required_once_configured_and_a_wrong_one_is_401() {
    let tb = broker_with(HttpSettings { token: Some("s3cret".into()) });
    let http = tb.addrs[1];
    for headers in [vec![], vec![("Authorization", "Bearer wrong")], vec![("Authorization", "Basic dTpw")]] {
        let reply = request(http, "GET", "/metrics", &headers, "").await;
        assert_eq!(reply.status, 401, "{headers:?}");
        assert!(reply.json()["error"].is_string());
    }
    let reply = request(http, "GET", "/api/v1/overview", &[("Authorization", "Bearer s3cret")], "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!reply.body.contains("s3cret"));
    let metrics = request(http, "GET", "/metrics", &[("Authorization", "Bearer s3cret")], "").await;
    let samples = crate::common::parse_prometheus(&metrics.body);
    assert_eq!(crate::common::value(&samples, "mqttd_auth_failures_total", ""), 3.0);
}

#[tokio::test]
async fn http_basic_checks_the_brokers_password_file_and_challenges_on_failure() {
    let tb = broker();
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("passwd");
    let hash = hash_password(b"op-pass", HashKind::Sha512Pbkdf2).expect("hashes");
    std::fs::write(&path, format!("operator:{hash}\n")).expect("writes the password file");
    let security = Security::open(true, Some(&path), None).expect("password file parses");
    tb.broker.set_security(SecuritySet::new(vec![Arc::new(security)]));
    let basic = |user: &str, pass: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
    };
    let wrong = request(tb.addrs[1], "GET", "/", &[("Authorization", &basic("operator", "nope"))], "").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("www-authenticate").is_some_and(|c| c.starts_with("Basic")));
    assert_eq!(get(tb.addrs[1], "/").await.status, 401, "loopback needs credentials too once configured");
    let right = request(tb.addrs[1], "GET", "/", &[("Authorization", &basic("operator", "op-pass"))], "").await;
    assert_eq!(right.status, 200);
    assert!(right.body.contains("<canvas"));
}

/// This machine's address on its default route, if it has one (no packet is sent).
fn non_loopback_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn without_credentials_configured_a_client_that_is_not_loopback_gets_403() {
    let Some(ip) = non_loopback_address() else {
        // The decision itself is unit-tested (`http::tests`); this machine has no address to come from.
        return eprintln!("SKIPPED: no non-loopback address on this machine");
    };
    let broker = Arc::new(Broker::new(Settings::default()));
    let wrapping = Arc::new(Wrapping { http: Some(HttpSettings::default()), ..Wrapping::default() });
    let bind = Bind { addr: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0), listener: 0, wrapping };
    let server = Server::start_binds(broker, &[bind], None).await.expect("binds");
    let port = server.local_addrs[0].port();
    let remote = get(SocketAddr::new(ip, port), "/api/v1/clients").await;
    assert_eq!(remote.status, 403, "{}", remote.body);
    assert!(remote.json()["error"].as_str().is_some_and(|m| m.contains("loopback")));
    let local = get(SocketAddr::from(([127, 0, 0, 1], port)), "/api/v1/clients").await;
    assert_eq!(local.status, 200);
    server.shutdown().await;
}
