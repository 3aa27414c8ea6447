//! TLS listeners (rustls on ring): the server certificate and key, client certificates checked against
//! `cafile`/`capath` and `crlfile`, `require_certificate`, `tls_version`, `ciphers`, `ciphers_tls1.3`, and
//! the username taken from the client certificate (`use_identity_as_username`, `use_subject_as_username`).
//! X.509 v1 certificates (what `openssl x509 -req` makes with OpenSSL 3.0) are accepted as server and
//! client certificates, as Mosquitto accepts them (`mqttd_tls`).
//!
//! Files are read when the listener is made and again on [`TlsListener::reload`] (SIGHUP): a renewed
//! certificate needs no restart, and a broken one keeps the previous configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mqttd_tls::{ClientVerifier, KeyError, Subject};
use parking_lot::RwLock;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::sign::SingleCertAndKey;
use tokio_rustls::rustls::{version, RootCertStore, ServerConfig, ServerConnection, SupportedCipherSuite};
use tokio_rustls::TlsAcceptor;

use crate::config::{ListenerConfig, Location, TlsVersion};

/// Why a TLS listener cannot be set up; each names the config line, the directive and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{at}: cannot read {directive} {}: {source}", path.display())]
    Read { at: Location, directive: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{at}: {directive} {}: {why}", path.display())]
    Invalid { at: Location, directive: &'static str, path: PathBuf, why: String },
    #[error("{at}: {directive}: {why}")]
    Setting { at: Location, directive: &'static str, why: String },
}

/// The username a listener takes from the client certificate, decided after the TLS handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CertUsername {
    /// The listener uses the CONNECT username (and password).
    #[default]
    Unused,
    /// The listener takes the username from the certificate, and the client sent none (or it has no CN).
    Missing,
    /// The certificate's CN or subject: it replaces the CONNECT username, and no password is checked.
    Found(String),
}

/// A TLS listener's settings and its current rustls configuration.
#[derive(Debug)]
pub struct TlsListener {
    listener: ListenerConfig,
    /// Read on every accept, replaced on SIGHUP; the lock is held only to clone the `Arc`.
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsListener {
    /// Reads the certificate, key and CA files of `listener` (which must have a `certfile`).
    pub fn load(listener: &ListenerConfig) -> Result<TlsListener, TlsError> {
        let config = server_config(listener)?;
        Ok(TlsListener { listener: listener.clone(), current: RwLock::new(Arc::new(config)) })
    }

    /// Reads the files again; on error the previous configuration stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.listener)?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    /// Where the listener was configured, for log lines.
    pub fn defined_at(&self) -> &Location {
        &self.listener.defined_at
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().clone())
    }

    /// The username the finished handshake gives the connection.
    pub fn cert_username(&self, connection: &ServerConnection) -> CertUsername {
        let l = &self.listener;
        if !l.use_identity_as_username && !l.use_subject_as_username {
            return CertUsername::Unused;
        }
        let subject =
            connection.peer_certificates().and_then(|certs| certs.first()).and_then(|c| Subject::from_certificate(c));
        let name = match subject {
            Some(s) if l.use_subject_as_username => Some(s.rfc2253()),
            Some(s) => s.common_name(),
            None => None,
        };
        name.map_or(CertUsername::Missing, CertUsername::Found)
    }
}

fn server_config(l: &ListenerConfig) -> Result<ServerConfig, TlsError> {
    let at = || l.defined_at.clone();
    let Some(certfile) = &l.certfile else {
        return Err(TlsError::Setting { at: at(), directive: "certfile", why: "missing".into() });
    };
    let Some(keyfile) = &l.keyfile else {
        return Err(TlsError::Setting {
            at: at(),
            directive: "keyfile",
            why: "a TLS listener needs keyfile with certfile".into(),
        });
    };
    let certs = read_certs(l, "certfile", certfile)?;
    let key_pem = read(l, "keyfile", keyfile)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
        at: at(),
        directive: "keyfile",
        path: keyfile.clone(),
        why: format!("no PEM private key: {e}"),
    })?;
    let provider = Arc::new(provider(l)?);
    let versions: &[&'static tokio_rustls::rustls::SupportedProtocolVersion] = match l.tls_version {
        Some(TlsVersion::Tls1_3) => &[&version::TLS13],
        _ => &[&version::TLS13, &version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Setting { at: at(), directive: "tls_version", why: e.to_string() })?;
    let builder = match client_verifier(l, &provider)? {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let certified = mqttd_tls::certified_key(certs, key, &provider).map_err(|e| {
        let (directive, path, why) = match e {
            KeyError::Mismatch => ("keyfile", keyfile, format!("does not match certfile {}", certfile.display())),
            KeyError::Key(why) => ("keyfile", keyfile, why),
            KeyError::Certificate(why) => ("certfile", certfile, why),
        };
        TlsError::Invalid { at: at(), directive, path: path.clone(), why }
    })?;
    Ok(builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified))))
}

/// The verifier of client certificates (`None`: the listener asks for none): webpki's, wrapped to accept
/// v1 certificates, with the CRLs of `crlfile` checked for the client's own certificate, as Mosquitto
/// (OpenSSL's `X509_V_FLAG_CRL_CHECK`) does: a certificate whose issuer has no CRL there is refused.
fn client_verifier(
    l: &ListenerConfig,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    let at = || l.defined_at.clone();
    let Some(roots) = client_roots(l)? else {
        let (directive, why) = match (l.require_certificate, &l.crlfile) {
            (true, _) => ("require_certificate", "needs cafile or capath to verify client certificates"),
            (false, Some(_)) => ("crlfile", "needs cafile or capath: only verified client certificates are checked"),
            (false, None) => return Ok(None),
        };
        return Err(TlsError::Setting { at: at(), directive, why: why.into() });
    };
    let roots = Arc::new(roots);
    let crls = match &l.crlfile {
        Some(path) => read_crls(l, path)?,
        None => Vec::new(),
    };
    let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls.clone())
        .only_check_end_entity_revocation()
        .enforce_revocation_expiration();
    let builder = if l.require_certificate { builder } else { builder.allow_unauthenticated() };
    let setting = |why: String| TlsError::Setting { at: at(), directive: "cafile", why };
    let inner = builder.build().map_err(|e| setting(e.to_string()))?;
    let verifier = ClientVerifier::new(inner, roots, provider.signature_verification_algorithms, &crls)
        .map_err(|e| setting(e.to_string()))?;
    Ok(Some(Arc::new(verifier)))
}

fn read_crls(l: &ListenerConfig, path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let pem = read(l, "crlfile", path)?;
    let invalid =
        |why: String| TlsError::Invalid { at: l.defined_at.clone(), directive: "crlfile", path: path.to_owned(), why };
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM: {e}")))?;
    if crls.is_empty() {
        return Err(invalid("no PEM certificate revocation list (X509 CRL) in the file".into()));
    }
    for crl in &crls {
        mqttd_tls::check_crl(crl).map_err(invalid)?;
    }
    Ok(crls)
}

fn read(l: &ListenerConfig, directive: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        at: l.defined_at.clone(),
        directive,
        path: path.to_owned(),
        source,
    })
}

fn read_certs(
    l: &ListenerConfig,
    directive: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(l, directive, path)?;
    let invalid = |why: String| TlsError::Invalid { at: l.defined_at.clone(), directive, path: path.to_owned(), why };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The CA certificates of `cafile` and every file of `capath` (files without a certificate are skipped,
/// as `c_rehash` directories also hold other files).
fn client_roots(l: &ListenerConfig) -> Result<Option<RootCertStore>, TlsError> {
    if l.cafile.is_none() && l.capath.is_none() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    let mut add = |directive: &'static str, path: &Path, certs: Vec<CertificateDer<'static>>| {
        for cert in certs {
            roots.add(cert).map_err(|e| TlsError::Invalid {
                at: l.defined_at.clone(),
                directive,
                path: path.to_owned(),
                why: format!("not a usable CA certificate: {e}"),
            })?;
        }
        Ok(())
    };
    if let Some(cafile) = &l.cafile {
        add("cafile", cafile, read_certs(l, "cafile", cafile)?)?;
    }
    if let Some(capath) = &l.capath {
        let entries = std::fs::read_dir(capath).map_err(|source| TlsError::Read {
            at: l.defined_at.clone(),
            directive: "capath",
            path: capath.clone(),
            source,
        })?;
        let mut paths: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
        paths.sort();
        for path in paths {
            let pem = read(l, "capath", &path)?;
            let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
            add("capath", &path, certs)?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::Setting {
            at: l.defined_at.clone(),
            directive: "capath",
            why: "cafile/capath hold no CA certificate".into(),
        });
    }
    Ok(Some(roots))
}

/// The OpenSSL name and the rustls suite of every TLS 1.2 suite rustls offers.
fn tls12_suites() -> Vec<(String, SupportedCipherSuite)> {
    ring::ALL_CIPHER_SUITES
        .iter()
        .filter(|s| s.version() == &version::TLS12)
        .map(|s| {
            let iana = format!("{:?}", s.suite());
            let openssl = iana
                .trim_start_matches("TLS_")
                .replace("_WITH_", "_")
                .replace("AES_128", "AES128")
                .replace("AES_256", "AES256")
                .replace('_', "-");
            let openssl = openssl.replace("CHACHA20-POLY1305-SHA256", "CHACHA20-POLY1305");
            (openssl, *s)
        })
        .collect()
}

/// The OpenSSL name (the IANA one, `TLS_AES_128_GCM_SHA256`) and the rustls suite of every TLS 1.3 suite.
fn tls13_suites() -> Vec<(String, SupportedCipherSuite)> {
    ring::ALL_CIPHER_SUITES
        .iter()
        .filter(|s| s.version() == &version::TLS13)
        .map(|s| (format!("{:?}", s.suite()).replacen("TLS13_", "TLS_", 1), *s))
        .collect()
}

/// The ring provider, with the TLS 1.2 suites restricted to `ciphers` (OpenSSL names such as
/// `ECDHE-RSA-AES128-GCM-SHA256`, separated by `:`) and the TLS 1.3 suites to `ciphers_tls1.3`
/// (`TLS_AES_256_GCM_SHA384:...`), each list leaving the other version's suites alone, as in OpenSSL.
fn provider(l: &ListenerConfig) -> Result<CryptoProvider, TlsError> {
    let mut provider = ring::default_provider();
    for (directive, list, version, known) in [
        ("ciphers", &l.ciphers, &version::TLS12, tls12_suites()),
        ("ciphers_tls1.3", &l.ciphers_tls13, &version::TLS13, tls13_suites()),
    ] {
        let Some(list) = list else { continue };
        let chosen = choose_suites(l, directive, list, &known)?;
        provider.cipher_suites.retain(|s| s.version() != version || chosen.contains(s));
    }
    Ok(provider)
}

fn choose_suites(
    l: &ListenerConfig,
    directive: &'static str,
    list: &str,
    known: &[(String, SupportedCipherSuite)],
) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let mut chosen = Vec::new();
    for name in list.split([':', ',', ' ']).filter(|n| !n.is_empty()) {
        let found = known.iter().find(|(openssl, s)| {
            openssl.eq_ignore_ascii_case(name) || format!("{:?}", s.suite()).eq_ignore_ascii_case(name)
        });
        match found {
            Some((_, suite)) => chosen.push(*suite),
            None => {
                let accepted: Vec<&str> = known.iter().map(|(n, _)| n.as_str()).collect();
                return Err(TlsError::Setting {
                    at: l.defined_at.clone(),
                    directive,
                    why: format!(
                        "{name:?} is not a cipher suite this build offers (OpenSSL keywords such as HIGH or !aNULL \
                         are not supported); accepted: {}",
                        accepted.join(":")
                    ),
                });
            }
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls12_suites_have_their_openssl_names() {
        let names: Vec<String> = tls12_suites().into_iter().map(|(n, _)| n).collect();
        for expected in ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"]
        {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
        let names: Vec<String> = tls13_suites().into_iter().map(|(n, _)| n).collect();
        for expected in ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
    }
}
