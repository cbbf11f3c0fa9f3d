//! Durable per-user state: the 2FA switch, backup codes (each usable once),
//! the authenticator app's sealed secrets and used code steps, and known IPs
//! with when they were last seen.

use std::sync::Arc;

use portcullis::store::{ForgottenUser, IpHistory, KNOWN_IPS_PER_USER, Store, TotpSecrets, UserState};

use crate::{Time, audit_entry, code_hash, live_session, now_s};

/// Eight backup-code hashes, distinct per `set`.
pub fn backup_codes(set: &str) -> Vec<[u8; 32]> {
    (0..8).map(|i| code_hash(&format!("{set}-backup-{i}"))).collect()
}

pub async fn two_factor_is_off_until_enabled_and_can_be_switched_off(s: &Store) {
    assert_eq!(s.user_state("alice").await.unwrap(), UserState::default());
    assert!(!s.user_state("alice").await.unwrap().totp_enabled);
    s.set_otp_enabled("alice", true).await.unwrap();
    assert!(s.user_state("alice").await.unwrap().otp_enabled);
    assert!(!s.user_state("bob").await.unwrap().otp_enabled, "per user");
    s.set_otp_enabled("alice", false).await.unwrap();
    assert!(!s.user_state("alice").await.unwrap().otp_enabled);
}

pub async fn each_backup_code_is_consumed_exactly_once(s: &Store) {
    let codes = backup_codes("first");
    s.replace_backup_codes("alice", &codes).await.unwrap();
    assert_eq!(s.user_state("alice").await.unwrap().backup_codes_left, 8);

    assert!(s.consume_backup_code("alice", &codes[3]).await.unwrap());
    assert_eq!(s.user_state("alice").await.unwrap().backup_codes_left, 7);
    assert!(!s.consume_backup_code("alice", &codes[3]).await.unwrap(), "a used code is spent");
    assert!(!s.consume_backup_code("alice", &code_hash("made-up")).await.unwrap(), "an unknown code fails");
    assert!(!s.consume_backup_code("bob", &codes[4]).await.unwrap(), "alice's code is not bob's");
    assert_eq!(s.user_state("alice").await.unwrap().backup_codes_left, 7, "failed attempts consume nothing");
    for code in codes.iter().filter(|c| **c != codes[3]) {
        assert!(s.consume_backup_code("alice", code).await.unwrap());
    }
    assert_eq!(s.user_state("alice").await.unwrap().backup_codes_left, 0);
}

pub async fn new_backup_codes_void_the_old_ones(s: &Store) {
    let old = backup_codes("old");
    let new = backup_codes("new");
    s.replace_backup_codes("alice", &old).await.unwrap();
    s.replace_backup_codes("alice", &new).await.unwrap();
    assert_eq!(s.user_state("alice").await.unwrap().backup_codes_left, 8);
    assert!(!s.consume_backup_code("alice", &old[0]).await.unwrap(), "old codes are void");
    assert!(s.consume_backup_code("alice", &new[0]).await.unwrap());
    s.replace_backup_codes("alice", &[]).await.unwrap();
    assert_eq!(s.user_state("alice").await.unwrap().backup_codes_left, 0);
    assert!(!s.consume_backup_code("alice", &new[1]).await.unwrap(), "an empty set voids them all");
}

pub async fn known_ips_remember_when_they_were_last_seen(s: &Store) {
    let before = now_s();
    assert_eq!(s.record_known_ip("alice", "198.51.100.4").await.unwrap(), IpHistory::FirstEver, "the first IP");
    let after = now_s();
    let seen = s.record_known_ip("alice", "198.51.100.4").await.unwrap().last_seen().expect("a known IP");
    assert!((before..=after).contains(&seen), "last seen {seen}, recorded in {before}..={after}");
    assert_eq!(s.record_known_ip("alice", "2001:db8::4").await.unwrap(), IpHistory::Unseen, "another IP is new");
    assert_eq!(s.record_known_ip("bob", "198.51.100.4").await.unwrap(), IpHistory::FirstEver, "per user");
}

pub async fn known_ips_forget_the_least_recently_seen_beyond_the_cap(s: &Store, time: &Time) {
    s.record_known_ip("alice", "203.0.113.1").await.unwrap();
    // Every other IP is seen at least a second later.
    time.next_second().await;
    let others: Vec<String> = (0..KNOWN_IPS_PER_USER).map(|i| format!("10.0.{}.{}", i / 256, i % 256)).collect();
    for ip in &others {
        assert_eq!(s.record_known_ip("alice", ip).await.unwrap(), IpHistory::Unseen, "{ip} is new");
    }
    // One more than the cap has been seen.
    assert!(s.record_known_ip("alice", &others[0]).await.unwrap().last_seen().is_some(), "recent IPs are remembered");
    assert!(s.record_known_ip("alice", &others[KNOWN_IPS_PER_USER - 1]).await.unwrap().last_seen().is_some());
    assert_eq!(
        s.record_known_ip("alice", "203.0.113.1").await.unwrap(),
        IpHistory::Unseen,
        "the least recently seen IP was forgotten"
    );
}

pub async fn an_authenticator_secret_waits_for_its_code_then_counts_as_a_second_factor(s: &Store) {
    assert_eq!(s.totp_secrets("alice").await.unwrap(), TotpSecrets::default());
    s.set_totp_pending("alice", "sealed-1").await.unwrap();
    let state = s.user_state("alice").await.unwrap();
    assert!(!state.totp_enabled && !state.has_second_factor(), "a secret not yet confirmed protects nothing");
    assert_eq!(s.totp_secrets("alice").await.unwrap().pending.as_deref(), Some("sealed-1"));
    assert!(!s.use_totp_step("alice", 100).await.unwrap(), "no code is accepted before confirmation");

    s.set_totp_pending("alice", "sealed-2").await.unwrap();
    s.enable_totp("alice", "sealed-2", 100).await.unwrap();
    assert_eq!(
        s.totp_secrets("alice").await.unwrap(),
        TotpSecrets { active: Some("sealed-2".into()), pending: None },
        "the confirmed secret replaces the pending one"
    );
    let state = s.user_state("alice").await.unwrap();
    assert!(state.totp_enabled && state.has_second_factor() && !state.otp_enabled);
    assert!(!s.user_state("bob").await.unwrap().totp_enabled, "per user");
    assert!(!s.use_totp_step("alice", 100).await.unwrap(), "the confirming code's step is used up");

    s.set_totp_pending("alice", "sealed-3").await.unwrap();
    assert_eq!(s.totp_secrets("alice").await.unwrap().active.as_deref(), Some("sealed-2"), "re-setup keeps the app");
    assert!(s.remove_totp("alice").await.unwrap());
    assert_eq!(s.totp_secrets("alice").await.unwrap(), TotpSecrets::default(), "both secrets are gone");
    assert!(!s.user_state("alice").await.unwrap().totp_enabled);
    assert!(!s.remove_totp("alice").await.unwrap(), "nothing left to remove");
    assert!(!s.use_totp_step("alice", 101).await.unwrap(), "no app, no code");
}

pub async fn a_totp_step_is_accepted_once_and_never_an_earlier_one(s: &Store) {
    s.enable_totp("alice", "sealed", 1000).await.unwrap();
    assert!(s.use_totp_step("alice", 1001).await.unwrap());
    assert!(!s.use_totp_step("alice", 1001).await.unwrap(), "the same code again is a replay");
    assert!(!s.use_totp_step("alice", 1000).await.unwrap(), "an earlier step, still within the drift, is refused");
    assert!(s.use_totp_step("alice", 1003).await.unwrap(), "a later step is fine");
    s.enable_totp("bob", "sealed", 0).await.unwrap();
    assert!(s.use_totp_step("bob", 1001).await.unwrap(), "steps are per user");
}

pub async fn passkeys_are_kept_per_user_and_count_as_a_second_factor(s: &Store) {
    assert_eq!(s.passkeys("alice").await.unwrap(), None);
    assert!(!s.user_state("alice").await.unwrap().passkey_enabled);
    assert!(s.swap_passkeys("alice", None, Some("[1]")).await.unwrap());
    let state = s.user_state("alice").await.unwrap();
    assert!(state.passkey_enabled && state.has_second_factor() && !state.otp_enabled && !state.totp_enabled);
    assert_eq!(s.passkeys("alice").await.unwrap().as_deref(), Some("[1]"));
    assert_eq!(s.passkeys("bob").await.unwrap(), None, "per user");
    assert!(s.swap_passkeys("alice", Some("[1]"), Some("[1,2]")).await.unwrap());
    assert_eq!(s.passkeys("alice").await.unwrap().as_deref(), Some("[1,2]"), "replaced whole");
    assert!(s.swap_passkeys("alice", Some("[1,2]"), None).await.unwrap());
    assert_eq!(s.passkeys("alice").await.unwrap(), None);
    assert!(!s.user_state("alice").await.unwrap().has_second_factor(), "the last one removed");
}

pub async fn a_passkey_change_lands_only_on_the_list_it_was_made_from(s: &Store) {
    assert!(s.swap_passkeys("alice", None, Some("[1,2]")).await.unwrap());
    // A sign-in read [1,2]; meanwhile a removal wrote [1].
    assert!(s.swap_passkeys("alice", Some("[1,2]"), Some("[1]")).await.unwrap());
    assert!(!s.swap_passkeys("alice", Some("[1,2]"), Some("[1,2*]")).await.unwrap(), "the stale write is refused");
    assert_eq!(s.passkeys("alice").await.unwrap().as_deref(), Some("[1]"), "the removal stands");
    assert!(!s.swap_passkeys("alice", None, Some("[3]")).await.unwrap(), "'there were none' is stale too");
    assert!(!s.swap_passkeys("bob", Some("[1]"), None).await.unwrap(), "bob has none to replace");
    assert_eq!(s.passkeys("bob").await.unwrap(), None);
}

/// Gives `user` every kind of durable state, a session and an audit record.
async fn everything_of(s: &Store, user: &str) {
    s.create_session(&format!("{user}-session"), &live_session(user)).await.unwrap();
    s.set_otp_enabled(user, true).await.unwrap();
    s.replace_backup_codes(user, &backup_codes(user)).await.unwrap();
    s.enable_totp(user, "sealed", 1000).await.unwrap();
    assert!(s.swap_passkeys(user, None, Some("[1]")).await.unwrap());
    s.record_known_ip(user, "198.51.100.4").await.unwrap();
    s.append_audit(&audit_entry(Some(user), "signed in")).await.unwrap();
}

pub async fn forgetting_a_user_ends_their_sessions_and_removes_their_factors_and_nobody_elses(s: &Store) {
    everything_of(s, "alice").await;
    s.create_session("alice-phone", &live_session("alice")).await.unwrap();
    everything_of(s, "bob").await;
    let all = UserState { otp_enabled: true, backup_codes_left: 8, totp_enabled: true, passkey_enabled: true };

    let forgotten = s.forget_user("alice").await.unwrap();
    assert_eq!(forgotten, ForgottenUser { sessions: 2, factors: all.clone(), tokens: 0 }, "it says what it removed");
    assert_eq!(s.touch_session("alice-session").await.unwrap(), None, "sessions end");
    assert!(s.list_sessions("alice").await.unwrap().is_empty());
    assert_eq!(s.user_state("alice").await.unwrap(), UserState::default(), "no second factor is left");
    assert_eq!(s.totp_secrets("alice").await.unwrap(), TotpSecrets::default());
    assert_eq!(s.passkeys("alice").await.unwrap(), None);
    assert!(!s.consume_backup_code("alice", &backup_codes("alice")[0]).await.unwrap(), "backup codes are void");
    assert_eq!(
        s.record_known_ip("alice", "198.51.100.4").await.unwrap(),
        IpHistory::FirstEver,
        "someone given the name later starts afresh"
    );
    assert_eq!(s.recent_audit(Some("alice"), 10).await.unwrap().len(), 1, "the audit trail is kept");

    assert_eq!(s.user_state("bob").await.unwrap(), all, "bob keeps everything");
    assert!(s.touch_session("bob-session").await.unwrap().is_some());
    assert_eq!(s.forget_user("alice").await.unwrap(), ForgottenUser::default(), "nothing left the second time");
    assert_eq!(s.forget_user("nobody").await.unwrap(), ForgottenUser::default());
}

pub async fn a_ceremony_is_taken_once(s: &Store) {
    s.put_ceremony("auth:login-1", "{\"c\":1}", std::time::Duration::from_secs(60)).await.unwrap();
    assert_eq!(s.take_ceremony("auth:login-2").await.unwrap(), None, "per key");
    assert_eq!(s.take_ceremony("auth:login-1").await.unwrap().as_deref(), Some("{\"c\":1}"));
    assert_eq!(s.take_ceremony("auth:login-1").await.unwrap(), None, "a challenge answers once");
}

pub async fn fifty_concurrent_uses_of_one_totp_step_succeed_exactly_once(s: &Store) {
    s.enable_totp("alice", "sealed", 7).await.unwrap();
    let s = Arc::new(s.clone());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.use_totp_step("alice", 8).await.unwrap() })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += usize::from(t.await.unwrap());
    }
    assert_eq!(accepted, 1, "one code, one sign-in");
}
