//! Which level a session needs: the one answer, for the gate's check of a
//! request ([`level_needed`]), and for the login, step-up and the account
//! pages ([`Levels::required_level`], [`Levels::login_level`]). The one place
//! where a policy becomes a level, so no two paths can disagree about who
//! gets in. In `auth`, below the gate, because the login and account actions
//! ask it too; `gate`'s module doc tells how levels and second factors meet.

use std::sync::Arc;

use crate::access::{AccessRules, Decision, Resource, Who};
use crate::auth::users::User;
use crate::config::Policy;
use crate::store::AuthLevel;

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
/// where a policy becomes a level. `#[inline]`: the gate asks it on every
/// request, from another module (in a release build, possibly another
/// codegen unit).
#[inline]
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

impl Levels {
    pub fn new(rules: Arc<AccessRules>) -> Levels {
        Levels { rules }
    }

    /// The access rules the levels are read from (the gate consults them too).
    pub fn rules(&self) -> &AccessRules {
        &self.rules
    }

    /// What `account` must bring for `target`: the one answer to "which
    /// level does this need", for the login, step-up and the account pages
    /// (and through [`level_needed`], for `gate::Gate::check`).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    use crate::config::{AccessControlConfig, PathPattern, RuleConfig};
    use crate::identity::IdentityValues;
    use AuthLevel::{OneFactor, TwoFactor};
    use http::HeaderValue;
    use http::Method;

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
            path: Some(PathPattern(regex::Regex::new(path).unwrap())),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..RuleConfig::any(policy)
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
