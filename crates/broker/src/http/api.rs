//! The JSON admin API under `/api/v1/`: clients and their sessions, kicking a client, subscriptions,
//! retained messages, publishing, the recent events. Errors are `{"error": ..., "status": ...}` with the
//! matching HTTP status. Passwords are never shown; neither are will payloads.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use mqttd_core::Message;
use mqttd_proto::{topic, QoS};
use serde_json::{json, Value};

use super::web::{decode, error, json, paging, Body, Query};
use crate::broker::Broker;
use crate::observe::{Event, EventKind};
use crate::session::{Expiry, Session};

/// Dispatches `method` on `path` (after `/api/v1/`).
pub async fn route(broker: &Arc<Broker>, method: &str, path: &str, query: &Query, body: &Bytes) -> Response<Body> {
    let result = match (method, path) {
        ("GET", "overview") => Ok(json(StatusCode::OK, &overview(broker))),
        ("GET", "clients") => clients(broker, query),
        ("GET", p) if p.starts_with("clients/") => client(broker, &decode(&p["clients/".len()..], false)),
        ("DELETE", p) if p.starts_with("clients/") => kick(broker, &decode(&p["clients/".len()..], false), query).await,
        ("GET", "subscriptions") => subscriptions(broker, query),
        ("GET", "retained") => retained(broker, query),
        ("DELETE", p) if p.starts_with("retained/") => delete_retained(broker, &decode(&p["retained/".len()..], false)),
        ("POST", "publish") => publish(broker, body),
        ("GET", "events") => events(broker, query),
        (_, "overview" | "clients" | "subscriptions" | "retained" | "publish" | "events") => {
            Err(error(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed on /api/v1/{path}")))
        }
        _ => Err(error(StatusCode::NOT_FOUND, &format!("no such API route: {method} /api/v1/{path}"))),
    };
    result.unwrap_or_else(|e| e)
}

type Answer = Result<Response<Body>, Response<Body>>;

/// The figures the dashboard shows; also sent on every tick of the event stream.
pub fn overview(broker: &Broker) -> Value {
    let s = &broker.stats;
    let c = &broker.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let sessions = broker.session_count() as u64;
    let online = get(&s.clients_connected);
    let received: u64 = (0..3).map(|q| c.received_at(q).0).sum();
    let sent: u64 = (0..3).map(|q| c.sent_at(q).0).sum();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": broker.started.elapsed().as_secs(),
        "connections": online,
        "sessions_online": online,
        "sessions_offline": sessions.saturating_sub(online),
        "subscriptions": broker.subscription_count(),
        "retained": broker.retained_count(),
        "messages_received": received,
        "messages_sent": sent,
        "bytes_received": get(&s.bytes_received),
        "bytes_sent": get(&s.bytes_sent),
        "messages_dropped": get(&s.messages_dropped),
        "wills_published": c.wills(crate::observe::WillCount::Published),
        "last_event": broker.events.last_seq(),
    })
}

/// Every session, sorted by client id.
fn all_sessions(broker: &Broker) -> Vec<Arc<Session>> {
    let mut sessions: Vec<Arc<Session>> = broker.sessions.lock().values().cloned().collect();
    sessions.sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
    sessions
}

fn clients(broker: &Broker, query: &Query) -> Answer {
    let (offset, limit) = paging(query)?;
    let listener = match query.get("listener") {
        None => None,
        Some(v) => Some(v.parse::<u16>().map_err(|_| {
            error(StatusCode::BAD_REQUEST, &format!("listener must be a listener index (0, 1, ...), not {v:?}"))
        })?),
    };
    let prefix = query.get("prefix").unwrap_or("");
    let user = query.get("user");
    let matching: Vec<Arc<Session>> = all_sessions(broker)
        .into_iter()
        .filter(|s| s.client_id.starts_with(prefix))
        .filter(|s| {
            if user.is_none() && listener.is_none() {
                return true;
            }
            let id = s.identity();
            user.is_none_or(|u| id.username.as_deref() == Some(u)) && listener.is_none_or(|l| id.listener == l)
        })
        .collect();
    let page: Vec<Value> = matching.iter().skip(offset).take(limit).map(|s| summary(broker, s)).collect();
    Ok(json(StatusCode::OK, &json!({ "total": matching.len(), "offset": offset, "limit": limit, "clients": page })))
}

/// One client in a list.
fn summary(broker: &Broker, session: &Session) -> Value {
    let info = broker.events.info(&session.client_id);
    let info = info.as_ref();
    let entry = broker.session_entry(&session.client_id);
    let entry = entry.as_ref();
    let identity = session.identity();
    let mut value = json!({
        "client_id": &*session.client_id,
        "username": identity.username.as_deref(),
        "listener": identity.listener,
        "connected": entry.is_some_and(|e| e.attached()),
        "protocol": info.map(|i| i.protocol.to_string()),
        "connected_at_ms": info.map(|i| i.connected_at_ms),
        "peer": info.map(|i| i.peer.to_string()),
        "subscriptions": entry.map_or(0, |e| e.subscriptions.len()),
    });
    let state = session.state.lock();
    value["inflight"] = json!(state.inflight());
    value["queued"] = json!(state.queued());
    value
}

fn client(broker: &Broker, client_id: &str) -> Answer {
    let session = broker.session(client_id).ok_or_else(|| unknown(client_id))?;
    let mut value = summary(broker, &session);
    let info = broker.events.info(client_id);
    let info = info.as_ref();
    let Some(entry) = broker.session_entry(client_id) else { return Err(unknown(client_id)) };
    value["keep_alive"] = json!(info.map(|i| i.keep_alive));
    value["clean_start"] = json!(info.map(|i| i.clean_start));
    value["session_expiry"] = match entry.expiry {
        Expiry::Immediate => json!(0),
        Expiry::After(d) => json!(d.as_secs()),
        Expiry::Never => json!("never"),
    };
    value["will"] = json!(entry.will.as_ref().filter(|_| entry.attached()).map(|w| json!({
        "topic": w.topic, "qos": w.qos as u8, "retain": w.retain,
        "delay_seconds": crate::session::will_delay(w).as_secs(),
    })));
    value["pending_will"] = json!(entry.pending_will().map(|w| json!({ "topic": w.topic })));
    value["subscription_list"] = entry
        .subscriptions
        .iter()
        .map(|(filter, s)| {
            let o = s.options;
            json!({ "filter": filter, "qos": o.qos as u8, "no_local": o.no_local,
                    "retain_as_published": o.retain_as_published, "retain_handling": o.retain_handling as u8,
                    "subscription_identifier": s.identifier })
        })
        .collect();
    value["queued_bytes"] = json!(session.state.lock().queued_bytes());
    Ok(json(StatusCode::OK, &value))
}

fn unknown(client_id: &str) -> Response<Body> {
    error(StatusCode::NOT_FOUND, &format!("no client or session with id {client_id:?}"))
}

/// `DELETE /clients/ID`: ends its connection (`will=true`: publishing its will), and with `discard=true`
/// its session too.
async fn kick(broker: &Broker, client_id: &str, query: &Query) -> Answer {
    if broker.session(client_id).is_none() {
        return Err(unknown(client_id));
    }
    let with_will = query.flag("will", false);
    let kicked = broker.kick_client(client_id, with_will);
    let discarded = query.flag("discard", false) && broker.discard_session(client_id).await;
    if query.flag("discard", false) && !discarded {
        let why = format!("the session of {client_id:?} could not be discarded: its connection did not end in time");
        return Err(error(StatusCode::CONFLICT, &why));
    }
    tracing::info!(%client_id, kicked, with_will, discarded, "client kicked through the admin API");
    Ok(json(StatusCode::OK, &json!({ "client_id": client_id, "kicked": kicked, "discarded": discarded })))
}

fn subscriptions(broker: &Broker, query: &Query) -> Answer {
    let (offset, limit) = paging(query)?;
    let prefix = query.get("prefix").unwrap_or("");
    let filter = query.get("filter");
    let mut rows = Vec::new();
    for session in all_sessions(broker).into_iter().filter(|s| s.client_id.starts_with(prefix)) {
        let Some(entry) = broker.session_entry(&session.client_id) else { continue };
        for (f, s) in entry.subscriptions.iter().filter(|(f, _)| filter.is_none_or(|want| f.as_str() == want)) {
            let o = s.options;
            rows.push(json!({ "client_id": &*session.client_id, "filter": f, "qos": o.qos as u8,
                              "no_local": o.no_local, "retain_as_published": o.retain_as_published }));
        }
    }
    let total = rows.len();
    let page: Vec<Value> = rows.into_iter().skip(offset).take(limit).collect();
    Ok(json(StatusCode::OK, &json!({ "total": total, "offset": offset, "limit": limit, "subscriptions": page })))
}

/// A payload as JSON: text when it is UTF-8, else base64.
fn payload_json(payload: &[u8]) -> (Value, &'static str) {
    match std::str::from_utf8(payload) {
        Ok(text) => (json!(text), "utf-8"),
        Err(_) => {
            use base64::Engine;
            (json!(base64::engine::general_purpose::STANDARD.encode(payload)), "base64")
        }
    }
}

fn retained(broker: &Broker, query: &Query) -> Answer {
    let (offset, limit) = paging(query)?;
    let filter = query.get("filter").unwrap_or("#");
    topic::validate_topic_filter(filter)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("filter {filter:?} is not a topic filter: {e}")))?;
    let mut found = broker.retained.read().matching(filter, Instant::now());
    found.sort_unstable_by(|a, b| a.topic.cmp(&b.topic));
    let page: Vec<Value> = found
        .iter()
        .skip(offset)
        .take(limit)
        .map(|m| {
            let (payload, encoding) = payload_json(&m.payload);
            json!({ "topic": m.topic, "qos": m.qos as u8, "size": m.payload.len(),
                    "payload": payload, "payload_encoding": encoding })
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({ "total": found.len(), "offset": offset, "limit": limit, "retained": page })))
}

fn delete_retained(broker: &Broker, topic_name: &str) -> Answer {
    let removed = {
        let mut retained = broker.retained.write();
        // An empty payload clears the topic [MQTT-3.3.1-6]; nothing is published to subscribers.
        let empty = Message::new(topic_name.to_owned(), Bytes::new(), QoS::AtMostOnce, true, 0);
        retained.set(Arc::new(empty))
    };
    if !removed {
        return Err(error(StatusCode::NOT_FOUND, &format!("no retained message on topic {topic_name:?}")));
    }
    Ok(json(StatusCode::OK, &json!({ "topic": topic_name, "deleted": true })))
}

/// `POST /publish` with `{"topic", "payload", "qos", "retain", "payload_encoding": "utf-8" | "base64"}`.
fn publish(broker: &Broker, body: &Bytes) -> Answer {
    let bad = |why: String| error(StatusCode::BAD_REQUEST, &why);
    let request: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let topic_name = request["topic"].as_str().ok_or_else(|| bad("\"topic\" (a string) is required".into()))?;
    topic::validate_topic_name(topic_name)
        .map_err(|e| bad(format!("topic {topic_name:?} is not a topic name: {e}")))?;
    let text = request["payload"].as_str().unwrap_or("");
    let payload = match request["payload_encoding"].as_str().unwrap_or("utf-8") {
        "utf-8" => Bytes::copy_from_slice(text.as_bytes()),
        "base64" => {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD.decode(text);
            Bytes::from(decoded.map_err(|e| bad(format!("payload is not base64: {e}")))?)
        }
        other => return Err(bad(format!("payload_encoding must be utf-8 or base64, not {other:?}"))),
    };
    let qos = match request["qos"].as_u64().unwrap_or(0) {
        q @ 0..=2 => QoS::from_u8(q as u8).unwrap_or_default(),
        q => return Err(bad(format!("qos must be 0, 1 or 2, not {q}"))),
    };
    let retain = request["retain"].as_bool().unwrap_or(false);
    let message = Message::new(topic_name.to_owned(), payload, qos, retain, 0);
    let routed = broker.route(Arc::new(message));
    Ok(json(StatusCode::OK, &json!({ "topic": topic_name, "delivered_to": routed.reached })))
}

/// One event as JSON.
pub fn event_json(event: &Event) -> Value {
    let mut value = json!({ "seq": event.seq, "at_ms": event.at_ms, "client_id": &*event.client_id });
    match &event.kind {
        EventKind::Connected => value["kind"] = json!("connected"),
        EventKind::Disconnected { reason, will } => {
            value["kind"] = json!("disconnected");
            value["reason"] = json!(reason.name());
            value["will"] = json!(will);
        }
        EventKind::WillPublished { topic } => {
            value["kind"] = json!("will_published");
            value["topic"] = json!(topic);
        }
        EventKind::Refused { reason } => {
            value["kind"] = json!("refused");
            value["reason"] = json!(reason);
        }
        EventKind::Kicked => value["kind"] = json!("kicked"),
    }
    value
}

fn events(broker: &Broker, query: &Query) -> Answer {
    let number = |key: &str, default: u64| match query.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| error(StatusCode::BAD_REQUEST, &format!("{key} must be a non-negative integer, not {v:?}"))),
    };
    let since = number("since", 0)?;
    let limit = number("limit", 100)?;
    if !(1..=crate::observe::EVENT_RING as u64).contains(&limit) {
        let why = format!("limit must be 1 to {}, not {limit}", crate::observe::EVENT_RING);
        return Err(error(StatusCode::BAD_REQUEST, &why));
    }
    let list: Vec<Value> = broker.events.since(since, limit as usize).iter().map(event_json).collect();
    Ok(json(StatusCode::OK, &json!({ "last": broker.events.last_seq(), "events": list })))
}
