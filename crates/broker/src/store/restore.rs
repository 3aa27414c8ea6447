//! What the broker's side of the store (`persist.rs`) shares with the session code that restores sessions.

use std::time::Duration;

use super::StoredSession;
use crate::session::Expiry;

/// How long a stored session has left: its expiry counted from its disconnection (or from now if it was
/// connected when the broker stopped).
pub(crate) fn remaining_expiry(stored: &StoredSession, now_ms: u64) -> Expiry {
    match stored.expiry {
        0 => Expiry::Immediate,
        u32::MAX => Expiry::Never,
        s => {
            let since = match stored.disconnected_at_ms {
                0 => 0,
                at => now_ms.saturating_sub(at),
            };
            let total = u64::from(s) * 1000;
            Expiry::After(Duration::from_millis(total.saturating_sub(since).max(1)))
        }
    }
}
