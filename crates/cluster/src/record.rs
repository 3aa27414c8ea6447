//! A session as the sessions bucket holds it, and its bytes: the owner node, the epoch (one more at each
//! claim), the epoch of the connection that set the will (its `Nats-Msg-Id`, so two nodes firing one will
//! publish it once), and the session ([`SessionRecord`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqttd_core::cluster::SessionRecord;
use mqttd_core::Message;
use mqttd_proto::{QoS, RetainHandling, SubscriptionOptions, Will};

use crate::envelope;

/// A session as the bucket holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub owner: u64,
    pub epoch: u64,
    pub will_epoch: u64,
    pub record: SessionRecord,
}

/// Whether a session held by the bucket has not expired at `now_ms`: connected, or disconnected for less
/// than its Session Expiry Interval.
pub fn alive(record: &SessionRecord, now_ms: u64) -> bool {
    match (record.expiry, record.disconnected_at_ms) {
        (0, 0) => false,
        (_, 0) | (u32::MAX, _) => true,
        (expiry, at) => now_ms < at + u64::from(expiry) * 1000,
    }
}

/// The Will Delay Interval of a will, in seconds.
pub fn will_delay(will: &Will) -> u32 {
    will.properties.will_delay_interval.unwrap_or(0)
}

/// A will as the message it becomes (without its Will Delay Interval, which no PUBLISH carries).
pub fn will_message(will: &Will) -> Message {
    let mut properties = will.properties.clone();
    properties.will_delay_interval = None;
    let mut message = Message::new(will.topic.clone(), will.payload.clone(), will.qos, will.retain, 0);
    message.properties = Message::store_properties(properties);
    message
}

const FORMAT: u8 = 2;
/// Format, owner, epoch, will epoch, expiry, disconnected at.
const HEADER: usize = 1 + 8 + 8 + 8 + 4 + 8;

pub fn encode(stored: &Stored) -> Bytes {
    let r = &stored.record;
    let mut buf = BytesMut::with_capacity(64 + r.client_id.len());
    buf.put_u8(FORMAT);
    buf.put_u64_le(stored.owner);
    buf.put_u64_le(stored.epoch);
    buf.put_u64_le(stored.will_epoch);
    buf.put_u32_le(r.expiry);
    buf.put_u64_le(r.disconnected_at_ms);
    put_str(&mut buf, &r.client_id);
    put_opt(&mut buf, r.username.as_deref().map(str::as_bytes));
    buf.put_u32_le(r.subscriptions.len() as u32);
    for (filter, options, id) in &r.subscriptions {
        put_str(&mut buf, filter);
        let flags = options.qos as u8
            | u8::from(options.no_local) << 2
            | u8::from(options.retain_as_published) << 3
            | (options.retain_handling as u8) << 4;
        buf.put_u8(flags);
        buf.put_u32_le(id.unwrap_or(0));
    }
    let will = r.will.as_ref().and_then(|w| {
        let origin = envelope::Origin { node: 0, sequence: 0 };
        Some((will_delay(w), envelope::encode(&will_message(w), origin).ok()?))
    });
    match will {
        Some((delay, bytes)) => {
            buf.put_u32_le(delay);
            put_opt(&mut buf, Some(&bytes));
        }
        None => {
            buf.put_u32_le(0);
            put_opt(&mut buf, None);
        }
    }
    buf.freeze()
}

pub fn decode(mut bytes: &[u8]) -> Option<Stored> {
    if bytes.len() < HEADER || bytes.get_u8() != FORMAT {
        return None;
    }
    let owner = bytes.get_u64_le();
    let epoch = bytes.get_u64_le();
    let will_epoch = bytes.get_u64_le();
    let expiry = bytes.get_u32_le();
    let disconnected_at_ms = bytes.get_u64_le();
    let client_id = get_str(&mut bytes)?;
    let username = get_opt(&mut bytes)?.map(|b| String::from_utf8(b.to_vec())).transpose().ok()?;
    let count = get_u32(&mut bytes)? as usize;
    // Each takes at least 9 bytes: a count larger than what is left is damage, not an allocation.
    if count > bytes.len() / 9 {
        return None;
    }
    let mut subscriptions = Vec::with_capacity(count);
    for _ in 0..count {
        let filter = get_str(&mut bytes)?;
        let flags = get_u8(&mut bytes)?;
        let id = get_u32(&mut bytes)?;
        let options = SubscriptionOptions {
            qos: QoS::from_u8(flags & 3)?,
            no_local: flags & 4 != 0,
            retain_as_published: flags & 8 != 0,
            retain_handling: match flags >> 4 {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                _ => RetainHandling::DoNotSend,
            },
        };
        subscriptions.push((filter, options, (id != 0).then_some(id)));
    }
    let delay = get_u32(&mut bytes)?;
    let will = match get_opt(&mut bytes)? {
        None => None,
        Some(bytes) => {
            let (message, _) = envelope::decode(bytes)?;
            let mut properties = message.properties().clone();
            properties.will_delay_interval = (delay > 0).then_some(delay);
            let (topic, payload) = (message.topic.clone(), message.payload.clone());
            Some(Will { topic, payload, qos: message.qos, retain: message.retain, properties })
        }
    };
    let record = SessionRecord { client_id, username, expiry, disconnected_at_ms, subscriptions, will };
    Some(Stored { owner, epoch, will_epoch, record })
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32_le(s.len() as u32);
    buf.put_slice(s.as_bytes());
}

fn put_opt(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            buf.put_u8(1);
            buf.put_u32_le(bytes.len() as u32);
            buf.put_slice(bytes);
        }
        None => buf.put_u8(0),
    }
}

fn get_u8(bytes: &mut &[u8]) -> Option<u8> {
    (!bytes.is_empty()).then(|| bytes.get_u8())
}

fn get_u32(bytes: &mut &[u8]) -> Option<u32> {
    (bytes.len() >= 4).then(|| bytes.get_u32_le())
}

fn get_bytes<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = get_u32(bytes)? as usize;
    if bytes.len() < len {
        return None;
    }
    let (s, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(s)
}

fn get_str(bytes: &mut &[u8]) -> Option<String> {
    String::from_utf8(get_bytes(bytes)?.to_vec()).ok()
}

fn get_opt<'a>(bytes: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    match get_u8(bytes)? {
        0 => Some(None),
        _ => Some(Some(get_bytes(bytes)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_comes_back_from_its_bytes_and_damage_decodes_to_nothing() {
        let options = SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: false,
            retain_handling: RetainHandling::SendIfNew,
        };
        let mut will = Will {
            topic: "gone/c".into(),
            payload: bytes::Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        };
        will.properties.will_delay_interval = Some(7);
        will.properties.content_type = Some("text/plain".into());
        let record = SessionRecord {
            client_id: "c é".into(),
            username: Some("u".into()),
            expiry: 300,
            disconnected_at_ms: 17,
            subscriptions: vec![("a/#".into(), options, Some(9)), ("b".into(), SubscriptionOptions::default(), None)],
            will: Some(will),
        };
        let stored = Stored { owner: 5, epoch: 2, will_epoch: 1, record };
        let bytes = encode(&stored);
        assert_eq!(decode(&bytes), Some(stored));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_session_is_alive_while_connected_or_within_its_expiry() {
        let record = |expiry, disconnected_at_ms| SessionRecord { expiry, disconnected_at_ms, ..Default::default() };
        let now = envelope::now_ms();
        assert!(alive(&record(10, 0), now));
        assert!(!alive(&record(0, 0), now), "a clean session has nothing to resume");
        assert!(alive(&record(u32::MAX, 1), now));
        assert!(alive(&record(60, now), now));
        assert!(!alive(&record(60, now - 61_000), now));
    }
}
