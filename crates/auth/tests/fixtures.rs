//! Password files written by the real `mosquitto_passwd` (and by the reference `argon2` tool) verify
//! unchanged. See `testdata/README.md` for how each file was made.

use mqttd_auth::{authenticate, AuthOutcome, PasswordCheck, PasswordFile};

fn load(name: &str) -> PasswordFile {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    PasswordFile::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_users(file: &PasswordFile, users: &[(&str, &str)]) {
    assert_eq!(file.users().collect::<Vec<_>>(), users.iter().map(|(u, _)| *u).collect::<Vec<_>>());
    for (user, password) in users {
        assert_eq!(file.check(user, password.as_bytes()), PasswordCheck::Match, "{user}");
        let wrong = format!("{password}x");
        assert_eq!(file.check(user, wrong.as_bytes()), PasswordCheck::Mismatch, "{user}");
    }
    assert_eq!(file.check("nobody", b"x"), PasswordCheck::UnknownUser);
}

#[test]
fn mosquitto_2_0_pbkdf2_files_verify() {
    let file = load("mosquitto-2.0-pbkdf2.passwd");
    assert_users(&file, &[("alice", "alice-secret"), ("bob", "b0b:with colon & spaces ü")]);
}

#[test]
fn mosquitto_sha512_files_verify_including_an_empty_password() {
    let file = load("mosquitto-2.0-sha512.passwd");
    assert_users(&file, &[("carol", "carol-secret"), ("dave", "")]);
}

#[test]
fn files_hashed_by_mosquitto_passwd_update_verify() {
    let file = load("mosquitto-2.0-updated.passwd");
    assert_users(&file, &[("erin", "erin-secret"), ("frank", "frank secret")]);
}

#[test]
fn argon2id_strings_from_libargon2_verify() {
    let file = load("argon2id.passwd");
    assert_users(&file, &[("grace", "grace-secret"), ("heidi", "heidi pass"), ("ivan", "ivan")]);
}

#[test]
fn hashes_built_from_the_documented_algorithms_verify() {
    let file = load("constructed.passwd");
    assert_users(&file, &[("judy", "judy-secret"), ("kim", "kim-secret")]);
}

#[test]
fn the_mosquitto_guide_works_with_a_mosquitto_file() {
    let file = load("mosquitto-2.0-pbkdf2.passwd");
    let login = |user, password: Option<&[u8]>| authenticate(Some(&file), false, user, password);
    assert_eq!(login(Some("alice"), Some(b"alice-secret")), AuthOutcome::Allowed);
    assert_eq!(login(Some("alice"), Some(b"wrong")), AuthOutcome::BadPassword);
    assert_eq!(login(Some("alice"), None), AuthOutcome::BadPassword);
    assert_eq!(login(Some("mallory"), Some(b"alice-secret")), AuthOutcome::UnknownUser);
    assert_eq!(login(None, None), AuthOutcome::NoCredentials);
}
