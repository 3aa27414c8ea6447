//! What goes out of a session's outbox into the connection's write buffer in one turn: messages owed
//! again after a reconnect, then new deliveries within the inflight window that the client may read and
//! take (ACL, Maximum Packet Size, topic aliases, mount point), counted once per turn.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mqttd_core::SessionState;
use mqttd_proto::{encode_publish, publish_len, Packet, Properties};

use crate::alias::TopicAliases;
use crate::backpressure::RELIEVED_BACKLOG;
use crate::broker::{Broker, ClientIdentity, Stats};
use crate::handle::Negotiated;
use crate::security::SecuritySet;
use crate::session::Session;
use crate::transport::Transport;

/// One drain of the outbox (`Connection::drain`): what it works with besides the session's state and the transport.
pub(crate) struct Drain<'a> {
    pub broker: &'a Broker,
    pub session: &'a Session,
    pub negotiated: Negotiated,
    pub mount_point: Option<&'a str>,
    /// Fill the write buffer up to this ([`Transport::write_limit`]).
    pub limit: usize,
    pub now: Instant,
}

/// What [`Drain::deliver`] wrote: messages and payload bytes, and both by QoS for the metrics.
#[derive(Default)]
pub(crate) struct Sent {
    messages: u64,
    bytes: u64,
    by_qos: [[u64; 2]; 3],
}

impl Drain<'_> {
    /// Messages sent before and not acknowledged, again, with DUP [MQTT-4.4.0-1].
    pub(crate) fn resend(&self, state: &mut SessionState, io: &mut Transport) {
        let (version, send_window) = (self.negotiated.version, usize::from(self.negotiated.send_window));
        while io.output_len() < self.limit {
            let Some(mut packet) = state.next_resend(send_window, self.now) else { break };
            if let (Packet::Publish(p), Some(_)) = (&mut packet, self.mount_point) {
                p.topic = crate::settings::unmounted(self.mount_point, &p.topic).to_owned();
            }
            if let (Some(max), Packet::Publish(p)) = (self.negotiated.client_max_packet, &packet) {
                if mqttd_proto::encoded_len(&packet, version) > max.get() as usize {
                    // This connection's client takes less than the one it was first sent to [MQTT-3.1.2-25].
                    state.abandon(p.packet_id.expect("a resent PUBLISH has a packet id"));
                    continue;
                }
            }
            crate::trace::sent(&self.session.client_id, &packet);
            io.queue(&packet, version);
        }
    }

    /// New deliveries from the outbox, within the inflight window, that the client may read.
    pub(crate) fn deliver(
        &self,
        state: &mut SessionState,
        io: &mut Transport,
        mut aliases: Option<&mut TopicAliases>,
        read_check: Option<&(Arc<SecuritySet>, ClientIdentity)>,
    ) -> Sent {
        let (version, send_window) = (self.negotiated.version, usize::from(self.negotiated.send_window));
        let mut scratch = Properties::default();
        let mut sent = Sent::default();
        while io.output_len() < self.limit {
            let allowed = |d: &mqttd_core::Delivery| {
                read_check.is_none_or(|(security, id)| crate::broker::may_read_as(security, id, &d.message.topic))
            };
            let Some(out) = state.next_delivery_where(send_window, self.now, allowed) else { break };
            if let (Some(packet_id), true) = (out.packet_id, state.durable) {
                // Resent with this packet id after a restart [MQTT-4.4.0-1].
                let stored = out.delivery.message.stored.get().copied();
                self.broker.persist_sent(self.session, stored, packet_id, false);
            }
            let mut publish = out.delivery.borrowed(out.packet_id, false, self.now, &mut scratch);
            publish.topic = crate::settings::unmounted(self.mount_point, publish.topic);
            let with_alias;
            if let Some((alias, known)) = aliases.as_deref_mut().and_then(|a| a.outgoing(publish.topic)) {
                // The topic goes once with its alias, then the alias alone [MQTT-3.3.2.3.4].
                let mut properties = publish.properties.clone();
                properties.topic_alias = Some(alias);
                with_alias = properties;
                publish.properties = &with_alias;
                if known {
                    publish.topic = "";
                }
            }
            if self.negotiated.client_max_packet.is_some_and(|max| publish_len(&publish, version) > max.get() as usize)
            {
                self.broker.counters.dropped(crate::observe::DropCause::TooLarge);
                // Too large for this client: discard as if delivered [MQTT-3.1.2-25].
                if let Some(id) = out.packet_id {
                    state.abandon(id);
                }
                continue;
            }
            if let Err(e) = encode_publish(&publish, version, io.wbuf()) {
                tracing::warn!(peer = %io.peer, "cannot encode PUBLISH: {e}");
                continue;
            }
            crate::trace::sent_publish(&self.session.client_id, &publish);
            sent.messages += 1;
            sent.bytes += publish.payload.len() as u64;
            let counted = &mut sent.by_qos[publish.qos as usize];
            counted[0] += 1;
            counted[1] += publish.payload.len() as u64;
        }
        sent
    }

    /// Counts what went out, once per turn, and relieves publishers waiting for this subscriber.
    pub(crate) fn count(&self, state: &SessionState, sent: &Sent) {
        if sent.messages == 0 {
            return;
        }
        let stats = &self.broker.stats;
        Stats::add(&stats.messages_sent, sent.messages);
        Stats::add(&stats.packets_sent, sent.messages);
        Stats::add(&stats.publish_bytes_sent, sent.bytes);
        self.broker.counters.sent(&sent.by_qos);
        self.session.made_progress();
        if self.session.waiting.load(Ordering::SeqCst) > 0
            && state.backlog() <= RELIEVED_BACKLOG
            && !state.nearly_full()
        {
            // Publishers waiting on this subscriber may read again. Checked under the `state` lock the
            // waiters check their condition under, so a waiter is either relieved or notified.
            self.broker.drained.notify_waiters();
        }
    }
}
