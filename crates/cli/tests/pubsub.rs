//! `mqtt pub` and `mqtt sub` end to end against a real broker (each test once per backend).

mod common;

use std::io::Write;

use common::Broker;

/// Publishes a retained message, then `mqtt sub --count 1 ARGS` prints it: deterministic, no wait needed.
fn first_retained(broker: &Broker, topic: &str, pub_args: &[&str], sub_args: &[&str]) -> String {
    let mut args = vec!["-t", topic, "-r"];
    args.extend_from_slice(pub_args);
    broker.publish(&args);
    let out = broker.mqtt("sub").args(["-t", topic, "--count", "1", "-W", "10"]).args(sub_args).output().expect("sub");
    assert!(out.status.success(), "sub failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

broker_test! {
    fn sub_prints_the_payload_or_topic_and_payload_like_mqtt_js(broker) {
        let mut plain = broker.subscribe_ready(&["-t", "room/+"], "room/ready");
        let mut verbose = broker.subscribe_ready(&["-t", "room/+", "-v"], "room/ready");
        broker.publish(&["-t", "room/a", "-m", "hello world"]);
        // mqtt.js form: topic and message as arguments.
        broker.publish(&["room/b", "second message"]);
        // -m with a positional topic.
        broker.publish(&["-m", "third", "room/c"]);
        assert_eq!(plain.line(), "hello world");
        assert_eq!(plain.line(), "second message");
        assert_eq!(plain.line(), "third");
        assert_eq!(verbose.line(), "room/a hello world");
        assert_eq!(verbose.line(), "room/b second message");
        assert_eq!(verbose.line(), "room/c third");
    }
}

broker_test! {
    fn every_qos_and_protocol_version_delivers(broker) {
        for version in ["3.1", "3.1.1", "5"] {
            let topic = format!("qos/{}", version.replace('.', "_"));
            let filter = format!("{topic}/+");
            let mut sub = broker.subscribe_ready(
                &["-t", &filter, "-q", "2", "-V", version, "-F", "%t %q %p"],
                &format!("{topic}/ready"),
            );
            for qos in ["0", "1", "2"] {
                broker.publish(&["-t", &format!("{topic}/m"), "-m", qos, "-q", qos, "-V", version]);
                assert_eq!(sub.line(), format!("{topic}/m {qos} {qos}"), "version {version}");
            }
        }
    }
}

broker_test! {
    fn several_topics_each_get_their_own_qos(broker) {
        let mut sub = broker.subscribe_ready(
            &["-t", "multi/a", "-t", "multi/b", "-q", "1", "-q", "2", "-F", "%t %q %p"],
            "multi/a",
        );
        broker.publish(&["-t", "multi/a", "-m", "x", "-q", "2"]);
        broker.publish(&["-t", "multi/b", "-m", "x", "-q", "2"]);
        assert_eq!(sub.line(), "multi/a 1 x");
        assert_eq!(sub.line(), "multi/b 2 x");
    }
}

broker_test! {
    fn retained_messages_are_printed_skipped_or_cleared(broker) {
        assert_eq!(first_retained(broker, "ret/a", &["-m", "kept"], &["-v"]), "ret/a kept\n");
        // -R skips retained messages: nothing within the timeout, exit status 27.
        let out = broker.mqtt("sub").args(["-t", "ret/a", "-R", "-W", "1"]).output().expect("sub");
        assert_eq!(out.status.code(), Some(27));
        assert!(out.stdout.is_empty());
        // --retained-only prints the retained one, then -W ends it.
        broker.publish(&["-t", "ret/b", "-m", "also kept", "-r"]);
        let out = broker.mqtt("sub").args(["-t", "ret/+", "--retained-only", "-W", "1"]).output().expect("sub");
        let mut lines: Vec<_> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        lines.sort();
        assert_eq!(lines, ["also kept", "kept"]);
        // --remove-retained clears them; afterwards nothing is retained.
        let out = broker.mqtt("sub").args(["-t", "ret/+", "--remove-retained", "--count", "2"]).output().expect("sub");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = broker.mqtt("sub").args(["-t", "ret/+", "-W", "1"]).output().expect("sub");
        assert_eq!(out.status.code(), Some(27));
        assert!(out.stdout.is_empty(), "still retained: {:?}", String::from_utf8_lossy(&out.stdout));
    }
}

broker_test! {
    fn null_message_clears_a_retained_message(broker) {
        assert_eq!(first_retained(broker, "null/a", &["-m", "x"], &[]), "x\n");
        broker.publish(&["-t", "null/a", "-n", "-r"]);
        let out = broker.mqtt("sub").args(["-t", "null/a", "-W", "1"]).output().expect("sub");
        assert_eq!(out.status.code(), Some(27), "a cleared retained message is not sent");
    }
}

broker_test! {
    fn payload_from_a_file_and_from_stdin(broker) {
        let file = broker.dir.path().join("payload.bin");
        std::fs::write(&file, b"\x00\x01binary\xff").expect("write payload");
        let hex = first_retained(broker, "src/file", &["-f", file.to_str().expect("path")], &["-F", "%x %l"]);
        assert_eq!(hex, "000162696e617279ff 9\n");

        let mut child = broker
            .mqtt("pub")
            .args(["-t", "src/stdin", "-r", "-s"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("pub -s");
        child.stdin.take().expect("stdin").write_all(b"line one\nline two\n").expect("write stdin");
        assert!(child.wait().expect("wait").success());
        let out = broker.mqtt("sub").args(["-t", "src/stdin", "--count", "1", "-F", "%p"]).output().expect("sub");
        assert_eq!(out.stdout, b"line one\nline two\n\n");
    }
}

broker_test! {
    fn multiline_publishes_each_line_trimmed(broker) {
        let mut sub = broker.subscribe_ready(&["-t", "lines/#"], "lines/ready");
        let mut child = broker
            .mqtt("pub")
            .args(["-t", "lines/x", "-s", "-M", "-q", "1"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("pub -M");
        child.stdin.take().expect("stdin").write_all(b"first\n  second  \nthird").expect("write stdin");
        assert!(child.wait().expect("wait").success());
        assert_eq!(sub.line(), "first");
        assert_eq!(sub.line(), "second");
        assert_eq!(sub.line(), "third");
    }
}

broker_test! {
    fn repeat_publishes_n_times_with_a_delay(broker) {
        let mut sub = broker.subscribe_ready(&["-t", "rep/#", "-v"], "rep/ready");
        let start = std::time::Instant::now();
        broker.publish(&["-t", "rep/x", "-m", "again", "--repeat", "3", "--repeat-delay", "0.2"]);
        assert!(start.elapsed() >= std::time::Duration::from_millis(400), "--repeat-delay was not honoured");
        for _ in 0..3 {
            assert_eq!(sub.line(), "rep/x again");
        }
    }
}

broker_test! {
    fn count_exits_after_n_messages_and_no_newline_joins_them(broker) {
        for i in 0..3 {
            broker.publish(&["-t", &format!("count/{i}"), "-m", &i.to_string(), "-r"]);
        }
        let out = broker.mqtt("sub").args(["-t", "count/+", "--count", "2", "-N"]).output().expect("sub");
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), 2, "two payloads without newlines: {:?}", out.stdout);
    }
}

broker_test! {
    fn exit_after_suback_returns_zero_without_messages(broker) {
        let out = broker.mqtt("sub").args(["-t", "e/#", "-E"]).output().expect("sub -E");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout.is_empty());
    }
}

broker_test! {
    fn timeout_exits_with_status_27(broker) {
        let out = broker.mqtt("sub").args(["-t", "nothing/here", "-W", "0.5"]).output().expect("sub -W");
        assert_eq!(out.status.code(), Some(27));
    }
}

broker_test! {
    fn json_output_has_topic_qos_retain_and_payload(broker) {
        let line = first_retained(broker, "json/a", &["-m", "héllo", "-q", "1"], &["--json", "-q", "1"]);
        let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON object");
        assert_eq!(v["topic"], "json/a");
        assert_eq!(v["payload"], "héllo");
        assert_eq!(v["qos"], 1);
        assert_eq!(v["retain"], true);
        assert!(v["tst"].as_str().is_some_and(|t| t.ends_with("+0000")));
        let line = first_retained(broker, "json/b", &["-m", "x"], &["--json"]);
        assert!(line.contains("\"payload\":\"x\""));
    }
}

broker_test! {
    fn format_strings_cover_the_message_fields(broker) {
        let out = first_retained(broker, "fmt/a", &["-m", "AB", "-q", "1"], &["-q", "1", "-F", r"%t|%p|%x|%X|%l|%q|%r|%%\t@@"]);
        assert_eq!(out, "fmt/a|AB|4142|4142|2|1|1|%\t@\n");
    }
}

broker_test! {
    fn mqtt5_message_properties_reach_the_subscriber(broker) {
        let out = first_retained(
            broker,
            "v5/props",
            &[
                "-V", "5", "-m", "body", "--content-type", "text/plain", "--response-topic", "v5/reply",
                "--correlation-data", "corr-1", "--user-property", "k1", "v1", "--user-property", "k2", "v2",
                "--message-expiry", "300", "--payload-format-indicator", "1",
            ],
            &["-V", "5", "-F", "%C|%R|%D|%P|%F|%p"],
        );
        assert_eq!(out, "text/plain|v5/reply|corr-1|k1:v1 k2:v2|1|body\n");
    }
}

broker_test! {
    fn subscription_identifier_is_printed_with_percent_s(broker) {
        let out = first_retained(broker, "v5/subid", &["-m", "x"], &["-V", "5", "--subscription-identifier", "42", "-F", "%S"]);
        assert_eq!(out, "42\n");
    }
}

broker_test! {
    fn retain_handling_2_sends_no_retained_messages(broker) {
        broker.publish(&["-t", "v5/rh", "-m", "x", "-r"]);
        let out = broker.mqtt("sub").args(["-t", "v5/rh", "-V", "5", "--retain-handling", "2", "-W", "1"]).output().expect("sub");
        assert_eq!(out.status.code(), Some(27));
        assert!(out.stdout.is_empty());
    }
}

broker_test! {
    fn retain_as_published_keeps_the_retain_flag_of_live_messages(broker) {
        let mut rap = broker.subscribe_ready(&["-t", "v5/rap/#", "-V", "5", "--retain-as-published", "-F", "%r %p"], "v5/rap/ready");
        let mut plain = broker.subscribe_ready(&["-t", "v5/rap/#", "-V", "5", "-F", "%r %p"], "v5/rap/ready");
        broker.publish(&["-t", "v5/rap/x", "-m", "live", "-r"]);
        assert_eq!(rap.line(), "1 live");
        assert_eq!(plain.line(), "0 live");
        broker.publish(&["-t", "v5/rap/x", "-n", "-r"]);
    }
}

broker_test! {
    fn no_local_and_user_properties_on_subscribe_are_accepted(broker) {
        let out = broker
            .mqtt("sub")
            .args(["-t", "v5/nl", "-V", "5", "--no-local", "--user-property", "a", "b", "-E"])
            .args(["--connect-user-property", "c", "d", "-x", "30"])
            .output()
            .expect("sub");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

broker_test! {
    fn a_persistent_session_keeps_messages_while_the_subscriber_is_away(broker) {
        for (version, extra) in [("3.1.1", &[][..]), ("5", &["-x", "60"][..])] {
            let id = format!("persist-{}", version.replace('.', ""));
            let topic = format!("persist/{id}");
            let first = broker
                .mqtt("sub")
                .args(["-i", &id, "--no-clean", "-q", "1", "-t", &topic, "-E", "-V", version])
                .args(extra)
                .output()
                .expect("sub -E");
            assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
            broker.publish(&["-t", &topic, "-m", "queued", "-q", "1"]);
            let again = broker
                .mqtt("sub")
                .args(["--id", &id, "--no-clean", "-q", "1", "-t", &topic, "--count", "1", "-W", "10", "-V", version])
                .args(extra)
                .output()
                .expect("sub again");
            assert_eq!(String::from_utf8_lossy(&again.stdout), "queued\n", "version {version}");
        }
    }
}

broker_test! {
    fn sub_reconnects_after_the_broker_restarts(broker) {
        let mut sub = broker.subscribe_ready(&["-t", "re/#", "-v", "--clientId", "reconnecting", "--reconnect-period", "100"], "re/ready");
        broker.restart();
        sub.wait_stderr("reconnected");
        broker.publish(&["-t", "re/x", "-m", "after restart"]);
        assert_eq!(sub.line(), "re/x after restart");
    }
}

broker_test! {
    fn keepalive_pings_keep_an_idle_subscriber_connected(broker) {
        let mut sub = broker.subscribe_ready(&["-t", "ka/#", "-k", "1", "--reconnect-period", "0"], "ka/ready");
        // Let three keep-alive intervals pass idle (time passing is the point here, not synchronisation).
        std::thread::sleep(std::time::Duration::from_millis(3200));
        broker.publish(&["-t", "ka/x", "-m", "still here"]);
        assert_eq!(sub.line(), "still here");
        assert!(!sub.stderr().contains("lost"), "{}", sub.stderr());
    }
}

broker_test! {
    fn rr_prints_the_response_with_matching_correlation_data(broker) {
        let mut responder = broker.subscribe_ready(&["-t", "rr/req", "-V", "5", "-F", "%R|%D|%p"], "rr/req");
        let mut rr = common::Process::spawn(
            broker.mqtt("rr").args(["-t", "rr/req", "-e", "rr/resp", "-m", "question", "--correlation-data", "c-1", "-W", "10", "-v"]),
        );
        assert_eq!(responder.line(), "rr/resp|c-1|question");
        broker.publish(&["-V", "5", "-t", "rr/resp", "-m", "other", "--correlation-data", "c-2"]);
        broker.publish(&["-V", "5", "-t", "rr/resp", "-m", "answer", "--correlation-data", "c-1"]);
        assert_eq!(rr.line(), "rr/resp answer");
        assert_eq!(rr.wait(), Some(0));
    }
}

broker_test! {
    fn rr_times_out_with_status_27(broker) {
        let out = broker.mqtt("rr").args(["-t", "rr/none", "-e", "rr/none/resp", "-m", "q", "-W", "0.5"]).output().expect("rr");
        assert_eq!(out.status.code(), Some(27));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no response"));
    }
}
