//! The broker's effective settings: what the connection tasks read, derived once from the config file.

use std::time::Duration;

use mqttd_core::QueueLimits;

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
    /// Topic names and filters with more levels are refused (`max_topic_levels`); 0 means no limit.
    pub max_topic_levels: usize,
    /// Memory held for messages (queued, inflight, retained) above which new publishes are refused
    /// (`memory_limit`); 0 means no limit.
    pub memory_limit: usize,
}

/// The default of `max_topic_levels`, Mosquitto's fixed limit (`TOPIC_HIERARCHY_LIMIT`).
pub const DEFAULT_MAX_TOPIC_LEVELS: usize = 200;
/// The default of `memory_limit`: 256 MiB of messages.
pub const DEFAULT_MEMORY_LIMIT: usize = 256 << 20;

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
            max_topic_levels: c.max_topic_levels,
            memory_limit: c.memory_limit.map_or(DEFAULT_MEMORY_LIMIT, |b| usize::try_from(b).unwrap_or(usize::MAX)),
        }
    }
}
