//! Path and host normalisation (`normalize`): what the access rules, the
//! portal's routes and the upstream all see.
//!
//! Input: line 1 a path, line 2 a host.
//!
//! Properties: a normal path is a fixed point (normalising twice changes
//! nothing) with no dot segment, empty segment, backslash, lower-case escape
//! or escape of an unreserved character in it; every other spelling of the
//! same path (a `.` segment, an `x/..` detour, a doubled slash, an escaped
//! unreserved character, lower-case hex) normalises to the same path; the
//! already-normal fast path agrees with the full one; a refusal does not
//! depend on a meaningless prefix. A normal host is a fixed point,
//! lower-case, without a trailing dot, unchanged by the input's case, and has
//! one spelling per address (IPv6 canonical; a name ending in a number is a
//! dotted-quad IPv4 address), as a browser's URL parser would see it.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use portcullis::normalize;
use portcullis_fuzz::{lines, respellings, text};

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn check_normal(n: &str) {
    assert!(n.starts_with('/'), "{n:?} is not absolute");
    assert!(!n.contains('\\'), "{n:?} holds a backslash");
    let inner = n[1..].strip_suffix('/').unwrap_or(&n[1..]);
    if !inner.is_empty() {
        for seg in inner.split('/') {
            assert!(!seg.is_empty(), "{n:?} has an empty segment");
            assert!(seg != "." && seg != "..", "{n:?} has a dot segment");
        }
    }
    for (i, _) in n.match_indices('%') {
        let esc = &n.as_bytes()[i + 1..i + 3];
        assert!(
            esc.iter().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)),
            "{n:?}: escape not upper-case hex"
        );
        let v = u8::from_str_radix(std::str::from_utf8(esc).unwrap(), 16).unwrap();
        assert!(!unreserved(v) && !matches!(v, b'/' | b'\\' | 0), "{n:?}: escape of {v:#x} left in");
    }
}

fn check_path(p: &str) {
    match normalize::path(p) {
        Ok(n) => {
            check_normal(&n);
            assert_eq!(normalize::path(&n).as_deref(), Ok(&*n), "normalising {p:?} twice changed it");
            // (The empty path is "/", borrowed from a constant.)
            if let Cow::Borrowed(_) = n
                && !p.is_empty()
            {
                assert_eq!(n, p);
                // The fast path must agree with the full one.
                assert_eq!(normalize::path(&format!("/x/..{p}")).as_deref(), Ok(p), "fast and full paths disagree");
            }
            if p.starts_with('/') {
                for variant in respellings(p) {
                    assert_eq!(normalize::path(&variant).as_deref(), Ok(&*n), "{p:?} and {variant:?} are one path");
                }
            }
        }
        Err(e) => {
            if p.starts_with('/') {
                assert_eq!(normalize::path(&format!("/.{p}")).err(), Some(e), "{p:?}");
            }
        }
    }
}

fn check_host(raw: &str) {
    let Ok(h) = normalize::host(raw) else {
        return;
    };
    assert!(!h.name.is_empty());
    assert!(!h.name.ends_with('.'), "{:?}", h.name);
    assert!(!h.name.bytes().any(|b| b.is_ascii_uppercase()), "{:?}", h.name);
    let again = match h.port {
        Some(port) => format!("{}:{port}", h.name),
        None => h.name.to_string(),
    };
    assert_eq!(normalize::host(&again).as_ref(), Ok(&h), "host normalised twice");
    assert_eq!(normalize::host(&raw.to_ascii_uppercase()).ok(), Some(h.clone()), "case changed the host {raw:?}");
    // One spelling per address, the one a browser's URL parser makes (and
    // sends): IPv6 canonical, a name ending in a number an IPv4 address.
    if let Some(v6) = h.name.strip_prefix('[') {
        let addr: std::net::Ipv6Addr = v6.trim_end_matches(']').parse().expect("an IPv6 address");
        assert_eq!(h.name, url::Host::<&str>::Ipv6(addr).to_string(), "IPv6 not in its canonical form");
    } else if ends_in_a_number(&h.name) {
        let v4: Result<std::net::Ipv4Addr, _> = h.name.parse();
        assert!(v4.is_ok(), "{:?} ends in a number but is not an IPv4 address", h.name);
    }
    if let Ok(url) = url::Url::parse(&format!("http://{again}/")) {
        assert_eq!(url.host_str(), Some(&*h.name), "a browser reads {again:?} as another host");
    }
}

/// The URL Standard's test: the last label is decimal digits, or `0x` and hex digits.
fn ends_in_a_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or("");
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
        || hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fuzz_target!(|data: &[u8]| {
    let l = lines(data);
    if let Some(p) = l.first().and_then(|l| text(l)) {
        check_path(p);
    }
    if let Some(h) = l.get(1).and_then(|l| text(l)) {
        check_host(h);
    }
});
