//! What an operator looks at: the facts of a page of accounts in one call,
//! and the addresses noted as banned.

use std::time::Duration;

use portcullis::store::{AccountFacts, Store};

use crate::{code_hash, live_session};

pub async fn account_facts_tell_factors_locks_sessions_and_last_login(s: &Store) {
    s.set_otp_enabled("alice", true).await.unwrap();
    s.replace_backup_codes("alice", &[code_hash("a"), code_hash("b")]).await.unwrap();
    s.create_session("alice-1", &live_session("alice")).await.unwrap();
    s.create_session("alice-2", &live_session("alice")).await.unwrap();
    s.create_session("bob-1", &live_session("bob")).await.unwrap();
    s.delete_session("alice-2").await.unwrap();
    s.lock_account("~alice-typed", Duration::from_secs(600)).await.unwrap();
    s.lock_account("bob", Duration::from_secs(60)).await.unwrap();
    s.record_known_ip("alice", "192.0.2.1").await.unwrap();

    let asked = [
        ("alice".to_owned(), vec!["alice".to_owned(), "~alice-typed".to_owned()]),
        ("bob".to_owned(), vec!["bob".to_owned()]),
        ("carol".to_owned(), vec!["carol".to_owned()]),
    ];
    let facts = s.account_facts(&asked).await.unwrap();
    assert_eq!(facts.len(), 3, "one answer per account, in order");
    let alice = &facts[0];
    assert!(alice.factors.otp_enabled && alice.factors.backup_codes_left == 2, "{alice:?}");
    assert_eq!(alice.sessions, 1, "an ended session is not counted");
    let locked = alice.locked_for.expect("locked by its typed name");
    assert!(locked > Duration::from_secs(500) && locked <= Duration::from_secs(600), "{locked:?}");
    let now = crate::now_s();
    assert!(alice.last_login.is_some_and(|t| t + 5 >= now && t <= now + 5), "{alice:?}");
    let bob = &facts[1];
    assert_eq!((bob.sessions, bob.last_login), (1, None));
    assert!(bob.locked_for.is_some_and(|d| d <= Duration::from_secs(60)));
    assert_eq!(facts[2], AccountFacts::default(), "an account the store knows nothing of");
    assert!(s.account_facts(&[]).await.unwrap().is_empty());
}

pub async fn a_noted_ban_is_listed_until_it_is_forgotten(s: &Store) {
    assert!(s.ip_bans(10).await.unwrap().is_empty());
    s.note_ip_ban("203.0.113.9", Duration::from_secs(900)).await.unwrap();
    s.note_ip_ban("2001:db8::/64", Duration::from_secs(60)).await.unwrap();
    // A shorter note never shortens a ban.
    s.note_ip_ban("203.0.113.9", Duration::from_secs(10)).await.unwrap();
    let bans = s.ip_bans(10).await.unwrap();
    let ips: Vec<&str> = bans.iter().map(|b| b.ip.as_str()).collect();
    assert_eq!(ips, ["2001:db8::/64", "203.0.113.9"], "soonest-ending first");
    let now = crate::now_s();
    assert!(bans[1].until >= now + 890 && bans[1].until <= now + 905, "{bans:?}");
    assert_eq!(s.ip_bans(1).await.unwrap().len(), 1, "at most the limit");
    s.forget_ip_ban("2001:db8::/64").await.unwrap();
    let ips: Vec<String> = s.ip_bans(10).await.unwrap().into_iter().map(|b| b.ip).collect();
    assert_eq!(ips, ["203.0.113.9"]);
}
