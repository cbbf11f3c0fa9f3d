//! Sliding-window rate limits: hit (count if under the limit), check (decide
//! without counting), record (count unconditionally), reset; and retry_after.

use std::time::Duration;

use portcullis::store::{RateBucket, RateDecision, Store};

use crate::Time;

const MINUTE: Duration = Duration::from_secs(60);

fn retry_after(d: RateDecision) -> Duration {
    match d {
        RateDecision::Limited { retry_after } => retry_after,
        allowed => panic!("expected Limited, got {allowed:?}"),
    }
}

pub async fn a_rate_window_allows_its_limit_then_says_when_to_retry(s: &Store) {
    let ip = "198.51.100.7";
    for remaining in [2, 1, 0] {
        assert_eq!(s.rate_hit(RateBucket::Login, ip, 3, MINUTE).await.unwrap(), RateDecision::Allowed { remaining });
    }
    let wait = retry_after(s.rate_hit(RateBucket::Login, ip, 3, MINUTE).await.unwrap());
    assert!(wait > Duration::from_secs(55) && wait <= MINUTE, "retry when the first hit leaves: {wait:?}");
    let again = retry_after(s.rate_hit(RateBucket::Login, ip, 3, MINUTE).await.unwrap());
    assert!(again <= wait, "a refused hit is not counted, so the wait does not grow: {again:?} > {wait:?}");

    assert_eq!(
        s.rate_hit(RateBucket::Login, "198.51.100.8", 3, MINUTE).await.unwrap(),
        RateDecision::Allowed { remaining: 2 }
    );
    assert_eq!(s.rate_hit(RateBucket::Verify, ip, 3, MINUTE).await.unwrap(), RateDecision::Allowed { remaining: 2 });
}

pub async fn a_rate_check_does_not_count(s: &Store) {
    let ip = "198.51.100.7";
    for _ in 0..10 {
        assert_eq!(
            s.rate_check(RateBucket::Login, ip, 3, MINUTE).await.unwrap(),
            RateDecision::Allowed { remaining: 3 }
        );
    }
    assert_eq!(s.rate_hit(RateBucket::Login, ip, 3, MINUTE).await.unwrap(), RateDecision::Allowed { remaining: 2 });
    assert_eq!(s.rate_check(RateBucket::Login, ip, 3, MINUTE).await.unwrap(), RateDecision::Allowed { remaining: 2 });
    s.rate_hit(RateBucket::Login, ip, 3, MINUTE).await.unwrap();
    s.rate_hit(RateBucket::Login, ip, 3, MINUTE).await.unwrap();
    let wait = retry_after(s.rate_check(RateBucket::Login, ip, 3, MINUTE).await.unwrap());
    assert!(wait > Duration::from_secs(55) && wait <= MINUTE, "{wait:?}");
    assert!(
        matches!(
            s.rate_check(RateBucket::Login, "198.51.100.99", 0, MINUTE).await.unwrap(),
            RateDecision::Limited { .. }
        ),
        "a zero limit refuses even an unseen key"
    );
}

pub async fn the_window_slides_so_old_hits_stop_counting(s: &Store, time: &Time) {
    let window = Duration::from_millis(2000);
    let ip = "198.51.100.7";
    assert_eq!(s.rate_hit(RateBucket::Verify, ip, 2, window).await.unwrap(), RateDecision::Allowed { remaining: 1 });
    time.pass(Duration::from_millis(1000)).await;
    assert_eq!(s.rate_hit(RateBucket::Verify, ip, 2, window).await.unwrap(), RateDecision::Allowed { remaining: 0 });
    let wait = retry_after(s.rate_hit(RateBucket::Verify, ip, 2, window).await.unwrap());
    assert!(wait > Duration::ZERO && wait <= Duration::from_millis(1000), "the first hit leaves in {wait:?}");

    // Past the first hit's exit, well before the second's.
    time.pass(wait + Duration::from_millis(400)).await;
    assert_eq!(
        s.rate_hit(RateBucket::Verify, ip, 2, window).await.unwrap(),
        RateDecision::Allowed { remaining: 0 },
        "the first hit left the window; the second still counts (no reset)"
    );
    let wait = retry_after(s.rate_hit(RateBucket::Verify, ip, 2, window).await.unwrap());
    // The second hit leaves about 600 ms from now; the newest would take the whole 2 s window.
    assert!(wait <= Duration::from_millis(1000), "now the second hit is the oldest: {wait:?}");
}

pub async fn recording_counts_every_event_and_reset_clears_the_window(s: &Store) {
    let hour = Duration::from_secs(3600);
    for n in 1..=4 {
        assert_eq!(s.rate_record(RateBucket::IpFailures, "198.51.100.7", hour).await.unwrap(), n);
    }
    assert!(matches!(
        s.rate_check(RateBucket::IpFailures, "198.51.100.7", 4, hour).await.unwrap(),
        RateDecision::Limited { .. }
    ));
    assert_eq!(
        s.rate_check(RateBucket::IpFailures, "198.51.100.7", 5, hour).await.unwrap(),
        RateDecision::Allowed { remaining: 1 }
    );
    assert_eq!(
        s.rate_hit(RateBucket::IpFailures, "198.51.100.7", 6, hour).await.unwrap(),
        RateDecision::Allowed { remaining: 1 }
    );
    assert_eq!(
        s.rate_record(RateBucket::IpFailures, "198.51.100.7", hour).await.unwrap(),
        6,
        "hits and records share the log"
    );
    assert_eq!(s.rate_record(RateBucket::IpFailures, "198.51.100.8", hour).await.unwrap(), 1, "per key");

    s.rate_reset(RateBucket::IpFailures, "198.51.100.7").await.unwrap();
    assert_eq!(
        s.rate_check(RateBucket::IpFailures, "198.51.100.7", 4, hour).await.unwrap(),
        RateDecision::Allowed { remaining: 4 }
    );
    assert_eq!(s.rate_record(RateBucket::IpFailures, "198.51.100.7", hour).await.unwrap(), 1, "counting starts over");
    assert_eq!(s.rate_record(RateBucket::IpFailures, "198.51.100.8", hour).await.unwrap(), 2, "other keys keep theirs");
}
