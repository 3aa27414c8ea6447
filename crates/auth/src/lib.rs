//! Users and permissions for mqttd, in Mosquitto's file formats.
//!
//! Owns: reading password files ([`PasswordFile`], hashes `$6$`, `$7$` and `$argon2id$`), hashing
//! new passwords ([`hash_password`]), the CONNECT decision ([`authenticate`]) and ACL files
//! ([`Acl`]). Must not: do I/O (callers read the files and pass the text), log, or keep passwords
//! or hashes in error messages and `Debug` output.
//!
//! The broker holds `Option<PasswordFile>`, `Option<Acl>` and `allow_anonymous`, calls
//! [`authenticate`] on CONNECT, [`Acl::check`] on every PUBLISH ([`Access::Write`], also for wills)
//! and every delivery ([`Access::Read`], also retained messages), and [`Acl::check_subscribe`] on
//! SUBSCRIBE.
//!
//! # Subscriptions
//! Mosquitto grants every SUBSCRIBE and only filters deliveries. mqttd also filters every delivery,
//! and in addition refuses (v5 SUBACK 0x87) a subscription that could never deliver anything: one
//! whose filter lies wholly inside a `deny` rule, or overlaps no rule granting `read`. A broad
//! filter such as `#` is granted when any readable topic could match it; see
//! [`Acl::check_subscribe`].

mod acl;
mod authenticate;
mod error;
mod filter;
mod hash;
mod password_file;

pub use acl::{Access, Acl, Decision, Permission, Rule, RuleKind};
pub use authenticate::{authenticate, AuthOutcome};
pub use error::{FileError, FileErrorKind, HashError};
pub use hash::{
    hash_password, is_supported_hash, HashKind, ARGON2_DEFAULT_M_KIB, ARGON2_DEFAULT_P, ARGON2_DEFAULT_T,
    ARGON2_MAX_M_KIB, ARGON2_MAX_P, ARGON2_MAX_T, PBKDF2_DEFAULT_ITERATIONS, PBKDF2_MAX_ITERATIONS,
};
pub use password_file::{split_line, validate_username, PasswordCheck, PasswordFile, UsernameError};
