//! `mqttd`: the broker binary. `mqttd` alone listens on 127.0.0.1:1883 and [::1]:1883 with anonymous
//! access (Mosquitto 2's local-only default); `mqttd -c FILE` reads a mosquitto.conf.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use mqttd_broker::config::{Config, ListenerConfig, ListenerProtocol, LogDest, LogType};
use mqttd_broker::security::{Security, SecuritySet};
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
    broker.set_security(security_of(&config)?);
    let server = Server::start(broker.clone(), &addrs, max_connections).await?;
    tracing::info!("mqttd {} running", env!("CARGO_PKG_VERSION"));
    wait_for_signal(&broker).await?;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// Password and ACL files per listener (`per_listener_settings true`) or one set shared by all.
fn security_of(config: &Config) -> anyhow::Result<SecuritySet> {
    let open = |l: Option<&ListenerConfig>| {
        Security::open(config.allow_anonymous_for(l), config.password_file_for(l), config.acl_file_for(l)).map(Arc::new)
    };
    if !config.per_listener_settings || config.listeners.is_empty() {
        let shared = open(config.listeners.first().filter(|_| config.per_listener_settings))?;
        let count = config.listeners.len().max(1);
        return Ok(SecuritySet::new(vec![shared; count]));
    }
    let each = config.listeners.iter().map(|l| open(Some(l))).collect::<Result<Vec<_>, _>>()?;
    Ok(SecuritySet::new(each))
}

/// The addresses to bind: the configured listeners, or the local-only default.
async fn listen_addrs(config: &Config, port: Option<u16>) -> anyhow::Result<Vec<(SocketAddr, usize)>> {
    if config.listeners.is_empty() {
        let port = port.unwrap_or(1883);
        let mut addrs = vec![(SocketAddr::from(([127, 0, 0, 1], port)), 0)];
        // [::1] only where this machine has IPv6 loopback.
        if std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_ok() {
            addrs.push((SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)), 0));
        }
        return Ok(addrs);
    }
    let mut addrs = Vec::new();
    for (index, listener) in config.listeners.iter().enumerate() {
        check_supported(listener)?;
        let port = port.unwrap_or(listener.port);
        match &listener.bind_address {
            None => addrs.push((SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)), index)),
            Some(host) => {
                let found = tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .with_context(|| format!("{}: cannot resolve listener address {host}", listener.defined_at))?;
                addrs.extend(found.map(|a| (a, index)));
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

/// Waits for SIGINT or SIGTERM; SIGHUP reloads the password and ACL files meanwhile (a broken file keeps
/// the old rules and logs the line at fault).
#[cfg(unix)]
async fn wait_for_signal(broker: &Broker) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => return r.context("cannot install the SIGINT handler"),
            _ = term.recv() => return Ok(()),
            _ = hup.recv() => match broker.security().reload() {
                Ok(fresh) => {
                    broker.set_security(fresh);
                    tracing::info!("SIGHUP: password and ACL files reloaded");
                }
                Err(e) => tracing::error!("SIGHUP: reload failed, keeping the previous rules: {e}"),
            },
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal(_broker: &Broker) -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("cannot install the Ctrl-C handler")
}
