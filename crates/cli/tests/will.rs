//! Wills: the LWT walk-through with `mqtt` in all three terminals, killed with SIGINT and with SIGKILL, and
//! the will options (MQTT 5 will properties, `--clean-exit`, `--will-payload` on pub).

mod common;

use std::io::Write;

use common::{Broker, Process};

/// Terminal 1 watches `HQ/+`; terminal 2 subscribes to HQ/mattdamon with a will; terminal 3 publishes.
fn walkthrough(broker: &Broker, signal: &str) -> (Process, Process) {
    let mut watcher = broker.subscribe_ready(&["-t", "HQ/+", "-v"], "HQ/ready");
    let mut damon = broker.subscribe_ready(
        &["-t", "HQ/mattdamon", "--will-topic", "HQ/die", "--will-message", "matt damon"],
        "HQ/mattdamon",
    );
    broker.publish(&["-t", "HQ/mattdamon", "-m", "I'M PRETTY MUCH FUCKED."]);
    assert_eq!(damon.line(), "I'M PRETTY MUCH FUCKED.");
    assert_eq!(watcher.line(), "HQ/mattdamon I'M PRETTY MUCH FUCKED.");
    damon.signal(signal);
    (watcher, damon)
}

broker_test! {
    fn sigint_closes_without_disconnect_so_the_will_is_published(broker) {
        let (mut watcher, mut damon) = walkthrough(broker, "INT");
        assert_eq!(watcher.line(), "HQ/die matt damon");
        assert_eq!(damon.wait(), Some(130));
    }
}

broker_test! {
    fn sigkill_publishes_the_will_too(broker) {
        let (mut watcher, mut damon) = walkthrough(broker, "KILL");
        assert_eq!(watcher.line(), "HQ/die matt damon");
        assert_eq!(damon.wait(), None, "killed by a signal");
    }
}

broker_test! {
    fn clean_exit_sends_disconnect_and_the_will_is_dropped(broker) {
        let mut watcher = broker.subscribe_ready(&["-t", "HQ/+", "-v"], "HQ/ready");
        let mut quiet = broker.subscribe_ready(
            &["-t", "HQ/quiet", "--will-topic", "HQ/die", "--will-payload", "never", "--clean-exit"],
            "HQ/quiet",
        );
        quiet.signal("INT");
        assert_eq!(quiet.wait(), Some(130));
        broker.publish(&["-t", "HQ/after", "-m", "end"]);
        assert_eq!(watcher.line(), "HQ/after end", "no will before this line");
    }
}

broker_test! {
    fn mqtt5_will_properties_qos_and_retain_are_sent(broker) {
        let mut sub = broker.subscribe_ready(
            &[
                "-t", "will5/x", "-V", "5", "--will-topic", "will5/w", "--will-message", "bye", "--will-qos", "1",
                "--will-retain", "--will-content-type", "text/plain", "--will-user-property", "k", "v",
                "--will-response-topic", "will5/r", "--will-correlation-data", "c9", "--will-payload-format-indicator",
                "1", "--will-message-expiry", "100", "--will-delay", "0",
            ],
            "will5/x",
        );
        sub.signal("KILL");
        sub.wait();
        let out = broker
            .mqtt("sub")
            .args(["-t", "will5/w", "-V", "5", "-q", "1", "--count", "1", "-W", "10", "-F", "%C|%P|%R|%D|%F|%r|%q|%p"])
            .output()
            .expect("sub");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "text/plain|k:v|will5/r|c9|1|1|1|bye\n");
    }
}

broker_test! {
    fn will_delay_holds_the_will_back(broker) {
        let mut sub = broker.subscribe_ready(
            &["-t", "delay/x", "-V", "5", "-x", "10", "--will-topic", "delay/w", "--will-message", "late", "--will-delay", "1", "--will-retain"],
            "delay/x",
        );
        sub.signal("KILL");
        sub.wait();
        let killed = std::time::Instant::now();
        let out = broker.mqtt("sub").args(["-t", "delay/w", "--count", "1", "-W", "10"]).output().expect("sub");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "late\n");
        assert!(killed.elapsed() >= std::time::Duration::from_millis(800), "will came before its delay");
    }
}

broker_test! {
    fn pub_sends_its_will_payload_when_killed(broker) {
        let mut watcher = broker.subscribe_ready(&["-t", "pubwill/#", "-v"], "pubwill/ready");
        let mut publisher = broker
            .mqtt("pub")
            .args(["-t", "pubwill/line", "-s", "-M", "--will-topic", "pubwill/died", "--will-payload", "pub gone"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("pub -M");
        let mut stdin = publisher.stdin.take().expect("stdin");
        stdin.write_all(b"connected\n").expect("write");
        stdin.flush().expect("flush");
        assert_eq!(watcher.line(), "pubwill/line connected");
        publisher.kill().expect("kill pub");
        publisher.wait().expect("wait pub");
        assert_eq!(watcher.line(), "pubwill/died pub gone");
    }
}
