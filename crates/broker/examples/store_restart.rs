//! How long a restart takes on a big durable store (issue 13's figure: 1M retained messages and 10k
//! sessions holding 100 queued messages each, under 3 s on this machine). Writes such a log in a temporary
//! directory, then times `Store::open` (replay and rewrite) and `Broker::restore`.
//!
//! usage: cargo run --release -p mqttd-broker --example store_restart [RETAINED] [SESSIONS] [QUEUED]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mqttd_broker::store::{RawMessage, Record, Store, StoredMessage};
use mqttd_broker::{Broker, Settings};
use mqttd_core::{ClientIdentity, Event, Expiry, SessionSnapshot, Subscription, Time};
use mqttd_proto::{Properties, QoS, SubscriptionOptions};

fn message(topic: String, qos: QoS) -> RawMessage {
    RawMessage::encode(&StoredMessage {
        topic,
        payload: Bytes::from_static(&[b'x'; 64]),
        qos,
        retain: false,
        properties: Properties::default(),
        expires_at_ms: 0,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: usize| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (retained, sessions, queued) = (arg(1, 1_000_000), arg(2, 10_000), arg(3, 100));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("mqttd.db");
    let started = Instant::now();
    {
        // Never rewritten while it is written: everything in it is live.
        let (store, _) = Store::open_compacting_at(&path, u64::MAX)?;
        let mut end = 0;
        for i in 0..retained {
            end =
                store.append(&Record::Retained(message(format!("sensors/{}/{}", i / 1000, i % 1000), QoS::AtMostOnce)));
        }
        let mut id = 0;
        for s in 0..sessions {
            let client_id = format!("client-{s}");
            let options = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
            let session = SessionSnapshot {
                identity: ClientIdentity { client_id: client_id.as_str().into(), username: None, listener: 0 },
                owner: 0,
                expiry: Expiry::Never,
                will: None,
                disconnected_at: Some(Time::from_millis(1)),
                subscriptions: vec![(format!("queues/{s}/#"), Subscription { options, identifier: None })],
            };
            store.append(&Record::Session(Event::SessionSnapshot(session)));
            let number = s as u64 + 1;
            store.append(&Record::Name { session: number, client_id: client_id.clone() });
            for _ in 0..queued {
                id += 1;
                store.append(&Record::Message { id, message: message(format!("queues/{s}/m"), QoS::AtLeastOnce) });
                end = store.append(&Record::Enqueue {
                    session: number,
                    id,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    subscription_ids: Vec::new(),
                });
            }
        }
        while store.durable() < end {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        store.close();
    }
    let size = std::fs::metadata(&path)?.len();
    println!(
        "wrote {retained} retained, {sessions} sessions x {queued} queued: {} MiB in {:.1?}",
        size >> 20,
        started.elapsed()
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let cpu_before = cpu_seconds();
        let (store, replayed) = Store::open(&path, false)?;
        let opened = started.elapsed();
        let cpu_opened = cpu_seconds() - cpu_before;
        let broker = Arc::new(Broker::new(Settings::default()));
        broker.set_store(store);
        broker.restore(replayed);
        println!(
            "restart: replay and rewrite {opened:.2?}, restore {:.2?}, total {:.2?}, CPU {cpu_opened:.2} + {:.2} s \
             ({} retained, {} sessions)",
            started.elapsed() - opened,
            started.elapsed(),
            cpu_seconds() - cpu_before - cpu_opened,
            broker.retained_count(),
            broker.session_count()
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// CPU time of this process so far (user and system, all threads), from /proc: on a busy machine a steadier
/// figure than the wall clock.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command; 100 ticks a second.
    (ticks(11) + ticks(12)) / 100.0
}
