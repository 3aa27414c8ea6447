//! Who may connect and what they may read and write: password files and ACL files per listener (or one
//! set for all, without `per_listener_settings`), reloaded on SIGHUP.
//!
//! Subscribing (our choice, documented in the README): a SUBSCRIBE to a filter the ACL gives no read
//! access to at all is refused in the SUBACK (5.0: 0x87 Not authorized; 3.1.1: 0x80 Failure), so a client
//! learns at once instead of waiting for messages that never come. Mosquitto grants such subscriptions and
//! filters every message; we filter every message too (`Broker::may_read_with`), so a `#` subscription that is
//! allowed because some topics are readable still receives only those.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mqttd_auth::{Access, Acl, AuthOutcome, FileError, PasswordFile};

/// A password file or ACL file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read {}: {error}", path.display())]
    Io {
        path: PathBuf,
        /// Shown in the message and not also as the error's source, so that `{:#}` names it once.
        error: std::io::Error,
    },
    #[error("{}:{}", path.display(), error)]
    Parse { path: PathBuf, error: FileError },
}

/// The security settings of one listener.
#[derive(Debug, Default)]
pub struct Security {
    pub allow_anonymous: bool,
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    pub passwords: Option<PasswordFile>,
    pub acl: Option<Acl>,
}

fn read(path: &Path) -> Result<String, SecurityError> {
    std::fs::read_to_string(path).map_err(|error| SecurityError::Io { path: path.to_path_buf(), error })
}

impl Security {
    /// Anonymous access only, no files.
    pub fn anonymous(allow: bool) -> Security {
        Security { allow_anonymous: allow, ..Security::default() }
    }

    /// Reads the password and ACL files.
    pub fn open(
        allow_anonymous: bool,
        password_file: Option<&Path>,
        acl_file: Option<&Path>,
    ) -> Result<Security, SecurityError> {
        let passwords = match password_file {
            Some(path) => Some(
                PasswordFile::parse(&read(path)?)
                    .map_err(|error| SecurityError::Parse { path: path.to_path_buf(), error })?,
            ),
            None => None,
        };
        let acl = match acl_file {
            Some(path) => Some(
                Acl::parse(&read(path)?).map_err(|error| SecurityError::Parse { path: path.to_path_buf(), error })?,
            ),
            None => None,
        };
        if let (Some(p), false) = (&passwords, allow_anonymous) {
            if p.is_empty() {
                tracing::warn!("the password file has no users and allow_anonymous is false: every client is refused");
            }
        }
        Ok(Security {
            allow_anonymous,
            password_file: password_file.map(Path::to_path_buf),
            acl_file: acl_file.map(Path::to_path_buf),
            passwords,
            acl,
        })
    }

    /// Reads the same files again.
    pub fn reload(&self) -> Result<Security, SecurityError> {
        Security::open(self.allow_anonymous, self.password_file.as_deref(), self.acl_file.as_deref())
    }

    /// Checks a CONNECT's credentials. Does the hashing work: call it off the async threads.
    pub fn authenticate(&self, username: Option<&str>, password: Option<&[u8]>) -> AuthOutcome {
        mqttd_auth::authenticate(self.passwords.as_ref(), self.allow_anonymous, username, password)
    }

    /// Whether `username`/`client_id` may read or write `topic`. Without an ACL file everything is allowed.
    pub fn allows(&self, username: Option<&str>, client_id: &str, topic: &str, access: Access) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.check(username, client_id, topic, access).allowed)
    }

    /// Whether a subscription to `filter` can ever receive anything.
    pub fn allows_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.check_subscribe(username, client_id, filter).allowed)
    }
}

/// The security of every listener, swapped whole on reload.
#[derive(Debug, Default)]
pub struct SecuritySet {
    /// By listener index; a connection on an index past the end uses the first.
    pub listeners: Vec<Arc<Security>>,
    /// Whether any listener has an ACL: when none has, deliveries skip the check entirely.
    pub any_acl: bool,
}

impl SecuritySet {
    pub fn new(listeners: Vec<Arc<Security>>) -> SecuritySet {
        let any_acl = listeners.iter().any(|s| s.acl.is_some());
        SecuritySet { listeners, any_acl }
    }

    /// The security of listener `index`.
    pub fn get(&self, index: usize) -> Arc<Security> {
        self.listeners.get(index).or(self.listeners.first()).cloned().unwrap_or_default()
    }

    /// Re-reads every file; on any error the old set stays and the error is returned.
    pub fn reload(&self) -> Result<SecuritySet, SecurityError> {
        let mut fresh = Vec::with_capacity(self.listeners.len());
        for (i, s) in self.listeners.iter().enumerate() {
            // Listeners sharing one Security (no per_listener_settings) keep sharing the reloaded one.
            match self.listeners[..i].iter().position(|earlier| Arc::ptr_eq(earlier, s)) {
                Some(j) => {
                    let shared = Arc::clone(&fresh[j]);
                    fresh.push(shared);
                }
                None => fresh.push(Arc::new(s.reload()?)),
            }
        }
        Ok(SecuritySet::new(fresh))
    }
}
