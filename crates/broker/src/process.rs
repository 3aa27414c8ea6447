//! The process as Mosquitto runs it: `-d` (fork into the background), `pid_file`, and `user` (give up
//! root once the listeners are bound and the log file is open).
//!
//! Owns: the few calls into libc that std does not wrap (fork, setsid, dup2, getpwnam, initgroups,
//! setgid, setuid), each in one small function with a SAFETY comment, listed in the workspace
//! Cargo.toml. Must not: be called once the async runtime has started threads (fork keeps only the
//! calling thread; getpwnam is not thread-safe).

use std::path::{Path, PathBuf};

/// The account Mosquitto switches to when started as root without a `user` line.
pub const DEFAULT_USER: &str = "mosquitto";

/// Forks: the parent exits at once with status 0, the child returns in a new session with stdin,
/// stdout and stderr on /dev/null (Mosquitto's `-d`). Call before any thread is started.
#[allow(unsafe_code)]
pub fn daemonize() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    // SAFETY: the process has one thread (no runtime yet), so the child's copy of memory is consistent;
    // the parent calls only `_exit`. `setsid` and `dup2` act on the child's own process and descriptors:
    // `null` is open for the duration of the calls, 0..=2 are the standard descriptors.
    unsafe {
        match libc::fork() {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() == -1 {
            return Err(std::io::Error::last_os_error());
        }
        for fd in 0..=2 {
            if libc::dup2(null.as_raw_fd(), fd) == -1 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// A written `pid_file`, removed when dropped (at exit), as Mosquitto removes its own.
#[derive(Debug)]
pub struct PidFile(PathBuf);

impl PidFile {
    /// Writes this process's id and a newline to `path`.
    pub fn write(path: &Path) -> anyhow::Result<PidFile> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| anyhow::anyhow!("cannot write pid_file {}: {e}", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What [`drop_privileges`] did, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Not started as root: nothing to do.
    NotRoot,
    /// Still root (`user root`): Mosquitto's warning applies.
    StayedRoot,
    /// Now running as this user (and its group).
    Switched { user: String, uid: u32, gid: u32, warning: Option<String> },
}

/// Mosquitto's privilege drop: when running as root, switch to `user` (default `mosquitto`; `root`
/// stays). A missing `mosquitto` account falls back to `nobody` with a warning; any other missing
/// account is an error.
pub fn drop_privileges(user: Option<&str>) -> anyhow::Result<Dropped> {
    if !is_root() {
        return Ok(Dropped::NotRoot);
    }
    let user = user.unwrap_or(DEFAULT_USER);
    if user == "root" {
        return Ok(Dropped::StayedRoot);
    }
    let (name, account, warning) = match lookup(user)? {
        Some(account) => (user, account, None),
        None if user == DEFAULT_USER => {
            let warning = format!(
                "Warning: Unable to drop privileges to '{user}' because this user does not exist. Trying \
                 'nobody' instead."
            );
            let nobody = lookup("nobody")?.ok_or_else(|| anyhow::anyhow!("Unable to drop privileges to 'nobody'."))?;
            ("nobody", nobody, Some(warning))
        }
        None => anyhow::bail!("Unable to drop privileges to '{user}' because this user does not exist."),
    };
    switch_to(name, account)?;
    Ok(Dropped::Switched { user: name.to_owned(), uid: account.0, gid: account.1, warning })
}

#[allow(unsafe_code)]
fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of account `name`, `None` if there is no such account.
#[allow(unsafe_code)]
fn lookup(name: &str) -> anyhow::Result<Option<(u32, u32)>> {
    let c_name = std::ffi::CString::new(name)?;
    // SAFETY: `c_name` is NUL-terminated and outlives the call; the returned record (static storage, not
    // thread-safe, hence "before any thread") is read at once and not kept.
    let found = unsafe {
        let pwd = libc::getpwnam(c_name.as_ptr());
        if pwd.is_null() {
            None
        } else {
            Some(((*pwd).pw_uid, (*pwd).pw_gid))
        }
    };
    Ok(found)
}

/// initgroups, setgid, setuid, in that order (groups and gid can only be changed while still root).
#[allow(unsafe_code)]
fn switch_to(name: &str, (uid, gid): (u32, u32)) -> anyhow::Result<()> {
    let c_name = std::ffi::CString::new(name)?;
    let fail = |what: &str| {
        anyhow::anyhow!("Error setting {what} whilst dropping privileges: {}", std::io::Error::last_os_error())
    };
    // SAFETY: plain system calls on this process; `c_name` is NUL-terminated and outlives the call.
    unsafe {
        if libc::initgroups(c_name.as_ptr(), gid as _) == -1 {
            return Err(fail("groups"));
        }
        if libc::setgid(gid) == -1 {
            return Err(fail("gid"));
        }
        if libc::setuid(uid) == -1 {
            return Err(fail("uid"));
        }
    }
    Ok(())
}
