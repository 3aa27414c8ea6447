//! Power loss, simulated: the writer appends to a disk that keeps what was synced apart from what was
//! only written, and a crash keeps the synced bytes and any prefix of the rest (a torn last write).
//! Property: whatever the store reported durable (what the broker acknowledged) is in the state replayed
//! after the crash. A disk whose sync does nothing must make the property fail, and does.

use std::sync::Arc;

use bytes::Bytes;
use mqttd_proto::{Properties, QoS};
use parking_lot::Mutex;
use proptest::prelude::*;

use super::{LogFile, RawMessage, Record, Store, StoredMessage};

/// What a disk holds: bytes a sync made durable, and bytes written since; and how many bytes fit on it.
#[derive(Debug)]
struct Disk {
    synced: Vec<u8>,
    volatile: Vec<u8>,
    space: usize,
}

impl Default for Disk {
    fn default() -> Disk {
        Disk { synced: Vec::new(), volatile: Vec::new(), space: usize::MAX }
    }
}

/// The writer's view of a [`Disk`]; with `lying`, sync makes nothing durable (a disk that acknowledges
/// writes it has only cached).
struct Faulty {
    disk: Arc<Mutex<Disk>>,
    lying: bool,
}

impl LogFile for Faulty {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut disk = self.disk.lock();
        let room = disk.space.saturating_sub(disk.synced.len() + disk.volatile.len());
        // A full disk takes what fits, as write(2) does, and refuses the rest.
        disk.volatile.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if bytes.len() > room {
            return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
        }
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        let mut disk = self.disk.lock();
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let synced = disk.synced.len();
        disk.volatile.truncate(len.saturating_sub(synced));
        disk.synced.truncate(len);
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if !self.lying {
            let mut disk = self.disk.lock();
            let written = std::mem::take(&mut disk.volatile);
            disk.synced.extend(written);
        }
        Ok(())
    }
}

fn retained(topic: u8, value: usize) -> Record {
    Record::Retained(RawMessage::encode(&StoredMessage {
        topic: format!("t/{topic}"),
        payload: Bytes::from(value.to_string()),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::default(),
        expires_at_ms: 0,
    }))
}

/// Appends `ops` (topic, whether to wait until durable, as the broker waits before a PUBACK), crashes
/// keeping `torn` (a fraction) of what was not synced, replays, and checks that every record up to the
/// last one waited for is reflected: each topic holds that record's value or a later one of its own.
fn crash_keeps_what_was_durable(ops: &[(u8, bool)], torn: f64, lying: bool) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let disk = Arc::new(Mutex::new(Disk::default()));
    let faulty = Faulty { disk: disk.clone(), lying };
    let (store, _) =
        Store::open_with(&dir.path().join("before.db"), u64::MAX, |_| Box::new(faulty)).map_err(|e| e.to_string())?;
    let mut durable_upto = None;
    for (i, &(topic, wait)) in ops.iter().enumerate() {
        let position = store.append(&retained(topic, i));
        if wait {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while store.durable() < position {
                if std::time::Instant::now() > deadline {
                    return Err("the writer did not sync".into());
                }
                std::thread::yield_now();
            }
            durable_upto = Some(i);
        }
    }
    // The crash: what was synced, and a prefix of what was only written.
    let content = {
        let disk = disk.lock();
        let kept = (disk.volatile.len() as f64 * torn) as usize;
        [&disk.synced[..], &disk.volatile[..kept]].concat()
    };
    store.close();
    let after = dir.path().join("after.db");
    std::fs::write(&after, content).map_err(|e| e.to_string())?;
    let (reopened, replayed) = Store::open(&after, false).map_err(|e| e.to_string())?;
    reopened.close();
    let Some(upto) = durable_upto else { return Ok(()) };
    for topic in 0..8u8 {
        let Some(last) = ops[..=upto].iter().rposition(|&(t, _)| t == topic) else { continue };
        let got = replayed.retained.get(&format!("t/{topic}")).and_then(RawMessage::decode).map(|m| m.payload);
        let value: Option<usize> = got.and_then(|p| std::str::from_utf8(&p).ok()?.parse().ok());
        match value {
            Some(v) if v >= last && ops.get(v).is_some_and(|&(t, _)| t == topic) => {}
            other => return Err(format!("t/{topic}: durable value {last}, after the crash {other:?}")),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_power_loss_at_any_moment_keeps_every_record_the_store_reported_durable(
        ops in prop::collection::vec((0u8..8, prop::bool::weighted(0.2)), 1..200),
        torn in 0.0f64..=1.0,
    ) {
        prop_assert_eq!(crash_keeps_what_was_durable(&ops, torn, false), Ok(()));
    }
}

/// The property can fail: on a disk whose sync makes nothing durable, acknowledged records are lost.
#[test]
fn a_disk_that_does_not_sync_breaks_the_property() {
    let ops: Vec<(u8, bool)> = (0..20).map(|i| (i % 4, i == 19)).collect();
    let lost = crash_keeps_what_was_durable(&ops, 0.0, true);
    assert!(lost.is_err(), "a lying disk must lose acknowledged records: {lost:?}");
    assert_eq!(crash_keeps_what_was_durable(&ops, 0.0, false), Ok(()));
}

/// A full disk (ENOSPC): the store is marked full, nothing appended after the last whole record reaches
/// the disk and nothing written since is reported durable; once there is space again, the kept records
/// are written, reported durable and the store is no longer full. Issue 13: "a full disk refuses new
/// QoS 1/2 publishes while everything already acknowledged stays safe".
#[test]
fn a_full_disk_holds_what_it_cannot_write_and_writes_it_once_there_is_space() {
    let dir = tempfile::tempdir().expect("temp dir");
    let one = {
        let mut bytes = Vec::new();
        retained(0, 0).encode(&mut bytes);
        bytes.len()
    };
    let disk = Arc::new(Mutex::new(Disk { space: 3 * one + one / 2, ..Disk::default() }));
    let faulty = Faulty { disk: disk.clone(), lying: false };
    let (store, _) = Store::open_with(&dir.path().join("full.db"), u64::MAX, |_| Box::new(faulty)).expect("opens");
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::yield_now();
        }
    };
    let first = store.append(&retained(0, 0));
    wait("the first record is durable", &|| store.durable() >= first);
    assert!(!store.full());
    let positions: Vec<u64> = (1..6).map(|i| store.append(&retained(i, i as usize))).collect();
    wait("the store finds the disk full", &|| store.full());
    let durable = store.durable();
    assert!(durable < positions[4], "records that did not fit are not durable: {durable}");
    {
        // The disk holds whole records only: the refused write was cut back.
        let disk = disk.lock();
        let content = [&disk.synced[..], &disk.volatile[..]].concat();
        assert_eq!(content.len() % one, 0, "the file ends with a whole record");
    }
    disk.lock().space = usize::MAX;
    wait("the kept records are written once there is space", &|| store.durable() >= positions[4]);
    wait("the store is no longer full", &|| !store.full());
    let content = disk.lock().synced.clone();
    store.close();
    let after = dir.path().join("after.db");
    std::fs::write(&after, content).expect("writes");
    let (reopened, replayed) = Store::open(&after, false).expect("reopens");
    reopened.close();
    assert_eq!(replayed.retained.len(), 6, "every record reached the disk once");
}
