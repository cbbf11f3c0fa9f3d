//! Access tokens: kept by id until they expire, listed and revoked per user
//! (never another user's), their last use noted without bringing a revoked
//! one back, and all of a user's revoked with the user.

use portcullis::store::{Store, TokenRecord};

use crate::common::now_s;

pub fn token(user: &str, name: &str, lifetime: u64) -> TokenRecord {
    let now = now_s();
    TokenRecord {
        user: user.to_owned(),
        name: name.to_owned(),
        hash: "ab".repeat(32),
        created: now,
        expires_at: now + lifetime,
        last_used: None,
        credential: "fingerprint".to_owned(),
    }
}

pub async fn a_token_is_found_by_id_listed_for_its_user_and_revoked_only_by_them(s: &Store) {
    let rec = token("alice", "backup script", 3600);
    s.create_token("id-a1", &rec).await.unwrap();
    s.create_token("id-a2", &token("alice", "calendar", 3600)).await.unwrap();
    s.create_token("id-b1", &token("bob", "monitor", 3600)).await.unwrap();
    assert_eq!(s.token("id-a1").await.unwrap(), Some(rec.clone()));
    assert_eq!(s.token("nope").await.unwrap(), None);

    let mut names: Vec<String> = s.list_tokens("alice").await.unwrap().into_iter().map(|t| t.record.name).collect();
    names.sort();
    assert_eq!(names, ["backup script", "calendar"]);
    assert!(!s.revoke_token("bob", "id-a1").await.unwrap(), "bob cannot revoke alice's token");
    assert!(s.token("id-a1").await.unwrap().is_some());
    assert!(s.revoke_token("alice", "id-a1").await.unwrap());
    assert!(!s.revoke_token("alice", "id-a1").await.unwrap(), "once");
    assert_eq!(s.token("id-a1").await.unwrap(), None);
    let ids: Vec<String> = s.list_tokens("alice").await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["id-a2"]);
}

pub async fn a_tokens_last_use_is_noted_but_never_brings_a_revoked_one_back(s: &Store) {
    s.create_token("id-t", &token("alice", "script", 3600)).await.unwrap();
    let now = now_s();
    assert!(s.touch_token("id-t", now).await.unwrap());
    assert_eq!(s.token("id-t").await.unwrap().unwrap().last_used, Some(now));
    assert_eq!(s.list_tokens("alice").await.unwrap()[0].record.last_used, Some(now));
    assert!(s.revoke_token("alice", "id-t").await.unwrap());
    assert!(!s.touch_token("id-t", now + 60).await.unwrap(), "gone");
    assert_eq!(s.token("id-t").await.unwrap(), None, "a touch after the revocation did not recreate it");
}

pub async fn an_expired_token_is_gone(s: &Store) {
    let mut dead = token("alice", "old", 3600);
    dead.expires_at = now_s() - 1;
    s.create_token("id-old", &dead).await.unwrap();
    assert_eq!(s.token("id-old").await.unwrap(), None);
    assert!(s.list_tokens("alice").await.unwrap().is_empty());
}

pub async fn forgetting_a_user_revokes_their_tokens_and_nobody_elses(s: &Store) {
    s.create_token("id-a", &token("alice", "a", 3600)).await.unwrap();
    s.create_token("id-b", &token("bob", "b", 3600)).await.unwrap();
    let forgotten = s.forget_user("alice").await.unwrap();
    assert_eq!(forgotten.tokens, 1);
    assert_eq!(s.token("id-a").await.unwrap(), None);
    assert!(s.token("id-b").await.unwrap().is_some());
}
