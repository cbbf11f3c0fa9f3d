//! What only the embedded store has: durable state in `state_file` that
//! outlives the process, and bounded tables that refuse rather than grow.

use std::time::Duration;

use portcullis::clock::Clock;
use portcullis::config::StoreConfig;
use portcullis::store::{IpHistory, Store, StoreError, UserState};

use crate::durable::backup_codes;
use crate::pending::pending_login;
use crate::{config, live_session, now_s};

fn with_state_file(dir: &tempfile::TempDir) -> StoreConfig {
    StoreConfig { state_file: Some(dir.path().join("data").join("state.json")), ..config("memory://") }
}

#[tokio::test]
async fn durable_state_survives_reopening_from_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_state_file(&dir);
    let codes = backup_codes("alice");
    let first_seen = now_s();
    {
        let s = Store::open(&cfg).await.unwrap();
        s.set_otp_enabled("alice", true).await.unwrap();
        s.replace_backup_codes("alice", &codes).await.unwrap();
        assert!(s.consume_backup_code("alice", &codes[2]).await.unwrap());
        assert_eq!(s.record_known_ip("alice", "198.51.100.4").await.unwrap(), IpHistory::FirstEver);
        s.set_otp_enabled("bob", true).await.unwrap();
        s.set_otp_enabled("bob", false).await.unwrap();
        s.enable_totp("carol", "sealed-secret", 41).await.unwrap();
        assert!(s.use_totp_step("carol", 42).await.unwrap());
        assert!(s.swap_passkeys("dave", None, Some("[{\"id\":\"k1\"}]")).await.unwrap());
        s.put_ceremony("reg:x", "{}", Duration::from_secs(60)).await.unwrap();
        s.create_session("tok", &live_session("alice")).await.unwrap();
    } // the store is dropped here, as at shutdown

    let s = Store::open(&cfg).await.unwrap();
    assert_eq!(
        s.user_state("alice").await.unwrap(),
        UserState { otp_enabled: true, backup_codes_left: 7, totp_enabled: false, passkey_enabled: false }
    );
    assert!(s.user_state("carol").await.unwrap().totp_enabled, "the authenticator app survives");
    assert_eq!(s.totp_secrets("carol").await.unwrap().active.as_deref(), Some("sealed-secret"));
    assert!(!s.use_totp_step("carol", 42).await.unwrap(), "a used code stays used across a restart");
    assert!(s.user_state("dave").await.unwrap().passkey_enabled, "passkeys survive");
    assert_eq!(s.passkeys("dave").await.unwrap().as_deref(), Some("[{\"id\":\"k1\"}]"));
    assert_eq!(s.take_ceremony("reg:x").await.unwrap(), None, "ceremonies are not durable");
    assert!(!s.user_state("bob").await.unwrap().otp_enabled, "the last write wins");
    assert!(!s.consume_backup_code("alice", &codes[2]).await.unwrap(), "a used code stays used");
    assert!(s.consume_backup_code("alice", &codes[0]).await.unwrap(), "unused codes still work");
    let seen = s.record_known_ip("alice", "198.51.100.4").await.unwrap().last_seen().expect("the IP is still known");
    assert!(seen >= first_seen && seen <= now_s(), "with when it was seen: {seen}");
    assert_eq!(s.touch_session("tok").await.unwrap(), None, "sessions are not durable: everyone logs in again");
    drop(s);

    let s = Store::open(&cfg).await.unwrap();
    assert_eq!(s.user_state("alice").await.unwrap().backup_codes_left, 6, "changes after a reopen persist too");
    assert!(!s.consume_backup_code("alice", &codes[0]).await.unwrap());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(cfg.state_file.as_ref().unwrap()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the state file is private to the gateway's user");
    }
}

/// `portcullis user remove` with the memory store and no gateway running
/// opens the state file itself: what it forgets stays forgotten.
#[tokio::test]
async fn a_forgotten_user_stays_forgotten_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_state_file(&dir);
    {
        let s = Store::open(&cfg).await.unwrap();
        s.enable_totp("alice", "sealed-secret", 41).await.unwrap();
        s.set_otp_enabled("bob", true).await.unwrap();
    }
    {
        let s = Store::open(&cfg).await.unwrap();
        assert!(s.forget_user("alice").await.unwrap().factors.totp_enabled);
    }
    let s = Store::open(&cfg).await.unwrap();
    assert_eq!(s.user_state("alice").await.unwrap(), UserState::default());
    assert!(s.user_state("bob").await.unwrap().otp_enabled, "bob is kept");
}

#[tokio::test]
async fn a_corrupt_state_file_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_state_file(&dir);
    let path = cfg.state_file.clone().unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"{\"version\": 1, \"users\": {\"alice\": {\"backup_codes\": [\"not hex\"]}}}").unwrap();
    match Store::open(&cfg).await {
        Err(StoreError::Corrupt(why)) => assert!(why.contains("alice"), "names the bad entry: {why}"),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a corrupt state file must not open as an empty state"),
    }
    std::fs::write(&path, b"{ half a file").unwrap();
    assert!(matches!(Store::open(&cfg).await, Err(StoreError::Corrupt(_))));
}

#[tokio::test]
async fn a_full_table_refuses_new_entries_but_serves_existing_ones() {
    let s = Store::open(&StoreConfig { max_entries: 3, ..config("memory://") }).await.unwrap();
    for token in ["s1", "s2", "s3"] {
        s.create_session(token, &live_session("alice")).await.unwrap();
    }
    assert!(matches!(s.create_session("s4", &live_session("alice")).await, Err(StoreError::Full)));
    assert!(s.touch_session("s1").await.unwrap().is_some(), "existing sessions still load");
    s.create_session("s1", &live_session("alice")).await.expect("replacing an entry needs no room");
    s.delete_session("s2").await.unwrap();
    s.create_session("s4", &live_session("alice")).await.expect("a freed slot is reused");

    // Each kind of entry has its own bound: the full session table does not
    // stop pending logins.
    let p = pending_login("alice");
    s.put_pending("p1", &p, Duration::from_secs(600)).await.unwrap();
    for user in ["a", "b", "c"] {
        s.set_otp_enabled(user, true).await.unwrap();
    }
    assert!(matches!(s.set_otp_enabled("d", true).await, Err(StoreError::Full)), "durable users are bounded too");
}

#[tokio::test]
async fn a_full_table_makes_room_once_its_entries_expire() {
    let clock = Clock::manual(1_800_000_000_000);
    let s =
        Store::open_with_clock(&StoreConfig { max_entries: 2, ..config("memory://") }, clock.clone()).await.unwrap();
    let p = pending_login("alice");
    let short = Duration::from_millis(300);
    s.put_pending("p1", &p, short).await.unwrap();
    s.put_pending("p2", &p, short).await.unwrap();
    assert!(matches!(s.put_pending("p3", &p, short).await, Err(StoreError::Full)));
    // A full table purges expired entries inline, at most once a second.
    clock.advance(Duration::from_millis(999));
    assert!(matches!(s.put_pending("p3", &p, short).await, Err(StoreError::Full)), "purged at most once a second");
    clock.advance(Duration::from_millis(1));
    s.put_pending("p3", &p, short).await.expect("expired entries made room");
}
