//! Errors of this crate. Messages name the line and the reason, never a password or a hash.

use mqttd_proto::topic::TopicError;

/// A password file or ACL file line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct FileError {
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong with the line.
    pub kind: FileErrorKind,
}

/// Why a line of a password file or ACL file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileErrorKind {
    /// A password file line without the `:` between username and hash.
    #[error("expected `username:hash`, found no ':'")]
    MissingColon,
    /// A password file line whose username is empty.
    #[error("the username is empty")]
    EmptyUsername,
    /// A password file line with a username and nothing after the `:`.
    #[error("user {user:?} has no password hash")]
    MissingHash {
        /// The username of the line.
        user: String,
    },
    /// The password field does not start with `$`: a plain-text password file.
    #[error("user {user:?}: the password is not hashed (hash the file with `mqttd-passwd -U FILE`)")]
    PlainTextPassword {
        /// The username of the line.
        user: String,
    },
    /// The hash is not `$6$`, `$7$` or `$argon2id$`.
    #[error("user {user:?}: unsupported hash type (expected $6$, $7$ or $argon2id$)")]
    UnsupportedHash {
        /// The username of the line.
        user: String,
    },
    /// The hash has a known type but cannot be decoded.
    #[error("user {user:?}: malformed {scheme} hash: {reason}")]
    MalformedHash {
        /// The username of the line.
        user: String,
        /// `$6$`, `$7$` or `$argon2id$`.
        scheme: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same username appears twice.
    #[error("user {user:?} is already defined on line {first_line}")]
    DuplicateUser {
        /// The username of the line.
        user: String,
        /// Where it was defined first.
        first_line: usize,
    },
    /// An ACL line that starts with something other than `user`, `topic` or `pattern`.
    #[error("unknown keyword {0:?} (expected `user`, `topic` or `pattern`)")]
    UnknownKeyword(String),
    /// An ACL `user` line without a name.
    #[error("`user` needs a username")]
    MissingUsername,
    /// An ACL `topic` or `pattern` line without a filter.
    #[error("`{0}` needs a topic filter")]
    MissingFilter(&'static str),
    /// An ACL access word that is not `read`, `write`, `readwrite` or `deny`.
    #[error("invalid access {0:?} (expected read, write, readwrite or deny)")]
    InvalidAccess(String),
    /// An ACL filter that is not a valid MQTT topic filter.
    #[error("invalid topic filter {filter:?}: {reason}")]
    InvalidFilter {
        /// The filter as written.
        filter: String,
        /// Why it is invalid.
        reason: TopicError,
    },
}

/// Why a password could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes for the salt from the operating system: {0}")]
    Random(String),
    /// The hashing function refused its input (for example a password longer than 4 GiB).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}
