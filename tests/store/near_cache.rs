//! Redis's near cache, seen from outside: two `Store`s on one redis-server
//! stand for two gateway replicas. A session ended through one is refused by
//! the other within 100 ms; cached sessions cost no round trip, and their
//! sliding expiry is written back once per interval; a dead or frozen Redis
//! empties the cache (fail closed) and it recovers with Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis::config::StoreConfig;
use portcullis::store::{Store, StoreError};

use crate::support::assert_eventually;
use crate::support::redis::{RedisServer, server_or_skip};
use crate::{config, live_session, near_cache_serving, now_s, session};

/// A store standing for one gateway replica, its near cache serving.
async fn replica(cfg: StoreConfig) -> Store {
    let s = Store::open(&cfg).await.expect("open redis store");
    near_cache_serving(&s).await;
    s
}

fn commands_processed(server: &RedisServer) -> u64 {
    let info: String = server.cmd(&["INFO", "stats"]).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("total_commands_processed")
}

/// Touches `token` on `s` until it is refused; returns how long that took.
async fn refused_after(s: &Store, token: &str) -> Duration {
    let started = Instant::now();
    while s.touch_session(token).await.unwrap().is_some() {
        assert!(started.elapsed() < Duration::from_secs(5), "{token} is still served 5 s after it ended");
        tokio::task::yield_now().await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_through_one_replica_is_refused_by_the_other_within_100_ms() {
    let Some(server) = server_or_skip("a_session_ended_through_one_replica_is_refused_by_the_other_within_100_ms")
    else {
        return;
    };
    let a = replica(config(&server.url())).await;
    let b = replica(config(&server.url())).await;

    for how in ["logout", "revoke", "revoke-all", "rotate"] {
        let token = format!("tok-{how}");
        a.create_session(&token, &live_session("alice")).await.unwrap();
        assert!(b.touch_session(&token).await.unwrap().is_some(), "{how}: b loads the session");
        assert!(b.touch_session(&token).await.unwrap().is_some(), "{how}: b serves it (from its cache)");
        match how {
            "logout" => assert!(a.delete_session(&token).await.unwrap().is_some()),
            "revoke" => assert!(a.revoke_session("alice", &Store::session_id(&token)).await.unwrap()),
            "revoke-all" => assert_eq!(a.revoke_user_sessions("alice").await.unwrap(), 1),
            _ => a.rotate_session(&token, &format!("{token}-new"), &live_session("alice")).await.unwrap(),
        }
        let lag = refused_after(&b, &token).await;
        assert!(lag <= Duration::from_millis(100), "{how} through a was honoured by b only after {lag:?}");
        assert_eq!(a.touch_session(&token).await.unwrap(), None, "{how}: a refuses it too");
    }
    let rotated = b.touch_session("tok-rotate-new").await.unwrap().expect("the rotated-to session is live on b");
    assert_eq!(rotated.user, "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_racing_a_revocation_never_brings_the_session_back() {
    let Some(server) = server_or_skip("a_load_racing_a_revocation_never_brings_the_session_back") else { return };
    let a = replica(config(&server.url())).await;
    let b = replica(config(&server.url())).await;
    for i in 0..40 {
        let token = format!("race-{i}");
        a.create_session(&token, &live_session("alice")).await.unwrap();
        // b keeps loading the session from two tasks while a ends it.
        let ended_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        // Touches so far, and those begun more than 100 ms after the end.
        let (touches, late) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let hammers: Vec<_> = (0..2)
            .map(|_| {
                let (b, token, ended_at, stop) = (b.clone(), token.clone(), ended_at.clone(), stop.clone());
                let (touches, late) = (touches.clone(), late.clone());
                tokio::spawn(async move {
                    let mut late_hits = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let found = b.touch_session(&token).await.unwrap().is_some();
                        let ended = *ended_at.lock().unwrap();
                        touches.fetch_add(1, Ordering::Relaxed);
                        if ended.is_some_and(|e| started > e + Duration::from_millis(100)) {
                            late.fetch_add(1, Ordering::Relaxed);
                            late_hits += usize::from(found);
                        }
                        // A cache hit never waits, so let the other tasks run.
                        tokio::task::yield_now().await;
                    }
                    late_hits
                })
            })
            .collect();
        assert_eventually!(touches.load(Ordering::Relaxed) >= 4, "b to load the session");
        a.delete_session(&token).await.unwrap();
        *ended_at.lock().unwrap() = Some(Instant::now());
        assert_eventually!(late.load(Ordering::Relaxed) >= 20, "touches begun more than 100 ms after the end");
        stop.store(true, Ordering::Relaxed);
        for h in hammers {
            assert_eq!(h.await.unwrap(), 0, "{token}: b served the session more than 100 ms after it ended");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_sessions_cost_no_round_trip_and_the_slide_is_written_back_once_a_second() {
    let Some(server) = server_or_skip("cached_sessions_cost_no_round_trip_and_the_slide_is_written_back_once_a_second")
    else {
        return;
    };
    let s = replica(config(&server.url())).await;
    let start = now_s();
    // Ten seconds of idle time: written back at most once a second.
    s.create_session("tok", &session("alice", start, 10, start + 3600)).await.unwrap();
    let before = commands_processed(&server);
    let begun = Instant::now();
    let mut touches = 0;
    while begun.elapsed() < Duration::from_millis(2500) {
        assert!(s.touch_session("tok").await.unwrap().is_some());
        touches += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let used = commands_processed(&server) - before;
    // Per second about seven: one write-back (a pool check and the script) and
    // the invalidation channel's five pings, whatever the number of touches.
    assert!(touches >= 200, "only {touches} touches: the machine is too busy to show anything");
    assert!(used * 10 <= touches, "{touches} touches cost {used} Redis commands");
    eprintln!("{touches} touches in {:?} cost {used} Redis commands", begun.elapsed());

    let last_seen: u64 = server
        .cmd(&["HGET", &format!("portcullis:{{s:{}}}:sess", Store::session_id("tok")), "last_seen"])
        .expect("HGET last_seen");
    assert!(last_seen >= start + 2, "the slide reached Redis: last_seen {last_seen}, created {start}");
    let ttl_ms: i64 = server.cmd(&["PTTL", &format!("portcullis:{{s:{}}}:sess", Store::session_id("tok"))]).unwrap();
    assert!(ttl_ms > 8_000, "Redis keeps the session about ten seconds past the last write-back: {ttl_ms} ms");
}

fn fault_config(url: &str) -> StoreConfig {
    StoreConfig { timeout: Duration::from_millis(500), ..config(url) }
}

/// Touches `token` for `span` after `from`; returns (ms after `from`, served?) of each.
async fn watch(s: &Store, token: &str, from: Instant, span: Duration) -> Vec<(u128, bool)> {
    let mut seen = Vec::new();
    while from.elapsed() < span {
        let at = from.elapsed().as_millis();
        match s.touch_session(token).await {
            Ok(found) => seen.push((at, found.is_some())),
            Err(StoreError::Unavailable(_) | StoreError::Timeout) => seen.push((at, false)),
            Err(e) => panic!("expected Unavailable or Timeout, got {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_empties_the_near_cache_at_once_and_it_serves_again_after_a_restart() {
    let Some(mut server) =
        server_or_skip("killing_redis_empties_the_near_cache_at_once_and_it_serves_again_after_a_restart")
    else {
        return;
    };
    let s = replica(fault_config(&server.url())).await;
    s.create_session("tok", &live_session("alice")).await.unwrap();
    assert!(s.touch_session("tok").await.unwrap().is_some());

    tokio::task::block_in_place(|| server.kill());
    let killed = Instant::now();
    let seen = watch(&s, "tok", killed, Duration::from_millis(1000)).await;
    let last_served = seen.iter().filter(|(_, ok)| *ok).map(|(at, _)| *at).max();
    assert!(last_served.is_none_or(|at| at < 100), "served from the cache {last_served:?} ms after Redis died");
    assert!(!s.near_cache_live());

    tokio::task::block_in_place(|| server.restart()).expect("restart");
    near_cache_serving(&s).await;
    assert_eq!(s.touch_session("tok").await.unwrap(), None, "the restarted Redis kept nothing");
    s.create_session("tok2", &live_session("alice")).await.unwrap();
    assert!(s.touch_session("tok2").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_stops_the_near_cache_within_its_one_second_lease() {
    let Some(server) = server_or_skip("a_frozen_redis_stops_the_near_cache_within_its_one_second_lease") else {
        return;
    };
    let s = replica(fault_config(&server.url())).await;
    s.create_session("tok", &live_session("alice")).await.unwrap();
    assert!(s.touch_session("tok").await.unwrap().is_some());

    server.pause();
    let frozen = Instant::now();
    let seen = watch(&s, "tok", frozen, Duration::from_millis(2000)).await;
    server.resume();
    let last_served = seen.iter().filter(|(_, ok)| *ok).map(|(at, _)| *at).max();
    assert!(last_served.is_some_and(|at| at < 1000), "served up to {last_served:?} ms into the freeze");
    assert!(seen.iter().any(|(at, ok)| *at > 1100 && !ok), "refused once the lease ran out: {seen:?}");

    near_cache_serving(&s).await;
    assert!(s.touch_session("tok").await.unwrap().is_some(), "the thawed Redis still has the session");
}
