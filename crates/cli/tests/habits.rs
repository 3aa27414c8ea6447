//! mosquitto_pub/sub habits in `mqtt` (issue 16): `-m` with bytes that are not UTF-8, `--user-property`
//! refused with the rule when not UTF-8, `-W` as total seconds, `-T` and `-U`, `-d` packet trace. Each
//! runs against mqttd and Mosquitto ([`broker_test!`]).

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use common::Process;

broker_test! {
    fn a_message_of_bytes_that_are_not_utf8_arrives_unchanged(broker) {
        let bytes = OsStr::from_bytes(b"\xff\xfeok");
        let out = broker.mqtt("pub").args(["-t", "bin", "-r", "-m"]).arg(bytes).output().expect("runs mqtt pub");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Printed in hex (-F %x): the default output replaces invalid UTF-8 as mqtt.js does.
        let out = broker.mqtt("sub").args(["-t", "bin", "--count", "1", "-F", "%x"]).output().expect("runs mqtt sub");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "fffe6f6b\n");
    }
}

broker_test! {
    fn a_user_property_that_is_not_utf8_is_refused_naming_the_rule(broker) {
        let out = broker
            .mqtt("pub")
            .args(["-V", "5", "-t", "t", "-m", "x", "--user-property", "k"])
            .arg(OsStr::from_bytes(b"\xff"))
            .output()
            .expect("runs mqtt pub");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("is not UTF-8") && stderr.contains("[MQTT-1.5.4-1]"), "{stderr}");
    }
}

broker_test! {
    fn dash_w_counts_total_seconds_while_messages_keep_arriving(broker) {
        let mut sub = broker.subscribe(&["-t", "busy", "-W", "1"]);
        let start = Instant::now();
        // A message every 100 ms: an idle timer would never fire.
        while sub.child.try_wait().expect("status").is_none() {
            assert!(start.elapsed() < Duration::from_secs(5), "-W 1 did not stop the subscriber");
            broker.publish(&["-t", "busy", "-m", "x"]);
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(sub.wait(), Some(27));
    }
}

broker_test! {
    fn dash_capital_t_filters_out_matching_topics(broker) {
        broker.publish(&["-t", "a/skip", "-m", "s", "-r"]);
        broker.publish(&["-t", "a/keep", "-m", "k", "-r"]);
        let out = broker.mqtt("sub").args(["-t", "a/#", "-T", "a/skip", "-v", "-W", "1"]).output().expect("runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a/keep k\n");
        assert_eq!(out.status.code(), Some(27));
    }
}

broker_test! {
    fn dash_capital_u_removes_a_subscription_the_session_kept_and_dash_d_traces_packets(broker) {
        let session = ["-i", "keeper", "--no-clean", "-V", "5", "-x", "60"];
        let out = broker.mqtt("sub").args(session).args(["-t", "u/1", "-q", "1", "-E"]).output().expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = broker.mqtt("sub").args(session).args(["-t", "none", "-U", "u/1", "-E", "-d"]).output().expect("runs");
        let trace = String::from_utf8_lossy(&out.stdout);
        for line in [
            "Client keeper sending CONNECT",
            "Client keeper received CONNACK (0)",
            "Client keeper sending SUBSCRIBE (Mid: 1, Topic: none, QoS: 0, Options: 0x00)",
            "Client keeper received SUBACK",
            "Client keeper sending UNSUBSCRIBE (Mid: 2, Topic: u/1)",
            "Client keeper received UNSUBACK",
            "Client keeper sending DISCONNECT",
        ] {
            assert!(trace.lines().any(|l| l == line), "no {line:?} in:\n{trace}");
        }
        broker.publish(&["-t", "u/1", "-m", "queued?", "-q", "1"]);
        let mut sub = Process::spawn(broker.mqtt("sub").args(session).args(["-t", "none", "-v", "-W", "1"]));
        assert_eq!(sub.wait(), Some(27));
        assert_eq!(sub.rest(), Vec::<String>::new(), "the unsubscribed filter still delivered");
    }
}
