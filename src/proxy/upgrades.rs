//! Upgraded connections (WebSocket, or any protocol switch) end with what
//! signed them. Once upgraded, a connection carries no more requests for the
//! gate to check, so a session that ends by logout, revocation, expiry, a
//! changed credential or a disabled user would otherwise keep its live
//! connections. Each upgraded connection is registered under its session or
//! token; one task per process asks the gate every `CHECK_EVERY` whether each
//! one distinct caller is still signed in, and closes the connections of any
//! that is not. The check reads the store, so an end on another replica is
//! seen as soon as on this one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::StoreError;

/// How often the callers of upgraded connections are checked: an ended
/// session's connections close within this (and the check's own time).
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// What signed an upgraded connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Signer {
    /// A session, by its cookie's token.
    Session(String),
    /// An access token, by its id.
    Token(String),
}

/// Asks whether a signer is still signed in (the gate answers).
pub trait Liveness: Send + Sync + 'static {
    fn alive(&self, signer: &Signer) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The upgraded connections open, by signer; cheap to clone.
#[derive(Clone, Default)]
pub struct Upgrades {
    inner: Arc<Mutex<HashMap<Signer, Entry>>>,
}

struct Entry {
    /// Told `true` when the signer's connections must close.
    close: watch::Sender<bool>,
    open: usize,
}

/// One registered connection: closes when told, and leaves the registry
/// (and the gauge) when dropped.
pub struct Registration {
    upgrades: Upgrades,
    signer: Signer,
    pub closed: watch::Receiver<bool>,
}

impl Upgrades {
    /// Registers one upgraded connection of `signer`.
    pub fn register(&self, signer: Signer) -> Registration {
        let mut map = crate::store::lock(&self.inner);
        let entry = map.entry(signer.clone()).or_insert_with(|| Entry { close: watch::channel(false).0, open: 0 });
        entry.open += 1;
        crate::metrics::get().upgraded_connections.inc();
        Registration { closed: entry.close.subscribe(), upgrades: self.clone(), signer }
    }

    /// Checks every signer with an open connection now; closes the
    /// connections of those no longer signed in. A signer whose check fails
    /// (the store did not answer) keeps its connections until the next
    /// round: nothing new is let in through them, and an outage does not cut
    /// every live connection at once.
    pub async fn check(&self, gate: &impl Liveness) {
        let signers: Vec<Signer> = crate::store::lock(&self.inner).keys().cloned().collect();
        for signer in signers {
            match gate.alive(&signer).await {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(e) = crate::store::lock(&self.inner).get(&signer) {
                        let _ = e.close.send(true);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "an upgraded connection's caller could not be checked"),
            }
        }
    }

    /// Runs the checks every `every` for as long as `gate` lives.
    pub fn spawn_checks<G: Liveness>(&self, gate: Weak<G>, every: Duration) {
        let upgrades = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(gate) = gate.upgrade() else { return };
                if crate::store::lock(&upgrades.inner).is_empty() {
                    continue;
                }
                upgrades.check(gate.as_ref()).await;
            }
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        crate::metrics::get().upgraded_connections.dec();
        let mut map = crate::store::lock(&self.upgrades.inner);
        if let Some(e) = map.get_mut(&self.signer) {
            e.open -= 1;
            if e.open == 0 {
                map.remove(&self.signer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    struct Signed(Mutex<HashSet<Signer>>);

    impl Liveness for Signed {
        async fn alive(&self, signer: &Signer) -> Result<bool, StoreError> {
            Ok(self.0.lock().unwrap().contains(signer))
        }
    }

    #[tokio::test]
    async fn the_connections_of_an_ended_signer_are_told_to_close_and_no_others() {
        let (a, b) = (Signer::Session("a".into()), Signer::Token("t".into()));
        let gate = Signed(Mutex::new([a.clone(), b.clone()].into()));
        let ups = Upgrades::default();
        let (a1, a2, b1) = (ups.register(a.clone()), ups.register(a.clone()), ups.register(b.clone()));
        ups.check(&gate).await;
        assert!(!*a1.closed.borrow() && !*b1.closed.borrow(), "both signed in");
        gate.0.lock().unwrap().remove(&a);
        ups.check(&gate).await;
        assert!(*a1.closed.borrow() && *a2.closed.borrow(), "both of a's connections close");
        assert!(!*b1.closed.borrow(), "b's stays");
        drop((a1, a2));
        assert!(!crate::store::lock(&ups.inner).contains_key(&a), "a is forgotten with its last connection");
        drop(b1);
        assert!(crate::store::lock(&ups.inner).is_empty());
    }
}
