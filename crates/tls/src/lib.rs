//! TLS pieces shared by the broker and the `mqtt` client, on rustls.
//!
//! rustls (webpki) refuses X.509 v1 end-entity certificates, which `openssl x509 -req` makes with
//! OpenSSL 3.0 (the mosquitto-tls(7) recipe) and which Mosquitto and its clients accept. The verifiers
//! here leave every v3 certificate to webpki and verify a v1 end-entity certificate themselves: its
//! signature by a trust anchor, its validity period, a CRL where one is given, and (for a server) its
//! name against the common name, as OpenSSL does for a certificate without subjectAltName.
//! Must not: do I/O, or accept anything webpki refuses for a v3 certificate.

mod der;
mod key;
mod subject;
mod v1;
mod verifier;

pub use key::{certified_key, KeyError};
pub use subject::Subject;
pub use verifier::{ClientVerifier, ServerVerifier};

/// Whether `crl` is a CRL webpki can use; the error says why not.
pub fn check_crl(crl: &tokio_rustls::rustls::pki_types::CertificateRevocationListDer<'_>) -> Result<(), String> {
    webpki::OwnedCertRevocationList::from_der(crl.as_ref()).map(|_| ()).map_err(|e| format!("bad CRL: {e}"))
}
