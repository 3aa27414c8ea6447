//! `$SYS/broker/...`: broker statistics as retained messages every `sys_interval`, with Mosquitto 2.0's
//! topic names, units and update rule (src/sys_tree.c: counters as integers, `uptime` as "N seconds",
//! `load/.../1min|5min|15min` as per-minute rates smoothed exponentially over 1, 5 and 15 minutes, two
//! decimals).
//!
//! Not published, as Mosquitto does not either unless built with memory tracking: `heap/current` and
//! `heap/maximum`. Not published because mqttd does not count them yet: `clients/expired`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mqttd_core::Message;
use mqttd_proto::QoS;
use tokio::sync::watch;

use crate::broker::Broker;

fn publish(broker: &Broker, topic: &str, value: String) {
    let message = Message::new(topic.to_string(), Bytes::from(value), QoS::AtMostOnce, true, 0);
    broker.route(Arc::new(message));
}

/// The counters behind the `load/*` topics, in Mosquitto's order: name under `$SYS/broker/load/`.
const LOADS: [&str; 9] = [
    "messages/received",
    "messages/sent",
    "publish/dropped",
    "publish/received",
    "publish/sent",
    "bytes/received",
    "bytes/sent",
    "sockets",
    "connections",
];

/// What `$SYS` remembers between updates: the counters at the last one, the smoothed loads, the most
/// clients seen.
#[derive(Debug, Default)]
pub struct SysState {
    last: Option<(Instant, [u64; 9])>,
    /// Per counter, the 1, 5 and 15 minute loads.
    loads: [[f64; 3]; 9],
    clients_maximum: u64,
}

impl SysState {
    /// Folds the counters read `now` into the loads; returns `(topic, value)` pairs to publish. The
    /// first update publishes the rate since startup unsmoothed, as Mosquitto does.
    fn update_loads(&mut self, now: Instant, counters: [u64; 9]) -> Vec<(String, String)> {
        let Some((then, before)) = self.last.replace((now, counters)) else {
            return Vec::new();
        };
        let seconds = now.duration_since(then).as_secs_f64();
        if seconds <= 0.0 {
            return Vec::new();
        }
        let first = self.loads.iter().all(|l| l.iter().all(|v| *v == 0.0));
        let mut out = Vec::new();
        for (i, name) in LOADS.iter().enumerate() {
            // Per minute over the last interval.
            let rate = counters[i].saturating_sub(before[i]) as f64 * 60.0 / seconds;
            for (j, (minutes, label)) in [(1.0, "1min"), (5.0, "5min"), (15.0, "15min")].into_iter().enumerate() {
                let load = &mut self.loads[i][j];
                *load = if first { rate } else { rate + (-seconds / (60.0 * minutes)).exp() * (*load - rate) };
                out.push((format!("$SYS/broker/load/{name}/{label}"), format!("{:.2}", *load)));
            }
        }
        out
    }
}

/// Publishes every statistic once, but the loads (they need two readings).
pub fn publish_all(broker: &Broker) {
    publish_with(broker, &mut SysState::default());
}

/// Publishes every statistic, with `state` carried from the previous update (the loads from the second
/// update on).
pub fn publish_with(broker: &Broker, state: &mut SysState) {
    let s = &broker.stats;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let connected = get(&s.clients_connected);
    let total = (broker.session_count() as u64).max(connected);
    state.clients_maximum = state.clients_maximum.max(total);
    let (stored, stored_bytes) = broker.stored_messages();
    let count = |n: u64| n.to_string();
    let values = [
        ("version", format!("mqttd version {}", env!("CARGO_PKG_VERSION"))),
        ("uptime", format!("{} seconds", broker.started.elapsed().as_secs())),
        ("clients/total", count(total)),
        ("clients/maximum", count(state.clients_maximum)),
        ("clients/connected", count(connected)),
        ("clients/active", count(connected)),
        ("clients/disconnected", count(total - connected)),
        ("clients/inactive", count(total - connected)),
        ("messages/stored", count(stored)),
        ("store/messages/count", count(stored)),
        ("store/messages/bytes", count(stored_bytes)),
        ("subscriptions/count", broker.subscription_count().to_string()),
        ("shared_subscriptions/count", count(0)),
        ("retained messages/count", broker.retained_count().to_string()),
        ("messages/received", count(get(&s.packets_received))),
        ("messages/sent", count(get(&s.packets_sent))),
        ("publish/messages/dropped", count(get(&s.messages_dropped))),
        ("publish/messages/received", count(get(&s.messages_received))),
        ("publish/messages/sent", count(get(&s.messages_sent))),
        ("bytes/received", count(get(&s.bytes_received))),
        ("bytes/sent", count(get(&s.bytes_sent))),
        ("publish/bytes/received", count(get(&s.publish_bytes_received))),
        ("publish/bytes/sent", count(get(&s.publish_bytes_sent))),
    ];
    for (name, value) in values {
        publish(broker, &format!("$SYS/broker/{name}"), value);
    }
    let counters = [
        get(&s.packets_received),
        get(&s.packets_sent),
        get(&s.messages_dropped),
        get(&s.messages_received),
        get(&s.messages_sent),
        get(&s.bytes_received),
        get(&s.bytes_sent),
        get(&s.clients_total_connects),
        get(&s.clients_total_connects),
    ];
    for (topic, value) in state.update_loads(Instant::now(), counters) {
        publish(broker, &topic, value);
    }
}

/// Publishes the statistics every `sys_interval` until shutdown. An interval of 0 disables `$SYS`.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let every = broker.settings.sys_interval;
    if every.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval_at((Instant::now() + every).into(), every);
    let mut state = SysState::default();
    publish_with(&broker, &mut state);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => publish_with(&broker, &mut state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_are_per_minute_rates_smoothed_over_1_5_and_15_minutes() {
        let mut state = SysState::default();
        let start = Instant::now();
        assert!(state.update_loads(start, [0; 9]).is_empty(), "no load before a second reading");
        // 60 messages in 10 s: 360 per minute, published as is the first time.
        let first = state.update_loads(start + std::time::Duration::from_secs(10), [60; 9]);
        assert!(first.contains(&("$SYS/broker/load/messages/received/1min".into(), "360.00".into())));
        // Nothing in the next 60 s: the 1-minute load decays by e^-1, the 15-minute one far less.
        let later = state.update_loads(start + std::time::Duration::from_secs(70), [60; 9]);
        let value = |topic: &str| later.iter().find(|(t, _)| t == topic).map(|(_, v)| v.clone());
        assert_eq!(value("$SYS/broker/load/messages/received/1min").as_deref(), Some("132.44"));
        assert_eq!(value("$SYS/broker/load/connections/15min").as_deref(), Some("336.78"));
        assert_eq!(later.len(), 27);
    }
}
