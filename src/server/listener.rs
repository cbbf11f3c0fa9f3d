//! A bound listener (plain TCP, or TLS with its acceptor), and why one
//! could not start.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot start the worker threads (server.workers): {0}")]
    Workers(std::io::Error),
}

/// A bound listener, ready to serve.
pub struct Listener {
    pub(super) tcp: TcpListener,
    pub(super) tls: Option<TlsAcceptor>,
}

impl Listener {
    pub async fn bind(addr: SocketAddr, tls: Option<TlsAcceptor>) -> Result<Listener, ServerError> {
        let tcp = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Listener { tcp, tls })
    }

    /// A socket bound already (a test binds port 0 and knows the address
    /// before the gateway is built).
    pub fn from_tcp(tcp: TcpListener, tls: Option<TlsAcceptor>) -> Listener {
        Listener { tcp, tls }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}
