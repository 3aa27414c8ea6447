//! The broker's side of a cluster (`mqttd_core::cluster`): the hooks are called where the broker's state
//! changes (`Broker::route`, `subscribe`, `unsubscribe_filter`), and the cluster adapter calls back
//! through [`Node`]. Nothing here knows how nodes talk to each other (`mqttd-cluster` does, over NATS).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use mqttd_core::cluster::{ClusterHooks, Node};
use mqttd_core::{ClientIdentity, Event, Expiry, Message, SessionSnapshot, Subscription, Time};

use crate::broker::{Broker, Here};
use crate::shared::SharedFilter;

impl Broker {
    /// Makes this node part of a cluster (once, at startup, before any client connects); the
    /// subscriptions of sessions restored from the durable store are announced to it.
    pub fn set_cluster(&self, cluster: Arc<dyn ClusterHooks>) {
        if self.cluster.set(cluster.clone()).is_err() {
            return tracing::warn!("a cluster was already set: the second is ignored");
        }
        let filters: Vec<String> = {
            let sessions = self.sessions.lock();
            sessions.registry.iter().flat_map(|(_, entry)| entry.subscriptions.keys().cloned()).collect()
        };
        for filter in filters {
            cluster.subscribed(&filter);
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
        let owner = self.sessions.lock().registry.owner(&client_id);
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
        let snapshot = SessionSnapshot {
            identity: ClientIdentity {
                client_id: Arc::from(record.client_id.as_str()),
                username: record.username.as_deref().map(Arc::from),
                listener: 0,
            },
            owner: 0,
            expiry: Expiry::from_v5(record.expiry),
            // The will of the connection on the other node is that node's to publish, or the claimer's.
            will: None,
            // Connected on the other node until now (0): its expiry counts from now, not from 1970.
            disconnected_at: Some(match record.disconnected_at_ms {
                0 => self.now(),
                at => Time::from_millis(at),
            }),
            subscriptions: record
                .subscriptions
                .into_iter()
                .map(|(filter, options, identifier)| (filter, Subscription { options, identifier }))
                .collect(),
        };
        // Not recorded nor shared: the session is the cluster's already; this node only holds it now.
        let entry = {
            let mut sessions = self.sessions.lock();
            sessions.registry.apply(&Event::SessionSnapshot(snapshot));
            sessions.registry.get(client_id).map(|e| e.without_handle())
        };
        let Some(entry) = entry else { return };
        // Its subscriptions go into the tree outside the `sessions` lock, as at a restore.
        let session = self.restored_session(&entry);
        match self.sessions.lock().registry.handle_mut(client_id) {
            Some(handle) if handle.is_none() => *handle = Some(session),
            _ => self.remove_subscriptions(&session, entry.subscriptions.into_keys().collect()),
        }
        tracing::info!(%client_id, "session taken over from another node of the cluster");
    }

    /// Removes `client_id`'s session, which no connection is attached to, without its will or an end
    /// for the cluster: another node has it now.
    fn forget_session(&self, session: &Arc<crate::session::Session>) {
        let mut sessions = self.sessions.lock();
        if !sessions.current(session) || sessions.registry.owner(&session.client_id) != 0 {
            return;
        }
        let filters: Vec<String> = sessions
            .registry
            .get(&session.client_id)
            .map(|entry| entry.subscriptions.keys().cloned().collect())
            .unwrap_or_default();
        // Gone from this node without an event: its delayed will and expiry are the other node's now.
        sessions.registry.apply(&Event::SessionEnded { client_id: session.client_id.clone(), at: self.now() });
        drop(sessions);
        self.remove_subscriptions(session, filters);
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
            if self.sessions.lock().registry.owner(&session.client_id) != owner {
                return false;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return true;
            }
        }
    }

    /// Tells the cluster what a recorded registry event changed: the session as it now stands, or its
    /// end. Called under the `sessions` lock, after the registry applied the event (the adapter only
    /// queues).
    pub(crate) fn share_event(&self, sessions: &crate::session::Sessions, event: &Event) {
        let Some(cluster) = self.cluster.get() else { return };
        let client_id = event.client_id();
        if let Event::SessionEnded { .. } = event {
            return cluster.session_ended(client_id);
        }
        let Some(entry) = sessions.registry.get(client_id) else { return };
        let record = mqttd_core::cluster::SessionRecord {
            client_id: client_id.to_string(),
            username: entry.identity.username.as_deref().map(str::to_owned),
            expiry: entry.expiry.as_v5(),
            disconnected_at_ms: entry.disconnected_at.map_or(0, Time::as_millis),
            subscriptions: entry
                .subscriptions
                .iter()
                .map(|(filter, s)| (filter.clone(), s.options, s.identifier))
                .collect(),
            will: entry.will.as_deref().cloned(),
        };
        cluster.session_changed(record);
    }
}
