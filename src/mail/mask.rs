//! Masking of e-mail addresses shown to someone who has only typed a password
//! ("Verification code sent to ali***@example.com"): enough for the owner to
//! recognise the address, too little for an attacker to learn it.

/// "alice@example.com" → "ali***@example.com". Local parts of three characters or
/// fewer keep only their first character, so a short address is not shown whole.
pub fn mask_email(e: &str) -> String {
    let (local, domain) = match e.rsplit_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (e, None),
    };
    let keep = if local.chars().count() > 3 { 3 } else { 1 };
    let mut masked: String = local.chars().take(keep).collect();
    masked.push_str("***");
    if let Some(domain) = domain {
        masked.push('@');
        masked.push_str(domain);
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::mask_email;

    #[test]
    fn long_local_part_keeps_three_characters() {
        assert_eq!(mask_email("alice@example.com"), "ali***@example.com");
        assert_eq!(mask_email("abcd@x.org"), "abc***@x.org");
    }

    #[test]
    fn short_local_part_keeps_only_the_first_character() {
        assert_eq!(mask_email("bob@example.com"), "b***@example.com");
        assert_eq!(mask_email("al@example.com"), "a***@example.com");
        assert_eq!(mask_email("a@example.com"), "a***@example.com");
        assert_eq!(mask_email("@example.com"), "***@example.com");
    }

    #[test]
    fn non_ascii_is_cut_on_character_boundaries() {
        assert_eq!(mask_email("émilie@exemple.fr"), "émi***@exemple.fr");
        assert_eq!(mask_email("日本語テキスト@example.jp"), "日本語***@example.jp");
    }

    #[test]
    fn the_last_at_sign_separates_the_domain() {
        assert_eq!(mask_email("\"a@b\"@example.com"), "\"a@***@example.com");
    }

    #[test]
    fn without_an_at_sign_the_whole_string_is_masked() {
        assert_eq!(mask_email("alice"), "ali***");
        assert_eq!(mask_email(""), "***");
    }
}
