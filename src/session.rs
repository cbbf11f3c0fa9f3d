//! Cookie ⇄ session: token generation, the cookies that carry sessions,
//! pending logins and CSRF bindings (written and read here), and the
//! lifetimes. Tokens are 256-bit random values; the store keeps only their
//! hash, so a store dump cannot be replayed as cookies.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use http::header::{self, HeaderMap, HeaderValue};

use crate::config::SessionConfig;
use crate::store::{AuthLevel, SessionRecord};

/// A fresh 256-bit token, base64url without padding (43 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Rejects anything that is not shaped like one of our tokens before it reaches the store.
pub fn plausible_token(t: &str) -> bool {
    t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads one cookie's value from the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

/// The gateway's cookies: their names and attributes, derived once from the
/// config, and how to write and read them.
#[derive(Debug, Clone)]
pub struct SessionCookies {
    pub session_name: String,
    pub pending_name: String,
    /// Binds the CSRF tokens of visitors who have neither a session nor a
    /// pending login (the login form), so such a token cannot be replayed from
    /// another browser (login CSRF).
    pub csrf_name: String,
    domain: Option<String>,
    secure: bool,
}

impl SessionCookies {
    /// Under https without `cookie_domain` the names take the `__Host-`
    /// prefix: a browser then only accepts them from this very host, Secure,
    /// for path `/`, so a sibling subdomain cannot plant one (session fixation
    /// or a CSRF binding of the attacker's choosing).
    pub fn new(cfg: &SessionConfig, secure: bool) -> SessionCookies {
        let prefix = if secure && cfg.cookie_domain.is_none() { "__Host-" } else { "" };
        SessionCookies {
            session_name: format!("{prefix}{}", cfg.cookie_name),
            pending_name: format!("{prefix}{}_pending", cfg.cookie_name),
            csrf_name: format!("{prefix}{}_csrf", cfg.cookie_name),
            domain: cfg.cookie_domain.clone(),
            secure,
        }
    }

    fn build(&self, name: &str, value: &str, max_age: Option<Duration>) -> HeaderValue {
        let mut c = Cookie::build((name.to_owned(), value.to_owned()))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax);
        if let Some(d) = &self.domain {
            c = c.domain(d.clone());
        }
        if let Some(age) = max_age {
            c = c.max_age(cookie::time::Duration::seconds(age.as_secs() as i64));
        }
        HeaderValue::from_str(&c.build().to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The session cookie: persistent for remember-me, else a browser-session cookie.
    pub fn session(&self, token: &str, persistent: Option<Duration>) -> HeaderValue {
        self.build(&self.session_name, token, persistent)
    }

    /// The pending-login cookie (password accepted, code not yet given).
    pub fn pending(&self, token: &str, ttl: Duration) -> HeaderValue {
        self.build(&self.pending_name, token, Some(ttl))
    }

    /// The anonymous visitor's CSRF binding: a browser-session cookie.
    pub fn csrf(&self, token: &str) -> HeaderValue {
        self.build(&self.csrf_name, token, None)
    }

    /// Expires a cookie in the browser.
    pub fn clear(&self, name: &str) -> HeaderValue {
        self.build(name, "", Some(Duration::ZERO))
    }

    /// The names of every cookie the gateway owns: none of them is ever
    /// forwarded to the application.
    pub fn own_names(&self) -> [&str; 3] {
        [&self.session_name, &self.pending_name, &self.csrf_name]
    }

    /// The session token the request carries, if it is shaped like one.
    pub fn session_token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        cookie_value(headers, &self.session_name).filter(|t| plausible_token(t))
    }

    /// The pending-login token the request carries, if any.
    pub fn pending_token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        cookie_value(headers, &self.pending_name)
    }

    /// The value CSRF tokens are bound to: the session cookie, else the
    /// pending-login cookie, else the anonymous CSRF cookie. None when the
    /// request carries none of them: no token is valid then (a cross-site form
    /// post sends no SameSite=Lax cookies, so a token lifted elsewhere cannot be
    /// replayed).
    pub fn csrf_binding<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let cookie = |name: &str| cookie_value(headers, name).filter(|v| !v.is_empty());
        cookie(&self.session_name).or_else(|| cookie(&self.pending_name)).or_else(|| cookie(&self.csrf_name))
    }
}

/// A new session record for `user` at `level`, created at `now` (unix
/// seconds): remember-me sessions last `session.remember_me`; others slide by
/// `idle_timeout` up to `absolute_timeout`. `credential` is the fingerprint of
/// the user's credential (`auth::credential`).
#[allow(clippy::too_many_arguments)]
pub fn new_record(
    cfg: &SessionConfig,
    now: u64,
    user: &str,
    level: AuthLevel,
    remember_me: bool,
    ip: &str,
    device: &str,
    credential: String,
) -> SessionRecord {
    let (idle, absolute) =
        if remember_me { (cfg.remember_me, cfg.remember_me) } else { (cfg.idle_timeout, cfg.absolute_timeout) };
    SessionRecord {
        user: user.to_owned(),
        level,
        created: now,
        last_seen: now,
        idle_secs: idle.as_secs(),
        absolute_expiry: now + absolute.as_secs(),
        remember_me,
        ip: ip.to_owned(),
        device: device.to_owned(),
        credential,
    }
}

/// A short, bounded device description from a User-Agent ("Firefox on Linux").
pub fn describe_device(user_agent: &str) -> String {
    let ua = user_agent;
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Safari/") {
        "Safari"
    } else if ua.starts_with("curl/") {
        "curl"
    } else if ua.is_empty() {
        "Unknown browser"
    } else {
        "Other client"
    };
    let os = if ua.contains("Android") {
        "Android"
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        "iOS"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        "macOS"
    } else if ua.contains("Linux") {
        "Linux"
    } else {
        ""
    };
    if os.is_empty() { browser.to_string() } else { format!("{browser} on {os}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let a = new_token();
        assert!(plausible_token(&a));
        assert_ne!(a, new_token());
        assert!(!plausible_token("short"));
    }

    #[test]
    fn a_cookie_is_read_by_its_whole_name_from_any_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("portcullis_session_old=x; other=1"));
        h.append(header::COOKIE, HeaderValue::from_static(" portcullis_session=tok ; b=2"));
        assert_eq!(cookie_value(&h, "portcullis_session"), Some("tok"));
        assert_eq!(cookie_value(&h, "portcullis"), None, "a prefix of a name is not the name");
        assert_eq!(cookie_value(&h, "b"), Some("2"));
        assert_eq!(cookie_value(&h, "missing"), None);
    }

    #[test]
    fn cookies_carry_the_security_flags() {
        let jar = SessionCookies::new(&SessionConfig::default(), true);
        let c = jar.session("tok", None);
        let s = c.to_str().unwrap();
        assert!(s.contains("HttpOnly") && s.contains("Secure") && s.contains("SameSite=Lax"), "{s}");
        assert!(!s.contains("Max-Age"));
        let c = jar.session("tok", Some(Duration::from_secs(30 * 86400)));
        assert!(c.to_str().unwrap().contains("Max-Age=2592000"));
        let plain = SessionCookies::new(&SessionConfig::default(), false).session("t", None);
        assert!(!plain.to_str().unwrap().contains("Secure"));
        assert!(c.to_str().unwrap().starts_with("__Host-portcullis_session="), "https, no domain: host-only");
        let shared = SessionConfig { cookie_domain: Some("example.com".into()), ..SessionConfig::default() };
        let c = SessionCookies::new(&shared, true).session("t", None);
        assert!(c.to_str().unwrap().starts_with("portcullis_session="), "a Domain cookie cannot be __Host-");
    }

    #[test]
    fn devices_are_summarised() {
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(describe_device(ff), "Firefox on Linux");
        assert_eq!(describe_device("curl/8.5.0"), "curl");
        assert_eq!(describe_device("Mozilla/5.0 (X11; Linux x86_64) Chromium/120.0"), "Chrome on Linux");
        assert_eq!(describe_device("Mozilla/5.0 (iPad; CPU OS 17_0) Safari/604.1"), "Safari on iOS");
        assert_eq!(describe_device("Mozilla/5.0 (Macintosh) Firefox/128.0"), "Firefox on macOS");
    }

    #[test]
    fn a_token_is_43_characters_of_base64url_and_nothing_else() {
        let t = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234";
        assert_eq!(t.len(), 43);
        assert!(plausible_token(t));
        assert!(!plausible_token(&t.replace('-', "+")), "standard base64 is not ours");
        assert!(!plausible_token(&t.replace('_', "/")), "standard base64 is not ours");
        assert!(!plausible_token(&t.replace('0', "=")));
        assert!(!plausible_token(&format!("{t}a")), "44 characters");
        assert!(!plausible_token(&t[1..]), "42 characters");
    }

    #[test]
    fn each_cookie_is_written_and_read_back_by_its_own_name() {
        let jar = SessionCookies::new(&SessionConfig::default(), false);
        let text = |v: HeaderValue| v.to_str().unwrap().to_owned();
        let pending = text(jar.pending("p1", Duration::from_secs(600)));
        assert!(pending.starts_with("portcullis_session_pending=p1;") && pending.contains("Max-Age=600"), "{pending}");
        let csrf = text(jar.csrf("c1"));
        assert!(csrf.starts_with("portcullis_session_csrf=c1;") && !csrf.contains("Max-Age"), "{csrf}");
        let cleared = text(jar.clear("portcullis_session"));
        assert!(cleared.starts_with("portcullis_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
        assert_eq!(jar.own_names(), ["portcullis_session", "portcullis_session_pending", "portcullis_session_csrf"]);

        let token = new_token();
        let cookies = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(v).unwrap());
            h
        };
        let all =
            cookies(&format!("portcullis_session={token}; portcullis_session_pending=p1; portcullis_session_csrf=c1"));
        assert_eq!(jar.session_token(&all), Some(token.as_str()));
        assert_eq!(jar.pending_token(&all), Some("p1"));
        assert_eq!(jar.session_token(&cookies("portcullis_session=forged")), None, "not shaped like a token");
        assert_eq!(jar.csrf_binding(&all), Some(token.as_str()), "the session first");
        let no_session = cookies("portcullis_session=; portcullis_session_pending=p1; portcullis_session_csrf=c1");
        assert_eq!(jar.csrf_binding(&no_session), Some("p1"), "an empty value binds nothing");
        assert_eq!(jar.csrf_binding(&cookies("portcullis_session_csrf=c1")), Some("c1"));
        assert_eq!(jar.csrf_binding(&cookies("other=1")), None);
    }

    #[test]
    fn a_session_slides_by_the_idle_timeout_up_to_the_absolute_one_or_lasts_remember_me() {
        let cfg = SessionConfig::default();
        let record = |remember_me| {
            new_record(&cfg, 1_000, "alice", AuthLevel::TwoFactor, remember_me, "10.0.0.1", "Firefox", "fp".into())
        };
        let r = record(false);
        assert_eq!((r.created, r.last_seen, r.idle_secs, r.absolute_expiry), (1_000, 1_000, 3_600, 1_000 + 12 * 3_600));
        assert_eq!((r.user.as_str(), r.level, r.remember_me), ("alice", AuthLevel::TwoFactor, false));
        let r = record(true);
        assert_eq!((r.idle_secs, r.absolute_expiry, r.remember_me), (30 * 86_400, 1_000 + 30 * 86_400, true));
    }
}
