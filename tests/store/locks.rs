//! Failure counters and the account lock: a lock expires by itself, and
//! unlocking lifts it and forgets the account's failures.

use std::time::Duration;

use portcullis::store::{RateBucket, Store};

use crate::Time;

pub async fn a_locked_account_stays_locked_until_the_lock_expires(s: &Store, time: &Time) {
    let lock = Duration::from_millis(1000);
    assert_eq!(s.account_locked("alice").await.unwrap(), None, "not locked to begin with");
    s.lock_account("alice", lock).await.unwrap();
    let left = s.account_locked("alice").await.unwrap().expect("locked");
    assert!(left > Duration::ZERO && left <= lock, "time left {left:?}");
    assert_eq!(s.account_locked("bob").await.unwrap(), None, "only alice is locked");

    time.pass(Duration::from_millis(1400)).await;
    assert_eq!(s.account_locked("alice").await.unwrap(), None, "the lock expired by itself");
    assert!(!s.unlock_account("alice").await.unwrap(), "an expired lock is not a lock");
}

pub async fn unlocking_lifts_the_lock_and_forgets_the_failures(s: &Store) {
    let hour = Duration::from_secs(3600);
    for n in 1..=3 {
        assert_eq!(s.rate_record(RateBucket::AccountFailures, "alice", hour).await.unwrap(), n);
    }
    s.rate_record(RateBucket::AccountFailures, "bob", hour).await.unwrap();
    s.lock_account("alice", hour).await.unwrap();
    s.lock_account("bob", hour).await.unwrap();

    assert!(s.unlock_account("alice").await.unwrap(), "it was locked");
    assert_eq!(s.account_locked("alice").await.unwrap(), None);
    assert_eq!(
        s.rate_record(RateBucket::AccountFailures, "alice", hour).await.unwrap(),
        1,
        "the failure count starts over"
    );
    assert!(!s.unlock_account("carol").await.unwrap(), "carol was never locked");

    assert!(s.account_locked("bob").await.unwrap().is_some(), "bob stays locked");
    assert_eq!(s.rate_record(RateBucket::AccountFailures, "bob", hour).await.unwrap(), 2, "and keeps his failures");
}
