//! SMTP delivery: lettre speaks the protocol over sockets this module opens.
//!
//! Why we own the socket: lettre writes a message's body and its closing
//! `\r\n.\r\n` as two small writes, and the sockets its transport opens keep
//! Nagle's algorithm on, so the second write waits for the server's delayed ACK:
//! about 40 ms per message against a Linux server (42-46 ms against the test
//! sink; api/send-login-otp in bench/login_rtt.sh went from p50 62-65 ms to 17-20 ms
//! with this module). lettre's transport does not expose its sockets, so here we
//! connect (each resolved address in turn), set TCP_NODELAY and hand the stream
//! to lettre's `AsyncSmtpConnection`, which does the greeting, EHLO, STARTTLS,
//! AUTH and the message. Implicit TLS is wrapped here, before lettre reads the
//! greeting. Which certificates either TLS mode trusts is decided in
//! [`super::tls`] (the system roots, or `mail.smtp_ca_file` instead).
//!
//! A few idle connections are kept for the next message, checked with NOOP
//! before reuse and closed after a minute, as lettre's pool did. Nothing here
//! needs a Tokio runtime before the first send, so a [`super::Mailer`] can be
//! built before the runtime starts. Each TCP connect is bounded by
//! `mail.timeout`; the caller bounds the whole exchange with it too, which is
//! what catches a silent server. A send cut short drops its connection.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lettre::Message;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::message::MailError;
use super::tls::{TlsSocket, Trust};
use crate::config::{MailConfig, SmtpTls};

/// Idle connections kept for the next message; more are closed after their send.
const MAX_IDLE: usize = 4;
/// An idle connection older than this is closed, not reused (lettre's pool default).
const MAX_IDLE_AGE: Duration = Duration::from_secs(60);

pub(super) struct SmtpRelay {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    /// The EHLO name: this machine's host name, as lettre's transport sent.
    hello: ClientId,
    timeout: Duration,
    idle: Mutex<Vec<Idle>>,
    /// "host:port (starttls)", for logs and Debug; says when the CA file is the trust.
    pub(super) describe: String,
}

enum Security {
    /// STARTTLS after the first EHLO, required: a server that does not offer it
    /// gets neither the credentials nor the message.
    StartTls(TlsParameters),
    /// TLS from the first byte (SMTPS), verified against the same roots.
    Implicit(TlsConnector),
    Plain,
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

impl SmtpRelay {
    pub(super) fn new(cfg: &MailConfig) -> Result<SmtpRelay, MailError> {
        let host = cfg
            .smtp_host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| MailError::Transport("mail.smtp_host is required for the smtp transport".into()))?;
        let security = match cfg.smtp_tls {
            SmtpTls::Starttls => Security::StartTls(Trust::of(cfg.smtp_ca_file.as_ref())?.starttls(host)?),
            SmtpTls::Tls => Security::Implicit(Trust::of(cfg.smtp_ca_file.as_ref())?.implicit(host)?),
            SmtpTls::None => Security::Plain,
        };
        let credentials = cfg
            .smtp_username
            .as_deref()
            .filter(|u| !u.is_empty())
            .map(|user| Credentials::new(user.to_owned(), cfg.smtp_password.expose().to_owned()));
        let mode = match (cfg.smtp_tls, &cfg.smtp_ca_file) {
            (SmtpTls::Starttls, None) => "starttls",
            (SmtpTls::Starttls, Some(_)) => "starttls, trusting mail.smtp_ca_file",
            (SmtpTls::Tls, None) => "tls",
            (SmtpTls::Tls, Some(_)) => "tls, trusting mail.smtp_ca_file",
            (SmtpTls::None, _) => "plain",
        };
        Ok(SmtpRelay {
            host: host.to_owned(),
            port: cfg.smtp_port,
            security,
            credentials,
            hello: ClientId::default(),
            timeout: cfg.timeout,
            idle: Mutex::new(Vec::new()),
            describe: format!("{host}:{} ({mode})", cfg.smtp_port),
        })
    }

    pub(super) async fn send(&self, message: Message) -> Result<(), MailError> {
        let mut conn = self.checkout().await?;
        let result = conn.send(message.envelope(), &message.formatted()).await;
        // lettre marks a connection broken (and says QUIT) when a command fails;
        // one that refused the message before any command is still good.
        if !conn.has_broken() {
            self.park(conn);
        }
        result.map(drop).map_err(|e| self.error(e))
    }

    /// The most recently used idle connection that still answers NOOP, or a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, MailError> {
        loop {
            // Its own statement, so the lock is released before the NOOP round trip.
            let Some(Idle { mut conn, since }) = self.idle().pop() else {
                return self.connect().await;
            };
            if since.elapsed() < MAX_IDLE_AGE && conn.test_connected().await {
                return Ok(conn);
            }
            // Dropped here: the server closed it, or it sat idle too long.
        }
    }

    fn park(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle();
        idle.retain(|i| i.since.elapsed() < MAX_IDLE_AGE);
        if idle.len() < MAX_IDLE {
            // How long a pooled connection has idled, in real time.
            #[allow(clippy::disallowed_methods)]
            idle.push(Idle { conn, since: Instant::now() });
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Greeting, EHLO, then STARTTLS and AUTH as configured: what lettre's
    /// transport did, over our socket.
    async fn connect(&self) -> Result<AsyncSmtpConnection, MailError> {
        let tcp = self.open_socket().await?;
        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::Implicit(tls) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|_| self.transport_error(format!("{:?} is not a valid TLS server name", self.host)))?;
                let tls = tls.connect(name, tcp).await.map_err(|e| self.transport_error(format!("TLS: {e}")))?;
                Box::new(TlsSocket(tls))
            }
            Security::StartTls(_) | Security::Plain => Box::new(tcp),
        };
        let mut conn =
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await.map_err(|e| self.error(e))?;
        if let Security::StartTls(parameters) = &self.security {
            conn.starttls(parameters.clone(), &self.hello).await.map_err(|e| self.error(e))?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials).await.map_err(|e| self.error(e))?;
        }
        Ok(conn)
    }

    /// A TCP connection to the first address that answers, with TCP_NODELAY on.
    async fn open_socket(&self) -> Result<TcpStream, MailError> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| self.transport_error(format!("resolving: {e}")))?;
        let mut last = self.transport_error("the host name resolves to no address".into());
        for addr in addrs {
            match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::warn!(target: "mail", error = %e, "TCP_NODELAY not set: sends will wait on delayed ACKs");
                    }
                    return Ok(tcp);
                }
                Ok(Err(e)) => last = self.transport_error(format!("connecting to {addr}: {e}")),
                Err(_) => last = MailError::Timeout,
            }
        }
        Err(last)
    }

    fn error(&self, e: SmtpError) -> MailError {
        if e.is_timeout() { MailError::Timeout } else { self.transport_error(e.to_string()) }
    }

    fn transport_error(&self, what: String) -> MailError {
        MailError::Transport(format!("{}: {what}", self.describe))
    }
}
