//! The Redis backend, for production and for several gateway replicas sharing
//! state, on one server, behind Sentinel or as a Cluster (`connect.rs`). Each
//! operation checks out one connection and makes one round trip where it can:
//! a Lua script (sent as EVALSHA, loaded on NOSCRIPT) wherever the operation
//! reads and writes, so concurrent replicas see it as atomic. Every script's
//! keys share one hash tag, so each runs on one Cluster slot. Scripts take the
//! time from Redis `TIME`, so replicas with skewed clocks agree.
//!
//! Sessions (`sessions.rs`) have a near cache in front (`near_cache.rs`), kept
//! honest by revocations pushed over pub/sub (`invalidation.rs`).
//!
//! Failure model: connections are opened lazily; a down server makes
//! operations fail fast with `Unavailable` (or `Timeout`), and fresh
//! connections are opened once it is back. Every ephemeral key has a TTL.

mod connect;
mod invalidation;
mod keys;
mod near_cache;
mod sessions;
mod shared;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis as r;
use futures_util::future::join_all;

use super::types::{
    AUDIT_GLOBAL_REDIS, AUDIT_PER_USER, AUDIT_SCAN_BUDGET, AccountFacts, Admission, Attempt, AttemptLimits,
    AuditCursor, AuditPage, AuditQuery, AuditRecord, CodeCheck, CodePurpose, IpBan, IpHistory, KNOWN_IPS_PER_USER,
    PendingLogin, RATE_RECORD_CAP, RateBucket, RateDecision, StoreError, StoreResult, TotpSecrets, UserState,
    duration_ms, hex32,
};
use crate::clock::Clock;
use crate::config::{StoreConfig, Topology};

use self::connect::{Conn, Connector};
use self::keys::Keys;
use self::near_cache::{Limits, NearCache};

pub(super) use self::near_cache::Cached;
use self::shared::{MAX_EXPIRY_MS, SCRIPTS, from_json, redis_error, to_json};

/// A pipelined reply's value as `T`.
fn from_value<T: r::FromRedisValue>(v: r::Value) -> StoreResult<T> {
    r::from_redis_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Handle to the Redis backend; clones share the connections and the cache.
#[derive(Clone)]
pub(super) struct RedisStore {
    connector: Connector,
    keys: Arc<Keys>,
    /// The near cache, when `store.near_cache` is on.
    near: Option<Arc<NearCache>>,
    /// Keeps the invalidation channel's task alive as long as a clone lives.
    _subscriber: Option<Arc<invalidation::Subscriber>>,
    topology: &'static str,
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
    /// Prepares the connections without requiring a server to be up (the
    /// gateway starts and reports not ready), and starts the near cache's
    /// invalidation channel.
    pub(super) fn open(cfg: &StoreConfig, topology: Topology, clock: Clock) -> StoreResult<RedisStore> {
        let connector = Connector::open(cfg, &topology)?;
        let keys = Arc::new(Keys::new(&cfg.key_prefix));
        let (near, subscriber) = if cfg.near_cache {
            let limits = Limits { max_entries: cfg.near_cache_max_entries, max_bytes: cfg.near_cache_max_bytes };
            let near = Arc::new(NearCache::new(limits, clock));
            let sub = invalidation::spawn(near.clone(), connector.subscriptions(), keys.revoked_channel(), cfg.timeout);
            (Some(near), Some(Arc::new(sub)))
        } else {
            (None, None)
        };
        Ok(RedisStore { connector, keys, near, _subscriber: subscriber, topology: topology.name() })
    }

    /// `redis`, `redis-sentinel` or `redis-cluster`.
    pub(super) fn topology(&self) -> &'static str {
        self.topology
    }

    pub(super) fn near_cache_live(&self) -> bool {
        self.near.as_ref().is_some_and(|n| n.serving())
    }

    async fn conn(&self) -> StoreResult<Conn> {
        self.connector.get().await
    }

    pub(super) async fn ping(&self) -> StoreResult<()> {
        let mut c = self.conn().await?;
        r::cmd("PING").query_async::<()>(&mut c).await.map_err(redis_error)?;
        Ok(())
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

    pub(super) async fn admit_attempt(&self, user: &str, limits: &AttemptLimits<'_>) -> StoreResult<Admission> {
        let clamp = |d: Duration| duration_ms(d).clamp(1, MAX_EXPIRY_MS / 4);
        let mut call = SCRIPTS.attempt_admit.prepare_invoke();
        call.key(self.keys.rate(RateBucket::AccountFailures, user)).key(self.keys.lock(user));
        call.arg(limits.limit).arg(clamp(limits.window)).arg(clamp(limits.lock_for));
        call.arg(format!("{:016x}", rand::random::<u64>()));
        if let Some((key, limit, window)) = limits.cap {
            call.key(self.keys.attempt_cap(user, key)).arg(limit).arg(clamp(window));
        }
        let mut c = self.conn().await?;
        let reply: Vec<r::Value> = call.invoke_async(&mut c).await.map_err(redis_error)?;
        let int = |i: usize| match reply.get(i) {
            Some(r::Value::Int(n)) => Ok(*n),
            _ => Err(StoreError::Corrupt("attempt_admit: unexpected reply".into())),
        };
        Ok(match int(0)? {
            0 => Admission::Locked { retry_after: Duration::from_millis(u64::try_from(int(1)?).unwrap_or(0)) },
            1 => Admission::CapReached,
            _ => {
                let ticket = match reply.get(1) {
                    Some(r::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    _ => return Err(StoreError::Corrupt("attempt_admit: no ticket".into())),
                };
                Admission::Admitted(Attempt {
                    ticket,
                    remaining: u32::try_from(int(2)?).unwrap_or(0),
                    cap_remaining: u32::try_from(int(3)?).ok(),
                    locked: int(4)? == 1,
                })
            }
        })
    }

    pub(super) async fn attempt_right(&self, user: &str, attempt: &Attempt) -> StoreResult<()> {
        let mut c = self.conn().await?;
        SCRIPTS
            .attempt_right
            .key(self.keys.rate(RateBucket::AccountFailures, user))
            .key(self.keys.lock(user))
            .arg(&attempt.ticket)
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    pub(super) async fn unlock_account(&self, user: &str) -> StoreResult<bool> {
        // One slot (the user's), but two DELs sent together: a Cluster
        // refuses a multi-key command while the slot is half moved. Each is
        // atomic; together they need not be.
        let c = self.conn().await?;
        let (mut a, mut b) = (c.shared(), c.shared());
        let (lock, window) = (
            r::cmd("DEL").arg(self.keys.lock(user)).clone(),
            r::cmd("DEL").arg(self.keys.rate(RateBucket::AccountFailures, user)).clone(),
        );
        let (locked, window) = tokio::join!(lock.query_async::<i64>(&mut a), window.query_async::<i64>(&mut b));
        window.map_err(redis_error)?;
        Ok(locked.map_err(redis_error)? > 0)
    }

    // --- durable per-user state (no TTL) ---

    pub(super) async fn user_state(&self, user: &str) -> StoreResult<UserState> {
        // Single-key reads sent together rather than one multi-key step: a
        // Cluster refuses multi-key commands (TRYAGAIN) while their slot is
        // half moved, and these need not be read atomically.
        let c = self.conn().await?;
        let (mut a, mut b, mut t, mut p) = (c.shared(), c.shared(), c.shared(), c.shared());
        let (otp, left, totp, passkeys) = (
            r::cmd("HGET").arg(self.keys.state(user)).arg("otp_enabled").clone(),
            r::cmd("SCARD").arg(self.keys.backup_codes(user)).clone(),
            r::cmd("HEXISTS").arg(self.keys.totp(user)).arg("secret").clone(),
            r::cmd("EXISTS").arg(self.keys.passkeys(user)).clone(),
        );
        let (otp, left, totp, passkeys) = tokio::join!(
            otp.query_async::<Option<String>>(&mut a),
            left.query_async::<u32>(&mut b),
            totp.query_async::<bool>(&mut t),
            passkeys.query_async::<bool>(&mut p)
        );
        let (otp, left, totp) = (otp.map_err(redis_error)?, left.map_err(redis_error)?, totp.map_err(redis_error)?);
        Ok(UserState {
            otp_enabled: otp.as_deref() == Some("1"),
            backup_codes_left: left,
            totp_enabled: totp,
            passkey_enabled: passkeys.map_err(redis_error)?,
        })
    }

    /// One script over the user's durable keys (one slot): what they held,
    /// then gone, with no change slipping in between.
    pub(super) async fn forget_user_state(&self, user: &str) -> StoreResult<UserState> {
        let mut c = self.conn().await?;
        let (otp, left, totp, passkeys): (i64, u32, i64, i64) = SCRIPTS
            .user_forget
            .key(self.keys.state(user))
            .key(self.keys.backup_codes(user))
            .key(self.keys.totp(user))
            .key(self.keys.passkeys(user))
            .key(self.keys.known_ips(user))
            .invoke_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(UserState {
            otp_enabled: otp == 1,
            backup_codes_left: left,
            totp_enabled: totp == 1,
            passkey_enabled: passkeys == 1,
        })
    }

    pub(super) async fn totp_secrets(&self, user: &str) -> StoreResult<TotpSecrets> {
        let mut c = self.conn().await?;
        let (active, pending): (Option<String>, Option<String>) = r::cmd("HMGET")
            .arg(self.keys.totp(user))
            .arg("secret")
            .arg("pending")
            .query_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(TotpSecrets { active, pending })
    }

    pub(super) async fn set_totp_pending(&self, user: &str, sealed: &str) -> StoreResult<()> {
        let mut c = self.conn().await?;
        r::cmd("HSET")
            .arg(self.keys.totp(user))
            .arg("pending")
            .arg(sealed)
            .query_async::<()>(&mut c)
            .await
            .map_err(redis_error)
    }

    pub(super) async fn enable_totp(&self, user: &str, sealed: &str, step: u64) -> StoreResult<()> {
        let mut c = self.conn().await?;
        SCRIPTS
            .totp_enable
            .key(self.keys.totp(user))
            .arg(sealed)
            .arg(step)
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    pub(super) async fn remove_totp(&self, user: &str) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        // `secret` is looked at first so the answer says whether a confirmed
        // app was removed; two removals racing both see it, which is harmless.
        let key = self.keys.totp(user);
        let had: bool = r::cmd("HEXISTS").arg(&key).arg("secret").query_async(&mut c).await.map_err(redis_error)?;
        r::cmd("DEL").arg(&key).query_async::<i64>(&mut c).await.map_err(redis_error)?;
        Ok(had)
    }

    pub(super) async fn use_totp_step(&self, user: &str, step: u64) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let used: i64 =
            SCRIPTS.totp_use.key(self.keys.totp(user)).arg(step).invoke_async(&mut c).await.map_err(redis_error)?;
        Ok(used == 1)
    }

    pub(super) async fn passkeys(&self, user: &str) -> StoreResult<Option<String>> {
        let mut c = self.conn().await?;
        r::cmd("GET").arg(self.keys.passkeys(user)).query_async(&mut c).await.map_err(redis_error)
    }

    pub(super) async fn swap_passkeys(&self, user: &str, old: Option<&str>, new: Option<&str>) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let swapped: i64 = SCRIPTS
            .passkeys_swap
            .key(self.keys.passkeys(user))
            .arg(u8::from(old.is_some()))
            .arg(old.unwrap_or(""))
            .arg(u8::from(new.is_some()))
            .arg(new.unwrap_or(""))
            .invoke_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(swapped == 1)
    }

    pub(super) async fn put_ceremony(&self, key: &str, json: &str, ttl: Duration) -> StoreResult<()> {
        let mut c = self.conn().await?;
        r::cmd("SET")
            .arg(self.keys.ceremony(key))
            .arg(json)
            .arg("PX")
            .arg(duration_ms(ttl).max(1))
            .query_async::<()>(&mut c)
            .await
            .map_err(redis_error)
    }

    pub(super) async fn take_ceremony(&self, key: &str) -> StoreResult<Option<String>> {
        let mut c = self.conn().await?;
        r::cmd("GETDEL").arg(self.keys.ceremony(key)).query_async(&mut c).await.map_err(redis_error)
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
        let members: Vec<String> = hashes.iter().map(hex32).collect();
        let mut c = self.conn().await?;
        SCRIPTS
            .backup_replace
            .key(self.keys.backup_codes(user))
            .arg(members)
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(())
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

    // --- audit (streams, newest last; ids by Redis time) ---

    pub(super) async fn append_audit(&self, rec: &AuditRecord) -> StoreResult<()> {
        // The user's trail and the global one live in different slots: one
        // XADD each, sent together. The fields beside the record are what a
        // search filters on without decoding it.
        let json = to_json(rec)?;
        let c = self.conn().await?;
        // A user's trail is trimmed exactly (it is short); the global one
        // approximately (`~`: whole nodes at a time, far cheaper at a million).
        let add = |key: String, cap: usize, approx: &'static str| {
            let mut h = c.shared();
            let cmd = r::cmd("XADD")
                .arg(key)
                .arg("MAXLEN")
                .arg(approx)
                .arg(cap)
                .arg("*")
                .arg("k")
                .arg(rec.kind.as_str())
                .arg("e")
                .arg(&rec.event)
                .arg("ip")
                .arg(&rec.ip)
                .arg("j")
                .arg(&json)
                .clone();
            async move { cmd.query_async::<String>(&mut h).await }
        };
        let global = add(self.keys.global_audit(), AUDIT_GLOBAL_REDIS, "~");
        match &rec.user {
            Some(user) => {
                let (own, global) = tokio::join!(add(self.keys.user_audit(user), AUDIT_PER_USER, "="), global);
                own.and(global).map_err(redis_error)?;
            }
            None => {
                global.await.map_err(redis_error)?;
            }
        }
        Ok(())
    }

    pub(super) async fn recent_audit(&self, user: Option<&str>, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let key = match user {
            Some(user) => self.keys.user_audit(user),
            None => self.keys.global_audit(),
        };
        let mut c = self.conn().await?;
        let entries: Vec<(String, Vec<(String, String)>)> = r::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut c)
            .await
            .map_err(redis_error)?;
        entries
            .iter()
            .map(|(_, fields)| match fields.iter().find(|(k, _)| k == "j") {
                Some((_, json)) => from_json(json),
                None => Err(StoreError::Corrupt("audit entry without a record".into())),
            })
            .collect()
    }

    pub(super) async fn search_audit(&self, q: &AuditQuery) -> StoreResult<AuditPage> {
        let key = match q.user.as_deref() {
            Some(user) => self.keys.user_audit(user),
            None => self.keys.global_audit(),
        };
        // The newest id allowed: older than the cursor, and within `until`
        // (an id of milliseconds alone means their last entry, as an end).
        let until = q.until.map(|u| u.saturating_add(1).saturating_mul(1000).saturating_sub(1));
        let finish = match (q.before, until) {
            (Some(b), Some(u)) if u < b.ms => u.to_string(),
            (Some(b), _) => format!("({b}"),
            (None, Some(u)) => u.to_string(),
            (None, None) => "+".to_owned(),
        };
        let start = q.since.map_or_else(|| "-".to_owned(), |s| s.saturating_mul(1000).to_string());
        let mut c = self.conn().await?;
        let reply: Vec<String> = SCRIPTS
            .audit_search
            .key(key)
            .arg(finish)
            .arg(start)
            .arg(q.limit)
            .arg(AUDIT_SCAN_BUDGET)
            .arg(q.kind.map_or("", |k| k.as_str()))
            .arg(q.event.as_deref().unwrap_or(""))
            .arg(q.ip.as_deref().unwrap_or(""))
            .invoke_async(&mut c)
            .await
            .map_err(redis_error)?;
        let cursor = |id: &str| id.parse::<AuditCursor>().map_err(|()| StoreError::Corrupt(format!("audit id {id}")));
        let mut items = reply.iter();
        let next = match items.next().map(String::as_str) {
            None | Some("") => None,
            Some(id) => Some(cursor(id)?),
        };
        let mut records = Vec::with_capacity(reply.len() / 2);
        while let (Some(id), Some(json)) = (items.next(), items.next()) {
            records.push((cursor(id)?, from_json(json)?));
        }
        Ok(AuditPage { records, next })
    }

    // --- what an operator looks at ---

    /// Two rounds for the whole page, each its commands sent at once on one
    /// multiplexed connection: the accounts' state, locks, known addresses
    /// and indexed session ids, then whether each indexed session still
    /// lives (an index may hold ended ones). Single-key commands, not a
    /// pipeline: a Cluster refuses a pipeline whose keys cross slots.
    pub(super) async fn account_facts(&self, accounts: &[(String, Vec<String>)]) -> StoreResult<Vec<AccountFacts>> {
        let mut cmds = Vec::new();
        for (user, locks) in accounts {
            cmds.push(r::cmd("HGET").arg(self.keys.state(user)).arg("otp_enabled").clone());
            cmds.push(r::cmd("SCARD").arg(self.keys.backup_codes(user)).clone());
            cmds.push(r::cmd("HEXISTS").arg(self.keys.totp(user)).arg("secret").clone());
            cmds.push(r::cmd("EXISTS").arg(self.keys.passkeys(user)).clone());
            cmds.push(r::cmd("HVALS").arg(self.keys.known_ips(user)).clone());
            cmds.push(r::cmd("ZRANGE").arg(self.keys.user_sessions(user)).arg(0).arg(-1).clone());
            for key in locks {
                cmds.push(r::cmd("PTTL").arg(self.keys.lock(key)).clone());
            }
        }
        let c = self.conn().await?;
        let all_at_once = |cmds: Vec<r::Cmd>| {
            join_all(cmds.into_iter().map(|cmd| {
                let mut h = c.shared();
                async move { cmd.query_async::<r::Value>(&mut h).await }
            }))
        };
        let values: Vec<r::Value> =
            all_at_once(cmds).await.into_iter().collect::<Result<_, _>>().map_err(redis_error)?;
        let mut values = values.into_iter();
        let mut next = || values.next().ok_or_else(|| StoreError::Corrupt("account facts: short reply".into()));
        let (mut out, mut ids) = (Vec::with_capacity(accounts.len()), Vec::with_capacity(accounts.len()));
        for (_, locks) in accounts {
            let otp: Option<String> = from_value(next()?)?;
            let left: u32 = from_value(next()?)?;
            let totp: bool = from_value(next()?)?;
            let passkeys: bool = from_value(next()?)?;
            let seen: Vec<String> = from_value(next()?)?;
            let sessions: Vec<String> = from_value(next()?)?;
            let mut locked_for = None;
            for _ in locks {
                let ms: i64 = from_value(next()?)?;
                if let Ok(ms) = u64::try_from(ms)
                    && ms > 0
                {
                    locked_for = locked_for.max(Some(Duration::from_millis(ms)));
                }
            }
            out.push(AccountFacts {
                factors: UserState {
                    otp_enabled: otp.as_deref() == Some("1"),
                    backup_codes_left: left,
                    totp_enabled: totp,
                    passkey_enabled: passkeys,
                },
                locked_for,
                sessions: 0,
                last_login: seen.iter().filter_map(|s| s.parse().ok()).max(),
            });
            ids.push(sessions);
        }
        let exists: Vec<r::Cmd> =
            ids.iter().flatten().map(|id| r::cmd("EXISTS").arg(self.keys.session(id)).clone()).collect();
        if !exists.is_empty() {
            let live: Vec<r::Value> =
                all_at_once(exists).await.into_iter().collect::<Result<_, _>>().map_err(redis_error)?;
            let mut live = live.into_iter().map(from_value::<bool>);
            for (facts, ids) in out.iter_mut().zip(&ids) {
                let mut n = 0;
                for l in live.by_ref().take(ids.len()) {
                    n += usize::from(l?);
                }
                facts.sessions = n;
            }
        }
        Ok(out)
    }

    pub(super) async fn note_ip_ban(&self, ip: &str, lasts: Duration) -> StoreResult<()> {
        let mut c = self.conn().await?;
        SCRIPTS
            .ban_note
            .key(self.keys.ip_bans())
            .arg(ip)
            .arg(lasts.as_secs().max(1))
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    pub(super) async fn ip_bans(&self, limit: usize) -> StoreResult<Vec<IpBan>> {
        let mut c = self.conn().await?;
        let key = self.keys.ip_bans();
        let (now, _): (String, String) = r::cmd("TIME").query_async(&mut c).await.map_err(redis_error)?;
        let now: u64 = now.parse().map_err(|_| StoreError::Corrupt("TIME".into()))?;
        // Ended bans go first, so the set holds only bans that may still run.
        r::cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now)
            .query_async::<i64>(&mut c)
            .await
            .map_err(redis_error)?;
        let rows: Vec<(String, u64)> = r::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(i64::try_from(limit).unwrap_or(i64::MAX).saturating_sub(1))
            .arg("WITHSCORES")
            .query_async(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(rows.into_iter().map(|(ip, until)| IpBan { ip, until }).collect())
    }

    pub(super) async fn forget_ip_ban(&self, ip: &str) -> StoreResult<()> {
        let mut c = self.conn().await?;
        r::cmd("ZREM").arg(self.keys.ip_bans()).arg(ip).query_async::<i64>(&mut c).await.map_err(redis_error)?;
        Ok(())
    }

    async fn del(&self, keys: &[String]) -> StoreResult<i64> {
        let mut c = self.conn().await?;
        r::cmd("DEL").arg(keys).query_async(&mut c).await.map_err(redis_error)
    }
}
