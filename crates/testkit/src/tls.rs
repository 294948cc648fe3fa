//! A private CA made at test time, and certificates it signs for `127.0.0.1` and `localhost`,
//! written as PEM files into a temporary directory (what `--tls-cert`, `--tls-key` and `--ca`
//! read).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};

/// A test CA whose certificate is at [`TestCa::ca_path`].
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    dir: tempfile::TempDir,
    ca_path: PathBuf,
}

/// A certificate and key written by [`TestCa::issue`].
pub struct CertFiles {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM private key.
    pub key: PathBuf,
}

impl TestCa {
    /// Makes a CA (named `name`) and writes its certificate.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, cert.pem()).expect("write CA");
        TestCa {
            issuer: Issuer::new(params, key),
            dir,
            ca_path,
        }
    }

    /// The CA certificate's PEM file.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// Issues a certificate for `127.0.0.1` and `localhost` with `name` as its common name,
    /// written as `<file>.pem` and `<file>.key` (overwriting an earlier pair of that name).
    pub fn issue(&self, file: &str, name: &str) -> CertFiles {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        let files = CertFiles {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }
}
