//! CPU time and memory of a process from /proc (Linux); `None` elsewhere or when the process is gone.

/// Clock ticks per second of /proc/PID/stat times: USER_HZ, fixed at 100 by the Linux ABI.
const TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU seconds of process `pid` ("self" for this one), all threads.
pub(crate) fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM), in KiB.
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// CPU seconds used by this process and, optionally, the broker, from a starting point.
pub(crate) struct CpuClock {
    own: Option<f64>,
    broker: Option<(u32, f64)>,
}

impl CpuClock {
    pub fn start(broker: Option<u32>) -> CpuClock {
        CpuClock { own: cpu_secs("self"), broker: broker.and_then(|pid| Some((pid, cpu_secs(&pid.to_string())?))) }
    }

    /// (own CPU seconds, broker CPU seconds) since `start`.
    pub fn elapsed(&self) -> (f64, Option<f64>) {
        let own = match (self.own, cpu_secs("self")) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        };
        let broker = self.broker.and_then(|(pid, a)| Some(cpu_secs(&pid.to_string())? - a));
        (own, broker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_cpu_time_and_a_resident_size() {
        assert!(cpu_secs("self").is_some());
        assert!(status_kib(std::process::id(), "VmRSS").unwrap() > 0);
    }
}
