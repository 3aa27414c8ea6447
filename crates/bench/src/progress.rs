//! The live progress line on stderr, shown only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub(crate) struct Progress {
    enabled: bool,
    label: String,
    last: Option<(Instant, u64)>,
}

impl Progress {
    pub fn new(enabled: bool, label: String) -> Progress {
        Progress { enabled: enabled && std::io::stderr().is_terminal(), label, last: None }
    }

    /// Redraws the line: `received` drives the rate shown.
    pub fn show(&mut self, elapsed: f64, sent: u64, received: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let rate = match self.last {
            Some((at, before)) if now > at => (received.saturating_sub(before)) as f64 / (now - at).as_secs_f64(),
            _ => 0.0,
        };
        self.last = Some((now, received));
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{} {:6.1} s  rate {:>10.0}/s  sent {:>11}  received {:>11}",
            self.label, elapsed, rate, sent, received
        );
        let _ = err.flush();
    }

    pub fn finish(&mut self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
