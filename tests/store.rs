//! The store's contract, checked against both backends. One conformance suite
//! (the functions in `tests/store/`, one file per concept, listed in
//! `tests/store/suite.rs`) runs on the embedded store (`memory://`) and on a
//! real redis-server on a free port: the `memory` and `redis` modules below
//! hold the same tests, `redis` with the near cache serving (it waits for its
//! invalidation channel) and `redis_direct` with it off. Then what only one
//! backend has: Redis dying, freezing and coming back, its key layout
//! (docs/store.md), the near cache across two stores, TLS with a private CA,
//! and the memory store's state file and bounds. `tests/store_cluster.rs` runs
//! the same suite on a Redis Cluster.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

#[macro_use]
#[path = "store/suite.rs"]
mod suite;

#[path = "store/attempts.rs"]
mod attempts;
#[path = "store/audit.rs"]
mod audit;
#[path = "store/codes.rs"]
mod codes;
#[path = "store/common.rs"]
mod common;
#[path = "store/concurrency.rs"]
mod concurrency;
#[path = "store/durable.rs"]
mod durable;
#[path = "store/locks.rs"]
mod locks;
#[path = "store/memory_backend.rs"]
mod memory_backend;
#[path = "store/near_cache.rs"]
mod near_cache;
#[path = "store/operator.rs"]
mod operator;
#[path = "store/pending.rs"]
mod pending;
#[path = "store/rates.rs"]
mod rates;
#[path = "store/redis_backend.rs"]
mod redis_backend;
#[path = "store/sessions.rs"]
mod sessions;
#[path = "store/tls.rs"]
mod tls;
#[path = "store/tokens.rs"]
mod tokens;

use std::time::Duration;

use portcullis::clock::Clock;
use portcullis::config::StoreConfig;
use portcullis::store::Store;
use support::redis::{RedisServer, server_or_skip};

use attempts::*;
use audit::*;
use codes::*;
pub use common::*;
use concurrency::*;
use durable::*;
use locks::*;
use operator::*;
use pending::*;
use rates::*;
use sessions::*;
use tokens::*;

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

    /// Redis with the near cache serving. None (after printing why) when there
    /// is no redis-server and services are not required.
    async fn redis(test: &str) -> Option<Fixture> {
        let server = server_or_skip(test)?;
        let store = Store::open(&config(&server.url())).await.expect("open redis store");
        store.ping().await.expect("the fresh redis-server answers");
        near_cache_serving(&store).await;
        Some(Fixture { store, time: Time::Real, _server: Some(server) })
    }

    /// Redis with `store.near_cache = false`: every operation a round trip.
    async fn redis_direct(test: &str) -> Option<Fixture> {
        let server = server_or_skip(test)?;
        let cfg = StoreConfig { near_cache: false, ..config(&server.url()) };
        let store = Store::open(&cfg).await.expect("open redis store");
        store.ping().await.expect("the fresh redis-server answers");
        Some(Fixture { store, time: Time::Real, _server: Some(server) })
    }
}

/// Waits (up to 5 s) until the store's near cache serves.
pub async fn near_cache_serving(store: &Store) {
    let limit = Duration::from_secs(5);
    support::assert_eventually!(within limit, store.near_cache_live(), "the invalidation channel did not come up");
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

/// Generates, for each conformance function, one test per backend (and one
/// on Redis without the near cache).
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
        mod redis_direct {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(f) = super::Fixture::redis_direct(stringify!($name)).await else { return };
                    super::$name(&f.store).await;
                }
            )*
        }
    };
}

conformance_suite!(conformance, timed_conformance);
