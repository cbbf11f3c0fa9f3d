//! One-time codes: stored as hashes, consumed when right, voided after too many
//! wrong tries, by a newer code or by expiry; and the resend cooldown.

use std::time::Duration;

use portcullis::store::{CodeCheck, CodePurpose, Store};

use crate::{Time, code_hash};

const LOGIN: CodePurpose = CodePurpose::Login;
const TEN_MINUTES: Duration = Duration::from_secs(600);

pub async fn a_correct_code_verifies_once(s: &Store) {
    s.issue_code("alice", LOGIN, &code_hash("482913"), TEN_MINUTES, 3).await.unwrap();
    assert_eq!(s.verify_code("alice", LOGIN, &code_hash("482913")).await.unwrap(), CodeCheck::Ok);
    assert_eq!(
        s.verify_code("alice", LOGIN, &code_hash("482913")).await.unwrap(),
        CodeCheck::None,
        "a used code is consumed"
    );
}

pub async fn a_wrong_code_reports_the_attempts_remaining(s: &Store) {
    s.issue_code("alice", LOGIN, &code_hash("482913"), TEN_MINUTES, 3).await.unwrap();
    let wrong = code_hash("000000");
    assert_eq!(s.verify_code("alice", LOGIN, &wrong).await.unwrap(), CodeCheck::Wrong { remaining: 2 });
    assert_eq!(s.verify_code("alice", LOGIN, &wrong).await.unwrap(), CodeCheck::Wrong { remaining: 1 });
    assert_eq!(
        s.verify_code("alice", LOGIN, &code_hash("482913")).await.unwrap(),
        CodeCheck::Ok,
        "the right code still works on the last attempt"
    );
}

pub async fn wrong_code_three_times_voids_the_code(s: &Store) {
    s.issue_code("alice", LOGIN, &code_hash("482913"), TEN_MINUTES, 3).await.unwrap();
    let wrong = code_hash("000000");
    assert_eq!(s.verify_code("alice", LOGIN, &wrong).await.unwrap(), CodeCheck::Wrong { remaining: 2 });
    assert_eq!(s.verify_code("alice", LOGIN, &wrong).await.unwrap(), CodeCheck::Wrong { remaining: 1 });
    assert_eq!(s.verify_code("alice", LOGIN, &wrong).await.unwrap(), CodeCheck::Exhausted);
    assert_eq!(
        s.verify_code("alice", LOGIN, &code_hash("482913")).await.unwrap(),
        CodeCheck::Exhausted,
        "once exhausted, even the right code is refused"
    );
    assert_eq!(s.verify_code("alice", LOGIN, &wrong).await.unwrap(), CodeCheck::Exhausted);
}

pub async fn an_expired_code_says_expired_then_is_forgotten(s: &Store, time: &Time) {
    let ttl = Duration::from_millis(1000);
    s.issue_code("alice", LOGIN, &code_hash("482913"), ttl, 3).await.unwrap();
    time.pass(Duration::from_millis(1400)).await;
    assert_eq!(
        s.verify_code("alice", LOGIN, &code_hash("482913")).await.unwrap(),
        CodeCheck::Expired,
        "the right code, too late"
    );
    assert_eq!(s.verify_code("alice", LOGIN, &code_hash("000000")).await.unwrap(), CodeCheck::Expired);
    // The record is kept for twice the TTL so late attempts hear "expired".
    time.pass(Duration::from_millis(1000)).await;
    assert_eq!(s.verify_code("alice", LOGIN, &code_hash("482913")).await.unwrap(), CodeCheck::None);
}

pub async fn a_code_never_issued_or_voided_verifies_as_none(s: &Store) {
    assert_eq!(s.verify_code("alice", LOGIN, &code_hash("482913")).await.unwrap(), CodeCheck::None);
    s.issue_code("alice", LOGIN, &code_hash("482913"), TEN_MINUTES, 3).await.unwrap();
    s.void_code("alice", LOGIN).await.unwrap();
    assert_eq!(
        s.verify_code("alice", LOGIN, &code_hash("482913")).await.unwrap(),
        CodeCheck::None,
        "a voided code is gone"
    );
    s.void_code("alice", LOGIN).await.unwrap();
}

pub async fn issuing_a_new_code_voids_the_previous_one(s: &Store) {
    s.issue_code("alice", LOGIN, &code_hash("111111"), TEN_MINUTES, 3).await.unwrap();
    assert_eq!(s.verify_code("alice", LOGIN, &code_hash("000000")).await.unwrap(), CodeCheck::Wrong { remaining: 2 });
    s.issue_code("alice", LOGIN, &code_hash("222222"), TEN_MINUTES, 3).await.unwrap();
    assert_eq!(
        s.verify_code("alice", LOGIN, &code_hash("111111")).await.unwrap(),
        CodeCheck::Wrong { remaining: 2 },
        "the old code is now just a wrong code, and the new one has all its attempts"
    );
    assert_eq!(s.verify_code("alice", LOGIN, &code_hash("222222")).await.unwrap(), CodeCheck::Ok);
}

pub async fn codes_for_different_users_and_purposes_do_not_mix(s: &Store) {
    let enable = CodePurpose::EnableOtp;
    s.issue_code("alice", LOGIN, &code_hash("111111"), TEN_MINUTES, 3).await.unwrap();
    s.issue_code("alice", enable, &code_hash("222222"), TEN_MINUTES, 3).await.unwrap();
    s.issue_code("bob", LOGIN, &code_hash("333333"), TEN_MINUTES, 3).await.unwrap();

    assert_eq!(
        s.verify_code("alice", enable, &code_hash("111111")).await.unwrap(),
        CodeCheck::Wrong { remaining: 2 },
        "a login code does not enable 2FA"
    );
    assert_eq!(
        s.verify_code("bob", LOGIN, &code_hash("111111")).await.unwrap(),
        CodeCheck::Wrong { remaining: 2 },
        "alice's code does not log bob in"
    );
    assert_eq!(s.verify_code("alice", LOGIN, &code_hash("111111")).await.unwrap(), CodeCheck::Ok);
    assert_eq!(
        s.verify_code("alice", enable, &code_hash("222222")).await.unwrap(),
        CodeCheck::Ok,
        "using the login code left the other purpose's code alone"
    );
    assert_eq!(s.verify_code("bob", LOGIN, &code_hash("333333")).await.unwrap(), CodeCheck::Ok);
}

pub async fn a_resend_cooldown_refuses_until_it_ends(s: &Store, time: &Time) {
    let cooldown = Duration::from_millis(1000);
    assert_eq!(s.start_cooldown("alice", LOGIN, cooldown).await.unwrap(), None, "the first send starts it");
    let left = s.start_cooldown("alice", LOGIN, cooldown).await.unwrap().expect("a second send is refused");
    assert!(left > Duration::ZERO && left <= cooldown, "time left {left:?} is within the cooldown");
    assert_eq!(s.start_cooldown("alice", CodePurpose::EnableOtp, cooldown).await.unwrap(), None, "per purpose");
    assert_eq!(s.start_cooldown("bob", LOGIN, cooldown).await.unwrap(), None, "per user");

    time.pass(Duration::from_millis(1400)).await;
    assert_eq!(s.start_cooldown("alice", LOGIN, cooldown).await.unwrap(), None, "after the cooldown, send again");
    assert!(s.start_cooldown("alice", LOGIN, cooldown).await.unwrap().is_some(), "and a new cooldown runs");
}
