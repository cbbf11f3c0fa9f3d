//! The seed's login flow end to end over real sockets: the real gateway binary,
//! a real SMTP sink receiving the codes, an echo upstream behind it. Each case
//! runs on the memory store and on a real redis-server.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::find_code;
use support::flow::{Backend, Harness, Options, PASSWORD};
use support::form_field;

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
    assert!(h.gw.log_contains("invalid_credentials"), "attempts are audited");
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
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    h.send_login("testuser", PASSWORD).await;
    let first = h.code_from_mail(1).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, v) = h.post_json("/_auth/api/resend-otp", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expires_in"], 600);
    let second = h.code_from_mail(2).await;
    if first != second {
        let (s, _) = h.verify(&first).await;
        assert_eq!(s, 400, "the old code is void");
    }
    let (s, v) = h.verify(&second).await;
    assert_eq!(s, 200, "{v}");
}

async fn expired_code_is_refused(b: Backend) {
    let Some(h) = Harness::start(b, Options { otp_ttl: "1s", ..Default::default() }).await else { return };
    h.send_login("testuser", PASSWORD).await;
    let code = h.code_from_mail(1).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
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
    let r = h.http.post(h.url("/_auth/logout")).header("Origin", &h.origin).send().await.unwrap();
    assert!(r.status().is_success() || r.status().is_redirection());
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
    h.smtp.set_reject(true);
    let (s, v) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["success"], false);
    h.smtp.set_reject(false);
    let (s, v) = h.verify("123456").await;
    assert_eq!(s, 400, "no pending login survives a failed send: {v}");
    let (s, _) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 200, "the gateway recovers by itself");
}
