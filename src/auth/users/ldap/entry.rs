//! A directory entry as a Portcullis user: which attributes are read, how
//! they become a [`User`] (name lower-cased, groups from group entries and
//! `memberOf`), when an account counts as disabled, and what stands for the
//! password in the credential a session keeps.
//!
//! The service account cannot read passwords, so the credential's password
//! part is the entry's DN and the time its password last changed:
//! `pwdChangedTime` (OpenLDAP's password policy), `pwdLastSet` (Active
//! Directory), or, where the directory keeps neither, the entry's change
//! stamp: `entryCSN` (OpenLDAP; microseconds and a counter, the same on
//! every replica), else `modifyTimestamp` (whole seconds: a change in the
//! second of the previous read goes unseen until the next change). Then any
//! change to the entry ends the user's sessions, which errs on the side of
//! signing people out.

use std::collections::HashMap;

use http::HeaderValue;
use ldap3::SearchEntry;

use crate::auth::users::directory::{User, valid_username};
use crate::config::LdapAttributes;
use crate::identity::IdentityValues;

/// Operational and well-known attributes read besides the configured ones.
const MEMBER_OF: &str = "memberOf";
const NS_ACCOUNT_LOCK: &str = "nsAccountLock";
const USER_ACCOUNT_CONTROL: &str = "userAccountControl";
/// Active Directory's "account disabled" bit of `userAccountControl`.
const ACCOUNTDISABLE: i64 = 2;
/// Where the password's last change is recorded, in order of preference.
const PASSWORD_CHANGED: [&str; 4] = ["pwdChangedTime", "pwdLastSet", "entryCSN", "modifyTimestamp"];

/// The attributes a user search asks for.
pub(super) fn user_attributes(a: &LdapAttributes) -> Vec<String> {
    let mut out = vec![a.username.clone(), a.email.clone(), a.display_name.clone(), "cn".to_owned()];
    out.extend([MEMBER_OF, NS_ACCOUNT_LOCK, USER_ACCOUNT_CONTROL].map(str::to_owned));
    out.extend(PASSWORD_CHANGED.map(str::to_owned));
    out
}

/// A user's entry, read; groups and the disabled filter's verdict come from
/// further searches.
#[derive(Debug)]
pub(super) struct Account {
    pub(super) dn: String,
    pub(super) username: String,
    email: String,
    display_name: String,
    password_marker: String,
    member_of: Vec<String>,
    /// Disabled by `nsAccountLock` or `userAccountControl`.
    locked: bool,
}

/// An entry's attributes by lower-cased name (directories answer in the
/// schema's spelling, whatever was asked for).
struct Attrs(HashMap<String, Vec<String>>);

impl Attrs {
    fn first(&self, name: &str) -> Option<&str> {
        self.all(name).first().map(String::as_str).filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> &[String] {
        self.0.get(&name.to_ascii_lowercase()).map_or(&[], Vec::as_slice)
    }
}

/// Reads an entry; `Err` says why it cannot be a user (logged, and the
/// entry is left out: it cannot log in).
pub(super) fn account(entry: SearchEntry, a: &LdapAttributes) -> Result<Account, String> {
    let attrs = Attrs(entry.attrs.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect());
    let username = attrs.first(&a.username).ok_or_else(|| format!("no {} attribute", a.username))?.to_lowercase();
    if !valid_username(&username) {
        return Err(format!("{} {username:?} is not a name Portcullis takes (1-64 of a-z 0-9 . _ @ + -)", a.username));
    }
    let email = attrs.first(&a.email).ok_or_else(|| format!("no {} attribute (codes go there)", a.email))?;
    if !email.contains('@') {
        return Err(format!("{} {email:?} is not an e-mail address", a.email));
    }
    let display_name = attrs.first(&a.display_name).or_else(|| attrs.first("cn")).unwrap_or(&username).to_owned();
    let changed = PASSWORD_CHANGED.iter().find_map(|name| Some((*name, attrs.first(name)?)));
    let password_marker = match changed {
        Some((name, at)) => format!("ldap:{}\n{name}={at}", entry.dn),
        None => format!("ldap:{}", entry.dn),
    };
    let locked = attrs.first(NS_ACCOUNT_LOCK).is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || attrs
            .first(USER_ACCOUNT_CONTROL)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|v| v & ACCOUNTDISABLE != 0);
    Ok(Account {
        dn: entry.dn,
        username,
        email: email.to_owned(),
        display_name,
        password_marker,
        member_of: attrs.all(MEMBER_OF).iter().filter_map(|dn| group_of(dn)).collect(),
        locked,
    })
}

/// The name of the group whose DN is `dn`: its first RDN's value
/// (`cn=admins,ou=groups,dc=example,dc=com` → `admins`).
fn group_of(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?),
            ',' | '+' => break,
            c => value.push(c),
        }
    }
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The user `account` is, with the groups its group entries name and
/// whether the disabled filter matched it.
pub(super) fn user(account: Account, groups: Vec<String>, disabled_by_filter: bool) -> Result<User, String> {
    let mut groups: Vec<String> = groups.into_iter().chain(account.member_of).collect();
    // A group's name goes into a comma-separated header: one with a comma
    // or a control character would read as other groups, so it is left out.
    groups.retain(|g| !g.contains(',') && !g.chars().any(char::is_control));
    groups.sort_unstable();
    groups.dedup();
    let header = |what: &str, s: &str| {
        HeaderValue::from_bytes(s.as_bytes()).map_err(|_| format!("its {what} {s:?} cannot be sent in a header"))
    };
    let identity = IdentityValues {
        user: header("name", &account.username)?,
        email: header("e-mail", &account.email)?,
        name: header("display name", &account.display_name)?,
        groups: header("groups", &groups.join(","))?,
    };
    Ok(User {
        username: account.username,
        email: account.email,
        display_name: account.display_name,
        password_hash: account.password_marker,
        groups,
        disabled: account.locked || disabled_by_filter,
        identity,
        fingerprint: std::sync::OnceLock::new(),
        dn: Some(account.dn),
    })
}

/// The group names of group entries (their `group_name` attribute).
pub(super) fn group_names(entries: Vec<SearchEntry>, group_name: &str) -> Vec<String> {
    entries
        .into_iter()
        .filter_map(|e| {
            Attrs(e.attrs.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect())
                .first(group_name)
                .map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: dn.to_owned(),
            attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn an_entry_becomes_a_user_with_lower_case_name_and_memberof_groups() {
        let a = LdapAttributes::default();
        let e = entry(
            "uid=Alice,ou=people,dc=example,dc=com",
            &[
                ("UID", &["Alice"]),
                ("mail", &["alice@example.com"]),
                ("cn", &["Alice Liddell"]),
                ("memberOf", &["cn=admins,ou=groups,dc=example,dc=com", "cn=a\\,b,ou=groups,dc=x"]),
                ("modifyTimestamp", &["20261206120000Z"]),
            ],
        );
        let u = user(account(e, &a).unwrap(), vec!["dev".into(), "admins".into()], false).unwrap();
        assert_eq!(u.username, "alice");
        assert_eq!(u.display_name, "Alice Liddell", "cn when there is no displayName");
        assert_eq!(u.groups, ["admins", "dev"], "deduplicated; a group with a comma left out");
        assert_eq!(u.password_hash, "ldap:uid=Alice,ou=people,dc=example,dc=com\nmodifyTimestamp=20261206120000Z");
        assert!(!u.disabled);
    }

    #[test]
    fn locked_and_ad_disabled_entries_are_disabled() {
        let a = LdapAttributes::default();
        let base = [("uid", &["bob"][..]), ("mail", &["bob@example.com"][..])];
        let with = |extra: (&'static str, &'static [&'static str])| {
            let mut attrs = base.to_vec();
            attrs.push(extra);
            user(account(entry("uid=bob,dc=x", &attrs), &a).unwrap(), vec![], false).unwrap().disabled
        };
        assert!(with(("nsAccountLock", &["TRUE"])));
        assert!(with(("userAccountControl", &["514"])), "NORMAL_ACCOUNT | ACCOUNTDISABLE");
        assert!(!with(("userAccountControl", &["512"])));
        assert!(!with(("nsAccountLock", &["false"])));
        let u = user(account(entry("uid=bob,dc=x", &base), &a).unwrap(), vec![], true).unwrap();
        assert!(u.disabled, "the disabled filter matched");
    }

    #[test]
    fn entries_that_cannot_be_users_say_why() {
        let a = LdapAttributes::default();
        assert!(account(entry("uid=x,dc=x", &[("mail", &["x@x"])]), &a).unwrap_err().contains("no uid"));
        assert!(account(entry("uid=x,dc=x", &[("uid", &["x"])]), &a).unwrap_err().contains("no mail"));
        assert!(account(entry("uid=x,dc=x", &[("uid", &["jürgen"]), ("mail", &["j@x"])]), &a).is_err());
    }
}
