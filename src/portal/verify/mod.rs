//! Forward-auth: nginx `auth_request`, Traefik `ForwardAuth` and Caddy
//! `forward_auth` ask here whether a request may pass. Believed only from
//! trusted proxies, the original request is read in the asking proxy's
//! dialect (one file each: [`nginx`], [`forwarded`] for Traefik and Caddy),
//! the gate decides it as it decides a request in proxy mode, and the verdict
//! is answered in that dialect: how each proxy states the original request
//! and how it wants a refusal answered are the only things that differ.

mod forwarded;
mod nginx;
mod original;

use http::StatusCode;
use http::header::HeaderMap;

use super::context::{Answer, Cx};
use crate::gate::{Caller, Facts, Verdict};
use crate::metrics;
use crate::reply::{self, Failure};

pub use original::Original;

/// The proxy asking, and so the dialect of its request and of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// nginx, ingress-nginx: `X-Original-URL`; a refusal is a `401`.
    Nginx,
    /// Traefik, Caddy: `X-Forwarded-*`; a browser is redirected to log in.
    Forwarded,
}

/// The dialect to read. Each proxy sets its own headers but passes the
/// client's other headers through, so a client behind Traefik could add an
/// `X-Original-URL` (or behind nginx an `X-Forwarded-Uri`) naming a bypassed
/// path and have that checked instead. `?mode=` names the proxy and so the
/// one set of headers to believe; without it, finding both sets is refused.
fn dialect(headers: &HeaderMap, mode: Option<&str>) -> Result<Dialect, &'static str> {
    match mode {
        Some("nginx") => Ok(Dialect::Nginx),
        Some("traefik" | "caddy") => Ok(Dialect::Forwarded),
        Some(_) => Err("unknown mode: use ?mode=nginx, ?mode=traefik or ?mode=caddy"),
        None => match (nginx::present(headers), forwarded::present(headers)) {
            (true, true) => Err("both X-Original-URL and X-Forwarded-Uri present: set ?mode= to the proxy"),
            (true, false) => Ok(Dialect::Nginx),
            (false, _) => Ok(Dialect::Forwarded),
        },
    }
}

/// The original request, read in the dialect `mode` names (or the headers
/// show, unambiguously). Public for the fuzz targets.
pub fn original<'a>(headers: &'a HeaderMap, mode: Option<&str>) -> Result<Original<'a>, &'static str> {
    match dialect(headers, mode)? {
        Dialect::Nginx => nginx::original(headers),
        Dialect::Forwarded => forwarded::original(headers),
    }
}

/// `{prefix}/verify`, any method.
pub(super) async fn verify(cx: &Cx<'_>) -> Answer {
    if !cx.info.trusted_peer {
        metrics::forward_auth("error");
        return (cx.fail(Failure::UntrustedPeer), None);
    }
    let mode = super::forms::query_field(cx.uri, "mode");
    let read = dialect(cx.headers, mode.as_deref()).and_then(|d| Ok((d, original(cx.headers, mode.as_deref())?)));
    let (dialect, orig) = match read {
        Ok(r) => r,
        Err(msg) => {
            metrics::forward_auth("error");
            return (cx.fail(Failure::BadForwardAuth(msg)), None);
        }
    };
    let facts = Facts::new(&orig.host, &orig.path, &orig.method, cx.info.client_ip, cx.headers);
    let verdict = match cx.portal.gate.check(&facts).await {
        Ok(v) => v,
        Err(e) => {
            metrics::forward_auth("error");
            return (cx.fail(e), None);
        }
    };
    let user = verdict.user();
    let response = match verdict {
        Verdict::Allow(caller) => {
            metrics::forward_auth("allow");
            let mut r = reply::empty(StatusCode::OK);
            if let Some(c) = &caller {
                cx.portal.identity.apply(&c.user().identity, c.method(), r.headers_mut());
            }
            // What the proxy should send the application as `Authorization`
            // (the deploy/ configs copy it over the client's): the client's
            // own, except a token, which is the client's secret with the
            // gateway and never the application's.
            if !matches!(caller, Some(Caller::Token(_)))
                && let Some(authorization) = cx.headers.get(http::header::AUTHORIZATION)
            {
                r.headers_mut().insert(http::header::AUTHORIZATION, authorization.clone());
            }
            r
        }
        Verdict::Deny(_) => {
            metrics::forward_auth("deny");
            reply::json_error(StatusCode::FORBIDDEN, "access denied")
        }
        Verdict::LoginRequired { tokens, .. } => {
            let login = cx.portal.login_url(&orig.url());
            let (mut r, decision) = match dialect {
                Dialect::Nginx => (nginx::login_required(&orig, cx.headers, &login), "unauthorized"),
                Dialect::Forwarded => forwarded::login_required(&orig, cx.headers, &login),
            };
            if tokens && r.status() == StatusCode::UNAUTHORIZED {
                // The proxy relays it: a client that can send a token prompts for one.
                r.headers_mut().insert(http::header::WWW_AUTHENTICATE, cx.portal.basic_challenge.clone());
            }
            metrics::forward_auth(decision);
            r
        }
        Verdict::Limited { retry_after } => {
            metrics::forward_auth("deny");
            cx.fail(crate::auth::error::AuthError::RateLimited { retry_after })
        }
    };
    (response, user)
}
