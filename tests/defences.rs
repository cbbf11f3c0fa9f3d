//! Brute-force defences and the audit trail (SPEC §2 [rate_limit], [lockout],
//! §8): limits per client IP that hold across replicas, lockouts that expire
//! and can be lifted, and an audit trail recording each case.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::assert_eventually;
use support::flow::{Backend, Harness, Options, PASSWORD};

async fn attempt(
    h: &Harness,
    base: &str,
    user: &str,
    password: &str,
    xff: Option<&str>,
) -> (StatusCode, Value, Option<String>) {
    let mut req = support::client()
        .post(format!("{base}/_auth/api/send-login-otp"))
        .header("Origin", &h.origin)
        .json(&json!({"username_or_email": user, "password": password}));
    if let Some(ip) = xff {
        req = req.header("X-Forwarded-For", ip);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

support::on_both_stores!(
    login_rate_limit_gives_429_with_retry_after,
    rotating_forwarded_for_evades_nothing_from_an_untrusted_peer,
    forwarded_for_from_a_trusted_proxy_is_honoured,
    an_account_lock_expires_by_itself,
    a_login_from_a_new_ip_alerts_but_the_very_first_login_does_not,
    a_locked_account_gets_a_clear_403_and_an_alert_mail,
);

async fn login_rate_limit_gives_429_with_retry_after(b: Backend) {
    let o = Options { policy: "one_factor", rate_limit: Some("login = \"5/5m\""), ..Default::default() };
    let Some(h) = Harness::start(b, o).await else { return };
    for _ in 0..5 {
        assert_eq!(attempt(&h, &h.origin, "testuser", PASSWORD, None).await.0, 200);
    }
    let (s, v, retry) = attempt(&h, &h.origin, "testuser", PASSWORD, None).await;
    assert_eq!(s, 429, "{v}");
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=300).contains(&secs));
    assert!(v["retry_after"].as_u64().is_some_and(|r| r > 0 && r <= 300), "{v}");
    let audited = h.gw.wait_for_log(|l| l.contains("\"target\":\"security\"") && l.contains("rate_limited"));
    assert!(audited.await.is_some(), "audited");
}

async fn rotating_forwarded_for_evades_nothing_from_an_untrusted_peer(b: Backend) {
    let o = Options {
        trusted_proxies: Some("[\"10.0.0.0/8\"]"),
        lockout: Some("ip_failures = \"5/15m\""),
        ..Default::default()
    };
    let Some(h) = Harness::start(b, o).await else { return };
    let mut statuses = Vec::new();
    for i in 0..8 {
        let ip = format!("203.0.113.{i}");
        statuses.push(attempt(&h, &h.origin, "testuser", "wrong", Some(&ip)).await.0.as_u16());
    }
    assert_eq!(statuses, [400, 400, 400, 400, 400, 429, 429, 429]);
}

async fn forwarded_for_from_a_trusted_proxy_is_honoured(b: Backend) {
    let o = Options { lockout: Some("ip_failures = \"5/15m\"\naccount_failures = \"100/1h\""), ..Default::default() };
    let Some(h) = Harness::start(b, o).await else { return };
    for i in 0..8 {
        let ip = format!("198.51.100.{i}");
        assert_eq!(
            attempt(&h, &h.origin, "testuser", "wrong", Some(&ip)).await.0,
            400,
            "each client has its own window"
        );
    }
    // One client over its limit is refused; another is not.
    for _ in 0..5 {
        attempt(&h, &h.origin, "testuser", "wrong", Some("192.0.2.1")).await;
    }
    assert_eq!(attempt(&h, &h.origin, "testuser", "wrong", Some("192.0.2.1")).await.0, 429);
    assert_eq!(attempt(&h, &h.origin, "testuser", "wrong", Some("192.0.2.2")).await.0, 400);
}

async fn an_account_lock_expires_by_itself(b: Backend) {
    let o = Options {
        policy: "one_factor",
        lockout: Some("ip_failures = \"100/15m\"\naccount_failures = \"3/1h\"\naccount_lock = \"2s\""),
        ..Default::default()
    };
    let Some(h) = Harness::start_on_clock(b, o).await else { return };
    for _ in 0..3 {
        assert_eq!(attempt(&h, &h.origin, "testuser", "wrong", None).await.0, 400);
    }
    let (s, v, _) = attempt(&h, &h.origin, "testuser", PASSWORD, None).await;
    assert_eq!(s, 403, "locked even with the right password: {v}");
    assert_eq!(v["account_locked"], true);
    assert!(v["error"].as_str().unwrap().contains("locked"));
    let alert = h.smtp.wait_for(1, Duration::from_secs(5)).await;
    assert!(alert[0].header("Subject").unwrap_or_default().contains("locked"), "lock alert e-mailed");
    // Other accounts are unaffected.
    assert_eq!(attempt(&h, &h.origin, "bob", "bobs-password-1", None).await.0, 200);
    h.pass(Duration::from_millis(2300)).await;
    assert_eq!(attempt(&h, &h.origin, "testuser", PASSWORD, None).await.0, 200, "the lock expired");
}

fn portcullis(h: &Harness, args: &[&str]) -> (i32, String, String) {
    let config = h.gw.dir.path().join("portcullis.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn limits_hold_across_two_replicas_sharing_redis() {
    let o = Options { policy: "one_factor", rate_limit: Some("login = \"5/5m\""), ..Default::default() };
    let Some(h) = Harness::start(Backend::Redis, o).await else { return };
    let (_replica, replica_url) = h.start_replica();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let base = if i % 2 == 0 { h.origin.clone() } else { replica_url.clone() };
        let origin = h.origin.clone();
        tasks.push(tokio::spawn(async move {
            support::client()
                .post(format!("{base}/_auth/api/send-login-otp"))
                .header("Origin", origin)
                .json(&json!({"username_or_email": "testuser", "password": PASSWORD}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap().as_u16() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, limited), (5, 15), "the two replicas together let exactly the limit through");

    // A session made on one replica works on the other.
    let c = support::client();
    let r = c
        .post(format!("{replica_url}/_auth/api/send-login-otp"))
        .header("Origin", &h.origin)
        .header("X-Forwarded-For", "192.0.2.77")
        .json(&json!({"username_or_email": "bob", "password": "bobs-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let r = support::client().get(h.url("/app")).header("Cookie", cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn unlock_lifts_a_lock_and_the_audit_trail_records_each_case() {
    let o = Options {
        policy: "one_factor",
        lockout: Some("ip_failures = \"100/15m\"\naccount_failures = \"3/1h\"\naccount_lock = \"15m\""),
        rate_limit: Some("login = \"20/5m\""),
        ..Default::default()
    };
    let Some(h) = Harness::start(Backend::Redis, o).await else { return };
    assert_eq!(attempt(&h, &h.origin, "testuser", PASSWORD, None).await.0, 200);
    for _ in 0..3 {
        attempt(&h, &h.origin, "testuser", "wrong", None).await;
    }
    assert_eq!(attempt(&h, &h.origin, "testuser", PASSWORD, None).await.0, 403);
    let (code, out, err) = portcullis(&h, &["unlock", "testuser"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("unlocked"), "{out}");
    assert_eq!(attempt(&h, &h.origin, "testuser", PASSWORD, None).await.0, 200, "unlocked at once");

    let (code, out, err) = portcullis(&h, &["audit", "--user", "testuser", "--json"]);
    assert_eq!(code, 0, "{err}");
    let records: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events: Vec<&str> = records.iter().map(|r| r["event"].as_str().unwrap()).collect();
    let first_attempt = records.iter().find(|r| r["kind"] == "login_attempt").unwrap();
    assert_eq!(first_attempt["event"], "success", "newest first: {events:?}");
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "suspicious_activity" && r["details"].as_str().unwrap().contains("failed attempts")),
        "three failures within the hour are flagged: {events:?}"
    );
    for expected in ["success", "invalid_credentials", "account_locked"] {
        assert!(events.contains(&expected), "{expected} missing from {events:?}");
    }
    assert!(records.iter().any(|r| r["kind"] == "security_event" && r["event"] == "account_locked"));
    assert!(records.iter().filter(|r| r["event"] != "account_unlocked").all(|r| r["ip"] == "127.0.0.1"));
    let (code, out, _) = portcullis(&h, &["audit", "--limit", "3"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1 + 3, "a header, then the global trail, limited: {out}");
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["TIME", "(UTC)", "KIND", "EVENT", "USER", "BY", "ADDRESS", "DETAILS"], "{out}");

    // Sessions can be ended from the command line too.
    let c = h.login_client("bob", "bobs-password-1", "curl/8").await;
    assert_eq!(c.get(h.url("/app")).send().await.unwrap().status(), 200);
    let (code, out, _) = portcullis(&h, &["sessions", "revoke", "bob"]);
    assert_eq!(code, 0);
    assert!(out.contains("1 session"), "{out}");
    assert_eq!(c.get(h.url("/app")).send().await.unwrap().status(), 401);
}

/// Subjects of the mails the sink received, in order.
fn subjects(h: &Harness) -> Vec<String> {
    h.smtp.messages().iter().map(|m| m.header("Subject").unwrap_or_default()).collect()
}

async fn a_login_from_a_new_ip_alerts_but_the_very_first_login_does_not(b: Backend) {
    let o = Options { policy: "one_factor", ..Default::default() };
    let Some(h) = Harness::start(b, o).await else { return };
    let new_ip = |m: &support::smtp::Message| m.header("Subject").is_some_and(|s| s.contains("unfamiliar IP"));
    // The loopback peer is a trusted proxy, so X-Forwarded-For names the client.
    // First login ever, then the same address again, then a new one, then that
    // one again: only the third may alert.
    for ip in ["192.0.2.1", "192.0.2.1", "198.51.100.7", "198.51.100.7"] {
        assert_eq!(attempt(&h, &h.origin, "bob", "bobs-password-1", Some(ip)).await.0, 200, "{ip}");
    }
    // "No alert" is read once the alert that must come has arrived, not after a
    // guessed pause. The gateway sends a login's alert before answering it; were
    // alerts sent in the background, an earlier login's would still not come
    // after a later one's, so waiting for the third login's covers the first two.
    assert_eventually!(h.smtp.messages().iter().any(new_ip), "no new-IP alert: {:?}", subjects(&h));
    let alerts: Vec<_> = h.smtp.messages().into_iter().filter(new_ip).collect();
    assert_eq!(alerts.len(), 1, "one alert, for the new address only: {:?}", subjects(&h));
    let alert = &alerts[0];
    assert!(alert.header("To").unwrap_or_default().contains("bob@example.com"));
    assert!(alert.text_body().unwrap_or_default().contains("198.51.100.7"), "the alert names the address");
    let log = h.gw.wait_for_log(|l| l.contains("\"target\":\"security\"") && l.contains("new IP")).await;
    assert!(log.is_some(), "recorded as suspicious activity");
    let flagged: Vec<Value> =
        h.gw.security_records()
            .into_iter()
            .filter(|r| r["event"] == "suspicious_activity" && r["details"].as_str().unwrap_or("").contains("new IP"))
            .collect();
    assert_eq!(flagged.len(), 1, "one new-IP record: {flagged:?}");
    assert_eq!(flagged[0]["ip"], "198.51.100.7");
    let successive =
        h.gw.wait_for_log(|l| l.contains("suspicious_activity") && l.contains("less than 5 minutes apart"));
    assert!(successive.await.is_some(), "successive logins are flagged too");
}

async fn a_locked_account_gets_a_clear_403_and_an_alert_mail(b: Backend) {
    let o = Options {
        policy: "one_factor",
        lockout: Some("ip_failures = \"100/15m\"\naccount_failures = \"3/1h\"\naccount_lock = \"15m\""),
        ..Default::default()
    };
    let Some(h) = Harness::start(b, o).await else { return };
    for _ in 0..3 {
        assert_eq!(attempt(&h, &h.origin, "testuser", "wrong", None).await.0, 400);
    }
    let (s, v, _) = attempt(&h, &h.origin, "testuser", PASSWORD, None).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["success"], false);
    assert_eq!(v["account_locked"], true, "{v}");
    assert!(v["error"].as_str().unwrap().contains("temporarily locked"), "{v}");
    let mails = h.smtp.wait_for(1, Duration::from_secs(5)).await;
    let alert = &mails[0];
    assert!(alert.header("To").unwrap_or_default().contains("test@example.com"));
    assert!(alert.text_body().unwrap_or_default().contains("temporarily locked"), "{:?}", alert.text_body());
    let metrics = h.metrics().await;
    assert_eq!(support::sample(&metrics, "portcullis_lockouts_total", &[]), 1.0, "counted once");
}
