//! What an operator does to accounts and addresses: lift a lock, clear an
//! address's rate windows, end every session of a user, reset a user's
//! second factors, disable or enable a user, forget a removed user, and look
//! up what the store holds of accounts (second factors, locks). The running
//! gateway does these for `portcullis unlock`, `sessions revoke`, `user
//! remove` and `user list` (its admin endpoint, in `admin`), since the
//! default memory store lives inside it, and for the operator console
//! (`portal::console`); with a shared store the command line may do them
//! itself. Each change is audited, whatever it found, with the operator's
//! account as its actor when one acted in the console.

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::{Actor, Audit, SecurityEvent};
use crate::auth::Client;
use crate::auth::lockout::name_key;
use crate::auth::notify::Notifier;
use crate::auth::users::{EditError, Users};
use crate::mail::Alert;
use crate::store::{AuditPage, AuditQuery, RateBucket, Store, StoreError, StoreResult, UserState};

/// Most rows a page of users, bans or audit records holds.
pub const MAX_PAGE: usize = 200;

/// Who asked, for the audit trail: the admin endpoint's peer, the command
/// line working on the store itself, or an operator in the console.
#[derive(Debug, Clone)]
pub struct Operator {
    pub ip: String,
    pub agent: String,
    /// The operator's account, when they signed in to the console.
    pub name: Option<String>,
}

/// Why an operator's change to a user was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no such user")]
    NoSuchUser,
    /// The users file could not be written (or this user backend is read-only).
    #[error(transparent)]
    Users(#[from] EditError),
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// What resetting a user's second factors removed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FactorsReset {
    pub account: String,
    /// The second factors as they were.
    pub factors: UserState,
}

/// What disabling or enabling a user did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Toggled {
    pub account: String,
    pub disabled: bool,
    /// False when the user already was so.
    pub changed: bool,
    /// Sessions ended (disabling).
    pub sessions_ended: usize,
}

/// The operator's actions; cheap to clone.
#[derive(Clone)]
pub struct OperatorActions {
    store: Store,
    users: Arc<Users>,
    audit: Audit,
    secret: Arc<[u8]>,
    /// Alerts the user of a change made to their account (the console's
    /// reset of second factors); None where no mail is configured (the
    /// command line working on the store).
    notifier: Option<Notifier>,
}

impl OperatorActions {
    pub fn new(store: Store, users: Arc<Users>, audit: Audit, secret: Arc<[u8]>) -> OperatorActions {
        OperatorActions { store, users, audit, secret, notifier: None }
    }

    /// These actions, alerting users by e-mail through `notifier`.
    pub fn with_notifier(mut self, notifier: Notifier) -> OperatorActions {
        self.notifier = Some(notifier);
        self
    }

    /// The store the actions work on (the console reads through it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The users the actions look accounts up in.
    pub fn users(&self) -> &Arc<Users> {
        &self.users
    }

    /// A page of the audit trail (`Store::search_audit`), at most 200 records.
    pub async fn search_audit(&self, q: &AuditQuery) -> StoreResult<AuditPage> {
        let q = AuditQuery { limit: q.limit.clamp(1, MAX_PAGE), ..q.clone() };
        self.store.search_audit(&q).await
    }

    /// The keys of every lock a login as `user` can meet (what `unlock` lifts).
    pub fn lock_keys(&self, username: &str, email: &str) -> Vec<String> {
        let mut keys = vec![username.to_owned(), name_key(&self.secret, username), name_key(&self.secret, email)];
        keys.dedup();
        keys
    }

    /// Audits `event`, by the console's operator when one acted.
    async fn record(&self, by: &Operator, actor: Actor<'_>, event: SecurityEvent, details: &str) {
        match &by.name {
            Some(name) => self.audit.operator_event(actor, name, event, details).await,
            None => self.audit.event(actor, event, details).await,
        }
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
        self.record(by, actor, SecurityEvent::AccountUnlocked, details).await;
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
        if let IpAddr::V6(v6) = canonical
            && let Ok(net) = ipnet::Ipv6Net::new(v6, 64)
        {
            // The /64 an IPv6 client's failures are counted under.
            forms.push(net.trunc().to_string());
        }
        let ip = canonical.to_string();
        self.clear_address(&ip, &forms, by).await
    }

    /// Clears the windows of a banned address as the list of bans names it
    /// (`Store::ip_bans`): an address, or an IPv6 /64.
    pub async fn unlock_address(&self, key: &str, by: &Operator) -> StoreResult<Option<IpUnlocked>> {
        if let Ok(ip) = key.parse::<IpAddr>() {
            return self.unlock_ip(ip, by).await.map(Some);
        }
        match key.parse::<ipnet::Ipv6Net>() {
            Ok(net) if net.prefix_len() == 64 && net.trunc() == net => {
                self.clear_address(key, &[key.to_owned()], by).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn clear_address(&self, ip: &str, forms: &[String], by: &Operator) -> StoreResult<IpUnlocked> {
        let mut windows_cleared = 0;
        for form in forms {
            windows_cleared += self.store.clear_windows(&RateBucket::PER_IP, form).await?;
            self.store.forget_ip_ban(form).await?;
        }
        let actor = Actor { username: "-", user: None, ip, user_agent: &by.agent };
        let details = format!("by an operator from {}: {windows_cleared} windows cleared", by.ip);
        self.record(by, actor, SecurityEvent::IpUnlocked, &details).await;
        Ok(IpUnlocked { ip: ip.to_owned(), windows_cleared })
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
        self.record(by, actor, SecurityEvent::SessionRevoked, &details).await;
        Ok(Revoked { name: name.to_owned(), account, revoked })
    }

    /// Removes the user's authenticator app, passkeys and backup codes (an
    /// operator helping someone who lost them), and e-mails them an alert.
    /// E-mailed codes stay as they were: they reach the address on file.
    pub async fn reset_factors(&self, name: &str, by: &Operator) -> Result<FactorsReset, ChangeError> {
        let user = self.users.snapshot().find(name).cloned().ok_or(ChangeError::NoSuchUser)?;
        let account = user.username.clone();
        let before = self.store.user_state(&account).await?;
        self.store.remove_totp(&account).await?;
        // A passkey added meanwhile is removed too: swap until nothing is left.
        for _ in 0..8 {
            match self.store.passkeys(&account).await? {
                None => break,
                Some(old) => {
                    if self.store.swap_passkeys(&account, Some(&old), None).await? {
                        break;
                    }
                }
            }
        }
        self.store.replace_backup_codes(&account, &[]).await?;
        let factors = UserState { otp_enabled: false, ..before };
        let details = format!("by an operator: removed {}", describe_factors(&factors));
        let actor = Actor { username: &account, user: Some(&account), ..by.actor() };
        self.record(by, actor, SecurityEvent::FactorsReset, &details).await;
        if let Some(n) = &self.notifier {
            let client = Client::new(by.ip.clone(), &by.agent);
            n.alert_later(user, &client, Alert::FactorsReset);
        }
        Ok(FactorsReset { account, factors: before })
    }

    /// Disables or enables the user in the users file (through its one
    /// writer); disabling ends their sessions at once, here and on every
    /// replica sharing the store. The directory is reloaded, so this
    /// gateway answers with the change at once.
    pub async fn set_disabled(&self, name: &str, disabled: bool, by: &Operator) -> Result<Toggled, ChangeError> {
        let account = self.users.snapshot().find(name).map(|u| u.username.clone()).ok_or(ChangeError::NoSuchUser)?;
        let changed = self.users.writer().set_disabled(&account, disabled).await?;
        if let Err(e) = self.users.reload().await {
            tracing::error!(error = %e, "users file not reloaded after an operator's change");
        }
        let sessions_ended = if disabled { self.store.revoke_user_sessions(&account).await? } else { 0 };
        let (event, what) = match disabled {
            true => (SecurityEvent::UserDisabled, "disabled"),
            false => (SecurityEvent::UserEnabled, "enabled"),
        };
        let details = match (changed, disabled) {
            (false, _) => format!("by an operator: already {what}"),
            (true, true) => format!("by an operator: {sessions_ended} session(s) ended"),
            (true, false) => "by an operator".to_owned(),
        };
        let actor = Actor { username: &account, user: Some(&account), ..by.actor() };
        self.record(by, actor, event, &details).await;
        Ok(Toggled { account, disabled, changed, sessions_ended })
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
                self.record(by, actor, SecurityEvent::TokenRevoked, &format!("by an operator: token {id}")).await;
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
        self.record(by, actor, SecurityEvent::AccountRemoved, &details).await;
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
