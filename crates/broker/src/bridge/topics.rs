//! A bridge's topic remapping (Mosquitto `src/bridge_topic.c`): an outgoing message's local prefix is
//! replaced by the remote prefix, an incoming message's remote prefix by the local prefix. The first
//! `topic` line whose filter matches decides, in file order.

use mqttd_proto::{topic, QoS};

use crate::config::BridgeTopic;

/// Where an outgoing message goes on the remote broker: its topic there and the QoS of its `topic` line.
pub(crate) fn outgoing(topics: &[BridgeTopic], local: &str) -> Option<(String, QoS)> {
    let line = topics.iter().find(|t| t.is_out() && topic::matches(&t.local_topic(), local))?;
    let rest = local.strip_prefix(line.local_prefix.as_deref().unwrap_or(""))?;
    Some((format!("{}{rest}", line.remote_prefix.as_deref().unwrap_or("")), line.qos))
}

/// Where an incoming message goes on this broker: its topic here and the QoS of its `topic` line.
pub(crate) fn incoming(topics: &[BridgeTopic], remote: &str) -> Option<(String, QoS)> {
    let line = topics.iter().find(|t| t.is_in() && topic::matches(&t.remote_topic(), remote))?;
    let rest = remote.strip_prefix(line.remote_prefix.as_deref().unwrap_or(""))?;
    Some((format!("{}{rest}", line.local_prefix.as_deref().unwrap_or("")), line.qos))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn topics(lines: &str) -> Vec<BridgeTopic> {
        let text = format!("connection b\naddress h\n{lines}");
        let config = crate::config::Config::parse(&text, Path::new("t.conf")).expect("parses");
        config.bridges[0].topics.clone()
    }

    #[test]
    fn prefixes_are_swapped_both_ways_as_mosquittos_table_says() {
        let t = topics(
            "topic sensors/# out 1 local/ remote/\ntopic cmd/# in 2 \"\" site/\ntopic \"\" both 0 here/x there/y\n",
        );
        assert_eq!(outgoing(&t, "local/sensors/a"), Some(("remote/sensors/a".into(), QoS::AtLeastOnce)));
        assert_eq!(outgoing(&t, "sensors/a"), None, "outside the local prefix");
        assert_eq!(outgoing(&t, "cmd/a"), None, "an in topic is not sent out");
        assert_eq!(incoming(&t, "site/cmd/go"), Some(("cmd/go".into(), QoS::ExactlyOnce)));
        assert_eq!(incoming(&t, "remote/sensors/a"), None, "an out topic is not taken in");
        assert_eq!(outgoing(&t, "here/x"), Some(("there/y".into(), QoS::AtMostOnce)));
        assert_eq!(incoming(&t, "there/y"), Some(("here/x".into(), QoS::AtMostOnce)));
    }

    #[test]
    fn without_prefixes_topics_are_unchanged() {
        let t = topics("topic # both 2\n");
        assert_eq!(outgoing(&t, "a/b"), Some(("a/b".into(), QoS::ExactlyOnce)));
        assert_eq!(incoming(&t, "a/b"), Some(("a/b".into(), QoS::ExactlyOnce)));
    }
}
