//! What failures cost: every failed password or code counts against the client
//! IP (which is turned away for a while past `lockout.ip_failures`) and the
//! account (which is locked for `lockout.account_lock` past
//! `lockout.account_failures`, with an audit record and an alert e-mail).
//!
//! A failed login also counts against the name as typed, whether or not an
//! account has it, under a keyed hash of the name (bounded memory: the
//! windows expire, and each client IP gets only a few failures before its
//! ban). A name that matches nobody is therefore locked exactly like one that
//! does, and the answers (status, message, `Retry-After`) cannot tell an
//! attacker which names exist. The store round trips a known account adds run
//! beside the name's, not after them, and its e-mails go out in the
//! background, so the two take the same time too.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;

use crate::audit::{Audit, SecurityEvent};
use crate::auth::Client;
use crate::auth::notify::Notifier;
use crate::auth::suspicious::SuspiciousActivity;
use crate::auth::users::User;
use crate::config::RateSpec;
use crate::mail::Alert;
use crate::ratelimit::{Limiter, RateBucket};
use crate::store::{Admission, Attempt, AttemptLimits, Store, StoreResult};

/// The key a typed name's failures and lock are kept under. `~` cannot start
/// a user name, so it never meets an account's own key. Names are compared
/// as the login form finds accounts: exactly, except that anything with an
/// `@` may be an e-mail address and is compared without case (so the
/// variants that reach one account share one count, for unknown names too).
pub fn name_key(secret: &[u8], typed: &str) -> String {
    let typed = typed.trim();
    let normal = if typed.contains('@') { typed.to_ascii_lowercase() } else { typed.to_owned() };
    let mut mac = crate::keys::keyed(secret);
    mac.update(b"lockout-name\0");
    mac.update(normal.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("~{}", URL_SAFE_NO_PAD.encode(&digest[..16]))
}

/// Counts failures and locks accounts; cheap to clone.
#[derive(Clone)]
pub struct Lockout {
    store: Store,
    limiter: Limiter,
    audit: Audit,
    notifier: Notifier,
    suspicious: SuspiciousActivity,
    lock_for: Duration,
    secret: Arc<[u8]>,
}

/// Who is to be told about a lock.
enum Owner<'a> {
    /// An account: audited, counted and e-mailed.
    Account(&'a Arc<User>),
    /// A typed name that matches no account: audited and counted.
    Name(&'a str),
    /// The typed name of an existing account: its account is told instead.
    Silent,
}

impl Lockout {
    pub fn new(
        store: Store,
        limiter: Limiter,
        audit: Audit,
        notifier: Notifier,
        suspicious: SuspiciousActivity,
        lock_for: Duration,
        secret: Arc<[u8]>,
    ) -> Lockout {
        Lockout { store, limiter, audit, notifier, suspicious, lock_for, secret }
    }

    /// The key a typed name's failures are kept under.
    pub fn name_key(&self, typed: &str) -> String {
        name_key(&self.secret, typed)
    }

    /// Time left on the account's lock, if it is locked.
    pub async fn account_locked(&self, username: &str) -> StoreResult<Option<Duration>> {
        self.store.account_locked(username).await
    }

    /// Time left on the lock a login as `typed` meets: the typed name's, or
    /// the account's when the name finds one.
    pub async fn login_locked(&self, typed: &str, user: Option<&User>) -> StoreResult<Option<Duration>> {
        let name = self.name_key(typed);
        let account = async {
            match user {
                Some(u) => self.store.account_locked(&u.username).await,
                None => Ok(None),
            }
        };
        let (by_name, by_account) = tokio::try_join!(self.store.account_locked(&name), account)?;
        Ok(by_name.max(by_account))
    }

    /// Time left before the client IP may try again, if it failed too often.
    pub async fn ip_banned(&self, ip: &str) -> StoreResult<Option<Duration>> {
        self.limiter.check(RateBucket::IpFailures, ip).await
    }

    /// Counts a failed password on the login form against the client IP, the
    /// typed name and the account (when it exists).
    pub async fn record_login_failure(
        &self,
        typed: &str,
        user: Option<&Arc<User>>,
        client: &Client,
    ) -> StoreResult<()> {
        let name = self.name_key(typed);
        let owner = if user.is_some() { Owner::Silent } else { Owner::Name(typed) };
        let account = async {
            match user {
                Some(u) => self.count(&u.username, Owner::Account(u), client).await.map(Some),
                None => Ok(None),
            }
        };
        tokio::try_join!(
            self.limiter.record(RateBucket::IpFailures, &client.limit_key),
            self.count(&name, owner, client),
            account
        )?;
        Ok(())
    }

    /// Counts a failed attempt of a known account (a code, a backup code, a
    /// password re-check) against the client IP and the account. Returns how
    /// many more failures the account may have before it locks.
    pub async fn record_failure(&self, user: &Arc<User>, client: &Client) -> StoreResult<u32> {
        let (_, n) = tokio::try_join!(
            self.limiter.record(RateBucket::IpFailures, &client.limit_key),
            self.count(&user.username, Owner::Account(user), client)
        )?;
        Ok(self.limiter.spec(RateBucket::AccountFailures).limit.saturating_sub(n))
    }

    /// Admits one answer of a second factor (an e-mailed code, an app's
    /// code, a backup code, a passkey) for comparison, with its failure
    /// counted before it is compared (`Store::admit_attempt`): refused while
    /// the account is locked, or once `cap` (a key unique to the pending
    /// login or setup, and its limit) is used up. Settle it with
    /// [`Lockout::right`] or [`Lockout::wrong`]; an answer that was no guess
    /// (nothing to compare it with) is settled as right.
    pub async fn admit(&self, user: &User, cap: Option<(&str, RateSpec)>) -> StoreResult<Admission> {
        let account = self.limiter.spec(RateBucket::AccountFailures);
        let limits = AttemptLimits {
            limit: account.limit,
            window: account.window,
            lock_for: self.lock_for,
            cap: cap.map(|(key, spec)| (key, spec.limit, spec.window)),
        };
        self.store.admit_attempt(&user.username, &limits).await
    }

    /// The admitted answer was right: its failure is taken back.
    pub async fn right(&self, user: &User, attempt: &Attempt) -> StoreResult<()> {
        self.store.attempt_right(&user.username, attempt).await
    }

    /// The admitted answer was wrong: it counts against the client IP too,
    /// and a lock it set is audited, counted and e-mailed. Returns how many
    /// more failures the account may have before it locks.
    pub async fn wrong(&self, user: &Arc<User>, attempt: &Attempt, client: &Client) -> StoreResult<u32> {
        self.limiter.record(RateBucket::IpFailures, &client.limit_key).await?;
        if attempt.locked {
            let n = self.limiter.spec(RateBucket::AccountFailures).limit;
            self.locked(user, n, client).await;
        } else {
            self.suspicious.after_failure(user, client);
        }
        Ok(attempt.remaining)
    }

    /// Tells of an account's new lock after `n` failures: audit, metric, alert.
    async fn locked(&self, user: &Arc<User>, n: u32, client: &Client) {
        crate::metrics::get().lockouts.inc();
        let details = format!("{n} failed attempts");
        self.audit.event(client.as_user(user), SecurityEvent::AccountLocked, &details).await;
        let minutes = self.lock_for.as_secs().div_ceil(60);
        self.notifier.alert_later(user.clone(), client, Alert::AccountLocked { failures: n, minutes });
    }

    /// One more failure under `key`; locks it when the window is full.
    async fn count(&self, key: &str, owner: Owner<'_>, client: &Client) -> StoreResult<u32> {
        let n = self.limiter.record(RateBucket::AccountFailures, key).await?;
        let limit = self.limiter.spec(RateBucket::AccountFailures).limit;
        if n < limit {
            // The failure that locks the account is told by the lock's own alert.
            if let Owner::Account(user) = owner {
                self.suspicious.after_failure(user, client);
            }
            return Ok(n);
        }
        if self.store.account_locked(key).await?.is_some() {
            return Ok(n);
        }
        self.store.lock_account(key, self.lock_for).await?;
        match owner {
            Owner::Account(user) => self.locked(user, n, client).await,
            Owner::Name(typed) => {
                crate::metrics::get().lockouts.inc();
                let details = format!("{n} failed attempts for a name that matches no account");
                self.audit.event(client.naming(typed), SecurityEvent::AccountLocked, &details).await;
            }
            Owner::Silent => {}
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_keyed_as_the_login_form_finds_accounts() {
        let k = |s: &str| name_key(b"secret", s);
        assert_eq!(k("bob"), k(" bob "), "surrounding spaces do not count");
        assert_ne!(k("bob"), k("Bob"), "user names are exact");
        assert_eq!(k("Bob@Example.com"), k("bob@example.com"), "e-mail addresses ignore case");
        assert_ne!(k("bob"), name_key(b"other secret", "bob"), "keyed");
        assert!(k("bob").starts_with('~') && !crate::auth::users::valid_username(&k("bob")));
    }
}
