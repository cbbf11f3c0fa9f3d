//! Store micro-benchmark: operations per second of session load-and-touch
//! (`touch_session`) and rate-limit hits (`rate_hit`) on both backends, from
//! 32 concurrent tasks on a multi-threaded runtime. Redis runs as a private
//! redis-server on a free loopback port, started here and killed at exit.
//!
//! Run: `cargo bench --bench store` (about 10 s). Figures include the Store's
//! own per-operation work (deadline, metrics), as the gateway pays it.

#[path = "../tests/support/redis.rs"]
mod redis_support;

use std::future::Future;
use std::time::{Duration, Instant};

use portcullis::config::{Secret, StoreConfig};
use portcullis::store::{AuthLevel, RateBucket, SessionRecord, Store};

const TASKS: usize = 32;
const WARMUP: Duration = Duration::from_millis(250);
const MEASURE: Duration = Duration::from_millis(1500);

#[tokio::main]
async fn main() {
    let memory = Store::open(&StoreConfig::default()).await.expect("open memory store");
    bench_backend("memory", &memory).await;

    match redis_support::RedisServer::start() {
        Ok(server) => {
            let cfg = StoreConfig { url: Secret::new(server.url()), ..StoreConfig::default() };
            let redis = Store::open(&cfg).await.expect("open redis store");
            redis.ping().await.expect("redis answers");
            bench_backend("redis", &redis).await;
        }
        Err(why) => {
            eprintln!("redis: not measured: {why}");
            std::process::exit(1);
        }
    }
}

async fn bench_backend(name: &str, store: &Store) {
    // Each task owns one session, as each browser does.
    for task in 0..TASKS {
        store.create_session(&token(task), &record(task)).await.expect("create session");
    }
    let touch = measure(store, |s, task| async move {
        let found = s.touch_session(&token(task)).await.expect("touch_session");
        assert!(found.is_some(), "the session is live");
    })
    .await;
    report(name, "touch_session", touch);

    // Under the limit: every hit is counted (the heavier path). Each task is
    // one client IP; a 1 s window keeps the logs short.
    let counted = measure(store, |s, task| async move {
        s.rate_hit(RateBucket::Login, &format!("198.51.100.{task}"), 1_000_000, Duration::from_secs(1))
            .await
            .expect("rate_hit");
    })
    .await;
    report(name, "rate_hit (allowed, counted)", counted);

    // Over the limit: a client hammering a 5-per-minute window.
    let limited = measure(store, |s, task| async move {
        s.rate_hit(RateBucket::Verify, &format!("203.0.113.{task}"), 5, Duration::from_secs(60))
            .await
            .expect("rate_hit");
    })
    .await;
    report(name, "rate_hit (limited)", limited);
}

/// Runs `op` from `TASKS` tasks for `WARMUP + MEASURE`; returns the operations
/// per second completed inside the measured span.
async fn measure<F, Fut>(store: &Store, op: F) -> f64
where
    F: Fn(Store, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let start = Instant::now() + WARMUP;
    let end = start + MEASURE;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, op) = (store.clone(), op.clone());
            tokio::spawn(async move {
                let mut counted = 0u64;
                while Instant::now() < end {
                    op(store.clone(), task).await;
                    let done = Instant::now();
                    if done >= start && done < end {
                        counted += 1;
                    }
                }
                counted
            })
        })
        .collect();
    let mut total = 0u64;
    for t in tasks {
        total += t.await.expect("bench task");
    }
    total as f64 / MEASURE.as_secs_f64()
}

fn report(backend: &str, op: &str, ops_per_sec: f64) {
    let mean_us = TASKS as f64 / ops_per_sec * 1e6;
    println!("{backend:<7} {op:<28} {ops_per_sec:>10.0} ops/s   ({TASKS} tasks, mean latency {mean_us:.0} us)");
}

fn token(task: usize) -> String {
    format!("bench-session-token-{task:04}")
}

fn record(task: usize) -> SessionRecord {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    SessionRecord {
        user: format!("user{task}"),
        level: AuthLevel::TwoFactor,
        created: now,
        last_seen: now,
        idle_secs: 3600,
        absolute_expiry: now + 86_400,
        remember_me: false,
        ip: "192.0.2.10".to_owned(),
        device: "Firefox on Linux".to_owned(),
        credential: "fingerprint".to_owned(),
    }
}
