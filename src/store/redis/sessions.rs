//! Sessions in Redis, laid out so that they spread over a Cluster:
//!
//! - `{s:<id>}:sess`, one hash per session, tagged by its own id: every atomic
//!   step on a session (`session_touch.lua`, `session_end.lua`,
//!   `session_put.lua`) touches that key alone.
//! - `{u:<user>}:sessions`, the user's index (a sorted set of ids scored by
//!   when each was added), in the user's slot, kept in step by separate
//!   commands ordered so that a stale entry is harmless: an id is indexed
//!   *before* its session is written, so revoke-all always finds a session;
//!   an entry whose session is gone is skipped, and dropped once it is older
//!   than `INDEX_GRACE_MS` (younger ones may be sessions being created).
//! - A rotation ends the old session before writing the new one, so the two
//!   never both exist; a failure between the steps logs the user out.
//!
//! Every step that ends a session announces its id on the revocation channel
//! from inside its script; this process also forgets the id from its own near
//! cache as soon as the step returns, so its next request never sees it.

use futures_util::future::join_all;

use super::RedisStore;
use super::near_cache::{Cached, Lookup, Ticket};
use super::shared::{MAX_EXPIRY_MS, SCRIPTS, from_json, redis_error, to_json};
use crate::store::types::{SessionInfo, SessionRecord, StoreError, StoreResult, session_expiry_ms};

/// How old an index entry without a session must be before it is dropped: far
/// longer than any create takes between indexing and writing the session.
const INDEX_GRACE_MS: u64 = 60_000;

impl RedisStore {
    /// The session `id` from the near cache, when it can answer alone.
    pub(in crate::store) fn cached_session(&self, id: &str) -> Cached {
        match self.near.as_ref().map(|n| n.lookup(id)) {
            Some(Lookup::Hit(rec)) => Cached::Hit(rec),
            Some(Lookup::Ask(ticket)) => Cached::Ask(Some(ticket)),
            None => Cached::Ask(None),
        }
    }

    /// Load-and-touch in Redis (a near-cache miss or write-back, or no cache).
    pub(in crate::store) async fn touch_session(
        &self,
        id: &str,
        ticket: Option<Ticket>,
    ) -> StoreResult<Option<SessionRecord>> {
        let result = self.touch_in_redis(id).await;
        if let Some(near) = &self.near {
            match (&result, ticket) {
                (Ok((found, redis_ms)), Some(t)) => near.fill(t, id, found.as_ref(), *redis_ms),
                (Ok(_), None) => {}
                (Err(_), _) => near.abandon(id),
            }
        }
        result.map(|(found, _)| found)
    }

    async fn touch_in_redis(&self, id: &str) -> StoreResult<(Option<SessionRecord>, Option<u64>)> {
        let mut c = self.conn().await?;
        let found: Option<(String, u64, u64)> =
            SCRIPTS.session_touch.key(self.keys.session(id)).invoke_async(&mut c).await.map_err(redis_error)?;
        let Some((json, last_seen, redis_ms)) = found else { return Ok((None, None)) };
        let mut rec: SessionRecord = from_json(&json)?;
        rec.last_seen = last_seen;
        Ok((Some(rec), Some(redis_ms)))
    }

    pub(in crate::store) async fn create_session(&self, id: &str, rec: &SessionRecord) -> StoreResult<()> {
        let ticket = self.near.as_ref().map(|n| n.ticket(id));
        self.index(&rec.user, id, rec.absolute_expiry).await?;
        let redis_ms = self.put(id, rec).await?;
        self.remember(ticket, id, rec, redis_ms);
        Ok(())
    }

    pub(in crate::store) async fn rotate_session(
        &self,
        old_id: &str,
        new_id: &str,
        rec: &SessionRecord,
    ) -> StoreResult<()> {
        let ticket = self.near.as_ref().map(|n| n.ticket(new_id));
        self.index(&rec.user, new_id, rec.absolute_expiry).await?;
        let old_user = self.end(old_id, None).await?;
        let redis_ms = self.put(new_id, rec).await?;
        self.remember(ticket, new_id, rec, redis_ms);
        if let Some(user) = old_user {
            self.unindex(&user, &[old_id]).await?;
        }
        Ok(())
    }

    pub(in crate::store) async fn delete_session(&self, id: &str) -> StoreResult<Option<String>> {
        let user = self.end(id, None).await?;
        if let Some(user) = &user {
            self.unindex(user, &[id]).await?;
        }
        Ok(user)
    }

    pub(in crate::store) async fn revoke_session(&self, user: &str, id: &str) -> StoreResult<bool> {
        let ended = self.end(id, Some(user)).await?.is_some();
        if ended {
            self.unindex(user, &[id]).await?;
        }
        Ok(ended)
    }

    pub(in crate::store) async fn revoke_user_sessions(&self, user: &str) -> StoreResult<usize> {
        let ids = self.indexed(user).await?;
        let c = self.conn().await?;
        let channel = self.keys.revoked_channel();
        let results = join_all(ids.iter().map(|id| {
            let (mut h, key, channel) = (c.shared(), self.keys.session(id), &channel);
            async move {
                SCRIPTS.session_end.key(key).arg(channel).arg(id).arg(user).invoke_async::<Option<String>>(&mut h).await
            }
        }))
        .await;
        drop(c);
        let (mut ended, mut absent, mut failure) = (Vec::new(), Vec::new(), None);
        for (id, result) in ids.iter().zip(results) {
            self.forget(id);
            match result {
                Ok(Some(_)) => ended.push(id.as_str()),
                Ok(None) => absent.push(id.as_str()),
                Err(e) => failure = Some(redis_error(e)),
            }
        }
        self.unindex(user, &ended).await?;
        self.prune(user, &absent).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(ended.len()),
        }
    }

    pub(in crate::store) async fn list_sessions(&self, user: &str) -> StoreResult<Vec<SessionInfo>> {
        let ids = self.indexed(user).await?;
        let c = self.conn().await?;
        let loaded = join_all(ids.iter().map(|id| {
            let mut h = c.shared();
            let cmd =
                deadpool_redis::redis::cmd("HMGET").arg(self.keys.session(id)).arg("rec").arg("last_seen").clone();
            async move { cmd.query_async::<(Option<String>, Option<String>)>(&mut h).await }
        }))
        .await;
        drop(c);
        let (mut live, mut absent) = (Vec::new(), Vec::new());
        for (id, fields) in ids.iter().zip(loaded) {
            match fields.map_err(redis_error)? {
                (Some(json), Some(last_seen)) => {
                    let mut record: SessionRecord = from_json(&json)?;
                    record.last_seen =
                        last_seen.parse().map_err(|_| StoreError::Corrupt("session last_seen".into()))?;
                    live.push(SessionInfo { id: id.clone(), record });
                }
                _ => absent.push(id.as_str()),
            }
        }
        self.prune(user, &absent).await?;
        Ok(live)
    }

    // --- the steps ---

    /// Writes the session hash; returns Redis's time (ms).
    async fn put(&self, id: &str, rec: &SessionRecord) -> StoreResult<u64> {
        let expiry = session_expiry_ms(rec.last_seen, rec.idle_secs, rec.absolute_expiry).min(MAX_EXPIRY_MS);
        let mut c = self.conn().await?;
        SCRIPTS
            .session_put
            .key(self.keys.session(id))
            .arg(to_json(rec)?)
            .arg(&rec.user)
            .arg(rec.last_seen)
            .arg(rec.idle_secs)
            .arg(rec.absolute_expiry)
            .arg(expiry)
            .arg(self.keys.revoked_channel())
            .arg(id)
            .invoke_async(&mut c)
            .await
            .map_err(redis_error)
    }

    /// Ends the session (only if `owner`'s, when given) and announces it;
    /// returns its user if it existed. Forgets it here whatever happened.
    async fn end(&self, id: &str, owner: Option<&str>) -> StoreResult<Option<String>> {
        let result = async {
            let mut c = self.conn().await?;
            SCRIPTS
                .session_end
                .key(self.keys.session(id))
                .arg(self.keys.revoked_channel())
                .arg(id)
                .arg(owner.unwrap_or(""))
                .invoke_async(&mut c)
                .await
                .map_err(redis_error)
        }
        .await;
        // After the step (a load that raced it is refused too), and even on
        // failure: the step may have run.
        self.forget(id);
        result
    }

    async fn index(&self, user: &str, id: &str, absolute_expiry: u64) -> StoreResult<()> {
        let until = session_expiry_ms(absolute_expiry, 0, absolute_expiry).min(MAX_EXPIRY_MS);
        let mut c = self.conn().await?;
        SCRIPTS
            .index_add
            .key(self.keys.user_sessions(user))
            .arg(id)
            .arg(until)
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn indexed(&self, user: &str) -> StoreResult<Vec<String>> {
        let mut c = self.conn().await?;
        deadpool_redis::redis::cmd("ZRANGE")
            .arg(self.keys.user_sessions(user))
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await
            .map_err(redis_error)
    }

    /// Drops ids of sessions this store ended from the user's index.
    async fn unindex(&self, user: &str, ids: &[&str]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        deadpool_redis::redis::cmd("ZREM")
            .arg(self.keys.user_sessions(user))
            .arg(ids)
            .query_async::<i64>(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    /// Drops ids whose session was found gone, once past the grace period.
    async fn prune(&self, user: &str, ids: &[&str]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        SCRIPTS
            .index_prune
            .key(self.keys.user_sessions(user))
            .arg(INDEX_GRACE_MS)
            .arg(ids)
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    /// Caches a session this process just wrote, unless it was ended meanwhile.
    fn remember(&self, ticket: Option<Ticket>, id: &str, rec: &SessionRecord, redis_ms: u64) {
        if let (Some(near), Some(ticket)) = (&self.near, ticket) {
            near.fill(ticket, id, Some(rec), Some(redis_ms));
        }
    }

    fn forget(&self, id: &str) {
        if let Some(near) = &self.near {
            near.invalidate(id);
        }
    }
}
