//! What the operator console lists: users a page at a time, each with what
//! the store holds of them (second factors, lock, sessions, last login), and
//! the addresses banned for their failures. A page costs one sort of the
//! names in memory (the users file is read already) and one or two store
//! round trips for its rows, however many users or audit records there are.

use std::sync::Arc;

use serde::Serialize;

use crate::auth::operator::OperatorActions;
use crate::auth::users::User;
use crate::store::{IpBan, StoreResult, UserState};

pub use crate::auth::operator::MAX_PAGE;

/// One user as the console lists them.
#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub groups: Vec<String>,
    pub disabled: bool,
    pub factors: UserState,
    /// Seconds left on the longest lock a login as this user meets.
    pub locked_for: Option<u64>,
    /// Live sessions.
    pub sessions: usize,
    /// Unix seconds of the last login, if one is known.
    pub last_login: Option<u64>,
}

/// A page of users, by name.
#[derive(Debug, Clone, Serialize)]
pub struct UsersPage {
    pub users: Vec<UserRow>,
    /// The name the next page starts after, when there is one.
    pub next: Option<String>,
    /// How many users match the filter.
    pub total: usize,
}

/// Whether `user` matches `filter` (a case-insensitive part of the name,
/// e-mail, display name or a group; empty matches all).
fn matches(user: &User, filter: &str) -> bool {
    if filter.is_empty() {
        return true;
    }
    let has = |s: &str| s.to_lowercase().contains(filter);
    has(&user.username) || has(&user.email) || has(&user.display_name) || user.groups.iter().any(|g| has(g))
}

impl OperatorActions {
    /// The users matching `filter`, by name, after `after`, at most `limit`.
    pub async fn users_page(&self, filter: &str, after: Option<&str>, limit: usize) -> StoreResult<UsersPage> {
        let limit = limit.clamp(1, MAX_PAGE);
        let filter = filter.trim().to_lowercase();
        let dir = self.users().snapshot();
        let mut found: Vec<&Arc<User>> = dir.users().filter(|u| matches(u, &filter)).collect();
        let total = found.len();
        found.sort_unstable_by(|a, b| a.username.cmp(&b.username));
        let start = after.map_or(0, |a| found.partition_point(|u| u.username.as_str() <= a));
        let page: Vec<&Arc<User>> = found.iter().skip(start).take(limit).copied().collect();
        let next = (start + page.len() < total).then(|| page.last().map(|u| u.username.clone())).flatten();
        let keys: Vec<(String, Vec<String>)> =
            page.iter().map(|u| (u.username.clone(), self.lock_keys(&u.username, &u.email))).collect();
        let facts = self.store().account_facts(&keys).await?;
        let users = page
            .into_iter()
            .zip(facts)
            .map(|(u, f)| UserRow {
                username: u.username.clone(),
                email: u.email.clone(),
                display_name: u.display_name.clone(),
                groups: u.sorted_groups().into_iter().map(str::to_owned).collect(),
                disabled: u.disabled,
                factors: f.factors,
                locked_for: f.locked_for.map(|d| d.as_secs().max(1)),
                sessions: f.sessions,
                last_login: f.last_login,
            })
            .collect();
        Ok(UsersPage { users, next, total })
    }

    /// The addresses banned for their failures, soonest-ending first.
    pub async fn bans(&self, limit: usize) -> StoreResult<Vec<IpBan>> {
        self.store().ip_bans(limit.clamp(1, MAX_PAGE)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_matches_any_part_of_a_name_address_or_group() {
        let v = http::HeaderValue::from_static("x");
        let u = User {
            username: "alice".into(),
            email: "Alice@Example.com".into(),
            display_name: "Alice Liddell".into(),
            password_hash: String::new(),
            groups: vec!["admins".into()],
            disabled: false,
            identity: crate::identity::IdentityValues { user: v.clone(), email: v.clone(), name: v.clone(), groups: v },
            fingerprint: Default::default(),
            dn: None,
        };
        for f in ["", "ali", "example.com", "liddell", "admin"] {
            assert!(matches(&u, f), "{f}");
        }
        assert!(!matches(&u, "bob"));
    }
}
