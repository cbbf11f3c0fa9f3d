//! The assembled gateway without its listeners, for driving the login and
//! account state machines directly (no HTTP) on the memory store or a real
//! redis-server, with a manual clock (which the memory store keeps time by;
//! Redis keeps its own). Mail goes to the file transport's outbox, where the
//! tests read codes and alerts as a user would.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderMap;
use portcullis::app::{self, App};
use portcullis::auth::Client;
use portcullis::auth::error::AuthError;
use portcullis::auth::login::PasswordOutcome;
use portcullis::auth::users::{self, User, Users};
use portcullis::clock::Clock;
use portcullis::config::{Config, MailTransport, Policy, Secret};
use portcullis::gate::Authenticated;
use portcullis::store::AuditRecord;

use super::flow::Backend;
use super::redis::RedisServer;

pub const PASSWORD: &str = "correct horse battery";

pub struct Machine {
    pub app: App,
    pub clock: Clock,
    pub outbox: PathBuf,
    pub users_file: PathBuf,
    pub redis: Option<RedisServer>,
    _dir: tempfile::TempDir,
}

/// A gateway for `alice` (and `bob`) on `backend`, or None when Redis is
/// wanted and missing (the skip is printed).
pub async fn machine(backend: Backend, policy: Policy, adjust: impl FnOnce(&mut Config)) -> Option<Machine> {
    let redis = match backend {
        Backend::Memory => None,
        Backend::Redis => Some(super::redis::server_or_skip("state machine")?),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let users_file = dir.path().join("users.toml");
    super::write_users(
        &users_file,
        &[("alice", "alice@example.com", PASSWORD, &["staff"]), ("bob", "bob@example.com", "bobs password 1", &[])],
    );
    let users = Users::fixed(&users_file, users::load(&users_file).expect("users"));
    let outbox = dir.path().join("outbox");
    let mut config = Config::default();
    config.auth.secret = Secret::new(super::SECRET);
    config.mail.transport = MailTransport::File;
    config.mail.file_dir = Some(outbox.clone());
    config.access_control.default_policy = policy;
    if let Some(r) = &redis {
        config.store.url = Secret::new(r.url());
    }
    adjust(&mut config);
    let clock = Clock::manual(1_800_000_000_000);
    let app = app::build_with_clock(config, Some(users), clock.clone()).await.expect("gateway builds");
    Some(Machine { app, clock, outbox, users_file, redis, _dir: dir })
}

pub fn client(ip: &str) -> Client {
    Client::new(ip, "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
}

impl Machine {
    pub fn login(&self) -> &portcullis::auth::login::LoginFlow {
        &self.app.gateway.portal.login
    }

    pub fn account(&self) -> &portcullis::auth::account::AccountActions {
        &self.app.gateway.portal.account
    }

    pub fn user(&self, name: &str) -> Arc<User> {
        self.app.users.snapshot().get(name).cloned().expect("known user")
    }

    pub async fn password(&self, name: &str, password: &str, ip: &str) -> Result<PasswordOutcome, AuthError> {
        self.login().password_step(name, password, false, None, &client(ip)).await
    }

    /// Logs `name` in with one factor (the policy must allow it); returns the session token.
    pub async fn session_for(&self, name: &str, password: &str) -> String {
        match self.password(name, password, "198.51.100.1").await {
            Ok(PasswordOutcome::Done(done)) => done.token,
            other => panic!("expected a one-factor login, got {other:?}"),
        }
    }

    /// The session behind `token`, as the gate resolves it for a request.
    pub async fn session(&self, token: &str) -> Option<Authenticated> {
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, format!("portcullis_session={token}").parse().expect("header"));
        self.app.gateway.gate.authenticate(&h).await.expect("the store answers")
    }

    /// The user's audit trail, newest first.
    pub async fn audit(&self, user: &str) -> Vec<AuditRecord> {
        self.app.store.recent_audit(Some(user), 100).await.expect("audit")
    }

    /// The global audit trail, newest first.
    pub async fn global_audit(&self) -> Vec<AuditRecord> {
        self.app.store.recent_audit(None, 1000).await.expect("audit")
    }

    /// Subjects of the e-mails in the outbox, oldest first.
    pub fn subjects(&self) -> Vec<String> {
        mails(&self.outbox)
            .iter()
            .filter_map(|m| m.lines().find_map(|l| l.strip_prefix("Subject: ")).map(str::to_owned))
            .collect()
    }

    /// Waits (up to 5 s: alerts are sent in the background) until `n` e-mails
    /// have a subject containing `needle`; returns how many do.
    pub async fn wait_for_subject(&self, needle: &str, n: usize) -> usize {
        let seen = || self.subjects().iter().filter(|s| s.contains(needle)).count();
        super::eventually::poll(std::time::Duration::from_secs(5), async || (seen() >= n).then_some(())).await;
        seen()
    }

    /// The code in the newest e-mail of the outbox (`digits` long).
    pub fn last_code(&self, digits: usize) -> String {
        let mails = mails(&self.outbox);
        let raw = mails.last().expect("an e-mail");
        raw.lines()
            .map(str::trim)
            .find(|l| l.len() == digits && l.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_owned)
            .expect("a code in the e-mail")
    }

    /// Turns 2FA on for the session's user; returns the backup codes and the rotated token.
    pub async fn enable_2fa(&self, name: &str, token: &str) -> (Vec<String>, String) {
        let user = self.user(name);
        self.account().start_enable(&user, &client("198.51.100.1")).await.expect("a code is e-mailed");
        let code = self.last_code(6);
        self.account().confirm_enable(&user, token, &code, &client("198.51.100.1")).await.expect("2FA on")
    }
}

/// The raw `.eml` files of `dir`, oldest first.
fn mails(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "eml"));
    files.sort();
    files.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
}
