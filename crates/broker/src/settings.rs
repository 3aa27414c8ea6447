//! The broker's effective settings: what the connection tasks read, derived once from the config file.

use std::time::Duration;

use mqttd_core::QueueLimits;

use crate::config::{DEFAULT_MAX_TOPIC_LEVELS, DEFAULT_MEMORY_LIMIT};

/// Settings shared by every connection.
#[derive(Debug, Clone)]
pub struct Settings {
    pub allow_anonymous: bool,
    pub allow_zero_length_clientid: bool,
    pub auto_id_prefix: String,
    pub queue: QueueLimits,
    /// Outgoing QoS 1/2 messages in flight per client; also our Receive Maximum. 0 means 65535.
    pub max_inflight_messages: u16,
    /// Largest PUBLISH payload accepted; 0 means no limit.
    pub message_size_limit: u32,
    /// Largest packet accepted; 0 means the protocol maximum.
    pub max_packet_size: u32,
    pub max_keepalive: u16,
    /// v3 sessions without clean session expire after this long offline; `None` means never.
    pub persistent_client_expiration: Option<Duration>,
    pub retain_available: bool,
    pub max_qos: u8,
    pub sys_interval: Duration,
    /// A socket that sends no CONNECT within this time is closed.
    pub connect_timeout: Duration,
    /// A plain-TCP connection quiet for this long is parked (`park.rs`); `None`: never.
    pub park_after: Option<Duration>,
    /// How shared subscription groups pick a member (`shared_subscription_strategy`).
    pub shared_strategy: crate::shared::Strategy,
    /// Topic aliases a 5.0 client may use towards us (`max_topic_alias`; 0: none).
    pub max_topic_alias: u16,
    /// Response Information sent to a client that asks: this prefix and its client id
    /// (`response_information_prefix`).
    pub response_information_prefix: String,
    /// `upgrade_outgoing_qos`: deliveries go at the subscription's QoS, not the lower of it and the
    /// message's (Mosquitto's meaning; not what the MQTT spec asks [MQTT-3.8.4-8]).
    pub upgrade_outgoing_qos: bool,
    /// `check_retain_source`: a retained message is sent to a new subscriber only if its publisher may
    /// still write its topic (after an ACL reload), as Mosquitto checks.
    pub check_retain_source: bool,
    /// `clientid_prefixes`: only client ids starting with it may connect.
    pub clientid_prefixes: Option<String>,
    /// Settings of each configured listener, by listener index; a listener without an entry (tests, the
    /// built-in default) uses the global values above.
    /// Topic names and filters with more levels are refused (`max_topic_levels`); 0 means no limit.
    pub max_topic_levels: usize,
    /// Memory held for messages (queued, inflight, retained) above which new publishes are refused
    /// (`memory_limit`); 0 means no limit.
    pub memory_limit: usize,
    pub listeners: Vec<ListenerSettings>,
}

/// What one listener may set for itself (Mosquitto's per-listener directives); `None`: the global value.
#[derive(Debug, Clone, Default)]
pub struct ListenerSettings {
    /// `max_qos` after the `listener` line.
    pub max_qos: Option<u8>,
    /// `mount_point`: prefixed to every topic and filter of this listener's clients on the way in and
    /// stripped on the way out.
    pub mount_point: Option<String>,
    /// `allow_zero_length_clientid` with `per_listener_settings true`.
    pub allow_zero_length_clientid: Option<bool>,
    /// `auto_id_prefix` with `per_listener_settings true`.
    pub auto_id_prefix: Option<String>,
    /// `max_connections` of this listener (`None`: unlimited).
    pub max_connections: Option<usize>,
    /// `use_username_as_clientid` on this listener.
    pub use_username_as_clientid: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_anonymous: true,
            allow_zero_length_clientid: true,
            auto_id_prefix: "auto-".into(),
            queue: QueueLimits::default(),
            max_inflight_messages: 20,
            message_size_limit: 0,
            max_packet_size: 0,
            max_keepalive: 65535,
            persistent_client_expiration: None,
            retain_available: true,
            max_qos: 2,
            sys_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            park_after: Some(Duration::from_secs(1)),
            shared_strategy: crate::shared::Strategy::RoundRobin,
            max_topic_alias: 10,
            response_information_prefix: "responses/".into(),
            upgrade_outgoing_qos: false,
            check_retain_source: true,
            clientid_prefixes: None,
            listeners: Vec::new(),
            max_topic_levels: DEFAULT_MAX_TOPIC_LEVELS,
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }
}

impl Settings {
    /// The inflight window (and advertised Receive Maximum) as a count.
    pub fn inflight_window(&self) -> u16 {
        if self.max_inflight_messages == 0 {
            u16::MAX
        } else {
            self.max_inflight_messages
        }
    }

    /// Whether `topic` (a name or a filter) has more levels than `max_topic_levels`.
    pub fn too_deep(&self, topic: &str) -> bool {
        self.max_topic_levels > 0 && topic.bytes().filter(|&b| b == b'/').count() >= self.max_topic_levels
    }

    /// The decoder limit for incoming packets.
    pub fn max_incoming_packet(&self) -> u32 {
        if self.max_packet_size == 0 {
            mqttd_proto::MAX_VARINT + 5
        } else {
            self.max_packet_size
        }
    }
}

impl Settings {
    /// The effective settings of a parsed config file (global values; listener-specific ones are applied
    /// where listeners are bound).
    pub fn from_config(c: &crate::config::Config) -> Settings {
        Settings {
            allow_anonymous: c.allow_anonymous_for(c.listeners.first()),
            allow_zero_length_clientid: c.allow_zero_length_clientid,
            auto_id_prefix: c.auto_id_prefix.clone(),
            queue: QueueLimits {
                max_messages: c.max_queued_messages,
                max_bytes: c
                    .max_queued_bytes
                    .map_or(QueueLimits::DEFAULT_MAX_BYTES, |b| usize::try_from(b).unwrap_or(usize::MAX)),
                queue_qos0_offline: c.queue_qos0_messages,
                max_inflight_bytes: c
                    .max_inflight_bytes
                    .map_or(QueueLimits::default().max_inflight_bytes, |b| usize::try_from(b).unwrap_or(usize::MAX)),
                ..QueueLimits::default()
            },
            max_inflight_messages: c.max_inflight_messages,
            message_size_limit: c.message_size_limit,
            max_packet_size: c.max_packet_size,
            max_keepalive: c.max_keepalive,
            persistent_client_expiration: c.persistent_client_expiration,
            retain_available: c.retain_available,
            max_qos: c.max_qos,
            sys_interval: Duration::from_secs(c.sys_interval),
            connect_timeout: Duration::from_secs(10),
            park_after: (c.park_idle_after > 0).then(|| Duration::from_secs(c.park_idle_after)),
            shared_strategy: c.shared_subscription_strategy,
            max_topic_alias: c.max_topic_alias,
            response_information_prefix: c.response_information_prefix.clone(),
            upgrade_outgoing_qos: c.upgrade_outgoing_qos,
            check_retain_source: c.check_retain_source,
            clientid_prefixes: c.clientid_prefixes.clone(),
            listeners: c
                .listeners
                .iter()
                .map(|l| ListenerSettings {
                    max_qos: Some(l.max_qos),
                    mount_point: l.mount_point.clone(),
                    allow_zero_length_clientid: Some(c.allow_zero_length_clientid_for(Some(l))),
                    auto_id_prefix: Some(c.auto_id_prefix_for(Some(l)).to_owned()),
                    max_connections: l.max_connections,
                    use_username_as_clientid: l.use_username_as_clientid,
                })
                .collect(),
            max_topic_levels: c.max_topic_levels,
            memory_limit: c.memory_limit.map_or(DEFAULT_MEMORY_LIMIT, |b| usize::try_from(b).unwrap_or(usize::MAX)),
        }
    }

    /// `max_qos` on listener `index`.
    pub fn max_qos(&self, index: u16) -> u8 {
        self.listeners.get(usize::from(index)).and_then(|l| l.max_qos).unwrap_or(self.max_qos)
    }

    /// `mount_point` of listener `index`, if it has one.
    pub fn mount_point(&self, index: u16) -> Option<&str> {
        self.listeners.get(usize::from(index)).and_then(|l| l.mount_point.as_deref())
    }

    /// `allow_zero_length_clientid` on listener `index`.
    pub fn allow_zero_length_clientid(&self, index: u16) -> bool {
        let own = self.listeners.get(usize::from(index)).and_then(|l| l.allow_zero_length_clientid);
        own.unwrap_or(self.allow_zero_length_clientid)
    }

    /// `use_username_as_clientid` on listener `index`.
    pub fn use_username_as_clientid(&self, index: u16) -> bool {
        self.listeners.get(usize::from(index)).is_some_and(|l| l.use_username_as_clientid)
    }

    /// `auto_id_prefix` on listener `index`.
    pub fn auto_id_prefix(&self, index: u16) -> &str {
        let own = self.listeners.get(usize::from(index)).and_then(|l| l.auto_id_prefix.as_deref());
        own.unwrap_or(&self.auto_id_prefix)
    }
}

/// `topic` as a client of a listener with `mount_point` sees it: without the prefix (Mosquitto strips it
/// from outgoing PUBLISH topics).
pub fn unmounted<'a>(mount_point: Option<&str>, topic: &'a str) -> &'a str {
    match mount_point {
        Some(prefix) => topic.strip_prefix(prefix).unwrap_or(topic),
        None => topic,
    }
}

/// `topic` (or filter) of a client of a listener with `mount_point`, as the broker stores and matches it.
pub fn mounted(mount_point: Option<&str>, topic: String) -> String {
    match mount_point {
        Some(prefix) => format!("{prefix}{topic}"),
        None => topic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Config {
        match Config::parse(text, std::path::Path::new("test.conf")) {
            Ok(config) => config,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    #[test]
    fn memory_bounds_default_to_limits_and_can_be_lifted() {
        let defaults = Settings::from_config(&parse(""));
        assert_eq!(defaults.queue.max_bytes, mqttd_core::QueueLimits::DEFAULT_MAX_BYTES);
        assert_eq!(defaults.memory_limit, DEFAULT_MEMORY_LIMIT);
        assert_eq!(defaults.max_topic_levels, 200);
        let config = parse(
            "memory_limit 1048576
    max_topic_levels 10
    ",
        );
        assert_eq!((config.memory_limit, config.max_topic_levels), (Some(1_048_576), 10));
        let lifted = Settings::from_config(&parse(
            "memory_limit 0
    max_queued_bytes 0
    max_topic_levels 0
    ",
        ));
        assert_eq!((lifted.memory_limit, lifted.queue.max_bytes, lifted.max_topic_levels), (0, 0, 0));
    }
}
