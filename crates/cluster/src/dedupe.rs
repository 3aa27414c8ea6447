//! Drops the second copy of a message: a node subscribed to overlapping filters (`a/+` and `a/#`) has
//! two NATS subscriptions that both match, and NATS delivers once per subscription. Each sender numbers
//! its messages; the receiver remembers, per sender, which of the last [`WINDOW`] numbers it has seen.
//! Copies of one message arrive back to back (one publisher, one receiving connection), far inside the
//! window.

use std::collections::HashMap;
use std::time::Instant;

use crate::envelope::Origin;

/// Sequence numbers remembered per sender.
pub const WINDOW: u64 = 4096;
const WORDS: usize = (WINDOW / 64) as usize;
/// Senders remembered before the quiet ones are forgotten (nodes restarted get new ids).
const SENDERS: usize = 256;

#[derive(Debug, Default)]
pub struct Dedupe {
    senders: HashMap<u64, Seen>,
}

#[derive(Debug)]
struct Seen {
    highest: u64,
    bits: [u64; WORDS],
    last: Instant,
}

impl Dedupe {
    /// Whether the message numbered `origin` is new (and remembers it).
    pub fn first(&mut self, origin: Origin) -> bool {
        if self.senders.len() >= SENDERS && !self.senders.contains_key(&origin.node) {
            let oldest = self.senders.iter().min_by_key(|(_, s)| s.last).map(|(node, _)| *node);
            self.senders.remove(&oldest.expect("a full map has an oldest"));
        }
        let seen =
            self.senders.entry(origin.node).or_insert(Seen { highest: 0, bits: [0; WORDS], last: Instant::now() });
        seen.last = Instant::now();
        let n = origin.sequence;
        if n + WINDOW <= seen.highest {
            // Older than the window: let it through rather than lose it.
            return true;
        }
        if n > seen.highest {
            // Forget the numbers that leave the window.
            let gap = (n - seen.highest).min(WINDOW);
            for k in 1..=gap {
                clear(&mut seen.bits, seen.highest + k);
            }
            seen.highest = n;
        }
        let (word, bit) = slot(n);
        let new = seen.bits[word] & bit == 0;
        seen.bits[word] |= bit;
        new
    }
}

fn slot(n: u64) -> (usize, u64) {
    let i = n % WINDOW;
    ((i / 64) as usize, 1 << (i % 64))
}

fn clear(bits: &mut [u64; WORDS], n: u64) {
    let (word, bit) = slot(n);
    bits[word] &= !bit;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(node: u64, sequence: u64) -> Origin {
        Origin { node, sequence }
    }

    #[test]
    fn the_second_copy_is_dropped_per_sender_even_out_of_order() {
        let mut d = Dedupe::default();
        assert!(d.first(o(1, 1)));
        assert!(d.first(o(1, 3)));
        assert!(d.first(o(1, 2)));
        assert!(!d.first(o(1, 1)));
        assert!(!d.first(o(1, 3)));
        assert!(d.first(o(2, 1)), "another sender");
        for n in 4..(3 * WINDOW) {
            assert!(d.first(o(1, n)));
            assert!(!d.first(o(1, n)));
        }
    }

    #[test]
    fn forgotten_senders_keep_the_map_bounded() {
        let mut d = Dedupe::default();
        for node in 0..(4 * SENDERS as u64) {
            d.first(o(node, 1));
        }
        assert!(d.senders.len() <= SENDERS);
    }
}
