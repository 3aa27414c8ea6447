//! The session registry: per client id, who is attached, the will, the subscriptions, the expiry; and the
//! one deadline queue for will delays and session expiry. Every operation takes the time as an argument
//! and returns its decision with the [`Event`]s it applied; [`Registry::apply`] applies one event, so a
//! registry rebuilt from the events (the durable store's replay, a cluster peer) is the same registry.
//!
//! Nothing here does I/O: the broker publishes the wills that fired, removes ended sessions'
//! subscriptions from its topic tree, wakes and kicks connections, and appends the events to its store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mqttd_proto::Will;

mod entry;

pub use entry::Entry;

use crate::deadline::{Deadlines, Time};
use crate::event::{will_delay, ClientIdentity, Event, Expiry, Subscription};

/// The owner recorded for a connection attached before a restart (the store does not keep connection
/// ids): [`Registry::restart`] detaches it before any new connection arrives.
pub const STALE_CONNECTION: u64 = u64::MAX;

/// Which deadline of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Will,
    Expiry,
}

/// An event an operation applied, and whether a durable store records it (events of a session that
/// ends with its connection and has no will are not worth a disk write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub event: Event,
    pub recorded: bool,
}

/// What an operation changed: its events in the order applied, and the sessions it ended as they were
/// (the broker removes their subscriptions from its tree).
#[derive(Debug)]
pub struct Changes<H = ()> {
    pub events: Vec<Emitted>,
    pub ended: Vec<Entry<H>>,
}

impl<H> Default for Changes<H> {
    fn default() -> Self {
        Changes { events: Vec::new(), ended: Vec::new() }
    }
}

impl<H> Changes<H> {
    /// The wills that fired, with their owners' client ids, in order.
    pub fn fired(&self) -> impl Iterator<Item = (&Arc<str>, &Will)> {
        self.events.iter().filter_map(|e| match &e.event {
            Event::WillFired { client_id, will, .. } => Some((client_id, will)),
            _ => None,
        })
    }
}

/// What a new connection asks for.
#[derive(Debug, Clone)]
pub struct Attach {
    pub identity: ClientIdentity,
    /// The connection attaching (never 0).
    pub connection: u64,
    pub clean_start: bool,
    pub expiry: Expiry,
    pub will: Option<Will>,
}

/// What [`Registry::attach`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attached {
    /// Session Present: an existing session was resumed [MQTT-3.2.2-2].
    pub present: bool,
    /// A connection that was still attached and is taken over at once: the broker tells it to end.
    pub kicked: Option<u64>,
    /// A will waiting for its delay was dropped: the client is back [MQTT-3.1.3-9].
    pub cancelled_will: bool,
}

/// What happened to the will when a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WillOutcome {
    None,
    /// It fired ([`Event::WillFired`] among the changes).
    Fired,
    /// It fires this much later (its delay, or the session's end if sooner), unless the client is back.
    Delayed(Duration),
    /// Normal DISCONNECT: deleted [MQTT-3.1.2-10].
    Discarded,
    /// The connection no longer owned the session (taken over): nothing changed.
    HandedOver,
}

/// What [`Registry::discard`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    NoSession,
    /// A connection is attached (the broker kicks it first).
    Attached(u64),
    Ended,
}

/// Sessions by client id, and their deadlines; `H` is the caller's handle on each session.
#[derive(Debug)]
pub struct Registry<H = ()> {
    /// Boxed: the table keeps a pointer per slot, not a whole entry (memory per idle connection).
    sessions: HashMap<Arc<str>, Box<Entry<H>>>,
    deadlines: Deadlines<(Arc<str>, Timer)>,
}

impl<H> Default for Registry<H> {
    fn default() -> Self {
        Registry { sessions: HashMap::new(), deadlines: Deadlines::default() }
    }
}

impl<H> PartialEq for Registry<H> {
    fn eq(&self, other: &Registry<H>) -> bool {
        let due = |r: &Registry<H>| {
            let mut d: Vec<(Time, Arc<str>, Timer)> =
                r.deadlines.iter().map(|(at, (c, t))| (at, c.clone(), *t)).collect();
            d.sort();
            d
        };
        self.sessions == other.sessions && due(self) == due(other)
    }
}

impl<H: Default> Registry<H> {
    pub fn get(&self, client_id: &str) -> Option<&Entry<H>> {
        self.sessions.get(client_id).map(|e| &**e)
    }

    /// The caller's handle on `client_id`'s session.
    pub fn handle_mut(&mut self, client_id: &str) -> Option<&mut H> {
        self.sessions.get_mut(client_id).map(|e| &mut e.handle)
    }

    /// The same registry with other handles (`f` gives each session's).
    pub fn with_handles<G>(self, mut f: impl FnMut(&Entry<H>) -> G) -> Registry<G> {
        let sessions = self
            .sessions
            .into_iter()
            .map(|(id, e)| {
                let handle = f(&e);
                let e = *e;
                let entry = Entry {
                    owner: e.owner,
                    identity: e.identity,
                    will: e.will,
                    subscriptions: e.subscriptions,
                    expiry: e.expiry,
                    disconnected_at: e.disconnected_at,
                    will_due: e.will_due,
                    expires: e.expires,
                    handle,
                };
                (id, Box::new(entry))
            })
            .collect();
        Registry { sessions, deadlines: self.deadlines }
    }

    /// The attached connection of `client_id`'s session (0: none, or no session).
    pub fn owner(&self, client_id: &str) -> u64 {
        self.sessions.get(client_id).map_or(0, |e| e.owner)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Entry<H>)> {
        self.sessions.iter().map(|(c, e)| (c, &**e))
    }

    /// When the earliest will delay or session expiry falls due: call [`Registry::tick`] then.
    pub fn next_deadline(&self) -> Option<Time> {
        self.deadlines.next()
    }

    /// Every session as one [`Event::SessionSnapshot`], by client id: events that rebuild this registry.
    pub fn snapshot(&self) -> Vec<Event> {
        let mut ids: Vec<&Arc<str>> = self.sessions.keys().collect();
        ids.sort();
        ids.into_iter().map(|id| Event::SessionSnapshot(self.sessions[id].snapshot())).collect()
    }

    /// A connection attaches to its client id's session: a still attached connection is taken over at
    /// once [MQTT-3.1.4-3]; the session is resumed, or ended and opened anew per Clean Start
    /// [MQTT-3.1.2-4] [MQTT-3.1.2-5]; a session that ended with its connection is never resumed
    /// [MQTT-3.1.2-6].
    pub fn attach(&mut self, attach: Attach, now: Time) -> (Changes<H>, Attached) {
        let client_id = attach.identity.client_id.clone();
        let mut changes = Changes::default();
        let mut attached = Attached::default();
        let before = self.recorded(&client_id);
        if let Some(old) = self.sessions.get(&client_id) {
            let ends = attach.clean_start || old.expiry == Expiry::Immediate;
            if old.attached() {
                attached.kicked = Some(old.owner);
                let at_once = Event::SessionDisconnected {
                    client_id: client_id.clone(),
                    at: now,
                    expiry: old.expiry,
                    will_deleted: false,
                };
                self.emit(&mut changes, at_once);
                // The will of the connection taken over goes out now if it has no delay or its session
                // ends; with a delay and the session going on, the client is back within it [MQTT-3.1.3-9].
                let will = self.sessions.get(&client_id).and_then(|e| e.will.as_deref().cloned());
                if let Some(will) = will.filter(|w| ends || will_delay(w).is_zero()) {
                    self.emit(&mut changes, Event::WillFired { client_id: client_id.clone(), will, at: now });
                }
            } else {
                attached.cancelled_will = old.will.is_some();
            }
            if ends {
                self.emit(&mut changes, Event::SessionEnded { client_id: client_id.clone(), at: now });
            }
        }
        let Attach { identity, connection, expiry, will, .. } = attach;
        attached.present = self.sessions.contains_key(&client_id);
        let event = if attached.present {
            Event::SessionResumed { identity, connection, expiry, will, at: now }
        } else {
            Event::SessionOpened { identity, connection, expiry, will, at: now }
        };
        self.emit(&mut changes, event);
        self.mark(&mut changes, 0, &client_id, before);
        (changes, attached)
    }

    /// Connection `connection` of `client_id` ended. `publish_will` is false after a normal DISCONNECT
    /// (the will is deleted [MQTT-3.1.2-10] [MQTT-3.14.4-3]); `expiry` is what a 5.0 DISCONNECT set
    /// [MQTT-3.14.2-2]. A will without delay fires now, as does one whose session ends now; a session
    /// with expiry 0 ends now.
    pub fn detach(
        &mut self,
        client_id: &str,
        connection: u64,
        now: Time,
        publish_will: bool,
        expiry: Option<Expiry>,
    ) -> (Changes<H>, WillOutcome) {
        let mut changes = Changes::default();
        let Some(entry) = self.sessions.get(client_id).filter(|e| e.owner == connection && connection != 0) else {
            return (changes, WillOutcome::HandedOver);
        };
        let client_id = entry.identity.client_id.clone();
        let before = entry.recorded();
        let had_will = entry.will.is_some();
        // A session that was to end with its connection cannot be made to outlive it [MQTT-3.14.2-2].
        let expiry = match (entry.expiry, expiry) {
            (Expiry::Immediate, _) | (_, None) => entry.expiry,
            (_, Some(e)) => e,
        };
        let will_deleted = had_will && !publish_will;
        let event = Event::SessionDisconnected { client_id: client_id.clone(), at: now, expiry, will_deleted };
        self.emit(&mut changes, event);
        self.fall_due_now(&client_id, now, &mut changes);
        self.mark(&mut changes, 0, &client_id, before);
        let outcome = if !had_will {
            WillOutcome::None
        } else if will_deleted {
            WillOutcome::Discarded
        } else if changes.fired().next().is_some() {
            WillOutcome::Fired
        } else {
            let entry = self.sessions.get(&client_id);
            let due = entry.and_then(|e| e.will_due().or(e.expires_at()));
            WillOutcome::Delayed(due.map_or(Duration::ZERO, |at| at.since(now)))
        };
        (changes, outcome)
    }

    /// Adds or replaces a subscription of `client_id`'s session (none: nothing changes).
    pub fn subscribe(&mut self, client_id: &str, filter: &str, subscription: Subscription) -> Changes<H> {
        let mut changes = Changes::default();
        let Some(entry) = self.sessions.get(client_id) else { return changes };
        if entry.subscriptions.get(filter) == Some(&subscription) {
            return changes;
        }
        let client_id = entry.identity.client_id.clone();
        let before = entry.recorded();
        let event = Event::Subscribed { client_id: client_id.clone(), filter: filter.to_owned(), subscription };
        self.emit(&mut changes, event);
        self.mark(&mut changes, 0, &client_id, before);
        changes
    }

    /// Removes a subscription of `client_id`'s session (none: nothing changes).
    pub fn unsubscribe(&mut self, client_id: &str, filter: &str) -> Changes<H> {
        let mut changes = Changes::default();
        let Some(entry) = self.sessions.get(client_id).filter(|e| e.subscriptions.contains_key(filter)) else {
            return changes;
        };
        let client_id = entry.identity.client_id.clone();
        let before = entry.recorded();
        self.emit(&mut changes, Event::Unsubscribed { client_id: client_id.clone(), filter: filter.to_owned() });
        self.mark(&mut changes, 0, &client_id, before);
        changes
    }

    /// Ends `client_id`'s session because an operator asked, if no connection is attached: its pending
    /// will goes out (the session ends before its delay passed [MQTT-3.1.3-9]).
    pub fn discard(&mut self, client_id: &str, now: Time) -> (Changes<H>, Discard) {
        let mut changes = Changes::default();
        let Some(entry) = self.sessions.get(client_id) else { return (changes, Discard::NoSession) };
        if entry.attached() {
            return (changes, Discard::Attached(entry.owner));
        }
        let client_id = entry.identity.client_id.clone();
        self.end(&client_id, now, &mut changes);
        (changes, Discard::Ended)
    }

    /// Everything that fell due by `now`: delayed wills fire, expired sessions end (firing a pending
    /// will first).
    pub fn tick(&mut self, now: Time) -> Changes<H> {
        let mut changes = Changes::default();
        while let Some((_, (client_id, timer))) = self.deadlines.pop_due(now) {
            self.fall_due(&client_id, timer, now, &mut changes);
        }
        changes
    }

    /// After a restart: every session that had a connection attached is disconnected now, then whatever
    /// fell due while the broker was down fires (a will whose delay passed, a session that expired).
    pub fn restart(&mut self, now: Time) -> Changes<H> {
        let mut changes = Changes::default();
        let mut attached: Vec<(Arc<str>, Expiry)> =
            self.sessions.values().filter(|e| e.attached()).map(|e| (e.identity.client_id.clone(), e.expiry)).collect();
        attached.sort_by(|a, b| a.0.cmp(&b.0));
        for (client_id, expiry) in attached {
            let start = changes.events.len();
            let before = self.recorded(&client_id);
            let event =
                Event::SessionDisconnected { client_id: client_id.clone(), at: now, expiry, will_deleted: false };
            self.emit(&mut changes, event);
            self.mark(&mut changes, start, &client_id, before);
        }
        let due = self.tick(now);
        changes.events.extend(due.events);
        changes.ended.extend(due.ended);
        changes
    }

    /// Applies one event: what replay does with each recorded event, and what every operation does with
    /// the events it decides.
    pub fn apply(&mut self, event: &Event) {
        self.apply_event(event);
    }

    /// [`Registry::apply`]; returns the session the event ended or replaced.
    fn apply_event(&mut self, event: &Event) -> Option<Entry<H>> {
        match event {
            Event::SessionOpened { identity, connection, expiry, will, .. } => {
                let old = self.remove(&identity.client_id);
                let entry = Entry::new(identity.clone(), *connection, *expiry, will.clone());
                self.sessions.insert(identity.client_id.clone(), Box::new(entry));
                return old;
            }
            Event::SessionResumed { identity, connection, expiry, will, .. } => {
                let id = identity.client_id.clone();
                self.cancel(&id);
                let entry =
                    self.sessions.entry(id).or_insert_with(|| Box::new(Entry::new(identity.clone(), 0, *expiry, None)));
                entry.identity = identity.clone();
                entry.owner = *connection;
                entry.will = will.clone().map(Box::new);
                entry.expiry = *expiry;
                entry.disconnected_at = None;
            }
            Event::SessionDisconnected { client_id, at, expiry, will_deleted } => {
                self.cancel(client_id);
                let entry = self.sessions.get_mut(client_id)?;
                entry.owner = 0;
                entry.disconnected_at = Some(*at);
                entry.expiry = *expiry;
                if *will_deleted {
                    entry.will = None;
                }
                self.schedule(client_id, *at);
            }
            Event::Subscribed { client_id, filter, subscription } => {
                if let Some(entry) = self.sessions.get_mut(client_id) {
                    entry.subscriptions.insert(filter.clone(), *subscription);
                }
            }
            Event::Unsubscribed { client_id, filter } => {
                if let Some(entry) = self.sessions.get_mut(client_id) {
                    entry.subscriptions.remove(filter);
                }
            }
            Event::WillFired { client_id, .. } => {
                let entry = self.sessions.get_mut(client_id)?;
                entry.will = None;
                if let Some(key) = entry.will_due.take() {
                    self.deadlines.remove(key);
                }
            }
            Event::SessionEnded { client_id, .. } => return self.remove(client_id),
            Event::SessionSnapshot(s) => {
                let old = self.remove(&s.identity.client_id);
                let mut entry = Entry::new(s.identity.clone(), s.owner, s.expiry, s.will.clone());
                entry.subscriptions = s.subscriptions.iter().cloned().collect();
                entry.disconnected_at = s.disconnected_at.filter(|_| s.owner == 0);
                let id = s.identity.client_id.clone();
                self.sessions.insert(id.clone(), Box::new(entry));
                if s.owner == 0 {
                    self.schedule(&id, s.disconnected_at.unwrap_or_default());
                }
                return old;
            }
        }
        None
    }

    /// Applies `event` and adds it to `changes` (marked recorded for now: see [`Registry::mark`]).
    fn emit(&mut self, changes: &mut Changes<H>, event: Event) {
        if let Some(ended) = self.apply_event(&event) {
            changes.ended.push(ended);
        }
        changes.events.push(Emitted { event, recorded: true });
    }

    /// Marks the events from `start` on, all about `client_id`: recorded if the session was kept in a
    /// store before them (`before`) or is after them.
    fn mark(&self, changes: &mut Changes<H>, start: usize, client_id: &str, before: bool) {
        let recorded = before || self.recorded(client_id);
        for e in &mut changes.events[start..] {
            e.recorded = recorded;
        }
    }

    fn recorded(&self, client_id: &str) -> bool {
        self.sessions.get(client_id).is_some_and(|e| e.recorded())
    }

    /// A deadline of `client_id` fell due at `now`.
    fn fall_due(&mut self, client_id: &Arc<str>, timer: Timer, now: Time, changes: &mut Changes<H>) {
        let Some(entry) = self.sessions.get_mut(client_id) else { return };
        match timer {
            Timer::Will => entry.will_due = None,
            Timer::Expiry => entry.expires = None,
        }
        if entry.attached() {
            return;
        }
        let start = changes.events.len();
        let before = entry.recorded();
        match timer {
            Timer::Will => {
                if let Some(will) = entry.will.as_deref().cloned() {
                    self.emit(changes, Event::WillFired { client_id: client_id.clone(), will, at: now });
                }
            }
            Timer::Expiry => self.end(client_id, now, changes),
        }
        self.mark(changes, start, client_id, before);
    }

    /// Whatever of `client_id`'s deadlines falls due by `now` (just scheduled by a disconnection).
    fn fall_due_now(&mut self, client_id: &Arc<str>, now: Time, changes: &mut Changes<H>) {
        for timer in [Timer::Will, Timer::Expiry] {
            let Some(entry) = self.sessions.get(client_id) else { return };
            let key = match timer {
                Timer::Will => entry.will_due,
                Timer::Expiry => entry.expires,
            };
            if let Some(key) = key.filter(|(at, _)| *at <= now) {
                self.deadlines.remove(key);
                self.fall_due(client_id, timer, now, changes);
            }
        }
    }

    /// Ends a detached session: its pending will fires first (the session ends before its delay
    /// passed [MQTT-3.1.3-9]).
    fn end(&mut self, client_id: &Arc<str>, now: Time, changes: &mut Changes<H>) {
        let start = changes.events.len();
        let before = self.recorded(client_id);
        if let Some(will) = self.sessions.get(client_id).and_then(|e| e.will.as_deref().cloned()) {
            self.emit(changes, Event::WillFired { client_id: client_id.clone(), will, at: now });
        }
        self.emit(changes, Event::SessionEnded { client_id: client_id.clone(), at: now });
        self.mark(changes, start, client_id, before);
    }

    /// Schedules the deadlines of a session whose connection ended at `at`: its expiry, and its will's
    /// delay if that passes first.
    fn schedule(&mut self, client_id: &Arc<str>, at: Time) {
        let Some(entry) = self.sessions.get_mut(client_id) else { return };
        let end = entry.expiry.duration().map(|d| at.after(d));
        if let Some(will) = &entry.will {
            let due = at.after(will_delay(will));
            if end.is_none_or(|end| due < end) {
                entry.will_due = Some(self.deadlines.insert(due, (client_id.clone(), Timer::Will)));
            }
        }
        if let Some(end) = end {
            entry.expires = Some(self.deadlines.insert(end, (client_id.clone(), Timer::Expiry)));
        }
    }

    /// Drops a session's deadlines.
    fn cancel(&mut self, client_id: &str) {
        let Some(entry) = self.sessions.get_mut(client_id) else { return };
        for key in [entry.will_due.take(), entry.expires.take()].into_iter().flatten() {
            self.deadlines.remove(key);
        }
    }

    fn remove(&mut self, client_id: &str) -> Option<Entry<H>> {
        self.cancel(client_id);
        self.sessions.remove(client_id).map(|e| *e)
    }
}

#[cfg(test)]
mod tests;
