//! Store micro-benchmark: operations per second of session load-and-touch
//! (`touch_session`) and rate-limit hits (`rate_hit`), from 32 concurrent
//! tasks on a multi-threaded runtime, side by side on every backend: memory;
//! one redis-server with the near cache and without it; Sentinel (master,
//! replica, three Sentinels); and a three-master Cluster. Every Redis process
//! is private, on free loopback ports, started here and killed at exit.
//!
//! Run: `cargo bench --bench store` (about a minute). Figures include the
//! Store's own per-operation work (deadline, metrics), as the gateway pays it.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

#[path = "../tests/support/redis.rs"]
mod redis_support;
// What redis_support waits with (found at `super::eventually`).
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/eventually.rs"]
mod eventually;

use std::future::Future;
use std::time::{Duration, Instant};

use portcullis::config::{Secret, StoreConfig};
use portcullis::store::{AuthLevel, RateBucket, SessionRecord, Store};
use redis_support::{RedisCluster, RedisServer, SentinelSetup};

const TASKS: usize = 32;
const WARMUP: Duration = Duration::from_millis(250);
const MEASURE: Duration = Duration::from_millis(1500);
const OPS: [&str; 3] = ["touch_session", "rate_hit (allowed, counted)", "rate_hit (limited)"];

#[tokio::main]
async fn main() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{TASKS} tasks, {} cores, load average {}",
        num_cpus(),
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    let mut columns: Vec<(String, [f64; 3])> = Vec::new();

    let memory = Store::open(&StoreConfig::default()).await.expect("open memory store");
    columns.push(("memory".into(), bench_backend(&memory).await));

    let server = RedisServer::start().unwrap_or_else(|e| fail("redis", &e));
    columns.push(("redis".into(), bench_backend(&open(&server.url(), true).await).await));
    columns.push(("redis, no near cache".into(), bench_backend(&open(&server.url(), false).await).await));
    drop(server);

    let sentinel = SentinelSetup::start().unwrap_or_else(|e| fail("sentinel", &e));
    columns.push(("sentinel".into(), bench_backend(&open(&sentinel.url(), true).await).await));
    drop(sentinel);

    let cluster = RedisCluster::start().unwrap_or_else(|e| fail("cluster", &e));
    columns.push(("cluster".into(), bench_backend(&open(&cluster.url(), true).await).await));
    columns.push(("cluster, no near cache".into(), bench_backend(&open(&cluster.url(), false).await).await));
    drop(cluster);

    println!();
    print!("{:<30}", "ops/s");
    for (name, _) in &columns {
        print!("{name:>24}");
    }
    println!();
    for (i, op) in OPS.iter().enumerate() {
        print!("{op:<30}");
        for (_, figures) in &columns {
            print!("{:>24}", format!("{:.0}", figures[i]));
        }
        println!();
    }
    print!("{:<30}", "touch_session ÷ memory");
    for (_, figures) in &columns {
        print!("{:>24}", format!("{:.3}", figures[0] / columns[0].1[0]));
    }
    println!();
}

fn fail(what: &str, why: &str) -> ! {
    eprintln!("{what}: not measured: {why}");
    std::process::exit(1);
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

async fn open(url: &str, near_cache: bool) -> Store {
    let cfg = StoreConfig { url: Secret::new(url), near_cache, ..StoreConfig::default() };
    let store = Store::open(&cfg).await.expect("open redis store");
    store.ping().await.expect("redis answers");
    let deadline = Instant::now() + Duration::from_secs(10);
    while near_cache && !store.near_cache_live() {
        assert!(Instant::now() < deadline, "the near cache did not come up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store
}

async fn bench_backend(store: &Store) -> [f64; 3] {
    // Each task owns one session, as each browser does.
    for task in 0..TASKS {
        store.create_session(&token(task), &record(task)).await.expect("create session");
    }
    let touch = measure(store, |s, task| async move {
        let found = s.touch_session(&token(task)).await.expect("touch_session");
        assert!(found.is_some(), "the session is live");
    })
    .await;

    // Under the limit: every hit is counted (the heavier path). Each task is
    // one client IP; a 1 s window keeps the logs short.
    let counted = measure(store, |s, task| async move {
        s.rate_hit(RateBucket::Login, &format!("198.51.100.{task}"), 1_000_000, Duration::from_secs(1))
            .await
            .expect("rate_hit");
    })
    .await;

    // Over the limit: a client hammering a 5-per-minute window.
    let limited = measure(store, |s, task| async move {
        s.rate_hit(RateBucket::Verify, &format!("203.0.113.{task}"), 5, Duration::from_secs(60))
            .await
            .expect("rate_hit");
    })
    .await;
    [touch, counted, limited]
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
                    // A near-cache hit never waits: let the other tasks (and
                    // the cache's invalidation channel) run.
                    tokio::task::yield_now().await;
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
