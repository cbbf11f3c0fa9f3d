//! LDAP search filters built from the operator's templates (`ldap.user_filter`,
//! `ldap.group_filter`, `ldap.disabled_filter`: checked here when the config is
//! validated) and what a person typed (filled here by `auth::users::ldap`).
//! Every value is escaped (RFC 4515) before it meets a filter, so a name
//! like `*` or `)(uid=*` is a name and never filter syntax: it finds the
//! account with that literal name or nothing. Beyond the five characters the
//! RFC requires, every byte outside printable ASCII is escaped too (NUL,
//! controls, UTF-8), so what reaches the directory is plain ASCII whatever
//! was typed. `fuzz/fuzz_targets/ldap_filter.rs` checks the property.

/// What was typed at the login form (`ldap.user_filter`).
pub const INPUT: &str = "{input}";
/// The user's DN (`ldap.group_filter`).
pub const DN: &str = "{dn}";
/// The user's name (`ldap.group_filter`, e.g. `(memberUid={username})`).
pub const USERNAME: &str = "{username}";

const PLACEHOLDERS: [&str; 3] = [INPUT, DN, USERNAME];

/// `value` escaped for a filter's assertion value (RFC 4515 section 3).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for &b in value.as_bytes() {
        if b.is_ascii_graphic() && !b"*()\\".contains(&b) || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push('\\');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `template` with each placeholder named in `values` replaced by its
/// escaped value, in one pass: a value is never read again as a template
/// (a name containing `{dn}` stays that text). Placeholders not in `values`
/// are left as written.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    fill_with(template, |p| values.iter().find(|(k, _)| *k == p).map(|(_, v)| escape(v)))
}

/// The filter that lists every user `user_filter` could find: `{input}` as
/// the wildcard `*` (so `(uid={input})` becomes the presence test `(uid=*)`).
pub fn every_user(user_filter: &str) -> String {
    fill_with(user_filter, |p| (p == INPUT).then(|| "*".to_owned()))
}

fn fill_with(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match PLACEHOLDERS.iter().find(|p| rest.starts_with(**p)).and_then(|p| Some((p, value(p)?))) {
            Some((p, v)) => {
                out.push_str(&v);
                rest = &rest[p.len()..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether a template is a valid filter with every placeholder filled in,
/// and (for a user filter) as the list of every user.
pub fn check(template: &str) -> Result<(), String> {
    let sample = fill(template, &[(INPUT, "x"), (DN, "uid=x,dc=example"), (USERNAME, "x")]);
    if ldap3::parse_filter(&sample).is_err() {
        return Err(format!(
            "{template:?} is not an LDAP filter (RFC 4515), e.g. \"(&(objectClass=person)(uid={{input}}))\""
        ));
    }
    if template.contains(INPUT) && ldap3::parse_filter(every_user(template)).is_err() {
        return Err(format!("{template:?} with {INPUT} as * (the list of every user) is not an LDAP filter"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::{ASNTag, PL};

    /// The attribute and value of an equality filter, as the directory would read it.
    fn equality(filter: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let tag = ldap3::parse_filter(filter).ok()?.into_structure();
        match (tag.id, tag.payload) {
            (3, PL::C(parts)) => match parts.as_slice() {
                [a, v] => match (&a.payload, &v.payload) {
                    (PL::P(a), PL::P(v)) => Some((a.clone(), v.clone())),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        }
    }

    #[test]
    fn special_characters_are_escaped_as_rfc_4515_says() {
        assert_eq!(escape("alice"), "alice");
        assert_eq!(escape("*"), "\\2a");
        assert_eq!(escape(")(uid=*"), "\\29\\28uid=\\2a");
        assert_eq!(escape("a\\b"), "a\\5cb");
        assert_eq!(escape("nul\0"), "nul\\00");
        assert_eq!(escape("jürgen"), "j\\c3\\bcrgen");
        assert_eq!(escape("first last"), "first last");
    }

    #[test]
    fn an_injected_filter_stays_one_equality_test_of_the_literal_text() {
        for typed in ["*", ")(uid=*", "*)(|(uid=*", "alice)(objectClass=*", "\0", "jürgen", "a\\2a", "{dn}"] {
            let f = fill("(uid={input})", &[(INPUT, typed)]);
            assert_eq!(equality(&f), Some((b"uid".to_vec(), typed.as_bytes().to_vec())), "{typed:?} → {f}");
        }
    }

    #[test]
    fn placeholders_are_filled_once_and_unknown_braces_kept() {
        let f = fill("(&(member={dn})(cn={x}))", &[(DN, "uid={input},dc=x"), (INPUT, "no")]);
        assert_eq!(f, "(&(member=uid={input},dc=x)(cn={x}))");
        assert_eq!(
            every_user("(&(objectClass=person)(|(uid={input})(mail={input})))"),
            "(&(objectClass=person)(|(uid=*)(mail=*)))"
        );
    }

    #[test]
    fn templates_are_checked_as_filters() {
        assert!(check("(&(objectClass=person)(|(uid={input})(mail={input})))").is_ok());
        assert!(check("(member={dn})").is_ok());
        assert!(check("(uid={input}").is_err());
        assert!(check("uid={input})(").is_err());
    }
}
