//! Access control: ordered rules compiled from `[access_control]`; the first rule
//! that matches a request decides its policy, else `default_policy`. Rules that
//! name users or groups only match once the user is known, so an anonymous
//! request that might match them is asked to log in first.

use std::net::IpAddr;

use http::Method;
use ipnet::IpNet;
use regex::Regex;

use crate::config::{AccessControlConfig, Policy};

/// The parts of a request that rules look at, in normal form (`normalize`):
/// the host lower-case without port or trailing dot, the path normalised.
pub struct Subject<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub method: &'a Method,
    pub ip: IpAddr,
    /// The logged-in user and their groups, if any.
    pub user: Option<(&'a str, &'a [String])>,
}

struct Rule {
    domains: Vec<String>,
    path: Option<Regex>,
    methods: Vec<Method>,
    networks: Vec<IpNet>,
    groups: Vec<String>,
    users: Vec<String>,
    policy: Policy,
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
            })
            .collect();
        let identity_dependent = rules.iter().any(|r| !r.groups.is_empty() || !r.users.is_empty());
        AccessRules { rules, default_policy: cfg.default_policy, identity_dependent }
    }

    /// The policy that applies when no rule matches.
    pub fn default_policy(&self) -> Policy {
        self.default_policy
    }

    /// The policy for `s`. Without a user, a rule that names users or groups and
    /// matches otherwise yields `NeedsIdentity`.
    pub fn decide(&self, s: &Subject<'_>) -> Decision {
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
            if !r.networks.is_empty() && !r.networks.iter().any(|n| n.contains(&s.ip)) {
                continue;
            }
            if !r.users.is_empty() || !r.groups.is_empty() {
                let Some((user, groups)) = s.user else {
                    return Decision::NeedsIdentity;
                };
                let user_ok = r.users.is_empty() || r.users.iter().any(|u| u == user);
                let group_ok = r.groups.is_empty() || r.groups.iter().any(|g| groups.contains(g));
                if !(user_ok && group_ok) {
                    continue;
                }
            }
            return Decision::Policy(r.policy);
        }
        Decision::Policy(self.default_policy)
    }
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
    use crate::config::{PathPattern, RuleConfig};

    fn rule(policy: Policy) -> RuleConfig {
        RuleConfig {
            domain: vec![],
            path: None,
            methods: vec![],
            networks: vec![],
            groups: vec![],
            users: vec![],
            policy,
        }
    }

    fn subject<'a>(host: &'a str, path: &'a str, user: Option<(&'a str, &'a [String])>) -> Subject<'a> {
        Subject { host, path, method: &Method::GET, ip: "10.1.2.3".parse().unwrap(), user }
    }

    #[test]
    fn first_matching_rule_wins_else_default() {
        let mut public = rule(Policy::Bypass);
        public.path = Some(PathPattern(Regex::new("^/public/").unwrap()));
        public.domain = vec!["*.example.com".into()];
        let cfg =
            AccessControlConfig { default_policy: Policy::TwoFactor, rules: vec![public, rule(Policy::OneFactor)] };
        let rules = AccessRules::new(&cfg);
        assert_eq!(rules.decide(&subject("app.example.com", "/public/x", None)), Decision::Policy(Policy::Bypass));
        assert_eq!(rules.decide(&subject("example.com", "/public/x", None)), Decision::Policy(Policy::OneFactor));
    }

    #[test]
    fn group_rules_need_the_user_first() {
        let mut admins = rule(Policy::TwoFactor);
        admins.groups = vec!["admins".into()];
        let cfg = AccessControlConfig { default_policy: Policy::Deny, rules: vec![admins] };
        let rules = AccessRules::new(&cfg);
        assert_eq!(rules.decide(&subject("a", "/", None)), Decision::NeedsIdentity);
        let g = vec!["admins".to_string()];
        assert_eq!(rules.decide(&subject("a", "/", Some(("bob", &g)))), Decision::Policy(Policy::TwoFactor));
        assert_eq!(rules.decide(&subject("a", "/", Some(("eve", &[])))), Decision::Policy(Policy::Deny));
    }

    #[test]
    fn wildcard_domains_do_not_match_lookalikes() {
        assert!(domain_matches("*.example.com", "a.example.com"));
        assert!(!domain_matches("*.example.com", "example.com"));
        assert!(!domain_matches("*.example.com", "badexample.com"));
    }
}
