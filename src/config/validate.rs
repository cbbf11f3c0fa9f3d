//! Validation: the checks that span keys or need more than a type, run after
//! deserialisation. It returns every problem at once, each with its key path,
//! so an operator fixes a config in one pass.

use std::fmt;

use super::store_url::StoreUrl;
use super::types::{
    AuthConfig, Config, LdapConfig, MailConfig, MailTransport, OtpConfig, ServerConfig, SessionConfig, SmtpTls,
    StoreConfig, TotpConfig, UpstreamConfig, UserBackend,
};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `upstream[0].url` or `auth.secret`.
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { key: key.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Minimum length of `auth.secret`: it keys HMACs, so it must carry 256 bits.
pub const MIN_SECRET_LEN: usize = 32;

/// Checks everything the types alone cannot, and reads the CA files the
/// config names (so the clients use exactly what was checked). `demo` waives
/// the secret, which the demo generates at random.
pub fn validate(c: &mut Config, demo: bool) -> Vec<Problem> {
    let mut p = Vec::new();
    server(&c.server, &mut p);
    upstreams(&mut c.upstream, &mut p);
    auth(&c.auth, demo, &mut p);
    session(&c.session, &mut p);
    otp(&c.otp, &mut p);
    totp(&c.totp, &mut p);
    store(&mut c.store, &mut p);
    mail(&mut c.mail, &mut p);
    if c.auth.backend == UserBackend::Ldap {
        ldap(&mut c.ldap, &mut p);
    }
    p
}

/// `[server]`.
fn server(s: &ServerConfig, p: &mut Vec<Problem>) {
    let mut bad = |key: &str, msg: String| p.push(Problem::new(key, msg));
    if !matches!(s.public_url.scheme(), "http" | "https") {
        bad("server.public_url", "must be an http:// or https:// URL".into());
    }
    if s.public_url.host_str().is_none() {
        bad("server.public_url", "must name a host".into());
    }
    match (&s.tls_cert, &s.tls_key) {
        (Some(_), None) => bad("server.tls_key", "required when server.tls_cert is set".into()),
        (None, Some(_)) => bad("server.tls_cert", "required when server.tls_key is set".into()),
        (Some(cert), Some(key)) => {
            if !cert.is_file() {
                bad("server.tls_cert", format!("file {} not found", cert.display()));
            }
            if !key.is_file() {
                bad("server.tls_key", format!("file {} not found", key.display()));
            }
        }
        (None, None) => {}
    }
    if s.metrics_listen.is_some_and(|m| m == s.listen && m.port() != 0) {
        bad("server.metrics_listen", "must differ from server.listen".into());
    }
    if s.max_connections == 0 {
        bad("server.max_connections", "must be at least 1".into());
    }
    if s.max_header_bytes < 1024 {
        bad("server.max_header_bytes", "must be at least 1024".into());
    }
    for (key, d) in [
        ("server.header_read_timeout", s.header_read_timeout),
        ("server.body_read_timeout", s.body_read_timeout),
        ("server.idle_timeout", s.idle_timeout),
    ] {
        if d.is_zero() {
            bad(key, "must be above zero".into());
        }
    }
    if s.max_connections_per_client == 0 {
        bad("server.max_connections_per_client", "must be at least 1".into());
    }
    if s.workers > MAX_WORKERS {
        bad("server.workers", format!("must be at most {MAX_WORKERS} (0: one per CPU core)"));
    }
}

/// More serving threads than this only adds memory: each holds its own runtime
/// and upstream connection pools.
const MAX_WORKERS: usize = 256;

/// `[[upstream]]`.
fn upstreams(upstream: &mut [UpstreamConfig], p: &mut Vec<Problem>) {
    let mut bad = |key: &str, msg: String| p.push(Problem::new(key, msg));
    if upstream.is_empty() {
        bad("upstream", "at least one [[upstream]] is required".into());
    }
    let mut defaults = 0;
    for (i, u) in upstream.iter_mut().enumerate() {
        if !matches!(u.url.scheme(), "http" | "https") {
            bad(&format!("upstream[{i}].url"), "must be an http:// or https:// URL".into());
        }
        if u.url.host_str().is_none() {
            bad(&format!("upstream[{i}].url"), "must name a host".into());
        }
        if u.timeout.is_zero() {
            bad(&format!("upstream[{i}].timeout"), "must be above zero".into());
        }
        if let Some(ca) = &mut u.ca_file
            && let Err(e) = ca.load()
        {
            bad(&format!("upstream[{i}].ca_file"), e);
        }
        if u.pass_basic_auth && u.basic_auth_password.as_ref().is_none_or(|p| p.expose().is_empty()) {
            bad(
                &format!("upstream[{i}].basic_auth_password"),
                "is required with pass_basic_auth = true (the password the application gets)".into(),
            );
        }
        match &u.host {
            None => defaults += 1,
            Some(h) if h.is_empty() || h.contains('/') => {
                bad(&format!("upstream[{i}].host"), "must be a host name like app.example.com".into())
            }
            Some(_) => {}
        }
    }
    if defaults > 1 {
        bad("upstream", "only one [[upstream]] may omit host (the default)".into());
    }
}

/// `[auth]`.
fn auth(a: &AuthConfig, demo: bool, p: &mut Vec<Problem>) {
    let mut bad = |key: &str, msg: String| p.push(Problem::new(key, msg));
    if a.admin_group.trim().is_empty() || a.admin_group.trim() != a.admin_group {
        bad("auth.admin_group", "must name a group (no surrounding spaces), e.g. \"admins\"".into());
    }
    if !a.prefix.starts_with('/') || a.prefix.ends_with('/') || a.prefix.len() < 2 {
        bad("auth.prefix", "must start with '/' and not end with '/', e.g. \"/_auth\"".into());
    }
    if !demo && a.secret.expose().len() < MIN_SECRET_LEN {
        bad(
            "auth.secret",
            format!("must be at least {MIN_SECRET_LEN} bytes (generate one with `openssl rand -base64 48`)"),
        );
    } else if !demo && let Some(why) = super::secrets::key_problem(a.secret.expose()) {
        bad("auth.secret", why);
    }
    for (i, d) in a.allowed_redirect_domains.iter().enumerate() {
        let host = d.strip_prefix("*.").unwrap_or(d);
        if host.is_empty() || host.contains(['/', ':', ' ']) {
            bad(&format!("auth.allowed_redirect_domains[{i}]"), "must be a host or *.suffix".into());
        }
    }
}

/// `[session]`.
fn session(se: &SessionConfig, p: &mut Vec<Problem>) {
    let mut bad = |key: &str, msg: String| p.push(Problem::new(key, msg));
    if se.cookie_name.is_empty() || !se.cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
        bad("session.cookie_name", "must be letters, digits, '_', '-' or '.'".into());
    }
    // It goes into every Set-Cookie: a stray `;` would add attributes, a
    // control character would leave the gateway unable to set its cookies.
    if let Some(d) = &se.cookie_domain
        && !crate::normalize::host(d.strip_prefix('.').unwrap_or(d)).is_ok_and(|h| h.port.is_none())
    {
        bad("session.cookie_domain", "must be a domain name like example.com".into());
    }
    for (key, d) in [
        ("session.idle_timeout", se.idle_timeout),
        ("session.absolute_timeout", se.absolute_timeout),
        ("session.remember_me", se.remember_me),
        ("session.pending_login_ttl", se.pending_login_ttl),
    ] {
        if d.is_zero() {
            bad(key, "must be above zero".into());
        }
    }
}

/// `[otp]`.
fn otp(otp: &OtpConfig, p: &mut Vec<Problem>) {
    let mut bad = |key: &str, msg: String| p.push(Problem::new(key, msg));
    if !(6..=10).contains(&otp.digits) {
        bad("otp.digits", "must be between 6 and 10".into());
    }
    if otp.max_attempts == 0 {
        bad("otp.max_attempts", "must be at least 1".into());
    }
    if otp.ttl.is_zero() {
        bad("otp.ttl", "must be above zero".into());
    }
}

/// `[totp]`.
fn totp(t: &TotpConfig, p: &mut Vec<Problem>) {
    let mut bad = |key: &str, msg: String| p.push(Problem::new(key, msg));
    if t.issuer.trim().is_empty()
        || t.issuer.len() > 64
        || t.issuer.contains(':')
        || t.issuer.chars().any(char::is_control)
    {
        bad("totp.issuer", "must be 1 to 64 characters, without ':' or control characters".into());
    }
    if !(6..=8).contains(&t.digits) {
        bad("totp.digits", "must be between 6 and 8".into());
    }
    if !(10..=300).contains(&t.period) {
        bad("totp.period", "must be between 10 and 300 seconds".into());
    }
    if t.skew > 10 {
        bad("totp.skew", "must be at most 10 steps".into());
    }
}

/// `[store]`.
fn store(st: &mut StoreConfig, p: &mut Vec<Problem>) {
    let mut bad = |key: &str, msg: String| p.push(Problem::new(key, msg));
    let url = st.url.expose().to_owned();
    let url = url.as_str();
    // The URL may hold a password: problems name what is wrong, never the URL.
    let tls = match st.store_url() {
        Ok(StoreUrl::Memory) => None,
        Ok(StoreUrl::Redis(topology)) => Some(topology.tls()),
        Err(e) => {
            bad(
                "store.url",
                format!(
                    "{e}; use memory://, redis://host:port/db, rediss://..., \
                     redis+sentinel://h1:p1,h2:p2,h3:p3/MASTER_NAME[/DB] or redis+cluster://h1:p1,h2:p2,..."
                ),
            );
            None
        }
    };
    if st.pool_size == 0 {
        bad("store.pool_size", "must be at least 1".into());
    }
    if st.timeout.is_zero() {
        bad("store.timeout", "must be above zero".into());
    }
    if let Some(ca) = &mut st.ca_file {
        if tls == Some(false) || url.starts_with("memory:") {
            bad("store.ca_file", "set, but store.url does not use TLS (rediss://...)".into());
        } else if let Err(e) = ca.load() {
            bad("store.ca_file", e);
        }
    }
    if st.near_cache_max_entries == 0 {
        bad("store.near_cache_max_entries", "must be at least 1 (turn the cache off with near_cache = false)".into());
    }
    if st.near_cache_max_bytes < 64 << 10 {
        bad("store.near_cache_max_bytes", "must be at least 65536".into());
    }
}

/// `[mail]`.
fn mail(m: &mut MailConfig, p: &mut Vec<Problem>) {
    let mut bad = |key: &str, msg: String| p.push(Problem::new(key, msg));
    if m.from.parse::<lettre::message::Mailbox>().is_err() {
        bad("mail.from", format!("{:?} is not a mailbox like \"Name <addr@host>\"", m.from));
    }
    match m.transport {
        MailTransport::Smtp if m.smtp_host.as_deref().is_none_or(str::is_empty) => {
            bad("mail.smtp_host", "required when mail.transport = \"smtp\"".into())
        }
        MailTransport::File if m.file_dir.is_none() => {
            bad("mail.file_dir", "required when mail.transport = \"file\"".into())
        }
        _ => {}
    }
    // Checked only where it is used, so a config switched to the console for
    // development may keep a CA path that exists only in production.
    if let Some(ca) = &mut m.smtp_ca_file
        && m.transport == MailTransport::Smtp
    {
        if m.smtp_tls == SmtpTls::None {
            bad("mail.smtp_ca_file", "set, but mail.smtp_tls = \"none\" verifies no certificate".into());
        } else if let Err(e) = ca.load() {
            bad("mail.smtp_ca_file", e);
        }
    }
    if m.smtp_username.is_some() == m.smtp_password.is_empty() {
        bad("mail.smtp_password", "smtp_username and smtp_password go together".into());
    } else if let Some(why) = super::secrets::placeholder(m.smtp_password.expose(), false) {
        bad("mail.smtp_password", why);
    }
}

/// `[ldap]`, checked only when it is the backend (a config may keep a
/// directory's settings while it runs on the users file).
fn ldap(l: &mut LdapConfig, p: &mut Vec<Problem>) {
    use super::ldap_filter as filter;
    let mut bad = |key: &str, msg: String| p.push(Problem::new(key, msg));
    let tls = match url::Url::parse(&l.url) {
        Ok(u) if !matches!(u.scheme(), "ldap" | "ldaps") => {
            bad("ldap.url", "must be an ldap:// or ldaps:// URL".into());
            None
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            bad("ldap.url", "must name a host, e.g. ldaps://ldap.example.com".into());
            None
        }
        Ok(u) if u.path().len() > 1 || u.query().is_some() => {
            bad("ldap.url", "must be only ldap[s]://host[:port] (set base_dn and the filters separately)".into());
            None
        }
        Ok(u) => Some(u.scheme() == "ldaps"),
        Err(e) => {
            bad("ldap.url", format!("not a URL ({e}); e.g. ldaps://ldap.example.com"));
            None
        }
    };
    if l.start_tls && tls == Some(true) {
        bad("ldap.start_tls", "ldaps:// is TLS already; StartTLS goes with ldap://".into());
    }
    if let Some(ca) = &mut l.ca_file {
        if tls == Some(false) && !l.start_tls {
            bad("ldap.ca_file", "set, but neither ldaps:// nor start_tls uses TLS".into());
        } else if let Err(e) = ca.load() {
            bad("ldap.ca_file", e);
        }
    }
    if l.bind_dn.is_empty() != l.bind_password.is_empty() {
        bad("ldap.bind_password", "bind_dn and bind_password go together (neither: an anonymous search)".into());
    } else if let Some(why) = super::secrets::placeholder(l.bind_password.expose(), false) {
        bad("ldap.bind_password", why);
    }
    if l.base_dn.trim().is_empty() {
        bad("ldap.base_dn", "required, e.g. \"dc=example,dc=com\"".into());
    }
    if !l.user_filter.contains(filter::INPUT) {
        bad("ldap.user_filter", format!("must contain {} (what was typed at the login form)", filter::INPUT));
    } else if let Err(e) = filter::check(&l.user_filter) {
        bad("ldap.user_filter", e);
    }
    if !l.group_filter.is_empty()
        && let Err(e) = filter::check(&l.group_filter)
    {
        bad("ldap.group_filter", e);
    }
    if let Some(f) = &l.disabled_filter
        && let Err(e) = filter::check(f)
    {
        bad("ldap.disabled_filter", e);
    }
    let a = &l.attributes;
    for (key, value) in [
        ("ldap.attributes.username", &a.username),
        ("ldap.attributes.email", &a.email),
        ("ldap.attributes.display_name", &a.display_name),
        ("ldap.attributes.group_name", &a.group_name),
    ] {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-;.".contains(&b)) {
            bad(key, "must be an attribute name, e.g. uid".into());
        }
    }
    if l.timeout.is_zero() {
        bad("ldap.timeout", "must be above zero".into());
    }
    if l.pool_size == 0 {
        bad("ldap.pool_size", "must be at least 1".into());
    }
    if l.refresh < std::time::Duration::from_secs(5) {
        bad("ldap.refresh", "must be at least 5s".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn a_directory_config_names_each_bad_key_and_is_read_only_as_the_backend() {
        let mut c = Config::default();
        c.auth.secret = Secret::new(crate::init::new_secret());
        c.ldap.url = "http://ldap.example.com".into();
        c.ldap.bind_dn = "cn=portcullis,dc=example,dc=com".into();
        c.ldap.user_filter = "(uid=alice)".into();
        c.ldap.group_filter = "(member={dn}".into();
        c.ldap.timeout = std::time::Duration::ZERO;
        c.ldap.pool_size = 0;
        c.ldap.attributes.email = "ma il".into();
        assert!(validate(&mut c, false).is_empty(), "[ldap] is not checked with the users file");
        c.auth.backend = UserBackend::Ldap;
        let keys: Vec<String> = validate(&mut c, false).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "ldap.url",
                "ldap.bind_password",
                "ldap.base_dn",
                "ldap.user_filter",
                "ldap.group_filter",
                "ldap.attributes.email",
                "ldap.timeout",
                "ldap.pool_size"
            ]
        );
        let mut c = Config::default();
        c.auth.secret = Secret::new(crate::init::new_secret());
        c.auth.backend = UserBackend::Ldap;
        c.ldap.url = "ldaps://ldap.example.com".into();
        c.ldap.start_tls = true;
        c.ldap.base_dn = "dc=example,dc=com".into();
        let p = validate(&mut c, false);
        assert!(p.len() == 1 && p[0].key == "ldap.start_tls", "{p:?}");
        c.ldap.start_tls = false;
        assert!(validate(&mut c, false).is_empty());
    }

    #[test]
    fn production_requires_a_long_secret() {
        let mut c = Config::default();
        let p = validate(&mut c, false);
        assert!(p.iter().any(|p| p.key == "auth.secret"), "{p:?}");
        assert!(validate(&mut c, true).is_empty());
        c.auth.secret = Secret::new("0123456789abcdef0123456789abcdef");
        let p = validate(&mut c, false);
        assert!(p.len() == 1 && p[0].key == "auth.secret" && p[0].message.contains("too easy to guess"), "{p:?}");
        c.auth.secret = Secret::new(crate::init::new_secret());
        assert!(validate(&mut c, false).is_empty());
    }

    #[test]
    fn placeholder_secrets_are_refused_naming_their_keys() {
        let mut c = Config::default();
        c.auth.secret = Secret::new("REPLACE: openssl rand -base64 48");
        c.mail.smtp_username = Some("portcullis@example.com".into());
        c.mail.smtp_password = Secret::new("REPLACE");
        let p = validate(&mut c, false);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["auth.secret", "mail.smtp_password"], "{p:?}");
        assert!(p.iter().all(|p| p.message.contains("placeholder")), "{p:?}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut c = Config::default();
        c.auth.prefix = "auth/".into();
        c.otp.digits = 4;
        c.mail.transport = MailTransport::Smtp;
        let keys: Vec<_> = validate(&mut c, true).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["auth.prefix", "otp.digits", "mail.smtp_host"]);
    }

    #[test]
    fn workers_are_zero_for_one_per_core_or_a_bounded_count() {
        for good in [0, 1, 2, MAX_WORKERS] {
            let mut c = Config::default();
            c.server.workers = good;
            assert!(validate(&mut c, true).is_empty(), "{good}");
            assert!(c.server.worker_threads() >= 1, "{good}");
        }
        let mut c = Config::default();
        c.server.workers = MAX_WORKERS + 1;
        let keys: Vec<_> = validate(&mut c, true).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["server.workers"]);
    }

    #[test]
    fn the_cookie_domain_is_a_domain_name() {
        for good in ["example.com", ".example.com", "Example.COM"] {
            let mut c = Config::default();
            c.session.cookie_domain = Some(good.into());
            assert!(validate(&mut c, true).is_empty(), "{good:?}");
        }
        for bad in ["example.com; SameSite=None", "ex\u{1}ample.com", "example.com:443", "", "a b"] {
            let mut c = Config::default();
            c.session.cookie_domain = Some(bad.into());
            let keys: Vec<_> = validate(&mut c, true).into_iter().map(|p| p.key).collect();
            assert_eq!(keys, ["session.cookie_domain"], "{bad:?}");
        }
    }

    #[test]
    fn totp_settings_are_checked_by_key() {
        let mut c = Config::default();
        c.totp.issuer = "Acme:SSO".into();
        c.totp.digits = 9;
        c.totp.period = 0;
        c.totp.skew = 11;
        let keys: Vec<_> = validate(&mut c, true).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["totp.issuer", "totp.digits", "totp.period", "totp.skew"]);
        assert!(validate(&mut Config::default(), true).is_empty());
    }

    /// A CA file as the config file names it, before validation reads it.
    fn path_only(path: &std::path::Path) -> crate::config::CaFile {
        serde_json::from_value(serde_json::json!(path)).expect("a path")
    }

    fn smtp_with_ca_file(path: &std::path::Path) -> Config {
        let mut c = Config::default();
        c.mail.transport = MailTransport::Smtp;
        c.mail.smtp_host = Some("smtp.internal".into());
        c.mail.smtp_ca_file = Some(path_only(path));
        c
    }

    fn problems_of(c: &Config) -> Vec<Problem> {
        validate(&mut c.clone(), true).into_iter().filter(|p| p.key == "mail.smtp_ca_file").collect()
    }

    #[test]
    fn a_missing_or_garbage_smtp_ca_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let p = problems_of(&smtp_with_ca_file(&missing));
        assert!(p.len() == 1 && p[0].message.contains("not found"), "{p:?}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").expect("write");
        let p = problems_of(&smtp_with_ca_file(&garbage));
        assert!(p.len() == 1 && p[0].message.contains("no PEM certificate"), "{p:?}");
    }

    #[test]
    fn a_garbage_upstream_ca_file_is_named_rather_than_trusting_nothing_extra() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").expect("write");
        let mut c = Config::default();
        c.upstream[0].ca_file = Some(path_only(&garbage));
        let p: Vec<Problem> = validate(&mut c, true).into_iter().filter(|p| p.key == "upstream[0].ca_file").collect();
        assert!(p.len() == 1 && p[0].message.contains("no PEM certificate"), "{p:?}");
    }

    fn store_problems(url: &str) -> Vec<Problem> {
        let mut c = Config::default();
        c.store.url = Secret::new(url);
        validate(&mut c, true).into_iter().filter(|p| p.key.starts_with("store.")).collect()
    }

    #[test]
    fn every_redis_topology_is_accepted_and_a_bad_url_is_explained() {
        for url in [
            "memory://",
            "redis://127.0.0.1:6379/0",
            "rediss://:pw@redis.internal/1",
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster",
            "rediss+sentinel://:pw@s1,s2,s3/mymaster/2",
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
        ] {
            assert!(store_problems(url).is_empty(), "{url}: {:?}", store_problems(url));
        }
        for (url, says) in [
            ("redis+sentinel://:hunter2@s1:26379,s2:26379", "names no master"),
            ("redis+cluster://:hunter2@h1:7000/3", "only database 0"),
            ("postgres://:hunter2@db/x", "not a Redis scheme"),
        ] {
            let p = store_problems(url);
            assert!(p.len() == 1 && p[0].key == "store.url" && p[0].message.contains(says), "{url}: {p:?}");
            assert!(!p[0].message.contains("hunter2"), "the password is not echoed: {p:?}");
        }
    }

    #[test]
    fn a_store_ca_file_needs_tls_and_a_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").expect("write");
        let mut c = Config::default();
        c.store.url = Secret::new("rediss+cluster://h1:7000");
        c.store.ca_file = Some(path_only(&garbage));
        let p: Vec<Problem> = validate(&mut c, true).into_iter().filter(|p| p.key == "store.ca_file").collect();
        assert!(p.len() == 1 && p[0].message.contains("no PEM certificate"), "{p:?}");
        c.store.url = Secret::new("redis://h1:6379");
        let p: Vec<Problem> = validate(&mut c, true).into_iter().filter(|p| p.key == "store.ca_file").collect();
        assert!(p.len() == 1 && p[0].message.contains("does not use TLS"), "{p:?}");
    }

    #[test]
    fn a_pem_smtp_ca_file_is_accepted_unless_tls_is_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["smtp.internal".into()]).expect("certificate");
        std::fs::write(&ca, cert.cert.pem()).expect("write");
        let mut c = smtp_with_ca_file(&ca);
        assert!(validate(&mut c, true).is_empty(), "{:?}", validate(&mut c, true));
        c.mail.smtp_tls = SmtpTls::Tls;
        assert!(validate(&mut c, true).is_empty());
        c.mail.smtp_tls = SmtpTls::None;
        assert!(problems_of(&c).len() == 1, "a CA file with TLS off is a contradiction");
    }
}
