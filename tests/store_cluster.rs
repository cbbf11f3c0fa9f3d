//! The store on a real Redis Cluster: three masters on loopback, joined by
//! `redis-cli --cluster create`. The whole conformance suite passes on it (a
//! cluster refuses any script or transaction whose keys span two slots, so
//! this also shows each atomic step keeps its keys under one hash tag);
//! sessions and rate windows spread over all masters; a revocation on any
//! master reaches a near cache subscribed to one node; and operations carry on
//! while `redis-cli --cluster reshard` moves a slot holding their keys (MOVED
//! and ASK replies are followed).

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
#[path = "store/operator.rs"]
mod operator;
#[path = "store/pending.rs"]
mod pending;
#[path = "store/rates.rs"]
mod rates;
#[path = "store/sessions.rs"]
mod sessions;
#[path = "store/tokens.rs"]
mod tokens;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis::config::StoreConfig;
use portcullis::store::{CodePurpose, RateBucket, RateDecision, Store};
use support::assert_eventually;
use support::redis::{RedisCluster, key_slot, or_skip};
use tokio::task::JoinHandle;

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

/// A store on the cluster under its own key prefix, so many share one cluster.
async fn open(url: &str, prefix: &str, near_cache: bool) -> Store {
    let cfg = StoreConfig { key_prefix: format!("{prefix}:"), near_cache, ..config(url) };
    let store = Store::open(&cfg).await.expect("open cluster store");
    store.ping().await.expect("the cluster answers");
    if near_cache {
        let limit = Duration::from_secs(5);
        assert_eventually!(within limit, store.near_cache_live(), "{prefix}: the near cache's channel did not come up");
    }
    store
}

/// Spawns every untimed conformance function, each on its own store.
macro_rules! spawn_untimed {
    ($($name:ident),* $(,)?) => {
        fn spawn_untimed(url: &str) -> Vec<(&'static str, JoinHandle<()>)> {
            vec![$(
                (stringify!($name), {
                    let url = url.to_owned();
                    tokio::spawn(async move { $name(&open(&url, stringify!($name), true).await).await })
                }),
            )*]
        }
    };
}

/// Runs every time-dependent conformance function, on real time, one after
/// the other: their margins (400 ms) are for a machine not also running the
/// others.
macro_rules! run_timed {
    ($($name:ident),* $(,)?) => {
        async fn run_timed(url: &str) -> Vec<&'static str> {
            let mut failed = Vec::new();
            $(
                let own_url = url.to_owned();
                let run = tokio::spawn(async move {
                    $name(&open(&own_url, stringify!($name), true).await, &Time::Real).await
                });
                if run.await.is_err() {
                    failed.push(stringify!($name));
                }
            )*
            failed
        }
    };
}

conformance_suite!(spawn_untimed, run_timed);

async fn failures(tasks: Vec<(&'static str, JoinHandle<()>)>) -> Vec<&'static str> {
    let mut failed = Vec::new();
    for (name, task) in tasks {
        if task.await.is_err() {
            failed.push(name);
        }
    }
    failed
}

fn cluster(test: &str) -> Option<RedisCluster> {
    or_skip(test, RedisCluster::start())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_a_three_master_cluster() {
    let Some(c) = cluster("the_conformance_suite_passes_on_a_three_master_cluster") else { return };
    let url = c.url();
    // Untimed functions all at once, each on its own key prefix; then the
    // timed ones in turn.
    let mut failed = failures(spawn_untimed(&url)).await;
    failed.extend(run_timed(&url).await);
    assert!(failed.is_empty(), "failed on the cluster (their panics are printed above): {failed:?}");
}

/// Counts the keys matching `pattern` on each node.
fn keys_per_node(c: &RedisCluster, pattern: &str) -> Vec<usize> {
    c.nodes.iter().map(|n| n.cmd::<Vec<String>>(&["KEYS", pattern]).expect("KEYS").len()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_rate_windows_spread_over_every_master() {
    let Some(c) = cluster("sessions_and_rate_windows_spread_over_every_master") else { return };
    let s = open(&c.url(), "portcullis", false).await;
    let n = 300;
    for i in 0..n {
        s.create_session(&format!("token-{i}"), &live_session(&format!("user{i}"))).await.unwrap();
        let ip = format!("198.51.{}.{}", i / 250, i % 250);
        s.rate_hit(RateBucket::Login, &ip, 5, Duration::from_secs(60)).await.unwrap();
    }
    let sessions = keys_per_node(&c, "portcullis:{s:*}:sess");
    let windows = keys_per_node(&c, "portcullis:rate:login:*");
    let indexes = keys_per_node(&c, "portcullis:{u:*}:sessions");
    eprintln!("per master: sessions {sessions:?}, rate windows {windows:?}, user indexes {indexes:?}");
    for (what, counts) in [("sessions", &sessions), ("rate windows", &windows), ("user indexes", &indexes)] {
        assert_eq!(counts.iter().sum::<usize>(), n, "{what}: {counts:?}");
        assert!(counts.iter().all(|&k| k >= n / 6), "{what} spread over all three masters: {counts:?}");
    }
    let slots: HashSet<u16> = (0..n)
        .map(|i| key_slot(&format!("portcullis:{{s:{}}}:sess", Store::session_id(&format!("token-{i}")))))
        .collect();
    assert!(slots.len() > n * 9 / 10, "sessions use {} slots, not one", slots.len());
    // The slot arithmetic used here agrees with the cluster's.
    let key = format!("portcullis:{{s:{}}}:sess", Store::session_id("token-0"));
    assert_eq!(c.nodes[0].cmd::<u16>(&["CLUSTER", "KEYSLOT", &key]).unwrap(), key_slot(&key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_any_master_reaches_a_near_cache_subscribed_to_one_node() {
    let Some(c) = cluster("a_revocation_on_any_master_reaches_a_near_cache_subscribed_to_one_node") else {
        return;
    };
    let a = open(&c.url(), "portcullis", true).await;
    let b = open(&c.url(), "portcullis", true).await;
    let tokens: Vec<String> = (0..30).map(|i| format!("token-{i}")).collect();
    for t in &tokens {
        a.create_session(t, &live_session("alice")).await.unwrap();
        assert!(b.touch_session(t).await.unwrap().is_some());
        assert!(b.touch_session(t).await.unwrap().is_some(), "served from b's cache");
    }
    let owners: HashSet<usize> = tokens
        .iter()
        .filter_map(|t| c.owner_of(key_slot(&format!("portcullis:{{s:{}}}:sess", Store::session_id(t)))))
        .collect();
    assert_eq!(owners.len(), 3, "the sessions live on every master");
    assert_eq!(a.revoke_user_sessions("alice").await.unwrap(), tokens.len());
    let revoked = Instant::now();
    for t in &tokens {
        while b.touch_session(t).await.unwrap().is_some() {
            assert!(revoked.elapsed() < Duration::from_secs(2), "{t} still served by b");
            tokio::task::yield_now().await;
        }
    }
    let lag = revoked.elapsed();
    assert!(lag <= Duration::from_millis(100), "b refused all {} sessions only after {lag:?}", tokens.len());
}

/// The first `name(n)` for n = 0, 1, ... whose key `key(name)` lands in `slot`.
fn in_slot(slot: u16, name: impl Fn(u64) -> String, key: impl Fn(&str) -> String) -> String {
    (0..).map(name).find(|n| key_slot(&key(n)) == slot).expect("some name lands in every slot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_carry_on_while_their_slot_moves_to_another_master() {
    let Some(c) = cluster("operations_carry_on_while_their_slot_moves_to_another_master") else { return };
    // `reshard` moves the lowest slots of its source: make that slot busy.
    let slot = c.first_slot_of(0).expect("node 0 serves slots");
    let token = in_slot(slot, |n| format!("session-{n}"), |t| format!("p:{{s:{}}}:sess", Store::session_id(t)));
    let user = in_slot(slot, |n| format!("user{n}"), |u| format!("p:{{u:{u}}}:state"));
    let ip = in_slot(slot, |n| format!("10.0.{}.{}", n / 256, n % 256), |ip| format!("p:rate:login:{ip}"));
    let pending = in_slot(slot, |n| format!("pending-{n}"), |t| format!("p:pending:{}", Store::session_id(t)));
    // Ballast under a tag of the same slot, so the move takes a while and
    // operations meet it half done (ASK) as well as done (MOVED).
    let tag = in_slot(slot, |n| format!("b{n}"), |t| format!("{{{t}}}"));
    for i in 0..2000 {
        c.nodes[0].cmd::<()>(&["SET", &format!("ballast:{{{tag}}}:{i}"), "x"]).unwrap();
    }

    // Without the near cache every operation is a round trip to the slot's owner.
    let s = open(&c.url(), "p", false).await;
    s.create_session(&token, &live_session(&user)).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let counted = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (s, stop, done, failed, counted) =
                (s.clone(), stop.clone(), done.clone(), failed.clone(), counted.clone());
            let (token, user, ip, pending) = (token.clone(), user.clone(), ip.clone(), pending.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let result = match w {
                        0 => s.touch_session(&token).await.map(|r| assert!(r.is_some(), "the session lives")),
                        1 => s.rate_record(RateBucket::Login, &ip, Duration::from_secs(600)).await.map(|_| {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }),
                        2 => {
                            async {
                                s.issue_code(&user, CodePurpose::Login, &code_hash("1"), Duration::from_secs(60), 3)
                                    .await?;
                                s.record_known_ip(&user, "192.0.2.1").await?;
                                s.user_state(&user).await.map(drop)
                            }
                            .await
                        }
                        _ => {
                            async {
                                s.put_pending(&pending, &pending_login(&user), Duration::from_secs(60)).await?;
                                s.take_pending(&pending).await.map(|p| assert!(p.is_some(), "taken once"))
                            }
                            .await
                        }
                    };
                    match result {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors.push(format!("worker {w}: {e}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                errors
            })
        })
        .collect();

    let ran = || done.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    assert_eventually!(ran() >= 100, "the load to run");
    let before = done.load(Ordering::Relaxed);
    let started = Instant::now();
    let moved = tokio::task::spawn_blocking(move || {
        let result = c.reshard(0, 1, 1);
        (c, result)
    });
    let (c, result) = moved.await.unwrap();
    result.expect("redis-cli --cluster reshard");
    let took = started.elapsed();
    let during = done.load(Ordering::Relaxed) - before;
    let after = ran() + 100;
    assert_eventually!(ran() >= after, "the load to go on once the slot has moved");
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await.unwrap());
    }
    eprintln!(
        "slot {slot} moved in {took:?}; {during} operations completed meanwhile, {} in all, {} failed",
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(c.owner_of(slot), Some(1), "the slot now lives on the second master");
    assert!(c.nodes[1].cmd::<u64>(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]).unwrap() > 2000);
    assert!(errors.is_empty(), "operations failed while the slot moved: {errors:?}");
    assert!(during > 0, "operations ran while the slot was moving");
    // Nothing was lost or counted twice on the way.
    let n = s.rate_record(RateBucket::Login, &ip, Duration::from_secs(600)).await.unwrap();
    assert_eq!(u64::from(n), counted.load(Ordering::Relaxed) + 1, "every counted event is in the window");
    assert!(s.touch_session(&token).await.unwrap().is_some());
    assert!(matches!(
        s.rate_hit(RateBucket::Verify, &ip, 1, Duration::from_secs(60)).await.unwrap(),
        RateDecision::Allowed { .. }
    ));
}
