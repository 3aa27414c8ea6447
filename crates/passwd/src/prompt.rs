//! Asking for a new password twice, without echo on a terminal.

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};

/// Reads one line from a non-terminal standard input (scripts: `printf 'pw\npw\n' | mqttd-passwd`).
fn read_piped_line(prompt: &str, input: &mut impl BufRead) -> Result<String> {
    eprint!("{prompt}");
    let _ = io::stderr().flush();
    let mut line = String::new();
    if input.read_line(&mut line).context("cannot read the password from standard input")? == 0 {
        bail!("standard input ended before the password was given twice");
    }
    eprintln!();
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(line)
}

/// Asks for the password and its confirmation; refuses a mismatch or an empty password.
pub fn new_password() -> Result<String> {
    let (first, second) = if io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let second = rpassword::prompt_password("Reenter password: ").context("cannot read the password")?;
        (first, second)
    } else {
        let mut input = io::stdin().lock();
        let first = read_piped_line("Password: ", &mut input)?;
        let second = read_piped_line("Reenter password: ", &mut input)?;
        (first, second)
    };
    if first != second {
        bail!("passwords do not match; the password file was not changed");
    }
    check_password(&first)?;
    Ok(first)
}

/// Refuses passwords that cannot be used to log in.
pub fn check_password(password: &str) -> Result<()> {
    if password.is_empty() {
        bail!("empty password; the password file was not changed");
    }
    if password.len() > 65_535 {
        bail!("the password is longer than 65535 bytes, the most an MQTT client can send");
    }
    Ok(())
}
