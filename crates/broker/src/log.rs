//! Logging as Mosquitto's `log_type`, `log_dest`, `log_timestamp`, `log_timestamp_format`, `log_facility`
//! and `connection_messages` describe it, on top of `tracing`.
//!
//! Owns: which events are shown (a filter built from the `log_type` lines), where lines go (every
//! `log_dest` at once: stdout, stderr, a file, syslog), how they are stamped, and swapping all of that on
//! SIGHUP. Must not: decide what is logged where (the code that logs picks a level, or one of the targets
//! below for Mosquitto's own log types).
//!
//! Mosquitto's types map onto levels: `error` -> error, `warning` -> warn, `notice` and `information`
//! -> info, `debug` -> debug, `all` -> everything. `subscribe` and `unsubscribe` are their own targets
//! ([`SUBSCRIBE`], [`UNSUBSCRIBE`]), shown whatever the level; connects and disconnects are
//! [`CONNECTION`], hidden by `connection_messages false`.

use std::io::Write;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{Config, LogDest, LogType};

/// Target of Mosquitto's `log_type subscribe` lines: `client_id qos filter`.
pub const SUBSCRIBE: &str = "mqttd::log::subscribe";
/// Target of Mosquitto's `log_type unsubscribe` lines: `client_id filter`.
pub const UNSUBSCRIBE: &str = "mqttd::log::unsubscribe";
/// Target of the connect and disconnect lines (`connection_messages`).
pub const CONNECTION: &str = "mqttd::log::connection";

/// The `tracing` filter for `log_type` lines (`-v` counts as `log_type all`, as in Mosquitto) and
/// `connection_messages`.
pub fn filter(types: &[LogType], connection_messages: bool, verbose: bool) -> String {
    let has = |wanted: &[LogType]| verbose || types.iter().any(|t| wanted.contains(t));
    let level = if has(&[LogType::Debug, LogType::All]) {
        "debug"
    } else if has(&[LogType::Information, LogType::Notice]) {
        "info"
    } else if has(&[LogType::Warning]) {
        "warn"
    } else if has(&[LogType::Error, LogType::Internal]) {
        "error"
    } else {
        "off"
    };
    let on = |wanted: LogType| if has(&[wanted, LogType::All]) { "info" } else { "off" };
    let mut directives = format!(
        "{level},{SUBSCRIBE}={},{UNSUBSCRIBE}={},mqttd_broker::ws={}",
        on(LogType::Subscribe),
        on(LogType::Unsubscribe),
        if has(&[LogType::WebSockets, LogType::Debug, LogType::All]) { "debug" } else { level },
    );
    if !connection_messages {
        directives.push_str(&format!(",{CONNECTION}=off"));
    }
    directives
}

/// Where and how lines are written; swapped whole on SIGHUP.
#[derive(Debug, Default)]
struct Output {
    stdout: bool,
    stderr: bool,
    file: Option<Mutex<std::fs::File>>,
    /// `log_dest syslog`: the local syslog socket and the facility (`log_facility`, daemon by default).
    syslog: Option<(std::os::unix::net::UnixDatagram, u8)>,
    /// `log_timestamp` (true).
    timestamp: bool,
    /// `log_timestamp_format` as a C string (strftime); `None`: seconds since the epoch, as Mosquitto.
    timestamp_format: Option<std::ffi::CString>,
}

impl Output {
    /// Opens the destinations of `config` (the log file is created or appended to here, before any
    /// privilege drop, as Mosquitto does).
    fn open(config: &Config) -> anyhow::Result<Output> {
        let mut out = Output {
            timestamp: config.log_timestamp,
            timestamp_format: match &config.log_timestamp_format {
                Some(f) => Some(std::ffi::CString::new(f.as_str())?),
                None => None,
            },
            ..Output::default()
        };
        for dest in &config.log_dest {
            match dest {
                LogDest::Stdout => out.stdout = true,
                LogDest::Stderr => out.stderr = true,
                LogDest::File(path) => {
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
                    out.file = Some(Mutex::new(file));
                }
                LogDest::Syslog => {
                    let socket = std::os::unix::net::UnixDatagram::unbound()?;
                    // LOG_DAEMON, or LOG_LOCAL0..7 for `log_facility 0..7`.
                    let facility = config.log_facility.map_or(3, |n| 16 + n);
                    out.syslog = Some((socket, facility));
                }
                LogDest::Topic | LogDest::Dlt => {}
            }
        }
        if !config.log_dest.is_empty() && config.log_dest.iter().all(|d| matches!(d, LogDest::Topic | LogDest::Dlt)) {
            // Only destinations mqttd does not have yet: stderr, so that the warning saying so is seen.
            out.stderr = true;
        }
        Ok(out)
    }

    fn write_line(&self, level: &tracing::Level, line: &[u8]) {
        // The formatter puts a blank after the (here empty) timestamp, and pads short level names.
        let line = if self.timestamp { line } else { line.trim_ascii_start() };
        if self.stdout {
            let _ = std::io::stdout().lock().write_all(line);
        }
        if self.stderr {
            let _ = std::io::stderr().lock().write_all(line);
        }
        if let Some(file) = &self.file {
            let _ = file.lock().write_all(line);
        }
        if let Some((socket, facility)) = &self.syslog {
            let severity = match *level {
                tracing::Level::ERROR => 3,
                tracing::Level::WARN => 4,
                tracing::Level::INFO => 6,
                _ => 7,
            };
            let text = String::from_utf8_lossy(line);
            let priority = u32::from(*facility) * 8 + severity;
            let message = format!("<{priority}>mqttd[{}]: {}", std::process::id(), text.trim_end());
            let _ = socket.send_to(message.as_bytes(), "/dev/log");
        }
    }
}

/// Replaces the `tracing` filter (the subscriber's reload handle, whose type names the whole subscriber).
type Reload = Arc<dyn Fn(&str) -> anyhow::Result<()> + Send + Sync>;

/// The shared logging state: the subscriber's writer and timer read it, SIGHUP replaces it.
#[derive(Clone)]
pub struct Logging {
    /// A lock, not a channel: every log line reads it, only SIGHUP writes.
    output: Arc<RwLock<Output>>,
    /// Replaces the filter on SIGHUP (`log_type`, `connection_messages`); `None` under `MQTTD_LOG`.
    reload: Option<Reload>,
    verbose: bool,
}

/// One line being formatted; written to every destination when dropped.
pub struct Line<'a> {
    output: &'a RwLock<Output>,
    level: tracing::Level,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.output.read().write_line(&self.level, &self.buf);
        }
    }
}

/// Hands `tracing` a [`Line`] per event.
struct Sinks(Arc<RwLock<Output>>);

impl<'a> MakeWriter<'a> for Sinks {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line { output: &self.0, level: tracing::Level::INFO, buf: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line<'a> {
        Line { output: &self.0, level: *meta.level(), buf: Vec::new() }
    }
}

/// Mosquitto's stamp: seconds since the epoch, or `log_timestamp_format` in local time; none with
/// `log_timestamp false`.
struct Stamp(Arc<RwLock<Output>>);

impl FormatTime for Stamp {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let output = self.0.read();
        if !output.timestamp {
            return Ok(());
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        match &output.timestamp_format {
            Some(format) => write!(w, "{}:", local_time(format, now as i64)),
            None => write!(w, "{now}:"),
        }
    }
}

impl Logging {
    /// Installs the global subscriber for `config`. `MQTTD_LOG` (a `tracing` filter) overrides the
    /// `log_type` lines, for debugging.
    pub fn init(config: &Config, verbose: bool) -> anyhow::Result<Logging> {
        let output = Arc::new(RwLock::new(Output::open(config)?));
        let env = std::env::var("MQTTD_LOG").ok();
        let directives = env.clone().unwrap_or_else(|| filter(&config.log_type, config.connection_messages, verbose));
        let ansi = {
            let o = output.read();
            let terminal = |is: bool| is && o.file.is_none() && o.syslog.is_none();
            (terminal(o.stderr && !o.stdout) && std::io::IsTerminal::is_terminal(&std::io::stderr()))
                || (terminal(o.stdout && !o.stderr) && std::io::IsTerminal::is_terminal(&std::io::stdout()))
        };
        let builder = tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_timer(Stamp(output.clone()))
            .with_writer(Sinks(output.clone()))
            .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
            .with_filter_reloading();
        let handle = builder.reload_handle();
        builder.try_init().map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))?;
        let reload: Reload = Arc::new(move |d: &str| {
            handle.reload(tracing_subscriber::EnvFilter::new(d)).map_err(|e| anyhow::anyhow!("{e}"))
        });
        Ok(Logging { output, reload: env.is_none().then_some(reload), verbose })
    }

    /// SIGHUP: applies the logging directives of a re-read config (Mosquitto reloads them all).
    pub fn reload(&self, config: &Config) -> anyhow::Result<()> {
        let output = Output::open(config)?;
        if let Some(reload) = &self.reload {
            reload(&filter(&config.log_type, config.connection_messages, self.verbose))?;
        }
        *self.output.write() = output;
        Ok(())
    }
}

/// `seconds` since the epoch as local time in the strftime `format` (`log_timestamp_format`).
#[allow(unsafe_code)]
fn local_time(format: &std::ffi::CStr, seconds: i64) -> String {
    let mut buf = [0u8; 256];
    let time = seconds as libc::time_t;
    // SAFETY: `tm` is plain data, valid when zeroed; `localtime_r` writes only into it and reads the
    // `time_t` it is given; `strftime` writes at most `buf.len()` bytes into `buf`, reads the
    // NUL-terminated `format` and the `tm` filled in just before, and returns how many bytes it wrote.
    let written = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&time, &mut tm).is_null() {
            return seconds.to_string();
        }
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm)
    };
    String::from_utf8_lossy(&buf[..written.min(buf.len())]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_type_lines_choose_levels_and_targets_as_in_mosquitto() {
        assert!(filter(&[LogType::Error], true, false).starts_with("error,"));
        assert!(filter(&LogType::DEFAULT, true, false).starts_with("info,"));
        assert!(filter(&[LogType::Error, LogType::All], true, false).starts_with("debug,"));
        assert!(filter(&[], true, false).starts_with("off,"));
        assert!(filter(&[], true, true).starts_with("debug,"), "-v is log_type all");
        let subscribe_only = filter(&[LogType::Subscribe], true, false);
        assert!(subscribe_only.contains(&format!("{SUBSCRIBE}=info")), "{subscribe_only}");
        assert!(subscribe_only.contains(&format!("{UNSUBSCRIBE}=off")), "{subscribe_only}");
        assert!(filter(&LogType::DEFAULT, false, false).ends_with(&format!("{CONNECTION}=off")));
    }

    #[test]
    fn a_timestamp_format_is_strftime_in_local_time() {
        let format = std::ffi::CString::new("%Y-%m-%d").unwrap();
        let day = local_time(&format, 86_400 * 365);
        assert!(day.starts_with("1971-01-0"), "{day}");
    }
}
