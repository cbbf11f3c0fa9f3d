//! The audit trail: every login attempt and security event goes to the store
//! (per user and globally, capped) and, as one JSON line, to the `security`
//! log target. Recording never fails a request: a store error is logged
//! instead, since refusing a login because its audit line could not be kept
//! would let a store hiccup lock everyone out. `docs/audit.md` lists every
//! record: when it is written, its fields, and which ones e-mail the user.

use std::time::Duration;

use crate::clock::Clock;
use crate::store::{AuditKind, AuditRecord, RateBucket, Store};

/// Results of a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Success,
    InvalidCredentials,
    InvalidOtp,
    ExpiredOtp,
    RateLimited,
    AccountLocked,
    /// The right password for an account the users file disables.
    AccountDisabled,
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
            AttemptResult::AccountDisabled => "account_disabled",
        }
    }
}

/// Security events.
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
    /// A code e-mail could not be sent (the code was voided).
    MailFailed,
    /// The user signed out.
    Logout,
    /// An operator lifted an account's lock (`portcullis unlock NAME`).
    AccountUnlocked,
    /// An operator cleared an address's windows (`portcullis unlock --ip`).
    IpUnlocked,
    /// The user confirmed an authenticator app (TOTP).
    TotpEnabled,
    /// The user removed their authenticator app.
    TotpRemoved,
    /// The user added a passkey.
    PasskeyAdded,
    /// The user removed a passkey.
    PasskeyRemoved,
    /// An operator removed the account (`portcullis user remove`): its
    /// sessions ended and its second factors were forgotten.
    AccountRemoved,
    /// The user made an access token.
    TokenCreated,
    /// An access token was revoked (by its user, an operator, or because
    /// its user's credential changed).
    TokenRevoked,
    /// An access token signed a request (at most once a minute per token).
    TokenUsed,
    /// The user changed their password (the current one given again).
    PasswordChanged,
    /// A password-reset code was e-mailed.
    PasswordResetRequested,
    /// The password was reset with an e-mailed code.
    PasswordReset,
    /// An operator removed the user's authenticator app, passkeys and backup codes.
    FactorsReset,
    /// An operator disabled the account (in the users file).
    UserDisabled,
    /// An operator enabled the account again.
    UserEnabled,
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
            SecurityEvent::Logout => "logout",
            SecurityEvent::AccountUnlocked => "account_unlocked",
            SecurityEvent::IpUnlocked => "ip_unlocked",
            SecurityEvent::TotpEnabled => "totp_enabled",
            SecurityEvent::TotpRemoved => "totp_removed",
            SecurityEvent::PasskeyAdded => "passkey_added",
            SecurityEvent::PasskeyRemoved => "passkey_removed",
            SecurityEvent::AccountRemoved => "account_removed",
            SecurityEvent::TokenCreated => "token_created",
            SecurityEvent::TokenRevoked => "token_revoked",
            SecurityEvent::TokenUsed => "token_used",
            SecurityEvent::PasswordChanged => "password_changed",
            SecurityEvent::PasswordResetRequested => "password_reset_requested",
            SecurityEvent::PasswordReset => "password_reset",
            SecurityEvent::FactorsReset => "factors_reset",
            SecurityEvent::UserDisabled => "user_disabled",
            SecurityEvent::UserEnabled => "user_enabled",
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

impl<'a> Actor<'a> {
    /// The gateway itself acting on an account (a users-file reload): no
    /// client address or user agent.
    pub fn system(account: &'a str) -> Actor<'a> {
        Actor { username: account, user: Some(account), ip: "-", user_agent: "" }
    }
}

impl AuditRecord {
    /// True for a login attempt with this result.
    pub fn is_attempt(&self, result: AttemptResult) -> bool {
        self.kind == AuditKind::LoginAttempt && self.event == result.as_str()
    }

    /// True for a failed login attempt.
    pub fn is_failed_attempt(&self) -> bool {
        self.kind == AuditKind::LoginAttempt && self.event != AttemptResult::Success.as_str()
    }
}

/// Writes audit records; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    store: Store,
    clock: Clock,
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

impl Audit {
    pub fn new(store: Store, clock: Clock) -> Audit {
        Audit { store, clock }
    }

    pub async fn attempt(&self, actor: Actor<'_>, result: AttemptResult, details: &str) {
        self.write(AuditKind::LoginAttempt, result.as_str(), actor, None, details).await;
    }

    pub async fn event(&self, actor: Actor<'_>, event: SecurityEvent, details: &str) {
        self.write(AuditKind::SecurityEvent, event.as_str(), actor, None, details).await;
    }

    /// An event an operator caused (`operator`: their account name): `actor`
    /// says where they acted from, and names the account acted on.
    pub async fn operator_event(&self, actor: Actor<'_>, operator: &str, event: SecurityEvent, details: &str) {
        self.write(AuditKind::SecurityEvent, event.as_str(), actor, Some(operator), details).await;
    }

    /// A limit refused a request: `rate_limit_exceeded`, naming the bucket
    /// first ("login: retry in 300 s").
    pub async fn refused(&self, actor: Actor<'_>, bucket: &str, retry_after: Duration) {
        let details = format!("{bucket}: retry in {} s", retry_after.as_secs_f64().ceil());
        self.event(actor, SecurityEvent::RateLimitExceeded, &details).await;
    }

    /// As [`Audit::refused`] for a store bucket.
    pub async fn refused_by(&self, actor: Actor<'_>, bucket: RateBucket, retry_after: Duration) {
        self.refused(actor, bucket.as_str(), retry_after).await;
    }

    async fn write(&self, kind: AuditKind, event: &str, actor: Actor<'_>, operator: Option<&str>, details: &str) {
        let rec = AuditRecord {
            time: self.clock.now_unix(),
            kind,
            event: event.to_owned(),
            username: truncate(actor.username, 128).to_owned(),
            user: actor.user.map(str::to_owned),
            ip: actor.ip.to_owned(),
            user_agent: truncate(actor.user_agent, 256).to_owned(),
            details: truncate(details, 512).to_owned(),
            actor: operator.map(|o| truncate(o, 128).to_owned()),
        };
        tracing::info!(
            target: "security",
            kind = kind.as_str(),
            event,
            username = %rec.username,
            user = rec.user.as_deref().unwrap_or("-"),
            ip = %rec.ip,
            user_agent = %rec.user_agent,
            details = %rec.details,
            actor = rec.actor.as_deref().unwrap_or("-"),
        );
        if let Err(e) = self.store.append_audit(&rec).await {
            tracing::warn!(error = %e, "audit record not stored");
        }
    }
}

/// A time as an operator types it: unix seconds, a date (`2026-12-06`: its
/// first second, or with `end_of_day` its last), a UTC date and time
/// (`2026-12-06T17:05`, seconds optional, `T` or a space), or RFC 3339.
pub fn parse_time(s: &str, end_of_day: bool) -> Option<u64> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let unix = |t: time::OffsetDateTime| u64::try_from(t.unix_timestamp()).ok();
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return unix(t);
    }
    if let Ok(d) = time::Date::parse(s, format_description!("[year]-[month]-[day]")) {
        let start = unix(d.midnight().assume_utc())?;
        return Some(if end_of_day { start + 86_399 } else { start });
    }
    [
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    ]
    .into_iter()
    .find_map(|fmt| time::PrimitiveDateTime::parse(s, fmt).ok())
    .and_then(|t| unix(t.assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_read_as_dates_date_times_or_unix_seconds() {
        let day = 1_796_515_200; // 2026-12-06T00:00:00Z
        assert_eq!(parse_time("1765040700", false), Some(1_765_040_700));
        assert_eq!(parse_time("2026-12-06", false), Some(day));
        assert_eq!(parse_time("2026-12-06", true), Some(day + 86_399));
        assert_eq!(parse_time("2026-12-06T17:05", false), Some(day + 17 * 3600 + 300));
        assert_eq!(parse_time("2026-12-06 17:05:09", false), Some(day + 17 * 3600 + 309));
        assert_eq!(parse_time("2026-12-06T18:05:00+01:00", false), Some(day + 17 * 3600 + 300));
        assert_eq!(parse_time("yesterday", false), None);
        assert_eq!(parse_time("2026-13-01", false), None);
    }
}
