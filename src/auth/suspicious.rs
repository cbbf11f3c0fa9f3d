//! Suspicious-activity rules of the seed, run after each successful login:
//! three or more failures in the last hour, a login from an IP not seen in
//! 30 days (which also e-mails an alert), and logins less than 5 minutes apart.

use crate::app::App;
use crate::audit::{self, Actor, SecurityEvent};
use crate::auth::login::Client;
use crate::auth::users::User;
use crate::mail::{self, AlertMail};
use crate::session::now_unix;
use crate::store::IpHistory;

const NEW_IP_AFTER_SECS: u64 = 30 * 86400;

pub async fn after_login(app: &App, user: &User, client: &Client) {
    let actor =
        Actor { username: &user.username, user: Some(&user.username), ip: &client.ip, user_agent: &client.user_agent };
    let now = now_unix();
    let recent = app.store.recent_audit(Some(&user.username), 50).await.unwrap_or_default();
    let failures = recent
        .iter()
        .filter(|r| {
            r.kind == crate::store::AuditKind::LoginAttempt && r.event != "success" && now.saturating_sub(r.time) < 3600
        })
        .count();
    if failures >= 3 {
        audit::security_event(
            app,
            actor,
            SecurityEvent::SuspiciousActivity,
            &format!("{failures} failed attempts in the last hour"),
        )
        .await;
    }
    let previous_success =
        recent.iter().filter(|r| r.kind == crate::store::AuditKind::LoginAttempt && r.event == "success").nth(1);
    if let Some(p) = previous_success
        && now.saturating_sub(p.time) < 300
    {
        audit::security_event(
            app,
            actor,
            SecurityEvent::SuspiciousActivity,
            "successive logins less than 5 minutes apart",
        )
        .await;
    }
    match app.store.record_known_ip(&user.username, &client.ip).await {
        Ok(history) => {
            // The very first login has nothing to compare with; the known-IP set,
            // not the capped audit list, says whether there was one before.
            let new_ip = match history {
                IpHistory::FirstEver => false,
                IpHistory::Unseen => true,
                IpHistory::LastSeen(t) => now.saturating_sub(t) > NEW_IP_AFTER_SECS,
            };
            if new_ip {
                audit::security_event(app, actor, SecurityEvent::SuspiciousActivity, "login from a new IP address")
                    .await;
                send_alert(
                    app,
                    user,
                    client,
                    "New sign-in from an unfamiliar IP address",
                    "Your account was signed in to from an IP address not seen in the last 30 days.",
                )
                .await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "known-IP record failed"),
    }
}

/// E-mails a security alert; failures are logged and counted, never fatal.
pub async fn send_alert(app: &App, user: &User, client: &Client, title: &str, details: &str) {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    let now = time::OffsetDateTime::now_utc().format(&fmt).unwrap_or_default();
    let device = client.device();
    let msg = mail::compose_alert_mail(
        &app.templates,
        &AlertMail {
            app_name: &app.config.auth.app_name,
            to_email: &user.email,
            to_name: Some(&user.display_name),
            username: &user.username,
            title,
            details,
            ip: &client.ip,
            device: &device,
            time: &now,
        },
    );
    let result = match msg {
        Ok(m) => app.mailer.send(&m).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        crate::metrics::get().mail_failures.inc();
        tracing::warn!(error = %e, "security alert not sent");
    }
}
