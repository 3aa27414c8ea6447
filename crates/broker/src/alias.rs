//! Topic aliases of one 5.0 connection, both ways [MQTT-3.3.2.3.4]. Incoming: the client may use up to
//! our Topic Alias Maximum (`max_topic_alias`); an alias is set by a PUBLISH with a topic and used by one
//! with an empty topic. Outgoing: when the client's CONNECT allows aliases, each topic we send gets one;
//! afterwards the alias goes alone. When all are taken, the least recently used is given to the new topic.
//! Aliases live and die with the network connection [MQTT-3.3.2-7].

use std::collections::HashMap;

/// Why an incoming alias is refused (DISCONNECT 0x94 Topic Alias invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasError {
    /// 0, or above our Topic Alias Maximum [MQTT-3.3.2-8] [MQTT-3.3.2-9].
    OutOfRange(u16),
    /// An empty topic with an alias that was never set.
    Unknown(u16),
}

impl std::fmt::Display for AliasError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AliasError::OutOfRange(a) => write!(f, "topic alias {a} is 0 or above Topic Alias Maximum [MQTT-3.3.2-9]"),
            AliasError::Unknown(a) => write!(f, "topic alias {a} was never set on this connection"),
        }
    }
}

/// The aliases of one connection; in its boxed extras, absent until the first is used.
#[derive(Debug, Default)]
pub struct TopicAliases {
    /// Incoming: the topic of alias `i + 1`.
    incoming: Vec<Option<String>>,
    /// Outgoing: alias and last use of each topic sent with one.
    outgoing: HashMap<String, (u16, u64)>,
    /// The client's Topic Alias Maximum: how many outgoing aliases we may use.
    client_max: u16,
    /// Counts outgoing uses, for least-recently-used replacement.
    tick: u64,
}

impl TopicAliases {
    /// Aliases for a connection whose client accepts up to `client_max` of ours; `None` when there is
    /// nothing to keep yet (the incoming table is made on first use).
    pub fn for_client(client_max: u16) -> Option<TopicAliases> {
        (client_max > 0).then(|| TopicAliases { client_max, ..Default::default() })
    }

    /// Resolves an incoming PUBLISH's alias (at most `max`): a non-empty `topic` sets it, an empty one is
    /// replaced by the topic it stands for.
    pub fn incoming(&mut self, alias: u16, topic: &mut String, max: u16) -> Result<(), AliasError> {
        if alias == 0 || alias > max {
            return Err(AliasError::OutOfRange(alias));
        }
        let slot = usize::from(alias - 1);
        if topic.is_empty() {
            let known = self.incoming.get(slot).and_then(Option::as_ref).ok_or(AliasError::Unknown(alias))?;
            topic.clone_from(known);
            return Ok(());
        }
        if self.incoming.len() <= slot {
            self.incoming.resize(slot + 1, None);
        }
        self.incoming[slot] = Some(topic.clone());
        Ok(())
    }

    /// The alias to send `topic` with, and whether the client knows it already (then the topic is left
    /// out). `None` when the client takes no aliases.
    pub fn outgoing(&mut self, topic: &str) -> Option<(u16, bool)> {
        if self.client_max == 0 || topic.is_empty() {
            return None;
        }
        self.tick += 1;
        let tick = self.tick;
        if let Some((alias, used)) = self.outgoing.get_mut(topic) {
            *used = tick;
            return Some((*alias, true));
        }
        let alias = if self.outgoing.len() < usize::from(self.client_max) {
            self.outgoing.len() as u16 + 1
        } else {
            let oldest = self.outgoing.iter().min_by_key(|(_, (_, used))| *used).map(|(t, _)| t.clone())?;
            self.outgoing.remove(&oldest)?.0
        };
        self.outgoing.insert(topic.to_string(), (alias, tick));
        Some((alias, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incoming_alias_is_set_by_a_topic_and_used_by_an_empty_one() {
        let mut a = TopicAliases::default();
        let mut topic = "a/b".to_string();
        assert_eq!(a.incoming(3, &mut topic, 10), Ok(()));
        let mut empty = String::new();
        assert_eq!(a.incoming(3, &mut empty, 10), Ok(()));
        assert_eq!(empty, "a/b");
        assert_eq!(a.incoming(2, &mut String::new(), 10), Err(AliasError::Unknown(2)));
        assert_eq!(a.incoming(0, &mut topic, 10), Err(AliasError::OutOfRange(0)));
        assert_eq!(a.incoming(11, &mut topic, 10), Err(AliasError::OutOfRange(11)));
    }

    #[test]
    fn outgoing_aliases_replace_the_least_recently_used_when_all_are_taken() {
        let mut a = TopicAliases::for_client(2).expect("aliases allowed");
        assert_eq!(a.outgoing("x"), Some((1, false)));
        assert_eq!(a.outgoing("y"), Some((2, false)));
        assert_eq!(a.outgoing("x"), Some((1, true)));
        // y was used least recently: z takes its alias.
        assert_eq!(a.outgoing("z"), Some((2, false)));
        assert_eq!(a.outgoing("z"), Some((2, true)));
        assert_eq!(a.outgoing("x"), Some((1, true)));
        assert!(TopicAliases::for_client(0).is_none());
    }
}
