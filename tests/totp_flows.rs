//! The authenticator-app login on the state machine with a manual clock (no
//! HTTP, no sleeping), on the memory store and on a real redis-server: the
//! drift window is exactly `totp.skew` steps either side of now and moves
//! with the clock, and wrong app codes lock the account as wrong e-mailed
//! codes do, after which even a right code is refused.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use portcullis::auth::error::{AuthError, Factor};
use portcullis::auth::login::PasswordOutcome;
use portcullis::auth::totp::{base32_decode, code_at, step_at};
use portcullis::config::Policy;
use support::flow::Backend;
use support::machine::{Machine, PASSWORD, client, machine};

/// Sets up an app for alice (one-factor session, password re-check, first
/// code) and returns its secret. The clock then moves on five steps, past
/// the confirming code's.
async fn enrol(m: &Machine) -> Vec<u8> {
    let token = m.session_for("alice", PASSWORD).await;
    let alice = m.user("alice");
    let c = client("198.51.100.1");
    let e = m.account().totp_setup(&alice, &token, Some(PASSWORD), &c).await.expect("setup");
    let secret = base32_decode(&e.secret).expect("base32");
    let now = step_at(m.clock.now_unix(), 30);
    m.account().totp_confirm(&alice, &token, &code_at(&secret, now, 6), &c).await.expect("confirmed");
    m.clock.advance(std::time::Duration::from_secs(150));
    secret
}

/// A pending login for alice from `ip`, asking for the app's code.
async fn pending(m: &Machine, ip: &str) -> String {
    match m.password("alice", PASSWORD, ip).await {
        Ok(PasswordOutcome::AppCodeAsked { pending_token, methods, .. }) => {
            assert_eq!(methods, ["totp", "email", "backup_code"]);
            pending_token
        }
        other => panic!("expected the app to be asked for, got {other:?}"),
    }
}

support::on_both_stores!(
    the_drift_window_is_one_step_either_side_and_moves_with_the_clock,
    wrong_app_codes_lock_the_account_and_then_a_right_code_is_refused,
);

async fn the_drift_window_is_one_step_either_side_and_moves_with_the_clock(b: Backend) {
    let Some(m) = machine(b, Policy::OneFactor, |_| {}).await else { return };
    let secret = enrol(&m).await;
    let now = step_at(m.clock.now_unix(), 30);
    let c = client("198.51.100.2");
    let code = |step: u64| code_at(&secret, step, 6);

    let t = pending(&m, "198.51.100.2").await;
    let r = m.login().totp_step(Some(&t), &code(now - 2), &c).await;
    assert!(
        matches!(r, Err(AuthError::Wrong { factor: Factor::Totp, remaining: Some(2) })),
        "two steps back is too old: {r:?}"
    );
    for step in [now - 1, now, now + 1] {
        let t = pending(&m, "198.51.100.2").await;
        let done = m.login().totp_step(Some(&t), &code(step), &c).await;
        assert!(done.is_ok(), "step {} from now is accepted: {done:?}", step as i64 - now as i64);
    }
    let t = pending(&m, "198.51.100.2").await;
    let r = m.login().totp_step(Some(&t), &code(now + 2), &c).await;
    assert!(matches!(r, Err(AuthError::Wrong { factor: Factor::Totp, .. })), "two steps ahead is too new: {r:?}");
    m.clock.advance(std::time::Duration::from_secs(60));
    let done = m.login().totp_step(Some(&t), &code(now + 2), &c).await;
    assert!(done.is_ok(), "a minute later it is current: {done:?}");
    let successes = m.audit("alice").await.iter().filter(|r| r.details == "two_factor: totp").count();
    assert_eq!(successes, 4);
}

async fn wrong_app_codes_lock_the_account_and_then_a_right_code_is_refused(b: Backend) {
    let Some(m) = machine(b, Policy::OneFactor, |c| {
        c.rate_limit.verify = portcullis::config::RateSpec::new(100, std::time::Duration::from_secs(300));
    })
    .await
    else {
        return;
    };
    let secret = enrol(&m).await;
    let now = step_at(m.clock.now_unix(), 30);
    let wrong = code_at(&secret, now - 5, 6);
    // lockout.account_failures is 10 an hour; each login allows otp.max_attempts (3) app codes.
    let mut last = String::new();
    for (i, tries) in [3, 3, 3, 1].into_iter().enumerate() {
        let ip = format!("203.0.113.{}", i + 1);
        last = pending(&m, &ip).await;
        for _ in 0..tries {
            let r = m.login().totp_step(Some(&last), &wrong, &client(&ip)).await;
            assert!(
                matches!(
                    r,
                    Err(AuthError::Wrong { factor: Factor::Totp, .. } | AuthError::Exhausted { factor: Factor::Totp })
                ),
                "{r:?}"
            );
        }
    }
    let r = m.login().totp_step(Some(&last), &code_at(&secret, now, 6), &client("203.0.113.4")).await;
    assert!(matches!(r, Err(AuthError::Locked { .. })), "the tenth failure locked the account: {r:?}");
    assert!(m.audit("alice").await.iter().any(|r| r.event == "account_locked"));
}
