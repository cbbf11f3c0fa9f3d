//! Rendering of the two kinds of mail (one-time code, security alert) from
//! `templates/email/`, and conversion of a rendered [`Email`] into an RFC 5322
//! multipart/alternative message for the transports.

use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};
use tera::Context;

use super::message::{AlertMail, CodeMail, Email, MailError};
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

/// Renders the alert e-mail from templates/email/.
pub fn compose_alert_mail(t: &Templates, m: &AlertMail<'_>) -> Result<Email, MailError> {
    let subject = format!("{} security alert: {}", m.app_name, m.title);
    let mut ctx = Context::new();
    ctx.insert("app_name", m.app_name);
    ctx.insert("name", greeting_name(m.to_name, m.username));
    ctx.insert("username", m.username);
    ctx.insert("title", m.title);
    ctx.insert("details", m.details);
    ctx.insert("ip", m.ip);
    ctx.insert("device", m.device);
    ctx.insert("time", m.time);
    render_pair(t, "email/security_alert", &ctx, m.to_email, m.to_name, subject)
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
            title: "Two-factor authentication was turned off",
            details: "Someone with your password turned it off.",
            ip: "203.0.113.9",
            device: "Firefox on Linux",
            time: "2026-11-24 13:05 UTC",
        };
        let Ok(mail) = compose_alert_mail(&templates(), &alert) else {
            panic!("compose failed");
        };
        assert_eq!(mail.subject, "Portcullis security alert: Two-factor authentication was turned off");
        assert!(mail.text.contains("Someone with your password turned it off."));
        assert!(mail.html.contains("Someone with your password turned it off."));
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
