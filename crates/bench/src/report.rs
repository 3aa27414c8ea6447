//! The result of a run: a summary table for people, one JSON line for scripts.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::options::{BenchOptions, Plan, Scenario};

/// Latency percentiles in microseconds, from send time to receipt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// From a histogram of nanoseconds.
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Everything one run measured. Rates are per second; message counts are deliveries (a fan-out message
/// counts once per subscriber).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub scenario: Scenario,
    pub qos: u8,
    pub payload: usize,
    pub protocol: String,
    pub publishers: usize,
    pub subscribers: usize,
    pub duration_secs: f64,
    /// Load plus drain.
    pub elapsed_secs: f64,
    pub rate_limit: Option<u64>,
    /// PUBLISH packets sent.
    pub sent: u64,
    /// QoS 1/2 flows completed (PUBACK or PUBCOMP received).
    pub completed: u64,
    /// Acknowledgements carrying a failure reason code.
    pub refused: u64,
    /// QoS 1/2 messages still unacknowledged when the drain ended.
    pub unacked: u64,
    /// Deliveries due: sent times subscribers per message.
    pub expected: u64,
    /// Distinct deliveries received.
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Messages received that no publisher of this run sent.
    pub foreign: u64,
    pub send_rate: f64,
    /// Distinct deliveries per second, from the start of the load to the last receipt.
    pub receive_rate: f64,
    pub latency: Option<Latency>,
    /// conns: connections opened (CONNACK received) and failed.
    pub connections: u64,
    pub failed_connections: u64,
    pub first_connect_error: Option<String>,
    pub connect_rate: Option<f64>,
    /// conns with --pid: broker RSS growth divided by the connections, in bytes.
    pub memory_per_connection: Option<f64>,
    /// CPU seconds of this generator over the run, and as a percentage of one core.
    pub bench_cpu_secs: f64,
    pub bench_cpu_percent: f64,
    pub broker_cpu_secs: Option<f64>,
    pub broker_cpu_percent: Option<f64>,
    pub broker_rss_kib: Option<u64>,
    pub broker_peak_rss_kib: Option<u64>,
}

impl Report {
    pub(crate) fn new(opts: &BenchOptions, plan: &Plan) -> Report {
        Report {
            scenario: opts.scenario,
            qos: opts.qos,
            payload: opts.payload,
            protocol: opts.protocol_version.to_string(),
            publishers: plan.publishers,
            subscribers: plan.subscribers,
            duration_secs: plan.duration.as_secs_f64(),
            elapsed_secs: 0.0,
            rate_limit: plan.rate,
            sent: 0,
            completed: 0,
            refused: 0,
            unacked: 0,
            expected: 0,
            received: 0,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            foreign: 0,
            send_rate: 0.0,
            receive_rate: 0.0,
            latency: None,
            connections: 0,
            failed_connections: 0,
            first_connect_error: None,
            connect_rate: None,
            memory_per_connection: None,
            bench_cpu_secs: 0.0,
            bench_cpu_percent: 0.0,
            broker_cpu_secs: None,
            broker_cpu_percent: None,
            broker_rss_kib: None,
            broker_peak_rss_kib: None,
        }
    }

    pub(crate) fn set_cpu(&mut self, own: f64, broker: Option<f64>, wall: f64) {
        let percent = |secs: f64| if wall > 0.0 { 100.0 * secs / wall } else { 0.0 };
        self.bench_cpu_secs = own;
        self.bench_cpu_percent = percent(own);
        self.broker_cpu_secs = broker;
        self.broker_cpu_percent = broker.map(percent);
    }

    /// One JSON object with every figure.
    pub fn to_json(&self) -> Value {
        let latency = self
            .latency
            .map(|l| json!({"p50": l.p50, "p90": l.p90, "p99": l.p99, "p99_9": l.p999, "max": l.max, "mean": l.mean}));
        json!({
            "scenario": self.scenario.name(), "qos": self.qos, "payload": self.payload,
            "protocol": self.protocol, "publishers": self.publishers, "subscribers": self.subscribers,
            "duration_secs": self.duration_secs, "elapsed_secs": self.elapsed_secs, "rate_limit": self.rate_limit,
            "sent": self.sent, "completed": self.completed, "refused": self.refused, "unacked": self.unacked,
            "expected": self.expected, "received": self.received, "lost": self.lost,
            "duplicates": self.duplicates, "reordered": self.reordered, "foreign": self.foreign,
            "send_rate": self.send_rate, "receive_rate": self.receive_rate, "latency_us": latency,
            "connections": self.connections, "failed_connections": self.failed_connections,
            "first_connect_error": self.first_connect_error, "connect_rate": self.connect_rate,
            "memory_per_connection": self.memory_per_connection,
            "bench_cpu_secs": self.bench_cpu_secs, "bench_cpu_percent": self.bench_cpu_percent,
            "broker_cpu_secs": self.broker_cpu_secs, "broker_cpu_percent": self.broker_cpu_percent,
            "broker_rss_kib": self.broker_rss_kib, "broker_peak_rss_kib": self.broker_peak_rss_kib,
        })
    }

    /// The summary table for a terminal.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |name: &str, value: String| {
            let _ = writeln!(t, "  {name:<22} {value}");
        };
        row(
            "scenario",
            format!(
                "{} qos {} payload {} B, MQTT {}, {} publisher(s), {} subscriber(s)",
                self.scenario.name(),
                self.qos,
                self.payload,
                self.protocol,
                self.publishers,
                self.subscribers
            ),
        );
        if self.scenario == Scenario::Conns {
            row("connections", format!("{} opened, {} failed", self.connections, self.failed_connections));
            if let Some(e) = &self.first_connect_error {
                row("first failure", e.clone());
            }
            if let Some(rate) = self.connect_rate {
                row("connect rate", format!("{rate:.0} CONNACK/s"));
            }
            if let Some(bytes) = self.memory_per_connection {
                row("broker memory / conn", format!("{bytes:.0} B"));
            }
        } else {
            let limit = self.rate_limit.map_or(String::new(), |r| format!(" (limited to {r} msg/s)"));
            row("duration", format!("{:.1} s load, {:.1} s with drain{limit}", self.duration_secs, self.elapsed_secs));
            row("sent", format!("{} ({:.0} msg/s)", self.sent, self.send_rate));
            row("received", format!("{} of {} ({:.0} msg/s)", self.received, self.expected, self.receive_rate));
            row(
                "lost / dup / reordered",
                format!("{} / {} / {} (foreign {})", self.lost, self.duplicates, self.reordered, self.foreign),
            );
            if self.qos > 0 {
                row(
                    "acknowledged",
                    format!("{} completed, {} refused, {} unacked", self.completed, self.refused, self.unacked),
                );
            }
            if let Some(l) = self.latency {
                row(
                    "latency us",
                    format!(
                        "p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
                        l.p50, l.p90, l.p99, l.p999, l.max
                    ),
                );
            }
        }
        row("generator cpu", format!("{:.2} s ({:.0}% of a core)", self.bench_cpu_secs, self.bench_cpu_percent));
        if let (Some(s), Some(p)) = (self.broker_cpu_secs, self.broker_cpu_percent) {
            row("broker cpu", format!("{s:.2} s ({p:.0}% of a core)"));
        }
        if let (Some(rss), Some(peak)) = (self.broker_rss_kib, self.broker_peak_rss_kib) {
            row("broker rss", format!("{:.1} MiB now, {:.1} MiB peak", rss as f64 / 1024.0, peak as f64 / 1024.0));
        }
        t
    }
}
