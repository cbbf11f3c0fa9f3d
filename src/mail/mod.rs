//! Outgoing mail: one-time codes and security alerts.
//!
//! This module owns what a message says (rendered from `templates/email/` by
//! [`compose_code_mail`] / [`compose_alert_mail`]) and how it leaves the gateway
//! ([`Mailer`]): SMTP through lettre (pooled; STARTTLS, implicit TLS or plain;
//! optional AUTH; the system's roots or `mail.smtp_ca_file`), the console (printed, for `portcullis demo`) or a file outbox.
//! Every send is bounded by `mail.timeout`, so a stuck mail server turns into a
//! `503` for the user instead of a hung request.

mod compose;
mod console;
mod mask;
mod message;
mod outbox;
mod smtp;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;

use crate::config::{MailConfig, MailTransport};

pub use compose::{compose_alert_mail, compose_code_mail};
pub use mask::mask_email;
pub use message::{Alert, AlertMail, CodeMail, Email, MailError};

/// Sends mail over the configured transport; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    from: Mailbox,
    timeout: Duration,
    transport: Transport,
}

enum Transport {
    Console,
    Outbox(PathBuf),
    // Boxed: the relay (TLS setup, idle connections) is large and the other variants are tiny.
    Smtp(Box<smtp::SmtpRelay>),
}

/// Where the file transport writes when `mail.file_dir` is not set.
const DEFAULT_OUTBOX: &str = "data/outbox";

impl Mailer {
    /// Checks the sender address and prepares the transport. No connection is made
    /// here: an SMTP server that is down at start-up fails sends, not the gateway.
    pub fn new(cfg: &MailConfig) -> Result<Mailer, MailError> {
        let from = compose::parse_from(&cfg.from)?;
        let transport = match cfg.transport {
            MailTransport::Console => Transport::Console,
            MailTransport::File => {
                Transport::Outbox(cfg.file_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_OUTBOX)))
            }
            MailTransport::Smtp => Transport::Smtp(Box::new(smtp::SmtpRelay::new(cfg)?)),
        };
        Ok(Mailer { inner: Arc::new(Inner { from, timeout: cfg.timeout, transport }) })
    }

    /// Sends one message within `mail.timeout`.
    pub async fn send(&self, email: &Email) -> Result<(), MailError> {
        let inner = &self.inner;
        let message = compose::to_message(&inner.from, email)?;
        let delivery = async {
            match &inner.transport {
                Transport::Console => console::print(&inner.from.to_string(), email),
                Transport::Outbox(dir) => outbox::write(dir, &message.formatted())
                    .await
                    .map(|path| tracing::debug!(target: "mail", path = %path.display(), "mail written to outbox")),
                Transport::Smtp(relay) => relay.send(message).await,
            }
        };
        let result = tokio::time::timeout(inner.timeout, delivery).await.unwrap_or(Err(MailError::Timeout));
        match &result {
            Ok(()) => tracing::debug!(
                target: "mail",
                to = %mask_email(&email.to_email),
                transport = self.transport_name(),
                "mail sent"
            ),
            Err(e) => tracing::warn!(
                target: "mail",
                to = %mask_email(&email.to_email),
                transport = self.transport_name(),
                error = %e,
                "mail not sent"
            ),
        }
        result
    }

    /// "console", "file" or "smtp": for logs and the readiness report.
    pub fn transport_name(&self) -> &'static str {
        match self.inner.transport {
            Transport::Console => "console",
            Transport::Outbox(_) => "file",
            Transport::Smtp(_) => "smtp",
        }
    }
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Mailer");
        d.field("from", &self.inner.from.to_string());
        d.field("timeout", &self.inner.timeout);
        match &self.inner.transport {
            Transport::Console => d.field("transport", &"console"),
            Transport::Outbox(dir) => d.field("transport", &format!("file {}", dir.display())),
            Transport::Smtp(relay) => d.field("transport", &format!("smtp {}", relay.describe)),
        };
        d.finish()
    }
}
