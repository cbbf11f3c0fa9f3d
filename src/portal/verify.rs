//! Forward-auth: nginx `auth_request`, Traefik `ForwardAuth` and Caddy
//! `forward_auth` ask here whether a request may pass. The original URL comes
//! from `X-Original-URL` (nginx) or `X-Forwarded-Proto/-Host/-Uri/-Method`
//! (Traefik, Caddy), believed only from trusted proxies; the gate decides, as
//! it does in proxy mode, and this module renders its verdict in each proxy's
//! dialect. Not logged in: Traefik and Caddy relay a 302 to the login page;
//! nginx only understands 401, so its 401 names the login page in `Location`
//! for browser navigations.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::context::{Answer, Cx};
use crate::gate::{Facts, Verdict};
use crate::reply::{self, Failure};

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");

/// The request the proxy is asking about.
struct Original {
    url: url::Url,
    method: Method,
    /// Traefik/Caddy style (X-Forwarded-Uri): answer 302 rather than 401.
    redirect_style: bool,
}

fn header<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty())
}

/// Where the original URL comes from. Each proxy sets its own headers but passes
/// the client's other headers through, so a client behind Traefik could add an
/// `X-Original-URL` (or behind nginx an `X-Forwarded-Uri`) naming a bypassed
/// path and have that checked instead. `?mode=` names the proxy and so the one
/// set of headers to believe; without it, finding both sets is refused.
fn original(headers: &HeaderMap, mode: Option<&str>) -> Result<Original, &'static str> {
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
        let u = header(headers, &X_ORIGINAL_URL).ok_or(MISSING)?;
        let method = header(headers, &X_ORIGINAL_METHOD).and_then(|m| m.parse().ok()).unwrap_or(Method::GET);
        let url = url::Url::parse(u).map_err(|_| "X-Original-URL is not a URL")?;
        return Ok(Original { url, method, redirect_style: false });
    }
    let uri = header(headers, &X_FORWARDED_URI).ok_or(MISSING)?;
    let proto = header(headers, &crate::proxy::headers::X_FORWARDED_PROTO).unwrap_or("https");
    let host = header(headers, &crate::proxy::headers::X_FORWARDED_HOST)
        .or_else(|| header(headers, &http::header::HOST))
        .ok_or(MISSING)?;
    let proto = if proto.eq_ignore_ascii_case("http") { "http" } else { "https" };
    let url = url::Url::parse(&format!("{proto}://{host}{uri}")).map_err(|_| "X-Forwarded-Host/-Uri is not a URL")?;
    let method = header(headers, &X_FORWARDED_METHOD).and_then(|m| m.parse().ok()).unwrap_or(Method::GET);
    Ok(Original { url, method, redirect_style: true })
}

fn count(decision: &'static str) {
    crate::metrics::get().forward_auth.with_label_values(&[decision]).inc();
}

/// `{prefix}/verify`, any method.
pub(super) async fn verify(cx: &Cx<'_>) -> Answer {
    if !cx.info.trusted_peer {
        count("error");
        return (cx.fail(Failure::UntrustedPeer), None);
    }
    let q = cx.query();
    let orig = match original(cx.headers, q.get("mode")) {
        Ok(o) => o,
        Err(msg) => {
            count("error");
            return (cx.fail(Failure::BadForwardAuth(msg)), None);
        }
    };
    let redirect_style = match q.get("mode") {
        Some("nginx") => false,
        Some("redirect") | Some("traefik") | Some("caddy") => true,
        _ => orig.redirect_style,
    };
    let host = orig.url.host_str().unwrap_or("");
    let host_port = match orig.url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let facts = Facts {
        host: &host_port,
        path: orig.url.path(),
        method: &orig.method,
        client_ip: cx.info.client_ip,
        headers: cx.headers,
    };
    let verdict = match cx.portal.gate.check(&facts).await {
        Ok(v) => v,
        Err(e) => {
            count("error");
            return (cx.fail(e), None);
        }
    };
    let user = verdict.user();
    let response = match verdict {
        Verdict::Allow(auth) => {
            count("allow");
            let mut r = reply::empty(StatusCode::OK);
            if let Some(auth) = auth {
                cx.portal.identity.apply(&auth.user.identity, r.headers_mut());
            }
            r
        }
        Verdict::Deny(_) => {
            count("deny");
            reply::json_error(StatusCode::FORBIDDEN, "access denied")
        }
        Verdict::LoginRequired(_) => {
            let location = cx.portal.login_url(orig.url.as_str());
            if redirect_style {
                count("redirect");
                reply::redirect(StatusCode::FOUND, &location)
            } else {
                count("unauthorized");
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
