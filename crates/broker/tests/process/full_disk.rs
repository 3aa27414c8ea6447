//! `persistence true` on a disk that fills up (issue 13): new QoS 1/2 publishes are refused (5.0: Quota
//! exceeded, 3.1.1: the connection closes), everything acknowledged before stays safe and is delivered,
//! and the answer waiting for the disk goes out once there is space again. A real disk: a small tmpfs,
//! mounted when the test runs as root in a container that allows it; skipped with a message otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mqttd_proto::{Packet, PacketId, QoS};
use mqttd_testkit::{publish, Peer};

use crate::common::*;

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("mount point");
        let options = format!("size={size}");
        let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", &options, "tmpfs"]).arg(dir).output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(out) => {
                eprintln!("skipped: cannot mount a tmpfs here ({})", String::from_utf8_lossy(&out.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system of `path` until it refuses (ENOSPC).
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test]
async fn a_full_disk_refuses_new_publishes_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = dir.path().join("disk");
    let Some(_tmpfs) = Tmpfs::mount(&disk, "4m") else { return };
    let settings =
        format!("allow_anonymous true\npersistence true\npersistence_location {}\n", disk.join("data").display());
    let mqttd = Mqttd::start(dir.path(), &settings);
    // A persistent subscriber taking one message at a time (Receive Maximum 1).
    let mut keeper = mqttd_testkit::connect("keeper", V5);
    keeper.clean_start = false;
    keeper.properties.session_expiry_interval = Some(600);
    keeper.properties.receive_maximum = Some(1);
    let (mut sub, _) = Peer::connect_with(mqttd.addr(), keeper).await;
    assert_eq!(sub.subscribe("q/#", QoS::AtLeastOnce).await, vec![1]);
    let mut held = Peer::connect(mqttd.addr(), "held", V5).await;
    for i in 0..10 {
        held.publish("q/acked", format!("{i}").as_bytes(), QoS::AtLeastOnce, false).await;
    }
    let first = match sub.recv().await {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    assert_eq!(&first.payload[..], b"0");

    fill(&disk.join("filler"));
    // Stored in memory, but its write is refused: its PUBACK waits for the disk.
    let big = vec![b'x'; 64 << 10];
    held.send(&Packet::Publish(publish("q/held", &big, QoS::AtLeastOnce, false, PacketId::new(5)))).await;
    mqttd.wait_for_log("disk full", 1);
    assert!(held.quiet_for(Duration::from_millis(200)).await, "no PUBACK before the message is on disk");

    // New QoS 1 and 2 publishes are refused: 5.0 with Quota exceeded, 3.1.1 by closing the connection.
    let mut refused = Peer::connect(mqttd.addr(), "refused", V5).await;
    refused.send(&Packet::Publish(publish("q/new", b"1", QoS::AtLeastOnce, false, PacketId::new(1)))).await;
    match refused.recv().await {
        Packet::PubAck(ack) => assert_eq!(ack.reason, 0x97, "Quota exceeded"),
        other => panic!("expected PUBACK 0x97, got {other:?}"),
    }
    refused.send(&Packet::Publish(publish("q/new", b"2", QoS::ExactlyOnce, false, PacketId::new(2)))).await;
    match refused.recv().await {
        Packet::PubRec(rec) => assert_eq!(rec.reason, 0x97, "Quota exceeded"),
        other => panic!("expected PUBREC 0x97, got {other:?}"),
    }
    let mut old = Peer::connect(mqttd.addr(), "old", V4).await;
    old.send(&Packet::Publish(publish("q/new", b"3", QoS::AtLeastOnce, false, PacketId::new(1)))).await;
    let answer = old.recv_within(Duration::from_secs(5)).await;
    assert!(answer.is_none(), "3.1.1: closed without an answer, got {answer:?}\n{}", mqttd.log());

    // What was acknowledged is delivered meanwhile, one at a time as the subscriber acknowledges.
    sub.send(&Packet::PubAck(mqttd_proto::Ack::new(first.packet_id.expect("QoS 1")))).await;
    for i in 1..10 {
        let got = sub.recv_publish().await;
        assert_eq!((got.topic.as_str(), &got.payload[..]), ("q/acked", format!("{i}").as_bytes()));
    }

    // Space again: the held PUBACK goes out, and publishes are accepted again.
    std::fs::remove_file(disk.join("filler")).expect("frees the space");
    match held.recv().await {
        Packet::PubAck(ack) => assert_eq!((ack.packet_id.get(), ack.reason), (5, 0)),
        other => panic!("expected the held PUBACK, got {other:?}"),
    }
    mqttd.wait_for_log("written again", 1);
    refused.publish("q/later", b"ok", QoS::AtLeastOnce, false).await;
    assert_eq!(mqttd.log().matches("disk full").count(), 1, "logged once:\n{}", mqttd.log());
}

/// A bridge acknowledges a message from the remote only once it is durable here: one received while the
/// disk was full is not acknowledged, so after a crash the remote sends it again and it reaches the
/// persistent subscriber (acknowledged at once, it would be lost with the records never written).
#[tokio::test]
async fn a_bridge_acknowledges_what_the_remote_sends_only_once_it_is_on_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let disk = dir.path().join("disk");
    let Some(_tmpfs) = Tmpfs::mount(&disk, "4m") else { return };
    let (remote_dir, local_dir) = (dir.path().join("remote"), dir.path().join("local"));
    for d in [&remote_dir, &local_dir] {
        std::fs::create_dir_all(d).expect("a directory");
    }
    let remote = Mqttd::start(&remote_dir, "allow_anonymous true\n");
    let settings = format!(
        "allow_anonymous true\npersistence true\npersistence_location {}\nconnection edge\naddress 127.0.0.1:{}\n\
         remote_clientid edge\nrestart_timeout 1\ncleansession false\ntopic cmd/# in 1\n",
        disk.join("data").display(),
        remote.port
    );
    let local = Mqttd::start(&local_dir, &settings);
    let mut keeper = mqttd_testkit::connect("keeper", V4);
    keeper.clean_start = false;
    let (mut sub, _) = Peer::connect_with(local.addr(), keeper.clone()).await;
    assert_eq!(sub.subscribe("cmd/#", QoS::AtLeastOnce).await, vec![1]);
    sub.disconnect().await;
    let mut watch = Peer::connect(local.addr(), "watch", V4).await;
    assert_eq!(watch.subscribe("cmd/#", QoS::AtLeastOnce).await, vec![1]);
    let mut remote_pub = Peer::connect(remote.addr(), "remote-pub", V4).await;
    // The bridge is up once a message goes through it.
    let mut through = false;
    for _ in 0..50 {
        remote_pub.publish("cmd/first", b"1", QoS::AtLeastOnce, false).await;
        if let Some(Packet::Publish(p)) = watch.recv_within(Duration::from_millis(200)).await {
            if let Some(id) = p.packet_id {
                watch.send(&Packet::PubAck(mqttd_proto::Ack::new(id))).await;
            }
            through = true;
            break;
        }
    }
    assert!(through, "the bridge never carried a message:\n{}", local.log());

    fill(&disk.join("filler"));
    // Bigger than what is left of the log's last page.
    remote_pub.publish("cmd/held", &[b'2'; 64 << 10], QoS::AtLeastOnce, false).await;
    // Routed here (the online subscriber has it), but not on disk.
    loop {
        let p = watch.recv_publish().await;
        if p.topic == "cmd/held" {
            break;
        }
    }
    local.wait_for_log("disk full", 1);
    drop(local); // SIGKILL: what was not written is gone
    std::fs::remove_file(disk.join("filler")).expect("frees the space");
    let local = Mqttd::start(&local_dir, &settings);

    let (mut sub, ack) = Peer::connect_with(local.addr(), keeper).await;
    assert!(ack.session_present, "the session survived");
    let mut got = Vec::new();
    while !got.iter().any(|t| t == "cmd/held") {
        let p = sub.recv_publish().await;
        got.push(p.topic);
    }
    assert!(got.iter().all(|t| t.starts_with("cmd/")), "{got:?}");
}
