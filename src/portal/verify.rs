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

fn original(headers: &HeaderMap, info: &RequestInfo) -> Option<Original> {
    if !info.trusted_peer {
        return None;
    }
    if let Some(u) = header(headers, &X_ORIGINAL_URL) {
        let method = header(headers, &X_ORIGINAL_METHOD).and_then(|m| m.parse().ok()).unwrap_or(Method::GET);
        return Some(Original { url: url::Url::parse(u).ok()?, method, redirect_style: false });
    }
    let uri = header(headers, &X_FORWARDED_URI)?;
    let proto = header(headers, &crate::proxy::headers::X_FORWARDED_PROTO).unwrap_or("https");
    let host =
        header(headers, &crate::proxy::headers::X_FORWARDED_HOST).or_else(|| header(headers, &http::header::HOST))?;
    let proto = if proto.eq_ignore_ascii_case("http") { "http" } else { "https" };
    let url = url::Url::parse(&format!("{proto}://{host}{uri}")).ok()?;
    let method = header(headers, &X_FORWARDED_METHOD).and_then(|m| m.parse().ok()).unwrap_or(Method::GET);
    Some(Original { url, method, redirect_style: true })
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
    let Some(orig) = original(headers, info) else {
        count("error");
        let msg = if info.trusted_peer {
            "forward-auth needs X-Original-URL or X-Forwarded-Proto/-Host/-Uri"
        } else {
            "forward-auth is only answered for trusted proxies"
        };
        let status = if info.trusted_peer { StatusCode::BAD_REQUEST } else { StatusCode::FORBIDDEN };
        return Outcome::new("verify", respond::json_error(status, msg));
    };
    let q = request::query(uri);
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
        let mut location = format!("{}{}/login?rd=", app.public_origin, app.prefix);
        location.extend(form_urlencoded::byte_serialize(orig.url.as_str().as_bytes()));
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
