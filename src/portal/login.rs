//! The login endpoints, each serving the browser flow (form posts answered by
//! a 303, or the page again with the error, so everything works with
//! JavaScript off) and the JSON API: password, a code (from the authenticator
//! app or e-mail) or backup code, resend, logout, and the pages that show the
//! forms.

use http::StatusCode;
use hyper::body::Incoming;
use serde_json::json;

use super::context::Cx;
use super::pages::{CodeView, LoginView, LogoutView};
use crate::auth::login::{Factor, LoginError, PasswordOutcome};
use crate::body::Response;
use crate::reply::{self, Failure, Format};
use crate::store::AuthLevel;

/// The login form, with `error` or `info` shown above it.
fn login_form(cx: &Cx<'_>, status: StatusCode, rd: Option<&str>, username: &str, error: &str, info: &str) -> Response {
    let view = LoginView {
        chrome: cx.portal.chrome(cx.headers, None, "Sign in"),
        rd: rd.unwrap_or(""),
        username,
        error,
        info,
        step_up_user: None,
    };
    cx.portal.page(status, "login.html", &view)
}

/// The page that offers a one-factor session the second factor.
fn step_up_form(cx: &Cx<'_>, status: StatusCode, rd: Option<&str>, username: &str, error: &str) -> Response {
    let view = LoginView {
        chrome: cx.portal.chrome(cx.headers, None, "Verify it's you"),
        rd: rd.unwrap_or(""),
        username: "",
        error,
        info: "",
        step_up_user: Some(username),
    };
    cx.portal.page(status, "login.html", &view)
}

/// `GET login`: the password form, or for a one-factor session the offer of
/// a code (step-up).
pub(super) async fn login_page(cx: &Cx<'_>) -> Response {
    let q = cx.query();
    let rd = cx.portal.redirects.validate(q.get("rd"));
    match cx.portal.gate.authenticate(cx.headers).await {
        Ok(Some(auth)) if auth.record.level == AuthLevel::OneFactor => {
            return step_up_form(cx, StatusCode::OK, rd.as_deref(), &auth.user.username, "");
        }
        Ok(_) => {}
        Err(e) => return cx.fail(e),
    }
    let info = if q.get("logged_out").is_some() { "You have been signed out." } else { "" };
    login_form(cx, StatusCode::OK, rd.as_deref(), "", "", info)
}

/// `POST login/step-up`, `POST api/step-up`: a one-factor session asks for
/// the second factor; a code is e-mailed as after the password step.
pub(super) async fn step_up(cx: &Cx<'_>, body: Incoming) -> Response {
    let fields = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let rd = cx.portal.redirects.validate(fields.get("rd").or(cx.query().get("rd")));
    let auth = match cx.portal.gate.authenticate(cx.headers).await {
        Ok(Some(auth)) => auth,
        Ok(None) => {
            return match cx.format {
                Format::Html => reply::redirect(StatusCode::SEE_OTHER, &cx.link("/login")),
                Format::Json => cx.fail(Failure::Unauthenticated),
            };
        }
        Err(e) => return cx.fail(e),
    };
    let result = cx.portal.login.step_up(&auth.user, auth.record.remember_me, rd.clone(), &cx.client()).await;
    match result {
        Err(e) if cx.format == Format::Html => {
            let e = Failure::from(e).explain(Format::Html);
            let mut r = step_up_form(cx, e.status, rd.as_deref(), &auth.user.username, &e.message);
            if let Some(s) = e.retry_after {
                reply::retry_after(&mut r, s);
            }
            r
        }
        result => code_sent(cx, result),
    }
}

/// The answer to a password or step-up step that sent a code (or failed, as JSON).
fn code_sent(cx: &Cx<'_>, result: Result<PasswordOutcome, LoginError>) -> Response {
    let portal = cx.portal;
    match (result, cx.format) {
        (Ok(PasswordOutcome::CodeSent { pending_token, .. }), Format::Html) => {
            let mut r = reply::redirect(StatusCode::SEE_OTHER, &cx.link("/otp?sent=1"));
            reply::set_cookie(&mut r, portal.cookies.pending(&pending_token, portal.settings.pending_login_ttl));
            r
        }
        (Ok(PasswordOutcome::AppCodeAsked { pending_token, .. }), Format::Html) => {
            let mut r = reply::redirect(StatusCode::SEE_OTHER, &cx.link("/otp"));
            reply::set_cookie(&mut r, portal.cookies.pending(&pending_token, portal.settings.pending_login_ttl));
            r
        }
        (Ok(PasswordOutcome::CodeSent { pending_token, masked_email, expires_in, methods }), Format::Json) => {
            let body = json!({
                "success": true,
                "otp_required": true,
                "message": format!("Verification code sent to {masked_email}"),
                "expires_in": expires_in,
                "methods": methods,
            });
            let mut r = reply::json(StatusCode::OK, &body);
            reply::set_cookie(&mut r, portal.cookies.pending(&pending_token, portal.settings.pending_login_ttl));
            r
        }
        (Ok(PasswordOutcome::AppCodeAsked { pending_token, expires_in, methods, .. }), Format::Json) => {
            // Nothing was e-mailed: `resend-otp {"method": "email"}` sends a code.
            let body = json!({
                "success": true,
                "otp_required": true,
                "message": "Enter the code from your authenticator app",
                "expires_in": expires_in,
                "methods": methods,
            });
            let mut r = reply::json(StatusCode::OK, &body);
            reply::set_cookie(&mut r, portal.cookies.pending(&pending_token, portal.settings.pending_login_ttl));
            r
        }
        (Ok(PasswordOutcome::Done(_)), _) => cx.fail(Failure::Render),
        (Err(e), _) => cx.fail(e),
    }
}

/// `POST login`, `POST api/send-login-otp`: the password step.
pub(super) async fn password(cx: &Cx<'_>, body: Incoming) -> Response {
    let fields = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let query = cx.query();
    let rd = cx.portal.redirects.validate(fields.get("rd").or(query.get("rd")));
    let (Some(name), Some(password)) = (fields.get("username_or_email"), fields.get("password")) else {
        return match cx.format {
            Format::Html => {
                let name = fields.get("username_or_email").unwrap_or("");
                let msg = "Please enter your username and password.";
                login_form(cx, StatusCode::BAD_REQUEST, rd.as_deref(), name, msg, "")
            }
            Format::Json => cx.fail(Failure::Missing("username_or_email and password are required".into())),
        };
    };
    let portal = cx.portal;
    let result = portal.login.password_step(name, password, fields.flag("remember_me"), rd.clone(), &cx.client()).await;
    match (result, cx.format) {
        (result @ Ok(PasswordOutcome::CodeSent { .. } | PasswordOutcome::AppCodeAsked { .. }), _) => {
            code_sent(cx, result)
        }
        (Ok(PasswordOutcome::Done(done)), format) => {
            let mut r = match format {
                Format::Html => reply::redirect(StatusCode::SEE_OTHER, &done.redirect),
                Format::Json => reply::json(
                    StatusCode::OK,
                    &json!({"success": true, "otp_required": false, "redirect_url": done.redirect}),
                ),
            };
            portal.finish_login(cx.headers, &done, &mut r).await;
            r
        }
        (Err(e), Format::Html) => {
            let e = Failure::from(e).explain(Format::Html);
            let mut r = login_form(cx, e.status, rd.as_deref(), name, &e.message, "");
            if let Some(s) = e.retry_after {
                reply::retry_after(&mut r, s);
            }
            r
        }
        (Err(e), Format::Json) => cx.fail(e),
    }
}

/// What the code page shows besides the pending login.
#[derive(Default)]
struct CodeNotice<'a> {
    error: &'a str,
    info: &'a str,
    remaining: Option<u32>,
    /// The form to show: the backup code's, the e-mailed code's, or (None)
    /// the app's for a user who has one, else the e-mailed code's.
    method: Option<Factor>,
    resend_in: u64,
}

/// The second factor a request names in `method` (`totp`, `email`,
/// `backup_code`); absent means the e-mailed code. Err: an unknown name.
fn factor_named(method: Option<&str>) -> Result<Option<Factor>, ()> {
    match method {
        None => Ok(None),
        Some("totp") => Ok(Some(Factor::Totp)),
        Some("email") => Ok(Some(Factor::Email)),
        Some("backup_code") => Ok(Some(Factor::BackupCode)),
        Some(_) => Err(()),
    }
}

/// The code page for the pending login; without one, back to the login page.
async fn code_form(cx: &Cx<'_>, status: StatusCode, n: CodeNotice<'_>) -> Response {
    let pending = cx.portal.cookies.pending_token(cx.headers);
    let view = match cx.portal.login.pending_view(pending).await {
        Ok(view) => view,
        Err(LoginError::Store(e)) => return cx.fail(e),
        Err(_) => return reply::redirect(StatusCode::SEE_OTHER, &cx.link("/login")),
    };
    let method = match n.method {
        Some(m) => m,
        None if view.totp_enabled => Factor::Totp,
        None => Factor::Email,
    };
    let view = CodeView {
        chrome: cx.portal.chrome(cx.headers, None, "Verification code"),
        rd: "",
        masked_email: &view.masked_email,
        expires_in: cx.portal.settings.otp_ttl_secs,
        resend_in: n.resend_in,
        error: n.error,
        info: n.info,
        remaining_attempts: n.remaining,
        backup: method == Factor::BackupCode,
        totp: method == Factor::Totp && view.totp_enabled,
        totp_enabled: view.totp_enabled,
        passkey_enabled: view.passkey_enabled,
        code_digits: cx.portal.settings.otp_digits,
        totp_digits: cx.portal.settings.totp_digits,
    };
    cx.portal.page(status, "otp.html", &view)
}

/// `GET otp`.
pub(super) async fn code_page(cx: &Cx<'_>) -> Response {
    let q = cx.query();
    let sent = q.get("sent").is_some();
    let method = if q.get("backup").is_some() {
        Some(Factor::BackupCode)
    } else if sent {
        Some(Factor::Email)
    } else {
        factor_named(q.get("method")).unwrap_or(None)
    };
    let notice = CodeNotice {
        info: if sent { "We e-mailed you a verification code." } else { "" },
        resend_in: if sent { cx.portal.settings.resend_cooldown_secs } else { 0 },
        method,
        ..CodeNotice::default()
    };
    code_form(cx, StatusCode::OK, notice).await
}

/// `POST otp` (a code, or a backup code in `code`), `POST api/verify-login-otp`
/// (`method`: `totp` for the authenticator app's code, else the e-mailed
/// one) and `POST api/verify-backup-code` (`backup`).
pub(super) async fn code(cx: &Cx<'_>, body: Incoming, backup: bool) -> Response {
    let fields = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let portal = cx.portal;
    let pending = portal.cookies.pending_token(cx.headers);
    let client = cx.client();
    let Ok(named) = factor_named(fields.get("method")) else {
        return cx.fail(Failure::Missing("method must be \"totp\" or \"email\"".into()));
    };
    // The page's forms send either field (and the app's form its method);
    // the API names the one it means.
    let (code, method) = match cx.format {
        Format::Html => match (fields.get("otp_code"), fields.get("code")) {
            (Some(code), _) if named == Some(Factor::Totp) => (Some(code), Factor::Totp),
            (Some(code), _) => (Some(code), Factor::Email),
            (None, Some(code)) => (Some(code), Factor::BackupCode),
            (None, None) => (None, named.unwrap_or(Factor::Email)),
        },
        Format::Json if backup => (fields.get("code"), Factor::BackupCode),
        Format::Json => match named {
            Some(Factor::BackupCode) => (fields.get("code").or(fields.get("otp_code")), Factor::BackupCode),
            Some(Factor::Totp) => (fields.get("otp_code"), Factor::Totp),
            _ => (fields.get("otp_code"), Factor::Email),
        },
    };
    let result = match (code, method) {
        (Some(code), Factor::BackupCode) => portal.login.backup_step(pending, code, &client).await,
        (Some(code), Factor::Totp) => portal.login.totp_step(pending, code, &client).await,
        // `method` never names a passkey here: its answer goes to api/passkey/login/finish.
        (Some(code), Factor::Email | Factor::Passkey) => portal.login.code_step(pending, code, &client).await,
        (None, _) if cx.format == Format::Json => {
            let field = if method == Factor::BackupCode { "code" } else { "otp_code" };
            return cx.fail(Failure::Missing(format!("{field} is required").into()));
        }
        (None, _) => Err(LoginError::InvalidCode { remaining: portal.login.codes.settings().max_attempts }),
    };
    match (result, cx.format) {
        (Ok(done), format) => {
            let mut r = match format {
                Format::Html => reply::redirect(StatusCode::SEE_OTHER, &done.redirect),
                Format::Json => reply::json(
                    StatusCode::OK,
                    &json!({"success": true, "message": "Login successful", "redirect_url": done.redirect}),
                ),
            };
            portal.finish_login(cx.headers, &done, &mut r).await;
            r
        }
        (Err(LoginError::NoPendingLogin), Format::Html) => reply::redirect(StatusCode::SEE_OTHER, &cx.link("/login")),
        (Err(e), Format::Html) => {
            let remaining = match e {
                LoginError::InvalidCode { remaining } | LoginError::InvalidTotp { remaining } => Some(remaining),
                _ => None,
            };
            // The app refused for this login: the page falls back to e-mail.
            let method = match e {
                LoginError::TotpExhausted | LoginError::NoTotp => Factor::Email,
                _ => method,
            };
            let e = Failure::from(e).explain(Format::Html);
            let notice = CodeNotice { error: &e.message, remaining, method: Some(method), ..CodeNotice::default() };
            let mut r = code_form(cx, e.status, notice).await;
            if let Some(s) = e.retry_after {
                reply::retry_after(&mut r, s);
            }
            r
        }
        (Err(e), Format::Json) => cx.fail(e),
    }
}

/// `POST otp/resend`, `POST api/resend-otp`: a new e-mailed code (`method`,
/// if given, must be `email`: also how a user with an authenticator app asks
/// for a code by e-mail instead).
pub(super) async fn resend(cx: &Cx<'_>, body: Incoming) -> Response {
    let fields = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !matches!(factor_named(fields.get("method")), Ok(None | Some(Factor::Email))) {
        return cx.fail(Failure::Missing("method must be \"email\"".into()));
    }
    let pending = cx.portal.cookies.pending_token(cx.headers);
    match (cx.portal.login.resend(pending, &cx.client()).await, cx.format) {
        (Ok(_), Format::Html) => reply::redirect(StatusCode::SEE_OTHER, &cx.link("/otp?sent=1")),
        (Ok(expires_in), Format::Json) => reply::json(
            StatusCode::OK,
            &json!({"success": true, "message": "A new verification code has been sent", "expires_in": expires_in}),
        ),
        (Err(LoginError::NoPendingLogin), Format::Html) => reply::redirect(StatusCode::SEE_OTHER, &cx.link("/login")),
        (Err(e), Format::Html) => {
            let e = Failure::from(e).explain(Format::Html);
            let notice = CodeNotice {
                error: &e.message,
                resend_in: e.retry_after.unwrap_or(0),
                method: Some(Factor::Email),
                ..CodeNotice::default()
            };
            let mut r = code_form(cx, e.status, notice).await;
            if let Some(s) = e.retry_after {
                reply::retry_after(&mut r, s);
            }
            r
        }
        (Err(e), Format::Json) => cx.fail(e),
    }
}

/// `GET logout`: asks to confirm (a link alone must not sign anyone out).
pub(super) async fn logout_page(cx: &Cx<'_>) -> Response {
    let user = match cx.portal.gate.authenticate(cx.headers).await {
        Ok(a) => a.map(|a| a.user.username.clone()),
        Err(e) => return cx.fail(e),
    };
    let view = LogoutView {
        chrome: cx.portal.chrome(cx.headers, None, "Sign out"),
        username: user.as_deref().unwrap_or_default(),
    };
    cx.portal.page(StatusCode::OK, "logout.html", &view)
}

/// `POST logout`: ends the session server-side and clears the cookies.
pub(super) async fn logout(cx: &Cx<'_>, body: Incoming) -> Response {
    if let Err(r) = cx.form(body).await {
        return r;
    }
    let portal = cx.portal;
    if let Some(token) = portal.cookies.session_token(cx.headers)
        && let Err(e) = portal.login.logout(token, &cx.client()).await
    {
        return cx.fail(e);
    }
    let mut r = match cx.format {
        Format::Json => reply::json(StatusCode::OK, &json!({"success": true, "message": "Signed out"})),
        Format::Html => reply::redirect(StatusCode::SEE_OTHER, &cx.link("/login?logged_out=1")),
    };
    reply::set_cookie(&mut r, portal.cookies.clear(&portal.cookies.session_name));
    reply::set_cookie(&mut r, portal.cookies.clear(&portal.cookies.pending_name));
    r
}

/// `POST api/passkey/login/start`: the options for
/// `navigator.credentials.get` for the pending login's user.
pub(super) async fn passkey_start(cx: &Cx<'_>, body: Incoming) -> Response {
    if let Err(r) = cx.form(body).await {
        return r;
    }
    let pending = cx.portal.cookies.pending_token(cx.headers);
    match cx.portal.login.passkey_start(pending).await {
        Ok(options) => reply::json(StatusCode::OK, &json!({"success": true, "options": options})),
        Err(e) => cx.fail(e),
    }
}

/// `POST api/passkey/login/finish {credential}`: the authenticator's answer
/// completes the login at two factors.
pub(super) async fn passkey_finish(cx: &Cx<'_>, body: Incoming) -> Response {
    let fields = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(credential) = fields.get("credential") else {
        return cx.fail(Failure::Missing("credential is required".into()));
    };
    let portal = cx.portal;
    let pending = portal.cookies.pending_token(cx.headers);
    match portal.login.passkey_step(pending, credential, &cx.client()).await {
        Ok(done) => {
            let mut r = reply::json(
                StatusCode::OK,
                &json!({"success": true, "message": "Login successful", "redirect_url": done.redirect}),
            );
            portal.finish_login(cx.headers, &done, &mut r).await;
            r
        }
        Err(e) => cx.fail(e),
    }
}
