//! Pending logins: password accepted, code not yet given. Readable until taken,
//! taken exactly once, gone after their TTL.

use std::time::Duration;

use portcullis::store::{PendingLogin, Store};

use crate::{Time, now_s};

pub fn pending_login(user: &str) -> PendingLogin {
    PendingLogin {
        user: user.to_owned(),
        remember_me: true,
        rd: Some("https://app.example.com/reports?q=1".to_owned()),
        created: now_s(),
        ip: "192.0.2.10".to_owned(),
        device: "Firefox on Linux".to_owned(),
    }
}

pub async fn a_pending_login_can_be_read_until_it_is_taken_once(s: &Store) {
    let alice = pending_login("alice");
    let bob = pending_login("bob");
    s.put_pending("p-alice", &alice, Duration::from_secs(600)).await.unwrap();
    s.put_pending("p-bob", &bob, Duration::from_secs(600)).await.unwrap();

    assert_eq!(s.get_pending("p-alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(s.get_pending("p-alice").await.unwrap(), Some(alice.clone()), "reading does not consume");
    assert_eq!(s.take_pending("p-alice").await.unwrap(), Some(alice));
    assert_eq!(s.take_pending("p-alice").await.unwrap(), None, "a login completes once");
    assert_eq!(s.get_pending("p-alice").await.unwrap(), None, "taken means gone");
    assert_eq!(s.get_pending("p-bob").await.unwrap(), Some(bob), "other pending logins are untouched");
    assert_eq!(s.get_pending("p-nobody").await.unwrap(), None);
}

pub async fn a_pending_login_expires_after_its_ttl(s: &Store, time: &Time) {
    let p = pending_login("alice");
    s.put_pending("short", &p, Duration::from_millis(1000)).await.unwrap();
    s.put_pending("long", &p, Duration::from_secs(600)).await.unwrap();
    assert_eq!(s.get_pending("short").await.unwrap(), Some(p.clone()), "alive within its TTL");
    time.pass(Duration::from_millis(1400)).await;
    assert_eq!(s.get_pending("short").await.unwrap(), None, "expired");
    assert_eq!(s.take_pending("short").await.unwrap(), None, "an expired login cannot be completed");
    assert_eq!(s.take_pending("long").await.unwrap(), Some(p), "a longer TTL still runs");
}
