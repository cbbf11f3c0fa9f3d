//! The near cache: live sessions kept in the gateway process, so that an
//! authenticated request in the steady state makes no Redis round trip.
//!
//! What keeps it honest:
//! - **Expiry is judged here on every hit**, absolute and idle, by the same
//!   rule the Redis scripts apply, on Redis's clock as estimated from the last
//!   reply (`skew`). A session that looks idle-expired here goes to Redis,
//!   which may know a later `last_seen` from another replica.
//! - **The sliding expiry is written back** at most once per write-back
//!   interval (a tenth of the session's idle timeout, between 1 s and 60 s);
//!   the hits in between slide it only here.
//! - **Revocation is pushed**: every step that ends a session publishes its id
//!   from inside the same Lua script, and `invalidation.rs` removes it here.
//! - **Serving needs a live channel**: the cache answers only while the
//!   connection carrying those announcements is up and has answered a ping
//!   within the lease. When it drops, everything cached is forgotten at once
//!   and requests go to Redis as if there were no cache.
//! - **A load cannot resurrect a revoked session**: an announcement may
//!   overtake the reply of a load that started before it. Each shard counts
//!   announcements (`epoch`); a load takes a ticket before asking Redis and
//!   fills the cache only if no announcement hit its shard meanwhile.
//!
//! Bounded by entries and by (approximate) bytes, split evenly over shards;
//! the least recently used entry of a shard makes room.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus::IntCounter;

use crate::clock::Clock;
use crate::store::types::{SessionRecord, session_expiry_ms};

/// Shards: independent locks, so concurrent requests rarely contend.
const SHARDS: usize = 16;
/// Bookkeeping per entry beyond its strings (map and LRU slots, the record's
/// fixed fields, the allocations' headers), for the byte bound.
const ENTRY_OVERHEAD: usize = 200;
/// The longest the write-back interval gets, whatever the idle timeout.
const MAX_WRITE_BACK: Duration = Duration::from_secs(60);
/// A write-back that has not finished in this long may be claimed again (its
/// request may have been dropped mid-flight).
const WRITE_BACK_RETRY_MS: u64 = 5_000;

/// Bounds and switch, from `[store]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub max_entries: usize,
    pub max_bytes: usize,
}

/// What the near cache knows of a session before Redis is asked.
pub(in crate::store) enum Cached {
    Hit(SessionRecord),
    /// Ask Redis, then record the answer under this ticket (if caching).
    Ask(Option<Ticket>),
}

/// What a session lookup found.
pub(in crate::store) enum Lookup {
    /// Live, and the sliding expiry need not be written back yet.
    Hit(SessionRecord),
    /// Redis must be asked (absent, looks expired, or due for write-back);
    /// `fill` with this ticket afterwards.
    Ask(Ticket),
}

/// Taken before asking Redis; says whether the answer may still be cached.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) struct Ticket {
    shard: usize,
    epoch: u64,
}

pub(super) struct NearCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: Limits,
    /// True while the invalidation channel is subscribed.
    live: AtomicBool,
    /// Milliseconds since `origin` until which the channel is known to be
    /// delivering (a ping answered after everything published before it).
    lease_until: AtomicU64,
    origin: Instant,
    /// Redis's clock minus this process's (ms), from the last timed reply.
    skew_ms: AtomicI64,
    clock: Clock,
    events: Events,
}

/// The counters of `portcullis_session_cache_events_total`, resolved once.
struct Events {
    hit: IntCounter,
    miss: IntCounter,
    write_back: IntCounter,
    invalidation: IntCounter,
    eviction: IntCounter,
    flush: IntCounter,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Arc<str>, Entry>,
    /// Use order: tick → id; the first is the least recently used.
    lru: BTreeMap<u64, Arc<str>>,
    tick: u64,
    bytes: usize,
    /// Bumped by every announcement and flush that touches this shard.
    epoch: u64,
}

struct Entry {
    /// The map's key again, for the LRU order.
    key: Arc<str>,
    record: SessionRecord,
    /// When this entry was last used (its key in `lru`).
    tick: u64,
    size: usize,
    /// Local ms (since `origin`) a write-back was claimed at; 0 if none runs.
    write_back_since: u64,
}

impl NearCache {
    pub(super) fn new(limits: Limits, clock: Clock) -> NearCache {
        let m = crate::metrics::get();
        let event = |e: &str| m.session_cache_events.with_label_values(&[e]);
        NearCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: Limits {
                max_entries: limits.max_entries.div_ceil(SHARDS).max(1),
                max_bytes: limits.max_bytes.div_ceil(SHARDS).max(1),
            },
            live: AtomicBool::new(false),
            lease_until: AtomicU64::new(0),
            // Leases count in monotonic time from here, as the pings that extend them.
            #[allow(clippy::disallowed_methods)]
            origin: Instant::now(),
            skew_ms: AtomicI64::new(0),
            clock,
            events: Events {
                hit: event("hit"),
                miss: event("miss"),
                write_back: event("write_back"),
                invalidation: event("invalidation"),
                eviction: event("eviction"),
                flush: event("flush"),
            },
        }
    }

    /// The session `id`, if it can be answered here; else a ticket for asking Redis.
    pub(super) fn lookup(&self, id: &str) -> Lookup {
        let i = shard_of(id);
        let mut shard = self.lock(i);
        let ticket = Ticket { shard: i, epoch: shard.epoch };
        if !self.serving() {
            return Lookup::Ask(ticket);
        }
        let now = self.redis_now_ms();
        let local = self.local_ms();
        let Some(entry) = shard.map.get_mut(id) else {
            self.events.miss.inc();
            return Lookup::Ask(ticket);
        };
        let r = &entry.record;
        if now >= session_expiry_ms(r.last_seen, r.idle_secs, r.absolute_expiry) {
            // Dead by what this replica knows; Redis may know a later touch.
            shard.remove(id);
            self.events.miss.inc();
            return Lookup::Ask(ticket);
        }
        let due = r.last_seen.saturating_add(write_back_interval(r.idle_secs)).saturating_mul(1000);
        let claimable =
            entry.write_back_since == 0 || local.saturating_sub(entry.write_back_since) >= WRITE_BACK_RETRY_MS;
        if now >= due && claimable {
            // This request writes the slide back; the others keep hitting meanwhile.
            entry.write_back_since = local.max(1);
            self.events.write_back.inc();
            return Lookup::Ask(ticket);
        }
        let mut record = entry.record.clone();
        record.last_seen = record.last_seen.max(now / 1000);
        shard.touch(id);
        self.events.hit.inc();
        Lookup::Hit(record)
    }

    /// The session `id` if it is cached and alive, without touching it: no
    /// write-back is claimed and its last use is left as it was.
    pub(super) fn peek(&self, id: &str) -> Option<SessionRecord> {
        if !self.serving() {
            return None;
        }
        let now = self.redis_now_ms();
        let shard = self.lock(shard_of(id));
        let r = &shard.map.get(id)?.record;
        (now < session_expiry_ms(r.last_seen, r.idle_secs, r.absolute_expiry)).then(|| r.clone())
    }

    /// A ticket for a step that will write `id` (create, rotate).
    pub(super) fn ticket(&self, id: &str) -> Ticket {
        let i = shard_of(id);
        Ticket { shard: i, epoch: self.lock(i).epoch }
    }

    /// Records what Redis said about `id` (`None`: no live session), caching
    /// it if nothing was announced in its shard since `ticket` was taken.
    /// `redis_ms` is Redis's clock when it answered.
    pub(super) fn fill(&self, ticket: Ticket, id: &str, found: Option<&SessionRecord>, redis_ms: Option<u64>) {
        if let Some(ms) = redis_ms {
            self.observe_redis_time(ms);
        }
        let mut shard = self.lock(ticket.shard);
        let Some(record) = found else {
            shard.remove(id);
            return;
        };
        if shard.epoch != ticket.epoch || !self.serving() {
            if let Some(e) = shard.map.get_mut(id) {
                e.write_back_since = 0;
            }
            return;
        }
        if self.redis_now_ms() >= session_expiry_ms(record.last_seen, record.idle_secs, record.absolute_expiry) {
            shard.remove(id);
            return;
        }
        let evicted = shard.insert(id, record.clone(), self.per_shard);
        self.events.eviction.inc_by(evicted);
    }

    /// A write-back or load failed: let the next request try again.
    pub(super) fn abandon(&self, id: &str) {
        if let Some(e) = self.lock(shard_of(id)).map.get_mut(id) {
            e.write_back_since = 0;
        }
    }

    /// The session `id` ended: forget it, and let no load in flight cache it.
    pub(super) fn invalidate(&self, id: &str) {
        let mut shard = self.lock(shard_of(id));
        shard.epoch += 1;
        shard.remove(id);
        self.events.invalidation.inc();
    }

    /// The channel went down (or came up, after possibly missing
    /// announcements): forget everything and stop serving until `go_live`.
    pub(super) fn go_dark(&self) {
        self.live.store(false, Ordering::SeqCst);
        self.flush();
    }

    /// The channel is subscribed: start from empty and serve again.
    pub(super) fn go_live(&self) {
        self.flush();
        self.live.store(true, Ordering::SeqCst);
    }

    /// A ping sent at `sent` was answered after every announcement published
    /// before it: the cache may serve until `sent + lease`.
    pub(super) fn extend_lease(&self, sent: Instant, lease: Duration) {
        let until = sent.saturating_duration_since(self.origin) + lease;
        self.lease_until.fetch_max(u64::try_from(until.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Forgets everything (an announcement that could not be read).
    pub(super) fn forget_all(&self) {
        self.flush();
    }

    fn flush(&self) {
        for i in 0..SHARDS {
            let mut shard = self.lock(i);
            shard.epoch += 1;
            shard.map.clear();
            shard.lru.clear();
            shard.bytes = 0;
        }
        self.events.flush.inc();
    }

    pub(super) fn serving(&self) -> bool {
        self.live.load(Ordering::SeqCst) && self.local_ms() < self.lease_until.load(Ordering::SeqCst)
    }

    /// Entries and bytes held (for tests and the bench).
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        (0..SHARDS).map(|i| self.lock(i)).fold((0, 0), |(n, b), s| (n + s.map.len(), b + s.bytes))
    }

    fn observe_redis_time(&self, redis_ms: u64) {
        let skew = i128::from(redis_ms) - i128::from(self.clock.now_ms());
        self.skew_ms.store(i64::try_from(skew).unwrap_or(0), Ordering::Relaxed);
    }

    fn redis_now_ms(&self) -> u64 {
        self.clock.now_ms().saturating_add_signed(self.skew_ms.load(Ordering::Relaxed))
    }

    fn local_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding a shard leaves a consistent map (every change
        // is a single insert or remove): keep using it.
        self.shards[i].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shard {
    fn remove(&mut self, id: &str) {
        if let Some(e) = self.map.remove(id) {
            self.lru.remove(&e.tick);
            self.bytes -= e.size;
        }
    }

    fn touch(&mut self, id: &str) {
        self.tick += 1;
        if let Some(e) = self.map.get_mut(id) {
            self.lru.remove(&e.tick);
            e.tick = self.tick;
            self.lru.insert(e.tick, e.key.clone());
        }
    }

    /// Inserts or replaces; returns how many entries were evicted for room.
    fn insert(&mut self, id: &str, record: SessionRecord, limits: Limits) -> u64 {
        self.remove(id);
        let size = ENTRY_OVERHEAD + 2 * id.len() + record.user.len() + record.ip.len() + record.device.len();
        let mut evicted = 0;
        while !self.map.is_empty() && (self.map.len() >= limits.max_entries || self.bytes + size > limits.max_bytes) {
            let Some((_, oldest)) = self.lru.pop_first() else { break };
            if let Some(e) = self.map.remove(&oldest) {
                self.bytes -= e.size;
                evicted += 1;
            }
        }
        if size > limits.max_bytes {
            return evicted;
        }
        self.tick += 1;
        let key: Arc<str> = Arc::from(id);
        self.lru.insert(self.tick, key.clone());
        self.map.insert(key.clone(), Entry { key, record, tick: self.tick, size, write_back_since: 0 });
        self.bytes += size;
        evicted
    }
}

/// How long a replica may slide a session's expiry without telling Redis: a
/// tenth of its idle timeout, at least a second (the resolution of
/// `last_seen`) and at most `MAX_WRITE_BACK`.
pub(super) fn write_back_interval(idle_secs: u64) -> u64 {
    (idle_secs / 10).clamp(1, MAX_WRITE_BACK.as_secs())
}

fn shard_of(id: &str) -> usize {
    // Ids are base64 of a SHA-256: any few bytes are uniformly spread.
    id.bytes().take(4).fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b))) % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::types::AuthLevel;

    const NOW_S: u64 = 1_800_000_000;

    fn record(last_seen: u64, idle: u64, abs: u64) -> SessionRecord {
        SessionRecord {
            user: "alice".into(),
            level: AuthLevel::TwoFactor,
            created: last_seen,
            last_seen,
            idle_secs: idle,
            absolute_expiry: abs,
            remember_me: false,
            ip: "192.0.2.1".into(),
            device: "Firefox on Linux".into(),
            credential: "fingerprint".into(),
        }
    }

    /// A live cache on a manual clock at `NOW_S`, with a long lease.
    #[allow(clippy::disallowed_methods)] // a lease, in the monotonic time leases count in
    fn cache(limits: Limits) -> (NearCache, Clock) {
        let clock = Clock::manual(NOW_S * 1000);
        let c = NearCache::new(limits, clock.clone());
        c.go_live();
        c.extend_lease(Instant::now(), Duration::from_secs(3600));
        (c, clock)
    }

    fn roomy() -> Limits {
        Limits { max_entries: 1000, max_bytes: 1 << 20 }
    }

    fn load(c: &NearCache, id: &str, rec: &SessionRecord) {
        let Lookup::Ask(t) = c.lookup(id) else { panic!("{id} was cached already") };
        c.fill(t, id, Some(rec), Some(c.clock.now_ms()));
    }

    fn hit(c: &NearCache, id: &str) -> Option<SessionRecord> {
        match c.lookup(id) {
            Lookup::Hit(r) => Some(r),
            Lookup::Ask(_) => None,
        }
    }

    #[test]
    fn a_loaded_session_is_served_with_its_last_seen_slid_to_now() {
        let (c, clock) = cache(roomy());
        let id = Store::session_id("tok");
        load(&c, &id, &record(NOW_S, 600, NOW_S + 3600));
        clock.advance(Duration::from_secs(30));
        let r = hit(&c, &id).expect("served from the cache");
        assert_eq!(r.last_seen, NOW_S + 30);
    }

    #[test]
    fn the_slide_is_written_back_once_per_interval_by_one_request() {
        let (c, clock) = cache(roomy());
        let id = Store::session_id("tok");
        load(&c, &id, &record(NOW_S, 600, NOW_S + 3600));
        assert_eq!(write_back_interval(600), 60);
        clock.advance(Duration::from_secs(59));
        assert!(hit(&c, &id).is_some(), "inside the interval");
        clock.advance(Duration::from_secs(1));
        let Lookup::Ask(t) = c.lookup(&id) else { panic!("due for write-back") };
        assert!(hit(&c, &id).is_some(), "others keep hitting while one writes back");
        c.fill(t, &id, Some(&record(NOW_S + 60, 600, NOW_S + 3600)), Some(clock.now_ms()));
        assert!(hit(&c, &id).is_some(), "written back: the next interval starts");
        assert_eq!(write_back_interval(5), 1);
        assert_eq!(write_back_interval(86_400), 60);
    }

    #[test]
    fn expiry_is_judged_locally_on_every_lookup() {
        let (c, clock) = cache(roomy());
        let idle = Store::session_id("idle");
        let abs = Store::session_id("abs");
        load(&c, &idle, &record(NOW_S, 100, NOW_S + 3600));
        load(&c, &abs, &record(NOW_S, 3600, NOW_S + 5));
        clock.advance(Duration::from_millis(5_999));
        assert!(hit(&c, &abs).is_some(), "alive through its last second");
        clock.advance(Duration::from_millis(1));
        assert!(hit(&c, &abs).is_none(), "past the absolute expiry, Redis is asked");
        clock.advance(Duration::from_secs(95));
        assert!(hit(&c, &idle).is_none(), "idle past its timeout here: Redis is asked");
    }

    #[test]
    fn an_announcement_overtaking_a_load_keeps_the_load_out() {
        let (c, _) = cache(roomy());
        let id = Store::session_id("tok");
        let Lookup::Ask(t) = c.lookup(&id) else { panic!("empty cache") };
        c.invalidate(&id); // the logout's announcement arrives first
        c.fill(t, &id, Some(&record(NOW_S, 600, NOW_S + 3600)), None);
        assert!(hit(&c, &id).is_none(), "the revoked session was not cached");
        load(&c, &id, &record(NOW_S, 600, NOW_S + 3600));
        c.invalidate(&id);
        assert!(hit(&c, &id).is_none(), "an announcement removes a cached session");
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a lease, in the monotonic time leases count in
    fn without_a_live_channel_or_a_fresh_lease_nothing_is_served() {
        let (c, _) = cache(roomy());
        let id = Store::session_id("tok");
        load(&c, &id, &record(NOW_S, 600, NOW_S + 3600));
        c.go_dark();
        assert!(hit(&c, &id).is_none());
        assert_eq!(c.size().0, 0, "going dark empties the cache");
        c.go_live();
        assert!(hit(&c, &id).is_none(), "nothing survives reconnecting");
        load(&c, &id, &record(NOW_S, 600, NOW_S + 3600));
        assert!(hit(&c, &id).is_some());

        let stale = NearCache::new(roomy(), Clock::manual(NOW_S * 1000));
        stale.go_live();
        stale.extend_lease(Instant::now(), Duration::ZERO);
        let Lookup::Ask(t) = stale.lookup(&id) else { panic!("empty") };
        stale.fill(t, &id, Some(&record(NOW_S, 600, NOW_S + 3600)), None);
        assert!(hit(&stale, &id).is_none(), "a lapsed lease serves nothing and caches nothing");
    }

    #[test]
    fn entries_and_bytes_stay_bounded_and_the_least_recently_used_goes() {
        let (c, _) = cache(Limits { max_entries: 4 * SHARDS, max_bytes: 1 << 20 });
        let ids: Vec<String> = (0..2000).map(|i| Store::session_id(&format!("tok{i}"))).collect();
        for id in &ids {
            load(&c, id, &record(NOW_S, 600, NOW_S + 3600));
        }
        assert!(c.size().0 <= 4 * SHARDS, "{:?}", c.size());

        let (c, _) = cache(Limits { max_entries: 1_000_000, max_bytes: 20_000 });
        let first = ids[0].clone();
        load(&c, &first, &record(NOW_S, 600, NOW_S + 3600));
        for id in &ids[1..] {
            assert!(hit(&c, &first).is_some(), "the most recently used entry is never the one evicted");
            load(&c, id, &record(NOW_S, 600, NOW_S + 3600));
        }
        let (n, bytes) = c.size();
        assert!(bytes <= 20_000, "{n} entries, {bytes} bytes");
        assert!((SHARDS..2000).contains(&n), "{n} entries");
    }
}
