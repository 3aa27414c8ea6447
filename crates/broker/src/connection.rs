//! A connection while it has work ([`Connection`]: its [`Transport`] and the [`Client`] on it), after the
//! CONNECT exchange (`connect.rs`): one poll function that, each time the task wakes, moves the outbox
//! into the write buffer, writes, reads and hands packets to the client's handlers (`handle.rs`); at the
//! end, the DISCONNECT, the will and the session. Nothing else is stored per connection: no
//! timer (a sweeper wakes connections past their keep-alive), no notification futures (the outbox keeps
//! the task's waker; takeover and shutdown wake it through the session). A plain-TCP connection that has
//! nothing to do parks (`park.rs`) and its task ends (memory per connection is a tracked figure, see
//! bench/README.md).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use mqttd_proto::{decode, encoded_len, Packet};
use tokio::io::AsyncWriteExt;

use crate::backpressure::RELIEVED_BACKLOG;
use crate::broker::{Broker, Stats};
use crate::end::{grace, interruption, End};
use crate::handle::Client;
use crate::observe::EventKind;
use crate::outgoing::Drain;
use crate::session::{clock, Expiry, Session, WillOutcome};
use crate::transport::{Stream, Transport, WRITE_HIGH_WATER};

/// Retained messages moved from the backlog into the outbox at a time.
const RETAINED_BATCH: usize = 256;

/// Backpressure: before reading more from a publisher, wait (at most [`CONGESTION_WAIT`]) until a
/// subscriber it feeds has drained its queue below [`RELIEVED_BACKLOG`], so queues and memory stay bounded
/// without dropping messages.
/// A connection taken over or shut down stops waiting (`own`: its session and connection id).
async fn wait_for_drain(broker: Arc<Broker>, slow: Arc<Session>, own: (Arc<Session>, u64)) {
    /// Counts this publisher among the session's waiters while it waits (also if the wait is dropped).
    struct Waiting<'a>(&'a Session);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let slow = &*slow;
    slow.waiting.fetch_add(1, Ordering::SeqCst);
    let _waiting = Waiting(slow);
    loop {
        let drained = broker.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        let relieved = {
            let state = slow.state.lock();
            state.backlog() <= RELIEVED_BACKLOG && !state.nearly_full()
        };
        let interrupted = own.0.connection.load(Ordering::Acquire) != own.1 || broker.shutting_down();
        if relieved || interrupted || !slow.progressing() {
            return;
        }
        let _ = tokio::time::timeout(CONGESTION_POLL, drained).await;
    }
}

/// At most this many reads (of up to 16 KiB) of what a connection taken over had sent ([`Connection::last_words`]).
const TAKEOVER_READS: usize = 64;

/// How long [`Connection::last_words`] waits for bytes the socket holds to become readable to the runtime.
const LAST_WORDS_WAIT: Duration = Duration::from_secs(1);

/// How often a waiting publisher re-checks that its slow subscriber still makes progress.
const CONGESTION_POLL: Duration = Duration::from_millis(20);

/// A connection while it runs: its bytes ([`Transport`]) and the client on it ([`Client`]: session,
/// what CONNECT negotiated, the packet handlers).
pub(crate) struct Connection {
    pub io: Transport,
    pub client: Client,
}

/// How [`Connection::run`] returns.
pub(crate) enum Stop {
    End(End),
    /// Quiet and holding nothing: park the connection (`park.rs`).
    Park,
}

/// What the poll function asks the connection task to do next.
enum Step {
    End(End),
    /// Parked connections wait without a task.
    Park,
    /// Wait for a subscriber to drain its queue before decoding more (backpressure).
    WaitDrain(Arc<Session>),
    /// Let subscriber tasks write before this publisher reads more.
    Yield,
}

impl Connection {
    /// Serves the connection until it ends or parks.
    pub(crate) async fn run(&mut self) -> Stop {
        loop {
            match std::future::poll_fn(|cx| self.poll_step(cx)).await {
                // Taken over: what the client sent before goes first (boxed: rare, and the task's
                // future stays small).
                Step::End(End::Takeover) => return Stop::End(Box::pin(self.last_words()).await),
                Step::End(end) => return Stop::End(end),
                Step::Park => return Stop::Park,
                Step::WaitDrain(slow) => {
                    let own = (self.client.session.clone(), self.client.connection_id);
                    Box::pin(wait_for_drain(self.client.broker.clone(), slow, own)).await
                }
                Step::Yield => tokio::task::yield_now().await,
            }
        }
    }

    /// Handles what the client sent before a new connection took its session over, in order, then says
    /// how the connection ends: a DISCONNECT deletes the will [MQTT-3.1.2-10] and applies its Session
    /// Expiry [MQTT-3.14.2-2]; PUBLISH, SUBSCRIBE and the rest take effect; a closed socket ends it as
    /// closed (the will goes out). Reads what the socket holds now, at most [`TAKEOVER_READS`] times;
    /// the new connection waits for this (`Broker::await_release`).
    async fn last_words(&mut self) -> End {
        let broker = self.client.broker.clone();
        let mut reads = 0;
        loop {
            while self.client.undecoded {
                if let Some(Step::End(end)) = self.decode_packets() {
                    return end;
                }
            }
            if reads == TAKEOVER_READS {
                return End::Takeover;
            }
            let io = &mut self.io;
            let filled = match std::future::poll_fn(|cx| Poll::Ready(io.poll_fill(cx, &broker.stats))).await {
                Poll::Ready(filled) => filled,
                // Nothing buffered above the socket, and nothing in it: all was said.
                Poll::Pending if !io.stream.input_waiting() => return End::Takeover,
                // The socket holds more, which the runtime has not noticed yet (a parked connection's
                // socket registered just now, an event not polled yet): it will, shortly.
                Poll::Pending => match tokio::time::timeout(LAST_WORDS_WAIT, io.fill(&broker.stats)).await {
                    Ok(filled) => filled,
                    Err(_) => return End::Takeover,
                },
            };
            match filled {
                Ok(true) => {
                    reads += 1;
                    self.client.undecoded = true;
                }
                Ok(false) => return End::Closed,
                Err(e) => return End::Io(e),
            }
        }
    }

    /// Counts the client in (`$SYS`) and starts its keep-alive clock: with CONNECT, not again when a
    /// parked connection runs (its deadline may have passed while it was parked).
    pub(crate) fn connected(&self) {
        Stats::add(&self.client.broker.stats.clients_connected, 1);
        self.client.broker.counters.connected(self.io.listener, self.client.negotiated.version);
        self.touch();
        if self.can_park() {
            // Most connections are quiet after CONNECT for a while (or for good): one that sends nothing
            // more right away parks at once rather than after `park_after`, so a burst of connections
            // does not hold a task each.
            self.client.session.active.store(crate::session::PARK_REQUESTED, Ordering::Relaxed);
        }
    }

    /// Whether this connection can park at all: plain TCP, parking enabled.
    pub(crate) fn can_park(&self) -> bool {
        self.client.broker.settings.park_after.is_some() && matches!(self.io.stream, Stream::Tcp(_) | Stream::Parked(_))
    }

    /// Whether the connection was asked to park ([`crate::session::PARK_REQUESTED`]: by the sweeper when
    /// quiet for `park_after`, at once after CONNECT). Otherwise records that it woke: it is not idle.
    fn park_requested(&self) -> bool {
        use crate::session::PARK_REQUESTED;
        if !self.can_park() {
            return false;
        }
        let active = &self.client.session.active;
        if active.load(Ordering::Relaxed) == PARK_REQUESTED {
            return true;
        }
        active.store(clock().max(PARK_REQUESTED + 1), Ordering::Relaxed);
        false
    }

    /// After a turn that found nothing to read or send: whether the connection holds nothing a task must
    /// keep (buffered bytes, retained messages owed, a congested subscriber), so it can park.
    pub(crate) fn holds_nothing(&self) -> bool {
        self.io.bufs.is_none()
            && !self.io.flush_pending
            && self.client.retained_backlog.is_none()
            && self.client.congested.is_none()
            && !self.client.undecoded
            && !self.client.busy
            && !self.client.holds_answers()
            && self.client.session.connection.load(Ordering::Acquire) == self.client.connection_id
            // A resumed session with messages to send: parking would only wake it again at once.
            && !self.client.session.state.lock().has_outgoing()
    }

    /// The keep-alive allowance: 1.5 times the keep-alive [MQTT-3.1.2-24].
    fn grace(&self) -> Duration {
        grace(self.client.negotiated.keep_alive)
    }

    /// Restarts the keep-alive clock: a control packet arrived [MQTT-3.1.2-24].
    fn touch(&self) {
        if self.client.negotiated.keep_alive > 0
            && self.client.session.connection.load(Ordering::Relaxed) == self.client.connection_id
        {
            let deadline = clock() + self.grace().as_nanos() as u64;
            self.client.session.keep_alive_deadline.store(deadline, Ordering::Relaxed);
        }
    }

    /// Why the connection must end now, if it must: shutdown, takeover, or keep-alive expired. Checked
    /// after [`Connection::drain`] registered the task's waker, so a wake-up that came before is not lost.
    fn interrupted(&self) -> Option<End> {
        interruption(
            &self.client.broker,
            &self.client.session,
            self.client.connection_id,
            self.client.negotiated.keep_alive,
        )
    }

    /// One turn of the connection: outbox to write buffer, write, read, handle packets; until nothing
    /// moves (`Pending`: the socket, the outbox or the keep-alive sweeper wakes the task again).
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        let park = self.park_requested();
        let wakes = crate::broker::DeferWakes::start();
        self.io.borrow_scratch();
        let step = self.poll_turn(cx);
        self.io.give_back();
        drop(wakes);
        if park && step.is_pending() && self.holds_nothing() {
            // The socket had nothing more to read (so the parker's poll sees the next byte). Not tracked
            // while parked: the sweeper leaves the session alone until the connection runs again.
            self.client.session.active.store(0, Ordering::Relaxed);
            return Poll::Ready(Step::Park);
        }
        step
    }

    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        loop {
            let released = self.release_held(Some(cx));
            self.drain(Some(cx.waker()));
            if let Some(end) = self.interrupted() {
                return Poll::Ready(Step::End(end));
            }
            let mut moved = released;
            if self.io.output_len() > 0 || self.io.flush_pending {
                match self.io.poll_write_out(cx, &self.client.broker.stats) {
                    Poll::Ready(Ok(wrote)) => moved |= wrote,
                    Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::WriteZero => {
                        return Poll::Ready(Step::End(End::Closed))
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Step::End(End::Io(e))),
                    Poll::Pending => {}
                }
            }
            if self.client.undecoded {
                if let Some(step) = self.decode_packets() {
                    return Poll::Ready(step);
                }
            }
            if self.io.output_len() < 4 * WRITE_HIGH_WATER {
                match self.io.poll_fill(cx, &self.client.broker.stats) {
                    Poll::Ready(Ok(true)) => {
                        moved = true;
                        self.client.undecoded = true;
                        if let Some(step) = self.decode_packets() {
                            return Poll::Ready(step);
                        }
                    }
                    Poll::Ready(Ok(false)) => return Poll::Ready(Step::End(End::Closed)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Step::End(End::Io(e))),
                    Poll::Pending => {}
                }
            }
            if !moved {
                return Poll::Pending;
            }
        }
    }

    /// Queues the held answers whose durable position the store has passed, in order; with `cx`, the
    /// task is woken when the next one can go. Returns whether any went.
    fn release_held(&mut self, cx: Option<&mut Context<'_>>) -> bool {
        let Some(held) = self.client.extras.as_mut().map(|e| &mut e.held).filter(|h| !h.is_empty()) else {
            return false;
        };
        let durable = self.client.broker.store().map_or(u64::MAX, |s| s.durable());
        let mut released = false;
        while held.front().is_some_and(|(position, _)| *position <= durable) {
            let (_, packet) = held.pop_front().expect("a front");
            self.io.queue(&packet, self.client.negotiated.version);
            released = true;
        }
        if let (Some((position, _)), Some(cx), Some(store)) = (held.front(), cx, self.client.broker.store()) {
            if store.poll_durable(*position, cx).is_ready() {
                // Synced meanwhile: go round again.
                cx.waker().wake_by_ref();
            }
        }
        released
    }

    /// Decodes and handles the packets in the read buffer. Stops early to end the connection, to wait for
    /// a congested subscriber, or to yield to subscribers after feeding them.
    fn decode_packets(&mut self) -> Option<Step> {
        let mut got_packet = false;
        loop {
            match decode(self.io.rbuf(), self.client.negotiated.version, &self.client.negotiated.limits) {
                Ok(Some(packet)) => {
                    got_packet = true;
                    if let Err(end) = self.client.handle(packet, &mut self.io) {
                        return Some(Step::End(end));
                    }
                }
                Ok(None) => break,
                Err(e) => return Some(Step::End(End::Protocol(e.into()))),
            }
            if let Some(slow) = self.client.congested.take() {
                // Before the next packet: a subscriber's queue is nearly full.
                self.touch();
                self.drain(None);
                return Some(Step::WaitDrain(slow));
            }
        }
        self.client.undecoded = false;
        if got_packet {
            self.touch();
        }
        std::mem::take(&mut self.client.busy).then_some(Step::Yield)
    }

    /// Moves deliveries from the outbox into the write buffer, within the inflight window.
    /// With `waker`, the outbox keeps it to wake this task when a delivery arrives (registered under the
    /// same lock publishers enqueue under, so no delivery goes unnoticed).
    pub(crate) fn drain(&mut self, waker: Option<&Waker>) {
        // Read access is checked again as messages leave the outbox, so an ACL reloaded since they were
        // queued applies to them; nothing to check (and no lock taken) when no ACL is loaded.
        let read_check = self.client.broker.read_check(&self.client.session);
        let client = &mut self.client;
        let mut state = client.session.state.lock();
        if client.session.connection.load(Ordering::Acquire) != client.connection_id {
            // Taken over: the session's messages belong to the new connection now.
            return;
        }
        if let Some(waker) = waker {
            state.register(waker);
        }
        if (!state.has_outgoing() && client.retained_backlog.is_none()) || client.holds_answers() {
            // Nothing to send, or answers wait for the store (a CONNACK first of all).
            return;
        }
        let turn = Drain {
            broker: &client.broker,
            session: &client.session,
            negotiated: client.negotiated,
            mount_point: client.broker.settings.mount_point(self.io.listener),
            limit: self.io.write_limit(),
            now: Instant::now(),
        };
        turn.resend(&mut state, &mut self.io);
        while state.queued() < RETAINED_BATCH && !state.nearly_full() {
            let Some(delivery) = client.retained_backlog.as_mut().and_then(|b| b.pop_front()) else {
                client.retained_backlog = None;
                break;
            };
            state.enqueue(delivery);
        }
        let aliases = client.extras.as_mut().and_then(|e| e.aliases.as_mut());
        let sent = turn.deliver(&mut state, &mut self.io, aliases, read_check.as_ref());
        turn.count(&state, &sent);
    }

    /// Ends the connection: a 5.0 DISCONNECT when the server ends it, the will, the session, one log line.
    pub(crate) async fn finish(&mut self, end: End) {
        // What the store made durable is answered; the rest the client sends again.
        self.release_held(None);
        if self.client.negotiated.version.is_v5() {
            if let Some(code) = end.disconnect_code() {
                let d = mqttd_proto::Disconnect { reason: code, properties: Default::default() };
                let mut d = Packet::Disconnect(d);
                if let (End::Protocol(why), Packet::Disconnect(d)) = (&end, &mut d) {
                    // A DISCONNECT may say why whatever Request Problem Information asked [MQTT-3.1.2-29].
                    d.properties.reason_string = Some(why.to_string());
                }
                if self
                    .client
                    .negotiated
                    .client_max_packet
                    .is_some_and(|max| encoded_len(&d, self.client.negotiated.version) > max.get() as usize)
                {
                    // Not past the client's Maximum Packet Size [MQTT-3.1.2-24]: the code alone always fits.
                    if let Packet::Disconnect(d) = &mut d {
                        d.properties.reason_string = None;
                    }
                }
                crate::trace::sent(&self.client.session.client_id, &d);
                self.io.queue(&d, self.client.negotiated.version);
            }
        }
        // Detached before the last bytes go out: a new connection for the client id may be waiting.
        let publish_will = !matches!(end, End::Disconnect { with_will: false } | End::Kicked { with_will: false });
        let will = self.client.broker.detach(
            &self.client.session,
            self.client.connection_id,
            publish_will,
            self.client.expiry_override.map(Expiry::from_v5),
        );
        if !matches!(end, End::Io(_) | End::Closed) {
            self.io.flush(Duration::from_secs(1), &self.client.broker.stats).await;
        }
        let _ = self.io.stream.shutdown().await;
        let will = if matches!(end, End::Takeover) && will == WillOutcome::HandedOver {
            "will handled by the takeover".to_string()
        } else {
            will.to_string()
        };
        tracing::info!(
            target: crate::log::CONNECTION,
            client_id = %self.client.session.client_id,
            peer = %self.io.peer,
            protocol = %self.client.negotiated.version,
            "disconnected: {end}; {will}"
        );
        self.client.broker.stats.clients_connected.fetch_sub(1, Ordering::Relaxed);
        let reason = end.reason();
        self.client.broker.counters.disconnected(self.io.listener, self.client.negotiated.version, reason);
        self.client.broker.events.record(&self.client.session.client_id, || EventKind::Disconnected { reason, will });
    }
}

#[cfg(test)]
mod tests {
    /// Memory per idle connection is a tracked figure (bench/README.md): the task's future holds a
    /// `Connection`, every connection has a `Session`. Growing either shows up here before it shows in the
    /// benchmark.
    #[test]
    fn an_idle_connection_stays_small() {
        let client = std::mem::size_of::<super::Connection>();
        let session = std::mem::size_of::<crate::session::Session>();
        assert!(client <= 168, "Connection grew to {client} bytes");
        // 368: the last 8 are the broker-wide memory count `memory_limit` needs (issue 12).
        assert!(session <= 368, "Session grew to {session} bytes");
    }
}
