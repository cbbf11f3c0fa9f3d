//! Races: many callers at once, released together by a barrier, on the
//! operations that must succeed exactly once (or exactly `limit` times).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use portcullis::store::{CodeCheck, CodePurpose, RateBucket, RateDecision, Store};
use tokio::sync::Barrier;

use crate::code_hash;
use crate::durable::backup_codes;
use crate::pending::pending_login;

/// Runs `n` copies of `op` released at the same moment; returns their results.
async fn race<T, F, Fut>(s: &Store, n: usize, op: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Store) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, fut) = (barrier.clone(), op(s.clone()));
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("task did not panic"));
    }
    out
}

pub async fn two_hundred_concurrent_verifies_of_one_correct_code_succeed_exactly_once(s: &Store) {
    let code = code_hash("482913");
    s.issue_code("alice", CodePurpose::Login, &code, Duration::from_secs(600), 3).await.unwrap();
    let results =
        race(s, 200, |s| async move { s.verify_code("alice", CodePurpose::Login, &code).await.unwrap() }).await;
    assert_eq!(results.iter().filter(|r| **r == CodeCheck::Ok).count(), 1, "{results:?}");
    assert!(
        results.iter().all(|r| matches!(r, CodeCheck::Ok | CodeCheck::None)),
        "every other caller finds the code consumed: {results:?}"
    );
}

pub async fn a_thousand_concurrent_hits_on_a_five_per_minute_window_allow_exactly_five(s: &Store) {
    let minute = Duration::from_secs(60);
    let results =
        race(s, 1000, |s| async move { s.rate_hit(RateBucket::Login, "203.0.113.9", 5, minute).await.unwrap() }).await;
    let mut remaining: Vec<u32> = results
        .iter()
        .filter_map(|r| match r {
            RateDecision::Allowed { remaining } => Some(*remaining),
            RateDecision::Limited { .. } => None,
        })
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, [0, 1, 2, 3, 4], "exactly five allowed, each told what is left");
    for r in &results {
        if let RateDecision::Limited { retry_after } = r {
            assert!(*retry_after > Duration::from_secs(50) && *retry_after <= minute, "{retry_after:?}");
        }
    }
    assert!(matches!(
        s.rate_check(RateBucket::Login, "203.0.113.9", 5, minute).await.unwrap(),
        RateDecision::Limited { .. }
    ));
}

pub async fn a_backup_code_consumed_fifty_times_at_once_succeeds_exactly_once(s: &Store) {
    let codes = backup_codes("race");
    s.replace_backup_codes("alice", &codes).await.unwrap();
    let code = codes[5];
    let results = race(s, 50, |s| async move { s.consume_backup_code("alice", &code).await.unwrap() }).await;
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    assert_eq!(s.user_state("alice").await.unwrap().backup_codes_left, 7, "one code spent, the others intact");
}

pub async fn fifty_concurrent_takes_of_one_pending_login_complete_it_once(s: &Store) {
    let p = pending_login("alice");
    s.put_pending("pending", &p, Duration::from_secs(600)).await.unwrap();
    let results = race(s, 50, |s| async move { s.take_pending("pending").await.unwrap() }).await;
    let taken: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(taken, vec![p], "exactly one caller gets the pending login");
}
