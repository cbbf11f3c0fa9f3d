//! The account endpoints: the account page and `api/me`, and one handler per
//! action (toggle e-mailed codes, confirm them, set up, confirm or remove an
//! authenticator app, add or remove a passkey, regenerate backup codes,
//! revoke one session or all others, list sessions). Each reads its typed
//! form, asks `auth::account`, and returns what happened; `Cx::reply`
//! answers a form post with the account page and an API call with JSON.

use http::StatusCode;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::context::{Answer, Cx};
use super::outcome::{Back, Done, Notice, Page};
use super::pages::SessionRow;
use crate::auth::account::{Toggle, TotpConfirmed};
use crate::auth::error::AuthError;
use crate::auth::passkey::PasskeyInfo;
use crate::auth::tokens::TokenView;
use crate::gate::{Authenticated, Target};
use crate::reply::{Failure, Format};
use crate::store::{AuthLevel, Store, UserState};

/// An account action: the session, the typed form (CSRF checked first, so a
/// cross-site request is refused as such whatever the session's level), the
/// level `target` needs, then `act`, then the reply (the account page, or JSON).
async fn action<F, A>(cx: &Cx<'_>, body: Incoming, target: Target<'_>, act: A) -> Answer
where
    F: DeserializeOwned,
    A: AsyncFnOnce(&Authenticated, F) -> Result<Done, Failure>,
{
    let auth = match cx.logged_in().await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let form = match cx.form::<F>(body).await {
        Ok(f) => f,
        Err(r) => return (r, Some(auth.user)),
    };
    if let Err(r) = cx.at_level(&auth, target).await {
        return (r, Some(auth.user));
    }
    let result = act(&auth, form).await;
    let r = cx.reply(result, Back::Account(&auth)).await;
    (r, Some(auth.user))
}

#[derive(Deserialize)]
struct Password {
    password: Option<String>,
}

#[derive(Serialize)]
struct Said<'a> {
    message: &'a str,
}

/// A recent login as the API lists it.
#[derive(Serialize)]
struct RecentLoginRow<'a> {
    timestamp: String,
    ip: &'a str,
    device: &'a str,
}

/// `GET api/me`.
#[derive(Serialize)]
struct Me<'a> {
    username: &'a str,
    email: &'a str,
    display_name: &'a str,
    groups: &'a [String],
    otp_enabled: bool,
    otp_required_by_policy: bool,
    totp_enabled: bool,
    second_factors: Vec<&'static str>,
    passkeys: Vec<PasskeyInfo>,
    backup_codes_left: u32,
    recent_logins: Vec<RecentLoginRow<'a>>,
    session_level: AuthLevel,
}

/// `GET account` (the page) and `GET api/me` (the same data as JSON).
pub(super) async fn view(cx: &Cx<'_>) -> Answer {
    let auth = match cx.session(Target::Account).await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    // Every notice comes from an action's own answer: text from the address
    // would let a link put any words on this trusted page.
    if cx.format == Format::Html {
        let r = cx.account_page(&auth, StatusCode::OK, Notice::default()).await;
        return (r, Some(auth.user));
    }
    let account = &cx.portal.account;
    let result = async {
        let data = account.overview(&auth.user).await?;
        let passkeys = account.passkeys(&auth.user).await?;
        let user = &auth.user;
        let recent = data.recent_logins.iter();
        let me = Me {
            username: &user.username,
            email: &user.email,
            display_name: &user.display_name,
            groups: &user.groups,
            otp_enabled: data.state.otp_enabled,
            otp_required_by_policy: account.policy_requires_two_factor(user),
            totp_enabled: data.state.totp_enabled,
            second_factors: second_factors(&data.state),
            passkeys,
            backup_codes_left: data.state.backup_codes_left,
            recent_logins: recent
                .map(|l| RecentLoginRow {
                    timestamp: super::context::format_time(l.time),
                    ip: &l.ip,
                    device: &l.device,
                })
                .collect(),
            session_level: auth.record.level,
        };
        Ok::<_, AuthError>(Done::new(me, Page::Account(Box::default())))
    };
    let r = cx.reply(result.await.map_err(Failure::from), Back::Account(&auth)).await;
    (r, Some(auth.user))
}

/// The second factors the user enrolled, by their method names.
fn second_factors(state: &UserState) -> Vec<&'static str> {
    let mut f = Vec::new();
    if state.passkey_enabled {
        f.push("passkey");
    }
    if state.totp_enabled {
        f.push("totp");
    }
    if state.otp_enabled {
        f.push("email");
    }
    f
}

#[derive(Serialize)]
struct TotpSetup<'a> {
    secret: &'a str,
    otpauth_uri: &'a str,
    qr_svg: &'a str,
}

/// `POST account/totp`, `POST api/totp/setup` (with the password): a new
/// authenticator secret, its otpauth URI and QR code, to confirm with a code.
pub(super) async fn totp_setup(cx: &Cx<'_>, body: Incoming) -> Answer {
    action(cx, body, Target::NewFactor, async |auth, form: Password| {
        let e = cx.portal.account.totp_setup(&auth.user, &auth.token, form.password.as_deref(), &cx.client()).await?;
        let view = TotpSetup { secret: &e.secret, otpauth_uri: &e.otpauth_uri, qr_svg: &e.qr_svg };
        let message = "Scan the QR code with your authenticator app, then enter the code it shows.";
        let json = serde_json::to_value(view).map_err(|_| Failure::Render)?;
        Ok(Done::account(json, Notice { message: message.into(), totp_setup: Some(e), ..Notice::default() }))
    })
    .await
}

#[derive(Deserialize)]
struct Code {
    otp_code: Option<String>,
}

#[derive(Serialize)]
struct TotpEnabled<'a> {
    totp_enabled: bool,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_codes: Option<&'a [String]>,
}

/// `POST account/totp/confirm`, `POST api/totp/confirm`: the app's first
/// code turns it on; backup codes (if new) are shown once and the session rotates.
pub(super) async fn totp_confirm(cx: &Cx<'_>, body: Incoming) -> Answer {
    action(cx, body, Target::NewFactor, async |auth, form: Code| {
        let code = form.otp_code.unwrap_or_default();
        let TotpConfirmed { backup_codes, token } =
            cx.portal.account.totp_confirm(&auth.user, &auth.token, &code, &cx.client()).await?;
        let message = match backup_codes {
            Some(_) => "Your authenticator app is set up. Store these backup codes somewhere safe.",
            None => "Your authenticator app is set up.",
        };
        let view = TotpEnabled {
            totp_enabled: true,
            message: "Authenticator app set up",
            backup_codes: backup_codes.as_deref(),
        };
        let json = serde_json::to_value(view).map_err(|_| Failure::Render)?;
        let cookie = cx.rotated(auth, &token);
        let notice = Notice {
            message: message.into(),
            backup_codes: backup_codes.unwrap_or_default(),
            new_token: Some(token),
            ..Notice::default()
        };
        Ok(Done::account(json, notice).with_cookie(cookie))
    })
    .await
}

#[derive(Deserialize)]
struct NewPasskey {
    name: Option<String>,
    password: Option<String>,
}

#[derive(Serialize)]
struct Options {
    options: serde_json::Value,
}

/// `POST api/passkey/register/start {password, name}`: the options for
/// `navigator.credentials.create` (after the password re-check).
pub(super) async fn passkey_register_start(cx: &Cx<'_>, body: Incoming) -> Answer {
    action(cx, body, Target::NewFactor, async |auth, form: NewPasskey| {
        let (name, password) = (form.name.unwrap_or_default(), form.password.as_deref());
        let account = &cx.portal.account;
        let options = account.passkey_register_start(&auth.user, &auth.token, password, &name, &cx.client()).await?;
        Ok(Done::new(Options { options }, Page::SeeOther(cx.link("/account"))))
    })
    .await
}

#[derive(Deserialize)]
struct PasskeyAnswer {
    credential: Option<String>,
}

#[derive(Serialize)]
struct PasskeyAdded<'a> {
    message: &'a str,
    passkey: PasskeyInfo,
}

/// `POST api/passkey/register/finish {credential}`: the authenticator's
/// answer adds the passkey; the session rotates.
pub(super) async fn passkey_register_finish(cx: &Cx<'_>, body: Incoming) -> Answer {
    action(cx, body, Target::NewFactor, async |auth, form: PasskeyAnswer| {
        let credential = form.credential.ok_or_else(|| Failure::Missing("credential is required".into()))?;
        let account = &cx.portal.account;
        let (passkey, token) =
            account.passkey_register_finish(&auth.user, &auth.token, &credential, &cx.client()).await?;
        let cookie = cx.rotated(auth, &token);
        let view = PasskeyAdded { message: "Passkey added", passkey };
        Ok(Done::new(view, Page::SeeOther(cx.link("/account"))).with_cookie(cookie))
    })
    .await
}

#[derive(Deserialize)]
struct RemovePasskey {
    id: Option<String>,
    password: Option<String>,
}

#[derive(Serialize)]
struct PasskeyRemoved<'a> {
    message: &'a str,
    passkeys_left: usize,
}

/// `POST account/passkey/remove`, `POST api/passkey/remove {id, password}`.
pub(super) async fn passkey_remove(cx: &Cx<'_>, body: Incoming) -> Answer {
    action(cx, body, Target::Account, async |auth, form: RemovePasskey| {
        let (id, password) = (form.id.unwrap_or_default(), form.password.as_deref());
        let left = cx.portal.account.passkey_remove(&auth.user, &auth.token, &id, password, &cx.client()).await?;
        let view = PasskeyRemoved { message: "Passkey removed", passkeys_left: left };
        Ok(Done::account(view, Notice::said("The passkey was removed.")))
    })
    .await
}

#[derive(Serialize)]
struct TotpRemoved<'a> {
    totp_enabled: bool,
    message: &'a str,
}

/// `POST account/totp/remove`, `POST api/totp/remove` (with the password).
pub(super) async fn totp_remove(cx: &Cx<'_>, body: Incoming) -> Answer {
    action(cx, body, Target::Account, async |auth, form: Password| {
        let password = form.password.as_deref();
        let toggle = cx.portal.account.totp_remove(&auth.user, &auth.token, password, &cx.client()).await?;
        let (message, page) = match toggle {
            Toggle::Changed => ("Authenticator app removed", "Your authenticator app was removed."),
            Toggle::Unchanged => ("No changes made", "No changes made."),
        };
        Ok(Done::account(TotpRemoved { totp_enabled: false, message }, Notice::said(page)))
    })
    .await
}

#[derive(Deserialize)]
struct ToggleForm {
    #[serde(default)]
    enable_otp: bool,
    password: Option<String>,
}

#[derive(Serialize)]
struct OtpState<'a> {
    otp_enabled: bool,
    message: &'a str,
}

#[derive(Serialize)]
struct VerificationRequired<'a> {
    verification_required: bool,
    message: &'a str,
    expires_in: u64,
}

/// `POST account/otp`, `POST api/toggle-otp`: `enable_otp` true e-mails a
/// confirmation code; false (with the password) turns 2FA off. Asking for
/// the state 2FA is in changes nothing, and succeeds.
pub(super) async fn toggle_otp(cx: &Cx<'_>, body: Incoming) -> Answer {
    action(cx, body, Target::Account, async |auth, form: ToggleForm| {
        let (account, client) = (&cx.portal.account, cx.client());
        let on = form.enable_otp;
        let toggle = if on {
            account.start_enable(&auth.user, &client).await?
        } else {
            account.disable(&auth.user, &auth.token, form.password.as_deref(), &client).await?
        };
        Ok(match (toggle, on) {
            (Toggle::Unchanged, _) => Done::account(
                OtpState { otp_enabled: on, message: "No changes made" },
                Notice::said("No changes made."),
            ),
            (Toggle::Changed, true) => {
                let view = VerificationRequired {
                    verification_required: true,
                    message: "Verification code sent to your e-mail",
                    expires_in: cx.portal.settings.otp_ttl_secs,
                };
                let message = "We e-mailed you a code. Enter it to turn on two-factor authentication.";
                Done::account(view, Notice { confirm_enable: true, ..Notice::said(message) })
            }
            (Toggle::Changed, false) => Done::account(
                OtpState { otp_enabled: false, message: "Two-factor authentication disabled" },
                Notice::said("Two-factor authentication is off."),
            ),
        })
    })
    .await
}

#[derive(Serialize)]
struct OtpEnabled<'a> {
    otp_enabled: bool,
    backup_codes: &'a [String],
}

/// `POST account/otp/confirm`, `POST api/confirm-enable-otp`: the e-mailed
/// code turns 2FA on; the backup codes are shown once and the session rotates.
pub(super) async fn confirm_otp(cx: &Cx<'_>, body: Incoming) -> Answer {
    let auth = match cx.logged_in().await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let form: Code = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return (r, Some(auth.user)),
    };
    if let Err(r) = cx.at_level(&auth, Target::Account).await {
        return (r, Some(auth.user));
    }
    let code = form.otp_code.unwrap_or_default();
    let result = match cx.portal.account.confirm_enable(&auth.user, &auth.token, &code, &cx.client()).await {
        Ok((codes, token)) => {
            let view = OtpEnabled { otp_enabled: true, backup_codes: &codes };
            let json = serde_json::to_value(view).unwrap_or_default();
            let cookie = cx.rotated(&auth, &token);
            let message = "Two-factor authentication is on. Store these backup codes somewhere safe.";
            let notice = Notice { backup_codes: codes, new_token: Some(token), ..Notice::said(message) };
            Ok(Done::account(json, notice).with_cookie(cookie))
        }
        Err(e) => Err(e.into()),
    };
    let r = cx.reply(result, Back::ConfirmEnable(&auth)).await;
    (r, Some(auth.user))
}

#[derive(Serialize)]
struct BackupCodes<'a> {
    backup_codes: &'a [String],
}

/// `POST account/backup-codes`, `POST api/backup-codes` (with the password).
pub(super) async fn backup_codes(cx: &Cx<'_>, body: Incoming) -> Answer {
    action(cx, body, Target::Account, async |auth, form: Password| {
        let password = form.password.as_deref();
        let codes = cx.portal.account.regenerate_backup_codes(&auth.user, &auth.token, password, &cx.client()).await?;
        let json = serde_json::to_value(BackupCodes { backup_codes: &codes }).map_err(|_| Failure::Render)?;
        let message = "New backup codes. The old ones no longer work.";
        Ok(Done::account(json, Notice { backup_codes: codes, ..Notice::said(message) }))
    })
    .await
}

#[derive(Deserialize)]
struct SessionId {
    id: Option<String>,
}

/// `POST account/sessions/revoke` (the id in the form), `DELETE api/sessions/{id}`.
pub(super) async fn revoke(cx: &Cx<'_>, body: Incoming, path_id: &str) -> Answer {
    action(cx, body, Target::Account, async |auth, form: SessionId| {
        let id = if path_id.is_empty() { form.id.unwrap_or_default() } else { path_id.to_owned() };
        cx.portal.account.revoke(&auth.user, &id, &cx.client()).await?;
        Ok(Done::account(Said { message: "Session revoked" }, Notice::said("Session signed out.")))
    })
    .await
}

#[derive(Serialize)]
struct Revoked {
    revoked: usize,
}

/// `POST account/sessions/revoke-others`, `DELETE api/sessions`.
pub(super) async fn revoke_others(cx: &Cx<'_>, body: Incoming) -> Answer {
    action(cx, body, Target::Account, async |auth, _: serde::de::IgnoredAny| {
        let n = cx.portal.account.revoke_others(&auth.user, &auth.token, &cx.client()).await?;
        Ok(Done::account(Revoked { revoked: n }, Notice::said(format!("Signed out {n} other session(s)."))))
    })
    .await
}

#[derive(Serialize)]
struct Sessions<'a> {
    sessions: Vec<SessionRow<'a>>,
}

/// `GET api/sessions`.
pub(super) async fn sessions(cx: &Cx<'_>) -> Answer {
    let auth = match cx.session(Target::Account).await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let current = Store::session_id(&auth.token);
    let result = match cx.portal.account.sessions(&auth.user).await {
        Ok(list) => {
            let rows = Sessions { sessions: list.iter().map(|s| SessionRow::of(s, &current)).collect() };
            Ok(Done::new(rows, Page::Account(Box::default())))
        }
        Err(e) => Err(Failure::from(e)),
    };
    let r = cx.reply(result, Back::Account(&auth)).await;
    (r, Some(auth.user))
}

#[derive(Deserialize)]
struct NewTokenForm {
    name: Option<String>,
    password: Option<String>,
    /// Seconds (the page's choices, or any up to a year).
    expires_in: Option<String>,
}

#[derive(Serialize)]
struct Tokens {
    tokens: Vec<TokenView>,
}

/// `POST account/tokens`, `POST api/tokens {name, password, expires_in?}`: a
/// new access token, shown once (`201`). Needs two factors, as adding a
/// factor does: a token signs requests without one.
pub(super) async fn token_create(cx: &Cx<'_>, body: Incoming) -> Answer {
    action(cx, body, Target::NewFactor, async |auth, form: NewTokenForm| {
        let lifetime = match form.expires_in.as_deref().map(str::parse::<u64>) {
            None => None,
            Some(Ok(secs)) => Some(std::time::Duration::from_secs(secs)),
            Some(Err(_)) => return Err(Failure::Missing("expires_in must be a number of seconds".into())),
        };
        let (name, password) = (form.name.unwrap_or_default(), form.password.as_deref());
        let account = &cx.portal.account;
        let token = account.create_token(&auth.user, &auth.token, password, &name, lifetime, &cx.client()).await?;
        let json = serde_json::to_value(&token).map_err(|_| Failure::Render)?;
        let message = "Your new access token is below. Copy it now: it will not be shown again.";
        Ok(Done::account(json, Notice { access_token: Some(token), ..Notice::said(message) }).created())
    })
    .await
}

/// `GET api/tokens`: the user's access tokens (never their text).
pub(super) async fn tokens(cx: &Cx<'_>) -> Answer {
    let auth = match cx.session(Target::Account).await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let result = match cx.portal.account.tokens(&auth.user).await {
        Ok(tokens) => Ok(Done::new(Tokens { tokens }, Page::Account(Box::default()))),
        Err(e) => Err(Failure::from(e)),
    };
    let r = cx.reply(result, Back::Account(&auth)).await;
    (r, Some(auth.user))
}

#[derive(Deserialize)]
struct TokenId {
    id: Option<String>,
}

/// `POST account/tokens/revoke` (the id in the form), `DELETE api/tokens/{id}`.
pub(super) async fn token_revoke(cx: &Cx<'_>, body: Incoming, path_id: &str) -> Answer {
    action(cx, body, Target::Account, async |auth, form: TokenId| {
        let id = if path_id.is_empty() { form.id.unwrap_or_default() } else { path_id.to_owned() };
        cx.portal.account.revoke_token(&auth.user, &id, &cx.client()).await?;
        Ok(Done::account(Said { message: "Token revoked" }, Notice::said("The access token was revoked.")))
    })
    .await
}
