//! The typed configuration tree. It mirrors the TOML file section by
//! section; every field carries its default next to it, and parsing of the small
//! value languages (durations, rate specs, CIDRs, URLs) happens at deserialisation
//! so that an error is attributed to its key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use url::Url;

use super::values::{CaFile, HeaderNameSetting, MethodSetting, PathPattern, RateSpec, Secret, duration};

/// The whole configuration, one field per TOML section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: Vec<UpstreamConfig>,
    pub auth: AuthConfig,
    pub session: SessionConfig,
    pub otp: OtpConfig,
    pub totp: TotpConfig,
    pub store: StoreConfig,
    pub mail: MailConfig,
    pub rate_limit: RateLimitConfig,
    pub lockout: LockoutConfig,
    pub access_control: AccessControlConfig,
    /// The LDAP / Active Directory user backend (`auth.backend = "ldap"`).
    pub ldap: LdapConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            upstream: vec![UpstreamConfig::default()],
            auth: AuthConfig::default(),
            session: SessionConfig::default(),
            otp: OtpConfig::default(),
            totp: TotpConfig::default(),
            store: StoreConfig::default(),
            mail: MailConfig::default(),
            rate_limit: RateLimitConfig::default(),
            lockout: LockoutConfig::default(),
            access_control: AccessControlConfig::default(),
            ldap: LdapConfig::default(),
        }
    }
}

/// `[server]`: listeners, TLS, trust boundary and connection limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The address users type; its scheme decides `Secure` cookies and its origin
    /// is the one CSRF checks accept.
    pub public_url: Url,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Peers allowed to speak for the client through `X-Forwarded-*`.
    pub trusted_proxies: Vec<IpNet>,
    /// Where `/metrics` is served; never the public listener.
    pub metrics_listen: Option<SocketAddr>,
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// Connections beyond this wait in the kernel backlog instead of being served.
    pub max_connections: usize,
    /// A client must finish sending its request head within this time (slowloris).
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Largest request head accepted; larger ones get `431`.
    pub max_header_bytes: usize,
    /// A body sent to the gateway's own endpoints must arrive within this time
    /// (else `408`), so slow posts cannot hold connections open.
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
    /// Most connections one client address (an IPv6 /64) may hold at once;
    /// trusted proxies, which carry many clients, are exempt.
    pub max_connections_per_client: usize,
    /// A connection that sends no request for this long is closed (HTTP/2
    /// connections otherwise stay open as long as the client answers pings).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Add `Strict-Transport-Security` to proxied responses that lack it, when
    /// the gateway itself terminates TLS (the gateway's own answers always carry
    /// it under TLS).
    pub hsts_upstream: bool,
    /// Threads that serve connections, each with its own single-threaded
    /// runtime and upstream pools; 0 means one per CPU core.
    pub workers: usize,
}

impl ServerConfig {
    /// How many worker threads serve connections (`workers`, or one per core).
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: Url::parse("http://127.0.0.1:8080").expect("static url"),
            tls_cert: None,
            tls_key: None,
            trusted_proxies: vec!["127.0.0.1/32".parse().expect("static net"), "::1/128".parse().expect("static net")],
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            body_read_timeout: Duration::from_secs(10),
            max_connections_per_client: 256,
            idle_timeout: Duration::from_secs(120),
            hsts_upstream: false,
            workers: 0,
        }
    }
}

/// One `[[upstream]]` entry: where authenticated traffic goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    pub url: Url,
    /// Requests whose Host matches go here; an entry without host is the default.
    pub host: Option<String>,
    /// Time allowed for the upstream to answer with its response head, and the
    /// longest silence allowed inside a response body (then it is cut off).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Extra PEM CA bundle trusted for an `https://` upstream (besides webpki roots).
    pub ca_file: Option<CaFile>,
    /// Send the client's Host header upstream (true) or the upstream URL's host.
    pub preserve_host: bool,
    /// For applications that only understand HTTP Basic: every authenticated
    /// request reaches them with `Authorization: Basic` of the user's name and
    /// `basic_auth_password`, and never with the client's own `Authorization`.
    pub pass_basic_auth: bool,
    /// The password the application gets with `pass_basic_auth` (a secret,
    /// usually from the environment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth_password: Option<Secret>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: Url::parse("http://127.0.0.1:3000").expect("static url"),
            host: None,
            timeout: Duration::from_secs(30),
            ca_file: None,
            preserve_host: true,
            pass_basic_auth: false,
            basic_auth_password: None,
        }
    }
}

/// `[auth]`: the portal's prefix, users, redirects, identity headers and the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub prefix: String,
    /// Where users and their passwords live: the users file, or a directory.
    pub backend: UserBackend,
    pub users_file: PathBuf,
    pub allowed_redirect_domains: Vec<String>,
    pub identity_headers: IdentityHeadersConfig,
    /// Signs CSRF tokens and peppers code hashes; at least 32 bytes.
    pub secret: Secret,
    /// Name shown on pages and in e-mails.
    pub app_name: String,
    /// Members of this group reach the operator console (`{prefix}/admin`)
    /// at two factors.
    pub admin_group: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            prefix: "/_auth".into(),
            backend: UserBackend::File,
            users_file: PathBuf::from("config/users.toml"),
            allowed_redirect_domains: Vec::new(),
            identity_headers: IdentityHeadersConfig::default(),
            secret: Secret::default(),
            app_name: "Portcullis".into(),
            admin_group: "admins".into(),
        }
    }
}

/// Where users and their passwords live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserBackend {
    /// `auth.users_file`, which Portcullis reads and writes.
    File,
    /// An LDAP directory or Active Directory (`[ldap]`), which it only reads.
    Ldap,
}

/// `[ldap]`: the directory users log in against when `auth.backend = "ldap"`.
/// A login searches as the service account (`bind_dn`), then binds as the
/// user found; the users that `user_filter` matches are re-read every
/// `refresh`, so a change in the directory ends sessions as a users-file
/// edit does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent.
    pub start_tls: bool,
    /// The CA certificates (PEM) that sign the directory's, trusted instead
    /// of the system roots.
    pub ca_file: Option<CaFile>,
    /// The service account that searches; empty for an anonymous search.
    pub bind_dn: String,
    #[serde(skip_serializing_if = "Secret::is_empty")]
    pub bind_password: Secret,
    /// Where users and groups are searched (subtree).
    pub base_dn: String,
    /// Finds the account typed at the login form; `{input}` is what was
    /// typed, escaped (RFC 4515). With `{input}` as `*` it lists every user.
    pub user_filter: String,
    /// Finds a user's groups; `{dn}` is the user's DN and `{username}` their
    /// name, escaped. Empty: groups come from `memberOf` alone.
    pub group_filter: String,
    /// Users this filter matches are disabled (besides `nsAccountLock` and
    /// Active Directory's `userAccountControl` bit 2), e.g.
    /// `(pwdAccountLockedTime=*)`.
    pub disabled_filter: Option<String>,
    pub attributes: LdapAttributes,
    /// Deadline for each directory step of a login (the search, the bind)
    /// and of a refresh; beyond it the directory counts as unavailable (503).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Connections kept for searches, and as many for password checks.
    pub pool_size: usize,
    /// How often the directory's users are read again.
    #[serde(with = "duration")]
    pub refresh: Duration,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: "ldap://127.0.0.1:389".into(),
            start_tls: false,
            ca_file: None,
            bind_dn: String::new(),
            bind_password: Secret::default(),
            base_dn: String::new(),
            user_filter: "(&(objectClass=person)(|(uid={input})(mail={input})))".into(),
            group_filter: "(member={dn})".into(),
            disabled_filter: None,
            attributes: LdapAttributes::default(),
            timeout: Duration::from_secs(5),
            pool_size: 8,
            refresh: Duration::from_secs(300),
        }
    }
}

/// Which attributes hold what.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapAttributes {
    /// The user's name (lower-cased: the directory compares names without case).
    pub username: String,
    pub email: String,
    pub display_name: String,
    /// A group entry's name.
    pub group_name: String,
}

impl Default for LdapAttributes {
    fn default() -> Self {
        LdapAttributes {
            username: "uid".into(),
            email: "mail".into(),
            display_name: "displayName".into(),
            group_name: "cn".into(),
        }
    }
}

/// Names of the headers that carry the identity to the upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityHeadersConfig {
    pub user: HeaderNameSetting,
    pub email: HeaderNameSetting,
    pub name: HeaderNameSetting,
    pub groups: HeaderNameSetting,
    /// How the user signed the request: `session` or `token`.
    pub auth_method: HeaderNameSetting,
}

impl Default for IdentityHeadersConfig {
    fn default() -> Self {
        IdentityHeadersConfig {
            user: HeaderNameSetting::from_static("remote-user"),
            email: HeaderNameSetting::from_static("remote-email"),
            name: HeaderNameSetting::from_static("remote-name"),
            groups: HeaderNameSetting::from_static("remote-groups"),
            auth_method: HeaderNameSetting::from_static("remote-auth-method"),
        }
    }
}

/// `[session]`: the cookie and the lifetimes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub cookie_name: String,
    pub cookie_domain: Option<String>,
    /// Sliding: each request pushes expiry this far ahead.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Hard limit for a browser session, however active.
    #[serde(with = "duration")]
    pub absolute_timeout: Duration,
    /// Lifetime of a "remember me" session (cookie Max-Age and server-side limit).
    #[serde(with = "duration")]
    pub remember_me: Duration,
    /// Password accepted, code not yet entered.
    #[serde(with = "duration")]
    pub pending_login_ttl: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cookie_name: "portcullis_session".into(),
            cookie_domain: None,
            idle_timeout: Duration::from_secs(3600),
            absolute_timeout: Duration::from_secs(12 * 3600),
            remember_me: Duration::from_secs(30 * 86400),
            pending_login_ttl: Duration::from_secs(600),
        }
    }
}

/// `[otp]`: the e-mailed one-time codes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtpConfig {
    pub digits: u32,
    #[serde(with = "duration")]
    pub ttl: Duration,
    pub max_attempts: u32,
    #[serde(with = "duration")]
    pub resend_cooldown: Duration,
}

impl Default for OtpConfig {
    fn default() -> Self {
        OtpConfig {
            digits: 6,
            ttl: Duration::from_secs(600),
            max_attempts: 3,
            resend_cooldown: Duration::from_secs(60),
        }
    }
}

/// `[totp]`: authenticator apps (RFC 6238 time-based codes, HMAC-SHA-1, as
/// every common app expects).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TotpConfig {
    /// The name the app shows beside the account (and the `issuer` of the
    /// otpauth URI).
    pub issuer: String,
    /// Digits of a code (6 or 8; most apps show 6).
    pub digits: u32,
    /// Seconds each code lasts.
    pub period: u64,
    /// Steps of clock drift accepted either side of now.
    pub skew: u32,
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig { issuer: "Portcullis".into(), digits: 6, period: 30, skew: 1 }
    }
}

/// `[store]`: where state lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `memory://`; `redis://host:port/db` or `rediss://...`;
    /// `redis+sentinel://h1:p1,h2:p2,.../MASTER_NAME[/DB]`; `redis+cluster://h1:p1,h2:p2,...`
    /// (`rediss+sentinel`, `rediss+cluster` with TLS).
    pub url: Secret,
    /// Memory store: where durable per-user state survives restarts.
    pub state_file: Option<PathBuf>,
    pub pool_size: usize,
    /// Deadline for every store operation; beyond it the store counts as unavailable.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Namespace for every Redis key.
    pub key_prefix: String,
    /// Memory store: most entries kept per kind before new ones are refused.
    pub max_entries: usize,
    /// Redis over TLS: the CA certificates (PEM) that sign the servers', trusted
    /// instead of the system roots.
    pub ca_file: Option<CaFile>,
    /// Redis: keep live sessions in the gateway process, so an authenticated
    /// request makes no Redis round trip; revocations are pushed from Redis
    /// (docs/store.md). The memory store has nothing to cache.
    pub near_cache: bool,
    /// Most sessions the near cache holds.
    pub near_cache_max_entries: usize,
    /// Most bytes (approximate) the near cache holds.
    pub near_cache_max_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: Secret::new("memory://"),
            state_file: None,
            pool_size: 32,
            timeout: Duration::from_secs(2),
            key_prefix: "portcullis:".into(),
            max_entries: 1_000_000,
            ca_file: None,
            near_cache: true,
            near_cache_max_entries: 100_000,
            near_cache_max_bytes: 32 << 20,
        }
    }
}

/// How mail leaves the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    Console,
    File,
    Smtp,
}

/// Transport security for SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    Tls,
    None,
}

/// `[mail]`: codes and security alerts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    pub transport: MailTransport,
    pub file_dir: Option<PathBuf>,
    pub from: String,
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    /// PEM CA bundle the SMTP TLS client trusts *instead of* the system roots
    /// (an internal relay with a private CA); see `mail::tls` for why instead.
    pub smtp_ca_file: Option<CaFile>,
    pub smtp_username: Option<String>,
    /// Not printed by `check-config` when empty (file and console mail have none).
    #[serde(skip_serializing_if = "Secret::is_empty")]
    pub smtp_password: Secret,
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            transport: MailTransport::Console,
            file_dir: None,
            from: "Portcullis <noreply@localhost>".into(),
            smtp_host: None,
            smtp_port: 587,
            smtp_tls: SmtpTls::Starttls,
            smtp_ca_file: None,
            smtp_username: None,
            smtp_password: Secret::default(),
            timeout: Duration::from_secs(15),
        }
    }
}

/// `[rate_limit]`: sliding windows per client IP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub login: RateSpec,
    pub verify: RateSpec,
    pub resend: RateSpec,
    pub otp_emails_per_ip: RateSpec,
    /// Password-reset requests, per client IP and per account.
    pub password_reset: RateSpec,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            login: RateSpec::new(5, Duration::from_secs(300)),
            verify: RateSpec::new(10, Duration::from_secs(300)),
            resend: RateSpec::new(3, Duration::from_secs(600)),
            otp_emails_per_ip: RateSpec::new(5, Duration::from_secs(3600)),
            password_reset: RateSpec::new(5, Duration::from_secs(3600)),
        }
    }
}

/// `[lockout]`: what failures cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockoutConfig {
    pub ip_failures: RateSpec,
    pub account_failures: RateSpec,
    /// Wrong passwords given to the account page's re-checks (turning 2FA
    /// off, new backup codes) per session; each also counts against the
    /// account and the client IP like a failed login.
    pub session_failures: RateSpec,
    #[serde(with = "duration")]
    pub account_lock: Duration,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            ip_failures: RateSpec::new(5, Duration::from_secs(900)),
            account_failures: RateSpec::new(10, Duration::from_secs(3600)),
            session_failures: RateSpec::new(5, Duration::from_secs(900)),
            account_lock: Duration::from_secs(900),
        }
    }
}

/// How strongly a request must be authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    Bypass,
    OneFactor,
    TwoFactor,
    Deny,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Bypass => "bypass",
            Policy::OneFactor => "one_factor",
            Policy::TwoFactor => "two_factor",
            Policy::Deny => "deny",
        }
    }
}

/// `[access_control]`: ordered rules; the first match decides.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessControlConfig {
    pub default_policy: Policy,
    pub rules: Vec<RuleConfig>,
}

impl Default for AccessControlConfig {
    fn default() -> Self {
        AccessControlConfig { default_policy: Policy::TwoFactor, rules: Vec::new() }
    }
}

/// One access-control rule as written; compiled by `access`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(default, deserialize_with = "super::values::one_or_many")]
    pub domain: Vec<String>,
    #[serde(default)]
    pub path: Option<PathPattern>,
    #[serde(default, deserialize_with = "super::values::one_or_many")]
    pub methods: Vec<MethodSetting>,
    #[serde(default)]
    pub networks: Vec<IpNet>,
    #[serde(default, deserialize_with = "super::values::one_or_many")]
    pub groups: Vec<String>,
    #[serde(default, deserialize_with = "super::values::one_or_many")]
    pub users: Vec<String>,
    pub policy: Policy,
    /// Accept a user's access token (`Authorization: Bearer`, or as the
    /// password of HTTP Basic) where this rule matches.
    #[serde(default)]
    pub allow_tokens: bool,
    /// Requests this rule matches extend the session's idle timeout (false:
    /// a page that polls does not keep a forgotten session alive).
    #[serde(default = "yes")]
    pub refresh_session: bool,
}

impl RuleConfig {
    /// A rule matching every request with `policy`, as one with only
    /// `policy = ...` written reads (tests narrow it by setting fields).
    pub fn any(policy: Policy) -> RuleConfig {
        RuleConfig {
            domain: vec![],
            path: None,
            methods: vec![],
            networks: vec![],
            groups: vec![],
            users: vec![],
            policy,
            allow_tokens: false,
            refresh_session: yes(),
        }
    }
}

fn yes() -> bool {
    true
}
