//! Assembly: [`build`] turns a validated config into the [`Gateway`] (every
//! handle built once and shared by `Arc`), and [`run`] binds the listeners and
//! serves until shutdown. This is the only module that sees every part.
//!
//! Tests assemble the same gateway in their own process (mini-redis's
//! `server::run(listener, shutdown)`): [`build_with_clock`] with a manual
//! clock, then [`serve`] on listeners they bound, so time is moved rather
//! than waited for.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::access::AccessRules;
use crate::admin::MetricsListener;
use crate::audit::Audit;
use crate::auth::account::AccountActions;
use crate::auth::codes::Codes;
use crate::auth::credential::Fingerprints;
use crate::auth::lockout::Lockout;
use crate::auth::login::{LoginFlow, LoginSettings};
use crate::auth::notify::Notifier;
use crate::auth::operator::OperatorActions;
use crate::auth::passkey::Passkeys;
use crate::auth::password::PasswordChecker;
use crate::auth::record::Attempts;
use crate::auth::reset::{NewPasswords, PasswordReset};
use crate::auth::suspicious::SuspiciousActivity;
use crate::auth::tokens::AccessTokens;
use crate::auth::totp::Authenticator;
use crate::auth::users::Users;
use crate::auth::users::ldap::Directory;
use crate::clock::Clock;
use crate::config::{Config, Problem, RateSpec, UserBackend};
use crate::gate::Gate;
use crate::identity::IdentityHeaders;
use crate::mail::Mailer;
use crate::portal::{Csrf, Portal, PortalSettings, Redirects};
use crate::proxy::Proxy;
use crate::ratelimit::Limiter;
use crate::render::Templates;
use crate::reply::Replies;
use crate::router::Gateway;
use crate::server::{self, Limits, Listener, ServerError};
use crate::session::SessionCookies;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("auth.users_file: {0}")]
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

/// Opens every file `serve` opens at start-up, as `serve` would, and reports
/// each that fails under its key: so `check-config` passing means `serve`
/// finds its files. (The CA bundles are read by validation already.)
pub fn preflight(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    if config.auth.backend == UserBackend::File
        && let Err(e) = Users::open(&config.auth.users_file)
    {
        problems.push(Problem::new("auth.users_file", e.to_string()));
    }
    if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key)
        && let Err(server::ServerError::Tls(message)) = server::tls_acceptor(cert, key)
    {
        // The message starts with its key ("server.tls_key /path: ...").
        let end = message.find([' ', ':']).unwrap_or(message.len());
        let (key, rest) = message.split_at(end);
        problems.push(Problem::new(key, rest.trim_start_matches([' ', ':'])));
    }
    if let Some(path) = &config.store.state_file
        && config.store.url.expose().starts_with("memory:")
    {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        match std::fs::File::open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.is_dir() => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => problems.push(Problem::new(
                "store.state_file",
                format!("{}: its directory {} does not exist", path.display(), dir.display()),
            )),
            Err(e) => problems.push(Problem::new("store.state_file", format!("{}: {e}", path.display()))),
        }
    }
    problems
}

/// What is allowed but probably not meant: `serve` logs each at start-up
/// and `check-config` prints them.
pub fn warnings(config: &Config) -> Vec<Problem> {
    let mut warnings = Vec::new();
    if config.auth.backend == UserBackend::Ldap && config.ldap.url.starts_with("ldap://") && !config.ldap.start_tls {
        warnings.push(Problem::new(
            "ldap.start_tls",
            "false with an ldap:// URL: passwords cross the network in the clear; use ldaps:// or start_tls = true",
        ));
    }
    if config.store.url.expose().starts_with("memory:") && config.store.state_file.is_none() {
        warnings.push(Problem::new(
            "store.state_file",
            "not set: with the memory store, each user's 2FA enrolment and backup codes are lost \
             when the gateway restarts (sessions always are); set a state_file, or use Redis",
        ));
    }
    warnings
}

/// A built gateway and what `run` needs to serve it.
pub struct App {
    pub config: Config,
    pub gateway: Gateway,
    pub store: Store,
    pub users: Arc<Users>,
    /// The audit trail (the users file's reloads write to it).
    pub audit: Audit,
    /// Which sessions a users-file reload ends for a changed credential.
    pub stale: crate::auth::users::Stale,
}

/// Builds the gateway from a validated config. `users` may be given (the
/// demo); else the users file is read.
pub async fn build(config: Config, users: Option<Users>) -> Result<App, StartError> {
    build_with_clock(config, users, Clock::system()).await
}

/// As [`build`], keeping time by `clock` (tests pass a manual one).
pub async fn build_with_clock(config: Config, users: Option<Users>, clock: Clock) -> Result<App, StartError> {
    let public_url = &config.server.public_url;
    let public_origin = public_url.origin().ascii_serialization();
    let secure = public_url.scheme() == "https";
    let prefix = config.auth.prefix.clone();
    let secret: Arc<[u8]> = config.auth.secret.expose().as_bytes().into();

    let users = Arc::new(match users {
        Some(u) => u,
        None => open_users(&config)?,
    });
    let store = Store::open_with_clock(&config.store, clock.clone()).await?;
    let templates = Arc::new(Templates::load()?);
    let cookies = SessionCookies::new(&config.session, secure);
    let identity = Arc::new(IdentityHeaders::new(&config.auth.identity_headers));
    let replies = Arc::new(Replies::new(templates.clone(), &prefix, &config.auth.app_name, secure));
    let shared = Shared {
        config: &config,
        public_origin: &public_origin,
        store: &store,
        users: &users,
        cookies: &cookies,
        secret: &secret,
        clock: &clock,
    };
    let AuthHandles { gate, login, account, reset, audit, stale, notifier } = shared.auth_handles(templates)?;
    let operator =
        OperatorActions::new(store.clone(), users.clone(), audit.clone(), secret.clone()).with_notifier(notifier);

    let portal = Portal {
        gate: gate.clone(),
        login,
        account,
        reset,
        operator,
        store: store.clone(),
        replies: replies.clone(),
        cookies: cookies.clone(),
        csrf: Csrf::new(secret, &public_origin, clock.clone()),
        clock,
        redirects: Redirects::new(public_url, &config.auth.allowed_redirect_domains),
        identity: identity.clone(),
        settings: portal_settings(&config, public_origin),
        basic_challenge: basic_challenge(&config.auth.app_name),
    };
    let proxy = Proxy::new(&config.upstream, config.server.worker_threads()).map_err(StartError::Config)?;
    proxy.upgrades().spawn_checks(Arc::downgrade(&gate), crate::proxy::upgrades::CHECK_EVERY);
    register_upstreams(&config);
    let gateway = Gateway {
        prefix,
        trusted_proxies: config.server.trusted_proxies.clone(),
        portal,
        gate,
        proxy,
        identity,
        cookies,
        replies,
        hsts_upstream: config.server.hsts_upstream,
    };
    Ok(App { config, gateway, store, users, audit, stale })
}

/// The users, from the backend the config names. A directory is not asked
/// anything yet: the gateway starts while it is down, answering 503 until
/// it is back, rather than not at all.
fn open_users(config: &Config) -> Result<Users, StartError> {
    match config.auth.backend {
        UserBackend::File => Ok(Users::open(&config.auth.users_file)?),
        UserBackend::Ldap => {
            let directory = Directory::new(&config.ldap).map_err(|e| StartError::Config(format!("ldap: {e}")))?;
            Ok(Users::ldap(directory))
        }
    }
}

/// What every auth handle is built from.
struct Shared<'a> {
    config: &'a Config,
    public_origin: &'a str,
    store: &'a Store,
    users: &'a Arc<Users>,
    cookies: &'a SessionCookies,
    secret: &'a Arc<[u8]>,
    clock: &'a Clock,
}

/// The login flow as [`build_with_clock`] wires it, for `auth::login`'s unit
/// tests (which hold it to its level and attempt logic in process).
#[cfg(test)]
pub(crate) fn login_flow(
    config: &Config,
    store: &Store,
    users: &Arc<Users>,
    clock: &Clock,
) -> Result<crate::auth::login::LoginFlow, StartError> {
    let public_origin = config.server.public_url.origin().ascii_serialization();
    let secret: Arc<[u8]> = config.auth.secret.expose().as_bytes().into();
    let cookies = SessionCookies::new(&config.session, config.server.public_url.scheme() == "https");
    let shared =
        Shared { config, public_origin: &public_origin, store, users, cookies: &cookies, secret: &secret, clock };
    Ok(shared.auth_handles(Arc::new(Templates::load()?))?.login)
}

/// The access gate and the login and account handles, sharing one audit
/// trail, notifier, limiter and lockout.
struct AuthHandles {
    gate: Arc<Gate>,
    login: LoginFlow,
    account: AccountActions,
    reset: PasswordReset,
    audit: Audit,
    stale: crate::auth::users::Stale,
    /// Alerts for the operator's changes to an account.
    notifier: Notifier,
}

impl Shared<'_> {
    fn auth_handles(&self, templates: Arc<Templates>) -> Result<AuthHandles, StartError> {
        let Shared { config, public_origin, store, users, cookies, secret, clock } = *self;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let passwords = Arc::new(PasswordChecker::new(cores)?);
        let rules = Arc::new(AccessRules::new(&config.access_control));
        let audit = Audit::new(store.clone(), clock.clone());
        let attempts = Attempts::new(audit.clone());
        let totp_failures = RateSpec::new(config.otp.max_attempts, config.session.pending_login_ttl);
        let limiter = Limiter::new(store.clone(), &config.rate_limit, &config.lockout, totp_failures);
        let notifier = Notifier::new(Mailer::new(&config.mail)?, templates, &config.auth.app_name, clock.clone());
        let codes =
            Codes::new(store.clone(), notifier.clone(), limiter.clone(), audit.clone(), secret.clone(), &config.otp);
        let totp = Authenticator::new(store.clone(), secret, &config.totp, clock.clone());
        let cookie_domain = config.session.cookie_domain.as_deref();
        let passkeys = Passkeys::new(store.clone(), &config.server.public_url, cookie_domain, clock.clone());
        let suspicious = SuspiciousActivity::new(store.clone(), audit.clone(), notifier.clone(), clock.clone());
        let lock_for = config.lockout.account_lock;
        let lockout = Lockout::new(
            store.clone(),
            limiter.clone(),
            audit.clone(),
            notifier.clone(),
            suspicious.clone(),
            lock_for,
            secret.clone(),
        );
        let fingerprints = Arc::new(Fingerprints::new(secret));
        let tokens = AccessTokens::new(
            store.clone(),
            users.clone(),
            secret,
            fingerprints.clone(),
            limiter.clone(),
            audit.clone(),
            attempts.clone(),
            clock.clone(),
        );
        let gate = Gate::new(
            rules,
            tokens.clone(),
            store.clone(),
            users.clone(),
            cookies.clone(),
            fingerprints.clone(),
            audit.clone(),
        );
        let login = LoginFlow {
            store: store.clone(),
            users: users.clone(),
            passwords: passwords.clone(),
            codes: codes.clone(),
            totp: totp.clone(),
            passkeys: passkeys.clone(),
            limiter: limiter.clone(),
            lockout: lockout.clone(),
            audit: audit.clone(),
            attempts: attempts.clone(),
            notifier: notifier.clone(),
            suspicious,
            fingerprints: fingerprints.clone(),
            levels: gate.levels().clone(),
            settings: Arc::new(LoginSettings {
                session: config.session.clone(),
                account_url: format!("{public_origin}{}/account", config.auth.prefix),
            }),
            clock: clock.clone(),
        };
        let new_passwords =
            NewPasswords::new(users.clone(), store.clone(), audit.clone(), passwords.clone(), fingerprints.clone());
        let reset = PasswordReset {
            users: users.clone(),
            store: store.clone(),
            codes: codes.clone(),
            totp: totp.clone(),
            limiter: limiter.clone(),
            lockout: lockout.clone(),
            attempts: attempts.clone(),
            audit: audit.clone(),
            notifier: notifier.clone(),
            new_passwords: new_passwords.clone(),
        };
        let account = AccountActions {
            levels: gate.levels().clone(),
            store: store.clone(),
            passwords,
            new_passwords,
            users: users.clone(),
            codes,
            totp,
            passkeys,
            audit: audit.clone(),
            attempts,
            tokens,
            notifier: notifier.clone(),
            lockout,
            limiter,
        };
        let stale: crate::auth::users::Stale =
            Arc::new(move |user, credential| fingerprints.changed(user, credential).is_some());
        Ok(AuthHandles { gate: Arc::new(gate), login, account, reset, audit, stale, notifier })
    }
}

/// `WWW-Authenticate` for a request that may carry an access token: HTTP
/// Basic, in the name of the application (quotes and controls dropped).
fn basic_challenge(app_name: &str) -> http::HeaderValue {
    let realm: String = app_name.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').collect();
    http::HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
        .unwrap_or_else(|_| http::HeaderValue::from_static("Basic realm=\"Portcullis\", charset=\"UTF-8\""))
}

/// The portal's settings, copied out of the config.
fn portal_settings(config: &Config, public_origin: String) -> PortalSettings {
    PortalSettings {
        prefix: config.auth.prefix.clone(),
        public_origin,
        remember_me: config.session.remember_me,
        pending_login_ttl: config.session.pending_login_ttl,
        otp_ttl_secs: config.otp.ttl.as_secs(),
        resend_cooldown_secs: config.otp.resend_cooldown.as_secs(),
        body_read_timeout: config.server.body_read_timeout,
        otp_digits: config.otp.digits,
        totp_digits: config.totp.digits,
        admin_group: config.auth.admin_group.clone(),
    }
}

/// Tells the metrics the upstreams' names, as the proxy labels them: by the
/// URL's authority, as written.
fn register_upstreams(config: &Config) {
    let names: Vec<String> = config
        .upstream
        .iter()
        .filter_map(|u| u.url.as_str().parse::<http::Uri>().ok()?.authority().map(|a| a.to_string()))
        .collect();
    crate::metrics::known_upstreams(names.iter().map(String::as_str));
}

/// The addresses a running gateway listens on.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub public: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Where a gateway serves: the public listener and the metrics one.
pub struct Listeners {
    pub public: Listener,
    pub metrics: Option<Listener>,
}

impl Listeners {
    /// Binds what the config names: `server.listen` (with TLS when
    /// `server.tls_cert` and `tls_key` are set) and `server.metrics_listen`.
    pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(server::tls_acceptor(cert, key)?),
            _ => None,
        };
        let public = Listener::bind(config.server.listen, tls).await?;
        let metrics = match config.server.metrics_listen {
            Some(addr) => Some(Listener::bind(addr, None).await?),
            None => None,
        };
        Ok(Listeners { public, metrics })
    }
}

/// Binds the public and metrics listeners, prints where they are, and serves
/// until `shutdown` fires. Returns once in-flight requests have drained.
pub async fn run(app: App, shutdown: Shutdown) -> Result<(), StartError> {
    let listeners = Listeners::bind(&app.config).await?;
    serve(app, listeners, shutdown).await
}

/// As [`run`], on listeners bound already (what `server.listen` and
/// `metrics_listen` say is not read).
pub async fn serve(app: App, listeners: Listeners, shutdown: Shutdown) -> Result<(), StartError> {
    let App { config, gateway, store, users, audit, stale } = app;
    let Listeners { public: listener, metrics } = listeners;
    let bound = Bound { public: listener.local_addr(), metrics: metrics.as_ref().map(Listener::local_addr) };
    users.watch(store.clone(), audit.clone(), stale, shutdown.clone());
    let scheme = if listener.is_tls() { "https" } else { "http" };
    // One machine-readable line per listener (tests and scripts wait for it).
    println!("portcullis listening on {scheme}://{}", bound.public);
    if let Some(m) = bound.metrics {
        println!("portcullis metrics on http://{m}/metrics");
    }
    let metrics_addr = bound.metrics.map_or_else(|| "off".to_string(), |m| m.to_string());
    tracing::info!(listen = %bound.public, metrics = %metrics_addr, store = store.backend_name(), "gateway started");

    let limits = Limits::from_config(&config.server);
    let metrics_task = metrics.map(|m| {
        let s = shutdown.clone();
        let secret: Arc<[u8]> = config.auth.secret.expose().as_bytes().into();
        let operator = OperatorActions::new(store.clone(), users.clone(), audit.clone(), secret.clone());
        tokio::spawn(server::serve(m, Arc::new(MetricsListener::new(operator, &secret)), limits.clone(), s))
    });
    let workers = config.server.worker_threads();
    server::serve_on_workers(listener, Arc::new(gateway), limits, shutdown, workers)
        .await
        .map_err(|e| StartError::Server(ServerError::Workers(e)))?;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    tracing::info!("gateway stopped");
    Ok(())
}
