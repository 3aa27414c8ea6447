//! Credentials: -u/-P accepted, and a refusal shown in words with a hint and exit status 4.

mod common;

use predicates::prelude::*;

broker_test! {
    config ["allow_anonymous false", "user alice secret"],
    fn the_right_password_connects(broker) {
        let out = broker.mqtt("pub").args(["-t", "a", "-m", "x", "-u", "alice", "-P", "secret"]).output().expect("pub");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = broker.mqtt("sub").args(["-t", "a", "-E", "--username", "alice", "--password", "secret", "-V", "5"]).output().expect("sub");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

broker_test! {
    config ["allow_anonymous false", "user alice secret"],
    fn a_wrong_password_is_refused_in_words_with_a_hint(broker) {
        for version in ["3.1.1", "5"] {
            let assert = assert_cmd::Command::from_std(broker.mqtt("pub"))
                .args(["-t", "a", "-m", "x", "-u", "alice", "-P", "wrong", "-V", version])
                .assert()
                .code(4);
            assert.stderr(
                predicate::str::contains("connection refused by the broker")
                    .and(predicate::str::contains("not authorized").or(predicate::str::contains("bad user name or password")))
                    .and(predicate::str::contains("-u/--username and -P/--password")),
            );
        }
    }
}

broker_test! {
    config ["allow_anonymous false", "user alice secret"],
    fn anonymous_sub_is_refused_and_does_not_retry(broker) {
        assert_cmd::Command::from_std(broker.mqtt("sub"))
            .args(["-t", "a"])
            .timeout(std::time::Duration::from_secs(10))
            .assert()
            .code(4)
            .stderr(predicate::str::contains("not authorized"));
    }
}
