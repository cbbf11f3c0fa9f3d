//! The assembled gateway: one `App` holding config, store, mailer, users,
//! templates, rules and upstreams, shared by `Arc` with every request. `run`
//! binds the listeners and serves until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderName;
use ipnet::IpNet;

use crate::access::AccessRules;
use crate::auth::password::PasswordChecker;
use crate::auth::users::Users;
use crate::config::Config;
use crate::mail::Mailer;
use crate::proxy::Proxy;
use crate::render::Templates;
use crate::server::{self, Limits, Listener, Shutdown};
use crate::session::CookieJar;
use crate::store::Store;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Users(#[from] crate::auth::users::UsersError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("mail: {0}")]
    Mail(#[from] crate::mail::MailError),
    #[error("templates: {0}")]
    Templates(#[from] crate::render::RenderError),
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error("password hashing: {0}")]
    Password(#[from] crate::auth::password::PasswordError),
}

pub struct App {
    pub config: Config,
    /// `auth.prefix`, e.g. "/_auth".
    pub prefix: String,
    /// Scheme, host and port of `public_url` (what CSRF checks accept).
    pub public_origin: String,
    /// Secret keying CSRF tokens and code hashes.
    pub secret: Vec<u8>,
    pub trusted_proxies: Vec<IpNet>,
    /// Identity header names, in the order of `User::header_values`.
    pub identity_headers: [HeaderName; 4],
    pub cookies: CookieJar,
    pub proxy: Proxy,
    pub rules: AccessRules,
    pub users: Arc<Users>,
    pub passwords: PasswordChecker,
    pub store: Store,
    pub mailer: Mailer,
    pub templates: Templates,
    /// HSTS on gateway pages (public_url is https).
    pub hsts: bool,
}

impl App {
    /// Assembles the gateway. `users` may be given (demo); else the users file is read.
    pub async fn build(config: Config, users: Option<Users>) -> Result<App, StartError> {
        let public_origin = config.server.public_url.origin().ascii_serialization();
        let hsts = config.server.public_url.scheme() == "https";
        let header = |s: &str| {
            HeaderName::from_bytes(s.as_bytes())
                .map_err(|_| StartError::Config(format!("auth.identity_headers: {s:?}")))
        };
        let identity_headers = [
            header(&config.auth.identity_headers.user)?,
            header(&config.auth.identity_headers.email)?,
            header(&config.auth.identity_headers.name)?,
            header(&config.auth.identity_headers.groups)?,
        ];
        let users = match users {
            Some(u) => u,
            None => Users::open(&config.auth.users_file)?,
        };
        let proxy = Proxy::new(&config.upstream).map_err(StartError::Config)?;
        let rules = AccessRules::compile(&config.access_control).map_err(StartError::Config)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(App {
            prefix: config.auth.prefix.clone(),
            secret: config.auth.secret.expose().as_bytes().to_vec(),
            trusted_proxies: config.server.trusted_proxies.clone(),
            cookies: CookieJar::new(&config.session, hsts),
            store: Store::open(&config.store).await?,
            mailer: Mailer::new(&config.mail)?,
            templates: Templates::load()?,
            passwords: PasswordChecker::new(cores)?,
            users: Arc::new(users),
            identity_headers,
            proxy,
            rules,
            public_origin,
            hsts,
            config,
        })
    }
}

/// The addresses a running gateway listens on.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub public: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Binds the public and metrics listeners, prints where they are, and serves
/// until `shutdown` fires. Returns once in-flight requests have drained.
pub async fn run(app: App, shutdown: Shutdown) -> Result<(), StartError> {
    let tls = match (&app.config.server.tls_cert, &app.config.server.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls_acceptor(cert, key)?),
        _ => None,
    };
    let listener = Listener::bind(app.config.server.listen, tls).await?;
    let metrics = match app.config.server.metrics_listen {
        Some(addr) => Some(Listener::bind(addr, None).await?),
        None => None,
    };
    let bound = Bound { public: listener.local_addr(), metrics: metrics.as_ref().map(Listener::local_addr) };
    app.users.watch(app.store.clone(), shutdown.clone());
    let scheme = if listener.is_tls() { "https" } else { "http" };
    // One machine-readable line per listener (tests and scripts wait for it).
    println!("portcullis listening on {scheme}://{}", bound.public);
    if let Some(m) = bound.metrics {
        println!("portcullis metrics on http://{m}/metrics");
    }
    let metrics_addr = bound.metrics.map_or_else(|| "off".to_string(), |m| m.to_string());
    tracing::info!(listen = %bound.public, metrics = %metrics_addr, store = app.store.backend_name(), "gateway started");

    let limits = Limits::from_config(&app.config.server);
    let app = Arc::new(app);
    let metrics_task = metrics.map(|m| {
        let s = shutdown.clone();
        tokio::spawn(server::serve(m, Arc::new(crate::router::MetricsEndpoint), limits, s))
    });
    server::serve(listener, app, limits, shutdown).await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    tracing::info!("gateway stopped");
    Ok(())
}
