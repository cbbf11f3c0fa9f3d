//! Real headless Chromium (Debian's) through the pages, with JavaScript on and
//! off, driven by tests/browser/flow.mjs (playwright-core). Codes come from the
//! SMTP sink and are handed to the script when it asks. tests/browser/totp.mjs
//! sets up an authenticator app and signs in with it, computing the codes
//! itself from the secret the page shows. tests/browser/passkey.mjs adds a
//! passkey with Chromium's virtual authenticator and signs in with it.
//! The scripts share tests/browser/harness.mjs (the browser, checks, codes).
//! tests/browser/reset.mjs walks "forgot your password?" through the e-mailed
//! code to signing in with the new password. Screenshots land in
//! `target/tmp/browser-screenshots`.
//! tests/browser/console.mjs has an operator unlock a locked user in the
//! operator console and search the audit trail, keeping screenshots of each
//! step under the target directory (`tmp/browser-screenshots/`).

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::flow::{Backend, Harness, Options};
use support::proxies::find_program;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn browser_ready() -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let missing: Vec<&str> = [
        ("chromium", find_program("chromium", &["/usr/bin/chromium"]).is_some()),
        ("node", find_program("node", &[]).is_some()),
        ("playwright-core", root.join("tests/browser/node_modules/playwright-core").is_dir()),
    ]
    .iter()
    .filter(|(_, ok)| !ok)
    .map(|(n, _)| *n)
    .collect();
    if missing.is_empty() {
        return true;
    }
    support::skip::skip(&format!("browser tests need {missing:?} (scripts/test installs them)"));
    false
}

/// Where the scripts keep their screenshots (test artefacts).
fn shots() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    dir
}

async fn run_flow(js: &str, digits: usize) {
    run_script("flow.mjs", js, Options { digits, ..Options::default() }).await;
}

async fn run_script(script: &str, js: &str, options: Options) {
    if !browser_ready() {
        return;
    }
    let digits = options.digits;
    let Some(h) = Harness::start(Backend::Memory, options).await else { return };
    let args = [js.to_owned(), digits.to_string(), h.up.url().replace("127.0.0.1", "localhost")];
    drive(&h, script, &args, 0).await;
}

/// Runs `script` with the gateway's origin and `args`, answering each
/// "NEED_CODE" with the next code e-mailed after the first `mails_before`.
async fn drive(h: &Harness, script: &str, args: &[String], mails_before: usize) {
    let js = &args[0];
    let mut child = tokio::process::Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser").join(script))
        .arg(&h.origin)
        .args(args)
        .env("SHOTS", shots())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = 0;
    let mut transcript = String::new();
    let result = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = out.next_line().await.unwrap() {
            transcript.push_str(&line);
            transcript.push('\n');
            if line == "NEED_CODE" {
                seen += 1;
                let code = h.code_from_mail(mails_before + seen).await;
                stdin.write_all(format!("{code}\n").as_bytes()).await.unwrap();
                stdin.flush().await.unwrap();
            }
        }
        child.wait().await.unwrap()
    })
    .await;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = tokio::time::timeout(Duration::from_secs(2), e.read_to_string(&mut err)).await;
    }
    let status = result.unwrap_or_else(|_| panic!("browser flow timed out:\n{transcript}"));
    assert!(status.success() && transcript.contains("OK"), "browser flow (js {js}) failed:\n{transcript}\n{err}");
}

#[tokio::test]
async fn the_whole_flow_works_in_chromium_with_javascript() {
    run_flow("on", 6).await;
}

#[tokio::test]
async fn the_whole_flow_works_in_chromium_without_javascript() {
    run_flow("off", 6).await;
}

#[tokio::test]
async fn eight_digit_codes_work_in_chromium_with_javascript() {
    // The form's pattern, length and words follow otp.digits; the last digit submits.
    run_flow("on", 8).await;
}

#[tokio::test]
async fn an_authenticator_app_is_set_up_and_signs_in_in_chromium_with_javascript() {
    run_script("totp.mjs", "on", Options { policy: "one_factor", ..Options::default() }).await;
}

#[tokio::test]
async fn an_authenticator_app_is_set_up_and_signs_in_in_chromium_without_javascript() {
    run_script("totp.mjs", "off", Options { policy: "one_factor", ..Options::default() }).await;
}

#[tokio::test]
async fn a_passkey_is_added_signs_in_and_is_removed_in_chromium_with_a_virtual_authenticator() {
    let options = Options { policy: "one_factor", public_host: "localhost", ..Options::default() };
    run_script("passkey.mjs", "on", options).await;
}

#[tokio::test]
async fn without_javascript_the_account_page_says_passkeys_need_it() {
    let options = Options { policy: "one_factor", public_host: "localhost", ..Options::default() };
    run_script("passkey.mjs", "off", options).await;
}

#[tokio::test]
async fn a_forgotten_password_is_reset_in_chromium_with_javascript() {
    run_script("reset.mjs", "on", Options { policy: "one_factor", ..Options::default() }).await;
}

#[tokio::test]
async fn a_forgotten_password_is_reset_in_chromium_without_javascript() {
    run_script("reset.mjs", "off", Options { policy: "one_factor", ..Options::default() }).await;
}

/// The operator console: testuser (in the admin group) unlocks carol, who
/// failed three times, and finds it in the audit trail.
async fn run_console(js: &str) {
    if !browser_ready() {
        return;
    }
    let o = Options { lockout: Some("ip_failures = \"50/15m\"\naccount_failures = \"3/1h\""), ..Options::default() };
    let Some(h) = Harness::start(Backend::Memory, o).await else { return };
    support::write_users(
        &h.users,
        &[
            ("testuser", "test@example.com", support::flow::PASSWORD, &["staff", "admins"]),
            ("bob", "bob@example.com", "bobs-password-1", &[]),
            ("carol", "carol@example.com", "carols-password-1", &[]),
        ],
    );
    let reloaded = h.gw.wait_for_log(|l| l.contains("users file reloaded") && l.contains("\"users\":3")).await;
    assert!(reloaded.is_some(), "the gateway reloads the users file");
    let login = |password: &'static str, ip: String| {
        let client = support::client();
        let url = h.url("/_auth/api/send-login-otp");
        let origin = h.origin.clone();
        async move {
            let body = serde_json::json!({"username_or_email": "carol", "password": password});
            let r = client.post(url).header("Origin", origin).header("X-Forwarded-For", ip).json(&body).send().await;
            r.unwrap().status().as_u16()
        }
    };
    for i in 0..3 {
        assert_eq!(login("wrong", format!("198.51.100.{i}")).await, 400);
    }
    assert_eq!(login("carols-password-1", "198.51.100.9".into()).await, 403, "carol is locked");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots").join(format!("console-js-{js}"));
    let _ = std::fs::remove_dir_all(&shots);
    drive(&h, "console.mjs", &[js.to_owned(), shots.display().to_string()], h.smtp.messages().len()).await;
    for step in ["1-users-carol-locked", "2-carol-unlocked", "3-audit-carol-events", "4-audit-carol-failures"] {
        let png = std::fs::read(shots.join(format!("{step}.png"))).unwrap_or_default();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot of {step} in {}", shots.display());
    }
    eprintln!("screenshots of the console: {}", shots.display());
    assert_eq!(login("carols-password-1", "198.51.100.9".into()).await, 200, "carol is unlocked for real");
}

#[tokio::test]
async fn an_operator_unlocks_a_user_and_searches_the_audit_trail_in_chromium_with_javascript() {
    run_console("on").await;
}

#[tokio::test]
async fn an_operator_unlocks_a_user_and_searches_the_audit_trail_in_chromium_without_javascript() {
    run_console("off").await;
}
