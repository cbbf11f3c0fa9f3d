//! The `portcullis user` commands that write the users file (SPEC §1, §4.2):
//! `add`, `passwd`, `disable`, `enable` and `remove` keep the file's comments
//! byte for byte, its order, owner and mode, and never lose each other's
//! edits; a running gateway applies each at once; `remove` ends the user's
//! sessions and forgets their second factors in the store (the memory store
//! through the gateway's admin endpoint, Redis through it or directly), and
//! `list` shows them with the account's lock. The real binary, as separate
//! processes, over real sockets.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::assert_eventually;
use support::eventually::poll;
use support::flow::{Backend, Harness, Options, PASSWORD};

const BOB_PASSWORD: &str = "bobs-password-1";
const STRONG: &str = "copper kettle under the stairs";

/// Runs the binary with `args` from an empty directory, feeding `stdin`.
fn portcullis(args: &[&str], stdin: Option<&str>) -> Output {
    let child = spawn(args, stdin.is_some());
    finish(child, stdin)
}

fn spawn(args: &[&str], with_stdin: bool) -> std::process::Child {
    let dir = std::env::temp_dir();
    Command::new(support::binary())
        .args(args)
        .current_dir(dir)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(if with_stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(mut child: std::process::Child, stdin: Option<&str>) -> Output {
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

#[track_caller]
fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
    stdout(o)
}

fn am_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The docker example's users file (all comments), copied to a temp dir.
fn docker_users_file(dir: &Path) -> (PathBuf, String) {
    let original =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/docker/users/users.toml")).unwrap();
    assert!(original.lines().all(|l| l.starts_with('#')), "the example is comments only:\n{original}");
    let path = dir.join("users.toml");
    std::fs::write(&path, &original).unwrap();
    (path, original)
}

// ---- the file as the operator wrote it ----

#[test]
fn every_command_keeps_the_docker_users_files_comments_owner_and_mode() {
    for mode in [0o644, 0o640] {
        let dir = tempfile::tempdir().unwrap();
        let (path, original) = docker_users_file(dir.path());
        let file = path.to_str().unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        if am_root() {
            // The container's user, not the one running the command.
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        }
        let owner = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            (m.uid(), m.gid(), m.permissions().mode() & 0o7777)
        };
        let before = owner(&path);

        let out = portcullis(
            &["user", "add", "alice", "--email", "alice@example.com", "--groups", "admins", "--users-file", file],
            Some(&format!("{STRONG}\n")),
        );
        assert_eq!(ok(&out), format!("Added user alice to {file}\n"));
        let text = std::fs::read_to_string(&path).unwrap();
        let added = text.strip_prefix(&original).unwrap_or_else(|| panic!("the comments changed:\n{text}"));
        assert!(
            added.starts_with("\n[users.alice]\nemail = \"alice@example.com\"\npassword = \"$argon2id$"),
            "{added}"
        );
        assert!(added.ends_with("\"\ngroups = [\"admins\"]\ndisabled = false\n"), "{added}");
        assert_eq!(owner(&path), before, "mode {mode:o}: owner, group and mode kept");

        // Every other command that writes it keeps all of that as well.
        let steps: [(&[&str], Option<&str>, &str); 5] = [
            (&["user", "add", "bob", "--email", "bob@example.com"], Some(STRONG), "Added user bob"),
            (&["user", "passwd", "alice", "--stdin"], Some("a different kettle, far upstairs"), "Changed the password"),
            (&["user", "disable", "bob"], None, "Disabled user bob"),
            (&["user", "enable", "bob"], None, "Enabled user bob"),
            (&["user", "remove", "alice", "--file-only"], None, "Removed user alice"),
        ];
        for (args, stdin, said) in steps {
            let mut args = args.to_vec();
            args.extend(["--users-file", file]);
            let out = portcullis(&args, stdin.map(|p| format!("{p}\n")).as_deref());
            assert!(ok(&out).starts_with(said), "{args:?}: {}", stdout(&out));
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with(&original), "{args:?} changed the comments:\n{text}");
            assert_eq!(owner(&path), before, "{args:?}: owner, group and mode kept");
        }
        let dir_listing: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(dir_listing, ["users.toml"], "no lock or temporary file is left beside it");
        let users = portcullis::auth::users::load(&path).unwrap();
        assert!(users.get("alice").is_none());
        assert!(!users.get("bob").unwrap().disabled);
    }
}

/// Two `user add`s started together, many times over: flock serializes them
/// on the file they replace, so neither edit is lost.
#[test]
fn two_user_adds_started_together_both_land() {
    let dir = tempfile::tempdir().unwrap();
    let (path, original) = docker_users_file(dir.path());
    let file = path.to_str().unwrap();
    let rounds = 20;
    for round in 0..rounds {
        let names = [format!("a{round}"), format!("b{round}")];
        let emails: Vec<String> = names.iter().map(|n| format!("{n}@example.com")).collect();
        let children: Vec<_> = names
            .iter()
            .zip(&emails)
            .map(|(n, e)| spawn(&["user", "add", n, "--email", e, "--users-file", file], true))
            .collect();
        // Both are running before either gets its password, so their writes meet.
        for child in children {
            let out = finish(child, Some(&format!("{STRONG}\n")));
            ok(&out);
        }
    }
    let users = portcullis::auth::users::load(&path).unwrap();
    assert_eq!(users.len(), 2 * rounds, "every add landed");
    assert!(std::fs::read_to_string(&path).unwrap().starts_with(&original));
}

/// Another writer (say the gateway setting a reset password) holds the lock
/// while two `user add`s arrive: they wait, and when that writer has renamed
/// its new file into place and let go, each starts over on the new file (the
/// lock they waited for guarded the inode that was replaced), so all three
/// edits land.
#[test]
fn a_writer_waits_for_the_lock_and_then_edits_the_file_that_replaced_the_locked_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    let bob = ("bob", "bob@example.com", BOB_PASSWORD, &[][..]);
    support::write_users(&path, &[bob]);
    let original = std::fs::read(&path).unwrap();
    let held = std::fs::File::open(&path).unwrap();
    held.lock().unwrap();

    let file = path.to_str().unwrap();
    let mut adds: Vec<_> = ["dave", "erin"]
        .iter()
        .map(|n| {
            let child = spawn(&["user", "add", n, "--email", &format!("{n}@example.com"), "--users-file", file], true);
            use std::io::Write;
            let mut child = child;
            child.stdin.take().unwrap().write_all(format!("{STRONG}\n").as_bytes()).unwrap();
            child
        })
        .collect();
    // Long enough to hash the passwords (about 0.1 s each) and reach the lock.
    std::thread::sleep(Duration::from_secs(2));
    for add in &mut adds {
        assert!(add.try_wait().unwrap().is_none(), "a writer went ahead while the lock was held");
    }
    assert_eq!(std::fs::read(&path).unwrap(), original, "nothing was written meanwhile");

    // The holder's own write: a new file renamed over the old, then the lock let go.
    let next = dir.path().join("next.toml");
    support::write_users(&next, &[bob, ("carol", "carol@example.com", STRONG, &[])]);
    std::fs::rename(&next, &path).unwrap();
    drop(held);

    for add in adds {
        ok(&add.wait_with_output().unwrap());
    }
    let users = portcullis::auth::users::load(&path).unwrap();
    let mut names: Vec<&str> =
        ["bob", "carol", "dave", "erin"].into_iter().filter(|n| users.get(n).is_some()).collect();
    names.sort();
    assert_eq!(names, ["bob", "carol", "dave", "erin"], "every edit landed");
}

#[test]
fn an_unknown_user_gets_a_clear_error_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    support::write_users(&users, &[("bob", "bob@example.com", BOB_PASSWORD, &[])]);
    let file = users.to_str().unwrap();
    let original = std::fs::read(&users).unwrap();
    let cases: [(&[&str], Option<&str>); 4] = [
        (&["user", "passwd", "nobody", "--stdin"], Some(STRONG)),
        (&["user", "disable", "nobody"], None),
        (&["user", "enable", "nobody"], None),
        (&["user", "remove", "nobody"], None),
    ];
    for (args, stdin) in cases {
        let mut args = args.to_vec();
        args.extend(["--users-file", file]);
        let out = portcullis(&args, stdin.map(|p| format!("{p}\n")).as_deref());
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert_eq!(stderr(&out), format!("error: NAME: no user \"nobody\" in {file}\n"), "{args:?}");
    }
    // And a user still in the file cannot be forgotten in the store alone.
    let out = portcullis(&["user", "remove", "bob", "--store-only", "--users-file", file], None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("still in"), "{}", stderr(&out));
    // A weak new password is refused like `user add` refuses it.
    let out = portcullis(&["user", "passwd", "bob", "--stdin", "--users-file", file], Some("bob\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("too weak") && stderr(&out).contains("--allow-weak"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&users).unwrap(), original, "a refused command leaves the file alone");
}

// ---- with a running gateway ----

/// The harness's config as an operator's file would have it: naming the
/// metrics listener's real address (the harness binds port 0).
fn operator_config(h: &Harness) -> PathBuf {
    let metrics = h.gw.metrics_addr.as_ref().expect("metrics listener");
    let text = h.config.replace("metrics_listen = \"127.0.0.1:0\"", &format!("metrics_listen = \"{metrics}\""));
    let path = h.gw.dir.path().join("operator.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn login_status(h: &Harness, user: &str, password: &str) -> (StatusCode, Value) {
    h.post_as(&support::client(), "/_auth/api/send-login-otp", json!({"username_or_email": user, "password": password}))
        .await
}

async fn app_status(h: &Harness, c: &reqwest::Client) -> StatusCode {
    c.get(h.url("/app")).send().await.unwrap().status()
}

/// Waits (up to `limit`) for `c`'s session to be refused; returns how long it took.
async fn refused_within(h: &Harness, c: &reqwest::Client, limit: Duration) -> Duration {
    let since = Instant::now();
    let refused = async || match app_status(h, c).await {
        StatusCode::UNAUTHORIZED => true,
        status => {
            assert_eq!(status, 200);
            false
        }
    };
    assert_eventually!(within limit, refused().await, "the session still works after {limit:?}");
    since.elapsed()
}

/// `user list`'s rows split on whitespace, header first.
fn table(out: &Output) -> Vec<Vec<String>> {
    stdout(out).lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

fn row<'a>(rows: &'a [Vec<String>], name: &str) -> &'a [String] {
    rows.iter().find(|r| r[0] == name).unwrap_or_else(|| panic!("no row for {name}: {rows:?}"))
}

support::on_both_stores!(
    user_passwd_ends_the_users_sessions_at_once_and_the_new_password_logs_in,
    user_remove_ends_sessions_and_forgets_the_second_factors_and_list_shows_them,
);

async fn user_passwd_ends_the_users_sessions_at_once_and_the_new_password_logs_in(b: Backend) {
    let Some(h) = Harness::start(b, Options { policy: "one_factor", ..Default::default() }).await else { return };
    let bob = h.login_client("bob", BOB_PASSWORD, "laptop").await;
    let testuser = h.login_client("testuser", PASSWORD, "laptop").await;
    let new = "a brand new bob password";
    let out = portcullis(
        &["user", "passwd", "bob", "--stdin", "--users-file", h.users.to_str().unwrap()],
        Some(&format!("{new}\n")),
    );
    assert_eq!(ok(&out), format!("Changed the password of user bob in {}\n", h.users.display()));
    assert!(!stdout(&out).contains(new) && !stderr(&out).contains(new));
    // Renamed into place, the file applies at once; a change that must settle
    // would take 250 ms.
    let took = refused_within(&h, &bob, Duration::from_millis(150)).await;
    eprintln!("bob's session was refused {took:?} after `user passwd` returned");
    assert_eq!(app_status(&h, &testuser).await, 200, "nobody else's session ends");
    assert_eq!(login_status(&h, "bob", BOB_PASSWORD).await.0, 400, "the old password is refused");
    h.login_client("bob", new, "phone").await;
    let revoked = h.gw.wait_for_record(|r| r["event"] == "session_revoked" && r["user"] == "bob").await;
    let details = revoked.expect("the ending is audited")["details"].as_str().unwrap_or_default().to_owned();
    assert!(details.contains("password changed"), "{details}");
}

async fn user_remove_ends_sessions_and_forgets_the_second_factors_and_list_shows_them(b: Backend) {
    let o = Options {
        policy: "one_factor",
        lockout: Some("ip_failures = \"50/15m\"\naccount_failures = \"3/1h\"\naccount_lock = \"15m\""),
        ..Default::default()
    };
    let Some(h) = Harness::start(b, o).await else { return };
    let config = operator_config(&h);
    let cfg = config.to_str().unwrap();
    // Bob turns on e-mailed codes (and gets backup codes); testuser gets locked.
    let bob = h.login_client("bob", BOB_PASSWORD, "laptop").await;
    h.enable_2fa(&bob).await;
    for _ in 0..3 {
        assert_eq!(login_status(&h, "testuser", "wrong").await.0, 400);
    }

    let out = portcullis(&["user", "list", "--config", cfg], None);
    let rows = table(&out);
    assert_eq!(rows[0], ["NAME", "EMAIL", "GROUPS", "STATE", "FACTORS", "LOCKED"], "{}", stdout(&out));
    assert_eq!(row(&rows, "bob")[3..], ["active", "email,backup:8", "no"], "{}", stdout(&out));
    assert_eq!(row(&rows, "testuser")[3..], ["active", "none", "15m"], "{}", stdout(&out));
    assert_eq!(stderr(&out), "", "the gateway answered");

    let out = portcullis(&["user", "remove", "bob", "--config", cfg], None);
    assert_eq!(
        ok(&out),
        format!(
            "Removed user bob from {}\nEnded the sessions of bob and forgot their second factors: \
             e-mailed codes, 8 backup codes\n",
            h.users.display()
        )
    );
    assert_eq!(app_status(&h, &bob).await, 401, "bob's session ended before the command returned");
    assert!(h.gw.wait_for_record(|r| r["event"] == "account_removed" && r["user"] == "bob").await.is_some());

    // Someone given the name later starts without bob's second factors.
    let out = portcullis(
        &["user", "add", "bob", "--email", "bob@example.com", "--stdin", "--users-file", h.users.to_str().unwrap()],
        Some(&format!("{STRONG}\n")),
    );
    ok(&out);
    // Until the gateway has read the new bob (400: no such user yet).
    let mut last = (StatusCode::BAD_REQUEST, Value::Null);
    let read = async || {
        last = login_status(&h, "bob", STRONG).await;
        (last.0 != 400).then_some(())
    };
    let _ = poll(Duration::from_secs(5), read).await;
    let (status, v) = last;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["otp_required"], false, "no e-mailed code is asked of the new bob: {v}");
    let rows = table(&portcullis(&["user", "list", "--config", cfg], None));
    assert_eq!(row(&rows, "bob")[4], "none", "{rows:?}");
}

/// `enable` undoes `disable`: the user logs in again (and a session from
/// before stays ended).
#[tokio::test]
async fn user_disable_and_enable_round_trip() {
    let h = Harness::start(Backend::Memory, Options { policy: "one_factor", ..Default::default() }).await.unwrap();
    let file = h.users.to_str().unwrap();
    let bob = h.login_client("bob", BOB_PASSWORD, "laptop").await;
    assert_eq!(
        ok(&portcullis(&["user", "disable", "bob", "--users-file", file], None)),
        format!("Disabled user bob in {file}\n")
    );
    refused_within(&h, &bob, Duration::from_millis(500)).await;
    assert_eq!(
        ok(&portcullis(&["user", "disable", "bob", "--users-file", file], None)),
        format!("User bob was already disabled in {file}\n")
    );
    assert_eventually!(
        within Duration::from_secs(5),
        login_status(&h, "bob", BOB_PASSWORD).await.0 == StatusCode::FORBIDDEN,
        "bob is not refused as disabled"
    );
    assert_eq!(
        ok(&portcullis(&["user", "enable", "bob", "--users-file", file], None)),
        format!("Enabled user bob in {file}\n")
    );
    assert_eventually!(
        within Duration::from_secs(5),
        login_status(&h, "bob", BOB_PASSWORD).await.0 == StatusCode::OK,
        "bob cannot log in after enable"
    );
    assert_eq!(app_status(&h, &bob).await, 401, "the session from before stays ended");
    assert!(!portcullis::auth::users::load(&h.users).unwrap().get("bob").unwrap().disabled);
}

// ---- with no gateway running ----

/// A config whose admin endpoint has nobody listening, on `store_url`.
fn offline_config(dir: &Path, users: &Path, store: &str) -> PathBuf {
    let path = dir.join("portcullis.toml");
    let text = format!(
        "[server]\nmetrics_listen = \"127.0.0.1:{}\"\n[auth]\nsecret = \"{}\"\nusers_file = \"{}\"\n[store]\n{store}\n",
        support::free_port(),
        support::SECRET,
        users.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Without a gateway, `list` and `remove` work on the store itself: Redis,
/// or the memory store's state file (which only a running gateway holds
/// otherwise).
#[tokio::test]
async fn with_no_gateway_running_list_and_remove_work_on_the_store_itself() {
    use portcullis::config::{Secret, StoreConfig};
    let Some(redis) = support::redis::server_or_skip("no gateway running") else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let stores = [
        (format!("url = \"{}\"", redis.url()), StoreConfig { url: Secret::new(redis.url()), ..Default::default() }),
        (
            format!("url = \"memory://\"\nstate_file = \"{}\"", state.display()),
            StoreConfig { state_file: Some(state.clone()), ..Default::default() },
        ),
    ];
    for (toml, store_config) in stores {
        let users = dir.path().join("users.toml");
        support::write_users(&users, &[("bob", "bob@example.com", BOB_PASSWORD, &[])]);
        {
            let store = portcullis::store::Store::open(&store_config).await.unwrap();
            store.enable_totp("bob", "sealed", 1).await.unwrap();
        }
        let config = offline_config(dir.path(), &users, &toml);
        let cfg = config.to_str().unwrap();
        let rows = table(&portcullis(&["user", "list", "--config", cfg], None));
        assert_eq!(row(&rows, "bob")[3..], ["active", "app", "no"], "{toml}: {rows:?}");
        let out = portcullis(&["user", "remove", "bob", "--config", cfg], None);
        assert!(ok(&out).ends_with("forgot their second factors: authenticator app\n"), "{toml}: {}", stdout(&out));
        let store = portcullis::store::Store::open(&store_config).await.unwrap();
        assert!(!store.user_state("bob").await.unwrap().totp_enabled, "{toml}: forgotten");
    }
}

/// `remove` finds the store before it touches the file: a store that does not
/// answer changes nothing.
#[test]
fn user_remove_changes_nothing_when_the_store_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    support::write_users(&users, &[("bob", "bob@example.com", BOB_PASSWORD, &[])]);
    let original = std::fs::read(&users).unwrap();
    let dead = format!("url = \"redis://127.0.0.1:{}/0\"\ntimeout = \"1s\"", support::free_port());
    let config = offline_config(dir.path(), &users, &dead);
    let out = portcullis(&["user", "remove", "bob", "--config", config.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("nothing was changed"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&users).unwrap(), original);
}
