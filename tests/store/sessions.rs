//! Sessions: created, loaded-and-touched (sliding idle expiry, absolute
//! expiry), rotated, deleted, listed by user and revoked.

use std::collections::HashSet;

use portcullis::store::{AuthLevel, SessionRecord, Store};

use crate::{Time, live_session, now_s, session};

pub async fn a_created_session_loads_with_a_fresh_last_seen(s: &Store) {
    let before = now_s();
    let mut rec = session("alice", before - 30, 3600, before + 86_400);
    rec.level = AuthLevel::TwoFactor;
    rec.remember_me = true;
    s.create_session("tok-alice", &rec).await.unwrap();

    let loaded = s.touch_session("tok-alice").await.unwrap().expect("a live session loads");
    let after = now_s();
    assert!(
        (before..=after).contains(&loaded.last_seen),
        "loading touches: last_seen {} is not in {before}..={after}",
        loaded.last_seen
    );
    assert_eq!(SessionRecord { last_seen: rec.last_seen, ..loaded }, rec, "everything else is as stored");
    assert_eq!(s.touch_session("tok-nobody").await.unwrap(), None, "an unknown token loads nothing");
}

pub async fn touching_a_session_slides_its_idle_expiry(s: &Store, time: &Time) {
    let t = time.next_second().await;
    // Last seen at t with 2 s of idle time: untouched, it lives through second t + 2.
    s.create_session("tok", &session("alice", t, 2, t + 3600)).await.unwrap();
    time.at(t, 1500).await;
    let rec = s.touch_session("tok").await.unwrap().expect("alive before its idle timeout");
    assert!(rec.last_seen > t, "the touch records when it happened: {}", rec.last_seen);

    // Past the untouched expiry (t + 3), inside the slid one (t + 4).
    time.at(t + 3, 500).await;
    let rec = s.touch_session("tok").await.unwrap().expect("the touch at t + 1 slid the expiry past t + 3");
    assert!(rec.last_seen >= t + 3, "last seen {}", rec.last_seen);

    // Last touched during second t + 3: idle through second t + 5, then gone.
    time.at(t + 6, 500).await;
    assert_eq!(s.touch_session("tok").await.unwrap(), None, "idle longer than its timeout");
    assert!(s.list_sessions("alice").await.unwrap().is_empty(), "an idle-expired session is not listed");
}

pub async fn a_session_dies_at_its_absolute_expiry_however_active(s: &Store, time: &Time) {
    let t = time.next_second().await;
    s.create_session("tok", &session("alice", t, 3600, t + 1)).await.unwrap();
    assert!(s.touch_session("tok").await.unwrap().is_some());
    time.at(t + 1, 500).await;
    let rec = s.touch_session("tok").await.unwrap().expect("alive through its last second");
    assert_eq!(rec.absolute_expiry, t + 1, "touching never moves the absolute expiry");

    time.at(t + 2, 500).await;
    assert_eq!(s.touch_session("tok").await.unwrap(), None, "dead past its absolute expiry, though just touched");
    assert!(s.list_sessions("alice").await.unwrap().is_empty());
}

pub async fn an_expired_session_is_gone_for_every_operation(s: &Store) {
    let now = now_s();
    // Last seen 100 s ago with 10 s of idle time: dead from the start.
    let dead = |user: &str| session(user, now - 100, 10, now + 3600);
    s.create_session("touched", &dead("alice")).await.unwrap();
    s.create_session("deleted", &dead("alice")).await.unwrap();
    s.create_session("revoked", &dead("bob")).await.unwrap();
    s.create_session("listed", &dead("carol")).await.unwrap();
    s.create_session("all-1", &dead("dave")).await.unwrap();
    s.create_session("all-2", &dead("dave")).await.unwrap();
    s.create_session("all-live", &live_session("dave")).await.unwrap();

    assert_eq!(s.touch_session("touched").await.unwrap(), None, "an expired session does not load");
    assert_eq!(s.delete_session("deleted").await.unwrap(), None, "deleting an expired session finds no one");
    assert!(
        !s.revoke_session("bob", &Store::session_id("revoked")).await.unwrap(),
        "revoking an expired session reports it absent"
    );
    assert!(s.list_sessions("carol").await.unwrap().is_empty(), "an expired session is not listed");
    assert_eq!(s.revoke_user_sessions("dave").await.unwrap(), 1, "revoke-all counts only live sessions");
}

pub async fn rotating_a_session_retires_the_old_token(s: &Store) {
    let one = live_session("alice");
    s.create_session("old", &one).await.unwrap();
    let two = SessionRecord { level: AuthLevel::TwoFactor, ..one };
    s.rotate_session("old", "new", &two).await.unwrap();

    assert_eq!(s.touch_session("old").await.unwrap(), None, "the old token is dead (no fixation)");
    let rec = s.touch_session("new").await.unwrap().expect("the new token is live");
    assert_eq!(rec.level, AuthLevel::TwoFactor, "the new session carries the new record");
    let ids: Vec<String> = s.list_sessions("alice").await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, vec![Store::session_id("new")], "only the new session is listed");
}

pub async fn deleting_a_session_ends_it_and_names_its_user(s: &Store) {
    s.create_session("tok", &live_session("alice")).await.unwrap();
    s.create_session("other", &live_session("alice")).await.unwrap();
    assert_eq!(s.delete_session("tok").await.unwrap().as_deref(), Some("alice"));
    assert_eq!(s.touch_session("tok").await.unwrap(), None, "a deleted session does not load");
    assert_eq!(s.delete_session("tok").await.unwrap(), None, "deleting twice finds nothing");
    assert!(s.touch_session("other").await.unwrap().is_some(), "the user's other session lives on");
}

pub async fn a_user_lists_only_their_own_live_sessions(s: &Store) {
    let mut laptop = live_session("alice");
    laptop.device = "Firefox on Linux".into();
    let mut phone = live_session("alice");
    phone.device = "Safari on iOS".into();
    phone.ip = "198.51.100.23".into();
    s.create_session("laptop", &laptop).await.unwrap();
    s.create_session("phone", &phone).await.unwrap();
    s.create_session("bobs", &live_session("bob")).await.unwrap();

    let mut listed = s.list_sessions("alice").await.unwrap();
    listed.sort_by(|a, b| a.record.device.cmp(&b.record.device));
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].id, Store::session_id("laptop"));
    assert_eq!(listed[0].record, laptop);
    assert_eq!(listed[1].id, Store::session_id("phone"));
    assert_eq!(listed[1].record, phone);
    assert!(listed.iter().all(|i| i.id != "laptop" && i.id != "phone"), "listed ids are not the cookies");

    assert!(s.list_sessions("carol").await.unwrap().is_empty(), "a user without sessions lists none");
    s.delete_session("laptop").await.unwrap();
    let ids: Vec<String> = s.list_sessions("alice").await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, vec![Store::session_id("phone")]);
}

pub async fn revoking_a_session_by_its_listed_id_ends_only_that_session(s: &Store) {
    // Shaped like a real cookie value: 43 base64url characters, as ids are too.
    let a2 = format!("{}x", "a2".repeat(21));
    s.create_session("a1", &live_session("alice")).await.unwrap();
    s.create_session(&a2, &live_session("alice")).await.unwrap();
    s.create_session("b1", &live_session("bob")).await.unwrap();

    assert!(s.revoke_session("alice", &Store::session_id("a1")).await.unwrap());
    assert_eq!(s.touch_session("a1").await.unwrap(), None, "a revoked session does not load");
    assert!(s.touch_session(&a2).await.unwrap().is_some(), "the user's other session lives on");
    assert!(!s.revoke_session("alice", &Store::session_id("a1")).await.unwrap(), "revoking twice finds nothing");

    assert!(!s.revoke_session("alice", &Store::session_id("b1")).await.unwrap(), "not alice's to revoke");
    assert!(s.touch_session("b1").await.unwrap().is_some(), "bob's session survives alice's attempt");
    assert!(!s.revoke_session("alice", &a2).await.unwrap(), "a cookie value is not a session id");
    assert!(!s.revoke_session("alice", "{s}:sess:*").await.unwrap(), "a made-up id revokes nothing");
    assert!(s.touch_session(&a2).await.unwrap().is_some());
}

pub async fn revoking_all_sessions_of_a_user_spares_everyone_else(s: &Store) {
    for token in ["a1", "a2", "a3"] {
        s.create_session(token, &live_session("alice")).await.unwrap();
    }
    s.create_session("b1", &live_session("bob")).await.unwrap();

    assert_eq!(s.revoke_user_sessions("alice").await.unwrap(), 3);
    for token in ["a1", "a2", "a3"] {
        assert_eq!(s.touch_session(token).await.unwrap(), None, "{token} was revoked");
    }
    assert!(s.list_sessions("alice").await.unwrap().is_empty());
    assert!(s.touch_session("b1").await.unwrap().is_some(), "bob stays logged in");
    assert_eq!(s.revoke_user_sessions("alice").await.unwrap(), 0, "nothing left to revoke");
    let ids: HashSet<String> = s.list_sessions("bob").await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, HashSet::from([Store::session_id("b1")]));
}

pub async fn peeking_at_a_session_does_not_slide_its_idle_expiry(s: &Store, time: &Time) {
    let t = time.next_second().await;
    s.create_session("tok", &session("alice", t, 2, t + 3600)).await.unwrap();
    time.at(t, 1500).await;
    let rec = s.peek_session("tok").await.unwrap().expect("alive before its idle timeout");
    assert_eq!(rec.last_seen, t, "a peek records no use");
    assert_eq!(s.peek_session("other").await.unwrap(), None);
    // Peeked at t + 1.5 s: still expires after second t + 2, as if untouched.
    time.at(t + 3, 500).await;
    assert_eq!(s.peek_session("tok").await.unwrap(), None, "peeks kept nothing alive");
    assert_eq!(s.touch_session("tok").await.unwrap(), None);
}
