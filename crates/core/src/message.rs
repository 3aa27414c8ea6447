//! A message as the broker stores it once, and a delivery of it to one session.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mqttd_proto::{PacketId, Properties, Publish, PublishRef, QoS};

/// An application message, stored once and shared by every delivery (`Arc<Message>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// 5.0 properties forwarded unchanged (Message Expiry is recomputed on delivery). Boxed and absent when
    /// empty: most messages have none, and a stored message should not carry 360 empty bytes.
    pub properties: Option<Box<Properties>>,
    /// When the Message Expiry Interval runs out.
    pub expires_at: Option<Instant>,
    /// Identity of the publishing session, for No Local; 0 for messages the broker makes itself.
    pub origin: u64,
    /// Its id in the durable store, once it was stored for a persistent session's queue.
    pub stored: std::sync::OnceLock<u64>,
}

impl Message {
    /// A message without properties or expiry, from session `origin` (0: the broker itself).
    pub fn new(topic: String, payload: Bytes, qos: QoS, retain: bool, origin: u64) -> Message {
        Message { topic, payload, qos, retain, properties: None, expires_at: None, origin, stored: Default::default() }
    }

    /// An empty message shared by every QoS 2 delivery past PUBREC: only its packet id is left to
    /// release, so the real message is let go.
    pub fn released() -> Arc<Message> {
        static RELEASED: std::sync::OnceLock<Arc<Message>> = std::sync::OnceLock::new();
        RELEASED.get_or_init(|| Arc::new(Message::new(String::new(), Bytes::new(), QoS::ExactlyOnce, false, 0))).clone()
    }

    /// The properties, empty when there are none.
    pub fn properties(&self) -> &Properties {
        static NONE: Properties = Properties::EMPTY;
        self.properties.as_deref().unwrap_or(&NONE)
    }

    /// `properties` as stored: `None` when empty.
    pub fn store_properties(properties: Properties) -> Option<Box<Properties>> {
        (!properties.is_empty()).then(|| Box::new(properties))
    }

    /// Bytes this message accounts for in queue budgets.
    pub fn cost(&self) -> usize {
        self.topic.len() + self.payload.len() + 64
    }

    /// Whether the Message Expiry Interval has passed at `now` [MQTT-3.3.2-5].
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The Message Expiry Interval to forward: the time left until `at`, rounded up [MQTT-3.3.2-6], so a
/// message that has not expired never goes out with 0 (nor 3 where 3.2 s are left).
fn seconds_left(at: Instant, now: Instant) -> u32 {
    let left = at.saturating_duration_since(now);
    let whole = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    u32::try_from(whole).unwrap_or(u32::MAX)
}

/// One message on its way to one session, at the QoS it is delivered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// min(published QoS, granted QoS) [MQTT-3.8.4-6].
    pub qos: QoS,
    /// The RETAIN flag to send.
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions (5.0).
    pub subscription_ids: Vec<u32>,
    /// How many sessions the message went to at once (at least 1): a queued delivery holds its queue
    /// entry and this share of the message ([`Delivery::weight`]).
    pub shared_by: u16,
    /// The shared subscription group it was routed through (0: none), so that a member whose session
    /// ends hands it to another member [MQTT-4.8.2-6].
    pub group: u32,
}

/// Bytes a queued delivery's entry takes, whatever the message.
pub const QUEUE_ENTRY: usize = std::mem::size_of::<Delivery>();

impl Delivery {
    /// The memory this delivery holds while queued, for backpressure: its entry and its share of the
    /// message (a message routed to 100 subscribers is stored once).
    pub fn weight(&self) -> usize {
        QUEUE_ENTRY + self.message.cost() / usize::from(self.shared_by.max(1))
    }

    /// Whether the stored properties must be adjusted for this delivery.
    fn adjusts_properties(&self) -> bool {
        let m = &self.message;
        m.expires_at.is_some() || !self.subscription_ids.is_empty() || m.properties().topic_alias.is_some()
    }

    /// The properties as sent: the remaining Message Expiry [MQTT-3.3.2-6], this delivery's subscription
    /// identifiers, no topic alias.
    fn adjusted_properties(&self, now: Instant) -> Properties {
        let m = &self.message;
        let mut properties = m.properties().clone();
        if let Some(at) = m.expires_at {
            properties.message_expiry_interval = Some(seconds_left(at, now));
        }
        properties.topic_alias = None;
        properties.subscription_identifiers.clone_from(&self.subscription_ids);
        properties
    }

    /// The PUBLISH for this delivery with borrowed fields, for encoding without copying the message.
    /// `scratch` holds adjusted properties when the stored ones cannot be sent as they are.
    pub fn borrowed<'a>(
        &'a self,
        packet_id: Option<PacketId>,
        dup: bool,
        now: Instant,
        scratch: &'a mut Properties,
    ) -> PublishRef<'a> {
        let m = &self.message;
        let properties = if self.adjusts_properties() {
            *scratch = self.adjusted_properties(now);
            &*scratch
        } else {
            m.properties()
        };
        PublishRef {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: &m.topic,
            packet_id,
            properties,
            payload: &m.payload,
        }
    }

    /// The PUBLISH packet for this delivery. `now` recomputes the remaining Message Expiry [MQTT-3.3.2-6].
    pub fn to_publish(&self, packet_id: Option<PacketId>, dup: bool, now: Instant) -> Publish {
        let m = &self.message;
        let properties = self.adjusted_properties(now);
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: m.topic.clone(),
            packet_id,
            properties,
            payload: m.payload.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn the_expiry_forwarded_is_the_time_left_rounded_up() {
        let now = Instant::now();
        let left = |d: Duration| super::seconds_left(now + d, now);
        assert_eq!(left(Duration::from_millis(1)), 1);
        assert_eq!(left(Duration::from_millis(3200)), 4);
        assert_eq!(left(Duration::from_secs(4)), 4);
        assert_eq!(super::seconds_left(now, now + Duration::from_secs(1)), 0, "expired");
    }
}
