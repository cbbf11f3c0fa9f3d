//! The account page and its API (the seed's dashboard): 2FA on and off, backup
//! codes, login history, sessions and alerts. Each case runs on both stores.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::flow::{Backend, Harness, Options, PASSWORD};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME_MAC: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

fn one_factor() -> Options {
    Options { policy: "one_factor", ..Default::default() }
}

async fn status_of(h: &Harness, c: &reqwest::Client) -> StatusCode {
    c.get(h.url("/app")).send().await.unwrap().status()
}

support::on_both_stores!(
    enabling_2fa_with_email_verification_makes_the_next_login_require_a_code,
    a_backup_code_works_once_even_under_concurrent_use,
    disabling_needs_the_password_and_sends_an_alert,
    revoking_a_session_kills_its_cookie_at_once,
    me_lists_recent_logins_newest_first,
    account_page_renders_for_users_with_and_without_2fa,
    running_low_on_backup_codes_is_warned_and_each_use_is_audited,
);

async fn enabling_2fa_with_email_verification_makes_the_next_login_require_a_code(b: Backend) {
    let Some(h) = Harness::start(b, one_factor()).await else { return };
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    assert_eq!(h.smtp.messages().len(), 0, "one_factor login sends no code");
    let (s, me) = h.post_as(&c, "/_auth/api/toggle-otp", json!({"enable_otp": true})).await;
    assert_eq!(s, 200, "{me}");
    let (s, v) = h.post_as(&c, "/_auth/api/confirm-enable-otp", json!({"otp_code": "000000"})).await;
    assert_eq!(s, 400, "a wrong confirmation code is refused: {v}");
    let code = h.code_from_mail(1).await;
    let (s, v) = h.post_as(&c, "/_auth/api/confirm-enable-otp", json!({"otp_code": code})).await;
    assert_eq!(s, 200, "{v}");
    let codes = v["backup_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 8);
    assert!(codes.iter().all(|c| c.as_str().unwrap().len() == 8));
    assert_eq!(status_of(&h, &c).await, 200, "the enabling session carries on (rotated)");
    let me: Value = c.get(h.url("/_auth/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["otp_enabled"], true);
    assert_eq!(me["backup_codes_left"], 8);
    let alert = h.smtp.wait_for(2, std::time::Duration::from_secs(5)).await;
    assert!(alert[1].header("Subject").unwrap_or_default().contains("security alert"), "an alert follows");

    // The next login needs a code although the policy says one_factor.
    let fresh = support::client();
    let (s, v) = h
        .post_as(&fresh, "/_auth/api/send-login-otp", json!({"username_or_email": "testuser", "password": PASSWORD}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["otp_required"], true, "{v}");
}

async fn a_backup_code_works_once_even_under_concurrent_use(b: Backend) {
    let Some(h) = Harness::start(b, one_factor()).await else { return };
    let owner = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let codes = h.enable_2fa(&owner).await;

    // Two browsers at the code step, both trying the same backup code at once.
    let mut pending = Vec::new();
    for _ in 0..2 {
        let c = support::client();
        let (s, v) = h
            .post_as(&c, "/_auth/api/send-login-otp", json!({"username_or_email": "testuser", "password": PASSWORD}))
            .await;
        assert_eq!(s, 200);
        assert_eq!(v["otp_required"], true);
        pending.push(c);
    }
    let code = codes[0].clone();
    let (a, b2) = tokio::join!(
        h.post_as(&pending[0], "/_auth/api/verify-backup-code", json!({"code": code})),
        h.post_as(&pending[1], "/_auth/api/verify-backup-code", json!({"code": code})),
    );
    let successes = [a.0, b2.0].iter().filter(|s| **s == 200).count();
    assert_eq!(successes, 1, "exactly one use succeeds: {a:?} {b2:?}");

    // Reuse later fails too; another code works, typed loosely.
    let c = support::client();
    h.post_as(&c, "/_auth/api/send-login-otp", json!({"username_or_email": "testuser", "password": PASSWORD})).await;
    let (s, _) = h.post_as(&c, "/_auth/api/verify-backup-code", json!({"code": code})).await;
    assert_eq!(s, 400);
    let loose = format!("{}-{}", codes[1][..4].to_lowercase(), &codes[1][4..]);
    let (s, v) = h.post_as(&c, "/_auth/api/verify-backup-code", json!({"code": loose})).await;
    assert_eq!(s, 200, "{v}");
    let me: Value = c.get(h.url("/_auth/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["backup_codes_left"], 6);
    let mails = h.smtp.messages();
    assert!(mails.iter().any(|m| m.text_body().unwrap_or_default().contains("backup code")), "backup use alert");
}

async fn disabling_needs_the_password_and_sends_an_alert(b: Backend) {
    let Some(h) = Harness::start(b, one_factor()).await else { return };
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    h.enable_2fa(&c).await;
    let (s, _) = h.post_as(&c, "/_auth/api/toggle-otp", json!({"enable_otp": false})).await;
    assert_eq!(s, 400, "no password");
    let (s, _) = h.post_as(&c, "/_auth/api/toggle-otp", json!({"enable_otp": false, "password": "nope"})).await;
    assert_eq!(s, 400, "wrong password");
    let me: Value = c.get(h.url("/_auth/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["otp_enabled"], true);
    let before = h.smtp.messages().len();
    let (s, v) = h.post_as(&c, "/_auth/api/toggle-otp", json!({"enable_otp": false, "password": PASSWORD})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["otp_enabled"], false);
    let mails = h.smtp.wait_for(before + 1, std::time::Duration::from_secs(5)).await;
    let alert = mails.last().unwrap();
    assert!(alert.header("Subject").unwrap_or_default().contains("turned off"), "{:?}", alert.header("Subject"));
    // Regenerating backup codes needs the password too.
    let (s, _) = h.post_as(&c, "/_auth/api/backup-codes", json!({})).await;
    assert_eq!(s, 400);
    // Not logged in: 401.
    let (s, _) = h.post_as(&support::client(), "/_auth/api/toggle-otp", json!({"enable_otp": true})).await;
    assert_eq!(s, 401);
}

async fn revoking_a_session_kills_its_cookie_at_once(b: Backend) {
    let Some(h) = Harness::start(b, one_factor()).await else { return };
    let a = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let b2 = h.login_client("testuser", PASSWORD, CHROME_MAC).await;
    let c = h.login_client("testuser", PASSWORD, IPHONE).await;
    let list: Value = a.get(h.url("/_auth/api/sessions")).send().await.unwrap().json().await.unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{list}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let chrome = sessions.iter().find(|s| s["device"] == "Chrome on macOS").expect("chrome session");
    let id = chrome["id"].as_str().unwrap();
    let r = a.delete(h.url(&format!("/_auth/api/sessions/{id}"))).header("Origin", &h.origin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status_of(&h, &b2).await, 401, "revoked at once");
    assert_eq!(status_of(&h, &c).await, 200);
    let r = a.delete(h.url("/_auth/api/sessions/not-a-session")).header("Origin", &h.origin).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Sign out everywhere else.
    let r = a.delete(h.url("/_auth/api/sessions")).header("Origin", &h.origin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status_of(&h, &c).await, 401);
    assert_eq!(status_of(&h, &a).await, 200, "the current session stays");
}

async fn me_lists_recent_logins_newest_first(b: Backend) {
    let Some(h) = Harness::start_on_clock(b, one_factor()).await else { return };
    for ua in [FIREFOX, CHROME_MAC, IPHONE] {
        h.login_client("testuser", PASSWORD, ua).await;
        h.pass(std::time::Duration::from_millis(1100)).await;
    }
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let me: Value = c.get(h.url("/_auth/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["username"], "testuser");
    assert_eq!(me["email"], "test@example.com");
    let recent = me["recent_logins"].as_array().unwrap();
    assert_eq!(recent.len(), 4, "{me}");
    let devices: Vec<&str> = recent.iter().map(|r| r["device"].as_str().unwrap()).collect();
    assert_eq!(devices, ["Firefox on Linux", "Safari on iOS", "Chrome on macOS", "Firefox on Linux"]);
    let times: Vec<&str> = recent.iter().map(|r| r["timestamp"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(recent[0]["ip"], "127.0.0.1");
    let r = support::client().get(h.url("/_auth/api/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

async fn account_page_renders_for_users_with_and_without_2fa(b: Backend) {
    let Some(h) = Harness::start(b, one_factor()).await else { return };
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let page = c.get(h.url("/_auth/account")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("test@example.com"));
    assert!(html.contains("Turn on two-factor authentication"));
    assert!(html.contains("Firefox on Linux"));
    assert!(!html.contains("<script>") && !html.contains("style=\""), "no inline script or style");

    // Turn it on with plain form posts (JavaScript off).
    let csrf = support::form_field(&html, "csrf_token").unwrap();
    let r = c
        .post(h.url("/_auth/account/otp"))
        .form(&[("enable_otp", "true"), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let csrf = support::form_field(&html, "csrf_token").unwrap();
    let code = h.code_from_mail(1).await;
    let r = c
        .post(h.url("/_auth/account/otp/confirm"))
        .form(&[("otp_code", code.as_str()), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("backup-codes.txt"), "download link");
    assert_eq!(html.matches("<li><code>").count(), 8, "eight codes shown once");
    let again = c.get(h.url("/_auth/account")).send().await.unwrap().text().await.unwrap();
    assert_eq!(again.matches("<li><code>").count(), 0, "codes are not shown again");
    assert!(again.contains("Sign out everywhere else"));
}

async fn running_low_on_backup_codes_is_warned_and_each_use_is_audited(b: Backend) {
    let Some(h) = Harness::start(b, one_factor()).await else { return };
    let owner = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let codes = h.enable_2fa(&owner).await;
    let warning = "backup codes left";
    let page = owner.get(h.url("/_auth/account")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<strong>8</strong> unused backup codes"), "count shown");
    assert!(!page.contains(warning), "no warning with 8 left");

    // Use six of them, each at its own code step.
    for code in &codes[..6] {
        let c = support::client();
        let (s, v) = h
            .post_as(&c, "/_auth/api/send-login-otp", json!({"username_or_email": "testuser", "password": PASSWORD}))
            .await;
        assert_eq!((s, v["otp_required"].clone()), (StatusCode::OK, json!(true)));
        let (s, v) = h.post_as(&c, "/_auth/api/verify-backup-code", json!({"code": code})).await;
        assert_eq!(s, 200, "{v}");
    }
    let page = owner.get(h.url("/_auth/account")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Only 2 backup codes left"), "warned at two left");
    // The log writer batches lines: wait for the sixth use's before counting.
    let sixth =
        h.gw.wait_for_log(|l| l.contains("\"event\":\"backup_code_used\"") && l.contains("2 backup codes left"));
    assert!(sixth.await.is_some(), "the sixth use is audited");
    let used =
        h.gw.log()
            .lines()
            .filter(|l| l.contains("\"target\":\"security\"") && l.contains("\"event\":\"backup_code_used\""))
            .count();
    assert_eq!(used, 6, "each use is a backup_code_used security event");
}

/// Under the default `two_factor` policy a user who never turned 2FA on was
/// just asked for a code: the page says the organisation requires it, not
/// "Off"; under `one_factor` it is off and says so.
#[tokio::test]
async fn the_account_page_says_a_code_is_required_by_the_organisation_under_the_two_factor_policy() {
    let h = Harness::start(Backend::Memory, Options::default()).await.expect("harness");
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    assert_eq!(h.smtp.messages().len(), 1, "the login needed a code");
    let html = c.get(h.url("/_auth/account")).header("Accept", "text/html").send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Required by your organisation"), "{html}");
    assert!(!html.contains("Only your password protects this account"), "{html}");
    let me: Value = c.get(h.url("/_auth/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!((me["otp_enabled"].clone(), me["otp_required_by_policy"].clone()), (json!(false), json!(true)));

    let h = Harness::start(Backend::Memory, one_factor()).await.expect("harness");
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let html = c.get(h.url("/_auth/account")).header("Accept", "text/html").send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Only your password protects this account"), "{html}");
    assert!(!html.contains("Required by your organisation"));
    let me: Value = c.get(h.url("/_auth/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["otp_required_by_policy"], false);
}
