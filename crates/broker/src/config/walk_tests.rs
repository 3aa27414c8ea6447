//! Issue 16's rule, checked over Mosquitto 2.0's whole directive list (mosquitto.conf(5), in
//! `mosquitto-2.0-directives.txt`): every directive is honoured, refused at startup with file and line,
//! or accepted with a warning (file, line, why it has no effect) that the broker logs. None is accepted and
//! silently dropped.

use std::path::Path;

use super::{Config, ConfigError};

/// Parsed into a setting the broker applies; the test that shows it applied is named where it is not
/// obvious from the directive.
const HONOURED: &[&str] = &[
    "acl_file",
    "allow_anonymous",
    "allow_zero_length_clientid", // process::listeners::allow_zero_length_clientid_is_per_listener_...
    "auto_id_prefix",
    "check_retain_source", // process::listeners::check_retain_source_withholds_...
    "clientid_prefixes",   // process::clients::clientid_prefixes_refuses_other_ids_as_not_authorized
    "connection_messages", // process::ops::connection_messages_false_hides_...
    "include_dir",
    "log_dest", // process::ops::several_log_dest_lines_write_to_each
    "log_facility",
    "log_timestamp", // process::ops::log_timestamp_is_seconds_a_strftime_format_or_nothing
    "log_timestamp_format",
    "log_type",           // process::ops::log_type_subscribe_logs_subscriptions_and_nothing_else
    "max_inflight_bytes", // process::listeners::max_inflight_bytes_counts_payload_bytes_as_mosquitto
    "max_inflight_messages",
    "max_keepalive",
    "max_packet_size",
    "max_queued_bytes",
    "max_queued_messages",
    "message_size_limit",
    "password_file",
    "per_listener_settings",
    "persistent_client_expiration",
    "pid_file", // process::ops::pid_file_holds_the_process_id_and_is_removed_at_exit
    "queue_qos0_messages",
    "retain_available",
    "sys_interval",
    "upgrade_outgoing_qos", // process::listeners::upgrade_outgoing_qos_delivers_at_the_subscription_qos
    "user",                 // process::ops::user_switches_to_that_account_after_binding
    "bind_address",
    "bind_interface", // process::clients::bind_interface_lo_serves_loopback_and_an_unknown_one_stops_startup
    "http_dir",
    "listener",
    "max_connections", // process::listeners::max_connections_after_a_listener_line_limits_...
    "max_topic_alias",
    "max_qos",     // process::listeners::max_qos_after_a_listener_line_limits_that_listener_only
    "mount_point", // process::listeners::a_mount_point_prefixes_topics_in_and_strips_them_out_...
    "port",
    "protocol",
    "socket_domain",
    "cafile",
    "capath",
    "certfile",
    "ciphers",
    "ciphers_tls1.3", // process::tls::ciphers_tls13_limits_the_tls13_suites
    "crlfile",        // process::tls::a_revoked_client_certificate_is_refused_with_crlfile
    "keyfile",
    "require_certificate",
    "tls_version",
    "use_identity_as_username",
    "use_subject_as_username",
    "persistence", // store::tests, tests/process.rs persistence
    "persistence_file",
    "persistence_location",
    "memory_limit", // tests/broker/hostile.rs
    // Bridges: tests/bridge.rs shows them at work against Mosquitto and another mqttd.
    "connection",
    "address",
    "addresses",
    "bridge_attempt_unsubscribe",
    "bridge_bind_address",
    "bridge_max_packet_size",
    "bridge_outgoing_retain",
    "bridge_protocol_version",
    "cleansession",
    "local_cleansession",
    "keepalive_interval",
    "idle_timeout",
    "local_clientid",
    "local_password",
    "local_username",
    "notifications",
    "notifications_local_only",
    "notification_topic",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "restart_timeout",
    "round_robin",
    "start_type",
    "threshold",
    "topic",
    "try_private",
    "bridge_alpn",
    "bridge_cafile",
    "bridge_capath",
    "bridge_certfile",
    "bridge_insecure",
    "bridge_keyfile",
    "bridge_tls_version",
    "use_username_as_clientid", // process::clients::use_username_as_clientid_gives_one_session_per_user
    "websockets_headers_size",  // process::clients::websockets_headers_size_bounds_the_upgrade_request
];

/// Accepted, with a warning saying why it changes nothing here (the broker logs config warnings).
const LOGGED: &[&str] = &["allow_duplicate_messages", "autosave_interval", "autosave_on_changes", "set_tcp_nodelay"];

/// A value for `directive` that differs from its default, so that honouring it changes the config.
fn sample(directive: &str, dir: &Path) -> String {
    let value = match directive {
        "include_dir" => return format!("include_dir {}", dir.display()),
        "acl_file"
        | "password_file"
        | "cafile"
        | "capath"
        | "certfile"
        | "keyfile"
        | "http_dir"
        | "persistence_location" => "/etc/mqttd/x",
        "pid_file" => "/run/mqttd.pid",
        "connection" => "b\naddress 127.0.0.1\ntopic x",
        "address" | "addresses" => "127.0.0.1:1884",
        "topic" => "y/# in 1 l/ r/",
        "bridge_cafile" | "bridge_capath" | "bridge_certfile" | "bridge_keyfile" => "/etc/mqttd/x",
        "bridge_bind_address" => "127.0.0.1",
        "bridge_protocol_version" => "mqttv50",
        "bridge_tls_version" => "tlsv1.3",
        "bridge_alpn" => "mqtt",
        "notification_topic" => "bridge/state",
        "restart_timeout" => "3 9",
        "start_type" => "lazy",
        "local_clientid" | "remote_clientid" | "local_username" | "remote_username" => "x",
        "local_password" | "remote_password" | "bridge_identity" | "bridge_psk" => "x",
        "bridge_max_packet_size" => "1000",
        "threshold" | "idle_timeout" => "70",
        "notifications" | "try_private" | "bridge_attempt_unsubscribe" | "bridge_outgoing_retain" => "false",
        "auto_id_prefix" => "x-",
        "log_dest" => "stdout",
        "log_type" => "debug",
        "log_facility" => "5",
        "log_timestamp_format" => "%H:%M:%S",
        "persistent_client_expiration" => "1d",
        "user" => "nobody",
        "protocol" => "websockets",
        "socket_domain" => "ipv4",
        "bind_address" => "127.0.0.1",
        "mount_point" => "mp/",
        "bind_interface" => "lo",
        "clientid_prefixes" => "x-",
        "max_qos" => "1",
        "tls_version" => "tlsv1.3",
        "ciphers" | "ciphers_tls1.3" => "HIGH",
        "port" | "listener" => "1884",
        "persistence_file" | "psk_file" | "crlfile" | "dhparamfile" => "x",
        d if d.starts_with("max_") || d.ends_with("_limit") || d.ends_with("_interval") || d.ends_with("_size") => "70",
        "allow_anonymous"
        | "allow_zero_length_clientid"
        | "check_retain_source"
        | "connection_messages"
        | "log_timestamp"
        | "retain_available"
        | "set_tcp_nodelay" => "false",
        _ => "true",
    };
    format!("{directive} {value}")
}

/// Bridge directives go in a `connection` section: the text before the directive's line, and the text
/// it is compared with (the same, except where the directive is one the section cannot do without).
fn bridge_context(directive: &str) -> Option<(&'static str, &'static str)> {
    let index = |name: &str| DIRECTIVES.lines().position(|l| l == name);
    let bridge = index(directive) >= index("address") && index(directive) <= index("bridge_tls_version");
    match directive {
        "connection" => None,
        "address" | "addresses" => Some(("connection b\ntopic x\n", "connection b\ntopic x\naddress 127.0.0.1\n")),
        "topic" => Some(("connection b\naddress 127.0.0.1\n", "connection b\naddress 127.0.0.1\ntopic x\n")),
        _ if bridge => {
            Some(("connection b\naddress 127.0.0.1\ntopic x\n", "connection b\naddress 127.0.0.1\ntopic x\n"))
        }
        _ => None,
    }
}

/// Listener settings go after a `listener` line (the directives Mosquitto lists under "Listeners").
fn after_listener(directive: &str) -> bool {
    !matches!(directive, "listener" | "port" | "bind_address") && {
        let index = |name: &str| DIRECTIVES.lines().position(|l| l == name);
        index(directive) >= index("bind_interface") && index(directive) < index("address")
    }
}

const DIRECTIVES: &str = include_str!("mosquitto-2.0-directives.txt");

#[test]
fn every_mosquitto_directive_is_honoured_refused_with_file_and_line_or_logged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("extra.conf"), "max_keepalive 9\n").expect("writes an included file");
    let origin = Path::new("/etc/mqttd/mqttd.conf");
    let directives: Vec<&str> = DIRECTIVES.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert!(directives.len() > 100, "the whole list");
    for directive in directives {
        let name = directive.replace('*', "x");
        let (prefix, baseline) = match bridge_context(&name) {
            Some(context) => context,
            None if after_listener(&name) => ("listener 1883\n", "listener 1883\n"),
            None => ("", ""),
        };
        let text = format!("{prefix}{}\n", sample(&name, dir.path()));
        let line = prefix.lines().count() + 1;
        let parsed = Config::parse(&text, origin);
        if HONOURED.contains(&directive) {
            let config = parsed.unwrap_or_else(|e| panic!("{directive} is honoured, yet: {e}"));
            assert!(config.warnings.is_empty(), "{directive}: {:?}", config.warnings);
            let without = Config::parse(baseline, origin).expect("the baseline parses");
            let differs = config.listeners != without.listeners || format!("{config:?}") != format!("{without:?}");
            assert!(differs, "{directive} changes nothing in the config: dropped?");
        } else if LOGGED.contains(&directive) {
            let config = parsed.unwrap_or_else(|e| panic!("{directive} is accepted, yet: {e}"));
            let warning = config.warnings.first().unwrap_or_else(|| panic!("{directive}: accepted silently"));
            assert_eq!((warning.location.file.as_path(), warning.location.line), (origin, line), "{directive}");
        } else {
            let error = parsed.err().unwrap_or_else(|| panic!("{directive} is neither honoured nor refused"));
            assert!(matches!(error, ConfigError::Unsupported { .. } | ConfigError::Invalid { .. }), "{error}");
            assert_eq!((error.file(), error.line()), (origin, line), "{directive}: {error}");
            assert!(error.to_string().starts_with(&format!("{}:{line}: ", origin.display())), "{error}");
        }
    }
}
