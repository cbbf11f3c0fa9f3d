//! The reverse proxy: picks the upstream by Host, cleans the headers, streams the
//! body both ways, passes protocol upgrades (WebSocket) through, and maps
//! upstream failures to 502 (unreachable) or 504 (too slow). The upstream's
//! `timeout` bounds the wait for the response head and, once the body streams,
//! each silence inside it.

mod client;
pub mod headers;
pub mod upgrades;

use std::net::IpAddr;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::body::{Body, Response};
use crate::config::UpstreamConfig;
use crate::identity::{IdentityHeaders, IdentityValues};
use client::UpstreamClient;
use upgrades::{Signer, Upgrades};

/// How forwarding failed; `reply::Failure` turns it into an error page.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream {upstream} unreachable: {detail}")]
    Connect { upstream: String, detail: String },
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout { upstream: String, timeout: Duration },
    #[error("upstream {upstream} failed: {detail}")]
    Protocol { upstream: String, detail: String },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Connect { .. } => "connect",
            ProxyError::Timeout { .. } => "timeout",
            ProxyError::Protocol { .. } => "protocol",
        }
    }
}

/// One configured upstream with its own connection pool.
pub struct Upstream {
    /// Label for logs and metrics: the configured URL's authority.
    pub name: String,
    host: Option<String>,
    scheme: Scheme,
    authority: Authority,
    /// Path prefix of the upstream URL without trailing slash ("" for "/").
    base_path: String,
    host_header: HeaderValue,
    timeout: Duration,
    preserve_host: bool,
    /// `pass_basic_auth`: the password the application gets with the
    /// user's name as HTTP Basic.
    basic_auth_password: Option<String>,
    /// One pool per worker thread ([`crate::worker::index`]), so a
    /// request and the upstream connection serving it stay on one core.
    clients: Box<[UpstreamClient]>,
}

impl Upstream {
    fn client(&self) -> &UpstreamClient {
        &self.clients[crate::worker::index() % self.clients.len()]
    }
}

/// What the proxy needs to know about the request besides the request itself.
pub struct ForwardContext<'a> {
    pub peer: IpAddr,
    pub trusted_peer: bool,
    pub scheme: &'static str,
    /// Cookies of the gateway that never reach the upstream.
    pub strip_cookies: &'a [&'a str],
    /// The identity headers: client-sent copies are always removed.
    pub identity_headers: &'a IdentityHeaders,
    /// Who signed the request, if anyone.
    pub caller: Option<Signed<'a>>,
    /// What an upgraded connection ends with (the caller's session or token).
    pub signer: Option<Signer>,
}

/// What the proxy tells the application of who signed a request.
#[derive(Clone, Copy)]
pub struct Signed<'a> {
    pub identity: &'a IdentityValues,
    pub username: &'a str,
    /// `session` or `token` (`Caller::method`).
    pub method: &'static str,
}

/// All upstreams, in configuration order, and the upgraded connections open
/// to them.
pub struct Proxy {
    upstreams: Vec<Upstream>,
    default: Option<usize>,
    upgrades: Upgrades,
}

impl Proxy {
    /// `pools`: one connection pool per upstream for each worker thread.
    pub fn new(configs: &[UpstreamConfig], pools: usize) -> Result<Proxy, String> {
        let mut upstreams = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let key = format!("upstream[{i}]");
            let uri: Uri = c.url.as_str().parse().map_err(|e| format!("{key}.url: {e}"))?;
            let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
            let authority = uri.authority().cloned().ok_or_else(|| format!("{key}.url: no host"))?;
            let clients = (0..pools.max(1))
                .map(|_| client::build(c.ca_file.as_ref(), c.timeout.min(Duration::from_secs(10))))
                .collect::<Result<Box<[_]>, _>>()
                .map_err(|e| format!("{key}.ca_file: {e}"))?;
            upstreams.push(Upstream {
                name: authority.to_string(),
                host: c.host.as_ref().map(|h| h.trim_end_matches('.').to_ascii_lowercase()),
                host_header: HeaderValue::from_str(authority.as_str()).map_err(|e| format!("{key}.url: {e}"))?,
                base_path: uri.path().trim_end_matches('/').to_string(),
                scheme,
                authority,
                timeout: c.timeout,
                preserve_host: c.preserve_host,
                basic_auth_password: c
                    .pass_basic_auth
                    .then(|| c.basic_auth_password.as_ref().map(|p| p.expose().to_owned()))
                    .flatten(),
                clients,
            });
        }
        let default = upstreams.iter().position(|u| u.host.is_none());
        Ok(Proxy { upstreams, default, upgrades: Upgrades::default() })
    }

    /// The upgraded connections open (checked against their signers'
    /// sessions and tokens by `Upgrades::spawn_checks`).
    pub fn upgrades(&self) -> &Upgrades {
        &self.upgrades
    }

    /// First upstream whose host is `host` (a normalised host name, without
    /// port), else the default.
    pub fn select(&self, host: &str) -> Option<&Upstream> {
        self.upstreams
            .iter()
            .find(|u| u.host.as_deref() == Some(host))
            .or_else(|| self.default.map(|i| &self.upstreams[i]))
    }

    /// Forwards `req` to `upstream`, streaming both bodies.
    pub async fn forward(
        &self,
        upstream: &Upstream,
        mut req: Request<Incoming>,
        ctx: &ForwardContext<'_>,
    ) -> Result<Response, ProxyError> {
        let upgrade = is_upgrade(&req);
        let original_host = request_host(&req);

        let headers = req.headers_mut();
        headers::strip_hop_by_hop(headers, upgrade);
        ctx.identity_headers.strip(headers);
        headers::strip_cookies(headers, ctx.strip_cookies);
        headers::strip_forwarding(headers, ctx.trusted_peer);
        headers::set_forwarded(headers, ctx.peer, ctx.trusted_peer, ctx.scheme, original_host.as_ref());
        if let Some(c) = &ctx.caller {
            ctx.identity_headers.apply(c.identity, c.method, headers);
            // A token is the client's secret with the gateway, never the application's.
            if c.method == "token" {
                headers.remove(header::AUTHORIZATION);
            }
        }
        if let Some(password) = &upstream.basic_auth_password {
            // The application gets the user's name, never the client's own credentials.
            headers.remove(header::AUTHORIZATION);
            if let Some(c) = &ctx.caller
                && let Some(v) = headers::basic_authorization(c.username, password)
            {
                headers.insert(header::AUTHORIZATION, v);
            }
        }
        let host = match (&original_host, upstream.preserve_host) {
            (Some(h), true) => h.clone(),
            _ => upstream.host_header.clone(),
        };
        headers.insert(header::HOST, host);

        *req.uri_mut() = upstream_uri(upstream, req.uri())?;
        *req.version_mut() = Version::HTTP_11;

        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        // Two clock reads: the deadline is counted from the start, and the
        // answer's time also starts the body's silence count.
        let started = Instant::now();
        let result = tokio::time::timeout_at(started + upstream.timeout, upstream.client().request(req)).await;
        let answered = Instant::now();
        crate::metrics::observe_upstream(
            &upstream.name,
            answered.duration_since(started),
            result.as_ref().ok().and_then(|r| r.as_ref().ok()).map(|r| r.status()),
        );
        let mut resp = match result {
            Err(_) => {
                return Err(ProxyError::Timeout { upstream: upstream.name.clone(), timeout: upstream.timeout });
            }
            Ok(Err(e)) if e.is_connect() => {
                return Err(ProxyError::Connect { upstream: upstream.name.clone(), detail: error_chain(&e) });
            }
            Ok(Err(e)) => {
                return Err(ProxyError::Protocol { upstream: upstream.name.clone(), detail: error_chain(&e) });
            }
            Ok(Ok(resp)) => resp,
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                // Registered before the switch completes: the connection ends
                // with its signer from its first byte on.
                let mut registration = ctx.signer.clone().map(|s| self.upgrades.register(s));
                tokio::spawn(async move {
                    if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                        let mut c = TokioIo::new(c);
                        let mut u = TokioIo::new(u);
                        let ended = async {
                            match &mut registration {
                                Some(r) => {
                                    let _ = r.closed.wait_for(|closed| *closed).await;
                                }
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                            () = ended => {}
                        }
                    }
                    drop(registration);
                });
            }
            let (parts, _) = resp.into_parts();
            return Ok(Response::from_parts(parts, Body::empty()));
        }

        headers::strip_hop_by_hop(resp.headers_mut(), false);
        Ok(resp.map(|b| Body::upstream(b, answered, upstream.timeout)))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// The Host the client asked for: the Host header, or the authority of an
/// HTTP/2 request.
pub fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers()
        .get(header::HOST)
        .cloned()
        .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()))
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

fn upstream_uri(up: &Upstream, original: &Uri) -> Result<Uri, ProxyError> {
    let pq = original.path_and_query().map_or("/", PathAndQuery::as_str);
    let pq: PathAndQuery = if up.base_path.is_empty() {
        original.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"))
    } else {
        format!("{}{}", up.base_path, pq).parse().map_err(|e: http::uri::InvalidUri| ProxyError::Protocol {
            upstream: up.name.clone(),
            detail: e.to_string(),
        })?
    };
    Uri::builder()
        .scheme(up.scheme.clone())
        .authority(up.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|e| ProxyError::Protocol { upstream: up.name.clone(), detail: e.to_string() })
}
