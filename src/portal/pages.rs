//! The HTML flow: login, code entry, resend, logout and the account page. Every
//! step is a plain form post answered by a 303 (or the page again with an
//! error), so it all works with JavaScript off.

use http::{HeaderMap, StatusCode, Uri};
use hyper::body::Incoming;
use serde_json::json;

use crate::app::App;
use crate::auth::login::{self, LoginError, PasswordOutcome};
use crate::body::Response;
use crate::portal::outcome::failure;
use crate::portal::request::{self, Fields};
use crate::portal::{self as portal, respond};
use crate::router::RequestInfo;

/// A page about to be rendered: its template context, and the anonymous CSRF
/// cookie to set when the visitor had nothing to bind the form's token to.
pub(crate) struct Page {
    pub ctx: tera::Context,
    csrf_cookie: Option<http::HeaderValue>,
}

pub(crate) fn base_context(app: &App, headers: &HeaderMap, binding_override: Option<&str>) -> Page {
    let mut ctx = tera::Context::new();
    ctx.insert("prefix", &app.prefix);
    ctx.insert("app_name", &app.config.auth.app_name);
    let (binding, csrf_cookie) = match binding_override.or_else(|| request::csrf_binding(app, headers)) {
        Some(b) => (b.to_owned(), None),
        None => {
            let fresh = crate::session::new_token();
            let cookie = app.cookies.csrf(&fresh);
            (fresh, Some(cookie))
        }
    };
    ctx.insert("csrf_token", &request::csrf_token(&app.secret, &binding));
    Page { ctx, csrf_cookie }
}

pub(crate) fn render(app: &App, status: StatusCode, name: &str, page: &Page) -> Response {
    let mut r = match app.templates.render(name, &page.ctx) {
        Ok(html) => respond::html(status, html),
        Err(e) => {
            tracing::error!(error = %e, "page failed to render");
            return respond::error(app, StatusCode::INTERNAL_SERVER_ERROR, "This page could not be shown.", true);
        }
    };
    if let Some(c) = &page.csrf_cookie {
        r.headers_mut().append(http::header::SET_COOKIE, c.clone());
    }
    r
}

fn login_page(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    rd: Option<&str>,
    username: &str,
    error: &str,
    info: &str,
) -> Response {
    let mut page = base_context(app, headers, None);
    page.ctx.insert("rd", rd.unwrap_or(""));
    page.ctx.insert("username", username);
    page.ctx.insert("error", error);
    page.ctx.insert("info", info);
    page.ctx.insert("title", "Sign in");
    render(app, status, "login.html", &page)
}

pub async fn get_login(app: &App, uri: &Uri, headers: &HeaderMap) -> Response {
    let q = request::query(uri);
    let rd = request::validate_rd(app, q.get("rd"));
    let info = if q.get("logged_out").is_some() { "You have been signed out." } else { "" };
    login_page(app, headers, StatusCode::OK, rd.as_deref(), "", "", info)
}

pub async fn post_login(app: &App, uri: &Uri, headers: &HeaderMap, body: Incoming, info: &RequestInfo) -> Response {
    let fields = match read_form(app, headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let q = request::query(uri);
    let rd = request::validate_rd(app, fields.get("rd").or(q.get("rd")));
    let name = fields.get("username_or_email").unwrap_or("");
    let (Some(_), Some(password)) = (fields.get("username_or_email"), fields.get("password")) else {
        return login_page(
            app,
            headers,
            StatusCode::BAD_REQUEST,
            rd.as_deref(),
            name,
            "Please enter your username and password.",
            "",
        );
    };
    let client = portal::client(info, headers);
    match login::password_step(app, name, password, fields.flag("remember_me"), rd.clone(), &client).await {
        Ok(PasswordOutcome::CodeSent { pending_token, .. }) => {
            let mut r = respond::redirect(StatusCode::SEE_OTHER, &format!("{}/otp?sent=1", app.prefix));
            respond::set_cookie(&mut r, app.cookies.pending(&pending_token, app.config.session.pending_login_ttl));
            r
        }
        Ok(PasswordOutcome::Done(done)) => {
            let mut r = respond::redirect(StatusCode::SEE_OTHER, &done.redirect);
            portal::finish_login(app, headers, &done, &mut r).await;
            r
        }
        Err(e) => {
            let f = failure(&e);
            let mut r = login_page(app, headers, f.status, rd.as_deref(), name, &f.message, "");
            if let Some(s) = f.retry_after {
                respond::retry_after(&mut r, s);
            }
            r
        }
    }
}

/// Reads a form body and checks CSRF; failures come back as pages.
pub(crate) async fn read_form(app: &App, headers: &HeaderMap, body: Incoming) -> Result<Fields, Response> {
    let fields = match request::read_fields(headers, body).await {
        Ok(f) => f,
        Err(request::BodyError::TooLarge) => {
            return Err(respond::error(app, StatusCode::PAYLOAD_TOO_LARGE, "The form was too large.", true));
        }
        Err(request::BodyError::Invalid) => {
            return Err(respond::error(app, StatusCode::BAD_REQUEST, "The form could not be read.", true));
        }
    };
    if !request::csrf_ok(app, headers, &fields) {
        return Err(respond::error(
            app,
            StatusCode::FORBIDDEN,
            "This form was sent from another site, or has expired. Reload the page and try again.",
            true,
        ));
    }
    Ok(fields)
}

struct OtpView<'a> {
    error: &'a str,
    info: &'a str,
    remaining: Option<u32>,
    backup: bool,
    resend_in: u64,
}

async fn otp_page(app: &App, headers: &HeaderMap, status: StatusCode, v: OtpView<'_>) -> Response {
    let pending = portal::pending_cookie(app, headers);
    let view = match login::pending_view(app, pending).await {
        Ok(view) => view,
        Err(LoginError::Store(e)) => return crate::router::store_unavailable(app, &e, true),
        Err(_) => {
            return respond::redirect(StatusCode::SEE_OTHER, &format!("{}/login", app.prefix));
        }
    };
    let mut page = base_context(app, headers, None);
    page.ctx.insert("title", "Verification code");
    page.ctx.insert("rd", "");
    page.ctx.insert("masked_email", &view.masked_email);
    page.ctx.insert("expires_in", &app.config.otp.ttl.as_secs());
    page.ctx.insert("resend_in", &v.resend_in);
    page.ctx.insert("error", v.error);
    page.ctx.insert("info", v.info);
    page.ctx.insert("remaining_attempts", &v.remaining);
    page.ctx.insert("backup", &v.backup);
    render(app, status, "otp.html", &page)
}

pub async fn get_otp(app: &App, uri: &Uri, headers: &HeaderMap) -> Response {
    let q = request::query(uri);
    let sent = q.get("sent").is_some();
    let info = if sent { "We e-mailed you a verification code." } else { "" };
    let resend_in = if sent { app.config.otp.resend_cooldown.as_secs() } else { 0 };
    let view = OtpView { error: "", info, remaining: None, backup: q.get("backup").is_some(), resend_in };
    otp_page(app, headers, StatusCode::OK, view).await
}

pub async fn post_otp(app: &App, headers: &HeaderMap, body: Incoming, info: &RequestInfo) -> Response {
    let fields = match read_form(app, headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let pending = portal::pending_cookie(app, headers);
    let client = portal::client(info, headers);
    let backup = fields.get("code").is_some() && fields.get("otp_code").is_none();
    let result = match (fields.get("otp_code"), fields.get("code")) {
        (Some(code), _) => login::code_step(app, pending, code, &client).await,
        (None, Some(code)) => login::backup_step(app, pending, code, &client).await,
        (None, None) => Err(LoginError::InvalidCode { remaining: app.config.otp.max_attempts }),
    };
    match result {
        Ok(done) => {
            let mut r = respond::redirect(StatusCode::SEE_OTHER, &done.redirect);
            portal::finish_login(app, headers, &done, &mut r).await;
            r
        }
        Err(LoginError::NoPendingLogin) => respond::redirect(StatusCode::SEE_OTHER, &format!("{}/login", app.prefix)),
        Err(e) => {
            let f = failure(&e);
            let remaining = match e {
                LoginError::InvalidCode { remaining } => Some(remaining),
                _ => None,
            };
            let view = OtpView { error: &f.message, info: "", remaining, backup, resend_in: 0 };
            let mut r = otp_page(app, headers, f.status, view).await;
            if let Some(s) = f.retry_after {
                respond::retry_after(&mut r, s);
            }
            r
        }
    }
}

pub async fn post_resend(app: &App, headers: &HeaderMap, body: Incoming, info: &RequestInfo) -> Response {
    if let Err(r) = read_form(app, headers, body).await {
        return r;
    }
    let client = portal::client(info, headers);
    match login::resend(app, portal::pending_cookie(app, headers), &client).await {
        Ok(_) => respond::redirect(StatusCode::SEE_OTHER, &format!("{}/otp?sent=1", app.prefix)),
        Err(LoginError::NoPendingLogin) => respond::redirect(StatusCode::SEE_OTHER, &format!("{}/login", app.prefix)),
        Err(e) => {
            let f = failure(&e);
            let wait = f.retry_after.unwrap_or(0);
            let view = OtpView { error: &f.message, info: "", remaining: None, backup: false, resend_in: wait };
            let mut r = otp_page(app, headers, f.status, view).await;
            if let Some(s) = f.retry_after {
                respond::retry_after(&mut r, s);
            }
            r
        }
    }
}

pub async fn get_logout(app: &App, headers: &HeaderMap) -> Response {
    let user = match crate::router::authenticate(app, headers).await {
        Ok(a) => a.map(|a| a.user.username.clone()),
        Err(e) => return crate::router::store_unavailable(app, &e, true),
    };
    let mut page = base_context(app, headers, None);
    page.ctx.insert("title", "Sign out");
    page.ctx.insert("username", &user.unwrap_or_default());
    render(app, StatusCode::OK, "logout.html", &page)
}

pub async fn post_logout(app: &App, headers: &HeaderMap, body: Incoming, as_json: bool) -> Response {
    let fields =
        if as_json { crate::portal::api::form(app, headers, body).await } else { read_form(app, headers, body).await };
    if let Err(r) = fields {
        return r;
    }
    if let Some(token) = crate::proxy::headers::cookie_value(headers, &app.cookies.session_name)
        && crate::session::plausible_token(token)
        && let Err(e) = app.store.delete_session(token).await
    {
        return crate::router::store_unavailable(app, &e, !as_json);
    }
    let mut r = if as_json {
        respond::json(StatusCode::OK, &json!({"success": true, "message": "Signed out"}))
    } else {
        respond::redirect(StatusCode::SEE_OTHER, &format!("{}/login?logged_out=1", app.prefix))
    };
    respond::set_cookie(&mut r, app.cookies.clear(&app.cookies.session_name));
    respond::set_cookie(&mut r, app.cookies.clear(&app.cookies.pending_name));
    r
}
