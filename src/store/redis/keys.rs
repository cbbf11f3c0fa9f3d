//! Every Redis key the store uses, in one place (documented in docs/store.md).
//!
//! Per-user keys carry the hash tag `{u:<user>}` so that the keys one step
//! touches for one user live in one Cluster slot. A session's hash carries its
//! own id as tag, `{s:<id>}`, so sessions spread over the whole cluster: every
//! atomic session step (load-and-touch, end) touches that one key. The user's
//! index of session ids is a per-user key, kept in step by separate commands
//! whose order makes a stale index entry harmless (docs/store.md).

use crate::store::types::{CodePurpose, RateBucket};

/// Builds namespaced keys.
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_owned() }
    }

    /// A session's hash; `id` is a session id (base64url, no braces).
    pub(super) fn session(&self, id: &str) -> String {
        format!("{}{{s:{id}}}:sess", self.prefix)
    }

    /// The user's session ids (a sorted set scored by when each was added).
    pub(super) fn user_sessions(&self, user: &str) -> String {
        self.user(user, "sessions")
    }

    /// The pub/sub channel on which ended sessions' ids are announced.
    pub(super) fn revoked_channel(&self) -> String {
        format!("{}revoked", self.prefix)
    }

    /// An access token's hash; `id` is a token id (base64url, no braces).
    pub(super) fn token(&self, id: &str) -> String {
        format!("{}{{t:{}}}:token", self.prefix, component(id))
    }

    /// The user's access-token ids (a sorted set scored by their expiry).
    pub(super) fn user_tokens(&self, user: &str) -> String {
        self.user(user, "tokens")
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

    /// The user's authenticator-app hash: `secret` and `pending` (sealed),
    /// `last_step`.
    pub(super) fn totp(&self, user: &str) -> String {
        self.user(user, "totp")
    }

    /// The user's passkeys (a JSON string).
    pub(super) fn passkeys(&self, user: &str) -> String {
        self.user(user, "passkeys")
    }

    /// A WebAuthn ceremony's state, by its key (a hashed session or pending-login id).
    pub(super) fn ceremony(&self, key: &str) -> String {
        format!("{}ceremony:{key}", self.prefix)
    }

    pub(super) fn known_ips(&self, user: &str) -> String {
        self.user(user, "ips")
    }

    /// The user's audit trail (a stream). (`{u:<user>}:audit`, a list, held
    /// it before the trail became searchable; it is no longer read.)
    pub(super) fn user_audit(&self, user: &str) -> String {
        self.user(user, "trail")
    }

    /// The global audit trail (a stream, ids by Redis time).
    pub(super) fn global_audit(&self) -> String {
        format!("{}trail", self.prefix)
    }

    /// Addresses banned for their failures (a sorted set scored by when the
    /// ban ends at the latest, unix seconds).
    pub(super) fn ip_bans(&self) -> String {
        format!("{}bans", self.prefix)
    }

    /// A sliding window. An account's failures live under the user's hash
    /// tag, beside its lock, which one step (`attempt_admit.lua`) reads and
    /// sets together.
    pub(super) fn rate(&self, bucket: RateBucket, key: &str) -> String {
        match bucket {
            RateBucket::AccountFailures => self.user(key, "failures"),
            _ => format!("{}rate:{}:{}", self.prefix, bucket.as_str(), component(key)),
        }
    }

    /// The cap of one pending login's (or one setup's) second-factor
    /// answers, `key`, under the user's hash tag.
    pub(super) fn attempt_cap(&self, user: &str, key: &str) -> String {
        self.user(user, &format!("cap:{}", component(key)))
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
        assert_eq!(k.rate(RateBucket::AccountFailures, "alice"), "portcullis:{u:alice}:failures");
        assert_eq!(k.attempt_cap("alice", "a/b"), "portcullis:{u:alice}:cap:a%2Fb");
    }

    #[test]
    fn each_session_has_its_own_tag_and_the_index_is_the_users() {
        let k = Keys::new("portcullis:");
        assert_eq!(k.session("AbC-_9"), "portcullis:{s:AbC-_9}:sess");
        assert_eq!(k.user_sessions("alice"), "portcullis:{u:alice}:sessions");
        assert_eq!(k.revoked_channel(), "portcullis:revoked");
    }

    #[test]
    fn names_cannot_break_out_of_their_tag() {
        let k = Keys::new("p:");
        assert_eq!(k.lock("a}:x{b"), "p:{u:a%7D%3Ax%7Bb}:lock");
        assert_eq!(k.rate(RateBucket::Login, "::1"), "p:rate:login:%3A%3A1");
    }
}
