//! The broker's side of a cluster (`mqttd_core::cluster`): the hooks are called where the broker's state
//! changes (`Broker::route`, `subscribe`, `unsubscribe_filter`), and the cluster adapter calls back
//! through [`Node`]. Nothing here knows how nodes talk to each other (`mqttd-cluster` does, over NATS).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use mqttd_core::cluster::{ClusterHooks, Node};
use mqttd_core::Message;

use crate::broker::{Broker, Here};
use crate::shared::SharedFilter;

impl Broker {
    /// Makes this node part of a cluster (once, at startup, before any client connects); the
    /// subscriptions of sessions restored from the durable store are announced to it.
    pub fn set_cluster(&self, cluster: Arc<dyn ClusterHooks>) {
        if self.cluster.set(cluster.clone()).is_err() {
            return tracing::warn!("a cluster was already set: the second is ignored");
        }
        let sessions: Vec<_> = self.sessions.lock().values().cloned().collect();
        for session in sessions {
            let filters: Vec<String> = session.control.lock().subscriptions.keys().cloned().collect();
            for filter in filters {
                cluster.subscribed(&filter);
            }
        }
    }

    /// Whether this node is part of a cluster.
    pub fn clustered(&self) -> bool {
        self.cluster.get().is_some()
    }
}

impl Node for Broker {
    fn route_remote(&self, message: Arc<Message>) {
        let _ = self.route_here(message, Here::Subscriptions);
    }

    fn route_shared(&self, group: &str, filter: &str, message: Arc<Message>) {
        let shared = SharedFilter { share_name: group, filter };
        let security = self.read_security();
        let chosen = self.shared.route_group(shared, &message, self.settings.shared_strategy, |session| {
            security.as_ref().is_none_or(|s| self.may_read_with(s, session, &message.topic))
        });
        if let Some(chosen) = chosen {
            self.deliver(&chosen.session, chosen.delivery);
        }
    }

    fn set_retained(&self, topic: &str, message: Option<Arc<Message>>) {
        if !self.settings.retain_available {
            return;
        }
        let message = message.unwrap_or_else(|| {
            Arc::new(Message::new(topic.to_owned(), bytes::Bytes::new(), mqttd_proto::QoS::AtMostOnce, true, 0))
        });
        let mut retained = self.retained.write();
        retained.set(message.clone());
        self.retained_bytes.store(retained.bytes(), Ordering::Relaxed);
        drop(retained);
        self.persist_retained(&message);
    }
}
