//! Certificates made the way Mosquitto's users make them: the exact `openssl` commands of the
//! mosquitto-tls(7) man page, run at test time (with `-nodes`/`-subj` so that nothing prompts). With
//! OpenSSL 3.0 `openssl x509 -req` makes X.509 **v1** server and client certificates (no extensions), which
//! is the point of these tests. The CA is v3 (`-extensions v3_ca`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The CA, server and client files of the recipe, in a directory the test owns.
pub struct Recipe {
    pub dir: PathBuf,
    /// `ca.crt`: `cafile` for the broker, `--cafile`/`--ca` for clients.
    pub ca: PathBuf,
    /// `server.crt` (v1, CN=localhost) and `server.key`.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Whether `openssl` can be run; panics when it cannot and `MQTTD_REQUIRE_PEERS=1`.
pub fn openssl_available() -> bool {
    let found = Command::new("openssl").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(
            std::env::var("MQTTD_REQUIRE_PEERS").as_deref() != Ok("1"),
            "openssl is required (MQTTD_REQUIRE_PEERS=1) but cannot be run; install the openssl package"
        );
        eprintln!("skipped: openssl not found (install openssl to run this test)");
    }
    found
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(out.status.success(), "openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Recipe {
    /// Makes the CA and the server certificate in `dir`; `None` (test skipped) without openssl.
    pub fn make(dir: &Path) -> Option<Recipe> {
        if !openssl_available() {
            return None;
        }
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-x509",
                "-days",
                "30",
                "-extensions",
                "v3_ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-nodes",
                "-subj",
                "/CN=Recipe CA",
            ],
        );
        let (server_cert, server_key) = signed(dir, "server", "localhost");
        Some(Recipe { dir: dir.to_owned(), ca: dir.join("ca.crt"), server_cert, server_key })
    }

    /// A client certificate with common name `cn`, made as the recipe's `client.crt` (files `NAME.crt`,
    /// `NAME.key`); returns (certificate, key).
    pub fn client(&self, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        signed(&self.dir, name, cn)
    }

    /// Revokes `cert` and writes a CRL of this CA (`openssl ca -revoke`, `-gencrl`) to `crl.pem`.
    pub fn revoke(&self, cert: &Path) -> PathBuf {
        let dir = &self.dir;
        let config = format!(
            "[ca]\ndefault_ca = own\n[own]\ndatabase = {0}/index.txt\ncrlnumber = {0}/crlnumber\n\
             default_md = sha256\ndefault_crl_days = 30\n",
            dir.display()
        );
        std::fs::write(dir.join("ca.cnf"), config).expect("writes ca.cnf");
        std::fs::write(dir.join("index.txt"), "").expect("writes index.txt");
        std::fs::write(dir.join("crlnumber"), "01\n").expect("writes crlnumber");
        let cert = cert.to_str().expect("UTF-8 path");
        let ca = ["-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt"];
        openssl(dir, &[&["ca"], &ca[..], &["-revoke", cert]].concat());
        openssl(dir, &[&["ca"], &ca[..], &["-gencrl", "-out", "crl.pem"]].concat());
        dir.join("crl.pem")
    }
}

/// The recipe's three steps for a server or client: key, CSR, `openssl x509 -req` signed by the CA.
fn signed(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
    openssl(dir, &["genrsa", "-out", &key, "2048"]);
    openssl(dir, &["req", "-out", &csr, "-key", &key, "-new", "-subj", &format!("/CN={cn}")]);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "30",
        ],
    );
    // genrsa makes the key 0600; Mosquitto started as root reads it after switching to its own user.
    let key = dir.join(key);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod 644 the key");
    (dir.join(crt), key)
}
