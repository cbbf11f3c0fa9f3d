//! One normal form for the paths and hosts that access rules match and that
//! upstreams receive. Upstreams (nginx, Apache, PHP, Tomcat, Go, Django, Rails,
//! Spring) resolve dot segments and decode unreserved characters before they
//! route, so a rule written for `/admin/` must see `/public/../admin/x`,
//! `/%61dmin/x` and `//admin/x` as the `/admin/x` they are; and the upstream
//! must be handed exactly the path the rule saw.
//!
//! A path is normalised as RFC 3986 section 6 says: percent-encoded unreserved
//! characters are decoded, other escapes get upper-case hex, dot segments are
//! removed and repeated slashes merged. What cannot be normalised without
//! changing its meaning for some upstream is refused: an encoded `/`, `\` or
//! NUL inside a segment, a malformed escape, a literal `\` (some servers read
//! it as `/`), and a dot segment with `;` parameters (Tomcat reads `..;` as
//! `..`).
//!
//! Path parameters (`;name=value` after a segment) stay in the normal form,
//! because applications behind the gateway use them (`;jsessionid=`), but
//! Tomcat, Jetty and Spring route as if they were not there: `/admin;x/secret`
//! is `/admin/secret` to them. [`without_parameters`] gives that second
//! reading, so access rules can see both (and the stricter verdict wins).
//!
//! A host is lower-cased, loses a trailing dot and has its port split off;
//! anything that is not a valid `host[:port]` is refused. An address has one
//! spelling, the one browsers' URL parsers give it and send: IPv6 in its
//! canonical form, and IPv4 only as a dotted quad (a URL parser reads
//! `0x7f.1` or `127.1` as 127.0.0.1, so such a name would be one host to the
//! rules and another to a browser following the return address).

use std::borrow::Cow;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path holds an encoded '/', '\\' or NUL")]
    EncodedSeparator,
    #[error("the path holds a malformed percent-escape")]
    BadEscape,
    #[error("the path holds a '\\'")]
    Backslash,
    #[error("the path holds a dot segment with parameters")]
    DotParameters,
}

/// True for RFC 3986 unreserved characters, which never need escaping.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` is already in normal form, checked without allocating:
/// no escape, no backslash, no empty segment, no dot segment. Almost every
/// real request takes this way.
fn already_normal(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    let mut segment_start = 1;
    for i in 1..=path.len() {
        let end = i == path.len();
        if !end {
            match path[i] {
                b'%' | b'\\' => return false,
                b'/' => {}
                _ => continue,
            }
        }
        let seg = &path[segment_start..i];
        // An empty segment is only allowed at the very end (a trailing slash).
        if (seg.is_empty() && !end) || seg == b"." || seg == b".." || seg.starts_with(b".;") || seg.starts_with(b"..;")
        {
            return false;
        }
        segment_start = i + 1;
    }
    true
}

/// The normal form of a request path (without its query).
pub fn path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    let bytes = raw.as_bytes();
    if already_normal(bytes) {
        return Ok(Cow::Borrowed(raw));
    }
    if bytes[0] != b'/' {
        return Err(PathError::NotAbsolute);
    }
    // Decode each segment; collect the segments that survive dot removal.
    let mut out: Vec<String> = Vec::new();
    let ends_with_slash = bytes.ends_with(b"/");
    let mut segments = raw[1..].split('/').peekable();
    let mut trailing = ends_with_slash;
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        let seg = decode_segment(seg)?;
        match seg.as_str() {
            // Repeated slashes merge; a trailing one is kept below.
            "" => {}
            "." => trailing |= last,
            ".." => {
                out.pop();
                trailing |= last;
            }
            s if s.starts_with(".;") || s.starts_with("..;") => return Err(PathError::DotParameters),
            _ => out.push(seg),
        }
    }
    let mut normal = String::with_capacity(raw.len());
    for seg in &out {
        normal.push('/');
        normal.push_str(seg);
    }
    if trailing || out.is_empty() {
        normal.push('/');
    }
    Ok(Cow::Owned(normal))
}

/// The path as servers that drop segment parameters read it: every `;` and
/// what follows it up to the next `/` removed from each segment, then
/// normalised again (a segment that was only parameters merges away). `None`
/// when `normal` (a path in normal form) holds no `;`, which is almost every
/// request: nothing is scanned twice or allocated then.
///
/// Only a literal `;` starts parameters: Tomcat, Jetty and Spring split them
/// off before decoding, so `%3B` is part of the segment's name to them.
pub fn without_parameters(normal: &str) -> Option<String> {
    if !normal.contains(';') {
        return None;
    }
    let mut bare = String::with_capacity(normal.len());
    for (i, seg) in normal.split('/').enumerate() {
        if i > 0 {
            bare.push('/');
        }
        bare.push_str(seg.split_once(';').map_or(seg, |(name, _)| name));
    }
    // Dot segments with parameters were refused before this point, so what
    // is left resolves without them; this merges the emptied segments.
    Some(path(&bare).map_or(bare.clone(), Cow::into_owned))
}

/// Decodes the unreserved escapes of one segment and upper-cases the others.
fn decode_segment(seg: &str) -> Result<String, PathError> {
    let b = seg.as_bytes();
    let mut out = String::with_capacity(seg.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c)))
                else {
                    return Err(PathError::BadEscape);
                };
                let c = hi * 16 + lo;
                if matches!(c, b'/' | b'\\' | 0) {
                    return Err(PathError::EncodedSeparator);
                }
                if unreserved(c) {
                    out.push(char::from(c));
                } else {
                    out.push('%');
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            _ => {
                // A multi-byte character is copied whole (request paths are
                // ASCII after hyper's parsing, but be exact either way).
                let ch_len = seg[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&seg[i..i + ch_len]);
                i += ch_len;
            }
        }
    }
    Ok(out)
}

/// A host as rules and upstream selection see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host<'a> {
    /// Lower-case, without a trailing dot; IPv6 addresses keep their brackets.
    pub name: Cow<'a, str>,
    pub port: Option<u16>,
}

/// Why a host was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid host[:port]")]
pub struct HostError;

/// The normal form of a `Host` header (or an authority): `host[:port]` with a
/// DNS name, a dotted-quad IPv4 address or a bracketed IPv6 address (made
/// canonical). Anything else (a `#`, `?`, `\`, `/`, `@`, space, an empty
/// host, a port that is not a number, a name that ends in a number but is
/// not a dotted quad) is refused rather than guessed at.
pub fn host(raw: &str) -> Result<Host<'_>, HostError> {
    let mut v6 = None;
    let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or(HostError)?;
        v6 = Some(addr.parse::<std::net::Ipv6Addr>().map_err(|_| HostError)?);
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(HostError)?),
        };
        (&raw[..addr.len() + 2], port)
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| HostError)?)
        }
        Some(_) => return Err(HostError),
    };
    if let Some(addr) = v6 {
        // RFC 5952's form, as URL parsers serialise it (`[::ffff:102:304]`).
        let canonical = url::Host::<&str>::Ipv6(addr).to_string();
        let name = if canonical == name { Cow::Borrowed(name) } else { Cow::Owned(canonical) };
        return Ok(Host { name, port });
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    // One pass: labels of 1 to 63 letters, digits, `-` or `_`; note any
    // upper case on the way.
    let (mut label, mut upper) = (0usize, false);
    for b in name.bytes() {
        match b {
            b'.' if label == 0 => return Err(HostError),
            b'.' => label = 0,
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
            b'A'..=b'Z' => (label, upper) = (label + 1, true),
            _ => return Err(HostError),
        }
        if label > 63 {
            return Err(HostError);
        }
    }
    if label == 0 || name.len() > 253 {
        return Err(HostError);
    }
    if ends_in_a_number(name) && name.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(HostError);
    }
    Ok(Host { name: if upper { Cow::Owned(name.to_ascii_lowercase()) } else { Cow::Borrowed(name) }, port })
}

/// An absolute `http(s)` URL in normal form: where a forward-auth request
/// says the original request went, or where a login's return address leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url<'a> {
    pub scheme: &'static str,
    pub host: Host<'a>,
    /// The normalised path.
    pub path: Cow<'a, str>,
    pub query: Option<&'a str>,
}

impl Url<'_> {
    /// The URL as text, in its normal form.
    pub fn to_text(&self) -> String {
        let port = self.host.port.map(|p| format!(":{p}")).unwrap_or_default();
        let query = self.query.map(|q| format!("?{q}")).unwrap_or_default();
        format!("{}://{}{port}{}{query}", self.scheme, self.host.name, self.path)
    }
}

/// Why a URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not an absolute http(s) URL")]
    NotAbsolute,
    #[error("the host is not a valid host[:port]")]
    Host,
    #[error("the request target is not an absolute path")]
    Target,
    #[error("the path cannot be normalised safely")]
    Path,
}

/// `url` without its fragment, which a browser keeps to itself: what it
/// requests when it follows `url` (a login's return address may carry one).
pub fn without_fragment(url: &str) -> &str {
    url.split_once('#').map_or(url, |(request, _)| request)
}

/// Splits and normalises an absolute `http(s)://authority/target` URL
/// without any of the lenience of URL parsers (which drop tabs, read `\` as
/// `/` and skip an empty authority): each part is checked, and anything
/// else is refused, never guessed at.
pub fn url(u: &str) -> Result<Url<'_>, UrlError> {
    let (scheme, rest) = u.split_once("://").ok_or(UrlError::NotAbsolute)?;
    let scheme = if scheme.eq_ignore_ascii_case("http") {
        "http"
    } else if scheme.eq_ignore_ascii_case("https") {
        "https"
    } else {
        return Err(UrlError::NotAbsolute);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    let target = if target.is_empty() { "/" } else { target };
    from_parts(scheme, authority, target)
}

/// A URL from its parts, each checked: the authority must be a valid
/// `host[:port]` and the target an origin-form path (and query) that
/// normalises; a fragment is never part of a request.
pub fn from_parts<'a>(scheme: &'static str, authority: &'a str, target: &'a str) -> Result<Url<'a>, UrlError> {
    let host = host(authority).map_err(|_| UrlError::Host)?;
    if !target.starts_with('/') || target.contains('#') {
        return Err(UrlError::Target);
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = path(raw_path).map_err(|_| UrlError::Path)?;
    Ok(Url { scheme, host, path, query })
}

/// The URL Standard's test for a host a URL parser reads as an IPv4
/// address: its last label is decimal digits, or `0x` and hex digits.
fn ends_in_a_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or("");
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
        || hex.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        path(p).unwrap_or_else(|e| panic!("{p}: {e}")).into_owned()
    }

    #[test]
    fn dot_segments_escapes_and_repeated_slashes_resolve_to_the_path_upstreams_see() {
        assert_eq!(n("/public/../admin/x"), "/admin/x");
        assert_eq!(n("/public/%2e%2e/admin/x"), "/admin/x");
        assert_eq!(n("/public/%2E%2E/admin/x"), "/admin/x");
        assert_eq!(n("/public/./../admin/x"), "/admin/x");
        assert_eq!(n("/%61dmin/x"), "/admin/x");
        assert_eq!(n("//admin/x"), "/admin/x");
        assert_eq!(n("/./admin/x"), "/admin/x");
        assert_eq!(n("/admin/%2e/x"), "/admin/x");
        assert_eq!(n("/a/b/../../../../c"), "/c");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/b/."), "/a/b/");
        assert_eq!(n("/a//"), "/a/");
        assert_eq!(n(""), "/");
        assert_eq!(n("/.."), "/");
    }

    #[test]
    fn other_escapes_stay_escaped_with_upper_case_hex() {
        assert_eq!(n("/caf%c3%a9/x%20y"), "/caf%C3%A9/x%20y");
        assert_eq!(n("/a%7eb"), "/a~b");
    }

    #[test]
    fn a_path_already_normal_is_borrowed_not_copied() {
        for p in ["/", "/admin/x", "/a/b/", "/a.b/c..d/.e", "/x;y=1/z"] {
            assert!(matches!(path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn what_would_change_meaning_is_refused() {
        assert_eq!(path("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(path("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(path("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(path("/a%00b"), Err(PathError::EncodedSeparator));
        assert_eq!(path("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(path("/a%4"), Err(PathError::BadEscape));
        assert_eq!(path("/public/..\\admin"), Err(PathError::Backslash));
        assert_eq!(path("/public/..;/admin/x"), Err(PathError::DotParameters));
        assert_eq!(path("/public/%2e%2e;/admin/x"), Err(PathError::DotParameters));
        assert_eq!(path("admin"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for p in ["/public/../admin/x", "/%61dmin//x/", "/caf%c3%a9", "/a/./b/../c/."] {
            let once = n(p);
            assert_eq!(n(&once), once, "{p}");
        }
    }

    #[test]
    fn parameters_are_dropped_from_every_segment_as_tomcat_reads_them() {
        let bare = |p: &str| without_parameters(&n(p));
        assert_eq!(bare("/admin;x/secret").as_deref(), Some("/admin/secret"));
        assert_eq!(bare("/;/admin/secret").as_deref(), Some("/admin/secret"));
        assert_eq!(bare("/admin;jsessionid=1/x").as_deref(), Some("/admin/x"));
        assert_eq!(bare("/internal;a/x;b=c").as_deref(), Some("/internal/x"));
        assert_eq!(bare("/a;b/").as_deref(), Some("/a/"));
        assert_eq!(n("/x;/../admin/y"), "/admin/y", "dot segments resolve the same either way");
        assert_eq!(bare("/a%3Bb/c"), None, "an escaped ';' is part of the name");
        assert_eq!(bare("/admin/secret"), None);
    }

    #[test]
    fn a_url_is_split_strictly_and_normalised() {
        let u = url("HTTPS://App.Example.COM.:8443/%61dmin/../x?q=1").unwrap();
        assert_eq!((u.scheme, u.host.name.as_ref(), u.host.port), ("https", "app.example.com", Some(8443)));
        assert_eq!((u.path.as_ref(), u.query), ("/x", Some("q=1")));
        assert_eq!(u.to_text(), "https://app.example.com:8443/x?q=1");
        assert_eq!(url("http://a.test").unwrap().path, "/");
        assert_eq!(url("ftp://a.test/"), Err(UrlError::NotAbsolute));
        assert_eq!(url("//a.test/"), Err(UrlError::NotAbsolute));
        assert_eq!(url("http:///x"), Err(UrlError::Host));
        assert_eq!(url("http://a.test\\@b.test/"), Err(UrlError::Host));
        assert_eq!(url("http://a.test/#x"), Err(UrlError::Target));
        assert_eq!(url("http://a.test/a%2fb"), Err(UrlError::Path));
    }

    #[test]
    fn hosts_lose_case_trailing_dot_and_port() {
        let h = host("Admin.Test.:8443").unwrap();
        assert_eq!((h.name.as_ref(), h.port), ("admin.test", Some(8443)));
        assert_eq!(host("admin.test.").unwrap().name, "admin.test");
        assert_eq!(host("127.0.0.1:80").unwrap(), Host { name: Cow::Borrowed("127.0.0.1"), port: Some(80) });
        let v6 = host("[2001:DB8::1]:443").unwrap();
        assert_eq!((v6.name.as_ref(), v6.port), ("[2001:db8::1]", Some(443)));
        assert_eq!(host("[::1]").unwrap().port, None);
    }

    #[test]
    fn a_port_is_one_to_five_decimal_digits_and_no_other_spelling() {
        // u16's parser would read each of these as a port (`+80` and
        // `000080` as 80); a browser would not send them, so neither does a
        // proxy that forwards what the browser sent.
        for bad in
            ["a.test:+80", "a.test:000080", "a.test:-80", "a.test: 80", "a.test:80 ", "a.test:0x50", "a.test:65536"]
        {
            assert_eq!(host(bad), Err(HostError), "{bad:?} accepted");
        }
        for bad in ["[::1]:+80", "[::1]:000080", "[::1]80", "[::1]:"] {
            assert_eq!(host(bad), Err(HostError), "{bad:?} accepted");
        }
        assert_eq!(host("a.test:1").unwrap().port, Some(1));
        assert_eq!(host("a.test:65535").unwrap().port, Some(65535), "five digits is the most");
        assert_eq!(host("[::1]:65535").unwrap().port, Some(65535));
    }

    #[test]
    fn an_address_has_the_one_spelling_a_browser_sends() {
        // The property fuzz/fuzz_targets/normalize.rs checks: these were
        // names to the rules but another host (or none) to a URL parser.
        for numeric in
            ["0x7f.1", "127.1", "1.2.3", "127.000.000.001", "010.0.0.1", "1.2.3.4.5", "a.0x1f", "app.42", "0x"]
        {
            assert_eq!(host(numeric), Err(HostError), "{numeric:?} accepted");
        }
        for name in ["app.1a", "1a.example", "v6.0xg", "127.0.0.1"] {
            assert!(host(name).is_ok(), "{name:?} refused");
        }
        let v6 = |raw: &'static str| host(raw).map(|h| h.name.into_owned());
        assert_eq!(v6("[0:0:0:0:0:0:0:1]"), Ok("[::1]".to_string()));
        assert_eq!(v6("[::FFFF:1.2.3.4]:80"), Ok("[::ffff:102:304]".to_string()));
        assert_eq!(v6("[2001:DB8:0::1]"), Ok("[2001:db8::1]".to_string()));
        assert!(matches!(host("[::1]").map(|h| h.name), Ok(Cow::Borrowed("[::1]"))));
    }

    #[test]
    fn a_host_that_is_not_host_and_port_is_refused() {
        for bad in [
            "127.0.0.1:8080#",
            "127.0.0.1:8080?",
            "127.0.0.1:8080\\",
            "a.test#x",
            "",
            ":80",
            "a.test:",
            "a.test:99999",
            "a.test:8o",
            "user@a.test",
            "a test",
            "a/b",
            "[::1",
            "[nope]:1",
            "a..test",
            "admin",
        ] {
            if bad == "admin" {
                assert!(host(bad).is_ok(), "a single label is a valid name");
                continue;
            }
            assert!(host(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_name_keeps_to_dns_lengths() {
        let label = |n: usize| "a".repeat(n);
        assert!(host(&format!("{}.test", label(63))).is_ok());
        assert_eq!(host(&format!("{}.test", label(64))), Err(HostError), "a label over 63");
        let long = [label(63), label(63), label(63), label(61)].join(".");
        assert_eq!(long.len(), 253);
        assert!(host(&long).is_ok());
        assert!(host(&format!("{long}.")).is_ok(), "the trailing dot is not counted");
        assert_eq!(host(&format!("{long}.a")), Err(HostError), "a name over 253");
        for bad in [".a.test", "a.test..", "a.-_é.test"] {
            assert_eq!(host(bad), Err(HostError), "{bad:?} accepted");
        }
        assert!(matches!(host("a-b_c.test").map(|h| h.name), Ok(Cow::Borrowed("a-b_c.test"))));
    }

    #[test]
    fn upper_case_letters_count_toward_a_label_like_any_other() {
        assert_eq!(host("A.B.Test").unwrap().name, "a.b.test", "one-letter labels in upper case");
        assert!(host(&format!("{}.test", "A".repeat(63))).is_ok());
        assert_eq!(host(&format!("{}.test", "A".repeat(64))), Err(HostError), "a label over 63");
    }

    #[test]
    fn a_fragment_is_what_a_browser_keeps_to_itself() {
        assert_eq!(without_fragment("https://a.test/x?q=1#top"), "https://a.test/x?q=1");
        assert_eq!(without_fragment("https://a.test/x#a#b"), "https://a.test/x", "from the first '#'");
        assert_eq!(without_fragment("https://a.test/x?q=1"), "https://a.test/x?q=1");
    }
}
