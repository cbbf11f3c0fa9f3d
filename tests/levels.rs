//! Levels, tried as an attacker would: with a password alone (a one-factor
//! session where the default policy is `one_factor`), nothing reaches a path
//! that needs two factors: not by enrolling an app or a passkey of one's own,
//! not by spelling the path with `;` parameters, not by choosing the login's
//! return address; and parallel guesses of a second factor compare no more
//! answers than the caps allow. Proxy mode and forward-auth alike, on both
//! stores.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::flow::{Backend, Harness, Options, PASSWORD, code_after};
use tokio::sync::Barrier;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// Default one factor; `/admin/` needs two; `/internal/` is denied; `/ops/`
/// needs two for staff (testuser is staff) and is denied to the rest.
fn guarded() -> Options {
    let extra = r#"
[[access_control.rules]]
path = "^/admin/"
policy = "two_factor"
[[access_control.rules]]
path = "^/internal/"
policy = "deny"
[[access_control.rules]]
path = "^/ops/"
groups = ["staff"]
policy = "two_factor"
[[access_control.rules]]
path = "^/ops/"
policy = "deny"
"#;
    Options {
        policy: "one_factor",
        public_host: "localhost",
        resend_cooldown: "0s",
        extra: extra.into(),
        ..Default::default()
    }
}

/// What the proxy answers `c` for `path` (an API client: 401 when a login is needed).
async fn via_proxy(h: &Harness, c: &reqwest::Client, path: &str) -> StatusCode {
    c.get(h.url(path)).send().await.unwrap().status()
}

/// What forward-auth answers nginx for `path` asked by `c`.
async fn via_verify(h: &Harness, c: &reqwest::Client, path: &str) -> StatusCode {
    c.get(h.url("/_auth/verify?mode=nginx")).header("X-Original-URL", h.url(path)).send().await.unwrap().status()
}

async fn me(h: &Harness, c: &reqwest::Client) -> Value {
    c.get(h.url("/_auth/api/me")).send().await.unwrap().json().await.unwrap()
}

support::on_both_stores!(
    a_password_alone_cannot_enrol_a_factor_and_reach_two_factor_paths,
    path_parameters_cannot_reach_a_denied_or_two_factor_path,
    a_login_reaches_the_level_the_gate_asks_of_its_return_address,
    parallel_wrong_app_codes_compare_at_most_the_logins_cap,
    parallel_wrong_backup_codes_compare_at_most_the_account_window,
    parallel_wrong_emailed_codes_compare_at_most_the_codes_tries,
    wrong_codes_confirming_a_new_app_count_and_lock_the_account,
);

async fn a_password_alone_cannot_enrol_a_factor_and_reach_two_factor_paths(b: Backend) {
    let Some(h) = Harness::start(b, guarded()).await else { return };
    let victim = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let attacker = h.login_client("testuser", PASSWORD, FIREFOX).await;
    assert_eq!(via_proxy(&h, &attacker, "/app").await, 200, "one factor is enough by default");
    assert_eq!(via_proxy(&h, &attacker, "/admin/secret").await, 401);

    // An app of the attacker's own: refused before any secret is handed out.
    let (s, v) = h.post_as(&attacker, "/_auth/api/totp/setup", json!({"password": PASSWORD})).await;
    assert_eq!((s.as_u16(), &v["step_up"]), (401, &json!(true)), "{v}");
    assert!(v.get("secret").is_none(), "{v}");
    let (s, v) = h.post_as(&attacker, "/_auth/api/totp/confirm", json!({"otp_code": "123456"})).await;
    assert_eq!(s, 401, "{v}");
    // A passkey of the attacker's own: the same.
    let (s, v) =
        h.post_as(&attacker, "/_auth/api/passkey/register/start", json!({"password": PASSWORD, "name": "mine"})).await;
    assert_eq!((s.as_u16(), &v["step_up"]), (401, &json!(true)), "{v}");
    let (s, v) = h.post_as(&attacker, "/_auth/api/passkey/register/finish", json!({"credential": {}})).await;
    assert_eq!(s, 401, "{v}");

    for path in ["/admin/secret", "/ops/x"] {
        assert_eq!(via_proxy(&h, &attacker, path).await, 401, "proxy: {path}");
        assert_eq!(via_verify(&h, &attacker, path).await, 401, "forward-auth: {path}");
    }
    assert_eq!(me(&h, &attacker).await["session_level"], "one_factor");
    let account = me(&h, &victim).await;
    assert_eq!(account["second_factors"], json!([]), "no factor was added: {account}");
    assert_eq!(via_proxy(&h, &victim, "/app").await, 200, "the victim's session lives on");

    // The account's owner adds an app after a code e-mailed to the address on
    // file; the session stays at the level that code gave it.
    h.step_up(&victim).await;
    assert_eq!(via_proxy(&h, &victim, "/admin/secret").await, 200);
    let (s, v) = h.post_as(&victim, "/_auth/api/totp/setup", json!({"password": PASSWORD})).await;
    assert_eq!(s, 200, "{v}");
    let secret = portcullis::auth::totp::base32_decode(v["secret"].as_str().unwrap()).unwrap();
    let (code, _) = code_after(&secret, 0).await;
    let (s, v) = h.post_as(&victim, "/_auth/api/totp/confirm", json!({"otp_code": code})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(me(&h, &victim).await["session_level"], "two_factor", "kept, not raised: it was two already");
    assert_eq!(via_proxy(&h, &attacker, "/app").await, 401, "enrolling ended the other sessions");
}

async fn path_parameters_cannot_reach_a_denied_or_two_factor_path(b: Backend) {
    let Some(h) = Harness::start(b, guarded()).await else { return };
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let hits = h.up.hits.load(std::sync::atomic::Ordering::SeqCst);
    for path in ["/admin;x/secret", "/;/admin/secret", "/admin;jsessionid=1/x", "/admin/;x", "/ADMIN/../admin;a/b"] {
        assert_eq!(via_proxy(&h, &c, path).await, 401, "proxy: {path}");
        assert_eq!(via_verify(&h, &c, path).await, 401, "forward-auth: {path}");
    }
    for path in ["/internal;a/x", "/;x/internal/y"] {
        assert_eq!(via_proxy(&h, &c, path).await, 403, "proxy: {path}");
        assert_eq!(via_verify(&h, &c, path).await, 403, "forward-auth: {path}");
    }
    assert_eq!(h.up.hits.load(std::sync::atomic::Ordering::SeqCst), hits, "nothing reached the application");
    assert_eq!(via_proxy(&h, &c, "/app;jsessionid=1").await, 200, "parameters alone are no reason to refuse");

    h.step_up(&c).await;
    assert_eq!(via_proxy(&h, &c, "/admin;jsessionid=1/x").await, 200, "two factors reach it, parameters and all");
    let echo: Value = c.get(h.url("/admin;jsessionid=1/x")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["path"], "/admin;jsessionid=1/x", "the application gets its parameters");
}

async fn a_login_reaches_the_level_the_gate_asks_of_its_return_address(b: Backend) {
    let Some(h) = Harness::start(b, guarded()).await else { return };
    let login = |rd: String| json!({"username_or_email": "testuser", "password": PASSWORD, "rd": rd});
    let port = h.origin.rsplit(':').next().unwrap().to_owned();
    let cases = [
        ("/admin;x/secret", true),
        ("/;/admin/secret", true),
        ("/admin/x", true),
        ("/admin/x?q=1#top", true),
        ("/app#/admin/x", false),
        ("/ops/x", true),
        ("/internal/x", false),
        ("/app", false),
    ];
    for (path, two) in cases {
        for host in ["localhost", "LOCALHOST", "localhost."] {
            let rd = format!("http://{host}:{port}{path}");
            let c = support::client();
            let (s, v) = h.post_as(&c, "/_auth/api/send-login-otp", login(rd.clone())).await;
            assert_eq!(s, 200, "{rd}: {v}");
            assert_eq!(v["otp_required"], two, "{rd}: {v}");
        }
    }
}

/// A pending login of an enrolled `testuser` on a fresh client.
async fn pending_login(h: &Harness) -> reqwest::Client {
    let c = support::client();
    let (s, v) = h
        .post_as(&c, "/_auth/api/send-login-otp", json!({"username_or_email": "testuser", "password": PASSWORD}))
        .await;
    assert_eq!((s, &v["otp_required"]), (StatusCode::OK, &json!(true)), "{v}");
    c
}

/// Sends `n` copies of `body` to `path` at once from `c`; the answers.
async fn burst(h: &Harness, c: &reqwest::Client, path: &str, body: Value, n: usize) -> Vec<(u16, Value)> {
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, barrier, url, origin, body) =
                (c.clone(), barrier.clone(), h.url(path), h.origin.clone(), body.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let r = c.post(url).header("Origin", origin).json(&body).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Answers that were compared and found wrong (they name the tries left).
fn compared_wrong(answers: &[(u16, Value)]) -> usize {
    answers.iter().filter(|(s, v)| *s == 400 && v.get("remaining_attempts").is_some()).count()
}

/// Generous limits per IP, the account's window of ten.
fn parallel() -> Options {
    Options { lockout: Some("ip_failures = \"500/15m\"\naccount_failures = \"10/1h\""), ..guarded() }
}

async fn parallel_wrong_app_codes_compare_at_most_the_logins_cap(b: Backend) {
    let Some(h) = Harness::start(b, Options { rate_limit: Some("verify = \"100/5m\""), ..parallel() }).await else {
        return;
    };
    let e = h.enrol_app(FIREFOX).await;
    let c = pending_login(&h).await;
    let (right, _) = code_after(&e.secret, e.step).await;
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let answers = burst(&h, &c, "/_auth/api/verify-login-otp", json!({"otp_code": wrong, "method": "totp"}), 40).await;
    let compared = compared_wrong(&answers);
    assert!((1..=3).contains(&compared), "{compared} wrong app codes compared (cap 3): {answers:?}");
    let m = h.metrics().await;
    let counted =
        support::sample(&m, "portcullis_auth_attempts_total", &[("stage", "totp"), ("result", "invalid_otp")]);
    assert!(counted <= 3.0, "{counted} compared");
    assert!(answers.iter().all(|(s, _)| *s == 400), "every other answer is this login's cap: {answers:?}");
}

async fn parallel_wrong_backup_codes_compare_at_most_the_account_window(b: Backend) {
    let Some(h) = Harness::start(b, Options { rate_limit: Some("verify = \"100/5m\""), ..parallel() }).await else {
        return;
    };
    let e = h.enrol_app(FIREFOX).await;
    assert_eq!(e.backup_codes.len(), 8);
    let c = pending_login(&h).await;
    let answers = burst(&h, &c, "/_auth/api/verify-backup-code", json!({"code": "AAAA-BBBB"}), 40).await;
    let compared = compared_wrong(&answers);
    assert!((1..=10).contains(&compared), "{compared} wrong backup codes compared (window 10): {answers:?}");
    let locked = answers.iter().filter(|(s, v)| *s == 403 && v["account_locked"] == true).count();
    assert_eq!(compared + locked, 40, "every other answer found the account locked: {answers:?}");
    let (s, v) = h.post_as(&c, "/_auth/api/verify-backup-code", json!({"code": e.backup_codes[0]})).await;
    assert_eq!((s.as_u16(), &v["account_locked"]), (403, &json!(true)), "a right code waits for the lock: {v}");
}

async fn parallel_wrong_emailed_codes_compare_at_most_the_codes_tries(b: Backend) {
    let Some(h) = Harness::start(b, Options { rate_limit: Some("verify = \"100/5m\""), ..parallel() }).await else {
        return;
    };
    let mails = h.smtp.messages().len();
    let c = support::client();
    let (s, v) = h
        .post_as(
            &c,
            "/_auth/api/send-login-otp",
            json!({"username_or_email": "testuser", "password": PASSWORD, "rd": h.url("/admin/x")}),
        )
        .await;
    assert_eq!((s, &v["otp_required"]), (StatusCode::OK, &json!(true)), "{v}");
    let right = h.code_from_mail(mails + 1).await;
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let answers = burst(&h, &c, "/_auth/api/verify-login-otp", json!({"otp_code": wrong}), 40).await;
    // The code's three tries: two answered with tries left, the third voids it.
    let with_tries_left = answers.iter().filter(|(_, v)| v["remaining_attempts"].as_u64().is_some_and(|n| n > 0));
    assert!(with_tries_left.count() <= 2, "{answers:?}");
    let refused = |(s, v): &&(u16, Value)| (*s == 400 && v.get("remaining_attempts").is_some()) || *s == 403;
    assert!(answers.iter().all(|a| refused(&a)), "a wrong code, a dead code or a locked account: {answers:?}");
    let (s, v) = h.post_as(&c, "/_auth/api/verify-login-otp", json!({"otp_code": right})).await;
    assert!(matches!(s.as_u16(), 400 | 403), "the code died with its third wrong try: {v}");
}

async fn wrong_codes_confirming_a_new_app_count_and_lock_the_account(b: Backend) {
    let Some(h) = Harness::start(b, parallel()).await else { return };
    let c = h.two_factor_client("testuser", PASSWORD, FIREFOX).await;
    let mut wrong_answers = 0;
    // Three setups of three wrong codes each: each setup has its own cap.
    for _ in 0..3 {
        let (s, v) = h.post_as(&c, "/_auth/api/totp/setup", json!({"password": PASSWORD})).await;
        assert_eq!(s, 200, "{v}");
        for _ in 0..3 {
            let (s, v) = h.post_as(&c, "/_auth/api/totp/confirm", json!({"otp_code": "000000"})).await;
            assert_eq!(s, 400, "{v}");
            wrong_answers += 1;
        }
        let (s, v) = h.post_as(&c, "/_auth/api/totp/confirm", json!({"otp_code": "000000"})).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"], "Too many wrong codes for this setup. Start the setup again.", "{v}");
    }
    assert_eq!(wrong_answers, 9);
    let (s, v) = h.post_as(&c, "/_auth/api/totp/setup", json!({"password": PASSWORD})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = h.post_as(&c, "/_auth/api/totp/confirm", json!({"otp_code": "000000"})).await;
    assert_eq!(s, 400, "the tenth wrong code: {v}");
    let (s, v) = h.post_as(&c, "/_auth/api/totp/confirm", json!({"otp_code": "000000"})).await;
    assert_eq!((s.as_u16(), &v["account_locked"]), (403, &json!(true)), "the account is locked: {v}");
    let locked = h.gw.wait_for_record(|r| r["event"] == "account_locked").await;
    assert!(locked.is_some(), "the lock is audited");
    let wrong =
        h.gw.security_records().iter().filter(|r| r["details"] == "totp: wrong code confirming a new app").count();
    assert_eq!(wrong, 10, "each wrong code is audited");
}
