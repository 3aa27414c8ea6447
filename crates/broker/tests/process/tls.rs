//! TLS as Mosquitto's users make it (issue 16): certificates from the mosquitto-tls(7) recipe (X.509 v1
//! server and client certificates with OpenSSL 3.0) used by mosquitto_pub/sub against mqttd; `crlfile`;
//! `ciphers_tls1.3`; PSK refused at startup.

use std::path::Path;
use std::process::{Command, Stdio};

use mqttd_testkit::recipe::{openssl_available, Recipe};

use crate::common::{peer_available, run, startup_error, Mqttd};

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A TLS listener with the recipe's server certificate that requires client certificates of its CA.
fn tls_settings(recipe: &Recipe, extra: &str) -> String {
    format!(
        "certfile {}\nkeyfile {}\ncafile {}\nrequire_certificate true\nuse_identity_as_username true\n{extra}",
        p(&recipe.server_cert),
        p(&recipe.server_key),
        p(&recipe.ca)
    )
}

/// mosquitto_pub with the recipe's CA and the client certificate `cert`/`key`.
fn mosquitto_pub(mqttd: &Mqttd, recipe: &Recipe, cert: &Path, key: &Path, topic: &str) -> std::process::Output {
    let port = mqttd.port.to_string();
    let args = ["-h", "localhost", "-p", &port, "--cafile", p(&recipe.ca), "--cert", p(cert), "--key", p(key)];
    run("mosquitto_pub", &[&args[..], &["-t", topic, "-m", "hello", "-r", "-q", "1"]].concat())
}

#[test]
fn mosquitto_pub_and_sub_with_the_recipes_v1_certificates_connect_to_mqttd() {
    if !openssl_available() || !["mosquitto_pub", "mosquitto_sub"].into_iter().all(peer_available) {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let recipe = Recipe::make(dir.path()).expect("openssl is there");
    let version = Command::new("openssl").args(["x509", "-noout", "-text", "-in", p(&recipe.server_cert)]).output();
    let text = String::from_utf8_lossy(&version.expect("openssl runs").stdout).into_owned();
    eprintln!("server certificate: {}", text.lines().nth(2).unwrap_or_default().trim());
    let (cert, key) = recipe.client("client", "dev1");
    let mqttd = Mqttd::start(dir.path(), &tls_settings(&recipe, ""));

    let out = mosquitto_pub(&mqttd, &recipe, &cert, &key, "recipe/a");
    assert!(out.status.success(), "mosquitto_pub: {}\n{}", String::from_utf8_lossy(&out.stderr), mqttd.log());
    let port = mqttd.port.to_string();
    let args = [
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        p(&recipe.ca),
        "--cert",
        p(&cert),
        "--key",
        p(&key),
        "-t",
        "recipe/a",
        "-C",
        "1",
        "-W",
        "10",
        "-v",
    ];
    let out = run("mosquitto_sub", &args);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "recipe/a hello\n", "{}", String::from_utf8_lossy(&out.stderr));

    // A v1 certificate of another CA is refused: the v1 path verifies, it does not wave through.
    let other_dir = tempfile::tempdir().expect("temporary directory");
    let other = Recipe::make(other_dir.path()).expect("openssl is there");
    let (cert, key) = other.client("client", "dev1");
    let out = mosquitto_pub(&mqttd, &recipe, &cert, &key, "recipe/other");
    assert!(!out.status.success(), "a certificate of an unknown CA connected");
}

#[test]
fn a_revoked_client_certificate_is_refused_with_crlfile() {
    if !openssl_available() || !peer_available("mosquitto_pub") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let recipe = Recipe::make(dir.path()).expect("openssl is there");
    let (good, good_key) = recipe.client("good", "good");
    let (revoked, revoked_key) = recipe.client("revoked", "revoked");
    let crl = recipe.revoke(&revoked);
    let mqttd = Mqttd::start(dir.path(), &tls_settings(&recipe, &format!("crlfile {}\n", p(&crl))));

    let out = mosquitto_pub(&mqttd, &recipe, &good, &good_key, "crl/good");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), mqttd.log());
    let out = mosquitto_pub(&mqttd, &recipe, &revoked, &revoked_key, "crl/revoked");
    assert!(!out.status.success(), "a revoked certificate connected");
    mqttd.wait_for_log("Revoked", 1);
}

#[test]
fn crlfile_without_cafile_is_refused_at_startup() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(recipe) = Recipe::make(dir.path()) else { return };
    let settings = format!(
        "certfile {}\nkeyfile {}\ncrlfile {}/crl.pem\n",
        p(&recipe.server_cert),
        p(&recipe.server_key),
        dir.path().display()
    );
    let log = startup_error(dir.path(), &settings);
    assert!(log.contains("crlfile: needs cafile or capath"), "{log}");
}

/// The suite `openssl s_client` negotiates with TLS 1.3 offering `suites`, or `None` if the handshake fails.
fn negotiated(port: u16, ca: &Path, suites: &str) -> Option<String> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-tls1_3", "-ciphersuites", suites])
        .args(["-CAfile", p(ca)])
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.contains("Cipher is "))?;
    let suite = line.rsplit(' ').next()?.to_owned();
    (suite != "(NONE)").then_some(suite)
}

#[test]
fn ciphers_tls13_limits_the_tls13_suites() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(recipe) = Recipe::make(dir.path()) else { return };
    let settings = format!(
        "certfile {}\nkeyfile {}\nciphers_tls1.3 TLS_CHACHA20_POLY1305_SHA256\n",
        p(&recipe.server_cert),
        p(&recipe.server_key)
    );
    let mqttd = Mqttd::start(dir.path(), &settings);
    let chacha = "TLS_CHACHA20_POLY1305_SHA256";
    assert_eq!(
        negotiated(mqttd.port, &recipe.ca, &format!("TLS_AES_256_GCM_SHA384:{chacha}")).as_deref(),
        Some(chacha)
    );
    assert_eq!(negotiated(mqttd.port, &recipe.ca, "TLS_AES_256_GCM_SHA384"), None, "{}", mqttd.log());

    let log = startup_error(
        dir.path(),
        &format!("{settings}ciphers_tls1.3 x\n").replace("ciphers_tls1.3 TLS_CHACHA20_POLY1305_SHA256\n", ""),
    );
    assert!(
        log.contains("ciphers_tls1.3: \"x\" is not a cipher suite") && log.contains("TLS_AES_128_GCM_SHA256"),
        "{log}"
    );
}

#[test]
fn psk_file_is_refused_at_startup_naming_the_line_and_what_to_use() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = startup_error(dir.path(), "psk_hint mqttd\npsk_file /etc/mosquitto/psk\n");
    assert!(log.contains("mqttd.conf:3: psk_hint"), "{log}");
    assert!(log.contains("no pre-shared keys"), "{log}");
}
