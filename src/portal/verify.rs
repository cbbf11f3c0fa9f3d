//! Forward-auth (SPEC §5): nginx `auth_request`, Traefik `ForwardAuth` and Caddy
//! `forward_auth` ask here whether a request may pass. The original URL comes
//! from `X-Original-URL` (nginx) or `X-Forwarded-Proto/-Host/-Uri/-Method`
//! (Traefik, Caddy), believed only from trusted proxies; the same rules and
//! session cookie as proxy mode decide. Not logged in: Traefik and Caddy relay
//! a 302 to the login page; nginx only understands 401, so its 401 names the
//! login page in `Location` for browser navigations.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};

use crate::access::{Decision, Subject};
use crate::app::App;
use crate::body::{Body, Response};
use crate::config::Policy;
use crate::portal::{request, respond};
use crate::router::{self, Outcome, RequestInfo};

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

fn count(decision: &str) {
    crate::metrics::get().forward_auth.with_label_values(&[decision]).inc();
}

fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub async fn verify(app: &App, uri: &Uri, headers: &HeaderMap, info: &RequestInfo) -> Outcome {
    if !info.trusted_peer {
        count("error");
        let msg = "forward-auth is only answered for trusted proxies";
        return Outcome::new("verify", respond::json_error(StatusCode::FORBIDDEN, msg));
    }
    let q = request::query(uri);
    let orig = match original(headers, q.get("mode")) {
        Ok(o) => o,
        Err(msg) => {
            count("error");
            return Outcome::new("verify", respond::json_error(StatusCode::BAD_REQUEST, msg));
        }
    };
    let redirect_style = match q.get("mode") {
        Some("nginx") => false,
        Some("redirect") | Some("traefik") | Some("caddy") => true,
        _ => orig.redirect_style,
    };
    let host = orig.url.host_str().unwrap_or("").to_owned();
    let host_port = match orig.url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let mut subject =
        Subject { host: &host_port, path: orig.url.path(), method: &orig.method, ip: info.client_ip, user: None };
    let first = app.rules.decide(&subject);
    if first == Decision::Policy(Policy::Bypass) {
        count("allow");
        return Outcome::new("verify", empty(StatusCode::OK));
    }
    if first == Decision::Policy(Policy::Deny) {
        count("deny");
        return Outcome::new("verify", respond::json_error(StatusCode::FORBIDDEN, "access denied"));
    }
    let auth = match router::authenticate(app, headers).await {
        Ok(a) => a,
        Err(e) => {
            count("error");
            return Outcome::new("verify", router::store_unavailable(app, &e, false));
        }
    };
    let unauthenticated = |user| {
        let location = router::login_url(app, orig.url.as_str());
        if redirect_style {
            count("redirect");
            return Outcome { route: "verify", user, response: respond::redirect(StatusCode::FOUND, &location) };
        }
        count("unauthorized");
        let mut response = respond::json_error(StatusCode::UNAUTHORIZED, "authentication required");
        // nginx cannot percent-encode the original URL into rd itself, nor knows
        // public_url: for a browser navigation the 401 carries the login URL, which
        // the nginx config turns into the redirect (auth_request_set + error_page).
        if respond::is_navigation(&orig.method, headers)
            && let Ok(v) = HeaderValue::from_str(&location)
        {
            response.headers_mut().insert(http::header::LOCATION, v);
        }
        Outcome { route: "verify", user, response }
    };
    let Some(auth) = auth else { return unauthenticated(None) };
    let decision = match first {
        Decision::NeedsIdentity => {
            subject.user = Some((&auth.user.username, &auth.user.groups));
            app.rules.decide(&subject)
        }
        d => d,
    };
    let policy = match decision {
        Decision::Policy(p) => p,
        Decision::NeedsIdentity => Policy::Deny,
    };
    if policy == Policy::Deny {
        count("deny");
        let r = respond::json_error(StatusCode::FORBIDDEN, "access denied");
        return Outcome { route: "verify", user: Some(auth.user), response: r };
    }
    if router::required_level(policy).is_some_and(|need| auth.record.level < need) {
        return unauthenticated(Some(auth.user));
    }
    count("allow");
    let mut r = empty(StatusCode::OK);
    for (name, value) in app.identity_headers.iter().zip(auth.user.header_values.iter()) {
        r.headers_mut().insert(name.clone(), value.clone());
    }
    Outcome { route: "verify", user: Some(auth.user), response: r }
}
