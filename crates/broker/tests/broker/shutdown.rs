//! Shutdown: the server stops accepting and closes every client, 5.0 clients with DISCONNECT 0x8B.

use mqttd_proto::reason;
use mqttd_testkit::{Peer, TestBroker};

use crate::common::*;

/// On shutdown a 5.0 client gets DISCONNECT 0x8B (server shutting down) and every client is closed.
#[tokio::test]
async fn server_shutdown_sends_v5_clients_disconnect_0x8b() {
    let tb = TestBroker::start();
    let mut v5 = Peer::connect(tb.addr, "five", V5).await;
    let mut v4 = Peer::connect(tb.addr, "four", V4).await;
    let addr = tb.addr;
    // Dropping the test broker shuts the server down and waits for it.
    tokio::task::spawn_blocking(move || drop(tb)).await.expect("shutdown completes");
    assert_eq!(closed_with(&mut v5).await, Some(reason::SERVER_SHUTTING_DOWN));
    assert!(v4.expect_closed().await.is_empty(), "3.1.1 gets no DISCONNECT");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
}
