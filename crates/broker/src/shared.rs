//! Shared subscriptions (`$share/{ShareName}/{filter}`, [MQTT-4.8.2]): groups of sessions that take
//! turns at the messages matching one filter. Each message goes to one member, chosen by the configured
//! [`Strategy`]; a member that cannot take it now (offline, or its queue backed up) is passed over while
//! another can. What a member's ending session had not delivered goes to another member.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use mqttd_core::{Delivery, Match, Message, TopicTree};
use mqttd_proto::SubscriptionOptions;
use parking_lot::{Mutex, RwLock};

use crate::session::Session;

/// How a group picks the member that gets a message (EMQX's names, `shared_subscription_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Each member in turn.
    #[default]
    RoundRobin,
    Random,
    /// The same member until it cannot take messages any more.
    Sticky,
    /// By the publishing session: one publisher's messages go to one member.
    HashClientId,
    /// By topic: one topic's messages go to one member.
    HashTopic,
}

impl Strategy {
    /// The strategy of a directive value.
    pub fn parse(value: &str) -> Option<Strategy> {
        Some(match value {
            "round_robin" => Strategy::RoundRobin,
            "random" => Strategy::Random,
            "sticky" => Strategy::Sticky,
            "hash_clientid" => Strategy::HashClientId,
            "hash_topic" => Strategy::HashTopic,
            _ => return None,
        })
    }

    /// The accepted directive values.
    pub const NAMES: &'static str = "round_robin, random, sticky, hash_clientid, hash_topic";
}

/// A shared subscription filter split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub share_name: &'a str,
    pub filter: &'a str,
}

impl<'a> SharedFilter<'a> {
    /// `Some(Ok)` for a well-formed `$share/{ShareName}/{filter}`, `Some(Err)` for a malformed one (no
    /// share name, a wildcard in it, no filter [MQTT-4.8.2-1] [MQTT-4.8.2-2]), `None` for a filter that is
    /// not shared.
    pub fn parse(filter: &'a str) -> Option<Result<SharedFilter<'a>, &'static str>> {
        let rest = filter.strip_prefix("$share/")?;
        let Some((share_name, filter)) = rest.split_once('/') else {
            return Some(Err("a shared subscription needs a share name and a filter [MQTT-4.8.2-2]"));
        };
        if share_name.is_empty() || share_name.contains(['+', '#']) {
            return Some(Err("a share name is at least one character without wildcards [MQTT-4.8.2-1]"));
        }
        if filter.is_empty() {
            return Some(Err("a shared subscription needs a filter after the share name [MQTT-4.8.2-2]"));
        }
        Some(Ok(SharedFilter { share_name, filter }))
    }
}

/// One member of a group: a session and the options of its shared subscription.
#[derive(Debug, Clone)]
struct Member {
    session: Arc<Session>,
    options: SubscriptionOptions,
    subscription_id: Option<u32>,
}

/// The sessions subscribed to one `$share/{name}/{filter}`.
#[derive(Debug)]
pub struct Group {
    id: u32,
    /// Members in subscription order; locked briefly by routing and (un)subscribes.
    members: Mutex<Vec<Member>>,
    /// Round robin's next member; sticky's current one.
    cursor: AtomicUsize,
    /// Random's state (xorshift).
    random: AtomicU64,
}

/// Every shared subscription group of a broker.
#[derive(Debug, Default)]
pub struct SharedSubscriptions {
    /// Groups by filter, for matching; the tree key is the group id.
    tree: RwLock<TopicTree<Arc<Group>>>,
    /// Groups by (share name, filter) and by id; changed only by (un)subscribes.
    groups: Mutex<Groups>,
    next_id: AtomicU32,
    /// Members over all groups.
    count: AtomicUsize,
}

#[derive(Debug, Default)]
struct Groups {
    by_name: HashMap<(Box<str>, Box<str>), Arc<Group>>,
    by_id: HashMap<u32, Arc<Group>>,
}

/// How a group chose a member for one message.
pub struct Chosen {
    pub session: Arc<Session>,
    pub delivery: Delivery,
}

impl SharedSubscriptions {
    /// Adds `session` to the group of `shared` (or replaces its options there). True if it is new.
    pub fn subscribe(
        &self,
        shared: SharedFilter<'_>,
        session: &Arc<Session>,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
    ) -> bool {
        let mut groups = self.groups.lock();
        let key = (Box::from(shared.share_name), Box::from(shared.filter));
        let group = match groups.by_name.get(&key) {
            Some(g) => g.clone(),
            None => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
                let group = Arc::new(Group {
                    id,
                    members: Mutex::new(Vec::new()),
                    cursor: AtomicUsize::new(0),
                    random: AtomicU64::new(0x9E37_79B9_7F4A_7C15 ^ u64::from(id)),
                });
                self.tree.write().subscribe(shared.filter, u64::from(id), group.clone(), options, None);
                groups.by_id.insert(id, group.clone());
                groups.by_name.insert(key, group.clone());
                group
            }
        };
        let mut members = group.members.lock();
        let member = Member { session: session.clone(), options, subscription_id };
        match members.iter_mut().find(|m| m.session.id == session.id) {
            Some(existing) => {
                *existing = member;
                false
            }
            None => {
                members.push(member);
                self.count.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    /// Removes `session` from the group of `shared`; the group goes when its last member does. True if
    /// it was a member.
    pub fn unsubscribe(&self, shared: SharedFilter<'_>, session_id: u64) -> bool {
        let mut groups = self.groups.lock();
        let key = (Box::from(shared.share_name), Box::from(shared.filter));
        let Some(group) = groups.by_name.get(&key).cloned() else { return false };
        let mut members = group.members.lock();
        let before = members.len();
        members.retain(|m| m.session.id != session_id);
        let removed = members.len() < before;
        if removed {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        if members.is_empty() {
            drop(members);
            self.tree.write().unsubscribe(shared.filter, u64::from(group.id));
            groups.by_name.remove(&key);
            groups.by_id.remove(&group.id);
        }
        removed
    }

    /// Shared subscriptions (members) in all groups.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For each group whose filter matches the message's topic, the member that gets it and the delivery.
    /// `may_read`: whether a session may read the topic (ACL).
    pub fn route(
        &self,
        message: &Arc<Message>,
        strategy: Strategy,
        may_read: impl Fn(&Session) -> bool,
    ) -> Vec<Chosen> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut matches: Vec<Match<Arc<Group>>> = Vec::new();
        self.tree.read().matches(&message.topic, &mut matches);
        matches
            .iter()
            .filter_map(|m| {
                let group = &m.subscriber;
                let member = group.pick(strategy, message, &may_read, None)?;
                Some(member.deliver(group.id, message.clone()))
            })
            .collect()
    }

    /// The member of the group `shared` that gets a message the cluster chose this node for (no
    /// matching: the cluster matched the group's filter); `None` when the group has no member here.
    pub fn route_group(
        &self,
        shared: SharedFilter<'_>,
        message: &Arc<Message>,
        strategy: Strategy,
        may_read: impl Fn(&Session) -> bool,
    ) -> Option<Chosen> {
        let key = (Box::from(shared.share_name), Box::from(shared.filter));
        let group = self.groups.lock().by_name.get(&key).cloned()?;
        let member = group.pick(strategy, message, &may_read, None)?;
        Some(member.deliver(group.id, message.clone()))
    }

    /// The member of group `delivery.group` other than `leaving` that takes over a delivery a leaving
    /// member did not complete [MQTT-4.8.2-6]; `None` when the group has no other member.
    pub fn reassign(&self, delivery: Delivery, leaving: u64, strategy: Strategy) -> Option<Chosen> {
        let group = self.groups.lock().by_id.get(&delivery.group).cloned()?;
        let member = group.pick(strategy, &delivery.message, |_| true, Some(leaving))?;
        Some(member.deliver(group.id, delivery.message))
    }
}

impl Member {
    fn deliver(&self, group: u32, message: Arc<Message>) -> Chosen {
        let delivery = Delivery {
            qos: self.options.qos.min(message.qos),
            // Retain As Published applies as for any subscription [MQTT-3.3.1-12].
            retain: self.options.retain_as_published && message.retain,
            subscription_ids: self.subscription_id.into_iter().collect(),
            shared_by: 1,
            group,
            message,
        };
        Chosen { session: self.session.clone(), delivery }
    }
}

impl Group {
    /// The member that gets a message: the strategy's choice, unless it cannot take the message now
    /// while another can. In order of preference: online and not backed up (its queue holds less than
    /// `CONGESTED_BACKLOG` and is not nearly full), not nearly full (also offline), any member.
    fn pick(
        &self,
        strategy: Strategy,
        message: &Message,
        allowed: impl Fn(&Session) -> bool,
        except: Option<u64>,
    ) -> Option<Member> {
        let members = self.members.lock();
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = match strategy {
            Strategy::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed),
            Strategy::Random => self.next_random() as usize,
            Strategy::Sticky => self.cursor.load(Ordering::Relaxed),
            Strategy::HashClientId => hash(message.origin) as usize,
            Strategy::HashTopic => hash(&message.topic) as usize,
        } % n;
        let ready = |m: &Member, pass: u8| {
            if except == Some(m.session.id) || !allowed(&m.session) {
                return false;
            }
            let state = m.session.state.lock();
            match pass {
                0 => state.online && !state.nearly_full() && state.backlog() <= crate::backpressure::CONGESTED_BACKLOG,
                1 => !state.nearly_full(),
                _ => true,
            }
        };
        for pass in 0..3 {
            for k in 0..n {
                let at = (start + k) % n;
                if ready(&members[at], pass) {
                    if strategy == Strategy::Sticky {
                        self.cursor.store(at, Ordering::Relaxed);
                    }
                    return Some(members[at].clone());
                }
            }
        }
        None
    }

    fn next_random(&self) -> u64 {
        let mut x = self.random.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.store(x, Ordering::Relaxed);
        x
    }
}

fn hash(value: impl Hash) -> u64 {
    static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    SEED.get_or_init(Default::default).hash_one(value)
}
