//! Forward-auth's reconstruction of the original request
//! (`portal::original`) from nginx's `X-Original-URL` or Traefik's and
//! Caddy's `X-Forwarded-Proto/-Host/-Uri/-Method`.
//!
//! Properties: what is accepted is in normal form (a host that normalises to
//! itself, a path that normalises to itself, no fragment); its URL,
//! reconstructed and read back as nginx would send it, gives the same
//! request; a browser's URL parser reads the same host and port from it, and
//! the return-address check accepts it on that host; with `?mode=` naming a
//! proxy, the other proxy's headers (which a client can add) change nothing;
//! without it, both sets present is refused.
//!
//! Input: line 1 the `mode` query parameter (`-` for none), then `Name: value`
//! header lines.
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::portal::{Redirects, original};
use portcullis_fuzz::{header_lines, lines, text};

const NGINX: &[&str] = &["x-original-url", "x-original-method"];

fn only(headers: &HeaderMap, keep: impl Fn(&str) -> bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (n, v) in headers {
        if keep(n.as_str()) {
            out.append(n.clone(), v.clone());
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let l = lines(data);
    // Line 1: `?mode=` (`-` for none); then `Name: value` header lines.
    let Some(mode) = l.first().and_then(|m| text(m)) else {
        return;
    };
    let mode = (mode != "-").then_some(mode);
    let mut headers = HeaderMap::new();
    for (name, value) in header_lines(&l[1..]) {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    let result = original(&headers, mode);

    // Only the named proxy's headers count.
    match mode {
        Some("nginx") => {
            assert_eq!(
                original(&only(&headers, |n| NGINX.contains(&n)), mode),
                result,
                "nginx mode read other headers"
            );
        }
        Some("traefik" | "caddy") => {
            assert_eq!(original(&only(&headers, |n| !NGINX.contains(&n)), mode), result, "mode read X-Original-*");
        }
        None => {
            let present = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).is_some_and(|s| !s.is_empty());
            if present("x-original-url") && present("x-forwarded-uri") {
                assert!(result.is_err(), "both sets present without ?mode= was believed");
            }
        }
        _ => {}
    }

    let Ok(o) = result else {
        return;
    };
    assert!(matches!(o.scheme, "http" | "https"));
    let host = portcullis::normalize::host(&o.host).expect("a normal host");
    assert_eq!((host.name.as_ref(), host.port), (&*o.host, None), "host not in normal form");
    assert_eq!(portcullis::normalize::path(&o.path).as_deref(), Ok(&*o.path), "path not in normal form");
    assert!(!o.query.as_deref().unwrap_or("").contains('#'), "a fragment in the query");

    // The URL it makes, as nginx would send it, is the same request.
    let url = o.url();
    let mut again = HeaderMap::new();
    again.insert("x-original-url", HeaderValue::from_str(&url).expect("a header value"));
    again.insert("x-original-method", HeaderValue::from_str(o.method.as_str()).unwrap());
    let o2 = original(&again, Some("nginx")).unwrap_or_else(|e| panic!("{url:?} refused: {e}"));
    assert_eq!(
        (o2.scheme, &o2.host, o2.port, &o2.path, &o2.query, &o2.method),
        (o.scheme, &o.host, o.port, &o.path, &o.query, &o.method),
        "{url:?}"
    );

    // A browser (WHATWG URL parser) reads the host that was checked, and the
    // login page accepts the URL as its return address.
    // (A host no URL parser accepts, e.g. a bad `xn--` label, only loses
    // the return address.)
    let Ok(parsed) = url::Url::parse(&url) else {
        return;
    };
    assert_eq!(parsed.host_str(), Some(&*o.host), "{url:?}: the browser goes elsewhere");
    assert_eq!(parsed.port_or_known_default(), Some(o.port.unwrap_or(if o.scheme == "https" { 443 } else { 80 })));
    let public = url::Url::parse(&format!("{}://{}/", o.scheme, o.host)).unwrap();
    assert!(Redirects::new(&public, &[]).validate(Some(&url)).is_some(), "{url:?} refused as rd on its own host");
});
