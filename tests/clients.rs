//! Real clients with access tokens, through the gateway: curl and Python's
//! `requests` with Bearer and Basic, and `git clone` and `git push` over smart
//! HTTP (`git http-backend` behind a tiny CGI host, tests/support/git_cgi.py),
//! with the token as the password, as a user would set them up.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;
use support::flow::{Backend, Harness, Options, PASSWORD};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// The git server: a child process serving the bare repositories under `root`.
struct GitServer {
    child: std::process::Child,
    port: u16,
}

impl GitServer {
    fn start(root: &Path) -> GitServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/git_cgi.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let port =
            line.trim().strip_prefix("listening on ").and_then(|p| p.parse().ok()).expect("the git server's port");
        GitServer { child, port }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git")
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

support::on_both_stores!(curl_requests_and_git_work_with_a_token_as_their_users_set_them_up);

async fn curl_requests_and_git_work_with_a_token_as_their_users_set_them_up(b: Backend) {
    let repos = tempfile::tempdir().unwrap();
    ok(git(repos.path(), &["init", "--bare", "-q", "--initial-branch=main", "repo.git"]));
    let server = GitServer::start(repos.path());
    // Requests for localhost go to the git server; tokens are taken under /git/ and /dav/.
    let extra = format!(
        "[[access_control.rules]]\npath = \"^/(git|dav)/\"\npolicy = \"two_factor\"\nallow_tokens = true\n\
         [[upstream]]\nurl = \"http://127.0.0.1:{}\"\nhost = \"localhost\"\n",
        server.port
    );
    let options = Options { policy: "one_factor", resend_cooldown: "0s", extra, ..Default::default() };
    let Some(h) = Harness::start(b, options).await else { return };
    let c = h.two_factor_client("testuser", PASSWORD, FIREFOX).await;
    let (s, v) = h.post_as(&c, "/_auth/api/tokens", json!({"name": "tools", "password": PASSWORD})).await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let port = h.origin.rsplit(':').next().unwrap().to_owned();

    // curl, as a monitor would run it.
    let curl = |args: &[&str]| {
        let out = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]).args(args).output();
        String::from_utf8_lossy(&out.expect("curl").stdout).into_owned()
    };
    let dav = h.url("/dav/calendar");
    assert_eq!(curl(&["-H", &format!("Authorization: Bearer {token}"), &dav]), "200");
    assert_eq!(curl(&["-u", &format!("testuser:{token}"), &dav]), "200");
    assert_eq!(curl(&["-u", &format!("testuser:{PASSWORD}"), &dav]), "401", "never the password");

    // Python's requests, as a script would.
    let script = r#"
import sys, requests
url, token = sys.argv[1], sys.argv[2]
bearer = requests.get(url, headers={"Authorization": "Bearer " + token}, timeout=10)
basic = requests.get(url, auth=("testuser", token), timeout=10)
wrong = requests.get(url, auth=("testuser", "not-a-token"), timeout=10)
print(bearer.status_code, basic.status_code, wrong.status_code, basic.json()["headers"]["remote-user"][0])
"#;
    let out = ok(Command::new("python3").arg("-c").arg(script).arg(&dav).arg(&token).output().expect("python3"));
    assert_eq!(out.trim(), "200 200 401 testuser");

    // git over smart HTTP, the token as the password.
    let work = tempfile::tempdir().unwrap();
    let url = format!("http://testuser:{token}@localhost:{port}/git/repo.git");
    ok(git(work.path(), &["clone", "-q", &url, "clone"]));
    let clone = work.path().join("clone");
    std::fs::write(clone.join("README"), "through the gate\n").unwrap();
    ok(git(&clone, &["add", "README"]));
    ok(git(&clone, &["-c", "user.name=Test", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first"]));
    ok(git(&clone, &["push", "-q", "origin", "HEAD:main"]));
    let pushed = ok(git(&repos.path().join("repo.git"), &["log", "--format=%s", "main"]));
    assert_eq!(pushed.trim(), "first", "the push landed");
    let again = tempfile::tempdir().unwrap();
    ok(git(again.path(), &["clone", "-q", &url, "second"]));
    assert!(again.path().join("second/README").exists(), "and clones back");

    let wrong = format!("http://testuser:{PASSWORD}@localhost:{port}/git/repo.git");
    let refused = git(again.path(), &["clone", "-q", &wrong, "third"]);
    assert!(!refused.status.success(), "the password is refused");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401") || !again.path().join("third/README").exists());
}
