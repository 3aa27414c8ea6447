//! The reader: walks the lines of the main file and its `include_dir` files and applies each directive.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use super::bridge;
use super::values::{set_once, suggestion, unsupported, Line};
use super::{Config, ConfigError, ConfigWarning, ListenerConfig, ListenerProtocol, LogDest, SocketDomain};

/// Where listener settings go: the default listener, or an explicit `listener` (index into listeners).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Default,
    Listener(usize),
}

/// Per-file state: Mosquitto restarts at the default listener in every file.
struct Scope<'a> {
    file: &'a Path,
    main: bool,
    target: Target,
    /// The bridge of the most recent `connection` line in this file (index into `bridges`), as Mosquitto's
    /// `cur_bridge`.
    bridge: Option<usize>,
}

/// Settings a listener may override; resolved against the global value in [`Parser::finish`].
#[derive(Default, Clone, Copy)]
struct Overrides {
    max_connections: Option<Option<usize>>,
    max_qos: Option<u8>,
}

type Handler = fn(&mut Parser, &mut Scope<'_>, &Line<'_>) -> Result<bool, ConfigError>;

#[derive(Default)]
pub(super) struct Parser {
    config: Config,
    /// Created by the first directive that configures the default listener; its directive name is kept.
    default_listener: Option<(ListenerConfig, Overrides, String)>,
    default_port: Option<u16>,
    overrides: Vec<Overrides>,
    /// A security directive was seen: `per_listener_settings true` may no longer be given.
    security_seen: bool,
    log_type_set: bool,
    log_dest_set: bool,
    auto_id_prefix_set: bool,
}

impl Parser {
    pub fn read_file(&mut self, path: &Path, main: bool) -> Result<(), ConfigError> {
        let io_error = |error| ConfigError::Io { path: path.to_path_buf(), error };
        if path.is_dir() {
            let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "it is a directory");
            return Err(io_error(source));
        }
        let bytes = std::fs::read(path).map_err(io_error)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + valid.iter().filter(|b| **b == b'\n').count();
            ConfigError::Encoding { file: path.to_path_buf(), line }
        })?;
        self.read_text(&text, path, main)
    }

    pub fn read_text(&mut self, text: &str, file: &Path, main: bool) -> Result<(), ConfigError> {
        self.config.files.push(file.to_path_buf());
        let mut scope = Scope { file, main, target: Target::Default, bridge: None };
        for (index, raw) in text.lines().enumerate() {
            if let Some(line) = Line::split(file, index + 1, raw) {
                self.apply(&mut scope, &line)?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, scope: &mut Scope<'_>, line: &Line<'_>) -> Result<(), ConfigError> {
        const HANDLERS: [Handler; 8] = [
            Parser::apply_structure,
            Parser::apply_bridge,
            Parser::apply_security,
            Parser::apply_listener_setting,
            Parser::apply_limits,
            Parser::apply_logging,
            Parser::apply_process,
            Parser::apply_cluster,
        ];
        for handler in HANDLERS {
            if handler(self, scope, line)? {
                return Ok(());
            }
        }
        let (file, line_number, directive) = (line.file.to_path_buf(), line.number, line.directive.to_owned());
        match unsupported(line.directive) {
            Some(feature) => Err(ConfigError::Unsupported { file, line: line_number, directive, feature }),
            None => {
                Err(ConfigError::Unknown { suggestion: suggestion(&directive), file, line: line_number, directive })
            }
        }
    }

    /// `listener`, `port`, `bind_address`, `include_dir`, `per_listener_settings`.
    fn apply_structure(&mut self, scope: &mut Scope<'_>, line: &Line<'_>) -> Result<bool, ConfigError> {
        match line.directive {
            "listener" => self.add_listener(scope, line)?,
            "port" => {
                let port = line.port(line.word("a port 0..=65535")?)?;
                if self.default_port.replace(port).is_some() {
                    self.warn(line, "given more than once; the last value is used");
                }
                self.default_listener(line).0.port = port;
            }
            "bind_address" => {
                let address = line.word("an IP address or host name")?.to_owned();
                set_once(&mut self.default_listener(line).0.bind_address, address, line)?;
            }
            "include_dir" => self.include_dir(scope, line)?,
            "per_listener_settings" => {
                let value = line.bool()?;
                if self.security_seen && value != self.config.per_listener_settings {
                    return Err(line.error(
                        "must come before allow_anonymous, password_file, acl_file, allow_zero_length_clientid \
                         and auto_id_prefix",
                    ));
                }
                self.config.per_listener_settings = value;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `connection` and the directives of its section.
    fn apply_bridge(&mut self, scope: &mut Scope<'_>, line: &Line<'_>) -> Result<bool, ConfigError> {
        if line.directive == "connection" {
            let bridge = bridge::connection(&self.config.bridges, line)?;
            self.config.bridges.push(bridge);
            scope.bridge = Some(self.config.bridges.len() - 1);
            return Ok(true);
        }
        if !bridge::DIRECTIVES.contains(&line.directive) {
            return Ok(false);
        }
        match scope.bridge.and_then(|i| self.config.bridges.get_mut(i)) {
            Some(current) => bridge::apply(current, line)?,
            None => return Err(line.error("must follow a connection line (it configures a bridge)")),
        }
        Ok(true)
    }

    fn add_listener(&mut self, scope: &mut Scope<'_>, line: &Line<'_>) -> Result<(), ConfigError> {
        const WHAT: &str = "a port 0..=65535 and an optional bind address";
        let (port, address) = match line.words().as_slice() {
            [port] => (line.port(port)?, None),
            [port, address] => (line.port(port)?, Some((*address).to_owned())),
            [] => return Err(line.expected(WHAT, "")),
            _ => return Err(line.expected(WHAT, line.rest.trim())),
        };
        if port == 0 && address.as_deref().is_some_and(|a| a.contains('/')) {
            return Err(line.error("Unix socket listeners (port 0 with a path) are not supported yet"));
        }
        if let Some(existing) = self.config.listeners.iter().find(|l| same_socket(l, port, &address)) {
            return Err(line.error(format!(
                "{} is already configured at {}",
                describe(port, &address),
                existing.defined_at
            )));
        }
        self.config.listeners.push(ListenerConfig::new(port, address, line.location()));
        self.overrides.push(Overrides::default());
        scope.target = Target::Listener(self.config.listeners.len() - 1);
        Ok(())
    }

    fn include_dir(&mut self, scope: &Scope<'_>, line: &Line<'_>) -> Result<(), ConfigError> {
        if !scope.main {
            return Err(line.error("only allowed in the main configuration file"));
        }
        let dir = line.path()?;
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| line.error(format!("cannot read directory '{}': {e}", dir.display())))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.is_file() && is_conf_file(path))
            .collect();
        files.sort_by(|a, b| mosquitto_order(a, b));
        let main = std::fs::canonicalize(scope.file).ok();
        for file in files {
            if main.is_some() && std::fs::canonicalize(&file).ok() == main {
                return Err(line.error("the directory must not contain the main configuration file"));
            }
            self.read_file(&file, false)?;
        }
        Ok(())
    }

    /// Security settings: global, or on the current listener with `per_listener_settings true`.
    fn apply_security(&mut self, scope: &mut Scope<'_>, line: &Line<'_>) -> Result<bool, ConfigError> {
        let per_listener = self.config.per_listener_settings;
        match line.directive {
            "allow_anonymous" => {
                let value = Some(line.bool()?);
                match per_listener {
                    true => self.listener(scope, line).allow_anonymous = value,
                    false => self.config.allow_anonymous = value,
                }
            }
            "password_file" | "acl_file" => {
                let path = line.path()?;
                let password = line.directive == "password_file";
                let slot = match (per_listener, password) {
                    (true, true) => &mut self.listener(scope, line).password_file,
                    (true, false) => &mut self.listener(scope, line).acl_file,
                    (false, true) => &mut self.config.password_file,
                    (false, false) => &mut self.config.acl_file,
                };
                set_once(slot, path, line)?;
            }
            "allow_zero_length_clientid" => {
                let value = line.bool()?;
                match per_listener {
                    true => self.listener(scope, line).allow_zero_length_clientid = Some(value),
                    false => self.config.allow_zero_length_clientid = value,
                }
            }
            "auto_id_prefix" => self.auto_id_prefix(scope, line)?,
            _ => return Ok(false),
        }
        self.security_seen = true;
        Ok(true)
    }

    fn auto_id_prefix(&mut self, scope: &mut Scope<'_>, line: &Line<'_>) -> Result<(), ConfigError> {
        let prefix = line.text("a client id prefix")?.to_owned();
        if self.config.per_listener_settings {
            return set_once(&mut self.listener(scope, line).auto_id_prefix, prefix, line);
        }
        let mut slot = self.auto_id_prefix_set.then_some(());
        set_once(&mut slot, (), line)?;
        self.auto_id_prefix_set = true;
        self.config.auto_id_prefix = prefix;
        Ok(())
    }

    /// Settings of the current listener (the default listener before any `listener` line).
    fn apply_listener_setting(&mut self, scope: &mut Scope<'_>, line: &Line<'_>) -> Result<bool, ConfigError> {
        match line.directive {
            "certfile" => set_once(&mut self.listener(scope, line).certfile, line.path()?, line)?,
            "keyfile" => set_once(&mut self.listener(scope, line).keyfile, line.path()?, line)?,
            "cafile" => set_once(&mut self.listener(scope, line).cafile, line.path()?, line)?,
            "capath" => set_once(&mut self.listener(scope, line).capath, line.path()?, line)?,
            "http_dir" => set_once(&mut self.listener(scope, line).http_dir, line.path()?, line)?,
            "http_token" => {
                let token = line.text("a bearer token")?.to_owned();
                set_once(&mut self.listener(scope, line).http_token, token, line)?
            }
            "ciphers" => {
                let ciphers = line.text("a cipher list")?.to_owned();
                set_once(&mut self.listener(scope, line).ciphers, ciphers, line)?
            }
            "ciphers_tls1.3" => {
                let ciphers = line.text("a TLS 1.3 cipher suite list")?.to_owned();
                set_once(&mut self.listener(scope, line).ciphers_tls13, ciphers, line)?
            }
            "crlfile" => set_once(&mut self.listener(scope, line).crlfile, line.path()?, line)?,
            "use_username_as_clientid" => self.listener(scope, line).use_username_as_clientid = line.bool()?,
            "bind_interface" => {
                let name = line.word("a network interface name")?.to_owned();
                set_once(&mut self.listener(scope, line).bind_interface, name, line)?
            }
            "tls_version" => {
                let version = line.tls_version()?;
                set_once(&mut self.listener(scope, line).tls_version, version, line)?
            }
            "require_certificate" => self.listener(scope, line).require_certificate = line.bool()?,
            "use_identity_as_username" => self.listener(scope, line).use_identity_as_username = line.bool()?,
            "use_subject_as_username" => self.listener(scope, line).use_subject_as_username = line.bool()?,
            "protocol" => {
                self.listener(scope, line).protocol = match line.word("mqtt, websockets or http")? {
                    "mqtt" => ListenerProtocol::Mqtt,
                    "websockets" => ListenerProtocol::WebSockets,
                    "http" => ListenerProtocol::Http,
                    other => return Err(line.expected("mqtt, websockets or http", other)),
                }
            }
            "socket_domain" => {
                self.listener(scope, line).socket_domain = Some(match line.word("ipv4 or ipv6")? {
                    "ipv4" => SocketDomain::Ipv4,
                    "ipv6" => SocketDomain::Ipv6,
                    other => return Err(line.expected("ipv4 or ipv6", other)),
                })
            }
            "mount_point" => self.mount_point(scope, line)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn mount_point(&mut self, scope: &mut Scope<'_>, line: &Line<'_>) -> Result<(), ConfigError> {
        if scope.target == Target::Default {
            return Err(line.error("must follow a listener line"));
        }
        let mount_point = line.text("a topic prefix")?;
        if mount_point.contains(['+', '#']) {
            return Err(line.expected("a topic prefix without + or # wildcards", mount_point));
        }
        set_once(&mut self.listener(scope, line).mount_point, mount_point.to_owned(), line)
    }

    /// Message, queue and connection limits.
    fn apply_limits(&mut self, scope: &mut Scope<'_>, line: &Line<'_>) -> Result<bool, ConfigError> {
        const MAX_PAYLOAD: i64 = 268_435_455;
        let config = &mut self.config;
        match line.directive {
            "max_queued_messages" => config.max_queued_messages = usize::try_from(line.limit(i64::MAX)?).unwrap_or(0),
            "max_queued_bytes" => config.max_queued_bytes = Some(line.limit(i64::MAX)?),
            "memory_limit" => config.memory_limit = Some(line.limit(i64::MAX)?),
            "max_topic_levels" => config.max_topic_levels = usize::try_from(line.limit(i64::MAX)?).unwrap_or(0),
            "max_inflight_messages" => config.max_inflight_messages = line.limit(65535)? as u16,
            "max_inflight_bytes" => config.max_inflight_bytes = Some(line.limit(i64::MAX)?),
            "message_size_limit" => config.message_size_limit = line.int(0, MAX_PAYLOAD)? as u32,
            "max_packet_size" => config.max_packet_size = max_packet_size(line)?,
            "max_keepalive" => config.max_keepalive = line.int(0, 65535)? as u16,
            "persistent_client_expiration" => config.persistent_client_expiration = Some(line.expiration()?),
            "queue_qos0_messages" => config.queue_qos0_messages = line.bool()?,
            "retain_available" => config.retain_available = line.bool()?,
            "upgrade_outgoing_qos" => config.upgrade_outgoing_qos = line.bool()?,
            "set_tcp_nodelay" => {
                config.set_tcp_nodelay = line.bool()?;
                if !config.set_tcp_nodelay {
                    self.warn(line, "has no effect: mqttd sets TCP_NODELAY on every connection");
                }
            }
            "check_retain_source" => config.check_retain_source = line.bool()?,
            "clientid_prefixes" => config.clientid_prefixes = Some(line.text("a client id prefix")?.to_owned()),
            "websockets_headers_size" => {
                config.websockets_headers_size = Some(line.int(0, 1 << 20)? as usize).filter(|&n| n > 0)
            }
            "max_connections" => {
                let value = line.optional_count()?;
                match self.overrides_mut(scope) {
                    Some(overrides) => overrides.max_connections = Some(value),
                    None => self.config.max_connections = value,
                }
            }
            "max_qos" | "maximum_qos" => {
                let value = line.int(0, 2)? as u8;
                match self.overrides_mut(scope) {
                    Some(overrides) => overrides.max_qos = Some(value),
                    None => self.config.max_qos = value,
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn apply_cluster(&mut self, _scope: &mut Scope<'_>, line: &Line<'_>) -> Result<bool, ConfigError> {
        self.config.cluster.apply(line)
    }

    fn apply_logging(&mut self, _scope: &mut Scope<'_>, line: &Line<'_>) -> Result<bool, ConfigError> {
        match line.directive {
            "log_type" => {
                let value = line.log_type()?;
                if !std::mem::replace(&mut self.log_type_set, true) || value.is_none() {
                    self.config.log_type.clear();
                }
                self.config.log_type.extend(value);
            }
            "log_dest" => self.log_dest(line)?,
            "log_timestamp" => self.config.log_timestamp = line.bool()?,
            "log_timestamp_format" => {
                let format = line.text("a strftime format")?.to_owned();
                set_once(&mut self.config.log_timestamp_format, format, line)?
            }
            "log_facility" => self.config.log_facility = Some(line.int(0, 7)? as u8),
            "connection_messages" => self.config.connection_messages = line.bool()?,
            "sys_interval" => self.config.sys_interval = line.int(0, 65535)? as u64,
            "threads" => self.config.threads = line.int(0, 1024)? as usize,
            "park_idle_after" => self.config.park_idle_after = line.int(0, 86400)? as u64,
            "response_information_prefix" => {
                self.config.response_information_prefix = line.text("a topic prefix")?.to_owned()
            }
            "max_topic_alias" => self.config.max_topic_alias = line.int(0, 65535)? as u16,
            "shared_subscription_strategy" => {
                let value = line.text(crate::shared::Strategy::NAMES)?;
                self.config.shared_subscription_strategy = crate::shared::Strategy::parse(value)
                    .ok_or_else(|| line.expected(crate::shared::Strategy::NAMES, value))?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn log_dest(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        const WHAT: &str = "stdout, stderr, syslog, topic, dlt, none or file PATH";
        let dests = &mut self.config.log_dest;
        if !std::mem::replace(&mut self.log_dest_set, true) {
            dests.clear();
        }
        let (kind, rest) = line.rest.trim().split_once([' ', '\t']).unwrap_or((line.rest.trim(), ""));
        let dest = match kind {
            "none" => {
                dests.clear();
                return Ok(());
            }
            "stdout" => LogDest::Stdout,
            "stderr" => LogDest::Stderr,
            "syslog" => LogDest::Syslog,
            "topic" | "dlt" => {
                let what = "not supported yet: lines go to the other log_dest destinations";
                let directive = line.directive.to_owned();
                let warning = ConfigWarning { location: line.location(), directive, message: what.to_owned() };
                self.config.warnings.push(warning);
                if kind == "topic" {
                    LogDest::Topic
                } else {
                    LogDest::Dlt
                }
            }
            "file" if rest.trim().is_empty() => return Err(line.expected("file followed by a path", "file")),
            "file" if dests.iter().any(|d| matches!(d, LogDest::File(_))) => {
                return Err(line.error("duplicate value: only one log_dest file may be given"))
            }
            "file" => LogDest::File(PathBuf::from(rest.trim())),
            other => return Err(line.expected(WHAT, other)),
        };
        if !dests.contains(&dest) {
            dests.push(dest);
        }
        Ok(())
    }

    /// Persistence, process and deprecated directives.
    fn apply_process(&mut self, _scope: &mut Scope<'_>, line: &Line<'_>) -> Result<bool, ConfigError> {
        let config = &mut self.config;
        match line.directive {
            "persistence" | "retained_persistence" => config.persistence = line.bool()?,
            "persistence_file" | "persistence_location" => self.persistence_detail(line)?,
            "autosave_interval" | "autosave_on_changes" => {
                self.persistence_detail(line)?;
                self.warn(line, "has no effect: with persistence, every change is on disk before it is acknowledged");
            }
            "pid_file" => set_once(&mut config.pid_file, line.path()?, line)?,
            "user" => config.user = Some(line.text("a user name")?.to_owned()),
            "allow_duplicate_messages" => {
                line.bool()?;
                self.warn(line, "deprecated and ignored: duplicate messages are always allowed");
            }
            "retry_interval" => self.warn(line, "no longer has any effect and is ignored"),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn persistence_detail(&mut self, line: &Line<'_>) -> Result<(), ConfigError> {
        let config = &mut self.config;
        match line.directive {
            "persistence_file" => set_once(&mut config.persistence_file, line.text("a file name")?.to_owned(), line)?,
            "persistence_location" => set_once(&mut config.persistence_location, line.path()?, line)?,
            "autosave_interval" => config.autosave_interval = line.limit(i64::MAX)?,
            _ => config.autosave_on_changes = line.bool()?,
        }
        Ok(())
    }

    /// The listener that listener settings on this line apply to, creating the default one if needed.
    fn listener(&mut self, scope: &Scope<'_>, line: &Line<'_>) -> &mut ListenerConfig {
        match scope.target {
            Target::Listener(index) => &mut self.config.listeners[index],
            Target::Default => &mut self.default_listener(line).0,
        }
    }

    fn default_listener(&mut self, line: &Line<'_>) -> &mut (ListenerConfig, Overrides, String) {
        self.default_listener.get_or_insert_with(|| {
            let listener = ListenerConfig::new(1883, None, line.location());
            (listener, Overrides::default(), line.directive.to_owned())
        })
    }

    /// The current explicit listener's overrides; `None` before any `listener` line (global values).
    fn overrides_mut(&mut self, scope: &Scope<'_>) -> Option<&mut Overrides> {
        match scope.target {
            Target::Listener(index) => self.overrides.get_mut(index),
            Target::Default => None,
        }
    }

    fn warn(&mut self, line: &Line<'_>, message: &str) {
        let directive = line.directive.to_owned();
        self.config.warnings.push(ConfigWarning { location: line.location(), directive, message: message.to_owned() });
    }

    /// Adds the default listener (last, as Mosquitto does) and resolves per-listener overrides.
    pub fn finish(mut self) -> Result<Config, ConfigError> {
        if let Some((listener, overrides, directive)) = self.default_listener.take() {
            let (port, address) = (listener.port, &listener.bind_address);
            if let Some(existing) = self.config.listeners.iter().find(|l| same_socket(l, port, address)) {
                return Err(ConfigError::Invalid {
                    file: listener.defined_at.file.clone(),
                    line: listener.defined_at.line,
                    directive,
                    message: format!(
                        "this configures the default listener ({}), which is also configured at {}; settings \
                         before the first listener line apply to the default listener",
                        describe(port, address),
                        existing.defined_at
                    ),
                });
            }
            self.config.listeners.push(listener);
            self.overrides.push(overrides);
        }
        bridge::check(&self.config.bridges)?;
        let config = &mut self.config;
        for (listener, overrides) in config.listeners.iter_mut().zip(&self.overrides) {
            listener.max_connections = overrides.max_connections.unwrap_or(config.max_connections);
            listener.max_qos = overrides.max_qos.unwrap_or(config.max_qos);
        }
        Ok(self.config)
    }
}

/// `max_packet_size`: 0 (no limit) or at least 20 bytes, as Mosquitto requires, up to the protocol maximum.
fn max_packet_size(line: &Line<'_>) -> Result<u32, ConfigError> {
    const WHAT: &str = "0 (no limit) or an integer 20..=268435460";
    let word = line.word(WHAT)?;
    match word.parse::<u32>() {
        Ok(v) if v == 0 || (20..=268_435_460).contains(&v) => Ok(v),
        _ => Err(line.expected(WHAT, word)),
    }
}

/// Two listeners clash when they share a port (other than 0, which picks a fresh port) and bind address.
fn same_socket(listener: &ListenerConfig, port: u16, address: &Option<String>) -> bool {
    port != 0 && listener.port == port && &listener.bind_address == address
}

fn describe(port: u16, address: &Option<String>) -> String {
    match address {
        Some(address) => format!("listener on port {port} at {address}"),
        None => format!("listener on port {port} on all addresses"),
    }
}

fn is_conf_file(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.len() > 5 && n.ends_with(".conf"))
}

/// Mosquitto's include order: compare letters case-insensitively, and break ties at the first letter
/// that differs only in case, by byte value.
fn mosquitto_order(a: &Path, b: &Path) -> Ordering {
    let name = |p: &Path| p.file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
    let (a, b) = (name(a), name(b));
    for (x, y) in a.iter().zip(&b) {
        let folded = x.to_ascii_uppercase().cmp(&y.to_ascii_uppercase());
        if folded != Ordering::Equal {
            return folded;
        }
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}
