//! Connections to the directory, kept open and reused: a login costs a
//! search and a bind on connections already open, never a new TCP and TLS
//! handshake. Two pools: searches run on connections bound as the service
//! account; password checks bind as the user on connections of their own
//! (a bind changes who a connection is, so the two never share one).
//!
//! A connection that failed or timed out is dropped, not returned: the next
//! checkout opens a fresh one, so a restarted directory is used again as
//! soon as it answers. Every step runs under a deadline the caller gives.

use std::sync::{Arc, Mutex};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::op::{Failure, Op, timed};
use crate::config::LdapConfig;

/// Who a pool's connections are bound as.
#[derive(Clone)]
pub(super) enum Identity {
    /// The service account (or anonymous, with an empty DN).
    Service { dn: String, password: String },
    /// Nobody yet: each checkout binds as the user whose password is checked.
    Users,
}

/// Open connections of one kind, at most `size` at once.
pub(super) struct Pool {
    url: String,
    settings: LdapConnSettings,
    identity: Identity,
    idle: Mutex<Vec<Ldap>>,
    permits: Arc<Semaphore>,
    /// Where each connection's reader task runs: the runtime the directory was
    /// made on (the gateway's main one), which outlives every request.
    runtime: tokio::runtime::Handle,
}

/// A checked-out connection; returned to the pool when dropped, unless
/// marked broken.
pub(super) struct Conn<'a> {
    pub(super) ldap: Ldap,
    pool: &'a Pool,
    broken: bool,
    _permit: OwnedSemaphorePermit,
}

impl Conn<'_> {
    /// This connection failed or timed out mid-operation: close it.
    pub(super) fn broken(&mut self) {
        self.broken = true;
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if !self.broken && !self.ldap.is_closed() {
            self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(self.ldap.clone());
        }
    }
}

impl Pool {
    pub(super) fn new(config: &LdapConfig, identity: Identity) -> Result<Pool, String> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(config.timeout).set_starttls(config.start_tls);
        if let Some(ca) = &config.ca_file {
            settings = settings.set_config(Arc::new(tls_config(ca.certs())?));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        Ok(Pool {
            url: config.url.clone(),
            settings,
            identity,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(config.pool_size.max(1))),
            runtime,
        })
    }

    /// A connection, ready for its kind of work: an idle one, or a new one
    /// (bound as the service account for searches).
    pub(super) async fn get(&self, deadline: Instant) -> Result<Conn<'_>, Failure> {
        let permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Failure::Timeout(Op::Connect))?
            .map_err(|_| Failure::Unavailable(Op::Connect, "the pool is closed".into()))?;
        let reused = loop {
            let Some(mut ldap) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() else { break None };
            if !ldap.is_closed() {
                break Some(ldap);
            }
        };
        let ldap = match reused {
            Some(l) => l,
            None => self.open(deadline).await?,
        };
        Ok(Conn { ldap, pool: self, broken: false, _permit: permit })
    }

    async fn open(&self, deadline: Instant) -> Result<Ldap, Failure> {
        let (conn, mut ldap) = timed(Op::Connect, deadline, async {
            LdapConnAsync::with_settings(self.settings.clone(), &self.url).await
        })
        .await?;
        self.runtime.spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "directory connection closed");
            }
        });
        if let Identity::Service { dn, password } = &self.identity {
            // On failure the handle is dropped, which closes the connection.
            timed(Op::ServiceBind, deadline, async { ldap.simple_bind(dn, password).await?.success() }).await?;
        }
        Ok(ldap)
    }
}

/// A TLS client that trusts exactly `ca_file`'s certificates.
fn tls_config(certs: &[rustls_pki_types::CertificateDer<'static>]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert.clone()).map_err(|e| format!("ldap.ca_file: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("ldap.ca_file: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
