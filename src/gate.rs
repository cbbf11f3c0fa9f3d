//! The access gate: the one place that decides whether a request may reach a
//! protected application, and the one answer to "which level does this need".
//! Proxy mode (`router`) and forward-auth (`portal::verify`) render the
//! [`Verdict`] of [`Gate::check`]; the login, step-up and the account pages ask
//! [`Gate::required_level`]. Both come down to [`level_needed`], the only
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
use crate::auth::tokens::{self, AccessTokens, Presented, TokenCheck, TokenHolder};
use crate::auth::users::{User, Users};
use crate::config::Policy;
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

/// What a request asks of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: it is open to everyone (bypass), no session is looked up.
    Nothing,
    /// A session of at least this level.
    Level(AuthLevel),
    /// Nobody gets in (deny), whatever the session.
    Refused,
}

/// The level a policy asks of a session, for an account with or without a
/// second factor (an account that has one always needs two). The one place
/// where a policy becomes a level.
pub fn level_needed(policy: Policy, second_factor: bool) -> Need {
    match policy {
        Policy::Bypass => Need::Nothing,
        Policy::Deny => Need::Refused,
        Policy::OneFactor if !second_factor => Need::Level(AuthLevel::OneFactor),
        Policy::OneFactor | Policy::TwoFactor => Need::Level(AuthLevel::TwoFactor),
    }
}

/// What a session is asked to reach.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A request for a protected application: what proxy mode and
    /// forward-auth check, and where a login's return address leads.
    App(&'a Resource<'a>),
    /// The account pages and API: what the deployment's default policy asks
    /// (at least a session of one factor), two factors for an account with a
    /// second factor.
    Account,
    /// Adding a way to sign in (an authenticator app, a passkey): always two
    /// factors, so a stolen password cannot add a factor of its own and sign
    /// in with it. An account without one reaches two factors with a code
    /// e-mailed to the address on file.
    NewFactor,
    /// The operator console: always two factors, whatever the deployment's
    /// policy (an operator's password alone must not unlock, reset or
    /// disable anyone).
    Console,
}

/// The account a level is decided for.
#[derive(Debug, Clone, Copy)]
pub struct Account<'a> {
    pub user: &'a User,
    /// The account has a second factor enrolled (`UserState::has_second_factor`).
    pub second_factor: bool,
}

impl Account<'_> {
    fn who(&self) -> Who<'_> {
        Who { user: &self.user.username, groups: &self.user.groups }
    }
}

/// The levels a session must reach: the rules and the policy-to-level
/// mapping, without the session machinery (the login flow and the account
/// actions each hold one). Cheap to clone.
#[derive(Clone)]
pub struct Levels {
    rules: Arc<AccessRules>,
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
        let first = self.levels.rules.ruling(resource, None);
        match first.decision {
            Decision::Policy(Policy::Bypass) => return Ok(Verdict::Allow(None)),
            Decision::Policy(Policy::Deny) => return Ok(Verdict::Deny(None)),
            _ => {}
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
                self.levels.rules.ruling(resource, Some(who))
            }
            _ => first,
        };
        let policy = match ruling.decision {
            Decision::Policy(p) => p,
            // Cannot happen once the user is known; refuse rather than guess.
            Decision::NeedsIdentity => Policy::Deny,
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
        Ok(match level_needed(policy, level == AuthLevel::TwoFactor) {
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

impl Levels {
    pub fn new(rules: Arc<AccessRules>) -> Levels {
        Levels { rules }
    }

    /// What `account` must bring for `target`: the one answer to "which
    /// level does this need", for the login, step-up and the account pages
    /// (and through [`level_needed`], for [`Gate::check`]).
    pub fn required_level(&self, target: Target<'_>, account: &Account<'_>) -> Need {
        let sf = account.second_factor;
        match target {
            Target::App(resource) => match self.rules.policy(resource, Some(account.who())) {
                Decision::Policy(p) => level_needed(p, sf),
                // Cannot happen once the user is known; refuse rather than guess.
                Decision::NeedsIdentity => Need::Refused,
            },
            Target::Account => match level_needed(self.rules.default_policy(), sf) {
                Need::Level(level) => Need::Level(level),
                // Open or closed by default, the account pages still belong to
                // someone: a session, of two factors for an enrolled account.
                Need::Nothing | Need::Refused => {
                    Need::Level(if sf { AuthLevel::TwoFactor } else { AuthLevel::OneFactor })
                }
            },
            Target::NewFactor | Target::Console => Need::Level(AuthLevel::TwoFactor),
        }
    }

    /// The level a login must reach: what the account pages need (where a
    /// login without a return address lands, and the floor every session
    /// meets), raised to what the return address needs. A return address
    /// that is open or refused to everyone changes nothing: a client that
    /// picks one must not walk away with a session weaker than the deployment
    /// asks, and a refused one is refused at any level.
    pub fn login_level(&self, rd: Option<&Resource<'_>>, account: &Account<'_>) -> AuthLevel {
        let floor = match self.required_level(Target::Account, account) {
            Need::Level(level) => level,
            Need::Nothing | Need::Refused => AuthLevel::OneFactor,
        };
        match rd.map(|r| self.required_level(Target::App(r), account)) {
            Some(Need::Level(level)) => floor.max(level),
            _ => floor,
        }
    }
}

impl Liveness for Gate {
    async fn alive(&self, signer: &Signer) -> Result<bool, StoreError> {
        self.still_signed_in(signer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AccessControlConfig, PathPattern, RuleConfig};
    use crate::identity::IdentityValues;
    use AuthLevel::{OneFactor, TwoFactor};
    use http::HeaderValue;

    fn user(name: &str, groups: &[&str]) -> User {
        let v = HeaderValue::from_static("x");
        User {
            username: name.to_owned(),
            email: format!("{name}@example.com"),
            display_name: name.to_owned(),
            password_hash: String::new(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            disabled: false,
            identity: IdentityValues { user: v.clone(), email: v.clone(), name: v.clone(), groups: v },
            fingerprint: Default::default(),
            dn: None,
        }
    }

    fn rule(path: &str, policy: Policy, groups: &[&str]) -> RuleConfig {
        RuleConfig {
            domain: vec![],
            path: Some(PathPattern(regex::Regex::new(path).unwrap())),
            methods: vec![],
            networks: vec![],
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            users: vec![],
            policy,
            allow_tokens: false,
            refresh_session: true,
        }
    }

    /// Default one factor; `/admin/` two; `/ops/` two for admins, else (next
    /// rule) denied; `/public/` open; `/closed/` denied.
    fn levels() -> Levels {
        let rules = vec![
            rule("^/admin/", Policy::TwoFactor, &[]),
            rule("^/ops/", Policy::TwoFactor, &["admins"]),
            rule("^/ops/", Policy::Deny, &[]),
            rule("^/public/", Policy::Bypass, &[]),
            rule("^/closed/", Policy::Deny, &[]),
        ];
        Levels::new(Arc::new(AccessRules::new(&AccessControlConfig { default_policy: Policy::OneFactor, rules })))
    }

    fn at<'a>(path: &'a str) -> Resource<'a> {
        Resource { host: "app.test", path, method: &Method::GET, ip: IpAddr::from([10, 0, 0, 1]) }
    }

    #[test]
    fn a_policy_asks_for_its_level_and_an_enrolled_account_for_two() {
        for sf in [false, true] {
            assert_eq!(level_needed(Policy::Bypass, sf), Need::Nothing);
            assert_eq!(level_needed(Policy::Deny, sf), Need::Refused);
            assert_eq!(level_needed(Policy::TwoFactor, sf), Need::Level(TwoFactor));
        }
        assert_eq!(level_needed(Policy::OneFactor, false), Need::Level(OneFactor));
        assert_eq!(level_needed(Policy::OneFactor, true), Need::Level(TwoFactor));
    }

    #[test]
    fn an_application_needs_what_its_rule_says_raised_for_an_enrolled_account() {
        let (l, alice) = (levels(), user("alice", &[]));
        let plain = Account { user: &alice, second_factor: false };
        let enrolled = Account { user: &alice, second_factor: true };
        assert_eq!(l.required_level(Target::App(&at("/x")), &plain), Need::Level(OneFactor));
        assert_eq!(l.required_level(Target::App(&at("/x")), &enrolled), Need::Level(TwoFactor));
        assert_eq!(l.required_level(Target::App(&at("/admin/x")), &plain), Need::Level(TwoFactor));
        assert_eq!(l.required_level(Target::App(&at("/admin;v=1/x")), &plain), Need::Level(TwoFactor));
        assert_eq!(l.required_level(Target::App(&at("/public/x")), &enrolled), Need::Nothing);
        assert_eq!(l.required_level(Target::App(&at("/closed/x")), &plain), Need::Refused);
    }

    #[test]
    fn a_group_rule_is_decided_with_the_accounts_groups() {
        let (l, alice, root) = (levels(), user("alice", &[]), user("root", &["admins"]));
        let at_ops = Target::App(&at("/ops/x"));
        assert_eq!(l.required_level(at_ops, &Account { user: &root, second_factor: false }), Need::Level(TwoFactor));
        assert_eq!(l.required_level(at_ops, &Account { user: &alice, second_factor: false }), Need::Refused);
    }

    #[test]
    fn the_account_pages_need_the_default_policy_and_at_least_a_session() {
        let (l, alice) = (levels(), user("alice", &[]));
        let need = |sf| l.required_level(Target::Account, &Account { user: &alice, second_factor: sf });
        assert_eq!(need(false), Need::Level(OneFactor));
        assert_eq!(need(true), Need::Level(TwoFactor));
        for default_policy in [Policy::Bypass, Policy::Deny] {
            let l = Levels::new(Arc::new(AccessRules::new(&AccessControlConfig { default_policy, rules: vec![] })));
            let need = |sf| l.required_level(Target::Account, &Account { user: &alice, second_factor: sf });
            assert_eq!(need(false), Need::Level(OneFactor), "{default_policy:?}: still a session");
            assert_eq!(need(true), Need::Level(TwoFactor), "{default_policy:?}");
        }
    }

    #[test]
    fn adding_a_factor_always_needs_two() {
        let (l, alice) = (levels(), user("alice", &[]));
        for sf in [false, true] {
            let account = Account { user: &alice, second_factor: sf };
            assert_eq!(l.required_level(Target::NewFactor, &account), Need::Level(TwoFactor));
        }
    }

    #[test]
    fn a_login_reaches_the_account_floor_raised_by_its_return_address() {
        let (l, alice, root) = (levels(), user("alice", &[]), user("root", &["admins"]));
        let plain = Account { user: &alice, second_factor: false };
        assert_eq!(l.login_level(None, &plain), OneFactor);
        assert_eq!(l.login_level(Some(&at("/x")), &plain), OneFactor);
        assert_eq!(l.login_level(Some(&at("/admin/x")), &plain), TwoFactor);
        assert_eq!(l.login_level(Some(&at("/;/admin/x")), &plain), TwoFactor, "as the gate reads it");
        assert_eq!(l.login_level(Some(&at("/public/x")), &plain), OneFactor, "an open page lowers nothing");
        assert_eq!(l.login_level(Some(&at("/closed/x")), &plain), OneFactor, "a refused one raises nothing");
        let admin = Account { user: &root, second_factor: false };
        assert_eq!(l.login_level(Some(&at("/ops/x")), &admin), TwoFactor, "a group rule, with the user known");
        let enrolled = Account { user: &alice, second_factor: true };
        assert_eq!(l.login_level(Some(&at("/public/x")), &enrolled), TwoFactor);
    }
}
