//! Where a request goes: the gateway's own endpoints under `auth.prefix`, or the
//! protected upstream behind the access decision. Every request passes through
//! `App::handle`, which also writes the access log line and the request metrics.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::access::{Decision, Subject};
use crate::app::App;
use crate::auth::users::User;
use crate::body::Response;
use crate::config::Policy;
use crate::portal::{self, respond};
use crate::proxy::{self, ForwardContext};
use crate::server::{ConnInfo, Handler};
use crate::store::{AuthLevel, SessionRecord, StoreError};

/// What the access log and metrics record about a request.
pub struct Outcome {
    /// Bounded route name ("proxy", "login", "api_send_login_otp", ...).
    pub route: &'static str,
    pub user: Option<Arc<User>>,
    pub response: Response,
}

impl Outcome {
    pub fn new(route: &'static str, response: Response) -> Outcome {
        Outcome { route, user: None, response }
    }
}

/// Per-request facts every handler needs.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo {
    pub conn: ConnInfo,
    pub client_ip: IpAddr,
    /// The peer is a trusted proxy (its X-Forwarded-* headers are believed).
    pub trusted_peer: bool,
}

impl Handler for App {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> Response {
        let started = Instant::now();
        let method = req.method().clone();
        let trusted_peer = proxy::peer_is_trusted(conn.peer.ip(), &self.trusted_proxies);
        let client_ip = if trusted_peer {
            proxy::headers::client_ip(conn.peer.ip(), req.headers(), &self.trusted_proxies)
        } else {
            conn.peer.ip()
        };
        let info = RequestInfo { conn, client_ip, trusted_peer };
        let outcome = route(&self, req, info).await;
        let status = outcome.response.status();
        let elapsed = started.elapsed();
        let m = crate::metrics::get();
        m.http_requests
            .with_label_values(&[outcome.route, method_label(&method), crate::metrics::status_label(status)])
            .inc();
        m.http_duration.with_label_values(&[outcome.route]).observe(elapsed.as_secs_f64());
        tracing::info!(
            target: "access",
            method = %method,
            route = outcome.route,
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            user = outcome.user.as_ref().map_or("-", |u| u.username.as_str()),
            client_ip = %client_ip,
        );
        outcome.response
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

async fn route(app: &App, req: Request<Incoming>, info: RequestInfo) -> Outcome {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix(app.prefix.as_str())
        && (rest.is_empty() || rest.starts_with('/'))
    {
        let rest = rest.to_owned();
        // Boxed: the portal's handlers (argon2, store scripts, mail) make large
        // futures; keeping them off the connection task's stack leaves the hot
        // proxy path small.
        return Box::pin(portal::handle(app, req, info, &rest)).await;
    }
    protected(app, req, info).await
}

/// A logged-in session with its user, as resolved from the cookie.
pub struct Authenticated {
    pub token: String,
    pub record: SessionRecord,
    pub user: Arc<User>,
}

/// Resolves the session cookie to a live session of an enabled user.
/// `Ok(None)`: not logged in. `Err`: the store could not answer (fail closed).
pub async fn authenticate(app: &App, headers: &http::HeaderMap) -> Result<Option<Authenticated>, StoreError> {
    let Some(token) = proxy::headers::cookie_value(headers, &app.cookies.session_name) else {
        return Ok(None);
    };
    if !crate::session::plausible_token(token) {
        return Ok(None);
    }
    let Some(record) = app.store.touch_session(token).await? else {
        return Ok(None);
    };
    let users = app.users.snapshot();
    match users.get(&record.user) {
        Some(user) if !user.disabled => Ok(Some(Authenticated { token: token.to_owned(), user: user.clone(), record })),
        _ => {
            // The account was removed or disabled: its sessions end now.
            app.store.delete_session(token).await?;
            Ok(None)
        }
    }
}

/// The scheme the client used: from a trusted proxy's X-Forwarded-Proto, else the connection.
pub fn client_scheme(req_headers: &http::HeaderMap, info: &RequestInfo) -> &'static str {
    if info.trusted_peer
        && let Some(p) = req_headers.get(&proxy::headers::X_FORWARDED_PROTO)
    {
        return if p.as_bytes().eq_ignore_ascii_case(b"https") { "https" } else { "http" };
    }
    if info.conn.tls { "https" } else { "http" }
}

/// The answer to an unauthenticated request for a protected resource (SPEC §3):
/// browsers are sent to the login page with `rd`, everything else gets a 401.
pub fn login_required(app: &App, method: &Method, headers: &http::HeaderMap, original_url: &str) -> Response {
    if respond::is_navigation(method, headers) {
        let mut r = respond::redirect(StatusCode::FOUND, &login_url(app, original_url));
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    } else {
        let mut r = respond::json_error(StatusCode::UNAUTHORIZED, "authentication required");
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// The login page, with `original_url` percent-encoded as its return address.
pub fn login_url(app: &App, original_url: &str) -> String {
    let mut location = format!("{}{}/login?rd=", app.public_origin, app.prefix);
    location.extend(form_urlencoded::byte_serialize(original_url.as_bytes()));
    location
}

/// What a session must reach for a policy.
pub fn required_level(p: Policy) -> Option<AuthLevel> {
    match p {
        Policy::Bypass => None,
        Policy::OneFactor => Some(AuthLevel::OneFactor),
        Policy::TwoFactor | Policy::Deny => Some(AuthLevel::TwoFactor),
    }
}

async fn protected(app: &App, req: Request<Incoming>, info: RequestInfo) -> Outcome {
    let host_value = proxy::request_host(&req);
    let host = host_value.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
    let mut subject = Subject { host, path: req.uri().path(), method: req.method(), ip: info.client_ip, user: None };
    let first = app.rules.decide(&subject);
    let html = respond::wants_html(req.headers());

    if first == Decision::Policy(Policy::Bypass) {
        let response = forward(app, req, &info, None).await;
        return Outcome::new("proxy", response);
    }
    if first == Decision::Policy(Policy::Deny) {
        return Outcome::new(
            "proxy",
            respond::error(app, StatusCode::FORBIDDEN, "Access to this resource is denied.", html),
        );
    }

    let auth = match authenticate(app, req.headers()).await {
        Ok(a) => a,
        Err(e) => return Outcome::new("proxy", store_unavailable(app, &e, html)),
    };
    let original_url = || {
        let scheme = client_scheme(req.headers(), &info);
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        format!("{scheme}://{host}{path}")
    };
    let Some(auth) = auth else {
        let r = login_required(app, req.method(), req.headers(), &original_url());
        return Outcome::new("proxy", r);
    };

    let decision = match first {
        Decision::NeedsIdentity => {
            subject.user = Some((auth.user.username.as_str(), auth.user.groups.as_slice()));
            app.rules.decide(&subject)
        }
        d => d,
    };
    let policy = match decision {
        Decision::Policy(p) => p,
        Decision::NeedsIdentity => Policy::Deny,
    };
    match policy {
        Policy::Deny => {
            let r = respond::error(app, StatusCode::FORBIDDEN, "Your account may not access this resource.", html);
            return Outcome { route: "proxy", user: Some(auth.user), response: r };
        }
        Policy::Bypass => {}
        p => {
            if required_level(p).is_some_and(|need| auth.record.level < need) {
                let r = login_required(app, req.method(), req.headers(), &original_url());
                return Outcome { route: "proxy", user: Some(auth.user), response: r };
            }
        }
    }
    let response = forward(app, req, &info, Some(&auth.user)).await;
    Outcome { route: "proxy", user: Some(auth.user), response }
}

/// 503 for a store failure: the request is not forwarded (fail closed).
pub fn store_unavailable(app: &App, e: &StoreError, html: bool) -> Response {
    tracing::error!(error = %e, "store unavailable; refusing the request");
    let mut r = respond::error(
        app,
        StatusCode::SERVICE_UNAVAILABLE,
        "The sign-in service is temporarily unavailable. Please try again shortly.",
        html,
    );
    respond::retry_after(&mut r, 5);
    r
}

async fn forward(app: &App, req: Request<Incoming>, info: &RequestInfo, user: Option<&User>) -> Response {
    let html = respond::wants_html(req.headers());
    let host = proxy::request_host(&req);
    let Some(upstream) = app.proxy.select(host.as_ref().and_then(|h| h.to_str().ok())) else {
        return respond::error(
            app,
            StatusCode::MISDIRECTED_REQUEST,
            "No application is configured for this host.",
            html,
        );
    };
    let identity: [(http::HeaderName, HeaderValue); 4];
    let identity_slice: &[(http::HeaderName, HeaderValue)] = match user {
        Some(u) => {
            identity = std::array::from_fn(|i| (app.identity_headers[i].clone(), u.header_values[i].clone()));
            &identity
        }
        None => &[],
    };
    let cookie_names = [app.cookies.session_name.as_str(), app.cookies.pending_name.as_str()];
    let ctx = ForwardContext {
        peer: info.conn.peer.ip(),
        trusted_peer: info.trusted_peer,
        scheme: if info.conn.tls { "https" } else { "http" },
        strip_cookies: &cookie_names,
        reserved_headers: &app.identity_headers,
        identity: identity_slice,
    };
    match app.proxy.forward(upstream, req, &ctx).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "upstream request failed");
            crate::metrics::get().upstream_errors.with_label_values(&[upstream.name.as_str(), e.kind()]).inc();
            let msg = match e.status() {
                StatusCode::GATEWAY_TIMEOUT => "The application took too long to answer.",
                _ => "The application is not reachable right now.",
            };
            respond::error(app, e.status(), msg, html)
        }
    }
}

/// The metrics listener: `/metrics` only.
pub struct MetricsEndpoint;

impl Handler for MetricsEndpoint {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, _conn: ConnInfo) -> Response {
        if req.uri().path() != "/metrics" {
            return respond::text(StatusCode::NOT_FOUND, "not found\n");
        }
        let mut r = Response::new(crate::body::Body::full(crate::metrics::render()));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without running it.
    fn future_size<A, B, C, F, Fut>(_: F) -> usize
    where
        F: FnOnce(A, B, C) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every proxied request builds this future and hyper moves it into place;
    /// a store backend's large futures inlined here once made it ~16 KB.
    #[test]
    fn the_per_request_future_stays_small() {
        let route = future_size(|a: &'static App, r: Request<Incoming>, i: RequestInfo| route(a, r, i));
        let auth = future_size(|a: &'static App, h: &'static http::HeaderMap, _: ()| authenticate(a, h));
        assert!(route <= 6 * 1024, "route future is {route} bytes");
        assert!(auth <= 1024, "authenticate future is {auth} bytes");
    }
}
