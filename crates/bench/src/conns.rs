//! The `conns` scenario: open C idle connections, measure the connect rate and the broker's memory.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::error::BenchError;
use crate::options::{BenchOptions, Plan};
use crate::procfs::{self, CpuClock};
use crate::progress::Progress;
use crate::report::Report;
use crate::wire::{self, Conn};

/// What one connecting worker ended with.
struct Opened {
    conns: Vec<Conn>,
    failed: u64,
    first_error: Option<String>,
}

async fn worker(addr: SocketAddr, opts: Arc<BenchOptions>, next: Arc<AtomicUsize>, total: usize) -> Opened {
    let mut out = Opened { conns: Vec::new(), failed: 0, first_error: None };
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return out;
        }
        let client_id = format!("bench-{}-c{i}", std::process::id());
        let from = (!opts.source_ips.is_empty()).then(|| opts.source_ips[i % opts.source_ips.len()]);
        match wire::connect((addr, from), opts.protocol_version, client_id, opts.persistent).await {
            Ok((conn, _)) => out.conns.push(conn),
            Err(e) => {
                out.failed += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

pub(crate) async fn run(opts: &BenchOptions, plan: &Plan, addr: SocketAddr) -> Result<Report, BenchError> {
    let total = plan.subscribers;
    let baseline = opts.pid.and_then(|pid| procfs::status_kib(pid, "VmRSS"));
    let cpu = CpuClock::start(opts.pid);
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let shared_opts = Arc::new(opts.clone());
    let workers: Vec<_> = (0..opts.concurrency.clamp(1, total))
        .map(|_| tokio::spawn(worker(addr, shared_opts.clone(), next.clone(), total)))
        .collect();
    let mut opened = Vec::with_capacity(total);
    let (mut failed, mut first_error) = (0, None);
    for w in workers {
        let done = w.await.map_err(|e| BenchError::Task(e.to_string()))?;
        opened.extend(done.conns);
        failed += done.failed;
        first_error = first_error.or(done.first_error);
    }
    let connect_secs = start.elapsed().as_secs_f64();

    let mut progress = Progress::new(!opts.no_progress, "conns".into());
    let hold_until = Instant::now() + plan.duration;
    while Instant::now() < hold_until {
        progress.show(start.elapsed().as_secs_f64(), total as u64, opened.len() as u64);
        tokio::time::sleep(Duration::from_millis(500).min(hold_until - Instant::now())).await;
    }
    progress.finish();
    let rss = opts.pid.and_then(|pid| procfs::status_kib(pid, "VmRSS"));
    let peak = opts.pid.and_then(|pid| procfs::status_kib(pid, "VmHWM"));
    let (own_cpu, broker_cpu) = cpu.elapsed();
    let elapsed = start.elapsed().as_secs_f64();
    for conn in &mut opened {
        let _ = conn.stream.write_all(&wire::DISCONNECT).await;
        // Close with a reset: no TIME_WAIT left on 10k ephemeral ports, which would slow the next run's
        // connects (the kernel searches past them) and make connect rates depend on the previous run.
        let _ = conn.stream.set_zero_linger();
    }
    drop(opened.drain(..));

    let mut report = Report::new(opts, plan);
    report.publishers = 0;
    report.subscribers = 0;
    report.connections = (total as u64).saturating_sub(failed);
    report.failed_connections = failed;
    report.first_connect_error = first_error;
    report.connect_rate = Some(report.connections as f64 / connect_secs);
    report.elapsed_secs = elapsed;
    if let (Some(before), Some(after)) = (baseline, rss) {
        if report.connections > 0 {
            report.memory_per_connection = Some((after as f64 - before as f64) * 1024.0 / report.connections as f64);
        }
    }
    report.broker_rss_kib = rss;
    report.broker_peak_rss_kib = peak;
    report.set_cpu(own_cpu, broker_cpu, elapsed);
    Ok(report)
}
