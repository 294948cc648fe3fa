//! What the client connects with: an HTTP client (dispatch, long-polling) and a TLS
//! configuration (`wss://`, `tls://`), both trusting the public web PKI and, if the
//! configuration names one, a private CA ([`ClientConfig::ca`](crate::ClientConfig::ca)).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream to a node, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The HTTP client and the TLS configuration, built once per [`crate::Client`].
#[derive(Clone)]
pub(crate) struct Net {
    pub http: reqwest::Client,
    pub tls: Arc<rustls::ClientConfig>,
}

impl Net {
    /// Trusts the public roots and the certificates of the PEM file `ca`.
    pub fn new(ca: Option<&Path>) -> Result<Net, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut http = reqwest::Client::builder();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| format!("ca {}: {e}", ca.display()))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("ca {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("ca {}: no certificate in the file", ca.display()));
            }
            for c in certs {
                let for_http = reqwest::Certificate::from_der(&c).map_err(|e| e.to_string())?;
                http = http.add_root_certificate(for_http);
                roots
                    .add(c)
                    .map_err(|e| format!("ca {}: {e}", ca.display()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Net {
            http: http.build().map_err(|e| e.to_string())?,
            tls: Arc::new(tls),
        })
    }

    /// Opens a TCP connection to `host:port`, with TLS (verifying `host`) when `tls` is true.
    pub async fn open(&self, host_port: &str, tls: bool) -> Result<Box<dyn Io>, String> {
        let stream = TcpStream::connect(host_port)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        if !tls {
            return Ok(Box::new(stream));
        }
        let host = host_of(host_port);
        let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let stream = connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        Ok(Box::new(stream))
    }
}

/// The host of `host:port` (`[::1]:7700` gives `::1`).
fn host_of(host_port: &str) -> &str {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// rustls's *ring* provider, the one reqwest's rustls uses (see the gateway's `tls` module).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
