//! MQTT topics and filters as NATS subjects and JetStream KV keys.
//!
//! Each MQTT level becomes one NATS token: letters, digits, `-` and `_` stay as they are, every other
//! byte of its UTF-8 becomes `=` and two upper-case hex digits, and an empty level becomes `=` alone.
//! So a token never contains what NATS forbids or gives a meaning (`.`, whitespace, `*`, `>`), no level
//! maps to the wildcards `*` and `>`, and distinct levels give distinct tokens (an escape is always three
//! characters, a lone `=` is only the empty level). `+` becomes `*`; `#` becomes `>` and also the subject
//! of its parent, since MQTT's `a/#` matches `a` [MQTT-4.7.1-2] and NATS's `a.>` does not.
//!
//! Topics starting with `$` live under their own root (`d`), the others under `t`: a filter starting
//! with a wildcard subscribes under `t` only, so it does not match `$` topics [MQTT-4.7.2-1]. With these
//! two rules a filter's subjects match exactly the subjects of the topics the filter matches.

use std::fmt::Write;

/// The NATS subject of a valid MQTT topic name under `prefix` (e.g. `mqttd.<cluster>.m`).
pub fn topic_subject(prefix: &str, topic: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + topic.len() + 8);
    subject.push_str(prefix);
    subject.push_str(if topic.starts_with('$') { ".d" } else { ".t" });
    for level in topic.split('/') {
        subject.push('.');
        push_token(&mut subject, level);
    }
    subject
}

/// The NATS subjects a valid MQTT topic filter subscribes to under `prefix`: one, or two when it ends
/// with `#` (the parent level, then every level below).
pub fn filter_subjects(prefix: &str, filter: &str) -> Vec<String> {
    let mut subject = String::with_capacity(prefix.len() + filter.len() + 8);
    subject.push_str(prefix);
    subject.push_str(if filter.starts_with('$') { ".d" } else { ".t" });
    for level in filter.split('/') {
        match level {
            "#" if subject.ends_with(".t") || subject.ends_with(".d") => {
                // `#` alone matches every topic of its root (each has at least one level).
                subject.push_str(".>");
                return vec![subject];
            }
            "#" => {
                let parent = subject.clone();
                subject.push_str(".>");
                return vec![parent, subject];
            }
            "+" => subject.push_str(".*"),
            _ => {
                subject.push('.');
                push_token(&mut subject, level);
            }
        }
    }
    vec![subject]
}

/// The JetStream KV key of a valid MQTT topic name: its tokens joined with `.`, `$` topics under `d`
/// and the others under `t` as for subjects (KV keys allow `-/_=.` and alphanumerics).
pub fn topic_key(topic: &str) -> String {
    let mut key = topic_subject("", topic);
    key.remove(0);
    key
}

/// The topic of a KV key made by [`topic_key`]; `None` for a key it cannot have made.
pub fn key_topic(key: &str) -> Option<String> {
    let mut tokens = key.split('.');
    let root = tokens.next()?;
    if root != "t" && root != "d" {
        return None;
    }
    let mut bytes = Vec::with_capacity(key.len());
    let mut first = true;
    for token in tokens {
        if !std::mem::take(&mut first) {
            bytes.push(b'/');
        }
        if token == "=" {
            continue;
        }
        let mut raw = token.bytes();
        while let Some(b) = raw.next() {
            match b {
                b'=' => {
                    let hex = [raw.next()?, raw.next()?];
                    let hex = std::str::from_utf8(&hex).ok()?;
                    bytes.push(u8::from_str_radix(hex, 16).ok()?);
                }
                b if plain(b) => bytes.push(b),
                _ => return None,
            }
        }
    }
    if first {
        return None;
    }
    let topic = String::from_utf8(bytes).ok()?;
    (topic.starts_with('$') == (root == "d")).then_some(topic)
}

/// A token for a queue group or a name: `text` escaped as one level.
pub fn token(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_token(&mut out, text);
    out
}

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn push_token(out: &mut String, level: &str) {
    if level.is_empty() {
        out.push('=');
        return;
    }
    for b in level.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "={b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// NATS subject matching: `*` is one token, `>` one or more trailing tokens.
    fn nats_matches(pattern: &str, subject: &str) -> bool {
        let mut p = pattern.split('.');
        let mut s = subject.split('.');
        loop {
            match (p.next(), s.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    #[test]
    fn levels_nats_forbids_are_escaped_and_empty_levels_kept() {
        assert_eq!(topic_subject("p", "a/b c/d.e"), "p.t.a.b=20c.d=2Ee");
        assert_eq!(topic_subject("p", "*/>/x"), "p.t.=2A.=3E.x");
        assert_eq!(topic_subject("p", "/a//"), "p.t.=.a.=.=");
        assert_eq!(topic_subject("p", "$SYS/x"), "p.d.=24SYS.x");
        assert_eq!(topic_subject("p", "é"), "p.t.=C3=A9");
    }

    #[test]
    fn wildcards_become_nats_wildcards_and_hash_also_matches_its_parent() {
        assert_eq!(filter_subjects("p", "a/+/c"), ["p.t.a.*.c"]);
        assert_eq!(filter_subjects("p", "a/#"), ["p.t.a", "p.t.a.>"]);
        assert_eq!(filter_subjects("p", "#"), ["p.t.>"]);
        assert_eq!(filter_subjects("p", "$SYS/#"), ["p.d.=24SYS", "p.d.=24SYS.>"]);
        assert_eq!(filter_subjects("p", "+"), ["p.t.*"]);
    }

    #[test]
    fn a_wildcard_filter_does_not_match_dollar_topics() {
        // [MQTT-4.7.2-1]
        let subject = topic_subject("p", "$SYS/broker");
        assert!(filter_subjects("p", "#").iter().all(|f| !nats_matches(f, &subject)));
        assert!(filter_subjects("p", "+/broker").iter().all(|f| !nats_matches(f, &subject)));
    }

    #[test]
    fn keys_give_back_their_topics() {
        for topic in ["a", "a/b", "/", "$SYS/x", "a b/.*>/=", "é/ü"] {
            assert_eq!(key_topic(&topic_key(topic)).as_deref(), Some(topic), "{topic}");
        }
        assert_eq!(key_topic("x.a"), None);
        assert_eq!(key_topic("t.=4"), None);
        assert_eq!(key_topic("t.=24a"), None, "a $ topic under t");
    }

    /// Levels drawn from an alphabet rich in what needs escaping.
    fn level() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-c0-9 .*>=$é_-]{0,4}").expect("a regex")
    }

    fn topic() -> impl Strategy<Value = String> {
        proptest::collection::vec(level(), 1..5).prop_map(|levels| levels.join("/"))
    }

    fn filter() -> impl Strategy<Value = String> {
        let level = prop_oneof![level(), Just("+".to_owned()), Just("a".to_owned())];
        (proptest::collection::vec(level, 1..5), any::<bool>()).prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#".into());
            }
            levels.join("/")
        })
    }

    proptest! {
        #[test]
        fn distinct_topics_have_distinct_subjects_and_keys(a in topic(), b in topic()) {
            prop_assume!(a != b);
            prop_assert_ne!(topic_subject("p", &a), topic_subject("p", &b));
            prop_assert_ne!(topic_key(&a), topic_key(&b));
            prop_assert_eq!(key_topic(&topic_key(&a)), Some(a));
        }

        #[test]
        fn subject_matching_agrees_with_mqtt_matching(f in filter(), t in topic()) {
            let mqtt = mqttd_proto::topic::matches(&f, &t);
            let subject = topic_subject("p", &t);
            let nats = filter_subjects("p", &f).iter().any(|s| nats_matches(s, &subject));
            prop_assert_eq!(mqtt, nats, "filter {:?} topic {:?} subject {:?}", f, t, subject);
        }

        #[test]
        fn subjects_hold_no_whitespace_and_no_empty_token(t in topic()) {
            let subject = topic_subject("p", &t);
            prop_assert!(!subject.contains(char::is_whitespace));
            prop_assert!(subject.split('.').all(|token| !token.is_empty() && token != "*" && token != ">"));
        }
    }
}
