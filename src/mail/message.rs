//! What the mail module deals in: rendered messages, the two kinds of mail
//! before rendering (with the kinds of alert), and why a send failed.

use tera::Context;

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
    pub alert: &'a Alert,
    pub ip: &'a str,
    pub device: &'a str,
    pub time: &'a str,
}

/// A security alert before rendering: its kind, with what its wording needs.
/// The words live in `templates/email/alerts/<kind>.txt` (first line the
/// title, which is also the subject; after a blank line the details), framed
/// by `email/security_alert.{txt,html}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// E-mailed codes were turned on.
    OtpEnabled,
    /// E-mailed codes were turned off.
    OtpDisabled,
    TotpEnabled,
    TotpRemoved,
    PasskeyAdded {
        passkey: String,
    },
    PasskeyRemoved {
        passkey: String,
    },
    BackupCodesRegenerated,
    /// A backup code signed someone in; `left` remain.
    BackupCodeUsed {
        left: u32,
    },
    /// Changed on the account page.
    PasswordChanged,
    /// Reset with an e-mailed code.
    PasswordReset,
    /// An operator removed the app, passkeys and backup codes.
    FactorsReset,
    /// `failures` failed attempts in the last hour.
    RepeatedFailures {
        failures: usize,
    },
    NewIp,
    /// Locked after `failures` failures, for `minutes`.
    AccountLocked {
        failures: u32,
        minutes: u64,
    },
}

impl Alert {
    /// The template that holds this kind's words.
    pub fn template(&self) -> &'static str {
        match self {
            Alert::OtpEnabled => "email/alerts/otp_enabled.txt",
            Alert::OtpDisabled => "email/alerts/otp_disabled.txt",
            Alert::TotpEnabled => "email/alerts/totp_enabled.txt",
            Alert::TotpRemoved => "email/alerts/totp_removed.txt",
            Alert::PasskeyAdded { .. } => "email/alerts/passkey_added.txt",
            Alert::PasskeyRemoved { .. } => "email/alerts/passkey_removed.txt",
            Alert::BackupCodesRegenerated => "email/alerts/backup_codes_regenerated.txt",
            Alert::BackupCodeUsed { .. } => "email/alerts/backup_code_used.txt",
            Alert::PasswordChanged => "email/alerts/password_changed.txt",
            Alert::PasswordReset => "email/alerts/password_reset.txt",
            Alert::FactorsReset => "email/alerts/factors_reset.txt",
            Alert::RepeatedFailures { .. } => "email/alerts/repeated_failures.txt",
            Alert::NewIp => "email/alerts/new_ip.txt",
            Alert::AccountLocked { .. } => "email/alerts/account_locked.txt",
        }
    }

    /// The values its template names.
    pub(super) fn context(&self) -> Context {
        let mut ctx = Context::new();
        match self {
            Alert::PasskeyAdded { passkey } | Alert::PasskeyRemoved { passkey } => ctx.insert("passkey", passkey),
            Alert::BackupCodeUsed { left } => ctx.insert("left", left),
            Alert::RepeatedFailures { failures } => ctx.insert("failures", failures),
            Alert::AccountLocked { failures, minutes } => {
                ctx.insert("failures", failures);
                ctx.insert("minutes", minutes);
            }
            Alert::OtpEnabled
            | Alert::OtpDisabled
            | Alert::TotpEnabled
            | Alert::TotpRemoved
            | Alert::BackupCodesRegenerated
            | Alert::PasswordChanged
            | Alert::PasswordReset
            | Alert::FactorsReset
            | Alert::NewIp => {}
        }
        ctx
    }
}
