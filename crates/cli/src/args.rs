//! Command-line arguments, parsed with clap but shaped after the mqtt.js CLI: `-h` is the host name, `-H` is
//! help, `-C` and `-l` both choose the transport, and the topic and message may be positional.
//!
//! Where a mosquitto_sub letter is taken by mqtt.js, the long name is used instead: the message count is
//! `--count` (mosquitto_sub `-C`), because `-C` means `--protocol` in mqtt.js.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::help;

#[derive(Debug, Parser)]
#[command(
    name = "mqtt",
    disable_help_flag = true,
    disable_version_flag = true,
    disable_help_subcommand = true,
    override_help = help::MAIN
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[arg(short = 'H', long = "help", action = ArgAction::Help)]
    help: Option<bool>,
    #[arg(long = "version", action = ArgAction::SetTrue)]
    pub version: bool,
}

/// `mqtt bench`: the options of the load generator, plus `-H/--help` as on every command.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub opts: mqttd_bench::BenchOptions,
    #[arg(short = 'H', long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish a message.
    #[command(visible_alias = "pub", disable_help_flag = true, override_help = help::PUBLISH)]
    Publish(PubArgs),
    /// Subscribe and print messages.
    #[command(visible_alias = "sub", disable_help_flag = true, override_help = help::SUBSCRIBE)]
    Subscribe(SubArgs),
    /// Request / response (MQTT 5).
    #[command(visible_alias = "rr", disable_help_flag = true, override_help = help::RR)]
    Request(RrArgs),
    /// Load a broker and measure it (throughput, losses, latency, CPU).
    Bench(BenchArgs),
    /// Print the version.
    Version,
    /// Help about a command.
    Help { command: Option<String> },
}

/// The transport given with `-l`, `-C` or `--protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    #[value(alias = "tcp")]
    Mqtt,
    #[value(alias = "ssl", alias = "tls")]
    Mqtts,
    Ws,
    Wss,
}

impl Protocol {
    /// The default port of the transport, as mqtt.js chooses it.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Mqtt => 1883,
            Protocol::Mqtts => 8883,
            Protocol::Ws => 80,
            Protocol::Wss => 443,
        }
    }
}

/// `-V`: the MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Version {
    #[value(name = "3.1", alias = "31", alias = "3", alias = "mqttv31")]
    V31,
    #[value(name = "3.1.1", alias = "311", alias = "4", alias = "mqttv311")]
    V311,
    #[value(name = "5", alias = "5.0", alias = "mqttv5")]
    V5,
}

fn parse_qos(s: &str) -> Result<u8, String> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        "2" => Ok(2),
        _ => Err(format!("QoS must be 0, 1 or 2, not {s:?}")),
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number of seconds (>= 0), not {s:?}")),
    }
}

fn parse_retain_handling(s: &str) -> Result<u8, String> {
    match s {
        "0" | "1" | "2" => Ok(s.as_bytes()[0] - b'0'),
        _ => Err(format!("retain handling must be 0, 1 or 2, not {s:?}")),
    }
}

fn parse_flag_byte(s: &str) -> Result<u8, String> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("must be 0 or 1, not {s:?}")),
    }
}

fn parse_sub_id(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v) if (1..=268_435_455).contains(&v) => Ok(v),
        _ => Err(format!("a subscription identifier is 1 to 268435455, not {s:?}")),
    }
}

/// Connection options shared by every command.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Broker host name.
    #[arg(short = 'h', long = "hostname", visible_alias = "host", default_value = "localhost")]
    pub host: String,
    /// Broker port (default: 1883, or 8883 / 80 / 443 for mqtts / ws / wss, as mqtt.js).
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// Client identifier (default `mqttjs_` and 8 hex digits, as mqtt.js).
    #[arg(short = 'i', long = "client-id", visible_alias = "clientId", alias = "id")]
    pub client_id: Option<String>,
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    #[arg(short = 'l', long = "protocol", short_alias = 'C', value_enum, ignore_case = true)]
    pub protocol: Option<Protocol>,
    #[arg(short = 'V', long = "protocol-version", alias = "protocolVersion", value_enum)]
    pub protocol_version: Option<Version>,
    #[arg(long)]
    pub key: Option<PathBuf>,
    #[arg(long)]
    pub cert: Option<PathBuf>,
    #[arg(long, alias = "cafile")]
    pub ca: Option<PathBuf>,
    #[arg(long)]
    pub insecure: bool,
    /// HTTP path of the WebSocket upgrade.
    #[arg(long = "ws-path", default_value = "/mqtt")]
    pub ws_path: String,
    #[arg(short = 'k', long = "keepalive", alias = "keep-alive", default_value_t = 60)]
    pub keepalive: u16,
    /// Keep the session: clean session / clean start 0.
    #[arg(long = "no-clean")]
    pub no_clean: bool,
    /// mqtt.js accepts `-c/--clean` (its default); accepted and ignored.
    #[arg(short = 'c', long = "clean", hide = true)]
    pub clean: bool,
    /// MQTT 5 Session Expiry Interval in seconds.
    #[arg(short = 'x', long = "session-expiry", value_name = "SECS")]
    pub session_expiry: Option<u32>,
    #[arg(long = "will-topic")]
    pub will_topic: Option<String>,
    #[arg(long = "will-message", visible_alias = "will-payload")]
    pub will_message: Option<String>,
    #[arg(long = "will-qos", value_parser = parse_qos, default_value = "0")]
    pub will_qos: u8,
    #[arg(long = "will-retain")]
    pub will_retain: bool,
    #[arg(long = "will-delay", value_name = "SECS")]
    pub will_delay: Option<u32>,
    #[arg(long = "will-message-expiry", value_name = "SECS")]
    pub will_message_expiry: Option<u32>,
    #[arg(long = "will-content-type")]
    pub will_content_type: Option<String>,
    #[arg(long = "will-response-topic")]
    pub will_response_topic: Option<String>,
    #[arg(long = "will-correlation-data")]
    pub will_correlation_data: Option<String>,
    #[arg(long = "will-payload-format-indicator", value_parser = parse_flag_byte)]
    pub will_payload_format_indicator: Option<u8>,
    #[arg(long = "will-user-property", num_args = 2, value_names = ["KEY", "VALUE"], action = ArgAction::Append)]
    pub will_user_property: Vec<String>,
    /// User property sent in CONNECT (MQTT 5).
    #[arg(long = "connect-user-property", num_args = 2, value_names = ["KEY", "VALUE"], action = ArgAction::Append)]
    pub connect_user_property: Vec<String>,
    /// Milliseconds between reconnect attempts (0: never reconnect), as mqtt.js `reconnectPeriod`.
    #[arg(long = "reconnect-period", alias = "reconnectPeriod", default_value_t = 1000)]
    pub reconnect_period: u64,
    /// Seconds to wait for the TCP connection and CONNACK.
    #[arg(long = "connect-timeout", value_parser = parse_secs, default_value = "30")]
    pub connect_timeout: f64,
    /// mosquitto_sub/pub `-d`: print every packet sent and received.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    #[arg(short = 'H', long = "help", action = ArgAction::Help)]
    help: Option<bool>,
}

/// Message properties (MQTT 5) shared by `pub` and `rr`.
#[derive(Debug, Clone, Args)]
pub struct MessageArgs {
    /// Any bytes, as mosquitto_pub sends them (not only UTF-8).
    #[arg(short = 'm', long = "message")]
    pub message: Option<std::ffi::OsString>,
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    #[arg(short = 'n', long = "null-message")]
    pub null_message: bool,
    #[arg(short = 's', long = "stdin")]
    pub stdin: bool,
    #[arg(short = 'q', long = "qos", value_parser = parse_qos, default_value = "0")]
    pub qos: u8,
    #[arg(short = 'r', long = "retain")]
    pub retain: bool,
    #[arg(long = "message-expiry", value_name = "SECS")]
    pub message_expiry: Option<u32>,
    #[arg(long = "content-type")]
    pub content_type: Option<String>,
    #[arg(long = "correlation-data")]
    pub correlation_data: Option<String>,
    #[arg(long = "payload-format-indicator", value_parser = parse_flag_byte)]
    pub payload_format_indicator: Option<u8>,
    #[arg(long = "user-property", num_args = 2, value_names = ["KEY", "VALUE"], action = ArgAction::Append)]
    pub user_property: Vec<std::ffi::OsString>,
}

#[derive(Debug, Clone, Args)]
pub struct PubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[arg(short = 't', long = "topic")]
    pub topic: Option<String>,
    #[command(flatten)]
    pub msg: MessageArgs,
    #[arg(long = "response-topic")]
    pub response_topic: Option<String>,
    #[arg(short = 'M', long = "multiline")]
    pub multiline: bool,
    #[arg(long = "repeat", default_value_t = 1)]
    pub repeat: u64,
    #[arg(long = "repeat-delay", value_parser = parse_secs, default_value = "0")]
    pub repeat_delay: f64,
    /// `topic [message]`, as mqtt.js.
    #[arg(value_name = "ARGS", num_args = 0..=2)]
    pub positional: Vec<String>,
}

/// Options of the output of received messages, shared by `sub` and `rr`.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    #[arg(short = 'F', long = "format")]
    pub format: Option<String>,
    #[arg(long = "json")]
    pub json: bool,
    #[arg(short = 'N', long = "no-newline")]
    pub no_newline: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[arg(short = 't', long = "topic", action = ArgAction::Append)]
    pub topic: Vec<String>,
    #[arg(short = 'q', long = "qos", value_parser = parse_qos, action = ArgAction::Append)]
    pub qos: Vec<u8>,
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long = "count", value_name = "N")]
    pub count: Option<u64>,
    #[arg(short = 'W', long = "timeout", value_parser = parse_secs, value_name = "SECS")]
    pub timeout: Option<f64>,
    #[arg(short = 'E', long = "exit-after-suback")]
    pub exit_after_suback: bool,
    #[arg(short = 'R', long = "no-retained")]
    pub no_retained: bool,
    #[arg(long = "retained-only")]
    pub retained_only: bool,
    #[arg(long = "remove-retained")]
    pub remove_retained: bool,
    #[arg(long = "no-local")]
    pub no_local: bool,
    #[arg(long = "retain-as-published")]
    pub retain_as_published: bool,
    #[arg(long = "retain-handling", value_parser = parse_retain_handling)]
    pub retain_handling: Option<u8>,
    #[arg(long = "subscription-identifier", value_parser = parse_sub_id)]
    pub subscription_identifier: Option<u32>,
    #[arg(long = "user-property", num_args = 2, value_names = ["KEY", "VALUE"], action = ArgAction::Append)]
    pub user_property: Vec<String>,
    #[arg(long = "clean-exit")]
    pub clean_exit: bool,
    /// mosquitto_sub `-T`: messages on topics matching this filter are not printed (repeatable).
    #[arg(short = 'T', long = "filter-out", action = ArgAction::Append)]
    pub filter_out: Vec<String>,
    /// mosquitto_sub `-U`: unsubscribe from this filter after subscribing (repeatable; with --no-clean it
    /// removes a subscription the session kept).
    #[arg(short = 'U', long = "unsubscribe", action = ArgAction::Append)]
    pub unsubscribe: Vec<String>,
    /// Topics, as mqtt.js `mqtt sub [topic]`.
    #[arg(value_name = "TOPIC")]
    pub positional: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RrArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[arg(short = 't', long = "topic")]
    pub topic: Option<String>,
    #[arg(short = 'e', long = "response-topic")]
    pub response_topic: Option<String>,
    #[command(flatten)]
    pub msg: MessageArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(short = 'W', long = "timeout", value_parser = parse_secs, value_name = "SECS")]
    pub timeout: Option<f64>,
}

/// Pairs `KEY VALUE KEY VALUE ...` as given to a repeatable two-value option.
pub fn pairs(values: &[String]) -> Vec<(String, String)> {
    values.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].clone(), c[1].clone())).collect()
}
