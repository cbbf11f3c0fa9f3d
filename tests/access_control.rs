//! Access control against an attacker: paths and hosts in every spelling an
//! upstream would accept, a return address chosen to lower the login's level,
//! header spellings that WSGI servers merge, IPv4 clients on a dual-stack
//! listener, slow bodies and connection floods, the gateway's own cookies, and
//! the demo's secret. Requests whose exact bytes matter are written by hand on
//! a raw socket: HTTP client libraries normalise paths before sending them.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::flow::{Backend, Harness, Options, PASSWORD};
use support::{Gateway, SECRET, assert_eventually, client, write_users};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `/public/` bypasses, `/admin/` is denied to everyone, the rest needs a password.
fn rules() -> String {
    r#"
[[access_control.rules]]
path = "^/public/"
policy = "bypass"
[[access_control.rules]]
path = "^/admin/"
policy = "deny"
[[access_control.rules]]
domain = ["admin.test"]
policy = "deny"
"#
    .into()
}

async fn harness(policy: &'static str, extra: String) -> Harness {
    Harness::start(Backend::Memory, Options { policy, extra, ..Options::default() }).await.expect("memory harness")
}

/// The session cookie of a one-factor login (`name=value`).
async fn session_cookie(h: &Harness) -> String {
    session_cookie_of(h, "testuser", PASSWORD).await
}

/// The session cookie of `user`'s one-factor login (`name=value`).
async fn session_cookie_of(h: &Harness, user: &str, password: &str) -> String {
    let r = client()
        .post(h.url("/_auth/api/send-login-otp"))
        .header("Origin", &h.origin)
        .json(&json!({"username_or_email": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("portcullis_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// A response read off a raw socket.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Sends `head` (the request line and headers, without the blank line) and
/// reads the answer until the gateway closes the connection.
async fn raw(addr: &str, head: &str) -> Raw {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.expect("answer in time").unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Raw { status, head: head.to_owned(), body: body.to_owned() }
}

fn get(path: &str, host: &str, cookie: Option<&str>) -> String {
    let cookie = cookie.map(|c| format!("\r\nCookie: {c}")).unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json{cookie}")
}

#[tokio::test]
async fn rules_see_the_path_an_upstream_would_resolve() {
    let h = harness("one_factor", rules()).await;
    let host = h.gw.addr.clone();
    for path in ["/public/../admin/x", "/public/%2e%2e/admin/x", "/public/./../admin/x", "/public/%2E%2E/admin/x"] {
        let r = raw(&h.gw.addr, &get(path, &host, None)).await;
        assert_eq!(r.status, 403, "anonymous {path}: {}", r.head);
    }
    let cookie = session_cookie(&h).await;
    for path in ["/%61dmin/x", "//admin/x", "/./admin/x", "/admin/%2e/x", "/admin//x"] {
        let r = raw(&h.gw.addr, &get(path, &host, Some(&cookie))).await;
        assert_eq!(r.status, 403, "logged in {path}: {}", r.head);
    }
    assert_eq!(h.up.hits(), 0, "no spelling of /admin/ reached the app");
}

/// Writes under `/reports/` (POST and DELETE) are denied, reading and
/// replacing need only the password; `/bob/` is for bob alone.
fn method_and_user_rules() -> String {
    r#"
[[access_control.rules]]
path = "^/reports/"
methods = ["POST", "DELETE"]
policy = "deny"
[[access_control.rules]]
path = "^/bob/"
users = ["bob"]
policy = "one_factor"
[[access_control.rules]]
path = "^/bob/"
policy = "deny"
"#
    .into()
}

/// Checks the rules of [`method_and_user_rules`] at `origin` (the gateway in
/// proxy mode, or a proxy asking it): each request's status, as an API
/// client asks, and that only the allowed ones reached the app.
async fn method_and_user_rules_hold(h: &Harness, origin: &str) {
    let testuser = session_cookie(h).await;
    let bob = session_cookie_of(h, "bob", "bobs-password-1").await;
    let cases = [
        ("testuser", "GET", "/reports/q3", 200),
        ("testuser", "PUT", "/reports/q3", 200),
        ("testuser", "POST", "/reports/q3", 403),
        ("testuser", "DELETE", "/reports/q3", 403),
        ("bob", "POST", "/reports/q3", 403),
        ("testuser", "GET", "/bob/notes", 403),
        ("bob", "GET", "/bob/notes", 200),
        ("nobody", "GET", "/bob/notes", 401),
    ];
    let before = h.up.hits();
    for (who, method, path, want) in cases {
        let mut r = client()
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{origin}{path}"))
            .header("Accept", "application/json");
        match who {
            "testuser" => r = r.header("Cookie", &testuser),
            "bob" => r = r.header("Cookie", &bob),
            _ => {}
        }
        let status = r.send().await.unwrap().status();
        assert_eq!(status, want, "{method} {path} as {who}");
    }
    assert_eq!(h.up.hits() - before, 3, "only the three allowed requests reached the app");
}

#[tokio::test]
async fn a_methods_rule_and_a_users_rule_hold_in_proxy_mode() {
    let h = harness("one_factor", method_and_user_rules()).await;
    method_and_user_rules_hold(&h, &h.origin).await;
}

#[tokio::test]
async fn a_methods_rule_and_a_users_rule_hold_behind_nginx() {
    let h = harness("one_factor", method_and_user_rules()).await;
    let Some(nginx) = support::proxies::nginx(&h.gw.addr, &h.up.addr.to_string()) else { return };
    method_and_user_rules_hold(&h, &nginx.origin()).await;
}

#[tokio::test]
async fn the_upstream_receives_the_path_the_rules_saw() {
    let h = harness("one_factor", rules()).await;
    let cookie = session_cookie(&h).await;
    let r = raw(&h.gw.addr, &get("/public/./x//y/../%7Ez?q=%2e%2e&a=1", &h.gw.addr, None)).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let echo: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(echo["path"], "/public/x/~z?q=%2e%2e&a=1", "the normal path, the query untouched");
    let r = raw(&h.gw.addr, &get("/app/%c3%a9", &h.gw.addr, Some(&cookie))).await;
    let echo: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(echo["path"], "/app/%C3%A9");
}

#[tokio::test]
async fn a_path_that_cannot_be_normalised_safely_is_refused() {
    let h = harness("bypass", String::new()).await;
    for path in ["/a%2fb", "/a%2Fadmin", "/a%5cb", "/a%00b", "/a%zz", "/public/..;/admin/x"] {
        let r = raw(&h.gw.addr, &get(path, &h.gw.addr, None)).await;
        assert_eq!(r.status, 400, "{path}: {}", r.head);
        assert!(r.body.contains("path"), "the answer says what is wrong: {}", r.body);
    }
    assert_eq!(h.up.hits(), 0);
}

#[tokio::test]
async fn host_spellings_do_not_escape_domain_rules() {
    let h = harness("one_factor", rules()).await;
    let cookie = session_cookie(&h).await;
    let port = h.gw.port();
    for host in ["admin.test.".to_string(), "ADMIN.test".to_string(), format!("Admin.Test.:{port}")] {
        let r = raw(&h.gw.addr, &get("/x", &host, Some(&cookie))).await;
        assert_eq!(r.status, 403, "Host: {host}: {}", r.head);
    }
    assert_eq!(h.up.hits(), 0);
}

#[tokio::test]
async fn a_host_that_is_not_host_and_port_is_refused() {
    let h = harness("bypass", String::new()).await;
    let port = h.gw.port();
    for host in [format!("127.0.0.1:{port}#"), format!("127.0.0.1:{port}?"), "a@b.test".into(), "a b".into()] {
        let r = raw(&h.gw.addr, &get("/x", &host, None)).await;
        assert_eq!(r.status, 400, "Host: {host}: {}", r.head);
    }
    assert_eq!(h.up.hits(), 0);
}

#[tokio::test]
async fn verify_refuses_an_original_url_whose_authority_is_not_a_host() {
    let h = harness("one_factor", rules()).await;
    let cookie = session_cookie(&h).await;
    let port = h.gw.port();
    for url in [
        format!("http://127.0.0.1:{port}#/admin/panel"),
        format!("http://127.0.0.1:{port}?/admin/panel"),
        format!("http://127.0.0.1:{port}\\/admin/panel"),
        "http:///admin/panel".to_string(),
        "http://user@127.0.0.1/admin/panel".to_string(),
    ] {
        let r = client()
            .get(h.url("/_auth/verify?mode=nginx"))
            .header("X-Original-URL", &url)
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{url}");
    }
    // The path is normalised there too.
    let r = client()
        .get(h.url("/_auth/verify?mode=nginx"))
        .header("X-Original-URL", format!("http://127.0.0.1:{port}/public/%2e%2e/admin/panel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client()
        .get(h.url("/_auth/verify?mode=traefik"))
        .header("X-Forwarded-Proto", "http")
        .header("X-Forwarded-Host", "admin.test.")
        .header("X-Forwarded-Uri", "/x")
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a trailing dot does not escape a domain rule");
}

#[tokio::test]
async fn a_return_address_cannot_lower_the_level_of_a_login() {
    let h = harness("two_factor", rules()).await;
    let (s, v) = h
        .post_json(
            "/_auth/api/send-login-otp",
            json!({"username_or_email": "testuser", "password": PASSWORD, "rd": format!("{}/public/x", h.origin)}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["otp_required"], true, "a bypassed rd still needs the code the deployment asks for: {v}");
    let (s, _) = {
        let r = h.http.get(h.url("/_auth/api/me")).send().await.unwrap();
        (r.status(), ())
    };
    assert_eq!(s, 401, "the password alone gave no session");
}

/// The `name=value` of a cookie the response sets.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

#[tokio::test]
async fn the_gateways_cookies_never_reach_the_app() {
    let h = harness("one_factor", String::new()).await;
    // The login page gives an anonymous visitor a CSRF cookie; a login, a session cookie.
    let page = client().get(h.url("/_auth/login")).header("Accept", "text/html").send().await.unwrap();
    let csrf = set_cookie(&page, "portcullis_session_csrf").expect("a CSRF cookie");
    let session = session_cookie(&h).await;
    let cookies = format!("app_pref=dark; {csrf}; {session}; portcullis_session_pending=x; theme=1");
    let r = raw(&h.gw.addr, &get("/app", &h.gw.addr, Some(&cookies))).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let echo: Value = serde_json::from_str(&r.body).unwrap();
    let seen = echo["headers"]["cookie"].to_string();
    assert!(!seen.contains("portcullis"), "the app saw the gateway's cookies: {seen}");
    assert!(seen.contains("app_pref=dark") && seen.contains("theme=1"), "the app's own cookies pass: {seen}");
}

#[tokio::test]
async fn the_demo_signs_with_its_random_secret() {
    use base64::Engine as _;
    use hmac::Mac as _;
    let port = support::free_port();
    let mut child = std::process::Command::new(support::binary())
        .args(["--log-format", "json", "demo"])
        .env("PORTCULLIS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("PORTCULLIS_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("demo");
    let stdout = child.stdout.take().unwrap();
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _demo = Stop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let up = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l.starts_with("portcullis listening on") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    let origin = format!("http://127.0.0.1:{port}");
    let result = async {
        assert!(up, "the demo started");
        let page = client().get(format!("{origin}/_auth/login")).header("Accept", "text/html").send().await.unwrap();
        let cookie = set_cookie(&page, "portcullis_session_csrf").expect("a CSRF cookie");
        let binding = cookie.split_once('=').unwrap().1.to_owned();
        // A token a stranger could make if the key were the placeholder text.
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"[redacted]").unwrap();
        mac.update(b"csrf\0");
        mac.update(&ts.to_be_bytes());
        mac.update(binding.as_bytes());
        let mut raw_token = ts.to_be_bytes().to_vec();
        raw_token.extend_from_slice(&mac.finalize().into_bytes());
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw_token);
        let r = client()
            .post(format!("{origin}/_auth/login"))
            .header("Cookie", &cookie)
            .form(&[("username_or_email", "demo"), ("password", "x"), ("csrf_token", &forged)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "a token signed with the placeholder is refused");
    };
    result.await;
}

#[tokio::test]
async fn every_spelling_of_an_identity_header_is_stripped() {
    let h = harness("one_factor", String::new()).await;
    let cookie = session_cookie(&h).await;
    let head = format!(
        "GET /app HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nRemote_User: admin\r\nREMOTE-USER: root\r\nremote_groups: admins",
        h.gw.addr
    );
    let r = raw(&h.gw.addr, &head).await;
    let echo: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(echo["headers"]["remote-user"], json!(["testuser"]));
    assert!(echo["headers"].get("remote_user").is_none(), "{echo}");
    assert!(echo["headers"].get("remote_groups").is_none(), "{echo}");
}

#[tokio::test]
async fn an_ipv4_client_on_a_dual_stack_listener_meets_ipv4_rules() {
    let up = support::upstream::Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = support::empty_users(dir.path());
    let config = format!(
        r#"
[server]
listen = "[::]:0"
metrics_listen = "127.0.0.1:0"
trusted_proxies = []
[[upstream]]
url = "{}"
[auth]
secret = "{SECRET}"
users_file = "{}"
[access_control]
default_policy = "bypass"
[[access_control.rules]]
networks = ["127.0.0.0/8"]
policy = "deny"
"#,
        up.url(),
        users.display()
    );
    let gw = Gateway::start_in(dir, &config, &[]);
    let port = gw.port();
    let r = client().get(format!("http://127.0.0.1:{port}/x")).send().await.unwrap();
    assert_eq!(r.status(), 403, "the IPv4 rule applies to ::ffff:127.0.0.1");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn ipv6_clients_share_their_64_in_rate_limits() {
    let h = Harness::start(
        Backend::Memory,
        Options { policy: "one_factor", rate_limit: Some("login = \"3/5m\""), ..Options::default() },
    )
    .await
    .unwrap();
    let attempt = |xff: &'static str| {
        client()
            .post(h.url("/_auth/api/send-login-otp"))
            .header("Origin", &h.origin)
            .header("X-Forwarded-For", xff)
            .json(&json!({"username_or_email": "testuser", "password": "wrong"}))
            .send()
    };
    for xff in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3"] {
        assert_eq!(attempt(xff).await.unwrap().status(), 400, "{xff}");
    }
    assert_eq!(attempt("2001:db8:1:2:ffff::9").await.unwrap().status(), 429, "the same /64");
    assert_eq!(attempt("2001:db8:1:3::1").await.unwrap().status(), 400, "another /64");
}

#[tokio::test]
async fn a_body_that_never_arrives_times_out() {
    let h = Harness::start(
        Backend::Memory,
        Options { policy: "bypass", server: "body_read_timeout = \"1s\"".into(), ..Options::default() },
    )
    .await
    .unwrap();
    let mut s = tokio::net::TcpStream::connect(&h.gw.addr).await.unwrap();
    let head = format!(
        "POST /_auth/api/send-login-otp HTTP/1.1\r\nHost: {}\r\nOrigin: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"a\":",
        h.gw.addr, h.origin
    );
    let started = Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("answered").unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn one_client_cannot_hold_every_connection() {
    let h = Harness::start(
        Backend::Memory,
        Options {
            policy: "bypass",
            trusted_proxies: Some("[]"),
            server: "max_connections_per_client = 4".into(),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    // The connections the gateway holds, read over one kept-alive connection
    // (so the reading itself counts the same each time).
    let scrape = reqwest::Client::new();
    let metrics = format!("http://{}/metrics", h.gw.metrics_addr.as_ref().unwrap());
    let open = async || {
        let text = scrape.get(&metrics).send().await.unwrap().text().await.unwrap();
        support::sample(&text, "portcullis_connections_open", &[])
    };
    let before = open().await;
    // Four idle connections are this client's share.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(&h.gw.addr).await.unwrap();
        s.write_all(b"GET /").await.unwrap();
        held.push(s);
    }
    // A connection is counted once accepted, with its client's slot taken.
    assert_eventually!(open().await >= before + 4.0, "the four connections accepted");
    let mut fifth = tokio::net::TcpStream::connect(&h.gw.addr).await.unwrap();
    let _ = fifth.write_all(format!("GET /x HTTP/1.1\r\nHost: {}\r\n\r\n", h.gw.addr).as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), fifth.read(&mut buf)).await.expect("answered").unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 503"), "the fifth connection is turned away: {text}");
    drop(held);
    // With the others gone, the client is served again.
    assert_eventually!(
        within Duration::from_secs(5),
        client().get(h.url("/x")).send().await.is_ok_and(|r| r.status() == 200),
        "served again once its connections closed"
    );
}

#[tokio::test]
async fn session_cookies_take_the_host_prefix_under_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed(dir.path(), "gw");
    let users = dir.path().join("users.toml");
    write_users(&users, &[("alice", "alice@example.com", "alices-password-1", &[])]);
    let config = |port: u16| {
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "https://127.0.0.1:{port}"
tls_cert = "{}"
tls_key = "{}"
metrics_listen = "127.0.0.1:0"
[[upstream]]
url = "http://127.0.0.1:9"
[auth]
secret = "{SECRET}"
users_file = "{}"
[access_control]
default_policy = "one_factor"
"#,
            cert.display(),
            key.display(),
            users.display()
        )
    };
    let (gw, port) = Gateway::start_on_own_port(dir, &[], config);
    support::crypto();
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let origin = format!("https://127.0.0.1:{port}");
    let r = http
        .post(format!("{origin}/_auth/api/send-login-otp"))
        .header("Origin", &origin)
        .json(&json!({"username_or_email": "alice", "password": "alices-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> =
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let session = cookies.iter().find(|c| c.contains("portcullis_session=")).expect("a session cookie");
    assert!(session.starts_with("__Host-portcullis_session="), "{session}");
    assert!(session.contains("Secure") && session.contains("Path=/") && !session.contains("Domain"), "{session}");
    drop(gw);
}

#[tokio::test]
async fn a_one_factor_session_is_asked_for_the_code_where_two_are_needed() {
    let h =
        harness("one_factor", "[[access_control.rules]]\npath = \"^/secure/\"\npolicy = \"two_factor\"\n".into()).await;
    let (s, v) = h.send_login("testuser", PASSWORD).await;
    assert_eq!((s.as_u16(), &v["otp_required"]), (200, &json!(false)), "one factor is the default: {v}");
    let secure = h.url("/secure/x");
    let r = h.http.get(&secure).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 302, "the session is below what /secure/ needs");
    let login = r.headers()["location"].to_str().unwrap().to_owned();
    let page = h.http.get(&login).header("Accept", "text/html").send().await.unwrap().text().await.unwrap();
    assert!(page.contains("E-mail me a code") && page.contains("testuser"), "the login page offers step-up");
    let (s, _) = h.post_json("/_auth/api/me", json!({})).await;
    assert_eq!(s, 404, "api/me is a GET");
    let me = h.http.get(h.url("/_auth/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 200, "the account needs only what the deployment asks: one factor");

    let (s, v) = h.post_json("/_auth/api/step-up", json!({"rd": secure})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["otp_required"], true, "{v}");
    let code = h.code_from_mail(1).await;
    let (s, v) = h.verify(&code).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["redirect_url"], secure);
    let r = h.http.get(&secure).send().await.unwrap();
    assert_eq!(r.status(), 200, "two factors now");
    assert_eq!(h.up.hits(), 1);
}

#[tokio::test]
async fn step_up_needs_a_session() {
    let h = harness("one_factor", String::new()).await;
    let (s, v) = h.post_json("/_auth/api/step-up", json!({})).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(h.smtp.messages().len(), 0, "no code for a stranger");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let h = Harness::start(
        Backend::Memory,
        Options { policy: "bypass", server: "idle_timeout = \"1s\"".into(), ..Options::default() },
    )
    .await
    .unwrap();
    // HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame, then
    // no request. Like a live browser, the client acknowledges SETTINGS and PINGs.
    let mut s = tokio::net::TcpStream::connect(&h.gw.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let started = Instant::now();
    let mut goaway = false;
    let deadline = started + Duration::from_secs(8);
    loop {
        let mut head = [0u8; 9];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read_exact(&mut head)).await {
            Err(_) => panic!("still open after 8 s without a request"),
            Ok(Err(_)) => break, // closed
            Ok(Ok(_)) => {}
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).await.is_err() {
            break;
        }
        let (kind, flags) = (head[3], head[4]);
        goaway |= kind == 7;
        let ack = |kind: u8, payload: &[u8]| {
            let mut f = vec![0, 0, payload.len() as u8, kind, 1, 0, 0, 0, 0];
            f.extend_from_slice(payload);
            f
        };
        if kind == 4 && flags & 1 == 0 {
            let _ = s.write_all(&ack(4, &[])).await;
        } else if kind == 6 && flags & 1 == 0 {
            let _ = s.write_all(&ack(6, &payload)).await;
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the idle timeout: {:?}", started.elapsed());
    assert!(goaway, "closed with a GOAWAY");
}
