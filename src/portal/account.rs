//! The account endpoints: the account page and `api/me`, and one handler per
//! action (toggle e-mailed codes, confirm them, set up, confirm or remove an
//! authenticator app, regenerate backup codes, revoke one session or all
//! others, list sessions), each answering a form post with the account page
//! and an API call with JSON.

use std::sync::Arc;

use http::StatusCode;
use hyper::body::Incoming;
use serde_json::json;

use super::context::{Answer, Cx};
use super::forms::Fields;
use super::pages::{AccountView, LoginRow, PasskeyRow, SessionRow, UserView};
use crate::auth::account::{AccountError, Toggle, TotpConfirmed};
use crate::auth::login::LoginError;
use crate::auth::totp::Enrolment;
use crate::auth::users::User;
use crate::body::Response;
use crate::gate::{Authenticated, Target};
use crate::reply::{self, Failure, Format};
use crate::store::Store;

/// What the account page shows beyond the stored data.
#[derive(Default)]
struct Notice<'a> {
    message: &'a str,
    error: &'a str,
    backup_codes: Vec<String>,
    confirm_enable: bool,
    /// An authenticator app being set up: its secret and QR code.
    totp_setup: Option<Enrolment>,
}

/// The account page for the session's user. `new_token` is a session token
/// just issued (2FA turned on): the page binds its forms to it and sets it.
async fn account_page(
    cx: &Cx<'_>,
    auth: &Authenticated,
    status: StatusCode,
    n: Notice<'_>,
    new_token: Option<&str>,
) -> Response {
    let portal = cx.portal;
    let data = match portal.account.overview(&auth.user).await {
        Ok(d) => d,
        Err(e) => return cx.fail(e),
    };
    let passkeys = match portal.account.passkeys(&auth.user).await {
        Ok(p) => p.into_iter().map(PasskeyRow::of).collect(),
        Err(e) => return cx.fail(e),
    };
    let adding = match portal.account.required_level(&auth.user, Target::NewFactor).await {
        Ok(level) => level,
        Err(e) => return cx.fail(e),
    };
    let account_url = format!("{}{}/account", portal.settings.public_origin, portal.settings.prefix);
    let current = Store::session_id(new_token.unwrap_or(&auth.token));
    let txt = n.backup_codes.join("\n") + "\n";
    let view = AccountView {
        chrome: portal.chrome(cx.headers, new_token, "Your account"),
        user: UserView::of(&auth.user),
        otp_enabled: data.state.otp_enabled,
        otp_required_by_policy: portal.account.policy_requires_two_factor(&auth.user),
        totp_enabled: data.state.totp_enabled,
        totp_setup: n.totp_setup.as_ref(),
        totp_digits: portal.settings.totp_digits,
        passkeys,
        passkeys_available: portal.account.passkeys_available(),
        needs_step_up: auth.record.level < adding,
        account_url: &account_url,
        backup_codes_left: data.state.backup_codes_left,
        backup_codes: &n.backup_codes,
        backup_codes_txt: form_urlencoded::byte_serialize(txt.as_bytes()).collect::<String>().replace('+', "%20"),
        confirm_enable: n.confirm_enable,
        code_digits: portal.settings.otp_digits,
        recent_logins: data.recent_logins.iter().map(LoginRow::of).collect(),
        sessions: data.sessions.iter().map(|s| SessionRow::of(s, &current)).collect(),
        message: n.message,
        error: n.error,
    };
    let mut r = portal.page(status, "account.html", &view);
    if let Some(t) = new_token {
        reply::set_cookie(&mut r, portal.cookies.session(t, remembered(cx, auth)));
    }
    r
}

/// The cookie lifetime of the session's kind (remember-me, or the browser session).
fn remembered(cx: &Cx<'_>, auth: &Authenticated) -> Option<std::time::Duration> {
    auth.record.remember_me.then_some(cx.portal.settings.remember_me)
}

/// A failed action: the account page with the error, or the JSON error.
async fn failed(cx: &Cx<'_>, auth: &Authenticated, e: AccountError) -> Response {
    match cx.format {
        Format::Json => cx.fail(e),
        Format::Html => {
            let e = Failure::from(e).explain(Format::Html);
            let mut r = account_page(cx, auth, e.status, Notice { error: &e.message, ..Notice::default() }, None).await;
            if let Some(s) = e.retry_after {
                reply::retry_after(&mut r, s);
            }
            r
        }
    }
}

/// The session (at the level `target` needs) and the form of an account
/// action, or the answer already made.
async fn begin(cx: &Cx<'_>, body: Incoming, target: Target<'_>) -> Result<(Authenticated, Fields), Answer> {
    let auth = cx.session(target).await.map_err(|r| (r, None))?;
    match cx.form(body).await {
        Ok(fields) => Ok((auth, fields)),
        Err(r) => Err((r, Some(auth.user))),
    }
}

fn user_of(auth: &Authenticated) -> Option<Arc<User>> {
    Some(auth.user.clone())
}

/// `GET account` (the page) and `GET api/me` (the same data as JSON).
pub(super) async fn view(cx: &Cx<'_>) -> Answer {
    let auth = match cx.session(Target::Account).await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let r = match cx.format {
        // Every notice comes from an action's own answer: text from the
        // address would let a link put any words on this trusted page.
        Format::Html => account_page(cx, &auth, StatusCode::OK, Notice::default(), None).await,
        Format::Json => match cx.portal.account.overview(&auth.user).await {
            Err(e) => cx.fail(e),
            Ok(data) => {
                let passkeys = match cx.portal.account.passkeys(&auth.user).await {
                    Ok(p) => p,
                    Err(e) => return (cx.fail(e), user_of(&auth)),
                };
                let user = &auth.user;
                let recent: Vec<_> = data
                    .recent_logins
                    .iter()
                    .map(|l| json!({"timestamp": super::context::format_time(l.time), "ip": l.ip, "device": l.device}))
                    .collect();
                let body = json!({
                    "success": true,
                    "username": user.username,
                    "email": user.email,
                    "display_name": user.display_name,
                    "groups": user.groups,
                    "otp_enabled": data.state.otp_enabled,
                    "otp_required_by_policy": cx.portal.account.policy_requires_two_factor(&auth.user),
                    "totp_enabled": data.state.totp_enabled,
                    "second_factors": second_factors(&data.state),
                    "passkeys": passkeys,
                    "backup_codes_left": data.state.backup_codes_left,
                    "recent_logins": recent,
                    "session_level": auth.record.level,
                });
                reply::json(StatusCode::OK, &body)
            }
        },
    };
    (r, Some(auth.user))
}

/// The second factors the user enrolled, by their method names.
fn second_factors(state: &crate::store::UserState) -> Vec<&'static str> {
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

/// `POST account/totp`, `POST api/totp/setup` (with the password): a new
/// authenticator secret, its otpauth URI and QR code, to confirm with a code.
pub(super) async fn totp_setup(cx: &Cx<'_>, body: Incoming) -> Answer {
    let (auth, fields) = match begin(cx, body, Target::NewFactor).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let result = cx.portal.account.totp_setup(&auth.user, &auth.token, fields.get("password"), &cx.client()).await;
    let r = match (result, cx.format) {
        (Ok(enrolment), Format::Html) => {
            let n = Notice {
                message: "Scan the QR code with your authenticator app, then enter the code it shows.",
                totp_setup: Some(enrolment),
                ..Notice::default()
            };
            account_page(cx, &auth, StatusCode::OK, n, None).await
        }
        (Ok(e), Format::Json) => reply::json(
            StatusCode::OK,
            &json!({"success": true, "secret": e.secret, "otpauth_uri": e.otpauth_uri, "qr_svg": e.qr_svg}),
        ),
        (Err(e), _) => failed(cx, &auth, e).await,
    };
    (r, user_of(&auth))
}

/// `POST account/totp/confirm`, `POST api/totp/confirm`: the app's first
/// code turns it on; backup codes (if new) are shown once and the session rotates.
pub(super) async fn totp_confirm(cx: &Cx<'_>, body: Incoming) -> Answer {
    let (auth, fields) = match begin(cx, body, Target::NewFactor).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let code = fields.get("otp_code").unwrap_or("");
    let result = cx.portal.account.totp_confirm(&auth.user, &auth.token, code, &cx.client()).await;
    let r = match (result, cx.format) {
        (Ok(TotpConfirmed { backup_codes, token }), Format::Html) => {
            let n = Notice {
                message: if backup_codes.is_some() {
                    "Your authenticator app is set up. Store these backup codes somewhere safe."
                } else {
                    "Your authenticator app is set up."
                },
                backup_codes: backup_codes.unwrap_or_default(),
                ..Notice::default()
            };
            account_page(cx, &auth, StatusCode::OK, n, Some(&token)).await
        }
        (Ok(TotpConfirmed { backup_codes, token }), Format::Json) => {
            let mut body = json!({"success": true, "totp_enabled": true, "message": "Authenticator app set up"});
            if let Some(codes) = backup_codes {
                body["backup_codes"] = json!(codes);
            }
            let mut r = reply::json(StatusCode::OK, &body);
            reply::set_cookie(&mut r, cx.portal.cookies.session(&token, remembered(cx, &auth)));
            r
        }
        (Err(e), _) => failed(cx, &auth, e).await,
    };
    (r, user_of(&auth))
}

/// `POST api/passkey/register/start {password, name}`: the options for
/// `navigator.credentials.create` (after the password re-check).
pub(super) async fn passkey_register_start(cx: &Cx<'_>, body: Incoming) -> Answer {
    let (auth, fields) = match begin(cx, body, Target::NewFactor).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let name = fields.get("name").unwrap_or("");
    let result = cx
        .portal
        .account
        .passkey_register_start(&auth.user, &auth.token, fields.get("password"), name, &cx.client())
        .await;
    let r = match result {
        Ok(options) => reply::json(StatusCode::OK, &json!({"success": true, "options": options})),
        Err(e) => cx.fail(e),
    };
    (r, user_of(&auth))
}

/// `POST api/passkey/register/finish {credential}`: the authenticator's
/// answer adds the passkey; the session rotates to two factors.
pub(super) async fn passkey_register_finish(cx: &Cx<'_>, body: Incoming) -> Answer {
    let (auth, fields) = match begin(cx, body, Target::NewFactor).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let Some(credential) = fields.get("credential") else {
        return (cx.fail(Failure::Missing("credential is required".into())), user_of(&auth));
    };
    let result = cx.portal.account.passkey_register_finish(&auth.user, &auth.token, credential, &cx.client()).await;
    let r = match result {
        Ok((info, token)) => {
            let body = json!({"success": true, "message": "Passkey added", "passkey": info});
            let mut r = reply::json(StatusCode::OK, &body);
            reply::set_cookie(&mut r, cx.portal.cookies.session(&token, remembered(cx, &auth)));
            r
        }
        Err(e) => cx.fail(e),
    };
    (r, user_of(&auth))
}

/// `POST account/passkey/remove`, `POST api/passkey/remove {id, password}`.
pub(super) async fn passkey_remove(cx: &Cx<'_>, body: Incoming) -> Answer {
    let (auth, fields) = match begin(cx, body, Target::Account).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let id = fields.get("id").unwrap_or("");
    let result =
        cx.portal.account.passkey_remove(&auth.user, &auth.token, id, fields.get("password"), &cx.client()).await;
    let r = match (result, cx.format) {
        (Ok(_), Format::Html) => {
            let n = Notice { message: "The passkey was removed.", ..Notice::default() };
            account_page(cx, &auth, StatusCode::OK, n, None).await
        }
        (Ok(left), Format::Json) => {
            reply::json(StatusCode::OK, &json!({"success": true, "message": "Passkey removed", "passkeys_left": left}))
        }
        (Err(e), _) => failed(cx, &auth, e).await,
    };
    (r, user_of(&auth))
}

/// `POST account/totp/remove`, `POST api/totp/remove` (with the password).
pub(super) async fn totp_remove(cx: &Cx<'_>, body: Incoming) -> Answer {
    let (auth, fields) = match begin(cx, body, Target::Account).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let result = cx.portal.account.totp_remove(&auth.user, &auth.token, fields.get("password"), &cx.client()).await;
    let r = match (result, cx.format) {
        (Ok(toggle), Format::Html) => {
            let message = match toggle {
                Toggle::Changed => "Your authenticator app was removed.",
                Toggle::Unchanged => "No changes made.",
            };
            account_page(cx, &auth, StatusCode::OK, Notice { message, ..Notice::default() }, None).await
        }
        (Ok(toggle), Format::Json) => {
            let message = match toggle {
                Toggle::Changed => "Authenticator app removed",
                Toggle::Unchanged => "No changes made",
            };
            reply::json(StatusCode::OK, &json!({"success": true, "totp_enabled": false, "message": message}))
        }
        (Err(e), _) => failed(cx, &auth, e).await,
    };
    (r, user_of(&auth))
}

/// `POST account/otp`, `POST api/toggle-otp`: `enable_otp` true e-mails a
/// confirmation code; false (with the password) turns 2FA off.
pub(super) async fn toggle_otp(cx: &Cx<'_>, body: Incoming) -> Answer {
    let (auth, fields) = match begin(cx, body, Target::Account).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let account = &cx.portal.account;
    let client = cx.client();
    let r = if fields.flag("enable_otp") {
        match (account.start_enable(&auth.user, &client).await, cx.format) {
            (Ok(Toggle::Unchanged), _) => unchanged(cx, &auth, true).await,
            (Ok(Toggle::Changed), Format::Html) => {
                let n = Notice {
                    message: "We e-mailed you a code. Enter it to turn on two-factor authentication.",
                    confirm_enable: true,
                    ..Notice::default()
                };
                account_page(cx, &auth, StatusCode::OK, n, None).await
            }
            (Ok(Toggle::Changed), Format::Json) => reply::json(
                StatusCode::OK,
                &json!({
                    "success": true,
                    "verification_required": true,
                    "message": "Verification code sent to your e-mail",
                    "expires_in": cx.portal.settings.otp_ttl_secs,
                }),
            ),
            (Err(e), _) => failed(cx, &auth, e).await,
        }
    } else {
        match (account.disable(&auth.user, &auth.token, fields.get("password"), &client).await, cx.format) {
            (Ok(Toggle::Unchanged), _) => unchanged(cx, &auth, false).await,
            (Ok(Toggle::Changed), Format::Html) => {
                let n = Notice { message: "Two-factor authentication is off.", ..Notice::default() };
                account_page(cx, &auth, StatusCode::OK, n, None).await
            }
            (Ok(Toggle::Changed), Format::Json) => reply::json(
                StatusCode::OK,
                &json!({"success": true, "otp_enabled": false, "message": "Two-factor authentication disabled"}),
            ),
            (Err(e), _) => failed(cx, &auth, e).await,
        }
    };
    (r, user_of(&auth))
}

/// The answer to turning 2FA to the state it is in: nothing to do, which is
/// a success.
async fn unchanged(cx: &Cx<'_>, auth: &Authenticated, otp_enabled: bool) -> Response {
    match cx.format {
        Format::Html => {
            let n = Notice { message: "No changes made.", ..Notice::default() };
            account_page(cx, auth, StatusCode::OK, n, None).await
        }
        Format::Json => reply::json(
            StatusCode::OK,
            &json!({"success": true, "otp_enabled": otp_enabled, "message": "No changes made"}),
        ),
    }
}

/// `POST account/otp/confirm`, `POST api/confirm-enable-otp`: the e-mailed
/// code turns 2FA on; the backup codes are shown once and the session rotates.
pub(super) async fn confirm_otp(cx: &Cx<'_>, body: Incoming) -> Answer {
    let (auth, fields) = match begin(cx, body, Target::Account).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let code = fields.get("otp_code").unwrap_or("");
    let result = cx.portal.account.confirm_enable(&auth.user, &auth.token, code, &cx.client()).await;
    let r = match (result, cx.format) {
        (Ok((codes, token)), Format::Html) => {
            let n = Notice {
                message: "Two-factor authentication is on. Store these backup codes somewhere safe.",
                backup_codes: codes,
                ..Notice::default()
            };
            account_page(cx, &auth, StatusCode::OK, n, Some(&token)).await
        }
        (Ok((codes, token)), Format::Json) => {
            let mut r =
                reply::json(StatusCode::OK, &json!({"success": true, "otp_enabled": true, "backup_codes": codes}));
            reply::set_cookie(&mut r, cx.portal.cookies.session(&token, remembered(cx, &auth)));
            r
        }
        (Err(e), Format::Html) => {
            // A dead code cannot be retried: the page offers to send a new one.
            let dead = matches!(e, AccountError::Login(LoginError::MaxAttempts | LoginError::Expired));
            let e = Failure::from(e).explain(Format::Html);
            let n = Notice { error: &e.message, confirm_enable: !dead, ..Notice::default() };
            account_page(cx, &auth, e.status, n, None).await
        }
        (Err(e), Format::Json) => cx.fail(e),
    };
    (r, user_of(&auth))
}

/// `POST account/backup-codes`, `POST api/backup-codes` (with the password).
pub(super) async fn backup_codes(cx: &Cx<'_>, body: Incoming) -> Answer {
    let (auth, fields) = match begin(cx, body, Target::Account).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let password = fields.get("password");
    let result = cx.portal.account.regenerate_backup_codes(&auth.user, &auth.token, password, &cx.client()).await;
    let r = match (result, cx.format) {
        (Ok(codes), Format::Html) => {
            let n = Notice {
                message: "New backup codes. The old ones no longer work.",
                backup_codes: codes,
                ..Notice::default()
            };
            account_page(cx, &auth, StatusCode::OK, n, None).await
        }
        (Ok(codes), Format::Json) => reply::json(StatusCode::OK, &json!({"success": true, "backup_codes": codes})),
        (Err(e), _) => failed(cx, &auth, e).await,
    };
    (r, user_of(&auth))
}

/// `POST account/sessions/revoke` (the id in the form), `DELETE api/sessions/{id}`.
pub(super) async fn revoke(cx: &Cx<'_>, body: Incoming, path_id: &str) -> Answer {
    let (auth, fields) = match begin(cx, body, Target::Account).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let id = if path_id.is_empty() { fields.get("id").unwrap_or("") } else { path_id };
    let r = match (cx.portal.account.revoke(&auth.user, id, &cx.client()).await, cx.format) {
        (Ok(()), Format::Html) => {
            let n = Notice { message: "Session signed out.", ..Notice::default() };
            account_page(cx, &auth, StatusCode::OK, n, None).await
        }
        (Ok(()), Format::Json) => reply::json(StatusCode::OK, &json!({"success": true, "message": "Session revoked"})),
        (Err(e), _) => failed(cx, &auth, e).await,
    };
    (r, user_of(&auth))
}

/// `POST account/sessions/revoke-others`, `DELETE api/sessions`.
pub(super) async fn revoke_others(cx: &Cx<'_>, body: Incoming) -> Answer {
    let (auth, _) = match begin(cx, body, Target::Account).await {
        Ok(b) => b,
        Err(a) => return a,
    };
    let r = match (cx.portal.account.revoke_others(&auth.user, &auth.token, &cx.client()).await, cx.format) {
        (Ok(n), Format::Html) => {
            let msg = format!("Signed out {n} other session(s).");
            account_page(cx, &auth, StatusCode::OK, Notice { message: &msg, ..Notice::default() }, None).await
        }
        (Ok(n), Format::Json) => reply::json(StatusCode::OK, &json!({"success": true, "revoked": n})),
        (Err(e), _) => failed(cx, &auth, e).await,
    };
    (r, user_of(&auth))
}

/// `GET api/sessions`.
pub(super) async fn sessions(cx: &Cx<'_>) -> Answer {
    let auth = match cx.session(Target::Account).await {
        Ok(a) => a,
        Err(r) => return (r, None),
    };
    let current = Store::session_id(&auth.token);
    let r = match cx.portal.account.sessions(&auth.user).await {
        Ok(list) => {
            let rows: Vec<_> = list.iter().map(|s| SessionRow::of(s, &current)).collect();
            reply::json(StatusCode::OK, &json!({"success": true, "sessions": rows}))
        }
        Err(e) => cx.fail(e),
    };
    (r, Some(auth.user))
}
