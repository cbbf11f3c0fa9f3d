//! Traefik's (`ForwardAuth`) and Caddy's (`forward_auth`) dialect: the
//! original request in `X-Forwarded-Proto`, `-Host` (else `Host`), `-Uri` and
//! `-Method`, and a refusal they relay to the browser as it is: a redirect to
//! the login page for a browser (`302` for GET and HEAD, `303` for other
//! methods, since a `302` replays a POST on some clients), and `401` for
//! anything else (a script's request, `X-Requested-With: XMLHttpRequest`, or
//! an `Accept` without `text/html`) — the contract Authelia established.

use http::header::{HeaderMap, HeaderName};
use http::{Method, StatusCode};

use super::original::{MISSING, Original, header, refused};
use crate::body::Response;
use crate::normalize;
use crate::proxy::headers::{X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::reply;

static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");

/// Whether the request carries Traefik's or Caddy's statement of the original request.
pub(super) fn present(headers: &HeaderMap) -> bool {
    header(headers, &X_FORWARDED_URI).is_some()
}

/// The original request, as Traefik and Caddy state it.
pub(super) fn original(headers: &HeaderMap) -> Result<Original<'_>, &'static str> {
    let uri = header(headers, &X_FORWARDED_URI).ok_or(MISSING)?;
    let proto = header(headers, &X_FORWARDED_PROTO).unwrap_or("https");
    let host = header(headers, &X_FORWARDED_HOST).or_else(|| header(headers, &http::header::HOST)).ok_or(MISSING)?;
    let scheme = if proto.eq_ignore_ascii_case("http") { "http" } else { "https" };
    let url = normalize::from_parts(scheme, host, uri).map_err(refused)?;
    let method = header(headers, &X_FORWARDED_METHOD).and_then(|m| m.parse().ok()).unwrap_or(Method::GET);
    Ok(Original::new(url, method))
}

/// Not logged in: a browser is sent to log in; anything else gets `401`.
pub(super) fn login_required(orig: &Original<'_>, headers: &HeaderMap, login_url: &str) -> (Response, &'static str) {
    if reply::is_browser(headers) {
        let status =
            if matches!(orig.method, Method::GET | Method::HEAD) { StatusCode::FOUND } else { StatusCode::SEE_OTHER };
        return (reply::redirect(status, login_url), "redirect");
    }
    (reply::json_error(StatusCode::UNAUTHORIZED, "authentication required"), "unauthorized")
}
