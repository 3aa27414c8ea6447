//! Following a KV bucket for as long as the node runs. A watch is a JetStream consumer on one NATS
//! server: when that server goes, the watch reports errors (missed heartbeats, its consumer gone) and may
//! not recover by itself. Then a new watch starts after the last revision applied, so no change is
//! missed or applied twice.

use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Store, Watch};
use futures_util::StreamExt;

/// Pause before watching again after a failure.
const AGAIN: Duration = Duration::from_millis(500);

/// Applies every change of `store` from `watch` on (`last`: the revision applied before it, 0 if none).
pub async fn follow(store: Store, mut watch: Watch, mut last: u64, what: &'static str, mut apply: impl FnMut(Entry)) {
    loop {
        while let Some(item) = watch.next().await {
            match item {
                Ok(entry) if entry.revision <= last => {}
                Ok(entry) => {
                    last = entry.revision;
                    apply(entry);
                }
                Err(e) => {
                    tracing::warn!("cluster: {what} watch failed ({e}): watching again after revision {last}");
                    break;
                }
            }
        }
        loop {
            tokio::time::sleep(AGAIN).await;
            let again = if last == 0 { store.watch_all().await } else { store.watch_all_from_revision(last + 1).await };
            match again {
                Ok(fresh) => {
                    watch = fresh;
                    break;
                }
                Err(e) => tracing::debug!("cluster: {what} watch not started again yet: {e}"),
            }
        }
    }
}
