//! `connection NAME` sections: Mosquitto's bridge directives (mosquitto.conf(5) "Configuring Bridges",
//! `src/conf.c`), with its defaults. A bridge directive applies to the most recent `connection` line of the
//! same file; one before any is an error, as in Mosquitto. A bridge needs an `address` and a `topic`.

use std::net::IpAddr;
use std::path::PathBuf;

use mqttd_proto::{topic, ProtocolVersion, QoS};

use super::values::{set_once, Line};
use super::{ConfigError, Location, TlsVersion};

/// One `connection` section.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    /// The `connection` name.
    pub name: String,
    /// `address`/`addresses`: host and port (1883 when not written), in order.
    pub addresses: Vec<(String, u16)>,
    /// `round_robin` (false): the first address is the main one, returned to when it is back.
    pub round_robin: bool,
    /// `topic` lines, in order.
    pub topics: Vec<BridgeTopic>,
    /// `bridge_protocol_version` (mqttv311).
    pub protocol_version: ProtocolVersion,
    /// `cleansession` (false).
    pub cleansession: bool,
    /// `local_cleansession` (the value of `cleansession`).
    pub local_cleansession: Option<bool>,
    /// `bridge_session_expiry_interval` (5.0; `None` = not sent).
    pub session_expiry_interval: Option<u32>,
    /// `keepalive_interval` (60 seconds; at least 5).
    pub keepalive: u16,
    /// `remote_clientid` or `clientid` (`hostname.name`, see [`BridgeConfig::remote_clientid`]).
    pub remote_clientid: Option<String>,
    /// `local_clientid` (`local.<remote_clientid>`).
    pub local_clientid: Option<String>,
    /// `remote_username` or `username`.
    pub remote_username: Option<String>,
    /// `remote_password` or `password`.
    pub remote_password: Option<String>,
    /// `local_username`: the identity the bridge has in this broker (ACLs apply to it).
    pub local_username: Option<String>,
    /// `local_password`.
    pub local_password: Option<String>,
    /// `notifications` (true).
    pub notifications: bool,
    /// `notifications_local_only` (false).
    pub notifications_local_only: bool,
    /// `notification_topic` (`$SYS/broker/connection/<remote_clientid>/state`).
    pub notification_topic: Option<String>,
    /// `restart_timeout` (backoff from 5 s up to 30 s).
    pub restart: Restart,
    /// `start_type` (automatic).
    pub start_type: StartType,
    /// `threshold` (10 queued messages start a lazy bridge).
    pub threshold: usize,
    /// `idle_timeout` (60 seconds without traffic stop a lazy bridge).
    pub idle_timeout: u64,
    /// `try_private` (true).
    pub try_private: bool,
    /// `bridge_attempt_unsubscribe` (true).
    pub attempt_unsubscribe: bool,
    /// `bridge_outgoing_retain` (true).
    pub outgoing_retain: bool,
    /// `bridge_max_packet_size` (0 = no limit).
    pub max_packet_size: u32,
    /// `bridge_receive_maximum` (5.0; `None` = not sent).
    pub receive_maximum: Option<u16>,
    /// `bridge_bind_address`.
    pub bind_address: Option<IpAddr>,
    /// `bridge_cafile`, `bridge_capath`, ...: TLS to the remote when a CA is given.
    pub tls: BridgeTls,
    /// The `connection` line.
    pub defined_at: Location,
}

/// The TLS settings of a bridge.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BridgeTls {
    pub cafile: Option<PathBuf>,
    pub capath: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// `bridge_insecure` (false).
    pub insecure: bool,
    pub tls_version: Option<TlsVersion>,
    pub alpn: Option<String>,
}

impl BridgeTls {
    /// Whether the bridge uses TLS: Mosquitto turns it on with `bridge_cafile` or `bridge_capath`.
    pub fn enabled(&self) -> bool {
        self.cafile.is_some() || self.capath.is_some()
    }
}

/// `restart_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// `restart_timeout N`: N seconds every time.
    Constant(u64),
    /// `restart_timeout BASE CAP`: "decorrelated jitter" from BASE up to CAP seconds.
    Backoff { base: u64, cap: u64 },
}

/// `start_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartType {
    Automatic,
    Lazy,
    Once,
}

/// Which way a `topic` line shares messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Out,
    In,
    Both,
}

/// `topic pattern [[[out|in|both] qos] local-prefix remote-prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTopic {
    /// `None` for `""`: the prefixes are the whole topics.
    pub pattern: Option<String>,
    pub direction: Direction,
    pub qos: QoS,
    pub local_prefix: Option<String>,
    pub remote_prefix: Option<String>,
}

impl BridgeTopic {
    /// The filter subscribed to on this broker (`out`, `both`): the local prefix and the pattern.
    pub fn local_topic(&self) -> String {
        join(self.local_prefix.as_deref(), self.pattern.as_deref())
    }

    /// The filter subscribed to on the remote broker (`in`, `both`): the remote prefix and the pattern.
    pub fn remote_topic(&self) -> String {
        join(self.remote_prefix.as_deref(), self.pattern.as_deref())
    }

    pub fn is_out(&self) -> bool {
        self.direction != Direction::In
    }

    pub fn is_in(&self) -> bool {
        self.direction != Direction::Out
    }
}

fn join(prefix: Option<&str>, pattern: Option<&str>) -> String {
    format!("{}{}", prefix.unwrap_or(""), pattern.unwrap_or(""))
}

impl BridgeConfig {
    fn new(name: String, defined_at: Location) -> BridgeConfig {
        BridgeConfig {
            name,
            addresses: Vec::new(),
            round_robin: false,
            topics: Vec::new(),
            protocol_version: ProtocolVersion::V3_1_1,
            cleansession: false,
            local_cleansession: None,
            session_expiry_interval: None,
            keepalive: 60,
            remote_clientid: None,
            local_clientid: None,
            remote_username: None,
            remote_password: None,
            local_username: None,
            local_password: None,
            notifications: true,
            notifications_local_only: false,
            notification_topic: None,
            restart: Restart::Backoff { base: 5, cap: 30 },
            start_type: StartType::Automatic,
            threshold: 10,
            idle_timeout: 60,
            try_private: true,
            attempt_unsubscribe: true,
            outgoing_retain: true,
            max_packet_size: 0,
            receive_maximum: None,
            bind_address: None,
            tls: BridgeTls::default(),
            defined_at,
        }
    }

    /// The client id on the remote broker: `remote_clientid`, else `hostname.name` as Mosquitto.
    pub fn remote_clientid(&self) -> String {
        self.remote_clientid.clone().unwrap_or_else(|| format!("{}.{}", hostname(), self.name))
    }

    /// The client id of the bridge's session in this broker: `local_clientid`, else `local.<remote id>`.
    pub fn local_clientid(&self) -> String {
        self.local_clientid.clone().unwrap_or_else(|| format!("local.{}", self.remote_clientid()))
    }

    /// The topic of the bridge's state notifications.
    pub fn notification_topic(&self) -> String {
        self.notification_topic
            .clone()
            .unwrap_or_else(|| format!("$SYS/broker/connection/{}/state", self.remote_clientid()))
    }

    /// `local_cleansession`, which defaults to `cleansession`.
    pub fn local_cleansession(&self) -> bool {
        self.local_cleansession.unwrap_or(self.cleansession)
    }
}

/// This machine's host name (Mosquitto's `gethostname`), "localhost" when unknown.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Directives of a `connection` section (other than `connection` itself).
pub(super) const DIRECTIVES: &[&str] = &[
    "address",
    "addresses",
    "bridge_alpn",
    "bridge_attempt_unsubscribe",
    "bridge_bind_address",
    "bridge_cafile",
    "bridge_capath",
    "bridge_certfile",
    "bridge_insecure",
    "bridge_keyfile",
    "bridge_max_packet_size",
    "bridge_outgoing_retain",
    "bridge_protocol_version",
    "bridge_receive_maximum",
    "bridge_session_expiry_interval",
    "bridge_tls_version",
    "cleansession",
    "clientid",
    "idle_timeout",
    "keepalive_interval",
    "local_cleansession",
    "local_clientid",
    "local_password",
    "local_username",
    "notification_topic",
    "notifications",
    "notifications_local_only",
    "password",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "restart_timeout",
    "round_robin",
    "start_type",
    "threshold",
    "topic",
    "try_private",
    "username",
];

/// A new `connection NAME` section; names must be unique.
pub(super) fn connection(bridges: &[BridgeConfig], line: &Line<'_>) -> Result<BridgeConfig, ConfigError> {
    let name = line.word("a bridge name")?;
    if let Some(other) = bridges.iter().find(|b| b.name == name) {
        return Err(line.error(format!("duplicate bridge name '{name}' (first at {})", other.defined_at)));
    }
    Ok(BridgeConfig::new(name.to_owned(), line.location()))
}

/// Applies one bridge directive to `bridge`.
pub(super) fn apply(bridge: &mut BridgeConfig, line: &Line<'_>) -> Result<(), ConfigError> {
    match line.directive {
        "address" | "addresses" => addresses(bridge, line)?,
        "topic" => bridge.topics.push(topic_line(line)?),
        "round_robin" => bridge.round_robin = line.bool()?,
        "bridge_protocol_version" => {
            const WHAT: &str = "mqttv50, mqttv311 or mqttv31";
            bridge.protocol_version = match line.word(WHAT)? {
                "mqttv50" => ProtocolVersion::V5,
                "mqttv311" => ProtocolVersion::V3_1_1,
                "mqttv31" => ProtocolVersion::V3_1,
                other => return Err(line.expected(WHAT, other)),
            }
        }
        "cleansession" => bridge.cleansession = line.bool()?,
        "local_cleansession" => bridge.local_cleansession = Some(line.bool()?),
        "bridge_session_expiry_interval" => {
            bridge.session_expiry_interval = Some(line.int(0, i64::from(u32::MAX))? as u32)
        }
        // Mosquitto raises values under 5 to 5.
        "keepalive_interval" => bridge.keepalive = line.int(0, 65535)?.max(5) as u16,
        "remote_clientid" | "clientid" => set_once(&mut bridge.remote_clientid, word(line, "a client id")?, line)?,
        "local_clientid" => set_once(&mut bridge.local_clientid, word(line, "a client id")?, line)?,
        "remote_username" | "username" => set_once(&mut bridge.remote_username, text(line, "a user name")?, line)?,
        "remote_password" | "password" => set_once(&mut bridge.remote_password, text(line, "a password")?, line)?,
        "local_username" => set_once(&mut bridge.local_username, text(line, "a user name")?, line)?,
        "local_password" => set_once(&mut bridge.local_password, text(line, "a password")?, line)?,
        "notifications" => bridge.notifications = line.bool()?,
        "notifications_local_only" => bridge.notifications_local_only = line.bool()?,
        "notification_topic" => {
            let value = line.text("a topic")?;
            topic::validate_topic_name(value).map_err(|e| line.expected(&format!("a topic name ({e})"), value))?;
            set_once(&mut bridge.notification_topic, value.to_owned(), line)?
        }
        "restart_timeout" => bridge.restart = restart(line)?,
        _ => return apply_more(bridge, line),
    }
    Ok(())
}

fn apply_more(bridge: &mut BridgeConfig, line: &Line<'_>) -> Result<(), ConfigError> {
    match line.directive {
        "start_type" => {
            const WHAT: &str = "automatic, lazy or once";
            bridge.start_type = match line.word(WHAT)? {
                "automatic" => StartType::Automatic,
                "lazy" => StartType::Lazy,
                "once" => StartType::Once,
                other => return Err(line.expected(WHAT, other)),
            }
        }
        // Mosquitto raises values under 1 to 1.
        "threshold" => bridge.threshold = line.int(i64::MIN, i64::from(u32::MAX))?.max(1) as usize,
        "idle_timeout" => bridge.idle_timeout = line.int(i64::MIN, i64::from(u32::MAX))?.max(1) as u64,
        "try_private" => bridge.try_private = line.bool()?,
        "bridge_attempt_unsubscribe" => bridge.attempt_unsubscribe = line.bool()?,
        "bridge_outgoing_retain" => bridge.outgoing_retain = line.bool()?,
        "bridge_max_packet_size" => bridge.max_packet_size = line.int(0, 268_435_460)? as u32,
        "bridge_receive_maximum" => bridge.receive_maximum = Some(line.int(1, 65535)? as u16),
        "bridge_bind_address" => {
            let word = line.word("an IP address")?;
            let address = word.parse().map_err(|_| line.expected("an IP address", word))?;
            bridge.bind_address = Some(address);
        }
        "bridge_cafile" => set_once(&mut bridge.tls.cafile, line.path()?, line)?,
        "bridge_capath" => set_once(&mut bridge.tls.capath, line.path()?, line)?,
        "bridge_certfile" => set_once(&mut bridge.tls.certfile, line.path()?, line)?,
        "bridge_keyfile" => set_once(&mut bridge.tls.keyfile, line.path()?, line)?,
        "bridge_insecure" => bridge.tls.insecure = line.bool()?,
        "bridge_tls_version" => set_once(&mut bridge.tls.tls_version, line.tls_version()?, line)?,
        "bridge_alpn" => set_once(&mut bridge.tls.alpn, word(line, "an ALPN protocol name")?, line)?,
        _ => return Err(line.error("not a bridge directive")),
    }
    Ok(())
}

fn word(line: &Line<'_>, what: &str) -> Result<String, ConfigError> {
    line.word(what).map(str::to_owned)
}

fn text(line: &Line<'_>, what: &str) -> Result<String, ConfigError> {
    line.text(what).map(str::to_owned)
}

/// `address host[:port] [host[:port]]...`: the port follows the last `:` (so an IPv6 address needs one).
fn addresses(bridge: &mut BridgeConfig, line: &Line<'_>) -> Result<(), ConfigError> {
    if !bridge.addresses.is_empty() {
        return Err(line.error("duplicate value: a bridge takes one address or addresses line"));
    }
    let words = line.words();
    if words.is_empty() {
        return Err(line.expected("host[:port] ...", ""));
    }
    for word in words {
        let (host, port) = match word.rsplit_once(':') {
            Some((host, port)) => match port.parse::<u16>() {
                Ok(p) if p > 0 => (host, p),
                _ => return Err(line.expected("a port 1..=65535 after ':'", word)),
            },
            None => (word, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(line.expected("host[:port]", word));
        }
        bridge.addresses.push((host.to_owned(), port));
    }
    Ok(())
}

/// `restart_timeout CONSTANT` or `restart_timeout BASE CAP`; values under 1 become 1, as in Mosquitto.
fn restart(line: &Line<'_>) -> Result<Restart, ConfigError> {
    const WHAT: &str = "seconds, or a base and a cap in seconds";
    let number = |w: &str| w.parse::<i64>().map(|v| v.max(1) as u64).map_err(|_| line.expected(WHAT, w));
    match line.words().as_slice() {
        [constant] => Ok(Restart::Constant(number(constant)?)),
        [base, cap] => {
            let (base, cap) = (number(base)?, number(cap)?);
            if cap < base {
                return Err(line.error("the backoff cap is lower than the base"));
            }
            Ok(Restart::Backoff { base, cap })
        }
        _ => Err(line.expected(WHAT, line.rest.trim())),
    }
}

/// `topic pattern [[[out|in|both] qos] local-prefix remote-prefix]`, with `""` for an empty value.
fn topic_line(line: &Line<'_>) -> Result<BridgeTopic, ConfigError> {
    const WHAT: &str = "pattern [[[out|in|both] qos] local-prefix remote-prefix]";
    // The pattern may be `#`; a `#` word after it starts a comment.
    let mut all = line.rest.split_whitespace();
    let words: Vec<&str> = all.next().into_iter().chain(all.take_while(|w| !w.starts_with('#'))).collect();
    let empty = |w: &str| (w != "\"\"").then(|| w.to_owned());
    let (pattern, direction, qos, prefixes) = match words.as_slice() {
        [pattern] => (*pattern, "out", "0", None),
        [pattern, direction] => (*pattern, *direction, "0", None),
        [pattern, direction, qos] => (*pattern, *direction, *qos, None),
        [pattern, direction, qos, local, remote] => (*pattern, *direction, *qos, Some((*local, *remote))),
        _ => return Err(line.expected(WHAT, line.rest.trim())),
    };
    let direction = match direction {
        "out" => Direction::Out,
        "in" => Direction::In,
        "both" => Direction::Both,
        other => return Err(line.expected("out, in or both", other)),
    };
    let qos = qos.parse::<u8>().ok().and_then(QoS::from_u8).ok_or_else(|| line.expected("a QoS 0, 1 or 2", qos))?;
    let (local_prefix, remote_prefix) = prefixes.map_or((None, None), |(l, r)| (empty(l), empty(r)));
    let topic = BridgeTopic { pattern: empty(pattern), direction, qos, local_prefix, remote_prefix };
    if topic.pattern.is_none() && (topic.local_prefix.is_none() || topic.remote_prefix.is_none()) {
        return Err(line.error("an empty pattern (\"\") needs both a local and a remote prefix"));
    }
    for prefix in [&topic.local_prefix, &topic.remote_prefix].into_iter().flatten() {
        topic::validate_topic_name(prefix)
            .map_err(|e| line.expected(&format!("a prefix without wildcards ({e})"), prefix))?;
    }
    for filter in [topic.local_topic(), topic.remote_topic()] {
        topic::validate_topic_filter(&filter)
            .map_err(|e| line.expected(&format!("a valid prefix and pattern ({e})"), &filter))?;
    }
    Ok(topic)
}

/// Mosquitto's checks once every file is read: an address and a topic per bridge, unique local client ids.
pub(super) fn check(bridges: &[BridgeConfig]) -> Result<(), ConfigError> {
    let invalid = |b: &BridgeConfig, message: String| ConfigError::Invalid {
        file: b.defined_at.file.clone(),
        line: b.defined_at.line,
        directive: "connection".to_owned(),
        message,
    };
    for (i, bridge) in bridges.iter().enumerate() {
        if bridge.addresses.is_empty() {
            return Err(invalid(bridge, format!("bridge '{}' has no address line", bridge.name)));
        }
        if bridge.topics.is_empty() {
            return Err(invalid(bridge, format!("bridge '{}' has no topic line", bridge.name)));
        }
        let id = bridge.local_clientid();
        if let Some(other) = bridges[..i].iter().find(|o| o.local_clientid() == id) {
            let at = &other.defined_at;
            return Err(invalid(bridge, format!("local_clientid '{id}' is also the one of the bridge at {at}")));
        }
    }
    Ok(())
}
