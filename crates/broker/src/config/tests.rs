use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const ORIGIN: &str = "/etc/mosquitto/mosquitto.conf";

fn parse(text: &str) -> Config {
    match Config::parse(text, Path::new(ORIGIN)) {
        Ok(config) => config,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn error(text: &str) -> ConfigError {
    match Config::parse(text, Path::new(ORIGIN)) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e,
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("mqttd-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir is writable");
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("temp file is writable");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn an_empty_file_gives_mosquitto_defaults_and_no_listeners() {
    let config = parse("");
    assert_eq!(Config { files: vec![PathBuf::from(ORIGIN)], ..Config::default() }, config);
    assert!(config.listeners.is_empty());
    assert_eq!(config.max_queued_messages, 1000);
    assert_eq!(config.max_inflight_messages, 20);
    assert_eq!(config.max_keepalive, 65535);
    assert_eq!(config.sys_interval, 10);
    assert_eq!(config.auto_id_prefix, "auto-");
    assert!(config.allow_zero_length_clientid && config.retain_available && config.connection_messages);
    assert!(!config.queue_qos0_messages && !config.per_listener_settings && !config.persistence);
    assert_eq!(config.log_dest, vec![LogDest::Stderr]);
    assert_eq!(config.log_type, LogType::DEFAULT.to_vec());
    assert_eq!(config.persistent_client_expiration, None);
    assert_eq!(config.autosave_interval, 1800);
}

#[test]
fn comments_blank_lines_and_crlf_are_ignored() {
    let config = parse("# comment\n\n   \n  # indented comment\r\nmax_keepalive 60\r\n\tsys_interval 5\n");
    assert_eq!(config.max_keepalive, 60);
    assert_eq!(config.sys_interval, 5);
}

#[test]
fn anonymous_access_is_allowed_only_when_no_listener_is_configured() {
    let config = parse("");
    assert!(config.allow_anonymous_for(None));
    let config = parse("listener 1883\n");
    assert!(!config.allow_anonymous_for(config.listeners.first()));
    let config = parse("port 1883\n");
    assert!(!config.allow_anonymous_for(config.listeners.first()));
    let config = parse("listener 1883\nallow_anonymous true\n");
    assert!(config.allow_anonymous_for(config.listeners.first()));
    let config = parse("allow_anonymous false\n");
    assert!(!config.allow_anonymous_for(None));
}

#[test]
fn the_mosquitto_guide_snippet_parses() {
    let config = parse("listener 1883\nallow_anonymous false\npassword_file /etc/mosquitto/passwd\n");
    assert_eq!(config.listeners.len(), 1);
    let listener = &config.listeners[0];
    assert_eq!((listener.port, listener.bind_address.as_deref()), (1883, None));
    assert_eq!(config.allow_anonymous, Some(false));
    assert_eq!(config.password_file, Some(PathBuf::from("/etc/mosquitto/passwd")));
    assert_eq!(config.password_file_for(Some(listener)), Some(Path::new("/etc/mosquitto/passwd")));
    assert!(!config.allow_anonymous_for(Some(listener)));
}

#[test]
fn listener_takes_a_port_and_an_optional_bind_address() {
    let config = parse("listener 1883 127.0.0.1\nlistener 1883 ::1\nlistener 8883 # TLS\nlistener 0\nlistener 0\n");
    let sockets: Vec<_> = config.listeners.iter().map(|l| (l.port, l.bind_address.as_deref())).collect();
    assert_eq!(sockets, [(1883, Some("127.0.0.1")), (1883, Some("::1")), (8883, None), (0, None), (0, None)]);
    assert_eq!(config.listeners[2].defined_at, Location { file: PathBuf::from(ORIGIN), line: 3 });
}

#[test]
fn listener_errors_name_the_line_and_what_is_accepted() {
    let e = error("\nlistener\n");
    assert_eq!(
        e.to_string(),
        format!("{ORIGIN}:2: listener: expected a port 0..=65535 and an optional bind address, got nothing")
    );
    let e = error("listener 70000\n");
    assert_eq!(e.to_string(), format!("{ORIGIN}:1: listener: expected a port 0..=65535, got '70000'"));
    let e = error("listener 1883 0.0.0.0 extra\n");
    assert!(e.to_string().contains("got '1883 0.0.0.0 extra'"), "{e}");
    let e = error("listener 0 /run/mqtt.sock\n");
    assert!(e.to_string().contains("Unix socket"), "{e}");
}

#[test]
fn a_duplicate_listener_is_an_error() {
    let e = error("listener 1883\nlistener 1883\n");
    assert_eq!(e.line(), 2);
    assert!(e.to_string().contains(&format!("already configured at {ORIGIN}:1")), "{e}");
    let e = error("listener 1883 10.0.0.1\nlistener 1884\nlistener 1883 10.0.0.1\n");
    assert_eq!(e.line(), 3);
}

#[test]
fn port_and_bind_address_configure_the_default_listener_which_comes_last() {
    let config = parse("port 1884\nlistener 9001\nprotocol websockets\nbind_address 0.0.0.0\n");
    assert_eq!(config.listeners.len(), 2);
    assert_eq!(config.listeners[0].protocol, ListenerProtocol::WebSockets);
    let default = &config.listeners[1];
    assert_eq!((default.port, default.bind_address.as_deref()), (1884, Some("0.0.0.0")));
    assert_eq!(default.defined_at.line, 1);
    let config = parse("bind_address 127.0.0.1\n");
    assert_eq!(config.listeners[0].port, 1883);
}

#[test]
fn listener_settings_before_any_listener_line_create_the_default_listener() {
    let config = parse("certfile /etc/ssl/server.pem\nkeyfile /etc/ssl/server.key\n");
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].port, 1883);
    assert!(config.listeners[0].is_tls());
    let e = error("certfile /c.pem\nlistener 1883\n");
    assert_eq!((e.line(), e.file()), (1, Path::new(ORIGIN)));
    assert!(e.to_string().contains("default listener"), "{e}");
}

#[test]
fn repeated_port_keeps_the_last_value_with_a_warning() {
    let config = parse("port 1884\nport 1885\n");
    assert_eq!(config.listeners[0].port, 1885);
    assert_eq!(config.warnings.len(), 1);
    assert_eq!(config.warnings[0].location.line, 2);
}

#[test]
fn tls_and_websocket_settings_attach_to_the_most_recent_listener() {
    let config = parse(
        "listener 1883\n\
         listener 8883 0.0.0.0\n\
         certfile /etc/mosquitto/certs/server cert.pem\n\
         keyfile /etc/mosquitto/certs/server.key\n\
         cafile /etc/mosquitto/ca_certificates/ca.crt\n\
         capath /etc/ssl/certs\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         use_subject_as_username false\n\
         tls_version tlsv1.2\n\
         ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384\n\
         listener 9001\n\
         protocol websockets\n\
         http_dir /var/www/mqtt\n\
         socket_domain ipv4\n",
    );
    let [plain, tls, ws] = &config.listeners[..] else { panic!("three listeners expected") };
    assert!(!plain.is_tls() && plain.certfile.is_none());
    assert_eq!(tls.certfile, Some(PathBuf::from("/etc/mosquitto/certs/server cert.pem")));
    assert_eq!(tls.keyfile, Some(PathBuf::from("/etc/mosquitto/certs/server.key")));
    assert_eq!(tls.cafile, Some(PathBuf::from("/etc/mosquitto/ca_certificates/ca.crt")));
    assert_eq!(tls.capath, Some(PathBuf::from("/etc/ssl/certs")));
    assert!(tls.require_certificate && tls.use_identity_as_username && !tls.use_subject_as_username);
    assert_eq!(tls.tls_version, Some(TlsVersion::Tls1_2));
    assert_eq!(tls.ciphers.as_deref(), Some("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"));
    assert_eq!(ws.protocol, ListenerProtocol::WebSockets);
    assert_eq!(ws.http_dir, Some(PathBuf::from("/var/www/mqtt")));
    assert_eq!(ws.socket_domain, Some(SocketDomain::Ipv4));
    assert_eq!(plain.protocol, ListenerProtocol::Mqtt);
}

#[test]
fn listener_value_errors() {
    assert!(error("listener 1\nprotocol mqttsn\n")
        .to_string()
        .contains("expected mqtt, websockets or http, got 'mqttsn'"));
    assert!(error("listener 1\nsocket_domain ipv5\n").to_string().contains("expected ipv4 or ipv6"));
    assert!(error("listener 1\ntls_version tlsv1\n").to_string().contains("tlsv1.3 or tlsv1.2"));
    assert!(error("listener 1\ncertfile\n").to_string().contains("expected a path, got nothing"));
    let e = error("listener 1\ncertfile /a\ncertfile /b\n");
    assert_eq!(e.line(), 3);
    assert!(e.to_string().contains("duplicate"), "{e}");
    assert!(error("mount_point a/\n").to_string().contains("must follow a listener line"));
    assert!(error("listener 1\nmount_point a/#\n").to_string().contains("without + or #"));
    assert_eq!(parse("listener 1\nmount_point site1/\n").listeners[0].mount_point.as_deref(), Some("site1/"));
}

#[test]
fn security_settings_are_global_without_per_listener_settings() {
    let config = parse("listener 1883\nallow_anonymous true\nacl_file /etc/mosquitto/acl\nlistener 1884\n");
    assert_eq!(config.allow_anonymous, Some(true));
    assert_eq!(config.acl_file, Some(PathBuf::from("/etc/mosquitto/acl")));
    assert!(config.listeners.iter().all(|l| l.allow_anonymous.is_none() && l.acl_file.is_none()));
    assert!(config.allow_anonymous_for(config.listeners.get(1)));
    assert_eq!(config.acl_file_for(config.listeners.get(1)), Some(Path::new("/etc/mosquitto/acl")));
}

#[test]
fn per_listener_settings_attach_security_settings_to_each_listener() {
    let config = parse(
        "per_listener_settings true\n\
         listener 8883\n\
         allow_anonymous false\n\
         password_file /etc/mosquitto/passwd\n\
         acl_file /etc/mosquitto/acl\n\
         allow_zero_length_clientid false\n\
         auto_id_prefix tls-\n\
         listener 1883\n\
         allow_anonymous true\n",
    );
    let [tls, plain] = &config.listeners[..] else { panic!("two listeners expected") };
    assert_eq!(config.allow_anonymous, None);
    assert!(!config.allow_anonymous_for(Some(tls)));
    assert!(config.allow_anonymous_for(Some(plain)));
    assert_eq!(config.password_file_for(Some(tls)), Some(Path::new("/etc/mosquitto/passwd")));
    assert_eq!(config.password_file_for(Some(plain)), None);
    assert_eq!(config.acl_file_for(Some(tls)), Some(Path::new("/etc/mosquitto/acl")));
    assert!(!config.allow_zero_length_clientid_for(Some(tls)));
    assert!(config.allow_zero_length_clientid_for(Some(plain)));
    assert_eq!(config.auto_id_prefix_for(Some(tls)), "tls-");
    assert_eq!(config.auto_id_prefix_for(Some(plain)), "auto-");
}

#[test]
fn per_listener_settings_must_come_before_security_settings() {
    let e = error("allow_anonymous true\nper_listener_settings true\n");
    assert_eq!(e.line(), 2);
    assert!(e.to_string().contains("must come before allow_anonymous"), "{e}");
    parse("allow_anonymous true\nper_listener_settings false\n");
}

#[test]
fn global_security_settings() {
    let config = parse("allow_zero_length_clientid false\nauto_id_prefix my id-\ncheck_retain_source false\n");
    assert!(!config.allow_zero_length_clientid);
    assert_eq!(config.auto_id_prefix, "my id-");
    assert!(!config.check_retain_source);
    assert!(error("auto_id_prefix a\nauto_id_prefix b\n").to_string().contains("duplicate"));
    assert!(error("password_file /a\npassword_file /b\n").to_string().contains("duplicate"));
}

#[test]
fn limits_and_flags() {
    let config = parse(
        "max_queued_messages 200\nmax_queued_bytes 1048576\nqueue_qos0_messages true\nmax_inflight_messages 10\n\
         max_inflight_bytes 65536\nmessage_size_limit 1024\nmax_packet_size 2048\nmax_keepalive 120\n\
         retain_available false\nupgrade_outgoing_qos true\nset_tcp_nodelay 1\nsys_interval 0\n",
    );
    assert_eq!(config.max_queued_messages, 200);
    assert_eq!(config.max_queued_bytes, Some(1_048_576));
    assert!(config.queue_qos0_messages);
    assert_eq!(config.max_inflight_messages, 10);
    assert_eq!(config.max_inflight_bytes, Some(65536));
    assert_eq!(config.message_size_limit, 1024);
    assert_eq!(config.max_packet_size, 2048);
    assert_eq!(config.max_keepalive, 120);
    assert!(!config.retain_available && config.upgrade_outgoing_qos && config.set_tcp_nodelay);
    assert_eq!(config.sys_interval, 0);
}

#[test]
fn negative_limits_mean_unlimited_as_in_mosquitto() {
    let config = parse("max_queued_messages -1\nmax_inflight_messages -1\nmax_queued_bytes 0\nmax_connections -1\n");
    assert_eq!((config.max_queued_messages, config.max_inflight_messages, config.max_queued_bytes), (0, 0, Some(0)));
    assert_eq!(config.max_connections, None);
}

#[test]
fn integer_errors_say_the_accepted_range() {
    let e = error("\n\nmax_keepalive abc\n");
    assert_eq!(e.to_string(), format!("{ORIGIN}:3: max_keepalive: expected an integer 0..=65535, got 'abc'"));
    assert!(matches!(&e, ConfigError::Invalid { directive, line: 3, .. } if directive == "max_keepalive"));
    assert!(error("max_keepalive 65536\n").to_string().contains("got '65536'"));
    assert!(error("max_inflight_messages 65536\n").to_string().contains("up to 65535"));
    assert!(error("max_packet_size 10\n").to_string().contains("0 (no limit) or an integer 20..=268435460"));
    assert!(error("message_size_limit 268435456\n").to_string().contains("0..=268435455"));
    assert!(error("sys_interval -1\n").to_string().contains("0..=65535"));
    assert!(error("max_queued_messages 1x\n").to_string().contains("got '1x'"));
    assert!(error("max_qos 3\n").to_string().contains("0..=2"));
    assert!(error("max_keepalive 60 70\n").to_string().contains("got '60 70'"));
    assert_eq!(parse("max_keepalive 60 # a minute\n").max_keepalive, 60);
}

#[test]
fn booleans_are_true_false_one_or_zero() {
    assert!(parse("queue_qos0_messages 1\n").queue_qos0_messages);
    assert!(!parse("retain_available 0\n").retain_available);
    let e = error("allow_anonymous yes\n");
    assert_eq!(e.to_string(), format!("{ORIGIN}:1: allow_anonymous: expected true or false, got 'yes'"));
    assert!(error("allow_anonymous\n").to_string().contains("got nothing"));
}

#[test]
fn max_connections_and_max_qos_apply_globally_or_per_listener() {
    let config = parse("max_connections 100\nmax_qos 1\nlistener 1883\nlistener 1884\nmax_connections 5\nmax_qos 2\n");
    assert_eq!((config.max_connections, config.max_qos), (Some(100), 1));
    let [a, b] = &config.listeners[..] else { panic!("two listeners expected") };
    assert_eq!((a.max_connections, a.max_qos), (Some(100), 1));
    assert_eq!((b.max_connections, b.max_qos), (Some(5), 2));
    let config = parse("listener 1883\nmax_connections -1\n");
    assert_eq!(config.listeners[0].max_connections, None);
}

#[test]
fn persistent_client_expiration_uses_mosquitto_units() {
    let expiration = |v: &str| parse(&format!("persistent_client_expiration {v}\n")).persistent_client_expiration;
    assert_eq!(expiration("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(expiration("1d"), Some(Duration::from_secs(86_400)));
    assert_eq!(expiration("3w"), Some(Duration::from_secs(3 * 7 * 86_400)));
    assert_eq!(expiration("1m"), Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(expiration("1y"), Some(Duration::from_secs(365 * 86_400)));
    for bad in ["10", "0d", "-1d", "d", "1s", "1.5h"] {
        let e = error(&format!("persistent_client_expiration {bad}\n"));
        assert!(e.to_string().contains("followed by h, d, w, m or y"), "{bad}: {e}");
    }
}

#[test]
fn log_type_accumulates_replaces_the_default_and_none_clears() {
    let config = parse("log_type error\nlog_type subscribe\nlog_type websockets\n");
    assert_eq!(config.log_type, vec![LogType::Error, LogType::Subscribe, LogType::WebSockets]);
    let all = ["debug", "error", "warning", "notice", "information", "subscribe", "unsubscribe", "websockets"];
    let text: String = all.iter().map(|t| format!("log_type {t}\n")).collect();
    assert_eq!(parse(&text).log_type.len(), all.len());
    assert_eq!(parse("log_type all\n").log_type, vec![LogType::All]);
    assert!(parse("log_type all\nlog_type none\n").log_type.is_empty());
    assert!(error("log_type verbose\n").to_string().contains("got 'verbose'"));
}

#[test]
fn log_dest_accepts_every_mosquitto_destination() {
    let config = parse(
        "log_dest stdout\nlog_dest stderr\nlog_dest syslog\nlog_dest topic\nlog_dest dlt\nlog_dest file /var/log/mosquitto/my log.txt\n",
    );
    let file = LogDest::File(PathBuf::from("/var/log/mosquitto/my log.txt"));
    let expected = vec![LogDest::Stdout, LogDest::Stderr, LogDest::Syslog, LogDest::Topic, LogDest::Dlt, file];
    assert_eq!(config.log_dest, expected);
    assert!(parse("log_dest none\n").log_dest.is_empty());
    assert!(error("log_dest file\n").to_string().contains("expected file followed by a path"));
    assert!(error("log_dest file /a\nlog_dest file /b\n").to_string().contains("only one log_dest file"));
    assert!(error("log_dest printer\n").to_string().contains("stdout, stderr, syslog, topic, dlt, none or file PATH"));
}

#[test]
fn logging_process_and_persistence_directives_are_parsed() {
    let config = parse(
        "log_timestamp false\nlog_timestamp_format %Y-%m-%dT%H:%M:%S\nlog_facility 5\nconnection_messages false\n\
         persistence true\npersistence_location /var/lib/mosquitto/\npersistence_file broker.db\n\
         autosave_interval 60\nautosave_on_changes true\npid_file /run/mosquitto/mosquitto.pid\nuser mosquitto\n",
    );
    assert!(!config.log_timestamp && !config.connection_messages);
    assert_eq!(config.log_timestamp_format.as_deref(), Some("%Y-%m-%dT%H:%M:%S"));
    assert_eq!(config.log_facility, Some(5));
    assert!(config.persistence && config.autosave_on_changes);
    assert_eq!(config.persistence_location, Some(PathBuf::from("/var/lib/mosquitto/")));
    assert_eq!(config.persistence_file.as_deref(), Some("broker.db"));
    assert_eq!(config.autosave_interval, 60);
    assert_eq!(config.pid_file, Some(PathBuf::from("/run/mosquitto/mosquitto.pid")));
    assert_eq!(config.user.as_deref(), Some("mosquitto"));
    assert!(parse("retained_persistence true\n").persistence);
    assert!(error("log_facility 8\n").to_string().contains("0..=7"));
}

#[test]
fn deprecated_directives_are_accepted_with_a_warning() {
    let config = parse("allow_duplicate_messages true\nretry_interval 20\n");
    let lines: Vec<_> = config.warnings.iter().map(|w| (w.directive.as_str(), w.location.line)).collect();
    assert_eq!(lines, [("allow_duplicate_messages", 1), ("retry_interval", 2)]);
    assert!(config.warnings[0].to_string().starts_with(&format!("{ORIGIN}:1: allow_duplicate_messages:")));
}

#[test]
fn an_unknown_directive_is_an_error_with_a_suggestion() {
    let e = error("listener 1883\nallow_anonymus true\n");
    assert_eq!(
        e.to_string(),
        format!("{ORIGIN}:2: unknown directive 'allow_anonymus' (did you mean 'allow_anonymous'?)")
    );
    let e = error("frobnicate 1\n");
    assert_eq!(e.to_string(), format!("{ORIGIN}:1: unknown directive 'frobnicate'"));
    assert!(matches!(e, ConfigError::Unknown { line: 1, .. }));
}

#[test]
fn mosquitto_directives_not_supported_yet_say_so_by_name() {
    for (text, feature) in [
        ("bridge_psk 0123abcd", "bridge option"),
        ("bridge_identity me", "bridge option"),
        ("bridge_require_ocsp true", "bridge option"),
        ("plugin /usr/lib/mosquitto_dynamic_security.so", "plugins"),
        ("plugin_opt_config_file /x.json", "plugins"),
        ("auth_plugin /usr/lib/auth.so", "plugins"),
        ("auth_opt_backends mysql", "plugins"),
        ("dhparamfile /dh.pem", "TLS option"),
        ("websockets_log_level 255", "WebSockets logging"),
    ] {
        let e = error(&format!("listener 1883\n{text}\n"));
        let directive = text.split(' ').next().unwrap_or_default();
        let expected =
            format!("{ORIGIN}:2: {directive} is a Mosquitto directive mqttd does not support yet ({feature})");
        assert_eq!(e.to_string(), expected);
    }
}

#[test]
fn psk_directives_are_refused_with_what_to_use_instead() {
    for text in ["psk_hint hint", "psk_file /etc/mosquitto/psk"] {
        let e = error(&format!("listener 8883\n{text}\n"));
        let message = e.to_string();
        assert!(message.starts_with(&format!("{ORIGIN}:2: ")), "{message}");
        assert!(message.contains("no pre-shared keys") && message.contains("require_certificate"), "{message}");
    }
}

#[test]
fn invalid_utf8_is_reported_with_its_line() {
    let dir = TempDir::new("utf8");
    let path = dir.0.join("bad.conf");
    std::fs::write(&path, b"listener 1883\nacl_file /etc/\xff\n").expect("write");
    let e = Config::load(&path).expect_err("invalid UTF-8");
    assert!(matches!(e, ConfigError::Encoding { line: 2, .. }), "{e}");
}

#[test]
fn load_reports_a_missing_file_and_a_directory() {
    let e = Config::load(Path::new("/nonexistent/mqttd.conf")).expect_err("missing file");
    assert!(e.to_string().starts_with("cannot read config file /nonexistent/mqttd.conf:"), "{e}");
    let dir = TempDir::new("isdir");
    assert!(Config::load(&dir.0).expect_err("directory").to_string().contains("directory"));
}

#[test]
fn include_dir_reads_conf_files_in_mosquitto_order() {
    let dir = TempDir::new("include");
    let conf_d = dir.0.join("conf.d");
    std::fs::create_dir(&conf_d).expect("mkdir");
    std::fs::write(conf_d.join("b.conf"), "listener 1884\nmax_connections 7\n").expect("write");
    std::fs::write(conf_d.join("A.conf"), "listener 1883\n").expect("write");
    std::fs::write(conf_d.join("a.conf"), "listener 1882\n").expect("write");
    std::fs::write(conf_d.join("notes.txt"), "garbage\n").expect("write");
    std::fs::write(conf_d.join(".conf"), "garbage\n").expect("write");
    std::fs::create_dir(conf_d.join("sub.conf")).expect("mkdir");
    let main = dir.write("mosquitto.conf", &format!("allow_anonymous true\ninclude_dir {}\n", conf_d.display()));
    let config = Config::load(&main).expect("valid config");
    let ports: Vec<u16> = config.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, [1883, 1882, 1884]);
    assert_eq!(config.listeners[2].max_connections, Some(7));
    assert_eq!(config.listeners[2].defined_at, Location { file: conf_d.join("b.conf"), line: 1 });
    assert_eq!(config.files, [main, conf_d.join("A.conf"), conf_d.join("a.conf"), conf_d.join("b.conf")]);
}

#[test]
fn errors_in_included_files_name_that_file_and_line() {
    let dir = TempDir::new("include-error");
    let conf_d = dir.0.join("conf.d");
    std::fs::create_dir(&conf_d).expect("mkdir");
    std::fs::write(conf_d.join("10-auth.conf"), "# auth\nallow_anonymous maybe\n").expect("write");
    let main = dir.write("mosquitto.conf", &format!("include_dir {}\n", conf_d.display()));
    let e = Config::load(&main).expect_err("invalid value");
    assert_eq!((e.file(), e.line()), (conf_d.join("10-auth.conf").as_path(), 2));
    let e = error("include_dir /nonexistent/conf.d\n");
    assert!(e.to_string().contains("cannot read directory '/nonexistent/conf.d'"), "{e}");
}

#[test]
fn include_dir_is_only_allowed_in_the_main_file() {
    let dir = TempDir::new("include-nested");
    let conf_d = dir.0.join("conf.d");
    std::fs::create_dir(&conf_d).expect("mkdir");
    std::fs::write(conf_d.join("x.conf"), format!("include_dir {}\n", dir.0.display())).expect("write");
    let main = dir.write("mosquitto.conf", &format!("include_dir {}\n", conf_d.display()));
    let e = Config::load(&main).expect_err("nested include_dir");
    assert!(e.to_string().contains("only allowed in the main configuration file"), "{e}");
}

#[test]
fn settings_in_an_included_file_start_again_at_the_default_listener() {
    let dir = TempDir::new("include-scope");
    let conf_d = dir.0.join("conf.d");
    std::fs::create_dir(&conf_d).expect("mkdir");
    std::fs::write(conf_d.join("tls.conf"), "max_qos 1\n").expect("write");
    let main = dir.write("mosquitto.conf", &format!("listener 1883\nmax_qos 0\ninclude_dir {}\n", conf_d.display()));
    let config = Config::load(&main).expect("valid config");
    assert_eq!((config.max_qos, config.listeners[0].max_qos), (1, 0));
}

#[test]
fn a_full_realistic_mosquitto_conf_parses() {
    let text = include_str!("../../tests/config_files/full.conf");
    let config = parse(text);
    assert!(config.per_listener_settings);
    let ports: Vec<u16> = config.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, [1883, 8883, 9001, 8884]);
    let [local, tls, ws, mtls] = &config.listeners[..] else { panic!("four listeners expected") };
    assert_eq!(local.bind_address.as_deref(), Some("127.0.0.1"));
    assert!(config.allow_anonymous_for(Some(local)));
    assert!(!config.allow_anonymous_for(Some(tls)) && tls.is_tls());
    assert_eq!(config.password_file_for(Some(tls)), Some(Path::new("/etc/mosquitto/passwd")));
    assert_eq!(ws.protocol, ListenerProtocol::WebSockets);
    assert!(mtls.require_certificate && mtls.use_identity_as_username);
    assert_eq!(config.persistent_client_expiration, Some(Duration::from_secs(14 * 86_400)));
    assert_eq!(
        config.log_dest,
        vec![LogDest::File(PathBuf::from("/var/log/mosquitto/mosquitto.log")), LogDest::Stdout]
    );
    assert!(config.persistence);
}

#[test]
fn the_sample_files_load() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config_files");
    let guide = Config::load(&samples.join("guide.conf")).expect("guide.conf is valid");
    assert_eq!(guide.allow_anonymous, Some(false));
    assert_eq!(guide.listeners.len(), 1);
    let full = Config::load(&samples.join("full.conf")).expect("full.conf is valid");
    assert_eq!(full.listeners.len(), 4);
}

#[test]
fn debians_stock_mosquitto_conf_parses() {
    let dir = TempDir::new("debian");
    let conf_d = dir.0.join("conf.d");
    std::fs::create_dir(&conf_d).expect("mkdir");
    std::fs::write(conf_d.join("local.conf"), "listener 1883\nallow_anonymous true\n").expect("write");
    let stock = include_str!("../../tests/config_files/debian.conf");
    let main = dir.write("mosquitto.conf", &stock.replace("/etc/mosquitto/conf.d", &conf_d.display().to_string()));
    let config = Config::load(&main).expect("Debian's file is valid");
    assert!(config.persistence);
    assert_eq!(config.pid_file, Some(PathBuf::from("/run/mosquitto/mosquitto.pid")));
    assert_eq!(config.log_dest, vec![LogDest::File(PathBuf::from("/var/log/mosquitto/mosquitto.log"))]);
    assert_eq!(config.listeners.len(), 1);
    assert!(config.allow_anonymous_for(config.listeners.first()));
}

#[test]
fn threads_is_mqttd_s_own_directive_in_the_same_syntax() {
    assert_eq!(parse("").threads, 0);
    assert_eq!(parse("threads 4\n").threads, 4);
    assert!(error("threads many\n").to_string().contains("threads"));
}

#[test]
fn park_idle_after_is_mqttd_s_own_directive_in_seconds() {
    assert_eq!(parse("").park_idle_after, 1);
    assert_eq!(parse("park_idle_after 0\n").park_idle_after, 0);
    assert_eq!(parse("park_idle_after 30\n").park_idle_after, 30);
    assert!(error("park_idle_after soon\n").to_string().contains("park_idle_after"));
}

#[test]
fn protocol_http_makes_an_admin_listener_with_an_optional_token() {
    let config = parse("listener 1883\nlistener 8080 127.0.0.1\nprotocol http\nhttp_token s3cret\n");
    assert_eq!(config.listeners[0].protocol, ListenerProtocol::Mqtt);
    assert_eq!(config.listeners[1].protocol, ListenerProtocol::Http);
    assert_eq!(config.listeners[1].http_token.as_deref(), Some("s3cret"));
    assert_eq!(config.listeners[0].http_token, None);
    assert!(error("listener 8080\nhttp_token a\nhttp_token b\n").to_string().contains("http_token"));
}
