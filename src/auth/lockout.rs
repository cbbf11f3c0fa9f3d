//! What failures cost: every failed password or code counts against the client
//! IP (which is turned away for a while past `lockout.ip_failures`) and the
//! account (which is locked for `lockout.account_lock` past
//! `lockout.account_failures`, with an audit record and an alert e-mail).

use std::time::Duration;

use crate::audit::{Audit, SecurityEvent};
use crate::auth::Client;
use crate::auth::notify::Notifier;
use crate::auth::users::User;
use crate::ratelimit::{Limiter, RateBucket};
use crate::store::{Store, StoreResult};

/// Counts failures and locks accounts; cheap to clone.
#[derive(Clone)]
pub struct Lockout {
    store: Store,
    limiter: Limiter,
    audit: Audit,
    notifier: Notifier,
    lock_for: Duration,
}

impl Lockout {
    pub fn new(store: Store, limiter: Limiter, audit: Audit, notifier: Notifier, lock_for: Duration) -> Lockout {
        Lockout { store, limiter, audit, notifier, lock_for }
    }

    /// Time left on the account's lock, if it is locked.
    pub async fn account_locked(&self, username: &str) -> StoreResult<Option<Duration>> {
        self.store.account_locked(username).await
    }

    /// Time left before the client IP may try again, if it failed too often.
    pub async fn ip_banned(&self, ip: &str) -> StoreResult<Option<Duration>> {
        self.limiter.check(RateBucket::IpFailures, ip).await
    }

    /// Counts a failed attempt against the client IP and the account (when
    /// known), and locks the account when it crosses the limit.
    pub async fn record_failure(&self, user: Option<&User>, client: &Client) -> StoreResult<()> {
        self.limiter.record(RateBucket::IpFailures, &client.limit_key).await?;
        let Some(user) = user else { return Ok(()) };
        let n = self.limiter.record(RateBucket::AccountFailures, &user.username).await?;
        let limit = self.limiter.spec(RateBucket::AccountFailures).limit;
        if n >= limit && self.store.account_locked(&user.username).await?.is_none() {
            self.store.lock_account(&user.username, self.lock_for).await?;
            crate::metrics::get().lockouts.inc();
            self.audit.event(client.as_user(user), SecurityEvent::AccountLocked, &format!("{n} failed attempts")).await;
            let minutes = self.lock_for.as_secs().div_ceil(60);
            self.notifier
                .alert(
                    user,
                    client,
                    "Your account was temporarily locked",
                    &format!("After {n} failed sign-in attempts, sign-ins are blocked for {minutes} minutes."),
                )
                .await;
        }
        Ok(())
    }
}
