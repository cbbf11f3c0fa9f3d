//! TLS for the SMTP client: which certificates it trusts, for STARTTLS
//! (handed to lettre) and implicit TLS (done here with tokio-rustls), and the
//! stream wrapper lettre needs for the latter.
//!
//! Trust is the system's roots, or, when `mail.smtp_ca_file` is set, exactly
//! the certificates in that file *instead of* the system roots. The relay
//! receives the SMTP password and every one-time code, so an operator who names
//! the CA that signs it should not also be trusting every public CA (or a
//! corporate interception root in the system store) to vouch for a stand-in.
//! Postfix decides the same way (`smtp_tls_CAfile` without
//! `tls_append_default_CA`). To trust both, put the system bundle in the file
//! too. Both modes get the same root set, so switching `smtp_tls` never changes
//! what is trusted.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_rustls::ConfigBuilderExt as _;
use lettre::transport::smtp::client::{AsyncTokioStream, Certificate, CertificateStore, TlsParameters};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::message::MailError;
use crate::config::CaFile;

/// What the mailer trusts, read once when it is built.
pub(super) enum Trust {
    /// The system's roots (rustls-native-certs, via lettre and hyper-rustls).
    System,
    /// Only these: `mail.smtp_ca_file`.
    CaFile(Vec<CertificateDer<'static>>),
}

impl Trust {
    /// The system's roots, or exactly the CA file's certificates (read when
    /// the config was validated). A CA file named but never read would trust
    /// nothing at all, so it is refused here rather than failing every send.
    pub(super) fn of(ca_file: Option<&CaFile>) -> Result<Trust, MailError> {
        match ca_file {
            None => Ok(Trust::System),
            Some(ca) if ca.certs().is_empty() => Err(MailError::Transport(format!(
                "mail.smtp_ca_file: {}: no certificate was read from it",
                ca.path.display()
            ))),
            Some(ca) => Ok(Trust::CaFile(ca.certs().to_vec())),
        }
    }

    /// lettre's parameters for the STARTTLS upgrade, verifying `host`.
    pub(super) fn starttls(&self, host: &str) -> Result<TlsParameters, MailError> {
        install_crypto_provider();
        let setup = |e: lettre::transport::smtp::Error| MailError::Transport(format!("TLS setup for {host}: {e}"));
        let mut builder = TlsParameters::builder(host.to_owned());
        if let Trust::CaFile(certs) = self {
            builder = builder.certificate_store(CertificateStore::None);
            for cert in certs {
                builder = builder.add_root_certificate(Certificate::from_der(cert.to_vec()).map_err(setup)?);
            }
        }
        builder.build().map_err(setup)
    }

    /// The connector for implicit TLS. With the system's roots it loads them as
    /// lettre does for STARTTLS (hyper-rustls's loader runs the same
    /// rustls-native-certs lookup); with none found every handshake fails, as it
    /// would in lettre.
    pub(super) fn implicit(&self, host: &str) -> Result<TlsConnector, MailError> {
        let builder = || {
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .map_err(|e| MailError::Transport(format!("TLS setup for {host}: {e}")))
        };
        let config = match self {
            Trust::CaFile(certs) => {
                let mut roots = RootCertStore::empty();
                for cert in certs {
                    // Checked by read_ca_file; a failure here would be a bug, not a config.
                    roots.add(cert.clone()).map_err(|e| MailError::Transport(format!("mail.smtp_ca_file: {e}")))?;
                }
                builder()?.with_root_certificates(roots)
            }
            Trust::System => match builder()?.with_native_roots() {
                Ok(config) => config,
                Err(e) => {
                    tracing::warn!(target: "mail", error = %e, "no system root certificates: implicit-TLS mail will fail");
                    builder()?.with_root_certificates(RootCertStore::empty())
                }
            },
        };
        Ok(TlsConnector::from(Arc::new(config.with_no_client_auth())))
    }
}

/// lettre builds its STARTTLS rustls config with the process-wide provider; with
/// ring the only one compiled in, install it before that. A second install
/// (main already did it) is harmless and ignored.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// lettre takes any stream that can name its peer; tokio-rustls's client stream
/// needs this wrapper to say so.
#[derive(Debug)]
pub(super) struct TlsSocket(pub(super) TlsStream<TcpStream>);

impl AsyncTokioStream for TlsSocket {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for TlsSocket {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsSocket {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
