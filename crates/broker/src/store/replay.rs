//! Reading the log back: the live state its records describe ([`Replayed`]), and the records that
//! rebuild that state alone (what a rewrite writes).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use foldhash::fast::RandomState;

use super::message::RawMessage;
use super::record::{self, Damage, Record};
use super::{sync_dir, StoreError};

/// Hash maps of replay, keyed by numbers and topics: foldhash, several times faster than SipHash there.
type Map<K, V> = HashMap<K, V, RandomState>;

/// What the log held: the live durable state. Messages stay as their stored bytes until the broker takes
/// them ([`RawMessage::parts`]).
#[derive(Debug, Default)]
pub struct Replayed {
    /// In the order the log set them (cleared ones swapped out): a restart walks them in the order they
    /// are in memory, where a hash map's order costs a cache miss for each.
    pub retained: indexmap::IndexMap<String, RawMessage, RandomState>,
    /// The session registry, rebuilt by applying its recorded events.
    pub sessions: mqttd_core::Registry,
    /// By id: ids are given in order, so that the log inserts them at the end and queues find them near
    /// one another (a hash map costs a cache miss for each).
    pub messages: BTreeMap<u64, Held>,
    /// Client ids that have queue records, by their number in this replay (`Client`).
    clients: Vec<String>,
    client_numbers: Map<String, Client>,
    /// Session numbers of the log (`Record::Name`) and the client each stands for, and each client's
    /// numbers (one per session instance that queued something, until its session ends).
    names: Map<u64, Client>,
    numbers: Vec<Vec<u64>>,
    /// Each client's queue, in the order its messages were queued: by sequence number.
    queues: Map<Client, BTreeMap<u64, Queued>>,
    /// Each client's incoming QoS 2 packet ids awaiting PUBREL.
    incoming: Map<Client, BTreeSet<u16>>,
    /// Where each (client, message) entry is in its queue.
    index: Map<(Client, u64), u64>,
    sequence: u64,
    /// The highest session number named in the log: the store numbers its sessions above it.
    pub(super) last_session: u64,
    /// Records read, and where the last whole one ends (a torn or damaged tail after it is cut off).
    records_read: usize,
    pub(super) intact_len: u64,
}

/// A stored message, and how many queue entries hold it: one no queue holds any more is let go at once, so
/// replaying a long log holds memory for the live state only. (A message no queue ever held stays: it was
/// stored for a queue entry the log does not have yet.)
#[derive(Debug, Clone)]
pub struct Held {
    pub message: RawMessage,
    refs: usize,
}

impl std::ops::Deref for Held {
    type Target = RawMessage;

    fn deref(&self) -> &RawMessage {
        &self.message
    }
}

/// A client with queue records, numbered in the order replay met it.
type Client = u32;

/// A message queued for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: u64,
    pub qos: mqttd_proto::QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// The packet id it was sent with, and whether its PUBREC came (in flight when the broker stopped).
    pub sent: Option<(u16, bool)>,
}

impl Replayed {
    /// The queue of `client_id`, in order (by sequence number).
    pub fn queue(&self, client_id: &str) -> Option<&BTreeMap<u64, Queued>> {
        self.queues.get(self.client_numbers.get(client_id)?)
    }

    /// Takes the queue of `client_id` out.
    pub(crate) fn take_queue(&mut self, client_id: &str) -> BTreeMap<u64, Queued> {
        let client = self.client_numbers.get(client_id);
        client.and_then(|c| self.queues.remove(c)).unwrap_or_default()
    }

    /// Takes the incoming QoS 2 packet ids of `client_id` out.
    pub(crate) fn take_incoming(&mut self, client_id: &str) -> BTreeSet<u16> {
        let client = self.client_numbers.get(client_id);
        client.and_then(|c| self.incoming.remove(c)).unwrap_or_default()
    }

    /// Queue entries of every session.
    pub fn queued(&self) -> usize {
        self.queues.values().map(BTreeMap::len).sum()
    }

    /// A session number for `client_id` bound in this state (for state built from records, as the Mosquitto
    /// import does): the one it has, or a new one.
    pub(crate) fn name(&mut self, client_id: &str) -> u64 {
        if let Some(&n) = self.client_numbers.get(client_id).and_then(|&c| self.numbers[c as usize].last()) {
            return n;
        }
        let session = self.last_session + 1;
        self.apply(Record::Name { session, client_id: client_id.to_owned() });
        session
    }

    /// Whether most of the records read are still live (then the log is kept as it is at startup, not
    /// rewritten): live entries against records read.
    pub(super) fn mostly_live(&self) -> bool {
        let incoming: usize = self.incoming.values().map(BTreeSet::len).sum();
        let live = self.retained.len() + self.sessions.len() + self.messages.len() + self.queued() + incoming;
        2 * live >= self.records_read
    }

    fn client(&mut self, client_id: &str) -> Client {
        if let Some(&c) = self.client_numbers.get(client_id) {
            return c;
        }
        let c = self.clients.len() as Client;
        self.clients.push(client_id.to_owned());
        self.numbers.push(Vec::new());
        self.client_numbers.insert(client_id.to_owned(), c);
        c
    }

    pub(crate) fn apply(&mut self, record: Record) {
        self.records_read += 1;
        match record {
            Record::Retained(m) => {
                self.records_read -= 1;
                self.apply_retained(Record::retained_topic(&m), m);
            }
            Record::Session(event) => {
                self.sessions.apply(&event);
                let mqttd_core::Event::SessionEnded { client_id, .. } = event else { return };
                let Some(&client) = self.client_numbers.get(&*client_id) else { return };
                // Its numbers go with it: a session that starts again under this client id has a new one.
                for n in std::mem::take(&mut self.numbers[client as usize]) {
                    self.names.remove(&n);
                }
                self.incoming.remove(&client);
                if let Some(queue) = self.queues.remove(&client) {
                    for q in queue.values() {
                        self.index.remove(&(client, q.id));
                        self.release(q.id);
                    }
                }
            }
            Record::Message { id, message } => self.message(id, message),
            Record::Name { session, client_id } => {
                let client = self.client(&client_id);
                match self.names.insert(session, client) {
                    Some(old) if old == client => {}
                    Some(old) => {
                        self.numbers[old as usize].retain(|&n| n != session);
                        self.numbers[client as usize].push(session);
                    }
                    None => self.numbers[client as usize].push(session),
                }
                self.last_session = self.last_session.max(session);
            }
            Record::Enqueue { session, id, qos, retain, subscription_ids } => {
                self.enqueue(session, Queued { id, qos, retain, subscription_ids, sent: None });
            }
            Record::Incoming { session, packet_id, pending } => {
                let Some(&client) = self.names.get(&session) else { return };
                if pending {
                    self.incoming.entry(client).or_default().insert(packet_id);
                } else if let Some(ids) = self.incoming.get_mut(&client) {
                    ids.remove(&packet_id);
                }
            }
            Record::Sent { session, id, packet_id, released } => {
                let Some(&client) = self.names.get(&session) else { return };
                let seq = self.index.get(&(client, id));
                if let Some(q) = seq.and_then(|seq| self.queues.get_mut(&client)?.get_mut(seq)) {
                    q.sent = Some((packet_id, released));
                }
            }
            Record::Ack { session, id } => {
                let Some(&client) = self.names.get(&session) else { return };
                if let Some(seq) = self.index.remove(&(client, id)) {
                    if let Some(queue) = self.queues.get_mut(&client) {
                        queue.remove(&seq);
                    }
                    self.release(id);
                }
            }
        }
    }

    fn message(&mut self, id: u64, message: RawMessage) {
        self.messages.entry(id).or_insert(Held { message: RawMessage(bytes::Bytes::new()), refs: 0 }).message = message;
    }

    /// Queues `q` (not yet sent) for session number `session`.
    fn enqueue(&mut self, session: u64, q: Queued) {
        let Some(&client) = self.names.get(&session) else { return };
        self.sequence += 1;
        let seq = self.sequence;
        let queue = self.queues.entry(client).or_default();
        match self.index.insert((client, q.id), seq) {
            Some(old) => {
                queue.remove(&old);
            }
            None => {
                if let Some(held) = self.messages.get_mut(&q.id) {
                    held.refs += 1;
                }
            }
        }
        queue.insert(seq, q);
    }

    /// Applies a retained record whose topic ([`Record::retained_topic`]) the reading thread read.
    fn apply_retained(&mut self, topic: Option<(String, bool)>, m: RawMessage) {
        self.records_read += 1;
        match topic {
            Some((topic, true)) => {
                self.retained.swap_remove(&topic);
            }
            Some((topic, false)) => {
                self.retained.insert(topic, m);
            }
            None => {}
        }
    }

    /// A record as the reading thread hands it over.
    fn apply_read(&mut self, read: Decoded) {
        match read {
            Decoded::Retained(topic, m) => self.apply_retained(topic, m),
            Decoded::Message(id, message) => {
                self.records_read += 1;
                self.message(id, message);
            }
            Decoded::Enqueue(session, q) => {
                self.records_read += 1;
                self.enqueue(session, q);
            }
            Decoded::Other(record) => self.apply(*record),
        }
    }

    /// The messages kept are slices of the chunks the log was read in: when they hold less than half of
    /// the `read` bytes, each is copied out of its chunk, so that memory follows the live state.
    fn unpin_if_mostly_dead(&mut self, read: u64) {
        let messages = self.messages.values().map(|h| &h.message);
        let live: usize = self.retained.values().chain(messages).map(RawMessage::len).sum();
        if (live as u64).saturating_mul(2) < read {
            let messages = self.messages.values_mut().map(|h| &mut h.message);
            self.retained.values_mut().chain(messages).for_each(RawMessage::unpin);
        }
    }

    /// A queue entry of message `id` is gone: the message goes with its last one.
    fn release(&mut self, id: u64) {
        if let Some(held) = self.messages.get_mut(&id) {
            held.refs = held.refs.saturating_sub(1);
            if held.refs == 0 {
                self.messages.remove(&id);
            }
        }
    }

    /// The records that rebuild this state, messages only where some queue holds them. A client with a
    /// stored session or queue records keeps its latest session number, and every number from `keep_from`
    /// on: a running store numbers its sessions from there and goes on appending records with them after
    /// the part of the log a rewrite read.
    pub(super) fn records(&self, keep_from: u64) -> Vec<Record> {
        let mut out: Vec<Record> = self.retained.values().cloned().map(Record::Retained).collect();
        out.extend(self.sessions.snapshot().into_iter().map(Record::Session));
        for (c, client_id) in self.clients.iter().enumerate() {
            let live = self.sessions.get(client_id).is_some()
                || self.queues.contains_key(&(c as Client))
                || self.incoming.contains_key(&(c as Client));
            if live {
                let numbers = &self.numbers[c];
                let kept = numbers.iter().enumerate().filter(|&(i, &n)| n >= keep_from || i + 1 == numbers.len());
                out.extend(kept.map(|(_, &session)| Record::Name { session, client_id: client_id.clone() }));
            }
        }
        // Entries are written under each client's latest number.
        let number = |c: Client| self.numbers[c as usize].last().copied();
        for (&client, ids) in &self.incoming {
            let Some(session) = number(client) else { continue };
            out.extend(ids.iter().map(|&packet_id| Record::Incoming { session, packet_id, pending: true }));
        }
        let mut written = std::collections::HashSet::new();
        let mut queued: Vec<(u64, Client, &Queued)> =
            self.queues.iter().flat_map(|(&c, q)| q.iter().map(move |(seq, e)| (*seq, c, e))).collect();
        queued.sort_unstable_by_key(|(seq, ..)| *seq);
        for (_, client, q) in queued {
            let (Some(held), Some(session)) = (self.messages.get(&q.id), number(client)) else { continue };
            let message = &held.message;
            if written.insert(q.id) {
                out.push(Record::Message { id: q.id, message: message.clone() });
            }
            out.push(Record::Enqueue {
                session,
                id: q.id,
                qos: q.qos,
                retain: q.retain,
                subscription_ids: q.subscription_ids.clone(),
            });
            if let Some((packet_id, released)) = q.sent {
                out.push(Record::Sent { session, id: q.id, packet_id, released });
            }
        }
        out
    }
}

/// Reads the log at `path` (none: empty) into the live state it describes, reading at most
/// `limit` bytes (a rewrite while running reads the part of the log written before it started).
pub(super) fn replay(path: &Path, limit: u64) -> Result<Replayed, StoreError> {
    let io = |cause| StoreError::Io { path: path.to_path_buf(), cause };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A new log: written first with nothing in it, so that it exists from now on.
            File::create(path).map_err(io)?;
            sync_dir(path).map_err(io)?;
            return Ok(Replayed::default());
        }
        Err(e) => return Err(io(e)),
    };
    let file_len = file.metadata().map_err(io)?.len().min(limit);
    // One thread reads, checks and decodes records, this one applies them: two cores' worth at startup.
    let (records, batches) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(8);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_records(file.take(file_len), file_len, path, &records));
        let mut replayed = Replayed::default();
        for batch in batches {
            for read in batch {
                replayed.apply_read(read);
            }
        }
        replayed.intact_len = reader.join().expect("the reader does not panic")?;
        replayed.unpin_if_mostly_dead(file_len);
        Ok(replayed)
    })
}

/// Reads the records of `file` (`file_len` bytes) in batches into `records`; returns where the last whole
/// one ends (a torn or damaged last record is cut off, damage before the end stops the start).
fn read_records(
    mut file: impl Read,
    file_len: u64,
    path: &Path,
    records: &std::sync::mpsc::SyncSender<Vec<Decoded>>,
) -> Result<u64, StoreError> {
    let io = |cause| StoreError::Io { path: path.to_path_buf(), cause };
    // Read in chunks, record by record. The messages read are slices of their chunk (no copy): while the
    // log is mostly live the chunks are too, and `replay` copies them out of it if it is not.
    let mut buf = bytes::Bytes::new();
    let mut batch = Vec::with_capacity(BATCH);
    let (mut start, mut at, mut eof) = (0usize, 0u64, false);
    loop {
        if start == buf.len() && eof {
            break;
        }
        match Record::decode_from(&buf[start..], Some(&buf)) {
            Ok((record, used)) => {
                batch.push(Decoded::from(record));
                if batch.len() == BATCH
                    && records.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).is_err()
                {
                    break;
                }
                start += used;
                at += used as u64;
            }
            Err(Damage::Torn) if !eof => {
                let rest = &buf[start..];
                let declared = rest.get(..4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
                let want = (record::HEADER + declared).saturating_sub(rest.len()).max(REPLAY_CHUNK);
                let mut next = Vec::with_capacity(rest.len() + want);
                next.extend_from_slice(rest);
                let read = (&mut file).take(want as u64).read_to_end(&mut next).map_err(io)?;
                (buf, start, eof) = (next.into(), 0, read == 0);
            }
            Err(Damage::Torn) => {
                tracing::warn!(path = %path.display(), offset = at, "torn record at the end of the log cut off");
                break;
            }
            Err(Damage::Corrupt(why)) => {
                let declared = u32::from_le_bytes(buf[start..start + 4].try_into().expect("a header")) as u64;
                if at + record::HEADER as u64 + declared < file_len {
                    return Err(StoreError::Damaged { path: path.to_path_buf(), offset: at, why });
                }
                // A write torn by a crash can leave a length that fits but bytes that never reached the disk.
                tracing::warn!(path = %path.display(), offset = at, "damaged last record cut off: {why}");
                break;
            }
        }
    }
    let _ = records.send(batch);
    Ok(at)
}

/// A record read, as handed from the reading thread to the applying one: a retained message with its
/// topic already read; the frequent records small (a [`Record`] is as large as a session's snapshot, and
/// is moved several times on its way), the rest boxed.
enum Decoded {
    Retained(Option<(String, bool)>, RawMessage),
    Message(u64, RawMessage),
    Enqueue(u64, Queued),
    Other(Box<Record>),
}

impl From<Record> for Decoded {
    fn from(record: Record) -> Decoded {
        match record {
            // The topic is read here: the applying thread is the busier one.
            Record::Retained(m) => Decoded::Retained(Record::retained_topic(&m), m),
            Record::Message { id, message } => Decoded::Message(id, message),
            Record::Enqueue { session, id, qos, retain, subscription_ids } => {
                Decoded::Enqueue(session, Queued { id, qos, retain, subscription_ids, sent: None })
            }
            record => Decoded::Other(Box::new(record)),
        }
    }
}

/// Records handed from the reading thread to the applying one at a time.
const BATCH: usize = 4096;

/// How much of the log [`replay`] reads at a time.
const REPLAY_CHUNK: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use mqttd_proto::{Properties, QoS};

    use super::*;
    use crate::store::StoredMessage;

    fn retained(topic: &str, payload: &str) -> Record {
        Record::Retained(RawMessage::encode(&StoredMessage {
            topic: topic.into(),
            payload: Bytes::from(payload.to_owned()),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Properties::default(),
            expires_at_ms: 0,
        }))
    }

    /// Whether the two retained messages replayed from `records` hold memory of their own (not the chunk
    /// of the log they were read from).
    fn own_memory(records: &[Record]) -> bool {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("mqttd.db");
        let mut bytes = Vec::new();
        records.iter().for_each(|r| r.encode(&mut bytes));
        std::fs::write(&path, &bytes).expect("writes");
        let replayed = replay(&path, u64::MAX).expect("replays");
        assert_eq!(replayed.retained.len(), 2);
        replayed.retained.values().all(|m| m.0.is_unique())
    }

    /// Messages are read as slices of the log's chunks; a log of mostly dead bytes has them copied out,
    /// so that memory follows the live state, not the log.
    #[test]
    fn messages_share_the_log_chunk_only_while_it_is_mostly_live() {
        assert!(!own_memory(&[retained("a", "1"), retained("b", "2")]), "a live log is not copied");
        let big = "x".repeat(1000);
        let mut records: Vec<Record> = (0..100).map(|_| retained("a", &big)).collect();
        records.extend([retained("a", "1"), retained("b", "2")]);
        assert!(own_memory(&records), "a mostly dead log is copied out of");
    }
}
