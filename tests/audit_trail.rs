//! The audit trail is complete: every refusal by a limit, logins to disabled
//! accounts, repeated failures (which alert the user, once an hour), logouts,
//! the session that turning 2FA on rotates in, and new backup codes (which
//! alert the user too). Revocations are audited where they happen
//! (tests/credentials.rs, tests/operator.rs).

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use portcullis::auth::error::AuthError;
use portcullis::auth::login::PasswordOutcome;
use portcullis::config::{Policy, RateSpec};
use portcullis::store::{AuditKind, AuditRecord};
use serde_json::json;
use support::flow::{Backend, Harness, Options, PASSWORD};
use support::machine::{self, Machine, client, machine};

fn events<'a>(trail: &'a [AuditRecord], kind: AuditKind, event: &str) -> Vec<&'a AuditRecord> {
    trail.iter().filter(|r| r.kind == kind && r.event == event).collect()
}

fn exceeded(trail: &[AuditRecord], limit: &str) -> usize {
    events(trail, AuditKind::SecurityEvent, "rate_limit_exceeded")
        .iter()
        .filter(|r| r.details.starts_with(limit))
        .count()
}

async fn pending(m: &Machine, ip: &str) -> String {
    match m.login().password_step("alice", machine::PASSWORD, false, None, &client(ip)).await {
        Ok(PasswordOutcome::CodeSent { pending_token, .. }) => pending_token,
        other => panic!("a code is sent: {other:?}"),
    }
}

#[tokio::test]
async fn every_refusal_by_a_limit_is_audited_as_rate_limit_exceeded() {
    let Some(m) = machine(Backend::Memory, Policy::TwoFactor, |c| {
        c.rate_limit.login = RateSpec::new(2, Duration::from_secs(300));
        c.rate_limit.verify = RateSpec::new(1, Duration::from_secs(300));
        c.rate_limit.resend = RateSpec::new(1, Duration::from_secs(600));
        c.rate_limit.otp_emails_per_ip = RateSpec::new(2, Duration::from_secs(3600));
        c.otp.resend_cooldown = Duration::ZERO;
    })
    .await
    else {
        return;
    };
    // The login window: two tries per address.
    let token = pending(&m, "192.0.2.1").await;
    let _ = m.password("alice", "wrong", "192.0.2.1").await;
    let r = m.password("alice", machine::PASSWORD, "192.0.2.1").await;
    assert!(matches!(r, Err(AuthError::RateLimited { .. })), "{r:?}");
    assert_eq!(exceeded(&m.global_audit().await, "login"), 1);

    // The verify window: one code or backup code per address.
    let ip = client("192.0.2.1");
    let _ = m.login().code_step(Some(&token), "000000", &ip).await;
    let r = m.login().code_step(Some(&token), "000000", &ip).await;
    assert!(matches!(r, Err(AuthError::RateLimited { .. })), "{r:?}");
    let r = m.login().backup_step(Some(&token), "AAAA-AAAA", &ip).await;
    assert!(matches!(r, Err(AuthError::RateLimited { .. })), "{r:?}");
    let trail = m.audit("alice").await;
    assert_eq!(exceeded(&trail, "verify"), 2, "{trail:#?}");
    assert_eq!(events(&trail, AuditKind::LoginAttempt, "rate_limited").len(), 2, "both refused attempts recorded");

    // The resend window, then the address's code e-mails.
    m.login().resend(Some(&token), &ip).await.expect("one resend");
    let r = m.login().resend(Some(&token), &ip).await;
    assert!(matches!(r, Err(AuthError::RateLimited { .. })), "{r:?}");
    assert_eq!(exceeded(&m.audit("alice").await, "resend"), 1);
    let other = client("192.0.2.2");
    let token = pending(&m, "192.0.2.2").await;
    m.login().resend(Some(&token), &other).await.expect("second code e-mail");
    let r = m.login().password_step("alice", machine::PASSWORD, false, None, &other).await;
    assert!(matches!(r, Err(AuthError::RateLimited { .. })), "the third code e-mail is refused: {r:?}");
    assert_eq!(exceeded(&m.audit("alice").await, "otp_emails"), 1);
}

#[tokio::test]
async fn a_login_to_a_disabled_account_is_audited() {
    let Some(m) = machine(Backend::Memory, Policy::OneFactor, |_| {}).await else { return };
    portcullis::auth::users::UsersFileWriter::new(&m.users_file).set_disabled("bob", true).unwrap();
    m.app.users.reload().await.unwrap();
    let r = m.password("bob", "bobs password 1", "192.0.2.7").await;
    assert!(matches!(r, Err(AuthError::Disabled)), "{r:?}");
    let trail = m.audit("bob").await;
    let disabled = events(&trail, AuditKind::LoginAttempt, "account_disabled");
    assert_eq!(disabled.len(), 1, "{trail:#?}");
    assert_eq!(disabled[0].ip, "192.0.2.7");
}

#[tokio::test]
async fn three_failures_in_an_hour_alert_the_user_once_an_hour() {
    let Some(m) = machine(Backend::Memory, Policy::OneFactor, |_| {}).await else { return };
    let alert = "failed sign-in attempts";
    for i in 0..2 {
        let _ = m.password("alice", "wrong", &format!("192.0.2.{i}")).await;
    }
    assert_eq!(m.wait_for_subject(alert, 1).await, 0, "two failures are not yet suspicious");
    let _ = m.password("alice", "wrong", "192.0.2.2").await;
    assert_eq!(m.wait_for_subject(alert, 1).await, 1, "the third failure alerts: {:?}", m.subjects());
    for i in 3..6 {
        let _ = m.password("alice", "wrong", &format!("192.0.2.{i}")).await;
    }
    // A second alert would come within the 5 s wait_for_subject gives it.
    assert_eq!(m.wait_for_subject(alert, 2).await, 1, "not again within the hour: {:?}", m.subjects());
    let flagged = events(&m.audit("alice").await, AuditKind::SecurityEvent, "suspicious_activity").len();
    assert_eq!(flagged, 1, "flagged once too");

    m.clock.advance(Duration::from_secs(3600));
    // An hour later the earlier failures have aged out; three new ones alert again.
    for i in 6..9 {
        let _ = m.password("alice", "wrong", &format!("192.0.2.{i}")).await;
    }
    assert_eq!(m.wait_for_subject(alert, 2).await, 2, "{:?}", m.subjects());
    assert_eq!(events(&m.audit("bob").await, AuditKind::SecurityEvent, "suspicious_activity").len(), 0);
}

#[tokio::test]
async fn sessions_created_counts_the_session_that_turning_2fa_on_rotates_in() {
    let Some(h) = Harness::start(Backend::Memory, Options { policy: "one_factor", ..Default::default() }).await else {
        return;
    };
    let c = h.login_client("testuser", PASSWORD, "curl/8").await;
    let created = || async { support::sample(&h.metrics().await, "portcullis_sessions_created_total", &[]) };
    assert_eq!(created().await, 1.0);
    h.enable_2fa(&c).await;
    assert_eq!(created().await, 2.0, "the rotated session is a new session");
}

#[tokio::test]
async fn a_logout_is_audited() {
    let Some(h) = Harness::start(Backend::Memory, Options { policy: "one_factor", ..Default::default() }).await else {
        return;
    };
    let c = h.login_client("testuser", PASSWORD, "curl/8").await;
    let (s, v) = h.post_as(&c, "/_auth/logout", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert!(h.gw.wait_for_log(|l| l.contains("\"event\":\"logout\"")).await.is_some(), "logout audited");
    assert_eq!(c.get(h.url("/app")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn new_backup_codes_replace_the_old_ones_and_alert_the_user() {
    let Some(h) = Harness::start(Backend::Memory, Options { policy: "one_factor", ..Default::default() }).await else {
        return;
    };
    let c = h.login_client("testuser", PASSWORD, "curl/8").await;
    let old = h.enable_2fa(&c).await;
    let mails = h.smtp.messages().len();
    let (s, v) = h.post_as(&c, "/_auth/api/backup-codes", json!({"password": PASSWORD})).await;
    assert_eq!(s, 200, "{v}");
    let new: Vec<String> =
        v["backup_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(new.len(), 8);
    assert!(new.iter().all(|c| !old.contains(c)), "a new set");
    let me: serde_json::Value = c.get(h.url("/_auth/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["backup_codes_left"], 8);

    let alerts = h.smtp.wait_for(mails + 1, Duration::from_secs(5)).await;
    let alert = alerts.last().unwrap();
    assert!(alert.header("To").unwrap_or_default().contains("test@example.com"));
    assert!(alert.text_body().unwrap_or_default().contains("new backup codes"), "{:?}", alert.text_body());
    let record = h.gw.wait_for_log(|l| l.contains("backup_codes_generated") && l.contains("regenerated")).await;
    assert!(record.is_some(), "the new set is audited");

    // An old code is void; a new one signs in.
    let fresh = support::client();
    let (s, _) = h
        .post_as(&fresh, "/_auth/api/send-login-otp", json!({"username_or_email": "testuser", "password": PASSWORD}))
        .await;
    assert_eq!(s, 200);
    let (s, v) = h.post_as(&fresh, "/_auth/api/verify-backup-code", json!({"code": old[0]})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = h.post_as(&fresh, "/_auth/api/verify-backup-code", json!({"code": new[0]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(fresh.get(h.url("/app")).send().await.unwrap().status(), 200);
}
