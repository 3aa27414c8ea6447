//! Load generator for MQTT brokers, used by `mqtt bench` and the standalone `mqtt-bench`.
//!
//! Owns: the load scenarios (`fanin`, `fanout`, `pairs`, `latency`, `conns`), counting every delivered
//! message by per-publisher sequence numbers, latency histograms and the report. Must not: be the
//! bottleneck. It speaks MQTT directly on tokio and `mqttd_proto` rather than through the general client:
//! publishes are encoded from a template into one buffer and written in batches, acknowledgements are
//! pipelined within a window, and received PUBLISH frames are parsed in place without allocating.

mod conns;
mod error;
mod load;
mod options;
mod procfs;
mod progress;
mod publisher;
mod report;
mod subscriber;
mod track;
mod wire;

pub use error::BenchError;
pub use options::{BenchOptions, Scenario};
pub use report::{Latency, Report};

/// Runs one scenario on the current tokio runtime and returns its report.
///
/// Every load stops by itself after `--duration`, then waits at most `--drain` seconds for messages still
/// in flight before counting losses.
pub async fn run(opts: BenchOptions) -> Result<Report, BenchError> {
    let plan = options::Plan::new(&opts)?;
    let addr = wire::resolve(&opts.host, opts.port).await?;
    match opts.scenario {
        Scenario::Conns => conns::run(&opts, &plan, addr).await,
        _ => load::run(&opts, &plan, addr).await,
    }
}

/// Runs one scenario on a runtime of its own with `--threads` worker threads (1: current-thread).
pub fn run_blocking(opts: BenchOptions) -> Result<Report, BenchError> {
    let runtime = if opts.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(opts.threads).enable_all().build()
    }
    .map_err(|source| BenchError::Io { what: "starting the tokio runtime".into(), source })?;
    runtime.block_on(run(opts))
}
