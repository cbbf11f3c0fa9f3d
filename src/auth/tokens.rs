//! Access tokens: app passwords for scripts, CalDAV/WebDAV clients, git and
//! monitors, which cannot type a code. A user makes one on the account page
//! (at two factors, with the password again: `auth::account`); it is shown
//! once. Where a rule says `allow_tokens = true`, a request may carry it as
//! `Authorization: Bearer <token>` or as the password of HTTP Basic
//! (`<user>:<token>`); nowhere is a plain password accepted over Basic.
//!
//! A token is `pct_` followed by its id (16 random bytes) and its secret (32
//! random bytes), both base64url: the id finds the record in one store
//! lookup, and only a keyed hash of the secret is stored (HMAC-SHA-256 under
//! a key derived from `auth.secret`), compared in constant time, so a store
//! dump signs nobody in. A token keeps the fingerprint of its user's
//! credential (`auth::credential`): a new password, address or group list,
//! a disabled or removed user, ends it as it ends sessions. Its last use is
//! noted (and audited as `token_used`) at most once a minute.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::HeaderMap;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::audit::{Actor, Audit, SecurityEvent};
use crate::auth::Client;
use crate::auth::credential::Fingerprints;
use crate::auth::error::AuthError;
pub use crate::auth::error::TokenError;
use crate::auth::record::{Attempts, Outcome, Stage};
use crate::auth::users::{User, Users};
use crate::clock::Clock;
use crate::ratelimit::{Limiter, RateBucket};
use crate::store::{Store, StoreError, TokenRecord};

/// A token's lifetime when none is asked for.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// The longest lifetime a token may have.
pub const MAX_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// Tokens one account may hold.
pub const MAX_TOKENS: usize = 50;
/// The longest name a token may be given.
pub const MAX_NAME: usize = 64;
/// How often a token's last use is written (and audited).
const USE_NOTED_EVERY: u64 = 60;

const PREFIX: &str = "pct_";
const ID_LEN: usize = 22;
const SECRET_LEN: usize = 43;

/// A token just made: the only time its text is seen.
#[derive(Debug, Clone, Serialize)]
pub struct NewToken {
    pub id: String,
    pub name: String,
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// A token as its user sees it listed.
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    /// Unix seconds.
    pub created: u64,
    pub expires_at: u64,
    pub last_used: Option<u64>,
}

/// What a request's `Authorization` presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// Something shaped like a token (Bearer, or a Basic password), and the
    /// Basic user name when it came that way.
    Token { id: String, secret: String, basic_user: Option<String> },
    /// Basic credentials whose password is no token (a plain password, which
    /// is never accepted here), or a Bearer value that is no token.
    NotAToken,
}

/// A request signed by a valid token.
#[derive(Debug, Clone)]
pub struct TokenHolder {
    pub id: String,
    pub user: Arc<User>,
}

/// How a presented token fared.
#[derive(Debug)]
pub enum TokenCheck {
    Valid(TokenHolder),
    /// Wrong, unknown, expired or ended (counted against the client).
    Invalid,
    /// The client's address is banned for its failures: nothing was checked.
    Limited {
        retry_after: Duration,
    },
}

/// Reads the token a request presents, if its `Authorization` carries one
/// (None: no `Authorization`, or another scheme).
pub fn presented(headers: &HeaderMap) -> Option<Presented> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    let token = |token: &str, basic_user: Option<String>| match split(token) {
        Some((id, secret)) => Presented::Token { id: id.to_owned(), secret: secret.to_owned(), basic_user },
        None => Presented::NotAToken,
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(token(rest, None))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).ok().and_then(|b| String::from_utf8(b).ok());
        Some(match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((user, password)) => token(password, Some(user.to_owned())),
            None => Presented::NotAToken,
        })
    } else {
        None
    }
}

/// `pct_<id><secret>` → (id, secret), when shaped like a token.
fn split(token: &str) -> Option<(&str, &str)> {
    let body = token.strip_prefix(PREFIX)?;
    if body.len() != ID_LEN + SECRET_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return None;
    }
    Some(body.split_at(ID_LEN))
}

/// Makes, checks and revokes access tokens; cheap to clone.
#[derive(Clone)]
pub struct AccessTokens {
    store: Store,
    users: Arc<Users>,
    key: ring::hmac::Key,
    fingerprints: Arc<Fingerprints>,
    limiter: Limiter,
    audit: Audit,
    attempts: Attempts,
    clock: Clock,
    /// `auth_attempts_total{stage="token",result="success"}`, counted on
    /// every request a token signs (the handle found once).
    signed: prometheus::IntCounter,
    /// Secrets this process has checked, by token id, with the stored hash
    /// they matched: a token's next request compares its secret with the
    /// one remembered instead of computing the keyed hash again (the
    /// difference between a token's check and a session's). The store's
    /// record is still read on every request, so a revoked or changed token
    /// is refused at once; only a secret that matched that very hash is
    /// remembered. Bounded: emptied when full.
    verified: Arc<std::sync::Mutex<rustc_hash::FxHashMap<String, Verified>>>,
}

/// A secret that matched a token's stored hash.
struct Verified {
    secret: String,
    hash: String,
}

/// How many checked secrets a process remembers.
const VERIFIED_MAX: usize = 4096;

impl AccessTokens {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        users: Arc<Users>,
        secret: &[u8],
        fingerprints: Arc<Fingerprints>,
        limiter: Limiter,
        audit: Audit,
        attempts: Attempts,
        clock: Clock,
    ) -> AccessTokens {
        // A key of its own, derived rather than reused.
        let own = crate::keys::derive(secret, crate::keys::Purpose::AccessTokens);
        // ring's HMAC: this runs on every request a token signs, and ring's
        // SHA-256 is the assembly one (a fifth of the instructions).
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &own);
        let signed = crate::metrics::get().auth_attempts.with_label_values(&[Stage::Token.as_str(), "success"]);
        let verified = Arc::default();
        AccessTokens { store, users, key, fingerprints, limiter, audit, attempts, clock, signed, verified }
    }

    /// Whether `secret` is the one whose keyed hash `record` keeps.
    fn matches(&self, id: &str, secret: &str, record: &TokenRecord) -> bool {
        {
            let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = verified.get(id)
                && v.hash == record.hash
            {
                return v.secret.as_bytes().ct_eq(secret.as_bytes()).into();
            }
        }
        let right: bool = self.hash(secret).ct_eq(record.hash.as_bytes()).into();
        if right {
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.len() >= VERIFIED_MAX {
                verified.clear();
            }
            verified.insert(id.to_owned(), Verified { secret: secret.to_owned(), hash: record.hash.clone() });
        }
        right
    }

    /// The stored form of a token's secret: its keyed hash, in hex (on the
    /// stack: this runs for every request a token signs).
    fn hash(&self, secret: &str) -> [u8; 64] {
        let mut hex = [0u8; 64];
        // 32 bytes always fill 64 hex digits.
        let _ = hex::encode_to_slice(ring::hmac::sign(&self.key, secret.as_bytes()), &mut hex);
        hex
    }

    /// A new token for `user` named `name`, living `lifetime` (default 90
    /// days, at most a year). The caller has checked the session's level and
    /// the password.
    pub async fn issue(
        &self,
        user: &User,
        name: &str,
        lifetime: Option<Duration>,
        client: &Client,
    ) -> Result<NewToken, AuthError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(TokenError::BadName.into());
        }
        let lifetime = lifetime.unwrap_or(DEFAULT_LIFETIME);
        if lifetime > MAX_LIFETIME || lifetime.is_zero() {
            return Err(TokenError::TooLong.into());
        }
        if self.store.list_tokens(&user.username).await?.len() >= MAX_TOKENS {
            return Err(TokenError::TooMany.into());
        }
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = self.clock.now_unix();
        let record = TokenRecord {
            user: user.username.clone(),
            name: name.to_owned(),
            hash: String::from_utf8_lossy(&self.hash(&secret)).into_owned(),
            created: now,
            expires_at: now + lifetime.as_secs(),
            last_used: None,
            credential: self.fingerprints.of(user),
        };
        self.store.create_token(&id, &record).await?;
        let details = format!("token \"{name}\" ({id}), expires in {} days", lifetime.as_secs().div_ceil(86_400));
        self.audit.event(client.as_user(user), SecurityEvent::TokenCreated, &details).await;
        Ok(NewToken {
            token: format!("{PREFIX}{id}{secret}"),
            id,
            name: name.to_owned(),
            expires_at: record.expires_at,
        })
    }

    /// The user's live tokens, newest first.
    pub async fn list(&self, user: &User) -> Result<Vec<TokenView>, StoreError> {
        let mut tokens: Vec<TokenView> = self
            .store
            .list_tokens(&user.username)
            .await?
            .into_iter()
            .map(|t| TokenView {
                id: t.id,
                name: t.record.name,
                created: t.record.created,
                expires_at: t.record.expires_at,
                last_used: t.record.last_used,
            })
            .collect();
        tokens.sort_by_key(|t| std::cmp::Reverse((t.created, t.id.clone())));
        Ok(tokens)
    }

    /// Ends the user's token `id`, audited with `actor` (the user, or an operator).
    pub async fn revoke(&self, user: &str, id: &str, actor: Actor<'_>) -> Result<(), AuthError> {
        if !self.store.revoke_token(user, id).await? {
            return Err(TokenError::NoSuchToken.into());
        }
        self.audit.event(actor, SecurityEvent::TokenRevoked, &format!("token {id}")).await;
        Ok(())
    }

    /// Checks a presented token for a request from `client`: refused while
    /// the client's address is banned for its failures; a wrong one (or a
    /// plain password over Basic) counts against that address and is
    /// audited; a right one's use is noted at most once a minute.
    pub async fn check(&self, presented: Presented, client: &Client) -> Result<TokenCheck, StoreError> {
        let Presented::Token { id, secret, basic_user } = presented else {
            return self.refused(client, "", "not a token").await;
        };
        let (banned, record) =
            tokio::try_join!(self.limiter.check(RateBucket::IpFailures, &client.limit_key), self.store.token(&id))?;
        if let Some(retry_after) = banned {
            let actor = client.naming(basic_user.as_deref().unwrap_or(""));
            self.attempts.record(actor, Stage::Token, Outcome::RateLimited, "too many failures from this IP").await;
            return Ok(TokenCheck::Limited { retry_after });
        }
        let Some(record) = record else {
            return self.refused(client, basic_user.as_deref().unwrap_or(""), "unknown or expired token").await;
        };
        let right = self.matches(&id, &secret, &record);
        let named_right = basic_user.as_deref().is_none_or(|u| u == record.user);
        if !(right && named_right) {
            return self.refused(client, &record.user, "wrong token").await;
        }
        let users = self.users.snapshot();
        let user = match users.get(&record.user) {
            Some(u) if !u.disabled && self.fingerprints.changed(u, &record.credential).is_none() => u.clone(),
            _ => {
                // The user is gone, disabled, or changed their credential:
                // the token ends with them.
                self.store.revoke_token(&record.user, &id).await?;
                let actor = Actor::system(&record.user);
                self.audit.event(actor, SecurityEvent::TokenRevoked, &format!("token {id}: credential changed")).await;
                return self.refused(client, &record.user, "token ended with its credential").await;
            }
        };
        self.signed.inc();
        let now = self.clock.now_unix();
        if record.last_used.is_none_or(|t| now.saturating_sub(t) >= USE_NOTED_EVERY)
            && self.store.touch_token(&id, now).await?
        {
            let details = format!("token \"{}\" ({id})", record.name);
            self.audit.event(client.as_user(&user), SecurityEvent::TokenUsed, &details).await;
        }
        Ok(TokenCheck::Valid(TokenHolder { id, user }))
    }

    /// A wrong token: counted against the client's address and audited.
    async fn refused(&self, client: &Client, name: &str, why: &str) -> Result<TokenCheck, StoreError> {
        self.limiter.record(RateBucket::IpFailures, &client.limit_key).await?;
        self.attempts.record(client.naming(name), Stage::Token, Outcome::Wrong, why).await;
        Ok(TokenCheck::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    const TOKEN: &str = "pct_AAAAAAAAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    #[test]
    fn a_token_is_read_from_bearer_or_as_a_basic_password() {
        let want = |user: Option<&str>| Presented::Token {
            id: "A".repeat(22),
            secret: "B".repeat(43),
            basic_user: user.map(str::to_owned),
        };
        assert_eq!(presented(&with(&format!("Bearer {TOKEN}"))), Some(want(None)));
        assert_eq!(presented(&with(&format!("bearer  {TOKEN} "))), Some(want(None)));
        let basic = STANDARD.encode(format!("alice:{TOKEN}"));
        assert_eq!(presented(&with(&format!("Basic {basic}"))), Some(want(Some("alice"))));
    }

    #[test]
    fn a_plain_password_over_basic_is_no_token() {
        let basic = STANDARD.encode("alice:correct horse battery");
        assert_eq!(presented(&with(&format!("Basic {basic}"))), Some(Presented::NotAToken));
        assert_eq!(presented(&with("Basic !!!")), Some(Presented::NotAToken));
        assert_eq!(presented(&with("Bearer abc")), Some(Presented::NotAToken));
        assert_eq!(presented(&with(&format!("Bearer {TOKEN}x"))), Some(Presented::NotAToken), "too long");
        assert_eq!(presented(&with("Digest username=\"alice\"")), None, "another scheme is not ours");
        assert_eq!(presented(&HeaderMap::new()), None);
    }
}
