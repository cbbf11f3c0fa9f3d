//! Templates: tera pages and e-mails from `templates/`, compiled into the binary
//! (no files needed at run time).
//!
//! Every template is embedded with `include_str!` and parsed once by
//! [`Templates::load`], so a broken template stops the gateway at start-up instead
//! of failing a login later. Names are paths relative to `templates/`
//! ("login.html", "email/login_code.txt", "email/alerts/new_ip.txt"). Autoescaping is on for `.html`, so
//! user-controlled values (usernames, device strings) cannot inject markup; `.txt`
//! e-mail bodies are plain text and are not escaped.

use std::error::Error as _;

/// Every embedded template, by name. Partials start with `_`.
const SOURCES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("_brand.html", include_str!("../templates/_brand.html")),
    ("_messages.html", include_str!("../templates/_messages.html")),
    ("_step_up.html", include_str!("../templates/_step_up.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("otp.html", include_str!("../templates/otp.html")),
    ("logout.html", include_str!("../templates/logout.html")),
    ("password.html", include_str!("../templates/password.html")),
    ("reset.html", include_str!("../templates/reset.html")),
    ("account.html", include_str!("../templates/account.html")),
    ("admin.html", include_str!("../templates/admin.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("email/login_code.txt", include_str!("../templates/email/login_code.txt")),
    ("email/login_code.html", include_str!("../templates/email/login_code.html")),
    ("email/security_alert.txt", include_str!("../templates/email/security_alert.txt")),
    ("email/security_alert.html", include_str!("../templates/email/security_alert.html")),
    // Each alert's words (`mail::Alert`): the title, a blank line, the details.
    ("email/alerts/otp_enabled.txt", include_str!("../templates/email/alerts/otp_enabled.txt")),
    ("email/alerts/otp_disabled.txt", include_str!("../templates/email/alerts/otp_disabled.txt")),
    ("email/alerts/totp_enabled.txt", include_str!("../templates/email/alerts/totp_enabled.txt")),
    ("email/alerts/totp_removed.txt", include_str!("../templates/email/alerts/totp_removed.txt")),
    ("email/alerts/passkey_added.txt", include_str!("../templates/email/alerts/passkey_added.txt")),
    ("email/alerts/passkey_removed.txt", include_str!("../templates/email/alerts/passkey_removed.txt")),
    (
        "email/alerts/backup_codes_regenerated.txt",
        include_str!("../templates/email/alerts/backup_codes_regenerated.txt"),
    ),
    ("email/alerts/backup_code_used.txt", include_str!("../templates/email/alerts/backup_code_used.txt")),
    ("email/alerts/password_changed.txt", include_str!("../templates/email/alerts/password_changed.txt")),
    ("email/alerts/password_reset.txt", include_str!("../templates/email/alerts/password_reset.txt")),
    ("email/alerts/factors_reset.txt", include_str!("../templates/email/alerts/factors_reset.txt")),
    ("email/alerts/repeated_failures.txt", include_str!("../templates/email/alerts/repeated_failures.txt")),
    ("email/alerts/new_ip.txt", include_str!("../templates/email/alerts/new_ip.txt")),
    ("email/alerts/account_locked.txt", include_str!("../templates/email/alerts/account_locked.txt")),
];

/// The compiled template set. Cheap to share behind an `Arc`; rendering takes `&self`.
pub struct Templates {
    tera: tera::Tera,
}

/// A template that failed to parse (at start-up) or to render (a missing variable).
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct RenderError {
    pub name: String,
    pub message: String,
}

impl RenderError {
    fn from_tera(name: &str, err: &tera::Error) -> RenderError {
        // tera puts the useful part (which variable, which line) in the chain.
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(inner) = source {
            message.push_str(": ");
            message.push_str(&inner.to_string());
            source = inner.source();
        }
        RenderError { name: name.to_owned(), message }
    }
}

impl Templates {
    /// Parses every embedded template; fails at start-up, never per request.
    pub fn load() -> Result<Templates, RenderError> {
        let mut tera = tera::Tera::new();
        tera.add_raw_templates(SOURCES.iter().copied()).map_err(|e| RenderError::from_tera("(all)", &e))?;
        Ok(Templates { tera })
    }

    /// Renders `name` with `ctx`. A variable the template needs but `ctx` lacks is
    /// an error, not an empty string, so contract drift shows up in tests.
    pub fn render(&self, name: &str, ctx: &tera::Context) -> Result<String, RenderError> {
        self.tera.render(name, ctx).map_err(|e| RenderError::from_tera(name, &e))
    }

    /// Names of every embedded template (pages, partials and e-mails).
    pub fn names() -> impl Iterator<Item = &'static str> {
        SOURCES.iter().map(|(name, _)| *name)
    }
}

#[cfg(test)]
mod tests;
