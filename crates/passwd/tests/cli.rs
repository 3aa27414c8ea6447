//! End-to-end tests of the `mqttd-passwd` binary.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use mqttd_auth::PasswordFile;
use predicates::prelude::*;

fn cmd() -> Command {
    Command::cargo_bin("mqttd-passwd").unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../auth/testdata").join(name)
}

fn parse(path: &Path) -> PasswordFile {
    PasswordFile::parse(&fs::read_to_string(path).unwrap()).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn create_in_batch_mode_writes_a_private_argon2id_file_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    cmd().args(["-c", "-b"]).arg(&file).args(["admin", "s3cret"]).assert().success().stderr("");
    assert_eq!(mode(&file), 0o600);
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("admin:$argon2id$v=19$m=47104,t=1,p=1$"), "{text}");
    let passwords = parse(&file);
    assert!(passwords.verify("admin", b"s3cret"));
    assert!(!passwords.verify("admin", b"s3cre"));
}

#[test]
fn sha512_pbkdf2_is_written_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    cmd().args(["-H", "sha512-pbkdf2", "-c", "-b"]).arg(&file).args(["u", "p w"]).assert().success();
    assert!(fs::read_to_string(&file).unwrap().starts_with("u:$7$1000$"));
    assert!(parse(&file).verify("u", b"p w"));
}

#[test]
fn editing_a_mosquitto_file_keeps_other_users_and_comments_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let original = fs::read_to_string(fixture("mosquitto-2.0-pbkdf2.passwd")).unwrap();
    let (alice_line, bob_line) = original.split_once('\n').unwrap();
    fs::write(&file, format!("# managed by hand\n{original}")).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();

    cmd().arg("-b").arg(&file).args(["carol", "carol-pw"]).assert().success();
    cmd().arg("-b").arg(&file).args(["alice", "new-alice"]).assert().success();

    let text = fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# managed by hand");
    assert!(lines[1].starts_with("alice:$argon2id$") && lines[1] != alice_line);
    assert_eq!(lines[2], bob_line.trim_end());
    assert!(lines[3].starts_with("carol:"));
    let passwords = parse(&file);
    assert!(passwords.verify("alice", b"new-alice"));
    assert!(passwords.verify("bob", "b0b:with colon & spaces ü".as_bytes()));
    assert!(passwords.verify("carol", b"carol-pw"));
}

#[test]
fn delete_removes_only_that_user_and_an_unknown_user_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    fs::copy(fixture("mosquitto-2.0-sha512.passwd"), &file).unwrap();
    cmd().arg("-D").arg(&file).arg("carol").assert().success();
    let passwords = parse(&file);
    assert_eq!(passwords.users().collect::<Vec<_>>(), ["dave"]);
    cmd().arg("-D").arg(&file).arg("carol").assert().failure().stderr(predicate::str::contains("\"carol\" is not in"));
}

#[test]
fn update_hashes_a_plain_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    fs::write(&file, "# plain\nerin:erin-secret\n\nfrank:frank secret\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    cmd().args(["-H", "sha512-pbkdf2", "-U"]).arg(&file).assert().success();
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# plain\nerin:$7$"));
    let passwords = parse(&file);
    assert!(passwords.verify("erin", b"erin-secret"));
    assert!(passwords.verify("frank", b"frank secret"));
    // Running it again leaves hashed lines alone.
    cmd().arg("-U").arg(&file).assert().success().stderr(predicate::str::contains("already hashed"));
    assert_eq!(fs::read_to_string(&file).unwrap(), text);
}

#[test]
fn the_prompt_asks_twice_and_refuses_a_mismatch_or_an_empty_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    cmd().arg("-c").arg(&file).arg("admin").write_stdin("pw1\npw1\n").assert().success();
    assert!(parse(&file).verify("admin", b"pw1"));
    let before = fs::read_to_string(&file).unwrap();

    cmd()
        .arg(&file)
        .arg("admin")
        .write_stdin("pw2\npw3\n")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("passwords do not match"));
    cmd()
        .arg(&file)
        .arg("admin")
        .write_stdin("\n\n")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("empty password"));
    cmd()
        .arg(&file)
        .arg("admin")
        .write_stdin("only-once\n")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("ended before"));
    assert_eq!(fs::read_to_string(&file).unwrap(), before);
}

#[test]
fn a_missing_file_needs_c_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    cmd().arg("-b").arg(&file).args(["u", "p"]).assert().code(1).stderr(predicate::str::contains("use -c to create"));
    assert!(!file.exists());
}

#[test]
fn bad_usage_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    cmd().arg("-b").arg(&file).arg("u").assert().failure().stderr(predicate::str::contains("usage:"));
    cmd()
        .args(["-c", "-b"])
        .arg(&file)
        .args(["a:b", "p"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("must not contain ':'"));
    cmd().args(["-c", "-D"]).arg(&file).arg("u").assert().failure();
    cmd()
        .args(["-H", "sha512", "-c", "-b"])
        .arg(&file)
        .args(["u", "p"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("too weak"));
    cmd().args(["-c", "-b"]).arg(&file).args(["u", ""]).assert().code(1);
    assert!(!file.exists());
}

#[test]
fn a_file_readable_by_others_gets_a_warning_and_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    fs::copy(fixture("mosquitto-2.0-pbkdf2.passwd"), &file).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    cmd()
        .arg("-b")
        .arg(&file)
        .args(["alice", "x"])
        .assert()
        .success()
        .stderr(predicate::str::contains("accessible by group or others (mode 0644)"));
    assert_eq!(mode(&file), 0o644);
}

const ACL: &str = "\
topic read public/#
user alice
topic readwrite alice/#
topic deny alice/secret/#
pattern read clients/%c/#
";

fn acl_check(dir: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    let acl = dir.join("acl");
    fs::write(&acl, ACL).unwrap();
    cmd().arg("acl-check").arg("--acl").arg(&acl).args(args).assert()
}

#[test]
fn acl_check_prints_the_decision_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    acl_check(d, &["--user", "alice", "alice/notes", "write"])
        .code(0)
        .stdout("allow\nrule: line 3: topic readwrite alice/# (under `user alice`)\n");
    acl_check(d, &["--user", "alice", "alice/secret/x", "read"])
        .code(1)
        .stdout("deny\nrule: line 4: topic deny alice/secret/# (under `user alice`)\n");
    acl_check(d, &["--user", "bob", "public/x", "read"]).code(1).stdout("deny\nno rule matched: denied by default\n");
    acl_check(d, &["public/x", "read"]).code(0).stdout(predicate::str::contains("(anonymous clients)"));
    acl_check(d, &["--user", "bob", "--client-id", "s1", "clients/s1/cmd", "read"])
        .code(0)
        .stdout("allow\nrule: line 5: pattern read clients/%c/#\n");
    acl_check(d, &["--user", "alice", "#", "subscribe"]).code(0);
    acl_check(d, &["--user", "alice", "a/#", "read"]).code(2).stderr(predicate::str::contains("use `subscribe`"));
}

#[test]
fn acl_check_names_the_bad_line_of_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    fs::write(&acl, "user a\ntopic sometimes a/b\n").unwrap();
    cmd()
        .args(["acl-check", "--acl"])
        .arg(&acl)
        .args(["a/b", "read"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("line 2: invalid access \"sometimes\""));
}
