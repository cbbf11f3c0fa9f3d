//! Helpers shared by the fuzz targets: reading the line-oriented inputs the
//! committed seeds are written in, and spelling a path differently without
//! changing its meaning.

/// Splits an input into lines (`\n`, a trailing `\r` dropped), as bytes.
pub fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect()
}

/// A line as text, if it is UTF-8.
pub fn text(line: &[u8]) -> Option<&str> {
    std::str::from_utf8(line).ok()
}

/// `Name: value` lines, the value as raw bytes (leading spaces dropped).
pub fn header_lines<'a>(lines: &[&'a [u8]]) -> Vec<(&'a str, &'a [u8])> {
    lines
        .iter()
        .filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            let name = text(&l[..colon])?;
            let mut value = &l[colon + 1..];
            while let [b' ', rest @ ..] = value {
                value = rest;
            }
            Some((name, value))
        })
        .collect()
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Other spellings of the absolute path `p` that mean the same path once
/// normalised: a `.` segment, an `x/..` detour and a doubled slash at each
/// of its first slashes, each of its first unreserved characters escaped,
/// and its escapes in lower-case hex. `p` must have well-formed escapes
/// (it normalised).
pub fn respellings(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in p.match_indices('/').take(6) {
        let (head, tail) = p.split_at(at);
        out.push(format!("{head}/.{tail}"));
        out.push(format!("{head}/zz/..{tail}"));
        out.push(format!("{head}/{tail}"));
    }
    let b = p.as_bytes();
    let mut i = 0;
    let mut escaped = 0;
    while i < b.len() && escaped < 6 {
        if b[i] == b'%' {
            i += 3;
            continue;
        }
        if unreserved(b[i]) {
            out.push(format!("{}%{:02X}{}", &p[..i], b[i], &p[i + 1..]));
            out.push(format!("{}%{:02x}{}", &p[..i], b[i], &p[i + 1..]));
            escaped += 1;
        }
        i += 1;
    }
    if p.contains('%') {
        let mut lower = String::with_capacity(p.len());
        let mut rest = p;
        while let Some(i) = rest.find('%') {
            lower.push_str(&rest[..i]);
            lower.push_str(&rest[i..i + 3].to_ascii_lowercase());
            rest = &rest[i + 3..];
        }
        lower.push_str(rest);
        out.push(lower);
    }
    out
}
