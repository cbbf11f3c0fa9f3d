//! The access gate: the one place that decides whether a request may reach a
//! protected application. It turns request facts (host, path, method, client
//! address, session cookie) into a [`Verdict`]; proxy mode (`router`) and
//! forward-auth (`portal::verify`) only render verdicts, so the two can never
//! disagree about who gets in.
//!
//! The rules are consulted before the session is looked up, so bypassed and
//! denied paths cost no store round trip; a rule that names users or groups
//! is decided again once the user is known.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::access::{AccessRules, Decision, Subject};
use crate::audit::{Actor, Audit, SecurityEvent};
use crate::auth::credential::Fingerprints;
use crate::auth::users::{User, Users};
use crate::config::Policy;
use crate::session::SessionCookies;
use crate::store::{AuthLevel, SessionRecord, Store, StoreError};

/// What the gate looks at.
pub struct Facts<'a> {
    /// The host the client asked for (a port, if any, is ignored).
    pub host: &'a str,
    pub path: &'a str,
    pub method: &'a Method,
    pub client_ip: IpAddr,
    /// The request's headers (for the session cookie).
    pub headers: &'a HeaderMap,
}

/// A logged-in session with its user, as resolved from the cookie.
pub struct Authenticated {
    pub token: String,
    pub record: SessionRecord,
    pub user: Arc<User>,
}

/// The gate's decision.
pub enum Verdict {
    /// Let it through: a bypassed resource (no session looked up), or a
    /// session of the required level.
    Allow(Option<Authenticated>),
    /// Log in first: there is no session, or it is below the level required.
    LoginRequired(Option<Authenticated>),
    /// Refused by the rules (with the session, if one was looked up).
    Deny(Option<Authenticated>),
}

impl Verdict {
    /// The logged-in user behind the verdict, if the session was looked up.
    pub fn user(&self) -> Option<Arc<User>> {
        match self {
            Verdict::Allow(a) | Verdict::LoginRequired(a) | Verdict::Deny(a) => a.as_ref().map(|a| a.user.clone()),
        }
    }
}

/// What a session must reach for a policy.
pub fn required_level(p: Policy) -> Option<AuthLevel> {
    match p {
        Policy::Bypass => None,
        Policy::OneFactor => Some(AuthLevel::OneFactor),
        Policy::TwoFactor | Policy::Deny => Some(AuthLevel::TwoFactor),
    }
}

/// Rules, sessions and users: everything a verdict needs.
pub struct Gate {
    rules: Arc<AccessRules>,
    store: Store,
    users: Arc<Users>,
    cookies: SessionCookies,
    fingerprints: Arc<Fingerprints>,
    audit: Audit,
}

impl Gate {
    pub fn new(
        rules: Arc<AccessRules>,
        store: Store,
        users: Arc<Users>,
        cookies: SessionCookies,
        fingerprints: Arc<Fingerprints>,
        audit: Audit,
    ) -> Gate {
        Gate { rules, store, users, cookies, fingerprints, audit }
    }

    /// Decides a request. `Err`: the store could not answer, and the request
    /// must be refused (fail closed).
    pub async fn check(&self, facts: &Facts<'_>) -> Result<Verdict, StoreError> {
        let mut subject =
            Subject { host: facts.host, path: facts.path, method: facts.method, ip: facts.client_ip, user: None };
        let first = self.rules.decide(&subject);
        match first {
            Decision::Policy(Policy::Bypass) => return Ok(Verdict::Allow(None)),
            Decision::Policy(Policy::Deny) => return Ok(Verdict::Deny(None)),
            _ => {}
        }
        let Some(auth) = self.authenticate(facts.headers).await? else {
            return Ok(Verdict::LoginRequired(None));
        };
        let decision = match first {
            Decision::NeedsIdentity => {
                subject.user = Some((auth.user.username.as_str(), auth.user.groups.as_slice()));
                self.rules.decide(&subject)
            }
            d => d,
        };
        let policy = match decision {
            Decision::Policy(p) => p,
            // Cannot happen once the user is known; refuse rather than guess.
            Decision::NeedsIdentity => Policy::Deny,
        };
        Ok(match policy {
            Policy::Deny => Verdict::Deny(Some(auth)),
            p if required_level(p).is_some_and(|need| auth.record.level < need) => Verdict::LoginRequired(Some(auth)),
            _ => Verdict::Allow(Some(auth)),
        })
    }

    /// Resolves the session cookie to a live session of an enabled user
    /// whose credential is the one the session was made with.
    /// `Ok(None)`: not logged in. `Err`: the store could not answer.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Authenticated>, StoreError> {
        let Some(token) = self.cookies.session_token(headers) else {
            return Ok(None);
        };
        let Some(record) = self.store.touch_session(token).await? else {
            return Ok(None);
        };
        let users = self.users.snapshot();
        let ended = match users.get(&record.user) {
            Some(user) if !user.disabled => match self.fingerprints.changed(user, &record.credential) {
                None => return Ok(Some(Authenticated { token: token.to_owned(), user: user.clone(), record })),
                // A new password, address or group list: sessions from before end.
                Some(change) => change.reason(),
            },
            // The account was removed or disabled: its sessions end now.
            _ => "account removed or disabled".to_owned(),
        };
        if self.store.delete_session(token).await?.is_some() {
            let actor = Actor { ip: &record.ip, user_agent: &record.device, ..Actor::system(&record.user) };
            self.audit.event(actor, SecurityEvent::SessionRevoked, &ended).await;
        }
        Ok(None)
    }
}
