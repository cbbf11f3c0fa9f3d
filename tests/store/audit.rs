//! Audit: per-user and global lists, newest first, capped.

use portcullis::store::{AUDIT_GLOBAL, AUDIT_PER_USER, Store};

use crate::audit_entry;

async fn details(s: &Store, user: Option<&str>, limit: usize) -> Vec<String> {
    s.recent_audit(user, limit).await.unwrap().into_iter().map(|r| r.details).collect()
}

pub async fn audit_lists_newest_first_per_user_and_globally(s: &Store) {
    s.append_audit(&audit_entry(Some("alice"), "a1")).await.unwrap();
    s.append_audit(&audit_entry(Some("bob"), "b1")).await.unwrap();
    let a2 = audit_entry(Some("alice"), "a2");
    s.append_audit(&a2).await.unwrap();
    s.append_audit(&audit_entry(None, "anonymous")).await.unwrap();

    assert_eq!(details(s, Some("alice"), 10).await, ["a2", "a1"]);
    assert_eq!(details(s, Some("bob"), 10).await, ["b1"]);
    assert_eq!(details(s, None, 10).await, ["anonymous", "a2", "b1", "a1"], "the global list has everything");
    assert_eq!(details(s, None, 2).await, ["anonymous", "a2"], "limit keeps the newest");
    assert!(details(s, Some("carol"), 10).await.is_empty());
    assert!(details(s, Some("alice"), 0).await.is_empty());
    assert_eq!(s.recent_audit(Some("alice"), 1).await.unwrap(), vec![a2], "records round-trip whole");
}

pub async fn audit_lists_keep_only_the_newest_entries(s: &Store) {
    let per_user = AUDIT_PER_USER + 5;
    for i in 0..per_user {
        s.append_audit(&audit_entry(Some("alice"), &i.to_string())).await.unwrap();
    }
    for i in per_user..AUDIT_GLOBAL + 5 {
        s.append_audit(&audit_entry(None, &i.to_string())).await.unwrap();
    }

    let alice = details(s, Some("alice"), 10_000).await;
    assert_eq!(alice.len(), AUDIT_PER_USER, "the per-user list is capped");
    assert_eq!(alice.first().map(String::as_str), Some((per_user - 1).to_string().as_str()), "newest kept");
    assert_eq!(alice.last().map(String::as_str), Some("5"), "oldest dropped");

    let global = details(s, None, 10_000).await;
    assert_eq!(global.len(), AUDIT_GLOBAL, "the global list is capped");
    assert_eq!(global[0], (AUDIT_GLOBAL + 4).to_string());
    assert_eq!(global[AUDIT_GLOBAL - 1], "5");
}
