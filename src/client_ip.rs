//! The client's address: the peer itself, or, behind a trusted proxy, the one
//! that proxy names in `X-Forwarded-For`. Below the server (the per-client
//! connection cap), the access rules (`networks`), the request's facts and the
//! proxy (which extends `X-Forwarded-For`), so each reads it the same way.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName};
use ipnet::IpNet;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// True when `ip` is inside one of the trusted networks.
#[inline]
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|n| n.contains(&ip))
}

/// IPv4-mapped IPv6 peers (dual-stack sockets) compare as IPv4.
#[inline]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address. From an untrusted peer, the peer itself; from a
/// trusted one, the rightmost X-Forwarded-For entry that is not itself a trusted
/// proxy (walking right to left, so a client cannot forge its way in from the left).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut candidate = peer;
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(s) = value.to_str() else {
            return candidate;
        };
        for part in s.rsplit(',') {
            let Some(ip) = parse_forwarded_ip(part) else {
                return candidate;
            };
            candidate = canonical(ip);
            if !is_trusted(candidate, trusted) {
                return candidate;
            }
        }
    }
    candidate
}

/// Accepts `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` and `[2001:db8::1]:443`.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(h, _)| h.parse().ok())
}

/// Writes `ip` as text. IPv4 is written by hand, digit by digit into one
/// buffer: `to_string`'s formatting machinery cost a proxied request about
/// 1,500 instructions (callgrind), and a number formatter per octet still
/// 450, twice a request (here and in the access log). IPv6 goes through
/// `Display`.
#[inline]
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    text[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    text[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                text[n] = b'0' + octet % 10;
                n += 1;
            }
            out.extend_from_slice(&text[..n]);
        }
        IpAddr::V6(v6) => {
            let _ = std::io::Write::write_fmt(out, format_args!("{v6}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// IPv4 written by hand reads exactly as `Display` writes it.
    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in ["0.0.0.0", "1.2.3.4", "10.200.0.255", "255.255.255.255", "::1", "2001:db8::7", "::ffff:1.2.3.4"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 255 - octet, octet / 3, 7]);
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(v: &str) -> HeaderMap {
        headers(&[("x-forwarded-for", v)])
    }

    /// A header map of `pairs`, in order (a repeated name gets each value).
    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peer_cannot_claim_another_address() {
        let ip = client_ip("203.0.113.9".parse().unwrap(), &xff("1.1.1.1"), &nets(&["127.0.0.1/32"]));
        assert_eq!(ip.to_string(), "203.0.113.9");
    }

    #[test]
    fn trusted_peer_yields_rightmost_untrusted_entry() {
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let h = xff("6.6.6.6, 198.51.100.7, 10.0.0.3");
        assert_eq!(client_ip("127.0.0.1".parse().unwrap(), &h, &trusted).to_string(), "198.51.100.7");
    }

    #[test]
    fn garbage_in_forwarded_for_stops_the_walk() {
        let trusted = nets(&["127.0.0.1/32"]);
        let h = xff("not-an-ip");
        assert_eq!(client_ip("127.0.0.1".parse().unwrap(), &h, &trusted).to_string(), "127.0.0.1");
        let h = xff("[2001:db8::1]:443");
        assert_eq!(client_ip("127.0.0.1".parse().unwrap(), &h, &trusted).to_string(), "2001:db8::1");
    }
}
