//! nginx's dialect (`auth_request`, ingress-nginx): the original request in
//! `X-Original-URL` (and `X-Original-Method`), and a refusal that nginx can
//! act on: it only understands `401`, cannot percent-encode the original URL
//! into a return address itself, nor knows `public_url`, so for a browser
//! navigation the `401` names the login page in `Location`, which the nginx
//! config turns into the redirect (`auth_request_set` + `error_page`).

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::original::{MISSING, Original, header, refused};
use crate::body::Response;
use crate::normalize;
use crate::reply;

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");

/// Whether the request carries nginx's statement of the original request.
pub(super) fn present(headers: &HeaderMap) -> bool {
    header(headers, &X_ORIGINAL_URL).is_some()
}

/// The original request, as nginx states it.
pub(super) fn original(headers: &HeaderMap) -> Result<Original<'_>, &'static str> {
    let url = header(headers, &X_ORIGINAL_URL).ok_or(MISSING)?;
    let url = normalize::url(url).map_err(|e| match e {
        normalize::UrlError::NotAbsolute => "X-Original-URL is not an absolute http(s) URL",
        e => refused(e),
    })?;
    let method = header(headers, &X_ORIGINAL_METHOD).and_then(|m| m.parse().ok()).unwrap_or(Method::GET);
    Ok(Original::new(url, method))
}

/// Not logged in: `401`, naming the login page for a browser navigation.
pub(super) fn login_required(orig: &Original<'_>, headers: &HeaderMap, login_url: &str) -> Response {
    let mut r = reply::json_error(StatusCode::UNAUTHORIZED, "authentication required");
    if reply::is_navigation(&orig.method, headers)
        && let Ok(v) = HeaderValue::from_str(login_url)
    {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}
