//! Mail delivery over real sockets: SMTP (plain + AUTH) into an in-process sink,
//! rejection, a server that never answers, connection reuse, TCP_NODELAY,
//! STARTTLS and implicit TLS to a relay whose private CA is `mail.smtp_ca_file`
//! (and their refusals without it), a whole login over STARTTLS, the file
//! outbox and the console.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis::config::{CaFile, MailConfig, MailTransport, Secret, SmtpTls};
use portcullis::mail::{CodeMail, Email, MailError, Mailer, compose_code_mail};
use portcullis::render::Templates;
use portcullis::store::CodePurpose;
use support::assert_eventually;
use support::smtp::{self, Failure, SmtpSink};

fn smtp_config(port: u16, timeout: Duration) -> MailConfig {
    MailConfig {
        transport: MailTransport::Smtp,
        from: "Portcullis <noreply@example.com>".into(),
        smtp_host: Some("127.0.0.1".into()),
        smtp_port: port,
        smtp_tls: SmtpTls::None,
        smtp_username: Some("mailer".into()),
        smtp_password: Secret::new("hunter2"),
        timeout,
        ..MailConfig::default()
    }
}

fn code_email(code: &str) -> Email {
    let templates = Templates::load().expect("templates load");
    compose_code_mail(
        &templates,
        &CodeMail {
            app_name: "Portcullis",
            to_email: "alice@example.com",
            to_name: Some("Alice Liddell"),
            username: "alice",
            code,
            purpose: CodePurpose::Login,
            expires_minutes: 10,
            expires_at: "2026-11-24 13:15 UTC",
            ip: "203.0.113.9",
            device: "Firefox on Linux",
            time: "2026-11-24 13:05 UTC",
        },
    )
    .expect("compose")
}

#[tokio::test]
async fn smtp_without_tls_authenticates_and_delivers_a_multipart_code_mail() {
    let sink = SmtpSink::start().await;
    let mailer = Mailer::new(&smtp_config(sink.port(), Duration::from_secs(5))).expect("mailer");

    mailer.send(&code_email("314159")).await.expect("send");

    let messages = sink.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.from, "noreply@example.com");
    assert_eq!(m.to, vec!["alice@example.com".to_owned()]);
    assert_eq!(m.auth_user.as_deref(), Some("mailer"));
    assert_eq!(m.header("Subject").as_deref(), Some("Your Portcullis verification code"));
    assert!(m.header("Content-Type").is_some_and(|c| c.starts_with("multipart/alternative")));
    let text = m.text_body().expect("text part");
    assert!(text.contains("    314159"), "{text}");
    assert!(text.contains("203.0.113.9"));
    assert_eq!(m.code().as_deref(), Some("314159"));
    assert!(m.html_body().expect("html part").contains("314159"));
    assert!(!m.data.contains("hunter2"), "the SMTP password never ends up in the mail");
}

#[tokio::test]
async fn pooled_smtp_sends_several_messages() {
    let sink = SmtpSink::start().await;
    let mailer = Mailer::new(&smtp_config(sink.port(), Duration::from_secs(5))).expect("mailer");
    for code in ["111111", "222222", "333333"] {
        mailer.clone().send(&code_email(code)).await.expect("send");
    }
    let codes: Vec<_> = sink.wait_for(3, Duration::from_secs(5)).await.iter().filter_map(|m| m.code()).collect();
    assert_eq!(codes, ["111111", "222222", "333333"]);
}

#[tokio::test]
async fn consecutive_mails_reuse_one_smtp_connection() {
    let sink = SmtpSink::start().await;
    let mailer = Mailer::new(&smtp_config(sink.port(), Duration::from_secs(5))).expect("mailer");
    for code in ["111111", "222222", "333333", "444444"] {
        mailer.send(&code_email(code)).await.expect("send");
    }
    assert_eq!(sink.wait_for(4, Duration::from_secs(5)).await.len(), 4);
    assert_eq!(sink.connections(), 1, "one connect, EHLO and AUTH for four mails");
    assert!(sink.messages().iter().all(|m| m.auth_user.as_deref() == Some("mailer")));
}

#[tokio::test]
async fn a_pooled_connection_the_server_dropped_is_replaced_without_failing_the_send() {
    let sink = SmtpSink::start().await;
    let mailer = Mailer::new(&smtp_config(sink.port(), Duration::from_secs(5))).expect("mailer");
    mailer.send(&code_email("111111")).await.expect("first send");
    sink.hang_up();
    mailer.send(&code_email("222222")).await.expect("send after the server hung up");
    mailer.send(&code_email("333333")).await.expect("send on the new connection");

    let codes: Vec<_> = sink.wait_for(3, Duration::from_secs(5)).await.iter().filter_map(|m| m.code()).collect();
    assert_eq!(codes, ["111111", "222222", "333333"]);
    assert_eq!(sink.connections(), 2, "one reconnect after the hang-up, then reuse again");
}

/// lettre writes the body and the closing `\r\n.\r\n` separately; with Nagle
/// on, the dot waits for the server's delayed ACK (about 40 ms on Linux, every
/// message). With TCP_NODELAY it follows the body at once. The fastest of a
/// few messages is compared, so one slow scheduling moment cannot fail this.
#[tokio::test]
async fn the_end_of_a_message_is_not_held_back_waiting_for_an_ack() {
    let sink = SmtpSink::start().await;
    let mailer = Mailer::new(&smtp_config(sink.port(), Duration::from_secs(5))).expect("mailer");
    for code in ["111111", "222222", "333333", "444444", "555555"] {
        mailer.send(&code_email(code)).await.expect("send");
    }
    let fastest = sink.data_times().into_iter().min().expect("timed DATA sections");
    assert!(fastest < Duration::from_millis(20), "the terminating dot was held back: {:?}", sink.data_times());
}

#[tokio::test]
async fn starttls_mode_refuses_a_server_without_starttls() {
    // The sink does not offer STARTTLS: nothing, credentials least of all, may go out in the clear.
    let sink = SmtpSink::start().await;
    let cfg = MailConfig { smtp_tls: SmtpTls::Starttls, ..smtp_config(sink.port(), Duration::from_secs(5)) };
    let mailer = Mailer::new(&cfg).expect("mailer");
    match mailer.send(&code_email("123456")).await {
        Err(MailError::Transport(msg)) => assert!(msg.contains("STARTTLS"), "{msg}"),
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert!(sink.messages().is_empty());
}

/// A relay's certificate for localhost (self-signed, so it is its own CA) in a
/// temporary directory: (directory guard, certificate PEM, key PEM).
fn relay_certificate() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = support::self_signed(dir.path(), "relay");
    (dir, cert, key)
}

/// The TLS settings a test varies, over `smtp_config`'s AUTH and timeout.
fn tls_config(port: u16, tls: SmtpTls, ca_file: Option<&Path>) -> MailConfig {
    MailConfig {
        smtp_tls: tls,
        smtp_host: Some("localhost".into()),
        smtp_ca_file: ca_file.map(|p| CaFile::read(p).expect("a readable CA file")),
        ..smtp_config(port, Duration::from_secs(5))
    }
}

fn assert_certificate_refused(result: Result<(), MailError>) {
    match result {
        Err(MailError::Transport(msg)) => assert!(msg.contains("certificate"), "{msg}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[tokio::test]
async fn starttls_to_a_relay_of_the_ca_file_delivers_over_tls_and_authenticates_only_after_the_upgrade() {
    let (_dir, cert, key) = relay_certificate();
    let sink = SmtpSink::start_starttls(&cert, &key).await;
    let mailer = Mailer::new(&tls_config(sink.port(), SmtpTls::Starttls, Some(&cert))).expect("mailer");

    mailer.send(&code_email("314159")).await.expect("send over STARTTLS");
    mailer.send(&code_email("271828")).await.expect("second send on the pooled TLS connection");

    let messages = sink.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(messages.len(), 2);
    assert!(messages.iter().all(|m| m.tls), "every message arrived over TLS");
    // The sink forgets AUTH at STARTTLS, so this user was given over TLS.
    assert!(messages.iter().all(|m| m.auth_user.as_deref() == Some("mailer")));
    assert_eq!(sink.commands_in_clear(), ["EHLO", "STARTTLS"], "nothing else, credentials least of all, in the clear");
    assert_eq!(sink.connections(), 1, "the TLS connection is reused");
    assert_eq!(sink.tls_failures(), 0);
    let m = &messages[0];
    assert!(m.header("Content-Type").is_some_and(|c| c.starts_with("multipart/alternative")));
    assert_eq!(m.code().as_deref(), Some("314159"));
    assert!(m.html_body().expect("html part").contains("314159"));
    assert_eq!(messages[1].code().as_deref(), Some("271828"));
}

#[tokio::test]
async fn implicit_tls_to_a_relay_of_the_ca_file_delivers_over_tls() {
    let (_dir, cert, key) = relay_certificate();
    let sink = SmtpSink::start_implicit_tls(&cert, &key).await;
    let mailer = Mailer::new(&tls_config(sink.port(), SmtpTls::Tls, Some(&cert))).expect("mailer");

    mailer.send(&code_email("141421")).await.expect("send over implicit TLS");

    let messages = sink.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert!(m.tls);
    assert_eq!(m.auth_user.as_deref(), Some("mailer"));
    assert!(m.header("Content-Type").is_some_and(|c| c.starts_with("multipart/alternative")));
    assert_eq!(m.code().as_deref(), Some("141421"));
    assert!(sink.commands_in_clear().is_empty(), "{:?}", sink.commands_in_clear());
}

#[tokio::test]
async fn starttls_refuses_a_certificate_no_system_root_vouches_for() {
    let (_dir, cert, key) = relay_certificate();
    let sink = SmtpSink::start_starttls(&cert, &key).await;
    let mailer = Mailer::new(&tls_config(sink.port(), SmtpTls::Starttls, None)).expect("mailer");
    assert_certificate_refused(mailer.send(&code_email("123456")).await);
    assert!(sink.messages().is_empty());
    assert_eq!(sink.commands_in_clear(), ["EHLO", "STARTTLS"], "no fallback to AUTH in the clear");
}

#[tokio::test]
async fn implicit_tls_refuses_a_certificate_no_system_root_vouches_for() {
    let (_dir, cert, key) = relay_certificate();
    let sink = SmtpSink::start_implicit_tls(&cert, &key).await;
    let mailer = Mailer::new(&tls_config(sink.port(), SmtpTls::Tls, None)).expect("mailer");
    assert_certificate_refused(mailer.send(&code_email("123456")).await);
    assert!(sink.messages().is_empty());
    assert!(sink.commands_in_clear().is_empty());
}

#[tokio::test]
async fn a_ca_file_that_does_not_vouch_for_the_relay_is_refused() {
    let (dir, cert, key) = relay_certificate();
    let (other_ca, _) = support::self_signed(dir.path(), "other");
    let starttls = SmtpSink::start_starttls(&cert, &key).await;
    let implicit = SmtpSink::start_implicit_tls(&cert, &key).await;
    for (sink, mode) in [(&starttls, SmtpTls::Starttls), (&implicit, SmtpTls::Tls)] {
        let mailer = Mailer::new(&tls_config(sink.port(), mode, Some(&other_ca))).expect("mailer");
        assert_certificate_refused(mailer.send(&code_email("123456")).await);
        assert!(sink.messages().is_empty(), "{mode:?}");
    }
}

#[tokio::test]
async fn a_certificate_of_the_ca_file_for_another_name_is_refused() {
    // Trusting the CA must not stop the host name from being checked.
    let dir = tempfile::tempdir().expect("tempdir");
    let ck = rcgen::generate_simple_self_signed(vec!["mail.example.test".into()]).expect("certificate");
    let (cert, key) = (dir.path().join("relay.crt"), dir.path().join("relay.key"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    let starttls = SmtpSink::start_starttls(&cert, &key).await;
    let implicit = SmtpSink::start_implicit_tls(&cert, &key).await;
    for (sink, mode) in [(&starttls, SmtpTls::Starttls), (&implicit, SmtpTls::Tls)] {
        let mailer = Mailer::new(&tls_config(sink.port(), mode, Some(&cert))).expect("mailer");
        assert_certificate_refused(mailer.send(&code_email("123456")).await);
        assert!(sink.messages().is_empty(), "{mode:?}");
    }
}

#[test]
fn a_missing_or_garbage_ca_file_fails_the_mailer_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    for path in [dir.path().join("missing.pem"), garbage] {
        // As the config file names it: validation would have refused to read it.
        let named: CaFile = serde_json::from_value(serde_json::json!(path)).expect("a path");
        for mode in [SmtpTls::Starttls, SmtpTls::Tls] {
            let cfg = MailConfig { smtp_ca_file: Some(named.clone()), ..tls_config(587, mode, None) };
            match Mailer::new(&cfg) {
                Err(MailError::Transport(msg)) => assert!(msg.contains("mail.smtp_ca_file"), "{msg}"),
                other => panic!("expected a transport error, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_login_code_reaches_the_user_through_a_starttls_relay_with_a_private_ca() {
    let (dir, cert, key) = relay_certificate();
    let sink = SmtpSink::start_starttls(&cert, &key).await;
    let users = dir.path().join("users.toml");
    support::write_users(&users, &[("alice", "alice@example.com", "alices-password-1", &[])]);
    let config = |port: u16| {
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
metrics_listen = "127.0.0.1:0"
[[upstream]]
url = "http://127.0.0.1:9"
[auth]
secret = "{secret}"
users_file = "{users}"
[mail]
transport = "smtp"
smtp_host = "localhost"
smtp_port = {smtp_port}
smtp_tls = "starttls"
smtp_ca_file = "{ca}"
smtp_username = "mailer"
smtp_password = "hunter2"
timeout = "5s"
"#,
            secret = support::SECRET,
            users = users.display(),
            smtp_port = sink.port(),
            ca = cert.display(),
        )
    };
    let (_gw, port) = support::Gateway::start_on_own_port(tempfile::tempdir().expect("tempdir"), &[], config);
    let origin = format!("http://127.0.0.1:{port}");
    let http = support::client();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{origin}{path}")).header("Origin", &origin).json(&body).send()
    };

    let r = post(
        "/_auth/api/send-login-otp",
        serde_json::json!({"username_or_email": "alice", "password": "alices-password-1"}),
    )
    .await
    .expect("send-login-otp");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["otp_required"], true, "{v}");

    let messages = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1, "the code mail arrived");
    assert!(messages[0].tls, "over TLS");
    assert_eq!(messages[0].auth_user.as_deref(), Some("mailer"));
    assert_eq!(messages[0].to, ["alice@example.com"]);
    assert_eq!(sink.commands_in_clear(), ["EHLO", "STARTTLS"]);
    let code = messages[0].code().expect("a code in the mail");

    let r = post("/_auth/api/verify-login-otp", serde_json::json!({"otp_code": code})).await.expect("verify");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

#[tokio::test]
async fn a_rejecting_server_is_a_transport_error() {
    let sink = SmtpSink::start().await;
    sink.set_reject(true);
    let mailer = Mailer::new(&smtp_config(sink.port(), Duration::from_secs(5))).expect("mailer");

    let err = mailer.send(&code_email("123456")).await;
    match err {
        Err(MailError::Transport(msg)) => assert!(msg.contains("554"), "{msg}"),
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_the_limit() {
    let sink = SmtpSink::start_silent().await;
    let timeout = Duration::from_millis(500);
    let mailer = Mailer::new(&smtp_config(sink.port(), timeout)).expect("mailer");

    let started = Instant::now();
    let err = mailer.send(&code_email("123456")).await;
    let took = started.elapsed();
    assert!(matches!(err, Err(MailError::Timeout)), "{err:?}");
    assert!(took >= timeout, "gave up early: {took:?}");
    assert!(took < timeout + Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn a_closed_port_is_a_transport_error() {
    // Bound and closed at once: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let mailer = Mailer::new(&smtp_config(port, Duration::from_secs(5))).expect("mailer");
    let err = mailer.send(&code_email("123456")).await;
    assert!(matches!(err, Err(MailError::Transport(_))), "{err:?}");
}

#[tokio::test]
async fn file_transport_writes_one_parseable_eml_per_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().join("outbox").join("nested");
    let cfg = MailConfig {
        transport: MailTransport::File,
        file_dir: Some(dir.clone()),
        from: "Portcullis <noreply@example.com>".into(),
        timeout: Duration::from_secs(5),
        ..MailConfig::default()
    };
    let mailer = Mailer::new(&cfg).expect("mailer");
    mailer.send(&code_email("271828")).await.expect("send");
    mailer.send(&code_email("161803")).await.expect("send");

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("outbox exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.ends_with(".eml")), "no temp files left: {names:?}");

    let raw = std::fs::read_to_string(dir.join(&names[0])).expect("read eml");
    assert!(raw.contains("\r\n"), "RFC 5322 line endings");
    let parsed = smtp::Message { from: String::new(), to: Vec::new(), data: raw, auth_user: None, tls: false };
    assert_eq!(parsed.header("To").as_deref(), Some("\"Alice Liddell\" <alice@example.com>"));
    assert_eq!(parsed.header("From").as_deref(), Some("Portcullis <noreply@example.com>"));
    assert!(parsed.header("Date").is_some());
    assert!(parsed.header("Message-ID").is_some());
    assert_eq!(parsed.code().as_deref(), Some("271828"));
    assert!(parsed.html_body().is_some_and(|h| h.contains("271828")));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(&names[0])).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o077, 0, "outbox files are private: {mode:o}");
    }
}

/// The console transport is read by a person at the terminal (`portcullis
/// demo`): the real binary's stdout must show the mail, and its code must work.
#[tokio::test]
async fn console_transport_prints_the_code_mail_on_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.toml");
    support::write_users(&users, &[("alice", "alice@example.com", "alices-password-1", &[])]);
    let up = support::upstream::Upstream::start().await;
    let config =
        format!("{}\n[mail]\ntransport = \"console\"\n", support::base_config(&up.url(), "two_factor", &users));
    let gw = support::Gateway::start_in(dir, &config, &[]);
    let http = support::client();
    let post = |path: &str, body: serde_json::Value| {
        http.post(gw.url(path)).header("Origin", "http://127.0.0.1").json(&body).send()
    };
    let r = post(
        "/_auth/api/send-login-otp",
        serde_json::json!({"username_or_email": "alice", "password": "alices-password-1"}),
    )
    .await
    .expect("send-login-otp");
    assert_eq!(r.status(), 200);

    assert_eventually!(gw.stdout().contains("END OF MAIL"), "no mail on stdout:\n{}", gw.stdout());
    let out = gw.stdout();
    let mail = &out[out.find("MAIL (console transport)").expect("the mail block")..];
    assert!(mail.lines().any(|l| l.starts_with("To:") && l.contains("alice@example.com")), "{mail}");
    assert!(mail.contains("Subject: Your Portcullis verification code"), "{mail}");
    let code = support::find_code(mail, 6).unwrap_or_else(|| panic!("no code in the printed mail:\n{mail}"));

    let r = post("/_auth/api/verify-login-otp", serde_json::json!({"otp_code": code})).await.expect("verify");
    assert_eq!(r.status(), 200, "the printed code signs in");
    let r = http.get(gw.url("/app")).send().await.expect("app");
    assert_eq!(r.status(), 200);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn each_way_a_relay_fails_is_a_transport_error_naming_its_reply() {
    for (failure, reply) in [
        (Failure::RefuseAuth, Some("535")),
        (Failure::DeferAtConnect, Some("421")),
        (Failure::DeferAfterData, Some("451")),
        // No reply at all: the connection just ends.
        (Failure::DropMidData, None),
    ] {
        let sink = SmtpSink::start().await;
        sink.set_failure(failure);
        let mailer = Mailer::new(&smtp_config(sink.port(), Duration::from_secs(5))).expect("mailer");
        match mailer.send(&code_email("123456")).await {
            Err(MailError::Transport(msg)) => assert!(reply.is_none_or(|r| msg.contains(r)), "{failure:?}: {msg}"),
            other => panic!("{failure:?}: expected a transport error, got {other:?}"),
        }
        assert!(sink.messages().is_empty(), "{failure:?}");
        assert_eq!(sink.connections(), 1, "{failure:?}");
    }
}

#[tokio::test]
async fn an_invalid_recipient_is_refused_before_sending() {
    let sink = SmtpSink::start().await;
    let mailer = Mailer::new(&smtp_config(sink.port(), Duration::from_secs(5))).expect("mailer");
    let mut email = code_email("123456");
    email.to_email = "not-an-address".into();
    let err = mailer.send(&email).await;
    assert!(matches!(err, Err(MailError::InvalidAddress(_))), "{err:?}");
    assert!(sink.messages().is_empty());
}

#[test]
fn configuration_errors_are_reported_at_construction() {
    let bad_from = MailConfig { from: "nobody".into(), ..MailConfig::default() };
    assert!(matches!(Mailer::new(&bad_from), Err(MailError::InvalidAddress(_))));

    let no_host = MailConfig { transport: MailTransport::Smtp, smtp_host: None, ..MailConfig::default() };
    assert!(matches!(Mailer::new(&no_host), Err(MailError::Transport(_))));
}

#[test]
fn smtp_mailers_can_be_built_outside_a_runtime() {
    // Nothing may need Tokio until the first send.
    for tls in [SmtpTls::None, SmtpTls::Starttls, SmtpTls::Tls] {
        let cfg = MailConfig {
            smtp_tls: tls,
            smtp_host: Some("smtp.example.com".into()),
            ..smtp_config(587, Duration::from_secs(1))
        };
        assert!(Mailer::new(&cfg).is_ok(), "{tls:?}");
    }
}

#[tokio::test]
async fn lines_starting_with_a_dot_survive_the_smtp_round_trip() {
    let sink = SmtpSink::start().await;
    let mailer = Mailer::new(&smtp_config(sink.port(), Duration::from_secs(5))).expect("mailer");
    let email = Email {
        to_email: "bob@example.com".into(),
        to_name: None,
        subject: "dots".into(),
        text: "first\n.second\n..third\n.\nlast 424242\n".into(),
        html: "<p>dots</p>".into(),
    };
    mailer.send(&email).await.expect("send");
    let messages = sink.wait_for(1, Duration::from_secs(5)).await;
    let text = messages[0].text_body().expect("text part");
    assert!(text.contains(".second\r\n..third\r\n.\r\nlast 424242"), "{text:?}");
    assert_eq!(messages[0].code().as_deref(), Some("424242"));
}

#[test]
fn mailer_and_templates_can_be_shared_across_tasks() {
    fn shared<T: Send + Sync + 'static>() {}
    fn send_future<F: std::future::Future + Send>(_: F) {}
    shared::<Mailer>();
    shared::<Templates>();
    let mailer = Mailer::new(&MailConfig::default()).expect("mailer");
    let email = code_email("123456");
    // Handlers run on a multi-threaded runtime, so the send future must be Send.
    send_future(mailer.send(&email));
}
