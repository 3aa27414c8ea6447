//! Backpressure thresholds: how much memory queued for a subscriber slows its publishers down. `route`
//! (broker.rs) measures each subscriber's backlog against them; a publisher's connection yields or waits
//! (connection.rs `wait_for_drain`); a shared subscription prefers members below them (shared.rs).

/// Memory queued for an online subscriber (`SessionState::backlog`: entries plus their share of the
/// messages) above which its publishers yield before reading more.
pub const CONGESTED_BACKLOG: usize = 16 * 1024;
/// Memory queued for an online subscriber above which its publishers wait for it, whatever the configured
/// queue limits (`max_queued_messages 0` included): memory stays bounded under overload.
pub const WAIT_BACKLOG: usize = 2 * CONGESTED_BACKLOG;
/// Memory queued below which waiting publishers resume (hysteresis: they do not wake for every message).
pub const RELIEVED_BACKLOG: usize = CONGESTED_BACKLOG / 2;
