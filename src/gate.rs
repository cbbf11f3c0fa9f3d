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

#[cfg(test)]
mod tests {
    //! The gate over the memory store, in process: every verdict a rule and a
    //! session (or a token) can lead to, and when a session's idle time slides.

    use std::net::Ipv4Addr;
    use std::path::Path;

    use http::HeaderValue;

    use super::*;
    use crate::auth::record::Attempts;
    use crate::auth::users::UserDirectory;
    use crate::clock::Clock;
    use crate::config::{
        AccessControlConfig, LdapConfig, LockoutConfig, PathPattern, Policy, RateLimitConfig, RateSpec, RuleConfig,
        SessionConfig, StoreConfig,
    };
    use crate::identity::IdentityValues;
    use crate::ratelimit::Limiter;
    use crate::session;

    const SECRET: &[u8] = b"the gate's tests' secret";
    const IP: &str = "192.0.2.7";
    const DEVICE: &str = "Firefox on Linux";

    fn user(name: &str, groups: &[&str], disabled: bool) -> User {
        let v = HeaderValue::from_static("x");
        User {
            username: name.to_owned(),
            email: format!("{name}@example.com"),
            display_name: name.to_owned(),
            password_hash: format!("{name}'s password hash"),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            disabled,
            identity: IdentityValues { user: v.clone(), email: v.clone(), name: v.clone(), groups: v },
            fingerprint: Default::default(),
            dn: None,
        }
    }

    fn rule(path: &str, policy: Policy) -> RuleConfig {
        RuleConfig { path: Some(PathPattern(regex::Regex::new(path).unwrap())), ..RuleConfig::any(policy) }
    }

    /// Two factors by default; `/open/` bypassed, `/closed/` denied, `/one/`
    /// and `/two/` their level; `/poll/` does not refresh the session;
    /// `/api/` takes tokens; `/team/` (taking tokens) and `/quiet-team/`
    /// (neither taking tokens nor refreshing) are one factor for admins and
    /// closed to anyone else.
    fn rules() -> AccessControlConfig {
        let admins = |mut r: RuleConfig| {
            r.groups = vec!["admins".into()];
            r
        };
        let rules = vec![
            rule("^/open/", Policy::Bypass),
            rule("^/closed/", Policy::Deny),
            rule("^/one/", Policy::OneFactor),
            rule("^/two/", Policy::TwoFactor),
            RuleConfig { refresh_session: false, ..rule("^/poll/", Policy::OneFactor) },
            RuleConfig { allow_tokens: true, ..rule("^/api/", Policy::OneFactor) },
            RuleConfig { allow_tokens: true, ..admins(rule("^/team/", Policy::OneFactor)) },
            rule("^/team/", Policy::Deny),
            RuleConfig { refresh_session: false, ..admins(rule("^/quiet-team/", Policy::OneFactor)) },
            rule("^/quiet-team/", Policy::Deny),
        ];
        AccessControlConfig { default_policy: Policy::TwoFactor, rules }
    }

    struct Fixture {
        gate: Gate,
        store: Store,
        clock: Clock,
        tokens: AccessTokens,
        users: Arc<Users>,
        fingerprints: Arc<Fingerprints>,
    }

    /// alice (an admin), bob, and carol (disabled).
    async fn fixture() -> Fixture {
        let dir = UserDirectory::from_users([
            user("alice", &["admins"], false),
            user("bob", &[], false),
            user("carol", &[], true),
        ]);
        fixture_with(Users::read_only(Path::new("(test)"), dir, "test")).await
    }

    async fn fixture_with(users: Users) -> Fixture {
        let clock = Clock::manual(1_800_000_000_000);
        let store = Store::open_with_clock(&StoreConfig::default(), clock.clone()).await.unwrap();
        let users = Arc::new(users);
        let audit = Audit::new(store.clone(), clock.clone());
        let limiter = Limiter::new(
            store.clone(),
            &RateLimitConfig::default(),
            &LockoutConfig::default(),
            RateSpec::new(5, Duration::from_secs(300)),
        );
        let fingerprints = Arc::new(Fingerprints::new(SECRET));
        let tokens = AccessTokens::new(
            store.clone(),
            users.clone(),
            SECRET,
            fingerprints.clone(),
            limiter,
            audit.clone(),
            Attempts::new(audit.clone()),
            clock.clone(),
        );
        let gate = Gate::new(
            Arc::new(AccessRules::new(&rules())),
            tokens.clone(),
            store.clone(),
            users.clone(),
            SessionCookies::new(&SessionConfig::default(), false),
            fingerprints.clone(),
            audit,
        );
        Fixture { gate, store, clock, tokens, users, fingerprints }
    }

    impl Fixture {
        /// A session of `name` at `level`, made with their current credential.
        async fn session(&self, name: &str, level: AuthLevel) -> String {
            let credential = self.users.snapshot().get(name).map(|u| self.fingerprints.of(u)).unwrap_or_default();
            self.session_with(name, level, credential).await
        }

        async fn session_with(&self, name: &str, level: AuthLevel, credential: String) -> String {
            let token = session::new_token();
            let now = self.clock.now_unix();
            let record =
                session::new_record(&SessionConfig::default(), now, name, level, false, IP, DEVICE, credential);
            self.store.create_session(&token, &record).await.unwrap();
            token
        }

        /// A new access token of `name`'s.
        async fn token(&self, name: &str) -> tokens::NewToken {
            let user = self.users.snapshot().get(name).unwrap().clone();
            self.tokens.issue(&user, "ci", None, &Client::new(IP, "curl/8")).await.unwrap()
        }

        /// The gate's verdict on a GET of `path`, in words.
        async fn says(&self, path: &str, headers: &HeaderMap) -> String {
            let ip = IpAddr::from(Ipv4Addr::new(192, 0, 2, 7));
            let facts = Facts::new("app.example.com", path, &Method::GET, ip, headers);
            said(&self.gate.check(&facts).await.unwrap())
        }

        /// When the session was last seen, read without sliding it.
        async fn last_seen(&self, session: &str) -> u64 {
            self.store.peek_session(session).await.unwrap().unwrap().last_seen
        }
    }

    fn said(verdict: &Verdict) -> String {
        let name = verdict.user().map(|u| u.username.clone()).unwrap_or_default();
        let who = |c: &Option<Caller>| c.as_ref().map(|c| format!(" {name} by {}", c.method())).unwrap_or_default();
        match verdict {
            Verdict::Allow(c) => format!("allow{}", who(c)),
            Verdict::LoginRequired { caller, tokens } => {
                format!("log in{}{}", who(caller), if *tokens { ", or send a token" } else { "" })
            }
            Verdict::Deny(c) => format!("deny{}", who(c)),
            Verdict::Limited { .. } => "limited".to_owned(),
        }
    }

    fn with_cookie(session: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, HeaderValue::from_str(&format!("portcullis_session={session}")).unwrap());
        h
    }

    fn with_bearer(token: &str, mut h: HeaderMap) -> HeaderMap {
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        h
    }

    #[tokio::test]
    async fn open_and_closed_paths_are_decided_without_a_session() {
        let f = fixture().await;
        let none = HeaderMap::new();
        assert_eq!(f.says("/open/x", &none).await, "allow");
        assert_eq!(f.says("/closed/x", &none).await, "deny");
        assert_eq!(f.says("/one/x", &none).await, "log in");
        assert_eq!(f.says("/api/x", &none).await, "log in, or send a token");
        let alice = with_cookie(&f.session("alice", AuthLevel::TwoFactor).await);
        assert_eq!(f.says("/open/x", &alice).await, "allow", "nobody is looked up");
        assert_eq!(f.says("/closed/x", &alice).await, "deny");
    }

    #[tokio::test]
    async fn a_session_passes_where_its_level_is_enough_and_logs_in_again_where_not() {
        let f = fixture().await;
        let one = with_cookie(&f.session("bob", AuthLevel::OneFactor).await);
        assert_eq!(f.says("/one/x", &one).await, "allow bob by session");
        assert_eq!(f.says("/two/x", &one).await, "log in bob by session");
        assert_eq!(f.says("/elsewhere", &one).await, "log in bob by session", "the default asks two");
        let two = with_cookie(&f.session("bob", AuthLevel::TwoFactor).await);
        assert_eq!(f.says("/one/x", &two).await, "allow bob by session");
        assert_eq!(f.says("/two/x", &two).await, "allow bob by session");
        assert_eq!(f.says("/one/x", &with_cookie(&session::new_token())).await, "log in", "an unknown session");
    }

    #[tokio::test]
    async fn a_groups_rule_is_decided_once_the_user_is_known() {
        let f = fixture().await;
        let alice = with_cookie(&f.session("alice", AuthLevel::OneFactor).await);
        let bob = with_cookie(&f.session("bob", AuthLevel::TwoFactor).await);
        assert_eq!(f.says("/team/x", &alice).await, "allow alice by session");
        assert_eq!(f.says("/team/x", &bob).await, "deny bob by session");
        assert_eq!(f.says("/team/x", &HeaderMap::new()).await, "log in");
    }

    #[tokio::test]
    async fn a_token_signs_only_where_the_deciding_rule_takes_tokens() {
        let f = fixture().await;
        let alice = f.token("alice").await.token;
        let none = HeaderMap::new;
        assert_eq!(f.says("/api/x", &with_bearer(&alice, none())).await, "allow alice by token");
        assert_eq!(f.says("/api/x", &with_bearer(&format!("{alice}x"), none())).await, "log in, or send a token");
        // A groups rule: a token is tried, then held to the rule that decides.
        assert_eq!(f.says("/team/x", &with_bearer(&alice, none())).await, "allow alice by token");
        assert_eq!(f.says("/quiet-team/x", &with_bearer(&alice, none())).await, "log in alice by token");
        // Where no rule takes tokens, Authorization is the application's,
        // and the session decides.
        assert_eq!(f.says("/one/x", &with_bearer(&alice, none())).await, "log in");
        let session = with_cookie(&f.session("bob", AuthLevel::OneFactor).await);
        assert_eq!(f.says("/one/x", &with_bearer("not-a-token", session.clone())).await, "allow bob by session");
        let shaped_wrong = format!("pct_{}", "A".repeat(65));
        assert_eq!(f.says("/one/x", &with_bearer(&shaped_wrong, session)).await, "allow bob by session");
    }

    #[tokio::test]
    async fn a_request_slides_the_session_only_where_its_rule_refreshes() {
        let f = fixture().await;
        let token = f.session("alice", AuthLevel::TwoFactor).await;
        let alice = with_cookie(&token);
        let start = f.last_seen(&token).await;
        for (path, slides) in [("/poll/x", false), ("/quiet-team/x", false), ("/one/x", true), ("/team/x", true)] {
            f.clock.advance(Duration::from_secs(60));
            let before = f.last_seen(&token).await;
            assert!(f.says(path, &alice).await.starts_with("allow"), "{path}");
            let after = f.last_seen(&token).await;
            assert_eq!(after != before, slides, "{path}: last seen {before} → {after}");
        }
        assert_eq!(f.last_seen(&token).await, start + 240);
    }

    #[tokio::test]
    async fn a_session_ends_with_its_users_credential_and_the_end_is_audited() {
        let f = fixture().await;
        let older =
            User { password_hash: "alice's previous password hash".into(), ..user("alice", &["admins"], false) };
        let stale = f.session_with("alice", AuthLevel::TwoFactor, f.fingerprints.of(&older)).await;
        assert_eq!(f.says("/one/x", &with_cookie(&stale)).await, "log in");
        assert!(f.store.peek_session(&stale).await.unwrap().is_none(), "ended");
        let audit = f.store.recent_audit(Some("alice"), 10).await.unwrap();
        let ended = audit.iter().find(|r| r.event == "session_revoked").expect("audited");
        assert_eq!((ended.ip.as_str(), ended.user_agent.as_str()), (IP, DEVICE), "the session's address and device");
        assert_eq!(ended.details, "password changed");

        for name in ["carol", "dave"] {
            let gone = f.session(name, AuthLevel::TwoFactor).await;
            assert!(f.gate.authenticate(&with_cookie(&gone)).await.unwrap().is_none(), "{name}");
            assert!(f.store.peek_session(&gone).await.unwrap().is_none(), "{name}'s session ended");
        }
        let audit = f.store.recent_audit(Some("carol"), 10).await.unwrap();
        assert!(audit.iter().any(|r| r.details == "account removed or disabled"));
    }

    #[tokio::test]
    async fn a_session_is_authenticated_and_slid_once_looked_up() {
        let f = fixture().await;
        let token = f.session("alice", AuthLevel::TwoFactor).await;
        f.clock.advance(Duration::from_secs(60));
        let auth = f.gate.authenticate(&with_cookie(&token)).await.unwrap().expect("alice's session");
        assert_eq!((auth.user.username.as_str(), auth.token.as_str()), ("alice", token.as_str()));
        assert_eq!(auth.record.last_seen, f.clock.now_unix());
    }

    #[tokio::test]
    async fn before_a_directory_is_read_a_missing_user_is_neither_let_in_nor_signed_out() {
        let config = LdapConfig { base_dn: "dc=example,dc=com".into(), ..Default::default() };
        let f = fixture_with(Users::ldap(crate::auth::users::ldap::Directory::new(&config).unwrap())).await;
        let token = f.session("alice", AuthLevel::TwoFactor).await;
        assert!(matches!(f.gate.authenticate(&with_cookie(&token)).await, Err(StoreError::Unavailable(_))));
        assert!(f.store.peek_session(&token).await.unwrap().is_some(), "kept");
    }

    #[tokio::test]
    async fn an_upgraded_connection_stays_open_while_its_signer_is_signed_in() {
        let f = fixture().await;
        let session = f.session("alice", AuthLevel::TwoFactor).await;
        let alice = f.token("alice").await.id;
        let carol = f.token("carol").await.id;
        assert!(f.gate.alive(&Signer::Session(session.clone())).await.unwrap());
        assert!(f.gate.alive(&Signer::Token(alice)).await.unwrap());
        assert!(!f.gate.alive(&Signer::Session(session::new_token())).await.unwrap(), "no such session");
        assert!(!f.gate.alive(&Signer::Token(carol)).await.unwrap(), "carol is disabled");
        assert!(!f.gate.alive(&Signer::Token("A".repeat(22))).await.unwrap(), "no such token");
        f.store.delete_session(&session).await.unwrap();
        assert!(!f.gate.alive(&Signer::Session(session)).await.unwrap(), "signed out");
    }
}
