//! The suspicious-activity rules, run after each successful login: three or
//! more failures in the last hour, a login from an IP not seen in 30 days
//! (which also e-mails an alert), and logins less than 5 minutes apart.

use crate::audit::{AttemptResult, Audit, SecurityEvent};
use crate::auth::Client;
use crate::auth::notify::Notifier;
use crate::auth::users::User;
use crate::clock::Clock;
use crate::store::{IpHistory, Store};

const NEW_IP_AFTER_SECS: u64 = 30 * 86400;

/// Looks at a login in the light of the account's history; cheap to clone.
#[derive(Clone)]
pub struct SuspiciousActivity {
    store: Store,
    audit: Audit,
    notifier: Notifier,
    clock: Clock,
}

impl SuspiciousActivity {
    pub fn new(store: Store, audit: Audit, notifier: Notifier, clock: Clock) -> SuspiciousActivity {
        SuspiciousActivity { store, audit, notifier, clock }
    }

    pub async fn after_login(&self, user: &User, client: &Client) {
        let actor = client.as_user(user);
        let now = self.clock.now_unix();
        let recent = self.store.recent_audit(Some(&user.username), 50).await.unwrap_or_default();
        let failures = recent.iter().filter(|r| r.is_failed_attempt() && now.saturating_sub(r.time) < 3600).count();
        if failures >= 3 {
            let details = format!("{failures} failed attempts in the last hour");
            self.audit.event(actor, SecurityEvent::SuspiciousActivity, &details).await;
        }
        let previous_success = recent.iter().filter(|r| r.is_attempt(AttemptResult::Success)).nth(1);
        if let Some(p) = previous_success
            && now.saturating_sub(p.time) < 300
        {
            let details = "successive logins less than 5 minutes apart";
            self.audit.event(actor, SecurityEvent::SuspiciousActivity, details).await;
        }
        match self.store.record_known_ip(&user.username, &client.ip).await {
            Ok(history) => {
                // The very first login has nothing to compare with; the known-IP set,
                // not the capped audit list, says whether there was one before.
                let new_ip = match history {
                    IpHistory::FirstEver => false,
                    IpHistory::Unseen => true,
                    IpHistory::LastSeen(t) => now.saturating_sub(t) > NEW_IP_AFTER_SECS,
                };
                if new_ip {
                    self.audit.event(actor, SecurityEvent::SuspiciousActivity, "login from a new IP address").await;
                    self.notifier
                        .alert(
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
}
