//! The one place where the gateway's own answers are made: the reply format of
//! a request (HTML page or JSON), the response builders, the security headers
//! of gateway pages, and [`Failure`], every way a request can fail, with its
//! status, message, JSON fields and `Retry-After` decided here and nowhere else.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::auth::error::{AuthError, Factor};
use crate::auth::passkey::PasskeyError;
use crate::auth::tokens::TokenError;
use crate::body::{Body, Response};
use crate::proxy::ProxyError;
use crate::render::Templates;
use crate::store::StoreError;

/// How a request wants its answer; chosen once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A browser page (forms are answered with a 303 or the page again).
    Html,
    /// `{"success": bool, "message"?, "error"?, ...}`.
    Json,
}

impl Format {
    /// HTML when the client accepts it (a browser), else JSON.
    pub fn negotiate(headers: &HeaderMap) -> Format {
        if wants_html(headers) { Format::Html } else { Format::Json }
    }
}

/// True when the client accepts HTML.
pub fn wants_html(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// True for a browser loading a page: it accepts HTML and the request is not
/// a script's (`X-Requested-With: XMLHttpRequest`). Front-end code expects a
/// 401 it can handle, not a redirect to a login page it cannot follow.
pub fn is_browser(h: &HeaderMap) -> bool {
    wants_html(h) && !h.get("x-requested-with").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"))
}

/// True for a top-level browser navigation (a GET or HEAD from a browser).
pub fn is_navigation(method: &Method, h: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD) && is_browser(h)
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub static X_CSRF_TOKEN: HeaderName = HeaderName::from_static("x-csrf-token");

/// The HSTS value of the gateway's answers: a year, subdomains included.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Adds the headers every gateway page carries.
pub fn secure_headers(h: &mut HeaderMap, hsts: bool) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // same-origin keeps Referer for our own CSRF fallback and leaks nothing elsewhere.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
}

fn with_type(status: StatusCode, ctype: &'static str, body: impl Into<bytes::Bytes>) -> Response {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    with_type(status, "application/json", body)
}

pub fn html(status: StatusCode, body: String) -> Response {
    with_type(status, "text/html; charset=utf-8", body)
}

pub fn text(status: StatusCode, body: &'static str) -> Response {
    with_type(status, "text/plain; charset=utf-8", body)
}

pub fn redirect(status: StatusCode, location: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A bodiless answer that no cache keeps (forward-auth verdicts).
pub fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `{"success": false, "error": msg}`.
pub fn json_error(status: StatusCode, msg: &str) -> Response {
    json(status, &json!({ "success": false, "error": msg }))
}

/// Sets `Retry-After` (whole seconds, at least 1).
pub fn retry_after(r: &mut Response, secs: u64) {
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
}

pub fn set_cookie(r: &mut Response, v: HeaderValue) {
    r.headers_mut().append(header::SET_COOKIE, v);
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Invalid,
    /// It did not arrive within `server.body_read_timeout`.
    TooSlow,
}

/// Every way a gateway request can fail.
#[derive(Debug)]
pub enum Failure {
    Auth(AuthError),
    Store(StoreError),
    Body(BodyError),
    /// The CSRF check failed.
    CrossSite,
    /// A required field is missing (the JSON message names it).
    Missing(Cow<'static, str>),
    /// No session, where one is needed.
    Unauthenticated,
    /// A session below the level needed: the second factor first.
    StepUp,
    NotFound,
    /// The access rules refuse (the message says whose rule).
    Denied(&'static str),
    /// No upstream serves the request's host.
    NoUpstream,
    Upstream(ProxyError),
    /// A forward-auth request the gateway cannot answer for (which headers).
    BadForwardAuth(&'static str),
    /// A forward-auth request from a peer that is not a trusted proxy.
    UntrustedPeer,
    /// A page failed to render.
    Render,
    /// A request path that cannot be normalised without changing its meaning.
    BadPath(crate::normalize::PathError),
    /// A missing `Host`, or one that is not `host[:port]`.
    BadHost,
    /// The operator console named a user the users file does not have.
    NoSuchUser,
    /// The users file could not take an operator's change.
    UsersFile(crate::auth::users::EditError),
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        Failure::Auth(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<BodyError> for Failure {
    fn from(e: BodyError) -> Self {
        Failure::Body(e)
    }
}

/// What a failure means for the client.
pub struct Explained {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    /// Extra JSON fields (`remaining_attempts`, `retry_after`, ...).
    pub extra: Map<String, Value>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl Explained {
    fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Explained {
        Explained { status, message: message.into(), extra: Map::new(), retry_after: None }
    }

    fn with(mut self, key: &str, value: Value) -> Explained {
        self.extra.insert(key.to_owned(), value);
        self
    }

    fn retry(mut self, secs: u64) -> Explained {
        self.retry_after = Some(secs);
        self
    }

    /// The JSON body: `{"success": false, "error": ..., ...extra}`.
    pub fn json_body(&self) -> Value {
        let mut m = self.extra.clone();
        m.insert("success".into(), json!(false));
        m.insert("error".into(), json!(self.message));
        Value::Object(m)
    }
}

const STORE_DOWN: &str = "The sign-in service is temporarily unavailable. Please try again shortly.";

impl Failure {
    /// Status, message (worded for `format`), JSON fields and `Retry-After`.
    /// Server-side causes (store, internal errors) are logged here, once.
    pub fn explain(&self, format: Format) -> Explained {
        let html = format == Format::Html;
        match self {
            Failure::Auth(e) => explain_auth(e),
            Failure::Store(e) => {
                tracing::error!(error = %e, "store unavailable; refusing the request");
                Explained::new(StatusCode::SERVICE_UNAVAILABLE, STORE_DOWN).retry(5)
            }
            Failure::Body(BodyError::TooLarge) => Explained::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                if html { "The form was too large." } else { "request body too large" },
            ),
            Failure::Body(BodyError::TooSlow) => {
                Explained::new(StatusCode::REQUEST_TIMEOUT, "the request body arrived too slowly")
            }
            Failure::Body(BodyError::Invalid) => Explained::new(
                StatusCode::BAD_REQUEST,
                if html { "The form could not be read." } else { "invalid request body" },
            ),
            Failure::CrossSite => Explained::new(
                StatusCode::FORBIDDEN,
                if html {
                    "This form was sent from another site, or has expired. Reload the page and try again."
                } else {
                    "cross-site request refused"
                },
            ),
            Failure::Missing(m) => Explained::new(StatusCode::BAD_REQUEST, m.clone()),
            Failure::Unauthenticated => Explained::new(StatusCode::UNAUTHORIZED, "authentication required"),
            Failure::StepUp => {
                Explained::new(StatusCode::UNAUTHORIZED, "a second factor is required").with("step_up", json!(true))
            }
            Failure::NotFound => Explained::new(StatusCode::NOT_FOUND, "No such page."),
            Failure::Denied(m) => Explained::new(StatusCode::FORBIDDEN, *m),
            Failure::NoUpstream => {
                Explained::new(StatusCode::MISDIRECTED_REQUEST, "No application is configured for this host.")
            }
            Failure::Upstream(e) => {
                let message = match e.status() {
                    StatusCode::GATEWAY_TIMEOUT => "The application took too long to answer.",
                    _ => "The application is not reachable right now.",
                };
                Explained::new(e.status(), message)
            }
            Failure::BadForwardAuth(m) => Explained::new(StatusCode::BAD_REQUEST, *m),
            Failure::UntrustedPeer => {
                Explained::new(StatusCode::FORBIDDEN, "forward-auth is only answered for trusted proxies")
            }
            Failure::Render => Explained::new(StatusCode::INTERNAL_SERVER_ERROR, "This page could not be shown."),
            Failure::BadPath(e) => Explained::new(StatusCode::BAD_REQUEST, format!("invalid request path: {e}")),
            Failure::BadHost => Explained::new(StatusCode::BAD_REQUEST, "invalid or missing Host header"),
            Failure::NoSuchUser => Explained::new(StatusCode::NOT_FOUND, "No such user."),
            Failure::UsersFile(e @ crate::auth::users::EditError::Unavailable { .. }) => {
                Explained::new(StatusCode::CONFLICT, e.to_string())
            }
            Failure::UsersFile(e) => {
                tracing::error!(error = %e, "users file not changed");
                Explained::new(StatusCode::INTERNAL_SERVER_ERROR, "The users file could not be changed.")
            }
        }
    }
}

fn explain_auth(e: &AuthError) -> Explained {
    let bad = |message: &'static str| Explained::new(StatusCode::BAD_REQUEST, message);
    match e {
        AuthError::InvalidCredentials => bad("Invalid username or password."),
        AuthError::Disabled => Explained::new(StatusCode::FORBIDDEN, "This account is disabled."),
        AuthError::Locked { retry_after } => {
            let secs = whole_seconds_after(*retry_after);
            Explained::new(
                StatusCode::FORBIDDEN,
                format!("This account is temporarily locked. Try again in {}.", minutes(retry_after.as_secs())),
            )
            .with("retry_after", json!(secs))
            .with("account_locked", json!(true))
            .retry(secs)
        }
        AuthError::RateLimited { retry_after } => {
            let secs = whole_seconds_after(*retry_after);
            Explained::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many attempts. Please try again in {secs} seconds."),
            )
            .with("retry_after", json!(secs))
            .retry(secs)
        }
        AuthError::NoPendingLogin => bad("No pending login, or it has expired. Please sign in again."),
        AuthError::Wrong { factor, remaining } => {
            let what = match factor {
                Factor::Email => "Invalid verification code.",
                Factor::Totp => "Invalid code from your authenticator app.",
                Factor::Passkey => "The passkey could not be verified.",
                Factor::BackupCode => "Invalid backup code.",
                Factor::Password => "Incorrect password.",
            };
            // Codes count down their own tries; backup codes and passkeys the
            // account's, up to its lock.
            let left = match (factor, remaining) {
                (_, None) => String::new(),
                (Factor::Email | Factor::Totp, Some(n)) => format!(" {n} attempt(s) left."),
                (_, Some(n)) => format!(" {n} attempt(s) left before the account is locked."),
            };
            let e = Explained::new(StatusCode::BAD_REQUEST, format!("{what}{left}"));
            match remaining {
                Some(n) => e.with("remaining_attempts", json!(n)),
                None => e,
            }
        }
        AuthError::Exhausted { factor: Factor::Totp } => {
            bad("Too many wrong codes from your authenticator app. Have a code e-mailed to you, or use a backup code.")
                .with("max_attempts_reached", json!(true))
        }
        AuthError::Exhausted { .. } => bad("Maximum attempts reached. Please request a new code.")
            .with("max_attempts_reached", json!(true))
            .with("remaining_attempts", json!(0)),
        AuthError::SetupExhausted => {
            bad("Too many wrong codes for this setup. Start the setup again.").with("max_attempts_reached", json!(true))
        }
        AuthError::Expired => {
            bad("The verification code has expired. Please request a new one.").with("expired", json!(true))
        }
        AuthError::NotEnrolled { factor } => bad(match factor {
            Factor::Totp => "No authenticator app is set up for this account.",
            Factor::Passkey => "No passkey is set up for this account.",
            _ => "Two-factor authentication is not enabled.",
        }),
        AuthError::NotStarted { factor: Factor::Passkey } => {
            bad("Start signing in with your passkey first (or start again: the request expired).")
        }
        AuthError::NotStarted { .. } => bad("Start the authenticator app setup first."),
        AuthError::AlreadyEnrolled { .. } => {
            bad("An authenticator app is already set up. Remove it first to set up another.")
        }
        AuthError::PasswordRequired => bad("Your password is required to make this change."),
        AuthError::NoSuchSession => Explained::new(StatusCode::NOT_FOUND, "No such session."),
        AuthError::Passkey(e @ (PasskeyError::NoSuchPasskey | PasskeyError::Unavailable)) => {
            Explained::new(StatusCode::NOT_FOUND, e.to_string())
        }
        AuthError::Passkey(e) => Explained::new(StatusCode::BAD_REQUEST, e.to_string()),
        AuthError::Token(e @ TokenError::NoSuchToken) => Explained::new(StatusCode::NOT_FOUND, e.to_string()),
        AuthError::Token(e) => Explained::new(StatusCode::BAD_REQUEST, e.to_string()),
        AuthError::WeakPassword { advice } => {
            let message = format!("This password is too easy to guess. {advice}");
            Explained::new(StatusCode::BAD_REQUEST, message.trim_end().to_owned()).with("weak_password", json!(true))
        }
        AuthError::SamePassword => bad("The new password is the same as the current one."),
        AuthError::PasswordsReadOnly => Explained::new(
            StatusCode::FORBIDDEN,
            "Passwords cannot be changed here: they are kept in your organisation's directory.",
        ),
        AuthError::ResetRefused => {
            bad("The code is wrong or has expired. Check the latest e-mail, or ask for a new code.")
        }
        AuthError::ResetNeedsSecondFactor => {
            bad("This account also needs a code from its authenticator app, or one of its backup codes. \
             Ask for a new e-mailed code and enter both.")
            .with("second_factor_required", json!(true))
        }
        AuthError::MailFailed => Explained::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The verification code could not be sent. Please try again later.",
        ),
        AuthError::Store(err) => {
            tracing::error!(error = %err, "store unavailable");
            Explained::new(StatusCode::SERVICE_UNAVAILABLE, STORE_DOWN).retry(5)
        }
        AuthError::Directory(err) => {
            tracing::error!(error = %err, "user directory unavailable");
            Explained::new(StatusCode::SERVICE_UNAVAILABLE, STORE_DOWN).retry(5)
        }
        AuthError::Internal(err) => {
            tracing::error!(error = %err, "internal error");
            Explained::new(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong. Please try again.")
        }
    }
}

fn minutes(secs: u64) -> String {
    let m = secs.div_ceil(60).max(1);
    if m == 1 { "1 minute".into() } else { format!("{m} minutes") }
}

/// `Retry-After` in whole seconds, rounded up: a client that waits exactly
/// that long finds the window open (rounding down sent it back a second early,
/// into another 429).
fn whole_seconds_after(d: std::time::Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

/// The common frame of the gateway's pages and the error page.
pub struct Replies {
    templates: Arc<Templates>,
    prefix: String,
    app_name: String,
    hsts: bool,
}

#[derive(Serialize)]
struct ErrorView<'a> {
    prefix: &'a str,
    app_name: &'a str,
    status: u16,
    title: &'a str,
    message: &'a str,
}

impl Replies {
    pub fn new(templates: Arc<Templates>, prefix: &str, app_name: &str, hsts: bool) -> Replies {
        Replies { templates, prefix: prefix.to_owned(), app_name: app_name.to_owned(), hsts }
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn app_name(&self) -> &str {
        &self.app_name
    }

    /// Whether gateway pages carry HSTS (public_url is https).
    pub fn hsts(&self) -> bool {
        self.hsts
    }

    /// A failure as an error page or JSON, with its `Retry-After` and the
    /// security headers of gateway pages.
    pub fn failure(&self, format: Format, failure: &Failure) -> Response {
        let e = failure.explain(format);
        let mut r = match format {
            Format::Json => json(e.status, &e.json_body()),
            Format::Html => self.error_page(e.status, &e.message),
        };
        if let Some(s) = e.retry_after {
            retry_after(&mut r, s);
        }
        secure_headers(r.headers_mut(), self.hsts);
        r
    }

    /// The error page for `status` with `message`.
    fn error_page(&self, status: StatusCode, message: &str) -> Response {
        let view = ErrorView {
            prefix: &self.prefix,
            app_name: &self.app_name,
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message,
        };
        match self.render("error.html", &view) {
            Some(page) => html(status, page),
            None => with_type(status, "text/plain; charset=utf-8", message.to_owned()),
        }
    }

    /// Renders a template from a serialisable view; a failure is logged and
    /// reported as None for the caller to answer with an error.
    pub fn render<V: Serialize>(&self, name: &str, view: &V) -> Option<String> {
        let ctx = tera::Context::from_serialize(view)
            .inspect_err(|e| tracing::error!(template = name, error = %e, "page view did not serialise"))
            .ok()?;
        self.templates.render(name, &ctx).inspect_err(|e| tracing::error!(error = %e, "page failed to render")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(whole_seconds_after(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_after(Duration::from_millis(59_001)), 60);
        assert_eq!(whole_seconds_after(Duration::from_secs(60)), 60);
        let f = Failure::Auth(AuthError::RateLimited { retry_after: Duration::from_millis(4_200) });
        let e = f.explain(Format::Json);
        assert_eq!((e.status, e.retry_after), (StatusCode::TOO_MANY_REQUESTS, Some(5)));
        assert_eq!(e.extra["retry_after"], 5);
    }

    #[test]
    fn body_and_csrf_failures_are_worded_for_people_and_for_programs() {
        let e = Failure::CrossSite.explain(Format::Json);
        assert_eq!((e.status, e.message.as_ref()), (StatusCode::FORBIDDEN, "cross-site request refused"));
        assert!(Failure::CrossSite.explain(Format::Html).message.contains("another site"));
        assert_eq!(Failure::Body(BodyError::TooLarge).explain(Format::Json).status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
