//! The seed's login flow end to end over real sockets: the real gateway binary,
//! a real SMTP sink receiving the codes, an echo upstream behind it. Each case
//! runs on the memory store and on a real redis-server.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::assert_eventually;
use support::find_code;
use support::flow::{Backend, Harness, Options, PASSWORD};
use support::form_field;
use support::smtp::Failure;

support::on_both_stores!(
    login_without_code_when_one_factor_suffices,
    login_with_code_sends_a_masked_mail_and_reaches_the_upstream,
    invalid_credentials_are_refused_identically_for_unknown_users,
    wrong_code_reports_remaining_attempts,
    max_attempts_void_the_code,
    a_new_code_voids_the_old,
    expired_code_is_refused,
    resend_is_rate_limited_by_the_cooldown,
    half_logged_in_session_cannot_reach_the_upstream,
    remember_me_lasts_thirty_days_and_logout_kills_the_session,
    spoofed_identity_headers_are_replaced,
    foreign_rd_is_refused,
    foreign_origin_is_refused,
    html_flow_works_with_form_posts_alone,
    mail_failure_gives_503_and_voids_the_code,
);

async fn login_without_code_when_one_factor_suffices(b: Backend) {
    let Some(h) = Harness::start(b, Options { policy: "one_factor", ..Default::default() }).await else { return };
    let (s, v) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["otp_required"], false);
    assert!(v["redirect_url"].as_str().unwrap().ends_with("/_auth/account"));
    assert_eq!(h.smtp.messages().len(), 0, "no code e-mailed");
    assert_eq!(h.upstream_status().await, 200);
}

async fn login_with_code_sends_a_masked_mail_and_reaches_the_upstream(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    let (s, v) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["otp_required"], true);
    assert_eq!(v["message"], "Verification code sent to tes***@example.com");
    assert_eq!(v["expires_in"], 600);
    let mails = h.smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails[0].to, vec!["test@example.com".to_string()]);
    let text = mails[0].text_body().unwrap_or_default();
    assert!(!text.contains(PASSWORD), "the password never appears in mail");
    let code = find_code(&text, 6).expect("code in mail");
    let (s, v) = h.verify(&code).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["success"], true);
    let r = h.http.get(h.url("/app")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["remote-user"][0], "testuser");
    assert_eq!(echo["headers"]["remote-email"][0], "test@example.com");
    assert_eq!(echo["headers"]["remote-groups"][0], "staff");
    assert!(echo["headers"]["cookie"].is_null(), "the session cookie never reaches the upstream");
}

async fn invalid_credentials_are_refused_identically_for_unknown_users(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    let (s1, wrong_pw) = h.send_login("testuser", "wrongpassword").await;
    let (s2, unknown) = h.send_login("nobody", "wrongpassword").await;
    assert_eq!((s1, s2), (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST));
    assert_eq!(wrong_pw, unknown, "no user enumeration");
    assert_eq!(wrong_pw["success"], false);
    let (s, v) = h.post_json("/_auth/api/send-login-otp", json!({"username_or_email": "testuser"})).await;
    assert_eq!(s, 400, "{v}");
    let audited = h.gw.wait_for_log(|l| l.contains("\"target\":\"security\"") && l.contains("invalid_credentials"));
    assert!(audited.await.is_some(), "attempts are audited");
}

async fn wrong_code_reports_remaining_attempts(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    h.send_login("testuser", PASSWORD).await;
    let code = h.code_from_mail(1).await;
    let wrong = if code == "123456" { "654321" } else { "123456" };
    let (s, v) = h.verify(wrong).await;
    assert_eq!(s, 400);
    assert_eq!(v["success"], false);
    assert_eq!(v["remaining_attempts"], 2);
    let (s, _) = h.verify(&code).await;
    assert_eq!(s, 200, "the right code still works after one miss");
}

async fn max_attempts_void_the_code(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    h.send_login("testuser", PASSWORD).await;
    let code = h.code_from_mail(1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    h.verify(wrong).await;
    h.verify(wrong).await;
    let (s, v) = h.verify(wrong).await;
    assert_eq!(s, 400);
    assert_eq!(v["max_attempts_reached"], true, "{v}");
    let (s, v) = h.verify(&code).await;
    assert_eq!(s, 400, "a voided code stays void: {v}");
    assert_eq!(h.upstream_status().await, 401);
}

async fn a_new_code_voids_the_old(b: Backend) {
    let Some(h) = Harness::start_on_clock(b, Options::default()).await else { return };
    h.send_login("testuser", PASSWORD).await;
    let first = h.code_from_mail(1).await;
    let (s, v) = resend_after_the_cooldown(&h).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expires_in"], 600);
    let second = h.code_from_mail(2).await;
    // Unconditionally: a resend that mailed the same code again must fail here.
    // (Two random codes coincide once in a million runs.)
    let (s, v) = h.verify(&first).await;
    assert_eq!(s, 400, "the old code is void: {v}");
    let (s, v) = h.verify(&second).await;
    assert_eq!(s, 200, "{v}");
}

/// Asks for a new code, letting the resend cooldown (the harness's is 1 s)
/// pass as long as the gateway's `Retry-After` says rather than for a
/// guessed time.
async fn resend_after_the_cooldown(h: &Harness) -> (StatusCode, Value) {
    for _ in 0..10 {
        let r = h.http.post(h.url("/_auth/api/resend-otp")).header("Origin", &h.origin).json(&json!({})).send().await;
        let r = r.unwrap();
        let status = r.status();
        let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status != StatusCode::TOO_MANY_REQUESTS {
            return (status, v);
        }
        assert!(retry_after.is_some_and(|s| s <= 1), "a 1 s cooldown asks for at most 1 s: {v}");
        h.pass(Duration::from_secs(retry_after.unwrap_or(1))).await;
    }
    panic!("still in the cooldown after ten waits of Retry-After");
}

async fn expired_code_is_refused(b: Backend) {
    let o = Options { otp_ttl: "1s", ..Default::default() };
    let Some(h) = Harness::start_on_clock(b, o).await else { return };
    h.send_login("testuser", PASSWORD).await;
    let code = h.code_from_mail(1).await;
    h.pass(Duration::from_millis(2200)).await;
    let (s, v) = h.verify(&code).await;
    assert_eq!(s, 400);
    assert_eq!(v["expired"], true, "{v}");
}

async fn resend_is_rate_limited_by_the_cooldown(b: Backend) {
    let Some(h) = Harness::start(b, Options { resend_cooldown: "60s", ..Default::default() }).await else { return };
    h.send_login("testuser", PASSWORD).await;
    h.code_from_mail(1).await;
    let r =
        h.http.post(h.url("/_auth/api/resend-otp")).header("Origin", &h.origin).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((50..=60).contains(&retry), "retry after {retry}");
    let v: Value = r.json().await.unwrap();
    assert!(v["retry_after"].as_u64().is_some());
    assert_eq!(h.smtp.messages().len(), 1, "no second e-mail");
}

async fn half_logged_in_session_cannot_reach_the_upstream(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    h.send_login("testuser", PASSWORD).await;
    h.code_from_mail(1).await;
    let before = h.up.hits();
    let r = h.http.get(h.url("/app")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"success": false, "error": "authentication required"}));
    let r = h.http.get(h.url("/app")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with(&format!("{}/_auth/login?rd=", h.origin)), "{loc}");
    assert_eq!(h.up.hits(), before, "nothing was forwarded");
}

async fn remember_me_lasts_thirty_days_and_logout_kills_the_session(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    let r = h
        .http
        .post(h.url("/_auth/api/send-login-otp"))
        .header("Origin", &h.origin)
        .json(&json!({"username_or_email": "test@example.com", "password": PASSWORD, "remember_me": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let code = h.code_from_mail(1).await;
    let r = h
        .http
        .post(h.url("/_auth/api/verify-login-otp"))
        .header("Origin", &h.origin)
        .json(&json!({"otp_code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("portcullis_session="))
        .expect("session cookie");
    assert!(cookie.contains("Max-Age=2592000"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let token = cookie.split(';').next().unwrap().to_string();

    // A fresh client with only the cookie proves it is the server that decides.
    let bare = support::client();
    let ok = bare.get(h.url("/app")).header("Cookie", &token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // An API client (no Accept: text/html) is answered in JSON, not sent to a page.
    let r = h.http.post(h.url("/_auth/logout")).header("Origin", &h.origin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cleared = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok())
        .any(|c| c.starts_with("portcullis_session=;") && c.contains("Max-Age=0"));
    assert!(cleared, "the session cookie is cleared: {:?}", r.headers());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], true, "{v}");
    let after = bare.get(h.url("/app")).header("Cookie", &token).send().await.unwrap();
    assert_eq!(after.status(), 401, "the session is dead server-side");
}

async fn spoofed_identity_headers_are_replaced(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    h.login().await;
    let echo: Value = h
        .http
        .get(h.url("/app"))
        .header("Remote-User", "admin")
        .header("Remote-Groups", "admins")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["remote-user"], json!(["testuser"]));
    assert_eq!(echo["headers"]["remote-groups"], json!(["staff"]));
}

async fn foreign_rd_is_refused(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    let (s, _) = h
        .post_json(
            "/_auth/api/send-login-otp?rd=https://evil.example/phish",
            json!({"username_or_email": "testuser", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, 200);
    let code = h.code_from_mail(1).await;
    let (_, v) = h.verify(&code).await;
    assert_eq!(v["redirect_url"], format!("{}/_auth/account", h.origin));

    let own = format!("{}/app/page?x=1", h.origin);
    let (s, _) = h
        .post_json(
            "/_auth/api/send-login-otp",
            json!({"username_or_email": "bob", "password": "bobs-password-1", "rd": own}),
        )
        .await;
    assert_eq!(s, 200);
    let code = h.code_from_mail(2).await;
    let (_, v) = h.verify(&code).await;
    assert_eq!(v["redirect_url"], own);
}

async fn foreign_origin_is_refused(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    let r = h
        .http
        .post(h.url("/_auth/api/send-login-otp"))
        .header("Origin", "https://evil.example")
        .json(&json!({"username_or_email": "testuser", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = h
        .http
        .post(h.url("/_auth/login"))
        .header("Referer", "https://evil.example/form")
        .form(&[("username_or_email", "testuser"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(h.smtp.messages().len(), 0);
}

async fn html_flow_works_with_form_posts_alone(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    // A browser without JavaScript: no Origin header, the form's CSRF token only.
    let r = h.http.get(h.url("/app/dashboard")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 302);
    let login_url = r.headers()["location"].to_str().unwrap().to_string();
    let page = h.http.get(&login_url).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    let csrf = form_field(&html, "csrf_token").expect("csrf field");
    let rd = form_field(&html, "rd").expect("rd field");
    assert_eq!(rd, format!("{}/app/dashboard", h.origin));
    let r = h
        .http
        .post(h.url("/_auth/login"))
        .form(&[("username_or_email", "testuser"), ("password", PASSWORD), ("rd", &rd), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_auth/otp?sent=1");
    let otp_page = h.http.get(h.url("/_auth/otp?sent=1")).send().await.unwrap().text().await.unwrap();
    assert!(otp_page.contains("tes***@example.com"));
    let csrf = form_field(&otp_page, "csrf_token").expect("csrf on code page");
    let code = h.code_from_mail(1).await;
    let r = h
        .http
        .post(h.url("/_auth/otp"))
        .form(&[("otp_code", code.as_str()), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"].to_str().unwrap(), rd);
    let r = h.http.get(&rd).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Without the token (and without Origin/Referer) the form post is refused.
    let r = h.http.post(h.url("/_auth/logout")).form(&[("x", "1")]).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

async fn mail_failure_gives_503_and_voids_the_code(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    // Another browser of the same user waits at the code step. Codes belong to
    // the user, not the browser: had the failed login's code survived, this
    // browser could sign in with it.
    let waiting = support::client();
    let body = json!({"username_or_email": "testuser", "password": PASSWORD});
    let (s, v) = h.post_as(&waiting, "/_auth/api/send-login-otp", body).await;
    assert_eq!((s, &v["otp_required"]), (StatusCode::OK, &json!(true)), "{v}");
    let mailed = h.code_from_mail(1).await;

    // The relay takes the next message and then refuses it (451): the sink
    // keeps it, so the code the gateway generated is known.
    h.smtp.set_failure(Failure::DeferAfterData);
    let r = h
        .http
        .post(h.url("/_auth/api/send-login-otp"))
        .header("Origin", &h.origin)
        .json(&json!({"username_or_email": "testuser", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("set-cookie").is_none(), "no pending login is handed out: {:?}", r.headers());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false, "{v}");
    let refused = h.smtp.wait_for_refused(1, Duration::from_secs(10)).await;
    let generated = refused.first().and_then(|m| m.code()).expect("the refused message carries the code");
    h.smtp.set_failure(Failure::None);

    let (s, v) = h.verify(&generated).await;
    assert_eq!(s, 400, "the failed login's client has no pending login: {v}");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("No pending login")), "{v}");
    for code in [&generated, &mailed] {
        let (s, v) = h.post_as(&waiting, "/_auth/api/verify-login-otp", json!({"otp_code": code})).await;
        assert_eq!(s, 400, "{code} works after the failed send: {v}");
        assert_eq!(v["expired"], true, "no code is left at all: {v}");
    }
    // On Redis the store itself shows it: the failed login's pending entry is
    // gone (it is removed in the background), only the waiting browser's is left,
    // and the user has no code.
    if h.redis.is_some() {
        assert_eventually!(
            within Duration::from_secs(5),
            h.redis_keys("portcullis:pending:*").await.unwrap_or_default().len() <= 1,
            "the failed login's pending entry is still there"
        );
        assert_eq!(h.redis_keys("portcullis:pending:*").await.unwrap_or_default().len(), 1);
        assert_eq!(h.redis_keys("portcullis:{u:testuser}:code:*").await, Some(vec![]));
    }

    let (s, _) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 200, "the gateway recovers by itself");
    let code = h.code_from_mail(2).await;
    assert_eq!(h.verify(&code).await.0, 200);
}
