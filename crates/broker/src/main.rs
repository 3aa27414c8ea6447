//! `mqttd`: the broker binary. `mqttd` alone listens on 127.0.0.1:1883 and [::1]:1883 with anonymous
//! access (Mosquitto 2's local-only default); `mqttd -c FILE` reads a mosquitto.conf.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use mqttd_broker::config::{Config, ListenerConfig, ListenerProtocol, LogDest, LogType};
use mqttd_broker::{Broker, Server, Settings};

/// An MQTT 3.1, 3.1.1 and 5.0 broker that reads Mosquitto's configuration files.
#[derive(Debug, Parser)]
#[command(name = "mqttd", version)]
struct Args {
    /// Read the configuration from FILE (mosquitto.conf syntax).
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on PORT (on the loopback addresses unless the config file says otherwise).
    #[arg(short = 'p', long, value_name = "PORT")]
    port: Option<u16>,
    /// Log debug messages too.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Accepted for Mosquitto compatibility; mqttd stays in the foreground (use your service manager).
    #[arg(short = 'd', long)]
    daemon: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqttd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    init_logging(&config, args.verbose)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if args.daemon {
        tracing::warn!("-d is accepted but mqttd does not daemonize; run it under a service manager");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(config, args.port))
}

/// Logging per `log_type` / `log_dest` (stderr, stdout or a file); `-v` or `MQTTD_LOG` override the level.
fn init_logging(config: &Config, verbose: bool) -> anyhow::Result<()> {
    let level = if verbose || config.log_type.iter().any(|t| matches!(t, LogType::Debug | LogType::All)) {
        "debug"
    } else if config.log_type.is_empty() {
        "off"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MQTTD_LOG").unwrap_or_else(|_| level.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let file = config.log_dest.iter().find_map(|d| match d {
        LogDest::File(path) => Some(path.clone()),
        _ => None,
    });
    if let Some(path) = file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        builder.with_ansi(false).with_writer(std::sync::Mutex::new(file)).init();
    } else if config.log_dest.contains(&LogDest::Stdout) && !config.log_dest.contains(&LogDest::Stderr) {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).with_writer(std::io::stdout).init();
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).with_writer(std::io::stderr).init();
    }
    for dest in &config.log_dest {
        if matches!(dest, LogDest::Syslog | LogDest::Topic | LogDest::Dlt) {
            tracing::warn!("log_dest {dest:?} is not supported yet; logging to the other destinations");
        }
    }
    Ok(())
}

async fn serve(config: Config, port: Option<u16>) -> anyhow::Result<()> {
    let addrs = listen_addrs(&config, port).await?;
    let max_connections = config.listeners.iter().filter_map(|l| l.max_connections).min();
    let broker = Arc::new(Broker::new(Settings::from_config(&config)));
    let server = Server::start(broker, &addrs, max_connections).await?;
    tracing::info!("mqttd {} running", env!("CARGO_PKG_VERSION"));
    wait_for_signal().await?;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// The addresses to bind: the configured listeners, or the local-only default.
async fn listen_addrs(config: &Config, port: Option<u16>) -> anyhow::Result<Vec<SocketAddr>> {
    if config.listeners.is_empty() {
        let port = port.unwrap_or(1883);
        let mut addrs = vec![SocketAddr::from(([127, 0, 0, 1], port))];
        // [::1] only where this machine has IPv6 loopback.
        if std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_ok() {
            addrs.push(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)));
        }
        return Ok(addrs);
    }
    let mut addrs = Vec::new();
    for listener in &config.listeners {
        check_supported(listener)?;
        let port = port.unwrap_or(listener.port);
        match &listener.bind_address {
            None => addrs.push(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))),
            Some(host) => {
                let found = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .with_context(|| format!("{}: cannot resolve listener address {host}", listener.defined_at))?;
                addrs.extend(found);
            }
        }
    }
    Ok(addrs)
}

fn check_supported(listener: &ListenerConfig) -> anyhow::Result<()> {
    if listener.protocol != ListenerProtocol::Mqtt {
        bail!("{}: protocol websockets is not supported by this build yet", listener.defined_at);
    }
    if listener.is_tls() {
        bail!("{}: TLS listeners (certfile/keyfile) are not supported by this build yet", listener.defined_at);
    }
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot install the SIGINT handler")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("cannot install the Ctrl-C handler")
}
