//! The operator console on either store: an operator (a member of
//! `auth.admin_group` at two factors) lists users, unlocks, ends sessions,
//! resets second factors, disables and enables, lifts address bans, and
//! searches and exports the audit trail, where every action shows with the
//! operator as its actor; a replica sees and lifts what another did; and
//! everyone else is refused alike (not signed in, not an operator, one
//! factor, no CSRF proof, another site's Origin), with a bad request named.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::assert_eventually;
use support::flow::{Backend, Harness, Options, PASSWORD};

support::on_both_stores!(
    an_operator_acts_on_users_and_addresses_and_every_action_is_audited,
    the_console_refuses_everyone_but_an_operator_at_two_factors,
    portcullis_audit_searches_the_trail_on_either_store,
);

const CAROL: &str = "carols-password-1";
const BOB: &str = "bobs-password-1";

/// testuser joins the admin group and carol gets an account; waits until
/// the gateway has the new file.
async fn promote(h: &Harness) {
    support::write_users(
        &h.users,
        &[
            ("testuser", "test@example.com", PASSWORD, &["staff", "admins"]),
            ("bob", "bob@example.com", BOB, &[]),
            ("carol", "carol@example.com", CAROL, &[]),
        ],
    );
    let reloaded = h.gw.wait_for_log(|l| l.contains("users file reloaded") && l.contains("\"users\":3")).await;
    assert!(reloaded.is_some(), "the gateway reloads the users file");
}

async fn get(h: &Harness, c: &reqwest::Client, path: &str) -> (StatusCode, Value) {
    get_at(&h.origin, c, path).await
}

async fn get_at(origin: &str, c: &reqwest::Client, path: &str) -> (StatusCode, Value) {
    let r = c.get(format!("{origin}{path}")).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A same-origin JSON POST from the console's page to `at`'s `path`.
async fn post_at(h: &Harness, at: &str, c: &reqwest::Client, path: &str, body: Value) -> (StatusCode, Value) {
    let r = c.post(format!("{at}{path}")).header("Origin", &h.origin).json(&body).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A password step from `ip` (as a trusted proxy would say): the status.
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

/// carol's row in the users list.
async fn carol_row(h: &Harness, admin: &reqwest::Client) -> Value {
    let (s, v) = get(h, admin, "/_auth/api/admin/users?q=carol").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 1, "{v}");
    v["users"][0].clone()
}

fn events(records: &Value) -> Vec<(String, String)> {
    records["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["event"].as_str().unwrap().to_owned(), r["actor"].as_str().unwrap_or("").to_owned()))
        .collect()
}

async fn an_operator_acts_on_users_and_addresses_and_every_action_is_audited(b: Backend) {
    let o = Options { lockout: Some("ip_failures = \"3/15m\"\naccount_failures = \"3/1h\""), ..Default::default() };
    let Some(h) = Harness::start(b, o).await else { return };
    promote(&h).await;
    let admin = h.two_factor_client("testuser", PASSWORD, "Firefox/120 (console test)").await;

    // The list: name, address, groups, factors, lock, sessions, last login.
    let row = carol_row(&h, &admin).await;
    assert_eq!(row["email"], "carol@example.com");
    assert_eq!(
        (row["locked_for"].clone(), row["sessions"].clone(), row["last_login"].clone()),
        (Value::Null, json!(0), Value::Null)
    );
    let (s, v) = get(&h, &admin, "/_auth/api/admin/users?limit=2").await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!((names, v["next"].as_str(), v["total"].as_u64()), (vec!["bob", "carol"], Some("carol"), Some(3)));
    let (_, v) = get(&h, &admin, "/_auth/api/admin/users?limit=2&after=carol").await;
    assert_eq!(v["users"][0]["username"], "testuser");
    assert_eq!(v["users"][0]["groups"], json!(["admins", "staff"]));
    assert!(v["users"][0]["last_login"].as_u64().is_some(), "{v}");
    assert_eq!(v["next"], Value::Null);

    // A lock, from three addresses, lifted by the operator (on a replica,
    // with Redis: what one replica does, the others see).
    for i in 0..3 {
        assert_eq!(attempt(&h, "carol", "wrong", &format!("198.51.100.{i}")).await, 400);
    }
    assert_eq!(attempt(&h, "carol", CAROL, "198.51.100.9").await, 403, "locked");
    assert!(carol_row(&h, &admin).await["locked_for"].as_u64().is_some_and(|s| s > 800));
    let replica = (b == Backend::Redis).then(|| h.start_replica());
    let at = replica.as_ref().map_or(h.origin.clone(), |(_, url)| url.clone());
    if b == Backend::Redis {
        let (s, v) = get_at(&at, &admin, "/_auth/api/admin/users?q=carol").await;
        assert_eq!(s, 200, "{v}");
        assert!(v["users"][0]["locked_for"].as_u64().is_some(), "the replica sees the lock: {v}");
    }
    let (s, v) = post_at(&h, &at, &admin, "/_auth/api/admin/unlock", json!({"name": "carol"})).await;
    assert_eq!(s, 200);
    assert_eq!((v["was_locked"].clone(), v["message"].clone()), (json!(true), json!("carol is unlocked.")));
    assert_eq!(attempt(&h, "carol", CAROL, "198.51.100.9").await, 200, "unlocked everywhere at once");
    assert_eq!(carol_row(&h, &admin).await["locked_for"], Value::Null);

    // Sessions, ended.
    let carol = h.two_factor_client("carol", CAROL, "curl/8 (carol)").await;
    assert_eq!(carol.get(h.url("/app")).send().await.unwrap().status(), 200);
    assert!(carol_row(&h, &admin).await["sessions"].as_u64().is_some_and(|n| n >= 1));
    // (With Redis, asked of the replica: the session ends on this gateway too.)
    let (s, v) = post_at(&h, &at, &admin, "/_auth/api/admin/sessions/revoke", json!({"name": "carol"})).await;
    assert_eq!(s, 200);
    assert!(v["revoked"].as_u64().is_some_and(|n| n >= 1), "{v}");
    assert_eventually!(
        within std::time::Duration::from_secs(3),
        carol.get(h.url("/app")).send().await.unwrap().status() == 401,
        "her session is over, on every gateway"
    );
    assert_eq!(carol_row(&h, &admin).await["sessions"], 0);

    // Second factors reset: backup codes (and any app or passkey) go; she is told.
    let carol = h.two_factor_client("carol", CAROL, "curl/8 (carol)").await;
    let codes = h.enable_2fa(&carol).await;
    let row = carol_row(&h, &admin).await;
    assert_eq!(
        (row["factors"]["otp_enabled"].clone(), row["factors"]["backup_codes_left"].clone()),
        (json!(true), json!(8))
    );
    let mails = h.smtp.messages().len();
    let (s, v) = h.post_as(&admin, "/_auth/api/admin/factors/reset", json!({"name": "carol"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["factors"]["backup_codes_left"], 8, "what she had: {v}");
    let row = carol_row(&h, &admin).await;
    assert_eq!(
        row["factors"],
        json!({"otp_enabled": true, "backup_codes_left": 0, "totp_enabled": false, "passkey_enabled": false})
    );
    let got = h.smtp.wait_for(mails + 1, std::time::Duration::from_secs(10)).await;
    let alert =
        got.iter().skip(mails).find(|m| m.header("Subject").unwrap_or_default().contains("second factors were reset"));
    let alert = alert.expect("an alert about the reset");
    assert!(alert.header("To").unwrap_or_default().contains("carol@example.com"));
    let fresh = support::client();
    let (s, v) =
        h.post_as(&fresh, "/_auth/api/send-login-otp", json!({"username_or_email": "carol", "password": CAROL})).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = h.post_as(&fresh, "/_auth/api/verify-backup-code", json!({"code": codes[0]})).await;
    assert_eq!(s, 400, "an old backup code no longer signs in");

    // Disabled in the users file (sessions end), then enabled again.
    let (s, v) = h.post_as(&admin, "/_auth/api/admin/disable", json!({"name": "carol"})).await;
    assert_eq!((s, v["changed"].clone()), (StatusCode::OK, json!(true)), "{v}");
    assert_eq!(carol.get(h.url("/app")).send().await.unwrap().status(), 401);
    let file = std::fs::read_to_string(&h.users).unwrap();
    let carol_entry = &file[file.find("[users.carol]").unwrap()..];
    assert!(carol_entry.contains("disabled = true"), "{file}");
    assert_eq!(attempt(&h, "carol", CAROL, "198.51.100.20").await, 403, "a disabled account");
    assert_eq!(carol_row(&h, &admin).await["disabled"], true);
    let (_, v) = h.post_as(&admin, "/_auth/api/admin/disable", json!({"name": "carol"})).await;
    assert_eq!((v["changed"].clone(), v["message"].clone()), (json!(false), json!("carol was already disabled.")));
    let (s, v) = h.post_as(&admin, "/_auth/api/admin/enable", json!({"name": "carol"})).await;
    assert_eq!((s, v["changed"].clone()), (StatusCode::OK, json!(true)), "{v}");
    assert_eq!(attempt(&h, "carol", CAROL, "198.51.100.21").await, 200);

    // An address banned for its failures, listed and lifted.
    for name in ["x1", "x2", "x3"] {
        assert_eq!(attempt(&h, name, "wrong", "203.0.113.7").await, 400);
    }
    assert_eq!(attempt(&h, "bob", BOB, "203.0.113.7").await, 429, "banned");
    let (s, v) = get(&h, &admin, "/_auth/api/admin/bans").await;
    assert_eq!(s, 200);
    let ban = v["bans"].as_array().unwrap().iter().find(|b| b["ip"] == "203.0.113.7").cloned();
    assert!(ban.is_some_and(|b| b["until"].as_str().is_some_and(|t| t.ends_with('Z'))), "{v}");
    let (s, v) = h.post_as(&admin, "/_auth/api/admin/bans/unlock", json!({"ip": "203.0.113.7"})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["windows_cleared"].as_u64().is_some_and(|n| n >= 1), "{v}");
    let (_, v) = get(&h, &admin, "/_auth/api/admin/bans").await;
    assert!(!v["bans"].as_array().unwrap().iter().any(|b| b["ip"] == "203.0.113.7"), "{v}");
    assert_eq!(attempt(&h, "bob", BOB, "203.0.113.7").await, 200, "the address may sign in again");

    // The trail: every action by the operator, about carol; filters; pages.
    let (s, v) = get(&h, &admin, "/_auth/api/admin/audit?user=carol&kind=security_event&limit=100").await;
    assert_eq!(s, 200, "{v}");
    let seen = events(&v);
    for event in ["account_unlocked", "session_revoked", "factors_reset", "user_disabled", "user_enabled"] {
        assert!(seen.contains(&(event.to_owned(), "testuser".to_owned())), "{event} by testuser in {seen:?}");
    }
    assert!(v["records"].as_array().unwrap().iter().all(|r| r["kind"] == "security_event"));
    let (_, v) = get(&h, &admin, "/_auth/api/admin/audit?ip=203.0.113.7").await;
    let seen = events(&v);
    assert!(seen.contains(&("ip_unlocked".to_owned(), "testuser".to_owned())), "{seen:?}");
    assert_eq!(seen.iter().filter(|(e, _)| e == "invalid_credentials").count(), 3, "{seen:?}");
    let (_, first) = get(&h, &admin, "/_auth/api/admin/audit?event=invalid_credentials&limit=2").await;
    let next = first["next"].as_str().expect("a next page").to_owned();
    let (_, second) =
        get(&h, &admin, &format!("/_auth/api/admin/audit?event=invalid_credentials&limit=2&before={next}")).await;
    let cursors = |v: &Value| -> Vec<String> {
        v["records"].as_array().unwrap().iter().map(|r| r["cursor"].as_str().unwrap().to_owned()).collect()
    };
    let (a, b2) = (cursors(&first), cursors(&second));
    assert_eq!((a.len(), b2.len()), (2, 2));
    assert!(a.iter().all(|c| !b2.contains(c)), "pages do not overlap: {a:?} {b2:?}");
    let (_, v) = get(&h, &admin, "/_auth/api/admin/audit?since=2000-01-01&until=2000-01-02").await;
    assert_eq!(v["records"], json!([]), "nothing in a range long past");

    // The export: a header row, then records; a formula typed as a name stays text.
    assert_eq!(attempt(&h, "=HYPERLINK(\"http://evil.example\",\"x\")", "wrong", "192.0.2.66").await, 400);
    let r = admin.get(h.url("/_auth/api/admin/audit/export?ip=192.0.2.66")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(r.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let csv = r.text().await.unwrap();
    let mut lines = csv.split("\r\n");
    assert_eq!(lines.next(), Some("time,kind,event,username,user,actor,ip,user_agent,details"));
    let row = lines.next().unwrap();
    assert!(row.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\","), "{row}");
    assert!(row.contains(",192.0.2.66,"), "{row}");

    // The page shows the same, without JavaScript.
    let page = admin
        .get(h.url("/_auth/admin/audit?user=carol&kind=security_event"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("factors_reset") && html.contains("Export as CSV"), "{html}");
    drop(replica);
}

async fn the_console_refuses_everyone_but_an_operator_at_two_factors(b: Backend) {
    let o = Options { policy: "one_factor", ..Default::default() };
    let Some(h) = Harness::start(b, o).await else { return };
    promote(&h).await;

    // Not signed in: sent to sign in (and back), or 401.
    let anonymous = support::client();
    let (s, _) = get(&h, &anonymous, "/_auth/api/admin/users").await;
    assert_eq!(s, 401);
    let r = anonymous.get(h.url("/_auth/admin")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/_auth/login?rd=") && location.contains("%2F_auth%2Fadmin"), "{location}");
    let (s, _) = get(&h, &anonymous, "/_auth/api/admin/no-such-thing").await;
    assert_eq!(s, 401, "an unknown path answers alike");

    // Not an operator, at one factor or two: the same 403 everywhere under the console.
    let bob = h.login_client("bob", BOB, "curl/8 (bob)").await;
    let (s, refused) = get(&h, &bob, "/_auth/api/admin/users").await;
    assert_eq!(s, 403, "{refused}");
    assert_eq!(refused["error"], "This page is for the gateway's operators only.");
    h.step_up(&bob).await;
    for path in ["/_auth/api/admin/users", "/_auth/api/admin/audit", "/_auth/api/admin/nope", "/_auth/admin/nope"] {
        let (s, v) = get(&h, &bob, path).await;
        assert_eq!((s, &v), (StatusCode::FORBIDDEN, &refused), "{path}");
    }
    let (s, v) = h.post_as(&bob, "/_auth/api/admin/unlock", json!({"name": "bob"})).await;
    assert_eq!((s, &v), (StatusCode::FORBIDDEN, &refused));
    let r = bob.get(h.url("/_auth/admin")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 403, "the page too");

    // An operator at one factor is asked for the second.
    let admin = h.login_client("testuser", PASSWORD, "Firefox/120 (operator)").await;
    let (s, v) = get(&h, &admin, "/_auth/api/admin/users").await;
    assert_eq!((s, v["step_up"].clone()), (StatusCode::UNAUTHORIZED, json!(true)), "{v}");
    let (s, v) = h.post_as(&admin, "/_auth/api/admin/disable", json!({"name": "bob"})).await;
    assert_eq!((s, v["step_up"].clone()), (StatusCode::UNAUTHORIZED, json!(true)), "{v}");
    let r = admin.get(h.url("/_auth/admin/audit")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"].to_str().unwrap().contains("%2F_auth%2Fadmin%2Faudit"));
    assert_eq!(get(&h, &bob, "/_auth/api/me").await.0, 200, "bob is still enabled");
    h.step_up(&admin).await;
    let (s, v) = get(&h, &admin, "/_auth/api/admin/users").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = get(&h, &admin, "/_auth/api/admin/nope").await;
    assert_eq!((s, &v), (StatusCode::FORBIDDEN, &refused), "an unknown path, even for an operator");

    // No proof of our own origin: refused before anything is done.
    let url = h.url("/_auth/api/admin/disable");
    let r = admin.post(&url).json(&json!({"name": "bob"})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "cross-site request refused");
    let r =
        admin.post(&url).header("Origin", "http://evil.example").json(&json!({"name": "bob"})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "cross-site request refused");
    assert_eq!(get(&h, &bob, "/_auth/api/me").await.0, 200, "bob was not disabled");

    // The page's own form carries its token, and works without Origin.
    let page = admin.get(h.url("/_auth/admin")).header("Accept", "text/html").send().await.unwrap();
    let html = page.text().await.unwrap();
    let token = support::form_field(&html, "csrf_token").expect("a CSRF token in the page");
    let r = admin
        .post(h.url("/_auth/admin/unlock"))
        .form(&[("csrf_token", token.as_str()), ("name", "bob")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("bob was not locked."));

    // A bad request is named.
    let bad = [
        ("/_auth/api/admin/unlock", json!({}), 400, "name is required"),
        ("/_auth/api/admin/unlock", json!({"name": "nobody"}), 404, "No such user."),
        ("/_auth/api/admin/bans/unlock", json!({"ip": "not an address"}), 400, "ip: not an address (or an IPv6 /64)"),
        ("/_auth/api/admin/bans/unlock", json!({}), 400, "ip is required"),
        (
            "/_auth/api/admin/disable",
            json!({"name": "testuser"}),
            400,
            "name: operators cannot disable their own account here",
        ),
    ];
    for (path, body, status, error) in bad {
        let (s, v) = h.post_as(&admin, path, body).await;
        assert_eq!((s.as_u16(), v["error"].as_str()), (status, Some(error)), "{path}");
    }
    for (query, starts) in
        [("kind=x", "kind:"), ("since=yesterday", "since:"), ("before=zz", "before:"), ("limit=0", "limit:")]
    {
        let (s, v) = get(&h, &admin, &format!("/_auth/api/admin/audit?{query}")).await;
        assert_eq!(s, 400, "{query}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| e.starts_with(starts)), "{query}: {v}");
    }

    // None of the refused requests did anything.
    let (_, v) = get(&h, &admin, "/_auth/api/admin/audit?user=bob&kind=security_event").await;
    let seen = events(&v);
    assert!(!seen.iter().any(|(e, _)| e == "user_disabled"), "{seen:?}");
    assert_eq!(seen.iter().filter(|(e, _)| e == "account_unlocked").count(), 1, "the form's unlock only: {seen:?}");
}

/// With Redis down, the console answers 503 (the session check itself needs
/// the store), never a page of stale or missing data.
#[tokio::test]
async fn with_the_store_down_the_console_answers_503() {
    let Some(mut h) = Harness::start(Backend::Redis, Options::default()).await else { return };
    promote(&h).await;
    let admin = h.two_factor_client("testuser", PASSWORD, "Firefox/120 (operator)").await;
    assert_eq!(get(&h, &admin, "/_auth/api/admin/users").await.0, 200);
    h.redis.as_mut().expect("redis").kill();
    for path in ["/_auth/api/admin/users", "/_auth/api/admin/audit", "/_auth/api/admin/bans"] {
        let (s, v) = get(&h, &admin, path).await;
        assert_eq!(s, 503, "{path}: {v}");
    }
}

/// Runs `portcullis ARGS --config FILE` with the harness's config naming the
/// metrics listener's real address, as an operator's would: exit code,
/// stdout, stderr.
fn cli(h: &Harness, args: &[&str]) -> (i32, String, String) {
    let metrics = h.gw.metrics_addr.as_ref().expect("metrics listener");
    let text = h.config.replace("metrics_listen = \"127.0.0.1:0\"", &format!("metrics_listen = \"{metrics}\""));
    let path = h.gw.dir.path().join("operator.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(support::binary())
        .args(args)
        .arg("--config")
        .arg(&path)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// `portcullis audit` searches as the console does, on the memory store too
/// (through the running gateway's admin endpoint).
async fn portcullis_audit_searches_the_trail_on_either_store(b: Backend) {
    let Some(h) = Harness::start(b, Options::default()).await else { return };
    promote(&h).await;
    for i in 0..3 {
        assert_eq!(attempt(&h, "carol", "wrong", &format!("198.51.100.{i}")).await, 400);
    }
    let admin = h.two_factor_client("testuser", PASSWORD, "Firefox/120 (operator)").await;
    let (s, _) = h.post_as(&admin, "/_auth/api/admin/sessions/revoke", json!({"name": "carol"})).await;
    assert_eq!(s, 200);

    let (code, out, err) = cli(&h, &["audit", "--user", "carol", "--json"]);
    assert_eq!(code, 0, "{err}");
    let records: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let failed = records.iter().filter(|r| r["event"] == "invalid_credentials").count();
    assert_eq!(failed, 3, "{out}");
    assert!(records.iter().all(|r| r["user"] == "carol"), "only carol's: {out}");
    assert_eq!(
        (records[0]["event"].as_str(), records[0]["actor"].as_str()),
        (Some("session_revoked"), Some("testuser"))
    );
    let (code, out, _) = cli(&h, &["audit", "--event", "invalid_credentials", "--ip", "198.51.100.1", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, out, _) = cli(&h, &["audit", "--kind", "security_event", "--limit", "2"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two records: {out}");
    assert!(lines[0].split_whitespace().eq(["TIME", "(UTC)", "KIND", "EVENT", "USER", "BY", "ADDRESS", "DETAILS"]));
    assert!(lines[1].contains("session_revoked") && lines[1].contains("testuser"), "{out}");
    let (code, out, _) = cli(&h, &["audit", "--since", "2000-01-01", "--until", "2000-01-02"]);
    assert_eq!((code, out.trim()), (0, "no audit records"));

    // More than one page of the admin endpoint's (ten records), in order.
    for i in 0..12 {
        assert_eq!(attempt(&h, &format!("nobody{i}"), "wrong", "192.0.2.77").await, 400);
    }
    let (code, out, err) = cli(&h, &["audit", "--ip", "192.0.2.77", "--limit", "11", "--json"]);
    assert_eq!(code, 0, "{err}");
    let names: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["username"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (1..12).rev().map(|i| format!("nobody{i}")).collect();
    assert_eq!(names, expected, "the newest eleven, newest first");
}
