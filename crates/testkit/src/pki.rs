//! Test certificates, made fresh at test time with rcgen (ECDSA P-256): a CA, a server certificate for
//! `localhost` and 127.0.0.1, client certificates with a chosen common name, and a second, unrelated CA
//! for "wrong CA" tests. Everything is written as PEM files into a directory the test owns.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA, a server certificate signed by it, and the directory of their PEM files.
pub struct Pki {
    pub dir: PathBuf,
    /// CA certificate (PEM): `cafile` for the broker, `--ca` for clients.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate and its key.
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn ca_issuer(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list is valid");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name.push(DnType::OrganizationName, "mqttd tests");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("generates a P-256 key");
    CertifiedIssuer::self_signed(params, key).expect("self-signs the CA")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

impl Pki {
    /// Generates a CA (common name `name`) and a server certificate into `dir`, as `NAME-ca.pem`,
    /// `NAME-server.pem` and `NAME-server.key`.
    pub fn generate(dir: &Path, name: &str) -> Pki {
        let issuer = ca_issuer(&format!("{name} CA"));
        let ca = dir.join(format!("{name}-ca.pem"));
        write(&ca, &issuer.pem());
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("valid SANs");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("generates a P-256 key");
        let cert = params.signed_by(&key, &issuer).expect("signs the server certificate");
        let server_cert = dir.join(format!("{name}-server.pem"));
        let server_key = dir.join(format!("{name}-server.key"));
        write(&server_cert, &cert.pem());
        write(&server_key, &key.serialize_pem());
        Pki { dir: dir.to_owned(), ca, server_cert, server_key, issuer }
    }

    /// A client certificate with common name `cn` (and O=mqttd tests, C=GB), signed by this CA, written
    /// as `client-CN.pem` and `client-CN.key`.
    pub fn client(&self, cn: &str) -> ClientCert {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list is valid");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "GB");
        params.distinguished_name.push(DnType::OrganizationName, "mqttd tests");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("generates a P-256 key");
        let cert = params.signed_by(&key, &self.issuer).expect("signs the client certificate");
        let paths = ClientCert {
            cert: self.dir.join(format!("client-{cn}.pem")),
            key: self.dir.join(format!("client-{cn}.key")),
        };
        write(&paths.cert, &cert.pem());
        write(&paths.key, &key.serialize_pem());
        paths
    }
}
