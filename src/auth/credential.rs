//! The credential a session was made with. A session keeps a fingerprint of
//! its user's password hash, e-mail address and groups; when the users file
//! changes any of them (a reset password, a moved mailbox, a group taken
//! away), every session from before ends on its next use, on every replica,
//! whichever one reloaded the file first.
//!
//! The fingerprint is three keyed tags (HMAC-SHA256 with `auth.secret`,
//! truncated to 64 bits), one per part, so the audit trail can say which part
//! changed; keyed, so a store dump does not let anyone confirm a guessed
//! address or group. A session record from before fingerprints existed has
//! none, and ends: it cannot show that its credential is still the user's.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;

use crate::auth::users::{CREDENTIAL_PARTS as PARTS, User};
const TAG: usize = 8;

/// Computes fingerprints; keyed once, cheap to share.
pub struct Fingerprints {
    mac: crate::keys::Keyed,
}

/// How a session's credential differs from its user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// These parts changed ("password", "e-mail", "groups").
    Parts(Vec<&'static str>),
    /// The session has no fingerprint (made before they existed).
    Unknown,
}

impl Changed {
    /// For the audit trail: "password changed", "e-mail, groups changed".
    pub fn reason(&self) -> String {
        match self {
            Changed::Parts(parts) => format!("{} changed", parts.join(", ")),
            Changed::Unknown => "session made before credential checks".to_owned(),
        }
    }
}

impl Fingerprints {
    pub fn new(secret: &[u8]) -> Fingerprints {
        Fingerprints { mac: crate::keys::keyed(secret) }
    }

    /// One part's tag.
    fn tag<'a>(&self, part: &str, values: impl Iterator<Item = &'a str>) -> [u8; TAG] {
        // Cloning the keyed state skips hashing the key again.
        let mut mac = self.mac.clone();
        mac.update(b"credential\0");
        mac.update(part.as_bytes());
        for v in values {
            mac.update(&(v.len() as u64).to_be_bytes());
            mac.update(v.as_bytes());
        }
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&mac.finalize().into_bytes()[..TAG]);
        tag
    }

    fn tags(&self, user: &User) -> [u8; 3 * TAG] {
        let groups = if user.groups.windows(2).all(|w| w[0] < w[1]) {
            // Usually in order already: no sorting, no allocation.
            self.tag(PARTS[2], user.groups.iter().map(String::as_str))
        } else {
            self.tag(PARTS[2], user.sorted_groups().into_iter())
        };
        let mut out = [0u8; 3 * TAG];
        out[..TAG].copy_from_slice(&self.tag(PARTS[0], std::iter::once(user.password_hash.as_str())));
        out[TAG..2 * TAG].copy_from_slice(&self.tag(PARTS[1], std::iter::once(user.email.as_str())));
        out[2 * TAG..].copy_from_slice(&groups);
        out
    }

    /// The fingerprint a new session of `user` keeps. Computed once per user
    /// (a user belongs to one gateway, keyed by its one secret), since every
    /// authenticated request compares against it.
    pub fn of(&self, user: &User) -> String {
        self.current(user).to_owned()
    }

    fn current<'u>(&self, user: &'u User) -> &'u str {
        user.fingerprint.get_or_init(|| URL_SAFE_NO_PAD.encode(self.tags(user)))
    }

    /// None when `stored` is `user`'s current fingerprint; else what changed.
    /// Checked on every authenticated request: a string comparison, no hashing
    /// and no allocation unless it differs.
    pub fn changed(&self, user: &User, stored: &str) -> Option<Changed> {
        if stored == self.current(user) {
            return None;
        }
        let tags = self.tags(user);
        let Ok(old) = URL_SAFE_NO_PAD.decode(stored) else { return Some(Changed::Unknown) };
        if old.len() != tags.len() {
            return Some(Changed::Unknown);
        }
        let parts = PARTS
            .iter()
            .enumerate()
            .filter(|(i, _)| old[i * TAG..(i + 1) * TAG] != tags[i * TAG..(i + 1) * TAG])
            .map(|(_, p)| *p)
            .collect();
        Some(Changed::Parts(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J8I4fhkHh1u7yDw4x2JRq2x3v3Kwm3bD8d1p4C4mYfI";

    fn user(hash: &str, email: &str, groups: &[&str]) -> std::sync::Arc<User> {
        let text = format!(
            "[users.alice]\nemail = \"{email}\"\npassword = \"{hash}\"\ngroups = {groups:?}\n",
            groups = groups.iter().map(|g| g.to_string()).collect::<Vec<_>>()
        );
        let dir = crate::auth::users::parse(std::path::Path::new("u.toml"), &text).unwrap();
        dir.get("alice").unwrap().clone()
    }

    #[test]
    fn a_fingerprint_matches_until_a_part_of_the_credential_changes() {
        let f = Fingerprints::new(b"secret");
        let alice = user(HASH, "alice@example.com", &["a", "b"]);
        let stored = f.of(&alice);
        assert_eq!(stored.len(), 32);
        assert_eq!(f.changed(&alice, &stored), None);
        assert_eq!(f.changed(&user(HASH, "alice@example.com", &["b", "a", "a"]), &stored), None, "order");
        let other_hash = HASH.replace("J8I4", "K8I4");
        let reset = user(&other_hash, "alice@example.com", &["a", "b"]);
        assert_eq!(f.changed(&reset, &stored), Some(Changed::Parts(vec!["password"])));
        let moved = user(HASH, "alice@example.org", &["a"]);
        assert_eq!(f.changed(&moved, &stored), Some(Changed::Parts(vec!["e-mail", "groups"])));
        assert_eq!(alice.credential_changes(&moved), ["e-mail", "groups"]);
        assert_eq!(Changed::Parts(vec!["e-mail", "groups"]).reason(), "e-mail, groups changed");
    }

    #[test]
    fn a_record_without_a_fingerprint_or_under_another_key_is_not_trusted() {
        let f = Fingerprints::new(b"secret");
        let alice = user(HASH, "alice@example.com", &[]);
        assert_eq!(f.changed(&alice, ""), Some(Changed::Unknown), "a record from before");
        assert_eq!(f.changed(&alice, "not base64!"), Some(Changed::Unknown));
        // (A user is loaded by one gateway, with one key: another gateway has its own copy.)
        let other_key = Fingerprints::new(b"another secret").of(&user(HASH, "alice@example.com", &[]));
        assert!(matches!(f.changed(&alice, &other_key), Some(Changed::Parts(p)) if p.len() == 3));
    }
}
