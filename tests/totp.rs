//! Authenticator apps (TOTP) end to end over HTTP, on both stores: setting
//! one up after the password (secret, otpauth URI and QR code), confirming it
//! with its first code, signing in with it (and nothing e-mailed), a code
//! accepted once, e-mail and backup codes as fallbacks, wrong codes counted
//! like wrong e-mailed codes, removal with the password, and the alerts,
//! audit records and metrics that name the factor. The tests compute the
//! codes from the secret the gateway handed out, as an app would.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use portcullis::auth::totp::{base32_decode, code_at};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::flow::{Backend, Harness, Options, PASSWORD, code_after};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// One factor by default. No resend cooldown: setting an app up takes an
/// e-mailed code first (a step-up), and the tests then ask for e-mailed codes
/// at once.
fn one_factor() -> Options {
    Options { policy: "one_factor", resend_cooldown: "0s", ..Default::default() }
}

fn fresh_client() -> reqwest::Client {
    support::crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .user_agent(FIREFOX)
        .build()
        .unwrap()
}

async fn me(h: &Harness, c: &reqwest::Client) -> Value {
    let r = c.get(h.url("/_auth/api/me")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Mails with `subject` in the first `n` the sink received (waiting up to 5 s for them).
async fn mails_about(h: &Harness, n: usize, subject: &str) -> usize {
    let msgs = h.smtp.wait_for(n, Duration::from_secs(5)).await;
    msgs.iter().filter(|m| m.header("Subject").unwrap_or_default().contains(subject)).count()
}

support::on_both_stores!(
    an_app_set_up_after_the_password_signs_in_without_any_email,
    a_code_from_the_app_is_accepted_once,
    with_an_app_a_code_can_still_be_emailed_or_a_backup_code_used,
    wrong_app_codes_count_like_wrong_emailed_codes,
    removing_the_app_needs_the_password_and_sends_an_alert,
);

async fn an_app_set_up_after_the_password_signs_in_without_any_email(b: Backend) {
    let Some(h) = Harness::start(b, one_factor()).await else { return };
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;

    // The password alone cannot add a factor: a code e-mailed to the address
    // on file raises the session first.
    let (s, v) = h.post_as(&c, "/_auth/api/totp/setup", json!({"password": PASSWORD})).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["step_up"], true, "{v}");
    assert_eq!(me(&h, &c).await["session_level"], "one_factor");
    h.step_up(&c).await;
    assert_eq!(me(&h, &c).await["session_level"], "two_factor");
    let mails_before_setup = h.smtp.messages().len();

    let (s, v) = h.post_as(&c, "/_auth/api/totp/setup", json!({})).await;
    assert_eq!(s, 400, "the password is required: {v}");
    let (s, v) = h.post_as(&c, "/_auth/api/totp/setup", json!({"password": "wrong password"})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "Incorrect password.");
    let (s, v) = h.post_as(&c, "/_auth/api/totp/confirm", json!({"otp_code": "123456"})).await;
    assert_eq!(s, 400, "nothing to confirm before setup: {v}");

    let (s, v) = h.post_as(&c, "/_auth/api/totp/setup", json!({"password": PASSWORD})).await;
    assert_eq!(s, 200, "{v}");
    let b32 = v["secret"].as_str().unwrap();
    let uri = v["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Portcullis:test%40example.com?"), "{uri}");
    assert!(uri.contains(&format!("secret={b32}")) && uri.contains("issuer=Portcullis"), "{uri}");
    assert!(uri.contains("digits=6") && uri.contains("period=30") && uri.contains("algorithm=SHA1"), "{uri}");
    let svg = v["qr_svg"].as_str().unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<path"), "an inline SVG QR code");
    let secret = base32_decode(b32).unwrap();
    assert!(!me(&h, &c).await["totp_enabled"].as_bool().unwrap(), "not on before a code confirms it");

    let (s, v) = h.post_as(&c, "/_auth/api/totp/confirm", json!({"otp_code": "000000"})).await;
    assert_eq!(s, 400, "a wrong code does not confirm: {v}");
    let (code, step) = code_after(&secret, 0).await;
    let (s, v) = h.post_as(&c, "/_auth/api/totp/confirm", json!({"otp_code": code})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["totp_enabled"], true);
    assert_eq!(v["backup_codes"].as_array().map(Vec::len), Some(8), "a user without backup codes gets 8: {v}");
    let alerts = mails_about(&h, mails_before_setup + 1, "An authenticator app was set up").await;
    assert_eq!(alerts, 1, "the alert e-mail");
    let me_now = me(&h, &c).await;
    assert_eq!(me_now["totp_enabled"], true, "{me_now}");
    assert_eq!(me_now["second_factors"], json!(["totp"]));
    assert_eq!(me_now["backup_codes_left"], 8);
    let (s, v) = h.post_as(&c, "/_auth/api/totp/setup", json!({"password": PASSWORD})).await;
    assert_eq!(s, 400, "one app at a time: {v}");

    // A new sign-in: the password, then the app's code; no e-mail at all.
    let mails_before = h.smtp.messages().len();
    let other = fresh_client();
    let (s, v) = h
        .post_as(&other, "/_auth/api/send-login-otp", json!({"username_or_email": "testuser", "password": PASSWORD}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["otp_required"], true, "the app makes the second factor required: {v}");
    assert_eq!(v["methods"], json!(["totp", "email", "backup_code"]));
    assert_eq!(other.get(h.url("/app")).send().await.unwrap().status(), 401, "not signed in yet");
    let (code, _) = code_after(&secret, step).await;
    let (s, v) = h.post_as(&other, "/_auth/api/verify-login-otp", json!({"otp_code": code, "method": "totp"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(other.get(h.url("/app")).send().await.unwrap().status(), 200, "signed in");
    // A login's mails (a code, a new-IP alert) are sent before it is
    // answered, and the sink keeps a mail before it acknowledges it.
    assert_eq!(h.smtp.messages().len(), mails_before, "no code was e-mailed");

    let login = h.gw.wait_for_record(|r| r["event"] == "success" && r["details"] == "two_factor: totp").await;
    assert!(login.is_some(), "the login's audit record names the factor");
    let audit = h.gw.security_records();
    assert!(audit.iter().any(|r| r["event"] == "totp_enabled"), "audited: {audit:?}");
    let m = h.metrics().await;
    assert_eq!(support::sample(&m, "portcullis_auth_attempts_total", &[("stage", "totp"), ("result", "success")]), 1.0);
}

async fn a_code_from_the_app_is_accepted_once(b: Backend) {
    let Some(h) = Harness::start(b, one_factor()).await else { return };
    let e = h.enrol_app(FIREFOX).await;
    let (code, step) = code_after(&e.secret, e.step).await;

    let first = fresh_client();
    let login = json!({"username_or_email": "testuser", "password": PASSWORD});
    let (s, _) = h.post_as(&first, "/_auth/api/send-login-otp", login.clone()).await;
    assert_eq!(s, 200);
    let (s, v) = h.post_as(&first, "/_auth/api/verify-login-otp", json!({"otp_code": code, "method": "totp"})).await;
    assert_eq!(s, 200, "{v}");

    // Someone who saw the code types it again within its 30 s.
    let second = fresh_client();
    let (s, _) = h.post_as(&second, "/_auth/api/send-login-otp", login.clone()).await;
    assert_eq!(s, 200);
    let (s, v) = h.post_as(&second, "/_auth/api/verify-login-otp", json!({"otp_code": code, "method": "totp"})).await;
    assert_eq!(s, 400, "a used code is refused: {v}");
    assert_eq!(v["remaining_attempts"], 2, "and counts as a wrong one: {v}");
    let earlier = code_at(&e.secret, e.step, 6);
    let (s, v) =
        h.post_as(&second, "/_auth/api/verify-login-otp", json!({"otp_code": earlier, "method": "totp"})).await;
    assert_eq!(s, 400, "so is an earlier step's code, still inside the drift: {v}");
    assert_eq!(second.get(h.url("/app")).send().await.unwrap().status(), 401);

    // The next code works.
    let (next, _) = code_after(&e.secret, step).await;
    let (s, v) = h.post_as(&second, "/_auth/api/verify-login-otp", json!({"otp_code": next, "method": "totp"})).await;
    assert_eq!(s, 200, "{v}");

    let replay =
        h.gw.wait_for_record(|r| {
            r["event"] == "invalid_otp" && r["details"].as_str().unwrap_or("").starts_with("totp: code already used")
        })
        .await;
    assert!(replay.is_some(), "the replay is audited as such");
    let m = h.metrics().await;
    let replayed = support::sample(&m, "portcullis_auth_attempts_total", &[("stage", "totp"), ("result", "replayed")]);
    assert!(replayed >= 1.0, "counted as replayed: {replayed}");
}

async fn with_an_app_a_code_can_still_be_emailed_or_a_backup_code_used(b: Backend) {
    let Some(h) = Harness::start(b, one_factor()).await else { return };
    let e = h.enrol_app(FIREFOX).await;
    assert_eq!(e.backup_codes.len(), 8);
    // The step-up's code and the setup's alert.
    let mails = h.smtp.wait_for(2, Duration::from_secs(5)).await.len();
    let login = json!({"username_or_email": "testuser", "password": PASSWORD});

    let c = fresh_client();
    let (s, _) = h.post_as(&c, "/_auth/api/send-login-otp", login.clone()).await;
    assert_eq!(s, 200);
    let (s, v) = h.post_as(&c, "/_auth/api/resend-otp", json!({"method": "sms"})).await;
    assert_eq!(s, 400, "only e-mail can be sent: {v}");
    let (s, v) = h.post_as(&c, "/_auth/api/resend-otp", json!({"method": "email"})).await;
    assert_eq!(s, 200, "a code is e-mailed on request: {v}");
    let code = h.code_from_mail(mails + 1).await;
    let (s, v) = h.post_as(&c, "/_auth/api/verify-login-otp", json!({"otp_code": code, "method": "email"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(c.get(h.url("/app")).send().await.unwrap().status(), 200);

    let c = fresh_client();
    let (s, _) = h.post_as(&c, "/_auth/api/send-login-otp", login).await;
    assert_eq!(s, 200);
    let (s, v) = h.post_as(&c, "/_auth/api/verify-backup-code", json!({"code": e.backup_codes[0]})).await;
    assert_eq!(s, 200, "{v}");
    let login = h.gw.wait_for_record(|r| r["event"] == "success" && r["details"] == "two_factor: email").await;
    assert!(login.is_some(), "the backup-code login is audited as the e-mail factor");
}

async fn wrong_app_codes_count_like_wrong_emailed_codes(b: Backend) {
    let Some(h) = Harness::start(b, one_factor()).await else { return };
    let e = h.enrol_app(FIREFOX).await;
    let c = fresh_client();
    let (s, _) = h
        .post_as(&c, "/_auth/api/send-login-otp", json!({"username_or_email": "testuser", "password": PASSWORD}))
        .await;
    assert_eq!(s, 200);
    // A code far from now: right for the secret, wrong for the time.
    let stale = code_at(&e.secret, e.step.saturating_sub(10), 6);
    for remaining in [2, 1] {
        let (s, v) = h.post_as(&c, "/_auth/api/verify-login-otp", json!({"otp_code": stale, "method": "totp"})).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["remaining_attempts"], remaining, "{v}");
    }
    let (s, v) = h.post_as(&c, "/_auth/api/verify-login-otp", json!({"otp_code": stale, "method": "totp"})).await;
    assert_eq!((s, &v["max_attempts_reached"]), (StatusCode::BAD_REQUEST, &json!(true)), "{v}");
    let (right, _) = code_after(&e.secret, e.step).await;
    let (s, v) = h.post_as(&c, "/_auth/api/verify-login-otp", json!({"otp_code": right, "method": "totp"})).await;
    assert_eq!(s, 400, "after three wrong codes the app is refused for this login, even a right code: {v}");
    assert_eq!(v["max_attempts_reached"], true);

    let m = h.metrics().await;
    let wrong = support::sample(&m, "portcullis_auth_attempts_total", &[("stage", "totp"), ("result", "invalid_otp")]);
    assert_eq!(wrong, 3.0);
    assert_eq!(
        support::sample(&m, "portcullis_auth_attempts_total", &[("stage", "totp"), ("result", "max_attempts")]),
        1.0
    );
    // An e-mailed code still finishes this login.
    let mails = h.smtp.messages().len();
    let (s, v) = h.post_as(&c, "/_auth/api/resend-otp", json!({"method": "email"})).await;
    assert_eq!(s, 200, "{v}");
    let code = h.code_from_mail(mails + 1).await;
    let (s, v) = h.post_as(&c, "/_auth/api/verify-login-otp", json!({"otp_code": code})).await;
    assert_eq!(s, 200, "{v}");
}

async fn removing_the_app_needs_the_password_and_sends_an_alert(b: Backend) {
    let Some(h) = Harness::start(b, one_factor()).await else { return };
    let e = h.enrol_app(FIREFOX).await;
    let c = &e.client;
    let (s, v) = h.post_as(c, "/_auth/api/totp/remove", json!({})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = h.post_as(c, "/_auth/api/totp/remove", json!({"password": "not it"})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(me(&h, c).await["totp_enabled"], true, "still on");
    let (s, v) = h.post_as(c, "/_auth/api/totp/remove", json!({"password": PASSWORD})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["totp_enabled"], false);
    // After the step-up's code and the setup's alert.
    assert_eq!(mails_about(&h, 3, "Your authenticator app was removed").await, 1, "the alert e-mail");
    let now = me(&h, c).await;
    assert_eq!((now["totp_enabled"].clone(), now["backup_codes_left"].clone()), (json!(false), json!(0)), "{now}");
    let (s, v) = h.post_as(c, "/_auth/api/totp/remove", json!({})).await;
    assert_eq!((s, &v["message"]), (StatusCode::OK, &json!("No changes made")), "{v}");
    assert!(h.gw.wait_for_record(|r| r["event"] == "totp_removed").await.is_some(), "the removal is audited");

    // The password alone signs in again (the policy is one_factor).
    let other = fresh_client();
    let (s, v) = h
        .post_as(&other, "/_auth/api/send-login-otp", json!({"username_or_email": "testuser", "password": PASSWORD}))
        .await;
    assert_eq!((s, &v["otp_required"]), (StatusCode::OK, &json!(false)), "{v}");
}
