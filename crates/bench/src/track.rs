//! Per-publisher delivery accounting: every sequence number seen once is a delivery, twice a duplicate,
//! below the highest seen so far a reordering.

/// What one subscriber saw of one publisher's messages.
#[derive(Debug, Default, Clone)]
pub(crate) struct Track {
    /// One bit per sequence number seen.
    seen: Vec<u64>,
    /// One past the highest sequence number seen.
    next: u32,
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl Track {
    pub fn record(&mut self, seq: u32) {
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if word >= self.seen.len() {
            let len = (word + 1).max(self.seen.len() * 2).max(1024);
            self.seen.resize(len, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        if seq < self.next {
            self.reordered += 1;
        } else {
            self.next = seq + 1;
        }
    }
}

/// Totals over all tracks.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl Tally {
    pub fn add(&mut self, track: &Track) {
        self.unique += track.unique;
        self.duplicates += track.duplicates;
        self.reordered += track.reordered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_messages_are_unique_and_not_reordered() {
        let mut t = Track::default();
        (0..1000).for_each(|s| t.record(s));
        assert_eq!((t.unique, t.duplicates, t.reordered), (1000, 0, 0));
    }

    #[test]
    fn a_repeated_sequence_number_is_a_duplicate_and_a_late_one_is_reordered() {
        let mut t = Track::default();
        for s in [0, 2, 1, 2, 5000, 3] {
            t.record(s);
        }
        assert_eq!((t.unique, t.duplicates, t.reordered), (5, 1, 2));
    }
}
