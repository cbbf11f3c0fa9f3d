//! Account self-service: turning e-mailed codes on (confirmed by an e-mailed
//! code) and off (only with the password: a stolen session alone cannot
//! weaken the account), setting up an authenticator app (after the password,
//! confirmed by the app's first code) and removing it (with the password),
//! regenerating backup codes (with the password too), and revoking sessions.
//! Every change is audited, and second-factor and backup-code changes e-mail
//! a security alert.
//!
//! Levels (`gate`'s module doc): adding an app or a passkey needs a
//! two-factor session (`gate::Target::NewFactor`, enforced by the portal
//! before these actions run) and keeps the session's level; confirming
//! e-mailed codes raises a one-factor session to two factors, because the
//! code it takes was e-mailed to the address on file, as a step-up's is.
//! Every enrolment rotates the session and ends the account's others. Wrong
//! codes while confirming either count like a wrong code at sign-in, before
//! they are compared.
//!
//! The password re-checks cost what a failed login costs, or a stolen session
//! would be an unlimited guessing oracle: a limit per session
//! (`lockout.session_failures`), and the client IP's and the account's
//! failure windows, up to the account lock (which refuses the re-check as it
//! refuses a login). Each failure is audited as an `invalid_credentials`
//! attempt, so the repeated-failure rule and `portcullis audit` see it beside
//! the login form's.

use std::sync::Arc;

use crate::audit::{Audit, SecurityEvent};
use crate::auth::Client;
use crate::auth::codes::Codes;
use crate::auth::error::{AuthError, Factor};
use crate::auth::levels::{Account, Levels, Need, Target};
use crate::auth::lockout::Lockout;
use crate::auth::notify::Notifier;
use crate::auth::passkey::{PasskeyError, PasskeyInfo, Passkeys};
use crate::auth::password::PasswordChecker;
use crate::auth::record::{Attempts, Outcome, Stage};
use crate::auth::reset::NewPasswords;
use crate::auth::tokens::{AccessTokens, NewToken, TokenView};
use crate::auth::totp::{Authenticator, Enrolment};
use crate::auth::users::{User, Users};
use crate::mail::Alert;
use crate::ratelimit::{Limiter, RateBucket};
use crate::store::{Admission, Attempt, AuthLevel, CodeCheck, CodePurpose, SessionInfo, Store, StoreError, UserState};

/// One successful login, for the account page and `api/me`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentLogin {
    /// Unix seconds.
    pub time: u64,
    pub ip: String,
    pub device: String,
}

/// What the account page shows: 2FA state, the last 5 successful logins and
/// the live sessions (most recently used first).
pub struct Overview {
    pub state: UserState,
    pub recent_logins: Vec<RecentLogin>,
    pub sessions: Vec<SessionInfo>,
}

/// What a request to turn 2FA on or off did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    /// The change is under way (a code went out) or done.
    Changed,
    /// 2FA already was as asked: nothing was done.
    Unchanged,
}

/// Which password re-check, for the audit trail.
#[derive(Debug, Clone, Copy)]
enum Recheck {
    DisableOtp,
    BackupCodes,
    TotpSetup,
    TotpRemove,
    PasskeyAdd,
    PasskeyRemove,
    TokenCreate,
    PasswordChange,
}

impl Recheck {
    fn details(self) -> &'static str {
        match self {
            Recheck::DisableOtp => "password re-check: turn off 2FA",
            Recheck::BackupCodes => "password re-check: new backup codes",
            Recheck::TotpSetup => "password re-check: set up an authenticator app",
            Recheck::TotpRemove => "password re-check: remove the authenticator app",
            Recheck::PasskeyAdd => "password re-check: add a passkey",
            Recheck::PasskeyRemove => "password re-check: remove a passkey",
            Recheck::TokenCreate => "password re-check: make an access token",
            Recheck::PasswordChange => "password re-check: change the password",
        }
    }
}

/// A confirmed authenticator app: the backup codes made for it (only when
/// the user had none; shown once) and the rotated session's token.
#[derive(Debug)]
pub struct TotpConfirmed {
    pub backup_codes: Option<Vec<String>>,
    pub token: String,
}

/// Account actions; cheap to clone.
#[derive(Clone)]
pub struct AccountActions {
    /// The level answers (what the account pages ask of a session).
    pub(crate) levels: Levels,
    pub(crate) store: Store,
    pub(crate) passwords: Arc<PasswordChecker>,
    pub(crate) new_passwords: NewPasswords,
    /// Whose passwords the re-checks ask (the users file, or a directory).
    pub(crate) users: Arc<Users>,
    pub(crate) codes: Codes,
    pub(crate) totp: Authenticator,
    pub(crate) passkeys: Passkeys,
    pub(crate) audit: Audit,
    pub(crate) attempts: Attempts,
    pub(crate) tokens: AccessTokens,
    pub(crate) notifier: Notifier,
    pub(crate) lockout: Lockout,
    pub(crate) limiter: Limiter,
}

impl AccountActions {
    /// The level a session of `user` needs for `target` (the account pages,
    /// or adding a factor): `Levels::required_level` with the account's
    /// enrolment. Below it the pages ask for the second factor, never serve.
    pub async fn required_level(&self, user: &User, target: Target<'_>) -> Result<AuthLevel, StoreError> {
        let second_factor = self.store.user_state(&user.username).await?.has_second_factor();
        Ok(match self.levels.required_level(target, &Account { user, second_factor }) {
            Need::Level(level) => level,
            // The account targets always name a level; were one not to, the
            // strongest cannot be too weak.
            Need::Nothing | Need::Refused => AuthLevel::TwoFactor,
        })
    }

    /// True when every session of `user` needs two factors whether or not
    /// they turned 2FA on for the account (the deployment's default policy).
    pub fn policy_requires_two_factor(&self, user: &User) -> bool {
        let account = Account { user, second_factor: false };
        self.levels.required_level(Target::Account, &account) == Need::Level(AuthLevel::TwoFactor)
    }

    /// The account page's data.
    pub async fn overview(&self, user: &User) -> Result<Overview, StoreError> {
        let state = self.store.user_state(&user.username).await?;
        let audit = self.store.recent_audit(Some(&user.username), 100).await?;
        let recent_logins = audit
            .iter()
            .filter(|r| r.is_attempt(crate::audit::AttemptResult::Success))
            .take(5)
            .map(|r| RecentLogin {
                time: r.time,
                ip: r.ip.clone(),
                device: crate::session::describe_device(&r.user_agent),
            })
            .collect();
        let mut sessions = self.store.list_sessions(&user.username).await?;
        sessions.sort_by_key(|s| std::cmp::Reverse(s.record.last_seen));
        Ok(Overview { state, recent_logins, sessions })
    }

    /// The user's live sessions, in no particular order.
    pub async fn sessions(&self, user: &User) -> Result<Vec<SessionInfo>, StoreError> {
        self.store.list_sessions(&user.username).await
    }

    /// Admits a confirming code for comparison, its failure counted first
    /// (`Lockout::admit`); `cap`: the setup's own cap on wrong codes.
    async fn admit(
        &self,
        user: &User,
        cap: Option<(&str, crate::config::RateSpec)>,
        stage: Stage,
        client: &Client,
    ) -> Result<Attempt, AuthError> {
        let actor = client.as_user(user);
        match self.lockout.admit(user, cap).await? {
            Admission::Admitted(attempt) => Ok(attempt),
            Admission::Locked { retry_after } => {
                self.attempts.record(actor, stage, Outcome::Locked, "account locked").await;
                Err(AuthError::Locked { retry_after })
            }
            Admission::CapReached => {
                self.attempts.record(actor, stage, Outcome::MaxAttempts, "confirming: maximum attempts reached").await;
                Err(AuthError::SetupExhausted)
            }
        }
    }

    /// The password again, from the session `session_token`: refused while
    /// the account is locked, the client IP banned or the session's failures
    /// used up; a wrong one counts like a failed login.
    async fn recheck(
        &self,
        user: &Arc<User>,
        session_token: &str,
        password: Option<&str>,
        client: &Client,
        what: Recheck,
    ) -> Result<(), AuthError> {
        let password = password.ok_or(AuthError::PasswordRequired)?;
        let actor = client.as_user(user);
        if let Some(retry_after) = self.lockout.account_locked(&user.username).await? {
            self.attempts.record(actor, Stage::Recheck, Outcome::Locked, what.details()).await;
            return Err(AuthError::Locked { retry_after });
        }
        let session = Store::session_id(session_token);
        // The session's window is taken before the compare (a parallel burst
        // of guesses cannot all pass a check made before any is counted), and
        // given back when the password is right.
        let refusal = match self.lockout.ip_banned(&client.limit_key).await? {
            Some(wait) => Some((RateBucket::IpFailures, wait)),
            None => {
                self.limiter.hit(RateBucket::SessionFailures, &session).await?.map(|w| (RateBucket::SessionFailures, w))
            }
        };
        if let Some((bucket, retry_after)) = refusal {
            self.attempts.record(actor, Stage::Recheck, Outcome::RateLimited, what.details()).await;
            self.audit.refused_by(actor, bucket, retry_after).await;
            return Err(AuthError::RateLimited { retry_after });
        }
        let ok = self.users.check_password(Some(user), password, &self.passwords).await?;
        if ok {
            self.store.rate_reset(RateBucket::SessionFailures, &session).await?;
            self.attempts.record(actor, Stage::Recheck, Outcome::Success, what.details()).await;
            return Ok(());
        }
        self.attempts.record(actor, Stage::Recheck, Outcome::Wrong, what.details()).await;
        self.lockout.record_failure(user, client).await?;
        Err(AuthError::Wrong { factor: Factor::Password, remaining: None })
    }

    /// Step 1 of enabling: e-mail a confirmation code (unless 2FA is on already).
    pub async fn start_enable(&self, user: &User, client: &Client) -> Result<Toggle, AuthError> {
        if self.store.user_state(&user.username).await?.otp_enabled {
            return Ok(Toggle::Unchanged);
        }
        self.codes.issue(user, CodePurpose::EnableOtp, client).await?;
        Ok(Toggle::Changed)
    }

    /// Step 2 of enabling: the code proves the mailbox; 2FA goes on, 8 backup
    /// codes are returned (shown once), the session is rotated to two-factor
    /// and the user's other sessions end. Returns the codes and the new
    /// session token.
    pub async fn confirm_enable(
        &self,
        user: &Arc<User>,
        session_token: &str,
        code: &str,
        client: &Client,
    ) -> Result<(Vec<String>, String), AuthError> {
        let attempt = self.admit(user, None, Stage::Email, client).await?;
        let refused = match self.codes.check(user, CodePurpose::EnableOtp, code).await? {
            CodeCheck::Ok => None,
            CodeCheck::Wrong { remaining } => {
                Some((Outcome::Wrong, AuthError::Wrong { factor: Factor::Email, remaining: Some(remaining) }))
            }
            CodeCheck::Exhausted => Some((Outcome::MaxAttempts, AuthError::Exhausted { factor: Factor::Email })),
            CodeCheck::Expired | CodeCheck::None => {
                // Nothing was compared: no guess to count.
                self.lockout.right(user, &attempt).await?;
                return Err(AuthError::Expired);
            }
        };
        if let Some((outcome, e)) = refused {
            let details = "wrong code confirming e-mailed codes";
            self.attempts.record(client.as_user(user), Stage::Email, outcome, details).await;
            self.lockout.wrong(user, &attempt, client).await?;
            return Err(e);
        }
        self.lockout.right(user, &attempt).await?;
        let (backup, hashes) = self.codes.new_backup_codes(user);
        self.store.replace_backup_codes(&user.username, &hashes).await?;
        self.store.set_otp_enabled(&user.username, true).await?;

        // The code was e-mailed to the address on file: a second factor, as a
        // step-up's is, so the session rises to two factors.
        let new_token = self.rotate(user, session_token, Some(AuthLevel::TwoFactor)).await?;

        let actor = client.as_user(user);
        self.audit.event(actor, SecurityEvent::OtpEnabled, "").await;
        self.audit.event(actor, SecurityEvent::BackupCodesGenerated, "on enabling 2FA").await;
        self.notifier.alert(user, client, Alert::OtpEnabled).await;
        Ok((backup, new_token))
    }

    /// An enrolment: a new session id (at `level`, or the session's own),
    /// and every other session of the account ends (a one-factor session of
    /// an account with a second factor must not outlive it: `gate`'s module
    /// doc). Returns the new token.
    async fn rotate(&self, user: &User, session_token: &str, level: Option<AuthLevel>) -> Result<String, AuthError> {
        let new_token = crate::session::new_token();
        let mut record = self.store.touch_session(session_token).await?.ok_or(AuthError::NoPendingLogin)?;
        if let Some(level) = level {
            record.level = level;
        }
        self.store.revoke_user_sessions(&user.username).await?;
        self.store.create_session(&new_token, &record).await?;
        crate::metrics::get().sessions_created.inc();
        Ok(new_token)
    }

    /// Step 1 of setting up an authenticator app, after the password: a new
    /// secret to scan or type (kept sealed until a code confirms it).
    pub async fn totp_setup(
        &self,
        user: &Arc<User>,
        session_token: &str,
        password: Option<&str>,
        client: &Client,
    ) -> Result<Enrolment, AuthError> {
        self.recheck(user, session_token, password, client, Recheck::TotpSetup).await?;
        if self.store.user_state(&user.username).await?.totp_enabled {
            return Err(AuthError::AlreadyEnrolled { factor: Factor::Totp });
        }
        self.totp
            .start_enrolment(user)
            .await?
            .ok_or_else(|| AuthError::Internal("the authenticator secret could not be prepared".into()))
    }

    /// Step 2: the app's first code proves it holds the secret. The app
    /// becomes a second factor (every sign-in needs two from now on), 8
    /// backup codes are made if the user had none, the session is rotated
    /// (keeping its level: two factors, which adding a factor needs) and the
    /// user's other sessions end.
    pub async fn totp_confirm(
        &self,
        user: &Arc<User>,
        session_token: &str,
        code: &str,
        client: &Client,
    ) -> Result<TotpConfirmed, AuthError> {
        let Some(pending) = self.totp.pending(user).await? else {
            return Err(AuthError::NotStarted { factor: Factor::Totp });
        };
        // Wrong codes are capped per setup (a new setup, with its new secret,
        // starts afresh) and count against the account, before the compare.
        let (setup, cap) = (pending.id(), self.limiter.spec(RateBucket::TotpFailures));
        let attempt = self.admit(user, Some((&setup, cap)), Stage::Totp, client).await?;
        if !self.totp.confirm(user, &pending, code).await? {
            let details = "totp: wrong code confirming a new app";
            self.attempts.record(client.as_user(user), Stage::Totp, Outcome::Wrong, details).await;
            self.lockout.wrong(user, &attempt, client).await?;
            let remaining = attempt.cap_remaining.unwrap_or(0);
            return Err(AuthError::Wrong { factor: Factor::Totp, remaining: Some(remaining) });
        }
        self.lockout.right(user, &attempt).await?;
        let actor = client.as_user(user);
        let backup_codes = if self.store.user_state(&user.username).await?.backup_codes_left == 0 {
            let (backup, hashes) = self.codes.new_backup_codes(user);
            self.store.replace_backup_codes(&user.username, &hashes).await?;
            self.audit.event(actor, SecurityEvent::BackupCodesGenerated, "on setting up an authenticator app").await;
            Some(backup)
        } else {
            None
        };
        let token = self.rotate(user, session_token, None).await?;
        self.audit.event(actor, SecurityEvent::TotpEnabled, "").await;
        self.notifier.alert(user, client, Alert::TotpEnabled).await;
        Ok(TotpConfirmed { backup_codes, token })
    }

    /// Removing the app needs the password. Backup codes stay while e-mailed
    /// codes are on, and are voided with the last second factor. Asking when
    /// there is no app changes nothing and needs no password.
    /// This server can be a passkey's relying party.
    pub fn passkeys_available(&self) -> bool {
        self.passkeys.available()
    }

    /// The user's passkeys, oldest first.
    pub async fn passkeys(&self, user: &User) -> Result<Vec<PasskeyInfo>, AuthError> {
        Ok(self.passkeys.list(user).await?)
    }

    /// Starts adding a passkey (after the password): the options for
    /// `navigator.credentials.create`, as JSON.
    pub async fn passkey_register_start(
        &self,
        user: &Arc<User>,
        session_token: &str,
        password: Option<&str>,
        name: &str,
        client: &Client,
    ) -> Result<serde_json::Value, AuthError> {
        if !self.passkeys.available() {
            return Err(PasskeyError::Unavailable.into());
        }
        self.recheck(user, session_token, password, client, Recheck::PasskeyAdd).await?;
        let session = Store::session_id(session_token);
        let options = self.passkeys.start_registration(user, &session, name).await?;
        serde_json::to_value(options).map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// Finishes adding a passkey with the authenticator's answer (JSON):
    /// sign-ins need it (or another second factor) from now on; the session
    /// rotates (keeping its level) and the user's other sessions end.
    pub async fn passkey_register_finish(
        &self,
        user: &User,
        session_token: &str,
        credential: &str,
        client: &Client,
    ) -> Result<(PasskeyInfo, String), AuthError> {
        let session = Store::session_id(session_token);
        let info = self.passkeys.finish_registration(user, &session, credential).await?;
        let token = self.rotate(user, session_token, None).await?;
        let actor = client.as_user(user);
        self.audit.event(actor, SecurityEvent::PasskeyAdded, &format!("passkey \"{}\"", info.name)).await;
        self.notifier.alert(user, client, Alert::PasskeyAdded { passkey: info.name.clone() }).await;
        Ok((info, token))
    }

    /// A new access token (after the password; the portal has checked that
    /// the session is at two factors, as for adding a factor: a token is a
    /// way in without one). Shown once.
    pub async fn create_token(
        &self,
        user: &Arc<User>,
        session_token: &str,
        password: Option<&str>,
        name: &str,
        lifetime: Option<std::time::Duration>,
        client: &Client,
    ) -> Result<NewToken, AuthError> {
        self.recheck(user, session_token, password, client, Recheck::TokenCreate).await?;
        self.tokens.issue(user, name, lifetime, client).await
    }

    /// The user's access tokens, newest first.
    pub async fn tokens(&self, user: &User) -> Result<Vec<TokenView>, StoreError> {
        self.tokens.list(user).await
    }

    /// Revokes the user's access token `id` (a session of the user is proof
    /// enough: revoking only takes a way in away).
    pub async fn revoke_token(&self, user: &User, id: &str, client: &Client) -> Result<(), AuthError> {
        self.tokens.revoke(&user.username, id, client.as_user(user)).await
    }

    /// Removes the passkey `id` (with the password).
    pub async fn passkey_remove(
        &self,
        user: &Arc<User>,
        session_token: &str,
        id: &str,
        password: Option<&str>,
        client: &Client,
    ) -> Result<usize, AuthError> {
        self.recheck(user, session_token, password, client, Recheck::PasskeyRemove).await?;
        let (name, left) = self.passkeys.remove(user, id).await?;
        self.audit.event(client.as_user(user), SecurityEvent::PasskeyRemoved, &format!("passkey \"{name}\"")).await;
        self.notifier.alert(user, client, Alert::PasskeyRemoved { passkey: name }).await;
        Ok(left)
    }

    pub async fn totp_remove(
        &self,
        user: &Arc<User>,
        session_token: &str,
        password: Option<&str>,
        client: &Client,
    ) -> Result<Toggle, AuthError> {
        let state = self.store.user_state(&user.username).await?;
        if !state.totp_enabled {
            // A setup under way goes; there was nothing to protect.
            self.totp.remove(user).await?;
            return Ok(Toggle::Unchanged);
        }
        self.recheck(user, session_token, password, client, Recheck::TotpRemove).await?;
        self.totp.remove(user).await?;
        if !state.otp_enabled {
            self.store.replace_backup_codes(&user.username, &[]).await?;
        }
        self.audit.event(client.as_user(user), SecurityEvent::TotpRemoved, "").await;
        self.notifier.alert(user, client, Alert::TotpRemoved).await;
        Ok(Toggle::Changed)
    }

    /// Turning 2FA off needs the password; backup codes are voided (unless an
    /// authenticator app still needs them) and an alert sent. Asking for it
    /// when 2FA is already off changes nothing and needs no password.
    pub async fn disable(
        &self,
        user: &Arc<User>,
        session_token: &str,
        password: Option<&str>,
        client: &Client,
    ) -> Result<Toggle, AuthError> {
        let state = self.store.user_state(&user.username).await?;
        if !state.otp_enabled {
            return Ok(Toggle::Unchanged);
        }
        self.recheck(user, session_token, password, client, Recheck::DisableOtp).await?;
        self.store.set_otp_enabled(&user.username, false).await?;
        if !state.totp_enabled {
            self.store.replace_backup_codes(&user.username, &[]).await?;
        }
        self.audit.event(client.as_user(user), SecurityEvent::OtpDisabled, "").await;
        self.notifier.alert(user, client, Alert::OtpDisabled).await;
        Ok(Toggle::Changed)
    }

    /// New backup codes (the old ones are void); needs the password, and
    /// e-mails an alert (new codes in the wrong hands get past the second
    /// factor).
    pub async fn regenerate_backup_codes(
        &self,
        user: &Arc<User>,
        session_token: &str,
        password: Option<&str>,
        client: &Client,
    ) -> Result<Vec<String>, AuthError> {
        self.recheck(user, session_token, password, client, Recheck::BackupCodes).await?;
        if !self.store.user_state(&user.username).await?.has_second_factor() {
            return Err(AuthError::NotEnrolled { factor: Factor::Email });
        }
        let (backup, hashes) = self.codes.new_backup_codes(user);
        self.store.replace_backup_codes(&user.username, &hashes).await?;
        self.audit.event(client.as_user(user), SecurityEvent::BackupCodesGenerated, "regenerated").await;
        self.notifier.alert(user, client, Alert::BackupCodesRegenerated).await;
        Ok(backup)
    }

    /// Passwords can be changed here (not with a directory Portcullis only reads).
    pub fn passwords_available(&self) -> bool {
        self.new_passwords.available()
    }

    /// Changes the password: the current one again (limited like every
    /// re-check), a new one zxcvbn scores as strong. Every other session of
    /// the account ends (they were made with the old password); this one
    /// goes on under a new id, made with the new one. Returns its token.
    pub async fn change_password(
        &self,
        user: &Arc<User>,
        session_token: &str,
        current: Option<&str>,
        new: &str,
        client: &Client,
    ) -> Result<String, AuthError> {
        if !self.new_passwords.available() {
            return Err(AuthError::PasswordsReadOnly);
        }
        // Before the re-check: a weak password costs no guess.
        let related = [user.username.as_str(), user.email.as_str(), user.display_name.as_str()];
        self.new_passwords.check_strength(new, &related)?;
        self.recheck(user, session_token, current, client, Recheck::PasswordChange).await?;
        if current == Some(new) {
            return Err(AuthError::SamePassword);
        }
        let mut record = self.store.touch_session(session_token).await?.ok_or(AuthError::NoPendingLogin)?;
        let (_, fingerprint) = self.new_passwords.set(user, new).await?;
        // The reload ended the sessions made with the old password (this
        // one's old id too); any still here were made in between with it.
        let token = crate::session::new_token();
        record.credential = fingerprint;
        self.store.revoke_user_sessions(&user.username).await?;
        self.store.create_session(&token, &record).await?;
        crate::metrics::get().sessions_created.inc();
        self.audit.event(client.as_user(user), SecurityEvent::PasswordChanged, "other sessions ended").await;
        self.notifier.alert(user, client, Alert::PasswordChanged).await;
        Ok(token)
    }

    /// Ends one of the user's sessions by its public id.
    pub async fn revoke(&self, user: &User, id: &str, client: &Client) -> Result<(), AuthError> {
        if !self.store.revoke_session(&user.username, id).await? {
            return Err(AuthError::NoSuchSession);
        }
        self.audit.event(client.as_user(user), SecurityEvent::SessionRevoked, "").await;
        Ok(())
    }

    /// Ends every session of the user except `keep` ("sign out everywhere else").
    pub async fn revoke_others(&self, user: &User, keep: &str, client: &Client) -> Result<usize, AuthError> {
        let keep_id = Store::session_id(keep);
        let mut n = 0;
        for s in self.store.list_sessions(&user.username).await? {
            if s.id != keep_id && self.store.revoke_session(&user.username, &s.id).await? {
                n += 1;
            }
        }
        if n > 0 {
            let details = format!("{n} other sessions");
            self.audit.event(client.as_user(user), SecurityEvent::SessionRevoked, &details).await;
        }
        Ok(n)
    }
}
