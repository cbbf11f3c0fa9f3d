//! Forward-auth: nginx `auth_request`, Traefik `ForwardAuth` and Caddy
//! `forward_auth` ask here whether a request may pass. The original URL comes
//! from `X-Original-URL` (nginx) or `X-Forwarded-Proto/-Host/-Uri/-Method`
//! (Traefik, Caddy), believed only from trusted proxies; the gate decides, as
//! it does in proxy mode, and this module renders its verdict in each proxy's
//! dialect. Not logged in: Traefik and Caddy relay a 302 to the login page;
//! nginx only understands 401, so its 401 names the login page in `Location`
//! for browser navigations.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::context::{Answer, Cx};
use crate::gate::{Facts, Verdict};
use crate::metrics;
use crate::reply::{self, Failure};

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");

/// The request the proxy is asking about, in normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original<'a> {
    pub scheme: &'static str,
    /// Lower-case host name without port or trailing dot.
    pub host: Cow<'a, str>,
    pub port: Option<u16>,
    /// The normalised path.
    pub path: Cow<'a, str>,
    pub query: Option<&'a str>,
    pub method: Method,
    /// Traefik/Caddy style (X-Forwarded-Uri): answer with a redirect rather than 401.
    pub redirect_style: bool,
}

impl Original<'_> {
    /// The URL the login page sends the browser back to.
    pub fn url(&self) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let query = self.query.map(|q| format!("?{q}")).unwrap_or_default();
        format!("{}://{}{port}{}{query}", self.scheme, self.host, self.path)
    }
}

fn header<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty())
}

/// Builds the original request from its parts, each checked: the authority
/// must be a valid `host[:port]` and the target an origin-form path (and
/// query) that normalises; a fragment is never part of a request. Anything
/// else is refused, never guessed at: a proxy that built the URL from a
/// client's Host would otherwise let the client choose what is checked.
fn from_parts<'a>(
    scheme: &'static str,
    authority: &'a str,
    target: &'a str,
    method: Method,
    redirect_style: bool,
) -> Result<Original<'a>, &'static str> {
    let host = crate::normalize::host(authority).map_err(|_| "the original host is not a valid host[:port]")?;
    if !target.starts_with('/') || target.contains('#') {
        return Err("the original URI is not an absolute path");
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = crate::normalize::path(path).map_err(|_| "the original path cannot be normalised safely")?;
    Ok(Original { scheme, host: host.name, port: host.port, path, query, method, redirect_style })
}

/// Splits an absolute `http(s)://authority/target` URL without any of the
/// lenience of URL parsers (which drop tabs, read `\` as `/` and skip an
/// empty authority).
fn split_url(u: &str) -> Result<(&'static str, &str, &str), &'static str> {
    const BAD: &str = "X-Original-URL is not an absolute http(s) URL";
    let (scheme, rest) = u.split_once("://").ok_or(BAD)?;
    let scheme = if scheme.eq_ignore_ascii_case("http") {
        "http"
    } else if scheme.eq_ignore_ascii_case("https") {
        "https"
    } else {
        return Err(BAD);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    let target = if target.is_empty() { "/" } else { target };
    Ok((scheme, authority, target))
}

/// Where the original URL comes from. Each proxy sets its own headers but passes
/// the client's other headers through, so a client behind Traefik could add an
/// `X-Original-URL` (or behind nginx an `X-Forwarded-Uri`) naming a bypassed
/// path and have that checked instead. `?mode=` names the proxy and so the one
/// set of headers to believe; without it, finding both sets is refused.
pub fn original<'a>(headers: &'a HeaderMap, mode: Option<&str>) -> Result<Original<'a>, &'static str> {
    const MISSING: &str = "forward-auth needs X-Original-URL or X-Forwarded-Proto/-Host/-Uri";
    let nginx_style = match mode {
        Some("nginx") => true,
        Some("traefik" | "caddy") => false,
        _ => match (header(headers, &X_ORIGINAL_URL).is_some(), header(headers, &X_FORWARDED_URI).is_some()) {
            (true, true) => return Err("both X-Original-URL and X-Forwarded-Uri present: set ?mode= to the proxy"),
            (nginx_style, _) => nginx_style,
        },
    };
    if nginx_style {
        let (scheme, authority, target) = split_url(header(headers, &X_ORIGINAL_URL).ok_or(MISSING)?)?;
        let method = header(headers, &X_ORIGINAL_METHOD).and_then(|m| m.parse().ok()).unwrap_or(Method::GET);
        return from_parts(scheme, authority, target, method, false);
    }
    let uri = header(headers, &X_FORWARDED_URI).ok_or(MISSING)?;
    let proto = header(headers, &crate::proxy::headers::X_FORWARDED_PROTO).unwrap_or("https");
    let host = header(headers, &crate::proxy::headers::X_FORWARDED_HOST)
        .or_else(|| header(headers, &http::header::HOST))
        .ok_or(MISSING)?;
    let scheme = if proto.eq_ignore_ascii_case("http") { "http" } else { "https" };
    let method = header(headers, &X_FORWARDED_METHOD).and_then(|m| m.parse().ok()).unwrap_or(Method::GET);
    from_parts(scheme, host, uri, method, true)
}

/// `{prefix}/verify`, any method.
pub(super) async fn verify(cx: &Cx<'_>) -> Answer {
    if !cx.info.trusted_peer {
        metrics::forward_auth("error");
        return (cx.fail(Failure::UntrustedPeer), None);
    }
    let mode = super::forms::query_field(cx.uri, "mode");
    let mode = mode.as_deref();
    let orig = match original(cx.headers, mode) {
        Ok(o) => o,
        Err(msg) => {
            metrics::forward_auth("error");
            return (cx.fail(Failure::BadForwardAuth(msg)), None);
        }
    };
    let redirect_style = match mode {
        Some("nginx") => false,
        Some("redirect") | Some("traefik") | Some("caddy") => true,
        _ => orig.redirect_style,
    };
    let facts = Facts {
        host: &orig.host,
        path: &orig.path,
        method: &orig.method,
        client_ip: cx.info.client_ip,
        headers: cx.headers,
    };
    let verdict = match cx.portal.gate.check(&facts).await {
        Ok(v) => v,
        Err(e) => {
            metrics::forward_auth("error");
            return (cx.fail(e), None);
        }
    };
    let user = verdict.user();
    let response = match verdict {
        Verdict::Allow(auth) => {
            metrics::forward_auth("allow");
            let mut r = reply::empty(StatusCode::OK);
            if let Some(auth) = auth {
                cx.portal.identity.apply(&auth.user.identity, r.headers_mut());
            }
            r
        }
        Verdict::Deny(_) => {
            metrics::forward_auth("deny");
            reply::json_error(StatusCode::FORBIDDEN, "access denied")
        }
        Verdict::LoginRequired(_) => {
            let location = cx.portal.login_url(&orig.url());
            if redirect_style && reply::is_browser(cx.headers) {
                // A browser is sent to log in: 302 for a navigation, 303 for
                // other methods (a 302 replays a POST on some clients).
                metrics::forward_auth("redirect");
                let status = if matches!(orig.method, Method::GET | Method::HEAD) {
                    StatusCode::FOUND
                } else {
                    StatusCode::SEE_OTHER
                };
                reply::redirect(status, &location)
            } else {
                metrics::forward_auth("unauthorized");
                let mut r = reply::json_error(StatusCode::UNAUTHORIZED, "authentication required");
                // nginx cannot percent-encode the original URL into rd itself, nor
                // knows public_url: for a browser navigation the 401 carries the
                // login URL, which the nginx config turns into the redirect
                // (auth_request_set + error_page).
                if reply::is_navigation(&orig.method, cx.headers)
                    && let Ok(v) = HeaderValue::from_str(&location)
                {
                    r.headers_mut().insert(http::header::LOCATION, v);
                }
                r
            }
        }
    };
    (response, user)
}
