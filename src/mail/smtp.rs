//! SMTP delivery through lettre: STARTTLS, implicit TLS or plain, optional AUTH,
//! pooled connections.
//!
//! The lettre transport (and its pool, whose cleanup task needs a Tokio runtime)
//! is built lazily on the first send, so a [`super::Mailer`] can be created before
//! the runtime starts. lettre only bounds the TCP connect; the caller bounds the
//! whole exchange with `mail.timeout`, which is what catches a silent server.

use std::sync::OnceLock;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, Error as SmtpError};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::MailError;
use crate::config::{MailConfig, SmtpTls};

type Transport = AsyncSmtpTransport<Tokio1Executor>;

pub(super) struct SmtpRelay {
    builder: AsyncSmtpTransportBuilder,
    transport: OnceLock<Transport>,
    /// "host:port (starttls)", for logs and Debug.
    pub(super) describe: String,
}

impl SmtpRelay {
    pub(super) fn new(cfg: &MailConfig) -> Result<SmtpRelay, MailError> {
        let host = cfg
            .smtp_host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| MailError::Transport("mail.smtp_host is required for the smtp transport".into()))?;
        let tls_error = |e: SmtpError| MailError::Transport(format!("TLS setup for {host}: {e}"));
        let builder = match cfg.smtp_tls {
            SmtpTls::Starttls => {
                install_crypto_provider();
                Transport::starttls_relay(host).map_err(tls_error)?
            }
            SmtpTls::Tls => {
                install_crypto_provider();
                Transport::relay(host).map_err(tls_error)?
            }
            SmtpTls::None => Transport::builder_dangerous(host),
        };
        let mut builder = builder.port(cfg.smtp_port).timeout(Some(cfg.timeout));
        if let Some(user) = cfg.smtp_username.as_deref().filter(|u| !u.is_empty()) {
            builder = builder.credentials(Credentials::new(user.to_owned(), cfg.smtp_password.expose().to_owned()));
        }
        let mode = match cfg.smtp_tls {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "plain",
        };
        Ok(SmtpRelay { builder, transport: OnceLock::new(), describe: format!("{host}:{} ({mode})", cfg.smtp_port) })
    }

    pub(super) async fn send(&self, message: Message) -> Result<(), MailError> {
        let transport = self.transport.get_or_init(|| self.builder.clone().build());
        match transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_timeout() => Err(MailError::Timeout),
            Err(e) => Err(MailError::Transport(format!("{}: {e}", self.describe))),
        }
    }
}

/// lettre builds its rustls config with the process-wide provider; with ring the
/// only one compiled in, it must be installed before the first TLS setup. A
/// second install (main already did it) is harmless and ignored.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
