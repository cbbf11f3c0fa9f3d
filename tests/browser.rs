//! Real headless Chromium (Debian's) through the pages, with JavaScript on and
//! off, driven by tests/browser/flow.mjs (playwright-core). Codes come from the
//! SMTP sink and are handed to the script when it asks. tests/browser/totp.mjs
//! sets up an authenticator app and signs in with it, computing the codes
//! itself from the secret the page shows. tests/browser/passkey.mjs adds a
//! passkey with Chromium's virtual authenticator and signs in with it.
//! tests/browser/reset.mjs walks "forgot your password?" through the e-mailed
//! code to signing in with the new password. Screenshots land in
//! `target/tmp/browser-screenshots`.

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
    let mut child = tokio::process::Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser").join(script))
        .arg(&h.origin)
        .arg(js)
        .arg(digits.to_string())
        .arg(h.up.url().replace("127.0.0.1", "localhost"))
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
                let code = h.code_from_mail(seen).await;
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
