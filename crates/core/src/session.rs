//! The state of one session: its outbox of queued deliveries, its inflight window of outgoing QoS 1/2
//! messages, and the QoS 2 packet ids received but not yet released.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mqttd_proto::{Ack, Packet, PacketId, Publish, QoS};

use crate::message::{Delivery, Message};

/// Bounds of a session's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Queued messages beyond the inflight window; 0 means no limit.
    pub max_messages: usize,
    /// Queued bytes; 0 means no limit.
    pub max_bytes: usize,
    /// Whether QoS 0 messages are queued while the client is offline.
    pub queue_qos0_offline: bool,
    /// Hard bound on queued QoS 0 bytes, whatever the other limits say: a subscriber that stops reading
    /// loses QoS 0 messages instead of growing the broker.
    pub max_qos0_bytes: usize,
    /// Payload bytes of outgoing QoS 1/2 messages in flight (Mosquitto's `max_inflight_bytes`, in its unit:
    /// payloads only); 0 means no limit. One message always goes, whatever its size.
    pub max_inflight_bytes: usize,
}

impl QueueLimits {
    /// The default of `max_bytes`: 16 MiB per session (queued messages by [`crate::Message::cost`]).
    pub const DEFAULT_MAX_BYTES: usize = 16 << 20;
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_messages: 1000,
            max_bytes: QueueLimits::DEFAULT_MAX_BYTES,
            queue_qos0_offline: false,
            max_qos0_bytes: 1 << 20,
            max_inflight_bytes: 16 * 1024,
        }
    }
}

/// The memory held by the queues of every session of a broker (queued and inflight deliveries, by
/// [`Delivery::weight`]: a message fanned out to many sessions counts about once), shared by them all.
#[derive(Debug, Default)]
pub struct MemoryUse(AtomicUsize);

impl MemoryUse {
    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// What happened to a delivery offered to [`SessionState::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// The outbox was full (message or byte limit).
    DroppedFull,
    /// QoS 0 to an offline session without `queue_qos0_messages`.
    DroppedOffline,
}

/// Where an outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightState {
    /// QoS 1 PUBLISH sent.
    AwaitingPubAck,
    /// QoS 2 PUBLISH sent.
    AwaitingPubRec,
    /// PUBREL sent.
    AwaitingPubComp,
}

/// One outgoing QoS 1/2 message in the inflight window.
#[derive(Debug, Clone)]
pub struct Inflight {
    pub packet_id: PacketId,
    pub delivery: Delivery,
    pub state: InflightState,
    /// Whether it was sent on the current connection; false after a reconnect until resent.
    pub sent: bool,
    /// The message's id in the durable store (kept past PUBREC, when the message itself is let go).
    pub stored: Option<u64>,
}

/// A delivery leaving the outbox, with the packet id it was given (QoS 1/2).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub delivery: Delivery,
    pub packet_id: Option<PacketId>,
}

/// An acknowledgement that does not fit the inflight window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// No inflight message has this packet id.
    UnknownPacketId(u16),
    /// An inflight message has this packet id, but the acknowledgement does not belong to its flow: PUBREC
    /// or PUBCOMP for a QoS 1 delivery, PUBACK for a QoS 2 one, PUBCOMP before PUBREL, an error PUBREC
    /// after a successful one [MQTT-4.3.2-1] [MQTT-4.3.3-1].
    WrongFlow(u16),
}

/// The state of one session.
#[derive(Debug, Default)]
pub struct SessionState {
    /// Whether a connection is attached.
    pub online: bool,
    /// Whether what is queued for this session is kept in the durable store (a persistent session of a
    /// broker with `persistence true`).
    pub durable: bool,
    /// Shared by every session of a broker.
    pub limits: std::sync::Arc<QueueLimits>,
    outbox: VecDeque<Delivery>,
    outbox_bytes: usize,
    /// Sum of [`Delivery::weight`] over the outbox: the memory it holds, for backpressure.
    backlog: usize,
    qos0_bytes: usize,
    inflight: VecDeque<Inflight>,
    /// Payload bytes of the inflight messages, the figure `max_inflight_bytes` bounds (Mosquitto's unit).
    inflight_bytes: usize,
    next_packet_id: u16,
    incoming_qos2: BTreeSet<u16>,
    /// Inflight entries possibly not yet resent since [`SessionState::resume`] (an upper bound).
    owed: usize,
    /// The broker-wide figure this session's queued and inflight deliveries count in (by weight).
    usage: Arc<MemoryUse>,
    /// Deliveries dropped since the session began (full outbox, expiry, offline QoS 0).
    pub dropped: u64,
    /// The attached connection's task, woken when the outbox gains a delivery; taken by the wake.
    waker: Option<std::task::Waker>,
}

impl SessionState {
    pub fn new(limits: impl Into<Arc<QueueLimits>>) -> SessionState {
        SessionState::counted(limits, Arc::default())
    }

    /// A session whose queued memory counts in `usage` (shared by every session of a broker).
    pub fn counted(limits: impl Into<Arc<QueueLimits>>, usage: Arc<MemoryUse>) -> SessionState {
        // Every field spelled out: `..Default::default()` would allocate default limits only to drop them.
        SessionState {
            online: false,
            durable: false,
            limits: limits.into(),
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            backlog: 0,
            qos0_bytes: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            next_packet_id: 0,
            incoming_qos2: BTreeSet::new(),
            owed: 0,
            usage,
            dropped: 0,
            waker: None,
        }
    }

    /// Keeps the connection task's waker, for [`SessionState::take_waker`] (a clone only when it changed).
    pub fn register(&mut self, waker: &std::task::Waker) {
        match &mut self.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    /// The waker to wake after a change the connection must see (a delivery, a takeover); `None` when the
    /// task was already woken and has not registered since.
    pub fn take_waker(&mut self) -> Option<std::task::Waker> {
        self.waker.take()
    }

    /// Whether anything waits to be sent: queued deliveries or inflight messages owed a resend.
    pub fn has_outgoing(&self) -> bool {
        !self.outbox.is_empty() || self.owed > 0
    }

    /// Queued deliveries (not yet sent).
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// Bytes of the queued deliveries (by [`crate::Message::cost`]), the figure `max_bytes` bounds.
    pub fn queued_bytes(&self) -> usize {
        self.outbox_bytes
    }

    /// The memory the outbox holds (sum of [`Delivery::weight`]): what publishers' backpressure watches.
    pub fn backlog(&self) -> usize {
        self.backlog
    }

    /// Outgoing QoS 1/2 messages awaiting acknowledgement.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Whether the outbox is past three quarters of any of its limits: publishers should wait for this
    /// session before it starts dropping.
    pub fn nearly_full(&self) -> bool {
        let l = &self.limits;
        let over = |used: usize, limit: usize| limit > 0 && used * 4 >= limit * 3;
        over(self.outbox.len(), l.max_messages)
            || over(self.outbox_bytes, l.max_bytes)
            || over(self.qos0_bytes, l.max_qos0_bytes)
    }

    /// A delivery of `weight` bytes entered this session's queues.
    fn hold(&self, weight: usize) {
        self.usage.0.fetch_add(weight, Ordering::Relaxed);
    }

    /// A delivery of `weight` bytes left this session's queues.
    fn free(&self, weight: usize) {
        self.usage.0.fetch_sub(weight, Ordering::Relaxed);
    }

    /// Offers a delivery to the outbox, within the limits. An empty outbox takes one message whatever
    /// its size (the size limit is `message_size_limit`'s business): a message the broker accepted
    /// reaches a subscriber that reads, however big [MQTT-4.5.0-1].
    pub fn enqueue(&mut self, delivery: Delivery) -> Enqueued {
        let cost = delivery.message.cost();
        let qos0 = delivery.qos == QoS::AtMostOnce;
        let l = *self.limits;
        let outcome = if qos0 && !self.online && !l.queue_qos0_offline {
            Enqueued::DroppedOffline
        } else if (l.max_messages > 0 && self.outbox.len() >= l.max_messages)
            || (!self.outbox.is_empty()
                && ((l.max_bytes > 0 && self.outbox_bytes + cost > l.max_bytes)
                    || (qos0 && self.qos0_bytes + cost > l.max_qos0_bytes)))
        {
            Enqueued::DroppedFull
        } else {
            Enqueued::Queued
        };
        if outcome == Enqueued::Queued {
            self.outbox_bytes += cost;
            self.backlog += delivery.weight();
            if qos0 {
                self.qos0_bytes += cost;
            }
            self.hold(delivery.weight());
            self.outbox.push_back(delivery);
        } else {
            self.dropped += 1;
        }
        outcome
    }

    /// The next free packet id. Ids are handed out in increasing (wrapping) order and the inflight window
    /// keeps that order, so an id outside the arc from its oldest to its newest entry is free without a
    /// scan; only after a full wrap of the 16-bit space does a candidate need checking one by one.
    fn allocate_packet_id(&mut self) -> PacketId {
        loop {
            self.next_packet_id = self.next_packet_id.wrapping_add(1);
            let Some(id) = PacketId::new(self.next_packet_id) else { continue };
            let (Some(oldest), Some(newest)) = (self.inflight.front(), self.inflight.back()) else { return id };
            let from = oldest.packet_id.get();
            let in_arc = id.get().wrapping_sub(from) <= newest.packet_id.get().wrapping_sub(from);
            if !in_arc || !self.inflight.iter().any(|i| i.packet_id == id) {
                return id;
            }
        }
    }

    /// [`SessionState::next_delivery`] as a PUBLISH packet.
    pub fn next_outgoing(&mut self, window: usize, now: Instant) -> Option<Publish> {
        self.next_delivery(window, now).map(|o| o.delivery.to_publish(o.packet_id, false, now))
    }

    /// Takes the next delivery to send, if the inflight `window` allows: QoS 1/2 messages get a packet id
    /// and enter the inflight window. Expired messages are dropped [MQTT-3.3.2-5].
    pub fn next_delivery(&mut self, window: usize, now: Instant) -> Option<Outgoing> {
        self.next_delivery_where(window, now, |_| true)
    }

    /// [`SessionState::next_delivery`], dropping (and counting) deliveries `allowed` refuses on the way
    /// out, before they get a packet id: read access is checked again as a message leaves the outbox.
    pub fn next_delivery_where(
        &mut self,
        window: usize,
        now: Instant,
        mut allowed: impl FnMut(&Delivery) -> bool,
    ) -> Option<Outgoing> {
        loop {
            let front = self.outbox.front()?;
            let max_bytes = self.limits.max_inflight_bytes;
            let full = self.inflight.len() >= window.max(1)
                || (max_bytes > 0 && self.inflight_bytes >= max_bytes && !self.inflight.is_empty());
            if front.qos != QoS::AtMostOnce && full && !front.message.expired(now) {
                return None;
            }
            let delivery = self.outbox.pop_front().expect("front exists");
            let cost = delivery.message.cost();
            self.outbox_bytes -= cost;
            self.backlog -= delivery.weight();
            if delivery.qos == QoS::AtMostOnce {
                self.qos0_bytes -= cost;
            }
            if delivery.message.expired(now) || !allowed(&delivery) {
                self.free(delivery.weight());
                self.dropped += 1;
                continue;
            }
            if delivery.qos == QoS::AtMostOnce {
                self.free(delivery.weight());
                return Some(Outgoing { delivery, packet_id: None });
            }
            let packet_id = self.allocate_packet_id();
            let outgoing = Outgoing { delivery: delivery.clone(), packet_id: Some(packet_id) };
            let state = if delivery.qos == QoS::AtLeastOnce {
                InflightState::AwaitingPubAck
            } else {
                InflightState::AwaitingPubRec
            };
            self.inflight_bytes += delivery.message.payload.len();
            let stored = delivery.message.stored.get().copied();
            self.inflight.push_back(Inflight { packet_id, delivery, state, sent: true, stored });
            return Some(outgoing);
        }
    }

    /// Where the inflight entry with this id is, if it is in `state`. Acknowledgements mostly come in
    /// order, so the search usually ends at the front.
    fn position(&self, id: PacketId, state: InflightState) -> Result<usize, AckError> {
        let at = self.find(id)?;
        if self.inflight[at].state != state {
            return Err(AckError::WrongFlow(id.get()));
        }
        Ok(at)
    }

    fn find(&self, id: PacketId) -> Result<usize, AckError> {
        self.inflight.iter().position(|i| i.packet_id == id).ok_or(AckError::UnknownPacketId(id.get()))
    }

    /// PUBACK received: the QoS 1 delivery is complete.
    pub fn puback(&mut self, id: PacketId) -> Result<(), AckError> {
        let at = self.position(id, InflightState::AwaitingPubAck)?;
        self.complete(at);
        Ok(())
    }

    /// PUBREC received: answer with PUBREL, or forget the message if the reason code is an error (5.0).
    /// A repeated PUBREC is answered with PUBREL again. Returns whether to send PUBREL.
    pub fn pubrec(&mut self, id: PacketId, reason: u8) -> Result<bool, AckError> {
        let at = self.find(id)?;
        match self.inflight[at].state {
            InflightState::AwaitingPubComp if reason < 0x80 => return Ok(true),
            InflightState::AwaitingPubRec => {}
            InflightState::AwaitingPubComp | InflightState::AwaitingPubAck => {
                return Err(AckError::WrongFlow(id.get()))
            }
        }
        if reason >= 0x80 {
            self.complete(at);
            return Ok(false);
        }
        // Only PUBREL and PUBCOMP remain [MQTT-4.3.3-4]: the message itself is no longer needed.
        let entry = &mut self.inflight[at];
        entry.state = InflightState::AwaitingPubComp;
        self.inflight_bytes -= entry.delivery.message.payload.len();
        let before = entry.delivery.weight();
        entry.delivery.message = Message::released();
        let after = entry.delivery.weight();
        self.free(before - after);
        Ok(true)
    }

    /// PUBCOMP received: the QoS 2 delivery is complete.
    pub fn pubcomp(&mut self, id: PacketId) -> Result<(), AckError> {
        let at = self.position(id, InflightState::AwaitingPubComp)?;
        self.complete(at);
        Ok(())
    }

    /// Forgets the inflight message with this id whatever its state, as if it had been acknowledged (one
    /// the client cannot take [MQTT-3.1.2-25]). Returns whether there was one.
    pub fn abandon(&mut self, id: PacketId) -> bool {
        let Ok(at) = self.find(id) else { return false };
        self.complete(at);
        true
    }

    /// Removes the inflight entry at `at`: its delivery is over.
    fn complete(&mut self, at: usize) {
        if let Some(done) = self.inflight.remove(at) {
            if done.state != InflightState::AwaitingPubComp {
                self.inflight_bytes -= done.delivery.message.payload.len();
            }
            self.free(done.delivery.weight());
        }
    }

    /// A client resumed this session: every unacknowledged message is to be sent again
    /// ([`SessionState::next_resend`]), with its packet id kept [MQTT-4.4.0-1].
    pub fn resume(&mut self) {
        for i in &mut self.inflight {
            i.sent = false;
        }
        self.owed = self.inflight.len();
    }

    /// The next message owed since [`SessionState::resume`], within the client's Receive Maximum `window`
    /// [MQTT-3.3.4-9]: a PUBLISH with DUP set, or a PUBREL for one that was received. In the original order.
    pub fn next_resend(&mut self, window: usize, now: Instant) -> Option<Packet> {
        if self.owed == 0 {
            return None;
        }
        let sent = self.inflight.iter().filter(|i| i.sent).count();
        if sent >= window.max(1) {
            return None;
        }
        let Some(entry) = self.inflight.iter_mut().find(|i| !i.sent) else {
            self.owed = 0;
            return None;
        };
        entry.sent = true;
        self.owed -= 1;
        Some(match entry.state {
            InflightState::AwaitingPubComp => Packet::PubRel(Ack::new(entry.packet_id)),
            _ => Packet::Publish(entry.delivery.to_publish(Some(entry.packet_id), true, now)),
        })
    }

    /// The durable store id of the message in flight with packet id `id`, if it was stored.
    pub fn inflight_stored(&self, id: PacketId) -> Option<u64> {
        self.inflight.iter().find(|i| i.packet_id == id)?.stored
    }

    /// Puts back a delivery that was in flight with `packet_id` when the broker stopped (the durable
    /// store kept it), `released` once its PUBREC had come: it is sent again first, with DUP and its
    /// packet id [MQTT-4.4.0-1], or its PUBREL is.
    pub fn restore_inflight(&mut self, delivery: Delivery, packet_id: PacketId, released: bool) {
        let stored = delivery.message.stored.get().copied();
        let (state, delivery) = match delivery.qos {
            _ if released => (InflightState::AwaitingPubComp, Delivery { message: Message::released(), ..delivery }),
            QoS::ExactlyOnce => (InflightState::AwaitingPubRec, delivery),
            _ => (InflightState::AwaitingPubAck, delivery),
        };
        if state != InflightState::AwaitingPubComp {
            self.inflight_bytes += delivery.message.payload.len();
        }
        self.hold(delivery.weight());
        self.next_packet_id = packet_id.get();
        self.inflight.push_back(Inflight { packet_id, delivery, state, sent: false, stored });
        self.owed += 1;
    }

    /// Takes the QoS 1/2 deliveries that came through a shared subscription and are not yet complete:
    /// queued, or in flight before the client received them (no PUBACK or PUBREC yet). The session is
    /// ending; another member of the group gets them [MQTT-4.8.2-6].
    pub fn take_shared(&mut self) -> Vec<Delivery> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.inflight.len());
        for entry in std::mem::take(&mut self.inflight) {
            if entry.delivery.group != 0 && entry.state != InflightState::AwaitingPubComp {
                self.inflight_bytes -= entry.delivery.message.payload.len();
                self.free(entry.delivery.weight());
                taken.push(entry.delivery);
            } else {
                kept.push_back(entry);
            }
        }
        self.inflight = kept;
        self.owed = self.owed.min(self.inflight.len());
        let outbox = std::mem::take(&mut self.outbox);
        for delivery in outbox {
            if delivery.group != 0 && delivery.qos != QoS::AtMostOnce {
                let cost = delivery.message.cost();
                self.outbox_bytes -= cost;
                self.backlog -= delivery.weight();
                self.free(delivery.weight());
                taken.push(delivery);
            } else {
                self.outbox.push_back(delivery);
            }
        }
        taken
    }

    /// An incoming QoS 2 PUBLISH: true if its packet id is new (route the message), false if it is a
    /// resend of one not yet released (acknowledge again, do not route) [MQTT-4.3.3-10].
    pub fn receive_qos2(&mut self, id: PacketId) -> bool {
        self.incoming_qos2.insert(id.get())
    }

    /// Incoming QoS 2 packet ids not yet released.
    pub fn incoming_qos2(&self) -> usize {
        self.incoming_qos2.len()
    }

    /// PUBREL received: releases the packet id. Returns whether it was known.
    pub fn release_qos2(&mut self, id: PacketId) -> bool {
        self.incoming_qos2.remove(&id.get())
    }
}

impl Drop for SessionState {
    /// A session that ends gives back what its queues held.
    fn drop(&mut self) {
        let inflight: usize = self.inflight.iter().map(|i| i.delivery.weight()).sum();
        self.free(self.backlog + inflight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;
    use std::sync::Arc;
    use std::time::Duration;

    fn delivery(qos: QoS, payload: &'static [u8]) -> Delivery {
        let message = Message {
            topic: "t".into(),
            payload: Bytes::from_static(payload),
            qos,
            retain: false,
            properties: None,
            expires_at: None,
            origin: 1,
            stored: Default::default(),
        };
        Delivery { message: Arc::new(message), qos, retain: false, subscription_ids: vec![], shared_by: 1, group: 0 }
    }

    fn online(limits: QueueLimits) -> SessionState {
        let mut s = SessionState::new(limits);
        s.online = true;
        s
    }

    /// [MQTT-4.8.2-6]: what a shared subscription gave an ending session and the client did not receive
    /// goes back to the group; QoS 0, plain deliveries and QoS 2 past PUBREC stay.
    #[test]
    fn take_shared_takes_unreceived_qos_1_and_2_deliveries_of_shared_subscriptions_only() {
        let mut s = online(QueueLimits::default());
        let shared = |qos, payload| Delivery { group: 7, ..delivery(qos, payload) };
        s.enqueue(shared(QoS::AtLeastOnce, b"sent 1"));
        s.enqueue(shared(QoS::ExactlyOnce, b"received 2"));
        s.enqueue(shared(QoS::ExactlyOnce, b"sent 2"));
        s.enqueue(delivery(QoS::AtLeastOnce, b"plain"));
        s.enqueue(shared(QoS::AtMostOnce, b"qos 0"));
        s.enqueue(shared(QoS::AtLeastOnce, b"queued 1"));
        let now = Instant::now();
        let ids: Vec<_> = (0..3).map(|_| s.next_delivery(10, now).and_then(|o| o.packet_id)).collect();
        assert_eq!(s.pubrec(ids[1].expect("QoS 2"), 0), Ok(true));
        let taken: Vec<_> = s.take_shared().into_iter().map(|d| d.message.payload.clone()).collect();
        assert_eq!(taken, vec![&b"sent 1"[..], b"sent 2", b"queued 1"]);
        assert_eq!(s.inflight(), 1, "the QoS 2 delivery past PUBREC stays");
        assert_eq!(s.queued(), 2, "the plain and the QoS 0 deliveries stay");
        assert_eq!(s.pubcomp(ids[1].expect("QoS 2")), Ok(()));
    }

    #[test]
    fn max_inflight_bytes_holds_back_the_next_message_until_one_is_acknowledged() {
        let message = delivery(QoS::AtLeastOnce, b"payload");
        let limits = QueueLimits { max_inflight_bytes: message.message.payload.len(), ..QueueLimits::default() };
        let mut s = online(limits);
        for _ in 0..3 {
            assert_eq!(s.enqueue(message.clone()), Enqueued::Queued);
        }
        let now = Instant::now();
        let first = s.next_delivery(100, now).expect("one message always goes");
        assert!(s.next_delivery(100, now).is_none(), "the byte window is full");
        s.puback(first.packet_id.unwrap()).unwrap();
        assert!(s.next_delivery(100, now).is_some());
    }

    #[test]
    fn a_qos2_delivery_past_pubrec_lets_its_message_go_and_frees_its_bytes() {
        let message = delivery(QoS::ExactlyOnce, b"payload");
        let limits = QueueLimits { max_inflight_bytes: message.message.payload.len(), ..QueueLimits::default() };
        let mut s = online(limits);
        s.enqueue(message.clone());
        s.enqueue(message.clone());
        let now = Instant::now();
        let first = s.next_delivery(100, now).unwrap().packet_id.unwrap();
        assert!(s.next_delivery(100, now).is_none());
        assert_eq!(s.pubrec(first, 0), Ok(true));
        // Only the packet id is held now [MQTT-4.3.3-4]: the second message may go.
        assert!(s.next_delivery(100, now).is_some());
        assert_eq!(
            Arc::strong_count(&message.message),
            2,
            "this copy and the second delivery in flight, not the first one past PUBREC"
        );
        // After a reconnect the released entry is resent as PUBREL, then completes.
        s.resume();
        assert_eq!(s.next_resend(100, now), Some(Packet::PubRel(Ack::new(first))));
        assert_eq!(s.pubcomp(first), Ok(()));
    }

    #[test]
    fn qos1_flow_frees_the_window() {
        let now = Instant::now();
        let mut s = online(QueueLimits::default());
        s.enqueue(delivery(QoS::AtLeastOnce, b"1"));
        s.enqueue(delivery(QoS::AtLeastOnce, b"2"));
        let first = s.next_outgoing(1, now).unwrap();
        assert!(s.next_outgoing(1, now).is_none(), "window of 1 is full");
        s.puback(first.packet_id.unwrap()).unwrap();
        assert_eq!(s.next_outgoing(1, now).unwrap().payload, Bytes::from_static(b"2"));
        assert_eq!(s.puback(first.packet_id.unwrap()), Err(AckError::UnknownPacketId(1)));
    }

    #[test]
    fn qos2_flow_and_resend_with_dup() {
        let now = Instant::now();
        let mut s = online(QueueLimits::default());
        s.enqueue(delivery(QoS::ExactlyOnce, b"a"));
        s.enqueue(delivery(QoS::ExactlyOnce, b"b"));
        let a = s.next_outgoing(10, now).unwrap().packet_id.unwrap();
        let b = s.next_outgoing(10, now).unwrap().packet_id.unwrap();
        assert!(s.pubrec(a, 0).unwrap());
        s.resume();
        let resend: Vec<Packet> = std::iter::from_fn(|| s.next_resend(1, now)).collect();
        assert_eq!(resend.len(), 1, "a window of 1 holds one resend at a time");
        s.pubcomp(a).unwrap();
        let resend: Vec<Packet> = std::iter::from_fn(|| s.next_resend(10, now)).collect();
        assert_eq!(resend.len(), 1, "what is acknowledged is not resent");
        // Reconnect again before anything else arrives: PUBREL for the received one, PUBLISH with DUP for
        // the other, in order.
        s.enqueue(delivery(QoS::ExactlyOnce, b"c"));
        let c = s.next_outgoing(10, now).unwrap().packet_id.unwrap();
        assert!(s.pubrec(c, 0).unwrap());
        s.resume();
        let resend: Vec<Packet> = std::iter::from_fn(|| s.next_resend(10, now)).collect();
        assert_eq!(resend.len(), 2);
        match &resend[0] {
            Packet::Publish(p) => assert!(p.dup && p.packet_id == Some(b)),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
        assert_eq!(resend[1], Packet::PubRel(Ack::new(c)));
        assert!(s.pubrec(c, 0).unwrap(), "a repeated PUBREC is answered again");
        s.pubcomp(c).unwrap();
        assert!(!s.pubrec(b, 0x80).unwrap(), "an error PUBREC ends the flow");
        assert_eq!(s.inflight(), 0);
    }

    #[test]
    fn an_acknowledgement_of_another_flow_is_told_from_an_unknown_packet_id() {
        let now = Instant::now();
        let mut s = online(QueueLimits::default());
        s.enqueue(delivery(QoS::AtLeastOnce, b"1"));
        s.enqueue(delivery(QoS::ExactlyOnce, b"2"));
        let one = s.next_outgoing(10, now).unwrap().packet_id.unwrap();
        let two = s.next_outgoing(10, now).unwrap().packet_id.unwrap();
        assert_eq!(s.pubrec(one, 0), Err(AckError::WrongFlow(one.get())));
        assert_eq!(s.pubcomp(one), Err(AckError::WrongFlow(one.get())));
        assert_eq!(s.puback(two), Err(AckError::WrongFlow(two.get())));
        assert_eq!(s.pubcomp(two), Err(AckError::WrongFlow(two.get())), "PUBCOMP before PUBREL");
        assert_eq!(s.pubrec(two, 0), Ok(true));
        assert_eq!(s.pubrec(two, 0x80), Err(AckError::WrongFlow(two.get())), "an error after success");
        let unknown = PacketId::new(999).unwrap();
        assert_eq!(s.puback(unknown), Err(AckError::UnknownPacketId(999)));
        assert!(s.abandon(one) && s.abandon(two) && !s.abandon(unknown));
        assert_eq!(s.inflight(), 0);
    }

    #[test]
    fn outbox_limits_drop_and_count() {
        let limits = QueueLimits { max_messages: 2, ..QueueLimits::default() };
        let mut s = online(limits);
        for _ in 0..3 {
            s.enqueue(delivery(QoS::AtLeastOnce, b"x"));
        }
        assert_eq!(s.queued(), 2);
        assert_eq!(s.dropped, 1);
        let mut offline = SessionState::new(QueueLimits::default());
        assert_eq!(offline.enqueue(delivery(QoS::AtMostOnce, b"x")), Enqueued::DroppedOffline);
        let mut small = online(QueueLimits { max_qos0_bytes: 100, ..QueueLimits::default() });
        assert_eq!(small.enqueue(delivery(QoS::AtMostOnce, b"x")), Enqueued::Queued);
        assert_eq!(small.enqueue(delivery(QoS::AtMostOnce, b"x")), Enqueued::DroppedFull);
    }

    #[test]
    fn expired_messages_are_dropped_on_the_way_out() {
        let now = Instant::now();
        let mut s = online(QueueLimits::default());
        let mut d = delivery(QoS::AtLeastOnce, b"x");
        Arc::get_mut(&mut d.message).unwrap().expires_at = Some(now + Duration::from_secs(1));
        s.enqueue(d);
        assert!(s.next_outgoing(10, now + Duration::from_secs(2)).is_none());
        assert_eq!(s.dropped, 1);
    }

    #[test]
    fn packet_ids_skip_those_still_in_flight_after_a_wrap() {
        let now = Instant::now();
        let mut s = online(QueueLimits { max_messages: 0, ..QueueLimits::default() });
        s.enqueue(delivery(QoS::AtLeastOnce, b"old"));
        let old = s.next_outgoing(usize::MAX, now).unwrap().packet_id.unwrap();
        // Go round the whole 16-bit space once while `old` stays unacknowledged.
        for _ in 0..65534 {
            s.enqueue(delivery(QoS::AtLeastOnce, b"x"));
            let id = s.next_outgoing(usize::MAX, now).unwrap().packet_id.unwrap();
            assert_ne!(id, old);
            s.puback(id).unwrap();
        }
        s.enqueue(delivery(QoS::AtLeastOnce, b"y"));
        let next = s.next_outgoing(usize::MAX, now).unwrap().packet_id.unwrap();
        assert_ne!(next, old, "the id still in flight is skipped");
        assert_eq!(s.inflight(), 2);
    }

    #[test]
    fn incoming_qos2_is_routed_once() {
        let mut s = online(QueueLimits::default());
        let id = PacketId::new(9).unwrap();
        assert!(s.receive_qos2(id));
        assert!(!s.receive_qos2(id), "a DUP resend is not routed again");
        assert!(s.release_qos2(id));
        assert!(!s.release_qos2(id));
    }

    #[test]
    fn an_empty_outbox_takes_one_message_of_any_size_and_then_keeps_to_its_limits() {
        let big: &'static [u8] = Box::leak(vec![0u8; 4 << 20].into_boxed_slice());
        let limits = QueueLimits { max_bytes: 1 << 20, max_qos0_bytes: 1 << 10, ..QueueLimits::default() };
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let mut s = online(limits);
            assert_eq!(s.enqueue(delivery(qos, big)), Enqueued::Queued, "{qos:?}: the first fits");
            assert_eq!(s.enqueue(delivery(qos, big)), Enqueued::DroppedFull, "{qos:?}: the second does not");
            assert_eq!(s.dropped, 1);
        }
    }

    #[test]
    fn memory_use_counts_queued_and_inflight_deliveries_until_they_end() {
        let usage = Arc::new(MemoryUse::default());
        let mut s = SessionState::counted(QueueLimits::default(), usage.clone());
        s.online = true;
        let one = delivery(QoS::AtLeastOnce, b"payload").weight();
        s.enqueue(delivery(QoS::AtLeastOnce, b"payload"));
        s.enqueue(delivery(QoS::ExactlyOnce, b"payload"));
        s.enqueue(delivery(QoS::AtMostOnce, b"payload"));
        assert_eq!(usage.bytes(), 3 * one);
        let first = s.next_delivery(10, Instant::now()).unwrap().packet_id.unwrap();
        let second = s.next_delivery(10, Instant::now()).unwrap().packet_id.unwrap();
        assert!(s.next_delivery(10, Instant::now()).unwrap().packet_id.is_none());
        assert_eq!(usage.bytes(), 2 * one, "the QoS 0 message is gone once sent");
        s.puback(first).unwrap();
        assert_eq!(usage.bytes(), one);
        s.pubrec(second, 0).unwrap();
        assert!(usage.bytes() < one, "only the packet id is kept until PUBCOMP");
        s.pubcomp(second).unwrap();
        assert_eq!(usage.bytes(), 0);
        s.enqueue(delivery(QoS::AtLeastOnce, b"payload"));
        drop(s);
        assert_eq!(usage.bytes(), 0, "a session that ends gives its memory back");
    }
}
