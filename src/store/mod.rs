//! The Store: every piece of gateway state (sessions, pending logins, one-time
//! codes, rate windows, lockouts, durable per-user state, audit) behind domain
//! operations that are atomic in each backend. Handlers call these methods; they
//! never build keys. Two backends: `memory://` (embedded, single process) and
//! Redis (`redis://`, `rediss://`) for production and several replicas.
//!
//! API contract (skeleton; bodies are filled in by the store work, issue 3).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::StoreConfig;

/// Why a store operation failed. Every variant fails closed: the gateway answers 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store operation timed out")]
    Timeout,
    #[error("store holds unreadable data: {0}")]
    Corrupt(String),
    #[error("store is full")]
    Full,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How far a session has authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthLevel {
    OneFactor,
    TwoFactor,
}

/// A logged-in session as stored (under a hash of its id, never the id itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: String,
    pub level: AuthLevel,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; refreshed by `touch_session`.
    pub last_seen: u64,
    /// Sliding idle lifetime in seconds; each touch extends expiry by this much.
    pub idle_secs: u64,
    /// Unix seconds after which the session is dead however active.
    pub absolute_expiry: u64,
    pub remember_me: bool,
    pub ip: String,
    pub device: String,
}

/// A session as listed for its user: `id` is the public handle (the hash), usable
/// to revoke it, and useless as a cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub record: SessionRecord,
}

/// Password accepted, second factor not yet given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub user: String,
    pub remember_me: bool,
    /// Validated return address, if any.
    pub rd: Option<String>,
    /// Unix seconds.
    pub created: u64,
    pub ip: String,
    pub device: String,
}

/// What a one-time code is for; a new code voids the previous one of the same purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodePurpose {
    Login,
    EnableOtp,
}

impl CodePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CodePurpose::Login => "login",
            CodePurpose::EnableOtp => "enable_otp",
        }
    }
}

/// Result of checking a code; the attempt is counted in the same atomic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Ok,
    Wrong {
        remaining: u32,
    },
    /// The last allowed attempt failed (or attempts were already used up); the code is void.
    Exhausted,
    Expired,
    /// No code was issued (or it was voided).
    None,
}

/// Result of a rate-limit hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed { remaining: u32 },
    Limited { retry_after: Duration },
}

/// Durable per-user state that must survive restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    pub otp_enabled: bool,
    pub backup_codes_left: u32,
}

/// One audit entry: a login attempt or a security event (SPEC §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix seconds.
    pub time: u64,
    /// `login_attempt` or `security_event`.
    pub kind: String,
    /// For login attempts the result (success, invalid_credentials, ...); for
    /// security events the event type (otp_enabled, ...).
    pub event: String,
    /// The name as typed (login attempts) or the account.
    pub username: String,
    /// The resolved account, when known.
    pub user: Option<String>,
    pub ip: String,
    pub user_agent: String,
    pub details: String,
}

/// The gateway's state handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    _private: (),
}

#[allow(unused_variables)]
impl Store {
    /// Opens the backend named by `cfg.url`. Redis: builds the pool without
    /// requiring the server to be up (the gateway starts and reports not-ready).
    pub async fn open(cfg: &StoreConfig) -> StoreResult<Store> {
        todo!()
    }

    /// `memory` or `redis`, for logs and metrics.
    pub fn backend_name(&self) -> &'static str {
        todo!()
    }

    /// Round trip to the backend (readiness).
    pub async fn ping(&self) -> StoreResult<()> {
        todo!()
    }

    // --- sessions (token = the secret cookie value; stored under its hash) ---

    pub async fn create_session(&self, token: &str, rec: &SessionRecord) -> StoreResult<()> {
        todo!()
    }

    /// Load-and-touch: returns the session and slides its idle expiry, or None
    /// when absent or expired (idle or absolute).
    pub async fn touch_session(&self, token: &str) -> StoreResult<Option<SessionRecord>> {
        todo!()
    }

    /// Replaces `old` by `new` atomically (privilege change: no fixation).
    pub async fn rotate_session(&self, old: &str, new: &str, rec: &SessionRecord) -> StoreResult<()> {
        todo!()
    }

    /// Deletes a session by its token; returns its user if it existed.
    pub async fn delete_session(&self, token: &str) -> StoreResult<Option<String>> {
        todo!()
    }

    pub async fn list_sessions(&self, user: &str) -> StoreResult<Vec<SessionInfo>> {
        todo!()
    }

    /// The public id of a token (what `list_sessions` calls `id`).
    pub fn session_id(token: &str) -> String {
        todo!()
    }

    /// Revokes one session of `user` by its public id; false if not theirs/absent.
    pub async fn revoke_session(&self, user: &str, id: &str) -> StoreResult<bool> {
        todo!()
    }

    pub async fn revoke_user_sessions(&self, user: &str) -> StoreResult<usize> {
        todo!()
    }

    // --- pending logins (keyed by the hash of their own cookie token) ---

    pub async fn put_pending(&self, token: &str, p: &PendingLogin, ttl: Duration) -> StoreResult<()> {
        todo!()
    }

    pub async fn get_pending(&self, token: &str) -> StoreResult<Option<PendingLogin>> {
        todo!()
    }

    /// Atomically reads and deletes (a login completes exactly once).
    pub async fn take_pending(&self, token: &str) -> StoreResult<Option<PendingLogin>> {
        todo!()
    }

    // --- one-time codes (the caller passes a keyed hash, never the code) ---

    pub async fn issue_code(
        &self,
        user: &str,
        purpose: CodePurpose,
        code_hash: &[u8; 32],
        ttl: Duration,
        max_attempts: u32,
    ) -> StoreResult<()> {
        todo!()
    }

    pub async fn verify_code(
        &self,
        user: &str,
        purpose: CodePurpose,
        candidate_hash: &[u8; 32],
    ) -> StoreResult<CodeCheck> {
        todo!()
    }

    pub async fn void_code(&self, user: &str, purpose: CodePurpose) -> StoreResult<()> {
        todo!()
    }

    /// Starts a cooldown unless one runs; returns the time left of a running one.
    pub async fn start_cooldown(
        &self,
        user: &str,
        purpose: CodePurpose,
        cooldown: Duration,
    ) -> StoreResult<Option<Duration>> {
        todo!()
    }

    // --- sliding windows ---

    /// Counts the hit if under `limit` within `window`; else Limited with retry_after.
    pub async fn rate_hit(&self, bucket: &str, key: &str, limit: u32, window: Duration) -> StoreResult<RateDecision> {
        todo!()
    }

    /// Checks without counting.
    pub async fn rate_check(&self, bucket: &str, key: &str, limit: u32, window: Duration) -> StoreResult<RateDecision> {
        todo!()
    }

    /// Records an event unconditionally; returns how many fall in the window.
    pub async fn rate_record(&self, bucket: &str, key: &str, window: Duration) -> StoreResult<u32> {
        todo!()
    }

    pub async fn rate_reset(&self, bucket: &str, key: &str) -> StoreResult<()> {
        todo!()
    }

    // --- account lock ---

    pub async fn lock_account(&self, user: &str, duration: Duration) -> StoreResult<()> {
        todo!()
    }

    /// Time left on the lock, if locked.
    pub async fn account_locked(&self, user: &str) -> StoreResult<Option<Duration>> {
        todo!()
    }

    /// Clears the lock and the account's failure window; true if it was locked.
    pub async fn unlock_account(&self, user: &str) -> StoreResult<bool> {
        todo!()
    }

    // --- durable per-user state ---

    pub async fn user_state(&self, user: &str) -> StoreResult<UserState> {
        todo!()
    }

    pub async fn set_otp_enabled(&self, user: &str, enabled: bool) -> StoreResult<()> {
        todo!()
    }

    /// Replaces all backup codes (the old ones become void).
    pub async fn replace_backup_codes(&self, user: &str, hashes: &[[u8; 32]]) -> StoreResult<()> {
        todo!()
    }

    /// Consumes one backup code; true exactly once per code, even concurrently.
    pub async fn consume_backup_code(&self, user: &str, hash: &[u8; 32]) -> StoreResult<bool> {
        todo!()
    }

    /// Records a login from `ip`; returns when it was last seen before (unix secs).
    pub async fn record_known_ip(&self, user: &str, ip: &str) -> StoreResult<Option<u64>> {
        todo!()
    }

    // --- audit ---

    /// Appends to the user's list (if `rec.user` is set) and the global list, both capped.
    pub async fn append_audit(&self, rec: &AuditRecord) -> StoreResult<()> {
        todo!()
    }

    /// Newest first; `user` None = the global list.
    pub async fn recent_audit(&self, user: Option<&str>, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        todo!()
    }
}
