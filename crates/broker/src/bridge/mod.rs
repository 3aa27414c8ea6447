//! Bridges (`connection` sections): each links this broker to another one, as Mosquitto's bridges do.
//!
//! A bridge is two things at once: a session in this broker (client id `local_clientid`) whose
//! subscriptions are the `out` topics, and a client of the remote broker (our `mqttd-client`, client id
//! `remote_clientid`) subscribed to the `in` topics. One task per bridge moves messages both ways
//! (`link.rs`); topics are remapped by their prefixes (`topics.rs`).
//!
//! - Loops: the local subscriptions have No Local, so what the bridge brings in never goes back out
//!   [MQTT-3.8.3-3]; towards the remote, 5.0 subscriptions carry No Local, 3.x ones rely on the bridge bit
//!   (`try_private`), which Mosquitto and mqttd answer by giving a bridge No Local and Retain As Published.
//! - Link loss: the local session stays; while the remote is unreachable its outbox keeps the QoS 1 and 2
//!   messages (bounded by `max_queued_messages`/`max_queued_bytes`, like any session's) and drops QoS 0
//!   unless `queue_qos0_messages`; unacknowledged ones are sent again with their packet id and DUP set
//!   when the link is back [MQTT-4.4.0-1].
//! - Notifications: `1`/`0`, retained, on the notification topic here and (unless
//!   `notifications_local_only`) on the remote, where the bridge's will publishes the `0`.
//! - Must not: block a runtime thread, or hold a session lock across an await.

mod link;
mod options;
mod topics;

use std::sync::Arc;
use std::time::Duration;

use crate::config::BridgeConfig;
use crate::Broker;

/// The running bridges; [`Bridges::shutdown`] ends them.
pub struct Bridges {
    /// One task per bridge, owned here so shutdown can wait for each to say goodbye to its remote.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Bridges {
    /// Starts every configured bridge (`start_type lazy` ones wait for their threshold).
    pub fn start(broker: &Arc<Broker>, configs: &[BridgeConfig]) -> Bridges {
        let tasks =
            configs.iter().map(|config| tokio::spawn(link::Link::new(broker.clone(), config.clone()).run())).collect();
        Bridges { tasks }
    }

    /// Waits for the bridges to end after `Broker::begin_shutdown` (each publishes its `0` notification
    /// and disconnects), at most `limit`; those still running then are stopped.
    pub async fn shutdown(self, limit: Duration) {
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(limit, task).await.is_err() {
                abort.abort();
            }
        }
    }
}
