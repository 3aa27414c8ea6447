//! The CONNECT decision: username and password against the password file and `allow_anonymous`.

use crate::password_file::{PasswordCheck, PasswordFile};

/// Why a client was let in or refused, so the broker can log the user and the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Let in: the password matched, or the client is anonymous and anonymous access is on.
    Allowed,
    /// Refused: anonymous access is off and the client cannot be checked (no username, or a
    /// username but no password file to check it against).
    NoCredentials,
    /// Refused: the user exists and the password is wrong or missing.
    BadPassword,
    /// Refused: the password file has no such user.
    UnknownUser,
}

impl AuthOutcome {
    /// Whether the client may connect.
    pub fn is_allowed(self) -> bool {
        self == AuthOutcome::Allowed
    }

    /// A short reason for logs (never mentions the password).
    pub fn reason(self) -> &'static str {
        match self {
            AuthOutcome::Allowed => "allowed",
            AuthOutcome::NoCredentials => "anonymous access is disabled and no verifiable credentials were given",
            AuthOutcome::BadPassword => "wrong or missing password",
            AuthOutcome::UnknownUser => "no such user in the password file",
        }
    }
}

/// Decides a CONNECT the way Mosquitto does:
/// - without a username: allowed only when `allow_anonymous` is on;
/// - with a username and a password file: the password must match (even when anonymous access is
///   on, a wrong password is refused); a missing or empty password counts as wrong;
/// - with a username and no password file: the username cannot be checked, so the client counts
///   as anonymous.
///
/// Every path through a password file does the same hashing work, so timing shows neither whether
/// the user exists nor whether a password was sent.
pub fn authenticate(
    passwords: Option<&PasswordFile>,
    allow_anonymous: bool,
    username: Option<&str>,
    password: Option<&[u8]>,
) -> AuthOutcome {
    let anonymous = if allow_anonymous { AuthOutcome::Allowed } else { AuthOutcome::NoCredentials };
    let (Some(username), Some(file)) = (username, passwords) else {
        return anonymous;
    };
    match file.check(username, password.unwrap_or_default()) {
        // An empty password never matches, even a hash of the empty string: Mosquitto reads a zero-length
        // password as none (`packet__read_binary`) and refuses it, and `mosquitto_passwd` makes none.
        PasswordCheck::Match if password.is_some_and(|p| !p.is_empty()) => AuthOutcome::Allowed,
        PasswordCheck::Match | PasswordCheck::Mismatch => AuthOutcome::BadPassword,
        PasswordCheck::UnknownUser => AuthOutcome::UnknownUser,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{hash_password, HashKind};

    fn file() -> PasswordFile {
        let hash = hash_password(b"pw", HashKind::Sha512Pbkdf2).unwrap();
        let empty = hash_password(b"", HashKind::Sha512Pbkdf2).unwrap();
        PasswordFile::parse(&format!("alice:{hash}\nnobody:{empty}\n")).unwrap()
    }

    #[test]
    fn anonymous_clients_depend_on_allow_anonymous() {
        let f = file();
        assert_eq!(authenticate(Some(&f), true, None, None), AuthOutcome::Allowed);
        assert_eq!(authenticate(Some(&f), false, None, None), AuthOutcome::NoCredentials);
        assert_eq!(authenticate(None, false, None, None), AuthOutcome::NoCredentials);
        assert_eq!(authenticate(None, true, Some("x"), Some(b"y")), AuthOutcome::Allowed);
        assert_eq!(authenticate(None, false, Some("x"), Some(b"y")), AuthOutcome::NoCredentials);
    }

    #[test]
    fn named_users_need_the_right_password_even_with_anonymous_access() {
        let f = file();
        for anon in [true, false] {
            assert_eq!(authenticate(Some(&f), anon, Some("alice"), Some(b"pw")), AuthOutcome::Allowed);
            assert_eq!(authenticate(Some(&f), anon, Some("alice"), Some(b"no")), AuthOutcome::BadPassword);
            assert_eq!(authenticate(Some(&f), anon, Some("alice"), None), AuthOutcome::BadPassword);
            assert_eq!(authenticate(Some(&f), anon, Some("eve"), Some(b"pw")), AuthOutcome::UnknownUser);
        }
    }

    #[test]
    fn a_missing_or_empty_password_never_matches_even_a_hash_of_the_empty_string() {
        let f = file();
        assert_eq!(authenticate(Some(&f), false, Some("nobody"), None), AuthOutcome::BadPassword);
        assert_eq!(authenticate(Some(&f), true, Some("nobody"), Some(b"")), AuthOutcome::BadPassword);
        assert_eq!(authenticate(Some(&f), false, Some("alice"), Some(b"")), AuthOutcome::BadPassword);
    }

    #[test]
    fn an_empty_password_file_refuses_every_user() {
        let f = PasswordFile::parse("").unwrap();
        assert_eq!(authenticate(Some(&f), false, Some("a"), Some(b"b")), AuthOutcome::UnknownUser);
        assert!(!AuthOutcome::UnknownUser.is_allowed());
    }
}
