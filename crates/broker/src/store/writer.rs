//! The writer thread: group commit, a full disk, and rewriting the log while running.
//!
//! Each turn takes everything appended since the previous one, writes it, syncs it, moves the durable
//! position and wakes the tasks waiting for it. A sync that fails stops the broker. A write refused for
//! want of space cuts the file back to its last whole record and keeps the batch: the store is full, the
//! answers waiting for those records stay held, and the write is tried again (after 10 ms, doubling up to
//! 1 s, and at once when a rewrite has freed space). Once the log has grown to four times its live size a
//! second thread rewrites the part written so far (replayed, live records only, written aside and synced);
//! meanwhile the writer goes on and keeps what it writes, appends that to the rewritten file when it is
//! ready, and renames it over the log.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{replay, sync_dir, LogFile, Replayed, Store};

/// The first wait before a write refused for want of space is tried again; it doubles up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The writer thread's state.
pub(super) struct Writer {
    store: Arc<Store>,
    file: Box<dyn LogFile>,
    /// The file's length: everything in it is synced.
    size: u64,
    /// Its length after the last rewrite (the live state then).
    live: u64,
    /// Records taken from the store's pending buffer and not yet written (those of more than one turn only
    /// while the disk is full), the log position at their end, and how many they are.
    batch: Vec<u8>,
    batch_end: u64,
    batch_records: u64,
    /// While a rewrite runs: the length of the part it rewrites, and what was written after it.
    rewriting: Option<(u64, Vec<u8>)>,
    /// How long to wait before trying a refused write again.
    retry: Duration,
    /// While the disk is full: the size at which a rewrite was last tried to free space (once per size).
    freeing_at: Option<u64>,
}

impl Writer {
    pub(super) fn new(store: Arc<Store>, file: Box<dyn LogFile>, live: u64) -> Writer {
        Writer {
            store,
            file,
            size: live,
            live,
            batch: Vec::new(),
            batch_end: live,
            batch_records: 0,
            rewriting: None,
            retry: RETRY_FIRST,
            freeing_at: None,
        }
    }

    /// Runs until the store is closed and everything appended is written (or cannot be, the disk full).
    pub(super) fn run(mut self) {
        loop {
            let (stop, rewritten) = self.take();
            if let Some(result) = rewritten {
                self.finish_rewrite(result);
            }
            if self.batch.is_empty() {
                if stop {
                    return;
                }
                continue;
            }
            if !self.write() && stop {
                let records = self.batch_records;
                tracing::error!(
                    path = %self.store.path.display(), records,
                    "durable store: disk full at shutdown; the records appended since it filled (none of them \
                     acknowledged) are not written"
                );
                return;
            }
        }
    }

    /// Waits for records to write (or, while the disk is full, for the time to try again) and takes them;
    /// returns whether the store is closing and the outcome of a finished rewrite.
    fn take(&mut self) -> (bool, Option<std::io::Result<u64>>) {
        let store = self.store.clone();
        let mut pending = store.pending.lock();
        if self.batch.is_empty() {
            while pending.bytes.is_empty() && !pending.stop && pending.rewritten.is_none() {
                store.appended.wait(&mut pending);
            }
            std::mem::swap(&mut self.batch, &mut pending.bytes);
        } else {
            // The disk was full: again after a while, or at once when a rewrite has freed space.
            let deadline = Instant::now() + self.retry;
            while !pending.stop
                && pending.rewritten.is_none()
                && !store.appended.wait_until(&mut pending, deadline).timed_out()
            {}
            self.batch.extend_from_slice(&pending.bytes);
            pending.bytes.clear();
        }
        self.batch_end = pending.end;
        self.batch_records += store.records_pending.swap(0, Ordering::Relaxed);
        (pending.stop, pending.rewritten.take())
    }

    /// Writes and syncs the batch, then moves the durable position; false if the disk is full.
    fn write(&mut self) -> bool {
        match self.file.append(&self.batch) {
            Ok(()) => {}
            Err(e) if out_of_space(&e) => {
                self.refused(&e);
                return false;
            }
            Err(e) => fatal(&self.store.path, "write", &e),
        }
        if let Err(e) = self.file.sync() {
            // Never retried: after a failed fsync the kernel may have dropped the data it could not write,
            // and a later successful fsync would say nothing about it.
            fatal(&self.store.path, "sync", &e);
        }
        self.size += self.batch.len() as u64;
        if let Some((_, tail)) = &mut self.rewriting {
            tail.extend_from_slice(&self.batch);
        }
        if self.store.full.swap(false, Ordering::Relaxed) {
            tracing::warn!(path = %self.store.path.display(), "durable store: written again; QoS 1/2 publishes accepted");
        }
        (self.retry, self.freeing_at) = (RETRY_FIRST, None);
        let store = &self.store;
        store.synced_records.fetch_add(std::mem::take(&mut self.batch_records), Ordering::Relaxed);
        store.syncs.fetch_add(1, Ordering::Relaxed);
        store.durable.store(self.batch_end, Ordering::Release);
        let wakers = std::mem::take(&mut *store.waiting.lock());
        for w in wakers {
            w.wake();
        }
        self.batch.clear();
        self.rewrite_if_grown();
        true
    }

    /// Starts a rewrite once the log has grown past `compact_at_least` and four times its live size.
    fn rewrite_if_grown(&mut self) {
        if self.rewriting.is_none() && self.rewrites() && self.size > self.store.compact_at_least.max(4 * self.live) {
            self.start_rewrite();
        }
    }

    /// A write refused for want of space: the file is cut back to its last whole record, the batch kept,
    /// the store marked full (logged once), and a rewrite started if the log may hold dead records.
    fn refused(&mut self, e: &std::io::Error) {
        if let Err(e) = self.file.truncate(self.size) {
            fatal(&self.store.path, "cut back after a refused write", &e);
        }
        if !self.store.full.swap(true, Ordering::Relaxed) {
            tracing::error!(
                path = %self.store.path.display(), unwritten = self.batch.len(),
                "durable store: disk full ({e}); refusing QoS 1/2 publishes, holding the answers that wait for \
                 the disk, and trying again until it has space"
            );
        }
        self.retry = (self.retry * 2).min(RETRY_MAX);
        if self.rewriting.is_none() && self.rewrites() && self.size > self.live && self.freeing_at != Some(self.size) {
            self.freeing_at = Some(self.size);
            self.start_rewrite();
        }
    }

    /// Whether this store rewrites its log at all (not when it writes through a test's disk).
    fn rewrites(&self) -> bool {
        self.store.compact_at_least != u64::MAX
    }

    /// Rewrites the log as it stands (all of it synced) on a thread of its own.
    fn start_rewrite(&mut self) {
        let (store, frozen) = (self.store.clone(), self.size);
        let spawned = std::thread::Builder::new().name("mqttd-rewrite".into()).spawn(move || {
            let result = replay(&store.path, frozen)
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|replayed| write_aside(&store.path, &replayed, store.session_base));
            store.pending.lock().rewritten = Some(result);
            store.appended.notify_one();
        });
        match spawned {
            Ok(_) => {
                self.rewriting = Some((frozen, Vec::new()));
                // Sessions name themselves again from here on (the set would otherwise only grow); the
                // rewrite keeps the names they had.
                self.store.pending.lock().named.clear();
            }
            Err(e) => tracing::warn!("durable store: cannot start a rewrite: {e}"),
        }
    }

    /// Appends what was written since the rewrite started to the rewritten file and puts it in the log's
    /// place; on a full disk the log stays as it is.
    fn finish_rewrite(&mut self, result: std::io::Result<u64>) {
        let Some((_, tail)) = self.rewriting.take() else { return };
        let path = self.store.path.clone();
        let tmp = aside(&path);
        let done = result.and_then(|n| {
            let mut f = OpenOptions::new().append(true).open(&tmp)?;
            f.write_all(&tail)?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)?;
            Ok((n, f))
        });
        match done {
            Ok((n, f)) => {
                if let Err(e) = sync_dir(&path) {
                    fatal(&path, "sync the directory after a rewrite", &e);
                }
                let to = n + tail.len() as u64;
                tracing::debug!(path = %path.display(), from = self.size, to, "durable store rewritten");
                (self.file, self.live, self.size) = (Box::new(f), n, to);
                // What came meanwhile may already be worth another.
                self.rewrite_if_grown();
            }
            Err(e) if out_of_space(&e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(path = %path.display(), "durable store: no space to rewrite the log ({e}); kept as it is");
            }
            Err(e) => fatal(&path, "rewrite", &e),
        }
    }
}

/// Whether a write failed for want of space (ENOSPC, EDQUOT, EFBIG): retried, unlike other failures.
fn out_of_space(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge)
}

/// Stops the broker: the log cannot be trusted to hold what it is given any more.
fn fatal(path: &Path, what: &str, e: &std::io::Error) -> ! {
    tracing::error!(path = %path.display(), "durable store: {what} failed, stopping: {e}");
    std::process::exit(1);
}

/// Where a rewrite is written before it replaces the log.
fn aside(path: &Path) -> std::path::PathBuf {
    path.with_extension("compacting")
}

/// Writes the records of `replayed` only beside the log and syncs them (session numbers from `keep_from`
/// on kept, see [`Replayed::records`]); returns their length.
fn write_aside(path: &Path, replayed: &Replayed, keep_from: u64) -> std::io::Result<u64> {
    let mut live = Vec::new();
    for record in replayed.records(keep_from) {
        record.encode(&mut live);
    }
    let tmp = aside(path);
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(&live)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(live.len() as u64)
}

/// Replaces the log at `path` with the records of `replayed` only (written aside, synced, renamed over it,
/// the directory synced); returns its size.
pub(super) fn rewrite(path: &Path, replayed: &Replayed) -> std::io::Result<u64> {
    // At startup no session has a number yet: each client keeps its latest.
    let n = write_aside(path, replayed, u64::MAX)?;
    std::fs::rename(aside(path), path)?;
    sync_dir(path)?;
    Ok(n)
}
