//! What an operator meets: `portcullis unlock NAME`, `unlock --ip ADDR` and
//! `sessions revoke NAME` against a running gateway on either store (through
//! the admin endpoint of the metrics listener), the endpoint refusing anyone
//! else, metrics series that exist from the start, terminal-safe output, and
//! the small answers (readiness, the account page, the users file's
//! permissions).

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::assert_eventually;
use support::flow::{Backend, Harness, Options, PASSWORD};

support::on_both_stores!(
    unlock_and_session_revoke_reach_the_running_gateway_on_any_store,
    token_list_and_revoke_reach_the_running_gateway_on_any_store,
);

/// The harness's config as an operator's file would have it: naming the
/// metrics listener's real address (the harness binds port 0).
fn operator_config(h: &Harness) -> PathBuf {
    let metrics = h.gw.metrics_addr.as_ref().expect("metrics listener");
    let text = h.config.replace("metrics_listen = \"127.0.0.1:0\"", &format!("metrics_listen = \"{metrics}\""));
    let path = h.gw.dir.path().join("operator.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `portcullis ARGS --config FILE`: exit code, stdout, stderr.
fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(support::binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

async fn attempt(h: &Harness, name: &str, password: &str, ip: &str) -> StatusCode {
    support::client()
        .post(h.url("/_auth/api/send-login-otp"))
        .header("Origin", &h.origin)
        .header("X-Forwarded-For", ip)
        .json(&json!({"username_or_email": name, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

fn audited(h: &Harness, event: &str) -> Vec<String> {
    h.gw.log()
        .lines()
        .filter(|l| l.contains("\"target\":\"security\"") && l.contains(&format!("\"event\":\"{event}\"")))
        .map(str::to_owned)
        .collect()
}

async fn unlock_and_session_revoke_reach_the_running_gateway_on_any_store(b: Backend) {
    let o = Options {
        policy: "one_factor",
        lockout: Some("ip_failures = \"3/15m\"\naccount_failures = \"3/1h\""),
        ..Default::default()
    };
    let Some(h) = Harness::start(b, o).await else { return };
    let config = operator_config(&h);

    // An account lock, from three addresses.
    for i in 0..3 {
        assert_eq!(attempt(&h, "testuser", "wrong", &format!("198.51.100.{i}")).await, 400);
    }
    assert_eq!(attempt(&h, "testuser", PASSWORD, "198.51.100.9").await, 403, "locked");
    let (code, out, err) = cli(&config, &["unlock", "testuser"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "testuser: unlocked");
    assert_eq!(attempt(&h, "testuser", PASSWORD, "198.51.100.9").await, 200, "unlocked at once");
    let (code, out, _) = cli(&config, &["unlock", "testuser"]);
    assert_eq!(code, 0);
    assert!(out.contains("was not locked"), "{out}");

    // An address banned after three failures (names that do not exist).
    for name in ["x1", "x2", "x3"] {
        assert_eq!(attempt(&h, name, "wrong", "203.0.113.9").await, 400);
    }
    assert_eq!(attempt(&h, "bob", "bobs-password-1", "203.0.113.9").await, 429, "banned");
    let (code, out, err) = cli(&config, &["unlock", "--ip", "203.0.113.9"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("203.0.113.9: ") && out.contains("rate windows cleared"), "{out}");
    assert_eq!(attempt(&h, "bob", "bobs-password-1", "203.0.113.9").await, 200, "the address may log in again");
    let (code, _, err) = cli(&config, &["unlock", "--ip", "not-an-address"]);
    assert_eq!(code, 1, "a bad address is a usage error: {err}");
    let (code, _, err) = cli(&config, &["unlock"]);
    assert_eq!(code, 1, "a name or --ip is needed: {err}");

    // Every session of a user, ended from the command line.
    let c = h.login_client("bob", "bobs-password-1", "curl/8").await;
    assert_eq!(c.get(h.url("/app")).send().await.unwrap().status(), 200);
    let (code, out, err) = cli(&config, &["sessions", "revoke", "bob"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("bob: 2 session(s) revoked"), "{out}");
    assert_eq!(c.get(h.url("/app")).send().await.unwrap().status(), 401);

    // The log is written in the background: wait for the last record first.
    assert!(
        h.gw.wait_for_log(|l| l.contains("by an operator: 2 session(s) ended")).await.is_some(),
        "revocation audited"
    );
    let revoked = audited(&h, "session_revoked");
    assert!(revoked.iter().any(|l| l.contains("\"user\":\"bob\"") && l.contains("operator")), "{revoked:?}");
    assert_eq!(audited(&h, "account_unlocked").len(), 2, "each unlock audited");
    let ip = audited(&h, "ip_unlocked");
    assert!(ip.len() == 1 && ip[0].contains("\"ip\":\"203.0.113.9\""), "{ip:?}");
}

#[tokio::test]
async fn the_admin_endpoint_refuses_requests_without_the_operators_token_or_from_a_browser() {
    let Some(h) = Harness::start(Backend::Memory, Options::default()).await else { return };
    let metrics = h.gw.metrics_addr.clone().expect("metrics listener");
    let url = format!("http://{metrics}/admin/sessions/revoke");
    let http = reqwest::Client::new();
    let body = json!({"name": "bob"});
    let r = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = http.post(&url).bearer_auth("0".repeat(64)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401, "a wrong token");
    let token = portcullis::admin::token(support::SECRET.as_bytes());
    let r = http.post(&url).bearer_auth(&token).header("Origin", "http://evil.example").json(&body).send().await;
    assert_eq!(r.unwrap().status(), 403, "a browser's request is refused whatever it carries");
    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = http.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "the operator's request");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["revoked"], 0, "{v}");
    let metrics_text = reqwest::get(format!("http://{metrics}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics_text.contains("portcullis_"), "/metrics still answers");
}

#[tokio::test]
async fn a_fresh_gateway_exposes_every_labelled_counter_at_zero() {
    let Some(h) = Harness::start(Backend::Memory, Options::default()).await else { return };
    let m = h.metrics().await;
    let zero = |series: &str| {
        let found = m.lines().find(|l| l.starts_with(series));
        assert_eq!(found.map(|l| l.rsplit(' ').next().unwrap_or_default()), Some("0"), "{series} in\n{m}");
    };
    zero("portcullis_auth_attempts_total{result=\"invalid_credentials\",stage=\"password\"}");
    zero("portcullis_auth_attempts_total{result=\"invalid_otp\",stage=\"otp\"}");
    zero("portcullis_auth_attempts_total{result=\"invalid_credentials\",stage=\"recheck\"}");
    zero("portcullis_rate_limited_total{bucket=\"login\"}");
    zero("portcullis_rate_limited_total{bucket=\"resend_cooldown\"}");
    zero("portcullis_otp_sent_total{purpose=\"enable_otp\"}");
    zero("portcullis_forward_auth_decisions_total{decision=\"deny\"}");
    zero(&format!(
        "portcullis_upstream_errors_total{{kind=\"timeout\",upstream=\"{}\"}}",
        h.up.url().trim_start_matches("http://")
    ));
    zero("portcullis_store_errors_total{op=\"touch_session\"}");
    zero("portcullis_mail_failures_total");
}

#[tokio::test]
async fn audit_and_user_list_print_control_characters_escaped() {
    let Some(h) = Harness::start(Backend::Redis, Options::default()).await else { return };
    let config = operator_config(&h);
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2Jmallory\u{9b}31m";
    assert_eq!(attempt(&h, evil, "wrong", "192.0.2.5").await, 400);
    let (code, out, err) = cli(&config, &["audit", "--limit", "5"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(['\u{1b}', '\u{7}', '\u{9b}']), "raw control characters on the terminal: {out:?}");
    assert!(out.contains("\\x1b]0;pwned\\x07\\x1b[2Jmallory\\u{9b}31m"), "{out}");

    let users = h.gw.dir.path().join("listed.toml");
    std::fs::write(
        &users,
        "[users.eve]\nemail = \"eve\\u001b[8m@example.com\"\npassword = \"x\"\ngroups = [\"a\\u0007\"]\n",
    )
    .unwrap();
    let out = Command::new(support::binary())
        .args(["user", "list", "--users-file"])
        .arg(&users)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(['\u{1b}', '\u{7}']), "{text:?}");
    assert!(text.contains("eve\\x1b[8m@example.com") && text.contains("a\\x07"), "{text}");
}

#[tokio::test]
async fn readyz_names_no_store_error_to_the_client() {
    let Some(mut h) = Harness::start(Backend::Redis, Options::default()).await else { return };
    h.redis.as_mut().expect("redis").kill();
    let r = h.http.get(h.url("/_auth/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"status": "unavailable", "store": "unavailable"}));
    assert!(h.gw.wait_for_log(|l| l.contains("not ready")).await.is_some(), "the cause is logged instead");
}

#[tokio::test]
async fn the_account_page_shows_no_text_from_its_address() {
    let o = Options { policy: "one_factor", ..Default::default() };
    let Some(h) = Harness::start(Backend::Memory, o).await else { return };
    let c = h.login_client("testuser", PASSWORD, "curl/8").await;
    let page = c
        .get(h.url("/_auth/account?message=Your+account+is+suspended.+Call+555-0100"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(!page.text().await.unwrap().contains("555-0100"), "no text from the query is shown");
}

fn user_add(file: &Path, name: &str) {
    let mut child = Command::new(support::binary())
        .args(["user", "add", name, "--email", &format!("{name}@example.com"), "--users-file"])
        .arg(file)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"a fine password 1\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn the_users_file_is_written_0600_and_an_existing_files_owner_and_mode_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.toml");
    user_add(&fresh, "carol");
    assert_eq!(mode(&fresh), 0o600, "a new users file is readable by its owner only");

    // The Debian package's layout: root-owned, readable by the gateway's group.
    let shared = dir.path().join("shared.toml");
    user_add(&shared, "carol");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
    let am_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    if am_root {
        std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).unwrap();
    }
    let before = std::fs::metadata(&shared).unwrap();
    user_add(&shared, "dave");
    let after = std::fs::metadata(&shared).unwrap();
    assert_eq!(mode(&shared), 0o640, "the group may still read it");
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()), "owner and group kept");
    assert!(std::fs::read_to_string(&shared).unwrap().contains("[users.dave]"));

    // A world-readable file (a container's, read by a user of the image)
    // stays readable: the mode says who reads it, and a writer keeps it.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    user_add(&shared, "erin");
    assert_eq!(mode(&shared), 0o644, "nothing is widened, nor narrowed");
}

#[tokio::test]
async fn text_logs_escape_what_clients_type() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let users = support::empty_users(dir.path());
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, support::base_config("http://127.0.0.1:9", "two_factor", &users)).unwrap();
    let mut child = Command::new(support::binary())
        .args(["--log-format", "text", "serve", "--config"])
        .arg(&config)
        .env_remove("PORTCULLIS_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stderr as written, byte for byte (a stray \r must show).
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let (mut err, stderr) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut err, &mut buf) {
                stderr.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let logged = || String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the gateway starts").unwrap();
        if let Some(a) = line.strip_prefix("portcullis listening on http://") {
            break a.to_owned();
        }
    };
    let forged = "mallory\n2026-12-01T00:00:00Z  INFO security: event=\"success\" username=\"admin\"\r\u{1b}[1A";
    let r = support::client()
        .post(format!("http://{addr}/_auth/api/send-login-otp"))
        .header("Origin", "http://127.0.0.1")
        .json(&json!({"username_or_email": forged, "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eventually!(logged().contains("invalid_credentials"), "the attempt logged");
    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap();
    let log = logged();
    let attempt = log.lines().find(|l| l.contains("invalid_credentials")).unwrap_or_else(|| panic!("{log}"));
    assert!(attempt.contains("mallory\\x0a2026-12-01") && attempt.contains("\\x0d\\x1b[1A"), "{attempt}");
    assert!(!log.lines().any(|l| l.starts_with("2026-12-01T00:00:00Z")), "no forged line:\n{log}");
    assert!(!log.contains(['\u{1b}', '\r']), "{log:?}");
}

/// `portcullis token list|revoke` reach the running gateway, as `unlock` does.
async fn token_list_and_revoke_reach_the_running_gateway_on_any_store(b: Backend) {
    let rules = "[[access_control.rules]]\npath = \"^/dav/\"\npolicy = \"two_factor\"\nallow_tokens = true\n";
    let options = Options { policy: "one_factor", resend_cooldown: "0s", extra: rules.into(), ..Default::default() };
    let Some(h) = Harness::start(b, options).await else { return };
    let c = h.two_factor_client("testuser", PASSWORD, "portcullis tests").await;
    let mut made = Vec::new();
    for name in ["nightly backup", "phone calendar"] {
        let (s, v) = h.post_as(&c, "/_auth/api/tokens", serde_json::json!({"name": name, "password": PASSWORD})).await;
        assert_eq!(s, 201, "{v}");
        made.push((v["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned()));
    }
    let (id, token) = &made[0];
    let config = operator_config(&h);
    let (code, out, err) = cli(&config, &["token", "list", "testuser"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().next().unwrap().starts_with("ID "), "a header row: {out}");
    assert!(out.contains("nightly backup") && out.contains("phone calendar") && out.contains(id.as_str()), "{out}");
    assert!(!out.contains(&token[4 + 22..]), "never the secret: {out}");
    let (code, out, err) = cli(&config, &["token", "revoke", "testuser", id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("Revoked token {id} of testuser")), "{out}");
    let r = support::client().get(h.url("/dav/x")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 401, "revoked at once");
    let (code, _, err) = cli(&config, &["token", "revoke", "testuser", id]);
    assert_eq!(code, 1, "an id that is not the user's is a usage error: {err}");
    let (code, out, _) = cli(&config, &["token", "revoke", "testuser"]);
    assert_eq!(code, 0);
    assert!(out.contains("Revoked 1 access token(s) of testuser"), "{out}");
    let by_operator = |r: &serde_json::Value| {
        r["event"] == "token_revoked" && r["details"].as_str().is_some_and(|d| d.starts_with("by an operator"))
    };
    assert!(h.gw.wait_for_record(by_operator).await.is_some(), "audited with the operator");
}
