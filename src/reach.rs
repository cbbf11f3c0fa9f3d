//! How an operator's command reaches the state a running gateway holds: the
//! gateway's admin endpoint (`admin`), found through `server.metrics_listen`;
//! when nothing listens there, the store itself. Redis is shared with every
//! gateway, so any command may work on it directly. The memory store lives
//! inside the gateway process; with no gateway running, what survives of it is
//! its state file, which commands that touch only durable state (second
//! factors: `user list`, `user remove`) may open themselves.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::admin::{self, CallError};
use crate::audit::Audit;
use crate::auth::operator::{Operator, OperatorActions};
use crate::auth::users::Users;
use crate::clock::Clock;
use crate::config::Config;
use crate::store::{Store, StoreError};

/// What a command may fall back to when no gateway listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// A shared store (Redis) only: the command touches state that lives in a
    /// gateway's memory (sessions, locks), gone with the gateway otherwise.
    SharedStore,
    /// The memory store's state file too: the command reads or removes only
    /// durable state, and no gateway runs to hold (and rewrite) the file.
    StateFile,
}

/// Where the command's actions go.
pub enum Reach {
    /// The running gateway, through its admin endpoint.
    Gateway { addr: SocketAddr, secret: Vec<u8> },
    /// The store itself.
    Store(OperatorActions),
}

/// Why the gateway's state could not be reached, or the action failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReachError(String);

impl Reach {
    /// Finds the running gateway (a harmless look-up through its admin
    /// endpoint), or else the store as `fallback` allows. `users_file` names
    /// the accounts when working on the store (for the keys of their e-mail
    /// addresses).
    pub async fn find(config: &Config, users_file: &Path, fallback: Fallback) -> Result<Reach, ReachError> {
        let secret = config.auth.secret.expose().as_bytes().to_vec();
        let memory = config.store.url.expose().starts_with("memory:");
        let unreached = match admin::local_address(config.server.metrics_listen) {
            Some(addr) => {
                let probe = serde_json::json!({"names": []});
                match admin::call(addr, &secret, "users/state", &probe).await {
                    Ok(_) => return Ok(Reach::Gateway { addr, secret }),
                    Err(e @ CallError::NoGateway { .. }) => e.to_string(),
                    // Something answers there but does not act: the store must
                    // not be changed behind a gateway's back.
                    Err(e) => return Err(ReachError(e.to_string())),
                }
            }
            None => "server.metrics_listen is off or on port 0, so the gateway's admin endpoint cannot be found".into(),
        };
        // With the memory store, the state file may be used only when nothing
        // listens where the gateway would: a running one would overwrite it.
        if memory && !(fallback == Fallback::StateFile && admin::local_address(config.server.metrics_listen).is_some())
        {
            return Err(ReachError(format!(
                "{unreached}; with store.url = memory:// only the running gateway holds the state"
            )));
        }
        let store = Store::open(&config.store).await.map_err(|e| ReachError(e.to_string()))?;
        store.ping().await.map_err(|e| ReachError(format!("{unreached}, and {e}")))?;
        let users = Users::open(users_file).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "names are taken as account names");
            Users::fixed(users_file, Default::default())
        });
        let audit = Audit::new(store.clone(), Clock::system());
        Ok(Reach::Store(OperatorActions::new(store, Arc::new(users), audit, secret.into())))
    }

    /// Has the gateway do `action` with `body`, or does it on the store with
    /// `direct`; the answer either way.
    pub async fn act<T: DeserializeOwned>(
        &self,
        action: &str,
        body: Value,
        direct: impl AsyncFnOnce(&OperatorActions, &Operator) -> Result<T, StoreError>,
    ) -> Result<T, ReachError> {
        match self {
            Reach::Gateway { addr, secret } => {
                let v = admin::call(*addr, secret, action, &body).await.map_err(|e| ReachError(e.to_string()))?;
                serde_json::from_value(v).map_err(|e| ReachError(format!("unexpected answer from the gateway: {e}")))
            }
            Reach::Store(actions) => {
                let by = Operator { ip: "-".into(), agent: "portcullis command line (store)".into(), name: None };
                direct(actions, &by).await.map_err(|e| ReachError(e.to_string()))
            }
        }
    }
}
