//! Reading the log back: the live state its records describe ([`Replayed`]), and the records that
//! rebuild that state alone (what a rewrite writes).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::record::{self, Damage, Record, StoredMessage, StoredSession};
use super::{sync_dir, StoreError};

/// What the log held: the live durable state.
#[derive(Debug, Default)]
pub struct Replayed {
    pub retained: BTreeMap<String, StoredMessage>,
    pub sessions: BTreeMap<String, StoredSession>,
    pub messages: HashMap<u64, StoredMessage>,
    /// Each session's queue, in the order its messages were queued: by sequence number.
    pub queues: HashMap<String, BTreeMap<u64, Queued>>,
    /// Each session's incoming QoS 2 packet ids awaiting PUBREL.
    pub incoming: HashMap<String, std::collections::BTreeSet<u16>>,
    index: HashMap<(String, u64), u64>,
    /// How many queue entries hold each message: one no queue holds is let go at once, so replaying a long
    /// log holds memory for the live state only.
    refs: HashMap<u64, usize>,
    sequence: u64,
    /// Records read, and where the last whole one ends (a torn or damaged tail after it is cut off).
    records_read: usize,
    pub(super) intact_len: u64,
}

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
    /// Whether most of the records read are still live (then the log is kept as it is at startup, not
    /// rewritten): live entries against records read.
    pub(super) fn mostly_live(&self) -> bool {
        let queued: usize = self.queues.values().map(BTreeMap::len).sum();
        let incoming: usize = self.incoming.values().map(|ids| ids.len()).sum();
        let live = self.retained.len() + self.sessions.len() + self.messages.len() + queued + incoming;
        2 * live >= self.records_read
    }

    pub(crate) fn apply(&mut self, record: Record) {
        self.records_read += 1;
        match record {
            Record::Retained(m) if m.payload.is_empty() => {
                self.retained.remove(&m.topic);
            }
            Record::Retained(m) => {
                self.retained.insert(m.topic.clone(), m);
            }
            Record::Session(s) => {
                self.sessions.insert(s.client_id.clone(), s);
            }
            Record::SessionEnd { client_id } => {
                self.sessions.remove(&client_id);
                self.incoming.remove(&client_id);
                if let Some(queue) = self.queues.remove(&client_id) {
                    for q in queue.values() {
                        self.index.remove(&(client_id.clone(), q.id));
                        self.release(q.id);
                    }
                }
            }
            Record::Message { id, message } => {
                self.messages.insert(id, message);
            }
            Record::Enqueue { client_id, id, qos, retain, subscription_ids } => {
                self.sequence += 1;
                let seq = self.sequence;
                match self.index.insert((client_id.clone(), id), seq) {
                    Some(old) => {
                        self.queues.entry(client_id.clone()).or_default().remove(&old);
                    }
                    None => *self.refs.entry(id).or_default() += 1,
                }
                let queued = Queued { id, qos, retain, subscription_ids, sent: None };
                self.queues.entry(client_id).or_default().insert(seq, queued);
            }
            Record::Incoming { client_id, packet_id, pending: true } => {
                self.incoming.entry(client_id).or_default().insert(packet_id);
            }
            Record::Incoming { client_id, packet_id, pending: false } => {
                if let Some(ids) = self.incoming.get_mut(&client_id) {
                    ids.remove(&packet_id);
                }
            }
            Record::Sent { client_id, id, packet_id, released } => {
                let seq = self.index.get(&(client_id.clone(), id));
                let entry = seq.and_then(|seq| self.queues.get_mut(&client_id)?.get_mut(seq));
                if let Some(q) = entry {
                    q.sent = Some((packet_id, released));
                }
            }
            Record::Ack { client_id, id } => {
                if let Some(seq) = self.index.remove(&(client_id.clone(), id)) {
                    if let Some(queue) = self.queues.get_mut(&client_id) {
                        queue.remove(&seq);
                    }
                    self.release(id);
                }
            }
        }
    }

    /// A queue entry of message `id` is gone: the message goes with its last one.
    fn release(&mut self, id: u64) {
        if let Some(n) = self.refs.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.refs.remove(&id);
                self.messages.remove(&id);
            }
        }
    }

    /// The records that rebuild this state, messages only where some queue holds them.
    pub(super) fn records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self.retained.values().cloned().map(Record::Retained).collect();
        out.extend(self.sessions.values().cloned().map(Record::Session));
        for (client_id, ids) in &self.incoming {
            out.extend(ids.iter().map(|&packet_id| Record::Incoming {
                client_id: client_id.clone(),
                packet_id,
                pending: true,
            }));
        }
        let mut written = std::collections::HashSet::new();
        let mut queued: Vec<(u64, &String, &Queued)> =
            self.queues.iter().flat_map(|(c, q)| q.iter().map(move |(seq, e)| (*seq, c, e))).collect();
        queued.sort_unstable_by_key(|(seq, ..)| *seq);
        for (_, client_id, q) in queued {
            let Some(message) = self.messages.get(&q.id) else { continue };
            if written.insert(q.id) {
                out.push(Record::Message { id: q.id, message: message.clone() });
            }
            out.push(Record::Enqueue {
                client_id: client_id.clone(),
                id: q.id,
                qos: q.qos,
                retain: q.retain,
                subscription_ids: q.subscription_ids.clone(),
            });
            if let Some((packet_id, released)) = q.sent {
                out.push(Record::Sent { client_id: client_id.clone(), id: q.id, packet_id, released });
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
    let mut file = file.take(file_len);
    let mut replayed = Replayed::default();
    // Read in chunks, record by record: memory follows the live state, not the size of the log.
    let mut buf: Vec<u8> = Vec::new();
    let (mut start, mut at, mut eof) = (0usize, 0u64, false);
    loop {
        if start == buf.len() && eof {
            break;
        }
        match Record::decode(&buf[start..]) {
            Ok((record, used)) => {
                replayed.apply(record);
                start += used;
                at += used as u64;
                replayed.intact_len = at;
            }
            Err(Damage::Torn) if !eof => {
                buf.drain(..start);
                start = 0;
                let declared = buf.get(..4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
                let want = (record::HEADER + declared).saturating_sub(buf.len()).max(REPLAY_CHUNK);
                let read = (&mut file).take(want as u64).read_to_end(&mut buf).map_err(io)?;
                eof = read == 0;
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
    Ok(replayed)
}

/// How much of the log [`replay`] reads at a time.
const REPLAY_CHUNK: usize = 1 << 20;
