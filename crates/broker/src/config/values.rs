//! One configuration line split into directive and value, and the parsers for each Mosquitto value form.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConfigError, Location, LogType, TlsVersion};

/// A non-blank, non-comment line: `directive` and the raw `rest` after it.
pub(super) struct Line<'a> {
    pub file: &'a Path,
    pub number: usize,
    pub directive: &'a str,
    pub rest: &'a str,
}

impl<'a> Line<'a> {
    /// Splits `raw`; `None` for blank lines and comments (first non-blank character `#`).
    pub fn split(file: &'a Path, number: usize, raw: &'a str) -> Option<Line<'a>> {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        let (directive, rest) = trimmed.split_once([' ', '\t']).unwrap_or((trimmed, ""));
        Some(Line { file, number, directive, rest })
    }

    pub fn location(&self) -> Location {
        Location { file: self.file.to_path_buf(), line: self.number }
    }

    /// An `Invalid` error for this line.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: self.number,
            directive: self.directive.to_owned(),
            message: message.into(),
        }
    }

    /// "expected X, got 'v'" (or "got nothing").
    pub fn expected(&self, what: &str, got: &str) -> ConfigError {
        if got.is_empty() {
            self.error(format!("expected {what}, got nothing"))
        } else {
            self.error(format!("expected {what}, got '{got}'"))
        }
    }

    /// The whitespace-separated words of the value, up to a word starting with `#` (a trailing comment).
    pub fn words(&self) -> Vec<&'a str> {
        self.rest.split_whitespace().take_while(|w| !w.starts_with('#')).collect()
    }

    /// Exactly one word; `what` describes the accepted values.
    pub fn word(&self, what: &str) -> Result<&'a str, ConfigError> {
        match self.words().as_slice() {
            [one] => Ok(one),
            [] => Err(self.expected(what, "")),
            _ => Err(self.expected(what, self.rest.trim())),
        }
    }

    /// The rest of the line with surrounding blanks removed (may contain spaces); must not be empty.
    pub fn text(&self, what: &str) -> Result<&'a str, ConfigError> {
        let value = self.rest.trim();
        if value.is_empty() {
            return Err(self.expected(what, ""));
        }
        Ok(value)
    }

    pub fn path(&self) -> Result<PathBuf, ConfigError> {
        self.text("a path").map(PathBuf::from)
    }

    /// `true`/`false` (Mosquitto also accepts `1`/`0`).
    pub fn bool(&self) -> Result<bool, ConfigError> {
        const WHAT: &str = "true or false";
        match self.word(WHAT)? {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(self.expected(WHAT, other)),
        }
    }

    /// An integer in `min..=max`.
    pub fn int(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        let what = format!("an integer {min}..={max}");
        let word = self.word(&what)?;
        match word.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.expected(&what, word)),
        }
    }

    /// An integer up to `max` where 0 or any negative value (such as -1) means unlimited: returns 0 then.
    pub fn limit(&self, max: i64) -> Result<u64, ConfigError> {
        let what = format!("an integer up to {max} (0 or -1 = unlimited)");
        let word = self.word(&what)?;
        match word.parse::<i64>() {
            Ok(v) if v <= max => Ok(u64::try_from(v).unwrap_or(0)),
            _ => Err(self.expected(&what, word)),
        }
    }

    /// A non-negative integer where any negative value means none: `Ok(None)` then.
    pub fn optional_count(&self) -> Result<Option<usize>, ConfigError> {
        const WHAT: &str = "a non-negative integer, or -1 for unlimited";
        let word = self.word(WHAT)?;
        match word.parse::<i64>() {
            Ok(v) if v < 0 => Ok(None),
            Ok(v) => usize::try_from(v).map(Some).map_err(|_| self.expected(WHAT, word)),
            Err(_) => Err(self.expected(WHAT, word)),
        }
    }

    /// A port number 0..=65535 (0 = ephemeral).
    pub fn port(&self, word: &str) -> Result<u16, ConfigError> {
        word.parse::<u16>().map_err(|_| self.expected("a port 0..=65535", word))
    }

    /// Mosquitto's expiration form: a positive number followed by h, d, w, m (30 days) or y (365 days).
    pub fn expiration(&self) -> Result<Duration, ConfigError> {
        const WHAT: &str = "a positive number followed by h, d, w, m or y (e.g. 12h, 14d, 1m)";
        let word = self.word(WHAT)?;
        let unit_seconds = match word.chars().last() {
            Some('h') => 3600,
            Some('d') => 86_400,
            Some('w') => 7 * 86_400,
            Some('m') => 30 * 86_400,
            Some('y') => 365 * 86_400,
            _ => return Err(self.expected(WHAT, word)),
        };
        let count: u64 = word[..word.len() - 1].parse().map_err(|_| self.expected(WHAT, word))?;
        match count.checked_mul(unit_seconds) {
            Some(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(self.expected(WHAT, word)),
        }
    }

    pub fn log_type(&self) -> Result<Option<LogType>, ConfigError> {
        const WHAT: &str =
            "one of debug, error, warning, notice, information, subscribe, unsubscribe, websockets, internal, \
             none, all";
        let word = self.word(WHAT)?;
        Ok(Some(match word {
            "none" => return Ok(None),
            "debug" => LogType::Debug,
            "error" => LogType::Error,
            "warning" => LogType::Warning,
            "notice" => LogType::Notice,
            "information" => LogType::Information,
            "subscribe" => LogType::Subscribe,
            "unsubscribe" => LogType::Unsubscribe,
            "websockets" => LogType::WebSockets,
            "internal" => LogType::Internal,
            "all" => LogType::All,
            other => return Err(self.expected(WHAT, other)),
        }))
    }

    pub fn tls_version(&self) -> Result<TlsVersion, ConfigError> {
        const WHAT: &str = "tlsv1.3 or tlsv1.2";
        match self.word(WHAT)? {
            "tlsv1.3" => Ok(TlsVersion::Tls1_3),
            "tlsv1.2" => Ok(TlsVersion::Tls1_2),
            // Mosquitto accepts it; rustls has no TLS 1.1, and serving 1.2 instead would be a silent change.
            "tlsv1.1" => Err(self.error(
                "TLS 1.1 is not available in mqttd (its TLS library implements 1.2 and 1.3 only); write tlsv1.2, \
                 which accepts TLS 1.2 and 1.3",
            )),
            other => Err(self.expected(WHAT, other)),
        }
    }
}

/// Sets a path or string that may be given once per scope, as Mosquitto requires.
pub(super) fn set_once<T>(slot: &mut Option<T>, value: T, line: &Line<'_>) -> Result<(), ConfigError> {
    if slot.is_some() {
        return Err(line.error("duplicate value: this directive may be given only once here"));
    }
    *slot = Some(value);
    Ok(())
}

/// Mosquitto directives mqttd does not implement yet, with the feature they belong to.
pub(super) fn unsupported(directive: &str) -> Option<&'static str> {
    // The bridge directives mqttd does not implement (`bridge.rs` has the others).
    const BRIDGE: &[&str] = &[
        "bridge_identity",
        "bridge_max_topic_alias",
        "bridge_psk",
        "bridge_require_ocsp",
        "bridge_tcp_keepalive",
        "bridge_tcp_user_timeout",
    ];
    const PLUGIN: &[&str] = &["auth_plugin", "auth_plugin_deny_special_chars", "global_plugin", "plugin"];
    const TLS: &[&str] = &["dhparamfile", "tls_engine", "tls_engine_kpass_sha1", "tls_keyform"];
    const PSK: &str =
        "TLS-PSK: rustls, the TLS library of mqttd, has no pre-shared keys; use client certificates (cafile, require_certificate) or a password_file over TLS instead";
    const OTHER: &[(&str, &str)] =
        &[("psk_file", PSK), ("psk_hint", PSK), ("websockets_log_level", "WebSockets logging")];
    if BRIDGE.contains(&directive) {
        Some("bridge option")
    } else if PLUGIN.contains(&directive) || directive.starts_with("auth_opt_") || directive.starts_with("plugin_opt_")
    {
        Some("plugins")
    } else if TLS.contains(&directive) {
        Some("TLS option")
    } else {
        OTHER.iter().find(|(name, _)| *name == directive).map(|(_, feature)| *feature)
    }
}

/// Every directive mqttd accepts, for "did you mean" suggestions.
pub(super) const KNOWN: &[&str] = &[
    "acl_file",
    "connection",
    "allow_anonymous",
    "allow_duplicate_messages",
    "allow_zero_length_clientid",
    "auto_id_prefix",
    "autosave_interval",
    "autosave_on_changes",
    "bind_address",
    "cafile",
    "capath",
    "certfile",
    "bind_interface",
    "check_retain_source",
    "ciphers",
    "ciphers_tls1.3",
    "clientid_prefixes",
    "connection_messages",
    "crlfile",
    "http_dir",
    "http_token",
    "include_dir",
    "keyfile",
    "listener",
    "log_dest",
    "log_facility",
    "log_timestamp",
    "log_timestamp_format",
    "log_type",
    "max_connections",
    "max_inflight_bytes",
    "max_inflight_messages",
    "max_keepalive",
    "max_packet_size",
    "max_qos",
    "max_topic_alias",
    "maximum_qos",
    "max_queued_bytes",
    "max_queued_messages",
    "max_topic_levels",
    "memory_limit",
    "message_size_limit",
    "mount_point",
    "password_file",
    "per_listener_settings",
    "persistence",
    "persistence_file",
    "persistence_location",
    "persistent_client_expiration",
    "park_idle_after",
    "pid_file",
    "port",
    "protocol",
    "queue_qos0_messages",
    "require_certificate",
    "response_information_prefix",
    "retain_available",
    "retained_persistence",
    "retry_interval",
    "set_tcp_nodelay",
    "shared_subscription_strategy",
    "socket_domain",
    "sys_interval",
    "threads",
    "tls_version",
    "upgrade_outgoing_qos",
    "use_identity_as_username",
    "use_subject_as_username",
    "use_username_as_clientid",
    "user",
    "websockets_headers_size",
];

/// " (did you mean 'x'?)" for the closest known directive within two edits, else "".
pub(super) fn suggestion(directive: &str) -> String {
    KNOWN
        .iter()
        .chain(super::bridge::DIRECTIVES)
        .chain(super::cluster::DIRECTIVES)
        .map(|known| (edit_distance(directive, known), known))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, known)| format!(" (did you mean '{known}'?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}
