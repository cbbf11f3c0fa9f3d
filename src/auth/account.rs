//! Account self-service (the seed's dashboard actions): turning 2FA on (confirmed
//! by an e-mailed code) and off (only with the password: re-authentication the
//! seed lacked), regenerating backup codes, and revoking sessions. Every change
//! is audited and 2FA changes e-mail a security alert.

use crate::app::App;
use crate::audit::{self, Actor, SecurityEvent};
use crate::auth::codes;
use crate::auth::login::{self, Client, LoginError};
use crate::auth::suspicious::send_alert;
use crate::auth::users::User;
use crate::store::{AuthLevel, CodeCheck, CodePurpose};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("Two-factor authentication is already enabled.")]
    AlreadyEnabled,
    #[error("Two-factor authentication is not enabled.")]
    NotEnabled,
    #[error("Your password is required to make this change.")]
    PasswordRequired,
    #[error("Incorrect password.")]
    WrongPassword,
    #[error("No such session.")]
    NoSuchSession,
    #[error(transparent)]
    Login(#[from] LoginError),
}

impl From<crate::store::StoreError> for AccountError {
    fn from(e: crate::store::StoreError) -> Self {
        AccountError::Login(LoginError::Store(e))
    }
}

fn actor<'a>(user: &'a User, client: &'a Client) -> Actor<'a> {
    Actor { username: &user.username, user: Some(&user.username), ip: &client.ip, user_agent: &client.user_agent }
}

async fn check_password(app: &App, user: &User, password: Option<&str>) -> Result<(), AccountError> {
    let password = password.ok_or(AccountError::PasswordRequired)?;
    let ok = app
        .passwords
        .verify(Some(&user.password_hash), password)
        .await
        .map_err(|e| LoginError::Internal(e.to_string()))?;
    if ok { Ok(()) } else { Err(AccountError::WrongPassword) }
}

/// Step 1 of enabling: e-mail a confirmation code.
pub async fn start_enable(app: &App, user: &User, client: &Client) -> Result<(), AccountError> {
    if app.store.user_state(&user.username).await?.otp_enabled {
        return Err(AccountError::AlreadyEnabled);
    }
    login::send_code(app, user, CodePurpose::EnableOtp, client).await?;
    Ok(())
}

/// Step 2 of enabling: the code proves the mailbox; 2FA goes on, 8 backup codes
/// are returned (shown once), the session is rotated to two-factor and the
/// user's other sessions end.
pub async fn confirm_enable(
    app: &App,
    user: &User,
    session_token: &str,
    code: &str,
    client: &Client,
) -> Result<(Vec<String>, String), AccountError> {
    let hash = codes::code_hash(&app.secret, &user.username, CodePurpose::EnableOtp.as_str(), code);
    let check = if codes::plausible_code(code, app.config.otp.digits) {
        app.store.verify_code(&user.username, CodePurpose::EnableOtp, &hash).await?
    } else {
        app.store.verify_code(&user.username, CodePurpose::EnableOtp, &[0u8; 32]).await?
    };
    match check {
        CodeCheck::Ok => {}
        CodeCheck::Wrong { remaining } => return Err(LoginError::InvalidCode { remaining }.into()),
        CodeCheck::Exhausted => return Err(LoginError::MaxAttempts.into()),
        CodeCheck::Expired | CodeCheck::None => return Err(LoginError::Expired.into()),
    }
    let backup = codes::generate_backup_codes();
    let hashes: Vec<[u8; 32]> = backup.iter().map(|c| codes::backup_hash(&app.secret, &user.username, c)).collect();
    app.store.replace_backup_codes(&user.username, &hashes).await?;
    app.store.set_otp_enabled(&user.username, true).await?;

    // Privilege change: a new session id at two-factor; every other session ends.
    let new_token = crate::session::new_token();
    let mut record = app.store.touch_session(session_token).await?.ok_or(LoginError::NoPendingLogin)?;
    record.level = AuthLevel::TwoFactor;
    app.store.revoke_user_sessions(&user.username).await?;
    app.store.create_session(&new_token, &record).await?;

    audit::security_event(app, actor(user, client), SecurityEvent::OtpEnabled, "").await;
    audit::security_event(app, actor(user, client), SecurityEvent::BackupCodesGenerated, "on enabling 2FA").await;
    send_alert(
        app,
        user,
        client,
        "Two-factor authentication was turned on",
        "Sign-ins to your account now need a code sent to this address (or a backup code).",
    )
    .await;
    Ok((backup, new_token))
}

/// Turning 2FA off needs the password; backup codes are voided and an alert sent.
pub async fn disable(app: &App, user: &User, password: Option<&str>, client: &Client) -> Result<(), AccountError> {
    check_password(app, user, password).await?;
    if !app.store.user_state(&user.username).await?.otp_enabled {
        return Err(AccountError::NotEnabled);
    }
    app.store.set_otp_enabled(&user.username, false).await?;
    app.store.replace_backup_codes(&user.username, &[]).await?;
    audit::security_event(app, actor(user, client), SecurityEvent::OtpDisabled, "").await;
    send_alert(
        app,
        user,
        client,
        "Two-factor authentication was turned off",
        "Sign-ins to your account no longer need a code. If this wasn't you, change your password now.",
    )
    .await;
    Ok(())
}

/// New backup codes (the old ones are void); needs the password.
pub async fn regenerate_backup_codes(
    app: &App,
    user: &User,
    password: Option<&str>,
    client: &Client,
) -> Result<Vec<String>, AccountError> {
    check_password(app, user, password).await?;
    if !app.store.user_state(&user.username).await?.otp_enabled {
        return Err(AccountError::NotEnabled);
    }
    let backup = codes::generate_backup_codes();
    let hashes: Vec<[u8; 32]> = backup.iter().map(|c| codes::backup_hash(&app.secret, &user.username, c)).collect();
    app.store.replace_backup_codes(&user.username, &hashes).await?;
    audit::security_event(app, actor(user, client), SecurityEvent::BackupCodesGenerated, "regenerated").await;
    Ok(backup)
}

/// Ends one of the user's sessions by its public id.
pub async fn revoke(app: &App, user: &User, id: &str, client: &Client) -> Result<(), AccountError> {
    if !app.store.revoke_session(&user.username, id).await? {
        return Err(AccountError::NoSuchSession);
    }
    audit::security_event(app, actor(user, client), SecurityEvent::SessionRevoked, "").await;
    Ok(())
}

/// Ends every session of the user except `keep` ("sign out everywhere else").
pub async fn revoke_others(app: &App, user: &User, keep: &str, client: &Client) -> Result<usize, AccountError> {
    let keep_id = crate::store::Store::session_id(keep);
    let mut n = 0;
    for s in app.store.list_sessions(&user.username).await? {
        if s.id != keep_id && app.store.revoke_session(&user.username, &s.id).await? {
            n += 1;
        }
    }
    if n > 0 {
        audit::security_event(app, actor(user, client), SecurityEvent::SessionRevoked, &format!("{n} other sessions"))
            .await;
    }
    Ok(n)
}
