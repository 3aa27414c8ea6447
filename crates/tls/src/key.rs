//! A certificate chain and its private key as rustls's `CertifiedKey`, for v1 certificates too: rustls's
//! own check (`CertifiedKey::keys_match`) parses the certificate with webpki, which refuses v1, and so
//! reports a v1 certificate as not matching its key.

use std::sync::Arc;

use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::v1::V1Cert;

/// Why a certificate and key cannot be used together.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the private key cannot be used: {0}")]
    Key(String),
    #[error("the certificate cannot be used: {0}")]
    Certificate(String),
    #[error("the private key does not belong to the certificate")]
    Mismatch,
}

/// The chain (end-entity first) with its key, after checking that the key is the certificate's.
pub fn certified_key(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, KeyError> {
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| KeyError::Key(e.to_string()))?;
    let end_entity = certs.first().ok_or_else(|| KeyError::Certificate("no certificate".into()))?;
    let key_spki = signing_key.public_key().ok_or_else(|| KeyError::Key("no public key".into()))?;
    let cert_spki: Vec<u8> = match V1Cert::parse(end_entity) {
        Some(v1) => v1.spki_whole.to_vec(),
        None => {
            let parsed = ParsedCertificate::try_from(end_entity).map_err(|e| KeyError::Certificate(e.to_string()))?;
            parsed.subject_public_key_info().as_ref().to_vec()
        }
    };
    if key_spki.as_ref() != cert_spki.as_slice() {
        return Err(KeyError::Mismatch);
    }
    Ok(Arc::new(CertifiedKey::new(certs, signing_key)))
}
