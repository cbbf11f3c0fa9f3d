//! The `Cookie` header: reading the gateway's session, pending-login and
//! CSRF cookies (`session::SessionCookies`) and stripping them before a
//! request goes upstream (`proxy::headers::strip_cookies`).
//!
//! Input: one `Cookie` header value per line (any bytes), read with the
//! cookie names of plain http, of https (`__Host-`) and with a cookie domain.
//!
//! Properties: a session token is only ever read from a pair named exactly
//! like the session cookie, and only when shaped like a token; the CSRF
//! binding is one of the gateway's own cookies, never empty; after
//! stripping, none of the gateway's cookies can be read any more (the
//! application never sees a session), every other readable pair passes
//! untouched and in order, and stripping again changes nothing.
#![no_main]

use http::header::{COOKIE, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::config::SessionConfig;
use portcullis::proxy::headers::strip_cookies;
use portcullis::session::{SessionCookies, cookie_value, plausible_token};
use portcullis_fuzz::lines;

/// The pairs of the readable `Cookie` headers, trimmed and non-empty, in order.
fn pairs(h: &HeaderMap) -> Vec<String> {
    h.get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for v in lines(data).into_iter().take(8) {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            headers.append(COOKIE, v);
        }
    }
    for (secure, domain) in [(false, false), (true, false), (true, true)] {
        let cfg =
            SessionConfig { cookie_domain: domain.then(|| "example.com".to_string()), ..SessionConfig::default() };
        check(&SessionCookies::new(&cfg, secure), &headers);
    }
});

fn check(jar: &SessionCookies, headers: &HeaderMap) {
    let ours = jar.own_names();
    if let Some(t) = jar.session_token(headers) {
        assert!(plausible_token(t), "{t:?}");
        let named = pairs(headers).into_iter().any(|p| p == format!("{}={t}", jar.session_name));
        assert!(named, "session token {t:?} read from a pair not named {}", jar.session_name);
    }
    if let Some(b) = jar.csrf_binding(headers) {
        assert!(!b.is_empty());
        assert!(ours.iter().any(|n| cookie_value(headers, n) == Some(b)), "binding {b:?} is not one of ours");
    }

    let mut stripped = headers.clone();
    strip_cookies(&mut stripped, &ours);
    for n in ours {
        assert_eq!(cookie_value(&stripped, n), None, "{n} survived stripping");
    }
    assert_eq!(jar.session_token(&stripped), None);
    assert_eq!(jar.pending_token(&stripped), None);
    assert_eq!(jar.csrf_binding(&stripped), None);
    // What is not ours passes, in order.
    let kept: Vec<String> =
        pairs(headers).into_iter().filter(|p| !ours.contains(&p.split('=').next().unwrap_or("").trim())).collect();
    assert_eq!(pairs(&stripped), kept);
    let mut twice = stripped.clone();
    strip_cookies(&mut twice, &ours);
    assert_eq!(twice, stripped, "stripping twice");
}
