//! The session records: the session registry's events (`mqttd_core::Event`), through the same helpers as
//! every record (a will as the v5 PUBLISH of its message, a subscription as the SUBSCRIBE that makes it).

use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use mqttd_core::{ClientIdentity, Event, Expiry, SessionSnapshot, Subscription, Time};
use mqttd_proto::{Packet, PacketId, Properties, Subscribe, Will};

use super::{
    get_message, get_packet, get_str, get_u32, get_u64, get_u8, put_message, put_packet, put_str, StoredMessage,
    SESSION, SESSION_DISCONNECTED, SESSION_ENDED, SESSION_OPENED, SESSION_RESUMED, SUBSCRIBED, UNSUBSCRIBED,
    WILL_FIRED,
};

pub(super) fn put_event(b: &mut BytesMut, event: &Event) {
    match event {
        Event::SessionSnapshot(s) => {
            b.put_u8(SESSION);
            put_session(b, s);
        }
        Event::SessionOpened { identity, connection, expiry, will, at }
        | Event::SessionResumed { identity, connection, expiry, will, at } => {
            let resumed = matches!(event, Event::SessionResumed { .. });
            b.put_u8(if resumed { SESSION_RESUMED } else { SESSION_OPENED });
            put_identity(b, identity);
            b.put_u64_le(*connection);
            b.put_u32_le(expiry.as_v5());
            b.put_u64_le(at.as_millis());
            put_will(b, will.as_ref());
        }
        Event::SessionDisconnected { client_id, at, expiry, will_deleted } => {
            b.put_u8(SESSION_DISCONNECTED);
            put_str(b, client_id);
            b.put_u64_le(at.as_millis());
            b.put_u32_le(expiry.as_v5());
            b.put_u8(u8::from(*will_deleted));
        }
        Event::Subscribed { client_id, filter, subscription } => {
            b.put_u8(SUBSCRIBED);
            put_str(b, client_id);
            put_subscription(b, filter, subscription);
        }
        Event::Unsubscribed { client_id, filter } => {
            b.put_u8(UNSUBSCRIBED);
            put_str(b, client_id);
            put_str(b, filter);
        }
        Event::WillFired { client_id, will, at } => {
            b.put_u8(WILL_FIRED);
            put_str(b, client_id);
            b.put_u64_le(at.as_millis());
            put_will(b, Some(will));
        }
        Event::SessionEnded { client_id, at } => {
            b.put_u8(SESSION_ENDED);
            put_str(b, client_id);
            b.put_u64_le(at.as_millis());
        }
    }
}

/// The body of a registry event of `kind` (after the kind byte).
pub(super) fn get_event(kind: u8, b: &mut BytesMut) -> Option<Event> {
    let event = match kind {
        SESSION_OPENED | SESSION_RESUMED => {
            let identity = get_identity(b)?;
            let connection = get_u64(b)?;
            let expiry = Expiry::from_v5(get_u32(b)?);
            let at = Time::from_millis(get_u64(b)?);
            let will = get_will(b)?;
            match kind {
                SESSION_OPENED => Event::SessionOpened { identity, connection, expiry, will, at },
                _ => Event::SessionResumed { identity, connection, expiry, will, at },
            }
        }
        SESSION_DISCONNECTED => Event::SessionDisconnected {
            client_id: get_str(b)?.into(),
            at: Time::from_millis(get_u64(b)?),
            expiry: Expiry::from_v5(get_u32(b)?),
            will_deleted: get_u8(b)? != 0,
        },
        SUBSCRIBED => {
            let client_id = get_str(b)?.into();
            let (filter, subscription) = get_subscription(b)?;
            Event::Subscribed { client_id, filter, subscription }
        }
        UNSUBSCRIBED => Event::Unsubscribed { client_id: get_str(b)?.into(), filter: get_str(b)? },
        WILL_FIRED => {
            let client_id = get_str(b)?.into();
            let at = Time::from_millis(get_u64(b)?);
            Event::WillFired { client_id, at, will: get_will(b)?? }
        }
        SESSION_ENDED => Event::SessionEnded { client_id: get_str(b)?.into(), at: Time::from_millis(get_u64(b)?) },
        _ => return None,
    };
    Some(event)
}

fn put_identity(b: &mut BytesMut, identity: &ClientIdentity) {
    put_str(b, &identity.client_id);
    match &identity.username {
        Some(u) => {
            b.put_u8(1);
            put_str(b, u);
        }
        None => b.put_u8(0),
    }
    b.put_u16_le(identity.listener);
}

fn get_identity(b: &mut BytesMut) -> Option<ClientIdentity> {
    let client_id: Arc<str> = get_str(b)?.into();
    let username = match get_u8(b)? {
        0 => None,
        _ => Some(get_str(b)?.into()),
    };
    let listener = (b.remaining() >= 2).then(|| b.get_u16_le())?;
    Some(ClientIdentity { client_id, username, listener })
}

/// A will as its Will Delay Interval and the v5 PUBLISH of its message (the delay taken out of its
/// properties), after a presence byte.
fn put_will(b: &mut BytesMut, will: Option<&Will>) {
    let Some(will) = will else { return b.put_u8(0) };
    let mut properties = will.properties.clone();
    let delay = properties.will_delay_interval.take().unwrap_or(0);
    let message = StoredMessage {
        topic: will.topic.clone(),
        payload: will.payload.clone(),
        qos: will.qos,
        retain: will.retain,
        properties,
        expires_at_ms: 0,
    };
    b.put_u8(1);
    b.put_u32_le(delay);
    put_message(b, &message);
}

/// `Some(None)`: no will; `None`: undecodable.
fn get_will(b: &mut BytesMut) -> Option<Option<Will>> {
    if get_u8(b)? == 0 {
        return Some(None);
    }
    let delay = get_u32(b)?;
    let m = get_message(b)?;
    let mut properties = m.properties;
    properties.will_delay_interval = Some(delay).filter(|&d| d > 0);
    Some(Some(Will { topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties }))
}

/// A subscription as the SUBSCRIBE packet that makes it.
fn put_subscription(b: &mut BytesMut, filter: &str, s: &Subscription) {
    let subscribe = Subscribe {
        packet_id: PacketId::new(1).expect("1 is not 0"),
        filters: vec![(filter.to_owned(), s.options)],
        properties: Properties {
            subscription_identifiers: s.identifier.into_iter().collect(),
            ..Properties::default()
        },
    };
    put_packet(b, &Packet::Subscribe(subscribe));
}

fn get_subscription(b: &mut BytesMut) -> Option<(String, Subscription)> {
    let Packet::Subscribe(mut s) = get_packet(b)? else { return None };
    let (filter, options) = s.filters.pop()?;
    Some((filter, Subscription { options, identifier: s.properties.subscription_identifiers.first().copied() }))
}

/// A whole session: identity, expiry, disconnection time (0: a connection was attached), will,
/// subscriptions.
fn put_session(b: &mut BytesMut, s: &SessionSnapshot) {
    put_identity(b, &s.identity);
    b.put_u32_le(s.expiry.as_v5());
    let disconnected_at = s.disconnected_at.filter(|_| s.owner == 0).map_or(0, Time::as_millis);
    b.put_u64_le(disconnected_at);
    put_will(b, s.will.as_ref());
    b.put_u32_le(s.subscriptions.len() as u32);
    for (filter, subscription) in &s.subscriptions {
        put_subscription(b, filter, subscription);
    }
}

pub(super) fn get_session(b: &mut BytesMut) -> Option<SessionSnapshot> {
    let identity = get_identity(b)?;
    let expiry = Expiry::from_v5(get_u32(b)?);
    let disconnected_at = Some(get_u64(b)?).filter(|&ms| ms != 0).map(Time::from_millis);
    let will = get_will(b)?;
    let n = get_u32(b)? as usize;
    let mut subscriptions = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        subscriptions.push(get_subscription(b)?);
    }
    // The store keeps no connection ids: one attached before is detached by `Registry::restart`.
    let owner = if disconnected_at.is_none() { mqttd_core::STALE_CONNECTION } else { 0 };
    Some(SessionSnapshot { identity, owner, expiry, will, disconnected_at, subscriptions })
}
