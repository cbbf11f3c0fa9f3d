//! Where a request goes: the gateway's own endpoints under `auth.prefix`
//! (the portal), or the protected upstream behind the gate's verdict. Every
//! request passes through [`Gateway::handle`], which also writes the access
//! log line and the request metrics.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Uri, header};
use http_body::Body as _;
use hyper::body::Incoming;
use ipnet::IpNet;

use crate::body::{Body, Response};
use crate::gate::{Caller, Facts, Gate, Verdict};
use crate::identity::IdentityHeaders;
use crate::normalize;
use crate::portal::Portal;
use crate::proxy::upgrades::Signer;
use crate::proxy::{self, ForwardContext, Proxy, Signed};
use crate::reply::{self, Failure, Format, Replies};
use crate::request::{Outcome, RequestInfo};
use crate::server::{ConnInfo, Handler};
use crate::session::SessionCookies;

/// Where [`Gateway::route`] sends a request.
enum Route {
    /// Already answered (a path that cannot be made normal).
    Answered(Outcome),
    /// To the portal, with the path under the prefix.
    Portal(Request<Incoming>, String),
    /// To the gate, and the upstream if it allows.
    Protected(Request<Incoming>),
}

/// The assembled request path: portal, gate and proxy.
pub struct Gateway {
    pub prefix: String,
    pub trusted_proxies: Vec<IpNet>,
    pub portal: Portal,
    pub gate: Arc<Gate>,
    pub proxy: Proxy,
    pub identity: Arc<IdentityHeaders>,
    pub cookies: SessionCookies,
    pub replies: Arc<Replies>,
    /// `server.hsts_upstream`: add HSTS to proxied responses lacking it when
    /// this listener terminates TLS.
    pub hsts_upstream: bool,
}

impl Handler for Gateway {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> Response {
        // The request's real duration, for its metric and log line.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let method = req.method().clone();
        let info = RequestInfo::new(conn, req.headers(), &self.trusted_proxies);
        // One await per request, on the path's own future: each layer of
        // async fn between hyper and the upstream is a future moved in place.
        let mut outcome = match self.route(req) {
            Route::Answered(outcome) => outcome,
            // Boxed: the portal's handlers (argon2, store scripts, mail) make
            // large futures; keeping them off the connection task's stack
            // leaves the hot proxy path small.
            Route::Portal(req, rest) => Box::pin(self.portal.handle(req, info, &rest)).await,
            Route::Protected(req) => self.protected(req, info).await,
        };
        self.finish(&mut outcome, &method, conn.tls);
        let status = outcome.response.status();
        let elapsed = started.elapsed();
        crate::metrics::request(
            outcome.route,
            method_label(&method),
            crate::metrics::status_label(status),
            elapsed.as_secs_f64(),
        );
        crate::logging::access(&crate::logging::AccessEntry {
            method: method.as_str(),
            route: outcome.route,
            status: status.as_u16(),
            duration: elapsed,
            user: outcome.user.as_ref().map_or("-", |u| u.username.as_str()),
            client_ip: info.client_ip,
        });
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

impl Gateway {
    /// What every answer gets on its way out, whoever wrote it.
    ///
    /// HSTS: every answer the gateway writes itself carries it under TLS
    /// (its own listener's or, behind a TLS proxy, an https `public_url`) —
    /// the 302 to the login page and the 404 as much as the pages. A proxied
    /// answer gets it only with `server.hsts_upstream` on this TLS listener,
    /// and only when the application did not send its own.
    ///
    /// HEAD: the answer keeps its headers (Content-Length included) and loses
    /// its body. hyper's HTTP/1.1 server drops a HEAD body by itself, but its
    /// HTTP/2 server sends whatever the body holds: HEADERS without
    /// END_STREAM, then DATA, which clients reject as a protocol error.
    fn finish(&self, outcome: &mut Outcome, method: &Method, tls: bool) {
        let headers = outcome.response.headers_mut();
        let hsts = if outcome.proxied { self.hsts_upstream && tls } else { tls || self.replies.hsts() };
        if hsts && !headers.contains_key(header::STRICT_TRANSPORT_SECURITY) {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(reply::HSTS));
        }
        if method == Method::HEAD {
            let body = std::mem::replace(outcome.response.body_mut(), Body::empty());
            let length = body.size_hint().exact();
            // The upstream's own Content-Length (or its absence) stands; a body
            // the gateway wrote tells its length (not for a 304 or 204, which
            // describe no body of their own).
            let status = outcome.response.status();
            let has_body = !matches!(status, http::StatusCode::NOT_MODIFIED | http::StatusCode::NO_CONTENT);
            if let (false, true, Some(n)) = (outcome.proxied, has_body, length) {
                outcome.response.headers_mut().entry(header::CONTENT_LENGTH).or_insert_with(|| HeaderValue::from(n));
            }
        }
    }

    /// Where the request goes. A path that is not already normal is
    /// rewritten in the request itself: one normal form for the gateway's
    /// routes, the rules and the upstream.
    fn route(&self, mut req: Request<Incoming>) -> Route {
        match normalize::path(req.uri().path()) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(normal)) => {
                if let Err(r) = replace_path(&mut req, &normal) {
                    let r = self.replies.failure(Format::negotiate(req.headers()), &r);
                    return Route::Answered(Outcome::new("bad_request", r));
                }
            }
            Err(e) => {
                let r = self.replies.failure(Format::negotiate(req.headers()), &Failure::BadPath(e));
                return Route::Answered(Outcome::new("bad_request", r));
            }
        }
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix(self.prefix.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
        {
            let rest = rest.to_owned();
            return Route::Portal(req, rest);
        }
        Route::Protected(req)
    }

    /// A request for the application: the gate decides, and this renders the
    /// verdict (forward, log in first, refuse).
    async fn protected(&self, req: Request<Incoming>, info: RequestInfo) -> Outcome {
        let format = Format::negotiate(req.headers());
        let host_value = proxy::request_host(&req);
        let Some(host) = host_value.as_ref().and_then(|h| h.to_str().ok()).and_then(|h| normalize::host(h).ok()) else {
            return Outcome::new("proxy", self.replies.failure(format, &Failure::BadHost));
        };
        let facts = Facts::new(&host.name, req.uri().path(), req.method(), info.client_ip, req.headers());
        let verdict = match self.gate.check(&facts).await {
            Ok(v) => v,
            Err(e) => return Outcome::new("proxy", self.replies.failure(format, &Failure::Store(e))),
        };
        let user = verdict.user();
        let (response, proxied) = match verdict {
            Verdict::Allow(auth) => match self.proxy.select(&host.name) {
                None => (self.replies.failure(format, &Failure::NoUpstream), false),
                Some(upstream) => {
                    let ctx = ForwardContext {
                        peer: info.conn.peer.ip(),
                        trusted_peer: info.trusted_peer,
                        scheme: info.connection_scheme(),
                        strip_cookies: &self.cookies.own_names(),
                        identity_headers: &self.identity,
                        caller: auth.as_ref().map(|c| Signed {
                            identity: &c.user().identity,
                            username: &c.user().username,
                            method: c.method(),
                        }),
                        signer: auth.as_ref().map(|c| match c {
                            Caller::Session(a) => Signer::Session(a.token.clone()),
                            Caller::Token(t) => Signer::Token(t.id.clone()),
                        }),
                    };
                    // Awaited here, not in a function of its own: one future
                    // less to move on every proxied request.
                    match self.proxy.forward(upstream, req, &ctx).await {
                        Ok(response) => (response, true),
                        Err(e) => {
                            tracing::warn!(error = %e, "upstream request failed");
                            let m = crate::metrics::get();
                            m.upstream_errors.with_label_values(&[upstream.name.as_str(), e.kind()]).inc();
                            (self.replies.failure(format, &Failure::Upstream(e)), false)
                        }
                    }
                }
            },
            Verdict::LoginRequired { tokens, .. } => {
                let scheme = info.client_scheme(req.headers());
                let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let port = host.port.map(|p| format!(":{p}")).unwrap_or_default();
                let original_url = format!("{scheme}://{}{port}{path}", host.name);
                (self.portal.login_required(req.method(), req.headers(), &original_url, tokens), false)
            }
            Verdict::Limited { retry_after } => {
                let refused = Failure::Auth(crate::auth::error::AuthError::RateLimited { retry_after });
                (self.replies.failure(format, &refused), false)
            }
            Verdict::Deny(None) => {
                (self.replies.failure(format, &Failure::Denied("Access to this resource is denied.")), false)
            }
            Verdict::Deny(Some(_)) => {
                (self.replies.failure(format, &Failure::Denied("Your account may not access this resource.")), false)
            }
        };
        let mut outcome = Outcome::with_user("proxy", user, response);
        outcome.proxied = proxied;
        outcome
    }
}

/// Puts the normal form of the path into the request, keeping the query. The
/// normal form is made of the original's characters and upper-case escapes,
/// so it always parses; were it not to, the request is refused, not guessed at.
fn replace_path<B>(req: &mut Request<B>, path: &str) -> Result<(), Failure> {
    let refuse = |_| Failure::BadPath(normalize::PathError::BadEscape);
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(pq).map_err(|e| refuse(e.to_string()))?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|e| refuse(e.to_string()))?;
    Ok(())
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
        let route = future_size(|g: &'static Gateway, r: Request<Incoming>, i: RequestInfo| g.protected(r, i));
        let check = future_size(|g: &'static Gate, f: &'static Facts<'static>, _: ()| g.check(f));
        assert!(route <= 6 * 1024, "proxied request's future is {route} bytes");
        assert!(check <= 1536, "gate check future is {check} bytes");
    }
}
