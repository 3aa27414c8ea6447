//! TLS listeners (rustls on ring): the server certificate and key, client certificates checked against
//! `cafile`/`capath`, `require_certificate`, `tls_version`, `ciphers`, and the username taken from the
//! client certificate (`use_identity_as_username`, `use_subject_as_username`).
//!
//! Files are read when the listener is made and again on [`TlsListener::reload`] (SIGHUP): a renewed
//! certificate needs no restart, and a broken one keeps the previous configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{version, RootCertStore, ServerConfig, ServerConnection, SupportedCipherSuite};
use tokio_rustls::TlsAcceptor;

use crate::config::{ListenerConfig, Location, TlsVersion};
use crate::x509::Subject;

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
    let roots = client_roots(l)?;
    let builder = match roots {
        None if l.require_certificate => {
            return Err(TlsError::Setting {
                at: at(),
                directive: "require_certificate",
                why: "needs cafile or capath to verify client certificates".into(),
            })
        }
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if l.require_certificate { verifier } else { verifier.allow_unauthenticated() };
            let verifier = verifier.build().map_err(|e| TlsError::Setting {
                at: at(),
                directive: "cafile",
                why: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(certs, key).map_err(|e| TlsError::Invalid {
        at: at(),
        directive: "keyfile",
        path: keyfile.clone(),
        why: format!("does not match certfile {}: {e}", certfile.display()),
    })
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

/// The ring provider, with the TLS 1.2 suites restricted to `ciphers` (OpenSSL names such as
/// `ECDHE-RSA-AES128-GCM-SHA256`, separated by `:`). TLS 1.3 suites are not affected, as in OpenSSL.
fn provider(l: &ListenerConfig) -> Result<CryptoProvider, TlsError> {
    let mut provider = ring::default_provider();
    let Some(list) = &l.ciphers else { return Ok(provider) };
    let known = tls12_suites();
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
                    directive: "ciphers",
                    why: format!(
                        "{name:?} is not a cipher suite this build offers (OpenSSL keywords such as HIGH or !aNULL \
                         are not supported); accepted: {}",
                        accepted.join(":")
                    ),
                });
            }
        }
    }
    provider.cipher_suites.retain(|s| s.version() != &version::TLS12 || chosen.contains(s));
    Ok(provider)
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
    }
}
