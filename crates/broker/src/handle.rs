//! A connected client as the server sees it ([`Client`]: its session, what CONNECT negotiated) and its
//! packet handlers: one flat `match`, one function per packet. Refusals are reason codes in
//! acknowledgements; protocol violations end the connection with [`End::Protocol`]. Answers go into the
//! connection's transport, which each handler is given.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqttd_core::{AckError, Delivery, Message, SessionState};
use mqttd_proto::{
    encoded_len, reason, Ack, Limits, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, RetainHandling,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};

use crate::broker::{Broker, Stats};
use crate::end::End;
use crate::session::Session;
use crate::shared::SharedFilter;
use crate::transport::Transport;
use crate::violation::ProtocolViolation;

/// What CONNECT negotiated, for the connection's lifetime: kept alike while it runs ([`Client`]) and
/// while it is parked (`asleep.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Negotiated {
    pub version: ProtocolVersion,
    pub limits: Limits,
    /// Negotiated keep-alive in seconds; zero disables it.
    pub keep_alive: u16,
    /// The client's Receive Maximum: our outgoing QoS 1/2 window.
    pub send_window: u16,
    /// The client's Maximum Packet Size (5.0); never 0 [MQTT-3.1.2-24], so the option costs nothing.
    pub client_max_packet: Option<std::num::NonZeroU32>,
    /// Session Expiry Interval from CONNECT (5.0), to validate the one in DISCONNECT.
    pub connect_expiry: u32,
    /// CONNECT carried the bridge bit (Mosquitto's `try_private`): its 3.x subscriptions get No Local
    /// and Retain As Published, as Mosquitto gives a bridge's.
    pub bridge: bool,
}

/// A connected client as the server sees it: its session and what CONNECT negotiated, and the packet
/// handlers. Its bytes are the connection's ([`crate::connection::Connection`]), passed to each handler.
pub(crate) struct Client {
    pub broker: Arc<Broker>,
    pub session: Arc<Session>,
    pub connection_id: u64,
    /// What CONNECT negotiated.
    pub negotiated: Negotiated,
    /// Expiry set by a 5.0 DISCONNECT.
    pub expiry_override: Option<u32>,
    /// Retained messages owed to new subscriptions, fed into the outbox as it empties.
    /// Boxed: most connections never have one, and every idle connection would carry an empty `VecDeque`.
    #[allow(clippy::box_collection)]
    pub retained_backlog: Option<Box<std::collections::VecDeque<mqttd_core::Delivery>>>,
    /// A subscriber with a full queue, still reading, that a message this client published went to.
    pub congested: Option<Arc<Session>>,
    /// A subscriber this client publishes to has a long queue: yield before reading more.
    pub busy: bool,
    /// Bytes in the read buffer not yet decoded (decoding stopped to wait for a congested subscriber).
    pub undecoded: bool,
    /// What few connections need, boxed and absent until needed.
    pub extras: Option<Box<Extras>>,
}

/// The parts of a connection most connections never use.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    /// Topic aliases both ways (5.0).
    pub aliases: Option<crate::alias::TopicAliases>,
    /// Answers waiting for the durable store (`persistence true`): each goes out, in order, once the
    /// store's durable position passes its own (a PUBACK once the message is on disk).
    pub held: std::collections::VecDeque<(u64, Packet)>,
    /// The 5.0 client sent Request Problem Information 0: no Reason Strings on acknowledgements
    /// [MQTT-3.1.2-29].
    pub no_problem_info: bool,
}

impl Client {
    /// Whether Reason Strings may go with acknowledgements that refuse (5.0 Request Problem Information,
    /// 1 unless the client says 0) [MQTT-3.1.2-29].
    pub(crate) fn problem_info(&self) -> bool {
        !self.extras.as_ref().is_some_and(|e| e.no_problem_info)
    }

    /// Whether answers wait for the durable store.
    pub(crate) fn holds_answers(&self) -> bool {
        self.extras.as_ref().is_some_and(|e| !e.held.is_empty())
    }

    /// Sends `packet` once the store's durable position reaches `durable` (0: at once), after every
    /// answer held before it.
    pub(crate) fn send_after(&mut self, io: &mut Transport, packet: Packet, durable: u64) {
        let ready = self.broker.store().is_none_or(|s| s.durable() >= durable);
        if ready && !self.holds_answers() {
            return io.queue(&packet, self.negotiated.version);
        }
        let held = &mut self.extras.get_or_insert_with(Default::default).held;
        let after = held.back().map_or(0, |(p, _)| *p).max(durable);
        held.push_back((after, packet));
    }
}

fn violation(v: ProtocolViolation) -> End {
    End::Protocol(v)
}

impl Client {
    pub(crate) fn handle(&mut self, packet: Packet, io: &mut Transport) -> Result<(), End> {
        Stats::add(&self.broker.stats.packets_received, 1);
        crate::trace::received(&self.session.client_id, &packet);
        match packet {
            Packet::Publish(p) => self.publish(p, io),
            Packet::PubAck(a) => {
                self.check_reason("PUBACK", reason::fits_puback(a.reason))?;
                self.complete("PUBACK", a.packet_id, SessionState::puback)
            }
            Packet::PubRec(a) => self.pubrec(a, io),
            Packet::PubRel(a) => self.pubrel(a, io),
            Packet::PubComp(a) => {
                self.check_reason("PUBCOMP", reason::fits_pubrel(a.reason))?;
                self.complete("PUBCOMP", a.packet_id, SessionState::pubcomp)
            }
            Packet::Subscribe(s) => self.subscribe(s, io),
            Packet::Unsubscribe(u) => self.unsubscribe(u, io),
            Packet::PingReq => self.ack(io, Packet::PingResp),
            Packet::Disconnect(d) => self.disconnect(d),
            Packet::Connect(_) => Err(violation(ProtocolViolation::SecondConnect)),
            Packet::Auth(_) => Err(violation(ProtocolViolation::AuthWithoutMethod)),
            other => Err(violation(ProtocolViolation::NotSentByClients(other.name()))),
        }
    }

    /// A PUBACK or PUBCOMP: the delivery with this packet id is complete (`finish` checks its flow), and
    /// so is its stored message for this session.
    fn complete(
        &mut self,
        name: &'static str,
        packet_id: PacketId,
        finish: fn(&mut SessionState, PacketId) -> Result<(), AckError>,
    ) -> Result<(), End> {
        let mut state = self.session.state.lock();
        let stored = state.inflight_stored(packet_id).filter(|_| state.durable);
        let done = finish(&mut state, packet_id);
        drop(state);
        if done.is_ok() {
            self.broker.persist_ack(&self.session, stored);
        }
        flow_of(name, done)
    }

    fn ack(&mut self, io: &mut Transport, packet: Packet) -> Result<(), End> {
        self.ack_after(io, packet, 0)
    }

    /// [`Client::ack`] once the durable store has reached `durable` (what the packet confirms is stored).
    fn ack_after(&mut self, io: &mut Transport, packet: Packet, durable: u64) -> Result<(), End> {
        if let Some(max) = self.negotiated.client_max_packet.map(std::num::NonZeroU32::get) {
            let size = encoded_len(&packet, self.negotiated.version);
            if size > max as usize {
                return Err(violation(ProtocolViolation::OverClientMaximum {
                    packet: packet.name(),
                    size: u32::try_from(size).unwrap_or(u32::MAX),
                    max,
                }));
            }
        }
        Stats::add(&self.broker.stats.packets_sent, 1);
        crate::trace::sent(&self.session.client_id, &packet);
        self.send_after(io, packet, durable);
        Ok(())
    }

    /// A 5.0 acknowledgement must carry a reason code its packet may carry; 3.x ones carry none.
    fn check_reason(&self, packet: &'static str, fits: bool) -> Result<(), End> {
        if fits || !self.negotiated.version.is_v5() {
            return Ok(());
        }
        Err(violation(ProtocolViolation::ReasonCodeNotAllowed(packet)))
    }

    /// Properties of an acknowledgement with reason `code`: a Reason String naming a refusal (>= 0x80)
    /// when the client allows them (5.0 Request Problem Information), none otherwise [MQTT-3.1.2-29].
    fn problem(&self, code: u8) -> Properties {
        let mut properties = Properties::default();
        if code >= 0x80 && self.problem_info() && self.negotiated.version.is_v5() {
            properties.reason_string = Some(reason::name(code).to_owned());
        }
        properties
    }

    fn reason_for_version(&self, code: u8) -> u8 {
        if self.negotiated.version.is_v5() {
            code
        } else {
            reason::SUCCESS
        }
    }

    fn publish(&mut self, mut p: Publish, io: &mut Transport) -> Result<(), End> {
        let s = &self.broker.settings;
        if p.qos as u8 > s.max_qos(io.listener) {
            return Err(violation(ProtocolViolation::QosNotSupported));
        }
        if p.retain && !s.retain_available {
            return Err(violation(ProtocolViolation::RetainNotSupported));
        }
        if let Some(alias) = p.properties.topic_alias.take() {
            let max = s.max_topic_alias;
            let extras = self.extras.get_or_insert_with(Default::default);
            let aliases = extras.aliases.get_or_insert_with(Default::default);
            if let Err(e) = aliases.incoming(alias, &mut p.topic, max) {
                return Err(violation(ProtocolViolation::TopicAlias(e)));
            }
        }
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(violation(ProtocolViolation::SubscriptionIdInPublish));
        }
        Stats::add(&self.broker.stats.messages_received, 1);
        Stats::add(&self.broker.stats.publish_bytes_received, p.payload.len() as u64);

        self.broker.counters.received(p.qos, p.payload.len());
        let mut received = 0;
        if p.qos == QoS::ExactlyOnce {
            let mut state = self.session.state.lock();
            if !state.receive_qos2(p.packet_id.expect("QoS 2 has a packet id")) {
                drop(state);
                // A resend of a message we already routed: acknowledge again only [MQTT-4.3.3-10].
                return self.ack(io, Packet::PubRec(Ack::new(p.packet_id.expect("QoS 2 has a packet id"))));
            }
            // Only 5.0 clients were told our Receive Maximum; 3.1.1 has no such limit (ids bound it).
            if self.negotiated.version.is_v5() && state.incoming_qos2() > usize::from(s.inflight_window()) {
                return Err(violation(ProtocolViolation::ReceiveMaximumExceeded));
            }
            if state.durable {
                // Its PUBREC waits for this too: a resend after a restart is recognised.
                received = self.broker.persist_incoming(&self.session, p.packet_id.expect("QoS 2"), true);
            }
        }
        let (qos, packet_id) = (p.qos, p.packet_id);
        let (code, durable) = self.route_publish(p, io.listener);
        let durable = durable.max(received);
        if matches!(code, reason::TOPIC_NAME_INVALID | reason::QUOTA_EXCEEDED)
            && (!self.negotiated.version.is_v5() || qos == QoS::AtMostOnce)
        {
            // No acknowledgement can carry the refusal: 5.0 DISCONNECT with the code, 3.x closes.
            if let (QoS::ExactlyOnce, Some(id)) = (qos, packet_id) {
                // Not received: a resend after reconnecting is a new message, not a duplicate.
                let mut state = self.session.state.lock();
                if state.release_qos2(id) && state.durable {
                    self.broker.persist_incoming(&self.session, id, false);
                }
            }
            let refusal = match code {
                reason::QUOTA_EXCEEDED if self.broker.store().is_some_and(|s| s.full()) => ProtocolViolation::StoreFull,
                reason::QUOTA_EXCEEDED => ProtocolViolation::MemoryLimit,
                _ => ProtocolViolation::TopicTooDeep,
            };
            return Err(violation(refusal));
        }
        let code = self.reason_for_version(code);
        let properties = self.problem(code);
        let ack = |id: Option<PacketId>| Ack {
            packet_id: id.expect("QoS 1/2 has a packet id"),
            reason: code,
            properties: properties.clone(),
        };
        match qos {
            QoS::AtMostOnce => Ok(()),
            // Sent once the message is stored wherever it must be [issue 13: nothing acknowledged is lost].
            QoS::AtLeastOnce => self.ack_after(io, Packet::PubAck(ack(packet_id)), durable),
            QoS::ExactlyOnce => {
                if code >= 0x80 {
                    // A refused QoS 2 message is not awaiting PUBREL.
                    let id = packet_id.expect("QoS 2 has a packet id");
                    let mut state = self.session.state.lock();
                    if state.release_qos2(id) && state.durable {
                        self.broker.persist_incoming(&self.session, id, false);
                    }
                }
                self.ack_after(io, Packet::PubRec(ack(packet_id)), durable)
            }
        }
    }

    /// Checks size, depth, memory and authorization, then routes. Returns the 5.0 reason code for the
    /// acknowledgement, and the durable store's position it waits for.
    fn route_publish(&mut self, mut p: Publish, listener: u16) -> (u8, u64) {
        if let Some(mount_point) = self.broker.settings.mount_point(listener) {
            p.topic = format!("{mount_point}{}", p.topic);
        }
        let limit = self.broker.settings.message_size_limit;
        if limit > 0 && p.payload.len() > limit as usize {
            tracing::info!(client_id = %self.session.client_id, size = p.payload.len(), "message over message_size_limit dropped");
            return (reason::PACKET_TOO_LARGE, 0);
        }
        if self.broker.settings.too_deep(&p.topic) {
            let max = self.broker.settings.max_topic_levels;
            tracing::info!(client_id = %self.session.client_id, max, "publish refused: topic deeper than max_topic_levels");
            return (reason::TOPIC_NAME_INVALID, 0);
        }
        if (p.qos != QoS::AtMostOnce || p.retain) && self.broker.store().is_some_and(|s| s.full()) {
            // Nothing new is acknowledged or retained while the disk is full (the store logged it once);
            // what was acknowledged before is safe and still delivered [issue 13].
            tracing::debug!(client_id = %self.session.client_id, "publish refused: durable store full");
            return (reason::QUOTA_EXCEEDED, 0);
        }
        if self.broker.over_memory_limit() {
            let in_use = self.broker.memory_in_use();
            tracing::warn!(client_id = %self.session.client_id, in_use, "publish refused: memory_limit reached");
            return (reason::QUOTA_EXCEEDED, 0);
        }
        if !self.broker.may_write_session(&self.session, &p.topic) {
            tracing::info!(client_id = %self.session.client_id, topic = %p.topic, "publish denied");
            return (reason::NOT_AUTHORIZED, 0);
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
            stored: Default::default(),
        };
        let message = Arc::new(message);
        if message.retain && self.broker.settings.check_retain_source {
            self.broker.note_retain_source(&message, self.session.identity());
        }
        let routed = self.broker.route(message);
        self.busy |= routed.busy;
        if self.congested.is_none() {
            self.congested = routed.congested;
        }
        // Sent to the other nodes of a cluster: whether any subscriber there matches is not known here.
        let none = routed.reached == 0 && !routed.clustered;
        let code = if none { reason::NO_MATCHING_SUBSCRIBERS } else { reason::SUCCESS };
        (code, routed.durable)
    }

    fn pubrec(&mut self, a: Ack, io: &mut Transport) -> Result<(), End> {
        self.check_reason("PUBREC", reason::fits_puback(a.reason))?;
        let mut state = self.session.state.lock();
        let stored = state.inflight_stored(a.packet_id).filter(|_| state.durable);
        let outcome = state.pubrec(a.packet_id, a.reason);
        drop(state);
        match outcome {
            // Received: only PUBREL and PUBCOMP are left, which a restart must not forget.
            Ok(true) => self.broker.persist_sent(&self.session, stored, a.packet_id, true),
            // Refused by the client: the flow ends here.
            Ok(false) => self.broker.persist_ack(&self.session, stored),
            Err(_) => {}
        }
        match outcome {
            Ok(true) => {}
            // An error reason code ends the flow: no PUBREL [MQTT-4.3.3-4].
            Ok(false) => return Ok(()),
            Err(e @ AckError::WrongFlow(_)) => return flow_of::<()>("PUBREC", Err(e)),
            Err(AckError::UnknownPacketId(_)) if a.reason >= 0x80 => return Ok(()),
            Err(AckError::UnknownPacketId(_)) if self.negotiated.version.is_v5() => {
                let rel = Ack {
                    packet_id: a.packet_id,
                    reason: reason::PACKET_IDENTIFIER_NOT_FOUND,
                    properties: Properties::default(),
                };
                return self.ack(io, Packet::PubRel(rel));
            }
            Err(AckError::UnknownPacketId(_)) => {}
        }
        self.ack(io, Packet::PubRel(Ack::new(a.packet_id)))
    }

    fn pubrel(&mut self, a: Ack, io: &mut Transport) -> Result<(), End> {
        self.check_reason("PUBREL", reason::fits_pubrel(a.reason))?;
        let mut state = self.session.state.lock();
        let known = state.release_qos2(a.packet_id);
        // PUBCOMP once the release is stored: the client may use the packet id again after it.
        let durable =
            if known && state.durable { self.broker.persist_incoming(&self.session, a.packet_id, false) } else { 0 };
        drop(state);
        let code = if known { reason::SUCCESS } else { self.reason_for_version(reason::PACKET_IDENTIFIER_NOT_FOUND) };
        let pubcomp = Ack { packet_id: a.packet_id, reason: code, properties: Properties::default() };
        self.ack_after(io, Packet::PubComp(pubcomp), durable)
    }

    fn subscribe(&mut self, s: Subscribe, io: &mut Transport) -> Result<(), End> {
        if s.properties.subscription_identifiers.len() > 1 {
            return Err(violation(ProtocolViolation::SubscriptionIds));
        }
        // Kept with each subscription and sent with every message it matches [MQTT-3.3.4-3].
        let subscription_id = s.properties.subscription_identifiers.first().copied();
        let max_qos = QoS::from_u8(self.broker.settings.max_qos(io.listener)).unwrap_or(QoS::ExactlyOnce);
        let mount_point = self.broker.settings.mount_point(io.listener).map(str::to_owned);
        let v5 = self.negotiated.version.is_v5();
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut retained_for = Vec::new();
        let mut durable = 0;
        for (filter, mut options) in s.filters {
            let shared = match SharedFilter::parse(&filter) {
                Some(Err(why)) => {
                    tracing::info!(client_id = %self.session.client_id, %filter, "subscription refused: {why}");
                    reasons.push(if v5 { reason::TOPIC_FILTER_INVALID } else { reason::v3::SUBACK_FAILURE });
                    continue;
                }
                Some(Ok(_)) if options.no_local => {
                    return Err(violation(ProtocolViolation::NoLocalOnShared));
                }
                Some(Ok(_)) => true,
                None => false,
            };
            if self.broker.settings.too_deep(&filter) {
                let max = self.broker.settings.max_topic_levels;
                tracing::info!(client_id = %self.session.client_id, max, "subscription refused: filter deeper than max_topic_levels");
                reasons.push(if v5 { reason::TOPIC_FILTER_INVALID } else { reason::v3::SUBACK_FAILURE });
                continue;
            }
            if !v5 {
                // A bridge (bridge bit in CONNECT) does not get its own messages back and sees the RETAIN
                // flag as published, as Mosquitto treats bridges; 3.x has no options of its own.
                let bridge = self.negotiated.bridge;
                options = mqttd_proto::SubscriptionOptions {
                    qos: options.qos,
                    no_local: bridge,
                    retain_as_published: bridge,
                    ..Default::default()
                };
            }
            let filter = mount(mount_point.as_deref(), filter);
            options.qos = options.qos.min(max_qos);
            // The ACL applies to the filter after `$share/{ShareName}/`.
            let acl_filter = SharedFilter::parse(&filter).and_then(Result::ok).map_or(filter.as_str(), |s| s.filter);
            if !self.may_subscribe(acl_filter) {
                tracing::info!(client_id = %self.session.client_id, %filter, "subscription denied by the ACL");
                reasons.push(if v5 { reason::NOT_AUTHORIZED } else { reason::v3::SUBACK_FAILURE });
                continue;
            }
            let (is_new, stored) = self.broker.subscribe(&self.session, &filter, options, subscription_id);
            durable = durable.max(stored);
            // Mosquitto's `log_type subscribe` line: client id, granted QoS, filter (mount point included).
            tracing::info!(target: crate::log::SUBSCRIBE, "{} {} {filter}", self.session.client_id, options.qos as u8);
            reasons.push(options.qos as u8);
            // Retained messages are not sent for shared subscriptions [MQTT-4.8.2].
            let send = !shared
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => is_new,
                    RetainHandling::DoNotSend => false,
                };
            if send {
                retained_for.push((filter, options.qos));
            }
        }
        let properties = self.problem(reasons.iter().copied().find(|&r| r >= 0x80).unwrap_or(0));
        let suback = SubAck { packet_id: s.packet_id, reasons, properties };
        self.ack_after(io, Packet::SubAck(suback), durable)?;
        for (filter, granted) in retained_for {
            self.send_retained(&filter, granted, subscription_id);
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
    /// A retained message sent because of a subscription carries its identifier [MQTT-3.3.4-3].
    fn send_retained(&mut self, filter: &str, granted: QoS, subscription_id: Option<u32>) {
        let messages = self.broker.retained.read().matching(filter, Instant::now());
        let security = self.broker.security();
        for message in messages {
            if !self.broker.may_read_with(&security, &self.session, &message.topic)
                || !self.broker.retain_source_allowed(&message)
            {
                continue;
            }
            let upgrade = self.broker.settings.upgrade_outgoing_qos;
            let delivery = Delivery {
                qos: if upgrade { granted } else { message.qos.min(granted) },
                retain: true,
                message,
                subscription_ids: subscription_id.into_iter().collect(),
                shared_by: 1,
                group: 0,
            };
            self.retained_backlog.get_or_insert_default().push_back(delivery);
        }
        // The connection's poll loop feeds the backlog into the outbox on its next turn.
    }

    fn unsubscribe(&mut self, u: Unsubscribe, io: &mut Transport) -> Result<(), End> {
        let mut reasons = Vec::with_capacity(u.filters.len());
        let mount_point = self.broker.settings.mount_point(io.listener).map(str::to_owned);
        let mut durable = 0;
        for filter in u.filters {
            let filter = &mount(mount_point.as_deref(), filter);
            let (existed, stored) = self.broker.unsubscribe(&self.session, filter);
            durable = durable.max(stored);
            tracing::info!(target: crate::log::UNSUBSCRIBE, "{} {filter}", self.session.client_id);
            reasons.push(if existed { reason::SUCCESS } else { reason::NO_SUBSCRIPTION_EXISTED });
        }
        if !self.negotiated.version.is_v5() {
            reasons.clear();
        }
        self.ack_after(
            io,
            Packet::UnsubAck(UnsubAck { packet_id: u.packet_id, reasons, properties: Properties::default() }),
            durable,
        )
    }

    fn disconnect(&mut self, d: mqttd_proto::Disconnect) -> Result<(), End> {
        if let Some(seconds) = d.properties.session_expiry_interval {
            if self.negotiated.connect_expiry == 0 && seconds != 0 {
                return Err(violation(ProtocolViolation::ExpiryAfterZero));
            }
            self.expiry_override = Some(seconds);
        }
        Err(End::Disconnect { with_will: d.reason == reason::DISCONNECT_WITH_WILL_MESSAGE })
    }
}

/// What an acknowledgement of an outgoing message did: one for a packet id the broker does not know is
/// tolerated (after a reconnect the client may acknowledge what the broker already forgot; Mosquitto
/// ignores it too); one that does not belong to the delivery's flow is a protocol error [MQTT-4.3.2-1]
/// [MQTT-4.3.3-1].
fn flow_of<T>(packet: &'static str, outcome: Result<T, AckError>) -> Result<(), End> {
    match outcome {
        Ok(_) | Err(AckError::UnknownPacketId(_)) => Ok(()),
        Err(AckError::WrongFlow(packet_id)) => Err(violation(ProtocolViolation::WrongFlow { packet, packet_id })),
    }
}

/// `filter` of a client of a listener with `mount_point`, as the broker stores it: the mount point goes
/// before the filter, after `$share/{ShareName}/` for a shared subscription.
fn mount(mount_point: Option<&str>, filter: String) -> String {
    match SharedFilter::parse(&filter).and_then(Result::ok) {
        Some(s) if mount_point.is_some() => {
            format!("$share/{}/{}", s.share_name, crate::settings::mounted(mount_point, s.filter.to_owned()))
        }
        _ => crate::settings::mounted(mount_point, filter),
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
