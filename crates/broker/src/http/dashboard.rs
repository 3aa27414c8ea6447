//! The dashboard: one static page (`dashboard.html`, embedded in the binary, no build step) and the
//! server-sent event stream it follows: every [`TICK`] the overview figures and the events since the
//! last tick.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::api::{event_json, overview};
use super::web::{full, Body};
use crate::broker::Broker;

const PAGE: &str = include_str!("dashboard.html");

/// How often the event stream sends the figures.
pub const TICK: Duration = Duration::from_secs(1);

/// Events sent with the first tick, so a page opened late still shows who died recently.
const BACKLOG: u64 = 50;

pub fn page() -> Response<Body> {
    full(StatusCode::OK, "text/html; charset=utf-8", PAGE)
}

/// `GET /api/v1/events/stream`: `data: {"overview": ..., "events": [...], "at_ms": ...}` every tick,
/// until the client goes away or the broker shuts down.
pub fn stream(broker: Arc<Broker>) -> Response<Body> {
    let start = broker.events.last_seq().saturating_sub(BACKLOG);
    let ticks = futures_util::stream::unfold((broker, start, true), |(broker, seq, first)| async move {
        if !first {
            tokio::time::sleep(TICK).await;
        }
        if broker.shutting_down() {
            return None;
        }
        let events = broker.events.since(seq, crate::observe::EVENT_RING);
        let last = events.last().map_or(seq, |e| e.seq);
        let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let events: Vec<serde_json::Value> = events.iter().map(event_json).collect();
        let data = json!({ "overview": overview(&broker), "events": events, "at_ms": at_ms as u64 });
        let frame = Frame::data(Bytes::from(format!("data: {data}\n\n")));
        Some((Ok::<_, Infallible>(frame), (broker, last, false)))
    });
    let mut response = Response::new(StreamBody::new(ticks).boxed_unsync());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
