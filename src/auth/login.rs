//! The login state machine: password → (a code from the authenticator app,
//! a code by e-mail, or a backup code) → session. Each step enforces its rate limits, lockouts and audit; the
//! portal only turns the outcome into HTML or JSON.
//!
//! Session ids change at every privilege step: the password step issues a new
//! pending-login token, the code step a new session token (no fixation).

use std::sync::Arc;

use crate::access::Resource;
use crate::audit::{AttemptResult, Audit, SecurityEvent};
use crate::auth::Client;
use crate::auth::codes::Codes;
use crate::auth::credential::Fingerprints;
use crate::auth::levels::{Account, Levels};
use crate::auth::lockout::Lockout;
use crate::auth::notify::Notifier;
use crate::auth::passkey::{PasskeyCheck, PasskeyError, Passkeys};
use crate::auth::password::PasswordChecker;
use crate::auth::suspicious::SuspiciousActivity;
use crate::auth::totp::{Authenticator, TotpCheck};
use crate::auth::users::{User, Users};
use crate::clock::Clock;
use crate::config::{RateSpec, SessionConfig};
use crate::mail::{self, Alert};
use crate::ratelimit::{Limiter, RateBucket, count_refusal};
use crate::session;
use crate::store::{Admission, Attempt, AuthLevel, CodeCheck, CodePurpose, PendingLogin, Store, UserState};

pub use crate::auth::error::{AuthError, Factor};
use crate::auth::record::{Attempts, Outcome, Stage};

/// A completed login: the new session's token and where to go.
#[derive(Debug)]
pub struct Completed {
    pub token: String,
    pub remember_me: bool,
    pub redirect: String,
    pub username: String,
}

/// The password step's outcome.
#[derive(Debug)]
pub enum PasswordOutcome {
    /// Second factor needed: a code went out by e-mail; the pending token
    /// goes in a cookie.
    CodeSent {
        pending_token: String,
        masked_email: String,
        expires_in: u64,
        /// The second factors the user may give (`Factor::as_str`).
        methods: Vec<&'static str>,
    },
    /// Second factor needed from a user with an authenticator app: nothing
    /// was e-mailed (one can be asked for); the pending token goes in a cookie.
    AppCodeAsked {
        pending_token: String,
        masked_email: String,
        /// How long the pending login waits for the code, in seconds.
        expires_in: u64,
        methods: Vec<&'static str>,
    },
    Done(Completed),
}

/// The second factors a user can give, most preferred first: the app when
/// enrolled, e-mail always, backup codes while some are left.
pub fn methods(state: &UserState) -> Vec<&'static str> {
    let mut m = Vec::with_capacity(4);
    if state.passkey_enabled {
        m.push(Factor::Passkey.as_str());
    }
    if state.totp_enabled {
        m.push(Factor::Totp.as_str());
    }
    m.push(Factor::Email.as_str());
    if state.backup_codes_left > 0 {
        m.push(Factor::BackupCode.as_str());
    }
    m
}

/// What the code page shows about a pending login.
pub struct PendingView {
    pub masked_email: String,
    pub user: Arc<User>,
    /// The user has an authenticator app (the page offers it first).
    pub totp_enabled: bool,
    /// The user has a passkey (the page offers it, with JavaScript).
    pub passkey_enabled: bool,
}

/// What the login flow needs from the configuration.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    pub session: SessionConfig,
    /// Where a login without a return address lands (the account page).
    pub account_url: String,
}

/// Everything a login touches; cheap to clone.
#[derive(Clone)]
pub struct LoginFlow {
    pub(crate) store: Store,
    pub(crate) users: Arc<Users>,
    pub(crate) passwords: Arc<PasswordChecker>,
    pub(crate) codes: Codes,
    pub(crate) totp: Authenticator,
    pub(crate) passkeys: Passkeys,
    pub(crate) limiter: Limiter,
    pub(crate) lockout: Lockout,
    pub(crate) audit: Audit,
    pub(crate) attempts: Attempts,
    pub(crate) notifier: Notifier,
    pub(crate) suspicious: SuspiciousActivity,
    pub(crate) fingerprints: Arc<Fingerprints>,
    pub(crate) levels: Levels,
    pub(crate) settings: Arc<LoginSettings>,
    pub(crate) clock: Clock,
}

/// The typed name, with the account it found (if any) for the audit trail.
fn naming_known<'a>(anon: crate::audit::Actor<'a>, user: Option<&'a User>) -> crate::audit::Actor<'a> {
    crate::audit::Actor { user: user.map(|u| u.username.as_str()), ..anon }
}

impl LoginFlow {
    /// The level a login must reach (`Levels::login_level`: the account
    /// pages' level, raised by the return address's), with the user's
    /// enrolment, which decides how the second factor is asked for. The
    /// return address is read as the gate reads a request (`normalize::url`),
    /// so the two cannot disagree about where it leads.
    async fn required_level(
        &self,
        user: &User,
        rd: Option<&str>,
        client: &Client,
    ) -> Result<(AuthLevel, UserState), AuthError> {
        let state = self.store.user_state(&user.username).await?;
        let account = Account { user, second_factor: state.has_second_factor() };
        let ip = client.ip.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        let level = match rd.map(|r| crate::normalize::url(crate::normalize::without_fragment(r))) {
            None => self.levels.login_level(None, &account),
            Some(Ok(url)) => {
                let resource = Resource { host: &url.host.name, path: &url.path, method: &http::Method::GET, ip };
                self.levels.login_level(Some(&resource), &account)
            }
            // Validated return addresses always read; were one not to, the
            // strongest level is the one that cannot be too weak.
            Some(Err(_)) => AuthLevel::TwoFactor,
        };
        Ok((level, state))
    }

    /// Step 1: name (or e-mail) and password.
    pub async fn password_step(
        &self,
        name_or_email: &str,
        password: &str,
        remember_me: bool,
        rd: Option<String>,
        client: &Client,
    ) -> Result<PasswordOutcome, AuthError> {
        let anon = client.naming(name_or_email);
        if let Some(retry_after) = self.lockout.ip_banned(&client.limit_key).await? {
            let why = "too many failures from this IP";
            self.attempts.record(anon, Stage::Password, Outcome::RateLimited, why).await;
            self.audit.refused_by(anon, RateBucket::IpFailures, retry_after).await;
            return Err(AuthError::RateLimited { retry_after });
        }
        if let Some(retry_after) = self.limiter.hit(RateBucket::Login, &client.limit_key).await? {
            self.attempts.record(anon, Stage::Password, Outcome::RateLimited, "login rate limit").await;
            self.audit.refused_by(anon, RateBucket::Login, retry_after).await;
            return Err(AuthError::RateLimited { retry_after });
        }

        let user = self.users.find_account(name_or_email).await?;
        // The users file: argon2 runs always, also for unknown names, so
        // timing tells nothing. A directory is asked only after the locks
        // (below), so it never sees more attempts than they allow.
        let remote = self.users.checks_remotely();
        let mut ok = false;
        if !remote {
            ok = self.users.check_password(user.as_deref(), password, &self.passwords).await?;
        }

        // The typed name is locked like an account whether or not it is one,
        // so this answer is the same for both.
        if let Some(retry_after) = self.lockout.login_locked(name_or_email, user.as_deref()).await? {
            let actor = naming_known(anon, user.as_deref());
            self.attempts.record(actor, Stage::Password, Outcome::Locked, "account locked").await;
            return Err(AuthError::Locked { retry_after });
        }
        if remote {
            ok = self.users.check_password(user.as_deref(), password, &self.passwords).await?;
        }
        let user = match (user, ok) {
            (Some(u), true) => u,
            (u, _) => {
                self.attempts.record(naming_known(anon, u.as_deref()), Stage::Password, Outcome::Wrong, "").await;
                self.lockout.record_login_failure(name_or_email, u.as_ref(), client).await?;
                return Err(AuthError::InvalidCredentials);
            }
        };
        if user.disabled {
            let actor = client.as_user(&user);
            self.attempts.record(actor, Stage::Password, Outcome::Disabled, "account disabled").await;
            return Err(AuthError::Disabled);
        }
        self.attempts.record(client.as_user(&user), Stage::Password, Outcome::Success, "").await;

        let (level, state) = self.required_level(&user, rd.as_deref(), client).await?;
        if level == AuthLevel::TwoFactor {
            return self.ask_second_factor(&user, &state, remember_me, rd, client).await;
        }
        // A one-factor session is only ever an account's without a second
        // factor (`gate`'s module doc). An enrolment that raced this login
        // ended the account's sessions before this one existed; reading the
        // enrolment again once it exists catches that race, and the login
        // then asks for the new factor instead.
        let token = self.open_session(&user, AuthLevel::OneFactor, remember_me, client).await?;
        let now = self.store.user_state(&user.username).await?;
        if now.has_second_factor() {
            self.store.delete_session(&token).await?;
            return self.ask_second_factor(&user, &now, remember_me, rd, client).await;
        }
        let done = self.completed(token, &user, AuthLevel::OneFactor, None, remember_me, rd, client).await;
        Ok(PasswordOutcome::Done(done))
    }

    /// Step-up: a session at one factor asks for the second (its destination,
    /// or the account pages, need two). The password was checked when the
    /// session was made; a code goes out as after the password step, and the
    /// code step then replaces the session with a two-factor one.
    pub async fn step_up(
        &self,
        user: &User,
        remember_me: bool,
        rd: Option<String>,
        client: &Client,
    ) -> Result<PasswordOutcome, AuthError> {
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        if let Some(retry_after) = self.lockout.account_locked(&user.username).await? {
            return Err(AuthError::Locked { retry_after });
        }
        let state = self.store.user_state(&user.username).await?;
        self.ask_second_factor(user, &state, remember_me, rd, client).await
    }

    /// Stores the pending login and asks for the second factor: from a user
    /// with an authenticator app, its code (nothing is e-mailed until asked
    /// for); from anyone else, the code e-mailed now.
    async fn ask_second_factor(
        &self,
        user: &User,
        state: &UserState,
        remember_me: bool,
        rd: Option<String>,
        client: &Client,
    ) -> Result<PasswordOutcome, AuthError> {
        let pending_token = session::new_token();
        let pending = PendingLogin {
            user: user.username.clone(),
            remember_me,
            rd,
            created: self.clock.now_unix(),
            ip: client.ip.clone(),
            device: client.device(),
        };
        let ttl = self.settings.session.pending_login_ttl;
        self.store.put_pending(&pending_token, &pending, ttl).await?;
        if state.totp_enabled {
            return Ok(PasswordOutcome::AppCodeAsked {
                pending_token,
                masked_email: mail::mask_email(&user.email),
                expires_in: ttl.as_secs(),
                methods: methods(state),
            });
        }
        let otp = self.codes.settings();
        self.store.start_cooldown(&user.username, CodePurpose::Login, otp.resend_cooldown).await?;
        self.codes.issue(user, CodePurpose::Login, client).await.inspect_err(|_| {
            // The code could not be sent: the pending login goes too, so the
            // next attempt starts over.
            let store = self.store.clone();
            let token = pending_token.clone();
            tokio::spawn(async move {
                let _ = store.take_pending(&token).await;
            });
        })?;
        Ok(PasswordOutcome::CodeSent {
            pending_token,
            masked_email: mail::mask_email(&user.email),
            expires_in: otp.ttl.as_secs(),
            methods: methods(state),
        })
    }

    /// Creates the session at the end of a login and runs the suspicious-activity rules.
    /// `factor`: the second factor given, if any (the audit record names it).
    async fn complete(
        &self,
        user: &User,
        level: AuthLevel,
        factor: Option<Factor>,
        remember_me: bool,
        rd: Option<String>,
        client: &Client,
    ) -> Result<Completed, AuthError> {
        let token = self.open_session(user, level, remember_me, client).await?;
        Ok(self.completed(token, user, level, factor, remember_me, rd, client).await)
    }

    /// A new session of `level` for `user`; returns its token.
    async fn open_session(
        &self,
        user: &User,
        level: AuthLevel,
        remember_me: bool,
        client: &Client,
    ) -> Result<String, AuthError> {
        let token = session::new_token();
        let record = session::new_record(
            &self.settings.session,
            self.clock.now_unix(),
            &user.username,
            level,
            remember_me,
            &client.ip,
            &client.device(),
            self.fingerprints.of(user),
        );
        self.store.create_session(&token, &record).await?;
        crate::metrics::get().sessions_created.inc();
        Ok(token)
    }

    /// A login that opened its session: audited, checked for suspicious
    /// activity, and sent on to the return address (or the account page).
    #[allow(clippy::too_many_arguments)]
    async fn completed(
        &self,
        token: String,
        user: &User,
        level: AuthLevel,
        factor: Option<Factor>,
        remember_me: bool,
        rd: Option<String>,
        client: &Client,
    ) -> Completed {
        let how = match (level, factor) {
            (AuthLevel::OneFactor, _) => "one_factor".to_owned(),
            (AuthLevel::TwoFactor, Some(f)) => format!("two_factor: {}", f.as_str()),
            (AuthLevel::TwoFactor, None) => "two_factor".to_owned(),
        };
        self.audit.attempt(client.as_user(user), AttemptResult::Success, &how).await;
        self.suspicious.after_login(user, client).await;
        Completed {
            token,
            remember_me,
            redirect: rd.unwrap_or_else(|| self.settings.account_url.clone()),
            username: user.username.clone(),
        }
    }

    /// Loads the pending login behind `token` and its (still enabled) user.
    async fn pending_user(&self, token: Option<&str>) -> Result<(PendingLogin, Arc<User>), AuthError> {
        let token = token.filter(|t| session::plausible_token(t)).ok_or(AuthError::NoPendingLogin)?;
        let pending = self.store.get_pending(token).await?.ok_or(AuthError::NoPendingLogin)?;
        let users = self.users.snapshot();
        let user = users.get(&pending.user).cloned().ok_or(AuthError::NoPendingLogin)?;
        if user.disabled {
            return Err(AuthError::Disabled);
        }
        Ok((pending, user))
    }

    /// Step 2a: the e-mailed code. Its failure is counted before the code
    /// is compared (here, against the account; the code's own tries are
    /// counted by the store's compare).
    pub async fn code_step(
        &self,
        pending_token: Option<&str>,
        code: &str,
        client: &Client,
    ) -> Result<Completed, AuthError> {
        let (_, user) = self.pending_user(pending_token).await?;
        let actor = client.as_user(&user);
        let attempt = self.admit(&user, None, Stage::Email, client).await?;
        let (outcome, details, refused) = match self.codes.check(&user, CodePurpose::Login, code).await? {
            CodeCheck::Ok => {
                self.lockout.right(&user, &attempt).await?;
                self.attempts.record(actor, Stage::Email, Outcome::Success, "").await;
                return self.finish_pending(pending_token, &user, Factor::Email, client).await;
            }
            CodeCheck::Wrong { remaining } => (
                Outcome::Wrong,
                format!("{remaining} attempts left"),
                AuthError::Wrong { factor: Factor::Email, remaining: Some(remaining) },
            ),
            CodeCheck::Exhausted => (
                Outcome::MaxAttempts,
                "maximum attempts reached".into(),
                AuthError::Exhausted { factor: Factor::Email },
            ),
            CodeCheck::Expired | CodeCheck::None => {
                // Nothing was compared: no guess to count.
                self.lockout.right(&user, &attempt).await?;
                self.attempts.record(actor, Stage::Email, Outcome::Expired, "").await;
                return Err(AuthError::Expired);
            }
        };
        self.attempts.record(actor, Stage::Email, outcome, &details).await;
        self.lockout.wrong(&user, &attempt, client).await?;
        Err(refused)
    }

    /// Step 2b: a backup code instead of the e-mailed one (each works once).
    pub async fn backup_step(
        &self,
        pending_token: Option<&str>,
        code: &str,
        client: &Client,
    ) -> Result<Completed, AuthError> {
        let (_, user) = self.pending_user(pending_token).await?;
        let actor = client.as_user(&user);
        let attempt = self.admit(&user, None, Stage::BackupCode, client).await?;
        if let Some(hash) = self.codes.backup_hash(&user, code)
            && self.store.consume_backup_code(&user.username, &hash).await?
        {
            self.lockout.right(&user, &attempt).await?;
            self.attempts.record(actor, Stage::BackupCode, Outcome::Success, "").await;
            let left = self.store.user_state(&user.username).await?.backup_codes_left;
            let details = format!("{left} backup codes left");
            self.audit.event(actor, SecurityEvent::BackupCodeUsed, &details).await;
            self.notifier.alert(&user, client, Alert::BackupCodeUsed { left }).await;
            return self.finish_pending(pending_token, &user, Factor::BackupCode, client).await;
        }
        self.attempts.record(actor, Stage::BackupCode, Outcome::Wrong, "invalid backup code").await;
        let remaining = self.lockout.wrong(&user, &attempt, client).await?;
        Err(AuthError::Wrong { factor: Factor::BackupCode, remaining: Some(remaining) })
    }

    /// Admits a second factor's answer for comparison: first the client's
    /// verify window, then the account (`Lockout::admit`: its failure is
    /// counted before anything is compared), refused while the account is
    /// locked or once `cap` (this login's wrong app codes) is used up.
    async fn admit(
        &self,
        user: &User,
        cap: Option<(&str, RateSpec)>,
        stage: Stage,
        client: &Client,
    ) -> Result<Attempt, AuthError> {
        let actor = client.as_user(user);
        if let Some(retry_after) = self.limiter.hit(RateBucket::Verify, &client.limit_key).await? {
            let details = format!("{}: verify rate limit", stage.as_str());
            self.attempts.record(actor, stage, Outcome::RateLimited, &details).await;
            self.audit.refused_by(actor, RateBucket::Verify, retry_after).await;
            return Err(AuthError::RateLimited { retry_after });
        }
        match self.lockout.admit(user, cap).await? {
            Admission::Admitted(attempt) => Ok(attempt),
            Admission::Locked { retry_after } => {
                self.attempts.record(actor, stage, Outcome::Locked, "account locked").await;
                Err(AuthError::Locked { retry_after })
            }
            Admission::CapReached => {
                let details = format!("{}: maximum attempts reached", stage.as_str());
                self.attempts.record(actor, stage, Outcome::MaxAttempts, &details).await;
                Err(AuthError::Exhausted { factor: Factor::Totp })
            }
        }
    }

    /// Step 2c: a code from the authenticator app. Wrong codes count as a
    /// wrong e-mailed code does: against the client's verify window, the
    /// account's failures (up to its lock), and this login, whose app is
    /// refused after `otp.max_attempts` wrong codes (an e-mailed or backup
    /// code still works). A right code whose step was already used is a
    /// replay, and counts as wrong. Each is counted before it is compared.
    pub async fn totp_step(
        &self,
        pending_token: Option<&str>,
        code: &str,
        client: &Client,
    ) -> Result<Completed, AuthError> {
        let (_, user) = self.pending_user(pending_token).await?;
        let token = pending_token.ok_or(AuthError::NoPendingLogin)?;
        let actor = client.as_user(&user);
        // The cap is this login's, under its public id: running out is this
        // login's attempts cap (counted as `max_attempts`), not a rate limit.
        let login_id = Store::session_id(token);
        let cap = self.limiter.spec(RateBucket::TotpFailures);
        let attempt = self.admit(&user, Some((&login_id, cap)), Stage::Totp, client).await?;
        let (outcome, details) = match self.totp.check(&user, code).await? {
            TotpCheck::Accepted => {
                self.lockout.right(&user, &attempt).await?;
                self.attempts.record(actor, Stage::Totp, Outcome::Success, "").await;
                return self.finish_pending(pending_token, &user, Factor::Totp, client).await;
            }
            TotpCheck::NotEnrolled => {
                self.lockout.right(&user, &attempt).await?;
                self.attempts.record(actor, Stage::Totp, Outcome::NotEnrolled, "").await;
                return Err(AuthError::NotEnrolled { factor: Factor::Totp });
            }
            TotpCheck::Wrong => (Outcome::Wrong, "totp: invalid code"),
            TotpCheck::Replayed => (Outcome::Replayed, "totp: code already used"),
        };
        let remaining = attempt.cap_remaining.unwrap_or(0);
        let details = format!("{details}, {remaining} attempts left");
        self.attempts.record(actor, Stage::Totp, outcome, &details).await;
        self.lockout.wrong(&user, &attempt, client).await?;
        Err(match remaining {
            0 => AuthError::Exhausted { factor: Factor::Totp },
            n => AuthError::Wrong { factor: Factor::Totp, remaining: Some(n) },
        })
    }

    /// Step 2d, first half: the options for `navigator.credentials.get`
    /// (as JSON) for the pending login's user, whose challenge waits in the
    /// store for `passkey_step`.
    pub async fn passkey_start(&self, pending_token: Option<&str>) -> Result<serde_json::Value, AuthError> {
        let (_, user) = self.pending_user(pending_token).await?;
        let token = pending_token.ok_or(AuthError::NoPendingLogin)?;
        if let Some(retry_after) = self.lockout.account_locked(&user.username).await? {
            return Err(AuthError::Locked { retry_after });
        }
        let options = match self.passkeys.start_login(&user, &Store::session_id(token)).await {
            Ok(Some(o)) => o,
            Ok(None) | Err(PasskeyError::Unavailable) => {
                return Err(AuthError::NotEnrolled { factor: Factor::Passkey });
            }
            Err(PasskeyError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(AuthError::Internal(e.to_string())),
        };
        serde_json::to_value(options).map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// Step 2d: the authenticator's answer (JSON) to the challenge of
    /// `passkey_start`. A refused answer counts as a wrong code does:
    /// against the client's verify window and the account's failures (up
    /// to its lock), counted before it is checked. The challenge answers
    /// once: another try starts again.
    pub async fn passkey_step(
        &self,
        pending_token: Option<&str>,
        credential: &str,
        client: &Client,
    ) -> Result<Completed, AuthError> {
        let (_, user) = self.pending_user(pending_token).await?;
        let token = pending_token.ok_or(AuthError::NoPendingLogin)?;
        let actor = client.as_user(&user);
        let attempt = self.admit(&user, None, Stage::Passkey, client).await?;
        let check = match self.passkeys.finish_login(&user, &Store::session_id(token), credential).await {
            Ok(c) => c,
            Err(PasskeyError::Store(e)) => return Err(e.into()),
            Err(_) => PasskeyCheck::NotEnrolled,
        };
        let (outcome, refused) = match check {
            PasskeyCheck::Accepted => {
                self.lockout.right(&user, &attempt).await?;
                self.attempts.record(actor, Stage::Passkey, Outcome::Success, "").await;
                return self.finish_pending(pending_token, &user, Factor::Passkey, client).await;
            }
            PasskeyCheck::NotEnrolled => (Outcome::NotEnrolled, AuthError::NotEnrolled { factor: Factor::Passkey }),
            PasskeyCheck::NoCeremony => (Outcome::NoCeremony, AuthError::NotStarted { factor: Factor::Passkey }),
            PasskeyCheck::Refused => {
                let remaining = self.lockout.wrong(&user, &attempt, client).await?;
                let details = format!("passkey: refused, {remaining} attempts left");
                self.attempts.record(actor, Stage::Passkey, Outcome::Wrong, &details).await;
                return Err(AuthError::Wrong { factor: Factor::Passkey, remaining: Some(remaining) });
            }
        };
        // Nothing was checked: no guess to count.
        self.lockout.right(&user, &attempt).await?;
        self.attempts.record(actor, Stage::Passkey, outcome, "").await;
        Err(refused)
    }

    async fn finish_pending(
        &self,
        pending_token: Option<&str>,
        user: &User,
        factor: Factor,
        client: &Client,
    ) -> Result<Completed, AuthError> {
        // Taking the pending login is the commit point: it completes exactly once.
        let token = pending_token.ok_or(AuthError::NoPendingLogin)?;
        let pending = self.store.take_pending(token).await?.ok_or(AuthError::NoPendingLogin)?;
        self.store.void_code(&user.username, CodePurpose::Login).await?;
        self.complete(user, AuthLevel::TwoFactor, Some(factor), pending.remember_me, pending.rd, client).await
    }

    /// Resend: a new code (the old one is void) after the cooldown. Returns
    /// the new code's lifetime in seconds.
    pub async fn resend(&self, pending_token: Option<&str>, client: &Client) -> Result<u64, AuthError> {
        let (_, user) = self.pending_user(pending_token).await?;
        let actor = client.as_user(&user);
        let otp = self.codes.settings();
        if let Some(left) = self.store.start_cooldown(&user.username, CodePurpose::Login, otp.resend_cooldown).await? {
            count_refusal("resend_cooldown");
            self.audit.refused(actor, "resend_cooldown", left).await;
            return Err(AuthError::RateLimited { retry_after: left });
        }
        if let Some(retry_after) = self.limiter.hit(RateBucket::Resend, &client.limit_key).await? {
            self.audit.refused_by(actor, RateBucket::Resend, retry_after).await;
            return Err(AuthError::RateLimited { retry_after });
        }
        self.codes.issue(&user, CodePurpose::Login, client).await?;
        Ok(otp.ttl.as_secs())
    }

    /// Ends the session behind `token` (signing out), and audits it.
    pub async fn logout(&self, token: &str, client: &Client) -> Result<(), AuthError> {
        if let Some(user) = self.store.delete_session(token).await? {
            self.audit.event(client.on_account(&user), SecurityEvent::Logout, "").await;
        }
        Ok(())
    }

    /// The pending login behind the cookie, for the code page.
    pub async fn pending_view(&self, pending_token: Option<&str>) -> Result<PendingView, AuthError> {
        let (_, user) = self.pending_user(pending_token).await?;
        let state = self.store.user_state(&user.username).await?;
        Ok(PendingView {
            masked_email: mail::mask_email(&user.email),
            user,
            totp_enabled: state.totp_enabled,
            passkey_enabled: state.passkey_enabled && self.passkeys.available(),
        })
    }
}

#[cfg(test)]
mod tests {
    //! The level a login reaches and how its attempts are counted, over the
    //! memory store in process (mail goes to the console transport).

    use std::path::Path;

    use http::HeaderValue;

    use super::*;
    use crate::auth::password::hash_password;
    use crate::auth::users::UserDirectory;
    use crate::config::{Config, PathPattern, Policy, RuleConfig};
    use crate::identity::IdentityValues;
    use crate::store::AuditRecord;

    const PASSWORD: &str = "correct horse battery";

    #[test]
    fn the_second_factors_are_offered_app_first_e_mail_always_and_backup_codes_while_some_are_left() {
        let state = |passkey, totp, backup| UserState {
            passkey_enabled: passkey,
            totp_enabled: totp,
            backup_codes_left: backup,
            ..UserState::default()
        };
        assert_eq!(methods(&state(false, false, 0)), ["email"]);
        assert_eq!(methods(&state(false, false, 1)), ["email", "backup_code"]);
        assert_eq!(methods(&state(false, true, 10)), ["totp", "email", "backup_code"]);
        assert_eq!(methods(&state(true, true, 0)), ["passkey", "totp", "email"]);
    }

    fn user(name: &str, password_hash: &str) -> User {
        let v = HeaderValue::from_static("x");
        User {
            username: name.to_owned(),
            email: format!("{name}@example.com"),
            display_name: name.to_owned(),
            password_hash: password_hash.to_owned(),
            groups: vec![],
            disabled: false,
            identity: IdentityValues { user: v.clone(), email: v.clone(), name: v.clone(), groups: v },
            fingerprint: Default::default(),
            dn: None,
        }
    }

    /// One factor by default, two under `/two/`; alice's password is
    /// [`PASSWORD`]. Built as `app` builds it, on a manual clock.
    async fn login_flow() -> LoginFlow {
        let mut config = Config::default();
        config.access_control.default_policy = Policy::OneFactor;
        config.access_control.rules = vec![RuleConfig {
            path: Some(PathPattern(regex::Regex::new("^/two/").unwrap())),
            ..RuleConfig::any(Policy::TwoFactor)
        }];
        config.auth.secret = crate::config::Secret::new("the login's tests' secret".to_owned());
        let clock = Clock::manual(1_800_000_000_000);
        let store = Store::open_with_clock(&config.store, clock.clone()).await.unwrap();
        let dir = UserDirectory::from_users([user("alice", &hash_password(PASSWORD).unwrap())]);
        let users = Arc::new(Users::read_only(Path::new("(test)"), dir, "test"));
        crate::app::login_flow(&config, &store, &users, &clock).unwrap()
    }

    fn client() -> Client {
        Client::new("192.0.2.7", "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0")
    }

    /// What the password step leads to, in words.
    async fn after_password(flow: &LoginFlow, name: &str, password: &str, rd: Option<&str>) -> String {
        match flow.password_step(name, password, false, rd.map(str::to_owned), &client()).await {
            Ok(PasswordOutcome::Done(done)) => {
                let level = flow.store.peek_session(&done.token).await.unwrap().expect("a session").level;
                format!("signed in at {level:?}, on to {}", done.redirect)
            }
            Ok(PasswordOutcome::CodeSent { methods, .. }) => format!("code sent, then one of {methods:?}"),
            Ok(PasswordOutcome::AppCodeAsked { .. }) => "app code asked".to_owned(),
            Err(e) => format!("refused: {e:?}"),
        }
    }

    #[tokio::test]
    async fn a_right_password_signs_in_at_the_level_of_where_the_login_leads() {
        let flow = login_flow().await;
        assert_eq!(
            after_password(&flow, "alice", PASSWORD, None).await,
            "signed in at OneFactor, on to http://127.0.0.1:8080/_auth/account"
        );
        let one = "https://app.example.com/one/x";
        assert_eq!(
            after_password(&flow, "alice", PASSWORD, Some(one)).await,
            format!("signed in at OneFactor, on to {one}")
        );
        let two = "https://app.example.com/two/x";
        assert_eq!(after_password(&flow, "alice", PASSWORD, Some(two)).await, "code sent, then one of [\"email\"]");
        assert_eq!(
            after_password(&flow, "alice@example.com", PASSWORD, Some("not an address")).await,
            "code sent, then one of [\"email\"]",
            "a return address that does not read asks the strongest level"
        );
    }

    /// The audit trail's failed password attempts, oldest first.
    async fn wrong_passwords(flow: &LoginFlow) -> Vec<AuditRecord> {
        let mut records = flow.store.recent_audit(None, 100).await.unwrap();
        records.retain(AuditRecord::is_failed_attempt);
        records.reverse();
        records
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused_and_audited_under_the_name_typed_and_the_account_it_found() {
        let flow = login_flow().await;
        for typed in ["alice@example.com", "mallory"] {
            assert_eq!(after_password(&flow, typed, "wrong", None).await, "refused: InvalidCredentials");
        }
        let audited: Vec<(String, Option<String>)> =
            wrong_passwords(&flow).await.into_iter().map(|r| (r.username, r.user)).collect();
        assert_eq!(audited, [("alice@example.com".to_owned(), Some("alice".to_owned())), ("mallory".to_owned(), None)]);
    }
}
