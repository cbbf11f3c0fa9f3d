//! Audit: every login attempt and security event (SPEC §8) goes to the store
//! (per user and globally, capped) and, as one JSON line, to the `security` log
//! target. Recording never fails a request: a store error is logged instead.

use crate::app::App;
use crate::session::now_unix;
use crate::store::AuditRecord;

/// Results of a login attempt (the seed's `LoginAttempt.result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Success,
    InvalidCredentials,
    InvalidOtp,
    ExpiredOtp,
    RateLimited,
    AccountLocked,
}

impl AttemptResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Success => "success",
            AttemptResult::InvalidCredentials => "invalid_credentials",
            AttemptResult::InvalidOtp => "invalid_otp",
            AttemptResult::ExpiredOtp => "expired_otp",
            AttemptResult::RateLimited => "rate_limited",
            AttemptResult::AccountLocked => "account_locked",
        }
    }
}

/// Security events (the seed's `SecurityEvent.event_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    OtpEnabled,
    OtpDisabled,
    BackupCodesGenerated,
    BackupCodeUsed,
    SuspiciousActivity,
    RateLimitExceeded,
    AccountLocked,
    SessionRevoked,
    /// A one-time code could not be e-mailed (the login answered 503).
    MailFailed,
}

impl SecurityEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityEvent::OtpEnabled => "otp_enabled",
            SecurityEvent::OtpDisabled => "otp_disabled",
            SecurityEvent::BackupCodesGenerated => "backup_codes_generated",
            SecurityEvent::BackupCodeUsed => "backup_code_used",
            SecurityEvent::SuspiciousActivity => "suspicious_activity",
            SecurityEvent::RateLimitExceeded => "rate_limit_exceeded",
            SecurityEvent::AccountLocked => "account_locked",
            SecurityEvent::SessionRevoked => "session_revoked",
            SecurityEvent::MailFailed => "mail_failed",
        }
    }
}

/// Who and where, for both kinds of record.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The name as typed (attempts) or the account (events).
    pub username: &'a str,
    /// The resolved account, when known.
    pub user: Option<&'a str>,
    pub ip: &'a str,
    pub user_agent: &'a str,
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

async fn write(app: &App, kind: &str, event: &str, actor: Actor<'_>, details: &str) {
    let rec = AuditRecord {
        time: now_unix(),
        kind: kind.to_owned(),
        event: event.to_owned(),
        username: truncate(actor.username, 128).to_owned(),
        user: actor.user.map(str::to_owned),
        ip: actor.ip.to_owned(),
        user_agent: truncate(actor.user_agent, 256).to_owned(),
        details: truncate(details, 512).to_owned(),
    };
    tracing::info!(
        target: "security",
        kind,
        event,
        username = %rec.username,
        user = rec.user.as_deref().unwrap_or("-"),
        ip = %rec.ip,
        user_agent = %rec.user_agent,
        details = %rec.details,
    );
    if let Err(e) = app.store.append_audit(&rec).await {
        tracing::warn!(error = %e, "audit record not stored");
    }
}

pub async fn login_attempt(app: &App, actor: Actor<'_>, result: AttemptResult, details: &str) {
    write(app, "login_attempt", result.as_str(), actor, details).await;
}

pub async fn security_event(app: &App, actor: Actor<'_>, event: SecurityEvent, details: &str) {
    write(app, "security_event", event.as_str(), actor, details).await;
}
