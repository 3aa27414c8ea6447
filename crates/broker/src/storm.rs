//! Connection storms: while new connections keep arriving, the runtime thread stays awake a little before
//! it sleeps, and takes the connections that came meanwhile in one round.
//!
//! Every time a sleeping thread is woken, the waker pays (a wake-up; on a virtual machine an interrupt to
//! another core) and so does the woken. mqttd answers a CONNECT in about 10 us of CPU, so in a storm of
//! connections (every client coming back after a restart or a network failure) it is idle between most
//! of them and would be woken for nearly every one: measured on two cores shared with the load generator,
//! the wake-ups cost the connecting clients more than the broker's own work, and Mosquitto, busier per
//! connection, was woken less and accepted faster (bench/README.md). So during a storm the thread spins
//! for [`SPIN`] before it sleeps. Only accepts start a storm: messages between connected clients never
//! make the thread spin, so a broker that routes messages sleeps as soon as it is idle and a broker with no
//! new connections spends nothing on this. Go's scheduler spins before parking for the same reason.
//!
//! Installed by `mqttd` on its current-thread runtime (machines of up to two cores), the only one
//! measured; the storm is process-wide (one broker per process).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// How long after the last accept a storm is still on, in microseconds.
const STORM_US: u64 = 500;
/// How long the thread spins before it sleeps during a storm, in microseconds.
const SPIN_US: u64 = 100;

/// The clock both sides read: microseconds since the first reading.
fn now() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// When connections were last accepted, in [`now`]'s microseconds (0: never).
static LAST_ACCEPT: AtomicU64 = AtomicU64::new(0);

/// Called by the accept loops when they have taken new connections.
pub(crate) fn accepted() {
    LAST_ACCEPT.store(now().max(1), Ordering::Relaxed);
}

/// Until when a thread about to sleep at `now` spins, given the last accept (0: never); `None`: it does
/// not.
fn spin_until(now: u64, last_accept: u64) -> Option<u64> {
    (last_accept != 0 && now.saturating_sub(last_accept) < STORM_US).then_some(now + SPIN_US)
}

/// For the runtime's `on_thread_park`: during a connection storm, spins for [`SPIN_US`] (the thread then
/// finds what arrived meanwhile without having slept); otherwise returns at once.
pub fn before_park() {
    let Some(until) = spin_until(now(), LAST_ACCEPT.load(Ordering::Relaxed)) else { return };
    while now() < until {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_spins_only_within_the_storm_window_after_an_accept() {
        assert_eq!(spin_until(1_000, 0), None, "no accept yet");
        assert_eq!(spin_until(1_000, 1_000), Some(1_000 + SPIN_US));
        assert_eq!(spin_until(1_000 + STORM_US - 1, 1_000), Some(1_000 + STORM_US - 1 + SPIN_US));
        assert_eq!(spin_until(1_000 + STORM_US, 1_000), None, "the storm is over");
    }

    #[test]
    fn before_park_spins_after_an_accept() {
        // Tried a few times: a thread descheduled for longer than the storm between the two calls does
        // not spin, rightly.
        let spun = (0..10).any(|_| {
            accepted();
            let start = Instant::now();
            before_park();
            // Less one: both clocks round down to whole microseconds.
            start.elapsed().as_micros() as u64 >= SPIN_US - 1
        });
        assert!(spun, "before_park never spun after an accept");
    }
}
