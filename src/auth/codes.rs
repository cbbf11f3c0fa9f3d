//! One-time codes and backup codes. Codes come from the OS CSPRNG and are kept
//! only as HMAC-SHA256 hashes keyed with `auth.secret` (and bound to the user and
//! purpose), so a store dump reveals no usable code, and a code for one user or
//! purpose is useless for another. [`Codes`] issues e-mailed codes (rate
//! limited, voided again if the mail fails) and checks them.

use std::sync::Arc;

use hmac::Mac;

use crate::audit::{Audit, SecurityEvent};
use crate::auth::Client;
use crate::auth::error::AuthError;
use crate::auth::notify::Notifier;
use crate::auth::users::User;
use crate::config::OtpConfig;
use crate::ratelimit::{Limiter, RateBucket};
use crate::store::{CodeCheck, CodePurpose, Store, StoreResult};

/// A numeric code of `digits` digits, uniformly drawn.
pub fn generate_code(digits: u32) -> String {
    let bound = 10u64.pow(digits);
    let n = rand::random_range(0..bound);
    format!("{n:0width$}", width = digits as usize)
}

fn keyed(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = crate::keys::keyed(secret);
    for p in parts {
        mac.update(&(p.len() as u32).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The stored form of an e-mailed code.
pub fn code_hash(secret: &[u8], user: &str, purpose: &str, code: &str) -> [u8; 32] {
    keyed(secret, &[b"otp", user.as_bytes(), purpose.as_bytes(), code.trim().as_bytes()])
}

/// Letters and digits without look-alikes (0/O, 1/I/L).
const BACKUP_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// How long an e-mailed password-reset code is valid (`auth::reset`).
pub const RESET_CODE_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Number of backup codes per set, and characters per code.
pub const BACKUP_CODES: usize = 8;
pub const BACKUP_CODE_LEN: usize = 8;

/// A fresh set of backup codes (shown once).
pub fn generate_backup_codes() -> Vec<String> {
    (0..BACKUP_CODES)
        .map(|_| {
            (0..BACKUP_CODE_LEN)
                .map(|_| BACKUP_ALPHABET[rand::random_range(0..BACKUP_ALPHABET.len())] as char)
                .collect()
        })
        .collect()
}

/// Accepts what a person types: any case, spaces and dashes ignored.
pub fn normalize_backup_code(input: &str) -> String {
    input.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

/// The stored form of a backup code: keyed and bound to the user (a per-user salt),
/// unlike a bare SHA-256, which one precomputed table would reverse for every user.
pub fn backup_hash(secret: &[u8], user: &str, code: &str) -> [u8; 32] {
    keyed(secret, &[b"backup", user.as_bytes(), normalize_backup_code(code).as_bytes()])
}

/// Shape check before any store work: exactly `digits` ASCII digits.
pub fn plausible_code(code: &str, digits: u32) -> bool {
    let c = code.trim();
    c.len() == digits as usize && c.bytes().all(|b| b.is_ascii_digit())
}

/// Issues and checks e-mailed codes; cheap to clone.
#[derive(Clone)]
pub struct Codes {
    store: Store,
    notifier: Notifier,
    limiter: Limiter,
    audit: Audit,
    secret: Arc<[u8]>,
    otp: OtpConfig,
}

impl Codes {
    pub fn new(
        store: Store,
        notifier: Notifier,
        limiter: Limiter,
        audit: Audit,
        secret: Arc<[u8]>,
        otp: &OtpConfig,
    ) -> Codes {
        Codes { store, notifier, limiter, audit, secret, otp: otp.clone() }
    }

    /// The `[otp]` settings.
    pub fn settings(&self) -> &OtpConfig {
        &self.otp
    }

    /// Issues a code (voiding the previous one of its purpose) and e-mails it.
    /// A mail failure voids the code again, is audited and counted, and
    /// reports `MailFailed`.
    pub async fn issue(&self, user: &User, purpose: CodePurpose, client: &Client) -> Result<(), AuthError> {
        if let Some(retry_after) = self.limiter.hit(RateBucket::OtpEmails, &client.limit_key).await? {
            self.audit.refused_by(client.as_user(user), RateBucket::OtpEmails, retry_after).await;
            return Err(AuthError::RateLimited { retry_after });
        }
        let code = generate_code(self.otp.digits);
        let hash = code_hash(&self.secret, &user.username, purpose.as_str(), &code);
        let ttl = match purpose {
            CodePurpose::PasswordReset => RESET_CODE_TTL,
            CodePurpose::Login | CodePurpose::EnableOtp => self.otp.ttl,
        };
        self.store.issue_code(&user.username, purpose, &hash, ttl, self.otp.max_attempts).await?;
        if let Err(e) = self.notifier.send_code(user, purpose, &code, ttl, client).await {
            tracing::error!(error = %e, purpose = purpose.as_str(), "code e-mail not sent; code voided");
            crate::metrics::get().mail_failures.inc();
            self.store.void_code(&user.username, purpose).await?;
            let details = format!("{} code not sent: {e}", purpose.as_str());
            self.audit.event(client.as_user(user), SecurityEvent::MailFailed, &details).await;
            return Err(AuthError::MailFailed);
        }
        crate::metrics::debug_check_label(crate::metrics::OTP_PURPOSES, purpose.as_str());
        crate::metrics::get().otp_sent.with_label_values(&[purpose.as_str()]).inc();
        Ok(())
    }

    /// Checks `code` against the user's current code for `purpose`, counting
    /// the attempt. A malformed code still costs an attempt, through a hash
    /// that cannot match.
    pub async fn check(&self, user: &User, purpose: CodePurpose, code: &str) -> StoreResult<CodeCheck> {
        let hash = if plausible_code(code, self.otp.digits) {
            code_hash(&self.secret, &user.username, purpose.as_str(), code)
        } else {
            [0u8; 32]
        };
        self.store.verify_code(&user.username, purpose, &hash).await
    }

    /// A fresh set of backup codes for `user`: the codes (shown once) and
    /// their stored forms.
    pub fn new_backup_codes(&self, user: &User) -> (Vec<String>, Vec<[u8; 32]>) {
        let codes = generate_backup_codes();
        let hashes = codes.iter().map(|c| backup_hash(&self.secret, &user.username, c)).collect();
        (codes, hashes)
    }

    /// The stored form of a backup code as typed, or None when it cannot be one.
    pub fn backup_hash(&self, user: &User, typed: &str) -> Option<[u8; 32]> {
        (normalize_backup_code(typed).len() == BACKUP_CODE_LEN)
            .then(|| backup_hash(&self.secret, &user.username, typed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_configured_digits() {
        for _ in 0..200 {
            let c = generate_code(6);
            assert!(plausible_code(&c, 6), "{c}");
        }
        assert!(!plausible_code("12345", 6));
        assert!(!plausible_code("12345a", 6));
    }

    #[test]
    fn hashes_are_bound_to_secret_user_and_purpose() {
        let h = code_hash(b"k1", "alice", "login", "123456");
        assert_eq!(h, code_hash(b"k1", "alice", "login", "123456"));
        assert_ne!(h, code_hash(b"k2", "alice", "login", "123456"));
        assert_ne!(h, code_hash(b"k1", "bob", "login", "123456"));
        assert_ne!(h, code_hash(b"k1", "alice", "enable_otp", "123456"));
    }

    #[test]
    fn backup_codes_are_eight_distinct_codes_typed_loosely() {
        let codes = generate_backup_codes();
        assert_eq!(codes.len(), 8);
        assert!(codes.iter().all(|c| c.len() == 8));
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 8);
        let c = &codes[0];
        let typed = format!("{}-{} ", c[..4].to_lowercase(), &c[4..]);
        assert_eq!(backup_hash(b"k", "a", c), backup_hash(b"k", "a", &typed));
    }
}
