//! The command line: exit codes and messages of SPEC §1.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::{Command, Stdio};

fn portcullis(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(dir)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_bad_config_exits_1_and_names_the_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[session]\nidle_timeout = \"soon\"\n[server]\nlisten_port = 1\n").unwrap();
    let out = portcullis(&["serve", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("server.listen_port") || err.contains("session.idle_timeout"), "{err}");

    let out = portcullis(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_missing_secret_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let out = portcullis(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.secret"));
}

#[test]
fn env_vars_override_the_file_and_check_config_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    support::empty_users(dir.path());
    std::fs::write(&path, format!("[auth]\nsecret = \"{}\"\nusers_file = \"users.toml\"\n", support::SECRET)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check-config", "--config", path.to_str().unwrap()])
        .env("PORTCULLIS_STORE__URL", "redis://:hunter2@127.0.0.1:6390/0")
        .env("PORTCULLIS_RATE_LIMIT__LOGIN", "7/2m")
        .env("PORTCULLIS_REQUIRE_SERVICES", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("login = \"7/2m\""), "{stdout}");
    assert!(stdout.contains("127.0.0.1:6390"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(!stdout.contains(support::SECRET), "{stdout}");
}

#[test]
fn an_unknown_env_key_is_rejected_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check-config"])
        .current_dir(dir.path())
        .env_remove("PORTCULLIS_CONFIG")
        .env("PORTCULLIS_AUTH__SECRET", support::SECRET)
        .env("PORTCULLIS_SESSION__IDLE", "1h")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("session.idle"));
}

#[test]
fn hash_password_prints_an_argon2id_phc_string() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"correct horse battery staple\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
}

#[test]
fn unknown_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = portcullis(&["serve", "--no-such-flag"], dir.path());
    assert_eq!(out.status.code(), Some(1));
}

/// A config delivering by SMTP to an internal relay, trusting `ca_file`.
fn smtp_ca_config(dir: &std::path::Path, ca_file: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("p.toml");
    support::empty_users(dir);
    let text = format!(
        "[auth]\nsecret = \"{}\"\nusers_file = \"users.toml\"\n[mail]\ntransport = \"smtp\"\nsmtp_host = \"smtp.internal\"\nsmtp_ca_file = \"{}\"\n",
        support::SECRET,
        ca_file.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_missing_or_garbage_smtp_ca_file_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    for (ca, why) in [(dir.path().join("missing.pem"), "not found"), (garbage, "no PEM certificate")] {
        let config = smtp_ca_config(dir.path(), &ca);
        let out = portcullis(&["check-config", "--config", config.to_str().unwrap()], dir.path());
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("mail.smtp_ca_file") && err.contains(why), "{err}");
    }
}

#[test]
fn check_config_prints_the_smtp_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _key) = support::self_signed(dir.path(), "relay");
    let config = smtp_ca_config(dir.path(), &ca);
    let out = portcullis(&["check-config", "--config", config.to_str().unwrap()], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("smtp_ca_file = \"{}\"", ca.display())), "{stdout}");
}

/// A config in one directory naming its files relatively, and a command run
/// from another: the files are found beside the config.
fn config_with_relative_paths(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir(site.path().join("data")).unwrap();
    support::empty_users(site.path());
    let config = site.path().join("portcullis.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         [auth]\nsecret = \"{}\"\nusers_file = \"users.toml\"\n\
         [store]\nstate_file = \"data/state.json\"\n{extra}",
        support::SECRET
    );
    std::fs::write(&config, text).unwrap();
    (site, config)
}

#[test]
fn relative_paths_in_the_config_are_relative_to_its_directory_for_check_config_and_serve() {
    let (site, config) = config_with_relative_paths("");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = portcullis(&["check-config", "--config", config.to_str().unwrap()], elsewhere.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let users = site.path().join("users.toml");
    assert!(stdout.contains(&format!("users_file = \"{}\"", users.display())), "{stdout}");
    let state = site.path().join("data/state.json");
    assert!(stdout.contains(&format!("state_file = \"{}\"", state.display())), "{stdout}");

    // serve, from the same other directory, starts and listens.
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .current_dir(elsewhere.path())
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let listening = rx.recv_timeout(std::time::Duration::from_secs(20));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let line = listening.unwrap_or_else(|_| panic!("serve did not start: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(line.starts_with("portcullis listening on http://127.0.0.1:"), "{line}");
}

#[test]
fn check_config_opens_the_files_serve_opens_and_names_the_key_of_a_missing_one() {
    let (site, config) = config_with_relative_paths("");
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::remove_file(site.path().join("users.toml")).unwrap();
    for command in ["check-config", "serve"] {
        let out = portcullis(&[command, "--config", config.to_str().unwrap()], elsewhere.path());
        assert_eq!(out.status.code(), Some(1), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("auth.users_file"), "{command}: {err}");
        assert!(err.contains(&site.path().join("users.toml").display().to_string()), "{command}: {err}");
    }
    // A users file that does not parse, a certificate that is not one, a state
    // file whose directory is missing: each named by its key at once.
    support::empty_users(site.path());
    std::fs::write(site.path().join("users.toml"), "[users.bob]\nemail = 3\n").unwrap();
    std::fs::write(site.path().join("cert.pem"), "not a certificate\n").unwrap();
    std::fs::write(site.path().join("key.pem"), "not a key\n").unwrap();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("data/state.json", "gone/state.json")
        .replace("[auth]", "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n[auth]");
    std::fs::write(&config, text).unwrap();
    let out = portcullis(&["check-config", "--config", config.to_str().unwrap()], elsewhere.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["auth.users_file", "server.tls_cert", "store.state_file"] {
        assert!(err.contains(&format!("  {key}: ")), "{key}: {err}");
    }
    // --no-files checks a config meant for another machine without its files.
    let out = portcullis(&["check-config", "--no-files", "--config", config.to_str().unwrap()], elsewhere.path());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_memory_store_without_a_state_file_is_warned_about_by_check_config_and_serve() {
    let (site, config) = config_with_relative_paths("");
    let out = portcullis(&["check-config", "--config", config.to_str().unwrap()], site.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "a state_file is set");

    let text = std::fs::read_to_string(&config).unwrap().replace("state_file = \"data/state.json\"\n", "");
    std::fs::write(&config, &text).unwrap();
    let out = portcullis(&["check-config", "--config", config.to_str().unwrap()], site.path());
    assert_eq!(out.status.code(), Some(0), "a warning, not an error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: store.state_file: not set") && err.contains("lost"), "{err}");

    let users = site.path().join("users.toml");
    let gw = support::Gateway::start(&support::base_config("http://127.0.0.1:9", "two_factor", &users));
    // The log writer batches lines: wait for the warning before reading it.
    gw.log_contains("\"key\":\"store.state_file\"");
    let warned = gw.log().lines().any(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        v["level"] == "WARN" && v["key"] == "store.state_file"
    });
    assert!(warned, "serve warns at start-up: {}", gw.log());
}

#[test]
fn check_config_prints_durations_as_written_and_no_empty_smtp_password() {
    let (site, config) = config_with_relative_paths(
        "[session]\nremember_me = \"30d\"\nabsolute_timeout = \"1h 30m\"\n[mail]\ntransport = \"file\"\nfile_dir = \"outbox\"\n",
    );
    let out = portcullis(&["check-config", "--config", config.to_str().unwrap()], site.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("remember_me = \"30d\""), "{stdout}");
    assert!(stdout.contains("absolute_timeout = \"1h 30m\""), "{stdout}");
    assert!(stdout.contains("ttl = \"10m\""), "{stdout}");
    assert!(!stdout.contains("days"), "{stdout}");
    assert!(!stdout.contains("smtp_password"), "{stdout}");
    // What it prints loads again, to the same values.
    let again = site.path().join("again.toml");
    let printed: String = stdout.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    std::fs::write(&again, printed.replace("[redacted]", support::SECRET)).unwrap();
    let out2 = portcullis(&["check-config", "--config", again.to_str().unwrap()], site.path());
    assert_eq!(out2.status.code(), Some(0), "{}", String::from_utf8_lossy(&out2.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out2.stdout).lines().skip(1).collect::<Vec<_>>(),
        stdout.lines().skip(1).collect::<Vec<_>>()
    );
}

fn check_config_with_env(config: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check-config", "--config", config.to_str().unwrap()])
        .env_remove("PORTCULLIS_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_upstream_comes_from_environment_variables_indexed_or_as_the_single_upstream() {
    let (_site, config) =
        config_with_relative_paths("[[upstream]]\nurl = \"http://127.0.0.1:3000\"\ntimeout = \"7s\"\n");
    // The shorthand sets the one upstream, keeping the file's other keys.
    let (code, out, err) = check_config_with_env(&config, &[("PORTCULLIS_UPSTREAM__URL", "http://10.0.0.9:8000")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("url = \"http://10.0.0.9:8000/\"") && out.contains("timeout = \"7s\""), "{out}");
    assert_eq!(out.matches("[[upstream]]").count(), 1, "{out}");

    // Indexed: change entry 0, add entry 1.
    let (code, out, err) = check_config_with_env(
        &config,
        &[
            ("PORTCULLIS_UPSTREAM__0__URL", "http://10.0.0.9:8000"),
            ("PORTCULLIS_UPSTREAM__1__URL", "http://10.0.0.10:9000"),
            ("PORTCULLIS_UPSTREAM__1__HOST", "wiki.example.com"),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.matches("[[upstream]]").count(), 2, "{out}");
    assert!(out.contains("http://10.0.0.10:9000/") && out.contains("host = \"wiki.example.com\""), "{out}");

    // Errors name the variable, not the config file.
    let (code, _, err) = check_config_with_env(&config, &[("PORTCULLIS_UPSTREAM__0__URL", "not a url")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("upstream[0].url") && err.contains("(from PORTCULLIS_UPSTREAM__0__URL)"), "{err}");
    let (code, _, err) = check_config_with_env(&config, &[("PORTCULLIS_UPSTREAM__2__URL", "http://10.0.0.11")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("PORTCULLIS_UPSTREAM__2__URL: upstream entry 2 would leave a gap"), "{err}");
    let (code, _, err) = check_config_with_env(&config, &[("PORTCULLIS_UPSTREAM__TIMEOUT", "soon")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("upstream[0].timeout") && err.contains("PORTCULLIS_UPSTREAM__TIMEOUT"), "{err}");
}

/// A container configured by environment alone: the gateway proxies to the
/// upstream the variable names, not the file's.
#[tokio::test]
async fn serve_proxies_to_the_upstream_an_environment_variable_names() {
    let up = support::upstream::Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = support::empty_users(dir.path());
    let config = support::base_config("http://127.0.0.1:9", "bypass", &users);
    let gw = support::Gateway::start_in(dir, &config, &[("PORTCULLIS_UPSTREAM__URL", &up.url())]);
    let r = support::client().get(gw.url("/hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["path"], "/hello");
    assert_eq!(up.hits(), 1);
}

#[test]
fn check_config_names_the_passkey_relying_party_or_why_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let cases = [
        (
            "https://auth.example.com",
            "",
            "# passkeys: relying party ID \"auth.example.com\", accepted origin https://auth.example.com",
        ),
        ("https://auth.example.com", "cookie_domain = \".example.com\"", "relying party ID \"example.com\""),
        ("https://auth.example.com", "cookie_domain = \"other.org\"", "does not cover server.public_url's host"),
        ("http://127.0.0.1:8080", "", "an IP address cannot be a passkey's relying party"),
        ("http://gate.internal:8080", "", "browsers offer them only over https"),
    ];
    for (url, session, expected) in cases {
        let text = format!(
            "[server]\npublic_url = \"{url}\"\n[auth]\nsecret = \"{}\"\n[session]\n{session}\n",
            support::SECRET
        );
        std::fs::write(&path, text).unwrap();
        let out = portcullis(&["check-config", "--no-files", "--config", path.to_str().unwrap()], dir.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(expected), "{url} {session}: {stdout}");
    }
}

/// `audit` asks the running gateway, so it works on the default memory
/// store; with no gateway running there, it says that only the gateway holds
/// that store's trail (and its help says how it reaches it).
#[test]
fn audit_on_the_memory_store_needs_the_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let help = portcullis(&["audit", "--help"], dir.path());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("memory store") && help.contains("metrics_listen"), "{help}");

    let path = dir.path().join("p.toml");
    let metrics = format!("127.0.0.1:{}", support::free_port());
    std::fs::write(
        &path,
        format!("[server]\nmetrics_listen = \"{metrics}\"\n[auth]\nsecret = \"{}\"\n", support::SECRET),
    )
    .unwrap();
    let out = portcullis(&["audit", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("no gateway answers at {metrics}")) && err.contains("memory://"), "{err}");
    let out = portcullis(&["audit", "--since", "last week", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1), "a bad time is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since: not a time"));
}
