//! Header hygiene between client and upstream: hop-by-hop removal, the
//! X-Forwarded-* set (the client's address itself is `client_ip`'s), and
//! stripping what a client must not smuggle in (identity headers, the
//! gateway's own cookies).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::client_ip::{X_FORWARDED_FOR, canonical, push_ip};

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones proxies also
/// drop, and `Upgrade` last: it is kept for a protocol switch.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::UPGRADE,
];

/// The index of `name` in [`HOP_BY_HOP`]. A `match` on the text compares by
/// length first, so a header that is none of them costs a few instructions.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "transfer-encoding" => 3,
        "te" => 4,
        "trailer" => 5,
        "proxy-authenticate" => 6,
        "proxy-authorization" => 7,
        "upgrade" => 8,
        _ => return None,
    })
}
const UPGRADE_BIT: u16 = 1 << 8;

pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers and every header named in `Connection`.
/// `keep_upgrade` keeps `Connection: upgrade` + `Upgrade` for a protocol switch.
///
/// One pass over the names present finds which of them are hop-by-hop:
/// most requests carry none, and then nothing is hashed or allocated; most
/// responses carry only `Connection: keep-alive`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let keep = if keep_upgrade { UPGRADE_BIT } else { 0 };
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name.as_str()) {
            present |= 1 << i;
        }
    }
    present &= !keep;
    if present != 0 {
        // Names listed in Connection go too; the hop-by-hop ones among them
        // are removed below in any case.
        let mut named: Vec<HeaderName> = Vec::new();
        if present & 1 != 0 {
            let tokens =
                headers.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
            for token in tokens.map(str::trim) {
                // `keep-alive`, mostly: compared as it is, not made a name.
                if HOP_BY_HOP.iter().any(|h| h.as_str().eq_ignore_ascii_case(token)) {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(n);
                }
            }
        }
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            if present & (1 << i) != 0 {
                headers.remove(name);
            }
        }
        for name in named {
            headers.remove(name);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Headers through which a client could tell the application where a request
/// came from or where it went, other than the three the gateway sets: the
/// `X-Forwarded-` family (`-Port`, `-Prefix`, `-Server`, `-Ssl`, ...) and the
/// client-address headers of other proxies and CDNs, plus the path overrides
/// some frameworks honour (`X-Original-URL`, `X-Rewrite-URL`: a rule decided
/// one path, the application would route another). Lower-case, `-` spelled.
const FORWARDING: [&str; 12] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
];

/// `name` (lower-case) equals `want` (lower-case, `-` spelled) once every `_`
/// is read as `-`: WSGI, CGI, PHP and Rack servers read `X_Forwarded_For`
/// as `X-Forwarded-For` (both become `HTTP_X_FORWARDED_FOR`).
fn folds_to(name: &[u8], want: &[u8]) -> bool {
    name.len() == want.len() && name.iter().zip(want).all(|(&n, &w)| n == w || (n == b'_' && w == b'-'))
}

/// Whether `name` (lower-case, as hyper gives it) is a forwarding header in
/// any spelling.
fn is_forwarding(name: &str) -> bool {
    let b = name.as_bytes();
    const FAMILY: &[u8] = b"x-forwarded-";
    (b.len() > FAMILY.len() && folds_to(&b[..FAMILY.len()], FAMILY))
        || FORWARDING.iter().any(|w| folds_to(b, w.as_bytes()))
}

/// Removes what a client must not tell the application about where the
/// request came from. From a peer that is not a trusted proxy: every
/// forwarding header, in every spelling (`set_forwarded` then sets its own).
/// From a trusted proxy, whose `-` spelled headers are believed: only the
/// `_` spellings, which no proxy sets, and which a client behind a proxy
/// that passes them on (Traefik, Caddy) could use to contradict it.
///
/// One pass over the names present; a request carrying none of them
/// allocates nothing.
pub fn strip_forwarding(headers: &mut HeaderMap, trusted_peer: bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let n = name.as_str();
        if (!trusted_peer || n.contains('_')) && is_forwarding(n) {
            doomed.push(name.clone());
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// Sets X-Forwarded-For/-Proto/-Host. A trusted peer's values are extended or
/// kept; an untrusted peer's are replaced.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    trusted_peer: bool,
    scheme: &'static str,
    host: Option<&HeaderValue>,
) {
    let mut xff = Vec::with_capacity(48);
    if let (true, Some(prev)) = (trusted_peer, joined(headers, &X_FORWARDED_FOR)) {
        xff.extend_from_slice(prev.as_bytes());
        xff.extend_from_slice(b", ");
    }
    push_ip(&mut xff, canonical(peer));
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(xff)) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !trusted_peer || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    }
    if !trusted_peer || !headers.contains_key(&X_FORWARDED_HOST) {
        match host {
            Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}

fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = v.to_str().ok()?;
        match &mut out {
            Some(o) => {
                o.push_str(", ");
                o.push_str(s);
            }
            None => out = Some(s.to_string()),
        }
    }
    out
}

/// `Basic base64(user:password)`, for an application that only understands
/// HTTP Basic (`pass_basic_auth`).
pub fn basic_authorization(user: &str, password: &str) -> Option<HeaderValue> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {encoded}")).ok()
}

/// Drops the named cookies from every `Cookie` header, so the upstream never
/// sees the gateway's session. Other cookies pass untouched. A `Cookie` header
/// that is not visible ASCII goes whole, as one that may hide ours.
pub fn strip_cookies(headers: &mut HeaderMap, names: &[&str]) {
    let mut kept: Vec<u8> = Vec::new();
    let mut dropped = false;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else {
            dropped = true;
            continue;
        };
        for pair in text.split(';').map(str::trim).filter(|c| !c.is_empty()) {
            if cookie_named(pair, names) {
                dropped = true;
            } else {
                if !kept.is_empty() {
                    kept.extend_from_slice(b"; ");
                }
                kept.extend_from_slice(pair.as_bytes());
            }
        }
    }
    if !dropped {
        return;
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(kept))
    {
        headers.insert(header::COOKIE, v);
    }
}

fn cookie_named(pair: &str, names: &[&str]) -> bool {
    let name = pair.split('=').next().unwrap_or("").trim();
    names.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header map of `pairs`, in order (a repeated name gets each value).
    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn an_untrusted_client_loses_every_forwarding_header_in_every_spelling() {
        let spellings = [
            "x-forwarded-for",
            "x_forwarded_for",
            "x_forwarded-host",
            "x-forwarded_proto",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x_forwarded_server",
            "forwarded",
            "x-real-ip",
            "x_real_ip",
            "x-client-ip",
            "true-client-ip",
            "true_client_ip",
            "cf-connecting-ip",
            "x-original-url",
            "x_rewrite_url",
        ];
        let mut h = HeaderMap::new();
        for n in spellings {
            h.insert(HeaderName::from_static(n), HeaderValue::from_static("6.6.6.6"));
        }
        h.insert("x-forwarded", HeaderValue::from_static("kept: not a header of the family"));
        h.insert("x-forwarded-", HeaderValue::from_static("kept: the family's prefix alone names none of it"));
        h.insert("x-forwardedfor", HeaderValue::from_static("kept"));
        h.insert("accept", HeaderValue::from_static("kept"));
        strip_forwarding(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-forwarded", "x-forwarded-", "x-forwardedfor"]);
    }

    #[test]
    fn a_trusted_proxy_keeps_its_headers_but_not_underscore_spellings() {
        let mut h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("x-real-ip", "203.0.113.7"),
            ("forwarded", "for=203.0.113.7"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x_real_ip", "6.6.6.6"),
        ]);
        strip_forwarding(&mut h, true);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["forwarded", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto", "x-real-ip"]);
    }

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = headers(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none() && h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h.get("x-kept").unwrap(), "1");

        // Connection the only hop-by-hop header present: what it names goes too.
        let mut h = headers(&[("connection", "x-secret"), ("x-secret", "1"), ("x-kept", "1")]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn every_hop_by_hop_header_is_removed_and_upgrade_only_kept_for_a_switch() {
        let request = || {
            let mut h = HeaderMap::new();
            for name in [
                "te",
                "trailer",
                "transfer-encoding",
                "proxy-authorization",
                "proxy-authenticate",
                "proxy-connection",
                "keep-alive",
                "upgrade",
            ] {
                h.insert(HeaderName::from_static(name), HeaderValue::from_static("x"));
            }
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert("x-kept", HeaderValue::from_static("1"));
            h
        };
        let mut h = request();
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-kept"]);

        let mut h = request();
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "x");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
        assert_eq!(h.len(), 3, "{h:?}");
    }

    #[test]
    fn session_cookie_is_removed_and_others_kept() {
        let mut h = headers(&[("cookie", "a=1; portcullis_session=s3cr3t; b=2")]);
        strip_cookies(&mut h, &["portcullis_session"]);
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        let mut h = headers(&[("cookie", "portcullis_session=s3cr3t")]);
        strip_cookies(&mut h, &["portcullis_session"]);
        assert!(h.get(header::COOKIE).is_none());
    }

    #[test]
    fn cookie_headers_without_ours_pass_as_they_came() {
        let mut h = headers(&[("cookie", "a=1;b=2"), ("cookie", "c=3")]);
        strip_cookies(&mut h, &["portcullis_session"]);
        let values: Vec<&str> = h.get_all(header::COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(values, ["a=1;b=2", "c=3"]);

        // Across several headers ours go and the rest are joined; a header
        // that is not visible ASCII could hide ours, and goes whole.
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; portcullis_session=s"));
        h.append(header::COOKIE, HeaderValue::from_bytes(b"x=\xff; portcullis_session=t").unwrap());
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        strip_cookies(&mut h, &["portcullis_session"]);
        let values: Vec<&str> = h.get_all(header::COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(values, ["a=1; c=3"]);
    }

    #[test]
    fn a_response_loses_connection_and_what_it_names_only() {
        let mut h = headers(&[("connection", "keep-alive"), ("content-type", "text/html")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));

        let mut h = headers(&[
            ("connection", "X-Trace , Keep-Alive"),
            ("x-trace", "1"),
            ("keep-alive", "timeout=5"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    /// The three headers `set_forwarded` leaves, each value in order.
    fn forwarded(h: &HeaderMap) -> [Vec<&str>; 3] {
        [&X_FORWARDED_FOR, &X_FORWARDED_PROTO, &X_FORWARDED_HOST]
            .map(|n| h.get_all(n).iter().map(|v| v.to_str().unwrap()).collect())
    }

    #[test]
    fn an_untrusted_peers_forwarding_headers_are_replaced_by_what_the_gateway_saw() {
        let peer = IpAddr::from([198, 51, 100, 4]);
        let host = HeaderValue::from_static("app.example.com");
        let spoofed = || {
            headers(&[
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "admin.example.com"),
            ])
        };
        let mut h = spoofed();
        set_forwarded(&mut h, peer, false, "http", Some(&host));
        assert_eq!(forwarded(&h), [["198.51.100.4"], ["http"], ["app.example.com"]]);

        // Without a Host of its own, the request keeps no X-Forwarded-Host at all.
        let mut h = spoofed();
        set_forwarded(&mut h, peer, false, "http", None);
        assert_eq!(forwarded(&h), [vec!["198.51.100.4"], vec!["http"], vec![]]);
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, peer, false, "https", Some(&host));
        assert_eq!(forwarded(&h), [["198.51.100.4"], ["https"], ["app.example.com"]]);
    }

    #[test]
    fn a_trusted_proxys_forwarding_headers_are_kept_and_its_address_added() {
        let proxy = IpAddr::from([10, 0, 0, 2]);
        let host = HeaderValue::from_static("proxy.internal");
        let mut h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "192.0.2.1, 10.0.0.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
        ]);
        set_forwarded(&mut h, proxy, true, "http", Some(&host));
        assert_eq!(forwarded(&h), [["203.0.113.7, 192.0.2.1, 10.0.0.9, 10.0.0.2"], ["https"], ["app.example.com"]]);

        // What the proxy did not say, the gateway says.
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, proxy, true, "http", Some(&host));
        assert_eq!(forwarded(&h), [["10.0.0.2"], ["http"], ["proxy.internal"]]);
    }

    #[test]
    fn basic_authorization_is_the_name_and_password_in_base64() {
        assert_eq!(basic_authorization("alice", "open sesame").unwrap(), "Basic YWxpY2U6b3BlbiBzZXNhbWU=");
    }
}
