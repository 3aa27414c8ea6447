//! Client ids, interfaces and WebSocket headers as Mosquitto's directives set them (issue 16):
//! `clientid_prefixes`, `use_username_as_clientid`, `bind_interface`, `websockets_headers_size`.

use std::io::{Read, Write};

use mqttd_proto::{reason, Packet};
use mqttd_testkit::{connect, Peer};

use crate::common::{config_error, free_port, Mqttd, V4, V5};

#[tokio::test]
async fn clientid_prefixes_refuses_other_ids_as_not_authorized() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mqttd = Mqttd::start(dir.path(), "allow_anonymous true\nclientid_prefixes sensor-\n");
    let (_, ack) = Peer::connect_with(mqttd.addr(), connect("sensor-1", V4)).await;
    assert_eq!(ack.code, 0);
    // Mosquitto: CONNACK_REFUSED_NOT_AUTHORIZED (5) / MQTT_RC_NOT_AUTHORIZED (0x87).
    let (_, ack) = Peer::connect_with(mqttd.addr(), connect("lamp-1", V4)).await;
    assert_eq!(ack.code, 5);
    let (_, ack) = Peer::connect_with(mqttd.addr(), connect("lamp-1", V5)).await;
    assert_eq!(ack.code, reason::NOT_AUTHORIZED);
    // An assigned id (auto-...) is checked too.
    let (_, ack) = Peer::connect_with(mqttd.addr(), connect("", V5)).await;
    assert_eq!(ack.code, reason::NOT_AUTHORIZED);
}

#[tokio::test]
async fn use_username_as_clientid_gives_one_session_per_user() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mqttd = Mqttd::start(dir.path(), "allow_anonymous true\nuse_username_as_clientid true\n");
    let with_user = |id: &str| {
        let mut c = connect(id, V5);
        c.username = Some("alice".into());
        c
    };
    let (mut first, ack) = Peer::connect_with(mqttd.addr(), with_user("phone")).await;
    assert_eq!(ack.code, 0);
    // Another client id with the same username takes the session over [MQTT-3.1.4-3].
    let (_, ack) = Peer::connect_with(mqttd.addr(), with_user("laptop")).await;
    assert_eq!(ack.code, 0);
    let closed = first.expect_closed().await;
    assert!(
        closed.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == reason::SESSION_TAKEN_OVER)),
        "{closed:?}"
    );
    // An empty client id: the assigned one is the username, and CONNACK says so.
    let (_, ack) = Peer::connect_with(mqttd.addr(), with_user("")).await;
    assert_eq!(ack.properties.assigned_client_identifier.as_deref(), Some("alice"));
    // No username: refused as not authorized, as Mosquitto does.
    let (_, ack) = Peer::connect_with(mqttd.addr(), connect("anon", V4)).await;
    assert_eq!(ack.code, 5);
}

/// This machine's address on its default route, when it has one other than loopback.
fn outside_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn bind_interface_lo_serves_loopback_and_an_unknown_one_stops_startup() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let text = format!("allow_anonymous true\nlistener {port}\nbind_interface lo\n");
    let mqttd = Mqttd::start_config(dir.path(), &text, port);
    Peer::connect(mqttd.addr(), "local", V4).await;
    match outside_address() {
        Some(ip) => {
            let refused = std::net::TcpStream::connect((ip, port));
            assert!(refused.is_err(), "a connection to {ip} arrived on the lo-bound listener");
        }
        None => eprintln!("no non-loopback address here: only the loopback half of the test ran"),
    }

    let text = format!("user root\nlistener {} 127.0.0.1\nbind_interface nosuch0\n", free_port());
    let log = config_error(dir.path(), &text);
    assert!(log.contains("mqttd.conf:2: cannot listen") && log.contains("no such network interface"), "{log}");
}

/// The HTTP status line mqttd answers a WebSocket upgrade carrying `extra` header bytes with.
fn upgrade_status(port: u16, extra: usize) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    let request = format!(
        "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\nCookie: {}\r\n\r\n",
        "c".repeat(extra)
    );
    stream.write_all(request.as_bytes()).expect("writes the request");
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).expect("reads the answer");
    String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn websockets_headers_size_bounds_the_upgrade_request() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mqttd = Mqttd::start(dir.path(), "protocol websockets\nwebsockets_headers_size 1024\n");
    assert_eq!(upgrade_status(mqttd.port, 100), "HTTP/1.1 101 Switching Protocols");
    assert_eq!(upgrade_status(mqttd.port, 3000), "HTTP/1.1 431 Request Header Fields Too Large");
}
