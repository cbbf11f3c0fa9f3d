//! The return address (`rd`) check (`portal::Redirects::validate`): where the
//! login page may send a browser afterwards.
//!
//! Input: the `rd` value (any bytes; checked as the query or form would hand
//! it over, as text), against several `public_url`s and allowed domains.
//!
//! Properties: an accepted `rd` is an absolute http(s) URL without user
//! information, whitespace or control characters, whose host (as a browser
//! parses it, also after resolving it against the login page) is
//! `public_url`'s or matches an allowed redirect domain; a path-form `rd`
//! (`/x`) stays on the portal's host unless it names an allowed domain; and
//! the accepted URL is itself accepted unchanged (checking is stable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::access::domain_matches;
use portcullis::portal::Redirects;

const PUBLIC: &[&str] =
    &["https://auth.example.com", "http://127.0.0.1:8080", "https://Auth.Example.COM:8443/base/", "http://[::1]:9000"];
const ALLOWED: &[&[&str]] =
    &[&[], &["*.example.com", "app.example.org"], &["EXAMPLE.NET", "*.test", "xn--bcher-kva.example"]];

fuzz_target!(|data: &[u8]| {
    let rd = String::from_utf8_lossy(data);
    for public in PUBLIC {
        let public = url::Url::parse(public).unwrap();
        for allowed in ALLOWED {
            let allowed: Vec<String> = allowed.iter().map(|d| d.to_string()).collect();
            check(&public, &allowed, &rd);
        }
    }
});

fn check(public: &url::Url, allowed: &[String], rd: &str) {
    let redirects = Redirects::new(public, allowed);
    let Some(out) = redirects.validate(Some(rd)) else {
        return;
    };
    assert!(!out.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()), "{out:?}");
    let url = url::Url::parse(&out).expect("an accepted rd is an absolute URL");
    assert!(matches!(url.scheme(), "http" | "https"), "{out:?}");
    assert!(url.username().is_empty() && url.password().is_none(), "{out:?} carries user information");
    let host = url.host_str().expect("a host").to_ascii_lowercase();
    let public_host = public.host_str().unwrap().to_ascii_lowercase();
    let on_allowed = allowed.iter().any(|d| domain_matches(&d.to_ascii_lowercase(), &host));
    assert!(host == public_host || on_allowed, "{rd:?} sent to {host:?} (allowed {allowed:?})");
    // What a browser does with the Location: resolved against the login page.
    let followed = public.join("/_auth/login").unwrap().join(&out).expect("the browser can follow it");
    assert_eq!(followed.host_str().map(str::to_ascii_lowercase), Some(host.clone()), "{out:?}");
    if rd.trim().starts_with('/') && !on_allowed {
        assert_eq!(host, public_host, "a path {rd:?} left the portal");
    }
    assert_eq!(redirects.validate(Some(&out)).as_deref(), Some(out.as_str()), "checking {out:?} again changed it");
}
