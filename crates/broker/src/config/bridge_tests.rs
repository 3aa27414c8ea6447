//! `connection` sections read as Mosquitto reads them (mosquitto.conf(5) "Configuring Bridges").

use std::path::Path;

use mqttd_proto::{ProtocolVersion, QoS};

use super::{BridgeConfig, Config, ConfigError, Direction, Restart, StartType};

const ORIGIN: &str = "/etc/mosquitto/mosquitto.conf";

fn bridges(text: &str) -> Vec<BridgeConfig> {
    Config::parse(text, Path::new(ORIGIN)).unwrap_or_else(|e| panic!("{e}")).bridges
}

fn error(text: &str) -> ConfigError {
    Config::parse(text, Path::new(ORIGIN)).expect_err("must be refused")
}

#[test]
fn a_bridge_has_mosquittos_defaults() {
    let b = &bridges("connection cloud\naddress broker.example\ntopic sensors/#\n")[0];
    assert_eq!(b.name, "cloud");
    assert_eq!(b.addresses, vec![("broker.example".to_owned(), 1883)]);
    assert_eq!(b.protocol_version, ProtocolVersion::V3_1_1);
    assert!(!b.cleansession && !b.local_cleansession() && !b.round_robin);
    assert_eq!(b.keepalive, 60);
    assert!(b.notifications && !b.notifications_local_only && b.try_private);
    assert!(b.attempt_unsubscribe && b.outgoing_retain);
    assert_eq!(b.restart, Restart::Backoff { base: 5, cap: 30 });
    assert_eq!((b.start_type, b.threshold, b.idle_timeout), (StartType::Automatic, 10, 60));
    assert!(b.remote_clientid().ends_with(".cloud"), "hostname.name: {}", b.remote_clientid());
    assert_eq!(b.local_clientid(), format!("local.{}", b.remote_clientid()));
    assert_eq!(b.notification_topic(), format!("$SYS/broker/connection/{}/state", b.remote_clientid()));
    let t = &b.topics[0];
    assert_eq!(
        (t.direction, t.qos, t.local_topic(), t.remote_topic()),
        (Direction::Out, QoS::AtMostOnce, "sensors/#".into(), "sensors/#".into())
    );
}

#[test]
fn topic_lines_take_direction_qos_and_prefixes_with_empty_placeholders() {
    let text = "connection c\naddresses a:1884 [::1]:1885 b\nremote_clientid edge\n\
                topic sensors/# out 1 local/ remote/\ntopic cmd/# in 2 \"\" site/\n\
                topic \"\" both 0 here/x there/y\ntopic # both\n";
    let b = &bridges(text)[0];
    assert_eq!(b.addresses, vec![("a".into(), 1884), ("::1".into(), 1885), ("b".into(), 1883)]);
    let topics: Vec<(String, String, Direction, QoS)> =
        b.topics.iter().map(|t| (t.local_topic(), t.remote_topic(), t.direction, t.qos)).collect();
    assert_eq!(
        topics,
        vec![
            ("local/sensors/#".into(), "remote/sensors/#".into(), Direction::Out, QoS::AtLeastOnce),
            ("cmd/#".into(), "site/cmd/#".into(), Direction::In, QoS::ExactlyOnce),
            ("here/x".into(), "there/y".into(), Direction::Both, QoS::AtMostOnce),
            ("#".into(), "#".into(), Direction::Both, QoS::AtMostOnce),
        ]
    );
    assert_eq!(b.local_clientid(), "local.edge");
    assert_eq!(b.notification_topic(), "$SYS/broker/connection/edge/state");
}

#[test]
fn every_bridge_setting_is_read() {
    let text = "connection c\naddress h:1\ntopic t\nbridge_protocol_version mqttv50\ncleansession true\n\
                local_cleansession false\nbridge_session_expiry_interval 600\nkeepalive_interval 2\n\
                clientid r\nlocal_clientid l\nusername u\npassword p\nlocal_username lu\nlocal_password lp\n\
                notifications false\nnotifications_local_only true\nnotification_topic n/t\nrestart_timeout 0\n\
                start_type lazy\nthreshold 0\nidle_timeout 3\ntry_private false\nbridge_attempt_unsubscribe false\n\
                bridge_outgoing_retain false\nbridge_max_packet_size 2000\nbridge_receive_maximum 7\n\
                bridge_bind_address 127.0.0.1\nbridge_cafile /ca\nbridge_capath /cas\nbridge_certfile /c\n\
                bridge_keyfile /k\nbridge_insecure true\nbridge_tls_version tlsv1.3\nbridge_alpn mqtt\nround_robin true\n";
    let b = &bridges(text)[0];
    assert_eq!(b.protocol_version, ProtocolVersion::V5);
    assert!(b.cleansession && !b.local_cleansession());
    assert_eq!(
        (b.session_expiry_interval, b.keepalive, b.receive_maximum),
        (Some(600), 5, Some(7)),
        "keepalive at least 5"
    );
    assert_eq!((b.remote_clientid(), b.local_clientid()), ("r".into(), "l".into()));
    assert_eq!((b.remote_username.as_deref(), b.remote_password.as_deref()), (Some("u"), Some("p")));
    assert_eq!((b.local_username.as_deref(), b.local_password.as_deref()), (Some("lu"), Some("lp")));
    assert!(!b.notifications && b.notifications_local_only && b.notification_topic() == "n/t");
    assert_eq!(b.restart, Restart::Constant(1), "raised to 1 s as Mosquitto");
    assert_eq!((b.start_type, b.threshold, b.idle_timeout), (StartType::Lazy, 1, 3));
    assert!(!b.try_private && !b.attempt_unsubscribe && !b.outgoing_retain && b.round_robin);
    assert_eq!(b.max_packet_size, 2000);
    assert_eq!(b.bind_address, Some([127, 0, 0, 1].into()));
    assert!(b.tls.enabled() && b.tls.insecure && b.tls.alpn.as_deref() == Some("mqtt"));
    assert_eq!(
        bridges("connection c\naddress h\ntopic t\nrestart_timeout 2 20\n")[0].restart,
        Restart::Backoff { base: 2, cap: 20 }
    );
}

#[test]
fn bad_bridge_sections_name_the_line() {
    for (text, line, says) in [
        ("address h\n", 1, "must follow a connection line"),
        ("connection c\ntopic t\n", 1, "has no address line"),
        ("connection c\naddress h\n", 1, "has no topic line"),
        ("connection c\naddress h\ntopic t\nconnection c\n", 4, "duplicate bridge name"),
        ("connection c\naddress h:0\n", 2, "a port 1..=65535"),
        ("connection c\naddress h\naddress i\n", 3, "duplicate value"),
        ("connection c\naddress h\ntopic t sideways\n", 3, "out, in or both"),
        ("connection c\naddress h\ntopic t out 3\n", 3, "a QoS 0, 1 or 2"),
        ("connection c\naddress h\ntopic \"\" out 0 l/ \"\"\n", 3, "needs both a local and a remote prefix"),
        ("connection c\naddress h\ntopic t out 0 l/+/ r/\n", 3, "a prefix without wildcards"),
        ("connection c\naddress h\ntopic a/#/b\n", 3, "a valid prefix and pattern"),
        ("connection c\naddress h\ntopic t\nrestart_timeout 9 3\n", 4, "cap is lower than the base"),
        ("connection c\naddress h\ntopic t\nbridge_protocol_version mqttv6\n", 4, "mqttv50, mqttv311 or mqttv31"),
        ("connection c\naddress h\ntopic t\nstart_type manual\n", 4, "automatic, lazy or once"),
        ("connection c\naddress h\ntopic t\nbridge_psk 00ff\n", 4, "not support yet"),
        (
            "connection a\naddress h\ntopic t\nlocal_clientid x\nconnection b\naddress h\ntopic t\nlocal_clientid x\n",
            5,
            "also the one of the bridge at",
        ),
    ] {
        let e = error(text);
        assert_eq!(e.line(), line, "{text:?}: {e}");
        assert!(e.to_string().contains(says), "{text:?}: {e}");
    }
}
