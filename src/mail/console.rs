//! The development transport: prints each message to stdout in a delimited block
//! so whoever runs `portcullis demo` can read the code off the terminal. Only the
//! plain-text part is printed; the MIME encoding would make it unreadable.

use std::io::Write;

use super::message::{Email, MailError};

pub(super) fn print(from: &str, email: &Email) -> Result<(), MailError> {
    let block = format_block(from, email);
    let mut out = std::io::stdout().lock();
    out.write_all(block.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| MailError::Transport(format!("console: {e}")))
}

fn format_block(from: &str, email: &Email) -> String {
    let rule = "=".repeat(72);
    let to = match email.to_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => format!("{name} <{}>", email.to_email),
        None => email.to_email.clone(),
    };
    format!(
        "\n{rule}\n  MAIL (console transport)\n{rule}\nFrom:    {from}\nTo:      {to}\nSubject: {subject}\n{dash}\n{body}\n{rule}\n  END OF MAIL\n{rule}\n\n",
        subject = email.subject,
        dash = "-".repeat(72),
        body = email.text.trim_end(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_shows_recipient_subject_and_text_between_rules() {
        let email = Email {
            to_email: "alice@example.com".into(),
            to_name: Some("Alice".into()),
            subject: "Your Portcullis verification code".into(),
            text: "Your code:\n\n    123456\n".into(),
            html: "<p>ignored</p>".into(),
        };
        let block = format_block("Portcullis <noreply@localhost>", &email);
        assert!(block.contains("To:      Alice <alice@example.com>"));
        assert!(block.contains("Subject: Your Portcullis verification code"));
        assert!(block.contains("    123456"));
        assert!(block.contains("END OF MAIL"));
        assert!(!block.contains("ignored"));
    }
}
