//! Certificate verifiers that leave v3 certificates to webpki and verify v1 end-entity certificates
//! themselves (see [`crate::v1`]).

use std::net::IpAddr;
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme,
};
use webpki::OwnedCertRevocationList;

use crate::v1::{Crl, V1Cert};
use crate::Subject;

/// Verifies client certificates: webpki's verifier (`inner`, built by the caller with its CRLs and
/// policy) for v3 ones, [`V1Cert::verify`] for v1 end-entity certificates.
#[derive(Debug)]
pub struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
    crls: Vec<Crl>,
}

impl ClientVerifier {
    /// Wraps `inner`, which must verify against the same `roots` and `crls`.
    pub fn new(
        inner: Arc<dyn ClientCertVerifier>,
        roots: Arc<RootCertStore>,
        algs: WebPkiSupportedAlgorithms,
        crls: &[CertificateRevocationListDer<'static>],
    ) -> Result<ClientVerifier, Error> {
        let crls = crls
            .iter()
            .map(|der| {
                let parsed = OwnedCertRevocationList::from_der(der.as_ref())
                    .map_err(|e| Error::General(format!("bad CRL: {e}")))?;
                Ok((der.as_ref().to_vec(), parsed.into()))
            })
            .collect::<Result<Vec<Crl>, Error>>()?;
        Ok(ClientVerifier { inner, roots, algs, crls })
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match V1Cert::parse(end_entity) {
            Some(v1) => v1.verify(&self.roots, &self.algs, &self.crls, now).map(|()| ClientCertVerified::assertion()),
            None => self.inner.verify_client_cert(end_entity, intermediates, now),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        handshake_signature(message, cert, dss, &self.algs, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        handshake_signature(message, cert, dss, &self.algs, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies server certificates: webpki for v3 ones; for a v1 end-entity certificate its issuer,
/// signature and validity (see [`V1Cert::verify`]) and the server name against its common names, as
/// OpenSSL's `X509_check_host` does for a certificate without subjectAltName (Mosquitto's clients check
/// the host this way).
#[derive(Debug)]
pub struct ServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerVerifier {
    /// A verifier trusting `roots`.
    pub fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<tokio_rustls::rustls::crypto::CryptoProvider>,
    ) -> Result<ServerVerifier, Error> {
        let algs = provider.signature_verification_algorithms;
        let inner = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
            .build()
            .map_err(|e| Error::General(e.to_string()))?;
        Ok(ServerVerifier { inner, roots, algs })
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(v1) = V1Cert::parse(end_entity) else {
            return self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        };
        v1.verify(&self.roots, &self.algs, &[], now)?;
        let names = Subject::from_certificate(end_entity).map(|s| s.common_names()).unwrap_or_default();
        if names.iter().any(|cn| name_matches(cn, server_name)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        handshake_signature(message, cert, dss, &self.algs, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        handshake_signature(message, cert, dss, &self.algs, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn handshake_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
    tls13: bool,
) -> Result<HandshakeSignatureValid, Error> {
    match (V1Cert::parse(cert), tls13) {
        (Some(v1), _) => v1.verify_handshake(message, dss, algs, tls13),
        (None, false) => verify_tls12_signature(message, cert, dss, algs),
        (None, true) => verify_tls13_signature(message, cert, dss, algs),
    }
}

/// Whether a common name names the server: a DNS name compared without case, with a leading `*.`
/// standing for exactly one label (never a public suffix's worth: at least two labels must follow); an IP
/// address compared as text, as OpenSSL compares the host string with the CN.
fn name_matches(cn: &str, server_name: &ServerName<'_>) -> bool {
    match server_name {
        ServerName::DnsName(dns) => {
            let host = dns.as_ref().trim_end_matches('.');
            let cn = cn.trim_end_matches('.');
            if cn.eq_ignore_ascii_case(host) {
                return true;
            }
            match (cn.strip_prefix("*."), host.split_once('.')) {
                (Some(suffix), Some((label, rest))) => {
                    !label.is_empty() && suffix.contains('.') && suffix.eq_ignore_ascii_case(rest)
                }
                _ => false,
            }
        }
        ServerName::IpAddress(ip) => cn.parse::<IpAddr>().is_ok_and(|a| a == IpAddr::from(*ip)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(name: &str) -> ServerName<'static> {
        ServerName::try_from(name.to_owned()).expect("valid name")
    }

    #[test]
    fn common_names_match_like_openssl_host_checks() {
        assert!(name_matches("localhost", &dns("LOCALHOST")));
        assert!(name_matches("*.example.com", &dns("mqtt.example.com")));
        assert!(!name_matches("*.example.com", &dns("a.b.example.com")));
        assert!(!name_matches("*.com", &dns("example.com")));
        assert!(!name_matches("other", &dns("localhost")));
        assert!(name_matches("127.0.0.1", &dns("127.0.0.1")));
        assert!(!name_matches("127.0.0.2", &dns("127.0.0.1")));
    }
}
