//! What only the Redis backend has: a server that dies, freezes or restarts
//! under a live Store (every operation fails closed within `store.timeout`, and
//! the same Store recovers), and its key layout as docs/store.md lists it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis::config::StoreConfig;
use portcullis::store::{
    AttemptLimits, AuditRecord, CodePurpose, RateBucket, RateDecision, Store, StoreError, StoreResult,
};

use crate::pending::pending_login;
use crate::support::assert_eventually;
use crate::support::eventually::poll_every;
use crate::support::redis::server_or_skip;
use crate::{audit_entry, code_hash, config, live_session, now_s, session};

const TIMEOUT: Duration = Duration::from_millis(500);

fn fault_config(url: &str) -> StoreConfig {
    StoreConfig { timeout: TIMEOUT, pool_size: 8, ..config(url) }
}

/// Awaits `fut` and asserts it failed closed, with a typed error, in bounded time.
async fn fails_closed<T: Debug>(op: &str, fut: impl Future<Output = StoreResult<T>>) -> StoreError {
    let started = Instant::now();
    let result = fut.await;
    let elapsed = started.elapsed();
    assert!(elapsed < TIMEOUT + Duration::from_secs(1), "{op} took {elapsed:?} (timeout {TIMEOUT:?})");
    match result {
        Err(e @ (StoreError::Unavailable(_) | StoreError::Timeout)) => e,
        other => panic!("{op} with redis gone: expected Unavailable or Timeout, got {other:?}"),
    }
}

/// One of each kind of operation, all at once; each must fail closed.
async fn every_kind_fails_closed(s: &Store) -> Vec<StoreError> {
    let code = code_hash("482913");
    let minute = Duration::from_secs(60);
    let record = live_session("alice");
    let audit = audit_entry(Some("alice"), "x");
    let all = tokio::join!(
        fails_closed("ping", s.ping()),
        fails_closed("touch_session", s.touch_session("tok")),
        fails_closed("create_session", s.create_session("tok2", &record)),
        fails_closed("take_pending", s.take_pending("p")),
        fails_closed("verify_code", s.verify_code("alice", CodePurpose::Login, &code)),
        fails_closed("rate_hit", s.rate_hit(RateBucket::Login, "198.51.100.7", 5, minute)),
        fails_closed("account_locked", s.account_locked("alice")),
        fails_closed("consume_backup_code", s.consume_backup_code("alice", &code)),
        fails_closed("append_audit", s.append_audit(&audit)),
    );
    vec![all.0, all.1, all.2, all.3, all.4, all.5, all.6, all.7, all.8]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_fails_operations_fast_and_a_restart_heals_the_same_store() {
    let Some(mut server) = server_or_skip("killing_redis_fails_operations_fast_and_a_restart_heals_the_same_store")
    else {
        return;
    };
    let s = Store::open(&fault_config(&server.url())).await.unwrap();
    s.create_session("tok", &live_session("alice")).await.unwrap();
    assert!(s.touch_session("tok").await.unwrap().is_some());

    server.kill();
    // The near cache answers until its channel's closed connection is seen,
    // within milliseconds; after that, sessions too fail closed.
    let gone = async || (!s.near_cache_live()).then_some(());
    let seen = poll_every(Duration::from_millis(1), Duration::from_millis(100), gone).await;
    assert!(seen.is_some(), "the near cache still serves 100 ms after the kill");
    every_kind_fails_closed(&s).await;

    tokio::task::block_in_place(|| server.restart()).expect("redis-server restarts on the same port");
    // Same Store, no reopening: the pool reconnects by itself.
    s.ping().await.expect("ping after restart");
    assert_eq!(s.touch_session("tok").await.unwrap(), None, "the restarted server kept nothing (no persistence)");
    s.create_session("tok", &live_session("alice")).await.unwrap();
    assert!(s.touch_session("tok").await.unwrap().is_some());
    assert_eq!(
        s.rate_hit(RateBucket::Login, "198.51.100.7", 5, Duration::from_secs(60)).await.unwrap(),
        RateDecision::Allowed { remaining: 4 },
        "scripts are loaded again on the new server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_in_flight_when_redis_dies_fail_within_the_timeout() {
    let Some(mut server) = server_or_skip("operations_in_flight_when_redis_dies_fail_within_the_timeout") else {
        return;
    };
    let s = Store::open(&fault_config(&server.url())).await.unwrap();
    s.create_session("tok", &live_session("alice")).await.unwrap();

    // 16 callers loop on reads and writes; each logs (start, duration, outcome).
    let stop = Arc::new(AtomicBool::new(false));
    let (succeeded, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let (s, stop, succeeded, failures) = (s.clone(), stop.clone(), succeeded.clone(), failures.clone());
            tokio::spawn(async move {
                let mut log = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let outcome = if i % 2 == 0 {
                        s.touch_session("tok").await.map(drop)
                    } else {
                        s.rate_hit(RateBucket::Login, &format!("ip-{i}"), 1_000_000, Duration::from_secs(60))
                            .await
                            .map(drop)
                    };
                    let failed = outcome.is_err();
                    match failed {
                        true => failures.fetch_add(1, Ordering::Relaxed),
                        false => succeeded.fetch_add(1, Ordering::Relaxed),
                    };
                    log.push((i % 2 == 0, started, started.elapsed(), outcome));
                    if failed {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    // A near-cache hit never waits, so let the other tasks run.
                    tokio::task::yield_now().await;
                }
                log
            })
        })
        .collect();

    assert_eventually!(succeeded.load(Ordering::Relaxed) >= 32, "operations to run before the kill");
    tokio::task::block_in_place(|| server.kill());
    // Taken once the process is gone: whatever starts later cannot reach it.
    let killed = Instant::now();
    // Thirty-two failures seen; the operations in flight at the kill finish
    // (within the timeout) before the workers hand their logs back.
    assert_eventually!(failures.load(Ordering::Relaxed) >= 32, "operations to fail once Redis is gone");
    stop.store(true, Ordering::Relaxed);

    let (mut ok_before, mut failed) = (0, 0);
    for w in workers {
        for (touch, started, took, outcome) in w.await.unwrap() {
            assert!(took < TIMEOUT + Duration::from_secs(1), "an operation took {took:?}");
            match outcome {
                Ok(()) if started < killed => ok_before += 1,
                // The near cache answers until its channel's connection is
                // seen closed, a few milliseconds (docs/store.md).
                Ok(()) if touch && started < killed + Duration::from_millis(100) => {}
                Ok(()) => panic!("an operation started {:?} after the kill succeeded", started - killed),
                Err(StoreError::Unavailable(_) | StoreError::Timeout) => failed += 1,
                Err(other) => panic!("expected Unavailable or Timeout, got {other:?}"),
            }
        }
    }
    assert!(ok_before > 0, "operations ran before the kill");
    assert!(failed > 0, "operations failed after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_times_out_instead_of_hanging() {
    // Accepts connections and never says a word (a frozen or black-holed server).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let s = Store::open(&fault_config(&format!("redis://127.0.0.1:{port}/0"))).await.expect("opens lazily");
    for e in every_kind_fails_closed(&s).await {
        assert!(matches!(e, StoreError::Timeout), "silence is a timeout: {e:?}");
    }
    silent.abort();
}

/// What docs/store.md promises about one Redis key pattern.
struct KeySpec {
    pattern: &'static str,
    kind: &'static str,
    /// None: the key never expires; Some(max): it expires within `max`.
    ttl: Option<Duration>,
    /// For hashes with fixed fields: the fields, sorted.
    fields: &'static [&'static str],
}

const fn key(pattern: &'static str, kind: &'static str, ttl: Option<Duration>) -> KeySpec {
    KeySpec { pattern, kind, ttl, fields: &[] }
}

const fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_redis_key_has_its_documented_type_and_expiry() {
    let Some(server) = server_or_skip("every_redis_key_has_its_documented_type_and_expiry") else { return };
    let s = Store::open(&config(&server.url())).await.unwrap();
    let now = now_s();
    let minute = Duration::from_secs(60);

    // One of everything the store keeps.
    s.create_session("tok", &session("alice", now, 600, now + 3600)).await.unwrap();
    s.put_pending("pending", &pending_login("alice"), Duration::from_secs(300)).await.unwrap();
    s.issue_code("alice", CodePurpose::Login, &code_hash("1"), Duration::from_secs(600), 3).await.unwrap();
    s.issue_code("alice", CodePurpose::EnableOtp, &code_hash("2"), Duration::from_secs(600), 3).await.unwrap();
    s.start_cooldown("alice", CodePurpose::Login, minute).await.unwrap();
    s.rate_hit(RateBucket::Login, "198.51.100.7", 5, Duration::from_secs(300)).await.unwrap();
    s.rate_record(RateBucket::AccountFailures, "alice", Duration::from_secs(3600)).await.unwrap();
    s.lock_account("alice", Duration::from_secs(900)).await.unwrap();
    let capped = AttemptLimits {
        limit: 10,
        window: Duration::from_secs(3600),
        lock_for: Duration::from_secs(900),
        cap: Some(("login-id", 3, Duration::from_secs(600))),
    };
    s.unlock_account("bob").await.unwrap();
    s.admit_attempt("bob", &capped).await.unwrap();
    s.set_otp_enabled("alice", true).await.unwrap();
    s.create_token("tokenid1", &crate::tokens::token("alice", "script", 3600)).await.unwrap();
    s.touch_token("tokenid1", now).await.unwrap();
    s.replace_backup_codes("alice", &[code_hash("b1"), code_hash("b2")]).await.unwrap();
    s.record_known_ip("alice", "198.51.100.7").await.unwrap();
    let audited: AuditRecord = audit_entry(Some("alice"), "x");
    s.append_audit(&audited).await.unwrap();
    s.note_ip_ban("198.51.100.7", Duration::from_secs(900)).await.unwrap();

    let specs = [
        KeySpec {
            fields: &["abs", "idle", "last_seen", "rec", "user"],
            ..key(r"^portcullis:\{s:[A-Za-z0-9_-]{43}\}:sess$", "hash", secs(601))
        },
        key(r"^portcullis:\{u:alice\}:sessions$", "zset", secs(3601)),
        key(r"^portcullis:pending:[A-Za-z0-9_-]{43}$", "string", secs(300)),
        KeySpec {
            fields: &["last_used", "rec", "user"],
            ..key(r"^portcullis:\{t:tokenid1\}:token$", "hash", secs(3600))
        },
        key(r"^portcullis:\{u:alice\}:tokens$", "zset", secs(3600)),
        KeySpec {
            fields: &["exp", "h", "left"],
            ..key(r"^portcullis:\{u:alice\}:code:(login|enable_otp)$", "hash", secs(1200))
        },
        key(r"^portcullis:\{u:alice\}:cooldown:login$", "string", secs(60)),
        key(r"^portcullis:rate:login:198\.51\.100\.7$", "zset", secs(300)),
        key(r"^portcullis:\{u:(alice|bob)\}:failures$", "zset", secs(3600)),
        key(r"^portcullis:\{u:bob\}:cap:login-id$", "zset", secs(600)),
        key(r"^portcullis:\{u:alice\}:lock$", "string", secs(900)),
        KeySpec { fields: &["otp_enabled"], ..key(r"^portcullis:\{u:alice\}:state$", "hash", None) },
        key(r"^portcullis:\{u:alice\}:backup$", "set", None),
        key(r"^portcullis:\{u:alice\}:ips$", "hash", None),
        key(r"^portcullis:\{u:alice\}:trail$", "stream", None),
        key(r"^portcullis:trail$", "stream", None),
        key(r"^portcullis:bans$", "zset", None),
    ];
    let patterns: Vec<regex::Regex> = specs.iter().map(|k| regex::Regex::new(k.pattern).unwrap()).collect();

    let client = ::redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query_async(&mut c).await.unwrap();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &keys {
        let matching: Vec<usize> = (0..specs.len()).filter(|&i| patterns[i].is_match(k)).collect();
        assert_eq!(matching.len(), 1, "{k} matches exactly one documented pattern");
        let spec = &specs[matching[0]];
        *seen.entry(spec.pattern).or_default() += 1;

        let kind: String = ::redis::cmd("TYPE").arg(k).query_async(&mut c).await.unwrap();
        assert_eq!(kind, spec.kind, "type of {k}");
        let pttl: i64 = ::redis::cmd("PTTL").arg(k).query_async(&mut c).await.unwrap();
        match spec.ttl {
            None => assert_eq!(pttl, -1, "{k} is durable and must not expire"),
            Some(max) => {
                let ttl = Duration::from_millis(u64::try_from(pttl).unwrap_or(0));
                assert!(pttl > 0 && ttl <= max, "{k} expires within {max:?}: PTTL {pttl}");
            }
        }
        if !spec.fields.is_empty() {
            let mut fields: Vec<String> = ::redis::cmd("HKEYS").arg(k).query_async(&mut c).await.unwrap();
            fields.sort();
            assert_eq!(fields, spec.fields, "fields of {k}");
        }
    }
    for spec in &specs {
        assert!(seen.contains_key(spec.pattern), "no key matched {}; keys: {keys:?}", spec.pattern);
    }
    assert_eq!(seen[r"^portcullis:\{u:alice\}:code:(login|enable_otp)$"], 2, "one code key per purpose");

    // A code key outlives its code, so a late attempt hears "expired".
    let code_ttl: i64 = ::redis::cmd("PTTL").arg("portcullis:{u:alice}:code:login").query_async(&mut c).await.unwrap();
    assert!(code_ttl > 600_000, "kept for twice the code's 10 minutes: {code_ttl} ms");
    let indexed: Vec<String> =
        ::redis::cmd("ZRANGE").arg("portcullis:{u:alice}:sessions").arg(0).arg(-1).query_async(&mut c).await.unwrap();
    assert_eq!(indexed, vec![Store::session_id("tok")], "the user's index lists the session by its id");
    let user: String = ::redis::cmd("HGET")
        .arg(format!("portcullis:{{s:{}}}:sess", Store::session_id("tok")))
        .arg("user")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(user, "alice", "a session names its user");
}

/// docs/store.md: forgetting a user deletes their durable keys, not just
/// their contents; what is left is the audit trail and what expires by itself.
#[tokio::test]
async fn forgetting_a_user_deletes_their_durable_keys() {
    let Some(server) = server_or_skip("forgetting_a_user_deletes_their_durable_keys") else { return };
    let s = Store::open(&config(&server.url())).await.unwrap();
    s.create_session("tok", &live_session("alice")).await.unwrap();
    s.set_otp_enabled("alice", true).await.unwrap();
    s.replace_backup_codes("alice", &[code_hash("b1")]).await.unwrap();
    s.enable_totp("alice", "sealed", 1).await.unwrap();
    assert!(s.swap_passkeys("alice", None, Some("[1]")).await.unwrap());
    s.record_known_ip("alice", "198.51.100.7").await.unwrap();
    s.lock_account("alice", Duration::from_secs(900)).await.unwrap();
    s.append_audit(&audit_entry(Some("alice"), "x")).await.unwrap();
    s.forget_user("alice").await.unwrap();

    let client = ::redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query_async(&mut c).await.unwrap();
    keys.sort();
    assert_eq!(keys, ["portcullis:trail", "portcullis:{u:alice}:lock", "portcullis:{u:alice}:trail"]);
}
