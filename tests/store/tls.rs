//! `rediss://` with a private CA: `store.ca_file` names the CA that signed the
//! server's certificate; with it the store connects (its near cache's channel
//! too), with another CA, or with the system roots, it is refused and says why.

use std::path::Path;

use portcullis::config::StoreConfig;
use portcullis::store::{Store, StoreError};

use crate::support::redis::{RedisServer, or_skip};
use crate::{config, live_session, near_cache_serving};

fn tls_config(server: &RedisServer, ca: Option<&Path>) -> StoreConfig {
    StoreConfig {
        ca_file: ca.map(|p| portcullis::config::CaFile::read(p).expect("a readable CA file")),
        timeout: std::time::Duration::from_secs(2),
        ..config(&server.url())
    }
}

/// A TLS-only redis-server with a certificate for localhost; returns it and
/// the certificate (its own CA).
fn tls_server(test: &str, dir: &Path) -> Option<(RedisServer, std::path::PathBuf)> {
    let (cert, key) = crate::support::self_signed(dir, "redis");
    let server = or_skip(test, RedisServer::start_tls(&cert, &key))?;
    Some((server, cert))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_servers_ca_file_connects_and_keeps_sessions() {
    crate::support::crypto();
    let dir = tempfile::tempdir().unwrap();
    let Some((server, ca)) = tls_server("rediss_with_the_servers_ca_file_connects_and_keeps_sessions", dir.path())
    else {
        return;
    };
    assert!(server.url().starts_with("rediss://localhost:"), "{}", server.url());
    let s = Store::open(&tls_config(&server, Some(&ca))).await.unwrap();
    s.ping().await.expect("TLS to a server the CA file vouches for");
    s.create_session("tok", &live_session("alice")).await.unwrap();
    assert!(s.touch_session("tok").await.unwrap().is_some());
    near_cache_serving(&s).await;
    assert_eq!(s.delete_session("tok").await.unwrap().as_deref(), Some("alice"));
    assert_eq!(s.touch_session("tok").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_that_does_not_vouch_for_the_server_is_refused_with_a_clear_error() {
    crate::support::crypto();
    let dir = tempfile::tempdir().unwrap();
    let Some((server, _)) =
        tls_server("a_ca_file_that_does_not_vouch_for_the_server_is_refused_with_a_clear_error", dir.path())
    else {
        return;
    };
    let (other_ca, _) = crate::support::self_signed(dir.path(), "other");
    for (ca, what) in [(Some(other_ca.as_path()), "another CA"), (None, "the system roots")] {
        let s = Store::open(&tls_config(&server, ca)).await.expect("opens lazily");
        match s.ping().await {
            Err(StoreError::Unavailable(msg)) => {
                assert!(msg.contains("certificate"), "with {what}, the error says it is the certificate: {msg}");
                eprintln!("with {what}: {msg}");
            }
            other => panic!("with {what}: expected a refused certificate, got {other:?}"),
        }
        assert!(s.touch_session("tok").await.is_err(), "with {what}: nothing is served");
        assert!(!s.near_cache_live(), "with {what}: no invalidation channel either");
    }
}
