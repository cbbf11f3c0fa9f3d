//! The store's contract, checked against both backends. One conformance suite
//! (the functions in `tests/store/`, one file per concept) runs on the embedded
//! store (`memory://`) and on a real redis-server on a free port: the `memory`
//! and `redis` modules below hold the same tests. Then what only one backend
//! has: Redis dying and coming back, its key layout (docs/store.md), and the
//! memory store's state file and bounds.

mod support;

#[path = "store/audit.rs"]
mod audit;
#[path = "store/codes.rs"]
mod codes;
#[path = "store/concurrency.rs"]
mod concurrency;
#[path = "store/durable.rs"]
mod durable;
#[path = "store/locks.rs"]
mod locks;
#[path = "store/memory_backend.rs"]
mod memory_backend;
#[path = "store/pending.rs"]
mod pending;
#[path = "store/rates.rs"]
mod rates;
#[path = "store/redis_backend.rs"]
mod redis_backend;
#[path = "store/sessions.rs"]
mod sessions;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis::clock::Clock;
use portcullis::config::{Secret, StoreConfig};
use portcullis::store::{AuditKind, AuditRecord, AuthLevel, SessionRecord, Store};
use sha2::{Digest, Sha256};
use support::redis::{RedisServer, server_or_skip};

use audit::*;
use codes::*;
use concurrency::*;
use durable::*;
use locks::*;
use pending::*;
use rates::*;
use sessions::*;

/// A store under test, the time it keeps, and the redis-server behind it (if
/// any), which lives as long as the fixture.
pub struct Fixture {
    pub store: Store,
    pub time: Time,
    _server: Option<RedisServer>,
}

impl Fixture {
    async fn memory() -> Fixture {
        let store = Store::open(&config("memory://")).await.expect("open memory store");
        Fixture { store, time: Time::Real, _server: None }
    }

    /// The memory store on a manual clock: time-dependent tests move it
    /// instead of sleeping, so they are exact and instant.
    async fn memory_on_a_manual_clock() -> Fixture {
        let clock = Clock::manual(now_ms());
        let store = Store::open_with_clock(&config("memory://"), clock.clone()).await.expect("open memory store");
        Fixture { store, time: Time::Manual(clock), _server: None }
    }

    /// None (after printing why) when there is no redis-server and services are
    /// not required.
    async fn redis(test: &str) -> Option<Fixture> {
        let server = server_or_skip(test)?;
        let store = Store::open(&config(&server.url())).await.expect("open redis store");
        store.ping().await.expect("the fresh redis-server answers");
        Some(Fixture { store, time: Time::Real, _server: Some(server) })
    }
}

/// How a time-dependent test lets time pass. Redis keeps time by its own
/// `TIME`, so on Redis the test really waits, with margins of at least 400 ms
/// around every boundary so a busy machine cannot tip a check over; the memory
/// store runs on a manual clock that the test sets, so there it is exact.
pub enum Time {
    Manual(Clock),
    Real,
}

impl Time {
    pub fn now_ms(&self) -> u64 {
        match self {
            Time::Manual(c) => c.now_ms(),
            Time::Real => now_ms(),
        }
    }

    pub fn now_s(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Lets `d` pass.
    pub async fn pass(&self, d: Duration) {
        match self {
            Time::Manual(c) => c.advance(d),
            Time::Real => tokio::time::sleep(d).await,
        }
    }

    /// Moves to just after the next whole second and returns it. Session times
    /// have one-second resolution, so tests about them start on a boundary.
    pub async fn next_second(&self) -> u64 {
        let second = self.now_s() + 1;
        self.at(second, 20).await;
        second
    }

    /// Moves to `ms` milliseconds past the unix second `second` (at once if
    /// that has passed).
    pub async fn at(&self, second: u64, ms: u64) {
        let target = second * 1000 + ms;
        let now = self.now_ms();
        if target > now {
            self.pass(Duration::from_millis(target - now)).await;
        }
    }
}

/// The default store config at `url`, with a deadline generous enough for a
/// thousand concurrent operations on a busy two-core machine.
pub fn config(url: &str) -> StoreConfig {
    StoreConfig { url: Secret::new(url), timeout: Duration::from_secs(5), ..StoreConfig::default() }
}

/// Generates, for each time-dependent conformance function `f(&Store, &Time)`,
/// one test on the memory store with a manual clock and one on Redis.
macro_rules! timed_conformance {
    ($($name:ident),* $(,)?) => {
        mod memory_timed {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = super::Fixture::memory_on_a_manual_clock().await;
                    super::$name(&f.store, &f.time).await;
                }
            )*
        }
        mod redis_timed {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(f) = super::Fixture::redis(stringify!($name)).await else { return };
                    super::$name(&f.store, &f.time).await;
                }
            )*
        }
    };
}

/// Generates, for each conformance function, one test per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = super::Fixture::memory().await;
                    super::$name(&f.store).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(f) = super::Fixture::redis(stringify!($name)).await else { return };
                    super::$name(&f.store).await;
                }
            )*
        }
    };
}

conformance!(
    // sessions
    a_created_session_loads_with_a_fresh_last_seen,
    an_expired_session_is_gone_for_every_operation,
    rotating_a_session_retires_the_old_token,
    deleting_a_session_ends_it_and_names_its_user,
    a_user_lists_only_their_own_live_sessions,
    revoking_a_session_by_its_listed_id_ends_only_that_session,
    revoking_all_sessions_of_a_user_spares_everyone_else,
    // pending logins
    a_pending_login_can_be_read_until_it_is_taken_once,
    // one-time codes
    a_correct_code_verifies_once,
    a_wrong_code_reports_the_attempts_remaining,
    wrong_code_three_times_voids_the_code,
    a_code_never_issued_or_voided_verifies_as_none,
    issuing_a_new_code_voids_the_previous_one,
    codes_for_different_users_and_purposes_do_not_mix,
    // sliding windows
    a_rate_window_allows_its_limit_then_says_when_to_retry,
    a_rate_check_does_not_count,
    recording_counts_every_event_and_reset_clears_the_window,
    // account lock
    unlocking_lifts_the_lock_and_forgets_the_failures,
    // durable per-user state
    two_factor_is_off_until_enabled_and_can_be_switched_off,
    each_backup_code_is_consumed_exactly_once,
    new_backup_codes_void_the_old_ones,
    known_ips_remember_when_they_were_last_seen,
    // audit
    audit_lists_newest_first_per_user_and_globally,
    audit_lists_keep_only_the_newest_entries,
    // concurrency
    two_hundred_concurrent_verifies_of_one_correct_code_succeed_exactly_once,
    a_thousand_concurrent_hits_on_a_five_per_minute_window_allow_exactly_five,
    a_backup_code_consumed_fifty_times_at_once_succeeds_exactly_once,
    fifty_concurrent_takes_of_one_pending_login_complete_it_once,
);

timed_conformance!(
    touching_a_session_slides_its_idle_expiry,
    a_session_dies_at_its_absolute_expiry_however_active,
    a_pending_login_expires_after_its_ttl,
    an_expired_code_says_expired_then_is_forgotten,
    a_resend_cooldown_refuses_until_it_ends,
    the_window_slides_so_old_hits_stop_counting,
    a_locked_account_stays_locked_until_the_lock_expires,
    known_ips_forget_the_least_recently_seen_beyond_the_cap,
);

// --- helpers shared by the suite ---

/// Wall-clock unix seconds (both backends use this machine's clock).
pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

fn now_ms() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    u64::try_from(now.as_millis()).expect("ms fit u64")
}

/// A one-factor session record for `user`.
pub fn session(user: &str, last_seen: u64, idle_secs: u64, absolute_expiry: u64) -> SessionRecord {
    SessionRecord {
        user: user.to_owned(),
        level: AuthLevel::OneFactor,
        created: last_seen,
        last_seen,
        idle_secs,
        absolute_expiry,
        remember_me: false,
        ip: "192.0.2.10".to_owned(),
        device: "Firefox on Linux".to_owned(),
        credential: "fingerprint".to_owned(),
    }
}

/// A session of `user` with an hour of idle time and a day to live.
pub fn live_session(user: &str) -> SessionRecord {
    let now = now_s();
    session(user, now, 3600, now + 86_400)
}

/// The keyed hash a caller would pass for `code` (the store never sees codes).
pub fn code_hash(code: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(code.as_bytes()));
    out
}

/// A login-attempt audit entry; `details` tells entries apart.
pub fn audit_entry(user: Option<&str>, details: &str) -> AuditRecord {
    AuditRecord {
        time: now_s(),
        kind: AuditKind::LoginAttempt,
        event: "success".to_owned(),
        username: user.unwrap_or("nobody").to_owned(),
        user: user.map(str::to_owned),
        ip: "192.0.2.10".to_owned(),
        user_agent: "curl/8.5".to_owned(),
        details: details.to_owned(),
    }
}
