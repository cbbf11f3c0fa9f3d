//! Second-factor answers admitted for comparison (`admit_attempt`): each
//! failure is counted before the answer is compared, the answer that fills
//! the account's window locks the account first, a right answer takes its
//! failure back (and lifts only the lock it set), a cap of its own (a login's
//! wrong app codes) refuses before anything is counted against the account,
//! and parallel guesses never get past the limits.

use std::sync::Arc;
use std::time::Duration;

use portcullis::store::{Admission, Attempt, AttemptLimits, RateBucket, Store};
use tokio::sync::Barrier;

const HOUR: Duration = Duration::from_secs(3600);
const LOCK: Duration = Duration::from_secs(900);

fn limits(limit: u32) -> AttemptLimits<'static> {
    AttemptLimits { limit, window: HOUR, lock_for: LOCK, cap: None }
}

fn admitted(a: Admission) -> Attempt {
    match a {
        Admission::Admitted(attempt) => attempt,
        other => panic!("expected the answer admitted, got {other:?}"),
    }
}

pub async fn each_admitted_answer_counts_until_the_last_one_locks_the_account(s: &Store) {
    for remaining in [2, 1] {
        let a = admitted(s.admit_attempt("alice", &limits(3)).await.unwrap());
        assert_eq!((a.remaining, a.locked), (remaining, false));
    }
    let last = admitted(s.admit_attempt("alice", &limits(3)).await.unwrap());
    assert_eq!((last.remaining, last.locked), (0, true), "the third fills the window and locks first");
    assert!(s.account_locked("alice").await.unwrap().is_some(), "locked before its answer is known");
    match s.admit_attempt("alice", &limits(3)).await.unwrap() {
        Admission::Locked { retry_after } => assert!(retry_after > Duration::ZERO && retry_after <= LOCK),
        other => panic!("a locked account compares nothing: {other:?}"),
    }
    assert!(matches!(s.admit_attempt("bob", &limits(3)).await.unwrap(), Admission::Admitted(_)), "per account");
}

pub async fn a_right_answer_takes_its_failure_back_and_lifts_only_its_own_lock(s: &Store) {
    let first = admitted(s.admit_attempt("alice", &limits(2)).await.unwrap());
    s.attempt_right("alice", &first).await.unwrap();
    let again = admitted(s.admit_attempt("alice", &limits(2)).await.unwrap());
    assert_eq!(again.remaining, 1, "the right answer was not counted");
    let last = admitted(s.admit_attempt("alice", &limits(2)).await.unwrap());
    assert!(last.locked);
    s.attempt_right("alice", &last).await.unwrap();
    assert_eq!(s.account_locked("alice").await.unwrap(), None, "the lock it set went with it");

    // A lock set by the failures themselves (an operator's or a password's)
    // stays, whatever a right answer admitted before it does.
    let before = admitted(s.admit_attempt("bob", &limits(5)).await.unwrap());
    s.lock_account("bob", LOCK).await.unwrap();
    s.attempt_right("bob", &before).await.unwrap();
    assert!(s.account_locked("bob").await.unwrap().is_some(), "not its lock to lift");
}

pub async fn password_failures_and_second_factor_answers_share_the_account_window(s: &Store) {
    for _ in 0..2 {
        s.rate_record(RateBucket::AccountFailures, "alice", HOUR).await.unwrap();
    }
    let a = admitted(s.admit_attempt("alice", &limits(3)).await.unwrap());
    assert!(a.locked, "two password failures and this answer fill a window of three");
    assert!(s.unlock_account("alice").await.unwrap());
    let fresh = admitted(s.admit_attempt("alice", &limits(3)).await.unwrap());
    assert_eq!(fresh.remaining, 2, "unlocking forgot every failure");
}

pub async fn a_cap_refuses_before_anything_is_counted_against_the_account(s: &Store) {
    let cap = AttemptLimits { cap: Some(("login-1", 2, HOUR)), ..limits(10) };
    for left in [1, 0] {
        let a = admitted(s.admit_attempt("alice", &cap).await.unwrap());
        assert_eq!(a.cap_remaining, Some(left));
    }
    assert_eq!(s.admit_attempt("alice", &cap).await.unwrap(), Admission::CapReached);
    let other = AttemptLimits { cap: Some(("login-2", 2, HOUR)), ..limits(10) };
    let a = admitted(s.admit_attempt("alice", &other).await.unwrap());
    assert_eq!((a.cap_remaining, a.remaining), (Some(1), 7), "another login's cap; the refused one counted nothing");
    let no_cap = admitted(s.admit_attempt("alice", &limits(10)).await.unwrap());
    assert_eq!(no_cap.cap_remaining, None);
}

pub async fn forty_parallel_answers_compare_no_more_than_the_limits_allow(s: &Store) {
    let barrier = Arc::new(Barrier::new(40));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (s, barrier) = (s.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let capped = AttemptLimits { cap: Some(("login-9", 3, HOUR)), ..limits(10) };
                (s.admit_attempt("alice", &capped).await.unwrap(), s.admit_attempt("bob", &limits(10)).await.unwrap())
            })
        })
        .collect();
    let (mut alice, mut bob) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, b) = t.await.unwrap();
        alice.push(a);
        bob.push(b);
    }
    let admitted = |v: &[Admission]| v.iter().filter(|a| matches!(a, Admission::Admitted(_))).count();
    assert_eq!(admitted(&alice), 3, "the login's cap: {alice:?}");
    assert_eq!(admitted(&bob), 10, "the account's window: {bob:?}");
    let locks = bob.iter().filter(|a| matches!(a, Admission::Admitted(Attempt { locked: true, .. }))).count();
    assert_eq!(locks, 1, "exactly one answer locked the account");
    assert!(bob.iter().all(|a| matches!(a, Admission::Admitted(_) | Admission::Locked { .. })));
}
