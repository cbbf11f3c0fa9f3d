//! What an operator does to accounts and addresses: lift a lock, clear an
//! address's rate windows, end every session of a user, forget a removed
//! user, and look up what the store holds of accounts (second factors,
//! locks). The running gateway does these for `portcullis unlock`,
//! `sessions revoke`, `user remove` and `user list` (its admin endpoint, in
//! `admin`), since the default memory store lives inside it; with a shared
//! store the command line may do them itself. Each change is audited,
//! whatever it found.

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::{Actor, Audit, SecurityEvent};
use crate::auth::lockout::name_key;
use crate::auth::users::Users;
use crate::store::{RateBucket, Store, StoreResult, UserState};

/// Who asked, for the audit trail: the admin endpoint's peer, or the
/// command line working on the store itself.
#[derive(Debug, Clone)]
pub struct Operator {
    pub ip: String,
    pub agent: String,
}

/// What `unlock NAME` did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Unlocked {
    pub name: String,
    /// The account the name found, if any.
    pub account: Option<String>,
    pub was_locked: bool,
}

/// What `unlock --ip ADDR` did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IpUnlocked {
    pub ip: String,
    /// Windows that held events and were cleared.
    pub windows_cleared: usize,
}

/// What `sessions revoke NAME` did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Revoked {
    pub name: String,
    pub account: Option<String>,
    pub revoked: usize,
}

/// What `user remove NAME` did in the store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Forgotten {
    pub name: String,
    /// Live sessions ended.
    pub sessions: usize,
    /// The second factors removed, as they were.
    pub factors: UserState,
}

/// What the store holds of one account, for `user list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountState {
    pub name: String,
    pub factors: UserState,
    /// Seconds left on the longest lock a login as this account meets (the
    /// account's own, or that of its name or e-mail as typed), if any.
    pub locked_for: Option<u64>,
}

/// The operator's actions; cheap to clone.
#[derive(Clone)]
pub struct OperatorActions {
    store: Store,
    users: Arc<Users>,
    audit: Audit,
    secret: Arc<[u8]>,
}

impl OperatorActions {
    pub fn new(store: Store, users: Arc<Users>, audit: Audit, secret: Arc<[u8]>) -> OperatorActions {
        OperatorActions { store, users, audit, secret }
    }

    /// Lifts every lock a login as `name` can meet: the account's (found by
    /// name or e-mail) and those of its typed names (as given, the account's
    /// name and its e-mail), and forgets their failures.
    pub async fn unlock(&self, name: &str, by: &Operator) -> StoreResult<Unlocked> {
        let user = self.users.snapshot().find(name).cloned();
        let mut keys = vec![name_key(&self.secret, name)];
        if let Some(u) = &user {
            keys.extend([u.username.clone(), name_key(&self.secret, &u.username), name_key(&self.secret, &u.email)]);
        }
        keys.sort();
        keys.dedup();
        let mut was_locked = false;
        for key in &keys {
            was_locked |= self.store.unlock_account(key).await?;
        }
        let account = user.map(|u| u.username.clone());
        let details = if was_locked { "by an operator: it was locked" } else { "by an operator: it was not locked" };
        let actor = Actor { username: account.as_deref().unwrap_or(name), user: account.as_deref(), ..by.actor() };
        self.audit.event(actor, SecurityEvent::AccountUnlocked, details).await;
        Ok(Unlocked { name: name.to_owned(), account, was_locked })
    }

    /// Clears every rate window of `ip` (login, codes, resends, code e-mails,
    /// the failure ban), in both the forms an IPv4 client can have.
    pub async fn unlock_ip(&self, ip: IpAddr, by: &Operator) -> StoreResult<IpUnlocked> {
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mut forms = vec![canonical.to_string()];
        if let IpAddr::V4(v4) = canonical {
            forms.push(IpAddr::V6(v4.to_ipv6_mapped()).to_string());
        }
        let mut windows_cleared = 0;
        for form in &forms {
            windows_cleared += self.store.clear_windows(&RateBucket::PER_IP, form).await?;
        }
        let ip = canonical.to_string();
        let actor = Actor { username: "-", user: None, ip: &ip, user_agent: &by.agent };
        let details = format!("by an operator from {}: {windows_cleared} windows cleared", by.ip);
        self.audit.event(actor, SecurityEvent::IpUnlocked, &details).await;
        Ok(IpUnlocked { ip, windows_cleared })
    }

    /// Ends every session of the user `name` (by name or e-mail; a name that
    /// matches no account is taken as the account name, for one removed from
    /// the users file).
    pub async fn revoke_sessions(&self, name: &str, by: &Operator) -> StoreResult<Revoked> {
        let account = self.users.snapshot().find(name).map(|u| u.username.clone());
        let target = account.as_deref().unwrap_or(name);
        let revoked = self.store.revoke_user_sessions(target).await?;
        let details = format!("by an operator: {revoked} session(s) ended");
        let actor = Actor { username: target, user: Some(target), ..by.actor() };
        self.audit.event(actor, SecurityEvent::SessionRevoked, &details).await;
        Ok(Revoked { name: name.to_owned(), account, revoked })
    }
}

/// A user's access tokens as an operator sees them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TokensOf {
    pub account: String,
    pub tokens: Vec<crate::store::TokenInfo>,
}

/// Access tokens revoked by an operator.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TokensRevoked {
    pub account: String,
    pub revoked: usize,
}

impl OperatorActions {
    /// The access tokens of the user `name` (by name or e-mail).
    pub async fn tokens(&self, name: &str) -> StoreResult<TokensOf> {
        let account = self.account(name);
        let mut tokens = self.store.list_tokens(&account).await?;
        tokens.sort_by_key(|t| std::cmp::Reverse(t.record.created));
        Ok(TokensOf { account, tokens })
    }

    /// Revokes the user's token `id`, or all their tokens without one.
    pub async fn revoke_tokens(&self, name: &str, id: Option<&str>, by: &Operator) -> StoreResult<TokensRevoked> {
        let account = self.account(name);
        let ids: Vec<String> = match id {
            Some(id) => vec![id.to_owned()],
            None => self.store.list_tokens(&account).await?.into_iter().map(|t| t.id).collect(),
        };
        let mut revoked = 0;
        for id in &ids {
            if self.store.revoke_token(&account, id).await? {
                revoked += 1;
                let actor = Actor { username: &account, user: Some(&account), ..by.actor() };
                self.audit.event(actor, SecurityEvent::TokenRevoked, &format!("by an operator: token {id}")).await;
            }
        }
        Ok(TokensRevoked { account, revoked })
    }

    /// The account `name` finds (by name or e-mail), else `name` itself.
    fn account(&self, name: &str) -> String {
        self.users.snapshot().find(name).map_or_else(|| name.to_owned(), |u| u.username.clone())
    }
}

impl OperatorActions {
    /// Forgets the user `name` in the store (`Store::forget_user`): their
    /// sessions end and their second factors go, so none of it returns to
    /// someone later given the name. For a user removed from the users file.
    pub async fn forget_user(&self, name: &str, by: &Operator) -> StoreResult<Forgotten> {
        let forgotten = self.store.forget_user(name).await?;
        let details = format!(
            "by an operator: removed; {} session(s) ended; second factors forgotten: {}",
            forgotten.sessions,
            describe_factors(&forgotten.factors)
        );
        let actor = Actor { username: name, user: Some(name), ..by.actor() };
        self.audit.event(actor, SecurityEvent::AccountRemoved, &details).await;
        Ok(Forgotten { name: name.to_owned(), sessions: forgotten.sessions, factors: forgotten.factors })
    }

    /// What the store holds of each named account: its second factors, and
    /// the longest lock a login as it meets (those `unlock NAME` lifts).
    pub async fn account_states(&self, names: &[String]) -> StoreResult<Vec<AccountState>> {
        let users = self.users.snapshot();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let mut keys = vec![name.clone(), name_key(&self.secret, name)];
            if let Some(u) = users.get(name) {
                keys.push(name_key(&self.secret, &u.email));
            }
            let mut locked_for = None;
            for key in &keys {
                if let Some(left) = self.store.account_locked(key).await? {
                    locked_for = locked_for.max(Some(left.as_secs().max(1)));
                }
            }
            let factors = self.store.user_state(name).await?;
            out.push(AccountState { name: name.clone(), factors, locked_for });
        }
        Ok(out)
    }
}

/// The second factors in `f`, for people: "authenticator app, passkeys,
/// 8 backup codes", or "none".
pub fn describe_factors(f: &UserState) -> String {
    let mut parts = Vec::new();
    if f.otp_enabled {
        parts.push("e-mailed codes".to_owned());
    }
    if f.totp_enabled {
        parts.push("authenticator app".to_owned());
    }
    if f.passkey_enabled {
        parts.push("passkeys".to_owned());
    }
    if f.backup_codes_left > 0 {
        parts.push(format!("{} backup codes", f.backup_codes_left));
    }
    if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
}

impl Operator {
    fn actor(&self) -> Actor<'_> {
        Actor { username: "-", user: None, ip: &self.ip, user_agent: &self.agent }
    }
}
