//! Outgoing mail: one-time codes and security alerts. Transports: SMTP (lettre,
//! pooled, STARTTLS / implicit TLS / plain, optional auth, with a timeout),
//! console (printed, for development) and a file outbox.
//!
//! API contract (skeleton; bodies are filled in by the mail work).

use crate::config::MailConfig;
use crate::render::Templates;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid address {0:?}")]
    InvalidAddress(String),
    #[error("mail transport failed: {0}")]
    Transport(String),
    #[error("mail transport timed out")]
    Timeout,
    #[error("mail template failed: {0}")]
    Render(String),
}

/// A rendered message ready to send.
#[derive(Debug, Clone)]
pub struct Email {
    pub to_email: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A one-time code e-mail (login or enabling 2FA). Never carries the password.
#[derive(Debug, Clone)]
pub struct CodeMail<'a> {
    pub app_name: &'a str,
    pub to_email: &'a str,
    pub to_name: Option<&'a str>,
    pub username: &'a str,
    pub code: &'a str,
    /// "login" or "enable_otp".
    pub purpose: &'a str,
    pub expires_minutes: u64,
    /// Human-readable UTC time, e.g. "2026-11-24 13:05 UTC".
    pub expires_at: &'a str,
    pub ip: &'a str,
    pub device: &'a str,
    pub time: &'a str,
}

/// A security alert (new IP login, 2FA turned on/off, backup codes regenerated...).
#[derive(Debug, Clone)]
pub struct AlertMail<'a> {
    pub app_name: &'a str,
    pub to_email: &'a str,
    pub to_name: Option<&'a str>,
    pub username: &'a str,
    /// Short title, e.g. "Two-factor authentication was turned off".
    pub title: &'a str,
    pub details: &'a str,
    pub ip: &'a str,
    pub device: &'a str,
    pub time: &'a str,
}

/// Renders the code e-mail from templates/email/.
#[allow(unused_variables)]
pub fn compose_code_mail(t: &Templates, m: &CodeMail<'_>) -> Result<Email, MailError> {
    todo!()
}

/// Renders the alert e-mail from templates/email/.
#[allow(unused_variables)]
pub fn compose_alert_mail(t: &Templates, m: &AlertMail<'_>) -> Result<Email, MailError> {
    todo!()
}

/// Sends mail over the configured transport; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    _private: (),
}

#[allow(unused_variables)]
impl Mailer {
    pub fn new(cfg: &MailConfig) -> Result<Mailer, MailError> {
        todo!()
    }

    /// Sends one message within `mail.timeout`.
    pub async fn send(&self, email: &Email) -> Result<(), MailError> {
        todo!()
    }
}

/// "alice@example.com" → "ali***@example.com" (skeleton).
pub fn mask_email(e: &str) -> String {
    e.to_owned()
}
