//! Certificates made in the test, for TLS and mutual TLS against a real
//! `nats-server`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A fresh CA, a server certificate for `127.0.0.1`/`localhost` and a
/// client certificate signed by it, as PEM files (readable by any user, so
/// a container's non-root user can read them too).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let pki = telestion_test::Pki::generate(dir.path(), "doc");
/// assert!(std::fs::read_to_string(&pki.ca).unwrap().contains("BEGIN CERTIFICATE"));
/// ```
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (`<name>-ca.crt`).
    pub ca: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// The client certificate (for mutual TLS).
    pub client_cert: PathBuf,
    /// The client's private key.
    pub client_key: PathBuf,
}

impl Pki {
    /// Makes the certificates and writes them to `dir`, each file name
    /// starting with `name` (so several sets can share a directory).
    ///
    /// # Panics
    ///
    /// When a certificate cannot be made or written.
    pub fn generate(dir: &Path, name: &str) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, key).expect("CA certificate");
        let leaf = |sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(sans).expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).expect("certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth);
        let write = |file: &str, text: &str| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join(format!("{name}-{file}"));
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
            path
        };
        Pki {
            ca: write("ca.crt", &ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
        }
    }
}
