//! TLS termination (issue 17 part 2): the node's certificate and key from PEM files, served
//! with rustls on `--listen` (HTTPS, WSS) and `--tcp-listen` (TLS), and reloaded on SIGHUP.
//!
//! Both listeners share one [`TlsFiles`]: its certificate is looked up at every handshake, so
//! a reload serves the new certificate to the next handshake while connections already open
//! keep theirs. A reload that fails (a missing file, a key that does not match) keeps the old
//! certificate and says why.

use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// How long a client has for its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and key files, and what was last loaded from them.
#[derive(Debug)]
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl TlsFiles {
    /// Loads the PEM certificate chain (leaf first) and private key; an error names the file
    /// and what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<TlsFiles>, String> {
        let loaded = load_pair(cert, key)?;
        Ok(Arc::new(TlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(loaded)),
        }))
    }

    /// Reads both files again; new handshakes get the new certificate. On an error the old
    /// one stays.
    pub fn reload(&self) -> Result<(), String> {
        let loaded = load_pair(&self.cert, &self.key)?;
        *self.current.write() = Arc::new(loaded);
        Ok(())
    }

    /// A rustls server configuration that serves whatever was last loaded.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Arc::new(config)
    }

    /// An acceptor for either listener.
    pub fn acceptor(self: &Arc<Self>) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config())
    }
}

impl ResolvesServerCert for TlsFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in the file",
            cert.display()
        ));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| {
        format!(
            "--tls-key {} does not match --tls-cert {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(pair)
}

/// rustls's *ring* provider: what reqwest's rustls uses too, so one crypto library is built,
/// and one that builds without cmake. rustls 0.23.48 deprecates it because it has no
/// post-quantum key exchange (X25519MLKEM768); the aws-lc-rs provider has it.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
