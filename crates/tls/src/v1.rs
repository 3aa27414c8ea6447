//! X.509 v1 end-entity certificates: parsed here, verified against a trust anchor directly (RFC 5280
//! section 6.1 for a path of one certificate: signature, validity, revocation). A v1 certificate has no
//! extensions, so there are no key usages or constraints to check; OpenSSL accepts such a certificate for
//! any purpose, and so does this.

use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::WebPkiSupportedAlgorithms;
use tokio_rustls::rustls::pki_types::{SignatureVerificationAlgorithm, UnixTime};
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use webpki::CertRevocationList;

use crate::der::{element, element_raw, time};

/// A CRL: its DER (for its signature, which webpki checks only on its own paths) and its parsed form.
pub(crate) type Crl = (Vec<u8>, CertRevocationList<'static>);

/// Signed data (a certificate or a CRL): what is signed, with which algorithm, and the signature.
#[derive(Debug)]
pub(crate) struct Signed<'a> {
    /// The whole `tbsCertificate` / `tbsCertList` element, header included: the signed bytes.
    pub signed: &'a [u8],
    /// The content of the `tbs...` SEQUENCE.
    pub tbs: &'a [u8],
    /// The content of `signatureAlgorithm`.
    pub algorithm: &'a [u8],
    /// The signature BIT STRING's bits.
    pub signature: &'a [u8],
}

impl<'a> Signed<'a> {
    pub fn parse(der: &'a [u8]) -> Option<Signed<'a>> {
        let (tag, outer, _) = element(der)?;
        (tag == 0x30).then_some(())?;
        let (tag, tbs, signed, rest) = element_raw(outer)?;
        (tag == 0x30).then_some(())?;
        let (tag, algorithm, rest) = element(rest)?;
        (tag == 0x30).then_some(())?;
        let (tag, bits, _) = element(rest)?;
        (tag == 0x03).then_some(())?;
        let (&unused, signature) = bits.split_first()?;
        (unused == 0).then_some(())?;
        Some(Signed { signed, tbs, algorithm, signature })
    }

    /// Whether `key` (a SubjectPublicKeyInfo's content) made the signature.
    fn verify(&self, spki: &[u8], algs: &WebPkiSupportedAlgorithms) -> Result<(), Error> {
        let (key_alg, key) = public_key(spki).ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let alg = algs
            .all
            .iter()
            .find(|a| a.public_key_alg_id().as_ref() == key_alg && a.signature_alg_id().as_ref() == self.algorithm)
            .ok_or_else(|| {
                Error::InvalidCertificate(CertificateError::UnsupportedSignatureAlgorithmContext {
                    signature_algorithm_id: self.algorithm.to_vec(),
                    supported_algorithms: algs.all.iter().map(|a| a.signature_alg_id()).collect(),
                })
            })?;
        alg.verify_signature(key, self.signed, self.signature)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadSignature))
    }
}

/// The fields of a v1 certificate that verification needs.
#[derive(Debug)]
pub(crate) struct V1Cert<'a> {
    signed: Signed<'a>,
    serial: &'a [u8],
    issuer: &'a [u8],
    not_before: u64,
    not_after: u64,
    /// The SubjectPublicKeyInfo, whole (header included).
    pub spki_whole: &'a [u8],
    spki: &'a [u8],
}

impl<'a> V1Cert<'a> {
    /// The certificate if it is a well-formed v1 certificate (no `version` field); `None` for any other.
    pub fn parse(der: &'a [u8]) -> Option<V1Cert<'a>> {
        let signed = Signed::parse(der)?;
        let (tag, serial, rest) = element(signed.tbs)?;
        // v2 and v3 certificates start with `version [0] EXPLICIT`; v1 ones with the serial number.
        (tag == 0x02).then_some(())?;
        let (_, _, rest) = element(rest)?; // signature AlgorithmIdentifier, repeated inside
        let (tag, issuer, rest) = element(rest)?;
        (tag == 0x30).then_some(())?;
        let (tag, validity, rest) = element(rest)?;
        (tag == 0x30).then_some(())?;
        let (from_tag, from, after) = element(validity)?;
        let (until_tag, until, _) = element(after)?;
        let (tag, _subject, rest) = element(rest)?;
        (tag == 0x30).then_some(())?;
        let (tag, spki, spki_whole, _) = element_raw(rest)?;
        (tag == 0x30).then_some(())?;
        Some(V1Cert {
            serial,
            issuer,
            not_before: time(from_tag, from)?,
            not_after: time(until_tag, until)?,
            spki_whole,
            spki,
            signed,
        })
    }

    /// Verifies the certificate against the trust anchors: issued and signed by one of them, valid at
    /// `now`, and not revoked by a CRL of its issuer (where `crls` is not empty, a CRL of the issuer must be
    /// there, as OpenSSL's `X509_V_FLAG_CRL_CHECK` requires).
    pub fn verify(
        &self,
        roots: &RootCertStore,
        algs: &WebPkiSupportedAlgorithms,
        crls: &[Crl],
        now: UnixTime,
    ) -> Result<(), Error> {
        let now = now.as_secs();
        if now < self.not_before {
            return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
        }
        if now > self.not_after {
            return Err(Error::InvalidCertificate(CertificateError::Expired));
        }
        let mut last = Error::InvalidCertificate(CertificateError::UnknownIssuer);
        for anchor in roots.roots.iter().filter(|a| a.subject.as_ref() == self.issuer) {
            let anchor_key = anchor.subject_public_key_info.as_ref();
            match self.signed.verify(anchor_key, algs) {
                Ok(()) => return self.check_revocation(anchor_key, algs, crls),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn check_revocation(&self, issuer_key: &[u8], algs: &WebPkiSupportedAlgorithms, crls: &[Crl]) -> Result<(), Error> {
        if crls.is_empty() {
            return Ok(());
        }
        let mut found = false;
        for (der, crl) in crls {
            if crl.issuer() != self.issuer {
                continue;
            }
            let signed = Signed::parse(der).ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
            if signed.verify(issuer_key, algs).is_err() {
                continue;
            }
            found = true;
            let revoked =
                crl.find_serial(self.serial).map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
            if revoked.is_some() {
                return Err(Error::InvalidCertificate(CertificateError::Revoked));
            }
        }
        if found {
            Ok(())
        } else {
            Err(Error::InvalidCertificate(CertificateError::UnknownRevocationStatus))
        }
    }

    /// Verifies a TLS handshake signature made with this certificate's key. TLS 1.3 allows only the
    /// scheme's first algorithm (RFC 8446 section 4.2.3 binds the curve to the scheme); TLS 1.2 any that
    /// fits the key.
    pub fn verify_handshake(
        &self,
        message: &[u8],
        dss: &DigitallySignedStruct,
        algs: &WebPkiSupportedAlgorithms,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, Error> {
        let (key_alg, key) = public_key(self.spki).ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let candidates: &[&dyn SignatureVerificationAlgorithm] = algs
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme && (!tls13 || allowed_in_tls13(*scheme)))
            .map(|(_, algs)| if tls13 { &algs[..algs.len().min(1)] } else { *algs })
            .ok_or(Error::PeerMisbehaved(
                tokio_rustls::rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        let alg = candidates
            .iter()
            .find(|a| a.public_key_alg_id().as_ref() == key_alg)
            .ok_or(Error::InvalidCertificate(CertificateError::BadSignature))?;
        alg.verify_signature(key, message, dss.signature())
            .map(|()| HandshakeSignatureValid::assertion())
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadSignature))
    }
}

/// A SubjectPublicKeyInfo's content split into its algorithm's content and the key bits.
fn public_key(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, algorithm, rest) = element(spki)?;
    (tag == 0x30).then_some(())?;
    let (tag, bits, _) = element(rest)?;
    (tag == 0x03).then_some(())?;
    let (&unused, key) = bits.split_first()?;
    (unused == 0).then_some((algorithm, key))
}

/// RFC 8446 section 4.2.3: TLS 1.3 handshakes are not signed with RSASSA-PKCS1-v1_5 or SHA-1.
fn allowed_in_tls13(scheme: SignatureScheme) -> bool {
    !matches!(
        scheme,
        SignatureScheme::RSA_PKCS1_SHA1
            | SignatureScheme::ECDSA_SHA1_Legacy
            | SignatureScheme::RSA_PKCS1_SHA256
            | SignatureScheme::RSA_PKCS1_SHA384
            | SignatureScheme::RSA_PKCS1_SHA512
    )
}
