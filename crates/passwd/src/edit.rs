//! Line-level edits of a password file's text. Lines that are not touched are kept byte for byte,
//! comments and line endings included.

use mqttd_auth::{hash_password, is_supported_hash, split_line, HashKind};

/// The lines of `text`, each with its line ending (if any).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
}

fn is_line_of(line: &str, user: &str) -> bool {
    matches!(split_line(line), Some((name, _)) if name == user)
}

fn push_line(out: &mut String, line: &str) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
}

/// Sets `user`'s hash: replaces the user's first line in place (dropping any later duplicates),
/// or appends a line when the user is new.
pub fn set_user(text: &str, user: &str, hash: &str) -> String {
    let mut out = String::with_capacity(text.len() + user.len() + hash.len() + 2);
    let mut replaced = false;
    for line in lines(text) {
        if !is_line_of(line, user) {
            out.push_str(line);
        } else if !replaced {
            let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
            out.push_str(user);
            out.push(':');
            out.push_str(hash);
            out.push_str(ending);
            replaced = true;
        }
    }
    if !replaced {
        push_line(&mut out, &format!("{user}:{hash}"));
    }
    out
}

/// Removes every line of `user`; `None` when the file has no such user.
pub fn delete_user(text: &str, user: &str) -> Option<String> {
    let mut found = false;
    let out: String = lines(text)
        .filter(|line| {
            let mine = is_line_of(line, user);
            found |= mine;
            !mine
        })
        .collect();
    found.then_some(out)
}

/// What `-U` did to one line.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateNote {
    /// The line already held a hash this tool can read, and was left as it was.
    AlreadyHashed { line: usize, user: String },
}

/// Why `-U` could not hash a file.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// A line that is neither a comment nor `user:password`.
    #[error("line {0}: expected `username:password`")]
    NotAUserLine(usize),
    /// A line with an empty username or password.
    #[error("line {0}: the username or the password is empty")]
    Empty(usize),
    /// Hashing failed.
    #[error("line {line}: {source}")]
    Hash {
        /// Where.
        line: usize,
        /// Why.
        source: mqttd_auth::HashError,
    },
}

/// Hashes every plain `user:password` line (`-U`). The password is everything after the first
/// `:` up to the line ending, blanks included. Lines that already hold a supported hash are kept.
pub fn hash_plain_file(text: &str, kind: HashKind) -> Result<(String, Vec<UpdateNote>), UpdateError> {
    let mut out = String::with_capacity(text.len() * 2);
    let mut notes = Vec::new();
    for (index, line) in lines(text).enumerate() {
        let number = index + 1;
        let Some((user, _)) = split_line(line) else {
            out.push_str(line);
            continue;
        };
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let Some((_, password)) = body.split_once(':') else {
            return Err(UpdateError::NotAUserLine(number));
        };
        if user.is_empty() || password.is_empty() {
            return Err(UpdateError::Empty(number));
        }
        if is_supported_hash(password.trim()) {
            notes.push(UpdateNote::AlreadyHashed { line: number, user: user.to_owned() });
            out.push_str(line);
            continue;
        }
        let hash =
            hash_password(password.as_bytes(), kind).map_err(|source| UpdateError::Hash { line: number, source })?;
        out.push_str(user);
        out.push(':');
        out.push_str(&hash);
        out.push_str(if ending.is_empty() { "\n" } else { ending });
    }
    Ok((out, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqttd_auth::PasswordFile;

    const FILE: &str = "# admins\nalice:$7$old\r\n\nbob:$7$bob\n# end";

    #[test]
    fn setting_a_known_user_replaces_its_line_in_place() {
        assert_eq!(set_user(FILE, "alice", "$7$new"), "# admins\nalice:$7$new\r\n\nbob:$7$bob\n# end");
    }

    #[test]
    fn setting_a_new_user_appends_a_line() {
        assert_eq!(set_user(FILE, "carol", "$7$c"), format!("{FILE}\ncarol:$7$c\n"));
        assert_eq!(set_user("", "carol", "$7$c"), "carol:$7$c\n");
    }

    #[test]
    fn duplicate_lines_of_a_user_collapse_into_one() {
        assert_eq!(set_user("a:1\nb:2\na:3\n", "a", "9"), "a:9\nb:2\n");
    }

    #[test]
    fn deleting_keeps_everything_else() {
        assert_eq!(delete_user(FILE, "alice").unwrap(), "# admins\n\nbob:$7$bob\n# end");
        assert_eq!(delete_user(FILE, "carol"), None);
        assert_eq!(delete_user(FILE, "# admins"), None);
    }

    #[test]
    fn updating_hashes_plain_lines_and_keeps_comments_and_hashed_lines() {
        let hashed = mqttd_auth::hash_password(b"x", HashKind::Sha512Pbkdf2).unwrap();
        let text = format!("# plain\nerin:erin pw \r\n\nzed:{hashed}\n");
        let (out, notes) = hash_plain_file(&text, HashKind::Sha512Pbkdf2).unwrap();
        assert_eq!(notes, [UpdateNote::AlreadyHashed { line: 4, user: "zed".into() }]);
        assert!(out.starts_with("# plain\nerin:$7$"));
        assert!(out.contains("\r\n\nzed:"));
        let file = PasswordFile::parse(&out).unwrap();
        assert!(file.verify("erin", b"erin pw "));
        assert!(file.verify("zed", b"x"));
    }

    #[test]
    fn updating_refuses_lines_it_cannot_read() {
        assert_eq!(hash_plain_file("a:b\njunk\n", HashKind::Sha512Pbkdf2), Err(UpdateError::NotAUserLine(2)));
        assert_eq!(hash_plain_file("a:\n", HashKind::Sha512Pbkdf2), Err(UpdateError::Empty(1)));
    }
}
