//! What failed passwords cost beyond the login form, and what the lockout
//! tells an attacker: the password re-checks of the account page count like
//! failed logins (a limit per session, the account's failure window and lock,
//! the alert e-mail, the audit trail), and a name that does not exist is
//! answered exactly like one that does, lock included. Each case runs on both
//! stores.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::flow::{Backend, Harness, Options, PASSWORD};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

support::on_both_stores!(
    wrong_passwords_on_the_account_page_are_limited_per_session_and_lock_the_account,
    an_unknown_name_is_answered_like_an_existing_one_up_to_and_after_the_lock,
);

/// Status, JSON body and `Retry-After` of a request.
async fn answer(r: reqwest::Response) -> (StatusCode, Value, Option<u64>) {
    let status = r.status();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

async fn recheck(h: &Harness, c: &reqwest::Client, i: usize, password: &str) -> (StatusCode, Value, Option<u64>) {
    // Both re-checks of the account page: new backup codes, and turning 2FA off.
    let (path, body) = if i.is_multiple_of(2) {
        ("/_auth/api/backup-codes", json!({"password": password}))
    } else {
        ("/_auth/api/toggle-otp", json!({"enable_otp": false, "password": password}))
    };
    answer(c.post(h.url(path)).header("Origin", &h.origin).json(&body).send().await.unwrap()).await
}

fn security_lines(h: &Harness, event: &str, details: &str) -> usize {
    h.gw.log()
        .lines()
        .filter(|l| l.contains("\"target\":\"security\""))
        .filter(|l| l.contains(&format!("\"event\":\"{event}\"")) && l.contains(details))
        .count()
}

async fn wrong_passwords_on_the_account_page_are_limited_per_session_and_lock_the_account(b: Backend) {
    // Defaults: 5 failed re-checks per session in 15 minutes, 10 failures per account in an hour.
    let o = Options { policy: "one_factor", ..Default::default() };
    let Some(h) = Harness::start(b, o).await else { return };
    let first = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let codes = h.enable_2fa(&first).await;
    assert_eq!(codes.len(), 8);

    for i in 0..5 {
        let (s, v, _) = recheck(&h, &first, i, "not the password").await;
        assert_eq!(s, 400, "re-check {i}: {v}");
        assert_eq!(v["error"], "Incorrect password.", "{v}");
    }
    let (s, v, retry) = recheck(&h, &first, 5, "not the password").await;
    assert_eq!(s, 429, "the sixth wrong password in one session is refused: {v}");
    assert!(retry.is_some_and(|r| r > 0 && r <= 900), "Retry-After {retry:?}");
    let (s, v, _) = recheck(&h, &first, 0, PASSWORD).await;
    assert_eq!(s, 429, "refused before the password is even checked: {v}");

    // Another session of the same account carries on to the account's limit.
    let second = h.login_client("testuser", PASSWORD, FIREFOX).await;
    for i in 0..5 {
        let (s, v, _) = recheck(&h, &second, i, "still not it").await;
        assert_eq!(s, 400, "account failure {}: {v}", 6 + i);
    }
    let (s, v, retry) = recheck(&h, &second, 0, PASSWORD).await;
    assert_eq!(s, 403, "ten failures lock the account, even for the right password: {v}");
    assert_eq!(v["account_locked"], true, "{v}");
    assert!(v["error"].as_str().unwrap_or_default().contains("temporarily locked"), "{v}");
    assert!(retry.is_some_and(|r| r > 850 && r <= 900), "Retry-After {retry:?}");

    // The lock is the login's lock too.
    let (s, v) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["account_locked"], true, "{v}");

    let mails = h.smtp.wait_for(5, Duration::from_secs(5)).await;
    let locked = mails.iter().find(|m| m.text_body().unwrap_or_default().contains("temporarily locked"));
    let locked = locked.expect("the lock is e-mailed to the user");
    assert!(locked.header("To").unwrap_or_default().contains("test@example.com"));
    assert!(h.gw.wait_for_log(|l| l.contains("\"event\":\"account_locked\"")).await.is_some());
    assert_eq!(security_lines(&h, "invalid_credentials", "password re-check"), 10, "each failure is audited");
    assert_eq!(support::sample(&h.metrics().await, "portcullis_lockouts_total", &[]), 1.0);
}

/// Twelve wrong passwords for `name`, each from its own address (so no
/// address's own limit is what answers): status, body and Retry-After of each.
async fn twelve_failures(h: &Harness, name: &str, net: &str) -> Vec<(StatusCode, Value, Option<u64>)> {
    let mut out = Vec::new();
    for i in 0..12 {
        let r = support::client()
            .post(h.url("/_auth/api/send-login-otp"))
            .header("Origin", &h.origin)
            .header("X-Forwarded-For", format!("{net}.{i}"))
            .json(&json!({"username_or_email": name, "password": "a wrong password"}))
            .send()
            .await
            .unwrap();
        out.push(answer(r).await);
    }
    out
}

async fn an_unknown_name_is_answered_like_an_existing_one_up_to_and_after_the_lock(b: Backend) {
    let o = Options { policy: "one_factor", lockout: Some("ip_failures = \"100/15m\""), ..Default::default() };
    let Some(h) = Harness::start(b, o).await else { return };
    let existing = twelve_failures(&h, "bob", "198.51.100").await;
    let unknown = twelve_failures(&h, "nobody", "203.0.113").await;
    let by_email = twelve_failures(&h, "Nobody@Example.com", "192.0.2").await;
    let statuses = |a: &[(StatusCode, Value, Option<u64>)]| a.iter().map(|(s, _, _)| s.as_u16()).collect::<Vec<_>>();
    let locked_at_the_eleventh = [400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 403, 403];
    assert_eq!(statuses(&existing), locked_at_the_eleventh, "{existing:?}");
    assert_eq!(statuses(&unknown), statuses(&existing), "{unknown:?}");
    assert_eq!(statuses(&by_email), statuses(&existing), "{by_email:?}");
    for i in 0..12 {
        for other in [&unknown[i], &by_email[i]] {
            // The retry time counts down from each lock: equal within the second it took.
            let (e, o) = (existing[i].2, other.2);
            assert_eq!(e.is_some(), o.is_some(), "attempt {i}: Retry-After {e:?} vs {o:?}");
            assert!(e.zip(o).is_none_or(|(e, o)| e.abs_diff(o) <= 1), "attempt {i}: {e:?} vs {o:?}");
            let strip = |v: &Value| {
                let mut v = v.clone();
                v.as_object_mut().map(|m| m.remove("retry_after"));
                v
            };
            assert_eq!(strip(&existing[i].1), strip(&other.1), "attempt {i} answers the same");
        }
    }
    assert_eq!(existing[11].1["account_locked"], true, "{:?}", existing[11]);
    // A name that does not exist stays locked for a right password too: there is none.
    let r = support::client()
        .post(h.url("/_auth/api/send-login-otp"))
        .header("Origin", &h.origin)
        .header("X-Forwarded-For", "198.51.100.200")
        .json(&json!({"username_or_email": "bob", "password": "bobs-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the existing account is locked for its right password");
}

#[tokio::test]
async fn toggling_2fa_to_its_state_needs_no_password_and_a_wrong_backup_code_counts_toward_the_lock() {
    let o = Options { policy: "one_factor", ..Default::default() };
    let Some(h) = Harness::start(Backend::Memory, o).await else { return };
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;

    // Turning 2FA to the state it is in changes nothing, successfully, and
    // asks for no password (so it costs no re-check).
    let (s, v) = h.post_as(&c, "/_auth/api/toggle-otp", json!({"enable_otp": false})).await;
    assert_eq!((s, &v["message"]), (StatusCode::OK, &json!("No changes made")), "{v}");
    assert_eq!((&v["success"], &v["otp_enabled"]), (&json!(true), &json!(false)), "{v}");
    let codes = h.enable_2fa(&c).await;
    let (s, v) = h.post_as(&c, "/_auth/api/toggle-otp", json!({"enable_otp": true})).await;
    assert_eq!((s, &v["message"]), (StatusCode::OK, &json!("No changes made")), "{v}");
    assert_eq!(v["otp_enabled"], true, "{v}");

    // A wrong backup code says how many failures are left before the account locks.
    let fresh = support::client();
    let (s, v) = h
        .post_as(&fresh, "/_auth/api/send-login-otp", json!({"username_or_email": "testuser", "password": PASSWORD}))
        .await;
    assert_eq!((s, &v["otp_required"]), (StatusCode::OK, &json!(true)), "{v}");
    let (s, v) = h.post_as(&fresh, "/_auth/api/verify-backup-code", json!({"code": "ZZZZ-ZZZZ"})).await;
    assert_eq!((s, v["remaining_attempts"].as_u64()), (StatusCode::BAD_REQUEST, Some(9)), "{v}");
    let (s, v) = h.post_as(&fresh, "/_auth/api/verify-backup-code", json!({"code": "ZZZZ-ZZZY"})).await;
    assert_eq!((s, v["remaining_attempts"].as_u64()), (StatusCode::BAD_REQUEST, Some(8)), "{v}");
    let (s, v) = h.post_as(&fresh, "/_auth/api/verify-backup-code", json!({"code": codes[0]})).await;
    assert_eq!(s, 200, "{v}");
}
