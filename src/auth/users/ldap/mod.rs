//! The LDAP / Active Directory user backend (`auth.backend = "ldap"`): the
//! directory client the live [`super::Users`] asks at login and re-reads
//! every `ldap.refresh`.
//!
//! - a login searches as the service account with `ldap.user_filter`, what
//!   was typed escaped (`filter`); exactly one entry or nobody;
//! - the password is checked by binding as that entry's DN, on a connection
//!   kept for binds (`pool`); an empty password never reaches the
//!   directory, where it would be an unauthenticated bind that "succeeds";
//! - groups come from `ldap.group_filter` and `memberOf`; disabled accounts
//!   from `nsAccountLock`, `userAccountControl` or `ldap.disabled_filter`
//!   (`entry`);
//! - each step of a login (the search with its group lookups, then the
//!   bind) runs under a deadline of `ldap.timeout`: a directory that is down
//!   or slow is an error, which the login answers with 503, never with a
//!   session.
//!
//! Every operation is timed (`directory_operation_duration_seconds{op}`) and
//! its failures counted (`directory_errors_total{op}`).

mod entry;
mod op;
mod pool;

use futures_util::StreamExt as _;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Scope, SearchEntry, SearchOptions};
use tokio::time::Instant;

use crate::auth::users::directory::User;
use crate::config::ldap_filter as filter;
use crate::config::{LdapConfig, Problem};
use op::timed;
pub use op::{Failure, Op};
use pool::{Identity, Pool};

/// LDAP result codes met here.
const SUCCESS: u32 = 0;
const SIZE_LIMIT_EXCEEDED: u32 = 4;
const INVALID_CREDENTIALS: u32 = 49;
/// Users listed per page of a refresh (Active Directory's default page limit is 1000).
const PAGE: i32 = 500;

/// The directory: its settings and its two pools of connections.
pub struct Directory {
    config: LdapConfig,
    searches: Pool,
    binds: Pool,
}

impl Directory {
    /// Sets the directory up; connections open when first needed. Must run
    /// on the runtime that outlives the gateway's requests (the main one).
    pub fn new(config: &LdapConfig) -> Result<Directory, String> {
        let service =
            Identity::Service { dn: config.bind_dn.clone(), password: config.bind_password.expose().to_owned() };
        Ok(Directory {
            config: config.clone(),
            searches: Pool::new(config, service)?,
            binds: Pool::new(config, Identity::Users)?,
        })
    }

    /// How often the users are read again.
    pub fn refresh_every(&self) -> std::time::Duration {
        self.config.refresh
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.config.timeout
    }

    /// The account `typed` names (a name or an address, as `ldap.user_filter`
    /// reads it): exactly one entry that can be a user, or None.
    pub async fn find(&self, typed: &str) -> Result<Option<User>, Failure> {
        let deadline = self.deadline();
        let filter = filter::fill(&self.config.user_filter, &[(filter::INPUT, typed.trim())]);
        let attrs = entry::user_attributes(&self.config.attributes);
        let mut conn = self.searches.get(deadline).await?;
        let found = timed(Op::FindUser, deadline, async {
            // Two are enough to tell "exactly one" from "several".
            let result = conn
                .ldap
                .with_search_options(SearchOptions::new().sizelimit(2))
                .search(&self.config.base_dn, Scope::Subtree, &filter, &attrs)
                .await?;
            Ok((result.0, result.1))
        })
        .await
        .inspect_err(|_| conn.broken())?;
        drop(conn);
        let (entries, result) = found;
        let entries: Vec<SearchEntry> =
            entries.into_iter().filter(|e| !e.is_ref()).map(SearchEntry::construct).collect();
        match result.rc {
            SUCCESS if entries.len() == 1 => {}
            SUCCESS if entries.is_empty() => return Ok(None),
            SUCCESS | SIZE_LIMIT_EXCEEDED => {
                tracing::warn!(filter = %filter, "several directory entries match one login name; refused");
                return Ok(None);
            }
            rc => return Err(failed(Op::FindUser, rc, &result.text)),
        }
        let Some(found) = entries.into_iter().next() else { return Ok(None) };
        let dn = found.dn.clone();
        let account = match entry::account(found, &self.config.attributes) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(dn = %dn, "directory entry cannot log in: {why}");
                return Ok(None);
            }
        };
        self.complete(account, deadline).await
    }

    /// The user `account` is: its groups and the disabled filter read.
    async fn complete(&self, account: entry::Account, deadline: Instant) -> Result<Option<User>, Failure> {
        let groups = self.groups(&account, deadline).await?;
        let disabled = match &self.config.disabled_filter {
            Some(f) => self.matches(&account.dn, f, deadline).await?,
            None => false,
        };
        let dn = account.dn.clone();
        Ok(entry::user(account, groups, disabled)
            .inspect_err(|why| tracing::warn!(dn = %dn, "directory entry cannot log in: {why}"))
            .ok())
    }

    /// The names of the groups `group_filter` finds for `account`.
    async fn groups(&self, account: &entry::Account, deadline: Instant) -> Result<Vec<String>, Failure> {
        if self.config.group_filter.is_empty() {
            return Ok(Vec::new());
        }
        let filter = filter::fill(
            &self.config.group_filter,
            &[(filter::DN, &account.dn), (filter::USERNAME, &account.username)],
        );
        let attr = [self.config.attributes.group_name.as_str()];
        let mut conn = self.searches.get(deadline).await?;
        let entries = timed(Op::ReadGroups, deadline, async {
            conn.ldap.search(&self.config.base_dn, Scope::Subtree, &filter, &attr).await?.success()
        })
        .await
        .inspect_err(|_| conn.broken())?
        .0;
        let entries = entries.into_iter().filter(|e| !e.is_ref()).map(SearchEntry::construct).collect();
        Ok(entry::group_names(entries, &self.config.attributes.group_name))
    }

    /// Whether the entry `dn` matches `filter`.
    async fn matches(&self, dn: &str, filter: &str, deadline: Instant) -> Result<bool, Failure> {
        let mut conn = self.searches.get(deadline).await?;
        let (entries, _) = timed(Op::DisabledCheck, deadline, async {
            conn.ldap.search(dn, Scope::Base, filter, &["1.1"]).await?.success()
        })
        .await
        .inspect_err(|_| conn.broken())?;
        Ok(!entries.is_empty())
    }

    /// Whether `password` is the password of the entry `dn`: a bind as it.
    /// An empty password is refused here: the directory would take it as an
    /// unauthenticated bind, and answer success.
    pub async fn check_password(&self, dn: &str, password: &str) -> Result<bool, Failure> {
        if password.is_empty() || dn.is_empty() {
            return Ok(false);
        }
        let deadline = self.deadline();
        let mut conn = self.binds.get(deadline).await?;
        let result =
            timed(Op::UserBind, deadline, conn.ldap.simple_bind(dn, password)).await.inspect_err(|_| conn.broken())?;
        match result.rc {
            SUCCESS => Ok(true),
            INVALID_CREDENTIALS => Ok(false),
            rc => {
                // Refused for another reason (e.g. a password policy's lock):
                // not this password's proof, and not the directory's failure.
                // The connection's identity is unclear: close it.
                conn.broken();
                tracing::info!(rc, text = %result.text, "directory refused a bind");
                Ok(false)
            }
        }
    }

    /// Every user `user_filter` could find (its `{input}` as `*`), read in
    /// pages, with their groups; entries that cannot be users are left out
    /// (and logged). Any failure fails the whole list, so a directory that
    /// answers only in part never reads as users removed.
    pub async fn every_user(&self) -> Result<Vec<User>, Failure> {
        let every = filter::every_user(&self.config.user_filter);
        let attrs = entry::user_attributes(&self.config.attributes);
        let mut accounts = Vec::new();
        for entry in self.list(&every, attrs).await? {
            let dn = entry.dn.clone();
            match entry::account(entry, &self.config.attributes) {
                Ok(a) => accounts.push(a),
                Err(why) => tracing::debug!(dn = %dn, "directory entry cannot log in: {why}"),
            }
        }
        let disabled: std::collections::HashSet<String> = match &self.config.disabled_filter {
            Some(f) => {
                let both = format!("(&{every}{f})");
                self.list(&both, vec!["1.1".to_owned()]).await?.into_iter().map(|e| e.dn.to_ascii_lowercase()).collect()
            }
            None => Default::default(),
        };
        let users = futures_util::stream::iter(accounts)
            .map(|account| async {
                let groups = self.groups(&account, self.deadline()).await?;
                let off = disabled.contains(&account.dn.to_ascii_lowercase());
                Ok::<_, Failure>(entry::user(account, groups, off).ok())
            })
            // Half the search connections at most: logins keep the rest.
            .buffer_unordered((self.config.pool_size / 2).max(1))
            .collect::<Vec<_>>()
            .await;
        users.into_iter().filter_map(Result::transpose).collect()
    }

    /// The entries `filter` finds, page by page; each page within `ldap.timeout`.
    async fn list(&self, filter: &str, attrs: Vec<String>) -> Result<Vec<SearchEntry>, Failure> {
        let mut conn = self.searches.get(self.deadline()).await?;
        let adapters: Vec<Box<dyn Adapter<_, _>>> =
            vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(PAGE))];
        let base = self.config.base_dn.clone();
        let mut stream = timed(
            Op::ListUsers,
            self.deadline(),
            conn.ldap.streaming_search_with(adapters, &base, Scope::Subtree, filter, attrs),
        )
        .await
        .inspect_err(|_| conn.broken())?;
        let mut out = Vec::new();
        loop {
            match timed(Op::ListUsers, self.deadline(), stream.next()).await {
                Ok(Some(e)) => out.push(SearchEntry::construct(e)),
                Ok(None) => break,
                Err(e) => {
                    conn.broken();
                    return Err(e);
                }
            }
        }
        let result = stream.finish().await;
        if result.rc != SUCCESS {
            conn.broken();
            return Err(failed(Op::ListUsers, result.rc, &result.text));
        }
        Ok(out)
    }

    /// What `check-config` asks of the directory: the service account binds,
    /// and the user filter runs once (and the group filter, for a user it
    /// found). Each failure names the key to look at.
    pub async fn check(config: &LdapConfig) -> Vec<Problem> {
        let directory = match Directory::new(config) {
            Ok(d) => d,
            Err(e) => return vec![Problem::new("ldap.ca_file", e)],
        };
        let deadline = directory.deadline();
        let conn = directory.searches.get(deadline).await;
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => return vec![problem_of(&e, config)],
        };
        let every = filter::every_user(&config.user_filter);
        let attrs = entry::user_attributes(&config.attributes);
        let found = timed(Op::FindUser, deadline, async {
            conn.ldap
                .with_search_options(SearchOptions::new().sizelimit(1))
                .search(&config.base_dn, Scope::Subtree, &every, &attrs)
                .await
        })
        .await;
        drop(conn);
        let (entries, result) = match found {
            Ok(r) => (r.0, r.1),
            Err(e) => return vec![Problem::new("ldap.user_filter", e.to_string())],
        };
        match result.rc {
            SUCCESS | SIZE_LIMIT_EXCEEDED => {}
            32 => return vec![Problem::new("ldap.base_dn", format!("no such entry: {}", config.base_dn))],
            rc => return vec![Problem::new("ldap.user_filter", failed(Op::FindUser, rc, &result.text).to_string())],
        }
        let Some(first) = entries.into_iter().find(|e| !e.is_ref()).map(SearchEntry::construct) else {
            return vec![Problem::new(
                "ldap.user_filter",
                format!("finds no entry under {} (with {{input}} as *)", config.base_dn),
            )];
        };
        let account = match entry::account(first, &config.attributes) {
            Ok(a) => a,
            Err(why) => return vec![Problem::new("ldap.attributes", format!("the first user found: {why}"))],
        };
        match directory.groups(&account, directory.deadline()).await {
            Ok(_) => Vec::new(),
            Err(e) => vec![Problem::new("ldap.group_filter", e.to_string())],
        }
    }
}

/// An LDAP result code that is neither success nor an expected refusal.
fn failed(op: Op, rc: u32, text: &str) -> Failure {
    Failure::Unavailable(
        op,
        format!("result code {rc}{}", if text.is_empty() { String::new() } else { format!(": {text}") }),
    )
}

/// The key to blame for a failure to open and bind a connection.
fn problem_of(e: &Failure, config: &LdapConfig) -> Problem {
    let text = e.to_string();
    let certificate = |why: &str| why.to_ascii_lowercase().contains("certificate");
    let key = match e {
        Failure::Unavailable(Op::ServiceBind, _) => "ldap.bind_dn",
        Failure::Unavailable(Op::Connect, why) if certificate(why) && config.ca_file.is_some() => "ldap.ca_file",
        _ => "ldap.url",
    };
    Problem::new(key, format!("{} ({text})", config.url))
}
