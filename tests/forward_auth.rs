//! Forward-auth behind real nginx, Traefik and Caddy, using the configs shipped
//! in deploy/: unauthenticated requests are sent to the login page, logged-in
//! ones reach the app with identity headers, rules can deny or bypass.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::proxies::{self, ProxyProcess};
use support::upstream::Upstream;
use support::{Gateway, SECRET, client, write_users};

struct Setup {
    proxy: ProxyProcess,
    up: Upstream,
    _gw: Gateway,
}

async fn setup(start: fn(&str, &str) -> Option<ProxyProcess>) -> Option<Setup> {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    write_users(&users, &[("alice", "alice@example.com", "alice-password-1", &["dev"])]);
    // The proxy's port must be known for public_url: start the gateway on a fixed
    // free port, then the proxy pointing at it.
    let gw_port = support::free_port();
    let proxy_port_placeholder = "PROXY_ORIGIN";
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{gw_port}"
public_url = "{proxy_port_placeholder}"
metrics_listen = "127.0.0.1:0"
[[upstream]]
url = "{up}"
[auth]
secret = "{SECRET}"
users_file = "{users}"
[access_control]
default_policy = "one_factor"
[[access_control.rules]]
path = "^/public/"
policy = "bypass"
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
    let gw_addr = format!("127.0.0.1:{gw_port}");
    let proxy = start(&gw_addr, &up.addr.to_string())?;
    let config = config.replace(proxy_port_placeholder, &proxy.origin());
    let gw = Gateway::start_in(dir, &config, &[]);
    // Proxies may accept connections before their routes are loaded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = client().get(proxy.url("/_auth/healthz")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{} never routed to the gateway", proxy.name);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Some(Setup { proxy, up, _gw: gw })
}

async fn check_proxy(start: fn(&str, &str) -> Option<ProxyProcess>) {
    let Some(s) = setup(start).await else { return };
    let name = s.proxy.name;
    let http = client();

    // Not logged in: a browser is sent to the login page, with rd back here.
    let r = http.get(s.proxy.url("/app?x=1")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "{name}");
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.contains("/_auth/login?rd="), "{name}: {loc}");
    assert!(loc.contains("%2Fapp") || loc.contains("/app"), "{name}: {loc}");
    assert_eq!(s.up.hits(), 0, "{name}: nothing reached the app");

    // Bypass rule: public pages need no login.
    let r = http.get(s.proxy.url("/public/info")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{name}");

    // Log in through the proxy (the portal lives on the same host).
    let r = http
        .post(s.proxy.url("/_auth/api/send-login-otp"))
        .header("Origin", s.proxy.origin())
        .json(&json!({"username_or_email": "alice", "password": "alice-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{name}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["otp_required"], false, "{name}: {v}");

    let r = http.get(s.proxy.url("/app")).header("Remote-User", "mallory").send().await.unwrap();
    assert_eq!(r.status(), 200, "{name}");
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["remote-user"], json!(["alice"]), "{name}: {echo}");
    assert_eq!(echo["headers"]["remote-groups"], json!(["dev"]), "{name}");
    assert_eq!(echo["headers"]["remote-email"], json!(["alice@example.com"]), "{name}");

    // Logged in, but the rule requires a group alice lacks.
    let r = http.get(s.proxy.url("/admin/panel")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}");
}

#[tokio::test]
async fn nginx_auth_request_protects_the_app() {
    check_proxy(proxies::nginx).await;
}

#[tokio::test]
async fn traefik_forward_auth_protects_the_app() {
    check_proxy(proxies::traefik).await;
}

#[tokio::test]
async fn caddy_forward_auth_protects_the_app() {
    check_proxy(proxies::caddy).await;
}

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
