//! Access tokens in Redis, laid out as sessions are (`sessions.rs`):
//!
//! - `{t:<id>}:token`, one hash per token (`rec`: the record's JSON, `user`,
//!   `last_used`), tagged by its own id, expiring when the token does;
//! - `{u:<user>}:tokens`, the user's index (a sorted set of ids scored by
//!   their expiry), which lists and revoke-all walk; an entry whose token is
//!   gone is dropped when found.
//!
//! A request with a token reads its hash by id: one round trip.

use futures_util::future::join_all;

use super::RedisStore;
use super::shared::{MAX_EXPIRY_MS, SCRIPTS, from_json, redis_error, to_json};
use crate::store::types::{SessionRecord, StoreResult, TokenInfo, TokenRecord};
use deadpool_redis::redis as r;

impl RedisStore {
    /// The session `id` from the near cache, when it is there and alive.
    pub(in crate::store) fn cached_peek(&self, id: &str) -> Option<SessionRecord> {
        self.near.as_ref()?.peek(id)
    }

    /// The session `id` read in Redis without touching it.
    pub(in crate::store) async fn peek_session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let mut c = self.conn().await?;
        let found: Option<(String, u64)> =
            SCRIPTS.session_peek.key(self.keys.session(id)).invoke_async(&mut c).await.map_err(redis_error)?;
        let Some((json, last_seen)) = found else { return Ok(None) };
        let mut rec: SessionRecord = from_json(&json)?;
        rec.last_seen = last_seen;
        Ok(Some(rec))
    }

    pub(in crate::store) async fn create_token(&self, id: &str, rec: &TokenRecord) -> StoreResult<()> {
        let until_ms = rec.expires_at.saturating_mul(1000).min(MAX_EXPIRY_MS);
        let mut c = self.conn().await?;
        // Indexed first, as sessions are: revoke-all always finds the token.
        SCRIPTS
            .index_add
            .key(self.keys.user_tokens(&rec.user))
            .arg(id)
            .arg(until_ms)
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(redis_error)?;
        let key = self.keys.token(id);
        r::pipe()
            .atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("rec")
            .arg(to_json(rec)?)
            .arg("user")
            .arg(&rec.user)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&key)
            .arg(until_ms)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(redis_error)
    }

    pub(in crate::store) async fn token(&self, id: &str) -> StoreResult<Option<TokenRecord>> {
        let mut c = self.conn().await?;
        self.token_with(&mut c, id).await
    }

    pub(in crate::store) async fn touch_token(&self, id: &str, now: u64) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let touched: i64 =
            SCRIPTS.token_touch.key(self.keys.token(id)).arg(now).invoke_async(&mut c).await.map_err(redis_error)?;
        Ok(touched == 1)
    }

    pub(in crate::store) async fn list_tokens(&self, user: &str) -> StoreResult<Vec<TokenInfo>> {
        let index = self.keys.user_tokens(user);
        let mut c = self.conn().await?;
        let ids: Vec<String> =
            r::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query_async(&mut c).await.map_err(redis_error)?;
        let loaded = join_all(ids.iter().map(|id| {
            let mut h = c.shared();
            async move { self.token_with(&mut h, id).await }
        }))
        .await;
        let (mut out, mut gone) = (Vec::new(), Vec::new());
        for (id, found) in ids.iter().zip(loaded) {
            match found? {
                Some(record) => out.push(TokenInfo { id: id.clone(), record }),
                None => gone.push(id.as_str()),
            }
        }
        if !gone.is_empty() {
            r::cmd("ZREM").arg(&index).arg(&gone).query_async::<i64>(&mut c).await.map_err(redis_error)?;
        }
        Ok(out)
    }

    async fn token_with(
        &self,
        c: &mut (impl r::aio::ConnectionLike + Send),
        id: &str,
    ) -> StoreResult<Option<TokenRecord>> {
        let (json, last_used): (Option<String>, Option<u64>) = r::cmd("HMGET")
            .arg(self.keys.token(id))
            .arg("rec")
            .arg("last_used")
            .query_async(c)
            .await
            .map_err(redis_error)?;
        let Some(json) = json else { return Ok(None) };
        let mut rec: TokenRecord = from_json(&json)?;
        rec.last_used = last_used.or(rec.last_used);
        Ok(Some(rec))
    }

    pub(in crate::store) async fn revoke_token(&self, user: &str, id: &str) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let revoked: i64 =
            SCRIPTS.token_revoke.key(self.keys.token(id)).arg(user).invoke_async(&mut c).await.map_err(redis_error)?;
        if revoked == 1 {
            r::cmd("ZREM")
                .arg(self.keys.user_tokens(user))
                .arg(id)
                .query_async::<i64>(&mut c)
                .await
                .map_err(redis_error)?;
        }
        Ok(revoked == 1)
    }
}
