//! `mqttd-passwd`: manage password files for mqttd (and Mosquitto), with the usage of
//! `mosquitto_passwd`, plus `acl-check` to explain ACL decisions.
//!
//! Owns: argument parsing, prompting, editing and atomically replacing the file. Hashing and
//! parsing live in `mqttd-auth`.

mod acl_check;
mod edit;
mod prompt;
mod write;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use mqttd_auth::{hash_password, validate_username, HashKind, PasswordFile};

const EXAMPLES: &str = "\
Examples:
  mqttd-passwd -c /etc/mosquitto/passwd admin        create the file, ask for admin's password
  mqttd-passwd /etc/mosquitto/passwd alice           add alice or change her password
  mqttd-passwd -b /etc/mosquitto/passwd bob s3cret   batch mode: password on the command line
  mqttd-passwd -D /etc/mosquitto/passwd bob          delete bob
  mqttd-passwd -U passwords.txt                      hash a file of plain user:password lines
  mqttd-passwd acl-check --acl /etc/mosquitto/acl --user alice sensors/1 read

Hashes: argon2id (default) or sha512-pbkdf2 ($7$, readable by Mosquitto 2.0).
A new file gets mode 0600; an existing file keeps its mode, owner and comments.";

#[derive(Debug, Parser)]
#[command(
    name = "mqttd-passwd",
    version,
    about = "Manage password files for mqttd and Mosquitto",
    override_usage = "mqttd-passwd [-H argon2id|sha512-pbkdf2] [-c | -D] passwordfile username\n       \
                      mqttd-passwd [-H argon2id|sha512-pbkdf2] [-c] -b passwordfile username password\n       \
                      mqttd-passwd [-H argon2id|sha512-pbkdf2] -U passwordfile\n       \
                      mqttd-passwd acl-check --acl FILE [--user USER] [--client-id ID] TOPIC read|write|subscribe",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Hash for new passwords: argon2id (default) or sha512-pbkdf2.
    #[arg(short = 'H', value_name = "HASH", value_parser = parse_hash)]
    hash: Option<HashKind>,
    /// Create a new password file, replacing any existing one.
    #[arg(short = 'c', conflicts_with_all = ["delete", "update"])]
    create: bool,
    /// Delete the user instead of setting a password.
    #[arg(short = 'D', conflicts_with_all = ["batch", "update"])]
    delete: bool,
    /// Batch mode: take the password from the command line.
    #[arg(short = 'b', conflicts_with = "update")]
    batch: bool,
    /// Hash a file of plain `user:password` lines in place.
    #[arg(short = 'U')]
    update: bool,
    /// passwordfile [username [password]]
    #[arg(value_name = "ARGS", num_args = 0..=3)]
    args: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print whether an ACL file allows an access, and the rule that decided.
    AclCheck(acl_check::AclCheck),
}

fn parse_hash(value: &str) -> Result<HashKind, String> {
    match value {
        "argon2id" => Ok(HashKind::Argon2id),
        "sha512-pbkdf2" => Ok(HashKind::Sha512Pbkdf2),
        "sha512" => Err("sha512 ($6$) is too weak to write; use sha512-pbkdf2 or argon2id".into()),
        _ => Err("expected argon2id or sha512-pbkdf2".into()),
    }
}

/// What the password arguments ask for.
enum Task {
    Update { file: PathBuf },
    Delete { file: PathBuf, user: String },
    Set { file: PathBuf, user: String, password: Option<String>, create: bool },
}

fn task(cli: Cli) -> Result<Task> {
    let mut args = cli.args.into_iter();
    let (file, user, password) = (args.next(), args.next(), args.next());
    let Some(file) = file.map(PathBuf::from) else {
        bail!("missing password file (see --help)");
    };
    let want = |ok: bool, usage: &str| if ok { Ok(()) } else { Err(anyhow!("usage: {usage}")) };
    if cli.update {
        want(user.is_none(), "mqttd-passwd -U passwordfile")?;
        return Ok(Task::Update { file });
    }
    let Some(user) = user else { bail!("missing username (see --help)") };
    validate_username(&user).with_context(|| format!("invalid username {user:?}"))?;
    if cli.delete {
        want(password.is_none(), "mqttd-passwd -D passwordfile username")?;
        return Ok(Task::Delete { file, user });
    }
    if cli.batch {
        want(password.is_some(), "mqttd-passwd -b passwordfile username password")?;
    } else {
        want(password.is_none(), "mqttd-passwd passwordfile username (add -b to give the password)")?;
    }
    Ok(Task::Set { file, user, password, create: cli.create })
}

fn read_existing(file: &Path) -> Result<String> {
    std::fs::read_to_string(file)
        .with_context(|| format!("cannot read password file {} (use -c to create a new one)", file.display()))
}

fn warn_if_exposed(file: &Path) {
    if let Some(mode) = write::exposed_mode(file) {
        eprintln!(
            "warning: {} is accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
            file.display(),
            file.display()
        );
    }
}

/// Tells about lines the broker would refuse, without blocking the edit the user asked for.
fn warn_if_unreadable(file: &Path, text: &str) {
    if let Err(e) = PasswordFile::parse(text) {
        eprintln!("warning: {}: {e}; mqttd will refuse this file until that line is fixed", file.display());
    }
}

fn save(file: &Path, text: &str) -> Result<()> {
    warn_if_unreadable(file, text);
    write::replace_file(file, text.as_bytes()).with_context(|| format!("cannot write {}", file.display()))?;
    warn_if_exposed(file);
    Ok(())
}

fn run_task(task: Task, kind: HashKind) -> Result<()> {
    match task {
        Task::Update { file } => {
            let text = read_existing(&file)?;
            let (updated, notes) =
                edit::hash_plain_file(&text, kind).with_context(|| format!("cannot hash {}", file.display()))?;
            for edit::UpdateNote::AlreadyHashed { line, user } in notes {
                eprintln!("note: line {line}: {user:?} is already hashed; left as it was");
            }
            save(&file, &updated)
        }
        Task::Delete { file, user } => {
            let text = read_existing(&file)?;
            let Some(updated) = edit::delete_user(&text, &user) else {
                bail!("user {user:?} is not in {}", file.display());
            };
            save(&file, &updated)
        }
        Task::Set { file, user, password, create } => {
            // Read before prompting, so a missing file is reported before the password is typed.
            let text = if create { String::new() } else { read_existing(&file)? };
            let password = match password {
                Some(password) => {
                    prompt::check_password(&password)?;
                    password
                }
                None => prompt::new_password()?,
            };
            let hash = hash_password(password.as_bytes(), kind)?;
            save(&file, &edit::set_user(&text, &user, &hash))
        }
    }
}

/// Prints the error chain; `code` is the exit status for failures.
fn report(result: Result<ExitCode>, code: u8) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(code)
    })
}

/// Exit codes: 0 success, 1 failure (as `mosquitto_passwd`); `acl-check`: 0 allow, 1 deny,
/// 2 failure.
fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::AclCheck(args)) = cli.command.take() {
        return report(acl_check::run(&args), 2);
    }
    let kind = cli.hash.unwrap_or_default();
    report(task(cli).and_then(|t| run_task(t, kind)).map(|()| ExitCode::SUCCESS), 1)
}
