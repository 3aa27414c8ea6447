//! A publisher's task: encodes batches of PUBLISH frames from a template into one buffer, writes them
//! with one call, and keeps up to `window` QoS 1/2 messages in flight while reading acknowledgements.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mqttd_proto::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::BenchError;
use crate::subscriber::Shared;
use crate::wire::{self, Conn, Template, PUBREL, READ_CHUNK};

/// Bytes of PUBLISH frames encoded before one write.
const BATCH_BYTES: usize = 64 * 1024;

/// What one publisher does.
pub(crate) struct PubPlan {
    pub id: u32,
    pub template: Template,
    pub qos: QoS,
    /// QoS 1/2 messages in flight at most.
    pub window: usize,
    /// msg/s of this publisher, if limited.
    pub rate: Option<f64>,
    pub epoch: Instant,
    /// Stop sending new messages.
    pub deadline: Instant,
    /// Stop waiting for acknowledgements.
    pub drain_deadline: Instant,
}

/// What one publisher did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PubResult {
    pub sent: u64,
    /// QoS 1/2 flows completed (PUBACK, or PUBCOMP).
    pub completed: u64,
    /// Acknowledgements with a failure reason code (5.0).
    pub refused: u64,
    /// Still in flight when the drain ended.
    pub unacked: u64,
}

/// Packet ids and the step each in-flight message has reached.
struct InFlight {
    /// 0: free, 1: waiting for PUBACK / PUBREC, 2: waiting for PUBCOMP.
    state: Vec<u8>,
    next: u16,
    count: usize,
}

impl InFlight {
    fn new() -> InFlight {
        InFlight { state: vec![0; 65536], next: 0, count: 0 }
    }

    /// A free packet id; the caller keeps `count` below 65535.
    fn take(&mut self) -> u16 {
        loop {
            self.next = if self.next == u16::MAX { 1 } else { self.next + 1 };
            if self.state[usize::from(self.next)] == 0 {
                self.state[usize::from(self.next)] = 1;
                self.count += 1;
                return self.next;
            }
        }
    }

    /// Moves `id` from step `from` to `to` (0 frees it); false if it was not at `from`.
    fn step(&mut self, id: u16, from: u8, to: u8) -> bool {
        let slot = &mut self.state[usize::from(id)];
        if *slot != from {
            return false;
        }
        *slot = to;
        if to == 0 {
            self.count -= 1;
        }
        true
    }
}

pub(crate) async fn run(conn: Conn, plan: PubPlan, shared: Arc<Shared>) -> Result<PubResult, BenchError> {
    let Conn { mut stream, mut rbuf, .. } = conn;
    let (mut rd, mut wr) = stream.split();
    let mut wbuf = BytesMut::with_capacity(BATCH_BYTES + 2 * plan.template.len());
    let mut wpos = 0;
    let mut inflight = InFlight::new();
    let mut result = PubResult::default();
    let per_batch = (BATCH_BYTES / plan.template.len()).max(1);
    let qos = plan.qos != QoS::AtMostOnce;
    let mut seq: u32 = 0;
    loop {
        let now = Instant::now();
        let sending = now < plan.deadline;
        let mut wake = if sending { plan.deadline } else { plan.drain_deadline };
        if sending && wpos == wbuf.len() {
            wbuf.clear();
            wpos = 0;
            let mut n = per_batch;
            if qos {
                n = n.min(plan.window - inflight.count);
            }
            if let Some(rate) = plan.rate {
                let due = ((now - plan.epoch).as_secs_f64() * rate) as u64 + 1;
                n = n.min(due.saturating_sub(u64::from(seq)) as usize);
                wake = wake.min(plan.epoch + Duration::from_secs_f64((f64::from(seq) + n as f64) / rate));
            }
            let sent_ns = (now - plan.epoch).as_nanos() as u64;
            for _ in 0..n {
                let packet_id = if qos { inflight.take() } else { 0 };
                plan.template.append(&mut wbuf, packet_id, plan.id, seq, sent_ns);
                seq += 1;
            }
            if n > 0 {
                shared.sent.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        if rbuf.capacity() - rbuf.len() < 1024 {
            rbuf.reserve(READ_CHUNK / 4);
        }
        if wpos < wbuf.len() {
            tokio::select! {
                written = wr.write(&wbuf[wpos..]) => {
                    match written.map_err(|e| BenchError::io("publisher writing", e))? {
                        0 => return Err(BenchError::Protocol("the broker closed a publisher's connection".into())),
                        n => wpos += n,
                    }
                }
                read = rd.read_buf(&mut rbuf) => {
                    on_read(read, &mut rbuf, &mut wbuf, &mut inflight, &mut result)?;
                }
            }
            continue;
        }
        if !sending && (inflight.count == 0 || now >= plan.drain_deadline) {
            break;
        }
        tokio::select! {
            read = rd.read_buf(&mut rbuf) => on_read(read, &mut rbuf, &mut wbuf, &mut inflight, &mut result)?,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    let _ = wr.write_all(&wire::DISCONNECT).await;
    result.sent = u64::from(seq);
    result.unacked = inflight.count as u64;
    Ok(result)
}

/// Handles acknowledgements: frees window slots, answers PUBREC with PUBREL (appended to `wbuf`).
fn on_read(
    read: std::io::Result<usize>,
    rbuf: &mut BytesMut,
    wbuf: &mut BytesMut,
    inflight: &mut InFlight,
    result: &mut PubResult,
) -> Result<(), BenchError> {
    if read.map_err(|e| BenchError::io("publisher reading", e))? == 0 {
        return Err(BenchError::Protocol("the broker closed a publisher's connection".into()));
    }
    let mut pos = 0;
    while let Some(frame) = wire::next_frame(rbuf, &mut pos)? {
        let kind = frame.first >> 4;
        if kind == 13 {
            continue;
        }
        if !(4..=7).contains(&kind) || kind == 6 {
            return Err(wire::unexpected(frame.first, frame.body));
        }
        let (id, failed) = wire::parse_ack(frame.body)?;
        let ok = match (kind, failed) {
            (4, _) | (5, true) => inflight.step(id, 1, 0),
            (5, false) => inflight.step(id, 1, 2),
            _ => inflight.step(id, 2, 0),
        };
        if !ok {
            return Err(BenchError::Protocol(format!("acknowledgement type {kind} for packet id {id} not in flight")));
        }
        match (kind, failed) {
            (_, true) => result.refused += 1,
            (5, false) => wire::append_ack(wbuf, PUBREL, id),
            _ => result.completed += 1,
        }
    }
    rbuf.advance(pos);
    Ok(())
}
