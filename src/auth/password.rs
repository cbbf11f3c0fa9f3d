//! Password checks with argon2id. Hashing costs ~20 ms of one core, so it runs on
//! the blocking pool behind a semaphore: a login flood queues here instead of
//! starving the proxy. An unknown user is checked against a dummy hash, so the
//! answer takes as long as for a real user with a wrong password.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password check was cancelled")]
    Cancelled,
}

/// Hashes a password as argon2id with the OWASP parameters (m=19456 KiB, t=2, p=1).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Verifies against a PHC string; a malformed hash simply fails.
fn verify_blocking(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Runs password checks off the async runtime with bounded concurrency.
pub struct PasswordChecker {
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl PasswordChecker {
    /// `concurrency` checks at once (about one per core is all the CPU there is).
    pub fn new(concurrency: usize) -> Result<PasswordChecker, PasswordError> {
        let mut random = [0u8; 24];
        rand::fill(&mut random);
        let dummy = hash_password(&base64::Engine::encode(&base64::engine::general_purpose::STANDARD, random))?;
        Ok(PasswordChecker { permits: Arc::new(Semaphore::new(concurrency.max(1))), dummy_hash: dummy.into() })
    }

    /// True when `password` matches `hash`. With `hash` None (unknown user) the
    /// dummy hash is checked and the answer is false, at the same cost.
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> Result<bool, PasswordError> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| PasswordError::Cancelled)?;
        let known = hash.is_some();
        let hash: Arc<str> = match hash {
            Some(h) => h.into(),
            None => self.dummy_hash.clone(),
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_blocking(&hash, &password)
        })
        .await
        .map_err(|_| PasswordError::Cancelled)?;
        Ok(known && ok)
    }

    /// Hashes on the blocking pool (for changing passwords at run time).
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| PasswordError::Cancelled)?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_password(&password)
        })
        .await
        .map_err(|_| PasswordError::Cancelled)?
    }
}

/// The lowest zxcvbn score (0-4) a new password may have: 3 is "safely
/// unguessable" against an offline attack on a slow hash, which is what a
/// stolen users file allows.
pub const MIN_STRENGTH: u8 = 3;

/// How a new password fares: zxcvbn's score and its advice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strength {
    pub score: u8,
    /// The warning and suggestions, in one sentence or more (may be empty).
    pub advice: String,
}

impl Strength {
    pub fn is_weak(&self) -> bool {
        self.score < MIN_STRENGTH
    }
}

/// Estimates a new password's strength with zxcvbn; `related` (the user's
/// name and e-mail) count as guessable words.
pub fn strength(password: &str, related: &[&str]) -> Strength {
    let estimate = zxcvbn::zxcvbn(password, related);
    let mut advice = Vec::new();
    if let Some(f) = estimate.feedback() {
        if let Some(w) = f.warning() {
            advice.push(w.to_string());
        }
        advice.extend(f.suggestions().iter().map(ToString::to_string));
    }
    Strength { score: u8::from(estimate.score()), advice: advice.join(" ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn right_password_passes_and_unknown_user_fails() {
        let checker = PasswordChecker::new(2).unwrap();
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(checker.verify(Some(&hash), "correct horse").await.unwrap());
        assert!(!checker.verify(Some(&hash), "wrong").await.unwrap());
        assert!(!checker.verify(None, "correct horse").await.unwrap());
    }

    #[test]
    fn weak_passwords_are_told_apart_from_strong_ones() {
        for weak in ["a", "password1", "alice2026", "Summer2026!", "qwertyuiop"] {
            assert!(strength(weak, &["alice", "alice@example.com"]).is_weak(), "{weak}");
        }
        let s = strength("a", &[]);
        assert!(!s.advice.is_empty(), "a weak password comes with advice");
        for strong in ["correct horse battery staple", "mV9#tq2!Lp0zR", "a fine password for carol 1"] {
            assert!(!strength(strong, &["carol"]).is_weak(), "{strong}: {:?}", strength(strong, &["carol"]));
        }
    }
}
