//! What every part of the gateway knows about a request besides the request
//! itself: where it came from ([`RequestInfo`]), and what the access log and
//! metrics record about its answer ([`Outcome`]).

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;

use crate::auth::users::User;
use crate::body::Response;
use crate::client_ip;
use crate::proxy::headers;
use crate::server::ConnInfo;

/// The connection and the client behind it.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo {
    pub conn: ConnInfo,
    /// The client's address: the peer, or the address a trusted proxy names
    /// in `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// The peer is a trusted proxy (its `X-Forwarded-*` headers are believed).
    pub trusted_peer: bool,
}

impl RequestInfo {
    pub fn new(conn: ConnInfo, request_headers: &HeaderMap, trusted_proxies: &[IpNet]) -> RequestInfo {
        let trusted_peer = client_ip::is_trusted(conn.peer.ip(), trusted_proxies);
        // Both ways canonical: an IPv4 client of a dual-stack listener shows as
        // ::ffff:a.b.c.d, which IPv4 rules and limits must see as a.b.c.d.
        let client_ip = if trusted_peer {
            client_ip::client_ip(conn.peer.ip(), request_headers, trusted_proxies)
        } else {
            client_ip::canonical(conn.peer.ip())
        };
        RequestInfo { conn, client_ip, trusted_peer }
    }

    /// The scheme the client used: a trusted proxy's `X-Forwarded-Proto`, else
    /// the connection's.
    pub fn client_scheme(&self, request_headers: &HeaderMap) -> &'static str {
        if self.trusted_peer
            && let Some(p) = request_headers.get(&headers::X_FORWARDED_PROTO)
        {
            return if p.as_bytes().eq_ignore_ascii_case(b"https") { "https" } else { "http" };
        }
        self.connection_scheme()
    }

    /// The scheme of the connection to the gateway itself.
    pub fn connection_scheme(&self) -> &'static str {
        if self.conn.tls { "https" } else { "http" }
    }
}

/// A request's answer with what the access log and metrics record about it.
pub struct Outcome {
    /// Bounded route name ("proxy", "login", "api_send_login_otp", ...).
    pub route: &'static str,
    /// The logged-in user, when the request had one.
    pub user: Option<Arc<User>>,
    pub response: Response,
    /// True when `response` is the upstream's (proxied), false when the gateway
    /// wrote it: the gateway's own answers get its security headers.
    pub proxied: bool,
}

impl Outcome {
    pub fn new(route: &'static str, response: Response) -> Outcome {
        Outcome { route, user: None, response, proxied: false }
    }

    pub fn with_user(route: &'static str, user: Option<Arc<User>>, response: Response) -> Outcome {
        Outcome { route, user, response, proxied: false }
    }
}
