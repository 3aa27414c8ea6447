//! The broker's configuration: Mosquitto's `mosquitto.conf` syntax, read unchanged into a typed [`Config`].
//!
//! Owns: the line format (`directive value...`, `#` comments), every directive's accepted values and
//! Mosquitto 2 defaults, `include_dir`, and which settings attach to which listener. Must not: open sockets,
//! read password, ACL or certificate files (it only records their paths), or log: problems are returned as
//! [`ConfigError`] and deprecation notes as [`ConfigWarning`], for the caller to report.
//!
//! Rules taken from Mosquitto 2 (`src/conf.c`):
//! - A line whose first non-blank character is `#` is a comment. Path and string values run to the end of
//!   the line (spaces included); other values are single words, optionally followed by a `# comment`.
//! - Listener settings (`certfile`, `protocol`, `max_connections`, ...) attach to the most recent
//!   `listener` line of the same file. Before any `listener` line they configure the default listener,
//!   which `port` and `bind_address` also configure and which exists (port 1883 unless `port` says
//!   otherwise) as soon as one of them is given. `max_connections` and `max_qos` are the exception: before
//!   any `listener` line they set the value for every listener (Mosquitto would create a second listener).
//! - `allow_anonymous`, `password_file`, `acl_file`, `allow_zero_length_clientid` and `auto_id_prefix` are
//!   global, unless `per_listener_settings true` is given first: then they attach to the current listener.
//!   `per_listener_settings true` after any of them is an error, as in Mosquitto.
//! - A path or string directive given twice in the same scope is an error ("duplicate"), as in Mosquitto.
//! - `include_dir DIR` reads every `*.conf` file in DIR, sorted as Mosquitto sorts them (case-insensitive
//!   first), and is only allowed in the main file.
//! - `persistence`, `persistence_file` and `persistence_location` configure the durable store (`store/`);
//!   `autosave_*` are parsed with a warning that every change is durable anyway; `pid_file`, `user` and the
//!   logging directives are applied by the binary (`main.rs`, `log.rs`, `process.rs`).
//! - `connection NAME` starts a bridge; the bridge directives after it (in the same file) configure it
//!   (`bridge.rs`). Plugins, TLS-PSK (`bridge_psk`, `bridge_identity`) and the other directives listed in
//!   `values::unsupported` are errors that say the directive is not supported yet.

mod bridge;
mod cluster;
mod error;
mod parse;
mod reload;
mod values;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod walk_tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use bridge::{BridgeConfig, BridgeTls, BridgeTopic, Direction, Restart, StartType};
pub use cluster::ClusterConfig;
pub use error::{ConfigError, ConfigWarning};

/// The default of `max_topic_levels`, Mosquitto's fixed limit (`TOPIC_HIERARCHY_LIMIT`).
pub const DEFAULT_MAX_TOPIC_LEVELS: usize = 200;
/// The default of `memory_limit`: 256 MiB of messages.
pub const DEFAULT_MEMORY_LIMIT: usize = 256 << 20;

/// Where a setting was written: file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The whole configuration, with Mosquitto 2 defaults for everything not written in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Configured listeners, in file order; the default listener (from `port`, `bind_address` or listener
    /// settings before the first `listener` line) comes last. Empty: the broker picks its local-only default.
    pub listeners: Vec<ListenerConfig>,
    /// `per_listener_settings` (false): security settings attach to listeners instead of being global.
    pub per_listener_settings: bool,
    /// `allow_anonymous`; `None` = not written, see [`Config::allow_anonymous_for`].
    pub allow_anonymous: Option<bool>,
    /// `password_file` (global; see [`Config::password_file_for`]).
    pub password_file: Option<PathBuf>,
    /// `acl_file` (global; see [`Config::acl_file_for`]).
    pub acl_file: Option<PathBuf>,
    /// `allow_zero_length_clientid` (true).
    pub allow_zero_length_clientid: bool,
    /// `auto_id_prefix` ("auto-").
    pub auto_id_prefix: String,
    /// `check_retain_source` (true).
    pub check_retain_source: bool,
    /// `clientid_prefixes`: only client ids starting with this may connect (`None`: any).
    pub clientid_prefixes: Option<String>,
    /// `websockets_headers_size`: the largest HTTP request head of a WebSocket upgrade, in bytes
    /// (`None` or 0: mqttd's default, 16 KiB).
    pub websockets_headers_size: Option<usize>,
    /// `max_queued_messages` (1000; 0 = unlimited; negative values mean 0 as in Mosquitto).
    pub max_queued_messages: usize,
    /// `max_queued_bytes` (0 = unlimited). Unset: mqttd's own bound (`QueueLimits::DEFAULT_MAX_BYTES`),
    /// not Mosquitto's "unlimited": an offline session cannot take all the memory it is sent.
    pub max_queued_bytes: Option<u64>,
    /// `memory_limit` in bytes (0 = unlimited). Unset: mqttd's own bound ([`DEFAULT_MEMORY_LIMIT`]).
    pub memory_limit: Option<u64>,
    /// `max_topic_levels` (mqttd's own directive; 200 as Mosquitto's fixed limit, 0 = no limit).
    pub max_topic_levels: usize,
    /// `queue_qos0_messages` (false).
    pub queue_qos0_messages: bool,
    /// `max_inflight_messages` (20; 0 = unlimited).
    pub max_inflight_messages: u16,
    /// `max_inflight_bytes` (0 = unlimited). Unset: mqttd's own bound (`QueueLimits::default`), not
    /// Mosquitto's "unlimited": a memory bound per client that costs no throughput.
    pub max_inflight_bytes: Option<u64>,
    /// `message_size_limit` (0 = no limit beyond the protocol's).
    pub message_size_limit: u32,
    /// `max_packet_size` (0 = no limit beyond the protocol's).
    pub max_packet_size: u32,
    /// `max_keepalive` (65535).
    pub max_keepalive: u16,
    /// `threads` (mqttd's own directive; 0 = choose from the machine): threads that serve connections.
    pub threads: usize,
    /// `park_idle_after` (mqttd's own directive; seconds, 0 = never): a plain-TCP connection quiet for this
    /// long gives up its task until its socket or its session wakes it (see `park.rs`).
    pub park_idle_after: u64,
    /// `max_topic_alias` (10, as Mosquitto): topic aliases a 5.0 client may use towards the broker.
    pub max_topic_alias: u16,
    /// `shared_subscription_strategy` (mqttd's own, with EMQX's values; round_robin).
    pub shared_subscription_strategy: crate::shared::Strategy,
    /// `response_information_prefix` (mqttd's own; "responses/"): Response Information is this prefix
    /// and the client id.
    pub response_information_prefix: String,
    /// `max_connections` written before any `listener` line (`None` = unlimited, written as -1); copied
    /// into every listener that does not set its own.
    pub max_connections: Option<usize>,
    /// `max_qos` written before any `listener` line (2); copied into every listener without its own.
    pub max_qos: u8,
    /// `persistent_client_expiration` (`None` = never).
    pub persistent_client_expiration: Option<Duration>,
    /// `retain_available` (true).
    pub retain_available: bool,
    /// `upgrade_outgoing_qos` (false).
    pub upgrade_outgoing_qos: bool,
    /// `set_tcp_nodelay` (false).
    pub set_tcp_nodelay: bool,
    /// `sys_interval` in seconds (10; 0 disables `$SYS` updates).
    pub sys_interval: u64,
    /// `log_type` (error, warning, notice, information). Empty after `log_type none`.
    pub log_type: Vec<LogType>,
    /// `log_dest` (stderr). Empty after `log_dest none`.
    pub log_dest: Vec<LogDest>,
    /// `log_timestamp` (true).
    pub log_timestamp: bool,
    /// `log_timestamp_format` (strftime format; `None` = seconds since the epoch).
    pub log_timestamp_format: Option<String>,
    /// `log_facility` N for syslog facility localN (`None` = daemon).
    pub log_facility: Option<u8>,
    /// `connection_messages` (true).
    pub connection_messages: bool,
    /// `persistence` or `retained_persistence` (false).
    pub persistence: bool,
    /// `persistence_file` (`None`: "mqttd.db"; mqttd's log is not Mosquitto's format).
    pub persistence_file: Option<String>,
    /// The `cluster_*` directives: this node's cluster, if any.
    pub cluster: ClusterConfig,
    /// `mqttd --recover`: a damaged durable store is moved aside rather than refused (not a directive).
    pub recover: bool,
    /// `persistence_location` (`None` = the working directory).
    pub persistence_location: Option<PathBuf>,
    /// `autosave_interval` (1800 seconds; negative values mean 0).
    pub autosave_interval: u64,
    /// `autosave_on_changes` (false).
    pub autosave_on_changes: bool,
    /// `pid_file`.
    pub pid_file: Option<PathBuf>,
    /// `user`: the account Mosquitto drops privileges to when started as root.
    pub user: Option<String>,
    /// `connection` sections: bridges to other brokers, in file order.
    pub bridges: Vec<BridgeConfig>,
    /// Every file read, main file first, then `include_dir` files in the order read.
    pub files: Vec<PathBuf>,
    /// Deprecated or ignored directives that were accepted; the broker should log them.
    pub warnings: Vec<ConfigWarning>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: Vec::new(),
            per_listener_settings: false,
            allow_anonymous: None,
            password_file: None,
            acl_file: None,
            allow_zero_length_clientid: true,
            auto_id_prefix: "auto-".to_owned(),
            check_retain_source: true,
            clientid_prefixes: None,
            websockets_headers_size: None,
            max_queued_messages: 1000,
            max_queued_bytes: None,
            memory_limit: None,
            max_topic_levels: DEFAULT_MAX_TOPIC_LEVELS,
            queue_qos0_messages: false,
            max_inflight_messages: 20,
            max_inflight_bytes: None,
            message_size_limit: 0,
            max_packet_size: 0,
            max_keepalive: 65535,
            threads: 0,
            park_idle_after: 1,
            max_topic_alias: 10,
            shared_subscription_strategy: crate::shared::Strategy::RoundRobin,
            response_information_prefix: "responses/".into(),
            max_connections: None,
            max_qos: 2,
            persistent_client_expiration: None,
            retain_available: true,
            upgrade_outgoing_qos: false,
            set_tcp_nodelay: false,
            sys_interval: 10,
            log_type: LogType::DEFAULT.to_vec(),
            log_dest: vec![LogDest::Stderr],
            log_timestamp: true,
            log_timestamp_format: None,
            log_facility: None,
            connection_messages: true,
            persistence: false,
            persistence_file: None,
            persistence_location: None,
            recover: false,
            cluster: ClusterConfig::default(),
            autosave_interval: 1800,
            autosave_on_changes: false,
            pid_file: None,
            user: None,
            bridges: Vec::new(),
            files: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl Config {
    /// Where the durable store lives: `persistence_file` (default `mqttd.db`) in `persistence_location`.
    pub fn store_path(&self) -> PathBuf {
        let file = self.persistence_file.as_deref().unwrap_or("mqttd.db");
        self.persistence_location.as_deref().unwrap_or(Path::new("")).join(file)
    }

    /// Reads and parses the file at `path` (and any `include_dir` files it names).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut parser = parse::Parser::default();
        parser.read_file(path, true)?;
        parser.finish()
    }

    /// Parses `text` as the main configuration file; `origin` names it in errors and locations.
    /// `include_dir` lines still read their directories from disk.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut parser = parse::Parser::default();
        parser.read_text(text, origin, true)?;
        parser.finish()
    }

    /// Whether clients without a username may connect on `listener` (`None`: the broker's built-in
    /// local-only listeners, used when `listeners` is empty).
    ///
    /// Mosquitto 2: when no listener is configured the broker only listens on loopback and anonymous
    /// access defaults to true; as soon as a listener (or `port`/`bind_address`) is configured it defaults
    /// to false. With `per_listener_settings true` each listener has its own value.
    pub fn allow_anonymous_for(&self, listener: Option<&ListenerConfig>) -> bool {
        let explicit = match listener {
            Some(l) if self.per_listener_settings => l.allow_anonymous,
            _ => self.allow_anonymous,
        };
        explicit.unwrap_or(self.listeners.is_empty())
    }

    /// The password file in force on `listener` (per listener with `per_listener_settings true`).
    pub fn password_file_for<'a>(&'a self, listener: Option<&'a ListenerConfig>) -> Option<&'a Path> {
        match listener {
            Some(l) if self.per_listener_settings => l.password_file.as_deref(),
            _ => self.password_file.as_deref(),
        }
    }

    /// The ACL file in force on `listener` (per listener with `per_listener_settings true`).
    pub fn acl_file_for<'a>(&'a self, listener: Option<&'a ListenerConfig>) -> Option<&'a Path> {
        match listener {
            Some(l) if self.per_listener_settings => l.acl_file.as_deref(),
            _ => self.acl_file.as_deref(),
        }
    }

    /// `allow_zero_length_clientid` in force on `listener`.
    pub fn allow_zero_length_clientid_for(&self, listener: Option<&ListenerConfig>) -> bool {
        match listener {
            Some(l) if self.per_listener_settings => l.allow_zero_length_clientid.unwrap_or(true),
            _ => self.allow_zero_length_clientid,
        }
    }

    /// `auto_id_prefix` in force on `listener`.
    pub fn auto_id_prefix_for<'a>(&'a self, listener: Option<&'a ListenerConfig>) -> &'a str {
        match listener {
            Some(l) if self.per_listener_settings => l.auto_id_prefix.as_deref().unwrap_or("auto-"),
            _ => &self.auto_id_prefix,
        }
    }
}

/// One `listener PORT [ADDRESS]` block (or the default listener) and the settings that follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// TCP port; 0 asks the OS for an ephemeral port (tests).
    pub port: u16,
    /// Address or host name to bind; `None` = all interfaces.
    pub bind_address: Option<String>,
    /// `socket_domain`: restrict to IPv4 or IPv6 (`None` = both).
    pub socket_domain: Option<SocketDomain>,
    /// `protocol` (mqtt).
    pub protocol: ListenerProtocol,
    /// `http_dir`: files served over HTTP on a WebSockets listener.
    pub http_dir: Option<PathBuf>,
    /// `http_token` (mqttd's own): a bearer token that grants access to a `protocol http` listener.
    pub http_token: Option<String>,
    /// `certfile`: PEM server certificate (chain); its presence makes the listener TLS.
    pub certfile: Option<PathBuf>,
    /// `keyfile`: PEM private key for `certfile`.
    pub keyfile: Option<PathBuf>,
    /// `cafile`: PEM CA certificates for verifying client certificates.
    pub cafile: Option<PathBuf>,
    /// `capath`: directory of PEM CA certificates.
    pub capath: Option<PathBuf>,
    /// `require_certificate` (false).
    pub require_certificate: bool,
    /// `use_identity_as_username` (false): certificate CN replaces the MQTT username.
    pub use_identity_as_username: bool,
    /// `use_subject_as_username` (false): certificate subject replaces the MQTT username.
    pub use_subject_as_username: bool,
    /// `tls_version`: the lowest TLS version accepted (`None` = 1.2 and 1.3).
    pub tls_version: Option<TlsVersion>,
    /// `ciphers`: OpenSSL-style cipher list, as written.
    pub ciphers: Option<String>,
    /// `ciphers_tls1.3`: OpenSSL-style TLS 1.3 suite list, as written.
    pub ciphers_tls13: Option<String>,
    /// `crlfile`: PEM certificate revocation lists checked for client certificates.
    pub crlfile: Option<PathBuf>,
    /// `use_username_as_clientid` (false): the username replaces the client id.
    pub use_username_as_clientid: bool,
    /// `bind_interface`: the listener only accepts connections arriving on this network interface
    /// (SO_BINDTODEVICE).
    pub bind_interface: Option<String>,
    /// `allow_anonymous` for this listener (only with `per_listener_settings true`).
    pub allow_anonymous: Option<bool>,
    /// `password_file` for this listener (only with `per_listener_settings true`).
    pub password_file: Option<PathBuf>,
    /// `acl_file` for this listener (only with `per_listener_settings true`).
    pub acl_file: Option<PathBuf>,
    /// `allow_zero_length_clientid` for this listener (only with `per_listener_settings true`).
    pub allow_zero_length_clientid: Option<bool>,
    /// `auto_id_prefix` for this listener (only with `per_listener_settings true`).
    pub auto_id_prefix: Option<String>,
    /// `max_connections` in force: the listener's own, else the one written before any listener
    /// (`None` = unlimited).
    pub max_connections: Option<usize>,
    /// `max_qos` in force: the listener's own, else the one written before any listener (2).
    pub max_qos: u8,
    /// `mount_point`: topic prefix for clients of this listener.
    pub mount_point: Option<String>,
    /// Where the listener was defined: its `listener` line, or the first line that configured the default.
    pub defined_at: Location,
}

impl ListenerConfig {
    /// A listener with every setting at its default.
    pub fn new(port: u16, bind_address: Option<String>, defined_at: Location) -> Self {
        ListenerConfig {
            port,
            bind_address,
            socket_domain: None,
            protocol: ListenerProtocol::Mqtt,
            http_dir: None,
            http_token: None,
            certfile: None,
            keyfile: None,
            cafile: None,
            capath: None,
            require_certificate: false,
            use_identity_as_username: false,
            use_subject_as_username: false,
            tls_version: None,
            ciphers: None,
            ciphers_tls13: None,
            crlfile: None,
            use_username_as_clientid: false,
            bind_interface: None,
            allow_anonymous: None,
            password_file: None,
            acl_file: None,
            allow_zero_length_clientid: None,
            auto_id_prefix: None,
            max_connections: None,
            max_qos: 2,
            mount_point: None,
            defined_at,
        }
    }

    /// Whether this listener speaks TLS (a `certfile` is configured).
    pub fn is_tls(&self) -> bool {
        self.certfile.is_some()
    }
}

/// `protocol` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    Mqtt,
    WebSockets,
    /// mqttd's own: metrics, the admin API and the dashboard over HTTP (Mosquitto rejects the value).
    Http,
}

/// `socket_domain` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketDomain {
    Ipv4,
    Ipv6,
}

/// `tls_version`: the lowest accepted version (rustls has no TLS 1.1: `tlsv1.1` is refused at startup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls1_2,
    Tls1_3,
}

/// One `log_type` value. `log_type none` is represented by an empty list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    Debug,
    Error,
    Warning,
    Notice,
    Information,
    Subscribe,
    Unsubscribe,
    WebSockets,
    Internal,
    All,
}

impl LogType {
    /// Mosquitto's default when no `log_type` line is given.
    pub const DEFAULT: [LogType; 4] = [LogType::Error, LogType::Warning, LogType::Notice, LogType::Information];
}

/// One `log_dest` value. `log_dest none` is represented by an empty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    Stdout,
    Stderr,
    Syslog,
    /// `$SYS/broker/log/...` topics.
    Topic,
    /// Linux Diagnostic Log and Trace.
    Dlt,
    File(PathBuf),
}

#[cfg(test)]
mod bridge_tests;
#[cfg(test)]
mod cluster_tests;
