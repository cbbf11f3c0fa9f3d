//! Sessions end when the credential they were made with changes: a new
//! password hash, e-mail address or group list in the users file ends every
//! session from before, whether the reload ends them at once or the gate finds
//! the change on the session's next use, and each ending is audited with its
//! reason. Each case runs on both stores.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::Duration;

use portcullis::auth::users::{Change, UsersFileWriter};
use portcullis::config::Policy;
use portcullis::store::AuditKind;
use serde_json::json;
use support::assert_eventually;
use support::eventually::poll;
use support::flow::{Backend, Harness, Options, PASSWORD};
use support::machine::{self, machine};

support::on_both_stores!(
    a_reload_that_changes_a_password_email_or_groups_ends_that_users_sessions,
    the_gate_ends_a_session_whose_users_credential_changed_since_it_was_made,
    a_reload_that_disables_a_user_ends_and_audits_their_sessions,
);

/// Changes one user of the users file in place, as the gateway's own writer
/// does (other users' hashes untouched).
fn edit_user(path: &std::path::Path, name: &str, change: Change) {
    UsersFileWriter::new(path).update(name, &[change]).expect("users file written");
}

fn reloads(h: &Harness) -> usize {
    h.gw.log().matches("users file reloaded").count()
}

async fn reload(h: &Harness) {
    let before = reloads(h);
    h.gw.signal("HUP");
    assert_eventually!(reloads(h) != before, "no reload logged:\n{}", h.gw.log());
}

async fn app_status(h: &Harness, c: &reqwest::Client) -> u16 {
    c.get(h.url("/app")).send().await.unwrap().status().as_u16()
}

/// Whether a `session_revoked` record with `reason` reaches the log (which is
/// written in the background) within a few seconds.
async fn revoked_with(h: &Harness, reason: &str) -> bool {
    let logged = || h.gw.log().lines().any(|l| l.contains("\"event\":\"session_revoked\"") && l.contains(reason));
    poll(Duration::from_secs(5), async || logged().then_some(())).await.is_some()
}

async fn a_reload_that_changes_a_password_email_or_groups_ends_that_users_sessions(b: Backend) {
    let Some(h) = Harness::start(b, Options { policy: "one_factor", ..Default::default() }).await else { return };
    // A 30-day remember-me session, and an ordinary one of another user.
    let old = support::client();
    let (s, v) = h
        .post_as(
            &old,
            "/_auth/api/send-login-otp",
            json!({"username_or_email": "testuser", "password": PASSWORD, "remember_me": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let bob = h.login_client("bob", "bobs-password-1", "curl/8").await;
    assert_eq!((app_status(&h, &old).await, app_status(&h, &bob).await), (200, 200));

    let new_hash = portcullis::auth::password::hash_password("a new password 2").unwrap();
    edit_user(&h.users, "testuser", Change::Password(new_hash));
    reload(&h).await;
    assert_eq!(app_status(&h, &old).await, 401, "the password changed: the session from before ends");
    assert_eq!(app_status(&h, &bob).await, 200, "nobody else's session ends");
    assert!(revoked_with(&h, "password changed").await, "audited with the reason");
    let (s, _) = h.send_login("testuser", "a new password 2").await;
    assert_eq!(s, 200, "the new password logs in");

    edit_user(&h.users, "bob", Change::Groups(vec!["admins".into()]));
    reload(&h).await;
    assert_eq!(app_status(&h, &bob).await, 401, "the groups changed");
    assert!(revoked_with(&h, "groups changed").await);

    let bob = h.login_client("bob", "bobs-password-1", "curl/8").await;
    assert_eq!(app_status(&h, &bob).await, 200);
    edit_user(&h.users, "bob", Change::Email("robert@example.com".into()));
    reload(&h).await;
    assert_eq!(app_status(&h, &bob).await, 401, "the e-mail address changed");
    assert!(revoked_with(&h, "e-mail changed").await);
}

async fn the_gate_ends_a_session_whose_users_credential_changed_since_it_was_made(b: Backend) {
    let Some(m) = machine(b, Policy::OneFactor, |_| {}).await else { return };
    let alice = m.session_for("alice", machine::PASSWORD).await;
    let bob = m.session_for("bob", "bobs password 1").await;
    assert!(m.session(&alice).await.is_some() && m.session(&bob).await.is_some());

    // The directory is swapped without the reload's own clean-up, as a replica
    // that reloaded later (or a session made before an upgrade) would meet it.
    let new_hash = portcullis::auth::password::hash_password("another password").unwrap();
    edit_user(&m.users_file, "alice", Change::Password(new_hash));
    m.app.users.reload().await.expect("reloaded");
    assert!(m.session(&alice).await.is_none(), "a session made with the old password is refused");
    assert!(m.session(&bob).await.is_some(), "bob's credential did not change");
    let sessions = m.app.store.list_sessions("alice").await.unwrap();
    assert!(sessions.is_empty(), "and deleted, not only refused: {sessions:?}");
    let trail = m.audit("alice").await;
    let revoked = trail.iter().find(|r| r.kind == AuditKind::SecurityEvent && r.event == "session_revoked");
    let revoked = revoked.unwrap_or_else(|| panic!("audited: {trail:?}"));
    assert!(revoked.details.contains("password changed"), "{revoked:?}");

    // A new login carries the new credential, and lives.
    let fresh = m.session_for("alice", "another password").await;
    assert!(m.session(&fresh).await.is_some());
}

async fn a_reload_that_disables_a_user_ends_and_audits_their_sessions(b: Backend) {
    let Some(h) = Harness::start(b, Options { policy: "one_factor", ..Default::default() }).await else { return };
    let bob = h.login_client("bob", "bobs-password-1", "curl/8").await;
    assert_eq!(app_status(&h, &bob).await, 200);
    edit_user(&h.users, "bob", Change::Disabled(true));
    reload(&h).await;
    assert!(revoked_with(&h, "account removed or disabled; 1 session(s) ended").await, "audited:\n{}", h.gw.log());
    assert_eq!(app_status(&h, &bob).await, 401);
}
