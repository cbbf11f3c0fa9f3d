//! The login and account state machines, driven directly (no server, no HTTP)
//! on the memory store with a manual clock: code expiry, the resend cooldown,
//! rate windows, the account lock, enabling 2FA, and session idle and
//! absolute expiry, each tested at both sides of its boundary without sleeping.
//! Codes are read from the file transport's outbox, as a user would read them.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderMap;
use portcullis::app::{self, App};
use portcullis::auth::Client;
use portcullis::auth::error::{AuthError, Factor};
use portcullis::auth::login::{Completed, PasswordOutcome};
use portcullis::auth::users::{self, Users};
use portcullis::clock::Clock;
use portcullis::config::{Config, MailTransport, Policy, Secret};
use portcullis::gate::Authenticated;
use portcullis::gate::Target;

const PASSWORD: &str = "correct horse battery";

struct Flow {
    app: App,
    clock: Clock,
    outbox: PathBuf,
    _dir: tempfile::TempDir,
}

async fn flow(policy: Policy) -> Flow {
    flow_with(policy, |_| {}).await
}

async fn flow_with(policy: Policy, adjust: impl FnOnce(&mut Config)) -> Flow {
    let dir = tempfile::tempdir().expect("tempdir");
    let users_file = dir.path().join("users.toml");
    support::write_users(&users_file, &[("alice", "alice@example.com", PASSWORD, &[])]);
    let users = Users::fixed(&users_file, users::load(&users_file).expect("users"));
    let outbox = dir.path().join("outbox");
    let mut config = Config::default();
    config.auth.secret = Secret::new(support::SECRET);
    config.mail.transport = MailTransport::File;
    config.mail.file_dir = Some(outbox.clone());
    config.access_control.default_policy = policy;
    adjust(&mut config);
    let clock = Clock::manual(1_800_000_000_000);
    let app = app::build_with_clock(config, Some(users), clock.clone()).await.expect("gateway builds");
    Flow { app, clock, outbox, _dir: dir }
}

impl Flow {
    fn login(&self) -> &portcullis::auth::login::LoginFlow {
        &self.app.gateway.portal.login
    }

    async fn password(&self, ip: &str, password: &str) -> Result<PasswordOutcome, AuthError> {
        self.login().password_step("alice", password, false, None, &client(ip)).await
    }

    /// Passes the password step and returns the pending-login token.
    async fn pending(&self) -> String {
        match self.password("198.51.100.1", PASSWORD).await {
            Ok(PasswordOutcome::CodeSent { pending_token, .. }) => pending_token,
            other => panic!("expected a code to be sent, got {other:?}"),
        }
    }

    /// The code in the newest e-mail of the outbox.
    fn last_code(&self) -> String {
        last_code(&self.outbox).expect("an e-mail with a code")
    }

    async fn code(&self, pending: &str, code: &str) -> Result<Completed, AuthError> {
        self.login().code_step(Some(pending), code, &client("198.51.100.1")).await
    }

    async fn session(&self, token: &str) -> Option<Authenticated> {
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, format!("portcullis_session={token}").parse().expect("header"));
        self.app.gateway.gate.authenticate(&h).await.expect("the memory store answers")
    }

    fn pass(&self, d: Duration) {
        self.clock.advance(d);
    }
}

fn client(ip: &str) -> Client {
    Client::new(ip, "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
}

/// The one-time code of the newest `.eml` in `dir`: the line of the text part
/// that holds nothing but six digits.
fn last_code(dir: &Path) -> Option<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    let raw = std::fs::read_to_string(files.last()?).ok()?;
    raw.lines().map(str::trim).find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit())).map(str::to_owned)
}

const MINUTE: Duration = Duration::from_secs(60);
const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_code_works_until_its_ten_minutes_are_up() {
    let f = flow(Policy::TwoFactor).await;
    let pending = f.pending().await;
    let code = f.last_code();
    f.pass(10 * MINUTE - SECOND);
    let done = f.code(&pending, &code).await.expect("valid in its last second");
    assert!(f.session(&done.token).await.is_some(), "the login made a session");

    // The pending login outlives the code here, so it is the code's expiry that shows.
    let f = flow_with(Policy::TwoFactor, |c| c.session.pending_login_ttl = 20 * MINUTE).await;
    let pending = f.pending().await;
    let code = f.last_code();
    f.pass(10 * MINUTE);
    let r = f.code(&pending, &code).await;
    assert!(matches!(r, Err(AuthError::Expired)), "dead at ten minutes: {r:?}");

    // By default both die together, and the login must start over.
    let f = flow(Policy::TwoFactor).await;
    let pending = f.pending().await;
    let code = f.last_code();
    f.pass(10 * MINUTE);
    let r = f.code(&pending, &code).await;
    assert!(matches!(r, Err(AuthError::NoPendingLogin)), "{r:?}");
}

#[tokio::test]
async fn a_resend_waits_for_the_cooldown_and_voids_the_old_code() {
    let f = flow(Policy::TwoFactor).await;
    let pending = f.pending().await;
    let first = f.last_code();
    match f.login().resend(Some(&pending), &client("198.51.100.1")).await {
        Err(AuthError::RateLimited { retry_after }) => assert_eq!(retry_after, 60 * SECOND),
        other => panic!("a resend at once is refused, got {other:?}"),
    }
    f.pass(59 * SECOND);
    match f.login().resend(Some(&pending), &client("198.51.100.1")).await {
        Err(AuthError::RateLimited { retry_after }) => assert_eq!(retry_after, SECOND),
        other => panic!("a resend after 59 s is refused, got {other:?}"),
    }
    f.pass(SECOND);
    f.login().resend(Some(&pending), &client("198.51.100.1")).await.expect("after 60 s a new code is sent");
    let mut second = f.last_code();
    // One resend in a million draws the same six digits; draw again so the
    // check below always compares two different codes.
    while second == first {
        f.pass(60 * SECOND);
        f.login().resend(Some(&pending), &client("198.51.100.1")).await.expect("another code");
        second = f.last_code();
    }
    let r = f.code(&pending, &first).await;
    assert!(matches!(r, Err(AuthError::Wrong { factor: Factor::Email, .. })), "the old code is void: {r:?}");
    f.code(&pending, &second).await.expect("the new code works");
}

#[tokio::test]
async fn three_wrong_codes_void_the_code() {
    let f = flow(Policy::TwoFactor).await;
    let pending = f.pending().await;
    let code = f.last_code();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert!(matches!(
        f.code(&pending, wrong).await,
        Err(AuthError::Wrong { factor: Factor::Email, remaining: Some(2) })
    ));
    assert!(matches!(
        f.code(&pending, wrong).await,
        Err(AuthError::Wrong { factor: Factor::Email, remaining: Some(1) })
    ));
    assert!(matches!(f.code(&pending, wrong).await, Err(AuthError::Exhausted { factor: Factor::Email })));
    let r = f.code(&pending, &code).await;
    assert!(matches!(r, Err(AuthError::Exhausted { factor: Factor::Email })), "the right code is void too: {r:?}");
}

#[tokio::test]
async fn the_login_window_allows_five_tries_per_five_minutes_per_address() {
    let f = flow(Policy::OneFactor).await;
    for _ in 0..5 {
        f.password("203.0.113.7", PASSWORD).await.expect("within the window");
    }
    match f.password("203.0.113.7", PASSWORD).await {
        Err(AuthError::RateLimited { retry_after }) => assert_eq!(retry_after, 5 * MINUTE),
        other => panic!("the sixth try is refused, got {other:?}"),
    }
    f.password("203.0.113.8", PASSWORD).await.expect("another address has its own window");
    f.pass(5 * MINUTE - SECOND);
    assert!(matches!(f.password("203.0.113.7", PASSWORD).await, Err(AuthError::RateLimited { .. })));
    f.pass(SECOND);
    f.password("203.0.113.7", PASSWORD).await.expect("the window slid past the first try");
}

#[tokio::test]
async fn ten_failures_lock_the_account_for_fifteen_minutes() {
    let f = flow(Policy::OneFactor).await;
    // From ten addresses, so no address's own limit is what stops them.
    for i in 0..10 {
        let r = f.password(&format!("192.0.2.{i}"), "wrong password").await;
        assert!(matches!(r, Err(AuthError::InvalidCredentials)), "attempt {i}: {r:?}");
    }
    match f.password("192.0.2.100", PASSWORD).await {
        Err(AuthError::Locked { retry_after }) => assert_eq!(retry_after, 15 * MINUTE),
        other => panic!("locked, even for the right password: {other:?}"),
    }
    f.pass(15 * MINUTE - SECOND);
    assert!(matches!(f.password("192.0.2.101", PASSWORD).await, Err(AuthError::Locked { .. })));
    f.pass(SECOND);
    f.password("192.0.2.102", PASSWORD).await.expect("the lock expired by itself");
}

#[tokio::test]
async fn a_session_slides_with_use_and_dies_after_an_idle_hour() {
    let f = flow(Policy::OneFactor).await;
    let Ok(PasswordOutcome::Done(done)) = f.password("198.51.100.1", PASSWORD).await else {
        panic!("one factor logs in at once");
    };
    f.pass(59 * MINUTE);
    assert!(f.session(&done.token).await.is_some(), "used after 59 idle minutes");
    f.pass(59 * MINUTE);
    assert!(f.session(&done.token).await.is_some(), "that use slid the idle expiry");
    f.pass(60 * MINUTE + SECOND);
    assert!(f.session(&done.token).await.is_none(), "idle for over an hour: gone");
}

#[tokio::test]
async fn an_active_session_still_ends_after_twelve_hours() {
    let f = flow(Policy::OneFactor).await;
    let Ok(PasswordOutcome::Done(done)) = f.password("198.51.100.1", PASSWORD).await else {
        panic!("one factor logs in at once");
    };
    for _ in 0..23 {
        f.pass(30 * MINUTE);
        assert!(f.session(&done.token).await.is_some(), "alive while in use");
    }
    f.pass(30 * MINUTE);
    assert!(f.session(&done.token).await.is_some(), "alive through its last second (12 h)");
    f.pass(SECOND);
    assert!(f.session(&done.token).await.is_none(), "dead past the absolute limit, though in use");
}

#[tokio::test]
async fn turning_2fa_on_needs_a_fresh_code_and_rotates_the_session() {
    let f = flow(Policy::OneFactor).await;
    let Ok(PasswordOutcome::Done(done)) = f.password("198.51.100.1", PASSWORD).await else {
        panic!("one factor logs in at once");
    };
    let user = f.session(&done.token).await.expect("logged in").user;
    let account = &f.app.gateway.portal.account;
    account.start_enable(&user, &client("198.51.100.1")).await.expect("a code is e-mailed");
    let stale = f.last_code();
    f.pass(10 * MINUTE);
    let err = account.confirm_enable(&user, &done.token, &stale, &client("198.51.100.1")).await.unwrap_err();
    assert!(matches!(err, AuthError::Expired), "{err:?}");

    account.start_enable(&user, &client("198.51.100.1")).await.expect("a new code is e-mailed");
    let code = f.last_code();
    let (backup, token) =
        account.confirm_enable(&user, &done.token, &code, &client("198.51.100.1")).await.expect("confirmed");
    assert_eq!(backup.len(), 8);
    assert!(f.session(&done.token).await.is_none(), "the old session id is dead");
    let rotated = f.session(&token).await.expect("the new one lives");
    assert_eq!(rotated.record.level, portcullis::store::AuthLevel::TwoFactor);
}

#[tokio::test]
async fn the_account_needs_the_strongest_level_of_deployment_and_enrolment() {
    use portcullis::store::AuthLevel;
    let f = flow(Policy::OneFactor).await;
    let Ok(PasswordOutcome::Done(done)) = f.password("198.51.100.1", PASSWORD).await else {
        panic!("one factor logs in at once");
    };
    let user = f.session(&done.token).await.expect("logged in").user;
    let account = &f.app.gateway.portal.account;
    let need = |target| account.required_level(&user, target);
    assert_eq!(need(Target::Account).await.unwrap(), AuthLevel::OneFactor);
    assert_eq!(need(Target::NewFactor).await.unwrap(), AuthLevel::TwoFactor, "adding a factor: two, always");
    f.app.store.set_otp_enabled("alice", true).await.unwrap();
    assert_eq!(need(Target::Account).await.unwrap(), AuthLevel::TwoFactor, "enrolled: two");
    let f = flow(Policy::TwoFactor).await;
    let account = &f.app.gateway.portal.account;
    let need = account.required_level(&user, Target::Account).await.unwrap();
    assert_eq!(need, AuthLevel::TwoFactor, "the deployment asks two");
}
