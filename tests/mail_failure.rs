//! A login whose code e-mail fails, for each way a real relay fails one (the
//! SMTP sink's `Failure` modes, plus a relay that never answers): the user gets
//! a 503 within `mail.timeout`, no pending login is handed out or left behind,
//! the user has no code, the failure is counted and audited, the gateway tries
//! the relay once (no retry storm), and the next login works once the relay
//! does. Each case runs on the memory store and on a real redis-server.
//! (That a code from a failed send cannot be used is shown end to end in
//! tests/login.rs, `mail_failure_gives_503_and_voids_the_code`.)

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::assert_eventually;
use support::flow::{Backend, Harness, Options, PASSWORD};
use support::sample;
use support::smtp::Failure;

support::on_both_stores!(
    a_relay_refusing_the_credentials_fails_the_login_cleanly,
    a_relay_deferring_at_the_greeting_fails_the_login_cleanly,
    a_relay_deferring_after_the_message_fails_the_login_cleanly,
    a_relay_hanging_up_mid_message_fails_the_login_cleanly,
    a_relay_that_never_answers_fails_the_login_within_the_mail_timeout,
);

const MAIL_TIMEOUT: Duration = Duration::from_secs(2);

async fn a_relay_refusing_the_credentials_fails_the_login_cleanly(b: Backend) {
    login_fails_cleanly(b, Failure::RefuseAuth).await;
}

async fn a_relay_deferring_at_the_greeting_fails_the_login_cleanly(b: Backend) {
    login_fails_cleanly(b, Failure::DeferAtConnect).await;
}

async fn a_relay_deferring_after_the_message_fails_the_login_cleanly(b: Backend) {
    login_fails_cleanly(b, Failure::DeferAfterData).await;
}

async fn a_relay_hanging_up_mid_message_fails_the_login_cleanly(b: Backend) {
    login_fails_cleanly(b, Failure::DropMidData).await;
}

async fn a_relay_that_never_answers_fails_the_login_within_the_mail_timeout(b: Backend) {
    let Some(h) = harness(b).await else { return };
    h.smtp.set_silent(true);
    let took = failed_login(&h).await;
    assert!(took >= MAIL_TIMEOUT, "gave up before mail.timeout: {took:?}");
    assert_eq!(h.smtp.connections(), 1, "one connection, no retry");
    assert!(h.smtp.commands().is_empty(), "the relay never spoke: {:?}", h.smtp.commands());
    h.smtp.set_silent(false);
    recovers(&h).await;
}

async fn harness(b: Backend) -> Option<Harness> {
    Harness::start(b, Options { mail_timeout: "2s", ..Default::default() }).await
}

async fn login_fails_cleanly(b: Backend, failure: Failure) {
    let Some(h) = harness(b).await else { return };
    h.smtp.set_failure(failure);
    failed_login(&h).await;

    // One delivery attempt: one connection, and the command the relay failed
    // sent once. Checked again after the other checks, which take a while,
    // so a retry in the background would be seen too.
    let one_attempt = || {
        let commands = h.smtp.commands();
        let count = |verb: &str| commands.iter().filter(|c| *c == verb).count();
        assert_eq!(h.smtp.connections(), 1, "{failure:?}: one connection: {commands:?}");
        match failure {
            Failure::DeferAtConnect => assert!(commands.is_empty(), "{commands:?}"),
            Failure::RefuseAuth => assert_eq!((count("AUTH"), count("MAIL")), (1, 0), "{commands:?}"),
            _ => assert_eq!((count("MAIL"), count("DATA")), (1, 1), "{failure:?}: {commands:?}"),
        }
        assert!(h.smtp.messages().is_empty(), "{failure:?}: nothing was delivered");
    };
    one_attempt();
    if matches!(failure, Failure::DeferAfterData | Failure::DropMidData) {
        let refused = h.smtp.wait_for_refused(1, Duration::from_secs(5)).await;
        assert_eq!(refused.len(), 1, "{failure:?}: the sink saw the one message");
    }
    one_attempt();
    h.smtp.set_failure(Failure::None);
    recovers(&h).await;
}

/// Posts a login while the relay fails; checks the answer, that nothing is
/// left pending, the metrics and the audit line. Returns how long the login took.
async fn failed_login(h: &Harness) -> Duration {
    let m0 = h.metrics().await;
    let started = Instant::now();
    let r = h
        .http
        .post(h.url("/_auth/api/send-login-otp"))
        .header("Origin", &h.origin)
        .json(&json!({"username_or_email": "testuser", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Argon2 and the login's store work come on top of the mail timeout; a
    // second more is generous on a loaded machine, and far from a retry loop.
    assert!(took < MAIL_TIMEOUT + Duration::from_secs(1), "took {took:?} with mail.timeout {MAIL_TIMEOUT:?}");
    assert!(r.headers().get("set-cookie").is_none(), "no pending login is handed out: {:?}", r.headers());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("could not be sent")), "{v}");

    let (s, v) = h.verify("123456").await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("No pending login")), "{v}");
    if h.redis.is_some() {
        // The pending login is removed in the background: poll for it.
        assert_eventually!(
            within Duration::from_secs(5),
            h.redis_keys("portcullis:pending:*").await == Some(vec![]),
            "a pending login is left in Redis"
        );
        assert_eq!(h.redis_keys("portcullis:{u:testuser}:code:*").await, Some(vec![]), "the code is voided");
    }

    let m1 = h.metrics().await;
    let moved = |name: &str, labels: &[(&str, &str)]| sample(&m1, name, labels) - sample(&m0, name, labels);
    assert_eq!(moved("portcullis_mail_failures_total", &[]), 1.0, "counted once");
    assert_eq!(moved("portcullis_otp_sent_total", &[]), 0.0);

    let audit = h.gw.wait_for_log(|l| l.contains("\"target\":\"security\"") && l.contains("mail_failed")).await;
    let audit: Value = serde_json::from_str(&audit.expect("the failure is audited")).unwrap();
    assert_eq!(audit["kind"], "security_event", "{audit}");
    assert_eq!(audit["event"], "mail_failed", "{audit}");
    assert_eq!(audit["user"], "testuser", "{audit}");
    assert!(audit["details"].as_str().is_some_and(|d| d.contains("login")), "names the purpose: {audit}");
    took
}

/// With the relay working again, a login gets its code and completes.
async fn recovers(h: &Harness) {
    let (s, v) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 200, "the gateway recovers by itself: {v}");
    let code = h.code_from_mail(1).await;
    let (s, v) = h.verify(&code).await;
    assert_eq!(s, 200, "{v}");
}
