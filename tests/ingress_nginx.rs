//! Forward-auth behind ingress-nginx, as deploy/kubernetes sets it up: real
//! nginx runs the location blocks the controller renders for the example's
//! auth-url, auth-signin and auth-response-headers annotations, and the
//! gateway runs the ConfigMap's configuration (with the cluster's addresses
//! swapped for loopback ones). Logins take a password and an e-mailed code
//! through the portal host; the session cookie covers the app's host.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::cookie::CookieStore;
use serde_json::{Value, json};
use support::proxies::{self, ProxyProcess};
use support::smtp::SmtpSink;
use support::upstream::Upstream;
use support::{Gateway, SECRET, assert_eventually, form_field, write_users};

const ALICE: (&str, &str) = ("alice", "alice-password-1");
const BOB: (&str, &str) = ("bob", "bob-password-1");

/// A path with a query whose parameters must all survive the trip through `rd`
/// (ingress-nginx escapes it with set_escape_uri; Portcullis must decode it to
/// exactly this).
const DEEP_PATH: &str = "/app/report?x=1&y=a%2Fb&z=%C3%A9";

/// Rules the ConfigMap leaves to the operator, for the scenarios below.
const RULES: &str = r#"
[[access_control.rules]]
path = "^/public/"
policy = "bypass"
[[access_control.rules]]
path = "^/blocked/"
policy = "deny"
[[access_control.rules]]
path = "^/admin/"
groups = ["admins"]
policy = "two_factor"
[[access_control.rules]]
path = "^/admin/"
policy = "deny"
"#;

struct Setup {
    proxy: ProxyProcess,
    up: Upstream,
    smtp: SmtpSink,
    /// `http://auth.example.com:PORT`: the portal's origin through the ingress.
    portal: String,
    /// `http://app.example.com:PORT`: the protected app's origin.
    app: String,
    portal_host: String,
    app_host: String,
    _gw: Gateway,
}

/// The `portcullis.toml` embedded in deploy/kubernetes/configmap.yaml.
fn configmap_toml() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/configmap.yaml");
    let text = std::fs::read_to_string(path).expect("configmap.yaml");
    let body = text.split_once("portcullis.toml: |\n").expect("portcullis.toml key").1;
    body.lines().map_while(|l| l.strip_prefix("    ").or((l.is_empty()).then_some(""))).collect::<Vec<_>>().join("\n")
}

/// Replaces `from` with `to` in `text`, insisting that `from` is there.
fn swap(text: String, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the ConfigMap no longer has {from:?}");
    text.replace(from, to)
}

/// Alice (group dev) and Bob (groups admins, dev).
async fn setup() -> Option<Setup> {
    let up = Upstream::start().await;
    let smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    write_users(
        &users,
        &[(ALICE.0, "alice@example.com", ALICE.1, &["dev"]), (BOB.0, "bob@example.com", BOB.1, &["admins", "dev"])],
    );
    let gw_port = support::free_port();
    let proxy = proxies::ingress_nginx(&format!("127.0.0.1:{gw_port}"), &up.addr.to_string())?;
    let (portal_host, app_host) = proxies::ingress_hosts();
    let portal = format!("http://{portal_host}:{}", proxy.port);
    let app = format!("http://{app_host}:{}", proxy.port);

    // The ConfigMap as shipped, but for what differs between a cluster and
    // this machine: the ingress controller's address, and a mail relay that
    // takes no login.
    let config = swap(configmap_toml(), r#"trusted_proxies = ["10.0.0.0/8"]"#, r#"trusted_proxies = ["127.0.0.1/32"]"#);
    let config = swap(config, "smtp_username = \"portcullis@example.com\"\n", "") + RULES;
    let smtp_port = smtp.port().to_string();
    let users_path = users.display().to_string();
    let gw_listen = format!("127.0.0.1:{gw_port}");
    let env = [
        ("PORTCULLIS_SERVER__LISTEN", gw_listen.as_str()),
        ("PORTCULLIS_SERVER__PUBLIC_URL", portal.as_str()),
        ("PORTCULLIS_SERVER__METRICS_LISTEN", "127.0.0.1:0"),
        ("PORTCULLIS_AUTH__SECRET", SECRET),
        ("PORTCULLIS_AUTH__USERS_FILE", users_path.as_str()),
        ("PORTCULLIS_STORE__URL", "memory://"),
        ("PORTCULLIS_MAIL__SMTP_HOST", "127.0.0.1"),
        ("PORTCULLIS_MAIL__SMTP_PORT", smtp_port.as_str()),
        ("PORTCULLIS_MAIL__SMTP_TLS", "none"),
    ];
    let gw = Gateway::start_in(dir, &config, &env);
    let s = Setup { proxy, up, smtp, portal, app, portal_host, app_host, _gw: gw };
    // nginx may accept connections a moment before it routes.
    let (http, _) = browser(&s);
    assert_eventually!(
        within std::time::Duration::from_secs(15),
        http.get(format!("{}/_auth/healthz", s.portal)).send().await.is_ok_and(|r| r.status() == 200),
        "ingress-nginx never routed to the gateway"
    );
    Some(s)
}

/// A browser: keeps cookies by domain, follows no redirects, and resolves the
/// example's host names to the ingress on loopback.
fn browser(s: &Setup) -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    support::crypto();
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], s.proxy.port));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .resolve(&s.portal_host, loopback)
        .resolve(&s.app_host, loopback)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client");
    (http, jar)
}

async fn navigate(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.get(url).header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8").send().await.unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

fn rd_of(login_url: &str) -> Option<String> {
    let u = url::Url::parse(login_url).ok()?;
    u.query_pairs().find(|(k, _)| k == "rd").map(|(_, v)| v.into_owned())
}

/// Asserts `r` sends the browser to the portal's login page with `rd` = `original`.
fn assert_sign_in(r: &reqwest::Response, s: &Setup, original: &str) {
    assert_eq!(r.status(), StatusCode::FOUND, "{original}");
    let loc = location(r);
    assert!(loc.starts_with(&format!("{}/_auth/login?rd=", s.portal)), "{loc}");
    assert_eq!(rd_of(&loc).as_deref(), Some(original), "{loc}");
}

/// Password then e-mailed code with the JSON API on the portal host.
async fn api_login(http: &reqwest::Client, s: &Setup, who: (&str, &str)) {
    let before = s.smtp.messages().len();
    let post = |path: &str, body: Value| {
        http.post(format!("{}/_auth/api/{path}", s.portal)).header("Origin", &s.portal).json(&body).send()
    };
    let r = post("send-login-otp", json!({"username_or_email": who.0, "password": who.1})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["otp_required"], true, "{v}");
    let code = code_from_mail(s, before + 1).await;
    let r = post("verify-login-otp", json!({"otp_code": code})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn code_from_mail(s: &Setup, n: usize) -> String {
    let msgs = s.smtp.wait_for(n, std::time::Duration::from_secs(10)).await;
    assert!(msgs.len() >= n, "expected {n} e-mails, got {}", msgs.len());
    let text = msgs[n - 1].text_body().unwrap_or_default();
    support::find_code(&text, 6).unwrap_or_else(|| panic!("no code in e-mail:\n{text}"))
}

async fn echo(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("the app's echo")
}

#[tokio::test]
async fn an_anonymous_browser_signs_in_on_the_portal_and_lands_on_the_exact_url() {
    let Some(s) = setup().await else { return };
    let (http, _) = browser(&s);
    let original = format!("{}{DEEP_PATH}", s.app);

    let r = navigate(&http, &original).await;
    assert_sign_in(&r, &s, &original);
    // As the controller builds it: the scheme and host as they are, the request
    // URI escaped whole (set_escape_uri), so the query stays inside rd.
    let loc = location(&r);
    assert!(loc.contains(&format!("rd={}%2Fapp%2Freport%3Fx%3D1%26y%3Da%252Fb%26z%3D%25C3%25A9", s.app)), "{loc}");
    assert_eq!(s.up.hits(), 0);

    // The login page on the portal host carries rd in its form.
    let r = navigate(&http, &loc).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(form_field(&r.text().await.unwrap(), "rd").as_deref(), Some(original.as_str()));

    // Password, then the e-mailed code, with the HTML forms.
    let before = s.smtp.messages().len();
    let r = http
        .post(format!("{}/_auth/login", s.portal))
        .header("Origin", &s.portal)
        .form(&[("username_or_email", ALICE.0), ("password", ALICE.1), ("rd", &original)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with("/_auth/otp"), "{}", location(&r));
    let code = code_from_mail(&s, before + 1).await;
    let r = http
        .post(format!("{}/_auth/otp", s.portal))
        .header("Origin", &s.portal)
        .form(&[("otp_code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), original);

    // The portal's cookie covers the app's host; the app gets the full URL and Alice.
    let e = echo(navigate(&http, &original).await).await;
    assert_eq!(e["path"], DEEP_PATH, "{e}");
    assert_eq!(e["headers"]["remote-user"], json!(["alice"]), "{e}");
    assert_eq!(e["headers"]["remote-email"], json!(["alice@example.com"]), "{e}");
}

#[tokio::test]
async fn ingress_nginx_sends_every_unauthenticated_request_to_sign_in() {
    let Some(s) = setup().await else { return };
    let (http, _) = browser(&s);
    // Portcullis answers an API call 401 without a login URL; the controller's
    // error_page turns every 401 into the sign-in redirect regardless.
    let url = format!("{}/api/items", s.app);
    let r = http.get(&url).header("Accept", "application/json").send().await.unwrap();
    assert_sign_in(&r, &s, &url);
    let r = http.post(&url).json(&json!({})).send().await.unwrap();
    assert_sign_in(&r, &s, &url);
    assert_eq!(s.up.hits(), 0);
}

#[tokio::test]
async fn the_app_sees_identity_headers_and_never_spoofed_ones() {
    let Some(s) = setup().await else { return };
    let (http, _) = browser(&s);
    let spoof = |rb: reqwest::RequestBuilder| {
        rb.header("Remote-User", "mallory")
            .header("Remote-Email", "mallory@evil.example")
            .header("Remote-Groups", "admins")
            .header("Remote-Name", "Mallory")
    };
    // Bypassed: forwarded without a session, and without the client's identity.
    let e = echo(spoof(http.get(format!("{}/public/info", s.app))).send().await.unwrap()).await;
    for h in ["remote-user", "remote-email", "remote-groups", "remote-name"] {
        assert!(e["headers"].get(h).is_none(), "{h} in {e}");
    }

    api_login(&http, &s, ALICE).await;
    let e = echo(spoof(http.get(format!("{}/app", s.app))).send().await.unwrap()).await;
    assert_eq!(e["headers"]["remote-user"], json!(["alice"]), "{e}");
    assert_eq!(e["headers"]["remote-email"], json!(["alice@example.com"]), "{e}");
    assert_eq!(e["headers"]["remote-groups"], json!(["dev"]), "{e}");
    assert_eq!(e["headers"]["remote-name"], json!(["alice"]), "{e}");
}

#[tokio::test]
async fn a_client_cannot_choose_the_url_that_is_checked() {
    let Some(s) = setup().await else { return };
    // Headers naming the bypassed /public/ while asking for /app or /admin/.
    let spoof = |rb: reqwest::RequestBuilder| {
        rb.header("X-Original-URL", format!("{}/public/x", s.app))
            .header("X-Forwarded-Uri", "/public/x")
            .header("X-Forwarded-Host", format!("{}:{}", s.app_host, s.proxy.port))
            .header("X-Forwarded-Proto", "http")
            .header("X-Forwarded-Method", "GET")
            .header("Accept", "text/html")
    };
    let (anon, _) = browser(&s);
    let r = spoof(anon.get(format!("{}/app", s.app))).send().await.unwrap();
    assert_sign_in(&r, &s, &format!("{}/app", s.app));

    let (alice, _) = browser(&s);
    api_login(&alice, &s, ALICE).await;
    let r = spoof(alice.get(format!("{}/admin/panel", s.app))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.up.hits(), 0, "a spoofed URL let a request through");
}

#[tokio::test]
async fn deny_and_group_rules_answer_403() {
    let Some(s) = setup().await else { return };
    let (anon, _) = browser(&s);
    let r = navigate(&anon, &format!("{}/blocked/x", s.app)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "deny needs no login to refuse");

    let (alice, _) = browser(&s);
    api_login(&alice, &s, ALICE).await;
    for path in ["/admin/panel", "/blocked/x"] {
        let r = alice.get(format!("{}{path}", s.app)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "alice {path}");
    }
    assert_eq!(s.up.hits(), 0);

    let (bob, _) = browser(&s);
    api_login(&bob, &s, BOB).await;
    let e = echo(bob.get(format!("{}/admin/panel", s.app)).send().await.unwrap()).await;
    assert_eq!(e["headers"]["remote-user"], json!(["bob"]), "{e}");
    let r = bob.get(format!("{}/blocked/x", s.app)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.up.hits(), 1);
}

#[tokio::test]
async fn logout_on_the_portal_ends_access_to_the_app() {
    let Some(s) = setup().await else { return };
    let (http, jar) = browser(&s);
    api_login(&http, &s, ALICE).await;
    let app = format!("{}/app", s.app);
    echo(http.get(&app).send().await.unwrap()).await;
    let hits = s.up.hits();
    let cookies = jar.cookies(&app.parse().unwrap()).expect("the session cookie reaches the app's host");
    let cookies = cookies.to_str().unwrap().to_string();
    assert!(cookies.contains("portcullis_session="), "{cookies}");

    let r = http
        .post(format!("{}/_auth/logout", s.portal))
        .header("Origin", &s.portal)
        .header("Accept", "text/html")
        .form(&[("logout", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let r = navigate(&http, &app).await;
    assert_sign_in(&r, &s, &app);
    // Dead server-side too: the old cookie, replayed, gets nowhere.
    let (other, _) = browser(&s);
    let r = other.get(&app).header("Cookie", &cookies).header("Accept", "text/html").send().await.unwrap();
    assert_sign_in(&r, &s, &app);
    assert_eq!(s.up.hits(), hits, "nothing reached the app after logout");
}
