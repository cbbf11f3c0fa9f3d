//! The command line: exit codes and messages of SPEC §1.

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
    std::fs::write(&path, format!("[auth]\nsecret = \"{}\"\n", support::SECRET)).unwrap();
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
    let text = format!(
        "[auth]\nsecret = \"{}\"\n[mail]\ntransport = \"smtp\"\nsmtp_host = \"smtp.internal\"\nsmtp_ca_file = \"{}\"\n",
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
        let out = portcullis(&["check-config", "--config", path.to_str().unwrap()], dir.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(expected), "{url} {session}: {stdout}");
    }
}
