//! What the mail module deals in: rendered messages, the two kinds of mail
//! before rendering, and why a send failed.

use crate::store::CodePurpose;

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
    pub purpose: CodePurpose,
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
