//! The login state machine (the seed's flow): password → (code by e-mail, or a
//! backup code) → session. Each step enforces its rate limits, lockouts and
//! audit; the portal only translates the outcome into HTML or JSON.
//!
//! Session ids change at every privilege step: the password step issues a new
//! pending-login token, the code step a new session token (no fixation).

use std::time::Duration;

use crate::access::{Decision, Subject};
use crate::app::App;
use crate::audit::{self, Actor, AttemptResult, SecurityEvent};
use crate::auth::codes;
use crate::auth::users::User;
use crate::config::Policy;
use crate::mail::{self, CodeMail};
use crate::session::{self, now_unix};
use crate::store::{AuthLevel, CodeCheck, CodePurpose, PendingLogin, RateDecision, StoreError};

/// Where the request comes from, for limits, audit and e-mails.
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: String,
    pub user_agent: String,
}

impl Client {
    pub fn device(&self) -> String {
        session::describe_device(&self.user_agent)
    }
}

/// Why a step failed; the portal maps each to a status and message.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("account disabled")]
    Disabled,
    #[error("account temporarily locked")]
    Locked { retry_after: Duration },
    #[error("too many attempts")]
    RateLimited { retry_after: Duration },
    #[error("no pending login")]
    NoPendingLogin,
    #[error("invalid code")]
    InvalidCode { remaining: u32 },
    #[error("maximum attempts reached")]
    MaxAttempts,
    #[error("code expired")]
    Expired,
    #[error("invalid backup code")]
    InvalidBackupCode,
    #[error("mail could not be sent")]
    MailFailed,
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

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
    /// Second factor needed: a code went out; the pending token goes in a cookie.
    CodeSent {
        pending_token: String,
        masked_email: String,
        expires_in: u64,
    },
    Done(Completed),
}

fn limited(d: RateDecision) -> Option<Duration> {
    match d {
        RateDecision::Allowed { .. } => None,
        RateDecision::Limited { retry_after } => Some(retry_after),
    }
}

fn count_attempt(stage: &str, result: &str) {
    crate::metrics::get().auth_attempts.with_label_values(&[stage, result]).inc();
}

fn count_limited(bucket: &str) {
    crate::metrics::get().rate_limited.with_label_values(&[bucket]).inc();
}

/// The policy that applies to the login's destination, raised by the user's own 2FA.
async fn required_level(app: &App, user: &User, rd: Option<&str>, client: &Client) -> Result<AuthLevel, LoginError> {
    let ip = client.ip.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let policy = match rd.and_then(|r| url::Url::parse(r).ok()) {
        Some(url) => {
            let host = url.host_str().unwrap_or("").to_owned();
            let subject = Subject {
                host: &host,
                path: url.path(),
                method: &http::Method::GET,
                ip,
                user: Some((&user.username, &user.groups)),
            };
            match app.rules.decide(&subject) {
                Decision::Policy(p) => p,
                Decision::NeedsIdentity => app.config.access_control.default_policy,
            }
        }
        None => app.config.access_control.default_policy,
    };
    let state = app.store.user_state(&user.username).await?;
    Ok(if state.otp_enabled || policy >= Policy::TwoFactor { AuthLevel::TwoFactor } else { AuthLevel::OneFactor })
}

/// Counts a failed attempt against the client IP and the account; locks the
/// account when it crosses `lockout.account_failures`.
async fn record_failure(app: &App, user: Option<&User>, client: &Client) -> Result<(), LoginError> {
    let lc = &app.config.lockout;
    app.store.rate_record("ip_failures", &client.ip, lc.ip_failures.window).await?;
    if let Some(user) = user {
        let n = app.store.rate_record("account_failures", &user.username, lc.account_failures.window).await?;
        if n >= lc.account_failures.limit && app.store.account_locked(&user.username).await?.is_none() {
            app.store.lock_account(&user.username, lc.account_lock).await?;
            crate::metrics::get().lockouts.inc();
            let actor = Actor {
                username: &user.username,
                user: Some(&user.username),
                ip: &client.ip,
                user_agent: &client.user_agent,
            };
            audit::security_event(app, actor, SecurityEvent::AccountLocked, &format!("{n} failed attempts")).await;
            let minutes = lc.account_lock.as_secs().div_ceil(60);
            crate::auth::suspicious::send_alert(
                app,
                user,
                client,
                "Your account was temporarily locked",
                &format!("After {n} failed sign-in attempts, sign-ins are blocked for {minutes} minutes."),
            )
            .await;
        }
    }
    Ok(())
}

/// Step 1: name (or e-mail) and password.
pub async fn password_step(
    app: &App,
    name_or_email: &str,
    password: &str,
    remember_me: bool,
    rd: Option<String>,
    client: &Client,
) -> Result<PasswordOutcome, LoginError> {
    let rl = &app.config.rate_limit;
    let lc = &app.config.lockout;
    let anon = Actor { username: name_or_email, user: None, ip: &client.ip, user_agent: &client.user_agent };
    if let Some(retry_after) =
        limited(app.store.rate_check("ip_failures", &client.ip, lc.ip_failures.limit, lc.ip_failures.window).await?)
    {
        count_limited("ip_failures");
        count_attempt("password", "rate_limited");
        audit::login_attempt(app, anon, AttemptResult::RateLimited, "too many failures from this IP").await;
        return Err(LoginError::RateLimited { retry_after });
    }
    if let Some(retry_after) = limited(app.store.rate_hit("login", &client.ip, rl.login.limit, rl.login.window).await?)
    {
        count_limited("login");
        count_attempt("password", "rate_limited");
        audit::login_attempt(app, anon, AttemptResult::RateLimited, "login rate limit").await;
        return Err(LoginError::RateLimited { retry_after });
    }

    let users = app.users.snapshot();
    let user = users.find(name_or_email).cloned();
    // Always run argon2, also for unknown names, so timing tells nothing.
    let ok = app
        .passwords
        .verify(user.as_ref().map(|u| u.password_hash.as_str()), password)
        .await
        .map_err(|e| LoginError::Internal(e.to_string()))?;

    if let Some(u) = &user
        && let Some(retry_after) = app.store.account_locked(&u.username).await?
    {
        count_attempt("password", "locked");
        let actor = Actor { user: Some(&u.username), ..anon };
        audit::login_attempt(app, actor, AttemptResult::AccountLocked, "account locked").await;
        return Err(LoginError::Locked { retry_after });
    }
    let user = match (user, ok) {
        (Some(u), true) => u,
        (u, _) => {
            count_attempt("password", "invalid_credentials");
            let actor = Actor { user: u.as_ref().map(|u| u.username.as_str()), ..anon };
            audit::login_attempt(app, actor, AttemptResult::InvalidCredentials, "").await;
            record_failure(app, u.as_deref(), client).await?;
            return Err(LoginError::InvalidCredentials);
        }
    };
    if user.disabled {
        count_attempt("password", "disabled");
        return Err(LoginError::Disabled);
    }
    count_attempt("password", "success");

    let level = required_level(app, &user, rd.as_deref(), client).await?;
    if level == AuthLevel::OneFactor {
        let done = complete(app, &user, AuthLevel::OneFactor, remember_me, rd, client).await?;
        return Ok(PasswordOutcome::Done(done));
    }

    let pending_token = session::new_token();
    let pending = PendingLogin {
        user: user.username.clone(),
        remember_me,
        rd,
        created: now_unix(),
        ip: client.ip.clone(),
        device: client.device(),
    };
    app.store.put_pending(&pending_token, &pending, app.config.session.pending_login_ttl).await?;
    app.store.start_cooldown(&user.username, CodePurpose::Login, app.config.otp.resend_cooldown).await?;
    send_code(app, &user, CodePurpose::Login, client).await.inspect_err(|_| {
        let store = app.store.clone();
        let token = pending_token.clone();
        tokio::spawn(async move {
            let _ = store.take_pending(&token).await;
        });
    })?;
    Ok(PasswordOutcome::CodeSent {
        pending_token,
        masked_email: mail::mask_email(&user.email),
        expires_in: app.config.otp.ttl.as_secs(),
    })
}

/// Issues a code (voiding the previous one) and e-mails it. A mail failure voids
/// the code again and reports `MailFailed`.
pub async fn send_code(app: &App, user: &User, purpose: CodePurpose, client: &Client) -> Result<(), LoginError> {
    let rl = &app.config.rate_limit;
    if let Some(retry_after) = limited(
        app.store.rate_hit("otp_emails", &client.ip, rl.otp_emails_per_ip.limit, rl.otp_emails_per_ip.window).await?,
    ) {
        count_limited("otp_emails");
        return Err(LoginError::RateLimited { retry_after });
    }
    let otp = &app.config.otp;
    let code = codes::generate_code(otp.digits);
    let hash = codes::code_hash(&app.secret, &user.username, purpose.as_str(), &code);
    app.store.issue_code(&user.username, purpose, &hash, otp.ttl, otp.max_attempts).await?;

    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    let expires = now + otp.ttl;
    let device = client.device();
    let message = mail::compose_code_mail(
        &app.templates,
        &CodeMail {
            app_name: &app.config.auth.app_name,
            to_email: &user.email,
            to_name: Some(&user.display_name),
            username: &user.username,
            code: &code,
            purpose: purpose.as_str(),
            expires_minutes: otp.ttl.as_secs().div_ceil(60),
            expires_at: &expires.format(&fmt).unwrap_or_default(),
            ip: &client.ip,
            device: &device,
            time: &now.format(&fmt).unwrap_or_default(),
        },
    )
    .map_err(|e| LoginError::Internal(e.to_string()))?;
    if let Err(e) = app.mailer.send(&message).await {
        tracing::error!(error = %e, purpose = purpose.as_str(), "code e-mail not sent; code voided");
        crate::metrics::get().mail_failures.inc();
        app.store.void_code(&user.username, purpose).await?;
        let actor = Actor {
            username: &user.username,
            user: Some(&user.username),
            ip: &client.ip,
            user_agent: &client.user_agent,
        };
        let details = format!("{} code e-mail not sent", purpose.as_str());
        audit::security_event(app, actor, SecurityEvent::MailFailed, &details).await;
        return Err(LoginError::MailFailed);
    }
    crate::metrics::get().otp_sent.with_label_values(&[purpose.as_str()]).inc();
    Ok(())
}

/// Creates the session at the end of a login, records it and sends a new-IP alert.
async fn complete(
    app: &App,
    user: &User,
    level: AuthLevel,
    remember_me: bool,
    rd: Option<String>,
    client: &Client,
) -> Result<Completed, LoginError> {
    let token = session::new_token();
    let device = client.device();
    let record = session::new_record(&app.config.session, &user.username, level, remember_me, &client.ip, &device);
    app.store.create_session(&token, &record).await?;
    crate::metrics::get().sessions_created.inc();
    let actor =
        Actor { username: &user.username, user: Some(&user.username), ip: &client.ip, user_agent: &client.user_agent };
    audit::login_attempt(
        app,
        actor,
        AttemptResult::Success,
        if level == AuthLevel::TwoFactor { "two_factor" } else { "one_factor" },
    )
    .await;
    crate::auth::suspicious::after_login(app, user, client).await;
    Ok(Completed {
        token,
        remember_me,
        redirect: rd.unwrap_or_else(|| format!("{}{}/account", app.public_origin, app.prefix)),
        username: user.username.clone(),
    })
}

/// Loads the pending login behind `token` and its (still enabled) user.
async fn pending_user(app: &App, token: Option<&str>) -> Result<(PendingLogin, std::sync::Arc<User>), LoginError> {
    let token = token.filter(|t| session::plausible_token(t)).ok_or(LoginError::NoPendingLogin)?;
    let pending = app.store.get_pending(token).await?.ok_or(LoginError::NoPendingLogin)?;
    let users = app.users.snapshot();
    let user = users.get(&pending.user).cloned().ok_or(LoginError::NoPendingLogin)?;
    if user.disabled {
        return Err(LoginError::Disabled);
    }
    Ok((pending, user))
}

/// Step 2a: the e-mailed code.
pub async fn code_step(
    app: &App,
    pending_token: Option<&str>,
    code: &str,
    client: &Client,
) -> Result<Completed, LoginError> {
    let rl = &app.config.rate_limit;
    if let Some(retry_after) =
        limited(app.store.rate_hit("verify", &client.ip, rl.verify.limit, rl.verify.window).await?)
    {
        count_limited("verify");
        count_attempt("otp", "rate_limited");
        return Err(LoginError::RateLimited { retry_after });
    }
    let (pending, user) = pending_user(app, pending_token).await?;
    let actor =
        Actor { username: &user.username, user: Some(&user.username), ip: &client.ip, user_agent: &client.user_agent };
    if let Some(retry_after) = app.store.account_locked(&user.username).await? {
        count_attempt("otp", "locked");
        audit::login_attempt(app, actor, AttemptResult::AccountLocked, "account locked").await;
        return Err(LoginError::Locked { retry_after });
    }
    let check = if codes::plausible_code(code, app.config.otp.digits) {
        let hash = codes::code_hash(&app.secret, &user.username, CodePurpose::Login.as_str(), code);
        app.store.verify_code(&user.username, CodePurpose::Login, &hash).await?
    } else {
        // A malformed code still costs an attempt, through a hash that cannot match.
        app.store.verify_code(&user.username, CodePurpose::Login, &[0u8; 32]).await?
    };
    match check {
        CodeCheck::Ok => {
            count_attempt("otp", "success");
            finish_pending(app, pending_token, &user, client).await
        }
        CodeCheck::Wrong { remaining } => {
            count_attempt("otp", "invalid_otp");
            audit::login_attempt(app, actor, AttemptResult::InvalidOtp, &format!("{remaining} attempts left")).await;
            record_failure(app, Some(&user), client).await?;
            Err(LoginError::InvalidCode { remaining })
        }
        CodeCheck::Exhausted => {
            count_attempt("otp", "max_attempts");
            audit::login_attempt(app, actor, AttemptResult::InvalidOtp, "maximum attempts reached").await;
            record_failure(app, Some(&user), client).await?;
            Err(LoginError::MaxAttempts)
        }
        CodeCheck::Expired | CodeCheck::None => {
            count_attempt("otp", "expired_otp");
            audit::login_attempt(app, actor, AttemptResult::ExpiredOtp, "").await;
            let _ = pending;
            Err(LoginError::Expired)
        }
    }
}

/// Step 2b: a backup code instead of the e-mailed one (each works once).
pub async fn backup_step(
    app: &App,
    pending_token: Option<&str>,
    code: &str,
    client: &Client,
) -> Result<Completed, LoginError> {
    let rl = &app.config.rate_limit;
    if let Some(retry_after) =
        limited(app.store.rate_hit("verify", &client.ip, rl.verify.limit, rl.verify.window).await?)
    {
        count_limited("verify");
        count_attempt("backup_code", "rate_limited");
        return Err(LoginError::RateLimited { retry_after });
    }
    let (_, user) = pending_user(app, pending_token).await?;
    let actor =
        Actor { username: &user.username, user: Some(&user.username), ip: &client.ip, user_agent: &client.user_agent };
    if let Some(retry_after) = app.store.account_locked(&user.username).await? {
        count_attempt("backup_code", "locked");
        return Err(LoginError::Locked { retry_after });
    }
    let hash = codes::backup_hash(&app.secret, &user.username, code);
    if codes::normalize_backup_code(code).len() == codes::BACKUP_CODE_LEN
        && app.store.consume_backup_code(&user.username, &hash).await?
    {
        count_attempt("backup_code", "success");
        let left = app.store.user_state(&user.username).await?.backup_codes_left;
        audit::security_event(app, actor, SecurityEvent::BackupCodeUsed, &format!("{left} backup codes left")).await;
        crate::auth::suspicious::send_alert(
            app,
            &user,
            client,
            "A backup code was used to sign in",
            &format!("One of your backup codes was used to sign in. {left} unused backup codes remain."),
        )
        .await;
        return finish_pending(app, pending_token, &user, client).await;
    }
    count_attempt("backup_code", "invalid_otp");
    audit::login_attempt(app, actor, AttemptResult::InvalidOtp, "invalid backup code").await;
    record_failure(app, Some(&user), client).await?;
    Err(LoginError::InvalidBackupCode)
}

async fn finish_pending(
    app: &App,
    pending_token: Option<&str>,
    user: &User,
    client: &Client,
) -> Result<Completed, LoginError> {
    // Taking the pending login is the commit point: it completes exactly once.
    let token = pending_token.ok_or(LoginError::NoPendingLogin)?;
    let pending = app.store.take_pending(token).await?.ok_or(LoginError::NoPendingLogin)?;
    app.store.void_code(&user.username, CodePurpose::Login).await?;
    complete(app, user, AuthLevel::TwoFactor, pending.remember_me, pending.rd, client).await
}

/// Resend: a new code (the old one is void) after the cooldown.
pub async fn resend(app: &App, pending_token: Option<&str>, client: &Client) -> Result<u64, LoginError> {
    let rl = &app.config.rate_limit;
    let (_, user) = pending_user(app, pending_token).await?;
    if let Some(left) =
        app.store.start_cooldown(&user.username, CodePurpose::Login, app.config.otp.resend_cooldown).await?
    {
        count_limited("resend_cooldown");
        return Err(LoginError::RateLimited { retry_after: left });
    }
    if let Some(retry_after) =
        limited(app.store.rate_hit("resend", &client.ip, rl.resend.limit, rl.resend.window).await?)
    {
        count_limited("resend");
        return Err(LoginError::RateLimited { retry_after });
    }
    send_code(app, &user, CodePurpose::Login, client).await?;
    Ok(app.config.otp.ttl.as_secs())
}

/// What the code page shows about a pending login.
pub struct PendingView {
    pub masked_email: String,
    pub user: std::sync::Arc<User>,
}

pub async fn pending_view(app: &App, pending_token: Option<&str>) -> Result<PendingView, LoginError> {
    let (_, user) = pending_user(app, pending_token).await?;
    Ok(PendingView { masked_email: mail::mask_email(&user.email), user })
}
