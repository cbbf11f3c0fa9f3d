//! What the gateway e-mails a user: one-time codes and security alerts. A code
//! that cannot be sent is an error for the caller (the login cannot go on); an
//! alert that cannot be sent is logged and counted, never fatal.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Client;
use crate::auth::users::User;
use crate::clock::Clock;
use crate::mail::{self, Alert, AlertMail, CodeMail, MailError, Mailer};
use crate::render::Templates;
use crate::store::CodePurpose;

/// Composes and sends the user's mail; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    mailer: Mailer,
    templates: Arc<Templates>,
    app_name: Arc<str>,
    clock: Clock,
}

/// "2026-11-24 13:05 UTC" for a unix time.
fn human_time(unix: u64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

impl Notifier {
    pub fn new(mailer: Mailer, templates: Arc<Templates>, app_name: &str, clock: Clock) -> Notifier {
        Notifier { mailer, templates, app_name: app_name.into(), clock }
    }

    /// E-mails `code` for `purpose`; it stays valid for `ttl`.
    pub async fn send_code(
        &self,
        user: &User,
        purpose: CodePurpose,
        code: &str,
        ttl: Duration,
        client: &Client,
    ) -> Result<(), MailError> {
        let now = self.clock.now_unix();
        let device = client.device();
        let message = mail::compose_code_mail(
            &self.templates,
            &CodeMail {
                app_name: &self.app_name,
                to_email: &user.email,
                to_name: Some(&user.display_name),
                username: &user.username,
                code,
                purpose,
                expires_minutes: ttl.as_secs().div_ceil(60),
                expires_at: &human_time(now + ttl.as_secs()),
                ip: &client.ip,
                device: &device,
                time: &human_time(now),
            },
        )?;
        self.mailer.send(&message).await
    }

    /// E-mails a security alert in the background: the request that caused it
    /// does not wait for the mail relay (and takes no longer than one that
    /// causes none).
    pub fn alert_later(&self, user: Arc<User>, client: &Client, alert: Alert) {
        let (this, client) = (self.clone(), client.clone());
        tokio::spawn(async move { this.alert(&user, &client, alert).await });
    }

    /// E-mails a security alert; a failure is logged and counted.
    pub async fn alert(&self, user: &User, client: &Client, alert: Alert) {
        let device = client.device();
        let msg = mail::compose_alert_mail(
            &self.templates,
            &AlertMail {
                app_name: &self.app_name,
                to_email: &user.email,
                to_name: Some(&user.display_name),
                username: &user.username,
                alert: &alert,
                ip: &client.ip,
                device: &device,
                time: &human_time(self.clock.now_unix()),
            },
        );
        let result = match msg {
            Ok(m) => self.mailer.send(&m).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            crate::metrics::get().mail_failures.inc();
            tracing::warn!(error = %e, "security alert not sent");
        }
    }
}
