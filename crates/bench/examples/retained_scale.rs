//! Scale check: store N retained messages (distinct topics), then time a `#` subscriber receiving them
//! all, and read the broker's memory. `cargo run --release -p mqttd-bench --example retained_scale --
//! PORT N [BROKER_PID]`.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mqttd_proto::{
    decode, encode, Ack, Connect, Limits, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V: ProtocolVersion = ProtocolVersion::V3_1_1;

fn rss_kib(pid: Option<&str>, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn client(port: u16, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("broker reachable");
    let connect = Connect {
        protocol: V,
        clean_start: true,
        keep_alive: 600,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
        bridge: false,
    };
    send(&mut s, &Packet::Connect(Box::new(connect))).await;
    let mut buf = BytesMut::new();
    assert!(matches!(next(&mut s, &mut buf).await, Packet::ConnAck(a) if a.code == 0));
    s
}

async fn send(s: &mut TcpStream, p: &Packet) {
    let mut out = BytesMut::new();
    encode(p, V, &mut out).expect("encodes");
    s.write_all(&out).await.expect("write");
}

async fn next(s: &mut TcpStream, buf: &mut BytesMut) -> Packet {
    loop {
        if let Some(p) = decode(buf, V, &Limits::default()).expect("valid packet") {
            return p;
        }
        buf.reserve(64 * 1024);
        assert!(s.read_buf(buf).await.expect("read") > 0, "broker closed the connection");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(1).and_then(|a| a.parse().ok()).expect("usage: retained_scale PORT N [PID]");
    let n: u32 = args.get(2).and_then(|a| a.parse().ok()).expect("usage: retained_scale PORT N [PID]");
    let pid = args.get(3).map(String::as_str);
    let before = rss_kib(pid, "VmRSS:");

    let mut publisher = client(port, "retained-scale-pub").await;
    let start = Instant::now();
    let mut out = BytesMut::with_capacity(256 * 1024);
    for i in 0..n {
        let p = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: format!("scale/{}/{}", i / 1000, i % 1000),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from(i.to_be_bytes().to_vec()),
        };
        encode(&Packet::Publish(p), V, &mut out).expect("encodes");
        if out.len() > 200 * 1024 {
            publisher.write_all(&out).await.expect("write");
            out.clear();
        }
    }
    // A QoS 1 marker after the last retained message: its PUBACK means the broker processed them all.
    let marker = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "scale-done".into(),
        packet_id: PacketId::new(1),
        properties: Properties::default(),
        payload: Bytes::new(),
    };
    encode(&Packet::Publish(marker), V, &mut out).expect("encodes");
    publisher.write_all(&out).await.expect("write");
    let mut buf = BytesMut::new();
    while !matches!(next(&mut publisher, &mut buf).await, Packet::PubAck(_)) {}
    let stored = start.elapsed();
    let after_store = rss_kib(pid, "VmRSS:");

    let mut sub = client(port, "retained-scale-sub").await;
    let start = Instant::now();
    let filters = vec![("#".to_string(), SubscriptionOptions::default())];
    let subscribe =
        Subscribe { packet_id: PacketId::new(1).expect("non-zero"), filters, properties: Properties::default() };
    send(&mut sub, &Packet::Subscribe(subscribe)).await;
    let mut buf = BytesMut::new();
    let mut got = 0u32;
    while got < n {
        match next(&mut sub, &mut buf).await {
            Packet::Publish(p) if p.retain => {
                got += 1;
                if let Some(id) = p.packet_id {
                    send(&mut sub, &Packet::PubAck(Ack::new(id))).await;
                }
            }
            _ => {}
        }
    }
    let received = start.elapsed();
    let peak = rss_kib(pid, "VmHWM:");
    println!("retained messages      {n}");
    println!("stored in              {:.2} s ({:.0} msg/s)", stored.as_secs_f64(), f64::from(n) / stored.as_secs_f64());
    println!(
        "'#' subscriber got all {:.2} s ({:.0} msg/s)",
        received.as_secs_f64(),
        f64::from(n) / received.as_secs_f64()
    );
    if let (Some(b), Some(a), Some(p)) = (before, after_store, peak) {
        println!("broker RSS             {b} KiB before, {a} KiB with the messages stored, {p} KiB peak");
        println!("per retained message   {} B", (a.saturating_sub(b)) * 1024 / u64::from(n.max(1)));
    }
}
