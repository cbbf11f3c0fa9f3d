//! Access control: ordered rules compiled from `[access_control]`; the first rule
//! that matches a request decides its policy, else `default_policy`. Rules that
//! name users or groups only match once the user is known, so an anonymous
//! request that might match them is asked to log in first.
//!
//! A path with segment parameters (`/admin;x/secret`) is read twice, as it is
//! and as servers that drop parameters read it (`normalize::without_parameters`),
//! and the stricter of the two verdicts stands: a rule written for `/admin/`
//! holds whichever way the application behind the gateway routes.

use std::net::IpAddr;

use http::Method;
use ipnet::IpNet;
use regex::Regex;

use crate::config::{AccessControlConfig, Policy};

/// A request for a protected application, in normal form (`normalize`): the
/// host lower-case without port or trailing dot, the path normalised. Proxy
/// mode, forward-auth and a login's return address all describe the request
/// they decide this way.
#[derive(Debug, Clone, Copy)]
pub struct Resource<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub method: &'a Method,
    pub ip: IpAddr,
}

/// The logged-in user, as rules see them.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
}

/// The parts of a request that one pass over the rules looks at.
struct Subject<'a> {
    host: &'a str,
    path: &'a str,
    method: &'a Method,
    ip: IpAddr,
    user: Option<Who<'a>>,
}

struct Rule {
    domains: Vec<String>,
    path: Option<Regex>,
    methods: Vec<Method>,
    networks: Vec<IpNet>,
    groups: Vec<String>,
    users: Vec<String>,
    policy: Policy,
    allow_tokens: bool,
    refresh_session: bool,
}

/// What the rules say of a request: the decision, and what the deciding rule
/// allows besides (the default policy allows no tokens and refreshes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ruling {
    pub decision: Decision,
    /// Access tokens are accepted here (`allow_tokens`).
    pub allow_tokens: bool,
    /// Requests here extend the session's idle timeout (`refresh_session`).
    pub refresh_session: bool,
}

impl Ruling {
    fn of(decision: Decision) -> Ruling {
        Ruling { decision, allow_tokens: false, refresh_session: true }
    }
}

/// The decision for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A rule (or the default) decided.
    Policy(Policy),
    /// A rule depending on who the user is might match: authenticate first, then decide again.
    NeedsIdentity,
}

pub struct AccessRules {
    rules: Vec<Rule>,
    default_policy: Policy,
    /// Whether any rule names users or groups (so a second evaluation is needed).
    pub identity_dependent: bool,
}

impl AccessRules {
    /// The rules as the config holds them: regexes and methods were parsed
    /// when the config was read.
    pub fn new(cfg: &AccessControlConfig) -> AccessRules {
        let rules: Vec<Rule> = cfg
            .rules
            .iter()
            .map(|r| Rule {
                domains: r.domain.iter().map(|d| d.trim_end_matches('.').to_ascii_lowercase()).collect(),
                path: r.path.as_ref().map(|p| p.0.clone()),
                methods: r.methods.iter().map(|m| m.0.clone()).collect(),
                networks: r.networks.clone(),
                groups: r.groups.clone(),
                users: r.users.clone(),
                policy: r.policy,
                allow_tokens: r.allow_tokens,
                refresh_session: r.refresh_session,
            })
            .collect();
        let identity_dependent = rules.iter().any(|r| !r.groups.is_empty() || !r.users.is_empty());
        AccessRules { rules, default_policy: cfg.default_policy, identity_dependent }
    }

    /// The policy that applies when no rule matches.
    pub fn default_policy(&self) -> Policy {
        self.default_policy
    }

    /// The policy for `r` (requested by `who`, once known). Without a user,
    /// a rule that names users or groups and matches otherwise yields
    /// `NeedsIdentity`. A path with segment parameters is decided as it is
    /// and without them; the stricter verdict stands (`NeedsIdentity` until
    /// the user is known, as either reading may depend on who asks).
    pub fn policy(&self, r: &Resource<'_>, who: Option<Who<'_>>) -> Decision {
        self.ruling(r, who).decision
    }

    /// As [`AccessRules::policy`], with the deciding rule's options. Read
    /// both ways, a path with parameters allows tokens, and refreshes the
    /// session, only if both readings do.
    pub fn ruling(&self, r: &Resource<'_>, who: Option<Who<'_>>) -> Ruling {
        let subject = |path| Subject { host: r.host, path, method: r.method, ip: r.ip, user: who };
        let as_is = self.decide(&subject(r.path));
        let Some(bare) = crate::normalize::without_parameters(r.path) else {
            return as_is;
        };
        let other = self.decide(&subject(&bare));
        Ruling {
            decision: match (as_is.decision, other.decision) {
                (Decision::Policy(a), Decision::Policy(b)) => Decision::Policy(stricter(a, b)),
                _ => Decision::NeedsIdentity,
            },
            allow_tokens: as_is.allow_tokens && other.allow_tokens,
            refresh_session: as_is.refresh_session && other.refresh_session,
        }
    }

    /// One pass over the rules for one reading of the request.
    fn decide(&self, s: &Subject<'_>) -> Ruling {
        for r in &self.rules {
            if !r.domains.is_empty() && !r.domains.iter().any(|d| domain_matches(d, s.host)) {
                continue;
            }
            if r.path.as_ref().is_some_and(|re| !re.is_match(s.path)) {
                continue;
            }
            if !r.methods.is_empty() && !r.methods.iter().any(|m| m.as_str().eq_ignore_ascii_case(s.method.as_str())) {
                continue;
            }
            if !r.networks.is_empty() && !r.networks.iter().any(|n| n.contains(&crate::client_ip::canonical(s.ip))) {
                continue;
            }
            if !r.users.is_empty() || !r.groups.is_empty() {
                let Some(who) = s.user else {
                    return Ruling::of(Decision::NeedsIdentity);
                };
                let user_ok = r.users.is_empty() || r.users.iter().any(|u| u == who.user);
                let group_ok = r.groups.is_empty() || r.groups.iter().any(|g| who.groups.contains(g));
                if !(user_ok && group_ok) {
                    continue;
                }
            }
            return Ruling {
                decision: Decision::Policy(r.policy),
                allow_tokens: r.allow_tokens,
                refresh_session: r.refresh_session,
            };
        }
        Ruling::of(Decision::Policy(self.default_policy))
    }
}

/// The stricter of two policies: deny, then two factors, one, bypass.
pub fn stricter(a: Policy, b: Policy) -> Policy {
    let rank = |p: Policy| match p {
        Policy::Bypass => 0,
        Policy::OneFactor => 1,
        Policy::TwoFactor => 2,
        Policy::Deny => 3,
    };
    if rank(a) >= rank(b) { a } else { b }
}

/// `example.com` matches itself; `*.example.com` matches any subdomain (not the apex).
pub fn domain_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MethodSetting, PathPattern, RuleConfig};

    fn rule(policy: Policy) -> RuleConfig {
        RuleConfig::any(policy)
    }

    fn rules(default_policy: Policy, rules: Vec<RuleConfig>) -> AccessRules {
        AccessRules::new(&AccessControlConfig { default_policy, rules })
    }

    fn path(p: &str) -> Option<PathPattern> {
        Some(PathPattern(Regex::new(p).unwrap()))
    }

    /// A GET from 10.1.2.3.
    fn get<'a>(host: &'a str, path: &'a str) -> Resource<'a> {
        Resource { host, path, method: &Method::GET, ip: "10.1.2.3".parse().unwrap() }
    }

    const ONE: Decision = Decision::Policy(Policy::OneFactor);
    const TWO: Decision = Decision::Policy(Policy::TwoFactor);
    const DENY: Decision = Decision::Policy(Policy::Deny);
    const BYPASS: Decision = Decision::Policy(Policy::Bypass);

    #[test]
    fn first_matching_rule_wins_else_default() {
        let mut public = rule(Policy::Bypass);
        public.path = path("^/public/");
        public.domain = vec!["*.example.com".into()];
        let r = rules(Policy::TwoFactor, vec![public, rule(Policy::OneFactor)]);
        assert_eq!(r.policy(&get("app.example.com", "/public/x"), None), BYPASS);
        assert_eq!(r.policy(&get("example.com", "/public/x"), None), ONE);
        assert_eq!(rules(Policy::TwoFactor, vec![]).policy(&get("a", "/"), None), TWO, "no rule: the default");
    }

    #[test]
    fn an_exact_domain_matches_itself_only_and_the_host_as_normalised() {
        let mut app = rule(Policy::Bypass);
        app.domain = vec!["App.Example.com.".into()];
        let r = rules(Policy::Deny, vec![app]);
        assert_eq!(r.policy(&get("app.example.com", "/"), None), BYPASS, "case and trailing dot in the rule");
        for other in ["example.com", "x.app.example.com", "app.example.co", "app.example.com.evil"] {
            assert_eq!(r.policy(&get(other, "/"), None), DENY, "{other}");
        }
    }

    #[test]
    fn a_wildcard_domain_matches_subdomains_only() {
        assert!(domain_matches("*.example.com", "a.example.com"));
        assert!(domain_matches("*.example.com", "a.b.example.com"));
        assert!(!domain_matches("*.example.com", "example.com"));
        assert!(!domain_matches("*.example.com", "badexample.com"));
        assert!(!domain_matches("*.example.com", ".example.com"));
        assert!(domain_matches("example.com", "example.com"));
        assert!(!domain_matches("example.com", "a.example.com"));
    }

    #[test]
    fn a_path_rule_is_a_regex_over_the_normal_path() {
        let mut admin = rule(Policy::TwoFactor);
        admin.path = path("^/admin/");
        let r = rules(Policy::OneFactor, vec![admin]);
        assert_eq!(r.policy(&get("a", "/admin/x"), None), TWO);
        assert_eq!(r.policy(&get("a", "/public/admin/x"), None), ONE, "anchored");
        assert_eq!(r.policy(&get("a", "/admin"), None), ONE, "the rule says /admin/");
    }

    #[test]
    fn a_methods_rule_applies_to_those_methods_in_any_case_and_no_other() {
        let mut writes = rule(Policy::Deny);
        writes.methods = vec![MethodSetting(Method::POST), MethodSetting(Method::DELETE)];
        let r = rules(Policy::OneFactor, vec![writes]);
        let with = |m: &Method| r.policy(&Resource { method: m, ..get("a", "/") }, None);
        assert_eq!(with(&Method::POST), DENY);
        assert_eq!(with(&Method::DELETE), DENY);
        assert_eq!(with(&Method::from_bytes(b"post").unwrap()), DENY, "methods compare without case");
        assert_eq!(with(&Method::GET), ONE, "another method is not matched");
        assert_eq!(with(&Method::PUT), ONE);
    }

    #[test]
    fn a_networks_rule_matches_addresses_inside_v4_v6_and_mapped() {
        let mut inside = rule(Policy::Bypass);
        inside.networks = vec!["10.0.0.0/8".parse().unwrap(), "2001:db8::/32".parse().unwrap()];
        let r = rules(Policy::TwoFactor, vec![inside]);
        let from = |ip: &str| r.policy(&Resource { ip: ip.parse().unwrap(), ..get("a", "/") }, None);
        assert_eq!(from("10.9.8.7"), BYPASS);
        assert_eq!(from("11.0.0.1"), TWO);
        assert_eq!(from("2001:db8::1"), BYPASS);
        assert_eq!(from("2001:db9::1"), TWO);
        assert_eq!(from("::ffff:10.1.1.1"), BYPASS, "an IPv4-mapped address is its IPv4 address");
        assert_eq!(from("::ffff:11.1.1.1"), TWO);
    }

    #[test]
    fn a_users_rule_matches_those_users_only() {
        let mut alice = rule(Policy::Bypass);
        alice.users = vec!["alice".into()];
        let r = rules(Policy::Deny, vec![alice]);
        let as_user = |u: &str| r.policy(&get("a", "/"), Some(Who { user: u, groups: &[] }));
        assert_eq!(r.policy(&get("a", "/"), None), Decision::NeedsIdentity);
        assert_eq!(as_user("alice"), BYPASS);
        assert_eq!(as_user("bob"), DENY, "another user is not matched");
        assert_eq!(as_user("Alice"), DENY, "user names are exact");
    }

    #[test]
    fn group_rules_need_the_user_first() {
        let mut admins = rule(Policy::TwoFactor);
        admins.groups = vec!["admins".into()];
        let r = rules(Policy::Deny, vec![admins]);
        assert_eq!(r.policy(&get("a", "/"), None), Decision::NeedsIdentity);
        let g = vec!["admins".to_string()];
        assert_eq!(r.policy(&get("a", "/"), Some(Who { user: "bob", groups: &g })), TWO);
        assert_eq!(r.policy(&get("a", "/"), Some(Who { user: "eve", groups: &[] })), DENY);
    }

    #[test]
    fn a_rule_with_users_and_groups_needs_both() {
        let mut both = rule(Policy::Bypass);
        both.users = vec!["alice".into()];
        both.groups = vec!["ops".into()];
        let r = rules(Policy::Deny, vec![both]);
        let ops = vec!["ops".to_string()];
        assert_eq!(r.policy(&get("a", "/"), Some(Who { user: "alice", groups: &ops })), BYPASS);
        assert_eq!(r.policy(&get("a", "/"), Some(Who { user: "alice", groups: &[] })), DENY);
        assert_eq!(r.policy(&get("a", "/"), Some(Who { user: "bob", groups: &ops })), DENY);
    }

    #[test]
    fn every_clause_of_a_rule_must_match() {
        let mut narrow = rule(Policy::Bypass);
        narrow.domain = vec!["app.test".into()];
        narrow.path = path("^/x");
        narrow.methods = vec![MethodSetting(Method::GET)];
        narrow.networks = vec!["10.0.0.0/8".parse().unwrap()];
        let r = rules(Policy::Deny, vec![narrow]);
        assert_eq!(r.policy(&get("app.test", "/x"), None), BYPASS);
        assert_eq!(r.policy(&get("other.test", "/x"), None), DENY);
        assert_eq!(r.policy(&get("app.test", "/y"), None), DENY);
        assert_eq!(r.policy(&Resource { method: &Method::POST, ..get("app.test", "/x") }, None), DENY);
        assert_eq!(r.policy(&Resource { ip: "192.0.2.1".parse().unwrap(), ..get("app.test", "/x") }, None), DENY);
    }

    #[test]
    fn path_parameters_cannot_slip_past_a_rule() {
        let mut admin = rule(Policy::TwoFactor);
        admin.path = path("^/admin/");
        let mut internal = rule(Policy::Deny);
        internal.path = path("^/internal/");
        let r = rules(Policy::OneFactor, vec![admin, internal]);
        for p in ["/admin;x/secret", "/;/admin/secret", "/admin;jsessionid=1/x"] {
            assert_eq!(r.policy(&get("a", p), None), TWO, "{p}");
        }
        assert_eq!(r.policy(&get("a", "/internal;a/x"), None), DENY);
        assert_eq!(r.policy(&get("a", "/public;v=1/x"), None), ONE, "parameters alone change nothing");
    }

    #[test]
    fn with_parameters_the_stricter_reading_wins_both_ways() {
        // A rule that matches the parameters themselves still holds.
        let mut session_ids = rule(Policy::Deny);
        session_ids.path = path(";jsessionid=");
        let mut public = rule(Policy::Bypass);
        public.path = path("^/public/");
        let r = rules(Policy::OneFactor, vec![session_ids, public]);
        assert_eq!(r.policy(&get("a", "/public/x;jsessionid=1"), None), DENY);
        assert_eq!(r.policy(&get("a", "/public/x"), None), BYPASS);
    }

    #[test]
    fn with_parameters_a_reading_that_needs_the_user_waits_for_them() {
        let mut admins = rule(Policy::Bypass);
        admins.path = path("^/admin/");
        admins.groups = vec!["admins".into()];
        let r = rules(Policy::OneFactor, vec![admins]);
        assert_eq!(r.policy(&get("a", "/admin;x/y"), None), Decision::NeedsIdentity);
        let g = vec!["admins".to_string()];
        assert_eq!(
            r.policy(&get("a", "/admin;x/y"), Some(Who { user: "bob", groups: &g })),
            ONE,
            "stricter of bypass and one"
        );
    }

    #[test]
    fn a_rules_options_come_with_its_decision_and_parameters_need_both_readings_to_allow() {
        let mut dav = rule(Policy::OneFactor);
        dav.path = path("^/dav/");
        dav.allow_tokens = true;
        let mut poll = rule(Policy::OneFactor);
        poll.path = path("^/api/poll");
        poll.refresh_session = false;
        let r = rules(Policy::TwoFactor, vec![dav, poll]);
        let at = |p| r.ruling(&get("a", p), None);
        assert!(at("/dav/cal").allow_tokens && at("/dav/cal").refresh_session);
        assert!(!at("/api/poll").allow_tokens && !at("/api/poll").refresh_session);
        assert!(!at("/other").allow_tokens && at("/other").refresh_session, "the default allows no tokens");
        assert!(at("/dav/cal;x").allow_tokens, "both readings are under /dav/");
        assert!(!at("/dav;x/cal").allow_tokens, "one reading is not under /dav/: no tokens");
        assert!(!at("/api;x/poll").refresh_session, "one reading is under /api/poll: no refresh");
        assert!(!at("/api/poll;x").refresh_session, "both readings are under /api/poll");
        assert!(at("/other;x").refresh_session, "neither reading is: the default refreshes");
    }

    #[test]
    fn only_rules_naming_users_or_groups_make_the_rules_depend_on_who_asks() {
        let mut by_user = rule(Policy::Bypass);
        by_user.users = vec!["alice".into()];
        let mut by_group = rule(Policy::Bypass);
        by_group.groups = vec!["ops".into()];
        let mut by_path = rule(Policy::Bypass);
        by_path.path = path("^/x");
        assert!(rules(Policy::Deny, vec![by_path.clone(), by_user]).identity_dependent, "a users rule");
        assert!(rules(Policy::Deny, vec![by_group, by_path.clone()]).identity_dependent, "a groups rule");
        assert!(!rules(Policy::Deny, vec![by_path]).identity_dependent);
        assert!(!rules(Policy::Deny, vec![]).identity_dependent);
    }

    #[test]
    fn stricter_orders_deny_two_one_bypass() {
        use Policy::*;
        let order = [Bypass, OneFactor, TwoFactor, Deny];
        for (i, a) in order.iter().enumerate() {
            for (j, b) in order.iter().enumerate() {
                assert_eq!(stricter(*a, *b), order[i.max(j)], "{a:?} {b:?}");
            }
        }
    }
}
