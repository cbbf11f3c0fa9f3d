//! The Redis backend, for production and for several gateway replicas sharing
//! state. Each operation checks out one pooled connection and makes one round
//! trip: a Lua script (sent as EVALSHA, loaded on NOSCRIPT) wherever the
//! operation reads and writes, so concurrent replicas see it as atomic. Scripts
//! take the time from Redis `TIME`, so replicas with skewed clocks agree.
//!
//! Failure model: the pool is built without connecting; a down server makes
//! operations fail fast with `Unavailable` (or `Timeout`), and the pool opens
//! fresh connections once it is back. Every ephemeral key has a TTL.

mod keys;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use deadpool_redis::redis::{self as r, AsyncConnectionConfig, ErrorKind, RedisError, Script};
use deadpool_redis::{Connection, Manager, Pool, PoolError, Runtime};

use super::{
    AUDIT_GLOBAL, AUDIT_PER_USER, AuditRecord, CodeCheck, CodePurpose, IpHistory, KNOWN_IPS_PER_USER, PendingLogin,
    RATE_RECORD_CAP, RateBucket, RateDecision, SessionInfo, SessionRecord, StoreError, StoreResult, UserState,
    duration_ms, hex32, session_expiry_ms,
};
use crate::config::StoreConfig;

use self::keys::Keys;

/// Redis refuses expiry times past the year 9999 (ms).
const MAX_EXPIRY_MS: u64 = 253_402_300_800_000;

/// The Lua scripts, hashed once per process.
struct Scripts {
    session_put: Script,
    session_touch: Script,
    session_delete: Script,
    session_revoke: Script,
    session_revoke_user: Script,
    session_list: Script,
    code_issue: Script,
    code_verify: Script,
    cooldown_start: Script,
    rate: Script,
    known_ip: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    session_put: Script::new(include_str!("session_put.lua")),
    session_touch: Script::new(include_str!("session_touch.lua")),
    session_delete: Script::new(include_str!("session_delete.lua")),
    session_revoke: Script::new(include_str!("session_revoke.lua")),
    session_revoke_user: Script::new(include_str!("session_revoke_user.lua")),
    session_list: Script::new(include_str!("session_list.lua")),
    code_issue: Script::new(include_str!("code_issue.lua")),
    code_verify: Script::new(include_str!("code_verify.lua")),
    cooldown_start: Script::new(include_str!("cooldown_start.lua")),
    rate: Script::new(include_str!("rate.lua")),
    known_ip: Script::new(include_str!("known_ip.lua")),
});

/// Handle to the Redis backend; clones share the pool.
#[derive(Clone)]
pub(super) struct RedisStore {
    pool: Pool,
    keys: Arc<Keys>,
}

/// Which way a rate script runs.
#[derive(Clone, Copy)]
enum RateMode {
    Hit,
    Check,
    Record,
}

impl RateMode {
    fn as_str(self) -> &'static str {
        match self {
            RateMode::Hit => "hit",
            RateMode::Check => "check",
            RateMode::Record => "record",
        }
    }
}

impl RedisStore {
    /// Builds the pool; connects lazily, so a down server does not stop start-up.
    pub(super) fn open(cfg: &StoreConfig) -> StoreResult<RedisStore> {
        let timeout = Some(cfg.timeout);
        let conn_cfg = AsyncConnectionConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
        // The URL may hold a password: never echo it.
        let manager = Manager::new_with_config(cfg.url.expose(), conn_cfg)
            .map_err(|e| StoreError::Unavailable(format!("invalid redis url ({:?})", e.kind())))?;
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size.max(1))
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("redis pool: {e}")))?;
        Ok(RedisStore { pool, keys: Arc::new(Keys::new(&cfg.key_prefix)) })
    }

    async fn conn(&self) -> StoreResult<Connection> {
        self.pool.get().await.map_err(pool_error)
    }

    pub(super) async fn ping(&self) -> StoreResult<()> {
        let mut c = self.conn().await?;
        r::cmd("PING").query_async::<String>(&mut c).await.map_err(redis_error)?;
        Ok(())
    }

    // --- sessions ---

    async fn put_session(&self, old_id: Option<&str>, id: &str, rec: &SessionRecord) -> StoreResult<()> {
        let json = to_json(rec)?;
        let expiry = session_expiry_ms(rec.last_seen, rec.idle_secs, rec.absolute_expiry).min(MAX_EXPIRY_MS);
        let index_expiry = session_expiry_ms(rec.absolute_expiry, 0, rec.absolute_expiry).clamp(expiry, MAX_EXPIRY_MS);
        let mut inv = SCRIPTS.session_put.prepare_invoke();
        inv.key(self.keys.session(id)).key(self.keys.user_sessions(&rec.user));
        if let Some(old) = old_id {
            inv.key(self.keys.session(old));
        }
        inv.arg(id)
            .arg(json)
            .arg(&rec.user)
            .arg(rec.last_seen)
            .arg(rec.idle_secs)
            .arg(rec.absolute_expiry)
            .arg(expiry)
            .arg(index_expiry)
            .arg(old_id.unwrap_or(""));
        let mut c = self.conn().await?;
        inv.invoke_async::<i64>(&mut c).await.map_err(redis_error)?;
        Ok(())
    }

    pub(super) async fn create_session(&self, id: &str, rec: &SessionRecord) -> StoreResult<()> {
        self.put_session(None, id, rec).await
    }

    pub(super) async fn touch_session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let mut c = self.conn().await?;
        let found: Option<(String, u64)> =
            SCRIPTS.session_touch.key(self.keys.session(id)).arg(id).invoke_async(&mut c).await.map_err(redis_error)?;
        found
            .map(|(json, last_seen)| {
                let mut rec: SessionRecord = from_json(&json)?;
                rec.last_seen = last_seen;
                Ok(rec)
            })
            .transpose()
    }

    pub(super) async fn rotate_session(&self, old_id: &str, new_id: &str, rec: &SessionRecord) -> StoreResult<()> {
        self.put_session(Some(old_id), new_id, rec).await
    }

    pub(super) async fn delete_session(&self, id: &str) -> StoreResult<Option<String>> {
        let mut c = self.conn().await?;
        SCRIPTS.session_delete.key(self.keys.session(id)).arg(id).invoke_async(&mut c).await.map_err(redis_error)
    }

    pub(super) async fn list_sessions(&self, user: &str) -> StoreResult<Vec<SessionInfo>> {
        let mut c = self.conn().await?;
        let flat: Vec<String> = SCRIPTS
            .session_list
            .key(self.keys.user_sessions(user))
            .arg(self.keys.session_prefix())
            .invoke_async(&mut c)
            .await
            .map_err(redis_error)?;
        flat.chunks_exact(3)
            .map(|f| {
                let mut record: SessionRecord = from_json(&f[1])?;
                record.last_seen = f[2].parse().map_err(|_| StoreError::Corrupt("session last_seen".into()))?;
                Ok(SessionInfo { id: f[0].clone(), record })
            })
            .collect()
    }

    pub(super) async fn revoke_session(&self, user: &str, id: &str) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let n: i64 = SCRIPTS
            .session_revoke
            .key(self.keys.user_sessions(user))
            .key(self.keys.session(id))
            .arg(user)
            .arg(id)
            .invoke_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(n == 1)
    }

    pub(super) async fn revoke_user_sessions(&self, user: &str) -> StoreResult<usize> {
        let mut c = self.conn().await?;
        SCRIPTS
            .session_revoke_user
            .key(self.keys.user_sessions(user))
            .arg(self.keys.session_prefix())
            .invoke_async(&mut c)
            .await
            .map_err(redis_error)
    }

    // --- pending logins ---

    pub(super) async fn put_pending(&self, id: &str, p: &PendingLogin, ttl: Duration) -> StoreResult<()> {
        let json = to_json(p)?;
        let mut c = self.conn().await?;
        r::cmd("SET")
            .arg(self.keys.pending(id))
            .arg(json)
            .arg("PX")
            .arg(duration_ms(ttl).max(1))
            .query_async::<()>(&mut c)
            .await
            .map_err(redis_error)
    }

    pub(super) async fn get_pending(&self, id: &str) -> StoreResult<Option<PendingLogin>> {
        let mut c = self.conn().await?;
        let json: Option<String> =
            r::cmd("GET").arg(self.keys.pending(id)).query_async(&mut c).await.map_err(redis_error)?;
        json.map(|j| from_json(&j)).transpose()
    }

    pub(super) async fn take_pending(&self, id: &str) -> StoreResult<Option<PendingLogin>> {
        let mut c = self.conn().await?;
        let json: Option<String> =
            r::cmd("GETDEL").arg(self.keys.pending(id)).query_async(&mut c).await.map_err(redis_error)?;
        json.map(|j| from_json(&j)).transpose()
    }

    // --- one-time codes ---

    pub(super) async fn issue_code(
        &self,
        user: &str,
        purpose: CodePurpose,
        code_hash: &[u8; 32],
        ttl: Duration,
        max_attempts: u32,
    ) -> StoreResult<()> {
        let mut c = self.conn().await?;
        SCRIPTS
            .code_issue
            .key(self.keys.code(user, purpose))
            .arg(hex32(code_hash))
            .arg(duration_ms(ttl).min(MAX_EXPIRY_MS / 4))
            .arg(max_attempts)
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    pub(super) async fn verify_code(
        &self,
        user: &str,
        purpose: CodePurpose,
        candidate_hash: &[u8; 32],
    ) -> StoreResult<CodeCheck> {
        let mut c = self.conn().await?;
        let (status, remaining): (i64, i64) = SCRIPTS
            .code_verify
            .key(self.keys.code(user, purpose))
            .arg(hex32(candidate_hash))
            .invoke_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(match status {
            0 => CodeCheck::None,
            1 => CodeCheck::Expired,
            2 => CodeCheck::Exhausted,
            3 => CodeCheck::Ok,
            4 => CodeCheck::Wrong { remaining: u32::try_from(remaining).unwrap_or(0) },
            other => return Err(StoreError::Corrupt(format!("code status {other}"))),
        })
    }

    pub(super) async fn void_code(&self, user: &str, purpose: CodePurpose) -> StoreResult<()> {
        self.del(&[self.keys.code(user, purpose)]).await.map(drop)
    }

    pub(super) async fn start_cooldown(
        &self,
        user: &str,
        purpose: CodePurpose,
        cooldown: Duration,
    ) -> StoreResult<Option<Duration>> {
        let ms = duration_ms(cooldown);
        if ms == 0 {
            return Ok(None);
        }
        let mut c = self.conn().await?;
        let left: i64 = SCRIPTS
            .cooldown_start
            .key(self.keys.cooldown(user, purpose))
            .arg(ms)
            .invoke_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(u64::try_from(left).ok().map(Duration::from_millis))
    }

    // --- sliding windows ---

    async fn rate(
        &self,
        mode: RateMode,
        bucket: RateBucket,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> StoreResult<(i64, u64)> {
        let mut c = self.conn().await?;
        SCRIPTS
            .rate
            .key(self.keys.rate(bucket, key))
            .arg(mode.as_str())
            .arg(limit)
            .arg(duration_ms(window).clamp(1, MAX_EXPIRY_MS / 4))
            .arg(rand::random::<u64>())
            .arg(RATE_RECORD_CAP)
            .invoke_async(&mut c)
            .await
            .map_err(redis_error)
    }

    fn decision((allowed, n): (i64, u64)) -> RateDecision {
        if allowed == 1 {
            RateDecision::Allowed { remaining: u32::try_from(n).unwrap_or(u32::MAX) }
        } else {
            RateDecision::Limited { retry_after: Duration::from_millis(n) }
        }
    }

    pub(super) async fn rate_hit(
        &self,
        bucket: RateBucket,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> StoreResult<RateDecision> {
        let reply = self.rate(RateMode::Hit, bucket, key, limit, window).await?;
        Ok(Self::decision(reply))
    }

    pub(super) async fn rate_check(
        &self,
        bucket: RateBucket,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> StoreResult<RateDecision> {
        let reply = self.rate(RateMode::Check, bucket, key, limit, window).await?;
        Ok(Self::decision(reply))
    }

    pub(super) async fn rate_record(&self, bucket: RateBucket, key: &str, window: Duration) -> StoreResult<u32> {
        let (_, n) = self.rate(RateMode::Record, bucket, key, 0, window).await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    pub(super) async fn rate_reset(&self, bucket: RateBucket, key: &str) -> StoreResult<()> {
        self.del(&[self.keys.rate(bucket, key)]).await.map(drop)
    }

    /// One DEL per window in one round trip: the windows live in different
    /// slots, so one DEL naming them all would be refused by a Cluster.
    pub(super) async fn clear_windows(&self, buckets: &[RateBucket], key: &str) -> StoreResult<usize> {
        let mut p = r::pipe();
        for b in buckets {
            p.cmd("DEL").arg(self.keys.rate(*b, key));
        }
        let mut c = self.conn().await?;
        let deleted: Vec<i64> = p.query_async(&mut c).await.map_err(redis_error)?;
        Ok(deleted.iter().filter(|&&n| n > 0).count())
    }

    // --- account lock ---

    pub(super) async fn lock_account(&self, user: &str, duration: Duration) -> StoreResult<()> {
        let mut c = self.conn().await?;
        r::cmd("SET")
            .arg(self.keys.lock(user))
            .arg(1)
            .arg("PX")
            .arg(duration_ms(duration).clamp(1, MAX_EXPIRY_MS / 4))
            .query_async::<()>(&mut c)
            .await
            .map_err(redis_error)
    }

    pub(super) async fn account_locked(&self, user: &str) -> StoreResult<Option<Duration>> {
        let mut c = self.conn().await?;
        let ms: i64 = r::cmd("PTTL").arg(self.keys.lock(user)).query_async(&mut c).await.map_err(redis_error)?;
        Ok(u64::try_from(ms).ok().filter(|&ms| ms > 0).map(Duration::from_millis))
    }

    pub(super) async fn unlock_account(&self, user: &str) -> StoreResult<bool> {
        // Two slots (the lock is the user's, the window is the bucket's): two
        // DELs in one round trip. Each is atomic; together they need not be.
        let mut c = self.conn().await?;
        let (locked, _): (i64, i64) = r::pipe()
            .cmd("DEL")
            .arg(self.keys.lock(user))
            .cmd("DEL")
            .arg(self.keys.rate(RateBucket::AccountFailures, user))
            .query_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(locked > 0)
    }

    // --- durable per-user state (no TTL) ---

    pub(super) async fn user_state(&self, user: &str) -> StoreResult<UserState> {
        let mut c = self.conn().await?;
        let (otp, left): (Option<String>, u32) = r::pipe()
            .cmd("HGET")
            .arg(self.keys.state(user))
            .arg("otp_enabled")
            .cmd("SCARD")
            .arg(self.keys.backup_codes(user))
            .query_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(UserState { otp_enabled: otp.as_deref() == Some("1"), backup_codes_left: left })
    }

    pub(super) async fn set_otp_enabled(&self, user: &str, enabled: bool) -> StoreResult<()> {
        let mut c = self.conn().await?;
        r::cmd("HSET")
            .arg(self.keys.state(user))
            .arg("otp_enabled")
            .arg(if enabled { "1" } else { "0" })
            .query_async::<()>(&mut c)
            .await
            .map_err(redis_error)
    }

    pub(super) async fn replace_backup_codes(&self, user: &str, hashes: &[[u8; 32]]) -> StoreResult<()> {
        let key = self.keys.backup_codes(user);
        let mut p = r::pipe();
        p.atomic().cmd("DEL").arg(&key).ignore();
        if !hashes.is_empty() {
            let members: Vec<String> = hashes.iter().map(hex32).collect();
            p.cmd("SADD").arg(&key).arg(members).ignore();
        }
        let mut c = self.conn().await?;
        p.query_async::<()>(&mut c).await.map_err(redis_error)
    }

    /// SREM is atomic, so exactly one concurrent caller removes the member. It
    /// is a hash lookup rather than a constant-time compare; the members are
    /// keyed hashes, so timing reveals nothing usable without the secret.
    pub(super) async fn consume_backup_code(&self, user: &str, hash: &[u8; 32]) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let removed: i64 = r::cmd("SREM")
            .arg(self.keys.backup_codes(user))
            .arg(hex32(hash))
            .query_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(removed == 1)
    }

    pub(super) async fn record_known_ip(&self, user: &str, ip: &str) -> StoreResult<IpHistory> {
        let mut c = self.conn().await?;
        let (before, known): (i64, i64) = SCRIPTS
            .known_ip
            .key(self.keys.known_ips(user))
            .arg(ip)
            .arg(KNOWN_IPS_PER_USER)
            .invoke_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(IpHistory::from_parts(u64::try_from(before).ok(), known > 0))
    }

    // --- audit (capped lists, newest first) ---

    pub(super) async fn append_audit(&self, rec: &AuditRecord) -> StoreResult<()> {
        let json = to_json(rec)?;
        let mut p = r::pipe();
        if let Some(user) = &rec.user {
            let key = self.keys.user_audit(user);
            p.cmd("LPUSH").arg(&key).arg(&json).ignore();
            p.cmd("LTRIM").arg(&key).arg(0).arg(AUDIT_PER_USER - 1).ignore();
        }
        let global = self.keys.global_audit();
        p.cmd("LPUSH").arg(&global).arg(&json).ignore();
        p.cmd("LTRIM").arg(&global).arg(0).arg(AUDIT_GLOBAL - 1).ignore();
        let mut c = self.conn().await?;
        p.query_async::<()>(&mut c).await.map_err(redis_error)
    }

    pub(super) async fn recent_audit(&self, user: Option<&str>, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let key = match user {
            Some(user) => self.keys.user_audit(user),
            None => self.keys.global_audit(),
        };
        let stop = i64::try_from(limit).unwrap_or(i64::MAX) - 1;
        let mut c = self.conn().await?;
        let items: Vec<String> =
            r::cmd("LRANGE").arg(key).arg(0).arg(stop).query_async(&mut c).await.map_err(redis_error)?;
        items.iter().map(|j| from_json(j)).collect()
    }

    async fn del(&self, keys: &[String]) -> StoreResult<i64> {
        let mut c = self.conn().await?;
        r::cmd("DEL").arg(keys).query_async(&mut c).await.map_err(redis_error)
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("encode: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("decode: {e}")))
}

/// Timeouts → `Timeout`; data we cannot read → `Corrupt`; anything else
/// (refused, reset, loading, read-only, ...) → `Unavailable`.
fn redis_error(e: RedisError) -> StoreError {
    if e.is_timeout() {
        return StoreError::Timeout;
    }
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreError::Corrupt(e.to_string()),
        _ if matches!(e.code(), Some("CORRUPT" | "WRONGTYPE")) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Timeout(_) => StoreError::Timeout,
        PoolError::Backend(e) => redis_error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}
