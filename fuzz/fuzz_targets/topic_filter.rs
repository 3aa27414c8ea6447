//! Fuzzes topic validation and matching: no input panics, and matching agrees with validation's basics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mqttd_proto::topic::{matches, validate_topic_filter, validate_topic_name};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first NUL splits the input into a filter and a topic name; without one, both are the whole text.
    let (filter, topic) = text.split_once('\0').unwrap_or((text, text));
    let filter_ok = validate_topic_filter(filter).is_ok();
    let topic_ok = validate_topic_name(topic).is_ok();
    let matched = matches(filter, topic);
    if filter_ok && topic_ok {
        // A valid topic name has no wildcards, so as a filter it matches exactly itself.
        assert!(validate_topic_filter(topic).is_ok(), "valid name {topic:?} is not a valid filter");
        assert!(matches(topic, topic), "{topic:?} does not match itself");
        if filter == "#" && !topic.starts_with('$') {
            assert!(matched, "# does not match {topic:?}");
        }
    }
});
