//! How the gateway reads requests (SPEC §4) and dresses its own pages (SPEC §7):
//! body limits, malformed and form-encoded bodies, the CSRF rule, the return
//! address `rd`, and the security headers. The real gateway binary over real
//! sockets, with the SMTP sink and echo upstream of `support::flow`.
//! (Foreign `Origin`/`Referer`, a foreign `rd` in the query and the form flow
//! with its token are covered in tests/login.rs.)

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::flow::{Backend, Harness, Options, PASSWORD};
use support::form_field;

const SEND: &str = "/_auth/api/send-login-otp";
const VERIFY: &str = "/_auth/api/verify-login-otp";

async fn harness() -> Harness {
    Harness::start(Backend::Memory, Options::default()).await.expect("memory harness")
}

async fn one_factor() -> Harness {
    Harness::start(Backend::Memory, Options { policy: "one_factor", ..Default::default() }).await.expect("harness")
}

/// Posts `body` as JSON with the right Origin and returns status and JSON answer.
async fn post_raw(h: &Harness, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let r = h
        .http
        .post(h.url(path))
        .header("Origin", &h.origin)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

// ---- bodies ----

#[tokio::test]
async fn a_body_over_64_kib_is_refused_with_413() {
    let h = harness().await;
    let padding = "x".repeat(65 * 1024);
    let big = json!({"username_or_email": "testuser", "password": PASSWORD, "padding": padding}).to_string();

    // Announced by Content-Length.
    let (s, v) = post_raw(&h, SEND, "application/json", big.clone()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["success"], false);
    assert_eq!(v["error"], "request body too large");

    // Streamed in chunks without a length: the limit holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.as_bytes().chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (s, v) = post_raw(&h, SEND, "application/json", stream).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "chunked: {v}");

    // The HTML form endpoint too.
    let form = format!("username_or_email=testuser&password={PASSWORD}&padding={padding}");
    let r = h
        .http
        .post(h.url("/_auth/login"))
        .header("Origin", &h.origin)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.smtp.messages().len(), 0, "nothing oversized reached the login");

    // Just under the limit is read and acted on.
    let padding = "x".repeat(60 * 1024);
    let fits = json!({"username_or_email": "testuser", "password": PASSWORD, "padding": padding}).to_string();
    assert!(fits.len() < 64 * 1024);
    let (s, v) = post_raw(&h, SEND, "application/json", fits).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["otp_required"], true);
}

#[tokio::test]
async fn after_a_413_the_same_client_carries_on_without_errors() {
    // The gateway does not read the rest of an oversized body, so it must not
    // leave the connection looking reusable: a keep-alive client would send
    // its next request into a socket about to close and lose it.
    let h = harness().await;
    let big = json!({"padding": "x".repeat(70 * 1024)}).to_string();
    for i in 0..30 {
        let r = h
            .http
            .post(h.url(SEND))
            .header("Origin", &h.origin)
            .header("Content-Type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("oversized request {i}: {e:?}"));
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"), "request {i}");
        let next = h.http.get(h.url("/_auth/healthz")).send().await;
        let next = next.unwrap_or_else(|e| panic!("the request after oversized request {i} was lost: {e:?}"));
        assert_eq!(next.status(), 200);
    }
    let (s, v) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn malformed_json_gets_400_invalid_request_body() {
    let h = harness().await;
    for body in [
        r#"{"username_or_email": "testuser", "password": "#,
        r#"["testuser", "testpassword123"]"#,
        r#"{"username_or_email": {"name": "testuser"}, "password": "testpassword123"}"#,
        "not json at all",
    ] {
        let (s, v) = post_raw(&h, SEND, "application/json", body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v, json!({"success": false, "error": "invalid request body"}), "{body}");
    }
    let (s, v) = post_raw(&h, VERIFY, "application/json", "{\"otp_code\": 123").await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "invalid request body");
    assert_eq!(h.smtp.messages().len(), 0);
}

#[tokio::test]
async fn a_missing_field_gets_400_naming_it() {
    let h = harness().await;
    let (s, v) = h.post_json(SEND, json!({"password": PASSWORD})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["success"], false);
    assert!(v["error"].as_str().unwrap().contains("username_or_email"), "{v}");

    h.send_login("testuser", PASSWORD).await;
    h.code_from_mail(1).await;
    let (s, v) = h.post_json(VERIFY, json!({"code": "123456"})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("otp_code"), "{v}");
    let (s, v) = h.post_json("/_auth/api/verify-backup-code", json!({"otp_code": "123456"})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "code is required", "{v}");
    // An empty value is as good as a missing one.
    let (s, v) = h.post_json(VERIFY, json!({"otp_code": ""})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(h.upstream_status().await, 401, "still not logged in");
}

#[tokio::test]
async fn form_encoded_bodies_work_on_the_api_like_json() {
    let h = harness().await;
    let r = h
        .http
        .post(h.url(SEND))
        .header("Origin", &h.origin)
        .form(&[("username_or_email", "testuser"), ("password", PASSWORD), ("remember_me", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["otp_required"], true, "{v}");
    assert_eq!(v["message"], "Verification code sent to tes***@example.com");

    let code = h.code_from_mail(1).await;
    let r = h.http.post(h.url(VERIFY)).header("Origin", &h.origin).form(&[("otp_code", &code)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = session_cookie(r.headers()).expect("session cookie");
    assert!(cookie.contains("Max-Age=2592000"), "remember_me=on counts as true: {cookie}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], true, "{v}");

    let echo: Value = h.http.get(h.url("/app")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["headers"]["remote-user"][0], "testuser");
}

fn session_cookie(h: &HeaderMap) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("portcullis_session=") && !c.starts_with("portcullis_session=;"))
}

// ---- CSRF ----

#[tokio::test]
async fn a_post_without_origin_or_token_is_refused_and_an_x_csrf_token_header_is_accepted() {
    let h = harness().await;
    let creds = json!({"username_or_email": "testuser", "password": PASSWORD});
    // No Origin, no Referer, no token.
    let r = h.http.post(h.url(SEND)).json(&creds).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(h.smtp.messages().len(), 0, "a refused request sends no code");
    // A made-up token is no better.
    let r = h.http.post(h.url(SEND)).header("X-CSRF-Token", "bm90LWEtdG9rZW4").json(&creds).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // A token from the rendered login page, sent as a header.
    let page = h.http.get(h.url("/_auth/login")).send().await.unwrap().text().await.unwrap();
    let anon_token = form_field(&page, "csrf_token").expect("csrf_token on the login page");
    let r = h.http.post(h.url(SEND)).header("X-CSRF-Token", &anon_token).json(&creds).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let code = h.code_from_mail(1).await;

    // Tokens are bound to the visitor's cookie: now that there is a pending
    // login, the anonymous token no longer counts; the code page's does.
    let r = h.http.post(h.url(VERIFY)).header("X-CSRF-Token", &anon_token).json(&json!({"otp_code": code})).send();
    assert_eq!(r.await.unwrap().status(), 403);
    let page = h.http.get(h.url("/_auth/otp")).send().await.unwrap().text().await.unwrap();
    let token = form_field(&page, "csrf_token").expect("csrf_token on the code page");
    let r = h.http.post(h.url(VERIFY)).header("X-CSRF-Token", &token).json(&json!({"otp_code": code})).send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], true);
    assert_eq!(h.upstream_status().await, 200);
}

#[tokio::test]
async fn a_csrf_token_lifted_from_another_visitor_is_refused() {
    let h = harness().await;
    let victim = h.http.clone();
    let attacker = support::client();
    let r = victim
        .post(h.url(SEND))
        .header("Origin", &h.origin)
        .json(&json!({"username_or_email": "testuser", "password": PASSWORD}));
    assert_eq!(r.send().await.unwrap().status(), 200);
    let code = h.code_from_mail(1).await;
    let r = attacker
        .post(h.url(SEND))
        .header("Origin", &h.origin)
        .json(&json!({"username_or_email": "bob", "password": "bobs-password-1"}));
    assert_eq!(r.send().await.unwrap().status(), 200);
    h.code_from_mail(2).await;

    let page = attacker.get(h.url("/_auth/otp")).send().await.unwrap().text().await.unwrap();
    let attackers_token = form_field(&page, "csrf_token").unwrap();
    let r = victim.post(h.url(VERIFY)).header("X-CSRF-Token", &attackers_token).json(&json!({"otp_code": code}));
    assert_eq!(r.send().await.unwrap().status(), 403, "a token bound to another cookie");
    let r = victim.post(h.url(VERIFY)).form(&[("otp_code", code.as_str()), ("csrf_token", &attackers_token)]);
    assert_eq!(r.send().await.unwrap().status(), 403, "same as a form field");
    assert_eq!(victim.get(h.url("/app")).send().await.unwrap().status(), 401);
}

/// Login CSRF: an attacker who reads a token off their own copy of the login
/// page cannot make a victim's browser sign in to the attacker's account. A
/// cross-site form post carries no SameSite=Lax cookies, and a token counts
/// only with the cookie it was bound to.
#[tokio::test]
async fn a_login_page_token_is_useless_in_another_browser() {
    let h = one_factor().await;
    let creds = |token: &str| json!({"username_or_email": "bob", "password": "bobs-password-1", "csrf_token": token});
    let attacker = support::client();
    let r = attacker.get(h.url("/_auth/login")).send().await.unwrap();
    let cookies: Vec<String> =
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let csrf_cookie = cookies.iter().find(|c| c.starts_with("portcullis_session_csrf=")).expect("csrf cookie");
    assert!(csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Lax"), "{csrf_cookie}");
    let token = form_field(&r.text().await.unwrap(), "csrf_token").unwrap();

    // The victim's browser, posting from the attacker's page: foreign Origin, no cookies.
    let victim = support::client();
    let r = victim.post(h.url(SEND)).header("Origin", "https://evil.example").json(&creds(&token)).send();
    assert_eq!(r.await.unwrap().status(), 403, "a token without its cookie is refused");
    assert_eq!(victim.get(h.url("/app")).send().await.unwrap().status(), 401, "the victim stays signed out");

    // The browser that loaded the page keeps working even from another host
    // name than public_url: its token and cookie go together.
    let r = attacker.post(h.url(SEND)).header("Origin", "http://localhost.example").json(&creds(&token)).send();
    assert_eq!(r.await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_same_origin_referer_stands_in_for_origin_but_a_null_origin_does_not() {
    let h = one_factor().await;
    let creds = json!({"username_or_email": "testuser", "password": PASSWORD});
    let r = h.http.post(h.url(SEND)).header("Origin", "null").json(&creds).send().await.unwrap();
    assert_eq!(r.status(), 403, "an opaque origin (sandboxed frame) proves nothing");
    let referer = format!("{}/_auth/login?rd=/app", h.origin);
    let r = h.http.post(h.url(SEND)).header("Referer", &referer).json(&creds).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.upstream_status().await, 200);
}

// ---- rd ----

/// A one-factor login posting `rd` in the body; returns where it sends us.
async fn redirect_after_login(h: &Harness, rd: &str) -> String {
    let c = support::client();
    let r = c
        .post(h.url(SEND))
        .header("Origin", &h.origin)
        .json(&json!({"username_or_email": "testuser", "password": PASSWORD, "rd": rd}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "login with rd {rd:?}");
    let v: Value = r.json().await.unwrap();
    v["redirect_url"].as_str().expect("redirect_url").to_string()
}

#[tokio::test]
async fn rd_leaving_the_public_host_ends_on_the_account_page() {
    let h = one_factor().await;
    let account = format!("{}/_auth/account", h.origin);
    for rd in [
        "https://evil.example/phish",
        "//evil.example/phish",
        "/\\evil.example/phish",
        "\\\\evil.example/phish",
        "/\t/evil.example/phish",
        "/\n/evil.example/phish",
        "javascript:alert(1)",
        "http://127.0.0.1@evil.example/",
        "http://127.0.0.1.evil.example/",
        "ftp://127.0.0.1/file",
    ] {
        assert_eq!(redirect_after_login(&h, rd).await, account, "rd {rd:?}");
    }
    // The login page drops it too, rather than carrying it into the form.
    let page = h.http.get(h.url("/_auth/login?rd=https%3A%2F%2Fevil.example%2F")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert_eq!(form_field(&html, "rd").as_deref(), Some(""));
}

#[tokio::test]
async fn a_relative_or_same_host_rd_is_honoured() {
    let h = one_factor().await;
    assert_eq!(redirect_after_login(&h, "/app/page?x=1").await, format!("{}/app/page?x=1", h.origin));
    // Same host, another port: public_url's host is what counts (SPEC §7).
    assert_eq!(redirect_after_login(&h, "http://127.0.0.1:1/other").await, "http://127.0.0.1:1/other");

    // Through a pending login: the rd given with the password comes back with the code.
    let h = harness().await;
    let (s, _) = h
        .post_json(SEND, json!({"username_or_email": "testuser", "password": PASSWORD, "rd": "/app/deep?y=2#frag"}))
        .await;
    assert_eq!(s, 200);
    let code = h.code_from_mail(1).await;
    let (s, v) = h.verify(&code).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["redirect_url"], format!("{}/app/deep?y=2#frag", h.origin));

    // And the no-JS form flow answers with it as the 303's Location.
    let c = support::client();
    let page = c.get(h.url("/_auth/login?rd=%2Fapp%2Fform")).send().await.unwrap().text().await.unwrap();
    let rd = form_field(&page, "rd").expect("rd field");
    let csrf = form_field(&page, "csrf_token").unwrap();
    let r = c
        .post(h.url("/_auth/login"))
        .form(&[("username_or_email", "bob"), ("password", "bobs-password-1"), ("rd", &rd), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let code = h.code_from_mail(2).await;
    let otp = c.get(h.url("/_auth/otp")).send().await.unwrap().text().await.unwrap();
    let csrf = form_field(&otp, "csrf_token").unwrap();
    let r = c.post(h.url("/_auth/otp")).form(&[("otp_code", code.as_str()), ("csrf_token", &csrf)]).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], format!("{}/app/form", h.origin).as_str());
}

// ---- security headers ----

/// The value of `directive` in a CSP, falling back to default-src.
fn csp_directive(csp: &str, directive: &str) -> Option<String> {
    let find = |name: &str| {
        csp.split(';').map(str::trim).find_map(|d| d.strip_prefix(name).filter(|v| v.starts_with(' ')).map(str::trim))
    };
    find(directive).or_else(|| find("default-src")).map(str::to_string)
}

fn assert_secure_headers(what: &str, h: &HeaderMap, tls: bool) {
    let get = |name: &str| h.get(name).map(|v| v.to_str().unwrap().to_string());
    let csp = get("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
    let script = csp_directive(&csp, "script-src").unwrap_or_else(|| panic!("{what}: CSP limits no scripts: {csp}"));
    assert!(!script.contains("'unsafe-inline'") && !script.contains('*'), "{what}: {csp}");
    assert_eq!(get("x-frame-options").as_deref(), Some("DENY"), "{what}");
    assert_eq!(get("x-content-type-options").as_deref(), Some("nosniff"), "{what}");
    let referrer = get("referrer-policy").unwrap_or_else(|| panic!("{what}: no Referrer-Policy"));
    assert!(
        ["no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"].contains(&referrer.as_str()),
        "{what}: Referrer-Policy {referrer}"
    );
    let cache = get("cache-control").unwrap_or_default();
    assert!(cache.contains("no-store"), "{what}: Cache-Control {cache:?}");
    let hsts = get("strict-transport-security");
    if tls {
        let hsts = hsts.unwrap_or_else(|| panic!("{what}: no HSTS under TLS"));
        let max_age: u64 =
            hsts.split(';').find_map(|p| p.trim().strip_prefix("max-age=")).and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(max_age >= 180 * 86400, "{what}: {hsts}");
    } else {
        assert_eq!(hsts, None, "{what}: HSTS over plain http");
    }
}

/// Fetches a page of each kind the gateway answers with itself.
async fn check_gateway_pages(c: &reqwest::Client, base: &str, origin: &str, tls: bool) {
    let html = |path: &str| c.get(format!("{base}{path}")).header("Accept", "text/html").send();
    let r = html("/_auth/login").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_secure_headers("login page", r.headers(), tls);
    let r = html("/_auth/no-such-page").await.unwrap();
    assert_eq!(r.status(), 404);
    assert_secure_headers("404 page", r.headers(), tls);
    let r = html("/_auth/account").await.unwrap();
    assert_secure_headers("account page, logged out", r.headers(), tls);
    let r = c.get(format!("{base}/_auth/api/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_secure_headers("api/me", r.headers(), tls);
    let r = c
        .post(format!("{base}{SEND}"))
        .header("Origin", origin)
        .json(&json!({"username_or_email": "nobody", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_secure_headers("API error", r.headers(), tls);
    let r = c.post(format!("{base}/_auth/login")).form(&[("x", "1")]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_secure_headers("CSRF refusal page", r.headers(), tls);
    // A forward-auth refusal reaches the browser too (Traefik and Caddy pass it on).
    let r = c
        .get(format!("{base}/_auth/verify"))
        .header("Accept", "text/html")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "app.example.com")
        .header("X-Forwarded-Uri", "/private")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error() || r.status().is_redirection(), "{}", r.status());
    assert_secure_headers("forward-auth refusal", r.headers(), tls);
}

#[tokio::test]
async fn gateway_pages_carry_the_security_headers_without_hsts_over_http() {
    let h = harness().await;
    check_gateway_pages(&h.http, &h.origin, &h.origin, false).await;
    h.login().await;
    let r = h.http.get(h.url("/_auth/account")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_secure_headers("account page", r.headers(), false);
    let page = r.text().await.unwrap();
    assert!(!page.contains("<script>"), "no inline script for the CSP to forbid");
}

/// A gateway on its own TLS listener in front of `up`, `public_url` https, with
/// `/public/` open to everyone and `server_extra` added to `[server]`; and a
/// client trusting its certificate that does not follow redirects.
fn tls_gateway(up: &support::upstream::Upstream, server_extra: &str) -> (support::Gateway, String, reqwest::Client) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed(dir.path(), "gateway");
    let users = dir.path().join("users.toml");
    support::write_users(&users, &[]);
    let config = |port: u16| {
        support::base_config(&up.url(), "two_factor", &users)
            .replacen("\nlisten = \"127.0.0.1:0\"", &format!("\nlisten = \"127.0.0.1:{port}\""), 1)
            .replace("public_url = \"http://127.0.0.1\"", &format!("public_url = \"https://localhost:{port}\""))
            .replace(
                "[server]\n",
                &format!(
                    "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{server_extra}\n",
                    cert.display(),
                    key.display()
                ),
            )
            + "\n[[access_control.rules]]\npath = \"^/public/\"\npolicy = \"bypass\"\n"
    };
    let (gw, port) = support::Gateway::start_on_own_port(dir, &[], config);
    assert_eq!(gw.scheme, "https");
    support::crypto();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(gw.dir.path().join("gateway.crt")).unwrap()).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (gw, format!("https://localhost:{port}"), c)
}

fn hsts_of(r: &reqwest::Response) -> Option<String> {
    r.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn gateway_pages_carry_hsts_under_tls() {
    let up = support::upstream::Upstream::start().await;
    let (_gw, origin, c) = tls_gateway(&up, "");
    check_gateway_pages(&c, &origin, &origin, true).await;
}

#[tokio::test]
async fn every_answer_the_gateway_writes_under_tls_carries_hsts_but_proxied_ones_are_left_alone() {
    let up = support::upstream::Upstream::start().await;
    let (_gw, origin, c) = tls_gateway(&up, "");
    // The 302 to the login page for a browser, the 401 for a script, a static
    // asset, the health check: the gateway wrote each of them.
    let r = c.get(format!("{origin}/private")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert!(hsts_of(&r).is_some_and(|v| v.contains("max-age=31536000")), "302 to login: {:?}", r.headers());
    let r = c.get(format!("{origin}/private")).header("Accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(hsts_of(&r).is_some(), "401 for a script");
    for path in ["/_auth/healthz", "/_auth/readyz", "/_auth/static/portcullis.css"] {
        let r = c.get(format!("{origin}{path}")).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert!(hsts_of(&r).is_some(), "{path}: no HSTS");
    }
    // The application's answer is its own business unless the operator asks.
    let r = c.get(format!("{origin}/public/page")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hsts_of(&r), None, "proxied answer without hsts_upstream");
}

#[tokio::test]
async fn hsts_upstream_adds_hsts_to_proxied_answers_under_tls() {
    let up = support::upstream::Upstream::start().await;
    let (_gw, origin, c) = tls_gateway(&up, "hsts_upstream = true");
    let r = c.get(format!("{origin}/public/page")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hsts_of(&r).as_deref(), Some("max-age=31536000; includeSubDomains"));
    assert_eq!(r.json::<Value>().await.unwrap()["path"], "/public/page", "the upstream answered");
}

/// `curl -I --http2` rejects a HEAD answer whose HEADERS frame does not end
/// the stream (exit 92, PROTOCOL_ERROR) — as monitoring probes do.
#[tokio::test]
async fn head_over_http2_ends_the_stream_with_the_headers_on_every_route() {
    if std::process::Command::new("curl").arg("--version").output().is_err() {
        return support::skip::skip("curl is not on PATH");
    }
    let up = support::upstream::Upstream::start().await;
    let (gw, origin, c) = tls_gateway(&up, "");
    let cert = gw.dir.path().join("gateway.crt");
    let port = origin.rsplit(':').next().unwrap().to_string();
    for (path, status) in [
        ("/_auth/healthz", "200"),
        ("/_auth/login", "200"),
        ("/_auth/static/portcullis.css", "200"),
        ("/_auth/no-such-page", "404"),
        ("/private", "302"),
        ("/public/page", "200"),
    ] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-I", "--http2", "--max-time", "10", "-H", "Accept: text/html", "--cacert"])
            .arg(&cert)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .arg(format!("{origin}{path}"))
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(
            out.status.success(),
            "{path}: curl exit {:?}: {}{head}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(head.starts_with(&format!("http/2 {status}")), "{path}: {head}");
        if status == "200" {
            assert!(head.contains("content-length:"), "{path}: HEAD keeps the length: {head}");
        }
    }
    // The same through hyper's HTTP/2 client: the answer has the GET's length
    // and no body.
    let get = c.get(format!("{origin}/_auth/login")).send().await.unwrap();
    assert_eq!(get.version(), reqwest::Version::HTTP_2);
    let len = get.bytes().await.unwrap().len();
    let head = c.head(format!("{origin}/_auth/login")).send().await.unwrap();
    assert_eq!(head.version(), reqwest::Version::HTTP_2);
    assert_eq!(head.headers()["content-length"], len.to_string().as_str());
    assert!(head.bytes().await.unwrap().is_empty());
    // A 304 describes no body of its own: no length is made up for it.
    let css = format!("{origin}/_auth/static/portcullis.css");
    let etag = c.get(&css).send().await.unwrap().headers()["etag"].clone();
    let r = c.head(&css).header("If-None-Match", etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers().get("content-length"), None, "{:?}", r.headers());
}

/// `auth.app_name` names the product everywhere a visitor reads it: titles,
/// the sign-in lead and the footer of every page (error pages included).
#[tokio::test]
async fn app_name_replaces_the_product_name_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let users = support::empty_users(dir.path());
    let config = support::base_config("http://127.0.0.1:9", "two_factor", &users)
        .replace("[auth]\n", "[auth]\napp_name = \"Acme Wiki\"\n");
    let gw = support::Gateway::start_in(dir, &config, &[]);
    let c = support::client();
    for path in ["/_auth/login", "/_auth/logout", "/_auth/no-such-page", "/_auth/otp"] {
        let r = c.get(gw.url(path)).header("Accept", "text/html").send().await.unwrap();
        let page = r.text().await.unwrap();
        if !page.contains("<footer") {
            continue; // /otp without a pending login redirects
        }
        assert!(page.contains("Protected by Acme Wiki"), "{path}: {page}");
        let visible = page.replace("/static/portcullis.", "");
        assert!(!visible.to_lowercase().contains("portcullis"), "{path} names the product: {page}");
    }
}
