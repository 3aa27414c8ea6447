//! `mqttd`: the broker binary. `mqttd` alone listens on 127.0.0.1:1883 and [::1]:1883 with anonymous
//! access (Mosquitto 2's local-only default); `mqttd -c FILE` reads a mosquitto.conf.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mqttd_broker::config::{Config, ListenerConfig, ListenerProtocol, SocketDomain};
use mqttd_broker::log::Logging;
use mqttd_broker::process::{Dropped, PidFile};
use mqttd_broker::security::{Security, SecuritySet};
use mqttd_broker::server::Wrapping;
use mqttd_broker::tls::TlsListener;
use mqttd_broker::{storm, Broker, Server, Settings};

/// An MQTT 3.1, 3.1.1 and 5.0 broker that reads Mosquitto's configuration files.
#[derive(Debug, Parser)]
#[command(name = "mqttd", version)]
struct Args {
    /// Read the configuration from FILE (mosquitto.conf syntax).
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on PORT on the loopback addresses; may be given up to 10 times. As in Mosquitto, only
    /// without listeners in the config file (otherwise it is ignored, with a warning).
    #[arg(short = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Vec<u16>,
    /// Log everything, every packet included (Mosquitto's `log_type all`).
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Run in the background: the command returns once the listeners are bound.
    #[arg(short = 'd', long)]
    daemon: bool,
    /// With `persistence true`: if the durable store is damaged before its end, move it aside (as
    /// FILE.damaged) and start from the records before the damage instead of refusing to start.
    #[arg(long)]
    recover: bool,
}

/// Mosquitto's limit on `-p` options.
const PORT_LIMIT: usize = 10;

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqttd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Mosquitto's order, except that listeners are bound before giving up root (so ports below 1024
/// work): read the config, open the log, load certificates and password files, bind, fork (`-d`), write
/// `pid_file`, drop to `user`, serve.
fn run(args: Args) -> anyhow::Result<()> {
    if args.port.len() > PORT_LIMIT {
        anyhow::bail!("only {PORT_LIMIT} ports can be given with -p");
    }
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.recover = args.recover;
    // Before anything can be signalled: a SIGTERM sent as soon as the port answers stops the broker cleanly
    // (pid file removed) instead of killing it with the default action.
    let stop = stop_flag()?;
    let logging = Logging::init(&config, args.verbose)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if !args.port.is_empty() && !config.listeners.is_empty() {
        tracing::warn!(
            "-p is ignored: the config file defines listeners (as in Mosquitto, -p only replaces the port of \
             the local-only default listeners)"
        );
    }
    let wrappings = wrappings_of(&config)?;
    let security = security_of(&config)?;
    let bound = bind_all(&config, &args.port)?;
    if args.daemon {
        mqttd_broker::process::daemonize().context("cannot run in the background (-d)")?;
    }
    let pid_file = config.pid_file.as_deref().map(PidFile::write).transpose()?;
    match mqttd_broker::process::drop_privileges(config.user.as_deref())? {
        Dropped::Switched { user, uid, gid, warning } => {
            if let Some(warning) = warning {
                tracing::error!("{warning}");
            }
            tracing::info!("running as user {user} (uid {uid}, gid {gid})");
        }
        Dropped::StayedRoot => tracing::warn!("Warning: mqttd should not be run as root/administrator."),
        Dropped::NotRoot => {}
    }
    let runtime = runtime(config.threads).context("cannot start the async runtime")?;
    let reload = Reload { path: args.config.clone(), running: config.clone(), logging };
    let result = runtime.block_on(serve(config, bound, wrappings, security, reload, stop));
    drop(pid_file);
    result
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

/// Bound listening sockets, each with the index of the configured listener it belongs to.
type Bound = Vec<(std::net::TcpListener, usize)>;

async fn serve(
    config: Config,
    bound: Bound,
    wrappings: Vec<Arc<Wrapping>>,
    security: SecuritySet,
    reload: Reload,
    stop: StopFlag,
) -> anyhow::Result<()> {
    let mut listeners = Vec::new();
    for (socket, index) in bound {
        let socket = tokio::net::TcpListener::from_std(socket).context("cannot watch a listening socket")?;
        listeners.push((socket, index, wrappings[index].clone()));
    }
    let tls: Vec<Arc<TlsListener>> = wrappings.iter().filter_map(|w| w.tls.clone()).collect();
    let broker = Arc::new(Broker::new(Settings::from_config(&config)));
    broker.set_security(security);
    if config.persistence {
        // Before any client connects: what the store held is back first (on the first start, what
        // Mosquitto's mosquitto.db held).
        let (store, replayed) =
            mqttd_broker::store::mosquitto::open(&config).context("cannot open the durable store")?;
        broker.set_store(store);
        broker.restore(replayed);
    }
    if config.cluster.enabled() {
        join_cluster(&broker, &config.cluster).await?;
    }
    let signals = Signals::install(stop)?;
    let server = Server::from_bound(broker.clone(), listeners, None);
    tracing::info!("mqttd {} running", env!("CARGO_PKG_VERSION"));
    // Started once; a SIGHUP leaves them running, as in Mosquitto.
    let bridges = mqttd_broker::bridge::Bridges::start(&broker, &config.bridges);
    signals.wait(&broker, &tls, reload).await;
    tracing::info!("shutting down");
    server.shutdown().await;
    bridges.shutdown(std::time::Duration::from_secs(3)).await;
    Ok(())
}

/// Joins the cluster of the `cluster_*` directives before any client connects: retained messages the
/// cluster holds are loaded, and the broker's hooks report to it from then on.
async fn join_cluster(broker: &Arc<Broker>, cluster: &mqttd_broker::config::ClusterConfig) -> anyhow::Result<()> {
    let options = mqttd_cluster::Options {
        name: cluster.name.clone(),
        urls: cluster.nats_urls.clone(),
        replicas: cluster.replicas,
        credentials: cluster.credentials.clone(),
        username: cluster.username.clone(),
        password: cluster.password.clone(),
        cafile: cluster.cafile.clone(),
    };
    let link = mqttd_cluster::Cluster::start(options, broker.clone()).await.context("cannot join the cluster")?;
    broker.set_cluster(link);
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

/// Binds every listener (or the local-only default, on each `-p` port or 1883), before privileges are
/// dropped.
fn bind_all(config: &Config, ports: &[u16]) -> anyhow::Result<Bound> {
    let mut bound = Vec::new();
    for (addr, index) in listen_addrs(config, ports)? {
        let listener = config.listeners.get(index);
        let interface = listener.and_then(|l| l.bind_interface.as_deref());
        let socket = bind(addr, interface).map_err(|e| match (interface, listener) {
            (Some(name), Some(l)) => {
                anyhow::anyhow!("{}: cannot listen on {addr} on interface {name}: {e}", l.defined_at)
            }
            _ => anyhow::anyhow!("cannot listen on {addr}: {e}"),
        })?;
        bound.push((socket, index));
    }
    Ok(bound)
}

/// A listening socket as tokio makes one (SO_REUSEADDR, backlog 1024), non-blocking; with
/// `bind_interface`, bound to that network interface (SO_BINDTODEVICE), so only connections arriving on
/// it are accepted.
fn bind(addr: SocketAddr, interface: Option<&str>) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    if let Some(name) = interface {
        socket.bind_device(Some(name.as_bytes())).map_err(|e| match e.raw_os_error() {
            Some(libc::ENODEV) => std::io::Error::other("no such network interface"),
            _ => e,
        })?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The addresses to bind: the configured listeners, or the local-only default on `ports` (1883).
fn listen_addrs(config: &Config, ports: &[u16]) -> anyhow::Result<Vec<(SocketAddr, usize)>> {
    use std::net::ToSocketAddrs;
    if config.listeners.is_empty() {
        // [::1] only where this machine has IPv6 loopback.
        let ipv6 = std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_ok();
        let mut addrs = Vec::new();
        for &port in if ports.is_empty() { &[1883][..] } else { ports } {
            addrs.push((SocketAddr::from(([127, 0, 0, 1], port)), 0));
            if ipv6 {
                addrs.push((SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)), 0));
            }
        }
        return Ok(addrs);
    }
    let mut addrs = Vec::new();
    for (index, listener) in config.listeners.iter().enumerate() {
        let port = listener.port;
        let found: Vec<SocketAddr> = match (&listener.bind_address, listener.socket_domain) {
            (None, Some(SocketDomain::Ipv4)) => vec![SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port))],
            (None, _) => vec![SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))],
            (Some(host), _) => (host.as_str(), port)
                .to_socket_addrs()
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
        let websockets_headers_size = config.websockets_headers_size;
        let http_dir = listener.http_dir.clone();
        wrappings.push(Arc::new(Wrapping { tls, websockets, http_dir, http, websockets_headers_size }));
    }
    Ok(wrappings)
}

/// What SIGHUP needs: the config file to read again, the configuration running now, the logging to
/// reconfigure.
struct Reload {
    path: Option<PathBuf>,
    running: Config,
    logging: Logging,
}

impl Reload {
    /// Mosquitto's reload: reads the config file again and applies the logging directives, the security
    /// directives (allow_anonymous, password_file, acl_file, and the files they name) and the TLS
    /// certificates. A directive that needs a restart is named in the log; a broken file changes nothing.
    fn hangup(&mut self, broker: &Broker, tls: &[Arc<TlsListener>]) {
        let Some(path) = &self.path else {
            match broker.security().reload() {
                Ok(fresh) => {
                    broker.set_security(fresh);
                    tracing::info!("SIGHUP: password and ACL files reloaded");
                }
                Err(e) => tracing::error!("SIGHUP: reload failed, keeping the previous rules: {e}"),
            }
            return reload_tls(tls);
        };
        let config = match Config::load(path) {
            Ok(config) => config,
            Err(e) => return tracing::error!("SIGHUP: config not reloaded, keeping the running one: {e}"),
        };
        if let Err(e) = self.logging.reload(&config) {
            tracing::error!("SIGHUP: logging not reconfigured: {e:#}");
        }
        match security_of(&config) {
            Ok(fresh) => {
                broker.set_security(fresh);
                tracing::info!("SIGHUP: config file, password and ACL files reloaded");
            }
            Err(e) => tracing::error!("SIGHUP: reload failed, keeping the previous rules: {e:#}"),
        }
        reload_tls(tls);
        let (not_reloaded, at_restart) = self.running.changes_needing_restart(&config);
        if !not_reloaded.is_empty() {
            tracing::warn!(
                "SIGHUP: changed but not reloaded (as in Mosquitto; restart to apply): {}",
                not_reloaded.join(", ")
            );
        }
        if !at_restart.is_empty() {
            tracing::warn!("SIGHUP: changed; mqttd applies these at restart only: {}", at_restart.join(", "));
        }
    }
}

/// Set by SIGINT and SIGTERM from the start of `run`, so a stop asked before the runtime's handlers exist
/// (or whose notification the runtime loses) is honoured.
type StopFlag = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// Installs the first handlers: SIGINT/SIGTERM set the returned flag; a SIGHUP before the runtime's handler
/// exists is ignored (the config was just read).
#[cfg(unix)]
fn stop_flag() -> anyhow::Result<StopFlag> {
    let stop = StopFlag::default();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install the stop handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, StopFlag::default())
        .context("cannot install the SIGHUP handler")?;
    Ok(stop)
}

#[cfg(not(unix))]
fn stop_flag() -> anyhow::Result<StopFlag> {
    Ok(StopFlag::default())
}

/// The signals mqttd handles: SIGINT and SIGTERM stop it; SIGHUP reloads (see [`Reload::hangup`]).
#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    /// Set by a second handler for SIGINT and SIGTERM and looked at every [`STOP_CHECK`]: a stop request
    /// is honoured even if the runtime's notification of it is lost (seen a few times in benchmark runs
    /// under heavy load: the first SIGTERM did nothing, the second stopped the broker).
    stop: StopFlag,
}

/// How often [`Signals::wait`] looks at the stop flag.
#[cfg(unix)]
const STOP_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

#[cfg(unix)]
impl Signals {
    fn install(stop: StopFlag) -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
            hup: signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?,
            stop,
        })
    }

    /// Returns on SIGINT or SIGTERM; handles SIGHUP meanwhile.
    async fn wait(mut self, broker: &Broker, tls: &[Arc<TlsListener>], mut reload: Reload) {
        let mut check = tokio::time::interval(STOP_CHECK);
        loop {
            tokio::select! {
                _ = self.int.recv() => return,
                _ = self.term.recv() => return,
                _ = check.tick() => if self.stop.load(std::sync::atomic::Ordering::Relaxed) { return },
                _ = self.hup.recv() => reload.hangup(broker, tls),
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
    fn install(_stop: StopFlag) -> anyhow::Result<Signals> {
        Ok(Signals)
    }

    async fn wait(self, _broker: &Broker, _tls: &[Arc<TlsListener>], _reload: Reload) {
        let _ = tokio::signal::ctrl_c().await;
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
