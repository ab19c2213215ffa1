//! TLS for the listeners (`--tls-cert`, `--tls-key`): loads a PEM certificate
//! chain and private key into a rustls configuration (ring provider) for the
//! REST and gRPC acceptors (the servers run the handshakes). Nothing here
//! reads secrets beyond the key file the operator points at; the key bytes
//! are dropped after parsing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// How long a client (REST or gRPC) may take to complete its TLS handshake;
/// a stalled handshake must not hold a connection slot forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes ring the process-wide rustls provider (once; later calls are no-ops).
/// The HTTP client (reqwest) is built without a provider of its own, so every
/// program that builds one calls this first: the CLI, the bench, the tests.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificate and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM block.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

impl TlsFiles {
    /// A rustls acceptor for the REST listener (ALPN h2 and http/1.1).
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        self.acceptor_for(&[b"h2", b"http/1.1"])
    }

    /// A rustls acceptor for the gRPC listener (ALPN h2 only, as tonic's).
    pub fn grpc_acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        self.acceptor_for(&[b"h2"])
    }

    fn acceptor_for(&self, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| file_error(&self.cert, e))?;
        if certs.is_empty() {
            return Err(file_error(&self.cert, "no certificate found"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_error(&self.key, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The client address of a REST connection, over plain TCP or TLS: what
/// `ConnectInfo` hands the REST adapter (for the audit log). The server
/// inserts it itself; the `Connected` impl is for `axum::serve` (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for RemoteAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}
