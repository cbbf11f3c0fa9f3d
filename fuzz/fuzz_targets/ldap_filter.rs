//! The LDAP filter escaping (`config::ldap_filter`): what a person
//! types at the login form becomes part of the search the directory runs.
//!
//! Input: line 1 what was typed, line 2 a DN (as `{dn}` in a group filter).
//!
//! Properties: the escaped text is printable ASCII without `*`, `(`, `)` or
//! NUL and every `\` starts a two-digit escape; put into `(uid={input})` it
//! parses (as the directory would, with ldap3's parser) as one equality test
//! whose value is exactly the typed bytes; put into the default user filter,
//! every assertion but the object class is an equality test of the typed
//! bytes (no wildcard, presence or extra clause appears, whatever was typed);
//! a DN fills a group filter the same way; a value is filled once (a typed
//! `{dn}` stays text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ldap3::asn1::{ASNTag, PL, StructureTag};
use portcullis::config::ldap_filter::{DN, INPUT, USERNAME, escape, fill};
use portcullis_fuzz::{lines, text};

/// Filter choices (RFC 4511): 0 and, 1 or, 2 not, 3 equality, 4 substrings,
/// 7 present, ...
const AND: u64 = 0;
const OR: u64 = 1;
const EQUALITY: u64 = 3;

/// The (attribute, value) of every equality test in `tag`; None if any other
/// kind of test (substrings, presence, ...) appears.
fn equalities(tag: &StructureTag, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Option<()> {
    match (tag.id, &tag.payload) {
        (AND | OR, PL::C(parts)) => parts.iter().try_for_each(|p| equalities(p, out)),
        (EQUALITY, PL::C(parts)) => match parts.as_slice() {
            [a, v] => match (&a.payload, &v.payload) {
                (PL::P(a), PL::P(v)) => {
                    out.push((a.clone(), v.clone()));
                    Some(())
                }
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn parsed(filter: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let tag = ldap3::parse_filter(filter).unwrap_or_else(|_| panic!("{filter:?} does not parse"));
    let mut out = Vec::new();
    equalities(&tag.into_structure(), &mut out).unwrap_or_else(|| panic!("{filter:?} holds more than equality tests"));
    out
}

fuzz_target!(|data: &[u8]| {
    let lines = lines(data);
    let Some(typed) = lines.first().and_then(|l| text(l)) else { return };
    let dn = lines.get(1).and_then(|l| text(l)).unwrap_or("uid=x,dc=example,dc=com");

    let escaped = escape(typed);
    let bytes = escaped.as_bytes();
    assert!(bytes.iter().all(|b| (b' '..=b'~').contains(b)), "{escaped:?} is not printable ASCII");
    assert!(!bytes.iter().any(|b| b"*()\0".contains(b)), "{escaped:?} keeps a special character");
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            assert!(bytes.len() >= i + 3 && bytes[i + 1..i + 3].iter().all(u8::is_ascii_hexdigit), "{escaped:?}");
            i += 3;
        } else {
            i += 1;
        }
    }

    let one = parsed(&fill("(uid={input})", &[(INPUT, typed)]));
    assert_eq!(one, [(b"uid".to_vec(), typed.as_bytes().to_vec())], "typed {typed:?}");

    let default = fill("(&(objectClass=person)(|(uid={input})(mail={input})))", &[(INPUT, typed)]);
    let tests = parsed(&default);
    assert_eq!(tests.len(), 3, "{default:?}");
    assert_eq!(tests[0], (b"objectClass".to_vec(), b"person".to_vec()));
    assert!(tests[1..].iter().all(|(_, v)| v == typed.as_bytes()), "{default:?}");

    let group = parsed(&fill("(&(member={dn})(memberUid={username}))", &[(DN, dn), (USERNAME, typed)]));
    assert_eq!(group, [(b"member".to_vec(), dn.as_bytes().to_vec()), (b"memberUid".to_vec(), typed.as_bytes().to_vec())]);
});
