//! Rate limits and the failure windows behind lockouts, in terms of the
//! store's sliding windows. The [`Limiter`] knows which limit applies to
//! which bucket (`[rate_limit]` and `[lockout]`) and counts every refusal in
//! `portcullis_rate_limited_total{bucket}`; what a refusal means for a login
//! is the login flow's business.

use std::time::Duration;

use crate::config::{LockoutConfig, RateLimitConfig, RateSpec};
use crate::store::{RateDecision, Store, StoreResult};

pub use crate::store::RateBucket;

/// At most one repeated-failures alert per account and hour.
pub const FAILURE_ALERTS: RateSpec = RateSpec::new(1, Duration::from_secs(3600));

/// Applies the configured limits; cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    store: Store,
    rate: RateLimitConfig,
    lockout: LockoutConfig,
    totp_failures: RateSpec,
}

impl Limiter {
    /// `totp_failures`: wrong authenticator-app codes one pending login may
    /// have (`otp.max_attempts` within `session.pending_login_ttl`).
    pub fn new(store: Store, rate: &RateLimitConfig, lockout: &LockoutConfig, totp_failures: RateSpec) -> Limiter {
        Limiter { store, rate: rate.clone(), lockout: lockout.clone(), totp_failures }
    }

    /// The limit of a bucket.
    pub fn spec(&self, bucket: RateBucket) -> RateSpec {
        match bucket {
            RateBucket::Login => self.rate.login,
            RateBucket::Verify => self.rate.verify,
            RateBucket::Resend => self.rate.resend,
            RateBucket::OtpEmails => self.rate.otp_emails_per_ip,
            RateBucket::IpFailures => self.lockout.ip_failures,
            RateBucket::AccountFailures => self.lockout.account_failures,
            RateBucket::SessionFailures => self.lockout.session_failures,
            RateBucket::FailureAlerts => FAILURE_ALERTS,
            RateBucket::TotpFailures => self.totp_failures,
            RateBucket::PasswordReset => self.rate.password_reset,
        }
    }

    /// Counts one more event for `key` if the window allows it. `Some(wait)`:
    /// refused, retry after `wait` (and counted as rate-limited).
    pub async fn hit(&self, bucket: RateBucket, key: &str) -> StoreResult<Option<Duration>> {
        let spec = self.spec(bucket);
        let decision = self.store.rate_hit(bucket, key, spec.limit, spec.window).await?;
        Ok(refused(bucket, decision))
    }

    /// Whether the window is already full, without counting anything.
    pub async fn check(&self, bucket: RateBucket, key: &str) -> StoreResult<Option<Duration>> {
        let spec = self.spec(bucket);
        let decision = self.store.rate_check(bucket, key, spec.limit, spec.window).await?;
        Ok(refused(bucket, decision))
    }

    /// Records an event whatever the limit; returns how many the window holds.
    /// An address whose failures fill its window is noted as banned (for the
    /// operator console's list), for at most the window's length.
    pub async fn record(&self, bucket: RateBucket, key: &str) -> StoreResult<u32> {
        let spec = self.spec(bucket);
        let n = self.store.rate_record(bucket, key, spec.window).await?;
        if bucket == RateBucket::IpFailures && n >= spec.limit {
            self.store.note_ip_ban(key, spec.window).await?;
        }
        Ok(n)
    }
}

fn refused(bucket: RateBucket, d: RateDecision) -> Option<Duration> {
    match d {
        RateDecision::Allowed { .. } => None,
        RateDecision::Limited { retry_after } => {
            count_refusal(bucket.as_str());
            Some(retry_after)
        }
    }
}

/// Counts a refusal under `label` (a bucket, or `resend_cooldown`).
pub fn count_refusal(label: &'static str) {
    crate::metrics::debug_check_label(crate::metrics::RATE_LIMITED, label);
    crate::metrics::get().rate_limited.with_label_values(&[label]).inc();
}
