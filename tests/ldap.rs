//! The LDAP / Active Directory user backend against a real slapd
//! (`support::slapd`: people in two OUs, groups with `member`, a locked
//! account, Active Directory-style entries): logins, groups and disabled
//! accounts, filter injection, lockouts that keep binds within our limits,
//! TLS (ldaps, StartTLS, a wrong CA), a directory that dies or hangs under
//! load and comes back, changes in the directory ending sessions, and
//! `check-config`. Skipped (visibly) without slapd, a failure under
//! `PORTCULLIS_REQUIRE_SERVICES=1`.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::assert_eventually;
use support::eventually::poll_every;
use support::flow::{Backend, Harness, Options};
use support::slapd::{BASE_DN, SERVICE_DN, SERVICE_PASSWORD, Slapd};

/// `[auth]` and `[ldap]` for `slapd`, with `extra` lines added to `[ldap]`.
fn ldap_options(slapd: &Slapd, url: &str, ldap_extra: &str, o: Options) -> Options {
    let _ = slapd;
    Options {
        auth: "backend = \"ldap\"".into(),
        extra: format!(
            "{}\n[ldap]\nurl = \"{url}\"\nbind_dn = \"{SERVICE_DN}\"\nbind_password = \"{SERVICE_PASSWORD}\"\n\
             base_dn = \"{BASE_DN}\"\n{timeout}{ldap_extra}\n",
            o.extra,
            timeout = if ldap_extra.contains("timeout =") { "" } else { "timeout = \"2s\"\n" },
        ),
        ..o
    }
}

async fn gateway(slapd: &Slapd, ldap_extra: &str, o: Options) -> Harness {
    Harness::start(Backend::Memory, ldap_options(slapd, &slapd.url(), ldap_extra, o)).await.expect("gateway")
}

fn one_factor() -> Options {
    Options { policy: "one_factor", ..Default::default() }
}

/// How many binds as a user the gateway has made (its metric).
async fn user_binds(h: &Harness) -> f64 {
    let m = h.metrics().await;
    support::sample(&m, "portcullis_directory_operation_duration_seconds_count", &[("op", "user_bind")])
}

/// What the upstream saw of `c`'s identity.
async fn identity(h: &Harness, c: &reqwest::Client) -> Value {
    let r = c.get(h.url("/app")).header("Accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 200, "the upstream is reached");
    let echo: Value = r.json().await.unwrap();
    echo["headers"].clone()
}

#[tokio::test]
async fn a_directory_user_logs_in_with_an_emailed_code_and_the_upstream_sees_their_groups() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let h = gateway(&slapd, "", Options::default()).await;
    // Names compare as the directory compares them: without case.
    let c = h.login_client("ALICE", "alice-password", "test").await;
    let seen = identity(&h, &c).await;
    assert_eq!(seen["remote-user"], json!(["alice"]));
    assert_eq!(seen["remote-email"], json!(["alice@example.com"]));
    assert_eq!(seen["remote-name"], json!(["Alice Liddell"]));
    assert_eq!(seen["remote-groups"], json!(["admins,dev"]));
    // By e-mail address, from the other OU; the code went to the directory's address.
    let c = h.login_client("bob@EXAMPLE.com", "bob-password", "test").await;
    let seen = identity(&h, &c).await;
    assert_eq!(seen["remote-user"], json!(["bob"]));
    assert_eq!(seen["remote-groups"], json!(["dev"]));
    assert!(h.smtp.messages().iter().any(|m| m.header("To").unwrap_or_default().contains("bob@example.com")));
    // An Active Directory-style entry: groups from memberOf.
    let c = h.login_client("erin", "erin-password", "test").await;
    assert_eq!(identity(&h, &c).await["remote-groups"], json!(["Domain Users"]));
    let m = h.metrics().await;
    assert!(
        support::sample(&m, "portcullis_directory_operation_duration_seconds_count", &[("op", "find_user")]) >= 3.0
    );
    assert_eq!(support::sample(&m, "portcullis_directory_errors_total", &[]), 0.0);
}

#[tokio::test]
async fn a_wrong_password_an_unknown_name_and_an_empty_password_get_the_one_answer() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let h = gateway(&slapd, "", one_factor()).await;
    let binds = user_binds(&h).await;
    let (s, wrong) = h.send_login("alice", "not-her-password").await;
    assert_eq!(s, 400, "{wrong}");
    assert_eq!(user_binds(&h).await, binds + 1.0, "one bind for a wrong password");
    let (s, unknown) = h.send_login("nobody", "alice-password").await;
    assert_eq!((s, &unknown), (StatusCode::BAD_REQUEST, &wrong));
    // An empty password would be an unauthenticated bind, which a directory
    // answers with success: it never reaches the directory.
    let (s, empty) =
        h.post_json("/_auth/api/send-login-otp", json!({"username_or_email": "alice", "password": ""})).await;
    assert_eq!(s, 400, "{empty}");
    assert_eq!(user_binds(&h).await, binds + 1.0, "no bind for an unknown name or an empty password");
    let records = h.gw.security_records();
    assert!(records.iter().any(|r| r["username"] == "alice" && r["event"] == "invalid_credentials"), "audited");
}

#[tokio::test]
async fn locked_and_disabled_directory_accounts_are_refused_like_disabled_file_users() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let h = gateway(&slapd, "disabled_filter = \"(employeeType=suspended)\"", one_factor()).await;
    for (name, why) in [("carol", "nsAccountLock"), ("dave", "userAccountControl 514"), ("frank", "disabled_filter")] {
        let (s, v) = h.send_login(name, &format!("{name}-password")).await;
        assert_eq!(s, 403, "{name} ({why}): {v}");
        assert!(v["error"].as_str().unwrap_or_default().contains("disabled"), "{name}: {v}");
        // With a wrong password, nothing is told.
        let (s, _) = h.send_login(name, "wrong").await;
        assert_eq!(s, 400, "{name} with a wrong password");
    }
    let c = h.login_client("erin", "erin-password", "test").await;
    assert_eq!(identity(&h, &c).await["remote-user"], json!(["erin"]), "userAccountControl 512 is enabled");
}

#[tokio::test]
async fn filter_injection_finds_no_other_user() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let h = gateway(&slapd, "", one_factor()).await;
    let binds = user_binds(&h).await;
    for typed in ["*", ")(uid=*", "alice)(uid=*", "*)(|(uid=*", "al*", "alice\0", "\0", "alicé", "ålice", "a\\6cice"]
    {
        let (s, v) = h.send_login(typed, "alice-password").await;
        assert_eq!(s, 400, "{typed:?}: {v}");
    }
    assert_eq!(user_binds(&h).await, binds, "none of them found an entry to bind as");
    // The same password with the real name works (the password was right all along).
    let (s, v) = h.send_login("alice", "alice-password").await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn lockouts_keep_the_binds_within_our_limits() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let o = Options { lockout: Some("ip_failures = \"50/15m\"\naccount_failures = \"3/1h\""), ..one_factor() };
    let h = gateway(&slapd, "", o).await;
    let binds = user_binds(&h).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(h.send_login("bob", "guess").await.0.as_u16());
    }
    assert_eq!(statuses, [400, 400, 400, 403, 403, 403], "locked after three failures");
    assert_eq!(user_binds(&h).await, binds + 3.0, "the directory saw three binds, not six");
    // The right password does not reach the directory while locked either.
    assert_eq!(h.send_login("bob", "bob-password").await.0, 403);
    assert_eq!(user_binds(&h).await, binds + 3.0);
}

#[tokio::test]
async fn passwords_cannot_be_changed_here_and_the_account_page_still_rechecks_by_bind() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let h = gateway(&slapd, "", Options::default()).await;
    let c = h.login_client("alice", "alice-password", "test").await;
    // Setting up an app needs the password again: checked by a bind as alice.
    let binds = user_binds(&h).await;
    let (s, v) = h.post_as(&c, "/_auth/api/totp/setup", json!({"password": "wrong"})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = h.post_as(&c, "/_auth/api/totp/setup", json!({"password": "alice-password"})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["secret"].is_string(), "{v}");
    assert_eq!(user_binds(&h).await, binds + 2.0);
    // Change and reset say where passwords live, and nothing reaches the directory.
    let not_here = "Passwords cannot be changed here: they are kept in your organisation's directory.";
    let (s, v) = h
        .post_as(
            &c,
            "/_auth/api/password",
            json!({"current_password": "alice-password", "new_password": "a fine new phrase 9"}),
        )
        .await;
    assert_eq!((s.as_u16(), v["error"].as_str()), (403, Some(not_here)), "{v}");
    let (s, v) = h.post_as(&c, "/_auth/api/password-reset/start", json!({"username_or_email": "alice"})).await;
    assert_eq!((s.as_u16(), v["error"].as_str()), (403, Some(not_here)), "{v}");
    let page = support::client().get(h.url("/_auth/login")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Sign in") && !page.contains("Forgot your password?"), "no reset link");
    let page = c.get(h.url("/_auth/account")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Your account") && !page.contains("/_auth/account/password"), "no change link");
    assert_eq!(user_binds(&h).await, binds + 2.0);
}

/// Runs `portcullis check-config` on `config`; (exit code, stderr).
fn check_config(config: &str, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(support::binary())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn check_config_text(url: &str, ldap_extra: &str) -> String {
    format!(
        "[auth]\nsecret = \"{secret}\"\nbackend = \"ldap\"\n[ldap]\nurl = \"{url}\"\nbind_dn = \"{SERVICE_DN}\"\n\
         bind_password = \"{SERVICE_PASSWORD}\"\nbase_dn = \"{BASE_DN}\"\ntimeout = \"2s\"\n{ldap_extra}\n",
        secret = support::SECRET
    )
}

#[tokio::test]
async fn check_config_binds_and_runs_the_filter_naming_the_key_that_fails() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let url = slapd.url();
    let (code, err) = check_config(&check_config_text(&url, ""), &[]);
    assert_eq!(code, 0, "{err}");
    let text = check_config_text(&url, "").replace(SERVICE_PASSWORD, "wrong-password");
    let (code, err) = check_config(&text, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ldap.bind_dn"), "{err}");
    let (code, err) = check_config(&text, &["--no-files"]);
    assert_eq!(code, 0, "--no-files asks the directory nothing: {err}");
    let text =
        check_config_text(&url, "").replace(&format!("base_dn = \"{BASE_DN}\""), "base_dn = \"dc=nowhere,dc=com\"");
    let (code, err) = check_config(&text, &[]);
    assert!(code == 1 && err.contains("ldap.base_dn"), "{err}");
    let (code, err) =
        check_config(&check_config_text(&url, "user_filter = \"(&(objectClass=nothing)(uid={input}))\""), &[]);
    assert!(code == 1 && err.contains("ldap.user_filter") && err.contains("finds no entry"), "{err}");
    let (code, err) = check_config(&check_config_text(&url, "user_filter = \"(uid=alice)\""), &["--no-files"]);
    assert!(code == 1 && err.contains("ldap.user_filter") && err.contains("{input}"), "{err}");
    let dead = format!("ldap://127.0.0.1:{}", support::free_port());
    let (code, err) = check_config(&check_config_text(&dead, ""), &[]);
    assert!(code == 1 && err.contains("ldap.url"), "{err}");
}

#[test]
fn user_commands_refuse_with_the_directory_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, check_config_text("ldap://127.0.0.1:1", "")).unwrap();
    for args in [&["user", "passwd", "alice", "--stdin"][..], &["user", "add", "x", "--email", "x@example.com"]] {
        let out = std::process::Command::new(support::binary())
            .args(args)
            .arg("--config")
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("ldap") && err.contains("directory"), "{args:?}: {err}");
    }
}

/// Asks `f` every 200 ms (a login costs a password hash) until it is true
/// or `within` passes; returns how long it took.
async fn eventually(within: Duration, mut f: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    poll_every(Duration::from_millis(200), within, async || f().await.then(|| start.elapsed())).await
}

#[tokio::test]
async fn ldaps_and_start_tls_trust_the_test_ca_and_refuse_another() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let ca = slapd.ca_file.display().to_string();
    let wrong = slapd.wrong_ca_file.display().to_string();
    for (url, extra) in [
        (slapd.ldaps_url(), format!("ca_file = \"{ca}\"")),
        (slapd.url(), format!("start_tls = true\nca_file = \"{ca}\"")),
    ] {
        let h = Harness::start(Backend::Memory, ldap_options(&slapd, &url, &extra, one_factor())).await.unwrap();
        let (s, v) = h.send_login("alice", "alice-password").await;
        assert_eq!(s, 200, "{url} {extra}: {v}");
        assert!(!h.gw.log().contains("passwords cross the network in the clear"), "no warning under TLS");
        let (code, err) = check_config(&check_config_text(&url, &extra), &[]);
        assert_eq!(code, 0, "{err}");
    }
    for (url, extra) in [
        (slapd.ldaps_url(), format!("ca_file = \"{wrong}\"")),
        (slapd.url(), format!("start_tls = true\nca_file = \"{wrong}\"")),
    ] {
        let h = Harness::start(Backend::Memory, ldap_options(&slapd, &url, &extra, one_factor())).await.unwrap();
        let (s, v) = h.send_login("alice", "alice-password").await;
        assert_eq!(s, 503, "{url} {extra}: a certificate from another CA is refused: {v}");
        let (code, err) = check_config(&check_config_text(&url, &extra), &[]);
        assert!(code == 1 && err.contains("ldap.ca_file"), "{err}");
    }
    // Plain ldap:// is allowed, with a warning.
    let h = gateway(&slapd, "", one_factor()).await;
    assert!(h.gw.log_contains("passwords cross the network in the clear"));
}

#[tokio::test]
async fn a_killed_directory_gives_503s_and_no_login_under_load_and_logins_work_once_it_is_back() {
    let Some(mut slapd) = Slapd::or_skip() else { return };
    let o = Options {
        rate_limit: Some("login = \"10000/5m\""),
        lockout: Some("ip_failures = \"10000/15m\"\naccount_failures = \"10000/1h\""),
        ..one_factor()
    };
    let h = gateway(&slapd, "timeout = \"1s\"", o).await;
    let signed_in = h.login_client("bob", "bob-password", "before").await;
    // Load: eight clients logging in over and over while the directory dies.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (logins, refusals) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (url, origin, stop) = (h.url("/_auth/api/send-login-otp"), h.origin.clone(), stop.clone());
        let (logins, refusals) = (logins.clone(), refusals.clone());
        load.push(tokio::spawn(async move {
            let c = support::client();
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let r = c
                    .post(&url)
                    .header("Origin", &origin)
                    .json(&json!({"username_or_email": "alice", "password": "alice-password"}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let has_session = r
                    .headers()
                    .get_all("set-cookie")
                    .iter()
                    .any(|v| v.to_str().unwrap_or("").starts_with("portcullis_session="));
                seen.push((status, started, started.elapsed(), has_session));
                match status {
                    200 => logins.fetch_add(1, Ordering::Relaxed),
                    _ => refusals.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }));
    }
    assert_eventually!(logins.load(Ordering::Relaxed) >= 8, "logins under load before the kill");
    slapd.kill();
    let killed_at = Instant::now();
    // The load meets the dead directory (forty answers, five a client).
    let refused = refusals.load(Ordering::Relaxed);
    assert_eventually!(refusals.load(Ordering::Relaxed) >= refused + 40, "503s once the directory is gone");
    // A session made before is checked in the store, not the directory.
    assert_eq!(signed_in.get(h.url("/app")).send().await.unwrap().status(), 200, "sessions live without the directory");
    let refused = refusals.load(Ordering::Relaxed);
    assert_eventually!(refusals.load(Ordering::Relaxed) >= refused + 8, "more 503s while the directory is gone");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for t in load {
        all.extend(t.await.unwrap());
    }
    let unavailable: Vec<_> = all.iter().filter(|(s, ..)| *s == 503).collect();
    assert!(!unavailable.is_empty(), "the dead directory answers 503");
    let others: Vec<u16> = all.iter().map(|a| a.0).filter(|s| *s != 200 && *s != 503).collect();
    assert!(others.is_empty(), "only logins or 503s, also: {others:?}");
    let slow = unavailable.iter().filter(|(_, _, took, _)| *took > Duration::from_millis(2500)).count();
    assert_eq!(slow, 0, "each 503 within the timeout (1 s) and a little");
    assert!(unavailable.iter().all(|(.., session)| !session), "a 503 never carries a session");
    let after = all.iter().filter(|(s, started, ..)| *s == 200 && *started > killed_at).count();
    assert_eq!(after, 0, "no login once the directory is gone");
    eprintln!(
        "under load: {} logins before the kill, {} answered 503 after it",
        all.iter().filter(|a| a.0 == 200).count(),
        unavailable.len()
    );
    // Back: logins work again by themselves.
    slapd.restart();
    let back =
        eventually(Duration::from_secs(10), async || h.send_login("alice", "alice-password").await.0 == 200).await;
    assert!(back.is_some(), "logins work again once the directory is back");
    let m = h.metrics().await;
    assert!(support::sample(&m, "portcullis_directory_errors_total", &[]) > 0.0, "errors counted");
}

#[tokio::test]
async fn a_directory_that_hangs_answers_503_within_the_timeout() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let h = gateway(&slapd, "timeout = \"1s\"", one_factor()).await;
    let (s, v) = h.send_login("alice", "alice-password").await;
    assert_eq!(s, 200, "{v}");
    slapd.signal("STOP");
    let started = Instant::now();
    let (s, v) = h.send_login("alice", "alice-password").await;
    let took = started.elapsed();
    assert_eq!(s, 503, "{v}");
    assert!(took < Duration::from_millis(1800), "answered in {took:?}, within ldap.timeout (1s)");
    slapd.signal("CONT");
    let back =
        eventually(Duration::from_secs(10), async || h.send_login("alice", "alice-password").await.0 == 200).await;
    assert!(back.is_some(), "the directory answers again");
}

#[tokio::test]
async fn changes_in_the_directory_end_sessions_within_the_refresh() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let h = gateway(&slapd, "refresh = \"5s\"", one_factor()).await;
    let bob = h.login_client("bob", "bob-password", "bob").await;
    let alice = h.login_client("alice", "alice-password", "alice").await;
    let erin = h.login_client("erin", "erin-password", "erin").await;
    let frank = h.login_client("frank", "frank-password", "frank").await;
    for c in [&bob, &alice, &erin, &frank] {
        assert_eq!(c.get(h.url("/app")).send().await.unwrap().status(), 200);
    }
    // Bob leaves a group; Alice's password changes; Erin's mailbox moves; Frank is locked.
    slapd.modify("dn: cn=dev,ou=groups,dc=example,dc=com\nchangetype: modify\ndelete: member\nmember: uid=bob,ou=contractors,dc=example,dc=com\n");
    slapd.modify("dn: uid=alice,ou=people,dc=example,dc=com\nchangetype: modify\nreplace: userPassword\nuserPassword: alice-new-password\n");
    slapd.modify(
        "dn: uid=erin,ou=people,dc=example,dc=com\nchangetype: modify\nreplace: mail\nmail: erin@example.org\n",
    );
    slapd.modify("dn: uid=frank,ou=people,dc=example,dc=com\nchangetype: modify\nadd: objectClass\nobjectClass: portcullisTestAccount\n-\nadd: nsAccountLock\nnsAccountLock: TRUE\n");
    let started = Instant::now();
    for (who, c) in [("bob", &bob), ("alice", &alice), ("erin", &erin), ("frank", &frank)] {
        let ended = eventually(Duration::from_secs(12), async || {
            c.get(h.url("/app")).header("Accept", "application/json").send().await.unwrap().status() == 401
        })
        .await;
        assert!(ended.is_some(), "{who}'s session ended");
    }
    assert!(started.elapsed() < Duration::from_secs(12), "within the refresh (5 s) and a little");
    let revoked = h.gw.security_records().into_iter().filter(|r| r["event"] == "session_revoked").count();
    assert!(revoked >= 4, "each ending audited");
    // The new password works, the old one does not.
    assert_eq!(h.send_login("alice", "alice-password").await.0, 400);
    assert_eq!(h.send_login("alice", "alice-new-password").await.0, 200);
    let c = h.login_client("bob", "bob-password", "bob again").await;
    assert_eq!(identity(&h, &c).await["remote-groups"], json!([""]), "no group left");
}

/// The first ```toml block of docs/quickstart.md's LDAP section.
fn quickstart_example() -> String {
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/quickstart.md")).unwrap();
    let section = &text[text.find("## 6. LDAP / Active Directory").expect("the quickstart's LDAP section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    section[start..start + section[start..].find("```").unwrap()].to_owned()
}

#[tokio::test]
async fn the_quickstarts_ldap_example_checks_out_against_a_directory_shaped_like_it() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let example = quickstart_example();
    // The example's directory, served by the test one: its address and CA.
    let config = example
        .replace("secret = \"...\"", &format!("secret = \"{}\"", support::SECRET))
        .replace("ldaps://ldap.example.com", &slapd.ldaps_url())
        .replace("/etc/portcullis/directory-ca.pem", &slapd.ca_file.display().to_string());
    assert!(config.contains(SERVICE_DN) && config.contains(BASE_DN), "the example names the test directory's DNs");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, &config).unwrap();
    let run = |password: &str| {
        std::process::Command::new(support::binary())
            .args(["check-config", "--config"])
            .arg(&path)
            .env("PORTCULLIS_LDAP__BIND_PASSWORD", password)
            .output()
            .unwrap()
    };
    let out = run(SERVICE_PASSWORD);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("backend = \"ldap\"") && !printed.contains(SERVICE_PASSWORD),
        "secrets redacted:\n{printed}"
    );
    let out = run("wrong");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ldap.bind_dn"));
}

/// `logins` password logins (one factor), `concurrency` at a time, as `user`;
/// returns logins per second and the p50 latency.
async fn login_rate(h: &Harness, user: &str, password: &str, logins: usize, concurrency: usize) -> (f64, Duration) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (url, origin, next) = (h.url("/_auth/api/send-login-otp"), h.origin.clone(), next.clone());
        let body = json!({"username_or_email": user, "password": password});
        workers.push(tokio::spawn(async move {
            let c = support::client();
            let mut took = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < logins {
                let t = Instant::now();
                let r = c.post(&url).header("Origin", &origin).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                took.push(t.elapsed());
            }
            took
        }));
    }
    let mut took = Vec::new();
    for w in workers {
        took.extend(w.await.unwrap());
    }
    let rate = logins as f64 / started.elapsed().as_secs_f64();
    took.sort();
    (rate, took[took.len() / 2])
}

/// The benchmark row of bench/ldap_logins.sh: password logins per second
/// with the directory against the users file, side by side in one run
/// (`LDAP_BENCH_LOGINS` each, default 40; 8 at a time).
#[tokio::test]
async fn login_throughput_with_the_directory_against_the_users_file() {
    let Some(slapd) = Slapd::or_skip() else { return };
    let logins = std::env::var("LDAP_BENCH_LOGINS").ok().and_then(|n| n.parse().ok()).unwrap_or(40);
    let unlimited = || Options {
        rate_limit: Some("login = \"1000000/5m\""),
        lockout: Some("ip_failures = \"1000000/15m\"\naccount_failures = \"1000000/1h\""),
        ..one_factor()
    };
    let file = Harness::start(Backend::Memory, unlimited()).await.expect("gateway");
    let ldap = gateway(&slapd, "", unlimited()).await;
    // Warm up: argon2's buffers, the directory's connections.
    login_rate(&file, "testuser", support::flow::PASSWORD, 8, 8).await;
    login_rate(&ldap, "alice", "alice-password", 8, 8).await;
    let (file_rate, file_p50) = login_rate(&file, "testuser", support::flow::PASSWORD, logins, 8).await;
    let (ldap_rate, ldap_p50) = login_rate(&ldap, "alice", "alice-password", logins, 8).await;
    eprintln!(
        "ldap logins/s: users file {file_rate:.1} (p50 {file_p50:.1?}), directory {ldap_rate:.1} (p50 {ldap_p50:.1?}), \
         directory ÷ file {:.2}",
        ldap_rate / file_rate
    );
    let m = ldap.metrics().await;
    let binds = support::sample(&m, "portcullis_directory_operation_duration_seconds_count", &[("op", "user_bind")]);
    assert!(binds >= logins as f64, "every login bound once ({binds})");
    let connects = support::sample(&m, "portcullis_directory_operation_duration_seconds_count", &[("op", "connect")]);
    assert!(connects <= 2.0 * 8.0 + 2.0, "connections are pooled, not opened per login ({connects} opened)");
}

/// A gateway that starts while the directory is down has not read its users:
/// a session made elsewhere (another replica, before a restart) is neither
/// served nor ended, but answered 503 until the directory is read.
#[tokio::test]
async fn a_replica_started_while_the_directory_is_down_neither_serves_nor_ends_sessions_until_it_reads_it() {
    let Some(mut slapd) = Slapd::or_skip() else { return };
    let Some(h) = Harness::start(Backend::Redis, ldap_options(&slapd, &slapd.url(), "", one_factor())).await else {
        return;
    };
    let c = h.login_client("bob", "bob-password", "bob").await;
    assert_eq!(c.get(h.url("/app")).send().await.unwrap().status(), 200);
    slapd.kill();
    let (replica, origin) = h.start_replica();
    let on_replica =
        || async { c.get(format!("{origin}/app")).header("Accept", "application/json").send().await.unwrap().status() };
    assert_eq!(on_replica().await, 503, "the replica cannot tell whether bob still exists");
    assert_eq!(
        c.get(h.url("/app")).send().await.unwrap().status(),
        200,
        "the first gateway, which read the directory, serves"
    );
    slapd.restart();
    let served = eventually(Duration::from_secs(15), async || on_replica().await == 200).await;
    assert!(served.is_some(), "once the replica reads the directory, the session is served; log:\n{}", replica.log());
}
