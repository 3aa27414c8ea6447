//! Mosquitto password files: one `username:hash` line per user, `#` comments and blank lines.

use std::collections::HashMap;

use crate::error::{FileError, FileErrorKind};
use crate::hash::{DecodeHashError, StoredHash};

/// A parsed password file. Holds decoded hashes only; the file's text is not kept.
#[derive(Clone, Default)]
pub struct PasswordFile {
    /// Users in file order, with the line that defined them.
    entries: Vec<(String, StoredHash)>,
    /// Username to index into `entries`.
    index: HashMap<String, usize>,
}

/// The result of checking a username and password against a [`PasswordFile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The user exists and the password is right.
    Match,
    /// The user exists and the password is wrong.
    Mismatch,
    /// The file has no such user.
    UnknownUser,
}

impl std::fmt::Debug for PasswordFile {
    /// Lists users and hash schemes, never hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.entries.iter().map(|(user, hash)| (user, hash.scheme()))).finish()
    }
}

/// Splits a password file line into username and password field, both trimmed.
///
/// Returns `None` for blank lines and comments (first non-blank character `#`). A line with no `:`
/// yields the whole trimmed line as username and `None` as password field. Shared with
/// `mqttd-passwd`, which edits files line by line and must agree on who a line belongs to.
pub fn split_line(line: &str) -> Option<(&str, Option<&str>)> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    Some(match trimmed.split_once(':') {
        Some((user, rest)) => (user.trim(), Some(rest.trim())),
        None => (trimmed, None),
    })
}

/// Why a username cannot go into a password file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// The username is empty.
    #[error("the username is empty")]
    Empty,
    /// The username contains `:`, the field separator.
    #[error("the username must not contain ':'")]
    Colon,
    /// The username contains a line break or another control character.
    #[error("the username must not contain control characters")]
    Control,
    /// Leading or trailing blanks would be trimmed when the file is read.
    #[error("the username must not start or end with blanks")]
    Blank,
    /// Starting with `#` would make the line a comment.
    #[error("the username must not start with '#'")]
    Hash,
    /// MQTT strings are at most 65535 bytes.
    #[error("the username is longer than 65535 bytes")]
    TooLong,
}

/// Checks that `username` can be written as `username:hash` and read back unchanged.
pub fn validate_username(username: &str) -> Result<(), UsernameError> {
    if username.is_empty() {
        Err(UsernameError::Empty)
    } else if username.len() > 65_535 {
        Err(UsernameError::TooLong)
    } else if username.contains(':') {
        Err(UsernameError::Colon)
    } else if username.chars().any(char::is_control) {
        Err(UsernameError::Control)
    } else if username.trim() != username {
        Err(UsernameError::Blank)
    } else if username.starts_with('#') {
        Err(UsernameError::Hash)
    } else {
        Ok(())
    }
}

impl PasswordFile {
    /// Parses a password file. Every non-blank, non-comment line must be `username:hash` with a
    /// `$6$`, `$7$` or `$argon2id$` hash; a username may appear once. The first bad line is
    /// reported with its 1-based number.
    pub fn parse(text: &str) -> Result<PasswordFile, FileError> {
        let mut file = PasswordFile::default();
        let mut lines_of: HashMap<String, usize> = HashMap::new();
        for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
            let Some((user, field)) = split_line(line) else { continue };
            let error = |kind| FileError { line: number, kind };
            let Some(field) = field else { return Err(error(FileErrorKind::MissingColon)) };
            if user.is_empty() {
                return Err(error(FileErrorKind::EmptyUsername));
            }
            let owned = || user.to_owned();
            if field.is_empty() {
                return Err(error(FileErrorKind::MissingHash { user: owned() }));
            }
            if !field.starts_with('$') {
                return Err(error(FileErrorKind::PlainTextPassword { user: owned() }));
            }
            let hash = StoredHash::decode(field).map_err(|e| {
                error(match e {
                    DecodeHashError::Unsupported => FileErrorKind::UnsupportedHash { user: owned() },
                    DecodeHashError::Malformed { scheme, reason } => {
                        FileErrorKind::MalformedHash { user: owned(), scheme, reason }
                    }
                })
            })?;
            if let Some(&first_line) = lines_of.get(user) {
                return Err(error(FileErrorKind::DuplicateUser { user: owned(), first_line }));
            }
            lines_of.insert(owned(), number);
            file.index.insert(owned(), file.entries.len());
            file.entries.push((owned(), hash));
        }
        Ok(file)
    }

    /// Whether the file defines no user (then every username is refused).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Usernames in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().map(|(user, _)| user.as_str())
    }

    /// Whether `username` is in the file (no hashing; for tools, not for login decisions).
    pub fn contains(&self, username: &str) -> bool {
        self.index.contains_key(username)
    }

    /// Whether `password` is right for `username`. See [`PasswordFile::check`].
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        self.check(username, password) == PasswordCheck::Match
    }

    /// Checks `password` for `username`, comparing hashes in constant time.
    ///
    /// For an unknown user the password is still hashed, with the parameters of the file's first
    /// user, and the result thrown away, so the time taken does not tell whether the user exists
    /// (in a file whose users share one hash type and cost, which is what the tools write).
    pub fn check(&self, username: &str, password: &[u8]) -> PasswordCheck {
        match self.index.get(username).and_then(|&i| self.entries.get(i)) {
            Some((_, hash)) if hash.verify(password) => PasswordCheck::Match,
            Some(_) => PasswordCheck::Mismatch,
            None => {
                if let Some((_, decoy)) = self.entries.first() {
                    // Same work as a known user; the outcome is ignored on purpose.
                    let _ = std::hint::black_box(decoy.verify(password));
                }
                PasswordCheck::UnknownUser
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{hash_password, HashKind};

    fn file_with(users: &[(&str, &str)]) -> String {
        let mut text = String::from("# users\n\n");
        for (user, password) in users {
            let hash = hash_password(password.as_bytes(), HashKind::Sha512Pbkdf2).unwrap();
            text.push_str(&format!("{user}:{hash}\r\n"));
        }
        text
    }

    #[test]
    fn known_users_verify_and_others_do_not() {
        let file = PasswordFile::parse(&file_with(&[("alice", "a"), ("bob", "b")])).unwrap();
        assert_eq!(file.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(file.check("alice", b"a"), PasswordCheck::Match);
        assert_eq!(file.check("alice", b"b"), PasswordCheck::Mismatch);
        assert_eq!(file.check("carol", b"a"), PasswordCheck::UnknownUser);
        assert!(file.verify("bob", b"b"));
        assert!(!file.verify("bob", b""));
    }

    #[test]
    fn an_empty_file_has_no_users_and_refuses_everyone() {
        let file = PasswordFile::parse("# nothing here\n\n   \n").unwrap();
        assert!(file.is_empty());
        assert_eq!(file.check("anyone", b"x"), PasswordCheck::UnknownUser);
    }

    #[test]
    fn bad_lines_name_their_line_number_and_not_the_hash() {
        let hash = hash_password(b"pw", HashKind::Sha512Pbkdf2).unwrap();
        let cases = [
            ("no colon here", FileErrorKind::MissingColon),
            (":$7$x", FileErrorKind::EmptyUsername),
            ("eve:", FileErrorKind::MissingHash { user: "eve".into() }),
            ("eve:plaintext", FileErrorKind::PlainTextPassword { user: "eve".into() }),
            ("eve:$1$abc$def", FileErrorKind::UnsupportedHash { user: "eve".into() }),
        ];
        for (line, kind) in cases {
            let text = format!("# header\nalice:{hash}\n{line}\n");
            assert_eq!(PasswordFile::parse(&text).unwrap_err(), FileError { line: 3, kind });
        }
        let err = PasswordFile::parse("eve:$7$101$AAAA$AAAA\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.to_string().starts_with("line 1: user \"eve\": malformed $7$ hash"));
        assert!(!err.to_string().contains("AAAA"));
    }

    #[test]
    fn a_user_defined_twice_is_refused() {
        let text = file_with(&[("alice", "a"), ("alice", "b")]);
        assert_eq!(
            PasswordFile::parse(&text).unwrap_err().kind,
            FileErrorKind::DuplicateUser { user: "alice".into(), first_line: 3 }
        );
    }

    #[test]
    fn blanks_around_fields_are_ignored_like_mosquitto() {
        let hash = hash_password(b"pw", HashKind::Sha512Pbkdf2).unwrap();
        let file = PasswordFile::parse(&format!("  alice :  {hash}  \n")).unwrap();
        assert!(file.verify("alice", b"pw"));
    }

    #[test]
    fn debug_output_lists_users_without_hashes() {
        let file = PasswordFile::parse(&file_with(&[("alice", "a")])).unwrap();
        assert_eq!(format!("{file:?}"), r#"{"alice": "$7$"}"#);
    }

    #[test]
    fn usernames_that_would_not_read_back_are_refused() {
        assert_eq!(validate_username(""), Err(UsernameError::Empty));
        assert_eq!(validate_username("a:b"), Err(UsernameError::Colon));
        assert_eq!(validate_username("a\nb"), Err(UsernameError::Control));
        assert_eq!(validate_username(" a"), Err(UsernameError::Blank));
        assert_eq!(validate_username("#a"), Err(UsernameError::Hash));
        assert_eq!(validate_username("alice smith"), Ok(()));
    }
}
