//! Password checks with argon2id. Hashing costs ~20 ms of one core, so it runs on
//! the blocking pool behind a semaphore: a login flood queues here instead of
//! starving the proxy. An unknown user is checked against a dummy hash, so the
//! answer takes as long as for a real user with a wrong password.
//!
//! Each check needs argon2's working memory (19 MiB at the default cost). The
//! checker keeps one buffer per permit while checks keep coming, so a burst of
//! logins reuses at most `concurrency` buffers instead of allocating and
//! freeing 19 MiB a login, and lets them all go as soon as no check is running
//! or waiting: an idle gateway holds none, and resident memory after a burst
//! falls back to where it was (blocks this large are handed straight back to
//! the system by every allocator the binary is built with; bench/README.md,
//! "Footprint", has the figures).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password check was cancelled")]
    Cancelled,
}

/// argon2's working memory for one hash; grown to the largest cost it has
/// served and kept.
type Memory = Vec<Block>;

/// Hashes a password as argon2id with the OWASP parameters (m=19456 KiB, t=2, p=1).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    hash_with(&mut Memory::new(), password)
}

fn hash_with(memory: &mut Memory, password: &str) -> Result<String, PasswordError> {
    let failed = |e: &dyn std::fmt::Display| PasswordError::Hash(e.to_string());
    let params = Params::default();
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon2
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks(memory, &params))
        .map_err(|e| failed(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(hash.to_string())
}

/// Verifies against a PHC string (any argon2 variant, version and cost); a
/// malformed hash simply fails. The outputs are compared in constant time.
fn verify_with(memory: &mut Memory, hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else { return false };
    let Ok(version) = parsed.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks(memory, &params)).is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// The first `params.block_count()` blocks of `memory`, growing it if needed.
fn blocks<'a>(memory: &'a mut Memory, params: &Params) -> &'a mut [Block] {
    let count = params.block_count();
    if memory.len() < count {
        memory.resize(count, Block::default());
    }
    &mut memory[..count]
}

/// Runs password checks off the async runtime with bounded concurrency.
pub struct PasswordChecker {
    permits: Arc<Semaphore>,
    memory: Arc<Pool>,
    dummy_hash: Arc<str>,
}

/// argon2 buffers not in use, and how many checks are running or waiting: a
/// check takes a buffer (or makes one when none is left) and puts it back;
/// holding a permit bounds them to `concurrency`. The last check out empties
/// the pool.
#[derive(Default)]
struct Pool {
    free: Mutex<Vec<Memory>>,
    busy: AtomicUsize,
}

/// One check's claim on the pool, from before it waits for a permit until its
/// buffer is back: the last one dropped frees every buffer.
struct Busy(Arc<Pool>);

impl Busy {
    fn enter(pool: &Arc<Pool>) -> Busy {
        pool.busy.fetch_add(1, Ordering::AcqRel);
        Busy(pool.clone())
    }

    fn take(&self) -> Memory {
        self.0.free.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default()
    }

    fn give_back(&self, memory: Memory) {
        self.0.free.lock().unwrap_or_else(|e| e.into_inner()).push(memory);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut free = self.0.free.lock().unwrap_or_else(|e| e.into_inner());
            // Checked again under the lock: a check that came in meanwhile
            // keeps the buffers, and empties the pool when it leaves.
            if self.0.busy.load(Ordering::Acquire) == 0 {
                free.clear();
                free.shrink_to_fit();
            }
        }
    }
}

impl PasswordChecker {
    /// `concurrency` checks at once (about one per core is all the CPU there is).
    pub fn new(concurrency: usize) -> Result<PasswordChecker, PasswordError> {
        let mut random = [0u8; 24];
        rand::fill(&mut random);
        let dummy = hash_password(&base64::Engine::encode(&base64::engine::general_purpose::STANDARD, random))?;
        Ok(PasswordChecker {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            memory: Arc::default(),
            dummy_hash: dummy.into(),
        })
    }

    /// True when `password` matches `hash`. With `hash` None (unknown user) the
    /// dummy hash is checked and the answer is false, at the same cost.
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> Result<bool, PasswordError> {
        let known = hash.is_some();
        let hash: Arc<str> = match hash {
            Some(h) => h.into(),
            None => self.dummy_hash.clone(),
        };
        let password = password.to_owned();
        let ok = self.with_memory(move |memory| verify_with(memory, &hash, &password)).await?;
        Ok(known && ok)
    }

    /// Hashes on the blocking pool (for changing passwords at run time).
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.with_memory(move |memory| hash_with(memory, &password)).await?
    }

    /// Runs `work` on the blocking pool, holding a permit and a buffer.
    async fn with_memory<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let busy = Busy::enter(&self.memory);
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| PasswordError::Cancelled)?;
        // The buffers are freed on the blocking thread too (`busy` dropped
        // last), not on the runtime.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut memory = busy.take();
            let result = work(&mut memory);
            busy.give_back(memory);
            result
        })
        .await
        .map_err(|_| PasswordError::Cancelled)
    }

    /// How many argon2 buffers are kept, not in use; for tests.
    #[cfg(test)]
    fn buffers(&self) -> usize {
        self.memory.free.lock().unwrap().len()
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

    #[tokio::test]
    async fn hashes_made_elsewhere_are_checked_like_argon2_does() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let checker = PasswordChecker::new(1).unwrap();
        // Other variants, versions and costs than ours, as a users file may hold.
        let others = [
            Argon2::default(),
            Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::new(64, 3, 1, Some(24)).unwrap()),
            Argon2::new(Algorithm::Argon2d, Version::V0x10, Params::new(32, 1, 2, None).unwrap()),
        ];
        for argon2 in &others {
            let hash = argon2.hash_password(b"s3cret words").unwrap().to_string();
            assert!(checker.verify(Some(&hash), "s3cret words").await.unwrap(), "{hash}");
            assert!(!checker.verify(Some(&hash), "s3cret word").await.unwrap(), "{hash}");
        }
        // And ours are checked by argon2's own verifier.
        let ours = checker.hash("s3cret words").await.unwrap();
        assert!(Argon2::default().verify_password(b"s3cret words", ours.as_str()).is_ok());
        assert!(Argon2::default().verify_password(b"other", ours.as_str()).is_err());
        for malformed in ["", "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ", "$scrypt$ln=4,r=8,p=1$c29tZXNhbHQ$aGFzaA"] {
            assert!(!checker.verify(Some(malformed), "s3cret words").await.unwrap(), "{malformed}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_reuses_one_buffer_per_permit_and_the_last_check_frees_them() {
        let checker = Arc::new(PasswordChecker::new(2).unwrap());
        assert_eq!(checker.buffers(), 0, "start-up's dummy hash keeps no buffer");
        let hash = hash_password("correct horse").unwrap();
        // Eight checks queued behind two permits: while any is running or
        // waiting, a finished check's buffer stays for the next.
        let made = Arc::new(AtomicUsize::new(0));
        let checks: Vec<_> = (0..8)
            .map(|i| {
                let (checker, hash, made) = (checker.clone(), hash.clone(), made.clone());
                tokio::spawn(async move {
                    let password = if i % 2 == 0 { "correct horse" } else { "no" };
                    checker
                        .with_memory(move |memory| {
                            if memory.is_empty() {
                                made.fetch_add(1, Ordering::Relaxed);
                            }
                            verify_with(memory, &hash, password)
                        })
                        .await
                })
            })
            .collect();
        for (i, check) in checks.into_iter().enumerate() {
            assert_eq!(check.await.unwrap().unwrap(), i % 2 == 0);
        }
        assert_eq!(made.load(Ordering::Relaxed), 2, "eight checks at two at a time make two buffers");
        assert_eq!(checker.buffers(), 0, "once none is running or waiting, no buffer is kept");
        assert!(checker.hash("another password").await.is_ok());
        assert_eq!(checker.buffers(), 0);
    }

    #[tokio::test]
    async fn a_check_given_up_while_waiting_for_a_permit_leaves_nothing_held() {
        let checker = PasswordChecker::new(1).unwrap();
        let hash = hash_password("correct horse").unwrap();
        let all_permits = checker.permits.clone().acquire_owned().await.unwrap();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), checker.verify(Some(&hash), "x"));
        assert!(waiting.await.is_err(), "the check was still waiting for the permit");
        assert_eq!(checker.memory.busy.load(Ordering::Relaxed), 0, "the given-up check no longer counts");
        drop(all_permits);
        assert!(checker.verify(Some(&hash), "correct horse").await.unwrap());
        assert_eq!(checker.buffers(), 0);
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
