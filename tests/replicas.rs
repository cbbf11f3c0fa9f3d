//! Gateway replicas sharing Redis, through the real binary: a logout on one
//! replica is refused by another within 100 ms (its near cache hears the
//! revocation); a replica whose Redis dies answers 503 at once instead of
//! serving from its cache, and recovers with Redis; and with Redis Sentinel, a
//! SIGKILLed master is replaced while a logged-in client keeps requesting: no
//! request reaches the upstream without a valid session, the session and new
//! logins work again within 10 s, and the gateway never exits.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use support::assert_eventually;
use support::eventually::{PATIENCE, eventually, poll};
use support::redis::{RedisServer, SentinelSetup, or_skip, server_or_skip};
use support::upstream::Upstream;
use support::{Gateway, SECRET, free_port, write_users};

const PASSWORD: &str = "replica-password-1";

/// An upstream and a users file that several gateways share.
struct Site {
    up: Upstream,
    users: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Site {
    async fn start() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users.toml");
        write_users(&users, &[("alice", "alice@example.com", PASSWORD, &[])]);
        Site { up: Upstream::start().await, users, _dir: dir }
    }

    /// A gateway replica on `store_url`; returns it and its base URL.
    fn replica(&self, store_url: &str) -> (Gateway, String) {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "{base}"
metrics_listen = "127.0.0.1:0"
[[upstream]]
url = "{upstream}"
timeout = "5s"
[auth]
secret = "{SECRET}"
users_file = "{users}"
[store]
url = "{store_url}"
timeout = "1s"
[rate_limit]
login = "1000/5m"
[lockout]
ip_failures = "1000/15m"
[access_control]
default_policy = "one_factor"
"#,
            upstream = self.up.url(),
            users = self.users.display(),
        );
        (Gateway::start(&config), base)
    }
}

fn http() -> reqwest::Client {
    support::crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Logs alice in through `base`; returns the `Cookie` header value, or the
/// status when the gateway refused.
async fn login(http: &reqwest::Client, base: &str) -> Result<String, StatusCode> {
    let r = http
        .post(format!("{base}/_auth/api/send-login-otp"))
        .header("Origin", base)
        .json(&json!({"username_or_email": "alice", "password": PASSWORD}))
        .send()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    if r.status() != StatusCode::OK {
        return Err(r.status());
    }
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("portcullis_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    cookie.ok_or(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn logout(http: &reqwest::Client, base: &str, cookie: &str) {
    let r = http
        .post(format!("{base}/_auth/logout"))
        .header("Origin", base)
        .header("Cookie", cookie)
        .header("Accept", "text/html")
        .form(&[("logout", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "logout");
}

/// A protected request as an API client would make it (401 when not logged in).
async fn app(http: &reqwest::Client, base: &str, cookie: &str) -> Option<StatusCode> {
    http.get(format!("{base}/app")).header("Cookie", cookie).send().await.ok().map(|r| r.status())
}

async fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    let addr = gw.metrics_addr.as_ref().expect("metrics listener");
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    support::sample(&text, name, labels)
}

/// The `q` quantile (0..=1) of sorted `xs`, by the nearest-rank method.
fn quantile(xs: &[Duration], q: f64) -> Duration {
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

/// Five logouts here; `bench/revocation_lag.sh` runs it with 200 on the
/// release binary (`REVOCATION_LAG_LOGOUTS`) and reports the quantiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_replica_is_refused_by_another_within_100_ms() {
    let Some(redis) = server_or_skip("a_logout_on_one_replica_is_refused_by_another_within_100_ms") else { return };
    let rounds = std::env::var("REVOCATION_LAG_LOGOUTS").ok().and_then(|n| n.parse().ok()).unwrap_or(5);
    let site = Site::start().await;
    let (_a, a) = site.replica(&redis.url());
    let (b_gw, b) = site.replica(&redis.url());
    let http = http();
    let mut lags = Vec::new();
    for round in 0..rounds {
        let cookie = login(&http, &a).await.expect("login through a");
        // b serves the session (from its near cache after the first request).
        for _ in 0..5 {
            assert_eq!(app(&http, &b, &cookie).await, Some(StatusCode::OK), "round {round}: b lets alice in");
        }
        logout(&http, &a, &cookie).await;
        let out = Instant::now();
        let mut first_refusal = None;
        while out.elapsed() < Duration::from_millis(500) {
            match app(&http, &b, &cookie).await {
                Some(StatusCode::OK) => assert!(first_refusal.is_none(), "round {round}: b let alice in again"),
                Some(StatusCode::UNAUTHORIZED) => {
                    first_refusal.get_or_insert(out.elapsed());
                }
                other => panic!("round {round}: b answered {other:?}"),
            }
        }
        lags.push(first_refusal.expect("b refused the logged-out session"));
    }
    lags.sort();
    let (p50, p99, max) = (quantile(&lags, 0.5), quantile(&lags, 0.99), lags[lags.len() - 1]);
    eprintln!(
        "revocation lag over {rounds} logouts (logout answered on a → b's first refusal, one request included): \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
    assert!(p99 <= Duration::from_millis(100), "b refused logged-out sessions only after up to {p99:?} (p99)");
    let hits = metric(&b_gw, "portcullis_session_cache_events_total", &[("event", "hit")]).await;
    assert!(hits >= 4.0 * rounds as f64, "b answered from its near cache ({hits} hits)");
    assert_eq!(metric(&b_gw, "portcullis_session_cache_live", &[]).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_answers_503_at_once_when_redis_dies_and_recovers_with_it() {
    let Some(mut redis) = server_or_skip("a_replica_answers_503_at_once_when_redis_dies_and_recovers_with_it") else {
        return;
    };
    let site = Site::start().await;
    let (b_gw, b) = site.replica(&redis.url());
    let http = http();
    let cookie = login(&http, &b).await.expect("login");
    for _ in 0..20 {
        assert_eq!(app(&http, &b, &cookie).await, Some(StatusCode::OK));
    }
    tokio::task::block_in_place(|| redis.kill());
    let killed = Instant::now();
    let hits_at_kill = site.up.hits();
    let mut seen = Vec::new();
    while killed.elapsed() < Duration::from_millis(1500) {
        let at = killed.elapsed();
        seen.push((at, app(&http, &b, &cookie).await));
    }
    let last_ok = seen.iter().filter(|(_, s)| *s == Some(StatusCode::OK)).map(|(at, _)| *at).max();
    assert!(last_ok.is_none_or(|at| at < Duration::from_millis(100)), "served {last_ok:?} after Redis died");
    assert!(seen.iter().any(|(_, s)| *s == Some(StatusCode::SERVICE_UNAVAILABLE)), "503 while Redis is down");
    let answered = seen.iter().filter(|(_, s)| *s == Some(StatusCode::OK)).count();
    assert_eq!(site.up.hits(), hits_at_kill + answered, "nothing reached the upstream but what was answered 200");
    assert_eq!(metric(&b_gw, "portcullis_session_cache_live", &[]).await, 0.0);

    tokio::task::block_in_place(|| redis.restart()).expect("restart redis");
    let cookie = eventually("a login once Redis is back", PATIENCE, async || login(&http, &b).await.ok()).await;
    assert_eq!(app(&http, &b, &cookie).await, Some(StatusCode::OK), "a new session works");
}

/// What happened when, in the failover test.
#[derive(Default)]
struct Timeline {
    first_503: Option<Duration>,
    first_200_after: Option<Duration>,
    statuses: Vec<(Duration, Option<StatusCode>)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_keeps_the_gateway_closed_then_serves_within_10_s() {
    let test = "a_sentinel_failover_under_load_keeps_the_gateway_closed_then_serves_within_10_s";
    let Some(mut sentinel) = or_skip(test, SentinelSetup::start()) else { return };
    let site = Site::start().await;
    let (mut gw, base) = site.replica(&sentinel.url());
    let http = http();
    let cookie = login(&http, &base).await.expect("login through sentinel");
    let revoked = login(&http, &base).await.expect("second login");
    logout(&http, &base, &revoked).await;
    assert_eq!(app(&http, &base, &cookie).await, Some(StatusCode::OK));
    assert_eq!(app(&http, &base, &revoked).await, Some(StatusCode::UNAUTHORIZED));

    // Replication is asynchronous: before the kill, wait until the replica has
    // everything the master has (the session, and the logout's deletion).
    let replica = &sentinel.replica;
    support::redis::wait_until(Duration::from_secs(10), "the replica to catch up", || {
        let offset = |s: &RedisServer, field: &str| -> Option<u64> {
            let info: String = s.cmd(&["INFO", "replication"]).ok()?;
            info.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().parse().ok())
        };
        let (m, r) = (offset(&sentinel.master, "master_repl_offset:"), offset(replica, "slave_repl_offset:"));
        m.is_some() && m == r
    })
    .unwrap();
    let on_replica: Vec<String> = replica.cmd(&["KEYS", "portcullis:{s:*}:sess"]).unwrap();
    assert_eq!(on_replica.len(), 1, "the replica holds the live session, not the logged-out one");

    // The logged-in client and the logged-out one keep requesting.
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killed = Arc::new(Mutex::new(None::<Instant>));
    let (valid_200, revoked_200) = (Arc::new(Mutex::new(0usize)), Arc::new(Mutex::new(0usize)));
    let hammer = |cookie: String, ok: Arc<Mutex<usize>>, record: bool| {
        let (http, base, stop, killed, timeline) =
            (http.clone(), base.clone(), stop.clone(), killed.clone(), timeline.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = app(&http, &base, &cookie).await;
                if status == Some(StatusCode::OK) {
                    *ok.lock().unwrap() += 1;
                }
                if let (true, Some(k)) = (record, *killed.lock().unwrap()) {
                    let at = k.elapsed();
                    let mut t = timeline.lock().unwrap();
                    t.statuses.push((at, status));
                    if status == Some(StatusCode::SERVICE_UNAVAILABLE) {
                        t.first_503.get_or_insert(at);
                    }
                    if status == Some(StatusCode::OK) && t.first_503.is_some() {
                        t.first_200_after.get_or_insert(at);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let valid = hammer(cookie.clone(), valid_200.clone(), true);
    let denied = hammer(revoked.clone(), revoked_200.clone(), false);
    assert_eventually!(*valid_200.lock().unwrap() >= 20, "the load to run");

    let old_master = sentinel.master.addr();
    tokio::task::block_in_place(|| sentinel.master.kill());
    let kill = Instant::now();
    *killed.lock().unwrap() = Some(kill);

    let mut promoted = None;
    let mut relogin = None;
    let recovered = async || {
        if promoted.is_none() && sentinel.current_master().is_some_and(|m| m != old_master) {
            promoted = Some(kill.elapsed());
        }
        let serving_again = timeline.lock().unwrap().first_200_after.is_some();
        if relogin.is_none()
            && serving_again
            && let Ok(c) = login(&http, &base).await
        {
            assert_eq!(app(&http, &base, &c).await, Some(StatusCode::OK), "the new session works");
            relogin = Some(kill.elapsed());
        }
        (promoted.is_some() && relogin.is_some()).then_some(())
    };
    poll(Duration::from_secs(15), recovered).await;
    // The load goes on a while after the recovery, the revoked session too.
    let after = timeline.lock().unwrap().statuses.len() + 20;
    assert_eventually!(timeline.lock().unwrap().statuses.len() >= after, "the load to go on after the recovery");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    valid.await.unwrap();
    denied.await.unwrap();

    let t = timeline.lock().unwrap();
    let ms = |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{} ms", d.as_millis()));
    eprintln!("timeline after SIGKILL of the master (t = 0):");
    eprintln!("  first 503                    {}", ms(t.first_503));
    eprintln!("  promotion seen by Sentinel   {}", ms(promoted));
    eprintln!("  first 200 again              {}", ms(t.first_200_after));
    eprintln!("  new login works              {}", ms(relogin));
    let other: Vec<_> = t
        .statuses
        .iter()
        .filter(|(_, s)| !matches!(*s, Some(StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE)))
        .collect();
    assert!(other.is_empty(), "the logged-in client only ever saw 200 or 503: {other:?}");
    assert!(t.first_503.is_some_and(|d| d < Duration::from_secs(2)), "requests failed closed after the kill");
    assert!(promoted.is_some(), "the Sentinels promoted the replica");
    let back = t.first_200_after.expect("the session worked again");
    assert!(back <= Duration::from_secs(10), "the session worked again only after {back:?}");
    assert!(relogin.is_some_and(|d| d <= Duration::from_secs(10)), "a new login within 10 s: {relogin:?}");
    assert_eq!(*revoked_200.lock().unwrap(), 0, "the logged-out session never got through");
    assert_eq!(site.up.hits(), *valid_200.lock().unwrap() + 2, "only answered requests reached the upstream");
    assert_eq!(gw.wait_exit(Duration::from_millis(10)), None, "the gateway is still running");
}
