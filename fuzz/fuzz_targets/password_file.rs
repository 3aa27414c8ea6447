//! Fuzzes the password file parser: no input panics, and errors point at a line of the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mqttd_auth::PasswordFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match PasswordFile::parse(text) {
        Ok(file) => {
            assert_eq!(file.users().count(), file.len());
            assert_eq!(file.is_empty(), file.len() == 0);
            for user in file.users() {
                assert!(file.contains(user));
            }
            // Verification is not called: a file may legitimately ask for a 1 GiB Argon2 run.
            let _ = format!("{file:?}");
        }
        Err(error) => {
            let lines = text.lines().count();
            assert!(error.line >= 1 && error.line <= lines, "line {} of {lines}", error.line);
            let _ = error.to_string();
        }
    }
});
