//! Packet handlers of a connected client: one flat `match`, one function per packet. Refusals are
//! reason codes in acknowledgements; protocol violations end the connection with [`End::Protocol`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqttd_core::{Delivery, Message};
use mqttd_proto::{
    reason, Ack, Packet, PacketId, Properties, Publish, QoS, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe,
};

use crate::broker::Stats;
use crate::connection::{Client, End};

fn violation(what: &str, code: u8) -> End {
    End::Protocol(what.to_string(), code)
}

impl Client {
    pub(crate) fn handle(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(p) => self.publish(p),
            Packet::PubAck(a) => {
                let _ = self.session.state.lock().puback(a.packet_id);
                Ok(())
            }
            Packet::PubRec(a) => self.pubrec(a),
            Packet::PubRel(a) => self.pubrel(a),
            Packet::PubComp(a) => {
                let _ = self.session.state.lock().pubcomp(a.packet_id);
                Ok(())
            }
            Packet::Subscribe(s) => self.subscribe(s),
            Packet::Unsubscribe(u) => self.unsubscribe(u),
            Packet::PingReq => {
                self.io.queue(&Packet::PingResp, self.version);
                Ok(())
            }
            Packet::Disconnect(d) => self.disconnect(d),
            Packet::Connect(_) => Err(violation("second CONNECT [MQTT-3.1.0-2]", reason::PROTOCOL_ERROR)),
            Packet::Auth(_) => Err(violation("AUTH without enhanced authentication", reason::PROTOCOL_ERROR)),
            other => Err(End::Protocol(format!("{} is not sent by clients", other.name()), reason::PROTOCOL_ERROR)),
        }
    }

    fn ack(&mut self, packet: Packet) {
        self.io.queue(&packet, self.version);
    }

    fn reason_for_version(&self, code: u8) -> u8 {
        if self.version.is_v5() {
            code
        } else {
            reason::SUCCESS
        }
    }

    fn publish(&mut self, p: Publish) -> Result<(), End> {
        let s = &self.broker.settings;
        if p.qos as u8 > s.max_qos {
            return Err(violation("PUBLISH above the maximum QoS [MQTT-3.2.2-11]", reason::QOS_NOT_SUPPORTED));
        }
        if p.retain && !s.retain_available {
            return Err(violation(
                "retained PUBLISH while retain is unavailable [MQTT-3.2.2-14]",
                reason::RETAIN_NOT_SUPPORTED,
            ));
        }
        if p.properties.topic_alias.is_some() {
            // We announce Topic Alias Maximum 0 [MQTT-3.3.2-9].
            return Err(violation("topic alias while Topic Alias Maximum is 0", reason::TOPIC_ALIAS_INVALID));
        }
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(violation(
                "subscription identifier in a client PUBLISH [MQTT-3.3.4-6]",
                reason::PROTOCOL_ERROR,
            ));
        }
        Stats::add(&self.broker.stats.messages_received, 1);
        if p.qos == QoS::ExactlyOnce {
            let mut state = self.session.state.lock();
            if !state.receive_qos2(p.packet_id.expect("QoS 2 has a packet id")) {
                drop(state);
                // A resend of a message we already routed: acknowledge again only [MQTT-4.3.3-10].
                self.ack(Packet::PubRec(Ack::new(p.packet_id.expect("QoS 2 has a packet id"))));
                return Ok(());
            }
            // Only 5.0 clients were told our Receive Maximum; 3.1.1 has no such limit (ids bound it).
            if self.version.is_v5() && state.incoming_qos2() > usize::from(s.inflight_window()) {
                return Err(violation(
                    "more QoS 2 messages than Receive Maximum [MQTT-3.3.4-7]",
                    reason::RECEIVE_MAXIMUM_EXCEEDED,
                ));
            }
        }
        let (qos, packet_id) = (p.qos, p.packet_id);
        let code = self.route_publish(p);
        if matches!(code, reason::TOPIC_NAME_INVALID | reason::QUOTA_EXCEEDED)
            && (!self.version.is_v5() || qos == QoS::AtMostOnce)
        {
            // No acknowledgement can carry the refusal: 5.0 DISCONNECT with the code, 3.x closes.
            if let (QoS::ExactlyOnce, Some(id)) = (qos, packet_id) {
                // Not received: a resend after reconnecting is a new message, not a duplicate.
                self.session.state.lock().release_qos2(id);
            }
            let what = if code == reason::QUOTA_EXCEEDED { "memory_limit reached" } else { "topic too deep" };
            return Err(violation(what, code));
        }
        let code = self.reason_for_version(code);
        let ack = |id: Option<PacketId>| Ack {
            packet_id: id.expect("QoS 1/2 has a packet id"),
            reason: code,
            properties: Properties::default(),
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.ack(Packet::PubAck(ack(packet_id))),
            QoS::ExactlyOnce => {
                if code >= 0x80 {
                    // A refused QoS 2 message is not awaiting PUBREL.
                    self.session.state.lock().release_qos2(packet_id.expect("QoS 2 has a packet id"));
                }
                self.ack(Packet::PubRec(ack(packet_id)));
            }
        }
        Ok(())
    }

    /// Checks size, depth, memory and authorization, then routes. Returns the 5.0 reason code for the
    /// acknowledgement.
    fn route_publish(&mut self, p: Publish) -> u8 {
        let limit = self.broker.settings.message_size_limit;
        if limit > 0 && p.payload.len() > limit as usize {
            tracing::info!(client_id = %self.session.client_id, size = p.payload.len(), "message over message_size_limit dropped");
            return reason::PACKET_TOO_LARGE;
        }
        if self.broker.settings.too_deep(&p.topic) {
            let max = self.broker.settings.max_topic_levels;
            tracing::info!(client_id = %self.session.client_id, max, "publish refused: topic deeper than max_topic_levels");
            return reason::TOPIC_NAME_INVALID;
        }
        if self.broker.over_memory_limit() {
            let in_use = self.broker.memory_in_use();
            tracing::warn!(client_id = %self.session.client_id, in_use, "publish refused: memory_limit reached");
            return reason::QUOTA_EXCEEDED;
        }
        if !self.broker.may_write_session(&self.session, &p.topic) {
            tracing::info!(client_id = %self.session.client_id, topic = %p.topic, "publish denied");
            return reason::NOT_AUTHORIZED;
        }
        let expires_at =
            p.properties.message_expiry_interval.map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        let message = Message {
            topic: p.topic,
            payload: unpinned(p.payload),
            qos: p.qos,
            retain: p.retain,
            properties: Message::store_properties(p.properties),
            expires_at,
            origin: self.session.id,
        };
        let routed = self.broker.route(Arc::new(message));
        self.busy |= routed.busy;
        if self.congested.is_none() {
            self.congested = routed.congested;
        }
        if routed.reached == 0 {
            reason::NO_MATCHING_SUBSCRIBERS
        } else {
            reason::SUCCESS
        }
    }

    fn pubrec(&mut self, a: Ack) -> Result<(), End> {
        match self.session.state.lock().pubrec(a.packet_id, a.reason) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(_) if self.version.is_v5() => {
                let rel = Ack {
                    packet_id: a.packet_id,
                    reason: reason::PACKET_IDENTIFIER_NOT_FOUND,
                    properties: Properties::default(),
                };
                self.io.queue(&Packet::PubRel(rel), self.version);
                return Ok(());
            }
            Err(_) => {}
        }
        self.ack(Packet::PubRel(Ack::new(a.packet_id)));
        Ok(())
    }

    fn pubrel(&mut self, a: Ack) -> Result<(), End> {
        let known = self.session.state.lock().release_qos2(a.packet_id);
        let code = if known { reason::SUCCESS } else { self.reason_for_version(reason::PACKET_IDENTIFIER_NOT_FOUND) };
        self.ack(Packet::PubComp(Ack { packet_id: a.packet_id, reason: code, properties: Properties::default() }));
        Ok(())
    }

    fn subscribe(&mut self, s: Subscribe) -> Result<(), End> {
        if !s.properties.subscription_identifiers.is_empty() {
            return Err(violation(
                "subscription identifiers are not supported",
                reason::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
            ));
        }
        let max_qos = QoS::from_u8(self.broker.settings.max_qos).unwrap_or(QoS::ExactlyOnce);
        let v5 = self.version.is_v5();
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut retained_for = Vec::new();
        for (filter, mut options) in s.filters {
            if filter.starts_with("$share/") {
                reasons.push(if v5 { reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED } else { reason::v3::SUBACK_FAILURE });
                continue;
            }
            if self.broker.settings.too_deep(&filter) {
                let max = self.broker.settings.max_topic_levels;
                tracing::info!(client_id = %self.session.client_id, max, "subscription refused: filter deeper than max_topic_levels");
                reasons.push(if v5 { reason::TOPIC_FILTER_INVALID } else { reason::v3::SUBACK_FAILURE });
                continue;
            }
            if !v5 {
                options = mqttd_proto::SubscriptionOptions { qos: options.qos, ..Default::default() };
            }
            options.qos = options.qos.min(max_qos);
            if !self.may_subscribe(&filter) {
                tracing::info!(client_id = %self.session.client_id, %filter, "subscription denied by the ACL");
                reasons.push(if v5 { reason::NOT_AUTHORIZED } else { reason::v3::SUBACK_FAILURE });
                continue;
            }
            let is_new =
                self.broker.tree.write().subscribe(&filter, self.session.id, self.session.clone(), options, None);
            self.session.control.lock().subscriptions.insert(filter.clone(), options);
            reasons.push(options.qos as u8);
            let send = match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => is_new,
                RetainHandling::DoNotSend => false,
            };
            if send {
                retained_for.push((filter, options.qos));
            }
        }
        self.ack(Packet::SubAck(SubAck { packet_id: s.packet_id, reasons, properties: Properties::default() }));
        for (filter, granted) in retained_for {
            self.send_retained(&filter, granted);
        }
        Ok(())
    }

    /// Whether the ACL lets this client read anything through `filter`.
    fn may_subscribe(&self, filter: &str) -> bool {
        let id = self.session.identity();
        self.broker.security().get(usize::from(id.listener)).allows_subscribe(
            id.username.as_deref(),
            &id.client_id,
            filter,
        )
    }

    /// Retained messages matching a new subscription, with RETAIN set [MQTT-3.3.1-8], after the SUBACK.
    /// They wait in the connection's retained backlog, which `drain` feeds into the outbox as it empties:
    /// a `#` subscriber gets every one of a million retained messages, not the first `max_queued_messages`.
    fn send_retained(&mut self, filter: &str, granted: QoS) {
        let messages = self.broker.retained.read().matching(filter, Instant::now());
        let security = self.broker.security();
        for message in messages {
            if !self.broker.may_read_with(&security, &self.session, &message.topic) {
                continue;
            }
            let delivery = Delivery {
                qos: message.qos.min(granted),
                retain: true,
                message,
                subscription_ids: Vec::new(),
                shared_by: 1,
            };
            self.retained_backlog.get_or_insert_default().push_back(delivery);
        }
        // The connection's poll loop feeds the backlog into the outbox on its next turn.
    }

    fn unsubscribe(&mut self, u: Unsubscribe) -> Result<(), End> {
        let mut reasons = Vec::with_capacity(u.filters.len());
        for filter in &u.filters {
            let existed = self.broker.tree.write().unsubscribe(filter, self.session.id);
            self.session.control.lock().subscriptions.remove(filter);
            reasons.push(if existed { reason::SUCCESS } else { reason::NO_SUBSCRIPTION_EXISTED });
        }
        if !self.version.is_v5() {
            reasons.clear();
        }
        self.ack(Packet::UnsubAck(UnsubAck { packet_id: u.packet_id, reasons, properties: Properties::default() }));
        Ok(())
    }

    fn disconnect(&mut self, d: mqttd_proto::Disconnect) -> Result<(), End> {
        if let Some(seconds) = d.properties.session_expiry_interval {
            if self.connect_expiry == 0 && seconds != 0 {
                // [MQTT-3.14.2-2]
                return Err(violation("DISCONNECT sets a session expiry after CONNECT set 0", reason::PROTOCOL_ERROR));
            }
            self.expiry_override = Some(seconds);
        }
        Err(End::Disconnect { with_will: d.reason == reason::DISCONNECT_WITH_WILL_MESSAGE })
    }
}

/// A small payload is copied out of the read buffer it was sliced from: a queued 64-byte message must not
/// keep a whole read buffer alive. Large payloads stay zero-copy (they dominate their buffer anyway).
fn unpinned(payload: bytes::Bytes) -> bytes::Bytes {
    if payload.len() <= 2048 {
        bytes::Bytes::copy_from_slice(&payload)
    } else {
        payload
    }
}
