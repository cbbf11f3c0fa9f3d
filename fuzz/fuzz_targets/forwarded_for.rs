//! The client's address from `X-Forwarded-For` (`client_ip::client_ip`),
//! which rate limits, lockouts, network rules and the audit trail rely on.
//!
//! Input: line 1 the peer's address, line 2 the trusted proxies (CIDRs,
//! comma-separated), then one `X-Forwarded-For` value per line (any bytes).
//!
//! Properties: an untrusted peer's headers are ignored (the peer is the
//! client); an IPv4-mapped address always comes out as IPv4; the answer is
//! the peer or an address the header names; when the answer is not a
//! trusted proxy, whatever a client prepends on the left (a forged chain, as
//! its own header or at the start of the first) changes nothing; without the
//! header the peer stands.
#![no_main]

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use portcullis::client_ip::{X_FORWARDED_FOR, canonical, client_ip, is_trusted};
use portcullis_fuzz::{lines, text};

const FORGED: &[&[u8]] =
    &[b"6.6.6.6", b"10.0.0.1", b"::ffff:6.6.6.6, 10.0.0.9", b"[2001:db8::6]:443", b"unknown", b"\xff"];

/// Whether the header names `ip` (in any form `client_ip` accepts).
fn named(headers: &HeaderMap, ip: IpAddr) -> bool {
    let parts = headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).flat_map(|s| s.split(','));
    parts.map(str::trim).any(|p| {
        let bracketed = p.strip_prefix('[').and_then(|r| r.split(']').next());
        let with_port = p.rsplit_once(':').map(|(h, _)| h);
        [Some(p), bracketed, with_port]
            .into_iter()
            .flatten()
            .any(|c| c.parse::<IpAddr>().is_ok_and(|a| canonical(a) == ip))
    })
}

fuzz_target!(|data: &[u8]| {
    let l = lines(data);
    let Some(peer) = l.first().and_then(|p| text(p)).and_then(|p| p.trim().parse::<IpAddr>().ok()) else {
        return;
    };
    let trusted: Vec<IpNet> = l
        .get(1)
        .and_then(|t| text(t))
        .map(|t| t.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    for v in l.iter().skip(2).take(6) {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            headers.append(&X_FORWARDED_FOR, v);
        }
    }

    let ip = client_ip(peer, &headers, &trusted);
    if let IpAddr::V6(v6) = ip {
        assert!(v6.to_ipv4_mapped().is_none(), "{ip} is IPv4-mapped");
    }
    if !is_trusted(peer, &trusted) {
        assert_eq!(ip, canonical(peer), "an untrusted peer's X-Forwarded-For was believed");
        return;
    }
    assert!(ip == canonical(peer) || named(&headers, ip), "{ip} is neither the peer nor named");
    if headers.is_empty() {
        assert_eq!(ip, canonical(peer));
    }
    if is_trusted(ip, &trusted) {
        return;
    }
    // A client controls the left of the chain only.
    for forged in FORGED {
        let forged = HeaderValue::from_bytes(forged).unwrap();
        let mut own_header = HeaderMap::new();
        own_header.append(&X_FORWARDED_FOR, forged.clone());
        for v in headers.get_all(&X_FORWARDED_FOR) {
            own_header.append(&X_FORWARDED_FOR, v.clone());
        }
        assert_eq!(client_ip(peer, &own_header, &trusted), ip, "a forged header {forged:?} moved the client");
        let mut joined = HeaderMap::new();
        for (i, v) in headers.get_all(&X_FORWARDED_FOR).iter().enumerate() {
            if i == 0
                && let Ok(s) = v.to_str()
                && let Ok(f) = forged.to_str()
            {
                joined.append(&X_FORWARDED_FOR, HeaderValue::from_str(&format!("{f}, {s}")).unwrap());
            } else {
                joined.append(&X_FORWARDED_FOR, v.clone());
            }
        }
        assert_eq!(client_ip(peer, &joined, &trusted), ip, "a forged prefix {forged:?} moved the client");
    }
});
