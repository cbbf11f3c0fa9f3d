//! The users file (SPEC §2) in a running gateway, and the `portcullis user`
//! commands that write it (SPEC §1): reload on change and on SIGHUP, broken
//! edits that keep the last good copy, users added, removed and disabled while
//! the gateway runs. The real binary over real sockets, with the SMTP sink and
//! echo upstream of `support::flow`.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::flow::{Backend, Harness, Options, PASSWORD};
use support::{Gateway, assert_eventually};

const BOB_PASSWORD: &str = "bobs-password-1";
const CAROL_PASSWORD: &str = "carols-password-1";
const UA: &str = "users-test";

type Entry<'a> = (&'a str, &'a str, &'a str, &'a [&'a str]);

const TESTUSER: Entry = ("testuser", "test@example.com", PASSWORD, &["staff"]);
const BOB: Entry = ("bob", "bob@example.com", BOB_PASSWORD, &[]);
const CAROL: Entry = ("carol", "carol@example.com", CAROL_PASSWORD, &["dev"]);

async fn harness(b: Backend) -> Option<Harness> {
    Harness::start(b, Options::default()).await
}

/// Replaces the users file in one step (write aside, rename), as an editor
/// or `portcullis user` would, so the watcher never sees half a file.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn replace_users(path: &Path, users: &[Entry]) {
    let tmp = path.with_extension("toml.entries");
    support::write_users(&tmp, users);
    std::fs::rename(&tmp, path).unwrap();
}

fn count(gw: &Gateway, needle: &str) -> usize {
    gw.log().matches(needle).count()
}

const RELOADED: &str = "\"message\":\"users file reloaded\"";
const NOT_RELOADED: &str = "\"message\":\"users file not reloaded; keeping the last good copy\"";

/// Waits until the log holds more than `before` lines with `needle`; returns
/// the last such line. Sleeps asynchronously: the test's runtime also runs the SMTP sink.
async fn wait_for_log(gw: &Gateway, needle: &str, before: usize) -> String {
    assert_eventually!(count(gw, needle) > before, "no new {needle}; log:\n{}", gw.log());
    gw.log().lines().rfind(|l| l.contains(needle)).unwrap().to_string()
}

/// Logs `user` in on a fresh client and checks the upstream sees them.
async fn logs_in(h: &Harness, user: &str, password: &str) -> reqwest::Client {
    let c = h.login_client(user, password, UA).await;
    let echo: Value = c.get(h.url("/app")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["headers"]["remote-user"][0], user, "the upstream sees {user}");
    c
}

async fn login_status(h: &Harness, user: &str, password: &str) -> (StatusCode, Value) {
    let c = support::client();
    h.post_as(&c, "/_auth/api/send-login-otp", json!({"username_or_email": user, "password": password})).await
}

async fn app_status(h: &Harness, c: &reqwest::Client) -> StatusCode {
    c.get(h.url("/app")).send().await.unwrap().status()
}

// ---- reload ----

#[tokio::test]
async fn a_changed_users_file_is_reloaded_and_a_new_user_can_log_in() {
    let h = harness(Backend::Memory).await.unwrap();
    let (s, _) = login_status(&h, "carol", CAROL_PASSWORD).await;
    assert_eq!(s, 400, "carol is not a user yet");
    let before = count(&h.gw, RELOADED);
    replace_users(&h.users, &[TESTUSER, BOB, CAROL]);
    let line = wait_for_log(&h.gw, RELOADED, before).await;
    assert!(line.contains("\"users\":3"), "{line}");
    let c = logs_in(&h, "carol", CAROL_PASSWORD).await;
    let echo: Value = c.get(h.url("/app")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["headers"]["remote-groups"][0], "dev");
    assert_eq!(echo["headers"]["remote-email"][0], "carol@example.com");
}

#[tokio::test]
async fn sighup_reloads_the_users_file_even_when_its_stamp_is_unchanged() {
    let h = harness(Backend::Memory).await.unwrap();
    let old_text = std::fs::read_to_string(&h.users).unwrap();
    let old_meta = std::fs::metadata(&h.users).unwrap();
    // Bob gets a new password, written in place (same inode); argon2id PHC
    // strings of the same parameters have the same length, so size and
    // modification time can both stay as they were: only SIGHUP can tell the
    // gateway. (A file renamed into place has a new inode, which the watcher
    // sees.)
    let new_bob_password = "bobs-new-password";
    let bob_line = old_text.lines().skip_while(|l| *l != "[users.bob]").find(|l| l.starts_with("password = ")).unwrap();
    let new_hash = portcullis::auth::password::hash_password(new_bob_password).unwrap();
    let new_text = old_text.replace(bob_line, &format!("password = \"{new_hash}\""));
    assert_eq!(new_text.len(), old_text.len(), "same size");
    assert_ne!(new_text, old_text);
    std::fs::write(&h.users, &new_text).unwrap();
    std::fs::File::options().write(true).open(&h.users).unwrap().set_modified(old_meta.modified().unwrap()).unwrap();
    let meta = std::fs::metadata(&h.users).unwrap();
    assert_eq!((meta.len(), meta.modified().unwrap()), (old_meta.len(), old_meta.modified().unwrap()));

    let before = count(&h.gw, RELOADED);
    h.gw.signal("HUP");
    let line = wait_for_log(&h.gw, RELOADED, before).await;
    assert!(line.contains("\"reason\":\"SIGHUP\""), "{line}");
    let (s, v) = login_status(&h, "bob", BOB_PASSWORD).await;
    assert_eq!(s, 400, "the old password is gone: {v}");
    logs_in(&h, "bob", new_bob_password).await;
}

#[tokio::test]
async fn invalid_toml_keeps_the_last_good_users_and_logs_why() {
    let h = harness(Backend::Memory).await.unwrap();
    let testuser = logs_in(&h, "testuser", PASSWORD).await;
    let before = count(&h.gw, NOT_RELOADED);
    let good = std::fs::read_to_string(&h.users).unwrap();
    replace_file(&h.users, &format!("{good}\n[users.carol\nemail = \"carol@example.com\"\n"));
    let line = wait_for_log(&h.gw, NOT_RELOADED, before).await;
    assert!(line.contains(&h.users.display().to_string()), "the log names the file: {line}");
    assert!(line.contains("line"), "the log says where the TOML breaks: {line}");
    assert!(line.contains("\"level\":\"ERROR\""), "{line}");

    assert_eq!(app_status(&h, &testuser).await, 200, "sessions carry on");
    logs_in(&h, "bob", BOB_PASSWORD).await;
    // SIGHUP reads the same broken file and keeps the same good copy.
    let before = count(&h.gw, NOT_RELOADED);
    h.gw.signal("HUP");
    wait_for_log(&h.gw, NOT_RELOADED, before).await;
    logs_in(&h, "testuser", PASSWORD).await;
}

#[tokio::test]
async fn a_bad_entry_rejects_the_whole_edit_and_a_fixed_file_is_taken() {
    let h = harness(Backend::Memory).await.unwrap();
    // Carol is added correctly, but bob's password is pasted in the clear.
    let tmp = h.users.with_extension("toml.carol");
    support::write_users(&tmp, &[TESTUSER, BOB, CAROL]);
    let with_carol = std::fs::read_to_string(&tmp).unwrap();
    let bob_hash = with_carol
        .lines()
        .skip_while(|l| *l != "[users.bob]")
        .find_map(|l| l.strip_prefix("password = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let broken = with_carol.replace(&bob_hash, BOB_PASSWORD);
    let before = count(&h.gw, NOT_RELOADED);
    replace_file(&h.users, &broken);
    let line = wait_for_log(&h.gw, NOT_RELOADED, before).await;
    assert!(line.contains("users.bob.password"), "the log names the entry and key: {line}");

    let (s, _) = login_status(&h, "carol", CAROL_PASSWORD).await;
    assert_eq!(s, 400, "no part of a broken edit is applied");
    logs_in(&h, "bob", BOB_PASSWORD).await;
    logs_in(&h, "testuser", PASSWORD).await;

    let before = count(&h.gw, RELOADED);
    replace_file(&h.users, &with_carol);
    wait_for_log(&h.gw, RELOADED, before).await;
    logs_in(&h, "carol", CAROL_PASSWORD).await;
}

// ---- removing and disabling ----

support::on_both_stores!(
    a_user_removed_from_the_file_loses_their_session_on_the_next_request,
    a_disabled_user_gets_403_and_their_session_stops_working,
    re_enabling_a_user_does_not_bring_back_sessions_from_before,
);

async fn a_user_removed_from_the_file_loses_their_session_on_the_next_request(b: Backend) {
    let Some(h) = harness(b).await else { return };
    let bob = logs_in(&h, "bob", BOB_PASSWORD).await;
    let testuser = logs_in(&h, "testuser", PASSWORD).await;
    let before = count(&h.gw, RELOADED);
    replace_users(&h.users, &[TESTUSER]);
    wait_for_log(&h.gw, RELOADED, before).await;

    let hits = h.up.hits();
    let r = bob.get(h.url("/app")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": false, "error": "authentication required"}));
    assert_eq!(h.up.hits(), hits, "nothing of bob's reached the upstream");
    assert_eq!(bob.get(h.url("/_auth/api/me")).send().await.unwrap().status(), 401);
    assert_eq!(app_status(&h, &testuser).await, 200, "other users are untouched");
    let (s, _) = login_status(&h, "bob", BOB_PASSWORD).await;
    assert_eq!(s, 400, "a removed user is an unknown user");

    // The session is gone, not just refused: putting bob back does not revive it.
    let before = count(&h.gw, RELOADED);
    replace_users(&h.users, &[TESTUSER, BOB]);
    wait_for_log(&h.gw, RELOADED, before).await;
    assert_eq!(app_status(&h, &bob).await, 401);
}

async fn a_disabled_user_gets_403_and_their_session_stops_working(b: Backend) {
    let Some(h) = harness(b).await else { return };
    let bob = logs_in(&h, "bob", BOB_PASSWORD).await;
    let before = count(&h.gw, RELOADED);
    let out = portcullis(&["user", "disable", "bob", "--users-file", h.users.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for_log(&h.gw, RELOADED, before).await;

    let hits = h.up.hits();
    assert_eq!(app_status(&h, &bob).await, 401, "the existing session stops working");
    assert_eq!(h.up.hits(), hits);
    let mails = h.smtp.messages().len();
    let (s, v) = login_status(&h, "bob", BOB_PASSWORD).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["success"], false);
    assert_eq!(v["error"], "This account is disabled.");
    let (s, v) = login_status(&h, "bob", "wrong-password").await;
    assert_eq!(s, 400, "a wrong password says nothing about the account: {v}");
    assert_eq!(h.smtp.messages().len(), mails, "no code is sent to a disabled account");
    logs_in(&h, "testuser", PASSWORD).await;
}

async fn re_enabling_a_user_does_not_bring_back_sessions_from_before(b: Backend) {
    let Some(h) = harness(b).await else { return };
    // Two devices; only one is used while the account is disabled.
    let laptop = logs_in(&h, "bob", BOB_PASSWORD).await;
    let phone = logs_in(&h, "bob", BOB_PASSWORD).await;
    let before = count(&h.gw, RELOADED);
    let out = portcullis(&["user", "disable", "bob", "--users-file", h.users.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for_log(&h.gw, RELOADED, before).await;
    assert_eq!(app_status(&h, &laptop).await, 401);

    let text = std::fs::read_to_string(&h.users).unwrap();
    assert_eq!(text.matches("disabled = true").count(), 1, "{text}");
    let before = count(&h.gw, RELOADED);
    replace_file(&h.users, &text.replace("disabled = true", "disabled = false"));
    wait_for_log(&h.gw, RELOADED, before).await;
    assert_eq!(app_status(&h, &laptop).await, 401, "the session used while disabled stays dead");
    assert_eq!(app_status(&h, &phone).await, 401, "so does the one not used meanwhile");
    logs_in(&h, "bob", BOB_PASSWORD).await;
}

// ---- the `portcullis user` commands ----

/// Runs the binary with `args`, feeding `stdin` (the password prompt reads a line
/// from stdin when it is not a terminal).
fn portcullis(args: &[&str], stdin: Option<&str>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(support::binary())
        .args(args)
        .current_dir(dir.path())
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn user_add_writes_a_valid_entry_that_can_log_in_while_the_gateway_runs() {
    let h = harness(Backend::Memory).await.unwrap();
    let file = h.users.to_str().unwrap();
    let before = count(&h.gw, RELOADED);
    let out = portcullis(
        &["user", "add", "carol", "--email", "carol@example.com", "--groups", "a,b", "--users-file", file],
        Some(&format!("{CAROL_PASSWORD}\n")),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("Added user carol to "), "{}", stdout(&out));
    assert!(!stdout(&out).contains(CAROL_PASSWORD) && !stderr(&out).contains(CAROL_PASSWORD));

    // The file is valid, carol is in it with a hash, and nobody else was lost.
    let text = std::fs::read_to_string(&h.users).unwrap();
    assert!(!text.contains(CAROL_PASSWORD), "only a hash is stored");
    let dir = portcullis::auth::users::load(&h.users).expect("the written file loads");
    assert_eq!(dir.len(), 3);
    let carol = dir.get("carol").unwrap();
    assert_eq!(carol.email, "carol@example.com");
    assert_eq!(carol.groups, ["a", "b"]);
    assert!(!carol.disabled);
    assert!(carol.password_hash.starts_with("$argon2id$"), "{}", carol.password_hash);

    wait_for_log(&h.gw, RELOADED, before).await;
    let c = logs_in(&h, "carol", CAROL_PASSWORD).await;
    let echo: Value = c.get(h.url("/app")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["headers"]["remote-groups"][0], "a,b");
    logs_in(&h, "testuser", PASSWORD).await;
}

#[tokio::test]
async fn a_file_written_by_user_add_starts_a_gateway_and_its_user_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("new-users.toml");
    let file = users.to_str().unwrap();
    let out = portcullis(
        &["user", "add", "dora", "--email", "dora@example.com", "--users-file", file],
        Some("dora-pass-1\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let up = support::upstream::Upstream::start().await;
    let gw = Gateway::start(&support::base_config(&up.url(), "one_factor", &users));
    let c = support::client();
    let r = c
        .post(gw.url("/_auth/api/send-login-otp"))
        .header("Origin", "http://127.0.0.1")
        .json(&json!({"username_or_email": "dora@example.com", "password": "dora-pass-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = c.get(gw.url("/app")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["headers"]["remote-user"][0], "dora");
    assert!(echo["headers"]["remote-groups"].is_null() || echo["headers"]["remote-groups"][0] == "");
}

/// `user list`'s rows split on whitespace, header first.
fn table(out: &Output) -> Vec<Vec<String>> {
    stdout(out).lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

#[tokio::test]
async fn user_list_shows_every_user_and_whether_they_are_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    support::write_users(&users, &[TESTUSER, BOB]);
    let file = users.to_str().unwrap();
    let out = portcullis(&["user", "list", "--users-file", file], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // No configuration here: the store cannot be asked, and the list says so.
    assert_eq!(
        table(&out),
        [
            ["NAME", "EMAIL", "GROUPS", "STATE", "FACTORS", "LOCKED"],
            ["bob", "bob@example.com", "-", "active", "?", "?"],
            ["testuser", "test@example.com", "staff", "active", "?", "?"]
        ],
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("second factors and locks are not shown"), "{}", stderr(&out));
    let out = portcullis(&["user", "disable", "bob", "--users-file", file], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("Disabled user bob in "), "{}", stdout(&out));
    let out = portcullis(&["user", "list", "--users-file", file], None);
    let rows = table(&out);
    assert!(rows.iter().any(|r| r[0] == "bob" && r[3] == "disabled"), "{rows:?}");
    assert!(rows.iter().any(|r| r[0] == "testuser" && r[3] == "active"), "{rows:?}");
    assert!(portcullis::auth::users::load(&users).unwrap().get("bob").unwrap().disabled);
}

#[tokio::test]
async fn a_duplicate_add_or_an_unknown_disable_exits_1_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    support::write_users(&users, &[TESTUSER, BOB]);
    let file = users.to_str().unwrap();
    let original = std::fs::read(&users).unwrap();

    let out =
        portcullis(&["user", "add", "bob", "--email", "bob2@example.com", "--users-file", file], Some("pw-123456\n"));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("bob") && err.contains("already exists"), "{err}");

    let out = portcullis(&["user", "disable", "nobody", "--users-file", file], None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("nobody") && err.contains("no user"), "{err}");
    assert_eq!(std::fs::read(&users).unwrap(), original, "a refused command leaves the file alone");
}

#[tokio::test]
async fn user_add_refuses_a_taken_email_a_bad_name_and_an_empty_password() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    support::write_users(&users, &[TESTUSER]);
    let file = users.to_str().unwrap();
    let original = std::fs::read(&users).unwrap();
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["user", "add", "tess", "--email", "TEST@example.com"],
            "pw-123456\n",
            "--email \"TEST@example.com\": already used by user \"testuser\"",
        ),
        (&["user", "add", "bad name", "--email", "b@example.com"], "pw-123456\n", "NAME"),
        (&["user", "add", "eve", "--email", "not-an-address"], "pw-123456\n", "--email"),
        (&["user", "add", "eve", "--email", "eve@example.com"], "\n", "empty password"),
    ];
    for (args, stdin, message) in cases {
        let mut args = args.to_vec();
        args.extend(["--users-file", file]);
        let out = portcullis(&args, Some(stdin));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read(&users).unwrap(), original, "a refused add leaves the file alone");
}

/// Starts the gateway `n` times and sends SIGHUP the moment it reports its
/// listener, as `systemctl reload` right after start would. A shell does the
/// timing: its built-in `kill` follows the "listening" line within microseconds.
const HUP_AT_START: &str = r#"
bin=$1; cfg=$2; n=$3; dir=$4
for i in $(seq 1 "$n"); do
  coproc GW { exec "$bin" --log-format json serve --config "$cfg" 2>"$dir/gw-$i.log"; }
  pid=$GW_PID
  read -r line <&"${GW[0]}"
  kill -HUP "$pid"
  # Until the reload is logged or the process is gone (10 s at most).
  for _ in $(seq 500); do
    grep -q '"message":"users file reloaded"' "$dir/gw-$i.log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  if kill -0 "$pid" 2>/dev/null; then echo "alive $line"; kill -TERM "$pid"; else echo "died $line"; fi
  wait "$pid" 2>/dev/null
done
"#;

#[test]
fn sighup_right_after_start_reloads_the_users_file_instead_of_killing_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    support::write_users(&users, &[BOB]);
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, support::base_config("http://127.0.0.1:9", "two_factor", &users)).unwrap();
    let n = 20;
    let out = Command::new("bash")
        .args(["-c", HUP_AT_START, "hup-at-start"])
        .arg(support::binary())
        .arg(&config)
        .arg(n.to_string())
        .arg(dir.path())
        .current_dir(dir.path())
        .env_remove("PORTCULLIS_CONFIG")
        .env("PORTCULLIS_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    let runs = stdout(&out);
    assert_eq!(runs.lines().count(), n, "{runs}{}", stderr(&out));
    assert!(runs.lines().all(|l| l.starts_with("alive portcullis listening on ")), "{runs}");
    let died = runs.lines().filter(|l| l.starts_with("died")).count();
    assert_eq!(died, 0, "SIGHUP killed {died} of {n} freshly started gateways");
    for i in 1..=n {
        let log = std::fs::read_to_string(dir.path().join(format!("gw-{i}.log"))).unwrap();
        let line = log.lines().find(|l| l.contains(RELOADED)).unwrap_or_else(|| panic!("run {i}: no reload:\n{log}"));
        assert!(line.contains("\"reason\":\"SIGHUP\"") && line.contains("\"users\":1"), "run {i}: {line}");
    }
}

#[tokio::test]
async fn user_add_refuses_a_weak_password_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    support::write_users(&users, &[TESTUSER]);
    let file = users.to_str().unwrap();
    let original = std::fs::read(&users).unwrap();
    for weak in ["x\n", "password1\n", "frank2026\n"] {
        let out =
            portcullis(&["user", "add", "frank", "--email", "frank@example.com", "--users-file", file], Some(weak));
        assert_eq!(out.status.code(), Some(1), "{weak:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("too weak") && err.contains("--allow-weak"), "{weak:?}: {err}");
    }
    assert_eq!(std::fs::read(&users).unwrap(), original, "nothing was written");

    let out = portcullis(
        &["user", "add", "frank", "--email", "frank@example.com", "--allow-weak", "--users-file", file],
        Some("x\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("Added user frank to "), "{}", stdout(&out));
    let out = portcullis(
        &["user", "add", "gina", "--email", "gina@example.com", "--users-file", file],
        Some("copper kettle under the stairs\n"),
    );
    assert_eq!(out.status.code(), Some(0), "a strong password is taken as is: {}", stderr(&out));
    assert_eq!(stdout(&out), format!("Added user gina to {file}\n"));
}

/// Like the other commands, `user` takes `--config`: the users file is the
/// config's `auth.users_file` (relative to the config's directory).
#[tokio::test]
async fn user_commands_find_the_users_file_through_config() {
    let site = tempfile::tempdir().unwrap();
    let config = site.path().join("portcullis.toml");
    std::fs::write(&config, format!("[auth]\nsecret = \"{}\"\nusers_file = \"users.toml\"\n", support::SECRET))
        .unwrap();
    let cfg = config.to_str().unwrap();
    let out = portcullis(
        &["user", "add", "hana", "--email", "hana@example.com", "--config", cfg],
        Some("copper kettle under the stairs\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let users = site.path().join("users.toml");
    assert!(stdout(&out).contains(&users.display().to_string()), "{}", stdout(&out));
    assert!(portcullis::auth::users::load(&users).unwrap().get("hana").is_some());
    let out = portcullis(&["user", "disable", "hana", "--config", cfg], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = portcullis(&["user", "list", "--config", cfg], None);
    assert_eq!(table(&out)[1][..4], ["hana", "hana@example.com", "-", "disabled"], "{}", stdout(&out));

    // The help says where the password comes from, and how fast disable acts.
    let help = stdout(&portcullis(&["user", "add", "--help"], None));
    assert!(help.contains("stdin") && help.contains("--allow-weak") && help.contains("--config"), "{help}");
    let help = stdout(&portcullis(&["user", "disable", "--help"], None));
    assert!(help.contains("within about a second"), "{help}");
}

/// `user disable` while the gateway runs: the user's session is refused
/// within a second of the command returning (the file is watched, not polled
/// every few seconds).
#[tokio::test]
async fn a_disabled_users_session_is_refused_within_a_second() {
    let h = harness(Backend::Memory).await.unwrap();
    let bob = logs_in(&h, "bob", BOB_PASSWORD).await;
    let out = portcullis(&["user", "disable", "bob", "--users-file", h.users.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let disabled = Instant::now();
    let refused = async || match app_status(&h, &bob).await {
        StatusCode::UNAUTHORIZED => true,
        status => {
            assert_eq!(status, 200);
            false
        }
    };
    assert_eventually!(within Duration::from_secs(1), refused().await, "bob's session still works after 1 s");
    let took = disabled.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(h.gw.wait_for_log(|l| l.contains("users file reloaded")).await.is_some());
}
