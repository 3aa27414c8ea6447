//! TLS and WebSocket listeners: our client over mqtts, ws and wss; client certificates as usernames;
//! wrong CA, `--insecure`; certificate reload; MQTT packets split across WebSocket frames and several in
//! one; and the bad inputs (wrong protocol for the port, HTTP without upgrade, no subprotocol, a handshake
//! that never finishes), each of which closes only that connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use mqttd_broker::config::{ListenerConfig, Location};
use mqttd_broker::security::{Security, SecuritySet};
use mqttd_broker::tls::TlsListener;
use mqttd_broker::Settings;
use mqttd_client::proto::{encode, Packet, PacketId, ProtocolVersion, QoS, Subscribe, SubscriptionOptions};
use mqttd_client::{Client, ConnectOptions, Message, TransportKind};
use mqttd_testkit::pki::Pki;
use mqttd_testkit::{connect, TestBroker, Wrapping, TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

fn listener(pki: &Pki) -> ListenerConfig {
    let mut l = ListenerConfig::new(0, None, Location { file: "test.conf".into(), line: 1 });
    l.certfile = Some(pki.server_cert.clone());
    l.keyfile = Some(pki.server_key.clone());
    l
}

fn tls(l: &ListenerConfig) -> Arc<TlsListener> {
    Arc::new(TlsListener::load(l).expect("test certificates load"))
}

fn plain() -> Wrapping {
    Wrapping::default()
}

fn ws() -> Wrapping {
    Wrapping { websockets: true, ..Wrapping::default() }
}

fn over_tls(listener: &Arc<TlsListener>, websockets: bool) -> Wrapping {
    Wrapping { tls: Some(listener.clone()), websockets, ..Wrapping::default() }
}

fn options(addr: SocketAddr, transport: TransportKind, ca: Option<&Path>) -> ConnectOptions {
    let mut o = ConnectOptions::new("localhost", addr.port());
    o.transport = transport;
    o.tls.ca_file = ca.map(Path::to_owned);
    o.connect_timeout = TIMEOUT;
    o
}

/// Connects, subscribes to `topic`, publishes to it and receives the message back.
async fn round_trip(options: &ConnectOptions, topic: &str) {
    let mut client = Client::connect(options).await.expect("connects");
    let sub = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
    client.subscribe(vec![(topic.to_owned(), sub)], Default::default()).await.expect("subscribes");
    let message = Message {
        topic: topic.to_owned(),
        payload: Bytes::from_static(b"hello"),
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    client.publish(message).await.expect("publishes");
    let got = tokio::time::timeout(TIMEOUT, client.recv()).await.expect("in time").expect("receives");
    assert_eq!((got.topic.as_str(), &got.payload[..]), (topic, &b"hello"[..]));
    client.disconnect(0, Default::default()).await.expect("disconnects");
}

/// Reads until the server closes the connection; returns what it sent. Panics after [`TIMEOUT`].
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the server closes the connection in time");
    out
}

fn connect_bytes() -> Vec<u8> {
    let mut out = BytesMut::new();
    let packet = Packet::Connect(Box::new(connect("raw", ProtocolVersion::V3_1_1)));
    encode(&packet, ProtocolVersion::V3_1_1, &mut out).expect("encodes");
    out.to_vec()
}

#[tokio::test]
async fn a_client_round_trips_over_tls_verified_with_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let broker = TestBroker::with_listeners(Settings::default(), vec![over_tls(&tls(&listener(&pki)), false)]);
    round_trip(&options(broker.addr, TransportKind::Tls, Some(&pki.ca)), "tls/a").await;
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_naming_the_host_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let other = Pki::generate(dir.path(), "other");
    let broker = TestBroker::with_listeners(Settings::default(), vec![over_tls(&tls(&listener(&pki)), false)]);
    let err = Client::connect(&options(broker.addr, TransportKind::Tls, Some(&other.ca))).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("\"localhost\"") && text.contains("UnknownIssuer") && text.contains("--ca"), "{text}");
    assert!(err.is_permanent());
}

#[tokio::test]
async fn insecure_accepts_a_certificate_from_an_unknown_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let broker = TestBroker::with_listeners(Settings::default(), vec![over_tls(&tls(&listener(&pki)), false)]);
    let mut o = options(broker.addr, TransportKind::Tls, None);
    o.tls.insecure = true;
    round_trip(&o, "tls/insecure").await;
}

/// A broker whose TLS listener requires client certificates, takes the username from them, and has
/// an ACL that lets user `username` use `device/#` only.
fn cert_broker(pki: &Pki, subject: bool, username: &str, dir: &Path) -> TestBroker {
    let mut l = listener(pki);
    l.cafile = Some(pki.ca.clone());
    l.require_certificate = true;
    l.use_identity_as_username = !subject;
    l.use_subject_as_username = subject;
    let broker = TestBroker::with_listeners(Settings::default(), vec![over_tls(&tls(&l), false)]);
    let acl = dir.join("acl");
    std::fs::write(&acl, format!("user {username}\ntopic readwrite device/#\n")).unwrap();
    let security = Security::open(false, None, Some(&acl)).expect("ACL parses");
    broker.broker.set_security(SecuritySet::new(vec![Arc::new(security)]));
    broker
}

fn with_client_cert(mut o: ConnectOptions, pki: &Pki, cn: &str) -> ConnectOptions {
    let cert = pki.client(cn);
    o.tls.cert_file = Some(cert.cert);
    o.tls.key_file = Some(cert.key);
    o
}

/// Whether a message published to `device/t` by this client comes back to it (the ACL allows it).
async fn acl_allows(o: &ConnectOptions) -> bool {
    let mut client = Client::connect(o).await.expect("connects with its certificate");
    let sub = SubscriptionOptions { qos: QoS::AtMostOnce, ..Default::default() };
    let ack = client.subscribe(vec![("device/t".to_owned(), sub)], Default::default()).await.expect("suback");
    let message = Message { topic: "device/t".into(), payload: Bytes::from_static(b"x"), ..Default::default() };
    client.publish(message).await.expect("publishes");
    let got = tokio::time::timeout(Duration::from_millis(500), client.recv()).await;
    ack.reasons[0] < 0x80 && matches!(got, Ok(Ok(_)))
}

#[tokio::test]
async fn a_required_client_certificate_gives_its_common_name_as_username() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let broker = cert_broker(&pki, false, "device1", dir.path());
    let base = options(broker.addr, TransportKind::Tls, Some(&pki.ca));
    // The CONNECT username and password are ignored: the certificate authenticates.
    let mut o = with_client_cert(base.clone(), &pki, "device1");
    o.username = Some("someone-else".into());
    o.password = Some(Bytes::from_static(b"wrong"));
    assert!(acl_allows(&o).await, "device1 may use device/#");
    assert!(!acl_allows(&with_client_cert(base.clone(), &pki, "intruder")).await, "intruder may not");
    assert!(Client::connect(&base).await.is_err(), "a client without a certificate is refused");
}

#[tokio::test]
async fn use_subject_as_username_gives_the_rfc2253_subject() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let broker = cert_broker(&pki, true, "CN=device2,O=mqttd tests,C=GB", dir.path());
    let o = with_client_cert(options(broker.addr, TransportKind::Tls, Some(&pki.ca)), &pki, "device2");
    assert!(acl_allows(&o).await);
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let other = Pki::generate(dir.path(), "other");
    let broker = cert_broker(&pki, false, "device1", dir.path());
    let o = with_client_cert(options(broker.addr, TransportKind::Tls, Some(&pki.ca)), &other, "device1");
    assert!(Client::connect(&o).await.is_err());
}

#[tokio::test]
async fn reload_serves_the_renewed_certificate_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let old = Pki::generate(dir.path(), "old");
    let listener_tls = tls(&listener(&old));
    let broker = TestBroker::with_listeners(Settings::default(), vec![over_tls(&listener_tls, false)]);
    round_trip(&options(broker.addr, TransportKind::Tls, Some(&old.ca)), "tls/old").await;
    let new = Pki::generate(dir.path(), "new");
    std::fs::copy(&new.server_cert, &old.server_cert).unwrap();
    std::fs::copy(&new.server_key, &old.server_key).unwrap();
    listener_tls.reload().expect("the renewed files load");
    round_trip(&options(broker.addr, TransportKind::Tls, Some(&new.ca)), "tls/new").await;
    // A broken file keeps the certificate in force.
    std::fs::write(&old.server_key, "not a key").unwrap();
    assert!(listener_tls.reload().is_err());
    round_trip(&options(broker.addr, TransportKind::Tls, Some(&new.ca)), "tls/kept").await;
}

#[test]
fn a_missing_certificate_file_names_the_path_and_the_os_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let mut l = listener(&pki);
    l.certfile = Some(dir.path().join("missing.pem"));
    let err = TlsListener::load(&l).unwrap_err().to_string();
    assert!(err.contains("test.conf:1") && err.contains("certfile") && err.contains("missing.pem"), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
}

#[test]
fn an_unsupported_cipher_names_the_directive_and_what_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let mut l = listener(&pki);
    l.ciphers = Some("HIGH:!aNULL".into());
    let err = TlsListener::load(&l).unwrap_err().to_string();
    assert!(err.contains("ciphers") && err.contains("HIGH") && err.contains("ECDHE-RSA-AES128-GCM-SHA256"), "{err}");
    l.ciphers = Some("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384".into());
    TlsListener::load(&l).expect("OpenSSL names of rustls suites are accepted");
}

#[tokio::test]
async fn plain_mqtt_on_a_tls_port_and_tls_on_a_plain_port_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let broker = TestBroker::with_listeners(Settings::default(), vec![over_tls(&tls(&listener(&pki)), false), plain()]);
    let (tls_addr, plain_addr) = (broker.addrs[0], broker.addrs[1]);
    let mut raw = TcpStream::connect(tls_addr).await.unwrap();
    raw.write_all(&connect_bytes()).await.unwrap();
    assert_eq!(read_to_close(&mut raw).await, b"", "no CONNACK over a TLS port");
    let err = Client::connect(&options(plain_addr, TransportKind::Tls, Some(&pki.ca))).await.unwrap_err();
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    let err = Client::connect(&options(plain_addr, TransportKind::WebSocket, None)).await.unwrap_err();
    assert!(err.to_string().contains("WebSocket upgrade"), "{err}");
    round_trip(&options(tls_addr, TransportKind::Tls, Some(&pki.ca)), "ok/tls").await;
    round_trip(&options(plain_addr, TransportKind::Tcp, None), "ok/plain").await;
}

#[tokio::test]
async fn a_handshake_that_never_finishes_is_closed_after_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let settings = Settings { connect_timeout: Duration::from_millis(300), ..Settings::default() };
    let broker = TestBroker::with_listeners(settings, vec![over_tls(&tls(&listener(&pki)), false), ws()]);
    let mut half_hello = TcpStream::connect(broker.addrs[0]).await.unwrap();
    half_hello.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut half_upgrade = TcpStream::connect(broker.addrs[1]).await.unwrap();
    half_upgrade.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert_eq!(read_to_close(&mut half_hello).await, b"");
    assert_eq!(read_to_close(&mut half_upgrade).await, b"");
    round_trip(&options(broker.addrs[1], TransportKind::WebSocket, None), "ok/ws").await;
}

#[tokio::test]
async fn clients_round_trip_over_ws_and_wss() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "main");
    let listener_tls = tls(&listener(&pki));
    let broker = TestBroker::with_listeners(Settings::default(), vec![ws(), over_tls(&listener_tls, true)]);
    round_trip(&options(broker.addrs[0], TransportKind::WebSocket, None), "ws/a").await;
    let mut v5 = options(broker.addrs[0], TransportKind::WebSocket, None);
    v5.version = ProtocolVersion::V5;
    v5.ws_path = "/".into();
    round_trip(&v5, "ws/v5").await;
    let mut v31 = options(broker.addrs[0], TransportKind::WebSocket, None);
    v31.version = ProtocolVersion::V3_1;
    v31.client_id = "mqttv31".into();
    round_trip(&v31, "ws/v31").await;
    round_trip(&options(broker.addrs[1], TransportKind::SecureWebSocket, Some(&pki.ca)), "wss/a").await;
}

/// An HTTP request on `addr`; returns the whole response (the server closes after it).
async fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    String::from_utf8_lossy(&read_to_close(&mut stream).await).into_owned()
}

const UPGRADE: &str = "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

#[tokio::test]
async fn http_without_upgrade_and_upgrades_without_the_mqtt_subprotocol_get_400() {
    let broker = TestBroker::with_listeners(Settings::default(), vec![ws()]);
    let plain_get = http(broker.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(plain_get.starts_with("HTTP/1.1 400"), "{plain_get}");
    let no_protocol = http(broker.addr, &format!("{UPGRADE}\r\n")).await;
    assert!(no_protocol.starts_with("HTTP/1.1 400") && no_protocol.contains("mqtt"), "{no_protocol}");
    let other = http(broker.addr, &format!("{UPGRADE}Sec-WebSocket-Protocol: chat\r\n\r\n")).await;
    assert!(other.starts_with("HTTP/1.1 400"), "{other}");
    let mut raw = TcpStream::connect(broker.addr).await.unwrap();
    raw.write_all(&connect_bytes()).await.unwrap();
    assert_eq!(read_to_close(&mut raw).await, b"", "plain MQTT on a WebSocket port");
    round_trip(&options(broker.addr, TransportKind::WebSocket, None), "ok/ws").await;
}

#[tokio::test]
async fn http_dir_serves_files_to_plain_get_requests_and_nothing_outside_it() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "<p>hi</p>").unwrap();
    std::fs::write(dir.path().join("secret"), "no").unwrap();
    let broker = TestBroker::with_listeners(
        Settings::default(),
        vec![Wrapping { websockets: true, http_dir: Some(www), ..Wrapping::default() }],
    );
    let index = http(broker.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(index.starts_with("HTTP/1.1 200") && index.contains("text/html") && index.ends_with("<p>hi</p>"));
    let missing = http(broker.addr, "GET /nope.js HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let escape = http(broker.addr, "GET /../secret HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(escape.starts_with("HTTP/1.1 403"), "{escape}");
    round_trip(&options(broker.addr, TransportKind::WebSocket, None), "ok/ws").await;
}

#[tokio::test]
async fn mqtt_packets_split_across_frames_and_several_in_one_frame_are_read() {
    let broker = TestBroker::with_listeners(Settings::default(), vec![ws()]);
    let mut stream = TcpStream::connect(broker.addr).await.unwrap();
    stream.write_all(format!("{UPGRADE}Sec-WebSocket-Protocol: mqttv3.1, mqtt\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"), "first offered subprotocol echoed: {head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    // CONNECT in three frames.
    let connect = connect_bytes();
    for part in [&connect[..1], &connect[1..5], &connect[5..]] {
        ws.send(WsMessage::Binary(Bytes::copy_from_slice(part))).await.unwrap();
    }
    // SUBSCRIBE and PUBLISH in one frame.
    let mut both = BytesMut::new();
    let v4 = ProtocolVersion::V3_1_1;
    let packet_id = PacketId::new(1).unwrap();
    let filters = vec![("split/t".to_owned(), SubscriptionOptions::default())];
    let sub = Packet::Subscribe(Subscribe { packet_id, filters, properties: Default::default() });
    encode(&sub, v4, &mut both).unwrap();
    let publish = mqttd_testkit::publish("split/t", b"one frame", QoS::AtMostOnce, false, None);
    encode(&Packet::Publish(publish), v4, &mut both).unwrap();
    ws.send(WsMessage::Binary(both.freeze())).await.unwrap();
    let mut received = BytesMut::new();
    let mut packets = Vec::new();
    while packets.len() < 3 {
        let frame = tokio::time::timeout(TIMEOUT, ws.next()).await.expect("in time").expect("open").unwrap();
        received.extend_from_slice(&frame.into_data());
        while let Some(p) = mqttd_client::proto::decode(&mut received, v4, &Default::default()).unwrap() {
            packets.push(p);
        }
    }
    assert!(matches!(packets[0], Packet::ConnAck(_)), "{packets:?}");
    assert!(matches!(packets[1], Packet::SubAck(_)), "{packets:?}");
    match &packets[2] {
        Packet::Publish(p) => assert_eq!(&p.payload[..], b"one frame"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}
