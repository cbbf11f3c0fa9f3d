//! Keys from `auth.secret`. One secret keys the code hashes, the lockout's
//! name keys, the session fingerprints and the CSRF tokens (each through
//! [`keyed`], with a label of its own in what it hashes), and gives three
//! purposes a key of their own ([`derive`]): sealing TOTP secrets, signing
//! access tokens, the admin endpoint's bearer token. A key derived rather
//! than reused means no two uses can be played against each other.
//!
//! The bytes are a contract: hashes kept in the store (codes, backup codes,
//! lockout names, token hashes) and sealed secrets must still verify after
//! an upgrade. The tests pin one value per purpose.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 keyed by `auth.secret`: the state a keyed hash starts from
/// (clone it to skip hashing the key again).
pub type Keyed = Hmac<Sha256>;

/// What a derived key is for; its label is what the secret is hashed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Sealing authenticator-app secrets before they reach the store.
    TotpSealing,
    /// Signing access tokens (ring's HMAC, keyed with this).
    AccessTokens,
    /// The admin endpoint's bearer token (`admin::token`, hex).
    AdminEndpoint,
}

impl Purpose {
    /// The label, as each key has been derived since it was introduced.
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::TotpSealing => b"portcullis totp secret sealing v1",
            Purpose::AccessTokens => b"portcullis access token v1",
            Purpose::AdminEndpoint => b"portcullis admin endpoint v1",
        }
    }
}

/// HMAC-SHA256 keyed by `secret`.
pub fn keyed(secret: &[u8]) -> Keyed {
    <Keyed as Mac>::new_from_slice(secret).unwrap_or_else(|_| {
        // HMAC takes keys of any length; this branch cannot be taken.
        <Keyed as Mac>::new_from_slice(b"portcullis").expect("fixed key")
    })
}

/// The key of its own `purpose` gets: HMAC-SHA256(secret, label).
pub fn derive(secret: &[u8], purpose: Purpose) -> [u8; 32] {
    let mut mac = keyed(secret);
    mac.update(purpose.label());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// Each purpose's key, as the code derived it before this module (and as
    /// Python's `hmac.new(secret, label, sha256)` computes it).
    #[test]
    fn each_purpose_derives_the_key_it_always_has() {
        for (purpose, want) in [
            (Purpose::TotpSealing, "5d263a12fc1b356cbd5ab330ab011f1d700d777d3a35fc75cd6b908c0ed3d839"),
            (Purpose::AccessTokens, "102410718a1b23d22a2a17aa0fdcf687c1a7ea88ac6d704b20eca2d199a22a55"),
            (Purpose::AdminEndpoint, "d0ef8dcdbdb21c3adbc85a703bb604f8c64c43d2a449f4628baaf67efa5faa7f"),
        ] {
            assert_eq!(hex::encode(derive(SECRET, purpose)), want, "{purpose:?}");
        }
        assert_eq!(crate::admin::token(SECRET), "d0ef8dcdbdb21c3adbc85a703bb604f8c64c43d2a449f4628baaf67efa5faa7f");
    }

    /// The keyed hashes the store keeps: a code's, and a typed name's
    /// lockout key.
    #[test]
    fn stored_keyed_hashes_stay_the_same() {
        assert_eq!(
            hex::encode(crate::auth::codes::code_hash(SECRET, "alice", "login", "123456")),
            "33e5844c276ea995f4753d8546ab2433824cdf4ffd1e58771934a627f07944e3"
        );
        assert_eq!(crate::auth::lockout::name_key(SECRET, "Alice@Example.com "), "~JRvP6XvEQaPXt9g2kuLykA");
    }
}
