//! Audit: per-user and global trails, newest first, capped; searched a
//! page at a time by cursor, time range and filters.

use portcullis::store::{AUDIT_PER_USER, AuditKind, AuditQuery, AuditRecord, Store};

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
    // The global trail keeps at least its cap: the memory store's, exactly.
    let global_cap = s.audit_global_cap();
    let extra = 10_005usize.min(global_cap + 5);
    for i in per_user..extra {
        s.append_audit(&audit_entry(None, &i.to_string())).await.unwrap();
    }

    let alice = details(s, Some("alice"), 10_000).await;
    assert_eq!(alice.len(), AUDIT_PER_USER, "the per-user list is capped");
    assert_eq!(alice.first().map(String::as_str), Some((per_user - 1).to_string().as_str()), "newest kept");
    assert_eq!(alice.last().map(String::as_str), Some("5"), "oldest dropped");

    let global = details(s, None, 20_000).await;
    if extra > global_cap {
        assert_eq!(global.len(), global_cap, "the global list is capped");
        assert_eq!(global[0], (extra - 1).to_string());
        assert_eq!(global[global_cap - 1], (extra - global_cap).to_string());
    } else {
        assert_eq!(global.len(), extra, "below its cap, the global trail keeps everything");
        assert_eq!(global[0], (extra - 1).to_string());
    }
}

fn entry(user: Option<&str>, kind: AuditKind, event: &str, ip: &str, details: &str) -> AuditRecord {
    AuditRecord { kind, event: event.to_owned(), ip: ip.to_owned(), ..audit_entry(user, details) }
}

pub async fn the_audit_trail_is_searched_a_page_at_a_time_newest_first(s: &Store) {
    for i in 0..25 {
        let (kind, event) = match i % 2 {
            0 => (AuditKind::LoginAttempt, "invalid_credentials"),
            _ => (AuditKind::SecurityEvent, "account_locked"),
        };
        let ip = if i % 5 == 0 { "203.0.113.5" } else { "198.51.100.1" };
        let user = if i % 3 == 0 { Some("carol") } else { None };
        s.append_audit(&entry(user, kind, event, ip, &i.to_string())).await.unwrap();
    }
    let all = |limit| AuditQuery { limit, ..AuditQuery::default() };
    let first = s.search_audit(&all(10)).await.unwrap();
    let shown: Vec<&str> = first.records.iter().map(|(_, r)| r.details.as_str()).collect();
    assert_eq!(shown, ["24", "23", "22", "21", "20", "19", "18", "17", "16", "15"]);
    let cursors: Vec<_> = first.records.iter().map(|(c, _)| *c).collect();
    assert!(cursors.windows(2).all(|w| w[0] > w[1]), "cursors fall: {cursors:?}");
    let next = first.next.expect("a next page");
    let second = s.search_audit(&AuditQuery { before: Some(next), ..all(10) }).await.unwrap();
    assert_eq!(second.records.first().map(|(_, r)| r.details.as_str()), Some("14"));
    let third = s.search_audit(&AuditQuery { before: second.next, ..all(10) }).await.unwrap();
    assert_eq!(third.records.len(), 5, "the rest");
    assert_eq!(third.next, None, "and no page after the last");
    let exact = s.search_audit(&all(25)).await.unwrap();
    assert_eq!((exact.records.len(), exact.next), (25, None), "a page that ends with the trail says so");

    let by_ip = s.search_audit(&AuditQuery { ip: Some("203.0.113.5".into()), ..all(50) }).await.unwrap();
    let shown: Vec<&str> = by_ip.records.iter().map(|(_, r)| r.details.as_str()).collect();
    assert_eq!(shown, ["20", "15", "10", "5", "0"]);
    let q = AuditQuery { kind: Some(AuditKind::SecurityEvent), ip: Some("198.51.100.1".into()), ..all(3) };
    let page = s.search_audit(&q).await.unwrap();
    let shown: Vec<&str> = page.records.iter().map(|(_, r)| r.details.as_str()).collect();
    assert_eq!(shown, ["23", "21", "19"], "filters combine");
    let q = AuditQuery { event: Some("invalid_credentials".into()), ..all(100) };
    assert_eq!(s.search_audit(&q).await.unwrap().records.len(), 13);
    let q = AuditQuery { user: Some("carol".into()), ..all(100) };
    let shown: Vec<String> = s.search_audit(&q).await.unwrap().records.into_iter().map(|(_, r)| r.details).collect();
    assert_eq!(shown, ["24", "21", "18", "15", "12", "9", "6", "3", "0"], "a user's own trail");
    let q = AuditQuery { user: Some("nobody".into()), ..all(10) };
    assert_eq!(s.search_audit(&q).await.unwrap(), Default::default());

    // Time ranges are ranges of the cursors (the time each record was kept).
    let newest = cursors[0].ms / 1000;
    let oldest = exact.records.last().unwrap().0.ms / 1000;
    let q = AuditQuery { until: Some(oldest - 1), ..all(100) };
    assert!(s.search_audit(&q).await.unwrap().records.is_empty(), "nothing before the first");
    let q = AuditQuery { since: Some(newest + 1), ..all(100) };
    assert!(s.search_audit(&q).await.unwrap().records.is_empty(), "nothing after the last");
    let q = AuditQuery { since: Some(oldest), until: Some(newest), ..all(100) };
    assert_eq!(s.search_audit(&q).await.unwrap().records.len(), 25, "both ends are inclusive");
    let q = AuditQuery { since: Some(newest), until: Some(oldest.saturating_sub(1)), ..all(100) };
    assert!(s.search_audit(&q).await.unwrap().records.is_empty(), "an empty range");
}

pub async fn a_search_that_matches_little_stops_at_its_budget_and_says_where_to_go_on(s: &Store) {
    let budget = portcullis::store::AUDIT_SCAN_BUDGET;
    s.append_audit(&entry(None, AuditKind::SecurityEvent, "needle", "192.0.2.1", "old")).await.unwrap();
    for i in 0..budget + 10 {
        s.append_audit(&entry(None, AuditKind::LoginAttempt, "hay", "192.0.2.2", &i.to_string())).await.unwrap();
    }
    let q = AuditQuery { event: Some("needle".into()), limit: 10, ..AuditQuery::default() };
    let first = s.search_audit(&q).await.unwrap();
    assert!(first.records.is_empty(), "the needle lies beyond the budget");
    let next = first.next.expect("the search says where to go on");
    let second = s.search_audit(&AuditQuery { before: Some(next), ..q.clone() }).await.unwrap();
    assert_eq!(second.records.len(), 1, "and finds it there");
    assert_eq!(second.records[0].1.details, "old");
    assert_eq!(second.next, None);
}
