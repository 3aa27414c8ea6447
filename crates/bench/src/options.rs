//! Command-line options ([`BenchOptions`], flattened into `mqtt bench`) and the plan derived from them.

use std::time::Duration;

use mqttd_proto::{ProtocolVersion, QoS};

use crate::error::BenchError;

/// Load shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// P publishers on their own topics, one subscriber on a `+` wildcard.
    Fanin,
    /// One publisher, S subscribers on its topic.
    Fanout,
    /// N publisher/subscriber pairs, each on its own topic.
    Pairs,
    /// N pairs at a fixed aggregate rate (--rate); latency from the send time carried in the payload.
    Latency,
    /// N publishers on their own topics, N subscribers in one shared subscription group
    /// (`$share/bench/...`): each message goes to one member.
    Shared,
    /// C idle connections: connect rate and, with --pid, the broker's memory per connection.
    Conns,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanin => "fanin",
            Scenario::Fanout => "fanout",
            Scenario::Pairs => "pairs",
            Scenario::Latency => "latency",
            Scenario::Shared => "shared",
            Scenario::Conns => "conns",
        }
    }
}

/// Options of one benchmark run.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Load shape: fanin, fanout, pairs, latency, shared or conns.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Clients: publishers for fanin (default 50), subscribers for fanout (100), pairs for pairs (100)
    /// and latency (10), publishers and group members for shared (10), connections for conns (10000).
    #[arg(short = 'n', long)]
    pub clients: Option<usize>,
    /// QoS of publishes and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 16: publisher id, sequence number and send time).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Seconds of load (for conns: seconds the connections are held idle).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// QoS 1/2 messages in flight per publisher.
    #[arg(long, default_value_t = 100)]
    pub window: u16,
    /// Aggregate publish rate in msg/s over all publishers (latency: default 20000; others: unlimited).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Broker host (`-h`, as `mqtt pub`/`sub` and mosquitto_pub; help is `-H`).
    #[arg(short = 'h', long, visible_alias = "hostname", default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT version: 3 or 3.1, 4 or 3.1.1, 5 or 5.0.
    #[arg(long = "protocol-version", value_parser = parse_version, default_value = "4")]
    pub protocol_version: ProtocolVersion,
    /// Broker process id: report its CPU time, RSS, peak RSS and (conns) memory per connection.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Seconds to wait after the load for messages still in flight before counting losses.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Print the report as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// No live progress line on stderr.
    #[arg(long)]
    pub no_progress: bool,
    /// Generator threads (1: a current-thread runtime). Used by the standalone binary.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Connection attempts in parallel (conns).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Connect with Clean Session 0 (persistent sessions): with a durable broker, every QoS 1/2 message
    /// for a subscriber is stored before it is acknowledged.
    #[arg(long)]
    pub persistent: bool,
    /// Topic prefix (default: mqttd-bench/<process id>).
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// Local address to connect from (conns; repeat it to take turns). One source address has about 28k
    /// ephemeral ports towards one broker port, and the kernel's search for a free one slows connects
    /// long before they run out: `bench/idle-scale` uses one address per 5,000 connections.
    #[arg(long = "source-ip", value_name = "IP")]
    pub source_ips: Vec<std::net::IpAddr>,
    /// Subscribers connect to this port of the same host (another node of an mqttd cluster); publishers
    /// to `--port`.
    #[arg(long = "sub-port")]
    pub sub_port: Option<u16>,
    /// Seconds to wait after the subscriptions before publishing (a cluster spreads them to its other
    /// nodes meanwhile).
    #[arg(long, default_value_t = 0.0)]
    pub settle: f64,
}

fn parse_version(value: &str) -> Result<ProtocolVersion, String> {
    match value {
        "3" | "3.1" => Ok(ProtocolVersion::V3_1),
        "4" | "3.1.1" => Ok(ProtocolVersion::V3_1_1),
        "5" | "5.0" => Ok(ProtocolVersion::V5),
        other => Err(format!("unknown protocol version {other:?}: use 3.1, 3.1.1 or 5")),
    }
}

/// Smallest payload: publisher id (4 bytes), sequence number (4), send time in ns (8).
pub(crate) const MIN_PAYLOAD: usize = 16;

/// The validated, derived form of [`BenchOptions`].
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub publishers: usize,
    pub subscribers: usize,
    pub qos: QoS,
    pub duration: Duration,
    pub drain: Duration,
    /// Aggregate msg/s, if limited.
    pub rate: Option<u64>,
    pub prefix: String,
}

impl Plan {
    pub fn new(opts: &BenchOptions) -> Result<Plan, BenchError> {
        let bad = |m: String| Err(BenchError::Options(m));
        let n = match (opts.clients, opts.scenario) {
            (Some(n), _) => n,
            (None, Scenario::Fanin) => 50,
            (None, Scenario::Fanout | Scenario::Pairs) => 100,
            (None, Scenario::Latency | Scenario::Shared) => 10,
            (None, Scenario::Conns) => 10_000,
        };
        if n == 0 {
            return bad("--clients must be at least 1".into());
        }
        if opts.payload < MIN_PAYLOAD {
            return bad(format!("--payload {} is below the {MIN_PAYLOAD} bytes the sequence needs", opts.payload));
        }
        let finite_and = |v: f64, ok: bool| v.is_finite() && ok;
        if !finite_and(opts.duration, opts.duration > 0.0) || !finite_and(opts.drain, opts.drain >= 0.0) {
            return bad("--duration must be above 0 and --drain at least 0".into());
        }
        if opts.window == 0 {
            return bad("--window must be at least 1".into());
        }
        let (publishers, subscribers) = match opts.scenario {
            Scenario::Fanin => (n, 1),
            Scenario::Fanout => (1, n),
            Scenario::Pairs | Scenario::Latency | Scenario::Shared => (n, n),
            Scenario::Conns => (0, 0),
        };
        let rate = match (opts.scenario, opts.rate) {
            (_, Some(0)) => None,
            (Scenario::Latency, None) => Some(20_000),
            (_, rate) => rate,
        };
        Ok(Plan {
            publishers,
            subscribers: if opts.scenario == Scenario::Conns { n } else { subscribers },
            qos: QoS::from_u8(opts.qos).expect("clap limits --qos to 0..=2"),
            duration: Duration::from_secs_f64(opts.duration),
            drain: Duration::from_secs_f64(opts.drain),
            rate,
            prefix: opts.topic_prefix.clone().unwrap_or_else(|| format!("mqttd-bench/{}", std::process::id())),
        })
    }

    /// How many subscribers receive each message of one publisher.
    pub fn fan(&self, scenario: Scenario) -> u64 {
        match scenario {
            Scenario::Fanout => self.subscribers as u64,
            _ => 1,
        }
    }
}
