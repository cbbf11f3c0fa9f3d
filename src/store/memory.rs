//! The embedded backend (`memory://`): one process, maps behind short-held
//! mutexes, one mutex per kind of entry so unrelated operations do not contend.
//! Each kind is bounded by `max_entries` (a flood of logins cannot exhaust
//! memory; it gets `StoreError::Full` instead). A background sweeper removes
//! expired entries; it holds only a `Weak` handle and stops with the store.
//! Durable per-user state lives in `durable` and is persisted to `state_file`.

mod durable;

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use subtle::ConstantTimeEq;

use super::types::{
    AUDIT_GLOBAL, AUDIT_PER_USER, AUDIT_SCAN_BUDGET, AccountFacts, Admission, Attempt, AttemptLimits, AuditCursor,
    AuditPage, AuditQuery, AuditRecord, CodeCheck, CodePurpose, IpBan, IpHistory, PendingLogin, RATE_RECORD_CAP,
    RateBucket, RateDecision, SessionInfo, SessionRecord, StoreError, StoreResult, TokenInfo, TokenRecord, TotpSecrets,
    UserState, duration_ms, lock, session_expiry_ms,
};
use crate::clock::Clock;
use crate::config::StoreConfig;

use self::durable::Durable;

/// How often the sweeper runs.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// A full table purges expired entries inline at most this often (ms), so a
/// flood against a full table cannot make every insert a full scan.
const INLINE_PURGE_EVERY_MS: u64 = 1000;

/// The in-process store.
pub(super) struct MemoryStore {
    clock: Clock,
    max_entries: usize,
    sessions: Mutex<Sessions>,
    pending: Mutex<Table<String, Expiring<PendingLogin>>>,
    codes: Mutex<Table<(String, CodePurpose), CodeEntry>>,
    cooldowns: Mutex<Table<(String, CodePurpose), Until>>,
    rates: Mutex<Table<(RateBucket, String), RateLog>>,
    locks: Mutex<Table<String, Lock>>,
    ceremonies: Mutex<Table<String, Expiring<String>>>,
    audit: Mutex<Audit>,
    /// Addresses banned for their failures, and until when at the latest
    /// (unix seconds), for the operator's list.
    bans: Mutex<HashMap<String, u64>>,
    durable: Durable,
}

/// Entries that can tell whether they still matter at `now_ms`.
trait Expires {
    fn alive(&self, now_ms: u64) -> bool;
}

/// A map bounded by `max_entries`.
struct Table<K, V> {
    map: HashMap<K, V>,
    last_purge_ms: u64,
}

impl<K: Eq + Hash, V: Expires> Table<K, V> {
    fn new() -> Self {
        Table { map: HashMap::new(), last_purge_ms: 0 }
    }

    /// Ok if `key` may be inserted without exceeding `max`.
    fn make_room(&mut self, key: &K, max: usize, now: u64) -> StoreResult<()> {
        if self.map.len() < max || self.map.contains_key(key) {
            return Ok(());
        }
        if now.saturating_sub(self.last_purge_ms) >= INLINE_PURGE_EVERY_MS {
            self.purge(now, |_, _| {});
        }
        if self.map.len() < max { Ok(()) } else { Err(StoreError::Full) }
    }

    /// Drops expired entries, telling `removed` about each.
    fn purge(&mut self, now: u64, mut removed: impl FnMut(&K, &V)) {
        self.map.retain(|k, v| {
            let keep = v.alive(now);
            if !keep {
                removed(k, v);
            }
            keep
        });
        self.last_purge_ms = now;
    }

    /// The live entry under `key`; an expired one is removed.
    fn live_mut(&mut self, key: &K, now: u64) -> Option<&mut V> {
        if self.map.get(key).is_some_and(|v| !v.alive(now)) {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }
}

/// An account's lock: until when (unix ms), and the admitted attempt that
/// set it, if one did (`admit_attempt`), which may lift it again.
struct Lock {
    until: u64,
    by: Option<String>,
}

impl Expires for Lock {
    fn alive(&self, now: u64) -> bool {
        now < self.until
    }
}

/// A deadline in unix ms (cooldowns).
struct Until(u64);

impl Expires for Until {
    fn alive(&self, now: u64) -> bool {
        now < self.0
    }
}

struct Expiring<T> {
    value: T,
    until_ms: u64,
}

impl<T> Expires for Expiring<T> {
    fn alive(&self, now: u64) -> bool {
        now < self.until_ms
    }
}

impl Expires for SessionRecord {
    fn alive(&self, now: u64) -> bool {
        now < session_expiry_ms(self.last_seen, self.idle_secs, self.absolute_expiry)
    }
}

/// Sessions by id, plus each user's ids (for listing and revoke-all).
struct Sessions {
    by_id: Table<String, SessionRecord>,
    by_user: HashMap<String, HashSet<String>>,
}

impl Sessions {
    fn unindex(by_user: &mut HashMap<String, HashSet<String>>, user: &str, id: &str) {
        if let Some(ids) = by_user.get_mut(user) {
            ids.remove(id);
            if ids.is_empty() {
                by_user.remove(user);
            }
        }
    }

    fn remove(&mut self, id: &str) -> Option<SessionRecord> {
        let rec = self.by_id.map.remove(id)?;
        Self::unindex(&mut self.by_user, &rec.user, id);
        Some(rec)
    }

    fn insert(&mut self, id: &str, rec: &SessionRecord, max: usize, now: u64) -> StoreResult<()> {
        let key = id.to_owned();
        if self.by_id.map.len() >= max && !self.by_id.map.contains_key(&key) {
            if now.saturating_sub(self.by_id.last_purge_ms) >= INLINE_PURGE_EVERY_MS {
                self.purge(now);
            }
            if self.by_id.map.len() >= max {
                return Err(StoreError::Full);
            }
        }
        if let Some(old) = self.by_id.map.insert(key.clone(), rec.clone()) {
            Self::unindex(&mut self.by_user, &old.user, id);
        }
        self.by_user.entry(rec.user.clone()).or_default().insert(key);
        Ok(())
    }

    fn purge(&mut self, now: u64) {
        let by_user = &mut self.by_user;
        self.by_id.purge(now, |id, rec| Self::unindex(by_user, &rec.user, id));
    }
}

/// A one-time code. Kept past its expiry (until `keep_until_ms`) so a late
/// attempt hears `Expired` rather than `None`.
struct CodeEntry {
    hash: [u8; 32],
    expires_ms: u64,
    keep_until_ms: u64,
    attempts_left: u32,
}

impl Expires for CodeEntry {
    fn alive(&self, now: u64) -> bool {
        now < self.keep_until_ms
    }
}

/// An exact sliding log: the times (ms) of counted events, oldest first.
struct RateLog {
    hits: VecDeque<u64>,
    window_ms: u64,
}

impl Expires for RateLog {
    fn alive(&self, now: u64) -> bool {
        self.hits.back().is_some_and(|&t| t.saturating_add(self.window_ms) > now)
    }
}

impl RateLog {
    /// Forgets events that left the window `(now - window, now]`.
    fn slide(&mut self, now: u64, window_ms: u64) {
        self.window_ms = window_ms;
        while self.hits.front().is_some_and(|&t| t.saturating_add(window_ms) <= now) {
            self.hits.pop_front();
        }
    }

    /// The decision for one more event; records it if `count` and allowed.
    fn decide(&mut self, now: u64, limit: u32, count: bool) -> RateDecision {
        let n = u32::try_from(self.hits.len()).unwrap_or(u32::MAX);
        if n < limit {
            if count {
                self.hits.push_back(now);
            }
            let used = if count { n + 1 } else { n };
            return RateDecision::Allowed { remaining: limit - used };
        }
        let oldest = self.hits.front().copied().unwrap_or(now);
        let retry_ms = oldest.saturating_add(self.window_ms).saturating_sub(now);
        RateDecision::Limited { retry_after: Duration::from_millis(retry_ms) }
    }
}

/// Capped audit lists, newest first, each entry under its cursor (the
/// cursors only grow, so each list is sorted by them, descending).
struct Audit {
    global: VecDeque<(AuditCursor, AuditRecord)>,
    by_user: HashMap<String, VecDeque<(AuditCursor, AuditRecord)>>,
    last: AuditCursor,
}

impl Audit {
    /// The next cursor at `now_ms`: later than every one given before, as a
    /// Redis stream id is, even if the clock stepped back.
    fn next_cursor(&mut self, now_ms: u64) -> AuditCursor {
        self.last = if now_ms > self.last.ms {
            AuditCursor { ms: now_ms, seq: 0 }
        } else {
            AuditCursor { ms: self.last.ms, seq: self.last.seq + 1 }
        };
        self.last
    }
}

fn push_capped(list: &mut VecDeque<(AuditCursor, AuditRecord)>, at: AuditCursor, rec: &AuditRecord, cap: usize) {
    list.push_front((at, rec.clone()));
    list.truncate(cap);
}

/// A page of `list` (newest first) for `q`: from the newest entry the
/// cursor and time range allow (found by binary search), checking the
/// filters on at most [`AUDIT_SCAN_BUDGET`] entries.
fn search(list: &VecDeque<(AuditCursor, AuditRecord)>, q: &AuditQuery) -> AuditPage {
    let until = q.until.map(|u| AuditCursor { ms: u.saturating_add(1).saturating_mul(1000), seq: 0 });
    let bound = match (q.before, until) {
        (Some(b), Some(u)) => Some(b.min(u)),
        (b, u) => b.or(u),
    };
    let start = bound.map_or(0, |b| list.partition_point(|(at, _)| *at >= b));
    let since = q.since.map(|s| AuditCursor { ms: s.saturating_mul(1000), seq: 0 });
    let mut page = AuditPage::default();
    let mut examined = None;
    for (scanned, (at, rec)) in list.iter().skip(start).enumerate() {
        if since.is_some_and(|s| *at < s) {
            return page;
        }
        if scanned == AUDIT_SCAN_BUDGET {
            // Go on after the last entry looked at.
            page.next = examined;
            return page;
        }
        examined = Some(*at);
        if q.matches(rec) {
            page.records.push((*at, rec.clone()));
            if page.records.len() == q.limit {
                // More only if an older entry remains in range.
                let more = list.get(start + scanned + 1).is_some_and(|(c, _)| since.is_none_or(|s| *c >= s));
                page.next = more.then_some(*at);
                return page;
            }
        }
    }
    page
}

impl MemoryStore {
    /// Loads durable state from `cfg.state_file` and starts the sweeper.
    pub(super) async fn open(cfg: &StoreConfig, clock: Clock) -> StoreResult<Arc<MemoryStore>> {
        let max_entries = cfg.max_entries.max(1);
        let store = Arc::new(MemoryStore {
            clock,
            max_entries,
            sessions: Mutex::new(Sessions { by_id: Table::new(), by_user: HashMap::new() }),
            pending: Mutex::new(Table::new()),
            codes: Mutex::new(Table::new()),
            cooldowns: Mutex::new(Table::new()),
            rates: Mutex::new(Table::new()),
            locks: Mutex::new(Table::new()),
            ceremonies: Mutex::new(Table::new()),
            audit: Mutex::new(Audit {
                global: VecDeque::new(),
                by_user: HashMap::new(),
                last: AuditCursor { ms: 0, seq: 0 },
            }),
            bans: Mutex::new(HashMap::new()),
            durable: Durable::load(cfg.state_file.clone(), max_entries).await?,
        });
        spawn_sweeper(Arc::downgrade(&store));
        Ok(store)
    }

    /// Removes every expired entry.
    fn sweep(&self) {
        let now = self.clock.now_ms();
        lock(&self.sessions).purge(now);
        lock(&self.pending).purge(now, |_, _| {});
        lock(&self.codes).purge(now, |_, _| {});
        lock(&self.cooldowns).purge(now, |_, _| {});
        lock(&self.rates).purge(now, |_, _| {});
        lock(&self.locks).purge(now, |_, _| {});
    }

    pub(super) async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    // --- sessions ---

    pub(super) async fn create_session(&self, id: &str, rec: &SessionRecord) -> StoreResult<()> {
        lock(&self.sessions).insert(id, rec, self.max_entries, self.clock.now_ms())
    }

    /// Not async, unlike the other operations: the hot path's lookup never
    /// waits, so it needs no deadline.
    pub(super) fn touch_session(&self, id: &str) -> Option<SessionRecord> {
        let now = self.clock.now_ms();
        let mut sessions = lock(&self.sessions);
        let rec = sessions.by_id.map.get_mut(id)?;
        if !rec.alive(now) {
            sessions.remove(id);
            return None;
        }
        rec.last_seen = now / 1000;
        Some(rec.clone())
    }

    pub(super) fn peek_session(&self, id: &str) -> Option<SessionRecord> {
        let now = self.clock.now_ms();
        let sessions = lock(&self.sessions);
        sessions.by_id.map.get(id).filter(|rec| rec.alive(now)).cloned()
    }

    pub(super) async fn rotate_session(&self, old_id: &str, new_id: &str, rec: &SessionRecord) -> StoreResult<()> {
        let mut sessions = lock(&self.sessions);
        sessions.remove(old_id);
        sessions.insert(new_id, rec, self.max_entries, self.clock.now_ms())
    }

    /// An expired session that the sweeper has not reached yet is removed too,
    /// but counts as absent, as it does in Redis (where its key has expired).
    pub(super) async fn delete_session(&self, id: &str) -> StoreResult<Option<String>> {
        let now = self.clock.now_ms();
        Ok(lock(&self.sessions).remove(id).filter(|rec| rec.alive(now)).map(|rec| rec.user))
    }

    pub(super) async fn list_sessions(&self, user: &str) -> StoreResult<Vec<SessionInfo>> {
        let now = self.clock.now_ms();
        let mut sessions = lock(&self.sessions);
        let ids: Vec<String> = sessions.by_user.get(user).map(|ids| ids.iter().cloned().collect()).unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match sessions.by_id.map.get(&id) {
                Some(rec) if rec.alive(now) => out.push(SessionInfo { id, record: rec.clone() }),
                _ => {
                    sessions.remove(&id);
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn revoke_session(&self, user: &str, id: &str) -> StoreResult<bool> {
        let now = self.clock.now_ms();
        let mut sessions = lock(&self.sessions);
        let Some(alive) = sessions.by_id.map.get(id).filter(|r| r.user == user).map(|r| r.alive(now)) else {
            return Ok(false);
        };
        sessions.remove(id);
        Ok(alive)
    }

    /// Counts only live sessions, as Redis does.
    pub(super) async fn revoke_user_sessions(&self, user: &str) -> StoreResult<usize> {
        let now = self.clock.now_ms();
        let mut sessions = lock(&self.sessions);
        let ids = sessions.by_user.remove(user).unwrap_or_default();
        Ok(ids.iter().filter_map(|id| sessions.by_id.map.remove(id)).filter(|rec| rec.alive(now)).count())
    }

    // --- pending logins ---

    pub(super) async fn put_pending(&self, id: &str, p: &PendingLogin, ttl: Duration) -> StoreResult<()> {
        let now = self.clock.now_ms();
        let mut pending = lock(&self.pending);
        let key = id.to_owned();
        pending.make_room(&key, self.max_entries, now)?;
        pending.map.insert(key, Expiring { value: p.clone(), until_ms: now.saturating_add(duration_ms(ttl)) });
        Ok(())
    }

    pub(super) async fn get_pending(&self, id: &str) -> StoreResult<Option<PendingLogin>> {
        let mut pending = lock(&self.pending);
        Ok(pending.live_mut(&id.to_owned(), self.clock.now_ms()).map(|e| e.value.clone()))
    }

    pub(super) async fn take_pending(&self, id: &str) -> StoreResult<Option<PendingLogin>> {
        let now = self.clock.now_ms();
        let entry = lock(&self.pending).map.remove(id);
        Ok(entry.filter(|e| e.alive(now)).map(|e| e.value))
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
        let now = self.clock.now_ms();
        let ttl = duration_ms(ttl);
        let key = (user.to_owned(), purpose);
        let mut codes = lock(&self.codes);
        codes.make_room(&key, self.max_entries, now)?;
        codes.map.insert(
            key,
            CodeEntry {
                hash: *code_hash,
                expires_ms: now.saturating_add(ttl),
                keep_until_ms: now.saturating_add(ttl.saturating_mul(2)),
                attempts_left: max_attempts,
            },
        );
        Ok(())
    }

    pub(super) async fn verify_code(
        &self,
        user: &str,
        purpose: CodePurpose,
        candidate_hash: &[u8; 32],
    ) -> StoreResult<CodeCheck> {
        let now = self.clock.now_ms();
        let key = (user.to_owned(), purpose);
        let mut codes = lock(&self.codes);
        let Some(code) = codes.live_mut(&key, now) else {
            return Ok(CodeCheck::None);
        };
        if now >= code.expires_ms {
            return Ok(CodeCheck::Expired);
        }
        if code.attempts_left == 0 {
            return Ok(CodeCheck::Exhausted);
        }
        if bool::from(code.hash.ct_eq(candidate_hash)) {
            // Consumed: a correct code logs in exactly once.
            codes.map.remove(&key);
            return Ok(CodeCheck::Ok);
        }
        code.attempts_left -= 1;
        Ok(match code.attempts_left {
            0 => CodeCheck::Exhausted,
            remaining => CodeCheck::Wrong { remaining },
        })
    }

    pub(super) async fn void_code(&self, user: &str, purpose: CodePurpose) -> StoreResult<()> {
        lock(&self.codes).map.remove(&(user.to_owned(), purpose));
        Ok(())
    }

    pub(super) async fn start_cooldown(
        &self,
        user: &str,
        purpose: CodePurpose,
        cooldown: Duration,
    ) -> StoreResult<Option<Duration>> {
        let now = self.clock.now_ms();
        let key = (user.to_owned(), purpose);
        let mut cooldowns = lock(&self.cooldowns);
        if let Some(Until(until)) = cooldowns.live_mut(&key, now) {
            return Ok(Some(Duration::from_millis(*until - now)));
        }
        cooldowns.make_room(&key, self.max_entries, now)?;
        cooldowns.map.insert(key, Until(now.saturating_add(duration_ms(cooldown))));
        Ok(None)
    }

    // --- sliding windows ---

    /// Runs `f` on the slid log of `bucket`/`key`, creating it if `create`.
    fn with_log<T>(
        &self,
        bucket: RateBucket,
        key: &str,
        window: Duration,
        create: bool,
        f: impl FnOnce(&mut RateLog, u64) -> T,
    ) -> StoreResult<Option<T>> {
        let now = self.clock.now_ms();
        let window_ms = duration_ms(window);
        let k = (bucket, key.to_owned());
        let mut rates = lock(&self.rates);
        if create {
            rates.make_room(&k, self.max_entries, now)?;
        } else if !rates.map.contains_key(&k) {
            return Ok(None);
        }
        let log = rates.map.entry(k).or_insert_with(|| RateLog { hits: VecDeque::new(), window_ms });
        log.slide(now, window_ms);
        Ok(Some(f(log, now)))
    }

    pub(super) async fn rate_hit(
        &self,
        bucket: RateBucket,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> StoreResult<RateDecision> {
        let decision = self.with_log(bucket, key, window, true, |log, now| log.decide(now, limit, true))?;
        Ok(decision.unwrap_or(RateDecision::Allowed { remaining: limit }))
    }

    pub(super) async fn rate_check(
        &self,
        bucket: RateBucket,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> StoreResult<RateDecision> {
        let decision = self.with_log(bucket, key, window, false, |log, now| log.decide(now, limit, false))?;
        Ok(decision.unwrap_or(if limit > 0 {
            RateDecision::Allowed { remaining: limit }
        } else {
            RateDecision::Limited { retry_after: window }
        }))
    }

    pub(super) async fn rate_record(&self, bucket: RateBucket, key: &str, window: Duration) -> StoreResult<u32> {
        let n = self.with_log(bucket, key, window, true, |log, now| {
            log.hits.push_back(now);
            while log.hits.len() > RATE_RECORD_CAP as usize {
                log.hits.pop_front();
            }
            u32::try_from(log.hits.len()).unwrap_or(u32::MAX)
        })?;
        Ok(n.unwrap_or(0))
    }

    pub(super) async fn rate_reset(&self, bucket: RateBucket, key: &str) -> StoreResult<()> {
        lock(&self.rates).map.remove(&(bucket, key.to_owned()));
        Ok(())
    }

    pub(super) async fn clear_windows(&self, buckets: &[RateBucket], key: &str) -> StoreResult<usize> {
        let now = self.clock.now_ms();
        let mut rates = lock(&self.rates);
        Ok(buckets.iter().filter_map(|b| rates.map.remove(&(*b, key.to_owned()))).filter(|l| l.alive(now)).count())
    }

    // --- account lock ---

    pub(super) async fn lock_account(&self, user: &str, duration: Duration) -> StoreResult<()> {
        let now = self.clock.now_ms();
        let key = user.to_owned();
        let mut locks = lock(&self.locks);
        locks.make_room(&key, self.max_entries, now)?;
        locks.map.insert(key, Lock { until: now.saturating_add(duration_ms(duration)), by: None });
        Ok(())
    }

    pub(super) async fn account_locked(&self, user: &str) -> StoreResult<Option<Duration>> {
        let now = self.clock.now_ms();
        let mut locks = lock(&self.locks);
        Ok(locks.live_mut(&user.to_owned(), now).map(|l| Duration::from_millis(l.until - now)))
    }

    pub(super) async fn unlock_account(&self, user: &str) -> StoreResult<bool> {
        let now = self.clock.now_ms();
        let was_locked = lock(&self.locks).map.remove(user).is_some_and(|l| l.alive(now));
        self.rate_reset(RateBucket::AccountFailures, user).await?;
        Ok(was_locked)
    }

    /// One step under the lock and window mutexes (always taken in this
    /// order): the lock, the cap, then the account's window.
    pub(super) async fn admit_attempt(&self, user: &str, limits: &AttemptLimits<'_>) -> StoreResult<Admission> {
        let now = self.clock.now_ms();
        let mut locks = lock(&self.locks);
        if let Some(l) = locks.live_mut(&user.to_owned(), now) {
            return Ok(Admission::Locked { retry_after: Duration::from_millis(l.until - now) });
        }
        let mut rates = lock(&self.rates);
        let cap = match limits.cap {
            Some((key, limit, window)) => {
                let k = (RateBucket::TotpFailures, key.to_owned());
                rates.make_room(&k, self.max_entries, now)?;
                let window_ms = duration_ms(window);
                let log = rates.map.entry(k).or_insert_with(|| RateLog { hits: VecDeque::new(), window_ms });
                log.slide(now, window_ms);
                match log.decide(now, limit, true) {
                    RateDecision::Allowed { remaining } => Some(remaining),
                    RateDecision::Limited { .. } => return Ok(Admission::CapReached),
                }
            }
            None => None,
        };
        let k = (RateBucket::AccountFailures, user.to_owned());
        rates.make_room(&k, self.max_entries, now)?;
        let window_ms = duration_ms(limits.window);
        let log = rates.map.entry(k).or_insert_with(|| RateLog { hits: VecDeque::new(), window_ms });
        log.slide(now, window_ms);
        log.hits.push_back(now);
        let n = u32::try_from(log.hits.len()).unwrap_or(u32::MAX);
        let ticket = format!("{now}:{:016x}", rand::random::<u64>());
        let locked = n >= limits.limit;
        if locked {
            locks.make_room(&user.to_owned(), self.max_entries, now)?;
            let until = now.saturating_add(duration_ms(limits.lock_for));
            locks.map.insert(user.to_owned(), Lock { until, by: Some(ticket.clone()) });
        }
        Ok(Admission::Admitted(Attempt {
            ticket,
            remaining: limits.limit.saturating_sub(n),
            cap_remaining: cap,
            locked,
        }))
    }

    pub(super) async fn attempt_right(&self, user: &str, attempt: &Attempt) -> StoreResult<()> {
        let at: u64 = attempt.ticket.split(':').next().and_then(|t| t.parse().ok()).unwrap_or(0);
        let mut locks = lock(&self.locks);
        if locks.map.get(user).is_some_and(|l| l.by.as_deref() == Some(attempt.ticket.as_str())) {
            locks.map.remove(user);
        }
        let mut rates = lock(&self.rates);
        if let Some(log) = rates.map.get_mut(&(RateBucket::AccountFailures, user.to_owned()))
            && let Some(i) = log.hits.iter().rposition(|&t| t == at)
        {
            log.hits.remove(i);
        }
        Ok(())
    }

    // --- durable per-user state ---

    pub(super) async fn user_state(&self, user: &str) -> StoreResult<UserState> {
        Ok(self.durable.user_state(user))
    }

    pub(super) async fn set_otp_enabled(&self, user: &str, enabled: bool) -> StoreResult<()> {
        self.durable.set_otp_enabled(user, enabled).await
    }

    pub(super) async fn replace_backup_codes(&self, user: &str, hashes: &[[u8; 32]]) -> StoreResult<()> {
        self.durable.replace_backup_codes(user, hashes).await
    }

    pub(super) async fn consume_backup_code(&self, user: &str, hash: &[u8; 32]) -> StoreResult<bool> {
        self.durable.consume_backup_code(user, hash).await
    }

    pub(super) async fn forget_user_state(&self, user: &str) -> StoreResult<UserState> {
        self.durable.forget(user).await
    }

    pub(super) async fn totp_secrets(&self, user: &str) -> StoreResult<TotpSecrets> {
        Ok(self.durable.totp_secrets(user))
    }

    pub(super) async fn set_totp_pending(&self, user: &str, sealed: &str) -> StoreResult<()> {
        self.durable.set_totp_pending(user, sealed).await
    }

    pub(super) async fn enable_totp(&self, user: &str, sealed: &str, step: u64) -> StoreResult<()> {
        self.durable.enable_totp(user, sealed, step).await
    }

    pub(super) async fn remove_totp(&self, user: &str) -> StoreResult<bool> {
        self.durable.remove_totp(user).await
    }

    pub(super) async fn use_totp_step(&self, user: &str, step: u64) -> StoreResult<bool> {
        self.durable.use_totp_step(user, step).await
    }

    pub(super) async fn passkeys(&self, user: &str) -> StoreResult<Option<String>> {
        Ok(self.durable.passkeys(user))
    }

    pub(super) async fn create_token(&self, id: &str, rec: &TokenRecord) -> StoreResult<()> {
        self.durable.create_token(id, rec).await
    }

    pub(super) async fn token(&self, id: &str) -> StoreResult<Option<TokenRecord>> {
        Ok(self.durable.token(id, self.clock.now_unix()))
    }

    pub(super) async fn touch_token(&self, id: &str, now: u64) -> StoreResult<bool> {
        Ok(self.durable.touch_token(id, now))
    }

    pub(super) async fn list_tokens(&self, user: &str) -> StoreResult<Vec<TokenInfo>> {
        Ok(self.durable.list_tokens(user, self.clock.now_unix()))
    }

    pub(super) async fn revoke_token(&self, user: &str, id: &str) -> StoreResult<bool> {
        self.durable.revoke_token(user, id, self.clock.now_unix()).await
    }

    pub(super) async fn swap_passkeys(&self, user: &str, old: Option<&str>, new: Option<&str>) -> StoreResult<bool> {
        self.durable.swap_passkeys(user, old, new).await
    }

    pub(super) async fn put_ceremony(&self, key: &str, json: &str, ttl: Duration) -> StoreResult<()> {
        let now = self.clock.now_ms();
        let mut t = lock(&self.ceremonies);
        let key = key.to_owned();
        t.make_room(&key, self.max_entries, now)?;
        t.map.insert(key, Expiring { value: json.to_owned(), until_ms: now.saturating_add(duration_ms(ttl)) });
        Ok(())
    }

    pub(super) async fn take_ceremony(&self, key: &str) -> StoreResult<Option<String>> {
        let now = self.clock.now_ms();
        let entry = lock(&self.ceremonies).map.remove(key);
        Ok(entry.filter(|e| e.alive(now)).map(|e| e.value))
    }

    pub(super) async fn record_known_ip(&self, user: &str, ip: &str) -> StoreResult<IpHistory> {
        self.durable.record_known_ip(user, ip, self.clock.now_ms() / 1000).await
    }

    // --- audit ---

    pub(super) async fn append_audit(&self, rec: &AuditRecord) -> StoreResult<()> {
        let mut audit = lock(&self.audit);
        if let Some(user) = &rec.user
            && !audit.by_user.contains_key(user)
            && audit.by_user.len() >= self.max_entries
        {
            return Err(StoreError::Full);
        }
        let at = audit.next_cursor(self.clock.now_ms());
        if let Some(user) = &rec.user {
            let list = audit.by_user.entry(user.clone()).or_default();
            push_capped(list, at, rec, AUDIT_PER_USER);
        }
        push_capped(&mut audit.global, at, rec, AUDIT_GLOBAL);
        Ok(())
    }

    pub(super) async fn recent_audit(&self, user: Option<&str>, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let audit = lock(&self.audit);
        let list = match user {
            Some(user) => audit.by_user.get(user),
            None => Some(&audit.global),
        };
        Ok(list.map(|l| l.iter().take(limit).map(|(_, r)| r.clone()).collect()).unwrap_or_default())
    }

    pub(super) async fn search_audit(&self, q: &AuditQuery) -> StoreResult<AuditPage> {
        let audit = lock(&self.audit);
        Ok(match q.user.as_deref() {
            Some(user) => audit.by_user.get(user).map(|l| search(l, q)).unwrap_or_default(),
            None => search(&audit.global, q),
        })
    }

    // --- what an operator looks at ---

    pub(super) async fn account_facts(&self, accounts: &[(String, Vec<String>)]) -> StoreResult<Vec<AccountFacts>> {
        let now = self.clock.now_ms();
        let mut out = Vec::with_capacity(accounts.len());
        for (user, lock_keys) in accounts {
            let locked_for = {
                let mut locks = lock(&self.locks);
                lock_keys
                    .iter()
                    .filter_map(|k| locks.live_mut(k, now).map(|l| Duration::from_millis(l.until - now)))
                    .max()
            };
            let sessions = {
                let sessions = lock(&self.sessions);
                sessions.by_user.get(user).map_or(0, |ids| {
                    ids.iter().filter(|id| sessions.by_id.map.get(*id).is_some_and(|r| r.alive(now))).count()
                })
            };
            out.push(AccountFacts {
                factors: self.durable.user_state(user),
                locked_for,
                sessions,
                last_login: self.durable.last_login(user),
            });
        }
        Ok(out)
    }

    pub(super) async fn note_ip_ban(&self, ip: &str, lasts: Duration) -> StoreResult<()> {
        let now = self.clock.now_unix();
        let until = now + lasts.as_secs().max(1);
        let mut bans = lock(&self.bans);
        if !bans.contains_key(ip) && bans.len() >= self.max_entries {
            bans.retain(|_, u| *u > now);
            if bans.len() >= self.max_entries {
                return Err(StoreError::Full);
            }
        }
        let at = bans.entry(ip.to_owned()).or_insert(until);
        *at = (*at).max(until);
        Ok(())
    }

    pub(super) async fn ip_bans(&self, limit: usize) -> StoreResult<Vec<IpBan>> {
        let now = self.clock.now_unix();
        let mut bans = lock(&self.bans);
        bans.retain(|_, u| *u > now);
        let mut list: Vec<IpBan> = bans.iter().map(|(ip, until)| IpBan { ip: ip.clone(), until: *until }).collect();
        list.sort_by(|a, b| (a.until, &a.ip).cmp(&(b.until, &b.ip)));
        list.truncate(limit);
        Ok(list)
    }

    pub(super) async fn forget_ip_ban(&self, ip: &str) -> StoreResult<()> {
        lock(&self.bans).remove(ip);
        Ok(())
    }
}

/// Sweeps every `SWEEP_EVERY` until the store is dropped.
fn spawn_sweeper(store: Weak<MemoryStore>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_EVERY);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(store) = store.upgrade() else { break };
            store.sweep();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_log_allows_limit_then_reports_when_the_oldest_leaves() {
        let mut log = RateLog { hits: VecDeque::new(), window_ms: 1000 };
        log.slide(0, 1000);
        assert_eq!(log.decide(0, 2, true), RateDecision::Allowed { remaining: 1 });
        log.slide(400, 1000);
        assert_eq!(log.decide(400, 2, true), RateDecision::Allowed { remaining: 0 });
        log.slide(500, 1000);
        assert_eq!(log.decide(500, 2, true), RateDecision::Limited { retry_after: Duration::from_millis(500) });
        log.slide(1000, 1000);
        assert_eq!(log.decide(1000, 2, true), RateDecision::Allowed { remaining: 0 });
    }
}
