//! The pooled keep-alive client used towards one upstream: plain HTTP or HTTPS
//! via rustls (webpki roots plus an optional operator CA bundle).

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::CaFile;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Incoming>;

/// Builds a client; `connect_timeout` bounds TCP connect (a down host fails fast as 502).
pub fn build(ca_file: Option<&CaFile>, connect_timeout: Duration) -> Result<UpstreamClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca_file {
        for c in ca.certs() {
            roots.add(c.clone()).map_err(|e| format!("{}: {e}", ca.path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(512)
        .build(https))
}
