//! The operator's first steps on the command line: `init` writes a config that
//! passes `check-config` and serves, `user add` fills its users file, and a
//! browser is sent to log in; `completions`, `man` and `healthcheck` do what a
//! package and a container image rely on them for.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use reqwest::StatusCode;
use serde_json::json;
use support::eventually::{PATIENCE, eventually};
use support::upstream::Upstream;
use support::{Gateway, client, find_code, free_port};

fn portcullis(args: &[&str], dir: &Path) -> Output {
    Command::new(support::binary())
        .args(args)
        .current_dir(dir)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn secret_of(config: &str) -> String {
    let line = config.lines().find(|l| l.starts_with("secret = ")).expect("secret line");
    line.trim_start_matches("secret = ").trim_matches('"').to_string()
}

/// `user add` reading the password from stdin, as a script would.
fn user_add(dir: &Path, users: &Path, name: &str, email: &str, password: &str) {
    use std::io::Write;
    let mut child = Command::new(support::binary())
        .args(["user", "add", name, "--email", email, "--users-file"])
        .arg(users)
        .current_dir(dir)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "user add: {}", text(&out.stderr));
}

#[tokio::test]
async fn init_writes_a_config_that_checks_serves_and_protects_the_app() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let out =
        portcullis(&["init", site.to_str().unwrap(), "--upstream", &up.url(), "--public-url", &public], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config_path = site.join("portcullis.toml");
    let users_path = site.join("users.toml");

    // It says what to run next, with the paths it wrote.
    let stdout = text(&out.stdout);
    for step in [
        format!("portcullis user add alice --email alice@example.com --users-file {}", users_path.display()),
        format!("portcullis check-config --config {}", config_path.display()),
        format!("portcullis serve --config {}", config_path.display()),
    ] {
        assert!(stdout.contains(&step), "missing {step:?} in:\n{stdout}");
    }
    // Both files hold secrets (the key; password hashes), so only their owner reads them.
    assert_eq!(mode(&config_path), 0o600);
    assert_eq!(mode(&users_path), 0o600);
    let config = std::fs::read_to_string(&config_path).unwrap();
    let secret = secret_of(&config);
    assert!(secret.len() >= 64, "{secret}");

    user_add(dir.path(), &users_path, "alice", "alice@example.com", "alice-password-1");

    // check-config from an unrelated directory: the paths inside are absolute.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = portcullis(&["check-config", "--config", config_path.to_str().unwrap()], elsewhere.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains(&secret), "check-config printed the secret");

    // Serve it as written (the metrics port moved off the fixed default, so
    // parallel tests do not collide); a second directory starts the process.
    let run = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(run, &config, &[("PORTCULLIS_SERVER__METRICS_LISTEN", "127.0.0.1:0")]);
    assert_eq!(gw.addr, format!("127.0.0.1:{port}"));

    // A browser is sent to log in, and comes back where it was going.
    let http = client();
    let r = http.get(format!("{public}/app?x=1")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("{public}/_auth/login?rd=")), "{location}");
    assert_eq!(up.hits(), 0);

    // Password, then the code the console "e-mail" printed: the app sees Alice.
    let r = http
        .post(format!("{public}/_auth/api/send-login-otp"))
        .header("Origin", &public)
        .json(&json!({"username_or_email": "alice", "password": "alice-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let code = eventually("a code on the console", PATIENCE, async || find_code(&gw.stdout(), 6)).await;
    let r = http
        .post(format!("{public}/_auth/api/verify-login-otp"))
        .header("Origin", &public)
        .json(&json!({"otp_code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let echo: serde_json::Value = http.get(format!("{public}/app?x=1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(echo["headers"]["remote-user"], json!(["alice"]), "{echo}");

    // The container health check finds it through the same config file.
    let out = Command::new(support::binary())
        .args(["healthcheck", "--config", config_path.to_str().unwrap()])
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn init_refuses_to_overwrite_and_leaves_the_directory_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, "# mine\n").unwrap();
    let out = portcullis(&["init", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("users.toml already exists"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&users).unwrap(), "# mine\n");
    assert!(!dir.path().join("portcullis.toml").exists());

    // And once it has written, a second run changes nothing.
    let other = tempfile::tempdir().unwrap();
    assert_eq!(portcullis(&["init"], other.path()).status.code(), Some(0));
    let before = std::fs::read_to_string(other.path().join("portcullis.toml")).unwrap();
    let out = portcullis(&["init"], other.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("portcullis.toml already exists"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(other.path().join("portcullis.toml")).unwrap(), before);
}

#[test]
fn every_init_gets_its_own_secret() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [&a, &b] {
        assert_eq!(portcullis(&["init"], d.path()).status.code(), Some(0));
    }
    let secret = |d: &tempfile::TempDir| secret_of(&std::fs::read_to_string(d.path().join("portcullis.toml")).unwrap());
    assert_ne!(secret(&a), secret(&b));
}

#[test]
fn init_names_the_flag_of_a_bad_url() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [("--upstream", "127.0.0.1:3000"), ("--public-url", "ftp://auth.example.com")] {
        let out = portcullis(&["init", ".", flag, value], dir.path());
        assert_eq!(out.status.code(), Some(1), "{flag}");
        assert!(text(&out.stderr).contains(flag), "{}", text(&out.stderr));
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written");
}

#[test]
fn bash_completion_loads_and_offers_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let out = portcullis(&["completions", "bash"], dir.path());
    assert!(out.status.success());
    let script = dir.path().join("portcullis.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // Source it in a real bash and ask for the words after `portcullis `.
    let probe = format!(
        "source {}; COMP_WORDS=(portcullis ''); COMP_CWORD=1; COMP_LINE='portcullis '; COMP_POINT=11; \
         _portcullis portcullis '' portcullis; printf '%s\\n' \"${{COMPREPLY[@]}}\"; complete -p portcullis",
        script.display()
    );
    let out = Command::new("bash").args(["--noprofile", "--norc", "-c", &probe]).output().unwrap();
    let words = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for sub in ["serve", "init", "check-config", "user", "healthcheck", "man", "completions"] {
        assert!(words.lines().any(|l| l == sub), "{sub} not offered:\n{words}");
    }
    let registered = words.lines().last().unwrap_or_default();
    assert!(registered.starts_with("complete ") && registered.ends_with("-F _portcullis portcullis"), "{words}");
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, header) in [("zsh", "#compdef portcullis"), ("fish", "complete -c portcullis")] {
        let out = portcullis(&["completions", shell], dir.path());
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        assert!(script.starts_with(header) || script.contains(header), "{shell}:\n{script}");
        for sub in ["serve", "demo", "init", "check-config", "hash-password", "user", "sessions", "healthcheck"] {
            assert!(script.contains(sub), "{shell} lacks {sub}");
        }
    }
    assert_eq!(portcullis(&["completions", "tcsh"], dir.path()).status.code(), Some(1));
}

#[test]
fn man_prints_a_section_1_page_listing_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = portcullis(&["man"], dir.path());
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(page.contains(".TH portcullis 1"), "{page}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH SUBCOMMANDS", ".SH VERSION"] {
        assert!(page.contains(section), "{section} missing");
    }
    for sub in ["portcullis\\-init", "portcullis\\-serve", "portcullis\\-check\\-config", "portcullis\\-healthcheck"] {
        assert!(page.contains(sub), "{sub} missing");
    }
}

#[test]
fn man_out_dir_writes_a_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = portcullis(&["man", "--out-dir", "man1"], dir.path());
    let dir = dir.path().join("man1");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for page in ["portcullis.1", "portcullis-init.1", "portcullis-user-add.1", "portcullis-healthcheck.1"] {
        let roff = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        let name = page.trim_end_matches(".1");
        assert!(roff.contains(&format!(".TH {name} 1")), "{page}:\n{roff}");
    }
    let init = std::fs::read_to_string(dir.join("portcullis-init.1")).unwrap();
    assert!(init.contains("\\-\\-public\\-url"), "{init}");
}

#[test]
fn healthcheck_fails_when_nothing_answers_or_the_answer_is_not_ok() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = portcullis(&["healthcheck", "--url", &format!("http://127.0.0.1:{port}/_auth/healthz")], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("refused"), "{}", text(&out.stderr));

    // Something that answers, but not 200.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").unwrap();
    });
    let out = portcullis(&["healthcheck", "--url", &format!("http://{addr}/_auth/healthz")], dir.path());
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("status 503"), "{}", text(&out.stderr));
}

/// Two gateways initialised on one host with their own listeners both serve,
/// each with its own metrics.
#[tokio::test]
async fn init_listen_flags_let_two_instances_share_a_host() {
    let dir = tempfile::tempdir().unwrap();
    let mut gateways = Vec::new();
    for name in ["a", "b"] {
        let (port, metrics) = (free_port(), free_port());
        let site = dir.path().join(name);
        let out = portcullis(
            &[
                "init",
                site.to_str().unwrap(),
                "--public-url",
                &format!("https://{name}.example.com"),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-listen",
                &format!("127.0.0.1:{metrics}"),
            ],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // A public URL the gateway does not answer itself: the output says why.
        let said = text(&out.stdout);
        assert!(said.contains(&format!("https://{name}.example.com reaches it only once your proxy")), "{said}");
        assert!(said.contains(&format!("curl -s http://127.0.0.1:{port}/_auth/healthz")), "{said}");
        assert!(said.contains(&format!("Prometheus scrapes http://127.0.0.1:{metrics}/metrics")), "{said}");
        let config = std::fs::read_to_string(site.join("portcullis.toml")).unwrap();
        let gw = Gateway::start_in(tempfile::tempdir().unwrap(), &config, &[]);
        assert_eq!(gw.addr, format!("127.0.0.1:{port}"));
        gateways.push((gw, metrics));
    }
    let http = client();
    for (gw, metrics) in &gateways {
        let r = http.get(format!("http://{}/_auth/healthz", gw.addr)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let m = http.get(format!("http://127.0.0.1:{metrics}/metrics")).send().await.unwrap();
        assert_eq!(m.status(), StatusCode::OK);
        assert!(m.text().await.unwrap().contains("portcullis_build_info"));
    }
}

#[test]
fn init_refuses_a_bad_listen_address_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = portcullis(&["init", "site", "--listen", "localhost:8080"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--listen \"localhost:8080\": not an address"), "{}", text(&out.stderr));
    let out = portcullis(&["init", "site", "--metrics-listen", "127.0.0.1:8080"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--metrics-listen 127.0.0.1:8080: must differ"), "{}", text(&out.stderr));
    assert!(!dir.path().join("site/portcullis.toml").exists(), "nothing written");
}
