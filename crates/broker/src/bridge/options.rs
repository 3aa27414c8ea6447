//! What a bridge sends the remote broker in CONNECT, and when it tries again (`restart_timeout`).

use std::time::Duration;

use bytes::Bytes;
use mqttd_client::{ConnectOptions, TlsOptions, TransportKind};
use mqttd_proto::{Properties, QoS, Will};

use crate::config::{BridgeConfig, Restart, TlsVersion};

/// The CONNECT of `config` to `(host, port)`; `bridge_bit` is false once the remote refused it.
pub(super) fn connect_options(config: &BridgeConfig, host: &str, port: u16, bridge_bit: bool) -> ConnectOptions {
    let mut o = ConnectOptions::new(host, port);
    o.version = config.protocol_version;
    o.client_id = config.remote_clientid();
    o.clean_start = config.cleansession;
    o.keep_alive = config.keepalive;
    o.username.clone_from(&config.remote_username);
    o.password = config.remote_password.clone().map(Bytes::from);
    // 5.0 bridges avoid loops with No Local; the bridge bit is for 3.x (Mosquitto's `try_private`).
    o.bridge = bridge_bit && config.try_private && !config.protocol_version.is_v5();
    if config.notifications && !config.notifications_local_only {
        // The remote publishes `0` for us if the link breaks, as Mosquitto's bridge asks.
        let topic = config.notification_topic();
        o.will = Some(Will {
            topic,
            payload: Bytes::from_static(b"0"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        });
    }
    o.properties = Properties {
        session_expiry_interval: config.session_expiry_interval,
        receive_maximum: config.receive_maximum,
        maximum_packet_size: (config.max_packet_size > 0).then_some(config.max_packet_size),
        ..Properties::default()
    };
    o.bind_address = config.bind_address;
    // Messages from the remote are acknowledged once routed here and durable (`Link::exchange`).
    o.manual_acks = true;
    o.connect_timeout = Duration::from_secs(u64::from(config.keepalive).clamp(5, 30));
    let tls = &config.tls;
    if tls.enabled() {
        o.transport = TransportKind::Tls;
        o.tls = TlsOptions {
            ca_file: tls.cafile.clone(),
            cert_file: tls.certfile.clone(),
            key_file: tls.keyfile.clone(),
            insecure: tls.insecure,
            ca_path: tls.capath.clone(),
            alpn: tls.alpn.iter().map(|a| a.as_bytes().to_vec()).collect(),
            tls13_only: tls.tls_version == Some(TlsVersion::Tls1_3),
        };
    }
    o
}

/// The wait before the next connection attempt: constant, or Mosquitto's "decorrelated jitter"
/// (a random time between the base and three times the last wait, at most the cap).
pub(super) struct Backoff {
    restart: Restart,
    current: u64,
}

impl Backoff {
    pub fn new(restart: Restart) -> Backoff {
        let current = match restart {
            Restart::Constant(seconds) => seconds,
            Restart::Backoff { base, .. } => base,
        };
        Backoff { restart, current }
    }

    /// The next wait.
    pub fn step(&mut self) -> Duration {
        if let Restart::Backoff { base, cap } = self.restart {
            let high = self.current.saturating_mul(3).max(base);
            let span = high - base + 1;
            self.current = (base + mqttd_client::random_u64() % span).min(cap);
        }
        Duration::from_secs(self.current)
    }

    /// A connection succeeded: start again from the base.
    pub fn reset(&mut self) {
        *self = Backoff::new(self.restart);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_between_base_and_cap_and_constant_stays_constant() {
        let mut constant = Backoff::new(Restart::Constant(3));
        assert!((0..5).all(|_| constant.step() == Duration::from_secs(3)));
        let mut jitter = Backoff::new(Restart::Backoff { base: 2, cap: 20 });
        let waits: Vec<u64> = (0..50).map(|_| jitter.step().as_secs()).collect();
        assert!(waits.iter().all(|w| (2..=20).contains(w)), "{waits:?}");
        assert!(waits.iter().any(|w| *w > 2), "it grows: {waits:?}");
        jitter.reset();
        assert!(jitter.step().as_secs() <= 6, "from the base again");
    }
}
