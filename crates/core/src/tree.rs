//! The subscription tree: topic filters by level, matched against a topic name by walking the levels.
//!
//! Matching allocates nothing but the result vector the caller passes in.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use mqttd_proto::SubscriptionOptions;

/// A subscription found by [`TopicTree::matches`].
#[derive(Debug, Clone)]
pub struct Match<S> {
    pub subscriber: S,
    pub options: SubscriptionOptions,
    pub subscription_id: Option<u32>,
}

#[derive(Debug)]
struct Entry<S> {
    key: u64,
    subscriber: S,
    options: SubscriptionOptions,
    subscription_id: Option<u32>,
}

#[derive(Debug)]
struct Node<S> {
    /// foldhash: seeded per process like SipHash, several times faster on short topic levels (SipHash
    /// was 4% of broker CPU in profiles).
    children: HashMap<Box<str>, Node<S>, RandomState>,
    /// Subscriptions whose filter ends at this level.
    here: Vec<Entry<S>>,
    /// Subscriptions whose filter ends with `#` after this level.
    multi: Vec<Entry<S>>,
}

impl<S> Default for Node<S> {
    fn default() -> Self {
        Node { children: HashMap::default(), here: Vec::new(), multi: Vec::new() }
    }
}

impl<S> Node<S> {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.here.is_empty() && self.multi.is_empty()
    }
}

/// Topic filters and their subscribers. `S` is the subscriber handle (cloned into results); `key`
/// identifies a subscriber so a second subscription to the same filter replaces the first [MQTT-3.8.4-3].
#[derive(Debug)]
pub struct TopicTree<S> {
    root: Node<S>,
    count: usize,
}

impl<S> Default for TopicTree<S> {
    fn default() -> Self {
        TopicTree { root: Node::default(), count: 0 }
    }
}

impl<S: Clone> TopicTree<S> {
    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds or replaces the subscription of `key` to `filter` (a valid filter). Returns true if it is new.
    pub fn subscribe(
        &mut self,
        filter: &str,
        key: u64,
        subscriber: S,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
    ) -> bool {
        let (node, multi) = self.node_for(filter);
        let list = if multi { &mut node.multi } else { &mut node.here };
        let entry = Entry { key, subscriber, options, subscription_id };
        if let Some(existing) = list.iter_mut().find(|e| e.key == key) {
            *existing = entry;
            false
        } else {
            list.push(entry);
            self.count += 1;
            true
        }
    }

    fn node_for(&mut self, filter: &str) -> (&mut Node<S>, bool) {
        let (path, multi) = split_filter(filter);
        let mut node = &mut self.root;
        for level in path.into_iter().flat_map(|p| p.split('/')) {
            node = node.children.entry(level.into()).or_default();
        }
        (node, multi)
    }

    /// Removes the subscription of `key` to `filter`. Returns true if it existed. Branches left empty are
    /// pruned. Iterative: the stack used does not grow with the filter's depth.
    pub fn unsubscribe(&mut self, filter: &str, key: u64) -> bool {
        let (path, multi) = split_filter(filter);
        let levels: Vec<&str> = path.map(|p| p.split('/').collect()).unwrap_or_default();
        // The deepest node on the path that must stay whatever is removed below it: it has other
        // children or subscriptions of its own (the root always stays).
        let mut keep = 0;
        let mut node = &self.root;
        for (depth, level) in levels.iter().enumerate() {
            if depth > 0 && (node.children.len() > 1 || !node.here.is_empty() || !node.multi.is_empty()) {
                keep = depth;
            }
            match node.children.get(*level) {
                Some(child) => node = child,
                None => return false,
            }
        }
        let leaf = self.node_mut(&levels);
        let list = if multi { &mut leaf.multi } else { &mut leaf.here };
        let before = list.len();
        list.retain(|e| e.key != key);
        if list.len() == before {
            return false;
        }
        let prune = leaf.is_empty() && !levels.is_empty();
        self.count -= 1;
        if prune {
            self.node_mut(&levels[..keep]).children.remove(levels[keep]);
        }
        true
    }

    /// The node at `levels`, which exists.
    fn node_mut(&mut self, levels: &[&str]) -> &mut Node<S> {
        let mut node = &mut self.root;
        for level in levels {
            node = node.children.get_mut(*level).expect("the path was walked before");
        }
        node
    }

    /// Appends every subscription matching `topic` to `out`. A topic starting with `$` is not matched by
    /// filters starting with a wildcard [MQTT-4.7.2-1]. Returns how many distinct filters matched: with
    /// at most one, no subscriber can appear twice in `out` (one subscription per filter and subscriber).
    pub fn matches(&self, topic: &str, out: &mut Vec<Match<S>>) -> usize {
        let dollar = topic.starts_with('$');
        let mut filters = 0;
        walk(&self.root, topic, dollar, &mut Found { out, filters: &mut filters });
        filters
    }
}

/// The levels of a filter before a trailing `#` (`None` for `#` alone), and whether it ends with `#`.
fn split_filter(filter: &str) -> (Option<&str>, bool) {
    match filter.strip_suffix('#') {
        Some("") => (None, true),
        Some(rest) => (Some(rest.strip_suffix('/').unwrap_or(rest)), true),
        None => (Some(filter), false),
    }
}

/// Where a walk puts what it finds.
struct Found<'a, S> {
    out: &'a mut Vec<Match<S>>,
    filters: &'a mut usize,
}

fn push<S: Clone>(list: &[Entry<S>], found: &mut Found<'_, S>) {
    if list.is_empty() {
        return;
    }
    *found.filters += 1;
    found.out.extend(list.iter().map(|e| Match {
        subscriber: e.subscriber.clone(),
        options: e.options,
        subscription_id: e.subscription_id,
    }));
}

/// Matches `topic` below the root, depth first with a stack of its own (no recursion: a deep topic
/// costs heap, not thread stack). At the first level wildcards do not match `$` topics.
fn walk<S: Clone>(root: &Node<S>, topic: &str, dollar: bool, out: &mut Found<'_, S>) {
    let mut stack: Vec<(&Node<S>, &str, bool)> = vec![(root, topic, true)];
    while let Some((node, topic, first)) = stack.pop() {
        let wild_ok = !(first && dollar);
        // `a/#` matches `a` too [MQTT-4.7.1-2]: the multi-level entries of this node match what is below
        // it, including nothing.
        if wild_ok {
            push(&node.multi, out);
        }
        let (level, rest) = match topic.split_once('/') {
            Some((l, r)) => (l, Some(r)),
            None => (topic, None),
        };
        let exact = node.children.get(level);
        let plus = if wild_ok { node.children.get("+") } else { None };
        for child in [exact, plus].into_iter().flatten() {
            match rest {
                Some(r) => stack.push((child, r, false)),
                None => {
                    push(&child.here, out);
                    push(&child.multi, out);
                }
            }
        }
    }
}

impl<S> Drop for Node<S> {
    /// Drops the branches below this node one node at a time: the default drop recurses once per level,
    /// which a filter of 65,535 levels turns into a stack overflow (Mosquitto's CVE-2019-11779).
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut stack: Vec<Node<S>> = self.children.drain().map(|(_, n)| n).collect();
        while let Some(mut node) = stack.pop() {
            stack.extend(node.children.drain().map(|(_, n)| n));
            // `node` drops here without children.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(filters: &[(&str, u64)]) -> TopicTree<u64> {
        let mut t = TopicTree::default();
        for &(f, k) in filters {
            t.subscribe(f, k, k, SubscriptionOptions::default(), None);
        }
        t
    }

    fn keys(t: &TopicTree<u64>, topic: &str) -> Vec<u64> {
        let mut out = Vec::new();
        t.matches(topic, &mut out);
        let mut k: Vec<u64> = out.into_iter().map(|m| m.subscriber).collect();
        k.sort();
        k
    }

    #[test]
    fn matching_agrees_with_the_reference_matcher() {
        let filters = ["#", "a/#", "a/+", "a/b", "+/b", "+/+", "a/b/#", "/+", "+", "a//c", "+/#", "$SYS/#"];
        let t = tree(&filters.iter().enumerate().map(|(i, f)| (*f, i as u64)).collect::<Vec<_>>());
        for topic in ["a", "a/b", "a/b/c", "/x", "x", "a//c", "b/b", "$SYS/x", "$SYS", "a/", "/"] {
            let expected: Vec<u64> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| mqttd_proto::topic::matches(f, topic))
                .map(|(i, _)| i as u64)
                .collect();
            assert_eq!(keys(&t, topic), expected, "topic {topic}");
        }
    }

    #[test]
    fn the_number_of_matching_filters_tells_when_a_subscriber_may_repeat() {
        let t = tree(&[("a/b", 1), ("a/b", 2), ("a/#", 1), ("x", 3)]);
        let mut out = Vec::new();
        assert_eq!(t.matches("a/b", &mut out), 2, "a/b and a/#");
        assert_eq!(out.len(), 3, "subscriber 1 twice, subscriber 2 once");
        out.clear();
        assert_eq!(t.matches("x", &mut out), 1);
        out.clear();
        assert_eq!(t.matches("nothing", &mut out), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn resubscribing_replaces_and_unsubscribe_prunes() {
        let mut t = tree(&[("a/b", 1), ("a/#", 1), ("#", 2)]);
        assert!(!t.subscribe("a/b", 1, 1, SubscriptionOptions::default(), None));
        assert_eq!(t.len(), 3);
        assert!(t.unsubscribe("a/b", 1));
        assert!(!t.unsubscribe("a/b", 1));
        assert!(t.unsubscribe("a/#", 1));
        assert!(t.unsubscribe("#", 2));
        assert!(t.is_empty());
        assert!(t.root.is_empty(), "empty branches are pruned");
    }

    #[test]
    fn a_filter_of_65535_levels_is_added_matched_removed_and_dropped_on_a_small_stack() {
        // A 64 KiB thread stack: anything recursing per level overflows it long before 65,535 levels.
        let run = || {
            let deep = "/".repeat(65_535);
            let mut t = tree(&[(&deep, 1), ("#", 2)]);
            let deep_plus = format!("{deep}+");
            t.subscribe(&deep_plus, 3, 3, SubscriptionOptions::default(), None);
            assert_eq!(keys(&t, &deep), vec![1, 2, 3]);
            assert_eq!(keys(&t, &"a/".repeat(30_000)), vec![2]);
            assert!(t.unsubscribe(&deep, 1));
            assert_eq!(keys(&t, &deep), vec![2, 3]);
            assert!(t.unsubscribe(&deep_plus, 3));
            assert!(t.root.children.is_empty(), "the whole branch is pruned");
            t.subscribe(&deep, 1, 1, SubscriptionOptions::default(), None);
            drop(t);
        };
        std::thread::Builder::new().stack_size(64 * 1024).spawn(run).unwrap().join().unwrap();
    }

    #[test]
    fn unsubscribing_prunes_only_the_branch_nobody_else_uses() {
        let mut t = tree(&[("a/b/c/d", 1), ("a/b", 2), ("a/x/y", 3)]);
        assert!(t.unsubscribe("a/b/c/d", 1));
        assert_eq!(keys(&t, "a/b"), vec![2]);
        assert_eq!(keys(&t, "a/x/y"), vec![3]);
        assert!(!t.root.children["a"].children["b"].children.contains_key("c"));
        assert!(!t.unsubscribe("a/b/c", 2), "a filter never subscribed");
        assert!(t.unsubscribe("a/b", 2));
        assert!(t.unsubscribe("a/x/y", 3));
        assert!(t.root.is_empty());
    }
}
