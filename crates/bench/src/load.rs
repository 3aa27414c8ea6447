//! The message scenarios (fanin, fanout, pairs, latency, shared): connect, load for `--duration`, drain, count.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqttd_proto::QoS;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::BenchError;
use crate::options::{BenchOptions, Plan, Scenario};
use crate::procfs::{self, CpuClock};
use crate::progress::Progress;
use crate::publisher::{self, PubPlan, PubResult};
use crate::report::{Latency, Report};
use crate::subscriber::{self, Shared, SubResult};
use crate::track::Tally;
use crate::wire::{self, Conn, Template};

/// The drain ends early when nothing arrived for this long.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

async fn join<T>(handles: Vec<JoinHandle<Result<T, BenchError>>>) -> Result<Vec<T>, BenchError> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.map_err(|e| BenchError::Task(e.to_string()))??);
    }
    Ok(out)
}

/// Opens one connection per topic filter (or per `None`: a publisher) in parallel.
async fn open(
    addr: SocketAddr,
    opts: &BenchOptions,
    role: &str,
    filters: Vec<Option<String>>,
    qos: QoS,
) -> Result<Vec<(Conn, Option<u16>)>, BenchError> {
    let handles = filters
        .into_iter()
        .enumerate()
        .map(|(i, filter)| {
            let client_id = format!("bench-{}-{role}{i}", std::process::id());
            let (version, persistent) = (opts.protocol_version, opts.persistent);
            tokio::spawn(async move {
                let (mut conn, ack) = wire::connect((addr, None), version, client_id, persistent).await?;
                if let Some(filter) = filter {
                    conn.subscribe(&filter, qos).await?;
                }
                Ok((conn, ack.properties.receive_maximum))
            })
        })
        .collect();
    join(handles).await
}

fn topology(scenario: Scenario, plan: &Plan) -> (Vec<String>, Vec<String>) {
    let p = &plan.prefix;
    match scenario {
        Scenario::Fanin => ((0..plan.publishers).map(|i| format!("{p}/{i}")).collect(), vec![format!("{p}/+")]),
        Scenario::Fanout => (vec![format!("{p}/0")], vec![format!("{p}/0"); plan.subscribers]),
        Scenario::Shared => (
            (0..plan.publishers).map(|i| format!("{p}/{i}")).collect(),
            vec![format!("$share/bench/{p}/+"); plan.subscribers],
        ),
        _ => {
            let topics: Vec<String> = (0..plan.publishers).map(|i| format!("{p}/{i}")).collect();
            (topics.clone(), topics)
        }
    }
}

pub(crate) async fn run(opts: &BenchOptions, plan: &Plan, addr: SocketAddr) -> Result<Report, BenchError> {
    let (topics, filters) = topology(opts.scenario, plan);
    let sub_addr = match opts.sub_port {
        Some(port) => crate::wire::resolve(&opts.host, port).await?,
        None => addr,
    };
    let subs = open(sub_addr, opts, "s", filters.into_iter().map(Some).collect(), plan.qos).await?;
    if opts.settle > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(opts.settle)).await;
    }
    let pubs = open(addr, opts, "p", vec![None; topics.len()], plan.qos).await?;

    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let cpu = CpuClock::start(opts.pid);
    let epoch = Instant::now();
    let deadline = epoch + plan.duration;
    let drain_deadline = deadline + plan.drain;
    let sub_tasks: Vec<_> = subs
        .into_iter()
        .map(|(conn, _)| tokio::spawn(subscriber::run(conn, topics.len(), epoch, shared.clone(), stop_rx.clone())))
        .collect();
    let mut pub_tasks = Vec::with_capacity(pubs.len());
    for (i, ((conn, receive_maximum), topic)) in pubs.into_iter().zip(&topics).enumerate() {
        let window = usize::from(opts.window).min(usize::from(receive_maximum.unwrap_or(u16::MAX))).min(65_000);
        let pub_plan = PubPlan {
            id: i as u32,
            template: Template::new(topic, plan.qos, opts.payload, opts.protocol_version)?,
            qos: plan.qos,
            window: window.max(1),
            rate: plan.rate.map(|r| r as f64 / topics.len() as f64),
            epoch,
            deadline,
            drain_deadline,
        };
        pub_tasks.push(tokio::spawn(publisher::run(conn, pub_plan, shared.clone())));
    }

    let mut progress = Progress::new(!opts.no_progress, format!("{} qos{}", opts.scenario.name(), opts.qos));
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut shown = epoch;
    let mut show = |progress: &mut Progress, force: bool| {
        if force || shown.elapsed() >= Duration::from_secs(1) {
            shown = Instant::now();
            let sent = shared.sent.load(Ordering::Relaxed);
            progress.show(epoch.elapsed().as_secs_f64(), sent, shared.received.load(Ordering::Relaxed));
        }
    };
    while !pub_tasks.iter().all(|t| t.is_finished()) {
        tick.tick().await;
        show(&mut progress, false);
        if sub_tasks.iter().any(|t| t.is_finished()) {
            break;
        }
    }
    let published = join(pub_tasks).await;
    let published = match published {
        Ok(p) => p,
        Err(e) => {
            let _ = stop_tx.send(true);
            return Err(e);
        }
    };
    let fan = plan.fan(opts.scenario);
    let expected: u64 = published.iter().map(|p| p.sent * fan).sum();
    let mut last = (Instant::now(), shared.received.load(Ordering::Relaxed));
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        let received = shared.received.load(Ordering::Relaxed);
        let now = Instant::now();
        if received != last.1 {
            last = (now, received);
        }
        if received >= expected || now >= drain_deadline || now - last.0 >= DRAIN_IDLE {
            break;
        }
        if sub_tasks.iter().any(|t| t.is_finished()) {
            break;
        }
        show(&mut progress, false);
        tick.tick().await;
    }
    show(&mut progress, true);
    progress.finish();
    let _ = stop_tx.send(true);
    let received = join(sub_tasks).await?;
    let (own_cpu, broker_cpu) = cpu.elapsed();
    let elapsed = epoch.elapsed().as_secs_f64();
    let last_receive = shared.last_receive_ns.load(Ordering::Relaxed) as f64 / 1e9;
    Ok(summarise(opts, plan, published, received, expected, elapsed, last_receive, own_cpu, broker_cpu))
}

#[allow(clippy::too_many_arguments)]
fn summarise(
    opts: &BenchOptions,
    plan: &Plan,
    published: Vec<PubResult>,
    received: Vec<SubResult>,
    expected: u64,
    elapsed: f64,
    last_receive: f64,
    own_cpu: f64,
    broker_cpu: Option<f64>,
) -> Report {
    let mut tally = Tally::default();
    let mut foreign = 0;
    let mut latency = hdrhistogram::Histogram::<u64>::new(3).expect("3 significant figures is valid");
    for sub in &received {
        sub.tracks.iter().for_each(|t| tally.add(t));
        foreign += sub.foreign;
        let _ = latency.add(&sub.latency);
    }
    let sent: u64 = published.iter().map(|p| p.sent).sum();
    let duration = plan.duration.as_secs_f64();
    let mut report = Report::new(opts, plan);
    report.sent = sent;
    report.completed = published.iter().map(|p| p.completed).sum();
    report.refused = published.iter().map(|p| p.refused).sum();
    report.unacked = published.iter().map(|p| p.unacked).sum();
    report.expected = expected;
    report.received = tally.unique;
    report.lost = expected.saturating_sub(tally.unique);
    report.duplicates = tally.duplicates;
    report.reordered = tally.reordered;
    report.foreign = foreign;
    report.send_rate = sent as f64 / duration;
    report.receive_rate = if last_receive > 0.0 { tally.unique as f64 / last_receive } else { 0.0 };
    report.elapsed_secs = elapsed;
    report.latency = (!latency.is_empty()).then(|| Latency::from_histogram(&latency));
    report.set_cpu(own_cpu, broker_cpu, elapsed);
    if let Some(pid) = opts.pid {
        report.broker_rss_kib = procfs::status_kib(pid, "VmRSS");
        report.broker_peak_rss_kib = procfs::status_kib(pid, "VmHWM");
    }
    report
}
