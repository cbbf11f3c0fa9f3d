//! The Store: every piece of gateway state (sessions, pending logins, one-time
//! codes, rate windows, lockouts, durable per-user state, audit) behind domain
//! operations that are atomic in each backend. Handlers call these methods; they
//! never build keys. Two backends: `memory://` (embedded, single process) and
//! Redis (one server, Sentinel or Cluster) for production and several replicas,
//! with a near cache of sessions in front (docs/store.md).
//!
//! Every operation that can wait is bounded by `store.timeout`: a slow or
//! absent backend turns into `StoreError::Timeout`/`Unavailable`, never a hung
//! request. (The memory store's session lookup answers under a lock and is
//! only timed.) Secrets that act as bearer tokens (session and pending-login
//! cookies) are only ever stored under their SHA-256, so a dump of the store
//! cannot log anyone in.

mod memory;
pub(crate) mod redis;
mod types;

pub use types::*;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::clock::Clock;
use crate::config::{StoreConfig, StoreUrl};

use self::memory::MemoryStore;
use self::redis::{Cached, RedisStore};

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

/// Records an operation's latency since `started`, and its failure, under
/// the operation's name (a bounded label).
fn recorded<T>(op: &'static str, started: Instant, result: StoreResult<T>) -> StoreResult<T> {
    crate::metrics::store_operation(op, started.elapsed().as_secs_f64());
    if result.is_err() {
        crate::metrics::get().store_errors.with_label_values(&[op]).inc();
    }
    result
}

impl Store {
    /// Opens the backend named by `cfg.url` on the system clock. Redis: builds
    /// the pool without requiring the server to be up (the gateway starts and
    /// reports not-ready).
    pub async fn open(cfg: &StoreConfig) -> StoreResult<Store> {
        Store::open_with_clock(cfg, Clock::system()).await
    }

    /// As `open`, with the clock the memory store keeps time by (tests pass a
    /// manual one). Redis's scripts read Redis `TIME`; its near cache reads
    /// this clock, corrected by how far Redis's is ahead.
    pub async fn open_with_clock(cfg: &StoreConfig, clock: Clock) -> StoreResult<Store> {
        let url = cfg.store_url().map_err(|e| StoreError::Unavailable(format!("store.url: {e}")))?;
        let backend = match url {
            StoreUrl::Memory => Backend::Memory(MemoryStore::open(cfg, clock).await?),
            StoreUrl::Redis(topology) => Backend::Redis(RedisStore::open(cfg, topology, clock)?),
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

    /// `memory`, `redis`, `redis-sentinel` or `redis-cluster`, for logs.
    pub fn topology(&self) -> &'static str {
        match &self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(r) => r.topology(),
        }
    }

    /// True while Redis's near cache is serving: on, and its invalidation
    /// channel up. Always false for the memory store.
    pub fn near_cache_live(&self) -> bool {
        match &self.backend {
            Backend::Memory(_) => false,
            Backend::Redis(r) => r.near_cache_live(),
        }
    }

    /// Round trip to the backend (readiness).
    pub async fn ping(&self) -> StoreResult<()> {
        dispatch!(self, b => b.ping())
    }

    /// Applies the per-operation deadline, and records latency and failures
    /// under the operation's name (a bounded label).
    // Operation latency, in real time, for the store's metrics.
    #[allow(clippy::disallowed_methods)]
    async fn bounded<T>(&self, op: &'static str, fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, fut).await.unwrap_or(Err(StoreError::Timeout));
        recorded(op, started, result)
    }

    // --- sessions (token = the secret cookie value; stored under its hash) ---

    pub async fn create_session(&self, token: &str, rec: &SessionRecord) -> StoreResult<()> {
        let id = Self::session_id(token);
        dispatch!(self, b => b.create_session(&id, rec))
    }

    /// Load-and-touch: returns the session and slides its idle expiry, or None
    /// when absent or expired (idle or absolute). With Redis's near cache, a
    /// live session is usually answered without a round trip: expiry is
    /// checked here and the slide written back at most once per interval.
    // Operation latency, in real time, for the store's metrics.
    #[allow(clippy::disallowed_methods)]
    pub async fn touch_session(&self, token: &str) -> StoreResult<Option<SessionRecord>> {
        let id = Self::session_id(token);
        match &self.backend {
            // Answered under a lock, never waiting: no deadline to arm.
            Backend::Memory(m) => recorded("touch_session", Instant::now(), Ok(m.touch_session(&id))),
            Backend::Redis(r) => match r.cached_session(&id) {
                Cached::Hit(rec) => Ok(Some(rec)),
                Cached::Ask(ticket) => self.bounded("touch_session", Box::pin(r.touch_session(&id, ticket))).await,
            },
        }
    }

    /// The session behind `token` without touching it (its idle expiry does
    /// not slide): for requests that must not keep a session alive
    /// (`refresh_session = false`) and for watching an upgraded connection's
    /// session. None when absent or expired.
    // Operation latency, in real time, for the store's metrics.
    #[allow(clippy::disallowed_methods)]
    pub async fn peek_session(&self, token: &str) -> StoreResult<Option<SessionRecord>> {
        let id = Self::session_id(token);
        match &self.backend {
            Backend::Memory(m) => recorded("peek_session", Instant::now(), Ok(m.peek_session(&id))),
            Backend::Redis(r) => match r.cached_peek(&id) {
                Some(rec) => Ok(Some(rec)),
                None => self.bounded("peek_session", Box::pin(r.peek_session(&id))).await,
            },
        }
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
        // ring's SHA-256 (assembly): this runs for every request a cookie signs.
        URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()))
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

    /// Admits one answer of a second factor for comparison, in one atomic
    /// step: refused while the account is locked or `limits.cap` is used up;
    /// else its failure is counted first (in the account's window and the
    /// cap), and if that fills the account's window the account is locked
    /// before the answer is compared. Parallel guesses therefore compare at
    /// most as many answers as the limits allow.
    pub async fn admit_attempt(&self, user: &str, limits: &AttemptLimits<'_>) -> StoreResult<Admission> {
        dispatch!(self, b => b.admit_attempt(user, limits))
    }

    /// The admitted answer was right: its failure is taken back from the
    /// account's window, and the lock it set (if it set one) is lifted.
    pub async fn attempt_right(&self, user: &str, attempt: &Attempt) -> StoreResult<()> {
        dispatch!(self, b => b.attempt_right(user, attempt))
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

    /// Forgets a user the users file no longer has: ends their sessions and
    /// removes their durable state (the e-mailed-codes switch, backup codes,
    /// authenticator app, passkeys, known addresses), so nothing of it
    /// returns to someone later given the same name. Keeps their audit trail
    /// (the record of what happened) and anything that expires by itself
    /// (codes, rate windows, a lock). Whatever else a user comes to own in
    /// the store (access tokens, say) belongs here too.
    pub async fn forget_user(&self, user: &str) -> StoreResult<ForgottenUser> {
        let sessions = self.revoke_user_sessions(user).await?;
        let mut tokens = 0;
        for t in self.list_tokens(user).await? {
            if self.revoke_token(user, &t.id).await? {
                tokens += 1;
            }
        }
        let factors = dispatch!(self, b => b.forget_user_state(user))?;
        Ok(ForgottenUser { sessions, factors, tokens })
    }

    // --- access tokens (by id; only a keyed hash of the secret is stored) ---

    /// Keeps a new token under `id` until it expires.
    pub async fn create_token(&self, id: &str, rec: &TokenRecord) -> StoreResult<()> {
        dispatch!(self, b => b.create_token(id, rec))
    }

    /// The live token `id`, if any (an expired one is absent).
    pub async fn token(&self, id: &str) -> StoreResult<Option<TokenRecord>> {
        dispatch!(self, b => b.token(id))
    }

    /// Notes that token `id` signed a request at `now` (unix seconds); false
    /// if the token is gone. Callers do it at most once a minute per token.
    pub async fn touch_token(&self, id: &str, now: u64) -> StoreResult<bool> {
        dispatch!(self, b => b.touch_token(id, now))
    }

    /// The user's live tokens, in no particular order.
    pub async fn list_tokens(&self, user: &str) -> StoreResult<Vec<TokenInfo>> {
        dispatch!(self, b => b.list_tokens(user))
    }

    /// Ends token `id` if it is `user`'s; true if it was.
    pub async fn revoke_token(&self, user: &str, id: &str) -> StoreResult<bool> {
        dispatch!(self, b => b.revoke_token(user, id))
    }

    // --- authenticator app (the caller passes sealed secrets, never the secret) ---

    /// The user's sealed TOTP secrets, confirmed and awaiting confirmation.
    pub async fn totp_secrets(&self, user: &str) -> StoreResult<TotpSecrets> {
        dispatch!(self, b => b.totp_secrets(user))
    }

    /// Keeps a secret shown for setup until a code confirms it (replacing
    /// any earlier one; a confirmed secret stays in force meanwhile).
    pub async fn set_totp_pending(&self, user: &str, sealed: &str) -> StoreResult<()> {
        dispatch!(self, b => b.set_totp_pending(user, sealed))
    }

    /// Makes `sealed` the confirmed secret, drops the pending one, and marks
    /// `step` (the confirming code's) used.
    pub async fn enable_totp(&self, user: &str, sealed: &str, step: u64) -> StoreResult<()> {
        dispatch!(self, b => b.enable_totp(user, sealed, step))
    }

    /// Forgets both secrets; true if there was a confirmed one.
    pub async fn remove_totp(&self, user: &str) -> StoreResult<bool> {
        dispatch!(self, b => b.remove_totp(user))
    }

    /// Marks time step `step` used if it is later than the last one used:
    /// true exactly once per step (and never for an earlier one), even
    /// concurrently, so a code cannot be replayed within its window.
    pub async fn use_totp_step(&self, user: &str, step: u64) -> StoreResult<bool> {
        dispatch!(self, b => b.use_totp_step(user, step))
    }

    // --- passkeys (public keys: nothing in them signs anyone in) ---

    /// The user's passkeys as `auth::passkey` serialized them, if any.
    pub async fn passkeys(&self, user: &str) -> StoreResult<Option<String>> {
        dispatch!(self, b => b.passkeys(user))
    }

    /// Replaces the user's passkeys (None forgets them all) if they are still
    /// `old` (None: there were none), in one atomic step: a list read,
    /// changed and written back cannot undo a change made meanwhile (a
    /// passkey removed while a sign-in with it finishes stays removed).
    /// False, and nothing changed, when another change came first: read
    /// again and retry.
    pub async fn swap_passkeys(&self, user: &str, old: Option<&str>, new: Option<&str>) -> StoreResult<bool> {
        dispatch!(self, b => b.swap_passkeys(user, old, new))
    }

    /// Keeps a WebAuthn ceremony's state (registration or sign-in) between
    /// its start and finish, under `key`, for `ttl`.
    pub async fn put_ceremony(&self, key: &str, json: &str, ttl: Duration) -> StoreResult<()> {
        dispatch!(self, b => b.put_ceremony(key, json, ttl))
    }

    /// Takes a ceremony's state: it finishes at most once.
    pub async fn take_ceremony(&self, key: &str) -> StoreResult<Option<String>> {
        dispatch!(self, b => b.take_ceremony(key))
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

    /// About how many records the global trail keeps before the oldest go
    /// (Redis trims approximately, keeping at least this many).
    pub fn audit_global_cap(&self) -> usize {
        match self.backend {
            Backend::Memory(_) => AUDIT_GLOBAL,
            Backend::Redis(_) => AUDIT_GLOBAL_REDIS,
        }
    }

    /// One page of the trail, newest first: the entries that pass `q`'s
    /// filters, from `q.before` back, at most `q.limit` of them, having
    /// looked at no more than [`AUDIT_SCAN_BUDGET`] entries. Never reads the
    /// whole trail: a time range and the cursor are ranges of the trail's
    /// index, and only the filters are checked entry by entry.
    pub async fn search_audit(&self, q: &AuditQuery) -> StoreResult<AuditPage> {
        if q.limit == 0 || q.since.zip(q.until).is_some_and(|(s, u)| s > u) {
            return Ok(AuditPage::default());
        }
        dispatch!(self, b => b.search_audit(q))
    }

    // --- what an operator looks at ---

    /// What the store holds of each account, in the order asked: its second
    /// factors, the longest lock among its `lock_keys`, its live sessions
    /// and its last login. One round trip or two for the whole page.
    pub async fn account_facts(&self, accounts: &[(String, Vec<String>)]) -> StoreResult<Vec<AccountFacts>> {
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, b => b.account_facts(accounts))
    }

    /// Notes that `ip` (a rate key: an address, or an IPv6 /64) is turned
    /// away for its failures for at most `lasts` from now (the store's
    /// clock), for the operator's list of banned addresses.
    pub async fn note_ip_ban(&self, ip: &str, lasts: Duration) -> StoreResult<()> {
        dispatch!(self, b => b.note_ip_ban(ip, lasts))
    }

    /// The addresses noted as banned whose ban may not yet have ended,
    /// soonest-ending first, at most `limit`.
    pub async fn ip_bans(&self, limit: usize) -> StoreResult<Vec<IpBan>> {
        dispatch!(self, b => b.ip_bans(limit))
    }

    /// Forgets the note of `ip`'s ban (an operator lifted it).
    pub async fn forget_ip_ban(&self, ip: &str) -> StoreResult<()> {
        dispatch!(self, b => b.forget_ip_ban(ip))
    }
}
