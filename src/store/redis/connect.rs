//! Connections to the three Redis topologies behind one type, so the store's
//! operations do not care which one runs:
//!
//! - one server: a deadpool-redis pool of multiplexed connections;
//! - Sentinel: the same kind of pool, whose connections are opened to whatever
//!   server the Sentinels name as master at that moment, so after a failover
//!   the pool refills against the new master;
//! - Cluster: one cluster connection (it multiplexes per node, follows MOVED and
//!   ASK and refreshes its slot map itself).
//!
//! All of them connect lazily: the gateway starts while Redis is down and
//! reports not ready. A pooled connection that fails at the socket, or lands
//! on a server that has become a read-only replica, is dropped rather than put
//! back, so the next checkout opens a fresh one (to the new master, if any).

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster::{ClusterClientBuilder, ClusterConfig};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use deadpool_redis::redis::{
    self as r, AsyncConnectionConfig, Client, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, TlsCertificates, TlsMode, Value,
};
use tokio::sync::Mutex;

use crate::config::{Cluster, Sentinel, StoreConfig, Topology};
use crate::store::types::{StoreError, StoreResult};

/// Opens connections to the configured topology; clones share the pools.
#[derive(Clone)]
pub(super) struct Connector {
    kind: Kind,
    /// How the invalidation channel reaches the same servers.
    subscriptions: Arc<SubscriptionTarget>,
}

#[derive(Clone)]
enum Kind {
    Server(managed::Pool<ServerManager>),
    Sentinel(managed::Pool<SentinelManager>),
    Cluster(ClusterConnection),
}

/// Where a pub/sub subscriber connects: the server, the Sentinels' current
/// master, or any node of the cluster (a cluster forwards every PUBLISH to
/// every node, so one node hears them all).
pub(super) enum SubscriptionTarget {
    Server(Client),
    Sentinel(Mutex<SentinelClient>),
    Cluster(Vec<Client>),
}

/// One checked-out connection.
pub(super) struct Conn {
    inner: Inner,
    /// Set when the connection proved unusable; it is then not returned to the pool.
    broken: bool,
}

enum Inner {
    Server(Option<managed::Object<ServerManager>>),
    Sentinel(Option<managed::Object<SentinelManager>>),
    Cluster(ClusterConnection),
}

impl Connector {
    pub(super) fn open(cfg: &StoreConfig, topology: &Topology) -> StoreResult<Connector> {
        let certs = trust(cfg, topology)?;
        let timeout = cfg.timeout;
        let conn_cfg =
            AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
        let (kind, subscriptions) = match topology {
            Topology::Standalone { url, .. } => {
                // The URL may hold a password: never echo it.
                let client = match certs {
                    Some(certs) => Client::build_with_tls(url.as_str(), certs),
                    None => Client::open(url.as_str()),
                }
                .map_err(|e| StoreError::Unavailable(format!("invalid redis url ({:?})", e.kind())))?;
                let manager = deadpool_redis::Manager::new_with_config(client.get_connection_info().clone(), conn_cfg)
                    .map_err(|e| StoreError::Unavailable(format!("invalid redis url ({:?})", e.kind())))?;
                let pool = managed::Pool::builder(ServerManager(manager))
                    .max_size(cfg.pool_size.max(1))
                    .wait_timeout(Some(timeout))
                    .create_timeout(Some(timeout))
                    .recycle_timeout(Some(timeout))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| StoreError::Unavailable(format!("redis pool: {e}")))?;
                (Kind::Server(pool), SubscriptionTarget::Server(client))
            }
            Topology::Sentinel(s) => {
                let manager = SentinelManager { client: Mutex::new(sentinel_client(s, certs.clone())?), conn_cfg };
                let pool = managed::Pool::builder(manager)
                    .max_size(cfg.pool_size.max(1))
                    .wait_timeout(Some(timeout))
                    .create_timeout(Some(timeout))
                    .recycle_timeout(Some(timeout))
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| StoreError::Unavailable(format!("redis pool: {e}")))?;
                (Kind::Sentinel(pool), SubscriptionTarget::Sentinel(Mutex::new(sentinel_client(s, certs)?)))
            }
            Topology::Cluster(c) => {
                let (conn, nodes) = cluster(c, certs, timeout)?;
                (Kind::Cluster(conn), SubscriptionTarget::Cluster(nodes))
            }
        };
        Ok(Connector { kind, subscriptions: Arc::new(subscriptions) })
    }

    pub(super) async fn get(&self) -> StoreResult<Conn> {
        let inner = match &self.kind {
            Kind::Server(pool) => Inner::Server(Some(pool.get().await.map_err(pool_error)?)),
            Kind::Sentinel(pool) => Inner::Sentinel(Some(pool.get().await.map_err(pool_error)?)),
            Kind::Cluster(c) => Inner::Cluster(c.clone()),
        };
        Ok(Conn { inner, broken: false })
    }

    pub(super) fn subscriptions(&self) -> Arc<SubscriptionTarget> {
        self.subscriptions.clone()
    }
}

impl SubscriptionTarget {
    /// Clients to try, in order, for the next subscription attempt. `attempt`
    /// rotates a cluster's node list so a dead node is not retried first forever.
    pub(super) async fn clients(&self, attempt: usize) -> Result<Vec<Client>, RedisError> {
        match self {
            SubscriptionTarget::Server(c) => Ok(vec![c.clone()]),
            SubscriptionTarget::Sentinel(s) => Ok(vec![s.lock().await.async_get_client().await?]),
            SubscriptionTarget::Cluster(nodes) => {
                let mut nodes = nodes.clone();
                let n = nodes.len().max(1);
                nodes.rotate_left(attempt % n);
                Ok(nodes)
            }
        }
    }
}

/// The CA certificates `store.ca_file` names, for a TLS topology.
fn trust(cfg: &StoreConfig, topology: &Topology) -> StoreResult<Option<TlsCertificates>> {
    let Some(ca) = &cfg.ca_file else { return Ok(None) };
    if !topology.tls() {
        return Err(StoreError::Unavailable("store.ca_file is set, but store.url does not use TLS".into()));
    }
    // The certificates config validation read, handed over as PEM.
    if ca.certs().is_empty() {
        return Err(StoreError::Unavailable(format!("store.ca_file: {}: no certificate was read", ca.path.display())));
    }
    let pem = crate::ca_file::to_pem(ca.certs());
    Ok(Some(TlsCertificates { client_tls: None, root_cert: Some(pem.into_bytes()) }))
}

fn address(host: &str, port: u16, tls: bool) -> StoreResult<ConnectionAddr> {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
    let scheme = if tls { "rediss" } else { "redis" };
    format!("{scheme}://{host}:{port}")
        .into_connection_info()
        .map(|i| i.addr().clone())
        .map_err(|e| StoreError::Unavailable(format!("invalid redis host ({:?})", e.kind())))
}

fn sentinel_client(s: &Sentinel, certs: Option<TlsCertificates>) -> StoreResult<SentinelClient> {
    let addrs = s.sentinels.iter().map(|(h, p)| address(h, *p, s.tls)).collect::<StoreResult<Vec<_>>>()?;
    let mut b = SentinelClientBuilder::new(addrs, &s.master, SentinelServerType::Master)
        .map_err(|e| StoreError::Unavailable(format!("sentinel: {e}")))?
        .set_client_to_redis_db(s.db);
    if let Some(u) = &s.auth.username {
        b = b.set_client_to_redis_username(u);
    }
    if let Some(p) = &s.auth.password {
        b = b.set_client_to_redis_password(p);
    }
    if let Some(u) = &s.sentinel_auth.username {
        b = b.set_client_to_sentinel_username(u);
    }
    if let Some(p) = &s.sentinel_auth.password {
        b = b.set_client_to_sentinel_password(p);
    }
    if s.tls {
        b = b.set_client_to_redis_tls_mode(TlsMode::Secure).set_client_to_sentinel_tls_mode(TlsMode::Secure);
        if let Some(certs) = certs {
            b = b.set_client_to_redis_certificates(certs.clone()).set_client_to_sentinel_certificates(certs);
        }
    }
    b.build().map_err(|e| StoreError::Unavailable(format!("sentinel: {}", e.category())))
}

fn cluster(
    c: &Cluster,
    certs: Option<TlsCertificates>,
    timeout: Duration,
) -> StoreResult<(ClusterConnection, Vec<Client>)> {
    let addrs = c.nodes.iter().map(|(h, p)| address(h, *p, c.tls)).collect::<StoreResult<Vec<_>>>()?;
    let mut infos = Vec::new();
    for addr in addrs {
        let info = addr.into_connection_info().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut redis = info.redis_settings().clone();
        if let Some(u) = &c.auth.username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &c.auth.password {
            redis = redis.set_password(p);
        }
        infos.push(info.set_redis_settings(redis));
    }
    let mut b = ClusterClientBuilder::new(infos.clone()).connection_timeout(timeout).response_timeout(timeout);
    if c.tls {
        b = b.tls(TlsMode::Secure);
        if let Some(certs) = &certs {
            b = b.certs(certs.clone());
        }
    }
    let client = b.build().map_err(|e| StoreError::Unavailable(format!("redis cluster: {}", e.category())))?;
    // Pending: the nodes are reached on first use, so start-up does not need them.
    let conn = client.get_pending_async_connection_with_config(
        ClusterConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout),
    );
    let nodes = infos
        .into_iter()
        .map(|info| match &certs {
            Some(certs) => Client::build_with_tls(info, certs.clone()),
            None => Client::open(info),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Unavailable(format!("redis cluster: {}", e.category())))?;
    Ok((conn, nodes))
}

/// A pooled connection unused for this long answers a PING before it is
/// handed out again (a server `timeout` or a NAT may have cut it). A
/// connection in use is not checked at every checkout, as deadpool-redis
/// does: that PING doubled the round trips of every store operation, and
/// against a Redis slower than half of `store.timeout` the check alone used up
/// the deadline. A connection whose last command did not complete is never
/// reused at all (see `Conn`).
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// Opens connections to one server, as deadpool-redis does; checks them only
/// after `IDLE_CHECK`.
pub(super) struct ServerManager(deadpool_redis::Manager);

impl managed::Manager for ServerManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        managed::Manager::create(&self.0).await
    }

    async fn recycle(&self, conn: &mut MultiplexedConnection, metrics: &Metrics) -> RecycleResult<RedisError> {
        if metrics.last_used() < IDLE_CHECK {
            return Ok(());
        }
        managed::Manager::recycle(&self.0, conn, metrics).await
    }
}

/// Opens connections to the master the Sentinels name at that moment.
pub(super) struct SentinelManager {
    client: Mutex<SentinelClient>,
    conn_cfg: AsyncConnectionConfig,
}

impl managed::Manager for SentinelManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        let client = self.client.lock().await.async_get_client().await?;
        client.get_multiplexed_async_connection_with_config(&self.conn_cfg).await
    }

    async fn recycle(&self, conn: &mut MultiplexedConnection, metrics: &Metrics) -> RecycleResult<RedisError> {
        if metrics.last_used() < IDLE_CHECK {
            return Ok(());
        }
        r::cmd("PING").query_async::<()>(conn).await.map_err(managed::RecycleError::Backend)
    }
}

/// True when a reply says this connection should not be used again: the socket
/// failed, or the server is a replica now (a failover demoted it).
fn condemns(result: &Result<Value, RedisError>) -> bool {
    match result {
        Ok(Value::ServerError(e)) => e.code() == "READONLY",
        Ok(_) => false,
        Err(e) => e.is_unrecoverable_error() || e.is_connection_dropped() || e.code() == Some("READONLY"),
    }
}

/// A handle on the same connection that can be cloned, to send commands for
/// different slots at once (a cluster routes each to its node; one server
/// pipelines them on the socket).
#[derive(Clone)]
pub(super) enum Shared {
    Multiplexed(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    pub(super) fn shared(&self) -> Shared {
        match &self.inner {
            Inner::Server(Some(c)) => Shared::Multiplexed((**c).clone()),
            Inner::Sentinel(Some(c)) => Shared::Multiplexed((**c).clone()),
            Inner::Cluster(c) => Shared::Cluster(c.clone()),
            Inner::Server(None) | Inner::Sentinel(None) => unreachable!("connection used after drop"),
        }
    }

    fn connection(&mut self) -> &mut (dyn ConnectionLike + Send) {
        match &mut self.inner {
            Inner::Server(Some(c)) => &mut **c,
            Inner::Sentinel(Some(c)) => &mut **c,
            Inner::Cluster(c) => c,
            // Only `Drop` takes the pooled connection out.
            Inner::Server(None) | Inner::Sentinel(None) => unreachable!("connection used after drop"),
        }
    }
}

/// Slot-move replies that can still reach us when a cluster node redirects a
/// command the client already redirected once (a slot moving as it retried).
/// They mean the command did not run, so sending it again is safe.
fn redirected(result: &Result<Value, RedisError>) -> bool {
    let code = match result {
        Ok(Value::ServerError(e)) => Some(e.code()),
        Ok(_) => None,
        Err(e) => e.code(),
    };
    matches!(code, Some("ASK" | "MOVED" | "TRYAGAIN"))
}

/// Sends `cmd` on a cluster connection, again after a short pause while the
/// reply says its slot is moving; the store's deadline bounds the whole.
async fn cluster_command(c: &mut ClusterConnection, cmd: &Cmd) -> Result<Value, RedisError> {
    let mut pause = Duration::from_millis(1);
    loop {
        let result = c.req_packed_command(cmd).await;
        if !redirected(&result) || pause > Duration::from_millis(500) {
            return result;
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            // Broken until the reply is in: a deadline that drops this future
            // half-way leaves the connection's state unknown, and it is not reused.
            let was_broken = std::mem::replace(&mut self.broken, true);
            let result = match &mut self.inner {
                Inner::Cluster(c) => cluster_command(c, cmd).await,
                _ => self.connection().req_packed_command(cmd).await,
            };
            self.broken = was_broken || condemns(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let was_broken = std::mem::replace(&mut self.broken, true);
            let result = self.connection().req_packed_commands(pipeline, offset, count).await;
            self.broken = was_broken || result.as_ref().is_err_and(|e| condemns(&Err(e.clone())));
            result
        })
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Server(Some(c)) => c.get_db(),
            Inner::Sentinel(Some(c)) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
            Inner::Server(None) | Inner::Sentinel(None) => 0,
        }
    }
}

impl ConnectionLike for Shared {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Shared::Multiplexed(c) => c.req_packed_command(cmd),
            Shared::Cluster(c) => Box::pin(cluster_command(c, cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Shared::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            Shared::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Shared::Multiplexed(c) => c.get_db(),
            Shared::Cluster(c) => c.get_db(),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.broken {
            return;
        }
        // Detached from the pool and closed; the pool opens a fresh one.
        match &mut self.inner {
            Inner::Server(c) => drop(c.take().map(managed::Object::take)),
            Inner::Sentinel(c) => drop(c.take().map(managed::Object::take)),
            Inner::Cluster(_) => {}
        }
    }
}

/// Pool timeouts → `Timeout`; a backend error as `redis_error` maps it.
fn pool_error(e: managed::PoolError<RedisError>) -> StoreError {
    match e {
        managed::PoolError::Timeout(_) => StoreError::Timeout,
        managed::PoolError::Backend(e) => super::shared::redis_error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}
