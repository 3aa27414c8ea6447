//! A subscriber's task: reads PUBLISH frames in place, acknowledges them in one write per read, and
//! records each message's sequence number and latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::error::BenchError;
use crate::track::Track;
use crate::wire::{self, Conn, Stamp, PUBACK, PUBCOMP, PUBREC, READ_CHUNK};

/// Counters shared by all load tasks, for the progress line and the drain.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// Nanoseconds after the epoch of the last read that carried a message.
    pub last_receive_ns: AtomicU64,
}

/// What one subscriber saw.
pub(crate) struct SubResult {
    /// Indexed by publisher id.
    pub tracks: Vec<Track>,
    /// Messages whose payload did not come from this run's publishers.
    pub foreign: u64,
    /// Nanoseconds from send to receive.
    pub latency: Histogram<u64>,
}

pub(crate) async fn run(
    conn: Conn,
    publishers: usize,
    epoch: Instant,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<SubResult, BenchError> {
    let Conn { mut stream, mut rbuf, version } = conn;
    let v5 = version.is_v5();
    let (mut rd, mut wr) = stream.split();
    let mut acks = BytesMut::with_capacity(4096);
    let mut result = SubResult {
        tracks: vec![Track::default(); publishers],
        foreign: 0,
        latency: Histogram::new(3).expect("3 significant figures is valid"),
    };
    loop {
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        let n = tokio::select! {
            biased;
            read = rd.read_buf(&mut rbuf) => read.map_err(|e| BenchError::io("subscriber reading", e))?,
            _ = stop.changed() => break,
        };
        if n == 0 {
            if *stop.borrow() {
                break;
            }
            return Err(BenchError::Protocol("the broker closed a subscriber's connection".into()));
        }
        let now_ns = epoch.elapsed().as_nanos() as u64;
        let mut pos = 0;
        let mut count = 0u64;
        while let Some(frame) = wire::next_frame(&rbuf, &mut pos)? {
            match frame.first >> 4 {
                3 => {
                    let publish = wire::parse_publish(frame.first, frame.body, v5)?;
                    match publish.qos {
                        1 => wire::append_ack(&mut acks, PUBACK, publish.packet_id),
                        2 => wire::append_ack(&mut acks, PUBREC, publish.packet_id),
                        _ => {}
                    }
                    count += 1;
                    match Stamp::read(publish.payload) {
                        Some(s) if (s.publisher as usize) < result.tracks.len() => {
                            result.tracks[s.publisher as usize].record(s.seq);
                            let _ = result.latency.record(now_ns.saturating_sub(s.sent_ns));
                        }
                        _ => result.foreign += 1,
                    }
                }
                6 => {
                    let (packet_id, _) = wire::parse_ack(frame.body)?;
                    wire::append_ack(&mut acks, PUBCOMP, packet_id);
                }
                13 => {}
                _ => return Err(wire::unexpected(frame.first, frame.body)),
            }
        }
        rbuf.advance(pos);
        if count > 0 {
            shared.received.fetch_add(count, Ordering::Relaxed);
            shared.last_receive_ns.fetch_max(now_ns, Ordering::Relaxed);
        }
        if !acks.is_empty() {
            wr.write_all(&acks).await.map_err(|e| BenchError::io("subscriber acknowledging", e))?;
            acks.clear();
        }
    }
    let _ = wr.write_all(&wire::DISCONNECT).await;
    Ok(result)
}
