//! The suspicious-activity rules, run after each successful login: three or
//! more failures in the last hour, a login from an IP not seen in 30 days
//! (which also e-mails an alert), and logins less than 5 minutes apart. After
//! each failure of a known account the first rule runs too, and alerts the
//! user by e-mail: at most once an hour, so an attack does not flood them.

use std::sync::Arc;

use crate::audit::{AttemptResult, Audit, SecurityEvent};
use crate::auth::Client;
use crate::auth::notify::Notifier;
use crate::auth::users::User;
use crate::clock::Clock;
use crate::mail::Alert;
use crate::ratelimit::{FAILURE_ALERTS, RateBucket};
use crate::store::{IpHistory, RateDecision, Store};

const NEW_IP_AFTER_SECS: u64 = 30 * 86400;
/// Failed attempts within an hour that make a pattern.
const REPEATED_FAILURES: usize = 3;

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

    /// The failure rule, after a failed attempt of `user` (already audited).
    /// Runs in the background: the answer to the attempt does not wait for it,
    /// so a known name's failure takes no longer than an unknown one's.
    pub fn after_failure(&self, user: &Arc<User>, client: &Client) {
        let (this, user, client) = (self.clone(), user.clone(), client.clone());
        tokio::spawn(async move { this.repeated_failures(&user, &client).await });
    }

    async fn repeated_failures(&self, user: &User, client: &Client) {
        let now = self.clock.now_unix();
        let recent = match self.store.recent_audit(Some(&user.username), 50).await {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "repeated-failure check skipped"),
        };
        let failures = recent.iter().filter(|r| r.is_failed_attempt() && now.saturating_sub(r.time) < 3600).count();
        if failures < REPEATED_FAILURES {
            return;
        }
        // One alert per hour and account, whichever replica sees the failure.
        let first = self
            .store
            .rate_hit(RateBucket::FailureAlerts, &user.username, FAILURE_ALERTS.limit, FAILURE_ALERTS.window)
            .await;
        match first {
            Ok(RateDecision::Allowed { .. }) => {}
            Ok(RateDecision::Limited { .. }) => return,
            Err(e) => return tracing::warn!(error = %e, "repeated-failure alert skipped"),
        }
        let details = format!("{failures} failed attempts in the last hour");
        self.audit.event(client.as_user(user), SecurityEvent::SuspiciousActivity, &details).await;
        self.notifier.alert(user, client, Alert::RepeatedFailures { failures }).await;
    }

    pub async fn after_login(&self, user: &User, client: &Client) {
        let actor = client.as_user(user);
        let now = self.clock.now_unix();
        let recent = self.store.recent_audit(Some(&user.username), 50).await.unwrap_or_default();
        let failures = recent.iter().filter(|r| r.is_failed_attempt() && now.saturating_sub(r.time) < 3600).count();
        if failures >= REPEATED_FAILURES {
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
                    self.notifier.alert(user, client, Alert::NewIp).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "known-IP record failed"),
        }
    }
}
