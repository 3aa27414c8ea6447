//! Usage texts (snapshots under tests/snapshots/; run with UPDATE_SNAPSHOTS=1 to rewrite them), `version`,
//! and argument errors that need no broker.

mod common;

use assert_cmd::Command;
use predicates::prelude::*;

fn mqtt() -> Command {
    Command::cargo_bin("mqtt").expect("mqtt binary")
}

fn snapshot(name: &str, args: &[&str]) {
    let out = mqtt().args(args).output().expect("run mqtt");
    assert!(out.status.success(), "mqtt {args:?} failed");
    let actual = String::from_utf8(out.stdout).expect("UTF-8 help");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &actual).expect("write snapshot");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "mqtt {args:?} differs from {}", path.display());
}

#[test]
fn mqtt_help_prints_the_command_list() {
    snapshot("help.txt", &["help"]);
}

#[test]
fn mqtt_help_pub_prints_the_publish_usage() {
    snapshot("help-pub.txt", &["help", "pub"]);
}

#[test]
fn mqtt_help_sub_prints_the_subscribe_usage() {
    snapshot("help-sub.txt", &["help", "sub"]);
}

#[test]
fn mqtt_help_rr_prints_the_request_usage() {
    snapshot("help-rr.txt", &["help", "rr"]);
}

#[test]
fn dash_capital_h_and_long_help_print_the_same_text_as_help_command() {
    for (cmd, help) in [("pub", "pub"), ("publish", "pub"), ("sub", "sub"), ("subscribe", "sub"), ("rr", "rr")] {
        let expected = mqtt().args(["help", help]).output().expect("run").stdout;
        for flag in ["-H", "--help"] {
            mqtt().args([cmd, flag]).assert().success().stdout(predicate::eq(expected.clone()));
        }
    }
    // The full names are accepted by `help` too.
    let publish = mqtt().args(["help", "publish"]).output().expect("run").stdout;
    assert_eq!(publish, mqtt().args(["help", "pub"]).output().expect("run").stdout);
}

#[test]
fn no_command_prints_the_command_list() {
    let expected = mqtt().arg("help").output().expect("run").stdout;
    mqtt().assert().success().stdout(predicate::eq(expected));
}

#[test]
fn version_prints_the_package_version() {
    let text = format!("version: {}\n", env!("CARGO_PKG_VERSION"));
    mqtt().arg("version").assert().success().stdout(predicate::str::ends_with(text.clone()));
    mqtt().arg("--version").assert().success().stdout(predicate::str::ends_with(text));
}

#[test]
fn help_for_an_unknown_command_fails_with_the_list_of_commands() {
    mqtt().args(["help", "frobnicate"]).assert().code(2).stderr(predicate::str::contains("no such command"));
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    mqtt().arg("frobnicate").assert().code(2).stderr(predicate::str::contains("frobnicate"));
}

#[test]
fn a_bad_qos_names_the_flag_and_the_reason() {
    mqtt()
        .args(["pub", "-t", "a", "-q", "3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--qos").and(predicate::str::contains("0, 1 or 2")));
    mqtt().args(["sub", "-t", "a", "--will-qos", "7"]).assert().code(2).stderr(predicate::str::contains("--will-qos"));
}

#[test]
fn a_missing_topic_is_a_usage_error() {
    mqtt().arg("pub").assert().code(2).stderr(predicate::str::contains("missing topic"));
    mqtt().arg("sub").assert().code(2).stderr(predicate::str::contains("missing topic"));
}

#[test]
fn mqtt5_options_without_protocol_version_5_ask_for_it() {
    for args in [
        &["pub", "-t", "a", "--content-type", "x"][..],
        &["pub", "-t", "a", "--user-property", "k", "v"],
        &["pub", "-t", "a", "-x", "10"],
        &["sub", "-t", "a", "--no-local"],
        &["sub", "-t", "a", "--retain-handling", "2"],
        &["sub", "-t", "a", "--will-topic", "w", "--will-delay", "5"],
    ] {
        mqtt()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("MQTT 5").and(predicate::str::contains("-V 5")));
    }
}

#[test]
fn payload_sources_exclude_each_other() {
    mqtt().args(["pub", "-t", "a", "-m", "x", "-n"]).assert().code(2).stderr(predicate::str::contains("only one of"));
    mqtt().args(["pub", "a", "x", "-s"]).assert().code(2).stderr(predicate::str::contains("only one of"));
    mqtt().args(["pub", "-t", "a", "-M"]).assert().code(2).stderr(predicate::str::contains("-s/--stdin"));
}

#[test]
fn invalid_topics_are_refused_before_connecting() {
    mqtt().args(["pub", "-t", "a/+", "-p", "1"]).assert().code(2).stderr(predicate::str::contains("wildcard"));
    mqtt()
        .args(["sub", "-t", "a/#/b", "-p", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid topic filter"));
    mqtt().args(["sub", "-t", "a", "--will-topic", "w/#", "-p", "1"]).assert().code(2);
}

#[test]
fn will_options_need_a_will_topic() {
    mqtt()
        .args(["sub", "-t", "a", "--will-message", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--will-topic"));
}

#[test]
fn every_spelling_of_the_transport_is_accepted_and_a_dead_port_fails_at_the_tcp_step() {
    let port = common::free_port().to_string();
    for (proto, flag) in [("mqtts", "-l"), ("ws", "-C"), ("wss", "--protocol"), ("MQTTS", "-l")] {
        mqtt()
            .args(["pub", "-t", "a", "-m", "b", "-p", &port, flag, proto])
            .args(["--cafile", "ca.pem", "--insecure"])
            .assert()
            .code(3)
            .stderr(predicate::str::contains(format!("cannot connect to localhost:{port}")));
    }
}

#[test]
fn a_key_and_a_certificate_without_l_mean_mqtts_and_a_missing_file_is_named() {
    // A listening socket that never answers: TCP connects (the backlog accepts), then TLS needs the files.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port().to_string();
    mqtt()
        .args(["pub", "-t", "a", "--key", "k.pem", "--cert", "c.pem", "-h", "127.0.0.1", "-p", &port])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("cannot use --cert c.pem: No such file or directory"));
}

#[test]
fn a_closed_port_names_host_port_and_os_error_with_a_hint() {
    let port = common::free_port().to_string();
    for args in [&["pub", "-t", "a"][..], &["sub", "-t", "a"], &["rr", "-t", "a", "-e", "b"]] {
        mqtt().args(args).args(["-h", "127.0.0.1", "-p", &port]).assert().code(3).stderr(
            predicate::str::contains(format!("cannot connect to 127.0.0.1:{port}"))
                .and(predicate::str::contains("refused"))
                .and(predicate::str::contains("hint")),
        );
    }
}

#[test]
fn an_unknown_host_is_a_resolve_error() {
    mqtt()
        .args(["pub", "-t", "a", "-h", "no-such-host.invalid"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("cannot resolve host name \"no-such-host.invalid\""));
}
