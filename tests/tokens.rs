//! Access tokens end to end over HTTP, on both stores: made at two factors
//! with the password and shown once; accepted as Bearer or as a Basic
//! password only where a rule says `allow_tokens`, in proxy mode and
//! forward-auth; never a plain password over Basic; wrong tokens counted
//! against the client (then 429); the application told who and how
//! (`Remote-Auth-Method`) and never shown the token; a token ending with its
//! user's credential; listed and revoked by the user and the CLI. Also
//! `pass_basic_auth` for Basic-only applications, and upgraded connections
//! that close when their session ends (on another replica too).

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::assert_eventually;
use support::flow::{Backend, Harness, Options, PASSWORD};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// One factor by default; tokens on `/dav/` and `/git/`; `/admin/` two
/// factors and no tokens; `/poll` never refreshes a session.
fn with_token_rules() -> Options {
    let extra = r#"
[[access_control.rules]]
path = "^/(dav|git)/"
policy = "two_factor"
allow_tokens = true
[[access_control.rules]]
path = "^/admin/"
policy = "two_factor"
"#;
    Options { policy: "one_factor", resend_cooldown: "0s", extra: extra.into(), ..Default::default() }
}

/// A token made by `testuser` through the API: (its id, its text).
async fn make_token(h: &Harness, name: &str) -> (String, String) {
    let c = h.two_factor_client("testuser", PASSWORD, FIREFOX).await;
    let (s, v) = h.post_as(&c, "/_auth/api/tokens", json!({"name": name, "password": PASSWORD})).await;
    assert_eq!(s, 201, "{v}");
    (v["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A client without cookies.
fn bare() -> reqwest::Client {
    support::client()
}

async fn get(h: &Harness, path: &str, authorization: &str) -> reqwest::Response {
    bare().get(h.url(path)).header("Authorization", authorization).send().await.unwrap()
}

support::on_both_stores!(
    a_token_is_made_at_two_factors_with_the_password_shown_once_listed_and_revoked,
    a_token_signs_requests_only_where_a_rule_allows_it_and_the_app_never_sees_it,
    a_plain_password_over_basic_is_never_accepted_and_wrong_tokens_are_counted,
    a_token_ends_when_its_users_password_changes,
    forward_auth_accepts_a_token_where_the_rule_allows_it,
    a_basic_only_application_gets_basic_with_the_users_name,
    a_websocket_closes_when_its_session_is_logged_out,
);

async fn a_token_is_made_at_two_factors_with_the_password_shown_once_listed_and_revoked(b: Backend) {
    let Some(h) = Harness::start(b, with_token_rules()).await else { return };
    // The password alone cannot make one.
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let (s, v) = h.post_as(&c, "/_auth/api/tokens", json!({"name": "x", "password": PASSWORD})).await;
    assert_eq!((s.as_u16(), &v["step_up"]), (401, &json!(true)), "{v}");
    h.step_up(&c).await;
    let (s, v) = h.post_as(&c, "/_auth/api/tokens", json!({"name": "x", "password": "wrong"})).await;
    assert_eq!((s.as_u16(), v["error"].as_str()), (400, Some("Incorrect password.")), "{v}");
    let (s, v) = h.post_as(&c, "/_auth/api/tokens", json!({"name": " ", "password": PASSWORD})).await;
    assert_eq!(s, 400, "a name is needed: {v}");
    let year_and_a_day = json!({"name": "x", "password": PASSWORD, "expires_in": 366 * 86400});
    let (s, v) = h.post_as(&c, "/_auth/api/tokens", year_and_a_day).await;
    assert_eq!(s, 400, "at most a year: {v}");

    let (s, v) = h
        .post_as(&c, "/_auth/api/tokens", json!({"name": "calendar", "password": PASSWORD, "expires_in": 86400}))
        .await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pct_") && token.len() == 69, "{token}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expires = v["expires_at"].as_u64().unwrap();
    assert!(expires.abs_diff(now + 86400) < 5, "a day from now: {expires}");

    let list: Value = c.get(h.url("/_auth/api/tokens")).send().await.unwrap().json().await.unwrap();
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1, "{list}");
    assert_eq!(tokens[0]["name"], "calendar");
    assert!(tokens[0].get("token").is_none() && !list.to_string().contains(&token[4..]), "never shown again: {list}");
    assert_eq!(get(&h, "/dav/x", &format!("Bearer {token}")).await.status(), 200);

    let id = tokens[0]["id"].as_str().unwrap();
    let r = c.delete(h.url(&format!("/_auth/api/tokens/{id}"))).header("Origin", &h.origin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.delete(h.url(&format!("/_auth/api/tokens/{id}"))).header("Origin", &h.origin).send().await.unwrap();
    assert_eq!(r.status(), 404, "once");
    assert_eq!(get(&h, "/dav/x", &format!("Bearer {token}")).await.status(), 401, "revoked");

    // Another user cannot revoke it.
    let (id, _) = make_token(&h, "script").await;
    let bob = h.two_factor_client("bob", "bobs-password-1", FIREFOX).await;
    let r = bob.delete(h.url(&format!("/_auth/api/tokens/{id}"))).header("Origin", &h.origin).send().await.unwrap();
    assert_eq!(r.status(), 404, "bob has no such token");
    for event in ["token_created", "token_revoked"] {
        assert!(h.gw.wait_for_record(|r| r["event"] == event).await.is_some(), "{event} audited");
    }
}

async fn a_token_signs_requests_only_where_a_rule_allows_it_and_the_app_never_sees_it(b: Backend) {
    let Some(h) = Harness::start(b, with_token_rules()).await else { return };
    let (_, token) = make_token(&h, "sync").await;
    for auth in [format!("Bearer {token}"), basic("testuser", &token)] {
        let r = get(&h, "/dav/calendar", &auth).await;
        assert_eq!(r.status(), 200, "{auth}");
        let echo: Value = r.json().await.unwrap();
        assert_eq!(echo["headers"]["remote-user"][0], "testuser");
        assert_eq!(echo["headers"]["remote-auth-method"][0], "token");
        assert_eq!(echo["headers"]["remote-groups"][0], "staff");
        assert!(echo["headers"].get("authorization").is_none(), "the token never reaches the app: {echo}");
    }
    // Where the rule takes no tokens, a token is nobody: the default and a
    // two-factor rule alike (and a browser session still works there).
    assert_eq!(get(&h, "/app", &format!("Bearer {token}")).await.status(), 401);
    assert_eq!(get(&h, "/admin/x", &format!("Bearer {token}")).await.status(), 401);
    // Basic with another user's name and this token: refused.
    assert_eq!(get(&h, "/dav/x", &basic("bob", &token)).await.status(), 401);
    // A session's requests say so.
    let c = h.two_factor_client("testuser", PASSWORD, FIREFOX).await;
    let echo: Value = c.get(h.url("/dav/x")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["headers"]["remote-auth-method"][0], "session");
    // A client-sent method header is the gateway's to say.
    let r = c.get(h.url("/app")).header("Remote-Auth-Method", "token").send().await.unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["remote-auth-method"], json!(["session"]));
    // Where tokens are not taken, Authorization is the application's own.
    let echo: Value =
        c.get(h.url("/app")).header("Authorization", "Bearer app-own").send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["headers"]["authorization"][0], "Bearer app-own");
    let m = h.metrics().await;
    let signed = support::sample(&m, "portcullis_auth_attempts_total", &[("stage", "token"), ("result", "success")]);
    assert_eq!(signed, 2.0, "every request a token signed is counted");
}

async fn a_plain_password_over_basic_is_never_accepted_and_wrong_tokens_are_counted(b: Backend) {
    let Some(h) = Harness::start(b, Options { lockout: Some("ip_failures = \"5/15m\""), ..with_token_rules() }).await
    else {
        return;
    };
    let (_, token) = make_token(&h, "script").await;
    let r = get(&h, "/dav/x", &basic("testuser", PASSWORD)).await;
    assert_eq!(r.status(), 401, "the password is no token");
    let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(challenge.as_deref(), Some("Basic realm=\"Portcullis\", charset=\"UTF-8\""), "clients prompt");
    let r = bare().get(h.url("/dav/x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"), "no credentials at all: invited to send a token");
    // Used once: this process now remembers the checked secret; a wrong one
    // for the same id must still be refused.
    assert_eq!(get(&h, "/dav/x", &format!("Bearer {token}")).await.status(), 200);
    let wrong = format!("{}{}", &token[..40], "A".repeat(29));
    for _ in 0..4 {
        assert_eq!(get(&h, "/dav/x", &format!("Bearer {wrong}")).await.status(), 401);
    }
    // Five failures from this address: it is banned, even with the right token.
    let r = get(&h, "/dav/x", &format!("Bearer {token}")).await;
    assert_eq!(r.status(), 429, "the client's failure window is full");
    assert!(r.headers().contains_key("retry-after"));
    let m = h.metrics().await;
    let wrong =
        support::sample(&m, "portcullis_auth_attempts_total", &[("stage", "token"), ("result", "invalid_credentials")]);
    assert_eq!(wrong, 5.0);
    let audited = h.gw.security_records().iter().filter(|r| r["event"] == "invalid_credentials").count();
    assert!(audited >= 5, "wrong tokens are audited: {audited}");
}

async fn a_token_ends_when_its_users_password_changes(b: Backend) {
    let Some(h) = Harness::start(b, with_token_rules()).await else { return };
    let (_, token) = make_token(&h, "backup").await;
    let bearer = format!("Bearer {token}");
    assert_eq!(get(&h, "/dav/x", &bearer).await.status(), 200);
    support::write_users(
        &h.users,
        &[
            ("testuser", "test@example.com", "a new password for testuser", &["staff"]),
            ("bob", "bob@example.com", "bobs-password-1", &[]),
        ],
    );
    assert_eventually!(
        within Duration::from_secs(5),
        get(&h, "/dav/x", &bearer).await.status() == 401,
        "a new password ends the token"
    );
    let revoked = h.gw.wait_for_record(|r| r["event"] == "token_revoked").await.unwrap();
    assert!(revoked["details"].as_str().unwrap().contains("credential changed"), "{revoked}");
    let c = h.two_factor_client("testuser", "a new password for testuser", FIREFOX).await;
    let list: Value = c.get(h.url("/_auth/api/tokens")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["tokens"], json!([]), "and it is gone from the list");
}

async fn forward_auth_accepts_a_token_where_the_rule_allows_it(b: Backend) {
    let Some(h) = Harness::start(b, with_token_rules()).await else { return };
    let (_, token) = make_token(&h, "git").await;
    let verify = |path: &str, auth: String| {
        bare()
            .get(h.url("/_auth/verify?mode=nginx"))
            .header("X-Original-URL", h.url(path))
            .header("Authorization", auth)
            .send()
    };
    let r = verify("/git/repo.git/info/refs", basic("testuser", &token)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["remote-user"], "testuser");
    assert_eq!(r.headers()["remote-auth-method"], "token");
    let r = verify("/app", format!("Bearer {token}")).await.unwrap();
    assert_eq!(r.status(), 401, "no tokens where the rule takes none");
    let r = verify("/git/x", basic("testuser", PASSWORD)).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"), "nginx passes the challenge on");
}

async fn a_basic_only_application_gets_basic_with_the_users_name(b: Backend) {
    let options = Options {
        upstream: "pass_basic_auth = true\nbasic_auth_password = \"app-side secret\"".into(),
        ..with_token_rules()
    };
    let Some(h) = Harness::start(b, options).await else { return };
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let r = c.get(h.url("/app")).header("Authorization", basic("mallory", "guess")).send().await.unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["authorization"], json!([basic("testuser", "app-side secret")]), "{echo}");
    let (_, token) = make_token(&h, "dav").await;
    let echo: Value = get(&h, "/dav/x", &format!("Bearer {token}")).await.json().await.unwrap();
    assert_eq!(echo["headers"]["authorization"], json!([basic("testuser", "app-side secret")]), "{echo}");
}

/// A session cookie for `testuser` (one factor), for a client that is no browser.
async fn session_cookie(h: &Harness) -> String {
    let r = bare()
        .post(h.url("/_auth/api/send-login-otp"))
        .header("Origin", &h.origin)
        .json(&json!({"username_or_email": "testuser", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = r.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.starts_with("portcullis_session=").then(|| v.split(';').next().unwrap().to_owned())
    });
    cookie.expect("a session cookie")
}

/// Opens a WebSocket through the gateway with `cookie`, and checks it echoes.
async fn websocket(
    origin: &str,
    cookie: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("{}/ws", origin.replace("http://", "ws://")).into_client_request().unwrap();
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "hello");
    ws
}

/// Whether the connection ends within `limit`.
async fn closes_within(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    limit: Duration,
) -> bool {
    let ended = async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(limit, ended).await.is_ok()
}

async fn a_websocket_closes_when_its_session_is_logged_out(b: Backend) {
    let Some(h) = Harness::start(b, with_token_rules()).await else { return };
    let cookie = session_cookie(&h).await;
    let mut ws = websocket(&h.origin, &cookie).await;
    let mut other = websocket(&h.origin, &session_cookie(&h).await).await;
    let m = h.metrics().await;
    assert_eq!(support::sample(&m, "portcullis_upgraded_connections", &[]), 2.0);
    let r =
        bare().post(h.url("/_auth/logout")).header("Origin", &h.origin).header("Cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(closes_within(&mut ws, Duration::from_secs(5)).await, "closed within 5 s of the logout");
    other.send(Message::text("still here")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), other.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "still here", "another session's connection stays");
}

#[tokio::test]
async fn a_websocket_closes_when_its_user_is_revoked_on_another_replica() {
    let Some(h) = Harness::start(Backend::Redis, with_token_rules()).await else { return };
    let (replica, replica_origin) = h.start_replica();
    let cookie = session_cookie(&h).await;
    let mut ws = websocket(&replica_origin, &cookie).await;
    // The operator ends the user's sessions through the first gateway.
    let out = std::process::Command::new(support::binary())
        .args(["sessions", "revoke", "testuser", "--config"])
        .arg(h.gw.dir.path().join("portcullis.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(closes_within(&mut ws, Duration::from_secs(5)).await, "the replica closed it within 5 s");
    drop(replica);
}

/// A page that polls (`refresh_session = false`) does not keep a forgotten
/// session alive, while any other request still slides it. Driven in process
/// on the memory store with a manual clock: no waiting for an idle timeout.
#[tokio::test]
async fn a_rule_that_does_not_refresh_lets_an_idle_session_expire() {
    use portcullis::config::{Policy, RuleConfig};
    use portcullis::gate::{Facts, Verdict};
    let poll = |cfg: &mut portcullis::config::Config| {
        let mut rule: RuleConfig =
            toml::from_str("path = \"^/poll\"\npolicy = \"one_factor\"\nrefresh_session = false").expect("a rule");
        rule.policy = Policy::OneFactor;
        cfg.access_control.rules.push(rule);
        cfg.session.idle_timeout = Duration::from_secs(600);
    };
    let Some(m) = support::machine::machine(Backend::Memory, Policy::OneFactor, poll).await else { return };
    let gate = &m.app.gateway.gate;
    let allowed = async |token: &str, path: &str| {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::COOKIE, format!("portcullis_session={token}").parse().unwrap());
        let method = http::Method::GET;
        let facts = Facts::new("app.test", path, &method, "198.51.100.1".parse().unwrap(), &headers);
        matches!(gate.check(&facts).await.expect("the store answers"), Verdict::Allow(Some(_)))
    };
    let token = m.session_for("alice", support::machine::PASSWORD).await;
    // Polled every 5 minutes for 15: the session is not kept alive by it.
    for _ in 0..2 {
        m.clock.advance(Duration::from_secs(300));
        assert!(allowed(&token, "/poll/status").await, "alive within its idle timeout");
    }
    m.clock.advance(Duration::from_secs(301));
    assert!(!allowed(&token, "/poll/status").await, "idle for ten minutes: the polls did not refresh it");
    assert!(!allowed(&token, "/app").await, "and it is gone for every page");

    // The same polls beside a page that is used: the use keeps it alive.
    let token = m.session_for("alice", support::machine::PASSWORD).await;
    for _ in 0..3 {
        m.clock.advance(Duration::from_secs(300));
        assert!(allowed(&token, "/app").await, "a page in use slides the session");
        assert!(allowed(&token, "/poll/status").await);
    }
}
