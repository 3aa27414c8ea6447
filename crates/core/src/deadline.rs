//! Time as an argument, and one queue of deadlines (will delays, session expiry) ordered by when they fall
//! due. Nothing here reads a clock: the caller says what time it is.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::Duration;

/// A moment, in milliseconds of the caller's clock. The broker's clock counts from the Unix epoch (so a
/// disconnection time survives a restart) and runs monotonically while the process lives; tests pass any
/// numbers they like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    pub const fn from_millis(ms: u64) -> Time {
        Time(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating at the end of time.
    pub fn after(self, d: Duration) -> Time {
        Time(self.0.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    }

    /// How long from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Where a deadline sits in its queue: when it falls due, and a sequence number that orders deadlines of
/// the same moment by insertion and tells them apart (never 0, so an `Option` of a key takes no more room).
pub type DeadlineKey = (Time, NonZeroU64);

/// Deadlines ordered by when they fall due, each carrying a `K` saying what falls due. One `BTreeMap`:
/// insert, remove and pop are `O(log n)`; the earliest is the first key.
#[derive(Debug, Clone)]
pub struct Deadlines<K> {
    queue: BTreeMap<DeadlineKey, K>,
    next: NonZeroU64,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines { queue: BTreeMap::new(), next: NonZeroU64::MIN }
    }
}

impl<K> Deadlines<K> {
    /// Adds a deadline at `at`; the key removes it again.
    pub fn insert(&mut self, at: Time, what: K) -> DeadlineKey {
        let key = (at, self.next);
        self.next = self.next.saturating_add(1);
        self.queue.insert(key, what);
        key
    }

    /// Removes a deadline (none if it fell due and was popped meanwhile).
    pub fn remove(&mut self, key: DeadlineKey) -> Option<K> {
        self.queue.remove(&key)
    }

    /// When the earliest deadline falls due.
    pub fn next(&self) -> Option<Time> {
        self.queue.first_key_value().map(|((at, _), _)| *at)
    }

    /// Takes the earliest deadline if it has fallen due by `now`.
    pub fn pop_due(&mut self, now: Time) -> Option<(Time, K)> {
        let entry = self.queue.first_entry().filter(|e| e.key().0 <= now)?;
        let ((at, _), what) = entry.remove_entry();
        Some((at, what))
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Every deadline, earliest first.
    pub fn iter(&self) -> impl Iterator<Item = (Time, &K)> {
        self.queue.iter().map(|((at, _), what)| (*at, what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_fall_due_in_time_order_and_removed_ones_never_do() {
        let mut d = Deadlines::default();
        let late = d.insert(Time::from_millis(30), "late");
        d.insert(Time::from_millis(10), "early");
        let gone = d.insert(Time::from_millis(20), "removed");
        d.insert(Time::from_millis(10), "early too");
        assert_eq!(d.remove(gone), Some("removed"));
        assert_eq!(d.next(), Some(Time::from_millis(10)));
        assert_eq!(d.pop_due(Time::from_millis(9)), None);
        assert_eq!(d.pop_due(Time::from_millis(25)).map(|(_, w)| w), Some("early"));
        assert_eq!(d.pop_due(Time::from_millis(25)).map(|(_, w)| w), Some("early too"));
        assert_eq!(d.pop_due(Time::from_millis(25)), None);
        assert_eq!(d.remove(late), Some("late"));
        assert!(d.is_empty());
    }
}
