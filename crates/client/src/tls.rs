//! The TLS transport (rustls on ring): server verification against `--ca` or the system's CA store, or
//! none with `--insecure`; a client certificate with `--cert` and `--key`. X.509 v1 certificates (what
//! `openssl x509 -req` makes with OpenSSL 3.0, as the mosquitto-tls recipe does) work on both sides, as
//! with mosquitto_pub (`mqttd_tls`).

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::sign::SingleCertAndKey;
use tokio_rustls::rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, Error as RustlsError, RootCertStore,
    SignatureScheme,
};
use tokio_rustls::TlsConnector;

use mqttd_tls::{KeyError, ServerVerifier};

use crate::error::{Error, Result};
use crate::transport::TlsOptions;

/// Runs the TLS handshake with `host` over `stream`.
pub async fn connect<S>(stream: S, host: &str, port: u16, options: &TlsOptions) -> Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = client_config(options)?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| Error::TlsConfig(format!("{host:?} is not a valid TLS server name: {e}")))?;
    TlsConnector::from(Arc::new(config)).connect(name, stream).await.map_err(|e| handshake_error(host, port, e))
}

/// With TLS 1.3 the client's side of the handshake is over before the broker checks the client
/// certificate, so its refusal (an alert) arrives on the first read: reported as the TLS error it is.
pub(crate) fn refused_after_handshake(e: Error, host: &str, port: u16) -> Error {
    match e {
        Error::Io { source, .. }
            if source.get_ref().and_then(|inner| inner.downcast_ref::<RustlsError>()).is_some() =>
        {
            handshake_error(host, port, source)
        }
        other => other,
    }
}

/// The error of a failed handshake: which name, and why verification failed, with what to try.
fn handshake_error(host: &str, port: u16, e: std::io::Error) -> Error {
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<RustlsError>()) else {
        let why = format!("{e} (is port {port} a TLS port?)");
        return Error::Tls { host: host.to_owned(), port, why };
    };
    let why = match tls {
        RustlsError::InvalidCertificate(cert) => {
            let hint = match cert {
                CertificateError::UnknownIssuer => {
                    "; give the CA that signed it with --ca, or skip verification with --insecure"
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "; connect with a name the certificate lists, or skip verification with --insecure"
                }
                _ => "",
            };
            format!("the server certificate for {host:?} is not accepted: {tls}{hint}")
        }
        RustlsError::AlertReceived(alert) => match alert {
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied => format!(
                "the broker refused our client certificate (alert {alert:?}); check that --cert is signed by a CA \
                 the broker trusts, is not expired or revoked"
            ),
            AlertDescription::CertificateRequired => {
                "the broker requires a client certificate; give one with --cert and --key".to_owned()
            }
            _ => tls.to_string(),
        },
        other => other.to_string(),
    };
    Error::Tls { host: host.to_owned(), port, why }
}

fn client_config(options: &TlsOptions) -> Result<ClientConfig> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone());
    let builder = if options.tls13_only {
        builder.with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])
    } else {
        builder.with_safe_default_protocol_versions()
    };
    let builder = builder.map_err(|e| Error::TlsConfig(e.to_string()))?;
    let builder = if options.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider.clone())))
    } else {
        let roots = Arc::new(roots(options.ca_file.as_deref(), options.ca_path.as_deref())?);
        let verifier = ServerVerifier::new(roots, provider.clone()).map_err(|e| Error::TlsConfig(e.to_string()))?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
    };
    let mut config = with_client_auth(builder, options, &provider)?;
    config.alpn_protocols.clone_from(&options.alpn);
    Ok(config)
}

fn with_client_auth(
    builder: tokio_rustls::rustls::ConfigBuilder<ClientConfig, tokio_rustls::rustls::client::WantsClientCert>,
    options: &TlsOptions,
    provider: &Arc<tokio_rustls::rustls::crypto::CryptoProvider>,
) -> Result<ClientConfig> {
    match (&options.cert_file, &options.key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let certs = read_certs("--cert", cert)?;
            let pem = read("--key", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| Error::TlsFile {
                what: "--key",
                path: key.clone(),
                why: format!("no PEM private key: {e}"),
            })?;
            let certified = mqttd_tls::certified_key(certs, key_der, provider).map_err(|e| match e {
                KeyError::Mismatch => Error::TlsFile {
                    what: "--key",
                    path: key.clone(),
                    why: format!("is not the key of the certificate in --cert {}", cert.display()),
                },
                KeyError::Key(why) => Error::TlsFile { what: "--key", path: key.clone(), why },
                KeyError::Certificate(why) => Error::TlsFile { what: "--cert", path: cert.clone(), why },
            })?;
            Ok(builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified))))
        }
        (Some(_), None) => Err(Error::TlsConfig("--cert needs --key".into())),
        (None, Some(_)) => Err(Error::TlsConfig("--key needs --cert".into())),
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::TlsFile { what, path: path.to_owned(), why: e.to_string() })
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::TlsFile { what, path: path.to_owned(), why: format!("bad PEM: {e}") })?;
    if certs.is_empty() {
        return Err(Error::TlsFile { what, path: path.to_owned(), why: "no PEM certificate in the file".into() });
    }
    Ok(certs)
}

/// The CAs of `--ca` and of a CA directory, or the system's store when neither is given.
fn roots(ca_file: Option<&Path>, ca_path: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let mut files: Vec<std::path::PathBuf> = ca_file.map(Path::to_owned).into_iter().collect();
    if let Some(dir) = ca_path {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::TlsFile {
            what: "CA directory",
            path: dir.to_owned(),
            why: e.to_string(),
        })?;
        let mut found: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt" || x == "pem"))
            .collect();
        found.sort();
        files.extend(found);
    }
    match files.is_empty() {
        false => {
            for path in &files {
                for cert in read_certs("--ca", path)? {
                    roots.add(cert).map_err(|e| Error::TlsFile {
                        what: "--ca",
                        path: path.clone(),
                        why: format!("not a usable CA certificate: {e}"),
                    })?;
                }
            }
        }
        true => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(Error::TlsConfig("no CA certificates found on this system; give one with --ca".into()));
            }
        }
    }
    Ok(roots)
}

/// `--insecure`: any server certificate is accepted (handshake signatures are still checked, so the
/// connection is encrypted, but not authenticated).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, RustlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, RustlsError> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, RustlsError> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
