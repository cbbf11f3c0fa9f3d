//! The Store: every piece of gateway state (sessions, pending logins, one-time
//! codes, rate windows, lockouts, durable per-user state, audit) behind domain
//! operations that are atomic in each backend. Handlers call these methods; they
//! never build keys. Two backends: `memory://` (embedded, single process) and
//! Redis (`redis://`, `rediss://`) for production and several replicas.
//!
//! Every operation is bounded by `store.timeout`: a slow or absent backend turns
//! into `StoreError::Timeout`/`Unavailable`, never a hung request. Secrets that
//! act as bearer tokens (session and pending-login cookies) are only ever stored
//! under their SHA-256, so a dump of the store cannot log anyone in.

mod memory;
mod redis;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::StoreConfig;

use self::memory::MemoryStore;
use self::redis::RedisStore;

/// Most audit entries kept per user.
pub const AUDIT_PER_USER: usize = 100;
/// Most audit entries kept in the global list.
pub const AUDIT_GLOBAL: usize = 1000;
/// Most known IPs remembered per user; the least recently seen is forgotten first.
pub const KNOWN_IPS_PER_USER: usize = 64;
/// Most events `rate_record` keeps per window; the count saturates there.
pub const RATE_RECORD_CAP: u32 = 10_000;

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
    /// Fingerprint of the user's credential when the session was made
    /// (`auth::credential`). Empty in records written before it existed;
    /// the gate ends such a session.
    #[serde(default)]
    pub credential: String,
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

/// A family of sliding windows; each keeps one log per key (a client IP or a
/// user name). The names are part of the stored keys, so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateBucket {
    /// Password attempts per client IP.
    Login,
    /// Code and backup-code attempts per client IP.
    Verify,
    /// Code resends per client IP.
    Resend,
    /// Code e-mails per client IP.
    OtpEmails,
    /// Failed attempts per client IP (the IP ban).
    IpFailures,
    /// Failed attempts per account (the account lock); `unlock_account` clears it.
    /// Names that match no account are counted here too, under a keyed hash
    /// of the name, so that they lock alike.
    AccountFailures,
    /// Failed password re-checks per session (by its public id).
    SessionFailures,
    /// Repeated-failure alerts per account (at most one per window).
    FailureAlerts,
}

impl RateBucket {
    pub const ALL: [RateBucket; 8] = [
        RateBucket::Login,
        RateBucket::Verify,
        RateBucket::Resend,
        RateBucket::OtpEmails,
        RateBucket::IpFailures,
        RateBucket::AccountFailures,
        RateBucket::SessionFailures,
        RateBucket::FailureAlerts,
    ];

    /// The buckets keyed by client IP (what `portcullis unlock --ip` clears).
    pub const PER_IP: [RateBucket; 5] =
        [RateBucket::Login, RateBucket::Verify, RateBucket::Resend, RateBucket::OtpEmails, RateBucket::IpFailures];

    pub fn as_str(self) -> &'static str {
        match self {
            RateBucket::Login => "login",
            RateBucket::Verify => "verify",
            RateBucket::Resend => "resend",
            RateBucket::OtpEmails => "otp_emails",
            RateBucket::IpFailures => "ip_failures",
            RateBucket::AccountFailures => "account_failures",
            RateBucket::SessionFailures => "session_failures",
            RateBucket::FailureAlerts => "failure_alerts",
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

/// What the store knew of a login's IP before recording it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpHistory {
    /// The account had no known IP at all: its first recorded login.
    FirstEver,
    /// Other IPs are known, this one is not (or was forgotten).
    Unseen,
    /// Seen before, last at this unix time (seconds).
    LastSeen(u64),
}

impl IpHistory {
    pub fn last_seen(self) -> Option<u64> {
        match self {
            IpHistory::LastSeen(t) => Some(t),
            _ => None,
        }
    }

    fn from_parts(last_seen: Option<u64>, had_any: bool) -> IpHistory {
        match (last_seen, had_any) {
            (Some(t), _) => IpHistory::LastSeen(t),
            (None, true) => IpHistory::Unseen,
            (None, false) => IpHistory::FirstEver,
        }
    }
}

/// Durable per-user state that must survive restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    pub otp_enabled: bool,
    pub backup_codes_left: u32,
}

/// The two kinds of audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    LoginAttempt,
    SecurityEvent,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::LoginAttempt => "login_attempt",
            AuditKind::SecurityEvent => "security_event",
        }
    }
}

/// One audit entry: a login attempt or a security event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix seconds.
    pub time: u64,
    pub kind: AuditKind,
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
    backend: Backend,
    timeout: Duration,
}

/// The concrete backend; an enum rather than a trait object so calls are not boxed.
#[derive(Clone)]
enum Backend {
    Memory(Arc<MemoryStore>),
    Redis(RedisStore),
}

/// Runs the same method call on whichever backend is configured, under the
/// store's deadline. The Redis call is boxed: its futures (pool checkout,
/// script fallback) run to kilobytes, and held inline they would make every
/// caller's future that large, memory store or not, and be moved on each
/// request. One allocation beside a network round trip is nothing.
macro_rules! dispatch {
    ($self:ident, $b:ident => $recv:ident . $m:ident ( $($arg:expr),* $(,)? )) => {
        $self
            .bounded(stringify!($m), async {
                match &$self.backend {
                    Backend::Memory($b) => $recv.$m($($arg),*).await,
                    Backend::Redis($b) => Box::pin($recv.$m($($arg),*)).await,
                }
            })
            .await
    };
}

impl Store {
    /// Opens the backend named by `cfg.url` on the system clock. Redis: builds
    /// the pool without requiring the server to be up (the gateway starts and
    /// reports not-ready).
    pub async fn open(cfg: &StoreConfig) -> StoreResult<Store> {
        Store::open_with_clock(cfg, Clock::system()).await
    }

    /// As `open`, with the clock the memory store keeps time by (tests pass a
    /// manual one). Redis ignores it: its scripts read Redis `TIME`.
    pub async fn open_with_clock(cfg: &StoreConfig, clock: Clock) -> StoreResult<Store> {
        let url = cfg.url.expose();
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or(url);
        let backend = match scheme {
            "memory" => Backend::Memory(MemoryStore::open(cfg, clock).await?),
            "redis" | "rediss" => Backend::Redis(RedisStore::open(cfg)?),
            // The URL may carry a password: name only the scheme.
            other => {
                return Err(StoreError::Unavailable(format!(
                    "unsupported store url scheme `{other}` (use memory://, redis:// or rediss://)"
                )));
            }
        };
        Ok(Store { backend, timeout: cfg.timeout })
    }

    /// `memory` or `redis`, for logs and metrics.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// Round trip to the backend (readiness).
    pub async fn ping(&self) -> StoreResult<()> {
        dispatch!(self, b => b.ping())
    }

    /// Applies the per-operation deadline, and records latency and failures
    /// under the operation's name (a bounded label).
    async fn bounded<T>(&self, op: &'static str, fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, fut).await.unwrap_or(Err(StoreError::Timeout));
        let m = crate::metrics::get();
        m.store_duration.with_label_values(&[op]).observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            m.store_errors.with_label_values(&[op]).inc();
        }
        result
    }

    // --- sessions (token = the secret cookie value; stored under its hash) ---

    pub async fn create_session(&self, token: &str, rec: &SessionRecord) -> StoreResult<()> {
        let id = Self::session_id(token);
        dispatch!(self, b => b.create_session(&id, rec))
    }

    /// Load-and-touch: returns the session and slides its idle expiry, or None
    /// when absent or expired (idle or absolute).
    pub async fn touch_session(&self, token: &str) -> StoreResult<Option<SessionRecord>> {
        let id = Self::session_id(token);
        dispatch!(self, b => b.touch_session(&id))
    }

    /// Replaces `old` by `new` atomically (privilege change: no fixation).
    pub async fn rotate_session(&self, old: &str, new: &str, rec: &SessionRecord) -> StoreResult<()> {
        let old_id = Self::session_id(old);
        let new_id = Self::session_id(new);
        dispatch!(self, b => b.rotate_session(&old_id, &new_id, rec))
    }

    /// Deletes a session by its token; returns its user if it existed.
    pub async fn delete_session(&self, token: &str) -> StoreResult<Option<String>> {
        let id = Self::session_id(token);
        dispatch!(self, b => b.delete_session(&id))
    }

    /// The user's live sessions, in no particular order.
    pub async fn list_sessions(&self, user: &str) -> StoreResult<Vec<SessionInfo>> {
        dispatch!(self, b => b.list_sessions(user))
    }

    /// The public id of a token (what `list_sessions` calls `id`).
    pub fn session_id(token: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
    }

    /// Revokes one session of `user` by its public id; false if not theirs/absent.
    pub async fn revoke_session(&self, user: &str, id: &str) -> StoreResult<bool> {
        // Ids come from request paths: anything that is not a hash we made is absent.
        if !is_session_id(id) {
            return Ok(false);
        }
        dispatch!(self, b => b.revoke_session(user, id))
    }

    /// Ends every session of `user`; returns how many there were.
    pub async fn revoke_user_sessions(&self, user: &str) -> StoreResult<usize> {
        dispatch!(self, b => b.revoke_user_sessions(user))
    }

    // --- pending logins (keyed by the hash of their own cookie token) ---

    pub async fn put_pending(&self, token: &str, p: &PendingLogin, ttl: Duration) -> StoreResult<()> {
        let id = Self::session_id(token);
        dispatch!(self, b => b.put_pending(&id, p, ttl))
    }

    pub async fn get_pending(&self, token: &str) -> StoreResult<Option<PendingLogin>> {
        let id = Self::session_id(token);
        dispatch!(self, b => b.get_pending(&id))
    }

    /// Atomically reads and deletes (a login completes exactly once).
    pub async fn take_pending(&self, token: &str) -> StoreResult<Option<PendingLogin>> {
        let id = Self::session_id(token);
        dispatch!(self, b => b.take_pending(&id))
    }

    // --- one-time codes (the caller passes a keyed hash, never the code) ---

    /// Stores a new code for `user`/`purpose`, voiding the previous one.
    pub async fn issue_code(
        &self,
        user: &str,
        purpose: CodePurpose,
        code_hash: &[u8; 32],
        ttl: Duration,
        max_attempts: u32,
    ) -> StoreResult<()> {
        dispatch!(self, b => b.issue_code(user, purpose, code_hash, ttl, max_attempts))
    }

    /// Counts the attempt and compares in one atomic step; a correct code is
    /// consumed, so it succeeds exactly once.
    pub async fn verify_code(
        &self,
        user: &str,
        purpose: CodePurpose,
        candidate_hash: &[u8; 32],
    ) -> StoreResult<CodeCheck> {
        dispatch!(self, b => b.verify_code(user, purpose, candidate_hash))
    }

    pub async fn void_code(&self, user: &str, purpose: CodePurpose) -> StoreResult<()> {
        dispatch!(self, b => b.void_code(user, purpose))
    }

    /// Starts a cooldown unless one runs; returns the time left of a running one.
    pub async fn start_cooldown(
        &self,
        user: &str,
        purpose: CodePurpose,
        cooldown: Duration,
    ) -> StoreResult<Option<Duration>> {
        dispatch!(self, b => b.start_cooldown(user, purpose, cooldown))
    }

    // --- sliding windows ---

    /// Counts the hit if under `limit` within `window`; else Limited with retry_after.
    pub async fn rate_hit(
        &self,
        bucket: RateBucket,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> StoreResult<RateDecision> {
        dispatch!(self, b => b.rate_hit(bucket, key, limit, window))
    }

    /// Checks without counting.
    pub async fn rate_check(
        &self,
        bucket: RateBucket,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> StoreResult<RateDecision> {
        dispatch!(self, b => b.rate_check(bucket, key, limit, window))
    }

    /// Records an event unconditionally; returns how many fall in the window
    /// (saturating at `RATE_RECORD_CAP`).
    pub async fn rate_record(&self, bucket: RateBucket, key: &str, window: Duration) -> StoreResult<u32> {
        dispatch!(self, b => b.rate_record(bucket, key, window))
    }

    pub async fn rate_reset(&self, bucket: RateBucket, key: &str) -> StoreResult<()> {
        dispatch!(self, b => b.rate_reset(bucket, key))
    }

    /// Deletes the windows of `key` in each of `buckets`; returns how many
    /// held events (an operator lifting an IP ban wants to know).
    pub async fn clear_windows(&self, buckets: &[RateBucket], key: &str) -> StoreResult<usize> {
        dispatch!(self, b => b.clear_windows(buckets, key))
    }

    // --- account lock ---

    pub async fn lock_account(&self, user: &str, duration: Duration) -> StoreResult<()> {
        dispatch!(self, b => b.lock_account(user, duration))
    }

    /// Time left on the lock, if locked.
    pub async fn account_locked(&self, user: &str) -> StoreResult<Option<Duration>> {
        dispatch!(self, b => b.account_locked(user))
    }

    /// Clears the lock and the account's failure window; true if it was locked.
    pub async fn unlock_account(&self, user: &str) -> StoreResult<bool> {
        dispatch!(self, b => b.unlock_account(user))
    }

    // --- durable per-user state ---

    pub async fn user_state(&self, user: &str) -> StoreResult<UserState> {
        dispatch!(self, b => b.user_state(user))
    }

    pub async fn set_otp_enabled(&self, user: &str, enabled: bool) -> StoreResult<()> {
        dispatch!(self, b => b.set_otp_enabled(user, enabled))
    }

    /// Replaces all backup codes (the old ones become void).
    pub async fn replace_backup_codes(&self, user: &str, hashes: &[[u8; 32]]) -> StoreResult<()> {
        dispatch!(self, b => b.replace_backup_codes(user, hashes))
    }

    /// Consumes one backup code; true exactly once per code, even concurrently.
    pub async fn consume_backup_code(&self, user: &str, hash: &[u8; 32]) -> StoreResult<bool> {
        dispatch!(self, b => b.consume_backup_code(user, hash))
    }

    /// Records a login from `ip`; says what was known of it before.
    pub async fn record_known_ip(&self, user: &str, ip: &str) -> StoreResult<IpHistory> {
        dispatch!(self, b => b.record_known_ip(user, ip))
    }

    // --- audit ---

    /// Appends to the user's list (if `rec.user` is set) and the global list, both capped.
    pub async fn append_audit(&self, rec: &AuditRecord) -> StoreResult<()> {
        dispatch!(self, b => b.append_audit(rec))
    }

    /// Newest first; `user` None = the global list.
    pub async fn recent_audit(&self, user: Option<&str>, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        dispatch!(self, b => b.recent_audit(user, limit))
    }
}

/// True for strings shaped like `Store::session_id` output (43 base64url chars).
fn is_session_id(id: &str) -> bool {
    id.len() == 43 && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// A duration in whole milliseconds, saturating.
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When a session stops being valid, in unix milliseconds: it lives through the
/// whole second `min(last_seen + idle, absolute_expiry)`.
fn session_expiry_ms(last_seen: u64, idle_secs: u64, absolute_expiry: u64) -> u64 {
    last_seen.saturating_add(idle_secs).min(absolute_expiry).saturating_add(1).saturating_mul(1000)
}

/// Lower-case hex of a 32-byte hash.
fn hex32(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Parses what `hex32` wrote.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_is_base64url_of_sha256() {
        let id = Store::session_id("token");
        assert!(is_session_id(&id));
        assert_ne!(id, Store::session_id("token2"));
        assert!(!is_session_id("{u:alice}"));
    }

    #[test]
    fn hex_round_trips() {
        let mut h = [0u8; 32];
        h[0] = 0xab;
        h[31] = 0x01;
        assert_eq!(unhex32(&hex32(&h)), Some(h));
        assert_eq!(unhex32("zz"), None);
    }

    #[test]
    fn session_lives_through_its_last_second() {
        assert_eq!(session_expiry_ms(100, 10, 1000), 111_000);
        assert_eq!(session_expiry_ms(100, 10, 105), 106_000);
    }
}
