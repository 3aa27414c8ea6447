//! `$SYS/broker/...`: broker statistics as retained messages every `sys_interval`, with Mosquitto's topic
//! names.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mqttd_core::Message;
use mqttd_proto::QoS;
use tokio::sync::watch;

use crate::broker::Broker;

fn publish(broker: &Broker, topic: &str, value: String) {
    let message = Message {
        topic: topic.to_string(),
        payload: Bytes::from(value),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: None,
        expires_at: None,
        origin: 0,
    };
    broker.route(Arc::new(message));
}

/// Publishes every statistic once.
pub fn publish_all(broker: &Broker) {
    let s = &broker.stats;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let connected = get(&s.clients_connected);
    let sessions = broker.session_count() as u64;
    let values = [
        ("$SYS/broker/version", format!("mqttd version {}", env!("CARGO_PKG_VERSION"))),
        ("$SYS/broker/uptime", format!("{} seconds", broker.started.elapsed().as_secs())),
        ("$SYS/broker/clients/connected", connected.to_string()),
        ("$SYS/broker/clients/disconnected", sessions.saturating_sub(connected).to_string()),
        ("$SYS/broker/clients/total", sessions.max(connected).to_string()),
        ("$SYS/broker/messages/received", get(&s.messages_received).to_string()),
        ("$SYS/broker/messages/sent", get(&s.messages_sent).to_string()),
        ("$SYS/broker/publish/messages/dropped", get(&s.messages_dropped).to_string()),
        ("$SYS/broker/bytes/received", get(&s.bytes_received).to_string()),
        ("$SYS/broker/bytes/sent", get(&s.bytes_sent).to_string()),
        ("$SYS/broker/subscriptions/count", broker.subscription_count().to_string()),
        ("$SYS/broker/retained messages/count", broker.retained_count().to_string()),
    ];
    for (topic, value) in values {
        publish(broker, topic, value);
    }
}

/// Publishes the statistics every `sys_interval` until shutdown. An interval of 0 disables `$SYS`.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let every = broker.settings.sys_interval;
    if every.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval_at((Instant::now() + every).into(), every);
    publish_all(&broker);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => publish_all(&broker),
        }
    }
}
