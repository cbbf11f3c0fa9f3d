//! The login endpoints, each serving the browser flow (form posts answered by
//! a 303, or the form again with the error, so everything works with
//! JavaScript off) and the JSON API: password, a code (from the authenticator
//! app or e-mail) or backup code, resend, logout, and the pages that show the
//! forms. Each handler reads its typed form and returns what happened
//! (`outcome::Done` or a `Failure`); `Cx::reply` renders it.

use http::StatusCode;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::context::Cx;
use super::outcome::{Back, CodeNotice, Done, Page};
use super::pages::{LogoutView, code_form, login_form, step_up_form};
use crate::auth::error::{AuthError, Factor};
use crate::auth::login::{Completed, PasswordOutcome};
use crate::body::Response;
use crate::reply::{self, Failure, Format};
use crate::store::AuthLevel;

/// The second factor a request names in `method` (`totp`, `email`,
/// `backup_code`); absent means the e-mailed code. Err: an unknown name.
fn factor_named(method: Option<&str>) -> Result<Option<Factor>, Failure> {
    match method {
        None => Ok(None),
        Some("totp") => Ok(Some(Factor::Totp)),
        Some("email") => Ok(Some(Factor::Email)),
        Some("backup_code") => Ok(Some(Factor::BackupCode)),
        Some(_) => Err(Failure::Missing("method must be \"totp\" or \"email\"".into())),
    }
}

/// What the API answers when a second factor is asked for.
#[derive(Serialize)]
struct SecondFactorAsked<'a> {
    otp_required: bool,
    message: &'a str,
    expires_in: u64,
    /// The second factors the user may give (`Factor::as_str`).
    methods: &'a [&'static str],
}

/// What the API answers when a login completed.
#[derive(Serialize)]
struct LoggedIn<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    otp_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    redirect_url: &'a str,
}

/// A password or step-up step that asks for a second factor: the browser
/// goes to the code page, the API is told how; the pending login's cookie
/// either way.
fn second_factor_asked(cx: &Cx<'_>, outcome: PasswordOutcome) -> Result<Done, Failure> {
    let (token, message, expires_in, methods, page) = match outcome {
        PasswordOutcome::CodeSent { pending_token, masked_email, expires_in, methods } => {
            (pending_token, format!("Verification code sent to {masked_email}"), expires_in, methods, "/otp?sent=1")
        }
        // Nothing was e-mailed: `resend-otp {"method": "email"}` sends a code.
        PasswordOutcome::AppCodeAsked { pending_token, expires_in, methods, .. } => {
            (pending_token, "Enter the code from your authenticator app".to_owned(), expires_in, methods, "/otp")
        }
        PasswordOutcome::Done(_) => return Err(Failure::Render),
    };
    let view = SecondFactorAsked { otp_required: true, message: &message, expires_in, methods: &methods };
    let portal = cx.portal;
    Ok(Done::new(view, Page::SeeOther(cx.link(page)))
        .with_cookie(portal.cookies.pending(&token, portal.settings.pending_login_ttl)))
}

/// A completed login: to its return address, with the new session's cookie
/// (the browser's previous session ends, and the pending cookie goes).
async fn logged_in(cx: &Cx<'_>, done: &Completed, view: LoggedIn<'_>) -> Done {
    let portal = cx.portal;
    let [session, pending] = portal.finish_login(cx.headers, done).await;
    Done::new(view, Page::SeeOther(done.redirect.clone())).with_cookie(session).with_cookie(pending)
}

#[derive(Deserialize)]
struct ReturnTo {
    rd: Option<String>,
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
    let form: ReturnTo = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let rd = cx.portal.redirects.validate(form.rd.as_deref().or(cx.query().get("rd")));
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
    let result = result.map_err(Failure::from).and_then(|outcome| second_factor_asked(cx, outcome));
    cx.reply(result, Back::StepUp { rd: rd.as_deref(), username: &auth.user.username }).await
}

#[derive(Deserialize)]
struct PasswordForm {
    username_or_email: Option<String>,
    password: Option<String>,
    #[serde(default)]
    remember_me: bool,
    rd: Option<String>,
}

/// `POST login`, `POST api/send-login-otp`: the password step.
pub(super) async fn password(cx: &Cx<'_>, body: Incoming) -> Response {
    let form: PasswordForm = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let rd = cx.portal.redirects.validate(form.rd.as_deref().or(cx.query().get("rd")));
    let name = form.username_or_email.as_deref();
    let back = Back::Login { rd: rd.as_deref(), username: name.unwrap_or("") };
    let result = match (name, form.password.as_deref()) {
        (Some(name), Some(password)) => {
            let client = cx.client();
            match cx.portal.login.password_step(name, password, form.remember_me, rd.clone(), &client).await {
                Ok(PasswordOutcome::Done(done)) => {
                    let view = LoggedIn { otp_required: Some(false), message: None, redirect_url: &done.redirect };
                    Ok(logged_in(cx, &done, view).await)
                }
                Ok(asked) => second_factor_asked(cx, asked),
                Err(e) => Err(e.into()),
            }
        }
        _ => Err(Failure::Missing(match cx.format {
            Format::Html => "Please enter your username and password.".into(),
            Format::Json => "username_or_email and password are required".into(),
        })),
    };
    cx.reply(result, back).await
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
        error: "",
        info: if sent { "We e-mailed you a verification code." } else { "" },
        remaining: None,
        method,
        resend_in: if sent { cx.portal.settings.resend_cooldown_secs } else { 0 },
    };
    code_form(cx, StatusCode::OK, notice).await
}

#[derive(Deserialize)]
struct CodeForm {
    otp_code: Option<String>,
    code: Option<String>,
    method: Option<String>,
}

/// `POST otp` (a code, or a backup code in `code`), `POST api/verify-login-otp`
/// (`method`: `totp` for the authenticator app's code, `backup_code`, else the
/// e-mailed one) and `POST api/verify-backup-code` (`backup`).
pub(super) async fn code(cx: &Cx<'_>, body: Incoming, backup: bool) -> Response {
    let form: CodeForm = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let named = match factor_named(form.method.as_deref()) {
        Ok(named) => named,
        Err(e) => return cx.fail(e),
    };
    // The page's forms send either field (and the app's form its method);
    // the API names the one it means.
    let (code, method) = match cx.format {
        Format::Html => match (form.otp_code, form.code) {
            (Some(code), _) if named == Some(Factor::Totp) => (Some(code), Factor::Totp),
            (Some(code), _) => (Some(code), Factor::Email),
            (None, Some(code)) => (Some(code), Factor::BackupCode),
            (None, None) => (None, named.unwrap_or(Factor::Email)),
        },
        Format::Json if backup => (form.code, Factor::BackupCode),
        Format::Json => match named {
            Some(Factor::BackupCode) => (form.code.or(form.otp_code), Factor::BackupCode),
            Some(Factor::Totp) => (form.otp_code, Factor::Totp),
            _ => (form.otp_code, Factor::Email),
        },
    };
    let result = match code {
        Some(code) => second_factor(cx, method, &code).await,
        None if cx.format == Format::Json => {
            let field = if method == Factor::BackupCode { "code" } else { "otp_code" };
            Err(Failure::Missing(format!("{field} is required").into()))
        }
        None => Err(AuthError::Wrong { factor: method, remaining: None }.into()),
    };
    cx.reply(result, Back::Code { method }).await
}

/// The pending login's second factor `method`, answered with `code`.
async fn second_factor(cx: &Cx<'_>, method: Factor, code: &str) -> Result<Done, Failure> {
    let (login, client) = (&cx.portal.login, cx.client());
    let pending = cx.portal.cookies.pending_token(cx.headers);
    let done = match method {
        Factor::BackupCode => login.backup_step(pending, code, &client).await,
        Factor::Totp => login.totp_step(pending, code, &client).await,
        // `method` never names a passkey or a password here: a passkey's
        // answer goes to api/passkey/login/finish.
        Factor::Email | Factor::Passkey | Factor::Password => login.code_step(pending, code, &client).await,
    }?;
    let view = LoggedIn { otp_required: None, message: Some("Login successful"), redirect_url: &done.redirect };
    Ok(logged_in(cx, &done, view).await)
}

#[derive(Deserialize)]
struct ResendForm {
    method: Option<String>,
}

#[derive(Serialize)]
struct Resent<'a> {
    message: &'a str,
    expires_in: u64,
}

/// `POST otp/resend`, `POST api/resend-otp`: a new e-mailed code (`method`,
/// if given, must be `email`: also how a user with an authenticator app asks
/// for a code by e-mail instead).
pub(super) async fn resend(cx: &Cx<'_>, body: Incoming) -> Response {
    let form: ResendForm = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !matches!(factor_named(form.method.as_deref()), Ok(None | Some(Factor::Email))) {
        return cx.fail(Failure::Missing("method must be \"email\"".into()));
    }
    let pending = cx.portal.cookies.pending_token(cx.headers);
    let result = cx.portal.login.resend(pending, &cx.client()).await.map(|expires_in| {
        let view = Resent { message: "A new verification code has been sent", expires_in };
        Done::new(view, Page::SeeOther(cx.link("/otp?sent=1")))
    });
    cx.reply(result.map_err(Failure::from), Back::Code { method: Factor::Email }).await
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

#[derive(Serialize)]
struct Said<'a> {
    message: &'a str,
}

/// `POST logout`: ends the session server-side and clears the cookies.
pub(super) async fn logout(cx: &Cx<'_>, body: Incoming) -> Response {
    if let Err(r) = cx.form::<serde::de::IgnoredAny>(body).await {
        return r;
    }
    let portal = cx.portal;
    let ended = match portal.cookies.session_token(cx.headers) {
        Some(token) => portal.login.logout(token, &cx.client()).await.map_err(Failure::from),
        None => Ok(()),
    };
    let result = ended.map(|()| {
        Done::new(Said { message: "Signed out" }, Page::SeeOther(cx.link("/login?logged_out=1")))
            .with_cookie(portal.cookies.clear(&portal.cookies.session_name))
            .with_cookie(portal.cookies.clear(&portal.cookies.pending_name))
    });
    cx.reply(result, Back::ErrorPage).await
}

#[derive(Serialize)]
struct Options {
    options: serde_json::Value,
}

/// `POST api/passkey/login/start`: the options for
/// `navigator.credentials.get` for the pending login's user.
pub(super) async fn passkey_start(cx: &Cx<'_>, body: Incoming) -> Response {
    if let Err(r) = cx.form::<serde::de::IgnoredAny>(body).await {
        return r;
    }
    let pending = cx.portal.cookies.pending_token(cx.headers);
    let result = cx.portal.login.passkey_start(pending).await;
    let result = result.map(|options| Done::new(Options { options }, Page::SeeOther(cx.link("/otp"))));
    cx.reply(result.map_err(Failure::from), Back::ErrorPage).await
}

#[derive(Deserialize)]
struct PasskeyAnswer {
    credential: Option<String>,
}

/// `POST api/passkey/login/finish {credential}`: the authenticator's answer
/// completes the login at two factors.
pub(super) async fn passkey_finish(cx: &Cx<'_>, body: Incoming) -> Response {
    let form: PasskeyAnswer = match cx.form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(credential) = form.credential else {
        return cx.fail(Failure::Missing("credential is required".into()));
    };
    let pending = cx.portal.cookies.pending_token(cx.headers);
    let result = match cx.portal.login.passkey_step(pending, &credential, &cx.client()).await {
        Ok(done) => {
            let view = LoggedIn { otp_required: None, message: Some("Login successful"), redirect_url: &done.redirect };
            Ok(logged_in(cx, &done, view).await)
        }
        Err(e) => Err(e.into()),
    };
    cx.reply(result, Back::ErrorPage).await
}
