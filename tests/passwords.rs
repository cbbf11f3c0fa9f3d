//! Passwords changed and reset by their users, over HTTP, on both stores:
//! the change re-checks the current password (counted like every re-check),
//! refuses a weak new one, keeps this session under a new cookie and ends the
//! others, writes the users file keeping its comments and mode, and e-mails
//! an alert; the reset answers the same for every name, e-mails a code valid
//! 15 minutes with 3 tries, never lets the mailbox alone take over an
//! account with a second factor, ends every session (on another replica
//! too), and is limited per address.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::eventually::{PATIENCE, eventually, poll};
use support::flow::{Backend, Harness, Options, PASSWORD};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const NEW_PASSWORD: &str = "tangerine orbit ladder 42";

fn one_factor() -> Options {
    Options { policy: "one_factor", resend_cooldown: "0s", ..Default::default() }
}

async fn me(h: &Harness, c: &reqwest::Client) -> StatusCode {
    c.get(h.url("/_auth/api/me")).send().await.unwrap().status()
}

/// A bare client (own cookies) with the gateway's Origin.
fn browserless() -> reqwest::Client {
    support::crypto();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap()
}

async fn wait_for_subject(h: &Harness, needle: &str) -> bool {
    let arrived = || h.smtp.messages().iter().any(|m| m.header("Subject").unwrap_or_default().contains(needle));
    poll(PATIENCE, async || arrived().then_some(())).await.is_some()
}

/// The code in the newest reset mail after `before` mails.
async fn reset_code(h: &Harness, before: usize) -> String {
    let text = eventually("a reset mail", PATIENCE, async || {
        let msgs = h.smtp.messages();
        let m = msgs[before.min(msgs.len())..]
            .iter()
            .rev()
            .find(|m| m.header("Subject").unwrap_or_default().contains("Reset your"))?;
        Some(m.text_body().unwrap_or_default())
    })
    .await;
    assert!(text.contains("15 minutes"), "the reset code lives 15 minutes:\n{text}");
    support::find_code(&text, h.digits).expect("a code in the reset mail")
}

async fn a_password_is_changed_keeping_this_session(backend: Backend) {
    let Some(h) = Harness::start(backend, one_factor()).await else { return };
    // A comment and the file's mode, which the write must keep.
    let text = std::fs::read_to_string(&h.users).unwrap();
    std::fs::write(&h.users, format!("# people of the test\n{text}")).unwrap();
    std::fs::set_permissions(&h.users, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let other = h.login_client("testuser", PASSWORD, "curl/8").await;
    assert_eq!(me(&h, &other).await, 200);

    let (s, v) = h
        .post_as(&c, "/_auth/api/password", json!({"current_password": "wrong one", "new_password": NEW_PASSWORD}))
        .await;
    assert_eq!((s.as_u16(), v["error"].as_str()), (400, Some("Incorrect password.")), "{v}");
    let (s, v) =
        h.post_as(&c, "/_auth/api/password", json!({"current_password": PASSWORD, "new_password": "password1"})).await;
    assert_eq!((s.as_u16(), &v["weak_password"]), (400, &json!(true)), "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("This password is too easy to guess."), "{v}");
    let (s, v) =
        h.post_as(&c, "/_auth/api/password", json!({"current_password": PASSWORD, "new_password": PASSWORD})).await;
    assert_eq!(s, 400, "{v}");

    let (s, v) =
        h.post_as(&c, "/_auth/api/password", json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(me(&h, &c).await, 200, "this session goes on, under its new cookie");
    assert_eq!(me(&h, &other).await, 401, "the other session ended");

    // The file: the new hash, the comment and the mode kept.
    let text = std::fs::read_to_string(&h.users).unwrap();
    assert!(text.starts_with("# people of the test\n"), "{text}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&h.users).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640);

    let (s, _) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 400, "the old password is refused");
    let fresh = h.login_client("testuser", NEW_PASSWORD, FIREFOX).await;
    assert_eq!(me(&h, &fresh).await, 200, "the new password signs in");
    assert!(wait_for_subject(&h, "Your password was changed").await, "an alert mail");
    assert!(h.gw.wait_for_record(|r| r["event"] == "password_changed").await.is_some(), "audited");
    // The re-check's failure was counted like a failed login.
    assert!(h.gw.security_records().iter().any(|r| r["details"] == "password re-check: change the password"));
}

async fn the_change_form_works_without_javascript(backend: Backend) {
    let Some(h) = Harness::start(backend, one_factor()).await else { return };
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let page = c.get(h.url("/_auth/account/password")).send().await.unwrap().text().await.unwrap();
    let csrf = support::form_field(&page, "csrf_token").expect("a CSRF token in the form");
    let form = |confirm: &str| {
        vec![
            ("csrf_token", csrf.clone()),
            ("current_password", PASSWORD.to_owned()),
            ("new_password", NEW_PASSWORD.to_owned()),
            ("confirm_password", confirm.to_owned()),
        ]
    };
    let r = c.post(h.url("/_auth/account/password")).form(&form("typo")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("The two new passwords do not match."));
    let r = c.post(h.url("/_auth/account/password")).form(&form(NEW_PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Your password was changed."));
    assert_eq!(me(&h, &c).await, 200);
    // Without the CSRF token: refused as such.
    let mut bad = form(NEW_PASSWORD);
    bad.remove(0);
    let r = c.post(h.url("/_auth/account/password")).form(&bad).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

async fn a_password_is_reset_by_mail(backend: Backend) {
    let Some(h) = Harness::start(backend, one_factor()).await else { return };
    let bob = h.login_client("bob", "bobs-password-1", FIREFOX).await;
    let r = bob
        .post(h.url("/_auth/api/password"))
        .header("Origin", "https://evil.example")
        .json(&json!({"current_password": "bobs-password-1", "new_password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a foreign Origin with bob's session");
    let c = browserless();
    let before = h.smtp.messages().len();
    let (s, v) =
        h.post_as(&c, "/_auth/api/password-reset/start", json!({"username_or_email": "bob@example.com"})).await;
    assert_eq!(s, 200, "{v}");
    let code = reset_code(&h, before).await;

    // Weak: refused before the code is used.
    let finish =
        |code: &str, password: &str| json!({"username_or_email": "bob", "code": code, "new_password": password});
    let (s, v) = h.post_as(&c, "/_auth/api/password-reset/finish", finish(&code, "bob12345")).await;
    assert_eq!((s.as_u16(), &v["weak_password"]), (400, &json!(true)), "{v}");
    // Two wrong codes, then the right one (three tries).
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        let (s, v) = h.post_as(&c, "/_auth/api/password-reset/finish", finish(wrong, NEW_PASSWORD)).await;
        assert_eq!(s, 400, "{v}");
        assert!(v.get("remaining_attempts").is_none(), "no count that tells a real account: {v}");
    }
    let (s, v) = h.post_as(&c, "/_auth/api/password-reset/finish", finish(&code, NEW_PASSWORD)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(me(&h, &bob).await, 401, "every session of the account ended");
    let (s, _) = h.send_login("bob", "bobs-password-1").await;
    assert_eq!(s, 400, "the old password is refused");
    let fresh = h.login_client("bob", NEW_PASSWORD, FIREFOX).await;
    assert_eq!(me(&h, &fresh).await, 200);
    // The code worked once.
    let (s, _) = h.post_as(&c, "/_auth/api/password-reset/finish", finish(&code, "another fine password 7")).await;
    assert_eq!(s, 400);
    for event in ["password_reset_requested", "password_reset"] {
        assert!(h.gw.wait_for_record(|r| r["event"] == event).await.is_some(), "{event} audited");
    }
    assert!(wait_for_subject(&h, "Your password was reset").await, "an alert mail");
}

async fn three_wrong_codes_void_the_reset_code(backend: Backend) {
    let Some(h) = Harness::start(backend, one_factor()).await else { return };
    let c = browserless();
    let before = h.smtp.messages().len();
    h.post_as(&c, "/_auth/api/password-reset/start", json!({"username_or_email": "bob"})).await;
    let code = reset_code(&h, before).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let finish = |code: &str| json!({"username_or_email": "bob", "code": code, "new_password": NEW_PASSWORD});
    for _ in 0..3 {
        let (s, _) = h.post_as(&c, "/_auth/api/password-reset/finish", finish(wrong)).await;
        assert_eq!(s, 400);
    }
    let (s, v) = h.post_as(&c, "/_auth/api/password-reset/finish", finish(&code)).await;
    assert_eq!(s, 400, "the right code after three wrong ones: {v}");
    let (s, _) = h.send_login("bob", "bobs-password-1").await;
    assert_eq!(s, 200, "the password is unchanged");
}

async fn an_unknown_name_gets_the_same_answers(backend: Backend) {
    let o = Options {
        rate_limit: Some(
            "login = \"50/5m\"\nverify = \"50/5m\"\nresend = \"20/10m\"\notp_emails_per_ip = \"50/1h\"\npassword_reset = \"50/1h\"",
        ),
        ..one_factor()
    };
    let Some(h) = Harness::start(backend, o).await else { return };
    let c = browserless();
    let start = |name: &str| json!({"username_or_email": name});
    // Warm up (connections, first requests).
    for name in ["nobody", "nobody"] {
        h.post_as(&c, "/_auth/api/password-reset/start", start(name)).await;
    }
    let mut times = [Vec::new(), Vec::new()];
    let mut answers = [None, None];
    for round in 0..8 {
        for (i, name) in ["bob@example.com", "nobody@example.com"].iter().enumerate() {
            let mails = h.smtp.messages().len();
            let t = Instant::now();
            let (s, v) = h.post_as(&c, "/_auth/api/password-reset/start", start(name)).await;
            times[i].push(t.elapsed());
            if round == 0 {
                answers[i] = Some((s, v));
            }
            if i == 0 {
                // The code goes out after the answer: let it, so that its work
                // does not fall into the next request's time.
                let sent = h.smtp.wait_for(mails + 1, Duration::from_secs(10)).await;
                assert_eq!(sent.len(), mails + 1, "bob's code e-mailed in round {round}");
            }
        }
    }
    assert_eq!(answers[0], answers[1], "status and body");
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (known, unknown) = (median(&mut times[0]), median(&mut times[1]));
    let diff = known.abs_diff(unknown);
    assert!(diff < Duration::from_millis(20), "known {known:?}, unknown {unknown:?}");

    // Finishing: one answer for an unknown name and a wrong code.
    let finish = |name: &str| json!({"username_or_email": name, "code": "123456", "new_password": NEW_PASSWORD});
    let (s1, v1) = h.post_as(&c, "/_auth/api/password-reset/finish", finish("nobody")).await;
    let (s2, v2) = h.post_as(&c, "/_auth/api/password-reset/finish", finish("testuser")).await;
    assert_eq!((s1, &v1), (s2, &v2));
    assert_eq!(s1, 400);
}

async fn the_mailbox_alone_cannot_reset_a_two_factor_account(backend: Backend) {
    let Some(h) = Harness::start(backend, one_factor()).await else { return };
    let owner = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let backup = h.enable_2fa(&owner).await;
    let c = browserless();
    let finish = |code: &str, second: Option<&str>| {
        let mut v = json!({"username_or_email": "testuser", "code": code, "new_password": NEW_PASSWORD});
        if let Some(s) = second {
            v["otp_code"] = json!(s);
        }
        v
    };
    for second in [None, Some("WRONGCOD")] {
        let before = h.smtp.messages().len();
        let (s, _) = h.post_as(&c, "/_auth/api/password-reset/start", json!({"username_or_email": "testuser"})).await;
        assert_eq!(s, 200);
        let code = reset_code(&h, before).await;
        let (s, v) = h.post_as(&c, "/_auth/api/password-reset/finish", finish(&code, second)).await;
        assert_eq!((s.as_u16(), &v["second_factor_required"]), (400, &json!(true)), "{v}");
        let (s, _) = h.send_login("testuser", PASSWORD).await;
        assert_eq!(s, 200, "the password is unchanged");
    }
    // The code was used up by the attempt without a second factor: a new one, with a backup code.
    let before = h.smtp.messages().len();
    h.post_as(&c, "/_auth/api/password-reset/start", json!({"username_or_email": "testuser"})).await;
    let code = reset_code(&h, before).await;
    let (s, v) = h.post_as(&c, "/_auth/api/password-reset/finish", finish(&code, Some(&backup[0]))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(me(&h, &owner).await, 401);
    let (s, _) = h.send_login("testuser", NEW_PASSWORD).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_reset_ends_sessions_on_another_replica() {
    let Some(h) = Harness::start(Backend::Redis, one_factor()).await else { return };
    let (_replica, replica_url) = h.start_replica();
    // Bob signs in on the replica.
    let bob = browserless();
    let r = bob
        .post(format!("{replica_url}/_auth/api/send-login-otp"))
        .header("Origin", &h.origin)
        .json(&json!({"username_or_email": "bob", "password": "bobs-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let on_replica = |c: &reqwest::Client| {
        let url = format!("{replica_url}/_auth/api/me");
        let c = c.clone();
        async move { c.get(url).send().await.unwrap().status() }
    };
    assert_eq!(on_replica(&bob).await, 200);
    let c = browserless();
    let before = h.smtp.messages().len();
    h.post_as(&c, "/_auth/api/password-reset/start", json!({"username_or_email": "bob"})).await;
    let code = reset_code(&h, before).await;
    let (s, v) = h
        .post_as(
            &c,
            "/_auth/api/password-reset/finish",
            json!({"username_or_email": "bob", "code": code, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(on_replica(&bob).await, 401, "the replica's session ended with the reset");
}

async fn reset_requests_are_limited_per_address(backend: Backend) {
    let o = Options {
        rate_limit: Some(
            "login = \"50/5m\"\nverify = \"50/5m\"\nresend = \"20/10m\"\notp_emails_per_ip = \"50/1h\"\npassword_reset = \"3/1h\"",
        ),
        ..one_factor()
    };
    let Some(h) = Harness::start(backend, o).await else { return };
    let c = browserless();
    let mut statuses = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let (s, v): (StatusCode, Value) =
            h.post_as(&c, "/_auth/api/password-reset/start", json!({"username_or_email": name})).await;
        statuses.push(s.as_u16());
        if s == 429 {
            assert!(v["retry_after"].as_u64().is_some(), "{v}");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
}

/// As an attacker would try it: a parallel burst of wrong reset codes, a code
/// asked for one account given for another, a foreign Origin, malformed
/// values, and a session that is not the account's.
async fn an_attacker_gets_nothing_past_the_reset_and_the_change(backend: Backend) {
    let o = Options {
        rate_limit: Some(
            "login = \"50/5m\"\nverify = \"100/5m\"\nresend = \"20/10m\"\notp_emails_per_ip = \"50/1h\"\npassword_reset = \"50/1h\"",
        ),
        lockout: Some("ip_failures = \"100/15m\"\naccount_failures = \"100/1h\""),
        ..one_factor()
    };
    let Some(h) = Harness::start(backend, o).await else { return };
    let c = browserless();

    // A burst of 40 wrong codes at once on one live code: at most its 3 tries compared.
    let before = h.smtp.messages().len();
    h.post_as(&c, "/_auth/api/password-reset/start", json!({"username_or_email": "bob"})).await;
    let code = reset_code(&h, before).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let burst = (0..40).map(|_| {
        let body = json!({"username_or_email": "bob", "code": wrong, "new_password": NEW_PASSWORD});
        h.post_as(&c, "/_auth/api/password-reset/finish", body)
    });
    let answers = futures_util::future::join_all(burst).await;
    assert!(answers.iter().all(|(s, _)| *s == 400), "{answers:?}");
    let compared =
        h.gw.security_records()
            .iter()
            .filter(|r| r["details"] == "password reset: wrong code" && r["username"] == "bob")
            .count();
    assert!(compared <= 3, "{compared} wrong codes compared, the code allows 3");
    let (s, _) = h
        .post_as(
            &c,
            "/_auth/api/password-reset/finish",
            json!({"username_or_email": "bob", "code": code, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(s, 400, "the code is void after its tries");

    // Bob's code given for testuser.
    let before = h.smtp.messages().len();
    h.post_as(&c, "/_auth/api/password-reset/start", json!({"username_or_email": "bob"})).await;
    let code = reset_code(&h, before).await;
    let (s, _) = h
        .post_as(
            &c,
            "/_auth/api/password-reset/finish",
            json!({"username_or_email": "testuser", "code": code, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(s, 400, "a code works only for the account it was sent to");
    let (s, _) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 200, "testuser's password is unchanged");

    // A foreign Origin, on each endpoint.
    let foreign = |path: &'static str, body: Value| {
        c.post(h.url(path)).header("Origin", "https://evil.example").json(&body).send()
    };
    for (path, body) in [
        ("/_auth/api/password-reset/start", json!({"username_or_email": "bob"})),
        (
            "/_auth/api/password-reset/finish",
            json!({"username_or_email": "bob", "code": code, "new_password": NEW_PASSWORD}),
        ),
    ] {
        assert_eq!(foreign(path, body).await.unwrap().status(), 403, "{path}");
    }

    // Malformed values: a clear 400, nothing changed.
    for body in [
        json!({"username_or_email": ""}),
        json!({"username_or_email": {"$ne": null}}),
        json!({"username_or_email": "bob", "code": "12345678901234567890", "new_password": NEW_PASSWORD}),
        json!({"username_or_email": "bob", "code": "1234\u{0}5", "new_password": NEW_PASSWORD}),
        json!({"username_or_email": "bob", "code": code, "new_password": "x".repeat(300)}),
    ] {
        let path = if body.get("code").is_some() {
            "/_auth/api/password-reset/finish"
        } else {
            "/_auth/api/password-reset/start"
        };
        let (s, v) = h.post_as(&c, path, body.clone()).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    let (s, _) = h.send_login("bob", "bobs-password-1").await;
    assert_eq!(s, 200, "bob's password is unchanged");

    // Without a session, and with bob's session naming testuser: only bob's own password.
    let (s, _) =
        h.post_as(&c, "/_auth/api/password", json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD})).await;
    assert_eq!(s, 401, "no session, no change");
    let bob = h.login_client("bob", "bobs-password-1", FIREFOX).await;
    let r = bob
        .post(h.url("/_auth/api/password"))
        .header("Origin", "https://evil.example")
        .json(&json!({"current_password": "bobs-password-1", "new_password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a foreign Origin with bob's session");
    let (s, _) = h
        .post_as(
            &bob,
            "/_auth/api/password",
            json!({"username": "testuser", "current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(s, 400, "testuser's password is not bob's current password");
    let (s, _) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 200, "testuser's password is unchanged");

    // A parallel burst of wrong current passwords from one session: the
    // session's re-check window (5 by default) refuses the rest.
    let burst = (0..12).map(|i| {
        let body = json!({"current_password": format!("wrong {i}"), "new_password": NEW_PASSWORD});
        h.post_as(&bob, "/_auth/api/password", body)
    });
    let answers = futures_util::future::join_all(burst).await;
    let refused = answers.iter().filter(|(s, _)| s.as_u16() == 429).count();
    assert!(refused > 0, "the re-check window refuses a burst: {answers:?}");
}

support::on_both_stores!(
    a_password_is_changed_keeping_this_session,
    a_password_is_reset_by_mail,
    the_change_form_works_without_javascript,
    three_wrong_codes_void_the_reset_code,
    an_unknown_name_gets_the_same_answers,
    the_mailbox_alone_cannot_reset_a_two_factor_account,
    reset_requests_are_limited_per_address,
    an_attacker_gets_nothing_past_the_reset_and_the_change,
);
