//! Fuzzes the ACL parser and checks: no input panics, an allow always names its rule, and a
//! refused subscription never hides a topic that a read check would allow.
//!
//! Input: the ACL file, then after a NUL byte `username NUL client_id NUL topic` (an empty
//! username means an anonymous client).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mqttd_auth::{Access, Acl};
use mqttd_proto::topic::{validate_topic_filter, validate_topic_name};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let (file, query) = input.split_once('\0').unwrap_or((input, ""));
    let acl = match Acl::parse(file) {
        Ok(acl) => acl,
        Err(error) => {
            assert!(error.line >= 1 && error.line <= file.lines().count());
            return;
        }
    };
    let mut parts = query.splitn(3, '\0');
    let username = parts.next().filter(|u| !u.is_empty());
    let client_id = parts.next().unwrap_or("");
    let topic = parts.next().unwrap_or("a/b");

    for access in [Access::Read, Access::Write] {
        let decision = acl.check(username, client_id, topic, access);
        assert!(!decision.allowed || decision.rule.is_some());
    }
    let subscribe = acl.check_subscribe(username, client_id, topic);
    assert!(!subscribe.allowed || subscribe.rule.is_some());
    if validate_topic_filter(topic).is_err() {
        assert!(!subscribe.allowed);
    }
    // A topic name is also a filter matching exactly itself: refusing that subscription must mean
    // the topic cannot be read.
    if validate_topic_name(topic).is_ok() && !subscribe.allowed {
        assert!(!acl.check(username, client_id, topic, Access::Read).allowed, "{topic:?}");
    }
});
