//! Every Redis key the store uses, in one place (documented in docs/store.md).
//!
//! Per-user keys carry the hash tag `{u:<user>}` so that the keys a script
//! touches for one user live in one Cluster slot. All session keys share the
//! tag `{s}`: a session is found by its id alone (the cookie does not name the
//! user), and rotation, revocation and listing must touch a session and its
//! user's index atomically.

use crate::store::{CodePurpose, RateBucket};

/// Builds namespaced keys.
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_owned() }
    }

    /// `{prefix}{s}:sess:` — prefix of session hashes (scripts append ids).
    pub(super) fn session_prefix(&self) -> String {
        format!("{}{{s}}:sess:", self.prefix)
    }

    pub(super) fn session(&self, id: &str) -> String {
        format!("{}{{s}}:sess:{id}", self.prefix)
    }

    pub(super) fn user_sessions(&self, user: &str) -> String {
        format!("{}{{s}}:user:{}", self.prefix, component(user))
    }

    pub(super) fn pending(&self, id: &str) -> String {
        format!("{}pending:{id}", self.prefix)
    }

    fn user(&self, user: &str, what: &str) -> String {
        format!("{}{{u:{}}}:{what}", self.prefix, component(user))
    }

    pub(super) fn code(&self, user: &str, purpose: CodePurpose) -> String {
        self.user(user, &format!("code:{}", purpose.as_str()))
    }

    pub(super) fn cooldown(&self, user: &str, purpose: CodePurpose) -> String {
        self.user(user, &format!("cooldown:{}", purpose.as_str()))
    }

    pub(super) fn lock(&self, user: &str) -> String {
        self.user(user, "lock")
    }

    pub(super) fn state(&self, user: &str) -> String {
        self.user(user, "state")
    }

    pub(super) fn backup_codes(&self, user: &str) -> String {
        self.user(user, "backup")
    }

    pub(super) fn known_ips(&self, user: &str) -> String {
        self.user(user, "ips")
    }

    pub(super) fn user_audit(&self, user: &str) -> String {
        self.user(user, "audit")
    }

    pub(super) fn global_audit(&self) -> String {
        format!("{}audit", self.prefix)
    }

    pub(super) fn rate(&self, bucket: RateBucket, key: &str) -> String {
        format!("{}rate:{}:{}", self.prefix, bucket.as_str(), component(key))
    }
}

/// Percent-encodes everything but `[A-Za-z0-9._@+-]`, so a user name cannot
/// open or close a hash tag or pose as another key's suffix.
fn component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'+' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_share_a_hash_tag() {
        let k = Keys::new("portcullis:");
        assert_eq!(k.code("alice", CodePurpose::Login), "portcullis:{u:alice}:code:login");
        assert_eq!(k.lock("alice"), "portcullis:{u:alice}:lock");
    }

    #[test]
    fn names_cannot_break_out_of_their_tag() {
        let k = Keys::new("p:");
        assert_eq!(k.lock("a}:x{b"), "p:{u:a%7D%3Ax%7Bb}:lock");
        assert_eq!(k.rate(RateBucket::Login, "::1"), "p:rate:login:%3A%3A1");
    }
}
