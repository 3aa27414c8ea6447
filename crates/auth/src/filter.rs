//! Relations between two topic filters, used to decide subscriptions.
//!
//! Both follow the matching rules of `mqttd_proto::topic::matches`, including that a filter starting
//! with a wildcard matches no topic starting with `$` [MQTT-4.7.2-1]. Inputs are valid filters.

fn starts_with_wildcard(filter: &str) -> bool {
    filter.starts_with(['+', '#'])
}

/// Whether some topic name is matched by both `a` and `b`.
pub(crate) fn intersects(a: &str, b: &str) -> bool {
    // The common topics would start with `$`, which a leading wildcard never matches.
    if (starts_with_wildcard(a) && b.starts_with('$')) || (starts_with_wildcard(b) && a.starts_with('$')) {
        return false;
    }
    let (mut a, mut b) = (a.split('/'), b.split('/'));
    loop {
        match (a.next(), b.next()) {
            // `#` matches the rest, including nothing at all ("x/#" matches "x").
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(x), Some(y)) if x == y => {}
            (Some(_), Some(_)) => return false,
        }
    }
}

/// Whether every topic name matched by `inner` is also matched by `outer`.
pub(crate) fn covers(outer: &str, inner: &str) -> bool {
    if starts_with_wildcard(outer) && inner.starts_with('$') {
        return false;
    }
    let (mut o, mut i) = (outer.split('/'), inner.split('/'));
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            // `inner` goes on to any depth here and `outer` does not.
            (_, Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(x), Some(y)) if x == y && y != "+" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqttd_proto::topic::matches;
    use proptest::prelude::*;

    #[test]
    fn intersection_examples() {
        assert!(intersects("#", "a/b"));
        assert!(intersects("a/+", "+/b"));
        assert!(intersects("a/#", "a"));
        assert!(intersects("+/+", "a/b"));
        assert!(!intersects("a/+", "b/+"));
        assert!(!intersects("a/b", "a/b/c"));
        assert!(!intersects("#", "$SYS/#"));
        assert!(!intersects("+/x", "$SYS/x"));
        assert!(intersects("$SYS/#", "$SYS/broker/+"));
    }

    #[test]
    fn coverage_examples() {
        assert!(covers("#", "a/b/#"));
        assert!(covers("a/#", "a"));
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("a/+", "a/+"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("a/+/#", "a/#"));
        assert!(!covers("#", "$SYS/#"));
        assert!(covers("$SYS/#", "$SYS/broker"));
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![Just("a".to_string()), Just("b".to_string()), Just("$s".to_string())]
    }

    fn filter() -> impl Strategy<Value = String> {
        let lvl = prop_oneof![4 => level(), 2 => Just("+".to_string())];
        (prop::collection::vec(lvl, 1..4), any::<bool>()).prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#".into());
            }
            levels.join("/")
        })
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
    }

    proptest! {
        /// A topic matched by both filters witnesses an intersection; coverage never lies.
        #[test]
        fn relations_agree_with_matching(a in filter(), b in filter(), t in topic()) {
            if matches(&a, &t) && matches(&b, &t) {
                prop_assert!(intersects(&a, &b));
            }
            if covers(&a, &b) && matches(&b, &t) {
                prop_assert!(matches(&a, &t));
            }
        }
    }
}
