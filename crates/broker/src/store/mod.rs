//! The durable store (`persistence true`): an append-only log of [`Record`]s with group commit, replayed
//! and compacted at startup.
//!
//! Connection tasks never touch the disk: they append records to a buffer ([`Store::append`], which
//! returns the log position after the record) and acknowledge only once [`Store::durable`] has passed that
//! position. One writer thread takes whatever was appended while its previous sync ran, writes it and
//! syncs it (`fdatasync`): at low load the added latency is one sync, under load one sync covers many
//! records. A failed write or sync stops the broker (an fsync is never retried: its data may be gone).
//!
//! At startup the log is read and replayed into [`Replayed`] (a torn record at the end is cut off and
//! logged; damage elsewhere stops the start, naming the file and the offset), then rewritten with the live
//! state only when most of its records are dead. The writer rewrites it the same way while running once it has grown to four times that
//! (and at least 64 MiB), so the log stays proportional to what is stored. Positions are counted in
//! bytes appended since the start, not file offsets: a rewrite does not move them.

#[cfg(test)]
mod faults;
pub mod mosquitto;
mod record;
pub mod restore;

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

pub use record::{Damage, Record, StoredMessage};

/// Where the writer puts the log's bytes: the log file, or in tests a disk that loses what was not synced
/// (`faults.rs`).
pub trait LogFile: Send {
    /// Appends `bytes` (not yet durable).
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Makes everything appended durable (`fdatasync`).
    fn sync(&mut self) -> std::io::Result<()>;
}

impl LogFile for File {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// Appended records not yet written, and where the log will end once they are.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    end: u64,
    stop: bool,
}

/// The log being written.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    pending: Mutex<Pending>,
    /// Signals the writer that records were appended (or that it is to stop).
    appended: Condvar,
    /// Log position up to which everything is on stable storage.
    durable: AtomicU64,
    /// Tasks waiting for `durable` to pass a position; woken after every sync.
    waiting: Mutex<Vec<Waker>>,
    next_message: AtomicU64,
    /// The log is rewritten with only the live state once it grows past this, or past four times its
    /// size after the last rewrite, whichever is larger.
    compact_at_least: u64,
    /// Records synced, and syncs: the average batch is their ratio (metrics, bench notes).
    pub synced_records: AtomicU64,
    pub syncs: AtomicU64,
    records_pending: AtomicU64,
}

/// Why the store cannot open.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error(
        "{path}: damaged record at byte {offset} ({why}); the log is not intact before its end. Start with \
         `mqttd --recover` to move it aside and keep the records before the damage, or restore it from a backup"
    )]
    Damaged { path: PathBuf, offset: u64, why: &'static str },
}

/// What the log held: the live durable state.
#[derive(Debug, Default)]
pub struct Replayed {
    pub retained: BTreeMap<String, StoredMessage>,
    /// The session registry, rebuilt by applying its recorded events.
    pub sessions: mqttd_core::Registry,
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
    intact_len: u64,
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
    fn mostly_live(&self) -> bool {
        let queued: usize = self.queues.values().map(BTreeMap::len).sum();
        let incoming: usize = self.incoming.values().map(|ids| ids.len()).sum();
        let live = self.retained.len() + self.sessions.len() + self.messages.len() + queued + incoming;
        2 * live >= self.records_read
    }

    fn apply(&mut self, record: Record) {
        self.records_read += 1;
        match record {
            Record::Retained(m) if m.payload.is_empty() => {
                self.retained.remove(&m.topic);
            }
            Record::Retained(m) => {
                self.retained.insert(m.topic.clone(), m);
            }
            Record::Session(event) => {
                self.sessions.apply(&event);
                let mqttd_core::Event::SessionEnded { client_id, .. } = event else { return };
                let client_id = client_id.to_string();
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
    fn records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self.retained.values().cloned().map(Record::Retained).collect();
        out.extend(self.sessions.snapshot().into_iter().map(Record::Session));
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

impl Store {
    /// Opens (or creates) the log at `path`: replays it, rewrites it with the live state, and starts the
    /// writer thread. Returns the store and what it held.
    /// With `recover`, a log damaged before its end is moved aside (`FILE.damaged`) and the state of the
    /// records before the damage is kept, rather than refusing to start.
    pub fn open(path: &Path, recover: bool) -> Result<(Arc<Store>, Replayed), StoreError> {
        match Store::open_compacting_at(path, COMPACT_AT_LEAST) {
            Err(StoreError::Damaged { offset, why, .. }) if recover => {
                let aside = path.with_extension("damaged");
                std::fs::copy(path, &aside).map_err(|source| StoreError::Io { path: aside.clone(), cause: source })?;
                let bytes =
                    std::fs::read(path).map_err(|source| StoreError::Io { path: path.to_path_buf(), cause: source })?;
                let cut = usize::try_from(offset).unwrap_or(bytes.len()).min(bytes.len());
                std::fs::write(path, &bytes[..cut])
                    .map_err(|source| StoreError::Io { path: path.to_path_buf(), cause: source })?;
                tracing::warn!(
                    path = %path.display(), aside = %aside.display(), offset,
                    "durable store damaged ({why}): moved aside; starting from the records before the damage"
                );
                Store::open_compacting_at(path, COMPACT_AT_LEAST)
            }
            other => other,
        }
    }

    /// [`Store::open`], rewriting the log while running once it grows past `compact_at_least` bytes (and
    /// four times its live size).
    pub fn open_compacting_at(path: &Path, compact_at_least: u64) -> Result<(Arc<Store>, Replayed), StoreError> {
        Store::open_with(path, compact_at_least, |f| Box::new(f))
    }

    /// [`Store::open_compacting_at`], with the writer appending through `wrap(file)` (tests put a
    /// fault-injecting disk there).
    pub(crate) fn open_with(
        path: &Path,
        compact_at_least: u64,
        wrap: impl FnOnce(File) -> Box<dyn LogFile>,
    ) -> Result<(Arc<Store>, Replayed), StoreError> {
        let io = |source| StoreError::Io { path: path.to_path_buf(), cause: source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let replayed = replay(path)?;
        let live = if replayed.mostly_live() {
            // Kept as it is (writing it again would cost more than the dead records it would drop), but
            // for a torn or damaged tail, which is cut off.
            let file = OpenOptions::new().write(true).open(path).map_err(io)?;
            if file.metadata().map_err(io)?.len() > replayed.intact_len {
                file.set_len(replayed.intact_len).map_err(io)?;
                file.sync_all().map_err(io)?;
            }
            replayed.intact_len
        } else {
            rewrite(path, &replayed).map_err(io)?
        };
        let file = wrap(OpenOptions::new().append(true).open(path).map_err(io)?);
        let next = replayed.messages.keys().max().copied().unwrap_or(0) + 1;
        let store = Arc::new(Store {
            path: path.to_path_buf(),
            pending: Mutex::new(Pending { bytes: Vec::new(), end: live, stop: false }),
            appended: Condvar::new(),
            durable: AtomicU64::new(live),
            waiting: Mutex::new(Vec::new()),
            next_message: AtomicU64::new(next),
            compact_at_least,
            synced_records: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            records_pending: AtomicU64::new(0),
        });
        let writer = store.clone();
        std::thread::Builder::new()
            .name("mqttd-store".into())
            .spawn(move || writer.write_loop(file, live))
            .map_err(io)?;
        tracing::info!(
            path = %path.display(),
            retained = replayed.retained.len(),
            sessions = replayed.sessions.len(),
            queued = replayed.queues.values().map(BTreeMap::len).sum::<usize>(),
            bytes = live,
            "durable store opened"
        );
        Ok((store, replayed))
    }

    /// Appends a record; returns the log position once it is written. Never blocks on the disk.
    pub fn append(&self, record: &Record) -> u64 {
        let mut pending = self.pending.lock();
        let before = pending.bytes.len();
        record.encode(&mut pending.bytes);
        pending.end += (pending.bytes.len() - before) as u64;
        self.records_pending.fetch_add(1, Ordering::Relaxed);
        let end = pending.end;
        drop(pending);
        self.appended.notify_one();
        end
    }

    /// A new id for a message stored for queues.
    pub fn message_id(&self) -> u64 {
        self.next_message.fetch_add(1, Ordering::Relaxed)
    }

    /// Position up to which the log is on stable storage.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// `Ready` once `position` is durable; otherwise the task is woken after the next sync.
    pub fn poll_durable(&self, position: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.durable() >= position {
            return Poll::Ready(());
        }
        self.waiting.lock().push(cx.waker().clone());
        // A sync may have finished between the check and the registration.
        if self.durable() >= position {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Writes what remains and stops the writer (at shutdown).
    pub fn close(&self) {
        self.pending.lock().stop = true;
        self.appended.notify_one();
    }

    fn write_loop(&self, mut file: Box<dyn LogFile>, mut live: u64) {
        let mut size = live;
        loop {
            let (bytes, end, records) = {
                let mut pending = self.pending.lock();
                while pending.bytes.is_empty() && !pending.stop {
                    self.appended.wait(&mut pending);
                }
                if pending.bytes.is_empty() {
                    return;
                }
                let records = self.records_pending.swap(0, Ordering::Relaxed);
                (std::mem::take(&mut pending.bytes), pending.end, records)
            };
            if let Err(e) = file.append(&bytes).and_then(|()| file.sync()) {
                // Never retried: after a failed fsync the kernel may have dropped the data it could not
                // write, and a later successful fsync would say nothing about it.
                tracing::error!(path = %self.path.display(), "durable store write failed, stopping: {e}");
                std::process::exit(1);
            }
            size += bytes.len() as u64;
            if size > self.compact_at_least.max(4 * live) {
                // Everything appended so far is in the file: its replay is the whole live state.
                let compacted = replay(&self.path)
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|replayed| rewrite(&self.path, &replayed))
                    .and_then(|n| OpenOptions::new().append(true).open(&self.path).map(|f| (n, f)));
                match compacted {
                    Ok((n, f)) => {
                        tracing::debug!(path = %self.path.display(), from = size, to = n, "durable store compacted");
                        (live, size, file) = (n, n, Box::new(f));
                    }
                    Err(e) => {
                        tracing::error!(path = %self.path.display(), "durable store compaction failed, stopping: {e}");
                        std::process::exit(1);
                    }
                }
            }
            self.synced_records.fetch_add(records, Ordering::Relaxed);
            self.syncs.fetch_add(1, Ordering::Relaxed);
            self.durable.store(end, Ordering::Release);
            let wakers = std::mem::take(&mut *self.waiting.lock());
            for w in wakers {
                w.wake();
            }
        }
    }
}

/// A log grows to at least this before it is rewritten while running.
const COMPACT_AT_LEAST: u64 = 64 << 20;

/// Replaces the log at `path` with the records of `replayed` only (written aside, synced, renamed over it,
/// the directory synced); returns its size.
fn rewrite(path: &Path, replayed: &Replayed) -> std::io::Result<u64> {
    let mut live = Vec::new();
    for record in replayed.records() {
        record.encode(&mut live);
    }
    let tmp = path.with_extension("compacting");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&live)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path)?;
    Ok(live.len() as u64)
}

/// Reads the log at `path` (none: empty) into the live state it describes.
fn replay(path: &Path) -> Result<Replayed, StoreError> {
    let io = |cause| StoreError::Io { path: path.to_path_buf(), cause };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A new log: written first with nothing in it, so that it exists from now on.
            File::create(path).map_err(io)?;
            sync_dir(path).map_err(io)?;
            return Ok(Replayed::default());
        }
        Err(e) => return Err(io(e)),
    };
    let file_len = file.metadata().map_err(io)?.len();
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

/// Makes a rename in the directory of `path` durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqttd_proto::{Properties, QoS};

    fn message(topic: &str) -> StoredMessage {
        StoredMessage {
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
            expires_at_ms: 0,
        }
    }

    fn enqueue(client: &str, id: u64) -> Record {
        Record::Enqueue { client_id: client.into(), id, qos: QoS::AtLeastOnce, retain: false, subscription_ids: vec![] }
    }

    #[test]
    fn replay_keeps_the_live_state_and_compaction_keeps_only_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("mqttd.db");
        let (store, _) = Store::open(&path, false).expect("opens");
        for r in [
            Record::Retained(message("kept")),
            Record::Retained(message("gone")),
            Record::Retained(StoredMessage { payload: Bytes::new(), ..message("gone") }),
            Record::Message { id: 1, message: message("q") },
            Record::Message { id: 2, message: message("q") },
            enqueue("a", 1),
            enqueue("a", 2),
            enqueue("b", 1),
            Record::Ack { client_id: "a".into(), id: 1 },
            Record::Session(mqttd_core::Event::SessionEnded { client_id: "b".into(), at: Default::default() }),
        ] {
            store.append(&r);
        }
        let end = store.append(&enqueue("c", 2));
        futures_lite_block_on(&store, end);
        store.close();
        let (_, replayed) = Store::open(&path, false).expect("reopens");
        assert_eq!(replayed.retained.keys().collect::<Vec<_>>(), vec!["kept"]);
        let a: Vec<u64> = replayed.queues["a"].values().map(|q| q.id).collect();
        assert_eq!(a, vec![2]);
        assert!(replayed.queues.get("b").is_none_or(BTreeMap::is_empty));
        assert_eq!(replayed.queues["c"].values().map(|q| q.id).collect::<Vec<_>>(), vec![2]);
        // Compacted: message 1 is referenced by no queue any more.
        let (_, again) = Store::open(&path, false).expect("reopens");
        assert!(!again.messages.contains_key(&1));
        assert!(again.messages.contains_key(&2));
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_damage_before_it_stops_the_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("mqttd.db");
        let mut bytes = Vec::new();
        Record::Retained(message("one")).encode(&mut bytes);
        let first = bytes.len();
        Record::Retained(message("two")).encode(&mut bytes);
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("writes");
        let (store, replayed) = Store::open(&path, false).expect("a torn tail is cut off");
        store.close();
        assert_eq!(replayed.retained.keys().collect::<Vec<_>>(), vec!["one"]);
        let mut damaged = bytes.clone();
        damaged[first - 1] ^= 0xFF;
        std::fs::write(&path, &damaged).expect("writes");
        match Store::open(&path, false) {
            Err(StoreError::Damaged { offset, .. }) => assert_eq!(offset, 0),
            other => panic!("expected damage at 0, got {other:?}"),
        }
        // `--recover`: the damaged log is kept aside; the start goes on from before the damage.
        let (store, replayed) = Store::open(&path, true).expect("recovers");
        store.close();
        assert!(replayed.retained.is_empty());
        assert_eq!(std::fs::read(path.with_extension("damaged")).expect("kept aside"), damaged);
    }

    #[test]
    fn a_log_that_grows_with_superseded_records_is_rewritten_while_running() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("mqttd.db");
        let (store, _) = Store::open_compacting_at(&path, 64 << 10).expect("opens");
        let mut end = 0;
        for i in 0..5_000u32 {
            let m = StoredMessage { payload: Bytes::from(i.to_string()), ..message("same/topic") };
            end = store.append(&Record::Retained(m));
        }
        futures_lite_block_on(&store, end);
        store.close();
        let size = std::fs::metadata(&path).expect("the log").len();
        assert!(size < 64 << 10, "the log was rewritten: {size} bytes for {end} appended");
        let (_, replayed) = Store::open(&path, false).expect("reopens");
        assert_eq!(replayed.retained["same/topic"].payload, Bytes::from("4999"));
    }

    /// Waits for `position` on a thread without a runtime (the writer runs on its own thread).
    fn futures_lite_block_on(store: &Store, position: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.durable() < position {
            assert!(std::time::Instant::now() < deadline, "the writer syncs");
            std::thread::yield_now();
        }
    }
}
