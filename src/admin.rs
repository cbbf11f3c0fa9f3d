//! The admin endpoint: `portcullis unlock NAME`, `portcullis unlock --ip
//! ADDR`, `portcullis sessions revoke NAME`, `portcullis user remove NAME`,
//! `portcullis user list` and `portcullis audit` ask the running gateway to act or to look
//! (`auth::operator`), because the default memory store lives inside it. It
//! is served beside `/metrics` on the metrics listener (`server.metrics_listen`,
//! loopback by default), under `/admin/`.
//!
//! Who can use it, and why a request from anywhere else fails:
//! - only a loopback peer: a process on the gateway's own host (or pod). The
//!   listener may be bound wider for Prometheus; the admin paths still answer
//!   loopback only, so an exposed metrics port exposes no admin action.
//! - only with `Authorization: Bearer <token>`, the token an HMAC of
//!   `auth.secret` (see [`token`]): the command line reads the same config, a
//!   process that merely reaches the port (a server-side request forgery in an
//!   application on the host, say) does not know it.
//! - never from a browser: a request carrying `Origin` or `Sec-Fetch-Site` is
//!   refused, and only `POST` with a JSON body is taken, which a cross-site
//!   page cannot send without a CORS preflight this endpoint never answers. No
//!   cookie is looked at, so there is nothing to forge (CSRF).
//!
//! `/metrics` itself stays open to whoever reaches the listener, as before:
//! do not expose the metrics listener beyond the hosts that scrape it.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::auth::operator::{Operator, OperatorActions};
use crate::body::Response;
use crate::server::{ConnInfo, Handler};

/// Largest admin request body (a name, an address, or up to
/// [`MAX_NAMES`] names).
const MAX_BODY: usize = 8192;

/// Most names one `users/state` request may ask about (the command line asks
/// in batches).
pub const MAX_NAMES: usize = 100;

/// The bearer token of the admin endpoint for this `auth.secret`.
pub fn token(secret: &[u8]) -> String {
    let key = crate::keys::derive(secret, crate::keys::Purpose::AdminEndpoint);
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why the command line could not have the gateway act.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing listens at the address: no gateway runs there.
    #[error("no gateway answers at {addr}: {reason}")]
    NoGateway { addr: std::net::SocketAddr, reason: String },
    /// The exchange failed after connecting, or took too long.
    #[error("the gateway at {addr} did not answer: {reason}")]
    Unreachable { addr: std::net::SocketAddr, reason: String },
    /// The gateway answered with an error.
    #[error("the gateway at {addr} refused: {status} {error}")]
    Refused { addr: std::net::SocketAddr, status: u16, error: String },
}

/// Where the command line finds the admin endpoint of the gateway that
/// `metrics_listen` describes: on loopback (an unspecified address is
/// reached there). None when the listener is off or on an ephemeral port.
pub fn local_address(metrics_listen: Option<std::net::SocketAddr>) -> Option<std::net::SocketAddr> {
    let addr = metrics_listen.filter(|a| a.port() != 0)?;
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(std::net::SocketAddr::new(ip, addr.port()))
}

/// Asks the gateway at `addr` to do `action` (`unlock`, `unlock-ip`,
/// `sessions/revoke`, `users/forget`, `users/state`, `audit`) with the JSON `body`;
/// returns its JSON answer.
pub async fn call(addr: std::net::SocketAddr, secret: &[u8], action: &str, body: &Value) -> Result<Value, CallError> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let unreachable = |reason: String| CallError::Unreachable { addr, reason };
    let client: Client<_, http_body_util::Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("http://{addr}/admin/{action}"))
        .header(header::AUTHORIZATION, format!("Bearer {}", token(secret)))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, concat!("portcullis-cli/", env!("CARGO_PKG_VERSION")))
        .body(http_body_util::Full::new(Bytes::from(body.to_string())))
        .map_err(|e| unreachable(e.to_string()))?;
    let exchange = async {
        let response = client.request(req).await.map_err(|e| {
            if e.is_connect() { CallError::NoGateway { addr, reason: chain(&e) } } else { unreachable(chain(&e)) }
        })?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        Ok::<_, CallError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .map_err(|_| unreachable("no answer within 10 s".into()))??;
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status != StatusCode::OK {
        let error = value.get("error").and_then(Value::as_str).unwrap_or("(no reason given)").to_owned();
        return Err(CallError::Refused { addr, status: status.as_u16(), error });
    }
    Ok(value)
}

/// The metrics listener: `/metrics` and the admin endpoint.
pub struct MetricsListener {
    operator: OperatorActions,
    token: String,
}

impl MetricsListener {
    pub fn new(operator: OperatorActions, secret: &[u8]) -> MetricsListener {
        MetricsListener { operator, token: token(secret) }
    }

    /// Whether the request may act, and the answer if not.
    fn refusal(&self, method: &Method, headers: &HeaderMap, peer: IpAddr) -> Option<Response> {
        if !peer.is_loopback()
            && !matches!(peer, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        {
            return Some(answer(StatusCode::FORBIDDEN, "the admin endpoint answers loopback clients only"));
        }
        if headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site") {
            return Some(answer(StatusCode::FORBIDDEN, "the admin endpoint does not answer browsers"));
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(self.token.as_bytes())) {
            let mut r = answer(StatusCode::UNAUTHORIZED, "a valid admin token is required");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            return Some(r);
        }
        if method != Method::POST {
            let mut r = answer(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            r.headers_mut().insert(header::ALLOW, http::HeaderValue::from_static("POST"));
            return Some(r);
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
        if !json {
            return Some(answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send a JSON body"));
        }
        None
    }

    async fn admin(&self, req: http::Request<Incoming>, conn: ConnInfo) -> Response {
        let (parts, body) = req.into_parts();
        if let Some(r) = self.refusal(&parts.method, &parts.headers, conn.peer.ip()) {
            return r;
        }
        let body: Bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return answer(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        };
        let Ok(fields) = serde_json::from_slice::<Value>(&body) else {
            return answer(StatusCode::BAD_REQUEST, "invalid request body");
        };
        let field = |k: &str| fields.get(k).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
        let agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        let by = Operator { ip: conn.peer.ip().to_string(), agent: agent.chars().take(128).collect(), name: None };
        let result = match (parts.uri.path(), field("name"), field("ip")) {
            ("/admin/unlock", Some(name), _) => self.operator.unlock(name, &by).await.map(|r| json!(r)),
            ("/admin/unlock-ip", _, Some(ip)) => match ip.parse::<IpAddr>() {
                Ok(ip) => self.operator.unlock_ip(ip, &by).await.map(|r| json!(r)),
                Err(_) => return answer(StatusCode::BAD_REQUEST, "ip: not an IP address"),
            },
            ("/admin/sessions/revoke", Some(name), _) => {
                self.operator.revoke_sessions(name, &by).await.map(|r| json!(r))
            }
            ("/admin/tokens/list", Some(name), _) => self.operator.tokens(name).await.map(|r| json!(r)),
            ("/admin/tokens/revoke", Some(name), _) => {
                self.operator.revoke_tokens(name, field("id"), &by).await.map(|r| json!(r))
            }
            ("/admin/users/forget", Some(name), _) => {
                if !crate::auth::users::valid_username(name) {
                    return answer(StatusCode::BAD_REQUEST, "name: not a user name");
                }
                self.operator.forget_user(name, &by).await.map(|r| json!(r))
            }
            ("/admin/audit", _, _) => match serde_json::from_value::<crate::store::AuditQuery>(fields.clone()) {
                Ok(q) => self.operator.search_audit(&q).await.map(|r| json!(r)),
                Err(e) => return answer(StatusCode::BAD_REQUEST, &format!("invalid audit search: {e}")),
            },
            ("/admin/users/state", _, _) => {
                let Some(names) = fields.get("names").and_then(Value::as_array) else {
                    return answer(StatusCode::BAD_REQUEST, "names is required");
                };
                let names: Option<Vec<String>> = names.iter().map(|n| n.as_str().map(str::to_owned)).collect();
                match names {
                    Some(names) if names.len() <= MAX_NAMES => {
                        self.operator.account_states(&names).await.map(|r| json!(r))
                    }
                    _ => return answer(StatusCode::BAD_REQUEST, "names: at most 100 strings"),
                }
            }
            (
                "/admin/unlock"
                | "/admin/sessions/revoke"
                | "/admin/users/forget"
                | "/admin/tokens/list"
                | "/admin/tokens/revoke",
                None,
                _,
            ) => {
                return answer(StatusCode::BAD_REQUEST, "name is required");
            }
            ("/admin/unlock-ip", _, None) => return answer(StatusCode::BAD_REQUEST, "ip is required"),
            _ => return answer(StatusCode::NOT_FOUND, "no such admin action"),
        };
        match result {
            Ok(v) => crate::reply::json(StatusCode::OK, &v),
            Err(e) => {
                tracing::error!(error = %e, "admin action failed: store unavailable");
                answer(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable")
            }
        }
    }
}

/// An error with its causes ("client error (Connect): tcp connect error: Connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn answer(status: StatusCode, error: &str) -> Response {
    crate::reply::json(status, &json!({"success": false, "error": error}))
}

impl Handler for MetricsListener {
    async fn handle(self: Arc<Self>, req: http::Request<Incoming>, conn: ConnInfo) -> Response {
        if req.uri().path().starts_with("/admin/") {
            self.admin(req, conn).await
        } else {
            crate::metrics::answer(req.uri().path())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_keyed_by_the_secret() {
        let t = token(b"secret one");
        assert_eq!(t.len(), 64);
        assert_eq!(t, token(b"secret one"));
        assert_ne!(t, token(b"secret two"));
    }
}
