//! Retained messages: the last retained message per topic [MQTT-3.3.1-5].

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use foldhash::fast::RandomState;
use std::time::Instant;

use mqttd_proto::topic;

use crate::message::Message;

/// The retained message store.
#[derive(Debug, Default)]
pub struct Retained {
    /// foldhash, as the topic tree: a restart inserts every retained message at once.
    /// Keyed by each message's own topic: no copy of it (a restart inserts a million of them at once).
    messages: HashSet<ByTopic, RandomState>,
    /// Sum of [`Message::cost`] over `messages`.
    bytes: usize,
}

impl Retained {
    /// Stores `message` for its topic, replacing the previous one; an empty payload clears the topic
    /// [MQTT-3.3.1-6], [MQTT-3.3.1-7]. Returns true when the store changed.
    pub fn set(&mut self, message: Arc<Message>) -> bool {
        if message.payload.is_empty() {
            let old = self.messages.take(message.topic.as_str());
            self.bytes -= old.as_ref().map_or(0, |m| m.0.cost());
            old.is_some()
        } else {
            self.bytes += message.cost();
            let old = self.messages.replace(ByTopic(message));
            self.bytes -= old.map_or(0, |m| m.0.cost());
            true
        }
    }

    /// Makes room for `additional` more messages (a restart, which knows how many it brings back).
    pub fn reserve(&mut self, additional: usize) {
        self.messages.reserve(additional);
    }

    /// Bytes held by the retained messages (by [`Message::cost`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The retained messages matching `filter` that have not expired at `now`.
    pub fn matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        let wildcard = filter.contains(['+', '#']);
        if !wildcard {
            let found = self.messages.get(filter).map(|m| &m.0);
            return found.filter(|m| !m.expired(now)).cloned().into_iter().collect();
        }
        let matching = self.messages.iter().map(|m| &m.0);
        matching.filter(|m| topic::matches(filter, &m.topic) && !m.expired(now)).cloned().collect()
    }

    /// Payload bytes of the retained messages (`$SYS/broker/store/messages/bytes`).
    pub fn payload_bytes(&self) -> usize {
        self.messages.iter().map(|m| m.0.payload.len()).sum()
    }

    /// Drops expired messages; returns how many.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        let before = self.messages.len();
        let mut freed = 0;
        self.messages.retain(|m| {
            let keep = !m.0.expired(now);
            freed += if keep { 0 } else { m.0.cost() };
            keep
        });
        self.bytes -= freed;
        before - self.messages.len()
    }
}

/// A retained message in the set, equal to another and hashed as its topic (found by `&str`).
#[derive(Debug)]
struct ByTopic(Arc<Message>);

impl PartialEq for ByTopic {
    fn eq(&self, other: &Self) -> bool {
        self.0.topic == other.0.topic
    }
}

impl Eq for ByTopic {}

impl Hash for ByTopic {
    // As `str` hashes: `Borrow<str>` requires it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.topic.as_str().hash(state);
    }
}

impl Borrow<str> for ByTopic {
    fn borrow(&self) -> &str {
        &self.0.topic
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqttd_proto::QoS;
    use std::time::Duration;

    fn msg(topic: &str, payload: &'static [u8], expires_at: Option<Instant>) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: None,
            expires_at,
            origin: 0,
            stored: Default::default(),
        })
    }

    #[test]
    fn store_replace_and_clear() {
        let now = Instant::now();
        let mut r = Retained::default();
        assert!(r.set(msg("a/b", b"1", None)));
        assert!(r.set(msg("a/b", b"2", None)));
        assert_eq!(r.matching("a/+", now)[0].payload, Bytes::from_static(b"2"));
        assert_eq!(r.bytes(), msg("a/b", b"2", None).cost());
        assert!(r.set(msg("a/b", b"", None)));
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
        assert!(!r.set(msg("a/b", b"", None)));
    }

    #[test]
    fn expired_messages_are_not_sent() {
        let now = Instant::now();
        let mut r = Retained::default();
        r.set(msg("x", b"1", Some(now + Duration::from_secs(5))));
        r.set(msg("$SYS/y", b"1", None));
        assert_eq!(r.matching("#", now).len(), 1, "`#` does not match $SYS [MQTT-4.7.2-1]");
        assert!(r.matching("x", now + Duration::from_secs(6)).is_empty());
        assert_eq!(r.purge_expired(now + Duration::from_secs(6)), 1);
    }
}
