//! The durable store (`persistence true`): an append-only log of [`Record`]s with group commit, replayed
//! and compacted at startup.
//!
//! Connection tasks never touch the disk: they append records to a buffer ([`Store::append`], which
//! returns the log position after the record) and acknowledge only once [`Store::durable`] has passed that
//! position. One writer thread (`writer.rs`) takes whatever was appended while its previous sync ran,
//! writes it and syncs it (`fdatasync`): at low load the added latency is one sync, under load one sync
//! covers many records. A failed sync stops the broker (an fsync is never retried: its data may be gone).
//! A write refused for want of space (ENOSPC, EDQUOT, EFBIG) is not a failed sync: the file is cut back to
//! its last whole record, the batch stays in memory, the store is [`Store::full`] (the broker refuses new
//! QoS 1/2 publishes) and the write is tried again until it succeeds.
//!
//! At startup the log is read and replayed into [`Replayed`] (`replay.rs`; a torn record at the end is cut
//! off and logged; damage elsewhere stops the start, naming the file and the offset), then rewritten with
//! the live state only when most of its records are dead. While running, once the log has grown to four
//! times its live size (and at least 64 MiB), a second thread rewrites the part written so far and the
//! writer appends what came since, so the log stays proportional to what is stored without stalling syncs.
//! Positions are counted in bytes appended since the start, not file offsets: a rewrite does not move them.

#[cfg(test)]
mod faults;
mod message;
pub mod mosquitto;
mod record;
mod replay;
mod writer;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

pub use message::{MessageParts, RawMessage, StoredMessage};
pub use record::{Damage, Record};
use replay::replay;
pub use replay::{Held, Queued, Replayed};
use writer::{rewrite, Writer};

/// Where the writer puts the log's bytes: the log file, or in tests a disk that loses what was not synced
/// (`faults.rs`).
pub trait LogFile: Send {
    /// Appends `bytes` (not yet durable).
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Makes everything appended durable (`fdatasync`).
    fn sync(&mut self) -> std::io::Result<()>;
    /// Cuts the file back to `len` bytes (what a write refused for want of space left of itself).
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
}

impl LogFile for File {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        // Appends go to the end whatever the file position (O_APPEND).
        self.set_len(len)
    }
}

/// Appended records not yet written, and where the log will end once they are.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    end: u64,
    stop: bool,
    /// The outcome of a rewrite while running, for the writer to take: the rewritten file's length.
    rewritten: Option<std::io::Result<u64>>,
    /// Session numbers named ([`Record::Name`]) since the last rewrite started.
    named: std::collections::HashSet<u64, foldhash::fast::RandomState>,
}

/// The log being written.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    pending: Mutex<Pending>,
    /// Signals the writer that records were appended, that a rewrite finished, or that it is to stop.
    appended: Condvar,
    /// Log position up to which everything is on stable storage.
    durable: AtomicU64,
    /// Tasks waiting for `durable` to pass a position; woken after every sync.
    waiting: Mutex<Vec<Waker>>,
    next_message: AtomicU64,
    /// A session's number in the log is this plus the broker's id for it: above every number in the log.
    session_base: u64,
    /// The log is rewritten with only the live state once it grows past this, or past four times its
    /// size after the last rewrite, whichever is larger.
    compact_at_least: u64,
    /// Records synced, and syncs: the average batch is their ratio (metrics, bench notes).
    pub synced_records: AtomicU64,
    pub syncs: AtomicU64,
    records_pending: AtomicU64,
    /// The last write was refused for want of space and is being retried: new QoS 1/2 publishes are
    /// refused meanwhile.
    full: AtomicBool,
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
        let replayed = replay(path, u64::MAX)?;
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
        let next = replayed.messages.keys().next_back().copied().unwrap_or(0) + 1;
        let store = Arc::new(Store {
            path: path.to_path_buf(),
            pending: Mutex::new(Pending { end: live, ..Pending::default() }),
            appended: Condvar::new(),
            durable: AtomicU64::new(live),
            waiting: Mutex::new(Vec::new()),
            next_message: AtomicU64::new(next),
            session_base: replayed.last_session + 1,
            compact_at_least,
            synced_records: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            records_pending: AtomicU64::new(0),
            full: AtomicBool::new(false),
        });
        let writer = store.clone();
        std::thread::Builder::new()
            .name("mqttd-store".into())
            .spawn(move || Writer::new(writer, file, live).run())
            .map_err(io)?;
        tracing::info!(
            path = %path.display(),
            retained = replayed.retained.len(),
            sessions = replayed.sessions.len(),
            queued = replayed.queued(),
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

    /// Appends a record of session `session_id` (the broker's id for it, numbered in the log from
    /// `session_base`), after a [`Record::Name`] binding its number to `client_id` if it has none since the
    /// last rewrite began; returns the log position once it is written.
    pub fn append_for(&self, session_id: u64, client_id: &str, record: impl FnOnce(u64) -> Record) -> u64 {
        let session = self.session_base + session_id;
        let mut pending = self.pending.lock();
        let before = pending.bytes.len();
        let mut records = 1;
        if pending.named.insert(session) {
            Record::Name { session, client_id: client_id.to_owned() }.encode(&mut pending.bytes);
            records += 1;
        }
        record(session).encode(&mut pending.bytes);
        pending.end += (pending.bytes.len() - before) as u64;
        self.records_pending.fetch_add(records, Ordering::Relaxed);
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

    /// Whether the disk is full: the last write was refused for want of space and waits to be retried.
    /// Everything acknowledged is safe; what was appended since stays in memory, its answers held.
    pub fn full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Writes what remains and stops the writer (at shutdown).
    pub fn close(&self) {
        self.pending.lock().stop = true;
        self.appended.notify_one();
    }
}

/// A log grows to at least this before it is rewritten while running.
const COMPACT_AT_LEAST: u64 = 64 << 20;

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

    fn raw(m: StoredMessage) -> RawMessage {
        RawMessage::encode(&m)
    }

    fn enqueue(session: u64, id: u64) -> Record {
        Record::Enqueue { session, id, qos: QoS::AtLeastOnce, retain: false, subscription_ids: vec![] }
    }

    fn name(session: u64, client: &str) -> Record {
        Record::Name { session, client_id: client.into() }
    }

    #[test]
    fn replay_keeps_the_live_state_and_compaction_keeps_only_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("mqttd.db");
        let (store, _) = Store::open(&path, false).expect("opens");
        for r in [
            Record::Retained(raw(message("kept"))),
            Record::Retained(raw(message("gone"))),
            Record::Retained(raw(StoredMessage { payload: Bytes::new(), ..message("gone") })),
            Record::Message { id: 1, message: raw(message("q")) },
            Record::Message { id: 2, message: raw(message("q")) },
            name(1, "a"),
            name(2, "b"),
            enqueue(1, 1),
            enqueue(1, 2),
            enqueue(2, 1),
            Record::Ack { session: 1, id: 1 },
            Record::Session(mqttd_core::Event::SessionEnded { client_id: "b".into(), at: Default::default() }),
            name(3, "c"),
        ] {
            store.append(&r);
        }
        let end = store.append(&enqueue(3, 2));
        futures_lite_block_on(&store, end);
        store.close();
        let (_, replayed) = Store::open(&path, false).expect("reopens");
        assert_eq!(replayed.retained.keys().collect::<Vec<_>>(), vec!["kept"]);
        let ids = |client: &str| replayed.queue(client).map(|q| q.values().map(|q| q.id).collect::<Vec<_>>());
        assert_eq!(ids("a"), Some(vec![2]));
        assert!(ids("b").is_none_or(|q| q.is_empty()));
        assert_eq!(ids("c"), Some(vec![2]));
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
        Record::Retained(raw(message("one"))).encode(&mut bytes);
        let first = bytes.len();
        Record::Retained(raw(message("two"))).encode(&mut bytes);
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
            end = store.append(&Record::Retained(raw(m)));
        }
        futures_lite_block_on(&store, end);
        // The rewrite runs beside the writer, which puts it in place when it is done.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let size = || std::fs::metadata(&path).expect("the log").len();
        while size() >= 64 << 10 {
            assert!(std::time::Instant::now() < deadline, "the log was rewritten: {} bytes for {end} appended", size());
            std::thread::yield_now();
        }
        store.close();
        let (_, replayed) = Store::open(&path, false).expect("reopens");
        assert_eq!(replayed.retained["same/topic"].decode().expect("a message").payload, Bytes::from("4999"));
    }

    /// A session's queue records name it by number: a rewrite while running keeps the numbers the
    /// running store goes on using, so records appended before, during and after rewrites all land in the
    /// right queue.
    #[test]
    fn queue_records_by_session_number_survive_rewrites_while_running() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("mqttd.db");
        let (store, _) = Store::open_compacting_at(&path, 16 << 10).expect("opens");
        let (mut end, mut expected) = (0, Vec::new());
        for i in 0..4_000u64 {
            let m = StoredMessage { payload: Bytes::from(i.to_string()), ..message("same/topic") };
            end = store.append(&Record::Retained(raw(m)));
            if i % 10 == 0 {
                let id = store.message_id();
                store.append(&Record::Message { id, message: raw(message("q")) });
                end = store.append_for(7, "a", |session| enqueue(session, id));
                expected.push(id);
            }
            if i % 20 == 5 {
                // The oldest is acknowledged.
                let id = expected.remove(0);
                end = store.append_for(7, "a", |session| Record::Ack { session, id });
            }
        }
        futures_lite_block_on(&store, end);
        store.close();
        let (_, replayed) = Store::open(&path, false).expect("reopens");
        let queue: Vec<u64> = replayed.queue("a").expect("a queue").values().map(|q| q.id).collect();
        assert_eq!(queue, expected);
        let size = std::fs::metadata(&path).expect("the log").len();
        assert!(size < end / 4, "rewritten while running: {size} bytes of {end}");
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
