//! Authentication decisions. Each concept is a narrow handle holding only what
//! it uses (store, users, password checker, mailer, clock, settings), so the
//! state machines can be built and tested without the assembled gateway:
//!
//! - `users`: the users file: the directory parsed from it, its live copy
//!   (reloaded on change), and its one writer (comments, order, owner and
//!   mode kept), with a seam for user backends it cannot write;
//! - `password`: argon2id checks off the async runtime;
//! - `codes`: one-time and backup codes, and [`codes::Codes`], which issues
//!   and checks e-mailed codes;
//! - `credential`: the fingerprint a session keeps of its user's password,
//!   e-mail and groups (a change ends the session);
//! - `notify`: code e-mails and security alerts;
//! - `error`: why a step failed, one vocabulary for the login and the
//!   account actions; `record`: one record of an attempt (metric and audit);
//! - `lockout`: failed attempts, the account lock, and the lock of names
//!   that match no account;
//! - `suspicious`: the suspicious-activity rules run after a login and after
//!   failures;
//! - `passkey`: passkeys (WebAuthn ceremonies, stored public keys);
//! - `tokens`: access tokens (app passwords) for clients that cannot type a code;
//! - `totp`: authenticator apps (RFC 6238 codes, enrolment, sealed secrets);
//! - `login`: the login state machine (password → second factor → session);
//! - `account`: account self-service (2FA on and off, backup codes, sessions);
//! - `operator`: what operators do (unlock an account or address, end a
//!   user's sessions, forget a removed user, look up accounts' factors and
//!   locks).
//!
//! Handlers speak HTTP; this module decides; the store persists.

pub mod account;
pub mod codes;
pub mod credential;
pub mod error;
pub mod levels;
pub mod lockout;
pub mod login;
pub mod notify;
pub mod operator;
pub mod passkey;
pub mod password;
pub mod record;
pub mod reset;
pub mod roster;
pub mod suspicious;
pub mod tokens;
pub mod totp;
pub mod users;

use crate::audit::Actor;
use crate::auth::users::User;

/// Where a request comes from, for limits, audit and e-mails.
#[derive(Debug, Clone)]
pub struct Client {
    /// The address as seen (audit, alerts, known IPs).
    pub ip: String,
    /// The key rate limits count the client under: the address, or for IPv6
    /// its /64, which one subscriber usually holds whole (counting per /128
    /// would let them rotate through 2^64 addresses).
    pub limit_key: String,
    pub user_agent: String,
}

impl Client {
    pub fn new(ip: impl Into<String>, user_agent: &str) -> Client {
        let ip = ip.into();
        let limit_key = match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => ipnet::Ipv6Net::new(v6, 64).map_or(ip.clone(), |n| n.trunc().to_string()),
            _ => ip.clone(),
        };
        Client { ip, limit_key, user_agent: user_agent.chars().take(256).collect() }
    }

    /// A short description of the device ("Firefox on Linux").
    pub fn device(&self) -> String {
        crate::session::describe_device(&self.user_agent)
    }

    /// This client acting as `user` (an account that is known).
    pub fn as_user<'a>(&'a self, user: &'a User) -> Actor<'a> {
        Actor { username: &user.username, user: Some(&user.username), ip: &self.ip, user_agent: &self.user_agent }
    }

    /// This client acting on the account named `username` (known to exist,
    /// though its `User` is not at hand).
    pub fn on_account<'a>(&'a self, username: &'a str) -> Actor<'a> {
        Actor { username, user: Some(username), ip: &self.ip, user_agent: &self.user_agent }
    }

    /// This client naming `name` (as typed; the account may not exist).
    pub fn naming<'a>(&'a self, name: &'a str) -> Actor<'a> {
        Actor { username: name, user: None, ip: &self.ip, user_agent: &self.user_agent }
    }
}
