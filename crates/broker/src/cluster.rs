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

    fn route_accepted(&self, message: Arc<Message>) {
        let _ = self.route(message);
    }

    fn session_moved(self: Arc<Self>, client_id: String) {
        let Some(session) = self.session(&client_id) else { return };
        // Only the connection attached now: one that attaches later has claimed the session back.
        let owner = session.control.lock().owner;
        tokio::spawn(async move {
            if owner != 0 && self.release_connection(&session, owner).await {
                tracing::warn!(%client_id, "the connection taken over did not end in time");
            }
            self.forget_session(&session);
            tracing::info!(%client_id, "session taken over by another node of the cluster");
        });
    }
}

impl Broker {
    /// In a cluster, takes `client_id` over from any other node before attaching (the other node ends
    /// its connection [MQTT-3.1.4-3]); a session the other node held is rebuilt here, disconnected, so
    /// that `attach` resumes it (Session Present, its subscriptions). Nothing without a cluster.
    pub(crate) async fn claim(self: &Arc<Self>, client_id: &str, clean_start: bool) {
        let Some(cluster) = self.cluster.get() else { return };
        let Some(record) = cluster.claim(client_id, clean_start).await else { return };
        // What this node still has of the client id is older than the other node's session.
        if !self.is_attached(client_id) {
            if let Some(session) = self.session(client_id) {
                self.forget_session(&session);
            }
        }
        if self.session(client_id).is_some() {
            return;
        }
        let stored = crate::store::StoredSession {
            client_id: record.client_id,
            username: record.username,
            listener: 0,
            expiry: record.expiry,
            disconnected_at_ms: record.disconnected_at_ms,
            // The will of the connection on the other node is that node's to publish, or the claimer's.
            will: None,
            subscriptions: record.subscriptions,
        };
        self.restore_session(&stored, Vec::new(), crate::store::now_ms());
        tracing::info!(%client_id, "session taken over from another node of the cluster");
    }

    /// Removes `client_id`'s session, which no connection is attached to, without its will or an end
    /// for the cluster: another node has it now.
    fn forget_session(&self, session: &Arc<crate::session::Session>) {
        let mut sessions = self.sessions.lock();
        if !sessions.get(&session.client_id).is_some_and(|s| Arc::ptr_eq(s, session)) {
            return;
        }
        {
            let mut ctl = session.control.lock();
            if ctl.owner != 0 {
                return;
            }
            // Delayed wills and expiry of this copy no longer apply.
            ctl.epoch += 1;
            ctl.pending_will = None;
        }
        sessions.remove(&session.client_id);
        drop(sessions);
        self.remove_subscriptions(session);
    }

    /// Ends connection `owner` of `session` as a takeover does (it handles what it had received, then
    /// DISCONNECT 0x8E [MQTT-3.1.4-3]) and waits for it to detach, at most `TAKEOVER_WAIT`; true if it did
    /// not end in time.
    async fn release_connection(&self, session: &crate::session::Session, owner: u64) -> bool {
        let deadline = tokio::time::Instant::now() + crate::session::TAKEOVER_WAIT;
        if session.connection.compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            session.wake();
        }
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if session.control.lock().owner != owner {
                return false;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return true;
            }
        }
    }

    /// The session as the cluster keeps it.
    pub(crate) fn share_session(&self, session: &crate::session::Session, disconnected_at_ms: u64) {
        let Some(cluster) = self.cluster.get() else { return };
        let ctl = session.control.lock();
        let record = mqttd_core::cluster::SessionRecord {
            client_id: session.client_id.to_string(),
            username: ctl.identity.username.as_deref().map(str::to_owned),
            expiry: match ctl.expiry {
                crate::session::Expiry::Immediate => 0,
                crate::session::Expiry::After(d) => u32::try_from(d.as_secs()).unwrap_or(u32::MAX - 1),
                crate::session::Expiry::Never => u32::MAX,
            },
            disconnected_at_ms,
            subscriptions: ctl.subscriptions.iter().map(|(f, (o, id))| (f.clone(), *o, *id)).collect(),
            will: ctl.will.as_deref().or(ctl.pending_will.as_deref()).cloned(),
        };
        drop(ctl);
        cluster.session_changed(record);
    }
}
