//! Codec micro-benchmarks: decode and encode of a 64-byte PUBLISH and of a CONNECT, in 3.1.1 and 5.0.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mqttd_proto::{decode, encode, Connect, Limits, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS};

fn publish() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "bench/sensors/room-12/temperature".into(),
        packet_id: PacketId::new(4711),
        properties: Properties::default(),
        payload: Bytes::from(vec![0x5a; 64]),
    })
}

fn connect() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: "bench-client-0001".into(),
        will: None,
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"secret")),
        properties: Properties { session_expiry_interval: Some(3600), ..Properties::default() },
        bridge: false,
    }))
}

fn bench_packet(c: &mut Criterion, name: &str, packet: &Packet, version: ProtocolVersion) {
    let mut wire = BytesMut::new();
    encode(packet, version, &mut wire).expect("the fixture encodes");
    let wire = wire.freeze();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(wire.len() as u64));
    let mut out = BytesMut::with_capacity(1024);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(packet), version, &mut out).expect("the fixture encodes");
        })
    });
    let limits = Limits::default();
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&wire[..]);
            decode(black_box(&mut buf), version, &limits).expect("valid").expect("whole")
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_packet(c, "publish_qos1_64B_v311", &publish(), ProtocolVersion::V3_1_1);
    bench_packet(c, "publish_qos1_64B_v5", &publish(), ProtocolVersion::V5);
    bench_packet(c, "connect_v5", &connect(), ProtocolVersion::V5);
}

criterion_group!(benches, codec);
criterion_main!(benches);
