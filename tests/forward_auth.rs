//! Forward-auth behind real nginx, Traefik and Caddy, using the configs shipped
//! in deploy/: an unauthenticated browser is sent to the login page and back to
//! the exact URL it asked for; the app sees the identity headers and never
//! client-sent copies; bypass, deny and group rules hold; logout ends access;
//! and with `session.cookie_domain` one login on the portal host serves every
//! subdomain (single sign-on). Every scenario runs against each proxy.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::cookie::CookieStore;
use serde_json::{Value, json};
use support::eventually::{PATIENCE, eventually};
use support::proxies::{Launch, Proxy, ProxyProcess};
use support::upstream::Upstream;
use support::{Gateway, SECRET, assert_eventually, client, form_field, write_users};

const ALICE: (&str, &str) = ("alice", "alice-password-1");
const BOB: (&str, &str) = ("bob", "bob-password-1");

/// A path with a query whose parameters must all survive the trip through `rd`.
const DEEP_PATH: &str = "/app/report?x=1&y=a%2Fb&z=%C3%A9";

/// The names used for single sign-on: the portal and an app under one parent
/// domain, and a host outside it. All resolve to 127.0.0.1.
const SSO_PARENT: &str = "corp.localtest";
const PORTAL_HOST: &str = "auth.corp.localtest";
const APP_HOST: &str = "app.corp.localtest";
const FOREIGN_HOST: &str = "evil.localtest";
const LOOKALIKE_HOST: &str = "app.corp.localtest.evil.localtest";
/// A host every request to which is denied (written with a trailing dot, it
/// must stay denied).
const BLOCKED_HOST: &str = "blocked.localtest";

struct Setup {
    proxy: ProxyProcess,
    up: Upstream,
    /// The public origin of the portal (the proxy's own origin, or the SSO portal host's).
    portal: String,
    gw: Gateway,
    _users: tempfile::TempDir,
}

/// Alice (group dev) and Bob (group admins); `/public/` bypasses, `/admin/` is
/// for admins only, `/blocked/` is denied to everyone, everything else needs a
/// password. With `sso`, the portal lives at PORTAL_HOST and its cookie covers
/// SSO_PARENT.
async fn setup(kind: Proxy, sso: bool) -> Option<Setup> {
    let bin = kind.program()?;
    let up = Upstream::start().await;
    let users_dir = tempfile::tempdir().unwrap();
    let users = users_dir.path().join("users.toml");
    write_users(
        &users,
        &[(ALICE.0, "alice@example.com", ALICE.1, &["dev"]), (BOB.0, "bob@example.com", BOB.1, &["admins", "dev"])],
    );
    // public_url names the proxy's port, so that port is chosen first; the
    // gateway binds port 0 and the proxy is pointed at the address it reports.
    // If the proxy's port is taken before the proxy binds it, both start over.
    let mut started = None;
    for _ in 0..10 {
        let port = support::free_port();
        let (portal, sso_config) = if sso {
            (
                format!("http://{PORTAL_HOST}:{port}"),
                format!(
                    "allowed_redirect_domains = [\"*.{SSO_PARENT}\"]\n[session]\ncookie_domain = \"{SSO_PARENT}\"\n"
                ),
            )
        } else {
            (format!("http://127.0.0.1:{port}"), String::new())
        };
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
public_url = "{portal}"
metrics_listen = "127.0.0.1:0"
[[upstream]]
url = "{up}"
[auth]
secret = "{SECRET}"
users_file = "{users}"
{sso_config}
[access_control]
default_policy = "one_factor"
[[access_control.rules]]
path = "^/dav/"
policy = "two_factor"
allow_tokens = true
[[access_control.rules]]
path = "^/public/"
policy = "bypass"
[[access_control.rules]]
path = "^/blocked/"
policy = "deny"
[[access_control.rules]]
domain = ["{BLOCKED_HOST}"]
policy = "deny"
[[access_control.rules]]
path = "^/admin/"
groups = ["admins"]
policy = "one_factor"
[[access_control.rules]]
path = "^/admin/"
policy = "deny"
"#,
            up = up.url(),
            users = users.display(),
        );
        let gw = Gateway::start_in(tempfile::tempdir().unwrap(), &config, &[]);
        if let Launch::Up(proxy) = kind.launch(&bin, port, &gw.addr, &up.addr.to_string()) {
            started = Some((proxy, portal, gw));
            break;
        }
    }
    let (proxy, portal, gw) = started.expect("ten free ports in a row were taken before the proxy could bind them");
    // Proxies may accept connections before their routes are loaded.
    assert_eventually!(
        within std::time::Duration::from_secs(15),
        client().get(proxy.url("/_auth/healthz")).send().await.is_ok_and(|r| r.status() == 200),
        "{} never routed to the gateway",
        proxy.name
    );
    Some(Setup { proxy, up, portal, gw, _users: users_dir })
}

/// A browser-like client: keeps cookies by domain (readable through `jar`),
/// follows no redirects, and resolves the *.localtest names to loopback.
fn browser(port: u16) -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    support::crypto();
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .timeout(std::time::Duration::from_secs(30));
    for host in [PORTAL_HOST, APP_HOST, FOREIGN_HOST, LOOKALIKE_HOST] {
        b = b.resolve(host, loopback);
    }
    (b.build().expect("client"), jar)
}

/// A top-level navigation, as a browser sends it.
async fn navigate(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.get(url).header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8").send().await.unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// The `rd` parameter of a login URL, decoded.
fn rd_of(login_url: &str) -> Option<String> {
    let u = url::Url::parse(login_url).ok()?;
    u.query_pairs().find(|(k, _)| k == "rd").map(|(_, v)| v.into_owned())
}

/// Asserts `r` sends a browser to the portal's login page with `rd` = `original`.
fn assert_login_redirect(r: &reqwest::Response, portal: &str, original: &str, name: &str) {
    assert_eq!(r.status(), StatusCode::FOUND, "{name}: {original}");
    let loc = location(r);
    assert!(loc.starts_with(&format!("{portal}/_auth/login?")), "{name}: {loc}");
    assert_eq!(rd_of(&loc).as_deref(), Some(original), "{name}: {loc}");
}

/// Signs in with the HTML form through the proxy; returns the 303's Location.
async fn form_login(http: &reqwest::Client, portal: &str, who: (&str, &str), rd: &str) -> reqwest::Response {
    let r = http
        .post(format!("{portal}/_auth/login"))
        .header("Origin", portal)
        .form(&[("username_or_email", who.0), ("password", who.1), ("rd", rd)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "login as {}", who.0);
    r
}

/// Signs in with the JSON API through the proxy (no code needed: one_factor).
async fn api_login(http: &reqwest::Client, s: &Setup, who: (&str, &str)) {
    let r = http
        .post(format!("{}/_auth/api/send-login-otp", s.portal))
        .header("Origin", &s.portal)
        .json(&json!({"username_or_email": who.0, "password": who.1}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{}: {v}", s.proxy.name);
    assert_eq!(v["otp_required"], false, "{}: {v}", s.proxy.name);
}

async fn echo(r: reqwest::Response, name: &str) -> Value {
    assert_eq!(r.status(), StatusCode::OK, "{name}");
    r.json().await.unwrap_or_else(|e| panic!("{name}: the app's echo is not JSON: {e}"))
}

/// Sends `head` (request line and headers) on a raw socket to the proxy and
/// returns the status: HTTP clients normalise paths and hosts before sending,
/// and these requests must arrive exactly as an attacker would write them.
async fn raw_status(port: u16, head: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The session cookie (`name=value`) of a browser logged in through the proxy.
fn session_of(jar: &reqwest::cookie::Jar, url: &str) -> String {
    let all = jar.cookies(&url.parse().unwrap()).expect("cookies");
    all.to_str()
        .unwrap()
        .split("; ")
        .find(|c| c.starts_with("portcullis_session="))
        .expect("a session cookie")
        .to_owned()
}

// ---- scenarios, each run against every proxy ----

/// An access token for `who`, made through the proxy: a one-factor session
/// steps up with the code printed on the gateway's console, then asks.
async fn token_of(s: &Setup, who: (&str, &str)) -> String {
    let (http, _) = browser(s.proxy.port);
    api_login(&http, s, who).await;
    let post = |path: &str, body: Value| {
        http.post(format!("{}/_auth/api/{path}", s.portal)).header("Origin", &s.portal).json(&body).send()
    };
    let printed = s.gw.stdout().len();
    assert_eq!(post("step-up", json!({})).await.unwrap().status(), StatusCode::OK);
    let code =
        eventually("a code on the console", PATIENCE, async || support::find_code(&s.gw.stdout()[printed..], 6)).await;
    assert_eq!(post("verify-login-otp", json!({"otp_code": code})).await.unwrap().status(), StatusCode::OK);
    let r = post("tokens", json!({"name": "client", "password": who.1})).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", s.proxy.name);
    r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

async fn a_token_signs_requests_where_the_rule_takes_tokens(kind: Proxy) {
    use base64::Engine as _;
    let Some(s) = setup(kind, false).await else { return };
    let name = s.proxy.name;
    let token = token_of(&s, ALICE).await;
    let basic = |pw: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("alice:{pw}")));
    for auth in [format!("Bearer {token}"), basic(&token)] {
        let e =
            echo(client().get(s.proxy.url("/dav/cal")).header("Authorization", auth).send().await.unwrap(), name).await;
        assert_eq!(e["headers"]["remote-user"], json!(["alice"]), "{name}: {e}");
        assert_eq!(e["headers"]["remote-auth-method"], json!(["token"]), "{name}: {e}");
        assert!(e["headers"].get("authorization").is_none(), "{name}: the token reached the app: {e}");
    }
    // Elsewhere, no token is anyone; the password is never one.
    let r = client().get(s.proxy.url("/app")).header("Authorization", format!("Bearer {token}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
    let r = client().get(s.proxy.url("/dav/cal")).header("Authorization", basic(ALICE.1)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
    let challenge = r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(challenge.starts_with("Basic realm="), "{name}: a client is invited to send its token: {challenge:?}");
    // A session's request keeps the application's own Authorization.
    let (http, _) = browser(s.proxy.port);
    api_login(&http, &s, ALICE).await;
    let e =
        echo(http.get(s.proxy.url("/app")).header("Authorization", "Bearer app-own").send().await.unwrap(), name).await;
    assert_eq!(e["headers"]["authorization"], json!(["Bearer app-own"]), "{name}: {e}");
    assert_eq!(e["headers"]["remote-auth-method"], json!(["session"]), "{name}: {e}");
}

async fn unauthenticated_browser_comes_back_to_the_exact_url(kind: Proxy) {
    let Some(s) = setup(kind, false).await else { return };
    let name = s.proxy.name;
    let (http, _) = browser(s.proxy.port);
    let original = s.proxy.url(DEEP_PATH);

    let r = navigate(&http, &original).await;
    assert_login_redirect(&r, &s.portal, &original, name);
    assert_eq!(s.up.hits(), 0, "{name}: nothing reached the app");

    // The login page (through the proxy) accepted rd and carries it in its form.
    let r = navigate(&http, &location(&r)).await;
    assert_eq!(r.status(), StatusCode::OK, "{name}");
    let page = r.text().await.unwrap();
    assert_eq!(form_field(&page, "rd").as_deref(), Some(original.as_str()), "{name}");

    // Signing in sends the browser back there, and the app gets the full URL.
    let r = form_login(&http, &s.portal, ALICE, &original).await;
    assert_eq!(location(&r), original, "{name}");
    let e = echo(navigate(&http, &original).await, name).await;
    assert_eq!(e["path"], DEEP_PATH, "{name}: {e}");
    assert_eq!(e["headers"]["remote-user"], json!(["alice"]), "{name}: {e}");
}

async fn app_sees_identity_headers_and_never_spoofed_ones(kind: Proxy) {
    let Some(s) = setup(kind, false).await else { return };
    let name = s.proxy.name;
    let (http, _) = browser(s.proxy.port);
    let spoof = |rb: reqwest::RequestBuilder| {
        rb.header("Remote-User", "mallory")
            .header("Remote-Email", "mallory@evil.example")
            .header("Remote-Groups", "admins")
            .header("Remote-Name", "Mallory")
    };

    // A bypassed route is forwarded without a session: the spoofed identity must not ride along.
    let e = echo(spoof(http.get(s.proxy.url("/public/info"))).send().await.unwrap(), name).await;
    for h in ["remote-user", "remote-email", "remote-groups", "remote-name"] {
        assert!(e["headers"].get(h).is_none(), "{name}: {h} in {e}");
    }

    api_login(&http, &s, ALICE).await;
    let e = echo(spoof(http.get(s.proxy.url("/app"))).send().await.unwrap(), name).await;
    assert_eq!(e["headers"]["remote-user"], json!(["alice"]), "{name}: {e}");
    assert_eq!(e["headers"]["remote-email"], json!(["alice@example.com"]), "{name}: {e}");
    assert_eq!(e["headers"]["remote-groups"], json!(["dev"]), "{name}: {e}");
    // Alice has no display name: her username stands in, not Mallory's.
    assert_eq!(e["headers"]["remote-name"], json!(["alice"]), "{name}: {e}");
}

async fn client_cannot_choose_the_url_that_is_checked(kind: Proxy) {
    let Some(s) = setup(kind, false).await else { return };
    let name = s.proxy.name;
    // Every header a proxy uses to tell Portcullis what is being asked for,
    // pointing at the bypassed /public/ while the request is for /app or /admin/.
    let spoof = |rb: reqwest::RequestBuilder| {
        rb.header("X-Original-URL", s.proxy.url("/public/x"))
            .header("X-Original-Method", "GET")
            .header("X-Forwarded-Uri", "/public/x")
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Host", format!("127.0.0.1:{}", s.proxy.port))
            .header("X-Forwarded-Proto", "http")
            .header("Accept", "text/html")
    };
    let (anon, _) = browser(s.proxy.port);
    let r = spoof(anon.get(s.proxy.url("/app"))).send().await.unwrap();
    assert_login_redirect(&r, &s.portal, &s.proxy.url("/app"), name);
    let (alice, _) = browser(s.proxy.port);
    api_login(&alice, &s, ALICE).await;
    let r = spoof(alice.get(s.proxy.url("/admin/panel"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}");
    assert_eq!(s.up.hits(), 0, "{name}: a spoofed URL let a request through");
}

async fn bypass_deny_and_group_rules_hold(kind: Proxy) {
    let Some(s) = setup(kind, false).await else { return };
    let name = s.proxy.name;
    let (anon, _) = browser(s.proxy.port);

    // Anonymous: bypass passes, deny refuses outright, the group rule asks who you are.
    let r = anon.get(s.proxy.url("/public/info")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{name}");
    assert_eq!(s.up.hits(), 1, "{name}");
    let r = navigate(&anon, &s.proxy.url("/blocked/x")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}");
    let r = navigate(&anon, &s.proxy.url("/admin/panel")).await;
    assert_login_redirect(&r, &s.portal, &s.proxy.url("/admin/panel"), name);
    assert_eq!(s.up.hits(), 1, "{name}: refused requests never reach the app");

    // Alice is not an admin: the group rule does not match and the catch-all denies.
    let (alice, _) = browser(s.proxy.port);
    api_login(&alice, &s, ALICE).await;
    let r = alice.get(s.proxy.url("/admin/panel")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}");
    let r = alice.get(s.proxy.url("/blocked/x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}");
    assert_eq!(s.up.hits(), 1, "{name}");

    // Bob is in admins: the group rule lets him in. The plain deny holds for him too.
    let (bob, _) = browser(s.proxy.port);
    api_login(&bob, &s, BOB).await;
    let e = echo(bob.get(s.proxy.url("/admin/panel")).send().await.unwrap(), name).await;
    assert_eq!(e["headers"]["remote-user"], json!(["bob"]), "{name}: {e}");
    assert_eq!(e["headers"]["remote-groups"], json!(["admins,dev"]), "{name}: {e}");
    let r = bob.get(s.proxy.url("/blocked/x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}");
    assert_eq!(s.up.hits(), 2, "{name}");
}

async fn logout_through_the_proxy_ends_access(kind: Proxy) {
    let Some(s) = setup(kind, false).await else { return };
    let name = s.proxy.name;
    let (http, jar) = browser(s.proxy.port);
    api_login(&http, &s, ALICE).await;
    let app = s.proxy.url("/app");
    echo(http.get(&app).send().await.unwrap(), name).await;
    let hits = s.up.hits();
    let cookies = jar.cookies(&app.parse().unwrap()).expect("session cookie");
    let cookies = cookies.to_str().unwrap().to_string();
    assert!(cookies.contains("portcullis_session="), "{name}: {cookies}");

    let r = http
        .post(format!("{}/_auth/logout", s.portal))
        .header("Origin", &s.portal)
        .header("Accept", "text/html")
        .form(&[("logout", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{name}");

    // The same browser is asked to log in again; an API call gets the 401
    // behind every proxy (a script cannot follow a redirect to a login page).
    let r = navigate(&http, &app).await;
    assert_login_redirect(&r, &s.portal, &app, name);
    let r = http.get(&app).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
    if name == "nginx" {
        let v: Value = r.json().await.unwrap();
        assert_eq!(v, json!({"success": false, "error": "authentication required"}), "{name}");
    }

    // The session is dead server-side: a client that kept the old cookie gets nowhere either.
    let r = client().get(&app).header("Cookie", &cookies).header("Accept", "text/html").send().await.unwrap();
    assert_login_redirect(&r, &s.portal, &app, name);
    assert_eq!(s.up.hits(), hits, "{name}: nothing reached the app after logout");
}

async fn one_login_on_the_portal_host_serves_its_subdomains(kind: Proxy) {
    let Some(s) = setup(kind, true).await else { return };
    let name = s.proxy.name;
    let port = s.proxy.port;
    let (http, jar) = browser(port);
    let original = format!("http://{APP_HOST}:{port}{DEEP_PATH}");

    // The app's host sends the browser to the portal host, with rd back to the app.
    let r = navigate(&http, &original).await;
    assert_login_redirect(&r, &s.portal, &original, name);
    let r = navigate(&http, &location(&r)).await;
    assert_eq!(r.status(), StatusCode::OK, "{name}");
    assert_eq!(form_field(&r.text().await.unwrap(), "rd").as_deref(), Some(original.as_str()), "{name}");

    // Login on the portal host: the cookie is for the parent domain, rd is honoured.
    let r = form_login(&http, &s.portal, ALICE, &original).await;
    let set_cookie: Vec<_> = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(
        set_cookie.iter().any(|c| c.starts_with("portcullis_session=") && c.contains(&format!("Domain={SSO_PARENT}"))),
        "{name}: {set_cookie:?}"
    );
    assert_eq!(location(&r), original, "{name}");
    let on_app = jar.cookies(&original.parse().unwrap()).map(|v| v.to_str().unwrap().to_string());
    assert!(
        on_app.is_some_and(|c| c.contains("portcullis_session=")),
        "{name}: the browser sends the cookie to the app"
    );
    let foreign: url::Url = format!("http://{FOREIGN_HOST}:{port}/").parse().unwrap();
    assert!(jar.cookies(&foreign).is_none(), "{name}: but not outside the parent domain");

    // The app's host now lets the browser through, with its identity.
    let e = echo(navigate(&http, &original).await, name).await;
    assert_eq!(e["path"], DEEP_PATH, "{name}: {e}");
    assert_eq!(e["headers"]["remote-user"], json!(["alice"]), "{name}: {e}");
    assert_eq!(e["headers"]["remote-email"], json!(["alice@example.com"]), "{name}: {e}");
}

async fn rd_outside_the_allowed_domains_ends_on_the_account_page(kind: Proxy) {
    let Some(s) = setup(kind, true).await else { return };
    let name = s.proxy.name;
    let port = s.proxy.port;
    let account = format!("{}/_auth/account", s.portal);
    for foreign in [format!("http://{FOREIGN_HOST}:{port}/steal"), format!("http://{LOOKALIKE_HOST}:{port}/steal")] {
        // The login page does not even carry it.
        let (http, _) = browser(port);
        let login = format!(
            "{}/_auth/login?rd={}",
            s.portal,
            url::form_urlencoded::byte_serialize(foreign.as_bytes()).collect::<String>()
        );
        let r = navigate(&http, &login).await;
        assert_eq!(r.status(), StatusCode::OK, "{name}");
        assert_eq!(form_field(&r.text().await.unwrap(), "rd").as_deref(), Some(""), "{name}: {foreign}");
        // Posted anyway, the login succeeds and lands on the account page.
        let r = form_login(&http, &s.portal, ALICE, &foreign).await;
        assert_eq!(location(&r), account, "{name}: {foreign}");
        let r = navigate(&http, &account).await;
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }
    assert_eq!(s.up.hits(), 0, "{name}");
}

async fn paths_and_hosts_are_checked_in_the_form_the_app_reads(kind: Proxy) {
    let Some(s) = setup(kind, false).await else { return };
    let name = s.proxy.name;
    let port = s.proxy.port;
    let (alice, jar) = browser(port);
    api_login(&alice, &s, ALICE).await;
    let cookie = session_of(&jar, &s.proxy.url("/app"));
    let host = format!("127.0.0.1:{port}");
    // Dot segments, escapes and doubled slashes that resolve to a denied path.
    for path in ["/public/../blocked/x", "/public/%2e%2e/blocked/x", "/%62locked/x", "//blocked/x", "/./blocked/x"] {
        let status = raw_status(port, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}")).await;
        assert!((400..500).contains(&status), "{name}: {path} answered {status}");
    }
    // A host with a trailing dot or other case is the denied host.
    for h in [format!("{BLOCKED_HOST}.:{port}"), format!("Blocked.LocalTest:{port}")] {
        let status = raw_status(port, &format!("GET /x HTTP/1.1\r\nHost: {h}\r\nCookie: {cookie}")).await;
        assert!((400..500).contains(&status), "{name}: Host {h} answered {status}");
    }
    // A Host that ends in `#`, `?` or `\` cannot move the checked path.
    for h in [format!("{host}#"), format!("{host}?"), format!("{host}\\")] {
        let status = raw_status(port, &format!("GET /blocked/panel HTTP/1.1\r\nHost: {h}\r\nCookie: {cookie}")).await;
        assert!(status != 200, "{name}: Host {h} reached the app");
    }
    assert_eq!(s.up.hits(), 0, "{name}: nothing reached the app");
    // The normal spelling still works.
    echo(alice.get(s.proxy.url("/app")).send().await.unwrap(), name).await;
}

async fn only_browsers_are_redirected_to_log_in(kind: Proxy) {
    let Some(s) = setup(kind, false).await else { return };
    let name = s.proxy.name;
    let (anon, _) = browser(s.proxy.port);
    let app = s.proxy.url("/app");
    let r = anon.get(&app).header("Accept", "text/html").header("X-Requested-With", "XMLHttpRequest").send().await;
    assert_eq!(r.unwrap().status(), StatusCode::UNAUTHORIZED, "{name}: XHR");
    let r = anon.get(&app).header("Accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}: an API call");
    let r = navigate(&anon, &app).await;
    assert_login_redirect(&r, &s.portal, &app, name);
    let r = anon.post(&app).header("Accept", "text/html").form(&[("a", "1")]).send().await.unwrap();
    if name == "nginx" {
        // nginx's auth_request turns only a navigation's 401 into a redirect.
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}: a form post");
    } else {
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{name}: a form post is sent to log in with 303");
        assert_eq!(rd_of(&location(&r)).as_deref(), Some(app.as_str()), "{name}");
    }
    assert_eq!(s.up.hits(), 0, "{name}");
}

/// One module per proxy, each running every scenario: `nginx::logout_through_the_proxy_ends_access`.
macro_rules! behind {
    ($($proxy:ident: $kind:ident),*) => {$(
        mod $proxy {
            use super::Proxy;

            #[tokio::test]
            async fn unauthenticated_browser_comes_back_to_the_exact_url() {
                super::unauthenticated_browser_comes_back_to_the_exact_url(Proxy::$kind).await;
            }

            #[tokio::test]
            async fn app_sees_identity_headers_and_never_spoofed_ones() {
                super::app_sees_identity_headers_and_never_spoofed_ones(Proxy::$kind).await;
            }

            #[tokio::test]
            async fn client_cannot_choose_the_url_that_is_checked() {
                super::client_cannot_choose_the_url_that_is_checked(Proxy::$kind).await;
            }

            #[tokio::test]
            async fn bypass_deny_and_group_rules_hold() {
                super::bypass_deny_and_group_rules_hold(Proxy::$kind).await;
            }

            #[tokio::test]
            async fn logout_through_the_proxy_ends_access() {
                super::logout_through_the_proxy_ends_access(Proxy::$kind).await;
            }

            #[tokio::test]
            async fn one_login_on_the_portal_host_serves_its_subdomains() {
                super::one_login_on_the_portal_host_serves_its_subdomains(Proxy::$kind).await;
            }

            #[tokio::test]
            async fn paths_and_hosts_are_checked_in_the_form_the_app_reads() {
                super::paths_and_hosts_are_checked_in_the_form_the_app_reads(Proxy::$kind).await;
            }

            #[tokio::test]
            async fn only_browsers_are_redirected_to_log_in() {
                super::only_browsers_are_redirected_to_log_in(Proxy::$kind).await;
            }

            #[tokio::test]
            async fn a_token_signs_requests_where_the_rule_takes_tokens() {
                super::a_token_signs_requests_where_the_rule_takes_tokens(Proxy::$kind).await;
            }

            #[tokio::test]
            async fn rd_outside_the_allowed_domains_ends_on_the_account_page() {
                super::rd_outside_the_allowed_domains_ends_on_the_account_page(Proxy::$kind).await;
            }
        }
    )*};
}

behind!(nginx: Nginx, traefik: Traefik, caddy: Caddy);

#[tokio::test]
async fn verify_ignores_forwarded_headers_from_untrusted_peers() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = support::empty_users(dir.path());
    let config = support::base_config(&up.url(), "two_factor", &users)
        .replace("[server]\n", "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n");
    let gw = Gateway::start_in(dir, &config, &[]);
    let r =
        client().get(gw.url("/_auth/verify")).header("X-Original-URL", "http://app.example.com/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn verify_tells_nginx_where_a_browser_logs_in() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = support::empty_users(dir.path());
    let gw = Gateway::start_in(dir, &support::base_config(&up.url(), "one_factor", &users), &[]);
    let original = "http://127.0.0.1/app?x=1&y=2";
    let ask = |accept: &'static str| {
        client()
            .get(gw.url("/_auth/verify?mode=nginx"))
            .header("X-Original-URL", original)
            .header("Accept", accept)
            .send()
    };
    // A browser navigation: 401 (all nginx's auth_request understands) naming the login page.
    let r = ask("text/html").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rd_of(&location(&r)).as_deref(), Some(original), "{}", location(&r));
    assert!(location(&r).starts_with("http://127.0.0.1/_auth/login?rd="), "{}", location(&r));
    // An API call: a plain 401.
    let r = ask("application/json").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("location").is_none());
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn verify_refuses_to_guess_between_nginx_and_forwarded_headers() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = support::empty_users(dir.path());
    let gw = Gateway::start_in(dir, &support::base_config(&up.url(), "bypass", &users), &[]);
    let both = |mode: &str| {
        client()
            .get(gw.url(&format!("/_auth/verify{mode}")))
            .header("X-Original-URL", "http://127.0.0.1/")
            .header("X-Forwarded-Uri", "/")
            .header("X-Forwarded-Host", "127.0.0.1")
            .send()
    };
    // One of the two came from the client, and nothing says which.
    assert_eq!(both("").await.unwrap().status(), StatusCode::BAD_REQUEST);
    // Named by the mode, the proxy's own headers decide.
    for mode in ["?mode=nginx", "?mode=traefik", "?mode=caddy"] {
        assert_eq!(both(mode).await.unwrap().status(), StatusCode::OK, "{mode}");
    }
}

/// nginx with the shipped files, Portcullis not running: the auth check cannot
/// be made, so the request is refused (fail closed), with the page
/// portcullis.conf sets up for it instead of nginx's bare 500; the login
/// pages say the same instead of a bare 502.
#[tokio::test]
async fn behind_nginx_a_portcullis_that_is_down_gets_a_503_page_and_nothing_reaches_the_app() {
    let up = Upstream::start().await;
    let nowhere = format!("127.0.0.1:{}", support::free_port());
    let Some(nginx) = support::proxies::nginx(&nowhere, &up.addr.to_string()) else { return };
    let http = client();
    for path in ["/app", "/_auth/login"] {
        let r = http.get(nginx.url(path)).header("Accept", "text/html").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(r.headers()["retry-after"], "30", "{path}");
        let page = r.text().await.unwrap();
        assert!(page.contains("Sign-in is unavailable"), "{path}: {page}");
    }
    assert_eq!(up.hits(), 0, "nothing reached the app");
}
