//! New passwords: the one path a password changed by its user (account page,
//! `api/password`) or reset by e-mail (`reset`, `api/password-reset/*`) takes
//! into the users file ([`NewPasswords`]), and the reset itself
//! ([`PasswordReset`]).
//!
//! A new password is scored by zxcvbn with the rule `portcullis user add`
//! uses, hashed on the blocking pool, written through the users file's one
//! writer (comments, order, owner and mode kept; locked against the CLI) and
//! applied at once: the reload ends every session made with the old password
//! (the credential fingerprint changed, `auth::credential`), on this replica
//! now and on the others when their watchers see the file.
//!
//! A reset never tells whether an account exists: `start` answers the same,
//! at once, for every name (the code is looked up and e-mailed after the
//! answer, off the request), and `finish` answers one "wrong or expired code"
//! for every failure of the code. The e-mailed code is a one-time code like a
//! login's (keyed hash at rest, 3 tries, the resend cooldown), valid 15
//! minutes. The mailbox alone never takes over an account with a second
//! factor: `finish` then also needs a code from the authenticator app or a
//! backup code (an account whose second factor is e-mailed codes has backup
//! codes; a passkey-only account uses a backup code too). Each e-mailed code
//! allows one such answer, so guessing the app's code costs a mail each time.
//! Limits: the address's reset requests and code attempts, each account's
//! requests, its e-mailed code's tries and the account's failure lock.

use std::sync::Arc;

use crate::audit::{Audit, SecurityEvent};
use crate::auth::Client;
use crate::auth::codes::Codes;
use crate::auth::credential::Fingerprints;
use crate::auth::error::AuthError;
use crate::auth::lockout::Lockout;
use crate::auth::notify::Notifier;
use crate::auth::password::{PasswordChecker, strength};
use crate::auth::record::{Attempts, Outcome, Stage};
use crate::auth::totp::{Authenticator, TotpCheck};
use crate::auth::users::{EditError, User, Users};
use crate::mail::Alert;
use crate::ratelimit::{Limiter, RateBucket};
use crate::store::{Admission, CodeCheck, CodePurpose, Store};

/// The longest password taken (zxcvbn's estimate grows with the length).
const MAX_PASSWORD_CHARS: usize = 256;

/// Writes new passwords; cheap to clone.
#[derive(Clone)]
pub struct NewPasswords {
    users: Arc<Users>,
    store: Store,
    audit: Audit,
    passwords: Arc<PasswordChecker>,
    fingerprints: Arc<Fingerprints>,
}

impl NewPasswords {
    pub fn new(
        users: Arc<Users>,
        store: Store,
        audit: Audit,
        passwords: Arc<PasswordChecker>,
        fingerprints: Arc<Fingerprints>,
    ) -> NewPasswords {
        NewPasswords { users, store, audit, passwords, fingerprints }
    }

    /// Passwords can be changed here (a users file; not a directory
    /// Portcullis only reads).
    pub fn available(&self) -> bool {
        self.users.writer().is_writable()
    }

    /// Refuses a password that is too long or too easy to guess for `user`
    /// (their name and e-mail count as guessable words).
    pub fn check_strength(&self, password: &str, related: &[&str]) -> Result<(), AuthError> {
        if password.chars().count() > MAX_PASSWORD_CHARS {
            return Err(AuthError::WeakPassword { advice: format!("Use at most {MAX_PASSWORD_CHARS} characters.") });
        }
        let s = strength(password, related);
        if s.is_weak() {
            return Err(AuthError::WeakPassword { advice: s.advice });
        }
        Ok(())
    }

    /// Hashes and writes `password` for `user` and applies it at once.
    /// Returns the user as the file now has them, with the fingerprint a
    /// session made with the new password carries.
    pub async fn set(&self, user: &User, password: &str) -> Result<(Arc<User>, String), AuthError> {
        if !self.available() {
            return Err(AuthError::PasswordsReadOnly);
        }
        let phc = self.passwords.hash(password).await.map_err(|e| AuthError::Internal(e.to_string()))?;
        self.users.writer().set_password(&user.username, &phc).await.map_err(|e| match e {
            EditError::Unavailable { .. } => AuthError::PasswordsReadOnly,
            e => AuthError::Internal(format!("the users file was not written: {e}")),
        })?;
        self.users.apply_written(&self.store, &self.audit).await;
        let now = self.users.snapshot().get(&user.username).cloned();
        match now {
            Some(u) if u.password_hash == phc => {
                let fingerprint = self.fingerprints.of(&u);
                Ok((u, fingerprint))
            }
            // Removed, or changed again, in between: the caller's session
            // must not be carried over to a credential it did not make.
            _ => Err(AuthError::Internal("the users file changed while the password was written".into())),
        }
    }
}

/// What `finish` is given.
pub struct ResetAnswer<'a> {
    pub username_or_email: &'a str,
    pub code: &'a str,
    pub new_password: &'a str,
    /// A code from the authenticator app, or a backup code.
    pub second_factor: Option<&'a str>,
}

/// The reset by e-mail; cheap to clone.
#[derive(Clone)]
pub struct PasswordReset {
    pub(crate) users: Arc<Users>,
    pub(crate) store: Store,
    pub(crate) codes: Codes,
    pub(crate) totp: Authenticator,
    pub(crate) limiter: Limiter,
    pub(crate) lockout: Lockout,
    pub(crate) attempts: Attempts,
    pub(crate) audit: Audit,
    pub(crate) notifier: Notifier,
    pub(crate) new_passwords: NewPasswords,
}

impl PasswordReset {
    /// Passwords can be reset here.
    pub fn available(&self) -> bool {
        self.new_passwords.available()
    }

    /// Asks for a code for `typed` (a name or an e-mail address). The answer
    /// is the same, and as fast, whether or not an account matches; the
    /// lookup and the e-mail happen after it.
    pub async fn start(&self, typed: &str, client: &Client) -> Result<(), AuthError> {
        if !self.available() {
            return Err(AuthError::PasswordsReadOnly);
        }
        if let Some(retry_after) = self.limiter.hit(RateBucket::PasswordReset, &client.limit_key).await? {
            self.audit.refused_by(client.naming(typed), RateBucket::PasswordReset, retry_after).await;
            return Err(AuthError::RateLimited { retry_after });
        }
        let (this, typed, client) = (self.clone(), typed.trim().to_owned(), client.clone());
        tokio::spawn(async move {
            if let Err(e) = this.send_code(&typed, &client).await {
                tracing::warn!(error = %e, "password reset code not sent");
            }
        });
        Ok(())
    }

    /// E-mails a reset code to the account `typed` names, if there is one
    /// and its limits allow.
    async fn send_code(&self, typed: &str, client: &Client) -> Result<(), AuthError> {
        let Some(user) = self.users.snapshot().find(typed).filter(|u| !u.disabled).cloned() else {
            tracing::info!(ip = %client.ip, "password reset asked for no enabled account");
            return Ok(());
        };
        let actor = client.as_user(&user);
        let account = account_key(&user.username);
        if let Some(retry_after) = self.limiter.hit(RateBucket::PasswordReset, &account).await? {
            self.audit.refused_by(actor, RateBucket::PasswordReset, retry_after).await;
            return Ok(());
        }
        let cooldown = self.codes.settings().resend_cooldown;
        if let Some(left) = self.store.start_cooldown(&user.username, CodePurpose::PasswordReset, cooldown).await? {
            self.audit.refused(actor, "resend_cooldown", left).await;
            return Ok(());
        }
        self.codes.issue(&user, CodePurpose::PasswordReset, client).await?;
        self.audit.event(actor, SecurityEvent::PasswordResetRequested, "").await;
        Ok(())
    }

    /// Sets a new password with the e-mailed code (and, for an account with
    /// a second factor, a code from it or a backup code). Every session of
    /// the account ends.
    pub async fn finish(&self, answer: &ResetAnswer<'_>, client: &Client) -> Result<(), AuthError> {
        if !self.available() {
            return Err(AuthError::PasswordsReadOnly);
        }
        if let Some(retry_after) = self.limiter.hit(RateBucket::Verify, &client.limit_key).await? {
            self.audit.refused_by(client.naming(answer.username_or_email), RateBucket::Verify, retry_after).await;
            return Err(AuthError::RateLimited { retry_after });
        }
        let typed = answer.username_or_email.trim();
        let found = self.users.snapshot().find(typed).filter(|u| !u.disabled).cloned();
        // Strength before the code: a weak password must not use the code
        // up. The words it is scored against are the ones typed, for every
        // name alike.
        self.new_passwords.check_strength(answer.new_password, &[typed])?;
        let Some(user) = found else {
            // The same store work as a wrong code, against no account.
            let key = self.lockout.name_key(typed);
            let _ = self.store.verify_code(&key, CodePurpose::PasswordReset, &[0u8; 32]).await?;
            return Err(AuthError::ResetRefused);
        };
        self.check_code(&user, answer.code, client).await?;
        self.check_second_factor(&user, answer.second_factor, client).await?;
        let related = [user.username.as_str(), user.email.as_str(), user.display_name.as_str()];
        self.new_passwords.check_strength(answer.new_password, &related)?;
        self.new_passwords.set(&user, answer.new_password).await?;
        // The reload ended the sessions made with the old password; a session
        // made in between (a login racing the reset) ends too.
        self.store.revoke_user_sessions(&user.username).await?;
        let actor = client.as_user(&user);
        self.attempts.record(actor, Stage::Email, Outcome::Success, "password reset").await;
        self.audit.event(actor, SecurityEvent::PasswordReset, "every session ended").await;
        self.notifier.alert(&user, client, Alert::PasswordReset).await;
        Ok(())
    }

    /// The e-mailed code, its failure counted against the account first.
    async fn check_code(&self, user: &Arc<User>, code: &str, client: &Client) -> Result<(), AuthError> {
        let actor = client.as_user(user);
        let attempt = match self.lockout.admit(user, None).await? {
            Admission::Admitted(a) => a,
            Admission::Locked { retry_after } => {
                self.attempts.record(actor, Stage::Email, Outcome::Locked, "password reset").await;
                return Err(AuthError::Locked { retry_after });
            }
            Admission::CapReached => return Err(AuthError::ResetRefused),
        };
        let outcome = match self.codes.check(user, CodePurpose::PasswordReset, code).await? {
            CodeCheck::Ok => {
                self.lockout.right(user, &attempt).await?;
                return Ok(());
            }
            CodeCheck::Wrong { .. } => Outcome::Wrong,
            CodeCheck::Exhausted => Outcome::MaxAttempts,
            CodeCheck::Expired | CodeCheck::None => {
                // Nothing was compared: no guess to count.
                self.lockout.right(user, &attempt).await?;
                self.attempts.record(actor, Stage::Email, Outcome::Expired, "password reset: no live code").await;
                return Err(AuthError::ResetRefused);
            }
        };
        let details = match outcome {
            Outcome::MaxAttempts => "password reset: code used up",
            _ => "password reset: wrong code",
        };
        self.attempts.record(actor, Stage::Email, outcome, details).await;
        self.lockout.wrong(user, &attempt, client).await?;
        Err(AuthError::ResetRefused)
    }

    /// For an account with a second factor: a code from its app or a backup
    /// code. A wrong or missing one counts against the account; the e-mailed
    /// code is used up either way.
    async fn check_second_factor(
        &self,
        user: &Arc<User>,
        typed: Option<&str>,
        client: &Client,
    ) -> Result<(), AuthError> {
        let state = self.store.user_state(&user.username).await?;
        if !state.has_second_factor() {
            return Ok(());
        }
        let actor = client.as_user(user);
        let typed = typed.map(str::trim).filter(|t| !t.is_empty());
        let accepted = match typed {
            None => None,
            Some(t) if state.totp_enabled && t.bytes().all(|b| b.is_ascii_digit()) => {
                Some((Stage::Totp, self.totp.check(user, t).await? == TotpCheck::Accepted))
            }
            Some(t) => {
                let used = match self.codes.backup_hash(user, t) {
                    Some(hash) => self.store.consume_backup_code(&user.username, &hash).await?,
                    None => false,
                };
                if used {
                    self.audit.event(actor, SecurityEvent::BackupCodeUsed, "password reset").await;
                }
                Some((Stage::BackupCode, used))
            }
        };
        match accepted {
            Some((stage, true)) => {
                self.attempts.record(actor, stage, Outcome::Success, "password reset").await;
                Ok(())
            }
            Some((stage, false)) => {
                self.attempts.record(actor, stage, Outcome::Wrong, "password reset").await;
                self.lockout.record_failure(user, client).await?;
                Err(AuthError::ResetNeedsSecondFactor)
            }
            None => {
                let details = "password reset: no second factor given";
                self.attempts.record(actor, Stage::Email, Outcome::Wrong, details).await;
                Err(AuthError::ResetNeedsSecondFactor)
            }
        }
    }
}

/// The key an account's reset requests are counted under (beside the
/// client addresses', which never start so).
fn account_key(username: &str) -> String {
    format!("user:{username}")
}
