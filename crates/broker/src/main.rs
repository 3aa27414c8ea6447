//! `mqttd`: the broker binary. `mqttd` alone listens on 127.0.0.1:1883 and [::1]:1883 with anonymous
//! access (Mosquitto 2's local-only default); `mqttd -c FILE` reads a mosquitto.conf.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mqttd_broker::config::{Config, ListenerConfig, ListenerProtocol, LogDest, LogType, SocketDomain};
use mqttd_broker::security::{Security, SecuritySet};
use mqttd_broker::server::{Bind, Wrapping};
use mqttd_broker::tls::TlsListener;
use mqttd_broker::{storm, Broker, Server, Settings};

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
    let runtime = runtime(config.threads).context("cannot start the async runtime")?;
    runtime.block_on(serve(config, args.port))
}

/// The runtime for `threads` (0: from the machine). One thread runs everything on the main thread (tokio's
/// current-thread runtime); more run a work-stealing pool. Without the directive a machine of up to two
/// cores gets one thread: measured on two cores shared with the clients (bench/README.md), it connects 45 %
/// faster (48k against 33k CONNACK/s), fans in faster and holds less memory, while the pool moves 20-40 %
/// more messages between many pairs; every figure of both beats the peers'.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = if threads == 0 && cores <= 2 {
        1
    } else if threads == 0 {
        cores
    } else {
        threads
    };
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread().on_thread_park(storm::before_park).enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
}

/// The most detailed level the `log_type` lines ask for, as Mosquitto reads them: `error` alone shows
/// errors only (so a busy broker does not format a line per connection nobody asked for), `information`
/// or `notice` (the default) shows connects and disconnects, `debug` or `all` everything, none nothing.
fn log_level(types: &[LogType]) -> &'static str {
    let has = |wanted: &[LogType]| types.iter().any(|t| wanted.contains(t));
    if has(&[LogType::Debug, LogType::All]) {
        "debug"
    } else if has(&[
        LogType::Information,
        LogType::Notice,
        LogType::Subscribe,
        LogType::Unsubscribe,
        LogType::WebSockets,
    ]) {
        "info"
    } else if has(&[LogType::Warning]) {
        "warn"
    } else if has(&[LogType::Error, LogType::Internal]) {
        "error"
    } else {
        "off"
    }
}

/// Logging per `log_type` / `log_dest` (stderr, stdout or a file); `-v` or `MQTTD_LOG` override the level.
fn init_logging(config: &Config, verbose: bool) -> anyhow::Result<()> {
    let level = if verbose { "debug" } else { log_level(&config.log_type) };
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
    let wrappings = wrappings_of(&config)?;
    let addrs = listen_addrs(&config, port).await?;
    let binds: Vec<Bind> = addrs
        .into_iter()
        .map(|(addr, listener)| Bind { addr, listener, wrapping: wrappings[listener].clone() })
        .collect();
    let tls: Vec<Arc<TlsListener>> = wrappings.iter().filter_map(|w| w.tls.clone()).collect();
    let max_connections = config.listeners.iter().filter_map(|l| l.max_connections).min();
    let broker = Arc::new(Broker::new(Settings::from_config(&config)));
    broker.set_security(security_of(&config)?);
    // Handlers first: a SIGHUP or SIGTERM sent as soon as the port answers must not kill the process.
    let signals = Signals::install()?;
    let server = Server::start_binds(broker.clone(), &binds, max_connections).await?;
    tracing::info!("mqttd {} running", env!("CARGO_PKG_VERSION"));
    signals.wait(&broker, &tls).await;
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
        let port = port.unwrap_or(listener.port);
        let found: Vec<SocketAddr> = match (&listener.bind_address, listener.socket_domain) {
            (None, Some(SocketDomain::Ipv4)) => vec![SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port))],
            (None, _) => vec![SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))],
            (Some(host), _) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .with_context(|| format!("{}: cannot resolve listener address {host}", listener.defined_at))?
                .collect(),
        };
        // socket_domain keeps only the addresses of that family.
        let wanted = |a: &SocketAddr| match listener.socket_domain {
            Some(SocketDomain::Ipv4) => a.is_ipv4(),
            Some(SocketDomain::Ipv6) => a.is_ipv6(),
            None => true,
        };
        addrs.extend(found.into_iter().filter(wanted).map(|a| (a, index)));
    }
    Ok(addrs)
}

/// Each listener's transport; TLS files are read here, so a missing certificate stops startup.
fn wrappings_of(config: &Config) -> anyhow::Result<Vec<Arc<Wrapping>>> {
    if config.listeners.is_empty() {
        return Ok(vec![Arc::new(Wrapping::default())]);
    }
    let mut wrappings = Vec::new();
    for listener in &config.listeners {
        let tls = match listener.is_tls() {
            true => Some(Arc::new(TlsListener::load(listener)?)),
            false => None,
        };
        let websockets = listener.protocol == ListenerProtocol::WebSockets;
        if listener.http_dir.is_some() && !websockets {
            tracing::warn!("{}: http_dir is only used by protocol websockets listeners", listener.defined_at);
        }
        let http = (listener.protocol == ListenerProtocol::Http)
            .then(|| mqttd_broker::http::HttpSettings { token: listener.http_token.clone() });
        if listener.http_token.is_some() && http.is_none() {
            tracing::warn!("{}: http_token is only used by protocol http listeners", listener.defined_at);
        }
        wrappings.push(Arc::new(Wrapping { tls, websockets, http_dir: listener.http_dir.clone(), http }));
    }
    Ok(wrappings)
}

/// Waits for SIGINT or SIGTERM; SIGHUP reloads the password and ACL files and the TLS certificates
/// meanwhile (a broken file keeps the old rules or certificates and logs the line at fault).
/// The signals mqttd handles: SIGINT and SIGTERM stop it; SIGHUP reloads the password, ACL and
/// certificate files (a broken file keeps the old ones and logs the line at fault).
#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    /// Set by a second handler for SIGINT and SIGTERM and looked at every [`STOP_CHECK`]: a stop request
    /// is honoured even if the runtime's notification of it is lost (seen a few times in benchmark runs
    /// under heavy load: the first SIGTERM did nothing, the second stopped the broker).
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// How often [`Signals::wait`] looks at the stop flag.
#[cfg(unix)]
const STOP_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

#[cfg(unix)]
impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
            hup: signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?,
            stop: {
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                    signal_hook::flag::register(sig, stop.clone()).context("cannot install the stop handler")?;
                }
                stop
            },
        })
    }

    /// Returns on SIGINT or SIGTERM; handles SIGHUP meanwhile.
    async fn wait(mut self, broker: &Broker, tls: &[Arc<TlsListener>]) {
        let mut check = tokio::time::interval(STOP_CHECK);
        loop {
            tokio::select! {
                _ = self.int.recv() => return,
                _ = self.term.recv() => return,
                _ = check.tick() => if self.stop.load(std::sync::atomic::Ordering::Relaxed) { return },
                _ = self.hup.recv() => {
                    match broker.security().reload() {
                        Ok(fresh) => {
                            broker.set_security(fresh);
                            tracing::info!("SIGHUP: password and ACL files reloaded");
                        }
                        Err(e) => tracing::error!("SIGHUP: reload failed, keeping the previous rules: {e}"),
                    }
                    reload_tls(tls);
                }
            }
        }
    }
}

/// Reads every TLS listener's certificate, key and CA files again; new connections use them.
fn reload_tls(tls: &[Arc<TlsListener>]) {
    for listener in tls {
        match listener.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificates of {} reloaded", listener.defined_at()),
            Err(e) => tracing::error!("SIGHUP: TLS reload failed, keeping the previous certificates: {e}"),
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals)
    }

    async fn wait(self, _broker: &Broker, _tls: &[Arc<TlsListener>]) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_type_lines_choose_the_level_as_in_mosquitto() {
        assert_eq!(log_level(&[LogType::Error]), "error");
        assert_eq!(log_level(&[LogType::Error, LogType::Warning]), "warn");
        assert_eq!(log_level(&LogType::DEFAULT), "info");
        assert_eq!(log_level(&[LogType::Error, LogType::All]), "debug");
        assert_eq!(log_level(&[]), "off");
    }
}

#[cfg(test)]
mod runtime_tests {
    #[test]
    fn one_thread_is_a_current_thread_runtime_and_more_a_pool() {
        use tokio::runtime::RuntimeFlavor;
        assert_eq!(super::runtime(1).unwrap().handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let pool = super::runtime(3).unwrap();
        assert_eq!(pool.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(pool.metrics().num_workers(), 3);
    }
}
