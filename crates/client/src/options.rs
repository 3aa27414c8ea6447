//! What to connect to and how: [`ConnectOptions`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mqttd_proto::{Connect, Properties, ProtocolVersion, Will};

use crate::transport::{TlsOptions, TransportKind};

/// Everything needed to open a connection and send CONNECT.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub host: String,
    pub port: u16,
    pub transport: TransportKind,
    pub tls: TlsOptions,
    /// The HTTP path of the WebSocket upgrade (`/mqtt`, as mqtt.js).
    pub ws_path: String,
    pub version: ProtocolVersion,
    pub client_id: String,
    /// Clean Session (3.1, 3.1.1) or Clean Start (5.0).
    pub clean_start: bool,
    /// Seconds; 0 disables keep-alive.
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub will: Option<Will>,
    /// CONNECT properties (5.0): Session Expiry Interval, user properties, ...
    pub properties: Properties,
    /// Bound on opening the transport, and again on waiting for CONNACK.
    pub connect_timeout: Duration,
    /// Set the bridge bit in CONNECT (Mosquitto's `try_private`): this client is a broker's bridge.
    pub bridge: bool,
    /// The local address to connect from (Mosquitto's `bridge_bind_address`); `None`: the system's choice.
    pub bind_address: Option<std::net::IpAddr>,
    /// Called with every packet sent and received (mosquitto_sub `-d`); `None`: no trace.
    pub trace: Option<PacketTrace>,
    /// The caller acknowledges each QoS 1/2 message [`Client::recv`] returns, with [`Client::ack`], once
    /// it has done with it what the acknowledgement promises (a bridge: routed and durable); otherwise the
    /// client acknowledges it as it arrives.
    pub manual_acks: bool,
}

/// Whether a traced packet was sent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

/// The function a [`PacketTrace`] calls.
pub type TraceFn = dyn Fn(Direction, &mqttd_proto::Packet) + Send + Sync;

/// A packet observer (the caller decides what to print; this crate prints nothing).
#[derive(Clone)]
pub struct PacketTrace(pub std::sync::Arc<TraceFn>);

impl std::fmt::Debug for PacketTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PacketTrace")
    }
}

impl ConnectOptions {
    /// mqtt.js defaults: MQTT 3.1.1, clean session, keep-alive 60 s, a random `mqttjs_` client id.
    pub fn new(host: impl Into<String>, port: u16) -> ConnectOptions {
        ConnectOptions {
            host: host.into(),
            port,
            transport: TransportKind::Tcp,
            tls: TlsOptions::default(),
            ws_path: "/mqtt".to_owned(),
            version: ProtocolVersion::V3_1_1,
            client_id: random_client_id("mqttjs_"),
            clean_start: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
            properties: Properties::default(),
            connect_timeout: Duration::from_secs(30),
            bridge: false,
            bind_address: None,
            trace: None,
            manual_acks: false,
        }
    }

    /// The CONNECT packet these options describe.
    pub fn connect_packet(&self) -> Connect {
        let v5 = self.version.is_v5();
        let mut will = self.will.clone();
        if let (Some(w), false) = (will.as_mut(), v5) {
            w.properties = Properties::default();
        }
        Connect {
            protocol: self.version,
            clean_start: self.clean_start,
            keep_alive: self.keep_alive,
            client_id: self.client_id.clone(),
            will,
            username: self.username.clone(),
            password: self.password.clone(),
            properties: if v5 { self.properties.clone() } else { Properties::default() },
            bridge: self.bridge,
        }
    }
}

/// `prefix` followed by 8 random lowercase hex digits, like mqtt.js's default client id.
pub fn random_client_id(prefix: &str) -> String {
    format!("{prefix}{:08x}", random_u64() as u32)
}

/// A random number from the standard library's per-process hash keys, the time and the process id.
/// Not for cryptography: only to make client ids and correlation data unlikely to collide.
pub fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}
