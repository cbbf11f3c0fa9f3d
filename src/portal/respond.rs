//! Building the gateway's own responses: JSON in the seed's shape, pages, redirects
//! and error pages, all with the security headers of SPEC §7.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::Serialize;

use crate::app::App;
use crate::body::{Body, Response};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Adds the headers every gateway page carries.
pub fn secure_headers(h: &mut HeaderMap, hsts: bool) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // same-origin keeps Referer for our own CSRF fallback and leaks nothing elsewhere.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
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

/// `{"success": false, "error": msg}`.
pub fn json_error(status: StatusCode, msg: &str) -> Response {
    json(status, &serde_json::json!({ "success": false, "error": msg }))
}

/// True for browser navigation: the client accepts HTML.
pub fn wants_html(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// True for a top-level browser navigation (GET/HEAD that accepts HTML).
pub fn is_navigation(method: &Method, h: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD) && wants_html(h)
}

/// An error as a page for browsers, as JSON for everything else.
pub fn error(app: &App, status: StatusCode, message: &str, as_html: bool) -> Response {
    let mut r = error_unsecured(app, status, message, as_html);
    secure_headers(r.headers_mut(), app.hsts);
    r
}

fn error_unsecured(app: &App, status: StatusCode, message: &str, as_html: bool) -> Response {
    if !as_html {
        return json_error(status, message);
    }
    let mut ctx = tera::Context::new();
    ctx.insert("prefix", &app.prefix);
    ctx.insert("app_name", &app.config.auth.app_name);
    ctx.insert("status", &status.as_u16());
    ctx.insert("title", status.canonical_reason().unwrap_or("Error"));
    ctx.insert("message", message);
    match app.templates.render("error.html", &ctx) {
        Ok(page) => html(status, page),
        Err(e) => {
            tracing::error!(error = %e, "error page failed to render");
            with_type(status, "text/plain; charset=utf-8", message.to_owned())
        }
    }
}

/// Sets `Retry-After` (whole seconds, at least 1).
pub fn retry_after(r: &mut Response, secs: u64) {
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
}

pub fn set_cookie(r: &mut Response, v: HeaderValue) {
    r.headers_mut().append(header::SET_COOKIE, v);
}

pub static X_CSRF_TOKEN: HeaderName = HeaderName::from_static("x-csrf-token");
