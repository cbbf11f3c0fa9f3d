//! Rendering of the two kinds of mail (one-time code, security alert) from
//! `templates/email/` (an alert's words from `email/alerts/<kind>.txt`), and
//! conversion of a rendered [`Email`] into an RFC 5322 multipart/alternative
//! message for the transports.

use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};
use tera::Context;

use super::message::{Alert, AlertMail, CodeMail, Email, MailError};
use crate::render::Templates;
use crate::store::CodePurpose;

/// Renders the code e-mail from templates/email/.
pub fn compose_code_mail(t: &Templates, m: &CodeMail<'_>) -> Result<Email, MailError> {
    let subject = match m.purpose {
        CodePurpose::Login => format!("Your {} verification code", m.app_name),
        CodePurpose::EnableOtp => format!("Confirm two-factor authentication for {}", m.app_name),
        CodePurpose::PasswordReset => format!("Reset your {} password", m.app_name),
    };
    let mut ctx = Context::new();
    ctx.insert("app_name", m.app_name);
    ctx.insert("name", greeting_name(m.to_name, m.username));
    ctx.insert("username", m.username);
    ctx.insert("code", m.code);
    ctx.insert("purpose", m.purpose.as_str());
    ctx.insert("expires_minutes", &m.expires_minutes);
    ctx.insert("expires_at", m.expires_at);
    ctx.insert("ip", m.ip);
    ctx.insert("device", m.device);
    ctx.insert("time", m.time);
    render_pair(t, "email/login_code", &ctx, m.to_email, m.to_name, subject)
}

/// Renders the alert e-mail: its kind's words in the frame of templates/email/security_alert.
pub fn compose_alert_mail(t: &Templates, m: &AlertMail<'_>) -> Result<Email, MailError> {
    let (title, details) = alert_words(t, m.alert)?;
    let subject = format!("{} security alert: {}", m.app_name, title);
    let mut ctx = Context::new();
    ctx.insert("app_name", m.app_name);
    ctx.insert("name", greeting_name(m.to_name, m.username));
    ctx.insert("username", m.username);
    ctx.insert("title", &title);
    ctx.insert("details", &details);
    ctx.insert("ip", m.ip);
    ctx.insert("device", m.device);
    ctx.insert("time", m.time);
    render_pair(t, "email/security_alert", &ctx, m.to_email, m.to_name, subject)
}

/// An alert's title (its template's first line) and details (the rest).
/// Rendered as plain text: the HTML frame escapes them where it shows them.
pub(super) fn alert_words(t: &Templates, alert: &Alert) -> Result<(String, String), MailError> {
    let text = t.render(alert.template(), &alert.context()).map_err(|e| MailError::Render(e.to_string()))?;
    match text.split_once('\n') {
        Some((title, details)) => Ok((title.trim().to_owned(), details.trim().to_owned())),
        None => Err(MailError::Render(format!("template {}: no details after the title", alert.template()))),
    }
}

fn greeting_name<'a>(to_name: Option<&'a str>, username: &'a str) -> &'a str {
    match to_name {
        Some(name) if !name.trim().is_empty() => name,
        _ => username,
    }
}

fn render_pair(
    t: &Templates,
    stem: &str,
    ctx: &Context,
    to_email: &str,
    to_name: Option<&str>,
    subject: String,
) -> Result<Email, MailError> {
    let render = |ext: &str| t.render(&format!("{stem}.{ext}"), ctx).map_err(|e| MailError::Render(e.to_string()));
    Ok(Email {
        to_email: to_email.to_owned(),
        to_name: to_name.map(str::to_owned),
        subject: one_line(&subject),
        text: render("txt")?,
        html: render("html")?,
    })
}

/// Header values never carry line breaks, whatever a title or display name holds.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Parses the configured sender once, at start-up.
pub(super) fn parse_from(from: &str) -> Result<Mailbox, MailError> {
    from.parse::<Mailbox>().map_err(|_| MailError::InvalidAddress(from.to_owned()))
}

/// The wire form every transport sends or stores: text and HTML as
/// multipart/alternative, with Date and Message-ID set.
pub(super) fn to_message(from: &Mailbox, email: &Email) -> Result<Message, MailError> {
    let address: Address = email.to_email.parse().map_err(|_| MailError::InvalidAddress(email.to_email.clone()))?;
    let name = email.to_name.as_deref().map(one_line).filter(|n| !n.trim().is_empty());
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(name, address))
        .subject(one_line(&email.subject))
        .message_id(None)
        .multipart(MultiPart::alternative_plain_html(email.text.clone(), email.html.clone()))
        .map_err(|e| MailError::Transport(format!("building message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates() -> Templates {
        match Templates::load() {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    fn code_mail(purpose: CodePurpose) -> CodeMail<'static> {
        CodeMail {
            app_name: "Portcullis",
            to_email: "alice@example.com",
            to_name: Some("Alice Liddell"),
            username: "alice",
            code: "042137",
            purpose,
            expires_minutes: 10,
            expires_at: "2026-11-24 13:15 UTC",
            ip: "203.0.113.9",
            device: "Firefox on Linux",
            time: "2026-11-24 13:05 UTC",
        }
    }

    #[test]
    fn login_code_mail_has_subject_code_and_details() {
        let Ok(mail) = compose_code_mail(&templates(), &code_mail(CodePurpose::Login)) else {
            panic!("compose failed");
        };
        assert_eq!(mail.subject, "Your Portcullis verification code");
        assert_eq!(mail.to_email, "alice@example.com");
        assert_eq!(mail.to_name.as_deref(), Some("Alice Liddell"));
        for part in [&mail.text, &mail.html] {
            assert!(part.contains("042137"));
            assert!(part.contains("203.0.113.9"));
            assert!(part.contains("Firefox on Linux"));
            assert!(part.contains("2026-11-24 13:15 UTC"));
            assert!(part.contains("Alice Liddell"));
        }
    }

    #[test]
    fn enable_otp_mail_has_its_own_subject() {
        let Ok(mail) = compose_code_mail(&templates(), &code_mail(CodePurpose::EnableOtp)) else {
            panic!("compose failed");
        };
        assert_eq!(mail.subject, "Confirm two-factor authentication for Portcullis");
        assert!(mail.text.contains("turning on two-factor authentication"));
    }

    #[test]
    fn greeting_falls_back_to_username() {
        let mut m = code_mail(CodePurpose::Login);
        m.to_name = None;
        let Ok(mail) = compose_code_mail(&templates(), &m) else {
            panic!("compose failed");
        };
        assert!(mail.text.contains("Hello alice,"));
    }

    #[test]
    fn alert_mail_has_subject_and_details() {
        let alert = AlertMail {
            app_name: "Portcullis",
            to_email: "alice@example.com",
            to_name: None,
            username: "alice",
            alert: &Alert::OtpDisabled,
            ip: "203.0.113.9",
            device: "Firefox on Linux",
            time: "2026-11-24 13:05 UTC",
        };
        let Ok(mail) = compose_alert_mail(&templates(), &alert) else {
            panic!("compose failed");
        };
        assert_eq!(mail.subject, "Portcullis security alert: Two-factor authentication was turned off");
        assert!(mail.text.contains("Sign-ins to your account no longer need a code."));
        assert!(mail.html.contains("Sign-ins to your account no longer need a code."));
    }

    /// One alert of each kind, with values a template could mangle.
    fn every_alert() -> Vec<Alert> {
        let passkey = "Phone <b>\"work\"</b>".to_owned();
        vec![
            Alert::OtpEnabled,
            Alert::OtpDisabled,
            Alert::TotpEnabled,
            Alert::TotpRemoved,
            Alert::PasskeyAdded { passkey: passkey.clone() },
            Alert::PasskeyRemoved { passkey },
            Alert::BackupCodesRegenerated,
            Alert::BackupCodeUsed { left: 7 },
            Alert::PasswordChanged,
            Alert::PasswordReset,
            Alert::FactorsReset,
            Alert::RepeatedFailures { failures: 5 },
            Alert::NewIp,
            Alert::AccountLocked { failures: 10, minutes: 15 },
        ]
    }

    #[test]
    fn every_alert_kind_has_a_template_that_renders_in_text_and_html() {
        let t = templates();
        let alerts = every_alert();
        let named: std::collections::BTreeSet<&str> = alerts.iter().map(Alert::template).collect();
        let embedded: std::collections::BTreeSet<&str> =
            Templates::names().filter(|n| n.starts_with("email/alerts/")).collect();
        assert_eq!(named, embedded, "one template per kind, each embedded, none unused");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/email/alerts");
        let Ok(files) = std::fs::read_dir(&dir) else { panic!("{}", dir.display()) };
        assert_eq!(files.count(), named.len(), "every file in {} is a kind's", dir.display());
        for alert in &alerts {
            let Ok((title, details)) = alert_words(&t, alert) else { panic!("{alert:?}: words") };
            assert!(!title.is_empty() && !title.contains('\n'), "{alert:?}: a one-line title");
            assert!(!details.is_empty() && !details.contains('\n'), "{alert:?}: one paragraph");
            let m = AlertMail {
                app_name: "Portcullis",
                to_email: "alice@example.com",
                to_name: Some("Alice"),
                username: "alice",
                alert,
                ip: "203.0.113.9",
                device: "Firefox on Linux",
                time: "2026-11-24 13:05 UTC",
            };
            let Ok(mail) = compose_alert_mail(&t, &m) else { panic!("{alert:?}: compose") };
            assert_eq!(mail.subject, format!("Portcullis security alert: {title}"));
            assert!(mail.text.contains(&title) && mail.text.contains(&details), "{alert:?}: {}", mail.text);
            assert!(mail.html.contains(&tera_escaped(&details)), "{alert:?}: {}", mail.html);
            for part in [&title, &details, &mail.text, &mail.html] {
                assert!(!part.contains("{{") && !part.contains("{%"), "{alert:?}: {part}");
            }
        }
    }

    /// What the HTML frame makes of a text (its autoescaping).
    fn tera_escaped(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
    }

    #[test]
    fn alert_words_carry_their_values() {
        let t = templates();
        let words = |a: Alert| alert_words(&t, &a).map(|(_, d)| d).unwrap_or_default();
        assert!(words(Alert::PasskeyAdded { passkey: "Phone <b>".into() }).contains("\"Phone <b>\""));
        assert!(words(Alert::BackupCodeUsed { left: 7 }).contains(" 7 unused backup codes remain."));
        assert!(words(Alert::RepeatedFailures { failures: 5 }).starts_with("There were 5 failed attempts"));
        let locked = words(Alert::AccountLocked { failures: 10, minutes: 15 });
        assert_eq!(locked, "After 10 failed sign-in attempts, sign-ins are blocked for 15 minutes.");
    }

    #[test]
    fn message_is_multipart_alternative_without_header_injection() {
        let Ok(from) = parse_from("Portcullis <noreply@example.com>") else {
            panic!("from");
        };
        let email = Email {
            to_email: "alice@example.com".into(),
            to_name: Some("Alice\r\nBcc: evil@example.com".into()),
            subject: "Hi\r\nBcc: evil@example.com".into(),
            text: "code 123456".into(),
            html: "<p>code 123456</p>".into(),
        };
        let Ok(message) = to_message(&from, &email) else {
            panic!("message");
        };
        let raw = String::from_utf8_lossy(&message.formatted()).into_owned();
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain"));
        assert!(raw.contains("text/html"));
        assert!(raw.contains("Message-ID: <"));
        assert!(!raw.contains("\r\nBcc:"));
    }

    #[test]
    fn bad_addresses_are_reported() {
        assert!(matches!(parse_from("not an address"), Err(MailError::InvalidAddress(_))));
        let Ok(from) = parse_from("noreply@example.com") else {
            panic!("from");
        };
        let email =
            Email { to_email: "nobody".into(), to_name: None, subject: "x".into(), text: "x".into(), html: "x".into() };
        assert!(matches!(to_message(&from, &email), Err(MailError::InvalidAddress(_))));
    }
}
