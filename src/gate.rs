//! The access gate: the one place that decides whether a request may reach a
//! protected application. Proxy mode (`router`) and forward-auth
//! (`portal::verify`) render the [`Verdict`] of [`Gate::check`]; the login,
//! step-up and the account pages ask [`Levels::required_level`]. Both come
//! down to [`level_needed`] (in `auth::levels`, re-exported here), the only
//! place where a policy becomes a level, so no two paths can disagree about
//! who gets in.
//!
//! The rules are consulted before the session is looked up, so bypassed and
//! denied paths cost no store round trip; a rule that names users or groups
//! is decided again once the user is known.
//!
//! Levels and second factors. A session records the level it reached. An
//! account with a second factor needs two factors everywhere a session is
//! needed at all. A factor enrolled inside a session never raises that
//! session: adding an authenticator app or a passkey needs a two-factor
//! session to begin with ([`Target::NewFactor`]), so a password alone cannot
//! add a factor and then use it; only a code e-mailed to the address on file
//! raises a one-factor session (step-up, or confirming e-mailed codes). Every
//! enrolment ends the account's other sessions, and a one-factor login that
//! races an enrolment is ended by the login itself (`LoginFlow::complete`).
//! So a one-factor session always belongs to an account without a second
//! factor, and [`Gate::check`] needs no store round trip to know the
//! account's enrolment: for a one-factor session it is none, and for a
//! two-factor session no policy asks for more.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};

use crate::access::{AccessRules, Decision, Resource, Who};
use crate::audit::{Actor, Audit, SecurityEvent};
use crate::auth::Client;
use crate::auth::credential::Fingerprints;
pub use crate::auth::levels::{Account, Levels, Need, Target, level_needed};
use crate::auth::tokens::{self, AccessTokens, Presented, TokenCheck, TokenHolder};
use crate::auth::users::{User, Users};
use crate::proxy::upgrades::{Liveness, Signer};
use crate::session::SessionCookies;
use crate::store::{AuthLevel, SessionRecord, Store, StoreError};

/// What the gate looks at: the request for the application, in normal form,
/// and its headers (for the session cookie).
pub struct Facts<'a> {
    pub resource: Resource<'a>,
    pub headers: &'a HeaderMap,
}

impl<'a> Facts<'a> {
    /// `host` and `path` in normal form (`normalize`).
    pub fn new(host: &'a str, path: &'a str, method: &'a Method, ip: IpAddr, headers: &'a HeaderMap) -> Facts<'a> {
        Facts { resource: Resource { host, path, method, ip }, headers }
    }
}

/// A logged-in session with its user, as resolved from the cookie.
pub struct Authenticated {
    pub token: String,
    pub record: SessionRecord,
    pub user: Arc<User>,
}

/// Who a request comes from: a browser's session, or a client's access token.
pub enum Caller {
    Session(Authenticated),
    Token(TokenHolder),
}

impl Caller {
    pub fn user(&self) -> &Arc<User> {
        match self {
            Caller::Session(a) => &a.user,
            Caller::Token(t) => &t.user,
        }
    }

    /// `Remote-Auth-Method`: how the caller signed in.
    pub fn method(&self) -> &'static str {
        match self {
            Caller::Session(_) => "session",
            Caller::Token(_) => "token",
        }
    }
}

/// The gate's decision.
pub enum Verdict {
    /// Let it through: a bypassed resource (nobody looked up), or a caller
    /// the rule admits at the level it requires.
    Allow(Option<Caller>),
    /// Log in first: nobody signed the request, or the session is below the
    /// level required. `tokens`: the rule accepts access tokens (a client
    /// that is not a browser is told it may send one: `WWW-Authenticate`).
    LoginRequired { caller: Option<Caller>, tokens: bool },
    /// Refused by the rules (with the caller, if one was looked up).
    Deny(Option<Caller>),
    /// The client's address is banned for its failures (a token was
    /// presented): try again after `retry_after`.
    Limited { retry_after: Duration },
}

impl Verdict {
    /// The user behind the verdict, if one was looked up.
    pub fn user(&self) -> Option<Arc<User>> {
        match self {
            Verdict::Allow(c) | Verdict::LoginRequired { caller: c, .. } | Verdict::Deny(c) => {
                c.as_ref().map(|c| c.user().clone())
            }
            Verdict::Limited { .. } => None,
        }
    }
}

/// Rules, sessions, tokens and users: everything a verdict needs.
pub struct Gate {
    levels: Levels,
    tokens: AccessTokens,
    store: Store,
    users: Arc<Users>,
    cookies: SessionCookies,
    fingerprints: Arc<Fingerprints>,
    audit: Audit,
}

impl Gate {
    pub fn new(
        rules: Arc<AccessRules>,
        tokens: AccessTokens,
        store: Store,
        users: Arc<Users>,
        cookies: SessionCookies,
        fingerprints: Arc<Fingerprints>,
        audit: Audit,
    ) -> Gate {
        Gate { levels: Levels::new(rules), tokens, store, users, cookies, fingerprints, audit }
    }

    /// The level answers this gate gives.
    pub fn levels(&self) -> &Levels {
        &self.levels
    }

    /// Decides a request. `Err`: the store could not answer, and the request
    /// must be refused (fail closed).
    ///
    /// Where the rule accepts access tokens, a token in `Authorization`
    /// signs the request (a plain password over Basic never does: it is
    /// refused and counted as a wrong token); elsewhere `Authorization` is
    /// the application's business and the session cookie decides.
    pub async fn check(&self, facts: &Facts<'_>) -> Result<Verdict, StoreError> {
        let resource = &facts.resource;
        let first = self.levels.rules().ruling(resource, None);
        // Open or closed to everyone: decided before any session is looked up.
        if let Decision::Policy(policy) = first.decision {
            match level_needed(policy, false) {
                Need::Nothing => return Ok(Verdict::Allow(None)),
                Need::Refused => return Ok(Verdict::Deny(None)),
                Need::Level(_) => {}
            }
        }
        let pending = first.decision == Decision::NeedsIdentity;
        // Tokens count where the rule takes them, or may once the user is
        // known (then only something shaped like a token is tried).
        let token = match tokens::presented(facts.headers) {
            Some(p) if first.allow_tokens => Some(p),
            Some(p @ Presented::Token { .. }) if pending => Some(p),
            _ => None,
        };
        let caller = match token {
            Some(presented) => {
                let ua = facts.headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
                let client = Client::new(resource.ip.to_string(), ua);
                // Boxed: the token path's future is large, and held inline
                // it would grow every request's.
                match Box::pin(self.tokens.check(presented, &client)).await? {
                    TokenCheck::Valid(holder) => Caller::Token(holder),
                    TokenCheck::Invalid => return Ok(Verdict::LoginRequired { caller: None, tokens: true }),
                    TokenCheck::Limited { retry_after } => return Ok(Verdict::Limited { retry_after }),
                }
            }
            // Touched only where the rule lets requests keep a session
            // alive; a rule that needs the user is known only after.
            None => match self.session(facts.headers, first.refresh_session && !pending).await? {
                Some(auth) => Caller::Session(auth),
                None => return Ok(Verdict::LoginRequired { caller: None, tokens: first.allow_tokens }),
            },
        };
        let ruling = match first.decision {
            Decision::NeedsIdentity => {
                let who = Who { user: &caller.user().username, groups: &caller.user().groups };
                self.levels.rules().ruling(resource, Some(who))
            }
            _ => first,
        };
        let level = match &caller {
            Caller::Token(_) if !ruling.allow_tokens => {
                return Ok(Verdict::LoginRequired { caller: Some(caller), tokens: false });
            }
            // Where the rule takes tokens, a token meets its level: it was made
            // at two factors, for requests that cannot give a second factor.
            Caller::Token(_) => AuthLevel::TwoFactor,
            Caller::Session(auth) => {
                if pending && ruling.refresh_session {
                    self.store.touch_session(&auth.token).await?;
                }
                auth.record.level
            }
        };
        // The account's enrolment without a store round trip (module doc): a
        // one-factor session's account has no second factor, and a
        // two-factor session meets every level whatever the account has.
        let need = match ruling.decision {
            Decision::Policy(policy) => level_needed(policy, level == AuthLevel::TwoFactor),
            // Cannot happen once the user is known; refuse rather than guess.
            Decision::NeedsIdentity => Need::Refused,
        };
        Ok(match need {
            Need::Refused => Verdict::Deny(Some(caller)),
            Need::Level(need) if level < need => Verdict::LoginRequired { caller: Some(caller), tokens: false },
            Need::Level(_) | Need::Nothing => Verdict::Allow(Some(caller)),
        })
    }

    /// Whether `signer` is still signed in: its session alive and its user's
    /// (as a request's would be), or its token live and its user's
    /// credential unchanged. Read without sliding anything.
    pub async fn still_signed_in(&self, signer: &Signer) -> Result<bool, StoreError> {
        match signer {
            Signer::Session(token) => match self.store.peek_session(token).await? {
                Some(record) => Ok(self.live(token, record).await?.is_some()),
                None => Ok(false),
            },
            Signer::Token(id) => {
                let Some(record) = self.store.token(id).await? else { return Ok(false) };
                let users = self.users.snapshot();
                Ok(users
                    .get(&record.user)
                    .is_some_and(|u| !u.disabled && self.fingerprints.changed(u, &record.credential).is_none()))
            }
        }
    }

    /// The session behind the cookie, touched (its idle expiry slid) or only
    /// read.
    async fn session(&self, headers: &HeaderMap, touch: bool) -> Result<Option<Authenticated>, StoreError> {
        let Some(token) = self.cookies.session_token(headers) else {
            return Ok(None);
        };
        let record =
            if touch { self.store.touch_session(token).await? } else { self.store.peek_session(token).await? };
        match record {
            Some(record) => self.live(token, record).await,
            None => Ok(None),
        }
    }

    /// Resolves the session cookie to a live session of an enabled user
    /// whose credential is the one the session was made with.
    /// `Ok(None)`: not logged in. `Err`: the store could not answer.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Authenticated>, StoreError> {
        self.session(headers, true).await
    }

    /// The session `record` behind `token` if its user may still use it.
    async fn live(&self, token: &str, record: SessionRecord) -> Result<Option<Authenticated>, StoreError> {
        let users = self.users.snapshot();
        let ended = match users.get(&record.user) {
            Some(user) if !user.disabled => match self.fingerprints.changed(user, &record.credential) {
                None => return Ok(Some(Authenticated { token: token.to_owned(), user: user.clone(), record })),
                // A new password, address or group list: sessions from before end.
                Some(change) => change.reason(),
            },
            // A directory not read yet: the user may exist. Neither accept
            // nor end the session; the request is refused as unavailable.
            None if !self.users.complete() => {
                return Err(StoreError::Unavailable("the user directory has not been read yet".into()));
            }
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

impl Liveness for Gate {
    async fn alive(&self, signer: &Signer) -> Result<bool, StoreError> {
        self.still_signed_in(signer).await
    }
}
